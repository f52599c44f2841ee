//! Positions in these tests are counted by hand: line 1 is the line that
//! starts right after `r#"`, columns are 1-based characters.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Parses `text` expecting failure; returns `LINE:COL: message` for every
/// diagnostic of severity error, in order.
fn errors(text: &str) -> Vec<String> {
    match parse(text, "t.toml") {
        Ok(loaded) => panic!("expected errors, got {loaded:#?}"),
        Err(e) => e.errors().map(|d| d.to_string()).collect(),
    }
}

/// Asserts that `text` has exactly one error, at `pos` ("LINE:COL"), whose
/// message contains `needle`.
#[track_caller]
fn assert_one_error(text: &str, pos: &str, needle: &str) {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "expected exactly one error, got {errs:#?}");
    let err = &errs[0];
    assert!(
        err.starts_with(&format!("{pos}: ")),
        "expected the error at {pos}, got {err:?}"
    );
    assert!(
        err.contains(needle),
        "expected {needle:?} in the error, got {err:?}"
    );
}

/// Parses `text` expecting success; returns the warnings as
/// `LINE:COL: warning: message`.
fn warnings(text: &str) -> Vec<String> {
    match parse(text, "t.toml") {
        Ok(loaded) => loaded.warnings.iter().map(|d| d.to_string()).collect(),
        Err(e) => panic!("expected success, got:\n{e}"),
    }
}

/// A valid minimal file: director, one virtual server, one real server.
/// Tests build on it by replacing or appending lines.
const BASE: &str = r#"[director]
interfaces = ["eth0"]

[[virtual_server]]
name = "web"
address = "192.0.2.10:80"

[[virtual_server.real_server]]
address = "10.1.0.11:8080"
"#;

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
                    kind: CheckKind::Http,
                    path: Some("/healthz".into()),
                    expect_status: Some((200, 299)),
                    interval: Duration::from_secs(5),
                    timeout: Duration::from_millis(1500),
                    rise: 2,
                    fall: 4,
                    port: Some(8080),
                    expect_body: None,
                    host: None,
                    payload: None,
                    expect: None,
                    command: None,
                    on_failure: OnFailure::Keep,
                }),
                real_servers: vec![
                    RealServer {
                        address: sa("10.1.0.11:8080"),
                        weight: 3,
                        max_connections: 100,
                        backup: false,
                        health_check: None,
                    },
                    RealServer {
                        address: sa("10.1.0.12:8080"),
                        weight: 1,
                        max_connections: 0,
                        backup: true,
                        health_check: None,
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
                real_servers: vec![RealServer {
                    address: sa("10.2.0.1:53"),
                    weight: 0,
                    max_connections: 0,
                    backup: false,
                    health_check: None,
                }],
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
                real_servers: vec![RealServer {
                    address: sa("[2001:db8:1::11]:443"),
                    weight: 1,
                    max_connections: 0,
                    backup: false,
                    health_check: None,
                }],
            },
        ],
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
    let c = parse(BASE, "t.toml").unwrap().config;
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
    assert_eq!(
        vs.real_servers,
        vec![RealServer {
            address: sa("10.1.0.11:8080"),
            weight: 1,
            max_connections: 0,
            backup: false,
            health_check: None,
        }]
    );
    // mh without mh_table_size, IPv6 without persistence_netmask6.
    let text = BASE
        .replace("192.0.2.10:80", "[2001:db8::10]:80")
        .replace("10.1.0.11:8080", "[2001:db8::11]:8080")
        .replace(
            "address = \"[2001:db8::10]:80\"\n",
            "address = \"[2001:db8::10]:80\"\nscheduler = \"mh\"\npersistence = \"1m\"\n",
        );
    let vs = &parse(&text, "t.toml").unwrap().config.virtual_servers[0];
    assert_eq!(vs.mh_table_size, DEFAULT_MH_TABLE_SIZE);
    assert_eq!(vs.persistence_netmask6, None);
    assert_eq!(vs.persistence_prefix(), 128);
}

#[test]
fn health_check_defaults_apply() {
    let text = format!("{BASE}\n[virtual_server.health_check]\nkind = \"tcp\"\n");
    let loaded = parse(&text, "t.toml").unwrap();
    assert_eq!(
        loaded.config.virtual_servers[0].health_check,
        Some(HealthCheck {
            kind: CheckKind::Tcp,
            path: None,
            expect_status: None,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            port: None,
            expect_body: None,
            host: None,
            payload: None,
            expect: None,
            command: None,
            on_failure: OnFailure::Keep,
        })
    );
    assert_eq!(loaded.warnings, vec![]);
    let vs = &loaded.config.virtual_servers[0];
    assert_eq!(vs.check_for(&vs.real_servers[0]), vs.health_check.as_ref());
}

#[test]
fn unknown_key_points_at_the_key() {
    let text = r#"[director]
interfaces = ["eth0"]

[[virtual_server]]
name = "web"
address = "192.0.2.10:80"

[[virtual_server.real_server]]
  adress = "10.1.0.11:8080"
"#;
    assert_one_error(
        text,
        "9:3",
        "unknown field `adress`, expected one of `address`",
    );
}

#[test]
fn unknown_key_in_director_and_unknown_table() {
    let text = r#"[director]
interfaces = ["eth0"]
metrics = "127.0.0.1:9100"
"#;
    assert_one_error(text, "3:1", "unknown field `metrics`");
    let text = r#"[director]
interfaces = ["eth0"]

[director.extra]
x = 1
"#;
    assert_one_error(text, "4:11", "unknown field `extra`");
    let text = r#"[director]
interfaces = ["eth0"]

[virtual_servers]
"#;
    assert_one_error(text, "4:2", "unknown field `virtual_servers`");
}

#[test]
fn wrong_type_points_at_the_value() {
    let text = BASE.replace(
        "address = \"10.1.0.11:8080\"\n",
        "address = \"10.1.0.11:8080\"\nweight = \"3\"\n",
    );
    assert_one_error(&text, "10:10", "invalid type: string \"3\"");
    let text = BASE.replace("interfaces = [\"eth0\"]", "interfaces = \"eth0\"");
    assert_one_error(
        &text,
        "2:14",
        "invalid type: string \"eth0\", expected a sequence",
    );
}

#[test]
fn unknown_enum_value_points_at_the_value() {
    let text = BASE.replace(
        "address = \"192.0.2.10:80\"\n",
        "address = \"192.0.2.10:80\"\nforward = \"tun\"\n",
    );
    assert_one_error(
        &text,
        "7:11",
        "unknown variant `tun`, expected `nat` or `dr`",
    );
}

