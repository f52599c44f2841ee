//! N active directors behind a router's ECMP route, announced by bird2 over BGP from
//! each director's `announce_table`: directors leave, die and join under long-lived
//! connections; a VIP whose last real server fails is withdrawn and comes back; a
//! stopped director keeps announcing, a restarted one drops what it should no longer
//! announce, `director teardown` withdraws.
//!
//! After every step the router's kernel route for the VIP must name exactly the
//! directors that should be announcing. Each test prints its figures
//! (`cargo xtask test -- netns_ecmp --nocapture`).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use director_tests::lab::ecmp::{EcmpLab, EcmpSpec, SINGLE_CHECK, SINGLE_VIP, STREAM_VIP, UDP_VIP};
use director_tests::long_lived::{Flows, Spec, Tally};
use director_tests::need_root;

const SERVER: &str = env!("CARGO_BIN_EXE_director-lab-server");

/// The long-lived TCP connections spread by the router.
const CONNECTIONS: usize = 300;

/// A flow silent this long is broken. A director's death is noticed by BFD in 0.3 s
/// and a connection that survives it resumes at its next retransmission (0.2, 0.6,
/// 1.4 s after the lost segment): 3 s tells it from a dead one.
const STALL: Duration = Duration::from_secs(3);

/// After a step: long enough for a flow that did not survive to count as broken.
const SETTLE: Duration = STALL.saturating_add(Duration::from_secs(1));

/// How long the router's route may take to follow a step (loose: a shared machine).
const ROUTE_TIMEOUT: Duration = Duration::from_secs(10);

/// How far apart a rolling reload reaches two directors.
const ROLLING_GAP: Duration = Duration::from_secs(10);

/// One ECMP lab at a time: each runs four directors, their bird2 and hundreds of
/// flows, and BFD's 0.3 s detection must not see a starved peer as a dead one.
static ONE_LAB: Mutex<()> = Mutex::new(());

fn one_lab() -> MutexGuard<'static, ()> {
    ONE_LAB.lock().unwrap_or_else(PoisonError::into_inner)
}

