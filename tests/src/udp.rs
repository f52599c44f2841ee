//! A UDP client for the lab's real servers, which answer every datagram with
//! `<name> <payload>` (see `director-lab-server --udp`).
//!
//! Run these from a thread inside the client namespace (`Lab::in_ns`), as with
//! [`crate::http`]. A lost datagram is sent again on the same socket (so it stays the
//! same flow), a bounded number of times; [`Batch::resent`] counts those resends so a
//! test can tell a lossy path from a clean one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use socket2::{Domain, Protocol, Socket, Type};

use crate::http::Tally;

/// How long to wait for each answer, and how many datagrams to send at most.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub per_try: Duration,
    pub tries: usize,
}

impl Default for Retry {
    /// 2 s per try (an answer is never that late in a working lab, even a busy one),
    /// 3 tries.
    fn default() -> Self {
        Self {
            per_try: Duration::from_secs(2),
            tries: 3,
        }
    }
}

/// An answer: which server sent it and how many datagrams it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub server: String,
    pub sent: usize,
}

/// A UDP socket of `dst`'s family bound to `src` (unspecified: any address) and `port`
/// (0: an ephemeral one). IPv6 sockets are IPv6-only.
pub fn bind(src: Option<IpAddr>, port: u16, dst: SocketAddr) -> Result<UdpSocket> {
    let ip = src.unwrap_or(match dst {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let local = SocketAddr::new(ip, port);
    let socket = Socket::new(Domain::for_address(dst), Type::DGRAM, Some(Protocol::UDP))?;
    if dst.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket
        .bind(&local.into())
        .with_context(|| format!("bind UDP {local}"))?;
    Ok(socket.into())
}

/// Sends `payload` from `sock` to `dst` and waits for `<name> <payload>` from `dst`
/// itself (an answer from any other address is an error: in DR mode the real server
/// must answer from the VIP). Sends again after each `retry.per_try` without an answer.
pub fn exchange(
    sock: &UdpSocket,
    dst: SocketAddr,
    payload: &[u8],
    retry: &Retry,
) -> Result<Answer> {
    let mut buf = vec![0u8; 2048];
    for sent in 1..=retry.tries.max(1) {
        sock.send_to(payload, dst)
            .with_context(|| format!("send to {dst}"))?;
        let deadline = Instant::now() + retry.per_try;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left))?;
            let (n, from) = match sock.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => return Err(e).with_context(|| format!("receive from {dst}")),
            };
            let got = &buf[..n];
            if from != dst {
                bail!(
                    "answer from {from}, expected it from {dst}: {:?}",
                    String::from_utf8_lossy(got)
                );
            }
            let Some(space) = got.iter().position(|&b| b == b' ') else {
                bail!("malformed answer {:?}", String::from_utf8_lossy(got));
            };
            if &got[space + 1..] != payload {
                // A late answer to an earlier request on a reused port: not ours.
                continue;
            }
            let server = std::str::from_utf8(&got[..space])
                .context("server name is not UTF-8")?
                .to_owned();
            return Ok(Answer { server, sent });
        }
    }
    bail!(
        "no answer from {dst} to {:?} after {} datagrams, {:?} apart",
        String::from_utf8_lossy(payload),
        retry.tries.max(1),
        retry.per_try
    )
}

/// One request from a fresh socket on `src` (any address) and an ephemeral port.
pub fn ask(src: Option<IpAddr>, dst: SocketAddr, payload: &[u8], retry: &Retry) -> Result<Answer> {
    let sock = bind(src, 0, dst)?;
    exchange(&sock, dst, payload, retry)
}

/// Outcome of [`many`]: answers per server, failures, and datagrams sent again.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub tally: Tally,
    /// Datagrams sent beyond the first of each exchange (lost requests or answers).
    pub resent: usize,
}

/// The longest a batch may take; exchanges not started by then count as failures.
pub const BATCH_TIME_LIMIT: Duration = Duration::from_secs(60);

/// `n` exchanges with `dst`, each from its own socket on `src` and source port
/// `first_port + i`, so each is a new flow for the director (as long as the ports were
/// not used against `dst` before: the director keeps UDP flows for `udp_timeout`).
/// Payloads are `q<i>`. Gives up after [`crate::http::GIVE_UP_AFTER_FAILURES`]
/// failures in a row or [`BATCH_TIME_LIMIT`].
pub fn many(
    n: usize,
    src: Option<IpAddr>,
    first_port: u16,
    dst: SocketAddr,
    retry: &Retry,
) -> Batch {
    assert!(
        usize::from(first_port) + n <= usize::from(u16::MAX),
        "ports {first_port}+{n} do not fit"
    );
    let deadline = Instant::now() + BATCH_TIME_LIMIT;
    let mut batch = Batch::default();
    let mut in_a_row = 0;
    for i in 0..n {
        if in_a_row >= crate::http::GIVE_UP_AFTER_FAILURES || Instant::now() >= deadline {
            batch.tally.record_answer(Err(anyhow::anyhow!(
                "gave up: {} of {n} exchanges not tried",
                n - i
            )));
            batch.tally.failures += n - i - 1;
            break;
        }
        let port = first_port + i as u16;
        let result = bind(src, port, dst)
            .and_then(|sock| exchange(&sock, dst, format!("q{i}").as_bytes(), retry))
            .with_context(|| format!("exchange {i} from port {port}"));
        let ok = result.is_ok();
        if let Ok(a) = &result {
            batch.resent += a.sent - 1;
        }
        batch.tally.record_answer(result.map(|a| a.server));
        in_a_row = if ok { 0 } else { in_a_row + 1 };
    }
    batch
}
