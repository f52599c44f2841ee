//! The report: every figure as a row (figure | baseline | value | ratio | target |
//! PASS/MISS), the raw results of each section, the machine it ran on, and notes
//! where a target is missed. Written as `latest.json`, `latest.md` and `latest.svg`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::control::{ControlPlane, MAGLEV_BACKENDS, MAGLEV_SLOTS, ScaleRun};
use crate::forwarding::Forwarding;
use crate::health::HealthCpu;
use crate::nexthops::{NextHops, OLD_IN_FLIGHT};
use crate::profile::Profile;
use crate::svg;
use crate::testrun::{self, PerPacket, SCHEDULERS};
use crate::wrk::{Conn, Http};

/// Established flows (NAT, DR): net cost at most this many MAC swaps, see
/// [`swap_unit`].
pub const ESTABLISHED_TARGET: f64 = 6.0;
/// New connections: net cost at most this many MAC swaps.
pub const NEW_CONN_TARGET: f64 = 20.0;
/// Net cost with the largest table over the smallest.
pub const GROWTH_TARGET: f64 = 1.5;

const ESTABLISHED: [&str; 2] = ["est_nat_tcp", "est_dr_tcp"];
/// Cases whose growth with the table size has a target.
const GROWTH: [&str; 3] = ["est_nat_tcp", "est_dr_tcp", "reply_nat_tcp"];

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub date_utc: String,
    pub uname: String,
    pub cpu_model: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub loadavg_start: String,
    pub loadavg_end: String,
}

impl Machine {
    fn now() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned())
        };
        let mem_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Machine {
            date_utc: utc_now(),
            uname: uname(),
            cpu_model: field("model name"),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: (mem_kib / (1024.0 * 1024.0) * 10.0).round() / 10.0,
            loadavg_start: loadavg(),
            loadavg_end: String::new(),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{} · {} · {} cores · {} GiB · {} · load average at start {}, at end {}",
            self.date_utc,
            self.cpu_model,
            self.cores,
            self.memory_gib,
            self.uname,
            self.loadavg_start,
            self.loadavg_end
        )
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn uname() -> String {
    // SAFETY: a zeroed utsname is valid; uname fills it with NUL-terminated strings.
    let u = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return "unknown".to_owned();
        }
        u
    };
    let s = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!(
        "{} {} {} {}",
        s(&u.sysname),
        s(&u.release),
        s(&u.version),
        s(&u.machine)
    )
}

fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc(secs)
}

/// `YYYY-MM-DD HH:MM UTC` of a Unix time (civil-from-days, proleptic Gregorian).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// One figure of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub section: &'static str,
    pub figure: String,
    pub baseline: String,
    pub value: String,
    pub ratio: Option<f64>,
    pub target: Option<String>,
    pub verdict: Option<&'static str>,
}

impl Row {
    fn new(section: &'static str, figure: impl Into<String>, value: impl Into<String>) -> Row {
        Row {
            section,
            figure: figure.into(),
            baseline: String::new(),
            value: value.into(),
            ratio: None,
            target: None,
            verdict: None,
        }
    }

    /// Compares `value` with `base`; no ratio unless both are positive (a net cost
    /// within the noise of zero makes no yardstick).
    fn against(mut self, baseline: impl Into<String>, value: f64, base: f64) -> Row {
        self.baseline = baseline.into();
        self.ratio = (value > 0.0 && base > 0.0).then(|| value / base);
        self
    }

    /// Target: ratio at most `max`.
    fn at_most(mut self, max: f64) -> Row {
        self.target = Some(format!("≤ {max}×"));
        self.verdict = self.ratio.map(|r| verdict(r <= max));
        self
    }

    /// Target: ratio at least `min`.
    fn at_least(mut self, min: f64) -> Row {
        self.target = Some(format!("≥ {min}×"));
        self.verdict = self.ratio.map(|r| verdict(r >= min));
        self
    }

