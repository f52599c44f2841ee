//! Probes against servers started in the test on 127.0.0.1, and the
//! monitor's timing and bookkeeping with short intervals.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, UdpSocket},
    sync::mpsc,
    task::JoinHandle,
};

use super::{probe::Probe, *};
use crate::config::OnFailure;

const MS: Duration = Duration::from_millis(1);

fn check(kind: CheckKind) -> HealthCheck {
    HealthCheck {
        kind,
        path: None,
        expect_status: None,
        interval: 500 * MS,
        timeout: 200 * MS,
        rise: 2,
        fall: 3,
        port: None,
        expect_body: None,
        host: None,
        payload: None,
        expect: None,
        command: None,
        on_failure: OnFailure::Keep,
    }
}

async fn run(server: SocketAddr, check: &HealthCheck) -> Result<(), String> {
    Probe::new("web", server, check).unwrap().run().await
}

/// A port on 127.0.0.1 that nothing listens on (TCP and UDP).
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

/// Accepts and drops connections until aborted.
async fn tcp_server() -> (SocketAddr, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((conn, _)) = l.accept().await {
            drop(conn);
        }
    });
    (addr, task)
}

/// Answers every request with `response` (written at once, then closed);
/// sends each request's head to the receiver.
async fn http_server(response: String) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = l.accept().await {
            let tx = tx.clone();
            let response = response.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).await.unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                let _ = conn.write_all(response.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (addr, rx)
}

fn http_check(status: Option<(u16, u16)>, expect_body: Option<&str>) -> HealthCheck {
    HealthCheck {
        path: Some("/healthz".into()),
        expect_status: status,
        expect_body: expect_body.map(str::to_owned),
        ..check(CheckKind::Http)
    }
}

#[tokio::test]
async fn tcp_probe_up_and_down() {
    let (up, _server) = tcp_server().await;
    assert_eq!(run(up, &check(CheckKind::Tcp)).await, Ok(()));
    let down = closed_port().await;
    assert_eq!(
        run(down, &check(CheckKind::Tcp)).await,
        Err("connect: connection refused".into())
    );
    // `port` replaces the real server's port.
    let hc = HealthCheck {
        port: Some(up.port()),
        ..check(CheckKind::Tcp)
    };
    assert_eq!(run(down, &hc).await, Ok(()));
}

#[tokio::test]
async fn http_probe_status() {
    let (addr, mut requests) = http_server("HTTP/1.0 200 OK\r\n\r\nhello".into()).await;
    assert_eq!(run(addr, &http_check(Some((200, 399)), None)).await, Ok(()));
    let head = requests.recv().await.unwrap();
    assert_eq!(
        head,
        format!(
            "GET /healthz HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nUser-Agent: director-health\r\n\r\n",
            addr.port()
        )
    );
    assert_eq!(
        run(addr, &http_check(Some((204, 204)), None)).await,
        Err("http: status 200, expected 204".into())
    );

    let (addr, _) = http_server("HTTP/1.1 503 Service Unavailable\r\n\r\n".into()).await;
    assert_eq!(
        run(addr, &http_check(Some((200, 399)), None)).await,
        Err("http: status 503 not in 200-399".into())
    );
    // The default range, when a HealthCheck is built without one.
    assert_eq!(
        run(addr, &http_check(None, None)).await,
        Err("http: status 503 not in 200-399".into())
    );
    assert_eq!(run(addr, &http_check(Some((500, 599)), None)).await, Ok(()));
}

#[tokio::test]
async fn http_probe_body() {
    let (addr, _) =
        http_server("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nstatus: starting\n".into())
            .await;
    assert_eq!(
        run(addr, &http_check(Some((200, 399)), Some("ready"))).await,
        Err("http: body does not contain \"ready\"".into())
    );
    assert_eq!(
        run(addr, &http_check(Some((200, 399)), Some("starting"))).await,
        Ok(())
    );
    // The headers are not the body.
    assert_eq!(
        run(addr, &http_check(Some((200, 399)), Some("text/plain"))).await,
        Err("http: body does not contain \"text/plain\"".into())
    );

    // Found deep in the body, over many reads; not past the first 64 KiB.
    let mut body = "x".repeat(40_000);
    body.push_str("ready");
    body.push_str(&"y".repeat(40_000));
    body.push_str("late");
    let (addr, _) = http_server(format!("HTTP/1.0 200 OK\r\n\r\n{body}")).await;
    assert_eq!(
        run(addr, &http_check(Some((200, 399)), Some("ready"))).await,
        Ok(())
    );
    assert_eq!(
        run(addr, &http_check(Some((200, 399)), Some("late"))).await,
        Err("http: body does not contain \"late\"".into())
    );
}

