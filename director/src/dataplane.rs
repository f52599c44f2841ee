//! The loaded XDP program and typed handles on its maps. The only place
//! that knows map names; everything it writes comes from `plan`.

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use director_common::abi::{
    Backend, Conn, ConnCounts, FlowKey, NatReply, Persist, PersistKey, Reason, Traffic, VipInfo,
    VipKey,
};

use crate::plan::{Plan, Sizes};

/// The compiled datapath, built by build.rs through aya-build.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/director"));

const PROGRAM: &str = "director";

pub struct Dataplane {
    ebpf: Ebpf,
    vips: HashMap<MapData, VipKey, VipInfo>,
    backends: Array<MapData, Backend>,
    ring: Array<MapData, u32>,
    conns: HashMap<MapData, FlowKey, Conn>,
    nat_replies: HashMap<MapData, FlowKey, NatReply>,
    persist: HashMap<MapData, PersistKey, Persist>,
    backend_conns: Array<MapData, ConnCounts>,
    backend_released: Array<MapData, ConnCounts>,
    reasons: PerCpuArray<MapData, u64>,
    vip_stats: PerCpuArray<MapData, Traffic>,
    backend_stats: PerCpuArray<MapData, Traffic>,
    links: Vec<(String, XdpLinkId)>,
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
    /// Loads the program and creates its maps with the given capacities.
    /// Nothing is attached yet.
    pub fn load(sizes: &Sizes) -> anyhow::Result<Dataplane> {
        if OBJECT.is_empty() {
            anyhow::bail!("this binary was built with AYA_BUILD_SKIP=1 and has no eBPF program");
        }
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("VIPS", sizes.vips)
            .map_max_entries("BACKENDS", sizes.backends)
            .map_max_entries("BACKEND_STATS", sizes.backends)
            .map_max_entries("RING", sizes.ring)
            .map_max_entries("CURSORS", sizes.vips)
            .map_max_entries("VIP_STATS", sizes.vips)
            .map_max_entries("CONNS", sizes.conntrack_max)
            .map_max_entries("NAT_REPLIES", sizes.conntrack_max)
            .map_max_entries("PERSIST", sizes.conntrack_max)
            .map_max_entries("BACKEND_CONNS", sizes.backends)
            .map_max_entries("BACKEND_RELEASED", sizes.backends)
            .load(OBJECT)
            .context("loading the eBPF object (is this kernel built with BPF and BTF?)")?;
        program(&mut ebpf)?
            .load()
            .context("the kernel verifier rejected the XDP program")?;
        Ok(Dataplane {
            vips: take(&mut ebpf, "VIPS")?,
            backends: take(&mut ebpf, "BACKENDS")?,
            ring: take(&mut ebpf, "RING")?,
            conns: take(&mut ebpf, "CONNS")?,
            nat_replies: take(&mut ebpf, "NAT_REPLIES")?,
            persist: take(&mut ebpf, "PERSIST")?,
            backend_conns: take(&mut ebpf, "BACKEND_CONNS")?,
            backend_released: take(&mut ebpf, "BACKEND_RELEASED")?,
            reasons: take(&mut ebpf, "REASONS")?,
            vip_stats: take(&mut ebpf, "VIP_STATS")?,
            backend_stats: take(&mut ebpf, "BACKEND_STATS")?,
            ebpf,
            links: Vec::new(),
        })
    }

    pub fn program(&mut self) -> anyhow::Result<&mut Xdp> {
        program(&mut self.ebpf)
    }

    pub fn attach(&mut self, iface: &str, mode: XdpMode) -> anyhow::Result<()> {
        let link = self
            .program()?
            .attach(iface, mode)
            .with_context(|| format!("attaching XDP ({mode:?}) to {iface}"))?;
        self.links.push((iface.to_string(), link));
        Ok(())
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

    /// Writes a plan's rings and virtual servers. Backends are written by
    /// the caller once their next hops are resolved.
    pub fn install(&mut self, plan: &Plan) -> anyhow::Result<()> {
        for (i, &id) in plan.ring.iter().enumerate() {
            self.ring.set(i as u32, id, 0).context("writing RING")?;
        }
        for v in &plan.vips {
            self.vips
                .insert(v.key, v.info, 0)
                .with_context(|| format!("writing VIPS for {}", v.name))?;
        }
        Ok(())
    }

    pub fn set_backend(&mut self, id: u32, backend: &Backend) -> anyhow::Result<()> {
        self.backends
            .set(id, backend, 0)
            .with_context(|| format!("writing BACKENDS[{id}]"))
    }

    pub fn set_vip(&mut self, key: &VipKey, info: &VipInfo) -> anyhow::Result<()> {
        self.vips.insert(key, info, 0).context("writing VIPS")
    }

    pub fn set_ring(&mut self, base: u32, ids: &[u32]) -> anyhow::Result<()> {
        for (i, &id) in ids.iter().enumerate() {
            self.ring
                .set(base + i as u32, id, 0)
                .context("writing RING")?;
        }
        Ok(())
    }

    /// Installs a connection and, if given, its NAT reply entry: the same
    /// path state sync will use.
    pub fn insert_conn(
        &mut self,
        key: &FlowKey,
        conn: &Conn,
        reply: Option<(&FlowKey, &NatReply)>,
    ) -> anyhow::Result<()> {
        if let Some((rk, r)) = reply {
            self.nat_replies
                .insert(rk, r, 0)
                .context("writing NAT_REPLIES")?;
        }
        self.conns.insert(key, conn, 0).context("writing CONNS")
    }

    pub fn conn(&self, key: &FlowKey) -> Option<Conn> {
        self.conns.get(key, 0).ok()
    }

    pub fn nat_reply(&self, key: &FlowKey) -> Option<NatReply> {
        self.nat_replies.get(key, 0).ok()
    }

    /// Every connection entry (a snapshot; entries may change meanwhile).
    pub fn conns(&self) -> Vec<(FlowKey, Conn)> {
        self.conns.iter().filter_map(Result::ok).collect()
    }

    pub fn remove_conn(&mut self, key: &FlowKey, reply: Option<&FlowKey>) {
        // Already gone (LRU eviction, a racing GC) is fine.
        let _ = self.conns.remove(key);
        if let Some(rk) = reply {
            let _ = self.nat_replies.remove(rk);
        }
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

    pub fn persist_entries(&self) -> Vec<(PersistKey, Persist)> {
        self.persist.iter().filter_map(Result::ok).collect()
    }

    pub fn set_persist(&mut self, key: &PersistKey, value: &Persist) -> anyhow::Result<()> {
        self.persist
            .insert(key, value, 0)
            .context("writing PERSIST")
    }

    pub fn remove_persist(&mut self, key: &PersistKey) {
        // Already evicted is fine.
        let _ = self.persist.remove(key);
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

    pub fn vip_traffic(&self, vip_id: u32) -> anyhow::Result<Traffic> {
        sum(&self.vip_stats, vip_id)
    }

    pub fn backend_traffic(&self, id: u32) -> anyhow::Result<Traffic> {
        sum(&self.backend_stats, id)
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

/// `CLOCK_MONOTONIC`, the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32).as_nanos() as u64
}
