//! The two lab layouts. Both are built from the same plumbing: hosts plugged into a
//! bridge in the `sw` namespace (or, for the NAT client, wired straight to the director),
//! every veth end tuned for XDP, addresses and routes applied in one `ip -batch` per host.
//!
//! Both layouts are dual-stack. IPv4 (unchanged from the first lab):
//!
//! | | NAT | DR |
//! |---|---|---|
//! | client `eth0` | `198.51.100.2/24` (+ `.100`–`.163`) | `10.2.0.2/24` (+ `.100`–`.163`) |
//! | director | `eth0` `198.51.100.1/24`, `eth1` `10.1.0.1/24` | `eth0` `10.2.0.1/24` |
//! | real server N | `10.1.0.1N/24`, default via `10.1.0.1` | `10.2.0.1N/24`, VIP on `lo` |
//! | client route | default via `198.51.100.1` | `192.0.2.10/32 via 10.2.0.1` |
//!
//! IPv6 (every address added `nodad`, so none is ever tentative):
//!
//! | | NAT | DR |
//! |---|---|---|
//! | client `eth0` | `2001:db8:c::2/64` (+ `::100`–`::163`) | `2001:db8:2::2/64` (+ `::100`–`::163`) |
//! | director | `eth0` `2001:db8:c::1/64`, `eth1` `2001:db8:1::1/64` | `eth0` `2001:db8:2::1/64` |
//! | real server N | `2001:db8:1::1N/64`, default via `2001:db8:1::1` | `2001:db8:2::1N/64`, VIP6 on `lo` |
//! | client route | default via `2001:db8:c::1` | `2001:db8:10::10/128 via 2001:db8:2::1` |
//!
//! The VIPs are `192.0.2.10` and `2001:db8:10::10`: HTTP on port 80 and UDP on port 53
//! through the director. Each real server runs one `director-lab-server` with HTTP on
//! `[::]:8080` (NAT) or `[::]:80` (DR), and UDP on `[::]:5353` (NAT) or on the VIPs
//! themselves, port 53 (DR: an unconnected UDP socket bound to a wildcard address would
//! answer from the real server's own address, not from the VIP).
//!
//! A DR real server holds the VIPs on `lo` and must not announce them. IPv4 needs
//! `arp_ignore`/`arp_announce` for that; IPv6 needs nothing, because Linux answers a
//! neighbour solicitation only for addresses of the interface it arrived on.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::OwnedFd;

use anyhow::Result;

use super::netns::NetNs;
use super::xdp::XdpPass;

/// The virtual service address both example configs use.
pub const VIP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 10), 80);

/// The IPv6 virtual service (examples/lab-nat6.toml, examples/lab-dr6.toml).
pub const VIP6: SocketAddrV6 = SocketAddrV6::new(
    Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 0x10),
    80,
    0,
    0,
);

/// The UDP virtual service: the VIP's address, port 53.
pub const UDP_VIP: SocketAddrV4 = SocketAddrV4::new(*VIP.ip(), 53);

/// The UDP virtual service over IPv6.
pub const UDP_VIP6: SocketAddrV6 = SocketAddrV6::new(*VIP6.ip(), 53, 0, 0);

/// The real servers' UDP port in a NAT lab (in a DR lab it is the VIP's, 53).
pub const NAT_UDP_PORT: u16 = 5353;

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

/// Where everything in a lab lives. See the module docs for the tables.
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
    /// The IPv6 VIP ([`VIP6`]).
    pub vip6: SocketAddrV6,
    /// The client's primary IPv6 address.
    pub client6: Ipv6Addr,
    /// Extra client IPv6 addresses (`…::100` to `…::163`, as many as the IPv4 ones).
    pub extra_clients6: Vec<Ipv6Addr>,
    /// The director's IPv6 address on the client side.
    pub director6: Ipv6Addr,
    /// Real server `i` listens for HTTP here too (same port as over IPv4).
    pub real_servers6: Vec<SocketAddrV6>,
    /// The UDP VIP ([`UDP_VIP`]).
    pub udp_vip: SocketAddrV4,
    /// The UDP VIP over IPv6 ([`UDP_VIP6`]).
    pub udp_vip6: SocketAddrV6,
    /// Real server `i`'s address in a UDP virtual server's config: its address, port
    /// [`NAT_UDP_PORT`] (NAT, where the server answers on it) or 53, the VIP's (DR,
    /// where the server's socket is bound to the VIP itself, so that answers leave
    /// from the VIP: nothing answers on this address directly).
    pub udp_real_servers: Vec<SocketAddrV4>,
    /// The same over IPv6.
    pub udp_real_servers6: Vec<SocketAddrV6>,
}

/// `prefix` followed by the decimal digits of `host` read as the last hex group, so
/// IPv6 host numbers read like the IPv4 ones (`.163` ↔ `::163`).
fn host6(prefix: [u16; 3], host: u16) -> Ipv6Addr {
    let group = u16::from_str_radix(&host.to_string(), 16).expect("host number below 10000");
    Ipv6Addr::new(prefix[0], prefix[1], prefix[2], 0, 0, 0, 0, group)
}