fn dirs(list: &[usize]) -> BTreeSet<usize> {
    list.iter().copied().collect()
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// Packets director `n`'s datapath took for the stream virtual server.
fn packets_in(lab: &EcmpLab, n: usize) -> u64 {
    let status = lab.ask(n, &["status"]).unwrap_or_else(|e| panic!("{e:#}"));
    status["virtual_servers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|vs| vs["name"] == "stream")
        .and_then(|vs| vs["totals"]["packets_in"].as_u64())
        .unwrap_or_else(|| panic!("no stream virtual server in {status}"))
}

/// The flows that broke in `[from, to)`.
fn lost_between(tally: &Tally, from: Instant, to: Instant) -> usize {
    tally
        .flows
        .iter()
        .filter_map(|f| f.broken.as_ref())
        .filter(|b| b.at >= from && b.at < to)
        .count()
}

/// Starts director `n` and watches it join: the router must not name it before it is
/// ready, and once it does, the director holds at least `entries` connections (the
/// group's). Returns how long until it was ready and until the router named it.
fn join(lab: &mut EcmpLab, n: usize, others: &[usize], entries: u64) -> (Duration, Duration) {
    let vip = *STREAM_VIP.ip();
    let t0 = Instant::now();
    lab.start_director(n);
    let mut ready = None;
    loop {
        let route = lab.route(vip).unwrap_or_else(|e| panic!("{e:#}"));
        if route.contains(&n) {
            let announced = t0.elapsed();
            // Checked after the route was seen: readiness does not go back, so a
            // director that is not ready now was not ready when announced.
            lab.ready(n)
                .unwrap_or_else(|e| panic!("director {n} announced before it was ready: {e}"));
            let held = lab.conns(n).unwrap_or_else(|e| panic!("{e:#}"));
            assert!(
                held >= entries,
                "director {n} announced holding {held} connection entries, not the \
                 group's {entries}"
            );
            let ready = ready.unwrap_or(announced);
            lab.wait_route(vip, &dirs(&[others, &[n]].concat()), ROUTE_TIMEOUT)
                .unwrap_or_else(|e| panic!("{e:#}"));
            return (ready, announced);
        }
        if ready.is_none() && lab.ready(n).is_ok() {
            ready = Some(t0.elapsed());
        }
        assert!(
            t0.elapsed() < ROUTE_TIMEOUT * 3,
            "director {n} not announced within {:?}",
            ROUTE_TIMEOUT * 3
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What one run of the leave, die, join steps measured.
struct Steps {
    /// Packets each of the first three directors took before the steps.
    spread: Vec<u64>,
    /// From each step until the router's route followed it.
    left: Duration,
    died: Duration,
    /// From the joiner's start until it was ready, and until the router named it.
    ready: Duration,
    announced: Duration,
    /// Connections lost at each step: leave, die, join.
    lost: [usize; 3],
    tally: Tally,
    t0: Instant,
}

impl Steps {
    fn report(&self, what: &str) {
        println!(
            "ECMP, {what}: {CONNECTIONS} connections, packets per director before the \
             steps {:?}\n  \
             director 1 leaves (birdc disable): router's route without it after {}, {} lost\n  \
             director 3 dies (links down, killed): router's route without it after {}, {} lost\n  \
             director 4 joins: ready after {}, announced after {}, {} lost\n  {}",
            self.spread,
            ms(self.left),
            self.lost[0],
            ms(self.died),
            self.lost[1],
            ms(self.ready),
            ms(self.announced),
            self.lost[2],
            self.tally.summary(self.t0)
        );
        assert_eq!(
            self.tally.established(),
            CONNECTIONS,
            "{}",
            self.tally.summary(self.t0)
        );
    }

    fn assert_nothing_lost(&self) {
        assert_eq!(
            self.tally.lost(),
            0,
            "connections lost per step (leave, die, join) {:?}: {}",
            self.lost,
            self.tally.summary(self.t0)
        );
    }
}

/// Three directors of `spec` under `CONNECTIONS` long-lived connections: director 1
/// leaves, director 3 dies, director 4 joins, the router's route checked after each.
/// With `backend_changes`, a fourth real server is added before the leave and real
/// server 2 drained before the death (the joiner starts with the fourth server and
/// without the drain: an operator's drain is not in the config).
fn leave_die_join(spec: EcmpSpec, backend_changes: bool) -> Steps {
    let sync = spec.sync;
    let spec = if backend_changes {
        EcmpSpec { servers: 4, ..spec }
    } else {
        spec
    };
    let mut lab = EcmpLab::start(spec);
    let vip = *STREAM_VIP.ip();
    assert_eq!(
        lab.announced(1).unwrap_or_else(|e| panic!("{e:#}")),
        [STREAM_VIP.ip().to_string(), SINGLE_VIP.ip().to_string()],
        "director 1's status lists what it announces"
    );
    let spec = Spec {
        stall_limit: STALL,
        ..Spec::tcp(STREAM_VIP.into(), CONNECTIONS)
    };
    let flows = Flows::open(lab.client_ns(), &spec);
    std::thread::sleep(Duration::from_secs(1));
    let spread: Vec<u64> = (1..=3).map(|n| packets_in(&lab, n)).collect();
    assert!(
        spread.iter().all(|&p| p > 0),
        "the router spreads the connections over every director: packets {spread:?}"
    );

    let t0 = Instant::now();
    if backend_changes {
        lab.set_servers(&[1, 2, 3, 4]);
    }
    let leaving = Instant::now();
    lab.leave(1);
    lab.wait_route(vip, &dirs(&[2, 3]), ROUTE_TIMEOUT)
        .unwrap_or_else(|e| panic!("director 1 left: {e:#}"));
    let left = leaving.elapsed();
    std::thread::sleep(SETTLE);

    let death = Instant::now();
    if backend_changes {
        lab.drain(2);
    }
    let killed = Instant::now();
    lab.die(3);
    lab.wait_route(vip, &dirs(&[2]), ROUTE_TIMEOUT)
        .unwrap_or_else(|e| panic!("director 3 died: {e:#}"));
    let died = killed.elapsed();
    std::thread::sleep(SETTLE);

    let joining = Instant::now();
    let entries = if sync {
        u64::try_from(CONNECTIONS).expect("small")
    } else {
        0
    };
    let (ready, announced) = join(&mut lab, 4, &[2], entries);
    std::thread::sleep(SETTLE);
    let end = Instant::now();
    let tally = flows.stop();
    Steps {
        spread,
        left,
        died,
        ready,
        announced,
        lost: [
            lost_between(&tally, t0, death),
            lost_between(&tally, death, joining),
            lost_between(&tally, joining, end),
        ],
        tally,
        t0,
    }
}

#[test]
fn directors_leave_die_and_join_without_losing_a_connection() {
    need_root!();
    let _one = one_lab();
    let steps = leave_die_join(EcmpSpec::new(SERVER), false);
    steps.report("3 directors, mh, sync");
    steps.assert_nothing_lost();
}

/// The leave, die, join steps with backend changes, `mh` then `wrr`, each reported.
fn with_backend_changes(sync: bool) -> Vec<Steps> {
    ["mh", "wrr"]
        .into_iter()
        .map(|scheduler| {
            let spec = EcmpSpec {
                scheduler,
                sync,
                ..EcmpSpec::new(SERVER)
            };
            let steps = leave_die_join(spec, true);
            let sync = if sync { "sync" } else { "no sync" };
            steps.report(&format!(
                "3 directors, {scheduler}, {sync}, a server added then one drained"
            ));
            steps
        })
        .collect()
}

#[test]
fn with_sync_backend_changes_between_the_steps_lose_nothing() {
    need_root!();
    let _one = one_lab();
    for steps in with_backend_changes(true) {
        steps.assert_nothing_lost();
    }
}

/// The baseline that shows what sync buys: the same steps and backend changes
/// without it (figures only; how many break depends on the hashes).
#[test]
fn without_sync_backend_changes_between_the_steps() {
    need_root!();
    let _one = one_lab();
    with_backend_changes(false);
}

/// A rolling reload: real server 4 reaches director 2's configuration
/// `ROLLING_GAP` before directors 1 and 3's, while connections open; right after
/// the others catch up, director 2 leaves and its flows move to them. Director 2's
/// connections to real server 4 were synced while the others did not know that
/// server: they must still hold them, or `wrr` (which schedules no mid-flow
/// segment) breaks every one of them.
#[test]
fn a_server_reaching_one_director_first_in_a_rolling_reload_loses_nothing() {
    need_root!();
    let _one = one_lab();
    let mut lab = EcmpLab::start(EcmpSpec {
        directors: 3,
        servers: 4,
        scheduler: "wrr",
        ..EcmpSpec::new(SERVER)
    });
    let vip = *STREAM_VIP.ip();
    let t0 = Instant::now();
    lab.set_servers_on(&[2], &[1, 2, 3, 4]);
    let spec = Spec {
        stall_limit: STALL,
        ..Spec::tcp(STREAM_VIP.into(), CONNECTIONS)
    };
    let flows = Flows::open(lab.client_ns(), &spec);
    std::thread::sleep(ROLLING_GAP);
    lab.set_servers_on(&[1, 3], &[1, 2, 3, 4]);
    let caught_up = Instant::now();
    lab.leave(2);
    lab.wait_route(vip, &dirs(&[1, 3]), ROUTE_TIMEOUT)
        .unwrap_or_else(|e| panic!("director 2 left: {e:#}"));
    let left = caught_up.elapsed();
    std::thread::sleep(SETTLE);
    let tally = flows.stop();
    let on_rs4 = tally.by_server().get("rs4").copied().unwrap_or(0);
    let installs = |n: usize| {
        lab.ask(n, &["status"]).unwrap_or_else(|e| panic!("{e:#}"))["sync"]["installs"].clone()
    };
    println!(
        "ECMP, rolling reload (wrr): real server 4 on director 2 {} s before directors 1 and 3; \
         {CONNECTIONS} connections, {on_rs4} of them to real server 4; director 2 left {} after \
         the others caught up: {} lost\n  installs on director 1: {}\n  on director 3: {}\n  {}",
        ROLLING_GAP.as_secs(),
        ms(left),
        tally.lost(),
        installs(1),
        installs(3),
        tally.summary(t0)
    );
    assert!(
        on_rs4 > 0,
        "no connection went to real server 4 through director 2: the test shows nothing"
    );
    assert_eq!(tally.lost(), 0, "{}", tally.summary(t0));
}

#[test]
fn udp_flows_keep_their_server_across_a_director_leaving() {
    need_root!();
    let _one = one_lab();
    let lab = EcmpLab::start(EcmpSpec {
        directors: 3,
        ..EcmpSpec::new(SERVER)
    });
    let spec = Spec {
        stall_limit: STALL,
        ..Spec::udp(UDP_VIP.into(), 100)
    };
    let flows = Flows::open(lab.client_ns(), &spec);
    std::thread::sleep(Duration::from_secs(1));
    let leave = Instant::now();
    lab.leave(2);
    let left = lab
        .wait_route(*UDP_VIP.ip(), &dirs(&[1, 3]), ROUTE_TIMEOUT)
        .unwrap_or_else(|e| panic!("director 2 left: {e:#}"));
    std::thread::sleep(SETTLE);
    let tally = flows.stop();
    println!(
        "ECMP, UDP in DR, director 2 leaves: route without it after {}\n  {}",
        ms(left),
        tally.summary(leave)
    );
    assert_eq!(tally.established(), 100, "{}", tally.summary(leave));
    assert_eq!(tally.lost(), 0, "{}", tally.summary(leave));
}

/// Waits until the router's route for `vip` names `want`; how long from `t0`.
fn route_after(lab: &EcmpLab, vip: Ipv4Addr, want: &[usize], t0: Instant, what: &str) -> Duration {
    lab.wait_route(vip, &dirs(want), ROUTE_TIMEOUT)
        .unwrap_or_else(|e| panic!("{what}: {e:#}"));
    t0.elapsed()
}

#[test]
fn a_vip_is_announced_while_a_server_can_take_connections() {
    need_root!();
    let _one = one_lab();
    let mut lab = EcmpLab::start(EcmpSpec {
        directors: 2,
        started: 2,
        sync: false,
        ..EcmpSpec::new(SERVER)
    });
    let (vip, other) = (*SINGLE_VIP.ip(), *STREAM_VIP.ip());
    let (interval, fall, timeout) = SINGLE_CHECK;
    let detection = interval * fall + timeout;

    let t0 = Instant::now();
    lab.set_single_up(false);
    let withdrawn = route_after(&lab, vip, &[], t0, "its last server failed");
    assert_eq!(
        lab.route(other).expect("route"),
        dirs(&[1, 2]),
        "the other VIP stays"
    );
    let t0 = Instant::now();
    lab.set_single_up(true);
    let back = route_after(&lab, vip, &[1, 2], t0, "its server recovered");
    println!(
        "ECMP, the single server of {vip} fails its check (detection {}): withdrawn from \
         the router after {}, back {} after it recovers",
        ms(detection),
        ms(withdrawn),
        ms(back)
    );
    assert!(
        withdrawn <= detection + Duration::from_secs(2),
        "withdrawn after {withdrawn:?}, detection time {detection:?}"
    );

    // A stopped director keeps announcing: its pinned datapath still forwards.
    lab.stop_director(1);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(lab.route(other).expect("route"), dirs(&[1, 2]));
    // What changed while it was stopped is put right once it runs again: its server
    // fails while director 1 is away, so only director 1's stale route is left ...
    let t0 = Instant::now();
    lab.set_single_up(false);
    route_after(
        &lab,
        vip,
        &[1],
        t0,
        "director 2 withdraws, stopped director 1 does not",
    );
    // ... until director 1 is back, ready and done with its first checks.
    let t0 = Instant::now();
    lab.start_director(1);
    let stale = route_after(&lab, vip, &[], t0, "the restarted director withdraws");
    assert_eq!(lab.route(other).expect("route"), dirs(&[1, 2]));
    println!(
        "ECMP, a restarted director withdrew its stale route after {}",
        ms(stale)
    );

    // `director teardown` withdraws every route it made.
    lab.set_single_up(true);
    route_after(&lab, vip, &[1, 2], Instant::now(), "recovered again");
    lab.stop_director(1);
    let out = lab.teardown(1);
    assert!(
        out.contains("withdrew 192.0.2.10 (table 100), 192.0.2.20 (table 100)"),
        "teardown says what it withdrew: {out}"
    );
    route_after(&lab, other, &[2], Instant::now(), "teardown of director 1");
    route_after(&lab, vip, &[2], Instant::now(), "teardown of director 1");
}
