//! A director pair behind VRRP: one client, directors A and B (both running `director
//! run` with the same virtual servers, and keepalived), three real servers, wired for
//! NAT or DR (tables in [`wiring`]). keepalived moves the VIP (and in NAT mode the
//! real servers' gateway) to the director that is ready and has the higher priority:
//! A (150) over B (100), see [`keepalived`].
//!
//! Namespaces are `ha-<pid>-<n>-<role>` (roles `client`, `dira`, `dirb`, `sw`,
//! `rs1`…), each director pins under `/sys/fs/bpf/ha-<pid>-<n>-dir<x>` and keeps its
//! files (config, log, control socket, keepalived's files) in `<tmp>/dir<x>/`. Drop
//! stops keepalived, the directors and the servers by pid, removes both pin dirs and
//! deletes the namespaces; while unwinding from a panic it first prints the
//! directors' and keepalived's log tails and keeps the temp dir.
//!
//! With [`HaSpec::sync`] each director's config gets a `[sync]` table toward the
//! other (`10.9.0.1:8848` ↔ `10.9.0.2:8848` on `eth2`, one shared key file).
//!
//! As with [`crate::lab::Lab`], build, use and drop a pair lab on one thread.

pub mod keepalived;
pub mod wiring;

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use self::keepalived::Keepalived;
use super::director::{Director, log_tail};
use super::netns::NetNs;
use super::process::ChildGuard;
use super::topology::{Mode, NAT_UDP_PORT, UDP_VIP, VIP};
use super::{DIRECTOR_READY_TIMEOUT, Probe, Wrk, cleanup, servers};
use crate::config::{Config, VirtualServer};

/// The long-lived connection service (`director-lab-server --stream`), on the VIP
/// and on every real server.
pub const STREAM_PORT: u16 = 9000;
/// The same service behind a virtual server with source-IP persistence.
pub const PERSIST_PORT: u16 = 9001;
/// The sync port of both directors.
pub const SYNC_PORT: u16 = 8848;
/// How long a takeover may take: VRRP's master-down interval with `advert_int 1`
/// is 3.6 s for priority 100; the rest is slack for a busy machine.
pub const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(10);

const LOG_TAIL_LINES: usize = 40;

/// One of the two directors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// `a` or `b`.
    pub fn letter(self) -> char {
        match self {
            Side::A => 'a',
            Side::B => 'b',
        }
    }

    /// Its namespace's role, `dira` or `dirb`.
    pub fn name(self) -> &'static str {
        match self {
            Side::A => "dira",
            Side::B => "dirb",
        }
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct HaSpec {
    pub mode: Mode,
    /// Each director's config gets a `[sync]` table toward the other.
    pub sync: bool,
    pub servers: usize,
    /// The `director-lab-server` binary.
    pub server_bin: PathBuf,
    pub director_bin: PathBuf,
    /// B's key file differs from A's (a misconfigured or rogue peer).
    pub different_keys: bool,
    /// `[sync] ready_timeout`, when not the director's default.
    pub ready_timeout: Option<Duration>,
}

impl HaSpec {
    /// Three real servers, no sync, the default director binary.
    pub fn new(mode: Mode, server_bin: impl Into<PathBuf>) -> Self {
        Self {
            mode,
            sync: false,
            servers: 3,
            server_bin: server_bin.into(),
            director_bin: crate::paths::director_bin(),
            different_keys: false,
            ready_timeout: None,
        }
    }

    pub fn sync(mut self, on: bool) -> Self {
        self.sync = on;
        self
    }

    /// Sync on, with a key file for B that is not A's.
    pub fn different_keys(mut self) -> Self {
        self.sync = true;
        self.different_keys = true;
        self
    }

    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = Some(timeout);
        self
    }
}

/// One director host: its namespace's processes and files.
#[derive(Debug)]
struct Node {
    side: Side,
    dir: PathBuf,
    director: Option<Director>,
    keepalived: Option<Keepalived>,
}

impl Node {
    fn socket(&self) -> PathBuf {
        self.dir.join("director.sock")
    }
}

/// A running pair lab. See the module docs.
#[derive(Debug)]
pub struct HaLab {
    id: String,
    spec: HaSpec,
    nodes: [Node; 2],
    servers: Vec<ChildGuard>,
    xdp_links: Vec<OwnedFd>,
    namespaces: wiring::Namespaces,
    tmp: Option<tempfile::TempDir>,
}