#[tokio::test]
async fn http_probe_host_header() {
    let (addr, mut requests) = http_server("HTTP/1.0 204 No Content\r\n\r\n".into()).await;
    let hc = HealthCheck {
        host: Some("www.example.com".into()),
        ..http_check(Some((200, 399)), None)
    };
    assert_eq!(run(addr, &hc).await, Ok(()));
    let head = requests.recv().await.unwrap();
    assert!(head.contains("\r\nHost: www.example.com\r\n"), "{head:?}");
    assert!(head.starts_with("GET /healthz HTTP/1.0\r\n"), "{head:?}");
}

#[tokio::test]
async fn http_probe_bad_responses() {
    let (addr, _) = http_server("SSH-2.0-OpenSSH_9.6\r\n".into()).await;
    assert_eq!(
        run(addr, &http_check(None, None)).await,
        Err("http: invalid status line \"SSH-2.0-OpenSSH_9.6\"".into())
    );
    let (addr, _) = http_server(String::new()).await;
    assert_eq!(
        run(addr, &http_check(None, None)).await,
        Err("http: connection closed without a response".into())
    );
    // Accepts, never answers.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = l.accept().await {
            conns.push(c);
        }
    });
    assert_eq!(
        run(addr, &http_check(None, None)).await,
        Err("timeout after 200ms".into())
    );
    assert_eq!(
        run(closed_port().await, &http_check(None, None)).await,
        Err("connect: connection refused".into())
    );
}

/// Replies to every datagram with `reply`, or echoes it when None.
async fn udp_server(reply: Option<&'static str>) -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let out = reply.map_or(&buf[..n], str::as_bytes);
            let _ = s.send_to(out, from).await;
        }
    });
    addr
}

#[tokio::test]
async fn udp_probe_up_and_down() {
    let udp = |payload: Option<&str>, expect: Option<&str>| HealthCheck {
        payload: payload.map(str::to_owned),
        expect: expect.map(str::to_owned),
        ..check(CheckKind::Udp)
    };
    let echo = udp_server(None).await;
    assert_eq!(run(echo, &udp(None, None)).await, Ok(()));
    assert_eq!(run(echo, &udp(Some("ping"), Some("pin"))).await, Ok(()));
    assert_eq!(
        run(echo, &udp(Some("ping"), Some("pong"))).await,
        Err("udp: reply does not contain \"pong\"".into())
    );
    let pong = udp_server(Some("+PONG\r\n")).await;
    assert_eq!(
        run(pong, &udp(Some("PING\r\n"), Some("PONG"))).await,
        Ok(())
    );

    // Bound but silent: no reply within the timeout.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert_eq!(
        run(silent.local_addr().unwrap(), &udp(None, None)).await,
        Err("timeout after 200ms".into())
    );
    // Nothing bound: the ICMP port unreachable fails it at once.
    let start = Instant::now();
    assert_eq!(
        run(closed_port().await, &udp(None, None)).await,
        Err("udp: connection refused".into())
    );
    assert!(start.elapsed() < 150 * MS);
}

fn exec_check(script: &str) -> HealthCheck {
    HealthCheck {
        command: Some(vec!["/bin/sh".into(), "-c".into(), script.into()]),
        ..check(CheckKind::Exec)
    }
}

