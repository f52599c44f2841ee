//! The file as written: every value keeps its byte span so that semantic
//! errors found later can point at it. Unknown keys are rejected by serde
//! (`deny_unknown_fields`), and toml reports the span of the offending key.

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{CheckKind, Forward, OnFailure, Protocol, Scheduler, XdpMode};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub director: Spanned<Director>,
    #[serde(default)]
    pub virtual_server: Vec<Spanned<VirtualServer>>,
    pub sync: Option<Spanned<Sync>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Sync {
    pub listen: Spanned<String>,
    pub peers: Spanned<Vec<Spanned<String>>>,
    pub key_file: Spanned<String>,
    pub ready_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Director {
    pub interfaces: Spanned<Vec<Spanned<String>>>,
    pub xdp_mode: Option<Spanned<XdpMode>>,
    pub conntrack_max: Option<Spanned<i64>>,
    pub announce_table: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VirtualServer {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    pub protocol: Option<Spanned<Protocol>>,
    pub scheduler: Option<Spanned<Scheduler>>,
    pub forward: Option<Spanned<Forward>>,
    pub persistence: Option<Spanned<String>>,
    pub persistence_netmask: Option<Spanned<i64>>,
    pub persistence_netmask6: Option<Spanned<i64>>,
    pub hash_source_port: Option<Spanned<bool>>,
    pub tcp_timeout: Option<Spanned<String>>,
    pub tcp_fin_timeout: Option<Spanned<String>>,
    pub udp_timeout: Option<Spanned<String>>,
    pub mh_table_size: Option<Spanned<i64>>,
    pub drain_timeout: Option<Spanned<String>>,
    pub health_check: Option<Spanned<HealthCheck>>,
    #[serde(default)]
    pub real_server: Vec<Spanned<RealServer>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HealthCheck {
    pub kind: Spanned<CheckKind>,
    pub path: Option<Spanned<String>>,
    pub expect_status: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
    pub port: Option<Spanned<i64>>,
    pub expect_body: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub payload: Option<Spanned<String>>,
    pub expect: Option<Spanned<String>>,
    pub command: Option<Spanned<Vec<Spanned<String>>>>,
    pub on_failure: Option<Spanned<OnFailure>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RealServer {
    pub address: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
    pub backup: Option<Spanned<bool>>,
    pub health_check: Option<Spanned<HealthCheck>>,
}
