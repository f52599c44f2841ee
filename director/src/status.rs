//! What `director status` and the metrics endpoint show: a snapshot of every
//! virtual and real server with counters, rates, connection counts and
//! health, rendered like `ipvsadm -L -n --stats --rate` or as Prometheus
//! text exposition.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

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

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub config: String,
    pub virtual_servers: Vec<VsStatus>,
    /// Datapath reason counters (drops and passes), by name.
    pub reasons: BTreeMap<String, u64>,
    /// Entries in the connection table at the last sweep, and its capacity.
    pub conntrack_entries: u64,
    pub conntrack_max: u32,
    pub health_transitions: u64,
    pub reloads: u64,
}

fn human(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.1}G", v / 1e9),
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e4 => format!("{:.1}K", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// One table row: the columns after the name, shared by virtual and real
/// servers.
#[allow(clippy::too_many_arguments)]
fn row(
    o: &mut String,
    lead: &str,
    name: &str,
    col2: &str,
    weight: &str,
    active: u64,
    inactive: u64,
    state: &str,
    t: &Counters,
    r: &Rates,
    tail: &str,
) {
    let _ = writeln!(
        o,
        "{lead}{name:<28} {col2:<7} {weight:>6} {active:>7} {inactive:>8} {state:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>7} {:>7} {:>7} {:>7}{tail}",
        human(t.conns as f64),
        human(t.packets_in as f64),
        human(t.packets_out as f64),
        human(t.bytes_in as f64),
        human(t.bytes_out as f64),
        human(r.cps),
        human(r.pps_in),
        human(r.pps_out),
        human(r.bps_in),
        human(r.bps_out),
    );
}

/// The `ipvsadm -L -n --stats --rate` view, with health and drain state.
pub fn render_text(s: &Status) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "director: {} (conntrack {}/{})",
        s.config, s.conntrack_entries, s.conntrack_max
    );
    let _ = writeln!(
        o,
        "{:<4} {:<28} {:<7} {:>6} {:>7} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>6} {:>7} {:>7}",
        "Prot",
        "LocalAddress:Port",
        "Sched",
        "Weight",
        "Active",
        "InAct",
        "Health",
        "Conns",
        "InPkts",
        "OutPkts",
        "InBytes",
        "CPS",
        "InPPS",
        "OutPPS"
    );
    let _ = writeln!(o, "  -> RemoteAddress:Port");
    for vs in &s.virtual_servers {
        let flags = match (vs.persistence_s, vs.removed) {
            (_, true) => " (removed, draining)".to_string(),
            (Some(p), _) => format!(" persistent {p}"),
            _ => String::new(),
        };
        let lead = format!("{:<4} ", vs.protocol.to_uppercase());
        let tail = format!("  {}{flags}", vs.name);
        row(
            &mut o,
            &lead,
            &vs.address,
            &vs.scheduler,
            "",
            vs.active,
            vs.inactive,
            "",
            &vs.totals,
            &vs.rates,
            &tail,
        );
        let method = if vs.forward == "nat" { "Masq" } else { "Route" };
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
                "  -> ",
                &rs.address,
                method,
                &weight,
                rs.active,
                rs.inactive,
                &state,
                &rs.totals,
                &rs.rates,
                "",
            );
        }
    }
    o
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text exposition (version 0.0.4).
pub fn render_metrics(s: &Status) -> String {
    let mut o = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(o, "{name}{{{labels}}} {v}");
        }
    };
    let vs_l = |vs: &VsStatus| {
        format!(
            "vs=\"{}\",address=\"{}\"",
            escape(&vs.name),
            escape(&vs.address)
        )
    };
    let rs_l =
        |vs: &VsStatus, rs: &RsStatus| format!("{},server=\"{}\"", vs_l(vs), escape(&rs.address));
    let per_vs = |f: &dyn Fn(&VsStatus) -> f64| -> Vec<(String, f64)> {
        s.virtual_servers
            .iter()
            .map(|vs| (vs_l(vs), f(vs)))
            .collect()
    };
    let per_rs = |f: &dyn Fn(&RsStatus) -> f64| -> Vec<(String, f64)> {
        s.virtual_servers
            .iter()
            .flat_map(|vs| vs.real_servers.iter().map(move |rs| (rs_l(vs, rs), f(rs))))
            .collect()
    };
    let dir = |f: &dyn Fn(&Counters, bool) -> u64, rs_level: bool| -> Vec<(String, f64)> {
        let mut v = Vec::new();
        for vs in &s.virtual_servers {
            if rs_level {
                for rs in &vs.real_servers {
                    v.push((
                        format!("{},direction=\"in\"", rs_l(vs, rs)),
                        f(&rs.totals, true) as f64,
                    ));
                    v.push((
                        format!("{},direction=\"out\"", rs_l(vs, rs)),
                        f(&rs.totals, false) as f64,
                    ));
                }
            } else {
                v.push((
                    format!("{},direction=\"in\"", vs_l(vs)),
                    f(&vs.totals, true) as f64,
                ));
                v.push((
                    format!("{},direction=\"out\"", vs_l(vs)),
                    f(&vs.totals, false) as f64,
                ));
            }
        }
        v
    };
    let pk = |c: &Counters, inb: bool| if inb { c.packets_in } else { c.packets_out };
    let by = |c: &Counters, inb: bool| if inb { c.bytes_in } else { c.bytes_out };
    family(
        "director_vs_connections_total",
        "counter",
        "Connections scheduled to the virtual server.",
        per_vs(&|vs| vs.totals.conns as f64),
    );
    family(
        "director_vs_packets_total",
        "counter",
        "Packets forwarded for the virtual server.",
        dir(&pk, false),
    );
    family(
        "director_vs_bytes_total",
        "counter",
        "Bytes forwarded for the virtual server.",
        dir(&by, false),
    );
    family(
        "director_vs_active_connections",
        "gauge",
        "ESTABLISHED connections.",
        per_vs(&|vs| vs.active as f64),
    );
    family(
        "director_vs_inactive_connections",
        "gauge",
        "Connections in other states.",
        per_vs(&|vs| vs.inactive as f64),
    );
    family(
        "director_rs_connections_total",
        "counter",
        "Connections scheduled to the real server.",
        per_rs(&|rs| rs.totals.conns as f64),
    );
    family(
        "director_rs_packets_total",
        "counter",
        "Packets forwarded for the real server.",
        dir(&pk, true),
    );
    family(
        "director_rs_bytes_total",
        "counter",
        "Bytes forwarded for the real server.",
        dir(&by, true),
    );
    family(
        "director_rs_active_connections",
        "gauge",
        "ESTABLISHED connections.",
        per_rs(&|rs| rs.active as f64),
    );
    family(
        "director_rs_inactive_connections",
        "gauge",
        "Connections in other states.",
        per_rs(&|rs| rs.inactive as f64),
    );
    family(
        "director_rs_weight",
        "gauge",
        "Weight in effect (0 when down or draining).",
        per_rs(&|rs| rs.weight as f64),
    );
    family(
        "director_rs_up",
        "gauge",
        "1 when the health check passes (or none is configured).",
        per_rs(&|rs| f64::from(u8::from(rs.health != "down"))),
    );
    family(
        "director_rs_draining",
        "gauge",
        "1 while the server drains.",
        per_rs(&|rs| f64::from(u8::from(rs.draining))),
    );
    family(
        "director_rs_health_transitions_total",
        "counter",
        "Health state changes.",
        per_rs(&|rs| rs.health_transitions as f64),
    );
    let reasons = s
        .reasons
        .iter()
        .map(|(r, n)| (format!("reason=\"{r}\""), *n as f64))
        .collect();
    family(
        "director_datapath_events_total",
        "counter",
        "Packets the datapath passed or dropped, by reason.",
        reasons,
    );
    family(
        "director_conntrack_entries",
        "gauge",
        "Connection table entries at the last sweep.",
        vec![(String::new(), s.conntrack_entries as f64)],
    );
    family(
        "director_conntrack_max",
        "gauge",
        "Connection table capacity.",
        vec![(String::new(), f64::from(s.conntrack_max))],
    );
    family(
        "director_reloads_total",
        "counter",
        "Configuration reloads applied.",
        vec![(String::new(), s.reloads as f64)],
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Status {
        Status {
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
                totals: Counters {
                    conns: 10,
                    packets_in: 100,
                    packets_out: 90,
                    bytes_in: 1000,
                    bytes_out: 9000,
                },
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
                    totals: Counters {
                        conns: 10,
                        packets_in: 100,
                        packets_out: 90,
                        bytes_in: 1000,
                        bytes_out: 9000,
                    },
                    rates: Rates::default(),
                }],
            }],
            reasons: [("no_connection".to_string(), 7)].into(),
            conntrack_entries: 4,
            conntrack_max: 1024,
            health_transitions: 1,
            reloads: 2,
        }
    }

    #[test]
    fn metrics_carry_labels_and_values() {
        let m = render_metrics(&sample());
        for line in [
            "director_vs_connections_total{vs=\"web\",address=\"192.0.2.10:80\"} 10",
            "director_rs_packets_total{vs=\"web\",address=\"192.0.2.10:80\",server=\"10.1.0.11:8080\",direction=\"out\"} 90",
            "director_rs_up{vs=\"web\",address=\"192.0.2.10:80\",server=\"10.1.0.11:8080\"} 0",
            "director_datapath_events_total{reason=\"no_connection\"} 7",
            "director_conntrack_max{} 1024",
            "# TYPE director_rs_active_connections gauge",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
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
