//! Next hops against the kernel. First the next-hop service (`director::netlink`)
//! alone: a "director" namespace wired by a veth to a peer namespace, the service run
//! in-process on a thread inside the director namespace (a netlink socket belongs to
//! the namespace of the thread that opens it); each of those tests makes its own
//! `nl-<pid>-<test>-*` namespaces. Then the director in a NAT lab, following a real
//! server's new MAC under traffic.
//!
//! Needs root (and the director binary for the lab test, as in the other netns tests).
//! Skips with a printed reason when not root.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aya::maps::{Array, Map, MapData};
use director::dataplane::PinDir;
use director::netlink::{HopEvent, Neighbours, NextHop};
use director_common::abi::Backend;
use director_common::entries::addr_key;
use director_tests::config::{Config, VirtualServer};
use director_tests::http::Tally;
use director_tests::lab::{Lab, LabSpec, Mode, NetNs, Role, netns};
use tokio::sync::mpsc::UnboundedReceiver;

const SERVER: &str = env!("CARGO_BIN_EXE_director-lab-server");

const D_MAC: [u8; 6] = [2, 0x77, 0, 0, 0, 1];
const P_MAC: [u8; 6] = [2, 0x77, 0, 0, 0, 2];
const P_MAC_NEW: [u8; 6] = [2, 0x77, 0, 0, 0, 0x22];
const STATIC_MAC: [u8; 6] = [2, 0x77, 0, 0, 0, 0x33];
/// The peer, on the director's subnet.
const PEER: &str = "10.77.1.2";
const PEER6: &str = "2001:db8:77:1::2";
/// Reached through the peer as gateway.
const BEHIND: &str = "10.77.9.5";
/// Has a permanent entry made by hand.
const STATIC: &str = "10.77.1.3";
/// A second address of the peer, resolved by plain kernel traffic.
const PEER_OTHER: &str = "10.77.1.4";
/// The director namespace's own address.
const OWN: &str = "10.77.1.1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The director-side namespace `d` (veth `d1`) and the peer `p` (veth `p1`).
struct Net {
    d: NetNs,
    p: NetNs,
}

/// The namespaces of `test`; `None` (after saying why) when not root.
fn net(test: &str) -> Option<Net> {
    if director_tests::root::skip_without_root(test) {
        return None;
    }
    let pid = std::process::id();
    let d = NetNs::create(&format!("nl-{pid}-{test}-d")).unwrap_or_else(|e| panic!("{e:#}"));
    let p = NetNs::create(&format!("nl-{pid}-{test}-p")).unwrap_or_else(|e| panic!("{e:#}"));
    let (dm, pm) = (mac(&D_MAC), mac(&P_MAC));
    d.ip(&[
        "link",
        "add",
        "d1",
        "address",
        &dm,
        "type",
        "veth",
        "peer",
        "name",
        "p1",
        "address",
        &pm,
        "netns",
        p.name(),
    ])
    .unwrap_or_else(|e| panic!("{e:#}"));
    // No duplicate address detection, link-local addresses included: a
    // tentative address neither sends nor answers neighbour solicitations, and
    // on a loaded machine DAD outlasts the kernel's three probes.
    for (ns, dev) in [(&d, "d1"), (&p, "p1")] {
        ns.sysctl(&[&format!("net.ipv6.conf.{dev}.accept_dad=0")])
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    let batch = |ns: &NetNs, lines: &[&str]| {
        ns.ip_batch(&lines.iter().map(|l| l.to_string()).collect::<Vec<_>>())
            .unwrap_or_else(|e| panic!("{e:#}"));
    };
    batch(
        &d,
        &[
            "addr add 10.77.1.1/24 dev d1",
            "addr add 2001:db8:77:1::1/64 dev d1 nodad",
            "link set d1 up",
            "route add 10.77.9.0/24 via 10.77.1.2",
        ],
    );
    batch(
        &p,
        &[
            "addr add 10.77.1.2/24 dev p1",
            "addr add 10.77.1.4/24 dev p1",
            "addr add 2001:db8:77:1::2/64 dev p1 nodad",
            "link set p1 up",
        ],
    );
    // The peer announces a new MAC (gratuitous ARP, unsolicited NA), as a
    // replaced NIC or a migrated VM does.
    p.sysctl(&[
        "net.ipv4.conf.p1.arp_notify=1",
        "net.ipv6.conf.p1.ndisc_notify=1",
    ])
    .unwrap_or_else(|e| panic!("{e:#}"));
    Some(Net { d, p })
}

/// Runs `f` on a current-thread runtime on a thread inside `ns`.
fn in_ns<R: Send, F: Future<Output = R>>(ns: &NetNs, f: impl FnOnce() -> F + Send) -> R {
    ns.run(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(f())
    })
}

