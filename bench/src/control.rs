//! Control-plane scale: how long a large configuration takes from a parsed
//! configuration to written maps (plan, load the program and create its maps, install
//! rings and virtual servers, write every backend), how parsing the text grows with
//! its size, how long one Maglev table takes, and what the map writes of a
//! single-backend change cost. A live reload end to end is timed in the HTTP
//! section's lab (`wrk::reload_latency`), where a director runs.
//!
//! The large configurations are built by parsing one virtual server and cloning it
//! with new addresses (checked equal to parsing the whole text on the smallest
//! size), so that these figures are the plan and the map writes; parsing the text is
//! timed on its own (see [`ParseRun`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use director::{
    config::{self, Config},
    dataplane::Dataplane,
    plan::{Plan, stable_key},
};
use director_common::{maglev, wrr};
use director_tests::config as text;
use director_tests::lab::Mode;
use serde::Serialize;

use crate::maps::{self, Hop};
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
    pub plan_ms: f64,
    pub load_ms: f64,
    pub install_ms: f64,
    pub backends_ms: f64,
    /// plan + load + install + backends: from a parsed configuration to all maps written.
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
    pub backend_change_map_writes_us: Summary,
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

fn scale_run(scheduler: &'static str, vs: usize, rs: usize) -> Result<(ScaleRun, Dataplane, Plan)> {
    progress(&format!(
        "control plane: {vs} virtual servers x {rs} real servers, {scheduler}"
    ));
    let config = cloned_config(scheduler, vs, rs)?;
    let start = Instant::now();
    let plan = Plan::new(&config);
    let plan_ms = ms_since(start);
    let t = Instant::now();
    let mut dp = Dataplane::load(&plan.sizes(config.director.conntrack_max))?;
    let load_ms = ms_since(t);
    let t = Instant::now();
    dp.install(&plan)?;
    let install_ms = ms_since(t);
    let t = Instant::now();
    let backends: Vec<_> = plan
        .backends
        .iter()
        .map(|b| (b.id, maps::backend(b, &HOP)))
        .collect();
    dp.set_backends(&backends)?;
    let backends_ms = ms_since(t);
    let to_maps_ms = ms_since(start);
    let run = ScaleRun {
        scheduler,
        virtual_servers: vs,
        real_servers_per_vs: rs,
        ring_entries: plan.ring.len(),
        plan_ms,
        load_ms,
        install_ms,
        backends_ms,
        to_maps_ms,
    };
    progress(&format!(
        "control plane: {scheduler}: {to_maps_ms:.0} ms to all maps written (plan {plan_ms:.0}, load {load_ms:.0}, install {install_ms:.0}, backends {backends_ms:.0})"
    ));
    Ok((run, dp, plan))
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
/// `runs` times, timing the map writes of each change. New lists go to free ring
/// slots past the plan's, alternating between two areas, and the `VipInfo` swap
/// publishes them: the way a live change avoids a half-written ring.
fn backend_change_us(dp: &mut Dataplane, plan: &Plan, runs: usize) -> Result<Summary> {
    let vip = &plan.vips[0];
    let mine: Vec<_> = plan.backends.iter().filter(|b| b.vip_id == 0).collect();
    let first = mine.first().context("virtual server 0 has backends")?;
    let area = 2 * (wrr::MAX_RING.min(mine.len() * 4) as u32 + mine.len() as u32);
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs.max(1) {
        let out = i % 2 == 0;
        let weights: Vec<u32> = mine
            .iter()
            .enumerate()
            .map(|(k, b)| if k == 0 && out { 0 } else { b.weight })
            .collect();
        let ring: Vec<u32> = wrr::sequence(&weights, wrr::MAX_RING)
            .into_iter()
            .map(|k| mine[k as usize].id)
            .collect();
        let members: Vec<u32> = mine
            .iter()
            .zip(&weights)
            .filter(|&(_, &w)| w > 0)
            .map(|(b, _)| b.id)
            .collect();
        let base = plan.ring.len() as u32 + (i as u32 % 2) * area;
        let mut info = vip.info;
        info.ring_base = base;
        info.ring_len = ring.len() as u32;
        info.members_base = base + ring.len() as u32;
        info.members_len = members.len() as u32;
        let mut entry = maps::backend(first, &HOP);
        entry.weight = weights[0];

        let t = Instant::now();
        dp.set_backend(first.id, &entry)?;
        dp.set_ring(info.ring_base, &ring)?;
        dp.set_ring(info.members_base, &members)?;
        dp.set_vip(&vip.key, &info)?;
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
    let (wrr_run, mut dp, plan) = scale_run("wrr", scale.vs, scale.rs)?;
    let backend_change_map_writes_us = backend_change_us(&mut dp, &plan, scale.change_runs)?;
    drop(dp);
    progress(&format!(
        "control plane: single-backend change, map writes: {:.0} us (median)",
        backend_change_map_writes_us.p50
    ));
    let (mh, dp, _) = scale_run("mh", scale.mh_vs, scale.rs)?;
    drop(dp);
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
        backend_change_map_writes_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_configuration_is_valid() {
        let text = config_text("wrr", 3, 5);
        let loaded = config::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let plan = Plan::new(&loaded.config);
        assert_eq!((plan.vips.len(), plan.backends.len()), (3, 15));
    }
}
