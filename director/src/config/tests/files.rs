//! Whole files: the full example, the defaults of a minimal one, the shipped
//! examples, and the names the file uses for enum values.

use super::*;

#[test]
fn base_is_valid_without_warnings() {
    assert_eq!(warnings(BASE), Vec::<String>::new());
}

const FULL: &str = r#"[director]
interfaces = ["eth0", "eth1"]
xdp_mode = "generic"
conntrack_max = 65536

[[virtual_server]]
name = "web"
address = "192.0.2.10:80"
protocol = "tcp"
scheduler = "wrr"
forward = "nat"
persistence = "300s"
persistence_netmask = 24
tcp_timeout = "1h"
tcp_fin_timeout = "1m"
drain_timeout = "30s"

[virtual_server.health_check]
kind = "http"
path = "/healthz"
expect_status = "200-299"
interval = "5s"
timeout = "1s 500ms"
rise = 2
fall = 4
port = 8080

[[virtual_server.real_server]]
address = "10.1.0.11:8080"
weight = 3
max_connections = 100
backup = false

[[virtual_server.real_server]]
address = "10.1.0.12:8080"
backup = true

[[virtual_server]]
name = "dns"
address = "192.0.2.53:53"
protocol = "udp"
scheduler = "mh"
forward = "dr"
hash_source_port = true
udp_timeout = "10s"
mh_table_size = 1021

[[virtual_server.real_server]]
address = "10.2.0.1:53"
weight = 0

[[virtual_server]]
name = "web6"
address = "[2001:db8::10]:443"
scheduler = "sh"
persistence = "10m"
persistence_netmask6 = 64

[[virtual_server.real_server]]
address = "[2001:db8:1::11]:443"
"#;

#[test]
fn full_example_parses_to_expected_values() {
    let loaded = parse(FULL, "full.toml").unwrap();
    let expected = Config {
        path: PathBuf::from("full.toml"),
        director: DirectorSection {
            interfaces: vec!["eth0".into(), "eth1".into()],
            xdp_mode: XdpMode::Generic,
            conntrack_max: 65536,
            announce_table: None,
        },
        virtual_servers: vec![
            VirtualServer {
                name: "web".into(),
                address: sa("192.0.2.10:80"),
                protocol: Protocol::Tcp,
                scheduler: Scheduler::Wrr,
                forward: Forward::Nat,
                persistence: Some(Duration::from_secs(300)),
                persistence_netmask: Some(24),
                persistence_netmask6: None,
                hash_source_port: false,
                timeouts: Timeouts {
                    tcp: Duration::from_secs(3600),
                    tcp_fin: Duration::from_secs(60),
                    udp: Duration::from_secs(300),
                },
                mh_table_size: DEFAULT_MH_TABLE_SIZE,
                drain_timeout: Some(Duration::from_secs(30)),
                health_check: Some(HealthCheck {
                    path: Some("/healthz".into()),
                    expect_status: Some((200, 299)),
                    interval: Duration::from_secs(5),
                    timeout: Duration::from_millis(1500),
                    rise: 2,
                    fall: 4,
                    port: Some(8080),
                    ..check(CheckKind::Http)
                }),
                real_servers: vec![
                    RealServer {
                        max_connections: 100,
                        ..rs("10.1.0.11:8080", 3)
                    },
                    RealServer {
                        backup: true,
                        ..rs("10.1.0.12:8080", 1)
                    },
                ],
            },
            VirtualServer {
                name: "dns".into(),
                address: sa("192.0.2.53:53"),
                protocol: Protocol::Udp,
                scheduler: Scheduler::Mh,
                forward: Forward::Dr,
                persistence: None,
                persistence_netmask: None,
                persistence_netmask6: None,
                hash_source_port: true,
                timeouts: Timeouts {
                    tcp: Duration::from_secs(900),
                    tcp_fin: Duration::from_secs(120),
                    udp: Duration::from_secs(10),
                },
                mh_table_size: 1021,
                drain_timeout: None,
                health_check: None,
                real_servers: vec![rs("10.2.0.1:53", 0)],
            },
            VirtualServer {
                name: "web6".into(),
                address: sa("[2001:db8::10]:443"),
                protocol: Protocol::Tcp,
                scheduler: Scheduler::Sh,
                forward: Forward::Nat,
                persistence: Some(Duration::from_secs(600)),
                persistence_netmask: None,
                persistence_netmask6: Some(64),
                hash_source_port: false,
                timeouts: Timeouts::default(),
                mh_table_size: DEFAULT_MH_TABLE_SIZE,
                drain_timeout: None,
                health_check: None,
                real_servers: vec![rs("[2001:db8:1::11]:443", 1)],
            },
        ],
        sync: None,
    };
    assert_eq!(loaded.config, expected);
    let prefixes: Vec<u8> = loaded
        .config
        .virtual_servers
        .iter()
        .map(VirtualServer::persistence_prefix)
        .collect();
    assert_eq!(prefixes, [24, 32, 64]);
}

