//! `director run`: load (or adopt) the pinned datapath, reconcile it with
//! the configuration, attach, then serve: health transitions, reloads,
//! operator commands, next-hop changes, table upkeep. Stopping leaves the
//! datapath forwarding (it is pinned); `director teardown` removes it.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use director_common::abi::SyncEvent;
use director_common::entries::Hop;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::{
    announce::Announcer,
    apply::Reconciler,
    config::{self, Config, OnFailure},
    control::{self, Call, Request, Response},
    dataplane::{Created, PinDir, monotonic_ns},
    gc,
    health::{self, Monitor, Target, Transition},
    instance::Instance,
    model::Health,
    netlink::{HopEvent, Neighbours},
    notify,
    operator::{self, Op},
    ready::Readiness,
    reload::{self, Report},
    replicate::Replication,
    snapshot::{self, Attached, HealthNotes, Tallies},
    startup,
    status::{Counters, Rates},
    sync::Inbound,
};

/// How long a start waits for the servers' first next hops, so that the
/// first packets find them resolved (the kernel gives up on a neighbour
/// after about 3 s).
const FIRST_HOPS_WAIT: Duration = Duration::from_secs(4);
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);
/// How often announcing looks again at readiness (which depends on time)
/// and at the first round of health checks.
const ANNOUNCE_INTERVAL: Duration = Duration::from_millis(200);

pub struct Options {
    pub pin_dir: PathBuf,
    pub socket: PathBuf,
    pub metrics: Option<SocketAddr>,
}

struct Daemon {
    r: Reconciler,
    attached: Attached,
    config: Config,
    monitor: Monitor,
    health_notes: HealthNotes,
    neighbours: Neighbours,
    /// The last next hop known for each followed address.
    hops: HashMap<IpAddr, Hop>,
    last_sample: Option<(Instant, HashMap<u32, Counters>)>,
    rates: HashMap<u32, Rates>,
    conntrack_entries: u64,
    half_open_entries: u64,
    reload_results: reload::Results,
    transitions: u64,
    ready: Readiness,
    /// State sync with the other directors, when `[sync]` configures it.
    sync: Option<Replication>,
    /// Route announcement, when `announce_table` is set.
    announce: Option<Announcer>,
}

impl Daemon {
    fn expire(&mut self, ids: &[u32], why: &str) {
        if ids.is_empty() {
            return;
        }
        let n = self
            .r
            .expire(&ids.iter().copied().collect::<HashSet<u32>>());
        info!(
            servers = ids.len(),
            connections = n,
            "expired connections: {why}"
        );
    }

