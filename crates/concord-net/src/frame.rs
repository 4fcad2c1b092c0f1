//! Length-delimited frames: a big-endian `u32` length, then that many bytes. The length is checked
//! against a limit before anything is allocated.

use crate::wire::{Message, WireError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame accepted or sent (64 MiB): values are bounded by the node's limits well below.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

pub async fn write_message<W: AsyncWrite + Unpin>(w: &mut W, msg: &Message) -> Result<usize, WireError> {
    let body = msg.encode();
    if body.len() > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge(body.len(), MAX_FRAME_BYTES));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf).await?;
    Ok(buf.len())
}

/// Read one message; `Closed` on a clean end of stream between frames.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> Result<(Message, usize), WireError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge(len, MAX_FRAME_BYTES));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok((Message::decode(&body)?, 4 + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversize_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let m = Message::Refused { reason: "x".into() };
        write_message(&mut a, &m).await.unwrap();
        assert_eq!(read_message(&mut b).await.unwrap().0, m);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(matches!(read_message(&mut b).await, Err(WireError::TooLarge(..))));
        drop(a);
        assert!(matches!(read_message(&mut b).await, Err(WireError::Closed)));
    }
}
