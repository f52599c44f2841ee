//! The reconciler against in-memory maps: what it writes for a
//! configuration, and what reloads, health, next hops, drains and synced
//! entries change.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use director_common::abi::{
    BACKEND_F_DOWN, BACKEND_F_RESOLVED, CONN_F_GUESS, CONN_F_NAT, CONN_F_PEER, Conn, FAMILY_V4,
    NAT_SERVER_F_REPLY_ENTRIES, PROTO_TCP, SCHED_HASH, SCHED_LC, SCHED_RING, SCHED_WLC,
    VIP_F_HASH_PORT, VIP_F_MIDFLOW, VIP_F_NAT, VIP_F_PERSIST, VipInfo,
};
use director_common::entries::{Hop, endpoint_key};
use director_common::{abi::FlowKey, sh, tcp::State};

use super::*;
use crate::config::{self, Protocol};
use crate::model::Health;

fn sa(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("test address {s}: {e}"))
}

fn cfg(text: &str) -> Config {
    config::parse(text, "t.toml")
        .unwrap_or_else(|e| panic!("{e}"))
        .config
}

const TWO: &str = r#"
[director]
interfaces = ["eth0", "eth1"]

[[virtual_server]]
name = "web"
address = "192.0.2.10:80"
forward = "nat"
  [[virtual_server.real_server]]
  address = "10.1.0.11:8080"
  weight = 3
  [[virtual_server.real_server]]
  address = "10.1.0.12:8080"
  weight = 1

[[virtual_server]]
name = "dns"
address = "192.0.2.11:53"
protocol = "udp"
forward = "dr"
  [[virtual_server.real_server]]
  address = "10.1.0.21:53"
  [[virtual_server.real_server]]
  address = "10.1.0.22:53"
  weight = 0
"#;

type Test = Reconciler<Memory>;

fn applied(text: &str) -> Test {
    let c = cfg(text);
    Reconciler::running(&c, &Sizes::for_config(&c))
}

fn info(r: &Test, i: usize) -> VipInfo {
    r.maps().vips[&r.model().vss[i].key]
}

fn slice(r: &Test, base: u32, len: u32) -> &[u32] {
    &r.maps().ring[base as usize..(base + len) as usize]
}

#[test]
fn ids_and_rings_follow_the_config() {
    let r = applied(TWO);
    let ids: Vec<u32> = r
        .model()
        .vss
        .iter()
        .flat_map(|v| v.servers.iter().map(|s| s.id))
        .collect();
    assert_eq!(ids, [0, 1, 2, 3], "backend ids in configuration order");
    let web = info(&r, 0);
    assert_eq!(
        (web.vip_id, web.flags, web.sched),
        (0, VIP_F_NAT, SCHED_RING)
    );
    assert_eq!(
        slice(&r, web.ring_base, web.ring_len),
        &[0, 0, 1, 0],
        "3:1 smooth wrr over backends 0 and 1"
    );
    assert_eq!(slice(&r, web.members_base, web.members_len), &[0, 1]);
    assert_eq!(web.backup_len, 0);
    let dns = info(&r, 1);
    assert_eq!((dns.vip_id, dns.flags), (1, 0), "DR: no NAT flag");
    assert_eq!(
        slice(&r, dns.ring_base, dns.ring_len),
        &[2],
        "weight 0 backend 3 never scheduled"
    );
    assert_eq!(slice(&r, dns.members_base, dns.members_len), &[2]);
}

#[test]
fn vip_keys_are_in_network_order() {
    let r = applied(TWO);
    let k = &r.model().vss[0].key;
    assert_eq!(&k.addr[..4], &[192, 0, 2, 10]);
    assert_eq!(k.addr[4..], [0u8; 12]);
    assert_eq!(k.port.to_ne_bytes(), [0, 80]);
    assert_eq!((k.proto, k.family), (6, FAMILY_V4));
    assert_eq!(r.model().vss[1].key.proto, 17);
}

