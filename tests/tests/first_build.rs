//! What an operator sees on the first build: director's build script builds the
//! eBPF program with a nested cargo, and nothing of that build's progress may read
//! as a warning.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// A `cargo check` of director in an empty target directory runs the nested eBPF
/// build from scratch (build-std core included), as a first build does.
#[test]
fn first_build_prints_no_nested_compiling_lines_as_warnings() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = tempfile::tempdir().expect("temporary target directory");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = Instant::now();
    let out = Command::new(&cargo)
        .current_dir(&workspace)
        .args(["check", "--package", "director", "--lib", "--target-dir"])
        .arg(target.path())
        .env_remove("AYA_BUILD_SKIP")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap_or_else(|e| panic!("running {cargo}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cargo check of director failed (is bpf-linker on PATH? cargo xtask puts it there):\n{stderr}"
    );
    let relayed: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning: director@"))
        .collect();
    assert!(
        relayed.is_empty(),
        "the nested eBPF build's output came out as {} cargo warnings:\n{}",
        relayed.len(),
        relayed.join("\n")
    );
    println!(
        "first build (cargo check, empty target dir): {:.0} s, {} lines on stderr",
        started.elapsed().as_secs_f64(),
        stderr.lines().count()
    );
}
