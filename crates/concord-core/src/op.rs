//! Ops: the replicated change of one write.

use crate::hlc::Hlc;
use crate::state::{Payload, Slot};
use crate::version::{Dot, ReplicaId, VersionVector};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// What one write changes in one key: the entries it supersedes (those its writer had observed) and
/// the entries it adds, all under the op's dot. Applying a delta is joining the key state with the
/// state `(adds at dot, context = removes ∪ {dot})`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    pub removes: Vec<(Slot, Dot)>,
    pub adds: Vec<(Slot, Payload)>,
}

/// One replicated change: `origin, seq, hlc, deps, key, delta`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The region that made the write.
    pub origin: ReplicaId,
    /// The origin's replication sequence number (contiguous from 1); also the write's dot counter.
    pub seq: u64,
    pub hlc: Hlc,
    /// The origin's applied vector when it wrote (its own entry excluded): this op may be applied
    /// only after everything in `deps`.
    pub deps: VersionVector,
    pub key: Bytes,
    pub delta: Delta,
    /// The last seq of the unit this op belongs to, when one write made several ops (`MSET`,
    /// `DEL a b`, `MULTI`/`EXEC`, a script): every op of the unit carries the unit's last seq, and
    /// a receiver applies the unit's ops together or not at all (atomic visibility). `0` for an op
    /// on its own.
    pub unit_end: u64,
}

/// The op as encoding version 1 wrote it (before units): decoded from old op logs.
#[derive(Deserialize)]
struct OpV1 {
    origin: ReplicaId,
    seq: u64,
    hlc: Hlc,
    deps: VersionVector,
    key: Bytes,
    delta: Delta,
}

impl Op {
    pub fn dot(&self) -> Dot {
        Dot::new(self.origin, self.seq)
    }

    /// Whether this op is one of several of one write, applied together (the unit's ops are
    /// this origin's seqs up to `unit_end`; every one of them carries it).
    pub fn in_unit(&self) -> bool {
        self.unit_end != 0
    }

    /// Roughly the bytes the op holds in memory (key, values, member and field names, dots and
    /// deps), without encoding it: what bounds the causal buffer in bytes. Never below the
    /// payload bytes, so an op carrying a value of `n` bytes counts at least `n`.
    pub fn size_bytes(&self) -> usize {
        const FIXED: usize = 64; // origin, seq, hlc, vector and vec headers
        const PER_DOT: usize = 16;
        let slot_bytes = |s: &Slot| match s {
            Slot::Member(b) | Slot::Field(b) | Slot::Scored(b) => b.len() + 8,
            Slot::ScoreFloor(b, _) => b.len() + 16,
            Slot::ListElem(p) => p.0.len() * 24 + 8,
            _ => 8,
        };
        let payload_bytes = |p: &Payload| match p {
            Payload::Value(Some(v)) => v.len() + 8,
            Payload::Registers(r) => r.len() * 3 + 8,
            _ => 24,
        };
        let removes: usize = self.delta.removes.iter().map(|(s, _)| slot_bytes(s) + PER_DOT).sum();
        let adds: usize = self
            .delta
            .adds
            .iter()
            .map(|(s, p)| slot_bytes(s) + payload_bytes(p))
            .sum();
        FIXED + self.key.len() + self.deps.iter().count() * PER_DOT + removes + adds
    }

    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(crate::codec::OP_VERSION, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Op, crate::codec::DecodeError> {
        let op: Op = if bytes.first() == Some(&1) {
            let v1: OpV1 = crate::codec::decode(1, bytes)?;
            Op {
                origin: v1.origin,
                seq: v1.seq,
                hlc: v1.hlc,
                deps: v1.deps,
                key: v1.key,
                delta: v1.delta,
                unit_end: 0,
            }
        } else {
            crate::codec::decode(crate::codec::OP_VERSION, bytes)?
        };
        if op.unit_end != 0 && op.unit_end < op.seq {
            return Err(crate::codec::DecodeError::Invalid("op unit ends before the op"));
        }
        if op.seq == 0 {
            return Err(crate::codec::DecodeError::Invalid("op seq 0"));
        }
        Ok(op)
    }
}
