//! Just enough of the director's config schema to print the demo's expectations
//! (virtual servers, their scheduler and real-server weights); everything else in the
//! file is ignored. The director itself is the authority on the schema.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub virtual_server: Vec<VirtualServer>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VirtualServer {
    #[serde(default)]
    pub name: Option<String>,
    pub address: String,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub scheduler: Option<String>,
    #[serde(default)]
    pub forward: Option<String>,
    #[serde(default)]
    pub real_server: Vec<RealServer>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RealServer {
    pub address: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

impl RealServer {
    /// The IP part of `address` (`"10.1.0.11:8080"` or `"10.1.0.11"`).
    pub fn ip(&self) -> Option<Ipv4Addr> {
        self.address.split(':').next()?.parse().ok()
    }
}

impl VirtualServer {
    pub fn weight_sum(&self) -> u64 {
        self.real_server.iter().map(|r| u64::from(r.weight)).sum()
    }
}

pub fn parse(text: &str) -> Result<ConfigFile> {
    Ok(toml::from_str(text)?)
}

pub fn load(path: &Path) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    parse(&text).with_context(|| format!("parse {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, RealServer, VirtualServer};
    use crate::lab::Mode;

    #[test]
    fn reads_weights_and_ignores_the_rest() {
        let text = Config::lab(Mode::Nat)
            .virtual_server(
                VirtualServer::tcp("web", "192.0.2.10:80".parse().unwrap())
                    .scheduler("wrr")
                    .real_servers(["10.1.0.11:8080"])
                    .weights(&[3])
                    // No port, no weight: the VIP's port and weight 1.
                    .real_server(RealServer::new("10.1.0.12")),
            )
            .to_toml();
        let cfg = parse(&text).unwrap();
        let vs = &cfg.virtual_server[0];
        assert_eq!(vs.scheduler.as_deref(), Some("wrr"));
        assert_eq!(vs.real_server[0].ip(), Some(Ipv4Addr::new(10, 1, 0, 11)));
        assert_eq!(vs.real_server[1].ip(), Some(Ipv4Addr::new(10, 1, 0, 12)));
        assert_eq!(vs.weight_sum(), 4);
    }
}
