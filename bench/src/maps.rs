//! Filling the director's maps the way the daemon does (configuration → plan →
//! program and maps → backends), with next hops given instead of resolved: the
//! benchmarks know them, or make them up where no packet leaves.

use anyhow::{Result, anyhow};
use director::{
    config,
    dataplane::Dataplane,
    plan::{Plan, PlannedBackend, addr_key},
};
use director_common::abi::{BACKEND_F_RESOLVED, Backend, wire_port};

/// Where a backend's packets go: egress interface and MAC addresses.
#[derive(Clone, Copy, Debug)]
pub struct Hop {
    pub ifindex: u32,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
}

/// The `BACKENDS` entry of a planned backend behind `hop` (next hop resolved).
pub fn backend(b: &PlannedBackend, hop: &Hop) -> Backend {
    let (addr, family) = addr_key(b.address.ip());
    Backend {
        addr,
        port: wire_port(b.address.port()),
        family,
        weight: b.weight,
        max_conns: b.max_conns,
        ifindex: hop.ifindex,
        dst_mac: hop.dst_mac,
        src_mac: hop.src_mac,
        flags: BACKEND_F_RESOLVED,
        ..Backend::default()
    }
}

/// Parses `text`, plans it, loads the program with room for `conntrack_max`
/// connections (the configuration's own when `None`), installs the plan and writes
/// every backend with the hop `hop_of` gives it.
pub fn load(
    text: &str,
    conntrack_max: Option<u32>,
    hop_of: impl Fn(&PlannedBackend) -> Result<Hop>,
) -> Result<(Dataplane, Plan)> {
    let loaded = config::parse(text, "bench.toml").map_err(|e| anyhow!("{e}"))?;
    let plan = Plan::new(&loaded.config);
    let max = conntrack_max.unwrap_or(loaded.config.director.conntrack_max);
    let mut dp = Dataplane::load(&plan.sizes(max))?;
    dp.install(&plan)?;
    let backends = plan
        .backends
        .iter()
        .map(|b| Ok((b.id, backend(b, &hop_of(b)?))))
        .collect::<Result<Vec<_>>>()?;
    dp.set_backends(&backends)?;
    Ok((dp, plan))
}
