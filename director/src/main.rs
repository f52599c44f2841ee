use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory as _, Parser, Subcommand};
use director::control::{self, Request, Response};

/// Where the Debian package and dist/director.service keep the configuration.
const DEFAULT_CONFIG: &str = "/etc/director/director.toml";
const DEFAULT_SOCKET: &str = "/run/director/director.sock";
const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/director";

/// An LVS-style Layer-4 load balancer with an XDP datapath.
///
/// `director run` is the daemon (root); the other commands either check a
/// configuration file or talk to the running daemon over its control socket.
#[derive(Parser)]
#[command(name = "director", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args)]
struct Socket {
    /// Control socket of the running director.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Machine-readable output (the control socket's JSON answer).
    #[arg(long)]
    json: bool,
}

/// Which real server of which virtual server.
#[derive(Args)]
struct Target {
    #[command(flatten)]
    socket: Socket,
    /// The virtual server: its name, or its address (`192.0.2.10:80`).
    vs: String,
    /// The real server's address: `10.1.0.12:8080`, or `10.1.0.12` when the
    /// virtual server has only one real server of that address.
    server: String,
}

#[derive(Args)]
struct CheckArgs {
    /// The configuration file [default: /etc/director/director.toml].
    #[arg(value_name = "FILE", conflicts_with = "config")]
    file: Option<PathBuf>,
    /// The configuration file, as `run` takes it (same as FILE).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl CheckArgs {
    fn path(self) -> PathBuf {
        self.file
            .or(self.config)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Load (or adopt) the pinned datapath, attach to the configured
    /// interfaces and serve until SIGINT/SIGTERM. The datapath stays pinned
    /// and forwarding after exit; the next `run` adopts it without dropping
    /// a connection. SIGHUP reloads the configuration.
    Run {
        /// The configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// bpffs directory for the pinned maps and XDP links.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// Control socket to serve (mode 0600: root only).
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Prometheus endpoint, or "off".
        #[arg(long, default_value = "127.0.0.1:9465")]
        metrics: String,
    },
    /// Validate a configuration file; errors as FILE:LINE:COL: message.
    Check(CheckArgs),
    /// Withdraw every announced VIP route (protocol 221, in any table), then
    /// detach XDP from every pinned interface and remove the pinned maps
    /// (connections through the director are lost).
    Teardown {
        /// bpffs directory of the pinned maps and XDP links.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Virtual and real servers with health, connections, counters and rates.
    Status(Socket),
    /// The connection table (like `ipvsadm -L -n -c`).
    Conns {
        #[command(flatten)]
        socket: Socket,
        /// Show at most this many entries (the total is always counted).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Set a real server's weight until a reload changes its weight in the
    /// file. A drained server stays drained: the weight applies once
    /// `director undrain` ends the drain.
    Weight {
        #[command(flatten)]
        target: Target,
        /// The new weight, 0..=65535 as in the configuration (0: quiescent,
        /// existing connections continue).
        #[arg(value_parser = clap::value_parser!(u16))]
        weight: u16,
    },
    /// Stop new connections to a real server; existing ones continue until
    /// the drain timeout. The server stays drained until `director undrain`
    /// or a reload that changes its weight.
    Drain(Target),
    /// End a `director drain`: the real server takes new connections again,
    /// at its weight, once its health check (if any) passes.
    Undrain(Target),
    /// Re-read the configuration file and apply the difference; say what
    /// changed, virtual server by virtual server. Exits 1 when the file is
    /// rejected (nothing changes), 3 when it was applied except changes
    /// that need a restart.
    Reload {
        #[command(flatten)]
        socket: Socket,
        /// Say what a reload would change; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Exit 0 once this director is ready to take traffic: its datapath is
    /// attached, its configuration applied, and every sync peer that answered
    /// within `ready_timeout` has sent its whole table. For keepalived's
    /// `vrrp_script`; exits 1 (saying what it waits for) until then.
    Ready(Socket),
    /// Write the manual pages (director.8 and one per command) into DIR.
    #[command(hide = true)]
    Manpage {
        /// Directory to write the pages into.
        dir: PathBuf,
    },
    /// Print the shell completion script for SHELL.
    #[command(hide = true)]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// Writes `text` to stdout. A reader that has gone (`director conns | head
/// -1`) is no failure: it has all it wanted. False on any other error.
fn print_out(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => true,
        Err(e) => {
            eprintln!("director: writing to stdout: {e}");
            false
        }
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// director.8 for the whole command, director-COMMAND.8 for each visible
/// command, all in section 8 (system administration).
fn manpages(dir: &Path) -> ExitCode {
    // A built command names its subcommands "director-run" (display name,
    // the page's name) and "director run" (bin name, the synopsis).
    fn write(cmd: clap::Command, dir: &Path) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub.clone(), dir)?;
        }
        let man = clap_mangen::Man::new(cmd)
            .section("8")
            .manual("System Administration");
        let mut file = std::fs::File::create(dir.join(man.get_filename()))?;
        man.render(&mut file)
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    match write(cmd, dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("director: writing manual pages into {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "director", &mut script);
    exit(print_out(&String::from_utf8_lossy(&script)))
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
    let code = resp.exit_code();
    let mut out = String::new();
    if socket.json {
        match serde_json::to_string_pretty(&resp) {
            Ok(j) => out = j + "\n",
            Err(e) => eprintln!("director: {e}"),
        }
    } else {
        match &resp {
            Response::Status(s) => out = director::status::render_text(s),
            Response::Conns { total, entries } => {
                use std::fmt::Write as _;
                let _ = writeln!(
                    out,
                    "{:<5} {:<12} {:>7} {:<45} {:<45} destination",
                    "pro", "state", "expire", "source", "virtual"
                );
                for e in entries {
                    let _ = writeln!(
                        out,
                        "{:<5} {:<12} {:>7} {:<45} {:<45} {}",
                        e.protocol, e.state, e.expires_s, e.client, e.virtual_server, e.real_server
                    );
                }
                if *total > entries.len() {
                    let _ = writeln!(out, "({} of {total} shown)", entries.len());
                }
            }
            Response::Done { message } => out = format!("{message}\n"),
            Response::Reload(r) => out = r.render_text(),
            Response::Error { message } => eprintln!("director: {message}"),
        }
    }
    if print_out(&out) {
        ExitCode::from(code)
    } else {
        ExitCode::FAILURE
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
        print_out(&format!("withdrew {}\n", list.join(", ")));
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Check(file) => {
            let config = file.path();
            match load(&config) {
                Some(c) => exit(print_out(&format!(
                    "{}: ok ({} virtual servers)\n",
                    config.display(),
                    c.virtual_servers.len()
                ))),
                None => ExitCode::FAILURE,
            }
        }
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
                Ok(ifaces) => exit(print_out(&format!(
                    "detached from [{}]; pinned maps removed\n",
                    ifaces.join(", ")
                ))),
                Err(e) => {
                    eprintln!("director: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Status(s) => client(&s, Request::Status),
        Cmd::Conns { socket, limit } => client(&socket, Request::Conns { limit }),
        Cmd::Weight {
            target: Target { socket, vs, server },
            weight,
        } => client(&socket, Request::Weight { vs, server, weight }),
        Cmd::Drain(Target { socket, vs, server }) => client(&socket, Request::Drain { vs, server }),
        Cmd::Undrain(Target { socket, vs, server }) => {
            client(&socket, Request::Undrain { vs, server })
        }
        Cmd::Manpage { dir } => manpages(&dir),
        Cmd::Completions { shell } => completions(shell),
        Cmd::Reload { socket, dry_run } => client(
            &socket,
            if dry_run {
                Request::Diff
            } else {
                Request::Reload
            },
        ),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("director").chain(args.iter().copied()))
    }

    #[test]
    fn every_argument_and_subcommand_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {}", a.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(sub_path.clone());
                }
                walk(sub, &sub_path, missing);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "director", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
        assert!(cmd.get_about().is_some(), "director itself has no about");
    }

    #[test]
    fn check_takes_the_file_positionally_and_config_defaults_to_etc() {
        let check = |args: &[&str]| match parse(args).map(|c| c.command) {
            Ok(Cmd::Check(f)) => f.path(),
            Ok(_) => panic!("{args:?} is not check"),
            Err(e) => panic!("{args:?}: {e}"),
        };
        assert_eq!(check(&["check", "x.toml"]), Path::new("x.toml"));
        assert_eq!(check(&["check", "--config", "y.toml"]), Path::new("y.toml"));
        assert_eq!(check(&["check"]), Path::new(DEFAULT_CONFIG));
        assert!(
            parse(&["check", "x.toml", "--config", "y.toml"]).is_err(),
            "two files"
        );
        match parse(&["run"]).map(|c| c.command) {
            Ok(Cmd::Run { config, .. }) => assert_eq!(config, Path::new(DEFAULT_CONFIG)),
            _ => panic!("`director run` without --config does not parse"),
        }
    }

    #[test]
    fn weight_4000000000_is_refused_by_the_cli() {
        let e = match parse(&["weight", "192.0.2.10:80", "10.1.0.12", "4000000000"]) {
            Ok(_) => panic!("weight 4000000000 accepted"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("0..=65535"), "{e}");
        assert!(parse(&["weight", "web", "10.1.0.12", "65535"]).is_ok());
    }

    #[test]
    fn undrain_is_a_command() {
        assert!(matches!(
            parse(&["undrain", "192.0.2.10:80", "10.1.0.12"]).map(|c| c.command),
            Ok(Cmd::Undrain(Target { ref vs, ref server, .. })) if vs == "192.0.2.10:80" && server == "10.1.0.12"
        ));
    }
}
