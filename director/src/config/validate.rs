//! Checks the raw file and converts it into a [`Config`], collecting every
//! error and warning with the position of the value it is about.
//!
//! When a value is invalid, a placeholder takes its place so that checking
//! can go on; the resulting config is only handed out if there were no
//! errors.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    ops::Range,
    path::PathBuf,
    time::Duration,
};

use serde_spanned::Spanned;

use super::{
    CheckKind, Config, DEFAULT_CHECK_FALL, DEFAULT_CHECK_INTERVAL, DEFAULT_CHECK_RISE,
    DEFAULT_CHECK_TIMEOUT, DEFAULT_CONNTRACK_MAX, DEFAULT_EXPECT_STATUS, DEFAULT_HTTP_PATH,
    DEFAULT_MH_TABLE_SIZE, DEFAULT_TCP_FIN_TIMEOUT, DEFAULT_TCP_TIMEOUT, DEFAULT_UDP_PAYLOAD,
    DEFAULT_UDP_TIMEOUT, Diagnostic, DirectorSection, Forward, HealthCheck, LineIndex,
    MAX_CONNTRACK_MAX, MAX_IFNAME_LEN, MAX_MH_TABLE_SIZE, MAX_NAME_LEN, MAX_REAL_SERVERS,
    MAX_TIMEOUT, MAX_UDP_PAYLOAD, MAX_WEIGHT, MH_SLOTS_PER_SERVER, MIN_MH_TABLE_SIZE, Protocol,
    RealServer, Scheduler, Severity, Timeouts, VirtualServer, raw,
};

/// Placeholder for an address that failed to parse.
const BAD_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// A 1-based line:column, printed as `LINE:COL`.
#[derive(Clone, Copy)]
struct Pos(usize, usize);

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.0, self.1)
    }
}

struct Checker<'a> {
    text: &'a str,
    lines: LineIndex,
    diagnostics: Vec<Diagnostic>,
}

pub(super) fn build(text: &str, raw: raw::File, path: PathBuf) -> (Config, Vec<Diagnostic>) {
    let mut c = Checker {
        text,
        lines: LineIndex::new(text),
        diagnostics: Vec::new(),
    };
    let director = c.director(raw.director.into_inner());
    let mut names: HashMap<String, Pos> = HashMap::new();
    let mut services: HashMap<(SocketAddr, Protocol), Pos> = HashMap::new();
    let virtual_servers = raw
        .virtual_server
        .into_iter()
        .map(|vs| c.virtual_server(vs, &mut names, &mut services))
        .collect();
    let config = Config {
        path,
        director,
        virtual_servers,
    };
    (config, c.diagnostics)
}

