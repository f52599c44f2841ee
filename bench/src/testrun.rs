//! Per-packet cost of the XDP program through `BPF_PROG_TEST_RUN`.
//!
//! The director rewrites packets, and with `repeat > 1` the kernel would run it again
//! on its own output. So every figure here is the average of many `repeat = 1` calls,
//! each on a fresh copy of its frame (the kernel copies `data_in` in on every call),
//! and the trivial XDP_PASS program measured the same way, in the same block, gives
//! the fixed cost of a call. Net cost = measured − that overhead. Idempotent baselines
//! are also measured with a large `repeat`, for reference.
//!
//! One program per connection-table size, its table prefilled with that many
//! connections (spread over NAT TCP, DR TCP, UDP and IPv6 virtual servers); the calls
//! of every case run in rounds that visit every size, so the machine's slow spells
//! hit all sizes alike. "Established" cases pick a random prefilled flow per call, so
//! a large table costs what its cache misses cost; `one flow` repeats a single hot
//! flow. New-flow cases remove the connections they created after each round.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use director::{
    apply::{ConnId, Reconciler, SyncedConn},
    config::Protocol,
    maps::Table,
};
use director_common::{
    abi::FlowKey,
    entries::{Hop, socket_addr},
    tcp::State,
};
use serde::Serialize;

use crate::baseline;
use crate::bpf::{self, Program, XDP_PASS, XDP_REDIRECT, XDP_TX};
use crate::maps;
use crate::profile::{self, Profile};
use crate::stats::{SplitMix, Summary};
use crate::{Scale, progress};
use director_tests::config::{Config, VirtualServer};
use director_tests::lab::Mode;
use director_tests::packet::{ACK, Frame, SYN, TCP, UDP};

use director_tests::packet::fixture::{
    CLIENT_MAC, DIR_CLIENT_SIDE_MAC, DIR_SERVER_SIDE_MAC, LO, OTHER_IF, rs_mac,
};

/// Virtual servers of the benchmark configuration, by vip id (config order).
const VS_NAT: u32 = 0;
const VS_DR: u32 = 1;
const VS_UDP: u32 = 2;
const VS_V6: u32 = 3;
/// Classes of prefilled flows: one per virtual server above.
const PREFILL_CLASSES: [u32; 4] = [VS_NAT, VS_DR, VS_UDP, VS_V6];
/// Schedulers measured for new connections, each with its own NAT virtual server
/// (vip id 4 + position).
pub const SCHEDULERS: [&str; 6] = ["rr", "wrr", "lc", "wlc", "sh", "mh"];

fn vip(vs: u32) -> SocketAddr {
    match vs {
        VS_NAT => sa("192.0.2.10:80"),
        VS_DR => sa("192.0.2.11:80"),
        VS_UDP => sa("192.0.2.12:53"),
        VS_V6 => sa("[2001:db8:10::10]:80"),
        n => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 16 + n as u8)), 80),
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("bench address {s}: {e}"))
}

fn config_text() -> String {
    let v4 = |port: u16| [11, 12, 13].map(|h| format!("10.1.0.{h}:{port}"));
    let nat = |name: &str, vs: u32| VirtualServer::tcp(name, vip(vs)).forward(Mode::Nat);
    let mut config = Config::new(&["eth0"])
        .virtual_server(nat("nat", VS_NAT).real_servers(v4(8080)))
        .virtual_server(
            VirtualServer::tcp("dr", vip(VS_DR))
                .forward(Mode::Dr)
                .real_servers(v4(80)),
        )
        .virtual_server(
            VirtualServer::udp("udp", vip(VS_UDP))
                .forward(Mode::Nat)
                .real_servers(v4(5353)),
        )
        .virtual_server(
            nat("v6", VS_V6).real_servers([11, 12, 13].map(|h| format!("[2001:db8:1::{h}]:8080"))),
        );
    // Servers of their own (a port each): a server shared by several NAT
    // virtual servers would take the reply-entry path (see `NatServer`).
    for (i, s) in SCHEDULERS.iter().enumerate() {
        config = config.virtual_server(
            nat(&format!("new-{s}"), 4 + i as u32)
                .scheduler(s)
                .real_servers(v4(8100 + i as u16)),
        );
    }
    config.to_toml()
}

