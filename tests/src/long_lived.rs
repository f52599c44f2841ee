//! Long-lived flows through a VIP, watched across a failover: TCP connections that
//! exchange a small message every [`Spec::interval`] with a `director-lab-server
//! --stream` (server push, or request/response echo), and UDP flows that keep one
//! source port and expect every answer from the same real server.
//!
//! Each flow runs on a thread of its own inside the client namespace until
//! [`Flows::stop`], and is *broken* when its connection is reset or closed, when it
//! gets wrong data (an out-of-order count, a UDP answer from another real server), or
//! when no data arrives for [`Spec::stall_limit`]. A flow that survives a takeover
//! goes silent for a while and then carries on: its longest silence says how long.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::http::{self, Timeouts};
use crate::lab::{NetNs, netns};
use crate::udp;

/// How long a flow may go without data before it counts as broken. Not 3 s: TCP
/// sends a lost segment again after 0.2, 0.6, 1.4, 3.0, 6.2, 12.6 s (the minimum RTO,
/// doubled each time), so a connection that survives a VRRP takeover of about 3.6 s
/// (`advert_int 1`) resumes at its 6.2-s retransmission. 10 s tells such a connection
/// from a dead one and leaves room for a slow takeover on a busy machine.
pub const STALL_LIMIT: Duration = Duration::from_secs(10);

/// A silence longer than this counts as a hiccup in [`Tally::recovered`].
const HICCUP: Duration = Duration::from_millis(500);

/// How long a worker blocks at most, so that [`Flows::stop`] is quick.
const POLL: Duration = Duration::from_millis(200);

/// How long [`Flows::open`] waits for every flow's first answer.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// What a flow does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The server sends a count every interval; the client only reads.
    Push,
    /// The client sends a count every interval and waits for it to come back.
    Echo,
    /// The client sends a datagram every interval from one source port; every answer
    /// must come from the real server that answered first.
    Udp,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Push => "push",
            Kind::Echo => "echo",
            Kind::Udp => "udp",
        }
    }
}

/// Which flows to open.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The virtual service: a `--stream` one for TCP kinds, a UDP one for [`Kind::Udp`].
    pub dst: SocketAddr,
    /// How many flows.
    pub count: usize,
    /// Flow `i` is `kinds[i % kinds.len()]`.
    pub kinds: Vec<Kind>,
    /// Flow `i` binds to `sources[i % sources.len()]` (empty: the primary address).
    pub sources: Vec<IpAddr>,
    pub interval: Duration,
    pub stall_limit: Duration,
}

impl Spec {
    /// `count` TCP flows to `dst`, half push and half echo, one message per 100 ms.
    pub fn tcp(dst: SocketAddr, count: usize) -> Self {
        Self {
            dst,
            count,
            kinds: vec![Kind::Push, Kind::Echo],
            sources: Vec::new(),
            interval: Duration::from_millis(100),
            stall_limit: STALL_LIMIT,
        }
    }

    /// `count` UDP flows to `dst`, one datagram per 100 ms.
    pub fn udp(dst: SocketAddr, count: usize) -> Self {
        Self {
            kinds: vec![Kind::Udp],
            ..Self::tcp(dst, count)
        }
    }

    pub fn sources(mut self, sources: impl IntoIterator<Item = IpAddr>) -> Self {
        self.sources = sources.into_iter().collect();
        self
    }
}

/// Why a flow broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// It never got its first answer.
    Open(String),
    /// Reset or closed by the other end, or another socket error.
    Reset(String),
    /// No data for the stall limit.
    Stalled,
    /// A count out of order or an answer that is not the server's.
    WrongData(String),
    /// A UDP answer from another real server than the first.
    Moved { from: String, to: String },
}

impl Why {
    /// For [`Tally::by_reason`].
    pub fn name(&self) -> &'static str {
        match self {
            Why::Open(_) => "not opened",
            Why::Reset(_) => "reset",
            Why::Stalled => "stalled",
            Why::WrongData(_) => "wrong data",
            Why::Moved { .. } => "moved",
        }
    }
}

/// When and why a flow broke.
#[derive(Debug, Clone)]
pub struct Break {
    /// For a stall: when its data stopped.
    pub at: Instant,
    pub why: Why,
}

/// A gap between two messages of a flow.
#[derive(Debug, Clone, Copy)]
pub struct Silence {
    pub from: Instant,
    pub to: Instant,
}

impl Silence {
    pub fn length(&self) -> Duration {
        self.to - self.from
    }
}

