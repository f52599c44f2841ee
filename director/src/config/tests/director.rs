//! The `[director]` table.

use super::*;

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
fn conntrack_max_range() {
    let text = with_director_keys("conntrack_max = 0");
    assert_one_error(
        &text,
        "3:17",
        "conntrack_max must be in 1..=134217728, got 0",
    );
    let text = with_director_keys("conntrack_max = 134217729");
    assert_one_error(&text, "3:17", "got 134217729");
    let text = with_director_keys("conntrack_max = 134217728");
    assert_eq!(clean(&text).director.conntrack_max, 1 << 27);
}

#[test]
fn announce_table_range_and_reserved_tables() {
    // DR needs the real server on the virtual server's port.
    let dr = |keys: &str| {
        with_vs_keys(&with_director_keys(keys), "forward = \"dr\"").replace(":8080", ":80")
    };
    assert_eq!(clean(BASE).director.announce_table, None);
    assert_eq!(
        clean(&dr("announce_table = 100")).director.announce_table,
        Some(100)
    );
    assert_eq!(
        clean(&dr("announce_table = 4294967295"))
            .director
            .announce_table,
        Some(u32::MAX)
    );
    assert_one_error(
        &dr("announce_table = 0"),
        "3:18",
        "announce_table must be in 1..=4294967295, got 0",
    );
    assert_one_error(&dr("announce_table = 4294967296"), "3:18", "got 4294967296");
    for (table, name) in [(253, "default"), (254, "main"), (255, "local")] {
        assert_one_error(
            &dr(&format!("announce_table = {table}")),
            "3:18",
            &format!("announce_table {table} is the kernel's {name} table"),
        );
    }
}

#[test]
fn announce_table_refuses_nat_virtual_servers() {
    // BASE's virtual server forwards by NAT by default; its name is on
    // line 6 once announce_table takes line 3.
    let text = with_director_keys("announce_table = 100");
    assert_one_error(
        &text,
        "6:8",
        "virtual server \"web\" forwards by NAT (the default), which announce_table (set at 3:1) cannot serve",
    );
    let text = with_vs_keys(&text, "forward = \"nat\"");
    assert_one_error(
        &text,
        "8:11",
        "virtual server \"web\" forwards by NAT, which announce_table (set at 3:1)",
    );
    assert_eq!(
        warnings(&with_vs_keys(BASE, "forward = \"nat\"")),
        Vec::<String>::new(),
        "NAT without announce_table is fine"
    );
}
