//! A TCP proxy between a sender and a listener that records the frames the
//! sender writes, and may tamper with them: what an attacker on the path
//! sees and can do.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

use crate::sync::frame;

/// Given the connection's and the frame's number (from 0, the handshake's
/// first message) and the frame, what to forward instead.
pub(super) type Tamper = fn(usize, usize, Vec<u8>) -> Vec<Vec<u8>>;

/// Forwards every frame as it is.
pub(super) fn untouched(_: usize, _: usize, frame: Vec<u8>) -> Vec<Vec<u8>> {
    vec![frame]
}

pub(super) struct Proxy {
    pub addr: SocketAddr,
    /// Per connection, the frames the sender wrote.
    captured: Arc<Mutex<Vec<Vec<Vec<u8>>>>>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub(super) async fn start(
        listener: TcpListener,
        upstream: SocketAddr,
        tamper: Tamper,
    ) -> Proxy {
        let addr = listener.local_addr().unwrap();
        let captured = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let captured = captured.clone();
            async move {
                let mut conns = JoinSet::new();
                loop {
                    let (client, _) = listener.accept().await.unwrap();
                    let conn = {
                        let mut c = captured.lock().unwrap();
                        c.push(Vec::new());
                        c.len() - 1
                    };
                    conns.spawn(forward(client, upstream, conn, captured.clone(), tamper));
                }
            }
        });
        Proxy {
            addr,
            captured,
            task,
        }
    }

    /// The frames the sender wrote on connection `conn` so far.
    pub(super) fn captured(&self, conn: usize) -> Vec<Vec<u8>> {
        self.captured.lock().unwrap()[conn].clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    conn: usize,
    captured: Arc<Mutex<Vec<Vec<Vec<u8>>>>>,
    tamper: Tamper,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_rd, mut client_wr) = client.split();
    let (mut server_rd, mut server_wr) = server.split();
    let up = async {
        let mut msg = Vec::new();
        for n in 0.. {
            if frame::read(&mut client_rd, &mut msg).await.is_err() {
                return;
            }
            captured.lock().unwrap()[conn].push(msg.clone());
            for f in tamper(conn, n, msg.clone()) {
                if frame::write(&mut server_wr, &f).await.is_err() {
                    return;
                }
            }
        }
    };
    let down = tokio::io::copy(&mut server_rd, &mut client_wr);
    // Either side closing ends both.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}
