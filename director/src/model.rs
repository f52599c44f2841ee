//! The control plane's view of what should be in the datapath: virtual and
//! real servers with stable ids, health, operator overrides and drains.
//! `reconcile` turns a (re)loaded configuration into changes of this view
//! without disturbing servers that stay; `daemon` writes the result.
//!
//! Ids are stable for a server's whole life (connection entries name their
//! backend by id), survive restarts by adoption from the pinned maps, and
//! are reused only after every connection entry naming them is gone.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use director_common::abi::{Backend, VipInfo, VipKey};
use serde::Serialize;

use crate::config::{Config, RealServer, VirtualServer};
use crate::plan::{Member, vip_key};
use crate::ring_alloc::Region;

/// Drain timeout when a virtual server sets none.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Up,
    Down,
    /// No health check configured.
    Unchecked,
}

#[derive(Clone, Debug)]
pub struct RsEntry {
    pub id: u32,
    pub cfg: RealServer,
    pub health: Health,
    /// `director weight` override, until the next reload changes the weight.
    pub weight_override: Option<u32>,
    /// Removed from the configuration: no new connections; existing ones
    /// end by themselves or at the drain timeout, then the server is gone.
    pub draining_since: Option<Instant>,
    /// `director drain`: as above, but the server stays (at weight 0) until
    /// `director undrain` or a reload that changes its weight.
    pub operator_drain: Option<Instant>,
    /// The operator drain's timeout has expired its connections.
    pub operator_drain_done: bool,
}

impl RsEntry {
    /// The weight scheduling uses now.
    pub fn effective_weight(&self) -> u32 {
        if self.is_down() {
            0
        } else {
            self.weight_override.unwrap_or(self.cfg.weight)
        }
    }

    /// No new connections and no persistence to it.
    pub fn is_down(&self) -> bool {
        self.health == Health::Down
            || self.draining_since.is_some()
            || self.operator_drain.is_some()
    }
}

#[derive(Clone, Debug)]
pub struct VsEntry {
    pub vip_id: u32,
    pub cfg: VirtualServer,
    pub key: VipKey,
    pub servers: Vec<RsEntry>,
    /// Removed from the configuration: its servers drain, then it goes.
    pub removed: bool,
    /// Where its lists are in `RING`, and what was last written there.
    pub written: Option<Written>,
}

impl VsEntry {
    pub fn members(&self) -> Vec<Member> {
        self.servers
            .iter()
            .map(|rs| Member {
                id: rs.id,
                address: rs.cfg.address,
                weight: rs.effective_weight(),
                backup: rs.cfg.backup,
            })
            .collect()
    }

    pub fn drain_timeout(&self) -> Duration {
        self.cfg.drain_timeout.unwrap_or(DEFAULT_DRAIN)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub region: Region,
    pub info: VipInfo,
    pub lists: Vec<u32>,
    /// What the lists were computed from (none for a previous run's):
    /// unchanged inputs need no recomputation.
    pub inputs: Option<(VirtualServer, Vec<Member>)>,
}

/// Smallest-free-first id allocation within a map's capacity.
#[derive(Clone, Debug, Default)]
struct IdPool {
    cap: u32,
    used: BTreeSet<u32>,
    /// No id below this is free: allocating n ids costs O(n log n), not
    /// O(n²) (100 000 backends took minutes).
    lowest_free: u32,
}

impl IdPool {
    fn alloc(&mut self) -> Option<u32> {
        let id = (self.lowest_free..self.cap).find(|i| !self.used.contains(i))?;
        self.used.insert(id);
        self.lowest_free = id + 1;
        Some(id)
    }

    fn take(&mut self, id: u32) {
        self.used.insert(id);
    }

    fn free(&mut self, id: u32) {
        self.used.remove(&id);
        self.lowest_free = self.lowest_free.min(id);
    }
}

/// What a reconcile changed, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub updated: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.updated.is_empty()
    }
}

