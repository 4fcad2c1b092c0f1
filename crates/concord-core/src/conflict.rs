//! Conflict records: what a replica detected, kept in the conflict log.

use crate::hlc::Hlc;
use crate::version::{Dot, ReplicaId};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// What kind of conflict was detected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConflictKind {
    /// Concurrent writes of a string value.
    Register,
    /// Concurrent writes of one hash field (always resolved last-writer-wins).
    Field(Bytes),
    /// Concurrent writes of different types on one key (the later HLC's type is shown).
    Type,
    /// More siblings than `max_siblings`: collapsed by an `lww` write-back.
    SiblingCap,
    /// A script resolver failed; siblings were kept.
    ScriptError(String),
}

/// One competing version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictVersion {
    pub dot: Dot,
    pub hlc: Hlc,
    /// The value (`None` for a tombstone or a non-string version); shown as its kind name.
    pub value: Option<Bytes>,
    /// For a type conflict, the type of this version.
    pub kind: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictRecord {
    /// Derived from the competing dots (and the kind): the same conflict detected in three regions
    /// has the same id, so merged logs hold it once.
    pub id: u64,
    pub key: Bytes,
    /// `lww`, `priority`, `siblings`, `script` or `type`.
    pub policy: String,
    pub kind: ConflictKind,
    pub versions: Vec<ConflictVersion>,
    /// The dot of the winning version, when one was chosen.
    pub winner: Option<Dot>,
    /// Human-readable outcome (`"lww: 2:7 won, 1 loser kept in the conflict log"`).
    pub outcome: String,
    pub detected_by: ReplicaId,
    pub detected_at_ms: u64,
}

impl ConflictRecord {
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(crate::codec::CONFLICT_VERSION, self)
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::codec::DecodeError> {
        crate::codec::decode(crate::codec::CONFLICT_VERSION, bytes)
    }
}

/// FNV-1a 64: a stable hash (unlike `std`'s, which is randomly seeded and may change).
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for part in parts {
        for &b in *part {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The identity of a conflict: its key, its kind and its competing dots (order-independent).
pub fn conflict_id(key: &[u8], kind: &ConflictKind, dots: &[Dot]) -> u64 {
    let mut dots = dots.to_vec();
    dots.sort();
    dots.dedup();
    let kind_tag: Vec<u8> = match kind {
        ConflictKind::Register => b"r".to_vec(),
        ConflictKind::Field(f) => [b"f:".as_slice(), f].concat(),
        ConflictKind::Type => b"t".to_vec(),
        ConflictKind::SiblingCap => b"c".to_vec(),
        ConflictKind::ScriptError(_) => b"s".to_vec(),
    };
    let mut dot_bytes = Vec::with_capacity(dots.len() * 12);
    for d in &dots {
        dot_bytes.extend_from_slice(&d.replica.to_le_bytes());
        dot_bytes.extend_from_slice(&d.counter.to_le_bytes());
    }
    stable_hash(&[key, &kind_tag, &dot_bytes])
}