impl Checker<'_> {
    fn pos(&self, span: Range<usize>) -> Pos {
        let (line, col) = self.lines.position(self.text, span.start);
        Pos(line, col)
    }

    fn push(&mut self, span: Range<usize>, severity: Severity, message: String) {
        let Pos(line, col) = self.pos(span);
        self.diagnostics.push(Diagnostic {
            line,
            col,
            message,
            severity,
        });
    }

    /// The key of the `key = value` pair whose value spans `value`.
    /// serde_spanned records only values; a rule about a key being set at
    /// all reads best pointed at the key. TOML keeps a key and its value on
    /// one line, so the key is the token before the last `=` preceding the
    /// value; if there is none, the value's span is returned.
    fn key_span(&self, value: Range<usize>) -> Range<usize> {
        let before = &self.text[..value.start];
        let Some(eq) = before.rfind('=') else {
            return value;
        };
        let key = before[..eq].trim_end_matches([' ', '\t']);
        let start = key
            .rfind(|c: char| c.is_whitespace() || c == '{' || c == ',')
            .map_or(0, |i| i + 1);
        if start == key.len() {
            return value;
        }
        start..key.len()
    }

    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.push(span, Severity::Error, message.into());
    }

    fn warning(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.push(span, Severity::Warning, message.into());
    }

    /// An integer in `lo..=hi`, or an error naming `key` and the range.
    fn int_in(&mut self, key: &str, value: &Spanned<i64>, lo: i64, hi: i64) -> Option<i64> {
        let v = *value.get_ref();
        if (lo..=hi).contains(&v) {
            Some(v)
        } else {
            self.error(
                value.span(),
                format!("{key} must be in {lo}..={hi}, got {v}"),
            );
            None
        }
    }

    /// A humantime duration such as "30s" or "1m 30s".
    fn duration(&mut self, key: &str, value: &Spanned<String>) -> Option<Duration> {
        match humantime::parse_duration(value.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    value.span(),
                    format!(
                        "invalid duration {:?} for {key} ({e}), expected e.g. \"30s\" or \"1m 30s\"",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// A positive duration.
    fn positive_duration(&mut self, key: &str, value: &Spanned<String>) -> Option<Duration> {
        let d = self.duration(key, value)?;
        if d.is_zero() {
            self.error(value.span(), format!("{key} must be greater than zero"));
            return None;
        }
        Some(d)
    }

    /// A connection idle timeout: positive and at most [`MAX_TIMEOUT`].
    /// `default` stands in when it is absent or invalid. Set on a virtual
    /// server of the other protocol, it is accepted with a warning.
    fn conn_timeout(
        &mut self,
        key: &str,
        value: Option<&Spanned<String>>,
        applies_to: Protocol,
        protocol: Protocol,
        default: Duration,
    ) -> Duration {
        let Some(value) = value else {
            return default;
        };
        if protocol != applies_to {
            self.warning(
                value.span(),
                format!("{key} has no effect on a {protocol} virtual server"),
            );
        }
        let Some(d) = self.positive_duration(key, value) else {
            return default;
        };
        if d > MAX_TIMEOUT {
            self.error(
                value.span(),
                format!(
                    "{key} must be at most {}h, got {}",
                    MAX_TIMEOUT.as_secs() / 3600,
                    humantime::format_duration(d)
                ),
            );
            return default;
        }
        d
    }

    /// `persistence_netmask` (`v6` false) or `persistence_netmask6`.
    fn persistence_netmask(
        &mut self,
        value: &Spanned<i64>,
        v6: bool,
        has_persistence: bool,
        vip: Option<SocketAddr>,
    ) -> Option<u8> {
        let (key, other, family, max) = if v6 {
            ("persistence_netmask6", "persistence_netmask", "IPv6", 128)
        } else {
            ("persistence_netmask", "persistence_netmask6", "IPv4", 32)
        };
        if !has_persistence {
            self.error(
                value.span(),
                format!("{key} requires persistence to be set"),
            );
        }
        if vip.is_some_and(|vip| vip.is_ipv6() != v6) {
            self.error(
                value.span(),
                format!("{key} applies to {family} virtual servers; use {other}"),
            );
        }
        self.int_in(key, value, 0, max).map(|v| v as u8)
    }

    /// "IP:port" or "[IPv6]:port" with a port in 1..=65535.
    fn socket_addr(&mut self, value: &Spanned<String>) -> Option<SocketAddr> {
        let s = value.get_ref().as_str();
        let addr = match s.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                let msg = match port_out_of_range(s) {
                    Some(port) => {
                        format!("port {port} in {s:?} is out of range, expected 1..=65535")
                    }
                    None => {
                        format!("invalid address {s:?}, expected \"IP:port\" or \"[IPv6]:port\"")
                    }
                };
                self.error(value.span(), msg);
                return None;
            }
        };
        if addr.port() == 0 {
            self.error(
                value.span(),
                format!("port 0 in {s:?} is not allowed, expected 1..=65535"),
            );
            return None;
        }
        if addr.ip().is_unspecified() {
            self.error(
                value.span(),
                format!("address {s:?} is unspecified, expected a host address"),
            );
            return None;
        }
        Some(addr)
    }

    fn director(&mut self, raw: raw::Director) -> DirectorSection {
        let mut interfaces = Vec::new();
        let mut seen: HashMap<&str, Pos> = HashMap::new();
        if raw.interfaces.get_ref().is_empty() {
            self.error(
                raw.interfaces.span(),
                "interfaces must not be empty, expected e.g. [\"eth0\"]",
            );
        }
        for ifname in raw.interfaces.get_ref() {
            let name = ifname.get_ref().as_str();
            if let Err(why) = check_ifname(name) {
                self.error(
                    ifname.span(),
                    format!("invalid interface name {name:?}: {why}"),
                );
            } else if let Some(first) = seen.get(name) {
                self.error(
                    ifname.span(),
                    format!("duplicate interface {name:?} (first listed at {first})"),
                );
            } else {
                seen.insert(name, self.pos(ifname.span()));
            }
            interfaces.push(name.to_owned());
        }
        let conntrack_max = raw
            .conntrack_max
            .as_ref()
            .and_then(|v| self.int_in("conntrack_max", v, 1, MAX_CONNTRACK_MAX.into()))
            .map_or(DEFAULT_CONNTRACK_MAX, |v| v as u32);
        DirectorSection {
            interfaces,
            xdp_mode: raw.xdp_mode.map(Spanned::into_inner).unwrap_or_default(),
            conntrack_max,
        }
    }

    fn virtual_server(
        &mut self,
        raw: Spanned<raw::VirtualServer>,
        names: &mut HashMap<String, Pos>,
        services: &mut HashMap<(SocketAddr, Protocol), Pos>,
    ) -> VirtualServer {
        let header = raw.span();
        let raw = raw.into_inner();

        let name = raw.name.get_ref().clone();
        if let Err(why) = check_vs_name(&name) {
            self.error(
                raw.name.span(),
                format!("invalid virtual server name {name:?}: {why}"),
            );
        } else if let Some(first) = names.get(&name) {
            self.error(
                raw.name.span(),
                format!("duplicate virtual server name {name:?} (first defined at {first})"),
            );
        } else {
            names.insert(name.clone(), self.pos(raw.name.span()));
        }

        let protocol = raw
            .protocol
            .as_ref()
            .map(|p| *p.get_ref())
            .unwrap_or_default();
        let address = self.socket_addr(&raw.address);
        if let Some(addr) = address {
            if let Some(first) = services.get(&(addr, protocol)) {
                self.error(
                    raw.address.span(),
                    format!(
                        "duplicate virtual server {addr} {protocol} (first defined at {first})"
                    ),
                );
            } else {
                services.insert((addr, protocol), self.pos(raw.address.span()));
            }
        }

        let scheduler = raw
            .scheduler
            .as_ref()
            .map(|s| *s.get_ref())
            .unwrap_or_default();
        let forward = raw
            .forward
            .as_ref()
            .map(|f| *f.get_ref())
            .unwrap_or_default();
        let hashing = matches!(scheduler, Scheduler::Sh | Scheduler::Mh);

        let hash_source_port = raw.hash_source_port.as_ref().is_some_and(|h| *h.get_ref());
        if let Some(h) = &raw.hash_source_port
            && *h.get_ref()
            && !hashing
        {
            self.error(
                self.key_span(h.span()),
                format!(
                    "hash_source_port applies only to the sh and mh schedulers, not \"{scheduler}\""
                ),
            );
        }

        let persistence = raw
            .persistence
            .as_ref()
            .and_then(|p| self.positive_duration("persistence", p));
        let has_persistence = raw.persistence.is_some();
        let persistence_netmask = raw
            .persistence_netmask
            .as_ref()
            .and_then(|m| self.persistence_netmask(m, false, has_persistence, address));
        let persistence_netmask6 = raw
            .persistence_netmask6
            .as_ref()
            .and_then(|m| self.persistence_netmask(m, true, has_persistence, address));

        let timeouts = Timeouts {
            tcp: self.conn_timeout(
                "tcp_timeout",
                raw.tcp_timeout.as_ref(),
                Protocol::Tcp,
                protocol,
                DEFAULT_TCP_TIMEOUT,
            ),
            tcp_fin: self.conn_timeout(
                "tcp_fin_timeout",
                raw.tcp_fin_timeout.as_ref(),
                Protocol::Tcp,
                protocol,
                DEFAULT_TCP_FIN_TIMEOUT,
            ),
            udp: self.conn_timeout(
                "udp_timeout",
                raw.udp_timeout.as_ref(),
                Protocol::Udp,
                protocol,
                DEFAULT_UDP_TIMEOUT,
            ),
        };

        let mh_table_size = raw.mh_table_size.as_ref().and_then(|m| {
            if scheduler != Scheduler::Mh {
                self.error(
                    m.span(),
                    format!("mh_table_size applies only to the mh scheduler, not \"{scheduler}\""),
                );
            }
            let v = *m.get_ref();
            let range = i64::from(MIN_MH_TABLE_SIZE)..=i64::from(MAX_MH_TABLE_SIZE);
            if range.contains(&v) && director_common::maglev::is_prime(v as u32) {
                Some(v as u32)
            } else {
                self.error(
                    m.span(),
                    format!(
                        "mh_table_size must be a prime between {MIN_MH_TABLE_SIZE} and {MAX_MH_TABLE_SIZE}, got {v}"
                    ),
                );
                None
            }
        });
        let drain_timeout = raw
            .drain_timeout
            .as_ref()
            .and_then(|d| self.duration("drain_timeout", d));
        let health_check = raw.health_check.map(|hc| self.health_check(hc));

        let mut seen: HashMap<SocketAddr, Pos> = HashMap::new();
        let real_servers: Vec<RealServer> = raw
            .real_server
            .into_iter()
            .map(|rs| self.real_server(rs.into_inner(), address, forward, &mut seen))
            .collect();

        // The datapath scans at most MAX_REAL_SERVERS servers per list: the
        // primaries taking new connections, and the backups.
        let primaries = real_servers
            .iter()
            .filter(|rs| !rs.backup && rs.weight > 0)
            .count();
        let backups = real_servers.iter().filter(|rs| rs.backup).count();
        if primaries > MAX_REAL_SERVERS || backups > MAX_REAL_SERVERS {
            self.error(
                header.clone(),
                format!(
                    "too many real servers: at most {MAX_REAL_SERVERS} primaries and {MAX_REAL_SERVERS} backups per virtual server ({name:?} has {primaries} primaries with weight > 0 and {backups} backups)"
                ),
            );
        }

        if let (Some(m), Some(size)) = (&raw.mh_table_size, mh_table_size)
            && scheduler == Scheduler::Mh
        {
            let min = MH_SLOTS_PER_SERVER as usize * real_servers.len();
            if (size as usize) < min {
                self.error(
                    m.span(),
                    format!(
                        "mh_table_size {size} is too small for {} real servers: it must be at least {MH_SLOTS_PER_SERVER} times the number of real servers ({min})",
                        real_servers.len()
                    ),
                );
            }
        }

        // Backups count: they take new connections when no primary can.
        if real_servers.is_empty() {
            self.warning(
                header,
                format!(
                    "no real server takes new connections: virtual server {name:?} has no real servers"
                ),
            );
        } else if real_servers.iter().all(|rs| rs.weight == 0) {
            self.warning(
                header,
                format!(
                    "no real server takes new connections: every real server of {name:?} has weight 0"
                ),
            );
        }

        VirtualServer {
            name,
            address: address.unwrap_or(BAD_ADDR),
            protocol,
            scheduler,
            forward,
            persistence,
            persistence_netmask,
            persistence_netmask6,
            hash_source_port,
            timeouts,
            mh_table_size: mh_table_size.unwrap_or(DEFAULT_MH_TABLE_SIZE),
            drain_timeout,
            health_check,
            real_servers,
        }
    }

    fn real_server(
        &mut self,
        raw: raw::RealServer,
        vip: Option<SocketAddr>,
        forward: Forward,
        seen: &mut HashMap<SocketAddr, Pos>,
    ) -> RealServer {
        let address = self.socket_addr(&raw.address);
        if let Some(addr) = address {
            let span = raw.address.span();
            if let Some(first) = seen.get(&addr) {
                self.error(
                    span.clone(),
                    format!("duplicate real server {addr} (first defined at {first})"),
                );
            } else {
                seen.insert(addr, self.pos(span.clone()));
            }
            if let Some(vip) = vip {
                if addr.is_ipv4() != vip.is_ipv4() {
                    self.error(
                        span,
                        format!(
                            "real server address {addr} is {} but the virtual server address {vip} is {}",
                            family(addr),
                            family(vip)
                        ),
                    );
                } else if forward == Forward::Dr && addr.port() != vip.port() {
                    self.error(
                        span,
                        format!(
                            "forward = \"dr\" requires the real server port ({}) to equal the virtual server port ({})",
                            addr.port(),
                            vip.port()
                        ),
                    );
                }
            }
        }
        let weight = raw
            .weight
            .as_ref()
            .and_then(|w| self.int_in("weight", w, 0, MAX_WEIGHT.into()))
            .map_or(1, |w| w as u32);
        let max_connections = raw
            .max_connections
            .as_ref()
            .and_then(|m| self.int_in("max_connections", m, 0, u32::MAX.into()))
            .map_or(0, |v| v as u32);
        let backup = raw.backup.as_ref().is_some_and(|b| *b.get_ref());
        let health_check = raw.health_check.map(|hc| self.health_check(hc));
        RealServer {
            address: address.unwrap_or(BAD_ADDR),
            weight,
            max_connections,
            backup,
            health_check,
        }
    }

    /// Checks a `health_check` table, of a virtual server or of a real
    /// server (the same keys and rules).
    fn health_check(&mut self, raw: Spanned<raw::HealthCheck>) -> HealthCheck {
        let header = raw.span();
        let raw = raw.into_inner();
        let kind = *raw.kind.get_ref();

        let path = raw.path.as_ref().map(|p| {
            if self.for_kind("path", p, kind, CheckKind::Http) {
                let path = p.get_ref();
                if !path.starts_with('/') {
                    self.error(p.span(), format!("path {path:?} must start with '/'"));
                } else if let Some(c) = path.chars().find(|c| c.is_whitespace() || c.is_control()) {
                    self.error(
                        p.span(),
                        format!("path {path:?} contains {c:?}; percent-encode it"),
                    );
                }
            }
            p.get_ref().clone()
        });
        let expect_status = raw.expect_status.as_ref().and_then(|s| {
            self.for_kind("expect_status", s, kind, CheckKind::Http);
            match parse_status_range(s.get_ref()) {
                Ok(range) => Some(range),
                Err(why) => {
                    self.error(s.span(), why);
                    None
                }
            }
        });
        let expect_body = raw.expect_body.as_ref().map(|b| {
            if self.for_kind("expect_body", b, kind, CheckKind::Http) {
                self.not_empty("expect_body", b);
            }
            b.get_ref().clone()
        });
        let host = raw.host.as_ref().map(|h| {
            if self.for_kind("host", h, kind, CheckKind::Http) {
                let host = h.get_ref();
                if host.is_empty() {
                    self.error(h.span(), "host must not be empty");
                } else if let Some(c) = host.chars().find(|c| c.is_whitespace() || c.is_control()) {
                    self.error(h.span(), format!("host {host:?} contains {c:?}"));
                }
            }
            h.get_ref().clone()
        });
        let payload = raw.payload.as_ref().map(|p| {
            if self.for_kind("payload", p, kind, CheckKind::Udp)
                && p.get_ref().len() > MAX_UDP_PAYLOAD
            {
                self.error(
                    p.span(),
                    format!(
                        "payload must be at most {MAX_UDP_PAYLOAD} bytes, got {}",
                        p.get_ref().len()
                    ),
                );
            }
            p.get_ref().clone()
        });
        let expect = raw.expect.as_ref().map(|e| {
            if self.for_kind("expect", e, kind, CheckKind::Udp) {
                self.not_empty("expect", e);
            }
            e.get_ref().clone()
        });
        let command = raw.command.as_ref().map(|c| {
            if self.for_kind("command", c, kind, CheckKind::Exec) {
                match c.get_ref().first() {
                    None => self.error(
                        c.span(),
                        "command must not be empty, expected e.g. [\"/usr/local/bin/check\", \"--fast\"]",
                    ),
                    Some(program) if program.get_ref().is_empty() => {
                        self.error(program.span(), "the program of command must not be empty");
                    }
                    Some(_) => {}
                }
                for arg in c.get_ref() {
                    if arg.get_ref().contains('\0') {
                        self.error(arg.span(), "command arguments must not contain NUL");
                    }
                }
            }
            c.get_ref().iter().map(|a| a.get_ref().clone()).collect::<Vec<_>>()
        });
        if kind == CheckKind::Exec && raw.command.is_none() {
            self.error(
                header,
                "kind = \"exec\" requires command, e.g. command = [\"/usr/local/bin/check\", \"--fast\"]",
            );
        }

        let interval = raw
            .interval
            .as_ref()
            .and_then(|i| self.positive_duration("interval", i));
        let timeout = raw
            .timeout
            .as_ref()
            .and_then(|t| self.positive_duration("timeout", t));
        // Only compare values that are valid; defaults fill in the rest.
        let interval_ok = raw.interval.is_none() || interval.is_some();
        let timeout_ok = raw.timeout.is_none() || timeout.is_some();
        let interval = interval.unwrap_or(DEFAULT_CHECK_INTERVAL);
        let timeout = timeout.unwrap_or(DEFAULT_CHECK_TIMEOUT);
        if interval_ok && timeout_ok && timeout > interval {
            let span = raw
                .timeout
                .as_ref()
                .or(raw.interval.as_ref())
                .map(Spanned::span);
            if let Some(span) = span {
                self.error(
                    span,
                    format!(
                        "timeout ({}) must not exceed interval ({})",
                        humantime::format_duration(timeout),
                        humantime::format_duration(interval)
                    ),
                );
            }
        }
        let rise = raw
            .rise
            .as_ref()
            .and_then(|r| self.int_in("rise", r, 1, u32::MAX.into()))
            .map_or(DEFAULT_CHECK_RISE, |v| v as u32);
        let fall = raw
            .fall
            .as_ref()
            .and_then(|f| self.int_in("fall", f, 1, u32::MAX.into()))
            .map_or(DEFAULT_CHECK_FALL, |v| v as u32);
        let port = raw
            .port
            .as_ref()
            .and_then(|p| self.int_in("port", p, 1, u16::MAX.into()))
            .map(|v| v as u16);
        let on_failure = raw
            .on_failure
            .as_ref()
            .map(|o| *o.get_ref())
            .unwrap_or_default();

        if kind == CheckKind::None {
            // Valid values, but nothing reads them: say so rather than
            // let a reader believe the server is checked.
            let ignored = [
                ("interval", raw.interval.as_ref().map(Spanned::span)),
                ("timeout", raw.timeout.as_ref().map(Spanned::span)),
                ("rise", raw.rise.as_ref().map(Spanned::span)),
                ("fall", raw.fall.as_ref().map(Spanned::span)),
                ("port", raw.port.as_ref().map(Spanned::span)),
                ("on_failure", raw.on_failure.as_ref().map(Spanned::span)),
            ];
            for (key, span) in ignored {
                if let Some(span) = span {
                    self.warning(
                        self.key_span(span),
                        format!("{key} has no effect with kind = \"none\""),
                    );
                }
            }
        }

        let http = kind == CheckKind::Http;
        let udp = kind == CheckKind::Udp;
        HealthCheck {
            kind,
            path: path.or_else(|| http.then(|| DEFAULT_HTTP_PATH.to_owned())),
            expect_status: expect_status.or(http.then_some(DEFAULT_EXPECT_STATUS)),
            interval,
            timeout,
            rise,
            fall,
            port,
            expect_body,
            host,
            payload: payload.or_else(|| udp.then(|| DEFAULT_UDP_PAYLOAD.to_owned())),
            expect,
            command,
            on_failure,
        }
    }

    /// Whether `key`, which belongs to checks of kind `wanted`, may be set
    /// on a check of kind `kind`; an error if not.
    fn for_kind<T>(
        &mut self,
        key: &str,
        value: &Spanned<T>,
        kind: CheckKind,
        wanted: CheckKind,
    ) -> bool {
        if kind == wanted {
            return true;
        }
        self.error(
            value.span(),
            format!("{key} only applies to kind = \"{wanted}\", not \"{kind}\""),
        );
        false
    }

    fn not_empty(&mut self, key: &str, value: &Spanned<String>) {
        if value.get_ref().is_empty() {
            self.error(value.span(), format!("{key} must not be empty"));
        }
    }
}