/// Prefilled flow `i`: its class (virtual server) and client address.
fn prefilled_client(i: usize) -> (u32, SocketAddr) {
    let class = PREFILL_CLASSES[i % PREFILL_CLASSES.len()];
    let port = 10_000 + (i % 50_000) as u16;
    let ip = if class == VS_V6 {
        IpAddr::V6(Ipv6Addr::from(
            u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 0)) + i as u128,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::from(
            u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i as u32,
        ))
    };
    (class, SocketAddr::new(ip, port))
}

/// Client `k` of the new-connection cases (never prefilled: 198.18.0.0/15).
fn new_client(k: usize) -> SocketAddr {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + k as u32);
    SocketAddr::new(IpAddr::V4(ip), 40_000 + (k % 20_000) as u16)
}

fn flow_key(src: SocketAddr, dst: SocketAddr, proto: u8) -> FlowKey {
    FlowKey::client_side(src, dst, proto)
}

fn protocol(proto: u8) -> Protocol {
    if proto == UDP {
        Protocol::Udp
    } else {
        Protocol::Tcp
    }
}

/// A loaded director program with the benchmark configuration and a prefilled table.
struct Bench {
    r: Reconciler,
    /// Each virtual server's real servers: backend id and address.
    by_vs: Vec<Vec<(u32, SocketAddr)>>,
    prefilled: usize,
}

impl Bench {
    fn load(conntrack_max: u32) -> Result<Bench> {
        let r = maps::load(&config_text(), Some(conntrack_max), |id, _| {
            Ok(Hop {
                ifindex: OTHER_IF,
                dst_mac: rs_mac(id),
                src_mac: DIR_SERVER_SIDE_MAC,
            })
        })?;
        let by_vs = r
            .model()
            .vss
            .iter()
            .map(|vs| {
                vs.servers
                    .iter()
                    .map(|rs| (rs.id, rs.cfg.address))
                    .collect()
            })
            .collect();
        Ok(Bench {
            r,
            by_vs,
            prefilled: 0,
        })
    }

    fn proto(&self, vs: u32) -> u8 {
        if vs == VS_UDP { UDP } else { TCP }
    }

    /// Real server of prefilled flow `i` (its class's servers in turn).
    fn prefilled_backend(&self, i: usize) -> (u32, SocketAddr) {
        let (class, _) = prefilled_client(i);
        let mine = &self.by_vs[class as usize];
        mine[(i / PREFILL_CLASSES.len()) % mine.len()]
    }

    /// Installs `n` established connections (and their NAT reply entries where
    /// the datapath would record one) through state sync's path.
    fn prefill(&mut self, n: usize) -> Result<()> {
        let client_side = Hop {
            ifindex: LO,
            dst_mac: CLIENT_MAC,
            src_mac: DIR_CLIENT_SIDE_MAC,
        };
        for i in 0..n {
            let (class, client) = prefilled_client(i);
            let proto = self.proto(class);
            let conn = SyncedConn {
                id: ConnId {
                    protocol: protocol(proto),
                    client,
                    virtual_server: vip(class),
                },
                real_server: self.prefilled_backend(i).1,
                state: if proto == UDP {
                    State::Udp
                } else {
                    State::Established
                },
                idle: Duration::ZERO,
            };
            self.r
                .install_conn(&conn, &client_side)
                .with_context(|| format!("prefilling connection {i} of {n}"))?;
        }
        self.prefilled = n;
        Ok(())
    }