/// The end of one flow.
#[derive(Debug, Clone)]
pub struct FlowReport {
    pub kind: Kind,
    pub source: Option<IpAddr>,
    /// The client end's address and port, once open (what the directors'
    /// tables name the flow by).
    pub local: Option<SocketAddr>,
    /// The real server that answered first.
    pub server: Option<String>,
    pub broken: Option<Break>,
    /// Its longest gap between two messages (none before its second message).
    pub longest_silence: Option<Silence>,
    pub messages: u64,
}

impl FlowReport {
    pub fn established(&self) -> bool {
        self.server.is_some()
    }

    pub fn alive(&self) -> bool {
        self.established() && self.broken.is_none()
    }
}

/// Flows running until [`Flows::stop`].
pub struct Flows {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<FlowReport>>,
}

impl Flows {
    /// Opens the flows of `spec` from `ns` and waits until each has had its first
    /// answer or failed (a failure is in the tally, not an error here).
    pub fn open(ns: &NetNs, spec: &Spec) -> Self {
        assert!(!spec.kinds.is_empty(), "a flow spec needs a kind");
        let stop = Arc::new(AtomicBool::new(false));
        let (opened, answers) = mpsc::channel();
        let workers = (0..spec.count)
            .map(|i| {
                let flow = Flow {
                    kind: spec.kinds[i % spec.kinds.len()],
                    source: (!spec.sources.is_empty())
                        .then(|| spec.sources[i % spec.sources.len()]),
                    dst: spec.dst,
                    interval: spec.interval,
                    stall_limit: spec.stall_limit,
                };
                let (ns, stop, opened) = (ns.name().to_owned(), stop.clone(), opened.clone());
                std::thread::Builder::new()
                    .name(format!("flow-{i}"))
                    .spawn(move || flow.run(&ns, &stop, &opened))
                    .expect("spawn a flow thread")
            })
            .collect();
        let deadline = Instant::now() + OPEN_TIMEOUT;
        for _ in 0..spec.count {
            let left = deadline.saturating_duration_since(Instant::now());
            if answers.recv_timeout(left).is_err() {
                break;
            }
        }
        Self { stop, workers }
    }

    /// Stops every flow and reports on each.
    pub fn stop(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let flows = std::mem::take(&mut self.workers)
            .into_iter()
            .map(|w| w.join().expect("flow thread panicked"))
            .collect();
        Tally { flows }
    }
}

impl Drop for Flows {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How the flows ended.
#[derive(Debug, Clone)]
pub struct Tally {
    pub flows: Vec<FlowReport>,
}

impl Tally {
    pub fn count(&self) -> usize {
        self.flows.len()
    }

    pub fn established(&self) -> usize {
        self.flows.iter().filter(|f| f.established()).count()
    }

    pub fn alive(&self) -> usize {
        self.flows.iter().filter(|f| f.alive()).count()
    }

    /// Established flows that broke.
    pub fn lost(&self) -> usize {
        self.established() - self.alive()
    }

    /// Broken flows by [`Why::name`].
    pub fn by_reason(&self) -> BTreeMap<&'static str, usize> {
        let mut by = BTreeMap::new();
        for b in self.flows.iter().filter_map(|f| f.broken.as_ref()) {
            *by.entry(b.why.name()).or_default() += 1;
        }
        by
    }

    /// Lost flows by kind.
    pub fn lost_by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut by = BTreeMap::new();
        for f in self.flows.iter().filter(|f| f.established() && !f.alive()) {
            *by.entry(f.kind.name()).or_default() += 1;
        }
        by
    }

    /// Established flows per real server.
    pub fn by_server(&self) -> BTreeMap<&str, usize> {
        let mut by = BTreeMap::new();
        for s in self.flows.iter().filter_map(|f| f.server.as_deref()) {
            *by.entry(s).or_default() += 1;
        }
        by
    }

    pub fn first_break(&self) -> Option<Instant> {
        self.flows
            .iter()
            .filter_map(|f| f.broken.as_ref().map(|b| b.at))
            .min()
    }

    /// The longest silence of a surviving flow.
    pub fn longest_survivor_silence(&self) -> Option<Duration> {
        self.survivor_silences().map(|s| s.length()).max()
    }

    /// When the last surviving flow that went silent (longer than a hiccup) had data
    /// again.
    pub fn recovered(&self) -> Option<Instant> {
        self.survivor_silences().map(|s| s.to).max()
    }

    fn survivor_silences(&self) -> impl Iterator<Item = Silence> + '_ {
        self.flows
            .iter()
            .filter(|f| f.alive())
            .filter_map(|f| f.longest_silence)
            .filter(|s| s.length() > HICCUP)
    }

    /// One paragraph of figures, times relative to `t0` (the failover).
    pub fn summary(&self, t0: Instant) -> String {
        let at = |t: Instant| match t.checked_duration_since(t0) {
            Some(d) => format!("t0+{:.2}s", d.as_secs_f64()),
            None => format!("t0-{:.2}s", (t0 - t).as_secs_f64()),
        };
        let mut s = format!(
            "{} flows: {} established, {} alive at the end, {} lost {:?} by kind {:?}",
            self.count(),
            self.established(),
            self.alive(),
            self.lost(),
            self.by_reason(),
            self.lost_by_kind(),
        );
        if let Some(t) = self.first_break() {
            let _ = write!(s, "; first break at {}", at(t));
        }
        match (self.longest_survivor_silence(), self.recovered()) {
            (Some(longest), Some(back)) => {
                let _ = write!(
                    s,
                    "; survivors' longest silence {:.2}s, all back by {}",
                    longest.as_secs_f64(),
                    at(back)
                );
            }
            _ => s.push_str("; no survivor went silent"),
        }
        let _ = write!(s, "; per server {:?}", self.by_server());
        if let Some(example) = self.flows.iter().find_map(|f| f.broken.as_ref()) {
            let _ = write!(s, "; e.g. {:?}", example.why);
        }
        s
    }
}

