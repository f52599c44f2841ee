//! Director configurations for lab tests, written as TOML text in the schema of
//! examples/director.toml.
//!
//! ```
//! use director_tests::config::{Config, VirtualServer};
//! use director_tests::lab::Mode;
//!
//! let text = Config::new(Mode::Nat)
//!     .virtual_server(
//!         VirtualServer::tcp("web", "192.0.2.10:80".parse().unwrap())
//!             .scheduler("lc")
//!             .set("persistence", "\"3s\"")
//!             .real_servers(["10.1.0.11:8080".parse().unwrap()], &[1]),
//!     )
//!     .to_toml();
//! assert!(text.contains("scheduler = \"lc\""));
//! ```

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::lab::Mode;

/// A whole config: the lab's interfaces and some virtual servers.
#[derive(Debug, Clone)]
pub struct Config {
    mode: Mode,
    conntrack_max: u32,
    virtual_servers: Vec<VirtualServer>,
}

impl Config {
    /// `[director]` for a `mode` lab: `eth0` and `eth1` (NAT) or `eth0` (DR), native
    /// XDP, 65536 connection entries. Every virtual server forwards in `mode`.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            conntrack_max: 65536,
            virtual_servers: Vec::new(),
        }
    }

    pub fn virtual_server(mut self, vs: VirtualServer) -> Self {
        self.virtual_servers.push(vs);
        self
    }

    pub fn to_toml(&self) -> String {
        let interfaces = match self.mode {
            Mode::Nat => r#"["eth0", "eth1"]"#,
            Mode::Dr => r#"["eth0"]"#,
        };
        let mut text = format!(
            "[director]\ninterfaces = {interfaces}\nxdp_mode = \"native\"\nconntrack_max = {}\n",
            self.conntrack_max
        );
        for vs in &self.virtual_servers {
            let _ = write!(
                text,
                "\n[[virtual_server]]\nname = \"{}\"\naddress = \"{}\"\nprotocol = \"{}\"\n\
                 scheduler = \"{}\"\nforward = \"{}\"\n",
                vs.name, vs.address, vs.protocol, vs.scheduler, self.mode
            );
            for (key, value) in &vs.options {
                let _ = writeln!(text, "{key} = {value}");
            }
            for rs in &vs.real_servers {
                let _ = write!(
                    text,
                    "\n[[virtual_server.real_server]]\naddress = \"{}\"\nweight = {}\n",
                    rs.address, rs.weight
                );
                for (key, value) in &rs.options {
                    let _ = writeln!(text, "{key} = {value}");
                }
            }
        }
        text
    }
}

impl From<Config> for crate::lab::DirectorConfig {
    fn from(c: Config) -> Self {
        Self::Text(c.to_toml())
    }
}

/// One `[[virtual_server]]` (scheduler `wrr` unless set).
#[derive(Debug, Clone)]
pub struct VirtualServer {
    name: String,
    address: SocketAddr,
    protocol: &'static str,
    scheduler: String,
    options: Vec<(String, String)>,
    real_servers: Vec<RealServer>,
}

/// One `[[virtual_server.real_server]]`.
#[derive(Debug, Clone)]
pub struct RealServer {
    pub address: SocketAddr,
    pub weight: u32,
    /// Further `key = value` lines (values are TOML: `"3s"` quoted, `true` bare).
    pub options: Vec<(String, String)>,
}

impl VirtualServer {
    pub fn tcp(name: &str, address: SocketAddr) -> Self {
        Self::new(name, address, "tcp")
    }

    pub fn udp(name: &str, address: SocketAddr) -> Self {
        Self::new(name, address, "udp")
    }

    fn new(name: &str, address: SocketAddr, protocol: &'static str) -> Self {
        Self {
            name: name.to_owned(),
            address,
            protocol,
            scheduler: "wrr".to_owned(),
            options: Vec::new(),
            real_servers: Vec::new(),
        }
    }

    pub fn scheduler(mut self, scheduler: &str) -> Self {
        self.scheduler = scheduler.to_owned();
        self
    }

    /// Adds `key = value`; `value` is TOML (`"\"3s\""`, `"24"`, `"true"`).
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.options.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds real servers at `addresses` with `weights` (same length).
    pub fn real_servers(
        mut self,
        addresses: impl IntoIterator<Item = SocketAddr>,
        weights: &[u32],
    ) -> Self {
        let addresses: Vec<SocketAddr> = addresses.into_iter().collect();
        assert_eq!(addresses.len(), weights.len(), "one weight per real server");
        self.real_servers.extend(
            addresses
                .into_iter()
                .zip(weights)
                .map(|(address, &weight)| RealServer {
                    address,
                    weight,
                    options: Vec::new(),
                }),
        );
        self
    }

    /// Adds one real server with its own options.
    pub fn real_server(mut self, rs: RealServer) -> Self {
        self.real_servers.push(rs);
        self
    }
}