    /// Target on the value itself: under `max` `unit`.
    fn under(mut self, value: f64, max: f64, unit: &str) -> Row {
        self.target = Some(format!("< {max} {unit}"));
        self.verdict = Some(verdict(value < max));
        self
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "PASS" } else { "MISS" }
}

/// Forwarding: the director's rate over the minimal XDP forwarder's.
pub const FORWARDING_TARGET: f64 = 0.95;
/// HTTP through the director: requests/s over direct, p99 over direct,
/// requests/s over haproxy.
pub const HTTP_RATE_TARGET: f64 = 0.95;
pub const HTTP_P99_TARGET: f64 = 1.1;
pub const HTTP_HAPROXY_TARGET: f64 = 1.5;
/// Control plane: 1000 × 100 to the maps, and a one-server reload.
pub const LOAD_TARGET_MS: f64 = 1000.0;
pub const RELOAD_TARGET_MS: f64 = 10.0;
/// Health checks: cores for 10 000 servers probed every second.
pub const HEALTH_TARGET_CORES: f64 = 0.25;

fn health_rows(h: &HealthCpu) -> Vec<Row> {
    let what = format!(
        "health checks: {} TCP servers each probed every second ({:.0} probes/s, {} failed)",
        h.targets, h.probes_per_s, h.failures
    );
    vec![
        Row::new(
            "health",
            format!("{what}: the monitor's CPU, handshakes' kernel work (both ends) included"),
            format!("{:.3} cores", h.monitor_cores()),
        )
        .under(h.monitor_cores(), HEALTH_TARGET_CORES, "cores"),
        Row::new(
            "health",
            format!("{what}: the monitor's own CPU above the kernel's floor"),
            format!("{:.3} cores", h.monitor_cores() - h.floor_cores),
        )
        .against(
            format!(
                "floor {:.3} cores (as many blocking connect + reset, both ends)",
                h.floor_cores
            ),
            h.monitor_cores(),
            h.floor_cores,
        ),
    ]
}

fn next_hop_rows(h: &NextHops) -> Vec<Row> {
    vec![
        Row::new(
            "next hops",
            format!(
                "next hops: {} real servers resolved (netlink service: dump, route lookups, first events)",
                h.servers
            ),
            format!(
                "{:.0} ms ({:.0}× faster)",
                h.netlink_ms,
                h.ip_json_ms / h.netlink_ms
            ),
        )
        .against(
            format!(
                "{:.0} ms: 3 `ip -j` processes per server, {OLD_IN_FLIGHT} at once (the resolver before)",
                h.ip_json_ms
            ),
            h.netlink_ms,
            h.ip_json_ms,
        ),
    ]
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub mode: &'static str,
    pub machine: Machine,
    pub seconds: f64,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    pub errors: Vec<String>,
    pub per_packet: Option<PerPacket>,
    pub profile: Option<Profile>,
    pub forwarding: Option<Forwarding>,
    pub http: Option<Http>,
    pub control: Option<ControlPlane>,
    pub health: Option<HealthCpu>,
    pub next_hops: Option<NextHops>,
    #[serde(skip)]
    started: Option<Instant>,
}

impl Report {
    pub fn new(mode: &'static str) -> Report {
        Report {
            tool: "director-bench",
            mode,
            machine: Machine::now(),
            seconds: 0.0,
            rows: Vec::new(),
            notes: Vec::new(),
            errors: Vec::new(),
            per_packet: None,
            profile: None,
            forwarding: None,
            http: None,
            health: None,
            next_hops: None,
            control: None,
            started: Some(Instant::now()),
        }
    }

    /// Derives the rows and notes from the sections' results.
    pub fn finish(&mut self) {
        self.machine.loadavg_end = loadavg();
        self.seconds = self.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let mut rows = Vec::new();
        if let Some(p) = &self.per_packet {
            rows.extend(per_packet_rows(p));
        }
        if let Some(f) = &self.forwarding {
            rows.extend(forwarding_rows(f));
        }
        if let Some(h) = &self.http {
            rows.extend(http_rows(h));
        }
        if let Some(c) = &self.control {
            rows.extend(control_rows(c));
        }
        if let Some(h) = &self.health {
            rows.extend(health_rows(h));
        }
        if let Some(h) = &self.next_hops {
            rows.extend(next_hop_rows(h));
        }
        self.rows = rows;
        self.notes = notes(self);
    }