/// One flow's parameters, moved onto its thread.
struct Flow {
    kind: Kind,
    source: Option<IpAddr>,
    dst: SocketAddr,
    interval: Duration,
    stall_limit: Duration,
}

/// The running record of a flow.
struct Watch {
    last_data: Instant,
    longest: Option<Silence>,
    messages: u64,
}

impl Watch {
    fn data(&mut self) {
        let now = Instant::now();
        let gap = Silence {
            from: self.last_data,
            to: now,
        };
        if self.messages > 0 && self.longest.is_none_or(|l| gap.length() > l.length()) {
            self.longest = Some(gap);
        }
        self.last_data = now;
        self.messages += 1;
    }
}

/// What one poll of a flow got.
enum Got {
    Data,
    Nothing,
}

impl Flow {
    fn run(self, ns: &str, stop: &AtomicBool, opened: &mpsc::Sender<()>) -> FlowReport {
        let mut report = FlowReport {
            kind: self.kind,
            source: self.source,
            local: None,
            server: None,
            broken: None,
            longest_silence: None,
            messages: 0,
        };
        let link = netns::enter(ns).and_then(|()| self.open());
        // The receiver may have given up waiting: nothing to tell then.
        let _ = opened.send(());
        let (mut link, server) = match link {
            Ok(open) => open,
            Err(e) => {
                report.broken = Some(Break {
                    at: Instant::now(),
                    why: Why::Open(format!("{e:#}")),
                });
                return report;
            }
        };
        report.server = Some(server);
        report.local = link.local();
        let mut watch = Watch {
            last_data: Instant::now(),
            longest: None,
            messages: 0,
        };
        let broken = loop {
            if watch.last_data.elapsed() > self.stall_limit {
                break Some(Break {
                    at: watch.last_data,
                    why: Why::Stalled,
                });
            }
            if stop.load(Ordering::Relaxed) {
                break None;
            }
            match link.poll(self.interval) {
                Ok(Got::Data) => watch.data(),
                Ok(Got::Nothing) => {}
                Err(why) => {
                    break Some(Break {
                        at: Instant::now(),
                        why,
                    });
                }
            }
        };
        report.broken = broken;
        report.longest_silence = watch.longest;
        report.messages = watch.messages;
        report
    }

    /// Connects (or binds) and gets the first answer: the link and the server's name.
    fn open(&self) -> Result<(Link, String)> {
        let t = Timeouts {
            connect: Duration::from_secs(2),
            io: Duration::from_secs(3),
        };
        match self.kind {
            Kind::Push | Kind::Echo => {
                let mut stream = http::connect_from(self.source, self.dst, &t)?;
                let hello = match self.kind {
                    Kind::Push => format!("push {}\n", self.interval.as_millis()),
                    _ => "echo\n".to_owned(),
                };
                stream.write_all(hello.as_bytes())?;
                let mut reader = BufReader::new(stream.try_clone()?);
                let mut name = String::new();
                reader
                    .read_line(&mut name)
                    .with_context(|| format!("first answer from {}", self.dst))?;
                let name = name.trim().to_owned();
                if name.is_empty() {
                    bail!("{} closed before answering", self.dst);
                }
                stream.set_read_timeout(Some(POLL))?;
                let link = match self.kind {
                    Kind::Push => Link::Push(Lines::new(reader), 0),
                    _ => Link::Echo {
                        stream,
                        lines: Lines::new(reader),
                        seq: 0,
                        sent_at: None,
                    },
                };
                Ok((link, name))
            }
            Kind::Udp => {
                let sock = udp::bind(self.source, 0, self.dst)?;
                let first = udp::exchange(
                    &sock,
                    self.dst,
                    b"u0",
                    &udp::Retry {
                        per_try: Duration::from_secs(1),
                        tries: 3,
                    },
                )?;
                sock.set_read_timeout(Some(POLL))?;
                let link = Link::Udp {
                    sock,
                    dst: self.dst,
                    server: first.server.clone(),
                    seq: 0,
                    sent_at: Instant::now(),
                };
                Ok((link, first.server))
            }
        }
    }
}