fn family(addr: SocketAddr) -> &'static str {
    if addr.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// For "IP:port" whose port is all digits but above 65535, that port.
fn port_out_of_range(s: &str) -> Option<u64> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse::<IpAddr>().ok()?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match port.parse::<u64>() {
        Ok(p) if p > 65_535 => Some(p),
        Ok(_) => None,
        Err(_) => Some(u64::MAX),
    }
}

/// Linux `dev_valid_name`: 1..=15 bytes, not "." or "..", no '/', ':' or
/// whitespace.
fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err(format!(
            "longer than {MAX_IFNAME_LEN} bytes ({} bytes)",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("\".\" and \"..\" are reserved".to_owned());
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        return Err(format!("contains {c:?}"));
    }
    Ok(())
}

/// `[A-Za-z0-9_.-]{1,64}`.
fn check_vs_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "expected 1..={MAX_NAME_LEN} characters from [A-Za-z0-9_.-]"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!("contains {c:?}, expected only [A-Za-z0-9_.-]"));
    }
    Ok(())
}

/// "NNN" or "NNN-NNN" with codes in 100..=599 and lo <= hi.
fn parse_status_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || {
        format!(
            "invalid expect_status {s:?}, expected \"NNN\" or \"NNN-NNN\" with codes in 100..=599"
        )
    };
    let code = |part: &str| -> Option<u16> {
        if part.len() != 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok().filter(|c| (100..=599).contains(c))
    };
    let (lo, hi) = match s.split_once('-') {
        Some((lo, hi)) => (
            code(lo.trim()).ok_or_else(bad)?,
            code(hi.trim()).ok_or_else(bad)?,
        ),
        None => {
            let c = code(s.trim()).ok_or_else(bad)?;
            (c, c)
        }
    };
    if lo > hi {
        return Err(format!(
            "invalid expect_status {s:?}: the lower bound ({lo}) exceeds the upper bound ({hi})"
        ));
    }
    Ok((lo, hi))
}
