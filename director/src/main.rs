use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// director: an LVS-style Layer-4 load balancer with an XDP datapath.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load the configuration, attach to its interfaces and forward until
    /// SIGINT/SIGTERM (then detach).
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file; errors as FILE:LINE:COL: message.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn load(path: &std::path::Path) -> Option<director::config::Config> {
    match director::config::load(path) {
        Ok(loaded) => {
            for w in loaded.format_warnings() {
                eprintln!("{w}");
            }
            Some(loaded.config)
        }
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Check { config } => match load(&config) {
            Some(c) => {
                println!(
                    "{}: ok ({} virtual servers)",
                    config.display(),
                    c.virtual_servers.len()
                );
                ExitCode::SUCCESS
            }
            None => ExitCode::FAILURE,
        },
        Cmd::Run { config } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let Some(c) = load(&config) else {
                return ExitCode::FAILURE;
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("director: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(director::daemon::run(c)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
