//! The lab itself, without the director: topology, addressing, veth tuning, the lab
//! server, isolation between labs, and teardown (including Ctrl-C in the demo).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use director_tests::config::{Config, VirtualServer};
use director_tests::http::{self, Timeouts};
use director_tests::lab::{self, Lab, Role, netns};
use director_tests::need_root;
use director_tests::pattern::{fnv1a, pattern, pseudo_random};
use director_tests::udp;

const SERVER: &str = env!("CARGO_BIN_EXE_director-lab-server");
const DEMO: &str = env!("CARGO_BIN_EXE_director-lab");

fn lab_namespaces(prefix: &str) -> Vec<String> {
    let prefix = format!("{prefix}-");
    netns::list()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Every real server answers `GET /` with its own name when asked directly from `from`.
fn assert_servers_answer_from(lab: &Lab, from: Role) {
    for (i, &addr) in lab.real_servers().iter().enumerate() {
        let name = format!("rs{}", i + 1);
        let r = lab
            .in_ns(from, || http::http_get(None, addr.into(), "/"))
            .unwrap_or_else(|e| panic!("GET {addr} from {from:?}: {e:#}"));
        assert_eq!(
            (r.status, r.server(), r.text()),
            (200, Some(name.as_str()), format!("{name}\n"))
        );
    }
}

/// Every veth end in every namespace has tx checksum offload off and GRO on.
fn assert_veths_tuned(lab: &Lab) {
    let mut checked = 0;
    for ns in lab.namespaces().all() {
        let links = ns.ip(&["-o", "link", "show", "type", "veth"]).unwrap();
        for line in links.lines() {
            let ifname = line.split(": ").nth(1).unwrap().split('@').next().unwrap();
            let features = ns.exec("ethtool", &["-k", ifname]).unwrap();
            for want in ["tx-checksumming: off", "generic-receive-offload: on"] {
                assert!(
                    features.contains(want),
                    "{} {ifname}: expected {want:?}",
                    ns.name()
                );
            }
            assert!(
                line.contains("state UP") || line.contains(",UP"),
                "{} {ifname} not up: {line}",
                ns.name()
            );
            checked += 1;
        }
    }
    // Each host has one veth and a switch port (NAT: client–dir is a direct pair).
    assert_eq!(checked, 2 * (lab.real_servers().len() + 2));

    // The veth ends facing the director carry an XDP program (so XDP_TX reaches them).
    let has_xdp = |role, ifname| {
        lab.ns(role)
            .ip(&["link", "show", "dev", ifname])
            .unwrap()
            .contains("xdp")
    };
    assert!(
        has_xdp(Role::Switch, "dir"),
        "no XDP_PASS on the switch port facing the director"
    );
    assert_eq!(has_xdp(Role::Client, "eth0"), lab.mode() == lab::Mode::Nat);
    assert!(
        !has_xdp(Role::Director, "eth0"),
        "the lab must leave the director's interfaces alone"
    );
}

fn unreachable(lab: &Lab, dst: SocketAddr) -> bool {
    let quick = Timeouts {
        connect: Duration::from_millis(700),
        io: Duration::from_secs(1),
    };
    lab.in_client(|| http::get_with(&quick, None, dst, "/"))
        .is_err()
}

/// The director's stack does not forward (`sysctl` is 0 there): without the XDP
/// program the client reaches neither real server `rs` nor `vip`.
fn assert_director_does_not_forward(lab: &Lab, sysctl: &str, rs: SocketAddr, vip: SocketAddr) {
    let forward = lab.ns(Role::Director).read_sysctl(sysctl).unwrap();
    assert_eq!(forward, "0", "{sysctl} in the director's namespace");
    assert!(
        unreachable(lab, rs),
        "client reached real server {rs} directly"
    );
    assert!(
        unreachable(lab, vip),
        "VIP {vip} answered without a director"
    );
}

#[test]
fn nat_lab_topology() {
    need_root!();
    let lab = Lab::nat(SERVER);
    let (id, pids) = (lab.id().to_owned(), lab.pids());
    assert_eq!(lab_namespaces(&id).len(), 6, "client, dir, sw, rs1..rs3");
    assert_veths_tuned(&lab);

    // Real servers answer the director directly.
    assert_servers_answer_from(&lab, Role::Director);

    // The client reaches the director's own address, from its primary and extra addresses.
    let echo_addr: SocketAddr = (lab.director_addr(), 9000).into();
    for src in [None, Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 163)))] {
        let peer = lab.echo_to_director(src, echo_addr);
        assert_eq!(peer.ip(), src.unwrap_or(IpAddr::V4(lab.client_addr())));
    }
    assert_eq!(lab.extra_client_addrs().len(), 64);
    assert_eq!(
        lab.extra_client_addrs()[0],
        Ipv4Addr::new(198, 51, 100, 100)
    );

    assert_director_does_not_forward(
        &lab,
        "net.ipv4.ip_forward",
        lab.real_servers()[0].into(),
        lab.vip(),
    );

    drop(lab);
    assert!(
        lab_namespaces(&id).is_empty(),
        "namespaces left: {:?}",
        lab_namespaces(&id)
    );
    for pid in pids {
        assert!(!pid_alive(pid), "process {pid} survived the lab");
    }
}

