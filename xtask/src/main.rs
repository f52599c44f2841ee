//! `cargo xtask`: builds, runs, tests and demonstrates director, installing what it
//! needs first (rust-src, bpf-linker, the lab's Debian packages, bpffs).

mod bench;
mod cargo;
mod deb;
mod failure;
mod prereq;
mod previous;
mod run;
mod suite;

use std::{ffi::OsString, fs, path::Path, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};

use crate::{
    cargo::{DIRECTOR_BIN, Profile, Workspace},
    failure::Result,
    prereq::{Env, Needs},
};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, run, test and demo director"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what the build needs, then build every binary (and the eBPF program).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build, then run target/<profile>/director with ARGS (needs root).
    Run {
        #[arg(long)]
        release: bool,
        /// Arguments for director, after `--`: `cargo xtask run -- check --config FILE`.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<OsString>,
    },
    /// Build the Debian package target/debian/director_<version>-1_<arch>.deb (release build).
    Deb,
    /// The whole suite: unit tests, BPF_PROG_TEST_RUN fixtures, netns integration tests (needs root).
    Test {
        /// Test name filters passed to every test binary, after `--`.
        #[arg(last = true, value_name = "FILTER")]
        filters: Vec<OsString>,
    },
    /// A network-namespace lab: client, director, 3 real servers; traffic through the VIP (needs root).
    Demo {
        #[arg(long, value_enum, default_value_t = Mode::Both)]
        mode: Mode,
    },
    /// Clippy, warnings denied, on the eBPF crate for the BPF target (nightly, build-std).
    ClippyEbpf,
    /// Check and install the prerequisites only, and print what is there (needs root).
    CheckEnv,
    /// Benchmarks: per-packet cost, forwarding rate, HTTP, control plane; report in bench/results (needs root).
    Bench {
        /// Shorter runs (under 5 minutes); report in <target>/bench/quick.
        #[arg(long, conflicts_with = "smoke")]
        quick: bool,
        /// Tiny counts on the debug build, proving every path works (about a minute); report in <target>/bench/smoke.
        #[arg(long)]
        smoke: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    Nat,
    Dr,
    Both,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Nat => "nat",
            Self::Dr => "dr",
            Self::Both => "both",
        }
    }
}

const BUILD: Needs = Needs {
    command: "build",
    root: false,
    lab: false,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Build { release } => build(release),
        Command::Run { release, args } => run_director(release, &args),
        Command::Deb => deb(),
        Command::Test { filters } => test(&filters),
        Command::Demo { mode } => demo(mode),
        Command::ClippyEbpf => clippy_ebpf(),
        Command::CheckEnv => check_env(),
        Command::Bench { quick, smoke } => bench::bench(bench::Mode::new(quick, smoke)),
    }
}

fn build(release: bool) -> Result<()> {
    let env = prereq::ensure(BUILD)?;
    let ws = Workspace::locate(&env)?;
    ws.build_all(Profile::new(release))
}

fn deb() -> Result<()> {
    let env = prereq::ensure(Needs {
        command: "deb",
        ..BUILD
    })?;
    let deb = deb::build(&Workspace::locate(&env)?)?;
    println!("{}", deb.display());
    Ok(())
}

fn clippy_ebpf() -> Result<()> {
    let env = prereq::ensure(Needs {
        command: "clippy-ebpf",
        ..BUILD
    })?;
    prereq::ensure_clippy(&env.nightly)?;
    Workspace::locate(&env)?.clippy_ebpf()
}

fn run_director(release: bool, args: &[OsString]) -> Result<()> {
    let env = prereq::ensure(Needs {
        command: "run",
        root: true,
        lab: false,
    })?;
    let ws = Workspace::locate(&env)?;
    let profile = Profile::new(release);
    ws.build_all(profile)?;
    let bin = ws.built_bin(profile, DIRECTOR_BIN, "director")?;
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(args);
    Err(run::exec(
        &mut cmd,
        "starting director",
        &format!("check that {} is executable", bin.display()),
    ))
}

fn test(filters: &[OsString]) -> Result<()> {
    let env = prereq::ensure(Needs {
        command: "test",
        root: true,
        lab: true,
    })?;
    prereq::ensure_packages(prereq::PACKAGE_CHECK_PACKAGES)?;
    let ws = Workspace::locate(&env)?;
    ws.build_packages(&["director"], Profile::Debug)?;
    let director = ws.built_bin(Profile::Debug, DIRECTOR_BIN, "director")?;
    let previous = previous::director(&ws)?;
    let deb = deb::build(&ws)?;
    suite::test(&ws, &director, previous.as_deref(), &deb, filters)
}

const LAB_BIN: &str = "director-lab";

fn demo(mode: Mode) -> Result<()> {
    let env = prereq::ensure(Needs {
        command: "demo",
        root: true,
        lab: true,
    })?;
    let ws = Workspace::locate(&env)?;
    ws.build_packages(&["director", "director-tests"], Profile::Debug)?;
    let director = ws.built_bin(Profile::Debug, DIRECTOR_BIN, "director")?;
    let lab = ws.built_bin(Profile::Debug, LAB_BIN, "director-tests")?;

    let mut cmd = std::process::Command::new(&lab);
    cmd.arg("demo")
        .arg("--director")
        .arg(&director)
        .args(["--mode", mode.as_str()])
        .current_dir(ws.root());
    let what = format!("demo ({} mode)", mode.as_str());
    let fix = format!(
        "see the lab's output above, then rerun: cargo xtask demo --mode {}",
        mode.as_str()
    );
    let child = run::spawn_foreground(&mut cmd, &what, &fix)?;
    let status = run::wait(&cmd, child, &what, &fix)?;
    if status.success() {
        Ok(())
    } else {
        Err(run::exited(&cmd, &what, status, &fix))
    }
}

fn check_env() -> Result<()> {
    let env = prereq::ensure(Needs {
        command: "check-env",
        root: true,
        lab: true,
    })?;
    print_env(&env);
    Ok(())
}

fn print_env(env: &Env) {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |r| r.trim().to_owned());
    let btf = if Path::new("/sys/kernel/btf/vmlinux").exists() {
        "BTF at /sys/kernel/btf/vmlinux"
    } else {
        "no BTF (/sys/kernel/btf/vmlinux missing)"
    };
    let packages: Vec<String> = prereq::LAB_PACKAGES
        .iter()
        .map(|p| format!("{p} {}", prereq::package_version(p).unwrap_or_default()))
        .collect();
    let cache = prereq::cache_dir().map_or_else(|_| "?".to_owned(), |d| d.display().to_string());
    println!("kernel      {kernel}, {btf}");
    println!(
        "nightly     {} (LLVM {})",
        env.nightly.version, env.nightly.llvm_version
    );
    println!(
        "rust-src    {}",
        env.nightly.sysroot.join("lib/rustlib/src").display()
    );
    println!(
        "bpf-linker  {} {}",
        prereq::BPF_LINKER_VERSION,
        env.bpf_linker.display()
    );
    println!("cache       {cache}");
    println!("packages    {}", packages.join(", "));
    println!("bpffs       mounted at /sys/fs/bpf");
    println!("ip netns    usable");
}
