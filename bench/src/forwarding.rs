//! Forwarding rate through the netns lab (NAT topology, native XDP on veth).
//!
//! trafgen in the client namespace sends 64-byte UDP frames of many flows (one source
//! port per flow) to the director namespace; a counting XDP sink on every real
//! server's interface counts what arrives and drops it (ARP and TCP pass), so the
//! receivers cost the same in every case. The cases take turns in rounds, so that a
//! slow spell of this shared machine hits them alike: the director's XDP program (a
//! NAT UDP virtual server, its maps filled by the control plane's own code with the
//! lab's next hops), a minimal XDP forwarder (set MACs, redirect: the floor of this
//! topology), plain kernel forwarding (frames addressed to the real servers) and
//! nftables DNAT. Each turn runs a warm-up (neighbours resolved, flows created), then
//! a measured window of fixed length; trafgen is bounded in count as well and is
//! stopped right after the window.
//!
//! Sender, veths, bridge and receivers all run on the sending CPU, so every figure
//! includes the generator's own cost: compare ratios measured in one run. CPU time per
//! packet is the whole machine's busy time (/proc/stat) over the windows divided by
//! the packets delivered.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use director_tests::lab::{Lab, Mode, Role};
use serde::Serialize;

use crate::baseline;
use crate::bpf::{self, Counters};
use crate::maps;
use crate::netlab::{self, Bins, Child, UDP_PORT};
use crate::{Scale, progress};
use director_common::entries::Hop;
use director_tests::packet::{ACK, Frame};

/// UDP payload that makes a 60-byte frame: 64 bytes on the wire with the FCS.
const PAYLOAD: [u8; 18] = [0; 18];
/// trafgen's packet cap per second of run time: far above what one CPU sends, so
/// the time bound is what stops it; the cap only guarantees that it ends.
const CAP_PPS: u64 = 5_000_000;
/// trafgen's TX ring: a few dozen frames per flush, well inside the default send
/// buffer of a packet socket.
const TX_RING: &str = "128KiB";
/// Tries per case when trafgen quits on its own.
const ATTEMPTS: usize = 3;

#[derive(Clone, Debug, Serialize)]
pub struct FwdCase {
    pub id: &'static str,
    pub label: &'static str,
    pub seconds: f64,
    pub delivered: u64,
    pub delivered_pps: f64,
    /// Frames the client's interface sent in the same window.
    pub sent_pps: f64,
    /// Machine-wide busy CPU time over the window, in CPU-seconds.
    pub cpu_busy_s: f64,
    pub cpu_ns_per_packet: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Forwarding {
    pub flows: usize,
    pub frame_bytes: usize,
    pub warmup_s: f64,
    /// Turns each case took (its windows add up to the measuring time).
    pub rounds: u32,
    pub cases: Vec<FwdCase>,
}

impl Forwarding {
    pub fn case(&self, id: &str) -> Option<&FwdCase> {
        self.cases.iter().find(|c| c.id == id)
    }
}

/// How a case forwards, and what it sets up in the director namespace for its turn.
enum Way<'a> {
    /// An XDP program attached to the director's client-side interface.
    Xdp(BorrowedFd<'a>, &'a str),
    /// The kernel's IPv4 forwarding.
    Kernel,
    /// The kernel's forwarding with an nftables DNAT ruleset (this file).
    Nft(&'a Path),
}

/// What a turn set up, undone by [`Installed::remove`].
enum Installed {
    Link(OwnedFd),
    Forwarding { nft: bool },
}

impl Way<'_> {
    fn install(&self, lab: &Lab) -> Result<Installed> {
        let dir = lab.ns(Role::Director);
        Ok(match self {
            Way::Xdp(prog, name) => Installed::Link(bpf::attach(*prog, name, dir, "eth0")?),
            Way::Kernel => {
                dir.sysctl(&["net.ipv4.ip_forward=1"])?;
                Installed::Forwarding { nft: false }
            }
            Way::Nft(rules) => {
                dir.sysctl(&["net.ipv4.ip_forward=1"])?;
                lab.exec(Role::Director, "nft", &["-f", &rules.to_string_lossy()])?;
                Installed::Forwarding { nft: true }
            }
        })
    }
}

