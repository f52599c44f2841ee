//! The loaded XDP program and typed handles on its maps: loading, pinning,
//! attaching, and plain reads and writes. What to write is the reconciler's
//! (`apply`); map names are the ABI's (`director_common::entries::map`).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, IterableMap, MapData, PerCpuArray, RingBuf},
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
};
use director_common::abi::{
    Backend, Conn, ConnCounts, FlowKey, NatReply, NatServer, Persist, PersistKey, Reason,
    SETTINGS_F_SYNC, SETTINGS_FLAGS, SyncEvent, Traffic, VipInfo, VipKey,
};
use director_common::entries::map;

use crate::config;
use crate::maps::{Maps, Table};
use crate::netlink::XdpRunning;

mod created;
mod migrate;
mod pin_dir;

pub use created::Created;
pub use pin_dir::{PinDir, teardown};

/// Map capacities, fixed when the maps are created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub conntrack_max: u32,
    /// Half-open (SYN_RECV) connections, apart from the established ones.
    pub half_open_max: u32,
    pub vips: u32,
    pub backends: u32,
    pub ring: u32,
}

/// The compiled datapath, built by build.rs through aya-build.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/director"));

const PROGRAM: &str = "director";

/// Bumped whenever a map's key or value layout changes.
pub const ABI_VERSION: u32 = 6;

pub struct Dataplane {
    ebpf: Ebpf,
    vips: HashMap<MapData, VipKey, VipInfo>,
    backends: Array<MapData, Backend>,
    ring: Array<MapData, u32>,
    conns: ConnMap,
    nat_replies: ReplyMap,
    embryos: ConnMap,
    embryo_replies: ReplyMap,
    nat_servers: HashMap<MapData, VipKey, NatServer>,
    persist: HashMap<MapData, PersistKey, Persist>,
    backend_conns: Array<MapData, ConnCounts>,
    backend_released: Array<MapData, ConnCounts>,
    reasons: PerCpuArray<MapData, u64>,
    backend_stats: PerCpuArray<MapData, Traffic>,
    settings: Array<MapData, u32>,
    /// Taken by the sync event reader (`take_sync_events`).
    sync_events: Option<RingBuf<MapData>>,
    sync_lost: PerCpuArray<MapData, u64>,
    links: Vec<(String, XdpLinkId)>,
    pins: Option<PinDir>,
    /// The verified program of a previous run of this same build.
    pinned_prog: Option<Xdp>,
    /// A previous layout's maps being migrated from (`migrate`).
    previous: Option<migrate::Old>,
    /// What this start pinned, until it has succeeded (`keep_pins`).
    created: Created,
}

