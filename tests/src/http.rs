//! A tiny HTTP/1.0 client on std sockets, for use inside a lab namespace.
//!
//! Every request opens a new TCP connection (`Connection: close`), so each one is a new
//! flow for the director to schedule. Run these from a thread that entered the client
//! namespace (`Lab::in_ns`): sockets belong to the namespace they were created in.
//!
//! The `*_from` variants take any source address, IPv4 or IPv6; [`KeepAlive`] holds
//! one HTTP/1.1 connection open across requests.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
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
    connect_from(src.map(IpAddr::V4), dst, t)
}

/// [`connect`] from any source address (of `dst`'s family).
pub fn connect_from(src: Option<IpAddr>, dst: SocketAddr, t: &Timeouts) -> Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(dst), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(src) = src {
        socket
            .bind(&SockAddr::from(SocketAddr::new(src, 0)))
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
    request(t, src.map(IpAddr::V4), dst, "GET", path, &[])
}

/// `GET path` from any source address.
pub fn get_from(
    t: &Timeouts,
    src: Option<IpAddr>,
    dst: SocketAddr,
    path: &str,
) -> Result<Response> {
    request(t, src, dst, "GET", path, &[])
}

/// `POST /upload` of `body` over a new connection.
pub fn http_post_upload(src: Option<Ipv4Addr>, dst: SocketAddr, body: &[u8]) -> Result<Response> {
    request(
        &Timeouts::default(),
        src.map(IpAddr::V4),
        dst,
        "POST",
        "/upload",
        body,
    )
}

fn request(
    t: &Timeouts,
    src: Option<IpAddr>,
    dst: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Response> {
    let mut stream = connect_from(src, dst, t)?;
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
    let (status, headers) = parse_head(&raw[..end])?;
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

/// Status and headers (names lower-cased) of a response head without its final
/// blank line.
fn parse_head(head: &[u8]) -> Result<(u16, Vec<(String, String)>)> {
    let head = std::str::from_utf8(head).context("response head is not UTF-8")?;
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
    Ok((status, headers))
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

    /// Records one answer naming the server that gave it (UDP, keep-alive requests):
    /// `Ok(name)` counts for `name`, an error is a failure.
    pub fn record_answer(&mut self, result: Result<String>) {
        match result {
            Ok(name) => *self.by_server.entry(name).or_default() += 1,
            Err(e) => self.fail(format!("{e:#}")),
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
    let sources: Vec<IpAddr> = sources.iter().copied().map(IpAddr::V4).collect();
    get_many_from(n, &sources, dst, path)
}

/// [`get_many`] with sources of any family (that of `dst`).
pub fn get_many_from(n: usize, sources: &[IpAddr], dst: SocketAddr, path: &str) -> Tally {
    let t = Timeouts::default();
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
        tally.record(get_from(&t, src, dst, path));
        in_a_row = if tally.failures > before {
            in_a_row + 1
        } else {
            0
        };
    }
    tally
}

/// One HTTP/1.1 keep-alive connection: requests go one after the other over the same
/// TCP connection (the same flow for the director), which stays open until dropped.
/// Dropping it closes the socket: the client sends FIN.
#[derive(Debug)]
pub struct KeepAlive {
    reader: BufReader<TcpStream>,
    dst: SocketAddr,
    /// The real server that answered the first request.
    pub server: String,
}

impl KeepAlive {
    /// Connects (from `src` if given) and sends `GET /` to learn which real server
    /// answers.
    pub fn open(t: &Timeouts, src: Option<IpAddr>, dst: SocketAddr) -> Result<Self> {
        let stream = connect_from(src, dst, t)?;
        let mut conn = Self {
            reader: BufReader::new(stream),
            dst,
            server: String::new(),
        };
        let r = conn.get("/")?;
        conn.server = match r.server() {
            Some(name) if r.status == 200 && r.body == format!("{name}\n").as_bytes() => {
                name.to_owned()
            }
            _ => bail!("keep-alive GET / from {dst}: unexpected answer {r:?}"),
        };
        Ok(conn)
    }

    /// `GET path` on this connection; the response must say `Connection: keep-alive`
    /// and carry a Content-Length.
    pub fn get(&mut self, path: &str) -> Result<Response> {
        let dst = self.dst;
        let head =
            format!("GET {path} HTTP/1.1\r\nHost: {dst}\r\nUser-Agent: director-tests\r\n\r\n");
        self.reader
            .get_mut()
            .write_all(head.as_bytes())
            .context("send keep-alive request")?;
        let mut raw = Vec::new();
        loop {
            let before = raw.len();
            let n = self
                .reader
                .read_until(b'\n', &mut raw)
                .with_context(|| format!("read response head from {dst}"))?;
            if n == 0 {
                bail!("{dst} closed the keep-alive connection");
            }
            if &raw[before..] == b"\r\n" && raw.len() >= 4 {
                break;
            }
        }
        let head = &raw[..raw.len() - 4];
        let (status, headers) =
            parse_head(head).with_context(|| format!("GET {path} from {dst}"))?;
        let mut r = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = r
            .header("content-length")
            .with_context(|| format!("no Content-Length from {dst}"))?
            .parse()
            .context("bad Content-Length")?;
        r.body.resize(len, 0);
        self.reader
            .read_exact(&mut r.body)
            .with_context(|| format!("read {len} body bytes from {dst}"))?;
        anyhow::ensure!(
            r.header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("keep-alive")),
            "{dst} did not keep the connection alive: {:?}",
            r.headers
        );
        Ok(r)
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Closes the connection from the client side (FIN) and waits for the server's FIN
    /// in return: when this returns, both FINs have passed the director. Anything the
    /// server sends before its FIN is an error.
    pub fn close(mut self) -> Result<()> {
        let dst = self.dst;
        self.reader
            .get_ref()
            .shutdown(std::net::Shutdown::Write)
            .with_context(|| format!("shut down the connection to {dst}"))?;
        let mut rest = Vec::new();
        self.reader
            .read_to_end(&mut rest)
            .with_context(|| format!("wait for {dst} to close"))?;
        anyhow::ensure!(
            rest.is_empty(),
            "{dst} sent {} unexpected bytes before closing",
            rest.len()
        );
        Ok(())
    }
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
