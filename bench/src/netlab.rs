//! What the forwarding and HTTP benchmarks share about the netns lab: building one,
//! the director's configuration for it, interface facts read with `ip -j`, and
//! children (trafgen, wrk, haproxy) run inside its namespaces with a bounded life.
//!
//! Everything stays inside the lab's namespaces; the lab's guards delete them (and stop
//! its processes by pid) on every exit path, and a SIGINT/SIGTERM handler
//! (`install_signal_cleanup`) does the same for an interrupted run.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use director_tests::config::{Config, VirtualServer};
use director_tests::lab::{ChildGuard, DIRECTOR_READY_TIMEOUT, Lab, LabSpec, Mode, NetNs, Role};
use serde::Deserialize;

/// The binaries a lab needs.
#[derive(Clone, Debug)]
pub struct Bins {
    pub director: PathBuf,
    pub server: PathBuf,
}

/// A lab with three real servers (HTTP servers running, director not started).
pub fn build(mode: Mode, bins: &Bins) -> Result<Lab> {
    Lab::build(
        LabSpec::new(mode, &bins.server)
            .servers(3)
            .director_bin(&bins.director),
    )
}

/// UDP port of the forwarding benchmark's virtual server (same on the real servers).
pub const UDP_PORT: u16 = 9000;

/// The director's configuration for `lab`: the HTTP virtual server on the VIP (wrr
/// over every real server, in the lab's mode), plus a UDP one on [`UDP_PORT`] if
/// `udp` (NAT only).
pub fn director_config(lab: &Lab, udp: bool) -> String {
    let mut config = Config::lab(lab.mode())
        .set("conntrack_max", 262_144)
        .virtual_server(VirtualServer::tcp("web", lab.vip()).real_servers(lab.real_servers()));
    if udp {
        let servers = lab
            .real_servers()
            .iter()
            .map(|rs| SocketAddr::from((*rs.ip(), UDP_PORT)));
        config = config.virtual_server(
            VirtualServer::udp("udp", (lab.vip().ip(), UDP_PORT).into()).real_servers(servers),
        );
    }
    config.to_toml()
}

/// Longest wait for a started director to forward (on top of the lab's own
/// [`DIRECTOR_READY_TIMEOUT`]): the verifier takes seconds on a busy machine.
const DIRECTOR_EXTRA_WAIT: Duration = Duration::from_secs(45);

/// Starts the director with [`director_config`] and waits until it forwards.
pub fn start_director(lab: &mut Lab, udp: bool) -> Result<()> {
    let config = director_config(lab, udp);
    if let Err(first) = lab.try_start_director(config) {
        if lab.director().is_none() {
            return Err(first);
        }
        crate::progress(&format!(
            "director not forwarding after {DIRECTOR_READY_TIMEOUT:?}; waiting up to {DIRECTOR_EXTRA_WAIT:?} more"
        ));
        lab.wait_for_vip(DIRECTOR_EXTRA_WAIT)
            .context("the director did not start forwarding")?;
    }
    Ok(())
}

#[derive(Deserialize)]
struct IpLink {
    ifindex: u32,
    address: String,
    #[serde(default)]
    stats64: Option<Stats64>,
}

#[derive(Deserialize)]
struct Stats64 {
    tx: Counts,
}

#[derive(Deserialize)]
struct Counts {
    packets: u64,
}

/// An interface as `ip -j link` shows it.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub tx_packets: u64,
}

pub fn link(ns: &NetNs, ifname: &str) -> Result<Link> {
    let json = ns.ip(&["-s", "-j", "link", "show", "dev", ifname])?;
    let links: Vec<IpLink> =
        serde_json::from_str(&json).with_context(|| format!("parse `ip -j link` of {ifname}"))?;
    let l = links
        .into_iter()
        .next()
        .with_context(|| format!("no link {ifname} in {}", ns.name()))?;
    let tx_packets = l.stats64.map_or(0, |s| s.tx.packets);
    Ok(Link {
        ifindex: l.ifindex,
        mac: parse_mac(&l.address).with_context(|| format!("MAC of {ifname}: {}", l.address))?,
        tx_packets,
    })
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// A program running in a lab namespace, its output in a log file.
pub struct Child {
    pub guard: ChildGuard,
    pub log: PathBuf,
    name: String,
}

impl Child {
    /// Starts `program args…` in `role`'s namespace (through `ip netns exec`, so the
    /// pid is the program's), in its own process group so that [`Child::interrupt`]
    /// reaches any process it forks. The guard stops it by pid when dropped.
    pub fn spawn(
        lab: &Lab,
        role: Role,
        program: &str,
        args: &[String],
        grace: Duration,
    ) -> Result<Child> {
        use std::os::unix::process::CommandExt;
        let name = program.to_owned();
        let log = unique_log(lab.temp_dir(), &name);
        let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let mut cmd = lab.command(role, program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        let guard = ChildGuard::spawn(&name, cmd, grace)?;
        Ok(Child { guard, log, name })
    }

    /// SIGINT to its process group (the way a terminal stops it), then the guard's
    /// stop: SIGTERM, grace, SIGKILL, by pid.
    pub fn interrupt(mut self) -> Result<String> {
        let pid = self.guard.pid() as i32;
        if self.guard.try_wait().is_none() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGINT,
            );
            let deadline = Instant::now() + Duration::from_secs(2);
            while self.guard.try_wait().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.guard.stop();
        Ok(self.output())
    }

    /// Waits until it exits by itself, at most `limit`; then stops it and fails.
    pub fn wait(mut self, limit: Duration) -> Result<String> {
        let deadline = Instant::now() + limit;
        while self.guard.try_wait().is_none() {
            if Instant::now() >= deadline {
                let _ = self.guard.stop();
                bail!(
                    "{} did not finish within {limit:?}; output:\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(self.output())
    }

    /// Fails with its output if it has already exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.guard.try_wait() {
            bail!("{} exited early ({status}):\n{}", self.name, self.output());
        }
        Ok(())
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn unique_log(dir: &Path, name: &str) -> PathBuf {
    (0..)
        .map(|n| dir.join(format!("{name}-{n}.log")))
        .find(|p| !p.exists())
        .unwrap_or_else(|| dir.join(format!("{name}.log")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse() {
        assert_eq!(
            parse_mac("02:00:0a:ff:10:01"),
            Some([2, 0, 0x0a, 0xff, 0x10, 1])
        );
        assert_eq!(parse_mac("02:00"), None);
        assert_eq!(parse_mac("02:00:0a:ff:10:01:07"), None);
        assert_eq!(parse_mac("zz:00:0a:ff:10:01"), None);
    }
}
