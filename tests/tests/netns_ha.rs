//! A director pair behind keepalived (VRRP): failover and failback of a NAT and a DR
//! pair under long-lived connections and `wrk`, the readiness gate, and the same with
//! state sync on, where nothing may be lost.
//!
//! Each test prints its figures (`cargo xtask test -- netns_ha --nocapture`).
//! Without sync every connection through the failed director is lost: that is the
//! baseline that shows what sync buys.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use director::control::{ConnEntry, Response};
use director_tests::lab::ha::{HaLab, HaSpec, Side, TAKEOVER_TIMEOUT};
use director_tests::lab::{DIRECTOR_READY_TIMEOUT, Mode, WrkReport};
use director_tests::long_lived::{Flows, STALL_LIMIT, Spec, Tally};
use director_tests::{need_root, per_mode};

const SERVER: &str = env!("CARGO_BIN_EXE_director-lab-server");

/// The long-lived TCP connections of each phase.
const CONNECTIONS: usize = 200;

/// After the VIP answers again: long enough that a flow that did not survive has
/// been silent for the stall limit.
const SETTLE: Duration = STALL_LIMIT.saturating_add(Duration::from_secs(1));

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// `CONNECTIONS` long-lived connections to the stream VIP (those that fail to open
/// show in the tally).
fn open_connections(lab: &HaLab) -> Flows {
    Flows::open(lab.client_ns(), &Spec::tcp(lab.stream_vip(), CONNECTIONS))
}

/// What one switch (failover or failback) cost.
struct Switch {
    /// From the failure (or the restart) until the new master holds the VRRP addresses.
    takeover: Duration,
    /// Until a new connection through the VIP is answered: from the failure
    /// (failover), from the restart once A holds the VIP again (failback: B answers
    /// all along until then).
    vip_answers: Duration,
    flows: Tally,
    wrk: WrkReport,
}

fn report(what: &str, mode: Mode, sync: bool, t0: Instant, s: &Switch) {
    println!(
        "{mode} pair, sync {}, {what}: VRRP addresses moved after {}, VIP answered new \
         connections after {}\n  long-lived: {}\n  wrk: {}",
        if sync { "on" } else { "off" },
        secs(s.takeover),
        secs(s.vip_answers),
        s.flows.summary(t0),
        s.wrk
    );
}

