//! Named network namespaces (`/run/netns/<name>`, as `ip netns` makes them): create,
//! configure through `ip -n` / `ip netns exec`, enter from a thread, delete on drop.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns};

use super::cleanup;

/// Where `ip netns add` bind-mounts a namespace.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Moves the calling thread into namespace `name`. Only this thread changes namespace;
/// sockets it opens afterwards live there.
pub fn enter(name: &str) -> Result<()> {
    let file = File::open(netns_path(name)).with_context(|| format!("open netns {name}"))?;
    setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| format!("setns into {name}"))?;
    Ok(())
}

/// Runs `f` on a new thread inside namespace `name` and returns its result. A panic in
/// `f` resumes on the caller's thread with its original payload.
pub fn run_in<R: Send>(name: &str, f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name(format!("ns:{name}"))
            .spawn_scoped(s, || {
                enter(name).unwrap_or_else(|e| panic!("{e:#}"));
                f()
            })
            .expect("spawn namespace thread");
        handle
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Runs a command to completion; a non-zero exit is an error carrying its stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawn {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An owned named network namespace, deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates namespace `name` with `lo` up. It is registered for signal cleanup before
    /// it exists, so an interrupt during creation cannot leak it.
    pub fn create(name: &str) -> Result<Self> {
        cleanup::track_namespace(name);
        let ns = Self {
            name: name.to_owned(),
        };
        run(Command::new("ip").args(["netns", "add", name]))?;
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        netns_path(&self.name)
    }

    /// `ip -n <ns> args…`
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Feeds `lines` to one `ip -n <ns> -batch -`: one process for many changes.
    pub fn ip_batch(&self, lines: &[String]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut child = Command::new("ip")
            .args(["-n", &self.name, "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn ip -batch")?;
        let mut stdin = child.stdin.take().context("ip -batch stdin")?;
        stdin.write_all(lines.join("\n").as_bytes())?;
        drop(stdin);
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "ip -n {} -batch failed: {}\n{}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim(),
                lines.join("\n")
            );
        }
        Ok(())
    }

    /// A command that runs `program` inside the namespace via `ip netns exec` (which
    /// execs, so the child's pid is the program's pid).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// A command that runs `program` inside the namespace through `nsenter --net`,
    /// which (unlike `ip netns exec`) leaves the host's mounts visible, /sys/fs/bpf
    /// with them; it execs too.
    pub fn nsenter(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path().display()))
            .arg(program);
        cmd
    }

    /// Runs `program args…` inside the namespace to completion.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        run(self.command(program).args(args))
    }

    /// Sets sysctls (`net.ipv4.conf.all.arp_ignore=1`) inside the namespace. Written
    /// through /proc/sys from a thread in the namespace (/proc/sys/net shows the
    /// writer's namespace), so no `sysctl` binary is needed.
    pub fn sysctl(&self, settings: &[&str]) -> Result<()> {
        self.run(|| -> Result<()> {
            for setting in settings {
                let (key, value) = setting
                    .split_once('=')
                    .with_context(|| format!("sysctl {setting:?} is not key=value"))?;
                let path = sysctl_path(key);
                std::fs::write(&path, value)
                    .with_context(|| format!("write {}", path.display()))?;
            }
            Ok(())
        })
        .with_context(|| format!("sysctl in {}", self.name))
    }

    /// Reads a sysctl inside the namespace (trimmed).
    pub fn read_sysctl(&self, key: &str) -> Result<String> {
        let path = sysctl_path(key);
        self.run(|| std::fs::read_to_string(&path))
            .map(|v| v.trim().to_owned())
            .with_context(|| format!("read {} in {}", path.display(), self.name))
    }

    /// Runs `f` on a thread inside this namespace (see [`run_in`]).
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        run_in(&self.name, f)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Unregister first: from here on this guard alone deletes it.
        if cleanup::untrack_namespace(&self.name) {
            delete(&self.name);
        }
    }
}

/// Deletes namespace `name` if it exists; interfaces inside go with it.
pub(crate) fn delete(name: &str) {
    if netns_path(name).exists()
        && let Err(e) = run(Command::new("ip").args(["netns", "del", name]))
    {
        eprintln!("director-tests: could not delete netns {name}: {e:#}");
    }
}

fn sysctl_path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

/// Names of all namespaces in `/run/netns`.
pub fn list() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}
