//! `director run`: load (or adopt) the pinned datapath, reconcile it with
//! the configuration, attach, then serve: health transitions, reloads,
//! operator commands, next-hop changes, table upkeep. Stopping leaves the
//! datapath forwarding (it is pinned); `director teardown` removes it.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use aya::programs::XdpMode as AyaXdpMode;
use director_common::abi::{
    BACKEND_F_DOWN, BACKEND_F_RESOLVED, Backend, NatServer, VipKey, host_port, wire_port,
};
use director_common::tcp::State as TcpState;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::{
    config::{self, Config, Forward, OnFailure, XdpMode},
    control::{self, Call, ConnEntry, Request, Response},
    dataplane::{Dataplane, PinDir, monotonic_ns},
    gc,
    health::{self, Monitor, Target, Transition},
    model::{self, Health, Model, Written},
    netlink::{HopEvent, Neighbours, NextHop},
    plan::{self, Sizes, addr_key},
    ring_alloc::RingAlloc,
    status::{Counters, Rates, RsStatus, Status, VsStatus},
};

/// How long a start waits for the servers' first next hops, so that the
/// first packets find them resolved (the kernel gives up on a neighbour
/// after about 3 s).
const FIRST_HOPS_WAIT: Duration = Duration::from_secs(4);
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);

pub struct Options {
    pub pin_dir: PathBuf,
    pub socket: PathBuf,
    pub metrics: Option<SocketAddr>,
}

/// Map capacities for a first start. Generous so that reloads can grow the
/// configuration: a pinned map keeps its size until `director teardown`.
fn sizes(cfg: &Config) -> Sizes {
    let servers: usize = cfg
        .virtual_servers
        .iter()
        .map(|v| v.real_servers.len())
        .sum();
    let ring: usize = cfg.virtual_servers.len() * (director_common::wrr::MAX_RING + 512);
    Sizes {
        conntrack_max: cfg.director.conntrack_max,
        vips: (cfg.virtual_servers.len() as u32 * 4).max(1024),
        backends: (servers as u32 * 4).max(16_384),
        ring: (ring as u32 * 2).max(1 << 20),
    }
}

struct Daemon {
    dp: Dataplane,
    model: Model,
    rings: RingAlloc,
    config: Config,
    /// Next hops by real server address (backends of one address share it).
    hops: HashMap<IpAddr, NextHop>,
    written: HashMap<u32, Backend>,
    /// `NAT_SERVERS` as last written.
    nat_servers: Option<HashMap<VipKey, NatServer>>,
    monitor: Monitor,
    health_notes: HashMap<(String, SocketAddr), (String, u64)>,
    neighbours: Neighbours,
    last_sample: Option<(Instant, HashMap<u32, Counters>)>,
    rates: HashMap<u32, Rates>,
    conntrack_entries: u64,
    conntrack_max: u32,
    reloads: u64,
    transitions: u64,
}

fn mode(m: XdpMode) -> AyaXdpMode {
    match m {
        XdpMode::Native => AyaXdpMode::Driver,
        XdpMode::Generic => AyaXdpMode::Skb,
    }
}

impl Daemon {
    /// Writes what the model says: each virtual server's lists (to fresh
    /// slots, then its `VipInfo`) and every backend whose entry changed.
    fn apply(&mut self) -> anyhow::Result<()> {
        self.apply_lists()?;
        self.apply_backends()?;
        self.apply_nat_servers()
    }

