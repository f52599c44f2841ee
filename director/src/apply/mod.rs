//! The one way the datapath's maps are written: desired state in (the
//! configuration, health, operator overrides, next hops, synced entries),
//! map writes out. The daemon, the packet fixtures and the bench all go
//! through `Reconciler`, so the tests exercise the code that ships.
//!
//! Writes are minimal and ordered so no packet sees a half state: a virtual
//! server's new lists go to free `RING` slots before its `VipInfo` names
//! them; a NAT server whose replies will no longer be found through its
//! virtual server gets reply entries before `NAT_SERVERS` changes.

mod entries;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use anyhow::anyhow;
use director_common::abi::{
    BACKEND_F_DOWN, Backend, CONN_F_NAT, NAT_SERVER_F_REPLY_ENTRIES, NatReply, NatServer, VipInfo,
    VipKey,
};
use director_common::entries::{Hop, endpoint_key};
use director_common::{sh, wrr};

pub use entries::{ConnId, Installed, SyncedConn, SyncedPersist};

use crate::config::{Config, Forward, Scheduler, VirtualServer};
use crate::dataplane::{Created, Dataplane, PinDir, Sizes};
use crate::gc;
#[cfg(test)]
use crate::maps::Memory;
use crate::maps::{Maps, Table};
use crate::model::{self, Changes, Model, RsEntry, Written};
use crate::plan;
use crate::ring_alloc::RingAlloc;

impl Sizes {
    /// Map capacities for a configuration, kept until `director teardown`:
    /// ids for every virtual and real server twice over (a reload that
    /// replaces them all gets new ids while the old ones drain), and ring
    /// slots for every list four times over (a changed list is written
    /// beside the old one, which is retired after a grace period), with
    /// room for reloads to grow. Backend ids are not free: 400 000 of them
    /// (per-CPU counters, the NAT server hash) cost 300 ms at start.
    pub fn for_config(cfg: &Config) -> Sizes {
        let vss = &cfg.virtual_servers;
        let servers: usize = vss.iter().map(|v| v.real_servers.len()).sum();
        let lists: u64 = vss.iter().map(longest_lists).sum();
        let at_least = |n: u64, min: u32| n.clamp(min.into(), u32::MAX.into()) as u32;
        Sizes {
            conntrack_max: cfg.director.conntrack_max,
            // As many as established: a flood's SYNs churn this table alone,
            // and each half-open entry lives the longer for it.
            half_open_max: cfg.director.conntrack_max,
            vips: at_least(vss.len() as u64 * 2, 1024),
            backends: at_least(servers as u64 * 2, 16_384),
            ring: at_least(lists * 4, 1 << 20),
        }
    }
}

/// The most `RING` slots a virtual server's three lists take with its
/// configured weights. Health and drains only shrink a wrr ring (a subset's
/// weights reduce by a multiple of the whole set's divisor), so the room of
/// `Sizes::for_config` is for reloads and weight overrides; sizing every
/// wrr ring at its 65 536-slot maximum made 1000 virtual servers a 1 GiB map.
fn longest_lists(vs: &VirtualServer) -> u64 {
    let table = match vs.scheduler {
        Scheduler::Rr => vs.real_servers.len() as u64,
        Scheduler::Wrr => {
            let weights: Vec<u32> = vs.real_servers.iter().map(|rs| rs.weight).collect();
            wrr::reduce(&weights, wrr::MAX_RING)
                .iter()
                .map(|&w| u64::from(w))
                .sum()
        }
        Scheduler::Sh => sh::DEFAULT_TABLE_SIZE.into(),
        Scheduler::Mh => vs.mh_table_size.into(),
        Scheduler::Lc | Scheduler::Wlc => 0,
    };
    table + vs.real_servers.len() as u64
}

/// What the pinned maps of a previous run held, and what of it the
/// configuration does not claim: `Reconciler::forget_unclaimed` removes that
/// once the configuration's own entries are written.
#[derive(Debug, Default)]
pub struct Adopted {
    pub virtual_servers: usize,
    pub real_servers: usize,
    pub unclaimed_vips: Vec<(VipKey, VipInfo)>,
    pub unclaimed_backends: Vec<u32>,
}

