//! Map keys and values. Addresses are 16 bytes for both families: an IPv4
//! address sits in the first four bytes and the rest are zero, so one map
//! serves both families. All addresses and ports are in network byte order.

/// Address family tags used in keys (our own, not `AF_*`).
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_ICMPV6: u8 = 58;

/// `VipInfo::flags`: forwarded with NAT (else direct routing). Bit 1, the
/// old direct-routing flag that nothing read, stays unused.
pub const VIP_F_NAT: u32 = 1 << 0;
/// sh/mh hash the source port as well as the address.
pub const VIP_F_HASH_PORT: u32 = 1 << 2;
/// Source-IP persistence (`VipInfo::persist_*`).
pub const VIP_F_PERSIST: u32 = 1 << 3;
/// A TCP segment without a connection entry is scheduled like a new flow
/// instead of passed. Only sound for consistent hashing (mh), where a peer or
/// restarted director picks the same server.
pub const VIP_F_MIDFLOW: u32 = 1 << 4;

/// `VipInfo::sched`: how the datapath uses the primary ring.
/// Walk the ring with a per-CPU cursor (rr, wrr).
pub const SCHED_RING: u32 = 0;
/// Index the ring by the flow hash (sh, mh).
pub const SCHED_HASH: u32 = 1;
/// Scan the members for the fewest connections (lc).
pub const SCHED_LC: u32 = 2;
/// Scan the members for the fewest connections per weight (wlc).
pub const SCHED_WLC: u32 = 3;

/// Most servers the datapath scans in one scheduling decision (lc, wlc,
/// threshold fallback, backups). The control plane refuses more per list.
pub const MAX_SCAN: u32 = 256;
/// Ring slots tried before falling back to a scan when servers are at
/// their connection limit.
pub const RING_PROBES: u32 = 4;

/// A host-order port as the datapath stores it (network byte order, read
/// natively from the packet).
pub const fn wire_port(port: u16) -> u16 {
    u16::from_ne_bytes(port.to_be_bytes())
}

/// Inverse of [`wire_port`].
pub const fn host_port(wire: u16) -> u16 {
    u16::from_be_bytes(wire.to_ne_bytes())
}

/// An IPv4 address in the 16-byte key form. Built from whole words: zeroing
/// a byte array costs the BPF target a call to a byte-at-a-time memset().
pub const fn v4_key(octets: [u8; 4]) -> [u8; 16] {
    let words = [u32::from_ne_bytes(octets), 0, 0, 0];
    // SAFETY: [u32; 4] and [u8; 16] have the same size, any bits are valid.
    unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(words) }
}

/// Key of the `VIPS` map, and of `NAT_SERVERS` (there naming a real
/// server's address, port, protocol and family). Aligned (size unchanged) so that the datapath
/// builds and hashes it a word at a time: byte arrays alone would make it
/// byte-aligned, and BPF has no unaligned stores.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipKey {
    pub addr: [u8; 16],
    /// Network byte order.
    pub port: u16,
    pub proto: u8,
    pub family: u8,
}

/// Value of the `VIPS` map: what the datapath needs to schedule a new flow.
///
/// Three lists of backend ids live in the `RING` array, each a slice
/// `RING[base .. base + len]`, all computed in userspace:
/// - the ring: the rr/wrr sequence or the sh/mh table;
/// - members: every primary server taking new connections (lc/wlc, and the
///   fallback when ring picks are at their connection limit);
/// - backups: servers used only when no primary can take a connection.
///
/// Userspace writes new lists into free slots and then replaces this value,
/// so a packet never sees a half-written ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipInfo {
    pub vip_id: u32,
    pub flags: u32,
    pub sched: u32,
    pub ring_base: u32,
    /// 0 with `members_len` 0 means no primary takes new connections.
    pub ring_len: u32,
    pub members_base: u32,
    pub members_len: u32,
    pub backup_base: u32,
    pub backup_len: u32,
    /// Seconds a persistence entry outlives its last use.
    pub persist_timeout_s: u32,
    /// Prefix length that groups clients for persistence.
    pub persist_prefix: u8,
    pub _pad: [u8; 7],
}

/// Backend flags.
/// Next hop resolved: `dst_mac`, `src_mac` and `ifindex` are valid.
pub const BACKEND_F_RESOLVED: u32 = 1 << 0;
/// Failed its health check: no new connections, persistence ignored.
pub const BACKEND_F_DOWN: u32 = 1 << 1;

