//! One probe of one server: connect, HTTP GET, UDP request/reply, or a
//! command. Everything a probe needs that does not change between probes
//! (address, request bytes, environment) is prepared once in
//! [`Probe::new`], so a probe costs its socket calls and little else.
//!
//! A probe returns `Err(reason)`, the reason being short, lowercase and
//! prefixed with what failed ("connect: connection refused", "http: status
//! 503 not in 200-399", "timeout after 1s", "exec: exit status 1").

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::unix::process::ExitStatusExt,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream, UdpSocket},
};

use crate::config::{CheckKind, HealthCheck, MAX_CHECK_BODY};

/// Bytes of status line and headers read before the body of an HTTP
/// response; a longer head fails the probe.
const MAX_HTTP_HEAD: usize = 16 * 1024;
/// First read buffer of an HTTP probe: a status line and typical headers.
const HTTP_FIRST_READ: usize = 1024;

/// A prepared probe of one server.
#[derive(Debug)]
pub(super) struct Probe {
    /// The address probed: the server's IP, and `port` or the server's.
    addr: SocketAddr,
    timeout: Duration,
    /// "timeout after 1s", formatted once.
    timeout_reason: Box<str>,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Tcp,
    Http {
        request: Box<[u8]>,
        status: (u16, u16),
        expect_body: Option<Box<[u8]>>,
    },
    Udp {
        payload: Box<[u8]>,
        expect: Option<Box<[u8]>>,
    },
    Exec {
        program: String,
        args: Box<[String]>,
        vs: String,
        ip: String,
        port: String,
    },
}

impl Probe {
    /// Prepares the probe of `server` of virtual server `vs`; None for
    /// `kind = "none"` (and for an exec check without a command, which the
    /// configuration rejects).
    pub(super) fn new(vs: &str, server: SocketAddr, check: &HealthCheck) -> Option<Probe> {
        let addr = SocketAddr::new(server.ip(), check.port.unwrap_or(server.port()));
        let kind = match check.kind {
            CheckKind::None => return None,
            CheckKind::Tcp => Kind::Tcp,
            CheckKind::Http => {
                let path = check.path.as_deref().unwrap_or("/");
                let host = match &check.host {
                    Some(host) => host.clone(),
                    None => host_header(addr),
                };
                let request = format!(
                    "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: director-health\r\n\r\n"
                );
                Kind::Http {
                    request: request.into_bytes().into(),
                    status: check
                        .expect_status
                        .unwrap_or(crate::config::DEFAULT_EXPECT_STATUS),
                    expect_body: check.expect_body.as_deref().map(|b| b.as_bytes().into()),
                }
            }
            CheckKind::Udp => Kind::Udp {
                payload: check
                    .payload
                    .as_deref()
                    .unwrap_or(crate::config::DEFAULT_UDP_PAYLOAD)
                    .as_bytes()
                    .into(),
                expect: check.expect.as_deref().map(|e| e.as_bytes().into()),
            },
            CheckKind::Exec => {
                let (program, args) = check.command.as_deref()?.split_first()?;
                Kind::Exec {
                    program: program.clone(),
                    args: args.into(),
                    vs: vs.to_owned(),
                    ip: addr.ip().to_string(),
                    port: addr.port().to_string(),
                }
            }
        };
        Some(Probe {
            addr,
            timeout: check.timeout,
            timeout_reason: format!(
                "timeout after {}",
                humantime::format_duration(check.timeout)
            )
            .into(),
            kind,
        })
    }

    /// The address probed.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs the probe, bounded by the check's timeout.
    pub(super) async fn run(&self) -> Result<(), String> {
        if let Kind::Exec {
            program,
            args,
            vs,
            ip,
            port,
        } = &self.kind
        {
            // Bounds itself: it must kill what it started.
            return self.exec(program, args, vs, ip, port).await;
        }
        match tokio::time::timeout(self.timeout, self.network()).await {
            Ok(result) => result,
            Err(_) => Err(self.timeout_reason.to_string()),
        }
    }

    async fn network(&self) -> Result<(), String> {
        match &self.kind {
            Kind::Tcp => connect(self.addr).await.map(drop),
            Kind::Http {
                request,
                status,
                expect_body,
            } => http(self.addr, request, *status, expect_body.as_deref()).await,
            Kind::Udp { payload, expect } => udp(self.addr, payload, expect.as_deref()).await,
            Kind::Exec { .. } => unreachable!("exec probes bound themselves"),
        }
    }

