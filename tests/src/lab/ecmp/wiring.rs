//! The ECMP lab's wiring, IPv4 only. The router and the directors share the uplink
//! segment (bridge `br-up` in `sw`), the directors, the router and the real servers
//! the server segment (`br-srv`):
//!
//! | | address |
//! |---|---|
//! | client `eth0` (a veth to the router's `c0`) | `10.30.0.2/24`, default via `10.30.0.1` |
//! | router `c0` / `u0` (`br-up`) / `s0` (`br-srv`) | `10.30.0.1/24` / `10.31.0.1/24` / `10.32.0.1/24` |
//! | director N `eth0` (`br-up`) | `10.31.0.1N/24`, default via `10.31.0.1` |
//! | director N `eth1` (`br-srv`, also sync) | `10.32.0.1N/24` |
//! | real server M `eth0` (`br-srv`) | `10.32.0.2M/24`, default via `10.32.0.1`, the VIPs on `lo` |
//!
//! The router has no route for the VIPs but what its bird2 learns over BGP from the
//! directors' bird2. Its link to the directors is a bridge, not a veth each, so a
//! director that dies leaves the router's link up: BFD must notice. The uplink bridge
//! does not flood unknown unicast to the directors, or a frame for one director's MAC
//! would reach the others' datapaths (which forward it: they do not check the
//! destination MAC).

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;

use anyhow::Result;

use crate::lab::netns::NetNs;
use crate::lab::topology::{add_bridge, configure, hold_vips_on_lo, lab_ns, no_flood, plug, veth};
use crate::lab::xdp::XdpPass;

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 30, 0, 2);
pub const ROUTER_CLIENT_SIDE: Ipv4Addr = Ipv4Addr::new(10, 30, 0, 1);
/// The router on the uplink segment: the directors' BGP neighbour.
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 31, 0, 1);
pub const ROUTER_SERVER_SIDE: Ipv4Addr = Ipv4Addr::new(10, 32, 0, 1);

/// Director `n`'s (1-based) address on the uplink: its BGP address and the next hop
/// the router's ECMP route names.
pub fn uplink(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 31, 0, 10 + small(n))
}

/// Director `n`'s address on the server segment, where it syncs.
pub fn server_side(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 32, 0, 10 + small(n))
}

/// Real server `m`'s (1-based) address.
pub fn real_server(m: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 32, 0, 20 + small(m))
}

fn small(n: usize) -> u8 {
    u8::try_from(n)
        .ok()
        .filter(|n| (1..=9).contains(n))
        .expect("1..=9 directors or real servers")
}

/// The director whose uplink address is `ip`.
pub fn director_of(ip: Ipv4Addr) -> Option<usize> {
    (1..=9).find(|&n| uplink(n) == ip)
}

/// The namespaces of an ECMP lab.
#[derive(Debug)]
pub struct Namespaces {
    pub client: NetNs,
    pub router: NetNs,
    /// Director 1's first.
    pub dirs: Vec<NetNs>,
    pub rs: Vec<NetNs>,
    pub sw: NetNs,
}

/// Builds `<prefix>-<role>` namespaces and their wiring, with `vips` (`/32`) on every
/// real server's `lo`. Returns them with the XDP_PASS links on the switch ports
/// facing the directors (see [`crate::lab::xdp`]), which must live as long.
pub(crate) fn build(
    prefix: &str,
    directors: usize,
    servers: usize,
    vips: &[Ipv4Addr],
) -> Result<(Namespaces, Vec<OwnedFd>)> {
    let ns = |role: &str| lab_ns(prefix, role);
    let ns = Namespaces {
        client: ns("client")?,
        router: ns("router")?,
        dirs: (1..=directors)
            .map(|n| ns(&format!("dir{n}")))
            .collect::<Result<_>>()?,
        rs: (1..=servers)
            .map(|m| ns(&format!("rs{m}")))
            .collect::<Result<_>>()?,
        sw: ns("sw")?,
    };
    for bridge in ["br-up", "br-srv"] {
        add_bridge(&ns.sw, bridge)?;
    }
    veth(&ns.client, "eth0", &ns.router, "c0")?;
    configure(
        &ns.client,
        "eth0",
        &[format!("{CLIENT}/24")],
        &[format!("default via {ROUTER_CLIENT_SIDE}")],
    )?;
    let r = &ns.router;
    configure(r, "c0", &[format!("{ROUTER_CLIENT_SIDE}/24")], &[])?;
    plug(&ns.sw, "br-up", r, "u0", "r-up")?;
    configure(r, "u0", &[format!("{ROUTER}/24")], &[])?;
    plug(&ns.sw, "br-srv", r, "s0", "r-srv")?;
    configure(r, "s0", &[format!("{ROUTER_SERVER_SIDE}/24")], &[])?;
    r.sysctl(&[
        "net.ipv4.ip_forward=1",
        // Hash on the 5-tuple: one client's connections spread over the directors.
        "net.ipv4.fib_multipath_hash_policy=1",
        // The real servers answer from the VIPs, which the router routes to the
        // directors.
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.s0.rp_filter=0",
    ])?;
    let pass = XdpPass::load()?;
    let mut xdp_links = Vec::new();
    for (i, dir) in ns.dirs.iter().enumerate() {
        let n = i + 1;
        for (iface, segment, addr) in [("eth0", "up", uplink(n)), ("eth1", "srv", server_side(n))] {
            let port = format!("d{n}-{segment}");
            plug(&ns.sw, &format!("br-{segment}"), dir, iface, &port)?;
            let uplink = segment == "up";
            if uplink {
                no_flood(&ns.sw, &port)?;
            }
            let routes = if uplink {
                vec![format!("default via {ROUTER}")]
            } else {
                Vec::new()
            };
            configure(dir, iface, &[format!("{addr}/24")], &routes)?;
            xdp_links.push(pass.attach(&ns.sw, &port)?);
        }
    }
    let on_lo: Vec<String> = vips.iter().map(|v| format!("{v}/32")).collect();
    for (i, rs) in ns.rs.iter().enumerate() {
        plug(&ns.sw, "br-srv", rs, "eth0", &format!("rs{}", i + 1))?;
        configure(
            rs,
            "eth0",
            &[format!("{}/24", real_server(i + 1))],
            &[format!("default via {ROUTER_SERVER_SIDE}")],
        )?;
        hold_vips_on_lo(rs, &on_lo)?;
    }
    Ok((ns, xdp_links))
}