impl HaLab {
    /// Wires the pair and starts the real servers; no director, no keepalived.
    pub fn build(spec: HaSpec) -> Result<Self> {
        crate::paths::check_director_bin(&spec.director_bin)?;
        anyhow::ensure!(
            (1..=80).contains(&spec.servers),
            "1..=80 real servers, not {}",
            spec.servers
        );
        let id = super::new_lab_id(cleanup::HA_PREFIX);
        let tmp = tempfile::Builder::new()
            .prefix(&format!("director-{id}-"))
            .tempdir()
            .context("create lab temp dir")?;
        let (namespaces, xdp_links) = wiring::build(spec.mode, spec.servers, &id)
            .with_context(|| format!("build {} pair lab {id}", spec.mode))?;
        let node = |side: Side| -> Result<Node> {
            let dir = tmp.path().join(side.name());
            std::fs::create_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
            Ok(Node {
                side,
                dir,
                director: None,
                keepalived: None,
            })
        };
        let nodes = [node(Side::A)?, node(Side::B)?];
        let mut lab = Self {
            id,
            spec,
            nodes,
            servers: Vec::new(),
            xdp_links,
            namespaces,
            tmp: Some(tmp),
        };
        if lab.spec.sync {
            lab.write_sync_key(Side::A)?;
            if lab.spec.different_keys {
                lab.write_sync_key(Side::B)?;
            }
        }
        lab.start_servers()?;
        Ok(lab)
    }

    /// [`HaLab::build`], both directors started and ready, both keepalived started,
    /// and A master with the VIP answering. Panics with the logs on failure.
    pub fn start(spec: HaSpec) -> Self {
        let mut lab = Self::build(spec).unwrap_or_else(|e| panic!("{e:#}"));
        for side in [Side::A, Side::B] {
            lab.start_director(side);
        }
        for side in [Side::A, Side::B] {
            lab.wait_ready(side, DIRECTOR_READY_TIMEOUT)
                .unwrap_or_else(|e| panic!("{e:#}"));
        }
        lab.take_vip();
        lab
    }

