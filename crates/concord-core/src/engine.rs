//! The replica engine: the deterministic state machine of one region.
//!
//! It takes local commands ([`Engine::execute`]) and remote ops ([`Engine::receive`]), with the time
//! passed in, and reports what must happen outside in an [`Output`]: keys whose state changed (to
//! persist), new local ops (to log and send), remote ops applied (to log and relay), conflicts (to
//! record). It never does I/O, never reads a clock, never draws entropy: the few commands that
//! pick at random (`SPOP`, `RANDOMKEY`, …) draw from a stream seeded by the configuration.
//!
//! Commands beyond DESIGN §6 are executed by one file per family, as Redis's `t_*.c`:
//! [`strings`], [`bitmaps`], [`keyspace`], [`hashes`], [`sets`], [`zsets`], [`hyperloglogs`],
//! [`lists`].

use crate::codec;
use crate::command::{CommandError, Reply, Request, SetCondition, SetExpiry};
use crate::conflict::{conflict_id, ConflictKind, ConflictRecord, ConflictVersion};
use crate::glob::glob_match;
use crate::hlc::{Hlc, HlcClock};
use crate::keymap::KeyMap;
use crate::op::{Delta, Op};
use crate::policy::{PolicySet, Strategy};
use crate::state::{lww_key, Entry, KeyState, Kind, Payload, Slot};
use crate::version::{region_of, Dot, ReplicaId, VersionVector, LOCAL_REPLICA};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

mod bitmaps;
mod hashes;
mod hyperloglogs;
mod keyspace;
mod lists;
mod sets;
mod sort;
mod strings;
mod zsets;

pub use zsets::score_text;

/// The most ops one unit (a multi-key command, a transaction, a script) replicates as one: a
/// receiver holds a unit's ops in its causal buffer until it has them all, so a unit must fit in
/// it many times over. A larger write (a `FLUSHALL` of a big keyspace, say) replicates op by op.
pub const MAX_UNIT_OPS: usize = 10_000;
/// The most bytes ([`Op::size_bytes`]) one unit replicates as one; beyond, op by op.
pub const MAX_UNIT_BYTES: usize = 64 << 20;

/// Default bound of the causal-delivery buffer, in ops.
pub const DEFAULT_MAX_BUFFERED_OPS: usize = 100_000;
/// Default bound of the causal-delivery buffer, in bytes ([`Op::size_bytes`]): 256 MiB.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 256 << 20;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This region's replica id.
    pub replica: ReplicaId,
    /// Every region of the cluster (id → name), this one included.
    pub regions: BTreeMap<ReplicaId, String>,
    pub policies: PolicySet,
    /// Ops waiting for their causal dependencies, at most. Beyond it ops are dropped from the
    /// buffer and `Output::catch_up` asks the node to fetch them again from a peer's log.
    pub max_buffered_ops: usize,
    /// Bytes of ops ([`Op::size_bytes`]) waiting for their dependencies, at most; beyond it, the
    /// same as `max_buffered_ops`. An empty buffer always takes one op, however large, so an op
    /// bigger than the bound can still wait for its dependencies (else catch-up would loop).
    pub max_buffered_bytes: usize,
    /// Largest string value a write may produce (`APPEND` is checked against it; the front ends
    /// check the values they receive).
    pub max_value_bytes: usize,
    /// Seeds the hash that orders keys (and `SCAN` cursors). Nodes pick a random one per process
    /// so clients cannot aim keys at one bucket; simulations keep the default for reproducibility.
    pub key_hash_seed: u64,
    /// Deliberately wrong behaviour, only for proving that the simulation's invariants can fail.
    /// Never set outside tests.
    #[doc(hidden)]
    pub planted_bug: Option<PlantedBug>,
}

/// Bugs the simulation plants to show its checkers catch them.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// Apply remote ops as soon as they are next from their origin, ignoring `deps`.
    IgnoreDeps,
    /// Apply remote ops without their removals (a broken merge).
    IgnoreRemoves,
    /// After applying a remote op (and logging its conflicts), drop every string sibling but the
    /// `lww` winner, whatever the key's policy: `siblings`, `priority` and `script` versions are
    /// lost (a write-time collapse the docs promise never happens outside `max_siblings`).
    CollapseSiblings,
    /// Garbage collection purges tombstone-only keys at once, stable or not: a late write the
    /// delete had seen comes back.
    PurgeUnstable,
    /// (Node) a replication link stops sending ops after its first batch.
    StallLinks,
    /// (Node) a restarted node takes the writer id it had before (identities reused).
    ReuseWriter,
    /// (Node) a write is acknowledged before its group is committed: a crash loses it.
    AckBeforeCommit,
    /// Remote ops of a unit are applied as they arrive, not together (partly visible units).
    SplitUnits,
    /// `DEL` removes only the newest version of a string: older concurrent versions (siblings)
    /// survive it, in every region alike.
    DeleteSparesSiblings,
    /// (Node) a home region takes home-key writes at once after a restart, before it has
    /// re-learned its history: a claim it lost can be made a second time.
    HomeWritesUnchecked,
    /// (Node) pub/sub messages are sent and delivered as soon as they arrive, not after the
    /// writes published before them: a subscriber elsewhere can be woken before it can read them.
    PublishAhead,
    /// (Node) a blocking pop of a key homed in another region pops here instead of at the home:
    /// two regions can pop the same element.
    BlockingPopsHere,
}

impl EngineConfig {
    pub fn new(replica: ReplicaId, regions: BTreeMap<ReplicaId, String>) -> Self {
        EngineConfig {
            replica,
            regions,
            policies: PolicySet::default(),
            max_buffered_ops: DEFAULT_MAX_BUFFERED_OPS,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            max_value_bytes: usize::MAX,
            key_hash_seed: 0,
            planted_bug: None,
        }
    }
}

/// One version of a string value, as shown to readers and to script resolvers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiblingView {
    pub dot: Dot,
    pub hlc: Hlc,
    pub region: String,
    /// `None` is a tombstone (a delete concurrent with the other versions).
    pub value: Option<Bytes>,
}

/// A user conflict resolver (`strings = "script"`). It must be deterministic: every region calls it
/// with the same siblings in the same order and must get the same answer.
pub trait Resolver: Send + Sync {
    /// `Ok(Some(v))` resolves to `v`, `Ok(None)` to "deleted", `Err` keeps the siblings.
    fn resolve(&self, key: &[u8], siblings: &[SiblingView]) -> Result<Option<Bytes>, String>;
}

/// How one key changed in an [`Output`]: the store rewrites just these slots (and the key's
/// context), or the key's whole state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Touched {
    /// These slots changed (sorted, no duplicates); the rest of the key is unchanged.
    Slots(Vec<Slot>),
    /// Rewrite the whole state (purged, merged from a snapshot, dropped).
    Whole,
}

impl Touched {
    /// Fold a later change of the same key into this one.
    pub fn merge(&mut self, later: Touched) {
        match (&mut *self, later) {
            (Touched::Whole, _) => {}
            (_, Touched::Whole) => *self = Touched::Whole,
            (Touched::Slots(mine), Touched::Slots(theirs)) => add_slots(mine, theirs),
        }
    }
}

fn add_slots(into: &mut Vec<Slot>, slots: impl IntoIterator<Item = Slot>) {
    for s in slots {
        if let Err(i) = into.binary_search(&s) {
            into.insert(i, s);
        }
    }
}

/// The commands of one atomic unit being executed ([`Engine::execute_with`]).
pub struct Unit<'a> {
    engine: &'a mut Engine,
    now_ms: u64,
    out: &'a mut Output,
}

impl Unit<'_> {
    /// Execute one command as part of the unit.
    pub fn execute(&mut self, req: Request) -> Result<Reply, CommandError> {
        self.engine.execute_one(req, self.now_ms, self.out)
    }

    /// The engine, to read (checks a caller makes between commands).
    pub fn engine(&self) -> &Engine {
        self.engine
    }

    /// The time the unit runs at (ms since the Unix epoch).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }
}

/// What the node must do after a call into the engine.
#[derive(Debug, Default)]
pub struct Output {
    /// Keys whose state changed, and how (persist their new state, or delete it if the engine
    /// has none).
    pub changed: BTreeMap<Bytes, Touched>,
    /// New local ops: append to the op log and send to peers.
    pub local_ops: Vec<Op>,
    /// Remote ops applied: append to the op log (and relay, depending on topology).
    pub remote_ops: Vec<Op>,
    pub conflicts: Vec<ConflictRecord>,
    /// The causal buffer overflowed: ops were dropped and must be fetched again (catch-up).
    pub catch_up: bool,
    /// The metadata (applied vector) changed without a key changing: persist it.
    pub meta_changed: bool,
}

impl Output {
    /// Record a change of these slots of `key`.
    pub fn touch(&mut self, key: &Bytes, slots: impl IntoIterator<Item = Slot>) {
        match self.changed.get_mut(key) {
            Some(Touched::Whole) => {}
            Some(Touched::Slots(mine)) => add_slots(mine, slots),
            None => {
                let mut mine = Vec::new();
                add_slots(&mut mine, slots);
                self.changed.insert(key.clone(), Touched::Slots(mine));
            }
        }
    }

    /// Record a change of `key` as a whole.
    pub fn touch_whole(&mut self, key: &Bytes) {
        self.changed.insert(key.clone(), Touched::Whole);
    }

    /// Fold another output's changes into this one (in order).
    pub fn absorb(&mut self, other: Output) {
        for (k, t) in other.changed {
            match self.changed.entry(k) {
                std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(t),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(t);
                }
            }
        }
        self.local_ops.extend(other.local_ops);
        self.remote_ops.extend(other.remote_ops);
        self.conflicts.extend(other.conflicts);
        self.catch_up |= other.catch_up;
        self.meta_changed |= other.meta_changed;
    }

    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
            && self.local_ops.is_empty()
            && self.remote_ops.is_empty()
            && self.conflicts.is_empty()
            && !self.meta_changed
    }
}

/// What happened to a received op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// Applied, with this many ops in all (the op plus buffered ops it unblocked).
    Applied(usize),
    /// Waiting for its dependencies.
    Buffered,
    /// Already applied or already waiting: dropped.
    Duplicate,
    /// The buffer is full: dropped; the node must catch up from a peer later.
    Overflow,
}