#[derive(Clone, Debug, Default)]
pub struct Model {
    pub vss: Vec<VsEntry>,
    backend_ids: IdPool,
    vip_ids: IdPool,
    /// From a previous run's maps, until the configuration claims them.
    adopted_vips: HashMap<VipKey, (u32, VipInfo)>,
    adopted_backends: HashMap<(u32, SocketAddr), u32>,
    adopted_info: HashMap<u32, VipInfo>,
}

/// The `RING` slots a `VipInfo` names (its three lists are contiguous).
pub fn region_of(info: &VipInfo) -> Region {
    let end = (info.ring_base + info.ring_len)
        .max(info.members_base + info.members_len)
        .max(info.backup_base + info.backup_len);
    Region {
        base: info.ring_base,
        len: end - info.ring_base,
    }
}

impl Model {
    pub fn new(backend_cap: u32, vip_cap: u32) -> Model {
        Model {
            backend_ids: IdPool {
                cap: backend_cap,
                ..IdPool::default()
            },
            vip_ids: IdPool {
                cap: vip_cap,
                ..IdPool::default()
            },
            ..Model::default()
        }
    }

    /// Takes over the ids of a previous run's maps.
    pub fn adopt(&mut self, vips: &[(VipKey, VipInfo)], backends: &[(u32, Backend)]) {
        for (key, info) in vips {
            self.vip_ids.take(info.vip_id);
            self.adopted_vips.insert(*key, (info.vip_id, *info));
        }
        for (id, b) in backends {
            self.backend_ids.take(*id);
            self.adopted_backends.insert((b.vip_id, b.server()), *id);
        }
    }

    /// Adopted entries the configuration did not claim: virtual servers to
    /// remove from the maps, and backend ids whose connections to expire.
    pub fn unclaimed(&mut self) -> (Vec<(VipKey, VipInfo)>, Vec<u32>) {
        let vips: Vec<_> = self
            .adopted_vips
            .drain()
            .map(|(k, (_, i))| (k, i))
            .collect();
        let backends: Vec<u32> = self.adopted_backends.drain().map(|(_, id)| id).collect();
        for (_, info) in &vips {
            self.vip_ids.free(info.vip_id);
        }
        for id in &backends {
            self.backend_ids.free(*id);
        }
        (vips, backends)
    }

    fn new_backend(
        &mut self,
        vip_id: u32,
        rs: &RealServer,
        checked: bool,
    ) -> Result<RsEntry, String> {
        let id = match self.adopted_backends.remove(&(vip_id, rs.address)) {
            Some(id) => id,
            None => self
                .backend_ids
                .alloc()
                .ok_or_else(|| format!("no free backend id for {} (map full)", rs.address))?,
        };
        Ok(RsEntry {
            id,
            cfg: rs.clone(),
            health: if checked {
                Health::Up
            } else {
                Health::Unchecked
            },
            weight_override: None,
            draining_since: None,
            operator_drain: None,
            operator_drain_done: false,
        })
    }

