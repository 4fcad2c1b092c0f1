//! Per-key state: one causal dot store shared by every data type, plus its causal context.
//!
//! A key's state is a map `slot → (dot → entry)` and a version vector `ctx` of every dot of this key
//! the replica has seen. A slot is one register (the string value), one counter, the expiry, one set
//! member or one hash field. An entry is the payload one write put there, stamped with its HLC.
//!
//! The join of two states keeps an entry when both have it, or when one has it and the other has not
//! seen its dot (`ctx` does not cover it). Seen-but-absent means "removed by a write that saw it".
//! This one rule gives every type its semantics:
//! - register: a multi-value register (DVV set) — concurrent writes are siblings;
//! - counter: one entry per replica holding that replica's running total (a causal counter: reset
//!   by `DEL` removes the observed totals, concurrent increments survive);
//! - set: an add-wins OR-set (each member holds the dots that added it);
//! - hash: a map of fields, each a multi-value register read as last-writer-wins by HLC;
//!
//! Policies such as `lww` are *views* over the siblings, never a collapse of the stored state:
//! dropping a dominated sibling is not a join once writes can remove entries without adding a
//! newer one (`HDEL`, `SREM`, `INCR` on a string, a type change), because the dropped sibling may
//! be the one that should survive. Siblings are removed only by a write that saw them.
//! - expiry: the absolute expiries written; the longest lifetime (or "persist") wins.
//!
//! The context is a version vector rather than a dot set: per-origin FIFO delivery means a replica
//! that has seen dot `(r, c)` of a key has seen every earlier dot of `r` on that key.

use crate::hlc::Hlc;
use crate::op::Delta;
pub use crate::position::Position;
use crate::version::{Dot, ReplicaId, VersionVector};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where in a key's state an entry lives.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Slot {
    Register,
    Counter,
    Expiry,
    Member(Bytes),
    Field(Bytes),
    /// What a counter reset (`DEL`) removed of one replica's running total (see
    /// [`KeyState::counter_value`]).
    CounterFloor(ReplicaId),
    /// One sorted-set member: its `ZADD` scores ([`Payload::Score`], last writer wins) and its
    /// `ZINCRBY` increments ([`Payload::Incr`], added up). See [`KeyState::zscore`].
    Scored(Bytes),
    /// A HyperLogLog's registers: every entry holds some registers, the value is their max.
    Hll,
    // ----- lists -----
    /// One list element, at its position in the list (see [`Position`]); its entries are the
    /// element's values (a concurrent `LSET` leaves two: reads take the LWW one).
    ListElem(Position),
    /// What removals of one sorted-set member removed of one replica's `ZINCRBY` run
    /// ([`Payload::ScoreFloor`]): the sorted-set analogue of [`Slot::CounterFloor`]. Last in the
    /// enum, so older encodings keep their variant numbers.
    ScoreFloor(Bytes, ReplicaId),
}

impl Slot {
    /// The data category of the slot, `None` for metadata (expiry).
    pub fn kind(&self) -> Option<Kind> {
        match self {
            Slot::Register => Some(Kind::String),
            Slot::Counter => Some(Kind::Counter),
            Slot::Member(_) => Some(Kind::Set),
            Slot::Field(_) => Some(Kind::Hash),
            Slot::Scored(_) => Some(Kind::ZSet),
            Slot::Hll => Some(Kind::Hll),
            Slot::ListElem(_) => Some(Kind::List),
            Slot::Expiry | Slot::CounterFloor(_) | Slot::ScoreFloor(..) => None,
        }
    }

    /// A floor: metadata recording what a reset removed of one replica's running total, kept
    /// for that replica's concurrent writes. No write but that replica's own removes it;
    /// garbage collection drops it once it can apply to nothing.
    pub fn is_floor(&self) -> bool {
        matches!(self, Slot::CounterFloor(_) | Slot::ScoreFloor(..))
    }

