//! What `director status` and the metrics endpoint show: a snapshot of every
//! virtual and real server with counters, rates, connection counts and
//! health, rendered like `ipvsadm -L -n --stats --rate` (the metrics
//! endpoint renders it in `metrics`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::sync::SyncStatus;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub conns: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.conns += o.conns;
        self.packets_in += o.packets_in;
        self.packets_out += o.packets_out;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
    }
}

/// Per-second rates over the last sampling interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub cps: f64,
    pub pps_in: f64,
    pub pps_out: f64,
    pub bps_in: f64,
    pub bps_out: f64,
}

impl Rates {
    pub fn between(old: &Counters, new: &Counters, secs: f64) -> Rates {
        let r = |a: u64, b: u64| {
            if secs > 0.0 {
                b.saturating_sub(a) as f64 / secs
            } else {
                0.0
            }
        };
        Rates {
            cps: r(old.conns, new.conns),
            pps_in: r(old.packets_in, new.packets_in),
            pps_out: r(old.packets_out, new.packets_out),
            bps_in: r(old.bytes_in, new.bytes_in),
            bps_out: r(old.bytes_out, new.bytes_out),
        }
    }

    pub fn add(&mut self, o: &Rates) {
        self.cps += o.cps;
        self.pps_in += o.pps_in;
        self.pps_out += o.pps_out;
        self.bps_in += o.bps_in;
        self.bps_out += o.bps_out;
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RsStatus {
    pub address: String,
    /// The weight scheduling uses now (0 when down or draining).
    pub weight: u32,
    pub config_weight: u32,
    pub backup: bool,
    /// "up", "down" or "unchecked".
    pub health: String,
    pub health_reason: String,
    pub health_transitions: u64,
    pub draining: bool,
    pub active: u64,
    pub inactive: u64,
    pub totals: Counters,
    pub rates: Rates,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VsStatus {
    pub name: String,
    pub address: String,
    pub protocol: String,
    pub scheduler: String,
    pub forward: String,
    pub persistence_s: Option<u64>,
    /// Removed by a reload, draining.
    pub removed: bool,
    pub active: u64,
    pub inactive: u64,
    pub totals: Counters,
    pub rates: Rates,
    pub real_servers: Vec<RsStatus>,
}

/// What became of the records received from one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installs {
    /// Connection and persistence entries installed (or removed).
    pub installed: u64,
    /// Connections not installed because a SYN here made them (the local
    /// entry wins).
    pub kept_local: u64,
    /// Entries for a virtual or real server this director does not have
    /// (they wait for a reload that brings it: `placed_later`).
    pub unknown_server: u64,
    /// Entries installed after waiting for their server (a rolling reload
    /// reached the peer first).
    #[serde(default)]
    pub placed_later: u64,
    /// Connections in a TCP state this build does not know.
    pub unknown_state: u64,
    /// Connections installed without a next hop toward their client (no
    /// route or neighbour answer): their replies cannot leave until the
    /// client sends again.
    pub no_client_hop: u64,
}

/// State sync as `director status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    pub transport: SyncStatus,
    /// By peer address.
    pub installs: BTreeMap<SocketAddr, Installs>,
    /// Datapath events read and records published from them.
    pub events: u64,
    /// Events the datapath's ring had no room for (each loss is answered
    /// with a walk of the whole table).
    pub events_lost: u64,
    /// Records waiting for their client's next hop.
    pub waiting: usize,
    /// Records waiting for a real server not configured here yet, and
    /// those dropped after waiting too long or for want of room.
    #[serde(default)]
    pub unplaced: usize,
    #[serde(default)]
    pub unplaced_dropped: u64,
}

/// Route announcement (`announce_table`) as `director status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnounceReport {
    pub table: u32,
    /// The VIPs with a host route in the table now.
    pub announced: Vec<IpAddr>,
    /// Why nothing is announced yet, until the director is ready and its
    /// first round of health checks is done.
    pub waiting: Option<String>,
}

