//! The file as written: every value keeps its byte span so that semantic
//! errors found later can point at it. Each table is read key by key
//! (`read`), so that every unknown key, wrong type and missing key is
//! reported, not only the first; a table that lacks a required key, or a
//! value of the wrong type, is left out and the rest is still checked.

use serde_spanned::Spanned;
use toml::de::DeTable;

use super::{
    CheckKind, Forward, OnFailure, Protocol, Scheduler, XdpMode,
    read::{Reader, Value},
};

pub(super) struct File {
    /// None when it is missing or unreadable (a problem already says so).
    pub director: Option<Spanned<Director>>,
    pub virtual_server: Vec<Spanned<VirtualServer>>,
    pub sync: Option<Spanned<Sync>>,
}

impl File {
    pub fn read(r: &mut Reader, doc: &Spanned<DeTable<'_>>) -> File {
        let mut t = r.root(doc, &["director", "virtual_server", "sync"]);
        File {
            director: r.required(&mut t, "director", Director::read),
            virtual_server: r
                .optional(&mut t, "virtual_server", |r, v| {
                    r.tables(v, VirtualServer::read)
                })
                .unwrap_or_default(),
            sync: r.optional(&mut t, "sync", Sync::read),
        }
    }
}

pub(super) struct Sync {
    pub listen: Spanned<String>,
    pub peers: Spanned<Vec<Spanned<String>>>,
    pub key_file: Spanned<String>,
    pub ready_timeout: Option<Spanned<String>>,
}

impl Sync {
    fn read(r: &mut Reader, v: &Value<'_>) -> Option<Spanned<Sync>> {
        let mut t = r.table(v, &["listen", "peers", "key_file", "ready_timeout"])?;
        let listen = r.required(&mut t, "listen", Reader::string);
        let peers = r.required(&mut t, "peers", Reader::strings);
        let key_file = r.required(&mut t, "key_file", Reader::string);
        let ready_timeout = r.optional(&mut t, "ready_timeout", Reader::string);
        Some(Spanned::new(
            v.span(),
            Sync {
                listen: listen?,
                peers: peers?,
                key_file: key_file?,
                ready_timeout,
            },
        ))
    }
}

pub(super) struct Director {
    pub interfaces: Spanned<Vec<Spanned<String>>>,
    pub xdp_mode: Option<Spanned<XdpMode>>,
    pub conntrack_max: Option<Spanned<i128>>,
    pub announce_table: Option<Spanned<i128>>,
}

impl Director {
    fn read(r: &mut Reader, v: &Value<'_>) -> Option<Spanned<Director>> {
        let mut t = r.table(
            v,
            &["interfaces", "xdp_mode", "conntrack_max", "announce_table"],
        )?;
        let interfaces = r.required(&mut t, "interfaces", Reader::strings);
        let xdp_mode = r.optional(&mut t, "xdp_mode", Reader::choice);
        let conntrack_max = r.optional(&mut t, "conntrack_max", Reader::integer);
        let announce_table = r.optional(&mut t, "announce_table", Reader::integer);
        Some(Spanned::new(
            v.span(),
            Director {
                interfaces: interfaces?,
                xdp_mode,
                conntrack_max,
                announce_table,
            },
        ))
    }
}

pub(super) struct VirtualServer {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    pub protocol: Option<Spanned<Protocol>>,
    pub scheduler: Option<Spanned<Scheduler>>,
    pub forward: Option<Spanned<Forward>>,
    pub persistence: Option<Spanned<String>>,
    pub persistence_netmask: Option<Spanned<i128>>,
    pub persistence_netmask6: Option<Spanned<i128>>,
    pub hash_source_port: Option<Spanned<bool>>,
    pub tcp_timeout: Option<Spanned<String>>,
    pub tcp_fin_timeout: Option<Spanned<String>>,
    pub udp_timeout: Option<Spanned<String>>,
    pub mh_table_size: Option<Spanned<i128>>,
    pub drain_timeout: Option<Spanned<String>>,
    pub health_check: Option<Spanned<HealthCheck>>,
    pub real_server: Vec<Spanned<RealServer>>,
    /// Keys set to a value that could not be read.
    pub unreadable: Vec<&'static str>,
}

