//! The two lab layouts. Both are built from the same plumbing: hosts plugged into a
//! bridge in the `sw` namespace (or, for the NAT client, wired straight to the director),
//! every veth end tuned for XDP, addresses and routes applied in one `ip -batch` per host.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;

use anyhow::Result;

use super::netns::NetNs;
use super::xdp::XdpPass;

/// The virtual service address both example configs use.
pub const VIP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 10), 80);

/// How many extra client source addresses each lab has.
pub const EXTRA_CLIENTS: u8 = 64;

/// Forwarding method the lab is wired for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Client and real servers on different subnets; the director sits between them.
    Nat,
    /// One L2 segment; real servers hold the VIP on `lo` and answer the client directly.
    Dr,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Nat => "nat",
            Mode::Dr => "dr",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Mode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "nat" => Ok(Mode::Nat),
            "dr" => Ok(Mode::Dr),
            _ => anyhow::bail!("unknown mode {s:?} (nat or dr)"),
        }
    }
}

/// Where everything in a lab lives.
#[derive(Debug, Clone)]
pub struct Addressing {
    pub vip: SocketAddrV4,
    /// The client's primary address (`eth0`).
    pub client: Ipv4Addr,
    /// Extra client addresses, for tests that need many distinct sources.
    pub extra_clients: Vec<Ipv4Addr>,
    /// The director's address on the client side (the client's gateway to the VIP).
    pub director: Ipv4Addr,
    /// Real server `i` (named `rs{i+1}`) listens here.
    pub real_servers: Vec<SocketAddrV4>,
}

impl Addressing {
    fn new(mode: Mode, servers: usize) -> Self {
        let (client_net, director, rs_net, port) = match mode {
            Mode::Nat => (
                [198, 51, 100],
                Ipv4Addr::new(198, 51, 100, 1),
                [10, 1, 0],
                8080,
            ),
            Mode::Dr => (
                [10, 2, 0],
                Ipv4Addr::new(10, 2, 0, 1),
                [10, 2, 0],
                VIP.port(),
            ),
        };
        let host = |net: [u8; 3], h: u8| Ipv4Addr::new(net[0], net[1], net[2], h);
        Self {
            vip: VIP,
            client: host(client_net, 2),
            extra_clients: (0..EXTRA_CLIENTS)
                .map(|i| host(client_net, 100 + i))
                .collect(),
            director,
            real_servers: (1..=servers)
                .map(|n| SocketAddrV4::new(host(rs_net, 10 + n as u8), port))
                .collect(),
        }
    }
}

/// The namespaces of one lab.
#[derive(Debug)]
pub struct Namespaces {
    pub client: NetNs,
    pub dir: NetNs,
    pub sw: NetNs,
    pub rs: Vec<NetNs>,
}

impl Namespaces {
    fn create(prefix: &str, servers: usize) -> Result<Self> {
        let ns = |role: &str| NetNs::create(&format!("{prefix}-{role}"));
        let built = Self {
            client: ns("client")?,
            dir: ns("dir")?,
            sw: ns("sw")?,
            rs: (1..=servers)
                .map(|n| ns(&format!("rs{n}")))
                .collect::<Result<_>>()?,
        };
        built.sw.ip(&["link", "add", "br0", "type", "bridge"])?;
        built.sw.ip(&["link", "set", "br0", "up"])?;
        Ok(built)
    }

    /// All namespaces, hosts first and the switch last.
    pub fn all(&self) -> impl Iterator<Item = &NetNs> {
        [&self.client, &self.dir]
            .into_iter()
            .chain(&self.rs)
            .chain([&self.sw])
    }
}

/// A wired lab without its processes.
#[derive(Debug)]
pub(crate) struct Built {
    pub namespaces: Namespaces,
    pub addressing: Addressing,
    /// XDP_PASS links on the peers of the director's interfaces (see [`super::xdp`]).
    pub xdp_links: Vec<OwnedFd>,
}

