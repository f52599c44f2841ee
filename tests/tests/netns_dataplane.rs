//! End to end through the director for what the datapath does beyond IPv4 wrr: IPv6
//! (NAT and DR), UDP virtual servers, source-IP persistence and least-connection
//! scheduling. Each test builds its own lab and starts the director with a config
//! written here (or one of examples/lab-*6.toml, which must match the lab).
//!
//! Needs root and the director binary (`$DIRECTOR_BIN` or target/debug/director; `cargo
//! xtask test` builds it). Skips with a printed reason when not root.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use director_tests::config::{Config, VirtualServer};
use director_tests::http::{self, KeepAlive, Tally, Timeouts};
use director_tests::lab::{self, Lab, LabSpec, Mode, Probe};
use director_tests::paths::examples_dir;
use director_tests::pattern::{fnv1a, pattern, pseudo_random};
use director_tests::{need_root, per_mode};

const SERVER: &str = env!("CARGO_BIN_EXE_director-lab-server");
const MIB: usize = 1 << 20;

fn build(mode: Mode, servers: usize) -> Lab {
    Lab::build(LabSpec::new(mode, SERVER).servers(servers)).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Starts the director and prints how long lab + director took.
fn start(lab: &mut Lab, config: impl Into<lab::DirectorConfig>, since: Instant) {
    lab.start_director(config);
    eprintln!("lab and director up in {:.1?}", since.elapsed());
}

/// 1 MiB down through `vip` (byte for byte the pattern) and 1 MiB up (the server
/// reports its exact length and hash).
fn assert_1mib_both_ways(lab: &Lab, vip: SocketAddr) {
    let t = Timeouts::default();
    let r = lab
        .in_client(|| http::get_from(&t, None, vip, &format!("/bytes/{MIB}")))
        .unwrap_or_else(|e| panic!("1 MiB download through {vip}: {e:#}"));
    assert_eq!(r.status, 200, "download through {vip}");
    assert_eq!(
        r.body.len(),
        MIB,
        "download through {vip} from {:?}",
        r.server()
    );
    if let Some(at) = r.body.iter().zip(&pattern(MIB)).position(|(a, b)| a != b) {
        panic!(
            "download through {vip} from {:?} differs at byte {at}",
            r.server()
        );
    }
    let body = pseudo_random(MIB, 7);
    let upload = lab.in_client(|| {
        let mut s = http::connect_from(None, vip, &t)?;
        use std::io::{Read, Write};
        write!(
            s,
            "POST /upload HTTP/1.0\r\nHost: {vip}\r\nContent-Length: {MIB}\r\n\r\n"
        )?;
        s.write_all(&body)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        http::parse_response(raw)
    });
    let r = upload.unwrap_or_else(|e| panic!("1 MiB upload through {vip}: {e:#}"));
    assert_eq!(
        r.text(),
        format!("{MIB} {:016x}\n", fnv1a(&body)),
        "upload through {vip} via {:?}",
        r.server()
    );
}

/// 30 GETs through the IPv6 VIP (all answered, every server), then 1 MiB each way.
fn ipv6_http(mode: Mode) {
    let since = Instant::now();
    let mut lab = build(mode, 3);
    // The example file itself (examples/lab-nat6.toml, lab-dr6.toml): it must match
    // the lab's addressing.
    let config = examples_dir().join(format!("lab-{mode}6.toml"));
    lab.start_director_with(config, Probe::Http(lab.vip6()));
    eprintln!("lab and director up in {:.1?}", since.elapsed());
    let tally = lab.get_many6(30, &[]);
    eprintln!("{mode} IPv6: 30 GETs → {:?}", tally.by_server);
    lab.assert_answered_by_all(&tally, 30, "GETs through the IPv6 VIP");
    assert_1mib_both_ways(&lab, lab.vip6());
}

/// Every examples/lab-*.toml passes `director check` (the IPv6 tests above also run
/// lab-nat6.toml and lab-dr6.toml in the lab whose addressing they describe).
#[test]
fn lab_examples_pass_director_check() {
    let bin = director_tests::paths::director_bin();
    if !bin.is_file() {
        eprintln!(
            "skipping lab_examples_pass_director_check: no director binary at {}",
            bin.display()
        );
        return;
    }
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("lab-") && name.ends_with(".toml")) {
            continue;
        }
        let out = std::process::Command::new(&bin)
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "director check --config {}: {}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked.push(name);
    }
    checked.sort();
    for want in [
        "lab-dr.toml",
        "lab-dr6.toml",
        "lab-nat.toml",
        "lab-nat6.toml",
    ] {
        assert!(
            checked.iter().any(|c| c == want),
            "{want} missing: {checked:?}"
        );
    }
}

