//! Where errors point and how they read: toml's syntax and shape errors,
//! columns, the order of many errors, and the `FILE:LINE:COL` format.

use super::*;

#[test]
fn unknown_key_points_at_the_key() {
    // The real server's address (line 9), indented and misspelt.
    let text = BASE.replace("\naddress = \"10.1.0.11", "\n  adress = \"10.1.0.11");
    assert_one_error(
        &text,
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
    let text = with_rs_keys("weight = \"3\"");
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
    let text = with_vs_keys(BASE, "forward = \"tun\"");
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
    let text = with_check("interval = \"2s\"\n");
    assert_one_error(&text, "11:1", "missing field `kind`");
}

#[test]
fn syntax_error_is_positioned() {
    let text = r#"[director]
interfaces = ["eth0"
"#;
    assert_one_error(text, "2:21", "unclosed array");
}

fn position(text: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(text).position(text, offset)
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

/// Whoever may write the file chooses what the root daemon forwards: a file
/// group or others may write is refused (`check`, `run` and `reload` all
/// `load`), one they may only read is not.
#[test]
fn load_refuses_a_file_writable_by_group_or_others() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("director.toml");
    std::fs::write(&path, BASE).unwrap();
    for mode in [0o666, 0o620, 0o602] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = load(&path).unwrap_err().to_string();
        let p = path.display();
        assert_eq!(
            err,
            format!("{p}:1:1: writable by others (mode {mode:04o}); chmod go-w {p}")
        );
    }
    for mode in [0o644, 0o600, 0o400] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        load(&path).unwrap_or_else(|e| panic!("mode {mode:o} refused: {e}"));
    }
}

#[test]
fn every_key_type_and_value_error_is_reported_in_file_order() {
    let text = r#"[director]
interfaces = ["eth0", 7]
xdp_mod = "native"

[[virtual_server]]
name = "web"
address = "192.0.2.10:80"
schedler = "rr"
protocol = "UDP"
udp_timeout = "1s"

[[virtual_server.real_server]]
adress = "10.1.0.11:8080"

[[virtual_server.real_server]]
address = "10.1.0.12:8080"
weight = "3"
backup = 1

[[virtual_server.real_server]]
address = "10.1.0.13:8080"
weight = 70000
"#;
    assert_eq!(
        errors(text),
        [
            "2:23: invalid type: integer `7`, expected a string",
            "3:1: unknown field `xdp_mod`, expected one of `interfaces`, `xdp_mode`, `conntrack_max`, `announce_table`",
            "8:1: unknown field `schedler`, expected one of `name`, `address`, `protocol`, `scheduler`, `forward`, `persistence`, `persistence_netmask`, `persistence_netmask6`, `hash_source_port`, `tcp_timeout`, `tcp_fin_timeout`, `udp_timeout`, `mh_table_size`, `drain_timeout`, `health_check`, `real_server`",
            "9:12: unknown variant `UDP`, expected `tcp` or `udp`",
            "13:1: unknown field `adress`, expected one of `address`, `weight`, `max_connections`, `backup`, `health_check`",
            "17:10: invalid type: string \"3\", expected an integer",
            "18:10: invalid type: integer `1`, expected a boolean",
            "22:10: weight must be in 0..=65535, got 70000",
        ]
    );
}

#[test]
fn missing_field_is_reported_at_the_table_that_lacks_it() {
    let text = r#"# two tables lack a key
[director]
xdp_mode = "native"

[[virtual_server]]
address = "192.0.2.10:80"

  [virtual_server.health_check]
  interval = "2s"

  [[virtual_server.real_server]]
  weight = 2

[sync]
listen = "10.9.0.1:8848"
peers = ["10.9.0.2:8848"]
"#;
    assert_eq!(
        errors(text),
        [
            "2:1: missing field `interfaces`",
            "5:1: missing field `name`",
            "8:3: missing field `kind`",
            "11:3: missing field `address`",
            "14:1: missing field `key_file`",
        ]
    );
}

#[test]
fn out_of_range_integer_says_the_allowed_range() {
    let text = with_rs_keys(
        "weight = 4000000000\nmax_connections = 40000000000000000000000000000000000000000000",
    );
    assert_eq!(
        errors(&text),
        [
            "10:10: weight must be in 0..=65535, got 4000000000",
            "11:19: max_connections must be in 0..=4294967295, got 40000000000000000000000000000000000000000000",
        ]
    );
    // Beyond u128 too.
    let huge = "0xffff_ffff_ffff_ffff_ffff_ffff_ffff_ffff_ff";
    let text = with_vs_keys(BASE, &format!("scheduler = \"mh\"\nmh_table_size = {huge}"));
    assert_one_error(
        &text,
        "8:17",
        &format!("mh_table_size must be a prime between 1021 and 1000003, got {huge}"),
    );
}

#[test]
fn every_syntax_error_is_reported() {
    let text = "[director]\ninterfaces = [\"eth0\"]\nxdp_mode = \n\n[[virtual_server]]\nname = \"web\" = 3\n";
    assert_eq!(
        errors(text),
        [
            "3:12: string values must be quoted, expected literal string",
            "6:14: unexpected key or value, expected newline, `#`",
        ]
    );
}

#[test]
fn a_value_that_cannot_be_read_is_not_taken_for_the_default() {
    // Not "mh_table_size applies only to the mh scheduler, not \"wrr\"".
    let text = with_vs_keys(BASE, "scheduler = \"maglev\"\nmh_table_size = 4099");
    assert_one_error(&text, "7:13", "unknown variant `maglev`");
    // Not "forwards by NAT (the default), which announce_table ... cannot serve".
    let text = with_vs_keys(&with_director_keys("announce_table = 100"), "forward = 1");
    assert_one_error(
        &text,
        "8:11",
        "invalid type: integer `1`, expected a string",
    );
    // Not "timeout (1s) must not exceed interval (2s)" against the default.
    let text = with_check("kind = \"tcp\"\ninterval = 5\ntimeout = \"3s\"\n");
    assert_one_error(&text, "13:12", "invalid type: integer `5`");
}