/// Each director's non-zero datapath reasons and what it did with its peer's
/// records: the first place to look when a flow was lost.
fn datapaths(lab: &HaLab) -> String {
    [Side::A, Side::B]
        .into_iter()
        .map(|side| {
            let status = lab
                .ask(side, &["status"])
                .and_then(|json| Ok(serde_json::from_str::<Response>(&json)?));
            match status {
                Ok(Response::Status(s)) => format!(
                    "{}: reasons {:?}; sync installs {:?}",
                    side.name(),
                    s.reasons,
                    s.sync.map(|y| y.installs)
                ),
                Ok(other) => format!("{}: status answered {other:?}", side.name()),
                Err(e) => format!("{}: no status: {e:#}", side.name()),
            }
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// The entries both directors hold for each lost flow of `tally`.
fn lost_entries(lab: &HaLab, tally: &Tally) -> String {
    let tables: Vec<(Side, Vec<ConnEntry>)> = [Side::A, Side::B]
        .into_iter()
        .map(|side| {
            let entries = lab
                .ask(side, &["conns", "--limit", "1000000"])
                .and_then(|json| Ok(serde_json::from_str::<Response>(&json)?));
            match entries {
                Ok(Response::Conns { entries, .. }) => (side, entries),
                _ => (side, Vec::new()),
            }
        })
        .collect();
    tally
        .flows
        .iter()
        .filter(|f| f.broken.is_some())
        .map(|f| {
            let client = f.local.map(|a| a.to_string()).unwrap_or_default();
            let held: Vec<String> = tables
                .iter()
                .map(|(side, entries)| {
                    let e = entries.iter().find(|e| e.client == client);
                    format!("{}: {e:?}", side.name())
                })
                .collect();
            format!(
                "{client} ({:?} on {:?}, {:?}): {}",
                f.kind,
                f.server,
                f.broken,
                held.join("; ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}

fn wrk_done(wrk: director_tests::lab::Wrk) -> WrkReport {
    let report = wrk.wait().unwrap_or_else(|e| panic!("{e:#}"));
    assert!(report.requests > 0, "wrk completed nothing: {report}");
    report
}

/// Crashes A and waits until B holds the VRRP addresses and until the VIP answers a
/// new connection, both watched at once from the crash (the VIP could answer first;
/// it does not, as B's datapath only sees frames for its own MAC). Returns the time
/// of the crash and both delays.
fn crash_a(lab: &mut HaLab) -> (Instant, Duration, Duration) {
    let t0 = Instant::now();
    lab.crash(Side::A);
    let lab = &*lab;
    std::thread::scope(|s| {
        let vip = s.spawn(|| lab.wait_vip(TAKEOVER_TIMEOUT).map(|_| t0.elapsed()));
        let takeover = lab
            .wait_master(Side::B, TAKEOVER_TIMEOUT)
            .map(|_| t0.elapsed())
            .unwrap_or_else(|e| panic!("B did not take over: {e:#}"));
        let vip = vip
            .join()
            .expect("VIP probe thread")
            .unwrap_or_else(|e| panic!("the VIP does not answer through B: {e:#}"));
        (t0, takeover, vip)
    })
}

/// Kills A under load and waits for B to take over: see the module docs.
fn fail_over(lab: &mut HaLab) -> (Instant, Switch) {
    let flows = open_connections(lab);
    let wrk = lab.start_wrk(2, 8, Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(2));
    let (t0, takeover, vip_answers) = crash_a(lab);
    std::thread::sleep(SETTLE);
    let flows = flows.stop();
    let wrk = wrk_done(wrk);
    (
        t0,
        Switch {
            takeover,
            vip_answers,
            flows,
            wrk,
        },
    )
}

/// Times from a director's start until it was ready, until it was master, and until
/// the VIP then answered a new connection.
struct Rise {
    ready: Duration,
    master: Duration,
    vip: Duration,
}

/// Waits for `side`'s director (started at `t0`) to be ready, then for it to be
/// master and the VIP to answer through it.
fn becomes_master(lab: &mut HaLab, side: Side, t0: Instant) -> Rise {
    let name = side.name();
    lab.wait_ready(side, DIRECTOR_READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let ready = t0.elapsed();
    lab.wait_master(side, TAKEOVER_TIMEOUT)
        .unwrap_or_else(|e| panic!("{name}, ready, did not become master: {e:#}"));
    let master = t0.elapsed();
    lab.wait_vip(TAKEOVER_TIMEOUT)
        .unwrap_or_else(|e| panic!("the VIP does not answer through {name}: {e:#}"));
    Rise {
        ready,
        master,
        vip: t0.elapsed(),
    }
}

/// Restarts A (it adopts its pinned datapath) under load through B and waits for it
/// to be ready and take the VIP back. Returns when it was restarted, how long it
/// took to be ready, and the switch.
fn fail_back(lab: &mut HaLab) -> (Instant, Duration, Switch) {
    let flows = open_connections(lab);
    let wrk = lab.start_wrk(2, 8, Duration::from_secs(25));
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    lab.revive(Side::A);
    // A has the higher priority and keepalived preempts: A takes the VIP back.
    let rise = becomes_master(lab, Side::A, t0);
    std::thread::sleep(SETTLE);
    let flows = flows.stop();
    let wrk = wrk_done(wrk);
    (
        t0,
        rise.ready,
        Switch {
            takeover: rise.master,
            vip_answers: rise.vip,
            flows,
            wrk,
        },
    )
}

fn assert_all_established(tally: &Tally, what: &str) {
    assert_eq!(
        tally.established(),
        tally.count(),
        "{what}: not every connection opened: {:?}",
        tally.flows.iter().find_map(|f| f.broken.as_ref())
    );
}

/// Every flow of `tally` opened and survived `what` (at `t0`).
fn assert_nothing_lost(lab: &HaLab, tally: &Tally, what: &str, t0: Instant) {
    assert_all_established(tally, what);
    assert_eq!(
        tally.lost(),
        0,
        "with sync, flows survive {what}: {}\n  {}",
        tally.summary(t0),
        lost_entries(lab, tally)
    );
}

/// The failover test of a `mode` pair: A fails, B takes over; A comes back and takes
/// the VIP back. With `sync` nothing may be lost; without it, connections through
/// the failed director must be (or the test is not testing a failover).
fn failover(mode: Mode, sync: bool) {
    let mut lab = HaLab::start(HaSpec::new(mode, SERVER).sync(sync));
    let (t0, over) = fail_over(&mut lab);
    report("A killed", mode, sync, t0, &over);
    println!("  {}", datapaths(&lab));
    assert_all_established(&over.flows, "failover");
    if sync {
        assert_nothing_lost(&lab, &over.flows, "the failover", t0);
    } else {
        assert!(
            over.flows.lost() > 0,
            "without sync connections through the failed director cannot survive; none \
             lost means the failover did not happen: {}",
            over.flows.summary(t0)
        );
    }
    let (t1, ready, back) = fail_back(&mut lab);
    println!("{mode} pair: restarted A ready after {}", secs(ready));
    report("A restarted", mode, sync, t1, &back);
    println!("  {}", datapaths(&lab));
    assert_all_established(&back.flows, "failback");
    if sync {
        assert_nothing_lost(&lab, &back.flows, "the failback", t1);
    }
}

fn failover_without_sync(mode: Mode) {
    failover(mode, false);
}

fn failover_with_sync(mode: Mode) {
    failover(mode, true);
}

per_mode!(failover_without_sync: nat_pair_fails_over_without_sync, dr_pair_fails_over_without_sync);
per_mode!(
    failover_with_sync: nat_pair_fails_over_with_sync_losing_nothing,
    dr_pair_fails_over_with_sync_losing_nothing
);

/// Sixteen clients on the persistent virtual server, one connection each, keep their
/// connection across the failover, and a new connection after it goes to the same
/// real server (the persistence entries were synced).
#[test]
fn persistent_clients_keep_their_real_server_across_failover() {
    need_root!();
    let mut lab = HaLab::start(HaSpec::new(Mode::Nat, SERVER).sync(true));
    let sources = lab.extra_clients();
    let spec = Spec::tcp(lab.persist_vip(), sources.len()).sources(sources.clone());
    let before = Flows::open(lab.client_ns(), &spec);
    std::thread::sleep(Duration::from_secs(1));
    let (t0, _, _) = crash_a(&mut lab);
    let after = Flows::open(lab.client_ns(), &spec).stop();
    std::thread::sleep(SETTLE);
    let before = before.stop();
    println!("persistent clients: {}", before.summary(t0));
    assert_nothing_lost(&lab, &before, "the failover", t0);
    assert_all_established(&after, "after the failover");
    let server_of = |t: &Tally, src: IpAddr| {
        t.flows
            .iter()
            .find(|f| f.source == Some(src))
            .and_then(|f| f.server.clone())
    };
    for &src in &sources {
        assert_eq!(
            server_of(&after, src),
            server_of(&before, src),
            "client {src} moved to another real server across the failover"
        );
    }
}

/// UDP flows (one source port each, a datagram every 100 ms) keep their real server
/// and get every answer through the VIP across a NAT failover.
#[test]
fn udp_flows_survive_nat_failover() {
    need_root!();
    let mut lab = HaLab::start(HaSpec::new(Mode::Nat, SERVER).sync(true));
    let flows = Flows::open(lab.client_ns(), &Spec::udp(lab.udp_vip(), 60));
    std::thread::sleep(Duration::from_secs(1));
    let (t0, _, _) = crash_a(&mut lab);
    std::thread::sleep(SETTLE);
    let tally = flows.stop();
    println!("UDP flows, NAT failover with sync: {}", tally.summary(t0));
    assert_nothing_lost(&lab, &tally, "a NAT failover", t0);
}

/// How long a director whose `director ready` fails is watched: longer than VRRP's
/// master-down interval (3.6 s), after which a backup that ignored its script would
/// have taken over.
const UNREADY_WATCH: Duration = Duration::from_secs(6);

/// Panics if, during `watch`, a director holds a VRRP address while it is not ready
/// (sampled: addresses first, then readiness, so a director that becomes ready in
/// between is not blamed) or if `master` stops being the master.
fn assert_never_master_unready(lab: &HaLab, master: Option<Side>, watch: Duration) {
    let end = Instant::now() + watch;
    loop {
        for side in [Side::A, Side::B] {
            let held = lab.vrrp_addresses_held(side);
            if held > 0
                && let Err(why) = lab.ready(side)
            {
                panic!(
                    "{} holds {held} VRRP address(es) while not ready ({why});\n{}",
                    side.name(),
                    lab.keepalived_log_tails()
                );
            }
        }
        assert_eq!(
            lab.master(),
            master,
            "the master changed;\n{}",
            lab.keepalived_log_tails()
        );
        if Instant::now() >= end {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// keepalived never makes a director master while `director ready` fails: not at a
/// cold start with no director running, not the higher-priority A while its director
/// loads; and a director becomes master once ready.
#[test]
fn keepalived_never_makes_an_unready_director_master() {
    need_root!();
    let mut lab = HaLab::build(HaSpec::new(Mode::Nat, SERVER)).unwrap_or_else(|e| panic!("{e:#}"));
    // Cold start, no director at all: both stay in FAULT, nobody holds the VIP.
    lab.start_keepalived(Side::A);
    lab.start_keepalived(Side::B);
    assert_never_master_unready(&lab, None, UNREADY_WATCH);

    // B's director: B (the lower priority) becomes master once ready.
    let t0 = Instant::now();
    lab.start_director(Side::B);
    let b = becomes_master(&mut lab, Side::B, t0);
    println!(
        "cold start: B ready after {}, master after {} (from its start)",
        secs(b.ready),
        secs(b.master)
    );

    // A's keepalived has run all along with the higher priority, but without its
    // director it must leave B master.
    assert_never_master_unready(&lab, Some(Side::B), UNREADY_WATCH);
    // Its director starts and loads: A must not take the VIP until `director ready`
    // succeeds.
    let t1 = Instant::now();
    lab.start_director(Side::A);
    let end = Instant::now() + DIRECTOR_READY_TIMEOUT;
    while lab.ready(Side::A).is_err() {
        assert!(Instant::now() < end, "A never became ready");
        assert_never_master_unready(&lab, Some(Side::B), Duration::ZERO);
    }
    let a = becomes_master(&mut lab, Side::A, t1);
    println!(
        "A started while B is master: ready after {}, took the VIP after {} (from its start)",
        secs(a.ready),
        secs(a.master)
    );
}