    pub fn markdown_table(&self) -> String {
        let mut t = String::from(
            "| figure | baseline | value | ratio | target | PASS/MISS |\n|---|---|---|---:|---|---|\n",
        );
        for r in &self.rows {
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} | {} |",
                r.figure,
                r.baseline,
                r.value,
                r.ratio.map_or(String::new(), |x| format!("{x:.2}×")),
                r.target.as_deref().unwrap_or(""),
                r.verdict.unwrap_or("")
            );
        }
        t
    }

    fn markdown(&self) -> String {
        let mut m = format!(
            "# director benchmarks ({} run)\n\n{}\n\nRun time {:.0} s. Reproduce: `cargo xtask bench{}` (as root).\n\n",
            self.mode,
            self.machine.line(),
            self.seconds,
            match self.mode {
                "full" => "",
                "quick" => " --quick",
                _ => " --smoke",
            }
        );
        if self.mode == "smoke" {
            m += "**Smoke run: tiny counts and a debug build; the figures only prove that every benchmark path works.**\n\n";
        }
        m += &self.markdown_table();
        if let Some(p) = &self.per_packet {
            m += "\n## Per-packet cost by connection-table size (net ns)\n\n";
            m += &per_packet_matrix(p);
        }
        if !self.notes.is_empty() {
            m += "\n## Notes and profile hints\n\n";
            for n in &self.notes {
                let _ = writeln!(m, "- {n}");
            }
        }
        if !self.errors.is_empty() {
            m += "\n## Errors\n\n";
            for e in &self.errors {
                let _ = writeln!(m, "- {}", e.replace('\n', " "));
            }
        }
        m += "\n## Method\n\n";
        m += METHOD;
        m
    }

    /// Writes latest.json, latest.md and latest.svg into `dir`.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let json = serde_json::to_string_pretty(self).context("serialise the report")?;
        let files = [
            ("latest.json", json + "\n"),
            ("latest.md", self.markdown()),
            ("latest.svg", svg::chart(self)),
        ];
        let mut written = Vec::new();
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
            written.push(path);
        }
        Ok(written)
    }
}

const METHOD: &str = "\
- Per-packet: the director's XDP program and two raw-instruction baselines (XDP_PASS; MAC swap + XDP_TX) \
run by `BPF_PROG_TEST_RUN` on one pinned CPU. Every figure is the mean of many `repeat = 1` calls, each on a fresh \
copy of its frame (with `repeat > 1` the kernel would rerun a rewriting program on its own output). Net = measured − \
the XDP_PASS mean of the same block (the fixed cost of a call). Established cases pick a random prefilled flow per \
call; \"one hot flow\" repeats one flow; new-connection cases use a distinct client per call and their connections are \
removed after the case, so every case sees the table at its fill. The table is prefilled through \
`Dataplane::insert_conn` (with reply entries only where the datapath would record them) and sized so that nothing is evicted. Each call of a case \
is paired with an XDP_PASS call (the overhead subtracted is the mean of those); a pair with a call slower than 10 medians \
of its series (an interrupt) is left out and counted in latest.json.
- Forwarding: NAT lab, trafgen (one CPU) sending 64-byte UDP frames of many flows into the director namespace; \
an XDP program on each real server's interface counts and drops them. Warm-up, then a fixed window; CPU time is the \
whole machine's busy time in /proc/stat over the window divided by the packets delivered. Sender, veths and receivers \
share the CPUs, so compare ratios within one run.
- HTTP: wrk (1 thread) in the client namespace against the lab's HTTP server; `Connection: close` for a new \
connection per request.
- Control plane: a generated configuration, timed from the parsed configuration to every map written (plan, program \
and map creation, rings and virtual servers, backends); backends get a fixed next hop (no ARP).
";

fn ns(x: f64) -> String {
    format!("{x:.1} ns")
}

