//! The maps the control plane sizes, pins, writes and reads. Sizes here are
//! placeholders: the control plane sets the real ones from its configuration
//! before loading (`EbpfLoader::map_max_entries`), so the names are an ABI
//! too (`director_common::entries::map`). Per-CPU working room lives with the
//! module that uses it (`scratch`, `schedule`).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use director_common::abi::{
    Backend, Conn, ConnCounts, FlowKey, NatReply, NatServer, Persist, PersistKey, Reason, Traffic,
    VipInfo, VipKey,
};

#[map]
pub static VIPS: HashMap<VipKey, VipInfo> = HashMap::with_max_entries(1024, 0);

/// Indexed by backend id.
#[map]
pub static BACKENDS: Array<Backend> = Array::with_max_entries(4096, 0);

/// Scheduling lists of all virtual servers, see `VipInfo`.
#[map]
pub static RING: Array<u32> = Array::with_max_entries(65536, 0);

/// Per-CPU position in each virtual server's ring, indexed by vip id.
/// Per CPU so that new connections never contend on one cache line; every
/// CPU walks the full smooth-wrr sequence, so the weights hold per CPU and
/// therefore in total.
#[map]
pub static CURSORS: PerCpuArray<u32> = PerCpuArray::with_max_entries(1024, 0);

/// Client-side flow -> connection. One shared LRU hash with one LRU list,
/// chosen by measurement (`cargo xtask bench`, "connection-table layout": one
/// insert 241 ns net here, against 290 ns with per-CPU LRU lists and 267 ns
/// in a per-CPU LRU hash) and by need: a flow's replies and packets RSS puts
/// on another queue must find the same entry, and state sync streams single
/// entries.
#[map]
pub static CONNS: LruHashMap<FlowKey, Conn> = LruHashMap::with_max_entries(65536, 0);

/// Half-open connections (SYN_RECV), as `CONNS`: a SYN makes its entry here,
/// and the client's first ACK moves it to `CONNS`. A flood of spoofed SYNs
/// only ever evicts other half-open entries, never an established one.
/// Never synced: a peer learns of a connection once it is in `CONNS`.
#[map]
pub static EMBRYOS: LruHashMap<FlowKey, Conn> = LruHashMap::with_max_entries(65536, 0);

/// `NAT_REPLIES` of half-open connections (those to a shared NAT server),
/// moved with their connection.
#[map]
pub static EMBRYO_REPLIES: LruHashMap<FlowKey, NatReply> = LruHashMap::with_max_entries(65536, 0);

/// Server-side flow of a NAT connection -> how to rewrite its replies.
#[map]
pub static NAT_REPLIES: LruHashMap<FlowKey, NatReply> = LruHashMap::with_max_entries(65536, 0);

/// A NAT real server (address, port, protocol, family) -> its virtual
/// server, see `NatServer`. Sized like `BACKENDS`.
#[map]
pub static NAT_SERVERS: HashMap<VipKey, NatServer> = HashMap::with_max_entries(4096, 0);

/// Source-IP persistence: client (masked) of a virtual server -> backend.
#[map]
pub static PERSIST: LruHashMap<PersistKey, Persist> = LruHashMap::with_max_entries(65536, 0);

/// Connection counts per backend id, changed only here (atomic adds).
#[map]
pub static BACKEND_CONNS: Array<ConnCounts> = Array::with_max_entries(4096, 0);

/// Counts of expired or evicted connections per backend id, written only by
/// userspace; see `ConnCounts`.
#[map]
pub static BACKEND_RELEASED: Array<ConnCounts> = Array::with_max_entries(4096, 0);

/// Per-CPU count of each `Reason`.
#[map]
pub static REASONS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Reason::COUNT, 0);

/// Indexed by backend id.
#[map]
pub static BACKEND_STATS: PerCpuArray<Traffic> = PerCpuArray::with_max_entries(4096, 0);