#[test]
fn backends_carry_their_server_weight_and_virtual_server() {
    let r = applied(TWO);
    let b = r.maps().backends[1];
    assert_eq!(b.server(), sa("10.1.0.12:8080"));
    assert_eq!((b.weight, b.vip_id, b.flags), (1, 0, 0), "no next hop yet");
    assert_eq!(r.maps().backends[3].vip_id, 1);
}

#[test]
fn sizes_leave_room_for_every_list_twice() {
    let mut c = cfg(TWO);
    c.director.conntrack_max = 1000;
    let s = Sizes::for_config(&c);
    assert_eq!(s.conntrack_max, 1000);
    assert_eq!(
        s.half_open_max, 1000,
        "half-open entries have a table as big"
    );
    assert!(s.vips >= 8 && s.backends >= 16 && s.ring >= 1 << 20);
    // A large Maglev table: the ring grows with it.
    let big = format!(
        "{}\nscheduler = \"mh\"\nmh_table_size = 1000003\n",
        one_vs_head()
    );
    let mut text = big;
    for i in 0..2 {
        text += &format!("[[virtual_server.real_server]]\naddress = \"10.1.0.{i}:80\"\n");
    }
    assert!(Sizes::for_config(&cfg(&text)).ring >= 2 * 1_000_005);
}

#[test]
fn wrr_rings_are_sized_by_their_weights_not_their_maximum() {
    let mut text = "[director]\ninterfaces = [\"eth0\"]\n".to_string();
    for v in 0..2000 {
        text += &format!(
            "[[virtual_server]]\nname = \"v{v}\"\naddress = \"192.0.2.{}:{}\"\nscheduler = \"wrr\"\n",
            v / 250,
            1000 + v
        );
        for (i, w) in [(1, 30), (2, 10), (3, 20)] {
            text += &format!(
                "[[virtual_server.real_server]]\naddress = \"10.1.0.{i}:80\"\nweight = {w}\n"
            );
        }
    }
    // Each ring is 3 + 1 + 2 = 6 slots (weights over their divisor 10), plus
    // three members: 9 slots, so 18 000 in all.
    let ring = Sizes::for_config(&cfg(&text)).ring;
    assert!(ring >= 2 * 18_000, "room for every list twice: {ring}");
    assert!(
        ring <= 1 << 20,
        "{ring} slots: sized at the 65 536-slot maximum"
    );
}

fn one_vs_head() -> String {
    "[director]\ninterfaces = [\"eth0\"]\n[[virtual_server]]\nname = \"v\"\naddress = \"192.0.2.10:80\"".into()
}

fn one_vs(extra: &str, servers: &str) -> Test {
    applied(&format!("{}\n{extra}\n{servers}", one_vs_head()))
}

const THREE: &str = "[[virtual_server.real_server]]\naddress = \"10.1.0.11:80\"\nweight = 2\n\
    [[virtual_server.real_server]]\naddress = \"10.1.0.12:80\"\nweight = 1\n\
    [[virtual_server.real_server]]\naddress = \"10.1.0.13:80\"\nweight = 5\nbackup = true\n";

#[test]
fn each_scheduler_gets_its_lists() {
    for (sched, kind, ring_len) in [
        ("rr", SCHED_RING, 2),
        ("wrr", SCHED_RING, 3),
        ("sh", SCHED_HASH, sh::DEFAULT_TABLE_SIZE),
        ("mh", SCHED_HASH, 65_537),
        ("lc", SCHED_LC, 0),
        ("wlc", SCHED_WLC, 0),
    ] {
        let r = one_vs(&format!("scheduler = \"{sched}\""), THREE);
        let v = info(&r, 0);
        assert_eq!((v.sched, v.ring_len), (kind, ring_len), "{sched}");
        assert!(
            !slice(&r, v.ring_base, v.ring_len).contains(&2),
            "{sched}: the backup is never in the primary ring"
        );
        assert_eq!(
            slice(&r, v.members_base, v.members_len),
            &[0, 1],
            "{sched}: members are the primaries"
        );
        assert_eq!(
            slice(&r, v.backup_base, v.backup_len),
            &[2],
            "{sched}: the backup list"
        );
        assert_eq!(
            v.flags & VIP_F_MIDFLOW != 0,
            sched == "mh",
            "{sched}: only mh reschedules mid-flow"
        );
    }
}

