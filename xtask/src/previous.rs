//! The director of the previous map layout, for the upgrade test
//! (`tests/tests/netns_upgrade.rs`): built once from this repository's own
//! history, the last commit before the layout changed, into the cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{
    cargo::Workspace,
    failure::{Failure, Result},
    prereq, run,
};

/// The last commit with map layout v5 (`ABI_VERSION = 5`); the next one
/// made it v6 (the half-open table). A layout change moves this to the
/// commit before it.
pub const COMMIT: &str = "8ce4cb079d6709034b16fba025ae972c995a331c";

/// The previous layout's `director` binary, built if the cache lacks it;
/// none (said loudly) in a clone without that commit, such as a shallow one.
pub fn director(ws: &Workspace) -> Result<Option<PathBuf>> {
    let dir = prereq::cache_dir()?.join("previous-layout").join(COMMIT);
    let bin = dir.join("target").join("debug").join("director");
    if bin.exists() {
        return Ok(Some(bin));
    }
    let present = Command::new("git")
        .current_dir(ws.root())
        .args(["cat-file", "-e", &format!("{COMMIT}^{{commit}}")])
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        eprintln!(
            "xtask: WARNING: commit {COMMIT} (the previous map layout) is not in this clone \
             (shallow?): the upgrade test will be skipped; `git fetch --unshallow` runs it"
        );
        return Ok(None);
    }
    let tree = dir.join("tree");
    if !tree.join("Cargo.toml").exists() {
        export(ws.root(), &tree)?;
    }
    let mut cmd = ws.cargo();
    cmd.current_dir(&tree)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .args(["build", "--package", "director", "--bin", "director"]);
    run::status(
        &mut cmd,
        "building the previous map layout's director (for the upgrade test)",
        &format!(
            "see cargo's errors above; the tree is {}, remove it to start over",
            tree.display()
        ),
    )?;
    Ok(Some(bin))
}

/// Writes the tree of [`COMMIT`] to `tree` (`git archive`, no worktree).
fn export(repo: &Path, tree: &Path) -> Result<()> {
    let fix = "the upgrade test needs the repository's history: `git fetch --unshallow`";
    std::fs::create_dir_all(tree).map_err(|e| {
        Failure::new(
            "creating the previous layout's tree",
            format!("{}: {e}", tree.display()),
            "check the cache directory",
        )
    })?;
    let tar = tree.with_extension("tar");
    let mut archive = Command::new("git");
    archive
        .current_dir(repo)
        .args(["archive", "--format=tar", "--output"])
        .arg(&tar)
        .arg(COMMIT);
    run::status(&mut archive, &format!("exporting commit {COMMIT}"), fix)?;
    let mut untar = Command::new("tar");
    untar.arg("-xf").arg(&tar).arg("-C").arg(tree);
    run::status(&mut untar, &format!("unpacking {}", tar.display()), fix)?;
    let _ = std::fs::remove_file(&tar);
    Ok(())
}
