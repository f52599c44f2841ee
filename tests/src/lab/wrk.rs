//! `wrk`, the HTTP load generator, run in a lab namespace against the VIP: always
//! bounded in time (`-d`), stopped by pid if its [`Wrk`] drops unwaited, and its
//! summary parsed into a [`WrkReport`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::director::log_tail;
use super::netns::NetNs;
use super::process::ChildGuard;

/// How long past its `-d` a run may take before it counts as hung.
const WAIT_SLACK: Duration = Duration::from_secs(10);

static NEXT_RUN: AtomicUsize = AtomicUsize::new(0);

/// A running `wrk`; its output goes to `wrk-<n>.log` in the lab's temp dir.
#[derive(Debug)]
pub struct Wrk {
    child: ChildGuard,
    log: PathBuf,
    duration: Duration,
    command: String,
}

impl Wrk {
    /// Starts `wrk -t threads -c connections -d duration --timeout 2s url` in `ns`.
    /// The duration is rounded up to whole seconds (wrk's resolution).
    pub(crate) fn spawn(
        ns: &NetNs,
        dir: &Path,
        threads: u32,
        connections: u32,
        duration: Duration,
        url: &str,
    ) -> Result<Self> {
        anyhow::ensure!(
            threads >= 1 && connections >= threads,
            "wrk needs 1 ≤ threads ({threads}) ≤ connections ({connections})"
        );
        anyhow::ensure!(
            duration <= Duration::from_secs(60),
            "wrk runs in the lab are bounded: {duration:?} is more than 60 s"
        );
        anyhow::ensure!(
            std::env::var_os("PATH").is_some_and(|path| {
                std::env::split_paths(&path).any(|dir| dir.join("wrk").is_file())
            }),
            "wrk not found in PATH: apt-get install wrk (`cargo xtask test` installs it)"
        );
        let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
        let secs = secs.max(1);
        let args = [
            format!("-t{threads}"),
            format!("-c{connections}"),
            format!("-d{secs}s"),
            "--timeout".to_owned(),
            "2s".to_owned(),
            url.to_owned(),
        ];
        let command = format!("wrk {}", args.join(" "));
        let n = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
        let log = dir.join(format!("wrk-{n}.log"));
        let out =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let mut cmd = ns.command("wrk");
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = ChildGuard::spawn("wrk", cmd, Duration::ZERO)?;
        Ok(Self {
            child,
            log,
            duration: Duration::from_secs(secs),
            command,
        })
    }