#[test]
fn persistence_and_hash_port_flags() {
    let r = one_vs(
        "scheduler = \"sh\"\nhash_source_port = true\npersistence = \"300s\"\npersistence_netmask = 24",
        THREE,
    );
    let v = info(&r, 0);
    assert_eq!(
        v.flags & (VIP_F_HASH_PORT | VIP_F_PERSIST),
        VIP_F_HASH_PORT | VIP_F_PERSIST
    );
    assert_eq!((v.persist_timeout_s, v.persist_prefix), (300, 24));
    assert_eq!(r.maps().backends[0].max_conns, 0);
}

#[test]
fn a_next_hop_resolves_only_its_backend() {
    let mut r = applied(TWO);
    let hop = Hop {
        ifindex: 7,
        dst_mac: [2, 0, 0, 0, 0, 0x11],
        src_mac: [2, 0, 0, 0, 0, 1],
    };
    assert!(r.set_hop(1, hop));
    assert!(!r.set_hop(1, hop), "the same hop again is no change");
    r.apply().expect("apply");
    let b = r.maps().backends[1];
    assert_eq!(
        (b.ifindex, b.dst_mac, b.flags),
        (7, hop.dst_mac, BACKEND_F_RESOLVED)
    );
    assert_eq!(r.maps().backends[0].flags, 0);
}

#[test]
fn a_failed_server_leaves_the_lists_and_is_marked_down() {
    let mut r = applied(TWO);
    let before = info(&r, 0);
    r.server_mut(0, 1).health = Health::Down;
    r.apply().expect("apply");
    let after = info(&r, 0);
    assert_ne!(after.ring_base, before.ring_base, "new lists in new slots");
    assert_eq!(slice(&r, after.ring_base, after.ring_len), &[0]);
    assert_eq!(
        slice(&r, before.ring_base, before.ring_len),
        &[0, 0, 1, 0],
        "the old lists stay intact for packets that still read them"
    );
    assert_eq!(r.maps().backends[1].flags & BACKEND_F_DOWN, BACKEND_F_DOWN);
}

#[test]
fn unchanged_state_writes_nothing() {
    let mut r = applied(TWO);
    let before = info(&r, 0);
    r.maps_mut().ring.iter_mut().for_each(|s| *s = u32::MAX);
    r.apply().expect("apply");
    assert_eq!(info(&r, 0), before);
    assert!(
        r.maps().ring.iter().all(|&s| s == u32::MAX),
        "no ring write"
    );
}

fn nat_conn(r: &mut Test, client: &str, backend_id: u32) -> FlowKey {
    let key = FlowKey::client_side(sa(client), sa("192.0.2.10:80"), PROTO_TCP);
    let conn = Conn {
        backend_id,
        flags: CONN_F_NAT,
        state: State::Established as u8,
        ..Conn::default()
    };
    r.maps_mut().insert_conn(&key, &conn).expect("insert");
    key
}

#[test]
fn a_server_becoming_shared_gets_reply_entries_first() {
    let mut r = applied(TWO);
    let server = endpoint_key(sa("10.1.0.11:8080"), PROTO_TCP);
    assert!(r.maps().nat_servers[&server].skips_reply_entry(0));
    let key = nat_conn(&mut r, "198.51.100.2:40000", 0);
    // A second NAT virtual server with the same real server.
    let shared = TWO.to_string()
        + "[[virtual_server]]\nname = \"web2\"\naddress = \"192.0.2.12:80\"\nforward = \"nat\"\n\
           [[virtual_server.real_server]]\naddress = \"10.1.0.11:8080\"\n";
    r.reconcile(&cfg(&shared), Instant::now()).expect("reload");
    r.apply().expect("apply");
    let s = r.maps().nat_servers[&server];
    assert!(!s.derives(), "shared: replies only through NAT_REPLIES");
    let be = r.maps().backends[0];
    let reply = r.maps().nat_replies.get(&key.reply_via(&be));
    assert_eq!(
        reply.map(|r| (r.vip, r.vip_port, r.backend_id)),
        Some((key.dst, key.dport, 0)),
        "the existing connection's reply entry was backfilled"
    );
    assert_ne!(s.flags & NAT_SERVER_F_REPLY_ENTRIES, 0);
}

