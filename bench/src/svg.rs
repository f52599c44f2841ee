//! `latest.svg`: horizontal bar charts of the main figures, written as SVG text.

use std::fmt::Write as _;

use crate::report::{self, Report};
use crate::wrk::Conn;

const WIDTH: f64 = 960.0;
const LABEL_W: f64 = 340.0;
const BAR_W: f64 = 500.0;
const BAR_H: f64 = 13.0;
const GAP: f64 = 3.0;
const GROUP_GAP: f64 = 9.0;
const COLORS: [&str; 4] = ["#4e79a7", "#f28e2b", "#e15759", "#59a14f"];

/// A chart: groups of bars, one bar per series.
struct Panel {
    title: String,
    unit: &'static str,
    series: Vec<String>,
    /// (label, one value per series; None = no bar)
    groups: Vec<(String, Vec<Option<f64>>)>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn panels(r: &Report) -> Vec<Panel> {
    let mut out = Vec::new();
    if let Some(p) = &r.per_packet {
        let sizes: Vec<u32> = p.blocks.iter().map(|b| b.table).collect();
        let mut groups = vec![(
            "MAC swap + XDP_TX, one run (the targets' unit)".to_owned(),
            sizes
                .iter()
                .enumerate()
                .map(|(i, _)| (i == 0).then_some(report::swap_unit(p)))
                .collect(),
        )];
        let first = sizes.first().copied().unwrap_or(0);
        for c in p.cases.iter().filter(|c| c.table == first) {
            groups.push((
                c.label.clone(),
                sizes
                    .iter()
                    .map(|&s| p.case(c.id, s).map(|x| x.net_ns))
                    .collect(),
            ));
        }
        out.push(Panel {
            title: "Per-packet cost of the XDP program, net of the call overhead".to_owned(),
            unit: "ns",
            series: sizes.iter().map(|s| format!("{s} conns")).collect(),
            groups,
        });
    }
    if let Some(f) = &r.forwarding {
        out.push(Panel {
            title: format!("Forwarding rate, 64-byte UDP, {} flows", f.flows),
            unit: "Mpps",
            series: vec!["delivered".to_owned()],
            groups: f
                .cases
                .iter()
                .map(|c| (c.label.to_owned(), vec![Some(c.delivered_pps / 1e6)]))
                .collect(),
        });
    }
    if let Some(h) = &r.http {
        let mut labels: Vec<(&str, &str)> = Vec::new();
        for c in &h.cases {
            if !labels.iter().any(|(id, _)| *id == c.id) {
                labels.push((c.id, c.label));
            }
        }
        out.push(Panel {
            title: "HTTP requests per second (wrk)".to_owned(),
            unit: "req/s",
            series: [Conn::KeepAlive, Conn::Close]
                .map(|c| c.label().to_owned())
                .to_vec(),
            groups: labels
                .iter()
                .map(|(id, label)| {
                    (
                        (*label).to_owned(),
                        [Conn::KeepAlive, Conn::Close]
                            .map(|c| h.case(id, c).map(|x| x.requests_per_s))
                            .to_vec(),
                    )
                })
                .collect(),
        });
    }
    out
}

fn render(panel: &Panel, y0: f64, svg: &mut String) -> f64 {
    let max = panel
        .groups
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    let scale = if max > 0.0 { BAR_W / max } else { 0.0 };
    let mut y = y0;
    let _ = writeln!(
        svg,
        r#"<text x="10" y="{:.1}" font-size="15" font-weight="bold">{} ({})</text>"#,
        y + 14.0,
        escape(&panel.title),
        panel.unit
    );
    let mut x = LABEL_W;
    for (i, s) in panel.series.iter().enumerate() {
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.1}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            y + 23.0,
            COLORS[i % COLORS.len()],
            x + 14.0,
            y + 32.0,
            escape(s)
        );
        x += 24.0 + 7.0 * s.len() as f64;
    }
    y += 44.0;
    for (label, values) in &panel.groups {
        let bars = values.iter().filter(|v| v.is_some()).count().max(1) as f64;
        let h = bars * (BAR_H + GAP);
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end">{}</text>"#,
            LABEL_W - 8.0,
            y + h / 2.0 + 4.0,
            escape(label)
        );
        for (i, v) in values.iter().enumerate() {
            let Some(v) = v else { continue };
            let w = (v * scale).max(1.0);
            let _ = writeln!(
                svg,
                r#"<rect x="{LABEL_W:.1}" y="{y:.1}" width="{w:.1}" height="{BAR_H:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
                COLORS[i % COLORS.len()],
                LABEL_W + w + 4.0,
                y + BAR_H - 2.0,
                format_value(*v)
            );
            y += BAR_H + GAP;
        }
        y += GROUP_GAP;
    }
    y + 10.0
}

fn format_value(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

pub fn chart(r: &Report) -> String {
    let m = &r.machine;
    let mut body = String::new();
    let mut y = 66.0;
    for p in panels(r) {
        y = render(&p, y, &mut body);
    }
    let height = y + 10.0;
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="18" font-weight="bold">director benchmarks ({} run)</text>
<text x="10" y="40" font-size="11">{}</text>
<text x="10" y="54" font-size="11">{}</text>
{body}</svg>
"#,
        r.mode,
        escape(&format!(
            "{} · {} · {} cores · {} GiB",
            m.date_utc, m.cpu_model, m.cores, m.memory_gib
        )),
        escape(&format!(
            "{} · load average at start {}, at end {}",
            m.uname, m.loadavg_start, m.loadavg_end
        ))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b & c>"), "a&lt;b &amp; c&gt;");
    }

    #[test]
    fn an_empty_report_is_still_an_svg() {
        let svg = chart(&Report::new("smoke"));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}
