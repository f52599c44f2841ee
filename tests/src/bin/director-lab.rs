//! `director-lab demo`: builds the NAT and/or DR lab, starts director with the example
//! config, sends new-connection requests through the VIP and prints how they spread
//! over the real servers against what the weights predict. Ctrl-C tears the lab down.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use director_tests::example_config::{self, VirtualServer};
use director_tests::http::Tally;
use director_tests::lab::{self, Lab, LabSpec, Mode};
use director_tests::paths;

#[derive(Parser)]
#[command(about = "Network-namespace lab for director")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send requests through the VIP in a fresh lab and show the distribution.
    Demo(DemoArgs),
}

#[derive(Parser)]
struct DemoArgs {
    /// The director binary (default: $DIRECTOR_BIN, else `<workspace>/target/debug/director`).
    #[arg(long)]
    director: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Which::Both)]
    mode: Which,
    /// New-connection requests per mode.
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// Directory holding lab-nat.toml and lab-dr.toml.
    #[arg(long)]
    examples: Option<PathBuf>,
    /// The lab server binary (default: director-lab-server next to this program).
    #[arg(long)]
    server: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Which {
    Nat,
    Dr,
    Both,
}

fn main() -> ExitCode {
    let Cmd::Demo(args) = Cli::parse().command;
    match demo(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs every requested mode; false if any of them saw a failure.
fn demo(args: &DemoArgs) -> Result<bool> {
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "the lab needs root (network namespaces, veth, XDP)"
    );
    lab::install_signal_cleanup()?;
    let director = args.director.clone().unwrap_or_else(paths::director_bin);
    paths::check_director_bin(&director)?;
    let server = match &args.server {
        Some(p) => p.clone(),
        None => paths::sibling_bin("director-lab-server")?,
    };
    let examples = args.examples.clone().unwrap_or_else(paths::examples_dir);
    let modes: &[Mode] = match args.mode {
        Which::Nat => &[Mode::Nat],
        Which::Dr => &[Mode::Dr],
        Which::Both => &[Mode::Nat, Mode::Dr],
    };
    let mut ok = true;
    for (i, &mode) in modes.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let config = examples.join(format!("lab-{mode}.toml"));
        let spec = LabSpec::new(mode, &server).director_bin(&director);
        ok &= run_mode(spec, &config, args.requests)?;
    }
    Ok(ok)
}

fn run_mode(spec: LabSpec, config: &std::path::Path, requests: usize) -> Result<bool> {
    let mode = spec.mode;
    let file = example_config::load(config)?;
    let vs = file
        .virtual_server
        .first()
        .with_context(|| format!("{} has no [[virtual_server]]", config.display()))?
        .clone();
    let mut lab = Lab::build(spec)?;
    lab.try_start_director(config)?;
    let tally = lab.get_many(requests, &[]);
    print_table(&lab, mode, &vs, requests, &tally);
    if let Some(status) = lab.stop_director()
        && !status.success()
    {
        println!("director exited with {status}");
    }
    let starved: Vec<String> = rows(&lab, &vs)
        .into_iter()
        .filter(|r| r.weight > 0 && tally.count(&r.name) == 0)
        .map(|r| r.name)
        .collect();
    if !starved.is_empty() {
        println!(
            "servers with weight > 0 that got nothing: {}",
            starved.join(", ")
        );
    }
    Ok(tally.failures == 0 && starved.is_empty())
}

struct Row {
    name: String,
    address: String,
    weight: u32,
}

/// Config real servers, named after the lab server at the same IP.
fn rows(lab: &Lab, vs: &VirtualServer) -> Vec<Row> {
    vs.real_server
        .iter()
        .map(|r| {
            let name = lab
                .real_servers()
                .iter()
                .position(|a| Some(*a.ip()) == r.ip())
                .map_or_else(|| "?".to_owned(), |i| format!("rs{}", i + 1));
            Row {
                name,
                address: r.address.clone(),
                weight: r.weight,
            }
        })
        .collect()
}

fn print_table(lab: &Lab, mode: Mode, vs: &VirtualServer, n: usize, tally: &Tally) {
    println!(
        "{} mode: {n} requests through VIP {} (director: {} real servers, {})",
        mode.name().to_uppercase(),
        lab.vip(),
        vs.real_server.len(),
        vs.scheduler.as_deref().unwrap_or("default scheduler"),
    );
    println!(
        "{:<8} {:<16} {:>6}  {:>8}  {:>8}  {:>6}",
        "server", "address", "weight", "expected", "observed", "share"
    );
    let sum = vs.weight_sum().max(1);
    for row in rows(lab, vs) {
        let expected = (n as u64 * u64::from(row.weight) + sum / 2) / sum;
        println!(
            "{:<8} {:<16} {:>6}  {:>8}  {:>8}  {:>5.1}%",
            row.name,
            row.address,
            row.weight,
            expected,
            tally.count(&row.name),
            tally.share_percent(&row.name),
        );
    }
    let known: Vec<String> = rows(lab, vs).into_iter().map(|r| r.name).collect();
    for (name, count) in tally.by_server.iter().filter(|(k, _)| !known.contains(k)) {
        println!(
            "{name:<8} {:<16} {:>6}  {:>8}  {count:>8}  (not in config)",
            "?", "-", "-"
        );
    }
    println!("failed requests: {}", tally.failures);
    for e in &tally.errors {
        println!("  {e}");
    }
}
