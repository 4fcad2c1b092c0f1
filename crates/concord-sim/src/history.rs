//! What happened, recorded for the invariant checkers.

use bytes::Bytes;
use concord_core::{ConflictRecord, Dot, Op, Slot};
use std::collections::BTreeMap;

/// One acknowledged write (made durable at its region before the client was answered).
#[derive(Clone, Debug)]
pub struct Acked {
    pub region: usize,
    /// Simulated time of the acknowledgement.
    pub at_ms: u64,
    /// How many other regions had applied it when it was acknowledged (its ack level).
    pub others: usize,
    pub op: Op,
    pub slots: Vec<Slot>,
}

/// One entry of a region's application order.
#[derive(Clone, Debug)]
pub enum Applied {
    Op(Dot),
    /// A full-state transfer brought in everything up to this vector.
    Snapshot(concord_core::VersionVector),
    /// The region's disk was wiped: it starts from nothing.
    Wiped,
    /// The node started and recovered exactly this applied vector from its disk.
    Opened(concord_core::VersionVector),
}

#[derive(Default)]
pub struct History {
    pub acked: Vec<Acked>,
    /// Every op ever made, by dot.
    pub ops: BTreeMap<Dot, Op>,
    pub conflicts: Vec<ConflictRecord>,
    /// Per region, in order, every op applied there (local and remote), across restarts.
    pub applied_order: Vec<Vec<Applied>>,
    /// Crashes and restarts, partitions, heals: a log to print on failure.
    pub events: Vec<String>,
    /// Dots of `DEL` commands (the no-resurrection checker's deletes).
    pub deletes: std::collections::BTreeSet<Dot>,
    /// Successful `SET … NX` on home keys: (key, region, command, the write's identity). At
    /// most one per key, unless an earlier one was lost beyond what its ack level promised.
    pub nx_successes: Vec<(Bytes, String, String, Option<Dot>)>,
    /// Elements popped from home-region lists (`hq:*`), by successful pops: (element, region,
    /// command). Every element is pushed once, so each may appear at most once.
    pub home_pops: Vec<(Bytes, String, String)>,
    /// Write identities seen with two contents (found by `record_op`).
    pub dot_reuse: Vec<String>,
    /// Lost or restored data dirs: (region, simulated ms).
    pub disk_losses: Vec<(usize, u64)>,
    /// When a home region answered a forwarded write, by the dot of its (last) op (simulated ms).
    pub forward_answered: BTreeMap<Dot, u64>,
    /// Ops made but outside the final vector: lost with crashed or wiped disks.
    pub lost_ops: BTreeMap<Dot, Op>,
    /// The applied vector every region agreed on at the end (ops outside it never happened).
    pub final_vector: Option<concord_core::VersionVector>,
    /// Units (several ops of one write, transaction or script), by `(origin, unit_end)`: how
    /// many ops the origin made in it.
    pub units_made: BTreeMap<(concord_core::ReplicaId, u64), usize>,
    /// `(region, unit, ops)`: a region applied `ops` of the unit in one engine output.
    pub unit_fragments: Vec<(usize, (concord_core::ReplicaId, u64), usize)>,
    /// Transactions (`MULTI`/`EXEC` units) the workload committed.
    pub transactions: u64,
    /// `EVAL` scripts (units too) the workload committed.
    pub scripts: u64,
    /// Transactions and scripts the workload started (it alternates between the two).
    pub units_started: u64,
    /// Uniqueness claims made so far (every other one runs as a script).
    pub claims_started: u64,
    /// Single home-list pops made so far (every other one blocks), and blocking pops that popped.
    pub blocking_started: u64,
    pub blocking_pops: u64,
    /// Claims made by a script run at the key's home for another region (see `host::workload`).
    pub forwarded_scripts: u64,
    /// Pub/sub (`--pubsub`): messages published, and `(region, its incarnation, payload)` for
    /// every message a region's subscriber got (`"<origin>:<origin incarnation>:<n>"`).
    pub pubsub_published: u64,
    pub pubsub_received: Vec<(usize, u64, String)>,
    /// The publisher's last own write when each message was published (by payload), and the
    /// messages a subscriber in another region got before it had applied that write
    /// (`pubsub_order` fails on them): `(region, payload, what it had applied of the writer)`.
    pub pubsub_after: std::collections::HashMap<String, concord_core::Dot>,
    pub pubsub_early: Vec<(usize, String, u64)>,
    pub restarts: u64,
    pub partitions: u64,
    pub snapshots: u64,
}

impl History {
    pub fn new(regions: usize) -> Self {
        History {
            applied_order: vec![Vec::new(); regions],
            ..Default::default()
        }
    }

    pub fn key_ops(&self, key: &Bytes) -> impl Iterator<Item = &Op> {
        let key = key.clone();
        self.ops.values().filter(move |o| o.key == key)
    }
}