/// Value of the `BACKENDS` array, indexed by backend id. The control plane
/// resolves the route and neighbour so the packet path needs no FIB lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    pub addr: [u8; 16],
    /// Network byte order.
    pub port: u16,
    pub family: u8,
    pub _pad0: u8,
    /// Egress interface towards the real server.
    pub ifindex: u32,
    /// Next hop's MAC (the real server, or the gateway in front of it).
    pub dst_mac: [u8; 6],
    /// MAC of the egress interface.
    pub src_mac: [u8; 6],
    pub flags: u32,
    /// For wlc; 0 never appears in a scan list.
    pub weight: u32,
    /// Connection limit (active + inactive), 0 = none (`ipvsadm -x`).
    pub max_conns: u32,
    /// The virtual server it belongs to: lets a restarted control plane
    /// rebuild its id tables from the pinned maps.
    pub vip_id: u32,
    pub _pad1: u32,
}

/// Connection counts of a backend, IPVS style: active = ESTABLISHED,
/// inactive = any other state (and UDP). Two arrays of these exist:
/// `BACKEND_CONNS`, only ever changed by the datapath with atomic adds as
/// connections open and change state, and `BACKEND_RELEASED`, written only by
/// userspace for entries that expired or were evicted. The live count is the
/// wrapping difference ([`ConnCounts::live`]), so no value has two writers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnCounts {
    pub active: u64,
    pub inactive: u64,
}

impl ConnCounts {
    /// `self - released`, clamped at zero (a reconciliation may briefly
    /// overshoot).
    pub const fn live(&self, released: &ConnCounts) -> ConnCounts {
        let a = self.active.wrapping_sub(released.active) as i64;
        let i = self.inactive.wrapping_sub(released.inactive) as i64;
        ConnCounts {
            active: if a > 0 { a as u64 } else { 0 },
            inactive: if i > 0 { i as u64 } else { 0 },
        }
    }

    pub const fn total(&self) -> u64 {
        self.active.saturating_add(self.inactive)
    }
}

/// Key of `PERSIST`: a client (address masked to the virtual server's
/// persistence prefix) of one virtual server.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PersistKey {
    pub addr: [u8; 16],
    pub vip_id: u32,
    pub family: u8,
    // Padding as words, not byte arrays: zeroing a byte array costs the BPF
    // target a call to a byte-at-a-time memset(). Likewise below.
    pub _pad0: u8,
    pub _pad1: u16,
}

/// Value of `PERSIST`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Persist {
    pub backend_id: u32,
    pub _pad: u32,
    pub last_seen_ns: u64,
}

/// A flow as seen on the wire: `src -> dst`. Used for the client-side
/// tuple in `CONNS` (client -> VIP) and the server-side tuple in
/// `NAT_REPLIES` (real server -> client).
/// Aligned like `VipKey`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Network byte order.
    pub sport: u16,
    /// Network byte order.
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: u16,
}

/// Connection flags.
/// The connection is forwarded with NAT (else direct routing).
pub const CONN_F_NAT: u8 = 1 << 0;

/// Value of `CONNS`, keyed by the client-side `FlowKey` (client -> VIP).
///
/// Self-contained so that entries can be dumped and installed from
/// userspace (state sync): the real server is named by backend id, and the
/// client-side L2 peer is remembered for NAT replies.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conn {
    pub backend_id: u32,
    pub vip_id: u32,
    /// [`crate::tcp::State`] as u8.
    pub state: u8,
    pub flags: u8,
    pub _pad0: u16,
    /// Interface the client's packets arrive on (NAT replies leave there).
    pub client_ifindex: u32,
    /// `bpf_ktime_get_coarse_ns()` (`CLOCK_MONOTONIC` as of the last tick,
    /// without a clocksource read) of the last packet, refreshed at most once
    /// per [`TOUCH_INTERVAL_NS`] to keep the cache line clean.
    pub last_seen_ns: u64,
    /// L2 source of the client's packets (the client or its router).
    pub client_mac: [u8; 6],
    /// L2 destination of the client's packets (our interface).
    pub local_mac: [u8; 6],
    /// [`coarse_s`] of the last sync event about the entry: the datapath
    /// refreshes peers every [`SYNC_REFRESH_S`] while the entry is used.
    /// Local, never sent. (A pad before: an entry of the previous layout
    /// reads 0 and refreshes at its next use.)
    pub synced_s: u32,
}

/// How stale `Conn::last_seen_ns` may get before a packet refreshes it.
pub const TOUCH_INTERVAL_NS: u64 = 1_000_000_000;

/// Connection flags: made for a mid-flow segment (consistent hashing), a
/// guess a peer's entry replaces.
pub const CONN_F_GUESS: u8 = 1 << 1;
/// Installed from a peer's report (state sync); a newer report replaces it.
pub const CONN_F_PEER: u8 = 1 << 2;

/// A monotonic time in units of 2^30 ns (about a second), as `synced_s`
/// holds it.
pub const fn coarse_s(ns: u64) -> u32 {
    (ns >> 30) as u32
}

/// Units of [`coarse_s`] between sync refreshes of a used entry: well inside
/// the shortest idle timeout a peer applies to an entry it was sent.
pub const SYNC_REFRESH_S: u32 = 30;