#[test]
fn dr_lab_topology() {
    need_root!();
    let lab = Lab::dr(SERVER);
    let id = lab.id().to_owned();
    assert_eq!(lab_namespaces(&id).len(), 6);
    assert_veths_tuned(&lab);

    // One segment: client and director both reach the real servers on port 80.
    assert_servers_answer_from(&lab, Role::Client);
    assert_servers_answer_from(&lab, Role::Director);
    assert!(lab.real_servers().iter().all(|a| a.port() == 80));

    let echo_addr: SocketAddr = (lab.director_addr(), 9000).into();
    let src = IpAddr::V4(Ipv4Addr::new(10, 2, 0, 100));
    assert_eq!(lab.echo_to_director(Some(src), echo_addr).ip(), src);

    for n in 1..=3 {
        let rs = lab.ns(Role::Server(n));
        assert!(
            rs.ip(&["-o", "addr", "show", "dev", "lo"])
                .unwrap()
                .contains("192.0.2.10/32")
        );
        for key in ["all", "eth0"] {
            // Read by a separate process in the namespace: checks that the lab wrote
            // the rs namespace's values (not this process's own namespace's).
            let get = |k: &str| {
                rs.exec("cat", &[&format!("/proc/sys/net/ipv4/conf/{key}/{k}")])
                    .unwrap()
            };
            assert_eq!(
                (get("arp_ignore").trim(), get("arp_announce").trim()),
                ("1", "2")
            );
        }
    }
    // The route to the VIP leads to the director, which does not forward by itself, and
    // no real server answers ARP for the VIP.
    assert!(
        unreachable(&lab, lab.vip()),
        "VIP answered without a director"
    );

    drop(lab);
    assert!(lab_namespaces(&id).is_empty());
}

/// IPv6 is on in every namespace of the lab and no address is tentative.
fn assert_ipv6_ready(lab: &Lab) {
    for ns in lab.namespaces().all() {
        for key in ["all", "default"] {
            assert_eq!(
                ns.read_sysctl(&format!("net.ipv6.conf.{key}.disable_ipv6"))
                    .unwrap(),
                "0",
                "{}: IPv6 disabled ({key})",
                ns.name()
            );
        }
        let addrs = ns.ip(&["-6", "-o", "addr", "show"]).unwrap();
        assert!(
            !addrs.contains("tentative"),
            "{}: tentative IPv6 addresses:\n{addrs}",
            ns.name()
        );
    }
}

/// Every real server answers UDP with its own name at its UDP address, asked from `from`.
fn assert_udp_servers_answer_from(lab: &Lab, from: Role, addrs: &[SocketAddr]) {
    for (i, &addr) in addrs.iter().enumerate() {
        let name = format!("rs{}", i + 1);
        let answer = lab
            .in_ns(from, || {
                udp::ask(None, addr, b"hello", &udp::Retry::default())
            })
            .unwrap_or_else(|e| panic!("UDP {addr} from {from:?}: {e:#}"));
        assert_eq!(
            (answer.server.as_str(), answer.sent),
            (name.as_str(), 1),
            "UDP answer from {addr}"
        );
    }
}

/// Each `(role, dev, cidr)`: `ip -o addr show dev DEV` in `role` lists `cidr`.
fn assert_addrs(lab: &Lab, want: &[(Role, &str, &str)]) {
    for &(role, dev, cidr) in want {
        let addrs = lab
            .ns(role)
            .ip(&["-o", "addr", "show", "dev", dev])
            .unwrap();
        assert!(
            addrs.split_whitespace().any(|w| w == cidr),
            "{role:?} {dev} has no {cidr}:\n{addrs}"
        );
    }
}