/// The unit of the per-packet targets: one run of the MAC-swap program with a
/// large `repeat`. The reference figures fix this reading: Katran at
/// 57–63 ns net (established) and 134–140 ns (SYN) against a MAC swap of 5 ns
/// per run are its "12×" and "27×". (The MAC swap's net cost per `repeat = 1`
/// call, about 1 ns, would make every ratio a ratio of noise.)
pub fn swap_unit(p: &PerPacket) -> f64 {
    p.baselines.mac_swap_large_ns
}

fn per_packet_rows(p: &PerPacket) -> Vec<Row> {
    let b = &p.baselines;
    let swap_net = b.mac_swap_net_ns;
    let unit = swap_unit(p);
    let mut rows = vec![
        Row::new(
            "per-packet",
            "XDP_PASS, `repeat = 1` calls (fixed cost of a call)",
            ns(b.pass_ns),
        ),
        Row::new(
            "per-packet",
            "MAC swap + XDP_TX, `repeat = 1` calls",
            format!("{} net ({} measured)", ns(swap_net), ns(b.mac_swap_ns)),
        ),
        Row::new(
            "per-packet",
            format!("XDP_PASS / MAC swap, `repeat = {}`", b.large_repeat),
            format!(
                "{} / {} per run",
                ns(b.pass_large_ns),
                ns(b.mac_swap_large_ns)
            ),
        ),
        Row::new(
            "per-packet",
            "reference: one LRU hash insert, 40-byte key and value (raw program)",
            format!("{} net", ns(b.lru_insert_net_ns)),
        ),
        Row::new(
            "per-packet",
            "connection-table layout, one insert: shared LRU / per-CPU LRU lists / per-CPU LRU hash",
            format!(
                "{} / {} / {} net",
                ns(b.lru_insert_net_ns),
                ns(b.lru_insert_percpu_lists_net_ns),
                ns(b.lru_insert_percpu_net_ns)
            ),
        ),
    ];
    let (Some(&small), Some(&large)) = (
        p.blocks.first().map(|b| &b.table),
        p.blocks.last().map(|b| &b.table),
    ) else {
        return rows;
    };
    let swap_label = format!("MAC swap {} per run", ns(unit));
    let ids: Vec<&str> = p
        .cases
        .iter()
        .filter(|c| c.table == small)
        .map(|c| c.id)
        .collect();
    for id in &ids {
        let Some(c) = p.case(id, small) else { continue };
        let row = Row::new(
            "per-packet",
            format!("{}, {small} conns", c.label),
            format!("{} net ({} measured)", ns(c.net_ns), ns(c.measured.mean)),
        )
        .against(swap_label.clone(), c.net_ns, unit);
        rows.push(if ESTABLISHED.contains(id) {
            row.at_most(ESTABLISHED_TARGET)
        } else if id.starts_with("new_tcp_") {
            row.at_most(NEW_CONN_TARGET)
        } else {
            row
        });
    }
    for b in &p.blocks {
        rows.push(Row::new(
            "per-packet",
            format!(
                "reference: one lookup in a raw LRU hash of {} entries, 40-byte keys, random (memory floor)",
                b.table
            ),
            format!("{} net", ns(b.lru_lookup_net_ns)),
        ));
    }
    if let (Some(a), Some(z)) = (p.blocks.first(), p.blocks.last())
        && large != small
    {
        rows.push(
            Row::new(
                "per-packet",
                format!("growth {small} → {large} entries: raw LRU lookup (memory floor)"),
                format!("{} net at {large}", ns(z.lru_lookup_net_ns)),
            )
            .against(
                format!("{} net at {small}", ns(a.lru_lookup_net_ns)),
                z.lru_lookup_net_ns,
                a.lru_lookup_net_ns,
            ),
        );
    }
    if large != small {
        for id in &ids {
            let (Some(a), Some(z)) = (p.case(id, small), p.case(id, large)) else {
                continue;
            };
            let row = Row::new(
                "per-packet",
                format!("growth {small} → {large} conns: {}", a.label),
                format!("{} net at {large}", ns(z.net_ns)),
            )
            .against(
                format!("{} net at {small}", ns(a.net_ns)),
                z.net_ns,
                a.net_ns,
            );
            rows.push(if GROWTH.contains(id) {
                row.at_most(GROWTH_TARGET)
            } else {
                row
            });
        }
    }
    rows
}