    /// Brings the model to `cfg`: new servers get ids, changed ones their new
    /// settings, removed ones start draining. Servers that stay keep their
    /// ids, health and connections.
    pub fn reconcile(&mut self, cfg: &Config, now: Instant) -> Result<Changes, String> {
        let mut changes = Changes::default();
        let mut seen = vec![false; self.vss.len()];
        for vs in &cfg.virtual_servers {
            let key = vip_key(vs);
            let found = self
                .vss
                .iter()
                .position(|e| !e.removed && e.cfg.name == vs.name && e.key == key);
            let idx = match found {
                Some(i) => {
                    seen[i] = true;
                    if self.vss[i].cfg != *vs {
                        changes.updated.push(vs.name.clone());
                    }
                    self.vss[i].cfg = vs.clone();
                    i
                }
                None => {
                    let vip_id = match self.adopted_vips.remove(&key) {
                        Some((id, info)) => {
                            self.adopted_info.insert(id, info);
                            id
                        }
                        None => self
                            .vip_ids
                            .alloc()
                            .ok_or_else(|| format!("no free virtual server id for {}", vs.name))?,
                    };
                    // A previous run's lists: rewritten (and their slots
                    // retired) on the first apply.
                    let written = self.adopted_info.remove(&vip_id).map(|info| Written {
                        region: region_of(&info),
                        info,
                        lists: Vec::new(),
                        inputs: None,
                    });
                    self.vss.push(VsEntry {
                        vip_id,
                        cfg: vs.clone(),
                        key,
                        servers: Vec::new(),
                        removed: false,
                        written,
                    });
                    seen.push(true);
                    changes.added.push(vs.name.clone());
                    self.vss.len() - 1
                }
            };
            let vip_id = self.vss[idx].vip_id;
            let mut kept = vec![false; self.vss[idx].servers.len()];
            for rs in &vs.real_servers {
                let existing = self.vss[idx]
                    .servers
                    .iter()
                    .position(|e| e.cfg.address == rs.address);
                match existing {
                    Some(j) => {
                        kept[j] = true;
                        let e = &mut self.vss[idx].servers[j];
                        if e.cfg.weight != rs.weight {
                            e.weight_override = None;
                            e.operator_drain = None;
                            e.operator_drain_done = false;
                        }
                        if e.draining_since.is_some() {
                            changes.added.push(format!("{}/{}", vs.name, rs.address));
                        }
                        e.draining_since = None;
                        if vs.check_for(rs).is_none() {
                            e.health = Health::Unchecked;
                        } else if e.health == Health::Unchecked {
                            e.health = Health::Up;
                        }
                        e.cfg = rs.clone();
                    }
                    None => {
                        let e = self.new_backend(vip_id, rs, vs.check_for(rs).is_some())?;
                        self.vss[idx].servers.push(e);
                        kept.push(true);
                        changes.added.push(format!("{}/{}", vs.name, rs.address));
                    }
                }
            }
            // Adopted servers this configuration no longer has: drain them.
            let stale: Vec<_> = self
                .adopted_backends
                .iter()
                .filter(|((v, _), _)| *v == vip_id)
                .map(|(&(_, a), &id)| (a, id))
                .collect();
            for (address, id) in stale {
                self.adopted_backends.remove(&(vip_id, address));
                self.vss[idx].servers.push(RsEntry {
                    id,
                    cfg: RealServer {
                        address,
                        weight: 0,
                        max_connections: 0,
                        backup: false,
                        health_check: None,
                    },
                    health: Health::Unchecked,
                    weight_override: None,
                    draining_since: Some(now),
                    operator_drain: None,
                    operator_drain_done: false,
                });
                kept.push(false);
                changes.removed.push(format!("{}/{}", vs.name, address));
            }
            for (j, e) in self.vss[idx].servers.iter_mut().enumerate() {
                if !kept[j] && e.draining_since.is_none() {
                    e.draining_since = Some(now);
                    changes
                        .removed
                        .push(format!("{}/{}", vs.name, e.cfg.address));
                }
            }
        }
        for (i, e) in self.vss.iter_mut().enumerate() {
            if !seen[i] && !e.removed {
                e.removed = true;
                for rs in &mut e.servers {
                    rs.draining_since.get_or_insert(now);
                }
                changes.removed.push(e.cfg.name.clone());
            }
        }
        Ok(changes)
    }

    /// Backend ids whose drain timeout has passed at `now`: removed servers
    /// (to forget) and operator-drained ones (to expire once).
    pub fn due_drains(&self, now: Instant) -> (Vec<u32>, Vec<u32>) {
        let (mut removed, mut drained) = (Vec::new(), Vec::new());
        for vs in &self.vss {
            let t = vs.drain_timeout();
            for rs in &vs.servers {
                if rs.draining_since.is_some_and(|s| now >= s + t) {
                    removed.push(rs.id);
                } else if !rs.operator_drain_done && rs.operator_drain.is_some_and(|s| now >= s + t)
                {
                    drained.push(rs.id);
                }
            }
        }
        (removed, drained)
    }

