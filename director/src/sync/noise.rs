//! The cryptography: a Noise `NNpsk0` handshake per TCP connection, keyed by
//! the shared key file, then the session's AEAD for every message.
//!
//! Both sides make fresh ephemeral keys for each connection, so the session
//! keys are new each time: a capture of an earlier connection, or of one
//! from before a restart, does not decrypt under them. Within a session
//! Noise's implicit nonces make a replayed, duplicated or reordered message
//! fail authentication.

use std::io;

use hkdf::Hkdf;
use sha2::Sha256;
use snow::{Builder, HandshakeState, TransportState, params::NoiseParams};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::{
    frame,
    status::Reason,
    wire::{Hello, HelloError, MAX_MESSAGE},
};

const PATTERN: &str = "Noise_NNpsk0_25519_ChaChaPoly_SHA256";
/// HKDF's info: a key file used for anything else yields another PSK.
const PSK_INFO: &[u8] = b"director sync v1 psk";

/// The Noise pre-shared key derived from the key file's bytes.
#[derive(Clone)]
pub(super) struct Psk([u8; 32]);

impl Psk {
    pub(super) fn derive(key: &[u8]) -> Psk {
        let mut psk = [0; 32];
        Hkdf::<Sha256>::new(None, key)
            .expand(PSK_INFO, &mut psk)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Psk(psk)
    }

    fn builder(&self) -> Builder<'_> {
        let params: NoiseParams = PATTERN.parse().expect("a valid Noise pattern");
        Builder::new(params)
            .psk(0, &self.0)
            .expect("psk0 is a valid location for NNpsk0")
    }
}

/// Why a handshake did not give a session.
#[derive(Debug, thiserror::Error)]
pub(super) enum HandshakeError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The other side's message does not authenticate under our key.
    #[error("handshake failed: {0}")]
    Noise(#[from] snow::Error),
    /// Authentic, but its payload is refused.
    #[error("{0}")]
    Hello(#[from] HelloError),
}

impl HandshakeError {
    /// Why the other side is rejected; None when the stream failed (a
    /// closed stream is the other side's rejection, counted there).
    pub(super) fn reason(&self) -> Option<Reason> {
        match self {
            HandshakeError::Io(_) => None,
            HandshakeError::Noise(_) => Some(Reason::BadHandshake),
            HandshakeError::Hello(HelloError::Version(_)) => Some(Reason::BadVersion),
            HandshakeError::Hello(HelloError::Malformed) => Some(Reason::Malformed),
        }
    }
}

/// A session's transport keys.
pub(super) struct Session {
    noise: TransportState,
    buf: Vec<u8>,
}

impl Session {
    fn new(handshake: HandshakeState) -> Result<Session, snow::Error> {
        Ok(Session {
            noise: handshake.into_transport_mode()?,
            buf: vec![0; MAX_MESSAGE],
        })
    }

    /// The message carrying `plaintext` (at most `wire::MAX_PAYLOAD`).
    pub(super) fn seal(&mut self, plaintext: &[u8]) -> Result<&[u8], snow::Error> {
        let n = self.noise.write_message(plaintext, &mut self.buf)?;
        Ok(&self.buf[..n])
    }

    /// The plaintext of `msg`, if it authenticates as the next message.
    pub(super) fn open(&mut self, msg: &[u8]) -> Result<&[u8], snow::Error> {
        let n = self.noise.read_message(msg, &mut self.buf)?;
        Ok(&self.buf[..n])
    }
}

/// The dialing side: sends our hello, returns the session and the peer's
/// hello (its version checked).
pub(super) async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    psk: &Psk,
    hello: Hello,
) -> Result<(Session, Hello), HandshakeError> {
    let mut handshake = psk.builder().build_initiator()?;
    send(&mut handshake, stream, hello).await?;
    let theirs = receive(&mut handshake, stream).await??;
    Ok((Session::new(handshake)?, theirs))
}

/// The listening side: answers an authentic first message with our hello
/// even when its hello is refused, so that the dialer learns why.
pub(super) async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    psk: &Psk,
    hello: Hello,
) -> Result<(Session, Hello), HandshakeError> {
    let mut handshake = psk.builder().build_responder()?;
    let theirs = receive(&mut handshake, stream).await?;
    send(&mut handshake, stream, hello).await?;
    Ok((Session::new(handshake)?, theirs?))
}

/// Writes our handshake message, carrying `hello`.
async fn send<S: AsyncWrite + Unpin>(
    handshake: &mut HandshakeState,
    stream: &mut S,
    hello: Hello,
) -> Result<(), HandshakeError> {
    let mut msg = vec![0; MAX_MESSAGE];
    let n = handshake.write_message(&hello.encode(), &mut msg)?;
    frame::write(stream, &msg[..n]).await?;
    Ok(stream.flush().await?)
}

/// Reads the other side's handshake message; the hello it carries, if
/// refused, is the inner error.
async fn receive<S: AsyncRead + Unpin>(
    handshake: &mut HandshakeState,
    stream: &mut S,
) -> Result<Result<Hello, HelloError>, HandshakeError> {
    let mut msg = Vec::new();
    frame::read(stream, &mut msg).await?;
    let mut payload = vec![0; MAX_MESSAGE];
    let n = handshake.read_message(&msg, &mut payload)?;
    Ok(Hello::decode(&payload[..n]))
}
