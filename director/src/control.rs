//! The control socket: a unix socket (mode 0600, so root only) speaking one
//! JSON request line and one JSON response line per connection. The daemon
//! answers in its main loop, so requests never race its own updates.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::reload::Report;
use crate::status::Status;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Conns {
        limit: usize,
    },
    /// `vs` is a virtual server's name or address; `server` a real
    /// server's address ("10.1.0.11:8080", or "10.1.0.11" when only one
    /// real server of the virtual server has that address).
    Weight {
        vs: String,
        server: String,
        /// As in the configuration, 0..=65535.
        weight: u16,
    },
    Drain {
        vs: String,
        server: String,
    },
    /// Ends a `Drain`.
    Undrain {
        vs: String,
        server: String,
    },
    Reload,
    /// What `Reload` would change now, applying nothing.
    Diff,
    /// Done when ready to take traffic (see `ready`), else Error.
    Ready,
}

/// One connection-table entry, like a line of `ipvsadm -L -n -c`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnEntry {
    pub protocol: String,
    pub state: String,
    pub expires_s: u64,
    pub client: String,
    pub virtual_server: String,
    pub real_server: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Response {
    Status(Box<Status>),
    Conns {
        total: usize,
        entries: Vec<ConnEntry>,
    },
    Done {
        message: String,
    },
    /// The answer to `Reload` and `Diff`.
    Reload(Report),
    Error {
        message: String,
    },
}

/// `director reload` exits with this when the file was applied but some of
/// its changes wait for a restart (1 is an error, 2 a usage error).
pub const EXIT_RESTART_NEEDED: u8 = 3;

impl Response {
    /// The client's exit status: 1 for an error, [`EXIT_RESTART_NEEDED`]
    /// for a reload (or dry run) with changes that need a restart, else 0.
    pub fn exit_code(&self) -> u8 {
        match self {
            Response::Error { .. } => 1,
            Response::Reload(r) if !r.restart_needed.is_empty() => EXIT_RESTART_NEEDED,
            _ => 0,
        }
    }
}

pub type Call = (Request, oneshot::Sender<Response>);

/// Binds the socket (a failure stops the start: a director nobody can reach
/// is no use).
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // A stale socket of a previous run (a live one would be another director
    // on the same socket, which the instance lock already rules out).
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(listener)
}

/// Serves the socket, forwarding each request to the daemon's loop.
pub async fn serve(listener: UnixListener, calls: mpsc::Sender<Call>) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener
            .accept()
            .await
            .context("accepting on the control socket")?;
        let calls = calls.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, calls).await {
                tracing::debug!("control connection: {e:#}");
            }
        });
    }
}

async fn answer(stream: UnixStream, calls: mpsc::Sender<Call>) -> anyhow::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    BufReader::new(r).read_line(&mut line).await?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(req) => {
            let (tx, rx) = oneshot::channel();
            calls.send((req, tx)).await.context("daemon loop gone")?;
            rx.await.context("daemon dropped the request")?
        }
        Err(e) => Response::Error {
            message: format!("bad request: {e}"),
        },
    };
    let mut out = serde_json::to_vec(&response)?;
    out.push(b'\n');
    w.write_all(&out).await?;
    Ok(())
}

/// Sends one request to a running director.
pub async fn call(path: &Path, req: &Request) -> anyhow::Result<Response> {
    let stream = UnixStream::connect(path).await.with_context(|| {
        format!(
            "cannot reach director at {} (is `director run` running? are you root?)",
            path.display()
        )
    })?;
    let (r, mut w) = stream.into_split();
    let mut out = serde_json::to_vec(req)?;
    out.push(b'\n');
    w.write_all(&out).await?;
    let mut line = String::new();
    BufReader::new(r).read_line(&mut line).await?;
    if line.is_empty() {
        bail!("director closed the connection without answering");
    }
    serde_json::from_str(&line).context("unreadable answer from director")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json() {
        let r = Request::Weight {
            vs: "web".into(),
            server: "10.1.0.11".into(),
            weight: 5,
        };
        let j = serde_json::to_string(&r).expect("serialize");
        assert_eq!(
            j,
            r#"{"cmd":"weight","vs":"web","server":"10.1.0.11","weight":5}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"reload"}"#).expect("parse"),
            Request::Reload
        );
        let big = r#"{"cmd":"weight","vs":"web","server":"10.1.0.11","weight":4000000000}"#;
        assert!(
            serde_json::from_str::<Request>(big).is_err(),
            "a weight past 65535 is a bad request"
        );
    }

    #[tokio::test]
    async fn a_request_round_trips_through_the_socket() {
        let dir = std::env::temp_dir().join(format!("director-ctl-{}", std::process::id()));
        let path = dir.join("s.sock");
        let (tx, mut rx) = mpsc::channel::<Call>(4);
        let listener = bind(&path).expect("bind the control socket");
        tokio::spawn(serve(listener, tx));
        tokio::spawn(async move {
            while let Some((req, reply)) = rx.recv().await {
                let _ = reply.send(Response::Done {
                    message: format!("{req:?}"),
                });
            }
        });
        let mut got = None;
        for _ in 0..50 {
            if let Ok(r) = call(&path, &Request::Reload).await {
                got = Some(r);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(
            got,
            Some(Response::Done {
                message: "Reload".into()
            })
        );
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "root only");
        let _ = std::fs::remove_dir_all(dir);
    }
}