/// `SETTINGS` indices and values: written by userspace, read by the datapath.
/// Index of the flags word.
pub const SETTINGS_FLAGS: u32 = 0;
pub const SETTINGS_LEN: u32 = 1;
/// Report new and changed entries in `SYNC_EVENTS`.
pub const SETTINGS_F_SYNC: u32 = 1 << 0;

/// `SyncEvent::kind`.
/// A connection was created; its key is `flow`.
pub const EVENT_CONN_NEW: u32 = 1;
/// A connection's TCP state changed.
pub const EVENT_CONN_STATE: u32 = 2;
/// A connection is in use and its peers' copies need refreshing.
pub const EVENT_CONN_REFRESH: u32 = 3;
/// The datapath removed a connection.
pub const EVENT_CONN_GONE: u32 = 4;
/// A persistence entry was created; its key is `persist`.
pub const EVENT_PERSIST_NEW: u32 = 5;

/// A record of the `SYNC_EVENTS` ring buffer: which entry changed and how.
/// Userspace reads the entry itself from its map (an entry gone by then
/// needs no sync), so the datapath copies only the key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncEvent {
    pub flow: FlowKey,
    pub persist: PersistKey,
    pub kind: u32,
    pub _pad: u32,
}

/// Value of `NAT_REPLIES`, keyed by the server-side tuple
/// (real server -> client). Holds what the reply rewrite needs, so a reply
/// costs one lookup; state changes look up the `Conn` as well.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatReply {
    pub vip: [u8; 16],
    /// Network byte order.
    pub vip_port: u16,
    pub _pad0: u16,
    pub ifindex: u32,
    pub vip_id: u32,
    pub backend_id: u32,
    /// Client-side L2 peer (becomes the destination MAC).
    pub dst_mac: [u8; 6],
    /// Our interface on the client side (becomes the source MAC).
    pub src_mac: [u8; 6],
}

/// `NatServer::flags`: new connections to this server record a
/// `NAT_REPLIES` entry, so that their replies are found once `vip` names
/// another virtual server or none (set before such a change, see
/// `Dataplane::set_nat_servers`).
pub const NAT_SERVER_F_REPLY_ENTRIES: u16 = 1 << 0;
/// The server is in more than one NAT virtual server: `vip` names none, and
/// replies are found in `NAT_REPLIES` only. Implies `REPLY_ENTRIES`.
pub const NAT_SERVER_F_SHARED: u16 = 1 << 1;

/// Value of `NAT_SERVERS`, keyed by a real server's address, port, protocol
/// and family (a `VipKey` of the server side): the virtual server whose
/// connections it serves. A reply from the server to a client then finds its
/// connection in `CONNS` under (client -> `vip`:`vip_port`), as IPVS finds
/// both directions in one table, so a new connection costs one table insert
/// instead of two. Servers of several NAT virtual servers fall back to
/// `NAT_REPLIES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatServer {
    pub vip: [u8; 16],
    /// Network byte order.
    pub vip_port: u16,
    pub flags: u16,
    pub vip_id: u32,
}

impl NatServer {
    /// Replies are found through `vip` and `CONNS`.
    pub const fn derives(&self) -> bool {
        self.flags & NAT_SERVER_F_SHARED == 0
    }

    /// New connections to the server need no `NAT_REPLIES` entry.
    pub const fn skips_reply_entry(&self, vip_id: u32) -> bool {
        self.flags == 0 && self.vip_id == vip_id
    }
}

/// Per-CPU traffic counters, one per virtual server and one per backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub conns: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
}

pub use crate::reason::Reason;

macro_rules! assert_size {
    ($t:ty, $n:expr) => {
        const _: () = assert!(core::mem::size_of::<$t>() == $n);
    };
}
assert_size!(VipKey, 20);
assert_size!(VipInfo, 48);
assert_size!(Backend, 56);
assert_size!(ConnCounts, 16);
assert_size!(PersistKey, 24);
assert_size!(Persist, 16);
assert_size!(FlowKey, 40);
assert_size!(Conn, 40);
assert_size!(NatReply, 44);
assert_size!(NatServer, 24);
assert_size!(Traffic, 40);
assert_size!(SyncEvent, 72);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: plain-old-data, repr(C), every bit pattern valid, padding explicit.
    unsafe impl aya::Pod for VipKey {}
    unsafe impl aya::Pod for VipInfo {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for Conn {}
    unsafe impl aya::Pod for NatReply {}
    unsafe impl aya::Pod for NatServer {}
    unsafe impl aya::Pod for Traffic {}
    unsafe impl aya::Pod for ConnCounts {}
    unsafe impl aya::Pod for PersistKey {}
    unsafe impl aya::Pod for Persist {}
    unsafe impl aya::Pod for SyncEvent {}
}