#[test]
fn nat_lab_ipv6_addressing() {
    need_root!();
    let lab = Lab::nat(SERVER);
    assert_ipv6_ready(&lab);

    // The addresses of the brief, IPv4 ones untouched.
    assert_addrs(
        &lab,
        &[
            (Role::Client, "eth0", "2001:db8:c::2/64"),
            (Role::Client, "eth0", "198.51.100.2/24"),
            (Role::Client, "eth0", "2001:db8:c::163/64"),
            (Role::Director, "eth0", "2001:db8:c::1/64"),
            (Role::Director, "eth1", "2001:db8:1::1/64"),
        ],
    );
    for n in 1..=3 {
        assert_addrs(
            &lab,
            &[
                (Role::Server(n), "eth0", &format!("2001:db8:1::1{n}/64")),
                (Role::Server(n), "eth0", &format!("10.1.0.1{n}/24")),
            ],
        );
        let routes = lab
            .ns(Role::Server(n))
            .ip(&["-6", "route", "show", "default"])
            .unwrap();
        assert!(routes.contains("via 2001:db8:1::1"), "rs{n}: {routes}");
    }
    let extras = lab.extra_client_addrs6();
    assert_eq!(extras.len(), 64);
    assert_eq!(extras[0], "2001:db8:c::100".parse::<Ipv6Addr>().unwrap());
    assert_eq!(extras[63], "2001:db8:c::163".parse::<Ipv6Addr>().unwrap());
    assert_eq!(lab.vip6().to_string(), "[2001:db8:10::10]:80");
    assert_eq!(
        lab.real_servers6()[0].to_string(),
        "[2001:db8:1::11]:8080",
        "must match examples/lab-nat6.toml"
    );

    // Real servers answer HTTP over IPv6 and UDP over both families.
    for (i, &addr) in lab.real_servers6().iter().enumerate() {
        let r = lab
            .in_ns(Role::Director, || {
                http::get_from(&Timeouts::default(), None, addr.into(), "/")
            })
            .unwrap_or_else(|e| panic!("GET {addr}: {e:#}"));
        assert_eq!(r.server(), Some(format!("rs{}", i + 1).as_str()));
    }
    assert_udp_servers_answer_from(&lab, Role::Director, &lab.real_server_addrs(false, true));
    assert_udp_servers_answer_from(&lab, Role::Director, &lab.real_server_addrs(true, true));

    // The client reaches the director's IPv6 address from its primary and an extra one.
    let echo_addr: SocketAddr = (lab.director_addr6(), 9000).into();
    for src in [None, Some(IpAddr::V6(extras[63]))] {
        let peer = lab.echo_to_director(src, echo_addr);
        assert_eq!(peer.ip(), src.unwrap_or(IpAddr::V6(lab.client_addr6())));
    }

    assert_director_does_not_forward(
        &lab,
        "net.ipv6.conf.all.forwarding",
        lab.real_servers6()[0].into(),
        lab.vip6(),
    );
}

/// Whether `ip neigh` in the client has a usable link-layer address for `ip`.
fn client_neighbour(lab: &Lab, ip: IpAddr) -> String {
    lab.ns(Role::Client)
        .ip(&["neigh", "show", "to", &ip.to_string(), "dev", "eth0"])
        .unwrap()
}

#[test]
fn dr_lab_ipv6_addressing() {
    need_root!();
    let lab = Lab::dr(SERVER);
    assert_ipv6_ready(&lab);
    assert_addrs(
        &lab,
        &[
            (Role::Client, "eth0", "2001:db8:2::2/64"),
            (Role::Client, "eth0", "2001:db8:2::163/64"),
            (Role::Director, "eth0", "2001:db8:2::1/64"),
        ],
    );
    let routes = lab.ns(Role::Client).ip(&["-6", "route", "show"]).unwrap();
    assert!(
        routes.contains("2001:db8:10::10 via 2001:db8:2::1 dev eth0"),
        "client routes: {routes}"
    );
    for n in 1..=3 {
        assert_addrs(
            &lab,
            &[
                (Role::Server(n), "eth0", &format!("2001:db8:2::1{n}/64")),
                (Role::Server(n), "lo", "2001:db8:10::10/128"),
                (Role::Server(n), "lo", "192.0.2.10/32"),
            ],
        );
    }
    assert_eq!(
        lab.real_servers6()[2].to_string(),
        "[2001:db8:2::13]:80",
        "must match examples/lab-dr6.toml"
    );

    // One segment: the client reaches every real server over IPv6.
    for (i, &addr) in lab.real_servers6().iter().enumerate() {
        let r = lab
            .in_client(|| http::get_from(&Timeouts::default(), None, addr.into(), "/"))
            .unwrap_or_else(|e| panic!("GET {addr}: {e:#}"));
        assert_eq!(r.server(), Some(format!("rs{}", i + 1).as_str()));
    }
    // The UDP servers are bound to the VIPs themselves (each rs asks its own).
    for n in 1..=3 {
        for vip in [lab.udp_vip(), lab.udp_vip6()] {
            let a = lab
                .in_ns(Role::Server(n), || {
                    udp::ask(None, vip, b"me?", &udp::Retry::default())
                })
                .unwrap_or_else(|e| panic!("rs{n} UDP {vip}: {e:#}"));
            assert_eq!(a.server, format!("rs{n}"));
        }
    }

    // Nobody announces the VIPs on the segment. Point the client's VIP routes at the
    // segment itself for a moment: its ARP / neighbour solicitations go unanswered.
    let client = lab.ns(Role::Client);
    for (vip, host_route, via) in [
        (
            lab.vip6(),
            "2001:db8:10::10/128",
            lab.director_addr6().to_string(),
        ),
        (lab.vip(), "192.0.2.10/32", lab.director_addr().to_string()),
    ] {
        client
            .ip(&["route", "replace", host_route, "dev", "eth0"])
            .unwrap();
        let reached = !unreachable(&lab, vip);
        let neigh = client_neighbour(&lab, vip.ip());
        client
            .ip(&["route", "replace", host_route, "via", &via])
            .unwrap();
        assert!(!reached, "{vip} answered on the segment");
        assert!(
            !neigh.contains("lladdr") && (neigh.contains("INCOMPLETE") || neigh.contains("FAILED")),
            "expected an unanswered solicitation for {}, neighbour entry: {neigh:?}",
            vip.ip()
        );
    }
    assert!(
        unreachable(&lab, lab.vip6()),
        "VIP6 answered without a director"
    );
}

