//! Control-plane scale: how long a large configuration takes from a parsed
//! configuration to written maps through the daemon's reconciler (load the program
//! and create its maps, build the model, write every map), how parsing the text
//! grows with its size, how long one Maglev table takes, and what a single-backend
//! change through the reconciler costs. A live reload end to end is timed in the HTTP
//! section's lab (`wrk::reload_latency`), where a director runs.
//!
//! The large configurations are built by parsing one virtual server and cloning it
//! with new addresses (checked equal to parsing the whole text on the smallest
//! size), so that these figures are the reconciler's work; parsing the text is
//! timed on its own (see [`ParseRun`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, ensure};
use director::{
    apply::Reconciler,
    config::{self, Config},
    dataplane::{Dataplane, Sizes},
    plan::stable_key,
};
use director_common::{entries::Hop, maglev};
use director_tests::config as text;
use director_tests::lab::Mode;
use serde::Serialize;

use crate::maps;
use crate::stats::Summary;
use crate::{Scale, progress};

/// Maglev table size the director uses by default (a prime).
pub const MAGLEV_SLOTS: u32 = 65_537;
/// Backends in the Maglev timing.
pub const MAGLEV_BACKENDS: usize = 100;

#[derive(Clone, Debug, Serialize)]
pub struct ScaleRun {
    pub scheduler: &'static str,
    pub virtual_servers: usize,
    pub real_servers_per_vs: usize,
    pub ring_entries: usize,
    /// The model: ids for every server, next hops recorded.
    pub plan_ms: f64,
    /// Loading the program (the verifier) and creating its maps.
    pub load_ms: f64,
    /// The reconciler's first `apply`: lists, virtual servers, backends, NAT servers.
    pub install_ms: f64,
    /// load + plan + install: from a parsed configuration to all maps written.
    pub to_maps_ms: f64,
}

/// `config::parse` of a generated text.
#[derive(Clone, Debug, Serialize)]
pub struct ParseRun {
    pub virtual_servers: usize,
    pub real_servers_per_vs: usize,
    pub config_bytes: usize,
    pub parse_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ControlPlane {
    pub wrr: ScaleRun,
    pub mh: ScaleRun,
    pub parse: Vec<ParseRun>,
    /// One `maglev::table` of [`MAGLEV_BACKENDS`] backends and [`MAGLEV_SLOTS`] slots, ms.
    pub maglev_ms: Summary,
    /// Map writes of a single-backend change, µs: `set_backend`, the new wrr ring and
    /// member list into free slots, then the `VipInfo` swap that publishes them.
    pub backend_change_us: Summary,
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Virtual server `v`'s address and real server `r`'s, all distinct.
fn vs_addr(v: usize) -> SocketAddr {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 1)) + v as u32);
    SocketAddr::new(IpAddr::V4(ip), 80)
}

fn rs_addr(v: usize, r: usize) -> SocketAddr {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 1)) + (v * 256 + r) as u32);
    SocketAddr::new(IpAddr::V4(ip), 8080)
}

pub fn config_text(scheduler: &str, vs: usize, rs: usize) -> String {
    (0..vs)
        .fold(text::Config::new(&["eth0", "eth1"]), |config, v| {
            config.virtual_server(
                text::VirtualServer::tcp(&format!("vs{v}"), vs_addr(v))
                    .scheduler(scheduler)
                    .forward(Mode::Nat)
                    .real_servers((0..rs).map(|r| rs_addr(v, r))),
            )
        })
        .to_toml()
}

/// A made-up next hop: no packet leaves.
const HOP: Hop = Hop {
    ifindex: 2,
    dst_mac: [0x02, 0, 0, 0, 0x10, 1],
    src_mac: [0x02, 0, 0, 0, 0, 0xd2],
};

/// `vs` copies of a parsed one-server configuration, each with its own addresses:
/// what parsing [`config_text`]`(scheduler, vs, rs)` gives, without its cost.
fn cloned_config(scheduler: &str, vs: usize, rs: usize) -> Result<Config> {
    let mut config = config::parse(&config_text(scheduler, 1, rs), "scale.toml")
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .config;
    let template = config.virtual_servers.pop().context("one virtual server")?;
    config.virtual_servers = (0..vs)
        .map(|v| {
            let mut s = template.clone();
            s.name = format!("vs{v}");
            s.address = vs_addr(v);
            for (r, real) in s.real_servers.iter_mut().enumerate() {
                real.address = rs_addr(v, r);
            }
            s
        })
        .collect();
    Ok(config)
}