/// case × table size, net ns.
fn per_packet_matrix(p: &PerPacket) -> String {
    let sizes: Vec<u32> = p.blocks.iter().map(|b| b.table).collect();
    let mut m = String::from("| case |");
    for s in &sizes {
        let _ = write!(m, " {s} |");
    }
    m += "\n|---|";
    m += &"---:|".repeat(sizes.len());
    m += "\n";
    let first = sizes.first().copied().unwrap_or(0);
    for c in p.cases.iter().filter(|c| c.table == first) {
        let _ = write!(m, "| {} |", c.label);
        for &s in &sizes {
            let v = p
                .case(c.id, s)
                .map_or(String::new(), |x| format!("{:.1}", x.net_ns));
            let _ = write!(m, " {v} |");
        }
        m += "\n";
    }
    let _ = write!(m, "| XDP_PASS per call (overhead) |");
    for b in &p.blocks {
        let _ = write!(m, " {:.1} |", b.pass.mean);
    }
    m += "\n";
    m
}

fn forwarding_rows(f: &Forwarding) -> Vec<Row> {
    let floor = f.case("xdp_forwarder");
    f.cases
        .iter()
        .map(|c| {
            let row = Row::new(
                "forwarding",
                format!("forwarding, 64-byte UDP, {} flows: {}", f.flows, c.label),
                format!(
                    "{:.3} Mpps, {:.0} ns CPU/packet",
                    c.delivered_pps / 1e6,
                    c.cpu_ns_per_packet
                ),
            );
            match floor {
                Some(fl) if fl.id != c.id => {
                    let row = row.against(
                        format!("XDP forwarder {:.3} Mpps", fl.delivered_pps / 1e6),
                        c.delivered_pps,
                        fl.delivered_pps,
                    );
                    if c.id == "director" {
                        row.at_least(FORWARDING_TARGET)
                    } else {
                        row
                    }
                }
                _ => row,
            }
        })
        .collect()
}

fn http_rows(h: &Http) -> Vec<Row> {
    let reload = Row::new(
        "control",
        "live reload changing one real server (NAT lab, 3 servers): control request → answer, maps written",
        format!(
            "{:.2} ms median, p99 {:.2} ms ({} reloads)",
            h.reload_ms.p50, h.reload_ms.p99, h.reload_ms.n
        ),
    )
    .under(h.reload_ms.p99, RELOAD_TARGET_MS, "ms (p99)");
    let mut rows = Vec::new();
    for c in &h.cases {
        let row = Row::new(
            "http",
            format!("HTTP, {}: {}", c.conn.label(), c.label),
            format!(
                "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms{}",
                c.requests_per_s,
                c.p50_ms,
                c.p99_ms,
                if c.errors > 0 {
                    format!(", {} errors", c.errors)
                } else {
                    String::new()
                }
            ),
        );
        let ours = c.id.starts_with("director");
        let Some(d) = h.case("direct", c.conn).filter(|d| d.id != c.id) else {
            rows.push(row);
            continue;
        };
        let row = row.against(
            format!("direct {:.0} req/s", d.requests_per_s),
            c.requests_per_s,
            d.requests_per_s,
        );
        if !ours {
            rows.push(row);
            continue;
        }
        rows.push(row.at_least(HTTP_RATE_TARGET));
        rows.push(
            Row::new(
                "http",
                format!("HTTP p99, {}: {}", c.conn.label(), c.label),
                format!("{:.2} ms", c.p99_ms),
            )
            .against(format!("direct {:.2} ms", d.p99_ms), c.p99_ms, d.p99_ms)
            .at_most(HTTP_P99_TARGET),
        );
        if let Some(hp) = h.case("haproxy", c.conn) {
            rows.push(
                Row::new(
                    "http",
                    format!("HTTP, {}: {} against haproxy", c.conn.label(), c.label),
                    format!("{:.0} req/s", c.requests_per_s),
                )
                .against(
                    format!("haproxy {:.0} req/s", hp.requests_per_s),
                    c.requests_per_s,
                    hp.requests_per_s,
                )
                .at_least(HTTP_HAPROXY_TARGET),
            );
        }
    }
    rows.push(reload);
    rows
}