#[test]
fn expiring_a_server_removes_its_connections_and_replies() {
    let mut r = applied(TWO);
    let key = nat_conn(&mut r, "198.51.100.2:40000", 1);
    let other = nat_conn(&mut r, "198.51.100.3:40000", 0);
    let be = r.maps().backends[1];
    let reply = key.reply_via(&be);
    r.maps_mut()
        .insert_nat_reply(Table::Established, &reply, &NatReply::default())
        .expect("reply");
    assert_eq!(r.expire(&[1].into()), 1);
    assert!(!r.maps().conns.contains_key(&key) && !r.maps().nat_replies.contains_key(&reply));
    assert!(r.maps().conns.contains_key(&other), "other servers' stay");
}

#[test]
fn a_removed_server_drains_then_goes() {
    let t0 = Instant::now();
    let mut r = applied(TWO);
    let key = nat_conn(&mut r, "198.51.100.2:40000", 1);
    let fewer = TWO.replace(
        "  [[virtual_server.real_server]]\n  address = \"10.1.0.12:8080\"\n  weight = 1\n",
        "",
    );
    r.reconcile(&cfg(&fewer), t0).expect("reload");
    r.apply().expect("apply");
    assert_eq!(
        slice(&r, info(&r, 0).members_base, info(&r, 0).members_len),
        &[0]
    );
    assert!(
        r.maps().conns.contains_key(&key),
        "draining keeps connections"
    );
    let (_, gone) = r
        .finish_drains(t0 + Duration::from_secs(31))
        .expect("drains");
    assert_eq!(gone, 1);
    assert!(!r.maps().conns.contains_key(&key));
    assert_eq!(r.maps().backends[1].family, 0, "the slot is free");
    assert_eq!(r.model().server_addr(1), None);
}

fn client_hop() -> Hop {
    Hop {
        ifindex: 3,
        dst_mac: [2, 0, 0, 0, 0, 0xc1],
        src_mac: [2, 0, 0, 0, 0, 0xd1],
    }
}

fn synced(client: &str, vs: &str, server: &str, protocol: Protocol) -> SyncedConn {
    SyncedConn {
        id: ConnId {
            protocol,
            client: sa(client),
            virtual_server: sa(vs),
        },
        real_server: sa(server),
        state: State::Established,
        idle: Duration::from_secs(5),
    }
}

/// A TCP connection of client 198.51.100.2:40000 to "web" through `server`.
fn web_conn(server: &str) -> SyncedConn {
    synced("198.51.100.2:40000", "192.0.2.10:80", server, Protocol::Tcp)
}

#[test]
fn a_synced_connection_is_installed_as_the_datapath_records_one() {
    let mut r = applied(TWO);
    let c = web_conn("10.1.0.12:8080");
    let before = crate::dataplane::monotonic_ns();
    r.install_conn(&c, &client_hop()).expect("install");
    let key = FlowKey::client_side(c.id.client, c.id.virtual_server, PROTO_TCP);
    let conn = r.maps().conns[&key];
    assert_eq!(
        (conn.backend_id, conn.vip_id, conn.flags),
        (1, 0, CONN_F_NAT | CONN_F_PEER)
    );
    assert_eq!(conn.state, State::Established as u8);
    assert_eq!(
        (conn.client_ifindex, conn.client_mac, conn.local_mac),
        (3, client_hop().dst_mac, client_hop().src_mac)
    );
    let age = before.saturating_sub(conn.last_seen_ns);
    assert!(
        (4_900_000_000..6_000_000_000).contains(&age),
        "idle 5 s, got {age} ns"
    );
    assert!(
        r.maps().nat_replies.is_empty(),
        "replies of an unshared server are found through its virtual server"
    );
    r.remove_conn(Table::Established, &c.id);
    assert!(r.maps().conns.is_empty());
}

