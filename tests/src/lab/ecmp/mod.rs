//! N active directors behind a router that spreads flows over them with ECMP: a
//! client, a router running bird2 (eBGP with every director, BFD, the routes of a VIP
//! merged into one multipath kernel route), directors each running `director run`
//! in DR mode with `announce_table` and a bird2 of its own exporting that table
//! ([`bird`]), state sync between all of them, and real servers (wiring in
//! [`wiring`]). The router has no route for the VIPs but what BGP gives it.
//!
//! Namespaces are `ec-<pid>-<n>-<role>` (roles `client`, `router`, `dir1`…, `rs1`…,
//! `sw`); director N pins under `/sys/fs/bpf/ec-<pid>-<n>-dirN` and keeps its files
//! (config, logs, control sockets, bird's files) in `<tmp>/dirN/`. Every director's
//! `[sync]` lists every other one, those not started yet included, so that one can
//! join later. Drop stops the birds, the directors and the servers by pid, removes
//! the pin dirs and deletes the namespaces; while unwinding from a panic it first
//! prints the log tails and keeps the temp dir.
//!
//! As with [`crate::lab::Lab`], build, use and drop an ECMP lab on one thread.

pub mod bird;
pub mod wiring;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use self::bird::Bird;
use super::director::{Director, log_tail, ready, write_sync_key};
use super::netns::NetNs;
use super::process::ChildGuard;
use super::{cleanup, servers};
use crate::config::{Config, VirtualServer};
use crate::lab::Mode;

/// The routing table director announces its VIPs in, which each bird2 exports.
pub const ANNOUNCE_TABLE: u32 = 100;
/// The long-lived connection service (`director-lab-server --stream`), `mh` or
/// `wrr` over every real server, on the VIP and on every real server.
pub const STREAM_VIP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 10), 9000);
/// UDP through the same VIP (the lab server answers with its name).
pub const UDP_VIP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 10), 53);
/// The same stream service behind a virtual server of its own with one real server
/// (real server 1), whose health check passes while [`EcmpLab::set_single_up`]
/// says so.
pub const SINGLE_VIP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 20), 9000);
/// The single virtual server's check: every 200 ms, down after 2 failures, each
/// bounded by 100 ms.
pub const SINGLE_CHECK: (Duration, u32, Duration) =
    (Duration::from_millis(200), 2, Duration::from_millis(100));
pub const SYNC_PORT: u16 = 8848;
/// A director waits this long for a sync peer that does not answer (one that has
/// died, or has not joined yet).
pub const READY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a start may take until every started director's route is on the router.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

const LOG_TAIL_LINES: usize = 30;
const HTTP_PORT: u16 = 80;

/// What to build.
#[derive(Debug, Clone)]
pub struct EcmpSpec {
    /// Director namespaces wired (and listed in every `[sync]`).
    pub directors: usize,
    /// Of those, how many [`EcmpLab::start`] starts (the first ones).
    pub started: usize,
    /// Real servers wired; the stream service starts with the first `configured`.
    pub servers: usize,
    pub configured: usize,
    pub sync: bool,
    /// The stream virtual server's scheduler (`mh` hashes the source port too).
    pub scheduler: &'static str,
    pub server_bin: PathBuf,
    pub director_bin: PathBuf,
}

impl EcmpSpec {
    /// Four directors wired, three started; three real servers; sync; `mh`.
    pub fn new(server_bin: impl Into<PathBuf>) -> Self {
        Self {
            directors: 4,
            started: 3,
            servers: 3,
            configured: 3,
            sync: true,
            scheduler: "mh",
            server_bin: server_bin.into(),
            director_bin: crate::paths::director_bin(),
        }
    }
}

/// One director host: its processes and files.
#[derive(Debug)]
struct Node {
    dir: PathBuf,
    director: Option<Director>,
    bird: Option<Bird>,
}

/// A running ECMP lab. See the module docs.
#[derive(Debug)]
pub struct EcmpLab {
    id: String,
    spec: EcmpSpec,
    nodes: Vec<Node>,
    router: Option<Bird>,
    servers: Vec<ChildGuard>,
    xdp_links: Vec<OwnedFd>,
    namespaces: wiring::Namespaces,
    /// The real servers of the stream service in the directors' config.
    configured: Vec<usize>,
    tmp: Option<tempfile::TempDir>,
}