    /// A slot of which a collection can hold many (set members, hash fields, sorted-set
    /// members and their floors, list elements): stored one row each, not inline with the key.
    pub fn is_element(&self) -> bool {
        matches!(
            self,
            Slot::Member(_) | Slot::Field(_) | Slot::Scored(_) | Slot::ListElem(_) | Slot::ScoreFloor(..)
        )
    }
}

/// The data type a key holds. `Counter` is shown to Redis clients as a string holding an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    String,
    Counter,
    Set,
    Hash,
    ZSet,
    /// A HyperLogLog: a string to Redis clients (`TYPE` answers `string`), as in Redis.
    Hll,
    List,
}

impl Kind {
    /// The name Redis `TYPE` answers.
    pub fn redis_name(self) -> &'static str {
        match self {
            Kind::String | Kind::Counter | Kind::Hll => "string",
            Kind::Set => "set",
            Kind::Hash => "hash",
            Kind::ZSet => "zset",
            Kind::List => "list",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Counter => "counter",
            Kind::Set => "set",
            Kind::Hash => "hash",
            Kind::ZSet => "zset",
            Kind::Hll => "hyperloglog",
            Kind::List => "list",
        }
    }
}

/// What one write put into one slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// A register or field value; `None` is a tombstone (a deleted string).
    Value(Option<Bytes>),
    /// A counter: the writing replica's running total of increments minus decrements.
    Total(i64),
    /// A set member is present.
    Present,
    /// An absolute expiry in ms since the Unix epoch; `None` means "persist" (no expiry).
    Expiry(Option<u64>),
    /// A counter's running total whose first `base` was reset, by the reset that removed this
    /// replica's entry of seq `base_seq` (so a later reset, a floor of higher seq, takes over).
    Counted { total: i128, base: i128, base_seq: u64 },
    /// A reset removed the entry of seq `seq` holding running total `total` of one replica.
    Floor { seq: u64, total: i128 },
    /// A sorted-set member's score set by `ZADD` (the bits of an `f64`, never NaN).
    Score(u64),
    /// One `ZINCRBY` of a sorted-set member (the bits of an `f64`, never NaN). Written by
    /// versions before [`Payload::ScoreRun`]; still read (added up) and removed as before.
    Incr(u64),
    /// HyperLogLog registers: `(index, value)` pairs, sorted by index, values > 0.
    Registers(Vec<(u16, u8)>),
    /// One replica's `ZINCRBY`s of a sorted-set member since its run started: `sum` (`f64`
    /// bits). Each increment replaces the replica's previous entry, so a member holds one entry
    /// per incrementing replica, however many increments. `start` is the seq of the run's first
    /// entry (0 in that entry itself: see [`run_id`]); a run goes on while its entry is there
    /// (a new one starts once a removal the writer saw took it). `base` is the latest floor of
    /// the run the writer had seen, folded in: `(seq, sum bits)` of [`Payload::ScoreFloor`] (the
    /// counters' `Counted::base`); the run counts `sum` less the later of it and any floor in
    /// the state. `exact` is the score the writer computed as Redis would (the score it read plus
    /// the increment) and the `ZADD` entry it built on; set only when the writer saw no other
    /// replica's increments. See [`KeyState::zscore`].
    ScoreRun {
        start: u64,
        sum: u64,
        base: Option<(u64, u64)>,
        exact: Option<(u64, Option<Dot>)>,
    },
    /// A removal took away the entry of seq `seq`, holding `sum` (`f64` bits), of one replica's
    /// run `start` on a sorted-set member: that replica's later entries of the same run, written
    /// concurrently with the removal, count only what they added since.
    ScoreFloor { start: u64, seq: u64, sum: u64 },
}

impl Payload {
    /// A floor (see [`Slot::is_floor`]).
    pub fn is_floor(&self) -> bool {
        matches!(self, Payload::Floor { .. } | Payload::ScoreFloor { .. })
    }
}

