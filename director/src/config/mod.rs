//! TOML configuration: parsing, validation, and diagnostics that point at
//! the offending key or value (`FILE:LINE:COL: message`).
//!
//! The file is first parsed by toml, then read key by key into a "raw" form
//! whose values keep their byte spans (`read`, `raw`), then checked and
//! converted (`validate`). Syntax errors stop there (all of them are
//! reported); every other error, of shape (unknown key, wrong type, missing
//! key) or of meaning, is collected and all are reported together in file
//! order. A value of the wrong type counts as absent for the other checks.
//! Keys that have no effect where they are set produce warnings rather than
//! being silently ignored.

mod raw;
mod read;
mod sync;
#[cfg(test)]
mod tests;
mod validate;

pub use sync::{DEFAULT_READY_TIMEOUT, MIN_KEY_LEN, SyncConfig};

use std::{
    fmt,
    net::SocketAddr,
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// How the XDP program is attached to the interfaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    #[default]
    Native,
    Generic,
}

/// Transport protocol of a virtual server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number used in the datapath's map keys.
    pub fn as_u8(self) -> u8 {
        match self {
            Protocol::Tcp => director_common::abi::PROTO_TCP,
            Protocol::Udp => director_common::abi::PROTO_UDP,
        }
    }
}

/// Real server selection algorithm, named and behaving as in IPVS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    /// Weighted round robin (smooth: a heavy server's turns are spread out).
    #[default]
    Wrr,
    /// Round robin, ignoring weights (weight 0 still takes no new
    /// connections).
    Rr,
    /// Least connections.
    Lc,
    /// Weighted least connections: fewest connections per unit of weight.
    Wlc,
    /// Source hashing: the client address (and port with
    /// `hash_source_port`) picks the server.
    Sh,
    /// Maglev hashing: consistent hashing over a table of `mh_table_size`
    /// slots, so a server change moves few clients.
    Mh,
}

/// How packets reach the real servers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forward {
    /// Rewrite the destination (and the source on the way back).
    #[default]
    Nat,
    /// Direct routing: rewrite only the destination MAC; the real servers
    /// hold the VIP and answer the client directly.
    Dr,
}

/// Kind of health check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Tcp,
    Http,
    Udp,
    Exec,
    None,
}

macro_rules! lowercase_display {
    ($ty:ident { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            /// The name used in the configuration file.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),*
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

lowercase_display!(XdpMode { Native => "native", Generic => "generic" });
lowercase_display!(Protocol { Tcp => "tcp", Udp => "udp" });
lowercase_display!(Scheduler {
    Wrr => "wrr",
    Rr => "rr",
    Lc => "lc",
    Wlc => "wlc",
    Sh => "sh",
    Mh => "mh",
});
lowercase_display!(Forward { Nat => "nat", Dr => "dr" });
/// What happens to a failed real server's existing connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// They stay on the server (it only stops taking new ones), as IPVS
    /// does by default: a flapping check does not cut live sessions.
    #[default]
    Keep,
    /// They are reset, so that clients reconnect to a healthy server at
    /// once instead of waiting on a dead one.
    Reset,
}

lowercase_display!(OnFailure { Keep => "keep", Reset => "reset" });
lowercase_display!(CheckKind {
    Tcp => "tcp",
    Http => "http",
    Udp => "udp",
    Exec => "exec",
    None => "none",
});

/// Default for `conntrack_max`.
pub const DEFAULT_CONNTRACK_MAX: u32 = 1 << 20;
/// Largest accepted `conntrack_max`.
pub const MAX_CONNTRACK_MAX: u32 = 1 << 27;
/// Largest accepted real server weight.
pub const MAX_WEIGHT: u32 = 65_535;
/// Longest accepted virtual server name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest Linux interface name (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;
/// Most primary real servers with a non-zero weight, and most backups, in
/// one virtual server: the datapath scans at most this many per list.
pub const MAX_REAL_SERVERS: usize = director_common::abi::MAX_SCAN as usize;
/// Default Maglev table size for `mh` (prime, as Katran uses).
pub const DEFAULT_MH_TABLE_SIZE: u32 = 65_537;
/// Smallest accepted `mh_table_size`.
pub const MIN_MH_TABLE_SIZE: u32 = 1021;
/// Largest accepted `mh_table_size`.
pub const MAX_MH_TABLE_SIZE: u32 = 1_000_003;
/// `mh_table_size` must be at least this many slots per real server, so
/// that shares stay close to the weights.
pub const MH_SLOTS_PER_SERVER: u32 = 4;

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// File it was read from (or the name passed to [`parse`]).
    pub path: PathBuf,
    pub director: DirectorSection,
    pub virtual_servers: Vec<VirtualServer>,
    /// `[sync]`: state sync with the other directors of a group, if any.
    pub sync: Option<SyncConfig>,
}

/// The `[director]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectorSection {
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    pub conntrack_max: u32,
    /// The kernel routing table where the VIPs this director can serve get
    /// a host route, for a routing daemon to announce.
    pub announce_table: Option<u32>,
}

