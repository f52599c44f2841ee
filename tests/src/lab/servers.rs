//! The real servers of a lab: one `director-lab-server` per server namespace, its
//! output appended to `<name>.log` in the lab's temp dir.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::director::log_tail;
use super::netns::NetNs;
use super::process::{ChildGuard, log_to};

const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// What one real server serves (see `director-lab-server --help`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Serve<'a> {
    pub name: &'a str,
    /// HTTP.
    pub listen: SocketAddr,
    pub udp: &'a [SocketAddr],
    /// Long-lived connections (`--stream`).
    pub stream: &'a [SocketAddr],
}

/// Starts `bin` as `serve` describes, in `ns`.
pub(crate) fn spawn(bin: &Path, ns: &NetNs, dir: &Path, serve: &Serve) -> Result<ChildGuard> {
    anyhow::ensure!(
        bin.is_file(),
        "lab server binary not found at {}",
        bin.display()
    );
    let mut cmd = ns.command(bin);
    cmd.args(["--name", serve.name, "--listen", &serve.listen.to_string()]);
    for u in serve.udp {
        cmd.args(["--udp", &u.to_string()]);
    }
    for s in serve.stream {
        cmd.args(["--stream", &s.to_string()]);
    }
    log_to(&mut cmd, &dir.join(format!("{}.log", serve.name)))?;
    ChildGuard::spawn(serve.name, cmd, Duration::ZERO)
}

/// Waits until `server` accepts connections on `port` (checked inside its namespace
/// `ns`); fails at once if it exits. `dir` holds its log.
pub(crate) fn wait_listening(
    ns: &NetNs,
    port: u16,
    server: &mut ChildGuard,
    dir: &Path,
) -> Result<()> {
    let local: SocketAddr = (Ipv4Addr::LOCALHOST, port).into();
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if ns.run(|| TcpStream::connect_timeout(&local, Duration::from_millis(200)).is_ok()) {
            return Ok(());
        }
        let exited = server.try_wait();
        if exited.is_some() || Instant::now() >= deadline {
            let log = dir.join(format!("{}.log", server.name()));
            bail!(
                "{} not listening on {local} ({}); log:\n{}",
                server.name(),
                exited.map_or("timed out".to_owned(), |s| format!("exited: {s}")),
                log_tail(&log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
