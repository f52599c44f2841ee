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
forward = "dr"

[[virtual_server.real_server]]
address = "10.2.0.1:53"
weight = 0
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
                }),
                real_servers: vec![
                    RealServer {
                        address: sa("10.1.0.11:8080"),
                        weight: 3,
                        max_connections: 100,
                        backup: false,
                    },
                    RealServer {
                        address: sa("10.1.0.12:8080"),
                        weight: 1,
                        max_connections: 0,
                        backup: true,
                    },
                ],
            },
            VirtualServer {
                name: "dns".into(),
                address: sa("192.0.2.53:53"),
                protocol: Protocol::Udp,
                scheduler: Scheduler::Wrr,
                forward: Forward::Dr,
                persistence: None,
                persistence_netmask: None,
                drain_timeout: None,
                health_check: None,
                real_servers: vec![RealServer {
                    address: sa("10.2.0.1:53"),
                    weight: 0,
                    max_connections: 0,
                    backup: false,
                }],
            },
        ],
    };
    assert_eq!(loaded.config, expected);
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
    assert_eq!(
        loaded.format_warnings(),
        vec![
            "full.toml:12:15: warning: persistence is parsed but not applied yet by this version",
            "full.toml:14:17: warning: drain_timeout is parsed but not applied yet by this version",
            "full.toml:16:1: warning: health_check is parsed but not applied yet by this version",
            "full.toml:29:19: warning: max_connections is parsed but not applied yet by this version",
            "full.toml:34:10: warning: backup is parsed but not applied yet by this version",
            "full.toml:36:1: warning: no real server takes new connections: every real server of \"dns\" has weight 0",
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
        (vs.persistence, vs.persistence_netmask, vs.drain_timeout),
        (None, None, None)
    );
    assert_eq!(vs.health_check, None);
    assert_eq!(
        vs.real_servers,
        vec![RealServer {
            address: sa("10.1.0.11:8080"),
            weight: 1,
            max_connections: 0,
            backup: false,
        }]
    );
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
        })
    );
    // Line 10 is the blank line appended after BASE.
    assert_eq!(
        loaded.format_warnings(),
        vec!["t.toml:11:1: warning: health_check is parsed but not applied yet by this version"]
    );
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
}

#[test]
fn ipv6_virtual_server_rejected() {
    let text = BASE
        .replace("192.0.2.10:80", "[2001:db8::10]:80")
        .replace("10.1.0.11:8080", "[2001:db8::11]:8080");
    assert_one_error(&text, "6:11", "IPv6 virtual servers are not supported yet");
}

#[test]
fn unimplemented_scheduler_rejected() {
    for s in ["rr", "lc", "wlc", "sh", "mh"] {
        let text = BASE.replace(
            "address = \"192.0.2.10:80\"\n",
            &format!("address = \"192.0.2.10:80\"\nscheduler = \"{s}\"\n"),
        );
        assert_one_error(
            &text,
            "7:13",
            &format!("scheduler \"{s}\" is not implemented yet (available: wrr)"),
        );
    }
    let text = BASE.replace(
        "address = \"192.0.2.10:80\"\n",
        "address = \"192.0.2.10:80\"\nscheduler = \"fifo\"\n",
    );
    assert_one_error(&text, "7:13", "unknown variant `fifo`");
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

#[test]
fn multiple_errors_reported_together_in_file_order() {
    let text = r#"[director]
interfaces = ["eth0", "eth/1"]
conntrack_max = 0

[[virtual_server]]
name = "b"
address = "192.0.2.10:80"
scheduler = "lc"
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
            "multi.toml:8:13: scheduler \"lc\" is not implemented yet (available: wrr)",
            "multi.toml:12:11: forward = \"dr\" requires the real server port (8080) to equal the virtual server port (80)",
            "multi.toml:13:10: weight must be in 0..=65535, got 70000",
            "multi.toml:16:11: duplicate real server 10.1.0.11:8080 (first defined at 12:11)",
            "multi.toml:16:11: forward = \"dr\" requires the real server port (8080) to equal the virtual server port (80)",
            "multi.toml:19:8: duplicate virtual server name \"b\" (first defined at 6:8)",
            "multi.toml:20:11: IPv6 virtual servers are not supported yet",
            "multi.toml:23:11: real server address 10.1.0.12:80 is IPv4 but the virtual server address [2001:db8::1]:80 is IPv6",
        ]
        .join("\n")
    );
    assert_eq!(err.file, "multi.toml");
    assert_eq!(err.errors().count(), 10);
}

#[test]
fn display_format_is_file_line_col_message() {
    let text = r#"[director]
interfaces = ["eth0"]
conntrack_max=0

[[virtual_server]]
name = "web"
address = "192.0.2.10:80"
drain_timeout = "30s"

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
                line: 8,
                col: 17,
                message: "drain_timeout is parsed but not applied yet by this version".into(),
                severity: Severity::Warning,
            },
        ]
    );
    assert_eq!(
        err.to_string(),
        "file.toml:3:15: conntrack_max must be in 1..=134217728, got 0\n\
         file.toml:8:17: warning: drain_timeout is parsed but not applied yet by this version"
    );
    assert_eq!(
        err.lines(),
        vec![
            "file.toml:3:15: conntrack_max must be in 1..=134217728, got 0",
            "file.toml:8:17: warning: drain_timeout is parsed but not applied yet by this version",
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
const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/director.toml");

#[test]
fn example_files_parse_without_errors_or_warnings() {
    for path in [LAB_NAT, LAB_DR, REFERENCE] {
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