/// Builds the namespaces and wiring for `mode` with `servers` real servers.
pub(crate) fn build(mode: Mode, servers: usize, prefix: &str) -> Result<Built> {
    anyhow::ensure!(
        (1..=100).contains(&servers),
        "1..=100 real servers, not {servers}"
    );
    let ns = Namespaces::create(prefix, servers)?;
    let a = Addressing::new(mode, servers);
    let cidr24 = |ip: Ipv4Addr| format!("{ip}/24");
    let client_addrs: Vec<String> = [a.client]
        .iter()
        .chain(&a.extra_clients)
        .map(|&ip| cidr24(ip))
        .collect();
    match mode {
        Mode::Nat => {
            veth(&ns.client, "eth0", &ns.dir, "eth0")?;
            plug(&ns.sw, &ns.dir, "eth1", "dir")?;
            configure(
                &ns.client,
                "eth0",
                &client_addrs,
                &[format!("default via {}", a.director)],
            )?;
            configure(&ns.dir, "eth0", &[cidr24(a.director)], &[])?;
            configure(&ns.dir, "eth1", &["10.1.0.1/24".into()], &[])?;
        }
        Mode::Dr => {
            plug(&ns.sw, &ns.client, "eth0", "client")?;
            plug(&ns.sw, &ns.dir, "eth0", "dir")?;
            configure(
                &ns.client,
                "eth0",
                &client_addrs,
                &[format!("{}/32 via {}", a.vip.ip(), a.director)],
            )?;
            configure(&ns.dir, "eth0", &[cidr24(a.director)], &[])?;
        }
    }
    for (n, (rs, addr)) in ns.rs.iter().zip(&a.real_servers).enumerate() {
        plug(&ns.sw, rs, "eth0", &format!("rs{}", n + 1))?;
        match mode {
            Mode::Nat => configure(
                rs,
                "eth0",
                &[cidr24(*addr.ip())],
                &["default via 10.1.0.1".into()],
            )?,
            Mode::Dr => {
                configure(rs, "eth0", &[cidr24(*addr.ip())], &[])?;
                // The VIP is local (so the server accepts it) but must never be announced
                // on the segment: only the director answers ARP for the service.
                rs.ip(&["addr", "add", &format!("{}/32", a.vip.ip()), "dev", "lo"])?;
                rs.sysctl(&[
                    "net.ipv4.conf.all.arp_ignore=1",
                    "net.ipv4.conf.all.arp_announce=2",
                    "net.ipv4.conf.eth0.arp_ignore=1",
                    "net.ipv4.conf.eth0.arp_announce=2",
                ])?;
            }
        }
    }
    // Every veth end facing one of the director's interfaces receives what the
    // director XDP_TXes or redirects into that interface.
    let director_peers: &[(&NetNs, &str)] = match mode {
        Mode::Nat => &[(&ns.client, "eth0"), (&ns.sw, "dir")],
        Mode::Dr => &[(&ns.sw, "dir")],
    };
    let pass = XdpPass::load()?;
    let xdp_links = director_peers
        .iter()
        .map(|(peer, ifname)| pass.attach(peer, ifname))
        .collect::<Result<_>>()?;
    Ok(Built {
        namespaces: ns,
        addressing: a,
        xdp_links,
    })
}

/// A veth pair `a:a_if` ↔ `b:b_if`, created directly in the two namespaces (never in
/// the default one), both ends tuned, then both up.
///
/// Order matters: a veth end accepts XDP_REDIRECTed frames (advertises ndo_xdp_xmit)
/// only if its peer had GRO requested when the end came up; turning GRO on while the
/// link is down does not update the peer. So tune both ends before either goes up.
fn veth(a: &NetNs, a_if: &str, b: &NetNs, b_if: &str) -> Result<()> {
    a.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    tune(a, a_if)?;
    tune(b, b_if)?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"]).map(drop)
}

/// Plugs `host:host_if` into the switch's `br0` through a port named `port`.
fn plug(sw: &NetNs, host: &NetNs, host_if: &str, port: &str) -> Result<()> {
    veth(host, host_if, sw, port)?;
    sw.ip(&["link", "set", port, "master", "br0"]).map(drop)
}

/// `tx off`: no partial checksums, so XDP sees (and must fix) full checksums as from a
/// real NIC; it also turns TSO off. `gro on`: gives the veth NAPI, without which frames
/// XDP_TX'd or redirected into it are silently dropped.
fn tune(ns: &NetNs, ifname: &str) -> Result<()> {
    ns.exec("ethtool", &["-K", ifname, "tx", "off", "gro", "on"])
        .map(drop)
}

/// Addresses on `ifname`, then routes, in one batch.
fn configure(ns: &NetNs, ifname: &str, cidrs: &[String], routes: &[String]) -> Result<()> {
    let addrs = cidrs.iter().map(|c| format!("addr add {c} dev {ifname}"));
    let routes = routes.iter().map(|r| format!("route add {r}"));
    ns.ip_batch(&addrs.chain(routes).collect::<Vec<_>>())
}