    /// Removes connections a new-flow case created, with their NAT reply entries, so
    /// that every case of a block sees the table at its fill.
    fn forget(&mut self, keys: &[FlowKey]) {
        for key in keys {
            let id = ConnId {
                protocol: protocol(key.proto),
                client: socket_addr(&key.src, key.family, key.sport),
                virtual_server: socket_addr(&key.dst, key.family, key.dport),
            };
            for t in Table::BOTH {
                self.r.remove_conn(t, &id);
            }
        }
    }

    /// `count` random prefilled flows of `class`.
    fn random_flows(&self, class: u32, count: usize, rng: &mut SplitMix) -> Vec<usize> {
        (0..count)
            .map(|_| random_prefilled(class, self.prefilled, rng))
            .collect()
    }
}

/// A random flow of `class` among the first `prefilled` flows.
fn random_prefilled(class: u32, prefilled: usize, rng: &mut SplitMix) -> usize {
    let k = PREFILL_CLASSES.len();
    let pos = PREFILL_CLASSES
        .iter()
        .position(|&c| c == class)
        .unwrap_or(0);
    let in_class = (prefilled + k - 1 - pos) / k;
    pos + k * rng.below(in_class.max(1))
}

/// Client -> VIP frame of a prefilled flow.
fn inbound_frame(i: usize, flags: u8) -> Vec<u8> {
    let (class, client) = prefilled_client(i);
    let f = if class == VS_UDP {
        Frame::udp(client, vip(class), &[0; 18])
    } else {
        Frame::tcp(client, vip(class), flags)
    };
    f.macs(DIR_CLIENT_SIDE_MAC, CLIENT_MAC).bytes()
}

/// One benchmark case: frames cycled through, the action each must get.
struct Case {
    id: &'static str,
    label: String,
    expect: u32,
    /// Cycled through; a new-connection case has one frame per call.
    frames: Vec<Vec<u8>>,
    calls: usize,
    /// Connections the case creates, removed after it (see [`Bench::forget`]).
    creates: Vec<FlowKey>,
}

fn cases(b: &Bench, scale: &Scale) -> Vec<Case> {
    let mut rng = SplitMix::new(0x5eed);
    let n = scale.calls;
    let case = |id, label: &str, expect, frames: Vec<Vec<u8>>, calls| Case {
        id,
        label: label.to_owned(),
        expect,
        frames,
        calls,
        creates: Vec::new(),
    };
    let inbound = |flows: Vec<usize>| -> Vec<Vec<u8>> {
        flows.into_iter().map(|i| inbound_frame(i, ACK)).collect()
    };
    let client = |f: Frame| f.macs(DIR_CLIENT_SIDE_MAC, CLIENT_MAC).bytes();
    let mut all = vec![
        case(
            "est_nat_tcp",
            "established TCP, NAT",
            XDP_REDIRECT,
            inbound(b.random_flows(VS_NAT, n, &mut rng)),
            n,
        ),
        case(
            "est_nat_tcp_one_flow",
            "established TCP, NAT, one hot flow",
            XDP_REDIRECT,
            vec![inbound_frame(0, ACK)],
            n,
        ),
        case(
            "est_dr_tcp",
            "established TCP, DR",
            XDP_REDIRECT,
            inbound(b.random_flows(VS_DR, n, &mut rng)),
            n,
        ),
        case(
            "reply_nat_tcp",
            "reply TCP, NAT (server to client)",
            XDP_TX,
            b.random_flows(VS_NAT, n, &mut rng)
                .into_iter()
                .map(|i| {
                    let (id, address) = b.prefilled_backend(i);
                    Frame::tcp(address, prefilled_client(i).1, ACK)
                        .macs(DIR_SERVER_SIDE_MAC, rs_mac(id))
                        .bytes()
                })
                .collect(),
            n,
        ),
        case(
            "est_udp",
            "established UDP, NAT",
            XDP_REDIRECT,
            inbound(b.random_flows(VS_UDP, n, &mut rng)),
            n,
        ),
        case(
            "est_ipv6_tcp",
            "established IPv6 TCP, NAT",
            XDP_REDIRECT,
            inbound(b.random_flows(VS_V6, n, &mut rng)),
            n,
        ),
    ];
    // New flows: one distinct client per call, so every call schedules.
    let fresh = scale.new_conns;
    let creating = |c: Case, to: SocketAddr, proto| Case {
        creates: (0..fresh)
            .map(|k| flow_key(new_client(k), to, proto))
            .collect(),
        ..c
    };
    for (s, sched) in SCHEDULERS.iter().enumerate() {
        let to = vip(4 + s as u32);
        all.push(creating(
            case(
                new_case_id(sched),
                &format!("new TCP connection (SYN), {sched}"),
                XDP_REDIRECT,
                (0..fresh)
                    .map(|k| client(Frame::tcp(new_client(k), to, SYN)))
                    .collect(),
                fresh,
            ),
            to,
            TCP,
        ));
    }
    all.push(creating(
        case(
            "new_udp_wrr",
            "new UDP flow, wrr",
            XDP_REDIRECT,
            (0..fresh)
                .map(|k| client(Frame::udp(new_client(k), vip(VS_UDP), &[0; 18])))
                .collect(),
            fresh,
        ),
        vip(VS_UDP),
        UDP,
    ));
    all.push(case(
        "non_vip",
        "not for a virtual server (passes)",
        XDP_PASS,
        vec![client(Frame::tcp(
            sa("198.51.100.2:40000"),
            sa("192.0.2.99:80"),
            ACK,
        ))],
        n,
    ));
    all
}

