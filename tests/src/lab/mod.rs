//! A network-namespace lab: a client, the director, a switch and real servers, wired
//! for NAT or DR, with lab HTTP servers running and the director started on demand.
//!
//! Namespace names are `dl<pid>-<n>-<role>` (unique per process and per lab), so labs
//! of concurrent tests or processes never collide. Dropping the [`Lab`] stops its
//! processes by pid and then deletes its namespaces; while unwinding from a panic it
//! first prints the director's log tail and keeps the lab's temp dir for inspection.
//!
//! Child processes get SIGKILL if the thread that started them exits (PR_SET_PDEATHSIG),
//! so build, use and drop a lab on one thread (a test's thread, the demo's main thread);
//! [`Lab::in_ns`] threads are for sockets, not for starting processes.
//!
//! The lab is dual-stack: every host has IPv4 and IPv6 addresses (tables in
//! [`topology`]), and each real server answers HTTP over both and UDP (`<name>
//! <payload>`) on its UDP address, for the director's TCP and UDP virtual servers.
//!
//! Besides the wiring (see [`topology`]), the veth ends facing the
//! director carry an XDP_PASS program ([`xdp`]): without it, frames the director
//! XDP_TXes (DR mode) are not delivered.

pub mod cleanup;
pub mod director;
mod echo;
pub mod ecmp;
pub mod ha;
pub mod netns;
pub mod process;
mod servers;
pub mod topology;
pub mod wrk;
pub mod xdp;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub use cleanup::{install_signal_cleanup, sweep_stale};
pub use director::{Director, DirectorConfig};
pub use netns::NetNs;
pub use process::ChildGuard;
pub use topology::{Addressing, Mode, NAT_UDP_PORT, Namespaces, UDP_VIP, UDP_VIP6, VIP, VIP6};
pub use wrk::{Wrk, WrkReport};

use crate::http::{self, Tally, Timeouts};
use crate::udp;

/// How long the director gets to forward a first request through the VIP. Loading
/// takes about 5 s on an idle machine (the verifier alone about 3.5 s), but 15 s and
/// more when other builds and labs share the CPUs: a generous bound, which a director
/// that exits or never forwards still cannot hide (it only costs time on failure).
pub const DIRECTOR_READY_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_TAIL_LINES: usize = 60;

/// What to build.
#[derive(Debug, Clone)]
pub struct LabSpec {
    pub mode: Mode,
    /// Number of real servers, named `rs1`…`rsN`.
    pub servers: usize,
    /// The `director-lab-server` binary.
    pub server_bin: PathBuf,
    /// The `director` binary used by [`Lab::start_director`].
    pub director_bin: PathBuf,
}

impl LabSpec {
    /// Three real servers and the default director binary ([`crate::paths::director_bin`]).
    pub fn new(mode: Mode, server_bin: impl Into<PathBuf>) -> Self {
        Self {
            mode,
            servers: 3,
            server_bin: server_bin.into(),
            director_bin: crate::paths::director_bin(),
        }
    }

    pub fn servers(mut self, n: usize) -> Self {
        self.servers = n;
        self
    }

    pub fn director_bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.director_bin = path.into();
        self
    }
}

/// How [`Lab::start_director`] decides that the director forwards: one exchange
/// through a virtual server succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `GET /` through this TCP virtual server answers 200.
    Http(SocketAddr),
    /// A datagram to this UDP virtual server is answered.
    Udp(SocketAddr),
}

impl Probe {
    /// The probe [`Lab::start_director`] uses for `config`: HTTP through the lab's VIP
    /// when the config has a TCP virtual server there, else an exchange with the
    /// config's first virtual server (HTTP for TCP, a datagram for UDP); HTTP through
    /// the VIP when the config cannot be read.
    pub fn for_config(config: &DirectorConfig, vip: SocketAddr) -> Self {
        let text = match config {
            DirectorConfig::Text(t) => Some(t.clone()),
            DirectorConfig::File(path) => std::fs::read_to_string(path).ok(),
        };
        let Some(file) = text.and_then(|t| crate::example_config::parse(&t).ok()) else {
            return Probe::Http(vip);
        };
        let services: Vec<(SocketAddr, bool)> = file
            .virtual_server
            .iter()
            .filter_map(|vs| {
                let addr = vs.address.parse().ok()?;
                Some((addr, vs.protocol.as_deref() == Some("udp")))
            })
            .collect();
        if services.contains(&(vip, false)) {
            return Probe::Http(vip);
        }
        match services.first() {
            Some(&(addr, true)) => Probe::Udp(addr),
            Some(&(addr, false)) => Probe::Http(addr),
            None => Probe::Http(vip),
        }
    }