/// The metadata persisted beside the key states.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EngineMeta {
    pub applied: VersionVector,
    pub hlc: Hlc,
    pub local_counter: u64,
    /// [`Engine::settled`]: kept across restarts, so anti-entropy still knows after one which
    /// tombstones this region collected (a collected tombstone coming back from a peer is not a
    /// repair; sim seeds 104133, 104757). Empty when read from a store written before it.
    pub settled: VersionVector,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub remote_ops_applied: u64,
    pub duplicates_dropped: u64,
    pub buffer_overflows: u64,
    pub keys_purged: u64,
    /// Ops from an origin that is not a region of this cluster, dropped.
    pub unknown_origin_dropped: u64,
    /// Applied vectors reported for a region id that is not in the config, ignored.
    pub unknown_peer_vectors_ignored: u64,
    /// Conflicts detected, by policy name (`lww`, `priority`, `siblings`, `script`, `type`).
    pub conflicts: BTreeMap<String, u64>,
}

/// A garbage-collection round: tombstones covered by `stable` may be purged once this replica
/// has applied `thresholds` (every op a region had issued when it reported having `stable`; any op
/// concurrent with a stable tombstone is among those).
#[derive(Clone, Debug)]
struct GcEpoch {
    stable: VersionVector,
    thresholds: VersionVector,
}

/// A read-side description of one key (for the HTTP API and `CONCORD.SIBLINGS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyView {
    pub kind: Option<Kind>,
    /// The value as `GET` returns it (strings and counters only).
    pub value: Option<Bytes>,
    pub siblings: Vec<SiblingView>,
    pub context: String,
    pub expiry_ms: Option<u64>,
    pub policy: String,
    pub replicated: bool,
}

pub struct Engine {
    cfg: EngineConfig,
    clock: HlcClock,
    applied: VersionVector,
    local_counter: u64,
    keys: KeyMap,
    buffer: BTreeMap<ReplicaId, BTreeMap<u64, Op>>,
    buffered: usize,
    /// Sum of [`Op::size_bytes`] over the buffer.
    buffered_bytes: usize,
    resolvers: BTreeMap<String, Arc<dyn Resolver>>,
    gc_epoch: Option<GcEpoch>,
    /// Dots every region has applied, with every op concurrent with them applied here too: the
    /// `stable` vector of the last garbage-collection round that closed. Nothing concurrent with
    /// a settled dot can still arrive, so an expiry whose entries are settled is final.
    settled: VersionVector,
    /// The join of the contexts of keys merged from snapshots (see [`Engine::merge_snapshot`]):
    /// while the applied vector does not cover it, a transfer is in progress.
    transfer_pending: Option<VersionVector>,
    /// The full-state transfers being received, by source (each link receives its own): the
    /// vector each was taken at and the keys it brought so far.
    transfers: BTreeMap<u64, (VersionVector, std::collections::BTreeSet<Bytes>)>,
    writeback: BTreeSet<Bytes>,
    /// Where the next `expire_step` resumes: a key hash.
    expire_cursor: Option<u64>,
    /// The latest applied vector each other region reported (acks, heartbeats, relays).
    peers: BTreeMap<ReplicaId, VersionVector>,
    /// Whether the engine may write on its own (write-backs, expiry deletes). Off while a fresh
    /// replica has not yet learned its own history, so it cannot reuse a sequence number.
    autonomous_writes: bool,
    /// State of the pseudo-random stream `RANDOMKEY`, `SPOP`, `SRANDMEMBER` and `HRANDFIELD` draw
    /// from: seeded from `key_hash_seed` (the node picks it at random; a simulation fixes it), so
    /// the core reads no entropy of its own.
    random: u64,
    pub stats: EngineStats,
}

/// The data slots a kind owns.
fn slot_is_kind(slot: &Slot, kind: Kind) -> bool {
    slot.kind() == Some(kind)
}

