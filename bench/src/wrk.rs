//! HTTP through the lab with wrk (run in the client namespace): requests/s and
//! p50/p99 latency with keep-alive connections and with a new connection per request
//! (`Connection: close`), through the director in NAT and DR mode, through haproxy
//! (TCP mode) on the director namespace, and straight to one real server (the DR
//! lab's client shares the servers' segment). The real servers are the lab's HTTP
//! server, the same in every case.
//!
//! The cases of a lab take turns in short rounds, so that a slow spell of this
//! shared machine hits them alike: the director stays up throughout, and haproxy
//! listens on the VIP's address on another port (the director's program passes what
//! is not for a virtual server, about 0.1 µs a packet).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use director::control::{self, Request, Response};
use director_tests::http::{self, Timeouts};
use director_tests::lab::{Lab, Mode, Role};
use serde::Serialize;

use crate::netlab::{self, Bins, Child};
use crate::stats::Summary;
use crate::{Scale, progress};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Conn {
    KeepAlive,
    Close,
}

impl Conn {
    pub fn label(self) -> &'static str {
        match self {
            Conn::KeepAlive => "keep-alive",
            Conn::Close => "new connection per request",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct WrkCase {
    pub id: &'static str,
    pub label: &'static str,
    pub conn: Conn,
    pub requests: u64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Socket errors (connect, read, write, timeout) plus non-2xx/3xx answers.
    pub errors: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Http {
    pub threads: u32,
    pub connections: u32,
    pub seconds: f64,
    /// Turns each case took (`seconds` split evenly).
    pub rounds: u64,
    pub cases: Vec<WrkCase>,
    /// Live reloads of one changed real server, ms (see `reload_latency`).
    pub reload_ms: Summary,
}

impl Http {
    pub fn case(&self, id: &str, conn: Conn) -> Option<&WrkCase> {
        self.cases.iter().find(|c| c.id == id && c.conn == conn)
    }
}

const WRK_THREADS: u32 = 1;
/// haproxy's port on the VIP's address (the director owns VIP:80).
const HAPROXY_PORT: u16 = 8000;

/// Where one case sends its requests.
struct Target {
    id: &'static str,
    label: &'static str,
    addr: SocketAddr,
}

/// Turns each case takes: one per second of measuring time, at most five.
fn rounds(scale: &Scale) -> u64 {
    scale.wrk_time.as_secs().clamp(1, 5)
}

pub fn run(scale: &Scale, bins: &Bins) -> Result<Http> {
    let mut cases = Vec::new();

    progress("http: building a NAT lab");
    let mut lab = netlab::build(Mode::Nat, bins)?;
    netlab::start_director(&mut lab, false)?;
    lab.add_vip_on_director();
    let vip = lab.vip();
    let haproxy_addr = SocketAddr::new(vip.ip(), HAPROXY_PORT);
    let haproxy = start_haproxy(&lab, haproxy_addr)?;
    let targets = [
        Target {
            id: "director_nat",
            label: "director, NAT",
            addr: vip,
        },
        Target {
            id: "haproxy",
            label: "haproxy (TCP mode)",
            addr: haproxy_addr,
        },
    ];
    cases.extend(take_turns(&lab, scale, &targets)?);
    haproxy.interrupt()?;
    let reload_ms = reload_latency(&lab, scale.change_runs.min(MAX_RELOADS))?;
    drop(lab);

    // What the NAT lab's path costs without any balancing: no director, the
    // director namespace forwarding in its kernel. (Not in the lab above: NAT
    // keeps the client's port, so a port reused for a direct connection to a
    // server meets the server's TIME_WAIT of a VIP connection on that tuple.)
    progress("http: building a NAT lab without a director (kernel routing only)");
    let lab = netlab::build(Mode::Nat, bins)?;
    lab.ns(Role::Director).sysctl(&["net.ipv4.ip_forward=1"])?;
    let targets = [Target {
        id: "routed",
        label: "straight to one real server through the NAT lab's director namespace (kernel routing, no director)",
        addr: lab.real_servers()[0].into(),
    }];
    cases.extend(take_turns(&lab, scale, &targets)?);
    drop(lab);

    progress("http: building a DR lab");
    let mut lab = netlab::build(Mode::Dr, bins)?;
    netlab::start_director(&mut lab, false)?;
    let targets = [
        Target {
            id: "director_dr",
            label: "director, DR",
            addr: vip,
        },
        Target {
            id: "direct",
            label: "straight to one real server",
            addr: lab.real_servers()[0].into(),
        },
    ];
    cases.extend(take_turns(&lab, scale, &targets)?);

    Ok(Http {
        threads: WRK_THREADS,
        connections: scale.wrk_conns,
        seconds: scale.wrk_time.as_secs_f64(),
        rounds: rounds(scale),
        cases,
        reload_ms,
    })
}

/// Reloads timed in the NAT lab (each one a control round trip).
const MAX_RELOADS: usize = 50;

/// Live reloads that change one real server's weight (1 <-> 2), each timed from
/// the control request to its answer: the daemon answers once the maps are
/// written, so this bounds the time until the dataplane has the change. The
/// configuration file is restored afterwards.
fn reload_latency(lab: &Lab, runs: usize) -> Result<Summary> {
    let d = lab.director().context("the director is not running")?;
    let (path, socket) = (d.config_path().to_owned(), d.socket());
    let original = std::fs::read_to_string(&path)?;
    const SERVER: &str = "[[virtual_server.real_server]]\naddress = ";
    let at = original
        .find(SERVER)
        .and_then(|i| {
            original[i + SERVER.len()..]
                .find('\n')
                .map(|j| i + SERVER.len() + j + 1)
        })
        .context("no real server in the lab's configuration")?;
    let changed = format!("{}weight = 2\n{}", &original[..at], &original[at..]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    progress(&format!("http: {runs} live reloads changing one weight"));
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        std::fs::write(&path, if i % 2 == 0 { &changed } else { &original })?;
        let t = Instant::now();
        let answer = rt.block_on(control::call(&socket, &Request::Reload))?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
        ensure!(
            matches!(answer, Response::Reload(_)),
            "reload {i} failed: {answer:?}"
        );
    }
    std::fs::write(&path, &original)?;
    rt.block_on(control::call(&socket, &Request::Reload))?;
    Ok(Summary::of(&samples))
}

/// Every target with both kinds of connection, in rounds; each case's figures are
/// the mean over its rounds (errors the sum).
fn take_turns(lab: &Lab, scale: &Scale, targets: &[Target]) -> Result<Vec<WrkCase>> {
    let rounds = rounds(scale);
    let secs = (scale.wrk_time.as_secs() / rounds).max(1);
    let kinds = [Conn::KeepAlive, Conn::Close];
    let mut runs: Vec<Vec<WrkCase>> = vec![Vec::new(); targets.len() * kinds.len()];
    for round in 1..=rounds {
        for (t, target) in targets.iter().enumerate() {
            for (k, &conn) in kinds.iter().enumerate() {
                progress(&format!(
                    "http: round {round}/{rounds}: {}, {}: wrk for {secs} s",
                    target.label,
                    conn.label()
                ));
                runs[t * kinds.len() + k].push(wrk(lab, scale, target, conn, secs)?);
            }
        }
    }
    let cases: Vec<WrkCase> = runs.iter().filter_map(|r| mean(r)).collect();
    for c in &cases {
        progress(&format!(
            "http: {}, {}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {} errors",
            c.label,
            c.conn.label(),
            c.requests_per_s,
            c.p50_ms,
            c.p99_ms,
            c.errors
        ));
    }
    Ok(cases)
}

/// One case over its rounds: mean rate and percentiles, summed counts.
fn mean(runs: &[WrkCase]) -> Option<WrkCase> {
    let first = runs.first()?;
    let n = runs.len() as f64;
    let avg = |f: fn(&WrkCase) -> f64| runs.iter().map(f).sum::<f64>() / n;
    Some(WrkCase {
        requests: runs.iter().map(|r| r.requests).sum(),
        requests_per_s: avg(|r| r.requests_per_s),
        p50_ms: avg(|r| r.p50_ms),
        p99_ms: avg(|r| r.p99_ms),
        errors: runs.iter().map(|r| r.errors).sum(),
        ..first.clone()
    })
}

fn wrk(lab: &Lab, scale: &Scale, target: &Target, conn: Conn, secs: u64) -> Result<WrkCase> {
    let mut args: Vec<String> = vec![
        format!("--threads={WRK_THREADS}"),
        format!("--connections={}", scale.wrk_conns),
        format!("--duration={secs}s"),
        "--timeout=2s".to_owned(),
        "--latency".to_owned(),
    ];
    if conn == Conn::Close {
        args.extend(["--header".to_owned(), "Connection: close".to_owned()]);
    }
    args.push(format!("http://{}/", target.addr));
    let child = Child::spawn(lab, Role::Client, "wrk", &args, Duration::from_secs(1))?;
    let output = child.wait(Duration::from_secs(secs + 15))?;
    let label = target.label;
    let r = parse(&output).with_context(|| format!("{label}: unexpected wrk output:\n{output}"))?;
    if r.requests == 0 {
        bail!("{label}: no request succeeded; wrk said:\n{output}");
    }
    Ok(WrkCase {
        id: target.id,
        label,
        conn,
        ..r
    })
}

/// haproxy in TCP mode on the director namespace, bound to `addr` (the VIP's
/// address, which the caller has put on the namespace's `lo`), round robin over the
/// real servers.
fn start_haproxy(lab: &Lab, addr: SocketAddr) -> Result<Child> {
    let mut cfg = format!(
        "global\n  maxconn 4096\n  nbthread 1\n\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\nfrontend vip\n  bind {addr}\n  default_backend servers\n\nbackend servers\n  balance roundrobin\n"
    );
    for (i, rs) in lab.real_servers().iter().enumerate() {
        cfg += &format!("  server rs{} {rs}\n", i + 1);
    }
    let path = lab.temp_dir().join("haproxy.cfg");
    std::fs::write(&path, cfg).with_context(|| format!("write {}", path.display()))?;
    progress(&format!(
        "http: starting haproxy in the director namespace on {addr}"
    ));
    let args = ["-db", "-f", &path.to_string_lossy()].map(str::to_owned);
    let mut child = Child::spawn(
        lab,
        Role::Director,
        "haproxy",
        &args,
        Duration::from_secs(2),
    )?;
    let quick = Timeouts {
        connect: Duration::from_millis(500),
        io: Duration::from_secs(2),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        child.ensure_running()?;
        match lab.in_client(|| http::get_with(&quick, None, addr, "/")) {
            Ok(r) if r.status == 200 => return Ok(child),
            last if Instant::now() >= deadline => {
                bail!(
                    "haproxy on {addr} did not answer within 10 s (last: {}); its output:\n{}",
                    last.map_or_else(|e| format!("{e:#}"), |r| format!("status {}", r.status)),
                    child.output()
                )
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The figures of one wrk run (`--latency` output).
fn parse(text: &str) -> Option<WrkCase> {
    let mut r = WrkCase {
        id: "",
        label: "",
        conn: Conn::KeepAlive,
        requests: 0,
        requests_per_s: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        errors: 0,
    };
    let mut in_distribution = false;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if line.starts_with("Latency Distribution") {
            in_distribution = true;
        } else if in_distribution && words.len() == 2 && words[0].ends_with('%') {
            match words[0] {
                "50%" => r.p50_ms = millis(words[1])?,
                "99%" => r.p99_ms = millis(words[1])?,
                _ => {}
            }
        } else if let Some(v) = line.strip_prefix("Requests/sec:") {
            r.requests_per_s = v.trim().parse().ok()?;
        } else if words.get(1) == Some(&"requests") && words.get(2) == Some(&"in") {
            r.requests = words[0].parse().ok()?;
            in_distribution = false;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            r.errors += v
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.errors += v.trim().parse::<u64>().ok()?;
        }
    }
    (r.requests_per_s.is_finite() && r.p50_ms.is_finite() && r.p99_ms.is_finite()).then_some(r)
}

/// wrk's `339.00us`, `1.23ms`, `2.01s` in milliseconds.
fn millis(v: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60e3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e3)
    } else {
        return None;
    };
    Some(num.parse::<f64>().ok()? * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 2s test @ http://192.0.2.10:80/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   420.11us  100.20us   3.10ms   90.00%
    Req/Sec    18.50k     1.20k   20.00k    70.00%
  Latency Distribution
     50%  400.00us
     75%  450.00us
     90%  520.00us
     99%    1.20ms
  36800 requests in 2.00s, 3.50MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 2
Requests/sec:  18400.50
Transfer/sec:      1.75MB
";

    #[test]
    fn parses_wrk_latency_output() {
        let r = parse(OUTPUT).unwrap_or_else(|| panic!("parses"));
        assert_eq!(r.requests, 36800);
        assert!((r.requests_per_s - 18400.5).abs() < 1e-9);
        assert!((r.p50_ms - 0.4).abs() < 1e-9);
        assert!((r.p99_ms - 1.2).abs() < 1e-9);
        assert_eq!(r.errors, 3 + 1 + 2);
        assert!(parse("wrk: command not found").is_none());
    }

    #[test]
    fn units() {
        assert_eq!(millis("2.00s"), Some(2000.0));
        assert_eq!(millis("1.5ms"), Some(1.5));
        assert_eq!(millis("10x"), None);
    }
}
