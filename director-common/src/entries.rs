//! How map entries derive from addresses and from each other: the rules the
//! datapath and the control plane (and state sync) must agree on, written
//! once. Addresses use `core::net`, so the no_std datapath shares them.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::abi::{
    BACKEND_F_RESOLVED, Backend, Conn, FAMILY_V4, FAMILY_V6, FlowKey, NatReply, PersistKey, VipKey,
    host_port, v4_key, wire_port,
};
use crate::hash::mask_addr;

/// Names of the maps the control plane sizes, pins and reads: an ABI with
/// the eBPF object (`director-ebpf/src/maps.rs` declares them by these names).
pub mod map {
    pub const VIPS: &str = "VIPS";
    pub const BACKENDS: &str = "BACKENDS";
    pub const RING: &str = "RING";
    pub const CURSORS: &str = "CURSORS";
    pub const CONNS: &str = "CONNS";
    pub const EMBRYOS: &str = "EMBRYOS";
    pub const EMBRYO_REPLIES: &str = "EMBRYO_REPLIES";
    pub const NAT_REPLIES: &str = "NAT_REPLIES";
    pub const NAT_SERVERS: &str = "NAT_SERVERS";
    pub const PERSIST: &str = "PERSIST";
    pub const BACKEND_CONNS: &str = "BACKEND_CONNS";
    pub const BACKEND_RELEASED: &str = "BACKEND_RELEASED";
    pub const REASONS: &str = "REASONS";
    pub const BACKEND_STATS: &str = "BACKEND_STATS";
    pub const SETTINGS: &str = "SETTINGS";
    pub const SYNC_EVENTS: &str = "SYNC_EVENTS";
    pub const SYNC_LOST: &str = "SYNC_LOST";

    /// Every map that is pinned (and so survives a restart).
    pub const PINNED: [&str; 17] = [
        VIPS,
        BACKENDS,
        RING,
        CURSORS,
        CONNS,
        EMBRYOS,
        EMBRYO_REPLIES,
        NAT_REPLIES,
        NAT_SERVERS,
        PERSIST,
        BACKEND_CONNS,
        BACKEND_RELEASED,
        REASONS,
        BACKEND_STATS,
        SETTINGS,
        SYNC_EVENTS,
        SYNC_LOST,
    ];
}

/// An address in the 16-byte key form, with its family tag.
pub fn addr_key(ip: IpAddr) -> ([u8; 16], u8) {
    match ip {
        IpAddr::V4(a) => (v4_key(a.octets()), FAMILY_V4),
        IpAddr::V6(a) => (a.octets(), FAMILY_V6),
    }
}

/// Inverse of [`addr_key`].
pub fn ip_of(addr: &[u8; 16], family: u8) -> IpAddr {
    if family == FAMILY_V4 {
        Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).into()
    } else {
        Ipv6Addr::from(*addr).into()
    }
}

/// An address and a port in network byte order, as keys hold them.
pub fn socket_addr(addr: &[u8; 16], family: u8, wire: u16) -> SocketAddr {
    SocketAddr::new(ip_of(addr, family), host_port(wire))
}

/// The key of an address, port and protocol: a virtual server's in `VIPS`,
/// a real server's in `NAT_SERVERS`.
pub fn endpoint_key(a: SocketAddr, proto: u8) -> VipKey {
    let (addr, family) = addr_key(a.ip());
    VipKey {
        addr,
        port: wire_port(a.port()),
        proto,
        family,
    }
}

/// A copy of an address that is a field of a 4-aligned struct (every key and
/// value here is), moved as four words: the BPF target copies a byte array
/// with calls to a byte-at-a-time memmove().
#[inline(always)]
fn word_copy(a: &[u8; 16]) -> [u8; 16] {
    // SAFETY: callers pass fields of `FlowKey` (align 8) and `Backend`
    // (align 4) at offsets that are multiples of four; [u32; 4] has the
    // array's size, and every bit pattern is valid for both.
    unsafe {
        let p = (a as *const [u8; 16]).cast::<u32>();
        core::mem::transmute::<[u32; 4], [u8; 16]>([
            p.read(),
            p.add(1).read(),
            p.add(2).read(),
            p.add(3).read(),
        ])
    }
}

impl FlowKey {
    /// The `NAT_REPLIES` key of the NAT connection `self` (client -> VIP)
    /// served by `server`: the server-side tuple, server -> client.
    #[inline(always)]
    pub fn reply_via(&self, server: &Backend) -> FlowKey {
        FlowKey {
            src: word_copy(&server.addr),
            dst: word_copy(&self.src),
            sport: server.port,
            dport: self.sport,
            proto: self.proto,
            family: self.family,
            _pad: 0,
        }
    }

    /// The client-side key of a connection: `client` -> `vip` under `proto`.
    pub fn client_side(client: SocketAddr, vip: SocketAddr, proto: u8) -> FlowKey {
        let (src, family) = addr_key(client.ip());
        FlowKey {
            src,
            dst: addr_key(vip.ip()).0,
            sport: wire_port(client.port()),
            dport: wire_port(vip.port()),
            proto,
            family,
            _pad: 0,
        }
    }
}

impl NatReply {
    /// The `NAT_REPLIES` value of the NAT connection `conn` under `key`
    /// (client -> VIP): the reply goes back out where the client's packets
    /// came in.
    #[inline(always)]
    pub fn of(key: &FlowKey, conn: &Conn) -> NatReply {
        NatReply {
            vip: word_copy(&key.dst),
            vip_port: key.dport,
            _pad0: 0,
            ifindex: conn.client_ifindex,
            vip_id: conn.vip_id,
            backend_id: conn.backend_id,
            dst_mac: conn.client_mac,
            src_mac: conn.local_mac,
        }
    }
}

