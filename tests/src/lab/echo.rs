//! A one-line TCP echo from the client to the director's own address: the lab's
//! addressing checks use it, and the director tests that its XDP program leaves the
//! host's own traffic alone.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};

use super::{Lab, Role};
use crate::http::{self, Timeouts};

impl Lab {
    /// Sends a line from the client (from `src` if given) to a one-shot echo listener
    /// on `addr` in the director's namespace and panics unless it comes back; returns
    /// the client address the listener saw.
    pub fn echo_to_director(&self, src: Option<IpAddr>, addr: SocketAddr) -> SocketAddr {
        // The socket is created in the director's namespace and keeps it on any thread.
        let listener = self
            .in_ns(Role::Director, || TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("bind an echo listener on {addr} in the director: {e}"));
        let server = std::thread::spawn(move || -> std::io::Result<SocketAddr> {
            let (mut s, peer) = listener.accept()?;
            let mut line = String::new();
            BufReader::new(s.try_clone()?).read_line(&mut line)?;
            s.write_all(line.as_bytes())?;
            Ok(peer)
        });
        let sent = "ping\n";
        let echoed = self.in_client(|| {
            let mut s = http::connect_from(src, addr, &Timeouts::default())?;
            s.write_all(sent.as_bytes())?;
            let mut back = String::new();
            s.read_to_string(&mut back)?;
            anyhow::Ok(back)
        });
        match echoed {
            Ok(back) => assert_eq!(back, sent, "echo from the director's {addr}"),
            Err(e) => panic!("client could not reach the director's own {addr}: {e:#}"),
        }
        server
            .join()
            .expect("echo listener thread")
            .unwrap_or_else(|e| panic!("echo listener on {addr}: {e}"))
    }
}
