//! Framing on a stream: each Noise message after its length, a big-endian
//! u16 (Noise messages are at most 65535 bytes).

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Reads the next message into `buf`.
pub(super) async fn read<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<()> {
    let len = r.read_u16().await?;
    buf.resize(len.into(), 0);
    r.read_exact(buf).await?;
    Ok(())
}

/// Writes `msg` (at most 65535 bytes) after its length; a buffered `w`
/// sends both in one segment.
pub(super) async fn write<W: AsyncWrite + Unpin>(w: &mut W, msg: &[u8]) -> io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a {}-byte message does not fit a frame", msg.len()),
        )
    })?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(msg).await
}