    fn all_servers(&self) -> impl Iterator<Item = (u32, SocketAddr)> + '_ {
        self.r
            .model()
            .vss
            .iter()
            .flat_map(|vs| vs.servers.iter().map(|rs| (rs.id, rs.cfg.address)))
    }

    /// Follows the next hops of every server (draining ones too: their
    /// connections still go out); the set replaces the previous one. A
    /// server added at an address already followed gets its known next hop.
    fn follow_servers(&mut self) -> HashSet<IpAddr> {
        let ips: HashSet<IpAddr> = self.all_servers().map(|(_, a)| a.ip()).collect();
        self.hops.retain(|ip, _| ips.contains(ip));
        self.neighbours.follow(ips.iter().copied());
        let known: Vec<(u32, Hop)> = self
            .all_servers()
            .filter_map(|(id, a)| Some((id, *self.hops.get(&a.ip())?)))
            .collect();
        for (id, hop) in known {
            self.r.set_hop(id, hop);
        }
        ips
    }

    /// A followed address's next hop changed: so do the backends of every
    /// server at that address. True when one of them changed.
    fn record_hop(&mut self, HopEvent { ip, hop }: HopEvent) -> bool {
        match hop {
            Ok(hop) => {
                let l2 = hop.hop();
                if self.hops.insert(ip, l2) == Some(l2) {
                    return false;
                }
                if !self.config.director.interfaces.contains(&hop.ifname) {
                    warn!(server = %ip, iface = %hop.ifname,
                        "real server is reached through an interface director is not attached to");
                }
                info!(server = %ip, iface = %hop.ifname, mac = %fmt_mac(&hop.dst_mac), "next hop");
                let ids: Vec<u32> = self
                    .all_servers()
                    .filter(|(_, a)| a.ip() == ip)
                    .map(|(id, _)| id)
                    .collect();
                ids.into_iter()
                    .fold(false, |changed, id| self.r.set_hop(id, l2) | changed)
            }
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

    fn on_hop(&mut self, e: HopEvent) -> anyhow::Result<()> {
        if self.record_hop(e) {
            self.r.apply()?;
        }
        Ok(())
    }

    fn health_targets(&self) -> Vec<Target> {
        self.r
            .model()
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
        let model = self.r.model();
        let Some((i, j)) = model.find(&t.vs, t.server) else {
            return Ok(());
        };
        let up = t.to == health::Health::Up;
        let vs = &model.vss[i];
        let reset = !up
            && vs
                .cfg
                .check_for(&vs.servers[j].cfg)
                .is_some_and(|c| c.on_failure == OnFailure::Reset);
        let rs = self.r.server_mut(i, j);
        rs.health = if up { Health::Up } else { Health::Down };
        let id = rs.id;
        self.r.apply()?;
        if reset {
            self.expire(&[id], "on_failure = reset");
        }
        Ok(())
    }

    /// Re-reads the configuration and applies only the difference. A file
    /// with errors changes nothing; every error goes to the log as well as
    /// into the answer.
    fn reload(&mut self) -> Result<Report, String> {
        notify::reloading();
        let result = self.apply_file();
        notify::ready(&self.summary());
        self.reload_results.record(&result, SystemTime::now());
        match result {
            Ok(report) => {
                log_report(&report);
                Ok(report)
            }
            Err(lines) => {
                for line in &lines {
                    error!("reload rejected, running configuration unchanged: {line}");
                }
                Err(lines.join("\n"))
            }
        }
    }

    /// The reload itself: its report, or every line of what is wrong.
    fn apply_file(&mut self) -> Result<Report, Vec<String>> {
        let loaded = config::load(&self.config.path).map_err(|e| e.lines())?;
        for w in loaded.format_warnings() {
            warn!("{w}");
        }
        let report = Report::diff(&self.config, &loaded.config, true);
        let cfg = Report::running(&self.config, loaded.config);
        self.r
            .reconcile(&cfg, Instant::now())
            .map_err(|e| vec![e])?;
        self.config = cfg;
        self.follow_servers();
        self.r.apply().map_err(|e| vec![format!("{e:#}")])?;
        if let Some(sync) = &mut self.sync {
            sync.on_reconfigured(&mut self.r);
        }
        self.monitor.set_targets(self.health_targets());
        Ok(report)
    }

    /// What a reload would change now (`director reload --dry-run`).
    fn diff(&self) -> Result<Report, String> {
        let loaded = config::load(&self.config.path).map_err(|e| e.to_string())?;
        Ok(Report::diff(&self.config, &loaded.config, false))
    }

    fn drains(&mut self) -> anyhow::Result<()> {
        let servers = self.all_servers().count();
        let (by_operator, removed) = self.r.finish_drains(Instant::now())?;
        if self.all_servers().count() != servers {
            self.follow_servers();
        }
        for (n, why) in [
            (by_operator, "operator drain timeout"),
            (removed, "drain timeout of removed servers"),
        ] {
            if n > 0 {
                info!(connections = n, "expired connections: {why}");
            }
        }
        Ok(())
    }

    fn on_sync_inbound(&mut self, i: Inbound) {
        let Some(s) = &mut self.sync else { return };
        if let Some(request) = s.on_inbound(&mut self.r, &mut self.ready, i) {
            s.on_bulk_wanted(&self.r, request);
        }
    }

    fn on_sync_events(&mut self, batch: &[SyncEvent]) {
        if let Some(s) = &mut self.sync {
            s.on_events(&self.r, batch);
        }
    }

    fn on_client_hop(&mut self, ip: IpAddr, hop: anyhow::Result<Hop>) {
        if let Some(s) = &mut self.sync {
            s.on_hop(&mut self.r, &mut self.ready, ip, hop);
        }
    }

    fn sweep(&mut self) {
        let view = self.r.view();
        let s = gc::sweep(self.r.maps_mut(), &view, monotonic_ns());
        if let Some(sync) = &mut self.sync {
            sync.check_lost(&self.r);
        }
        self.conntrack_entries = s.conns_live as u64;
        self.half_open_entries = s.half_open_live as u64;
        if s.conns_expired + s.persist_expired > 0 {
            tracing::debug!(
                conns = s.conns_expired,
                persistence = s.persist_expired,
                "expired idle entries"
            );
        }
    }

    /// Brings the announced routes up to date with the model.
    fn announce(&mut self) {
        if let Some(a) = &mut self.announce {
            a.update(self.r.model(), &self.ready, &self.monitor, Instant::now());
        }
    }

    fn sample(&mut self) {
        let (now, current) = snapshot::sample(&self.r);
        if let Some((t, prev)) = &self.last_sample {
            self.rates = snapshot::rates(prev, &current, now.duration_since(*t).as_secs_f64());
        }
        self.last_sample = Some((now, current));
    }

    /// What it does, for systemd's STATUS= line.
    fn summary(&self) -> String {
        format!(
            "forwarding on {}: {} virtual servers",
            self.config.director.interfaces.join(","),
            self.r.model().vss.len()
        )
    }

    fn tallies(&self) -> Tallies<'_> {
        Tallies {
            attached: &self.attached,
            config: &self.config.path,
            conntrack_entries: self.conntrack_entries,
            half_open_entries: self.half_open_entries,
            health_transitions: self.transitions,
            reloads: self.reload_results.applied(),
            health_notes: &self.health_notes,
            rates: &self.rates,
        }
    }

    fn handle(&mut self, req: Request) -> Response {
        let done = |r: Result<String, String>| match r {
            Ok(message) => Response::Done { message },
            Err(message) => Response::Error { message },
        };
        match req {
            Request::Status => {
                let mut s = snapshot::status(&self.r, &self.tallies());
                s.reload_results = self.reload_results;
                s.probe_latency = self.monitor.latencies();
                s.sync = self.sync.as_ref().map(Replication::report);
                s.announce = self
                    .announce
                    .as_ref()
                    .map(|a| Box::new(a.report(&self.ready, &self.monitor, Instant::now())));
                Response::Status(Box::new(s))
            }
            Request::Conns { limit } => snapshot::conns(&self.r, limit),
            Request::Reload => reloaded(self.reload()),
            Request::Diff => reloaded(self.diff()),
            Request::Ready => done(self.ready.check(Instant::now())),
            Request::Weight { vs, server, weight } => {
                done(self.operator(&vs, &server, Op::Weight(weight)))
            }
            Request::Drain { vs, server } => done(self.operator(&vs, &server, Op::Drain)),
            Request::Undrain { vs, server } => done(self.operator(&vs, &server, Op::Undrain)),
        }
    }

    /// `director weight`, `drain` and `undrain` (see `operator`).
    fn operator(&mut self, vs: &str, server: &str, op: Op) -> Result<String, String> {
        let (i, j) = operator::find(self.r.model(), vs, server)?;
        let name = self.r.model().vss[i].cfg.name.clone();
        let rs = self.r.server_mut(i, j);
        let what = operator::apply(rs, op, Instant::now())?;
        let msg = format!("{name}/{}: {what}", rs.cfg.address);
        self.r.apply().map_err(|e| format!("{e:#}"))?;
        info!("{msg}");
        Ok(msg)
    }
}