#[test]
fn missing_key_points_at_the_table_header() {
    let text = r#"[director]
interfaces = ["eth0"]

  [[virtual_server]]
  name = "web"

  [[virtual_server.real_server]]
  address = "10.1.0.11:8080"
"#;
    assert_one_error(text, "4:3", "missing field `address`");
    let text = r#"[director]
xdp_mode = "native"
"#;
    assert_one_error(text, "1:1", "missing field `interfaces`");
    let text = r#"[[virtual_server]]
name = "web"
address = "192.0.2.10:80"
"#;
    assert_one_error(text, "1:1", "missing field `director`");
    let text = format!("{BASE}\n[virtual_server.health_check]\ninterval = \"2s\"\n");
    assert_one_error(&text, "11:1", "missing field `kind`");
}

#[test]
fn syntax_error_is_positioned() {
    let text = r#"[director]
interfaces = ["eth0"
"#;
    assert_one_error(text, "2:21", "unclosed array");
}

#[test]
fn bad_addresses() {
    let with_rs = |addr: &str| BASE.replace("10.1.0.11:8080", addr);
    // `address = ` is 10 characters: the value starts at column 11.
    assert_one_error(
        &with_rs("10.1.0.11"),
        "9:11",
        "invalid address \"10.1.0.11\", expected \"IP:port\" or \"[IPv6]:port\"",
    );
    assert_one_error(&with_rs("10.1.0.300:80"), "9:11", "invalid address");
    assert_one_error(&with_rs("web1:80"), "9:11", "invalid address");
    assert_one_error(
        &with_rs("10.1.0.11:70000"),
        "9:11",
        "port 70000 in \"10.1.0.11:70000\" is out of range, expected 1..=65535",
    );
    assert_one_error(&with_rs("10.1.0.11:0"), "9:11", "port 0");
    assert_one_error(&with_rs("0.0.0.0:80"), "9:11", "unspecified");
    let text = BASE.replace("192.0.2.10:80", "192.0.2.10");
    assert_one_error(&text, "6:11", "invalid address \"192.0.2.10\"");
}

#[test]
fn bad_duration() {
    let text = BASE.replace(
        "address = \"192.0.2.10:80\"\n",
        "address = \"192.0.2.10:80\"\npersistence = \"5 parsecs\"\n",
    );
    assert_one_error(
        &text,
        "7:15",
        "invalid duration \"5 parsecs\" for persistence",
    );
    let text = BASE.replace(
        "address = \"192.0.2.10:80\"\n",
        "address = \"192.0.2.10:80\"\ndrain_timeout = \"soon\"\n",
    );
    assert_one_error(&text, "7:17", "invalid duration \"soon\" for drain_timeout");
    let text = BASE.replace(
        "address = \"192.0.2.10:80\"\n",
        "address = \"192.0.2.10:80\"\npersistence = \"0s\"\n",
    );
    assert_one_error(&text, "7:15", "persistence must be greater than zero");
}

#[test]
fn duplicate_virtual_server_names() {
    let text = r#"[director]
interfaces = ["eth0"]

[[virtual_server]]
name = "web"
address = "192.0.2.10:80"

[[virtual_server.real_server]]
address = "10.1.0.11:8080"

[[virtual_server]]
name = "web"
address = "192.0.2.11:80"

[[virtual_server.real_server]]
address = "10.1.0.11:8080"
"#;
    assert_one_error(
        text,
        "12:8",
        "duplicate virtual server name \"web\" (first defined at 5:8)",
    );
}

#[test]
fn duplicate_virtual_server_address_and_protocol() {
    let text = r#"[director]
interfaces = ["eth0"]

[[virtual_server]]
name = "web"
address = "192.0.2.10:80"

[[virtual_server]]
name = "web-udp"
address = "192.0.2.10:80"
protocol = "udp"

[[virtual_server]]
name = "web2"
address = "192.0.2.10:80"
"#;
    assert_one_error(
        text,
        "15:11",
        "duplicate virtual server 192.0.2.10:80 tcp (first defined at 6:11)",
    );
}

#[test]
fn duplicate_real_server() {
    let text = format!("{BASE}\n[[virtual_server.real_server]]\naddress = \"10.1.0.11:8080\"\n");
    assert_one_error(
        &text,
        "12:11",
        "duplicate real server 10.1.0.11:8080 (first defined at 9:11)",
    );
}

#[test]
fn dr_port_mismatch() {
    let text = BASE.replace(
        "address = \"192.0.2.10:80\"\n",
        "address = \"192.0.2.10:80\"\nforward = \"dr\"\n",
    );
    assert_one_error(
        &text,
        "10:11",
        "forward = \"dr\" requires the real server port (8080) to equal the virtual server port (80)",
    );
    let ok = text.replace("10.1.0.11:8080", "10.1.0.11:80");
    assert_eq!(warnings(&ok), Vec::<String>::new());
}

#[test]
fn address_family_mismatch() {
    let text = BASE.replace("10.1.0.11:8080", "[2001:db8::11]:8080");
    assert_one_error(
        &text,
        "9:11",
        "real server address [2001:db8::11]:8080 is IPv6 but the virtual server address 192.0.2.10:80 is IPv4",
    );
    let text = BASE6.replace("[2001:db8:1::11]:8080", "10.1.0.11:8080");
    assert_one_error(
        &text,
        "9:11",
        "real server address 10.1.0.11:8080 is IPv4 but the virtual server address [2001:db8::10]:80 is IPv6",
    );
}

/// BASE with `lines` inserted after the virtual server's address (line 6),
/// so the first inserted line is line 7.
fn with_vs_keys(base: &str, lines: &str) -> String {
    if lines.is_empty() {
        return base.to_owned();
    }
    let (head, tail) = base.split_at(base.find("\n\n[[virtual_server.real_server]]").unwrap());
    format!("{head}\n{}{tail}", lines.trim_end_matches('\n'))
}

/// BASE with IPv6 addresses.
const BASE6: &str = r#"[director]
interfaces = ["eth0"]

[[virtual_server]]
name = "web6"
address = "[2001:db8::10]:80"

[[virtual_server.real_server]]
address = "[2001:db8:1::11]:8080"
"#;

#[test]
fn ipv6_virtual_server_accepted() {
    assert_eq!(warnings(BASE6), Vec::<String>::new());
    let c = parse(BASE6, "t.toml").unwrap().config;
    let vs = &c.virtual_servers[0];
    assert_eq!(vs.address, sa("[2001:db8::10]:80"));
    assert_eq!(vs.real_servers[0].address, sa("[2001:db8:1::11]:8080"));
    // The same address and port on TCP and UDP, and an IPv4 neighbour.
    let text = format!(
        "{BASE6}\n[[virtual_server]]\nname = \"web6-udp\"\naddress = \"[2001:db8::10]:80\"\nprotocol = \"udp\"\n\n[[virtual_server.real_server]]\naddress = \"[2001:db8:1::11]:8080\"\n"
    );
    assert_eq!(warnings(&text), Vec::<String>::new());
    // Duplicates are still caught for IPv6 (written differently here).
    let text = format!(
        "{BASE6}\n[[virtual_server]]\nname = \"again\"\naddress = \"[2001:db8:0::10]:80\"\n\n[[virtual_server.real_server]]\naddress = \"[2001:db8:1::11]:8080\"\n"
    );
    assert_one_error(
        &text,
        "13:11",
        "duplicate virtual server [2001:db8::10]:80 tcp (first defined at 6:11)",
    );
}

#[test]
fn every_scheduler_parses() {
    for (name, expected) in [
        ("rr", Scheduler::Rr),
        ("wrr", Scheduler::Wrr),
        ("lc", Scheduler::Lc),
        ("wlc", Scheduler::Wlc),
        ("sh", Scheduler::Sh),
        ("mh", Scheduler::Mh),
    ] {
        let text = with_vs_keys(BASE, &format!("scheduler = \"{name}\""));
        let loaded = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(loaded.warnings, vec![], "{name}");
        assert_eq!(loaded.config.virtual_servers[0].scheduler, expected);
        assert_eq!(expected.as_str(), name);
    }
    let text = with_vs_keys(BASE, "scheduler = \"fifo\"");
    assert_one_error(&text, "7:13", "unknown variant `fifo`");
}

#[test]
fn hash_source_port_only_with_sh_and_mh() {
    for s in ["sh", "mh"] {
        let text = with_vs_keys(
            BASE,
            &format!("scheduler = \"{s}\"\nhash_source_port = true"),
        );
        let loaded = parse(&text, "t.toml").unwrap();
        assert_eq!(loaded.warnings, vec![]);
        assert!(loaded.config.virtual_servers[0].hash_source_port);
    }
    // Points at the key, not at the value.
    let text = with_vs_keys(BASE, "hash_source_port = true");
    assert_one_error(
        &text,
        "7:1",
        "hash_source_port applies only to the sh and mh schedulers, not \"wrr\"",
    );
    let text = with_vs_keys(BASE, "scheduler = \"wlc\"\n  hash_source_port   =   true");
    assert_one_error(
        &text,
        "8:3",
        "hash_source_port applies only to the sh and mh schedulers, not \"wlc\"",
    );
    let text = with_vs_keys(BASE, "\"hash_source_port\" = true");
    assert_one_error(&text, "7:1", "hash_source_port applies only to");
    // false is the default, so it is fine anywhere.
    let text = with_vs_keys(BASE, "hash_source_port = false");
    assert_eq!(warnings(&text), Vec::<String>::new());
}

#[test]
fn persistence_netmask6_rules() {
    let text = with_vs_keys(BASE6, "persistence_netmask6 = 64");
    assert_one_error(
        &text,
        "7:24",
        "persistence_netmask6 requires persistence to be set",
    );
    let text = with_vs_keys(BASE6, "persistence = \"5m\"\npersistence_netmask6 = 129");
    assert_one_error(
        &text,
        "8:24",
        "persistence_netmask6 must be in 0..=128, got 129",
    );
    for (mask, expected) in [("0", 0), ("128", 128)] {
        let text = with_vs_keys(
            BASE6,
            &format!("persistence = \"5m\"\npersistence_netmask6 = {mask}"),
        );
        let loaded = parse(&text, "t.toml").unwrap();
        assert_eq!(loaded.warnings, vec![]);
        let vs = &loaded.config.virtual_servers[0];
        assert_eq!(vs.persistence_netmask6, Some(expected));
        assert_eq!(vs.persistence_prefix(), expected);
    }
}

#[test]
fn persistence_netmask_family_must_match() {
    let text = with_vs_keys(BASE6, "persistence = \"5m\"\npersistence_netmask = 24");
    assert_one_error(
        &text,
        "8:23",
        "persistence_netmask applies to IPv4 virtual servers; use persistence_netmask6",
    );
    let text = with_vs_keys(BASE, "persistence = \"5m\"\npersistence_netmask6 = 64");
    assert_one_error(
        &text,
        "8:24",
        "persistence_netmask6 applies to IPv6 virtual servers; use persistence_netmask",
    );
    // Every rule about the key is reported, all at the value.
    let text = with_vs_keys(BASE, "persistence_netmask6 = 200");
    assert_eq!(
        errors(&text),
        vec![
            "7:24: persistence_netmask6 requires persistence to be set",
            "7:24: persistence_netmask6 applies to IPv6 virtual servers; use persistence_netmask",
            "7:24: persistence_netmask6 must be in 0..=128, got 200",
        ]
    );
}

#[test]
fn persistence_and_real_server_limits_are_applied_without_warnings() {
    let text = with_vs_keys(BASE, "persistence = \"5m\"\npersistence_netmask = 24");
    assert_eq!(warnings(&text), Vec::<String>::new());
    let text = format!(
        "{BASE}max_connections = 100\nbackup = false\n\n[[virtual_server.real_server]]\naddress = \"10.1.0.12:8080\"\nbackup = true\n"
    );
    let loaded = parse(&text, "t.toml").unwrap();
    assert_eq!(loaded.warnings, vec![]);
    let rs = &loaded.config.virtual_servers[0].real_servers;
    assert_eq!((rs[0].max_connections, rs[0].backup), (100, false));
    assert_eq!((rs[1].max_connections, rs[1].backup), (0, true));
}

#[test]
fn timeouts_parse() {
    let text = with_vs_keys(BASE, "tcp_timeout = \"2h\"\ntcp_fin_timeout = \"30s\"");
    let loaded = parse(&text, "t.toml").unwrap();
    assert_eq!(loaded.warnings, vec![]);
    assert_eq!(
        loaded.config.virtual_servers[0].timeouts,
        Timeouts {
            tcp: Duration::from_secs(7200),
            tcp_fin: Duration::from_secs(30),
            udp: DEFAULT_UDP_TIMEOUT,
        }
    );
    let text = with_vs_keys(BASE, "protocol = \"udp\"\nudp_timeout = \"24h\"");
    let loaded = parse(&text, "t.toml").unwrap();
    assert_eq!(loaded.warnings, vec![]);
    assert_eq!(
        loaded.config.virtual_servers[0].timeouts,
        Timeouts {
            udp: Duration::from_secs(86_400),
            ..Timeouts::default()
        }
    );
}

#[test]
fn timeout_rules() {
    let text = with_vs_keys(BASE, "tcp_timeout = \"0s\"");
    assert_one_error(&text, "7:15", "tcp_timeout must be greater than zero");
    let text = with_vs_keys(BASE, "tcp_fin_timeout = \"24h 1s\"");
    assert_one_error(
        &text,
        "7:19",
        "tcp_fin_timeout must be at most 24h, got 1day 1s",
    );
    let text = with_vs_keys(BASE, "protocol = \"udp\"\nudp_timeout = \"forever\"");
    assert_one_error(
        &text,
        "8:15",
        "invalid duration \"forever\" for udp_timeout",
    );
}

#[test]
fn timeouts_for_the_other_protocol_warn() {
    let text = with_vs_keys(BASE, "udp_timeout = \"10s\"");
    assert_eq!(
        warnings(&text),
        vec!["7:15: warning: udp_timeout has no effect on a tcp virtual server"]
    );
    let text = with_vs_keys(
        BASE,
        "protocol = \"udp\"\ntcp_timeout = \"1h\"\ntcp_fin_timeout = \"1m\"",
    );
    assert_eq!(
        warnings(&text),
        vec![
            "8:15: warning: tcp_timeout has no effect on a udp virtual server",
            "9:19: warning: tcp_fin_timeout has no effect on a udp virtual server",
        ]
    );
    // The value is still checked.
    let text = with_vs_keys(BASE, "udp_timeout = \"0s\"");
    let err = parse(&text, "t.toml").unwrap_err();
    assert_eq!(
        err.diagnostics
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>(),
        vec![
            "7:15: warning: udp_timeout has no effect on a tcp virtual server",
            "7:15: udp_timeout must be greater than zero",
        ]
    );
}

#[test]
fn mh_table_size_rules() {
    let text = with_vs_keys(BASE, "scheduler = \"mh\"\nmh_table_size = 1021");
    let loaded = parse(&text, "t.toml").unwrap();
    assert_eq!(loaded.warnings, vec![]);
    assert_eq!(loaded.config.virtual_servers[0].mh_table_size, 1021);
    let text = with_vs_keys(BASE, "scheduler = \"mh\"\nmh_table_size = 1000003");
    assert_eq!(
        parse(&text, "t.toml").unwrap().config.virtual_servers[0].mh_table_size,
        1_000_003
    );
    // `mh_table_size = ` is 16 characters.
    for bad in [
        "1022",
        "1019",
        "1000033",
        "65536",
        "0",
        "-65537",
        "4294967311",
    ] {
        let text = with_vs_keys(BASE, &format!("scheduler = \"mh\"\nmh_table_size = {bad}"));
        assert_one_error(
            &text,
            "8:17",
            &format!("mh_table_size must be a prime between 1021 and 1000003, got {bad}"),
        );
    }
    let text = with_vs_keys(BASE, "scheduler = \"sh\"\nmh_table_size = 65537");
    assert_one_error(
        &text,
        "8:17",
        "mh_table_size applies only to the mh scheduler, not \"sh\"",
    );
    let text = with_vs_keys(BASE, "mh_table_size = 65537");
    assert_one_error(
        &text,
        "7:17",
        "mh_table_size applies only to the mh scheduler, not \"wrr\"",
    );
}

/// A virtual server (header on line 4) with `primaries` real servers of
/// weight `weight` and `backups` backups, then `extra` keys on line 7.
fn many_real_servers(primaries: usize, weight: u32, backups: usize, extra: &str) -> String {
    let mut text = format!(
        "[director]\ninterfaces = [\"eth0\"]\n\n[[virtual_server]]\nname = \"big\"\naddress = \"192.0.2.10:80\"\n{extra}\n"
    );
    for i in 0..primaries {
        text.push_str(&format!(
            "\n[[virtual_server.real_server]]\naddress = \"10.1.{}.{}:8080\"\nweight = {weight}\n",
            i / 250,
            i % 250 + 1
        ));
    }
    for i in 0..backups {
        text.push_str(&format!(
            "\n[[virtual_server.real_server]]\naddress = \"10.2.{}.{}:8080\"\nbackup = true\n",
            i / 250,
            i % 250 + 1
        ));
    }
    text
}

#[test]
fn mh_table_size_must_be_4_times_the_real_servers() {
    // 1021 slots hold 255 real servers (1020) but not 256 (1024).
    let text = many_real_servers(255, 1, 0, "scheduler = \"mh\"\nmh_table_size = 1021");
    assert_eq!(warnings(&text), Vec::<String>::new());
    let text = many_real_servers(255, 1, 1, "scheduler = \"mh\"\nmh_table_size = 1021");
    assert_one_error(
        &text,
        "8:17",
        "mh_table_size 1021 is too small for 256 real servers: it must be at least 4 times the number of real servers (1024)",
    );
    let text = many_real_servers(256, 1, 0, "scheduler = \"mh\"\nmh_table_size = 1031");
    assert_eq!(warnings(&text), Vec::<String>::new());
    // The default size holds the most real servers a virtual server may have.
    let text = many_real_servers(256, 1, 256, "scheduler = \"mh\"");
    assert_eq!(warnings(&text), Vec::<String>::new());
}

#[test]
fn at_most_256_primaries_and_256_backups() {
    assert_eq!(MAX_REAL_SERVERS, 256);
    let text = many_real_servers(256, 1, 256, "");
    assert_eq!(warnings(&text), Vec::<String>::new());
    // Weight-0 primaries take no new connections and are not scanned.
    let text = format!(
        "{}\n[[virtual_server.real_server]]\naddress = \"10.3.0.1:8080\"\nweight = 0\n",
        many_real_servers(256, 1, 0, "")
    );
    assert_eq!(warnings(&text), Vec::<String>::new());
    let text = many_real_servers(257, 1, 0, "");
    assert_one_error(
        &text,
        "4:1",
        "too many real servers: at most 256 primaries and 256 backups per virtual server (\"big\" has 257 primaries with weight > 0 and 0 backups)",
    );
    let text = many_real_servers(1, 1, 257, "");
    assert_one_error(
        &text,
        "4:1",
        "too many real servers: at most 256 primaries and 256 backups per virtual server (\"big\" has 1 primaries with weight > 0 and 257 backups)",
    );
}

#[test]
fn bad_interface_names() {
    // `interfaces = [` is 14 characters; "eth0" is at 15..=20, then ", ".
    let text = BASE.replace(
        r#"interfaces = ["eth0"]"#,
        r#"interfaces = ["eth0", "a/b", "this-is-too-long", "", "eth0"]"#,
    );
    assert_eq!(
        errors(&text),
        vec![
            "2:23: invalid interface name \"a/b\": contains '/'",
            "2:30: invalid interface name \"this-is-too-long\": longer than 15 bytes (16 bytes)",
            "2:50: invalid interface name \"\": must not be empty",
            "2:54: duplicate interface \"eth0\" (first listed at 2:15)",
        ]
    );
    let text = BASE.replace(r#"interfaces = ["eth0"]"#, r#"interfaces = []"#);
    assert_one_error(&text, "2:14", "interfaces must not be empty");
    let text = BASE.replace(r#"interfaces = ["eth0"]"#, r#"interfaces = ["eth 0"]"#);
    assert_one_error(&text, "2:15", "contains ' '");
    // 15 bytes is the longest valid name.
    let text = BASE.replace("eth0", "fifteen-chars-x");
    assert_eq!(warnings(&text), Vec::<String>::new());
}

#[test]
fn columns_count_characters_not_bytes() {
    // "é" is two bytes; the second name starts at character 20, byte 21.
    let text = BASE.replace(r#"interfaces = ["eth0"]"#, r#"interfaces = ["é", "a b"]"#);
    assert_one_error(&text, "2:20", "invalid interface name \"a b\"");
    assert_eq!(position("aé\nxé€y", 0), (1, 1));
    assert_eq!(position("aé\nxé€y", 3), (1, 3));
    assert_eq!(position("aé\nxé€y", 4), (2, 1));
    assert_eq!(position("aé\nxé€y", 10), (2, 4));
    // Past the end or inside a character: clamped.
    assert_eq!(position("aé\nxé€y", 99), (2, 5));
    assert_eq!(position("aé\nxé€y", 2), (1, 2));
}

#[test]
fn bad_virtual_server_names() {
    let text = BASE.replace(r#"name = "web""#, r#"name = "web site""#);
    assert_one_error(
        &text,
        "5:8",
        "invalid virtual server name \"web site\": contains ' '",
    );
    let text = BASE.replace(r#"name = "web""#, r#"name = """#);
    assert_one_error(&text, "5:8", "invalid virtual server name \"\"");
    let long = "a".repeat(65);
    let text = BASE.replace(r#"name = "web""#, &format!("name = \"{long}\""));
    assert_one_error(&text, "5:8", "expected 1..=64 characters");
    let ok = BASE.replace(r#"name = "web""#, r#"name = "Web_1.prod-a""#);
    assert_eq!(warnings(&ok), Vec::<String>::new());
}

#[test]
fn conntrack_max_range() {
    let text = BASE.replace(
        "interfaces = [\"eth0\"]\n",
        "interfaces = [\"eth0\"]\nconntrack_max = 0\n",
    );
    assert_one_error(
        &text,
        "3:17",
        "conntrack_max must be in 1..=134217728, got 0",
    );
    let text = BASE.replace(
        "interfaces = [\"eth0\"]\n",
        "interfaces = [\"eth0\"]\nconntrack_max = 134217729\n",
    );
    assert_one_error(&text, "3:17", "got 134217729");
    let text = BASE.replace(
        "interfaces = [\"eth0\"]\n",
        "interfaces = [\"eth0\"]\nconntrack_max = 134217728\n",
    );
    assert_eq!(
        parse(&text, "t").unwrap().config.director.conntrack_max,
        1 << 27
    );
}

#[test]
fn weight_and_max_connections_range() {
    let text = BASE.replace(
        "address = \"10.1.0.11:8080\"\n",
        "address = \"10.1.0.11:8080\"\nweight = 65536\nmax_connections = -1\n",
    );
    assert_eq!(
        errors(&text),
        vec![
            "10:10: weight must be in 0..=65535, got 65536",
            "11:19: max_connections must be in 0..=4294967295, got -1",
        ]
    );
    let text = BASE.replace(
        "address = \"10.1.0.11:8080\"\n",
        "address = \"10.1.0.11:8080\"\nweight = 65535\n",
    );
    let loaded = parse(&text, "t").unwrap();
    assert_eq!(
        loaded.config.virtual_servers[0].real_servers[0].weight,
        65535
    );
}

#[test]
fn persistence_netmask_rules() {
    let text = BASE.replace(
        "address = \"192.0.2.10:80\"\n",
        "address = \"192.0.2.10:80\"\npersistence_netmask = 24\n",
    );
    assert_one_error(
        &text,
        "7:23",
        "persistence_netmask requires persistence to be set",
    );
    let text = BASE.replace(
        "address = \"192.0.2.10:80\"\n",
        "address = \"192.0.2.10:80\"\npersistence = \"5m\"\npersistence_netmask = 33\n",
    );
    assert_one_error(
        &text,
        "8:23",
        "persistence_netmask must be in 0..=32, got 33",
    );
}

#[test]
fn health_check_rules() {
    let text = format!(
        r#"{BASE}
[virtual_server.health_check]
kind = "http"
path = "healthz"
expect_status = "299-200"
interval = "1s"
timeout = "2s"
rise = 0
fall = 0
port = 0
"#
    );
    // BASE is 9 lines, then a blank line 10 and the header on line 11.
    assert_eq!(
        errors(&text),
        vec![
            "13:8: path \"healthz\" must start with '/'",
            "14:17: invalid expect_status \"299-200\": the lower bound (299) exceeds the upper bound (200)",
            "16:11: timeout (2s) must not exceed interval (1s)",
            "17:8: rise must be in 1..=4294967295, got 0",
            "18:8: fall must be in 1..=4294967295, got 0",
            "19:8: port must be in 1..=65535, got 0",
        ]
    );
    for bad in ["20", "2000", "600", "099", "200-", "abc", "200-600"] {
        let text = format!(
            "{BASE}\n[virtual_server.health_check]\nkind = \"http\"\nexpect_status = \"{bad}\"\n"
        );
        assert_one_error(
            &text,
            "13:17",
            "expected \"NNN\" or \"NNN-NNN\" with codes in 100..=599",
        );
    }
    let text = format!(
        "{BASE}\n[virtual_server.health_check]\nkind = \"tcp\"\ninterval = \"0s\"\ntimeout = \"0s\"\n"
    );
    assert_eq!(
        errors(&text),
        vec![
            "13:12: interval must be greater than zero",
            "14:11: timeout must be greater than zero",
        ]
    );
    // The default timeout (1s) against a shorter interval: points at interval.
    let text =
        format!("{BASE}\n[virtual_server.health_check]\nkind = \"tcp\"\ninterval = \"500ms\"\n");
    assert_one_error(
        &text,
        "13:12",
        "timeout (1s) must not exceed interval (500ms)",
    );
    let text = format!("{BASE}\n[virtual_server.health_check]\nkind = \"tcp\"\npath = \"/\"\n");
    assert_one_error(
        &text,
        "13:8",
        "path only applies to kind = \"http\", not \"tcp\"",
    );
    let text = format!(
        "{BASE}\n[virtual_server.health_check]\nkind = \"http\"\nexpect_status = \"200\"\n"
    );
    let loaded = parse(&text, "t").unwrap();
    let hc = loaded.config.virtual_servers[0]
        .health_check
        .clone()
        .unwrap();
    assert_eq!(hc.expect_status, Some((200, 200)));
}

/// BASE, a blank line 10, the check's header on line 11 and `lines` from
/// line 12 on.
fn with_check(lines: &str) -> String {
    format!("{BASE}\n[virtual_server.health_check]\n{lines}")
}

fn vs_check(text: &str) -> HealthCheck {
    let loaded = parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.warnings, vec![]);
    loaded.config.virtual_servers[0]
        .health_check
        .clone()
        .unwrap()
}

#[test]
fn health_check_kind_defaults() {
    let http = vs_check(&with_check("kind = \"http\"\n"));
    assert_eq!(http.path.as_deref(), Some("/"));
    assert_eq!(http.expect_status, Some((200, 399)));
    assert_eq!(
        (&http.expect_body, &http.host, &http.payload, &http.command),
        (&None, &None, &None, &None)
    );
    let udp = vs_check(&with_check("kind = \"udp\"\n"));
    assert_eq!(udp.payload.as_deref(), Some("ping"));
    assert_eq!(
        (&udp.path, udp.expect_status, &udp.expect),
        (&None, None, &None)
    );
    let exec = vs_check(&with_check("kind = \"exec\"\ncommand = [\"/bin/true\"]\n"));
    assert_eq!(exec.command, Some(vec!["/bin/true".to_owned()]));
    assert_eq!((&exec.path, &exec.payload), (&None, &None));
    assert_eq!(exec.on_failure, OnFailure::Keep);
}

#[test]
fn health_check_kind_keys_parse() {
    let http = vs_check(&with_check(
        r#"kind = "http"
path = "/status?full=1"
expect_status = "204"
expect_body = "all good"
host = "www.example.com"
on_failure = "reset"
"#,
    ));
    assert_eq!(
        http,
        HealthCheck {
            kind: CheckKind::Http,
            path: Some("/status?full=1".into()),
            expect_status: Some((204, 204)),
            interval: DEFAULT_CHECK_INTERVAL,
            timeout: DEFAULT_CHECK_TIMEOUT,
            rise: DEFAULT_CHECK_RISE,
            fall: DEFAULT_CHECK_FALL,
            port: None,
            expect_body: Some("all good".into()),
            host: Some("www.example.com".into()),
            payload: None,
            expect: None,
            command: None,
            on_failure: OnFailure::Reset,
        }
    );
    let udp = vs_check(&with_check(
        "kind = \"udp\"\npayload = \"\"\nexpect = \"pong\"\nport = 5353\n",
    ));
    assert_eq!(
        (udp.payload.as_deref(), udp.expect.as_deref(), udp.port),
        (Some(""), Some("pong"), Some(5353))
    );
    let exec = vs_check(&with_check(
        "kind = \"exec\"\ncommand = [\"/usr/local/bin/check\", \"--fast\", \"\"]\non_failure = \"keep\"\n",
    ));
    assert_eq!(
        exec.command,
        Some(vec![
            "/usr/local/bin/check".to_owned(),
            "--fast".to_owned(),
            String::new()
        ])
    );
    assert_eq!(exec.on_failure, OnFailure::Keep);
    assert_eq!(OnFailure::default(), OnFailure::Keep);
    assert_eq!(OnFailure::Reset.to_string(), "reset");
}

#[test]
fn kind_specific_keys_only_with_their_kind() {
    let text = with_check(
        r#"kind = "tcp"
path = "/"
expect_status = "200"
expect_body = "ok"
host = "example.com"
payload = "ping"
expect = "pong"
command = ["/bin/true"]
"#,
    );
    assert_eq!(
        errors(&text),
        vec![
            "13:8: path only applies to kind = \"http\", not \"tcp\"",
            "14:17: expect_status only applies to kind = \"http\", not \"tcp\"",
            "15:15: expect_body only applies to kind = \"http\", not \"tcp\"",
            "16:8: host only applies to kind = \"http\", not \"tcp\"",
            "17:11: payload only applies to kind = \"udp\", not \"tcp\"",
            "18:10: expect only applies to kind = \"udp\", not \"tcp\"",
            "19:11: command only applies to kind = \"exec\", not \"tcp\"",
        ]
    );
    assert_one_error(
        &with_check("kind = \"http\"\npayload = \"x\"\n"),
        "13:11",
        "payload only applies to kind = \"udp\", not \"http\"",
    );
    assert_one_error(
        &with_check("kind = \"udp\"\nexpect_body = \"x\"\n"),
        "13:15",
        "expect_body only applies to kind = \"http\", not \"udp\"",
    );
    assert_one_error(
        &with_check("kind = \"none\"\ncommand = [\"/bin/true\"]\n"),
        "13:11",
        "command only applies to kind = \"exec\", not \"none\"",
    );
}

#[test]
fn exec_requires_a_command() {
    assert_one_error(
        &with_check("kind = \"exec\"\n"),
        "11:1",
        "kind = \"exec\" requires command, e.g. command = [\"/usr/local/bin/check\", \"--fast\"]",
    );
    assert_one_error(
        &with_check("kind = \"exec\"\ncommand = []\n"),
        "13:11",
        "command must not be empty",
    );
    assert_one_error(
        &with_check("kind = \"exec\"\ncommand = [\"\", \"--fast\"]\n"),
        "13:12",
        "the program of command must not be empty",
    );
    assert_one_error(
        &with_check("kind = \"exec\"\ncommand = [\"/bin/check\", \"a\\u0000b\"]\n"),
        "13:26",
        "command arguments must not contain NUL",
    );
    assert_one_error(
        &with_check("kind = \"exec\"\ncommand = \"/bin/check --fast\"\n"),
        "13:11",
        "invalid type: string \"/bin/check --fast\", expected a sequence",
    );
}

#[test]
fn http_and_udp_values_are_checked() {
    let text = with_check(
        r#"kind = "http"
path = "/a b"
expect_body = ""
host = "a b"
"#,
    );
    assert_eq!(
        errors(&text),
        vec![
            "13:8: path \"/a b\" contains ' '; percent-encode it",
            "14:15: expect_body must not be empty",
            "15:8: host \"a b\" contains ' '",
        ]
    );
    assert_one_error(
        &with_check("kind = \"http\"\nhost = \"\"\n"),
        "13:8",
        "host must not be empty",
    );
    assert_one_error(
        &with_check("kind = \"http\"\npath = \"/\\r\\nX: y\"\n"),
        "13:8",
        "contains '\\r'",
    );
    assert_one_error(
        &with_check("kind = \"udp\"\nexpect = \"\"\n"),
        "13:10",
        "expect must not be empty",
    );
    let long = "x".repeat(MAX_UDP_PAYLOAD + 1);
    assert_one_error(
        &with_check(&format!("kind = \"udp\"\npayload = \"{long}\"\n")),
        "13:11",
        "payload must be at most 65507 bytes, got 65508",
    );
    assert_one_error(
        &with_check("kind = \"tcp\"\non_failure = \"drop\"\n"),
        "13:14",
        "unknown variant `drop`, expected `keep` or `reset`",
    );
    assert_one_error(
        &with_check("kind = \"tcp\"\nexpect_bodies = \"x\"\n"),
        "13:1",
        "unknown field `expect_bodies`",
    );
}

#[test]
fn kind_none_disables_checking_and_warns_about_ignored_keys() {
    let text =
        with_check("kind = \"none\"\ninterval = \"5s\"\n  fall = 2\non_failure = \"reset\"\n");
    assert_eq!(
        warnings(&text),
        vec![
            "13:1: warning: interval has no effect with kind = \"none\"",
            "14:3: warning: fall has no effect with kind = \"none\"",
            "15:1: warning: on_failure has no effect with kind = \"none\"",
        ]
    );
    let loaded = parse(&with_check("kind = \"none\"\n"), "t.toml").unwrap();
    assert_eq!(loaded.warnings, vec![]);
    let vs = &loaded.config.virtual_servers[0];
    assert_eq!(vs.health_check.as_ref().unwrap().kind, CheckKind::None);
    assert_eq!(vs.check_for(&vs.real_servers[0]), None);
}

#[test]
fn real_server_check_replaces_the_virtual_server_check() {
    let text = r#"[director]
interfaces = ["eth0"]

[[virtual_server]]
name = "web"
address = "192.0.2.10:80"

[virtual_server.health_check]
kind = "http"
path = "/healthz"
interval = "5s"

[[virtual_server.real_server]]
address = "10.1.0.11:8080"

[virtual_server.real_server.health_check]
kind = "tcp"
port = 9000

[[virtual_server.real_server]]
address = "10.1.0.12:8080"

[[virtual_server.real_server]]
address = "10.1.0.13:8080"
health_check = { kind = "none" }

[[virtual_server]]
name = "api"
address = "192.0.2.11:80"

[[virtual_server.real_server]]
address = "10.1.0.21:8080"

[[virtual_server.real_server]]
address = "10.1.0.22:8080"
health_check = { kind = "exec", command = ["/bin/check"], on_failure = "reset" }
"#;
    let loaded = parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.warnings, vec![]);
    let web = &loaded.config.virtual_servers[0];
    let vs_check = web.health_check.as_ref().unwrap();
    let own = web.real_servers[0].health_check.as_ref().unwrap();
    // Replaced, not merged: neither the path nor the interval carry over.
    assert_eq!(
        (own.kind, own.port, own.path.as_deref(), own.interval),
        (CheckKind::Tcp, Some(9000), None, DEFAULT_CHECK_INTERVAL)
    );
    assert_eq!(web.check_for(&web.real_servers[0]), Some(own));
    assert_eq!(web.check_for(&web.real_servers[1]), Some(vs_check));
    assert_eq!(web.check_for(&web.real_servers[2]), None);
    let api = &loaded.config.virtual_servers[1];
    assert_eq!(api.health_check, None);
    assert_eq!(api.check_for(&api.real_servers[0]), None);
    let exec = api.check_for(&api.real_servers[1]).unwrap();
    assert_eq!(
        (exec.kind, exec.on_failure),
        (CheckKind::Exec, OnFailure::Reset)
    );
}

#[test]
fn real_server_check_errors_are_positioned() {
    // The override table belongs to the last real server of BASE.
    let text = format!(
        "{BASE}\n[virtual_server.real_server.health_check]\nkind = \"exec\"\ntimeout = \"3s\"\n"
    );
    assert_eq!(
        errors(&text),
        vec![
            "11:1: kind = \"exec\" requires command, e.g. command = [\"/usr/local/bin/check\", \"--fast\"]",
            "13:11: timeout (3s) must not exceed interval (2s)",
        ]
    );
    let text = format!("{BASE}health_check = {{ kind = \"tcp\", path = \"/\" }}\n");
    assert_one_error(
        &text,
        "10:39",
        "path only applies to kind = \"http\", not \"tcp\"",
    );
    let text = format!("{BASE}\n[virtual_server.real_server.health_check]\nport = 80\n");
    assert_one_error(&text, "11:1", "missing field `kind`");
}

#[test]
fn multiple_errors_reported_together_in_file_order() {
    let text = r#"[director]
interfaces = ["eth0", "eth/1"]
conntrack_max = 0

[[virtual_server]]
name = "b"
address = "192.0.2.10:80"
hash_source_port = true
forward = "dr"

[[virtual_server.real_server]]
address = "10.1.0.11:8080"
weight = 70000

[[virtual_server.real_server]]
address = "10.1.0.11:8080"

[[virtual_server]]
name = "b"
address = "[2001:db8::1]:80"

[[virtual_server.real_server]]
address = "10.1.0.12:80"
"#;
    let err = parse(text, "multi.toml").unwrap_err();
    assert_eq!(
        err.to_string(),
        [
            "multi.toml:2:23: invalid interface name \"eth/1\": contains '/'",
            "multi.toml:3:17: conntrack_max must be in 1..=134217728, got 0",
            "multi.toml:8:1: hash_source_port applies only to the sh and mh schedulers, not \"wrr\"",
            "multi.toml:12:11: forward = \"dr\" requires the real server port (8080) to equal the virtual server port (80)",
            "multi.toml:13:10: weight must be in 0..=65535, got 70000",
            "multi.toml:16:11: duplicate real server 10.1.0.11:8080 (first defined at 12:11)",
            "multi.toml:16:11: forward = \"dr\" requires the real server port (8080) to equal the virtual server port (80)",
            "multi.toml:19:8: duplicate virtual server name \"b\" (first defined at 6:8)",
            "multi.toml:23:11: real server address 10.1.0.12:80 is IPv4 but the virtual server address [2001:db8::1]:80 is IPv6",
        ]
        .join("\n")
    );
    assert_eq!(err.file, "multi.toml");
    assert_eq!(err.errors().count(), 9);
}

#[test]
fn display_format_is_file_line_col_message() {
    let text = r#"[director]
interfaces = ["eth0"]
conntrack_max=0

[[virtual_server]]
name = "web"
address = "192.0.2.10:80"
protocol = "udp"
tcp_timeout = "30s"

[[virtual_server.real_server]]
address = "10.1.0.11:8080"
"#;
    let err = parse(text, "file.toml").unwrap_err();
    assert_eq!(
        err.diagnostics,
        vec![
            Diagnostic {
                line: 3,
                col: 15,
                message: "conntrack_max must be in 1..=134217728, got 0".into(),
                severity: Severity::Error,
            },
            Diagnostic {
                line: 9,
                col: 15,
                message: "tcp_timeout has no effect on a udp virtual server".into(),
                severity: Severity::Warning,
            },
        ]
    );
    assert_eq!(
        err.to_string(),
        "file.toml:3:15: conntrack_max must be in 1..=134217728, got 0\n\
         file.toml:9:15: warning: tcp_timeout has no effect on a udp virtual server"
    );
    assert_eq!(
        err.lines(),
        vec![
            "file.toml:3:15: conntrack_max must be in 1..=134217728, got 0",
            "file.toml:9:15: warning: tcp_timeout has no effect on a udp virtual server",
        ]
    );
}

#[test]
fn no_real_server_warnings() {
    let text = r#"[director]
interfaces = ["eth0"]

[[virtual_server]]
name = "empty"
address = "192.0.2.10:80"

  [[virtual_server]]
  name = "zero"
  address = "192.0.2.11:80"

  [[virtual_server.real_server]]
  address = "10.1.0.11:8080"
  weight = 0
"#;
    assert_eq!(
        warnings(text),
        vec![
            "4:1: warning: no real server takes new connections: virtual server \"empty\" has no real servers",
            "8:3: warning: no real server takes new connections: every real server of \"zero\" has weight 0",
        ]
    );
    // A backup with a weight takes new connections when no primary can.
    let with_backup = format!(
        "{text}\n  [[virtual_server.real_server]]\n  address = \"10.1.0.12:8080\"\n  backup = true\n"
    );
    assert_eq!(
        warnings(&with_backup),
        vec![
            "4:1: warning: no real server takes new connections: virtual server \"empty\" has no real servers",
        ]
    );
    let zero_backup = format!("{with_backup}  weight = 0\n");
    assert_eq!(
        warnings(&zero_backup),
        vec![
            "4:1: warning: no real server takes new connections: virtual server \"empty\" has no real servers",
            "8:3: warning: no real server takes new connections: every real server of \"zero\" has weight 0",
        ]
    );
}

#[test]
fn zero_max_connections_and_backup_false_do_not_warn() {
    let text = BASE.replace(
        "address = \"10.1.0.11:8080\"\n",
        "address = \"10.1.0.11:8080\"\nmax_connections = 0\nbackup = false\n",
    );
    assert_eq!(warnings(&text), Vec::<String>::new());
}

#[test]
fn load_reports_read_errors_at_1_1() {
    let path = std::path::Path::new("/nonexistent/director/config.toml");
    let err = load(path).unwrap_err();
    assert_eq!(err.file, "/nonexistent/director/config.toml");
    assert_eq!(err.diagnostics.len(), 1);
    let d = &err.diagnostics[0];
    assert_eq!((d.line, d.col, d.severity), (1, 1, Severity::Error));
    assert!(
        err.to_string()
            .starts_with("/nonexistent/director/config.toml:1:1: cannot read: "),
        "{err}"
    );
}

const LAB_NAT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab-nat.toml");
const LAB_DR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab-dr.toml");
const LAB_NAT6: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab-nat6.toml");
const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/director.toml");

#[test]
fn example_files_parse_without_errors_or_warnings() {
    for path in [LAB_NAT, LAB_DR, LAB_NAT6, REFERENCE] {
        let loaded = load(std::path::Path::new(path)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.warnings, vec![], "{path}");
        assert_eq!(loaded.config.path, PathBuf::from(path));
    }
}

#[test]
fn lab_examples_have_the_expected_values() {
    let rs = |addr: &str, weight| RealServer {
        address: sa(addr),
        weight,
        max_connections: 0,
        backup: false,
        health_check: None,
    };
    let nat = load(std::path::Path::new(LAB_NAT)).unwrap().config;
    assert_eq!(
        nat.director,
        DirectorSection {
            interfaces: vec!["eth0".into(), "eth1".into()],
            xdp_mode: XdpMode::Native,
            conntrack_max: 65536,
        }
    );
    assert_eq!(nat.virtual_servers.len(), 1);
    let vs = &nat.virtual_servers[0];
    assert_eq!(
        (
            vs.name.as_str(),
            vs.address,
            vs.protocol,
            vs.scheduler,
            vs.forward
        ),
        (
            "web",
            sa("192.0.2.10:80"),
            Protocol::Tcp,
            Scheduler::Wrr,
            Forward::Nat
        )
    );
    assert_eq!(
        vs.real_servers,
        vec![
            rs("10.1.0.11:8080", 3),
            rs("10.1.0.12:8080", 2),
            rs("10.1.0.13:8080", 1),
        ]
    );

    let dr = load(std::path::Path::new(LAB_DR)).unwrap().config;
    assert_eq!(dr.director.interfaces, vec!["eth0".to_string()]);
    assert_eq!(dr.virtual_servers.len(), 1);
    let vs = &dr.virtual_servers[0];
    assert_eq!(
        (
            vs.name.as_str(),
            vs.address,
            vs.protocol,
            vs.scheduler,
            vs.forward
        ),
        (
            "web",
            sa("192.0.2.10:80"),
            Protocol::Tcp,
            Scheduler::Wrr,
            Forward::Dr
        )
    );
    assert_eq!(
        vs.real_servers,
        vec![
            rs("10.2.0.11:80", 3),
            rs("10.2.0.12:80", 2),
            rs("10.2.0.13:80", 1),
        ]
    );

    let nat6 = load(std::path::Path::new(LAB_NAT6)).unwrap().config;
    assert_eq!(
        nat6.director.interfaces,
        vec!["eth0".to_string(), "eth1".to_string()]
    );
    assert_eq!(nat6.virtual_servers.len(), 1);
    let vs = &nat6.virtual_servers[0];
    assert_eq!(
        (
            vs.name.as_str(),
            vs.address,
            vs.protocol,
            vs.scheduler,
            vs.forward
        ),
        (
            "web6",
            sa("[2001:db8:10::10]:80"),
            Protocol::Tcp,
            Scheduler::Wrr,
            Forward::Nat
        )
    );
    assert_eq!(
        vs.real_servers,
        vec![
            rs("[2001:db8:1::11]:8080", 1),
            rs("[2001:db8:1::12]:8080", 1),
            rs("[2001:db8:1::13]:8080", 1),
        ]
    );
}

/// Every key of `[[virtual_server]]` and its real servers appears in the
/// reference, set or commented out, so that it documents them all.
#[test]
fn reference_mentions_every_key() {
    let text = std::fs::read_to_string(REFERENCE).unwrap();
    for key in [
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