impl Installed {
    fn remove(self, lab: &Lab) -> Result<()> {
        match self {
            Installed::Link(link) => drop(link),
            Installed::Forwarding { nft } => {
                if nft {
                    lab.exec(Role::Director, "nft", &["delete", "table", "ip", NFT_TABLE])?;
                }
                lab.ns(Role::Director).sysctl(&["net.ipv4.ip_forward=0"])?;
            }
        }
        Ok(())
    }
}

struct Case<'a> {
    id: &'static str,
    label: &'static str,
    way: Way<'a>,
    /// The trafgen configuration it is fed.
    frames: &'a Path,
}

/// A case's measured windows, added up.
#[derive(Default)]
struct Totals {
    seconds: f64,
    delivered: u64,
    sent: u64,
    cpu_busy_s: f64,
}

impl Totals {
    fn result(&self, case: &Case<'_>) -> FwdCase {
        FwdCase {
            id: case.id,
            label: case.label,
            seconds: self.seconds,
            delivered: self.delivered,
            delivered_pps: self.delivered as f64 / self.seconds,
            sent_pps: self.sent as f64 / self.seconds,
            cpu_busy_s: self.cpu_busy_s,
            cpu_ns_per_packet: self.cpu_busy_s * 1e9 / self.delivered.max(1) as f64,
        }
    }
}

/// Turns each case gets: one per second of measuring time, at most five.
fn rounds(scale: &Scale) -> u32 {
    (scale.fwd_time.as_secs() as u32).clamp(1, 5)
}

pub fn run(scale: &Scale, bins: &Bins) -> Result<Forwarding> {
    progress("forwarding: building a NAT lab");
    let lab = netlab::build(Mode::Nat, bins)?;
    let client = netlab::link(lab.ns(Role::Client), "eth0")?;
    let dir_in = netlab::link(lab.ns(Role::Director), "eth0")?;
    let dir_out = netlab::link(lab.ns(Role::Director), "eth1")?;
    let rs1 = netlab::link(lab.ns(Role::Server(1)), "eth0")?;
    let client_ip = IpAddr::V4(lab.client_addr());
    let udp = |dst: SocketAddr, k: usize| {
        let src = SocketAddr::new(client_ip, 1024 + k as u16);
        Frame::udp(src, dst, &PAYLOAD)
            .macs(dir_in.mac, client.mac)
            .bytes()
    };
    let vip = SocketAddr::new(lab.vip().ip(), UDP_PORT);
    let servers: Vec<SocketAddr> = lab
        .real_servers()
        .iter()
        .map(|rs| SocketAddr::new(IpAddr::V4(*rs.ip()), UDP_PORT))
        .collect();
    let flows = scale.flows;
    let to_vip = trafgen_config(lab.temp_dir(), "to-vip", (0..flows).map(|k| udp(vip, k)))?;
    let to_servers = trafgen_config(
        lab.temp_dir(),
        "to-servers",
        (0..flows).map(|k| udp(servers[k % servers.len()], k)),
    )?;
    let nft = nft_dnat(lab.temp_dir(), vip, &servers)?;

    let counters = Counters::create("bench_rx", 1)?;
    let sink = baseline::udp_sink(&counters)?;
    let tcp = Frame::tcp(SocketAddr::new(client_ip, 1024), lab.vip(), ACK)
        .macs(dir_in.mac, client.mac)
        .bytes();
    baseline::check_sink(&sink, &counters, &udp(vip, 0), &tcp)?;
    let _sinks = (1..=lab.real_servers().len())
        .map(|n| sink.attach(lab.ns(Role::Server(n)), "eth0"))
        .collect::<Result<Vec<_>>>()?;

    progress("forwarding: loading the director's program, next hops from the lab");
    let mut director = maps::load(&netlab::director_config(&lab, true), None, |_, address| {
        let n = lab
            .real_servers()
            .iter()
            .position(|rs| IpAddr::V4(*rs.ip()) == address.ip())
            .with_context(|| format!("{address} is not a real server of the lab"))?;
        Ok(Hop {
            ifindex: dir_out.ifindex,
            dst_mac: netlab::link(lab.ns(Role::Server(n + 1)), "eth0")?.mac,
            src_mac: dir_out.mac,
        })
    })?;
    let fwd = baseline::forwarder(&rs1.mac, &dir_out.mac, dir_out.ifindex)?;
    baseline::check_forwarder(
        &fwd,
        &rs1.mac,
        &dir_out.mac,
        &udp(vip, 0),
        &arp(&client.mac),
    )?;
    let cases = [
        Case {
            id: "director",
            label: "director (XDP, NAT UDP virtual server)",
            way: Way::Xdp(director.maps_mut().program()?.fd()?.as_fd(), "director"),
            frames: &to_vip,
        },
        Case {
            id: "xdp_forwarder",
            label: "minimal XDP forwarder (set MACs, redirect)",
            way: Way::Xdp(fwd.fd(), fwd.name()),
            frames: &to_vip,
        },
        Case {
            id: "kernel",
            label: "kernel forwarding (to the servers' addresses)",
            way: Way::Kernel,
            frames: &to_servers,
        },
        Case {
            id: "nftables",
            label: "nftables DNAT (conntrack, round robin)",
            way: Way::Nft(&nft),
            frames: &to_vip,
        },
    ];

    let run = Runner {
        scale,
        counters: &counters,
    };
    let rounds = rounds(scale);
    let window = scale.fwd_time / rounds;
    let mut totals: Vec<Totals> = cases.iter().map(|_| Totals::default()).collect();
    for round in 1..=rounds {
        for (case, total) in cases.iter().zip(&mut totals) {
            progress(&format!(
                "forwarding: round {round}/{rounds}: {}: {:.1} s warm-up, {:.1} s measured",
                case.label,
                scale.fwd_warmup.as_secs_f64(),
                window.as_secs_f64()
            ));
            let installed = case.way.install(&lab)?;
            run.measure(&lab, case.label, case.frames, window, total)?;
            installed.remove(&lab)?;
        }
    }
    let cases: Vec<FwdCase> = cases
        .iter()
        .zip(&totals)
        .map(|(c, t)| t.result(c))
        .collect();
    for c in &cases {
        progress(&format!(
            "forwarding: {}: {:.3} Mpps delivered ({:.3} Mpps sent), {:.0} ns CPU per packet",
            c.label,
            c.delivered_pps / 1e6,
            c.sent_pps / 1e6,
            c.cpu_ns_per_packet
        ));
    }
    drop(director);
    Ok(Forwarding {
        flows,
        frame_bytes: udp(vip, 0).len() + 4,
        warmup_s: scale.fwd_warmup.as_secs_f64(),
        rounds,
        cases,
    })
}

