//! keepalived for a director pair: the configuration, written by one function for
//! the lab and for examples/keepalived-{nat,dr}.conf alike (a unit test keeps the
//! examples equal to it), and the running process.
//!
//! Only keepalived's VRRP part runs (`--vrrp`): director does the load balancing,
//! and this kernel has no IPVS anyway. Each director's instance runs in the
//! foreground in that director's namespace, with pid files of its own.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::Side;
use super::wiring::{self, Segment};
use crate::lab::director::log_tail;
use crate::lab::netns::{self, NetNs};
use crate::lab::process::{ChildGuard, log_to};
use crate::lab::topology::Mode;

/// SIGTERM gives up the VRRP addresses (sending priority 0, so the peer takes over
/// at once); this long at most.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The readiness check in the examples: the systemd unit's binary and socket
/// (dist/director.service).
pub const EXAMPLE_READY: &str =
    "/usr/local/sbin/director ready --socket /run/director/director.sock";

/// What differs between the two directors' files.
fn priority(side: Side) -> u8 {
    match side {
        Side::A => 150,
        Side::B => 100,
    }
}

/// `keepalived.conf` for `side` of a `mode` pair, checking readiness with `ready`
/// (a command line).
pub fn config(mode: Mode, side: Side, ready: &str) -> String {
    let segments = wiring::segments(mode);
    let peer = side.other();
    let mut c = String::new();
    let what = match mode {
        Mode::Nat => "a NAT director pair",
        Mode::Dr => "a DR director pair",
    };
    let _ = write!(
        c,
        "\
# keepalived (VRRP only: keepalived --vrrp) for director {me} of {what}.
# Written by director-tests' lab (tests/src/lab/ha/keepalived.rs), which runs
# exactly this in its failover tests; examples/keepalived-{mode}.conf is director A's.
#
# EDIT for your hosts: interface names, addresses and the readiness command.
# Director {other}'s file is the same with router_id director-{other_lc},
# priority {other_prio} and each instance's unicast_src_ip and unicast_peer swapped.

global_defs {{
    router_id director-{me_lc}
    # The readiness script runs as root, and keepalived refuses it if anyone but
    # root could change it (the binary or a directory above it).
    enable_script_security
    script_user root
}}

# Fails until this director can take traffic: its datapath attached, its
# configuration applied and, with [sync], the peer's connection table received.
# While it fails the instances are in FAULT state: a director that is not ready
# never becomes master, and a master whose director stops answering gives up.
vrrp_script director_ready {{
    # EDIT: director's path and its --socket.
    script \"{ready}\"
    interval 1
    timeout 2
    # Not ready until it has said so once.
    init_fail
    rise 1
    # Two failures in a row: one slow answer on a busy host does not move the VIP.
    fall 2
}}
",
        me = side.letter().to_ascii_uppercase(),
        me_lc = side.letter(),
        other = peer.letter().to_ascii_uppercase(),
        other_lc = peer.letter(),
        other_prio = priority(peer),
        mode = mode.name(),
    );
    if segments.len() > 1 {
        c += "
# The VIP and the real servers' gateway move together: a director holding one
# without the other would receive the clients' packets but not the servers'
# replies (or the other way round). If one instance fails, both do.
vrrp_sync_group director {
    group {
";
        for s in segments {
            let _ = writeln!(c, "        {}", s.instance);
        }
        c += "    }\n}\n";
    }
    for s in segments {
        c += &instance(s, side);
    }
    c
}

fn instance(s: &Segment, side: Side) -> String {
    let (me, peer) = s.addresses(side);
    let mut c = format!(
        "
# {role}.
vrrp_instance {name} {{
    # Both directors start as BACKUP; the higher priority becomes master. Director A
    # (150) takes the VIP back from B (100) once it is ready again: preemption, the
    # default. Put `nopreempt` in both directors' instances to leave it where it is.
    state BACKUP
    # EDIT: the interface on this segment.
    interface {iface}
    # The same on both directors, unique among the VRRP routers of the segment.
    virtual_router_id {vrid}
    priority {prio}
    advert_int 1
    # EDIT: this director's own address on the segment, and the other's. Unicast
    # adverts: no multicast needed, and nothing but the peer listens.
    unicast_src_ip {me}
    unicast_peer {{
        {peer}
    }}
    virtual_ipaddress {{
",
        role = capitalized(s.role),
        name = s.instance,
        iface = s.interface,
        vrid = s.virtual_router_id,
        prio = priority(side),
    );
    for (addr, len) in s.virtual_addresses {
        let _ = writeln!(c, "        {addr}/{len} dev {}", s.interface);
    }
    c += "    }
    track_script {
        director_ready
    }
}
";
    c
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// A running `keepalived -n -l -D --vrrp` in a director's namespace; its files
/// (config, pid files, log) in that director's directory.
#[derive(Debug)]
pub struct Keepalived {
    child: ChildGuard,
    log: PathBuf,
}

impl Keepalived {
    /// Writes `config` to `dir/keepalived.conf`, has `keepalived -t` check it inside
    /// `ns` (where its interfaces and script must exist: keepalived starts with a
    /// broken file and merely logs what it skipped), then starts it there under
    /// `nsenter --net`. Output is appended to `dir/keepalived.log`.
    pub fn spawn(ns: &NetNs, config: &str, dir: &Path) -> Result<Self> {
        let conf = dir.join("keepalived.conf");
        std::fs::write(&conf, config).with_context(|| format!("write {}", conf.display()))?;
        netns::run(ns.nsenter("keepalived").args(["-t", "-l", "-f"]).arg(&conf))
            .with_context(|| format!("keepalived -t rejects {}", conf.display()))?;
        let log = dir.join("keepalived.log");
        let mut cmd = ns.nsenter("keepalived");
        cmd.args(["-n", "-l", "-D", "--vrrp", "-f"])
            .arg(&conf)
            .arg("-p")
            .arg(dir.join("keepalived.pid"))
            .arg("-r")
            .arg(dir.join("keepalived-vrrp.pid"))
            .arg("-c")
            .arg(dir.join("keepalived-checkers.pid"));
        log_to(&mut cmd, &log)?;
        let child = ChildGuard::spawn("keepalived", cmd, STOP_GRACE)?;
        Ok(Self { child, log })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The pid of its VRRP process (a child it forks), while it runs.
    pub fn vrrp_pid(&self) -> Option<u32> {
        let file = self.log.with_file_name("keepalived-vrrp.pid");
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// examples/keepalived-*.conf are what [`config`] writes for director A with the
    /// systemd unit's paths: regenerate them with
    /// `DIRECTOR_WRITE_EXAMPLES=1 cargo test -p director-tests keepalived`.
    #[test]
    fn examples_are_the_lab_config() {
        for mode in [Mode::Nat, Mode::Dr] {
            let path = crate::paths::examples_dir().join(format!("keepalived-{mode}.conf"));
            let want = config(mode, Side::A, EXAMPLE_READY);
            if std::env::var_os("DIRECTOR_WRITE_EXAMPLES").is_some() {
                std::fs::write(&path, &want).unwrap();
            }
            let have = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                have,
                want,
                "{} differs from the lab's config: regenerate it (see this test's docs)",
                path.display()
            );
        }
    }

    #[test]
    fn the_two_directors_differ_in_priority_and_unicast_addresses_only() {
        let a = config(Mode::Nat, Side::A, "/bin/true");
        let b = config(Mode::Nat, Side::B, "/bin/true");
        let differ: Vec<(&str, &str)> = a
            .lines()
            .zip(b.lines())
            .filter(|(x, y)| x != y)
            .filter(|(x, _)| !x.trim_start().starts_with('#'))
            .collect();
        assert_eq!(
            differ,
            [
                ("    router_id director-a", "    router_id director-b"),
                ("    priority 150", "    priority 100"),
                (
                    "    unicast_src_ip 198.51.100.3",
                    "    unicast_src_ip 198.51.100.4"
                ),
                ("        198.51.100.4", "        198.51.100.3"),
                ("    priority 150", "    priority 100"),
                ("    unicast_src_ip 10.1.0.2", "    unicast_src_ip 10.1.0.3"),
                ("        10.1.0.3", "        10.1.0.2"),
            ]
        );
        assert!(a.contains("vrrp_sync_group director"));
        let dr = config(Mode::Dr, Side::A, "/bin/true");
        assert!(
            !dr.contains("vrrp_sync_group"),
            "one instance needs no group"
        );
        assert!(dr.contains("        192.0.2.10/32 dev eth0\n"));
    }
}