#[test]
fn full_example_warnings_have_positions() {
    let loaded = parse(FULL, "full.toml").unwrap();
    assert!(
        loaded
            .warnings
            .iter()
            .all(|w| w.severity == Severity::Warning)
    );
    // persistence, max_connections, backup and health_check are applied:
    // no warnings.
    assert_eq!(
        loaded.format_warnings(),
        vec![
            "full.toml:38:1: warning: no real server takes new connections: every real server of \"dns\" has weight 0",
        ]
    );
}

#[test]
fn defaults_apply() {
    let c = clean(BASE);
    assert_eq!(c.director.xdp_mode, XdpMode::Native);
    assert_eq!(c.director.conntrack_max, 1_048_576);
    let vs = &c.virtual_servers[0];
    assert_eq!(
        (vs.protocol, vs.scheduler, vs.forward),
        (Protocol::Tcp, Scheduler::Wrr, Forward::Nat)
    );
    assert_eq!(
        (
            vs.persistence,
            vs.persistence_netmask,
            vs.persistence_netmask6,
            vs.drain_timeout
        ),
        (None, None, None, None)
    );
    assert_eq!(vs.persistence_prefix(), 32);
    assert!(!vs.hash_source_port);
    assert_eq!(
        vs.timeouts,
        Timeouts {
            tcp: Duration::from_secs(900),
            tcp_fin: Duration::from_secs(120),
            udp: Duration::from_secs(300),
        }
    );
    assert_eq!(vs.timeouts, Timeouts::default());
    assert_eq!(vs.mh_table_size, 65_537);
    assert_eq!(DEFAULT_MH_TABLE_SIZE, 65_537);
    assert_eq!(vs.health_check, None);
    assert_eq!(vs.real_servers, vec![rs("10.1.0.11:8080", 1)]);
    // mh without mh_table_size, IPv6 without persistence_netmask6.
    let text = with_vs_keys(BASE6, "scheduler = \"mh\"\npersistence = \"1m\"");
    let vs = &clean(&text).virtual_servers[0];
    assert_eq!(vs.mh_table_size, DEFAULT_MH_TABLE_SIZE);
    assert_eq!(vs.persistence_netmask6, None);
    assert_eq!(vs.persistence_prefix(), 128);
}

const LAB_NAT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab-nat.toml");
const LAB_DR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab-dr.toml");
const LAB_NAT6: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab-nat6.toml");
pub(super) const REFERENCE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/director.toml");

#[test]
fn example_files_parse_without_errors_or_warnings() {
    for path in [LAB_NAT, LAB_DR, LAB_NAT6, REFERENCE] {
        let loaded = load(std::path::Path::new(path)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.warnings, vec![], "{path}");
        assert_eq!(loaded.config.path, PathBuf::from(path));
    }
}