/// Strict integer parse with Redis rules (no spaces, no `+`, no leading zeros, fits i64).
pub fn parse_i64(bytes: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(bytes).ok()?;
    if s.is_empty() || s.len() > 20 || s.starts_with('+') {
        return None;
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) || (s.starts_with('-') && digits == "0") {
        return None;
    }
    s.parse().ok()
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        Engine::restore(cfg, EngineMeta::default(), std::iter::empty())
    }

    /// Rebuild an engine from persisted metadata and key states.
    pub fn restore(cfg: EngineConfig, meta: EngineMeta, states: impl IntoIterator<Item = (Bytes, KeyState)>) -> Self {
        assert!(
            cfg.regions.contains_key(&region_of(cfg.replica)),
            "this region must be in the region list"
        );
        assert!(cfg.replica != LOCAL_REPLICA, "replica id {LOCAL_REPLICA} is reserved");
        let mut keys = KeyMap::new(cfg.key_hash_seed);
        for (k, st) in states {
            keys.insert(k, st);
        }
        Engine {
            random: cfg.key_hash_seed ^ 0x9E37_79B9_7F4A_7C15,
            cfg,
            clock: HlcClock::new(meta.hlc),
            applied: meta.applied,
            local_counter: meta.local_counter,
            keys,
            buffer: BTreeMap::new(),
            buffered: 0,
            buffered_bytes: 0,
            resolvers: BTreeMap::new(),
            gc_epoch: None,
            settled: meta.settled,
            transfer_pending: None,
            transfers: BTreeMap::new(),
            writeback: BTreeSet::new(),
            expire_cursor: None,
            peers: BTreeMap::new(),
            autonomous_writes: true,
            stats: EngineStats::default(),
        }
    }

    pub fn register_resolver(&mut self, name: impl Into<String>, resolver: Arc<dyn Resolver>) {
        self.resolvers.insert(name.into(), resolver);
    }

    /// This engine's writer id: the replica of its dots (one per node incarnation).
    pub fn replica(&self) -> ReplicaId {
        self.cfg.replica
    }

    /// This engine's region id.
    pub fn region(&self) -> ReplicaId {
        region_of(self.cfg.replica)
    }
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }
    pub fn policies(&self) -> &PolicySet {
        &self.cfg.policies
    }
    /// `origin → highest seq applied contiguously`.
    pub fn applied(&self) -> &VersionVector {
        &self.applied
    }
    pub fn clock(&self) -> &HlcClock {
        &self.clock
    }
    pub fn meta(&self) -> EngineMeta {
        EngineMeta {
            applied: self.applied.clone(),
            hlc: self.clock.last(),
            local_counter: self.local_counter,
            settled: self.settled.clone(),
        }
    }
    /// Record the applied vector another region reported. Vectors only grow: an older report
    /// arriving late changes nothing.
    ///
    /// A report for a region id that is not in the config (a misconfigured or foreign peer, or
    /// the reserved region-local id) is ignored and counted in
    /// `stats.unknown_peer_vectors_ignored`: recorded, it would hold garbage collection and
    /// lag figures to a region that does not exist.
    pub fn observe_peer(&mut self, replica: ReplicaId, applied: &VersionVector) {
        if !self.cfg.regions.contains_key(&replica) || replica == LOCAL_REPLICA {
            self.stats.unknown_peer_vectors_ignored += 1;
            return;
        }
        if replica != self.region() {
            self.peers.entry(replica).or_default().join(applied);
        }
    }

    /// Dots every region has applied and with which nothing concurrent can still arrive here
    /// (advanced by [`Engine::collect_garbage`] rounds).
    pub fn settled(&self) -> &VersionVector {
        &self.settled
    }

    /// The latest applied vector reported by each other region.
    pub fn peer_vectors(&self) -> &BTreeMap<ReplicaId, VersionVector> {
        &self.peers
    }

    /// Whether every region has applied `dot` (as far as this replica knows).
    pub fn is_stable(&self, dot: Dot) -> bool {
        self.cfg.regions.keys().all(|r| {
            if *r == self.region() {
                self.applied.covers(dot)
            } else {
                self.peers.get(r).is_some_and(|vv| vv.covers(dot))
            }
        })
    }

    /// Allow or forbid writes the engine makes on its own (write-backs, expiry deletes).
    pub fn set_autonomous_writes(&mut self, on: bool) {
        self.autonomous_writes = on;
    }

    /// Periodic work that needs no input: write-backs whose siblings became stable.
    pub fn tick(&mut self, now_ms: u64, out: &mut Output) {
        self.run_writebacks(now_ms, out);
    }

    pub fn buffered_ops(&self) -> usize {
        self.buffered
    }

    /// `(origin, seq, unit_end)` of every op in the causal buffer (for diagnosing a stall).
    pub fn buffered_dots(&self) -> Vec<(ReplicaId, u64, u64)> {
        self.buffer
            .values()
            .flat_map(|q| q.values().map(|o| (o.origin, o.seq, o.unit_end)))
            .collect()
    }
    /// Bytes held by the causal buffer ([`Op::size_bytes`] of each op).
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }
    pub fn key_state(&self, key: &[u8]) -> Option<&KeyState> {
        self.keys.get(key)
    }
    pub fn key_states(&self) -> impl Iterator<Item = (&Bytes, &KeyState)> {
        self.keys.iter()
    }
    /// The name of the region a region id or writer id belongs to.
    pub fn region_name(&self, replica: ReplicaId) -> String {
        if replica == LOCAL_REPLICA {
            return self.cfg.regions.get(&self.region()).cloned().unwrap_or_default();
        }
        self.cfg
            .regions
            .get(&region_of(replica))
            .cloned()
            .unwrap_or_else(|| format!("#{replica}"))
    }

    /// A digest of the data of every replicated key (its entries, without the causal context),
    /// for comparing replicas. Keys with no data left (tombstones only) are skipped, and so is the
    /// context: replicas purge dead keys (and with them their context) at different times, so a
    /// key rewritten after a purge holds the same data under a smaller context.
    /// The same canonical bytes are what anti-entropy hashes ([`crate::merkle::canonical_state`]).
    pub fn state_digest(&self) -> u64 {
        // In key order: regions order their key maps by differently seeded hashes.
        let mut keys: Vec<(&Bytes, Vec<u8>)> = self
            .keys
            .iter()
            .filter(|(k, _)| self.cfg.policies.policy_for(k).replicate)
            .filter_map(|(k, st)| crate::merkle::canonical_state(st).map(|c| (k, c)))
            .collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut parts: Vec<Vec<u8>> = Vec::new();
        for (k, canonical) in keys {
            parts.push(k.to_vec());
            parts.push(canonical);
        }
        let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
        crate::conflict::stable_hash(&refs)
    }

    // ----- read views ---------------------------------------------------------------------

    fn siblings_of(&self, st: &KeyState) -> Vec<SiblingView> {
        let mut out: Vec<(Dot, &Entry)> = st
            .entries(&Slot::Register)
            .map(|es| es.iter().map(|(d, e)| (*d, e)).collect())
            .unwrap_or_default();
        out.sort_by_key(|(d, e)| lww_key(d, e));
        out.into_iter()
            .map(|(dot, e)| SiblingView {
                dot,
                hlc: e.hlc,
                region: self.region_name(dot.replica),
                value: match &e.payload {
                    Payload::Value(v) => v.clone(),
                    _ => None,
                },
            })
            .collect()
    }

    /// The register's value under the key's policy (`None`: absent or a tombstone won).
    ///
    /// Siblings that are all tombstones read as deleted under every policy: a resolver is not
    /// asked about them. Such a key holds nothing but tombstones, which the rest of the engine
    /// treats as deleted whatever the policy (garbage collection purges it, and a region applying
    /// a write on it removes all of it when the writer had seen it all, `apply_remote`); a
    /// resolver answering a value for it made the key live in the writing region alone.
    fn register_view(&self, key: &[u8], st: &KeyState) -> Option<Bytes> {
        let entries = st.entries(&Slot::Register)?;
        let value_of = |e: &Entry| match &e.payload {
            Payload::Value(v) => v.clone(),
            _ => None,
        };
        if entries.len() == 1 {
            return entries.values().next().and_then(value_of);
        }
        if entries.values().all(|e| e.payload == Payload::Value(None)) {
            return None;
        }
        let policies = &self.cfg.policies;
        match &policies.policy_for(key).strings {
            Strategy::Lww | Strategy::Siblings => st.lww_winner(&Slot::Register).and_then(|(_, e)| value_of(e)),
            Strategy::Priority => entries
                .iter()
                .max_by_key(|(d, e)| (policies.priority_rank(d.replica), lww_key(d, e)))
                .and_then(|(_, e)| value_of(e)),
            Strategy::Script(name) => {
                let resolved = self.resolvers.get(name).map(|r| r.resolve(key, &self.siblings_of(st)));
                match resolved {
                    Some(Ok(v)) => v,
                    // A failing or missing resolver keeps the siblings; reads show the LWW winner.
                    _ => st.lww_winner(&Slot::Register).and_then(|(_, e)| value_of(e)),
                }
            }
        }
    }

    /// What `WATCH` remembers of a key: its causal context (every op on the key, local or
    /// replicated, adds its dot) and whether it is live now (an expiry changes a key too, as in
    /// Redis). `EXEC` aborts when the mark differs.
    pub fn watch_mark(&self, key: &[u8], now_ms: u64) -> (Option<VersionVector>, bool) {
        (
            self.keys.get(key).map(|st| st.ctx.clone()),
            self.live_kind(key, now_ms).is_some(),
        )
    }

    /// The live kind of a key: absent if missing, expired, or a string whose winner is a tombstone.
    fn live_kind(&self, key: &[u8], now_ms: u64) -> Option<(Kind, &KeyState)> {
        let st = self.keys.get(key)?;
        if st.is_expired(now_ms) {
            return None;
        }
        let kind = st.kind()?;
        if kind == Kind::String && self.register_view(key, st).is_none() {
            return None;
        }
        Some((kind, st))
    }

    /// The string value `GET` shows (strings and counters), or WRONGTYPE.
    fn string_value(&self, key: &[u8], now_ms: u64) -> Result<Option<Bytes>, CommandError> {
        match self.live_kind(key, now_ms) {
            None => Ok(None),
            Some((Kind::String, st)) => Ok(self.register_view(key, st)),
            Some((Kind::Counter, st)) => Ok(Some(Bytes::from(st.counter_value().to_string()))),
            Some(_) => Err(CommandError::WrongType),
        }
    }

    /// Like `live_kind`, but a key of another kind is WRONGTYPE.
    fn expect_kind(&self, key: &[u8], kind: Kind, now_ms: u64) -> Result<Option<&KeyState>, CommandError> {
        match self.live_kind(key, now_ms) {
            None => Ok(None),
            Some((k, st)) if k == kind => Ok(Some(st)),
            Some(_) => Err(CommandError::WrongType),
        }
    }

    fn hash_field(st: &KeyState, field: &Bytes) -> Option<Bytes> {
        match st.lww_winner(&Slot::Field(field.clone()))?.1.payload {
            Payload::Value(ref v) => v.clone(),
            _ => None,
        }
    }

    fn hash_fields(st: &KeyState) -> Vec<(Bytes, Bytes)> {
        st.slots
            .keys()
            .filter_map(|s| match s {
                Slot::Field(f) => Self::hash_field(st, f).map(|v| (f.clone(), v)),
                _ => None,
            })
            .collect()
    }

    fn set_members(st: &KeyState) -> Vec<Bytes> {
        st.slots
            .keys()
            .filter_map(|s| match s {
                Slot::Member(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn describe(&self, key: &[u8], now_ms: u64) -> KeyView {
        let policy = self.cfg.policies.policy_for(key);
        let st = self.keys.get(key);
        let live = self.live_kind(key, now_ms);
        let value = match live {
            Some((Kind::String, st)) => self.register_view(key, st),
            Some((Kind::Counter, st)) => Some(Bytes::from(st.counter_value().to_string())),
            _ => None,
        };
        KeyView {
            kind: live.map(|(k, _)| k),
            value,
            siblings: st.map(|st| self.siblings_of(st)).unwrap_or_default(),
            context: codec::context_token(&st.map(|s| s.ctx.clone()).unwrap_or_default()),
            expiry_ms: st.and_then(|s| s.expiry_ms()),
            policy: policy.strings.name().to_string(),
            replicated: policy.replicate,
        }
    }

    /// Every live key (in the order of their hashes).
    pub fn live_keys(&self, now_ms: u64) -> impl Iterator<Item = &Bytes> + '_ {
        self.keys.keys().filter(move |k| self.live_kind(k, now_ms).is_some())
    }

    // ----- local writes -------------------------------------------------------------------

    /// Dots a write on `key` must remove whatever it does: everything when the key is not live
    /// (expired or deleted: the write starts from empty), else the data of hidden kinds (left by
    /// a resolved type conflict), so a key converges to one type.
    fn stale_removes(&self, key: &[u8], now_ms: u64) -> Vec<(Slot, Dot)> {
        let Some(st) = self.keys.get(key) else {
            return Vec::new();
        };
        // Counter floors are never removed by other writes: they are metadata that may still apply
        // to increments this region has not seen (garbage collection drops them once stable).
        match self.live_kind(key, now_ms) {
            None => st.observed(|s| !s.is_floor()),
            // Hidden kinds exist only after a type conflict: skip the scan in the usual case.
            Some(_) if st.kinds().len() <= 1 => Vec::new(),
            Some((kind, _)) => st.observed(|s| s.kind().is_some_and(|k| k != kind)),
        }
    }

    /// Make a local write: stamp it, apply it, and emit its op (unless the key is region-local).
    fn write(&mut self, key: &Bytes, mut delta: Delta, now_ms: u64, out: &mut Output) -> Dot {
        delta.removes.sort();
        delta.removes.dedup();
        let replicate = self.cfg.policies.policy_for(key).replicate;
        let hlc = self.clock.now(now_ms);
        let dot = if replicate {
            let seq = self.applied.get(self.cfg.replica) + 1;
            self.applied.set(self.cfg.replica, seq);
            Dot::new(self.cfg.replica, seq)
        } else {
            self.local_counter += 1;
            Dot::new(LOCAL_REPLICA, self.local_counter)
        };
        let st = self.keys.get_or_default(key);
        if delta.adds.iter().any(|(s, _)| s.kind().is_some()) {
            // A write supersedes every string tombstone it has seen (see `tombstones_seen`).
            delta.removes.extend(st.tombstones(|_| true));
            delta.removes.sort();
            delta.removes.dedup();
        }
        score_floors(st, dot.replica, &mut delta);
        let applied = st.apply(dot, hlc, &delta);
        assert!(applied, "a fresh local dot {dot} was already covered for key {key:?}");
        if !replicate && st.only_tombstones() {
            // Never shipped, so nothing can resurrect it: drop it at once.
            self.keys.remove(key);
            out.touch_whole(key);
        } else {
            out.touch(key, delta_slots(&delta));
        }
        if replicate {
            // The key's context joins in: a key merged from a snapshot (a transfer in progress)
            // covers ops this replica has not applied yet, and this write supersedes what it saw
            // of them; no region may apply it before them. Usually a no-op (context ≤ applied).
            // Only regions of the cluster: a dot no peer can ever apply (a region-local dot left
            // by an old `replicate = false`, a region since removed) would stall the op forever.
            let mut deps = self.applied.clone();
            if let Some(st) = self.keys.get(key) {
                for (r, c) in st.ctx.iter() {
                    if r != LOCAL_REPLICA && self.cfg.regions.contains_key(&region_of(r)) {
                        deps.add(Dot::new(r, c));
                    }
                }
            }
            deps.set(self.cfg.replica, 0);
            out.local_ops.push(Op {
                origin: self.cfg.replica,
                seq: dot.counter,
                hlc,
                deps,
                key: key.clone(),
                delta,
                unit_end: 0,
            });
        }
        dot
    }

    fn own_replica(&self, key: &[u8]) -> ReplicaId {
        if self.cfg.policies.policy_for(key).replicate {
            self.cfg.replica
        } else {
            LOCAL_REPLICA
        }
    }

    /// SET semantics: replace whatever the key holds (any type) with a string.
    fn set_string(&mut self, key: &Bytes, value: Bytes, expiry: SetExpiry, now_ms: u64, out: &mut Output) {
        let mut removes = self.stale_removes(key, now_ms);
        let mut adds = vec![(Slot::Register, Payload::Value(Some(value)))];
        if let Some(st) = self.keys.get(key) {
            removes.extend(st.observed(|s| s.kind().is_some() || (*s == Slot::Expiry && expiry != SetExpiry::Keep)));
        }
        match expiry {
            SetExpiry::InMs(ms) => adds.push((Slot::Expiry, Payload::Expiry(Some(now_ms.saturating_add(ms))))),
            SetExpiry::AtMs(at) => adds.push((Slot::Expiry, Payload::Expiry(Some(at)))),
            SetExpiry::Clear | SetExpiry::Keep => {}
        }
        self.write(key, Delta { removes, adds }, now_ms, out);
    }

    /// DEL semantics on a live key: remove everything observed; a string leaves a tombstone so a
    /// concurrent older write does not win under `lww`.
    fn delete_key(&mut self, key: &Bytes, now_ms: u64, out: &mut Output) {
        self.delete_observed(key, true, now_ms, out);
    }

    /// The delete of an expired key: like `DEL`, but the expiry entries stay (see `expire_step`).
    fn delete_expired(&mut self, key: &Bytes, now_ms: u64, out: &mut Output) {
        self.delete_observed(key, false, now_ms, out);
    }

    fn delete_observed(&mut self, key: &Bytes, remove_expiry: bool, now_ms: u64, out: &mut Output) {
        let Some(st) = self.keys.get(key) else { return };
        let mut removes = st.observed(|s| !s.is_floor() && (remove_expiry || *s != Slot::Expiry));
        if self.cfg.planted_bug == Some(PlantedBug::DeleteSparesSiblings) {
            // Remove only the newest string version: older concurrent ones survive the delete.
            let newest = st.entries(&Slot::Register).and_then(|es| {
                es.iter()
                    .max_by_key(|(d, e)| crate::state::lww_key(d, e))
                    .map(|(d, _)| *d)
            });
            removes.retain(|(s, d)| *s != Slot::Register || Some(*d) == newest);
        }
        let mut adds = if st.entries(&Slot::Register).is_some() {
            vec![(Slot::Register, Payload::Value(None))]
        } else {
            Vec::new()
        };
        // A counter reset records, per replica with an entry, the running total it removed.
        // Floors it sees are left alone: they may still apply to increments elsewhere.
        if let Some(es) = st.entries(&Slot::Counter) {
            let replicas: BTreeSet<ReplicaId> = es.keys().map(|d| d.replica).collect();
            for r in replicas {
                if let Some((d, total, _, _)) = st.counter_entry(r) {
                    adds.push((Slot::CounterFloor(r), Payload::Floor { seq: d.counter, total }));
                }
            }
        }
        if removes.is_empty() && adds.is_empty() {
            return;
        }
        self.write(key, Delta { removes, adds }, now_ms, out);
    }

    /// Execute one client command at `now_ms` (ms since the Unix epoch). A command that writes
    /// several ops (`MSET`, `DEL a b`, …) writes them as one unit: every other region applies
    /// them together.
    pub fn execute(&mut self, req: Request, now_ms: u64, out: &mut Output) -> Result<Reply, CommandError> {
        self.execute_with(now_ms, out, |unit| unit.execute(req))
    }

    /// Execute commands one after the other as one atomic unit (`MULTI`/`EXEC`): a failing
    /// command does not stop the others (as in Redis), and every op they write is applied by
    /// every other region together, or not at all.
    pub fn execute_unit(
        &mut self,
        reqs: Vec<Request>,
        now_ms: u64,
        out: &mut Output,
    ) -> Vec<Result<Reply, CommandError>> {
        self.execute_with(now_ms, out, |unit| reqs.into_iter().map(|r| unit.execute(r)).collect())
    }

    /// Run `f`, which executes commands through the [`Unit`] it is given, as one atomic unit:
    /// nothing else runs on this engine meanwhile (the caller holds it), and every op the
    /// commands write is applied by every other region together. For callers that decide the
    /// next command from the previous reply (a script's `redis.call`); a command that fails does
    /// not undo the ones before it (as in Redis).
    pub fn execute_with<T>(&mut self, now_ms: u64, out: &mut Output, f: impl FnOnce(&mut Unit<'_>) -> T) -> T {
        let start = out.local_ops.len();
        let result = f(&mut Unit {
            engine: self,
            now_ms,
            out,
        });
        self.seal_unit(start, out);
        result
    }

    /// Mark the replicated ops written since `start` as one unit when there are several (they are
    /// consecutive seqs of this writer).
    fn seal_unit(&self, start: usize, out: &mut Output) {
        let me = self.cfg.replica;
        let mine = || out.local_ops[start..].iter().filter(|o| o.origin == me);
        let count = mine().count();
        if !(2..=MAX_UNIT_OPS).contains(&count) || mine().map(|o| o.size_bytes()).sum::<usize>() > MAX_UNIT_BYTES {
            return;
        }
        let end = mine().map(|o| o.seq).max().unwrap_or(0);
        for op in out.local_ops[start..].iter_mut().filter(|o| o.origin == me) {
            op.unit_end = end;
        }
    }

    /// Execute one command inside a unit: only through [`Engine::execute_with`], which seals
    /// the unit's ops.
    fn execute_one(&mut self, req: Request, now_ms: u64, out: &mut Output) -> Result<Reply, CommandError> {
        use Request as R;
        let bulk_or_nil = |v: Option<Bytes>| v.map(Reply::Bulk).unwrap_or(Reply::Nil);
        Ok(match req {
            R::Get(key) => bulk_or_nil(self.string_value(&key, now_ms)?),
            R::Set {
                key,
                value,
                condition,
                expiry,
                get,
            } => {
                let old = if get { self.string_value(&key, now_ms)? } else { None };
                let exists = self.live_kind(&key, now_ms).is_some();
                let skip = match condition {
                    SetCondition::Always => false,
                    SetCondition::IfAbsent => exists,
                    SetCondition::IfPresent => !exists,
                };
                if skip {
                    return Ok(if get { bulk_or_nil(old) } else { Reply::Nil });
                }
                self.set_string(&key, value, expiry, now_ms, out);
                if get {
                    bulk_or_nil(old)
                } else {
                    Reply::Ok
                }
            }
            R::MGet(keys) => Reply::Array(
                keys.iter()
                    .map(|k| bulk_or_nil(self.string_value(k, now_ms).ok().flatten()))
                    .collect(),
            ),
            R::MSet(pairs) => {
                for (k, v) in pairs {
                    self.set_string(&k, v, SetExpiry::Clear, now_ms, out);
                }
                Reply::Ok
            }
            R::GetDel(key) => {
                let old = self.string_value(&key, now_ms)?;
                if old.is_some() {
                    self.delete_key(&key, now_ms, out);
                }
                bulk_or_nil(old)
            }
            R::StrLen(key) => Reply::Int(self.string_value(&key, now_ms)?.map(|v| v.len() as i64).unwrap_or(0)),
            R::Append { key, value } => {
                let old = self.string_value(&key, now_ms)?;
                let old_len = old.as_ref().map_or(0, |o| o.len());
                if old_len.saturating_add(value.len()) > self.cfg.max_value_bytes {
                    // Redis's own words (its limit is proto-max-bulk-len; ours limits.max_value_bytes).
                    return Err(CommandError::Other(
                        "string exceeds maximum allowed size (proto-max-bulk-len)".into(),
                    ));
                }
                let mut new = old.map(|o| o.to_vec()).unwrap_or_default();
                new.extend_from_slice(&value);
                let len = new.len() as i64;
                self.set_string(&key, Bytes::from(new), SetExpiry::Keep, now_ms, out);
                Reply::Int(len)
            }
            R::IncrBy { key, by } => Reply::Int(self.incr_by(&key, by, now_ms, out)?),
            R::Del(keys) => {
                let mut n = 0;
                for k in keys {
                    if self.live_kind(&k, now_ms).is_some() {
                        self.delete_key(&k, now_ms, out);
                        n += 1;
                    }
                }
                Reply::Int(n)
            }
            R::Exists(keys) => Reply::Int(keys.iter().filter(|k| self.live_kind(k, now_ms).is_some()).count() as i64),
            R::Type(key) => Reply::Status(
                self.live_kind(&key, now_ms)
                    .map(|(k, _)| k.redis_name())
                    .unwrap_or("none")
                    .to_string(),
            ),
            R::Keys(pattern) => {
                let mut keys: Vec<&Bytes> = self.live_keys(now_ms).filter(|k| glob_match(&pattern, k)).collect();
                keys.sort();
                Reply::Array(keys.into_iter().map(|k| Reply::Bulk(k.clone())).collect())
            }
            R::Scan {
                cursor,
                pattern,
                count,
                kind,
            } => {
                // The cursor is a key hash: keys present for the whole scan are returned (at least
                // once), whatever is added or removed meanwhile. A bucket is never split.
                let count = count.clamp(1, 100_000);
                let mut found = Vec::new();
                // COUNT counts live keys, as in Redis (whose deleted keys are gone at once); keys
                // that are only tombstones still cost work, bounded at 10 per live key asked for.
                let mut scanned = 0;
                let mut examined = 0usize;
                let mut next = 0;
                for (h, bucket) in self.keys.buckets_from(cursor) {
                    if scanned >= count || examined >= count.saturating_mul(10) {
                        next = h;
                        break;
                    }
                    for (k, _) in bucket {
                        examined += 1;
                        let Some((kd, _)) = self.live_kind(k, now_ms) else {
                            continue;
                        };
                        scanned += 1;
                        if pattern.as_ref().is_some_and(|p| !glob_match(p, k)) {
                            continue;
                        }
                        if kind
                            .as_ref()
                            .is_some_and(|t| !t.eq_ignore_ascii_case(kd.redis_name().as_bytes()))
                        {
                            continue;
                        }
                        found.push(k);
                    }
                }
                // Sorted within a page, so a one-page scan reads like KEYS.
                found.sort_unstable();
                let found = found.into_iter().map(|k| Reply::Bulk(k.clone())).collect();
                Reply::Array(vec![Reply::Bulk(Bytes::from(next.to_string())), Reply::Array(found)])
            }
            R::DbSize => Reply::Int(self.live_keys(now_ms).count() as i64),
            R::FlushAll => {
                // Every live key (dead ones, tombstones only, need no new delete).
                let keys: Vec<Bytes> = self.live_keys(now_ms).cloned().collect();
                for k in keys {
                    self.delete_key(&k, now_ms, out);
                }
                Reply::Ok
            }
            R::Expire { key, in_ms } => {
                if self.live_kind(&key, now_ms).is_none() {
                    return Ok(Reply::Int(0));
                }
                if in_ms <= 0 {
                    self.delete_key(&key, now_ms, out);
                } else {
                    let removes = self
                        .keys
                        .get(&key)
                        .expect("a live key has a state")
                        .observed_slot(&Slot::Expiry);
                    let at = now_ms.saturating_add(in_ms as u64);
                    self.write(
                        &key,
                        Delta {
                            removes,
                            adds: vec![(Slot::Expiry, Payload::Expiry(Some(at)))],
                        },
                        now_ms,
                        out,
                    );
                }
                Reply::Int(1)
            }
            R::Ttl { key, millis } => match self.live_kind(&key, now_ms) {
                None => Reply::Int(-2),
                Some((_, st)) => match st.expiry_ms() {
                    None => Reply::Int(-1),
                    Some(at) => {
                        let left = at.saturating_sub(now_ms) as i64;
                        Reply::Int(if millis { left } else { (left + 500) / 1000 })
                    }
                },
            },
            R::Persist(key) => match self.live_kind(&key, now_ms) {
                Some((_, st)) if st.expiry_ms().is_some() => {
                    let removes = st.observed_slot(&Slot::Expiry);
                    self.write(
                        &key,
                        Delta {
                            removes,
                            adds: vec![(Slot::Expiry, Payload::Expiry(None))],
                        },
                        now_ms,
                        out,
                    );
                    Reply::Int(1)
                }
                _ => Reply::Int(0),
            },
            R::HSet { key, pairs } => Reply::Int(self.hset(&key, pairs, now_ms, out)?),
            R::HSetNx { key, field, value } => {
                if self
                    .expect_kind(&key, Kind::Hash, now_ms)?
                    .is_some_and(|st| Self::hash_field(st, &field).is_some())
                {
                    Reply::Int(0)
                } else {
                    self.hset(&key, vec![(field, value)], now_ms, out)?;
                    Reply::Int(1)
                }
            }
            R::HGet { key, field } => bulk_or_nil(
                self.expect_kind(&key, Kind::Hash, now_ms)?
                    .and_then(|st| Self::hash_field(st, &field)),
            ),
            R::HMGet { key, fields } => {
                let st = self.expect_kind(&key, Kind::Hash, now_ms)?;
                Reply::Array(
                    fields
                        .iter()
                        .map(|f| bulk_or_nil(st.and_then(|st| Self::hash_field(st, f))))
                        .collect(),
                )
            }
            R::HDel { key, fields } => {
                Reply::Int(self.remove_slots(&key, Kind::Hash, fields.into_iter().map(Slot::Field), now_ms, out)?)
            }
            R::HGetAll(key) => Reply::Map(
                self.expect_kind(&key, Kind::Hash, now_ms)?
                    .map(Self::hash_fields)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(f, v)| (Reply::Bulk(f), Reply::Bulk(v)))
                    .collect(),
            ),
            R::HExists { key, field } => Reply::Int(
                self.expect_kind(&key, Kind::Hash, now_ms)?
                    .and_then(|st| Self::hash_field(st, &field))
                    .is_some() as i64,
            ),
            R::HLen(key) => Reply::Int(
                self.expect_kind(&key, Kind::Hash, now_ms)?
                    .map(|st| Self::hash_fields(st).len())
                    .unwrap_or(0) as i64,
            ),
            R::HKeys(key) => Reply::Array(
                self.expect_kind(&key, Kind::Hash, now_ms)?
                    .map(Self::hash_fields)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(f, _)| Reply::Bulk(f))
                    .collect(),
            ),
            R::HVals(key) => Reply::Array(
                self.expect_kind(&key, Kind::Hash, now_ms)?
                    .map(Self::hash_fields)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(_, v)| Reply::Bulk(v))
                    .collect(),
            ),
            R::HIncrBy { key, field, by } => {
                let current = match self
                    .expect_kind(&key, Kind::Hash, now_ms)?
                    .and_then(|st| Self::hash_field(st, &field))
                {
                    None => 0,
                    Some(v) => parse_i64(&v).ok_or(CommandError::HashNotInteger)?,
                };
                let new = current.checked_add(by).ok_or(CommandError::Overflow)?;
                self.hset(&key, vec![(field, Bytes::from(new.to_string()))], now_ms, out)?;
                Reply::Int(new)
            }
            R::SAdd { key, members } => {
                // Every SADD writes, even of a present member: a re-add is a fresh dot, so it wins
                // against a concurrent SREM that did not see it (add-wins). The reply counts new
                // members, as in Redis.
                let st = self.expect_kind(&key, Kind::Set, now_ms)?;
                let members: BTreeSet<Bytes> = members.into_iter().collect();
                let mut removes = Vec::new();
                let mut added = 0;
                for m in &members {
                    let slot = Slot::Member(m.clone());
                    match st.and_then(|st| st.entries(&slot).map(|_| st)) {
                        Some(st) => removes.extend(st.observed_slot(&slot)),
                        None => added += 1,
                    }
                }
                removes.extend(self.stale_removes(&key, now_ms));
                let adds = members
                    .into_iter()
                    .map(|m| (Slot::Member(m), Payload::Present))
                    .collect();
                self.write(&key, Delta { removes, adds }, now_ms, out);
                Reply::Int(added)
            }
            R::SRem { key, members } => {
                Reply::Int(self.remove_slots(&key, Kind::Set, members.into_iter().map(Slot::Member), now_ms, out)?)
            }
            R::SMembers(key) => Reply::Set(
                self.expect_kind(&key, Kind::Set, now_ms)?
                    .map(Self::set_members)
                    .unwrap_or_default()
                    .into_iter()
                    .map(Reply::Bulk)
                    .collect(),
            ),
            R::SIsMember { key, member } => Reply::Int(
                self.expect_kind(&key, Kind::Set, now_ms)?
                    .is_some_and(|st| st.entries(&Slot::Member(member)).is_some()) as i64,
            ),
            R::SMIsMember { key, members } => {
                let st = self.expect_kind(&key, Kind::Set, now_ms)?;
                Reply::Array(
                    members
                        .into_iter()
                        .map(|m| Reply::Int(st.is_some_and(|st| st.entries(&Slot::Member(m)).is_some()) as i64))
                        .collect(),
                )
            }
            R::SCard(key) => Reply::Int(
                self.expect_kind(&key, Kind::Set, now_ms)?
                    .map(|st| Self::set_members(st).len())
                    .unwrap_or(0) as i64,
            ),
            R::Siblings(key) => {
                if let Some((kind, _)) = self.live_kind(&key, now_ms) {
                    if kind != Kind::String && kind != Kind::Counter {
                        return Err(CommandError::WrongType);
                    }
                }
                let view = self.describe(&key, now_ms);
                let siblings = if view.kind == Some(Kind::Counter) {
                    vec![Reply::Array(vec![
                        bulk_or_nil(view.value.clone()),
                        Reply::bulk(self.region_name(self.cfg.replica)),
                        Reply::Nil,
                        Reply::Nil,
                    ])]
                } else {
                    view.siblings
                        .iter()
                        .map(|s| {
                            Reply::Array(vec![
                                bulk_or_nil(s.value.clone()),
                                Reply::bulk(s.region.clone()),
                                Reply::bulk(s.hlc.to_string()),
                                Reply::bulk(s.dot.to_string()),
                            ])
                        })
                        .collect()
                };
                Reply::Array(vec![Reply::bulk(view.context), Reply::Array(siblings)])
            }
            R::Resolve { key, context, value } => {
                self.resolve_with_context(&key, &context, Some(value), now_ms, out);
                Reply::Ok
            }
            req @ (R::SetBit { .. }
            | R::GetBit { .. }
            | R::BitCount { .. }
            | R::BitPos { .. }
            | R::BitOp { .. }
            | R::BitField { .. }) => return self.execute_bitmap(req, now_ms, out),
            req @ (R::GetRange { .. }
            | R::SetRange { .. }
            | R::IncrByFloat { .. }
            | R::GetEx { .. }
            | R::MSetNx(_)
            | R::Lcs { .. }) => return self.execute_string(req, now_ms, out),
            req @ (R::ExpireWhen { .. }
            | R::ExpireTime { .. }
            | R::Touch(_)
            | R::RandomKey
            | R::Rename { .. }
            | R::Copy { .. }
            | R::Object { .. }
            | R::Dump(_)
            | R::Restore { .. }) => return self.execute_keyspace(req, now_ms, out),
            req @ (R::HIncrByFloat { .. } | R::HStrLen { .. } | R::HRandField { .. } | R::HScan { .. }) => {
                return self.execute_hash(req, now_ms, out)
            }
            req @ (R::SPop { .. }
            | R::SRandMember { .. }
            | R::SMove { .. }
            | R::SCombine { .. }
            | R::SCombineStore { .. }
            | R::SInterCard { .. }
            | R::SScan { .. }) => return self.execute_set(req, now_ms, out),
            R::Zset(z) => return self.execute_zset(z, now_ms, out),
            R::Hll(h) => return self.execute_hll(h, now_ms, out),
            req @ (R::ListPush { .. }
            | R::ListPop { .. }
            | R::LRange { .. }
            | R::LLen(_)
            | R::LIndex { .. }
            | R::LSet { .. }
            | R::LRem { .. }
            | R::LTrim { .. }
            | R::LInsert { .. }
            | R::LPos { .. }
            | R::LMove { .. }
            | R::LMPop { .. }) => return self.execute_list(req, now_ms, out),
            req @ R::Sort { .. } => return self.execute_sort(req, now_ms, out),
        })
    }

    /// The next number of the engine's pseudo-random stream (splitmix64).
    fn next_random(&mut self) -> u64 {
        self.random = self.random.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.random;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A pseudo-random index below `n` (> 0).
    fn random_below(&mut self, n: usize) -> usize {
        (self.next_random() % n as u64) as usize
    }

    /// A write that supersedes exactly the data dots `context` covers (siblings it did not see
    /// stay), keeping the expiry. On a dead key (tombstones and expiry entries only) it starts
    /// from empty, like every other write there: it removes everything but counter floors, so
    /// every region agrees on what a write on a dead key removes (see `apply_remote`).
    pub fn resolve_with_context(
        &mut self,
        key: &Bytes,
        context: &VersionVector,
        value: Option<Bytes>,
        now_ms: u64,
        out: &mut Output,
    ) -> Dot {
        let removes = self
            .keys
            .get(key)
            .map(|st| {
                if st.only_tombstones() {
                    return st.observed(|s| !s.is_floor());
                }
                st.observed(|s| s.kind().is_some())
                    .into_iter()
                    .filter(|(_, d)| context.covers(*d))
                    .collect()
            })
            .unwrap_or_default();
        self.write(
            key,
            Delta {
                removes,
                adds: vec![(Slot::Register, Payload::Value(value))],
            },
            now_ms,
            out,
        )
    }

    /// HDEL / SREM: remove the observed entries of those of `slots` that are present (each once);
    /// answers how many were present. No write when none was.
    fn remove_slots(
        &mut self,
        key: &Bytes,
        kind: Kind,
        slots: impl IntoIterator<Item = Slot>,
        now_ms: u64,
        out: &mut Output,
    ) -> Result<i64, CommandError> {
        let Some(st) = self.expect_kind(key, kind, now_ms)? else {
            return Ok(0);
        };
        let mut removes = Vec::new();
        let mut n = 0;
        for slot in slots.into_iter().collect::<BTreeSet<_>>() {
            if st.entries(&slot).is_some() {
                n += 1;
                removes.extend(st.observed_slot(&slot));
            }
        }
        if n > 0 {
            removes.extend(self.stale_removes(key, now_ms));
            self.write(
                key,
                Delta {
                    removes,
                    adds: Vec::new(),
                },
                now_ms,
                out,
            );
        }
        Ok(n)
    }

    fn incr_by(&mut self, key: &Bytes, by: i64, now_ms: u64, out: &mut Output) -> Result<i64, CommandError> {
        let me = self.own_replica(key);
        let live = self.live_kind(key, now_ms).map(|(k, _)| k);
        let st = self.keys.get(key);
        // Floors on other replicas are never removed here (stale_removes keeps them): they still
        // apply to those replicas' increments this region has not seen.
        let mut removes = self.stale_removes(key, now_ms);
        if let Some(st) = st {
            // This write supersedes this replica's own entry and every reset of it it has seen.
            removes.extend(
                st.observed_slot(&Slot::Counter)
                    .into_iter()
                    .filter(|(_, d)| d.replica == me),
            );
            removes.extend(st.floors(me, |_| true));
        }
        let to_i64 = |v: i128| i64::try_from(v).map_err(|_| CommandError::Overflow);
        // (value the client sees, running total, base, base_seq)
        let (new_value, total, base, base_seq): (i64, i128, i128, u64) = match (live, st) {
            (Some(Kind::Counter), Some(st)) => {
                let new = to_i64(st.counter_value() + by as i128)?;
                let (t, b, bs) = match (st.counter_entry(me), st.counter_floor(me)) {
                    (Some((_, t, b, bs)), _) => (t, b, bs),
                    (None, Some((fs, ft))) => (ft, ft, fs),
                    (None, None) => (0, 0, 0),
                };
                // Fold in a later reset of this replica's total (a concurrent DEL now seen).
                let (b, bs) = match st.counter_floor(me) {
                    Some((fs, ft)) if fs > bs => (ft, fs),
                    _ => (b, bs),
                };
                (new, t + by as i128, b, bs)
            }
            (Some(Kind::String), Some(st)) => {
                let v = self.register_view(key, st).unwrap_or_default();
                let current = parse_i64(&v).ok_or(CommandError::NotInteger)?;
                let new = current.checked_add(by).ok_or(CommandError::Overflow)?;
                // The string becomes a counter: every observed string/counter entry is replaced,
                // and whatever this replica counted before is reset.
                removes.extend(st.observed(|s| slot_is_kind(s, Kind::String) || slot_is_kind(s, Kind::Counter)));
                let (seq, t) = st.counter_running(me).unwrap_or((0, 0));
                (new, t + new as i128, t, seq)
            }
            (None, Some(st)) => {
                // Not live (deleted or expired): start from zero on top of this replica's running
                // total, so a reset concurrent with this write that saw the old total stays right.
                let (seq, t) = st.counter_running(me).unwrap_or((0, 0));
                (by, t + by as i128, t, seq)
            }
            (None, None) => (by, by as i128, 0, 0),
            _ => return Err(CommandError::WrongType),
        };
        let payload = match i64::try_from(total) {
            Ok(t) if base == 0 && base_seq == 0 => Payload::Total(t),
            _ => Payload::Counted { total, base, base_seq },
        };
        self.write(
            key,
            Delta {
                removes,
                adds: vec![(Slot::Counter, payload)],
            },
            now_ms,
            out,
        );
        Ok(new_value)
    }

    fn hset(
        &mut self,
        key: &Bytes,
        pairs: Vec<(Bytes, Bytes)>,
        now_ms: u64,
        out: &mut Output,
    ) -> Result<i64, CommandError> {
        let st = self.expect_kind(key, Kind::Hash, now_ms)?;
        let mut fields: BTreeMap<Bytes, Bytes> = BTreeMap::new();
        for (f, v) in pairs {
            fields.insert(f, v); // the last value of a repeated field wins, as in Redis
        }
        let mut removes = Vec::new();
        let mut new_fields = 0;
        for f in fields.keys() {
            let slot = Slot::Field(f.clone());
            match st {
                Some(st) if st.entries(&slot).is_some() => removes.extend(st.observed_slot(&slot)),
                _ => new_fields += 1,
            }
        }
        removes.extend(self.stale_removes(key, now_ms));
        let adds = fields
            .into_iter()
            .map(|(f, v)| (Slot::Field(f), Payload::Value(Some(v))))
            .collect();
        self.write(key, Delta { removes, adds }, now_ms, out);
        Ok(new_fields)
    }

    // ----- remote ops ---------------------------------------------------------------------

    fn deliverable(&self, op: &Op) -> bool {
        if self.cfg.planted_bug == Some(PlantedBug::IgnoreDeps) {
            return self.applied.get(op.origin) + 1 == op.seq;
        }
        self.applied.get(op.origin) + 1 == op.seq
            && op.deps.iter().all(|(r, c)| r == op.origin || self.applied.get(r) >= c)
    }

    /// Whether the rest of `op`'s unit (its origin's seqs after it, up to `unit_end`) waits in
    /// the buffer, so the whole unit can be applied now, together.
    fn unit_ready(&self, op: &Op) -> bool {
        if !op.in_unit() || op.unit_end == op.seq || self.cfg.planted_bug == Some(PlantedBug::SplitUnits) {
            return true;
        }
        let Some(queue) = self.buffer.get(&op.origin) else {
            return false;
        };
        (op.seq + 1..=op.unit_end).all(|s| queue.contains_key(&s))
    }

    /// Receive an op from a peer: drop it if already applied, apply it if its dependencies are
    /// met (then anything it unblocks), else hold it in the bounded causal buffer.
    pub fn receive(&mut self, op: Op, now_ms: u64, out: &mut Output) -> Received {
        if !self.cfg.regions.contains_key(&region_of(op.origin)) {
            // Not a writer of a region of this cluster (or the reserved local id): never applied.
            self.stats.unknown_origin_dropped += 1;
            return Received::Duplicate;
        }
        if op.seq <= self.applied.get(op.origin) || self.buffer.get(&op.origin).is_some_and(|b| b.contains_key(&op.seq))
        {
            self.stats.duplicates_dropped += 1;
            return Received::Duplicate;
        }
        if !self.deliverable(&op) || !self.unit_ready(&op) {
            let size = op.size_bytes();
            let over_bytes =
                self.buffered > 0 && self.buffered_bytes.saturating_add(size) > self.cfg.max_buffered_bytes;
            if self.buffered >= self.cfg.max_buffered_ops || over_bytes {
                self.stats.buffer_overflows += 1;
                out.catch_up = true;
                return Received::Overflow;
            }
            let completes_unit = op.in_unit();
            self.buffer.entry(op.origin).or_default().insert(op.seq, op);
            self.buffered += 1;
            self.buffered_bytes += size;
            // The last missing op of a unit makes the unit, waiting in the buffer, applicable.
            if completes_unit {
                let n = self.drain_buffer(now_ms, out);
                if n > 0 {
                    self.run_writebacks(now_ms, out);
                    return Received::Applied(n);
                }
            }
            return Received::Buffered;
        }
        self.apply_remote(op, now_ms, out);
        let n = 1 + self.drain_buffer(now_ms, out);
        self.run_writebacks(now_ms, out);
        Received::Applied(n)
    }

    fn drain_buffer(&mut self, now_ms: u64, out: &mut Output) -> usize {
        let mut applied = 0;
        loop {
            let mut progress = false;
            let origins: Vec<ReplicaId> = self.buffer.keys().copied().collect();
            for origin in origins {
                loop {
                    let applied_origin = self.applied.get(origin);
                    let queue = self.buffer.get_mut(&origin).expect("origin present");
                    // Ops already applied (delivered again by another path) are dropped here.
                    while queue.first_key_value().is_some_and(|(&s, _)| s <= applied_origin) {
                        let (_, dropped) = queue.pop_first().expect("non-empty");
                        self.buffered -= 1;
                        self.buffered_bytes -= dropped.size_bytes();
                    }
                    let ready = match self.buffer.get(&origin).and_then(|q| q.first_key_value()) {
                        Some((_, op)) => self.deliverable(op) && self.unit_ready(op),
                        None => false,
                    };
                    if !ready {
                        break;
                    }
                    let (_, op) = self
                        .buffer
                        .get_mut(&origin)
                        .expect("origin present")
                        .pop_first()
                        .expect("ready op");
                    self.buffered -= 1;
                    self.buffered_bytes -= op.size_bytes();
                    self.apply_remote(op, now_ms, out);
                    applied += 1;
                    progress = true;
                }
                if self.buffer.get(&origin).is_some_and(|q| q.is_empty()) {
                    self.buffer.remove(&origin);
                }
            }
            if !progress {
                return applied;
            }
        }
    }

    fn apply_remote(&mut self, op: Op, now_ms: u64, out: &mut Output) {
        debug_assert!(self.deliverable(&op));
        self.clock.observe(op.hlc, now_ms);
        let policy = self.cfg.policies.policy_for(&op.key).clone();
        let key = op.key.clone();
        let st = self.keys.get_or_default(&key);
        let kinds_before = st.kinds();
        let mut op = op;
        if self.cfg.planted_bug == Some(PlantedBug::IgnoreRemoves) {
            op.delta.removes.clear();
        }
        let mut touched: Vec<Slot> = delta_slots(&op.delta).collect();
        let _fresh = if op.delta.adds.iter().any(|(s, _)| s.kind().is_some()) {
            // The origin superseded every string tombstone it had seen; a replica that purged a
            // stable tombstone could not list it, so the rule is applied here from `deps`. Without
            // it, a write made after a purge would leave the tombstone as a sibling elsewhere.
            let seen = |d: Dot| (d.replica == op.origin && d.counter < op.seq) || op.deps.get(d.replica) >= d.counter;
            let mut delta = op.delta.clone();
            delta
                .removes
                .extend(st.tombstones(|d| d.replica != LOCAL_REPLICA && seen(d)));
            // A dead key (tombstones and expiry entries only) whose every op the origin had seen:
            // the origin held exactly this state, so its write removed everything of it (a write
            // on a key that is not live starts from empty, `stale_removes`) — unless it had
            // purged the key, and then could list nothing. Applying that rule here keeps the
            // expiry entries of a dead key (an expiry delete keeps them) from surviving only in
            // the regions that had not purged it yet, under the new data.
            if st.only_tombstones() && st.ctx.iter().all(|(r, c)| seen(Dot::new(r, c))) {
                delta.removes.extend(st.observed(|s| !s.is_floor()));
            }
            if op.delta.adds.iter().any(|(s, _)| *s == Slot::Counter) {
                delta.removes.extend(st.floors(op.origin, seen));
            }
            touched.extend(delta.removes.iter().map(|(s, _)| s.clone()));
            st.apply(op.dot(), op.hlc, &delta)
        } else {
            st.apply(op.dot(), op.hlc, &op.delta)
        };
        // `_fresh` is false only when the key already covered this op's dot (a full-state transfer
        // brought its effect, or a write that superseded it arrived first): its removals were
        // still applied (see `KeyState::apply`).
        self.applied.set(op.origin, op.seq);
        self.stats.remote_ops_applied += 1;

        let mut conflicts = Vec::new();
        for (slot, _) in &op.delta.adds {
            let Some(entries) = st.entries(slot) else { continue };
            if entries.len() < 2 {
                continue;
            }
            match slot {
                Slot::Register => {
                    let versions = versions_of(entries);
                    let dots: Vec<Dot> = entries.keys().copied().collect();
                    let (winner, outcome) = match &policy.strings {
                        Strategy::Lww => {
                            let w = st.lww_winner(&Slot::Register).map(|(d, _)| *d);
                            (
                                w,
                                format!(
                                    "lww: {} won; {} loser(s) kept in the conflict log",
                                    fmt_dot(w),
                                    dots.len() - 1
                                ),
                            )
                        }
                        Strategy::Priority => {
                            let prio = &self.cfg.policies;
                            let w = entries
                                .iter()
                                .max_by_key(|(d, e)| (prio.priority_rank(d.replica), lww_key(d, e)))
                                .map(|(d, _)| *d);
                            (
                                w,
                                format!("priority: {} shown; {} versions kept", fmt_dot(w), dots.len()),
                            )
                        }
                        Strategy::Siblings => {
                            let w = st.lww_winner(&Slot::Register).map(|(d, _)| *d);
                            (
                                w,
                                format!("siblings: {} versions kept; GET shows {}", dots.len(), fmt_dot(w)),
                            )
                        }
                        Strategy::Script(name) => {
                            self.writeback.insert(key.clone());
                            (
                                None,
                                format!("script {name}: resolved on read; write-back by the lowest origin"),
                            )
                        }
                    };
                    if st
                        .entries(&Slot::Register)
                        .is_some_and(|e| e.len() > self.cfg.policies.max_siblings)
                    {
                        self.writeback.insert(key.clone());
                    }
                    conflicts.push((
                        ConflictKind::Register,
                        policy.strings.name().to_string(),
                        dots,
                        versions,
                        winner,
                        outcome,
                    ));
                }
                Slot::Field(f) => {
                    let versions = versions_of(entries);
                    let dots: Vec<Dot> = entries.keys().copied().collect();
                    let w = st.lww_winner(slot).map(|(d, _)| *d);
                    let outcome = format!("lww (hash field): {} won", fmt_dot(w));
                    conflicts.push((
                        ConflictKind::Field(f.clone()),
                        "lww".to_string(),
                        dots,
                        versions,
                        w,
                        outcome,
                    ));
                }
                _ => {}
            }
        }
        let kinds_after = st.kinds();
        let added_kinds: BTreeSet<Kind> = op.delta.adds.iter().filter_map(|(s, _)| s.kind()).collect();
        if kinds_after.len() > 1 && kinds_before.iter().any(|k| !added_kinds.contains(k)) && !added_kinds.is_empty() {
            // A type conflict: show the newest entry of each kind.
            let mut versions = Vec::new();
            for kind in &kinds_after {
                let newest = st
                    .slots
                    .iter()
                    .filter(|(s, _)| s.kind() == Some(*kind))
                    .flat_map(|(_, es)| es.iter())
                    .max_by_key(|(d, e)| lww_key(d, e));
                if let Some((d, e)) = newest {
                    versions.push(ConflictVersion {
                        dot: *d,
                        hlc: e.hlc,
                        value: None,
                        kind: Some(kind.name().to_string()),
                    });
                }
            }
            let shown = st.kind();
            let dots: Vec<Dot> = versions.iter().map(|v| v.dot).collect();
            let winner = versions
                .iter()
                .find(|v| v.kind.as_deref() == shown.map(|k| k.name()))
                .map(|v| v.dot);
            let outcome = format!(
                "type: {} shown (newest write)",
                shown.map(|k| k.name()).unwrap_or("none")
            );
            conflicts.push((ConflictKind::Type, "type".to_string(), dots, versions, winner, outcome));
        }
        for (kind, policy_name, dots, versions, winner, outcome) in conflicts {
            self.record_conflict(&key, kind, policy_name, &dots, versions, winner, outcome, now_ms, out);
        }
        if self.cfg.planted_bug == Some(PlantedBug::CollapseSiblings) {
            let st = self.keys.get_or_default(&key);
            if let Some(winner) = st.lww_winner(&Slot::Register).map(|(d, _)| *d) {
                if let Some(es) = st.slots.get_mut(&Slot::Register) {
                    es.retain(|d, _| *d == winner);
                }
            }
        }
        out.touch(&key, touched);
        out.remote_ops.push(op);
    }

    #[allow(clippy::too_many_arguments)]
    fn record_conflict(
        &mut self,
        key: &Bytes,
        kind: ConflictKind,
        policy: String,
        dots: &[Dot],
        versions: Vec<ConflictVersion>,
        winner: Option<Dot>,
        outcome: String,
        now_ms: u64,
        out: &mut Output,
    ) {
        *self.stats.conflicts.entry(policy.clone()).or_default() += 1;
        out.conflicts.push(ConflictRecord {
            id: conflict_id(key, &kind, dots),
            key: key.clone(),
            policy,
            kind,
            versions,
            winner,
            outcome,
            detected_by: self.region(),
            detected_at_ms: now_ms,
        });
    }

    /// Write back a resolved value for keys this replica is designated to resolve (the lowest
    /// replica id among the siblings' origins), for `script` keys and keys over `max_siblings`.
    fn run_writebacks(&mut self, now_ms: u64, out: &mut Output) {
        if !self.autonomous_writes {
            return; // kept in `writeback` for later
        }
        let keys = std::mem::take(&mut self.writeback);
        for key in keys {
            let key: Bytes = key;
            let Some(st) = self.keys.get(&key) else { continue };
            let Some(entries) = st.entries(&Slot::Register) else {
                continue;
            };
            if entries.len() < 2 {
                continue;
            }
            // A region, not a writer: the writer that made the lowest sibling may be retired.
            let designated = entries.keys().map(|d| region_of(d.replica)).min().expect("non-empty");
            if designated != self.region() {
                continue;
            }
            // Resolve only once every region holds these siblings (then the designated replica is
            // the same everywhere) and this replica holds every op any region reported having: a
            // write concurrent with the siblings was made in a region before they reached it, so
            // it is in that region's vector, hence here, and a sibling too. Without the second
            // condition the designated replica could resolve {a, c} while eu's concurrent b was
            // still on its way, and the cluster settled on resolve(resolve(a, c), b).
            let everything_reported = self.peers.values().all(|vv| vv.dominated_by(&self.applied));
            if !everything_reported || !entries.keys().all(|d| self.is_stable(*d)) {
                self.writeback.insert(key);
                continue;
            }
            let covered: VersionVector = entries.keys().map(|d| (d.replica, d.counter)).collect();
            let dots: Vec<Dot> = entries.keys().copied().collect();
            let versions = versions_of(entries);
            let policy = self.cfg.policies.policy_for(&key).strings.clone();
            let over_cap = entries.len() > self.cfg.policies.max_siblings;
            let resolved: Result<Option<Bytes>, String> = match &policy {
                // Only tombstones: the key reads as deleted whatever the resolver would answer
                // (see `register_view`), and garbage collection purges it; over the cap, they
                // collapse into one tombstone.
                Strategy::Script(_) if entries.values().all(|e| e.payload == Payload::Value(None)) => {
                    if !over_cap {
                        continue;
                    }
                    Ok(None)
                }
                Strategy::Script(name) => match self.resolvers.get(name) {
                    Some(r) => r.resolve(&key, &self.siblings_of(st)),
                    None => Err(format!("no resolver named {name:?} is loaded")),
                },
                _ if over_cap => Ok(st.lww_winner(&Slot::Register).and_then(|(_, e)| match &e.payload {
                    Payload::Value(v) => v.clone(),
                    _ => None,
                })),
                _ => continue,
            };
            match resolved {
                Ok(value) => {
                    let dot = self.resolve_with_context(&key, &covered, value, now_ms, out);
                    if over_cap {
                        let outcome = format!(
                            "{} siblings over max_siblings: collapsed by lww write-back {dot}",
                            dots.len()
                        );
                        self.record_conflict(
                            &key,
                            ConflictKind::SiblingCap,
                            policy.name().into(),
                            &dots,
                            versions,
                            Some(dot),
                            outcome,
                            now_ms,
                            out,
                        );
                    }
                }
                Err(e) => {
                    let outcome = format!("resolver failed, siblings kept: {e}");
                    self.record_conflict(
                        &key,
                        ConflictKind::ScriptError(e),
                        "script".into(),
                        &dots,
                        versions,
                        None,
                        outcome,
                        now_ms,
                        out,
                    );
                }
            }
        }
    }

    // ----- full-state transfer -------------------------------------------------------------

    /// Join key states from a peer's snapshot into this replica. Joins are idempotent, so a
    /// transfer interrupted and started again is harmless. The applied vector does not move until
    /// [`Engine::finish_snapshot`].
    ///
    /// Returns the keys whose state failed its invariants and was therefore not merged (the
    /// caller reports them; a correct peer never sends one).
    pub fn merge_snapshot(&mut self, states: Vec<(Bytes, KeyState)>, out: &mut Output) -> Vec<Bytes> {
        self.merge_states(states, None, out)
    }

    /// Join key states into this replica; with `seen` (a transfer's vector), entries the sender
    /// had seen and no longer holds go too ([`KeyState::join_transferred`]).
    fn merge_states(
        &mut self,
        states: Vec<(Bytes, KeyState)>,
        seen: Option<&VersionVector>,
        out: &mut Output,
    ) -> Vec<Bytes> {
        let mut rejected = Vec::new();
        for (key, theirs) in states {
            if !self.cfg.policies.policy_for(&key).replicate {
                continue;
            }
            if theirs.check().is_err() {
                rejected.push(key);
                continue;
            }
            self.transfer_pending
                .get_or_insert_with(VersionVector::new)
                .join(&theirs.ctx);
            let merged = match (self.keys.get(&key), seen) {
                (Some(mine), Some(seen)) => mine.join_transferred(&theirs, seen),
                (Some(mine), None) => mine.join(&theirs),
                (None, _) => theirs,
            };
            self.keys.insert(key.clone(), merged);
            out.touch_whole(&key);
        }
        rejected
    }

    /// Forget a key's state without an op, as if storage had lost it (bit rot, a bug): only for
    /// showing that anti-entropy finds and repairs divergence. Returns whether the key existed.
    #[doc(hidden)]
    pub fn forget_key_for_test(&mut self, key: &[u8], out: &mut Output) -> bool {
        let existed = self.keys.remove(key).is_some();
        if existed {
            out.touch_whole(&Bytes::copy_from_slice(key));
        }
        existed
    }

    /// A full-state transfer from `source` (an upstream link), taken at `vector`, begins (or
    /// begins again): its chunks come through [`Engine::merge_transfer`], its end through
    /// [`Engine::finish_transfer`].
    pub fn begin_snapshot(&mut self, source: u64, vector: &VersionVector) {
        self.transfers.insert(source, (vector.clone(), Default::default()));
    }

    /// Join one chunk of `source`'s full-state transfer (see [`KeyState::join_transferred`]:
    /// entries the sender had seen and no longer holds go here too). Without
    /// [`Engine::begin_snapshot`], as [`Engine::merge_snapshot`].
    pub fn merge_transfer(&mut self, source: u64, states: Vec<(Bytes, KeyState)>, out: &mut Output) -> Vec<Bytes> {
        let Some((vector, keys)) = self.transfers.get_mut(&source) else {
            return self.merge_snapshot(states, out);
        };
        let vector = vector.clone();
        keys.extend(states.iter().map(|(k, _)| k.clone()));
        self.merge_states(states, Some(&vector), out)
    }

    /// `source`'s transfer is complete: every key it did not bring loses the entries its vector
    /// covers (the sender had applied them and removed or purged them), then as
    /// [`Engine::finish_snapshot`].
    pub fn finish_transfer(&mut self, source: u64, vector: &VersionVector, now_ms: u64, out: &mut Output) {
        if let Some((taken_at, brought)) = self.transfers.remove(&source) {
            if taken_at == *vector {
                let policies = &self.cfg.policies;
                let mut emptied = Vec::new();
                for (key, st) in self.keys.iter_mut() {
                    if brought.contains(key) || !policies.policy_for(key).replicate {
                        continue;
                    }
                    if st.drop_covered(vector) {
                        out.touch_whole(key);
                        if st.slots.is_empty() {
                            emptied.push(key.clone());
                        }
                    }
                }
                for key in emptied {
                    self.keys.remove(&key);
                }
            }
        }
        self.finish_snapshot(vector, now_ms, out);
    }

    /// The snapshot covered everything in `vector`: raise the applied vector to it, drop buffered
    /// ops it covers, and apply whatever that unblocks.
    pub fn finish_snapshot(&mut self, vector: &VersionVector, now_ms: u64, out: &mut Output) {
        self.applied.join(vector);
        if !self.transfer_in_progress() {
            self.transfer_pending = None;
        }
        self.drain_buffer(now_ms, out);
        out.meta_changed = true;
        self.run_writebacks(now_ms, out);
    }

    /// Whether a full-state transfer is in progress: keys were merged from a snapshot
    /// ([`Engine::merge_snapshot`]) whose contexts the applied vector does not cover yet (until
    /// [`Engine::finish_snapshot`], or until the ops arrive by another path). Meanwhile a merged
    /// key holds the effect of ops this replica has not applied; the node should refuse writes
    /// (`-TRYAGAIN`) until this turns false. The engine stays correct if it does not: a local
    /// write's `deps` include the key's context (so no region applies it before the ops it
    /// superseded), and an op whose dot a key already covers still applies its removals.
    ///
    /// In memory only: after a restart in the middle of a transfer the node must not take writes
    /// before the transfer is redone (its applied vector is still behind the snapshot's, so a
    /// peer sends one again).
    pub fn transfer_in_progress(&self) -> bool {
        self.transfer_pending
            .as_ref()
            .is_some_and(|v| !v.dominated_by(&self.applied))
    }

    /// A consistent copy of every replicated key state and the vector it reflects.
    pub fn snapshot(&self) -> (VersionVector, Vec<(Bytes, KeyState)>) {
        let states = self
            .keys
            .iter()
            .filter(|(k, _)| self.cfg.policies.policy_for(k).replicate)
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        (self.applied.clone(), states)
    }

    // ----- maintenance --------------------------------------------------------------------

    /// Purge keys holding nothing but tombstones once they are causally stable, judged from the
    /// vectors given to [`Engine::observe_peer`]; without a report from every region, nothing is
    /// purged. Call periodically; each purge takes two calls (open a round, then close it).
    pub fn collect_garbage(&mut self, out: &mut Output) -> usize {
        let peers = &self.peers;
        let others: Vec<ReplicaId> = self
            .cfg
            .regions
            .keys()
            .copied()
            .filter(|r| *r != region_of(self.cfg.replica))
            .collect();
        if !others.iter().all(|r| peers.contains_key(r)) {
            return 0;
        }
        match self.gc_epoch.take() {
            None => {
                let mut stable = self.applied.clone();
                let mut thresholds = VersionVector::new();
                for r in &others {
                    stable = stable.meet(&peers[r]);
                    // Everything region r wrote (any of its writers) before it reported: an op
                    // it wrote concurrently with a dot it had not applied yet is among them.
                    for (w, c) in peers[r].iter() {
                        if region_of(w) == *r {
                            thresholds.set(w, c);
                        }
                    }
                }
                self.gc_epoch = Some(GcEpoch { stable, thresholds });
                0
            }
            Some(epoch) if epoch.thresholds.dominated_by(&self.applied) => {
                let purge: Vec<Bytes> = self
                    .keys
                    .iter()
                    .filter(|(_, st)| {
                        st.only_tombstones()
                            && (st.ctx.dominated_by(&epoch.stable)
                                || self.cfg.planted_bug == Some(PlantedBug::PurgeUnstable))
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in &purge {
                    self.keys.remove(k);
                    out.touch_whole(k);
                }
                // Counter floors on replicas that no longer have an entry, and score floors of a
                // run that is over or that folded in a later floor, once stable, can apply to
                // nothing ever again (no increment concurrent with them is still coming).
                for (k, st) in self.keys.iter_mut() {
                    let mut dead: Vec<(Slot, Dot)> = Vec::new();
                    for (slot, es) in &st.slots {
                        match slot {
                            Slot::CounterFloor(r)
                                if st.counter_entry(*r).is_none() && es.keys().all(|d| epoch.stable.covers(*d)) =>
                            {
                                dead.extend(es.keys().map(|d| (slot.clone(), *d)));
                            }
                            Slot::ScoreFloor(..) => dead.extend(
                                es.iter()
                                    .filter(|(d, e)| epoch.stable.covers(**d) && st.score_floor_dead(slot, e))
                                    .map(|(d, _)| (slot.clone(), *d)),
                            ),
                            _ => {}
                        }
                    }
                    if !dead.is_empty() {
                        for (s, d) in &dead {
                            if let Some(es) = st.slots.get_mut(s) {
                                es.remove(d);
                                if es.is_empty() {
                                    st.slots.remove(s);
                                }
                            }
                        }
                        out.touch(k, dead.into_iter().map(|(s, _)| s));
                    }
                }
                self.stats.keys_purged += purge.len() as u64;
                self.settled.join(&epoch.stable);
                purge.len()
            }
            Some(epoch) => {
                self.gc_epoch = Some(epoch);
                0
            }
        }
    }

    /// Active expiry: look at up to `max_scan` keys (resuming where the last call stopped) and
    /// delete those whose time to live has passed. Only the region that wrote the winning expiry
    /// issues the delete; every region hides the key from reads as soon as it expires anyway.
    ///
    /// The delete waits until the key's expiry entries are *settled* (see [`Engine::settled`]):
    /// every region has applied them and every op concurrent with them has been applied here. A
    /// concurrent longer `EXPIRE` or a `PERSIST` from another region is then already part of the
    /// key's expiry, so "the longer lifetime wins" holds everywhere: without the wait, the first
    /// region to reach its shorter expiry deleted the data, and the longer lifetime lost. The
    /// settled vector advances with garbage-collection rounds, so a key is deleted a round or two
    /// after it expires (and never while some region has not reported its vector); reads hide it
    /// from the moment it expires. Region-local keys (never shipped) are deleted at once.
    ///
    /// The delete removes the data it saw but keeps the expiry entries, so data written
    /// concurrently under the same TTL (an `HSET` of another field, a `SET … KEEPTTL`) is still
    /// expired when it meets the delete, and deleted in turn, rather than living on with no TTL.
    pub fn expire_step(&mut self, now_ms: u64, max_scan: usize, out: &mut Output) -> usize {
        if !self.autonomous_writes {
            return 0;
        }
        let start = self.expire_cursor.take().unwrap_or(0);
        let mut due = Vec::new();
        let mut scanned = 0;
        for (h, bucket) in self.keys.buckets_from(start) {
            if scanned >= max_scan {
                self.expire_cursor = Some(h);
                break;
            }
            for (k, st) in bucket {
                scanned += 1;
                if !st.is_expired(now_ms) || st.only_tombstones() {
                    continue;
                }
                let at = st.expiry_ms().expect("expired has an expiry");
                let writer = st.entries(&Slot::Expiry).and_then(|es| {
                    es.iter()
                        .filter(|(_, e)| e.payload == Payload::Expiry(Some(at)))
                        .map(|(d, _)| region_of(d.replica))
                        .min()
                });
                let settled = || {
                    st.entries(&Slot::Expiry)
                        .is_some_and(|es| es.keys().all(|d| self.settled.covers(*d)))
                };
                if writer == Some(LOCAL_REPLICA) || (writer == Some(self.region()) && settled()) {
                    due.push(k.clone());
                }
            }
        }
        for k in &due {
            self.delete_expired(k, now_ms, out);
        }
        due.len()
    }
}

/// The slots a delta changes.
fn delta_slots(delta: &Delta) -> impl Iterator<Item = Slot> + '_ {
    delta
        .removes
        .iter()
        .map(|(s, _)| s.clone())
        .chain(delta.adds.iter().map(|(s, _)| s.clone()))
}

fn fmt_dot(d: Option<Dot>) -> String {
    d.map(|d| d.to_string()).unwrap_or_else(|| "-".into())
}

fn versions_of(entries: &crate::state::Entries) -> Vec<ConflictVersion> {
    entries
        .iter()
        .map(|(d, e)| ConflictVersion {
            dot: *d,
            hlc: e.hlc,
            value: match &e.payload {
                Payload::Value(v) => v.clone(),
                _ => None,
            },
            kind: None,
        })
        .collect()
}

/// A write removing another replica's `ZINCRBY` run entry records what it removed (a floor),
/// replacing the floors on that run it had seen: that replica may have gone on with the run
/// concurrently, and its later entries must count only what they added since (see
/// [`Payload::ScoreFloor`]). A replica's own runs need none: its writes are sequential.
fn score_floors(st: &KeyState, writer: ReplicaId, delta: &mut Delta) {
    let mut floors = Vec::new();
    for (slot, dot) in &delta.removes {
        let Slot::Scored(member) = slot else { continue };
        if dot.replica == writer {
            continue;
        }
        let Some(Entry {
            payload: Payload::ScoreRun { start, sum, .. },
            ..
        }) = st.entries(slot).and_then(|es| es.get(dot))
        else {
            continue;
        };
        let floor = Slot::ScoreFloor(member.clone(), dot.replica);
        floors.push((
            floor,
            Payload::ScoreFloor {
                start: crate::state::run_id(dot, *start),
                seq: dot.counter,
                sum: *sum,
            },
        ));
    }
    for (floor, payload) in floors {
        delta.removes.extend(st.observed_slot(&floor));
        delta.adds.push((floor, payload));
    }
    delta.removes.sort();
    delta.removes.dedup();
}
