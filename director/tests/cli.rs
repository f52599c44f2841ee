//! The `director` binary's own commands that need no daemon and no root.

use std::path::Path;
use std::process::{Command, Stdio};

const DIRECTOR: &str = env!("CARGO_BIN_EXE_director");

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/director.toml")
        .display()
        .to_string()
}

/// Runs director with `args`, its stdout a pipe whose reader is already
/// gone (as `director conns | head -1` leaves it once head has its line).
fn into_closed_pipe(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(DIRECTOR)
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("running {DIRECTOR}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn conns_head_1_closed_pipe_exits_quietly() {
    let config = example();
    for args in [vec!["check", config.as_str()], vec!["completions", "bash"]] {
        let (code, stderr) = into_closed_pipe(&args);
        assert_eq!(
            code,
            Some(0),
            "director {args:?} into a closed pipe: {stderr}"
        );
        assert!(stderr.is_empty(), "director {args:?} said: {stderr}");
    }
}

#[test]
fn check_file_without_config_flag() {
    let out = Command::new(DIRECTOR)
        .args(["check", &example()])
        .output()
        .expect("running director check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(": ok ("),
        "director check FILE: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