/// One `[[virtual_server]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualServer {
    pub name: String,
    pub address: SocketAddr,
    pub protocol: Protocol,
    pub scheduler: Scheduler,
    pub forward: Forward,
    /// Client affinity (IPVS persistence). A client, its address masked by
    /// `persistence_netmask` (IPv4, default 32) or `persistence_netmask6`
    /// (IPv6, default 128), keeps its real server for new connections until
    /// its persistence entry has been idle for this long; the entry is kept
    /// alive while the client has connections. A server with weight 0
    /// (quiescent) keeps its persistent clients, as in IPVS; a server that
    /// fails its health check does not: its clients are rescheduled.
    pub persistence: Option<Duration>,
    /// IPv4 prefix length grouping clients for persistence, 0..=32; only
    /// with `persistence` on an IPv4 virtual server. None means 32.
    pub persistence_netmask: Option<u8>,
    /// IPv6 prefix length grouping clients for persistence, 0..=128; only
    /// with `persistence` on an IPv6 virtual server. None means 128.
    pub persistence_netmask6: Option<u8>,
    /// sh and mh hash the client's source port as well as its address
    /// (false with any other scheduler).
    pub hash_source_port: bool,
    /// Idle timeouts of connection entries.
    pub timeouts: Timeouts,
    /// Maglev table size (prime); only meaningful with [`Scheduler::Mh`],
    /// [`DEFAULT_MH_TABLE_SIZE`] otherwise.
    pub mh_table_size: u32,
    /// How long a removed or drained real server keeps its existing
    /// connections before they are expired (default 30 s).
    pub drain_timeout: Option<Duration>,
    /// The check of every real server that has no check of its own (see
    /// [`VirtualServer::check_for`]).
    pub health_check: Option<HealthCheck>,
    pub real_servers: Vec<RealServer>,
}

impl VirtualServer {
    /// The prefix length that groups clients for persistence: the family's
    /// netmask key, or the full address length.
    pub fn persistence_prefix(&self) -> u8 {
        if self.address.is_ipv4() {
            self.persistence_netmask.unwrap_or(32)
        } else {
            self.persistence_netmask6.unwrap_or(128)
        }
    }

    /// The check that applies to `rs`: its own `health_check` table if it
    /// has one (which replaces the virtual server's, it is not merged with
    /// it), else the virtual server's. None when the server is not checked,
    /// including `kind = "none"` at either level.
    pub fn check_for<'a>(&'a self, rs: &'a RealServer) -> Option<&'a HealthCheck> {
        rs.health_check
            .as_ref()
            .or(self.health_check.as_ref())
            .filter(|check| check.kind != CheckKind::None)
    }
}

