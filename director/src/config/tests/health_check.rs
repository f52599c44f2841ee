//! `health_check` tables of virtual and real servers.

use super::*;

/// The check of the first virtual server of `text`, which parses without
/// warnings.
#[track_caller]
fn vs_check(text: &str) -> HealthCheck {
    let mut config = clean(text);
    config
        .virtual_servers
        .remove(0)
        .health_check
        .expect("a check")
}

#[test]
fn health_check_defaults_apply() {
    let vs = &clean(&with_check("kind = \"tcp\"\n")).virtual_servers[0];
    assert_eq!(vs.health_check, Some(check(CheckKind::Tcp)));
    assert_eq!(vs.check_for(&vs.real_servers[0]), vs.health_check.as_ref());
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
            path: Some("/status?full=1".into()),
            expect_status: Some((204, 204)),
            expect_body: Some("all good".into()),
            host: Some("www.example.com".into()),
            on_failure: OnFailure::Reset,
            ..check(CheckKind::Http)
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
fn health_check_rules() {
    let text = with_check(
        r#"kind = "http"
path = "healthz"
expect_status = "299-200"
interval = "1s"
timeout = "2s"
rise = 0
fall = 0
port = 0
"#,
    );
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
        let text = with_check(&format!("kind = \"http\"\nexpect_status = \"{bad}\"\n"));
        assert_one_error(
            &text,
            "13:17",
            "expected \"NNN\" or \"NNN-NNN\" with codes in 100..=599",
        );
    }
    let text = with_check("kind = \"tcp\"\ninterval = \"0s\"\ntimeout = \"0s\"\n");
    assert_eq!(
        errors(&text),
        vec![
            "13:12: interval must be greater than zero",
            "14:11: timeout must be greater than zero",
        ]
    );
    // The default timeout (1s) against a shorter interval: points at interval.
    let text = with_check("kind = \"tcp\"\ninterval = \"500ms\"\n");
    assert_one_error(
        &text,
        "13:12",
        "timeout (1s) must not exceed interval (500ms)",
    );
    let text = with_check("kind = \"tcp\"\npath = \"/\"\n");
    assert_one_error(
        &text,
        "13:8",
        "path only applies to kind = \"http\", not \"tcp\"",
    );
    let hc = vs_check(&with_check("kind = \"http\"\nexpect_status = \"200\"\n"));
    assert_eq!(hc.expect_status, Some((200, 200)));
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