impl EcmpLab {
    /// Wires the lab, starts the real servers and the router's bird2; no director.
    pub fn build(spec: EcmpSpec) -> Result<Self> {
        crate::paths::check_director_bin(&spec.director_bin)?;
        let id = super::new_lab_id(cleanup::ECMP_PREFIX);
        let tmp = tempfile::Builder::new()
            .prefix(&format!("director-{id}-"))
            .tempdir()
            .context("create lab temp dir")?;
        let (namespaces, xdp_links) = wiring::build(
            &id,
            spec.directors,
            spec.servers,
            &[*STREAM_VIP.ip(), *SINGLE_VIP.ip()],
        )
        .with_context(|| format!("build ECMP lab {id}"))?;
        let nodes = (1..=spec.directors)
            .map(|n| {
                let dir = tmp.path().join(format!("dir{n}"));
                std::fs::create_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
                Ok(Node {
                    dir,
                    director: None,
                    bird: None,
                })
            })
            .collect::<Result<_>>()?;
        let configured = (1..=spec.configured).collect();
        let mut lab = Self {
            id,
            spec,
            nodes,
            router: None,
            servers: Vec::new(),
            xdp_links,
            namespaces,
            configured,
            tmp: Some(tmp),
        };
        write_sync_key(&lab.sync_key_path())?;
        lab.set_single_up(true);
        lab.start_servers()?;
        let router_dir = lab.temp_dir().join("router");
        std::fs::create_dir(&router_dir)?;
        let uplinks: Vec<Ipv4Addr> = (1..=lab.spec.directors).map(wiring::uplink).collect();
        let conf = bird::router_config(wiring::ROUTER, "u0", &uplinks);
        lab.router = Some(Bird::spawn(&lab.namespaces.router, &conf, &router_dir)?);
        Ok(lab)
    }

