//! The report: every figure as a row (figure | baseline | value | ratio | target |
//! PASS/MISS), the raw results of each section, the machine it ran on, and notes
//! where a target is missed. Written as `latest.json` (this file), `latest.md`
//! (`markdown`, with the prose of `prose.md`) and `latest.svg`.

mod machine;
mod markdown;
mod notes;
mod prose;
mod rows;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::control::ControlPlane;
use crate::forwarding::Forwarding;
use crate::health::HealthCpu;
use crate::nexthops::NextHops;
use crate::profile::Profile;
use crate::svg;
use crate::testrun::PerPacket;
use crate::wrk::Http;
use machine::Machine;
pub use rows::swap_unit;
use rows::{
    Row, control_rows, forwarding_rows, health_rows, http_rows, next_hop_rows, per_packet_rows,
};

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
        self.machine.loadavg_end = machine::loadavg();
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
        self.notes = notes::notes(self);
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
