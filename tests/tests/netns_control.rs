//! The control plane end to end, under load: health checks taking a crashed real server
//! out and back, reloads (good and bad) while wrk runs, restarts and crashes of the
//! director that lose no connection, `director status` and the metrics endpoint against
//! what the clients saw, and the operator's `weight` and `drain`.
//!
//! Each test builds its own NAT lab (see `director_tests::lab`), talks to the director
//! through its control socket (`director <cmd> --socket …`) and keeps its load bounded
//! (wrk with a `-d` of a few seconds, inside the lab's client namespace). Needs root,
//! the director binary (`$DIRECTOR_BIN` or target/debug/director) and `wrk`; skips with
//! a printed reason when not root.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use director::control::{ConnEntry, Response};
use director::status::{RsStatus, Status, VsStatus};
use director_tests::config::{Config, RealServer, VirtualServer};
use director_tests::http::{self, KeepAlive, Tally, Timeouts};
use director_tests::lab::{self, Lab, LabSpec, Mode, Role, WrkReport};
use director_tests::need_root;

const SERVER: &str = env!("CARGO_BIN_EXE_director-lab-server");
const VS: &str = "web";
const METRICS_PORT: u16 = 9465;

// ---- setup -------------------------------------------------------------------------

/// A NAT lab with `n` real servers (`rs1`…), the director not started.
fn nat_lab(n: usize) -> Lab {
    Lab::build(LabSpec::new(Mode::Nat, SERVER).servers(n)).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The address (`10.1.0.1N:8080`) of real server `rsN`.
fn addr(lab: &Lab, n: usize) -> String {
    lab.real_servers()[n - 1].to_string()
}

/// The NAT virtual server "web" on the VIP with real servers `(N, weight)` (`rsN`).
fn web_vs(lab: &Lab, servers: &[(usize, u32)]) -> VirtualServer {
    servers
        .iter()
        .fold(VirtualServer::tcp(VS, lab.vip()), |vs, &(n, weight)| {
            vs.real_server(RealServer::new(addr(lab, n)).weight(weight))
        })
}

/// The config of just [`web_vs`].
fn config(lab: &Lab, servers: &[(usize, u32)]) -> String {
    Config::lab(Mode::Nat)
        .virtual_server(web_vs(lab, servers))
        .to_toml()
}

/// rs1, rs2 and rs3 at weight 1.
const EQUAL: &[(usize, u32)] = &[(1, 1), (2, 1), (3, 1)];

/// A NAT lab with `n` real servers, the director running with [`config`]`(servers)`.
fn running(n: usize, servers: &[(usize, u32)]) -> Lab {
    let mut lab = nat_lab(n);
    let config = config(&lab, servers);
    lab.start_director(config);
    lab
}

// ---- the control client --------------------------------------------------------------

/// `director ARGS… --socket <the lab director's socket>`, run to completion.
fn director_cli(lab: &Lab, args: &[&str]) -> Output {
    let director = lab.director().expect("the director is running");
    Command::new(lab.director_bin())
        .args(args)
        .arg("--socket")
        .arg(director.socket())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run director {args:?}: {e}"))
}

fn show(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

/// `director ARGS…` that must succeed; returns its stdout.
fn director_ok(lab: &Lab, args: &[&str]) -> String {
    let out = director_cli(lab, args);
    assert!(
        out.status.success(),
        "director {args:?} failed: {}\ndirector log tail:\n{}",
        show(&out),
        lab.director_log_tail(30)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `--json` command's response.
fn director_json(lab: &Lab, args: &[&str]) -> Response {
    let mut args = args.to_vec();
    args.push("--json");
    let stdout = director_ok(lab, &args);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("director {args:?}: bad JSON ({e}):\n{stdout}"))
}

/// `director status --json`.
fn status(lab: &Lab) -> Status {
    match director_json(lab, &["status"]) {
        Response::Status(s) => *s,
        other => panic!("status answered {other:?}"),
    }
}

/// `director conns --json`: the connection table.
fn conns(lab: &Lab) -> Vec<ConnEntry> {
    match director_json(lab, &["conns", "--limit", "100000"]) {
        Response::Conns { entries, .. } => entries,
        other => panic!("conns answered {other:?}"),
    }
}

fn web(s: &Status) -> &VsStatus {
    s.virtual_servers
        .iter()
        .find(|vs| vs.name == VS && !vs.removed)
        .unwrap_or_else(|| panic!("no virtual server {VS} in {s:#?}"))
}

fn rs<'a>(s: &'a Status, address: &str) -> &'a RsStatus {
    web(s)
        .real_servers
        .iter()
        .find(|r| r.address == address)
        .unwrap_or_else(|| panic!("no real server {address} in {:#?}", web(s)))
}

/// What a status says about the servers' configuration and state (not the counters).
fn servers_view(s: &Status) -> Vec<String> {
    s.virtual_servers
        .iter()
        .flat_map(|vs| {
            vs.real_servers.iter().map(move |r| {
                format!(
                    "{}/{} {} weight {} config_weight {} backup {} health {} draining {}",
                    vs.name,
                    vs.scheduler,
                    r.address,
                    r.weight,
                    r.config_weight,
                    r.backup,
                    r.health,
                    r.draining
                )
            })
        })
        .collect()
}

/// Polls `director status` every 100 ms until `done` holds; returns that status and
/// how long it took. Panics with the last status after `limit`.
fn wait_for_status(
    lab: &Lab,
    limit: Duration,
    what: &str,
    done: impl Fn(&Status) -> bool,
) -> (Status, Duration) {
    let start = Instant::now();
    loop {
        let s = status(lab);
        if done(&s) {
            return (s, start.elapsed());
        }
        if start.elapsed() >= limit {
            panic!(
                "not {what} within {limit:?}; last status:\n{}\ndirector log tail:\n{}",
                servers_view(&s).join("\n"),
                lab.director_log_tail(30)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---- assertions ------------------------------------------------------------------------

fn assert_no_failures(tally: &Tally, what: &str) {
    assert_eq!(
        tally.failures, 0,
        "{what}: failed requests, first errors: {:#?}",
        tally.errors
    );
}

fn assert_wrk_clean(report: &WrkReport, what: &str) {
    assert!(report.requests > 0, "{what}: wrk completed no request");
    assert_eq!(
        (report.socket_errors(), report.bad_status),
        (0, 0),
        "{what}: wrk saw errors: {report}\n{}",
        report.output
    );
}

fn wait_wrk(wrk: lab::Wrk, what: &str) -> WrkReport {
    let report = wrk.wait().unwrap_or_else(|e| panic!("{what}: {e:#}"));
    println!("{what}: {report}");
    report
}

/// `share` (percent of the tally) within ±`tolerance` points of `expected`.
fn assert_share(tally: &Tally, server: &str, expected: f64, tolerance: f64) {
    let share = tally.share_percent(server);
    assert!(
        (share - expected).abs() <= tolerance,
        "{server} got {share:.1}%, expected {expected}% ± {tolerance}: {:?}",
        tally.by_server
    );
}

// ---- tests -------------------------------------------------------------------------------

/// A real server crashes under load: the tcp check takes it out within
/// interval × fall + timeout, it gets no new connection after that, the clients see
/// only the few errors of the connections it had; restarted, it comes back after `rise`
/// good probes and gets new connections again.
#[test]
fn failed_server_out_and_back_under_wrk() {
    need_root!();
    let t0 = Instant::now();
    let (interval, timeout, rise, fall) =
        (Duration::from_millis(500), Duration::from_millis(300), 2, 2);
    let slack = Duration::from_secs(1);
    let mut lab = nat_lab(3);
    let checked = web_vs(&lab, EQUAL)
        .health_check("kind", "tcp")
        .health_check("interval", format!("{}ms", interval.as_millis()))
        .health_check("timeout", format!("{}ms", timeout.as_millis()))
        .health_check("rise", rise)
        .health_check("fall", fall);
    lab.start_director(Config::lab(Mode::Nat).virtual_server(checked));
    let rs2 = addr(&lab, 2);
    wait_for_status(&lab, Duration::from_secs(5), "all servers up", |s| {
        web(s).real_servers.iter().all(|r| r.health == "up")
    });

    let wrk = lab.start_wrk(2, 12, Duration::from_secs(8));
    std::thread::sleep(Duration::from_secs(2));
    let before_kill = rs(&status(&lab), &rs2).totals.conns;
    let killed = lab.kill_server(2);
    println!("rs2 killed ({killed}); {before_kill} connections were scheduled to it");

    let detect_limit = interval * fall + timeout + slack;
    let (down, took) = wait_for_status(&lab, detect_limit, "rs2 down with weight 0", |s| {
        let r = rs(s, &rs2);
        r.health == "down" && r.weight == 0
    });
    let r = rs(&down, &rs2);
    println!(
        "rs2 down {took:?} after the kill (limit {detect_limit:?}): reason {:?}, transitions {}",
        r.health_reason, r.health_transitions
    );
    let conns_at_down = r.totals.conns;
    std::thread::sleep(Duration::from_secs(2));
    let conns_later = rs(&status(&lab), &rs2).totals.conns;
    assert_eq!(
        conns_later, conns_at_down,
        "rs2 got new connections while down"
    );

    let during = wait_wrk(wrk, "wrk while rs2 crashed");
    assert!(
        during.failure_percent() <= 2.0,
        "{} failures out of {} requests ({:.2}%) while rs2 crashed: {during}",
        during.failures(),
        during.requests,
        during.failure_percent()
    );
    let after = wait_wrk(
        lab.start_wrk(2, 12, Duration::from_secs(2)),
        "wrk after detection",
    );
    assert_wrk_clean(&after, "wrk after rs2 was taken out");
    assert_eq!(
        rs(&status(&lab), &rs2).totals.conns,
        conns_at_down,
        "rs2 got connections of the second wrk run"
    );

    lab.restart_server(2).unwrap_or_else(|e| panic!("{e:#}"));
    let back_limit = interval * rise + slack;
    let (_, took) = wait_for_status(&lab, back_limit, "rs2 up again", |s| {
        let r = rs(s, &rs2);
        r.health == "up" && r.weight == 1
    });
    println!("rs2 up {took:?} after its restart (limit {back_limit:?})");
    let tally = lab.get_many(60, &[]);
    assert_no_failures(&tally, "after rs2 came back");
    assert!(
        tally.count("rs2") > 0,
        "rs2 is up but got none of 60 new connections: {:?}",
        tally.by_server
    );
    println!("failed_server_out_and_back_under_wrk: {:?}", t0.elapsed());
}

/// A reload while wrk runs: rs1's weight tripled, rs2 removed (draining), rs4 added.
/// wrk sees no error, and new connections then follow the new weights.
#[test]
fn reload_under_wrk_adds_changes_and_removes() {
    need_root!();
    let t0 = Instant::now();
    let lab = running(4, EQUAL);
    let wrk = lab.start_wrk(2, 12, Duration::from_secs(8));
    std::thread::sleep(Duration::from_secs(2));

    let path = lab
        .director()
        .expect("director running")
        .config_path()
        .to_owned();
    std::fs::write(&path, config(&lab, &[(1, 3), (3, 1), (4, 1)]))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let reloaded = Instant::now();
    let out = director_ok(&lab, &["reload"]);
    println!("reload took {:?}: {}", reloaded.elapsed(), out.trim());

    let report = wait_wrk(wrk, "wrk across the reload");
    assert_wrk_clean(&report, "wrk across the reload");

    let tally = lab.get_many(500, &[]);
    println!(
        "500 new connections after the reload: {:?}",
        tally.by_server
    );
    assert_no_failures(&tally, "after the reload");
    assert_eq!(
        tally.count("rs2"),
        0,
        "removed rs2 got new connections: {:?}",
        tally.by_server
    );
    assert_share(&tally, "rs1", 60.0, 5.0);
    assert_share(&tally, "rs3", 20.0, 5.0);
    assert_share(&tally, "rs4", 20.0, 5.0);

    let s = status(&lab);
    let rs2 = addr(&lab, 2);
    let draining: Vec<&RsStatus> = s
        .virtual_servers
        .iter()
        .filter(|vs| vs.name == VS)
        .flat_map(|vs| &vs.real_servers)
        .filter(|r| r.address == rs2)
        .collect();
    assert!(
        !draining.is_empty() && draining.iter().all(|r| r.draining && r.weight == 0),
        "rs2 is not shown draining after its removal:\n{}",
        servers_view(&s).join("\n")
    );
    assert_eq!(s.reloads, 1, "reloads counter");
    println!(
        "reload_under_wrk_adds_changes_and_removes: {:?}",
        t0.elapsed()
    );
}

/// A reload of a file with an error is refused with `FILE:LINE:COL:` and changes
/// nothing, while wrk runs without an error.
#[test]
fn invalid_reload_is_rejected() {
    need_root!();
    let t0 = Instant::now();
    let servers = [(1, 2), (2, 1), (3, 1)];
    let lab = running(3, &servers);
    let good = config(&lab, &servers);
    let before = status(&lab);

    // rs2's `weight = 1` becomes `weight = "x"`: the error is at the value.
    let rs2_line = good
        .lines()
        .position(|l| l == format!("address = \"{}\"", addr(&lab, 2)))
        .expect("rs2's address line")
        + 1;
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    assert_eq!(lines[rs2_line], "weight = 1");
    lines[rs2_line] = "weight = \"x\"".to_owned();
    let (line, col) = (rs2_line + 1, "weight = ".len() + 1);
    let bad = lines.join("\n") + "\n";

    let wrk = lab.start_wrk(2, 12, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1500));
    let path = lab
        .director()
        .expect("director running")
        .config_path()
        .to_owned();
    std::fs::write(&path, &bad).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let out = director_cli(&lab, &["reload"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("rejected reload: {}", show(&out));
    assert!(
        !out.status.success(),
        "a bad config was accepted: {}",
        show(&out)
    );
    let want = format!("director.toml:{line}:{col}:");
    assert!(
        stderr.contains(&want),
        "stderr does not point at {want}: {}",
        show(&out)
    );

    // The daemon's log says so too, at the same place (journald is where an
    // operator of `systemctl reload` looks).
    let log = std::fs::read_to_string(lab.director().expect("director running").log_path())
        .expect("director's log");
    assert!(
        log.lines()
            .any(|l| l.contains("reload rejected") && l.contains(&want)),
        "the daemon's log has no rejected reload at {want}:\n{}",
        lab.director().expect("director running").log_tail(20)
    );

    let report = wait_wrk(wrk, "wrk across the rejected reload");
    assert_wrk_clean(&report, "wrk across the rejected reload");
    let after = status(&lab);
    assert_eq!(
        servers_view(&after),
        servers_view(&before),
        "a rejected reload changed the servers"
    );
    assert_eq!(
        after.reloads, before.reloads,
        "a rejected reload was counted"
    );
    // Still serving with the old weights (2:1:1).
    let tally = lab.get_many(200, &[]);
    println!("200 new connections after it: {:?}", tally.by_server);
    assert_no_failures(&tally, "after the rejected reload");
    assert_share(&tally, "rs1", 50.0, 5.0);
    assert_share(&tally, "rs2", 25.0, 5.0);
    assert_share(&tally, "rs3", 25.0, 5.0);
    println!("invalid_reload_is_rejected: {:?}", t0.elapsed());
}

/// `n` keep-alive connections through the VIP, each answered once: the connections
/// and the real server that answered each.
fn keep_alive(lab: &Lab, n: usize) -> (Vec<KeepAlive>, Vec<String>) {
    let mut conns = lab.keep_alive(n);
    let servers = conns
        .iter_mut()
        .enumerate()
        .map(|(i, c)| {
            let r = c
                .get("/")
                .unwrap_or_else(|e| panic!("keep-alive connection {i}, first request: {e:#}"));
            assert_eq!(r.status, 200);
            r.server().expect("X-Server").to_owned()
        })
        .collect();
    (conns, servers)
}

/// Each connection of [`keep_alive`] is answered again, by the same real server, after
/// `what`.
fn assert_same_servers(conns: &mut [KeepAlive], first: &[String], what: &str) {
    for (i, c) in conns.iter_mut().enumerate() {
        let r = c
            .get("/")
            .unwrap_or_else(|e| panic!("long-lived connection {i} after {what}: {e:#}"));
        assert_eq!(r.status, 200);
        assert_eq!(
            r.server(),
            Some(first[i].as_str()),
            "long-lived connection {i} moved to another real server across {what}"
        );
    }
}

/// SIGTERM and restart, then SIGKILL and restart, under wrk: no request fails and
/// long-lived connections opened before keep their real server.
#[test]
fn restart_and_kill_lose_nothing() {
    need_root!();
    let t0 = Instant::now();
    let mut lab = running(3, EQUAL);
    let config = config(&lab, EQUAL);

    let (mut long_lived, first) = keep_alive(&lab, 4);
    println!("long-lived connections answered by {first:?}");

    let wrk_length = Duration::from_secs(10);
    let wrk = lab.start_wrk(2, 12, wrk_length);
    let wrk_started = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    let stopped = lab.stop_director().expect("director was running");
    assert!(
        stopped.success(),
        "director exited with {stopped} on SIGTERM"
    );
    assert!(lab.pin_dir().exists(), "pins gone after SIGTERM");
    lab.start_director(config.clone());
    println!("SIGTERM + start until ready: {:?}", t.elapsed());

    // The crash must happen under load too: a slow start (the verifier) can use up
    // most of the first run, so a second one covers the SIGKILL then.
    std::thread::sleep(Duration::from_millis(500));
    let second = (wrk_started.elapsed() + Duration::from_secs(2) > wrk_length).then(|| {
        println!("first wrk nearly over: a second one covers the SIGKILL");
        let w = lab.start_wrk(2, 12, Duration::from_secs(3));
        std::thread::sleep(Duration::from_millis(500));
        w
    });
    let t = Instant::now();
    let killed = lab.kill_director().expect("director was running");
    assert_eq!(killed.signal(), Some(9), "director: {killed}");
    assert!(lab.pin_dir().exists(), "pins gone after SIGKILL");
    lab.start_director(config.clone());
    println!("SIGKILL + start until ready: {:?}", t.elapsed());

    let report = wait_wrk(wrk, "wrk across restart and crash");
    assert_wrk_clean(&report, "wrk across a restart and a crash of the director");
    if let Some(second) = second {
        let report = wait_wrk(second, "second wrk across the crash");
        assert_wrk_clean(&report, "wrk across a crash of the director");
    }

    let table = conns(&lab);
    for (i, c) in long_lived.iter_mut().enumerate() {
        let local = c.stream().local_addr().expect("local address").to_string();
        assert!(
            table.iter().any(|e| e.client == local),
            "long-lived connection {i} ({local}) not in the adopted connection table"
        );
    }
    assert_same_servers(&mut long_lived, &first, "the restarts");
    println!("restart_and_kill_lose_nothing: {:?}", t0.elapsed());
}

/// The previous map layout's director (`DIRECTOR_PREVIOUS_BIN`, which `cargo xtask
/// test` builds from this repository's history) forwards long-lived connections and
/// `wrk`; it stops with its datapath pinned and this build starts on the same pin
/// directory: its first start over that layout carries every connection over (ids,
/// connection entries), so no request fails and every long-lived connection keeps its
/// real server; the previous layout's maps are gone afterwards.
#[test]
fn an_upgrade_from_the_previous_map_layout_loses_nothing() {
    need_root!();
    let Some(previous) = std::env::var_os("DIRECTOR_PREVIOUS_BIN") else {
        println!("skipped: DIRECTOR_PREVIOUS_BIN is not set (cargo xtask test builds it)");
        return;
    };
    let t0 = Instant::now();
    let mut lab = nat_lab(3);
    let current = lab.director_bin().to_path_buf();
    let config = config(&lab, EQUAL);
    lab.use_director_bin(&previous);
    lab.start_director(config.clone());
    let maps = lab.pin_dir().join("maps");
    let layouts = |maps: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(maps)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let before = layouts(&maps);
    assert_eq!(
        before.len(),
        1,
        "one layout pinned by the previous build: {before:?}"
    );

    let (mut long_lived, first) = keep_alive(&lab, 20);

    let wrk = lab.start_wrk(2, 12, Duration::from_secs(6));
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    let stopped = lab.stop_director().expect("the previous build was running");
    assert!(
        stopped.success(),
        "the previous build exited with {stopped}"
    );
    lab.use_director_bin(&current);
    lab.start_director(config);
    println!(
        "upgrade from {}: stop + start of this build until it forwards: {:?}",
        before[0],
        t.elapsed()
    );
    let report = wait_wrk(wrk, "wrk across the upgrade");
    assert_wrk_clean(&report, "wrk across the upgrade");
    assert_same_servers(&mut long_lived, &first, "the upgrade");
    let log = lab.director().map(|d| d.log_tail(200)).unwrap_or_default();
    let carried: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("upgrade from map layout"))
        .collect();
    println!("{}", carried.join("\n"));
    assert_eq!(
        carried.len(),
        2,
        "both passes of the upgrade logged:\n{log}"
    );
    assert!(
        !log.contains("no room for"),
        "entries the new maps had no room for:\n{log}"
    );
    let after = layouts(&maps);
    assert_eq!(
        after.len(),
        1,
        "only this build's layout is left: {after:?}"
    );
    assert_ne!(after, before, "this build pins a layout of its own");
    println!(
        "an_upgrade_from_the_previous_map_layout_loses_nothing: {:?}",
        t0.elapsed()
    );
}

/// `status --json` counts exactly the connections the clients made, per real server
/// and in total, and /metrics says the same.
#[test]
fn status_json_agrees_with_clients() {
    need_root!();
    let t0 = Instant::now();
    let lab = running(3, EQUAL);

    // Ready for keepalived: attached, configured, and no sync peers to wait for.
    assert_eq!(director_ok(&lab, &["ready"]).trim(), "ready");

    let before = status(&lab);
    let n = 200;
    let tally = lab.get_many(n, &[]);
    assert_no_failures(&tally, "get_many");
    let after = status(&lab);
    for (i, name) in lab.server_names().iter().enumerate() {
        let a = addr(&lab, i + 1);
        let delta = rs(&after, &a).totals.conns - rs(&before, &a).totals.conns;
        assert_eq!(
            delta,
            tally.count(name) as u64,
            "{name} ({a}): status counted {delta} new connections, the client {}",
            tally.count(name)
        );
    }
    let vs_delta = web(&after).totals.conns - web(&before).totals.conns;
    assert_eq!(vs_delta, n as u64, "virtual server's connection delta");

    let metrics_addr = (std::net::Ipv4Addr::LOCALHOST, METRICS_PORT).into();
    let metrics = lab
        .in_ns(Role::Director, || {
            http::get_with(&Timeouts::default(), None, metrics_addr, "/metrics")
        })
        .unwrap_or_else(|e| panic!("GET /metrics in the director's namespace: {e:#}"));
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    let now = status(&lab);
    let vs_labels = format!("vs=\"{VS}\",address=\"{}\"", lab.vip());
    let sample = |name: &str, labels: &str| -> f64 {
        let prefix = format!("{name}{{{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in /metrics:\n{text}"))
            .parse()
            .unwrap_or_else(|e| panic!("{prefix}: {e}"))
    };
    assert_eq!(
        sample("director_vs_connections_total", &vs_labels),
        web(&now).totals.conns as f64
    );
    for i in 1..=3 {
        let a = addr(&lab, i);
        let labels = format!("{vs_labels},server=\"{a}\"");
        let value = sample("director_rs_connections_total", &labels);
        assert_eq!(
            value,
            rs(&now, &a).totals.conns as f64,
            "metrics and status disagree about {a}"
        );
        println!("director_rs_connections_total{{{labels}}} {value}");
    }

    // `director conns | head -1`: the reader goes away after one line of the 200+.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(lab.director_bin())
        .args(["conns", "--socket"])
        .arg(lab.director().expect("director running").socket())
        .stdout(Stdio::from(writer))
        .output()
        .unwrap_or_else(|e| panic!("run director conns: {e}"));
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "director conns into a closed pipe: {}",
        show(&out)
    );
    println!("status_json_agrees_with_clients: {:?}", t0.elapsed());
}

/// `director weight` and `director drain` steer new connections at once.
#[test]
fn operator_weight_and_drain() {
    need_root!();
    let t0 = Instant::now();
    let lab = running(3, EQUAL);
    let (rs1, rs2) = (addr(&lab, 1), addr(&lab, 2));

    println!("{}", director_ok(&lab, &["weight", VS, &rs1, "0"]).trim());
    let tally = lab.get_many(90, &[]);
    assert_no_failures(&tally, "after weight rs1 0");
    assert_eq!(
        tally.count("rs1"),
        0,
        "weight-0 rs1 was scheduled: {:?}",
        tally.by_server
    );
    assert_eq!(tally.count("rs2") + tally.count("rs3"), 90);
    let s = status(&lab);
    assert_eq!(
        (rs(&s, &rs1).weight, rs(&s, &rs1).config_weight),
        (0, 1),
        "rs1 weights in status"
    );

    println!("{}", director_ok(&lab, &["drain", VS, &rs2]).trim());
    let tally = lab.get_many(90, &[]);
    assert_no_failures(&tally, "after drain rs2");
    assert_eq!(
        tally.count("rs3"),
        90,
        "not all new connections went to rs3: {:?}",
        tally.by_server
    );
    assert!(rs(&status(&lab), &rs2).draining, "rs2 not shown draining");

    println!("{}", director_ok(&lab, &["weight", VS, &rs1, "1"]).trim());
    let tally = lab.get_many(90, &[]);
    assert_no_failures(&tally, "after weight rs1 1");
    assert_eq!(
        tally.count("rs2"),
        0,
        "drained rs2 was scheduled: {:?}",
        tally.by_server
    );
    assert!(
        tally.count("rs1") > 0,
        "rs1 got no traffic back: {:?}",
        tally.by_server
    );
    assert_eq!(tally.count("rs1") + tally.count("rs3"), 90);
    println!("operator_weight_and_drain: {:?}", t0.elapsed());
}

/// `Type=notify` as the unit runs it: systemd's `NOTIFY_SOCKET` (a datagram socket
/// this test owns) gets STATUS lines while the director starts, READY=1 only once
/// the datapath is attached and the configuration applied (the control socket,
/// asked the moment READY=1 arrives, reports the attachment and every real server),
/// then WATCHDOG=1 at half of `WATCHDOG_USEC`.
#[test]
fn type_notify_ready_after_attach_and_config_then_watchdog_pings() {
    need_root!();
    let mut lab = nat_lab(3);
    let notify = lab.temp_dir().join("notify.sock");
    let rx = std::os::unix::net::UnixDatagram::bind(&notify).expect("bind NOTIFY_SOCKET");
    rx.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let watchdog = Duration::from_secs(1);
    lab.set_director_env("NOTIFY_SOCKET", &notify);
    lab.set_director_env("WATCHDOG_USEC", watchdog.as_micros().to_string());
    let socket = lab.temp_dir().join("director.sock");
    let bin = lab.director_bin().to_owned();
    // The datagrams as they arrive, with the control socket's status at READY=1.
    let reader = std::thread::spawn(move || {
        let mut seen: Vec<(Instant, String, Option<Status>)> = Vec::new();
        let mut buf = vec![0u8; 4096];
        let pings = |seen: &[(Instant, String, Option<Status>)]| {
            seen.iter()
                .filter(|(_, m, _)| m.contains("WATCHDOG=1"))
                .count()
        };
        while pings(&seen) < 4 {
            let n = rx
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("NOTIFY_SOCKET after {seen:?}: {e}"));
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let status = msg.lines().any(|l| l == "READY=1").then(|| {
                let out = Command::new(&bin)
                    .args(["status", "--json", "--socket"])
                    .arg(&socket)
                    .output()
                    .expect("director status");
                serde_json::from_slice(&out.stdout)
                    .unwrap_or_else(|e| panic!("status at READY=1: {e}: {}", show(&out)))
            });
            seen.push((Instant::now(), msg, status));
        }
        seen
    });
    let config = config(&lab, EQUAL);
    lab.start_director(config);
    let seen = reader.join().expect("NOTIFY_SOCKET reader");
    for (_, m, _) in &seen {
        println!("NOTIFY_SOCKET: {}", m.replace('\n', " "));
    }
    let ready = seen
        .iter()
        .position(|(_, m, _)| m.lines().any(|l| l == "READY=1"))
        .expect("READY=1 never came");
    let statuses: Vec<&str> = seen[..ready]
        .iter()
        .flat_map(|(_, m, _)| m.lines())
        .filter_map(|l| l.strip_prefix("STATUS="))
        .collect();
    assert!(
        statuses.iter().any(|s| s.starts_with("attaching to")),
        "no STATUS=attaching before READY=1: {statuses:?}"
    );
    let at_ready = seen[ready].2.as_ref().expect("status at READY=1");
    assert_eq!(
        at_ready.running.interfaces.len(),
        2,
        "attached at READY=1: {:?}",
        at_ready.running
    );
    let web = web(at_ready);
    assert_eq!(
        web.real_servers.len(),
        3,
        "the configuration applied at READY=1"
    );
    let pings: Vec<Instant> = seen[ready..]
        .iter()
        .filter(|(_, m, _)| m.contains("WATCHDOG=1"))
        .map(|(t, _, _)| *t)
        .collect();
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    println!("watchdog every {watchdog:?}: pings {gaps:?} apart");
    for gap in &gaps {
        assert!(
            *gap >= watchdog / 4 && *gap <= watchdog,
            "WATCHDOG=1 pings {gaps:?} apart, want about {:?}",
            watchdog / 2
        );
    }
}
