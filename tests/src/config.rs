//! Director configurations for tests and benchmarks, written as TOML text in the schema
//! of examples/director.toml. Keys are written in the order they are set, values as
//! TOML (`"3s"` quoted, `24` and `true` bare); a key set twice keeps its last value.
//!
//! ```
//! use director_tests::config::{Config, RealServer, VirtualServer};
//! use director_tests::lab::Mode;
//!
//! let text = Config::lab(Mode::Nat)
//!     .set("conntrack_max", 1024)
//!     .virtual_server(
//!         VirtualServer::tcp("web", "192.0.2.10:80".parse().unwrap())
//!             .scheduler("lc")
//!             .set("persistence", "3s")
//!             .real_servers(["10.1.0.11:8080"])
//!             .weights(&[3])
//!             .real_server(RealServer::new("10.1.0.12:8080").set("backup", true)),
//!     )
//!     .to_toml();
//! assert!(text.starts_with("[director]\ninterfaces = [\"eth0\", \"eth1\"]\nxdp_mode = \"native\"\nconntrack_max = 1024\n"));
//! assert!(text.contains("scheduler = \"lc\"\npersistence = \"3s\"\nforward = \"nat\"\n"));
//! assert!(text.contains("address = \"10.1.0.11:8080\"\nweight = 3\n"));
//! assert!(text.contains("address = \"10.1.0.12:8080\"\nbackup = true\n"));
//! ```

use std::fmt::{Display, Write as _};
use std::net::SocketAddr;

use toml::Value;

use crate::lab::Mode;

/// `key = value` lines in the order first set.
#[derive(Debug, Clone, Default)]
struct Keys(Vec<(String, Value)>);

impl Keys {
    fn set(&mut self, key: &str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    fn write(&self, text: &mut String) {
        for (key, value) in &self.0 {
            let _ = writeln!(text, "{key} = {value}");
        }
    }
}

/// A whole config: `[director]` and some virtual servers.
#[derive(Debug, Clone)]
pub struct Config {
    director: Keys,
    /// What a virtual server that does not say forwards in.
    forward: Option<Mode>,
    virtual_servers: Vec<VirtualServer>,
}

impl Config {
    /// `[director]` with these interfaces and the director's defaults for the rest.
    pub fn new(interfaces: &[&str]) -> Self {
        let mut director = Keys::default();
        director.set("interfaces", interfaces.to_vec().into());
        Self {
            director,
            forward: None,
            virtual_servers: Vec::new(),
        }
    }

    /// `[director]` for a `mode` lab: `eth0` and `eth1` (NAT) or `eth0` (DR), native
    /// XDP, 65536 connection entries; a virtual server forwards in `mode` unless it
    /// says otherwise.
    pub fn lab(mode: Mode) -> Self {
        let interfaces: &[&str] = match mode {
            Mode::Nat => &["eth0", "eth1"],
            Mode::Dr => &["eth0"],
        };
        let mut config = Self::new(interfaces)
            .set("xdp_mode", "native")
            .set("conntrack_max", 65536);
        config.forward = Some(mode);
        config
    }

    /// Sets a key of `[director]`.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.director.set(key, value.into());
        self
    }

    pub fn virtual_server(mut self, mut vs: VirtualServer) -> Self {
        if let Some(mode) = self.forward
            && !vs.keys.has("forward")
        {
            vs = vs.forward(mode);
        }
        self.virtual_servers.push(vs);
        self
    }

    pub fn to_toml(&self) -> String {
        let mut text = String::from("[director]\n");
        self.director.write(&mut text);
        for vs in &self.virtual_servers {
            text += "\n[[virtual_server]]\n";
            vs.keys.write(&mut text);
            if !vs.health_check.0.is_empty() {
                text += "\n[virtual_server.health_check]\n";
                vs.health_check.write(&mut text);
            }
            for rs in &vs.real_servers {
                text += "\n[[virtual_server.real_server]]\n";
                rs.keys.write(&mut text);
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

/// One `[[virtual_server]]`: its name, address and protocol, then what is set.
#[derive(Debug, Clone)]
pub struct VirtualServer {
    keys: Keys,
    health_check: Keys,
    real_servers: Vec<RealServer>,
}

impl VirtualServer {
    pub fn tcp(name: &str, address: SocketAddr) -> Self {
        Self::new(name, address, "tcp")
    }

    pub fn udp(name: &str, address: SocketAddr) -> Self {
        Self::new(name, address, "udp")
    }

    fn new(name: &str, address: SocketAddr, protocol: &str) -> Self {
        let mut keys = Keys::default();
        keys.set("name", name.into());
        keys.set("address", address.to_string().into());
        keys.set("protocol", protocol.into());
        Self {
            keys,
            health_check: Keys::default(),
            real_servers: Vec::new(),
        }
    }

    pub fn scheduler(self, scheduler: &str) -> Self {
        self.set("scheduler", scheduler)
    }

    pub fn forward(self, mode: Mode) -> Self {
        self.set("forward", mode.to_string())
    }

    /// Sets a key of the virtual server (`"persistence", "3s"`).
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.keys.set(key, value.into());
        self
    }

    /// Sets a key of its `[virtual_server.health_check]` (`"kind", "tcp"`).
    pub fn health_check(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.health_check.set(key, value.into());
        self
    }

    /// Adds real servers at `addresses`, with the director's default weight.
    pub fn real_servers(mut self, addresses: impl IntoIterator<Item = impl Display>) -> Self {
        self.real_servers
            .extend(addresses.into_iter().map(RealServer::new));
        self
    }

    /// Gives the real servers added so far these weights, in order (one each).
    pub fn weights(mut self, weights: &[u32]) -> Self {
        assert_eq!(
            self.real_servers.len(),
            weights.len(),
            "one weight per real server"
        );
        for (rs, &weight) in self.real_servers.iter_mut().zip(weights) {
            rs.keys.set("weight", weight.into());
        }
        self
    }

    pub fn real_server(mut self, rs: RealServer) -> Self {
        self.real_servers.push(rs);
        self
    }
}

/// One `[[virtual_server.real_server]]`: its address, then what is set.
#[derive(Debug, Clone)]
pub struct RealServer {
    keys: Keys,
}

impl RealServer {
    /// At `address` as written: `10.1.0.11:8080`, or `10.1.0.11` for the VIP's port.
    pub fn new(address: impl Display) -> Self {
        let mut keys = Keys::default();
        keys.set("address", address.to_string().into());
        Self { keys }
    }

    pub fn weight(self, weight: u32) -> Self {
        self.set("weight", weight)
    }

    /// Sets a key of the real server (`"max_connections", 2`, `"backup", true`).
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.keys.set(key, value.into());
        self
    }
}
