//! The director under test, run in the lab's `dir` namespace.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::netns::NetNs;
use super::process::{ChildGuard, log_to};

/// How long SIGTERM gets before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A director config: literal TOML or a file.
#[derive(Debug, Clone)]
pub enum DirectorConfig {
    Text(String),
    File(PathBuf),
}

impl From<&str> for DirectorConfig {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<String> for DirectorConfig {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<&Path> for DirectorConfig {
    fn from(path: &Path) -> Self {
        Self::File(path.to_owned())
    }
}

impl From<PathBuf> for DirectorConfig {
    fn from(path: PathBuf) -> Self {
        Self::File(path)
    }
}

/// A running `director run --config FILE`, its output captured in a log file.
#[derive(Debug)]
pub struct Director {
    child: ChildGuard,
    log: PathBuf,
    config: PathBuf,
}

impl Director {
    /// Starts `bin run --config <config>` in `ns` under `nsenter --net` (not `ip netns
    /// exec`, which would hide the host's /sys/fs/bpf), pinning under `pins` and
    /// serving its control socket at `dir/director.sock`. Text configs are written to
    /// `dir/director.toml`; output is appended to `dir/director.log`.
    pub fn spawn(
        bin: &Path,
        ns: &NetNs,
        config: DirectorConfig,
        dir: &Path,
        pins: &Path,
    ) -> Result<Self> {
        Self::spawn_with_env(bin, ns, config, dir, pins, &[])
    }

    /// [`Director::spawn`] with `env` added to its environment (systemd's
    /// `NOTIFY_SOCKET`, `WATCHDOG_USEC`).
    pub fn spawn_with_env(
        bin: &Path,
        ns: &NetNs,
        config: DirectorConfig,
        dir: &Path,
        pins: &Path,
        env: &[(String, std::ffi::OsString)],
    ) -> Result<Self> {
        let config = match config {
            DirectorConfig::File(path) => path,
            DirectorConfig::Text(text) => {
                let path = dir.join("director.toml");
                std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
                path
            }
        };
        let log = dir.join("director.log");
        let mut cmd = ns.nsenter(bin);
        cmd.args(["run", "--config"])
            .arg(&config)
            .arg("--pin-dir")
            .arg(pins)
            .arg("--socket")
            .arg(dir.join("director.sock"))
            .envs(env.iter().map(|(k, v)| (k, v)));
        let mut out = log_to(&mut cmd, &log)?;
        writeln!(
            out,
            "---- director-tests: director run --config {} ----",
            config.display()
        )?;
        let child = ChildGuard::spawn("director", cmd, STOP_GRACE)?;
        Ok(Self { child, log, config })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Its control socket (for `director status --socket`).
    pub fn socket(&self) -> PathBuf {
        self.log.with_file_name("director.sock")
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Exit status if it has already exited (it should not before being stopped).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait()
    }

    /// SIGTERM, up to [`STOP_GRACE`], then SIGKILL.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        self.child.stop()
    }

    /// SIGKILL by pid (no grace period), then reap.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        self.child.kill()
    }

    /// The last `lines` lines of its output.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Polls [`ready`] (with `bin`) until it succeeds; returns how long that took.
    /// Fails at once if the director exits; `name` names it in errors.
    pub fn wait_ready(&mut self, bin: &Path, name: &str, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let last = match ready(bin, &self.socket()) {
                Ok(()) => return Ok(start.elapsed()),
                Err(e) => e,
            };
            if let Some(status) = self.try_wait() {
                bail!(
                    "{name} exited ({status}); log tail:\n{}",
                    self.log_tail(READY_LOG_LINES)
                );
            }
            if start.elapsed() >= timeout {
                bail!(
                    "{name} not ready within {timeout:?} (last: {last}); log tail:\n{}",
                    self.log_tail(READY_LOG_LINES)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

const READY_LOG_LINES: usize = 30;

/// One `bin ready --socket <socket>`: `Err` with what it says while not ready (or not
/// running).
pub fn ready(bin: &Path, socket: &Path) -> Result<(), String> {
    let out = Command::new(bin)
        .arg("ready")
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run director ready: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Writes a `[sync]` key file at `path`: 32 random bytes, readable by root only (the
/// director refuses a key anyone else can read).
pub fn write_sync_key(path: &Path) -> Result<()> {
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key))
        .context("read /dev/urandom")?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    file.write_all(&key)
        .with_context(|| format!("write {}", path.display()))
}

/// The last `lines` lines of a text file (or why it could not be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