impl Link {
    fn local(&self) -> Option<SocketAddr> {
        match self {
            Link::Push(lines, _) => lines.reader.get_ref().local_addr().ok(),
            Link::Echo { stream, .. } => stream.local_addr().ok(),
            Link::Udp { sock, .. } => sock.local_addr().ok(),
        }
    }
}

/// Newline-terminated messages off a socket with a read timeout: a partial line
/// stays buffered across timeouts.
struct Lines {
    reader: BufReader<TcpStream>,
    buf: Vec<u8>,
}

impl Lines {
    fn new(reader: BufReader<TcpStream>) -> Self {
        Self {
            reader,
            buf: Vec::new(),
        }
    }

    /// The next whole line (without its newline), `None` after a read timeout.
    fn next(&mut self) -> Result<Option<String>, Why> {
        match self.reader.read_until(b'\n', &mut self.buf) {
            Ok(0) => Err(Why::Reset("closed by the other end".into())),
            Ok(_) if self.buf.ends_with(b"\n") => {
                let line = String::from_utf8_lossy(&self.buf[..self.buf.len() - 1]).into_owned();
                self.buf.clear();
                Ok(Some(line))
            }
            Ok(_) => Ok(None),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
            Err(e) => Err(Why::Reset(e.to_string())),
        }
    }
}

/// A flow's connection and where it is in its exchange.
enum Link {
    /// Reads the server's counts; the next one expected.
    Push(Lines, u64),
    Echo {
        stream: TcpStream,
        lines: Lines,
        seq: u64,
        /// When `seq` was sent, while its answer is outstanding.
        sent_at: Option<Instant>,
    },
    Udp {
        sock: UdpSocket,
        dst: SocketAddr,
        server: String,
        seq: u64,
        sent_at: Instant,
    },
}

/// `got` must be `want`, else wrong data.
fn expect_count(got: &str, want: u64) -> Result<(), Why> {
    if got == want.to_string() {
        Ok(())
    } else {
        Err(Why::WrongData(format!("got {got:?}, expected {want}")))
    }
}

impl Link {
    /// Waits up to [`POLL`] for the next message, sending what is due first.
    fn poll(&mut self, interval: Duration) -> Result<Got, Why> {
        match self {
            Link::Push(lines, next) => match lines.next()? {
                Some(line) => {
                    expect_count(&line, *next)?;
                    *next += 1;
                    Ok(Got::Data)
                }
                None => Ok(Got::Nothing),
            },
            Link::Echo {
                stream,
                lines,
                seq,
                sent_at,
            } => {
                let Some(sent) = *sent_at else {
                    *seq += 1;
                    stream
                        .write_all(format!("{seq}\n").as_bytes())
                        .map_err(|e| Why::Reset(e.to_string()))?;
                    *sent_at = Some(Instant::now());
                    return Ok(Got::Nothing);
                };
                let Some(line) = lines.next()? else {
                    return Ok(Got::Nothing);
                };
                expect_count(&line, *seq)?;
                *sent_at = None;
                // Request/response: the next request one interval after this one.
                std::thread::sleep(interval.saturating_sub(sent.elapsed()));
                Ok(Got::Data)
            }
            Link::Udp {
                sock,
                dst,
                server,
                seq,
                sent_at,
            } => {
                if sent_at.elapsed() >= interval {
                    *seq += 1;
                    // A send error (no route while the VIP moves) is a lost datagram.
                    let _ = sock.send_to(format!("u{seq}").as_bytes(), *dst);
                    *sent_at = Instant::now();
                }
                let mut buf = [0u8; 512];
                sock.set_read_timeout(Some(interval.min(POLL)))
                    .map_err(|e| Why::Reset(e.to_string()))?;
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
                        let Some((name, _)) = answer.split_once(' ') else {
                            return Err(Why::WrongData(format!("malformed answer {answer:?}")));
                        };
                        if from != *dst {
                            return Err(Why::WrongData(format!("answer from {from}, not {dst}")));
                        }
                        if name != server {
                            return Err(Why::Moved {
                                from: server.clone(),
                                to: name.to_owned(),
                            });
                        }
                        Ok(Got::Data)
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        Ok(Got::Nothing)
                    }
                    // ICMP errors (port or host unreachable while the VIP moves).
                    Err(_) => Ok(Got::Nothing),
                }
            }
        }
    }
}