/// The run a [`Payload::ScoreRun`] entry at `dot` belongs to: the seq of the run's first entry.
pub fn run_id(dot: &Dot, start: u64) -> u64 {
    if start == 0 {
        dot.counter
    } else {
        start
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub hlc: Hlc,
    pub payload: Payload,
}

/// Entries of one slot, by dot.
pub type Entries = BTreeMap<Dot, Entry>;

/// The replicated state of one key. Equal states encode to equal bytes (ordered maps, no empties).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    pub ctx: VersionVector,
    pub slots: BTreeMap<Slot, Entries>,
}

/// A counter entry's (running total, base already reset, seq of the entry that reset removed).
pub fn counter_payload(p: &Payload) -> (i128, i128, u64) {
    match *p {
        Payload::Total(t) => (t as i128, 0, 0),
        Payload::Counted { total, base, base_seq } => (total, base, base_seq),
        _ => (0, 0, 0),
    }
}

/// The winning `ZADD` entry of one sorted-set member's entries (last writer wins by HLC, then
/// dot), if any is left.
pub fn zadd_winner(entries: &Entries) -> Option<(&Dot, &Entry)> {
    entries
        .iter()
        .filter(|(_, e)| matches!(e.payload, Payload::Score(_)))
        .max_by_key(|(d, e)| lww_key(d, e))
}

/// The score held by one sorted-set member's entries, in key state `st` (its floors live in
/// other slots). See [`KeyState::zscore`].
pub fn zscore_of(st: &KeyState, member: &Bytes, entries: &Entries) -> f64 {
    let base = zadd_winner(entries);
    let base_dot = base.map(|(d, _)| *d);
    let base = base.map_or(0.0, |(_, e)| match e.payload {
        Payload::Score(bits) => f64::from_bits(bits),
        _ => 0.0,
    });
    // One replica's run alone, on the ZADD it was written over: the score it computed, exactly
    // as Redis's sequence of ZINCRBYs would have.
    let increments: Vec<(&Dot, &Entry)> = entries
        .iter()
        .filter(|(_, e)| !matches!(e.payload, Payload::Score(_)))
        .collect();
    if let [(dot, e)] = increments[..] {
        if let (
            Some(run),
            Payload::ScoreRun {
                exact: Some((bits, on)),
                ..
            },
        ) = (Run::of(dot, e), &e.payload)
        {
            // Valid while no removal the writer had not seen took part of the run.
            if *on == base_dot && st.floor_of(member, &run) == run.base {
                return f64::from_bits(*bits);
            }
        }
    }
    let score = increments
        .iter()
        .fold(base, |acc, (dot, e)| match (&e.payload, Run::of(dot, e)) {
            (Payload::Incr(bits), _) => acc + f64::from_bits(*bits),
            (_, Some(run)) => acc + st.run_counts(member, &run),
            _ => acc,
        });
    if score.is_nan() {
        0.0
    } else {
        score
    }
}

/// One replica's `ZINCRBY` run entry on a sorted-set member ([`Payload::ScoreRun`]), read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Run {
    pub dot: Dot,
    /// The run's id: the seq of its first entry.
    pub id: u64,
    pub sum: f64,
    /// The floor folded into the entry: (seq of the entry it removed, that entry's sum).
    pub base: Option<(u64, f64)>,
}

impl Run {
    /// The run entry at `dot`, if `e` is one.
    pub fn of(dot: &Dot, e: &Entry) -> Option<Run> {
        match e.payload {
            Payload::ScoreRun { start, sum, base, .. } => Some(Run {
                dot: *dot,
                id: run_id(dot, start),
                sum: f64::from_bits(sum),
                base: base.map(|(seq, s)| (seq, f64::from_bits(s))),
            }),
            _ => None,
        }
    }
}

/// Order of entries for "last writer wins": by HLC, then by dot (replica id, counter).
pub fn lww_key(dot: &Dot, entry: &Entry) -> (Hlc, ReplicaId, u64) {
    (entry.hlc, dot.replica, dot.counter)
}

