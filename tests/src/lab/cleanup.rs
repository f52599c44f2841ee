//! Process-wide record of what the labs of this process own, so that a signal (Ctrl-C in
//! the demo) can tear everything down even though the owning guards never get to drop.
//!
//! Each namespace and child process is owned by exactly one party at a time: its guard
//! removes it from the registry before deleting/killing it, and the signal handler takes
//! whatever is still registered. Nothing is ever found by name pattern except
//! [`sweep_stale`], which only deletes namespaces whose owning process is gone.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::netns;

/// Prefix of every lab namespace name: `dl<pid>-<n>-<role>`.
pub const NAME_PREFIX: &str = "dl";

/// Prefix of every director-pair lab namespace name: `ha-<pid>-<n>-<role>`.
pub const HA_PREFIX: &str = "ha-";

/// Prefix of every ECMP lab namespace name: `ec-<pid>-<n>-<role>`.
pub const ECMP_PREFIX: &str = "ec-";

#[derive(Default)]
struct Registry {
    namespaces: Vec<String>,
    /// pid → grace period between SIGTERM and SIGKILL.
    processes: BTreeMap<i32, Duration>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    namespaces: Vec::new(),
    processes: BTreeMap::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn track_namespace(name: &str) {
    registry().namespaces.push(name.to_owned());
}

/// True if the caller now owns the deletion (the signal handler has not taken it).
pub(crate) fn untrack_namespace(name: &str) -> bool {
    let mut reg = registry();
    let before = reg.namespaces.len();
    reg.namespaces.retain(|n| n != name);
    reg.namespaces.len() != before
}

pub(crate) fn track_process(pid: u32, grace: Duration) {
    registry().processes.insert(pid as i32, grace);
}

/// True if the caller now owns the kill (the signal handler has not taken it).
pub(crate) fn untrack_process(pid: u32) -> bool {
    registry().processes.remove(&(pid as i32)).is_some()
}

/// Stops every registered process (SIGTERM, its grace period, SIGKILL; by pid) and
/// deletes every registered namespace. Keeps the registry locked so no guard races it;
/// meant to be followed by process exit.
fn cleanup_all_locked(reg: &mut Registry) {
    let procs = std::mem::take(&mut reg.processes);
    for (&pid, grace) in &procs {
        let sig = if grace.is_zero() {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        };
        let _ = kill(Pid::from_raw(pid), sig);
    }
    let deadline = Instant::now() + procs.values().copied().max().unwrap_or_default();
    for &pid in procs.keys() {
        reap(Pid::from_raw(pid), deadline);
    }
    for name in std::mem::take(&mut reg.namespaces) {
        netns::delete(&name);
    }
}

/// Waits for `pid` until `deadline`, then SIGKILLs and reaps it.
fn reap(pid: Pid, deadline: Instant) {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(WaitStatus::StillAlive) => {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return;
            }
            _ => return,
        }
    }
}

/// Installs a SIGINT/SIGTERM/SIGHUP handler that tears down every lab of this process
/// and exits with status 130. For binaries (the demo); tests rely on drop guards.
pub fn install_signal_cleanup() -> anyhow::Result<()> {
    ctrlc::set_handler(|| {
        let mut reg = registry();
        eprintln!("\ninterrupted: stopping lab processes and deleting lab namespaces");
        cleanup_all_locked(&mut reg);
        std::process::exit(130);
    })?;
    Ok(())
}

/// The pid encoded in a lab namespace (or pin dir) name `dl<pid>-…`, `ha-<pid>-…` or
/// `ec-<pid>-…`.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix(NAME_PREFIX)
        .or_else(|| name.strip_prefix(HA_PREFIX))
        .or_else(|| name.strip_prefix(ECMP_PREFIX))?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// Deletes lab namespaces left behind by processes that no longer exist (a test binary
/// killed with SIGKILL cannot run its guards). Returns the names it deleted.
pub fn sweep_stale() -> Vec<String> {
    let stale: Vec<String> = netns::list()
        .into_iter()
        .filter(|n| {
            owner_pid(n).is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect();
    for name in &stale {
        netns::delete(name);
    }
    sweep_stale_pins();
    stale
}

/// Pinned datapaths (`/sys/fs/bpf/dl<pid>-<n>`, `/sys/fs/bpf/ha-<pid>-<n>-dira`,
/// `/sys/fs/bpf/ec-<pid>-<n>-dir1`) of
/// labs whose process died: a director leaves its maps pinned when it stops.
fn sweep_stale_pins() {
    let Ok(dir) = std::fs::read_dir("/sys/fs/bpf") else {
        return;
    };
    for entry in dir.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        // The `-` lets a bare `dl<pid>` count too, as it always has.
        let pid = owner_pid(&format!("{name}-"));
        if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_lab_names_only() {
        assert_eq!(owner_pid("dl1234-0-client"), Some(1234));
        assert_eq!(owner_pid("dl1234-12-rs3"), Some(1234));
        assert_eq!(owner_pid("dlx-0-client"), None);
        assert_eq!(owner_pid("blue"), None);
        assert_eq!(owner_pid("dl1234"), None);
        assert_eq!(owner_pid("ha-1234-0-dira"), Some(1234));
        assert_eq!(owner_pid("ha-x-0-dira"), None);
        assert_eq!(owner_pid("hal1234-0-dira"), None);
        assert_eq!(owner_pid("ec-1234-0-dir1"), Some(1234));
        assert_eq!(owner_pid("ec-x-0-router"), None);
    }
}