pub struct Reconciler<M: Maps = Dataplane> {
    maps: M,
    model: Model,
    rings: RingAlloc,
    hops: HashMap<u32, Hop>,
    /// `BACKENDS` as last written, by id.
    written: HashMap<u32, Backend>,
    /// `NAT_SERVERS` as last written.
    nat_servers: Option<HashMap<VipKey, NatServer>>,
    /// Virtual servers (indices in the model) whose lists may have changed
    /// since the last `apply`; `None`: any of them. A health or operator
    /// change through `server_mut` recomputes one virtual server's lists,
    /// not a thousand's.
    dirty: Option<HashSet<usize>>,
    /// The set of virtual and real servers may have changed since the last
    /// `apply` (a reload, a finished drain): every backend and NAT server is
    /// checked, not only those of changed lists and next hops.
    servers_changed: bool,
    /// Backends whose next hop changed since the last `apply`.
    new_hops: HashSet<u32>,
}

impl Reconciler<Dataplane> {
    /// Loads the program with fresh, unpinned maps sized for `cfg` and
    /// brings the model to it; nothing is written until `apply`.
    pub fn load(cfg: &Config) -> anyhow::Result<Reconciler> {
        let sizes = Sizes::for_config(cfg);
        let mut r = Reconciler::new(Dataplane::load(&sizes)?, &sizes);
        r.reconcile(cfg, Instant::now()).map_err(|e| anyhow!(e))?;
        Ok(r)
    }

    /// Opens the pinned datapath under `pins` (a previous run's maps are
    /// adopted: their capacities, ids and entries) and brings the model to
    /// `cfg`. What this start pins joins `created` (see
    /// `Dataplane::open_pinned`).
    pub fn open_pinned(
        cfg: &Config,
        pins: &PinDir,
        created: Created,
    ) -> anyhow::Result<(Reconciler, Adopted)> {
        let sizes = Sizes::for_config(cfg);
        let dp = Dataplane::open_pinned(&sizes, pins, created)?;
        let sizes = dp.sizes();
        let mut r = Reconciler::new(dp, &sizes);
        let (virtual_servers, real_servers) = r.adopt();
        r.reconcile(cfg, Instant::now()).map_err(|e| anyhow!(e))?;
        let (unclaimed_vips, unclaimed_backends) = r.model.unclaimed();
        let adopted = Adopted {
            virtual_servers,
            real_servers,
            unclaimed_vips,
            unclaimed_backends,
        };
        Ok((r, adopted))
    }
}

#[cfg(test)]
impl Reconciler<Memory> {
    /// In-memory maps of `sizes`, running `cfg`: reconciled and applied.
    pub fn running(cfg: &Config, sizes: &Sizes) -> Reconciler<Memory> {
        let mut r = Reconciler::new(Memory::new(sizes.backends, sizes.ring), sizes);
        r.reconcile(cfg, Instant::now()).expect("reconcile");
        r.apply().expect("apply");
        r
    }
}

impl<M: Maps> Reconciler<M> {
    pub fn new(maps: M, sizes: &Sizes) -> Reconciler<M> {
        Reconciler {
            maps,
            model: Model::new(sizes.backends, sizes.vips),
            rings: RingAlloc::new(sizes.ring),
            hops: HashMap::new(),
            written: HashMap::new(),
            nat_servers: None,
            servers_changed: true,
            new_hops: HashSet::new(),
            dirty: None,
        }
    }

    pub fn maps(&self) -> &M {
        &self.maps
    }

