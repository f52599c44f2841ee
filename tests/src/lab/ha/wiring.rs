//! The director pair's wiring, IPv4 only. Both directors plug into the same
//! bridges (in the `sw` namespace), so either can take the VRRP addresses:
//!
//! | | NAT | DR |
//! |---|---|---|
//! | client `eth0` (`br0`) | `198.51.100.2/24` (+ `.100`–`.115`) | `10.2.0.2/24` (+ `.100`–`.115`) |
//! | client route | `192.0.2.10/32 dev eth0` | `192.0.2.10/32 dev eth0` |
//! | director A / B `eth0` (`br0`) | `198.51.100.3/24` / `.4` | `10.2.0.3/24` / `.4` |
//! | director A / B `eth1` (`br1`) | `10.1.0.2/24` / `.3` | – |
//! | director A / B `eth2` (sync, a veth between them) | `10.9.0.1/24` / `.2` | the same |
//! | VRRP addresses (on the master) | `192.0.2.10/32` on `eth0`, `10.1.0.1/24` on `eth1` | `192.0.2.10/32` on `eth0` |
//! | real server N (`br1` / `br0`) | `10.1.0.1N/24`, default via `10.1.0.1` | `10.2.0.1N/24`, VIP on `lo` |
//!
//! The client reaches the VIP on-link: it asks ARP for `192.0.2.10`, which the master
//! answers (and announces with gratuitous ARP when it takes over). In NAT mode the
//! real servers' gateway `10.1.0.1` moves with the VIP, so replies reach the director
//! that holds the connection. The directors' own addresses never move.

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;

use anyhow::Result;

use super::Side;
use crate::lab::netns::NetNs;
use crate::lab::topology::{Mode, VIP, add_bridge, configure, hold_vips_on_lo, lab_ns, plug, veth};
use crate::lab::xdp::XdpPass;

/// One segment a director pair shares, and its VRRP instance.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    /// The VRRP instance's name in keepalived.conf.
    pub instance: &'static str,
    /// What it is for, in keepalived.conf's comments.
    pub role: &'static str,
    /// The directors' interface on it.
    pub interface: &'static str,
    /// The switch's bridge.
    pub bridge: &'static str,
    pub virtual_router_id: u8,
    /// Director A's and B's own addresses (`/24`).
    pub own: [Ipv4Addr; 2],
    /// The VRRP addresses and their prefix lengths.
    pub virtual_addresses: &'static [(Ipv4Addr, u8)],
}

impl Segment {
    /// `side`'s own address and its peer's.
    pub fn addresses(&self, side: Side) -> (Ipv4Addr, Ipv4Addr) {
        (self.own[side.index()], self.own[side.other().index()])
    }
}

/// The real servers' gateway in NAT mode, a VRRP address.
pub const NAT_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

const CLIENT_SIDE_VIPS: &[(Ipv4Addr, u8)] = &[(*VIP.ip(), 32)];

const NAT: &[Segment] = &[
    Segment {
        instance: "client_side",
        role: "the VIP, toward the clients",
        interface: "eth0",
        bridge: "br0",
        virtual_router_id: 51,
        own: [
            Ipv4Addr::new(198, 51, 100, 3),
            Ipv4Addr::new(198, 51, 100, 4),
        ],
        virtual_addresses: CLIENT_SIDE_VIPS,
    },
    Segment {
        instance: "server_side",
        role: "the real servers' default gateway",
        interface: "eth1",
        bridge: "br1",
        virtual_router_id: 52,
        own: [Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 1, 0, 3)],
        virtual_addresses: &[(NAT_GATEWAY, 24)],
    },
];

const DR: &[Segment] = &[Segment {
    instance: "vip",
    role: "the VIP, on the segment shared with the clients and the real servers",
    interface: "eth0",
    bridge: "br0",
    virtual_router_id: 51,
    own: [Ipv4Addr::new(10, 2, 0, 3), Ipv4Addr::new(10, 2, 0, 4)],
    virtual_addresses: CLIENT_SIDE_VIPS,
}];

/// The segments of a `mode` pair: the client side first.
pub fn segments(mode: Mode) -> &'static [Segment] {
    match mode {
        Mode::Nat => NAT,
        Mode::Dr => DR,
    }
}

/// Director A's and B's sync addresses, on `eth2`.
pub const SYNC: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 9, 0, 1), Ipv4Addr::new(10, 9, 0, 2)];
pub const SYNC_INTERFACE: &str = "eth2";

/// How many extra client addresses (`.100`…).
const EXTRA_CLIENTS: u8 = 16;

fn host(net: [u8; 3], h: u8) -> Ipv4Addr {
    Ipv4Addr::new(net[0], net[1], net[2], h)
}

fn client_net(mode: Mode) -> [u8; 3] {
    match mode {
        Mode::Nat => [198, 51, 100],
        Mode::Dr => [10, 2, 0],
    }
}

/// The client's primary address.
pub fn client(mode: Mode) -> Ipv4Addr {
    host(client_net(mode), 2)
}

