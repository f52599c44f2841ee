//! `cargo xtask bench [--quick|--smoke]`: installs what the benchmarks drive, builds
//! them with director and the lab's server, runs `director-bench` in the foreground
//! (Ctrl-C reaches it, and it tears its labs down) and says where the report went.
//!
//! A full run writes `bench/results/` (the committed report); `--quick` and `--smoke`
//! write to `<target>/bench/<mode>/`, so they never overwrite it. `--smoke` uses the
//! debug build (what CI has already built): its figures only prove the paths work.

use std::path::PathBuf;

use crate::{
    cargo::{DIRECTOR_BIN, Profile, Workspace},
    failure::{Failure, Result},
    prereq::{self, Needs},
    run,
};

const BENCH_PACKAGE: &str = "director-bench";
const BENCH_BIN: &str = "director-bench";
const SERVER_BIN: &str = "director-lab-server";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Full,
    Quick,
    Smoke,
}

impl Mode {
    pub fn new(quick: bool, smoke: bool) -> Self {
        match (quick, smoke) {
            (_, true) => Self::Smoke,
            (true, false) => Self::Quick,
            (false, false) => Self::Full,
        }
    }

    fn flag(self) -> Option<&'static str> {
        match self {
            Self::Full => None,
            Self::Quick => Some("--quick"),
            Self::Smoke => Some("--smoke"),
        }
    }

    fn profile(self) -> Profile {
        match self {
            Self::Smoke => Profile::Debug,
            Self::Full | Self::Quick => Profile::Release,
        }
    }

    fn out_dir(self, ws: &Workspace) -> PathBuf {
        match self {
            Self::Full => ws.root().join("bench").join("results"),
            Self::Quick => ws.target_dir().join("bench").join("quick"),
            Self::Smoke => ws.target_dir().join("bench").join("smoke"),
        }
    }
}

pub fn bench(mode: Mode) -> Result<()> {
    let env = prereq::ensure(Needs {
        command: "bench",
        root: true,
        lab: true,
    })?;
    prereq::ensure_packages(prereq::BENCH_PACKAGES)?;
    let ws = Workspace::locate(&env)?;
    let profile = mode.profile();
    let rerun = format!(
        "cargo xtask bench{}",
        mode.flag().map_or(String::new(), |f| format!(" {f}"))
    );

    let mut build = ws.cargo();
    build.arg("build");
    for package in ["director", "director-tests", BENCH_PACKAGE] {
        build.args(["--package", package]);
    }
    build.arg("--bins");
    if matches!(profile, Profile::Release) {
        build.arg("--release");
    }
    run::status(
        &mut build,
        "building the benchmarks",
        &format!("fix the errors cargo printed above, then rerun: {rerun}"),
    )?;
    let bench = ws.built_bin(profile, BENCH_BIN, BENCH_PACKAGE)?;
    let director = ws.built_bin(profile, DIRECTOR_BIN, "director")?;
    let server = ws.built_bin(profile, SERVER_BIN, "director-tests")?;

    let out = mode.out_dir(&ws);
    let mut cmd = std::process::Command::new(&bench);
    cmd.args(mode.flag())
        .arg("--director")
        .arg(&director)
        .arg("--server")
        .arg(&server)
        .arg("--out")
        .arg(&out)
        .current_dir(ws.root());
    let what = "running the benchmarks";
    let fix = format!("see the benchmark's output above, then rerun: {rerun}");
    let child = run::spawn_foreground(&mut cmd, what, &fix)?;
    let status = run::wait(&cmd, child, what, &fix)?;
    if !status.success() {
        return Err(Failure::new(
            what,
            format!(
                "`{}` failed ({status}); what it measured is still in {}",
                run::describe(&cmd),
                out.join("latest.md").display()
            ),
            fix,
        ));
    }
    prereq::progress(
        "bench",
        &format!("report in {}", out.join("latest.md").display()),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke_wins_and_only_full_is_bare() {
        assert_eq!(Mode::new(false, false), Mode::Full);
        assert_eq!(Mode::new(true, false), Mode::Quick);
        assert_eq!(Mode::new(true, true), Mode::Smoke);
        assert_eq!(Mode::Full.flag(), None);
        assert_eq!(Mode::Smoke.flag(), Some("--smoke"));
    }
}