per_mode!(ipv6_http: ipv6_http_nat, ipv6_http_dr);

/// A UDP virtual server on `vip` over the lab's UDP real servers of that family.
fn udp_config(lab: &Lab, vip: SocketAddr, weights: &[u32]) -> Config {
    let servers = lab.real_server_addrs(vip.is_ipv6(), true);
    Config::lab(lab.mode()).virtual_server(
        VirtualServer::udp("dns", vip)
            .scheduler("wrr")
            .real_servers(servers)
            .weights(weights),
    )
}

/// `n` exchanges from distinct source ports: all answered (by a real server, from the
/// VIP), every server seen, and none needed a resend.
fn assert_udp_exchanges(lab: &Lab, vip: SocketAddr, n: usize) -> Tally {
    let started = Instant::now();
    let batch = lab.udp_many(n, None, 20000, vip);
    eprintln!(
        "{} UDP through {vip}: {n} exchanges in {:.1?} → {:?}, {} resent",
        lab.mode(),
        started.elapsed(),
        batch.tally.by_server,
        batch.resent
    );
    lab.assert_answered_by_all(&batch.tally, n, &format!("UDP through {vip}"));
    // Nothing on this path may lose a datagram: neighbours are resolved by then.
    assert_eq!(
        batch.resent, 0,
        "{} datagrams had to be sent again",
        batch.resent
    );
    batch.tally
}

/// wrr 1:1:1 over 60 UDP flows: each server 20 ± 5.
fn udp_60(mode: Mode) {
    let since = Instant::now();
    let mut lab = build(mode, 3);
    let config = udp_config(&lab, lab.udp_vip(), &[1, 1, 1]);
    start(&mut lab, config, since);
    let tally = assert_udp_exchanges(&lab, lab.udp_vip(), 60);
    for name in lab.server_names() {
        assert!(
            (15..=25).contains(&tally.count(&name)),
            "{name} answered {} of 60, expected 20 ± 5 under wrr 1:1:1: {:?}",
            tally.count(&name),
            tally.by_server
        );
    }
}

per_mode!(udp_60: udp_nat, udp_dr);

#[test]
fn ipv6_udp_nat() {
    need_root!();
    let since = Instant::now();
    let mut lab = build(Mode::Nat, 3);
    let config = udp_config(&lab, lab.udp_vip6(), &[1, 1, 1]);
    start(&mut lab, config, since);
    assert_udp_exchanges(&lab, lab.udp_vip6(), 10);
}

/// How many distinct client addresses the persistence tests use.
const CLIENTS: usize = 50;

/// A NAT lab, wrr 1:1:1 with `persistence = "3s"` (grouping clients by
/// `persistence_netmask` if given), and `tcp_fin_timeout = "1s"`: a closed connection's
/// entry keeps its client's persistence alive (as in IPVS, the userspace sweep
/// refreshes the persistence of every client that still has entries), so closed
/// connections must not linger for the default 120 s if persistence is to expire in
/// this test.
fn persistent_lab(netmask: Option<u32>) -> (Lab, Vec<IpAddr>) {
    let since = Instant::now();
    let mut lab = build(Mode::Nat, 3);
    let mut vs = VirtualServer::tcp("web", lab.vip())
        .scheduler("wrr")
        .set("persistence", "3s")
        .set("tcp_fin_timeout", "1s")
        .real_servers(lab.real_server_addrs(false, false))
        .weights(&[1, 1, 1]);
    if let Some(bits) = netmask {
        vs = vs.set("persistence_netmask", bits);
    }
    start(&mut lab, Config::lab(Mode::Nat).virtual_server(vs), since);
    let clients: Vec<IpAddr> = lab.extra_client_addrs()[..CLIENTS]
        .iter()
        .map(|&a| a.into())
        .collect();
    (lab, clients)
}