#[test]
fn a_synced_connection_names_a_configured_server() {
    let mut r = applied(TWO);
    let unknown = web_conn("10.1.0.99:8080");
    let err = r.install_conn(&unknown, &client_hop()).unwrap_err();
    assert!(
        err.to_string().contains("no real server 10.1.0.99:8080"),
        "{err}"
    );
    let wrong_proto = synced(
        "198.51.100.2:40000",
        "192.0.2.10:80",
        "10.1.0.11:8080",
        Protocol::Udp,
    );
    assert!(r.install_conn(&wrong_proto, &client_hop()).is_err());
    assert!(r.maps().conns.is_empty());
}

#[test]
fn a_synced_dr_connection_has_no_nat_state() {
    let mut r = applied(TWO);
    let c = synced(
        "198.51.100.2:5353",
        "192.0.2.11:53",
        "10.1.0.21:53",
        Protocol::Udp,
    );
    r.install_conn(&c, &client_hop()).expect("install");
    let key = FlowKey::client_side(c.id.client, c.id.virtual_server, 17);
    assert_eq!(r.maps().conns[&key].flags, CONN_F_PEER, "a peer's, no NAT");
    assert!(r.maps().nat_replies.is_empty());
}

#[test]
fn a_synced_persistence_entry_is_masked_like_the_datapath_and_reads_back() {
    let text = format!(
        "{}\npersistence = \"300s\"\npersistence_netmask = 24\n{THREE}",
        one_vs_head()
    );
    let mut r = applied(&text);
    let p = SyncedPersist {
        protocol: Protocol::Tcp,
        virtual_server: sa("192.0.2.10:80"),
        client_net: "198.51.100.77".parse().expect("ip"),
        real_server: sa("10.1.0.12:80"),
        idle: Duration::from_secs(1),
    };
    r.install_persist(&p).expect("install");
    let (key, value) = r
        .maps()
        .persist
        .iter()
        .next()
        .map(|(k, v)| (*k, *v))
        .expect("one entry");
    assert_eq!(&key.addr[..4], &[198, 51, 100, 0]);
    assert_eq!(
        (key.vip_id, key.family, value.backend_id),
        (0, FAMILY_V4, 1)
    );
    let now = crate::dataplane::monotonic_ns();
    let back = r.synced_persist(&key, &value, now).expect("known");
    assert_eq!(
        (back.protocol, back.virtual_server, back.real_server),
        (p.protocol, p.virtual_server, p.real_server)
    );
    assert_eq!(
        back.client_net.to_string(),
        "198.51.100.0",
        "the masked network"
    );
    r.remove_persist(Protocol::Tcp, p.virtual_server, p.client_net)
        .expect("remove");
    assert!(r.maps().persist.is_empty());
}

#[test]
fn an_entry_reads_back_as_the_report_that_installed_it() {
    let mut r = applied(TWO);
    let c = synced(
        "[2001:db8::2]:40000",
        "192.0.2.10:80",
        "10.1.0.11:8080",
        Protocol::Tcp,
    );
    // An IPv6 client of an IPv4 virtual server cannot exist; use IPv4.
    let c = SyncedConn {
        id: ConnId {
            client: sa("198.51.100.9:40000"),
            ..c.id
        },
        ..c
    };
    r.install_conn(&c, &client_hop()).expect("install");
    let (key, conn) = r
        .maps()
        .conns
        .iter()
        .next()
        .map(|(k, v)| (*k, *v))
        .expect("one");
    assert_eq!(ConnId::of(&key), c.id);
    let now = crate::dataplane::monotonic_ns();
    let back = r.synced_conn(&key, &conn, now).expect("a known server");
    assert_eq!(
        (back.id, back.real_server, back.state),
        (c.id, c.real_server, c.state)
    );
    assert!(back.idle >= c.idle && back.idle < c.idle + Duration::from_secs(1));
}

