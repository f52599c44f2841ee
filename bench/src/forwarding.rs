//! Forwarding rate through the netns lab (NAT topology, native XDP on veth).
//!
//! trafgen in the client namespace sends 64-byte UDP frames of many flows (one source
//! port per flow) to the director namespace; a counting XDP sink on every real
//! server's interface counts what arrives and drops it (ARP and TCP pass), so the
//! receivers cost the same in every case. Cases, one after another in one lab:
//! the director (a NAT UDP virtual server), a minimal XDP forwarder (set MACs,
//! redirect: the floor of this topology), plain kernel forwarding (frames addressed
//! to the real servers) and nftables DNAT. Each runs a warm-up (neighbours resolved,
//! flows created), then a measured window of fixed length; trafgen is bounded in
//! count as well and is stopped right after the window.
//!
//! Sender, veths, bridge and receivers all run on the sending CPU, so every figure
//! includes the generator's own cost: compare ratios measured in one run. CPU time per
//! packet is the whole machine's busy time (/proc/stat) over the window divided by
//! the packets delivered.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use director_tests::lab::{Lab, Mode, Role};
use serde::Serialize;

use crate::baseline;
use crate::bpf::Counters;
use crate::frame::{ACK, Frame};
use crate::netlab::{self, Bins, Child, UDP_PORT};
use crate::{Scale, progress};

/// UDP payload that makes a 60-byte frame: 64 bytes on the wire with the FCS.
const PAYLOAD: [u8; 18] = [0; 18];
/// trafgen's packet cap per second of run time: far above what one CPU sends, so
/// the time bound is what stops it; the cap only guarantees that it ends.
const CAP_PPS: u64 = 5_000_000;

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
    pub cases: Vec<FwdCase>,
}

impl Forwarding {
    pub fn case(&self, id: &str) -> Option<&FwdCase> {
        self.cases.iter().find(|c| c.id == id)
    }
}

pub fn run(scale: &Scale, bins: &Bins) -> Result<Forwarding> {
    progress("forwarding: building a NAT lab");
    let mut lab = netlab::build(Mode::Nat, bins)?;
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

    let counters = Counters::create("bench_rx", 1)?;
    let sink = baseline::udp_sink(&counters)?;
    let tcp = Frame::tcp(SocketAddr::new(client_ip, 1024), lab.vip(), ACK)
        .macs(dir_in.mac, client.mac)
        .bytes();
    baseline::check_sink(&sink, &counters, &udp(vip, 0), &tcp)?;
    let _sinks = (1..=lab.real_servers().len())
        .map(|n| sink.attach(lab.ns(Role::Server(n)), "eth0"))
        .collect::<Result<Vec<_>>>()?;
    let run = Runner {
        scale,
        counters: &counters,
    };
    let mut cases = Vec::new();

    progress("forwarding: starting the director");
    netlab::start_director(&mut lab, true)?;
    cases.push(run.measure(
        &lab,
        "director",
        "director (XDP, NAT UDP virtual server)",
        &to_vip,
    )?);
    lab.teardown_director()?;

    let fwd = baseline::forwarder(&rs1.mac, &dir_out.mac, dir_out.ifindex)?;
    baseline::check_forwarder(
        &fwd,
        &rs1.mac,
        &dir_out.mac,
        &udp(vip, 0),
        &arp(&client.mac),
    )?;
    {
        let _attached = fwd.attach(lab.ns(Role::Director), "eth0")?;
        cases.push(run.measure(
            &lab,
            "xdp_forwarder",
            "minimal XDP forwarder (set MACs, redirect)",
            &to_vip,
        )?);
    }

    let dir = lab.ns(Role::Director);
    dir.sysctl(&["net.ipv4.ip_forward=1"])?;
    cases.push(run.measure(
        &lab,
        "kernel",
        "kernel forwarding (to the servers' addresses)",
        &to_servers,
    )?);
    // After plain forwarding: nftables' NAT turns conntrack on in the namespace.
    let nft = nft_dnat(lab.temp_dir(), vip, &servers)?;
    lab.exec(Role::Director, "nft", &["-f", &nft.to_string_lossy()])?;
    cases.push(run.measure(
        &lab,
        "nftables",
        "nftables DNAT (conntrack, round robin)",
        &to_vip,
    )?);
    lab.exec(Role::Director, "nft", &["delete", "table", "ip", NFT_TABLE])?;
    dir.sysctl(&["net.ipv4.ip_forward=0"])?;

    Ok(Forwarding {
        flows,
        frame_bytes: udp(vip, 0).len() + 4,
        warmup_s: scale.fwd_warmup.as_secs_f64(),
        cases,
    })
}

struct Runner<'a> {
    scale: &'a Scale,
    counters: &'a Counters,
}

impl Runner<'_> {
    fn measure(
        &self,
        lab: &Lab,
        id: &'static str,
        label: &'static str,
        conf: &Path,
    ) -> Result<FwdCase> {
        let (warmup, window) = (self.scale.fwd_warmup, self.scale.fwd_time);
        progress(&format!(
            "forwarding: {label}: {:.1} s warm-up, {:.1} s measured",
            warmup.as_secs_f64(),
            window.as_secs_f64()
        ));
        let cap = CAP_PPS * (warmup + window + Duration::from_secs(10)).as_secs();
        let args: Vec<String> = [
            "--dev",
            "eth0",
            "--conf",
            &conf.to_string_lossy(),
            "--cpus",
            "1",
            "--num",
            &cap.to_string(),
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
        trafgen.ensure_running()?;
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
        let still_sending = trafgen.ensure_running();
        let log = trafgen.interrupt()?;
        still_sending
            .with_context(|| format!("{label}: trafgen stopped before the window ended"))?;
        let delivered = c1 - c0;
        ensure!(
            delivered > 0,
            "{label}: no packet reached the real servers in {seconds:.1} s (sent {}); trafgen said:\n{log}",
            tx1 - tx0
        );
        let cpu_busy_s = cpu1.busy_seconds_since(&cpu0);
        let case = FwdCase {
            id,
            label,
            seconds,
            delivered,
            delivered_pps: delivered as f64 / seconds,
            sent_pps: (tx1 - tx0) as f64 / seconds,
            cpu_busy_s,
            cpu_ns_per_packet: cpu_busy_s * 1e9 / delivered as f64,
        };
        progress(&format!(
            "forwarding: {label}: {:.3} Mpps delivered ({:.3} Mpps sent), {:.0} ns CPU per packet",
            case.delivered_pps / 1e6,
            case.sent_pps / 1e6,
            case.cpu_ns_per_packet
        ));
        Ok(case)
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