    pub fn target(self) -> SocketAddr {
        match self {
            Probe::Http(a) | Probe::Udp(a) => a,
        }
    }

    /// One attempt from the client namespace thread: `Ok` when answered.
    pub(crate) fn once(self) -> Result<()> {
        match self {
            Probe::Http(vip) => {
                let quick = Timeouts {
                    connect: Duration::from_millis(500),
                    io: Duration::from_secs(2),
                };
                match http::get_from(&quick, None, vip, "/")? {
                    r if r.status == 200 => Ok(()),
                    r => bail!("status {}", r.status),
                }
            }
            Probe::Udp(vip) => {
                let once = udp::Retry {
                    per_try: Duration::from_millis(500),
                    tries: 1,
                };
                udp::ask(None, vip, b"probe", &once).map(drop)
            }
        }
    }
}

/// A namespace of the lab, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Director,
    Switch,
    /// Real server `n`, 1-based (`rs1` is `Server(1)`).
    Server(usize),
}

/// A running lab. See the module docs for naming and teardown.
#[derive(Debug)]
pub struct Lab {
    id: String,
    mode: Mode,
    addressing: Addressing,
    director_bin: PathBuf,
    /// Added to the environment of every director this lab starts.
    director_env: Vec<(String, std::ffi::OsString)>,
    // Teardown order is explicit in `Drop`: director, servers, then namespaces.
    director: Option<Director>,
    servers: Vec<ChildGuard>,
    xdp_links: Vec<std::os::fd::OwnedFd>,
    namespaces: Namespaces,
    tmp: Option<tempfile::TempDir>,
    server_bin: PathBuf,
}

static NEXT_LAB: AtomicUsize = AtomicUsize::new(0);
static SWEEP: Once = Once::new();

/// `<prefix><pid>-<n>`, unique among this process's labs. The first call also deletes
/// what the labs of dead processes left behind.
pub(crate) fn new_lab_id(prefix: &str) -> String {
    SWEEP.call_once(|| {
        for name in sweep_stale() {
            eprintln!("director-tests: deleted stale lab namespace {name}");
        }
    });
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        NEXT_LAB.fetch_add(1, Ordering::Relaxed)
    )
}

impl Lab {
    /// Builds the topology and starts the real servers (each answering `GET /` on its
    /// address in [`Lab::real_servers`]). The director is not started.
    pub fn build(spec: LabSpec) -> Result<Self> {
        let id = new_lab_id(cleanup::NAME_PREFIX);
        let tmp = tempfile::Builder::new()
            .prefix(&format!("director-{id}-"))
            .tempdir()
            .context("create lab temp dir")?;
        let built = topology::build(spec.mode, spec.servers, &id)
            .with_context(|| format!("build {} lab {id}", spec.mode))?;
        let mut lab = Self {
            id,
            mode: spec.mode,
            addressing: built.addressing,
            director_bin: spec.director_bin,
            director_env: Vec::new(),
            director: None,
            servers: Vec::new(),
            xdp_links: built.xdp_links,
            namespaces: built.namespaces,
            tmp: Some(tmp),
            server_bin: spec.server_bin.clone(),
        };
        lab.start_servers(&spec.server_bin)?;
        Ok(lab)
    }

    /// [`Lab::build`] of a NAT lab with three real servers; panics on failure.
    pub fn nat(server_bin: impl Into<PathBuf>) -> Self {
        Self::build(LabSpec::new(Mode::Nat, server_bin)).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`Lab::build`] of a DR lab with three real servers; panics on failure.
    pub fn dr(server_bin: impl Into<PathBuf>) -> Self {
        Self::build(LabSpec::new(Mode::Dr, server_bin)).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// `dl<pid>-<n>`, the prefix of all its namespace names.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn addressing(&self) -> &Addressing {
        &self.addressing
    }

    pub fn vip(&self) -> SocketAddr {
        self.addressing.vip.into()
    }

    /// The IPv6 VIP, `[2001:db8:10::10]:80`.
    pub fn vip6(&self) -> SocketAddr {
        self.addressing.vip6.into()
    }

    /// The UDP VIP, `192.0.2.10:53`.
    pub fn udp_vip(&self) -> SocketAddr {
        self.addressing.udp_vip.into()
    }