impl Addressing {
    fn new(mode: Mode, servers: usize) -> Self {
        let (client_net6, director6, rs_net6, udp_port) = match mode {
            Mode::Nat => (
                [0x2001, 0xdb8, 0xc],
                host6([0x2001, 0xdb8, 0xc], 1),
                [0x2001, 0xdb8, 0x1],
                NAT_UDP_PORT,
            ),
            Mode::Dr => (
                [0x2001, 0xdb8, 0x2],
                host6([0x2001, 0xdb8, 0x2], 1),
                [0x2001, 0xdb8, 0x2],
                UDP_VIP.port(),
            ),
        };
        let v4 = Self::new4(mode, servers);
        let real_servers6 = (1..=servers)
            .map(|n| SocketAddrV6::new(host6(rs_net6, 10 + n as u16), v4.port, 0, 0))
            .collect::<Vec<_>>();
        Self {
            vip6: VIP6,
            client6: host6(client_net6, 2),
            extra_clients6: (0..u16::from(EXTRA_CLIENTS))
                .map(|i| host6(client_net6, 100 + i))
                .collect(),
            director6,
            udp_vip: UDP_VIP,
            udp_vip6: UDP_VIP6,
            udp_real_servers: v4
                .real_servers
                .iter()
                .map(|a| SocketAddrV4::new(*a.ip(), udp_port))
                .collect(),
            udp_real_servers6: real_servers6
                .iter()
                .map(|a| SocketAddrV6::new(*a.ip(), udp_port, 0, 0))
                .collect(),
            real_servers6,
            vip: v4.vip,
            client: v4.client,
            extra_clients: v4.extra_clients,
            director: v4.director,
            real_servers: v4.real_servers,
        }
    }

    fn new4(mode: Mode, servers: usize) -> V4 {
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
        V4 {
            vip: VIP,
            client: host(client_net, 2),
            extra_clients: (0..EXTRA_CLIENTS)
                .map(|i| host(client_net, 100 + i))
                .collect(),
            director,
            real_servers: (1..=servers)
                .map(|n| SocketAddrV4::new(host(rs_net, 10 + n as u8), port))
                .collect(),
            port,
        }
    }
}

/// The IPv4 half of [`Addressing`].
struct V4 {
    vip: SocketAddrV4,
    client: Ipv4Addr,
    extra_clients: Vec<Ipv4Addr>,
    director: Ipv4Addr,
    real_servers: Vec<SocketAddrV4>,
    /// The real servers' HTTP port.
    port: u16,
}

/// Set in every lab namespace as it is created: IPv6 on, and no duplicate address
/// detection, so link-local addresses are usable at once too (global ones are added
/// `nodad` anyway). `default` applies to interfaces created afterwards.
pub const IPV6_SYSCTLS: &[&str] = &[
    "net.ipv6.conf.all.disable_ipv6=0",
    "net.ipv6.conf.default.disable_ipv6=0",
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
];

