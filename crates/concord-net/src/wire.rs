//! Wire messages. Every frame is one [`Message`], encoded as a version byte + postcard.

use crate::handshake::ClusterConfig;
use bytes::Bytes;
use concord_core::{KeyState, Op, ReplicaId, Reply, VersionVector};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped on any incompatible change; peers with another version are refused at the handshake.
/// 2: `Hello` carries the cluster-wide configuration's digest ([`ClusterConfig`]); `Subscribe`
/// carries the subscriber's writer id; `ForwardReply` the home's writer id (DESIGN §8.1).
pub const PROTOCOL_VERSION: u16 = 2;
/// Version byte of the message encoding.
pub const MESSAGE_ENCODING_VERSION: u8 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// First message each way: who I am, and a fresh nonce for the proof.
    Hello {
        protocol: u16,
        cluster: String,
        region: String,
        replica: ReplicaId,
        nonce: [u8; 16],
        /// The digest of the configuration every region must agree on: a mismatch is refused.
        config: ClusterConfig,
    },
    /// HMAC-SHA256 over both hellos, keyed by the shared secret (see `handshake`).
    Proof {
        mac: [u8; 32],
    },
    /// The handshake failed; the reason is logged on both sides.
    Refused {
        reason: String,
    },
    /// Subscriber → source: "send me every op I miss": my applied vector, and my current writer
    /// id (whose ops I have all: they are never sent back to me).
    Subscribe {
        applied: VersionVector,
        writer: ReplicaId,
    },
    /// Source → subscriber: ops in an order that respects causality (by HLC).
    Ops(Vec<Op>),
    /// Subscriber → source: what I have applied and made durable.
    Ack {
        applied: VersionVector,
    },
    /// Either way, periodically: every region's applied vector as the sender knows it (its own
    /// included), so vectors travel along the topology like ops.
    Vectors(BTreeMap<ReplicaId, VersionVector>),
    /// Source → subscriber: the subscriber is behind the log; a full-state transfer follows.
    SnapshotBegin {
        vector: VersionVector,
        keys: u64,
    },
    SnapshotChunk(Vec<(Bytes, KeyState)>),
    /// The snapshot is complete: the subscriber now has everything in `vector`.
    SnapshotEnd {
        vector: VersionVector,
    },
    /// A client command (its Redis arguments) for keys whose home region is the receiver. The
    /// first message of a forwarding connection, and every message after it on that connection.
    Forward {
        id: u64,
        args: Vec<Bytes>,
        /// An ack level asked for this write (HTTP `?ack=`); else the key's policy decides.
        ack: Option<concord_core::AckLevel>,
    },
    /// The home region's answer: the reply (or the error line), and the home's own applied seq
    /// after the write, so the forwarder can wait to read its own write locally.
    ForwardReply {
        id: u64,
        result: Result<Reply, String>,
        home_writer: ReplicaId,
        home_seq: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes exceeds the limit of {1}")]
    TooLarge(usize, usize),
    #[error("cannot decode message: {0}")]
    Decode(#[from] concord_core::codec::DecodeError),
    #[error("peer closed the connection")]
    Closed,
    #[error("handshake: {0}")]
    Handshake(String),
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        concord_core::codec::encode(MESSAGE_ENCODING_VERSION, self)
    }
    pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
        Ok(concord_core::codec::decode(MESSAGE_ENCODING_VERSION, bytes)?)
    }
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Proof { .. } => "proof",
            Message::Refused { .. } => "refused",
            Message::Subscribe { .. } => "subscribe",
            Message::Ops(_) => "ops",
            Message::Ack { .. } => "ack",
            Message::Vectors(_) => "vectors",
            Message::SnapshotBegin { .. } => "snapshot-begin",
            Message::SnapshotChunk(_) => "snapshot-chunk",
            Message::SnapshotEnd { .. } => "snapshot-end",
            Message::Forward { .. } => "forward",
            Message::ForwardReply { .. } => "forward-reply",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let m = Message::Subscribe {
            applied: [(1, 5)].into_iter().collect(),
            writer: concord_core::writer_id(1, 77),
        };
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        assert!(Message::decode(&[1, 200, 200, 200]).is_err());
        assert!(Message::decode(&[9]).is_err());
        assert!(Message::decode(&[]).is_err());
    }
}