    pub fn maps_mut(&mut self) -> &mut M {
        &mut self.maps
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// For changes `server_mut` does not cover; the next `apply` checks
    /// every virtual server.
    pub fn model_mut(&mut self) -> &mut Model {
        self.dirty = None;
        &mut self.model
    }

    /// For a health or operator change of real server `j` of virtual server
    /// `i` (as `Model::find` names them); `apply` writes its effect.
    pub fn server_mut(&mut self, i: usize, j: usize) -> &mut RsEntry {
        if let Some(dirty) = &mut self.dirty {
            dirty.insert(i);
        }
        &mut self.model.vss[i].servers[j]
    }

    /// Takes over the ids and ring slots of what the maps already hold;
    /// returns how many virtual and real servers that is.
    fn adopt(&mut self) -> (usize, usize) {
        let vips = self.maps.vips();
        let backends = self.maps.backends();
        for (_, info) in &vips {
            self.rings.reserve(model::region_of(info));
        }
        self.model.adopt(&vips, &backends);
        (vips.len(), backends.len())
    }

    /// Brings the model to `cfg` (see `Model::reconcile`); `apply` writes it.
    pub fn reconcile(&mut self, cfg: &Config, now: Instant) -> Result<Changes, String> {
        // On a copy: a configuration refused half-way (no free id) leaves
        // the running model as it was, not half reloaded.
        let mut next = self.model.clone();
        let changes = next.reconcile(cfg, now)?;
        self.model = next;
        self.servers_changed = true;
        self.dirty = None;
        Ok(changes)
    }

    /// A server's next hop; true when it changed. `apply` writes it.
    pub fn set_hop(&mut self, id: u32, hop: Hop) -> bool {
        let changed = self.hops.insert(id, hop) != Some(hop);
        if changed {
            self.new_hops.insert(id);
        }
        changed
    }

    pub fn hop(&self, id: u32) -> Option<&Hop> {
        self.hops.get(&id)
    }

    /// Writes what the model says: each virtual server's lists whose content
    /// changed (to fresh slots, then its `VipInfo`), every backend whose
    /// entry changed, then `NAT_SERVERS` (which reads the backends when a
    /// server's replies move to reply entries). The cost follows what
    /// changed: a health transition or a next hop touches one virtual
    /// server's entries, not every one's.
    pub fn apply(&mut self) -> anyhow::Result<()> {
        let relisted = self.apply_lists()?;
        self.apply_backends(&relisted)?;
        if self.servers_changed {
            self.apply_nat_servers()?;
        }
        self.servers_changed = false;
        self.new_hops.clear();
        self.dirty = Some(HashSet::new());
        Ok(())
    }

    /// Writes the lists of every virtual server whose inputs changed;
    /// returns their indices.
    fn apply_lists(&mut self) -> anyhow::Result<HashSet<usize>> {
        let now = Instant::now();
        let mut relisted = HashSet::new();
        for (i, vs) in self.model.vss.iter_mut().enumerate() {
            if self.dirty.as_ref().is_some_and(|d| !d.contains(&i)) {
                continue;
            }
            let members = vs.members();
            let same_inputs = |w: &Written| {
                w.inputs
                    .as_ref()
                    .is_some_and(|(cfg, m)| *cfg == vs.cfg && *m == members)
            };
            if vs.written.as_ref().is_some_and(same_inputs) {
                continue;
            }
            relisted.insert(i);
            let lists = plan::lists(&vs.cfg, &members);
            let flat = lists.flat();
            let unchanged = vs.written.as_ref().is_some_and(|w| {
                w.lists == flat
                    && w.info == plan::vip_info(&vs.cfg, vs.vip_id, w.region.base, &lists)
            });
            if unchanged {
                if let Some(w) = &mut vs.written {
                    w.inputs = Some((vs.cfg.clone(), members));
                }
                continue;
            }
            let region = self.rings.alloc(flat.len() as u32, now).ok_or_else(|| {
                anyhow!("scheduling ring map full: `director teardown` and restart to grow it")
            })?;
            self.maps.set_ring(region.base, &flat)?;
            let info = plan::vip_info(&vs.cfg, vs.vip_id, region.base, &lists);
            self.maps.set_vip(&vs.key, &info)?;
            if let Some(old) = vs.written.replace(Written {
                region,
                info,
                lists: flat,
                inputs: Some((vs.cfg.clone(), members)),
            }) {
                self.rings.retire(old.region, now);
            }
        }
        Ok(relisted)
    }

    /// Writes every backend entry that changed, looking at the servers of
    /// `relisted` virtual servers and those with a new next hop (all of them
    /// after a reload).
    fn apply_backends(&mut self, relisted: &HashSet<usize>) -> anyhow::Result<()> {
        let mut changed = Vec::new();
        for (i, vs) in self.model.vss.iter().enumerate() {
            let whole = self.servers_changed || relisted.contains(&i);
            for rs in &vs.servers {
                if !whole && !self.new_hops.contains(&rs.id) {
                    continue;
                }
                let mut b = Backend::new(
                    rs.cfg.address,
                    vs.vip_id,
                    rs.effective_weight(),
                    rs.cfg.max_connections,
                );
                if let Some(hop) = self.hops.get(&rs.id) {
                    b = b.via(hop);
                }
                if rs.is_down() {
                    b.flags |= BACKEND_F_DOWN;
                }
                if self.written.get(&rs.id) != Some(&b) {
                    changed.push((rs.id, b));
                }
            }
        }
        if !changed.is_empty() {
            self.maps.set_backends(&changed)?;
            self.written.extend(changed);
        }
        Ok(())
    }

    /// `NAT_SERVERS` of every NAT virtual server, removed ones included
    /// (replies of their draining connections still come).
    fn apply_nat_servers(&mut self) -> anyhow::Result<()> {
        let want = plan::nat_servers(
            self.model
                .vss
                .iter()
                .filter(|vs| vs.cfg.forward == Forward::Nat)
                .map(|vs| {
                    (
                        vs.key,
                        vs.vip_id,
                        vs.servers.iter().map(|rs| &rs.cfg.address),
                    )
                }),
        );
        if self.nat_servers.as_ref() != Some(&want) {
            self.set_nat_servers(&want)?;
            self.nat_servers = Some(want);
        }
        Ok(())
    }

    /// Makes `NAT_SERVERS` what `want` says. A server whose replies are
    /// found through its virtual server, and will not be (it becomes shared,
    /// moves or goes), first gets reply entries: new connections record one
    /// from then on, and existing ones get theirs from `CONNS` here, so no
    /// reply is lost in the change.
    fn set_nat_servers(&mut self, want: &HashMap<VipKey, NatServer>) -> anyhow::Result<()> {
        let have: HashMap<VipKey, NatServer> = self.maps.nat_servers().into_iter().collect();
        let same_vip = |a: &NatServer, b: &NatServer| {
            (a.vip_id, a.vip, a.vip_port) == (b.vip_id, b.vip, b.vip_port)
        };
        let losing: Vec<(VipKey, NatServer)> = have
            .iter()
            .filter(|(k, old)| {
                old.derives()
                    && want
                        .get(k)
                        .is_none_or(|new| !new.derives() || !same_vip(new, old))
            })
            .map(|(&k, &old)| {
                let flags = old.flags | NAT_SERVER_F_REPLY_ENTRIES;
                (k, NatServer { flags, ..old })
            })
            .collect();
        if !losing.is_empty() {
            self.maps.set_nat_servers(&losing)?;
            self.record_replies(&losing.iter().map(|(k, _)| *k).collect())?;
        }
        let changed: Vec<(VipKey, NatServer)> = want
            .iter()
            .filter(|(k, v)| have.get(k) != Some(v))
            .map(|(k, v)| (*k, *v))
            .collect();
        self.maps.set_nat_servers(&changed)?;
        for k in have.keys().filter(|k| !want.contains_key(k)) {
            self.maps.remove_nat_server(k);
        }
        Ok(())
    }

    /// Gives every NAT connection to one of `servers` its reply entry,
    /// built from the connection, in the connection's table.
    fn record_replies(&mut self, servers: &HashSet<VipKey>) -> anyhow::Result<()> {
        for t in Table::BOTH {
            for (key, conn) in self.maps.conns(t) {
                if conn.flags & CONN_F_NAT == 0 {
                    continue;
                }
                let Some(be) = self.maps.backend(conn.backend_id) else {
                    continue;
                };
                if servers.contains(&endpoint_key(be.server(), key.proto)) {
                    let reply = NatReply::of(&key, &conn);
                    self.maps.insert_nat_reply(t, &key.reply_via(&be), &reply)?;
                }
            }
        }
        Ok(())
    }

    /// What the table upkeep needs to know of the configuration, by id.
    pub fn view(&self) -> gc::View {
        let mut view = gc::View::default();
        for vs in &self.model.vss {
            view.vips.insert(
                vs.vip_id,
                (
                    vs.cfg.timeouts,
                    vs.cfg.persistence,
                    vs.cfg.persistence_prefix(),
                ),
            );
            for rs in &vs.servers {
                view.backends
                    .insert(rs.id, Backend::new(rs.cfg.address, vs.vip_id, 0, 0));
            }
        }
        view
    }

    /// Removes every connection (and persistence) entry naming one of
    /// `ids`: a drained server's stragglers at its drain timeout, or a
    /// failed server's connections with `on_failure = "reset"`. Returns how
    /// many connections.
    pub fn expire(&mut self, ids: &HashSet<u32>) -> usize {
        // Reply keys from the backends' entries as the datapath has them:
        // a previous run's servers are in the maps, not in the model.
        let mut servers: HashMap<u32, Option<Backend>> = HashMap::new();
        let mut n = 0;
        for t in Table::BOTH {
            for (key, conn) in self.maps.conns(t) {
                if !ids.contains(&conn.backend_id) {
                    continue;
                }
                let be = *servers
                    .entry(conn.backend_id)
                    .or_insert_with(|| self.maps.backend(conn.backend_id));
                let reply = be.filter(|_| conn.flags & CONN_F_NAT != 0);
                self.maps
                    .remove_conn(t, &key, reply.map(|b| key.reply_via(&b)).as_ref());
                n += 1;
            }
        }
        for (key, entry) in self.maps.persist_entries() {
            if ids.contains(&entry.backend_id) {
                self.maps.remove_persist(&key);
            }
        }
        n
    }

    /// Removes what a previous run left that the configuration does not
    /// claim: its virtual servers, and its servers' connections and
    /// entries. Returns how many connections went.
    pub fn forget_unclaimed(&mut self, old: &Adopted) -> anyhow::Result<usize> {
        let now = Instant::now();
        for (key, info) in &old.unclaimed_vips {
            self.maps.remove_vip(key);
            self.rings.retire(model::region_of(info), now);
        }
        let n = self.expire(&old.unclaimed_backends.iter().copied().collect());
        let empty: Vec<(u32, Backend)> = old
            .unclaimed_backends
            .iter()
            .map(|id| (*id, Backend::default()))
            .collect();
        self.maps.set_backends(&empty)?;
        Ok(n)
    }

    /// Ends drains whose timeout has passed at `now`: operator-drained
    /// servers' connections are expired once; removed servers' connections
    /// are expired and the servers forgotten (with their virtual server when
    /// it was removed and is now empty). Returns the two connection counts.
    pub fn finish_drains(&mut self, now: Instant) -> anyhow::Result<(usize, usize)> {
        let (removed, drained) = self.model.due_drains(now);
        let by_operator = self.expire(&drained.iter().copied().collect());
        for rs in self.model.vss.iter_mut().flat_map(|vs| &mut vs.servers) {
            if drained.contains(&rs.id) {
                rs.operator_drain_done = true;
            }
        }
        if removed.is_empty() {
            return Ok((by_operator, 0));
        }
        let gone = self.expire(&removed.iter().copied().collect());
        self.servers_changed = true;
        self.dirty = None;
        for id in &removed {
            self.maps.set_backends(&[(*id, Backend::default())])?;
            self.written.remove(id);
            self.hops.remove(id);
            if let Some((key, region)) = self.model.finish_drain(*id) {
                self.maps.remove_vip(&key);
                if let Some(r) = region {
                    self.rings.retire(r, now);
                }
            }
        }
        self.apply()?;
        Ok((by_operator, gone))
    }
}
