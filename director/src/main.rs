use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use director::control::{self, Request, Response};

/// director: an LVS-style Layer-4 load balancer with an XDP datapath.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args)]
struct Socket {
    /// Control socket of the running director.
    #[arg(long, default_value = "/run/director/director.sock")]
    socket: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load (or adopt) the pinned datapath, attach to the configured
    /// interfaces and serve until SIGINT/SIGTERM. The datapath stays pinned
    /// and forwarding after exit; the next `run` adopts it without dropping
    /// a connection. SIGHUP reloads the configuration.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// bpffs directory for the pinned maps and XDP links.
        #[arg(long, default_value = "/sys/fs/bpf/director")]
        pin_dir: PathBuf,
        #[arg(long, default_value = "/run/director/director.sock")]
        socket: PathBuf,
        /// Prometheus endpoint, or "off".
        #[arg(long, default_value = "127.0.0.1:9465")]
        metrics: String,
    },
    /// Validate a configuration file; errors as FILE:LINE:COL: message.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Withdraw every announced VIP route (protocol 221, in any table), then
    /// detach XDP from every pinned interface and remove the pinned maps
    /// (connections through the director are lost).
    Teardown {
        #[arg(long, default_value = "/sys/fs/bpf/director")]
        pin_dir: PathBuf,
    },
    /// Virtual and real servers with health, connections, counters and rates.
    Status(Socket),
    /// The connection table (like `ipvsadm -L -n -c`).
    Conns {
        #[command(flatten)]
        socket: Socket,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Set a real server's weight (until a reload changes it).
    Weight {
        #[command(flatten)]
        socket: Socket,
        vs: String,
        server: String,
        weight: u32,
    },
    /// Stop new connections to a real server; existing ones continue until
    /// the drain timeout.
    Drain {
        #[command(flatten)]
        socket: Socket,
        vs: String,
        server: String,
    },
    /// Re-read the configuration file and apply the difference.
    Reload(Socket),
    /// Exit 0 once this director is ready to take traffic: its datapath is
    /// attached, its configuration applied, and every sync peer that answered
    /// within `ready_timeout` has sent its whole table. For keepalived's
    /// `vrrp_script`; exits 1 (saying what it waits for) until then.
    Ready(Socket),
}

fn load(path: &Path) -> Option<director::config::Config> {
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

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("director: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

fn client(socket: &Socket, req: Request) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(c) => return c,
    };
    let resp = match rt.block_on(control::call(&socket.socket, &req)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("director: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let failed = matches!(resp, Response::Error { .. });
    if socket.json {
        match serde_json::to_string_pretty(&resp) {
            Ok(j) => println!("{j}"),
            Err(e) => eprintln!("director: {e}"),
        }
    } else {
        match &resp {
            Response::Status(s) => print!("{}", director::status::render_text(s)),
            Response::Conns { total, entries } => {
                println!(
                    "{:<5} {:<12} {:>7} {:<45} {:<45} destination",
                    "pro", "state", "expire", "source", "virtual"
                );
                for e in entries {
                    println!(
                        "{:<5} {:<12} {:>7} {:<45} {:<45} {}",
                        e.protocol, e.state, e.expires_s, e.client, e.virtual_server, e.real_server
                    );
                }
                if *total > entries.len() {
                    println!("({} of {total} shown)", entries.len());
                }
            }
            Response::Done { message } => println!("{message}"),
            Response::Error { message } => eprintln!("director: {message}"),
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Withdraws the announced routes first, so that the routers stop sending
/// before the datapath goes.
fn withdraw_routes() -> Result<(), ExitCode> {
    let rt = runtime()?;
    let routes = rt
        .block_on(async {
            let (nb, _) = director::netlink::Neighbours::start().await?;
            director::announce::withdraw_all(&nb).await
        })
        .map_err(|e| {
            eprintln!("director: withdrawing the announced routes: {e:#}");
            ExitCode::FAILURE
        })?;
    if !routes.is_empty() {
        let list: Vec<String> = routes
            .iter()
            .map(|(table, ip)| format!("{ip} (table {table})"))
            .collect();
        println!("withdrew {}", list.join(", "));
    }
    Ok(())
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
        Cmd::Teardown { pin_dir } => {
            let pins = director::dataplane::PinDir(pin_dir);
            // A mistyped --pin-dir withdraws nothing either.
            if let Err(e) = pins.check_datapath() {
                eprintln!("director: {e:#}");
                return ExitCode::FAILURE;
            }
            if let Err(c) = withdraw_routes() {
                return c;
            }
            match director::dataplane::teardown(&pins) {
                Ok(ifaces) => {
                    println!("detached from [{}]; pinned maps removed", ifaces.join(", "));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("director: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Status(s) => client(&s, Request::Status),
        Cmd::Conns { socket, limit } => client(&socket, Request::Conns { limit }),
        Cmd::Weight {
            socket,
            vs,
            server,
            weight,
        } => client(&socket, Request::Weight { vs, server, weight }),
        Cmd::Drain { socket, vs, server } => client(&socket, Request::Drain { vs, server }),
        Cmd::Reload(s) => client(&s, Request::Reload),
        Cmd::Ready(s) => client(&s, Request::Ready),
        Cmd::Run {
            config,
            pin_dir,
            socket,
            metrics,
        } => {
            director::logging::init();
            if let Err(e) = director::startup::check_privileges() {
                eprintln!("director: {e:#}");
                return ExitCode::FAILURE;
            }
            let metrics = match metrics.as_str() {
                "off" | "" => None,
                m => match m.parse::<SocketAddr>() {
                    Ok(a) => Some(a),
                    Err(e) => {
                        eprintln!("director: --metrics {m}: {e}");
                        return ExitCode::FAILURE;
                    }
                },
            };
            let Some(c) = load(&config) else {
                return ExitCode::FAILURE;
            };
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(c) => return c,
            };
            let opts = director::daemon::Options {
                pin_dir,
                socket,
                metrics,
            };
            match rt.block_on(director::daemon::run(c, opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
