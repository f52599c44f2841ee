//! Child processes of a lab: stopped by pid and reaped when their guard drops.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::cleanup;

/// Gives `cmd` no stdin and appends its output to `log` (created if need be), so a
/// restarted process's log keeps its predecessors' runs. Returns the log, open for
/// the caller's own lines.
pub(crate) fn log_to(cmd: &mut Command, log: &Path) -> Result<File> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out.try_clone()?);
    Ok(out)
}

/// A running child. Drop stops it: SIGTERM, up to `grace`, then SIGKILL (straight
/// SIGKILL when `grace` is zero), always followed by a wait.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    grace: Duration,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `cmd`. The child also gets SIGKILL if the spawning thread dies without
    /// dropping the guard (test binary killed), so no lab process outlives its owner.
    pub fn spawn(name: &str, mut cmd: Command, grace: Duration) -> Result<Self> {
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {name}: {cmd:?}"))?;
        cleanup::track_process(child.id(), grace);
        Ok(Self {
            name: name.to_owned(),
            child,
            grace,
            status: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the child has already exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Takes the child from the signal handler's list before it is signalled:
    /// its exit status if it has already exited, `None` if it is ours to
    /// stop, an error if the handler has taken it over (it is exiting anyway).
    fn take_over(&mut self) -> Result<Option<ExitStatus>> {
        if let Some(status) = self.try_wait() {
            cleanup::untrack_process(self.pid());
            return Ok(Some(status));
        }
        if !cleanup::untrack_process(self.pid()) {
            anyhow::bail!("{} is being stopped by the signal handler", self.name);
        }
        Ok(None)
    }

    /// SIGKILL (by pid) and reap, however long the grace period: a crash, not a stop.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.take_over()? {
            return Ok(status);
        }
        self.kill_and_reap()
    }

    /// Waits up to `timeout` for the child to exit on its own; `None` if it is still
    /// running then (it is not stopped: the guard still owns it).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                cleanup::untrack_process(self.pid());
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the child as described on the type and returns how it exited.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.take_over()? {
            return Ok(status);
        }
        if !self.grace.is_zero() {
            let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + self.grace;
            while Instant::now() < deadline {
                if let Some(status) = self.try_wait() {
                    return Ok(status);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill_and_reap()
    }

    /// SIGKILL (by pid), then reap.
    fn kill_and_reap(&mut self) -> Result<ExitStatus> {
        let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGKILL);
        let status = self
            .child
            .wait()
            .with_context(|| format!("wait for {}", self.name))?;
        self.status = Some(status);
        Ok(status)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