impl VirtualServer {
    fn read(r: &mut Reader, v: &Value<'_>) -> Option<Spanned<VirtualServer>> {
        let mut t = r.table(
            v,
            &[
                "name",
                "address",
                "protocol",
                "scheduler",
                "forward",
                "persistence",
                "persistence_netmask",
                "persistence_netmask6",
                "hash_source_port",
                "tcp_timeout",
                "tcp_fin_timeout",
                "udp_timeout",
                "mh_table_size",
                "drain_timeout",
                "health_check",
                "real_server",
            ],
        )?;
        let name = r.required(&mut t, "name", Reader::string);
        let address = r.required(&mut t, "address", Reader::string);
        let vs = VirtualServer {
            protocol: r.optional(&mut t, "protocol", Reader::choice),
            scheduler: r.optional(&mut t, "scheduler", Reader::choice),
            forward: r.optional(&mut t, "forward", Reader::choice),
            persistence: r.optional(&mut t, "persistence", Reader::string),
            persistence_netmask: r.optional(&mut t, "persistence_netmask", Reader::integer),
            persistence_netmask6: r.optional(&mut t, "persistence_netmask6", Reader::integer),
            hash_source_port: r.optional(&mut t, "hash_source_port", Reader::boolean),
            tcp_timeout: r.optional(&mut t, "tcp_timeout", Reader::string),
            tcp_fin_timeout: r.optional(&mut t, "tcp_fin_timeout", Reader::string),
            udp_timeout: r.optional(&mut t, "udp_timeout", Reader::string),
            mh_table_size: r.optional(&mut t, "mh_table_size", Reader::integer),
            drain_timeout: r.optional(&mut t, "drain_timeout", Reader::string),
            health_check: r.optional(&mut t, "health_check", HealthCheck::read),
            real_server: r
                .optional(&mut t, "real_server", |r, v| r.tables(v, RealServer::read))
                .unwrap_or_default(),
            name: name?,
            address: address?,
            unreadable: t.unreadable,
        };
        Some(Spanned::new(v.span(), vs))
    }
}

pub(super) struct HealthCheck {
    pub kind: Spanned<CheckKind>,
    pub path: Option<Spanned<String>>,
    pub expect_status: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub rise: Option<Spanned<i128>>,
    pub fall: Option<Spanned<i128>>,
    pub port: Option<Spanned<i128>>,
    pub expect_body: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub payload: Option<Spanned<String>>,
    pub expect: Option<Spanned<String>>,
    pub command: Option<Spanned<Vec<Spanned<String>>>>,
    pub on_failure: Option<Spanned<OnFailure>>,
    /// Keys set to a value that could not be read.
    pub unreadable: Vec<&'static str>,
}

impl HealthCheck {
    fn read(r: &mut Reader, v: &Value<'_>) -> Option<Spanned<HealthCheck>> {
        let mut t = r.table(
            v,
            &[
                "kind",
                "path",
                "expect_status",
                "interval",
                "timeout",
                "rise",
                "fall",
                "port",
                "expect_body",
                "host",
                "payload",
                "expect",
                "command",
                "on_failure",
            ],
        )?;
        let kind = r.required(&mut t, "kind", Reader::choice);
        let check = HealthCheck {
            path: r.optional(&mut t, "path", Reader::string),
            expect_status: r.optional(&mut t, "expect_status", Reader::string),
            interval: r.optional(&mut t, "interval", Reader::string),
            timeout: r.optional(&mut t, "timeout", Reader::string),
            rise: r.optional(&mut t, "rise", Reader::integer),
            fall: r.optional(&mut t, "fall", Reader::integer),
            port: r.optional(&mut t, "port", Reader::integer),
            expect_body: r.optional(&mut t, "expect_body", Reader::string),
            host: r.optional(&mut t, "host", Reader::string),
            payload: r.optional(&mut t, "payload", Reader::string),
            expect: r.optional(&mut t, "expect", Reader::string),
            command: r.optional(&mut t, "command", Reader::strings),
            on_failure: r.optional(&mut t, "on_failure", Reader::choice),
            kind: kind?,
            unreadable: t.unreadable,
        };
        Some(Spanned::new(v.span(), check))
    }
}

pub(super) struct RealServer {
    pub address: Spanned<String>,
    pub weight: Option<Spanned<i128>>,
    pub max_connections: Option<Spanned<i128>>,
    pub backup: Option<Spanned<bool>>,
    pub health_check: Option<Spanned<HealthCheck>>,
}

impl RealServer {
    fn read(r: &mut Reader, v: &Value<'_>) -> Option<Spanned<RealServer>> {
        let mut t = r.table(
            v,
            &[
                "address",
                "weight",
                "max_connections",
                "backup",
                "health_check",
            ],
        )?;
        let address = r.required(&mut t, "address", Reader::string);
        let rs = RealServer {
            weight: r.optional(&mut t, "weight", Reader::integer),
            max_connections: r.optional(&mut t, "max_connections", Reader::integer),
            backup: r.optional(&mut t, "backup", Reader::boolean),
            health_check: r.optional(&mut t, "health_check", HealthCheck::read),
            address: address?,
        };
        Some(Spanned::new(v.span(), rs))
    }
}
