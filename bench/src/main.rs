//! `director-bench`: director's benchmarks, run by `cargo xtask bench [--quick|--smoke]`.
//!
//! 1. per-packet cost of the XDP program (`BPF_PROG_TEST_RUN`), against trivial
//!    programs measured the same way ([`testrun`], [`baseline`]);
//! 2. forwarding rate through the netns lab, against a minimal XDP forwarder, kernel
//!    forwarding and nftables DNAT ([`forwarding`]);
//! 3. HTTP requests/s and latency with wrk, against haproxy and a direct connection
//!    ([`wrk`]);
//! 4. control-plane scale ([`control`]) and health-check CPU ([`health`]);
//! 5. next hops of 10 000 real servers: netlink against `ip -j` ([`nexthops`]).
//!
//! Writes `latest.json`, `latest.md` and `latest.svg` to `--out` ([`report`]). Needs
//! root. All traffic stays inside network namespaces the lab creates and deletes.

mod baseline;
mod control;
mod forwarding;
mod health;
mod maps;
mod netlab;
mod nexthops;
mod profile;
mod report;
mod stats;
mod svg;
mod testrun;
mod tools;
mod wrk;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Parser, ValueEnum};

use director_tests::bpf;

use crate::netlab::Bins;
use crate::report::Report;

#[derive(Debug, Parser)]
#[command(about = "Benchmarks of director (run through `cargo xtask bench`)")]
struct Args {
    /// Fewer samples and shorter runs (under 5 minutes).
    #[arg(long, conflicts_with = "smoke")]
    quick: bool,
    /// Tiny counts: proves every benchmark path still works (about a minute).
    #[arg(long)]
    smoke: bool,
    /// The director binary the lab runs.
    #[arg(long)]
    director: PathBuf,
    /// The lab's HTTP server binary (director-lab-server).
    #[arg(long)]
    server: PathBuf,
    /// Where latest.{json,md,svg} go.
    #[arg(long)]
    out: PathBuf,
    /// Run only these sections (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Section {
    PerPacket,
    Forwarding,
    Http,
    Control,
    Health,
    NextHops,
}

/// How much of everything a run does.
#[derive(Clone, Debug)]
pub struct Scale {
    pub mode: &'static str,
    /// Connection-table fills of the per-packet blocks.
    pub table_sizes: &'static [u32],
    /// `repeat = 1` calls per per-packet case.
    pub calls: usize,
    /// Distinct new flows per new-connection case.
    pub new_conns: usize,
    /// `repeat` of the idempotent baselines' single call.
    pub large_repeat: u32,
    /// Flows (source ports) in the forwarding runs.
    pub flows: usize,
    pub fwd_warmup: Duration,
    pub fwd_time: Duration,
    pub wrk_time: Duration,
    pub wrk_conns: u32,
    /// Control plane: virtual servers × real servers (wrr), virtual servers for mh.
    pub vs: usize,
    /// Control plane: configurations parsed from text, in virtual servers (× `rs`).
    pub parse_ladder: &'static [usize],
    pub rs: usize,
    pub mh_vs: usize,
    pub maglev_runs: usize,
    pub change_runs: usize,
    /// Health checks: how long the 10 000 servers' probes are measured.
    pub health_time: Duration,
    /// Real servers whose next hops are resolved.
    pub next_hop_servers: usize,
}

impl Scale {
    fn full() -> Scale {
        Scale {
            mode: "full",
            table_sizes: &[1_000, 100_000, 1_000_000],
            calls: 100_000,
            new_conns: 20_000,
            large_repeat: 10_000_000,
            flows: 1024,
            fwd_warmup: Duration::from_secs(1),
            fwd_time: Duration::from_secs(5),
            wrk_time: Duration::from_secs(5),
            wrk_conns: 16,
            vs: 1000,
            parse_ladder: &[100, 200, 400, 1000],
            rs: 100,
            mh_vs: 100,
            maglev_runs: 20,
            change_runs: 200,
            health_time: Duration::from_secs(5),
            next_hop_servers: 10_000,
        }
    }

