//! Wire messages. Every frame is one [`Message`], encoded as a version byte + postcard.

use crate::handshake::ClusterConfig;
use bytes::Bytes;
use concord_core::{KeyState, Op, ReplicaId, Reply, VersionVector};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped on any incompatible change; peers with another version are refused at the handshake.
/// 2: `Hello` carries the cluster-wide configuration's digest ([`ClusterConfig`]); `Subscribe`
/// carries the subscriber's writer id; `ForwardReply` the home's writer id (DESIGN §8.1);
/// anti-entropy messages (`AaeRequest`, `AaeNodes`, `AaeKeys`, `AaeStates`, `AaeDone`).
/// 3: ops carry `unit_end` (the ops of one write, transaction or script apply together).
/// 4: `Publish` (pub/sub messages travel on the replication stream, DESIGN §8.4). A protocol-3
/// peer could not decode it and would drop the link at the first message published, so, as for 3,
/// mixed versions are refused at the handshake rather than half-working: upgrade every region
/// together (a region on 3 keeps serving its clients and catches up once it is upgraded).
/// 5: `Forward` also carries scripts (`EVAL` with its source) to the home region of their keys,
/// and a `ForwardReply` may hold an error element (`Reply::Error`, a script's nested `{err=…}`),
/// which a protocol-4 node could not decode: refused at the handshake likewise.
pub const PROTOCOL_VERSION: u16 = 5;
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
    /// Anti-entropy (DESIGN §8.2), on a connection of its own: the first message of it, and every
    /// message the comparing side sends after it.
    AaeRequest(AaeRequest),
    /// The hashes of the tree nodes asked for (`concord_core::merkle`), in the order asked.
    AaeNodes {
        level: u8,
        indices: Vec<u32>,
        hashes: Vec<u64>,
    },
    /// Summaries of every replicated key in the leaves asked for (`AaeRequest::Keys`), with the
    /// sender's applied vector when it took them. Chunked by keys and bytes; `last` ends them.
    AaeKeys {
        applied: VersionVector,
        keys: Vec<concord_core::merkle::KeySummary>,
        last: bool,
    },
    /// Either way: key states (those asked for by `AaeRequest::States`, or those the comparing
    /// side pushes), with the sender's applied vector when it read them (the receiver merges only
    /// keys both have applied the same ops on). Chunked by keys and bytes like snapshot chunks;
    /// `last` ends the sender's states.
    AaeStates {
        applied: VersionVector,
        states: Vec<(Bytes, KeyState)>,
        last: bool,
    },
    /// The compared side merged the comparing side's states: how many keys it repaired.
    AaeDone {
        keys_repaired: u64,
    },
    /// Source → subscriber, on the replication stream among the ops: a pub/sub message published
    /// in region `origin` (this region or, relayed, another). Not durable, never acknowledged: a
    /// receiver delivers it to its subscribers unless it has delivered one of `origin` with a
    /// higher or equal `(incarnation, seq)` (at most once, in order per origin).
    Publish {
        origin: ReplicaId,
        /// The publishing node's start time (ms): it numbers `seq` from 1 at every start.
        incarnation: u64,
        seq: u64,
        /// `SPUBLISH` (for shard channel subscribers), not `PUBLISH`.
        shard: bool,
        channel: Bytes,
        message: Bytes,
        /// The origin's last own write when it was published (writer, seq; seq 0: none): every
        /// link, the origin's and a relay's, sends the message only after that write, so a
        /// subscriber woken by it can read what was written before it (protocol 5).
        after: concord_core::Dot,
        /// The publishing connection's last writes forwarded to other regions' homes (one per
        /// home): a receiver delivers the message once it has applied them too.
        home_writes: Vec<concord_core::Dot>,
    },
}

/// What the comparing side of an anti-entropy exchange asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AaeRequest {
    /// The hashes of these nodes of one level of the tree (level 0 is the root).
    Nodes { level: u8, indices: Vec<u32> },
    /// Summaries of every replicated key in these leaves (answered by `AaeKeys`).
    Keys { leaves: Vec<u32> },
    /// The states of these keys (answered by `AaeStates`); the comparing side then pushes its own
    /// states of the keys the peer needs.
    States { keys: Vec<Bytes> },
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
            Message::AaeRequest(_) => "aae-request",
            Message::AaeNodes { .. } => "aae-nodes",
            Message::AaeKeys { .. } => "aae-keys",
            Message::AaeStates { .. } => "aae-states",
            Message::AaeDone { .. } => "aae-done",
            Message::Publish { .. } => "publish",
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

    #[test]
    fn anti_entropy_messages_round_trip() {
        let mut st = KeyState::new();
        st.ctx.add(concord_core::Dot::new(2, 9));
        let messages = [
            Message::AaeRequest(AaeRequest::Nodes {
                level: 1,
                indices: vec![0, 7, 31],
            }),
            Message::AaeRequest(AaeRequest::Keys { leaves: vec![3, 1023] }),
            Message::AaeRequest(AaeRequest::States {
                keys: vec![Bytes::from_static(b"k"), Bytes::new()],
            }),
            Message::AaeKeys {
                applied: [(1, 5)].into_iter().collect(),
                keys: vec![concord_core::merkle::KeySummary {
                    key: Bytes::from_static(b"k"),
                    hash: Some(7),
                    ctx: [(2, 9)].into_iter().collect(),
                }],
                last: false,
            },
            Message::AaeNodes {
                level: 2,
                indices: vec![64, 65],
                hashes: vec![u64::MAX, 0],
            },
            Message::AaeStates {
                applied: [(1, 5), (2, 9)].into_iter().collect(),
                states: vec![(Bytes::from_static(b"k"), st)],
                last: true,
            },
            Message::AaeDone { keys_repaired: 3 },
            Message::Publish {
                origin: 2,
                incarnation: 1_700_000_000_000,
                seq: 7,
                shard: true,
                channel: Bytes::from_static(b"news"),
                message: Bytes::from_static(b"hello"),
                after: concord_core::Dot::new(2, 41),
                home_writes: vec![concord_core::Dot::new(3, 7)],
            },
        ];
        for m in messages {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m, "{}", m.name());
            // Truncated anywhere: an error, never a panic.
            let bytes = m.encode();
            for cut in 1..bytes.len() {
                assert!(Message::decode(&bytes[..cut]).is_err(), "{} cut at {cut}", m.name());
            }
        }
    }
}