/// Waits until every address of `want` has an event that `ok` accepts; returns the
/// last event of each. Panics with everything seen when `within` passes first.
async fn wait_for(
    rx: &mut UnboundedReceiver<HopEvent>,
    want: &[IpAddr],
    within: Duration,
    ok: impl Fn(&Result<NextHop, String>) -> bool,
) -> HashMap<IpAddr, Result<NextHop, String>> {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    let mut done = HashMap::new();
    while done.len() < want.len() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) => {
                if want.contains(&e.ip) && ok(&e.hop) {
                    done.insert(e.ip, e.hop.clone());
                }
                seen.push(e);
            }
            Ok(None) => panic!("the next-hop service stopped; events: {seen:#?}"),
            Err(_) => panic!(
                "no matching next hop for {:?} within {within:?}; events: {seen:#?}",
                want.iter()
                    .filter(|i| !done.contains_key(i))
                    .collect::<Vec<_>>()
            ),
        }
    }
    done
}

/// `ip -n NS neigh show to ADDR dev d1`.
fn neigh_line(ns: &str, addr: &str) -> String {
    netns::run(Command::new("ip").args(["-n", ns, "neigh", "show", "to", addr, "dev", "d1"]))
        .unwrap_or_else(|e| panic!("{e:#}"))
        .trim()
        .to_owned()
}

fn dst(r: &Result<NextHop, String>) -> Option<[u8; 6]> {
    r.as_ref().ok().map(|h| h.dst_mac)
}