impl KeyState {
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no data entry and no expiry entry is left (only the context remains).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn entries(&self, slot: &Slot) -> Option<&Entries> {
        self.slots.get(slot)
    }

    /// Every `(slot, dot)` of one slot (a lookup, not a scan: cheap on big sets and hashes).
    pub fn observed_slot(&self, slot: &Slot) -> Vec<(Slot, Dot)> {
        self.slots
            .get(slot)
            .map(|es| es.keys().map(|d| (slot.clone(), *d)).collect())
            .unwrap_or_default()
    }

    /// Every `(slot, dot)` whose slot satisfies `pred`: what a write that supersedes those slots
    /// removes.
    pub fn observed(&self, mut pred: impl FnMut(&Slot) -> bool) -> Vec<(Slot, Dot)> {
        let mut out = Vec::new();
        for (slot, entries) in &self.slots {
            if pred(slot) {
                out.extend(entries.keys().map(|d| (slot.clone(), *d)));
            }
        }
        out
    }

    /// String tombstones whose dot satisfies `seen`. Every write that adds data supersedes the
    /// tombstones its writer had seen, listed or not: that keeps replicas that purged a stable
    /// tombstone (and so could not list it) in step with those that still hold it.
    pub fn tombstones(&self, seen: impl Fn(Dot) -> bool) -> Vec<(Slot, Dot)> {
        self.slots
            .get(&Slot::Register)
            .map(|es| {
                es.iter()
                    .filter(|(d, e)| e.payload == Payload::Value(None) && seen(**d))
                    .map(|(d, _)| (Slot::Register, *d))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Floors on `replica`'s counter whose dot satisfies `seen`: a counter write of that replica
    /// supersedes the floors its writer had seen (it folded them into its `base`).
    pub fn floors(&self, replica: ReplicaId, seen: impl Fn(Dot) -> bool) -> Vec<(Slot, Dot)> {
        let slot = Slot::CounterFloor(replica);
        self.slots
            .get(&slot)
            .map(|es| es.keys().filter(|d| seen(**d)).map(|d| (slot.clone(), *d)).collect())
            .unwrap_or_default()
    }

    /// Apply one op's delta, written with `dot` at `hlc`: the join with the state `(adds at dot,
    /// context = removes ∪ {dot})`. Returns false when the dot was already seen: then the adds are
    /// not put back (they are here, or a later write removed them), but the removals still are
    /// applied — a key merged from a snapshot, or a write that superseded this op's entries before
    /// the op arrived, covers the dot without having removed what the op removed. Removing an
    /// entry twice is removing it once, so applying an op twice is applying it once.
    pub fn apply(&mut self, dot: Dot, hlc: Hlc, delta: &Delta) -> bool {
        let fresh = !self.ctx.covers(dot);
        for (slot, removed) in &delta.removes {
            if let Some(entries) = self.slots.get_mut(slot) {
                entries.remove(removed);
                if entries.is_empty() {
                    self.slots.remove(slot);
                }
            }
            self.ctx.add(*removed);
        }
        if !fresh {
            return false;
        }
        for (slot, payload) in &delta.adds {
            self.slots.entry(slot.clone()).or_default().insert(
                dot,
                Entry {
                    hlc,
                    payload: payload.clone(),
                },
            );
        }
        self.ctx.add(dot);
        true
    }

    /// The join (least upper bound) of two states: commutative, associative, idempotent.
    pub fn join(&self, other: &KeyState) -> KeyState {
        let mut slots: BTreeMap<Slot, Entries> = BTreeMap::new();
        let mut keep = |slot: &Slot,
                        mine: Option<&Entries>,
                        theirs: Option<&Entries>,
                        their_ctx: &VersionVector,
                        my_ctx: &VersionVector| {
            let mut out = Entries::new();
            if let Some(mine) = mine {
                for (dot, e) in mine {
                    let in_theirs = theirs.is_some_and(|t| t.contains_key(dot));
                    if in_theirs || !their_ctx.covers(*dot) {
                        out.insert(*dot, e.clone());
                    }
                }
            }
            if let Some(theirs) = theirs {
                for (dot, e) in theirs {
                    if out.contains_key(dot) {
                        continue;
                    }
                    if !my_ctx.covers(*dot) {
                        out.insert(*dot, e.clone());
                    }
                }
            }
            if !out.is_empty() {
                slots.insert(slot.clone(), out);
            }
        };
        for (slot, mine) in &self.slots {
            keep(slot, Some(mine), other.slots.get(slot), &other.ctx, &self.ctx);
        }
        for (slot, theirs) in &other.slots {
            if !self.slots.contains_key(slot) {
                keep(slot, None, Some(theirs), &other.ctx, &self.ctx);
            }
        }
        let mut ctx = self.ctx.clone();
        ctx.join(&other.ctx);
        KeyState { ctx, slots }
    }

    /// Join a full-state transfer's state of this key, taken by a replica that had applied every
    /// op in `seen`: an entry of mine whose dot `seen` covers and that the other state lacks was
    /// removed there (by an op, or purged as a settled tombstone), so it goes here too — even when
    /// the key's own context no longer names the dot (the key was purged and written again).
    /// The context stays the join of the two keys' contexts.
    pub fn join_transferred(&self, other: &KeyState, seen: &VersionVector) -> KeyState {
        let mut wide = other.clone();
        wide.ctx.join(seen);
        let mut joined = self.join(&wide);
        joined.ctx = self.ctx.clone();
        joined.ctx.join(&other.ctx);
        joined
    }

    /// Drop the entries whose dots `seen` covers (a full-state transfer from a replica that had
    /// applied them did not hold this key: they were removed there). Whether anything went.
    pub fn drop_covered(&mut self, seen: &VersionVector) -> bool {
        let before: usize = self.slots.values().map(|es| es.len()).sum();
        for es in self.slots.values_mut() {
            es.retain(|d, _| !seen.covers(*d));
        }
        self.slots.retain(|_, es| !es.is_empty());
        before != self.slots.values().map(|es| es.len()).sum::<usize>()
    }

    /// The data kind shown to clients: the category holding the newest entry (by HLC, then dot).
    /// Concurrent writes of different types resolve to the later one ("the later HLC's type wins").
    pub fn kind(&self) -> Option<Kind> {
        let kinds = self.kinds();
        if kinds.len() <= 1 {
            return kinds.first().copied(); // the usual case, without looking at every entry
        }
        let mut best: Option<((Hlc, ReplicaId, u64), Kind)> = None;
        for (slot, entries) in &self.slots {
            let Some(kind) = slot.kind() else { continue };
            for (dot, e) in entries {
                let k = lww_key(dot, e);
                if best.as_ref().is_none_or(|(b, _)| k > *b) {
                    best = Some((k, kind));
                }
            }
        }
        best.map(|(_, k)| k)
    }

    /// Data kinds present (more than one means a type conflict is being resolved). Looks up each
    /// kind's range of slots (ordered map): O(log n), not a scan of a large set or hash.
    pub fn kinds(&self) -> Vec<Kind> {
        use std::ops::Bound::{Excluded, Included};
        let mut kinds = Vec::new();
        if self.slots.contains_key(&Slot::Register) {
            kinds.push(Kind::String);
        }
        if self.slots.contains_key(&Slot::Counter) {
            kinds.push(Kind::Counter);
        }
        let members = (
            Included(Slot::Member(Bytes::new())),
            Excluded(Slot::Field(Bytes::new())),
        );
        if self.slots.range(members).next().is_some() {
            kinds.push(Kind::Set);
        }
        let fields = (Included(Slot::Field(Bytes::new())), Excluded(Slot::CounterFloor(0)));
        if self.slots.range(fields).next().is_some() {
            kinds.push(Kind::Hash);
        }
        if self.scored().next().is_some() {
            kinds.push(Kind::ZSet);
        }
        if self.slots.contains_key(&Slot::Hll) {
            kinds.push(Kind::Hll);
        }
        if self.list_elems().next().is_some() {
            kinds.push(Kind::List);
        }
        kinds
    }

    /// The effective absolute expiry: none if no expiry entry or any "persist" entry, else the
    /// latest expiry written concurrently (the longer lifetime wins).
    pub fn expiry_ms(&self) -> Option<u64> {
        let entries = self.slots.get(&Slot::Expiry)?;
        let mut latest = 0;
        for e in entries.values() {
            match e.payload {
                Payload::Expiry(Some(at)) => latest = latest.max(at),
                _ => return None,
            }
        }
        Some(latest)
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expiry_ms().is_some_and(|at| at <= now_ms)
    }

    /// The latest counter entry of `replica`: (dot, running total, base, base_seq).
    pub fn counter_entry(&self, replica: ReplicaId) -> Option<(Dot, i128, i128, u64)> {
        let es = self.slots.get(&Slot::Counter)?;
        es.iter()
            .filter(|(d, _)| d.replica == replica)
            .max_by_key(|(d, _)| **d)
            .map(|(d, e)| {
                let (t, b, bs) = counter_payload(&e.payload);
                (*d, t, b, bs)
            })
    }

    /// The latest reset of `replica`'s running total: (seq of the entry it removed, its total).
    pub fn counter_floor(&self, replica: ReplicaId) -> Option<(u64, i128)> {
        self.slots
            .get(&Slot::CounterFloor(replica))?
            .values()
            .filter_map(|e| match e.payload {
                Payload::Floor { seq, total } => Some((seq, total)),
                _ => None,
            })
            .max()
    }

    /// `replica`'s running total as this replica knows it, with the seq it is known at: from its
    /// entry, or from the reset that removed its entry.
    pub fn counter_running(&self, replica: ReplicaId) -> Option<(u64, i128)> {
        match self.counter_entry(replica) {
            Some((d, t, _, _)) => Some((d.counter, t)),
            None => self.counter_floor(replica),
        }
    }

    /// The counter's value. Each replica keeps one entry with its running total (increments minus
    /// decrements since it started, never restarted while anything could still refer to it), so
    /// the state stays small however many `INCR`s there were. A `DEL` removes the entries it saw
    /// and records, per replica, the running total it removed (a floor, with that entry's seq). A
    /// replica's contribution is its latest total minus what was reset of it: the entry's own
    /// `base` (the reset its writer had seen) or a floor (a reset concurrent with it), whichever
    /// removed the later entry. So a reset removes exactly the increments it observed, and
    /// increments concurrent with it survive. Wide, so concurrent increments cannot overflow.
    pub fn counter_value(&self) -> i128 {
        let Some(es) = self.slots.get(&Slot::Counter) else {
            return 0;
        };
        let replicas: std::collections::BTreeSet<ReplicaId> = es.keys().map(|d| d.replica).collect();
        replicas
            .into_iter()
            .map(|r| {
                let (_, total, base, base_seq) = self.counter_entry(r).expect("replica has an entry");
                let reset = match self.counter_floor(r) {
                    Some((seq, floor)) if seq > base_seq => floor,
                    _ => base,
                };
                total - reset
            })
            .sum()
    }

    /// Whether every data entry left is a register tombstone (or there is none).
    pub fn only_tombstones(&self) -> bool {
        self.slots.iter().all(|(slot, entries)| match slot {
            Slot::Register => entries.values().all(|e| e.payload == Payload::Value(None)),
            Slot::Expiry | Slot::CounterFloor(_) | Slot::ScoreFloor(..) => true,
            _ => false,
        })
    }

    /// A sorted-set member's score, if it is present: the last `ZADD` score (by HLC, then dot; 0
    /// when only increments are left) plus every increment no removal had seen. Increments are
    /// held per replica ([`Payload::ScoreRun`]): a run's sum less what removals took of it (the
    /// later of the floor its writer folded in and a [`Payload::ScoreFloor`] a concurrent
    /// removal left), added in dot order so every replica computes the same bits. When one replica's run is the only increment and sits on the `ZADD` its writer
    /// saw, the score is the one the writer computed (so one region's scores are Redis's to the
    /// last bit). Infinities of both signs meeting (a concurrent `ZADD +inf` and `ZINCRBY -inf`)
    /// would make NaN: the score is then 0.
    pub fn zscore(&self, member: &Bytes) -> Option<f64> {
        let entries = self.slots.get(&Slot::Scored(member.clone()))?;
        Some(zscore_of(self, member, entries))
    }

    /// `replica`'s `ZINCRBY` run on `member`, if it has one there.
    pub fn score_run(&self, member: &Bytes, replica: ReplicaId) -> Option<Run> {
        self.slots
            .get(&Slot::Scored(member.clone()))?
            .iter()
            .filter(|(d, _)| d.replica == replica)
            .filter_map(|(d, e)| Run::of(d, e))
            .max_by_key(|r| r.dot)
    }

    /// The latest floor of `replica`'s run `run` on `member` in this state's floor slot:
    /// (seq of the entry it removed, that entry's sum).
    pub fn score_floor(&self, member: &Bytes, replica: ReplicaId, run: u64) -> Option<(u64, f64)> {
        self.slots
            .get(&Slot::ScoreFloor(member.clone(), replica))?
            .values()
            .filter_map(|e| match e.payload {
                Payload::ScoreFloor { start, seq, sum } if start == run => Some((seq, sum)),
                _ => None,
            })
            .max_by_key(|(seq, _)| *seq)
            .map(|(seq, sum)| (seq, f64::from_bits(sum)))
    }

    /// What was removed of `run` (on `member`): the later (by seq) of the floor folded into its
    /// entry and the state's latest floor of it.
    pub fn floor_of(&self, member: &Bytes, run: &Run) -> Option<(u64, f64)> {
        let slot = self.score_floor(member, run.dot.replica, run.id);
        match (run.base, slot) {
            (Some(b), Some(f)) => Some(if f.0 > b.0 { f } else { b }),
            (b, f) => b.or(f),
        }
    }

    /// What `run` adds to `member`'s score: its sum less what removals took of it.
    pub fn run_counts(&self, member: &Bytes, run: &Run) -> f64 {
        run.sum - self.floor_of(member, run).map_or(0.0, |(_, f)| f)
    }

    /// Whether a score floor (`replica`'s, on `member`, of run `start` taken at `seq`) can still
    /// count: the replica's run there is that run, and it has not folded in a later floor. A dead
    /// one applies to nothing present, and to nothing still coming once its dot is stable
    /// (garbage collection drops it then; digests leave it out meanwhile).
    pub fn score_floor_live(&self, member: &Bytes, replica: ReplicaId, start: u64, seq: u64) -> bool {
        self.score_run(member, replica)
            .is_some_and(|run| run.id == start && run.base.is_none_or(|(b, _)| seq > b))
    }

    /// Whether floor entry `e` of slot `slot` is dead (see [`KeyState::score_floor_live`]);
    /// false for anything but a score floor.
    pub fn score_floor_dead(&self, slot: &Slot, e: &Entry) -> bool {
        match (slot, &e.payload) {
            (Slot::ScoreFloor(m, r), Payload::ScoreFloor { start, seq, .. }) => {
                !self.score_floor_live(m, *r, *start, *seq)
            }
            _ => false,
        }
    }

    /// The sorted-set members' slots, in member order: a range lookup that stops at the first
    /// slot of another variant (whatever variants follow `Scored` in the enum).
    pub fn scored(&self) -> impl Iterator<Item = (&Bytes, &Entries)> + '_ {
        use std::ops::Bound::{Included, Unbounded};
        self.slots
            .range((Included(Slot::Scored(Bytes::new())), Unbounded))
            .map_while(|(s, es)| match s {
                Slot::Scored(m) => Some((m, es)),
                _ => None,
            })
    }

    /// The list elements in list order: (position, entries). A range lookup, not a scan of
    /// other slots.
    pub fn list_elems(&self) -> impl DoubleEndedIterator<Item = (&Position, &Entries)> + '_ {
        self.slots
            .range(Slot::ListElem(Position::default())..Slot::ListElem(Position::above_all()))
            .filter_map(|(s, es)| match s {
                Slot::ListElem(p) => Some((p, es)),
                _ => None,
            })
    }

    /// The LWW winner of a field / register slot.
    pub fn lww_winner(&self, slot: &Slot) -> Option<(&Dot, &Entry)> {
        self.slots.get(slot)?.iter().max_by_key(|(d, e)| lww_key(d, e))
    }

    /// Encode with the versioned storage/wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(crate::codec::KEY_STATE_VERSION, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<KeyState, crate::codec::DecodeError> {
        let state: KeyState = crate::codec::decode(crate::codec::KEY_STATE_VERSION, bytes)?;
        state.check()?;
        Ok(state)
    }