struct Runner<'a> {
    scale: &'a Scale,
    counters: &'a Counters,
}

/// What one attempt at a window came to.
enum Attempt {
    Measured,
    /// trafgen quit on its own (it gives up on a transient send error): try again.
    SenderQuit(String),
}

impl Runner<'_> {
    /// One warm-up and `window` of trafgen sending `frames`, added to `into`; retried
    /// when trafgen quits on its own.
    fn measure(
        &self,
        lab: &Lab,
        label: &str,
        frames: &Path,
        window: Duration,
        into: &mut Totals,
    ) -> Result<()> {
        let mut why = String::new();
        for attempt in 1..=ATTEMPTS {
            match self.attempt(lab, label, frames, window, into)? {
                Attempt::Measured => return Ok(()),
                Attempt::SenderQuit(output) => {
                    progress(&format!(
                        "forwarding: {label}: trafgen quit early (attempt {attempt} of {ATTEMPTS})"
                    ));
                    why = output;
                }
            }
        }
        bail!("{label}: trafgen quit early in each of {ATTEMPTS} attempts; last output:\n{why}")
    }

    fn attempt(
        &self,
        lab: &Lab,
        label: &str,
        frames: &Path,
        window: Duration,
        into: &mut Totals,
    ) -> Result<Attempt> {
        let warmup = self.scale.fwd_warmup;
        let cap = CAP_PPS * (warmup + window + Duration::from_secs(10)).as_secs();
        let args: Vec<String> = [
            "--dev",
            "eth0",
            "--conf",
            &frames.to_string_lossy(),
            "--cpus",
            "1",
            "--num",
            &cap.to_string(),
            // A small TX ring: trafgen gives up (EAGAIN) when one flush of a large ring
            // outruns the socket's send buffer, whose limits are the host's.
            "--ring-size",
            TX_RING,
            // Leave the host's socket memory limits and IRQ affinities alone.
            "--no-sock-mem",
            "--notouch-irq",
            "--no-cpu-stats",
        ]
        .map(str::to_owned)
        .to_vec();
        let mut trafgen =
            Child::spawn(lab, Role::Client, "trafgen", &args, Duration::from_secs(2))?;
        std::thread::sleep(warmup);
        if trafgen.ensure_running().is_err() {
            return Ok(Attempt::SenderQuit(trafgen.interrupt()?));
        }
        let client = lab.ns(Role::Client);
        let (c0, tx0, cpu0) = (
            self.counters.sum(0)?,
            netlab::link(client, "eth0")?.tx_packets,
            CpuTimes::read()?,
        );
        let t0 = Instant::now();
        std::thread::sleep(window);
        let (c1, tx1, cpu1) = (
            self.counters.sum(0)?,
            netlab::link(client, "eth0")?.tx_packets,
            CpuTimes::read()?,
        );
        let seconds = t0.elapsed().as_secs_f64();
        let quit = trafgen.ensure_running().is_err();
        let log = trafgen.interrupt()?;
        if quit {
            return Ok(Attempt::SenderQuit(log));
        }
        let delivered = c1 - c0;
        ensure!(
            delivered > 0,
            "{label}: no packet reached the real servers in {seconds:.1} s (sent {}); trafgen said:\n{log}",
            tx1 - tx0
        );
        into.seconds += seconds;
        into.delivered += delivered;
        into.sent += tx1 - tx0;
        into.cpu_busy_s += cpu1.busy_seconds_since(&cpu0);
        Ok(Attempt::Measured)
    }
}

