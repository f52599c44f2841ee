//! HTTP through the lab with wrk (run in the client namespace): requests/s and
//! p50/p99 latency with keep-alive connections and with a new connection per request
//! (`Connection: close`), through the director in NAT and DR mode, through haproxy
//! (TCP mode) on the director namespace, and straight to one real server (the DR
//! lab's client shares the servers' segment). The real servers are the lab's HTTP
//! server, the same in every case.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use director_tests::lab::{Lab, Mode, Role};
use serde::Serialize;

use crate::netlab::{self, Bins, Child};
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
    pub cases: Vec<WrkCase>,
}

impl Http {
    pub fn case(&self, id: &str, conn: Conn) -> Option<&WrkCase> {
        self.cases.iter().find(|c| c.id == id && c.conn == conn)
    }
}

const WRK_THREADS: u32 = 1;

pub fn run(scale: &Scale, bins: &Bins) -> Result<Http> {
    let mut cases = Vec::new();

    progress("http: building a NAT lab");
    let mut lab = netlab::build(Mode::Nat, bins)?;
    netlab::start_director(&mut lab, false)?;
    let vip = lab.vip();
    both(
        &lab,
        scale,
        "director_nat",
        "director, NAT",
        vip,
        &mut cases,
    )?;
    lab.teardown_director()?;
    lab.add_vip_on_director();
    let haproxy = start_haproxy(&mut lab)?;
    both(
        &lab,
        scale,
        "haproxy",
        "haproxy (TCP mode)",
        vip,
        &mut cases,
    )?;
    haproxy.interrupt()?;
    drop(lab);

    progress("http: building a DR lab");
    let mut lab = netlab::build(Mode::Dr, bins)?;
    netlab::start_director(&mut lab, false)?;
    both(&lab, scale, "director_dr", "director, DR", vip, &mut cases)?;
    lab.teardown_director()?;
    let rs1: SocketAddr = lab.real_servers()[0].into();
    both(
        &lab,
        scale,
        "direct",
        "straight to one real server",
        rs1,
        &mut cases,
    )?;

    Ok(Http {
        threads: WRK_THREADS,
        connections: scale.wrk_conns,
        seconds: scale.wrk_time.as_secs_f64(),
        cases,
    })
}

fn both(
    lab: &Lab,
    scale: &Scale,
    id: &'static str,
    label: &'static str,
    target: SocketAddr,
    out: &mut Vec<WrkCase>,
) -> Result<()> {
    for conn in [Conn::KeepAlive, Conn::Close] {
        out.push(wrk(lab, scale, id, label, conn, target)?);
    }
    Ok(())
}

fn wrk(
    lab: &Lab,
    scale: &Scale,
    id: &'static str,
    label: &'static str,
    conn: Conn,
    target: SocketAddr,
) -> Result<WrkCase> {
    let secs = scale.wrk_time.as_secs().max(1);
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
    args.push(format!("http://{target}/"));
    progress(&format!(
        "http: {label}, {}: wrk for {secs} s",
        conn.label()
    ));
    let child = Child::spawn(lab, Role::Client, "wrk", &args, Duration::from_secs(1))?;
    let output = child.wait(Duration::from_secs(secs + 15))?;
    let r = parse(&output).with_context(|| format!("{label}: unexpected wrk output:\n{output}"))?;
    if r.requests == 0 {
        bail!("{label}: no request succeeded; wrk said:\n{output}");
    }
    progress(&format!(
        "http: {label}, {}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {} errors",
        conn.label(),
        r.requests_per_s,
        r.p50_ms,
        r.p99_ms,
        r.errors
    ));
    Ok(WrkCase {
        id,
        label,
        conn,
        ..r
    })
}

/// haproxy in TCP mode on the director namespace, bound to the VIP (which the caller
/// has put on the namespace's `lo`), round robin over the real servers.
fn start_haproxy(lab: &mut Lab) -> Result<Child> {
    let mut cfg = format!(
        "global\n  maxconn 4096\n  nbthread 1\n\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\nfrontend vip\n  bind {}\n  default_backend servers\n\nbackend servers\n  balance roundrobin\n",
        lab.vip()
    );
    for (i, rs) in lab.real_servers().iter().enumerate() {
        cfg += &format!("  server rs{} {rs}\n", i + 1);
    }
    let path = lab.temp_dir().join("haproxy.cfg");
    std::fs::write(&path, cfg).with_context(|| format!("write {}", path.display()))?;
    progress("http: starting haproxy in the director namespace");
    let args = ["-db", "-f", &path.to_string_lossy()].map(str::to_owned);
    let mut child = Child::spawn(
        lab,
        Role::Director,
        "haproxy",
        &args,
        Duration::from_secs(2),
    )?;
    if let Err(e) = lab.wait_for_vip(Duration::from_secs(10)) {
        child.ensure_running()?;
        return Err(e.context(format!("haproxy output:\n{}", child.output())));
    }
    Ok(child)
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
