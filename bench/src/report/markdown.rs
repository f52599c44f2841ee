//! latest.md: the rows as a table, the per-packet matrix, the notes, the
//! errors and the method.

use std::fmt::Write as _;

use super::Report;
use super::prose::fill;
use crate::testrun::PerPacket;

impl Report {
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

    pub(super) fn markdown(&self) -> String {
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
            m += &fill("smoke", &[]);
            m += "\n\n";
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
        m += &fill("method", &[]);
        m += "\n";
        m
    }
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