    /// Starts both keepalived and waits until A is master and the VIP answers.
    /// Panics with the logs on failure.
    pub fn take_vip(&mut self) {
        for side in [Side::A, Side::B] {
            self.start_keepalived(side);
        }
        self.wait_master(Side::A, TAKEOVER_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e:#}"));
        self.wait_vip(TAKEOVER_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn mode(&self) -> Mode {
        self.spec.mode
    }

    /// The HTTP virtual service, `192.0.2.10:80`.
    pub fn vip(&self) -> SocketAddr {
        VIP.into()
    }

    /// The long-lived connection service on the VIP.
    pub fn stream_vip(&self) -> SocketAddr {
        SocketAddrV4::new(*VIP.ip(), STREAM_PORT).into()
    }

    /// The long-lived connection service with persistence.
    pub fn persist_vip(&self) -> SocketAddr {
        SocketAddrV4::new(*VIP.ip(), PERSIST_PORT).into()
    }

    /// The UDP virtual service, `192.0.2.10:53`.
    pub fn udp_vip(&self) -> SocketAddr {
        UDP_VIP.into()
    }

    pub fn extra_clients(&self) -> Vec<IpAddr> {
        wiring::extra_clients(self.spec.mode)
            .into_iter()
            .map(IpAddr::V4)
            .collect()
    }

    pub fn client_ns(&self) -> &NetNs {
        &self.namespaces.client
    }

    pub fn director_ns(&self, side: Side) -> &NetNs {
        &self.namespaces.dirs[side.index()]
    }

    /// Runs `f` on a thread inside the client namespace.
    pub fn in_client<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.namespaces.client.run(f)
    }

    /// The lab's scratch directory.
    pub fn temp_dir(&self) -> &Path {
        self.tmp
            .as_ref()
            .expect("temp dir lives as long as the lab")
            .path()
    }

    /// Where `side`'s director pins its datapath.
    pub fn pin_dir(&self, side: Side) -> PathBuf {
        PathBuf::from("/sys/fs/bpf").join(self.director_ns(side).name())
    }

    /// The director config both run: the same virtual servers (HTTP, the
    /// long-lived service, the same with persistence, and UDP, all `wrr`), plus
    /// `[sync]` toward the other director when the spec says so.
    pub fn director_config(&self, side: Side) -> String {
        let mode = self.spec.mode;
        let reals = |port: u16| -> Vec<SocketAddr> {
            (1..=self.spec.servers)
                .map(|n| SocketAddrV4::new(wiring::real_server(mode, n), port).into())
                .collect()
        };
        let http_port = match mode {
            Mode::Nat => 8080,
            Mode::Dr => VIP.port(),
        };
        let udp_port = match mode {
            Mode::Nat => NAT_UDP_PORT,
            Mode::Dr => UDP_VIP.port(),
        };
        let tcp = |name: &str, addr: SocketAddr, port: u16| {
            VirtualServer::tcp(name, addr)
                .scheduler("wrr")
                .real_servers(reals(port))
        };
        let mut text = Config::lab(mode)
            .virtual_server(tcp("web", self.vip(), http_port))
            .virtual_server(tcp("stream", self.stream_vip(), STREAM_PORT))
            .virtual_server(
                tcp("persistent", self.persist_vip(), PERSIST_PORT).set("persistence", "300s"),
            )
            .virtual_server(
                VirtualServer::udp("dns", self.udp_vip())
                    .scheduler("wrr")
                    .real_servers(reals(udp_port)),
            )
            .to_toml();
        if self.spec.sync {
            text += &sync_table(side, &self.sync_key_path(side), self.spec.ready_timeout);
        }
        text
    }

    /// One key file for both, unless the spec gives B its own.
    fn sync_key_path(&self, side: Side) -> PathBuf {
        match side {
            Side::B if self.spec.different_keys => self.temp_dir().join("sync-b.key"),
            _ => self.temp_dir().join("sync.key"),
        }
    }

    /// 32 random bytes, readable by root only (the director refuses a key anyone
    /// else can read).
    fn write_sync_key(&self, side: Side) -> Result<()> {
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key))
            .context("read /dev/urandom")?;
        let path = self.sync_key_path(side);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("create {}", path.display()))?;
        std::io::Write::write_all(&mut file, &key)
            .with_context(|| format!("write {}", path.display()))
    }

    /// Starts `side`'s director (adopting its pinned datapath if one is left) and
    /// returns without waiting: see [`HaLab::wait_ready`].
    pub fn start_director(&mut self, side: Side) {
        let config = self.director_config(side);
        let pins = self.pin_dir(side);
        let node = &mut self.nodes[side.index()];
        if let Some(mut old) = node.director.take() {
            let _ = old.stop();
        }
        let director = Director::spawn(
            &self.spec.director_bin,
            &self.namespaces.dirs[side.index()],
            config.into(),
            &node.dir,
            &pins,
        )
        .unwrap_or_else(|e| panic!("start director {}: {e:#}", side.name()));
        node.director = Some(director);
    }

    /// One `director ready --socket …` of `side`: `Err` with what it says while
    /// not ready (or not running).
    pub fn ready(&self, side: Side) -> Result<(), String> {
        let out = Command::new(&self.spec.director_bin)
            .arg("ready")
            .arg("--socket")
            .arg(self.nodes[side.index()].socket())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run director ready: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// `director <args> --socket <side's> --json`: what it printed, or why it failed.
    pub fn ask(&self, side: Side, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.spec.director_bin)
            .args(args)
            .arg("--socket")
            .arg(self.nodes[side.index()].socket())
            .arg("--json")
            .stdin(Stdio::null())
            .output()
            .context("run director")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "director {} of {}: {}{}",
                args.join(" "),
                side.name(),
                stdout,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    /// Stops `side`'s director (SIGTERM: its datapath stays pinned and
    /// forwarding) and, with `teardown`, removes the datapath as `director
    /// teardown` does (as after a reboot).
    pub fn stop_director(&mut self, side: Side, teardown: bool) {
        let node = &mut self.nodes[side.index()];
        if let Some(mut d) = node.director.take() {
            d.stop()
                .unwrap_or_else(|e| panic!("stop director {}: {e:#}", side.name()));
        }
        if teardown {
            let out = Command::new(&self.spec.director_bin)
                .arg("teardown")
                .arg("--pin-dir")
                .arg(self.pin_dir(side))
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("run director teardown: {e}"));
            assert!(
                out.status.success(),
                "director teardown of {}: {}",
                side.name(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Polls [`HaLab::ready`] until it succeeds; returns how long that took. Fails at
    /// once if the director exits.
    pub fn wait_ready(&mut self, side: Side, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let last = match self.ready(side) {
                Ok(()) => return Ok(start.elapsed()),
                Err(e) => e,
            };
            let node = &mut self.nodes[side.index()];
            let Some(d) = node.director.as_mut() else {
                bail!("director {} is not running", side.name());
            };
            if let Some(status) = d.try_wait() {
                bail!(
                    "director {} exited ({status}); log tail:\n{}",
                    side.name(),
                    d.log_tail(LOG_TAIL_LINES)
                );
            }
            if start.elapsed() >= timeout {
                bail!(
                    "director {} not ready within {timeout:?} (last: {last}); log tail:\n{}",
                    side.name(),
                    d.log_tail(LOG_TAIL_LINES)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts keepalived in `side`'s namespace (its config checked first, see
    /// [`Keepalived::spawn`]).
    pub fn start_keepalived(&mut self, side: Side) {
        let node = &self.nodes[side.index()];
        let ready = format!(
            "{} ready --socket {}",
            self.spec.director_bin.display(),
            node.socket().display()
        );
        let config = keepalived::config(self.spec.mode, side, &ready);
        let k = Keepalived::spawn(&self.namespaces.dirs[side.index()], &config, &node.dir)
            .unwrap_or_else(|e| panic!("start keepalived for {}: {e:#}", side.name()));
        self.nodes[side.index()].keepalived = Some(k);
    }

    /// How many of the pair's VRRP addresses `side` holds: all of them on the
    /// master, none on a backup.
    pub fn vrrp_addresses_held(&self, side: Side) -> usize {
        let ns = self.director_ns(side);
        wiring::segments(self.spec.mode)
            .iter()
            .flat_map(|seg| seg.virtual_addresses.iter().map(move |(a, _)| (seg, *a)))
            .filter(|(seg, addr)| {
                ns.ip(&["-4", "-o", "addr", "show", "dev", seg.interface])
                    .is_ok_and(|out| out.contains(&format!("inet {addr}/")))
            })
            .count()
    }

    /// The director holding every VRRP address, if one does (and the other none).
    pub fn master(&self) -> Option<Side> {
        let all: usize = wiring::segments(self.spec.mode)
            .iter()
            .map(|s| s.virtual_addresses.len())
            .sum();
        let held = [Side::A, Side::B].map(|s| self.vrrp_addresses_held(s));
        match held {
            [a, 0] if a == all => Some(Side::A),
            [0, b] if b == all => Some(Side::B),
            _ => None,
        }
    }

    /// Waits until `side` is the master; returns how long that took.
    pub fn wait_master(&self, side: Side, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            if self.master() == Some(side) {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= timeout {
                bail!(
                    "director {} not master within {timeout:?} (VRRP addresses held: A {}, B {}); \
                     keepalived log tails:\n{}",
                    side.name(),
                    self.vrrp_addresses_held(Side::A),
                    self.vrrp_addresses_held(Side::B),
                    self.keepalived_log_tails()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until a new connection through the VIP gets an answer (`GET /`);
    /// returns how long that took.
    pub fn wait_vip(&self, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let probe = Probe::Http(self.vip());
        loop {
            let last = match self.in_client(|| probe.once()) {
                Ok(()) => return Ok(start.elapsed()),
                Err(e) => format!("{e:#}"),
            };
            if start.elapsed() >= timeout {
                bail!("no answer through the VIP within {timeout:?} (last: {last})");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The director host `side` fails: its director is SIGKILLed (by pid), then its
    /// links go down, so its pinned datapath, which forwards without the process,
    /// gets nothing either. Its keepalived keeps running and sees the links go down.
    pub fn crash(&mut self, side: Side) -> ExitStatus {
        let node = &mut self.nodes[side.index()];
        let mut d = node
            .director
            .take()
            .unwrap_or_else(|| panic!("director {} is not running", side.name()));
        let status = d.kill().unwrap_or_else(|e| panic!("{e:#}"));
        self.set_links(side, "down");
        status
    }

    /// Brings `side`'s links back up and starts its director again (it adopts the
    /// pinned datapath); does not wait for it.
    pub fn revive(&mut self, side: Side) {
        self.set_links(side, "up");
        self.start_director(side);
    }

    fn set_links(&self, side: Side, state: &str) {
        let lines: Vec<String> = wiring::director_interfaces(self.spec.mode)
            .iter()
            .map(|i| format!("link set dev {i} {state}"))
            .collect();
        self.director_ns(side)
            .ip_batch(&lines)
            .unwrap_or_else(|e| panic!("links of {} {state}: {e:#}", side.name()));
    }

    /// Starts `wrk` in the client namespace against the HTTP VIP (see
    /// [`crate::lab::Lab::start_wrk`]).
    pub fn start_wrk(&self, threads: u32, connections: u32, duration: Duration) -> Wrk {
        let (ns, dir) = (&self.namespaces.client, self.temp_dir());
        Wrk::on_vip(ns, dir, self.vip(), threads, connections, duration)
    }

    /// Pids of the lab's processes: servers, directors, keepalived (and its VRRP
    /// child).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.servers.iter().map(ChildGuard::pid).collect();
        for node in &self.nodes {
            pids.extend(node.director.as_ref().map(Director::pid));
            if let Some(k) = &node.keepalived {
                pids.push(k.pid());
                pids.extend(k.vrrp_pid());
            }
        }
        pids
    }

    /// Both keepalived instances' last lines.
    pub fn keepalived_log_tails(&self) -> String {
        self.log_tails("keepalived")
    }

    /// The last lines of both directors' `<program>.log`.
    fn log_tails(&self, program: &str) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let log = n.dir.join(format!("{program}.log"));
                format!(
                    "---- {program} {} ----\n{}",
                    n.side.name(),
                    log_tail(&log, LOG_TAIL_LINES)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn start_servers(&mut self) -> Result<()> {
        let mode = self.spec.mode;
        let any = |port: u16| -> SocketAddr { (Ipv6Addr::UNSPECIFIED, port).into() };
        let udp: Vec<SocketAddr> = match mode {
            Mode::Nat => vec![any(NAT_UDP_PORT)],
            Mode::Dr => vec![UDP_VIP.into()],
        };
        let http_port = match mode {
            Mode::Nat => 8080,
            Mode::Dr => VIP.port(),
        };
        let stream = [any(STREAM_PORT), any(PERSIST_PORT)];
        for (i, ns) in self.namespaces.rs.iter().enumerate() {
            let name = format!("rs{}", i + 1);
            let serve = servers::Serve {
                name: &name,
                listen: any(http_port),
                udp: &udp,
                stream: &stream,
            };
            let dir = self.tmp.as_ref().expect("temp dir").path();
            self.servers
                .push(servers::spawn(&self.spec.server_bin, ns, dir, &serve)?);
        }
        let dir = self.tmp.as_ref().expect("temp dir").path().to_path_buf();
        for (ns, server) in self.namespaces.rs.iter().zip(&mut self.servers) {
            for port in [http_port, STREAM_PORT, PERSIST_PORT] {
                servers::wait_listening(ns, port, server, &dir)?;
            }
        }
        Ok(())
    }
}

/// The `[sync]` table of `side`'s config: listen on its sync address, the other's
/// as the peer, one key file for both.
fn sync_table(side: Side, key_file: &Path, ready_timeout: Option<Duration>) -> String {
    let addr = |s: Side| SocketAddrV4::new(wiring::SYNC[s.index()], SYNC_PORT);
    let mut table = format!(
        "\n[sync]\nlisten = \"{}\"\npeers = [\"{}\"]\nkey_file = \"{}\"\n",
        addr(side),
        addr(side.other()),
        key_file.display()
    );
    if let Some(t) = ready_timeout {
        table += &format!("ready_timeout = \"{}ms\"\n", t.as_millis());
    }
    table
}

impl Drop for HaLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- pair lab {} logs ----\n{}\n{}\n---- end of pair lab logs ----",
                self.id,
                self.log_tails("director"),
                self.log_tails("keepalived")
            );
            if let Some(tmp) = self.tmp.take() {
                eprintln!(
                    "pair lab {} files kept in {}",
                    self.id,
                    tmp.keep().display()
                );
            }
        }
        // keepalived first: it gives the VRRP addresses up while the links exist.
        for node in &mut self.nodes {
            drop(node.keepalived.take());
        }
        for node in &mut self.nodes {
            drop(node.director.take());
        }
        self.servers.clear();
        self.xdp_links.clear();
        for side in [Side::A, Side::B] {
            let _ = std::fs::remove_dir_all(self.pin_dir(side));
        }
        // `namespaces` (deleted by their guards) and `tmp` drop after this.
    }
}