/// The daemon itself, for the header of `director status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    pub version: String,
    /// Seconds since `director run` started.
    pub uptime_s: u64,
    /// The XDP attach mode and the interfaces attached at the start (a
    /// reload does not change them).
    pub xdp_mode: String,
    pub interfaces: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Boxed: the snapshot travels in a `Response` with small variants.
    #[serde(default)]
    pub running: Box<Running>,
    pub config: String,
    pub virtual_servers: Vec<VsStatus>,
    /// Datapath reason counters (drops and passes), by name.
    pub reasons: BTreeMap<String, u64>,
    /// Entries in the connection table at the last sweep, and its capacity.
    pub conntrack_entries: u64,
    pub conntrack_max: u32,
    /// The same for half-open (SYN_RECV) connections, a table of their own.
    #[serde(default)]
    pub half_open_entries: u64,
    #[serde(default)]
    pub half_open_max: u32,
    pub health_transitions: u64,
    pub reloads: u64,
    /// Reloads by result (`reloads` is `ok` + `restart_needed`).
    #[serde(default)]
    pub reload_results: crate::reload::Results,
    /// How long health probes took, by virtual server and probe kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probe_latency: Vec<crate::health::ProbeLatency>,
    /// State sync, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncReport>,
    /// Route announcement, when `announce_table` is set (boxed: the
    /// snapshot travels in a `Response` with small variants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce: Option<Box<AnnounceReport>>,
}

fn human(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.1}G", v / 1e9),
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e4 => format!("{:.1}K", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// The table's columns: title, width, left-aligned. Every row has a value
/// (or "-") in each, so that `awk` and the eye find the same column.
const COLUMNS: [(&str, usize, bool); 19] = [
    ("Prot", 4, true),
    ("LocalAddress:Port", 28, true),
    ("Sched", 5, true),
    ("Forward", 7, true),
    ("Weight", 6, false),
    ("Active", 7, false),
    ("InAct", 7, false),
    ("State", 10, true),
    ("Conns", 7, false),
    ("InPkts", 7, false),
    ("OutPkts", 7, false),
    ("InBytes", 7, false),
    ("OutBytes", 8, false),
    ("CPS", 6, false),
    ("InPPS", 6, false),
    ("OutPPS", 6, false),
    ("InBPS", 6, false),
    ("OutBPS", 6, false),
    ("Name", 0, true),
];

fn table_line(o: &mut String, cells: &[String]) {
    let mut line = String::new();
    for (cell, (_, width, left)) in cells.iter().zip(COLUMNS) {
        if !line.is_empty() {
            line.push(' ');
        }
        let _ = if left {
            write!(line, "{cell:<width$}")
        } else {
            write!(line, "{cell:>width$}")
        };
    }
    let _ = writeln!(o, "{}", line.trim_end());
}

/// One virtual or real server row: the given leading cells, then the
/// connection counts, state, counters and rates, then the name.
fn row(
    o: &mut String,
    lead: [&str; 5],
    (active, inactive): (u64, u64),
    state: &str,
    (t, r): (&Counters, &Rates),
    name: &str,
) {
    let mut cells: Vec<String> = lead.iter().map(|c| c.to_string()).collect();
    cells.extend([active.to_string(), inactive.to_string(), state.to_string()]);
    let counters = [
        t.conns,
        t.packets_in,
        t.packets_out,
        t.bytes_in,
        t.bytes_out,
    ];
    cells.extend(counters.map(|c| human(c as f64)));
    cells.extend([r.cps, r.pps_in, r.pps_out, r.bps_in, r.bps_out].map(human));
    cells.push(name.to_string());
    table_line(o, &cells);
}

/// "native on eth0, eth1", or that nothing is attached.
fn attachment(s: &Running) -> String {
    if s.interfaces.is_empty() {
        return "not attached".to_string();
    }
    format!("XDP {} on {}", s.xdp_mode, s.interfaces.join(", "))
}

/// The `ipvsadm -L -n --stats --rate` view, with health and drain state.
pub fn render_text(s: &Status) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "director {}, up {}, {}",
        s.running.version,
        humantime::format_duration(std::time::Duration::from_secs(s.running.uptime_s)),
        attachment(&s.running),
    );
    let _ = writeln!(
        o,
        "config {}, conntrack {}/{}, half-open {}/{}, reloads {}, health transitions {}",
        s.config,
        s.conntrack_entries,
        s.conntrack_max,
        s.half_open_entries,
        s.half_open_max,
        s.reloads,
        s.health_transitions
    );
    let titles: Vec<String> = COLUMNS.iter().map(|c| c.0.to_string()).collect();
    table_line(&mut o, &titles);
    let _ = writeln!(o, "  -> RemoteAddress:Port");
    for vs in &s.virtual_servers {
        let method = if vs.forward == "nat" { "Masq" } else { "Route" };
        let mut flags = Vec::new();
        if vs.removed {
            flags.push("removed".to_string());
        }
        if let Some(p) = vs.persistence_s {
            flags.push(format!("persist={p}s"));
        }
        let state = if flags.is_empty() {
            "-".to_string()
        } else {
            flags.join(",")
        };
        let protocol = vs.protocol.to_uppercase();
        row(
            &mut o,
            [&protocol, &vs.address, &vs.scheduler, method, "-"],
            (vs.active, vs.inactive),
            &state,
            (&vs.totals, &vs.rates),
            &vs.name,
        );
        for rs in &vs.real_servers {
            let mut state = rs.health.clone();
            if rs.draining {
                state += ",drain";
            }
            if rs.backup {
                state += ",backup";
            }
            let weight = rs.weight.to_string();
            row(
                &mut o,
                ["  ->", &rs.address, "-", method, &weight],
                (rs.active, rs.inactive),
                &state,
                (&rs.totals, &rs.rates),
                "-",
            );
        }
    }
    if let Some(sync) = &s.sync {
        render_sync(&mut o, sync);
    }
    if let Some(a) = &s.announce {
        let vips: Vec<String> = a.announced.iter().map(IpAddr::to_string).collect();
        let _ = write!(
            o,
            "announce: table {}: {}",
            a.table,
            if vips.is_empty() {
                "nothing".to_string()
            } else {
                vips.join(", ")
            }
        );
        let _ = match &a.waiting {
            Some(why) => writeln!(o, " ({why})"),
            None => writeln!(o),
        };
    }
    o
}