fn scale_row(r: &ScaleRun) -> Row {
    Row::new(
        "control",
        format!(
            "control plane: {} virtual servers × {} real servers ({}), parsed config → all maps written",
            r.virtual_servers, r.real_servers_per_vs, r.scheduler
        ),
        format!(
            "{:.0} ms (plan {:.0}, load + verifier {:.0}, install {:.0} for {} ring entries, backends {:.0})",
            r.to_maps_ms, r.plan_ms, r.load_ms, r.install_ms, r.ring_entries, r.backends_ms
        ),
    )
}

fn control_rows(c: &ControlPlane) -> Vec<Row> {
    let mut rows = vec![
        scale_row(&c.wrr).under(c.wrr.to_maps_ms, LOAD_TARGET_MS, "ms"),
        scale_row(&c.mh),
    ];
    let first = c.parse.first();
    for p in &c.parse {
        let row = Row::new(
            "control",
            format!(
                "parsing a configuration of {} virtual servers × {} real servers ({} KiB)",
                p.virtual_servers,
                p.real_servers_per_vs,
                p.config_bytes / 1024
            ),
            format!("{:.0} ms", p.parse_ms),
        );
        rows.push(match first {
            Some(f) if f.virtual_servers != p.virtual_servers => row.against(
                format!(
                    "{:.0} ms for {} virtual servers ({:.0}× fewer)",
                    f.parse_ms,
                    f.virtual_servers,
                    p.virtual_servers as f64 / f.virtual_servers as f64
                ),
                p.parse_ms,
                f.parse_ms,
            ),
            _ => row,
        });
    }
    rows.extend([
        Row::new(
            "control",
            format!("Maglev table, {MAGLEV_SLOTS} slots, {MAGLEV_BACKENDS} backends"),
            format!("{:.2} ms (median of {})", c.maglev_ms.p50, c.maglev_ms.n),
        ),
        Row::new(
            "control",
            "single-backend change: map writes (set_backend, new ring, VipInfo swap)",
            format!(
                "{:.0} µs (median of {})",
                c.backend_change_map_writes_us.p50, c.backend_change_map_writes_us.n
            ),
        ),
    ]);
    rows
}