/// Idle timeouts of connection entries, like `ipvsadm --set TCP TCPFIN UDP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP in the ESTABLISHED state (`tcp_timeout`).
    pub tcp: Duration,
    /// TCP in the FIN_WAIT and CLOSE states (`tcp_fin_timeout`).
    pub tcp_fin: Duration,
    /// UDP flows (`udp_timeout`).
    pub udp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp: DEFAULT_TCP_TIMEOUT,
            tcp_fin: DEFAULT_TCP_FIN_TIMEOUT,
            udp: DEFAULT_UDP_TIMEOUT,
        }
    }
}

/// Timeout defaults when the keys are absent (the IPVS defaults).
pub const DEFAULT_TCP_TIMEOUT: Duration = Duration::from_secs(900);
pub const DEFAULT_TCP_FIN_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_UDP_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest accepted connection timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// One `[[virtual_server.real_server]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealServer {
    pub address: SocketAddr,
    /// 0..=65535; 0 means "no new connections".
    pub weight: u32,
    /// Connections (active and inactive) beyond which the server takes no
    /// new ones; 0 means no limit.
    pub max_connections: u32,
    /// Takes new connections only when no primary (non-backup) server can.
    pub backup: bool,
    /// `[virtual_server.real_server.health_check]`: replaces the virtual
    /// server's check for this server.
    pub health_check: Option<HealthCheck>,
}

/// `[virtual_server.health_check]` or
/// `[virtual_server.real_server.health_check]`. The kind-specific fields are
/// None for the other kinds; for their own kind, those with a default hold
/// it, so the struct says exactly what is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: CheckKind,
    /// http: the path requested ([`DEFAULT_HTTP_PATH`]).
    pub path: Option<String>,
    /// http: inclusive range of accepted status codes
    /// ([`DEFAULT_EXPECT_STATUS`]).
    pub expect_status: Option<(u16, u16)>,
    /// Time between the starts of two probes.
    pub interval: Duration,
    /// Longest a probe may take; a slower one fails. At most `interval`.
    pub timeout: Duration,
    /// Consecutive successes that bring a down server up.
    pub rise: u32,
    /// Consecutive failures that bring an up server down.
    pub fall: u32,
    /// Probe this port instead of the real server's.
    pub port: Option<u16>,
    /// http: a substring the first [`MAX_CHECK_BODY`] bytes of the body
    /// must contain.
    pub expect_body: Option<String>,
    /// http: the Host header; None sends the probed address.
    pub host: Option<String>,
    /// udp: the datagram sent ([`DEFAULT_UDP_PAYLOAD`]).
    pub payload: Option<String>,
    /// udp: a substring the reply must contain; None accepts any reply.
    pub expect: Option<String>,
    /// exec: the program and its arguments (required, non-empty).
    pub command: Option<Vec<String>>,
    /// What happens to the existing connections of a server that fails.
    pub on_failure: OnFailure,
}

/// Health check defaults when the keys are absent.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(2);
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_CHECK_RISE: u32 = 2;
pub const DEFAULT_CHECK_FALL: u32 = 3;
pub const DEFAULT_HTTP_PATH: &str = "/";
pub const DEFAULT_EXPECT_STATUS: (u16, u16) = (200, 399);
pub const DEFAULT_UDP_PAYLOAD: &str = "ping";
/// Bytes of an HTTP body searched for `expect_body`, and of a UDP reply
/// searched for `expect`.
pub const MAX_CHECK_BODY: usize = 64 * 1024;
/// Largest UDP `payload`: the most one IPv4 datagram carries.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Severity of a [`Diagnostic`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a file, positioned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
    pub message: String,
    pub severity: Severity,
}