    fn quick() -> Scale {
        Scale {
            mode: "quick",
            calls: 20_000,
            new_conns: 5_000,
            large_repeat: 1_000_000,
            fwd_warmup: Duration::from_millis(500),
            fwd_time: Duration::from_secs(2),
            wrk_time: Duration::from_secs(2),
            mh_vs: 20,
            parse_ladder: &[50, 100, 200],
            maglev_runs: 5,
            change_runs: 50,
            health_time: Duration::from_secs(3),
            next_hop_servers: 2_000,
            ..Scale::full()
        }
    }

    fn smoke() -> Scale {
        Scale {
            mode: "smoke",
            table_sizes: &[1_000, 10_000],
            calls: 300,
            new_conns: 200,
            large_repeat: 10_000,
            flows: 64,
            fwd_warmup: Duration::from_millis(300),
            fwd_time: Duration::from_secs(1),
            wrk_time: Duration::from_secs(1),
            wrk_conns: 4,
            vs: 20,
            parse_ladder: &[5, 10, 20],
            rs: 10,
            mh_vs: 2,
            maglev_runs: 2,
            change_runs: 3,
            health_time: Duration::from_secs(1),
            next_hop_servers: 100,
        }
    }
}

static STARTED: OnceLock<Instant> = OnceLock::new();

/// One progress line on stderr, stamped with the time since the start.
pub fn progress(msg: &str) {
    let t = STARTED.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("bench [{t:6.1}s] {msg}");
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("director-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the selected sections; Ok(false) if one of them failed (the report still
/// says what the others measured).
fn run(args: &Args) -> Result<bool> {
    progress("starting");
    if !nix::unistd::geteuid().is_root() {
        bail!("needs root (BPF, XDP, network namespaces): run `sudo cargo xtask bench`");
    }
    let scale = if args.smoke {
        Scale::smoke()
    } else if args.quick {
        Scale::quick()
    } else {
        Scale::full()
    };
    let wanted = |s: Section| args.only.is_empty() || args.only.contains(&s);
    let mut needed = Vec::new();
    if wanted(Section::PerPacket) {
        needed.push(tools::BPFTOOL);
    }
    if wanted(Section::Forwarding) {
        needed.extend([tools::TRAFGEN, tools::NFT]);
    }
    if wanted(Section::Http) {
        needed.extend([tools::WRK, tools::HAPROXY]);
    }
    tools::require(&needed)?;
    director_tests::lab::install_signal_cleanup()?;
    std::fs::create_dir_all(&args.out)?;
    let bins = Bins {
        director: args.director.clone(),
        server: args.server.clone(),
    };

    let mut report = Report::new(scale.mode);
    let mut section = |name: &str, f: &mut dyn FnMut(&mut Report) -> Result<()>| {
        if let Err(e) = f(&mut report) {
            let msg = format!("{name}: {e:#}");
            eprintln!("director-bench: {msg}");
            report.errors.push(msg);
        }
    };
    if wanted(Section::PerPacket) {
        section("per-packet", &mut |r| {
            let (per_packet, profile) = testrun::run(&scale, &args.out)?;
            r.per_packet = Some(per_packet);
            r.profile = Some(profile);
            Ok(())
        });
    }
    if wanted(Section::Forwarding) {
        section("forwarding", &mut |r| {
            r.forwarding = Some(forwarding::run(&scale, &bins)?);
            Ok(())
        });
    }
    if wanted(Section::Http) {
        section("http", &mut |r| {
            r.http = Some(wrk::run(&scale, &bins)?);
            Ok(())
        });
    }
    if wanted(Section::Control) {
        section("control plane", &mut |r| {
            r.control = Some(control::run(&scale)?);
            Ok(())
        });
    }
    if wanted(Section::Health) {
        section("health checks", &mut |r| {
            r.health = Some(health::run(&scale)?);
            Ok(())
        });
    }
    if wanted(Section::NextHops) {
        section("next hops", &mut |r| {
            r.next_hops = Some(nexthops::run(&scale)?);
            Ok(())
        });
    }
    report.finish();
    let written = report.write(&args.out)?;
    println!("{}", report.markdown_table());
    for path in written {
        progress(&format!("wrote {}", path.display()));
    }
    Ok(report.errors.is_empty())
}