/// FNV-1a of the eBPF object: names the pinned program of this exact build.
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Reuses the pinned, already verified program of this build if there is
/// one (the verifier takes seconds for this program: a restart then costs
/// milliseconds); otherwise loads ours and pins it for the next run. The
/// pinned program uses the pinned maps, which `load_with` opened.
fn adopt_program(
    ebpf: &mut Ebpf,
    pins: &PinDir,
    created: &mut Created,
) -> anyhow::Result<Option<Xdp>> {
    let dir = pins.0.join("prog");
    let path = dir.join(format!("v{ABI_VERSION}-{:016x}", fingerprint(OBJECT)));
    if path.exists() {
        match Xdp::from_pin(&path, aya_obj::programs::XdpAttachType::Interface) {
            Ok(p) => return Ok(Some(p)),
            Err(e) => {
                tracing::warn!("pinned program unusable, loading afresh: {e}");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let prog = program(ebpf)?;
    prog.load()
        .context("the kernel verifier rejected the XDP program")?;
    // Other builds' programs: their links are replaced below, and a program
    // stays loaded while a link holds it, so their pins can go now.
    if let Ok(old) = std::fs::read_dir(&dir) {
        for e in old.filter_map(Result::ok) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    created
        .dir_all(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    created.pin(&path);
    prog.pin(&path)
        .with_context(|| format!("pinning the program at {}", path.display()))?;
    Ok(None)
}

fn take<T>(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<T>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))?;
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

impl Dataplane {
    /// Loads the program and creates its maps with the given capacities,
    /// unpinned: they live as long as this value. Nothing is attached yet.
    pub fn load(sizes: &Sizes) -> anyhow::Result<Dataplane> {
        Self::load_with(sizes, None, Created::default())
    }

    /// Like `load`, but the maps are pinned under `pins`: existing pins (a
    /// previous run's connection table, counters and lists) are adopted, and
    /// their capacities win over `sizes`. What this start pins joins
    /// `created` and is removed again if the start fails (see `keep_pins`).
    pub fn open_pinned(
        sizes: &Sizes,
        pins: &PinDir,
        created: Created,
    ) -> anyhow::Result<Dataplane> {
        Self::load_with(sizes, Some(pins), created)
    }

    fn load_with(
        sizes: &Sizes,
        pins: Option<&PinDir>,
        mut created: Created,
    ) -> anyhow::Result<Dataplane> {
        if OBJECT.is_empty() {
            anyhow::bail!("this binary was built with AYA_BUILD_SKIP=1 and has no eBPF program");
        }
        let mut loader = EbpfLoader::new();
        // Before this layout's directory exists: its absence is what makes
        // this a first start over a previous layout.
        let previous = pins.map(migrate::Old::find).transpose()?.flatten();
        let map_dir = pins.map(PinDir::maps);
        let paths: Vec<(&str, PathBuf)> = match &map_dir {
            Some(dir) => {
                created.dir_all(dir).with_context(|| {
                    format!(
                        "creating {} (is bpffs mounted? mount -t bpf bpf /sys/fs/bpf)",
                        dir.display()
                    )
                })?;
                map::PINNED.iter().map(|&m| (m, dir.join(m))).collect()
            }
            None => Vec::new(),
        };
        for (name, path) in &paths {
            if !path.exists() {
                created.pin(path);
            }
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader
            .map_max_entries(map::VIPS, sizes.vips)
            .map_max_entries(map::BACKENDS, sizes.backends)
            .map_max_entries(map::BACKEND_STATS, sizes.backends)
            .map_max_entries(map::RING, sizes.ring)
            .map_max_entries(map::CURSORS, sizes.vips)
            .map_max_entries(map::CONNS, sizes.conntrack_max)
            .map_max_entries(map::NAT_REPLIES, sizes.conntrack_max)
            .map_max_entries(map::EMBRYOS, sizes.half_open_max)
            .map_max_entries(map::EMBRYO_REPLIES, sizes.half_open_max)
            .map_max_entries(map::NAT_SERVERS, sizes.backends)
            .map_max_entries(map::PERSIST, sizes.conntrack_max)
            .map_max_entries(map::BACKEND_CONNS, sizes.backends)
            .map_max_entries(map::BACKEND_RELEASED, sizes.backends)
            .map_max_entries(map::SYNC_EVENTS, sync_ring_bytes(sizes.conntrack_max))
            .load(OBJECT)
            .context("loading the eBPF object (is this kernel built with BPF and BTF?)")?;
        let pinned_prog = match pins {
            Some(p) => adopt_program(&mut ebpf, p, &mut created)?,
            None => {
                program(&mut ebpf)?
                    .load()
                    .context("the kernel verifier rejected the XDP program")?;
                None
            }
        };
        let mut dp = Dataplane {
            vips: take(&mut ebpf, map::VIPS)?,
            backends: take(&mut ebpf, map::BACKENDS)?,
            ring: take(&mut ebpf, map::RING)?,
            conns: take(&mut ebpf, map::CONNS)?,
            nat_replies: take(&mut ebpf, map::NAT_REPLIES)?,
            embryos: take(&mut ebpf, map::EMBRYOS)?,
            embryo_replies: take(&mut ebpf, map::EMBRYO_REPLIES)?,
            nat_servers: take(&mut ebpf, map::NAT_SERVERS)?,
            persist: take(&mut ebpf, map::PERSIST)?,
            backend_conns: take(&mut ebpf, map::BACKEND_CONNS)?,
            backend_released: take(&mut ebpf, map::BACKEND_RELEASED)?,
            reasons: take(&mut ebpf, map::REASONS)?,
            backend_stats: take(&mut ebpf, map::BACKEND_STATS)?,
            settings: take(&mut ebpf, map::SETTINGS)?,
            sync_events: Some(take(&mut ebpf, map::SYNC_EVENTS)?),
            sync_lost: take(&mut ebpf, map::SYNC_LOST)?,
            ebpf,
            links: Vec::new(),
            pins: pins.cloned(),
            pinned_prog,
            previous: None,
            created,
        };
        if let Some(old) = previous {
            migrate::report("before adopting", old.copy_all(&mut dp));
            dp.previous = Some(old);
        }
        Ok(dp)
    }

    /// The start succeeded: what it pinned stays when this value drops.
    pub fn keep_pins(&mut self) {
        self.created.keep();
    }

    /// After an upgrade over a previous map layout, once every interface
    /// runs this build's program: copies the connections the old program
    /// made since the first pass, and unpins the old maps.
    pub fn finish_upgrade(&mut self) -> anyhow::Result<()> {
        if let Some(old) = self.previous.take() {
            migrate::report("after attaching", old.finish(self)?);
        }
        Ok(())
    }

    pub fn program(&mut self) -> anyhow::Result<&mut Xdp> {
        match &mut self.pinned_prog {
            Some(p) => Ok(p),
            None => program(&mut self.ebpf),
        }
    }

    /// Attaches to `iface` in `mode`. Pinned: an existing pinned link (a
    /// previous run's) that is what `running` says runs on `iface`, in
    /// `mode`, gets this program swapped in atomically (no packet sees no
    /// program); any other pinned link is detached first (a changed
    /// `xdp_mode`: the kernel's stack sees the packets of that moment), and
    /// a new link is created and pinned. Either way the attachment outlives
    /// this process. Unpinned: detached on drop.
    pub fn attach(
        &mut self,
        iface: &str,
        mode: config::XdpMode,
        running: Option<XdpRunning>,
    ) -> anyhow::Result<()> {
        let flags = match mode {
            config::XdpMode::Native => XdpMode::Driver,
            config::XdpMode::Generic => XdpMode::Skb,
        };
        let Some(pins) = self.pins.clone() else {
            let link = self
                .program()?
                .attach(iface, flags)
                .with_context(|| format!("attaching XDP ({mode}) to {iface}"))?;
            self.links.push((iface.to_string(), link));
            return Ok(());
        };
        let path = pins.link(iface);
        if path.exists() {
            match self.adopt_pinned(&path, iface, mode, running) {
                Ok(()) => return Ok(()),
                Err(e) => tracing::warn!(iface, "attaching XDP afresh in {mode} mode: {e:#}"),
            }
        }
        let prog = self.program()?;
        let id = prog
            .attach(iface, flags)
            .with_context(|| format!("attaching XDP ({mode}) to {iface}"))?;
        let link = prog.take_link(id).context("taking the XDP link")?;
        let fd = FdLink::try_from(link)
            .context("this kernel attached XDP without a bpf_link; cannot pin it")?;
        let dir = path.parent().unwrap_or(Path::new("/"));
        self.created
            .dir_all(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        self.created.pin(&path);
        fd.pin(&path)
            .with_context(|| format!("pinning the XDP link at {}", path.display()))?;
        Ok(())
    }

    /// Swaps this program into the pinned link at `path` when it may be
    /// kept (see [`keep_pinned`]); otherwise removes it, detaching it.
    fn adopt_pinned(
        &mut self,
        path: &Path,
        iface: &str,
        mode: config::XdpMode,
        running: Option<XdpRunning>,
    ) -> anyhow::Result<()> {
        let fd: FdLink = PinnedLink::from_pin(path)
            .with_context(|| format!("opening {}", path.display()))?
            .into();
        let kept = fd
            .info()
            .context("reading the pinned link")
            .and_then(|info| keep_pinned(iface, info.program_id(), running, mode));
        if let Err(e) = kept {
            // Unpinned while this fd holds it, so that closing the fd is
            // the last reference: the kernel detaches it then, not later,
            // and the new attachment does not meet the old one.
            std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
            drop(fd);
            return Err(e);
        }
        let link = XdpLink::try_from(fd).context("pinned link is not an XDP link")?;
        let prog = self.program()?;
        let swapped = prog.attach_to_link(link);
        match swapped {
            Ok(id) => {
                // Unmanaged again, so dropping the program leaves it attached.
                drop(prog.take_link(id).context("taking the XDP link")?);
                Ok(())
            }
            Err(e) => {
                std::fs::remove_file(path)
                    .with_context(|| format!("removing {}", path.display()))?;
                Err(anyhow!(e).context("stale pinned link: swapping the program in failed"))
            }
        }
    }

    /// Detaches from every interface (also happens on drop).
    pub fn detach_all(&mut self) -> anyhow::Result<()> {
        while let Some((iface, link)) = self.links.pop() {
            program(&mut self.ebpf)?
                .detach(link)
                .with_context(|| format!("detaching XDP from {iface}"))?;
        }
        Ok(())
    }

    /// Capacities of the maps as created (a pinned map keeps its own).
    pub fn sizes(&self) -> Sizes {
        Sizes {
            conntrack_max: IterableMap::map(&self.conns)
                .info()
                .map_or(0, |i| i.max_entries()),
            half_open_max: IterableMap::map(&self.embryos)
                .info()
                .map_or(0, |i| i.max_entries()),
            vips: IterableMap::map(&self.vips)
                .info()
                .map_or(0, |i| i.max_entries()),
            backends: self.backends.len(),
            ring: self.ring.len(),
        }
    }

    pub fn nat_reply(&self, t: Table, key: &FlowKey) -> Option<NatReply> {
        self.table(t).1.get(key, 0).ok()
    }

    /// Live active/inactive connection counts of a backend.
    pub fn conn_counts(&self, id: u32) -> anyhow::Result<ConnCounts> {
        let opened = self
            .backend_conns
            .get(&id, 0)
            .context("reading BACKEND_CONNS")?;
        Ok(opened.live(&self.released(id)?))
    }

    /// Counts the datapath has recorded as opened (see `ConnCounts`).
    pub fn opened_counts(&self, id: u32) -> anyhow::Result<ConnCounts> {
        self.backend_conns
            .get(&id, 0)
            .context("reading BACKEND_CONNS")
    }

    fn released(&self, id: u32) -> anyhow::Result<ConnCounts> {
        self.backend_released
            .get(&id, 0)
            .context("reading BACKEND_RELEASED")
    }

    /// Userspace's side of the counts: connections gone from the table.
    pub fn set_released(&mut self, id: u32, released: &ConnCounts) -> anyhow::Result<()> {
        self.backend_released
            .set(id, released, 0)
            .context("writing BACKEND_RELEASED")
    }

    /// Whether the datapath reports new and changed entries in `SYNC_EVENTS`.
    pub fn set_sync(&mut self, on: bool) -> anyhow::Result<()> {
        let flags = if on { SETTINGS_F_SYNC } else { 0 };
        self.settings
            .set(SETTINGS_FLAGS, flags, 0)
            .context("writing SETTINGS")
    }

    /// The datapath's sync events, for one reader.
    pub fn take_sync_events(&mut self) -> Option<RingBuf<MapData>> {
        self.sync_events.take()
    }

    /// One record of the sync event ring, if it is one.
    pub fn sync_event(record: &[u8]) -> Option<SyncEvent> {
        (record.len() == std::mem::size_of::<SyncEvent>()).then(|| {
            // SAFETY: the length is checked; SyncEvent is plain data, valid for
            // any bits, read unaligned.
            unsafe { record.as_ptr().cast::<SyncEvent>().read_unaligned() }
        })
    }

    /// Sync events the ring had no room for, summed over CPUs.
    pub fn sync_lost(&self) -> anyhow::Result<u64> {
        let v = self.sync_lost.get(&0, 0).context("reading SYNC_LOST")?;
        Ok(v.iter().sum())
    }

    /// Per-reason counters summed over CPUs.
    pub fn reasons(&self) -> anyhow::Result<Vec<(Reason, u64)>> {
        Reason::ALL
            .iter()
            .map(|&r| {
                let v = self
                    .reasons
                    .get(&(r as u32), 0)
                    .context("reading REASONS")?;
                Ok((r, v.iter().sum()))
            })
            .collect()
    }

    pub fn backend_traffic(&self, id: u32) -> anyhow::Result<Traffic> {
        sum(&self.backend_stats, id)
    }
}

type ConnMap = HashMap<MapData, FlowKey, Conn>;
type ReplyMap = HashMap<MapData, FlowKey, NatReply>;

impl Dataplane {
    fn table(&self, t: Table) -> (&ConnMap, &ReplyMap) {
        match t {
            Table::Established => (&self.conns, &self.nat_replies),
            Table::HalfOpen => (&self.embryos, &self.embryo_replies),
        }
    }

    fn table_mut(&mut self, t: Table) -> (&mut ConnMap, &mut ReplyMap) {
        match t {
            Table::Established => (&mut self.conns, &mut self.nat_replies),
            Table::HalfOpen => (&mut self.embryos, &mut self.embryo_replies),
        }
    }
}

impl Maps for Dataplane {
    /// Every virtual server entry (adopted from a previous run, or ours).
    fn vips(&self) -> Vec<(VipKey, VipInfo)> {
        self.vips.iter().filter_map(Result::ok).collect()
    }

    fn set_vip(&mut self, key: &VipKey, info: &VipInfo) -> anyhow::Result<()> {
        self.vips.insert(key, info, 0).context("writing VIPS")
    }

    fn remove_vip(&mut self, key: &VipKey) {
        let _ = self.vips.remove(key);
    }

    /// A batch of entries per syscall (one syscall per entry took 5 s for
    /// the 6.5 million of 100 mh virtual servers).
    fn set_ring(&mut self, base: u32, ids: &[u32]) -> anyhow::Result<()> {
        const CHUNK: usize = 1 << 16;
        let fd = IterableMap::map(&self.ring).fd().as_fd();
        for (c, chunk) in ids.chunks(CHUNK).enumerate() {
            let start = base + (c * CHUNK) as u32;
            let keys: Vec<u32> = (start..start + chunk.len() as u32).collect();
            update_batch(fd, &keys, chunk).with_context(|| {
                format!("writing RING[{start}..{}]", start as usize + chunk.len())
            })?;
        }
        Ok(())
    }

    /// Slots with a family set.
    fn backends(&self) -> Vec<(u32, Backend)> {
        (0..self.backends.len())
            .filter_map(|i| self.backends.get(&i, 0).ok().map(|b| (i, b)))
            .filter(|(_, b)| b.family != 0)
            .collect()
    }

    fn backend(&self, id: u32) -> Option<Backend> {
        self.backends.get(&id, 0).ok()
    }

    fn set_backends(&mut self, entries: &[(u32, Backend)]) -> anyhow::Result<()> {
        let (ids, backends): (Vec<u32>, Vec<Backend>) = entries.iter().copied().unzip();
        let fd = IterableMap::map(&self.backends).fd().as_fd();
        update_batch(fd, &ids, &backends).context("writing BACKENDS")
    }

    fn nat_servers(&self) -> Vec<(VipKey, NatServer)> {
        self.nat_servers.iter().filter_map(Result::ok).collect()
    }

    fn set_nat_servers(&mut self, entries: &[(VipKey, NatServer)]) -> anyhow::Result<()> {
        let (keys, values): (Vec<VipKey>, Vec<NatServer>) = entries.iter().copied().unzip();
        let fd = IterableMap::map(&self.nat_servers).fd().as_fd();
        update_batch(fd, &keys, &values).context("writing NAT_SERVERS")
    }

    fn remove_nat_server(&mut self, key: &VipKey) {
        let _ = self.nat_servers.remove(key);
    }

    /// Empty if the table cannot be read (said in the log).
    fn conns(&self, t: Table) -> Vec<(FlowKey, Conn)> {
        let fd = IterableMap::map(self.table(t).0).fd().as_fd();
        lookup_batch(fd).unwrap_or_else(|e| {
            tracing::warn!("reading the {t:?} connection table: {e}");
            Vec::new()
        })
    }

    fn conn(&self, t: Table, key: &FlowKey) -> Option<Conn> {
        self.table(t).0.get(key, 0).ok()
    }

    fn insert_conn(&mut self, key: &FlowKey, conn: &Conn) -> anyhow::Result<()> {
        self.conns.insert(key, conn, 0).context("writing CONNS")
    }

    fn insert_nat_reply(
        &mut self,
        t: Table,
        key: &FlowKey,
        reply: &NatReply,
    ) -> anyhow::Result<()> {
        self.table_mut(t)
            .1
            .insert(key, reply, 0)
            .with_context(|| format!("writing the {t:?} reply table"))
    }

    /// Already gone (LRU eviction, a racing sweep) is fine.
    fn remove_conn(&mut self, t: Table, key: &FlowKey, reply: Option<&FlowKey>) {
        let (conns, replies) = self.table_mut(t);
        let _ = conns.remove(key);
        if let Some(rk) = reply {
            let _ = replies.remove(rk);
        }
    }

    fn persist_entries(&self) -> Vec<(PersistKey, Persist)> {
        self.persist.iter().filter_map(Result::ok).collect()
    }

    fn persist(&self, key: &PersistKey) -> Option<Persist> {
        self.persist.get(key, 0).ok()
    }

    fn set_persist(&mut self, key: &PersistKey, value: &Persist) -> anyhow::Result<()> {
        self.persist
            .insert(key, value, 0)
            .context("writing PERSIST")
    }

    /// Already evicted is fine.
    fn remove_persist(&mut self, key: &PersistKey) {
        let _ = self.persist.remove(key);
    }
}

/// `union bpf_attr`'s `batch` member (aya has no batch operations).
#[repr(C)]
#[derive(Default)]
struct Batch {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// One `bpf(cmd, attr)` call; the error is errno's.
fn batch_op(cmd: libc::c_long, attr: &mut Batch) -> std::io::Result<()> {
    // SAFETY: `attr` is a valid bpf_attr prefix of the size passed; the
    // callers' pointers in it name buffers that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<Batch>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `BPF_MAP_UPDATE_BATCH`: all of `keys` -> `values`, or an error. `K` and
/// `V` are the map's key and value types.
fn update_batch<K: aya::Pod, V: aya::Pod>(
    map: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> std::io::Result<()> {
    const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
    assert_eq!(keys.len(), values.len());
    if keys.is_empty() {
        return Ok(());
    }
    let mut attr = Batch {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: keys.len() as u32,
        map_fd: map.as_raw_fd() as u32,
        ..Batch::default()
    };
    batch_op(BPF_MAP_UPDATE_BATCH, &mut attr)?;
    if attr.count as usize != keys.len() {
        return Err(std::io::Error::other(format!(
            "batch update wrote {} of {} entries",
            attr.count,
            keys.len()
        )));
    }
    Ok(())
}

/// Every entry of a hash map, by `BPF_MAP_LOOKUP_BATCH`: the kernel walks
/// bucket by bucket, so a table the datapath churns (a SYN flood through
/// the half-open one) is read once, where key-by-key iteration starts over
/// whenever the key it stands on is evicted, and takes two syscalls an entry.
fn lookup_batch<K: aya::Pod + Default, V: aya::Pod + Default>(
    map: BorrowedFd<'_>,
) -> std::io::Result<Vec<(K, V)>> {
    const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
    /// Entries a call returns at most; more than any one bucket holds.
    const CHUNK: usize = 4096;
    let mut keys = vec![K::default(); CHUNK];
    let mut values = vec![V::default(); CHUNK];
    let mut all = Vec::new();
    // The kernel's cursor (a bucket index); none on the first call.
    let (mut cursor, mut next) = (0u64, 0u64);
    let mut first = true;
    loop {
        let mut attr = Batch {
            in_batch: if first { 0 } else { &raw const cursor as u64 },
            out_batch: &raw mut next as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: map.as_raw_fd() as u32,
            ..Batch::default()
        };
        let done = match batch_op(BPF_MAP_LOOKUP_BATCH, &mut attr) {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Err(e) => return Err(e),
        };
        let n = (attr.count as usize).min(CHUNK);
        all.extend(keys[..n].iter().copied().zip(values[..n].iter().copied()));
        if done {
            return Ok(all);
        }
        cursor = next;
        first = false;
    }
}

fn program(ebpf: &mut Ebpf) -> anyhow::Result<&mut Xdp> {
    ebpf.program_mut(PROGRAM)
        .ok_or_else(|| anyhow!("program {PROGRAM} missing from the eBPF object"))?
        .try_into()
        .context("program is not XDP")
}

fn sum(map: &PerCpuArray<MapData, Traffic>, idx: u32) -> anyhow::Result<Traffic> {
    let per_cpu = map.get(&idx, 0).context("reading traffic counters")?;
    Ok(per_cpu.iter().fold(Traffic::default(), |a, t| Traffic {
        conns: a.conns + t.conns,
        packets_in: a.packets_in + t.packets_in,
        bytes_in: a.bytes_in + t.bytes_in,
        packets_out: a.packets_out + t.packets_out,
        bytes_out: a.bytes_out + t.bytes_out,
    }))
}

/// Whether a pinned link is kept: what runs on `iface` (`running`) must be
/// its program (`pinned_prog`), in the configured `mode`. A previous run's
/// link with another mode, or one left by an interface that is gone, would
/// otherwise be adopted as it is.
pub fn keep_pinned(
    iface: &str,
    pinned_prog: u32,
    running: Option<XdpRunning>,
    mode: config::XdpMode,
) -> anyhow::Result<()> {
    match running {
        None => Err(anyhow!(
            "no XDP program runs on {iface}: its pinned link is stale"
        )),
        Some(r) if r.prog_id != pinned_prog => Err(anyhow!(
            "the program on {iface} (id {}) is not its pinned link's (id {pinned_prog})",
            r.prog_id
        )),
        Some(r) if r.mode == Some(mode) => Ok(()),
        Some(r) => Err(anyhow!(
            "the pinned link on {iface} is attached in {} mode, the configuration says {mode}",
            r.mode.map_or("another", config::XdpMode::as_str)
        )),
    }
}

/// Bytes of the `SYNC_EVENTS` ring: room for an event (72 bytes and an 8-byte
/// header) per 16 table entries, a power of two (the kernel's rule) between
/// 256 KiB and 64 MiB.
fn sync_ring_bytes(conntrack_max: u32) -> u32 {
    let events = u64::from(conntrack_max / 16).max(1);
    (events * 80).next_power_of_two().clamp(1 << 18, 1 << 26) as u32
}

/// `CLOCK_MONOTONIC`: the datapath's timestamps (`bpf_ktime_get_coarse_ns`, the
/// same clock at the last tick) are at most a tick behind it.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32).as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::XdpMode::{Generic, Native};

    #[test]
    fn a_pinned_link_in_another_mode_or_not_on_its_interface_is_not_kept() {
        let running = |prog_id, mode| Some(XdpRunning { prog_id, mode });
        keep_pinned("eth0", 7, running(7, Some(Native)), Native).expect("the same link, same mode");
        let refused = |running, mode| {
            keep_pinned("eth0", 7, running, mode)
                .expect_err("not kept")
                .to_string()
        };
        assert_eq!(
            refused(running(7, Some(Native)), Generic),
            "the pinned link on eth0 is attached in native mode, the configuration says generic"
        );
        assert_eq!(
            refused(running(7, None), Native),
            "the pinned link on eth0 is attached in another mode, the configuration says native"
        );
        assert_eq!(
            refused(running(9, Some(Native)), Native),
            "the program on eth0 (id 9) is not its pinned link's (id 7)"
        );
        assert_eq!(
            refused(None, Native),
            "no XDP program runs on eth0: its pinned link is stale"
        );
    }
}