#[tokio::test]
async fn exec_probe_exit_status() {
    let server: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    assert_eq!(run(server, &exec_check("true")).await, Ok(()));
    assert_eq!(
        run(server, &exec_check("false")).await,
        Err("exec: exit status 1".into())
    );
    assert_eq!(
        run(server, &exec_check("kill -9 $$")).await,
        Err("exec: killed by signal 9".into())
    );
    let env = r#"[ "$DIRECTOR_VS" = web ] && [ "$DIRECTOR_RS_ADDR" = 127.0.0.1 ] && [ "$DIRECTOR_RS_PORT" = 8080 ]"#;
    assert_eq!(run(server, &exec_check(env)).await, Ok(()));
    // `port` is the port probed, so it is the one the command gets.
    let hc = HealthCheck {
        port: Some(9999),
        ..exec_check(r#"[ "$DIRECTOR_RS_PORT" = 9999 ]"#)
    };
    assert_eq!(run(server, &hc).await, Ok(()));
    let hc = HealthCheck {
        command: Some(vec!["/nonexistent/check".into()]),
        ..check(CheckKind::Exec)
    };
    assert_eq!(
        run(server, &hc).await,
        Err("exec: cannot run /nonexistent/check: no such file or directory".into())
    );
}

#[tokio::test]
async fn exec_probe_timeout_kills_the_process_group() {
    let dir = std::env::temp_dir().join(format!("director-health-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("survived");
    let _ = std::fs::remove_file(&marker);
    // The shell waits on a child that would leave a mark after 1s.
    let script = format!("(sleep 1; touch {}) & wait", marker.display());
    let server: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let start = Instant::now();
    assert_eq!(
        run(server, &exec_check(&script)).await,
        Err("timeout after 200ms, killed".into())
    );
    assert!(start.elapsed() < 600 * MS, "{:?}", start.elapsed());
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(
        !marker.exists(),
        "a child of the timed-out command survived"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn exec_probe_dropped_kills_the_process_group() {
    let dir = std::env::temp_dir().join(format!("director-health-drop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("survived");
    let script = format!("(sleep 1; touch {}) & wait", marker.display());
    let hc = HealthCheck {
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(5),
        ..exec_check(&script)
    };
    let probe = Probe::new("web", "127.0.0.1:8080".parse().unwrap(), &hc).unwrap();
    // As when its target is removed: the task is aborted mid-probe.
    let task = tokio::spawn(async move { probe.run().await });
    tokio::time::sleep(200 * MS).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(!marker.exists(), "a child of the dropped command survived");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_probe_for_kind_none() {
    let server: SocketAddr = "127.0.0.1:80".parse().unwrap();
    assert!(Probe::new("web", server, &check(CheckKind::None)).is_none());
    let probe = Probe::new(
        "web",
        server,
        &HealthCheck {
            port: Some(81),
            ..check(CheckKind::Tcp)
        },
    )
    .unwrap();
    assert_eq!(probe.addr(), "127.0.0.1:81".parse().unwrap());
}

#[test]
fn first_probes_spread_over_the_interval() {
    let interval = Duration::from_secs(1);
    let mut buckets = [0u32; 10];
    for i in 0..1000u16 {
        let server = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 80));
        let d = first_delay("web", server, interval);
        assert!(d < interval);
        assert_eq!(d, first_delay("web", server, interval), "stable");
        buckets[(d.as_millis() / 100) as usize] += 1;
    }
    // 100 expected per tenth of the interval.
    assert!(
        buckets.iter().all(|&n| (60..=140).contains(&n)),
        "{buckets:?}"
    );
}

fn fast_check(rise: u32, fall: u32) -> HealthCheck {
    HealthCheck {
        interval: 100 * MS,
        timeout: 50 * MS,
        rise,
        fall,
        ..check(CheckKind::Tcp)
    }
}

fn target(vs: &str, server: SocketAddr, check: HealthCheck) -> Target {
    Target {
        vs: vs.into(),
        server,
        check,
    }
}

fn status_of(m: &Monitor, vs: &str) -> TargetStatus {
    m.status().into_iter().find(|s| s.vs == vs).unwrap()
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<Transition>) -> Transition {
    tokio::time::timeout(Duration::from_secs(3), events.recv())
        .await
        .expect("no transition within 3s")
        .expect("channel closed")
}

/// Slack for scheduling on a loaded test machine.
const SLACK: Duration = Duration::from_millis(150);

#[tokio::test]
async fn monitor_reports_a_server_down_then_up_in_time() {
    let (addr, server) = tcp_server().await;
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut monitor = Monitor::new(tx);
    let hc = fast_check(2, 3);
    monitor.set_targets(vec![target("web", addr, hc.clone())]);
    let s = status_of(&monitor, "web");
    assert_eq!(
        (s.health, s.checks, s.last_reason.as_str()),
        (Health::Up, 0, "not checked yet")
    );
    // Let it probe successfully a few times.
    tokio::time::sleep(350 * MS).await;
    let s = status_of(&monitor, "web");
    assert!(s.checks >= 2, "{s:?}");
    assert_eq!(
        (s.health, s.failures, s.last_reason.as_str()),
        (Health::Up, 0, "ok")
    );

    server.abort();
    let _ = server.await;
    let gone = Instant::now();
    let t = next_event(&mut events).await;
    let took = gone.elapsed();
    assert_eq!(
        t,
        Transition {
            vs: "web".into(),
            server: addr,
            to: Health::Down,
            reason: "connect: connection refused".into(),
        }
    );
    let bound = hc.interval * hc.fall + hc.timeout;
    assert!(
        took <= bound + SLACK,
        "down after {took:?}, bound {bound:?}"
    );
    let s = status_of(&monitor, "web");
    assert_eq!((s.health, s.transitions), (Health::Down, 1));
    assert!(s.failures >= 3, "{s:?}");
    assert_eq!(s.last_reason, "connect: connection refused");

    let l = TcpListener::bind(addr).await.unwrap();
    let _server = tokio::spawn(async move {
        while let Ok((c, _)) = l.accept().await {
            drop(c);
        }
    });
    let back = Instant::now();
    let t = next_event(&mut events).await;
    let took = back.elapsed();
    assert_eq!(
        (t.to, t.reason.as_str()),
        (Health::Up, "tcp check passed 2 times in a row")
    );
    let bound = hc.interval * hc.rise + hc.timeout;
    assert!(took <= bound + SLACK, "up after {took:?}, bound {bound:?}");
    let s = status_of(&monitor, "web");
    assert_eq!((s.health, s.transitions), (Health::Up, 2));
}

#[tokio::test]
async fn monitor_new_targets_start_up_and_need_fall_failures() {
    let down = closed_port().await;
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut monitor = Monitor::new(tx);
    let before = SystemTime::now();
    monitor.set_targets(vec![target("web", down, fast_check(2, 3))]);
    let t = next_event(&mut events).await;
    assert_eq!(t.to, Health::Down);
    let s = status_of(&monitor, "web");
    // Up until the third failure; the status is written before the event
    // is sent, and the next probe is an interval away.
    assert_eq!(
        (s.health, s.checks, s.failures, s.transitions),
        (Health::Down, 3, 3, 1)
    );
    assert!(s.since > before);
    tokio::time::sleep(250 * MS).await;
    assert!(events.try_recv().is_err(), "one transition only");
}

#[tokio::test]
async fn set_targets_keeps_unchanged_targets() {
    let (up, _server) = tcp_server().await;
    let down = closed_port().await;
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut monitor = Monitor::new(tx);
    monitor.set_targets(vec![
        target("a", up, fast_check(2, 3)),
        target("b", down, fast_check(2, 3)),
        target("c", up, check(CheckKind::None)),
    ]);
    let key = |vs: &str, server| (vs.to_owned(), server);
    let task_a = monitor.running[&key("a", up)].task.id();
    let task_b = monitor.running[&key("b", down)].task.id();
    assert_eq!(next_event(&mut events).await.vs, "b", "b goes down");
    let a = status_of(&monitor, "a");
    let b = status_of(&monitor, "b");
    assert!(a.checks >= 1, "{a:?}");

    // a unchanged, b's check changed, d new; c is not checked at all.
    monitor.set_targets(vec![
        target("d", up, fast_check(1, 1)),
        target("b", down, fast_check(3, 3)),
        target("a", up, fast_check(2, 3)),
    ]);
    assert_eq!(monitor.running[&key("a", up)].task.id(), task_a);
    assert_ne!(monitor.running[&key("b", down)].task.id(), task_b);
    let status = monitor.status();
    let names: Vec<&str> = status.iter().map(|s| s.vs.as_str()).collect();
    assert_eq!(names, ["a", "b", "d"]);
    assert!(status[0].checks >= a.checks);
    assert_eq!(status[0].since, a.since);
    // b restarts from its current health and keeps its counters.
    assert_eq!(
        (status[1].health, status[1].transitions, status[1].since),
        (Health::Down, 1, b.since)
    );
    assert!(status[1].failures >= b.failures);
    assert_eq!(
        (
            status[2].health,
            status[2].checks,
            status[2].last_reason.as_str()
        ),
        (Health::Up, 0, "not checked yet")
    );
    // Still down (no second "down" event); a stays up.
    tokio::time::sleep(400 * MS).await;
    assert!(events.try_recv().is_err());
    assert_eq!(status_of(&monitor, "b").health, Health::Down);
    assert!(status_of(&monitor, "a").checks > a.checks);

    // Removed targets stop.
    monitor.set_targets(vec![target("a", up, fast_check(2, 3))]);
    let names: Vec<String> = monitor.status().into_iter().map(|s| s.vs).collect();
    assert_eq!(names, ["a"]);
    monitor.set_targets(Vec::new());
    assert!(monitor.status().is_empty());
}

#[tokio::test]
async fn the_first_round_is_done_once_every_server_passed_or_went_down() {
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut monitor = Monitor::new(tx);
    assert!(monitor.first_round_done(), "nothing to check");
    let (live, _server) = tcp_server().await;
    let dead = closed_port().await;
    let hc = fast_check(2, 3);
    monitor.set_targets(vec![
        target("live", live, hc.clone()),
        target("dead", dead, hc.clone()),
    ]);
    assert!(!monitor.first_round_done(), "nothing probed yet");
    // Every target probed once (at most one interval), the dead one not yet
    // down (it needs `fall` failures).
    tokio::time::sleep(hc.interval + SLACK / 2).await;
    assert_eq!(status_of(&monitor, "live").health, Health::Up);
    assert!(
        !monitor.first_round_done(),
        "the dead server still counts as up: {:?}",
        monitor.status()
    );
    let t = next_event(&mut events).await;
    assert_eq!((t.vs.as_str(), t.to), ("dead", Health::Down));
    assert!(monitor.first_round_done(), "{:?}", monitor.status());
}

#[tokio::test]
async fn probe_latency_is_kept_per_virtual_server_and_kind_also_after_targets_stop() {
    let (up, _server) = tcp_server().await;
    let (tx, _events) = mpsc::unbounded_channel();
    let mut monitor = Monitor::new(tx);
    monitor.set_targets(vec![
        target("a", up, fast_check(2, 3)),
        target("b", up, fast_check(2, 3)),
    ]);
    tokio::time::sleep(350 * MS).await;
    let counts = |m: &Monitor| -> Vec<(String, String, u64)> {
        m.latencies()
            .into_iter()
            .map(|p| (p.vs, p.kind, p.latency.count()))
            .collect()
    };
    let first = counts(&monitor);
    let names: Vec<(&str, &str)> = first
        .iter()
        .map(|(vs, kind, _)| (vs.as_str(), kind.as_str()))
        .collect();
    assert_eq!(names, [("a", "tcp"), ("b", "tcp")]);
    assert!(first.iter().all(|(_, _, n)| *n >= 2), "{first:?}");
    let a = &monitor.latencies()[0].latency;
    assert!(
        a.sum_s > 0.0 && a.sum_s < 0.05 * a.count() as f64,
        "a loopback connect takes well under the 50 ms timeout: {a:?}"
    );

    // b stops, a becomes an http check: what they measured stays.
    monitor.set_targets(vec![target(
        "a",
        up,
        HealthCheck {
            interval: 100 * MS,
            timeout: 50 * MS,
            ..check(CheckKind::Http)
        },
    )]);
    tokio::time::sleep(250 * MS).await;
    let later = counts(&monitor);
    let kept = |vs: &str, kind: &str| {
        later
            .iter()
            .find(|(v, k, _)| v == vs && k == kind)
            .map(|e| e.2)
    };
    assert!(kept("a", "tcp") >= Some(first[0].2), "{later:?}");
    assert!(kept("b", "tcp") >= Some(first[1].2), "{later:?}");
    assert!(kept("a", "http") >= Some(1), "{later:?}");
}
