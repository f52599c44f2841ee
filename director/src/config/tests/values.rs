//! Addresses and durations, wherever they are set.

use super::*;

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
    let text = with_vs_keys(BASE, "persistence = \"5 parsecs\"");
    assert_one_error(
        &text,
        "7:15",
        "invalid duration \"5 parsecs\" for persistence",
    );
    let text = with_vs_keys(BASE, "drain_timeout = \"soon\"");
    assert_one_error(&text, "7:17", "invalid duration \"soon\" for drain_timeout");
    let text = with_vs_keys(BASE, "persistence = \"0s\"");
    assert_one_error(&text, "7:15", "persistence must be greater than zero");
}
