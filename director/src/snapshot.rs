//! Snapshots for `director status`, `director conns` and the metrics: the
//! reconciler's model joined with the datapath's counters and the daemon's
//! own tallies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use director_common::abi::PROTO_TCP;
use director_common::entries::socket_addr;
use director_common::tcp::State as TcpState;

use crate::apply::Reconciler;
use crate::config::{DirectorSection, XdpMode};
use crate::control::{ConnEntry, Response};
use crate::dataplane::{Dataplane, monotonic_ns};
use crate::gc;
use crate::maps::{Maps as _, Table};
use crate::model::{Health, VsEntry};
use crate::status::{Counters, Rates, RsStatus, Running, Status, VsStatus};

/// The last health transition of a real server: its reason, and how many.
pub type HealthNotes = HashMap<(String, SocketAddr), (String, u64)>;

/// What `director run` attached at its start: `[director]` changes take a
/// restart, so a reloaded file does not say.
pub struct Attached {
    pub since: Instant,
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
}

impl Attached {
    pub fn new(director: &DirectorSection) -> Attached {
        Attached {
            since: Instant::now(),
            interfaces: director.interfaces.clone(),
            xdp_mode: director.xdp_mode,
        }
    }
}

/// What the daemon itself keeps beside the maps.
pub struct Tallies<'a> {
    pub attached: &'a Attached,
    pub config: &'a std::path::Path,
    pub conntrack_entries: u64,
    pub half_open_entries: u64,
    pub health_transitions: u64,
    pub reloads: u64,
    pub health_notes: &'a HealthNotes,
    pub rates: &'a HashMap<u32, Rates>,
}

/// Traffic counters of a backend, summed over CPUs.
pub fn counters(dp: &Dataplane, id: u32) -> Counters {
    dp.backend_traffic(id)
        .map(|t| Counters {
            conns: t.conns,
            packets_in: t.packets_in,
            packets_out: t.packets_out,
            bytes_in: t.bytes_in,
            bytes_out: t.bytes_out,
        })
        .unwrap_or_default()
}

/// Per-server rates between `prev` (taken `secs` ago) and `now`.
pub fn rates(
    prev: &HashMap<u32, Counters>,
    now: &HashMap<u32, Counters>,
    secs: f64,
) -> HashMap<u32, Rates> {
    now.iter()
        .map(|(id, c)| (*id, Rates::between(prev.get(id).unwrap_or(c), c, secs)))
        .collect()
}

/// A sample of every server's counters, for rates.
pub fn sample(r: &Reconciler) -> (Instant, HashMap<u32, Counters>) {
    let ids = r.model().vss.iter().flat_map(|vs| &vs.servers);
    let now = ids.map(|rs| (rs.id, counters(r.maps(), rs.id))).collect();
    (Instant::now(), now)
}

pub fn status(r: &Reconciler, t: &Tallies) -> Status {
    let dp = r.maps();
    let mut s = Status {
        running: Box::new(Running {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_s: t.attached.since.elapsed().as_secs(),
            xdp_mode: t.attached.xdp_mode.to_string(),
            interfaces: t.attached.interfaces.clone(),
        }),
        config: t.config.display().to_string(),
        conntrack_entries: t.conntrack_entries,
        conntrack_max: dp.sizes().conntrack_max,
        half_open_entries: t.half_open_entries,
        half_open_max: dp.sizes().half_open_max,
        health_transitions: t.health_transitions,
        reloads: t.reloads,
        ..Status::default()
    };
    if let Ok(reasons) = dp.reasons() {
        s.reasons = reasons
            .into_iter()
            .map(|(r, n)| (r.name().to_string(), n))
            .collect();
    }
    s.virtual_servers = r
        .model()
        .vss
        .iter()
        .map(|vs| vs_status(dp, vs, t))
        .collect();
    s
}

fn vs_status(dp: &Dataplane, vs: &VsEntry, t: &Tallies) -> VsStatus {
    let mut v = VsStatus {
        name: vs.cfg.name.clone(),
        address: vs.cfg.address.to_string(),
        protocol: vs.cfg.protocol.to_string(),
        scheduler: vs.cfg.scheduler.to_string(),
        forward: vs.cfg.forward.to_string(),
        persistence_s: vs.cfg.persistence.map(|d| d.as_secs()),
        removed: vs.removed,
        active: 0,
        inactive: 0,
        totals: Counters::default(),
        rates: Rates::default(),
        real_servers: Vec::new(),
    };
    for rs in &vs.servers {
        let c = dp.conn_counts(rs.id).unwrap_or_default();
        let totals = counters(dp, rs.id);
        let rates = t.rates.get(&rs.id).copied().unwrap_or_default();
        let note = t.health_notes.get(&(vs.cfg.name.clone(), rs.cfg.address));
        v.active += c.active;
        v.inactive += c.inactive;
        v.totals.add(&totals);
        v.rates.add(&rates);
        v.real_servers.push(RsStatus {
            address: rs.cfg.address.to_string(),
            weight: rs.effective_weight(),
            config_weight: rs.cfg.weight,
            backup: rs.cfg.backup,
            health: match rs.health {
                Health::Up => "up",
                Health::Down => "down",
                Health::Unchecked => "unchecked",
            }
            .to_string(),
            health_reason: note.map(|n| n.0.clone()).unwrap_or_default(),
            health_transitions: note.map_or(0, |n| n.1),
            draining: rs.draining_since.is_some() || rs.operator_drain.is_some(),
            active: c.active,
            inactive: c.inactive,
            totals,
            rates,
        });
    }
    v
}

/// The first `limit` connection entries, like `ipvsadm -L -n -c`.
pub fn conns(r: &Reconciler, limit: usize) -> Response {
    let all: Vec<_> = Table::BOTH
        .into_iter()
        .flat_map(|t| r.maps().conns(t))
        .collect();
    let now = monotonic_ns();
    let view = r.view();
    let vss: HashMap<u32, &VsEntry> = r.model().vss.iter().map(|v| (v.vip_id, v)).collect();
    let entries = all
        .iter()
        .take(limit)
        .map(|(k, c)| {
            let state = TcpState::from_u8(c.state);
            let timeout = vss
                .get(&c.vip_id)
                .map_or(Duration::ZERO, |v| gc::timeout(state, &v.cfg.timeouts));
            let idle = Duration::from_nanos(now.saturating_sub(c.last_seen_ns));
            ConnEntry {
                protocol: if k.proto == PROTO_TCP { "TCP" } else { "UDP" }.into(),
                state: state.map_or("?", TcpState::name).into(),
                expires_s: timeout.saturating_sub(idle).as_secs(),
                client: socket_addr(&k.src, k.family, k.sport).to_string(),
                virtual_server: socket_addr(&k.dst, k.family, k.dport).to_string(),
                real_server: view
                    .backends
                    .get(&c.backend_id)
                    .map_or("?".to_string(), |b| b.server().to_string()),
            }
        })
        .collect();
    Response::Conns {
        total: all.len(),
        entries,
    }
}
