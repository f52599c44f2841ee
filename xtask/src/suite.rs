//! `cargo xtask test`: the whole suite in one cargo invocation, echoed as it runs,
//! then a closing summary of every test binary's `test result:` line.

use std::{
    ffi::OsString,
    io::{self, BufRead as _, BufReader, Write as _},
    path::Path,
    process::Stdio,
    time::Instant,
};

use crate::{
    cargo::{EBPF_PACKAGE, Workspace},
    failure::{Failure, Result},
    run,
};

/// Runs `cargo test` over the workspace, one test thread (netns and XDP tests share
/// the kernel), with `DIRECTOR_BIN` for the integration tests and
/// `DIRECTOR_PREVIOUS_BIN` (the previous map layout's) for the upgrade test and
/// `DIRECTOR_DEB` (the Debian package) for the package tests. `filters` go to libtest.
pub fn test(
    ws: &Workspace,
    director_bin: &Path,
    previous_bin: Option<&Path>,
    deb: &Path,
    filters: &[OsString],
) -> Result<()> {
    let started = Instant::now();
    let mut cmd = ws.cargo();
    cmd.args([
        "test",
        "--workspace",
        "--exclude",
        EBPF_PACKAGE,
        "--no-fail-fast",
    ])
    .args(["--", "--test-threads=1"])
    .args(filters)
    .env("DIRECTOR_BIN", director_bin)
    .env("DIRECTOR_DEB", deb)
    .stdout(Stdio::piped());
    if let Some(previous) = previous_bin {
        cmd.env("DIRECTOR_PREVIOUS_BIN", previous);
    }
    let what = "running the test suite";
    let rerun = "fix what cargo printed above, then rerun: cargo xtask test";
    let mut child = run::spawn_foreground(&mut cmd, what, rerun)?;

    let mut tally = Tally::default();
    if let Some(pipe) = child.stdout.take() {
        let mut reader = BufReader::new(pipe);
        let mut stdout = io::stdout();
        let mut line = Vec::new();
        // Byte lines: a test may print anything; only libtest's own lines are parsed.
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            // A closed stdout (e.g. `| head`) must not stop the suite; keep reading.
            let _ = stdout.write_all(&line);
            tally.line(&String::from_utf8_lossy(&line));
            line.clear();
        }
    }
    let status = run::wait(&cmd, child, what, rerun)?;
    tally.print(started.elapsed().as_secs_f64());

    if !tally.failed_names.is_empty() || tally.failed > 0 {
        let names = if tally.failed_names.is_empty() {
            String::new()
        } else {
            format!(": {}", tally.failed_names.join(", "))
        };
        return Err(Failure::new(
            "test suite",
            format!(
                "{} test(s) failed{names}",
                tally.failed.max(count(&tally.failed_names))
            ),
            "see each failure's output above; rerun one alone with: cargo xtask test -- <test name>",
        ));
    }
    if !status.success() {
        return Err(Failure::new(
            "test suite",
            format!(
                "`cargo test` failed ({status}) with no failing test: a test target did not build or a test binary crashed"
            ),
            rerun,
        ));
    }
    Ok(())
}

fn count(names: &[String]) -> u32 {
    u32::try_from(names.len()).unwrap_or(u32::MAX)
}

/// Totals over the `test result:` lines of all test binaries (unit, integration, doc).
#[derive(Debug, Default, PartialEq)]
struct Tally {
    binaries: u32,
    passed: u32,
    failed: u32,
    ignored: u32,
    failed_names: Vec<String>,
}

impl Tally {
    fn line(&mut self, line: &str) {
        let line = line.trim_end();
        if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|rest| rest.strip_suffix(" ... FAILED"))
        {
            self.failed_names.push(name.to_owned());
        } else if let Some(result) = line.strip_prefix("test result: ") {
            // "ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"
            self.binaries += 1;
            for part in result.split(';') {
                let words: Vec<&str> = part.split_whitespace().collect();
                let [.., n, kind] = words[..] else { continue };
                let Ok(n) = n.parse::<u32>() else { continue };
                match kind {
                    "passed" => self.passed += n,
                    "failed" => self.failed += n,
                    "ignored" => self.ignored += n,
                    _ => {}
                }
            }
        }
    }

    fn print(&self, seconds: f64) {
        eprintln!(
            "\nxtask: test summary: {} passed, {} failed, {} ignored in {} test binaries ({seconds:.0}s)",
            self.passed, self.failed, self.ignored, self.binaries
        );
        for name in &self.failed_names {
            eprintln!("xtask:   FAILED {name}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_libtest_output() {
        let mut tally = Tally::default();
        for line in [
            "running 3 tests\n",
            "test wrr::tests::smooth ... ok\n",
            "test lab::nat_distribution ... FAILED\n",
            "test slow ... ignored\n",
            "test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n",
            "test result: ok. 4 passed; 0 failed; 0 ignored; 0 measured; 2 filtered out; finished in 1.20s\n",
        ] {
            tally.line(line);
        }
        assert_eq!(
            tally,
            Tally {
                binaries: 2,
                passed: 5,
                failed: 1,
                ignored: 1,
                failed_names: vec!["lab::nat_distribution".to_owned()],
            }
        );
    }
}
