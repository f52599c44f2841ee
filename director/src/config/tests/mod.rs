//! Positions in these tests are counted by hand: line 1 is the line that
//! starts right after `r#"`, columns are 1-based characters.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use super::*;

mod diagnostics;
mod director;
mod files;
mod fuzz;
mod health_check;
mod real_server;
mod sync;
mod values;
mod virtual_server;

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

/// Parses `text` expecting success without warnings; returns the config.
#[track_caller]
fn clean(text: &str) -> Config {
    let loaded = parse(text, "t.toml").unwrap_or_else(|e| panic!("expected success, got:\n{e}"));
    assert_eq!(loaded.warnings, vec![], "expected no warnings");
    loaded.config
}

/// A real server as written with only `address` and `weight`.
fn rs(address: &str, weight: u32) -> RealServer {
    RealServer {
        address: sa(address),
        weight,
        max_connections: 0,
        backup: false,
        health_check: None,
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

/// BASE with `lines` inserted after the virtual server's address (line 6),
/// so the first inserted line is line 7.
fn with_vs_keys(base: &str, lines: &str) -> String {
    if lines.is_empty() {
        return base.to_owned();
    }
    let (head, tail) = base.split_at(base.find("\n\n[[virtual_server.real_server]]").unwrap());
    format!("{head}\n{}{tail}", lines.trim_end_matches('\n'))
}

/// BASE with `lines` inserted after the interfaces (line 2), so the first
/// inserted line is line 3.
fn with_director_keys(lines: &str) -> String {
    let interfaces = "interfaces = [\"eth0\"]\n";
    BASE.replacen(interfaces, &format!("{interfaces}{lines}\n"), 1)
}

/// BASE with `lines` appended to its real server (address on line 9), so
/// the first inserted line is line 10.
fn with_rs_keys(lines: &str) -> String {
    format!("{BASE}{lines}\n")
}

/// `base` and, after a blank line, one more virtual server with `keys` and
/// a real server on `rs_address`. After BASE (9 lines) its header is on
/// line 11 and `keys` start on line 12.
fn and_vs(base: &str, keys: &str, rs_address: &str) -> String {
    format!(
        "{base}\n[[virtual_server]]\n{keys}\n\n[[virtual_server.real_server]]\naddress = \"{rs_address}\"\n"
    )
}

/// BASE, a blank line 10, the virtual server's check header on line 11 and
/// `lines` from line 12 on.
fn with_check(lines: &str) -> String {
    format!("{BASE}\n[virtual_server.health_check]\n{lines}")
}

/// A check of `kind` with the generic defaults (interval 2 s, timeout 1 s,
/// rise 2, fall 3, on_failure keep) and no kind-specific key.
fn check(kind: CheckKind) -> HealthCheck {
    HealthCheck {
        kind,
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
    }
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