fn parse_run(vs: usize, rs: usize) -> Result<(ParseRun, Config)> {
    let text = config_text("wrr", vs, rs);
    let t = Instant::now();
    let loaded = config::parse(&text, "scale.toml").map_err(|e| anyhow::anyhow!("{e}"))?;
    let run = ParseRun {
        virtual_servers: vs,
        real_servers_per_vs: rs,
        config_bytes: text.len(),
        parse_ms: ms_since(t),
    };
    progress(&format!(
        "control plane: parsing {vs} x {rs} ({} KiB): {:.0} ms",
        text.len() / 1024,
        run.parse_ms
    ));
    Ok((run, loaded.config))
}

fn scale_run(scheduler: &'static str, vs: usize, rs: usize) -> Result<(ScaleRun, Reconciler)> {
    progress(&format!(
        "control plane: {vs} virtual servers x {rs} real servers, {scheduler}"
    ));
    let config = cloned_config(scheduler, vs, rs)?;
    let start = Instant::now();
    let sizes = Sizes::for_config(&config);
    let dp = Dataplane::load(&sizes)?;
    let load_ms = ms_since(start);
    let t = Instant::now();
    let mut r = Reconciler::new(dp, &sizes);
    r.reconcile(&config, Instant::now())
        .map_err(|e| anyhow!(e))?;
    maps::set_hops(&mut r, |_, _| Ok(HOP))?;
    let plan_ms = ms_since(t);
    let t = Instant::now();
    r.apply()?;
    let install_ms = ms_since(t);
    let to_maps_ms = ms_since(start);
    let ring_entries = r
        .model()
        .vss
        .iter()
        .filter_map(|v| v.written.as_ref())
        .map(|w| w.lists.len())
        .sum();
    let run = ScaleRun {
        scheduler,
        virtual_servers: vs,
        real_servers_per_vs: rs,
        ring_entries,
        plan_ms,
        load_ms,
        install_ms,
        to_maps_ms,
    };
    progress(&format!(
        "control plane: {scheduler}: {to_maps_ms:.0} ms to all maps written (load {load_ms:.0}, plan {plan_ms:.0}, install {install_ms:.0})"
    ));
    Ok((run, r))
}

fn maglev_ms(runs: usize) -> Summary {
    let keyed: Vec<(u64, u32)> = (0..MAGLEV_BACKENDS)
        .map(|r| (stable_key(rs_addr(0, r)), 1))
        .collect();
    let samples: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            let table = maglev::table(&keyed, MAGLEV_SLOTS);
            let ms = ms_since(t);
            assert_eq!(table.len(), MAGLEV_SLOTS as usize, "a full Maglev table");
            ms
        })
        .collect();
    Summary::of(&samples)
}

/// Takes virtual server 0's first backend out of its wrr ring and puts it back,
/// `runs` times, as `director weight` does: the reconciler recomputes that virtual
/// server's lists, writes them to free ring slots, swaps its `VipInfo` and writes
/// the backend. Timed from the change to all maps written.
fn backend_change_us(r: &mut Reconciler, runs: usize) -> Result<Summary> {
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs.max(1) {
        ensure!(
            r.model()
                .vss
                .first()
                .is_some_and(|vs| !vs.servers.is_empty()),
            "virtual server 0 has backends"
        );
        let t = Instant::now();
        let first = r.server_mut(0, 0);
        first.weight_override = (i % 2 == 0).then_some(0);
        r.apply()?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(Summary::of(&samples))
}

pub fn run(scale: &Scale) -> Result<ControlPlane> {
    let mut parse = Vec::new();
    for (i, &vs) in scale.parse_ladder.iter().enumerate() {
        let (run, parsed) = parse_run(vs, scale.rs)?;
        if i == 0 {
            ensure!(
                parsed == cloned_config("wrr", vs, scale.rs)?,
                "the cloned configuration differs from the parsed one"
            );
        }
        parse.push(run);
    }
    let (wrr_run, mut r) = scale_run("wrr", scale.vs, scale.rs)?;
    let backend_change_us = backend_change_us(&mut r, scale.change_runs)?;
    drop(r);
    progress(&format!(
        "control plane: single-backend change through the reconciler: {:.0} us (median)",
        backend_change_us.p50
    ));
    let (mh, r) = scale_run("mh", scale.mh_vs, scale.rs)?;
    drop(r);
    let maglev_ms = maglev_ms(scale.maglev_runs);
    progress(&format!(
        "control plane: Maglev table, {MAGLEV_BACKENDS} backends, {MAGLEV_SLOTS} slots: {:.2} ms (median)",
        maglev_ms.p50
    ));
    Ok(ControlPlane {
        wrr: wrr_run,
        mh,
        parse,
        maglev_ms,
        backend_change_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_configuration_is_valid() {
        let text = config_text("wrr", 3, 5);
        let loaded = config::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let vss = &loaded.config.virtual_servers;
        let servers: usize = vss.iter().map(|v| v.real_servers.len()).sum();
        assert_eq!((vss.len(), servers), (3, 15));
    }
}