impl Diagnostic {
    /// `FILE:LINE:COL: message` (or `FILE:LINE:COL: warning: message`).
    pub fn render(&self, file: &str) -> String {
        format!("{file}:{self}")
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `LINE:COL: message` (or `LINE:COL: warning: message`).
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.line, self.col)?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a file (all errors, plus any warnings), in file
/// order. Display prints one line per diagnostic: `FILE:LINE:COL: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl ConfigError {
    /// The diagnostics of severity [`Severity::Error`].
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    /// One `FILE:LINE:COL: ...` line per diagnostic.
    pub fn lines(&self) -> Vec<String> {
        self.diagnostics
            .iter()
            .map(|d| d.render(&self.file))
            .collect()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}:{d}", self.file)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A configuration that has no errors, with the warnings found in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

impl Loaded {
    /// One `FILE:LINE:COL: warning: message` line per warning.
    pub fn format_warnings(&self) -> Vec<String> {
        let file = self.config.path.display().to_string();
        self.warnings.iter().map(|w| w.render(&file)).collect()
    }
}

/// Reads and parses `path`. A read error, or a file that group or others
/// may write (anyone who can write it chooses what the root daemon
/// forwards), is a single diagnostic at 1:1.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let file = path.display().to_string();
    match read_private(path) {
        Ok(text) => {
            let mut loaded = parse(&text, &file)?;
            loaded.config.path = path.to_path_buf();
            Ok(loaded)
        }
        Err(message) => Err(ConfigError {
            file,
            diagnostics: vec![Diagnostic {
                line: 1,
                col: 1,
                message,
                severity: Severity::Error,
            }],
        }),
    }
}

/// The text of `path`, checked through the open file (no race with a
/// `chmod` between the check and the read).
fn read_private(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let cannot = |e: std::io::Error| format!("cannot read: {e}");
    let mut f = std::fs::File::open(path).map_err(cannot)?;
    let mode = f.metadata().map_err(cannot)?.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "writable by others (mode {mode:04o}); chmod go-w {}",
            path.display()
        ));
    }
    let mut text = String::new();
    f.read_to_string(&mut text).map_err(cannot)?;
    Ok(text)
}

/// Parses and validates `text`; `file` names it in diagnostics and becomes
/// [`Config::path`]. A `[sync]` key file is read and checked, a relative
/// path taken relative to `file`'s directory.
pub fn parse(text: &str, file: &str) -> Result<Loaded, ConfigError> {
    let lines = LineIndex::new(text);
    let errors = |problems: Vec<read::Problem>| {
        problems
            .into_iter()
            .map(|(span, message)| lines.diagnostic(text, span, Severity::Error, message))
    };
    let doc = read::parse(text).map_err(|syntax| ConfigError {
        file: file.to_owned(),
        diagnostics: errors(syntax).collect(),
    })?;
    let mut reader = read::Reader::default();
    let raw = raw::File::read(&mut reader, &doc);
    let (config, checked) = validate::build(text, raw, PathBuf::from(file));
    let mut diagnostics: Vec<Diagnostic> = errors(reader.problems).chain(checked).collect();
    // Stable: diagnostics at the same position keep the order they were found.
    diagnostics.sort_by_key(|d| (d.line, d.col));
    if diagnostics.iter().any(Diagnostic::is_error) {
        Err(ConfigError {
            file: file.to_owned(),
            diagnostics,
        })
    } else {
        Ok(Loaded {
            config,
            warnings: diagnostics,
        })
    }
}

/// Where each line of a text starts: positions in O(log lines) instead of a
/// scan from the start (a configuration of 100 000 real servers asks for
/// one per server).
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> LineIndex {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    /// 1-based (line, column) of byte `offset` in `text`; the column counts
    /// characters. Offsets past the end or inside a character are clamped.
    pub(crate) fn position(&self, text: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset);
        let col = text[self.starts[line - 1]..offset].chars().count() + 1;
        (line, col)
    }

    /// A diagnostic at the start of `span`.
    pub(crate) fn diagnostic(
        &self,
        text: &str,
        span: Range<usize>,
        severity: Severity,
        message: String,
    ) -> Diagnostic {
        let (line, col) = self.position(text, span.start);
        Diagnostic {
            line,
            col,
            message,
            severity,
        }
    }
}
