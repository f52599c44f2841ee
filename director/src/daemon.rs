//! `director run`: load, resolve, attach, then keep next hops fresh and the
//! connection table clean until a signal says stop.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use aya::programs::XdpMode as AyaXdpMode;
use director_common::abi::{BACKEND_F_RESOLVED, Backend, wire_port};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::{
    config::{Config, XdpMode},
    dataplane::{Dataplane, monotonic_ns},
    gc,
    neighbor::{self, NextHop},
    plan::{Plan, PlannedBackend, addr_key},
};

const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(5);
const GC_INTERVAL: Duration = Duration::from_secs(10);

struct State {
    dp: Dataplane,
    plan: Plan,
    /// Last next hop written per backend id.
    hops: BTreeMap<u32, NextHop>,
}

fn backend_entry(b: &PlannedBackend, hop: Option<&NextHop>) -> Backend {
    let (addr, family) = addr_key(b.address.ip());
    let mut e = Backend {
        addr,
        port: wire_port(b.address.port()),
        family,
        weight: b.weight,
        max_conns: b.max_conns,
        ..Backend::default()
    };
    if let Some(h) = hop {
        e.ifindex = h.ifindex;
        e.dst_mac = h.dst_mac;
        e.src_mac = h.src_mac;
        e.flags = BACKEND_F_RESOLVED;
    }
    e
}

impl State {
    /// Resolves every backend and writes the ones whose next hop changed.
    async fn refresh_hops(&mut self, interfaces: &[String]) -> anyhow::Result<()> {
        // Concurrently: an unreachable server costs a timeout, not a
        // timeout per server in sequence.
        let mut tasks = tokio::task::JoinSet::new();
        for b in &self.plan.backends {
            let (id, addr) = (b.id, b.address);
            tasks.spawn(async move { (id, neighbor::resolve(addr).await) });
        }
        let mut results = BTreeMap::new();
        while let Some(done) = tasks.join_next().await {
            let (id, r) = done.context("next-hop resolver task")?;
            results.insert(id, r);
        }
        for b in &self.plan.backends {
            let Some(result) = results.remove(&b.id) else {
                continue;
            };
            match result {
                Ok(hop) => {
                    if self.hops.get(&b.id) == Some(&hop) {
                        continue;
                    }
                    if !interfaces.contains(&hop.ifname) {
                        warn!(server = %b.address, iface = %hop.ifname,
                            "real server is reached through an interface director is not attached to");
                    }
                    info!(vs = %b.vip_name, server = %b.address, iface = %hop.ifname,
                        mac = %fmt_mac(&hop.dst_mac), "next hop resolved");
                    self.dp.set_backend(b.id, &backend_entry(b, Some(&hop)))?;
                    self.hops.insert(b.id, hop);
                }
                Err(e) => {
                    // Keep a last known next hop: a neighbour that stops
                    // answering ARP is the health checker's business.
                    if !self.hops.contains_key(&b.id) {
                        warn!(vs = %b.vip_name, server = %b.address, "cannot resolve next hop: {e:#}");
                        self.dp.set_backend(b.id, &backend_entry(b, None))?;
                    }
                }
            }
        }
        Ok(())
    }

    fn sweep(&mut self) {
        let s = gc::sweep(&mut self.dp, &self.plan, monotonic_ns());
        if s != gc::Swept::default() {
            tracing::debug!(
                conns = s.conns_expired,
                persistence = s.persist_expired,
                "expired idle entries"
            );
        }
    }

    fn log_counters(&self) {
        if let Ok(reasons) = self.dp.reasons() {
            for (r, n) in reasons.into_iter().filter(|&(_, n)| n > 0) {
                info!(reason = r.name(), packets = n, "datapath counter");
            }
        }
        for b in &self.plan.backends {
            if let Ok(t) = self.dp.backend_traffic(b.id) {
                let c = self.dp.conn_counts(b.id).unwrap_or_default();
                info!(vs = %b.vip_name, server = %b.address, conns = t.conns,
                    active = c.active, inactive = c.inactive,
                    packets_in = t.packets_in, packets_out = t.packets_out, "real server totals");
            }
        }
    }
}

fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let plan = Plan::new(&config);
    let sizes = plan.sizes(config.director.conntrack_max);
    let mut dp = Dataplane::load(&sizes)?;
    dp.install(&plan)?;
    let mut state = State {
        dp,
        plan,
        hops: BTreeMap::new(),
    };
    let ifaces = &config.director.interfaces;
    state.refresh_hops(ifaces).await?;

    let mode = match config.director.xdp_mode {
        XdpMode::Native => AyaXdpMode::Driver,
        XdpMode::Generic => AyaXdpMode::Skb,
    };
    for iface in ifaces {
        if let Err(e) = state.dp.attach(iface, mode) {
            state.dp.detach_all()?;
            return Err(e);
        }
    }
    info!(
        config = %config.path.display(),
        interfaces = %ifaces.join(","),
        virtual_servers = state.plan.vips.len(),
        real_servers = state.plan.backends.len(),
        conntrack_max = sizes.conntrack_max,
        "ready"
    );

    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let mut refresh = tokio::time::interval(NEIGHBOUR_REFRESH);
    let mut sweep = tokio::time::interval(GC_INTERVAL);
    loop {
        tokio::select! {
            _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
            _ = sighup.recv() => {
                warn!("SIGHUP: live reload is not implemented yet; restart director to apply a new configuration");
            }
            _ = refresh.tick() => {
                if let Err(e) = state.refresh_hops(ifaces).await {
                    warn!("next-hop refresh failed: {e:#}");
                }
            }
            _ = sweep.tick() => state.sweep(),
        }
    }
    state.log_counters();
    state.dp.detach_all()?;
    info!("detached; bye");
    Ok(())
}