impl PersistKey {
    /// The persistence entry that `client` (of `family`) shares with the
    /// other clients of its `prefix` in virtual server `vip_id`.
    #[inline(always)]
    pub fn of(client: &[u8; 16], family: u8, prefix: u8, vip_id: u32) -> PersistKey {
        PersistKey {
            addr: mask_addr(client, prefix),
            vip_id,
            family,
            _pad0: 0,
            _pad1: 0,
        }
    }
}

/// Where frames to a real server (or a client) leave: the egress interface,
/// the next hop's MAC, and the interface's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Hop {
    pub ifindex: u32,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
}

impl Backend {
    /// The `BACKENDS` entry of real server `server` of virtual server
    /// `vip_id`, without a next hop.
    pub fn new(server: SocketAddr, vip_id: u32, weight: u32, max_conns: u32) -> Backend {
        let (addr, family) = addr_key(server.ip());
        Backend {
            addr,
            port: wire_port(server.port()),
            family,
            weight,
            max_conns,
            vip_id,
            ..Backend::default()
        }
    }

    /// The same entry reached through `hop`.
    pub fn via(self, hop: &Hop) -> Backend {
        Backend {
            ifindex: hop.ifindex,
            dst_mac: hop.dst_mac,
            src_mac: hop.src_mac,
            flags: self.flags | BACKEND_F_RESOLVED,
            ..self
        }
    }

    /// The real server's address and port.
    pub fn server(&self) -> SocketAddr {
        socket_addr(&self.addr, self.family, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{CONN_F_NAT, PROTO_TCP};

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn addresses_round_trip_through_keys() {
        for a in ["198.51.100.2:40000", "[2001:db8::2]:443"] {
            let (k, f) = addr_key(sa(a).ip());
            assert_eq!(socket_addr(&k, f, wire_port(sa(a).port())), sa(a));
        }
        let (k, f) = addr_key(sa("192.0.2.10:80").ip());
        assert_eq!(
            (&k[..4], &k[4..], f),
            (&[192, 0, 2, 10][..], &[0u8; 12][..], FAMILY_V4)
        );
    }

    #[test]
    fn endpoint_keys_are_in_network_order() {
        let k = endpoint_key(sa("192.0.2.10:80"), PROTO_TCP);
        assert_eq!(k.port.to_ne_bytes(), [0, 80]);
        assert_eq!((k.proto, k.family), (PROTO_TCP, FAMILY_V4));
    }

    #[test]
    fn reply_key_mirrors_the_client_flow() {
        let client = FlowKey::client_side(sa("198.51.100.2:1111"), sa("192.0.2.10:80"), PROTO_TCP);
        let be = Backend::new(sa("10.1.0.11:8080"), 0, 1, 0);
        let r = client.reply_via(&be);
        assert_eq!(
            (r.src, r.dst, r.sport, r.dport, r.proto, r.family),
            (
                be.addr,
                client.src,
                be.port,
                client.sport,
                PROTO_TCP,
                FAMILY_V4
            )
        );
    }

    #[test]
    fn a_nat_reply_returns_where_the_client_came_from() {
        let key = FlowKey::client_side(sa("198.51.100.2:1111"), sa("192.0.2.10:80"), PROTO_TCP);
        let conn = Conn {
            backend_id: 7,
            vip_id: 3,
            flags: CONN_F_NAT,
            client_ifindex: 4,
            client_mac: [2, 0, 0, 0, 0, 1],
            local_mac: [2, 0, 0, 0, 0, 2],
            ..Conn::default()
        };
        let r = NatReply::of(&key, &conn);
        assert_eq!((r.vip, r.vip_port), (key.dst, key.dport));
        assert_eq!((r.ifindex, r.vip_id, r.backend_id), (4, 3, 7));
        assert_eq!((r.dst_mac, r.src_mac), (conn.client_mac, conn.local_mac));
    }

    #[test]
    fn clients_of_a_prefix_share_a_persistence_key() {
        let (a, f) = addr_key(sa("198.51.100.77:1").ip());
        let (b, _) = addr_key(sa("198.51.100.200:2").ip());
        let k = PersistKey::of(&a, f, 24, 3);
        assert_eq!(k, PersistKey::of(&b, f, 24, 3));
        assert_ne!(k, PersistKey::of(&b, f, 25, 3));
        assert_ne!(k, PersistKey::of(&a, f, 24, 4), "per virtual server");
        assert_eq!(&k.addr[..4], &[198, 51, 100, 0]);
    }

    #[test]
    fn a_backend_gets_its_hop_and_keeps_its_server() {
        let hop = Hop {
            ifindex: 9,
            dst_mac: [2, 0, 0, 0, 1, 1],
            src_mac: [2, 0, 0, 0, 2, 2],
        };
        let b = Backend::new(sa("[2001:db8::11]:8080"), 2, 5, 100).via(&hop);
        assert_eq!(b.server(), sa("[2001:db8::11]:8080"));
        assert_eq!((b.vip_id, b.weight, b.max_conns), (2, 5, 100));
        assert_eq!(
            (b.ifindex, b.dst_mac, b.src_mac),
            (9, hop.dst_mac, hop.src_mac)
        );
        assert_eq!(b.flags, BACKEND_F_RESOLVED);
    }
}
