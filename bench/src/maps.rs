//! Filling the director's maps the way the daemon does, through its reconciler,
//! with next hops given instead of resolved: the benchmarks know them, or make
//! them up where no packet leaves.

use std::net::SocketAddr;

use anyhow::{Result, anyhow};
use director::{apply::Reconciler, config, config::Config};
use director_common::entries::Hop;

/// Every real server of the reconciler's model: backend id and address.
pub fn servers(r: &Reconciler) -> Vec<(u32, SocketAddr)> {
    r.model()
        .vss
        .iter()
        .flat_map(|vs| vs.servers.iter().map(|rs| (rs.id, rs.cfg.address)))
        .collect()
}

/// Gives every real server the hop `hop_of` names for it (by backend id and
/// address).
pub fn set_hops(r: &mut Reconciler, hop_of: impl Fn(u32, SocketAddr) -> Result<Hop>) -> Result<()> {
    for (id, address) in servers(r) {
        r.set_hop(id, hop_of(id, address)?);
    }
    Ok(())
}

/// Parses `text`, loads the program with room for `conntrack_max` connections
/// (the configuration's own when `None`), and writes every map with the hops
/// `hop_of` gives.
pub fn load(
    text: &str,
    conntrack_max: Option<u32>,
    hop_of: impl Fn(u32, SocketAddr) -> Result<Hop>,
) -> Result<Reconciler> {
    let mut config = parse(text)?;
    if let Some(max) = conntrack_max {
        config.director.conntrack_max = max;
    }
    let mut r = Reconciler::load(&config)?;
    set_hops(&mut r, hop_of)?;
    r.apply()?;
    Ok(r)
}

pub fn parse(text: &str) -> Result<Config> {
    Ok(config::parse(text, "bench.toml")
        .map_err(|e| anyhow!("{e}"))?
        .config)
}