    /// The IPv6 UDP VIP, `[2001:db8:10::10]:53`.
    pub fn udp_vip6(&self) -> SocketAddr {
        self.addressing.udp_vip6.into()
    }

    pub fn client_addr6(&self) -> Ipv6Addr {
        self.addressing.client6
    }

    pub fn extra_client_addrs6(&self) -> &[Ipv6Addr] {
        &self.addressing.extra_clients6
    }

    /// The director's IPv6 address on the client side.
    pub fn director_addr6(&self) -> Ipv6Addr {
        self.addressing.director6
    }

    /// Real server `i`'s IPv6 HTTP address (same port as over IPv4).
    pub fn real_servers6(&self) -> &[SocketAddrV6] {
        &self.addressing.real_servers6
    }

    /// Real server `i`'s UDP address: port 5353 (NAT) or 53 (DR, bound to the VIP).
    pub fn udp_real_servers(&self) -> &[SocketAddrV4] {
        &self.addressing.udp_real_servers
    }

    pub fn udp_real_servers6(&self) -> &[SocketAddrV6] {
        &self.addressing.udp_real_servers6
    }

    /// Real server addresses of `family` as socket addresses, in server order: HTTP
    /// (`udp` false) or UDP. Handy for configs.
    pub fn real_server_addrs(&self, v6: bool, udp: bool) -> Vec<SocketAddr> {
        let a = &self.addressing;
        match (v6, udp) {
            (false, false) => a.real_servers.iter().map(|&s| s.into()).collect(),
            (false, true) => a.udp_real_servers.iter().map(|&s| s.into()).collect(),
            (true, false) => a.real_servers6.iter().map(|&s| s.into()).collect(),
            (true, true) => a.udp_real_servers6.iter().map(|&s| s.into()).collect(),
        }
    }

    pub fn client_addr(&self) -> Ipv4Addr {
        self.addressing.client
    }

    pub fn extra_client_addrs(&self) -> &[Ipv4Addr] {
        &self.addressing.extra_clients
    }

    /// The director's address on the client side (the client's next hop to the VIP).
    pub fn director_addr(&self) -> Ipv4Addr {
        self.addressing.director
    }

    /// Real server `i` is named `rs{i+1}`.
    pub fn real_servers(&self) -> &[SocketAddrV4] {
        &self.addressing.real_servers
    }

    pub fn server_names(&self) -> Vec<String> {
        (1..=self.real_servers().len())
            .map(|n| format!("rs{n}"))
            .collect()
    }

    pub fn namespaces(&self) -> &Namespaces {
        &self.namespaces
    }

    /// The namespace playing `role`. Panics on a server number out of range.
    pub fn ns(&self, role: Role) -> &NetNs {
        let ns = &self.namespaces;
        match role {
            Role::Client => &ns.client,
            Role::Director => &ns.dir,
            Role::Switch => &ns.sw,
            Role::Server(n) => ns
                .rs
                .get(n.wrapping_sub(1))
                .unwrap_or_else(|| panic!("no real server {n} (lab has {})", ns.rs.len())),
        }
    }

    /// Runs `f` on a thread inside `role`'s namespace: sockets it opens live in the lab.
    pub fn in_ns<R: Send>(&self, role: Role, f: impl FnOnce() -> R + Send) -> R {
        self.ns(role).run(f)
    }