    async fn exec(
        &self,
        program: &str,
        args: &[String],
        vs: &str,
        ip: &str,
        port: &str,
    ) -> Result<(), String> {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env("DIRECTOR_VS", vs)
            .env("DIRECTOR_RS_ADDR", ip)
            .env("DIRECTOR_RS_PORT", port)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that a timeout kills what it
            // started too (a shell's children).
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("exec: cannot run {program}: {}", io_reason(&e)))?;
        // Declared after `child`, so dropped before it: a probe dropped
        // mid-run (its target removed) kills the group as well.
        let mut group = KillGroup(child.id().and_then(|pid| i32::try_from(pid).ok()));
        match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(result) => {
                // Reaped: the id may be reused from now on.
                group.0 = None;
                match result {
                    Ok(status) => exit_result(status),
                    Err(e) => Err(format!("exec: wait: {}", io_reason(&e))),
                }
            }
            Err(_) => {
                drop(group);
                let _ = child.kill().await;
                Err(format!("{}, killed", self.timeout_reason))
            }
        }
    }
}

/// The process group of a running exec probe (its command leads it),
/// killed when this is dropped unless cleared first.
struct KillGroup(Option<i32>);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: kill(2) has no memory effects. The leader is not
            // reaped yet (the field is cleared once it is), so the group
            // is still the one it started.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

/// The default Host header: the probed address, without the port when it
/// is HTTP's default.
fn host_header(addr: SocketAddr) -> String {
    match (addr.ip(), addr.port()) {
        (IpAddr::V4(ip), 80) => ip.to_string(),
        (IpAddr::V6(ip), 80) => format!("[{ip}]"),
        _ => addr.to_string(),
    }
}

/// A TCP connection to `addr`, closed with a reset when dropped: a check
/// connection would otherwise leave a TIME_WAIT entry on the director for
/// every probe (what HAProxy's checks do too).
async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .and_then(|s| s.set_zero_linger().map(|()| s))
    .map_err(|e| format!("connect: socket: {}", io_reason(&e)))?;
    socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect: {}", io_reason(&e)))
}

/// GET over HTTP/1.0; the status must be in `status`, and the first
/// [`MAX_CHECK_BODY`] bytes of the body contain `expect_body` if set.
async fn http(
    addr: SocketAddr,
    request: &[u8],
    status: (u16, u16),
    expect_body: Option<&[u8]>,
) -> Result<(), String> {
    let mut stream = connect(addr).await?;
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("http: write: {}", io_reason(&e)))?;

    // Without expect_body only the status line is read: the rest of the
    // response is discarded by the reset on close.
    let mut buf = Vec::with_capacity(HTTP_FIRST_READ);
    let line_end = loop {
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            break i;
        }
        if buf.len() >= MAX_HTTP_HEAD {
            return Err(format!(
                "http: no status line in the first {MAX_HTTP_HEAD} bytes"
            ));
        }
        if read_more(&mut stream, &mut buf, MAX_HTTP_HEAD).await? == 0 {
            return Err(if buf.is_empty() {
                "http: connection closed without a response".to_owned()
            } else {
                "http: connection closed in the status line".to_owned()
            });
        }
    };
    let code = parse_status_line(&buf[..line_end]).ok_or_else(|| {
        let line = String::from_utf8_lossy(&buf[..line_end.min(64)]);
        format!("http: invalid status line {:?}", line.trim_end())
    })?;
    let (lo, hi) = status;
    if !(lo..=hi).contains(&code) {
        return Err(if lo == hi {
            format!("http: status {code}, expected {lo}")
        } else {
            format!("http: status {code} not in {lo}-{hi}")
        });
    }
    let Some(needle) = expect_body else {
        return Ok(());
    };

    let limit = MAX_HTTP_HEAD + MAX_CHECK_BODY;
    let mut eof = false;
    let body_start = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        if eof || buf.len() >= MAX_HTTP_HEAD {
            return Err(format!(
                "http: no end of headers in the first {MAX_HTTP_HEAD} bytes"
            ));
        }
        eof = read_more(&mut stream, &mut buf, limit).await? == 0;
    };
    let body_limit = body_start + MAX_CHECK_BODY;
    // Search only what is new since the last search, plus an overlap for a
    // match split across reads.
    let mut searched = body_start;
    loop {
        let end = buf.len().min(body_limit);
        let from = searched
            .saturating_sub(needle.len().saturating_sub(1))
            .max(body_start);
        if contains(&buf[from..end], needle) {
            return Ok(());
        }
        searched = end;
        if eof || end >= body_limit {
            return Err(format!(
                "http: body does not contain {:?}",
                String::from_utf8_lossy(needle)
            ));
        }
        eof = read_more(&mut stream, &mut buf, body_limit).await? == 0;
    }
}

