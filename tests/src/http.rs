//! A tiny HTTP/1.0 client on std sockets, for use inside a lab namespace.
//!
//! Every request opens a new TCP connection (`Connection: close`), so each one is a new
//! flow for the director to schedule. Run these from a thread that entered the client
//! namespace (`Lab::in_ns`): sockets belong to the namespace they were created in.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Connect and per-read/write timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub io: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            io: Duration::from_secs(5),
        }
    }
}

/// A parsed response: status, headers (names lower-cased) and the whole body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `X-Server` header the lab server sets: which real server answered.
    pub fn server(&self) -> Option<&str> {
        self.header("x-server")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Opens a TCP connection to `dst`, first binding to `src` (port 0) when given.
pub fn connect(src: Option<Ipv4Addr>, dst: SocketAddr, t: &Timeouts) -> Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    if let Some(src) = src {
        socket
            .bind(&SockAddr::from(SocketAddrV4::new(src, 0)))
            .with_context(|| format!("bind {src}"))?;
    }
    socket
        .connect_timeout(&dst.into(), t.connect)
        .with_context(|| format!("connect {dst}"))?;
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(t.io))?;
    stream.set_write_timeout(Some(t.io))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// `GET path` over a new connection.
pub fn http_get(src: Option<Ipv4Addr>, dst: SocketAddr, path: &str) -> Result<Response> {
    get_with(&Timeouts::default(), src, dst, path)
}

/// `GET path` with explicit timeouts.
pub fn get_with(
    t: &Timeouts,
    src: Option<Ipv4Addr>,
    dst: SocketAddr,
    path: &str,
) -> Result<Response> {
    request(t, src, dst, "GET", path, &[])
}

/// `POST /upload` of `body` over a new connection.
pub fn http_post_upload(src: Option<Ipv4Addr>, dst: SocketAddr, body: &[u8]) -> Result<Response> {
    request(&Timeouts::default(), src, dst, "POST", "/upload", body)
}

fn request(
    t: &Timeouts,
    src: Option<Ipv4Addr>,
    dst: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Response> {
    let mut stream = connect(src, dst, t)?;
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {dst}\r\nUser-Agent: director-tests\r\nConnection: close\r\n"
    );
    if method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .context("send request head")?;
    stream.write_all(body).context("send request body")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).with_context(|| {
        format!(
            "read response to {method} {path} from {dst} ({} bytes so far)",
            raw.len()
        )
    })?;
    parse_response(raw).with_context(|| format!("{method} {path} from {dst}"))
}

/// Parses a whole `Connection: close` response; a body shorter or longer than its
/// `Content-Length` is an error (a truncated transfer must not pass as a success).
pub fn parse_response(raw: Vec<u8>) -> Result<Response> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("no complete response head in {} bytes", raw.len());
    };
    let head = std::str::from_utf8(&raw[..end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = raw[end + 4..].to_vec();
    let response = Response {
        status,
        headers,
        body,
    };
    if let Some(len) = response.header("content-length") {
        let len: usize = len
            .parse()
            .with_context(|| format!("bad Content-Length {len:?}"))?;
        if len != response.body.len() {
            bail!(
                "Content-Length {len} but {} body bytes arrived",
                response.body.len()
            );
        }
    }
    Ok(response)
}

/// One HTTP/1.1 keep-alive connection: many requests, one TCP flow (so the director
/// schedules it once, and every answer must come from the same real server).
#[derive(Debug)]
pub struct KeepAlive {
    reader: BufReader<TcpStream>,
    dst: SocketAddr,
}

impl KeepAlive {
    /// Connects to `dst` (from `src` when given). Call it on a thread inside the
    /// client's namespace; the connection can then be used from any thread.
    pub fn connect(src: Option<Ipv4Addr>, dst: SocketAddr, t: &Timeouts) -> Result<Self> {
        let stream = connect(src, dst, t)?;
        Ok(Self {
            reader: BufReader::new(stream),
            dst,
        })
    }

    /// The connection's local address (its flow's source).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.reader.get_ref().local_addr()?)
    }

    /// `GET path` on this connection, keeping it open. The response must carry a
    /// `Content-Length` and keep the connection alive.
    pub fn get(&mut self, path: &str) -> Result<Response> {
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: director-tests\r\nConnection: keep-alive\r\n\r\n",
            self.dst
        );
        self.reader
            .get_mut()
            .write_all(head.as_bytes())
            .with_context(|| format!("send GET {path} to {}", self.dst))?;
        let mut raw = Vec::new();
        loop {
            let before = raw.len();
            self.reader
                .read_until(b'\n', &mut raw)
                .with_context(|| format!("read response head from {}", self.dst))?;
            if raw.len() == before {
                bail!(
                    "{} closed the connection ({} bytes of a response head)",
                    self.dst,
                    before
                );
            }
            if raw.ends_with(b"\r\n\r\n") {
                break;
            }
        }
        let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        let len: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .with_context(|| format!("no Content-Length from {}", self.dst))?
            .trim()
            .parse()
            .context("bad Content-Length")?;
        let start = raw.len();
        raw.resize(start + len, 0);
        self.reader
            .read_exact(&mut raw[start..])
            .with_context(|| format!("read {len}-byte body from {}", self.dst))?;
        let response = parse_response(raw)?;
        if response
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
        {
            bail!("{} closes the connection after this response", self.dst);
        }
        Ok(response)
    }
}