    /// Structural invariants, asserted after decoding: every entry's dot is in the context, no
    /// empty slot, payloads match their slot.
    pub fn check(&self) -> Result<(), crate::codec::DecodeError> {
        for (slot, entries) in &self.slots {
            if entries.is_empty() {
                return Err(crate::codec::DecodeError::Invalid("empty slot"));
            }
            for (dot, e) in entries {
                if !self.ctx.covers(*dot) {
                    return Err(crate::codec::DecodeError::Invalid("entry dot outside context"));
                }
                let ok = matches!(
                    (slot, &e.payload),
                    (Slot::Register, Payload::Value(_))
                        | (Slot::Field(_), Payload::Value(Some(_)))
                        | (Slot::Counter, Payload::Total(_))
                        | (Slot::Counter, Payload::Counted { .. })
                        | (Slot::CounterFloor(_), Payload::Floor { .. })
                        | (Slot::Member(_), Payload::Present)
                        | (Slot::ListElem(_), Payload::Value(Some(_)))
                        | (Slot::Expiry, Payload::Expiry(_))
                        | (Slot::Scored(_), Payload::Score(_))
                        | (Slot::Scored(_), Payload::Incr(_))
                        | (Slot::Scored(_), Payload::ScoreRun { .. })
                        | (Slot::ScoreFloor(..), Payload::ScoreFloor { .. })
                        | (Slot::Hll, Payload::Registers(_))
                ) && match &e.payload {
                    Payload::Score(bits) | Payload::Incr(bits) => !f64::from_bits(*bits).is_nan(),
                    Payload::ScoreRun { sum, exact, base, .. } => {
                        !f64::from_bits(*sum).is_nan()
                            && exact.is_none_or(|(b, _)| !f64::from_bits(b).is_nan())
                            && base.is_none_or(|(_, b)| !f64::from_bits(b).is_nan())
                    }
                    Payload::ScoreFloor { sum, .. } => !f64::from_bits(*sum).is_nan(),
                    Payload::Registers(r) => {
                        r.windows(2).all(|w| w[0].0 < w[1].0)
                            && r.iter().all(|&(i, v)| usize::from(i) < crate::hll::REGISTERS && v > 0)
                    }
                    _ => true,
                };
                if matches!(slot, Slot::ListElem(p) if !p.is_valid()) {
                    return Err(crate::codec::DecodeError::Invalid("invalid list position"));
                }
                if !ok {
                    return Err(crate::codec::DecodeError::Invalid("payload does not match slot"));
                }
            }
        }
        Ok(())
    }
}