#[test]
fn a_peer_report_never_replaces_or_removes_a_connection_in_use_made_here() {
    let mut r = applied(TWO);
    let c = web_conn("10.1.0.12:8080");
    let key = FlowKey::client_side(c.id.client, c.id.virtual_server, PROTO_TCP);
    for (local_flags, replaced) in [
        (CONN_F_NAT, false),
        (CONN_F_NAT | CONN_F_GUESS, true),
        (CONN_F_NAT | CONN_F_PEER, true),
    ] {
        let local = Conn {
            backend_id: 0,
            flags: local_flags,
            // In use: seen here more recently than the peer's report says.
            last_seen_ns: crate::dataplane::monotonic_ns(),
            ..Conn::default()
        };
        r.maps_mut().insert_conn(&key, &local).expect("local");
        let got = r.install_conn(&c, &client_hop()).expect("install");
        assert_eq!(got == Installed::Yes, replaced, "flags {local_flags:#x}");
        let now = r.maps().conns[&key];
        assert_eq!(now.backend_id, if replaced { 1 } else { 0 });
        r.maps_mut().insert_conn(&key, &local).expect("local");
        let got = r.remove_synced_conn(&c.id);
        assert_eq!(got == Installed::Yes, replaced, "flags {local_flags:#x}");
        assert_eq!(
            r.maps().conns.contains_key(&key),
            !replaced,
            "a peer's removal"
        );
    }
}

/// A director restarted with the table it had when it went down: a client
/// reused a port meanwhile, through the peer, to another server. The peer's
/// live connection replaces the stale entry made here; an entry made here
/// and seen about as recently as the peer's (the datapath touches busy
/// entries once a second) stays.
#[test]
fn a_peer_report_replaces_a_stale_connection_made_here() {
    let mut r = applied(TWO);
    let c = web_conn("10.1.0.12:8080");
    let key = FlowKey::client_side(c.id.client, c.id.virtual_server, PROTO_TCP);
    let now = crate::dataplane::monotonic_ns();
    for (idle_ms, replaced) in [
        (30_000, true),
        (6_500, true),
        (5_500, false),
        (1_000, false),
    ] {
        let local = Conn {
            backend_id: 0,
            flags: CONN_F_NAT,
            state: State::Close as u8,
            last_seen_ns: now.saturating_sub(Duration::from_millis(idle_ms).as_nanos() as u64),
            ..Conn::default()
        };
        r.maps_mut().insert_conn(&key, &local).expect("local");
        let got = r.install_conn(&c, &client_hop()).expect("install");
        assert_eq!(
            got == Installed::Yes,
            replaced,
            "an entry made here, idle {idle_ms} ms, against the peer's idle {:?}",
            c.idle
        );
        let entry = r.maps().conns[&key];
        assert_eq!(
            (entry.backend_id, entry.state),
            if replaced {
                (1, State::Established as u8)
            } else {
                (0, State::Close as u8)
            }
        );
    }
}

#[test]
fn a_reload_refused_half_way_changes_nothing() {
    let c = cfg(TWO);
    let sizes = Sizes {
        vips: 2,
        ..Sizes::for_config(&c)
    };
    let mut r = Reconciler::running(&c, &sizes);
    // "web" changes first, then a third virtual server finds no free id.
    let third = TWO.replace("weight = 3", "weight = 7")
        + r#"
[[virtual_server]]
name = "third"
address = "192.0.2.12:80"
  [[virtual_server.real_server]]
  address = "10.1.0.31:80"
"#;
    let err = r
        .reconcile(&cfg(&third), Instant::now())
        .expect_err("no id is free for a third virtual server");
    assert!(err.contains("third"), "the error names it: {err}");
    let web = &r.model().vss[0];
    assert_eq!(r.model().vss.len(), 2, "nothing added");
    assert_eq!(
        web.cfg.real_servers[0].weight, 3,
        "the refused reload left web's new weight in the model"
    );
    let id = web.servers[0].id as usize;
    r.apply().expect("apply");
    assert_eq!(r.maps().backends[id].weight, 3);
}