/// Outcome of a batch of requests: answers per real server and the failures.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub by_server: BTreeMap<String, usize>,
    pub failures: usize,
    /// The first few failures, for the assertion message.
    pub errors: Vec<String>,
}

impl Tally {
    const KEEP_ERRORS: usize = 5;

    pub fn count(&self, server: &str) -> usize {
        self.by_server.get(server).copied().unwrap_or(0)
    }

    pub fn succeeded(&self) -> usize {
        self.by_server.values().sum()
    }

    pub fn total(&self) -> usize {
        self.succeeded() + self.failures
    }

    /// `server`'s share of all requests (failures included), in percent.
    pub fn share_percent(&self, server: &str) -> f64 {
        match self.total() {
            0 => 0.0,
            total => 100.0 * self.count(server) as f64 / total as f64,
        }
    }

    fn fail(&mut self, what: String) {
        self.failures += 1;
        if self.errors.len() < Self::KEEP_ERRORS {
            self.errors.push(what);
        }
    }

    /// Records one request: a 200 whose body is `<X-Server>\n` counts for that server,
    /// anything else is a failure.
    pub fn record(&mut self, result: Result<Response>) {
        match result {
            Ok(r) if r.status == 200 => match r.server() {
                Some(name) if r.body == format!("{name}\n").as_bytes() => {
                    *self.by_server.entry(name.to_owned()).or_default() += 1;
                }
                _ => self.fail(format!(
                    "200 without a matching X-Server and body: {:?}",
                    r.text()
                )),
            },
            Ok(r) => self.fail(format!("status {}", r.status)),
            Err(e) => self.fail(format!("{e:#}")),
        }
    }
}

/// A batch gives up after this many failures in a row…
pub const GIVE_UP_AFTER_FAILURES: usize = 10;
/// …or after this long; requests not sent count as failures.
pub const BATCH_TIME_LIMIT: Duration = Duration::from_secs(120);

/// `n` sequential `GET path` requests, each on a new connection. Source addresses cycle
/// through `sources` (request i binds to `sources[i % len]`); empty means unbound.
/// Bounded in time: see [`GIVE_UP_AFTER_FAILURES`] and [`BATCH_TIME_LIMIT`].
pub fn get_many(n: usize, sources: &[Ipv4Addr], dst: SocketAddr, path: &str) -> Tally {
    let deadline = Instant::now() + BATCH_TIME_LIMIT;
    let mut tally = Tally::default();
    let mut in_a_row = 0;
    for i in 0..n {
        if in_a_row >= GIVE_UP_AFTER_FAILURES || Instant::now() >= deadline {
            tally.fail(format!("gave up: {} of {n} requests not sent", n - i));
            tally.failures += n - i - 1;
            break;
        }
        let src = (!sources.is_empty()).then(|| sources[i % sources.len()]);
        let before = tally.failures;
        tally.record(http_get(src, dst, path));
        in_a_row = if tally.failures > before {
            in_a_row + 1
        } else {
            0
        };
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_content_length() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nX-Server: rs1\r\nContent-Length: 4\r\n\r\nrs1\n".to_vec(),
        )
        .unwrap();
        assert_eq!(
            (r.status, r.server(), r.text().as_str()),
            (200, Some("rs1"), "rs1\n")
        );
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nrs1\n".to_vec()).is_err()
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Le".to_vec()).is_err());
    }

    #[test]
    fn tally_counts_only_consistent_answers() {
        let ok = |name: &str, body: &str| {
            Ok(Response {
                status: 200,
                headers: vec![("x-server".into(), name.into())],
                body: body.as_bytes().to_vec(),
            })
        };
        let mut t = Tally::default();
        t.record(ok("rs1", "rs1\n"));
        t.record(ok("rs1", "rs2\n"));
        t.record(Err(anyhow::anyhow!("refused")));
        assert_eq!((t.count("rs1"), t.failures, t.total()), (1, 2, 3));
        assert!((t.share_percent("rs1") - 100.0 / 3.0).abs() < 1e-9);
    }
}