/// What the data says about each missed target, and the profile.
fn notes(r: &Report) -> Vec<String> {
    let mut notes = Vec::new();
    for row in r.rows.iter().filter(|x| x.verdict == Some("MISS")) {
        let target = row.target.as_deref().unwrap_or("");
        notes.push(match row.ratio {
            Some(ratio) => format!(
                "MISS: {} — {} against {} ({ratio:.2}×, target {target}).",
                row.figure, row.value, row.baseline
            ),
            None => format!("MISS: {} — {} (target {target}).", row.figure, row.value),
        });
    }
    if let Some(p) = &r.per_packet {
        let b = &p.baselines;
        notes.push(format!(
            "Per-packet ratios are net costs over one MAC-swap run with `repeat = {}` ({:.1} ns here; XDP_PASS {:.1} ns), \
             the unit the targets' reference figures use: Katran, measured the same way, costs 57–63 ns net established and \
             134–140 ns for a SYN on a machine where that MAC swap takes 5 ns (XDP_PASS 3 ns), its 12× and 27×. This \
             machine runs the MAC swap {:.1}× and XDP_PASS {:.1}× slower than that reference; ratios compare like with \
             like. The MAC swap's own net cost per `repeat = 1` call ({:.1} ns) is too small to divide by.",
            b.large_repeat,
            b.mac_swap_large_ns,
            b.pass_large_ns,
            b.mac_swap_large_ns / 5.0,
            b.pass_large_ns / 3.0,
            b.mac_swap_net_ns
        ));
        if let (Some(hot), Some(first)) = (
            p.blocks
                .last()
                .and_then(|l| p.case("est_nat_tcp_one_flow", l.table)),
            p.blocks.last().and_then(|l| p.case("est_nat_tcp", l.table)),
        ) {
            notes.push(format!(
                "At {} connections an established NAT packet costs {} net on a random flow but {} on one hot flow: the \
                 difference is cache misses in the connection table, not instructions.",
                first.table,
                ns(first.net_ns),
                ns(hot.net_ns)
            ));
            if let (Some(a), Some(z)) = (p.blocks.first(), p.blocks.last())
                && let Some(small) = p.case("est_nat_tcp", a.table)
            {
                notes.push(format!(
                    "From {} to {} connections an established NAT packet gains {} net; one lookup in a bare LRU hash of \
                     the same sizes gains {} ({} → {}): the growth is the connection table's memory, which no datapath \
                     that looks flows up in a hash table of that size avoids.",
                    a.table,
                    z.table,
                    ns(first.net_ns - small.net_ns),
                    ns(z.lru_lookup_net_ns - a.lru_lookup_net_ns),
                    ns(a.lru_lookup_net_ns),
                    ns(z.lru_lookup_net_ns)
                ));
            }
        }
        let new: Vec<String> = SCHEDULERS
            .iter()
            .filter_map(|s| p.case(testrun::new_case_id(s), p.blocks.first()?.table))
            .map(|c| {
                format!(
                    "{} {}",
                    c.label.rsplit(", ").next().unwrap_or(""),
                    ns(c.net_ns)
                )
            })
            .collect();
        if !new.is_empty() {
            notes.push(format!(
                "New TCP connections by scheduler (net): {}. A new connection inserts into one LRU hash (CONNS; \
                 its replies are found through NAT_SERVERS); one insert costs {} net on its own.",
                new.join(", "),
                ns(b.lru_insert_net_ns)
            ));
        }
    }
    if let Some(prof) = &r.profile {
        notes.push(format!(
            "Program sizes after verification: director {} instructions ({} processed by the verifier), {} bytes JIT-compiled; \
             MAC swap {} instructions, {} bytes; XDP_PASS {} / {}. The director's verified code is in `{}`.",
            prof.director.xlated_insns,
            prof.director.verified_insns,
            prof.director.jited_bytes,
            prof.mac_swap.xlated_insns,
            prof.mac_swap.jited_bytes,
            prof.pass.xlated_insns,
            prof.pass.jited_bytes,
            prof.dump_file
        ));
        for f in &prof.functions {
            let calls: Vec<String> = f.calls.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
            notes.push(format!(
                "BPF function `{}`: {} instructions; calls: {}.",
                f.name,
                f.insns,
                if calls.is_empty() {
                    "none".to_owned()
                } else {
                    calls.join(", ")
                }
            ));
        }
    }
    if let Some(prof) = &r.profile
        && let Some(main) = prof.functions.first()
        && let Some(n) = main.calls.get("memset()")
    {
        notes.push(format!(
            "`{}`, which every packet runs, calls the BPF function memset() {n} times: a byte-at-a-time loop the \
             compiler emitted for zeroing small arrays (see the dump); stores of whole words would do.",
            main.name
        ));
    }
    if let Some(f) = &r.forwarding
        && let (Some(d), Some(floor)) = (f.case("director"), f.case("xdp_forwarder"))
    {
        notes.push(format!(
            "Forwarding: the director delivers {:.0}% of the minimal XDP forwarder's rate; both share the lab's \
             path after the director namespace (veth, the switch namespace's bridge, veth), which bounds them alike.",
            100.0 * d.delivered_pps / floor.delivered_pps
        ));
    }
    if let Some(h) = &r.http {
        let line = |conn| {
            let (d, nat, routed) = (
                h.case("direct", conn)?,
                h.case("director_nat", conn)?,
                h.case("routed", conn)?,
            );
            Some(format!(
                "{}: the NAT lab's path alone (kernel routing through the director namespace, no director) reaches {:.2}× \
                 direct, the director in NAT {:.2}× direct, {:.2}× that path",
                conn.label(),
                routed.requests_per_s / d.requests_per_s,
                nat.requests_per_s / d.requests_per_s,
                nat.requests_per_s / routed.requests_per_s
            ))
        };
        let lines: Vec<String> = [Conn::KeepAlive, Conn::Close]
            .into_iter()
            .filter_map(line)
            .collect();
        if !lines.is_empty() {
            notes.push(format!(
                "HTTP: {}. \"Direct\" is a client on the servers' own segment; the NAT lab adds two veth hops through \
                 the director namespace, on the same two cores as wrk and the servers.",
                lines.join("; ")
            ));
        }
    }
    if let Some(h) = &r.health {
        notes.push(format!(
            "Health checks: the monitor's process uses {:.3} cores for {:.0} probes/s; the kernel alone needs {:.3} cores \
             for as many blocking connect + reset pairs with both ends of each handshake on this host (loopback runs the \
             listener's side in the prober's context), so the monitor's own work is {:.3} cores, {:.1} µs per probe. On a \
             director the servers' half of each handshake runs on the servers.",
            h.monitor_cores(),
            h.probes_per_s,
            h.floor_cores,
            h.monitor_cores() - h.floor_cores,
            (h.monitor_cores() - h.floor_cores) * 1e6 / h.probes_per_s
        ));
    }
    if let Some(h) = &r.next_hops {
        notes.push(format!(
            "Next hops: one round of the `ip -j` resolver took {:.1} s and {:.1} s of CPU for {} servers, and the old \
             daemon started a round every {} s: {:.2} cores' worth (a round longer than the interval never caught \
             up). The netlink service resolved them all once in {:.0} ms ({:.0} ms of CPU); after that it acts only on \
             the kernel's change messages.",
            h.ip_json_ms / 1e3,
            h.ip_json_cpu_ms / 1e3,
            h.servers,
            crate::nexthops::OLD_REFRESH.as_secs(),
            h.old_refresh_cores(),
            h.netlink_ms,
            h.netlink_cpu_ms
        ));
    }
    if let Some(c) = &r.control {
        if let [.., a, b] = &c.parse[..] {
            let k = (b.parse_ms / a.parse_ms).ln()
                / (b.virtual_servers as f64 / a.virtual_servers as f64).ln();
            notes.push(format!(
                "Parsing grows as about n^{k:.1} with the configuration's size ({:.0} ms for {} virtual servers, {:.0} ms \
                 for {}).",
                a.parse_ms, a.virtual_servers, b.parse_ms, b.virtual_servers
            ));
        }
        if c.mh.ring_entries > 0 {
            notes.push(format!(
                "Installing {} ring entries for mh took {:.0} ms, {:.2} µs per entry (batched map updates).",
                c.mh.ring_entries,
                c.mh.install_ms,
                c.mh.install_ms * 1e3 / c.mh.ring_entries as f64
            ));
        }
    }
    if let Some(h) = &r.http
        && let Some(c) = h.cases.iter().find(|c| c.errors > 0)
    {
        notes.push(format!(
            "wrk counted errors ({} in {}, {}): see latest.json for every case.",
            c.errors,
            c.label,
            c.conn.label()
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_767_225_600 + 3_600 + 120), "2026-01-01 01:02 UTC");
    }

    #[test]
    fn targets_give_verdicts() {
        let r = Row::new("x", "f", "v").against("b", 5.0, 1.0).at_most(6.0);
        assert_eq!(r.verdict, Some("PASS"));
        let r = Row::new("x", "f", "v").against("b", 7.0, 1.0).at_most(6.0);
        assert_eq!(r.verdict, Some("MISS"));
        let r = Row::new("x", "f", "v").against("b", 7.0, -1.0).at_most(6.0);
        assert_eq!(r.verdict, None, "no ratio, no verdict");
    }
}