/// The client's extra addresses, for flows from distinct sources.
pub fn extra_clients(mode: Mode) -> Vec<Ipv4Addr> {
    (0..EXTRA_CLIENTS)
        .map(|i| host(client_net(mode), 100 + i))
        .collect()
}

/// Real server `n`'s (1-based) address.
pub fn real_server(mode: Mode, n: usize) -> Ipv4Addr {
    let net = match mode {
        Mode::Nat => [10, 1, 0],
        Mode::Dr => [10, 2, 0],
    };
    host(
        net,
        10 + u8::try_from(n).expect("fewer than 90 real servers"),
    )
}

/// The namespaces of a pair lab.
#[derive(Debug)]
pub struct Namespaces {
    pub client: NetNs,
    /// Director A's and B's.
    pub dirs: [NetNs; 2],
    pub sw: NetNs,
    pub rs: Vec<NetNs>,
}

impl Namespaces {
    fn create(prefix: &str, servers: usize) -> Result<Self> {
        let ns = |role: &str| lab_ns(prefix, role);
        Ok(Self {
            client: ns("client")?,
            dirs: [ns(Side::A.name())?, ns(Side::B.name())?],
            sw: ns("sw")?,
            rs: (1..=servers)
                .map(|n| ns(&format!("rs{n}")))
                .collect::<Result<_>>()?,
        })
    }

    /// All namespaces, hosts first and the switch last.
    pub fn all(&self) -> impl Iterator<Item = &NetNs> {
        [&self.client]
            .into_iter()
            .chain(&self.dirs)
            .chain(&self.rs)
            .chain([&self.sw])
    }
}

/// The interfaces a director has in `mode`, the sync one last.
pub fn director_interfaces(mode: Mode) -> Vec<&'static str> {
    segments(mode)
        .iter()
        .map(|s| s.interface)
        .chain([SYNC_INTERFACE])
        .collect()
}

/// Builds the namespaces (`<prefix>-<role>`) and wiring of a `mode` pair with
/// `servers` real servers. Returns them with the XDP_PASS links on the switch ports
/// facing the directors (see [`crate::lab::xdp`]), which must live as long.
pub(crate) fn build(
    mode: Mode,
    servers: usize,
    prefix: &str,
) -> Result<(Namespaces, Vec<OwnedFd>)> {
    let ns = Namespaces::create(prefix, servers)?;
    let segs = segments(mode);
    for seg in segs {
        add_bridge(&ns.sw, seg.bridge)?;
    }
    let client_side = segs[0];
    plug(&ns.sw, client_side.bridge, &ns.client, "eth0", "client")?;
    let client_addrs: Vec<String> = [client(mode)]
        .into_iter()
        .chain(extra_clients(mode))
        .map(|ip| format!("{ip}/24"))
        .collect();
    configure(
        &ns.client,
        "eth0",
        &client_addrs,
        &[format!("{}/32 dev eth0", VIP.ip())],
    )?;
    let pass = XdpPass::load()?;
    let mut xdp_links = Vec::new();
    for side in [Side::A, Side::B] {
        let dir = &ns.dirs[side.index()];
        for seg in segs {
            let port = format!("{}{}", side.letter(), &seg.interface[3..]);
            plug(&ns.sw, seg.bridge, dir, seg.interface, &port)?;
            // A NIC drops frames for other MACs before XDP sees them; a veth does
            // not. Without this, frames for a failed director's MAC, flooded once
            // the bridge forgets it, would reach the other director's datapath
            // before VRRP moves anything (it forwards them: it does not check the
            // destination MAC), which no real pair does.
            ns.sw.ip(&[
                "link",
                "set",
                "dev",
                &port,
                "type",
                "bridge_slave",
                "flood",
                "off",
            ])?;
            configure(
                dir,
                seg.interface,
                &[format!("{}/24", seg.own[side.index()])],
                &[],
            )?;
            xdp_links.push(pass.attach(&ns.sw, &port)?);
        }
    }
    let [a, b] = &ns.dirs;
    veth(a, SYNC_INTERFACE, b, SYNC_INTERFACE)?;
    for side in [Side::A, Side::B] {
        let cidr = format!("{}/24", SYNC[side.index()]);
        configure(&ns.dirs[side.index()], SYNC_INTERFACE, &[cidr], &[])?;
    }
    let server_side = segs[segs.len() - 1];
    for (i, rs) in ns.rs.iter().enumerate() {
        let n = i + 1;
        plug(&ns.sw, server_side.bridge, rs, "eth0", &format!("rs{n}"))?;
        let addr = [format!("{}/24", real_server(mode, n))];
        match mode {
            Mode::Nat => configure(rs, "eth0", &addr, &[format!("default via {NAT_GATEWAY}")])?,
            Mode::Dr => {
                configure(rs, "eth0", &addr, &[])?;
                hold_vips_on_lo(rs, &[format!("{}/32", VIP.ip())])?;
            }
        }
    }
    Ok((ns, xdp_links))
}