pub fn new_case_id(sched: &str) -> &'static str {
    match sched {
        "rr" => "new_tcp_rr",
        "wrr" => "new_tcp_wrr",
        "lc" => "new_tcp_lc",
        "wlc" => "new_tcp_wlc",
        "sh" => "new_tcp_sh",
        _ => "new_tcp_mh",
    }
}

/// A call slower than this many medians of its series was interrupted (an IRQ, a
/// softirq run on its way out): dropped with its pair, and counted.
const OUTLIER_MEDIANS: f64 = 10.0;

/// A case's calls and the XDP_PASS calls interleaved with them.
struct Paired {
    measured: Summary,
    overhead: Summary,
    discarded: usize,
}

/// Kernel-reported durations of a case's calls and of the XDP_PASS call before each.
#[derive(Default)]
struct Samples {
    ns: Vec<f64>,
    base: Vec<f64>,
}

impl Samples {
    /// Leaves out interrupted pairs (see [`OUTLIER_MEDIANS`]) and summarises.
    fn paired(self) -> Paired {
        let (limit, limit_base) = (
            Summary::of(&self.ns).p50 * OUTLIER_MEDIANS,
            Summary::of(&self.base).p50 * OUTLIER_MEDIANS,
        );
        let total = self.ns.len();
        let (ns, base): (Vec<f64>, Vec<f64>) = self
            .ns
            .into_iter()
            .zip(self.base)
            .filter(|&(x, b)| x <= limit && b <= limit_base)
            .unzip();
        Paired {
            measured: Summary::of(&ns),
            overhead: Summary::of(&base),
            discarded: total - ns.len(),
        }
    }
}

/// The fixed-cost program and the frame it runs on, interleaved with every case so
/// that drift (frequency, other load) hits both series alike.
struct Reference<'a> {
    pass: &'a Program,
    frame: &'a [u8],
}

impl Reference<'_> {
    /// Pairs of `repeat = 1` runs for `frames[range]` (indices taken modulo the
    /// length): XDP_PASS, then `prog` on the frame. Every run of `prog` must return
    /// `expect`.
    fn time(
        &self,
        prog: std::os::fd::BorrowedFd<'_>,
        what: &str,
        frames: &[Vec<u8>],
        range: std::ops::Range<usize>,
        expect: u32,
        into: &mut Samples,
    ) -> Result<()> {
        let mut out = vec![0u8; 2048];
        for i in range {
            into.base.push(f64::from(
                bpf::test_run(self.pass.fd(), self.frame, &mut out, 1)?.duration_ns,
            ));
            let run = bpf::test_run(prog, &frames[i % frames.len()], &mut out, 1)?;
            if run.retval != expect {
                bail!(
                    "{what}: call {i} returned XDP action {} instead of {expect}: the benchmark setup is wrong",
                    run.retval
                );
            }
            into.ns.push(f64::from(run.duration_ns));
        }
        Ok(())
    }
}