/// Per peer: streams, records and messages both ways, rejections, the send
/// queue, how long since it was last heard, and what became of its records.
fn render_sync(o: &mut String, s: &SyncReport) {
    let _ = writeln!(
        o,
        "sync: {} datapath events ({} lost), {} records waiting for a client's next hop, \
         {} for a server not configured here ({} dropped)",
        s.events, s.events_lost, s.waiting, s.unplaced, s.unplaced_dropped
    );
    let up = |b: bool| if b { "up" } else { "down" };
    for p in &s.transport.peers {
        let rejected: Vec<String> = p
            .messages_rejected
            .iter()
            .filter(|&(_, &n)| n > 0)
            .map(|(why, n)| format!("{why} {n}"))
            .collect();
        let heard = p
            .last_received_ms
            .map_or("never".to_string(), |ms| format!("{ms} ms ago"));
        let lag = p
            .receive_lag_ms
            .map_or(String::new(), |ms| format!(", lag {ms} ms"));
        let _ = writeln!(
            o,
            "  peer {}: send {}, receive {}, {}; last heard {heard}{lag}",
            p.address,
            up(p.send_connected),
            up(p.receive_connected),
            if p.synced { "synced" } else { "not synced" },
        );
        let _ = writeln!(
            o,
            "    records sent {} received {}, messages sent {} received {}, rejected: {}",
            p.records_sent,
            p.records_received,
            p.messages_sent,
            p.messages_received,
            if rejected.is_empty() {
                "none".to_string()
            } else {
                rejected.join(", ")
            },
        );
        let i = s.installs.get(&p.address).cloned().unwrap_or_default();
        let _ = writeln!(
            o,
            "    send queue {} (oldest {} ms, full {} times), installed {}, kept local {}, unknown server {}, \
             placed later {}, unknown state {}, without client next hop {}",
            p.queue_len,
            p.send_lag_ms,
            p.queue_full_drops,
            i.installed,
            i.kept_local,
            i.unknown_server,
            i.placed_later,
            i.unknown_state,
            i.no_client_hop,
        );
    }
    let stray: u64 = s.transport.rejected_unattributed.values().sum();
    if stray > 0 {
        let _ = writeln!(o, "  rejected connections from no peer: {stray}");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One virtual server with one real server that is down.
    pub(crate) fn sample() -> Status {
        // The one real server has all of its virtual server's traffic.
        let totals = Counters {
            conns: 10,
            packets_in: 100,
            packets_out: 90,
            bytes_in: 1000,
            bytes_out: 9000,
        };
        Status {
            running: Box::new(Running {
                version: "0.1.0".into(),
                uptime_s: 3725,
                xdp_mode: "native".into(),
                interfaces: vec!["eth0".into(), "eth1".into()],
            }),
            config: "/etc/director.toml".into(),
            virtual_servers: vec![VsStatus {
                name: "web".into(),
                address: "192.0.2.10:80".into(),
                protocol: "tcp".into(),
                scheduler: "wrr".into(),
                forward: "nat".into(),
                persistence_s: None,
                removed: false,
                active: 3,
                inactive: 1,
                totals,
                rates: Rates::default(),
                real_servers: vec![RsStatus {
                    address: "10.1.0.11:8080".into(),
                    weight: 0,
                    config_weight: 3,
                    backup: false,
                    health: "down".into(),
                    health_reason: "connect: refused".into(),
                    health_transitions: 1,
                    draining: false,
                    active: 3,
                    inactive: 1,
                    totals,
                    rates: Rates::default(),
                }],
            }],
            reasons: [("no_connection".to_string(), 7)].into(),
            conntrack_entries: 4,
            conntrack_max: 1024,
            half_open_entries: 2,
            half_open_max: 1024,
            health_transitions: 1,
            reloads: 2,
            reload_results: crate::reload::Results {
                ok: 1,
                rejected: 1,
                restart_needed: 1,
                last_success_unix_s: Some(1_700_000_000.5),
            },
            probe_latency: vec![crate::health::ProbeLatency {
                vs: "web".into(),
                kind: "tcp".into(),
                latency: crate::health::Latency {
                    counts: [0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],
                    sum_s: 0.9025,
                },
            }],
            sync: None,
            announce: None,
        }
    }

    /// Sync with one peer that has had a message rejected.
    pub(crate) fn sample_sync() -> SyncReport {
        let peer: SocketAddr = "10.9.0.2:8848".parse().expect("address");
        SyncReport {
            transport: SyncStatus {
                peers: vec![crate::sync::PeerStatus {
                    address: peer,
                    send_connected: true,
                    receive_connected: true,
                    synced: true,
                    records_sent: 40,
                    records_received: 30,
                    messages_sent: 20,
                    messages_received: 10,
                    messages_rejected: [("bad_tag".to_string(), 1), ("replay".to_string(), 0)]
                        .into(),
                    queue_len: 3,
                    send_lag_ms: 12,
                    receive_lag_ms: Some(3),
                    queue_full_drops: 0,
                    last_received_ms: Some(250),
                }],
                rejected_unattributed: [("bad_handshake".to_string(), 2)].into(),
            },
            installs: [(
                peer,
                Installs {
                    installed: 28,
                    unknown_server: 2,
                    ..Installs::default()
                },
            )]
            .into(),
            events: 50,
            events_lost: 0,
            waiting: 0,
            unplaced: 0,
            unplaced_dropped: 0,
        }
    }

    #[test]
    fn text_view_shows_each_sync_peer() {
        let t = render_text(&Status {
            sync: Some(sample_sync()),
            ..sample()
        });
        for want in [
            "peer 10.9.0.2:8848: send up, receive up, synced; last heard 250 ms ago, lag 3 ms",
            "records sent 40 received 30, messages sent 20 received 10, rejected: bad_tag 1\n",
            "send queue 3 (oldest 12 ms, full 0 times), installed 28, kept local 0, unknown server 2",
            "rejected connections from no peer: 2",
        ] {
            assert!(t.contains(want), "{want:?} missing from:\n{t}");
        }
    }

    #[test]
    fn text_view_shows_the_announced_vips_or_why_none() {
        let announce = |announced: &[&str], waiting: Option<&str>| {
            render_text(&Status {
                announce: Some(Box::new(AnnounceReport {
                    table: 100,
                    announced: announced.iter().map(|a| a.parse().expect("ip")).collect(),
                    waiting: waiting.map(str::to_string),
                })),
                ..sample()
            })
        };
        let t = announce(&["192.0.2.10", "2001:db8::10"], None);
        assert!(
            t.ends_with("announce: table 100: 192.0.2.10, 2001:db8::10\n"),
            "{t}"
        );
        let t = announce(&[], Some("waiting for the first round of health checks"));
        assert!(
            t.ends_with(
                "announce: table 100: nothing (waiting for the first round of health checks)\n"
            ),
            "{t}"
        );
        assert!(!render_text(&sample()).contains("announce"));
    }

    #[test]
    fn status_every_row_has_a_value_under_each_title() {
        let mut s = sample();
        s.virtual_servers[0].persistence_s = Some(300);
        s.virtual_servers[0].real_servers[0].draining = true;
        let t = render_text(&s);
        let lines: Vec<&str> = t.lines().collect();
        let title = lines
            .iter()
            .position(|l| l.starts_with("Prot "))
            .unwrap_or_else(|| panic!("no title line in:\n{t}"));
        let titles: Vec<&str> = lines[title].split_whitespace().collect();
        for want in ["OutBytes", "InBPS", "OutBPS", "Forward"] {
            assert!(titles.contains(&want), "{want} missing from {titles:?}");
        }
        let rows: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("TCP ") || l.starts_with("  -> 10."))
            .collect();
        assert_eq!(
            rows.len(),
            2,
            "one virtual and one real server row in:\n{t}"
        );
        for r in rows {
            let fields: Vec<&str> = r.split_whitespace().collect();
            assert_eq!(
                fields.len(),
                titles.len(),
                "fields of {r:?} against the titles {titles:?}"
            );
            let at = |name: &str| fields[titles.iter().position(|t| *t == name).expect("title")];
            assert_eq!(at("OutBytes"), "9000", "{r}");
            assert!(matches!(at("Forward"), "Masq"), "{r}");
        }
    }

    #[test]
    fn status_header_shows_version_uptime_xdp_mode_and_interfaces() {
        let t = render_text(&sample());
        let head = t.lines().next().expect("header");
        assert_eq!(
            head, "director 0.1.0, up 1h 2m 5s, XDP native on eth0, eth1",
            "{t}"
        );
        assert!(
            t.lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("config /etc/director.toml, conntrack 4/1024")),
            "{t}"
        );
    }

    #[test]
    fn text_view_shows_health_and_method() {
        let t = render_text(&sample());
        assert!(t.contains("TCP  192.0.2.10:80"), "{t}");
        let rs = t
            .lines()
            .find(|l| l.contains("10.1.0.11:8080"))
            .expect("server line");
        assert!(rs.contains("Masq") && rs.contains("down"), "{rs}");
    }

    #[test]
    fn rates_are_per_second_deltas() {
        let a = Counters {
            conns: 10,
            packets_in: 100,
            ..Counters::default()
        };
        let b = Counters {
            conns: 30,
            packets_in: 500,
            ..Counters::default()
        };
        let r = Rates::between(&a, &b, 2.0);
        assert_eq!((r.cps, r.pps_in), (10.0, 200.0));
        assert_eq!(
            Rates::between(&b, &a, 2.0).cps,
            0.0,
            "a reset counter gives 0, not a wrap"
        );
    }
}