#[test]
fn managed_entries_follow_mac_changes_and_routes() {
    let Some(net) = net("follow") else {
        return;
    };
    net.d
        .ip(&[
            "neigh",
            "add",
            STATIC,
            "lladdr",
            &mac(&STATIC_MAC),
            "dev",
            "d1",
            "nud",
            "permanent",
        ])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let (d, p) = (&net.d, &net.p);
    // The peer's entry exists already, resolved by plain kernel traffic: the
    // service makes it managed.
    d.run(|| {
        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .and_then(|s| s.send_to(b"x", (ip(PEER), 9)))
            .expect("send one datagram to the peer")
    });
    let deadline = Instant::now() + Duration::from_secs(2);
    while !neigh_line(d.name(), PEER).contains("REACHABLE") {
        assert!(
            Instant::now() < deadline,
            "{PEER} not resolved by plain traffic"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    in_ns(d, || async {
        let (nb, mut rx) = Neighbours::start().await.expect("start the service");
        let servers = [ip(PEER), ip(PEER6), ip(BEHIND)];
        nb.follow(servers.iter().copied().chain([ip(STATIC)]));
        let first = wait_for(
            &mut rx,
            &[ip(PEER), ip(PEER6), ip(BEHIND), ip(STATIC)],
            Duration::from_secs(4),
            Result::is_ok,
        )
        .await;
        let h = first[&ip(PEER)].clone().unwrap();
        assert_eq!(
            (h.ifname.as_str(), h.dst_mac, h.src_mac),
            ("d1", P_MAC, D_MAC)
        );
        assert!(h.ifindex > 1, "ifindex {}", h.ifindex);
        for s in &servers {
            assert_eq!(
                first[s],
                Ok(h.clone()),
                "{s} (the gateway's MAC for {BEHIND})"
            );
        }
        assert_eq!(dst(&first[&ip(STATIC)]), Some(STATIC_MAC));
        for s in [PEER, PEER6] {
            let line = neigh_line(d.name(), s);
            assert!(
                line.contains("managed") && line.contains("proto 221"),
                "{s} is not a managed entry of ours: {line}"
            );
        }
        let line = neigh_line(d.name(), PEER);
        assert!(
            line.contains(&mac(&P_MAC)) && !line.contains("INCOMPLETE"),
            "the resolved entry was reset when it became managed: {line}"
        );
        let line = neigh_line(d.name(), STATIC);
        assert!(
            line.contains("PERMANENT") && !line.contains("managed"),
            "the hand-made entry was changed: {line}"
        );

        // The peer's MAC changes: every server whose next hop it is follows.
        let changed = Instant::now();
        p.ip(&["link", "set", "dev", "p1", "address", &mac(&P_MAC_NEW)])
            .unwrap_or_else(|e| panic!("{e:#}"));
        let moved = wait_for(&mut rx, &servers, Duration::from_secs(1), |r| {
            dst(r) == Some(P_MAC_NEW)
        })
        .await;
        eprintln!(
            "new MAC of {} servers reported after {:?}",
            moved.len(),
            changed.elapsed()
        );

        // The route behind the gateway goes: that server is unresolved.
        d.ip(&["route", "del", "10.77.9.0/24"])
            .unwrap_or_else(|e| panic!("{e:#}"));
        let gone = wait_for(
            &mut rx,
            &[ip(BEHIND)],
            Duration::from_secs(1),
            Result::is_err,
        )
        .await;
        let why = gone[&ip(BEHIND)].clone().unwrap_err();
        assert!(why.contains("no route to 10.77.9.5"), "{why}");

        // No longer followed: our entries go, the hand-made one stays.
        nb.follow([ip(STATIC)]);
        let deadline = Instant::now() + Duration::from_secs(1);
        while [PEER, PEER6]
            .iter()
            .any(|s| neigh_line(d.name(), s).contains("proto 221"))
        {
            assert!(
                Instant::now() < deadline,
                "entries of unfollowed servers left: {} / {}",
                neigh_line(d.name(), PEER),
                neigh_line(d.name(), PEER6)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(neigh_line(d.name(), STATIC).contains("PERMANENT"));
    });
}

/// The states of the entries of `addrs` on `d1` in namespace `ns`, sampled every
/// 100 ms for `time`.
fn sample_states(ns: &str, addrs: &[&str], time: Duration) -> Vec<Vec<&'static str>> {
    let start = Instant::now();
    let mut states = vec![Vec::new(); addrs.len()];
    while start.elapsed() < time {
        for (addr, seen) in addrs.iter().zip(&mut states) {
            let line = neigh_line(ns, addr);
            let state = [
                "REACHABLE",
                "STALE",
                "DELAY",
                "PROBE",
                "FAILED",
                "INCOMPLETE",
            ]
            .into_iter()
            .find(|s| line.contains(s))
            .unwrap_or("none");
            seen.push(state);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    states
}

/// How often the states go back to REACHABLE from something else.
fn reconfirmations(states: &[&str]) -> usize {
    states
        .windows(2)
        .filter(|w| w[0] != "REACHABLE" && w[1] == "REACHABLE")
        .count()
}

/// XDP-forwarded traffic never confirms a neighbour: without traffic through the
/// kernel a plain entry goes STALE and stays so (until it is garbage-collected). A
/// managed entry is probed again (the kernel looks at its managed entries every 5 s,
/// `interval_probe_time_ms` of the whole table) and stays resolved. Timers shortened so
/// that this shows in seconds: reachable for 1-3 s instead of 15-45 s, and the delay
/// before a probe kept shorter than that, as by default (otherwise the kernel's own
/// probe counts as a use and a plain entry is probed forever too).
#[test]
fn managed_entries_stay_resolved_without_traffic() {
    let Some(net) = net("probe") else {
        return;
    };
    let d = &net.d;
    d.sysctl(&[
        "net.ipv4.neigh.d1.base_reachable_time_ms=2000",
        "net.ipv4.neigh.d1.delay_first_probe_time=1",
    ])
    .unwrap_or_else(|e| panic!("{e:#}"));
    // A plain entry: one datagram from the kernel resolves it, then nothing.
    d.run(|| {
        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .and_then(|s| s.send_to(b"x", (ip(PEER_OTHER), 9)))
            .expect("send one datagram to the peer")
    });
    let name = d.name().to_owned();
    let states = in_ns(d, || async move {
        let (nb, mut rx) = Neighbours::start().await.expect("start the service");
        nb.follow([ip(PEER)]);
        wait_for(&mut rx, &[ip(PEER)], Duration::from_secs(4), Result::is_ok).await;
        // The service runs on while the states are sampled.
        tokio::task::spawn_blocking(move || {
            sample_states(&name, &[PEER, PEER_OTHER], Duration::from_secs(12))
        })
        .await
        .expect("sampling thread")
    });
    let (managed, plain) = (&states[0], &states[1]);
    assert!(
        reconfirmations(managed) >= 1 && !managed.contains(&"FAILED") && !managed.contains(&"none"),
        "the managed entry was not kept resolved: {managed:?}"
    );
    let stale = plain
        .iter()
        .position(|s| *s == "STALE")
        .unwrap_or_else(|| panic!("the plain entry never went stale: {plain:?}"));
    assert!(
        plain[stale..].iter().all(|s| *s == "STALE"),
        "the plain entry was confirmed again without traffic: {plain:?}"
    );
}

#[test]
fn lookups_solicit_unknown_neighbours_and_host_routes_come_and_go() {
    let Some(net) = net("lookup") else {
        return;
    };
    let d = &net.d;
    let routes = |v: &str| {
        d.ip(&[v, "route", "show", "table", "100"])
            .unwrap_or_else(|e| panic!("{e:#}"))
    };
    in_ns(d, || async {
        let (nb, _rx) = Neighbours::start().await.expect("start the service");
        let hop = nb.lookup(ip(PEER)).await.expect("look up the peer");
        assert_eq!((hop.dst_mac, hop.src_mac), (P_MAC, D_MAC));
        let line = neigh_line(d.name(), PEER);
        assert!(
            !line.contains("managed"),
            "a one-off lookup left a managed entry: {line}"
        );
        let hop6 = nb
            .lookup(ip(PEER6))
            .await
            .expect("look up the peer over IPv6");
        assert_eq!(hop6.dst_mac, P_MAC);
        let started = Instant::now();
        let err = nb.lookup(ip("10.77.1.99")).await.unwrap_err().to_string();
        assert!(
            err.contains("no ARP/ND answer from 10.77.1.99 on d1"),
            "{err}"
        );
        eprintln!("an absent neighbour failed after {:?}", started.elapsed());
        let err = nb.lookup(ip(OWN)).await.unwrap_err().to_string();
        assert!(err.contains("address of this host"), "{err}");

        let (vip, vip6) = (ip("192.0.2.10"), ip("2001:db8:10::10"));
        for _ in 0..2 {
            nb.announce(100, vip).await.expect("announce the VIP");
            nb.announce(100, vip6).await.expect("announce the IPv6 VIP");
        }
        assert!(
            routes("-4").contains("192.0.2.10 dev lo proto 221"),
            "{}",
            routes("-4")
        );
        assert!(
            routes("-6").contains("2001:db8:10::10 dev lo proto 221"),
            "{}",
            routes("-6")
        );
        for _ in 0..2 {
            nb.withdraw(100, vip).await.expect("withdraw the VIP");
            nb.withdraw(100, vip6).await.expect("withdraw the IPv6 VIP");
        }
        assert_eq!(routes("-4").trim(), "");
        assert_eq!(routes("-6").trim(), "");
    });
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The director's `BACKENDS` map, opened from its pin.
fn backends(lab: &Lab) -> Array<MapData, Backend> {
    let path = PinDir(lab.pin_dir()).maps().join("BACKENDS");
    let map = MapData::from_pin(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    Array::try_from(Map::Array(map)).expect("BACKENDS is an array of Backend")
}

/// The next hop MAC the datapath has for real server `addr`.
fn backend_mac(map: &Array<MapData, Backend>, addr: SocketAddr) -> Option<[u8; 6]> {
    let key = addr_key(addr.ip()).0;
    map.iter()
        .filter_map(Result::ok)
        .find(|b| b.family != 0 && b.addr == key)
        .map(|b| b.dst_mac)
}

/// Each real server of a NAT lab in turn takes a new MAC (and announces it, as a
/// replaced NIC or a migrated VM does) while a client keeps requesting through the VIP:
/// the director's `BACKENDS` entry has the new MAC within 1 s, and no request fails. A
/// director that re-resolved next hops on a timer (every 5 s, as it once did) misses
/// the bound for at least one of the three servers all but once in a hundred runs.
#[test]
fn nat_datapath_follows_a_real_servers_new_mac_within_a_second() {
    director_tests::need_root!();
    let mut lab = Lab::build(LabSpec::new(Mode::Nat, SERVER)).unwrap_or_else(|e| panic!("{e:#}"));
    for n in 1..=lab.real_servers().len() {
        lab.ns(Role::Server(n))
            .sysctl(&["net.ipv4.conf.eth0.arp_notify=1"])
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    let servers: Vec<SocketAddr> = lab.real_servers().iter().map(|&a| a.into()).collect();
    lab.start_director(
        Config::lab(Mode::Nat)
            .virtual_server(VirtualServer::tcp("web", lab.vip()).real_servers(servers.clone())),
    );
    let map = backends(&lab);
    let stop = AtomicBool::new(false);
    let lab = &lab;
    let background = std::thread::scope(|s| {
        // Stops the traffic on every way out, a failed assertion included (the scope
        // waits for its threads).
        let stopper = StopOnDrop(&stop);
        let traffic = s.spawn(|| {
            let mut all = Tally::default();
            while !stop.load(Ordering::Relaxed) {
                let t = lab.get_many(5, &[]);
                all.failures += t.failures;
                all.errors.extend(t.errors);
                for (name, n) in t.by_server {
                    *all.by_server.entry(name).or_default() += n;
                }
            }
            all
        });
        for (i, &addr) in servers.iter().enumerate() {
            let new = [2, 0x77, 0xaa, 0, 0, i as u8 + 1];
            assert_ne!(backend_mac(&map, addr), Some(new));
            let changed = Instant::now();
            lab.ns(Role::Server(i + 1))
                .ip(&["link", "set", "dev", "eth0", "address", &mac(&new)])
                .unwrap_or_else(|e| panic!("{e:#}"));
            while backend_mac(&map, addr) != Some(new) {
                assert!(
                    changed.elapsed() < Duration::from_secs(1),
                    "BACKENDS still has {:?} for {addr} 1 s after it took {}; director log:\n{}",
                    backend_mac(&map, addr).map(|m| mac(&m)),
                    mac(&new),
                    lab.director_log_tail(20)
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            eprintln!("{addr}: new MAC in BACKENDS after {:?}", changed.elapsed());
            // Let the traffic run through the new MAC before the next change.
            std::thread::sleep(Duration::from_millis(300));
        }
        drop(stopper);
        traffic.join().expect("traffic thread")
    });
    assert_eq!(
        background.failures, 0,
        "requests failed while MACs changed: {:?}",
        background.errors
    );
    let after = lab.get_many(30, &[]);
    assert_eq!(after.failures, 0, "{:?}", after.errors);
    for name in lab.server_names() {
        assert!(
            after.count(&name) > 0,
            "{name} got no request: {:?}",
            after.by_server
        );
    }
}
