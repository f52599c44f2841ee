//! The report's rows: every figure with its baseline, ratio, target and
//! verdict, derived from the sections' results.

use serde::Serialize;

use crate::control::{ControlPlane, MAGLEV_BACKENDS, MAGLEV_SLOTS, ScaleRun};
use crate::forwarding::Forwarding;
use crate::health::HealthCpu;
use crate::nexthops::{NextHops, OLD_IN_FLIGHT};
use crate::testrun::PerPacket;
use crate::wrk::Http;

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

pub(super) fn ns(x: f64) -> String {
    format!("{x:.1} ns")
}

/// The targets' reference: Katran's XDP balancer measured the same way on
/// this machine kind (the figures, not this run's), net ns, lowest
/// and highest: an established flow, and a SYN.
pub const KATRAN_ESTABLISHED_NS: [f64; 2] = [57.0, 63.0];
pub const KATRAN_SYN_NS: [f64; 2] = [134.0, 140.0];
/// The baselines on the machine of that reference: one MAC-swap run and one
/// XDP_PASS run with a large `repeat`, ns.
pub const REFERENCE_MAC_SWAP_NS: f64 = 5.0;
pub const REFERENCE_PASS_NS: f64 = 3.0;

/// The unit of the per-packet targets: one run of the MAC-swap program with a
/// large `repeat`. The reference figures fix this reading: Katran's costs
/// over [`REFERENCE_MAC_SWAP_NS`] are its "12×" and "27×". (The MAC swap's
/// net cost per `repeat = 1` call, about 1 ns, would make every ratio a ratio
/// of noise.)
pub fn swap_unit(p: &PerPacket) -> f64 {
    p.baselines.mac_swap_large_ns
}

pub(super) fn per_packet_rows(p: &PerPacket) -> Vec<Row> {
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

pub(super) fn forwarding_rows(f: &Forwarding) -> Vec<Row> {
    let floor = f.case("xdp_forwarder");
    f.cases
        .iter()
        .map(|c| {
            let row = Row::new(
                "forwarding",
                format!(
                    "forwarding, {}-byte UDP, {} flows: {}",
                    f.frame_bytes, f.flows, c.label
                ),
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

pub(super) fn http_rows(h: &Http) -> Vec<Row> {
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
            "{:.0} ms (load + verifier {:.0}, plan {:.0}, install {:.0} for {} ring entries)",
            r.to_maps_ms, r.load_ms, r.plan_ms, r.install_ms, r.ring_entries
        ),
    )
}

pub(super) fn control_rows(c: &ControlPlane) -> Vec<Row> {
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
            "single-backend change through the reconciler (its lists recomputed; ring, VipInfo, backend written)",
            format!(
                "{:.0} µs (median of {})",
                c.backend_change_us.p50, c.backend_change_us.n
            ),
        ),
    ]);
    rows
}

pub(super) fn health_rows(h: &HealthCpu) -> Vec<Row> {
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

pub(super) fn next_hop_rows(h: &NextHops) -> Vec<Row> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