    /// [`Lab::in_ns`] for the client.
    pub fn in_client<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.in_ns(Role::Client, f)
    }

    /// Panics unless `tally` is exactly `n` answers and no failure, from this lab's
    /// servers only and from every one of them; `what` names the traffic.
    pub fn assert_answered_by_all(&self, tally: &Tally, n: usize, what: &str) {
        assert_eq!(
            tally.failures, 0,
            "{what}: {} of {n} failed, first errors: {:#?}",
            tally.failures, tally.errors
        );
        assert_eq!(tally.succeeded(), n, "{what}: {:?}", tally.by_server);
        let names = self.server_names();
        for (name, count) in &tally.by_server {
            assert!(
                names.contains(name),
                "{what}: answer from unknown server {name} ({count}×)"
            );
        }
        for name in &names {
            assert!(
                tally.count(name) > 0,
                "{what}: {name} never answered: {:?}",
                tally.by_server
            );
        }
    }

    /// `n` keep-alive connections from the client to the VIP, each past its first
    /// `GET /` (which names its real server, `KeepAlive::server`).
    pub fn keep_alive(&self, n: usize) -> Vec<http::KeepAlive> {
        let vip = self.vip();
        self.in_client(|| {
            (0..n)
                .map(|i| {
                    http::KeepAlive::open(&Timeouts::default(), None, vip)
                        .unwrap_or_else(|e| panic!("keep-alive connection {i}: {e:#}"))
                })
                .collect()
        })
    }

    /// `n` new-connection `GET /` requests from the client to the VIP, sources cycling
    /// through `sources` (empty: the client's primary address).
    pub fn get_many(&self, n: usize, sources: &[Ipv4Addr]) -> Tally {
        let vip = self.vip();
        self.in_client(|| http::get_many(n, sources, vip, "/"))
    }

    /// `n` new-connection `GET /` requests from the client to `dst` (any VIP, either
    /// family), sources cycling through `sources` (empty: the client's primary address).
    pub fn get_many_to(&self, n: usize, sources: &[IpAddr], dst: SocketAddr) -> Tally {
        self.in_client(|| http::get_many_from(n, sources, dst, "/"))
    }

    /// [`Lab::get_many`] through the IPv6 VIP.
    pub fn get_many6(&self, n: usize, sources: &[Ipv6Addr]) -> Tally {
        let sources: Vec<IpAddr> = sources.iter().copied().map(IpAddr::V6).collect();
        self.get_many_to(n, &sources, self.vip6())
    }

    /// `n` UDP exchanges from the client (address `src`, or the primary one) with
    /// `dst`, source ports `first_port`, `first_port + 1`, …: see [`udp::many`].
    pub fn udp_many(
        &self,
        n: usize,
        src: Option<IpAddr>,
        first_port: u16,
        dst: SocketAddr,
    ) -> udp::Batch {
        self.in_client(|| udp::many(n, src, first_port, dst, &udp::Retry::default()))
    }

    /// Starts `wrk` in the client namespace: `threads` threads keeping `connections`
    /// keep-alive connections busy with `GET /` on the VIP for `duration` (whole
    /// seconds, at most 60). Not waited for: see [`Wrk::wait`]; dropped unwaited, it is
    /// killed by pid.
    pub fn start_wrk(&self, threads: u32, connections: u32, duration: Duration) -> Wrk {
        let (ns, dir) = (&self.namespaces.client, self.temp_dir());
        Wrk::on_vip(ns, dir, self.vip(), threads, connections, duration)
    }

    /// Puts the VIP on the director namespace's `lo` (director must work either way).
    pub fn add_vip_on_director(&self) {
        let vip = format!("{}/32", self.addressing.vip.ip());
        self.namespaces
            .dir
            .ip(&["addr", "add", &vip, "dev", "lo"])
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// The lab's scratch directory (configs, logs).
    /// Where this lab's director pins its maps and links (on the host's bpffs). The
    /// pins outlive a stopped or killed director, so the next [`Lab::start_director`]
    /// adopts them; they are removed only when the lab drops.
    pub fn pin_dir(&self) -> PathBuf {
        PathBuf::from("/sys/fs/bpf").join(&self.id)
    }

    /// The lab's scratch directory (configs, logs).
    pub fn temp_dir(&self) -> &Path {
        self.tmp
            .as_ref()
            .expect("temp dir lives as long as the lab")
            .path()
    }

    /// Starts the director (config text or file) in the `dir` namespace and waits until
    /// an exchange through a virtual server succeeds (see [`Probe::for_config`]: `GET /`
    /// through the VIP for the usual configs). Panics with the director's log tail if
    /// it does not get there within [`DIRECTOR_READY_TIMEOUT`].
    pub fn start_director(&mut self, config: impl Into<DirectorConfig>) {
        if let Err(e) = self.try_start_director(config) {
            panic!("{e:#}");
        }
    }

    /// Sets `key` in the environment of the directors started from now on.
    pub fn set_director_env(&mut self, key: &str, value: impl Into<std::ffi::OsString>) {
        self.director_env.retain(|(k, _)| k != key);
        self.director_env.push((key.to_owned(), value.into()));
    }

    /// [`Lab::start_director`] returning errors (the log tail is in the message).
    pub fn try_start_director(&mut self, config: impl Into<DirectorConfig>) -> Result<()> {
        let config = config.into();
        let probe = Probe::for_config(&config, self.vip());
        self.try_start_director_with(config, probe)
    }

    /// [`Lab::start_director`] with an explicit readiness probe.
    pub fn start_director_with(&mut self, config: impl Into<DirectorConfig>, probe: Probe) {
        if let Err(e) = self.try_start_director_with(config, probe) {
            panic!("{e:#}");
        }
    }

    /// [`Lab::start_director_with`] returning errors.
    pub fn try_start_director_with(
        &mut self,
        config: impl Into<DirectorConfig>,
        probe: Probe,
    ) -> Result<()> {
        crate::paths::check_director_bin(&self.director_bin)?;
        if let Some(mut old) = self.director.take() {
            let _ = old.stop();
        }
        let dir = self.temp_dir().to_path_buf();
        let pins = self.pin_dir();
        self.director = Some(Director::spawn_with_env(
            &self.director_bin,
            &self.namespaces.dir,
            config.into(),
            &dir,
            &pins,
            &self.director_env,
        )?);
        let deadline = Instant::now() + DIRECTOR_READY_TIMEOUT;
        self.wait_for(probe, DIRECTOR_READY_TIMEOUT)?;
        // A pinned datapath of a previous run forwards before the new director is up:
        // ready means its control socket answers too.
        self.wait_for_control(deadline.saturating_duration_since(Instant::now()))
    }

    /// Polls `director status --socket …` until it succeeds. Fails early if the
    /// director exits; errors carry the director's log tail.
    pub fn wait_for_control(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(d) = self.director.as_mut() else {
                bail!("no director started");
            };
            if let Some(status) = d.try_wait() {
                bail!(
                    "director exited early ({status}); log tail:\n{}",
                    d.log_tail(LOG_TAIL_LINES)
                );
            }
            let out = Command::new(&self.director_bin)
                .arg("status")
                .arg("--socket")
                .arg(d.socket())
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("run {} status", self.director_bin.display()))?;
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "director's control socket {} not answering within {timeout:?} ({}: {}); \
                     director log tail:\n{}",
                    d.socket().display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim(),
                    d.log_tail(LOG_TAIL_LINES)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls `GET /` through the VIP from the client until it succeeds. Fails early if
    /// the director exits; errors carry the director's log tail.
    pub fn wait_for_vip(&mut self, timeout: Duration) -> Result<()> {
        self.wait_for(Probe::Http(self.vip()), timeout)
    }

    /// Runs `probe` from the client until it succeeds. Fails early if the director
    /// exits; errors carry the director's log tail.
    pub fn wait_for(&mut self, probe: Probe, timeout: Duration) -> Result<()> {
        let vip = probe.target();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(d) = self.director.as_mut()
                && let Some(status) = d.try_wait()
            {
                bail!(
                    "director exited early ({status}); log tail:\n{}",
                    d.log_tail(LOG_TAIL_LINES)
                );
            }
            let last = match self.in_client(|| probe.once()) {
                Ok(()) => return Ok(()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "no answer through VIP {vip} within {timeout:?} (last: {last}); director log tail:\n{}",
                    self.director_log_tail(LOG_TAIL_LINES)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the director (SIGTERM, 5 s, SIGKILL) and returns how it exited.
    pub fn stop_director(&mut self) -> Option<ExitStatus> {
        let mut d = self.director.take()?;
        Some(d.stop().unwrap_or_else(|e| panic!("{e:#}")))
    }

    /// SIGKILLs the director by pid (a crash: it cannot clean anything up) and returns
    /// how it exited. Its pinned datapath stays, as after [`Lab::stop_director`].
    pub fn kill_director(&mut self) -> Option<ExitStatus> {
        let mut d = self.director.take()?;
        Some(d.kill().unwrap_or_else(|e| panic!("{e:#}")))
    }

    /// The `director` binary this lab runs (also the control client: `director status
    /// --socket …`).
    pub fn director_bin(&self) -> &Path {
        &self.director_bin
    }

    /// Runs `bin` from the next [`Lab::start_director`] on (an upgrade test starts
    /// an older build first).
    pub fn use_director_bin(&mut self, bin: impl Into<PathBuf>) {
        self.director_bin = bin.into();
    }

    pub fn director(&self) -> Option<&Director> {
        self.director.as_ref()
    }

    /// The last `lines` lines of the director's output ("" if it never started).
    pub fn director_log_tail(&self, lines: usize) -> String {
        match &self.director {
            Some(d) => d.log_tail(lines),
            None => director::log_tail(&self.temp_dir().join("director.log"), lines),
        }
    }

    /// Pids of the lab's running processes (servers, director).
    pub fn pids(&self) -> Vec<u32> {
        self.servers
            .iter()
            .map(ChildGuard::pid)
            .chain(self.director.as_ref().map(Director::pid))
            .collect()
    }

    fn start_servers(&mut self, server_bin: &Path) -> Result<()> {
        self.server_bin = server_bin.to_path_buf();
        for i in 0..self.addressing.real_servers.len() {
            let guard = self.spawn_server(i)?;
            self.servers.push(guard);
        }
        for i in 0..self.servers.len() {
            self.wait_for_server(i)?;
        }
        Ok(())
    }

    /// Starts the lab server for real server `i` (0-based) in its namespace, its output
    /// appended to `rs{i+1}.log`.
    fn spawn_server(&self, i: usize) -> Result<ChildGuard> {
        let name = format!("rs{}", i + 1);
        let addr = self.addressing.real_servers[i];
        // HTTP: dual-stack wildcard. UDP: dual-stack wildcard in NAT; in DR the VIPs
        // themselves, so that answers leave from the VIP (see the topology docs).
        let a = &self.addressing;
        let udp: Vec<SocketAddr> = match self.mode {
            Mode::Nat => vec![(Ipv6Addr::UNSPECIFIED, NAT_UDP_PORT).into()],
            Mode::Dr => vec![a.udp_vip.into(), a.udp_vip6.into()],
        };
        let serve = servers::Serve {
            name: &name,
            listen: (Ipv6Addr::UNSPECIFIED, addr.port()).into(),
            udp: &udp,
            stream: &[],
        };
        servers::spawn(
            &self.server_bin,
            &self.namespaces.rs[i],
            self.temp_dir(),
            &serve,
        )
    }

    /// The index of real server `n` (1-based, `rs{n}`); panics when out of range.
    fn server_index(&self, n: usize) -> usize {
        assert!(
            (1..=self.servers.len()).contains(&n),
            "no real server {n} (lab has {})",
            self.servers.len()
        );
        n - 1
    }

    /// The pid of real server `n`'s (1-based) HTTP server process.
    pub fn server_pid(&self, n: usize) -> u32 {
        self.servers[self.server_index(n)].pid()
    }

    /// SIGKILLs real server `n`'s (1-based) HTTP server process by pid and reaps it: a
    /// crash. Its namespace and address stay, so connections to it are refused until
    /// [`Lab::restart_server`].
    pub fn kill_server(&mut self, n: usize) -> ExitStatus {
        let i = self.server_index(n);
        self.servers[i]
            .kill()
            .unwrap_or_else(|e| panic!("kill rs{n}: {e:#}"))
    }

    /// Starts real server `n` (1-based) again, same name and address, after
    /// [`Lab::kill_server`] (a running one is killed first), and waits until it
    /// accepts connections.
    pub fn restart_server(&mut self, n: usize) -> Result<()> {
        let i = self.server_index(n);
        self.servers[i].kill()?;
        self.servers[i] = self.spawn_server(i)?;
        self.wait_for_server(i)
    }

    /// Waits until real server `i` accepts connections (checked inside its namespace).
    fn wait_for_server(&mut self, i: usize) -> Result<()> {
        let port = self.addressing.real_servers[i].port();
        let dir = self
            .tmp
            .as_ref()
            .expect("temp dir lives as long as the lab")
            .path();
        servers::wait_listening(&self.namespaces.rs[i], port, &mut self.servers[i], dir)
    }

    /// Runs `program args…` in `role`'s namespace (via `ip netns exec`) to completion.
    pub fn exec(&self, role: Role, program: &str, args: &[&str]) -> Result<String> {
        self.ns(role).exec(program, args)
    }

    /// A [`Command`] that runs `program` inside `role`'s namespace.
    pub fn command(&self, role: Role, program: &str) -> Command {
        self.ns(role).command(program)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if self.director.is_some() {
                eprintln!(
                    "---- director log tail (lab {}) ----\n{}\n---- end of director log ----",
                    self.id,
                    self.director_log_tail(LOG_TAIL_LINES)
                );
            }
            if let Some(tmp) = self.tmp.take() {
                eprintln!("lab {} files kept in {}", self.id, tmp.keep().display());
            }
        }
        drop(self.director.take());
        self.servers.clear();
        self.xdp_links.clear();
        // The director leaves its datapath pinned when it stops: remove it.
        let _ = std::fs::remove_dir_all(self.pin_dir());
        // `namespaces` (deleted by their guards) and `tmp` drop after this.
    }
}