/// A lab namespace `<prefix>-<role>`, with [`IPV6_SYSCTLS`] set.
pub(crate) fn lab_ns(prefix: &str, role: &str) -> Result<NetNs> {
    let ns = NetNs::create(&format!("{prefix}-{role}"))?;
    ns.sysctl(IPV6_SYSCTLS)?;
    Ok(ns)
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
        let ns = |role: &str| lab_ns(prefix, role);
        let built = Self {
            client: ns("client")?,
            dir: ns("dir")?,
            sw: ns("sw")?,
            rs: (1..=servers)
                .map(|n| ns(&format!("rs{n}")))
                .collect::<Result<_>>()?,
        };
        add_bridge(&built.sw, "br0")?;
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
    let cidr64 = |ip: Ipv6Addr| format!("{ip}/64 nodad");
    // IPv4: the first address of a subnet is the primary, the default source. IPv6 has
    // no primary: among equally good candidates Linux picks the address added last,
    // so the primary IPv6 address goes after the extra ones.
    let client_addrs: Vec<String> = [a.client]
        .iter()
        .chain(&a.extra_clients)
        .map(|&ip| cidr24(ip))
        .chain(
            a.extra_clients6
                .iter()
                .chain([&a.client6])
                .map(|&ip| cidr64(ip)),
        )
        .collect();
    // The wiring of the mode, then the client's routes toward the director.
    let client_routes = match mode {
        Mode::Nat => {
            veth(&ns.client, "eth0", &ns.dir, "eth0")?;
            plug(&ns.sw, "br0", &ns.dir, "eth1", "dir")?;
            configure(
                &ns.dir,
                "eth1",
                &["10.1.0.1/24".into(), cidr64(NAT_RS_GATEWAY6)],
                &[],
            )?;
            [
                format!("default via {}", a.director),
                format!("::/0 via {}", a.director6),
            ]
        }
        Mode::Dr => {
            plug(&ns.sw, "br0", &ns.client, "eth0", "client")?;
            plug(&ns.sw, "br0", &ns.dir, "eth0", "dir")?;
            [
                format!("{}/32 via {}", a.vip.ip(), a.director),
                format!("{}/128 via {}", a.vip6.ip(), a.director6),
            ]
        }
    };
    configure(&ns.client, "eth0", &client_addrs, &client_routes)?;
    configure(
        &ns.dir,
        "eth0",
        &[cidr24(a.director), cidr64(a.director6)],
        &[],
    )?;
    for (n, ((rs, addr), addr6)) in ns
        .rs
        .iter()
        .zip(&a.real_servers)
        .zip(&a.real_servers6)
        .enumerate()
    {
        plug(&ns.sw, "br0", rs, "eth0", &format!("rs{}", n + 1))?;
        let addrs = [cidr24(*addr.ip()), cidr64(*addr6.ip())];
        match mode {
            Mode::Nat => configure(
                rs,
                "eth0",
                &addrs,
                &[
                    "default via 10.1.0.1".into(),
                    format!("::/0 via {NAT_RS_GATEWAY6}"),
                ],
            )?,
            Mode::Dr => {
                configure(rs, "eth0", &addrs, &[])?;
                hold_vips_on_lo(
                    rs,
                    &[
                        format!("{}/32", a.vip.ip()),
                        format!("{}/128 nodad", a.vip6.ip()),
                    ],
                )?;
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

/// The director's IPv6 address on the real servers' side of a NAT lab (their gateway).
pub const NAT_RS_GATEWAY6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x1, 0, 0, 0, 0, 0x1);

/// Puts `vips` (`192.0.2.10/32`) on a DR real server's `lo`: local, so the server
/// accepts them, but never announced on the segment (its `eth0`): only the director
/// answers ARP for the service. IPv6 needs no setting: neighbour solicitations are
/// answered only for addresses of the receiving interface, and these are on lo.
pub(crate) fn hold_vips_on_lo(rs: &NetNs, vips: &[String]) -> Result<()> {
    let add: Vec<String> = vips
        .iter()
        .map(|v| format!("addr add {v} dev lo"))
        .collect();
    rs.ip_batch(&add)?;
    rs.sysctl(&[
        "net.ipv4.conf.all.arp_ignore=1",
        "net.ipv4.conf.all.arp_announce=2",
        "net.ipv4.conf.eth0.arp_ignore=1",
        "net.ipv4.conf.eth0.arp_announce=2",
    ])
}

/// A bridge `name` in the switch namespace `sw`, up. No multicast snooping: the
/// switch floods neighbour solicitations to every port, whatever MLD reports it has or
/// has not seen.
pub(crate) fn add_bridge(sw: &NetNs, name: &str) -> Result<()> {
    sw.ip(&["link", "add", name, "type", "bridge", "mcast_snooping", "0"])?;
    sw.ip(&["link", "set", name, "up"]).map(drop)
}

/// Stops the switch flooding unknown unicast to `port`: a NIC drops frames for other
/// MACs before XDP sees them, a veth does not, and a director's datapath forwards what
/// it gets (it does not check the destination MAC).
pub(crate) fn no_flood(sw: &NetNs, port: &str) -> Result<()> {
    sw.ip(&[
        "link",
        "set",
        "dev",
        port,
        "type",
        "bridge_slave",
        "flood",
        "off",
    ])
    .map(drop)
}

/// A veth pair `a:a_if` ↔ `b:b_if`, created directly in the two namespaces (never in
/// the default one), both ends tuned, then both up.
///
/// Order matters: a veth end accepts XDP_REDIRECTed frames (advertises ndo_xdp_xmit)
/// only if its peer had GRO requested when the end came up; turning GRO on while the
/// link is down does not update the peer. So tune both ends before either goes up.
pub(crate) fn veth(a: &NetNs, a_if: &str, b: &NetNs, b_if: &str) -> Result<()> {
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

/// Plugs `host:host_if` into the switch's `bridge` through a port named `port`.
pub(crate) fn plug(
    sw: &NetNs,
    bridge: &str,
    host: &NetNs,
    host_if: &str,
    port: &str,
) -> Result<()> {
    veth(host, host_if, sw, port)?;
    sw.ip(&["link", "set", "dev", port, "master", bridge])
        .map(drop)
}

/// `tx off`: no partial checksums, so XDP sees (and must fix) full checksums as from a
/// real NIC; it also turns TSO off. `gro on`: gives the veth NAPI, without which frames
/// XDP_TX'd or redirected into it are silently dropped.
fn tune(ns: &NetNs, ifname: &str) -> Result<()> {
    ns.exec("ethtool", &["-K", ifname, "tx", "off", "gro", "on"])
        .map(drop)
}

/// Addresses on `ifname`, then routes, in one batch. IPv6 is switched on for the
/// interface first (see [`IPV6_SYSCTLS`]).
pub(crate) fn configure(
    ns: &NetNs,
    ifname: &str,
    cidrs: &[String],
    routes: &[String],
) -> Result<()> {
    ns.sysctl(&[&format!("net.ipv6.conf.{ifname}.disable_ipv6=0")])?;
    let addrs = cidrs.iter().map(|c| format!("addr add {c} dev {ifname}"));
    let routes = routes.iter().map(|r| format!("route add {r}"));
    ns.ip_batch(&addrs.chain(routes).collect::<Vec<_>>())
}
