//! The notes under the table: what the data says about each missed target,
//! and the profile. The words are prose.md's; the figures are the run's.

use super::Report;
use super::prose::fill;
use super::rows::{
    KATRAN_ESTABLISHED_NS, KATRAN_SYN_NS, REFERENCE_MAC_SWAP_NS, REFERENCE_PASS_NS, ns,
};
use crate::control::ControlPlane;
use crate::forwarding::Forwarding;
use crate::health::HealthCpu;
use crate::nexthops::{NextHops, OLD_REFRESH};
use crate::profile::Profile;
use crate::testrun::{self, PerPacket, SCHEDULERS};
use crate::wrk::{Conn, Http};

pub(super) fn notes(r: &Report) -> Vec<String> {
    let mut notes = misses(r);
    if let Some(p) = &r.per_packet {
        notes.extend(per_packet(p));
    }
    if let Some(prof) = &r.profile {
        notes.extend(profile(prof));
    }
    if let Some(f) = &r.forwarding {
        notes.extend(forwarding(f));
    }
    if let Some(h) = &r.http {
        notes.extend(http(h, r.machine.cores));
    }
    if let Some(h) = &r.health {
        notes.push(health(h));
    }
    if let Some(h) = &r.next_hops {
        notes.push(next_hops(h));
    }
    if let Some(c) = &r.control {
        notes.extend(control(c));
    }
    if let Some(h) = &r.http {
        notes.extend(wrk_errors(h));
    }
    notes
}

fn misses(r: &Report) -> Vec<String> {
    r.rows
        .iter()
        .filter(|x| x.verdict == Some("MISS"))
        .map(|row| {
            let mut values = vec![
                ("figure", row.figure.clone()),
                ("value", row.value.clone()),
                ("target", row.target.clone().unwrap_or_default()),
            ];
            match row.ratio {
                Some(ratio) => {
                    values.push(("baseline", row.baseline.clone()));
                    values.push(("ratio", format!("{ratio:.2}")));
                    fill("miss", &values)
                }
                None => fill("miss_without_ratio", &values),
            }
        })
        .collect()
}

/// "low–high ns" of a reference range.
fn range_ns([low, high]: [f64; 2]) -> String {
    format!("{low:.0}–{high:.0} ns")
}

/// A reference range's middle in MAC swaps of the reference machine.
fn in_swaps([low, high]: [f64; 2]) -> String {
    format!("{:.0}", (low + high) / 2.0 / REFERENCE_MAC_SWAP_NS)
}

fn per_packet(p: &PerPacket) -> Vec<String> {
    let b = &p.baselines;
    let mut notes = vec![fill(
        "per_packet_unit",
        &[
            ("repeat", b.large_repeat.to_string()),
            ("mac_swap", ns(b.mac_swap_large_ns)),
            ("pass", ns(b.pass_large_ns)),
            ("katran_established", range_ns(KATRAN_ESTABLISHED_NS)),
            ("katran_syn", range_ns(KATRAN_SYN_NS)),
            (
                "reference_mac_swap",
                format!("{REFERENCE_MAC_SWAP_NS:.0} ns"),
            ),
            ("reference_pass", format!("{REFERENCE_PASS_NS:.0} ns")),
            ("established_ratio", in_swaps(KATRAN_ESTABLISHED_NS)),
            ("syn_ratio", in_swaps(KATRAN_SYN_NS)),
            (
                "mac_swap_slower",
                format!("{:.1}", b.mac_swap_large_ns / REFERENCE_MAC_SWAP_NS),
            ),
            (
                "pass_slower",
                format!("{:.1}", b.pass_large_ns / REFERENCE_PASS_NS),
            ),
            ("mac_swap_net", ns(b.mac_swap_net_ns)),
        ],
    )];
    let (Some(first), Some(last)) = (p.blocks.first(), p.blocks.last()) else {
        return notes;
    };
    if let (Some(hot), Some(random)) = (
        p.case("est_nat_tcp_one_flow", last.table),
        p.case("est_nat_tcp", last.table),
    ) {
        notes.push(fill(
            "hot_flow",
            &[
                ("table", random.table.to_string()),
                ("random", ns(random.net_ns)),
                ("hot", ns(hot.net_ns)),
            ],
        ));
        if let Some(small) = p.case("est_nat_tcp", first.table) {
            notes.push(fill(
                "table_growth",
                &[
                    ("small", first.table.to_string()),
                    ("large", last.table.to_string()),
                    ("gain", ns(random.net_ns - small.net_ns)),
                    (
                        "lru_gain",
                        ns(last.lru_lookup_net_ns - first.lru_lookup_net_ns),
                    ),
                    ("lru_small", ns(first.lru_lookup_net_ns)),
                    ("lru_large", ns(last.lru_lookup_net_ns)),
                ],
            ));
        }
    }
    let by_scheduler: Vec<String> = SCHEDULERS
        .iter()
        .filter_map(|s| p.case(testrun::new_case_id(s), first.table))
        .map(|c| {
            format!(
                "{} {}",
                c.label.rsplit(", ").next().unwrap_or(""),
                ns(c.net_ns)
            )
        })
        .collect();
    if !by_scheduler.is_empty() {
        notes.push(fill(
            "new_connections",
            &[
                ("by_scheduler", by_scheduler.join(", ")),
                ("insert", ns(b.lru_insert_net_ns)),
            ],
        ));
    }
    notes
}