/// Reads once into `buf`, growing it up to `limit` bytes; 0 at EOF.
async fn read_more(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<usize, String> {
    let left = limit.saturating_sub(buf.len());
    if buf.len() == buf.capacity() {
        // Doubling, but never past the limit.
        buf.reserve(buf.capacity().clamp(1, left.max(1)));
    }
    let room = left.min(buf.capacity() - buf.len());
    let mut limited = (&mut *stream).take(room as u64);
    limited
        .read_buf(buf)
        .await
        .map_err(|e| format!("http: read: {}", io_reason(&e)))
}

/// `HTTP/x.y NNN ...`: the status code.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/")?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let code = rest.get(space + 1..space + 4)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    match rest.get(space + 4) {
        None | Some(b' ' | b'\r' | b'\n') => {}
        Some(_) => return None,
    }
    code.iter()
        .try_fold(0u16, |n, &d| Some(n * 10 + u16::from(d - b'0')))
}

/// The offset of the body: after the blank line ending the headers
/// (CRLF CRLF, or bare LF LF from sloppy servers).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Sends `payload` and waits for one datagram back (containing `expect` if
/// set, in its first [`MAX_CHECK_BODY`] bytes). The socket is connected, so
/// an ICMP port unreachable fails the probe at once.
async fn udp(addr: SocketAddr, payload: &[u8], expect: Option<&[u8]>) -> Result<(), String> {
    let local: IpAddr = if addr.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = UdpSocket::bind((local, 0))
        .await
        .map_err(|e| format!("udp: socket: {}", io_reason(&e)))?;
    socket
        .connect(addr)
        .await
        .map_err(|e| format!("udp: connect: {}", io_reason(&e)))?;
    socket
        .send(payload)
        .await
        .map_err(|e| format!("udp: send: {}", io_reason(&e)))?;
    let recv_err = |e: io::Error| format!("udp: {}", io_reason(&e));
    let Some(needle) = expect else {
        // Any reply will do; a truncated one too.
        let mut byte = [0u8; 1];
        socket.recv(&mut byte).await.map_err(recv_err)?;
        return Ok(());
    };
    let mut buf = Vec::with_capacity(MAX_CHECK_BODY);
    socket.recv_buf(&mut buf).await.map_err(recv_err)?;
    if contains(&buf, needle) {
        Ok(())
    } else {
        Err(format!(
            "udp: reply does not contain {:?}",
            String::from_utf8_lossy(needle)
        ))
    }
}

fn exit_result(status: ExitStatus) -> Result<(), String> {
    if status.success() {
        return Ok(());
    }
    Err(match (status.code(), status.signal()) {
        (Some(code), _) => format!("exec: exit status {code}"),
        (None, Some(signal)) => format!("exec: killed by signal {signal}"),
        (None, None) => format!("exec: {status}"),
    })
}

/// An I/O error as a short lowercase phrase: "connection refused", not
/// "Connection refused (os error 111)".
pub(super) fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => &text[..i],
        _ => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => format!("{:?}", e.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.0 200 OK\r"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.1 503"), Some(503));
        assert_eq!(parse_status_line(b"HTTP/1.1 204\r"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/2 404 Not Found"), Some(404));
        assert_eq!(parse_status_line(b"HTTP/1.1 20 OK"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 2000 OK"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 2x0 OK"), None);
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH_9.6"), None);
        assert_eq!(parse_status_line(b""), None);
    }

    #[test]
    fn heads_and_substrings() {
        assert_eq!(head_end(b"HTTP/1.0 200 OK\r\nA: b\r\n\r\nbody"), Some(25));
        assert_eq!(head_end(b"HTTP/1.0 200 OK\nA: b\n\nbody"), Some(22));
        assert_eq!(head_end(b"HTTP/1.0 200 OK\r\nA: b\r\n"), None);
        assert!(contains(b"all good here", b"good"));
        assert!(!contains(b"all go", b"good"));
        assert!(contains(b"", b""));
    }

    #[test]
    fn host_headers() {
        assert_eq!(host_header("10.0.0.1:80".parse().unwrap()), "10.0.0.1");
        assert_eq!(
            host_header("10.0.0.1:8080".parse().unwrap()),
            "10.0.0.1:8080"
        );
        assert_eq!(
            host_header("[2001:db8::1]:80".parse().unwrap()),
            "[2001:db8::1]"
        );
        assert_eq!(
            host_header("[2001:db8::1]:8080".parse().unwrap()),
            "[2001:db8::1]:8080"
        );
    }

    #[test]
    fn io_reasons_are_short() {
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(io_reason(&e), "connection refused");
        let e = io::Error::other("Weird thing");
        assert_eq!(io_reason(&e), "weird thing");
    }
}
