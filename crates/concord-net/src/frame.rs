//! Length-delimited frames: a big-endian `u32` length, then that many bytes. The length is checked
//! against a limit before anything is allocated.

use crate::wire::{Message, WireError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame accepted or sent on an authenticated link (1 GiB). Senders keep frames far
/// smaller (batches and snapshot chunks are capped by bytes), but one op must always fit: the
/// node's `max_value_bytes` is limited to a quarter of this.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024 * 1024;
/// Largest frame accepted before the peer has proved it knows the secret.
pub const HANDSHAKE_MAX_FRAME_BYTES: usize = 64 * 1024;

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
    read_message_limited(r, MAX_FRAME_BYTES).await
}

/// Read one message of at most `limit` bytes (checked before allocating).
pub async fn read_message_limited<R: AsyncRead + Unpin>(
    r: &mut R,
    limit: usize,
) -> Result<(Message, usize), WireError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(WireError::TooLarge(len, limit));
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