fn profile(prof: &Profile) -> Vec<String> {
    let mut notes = vec![fill(
        "program_sizes",
        &[
            ("director_insns", prof.director.xlated_insns.to_string()),
            ("verified_insns", prof.director.verified_insns.to_string()),
            ("director_bytes", prof.director.jited_bytes.to_string()),
            ("mac_swap_insns", prof.mac_swap.xlated_insns.to_string()),
            ("mac_swap_bytes", prof.mac_swap.jited_bytes.to_string()),
            ("pass_insns", prof.pass.xlated_insns.to_string()),
            ("pass_bytes", prof.pass.jited_bytes.to_string()),
            ("dump_file", prof.dump_file.clone()),
        ],
    )];
    for f in &prof.functions {
        let calls: Vec<String> = f.calls.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
        notes.push(fill(
            "bpf_function",
            &[
                ("name", f.name.clone()),
                ("insns", f.insns.to_string()),
                (
                    "calls",
                    if calls.is_empty() {
                        "none".to_owned()
                    } else {
                        calls.join(", ")
                    },
                ),
            ],
        ));
    }
    if let Some(main) = prof.functions.first()
        && let Some(n) = main.calls.get("memset()")
    {
        notes.push(fill(
            "memset",
            &[("function", main.name.clone()), ("calls", n.to_string())],
        ));
    }
    notes
}

fn forwarding(f: &Forwarding) -> Option<String> {
    let (d, floor) = (f.case("director")?, f.case("xdp_forwarder")?);
    Some(fill(
        "forwarding",
        &[(
            "percent",
            format!("{:.0}", 100.0 * d.delivered_pps / floor.delivered_pps),
        )],
    ))
}

fn http(h: &Http, cores: usize) -> Option<String> {
    let path = |conn: Conn| {
        let (d, nat, routed) = (
            h.case("direct", conn)?,
            h.case("director_nat", conn)?,
            h.case("routed", conn)?,
        );
        Some(fill(
            "http_path",
            &[
                ("conn", conn.label().to_owned()),
                (
                    "routed",
                    format!("{:.2}", routed.requests_per_s / d.requests_per_s),
                ),
                (
                    "nat",
                    format!("{:.2}", nat.requests_per_s / d.requests_per_s),
                ),
                (
                    "nat_over_routed",
                    format!("{:.2}", nat.requests_per_s / routed.requests_per_s),
                ),
            ],
        ))
    };
    let paths: Vec<String> = [Conn::KeepAlive, Conn::Close]
        .into_iter()
        .filter_map(path)
        .collect();
    (!paths.is_empty()).then(|| {
        fill(
            "http",
            &[("paths", paths.join("; ")), ("cores", cores.to_string())],
        )
    })
}

fn health(h: &HealthCpu) -> String {
    let own = h.monitor_cores() - h.floor_cores;
    fill(
        "health",
        &[
            ("monitor", format!("{:.3}", h.monitor_cores())),
            ("probes", format!("{:.0}", h.probes_per_s)),
            ("floor", format!("{:.3}", h.floor_cores)),
            ("own", format!("{own:.3}")),
            ("per_probe", format!("{:.1}", own * 1e6 / h.probes_per_s)),
        ],
    )
}

fn next_hops(h: &NextHops) -> String {
    fill(
        "next_hops",
        &[
            ("ip_s", format!("{:.1}", h.ip_json_ms / 1e3)),
            ("ip_cpu_s", format!("{:.1}", h.ip_json_cpu_ms / 1e3)),
            ("servers", h.servers.to_string()),
            ("interval", OLD_REFRESH.as_secs().to_string()),
            ("cores", format!("{:.2}", h.old_refresh_cores())),
            ("netlink_ms", format!("{:.0}", h.netlink_ms)),
            ("netlink_cpu_ms", format!("{:.0}", h.netlink_cpu_ms)),
        ],
    )
}

fn control(c: &ControlPlane) -> Vec<String> {
    let mut notes = Vec::new();
    if let [.., a, b] = &c.parse[..] {
        let k = (b.parse_ms / a.parse_ms).ln()
            / (b.virtual_servers as f64 / a.virtual_servers as f64).ln();
        notes.push(fill(
            "parse_growth",
            &[
                ("exponent", format!("{k:.1}")),
                ("small_ms", format!("{:.0}", a.parse_ms)),
                ("small", a.virtual_servers.to_string()),
                ("large_ms", format!("{:.0}", b.parse_ms)),
                ("large", b.virtual_servers.to_string()),
            ],
        ));
    }
    if c.mh.ring_entries > 0 {
        notes.push(fill(
            "mh_install",
            &[
                ("entries", c.mh.ring_entries.to_string()),
                ("ms", format!("{:.0}", c.mh.install_ms)),
                (
                    "per_entry",
                    format!("{:.2}", c.mh.install_ms * 1e3 / c.mh.ring_entries as f64),
                ),
            ],
        ));
    }
    notes
}

fn wrk_errors(h: &Http) -> Option<String> {
    let c = h.cases.iter().find(|c| c.errors > 0)?;
    Some(fill(
        "wrk_errors",
        &[
            ("errors", c.errors.to_string()),
            ("case", c.label.to_owned()),
            ("conn", c.conn.label().to_owned()),
        ],
    ))
}
