//! The lab's real server: a small HTTP/1.1 (keep-alive) and HTTP/1.0 server that says
//! who it is, serves a deterministic download and hashes uploads.
//!
//! - `GET /`          → `<name>\n`, header `X-Server: <name>`
//! - `GET /bytes/<n>` → n bytes of `director_tests::pattern::pattern_byte` (n ≤ 64 MiB)
//! - `POST /upload`   → `<len> <fnv1a-64 hex>\n` of the Content-Length body
//! - anything else    → 404
//!
//! With `--udp ADDR` (repeatable) it also answers every UDP datagram on ADDR with
//! `<name> <payload>`, from the address the socket is bound to: bind a DR real
//! server's UDP socket to the VIP itself, or the answer leaves from its own address.
//!
//! With `--stream ADDR` (repeatable) it also serves long-lived TCP connections on ADDR,
//! for the failover tests: the client's first line is `push <ms>` or `echo`, the
//! server answers `<name>\n`, then either sends `<n>\n` (n = 0, 1, …) every `<ms>`
//! milliseconds without reading (push) or sends every line it reads back (echo).
//!
//! An IPv6 wildcard address (`[::]:8080`) is dual-stack (IPV6_V6ONLY off): it serves
//! IPv4 clients too.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};

use anyhow::Context;
use clap::Parser;
use director_tests::pattern::{Fnv1a, fill_pattern};
use socket2::{Domain, Protocol, Socket, Type};

const MAX_DOWNLOAD: u64 = 64 << 20;
const MAX_HEAD_LINES: usize = 100;
const CHUNK: usize = 64 << 10;

#[derive(Parser)]
#[command(about = "HTTP server for director's network-namespace lab")]
struct Args {
    /// Name reported in bodies and the X-Server header.
    #[arg(long)]
    name: String,
    /// Address to listen on for HTTP (`[::]:PORT` serves IPv4 and IPv6).
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Also answer UDP datagrams on this address (repeatable).
    #[arg(long)]
    udp: Vec<SocketAddr>,
    /// Also serve long-lived connections (push or echo) on this address (repeatable).
    #[arg(long)]
    stream: Vec<SocketAddr>,
}

/// A socket for `addr`: dual-stack when it is IPv6, address reuse for TCP.
fn socket(addr: SocketAddr, ty: Type, proto: Protocol) -> anyhow::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    if ty == Type::STREAM {
        socket.set_reuse_address(true)?;
    }
    socket
        .bind(&addr.into())
        .with_context(|| format!("bind {addr}"))?;
    Ok(socket)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let name: &'static str = Box::leak(args.name.into_boxed_str());
    // Bind everything before listening for HTTP: a server that accepts TCP is
    // ready for UDP too.
    let udp = args
        .udp
        .iter()
        .map(|&addr| Ok(UdpSocket::from(socket(addr, Type::DGRAM, Protocol::UDP)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for sock in udp {
        println!("answering UDP on {} as {name}", sock.local_addr()?);
        std::thread::spawn(move || udp_echo(&sock, name));
    }
    for &addr in &args.stream {
        let listener = tcp_listener(addr)?;
        println!("serving long-lived connections on {addr} as {name}");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                // A connection the client (or a failover) broke: nothing to report.
                std::thread::spawn(move || {
                    let _ = long_lived(stream, name);
                });
            }
        });
    }
    let listener = tcp_listener(args.listen)?;
    println!("listening on {} as {name}", listener.local_addr()?);
    io::stdout().flush()?;
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                std::thread::spawn(move || {
                    // A peer resetting mid-request is normal under load; nothing to report.
                    let _ = serve(stream, name);
                });
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
    Ok(())
}

fn tcp_listener(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = socket(addr, Type::STREAM, Protocol::TCP)?;
    listener.listen(1024)?;
    Ok(TcpListener::from(listener))
}

/// One `--stream` connection: `push <ms>` or `echo`, see the module docs.
fn long_lived(stream: TcpStream, name: &str) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut w = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mode: Vec<&str> = line.split_whitespace().collect();
    match mode[..] {
        ["push", ms] => {
            let every = ms
                .parse()
                .map(std::time::Duration::from_millis)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            writeln!(w, "{name}")?;
            for n in 0u64.. {
                writeln!(w, "{n}")?;
                std::thread::sleep(every);
            }
            Ok(())
        }
        ["echo"] => {
            writeln!(w, "{name}")?;
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                w.write_all(line.as_bytes())?;
            }
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected `push <ms>` or `echo`, got {line:?}"),
        )),
    }
}