#[test]
fn labs_do_not_collide() {
    need_root!();
    let a = Lab::nat(SERVER);
    let b = Lab::nat(SERVER);
    assert_ne!(a.id(), b.id());
    assert_servers_answer_from(&a, Role::Director);
    assert_servers_answer_from(&b, Role::Director);
    let a_id = a.id().to_owned();
    drop(a);
    assert!(lab_namespaces(&a_id).is_empty());
    assert_servers_answer_from(&b, Role::Director);
}

#[test]
fn lab_server_http() {
    need_root!();
    let lab = Lab::nat(SERVER);
    let rs1: SocketAddr = lab.real_servers()[0].into();

    // Download and upload, checked end to end.
    let r = lab
        .in_ns(Role::Director, || {
            http::http_get(None, rs1, "/bytes/1048576")
        })
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.body == pattern(1 << 20),
        "download differs from the pattern"
    );
    let body = pseudo_random(1 << 20, 42);
    let r = lab
        .in_ns(Role::Director, || http::http_post_upload(None, rs1, &body))
        .unwrap();
    assert_eq!(r.text(), format!("{} {:016x}\n", body.len(), fnv1a(&body)));
    let r = lab
        .in_ns(Role::Director, || http::http_get(None, rs1, "/nope"))
        .unwrap();
    assert_eq!(r.status, 404);

    // HTTP/1.1 keep-alive: two requests on one connection (what wrk does).
    let replies = lab.in_ns(Role::Director, || {
        let mut s = TcpStream::connect_timeout(&rs1, Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /bytes/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).unwrap();
        all
    });
    assert_eq!(replies.matches("HTTP/1.1 200 OK").count(), 2, "{replies}");
    assert!(
        replies.contains("Connection: keep-alive") && replies.ends_with("\x07\x26\x45"),
        "{replies:?}"
    );
}

/// Ctrl-C in `director-lab demo` stops the lab's processes and deletes its namespaces.
/// A stand-in "director" that never forwards keeps the demo waiting for the VIP.
#[test]
fn demo_ctrl_c_cleans_up() {
    need_root!();
    let tmp = tempfile::tempdir().unwrap();
    let pid_file = tmp.path().join("director.pid");
    let fake = tmp.path().join("fake-director");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 60\n",
            pid_file.display()
        ),
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&fake).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = Config::lab(lab::Mode::Nat).virtual_server(
        VirtualServer::tcp("web", lab::VIP.into()).real_servers(["10.1.0.11:8080"]),
    );
    std::fs::write(tmp.path().join("lab-nat.toml"), config.to_toml()).unwrap();

    let mut demo = std::process::Command::new(DEMO)
        .args(["demo", "--mode", "nat", "--requests", "5", "--director"])
        .arg(&fake)
        .arg("--examples")
        .arg(tmp.path())
        .spawn()
        .unwrap();
    let prefix = format!("dl{}", demo.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pid_file.exists() {
        assert!(Instant::now() < deadline, "demo never started the director");
        assert!(demo.try_wait().unwrap().is_none(), "demo exited early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let director_pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(lab_namespaces(&format!("{prefix}-0")).len(), 6);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(demo.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = demo.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(
        lab_namespaces(&prefix).is_empty(),
        "left: {:?}",
        lab_namespaces(&prefix)
    );
    assert!(
        !pid_alive(director_pid),
        "fake director {director_pid} survived"
    );
}
