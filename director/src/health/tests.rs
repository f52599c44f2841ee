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

/// CPU time (user + system) used so far by `who`.
fn cpu_time(who: libc::c_int) -> Duration {
    let (user, system) = cpu_times(who);
    user + system
}

/// CPU time (user, system) used so far by `who`.
fn cpu_times(who: libc::c_int) -> (Duration, Duration) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let usage = unsafe {
        assert_eq!(libc::getrusage(who, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

/// One blocking connect to `addr`, closed with a reset, as the tcp probe
/// does: the kernel's share of a probe.
fn blocking_probe(addr: SocketAddr) {
    use std::os::fd::AsRawFd;
    let conn = std::net::TcpStream::connect(addr).unwrap();
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `size_of::<linger>()` bytes from the pointer.
    let rc = unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

/// For the bench, not a timed assertion: 10 000 TCP targets against one
/// listener on 127.0.0.1, each probed every second, measured over 5s.
/// Prints the CPU time of the process per second (user and system), the
/// listener thread's share (accepting 10 000 connections a second), and
/// for comparison the CPU time of as many blocking connect/reset pairs
/// from one thread: on loopback the kernel runs both ends of every
/// handshake in the prober's context, so that is the floor.
/// `cargo test -p director --lib --release cpu_for_10k -- --ignored --nocapture`
#[test]
#[ignore = "bench: prints CPU use, takes ~8s"]
fn cpu_for_10k_targets() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    };

    const TARGETS: usize = 10_000;
    const SECONDS: u64 = 5;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // std listens with a backlog of 128: bursts of probes would overflow
    // it and have their SYNs dropped. listen(2) again raises it.
    // SAFETY: plain syscall on a socket we own.
    let rc = unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 4096) };
    assert_eq!(rc, 0);
    let stop = Arc::new(AtomicBool::new(false));
    let listener_cpu_us = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let accept_thread = {
        let (stop, cpu, accepted) = (stop.clone(), listener_cpu_us.clone(), accepted.clone());
        std::thread::spawn(move || {
            while let Ok((conn, _)) = listener.accept() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                drop(conn);
                accepted.fetch_add(1, Ordering::Relaxed);
                let used = cpu_time(libc::RUSAGE_THREAD);
                cpu.store(used.as_micros() as u64, Ordering::Relaxed);
            }
        })
    };
    let ms_per_s = |d: Duration, wall: f64| d.as_secs_f64() * 1e3 / wall;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let per_probe_us = rt.block_on(async {
        let (tx, mut events) = mpsc::unbounded_channel();
        let mut monitor = Monitor::new(tx);
        let check = HealthCheck {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            ..check(CheckKind::Tcp)
        };
        let targets = (0..TARGETS)
            .map(|i| target(&format!("vs{i}"), addr, check.clone()))
            .collect();
        monitor.set_targets(targets);
        // Every target has made its first probe after one interval.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let checks = |m: &Monitor| m.status().iter().map(|s| s.checks).sum::<u64>();
        let (cpu0, lis0, checks0, accepted0) = (
            cpu_times(libc::RUSAGE_SELF),
            listener_cpu_us.load(Ordering::Relaxed),
            checks(&monitor),
            accepted.load(Ordering::Relaxed),
        );
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(SECONDS)).await;
        let wall = start.elapsed().as_secs_f64();
        let (cpu1, lis1, checks1, accepted1) = (
            cpu_times(libc::RUSAGE_SELF),
            listener_cpu_us.load(Ordering::Relaxed),
            checks(&monitor),
            accepted.load(Ordering::Relaxed),
        );
        let user = ms_per_s(cpu1.0 - cpu0.0, wall);
        let system = ms_per_s(cpu1.1 - cpu0.1, wall);
        let listener = (lis1 - lis0) as f64 / 1e3 / wall;
        let status = monitor.status();
        let down = status.iter().filter(|s| s.health == Health::Down).count();
        let mut reasons: HashMap<&str, u64> = HashMap::new();
        for s in status.iter().filter(|s| s.failures > 0) {
            *reasons.entry(s.last_reason.as_str()).or_default() += s.failures;
        }
        let monitor_ms = user + system - listener;
        println!(
            "cpu_for_10k_targets: {TARGETS} tcp targets, interval 1s, {wall:.1}s measured: \
             {:.0} probes/s, {:.0} accepts/s\n  process {:.0} ms/s (user {user:.0}, system \
             {system:.0}), listener thread {listener:.0} ms/s\n  monitor {monitor_ms:.0} ms/s \
             = {:.1}% of a core, {:.1} µs/probe\n  failures {reasons:?}, {down} down",
            (checks1 - checks0) as f64 / wall,
            (accepted1 - accepted0) as f64 / wall,
            user + system,
            monitor_ms / 10.0,
            monitor_ms * 1e3 / ((checks1 - checks0) as f64 / wall),
        );
        assert!(events.try_recv().is_err(), "no target should go down");
        assert_eq!(down, 0);
        monitor_ms * 1e3 / ((checks1 - checks0) as f64 / wall)
    });
    drop(rt);

    // The floor: the same connects, blocking, from one thread.
    let floor = std::thread::spawn(move || {
        let before = cpu_times(libc::RUSAGE_THREAD);
        let start = Instant::now();
        for _ in 0..TARGETS {
            blocking_probe(addr);
        }
        let after = cpu_times(libc::RUSAGE_THREAD);
        (after.0 - before.0, after.1 - before.1, start.elapsed())
    })
    .join()
    .unwrap();
    let floor_us = (floor.0 + floor.1).as_secs_f64() * 1e6 / TARGETS as f64;
    println!(
        "  floor: {TARGETS} blocking connect+reset from one thread: user {:.0} ms, system {:.0} ms \
         ({floor_us:.1} µs each, in {:.2}s)\n  monitor above the floor: {:.1} µs/probe",
        floor.0.as_secs_f64() * 1e3,
        floor.1.as_secs_f64() * 1e3,
        floor.2.as_secs_f64(),
        per_probe_us - floor_us,
    );

    stop.store(true, Ordering::Relaxed);
    // Wakes the blocking accept.
    let _ = std::net::TcpStream::connect(addr);
    accept_thread.join().unwrap();
}
