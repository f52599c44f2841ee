//! `[[virtual_server.real_server]]` keys.

use super::*;

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
    let text = with_vs_keys(BASE, "forward = \"dr\"");
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

#[test]
fn weight_and_max_connections_range() {
    let text = with_rs_keys("weight = 65536\nmax_connections = -1");
    assert_eq!(
        errors(&text),
        vec![
            "10:10: weight must be in 0..=65535, got 65536",
            "11:19: max_connections must be in 0..=4294967295, got -1",
        ]
    );
    let text = with_rs_keys("weight = 65535");
    assert_eq!(
        clean(&text).virtual_servers[0].real_servers[0].weight,
        65535
    );
}

#[test]
fn persistence_and_real_server_limits_are_applied_without_warnings() {
    let text = with_vs_keys(BASE, "persistence = \"5m\"\npersistence_netmask = 24");
    assert_eq!(warnings(&text), Vec::<String>::new());
    let text = format!(
        "{BASE}max_connections = 100\nbackup = false\n\n[[virtual_server.real_server]]\naddress = \"10.1.0.12:8080\"\nbackup = true\n"
    );
    let rs = &clean(&text).virtual_servers[0].real_servers;
    assert_eq!((rs[0].max_connections, rs[0].backup), (100, false));
    assert_eq!((rs[1].max_connections, rs[1].backup), (0, true));
}

#[test]
fn zero_max_connections_and_backup_false_do_not_warn() {
    let text = with_rs_keys("max_connections = 0\nbackup = false");
    assert_eq!(warnings(&text), Vec::<String>::new());
}

#[test]
fn real_server_equal_to_the_vip_is_an_error() {
    let looped = "real server 192.0.2.10:80 is the virtual server's own address";
    let text = BASE.replace("10.1.0.11:8080", "192.0.2.10:80");
    assert_one_error(&text, "9:11", looped);
    let dr = with_vs_keys(&text, "forward = \"dr\"");
    assert_one_error(&dr, "10:11", looped);
    let text = BASE6.replace("[2001:db8:1::11]:8080", "[2001:db8::10]:80");
    assert_one_error(
        &text,
        "9:11",
        "real server [2001:db8::10]:80 is the virtual server's own address",
    );
    // NAT to another port of the VIP's host is no loop.
    let text = BASE.replace("10.1.0.11:8080", "192.0.2.10:8080");
    assert_eq!(warnings(&text), Vec::<String>::new());
}
