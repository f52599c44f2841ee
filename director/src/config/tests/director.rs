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
