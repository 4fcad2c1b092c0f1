//! Length-delimited frames: a big-endian `u32` length, then that many bytes. The length is checked
//! against a limit before anything is allocated.

use crate::wire::{Message, WireError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame accepted or sent on an authenticated link: 64 MiB, so a peer can make a reader
/// allocate no more than that per frame. Senders keep frames far smaller (op batches and
/// snapshot chunks are cut at 4 MiB, plus the one op or key state that always goes), and the
/// node's `limits.max_value_bytes` is capped at a quarter of this (16 MiB), so the largest op a
/// client can make (one request: at most `max_value_bytes` plus 64 KiB of other arguments) and a
/// key holding three siblings of the largest value fit one frame (tested in
/// `concord-server` `config::tests::the_largest_legal_op_fits_a_frame`). A key state larger than
/// a frame (many large siblings, a huge set or hash) cannot be sent in a full-state transfer.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
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
    let body = read_frame_limited(r, limit).await?;
    Ok((Message::decode(&body)?, 4 + body.len()))
}

/// Read one frame's body of at most `limit` bytes (checked before allocating), undecoded.
pub async fn read_frame_limited<R: AsyncRead + Unpin>(r: &mut R, limit: usize) -> Result<Vec<u8>, WireError> {
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
    Ok(body)
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

    #[tokio::test]
    async fn the_frame_limit_is_64_mib() {
        assert_eq!(MAX_FRAME_BYTES, 64 << 20);
        // A header announcing one byte more is refused before any allocation or read of the body.
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&((MAX_FRAME_BYTES + 1) as u32).to_be_bytes())
            .await
            .unwrap();
        assert!(matches!(
            read_message(&mut b).await,
            Err(WireError::TooLarge(n, MAX_FRAME_BYTES)) if n == MAX_FRAME_BYTES + 1
        ));
        // And a sender refuses to write one.
        let big = Message::Forward {
            id: 1,
            args: vec![bytes::Bytes::from(vec![0u8; MAX_FRAME_BYTES])],
            ack: None,
        };
        let mut sink = tokio::io::sink();
        assert!(matches!(
            write_message(&mut sink, &big).await,
            Err(WireError::TooLarge(..))
        ));
    }
}