/// Net cost of one LRU insert: [`baseline::lru_insert`] on the distinct SYN frames of
/// a new-connection case, into a map of layout `kind` with room for all of them.
fn time_lru_insert(
    reference: &Reference<'_>,
    cases: &[Case],
    flows: usize,
    kind: bpf::Lru,
) -> Result<f64> {
    let syns = cases
        .iter()
        .find(|c| c.id == new_case_id("wrr"))
        .context("no new-connection case")?;
    let map = bpf::lru_hash(
        "bench_lru",
        baseline::LRU_KEY,
        baseline::LRU_KEY,
        flows as u32 + 1024,
        kind,
    )?;
    let prog = baseline::lru_insert(&map)?;
    net_ns(
        reference,
        &prog,
        "LRU insert",
        &syns.frames,
        syns.frames.len(),
    )
}

/// Mean net cost of `calls` calls of a raw baseline program that passes every frame.
fn net_ns(
    reference: &Reference<'_>,
    prog: &Program,
    label: &str,
    frames: &[Vec<u8>],
    calls: usize,
) -> Result<f64> {
    let mut samples = Samples::default();
    reference.time(prog.fd(), label, frames, 0..calls, XDP_PASS, &mut samples)?;
    let m = samples.paired();
    Ok(m.measured.mean - m.overhead.mean)
}

