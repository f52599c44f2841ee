//! Where the binaries and example configs are.

use std::path::{Path, PathBuf};

/// The cargo workspace root (this crate lives in `<workspace>/tests`).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent directory")
        .to_path_buf()
}

/// `$DIRECTOR_BIN` if set, else `<workspace>/target/debug/director`. Not checked here:
/// see [`check_director_bin`].
pub fn director_bin() -> PathBuf {
    std::env::var_os("DIRECTOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target/debug/director"))
}

/// An error saying how to get the director binary when it is missing.
pub fn check_director_bin(path: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        path.is_file(),
        "director binary not found at {}: run `cargo xtask test` (it builds it)",
        path.display()
    );
    Ok(())
}

/// `$DIRECTOR_DEB`: the Debian package `cargo xtask test` builds (`cargo xtask deb`)
/// and passes to the package tests.
pub fn director_deb() -> PathBuf {
    let deb = std::env::var_os("DIRECTOR_DEB").map(PathBuf::from).expect(
        "DIRECTOR_DEB is not set: run `cargo xtask test` (it builds the package), or \
         `cargo xtask deb` and DIRECTOR_DEB=<the path it prints> cargo test -p director-tests --test package",
    );
    assert!(
        deb.is_file(),
        "DIRECTOR_DEB={}: no such file",
        deb.display()
    );
    deb
}

/// `<workspace>/examples`.
pub fn examples_dir() -> PathBuf {
    workspace_dir().join("examples")
}

/// Asserts that `examples/<file>` holds `want`, what the lab runs; with
/// `DIRECTOR_WRITE_EXAMPLES` set it writes it first (regenerating the examples:
/// `DIRECTOR_WRITE_EXAMPLES=1 cargo test -p director-tests examples`).
#[track_caller]
pub fn assert_example(file: &str, want: &str) {
    let path = examples_dir().join(file);
    if std::env::var_os("DIRECTOR_WRITE_EXAMPLES").is_some() {
        std::fs::write(&path, want).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let have = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        have,
        want,
        "{} differs from the lab's config: regenerate it (see assert_example)",
        path.display()
    );
}

/// A binary next to the running executable (how the demo finds `director-lab-server`).
pub fn sibling_bin(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} has no parent directory", exe.display()))?
        .join(name);
    anyhow::ensure!(
        path.is_file(),
        "{} not found (build it: cargo build -p director-tests)",
        path.display()
    );
    Ok(path)
}
