//! Dots and version vectors.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A replica identity. Two kinds share this type:
/// - a **region id** (configured, 1..=65535, never reused), and
/// - a **writer id**: the identity that stamps dots, one per node incarnation (every start of a
///   node on a data dir, a wiped or restored one included, gets a fresh one), so no
///   `(writer, seq)` is ever issued for two different writes (DESIGN §8.1). A writer id carries
///   its region in its low 16 bits ([`region_of`]) and a random incarnation above them; a
///   region id is the writer id of incarnation 0 (data written before writer ids existed).
pub type ReplicaId = u64;

/// Replica id used for the dots of region-local (`replicate = false`) writes. Those writes take
/// no replication sequence number, so they must not share a dot space with replicated writes.
/// (The value of earlier versions' `u32::MAX`, so stored data keeps its meaning.)
pub const LOCAL_REPLICA: ReplicaId = u32::MAX as u64;

/// Bits of a writer id that hold its region.
pub const REGION_BITS: u32 = 16;
/// The largest region id.
pub const MAX_REGION_ID: ReplicaId = (1 << REGION_BITS) - 1;

/// The region a writer id belongs to (a region id is its own region).
pub fn region_of(writer: ReplicaId) -> ReplicaId {
    if writer == LOCAL_REPLICA {
        return LOCAL_REPLICA;
    }
    writer & MAX_REGION_ID
}

/// The writer id of `region`'s incarnation `incarnation` (any value; it is reduced to 47 bits and
/// made non-zero, so the writer id differs from the region id and from [`LOCAL_REPLICA`]).
pub fn writer_id(region: ReplicaId, incarnation: u64) -> ReplicaId {
    debug_assert!(region <= MAX_REGION_ID && region != 0);
    let inc = (incarnation & ((1 << 47) - 1)).max(1);
    (inc << REGION_BITS) | region
}

/// The unique identity of one write: the replica that made it and that replica's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    pub replica: ReplicaId,
    pub counter: u64,
}

impl Dot {
    pub fn new(replica: ReplicaId, counter: u64) -> Dot {
        Dot { replica, counter }
    }
}

impl std::fmt::Display for Dot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.replica, self.counter)
    }
}

/// `replica → counter`: covers every dot `(r, c)` with `c <= vv[r]`. Zero entries are never stored,
/// so equal vectors encode to equal bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionVector(BTreeMap<ReplicaId, u64>);

impl VersionVector {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn get(&self, replica: ReplicaId) -> u64 {
        self.0.get(&replica).copied().unwrap_or(0)
    }
    pub fn set(&mut self, replica: ReplicaId, counter: u64) {
        if counter == 0 {
            self.0.remove(&replica);
        } else {
            self.0.insert(replica, counter);
        }
    }
    pub fn covers(&self, dot: Dot) -> bool {
        self.get(dot.replica) >= dot.counter
    }
    /// Include `dot` (raise the entry to at least its counter).
    pub fn add(&mut self, dot: Dot) {
        if self.get(dot.replica) < dot.counter {
            self.0.insert(dot.replica, dot.counter);
        }
    }
    /// Pointwise maximum.
    pub fn join(&mut self, other: &VersionVector) {
        for (&r, &c) in &other.0 {
            self.add(Dot::new(r, c));
        }
    }
    /// Pointwise minimum (entries missing on either side count as 0).
    pub fn meet(&self, other: &VersionVector) -> VersionVector {
        let mut out = VersionVector::new();
        for (&r, &c) in &self.0 {
            out.set(r, c.min(other.get(r)));
        }
        out
    }
    /// `self <= other` pointwise.
    pub fn dominated_by(&self, other: &VersionVector) -> bool {
        self.0.iter().all(|(&r, &c)| other.get(r) >= c)
    }
    pub fn iter(&self) -> impl Iterator<Item = (ReplicaId, u64)> + '_ {
        self.0.iter().map(|(&r, &c)| (r, c))
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Sum of `self[r] - other[r]` over entries where self is ahead: how many ops `other` misses.
    pub fn ops_ahead_of(&self, other: &VersionVector) -> u64 {
        self.0.iter().map(|(&r, &c)| c.saturating_sub(other.get(r))).sum()
    }
}

impl FromIterator<(ReplicaId, u64)> for VersionVector {
    fn from_iter<T: IntoIterator<Item = (ReplicaId, u64)>>(iter: T) -> Self {
        let mut vv = VersionVector::new();
        for (r, c) in iter {
            vv.add(Dot::new(r, c));
        }
        vv
    }
}

impl std::fmt::Display for VersionVector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{")?;
        for (i, (r, c)) in self.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{r}:{c}")?;
        }
        write!(f, "}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_meet_and_cover() {
        let a: VersionVector = [(1, 3), (2, 1)].into_iter().collect();
        let b: VersionVector = [(1, 1), (3, 4)].into_iter().collect();
        let mut j = a.clone();
        j.join(&b);
        assert_eq!(j, [(1, 3), (2, 1), (3, 4)].into_iter().collect());
        assert_eq!(a.meet(&b), [(1, 1)].into_iter().collect());
        assert!(a.covers(Dot::new(1, 2)) && !a.covers(Dot::new(3, 1)));
        assert!(a.dominated_by(&j) && !j.dominated_by(&a));
        assert_eq!(j.ops_ahead_of(&a), 4);
    }
}