/// A trafgen configuration: one `{ bytes }` block per frame, sent round robin.
fn trafgen_config(
    dir: &Path,
    name: &str,
    frames: impl Iterator<Item = Vec<u8>>,
) -> Result<PathBuf> {
    let mut text = String::new();
    for f in frames {
        let bytes: Vec<String> = f.iter().map(|b| format!("0x{b:02x}")).collect();
        text += &format!("{{ {} }}\n", bytes.join(", "));
    }
    let path = dir.join(format!("trafgen-{name}.cfg"));
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

const NFT_TABLE: &str = "director_bench";

/// DNAT of `vip` to `servers` in turn (per new conntrack entry), port unchanged.
fn nft_dnat(dir: &Path, vip: SocketAddr, servers: &[SocketAddr]) -> Result<PathBuf> {
    let map: Vec<String> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{i} : {}", s.ip()))
        .collect();
    let text = format!(
        "table ip {NFT_TABLE} {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    ip daddr {} udp dport {} dnat to numgen inc mod {} map {{ {} }}\n  }}\n}}\n",
        vip.ip(),
        vip.port(),
        servers.len(),
        map.join(", ")
    );
    let path = dir.join("dnat.nft");
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// An ARP request: what the forwarder must leave alone.
fn arp(src: &[u8; 6]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(src);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(src);
    f.resize(60, 0);
    f
}

/// The first line of /proc/stat, in clock ticks.
struct CpuTimes {
    busy: u64,
}

impl CpuTimes {
    fn read() -> Result<CpuTimes> {
        let text = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
        parse_busy(&text)
            .map(|busy| CpuTimes { busy })
            .context("no `cpu` line in /proc/stat")
    }

    fn busy_seconds_since(&self, earlier: &CpuTimes) -> f64 {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        self.busy.saturating_sub(earlier.busy) as f64 / hz
    }
}

/// user + nice + system + irq + softirq + steal (not idle, not iowait).
fn parse_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    Some(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_leaves_out_idle_and_iowait() {
        let stat = "cpu  10 1 5 1000 7 2 3 4 0 0\ncpu0 5 0 2 500 3 1 1 2 0 0\n";
        assert_eq!(parse_busy(stat), Some(10 + 1 + 5 + 2 + 3 + 4));
        assert_eq!(parse_busy("intr 1 2 3\n"), None);
    }

    #[test]
    fn trafgen_config_has_one_block_per_frame() {
        let dir = std::env::temp_dir().join(format!("bench-trafgen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = trafgen_config(&dir, "t", [vec![1u8, 0xab], vec![2]].into_iter())
            .unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text, "{ 0x01, 0xab }\n{ 0x02 }\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