/// Net cost of one LRU lookup ([`baseline::lru_lookup`]) of the established NAT case's
/// frames in a map of `table` entries: their keys among random ones, in random order,
/// so that the lookups hit entries spread over the map's memory as the director's do.
/// The memory floor of a connection-table lookup at that size.
fn time_lru_lookup(reference: &Reference<'_>, cases: &[Case], table: u32) -> Result<f64> {
    let est = cases
        .iter()
        .find(|c| c.id == "est_nat_tcp")
        .context("no established NAT case")?;
    let at = baseline::ETH_LEN as usize;
    let key_of = |f: &Vec<u8>| f[at..at + baseline::LRU_KEY as usize].to_vec();
    let mut keys: Vec<Vec<u8>> = est.frames.iter().map(key_of).collect();
    keys.sort();
    keys.dedup();
    let mut rng = SplitMix::new(table.into());
    while keys.len() < table as usize {
        keys.push(
            (0..baseline::LRU_KEY / 8)
                .flat_map(|_| rng.next_u64().to_ne_bytes())
                .collect(),
        );
    }
    for i in (1..keys.len()).rev() {
        keys.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    let map = bpf::lru_hash(
        "bench_lru_get",
        baseline::LRU_KEY,
        baseline::LRU_KEY,
        table + 1024,
        bpf::Lru::Shared,
    )?;
    let value = vec![0u8; baseline::LRU_KEY as usize];
    for k in &keys {
        bpf::map_update(map.as_fd(), k, &value)?;
    }
    let prog = baseline::lru_lookup(&map)?;
    net_ns(reference, &prog, "LRU lookup", &est.frames, est.calls)
}

/// One large-`repeat` call: the kernel's average ns per repetition.
fn time_repeat(prog: &Program, frame: &[u8], repeat: u32, expect: u32) -> Result<f64> {
    let mut out = vec![0u8; 2048];
    let run = bpf::test_run(prog.fd(), frame, &mut out, repeat)?;
    if run.retval != expect {
        bail!(
            "{} returned XDP action {} instead of {expect}",
            prog.name(),
            run.retval
        );
    }
    Ok(f64::from(run.duration_ns))
}

#[derive(Clone, Debug, Serialize)]
pub struct Baselines {
    /// XDP_PASS per `repeat = 1` call (the fixed cost of a call), mean over the blocks.
    pub pass_ns: f64,
    /// MAC swap + XDP_TX per `repeat = 1` call, mean over the blocks.
    pub mac_swap_ns: f64,
    /// MAC swap net of the fixed cost, mean over the blocks.
    pub mac_swap_net_ns: f64,
    pub large_repeat: u32,
    /// ns per repetition of one call with `large_repeat`.
    pub pass_large_ns: f64,
    pub mac_swap_large_ns: f64,
    /// One LRU hash insert of a new 40-byte key (raw program, distinct SYN frames),
    /// net of the fixed cost: the price of a connection-table insert on its own.
    pub lru_insert_net_ns: f64,
    /// The same insert with one LRU list per CPU (`BPF_F_NO_COMMON_LRU`).
    pub lru_insert_percpu_lists_net_ns: f64,
    /// The same insert into a per-CPU LRU hash.
    pub lru_insert_percpu_net_ns: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub id: &'static str,
    pub label: String,
    /// Connections in the table when the block started.
    pub table: u32,
    pub measured: Summary,
    /// Mean of the XDP_PASS calls interleaved with this case's.
    pub overhead_ns: f64,
    pub net_ns: f64,
    /// Interrupted pairs left out (see `OUTLIER_MEDIANS`).
    pub discarded: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Block {
    pub table: u32,
    pub conntrack_max: u32,
    pub prefill_ms: f64,
    /// The XDP_PASS calls interleaved with the MAC swap's.
    pub pass: Summary,
    pub mac_swap: Summary,
    pub mac_swap_net_ns: f64,
    /// One lookup in a raw LRU hash of `table` entries, see `time_lru_lookup`.
    pub lru_lookup_net_ns: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PerPacket {
    pub cpu: usize,
    pub calls_per_case: usize,
    pub new_flows_per_case: usize,
    /// Rounds the calls were spread over, each visiting every table size.
    pub rounds: usize,
    pub baselines: Baselines,
    pub blocks: Vec<Block>,
    pub cases: Vec<CaseResult>,
}

impl PerPacket {
    pub fn case(&self, id: &str, table: u32) -> Option<&CaseResult> {
        self.cases.iter().find(|c| c.id == id && c.table == table)
    }
}

/// Measures every case at every table size; the profile is taken from the program of
/// the last (largest) block, its dump written to `out`.
/// Calls of every case are spread over this many rounds, and each round visits every
/// table size: a slow spell of the machine then hits all sizes alike instead of
/// skewing one of them.
fn rounds(scale: &Scale) -> usize {
    (scale.new_conns / 1000).clamp(1, 10)
}

/// Part `round` of `0..n` split into `rounds` parts.
fn chunk(n: usize, round: usize, rounds: usize) -> std::ops::Range<usize> {
    n * round / rounds..n * (round + 1) / rounds
}

/// A loaded table size and what is measured on it.
struct Size {
    bench: Bench,
    table: u32,
    conntrack_max: u32,
    prefill_ms: f64,
    cases: Vec<Case>,
    samples: Vec<Samples>,
    mac_swap: Samples,
}

/// Loads one program per table size, then measures every case of every size in
/// interleaved rounds; the profile is taken from the program of the largest size,
/// its dump written to `out`.
pub fn run(scale: &Scale, out: &Path) -> Result<(PerPacket, Profile)> {
    let cpu = pin::last_cpu();
    let _pinned = pin::Pinned::to(cpu)?;
    let pass = baseline::pass()?;
    let swap = baseline::mac_swap()?;
    let probe = vec![inbound_frame(0, ACK)];
    baseline::check(&pass, &swap, &probe[0])?;
    let reference = Reference {
        pass: &pass,
        frame: &probe[0],
    };

    let mut sizes = Vec::new();
    for &table in scale.table_sizes {
        // Room for one round of one new-flow case: each removes what it created.
        let conntrack_max = table + scale.new_conns as u32 + 1024;
        progress(&format!(
            "per-packet: loading the program, prefilling {table} connections (table size {conntrack_max})"
        ));
        let mut bench = Bench::load(conntrack_max)?;
        let started = Instant::now();
        bench.prefill(table as usize)?;
        let prefill_ms = started.elapsed().as_secs_f64() * 1e3;
        let cases = cases(&bench, scale);
        sizes.push(Size {
            samples: cases.iter().map(|_| Samples::default()).collect(),
            cases,
            bench,
            table,
            conntrack_max,
            prefill_ms,
            mac_swap: Samples::default(),
        });
    }

    let rounds = rounds(scale);
    for round in 0..rounds {
        progress(&format!(
            "per-packet: round {}/{rounds} over {} table sizes",
            round + 1,
            sizes.len()
        ));
        for size in &mut sizes {
            let calls = chunk(scale.calls, round, rounds);
            reference.time(
                swap.fd(),
                "MAC swap",
                &probe,
                calls,
                XDP_TX,
                &mut size.mac_swap,
            )?;
            for (case, samples) in size.cases.iter().zip(&mut size.samples) {
                let calls = chunk(case.calls, round, rounds);
                {
                    let fd = size.bench.r.maps_mut().program()?.fd()?.as_fd();
                    reference.time(
                        fd,
                        case.id,
                        &case.frames,
                        calls.clone(),
                        case.expect,
                        samples,
                    )?;
                }
                if !case.creates.is_empty() {
                    size.bench.forget(&case.creates[calls]);
                }
            }
        }
    }

    let mut blocks = Vec::new();
    let mut cases_out = Vec::new();
    for size in sizes.iter_mut() {
        for (case, samples) in size.cases.iter().zip(std::mem::take(&mut size.samples)) {
            let m = samples.paired();
            let net = m.measured.mean - m.overhead.mean;
            progress(&format!(
                "per-packet: {:>7} conns  {:<40} {:7.1} ns  (net {net:6.1} ns)",
                size.table, case.label, m.measured.mean,
            ));
            cases_out.push(CaseResult {
                id: case.id,
                label: case.label.clone(),
                table: size.table,
                measured: m.measured,
                overhead_ns: m.overhead.mean,
                net_ns: net,
                discarded: m.discarded,
            });
        }
        let swapped = std::mem::take(&mut size.mac_swap).paired();
        let lru_lookup_net_ns = time_lru_lookup(&reference, &size.cases, size.table)?;
        progress(&format!(
            "per-packet: {:>7} conns  raw LRU lookup (memory floor)            net {lru_lookup_net_ns:6.1} ns",
            size.table
        ));
        blocks.push(Block {
            lru_lookup_net_ns,
            table: size.table,
            conntrack_max: size.conntrack_max,
            prefill_ms: size.prefill_ms,
            pass: swapped.overhead,
            mac_swap: swapped.measured,
            mac_swap_net_ns: swapped.measured.mean - swapped.overhead.mean,
        });
    }
    let insert = |kind| time_lru_insert(&reference, &sizes[0].cases, scale.new_conns, kind);
    let lru_insert_net_ns = insert(bpf::Lru::Shared)?;
    let lru_insert_percpu_lists_net_ns = insert(bpf::Lru::SharedPerCpuLists)?;
    let lru_insert_percpu_net_ns = insert(bpf::Lru::PerCpu)?;
    let largest = sizes.last_mut().context("no table size to measure")?;
    let profile = profile::collect(
        largest.bench.r.maps_mut().program()?.fd()?.as_fd(),
        &pass,
        &swap,
        out,
    )?;

    let mean =
        |f: &dyn Fn(&Block) -> f64| blocks.iter().map(f).sum::<f64>() / blocks.len().max(1) as f64;
    let baselines = Baselines {
        pass_ns: mean(&|b| b.pass.mean),
        mac_swap_ns: mean(&|b| b.mac_swap.mean),
        mac_swap_net_ns: mean(&|b| b.mac_swap_net_ns),
        large_repeat: scale.large_repeat,
        pass_large_ns: time_repeat(&pass, &probe[0], scale.large_repeat, XDP_PASS)?,
        mac_swap_large_ns: time_repeat(&swap, &probe[0], scale.large_repeat, XDP_TX)?,
        lru_insert_net_ns,
        lru_insert_percpu_lists_net_ns,
        lru_insert_percpu_net_ns,
    };
    progress(&format!(
        "per-packet: baselines: XDP_PASS {:.1} ns/call, MAC swap {:.1} ns/call (net {:.1} ns); with repeat {}: {:.1} / {:.1} ns per run; one LRU insert {:.1} ns net",
        baselines.pass_ns,
        baselines.mac_swap_ns,
        baselines.mac_swap_net_ns,
        baselines.large_repeat,
        baselines.pass_large_ns,
        baselines.mac_swap_large_ns,
        baselines.lru_insert_net_ns
    ));
    let per_packet = PerPacket {
        cpu,
        calls_per_case: scale.calls,
        new_flows_per_case: scale.new_conns,
        rounds,
        baselines,
        blocks,
        cases: cases_out,
    };
    Ok((per_packet, profile))
}

/// Pinning the measuring thread: the per-call figures then come from one CPU's caches.
mod pin {
    use anyhow::{Result, bail};

    /// The highest-numbered CPU this thread may run on.
    pub fn last_cpu() -> usize {
        current()
            .ok()
            .and_then(|set| {
                (0..libc::CPU_SETSIZE as usize)
                    .rev()
                    .find(|&c| is_set(&set, c))
            })
            .unwrap_or(0)
    }

    fn is_set(set: &libc::cpu_set_t, cpu: usize) -> bool {
        // SAFETY: cpu < CPU_SETSIZE.
        unsafe { libc::CPU_ISSET(cpu, set) }
    }

    fn current() -> Result<libc::cpu_set_t> {
        // SAFETY: a zeroed cpu_set_t is valid; we pass its size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) != 0 {
                bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
            }
            Ok(set)
        }
    }

    fn set(set: &libc::cpu_set_t) -> Result<()> {
        // SAFETY: a valid cpu_set_t and its size.
        if unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(set), set) } != 0 {
            bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Restores the previous affinity on drop: processes started later (trafgen,
    /// wrk) must not inherit the pin.
    pub struct Pinned(libc::cpu_set_t);

    impl Pinned {
        pub fn to(cpu: usize) -> Result<Pinned> {
            let old = current()?;
            // SAFETY: a zeroed cpu_set_t is valid; cpu < CPU_SETSIZE.
            let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            unsafe { libc::CPU_SET(cpu, &mut one) };
            set(&one)?;
            Ok(Pinned(old))
        }
    }

    impl Drop for Pinned {
        fn drop(&mut self) {
            let _ = set(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use director::config;

    #[test]
    fn the_benchmark_configuration_is_valid() {
        let loaded = config::parse(&config_text(), "bench.toml").unwrap_or_else(|e| panic!("{e}"));
        let vss = &loaded.config.virtual_servers;
        assert_eq!(vss.len(), 4 + SCHEDULERS.len());
        for (i, v) in vss.iter().enumerate() {
            assert_eq!(v.address, vip(i as u32), "vip ids follow config order");
            assert_eq!(v.real_servers.len(), 3);
        }
    }

    #[test]
    fn random_flows_stay_in_their_class() {
        let mut rng = SplitMix::new(1);
        for prefilled in [4usize, 10, 1000] {
            for &class in &PREFILL_CLASSES {
                for _ in 0..50 {
                    let i = random_prefilled(class, prefilled, &mut rng);
                    assert!(i < prefilled, "flow {i} of {prefilled} was prefilled");
                    assert_eq!(prefilled_client(i).0, class);
                }
            }
        }
    }
}
