//! Positions in these tests are counted by hand: line 1 is the line that
//! starts right after `r#"`, columns are 1-based characters.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use super::*;

mod diagnostics;
mod director;
mod files;
mod health_check;
mod real_server;
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

/// BASE with IPv6 addresses.
const BASE6: &str = r#"[director]
interfaces = ["eth0"]

[[virtual_server]]
name = "web6"
address = "[2001:db8::10]:80"

[[virtual_server.real_server]]
address = "[2001:db8:1::11]:8080"
"#;