    /// Forgets a drained server (its connections are gone) and frees its id;
    /// returns the key of a removed virtual server that is now empty.
    pub fn finish_drain(&mut self, id: u32) -> Option<(VipKey, Option<Region>)> {
        self.backend_ids.free(id);
        let i = self
            .vss
            .iter()
            .position(|vs| vs.servers.iter().any(|rs| rs.id == id))?;
        self.vss[i].servers.retain(|rs| rs.id != id);
        if self.vss[i].removed && self.vss[i].servers.is_empty() {
            let vs = self.vss.remove(i);
            self.vip_ids.free(vs.vip_id);
            return Some((vs.key, vs.written.map(|w| w.region)));
        }
        None
    }

    /// The live virtual server named `vs` and its real server at `server`
    /// (as health checks name them; `operator` finds what a person types).
    pub fn find(&self, vs: &str, server: SocketAddr) -> Option<(usize, usize)> {
        let i = self
            .vss
            .iter()
            .position(|e| !e.removed && e.cfg.name == vs)?;
        let j = self.vss[i]
            .servers
            .iter()
            .position(|rs| rs.cfg.address == server)?;
        Some((i, j))
    }

    /// The address of the real server with backend id `id`.
    pub fn server_addr(&self, id: u32) -> Option<SocketAddr> {
        self.vss
            .iter()
            .flat_map(|vs| &vs.servers)
            .find(|rs| rs.id == id)
            .map(|rs| rs.cfg.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn cfg(servers: &[(&str, u32)]) -> Config {
        let mut t = String::from(
            "[director]\ninterfaces = [\"eth0\"]\n[[virtual_server]]\nname = \"web\"\naddress = \"192.0.2.10:80\"\ndrain_timeout = \"10s\"\n",
        );
        for (a, w) in servers {
            t += &format!("[[virtual_server.real_server]]\naddress = \"{a}\"\nweight = {w}\n");
        }
        config::parse(&t, "t.toml")
            .unwrap_or_else(|e| panic!("{e}"))
            .config
    }

    fn ids(m: &Model) -> Vec<(String, u32, bool)> {
        m.vss[0]
            .servers
            .iter()
            .map(|rs| {
                (
                    rs.cfg.address.to_string(),
                    rs.id,
                    rs.draining_since.is_some(),
                )
            })
            .collect()
    }

    #[test]
    fn ids_are_smallest_free_first_and_100_000_take_no_time() {
        let mut pool = IdPool {
            cap: 100_000,
            ..IdPool::default()
        };
        pool.take(2);
        let t = Instant::now();
        let first: Vec<u32> = (0..4).map(|_| pool.alloc().unwrap()).collect();
        assert_eq!(first, [0, 1, 3, 4], "an adopted id is skipped");
        while pool.alloc().is_some() {}
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "filling 100 000 ids took {:?}",
            t.elapsed()
        );
        pool.free(70_000);
        pool.free(10);
        assert_eq!(pool.alloc(), Some(10));
        assert_eq!(pool.alloc(), Some(70_000));
        assert_eq!(pool.alloc(), None, "full");
    }

    #[test]
    fn reload_keeps_ids_of_servers_that_stay_and_drains_removed_ones() {
        let t0 = Instant::now();
        let mut m = Model::new(16, 4);
        m.reconcile(&cfg(&[("10.1.0.11:80", 1), ("10.1.0.12:80", 1)]), t0)
            .expect("first");
        let c = m
            .reconcile(&cfg(&[("10.1.0.11:80", 3), ("10.1.0.13:80", 1)]), t0)
            .expect("reload");
        assert_eq!(
            ids(&m),
            vec![
                ("10.1.0.11:80".into(), 0, false),
                ("10.1.0.12:80".into(), 1, true),
                ("10.1.0.13:80".into(), 2, false),
            ],
            "ids stable; the removed server drains; the new one gets a fresh id"
        );
        assert_eq!(c.added, vec!["web/10.1.0.13:80"]);
        assert_eq!(c.removed, vec!["web/10.1.0.12:80"]);
        assert_eq!(c.updated, vec!["web"]);
        assert_eq!(m.vss[0].servers[0].effective_weight(), 3);
        assert_eq!(
            m.vss[0].servers[1].effective_weight(),
            0,
            "draining takes nothing new"
        );
    }

    #[test]
    fn drains_finish_at_their_timeout_and_free_the_id() {
        let t0 = Instant::now();
        let mut m = Model::new(16, 4);
        m.reconcile(&cfg(&[("10.1.0.11:80", 1), ("10.1.0.12:80", 1)]), t0)
            .expect("first");
        m.reconcile(&cfg(&[("10.1.0.11:80", 1)]), t0)
            .expect("remove one");
        assert_eq!(
            m.due_drains(t0 + Duration::from_secs(9)).0,
            Vec::<u32>::new()
        );
        assert_eq!(m.due_drains(t0 + Duration::from_secs(10)).0, vec![1]);
        assert_eq!(m.finish_drain(1), None, "the virtual server stays");
        m.reconcile(&cfg(&[("10.1.0.11:80", 1), ("10.1.0.14:80", 1)]), t0)
            .expect("add");
        assert_eq!(m.vss[0].servers[1].id, 1, "a freed id is reused");
    }

    #[test]
    fn a_removed_then_readded_server_stops_draining() {
        let t0 = Instant::now();
        let mut m = Model::new(16, 4);
        m.reconcile(&cfg(&[("10.1.0.11:80", 1), ("10.1.0.12:80", 1)]), t0)
            .expect("first");
        m.reconcile(&cfg(&[("10.1.0.11:80", 1)]), t0)
            .expect("remove");
        m.reconcile(&cfg(&[("10.1.0.11:80", 1), ("10.1.0.12:80", 2)]), t0)
            .expect("re-add");
        assert_eq!(ids(&m)[1], ("10.1.0.12:80".into(), 1, false));
        assert_eq!(m.vss[0].servers[1].effective_weight(), 2);
    }

    #[test]
    fn removing_a_virtual_server_drains_it_then_frees_its_key() {
        let t0 = Instant::now();
        let mut m = Model::new(16, 4);
        m.reconcile(&cfg(&[("10.1.0.11:80", 1)]), t0)
            .expect("first");
        let mut empty = cfg(&[]);
        empty.virtual_servers.clear();
        m.reconcile(&empty, t0).expect("remove the VS");
        assert!(m.vss[0].removed);
        let (due, _) = m.due_drains(t0 + Duration::from_secs(10));
        assert_eq!(due, vec![0]);
        let (key, _) = m
            .finish_drain(0)
            .expect("the VS is gone with its last server");
        assert_eq!(&key.addr[..4], &[192, 0, 2, 10]);
        assert!(m.vss.is_empty());
    }

    #[test]
    fn a_restart_adopts_ids_from_the_pinned_maps() {
        let t0 = Instant::now();
        let mut first = Model::new(16, 4);
        first
            .reconcile(&cfg(&[("10.1.0.11:80", 1), ("10.1.0.12:80", 1)]), t0)
            .expect("first");
        // What the maps hold after the first run: ids 5 and 9 (say).
        let key = first.vss[0].key;
        let info = VipInfo {
            vip_id: 2,
            ..VipInfo::default()
        };
        let backend = |ip: [u8; 4], port: u16| Backend {
            addr: director_common::abi::v4_key(ip),
            port: director_common::abi::wire_port(port),
            family: director_common::abi::FAMILY_V4,
            vip_id: 2,
            ..Backend::default()
        };
        let mut m = Model::new(16, 4);
        m.adopt(
            &[(key, info)],
            &[
                (5, backend([10, 1, 0, 11], 80)),
                (9, backend([10, 1, 0, 12], 80)),
            ],
        );
        m.reconcile(&cfg(&[("10.1.0.11:80", 1), ("10.1.0.13:80", 1)]), t0)
            .expect("adopt");
        assert_eq!(m.vss[0].vip_id, 2, "the virtual server keeps its id");
        assert_eq!(
            ids(&m),
            vec![
                ("10.1.0.11:80".into(), 5, false),
                ("10.1.0.13:80".into(), 0, false),
                ("10.1.0.12:80".into(), 9, true),
            ],
            "kept server keeps its id, a new one gets a free id, a dropped one drains"
        );
        assert_eq!(m.unclaimed(), (vec![], vec![]));
    }
}
