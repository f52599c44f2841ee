//! bird2 for the ECMP lab: the directors' configuration, written by one function for
//! the lab and for examples/bird2-director.conf alike (a unit test keeps the example
//! equal to it), the router's, and the running daemon.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::lab::director::log_tail;
use crate::lab::netns::{self, NetNs};
use crate::lab::process::{ChildGuard, log_to};

/// SIGTERM: bird closes its sessions (a BGP Cease), then exits.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// The directors' AS (one for the whole group) and the router's.
pub const DIRECTOR_AS: u32 = 65001;
pub const ROUTER_AS: u32 = 65000;

/// The BFD and BGP timers both sides use.
const TIMERS: &str = "\
    bfd on;
    # Without BFD (or where the peer has none): down after 3 s of silence.
    hold time 3;
    keepalive time 1;
    connect retry time 1;
    # After an error (BFD down included) try again 1 s later, backing off to 10 s
    # while it keeps failing, rather than bird's 60 to 300 s.
    error wait time 1, 10;
";

fn bfd(iface: &str) -> String {
    format!(
        "
# BFD: a dead peer is noticed after 3 missed 100-ms packets (0.3 s).
protocol bfd {{
    interface \"{iface}\" {{
        min rx interval 100 ms;
        min tx interval 100 ms;
        multiplier 3;
    }};
}}
"
    )
}

/// `bird.conf` for a director whose uplink is `iface` with address `own`, its BGP
/// neighbour `router`, exporting the host routes director puts in `table`.
pub fn director_config(own: Ipv4Addr, router: Ipv4Addr, iface: &str, table: u32) -> String {
    format!(
        "\
# bird2 beside director: exports the VIPs director puts in its announce table
# ([director] announce_table = {table}) to the router over eBGP, with BFD.
# Written by director-tests' lab (tests/src/lab/ecmp/bird.rs), which runs exactly
# this beside each director of its ECMP tests; examples/bird2-director.conf is
# director 1's. IPv4 only; for IPv6 VIPs add an `ipv6` kernel protocol and channel
# alike (with an IPv6 address on the uplink for the next hop).
#
# EDIT for your hosts: router id, addresses, interface, AS numbers and table.

log stderr all;
# EDIT: this director's own address.
router id {own};

protocol device {{
}}

# The announce table. director adds a host route (dev lo, proto 221) for each VIP
# it can serve, once it is ready, and removes it when no server of the VIP can take
# connections or on `director teardown`; a director that stops keeps its routes
# (its pinned datapath still forwards). `learn` imports routes bird did not make.
protocol kernel announced {{
    kernel table {table};
    learn;
    ipv4 {{
        import all;
        export none;
    }};
}}
{bfd}
# EDIT: the router's address and AS, this director's address and AS (one AS for the
# whole group, so that the router's routes from every director are equal and merge
# into one multipath route).
protocol bgp uplink {{
    local {own} as {DIRECTOR_AS};
    neighbor {router} as {ROUTER_AS};
{TIMERS}    ipv4 {{
        import none;
        export where proto = \"announced\";
        next hop self;
    }};
}}
",
        bfd = bfd(iface),
    )
}

/// The router's `bird.conf`: a BGP session with each of `directors` on `iface`, the
/// VIPs' routes merged into one multipath kernel route.
pub fn router_config(own: Ipv4Addr, iface: &str, directors: &[Ipv4Addr]) -> String {
    let mut c = format!(
        "\
log stderr all;
router id {own};

protocol device {{
}}

# One multipath route per VIP, a next hop per director announcing it.
protocol kernel {{
    ipv4 {{
        import none;
        export all;
    }};
    merge paths yes limit 16;
}}
{bfd}
template bgp director {{
    local {own} as {ROUTER_AS};
{TIMERS}    ipv4 {{
        import all;
        export none;
    }};
}}
",
        bfd = bfd(iface),
    );
    for (i, d) in directors.iter().enumerate() {
        c += &format!(
            "\nprotocol bgp dir{} from director {{\n    neighbor {d} as {DIRECTOR_AS};\n}}\n",
            i + 1
        );
    }
    c
}

/// A running `bird -f` in a namespace, its files (config, control socket, log) in
/// `dir`.
#[derive(Debug)]
pub struct Bird {
    child: ChildGuard,
    socket: PathBuf,
    log: PathBuf,
}

impl Bird {
    /// Writes `config` to `dir/bird.conf`, has `bird -p` check it, then starts bird in
    /// `ns` in the foreground. Output is appended to `dir/bird.log`.
    pub fn spawn(ns: &NetNs, config: &str, dir: &Path) -> Result<Self> {
        let conf = dir.join("bird.conf");
        std::fs::write(&conf, config).with_context(|| format!("write {}", conf.display()))?;
        netns::run(ns.nsenter("bird").arg("-p").arg("-c").arg(&conf))
            .with_context(|| format!("bird -p rejects {}", conf.display()))?;
        let socket = dir.join("bird.ctl");
        let log = dir.join("bird.log");
        let mut cmd = ns.nsenter("bird");
        cmd.arg("-f")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(dir.join("bird.pid"));
        log_to(&mut cmd, &log)?;
        let child = ChildGuard::spawn("bird", cmd, STOP_GRACE)?;
        Ok(Self { child, socket, log })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// `birdc <args>` on its control socket.
    pub fn birdc(&self, args: &[&str]) -> Result<String> {
        netns::run(Command::new("birdc").arg("-s").arg(&self.socket).args(args))
    }

    /// SIGKILL by pid: no Cease, its peers notice through BFD.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill().map(drop)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// examples/bird2-director.conf is what [`director_config`] writes for the lab's
    /// director 1.
    #[test]
    fn the_example_is_the_lab_config() {
        use crate::lab::ecmp::{ANNOUNCE_TABLE, wiring};
        let want = director_config(wiring::uplink(1), wiring::ROUTER, "eth0", ANNOUNCE_TABLE);
        crate::paths::assert_example("bird2-director.conf", &want);
    }

    #[test]
    fn the_router_has_a_session_per_director() {
        let c = router_config(
            Ipv4Addr::new(10, 31, 0, 1),
            "u0",
            &[Ipv4Addr::new(10, 31, 0, 11), Ipv4Addr::new(10, 31, 0, 12)],
        );
        assert!(c.contains("merge paths yes"), "{c}");
        assert!(
            c.contains("protocol bgp dir2 from director {\n    neighbor 10.31.0.12 as 65001;\n}"),
            "{c}"
        );
        assert!(c.contains("interface \"u0\""), "{c}");
    }
}