fn reloaded(r: Result<Report, String>) -> Response {
    match r {
        Ok(report) => Response::Reload(report),
        Err(message) => Response::Error { message },
    }
}

/// A reload's report in the log: a line per virtual server changed, a
/// warning per change that waits for a restart.
fn log_report(r: &Report) {
    for c in &r.virtual_servers {
        info!(vs = %c.name, "reload: {} ({})", c.change.as_str(), c.details.join("; "));
    }
    for item in &r.restart_needed {
        warn!("reload: not applied until a restart: {item}");
    }
    info!(
        config = %r.file,
        virtual_servers_changed = r.virtual_servers.len(),
        restart_needed = r.restart_needed.len(),
        "reloaded"
    );
}

/// The next message of `rx`, or never when there is no `rx`.
async fn recv<T>(rx: Option<&mut mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub async fn run(config: Config, opts: Options) -> anyhow::Result<()> {
    let pins = PinDir(opts.pin_dir.clone());
    pins.check_bpffs()?;
    let mut created = Created::default();
    // Before the pins or the socket are touched; held until the end.
    let _instance = Instance::acquire(&pins.0, &opts.socket, &mut created)?;
    let metrics = match opts.metrics {
        Some(addr) => Some(crate::metrics::bind(addr).await?),
        None => None,
    };
    notify::status("loading the datapath");
    let (r, adopted) = Reconciler::open_pinned(&config, &pins, created)?;
    if adopted.virtual_servers > 0 {
        info!(
            virtual_servers = adopted.virtual_servers,
            real_servers = adopted.real_servers,
            "adopting the pinned datapath of a previous run"
        );
    }

    let (neighbours, mut hop_rx) = Neighbours::start()
        .await
        .context("starting the next-hop service (netlink)")?;
    let (health_tx, mut health_rx) = mpsc::unbounded_channel();
    let ready = match &config.sync {
        Some(s) => Readiness::new(&s.peers, s.ready_timeout, Instant::now()),
        None => Readiness::new(&[], Duration::ZERO, Instant::now()),
    };
    let mut d = Daemon {
        r,
        attached: Attached::new(&config.director),
        config,
        monitor: Monitor::new(health_tx),
        health_notes: HashMap::new(),
        neighbours,
        hops: HashMap::new(),
        last_sample: None,
        rates: HashMap::new(),
        conntrack_entries: 0,
        half_open_entries: 0,
        reload_results: reload::Results::default(),
        transitions: 0,
        ready,
        sync: None,
        announce: None,
    };
    // Known next hops first, so the first packets find resolved servers.
    let mut unknown = d.follow_servers();
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
    d.r.apply()?;
    let n = d.r.forget_unclaimed(&adopted)?;
    if !adopted.unclaimed_backends.is_empty() {
        info!(
            servers = adopted.unclaimed_backends.len(),
            connections = n,
            "expired connections: servers of a previous run not in this configuration"
        );
    }

    let (mut inbound, mut events, mut client_hops) = (None, None, None);
    if let Some(cfg) = d.config.sync.clone() {
        let (replication, i) = Replication::start(&cfg, &mut d.r, d.neighbours.clone())
            .await
            .context("starting state sync")?;
        d.sync = Some(replication);
        (inbound, events, client_hops) = (Some(i.inbound), Some(i.events), Some(i.hops));
    }

    let ifaces = d.config.director.interfaces.clone();
    let xdp_mode = d.config.director.xdp_mode;
    notify::status(&format!("attaching to {}", ifaces.join(",")));
    for iface in &ifaces {
        let running = d.neighbours.xdp(iface).await?;
        d.r.maps_mut()
            .attach(iface, xdp_mode, running)
            .map_err(|e| startup::attach_error(e, iface, xdp_mode))?;
    }
    for stale in pins
        .linked_interfaces()
        .into_iter()
        .filter(|i| !ifaces.contains(i))
    {
        let _ = std::fs::remove_file(pins.link(&stale));
        info!(iface = %stale, "detached from an interface no longer configured");
    }
    d.r.maps_mut().finish_upgrade()?;
    d.monitor.set_targets(d.health_targets());
    d.ready.attached();
    d.announce = d
        .config
        .director
        .announce_table
        .map(|table| Announcer::start(table, d.neighbours.clone()));

    let (call_tx, mut call_rx) = mpsc::channel::<Call>(64);
    let control = control::bind(&opts.socket)?;
    let ctl_tx = call_tx.clone();
    tokio::spawn(async move {
        if let Err(e) = control::serve(control, ctl_tx).await {
            error!("control socket: {e:#}");
        }
    });
    if let Some(listener) = metrics {
        let tx = call_tx.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(listener, tx).await {
                error!("metrics: {e:#}");
            }
        });
    }
    // Started: what this run pinned is the running datapath now.
    d.r.maps_mut().keep_pins();
    notify::ready(&d.summary());
    info!(
        config = %d.config.path.display(),
        interfaces = %ifaces.join(","),
        virtual_servers = d.r.model().vss.len(),
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
    let mut announce = tokio::time::interval(ANNOUNCE_INTERVAL);
    let mut watchdog = notify::Watchdog::from_env();
    loop {
        let step: anyhow::Result<()> = tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => {
                // Logged either way; nobody waits for an answer.
                let _ = d.reload();
                Ok(())
            }
            Some((req, reply)) = call_rx.recv() => {
                let _ = reply.send(d.handle(req));
                Ok(())
            }
            Some(t) = health_rx.recv() => {
                let r = d.on_transition(t);
                d.announce();
                r
            }
            Some(e) = hop_rx.recv() => d.on_hop(e),
            Some(i) = recv(inbound.as_mut()) => { d.on_sync_inbound(i); Ok(()) }
            Some(b) = recv(events.as_mut()) => { d.on_sync_events(&b); Ok(()) }
            Some((ip, hop)) = recv(client_hops.as_mut()) => { d.on_client_hop(ip, hop); Ok(()) }
            _ = sweep.tick() => { d.sweep(); Ok(()) }
            _ = sample.tick() => { d.sample(); Ok(()) }
            _ = drains.tick() => d.drains(),
            // Also after each health transition, so that a VIP's route
            // goes as soon as its last server does.
            _ = announce.tick() => { d.announce(); Ok(()) }
            _ = watchdog.tick() => { notify::watchdog(); Ok(()) }
        };
        if let Err(e) = step {
            error!("{e:#}");
        }
    }
    notify::stopping();
    let _ = std::fs::remove_file(&opts.socket);
    if let Ok(reasons) = d.r.maps().reasons() {
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