/// Answers each datagram with `<name> <payload>`, to where it came from.
fn udp_echo(sock: &UdpSocket, name: &str) {
    let mut buf = vec![0u8; 65536];
    loop {
        match sock.recv_from(&mut buf) {
            Ok((n, peer)) => {
                let mut answer = Vec::with_capacity(name.len() + 1 + n);
                answer.extend_from_slice(name.as_bytes());
                answer.push(b' ');
                answer.extend_from_slice(&buf[..n]);
                if let Err(e) = sock.send_to(&answer, peer) {
                    eprintln!("udp send to {peer}: {e}");
                }
            }
            Err(e) => {
                eprintln!("udp recv: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

struct Request {
    method: String,
    path: String,
    keep_alive: bool,
    content_length: Option<u64>,
    expect_continue: bool,
    chunked: bool,
}

/// Reads one request head; `None` on a clean EOF between requests.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (method, path, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(p), Some(v)) => (m.to_owned(), p.to_owned(), v.to_owned()),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad request line",
            ));
        }
    };
    let mut req = Request {
        method,
        path,
        keep_alive: version == "HTTP/1.1",
        content_length: None,
        expect_continue: false,
        chunked: false,
    };
    for _ in 0..MAX_HEAD_LINES {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Ok(Some(req));
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
        match k.as_str() {
            "connection" if v == "close" => req.keep_alive = false,
            "connection" if v == "keep-alive" => req.keep_alive = true,
            "content-length" => req.content_length = v.parse().ok(),
            "expect" => req.expect_continue = v == "100-continue",
            "transfer-encoding" => req.chunked = v != "identity",
            _ => {}
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "request head too long",
    ))
}

fn serve(stream: TcpStream, name: &str) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut w = BufWriter::with_capacity(CHUNK, stream);
    while let Some(mut req) = read_head(&mut reader)? {
        // A body we do not read would be parsed as the next request: close instead.
        let has_body = req.chunked || req.content_length.is_some_and(|n| n > 0);
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/") => {
                respond(&mut w, &req, name, 200, format!("{name}\n").as_bytes())?;
            }
            ("GET", p) if p.starts_with("/bytes/") => match p["/bytes/".len()..].parse::<u64>() {
                Ok(n) if n <= MAX_DOWNLOAD => download(&mut w, &req, name, n)?,
                Ok(_) => respond(&mut w, &req, name, 400, b"at most 64 MiB\n")?,
                Err(_) => respond(&mut w, &req, name, 404, b"not found\n")?,
            },
            ("POST", "/upload") => match req.content_length {
                Some(len) if !req.chunked => {
                    if req.expect_continue {
                        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
                        w.flush()?;
                    }
                    let mut hash = Fnv1a::new();
                    let mut body = (&mut reader).take(len);
                    let mut buf = vec![0; CHUNK];
                    let mut got = 0u64;
                    loop {
                        let n = body.read(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        hash.update(&buf[..n]);
                        got += n as u64;
                    }
                    if got != len {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    let answer = format!("{got} {:016x}\n", hash.finish());
                    respond(&mut w, &req, name, 200, answer.as_bytes())?;
                }
                _ => {
                    req.keep_alive = false;
                    respond(&mut w, &req, name, 411, b"Content-Length required\n")?;
                }
            },
            _ => {
                req.keep_alive &= !has_body;
                respond(&mut w, &req, name, 404, b"not found\n")?;
            }
        }
        w.flush()?;
        if !req.keep_alive {
            break;
        }
    }
    Ok(())
}

fn head(w: &mut impl Write, req: &Request, name: &str, status: u16, len: u64) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        411 => "Length Required",
        _ => "",
    };
    let connection = if req.keep_alive {
        "keep-alive"
    } else {
        "close"
    };
    write!(
        w,
        "HTTP/1.1 {status} {reason}\r\nServer: director-lab-server\r\nX-Server: {name}\r\n\
         Content-Type: text/plain\r\nContent-Length: {len}\r\nConnection: {connection}\r\n\r\n"
    )
}

fn respond(
    w: &mut impl Write,
    req: &Request,
    name: &str,
    status: u16,
    body: &[u8],
) -> io::Result<()> {
    head(w, req, name, status, body.len() as u64)?;
    w.write_all(body)
}

fn download(w: &mut impl Write, req: &Request, name: &str, n: u64) -> io::Result<()> {
    head(w, req, name, 200, n)?;
    let mut buf = vec![0; CHUNK];
    let mut sent = 0u64;
    while sent < n {
        let len = (n - sent).min(CHUNK as u64) as usize;
        fill_pattern(sent, &mut buf[..len]);
        w.write_all(&buf[..len])?;
        sent += len as u64;
    }
    Ok(())
}
