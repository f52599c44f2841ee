//! `[[virtual_server]]` keys, and the rules over its real servers.

use super::*;

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
fn duplicate_virtual_server_names() {
    let text = and_vs(
        BASE,
        "name = \"web\"\naddress = \"192.0.2.11:80\"",
        "10.1.0.11:8080",
    );
    assert_one_error(
        &text,
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
fn ipv6_virtual_server_accepted() {
    assert_eq!(warnings(BASE6), Vec::<String>::new());
    let vs = &clean(BASE6).virtual_servers[0];
    assert_eq!(vs.address, sa("[2001:db8::10]:80"));
    assert_eq!(vs.real_servers[0].address, sa("[2001:db8:1::11]:8080"));
    // The same address and port on TCP and UDP, and an IPv4 neighbour.
    let text = and_vs(
        BASE6,
        "name = \"web6-udp\"\naddress = \"[2001:db8::10]:80\"\nprotocol = \"udp\"",
        "[2001:db8:1::11]:8080",
    );
    assert_eq!(warnings(&text), Vec::<String>::new());
    // Duplicates are still caught for IPv6 (written differently here).
    let text = and_vs(
        BASE6,
        "name = \"again\"\naddress = \"[2001:db8:0::10]:80\"",
        "[2001:db8:1::11]:8080",
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
        assert!(clean(&text).virtual_servers[0].hash_source_port);
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
fn persistence_netmask_rules() {
    let text = with_vs_keys(BASE, "persistence_netmask = 24");
    assert_one_error(
        &text,
        "7:23",
        "persistence_netmask requires persistence to be set",
    );
    let text = with_vs_keys(BASE, "persistence = \"5m\"\npersistence_netmask = 33");
    assert_one_error(
        &text,
        "8:23",
        "persistence_netmask must be in 0..=32, got 33",
    );
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
        let vs = &clean(&text).virtual_servers[0];
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
fn timeouts_parse() {
    let text = with_vs_keys(BASE, "tcp_timeout = \"2h\"\ntcp_fin_timeout = \"30s\"");
    assert_eq!(
        clean(&text).virtual_servers[0].timeouts,
        Timeouts {
            tcp: Duration::from_secs(7200),
            tcp_fin: Duration::from_secs(30),
            udp: DEFAULT_UDP_TIMEOUT,
        }
    );
    let text = with_vs_keys(BASE, "protocol = \"udp\"\nudp_timeout = \"24h\"");
    assert_eq!(
        clean(&text).virtual_servers[0].timeouts,
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
    assert_eq!(clean(&text).virtual_servers[0].mh_table_size, 1021);
    let text = with_vs_keys(BASE, "scheduler = \"mh\"\nmh_table_size = 1000003");
    assert_eq!(clean(&text).virtual_servers[0].mh_table_size, 1_000_003);
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