/// Asserts that the example at `path` has one TCP wrr virtual server `name`
/// on `address`, forwarding by `forward` to `servers`; returns its director
/// table.
#[track_caller]
fn lab_example(
    path: &str,
    name: &str,
    address: &str,
    forward: Forward,
    servers: &[RealServer],
) -> DirectorSection {
    let config = load(std::path::Path::new(path))
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert_eq!(config.virtual_servers.len(), 1, "{path}");
    let vs = &config.virtual_servers[0];
    assert_eq!(
        (
            vs.name.as_str(),
            vs.address,
            vs.protocol,
            vs.scheduler,
            vs.forward
        ),
        (name, sa(address), Protocol::Tcp, Scheduler::Wrr, forward),
        "{path}"
    );
    assert_eq!(vs.real_servers, servers, "{path}");
    config.director
}

#[test]
fn lab_examples_have_the_expected_values() {
    let nat = lab_example(
        LAB_NAT,
        "web",
        "192.0.2.10:80",
        Forward::Nat,
        &[
            rs("10.1.0.11:8080", 3),
            rs("10.1.0.12:8080", 2),
            rs("10.1.0.13:8080", 1),
        ],
    );
    assert_eq!(
        nat,
        DirectorSection {
            interfaces: vec!["eth0".into(), "eth1".into()],
            xdp_mode: XdpMode::Native,
            conntrack_max: 65536,
            announce_table: None,
        }
    );
    let dr = lab_example(
        LAB_DR,
        "web",
        "192.0.2.10:80",
        Forward::Dr,
        &[
            rs("10.2.0.11:80", 3),
            rs("10.2.0.12:80", 2),
            rs("10.2.0.13:80", 1),
        ],
    );
    assert_eq!(dr.interfaces, vec!["eth0".to_string()]);
    let nat6 = lab_example(
        LAB_NAT6,
        "web6",
        "[2001:db8:10::10]:80",
        Forward::Nat,
        &[
            rs("[2001:db8:1::11]:8080", 1),
            rs("[2001:db8:1::12]:8080", 1),
            rs("[2001:db8:1::13]:8080", 1),
        ],
    );
    assert_eq!(
        nat6.interfaces,
        vec!["eth0".to_string(), "eth1".to_string()]
    );
}

/// Every key of `[sync]`, `[[virtual_server]]` and its real servers (and
/// `announce_table`) appears in the reference, set or commented out, so that
/// it documents them all.
#[test]
fn reference_mentions_every_key() {
    let text = std::fs::read_to_string(REFERENCE).unwrap();
    for key in [
        "announce_table",
        "listen",
        "peers",
        "key_file",
        "ready_timeout",
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
        "weight",
        "max_connections",
        "backup",
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
    ] {
        assert!(
            text.lines().any(|l| {
                let l = l.trim_start_matches(['#', ' ']);
                l.starts_with(&format!("{key} = "))
            }),
            "{key} missing from {REFERENCE}"
        );
    }
}

#[test]
fn enums_display_lowercase_and_protocol_numbers() {
    assert_eq!(XdpMode::Native.to_string(), "native");
    assert_eq!(XdpMode::Generic.to_string(), "generic");
    assert_eq!(Protocol::Tcp.to_string(), "tcp");
    assert_eq!(Protocol::Udp.to_string(), "udp");
    let schedulers = [
        Scheduler::Wrr,
        Scheduler::Rr,
        Scheduler::Lc,
        Scheduler::Wlc,
        Scheduler::Sh,
        Scheduler::Mh,
    ];
    let names: Vec<String> = schedulers.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["wrr", "rr", "lc", "wlc", "sh", "mh"]);
    assert_eq!(Forward::Nat.to_string(), "nat");
    assert_eq!(Forward::Dr.to_string(), "dr");
    assert_eq!(CheckKind::Exec.to_string(), "exec");
    assert_eq!(Protocol::Tcp.as_u8(), 6);
    assert_eq!(Protocol::Udp.as_u8(), 17);
    assert_eq!(Protocol::Tcp.as_u8(), director_common::abi::PROTO_TCP);
    assert_eq!(Protocol::Udp.as_u8(), director_common::abi::PROTO_UDP);
}