    /// `NAT_SERVERS` of every NAT virtual server, removed ones included
    /// (replies of their draining connections still come). After the
    /// backends: moving a server's replies to reply entries reads them.
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
            self.dp.set_nat_servers(&want)?;
            self.nat_servers = Some(want);
        }
        Ok(())
    }

    /// The scheduling lists of every virtual server whose lists changed.
    fn apply_lists(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        for vs in &mut self.model.vss {
            let lists = plan::lists(&vs.cfg, &vs.members());
            let flat = lists.flat();
            let unchanged = vs.written.as_ref().is_some_and(|w| {
                w.lists == flat
                    && w.info == plan::vip_info(&vs.cfg, vs.vip_id, w.region.base, &lists)
            });
            if unchanged {
                continue;
            }
            let region = self.rings.alloc(flat.len() as u32, now).ok_or_else(|| {
                anyhow!("scheduling ring map full: `director teardown` and restart to grow it")
            })?;
            self.dp.set_ring(region.base, &flat)?;
            let info = plan::vip_info(&vs.cfg, vs.vip_id, region.base, &lists);
            self.dp.set_vip(&vs.key, &info)?;
            if let Some(old) = vs.written.replace(Written {
                region,
                info,
                lists: flat,
            }) {
                self.rings.retire(old.region, now);
            }
        }
        Ok(())
    }

    /// Every backend entry that changed (next hops do not change lists).
    fn apply_backends(&mut self) -> anyhow::Result<()> {
        let mut changed = Vec::new();
        for vs in &self.model.vss {
            for rs in &vs.servers {
                let (addr, family) = addr_key(rs.cfg.address.ip());
                let mut b = Backend {
                    addr,
                    port: wire_port(rs.cfg.address.port()),
                    family,
                    weight: rs.effective_weight(),
                    max_conns: rs.cfg.max_connections,
                    vip_id: vs.vip_id,
                    ..Backend::default()
                };
                if let Some(h) = self.hops.get(&rs.cfg.address.ip()) {
                    b.ifindex = h.ifindex;
                    b.dst_mac = h.dst_mac;
                    b.src_mac = h.src_mac;
                    b.flags |= BACKEND_F_RESOLVED;
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
            self.dp.set_backends(&changed)?;
            self.written.extend(changed);
        }
        Ok(())
    }

    fn gc_view(&self) -> gc::View {
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
                view.backends.insert(
                    rs.id,
                    (
                        addr_key(rs.cfg.address.ip()).0,
                        wire_port(rs.cfg.address.port()),
                    ),
                );
            }
        }
        view
    }

    fn expire(&mut self, ids: &[u32], why: &str) {
        if ids.is_empty() {
            return;
        }
        let set: HashSet<u32> = ids.iter().copied().collect();
        let view = self.gc_view();
        let n = gc::expire_backends(&mut self.dp, &view, &set);
        info!(
            servers = ids.len(),
            connections = n,
            "expired connections: {why}"
        );
    }

    /// Follows the next hops of every server (draining ones too: their
    /// connections still go out) and forgets those of addresses gone.
    fn follow_servers(&mut self) {
        let ips: HashSet<IpAddr> = self.all_servers().iter().map(|(_, a)| a.ip()).collect();
        self.hops.retain(|ip, _| ips.contains(ip));
        self.neighbours.follow(ips);
    }

    fn all_servers(&self) -> Vec<(u32, SocketAddr)> {
        self.model
            .vss
            .iter()
            .flat_map(|vs| vs.servers.iter().map(|rs| (rs.id, rs.cfg.address)))
            .collect()
    }

    /// Records a next-hop change; true when the address's next hop changed.
    fn record_hop(&mut self, HopEvent { ip, hop }: HopEvent) -> bool {
        match hop {
            Ok(hop) if self.hops.get(&ip) != Some(&hop) => {
                if !self.config.director.interfaces.contains(&hop.ifname) {
                    warn!(server = %ip, iface = %hop.ifname,
                        "real server is reached through an interface director is not attached to");
                }
                info!(server = %ip, iface = %hop.ifname, mac = %fmt_mac(&hop.dst_mac), "next hop");
                self.hops.insert(ip, hop);
                true
            }
            Ok(_) => false,
            // A last known next hop is kept: a neighbour that stops answering
            // ARP is the health checker's business.
            Err(e) if self.hops.contains_key(&ip) => {
                warn!(server = %ip, "cannot resolve next hop, keeping the last known one: {e}");
                false
            }
            Err(e) => {
                warn!(server = %ip, "cannot resolve next hop: {e}");
                false
            }
        }
    }

    /// A followed address's next hop changed: so do all its backends.
    fn on_hop(&mut self, e: HopEvent) -> anyhow::Result<()> {
        if self.record_hop(e) {
            self.apply_backends()?;
        }
        Ok(())
    }

    fn health_targets(&self) -> Vec<Target> {
        self.model
            .vss
            .iter()
            .filter(|vs| !vs.removed)
            .flat_map(|vs| {
                vs.servers
                    .iter()
                    .filter(|rs| rs.draining_since.is_none())
                    .filter_map(|rs| {
                        vs.cfg.check_for(&rs.cfg).map(|check| Target {
                            vs: vs.cfg.name.clone(),
                            server: rs.cfg.address,
                            check: check.clone(),
                        })
                    })
            })
            .collect()
    }

    fn on_transition(&mut self, t: Transition) -> anyhow::Result<()> {
        self.transitions += 1;
        let note = self
            .health_notes
            .entry((t.vs.clone(), t.server))
            .or_default();
        note.0 = t.reason.clone();
        note.1 += 1;
        let Some((i, j)) = self.model.find(&t.vs, &t.server.to_string()) else {
            return Ok(());
        };
        let up = t.to == health::Health::Up;
        let rs = &mut self.model.vss[i].servers[j];
        rs.health = if up { Health::Up } else { Health::Down };
        let id = rs.id;
        let reset = !up
            && self.model.vss[i]
                .cfg
                .check_for(&self.model.vss[i].servers[j].cfg)
                .is_some_and(|c| c.on_failure == OnFailure::Reset);
        self.apply()?;
        if reset {
            self.expire(&[id], "on_failure = reset");
        }
        Ok(())
    }

    /// Re-reads the configuration and applies only the difference. A file
    /// with errors changes nothing.
    fn reload(&mut self) -> Result<String, String> {
        let loaded = config::load(&self.config.path).map_err(|e| e.to_string())?;
        let cfg = loaded.config;
        for w in loaded
            .warnings
            .iter()
            .map(|d| d.render(&cfg.path.display().to_string()))
        {
            warn!("{w}");
        }
        if cfg.director.interfaces != self.config.director.interfaces
            || cfg.director.xdp_mode != self.config.director.xdp_mode
            || cfg.director.conntrack_max != self.config.director.conntrack_max
        {
            warn!(
                "[director] changes (interfaces, xdp_mode, conntrack_max) apply at the next restart"
            );
        }
        let changes = self.model.reconcile(&cfg, Instant::now())?;
        self.config = cfg;
        self.apply().map_err(|e| format!("{e:#}"))?;
        self.monitor.set_targets(self.health_targets());
        self.follow_servers();
        self.reloads += 1;
        let msg = format!(
            "reloaded {}: added {:?}, removed (draining) {:?}, updated {:?}",
            self.config.path.display(),
            changes.added,
            changes.removed,
            changes.updated
        );
        info!("{msg}");
        Ok(msg)
    }

    fn drains(&mut self) -> anyhow::Result<()> {
        let (removed, drained) = self.model.due_drains(Instant::now());
        self.expire(&drained, "operator drain timeout");
        for vs in &mut self.model.vss {
            for rs in &mut vs.servers {
                if drained.contains(&rs.id) {
                    rs.operator_drain_done = true;
                }
            }
        }
        if removed.is_empty() {
            return Ok(());
        }
        self.expire(&removed, "drain timeout of removed servers");
        let now = Instant::now();
        for id in removed {
            self.dp.set_backend(id, &Backend::default())?;
            self.written.remove(&id);
            if let Some((key, region)) = self.model.finish_drain(id) {
                self.dp.remove_vip(&key);
                if let Some(r) = region {
                    self.rings.retire(r, now);
                }
            }
        }
        self.follow_servers();
        self.apply()
    }

    fn sweep(&mut self) {
        let view = self.gc_view();
        let s = gc::sweep(&mut self.dp, &view, monotonic_ns());
        self.conntrack_entries = s.conns_live as u64;
        if s.conns_expired + s.persist_expired > 0 {
            tracing::debug!(
                conns = s.conns_expired,
                persistence = s.persist_expired,
                "expired idle entries"
            );
        }
    }

    fn counters(&self, id: u32) -> Counters {
        self.dp
            .backend_traffic(id)
            .map(|t| Counters {
                conns: t.conns,
                packets_in: t.packets_in,
                packets_out: t.packets_out,
                bytes_in: t.bytes_in,
                bytes_out: t.bytes_out,
            })
            .unwrap_or_default()
    }

    fn sample(&mut self) {
        let now = Instant::now();
        let current: HashMap<u32, Counters> = self
            .all_servers()
            .into_iter()
            .map(|(id, _)| (id, self.counters(id)))
            .collect();
        if let Some((t, prev)) = &self.last_sample {
            let secs = now.duration_since(*t).as_secs_f64();
            self.rates = current
                .iter()
                .map(|(id, c)| (*id, Rates::between(prev.get(id).unwrap_or(c), c, secs)))
                .collect();
        }
        self.last_sample = Some((now, current));
    }

    fn status(&self) -> Status {
        let mut s = Status {
            config: self.config.path.display().to_string(),
            conntrack_entries: self.conntrack_entries,
            conntrack_max: self.conntrack_max,
            health_transitions: self.transitions,
            reloads: self.reloads,
            ..Status::default()
        };
        if let Ok(reasons) = self.dp.reasons() {
            s.reasons = reasons
                .into_iter()
                .map(|(r, n)| (r.name().to_string(), n))
                .collect();
        }
        for vs in &self.model.vss {
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
                let c = self.dp.conn_counts(rs.id).unwrap_or_default();
                let totals = self.counters(rs.id);
                let rates = self.rates.get(&rs.id).copied().unwrap_or_default();
                let note = self
                    .health_notes
                    .get(&(vs.cfg.name.clone(), rs.cfg.address));
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
            s.virtual_servers.push(v);
        }
        s
    }

    fn conns(&self, limit: usize) -> Response {
        let all = self.dp.conns();
        let now = monotonic_ns();
        let view = self.gc_view();
        let names: HashMap<u32, &model::VsEntry> =
            self.model.vss.iter().map(|v| (v.vip_id, v)).collect();
        let entries = all
            .iter()
            .take(limit)
            .map(|(k, c)| {
                let vs = names.get(&c.vip_id);
                let state = TcpState::from_u8(c.state);
                let timeout = vs.map_or(Duration::ZERO, |v| gc::timeout(state, &v.cfg.timeouts));
                let idle = Duration::from_nanos(now.saturating_sub(c.last_seen_ns));
                let server = view
                    .backends
                    .get(&c.backend_id)
                    .map_or("?".to_string(), |(a, p)| fmt_addr(a, k.family, *p));
                ConnEntry {
                    protocol: if k.proto == director_common::abi::PROTO_TCP {
                        "TCP"
                    } else {
                        "UDP"
                    }
                    .into(),
                    state: state.map_or("?", TcpState::name).into(),
                    expires_s: timeout.saturating_sub(idle).as_secs(),
                    client: fmt_addr(&k.src, k.family, k.sport),
                    virtual_server: fmt_addr(&k.dst, k.family, k.dport),
                    real_server: server,
                }
            })
            .collect();
        Response::Conns {
            total: all.len(),
            entries,
        }
    }

    fn handle(&mut self, req: Request) -> Response {
        let done = |r: Result<String, String>| match r {
            Ok(message) => Response::Done { message },
            Err(message) => Response::Error { message },
        };
        match req {
            Request::Status => Response::Status(self.status()),
            Request::Conns { limit } => self.conns(limit),
            Request::Reload => done(self.reload()),
            Request::Weight { vs, server, weight } => done(self.operator(&vs, &server, |rs| {
                rs.weight_override = Some(weight);
                rs.operator_drain = None;
                rs.operator_drain_done = false;
                format!("weight {weight}")
            })),
            Request::Drain { vs, server } => done(self.operator(&vs, &server, |rs| {
                rs.operator_drain.get_or_insert(Instant::now());
                "draining".to_string()
            })),
        }
    }

    fn operator(
        &mut self,
        vs: &str,
        server: &str,
        change: impl FnOnce(&mut model::RsEntry) -> String,
    ) -> Result<String, String> {
        let (i, j) = self
            .model
            .find(vs, server)
            .ok_or_else(|| format!("no real server {server} in virtual server {vs}"))?;
        let what = change(&mut self.model.vss[i].servers[j]);
        self.apply().map_err(|e| format!("{e:#}"))?;
        let msg = format!("{vs}/{}: {what}", self.model.vss[i].servers[j].cfg.address);
        info!("{msg}");
        Ok(msg)
    }
}

fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn fmt_addr(a: &[u8; 16], family: u8, wire: u16) -> String {
    let ip: std::net::IpAddr = if family == director_common::abi::FAMILY_V4 {
        std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).into()
    } else {
        std::net::Ipv6Addr::from(*a).into()
    };
    SocketAddr::new(ip, host_port(wire)).to_string()
}

async fn serve_metrics(addr: SocketAddr, calls: mpsc::Sender<Call>) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint {addr}"))?;
    info!(%addr, "metrics on http://{addr}/metrics");
    loop {
        let (mut sock, _) = listener.accept().await?;
        let calls = calls.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await;
            let (tx, rx) = oneshot::channel();
            let body = match calls.send((Request::Status, tx)).await {
                Ok(()) => match rx.await {
                    Ok(Response::Status(s)) => crate::status::render_metrics(&s),
                    _ => String::new(),
                },
                Err(_) => String::new(),
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
        });
    }
}

pub async fn run(config: Config, opts: Options) -> anyhow::Result<()> {
    let pins = PinDir(opts.pin_dir.clone());
    let sz = sizes(&config);
    let dp = Dataplane::open_pinned(&sz, &pins)?;
    let mut model = Model::new(dp.backend_capacity(), sz.vips);
    let adopted_vips = dp.vips();
    let adopted_backends = dp.backends();
    let mut rings = RingAlloc::new(dp.ring_capacity());
    for (_, info) in &adopted_vips {
        rings.reserve(model::region_of(info));
    }
    if !adopted_vips.is_empty() {
        info!(
            virtual_servers = adopted_vips.len(),
            real_servers = adopted_backends.len(),
            "adopting the pinned datapath of a previous run"
        );
    }
    model.adopt(&adopted_vips, &adopted_backends);
    model
        .reconcile(&config, Instant::now())
        .map_err(|e| anyhow!(e))?;
    let (unclaimed_vips, unclaimed_backends) = model.unclaimed();

    let (neighbours, mut hop_rx) = Neighbours::start()
        .await
        .context("starting the next-hop service (netlink)")?;
    let (health_tx, mut health_rx) = mpsc::unbounded_channel();
    let mut d = Daemon {
        conntrack_max: sz.conntrack_max,
        dp,
        model,
        rings,
        config,
        hops: HashMap::new(),
        written: HashMap::new(),
        nat_servers: None,
        monitor: Monitor::new(health_tx),
        health_notes: HashMap::new(),
        neighbours,
        last_sample: None,
        rates: HashMap::new(),
        conntrack_entries: 0,
        reloads: 0,
        transitions: 0,
    };
    // Known next hops first, so the first packets find resolved servers.
    d.follow_servers();
    let mut unknown: HashSet<IpAddr> = d.all_servers().iter().map(|(_, a)| a.ip()).collect();
    let deadline = tokio::time::Instant::now() + FIRST_HOPS_WAIT;
    while !unknown.is_empty() {
        match tokio::time::timeout_at(deadline, hop_rx.recv()).await {
            Ok(Some(e)) => {
                unknown.remove(&e.ip);
                d.record_hop(e);
            }
            _ => break,
        }
    }
    if !unknown.is_empty() {
        warn!(
            servers = unknown.len(),
            "next hops still unknown after {FIRST_HOPS_WAIT:?}: applied as they resolve"
        );
    }
    d.apply()?;
    let now = Instant::now();
    for (key, info) in &unclaimed_vips {
        d.dp.remove_vip(key);
        d.rings.retire(model::region_of(info), now);
    }
    d.expire(
        &unclaimed_backends,
        "servers of a previous run not in this configuration",
    );
    for id in &unclaimed_backends {
        d.dp.set_backend(*id, &Backend::default())?;
    }

    let ifaces = d.config.director.interfaces.clone();
    for iface in &ifaces {
        d.dp.attach(iface, mode(d.config.director.xdp_mode))?;
    }
    for stale in pins
        .linked_interfaces()
        .into_iter()
        .filter(|i| !ifaces.contains(i))
    {
        let _ = std::fs::remove_file(pins.link(&stale));
        info!(iface = %stale, "detached from an interface no longer configured");
    }
    d.monitor.set_targets(d.health_targets());

    let (call_tx, mut call_rx) = mpsc::channel::<Call>(64);
    let socket = opts.socket.clone();
    let ctl_tx = call_tx.clone();
    tokio::spawn(async move {
        if let Err(e) = control::serve(&socket, ctl_tx).await {
            error!("control socket: {e:#}");
        }
    });
    if let Some(addr) = opts.metrics {
        let tx = call_tx.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_metrics(addr, tx).await {
                error!("metrics: {e:#}");
            }
        });
    }
    info!(
        config = %d.config.path.display(),
        interfaces = %ifaces.join(","),
        virtual_servers = d.model.vss.len(),
        pinned = %pins.0.display(),
        socket = %opts.socket.display(),
        "ready"
    );

    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    let mut sample = tokio::time::interval(SAMPLE_INTERVAL);
    let mut drains = tokio::time::interval(Duration::from_secs(1));
    loop {
        let step: anyhow::Result<()> = tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => {
                if let Err(e) = d.reload() {
                    error!("reload rejected, running configuration unchanged:\n{e}");
                }
                Ok(())
            }
            Some((req, reply)) = call_rx.recv() => {
                let _ = reply.send(d.handle(req));
                Ok(())
            }
            Some(t) = health_rx.recv() => d.on_transition(t),
            Some(e) = hop_rx.recv() => d.on_hop(e),
            _ = sweep.tick() => { d.sweep(); Ok(()) }
            _ = sample.tick() => { d.sample(); Ok(()) }
            _ = drains.tick() => d.drains(),
        };
        if let Err(e) = step {
            error!("{e:#}");
        }
    }
    let _ = std::fs::remove_file(&opts.socket);
    if let Ok(reasons) = d.dp.reasons() {
        for (r, n) in reasons.into_iter().filter(|&(_, n)| n > 0) {
            info!(
                reason = r.name(),
                packets = n,
                passes = r.passes(),
                "datapath counter"
            );
        }
    }
    info!(
        pinned = %pins.0.display(),
        "stopping; the datapath keeps forwarding (`director teardown` removes it)"
    );
    Ok(())
}