/// One connection of a client: when it started and which server answered.
#[derive(Debug, Clone)]
struct Visit {
    at: Instant,
    server: String,
}

/// `rounds` rounds of one new connection (`GET /`, closed) per client; returns, per
/// client, its visits in order. Panics on any failed request.
fn rounds(lab: &Lab, clients: &[IpAddr], rounds: usize) -> Vec<Vec<Visit>> {
    let vip = lab.vip();
    let t = Timeouts::default();
    let started = Instant::now();
    let seen = lab.in_client(|| {
        let mut seen = vec![Vec::with_capacity(rounds); clients.len()];
        for round in 0..rounds {
            for (c, &src) in clients.iter().enumerate() {
                let at = Instant::now();
                let r = http::get_from(&t, Some(src), vip, "/")
                    .unwrap_or_else(|e| panic!("round {round}, client {src}: {e:#}"));
                let name = r
                    .server()
                    .unwrap_or_else(|| panic!("client {src}: no X-Server in {r:?}"));
                seen[c].push(Visit {
                    at,
                    server: name.to_owned(),
                });
            }
        }
        seen
    });
    eprintln!(
        "{rounds} round(s) of {} connections in {:.1?}",
        clients.len(),
        started.elapsed()
    );
    seen
}

/// How many of `names` each server has.
fn per_server<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for name in names {
        *m.entry(name.to_owned()).or_default() += 1;
    }
    m
}

/// The test relies on gaps well inside the 3 s persistence; a lab too slow for that
/// must fail as such, not as a persistence bug.
const WELL_WITHIN_PERSISTENCE: Duration = Duration::from_millis(2500);

/// Panics unless `later` started within [`WELL_WITHIN_PERSISTENCE`] of `earlier`.
fn assert_gap_within_persistence(earlier: &Visit, later: &Visit, src: IpAddr) {
    let gap = later.at.duration_since(earlier.at);
    assert!(
        gap < WELL_WITHIN_PERSISTENCE,
        "the lab was too slow to test a 3 s persistence: client {src} waited {gap:.1?} \
         between two connections"
    );
}

#[test]
fn persistence_many_clients() {
    need_root!();
    let (lab, clients) = persistent_lab(None);
    // Rounds: each client's connections are one round (50 connections) apart.
    let first = rounds(&lab, &clients, 10);
    for (src, visits) in clients.iter().zip(&first) {
        for pair in visits.windows(2) {
            assert_gap_within_persistence(&pair[0], &pair[1], *src);
        }
        let servers: Vec<&str> = visits.iter().map(|v| v.server.as_str()).collect();
        assert!(
            servers.iter().all(|s| *s == servers[0]),
            "client {src} moved between servers within its persistence: {servers:?}"
        );
    }
    let before = per_server(first.iter().map(|v| v[0].server.as_str()));
    eprintln!("clients per server with persistence: {before:?}");
    assert_eq!(
        before.len(),
        3,
        "{CLIENTS} clients under wrr 1:1:1 should use all 3 servers: {before:?}"
    );

    // Idle for less than the persistence timeout: every client keeps its server.
    std::thread::sleep(Duration::from_secs(1));
    let held = rounds(&lab, &clients, 1);
    for ((src, before), after) in clients.iter().zip(&first).zip(&held) {
        let (last, now) = (before.last().unwrap(), &after[0]);
        assert_gap_within_persistence(last, now, *src);
        assert_eq!(
            last.server,
            now.server,
            "client {src} lost its server after {:.1?} idle (persistence 3 s)",
            now.at.duration_since(last.at)
        );
    }

    // All connections are closed; once their entries are gone (tcp_fin_timeout 1 s)
    // and the persistence entries are idle for longer than 3 s, clients are
    // scheduled afresh.
    std::thread::sleep(Duration::from_secs(5));
    let second = rounds(&lab, &clients, 1);
    let after = per_server(second.iter().map(|v| v[0].server.as_str()));
    let moved = held
        .iter()
        .zip(&second)
        .filter(|(a, b)| a[0].server != b[0].server)
        .count();
    eprintln!(
        "after persistence expired: clients per server {after:?}, {moved} of {CLIENTS} clients changed server"
    );
    assert!(
        moved > 0,
        "no client changed server after its persistence expired: {after:?}"
    );
    assert_eq!(
        after.len(),
        3,
        "after expiry the clients should spread over all 3 servers again: {after:?}"
    );
}