    /// [`EcmpLab::build`], then the first `started` directors (and their bird2)
    /// started and ready, and the router's route for both VIPs naming exactly them.
    /// Panics with the logs on failure.
    pub fn start(spec: EcmpSpec) -> Self {
        let mut lab = Self::build(spec).unwrap_or_else(|e| panic!("{e:#}"));
        let started: BTreeSet<usize> = (1..=lab.spec.started).collect();
        for &n in &started {
            lab.start_director(n);
        }
        for &n in &started {
            lab.wait_ready(n, CONVERGE_TIMEOUT)
                .unwrap_or_else(|e| panic!("{e:#}"));
        }
        for vip in [STREAM_VIP, SINGLE_VIP] {
            lab.wait_route(*vip.ip(), &started, CONVERGE_TIMEOUT)
                .unwrap_or_else(|e| panic!("{e:#}"));
        }
        lab
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn client_ns(&self) -> &NetNs {
        &self.namespaces.client
    }

    pub fn director_ns(&self, n: usize) -> &NetNs {
        &self.namespaces.dirs[n - 1]
    }

    fn node(&self, n: usize) -> &Node {
        &self.nodes[n - 1]
    }

    fn temp_dir(&self) -> &Path {
        self.tmp
            .as_ref()
            .expect("temp dir lives as long as the lab")
            .path()
    }

    /// Where director `n` pins its datapath.
    pub fn pin_dir(&self, n: usize) -> PathBuf {
        PathBuf::from("/sys/fs/bpf").join(self.director_ns(n).name())
    }

    fn sync_key_path(&self) -> PathBuf {
        self.temp_dir().join("sync.key")
    }

    fn single_flag(&self) -> PathBuf {
        self.temp_dir().join("single-up")
    }

    /// Whether the single virtual server's health check passes (on every director).
    pub fn set_single_up(&self, up: bool) {
        let flag = self.single_flag();
        let done = if up {
            std::fs::write(&flag, b"")
        } else {
            std::fs::remove_file(&flag)
        };
        done.unwrap_or_else(|e| panic!("{}: {e}", flag.display()));
    }

    /// Director `n`'s config: DR, the stream service (TCP and UDP) over every real
    /// server and the single one over real server 1, each checked, `announce_table`,
    /// and `[sync]` toward every other director when the spec says so.
    pub fn director_config(&self, n: usize) -> String {
        let reals = |port: u16| -> Vec<SocketAddr> {
            self.configured
                .iter()
                .map(|&m| SocketAddrV4::new(wiring::real_server(m), port).into())
                .collect()
        };
        let scheduled = |vs: VirtualServer| match self.spec.scheduler {
            "mh" => vs.scheduler("mh").set("hash_source_port", true),
            s => vs.scheduler(s),
        };
        let (interval, fall, timeout) = SINGLE_CHECK;
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let flag = self.single_flag().display().to_string();
        let mut text = Config::lab(Mode::Dr)
            .set("interfaces", vec!["eth0", "eth1"])
            .set("announce_table", i64::from(ANNOUNCE_TABLE))
            .virtual_server(
                scheduled(VirtualServer::tcp("stream", STREAM_VIP.into()))
                    .health_check("kind", "tcp")
                    .health_check("interval", "1s")
                    .health_check("timeout", "500ms")
                    // Longer than a test: a drained server keeps its connections.
                    .set("drain_timeout", "300s")
                    .real_servers(reals(STREAM_VIP.port())),
            )
            .virtual_server(
                scheduled(VirtualServer::udp("dns", UDP_VIP.into()))
                    .real_servers(reals(UDP_VIP.port())),
            )
            .virtual_server(
                VirtualServer::tcp("single", SINGLE_VIP.into())
                    .scheduler("mh")
                    .health_check("kind", "exec")
                    .health_check("command", vec!["test", "-e", flag.as_str()])
                    .health_check("interval", ms(interval))
                    .health_check("timeout", ms(timeout))
                    .health_check("rise", 1)
                    .health_check("fall", i64::from(fall))
                    .real_servers([SocketAddrV4::new(wiring::real_server(1), SINGLE_VIP.port())]),
            )
            .to_toml();
        if self.spec.sync {
            let addr = |m: usize| SocketAddrV4::new(wiring::server_side(m), SYNC_PORT);
            let peers: Vec<String> = (1..=self.spec.directors)
                .filter(|&m| m != n)
                .map(|m| format!("\"{}\"", addr(m)))
                .collect();
            text += &format!(
                "\n[sync]\nlisten = \"{}\"\npeers = [{}]\nkey_file = \"{}\"\nready_timeout = \"{}ms\"\n",
                addr(n),
                peers.join(", "),
                self.sync_key_path().display(),
                READY_TIMEOUT.as_millis()
            );
        }
        text
    }

    /// Starts director `n` (adopting its pinned datapath if one is left) and its
    /// bird2 unless that runs; returns without waiting.
    pub fn start_director(&mut self, n: usize) {
        let config = self.director_config(n);
        let pins = self.pin_dir(n);
        let ns = &self.namespaces.dirs[n - 1];
        let bird_conf =
            bird::director_config(wiring::uplink(n), wiring::ROUTER, "eth0", ANNOUNCE_TABLE);
        let node = &mut self.nodes[n - 1];
        let director =
            Director::spawn(&self.spec.director_bin, ns, config.into(), &node.dir, &pins)
                .unwrap_or_else(|e| panic!("start director {n}: {e:#}"));
        node.director = Some(director);
        if node.bird.is_none() {
            let bird = Bird::spawn(ns, &bird_conf, &node.dir)
                .unwrap_or_else(|e| panic!("start bird of director {n}: {e:#}"));
            node.bird = Some(bird);
        }
    }

    fn socket(&self, n: usize) -> PathBuf {
        self.node(n).dir.join("director.sock")
    }

    /// One `director ready` of director `n`: `Err` with what it says while not ready.
    pub fn ready(&self, n: usize) -> Result<(), String> {
        ready(&self.spec.director_bin, &self.socket(n))
    }

    /// Waits until director `n` is ready; fails at once if it exits.
    pub fn wait_ready(&mut self, n: usize, timeout: Duration) -> Result<Duration> {
        let bin = self.spec.director_bin.clone();
        self.nodes[n - 1]
            .director
            .as_mut()
            .with_context(|| format!("director {n} is not running"))?
            .wait_ready(&bin, &format!("director {n}"), timeout)
    }

    /// `director <args> --socket <n's> --json`, parsed.
    pub fn ask(&self, n: usize, args: &[&str]) -> Result<serde_json::Value> {
        let out = Command::new(&self.spec.director_bin)
            .args(args)
            .arg("--socket")
            .arg(self.socket(n))
            .arg("--json")
            .stdin(Stdio::null())
            .output()
            .context("run director")?;
        if !out.status.success() {
            bail!(
                "director {} of director {n}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).context("parse director's JSON")
    }

    /// How many connection entries director `n` holds.
    pub fn conns(&self, n: usize) -> Result<u64> {
        let v = self.ask(n, &["conns", "--limit", "0"])?;
        v["total"].as_u64().context("conns without a total")
    }

    /// The VIPs director `n`'s status says it announces.
    pub fn announced(&self, n: usize) -> Result<Vec<String>> {
        let v = self.ask(n, &["status"])?;
        let list = v["announce"]["announced"]
            .as_array()
            .with_context(|| format!("status without announce: {v}"))?;
        Ok(list
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect())
    }

    /// The directors the router's kernel route for `vip` names as next hops (none
    /// when it has no route).
    pub fn route(&self, vip: Ipv4Addr) -> Result<BTreeSet<usize>> {
        let out = self
            .namespaces
            .router
            .ip(&["-j", "route", "show", &vip.to_string()])?;
        let routes: serde_json::Value =
            serde_json::from_str(&out).with_context(|| format!("parse ip -j route: {out}"))?;
        let mut dirs = BTreeSet::new();
        for r in routes.as_array().into_iter().flatten() {
            let hops = match r["nexthops"].as_array() {
                Some(hops) => hops.clone(),
                None => vec![r.clone()],
            };
            for h in hops {
                let gw: Ipv4Addr = h["gateway"]
                    .as_str()
                    .and_then(|g| g.parse().ok())
                    .with_context(|| format!("a route to {vip} without a gateway: {r}"))?;
                dirs.insert(
                    wiring::director_of(gw)
                        .with_context(|| format!("a next hop {gw} that is no director"))?,
                );
            }
        }
        Ok(dirs)
    }

    /// Waits until the router's route for `vip` names exactly `want`; how long that
    /// took.
    pub fn wait_route(
        &self,
        vip: Ipv4Addr,
        want: &BTreeSet<usize>,
        timeout: Duration,
    ) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let have = self.route(vip)?;
            if &have == want {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= timeout {
                bail!(
                    "the router's route for {vip} names directors {have:?}, not {want:?}, \
                     after {timeout:?}; router's bird:\n{}",
                    self.router
                        .as_ref()
                        .map(|b| b.log_tail(15))
                        .unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Director `n` leaves: its BGP session is disabled (`birdc disable`); the
    /// director keeps running.
    pub fn leave(&self, n: usize) {
        let bird = self.node(n).bird.as_ref().expect("its bird runs");
        bird.birdc(&["disable", "uplink"])
            .unwrap_or_else(|e| panic!("birdc disable on director {n}: {e:#}"));
    }

    /// Director `n`'s host dies: its links go down, then its director and its bird2
    /// are SIGKILLed (by pid); its pins stay.
    pub fn die(&mut self, n: usize) {
        let lines = ["link set dev eth0 down", "link set dev eth1 down"].map(String::from);
        self.namespaces.dirs[n - 1]
            .ip_batch(&lines)
            .unwrap_or_else(|e| panic!("links of director {n} down: {e:#}"));
        let node = &mut self.nodes[n - 1];
        if let Some(mut d) = node.director.take() {
            d.kill()
                .unwrap_or_else(|e| panic!("kill director {n}: {e:#}"));
        }
        if let Some(mut b) = node.bird.take() {
            b.kill()
                .unwrap_or_else(|e| panic!("kill bird of director {n}: {e:#}"));
        }
    }

    /// Gives the stream service real servers `servers` (1-based) on every running
    /// director: the config rewritten, then `director reload`.
    pub fn set_servers(&mut self, servers: &[usize]) {
        self.set_servers_on(&self.running(), servers);
    }

    /// The same on `directors` only, as a rolling reload reaches one director after
    /// another (a director started later gets `servers` too).
    pub fn set_servers_on(&mut self, directors: &[usize], servers: &[usize]) {
        self.configured = servers.to_vec();
        for &n in directors {
            let config = self.director_config(n);
            let node = self.node(n);
            let path = node
                .director
                .as_ref()
                .expect("running")
                .config_path()
                .to_owned();
            std::fs::write(&path, config).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            self.ask(n, &["reload"])
                .unwrap_or_else(|e| panic!("reload director {n}: {e:#}"));
        }
    }

    /// `director drain stream <real server m>` on every running director.
    pub fn drain(&self, m: usize) {
        let server = SocketAddrV4::new(wiring::real_server(m), STREAM_VIP.port()).to_string();
        for n in self.running() {
            self.ask(n, &["drain", "stream", &server])
                .unwrap_or_else(|e| panic!("drain on director {n}: {e:#}"));
        }
    }

    /// The directors whose process runs.
    fn running(&self) -> Vec<usize> {
        (1..=self.nodes.len())
            .filter(|&n| self.node(n).director.is_some())
            .collect()
    }

    /// Stops director `n` (SIGTERM: its datapath stays pinned and forwarding, its
    /// routes stay announced); its bird2 keeps running.
    pub fn stop_director(&mut self, n: usize) {
        if let Some(mut d) = self.nodes[n - 1].director.take() {
            d.stop()
                .unwrap_or_else(|e| panic!("stop director {n}: {e:#}"));
        }
    }

    /// `director teardown` in director `n`'s namespace; what it printed.
    pub fn teardown(&self, n: usize) -> String {
        let out = self
            .director_ns(n)
            .nsenter(&self.spec.director_bin)
            .arg("teardown")
            .arg("--pin-dir")
            .arg(self.pin_dir(n))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run director teardown: {e}"));
        assert!(
            out.status.success(),
            "director teardown of director {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Pids of the lab's processes.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.servers.iter().map(ChildGuard::pid).collect();
        pids.extend(self.router.as_ref().map(Bird::pid));
        for node in &self.nodes {
            pids.extend(node.director.as_ref().map(Director::pid));
            pids.extend(node.bird.as_ref().map(Bird::pid));
        }
        pids
    }

    fn log_tails(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for program in ["director", "bird"] {
                let log = node.dir.join(format!("{program}.log"));
                if log.exists() {
                    out += &format!(
                        "---- {program} of director {} ----\n{}\n",
                        i + 1,
                        log_tail(&log, LOG_TAIL_LINES)
                    );
                }
            }
        }
        if let Some(r) = &self.router {
            out += &format!("---- router's bird ----\n{}\n", r.log_tail(LOG_TAIL_LINES));
        }
        out
    }

    fn start_servers(&mut self) -> Result<()> {
        let any = |port: u16| -> SocketAddr { (Ipv6Addr::UNSPECIFIED, port).into() };
        let udp = [SocketAddr::from(UDP_VIP)];
        let stream = [any(STREAM_VIP.port())];
        let dir = self.temp_dir().to_path_buf();
        for (i, ns) in self.namespaces.rs.iter().enumerate() {
            let name = format!("rs{}", i + 1);
            let serve = servers::Serve {
                name: &name,
                listen: any(HTTP_PORT),
                udp: &udp,
                stream: &stream,
            };
            self.servers
                .push(servers::spawn(&self.spec.server_bin, ns, &dir, &serve)?);
        }
        for (ns, server) in self.namespaces.rs.iter().zip(&mut self.servers) {
            servers::wait_listening(ns, STREAM_VIP.port(), server, &dir)?;
        }
        Ok(())
    }
}

impl Drop for EcmpLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- ECMP lab {} logs ----\n{}---- end of ECMP lab logs ----",
                self.id,
                self.log_tails()
            );
            if let Some(tmp) = self.tmp.take() {
                eprintln!(
                    "ECMP lab {} files kept in {}",
                    self.id,
                    tmp.keep().display()
                );
            }
        }
        for node in &mut self.nodes {
            drop(node.bird.take());
        }
        drop(self.router.take());
        for node in &mut self.nodes {
            drop(node.director.take());
        }
        self.servers.clear();
        self.xdp_links.clear();
        for n in 1..=self.nodes.len() {
            let _ = std::fs::remove_dir_all(self.pin_dir(n));
        }
        // `namespaces` (deleted by their guards) and `tmp` drop after this.
    }
}