    /// [`Wrk::spawn`] of `GET /` on `vip`; panics if wrk cannot start.
    pub(crate) fn on_vip(
        ns: &NetNs,
        dir: &Path,
        vip: SocketAddr,
        threads: u32,
        connections: u32,
        duration: Duration,
    ) -> Self {
        let url = format!("http://{vip}/");
        Self::spawn(ns, dir, threads, connections, duration, &url)
            .unwrap_or_else(|e| panic!("start wrk: {e:#}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Waits for the run to end (its duration plus a slack; after that it is killed
    /// and this is an error) and parses its summary. A non-zero exit is an error.
    pub fn wait(mut self) -> Result<WrkReport> {
        let status: Option<ExitStatus> = self.child.wait_timeout(self.duration + WAIT_SLACK);
        let Some(status) = status else {
            let _ = self.child.kill();
            bail!(
                "`{}` still running {:?} after its duration; killed. Output:\n{}",
                self.command,
                WAIT_SLACK,
                log_tail(&self.log, 40)
            );
        };
        let output = std::fs::read_to_string(&self.log)
            .with_context(|| format!("read {}", self.log.display()))?;
        if !status.success() {
            bail!("`{}` failed ({status}):\n{output}", self.command);
        }
        WrkReport::parse(&output).with_context(|| format!("`{}` output:\n{output}", self.command))
    }
}

/// The numbers of a wrk summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WrkReport {
    /// Completed requests.
    pub requests: u64,
    /// The run's length as wrk measured it.
    pub seconds: f64,
    /// `Socket errors:` line (all 0 when wrk prints none).
    pub connect_errors: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub timeouts: u64,
    /// `Non-2xx or 3xx responses:` (status ≥ 400).
    pub bad_status: u64,
    /// wrk's whole output.
    pub output: String,
}

impl WrkReport {
    pub fn socket_errors(&self) -> u64 {
        self.connect_errors + self.read_errors + self.write_errors + self.timeouts
    }

    /// Socket errors plus error responses.
    pub fn failures(&self) -> u64 {
        self.socket_errors() + self.bad_status
    }

    /// Failures per completed request, in percent (100 when nothing completed).
    pub fn failure_percent(&self) -> f64 {
        match self.requests {
            0 => 100.0,
            n => 100.0 * self.failures() as f64 / n as f64,
        }
    }

    /// Parses wrk 4's summary:
    /// ```text
    ///   12345 requests in 8.00s, 1.70MB read
    ///   Socket errors: connect 1, read 2, write 0, timeout 0
    ///   Non-2xx or 3xx responses: 3
    /// ```
    pub fn parse(output: &str) -> Result<Self> {
        let mut report = WrkReport {
            output: output.to_owned(),
            ..Self::default()
        };
        let mut saw_total = false;
        for line in output.lines().map(str::trim) {
            if let Some((n, rest)) = line.split_once(" requests in ") {
                report.requests = n.parse().with_context(|| format!("bad line {line:?}"))?;
                let time = rest.split(',').next().unwrap_or_default();
                report.seconds = parse_time(time).with_context(|| format!("bad line {line:?}"))?;
                saw_total = true;
            } else if let Some(rest) = line.strip_prefix("Socket errors:") {
                for part in rest.split(',') {
                    let (name, n) = part
                        .trim()
                        .split_once(' ')
                        .with_context(|| format!("bad line {line:?}"))?;
                    let n: u64 = n.parse().with_context(|| format!("bad line {line:?}"))?;
                    match name {
                        "connect" => report.connect_errors = n,
                        "read" => report.read_errors = n,
                        "write" => report.write_errors = n,
                        "timeout" => report.timeouts = n,
                        _ => bail!("unknown socket error kind {name:?} in {line:?}"),
                    }
                }
            } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
                report.bad_status = n
                    .trim()
                    .parse()
                    .with_context(|| format!("bad line {line:?}"))?;
            }
        }
        anyhow::ensure!(saw_total, "no `N requests in T` line");
        Ok(report)
    }
}

impl std::fmt::Display for WrkReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests in {:.2}s; socket errors: connect {}, read {}, write {}, timeout {}; \
             non-2xx/3xx {} ({:.3}% failed)",
            self.requests,
            self.seconds,
            self.connect_errors,
            self.read_errors,
            self.write_errors,
            self.timeouts,
            self.bad_status,
            self.failure_percent()
        )
    }
}

/// `8.00s`, `250.00ms`, `1.00m`, `10.00us` as seconds.
fn parse_time(text: &str) -> Result<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .with_context(|| format!("time {text:?} has no unit"))?;
    let (value, unit) = text.split_at(split);
    let value: f64 = value
        .parse()
        .with_context(|| format!("bad time {text:?}"))?;
    let scale = match unit {
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => bail!("unknown time unit in {text:?}"),
    };
    Ok(value * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_summary_with_errors() {
        let out = "Running 8s test @ http://192.0.2.10/
  2 threads and 12 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   310.12us  201.37us  12.11ms   92.10%
    Req/Sec    18.20k     1.10k   20.71k    71.25%
  289912 requests in 8.00s, 31.24MB read
  Socket errors: connect 3, read 4, write 0, timeout 1
  Non-2xx or 3xx responses: 2
Requests/sec:  36239.00
Transfer/sec:      3.90MB
";
        let r = WrkReport::parse(out).unwrap();
        assert_eq!(
            (r.requests, r.connect_errors, r.read_errors, r.write_errors),
            (289_912, 3, 4, 0)
        );
        assert_eq!((r.timeouts, r.bad_status, r.failures()), (1, 2, 10));
        assert!((r.seconds - 8.0).abs() < 1e-9);
    }

    #[test]
    fn parses_a_clean_summary_and_rejects_garbage() {
        let out = "  1000 requests in 2.00s, 100.00KB read\nRequests/sec: 500.00\n";
        let r = WrkReport::parse(out).unwrap();
        assert_eq!((r.requests, r.failures()), (1000, 0));
        assert!(WrkReport::parse("unable to connect to 192.0.2.10:80").is_err());
        assert!((parse_time("250.50ms").unwrap() - 0.2505).abs() < 1e-12);
        assert_eq!(parse_time("1.00m").unwrap(), 60.0);
    }
}