#[test]
fn persistence_netmask_groups_clients() {
    need_root!();
    let (lab, clients) = persistent_lab(Some(24));
    let seen = rounds(&lab, &clients, 2);
    let all = per_server(seen.iter().flatten().map(|v| v.server.as_str()));
    eprintln!("persistence per /24: connections per server {all:?}");
    assert_eq!(
        all.len(),
        1,
        "all {CLIENTS} clients share one /24 and must share one server: {all:?}"
    );
}

#[test]
fn lc_steers_away_from_long_lived_connections() {
    need_root!();
    let since = Instant::now();
    let mut lab = build(Mode::Nat, 2);
    let config = Config::lab(Mode::Nat).virtual_server(
        VirtualServer::tcp("web", lab.vip())
            .scheduler("lc")
            .real_servers(lab.real_server_addrs(false, false))
            .weights(&[1, 1]),
    );
    start(&mut lab, config, since);
    let vip = lab.vip();
    let t = Timeouts::default();

    // 20 long-lived connections, each established and used before the next opens.
    let mut long: Vec<KeepAlive> = lab.in_client(|| {
        (0..20)
            .map(|i| {
                KeepAlive::open(&t, None, vip)
                    .unwrap_or_else(|e| panic!("keep-alive connection {i}: {e:#}"))
            })
            .collect()
    });
    let split = per_server(long.iter().map(|c| c.server.as_str()));
    eprintln!("20 long-lived connections: {split:?}");
    for name in ["rs1", "rs2"] {
        let n = split.get(name).copied().unwrap_or(0);
        assert!(
            (9..=11).contains(&n),
            "lc should split 20 long-lived connections about evenly, {name} has {n}: {split:?}"
        );
    }

    // Close those on rs2 (client FIN, then the server's): rs2 keeps only inactive
    // (FIN_WAIT) entries, rs1 keeps its ESTABLISHED ones.
    let (on_rs2, mut on_rs1): (Vec<_>, Vec<_>) = long.drain(..).partition(|c| c.server == "rs2");
    lab.in_client(|| {
        for (i, c) in on_rs2.into_iter().enumerate() {
            c.close()
                .unwrap_or_else(|e| panic!("closing long-lived connection {i} on rs2: {e:#}"));
        }
    });

    // lc overhead: rs1 ≈ 10 × 256, rs2 ≈ 10 + one per new short connection.
    let short = lab.get_many(20, &[]);
    eprintln!(
        "20 short connections after closing rs2's: {:?}",
        short.by_server
    );
    assert_eq!(
        short.failures, 0,
        "short connections failed: {:#?}",
        short.errors
    );
    assert!(
        short.count("rs2") >= 18,
        "lc should send new connections to rs2 (only inactive connections) rather than \
         rs1 ({} established): {:?}",
        on_rs1.len(),
        short.by_server
    );

    // The long-lived connections on rs1 still work, then close.
    lab.in_client(|| {
        for (i, c) in on_rs1.iter_mut().enumerate() {
            let r = c
                .get("/")
                .unwrap_or_else(|e| panic!("long-lived connection {i} on rs1: {e:#}"));
            assert_eq!(r.server(), Some("rs1"), "long-lived connection {i} moved");
        }
    });
    drop(on_rs1);
}
