//! A tiny in-memory cluster of engines driven step by step: commands on replicas, ops delivered
//! in any order, duplicated and delayed, clocks skewed, vectors exchanged, garbage collected,
//! keys expired. Random schedules are proptest values ([`schedule`]), so a failing one shrinks to
//! a few readable steps and is saved beside the test; hand-written tests call the same methods,
//! with a seeded generator for the choices they leave open.

use bytes::Bytes;
use concord_core::*;
use std::collections::BTreeMap;

/// `Bytes` from a string (test shorthand).
pub fn b(s: &str) -> Bytes {
    Bytes::from(s.to_string())
}

/// A plain `SET key value`.
pub fn set(key: &str, value: &str) -> Request {
    Request::Set {
        key: b(key),
        value: b(value),
        condition: SetCondition::Always,
        expiry: SetExpiry::Clear,
        get: false,
    }
}

/// xorshift64*: deterministic, seedable, good enough for schedules.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545F4914F6CDD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Which commands a workload uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    Strings,
    Counters,
    Sets,
    Hashes,
    /// Sorted sets (`ZADD ZINCRBY ZREM`) and HyperLogLogs (`PFADD`).
    ZSets,
    Lists,
    All,
}

/// The keys workloads use: `s:` siblings, `p:` priority, `l:` lww, `c:` script (resolver
/// [`JoinResolver`]), `loc:` region-local (`replicate = false`), `x` the implied catch-all `lww`.
pub const KEYS: [&str; 18] = [
    "s:0", "s:1", "s:2", "p:0", "p:1", "p:2", "l:0", "l:1", "l:2", "c:0", "c:1", "c:2", "loc:0", "loc:1", "loc:2",
    "x0", "x1", "x2",
];

/// One command of a workload, with small symbolic arguments (readable when a failure is shrunk).
/// Values are `v<n>`, except that a multiple of 4 is written as the bare number `<n>` (so `INCR`
/// on a string and `HINCRBY` on a field sometimes succeed).
#[derive(Clone, Debug)]
pub enum Cmd {
    Set {
        key: &'static str,
        val: u16,
        cond: SetCondition,
        expiry: SetExpiry,
    },
    MSet(Vec<(&'static str, u16)>),
    Del(Vec<&'static str>),
    GetDel(&'static str),
    Append {
        key: &'static str,
        val: u16,
    },
    /// `CONCORD.RESOLVE` with the context the replica holds right now, like a careful client.
    Resolve {
        key: &'static str,
        val: u16,
    },
    IncrBy {
        key: &'static str,
        by: i64,
    },
    SAdd {
        key: &'static str,
        member: u8,
    },
    SRem {
        key: &'static str,
        member: u8,
    },
    HSet {
        key: &'static str,
        field: u8,
        val: u16,
    },
    HDel {
        key: &'static str,
        field: u8,
    },
    HSetNx {
        key: &'static str,
        field: u8,
        val: u16,
    },
    HIncrBy {
        key: &'static str,
        field: u8,
        by: i64,
    },
    /// `PEXPIRE key in_ms` (≤ 0 deletes the key).
    Expire {
        key: &'static str,
        in_ms: i64,
    },
    Persist(&'static str),
    /// `FLUSHALL`: a delete of every live key of the replica (region-local ones included).
    FlushAll,
    /// `ZADD key score z<member>` (`GT` when `gt`).
    ZAdd {
        key: &'static str,
        member: u8,
        score: i8,
        gt: bool,
    },
    ZIncrBy {
        key: &'static str,
        member: u8,
        by: i8,
    },
    ZRem {
        key: &'static str,
        member: u8,
    },
    /// `ZPOPMIN key`.
    ZPopMin(&'static str),
    /// `PFADD key e<element>`.
    PfAdd {
        key: &'static str,
        element: u16,
    },
    // ----- lists -----
    /// `LPUSH` (`left`) / `RPUSH` of one or more values (one op).
    Push {
        key: &'static str,
        left: bool,
        vals: Vec<u16>,
    },
    /// `LPOP` / `RPOP` with an optional count.
    Pop {
        key: &'static str,
        left: bool,
        count: Option<u8>,
    },
    LInsert {
        key: &'static str,
        before: bool,
        pivot: u16,
        val: u16,
    },
    LSet {
        key: &'static str,
        index: i8,
        val: u16,
    },
    LRem {
        key: &'static str,
        count: i8,
        val: u16,
    },
    LTrim {
        key: &'static str,
        start: i8,
        stop: i8,
    },
    /// `LMOVE source destination LEFT|RIGHT LEFT|RIGHT`.
    LMove {
        source: &'static str,
        destination: &'static str,
        from_left: bool,
        to_left: bool,
    },
}

fn value(n: u16) -> Bytes {
    if n.is_multiple_of(4) {
        Bytes::from(n.to_string())
    } else {
        Bytes::from(format!("v{n}"))
    }
}

/// One step of a schedule. Every random choice is in the step, so a failing schedule shrinks
/// (proptest drops and simplifies steps) and replays exactly.
#[derive(Clone, Debug)]
pub enum Step {
    /// Run `cmd` at replica `at % n`; its ops go to every other replica (twice if `dup`).
    Exec { at: usize, cmd: Cmd, dup: bool },
    /// Deliver in-flight message `pick % len`; keep a copy for a later redelivery if `keep`.
    Deliver { pick: usize, keep: bool },
    /// Move replica `at % n`'s wall clock by `by_ms` (backwards too: clock skew and jumps).
    Skew { at: usize, by_ms: i64 },
    /// Replica `at % n` learns every applied vector (as acks bring them) and runs its periodic
    /// work (write-backs of stable siblings).
    Sync { at: usize },
    /// A garbage-collection round at replica `at % n` (only when the cluster purges).
    Gc { at: usize },
    /// An active-expiry pass at replica `at % n` (deletes keys whose winning expiry it wrote).
    Expire { at: usize },
}

/// One acknowledged local write: which dot it made, on which key, in which slots.
#[derive(Clone, Debug)]
pub struct AckedWrite {
    pub dot: Dot,
    pub key: Bytes,
    pub slots: Vec<Slot>,
    /// The write only put tombstones (a delete of a string): purge may drop it once stable.
    pub tombstone: bool,
}

/// One acknowledged write of a region-local key: it makes no op, so it is tracked from the state
/// right after the write. `t` orders it among the local writes of its replica.
#[derive(Clone, Debug)]
pub struct LocalWrite {
    pub at: usize,
    pub key: Bytes,
    pub dot: Dot,
    pub slot: Slot,
    pub t: u64,
}

pub struct Cluster {
    pub engines: Vec<Engine>,
    /// Messages in flight: (destination index, op).
    pub inflight: Vec<(usize, Op)>,
    pub rng: Rng,
    /// Per-replica wall clock (ms), possibly skewed.
    pub clocks: Vec<u64>,
    pub acked: Vec<AckedWrite>,
    /// Every op ever made (by dot), for the history checker.
    pub ops: BTreeMap<Dot, Op>,
    pub conflicts: Vec<ConflictRecord>,
    pub purge_enabled: bool,
    /// Acknowledged writes of region-local keys, and every call that changed a region-local key
    /// (replica, key, t): a later one at the same replica saw (and may have removed) the earlier.
    pub local_writes: Vec<LocalWrite>,
    pub local_touches: Vec<(usize, Bytes, u64)>,
    local_t: u64,
    /// Expiry entries some replica's garbage collection dropped with their dead key (key, dot):
    /// metadata of a key that was deleted everywhere (causally stable), gone for good even if
    /// the key is written again later.
    pub purged_expiries: std::collections::BTreeSet<(Bytes, Dot)>,
}

pub fn policies() -> PolicySet {
    let rule = |pattern: &str, strings: Strategy| Policy {
        pattern: pattern.into(),
        strings,
        ..Policy::catch_all()
    };
    PolicySet::new(
        vec![
            rule("s:*", Strategy::Siblings),
            rule("p:*", Strategy::Priority),
            rule("l:*", Strategy::Lww),
            rule("c:*", Strategy::Script("join".into())),
            Policy {
                replicate: false,
                ..rule("loc:*", Strategy::Lww)
            },
        ],
        vec![2, 1, 3, 4, 5],
        16,
    )
}

/// The `script` resolver of `c:*` keys: deterministic, a function of its input only. The sorted,
/// deduplicated values joined by `+`; all tombstones resolve to "deleted"; and it fails (the
/// engine keeps the siblings) when a value ends in `7`, to exercise the error path.
pub struct JoinResolver;
impl Resolver for JoinResolver {
    fn resolve(&self, _key: &[u8], siblings: &[SiblingView]) -> Result<Option<Bytes>, String> {
        let mut vals: Vec<&[u8]> = siblings.iter().filter_map(|s| s.value.as_deref()).collect();
        if vals.iter().any(|v| v.ends_with(b"7")) {
            return Err("values ending in 7 are refused".into());
        }
        if vals.is_empty() {
            return Ok(None);
        }
        vals.sort();
        vals.dedup();
        Ok(Some(Bytes::from(vals.join(&b'+'))))
    }
}

pub fn regions(n: usize) -> BTreeMap<ReplicaId, String> {
    let names = ["us", "eu", "ap", "sa", "af"];
    (0..n).map(|i| (i as ReplicaId + 1, names[i].to_string())).collect()
}

impl Cluster {
    pub fn new(n: usize, seed: u64) -> Self {
        Cluster::with_bug(n, seed, None)
    }

    /// A cluster whose engines carry a planted bug (to show a checker fails on it).
    pub fn with_bug(n: usize, seed: u64, bug: Option<PlantedBug>) -> Self {
        let engines = (0..n)
            .map(|i| {
                let mut cfg = EngineConfig::new(i as ReplicaId + 1, regions(n));
                cfg.policies = policies();
                cfg.planted_bug = bug;
                let mut e = Engine::new(cfg);
                e.register_resolver("join", std::sync::Arc::new(JoinResolver));
                e
            })
            .collect();
        Cluster {
            engines,
            inflight: Vec::new(),
            rng: Rng::new(seed),
            clocks: vec![1_000_000; n],
            acked: Vec::new(),
            ops: BTreeMap::new(),
            conflicts: Vec::new(),
            purge_enabled: false,
            local_writes: Vec::new(),
            local_touches: Vec::new(),
            local_t: 0,
            purged_expiries: Default::default(),
        }
    }

    /// Rebuild every (still empty) engine with `max_siblings = n`, so keys with more concurrent
    /// versions are collapsed by the `lww` write-back of the cap.
    pub fn set_max_siblings(&mut self, n: usize) {
        for e in &mut self.engines {
            assert!(e.key_states().next().is_none(), "set before any write");
            let mut cfg = e.config().clone();
            cfg.policies.max_siblings = n;
            *e = Engine::new(cfg);
            e.register_resolver("join", std::sync::Arc::new(JoinResolver));
        }
    }

    /// Execute a command at replica `i`; ship its ops to every other replica (maybe twice).
    pub fn exec(&mut self, i: usize, req: Request) -> Result<Reply, CommandError> {
        self.clocks[i] += 1 + self.rng.below(5);
        let dup = self.rng.chance(10);
        self.exec_at_clock(i, req, dup)
    }

    fn exec_at_clock(&mut self, i: usize, req: Request, dup: bool) -> Result<Reply, CommandError> {
        let local_before = self.engines[i].meta().local_counter;
        let mut out = Output::default();
        let reply = self.engines[i].execute(req, self.clocks[i], &mut out);
        self.track_local(i, local_before, &out);
        self.absorb(i, out, dup);
        reply
    }

    /// Record the region-local writes a call at replica `i` made (local dots above
    /// `local_before`), and which region-local keys it changed.
    fn track_local(&mut self, i: usize, local_before: u64, out: &Output) {
        if self.engines[i].meta().local_counter == local_before {
            return;
        }
        self.local_t += 1;
        let e = &self.engines[i];
        for key in out.changed.keys() {
            if e.policies().policy_for(key).replicate {
                continue;
            }
            self.local_touches.push((i, key.clone(), self.local_t));
            let Some(st) = e.key_state(key) else { continue };
            for (slot, entries) in &st.slots {
                for dot in entries.keys() {
                    if dot.replica == concord_core::version::LOCAL_REPLICA && dot.counter > local_before {
                        self.local_writes.push(LocalWrite {
                            at: i,
                            key: key.clone(),
                            dot: *dot,
                            slot: slot.clone(),
                            t: self.local_t,
                        });
                    }
                }
            }
        }
    }

    fn absorb(&mut self, from: usize, out: Output, dup: bool) {
        self.conflicts.extend(out.conflicts);
        for op in out.local_ops {
            assert!(
                self.engines[from].policies().policy_for(&op.key).replicate,
                "an op was made for region-local key {:?}",
                op.key
            );
            self.acked.push(AckedWrite {
                dot: op.dot(),
                key: op.key.clone(),
                slots: op.delta.adds.iter().map(|(s, _)| s.clone()).collect(),
                tombstone: op
                    .delta
                    .adds
                    .iter()
                    .all(|(_, p)| *p == Payload::Value(None) || p.is_floor()),
            });
            self.ops.insert(op.dot(), op.clone());
            for j in 0..self.engines.len() {
                if j != from {
                    self.inflight.push((j, op.clone()));
                    if dup {
                        self.inflight.push((j, op.clone())); // duplicate
                    }
                }
            }
        }
    }

    /// Deliver one random in-flight message (sometimes keeping a copy for later: a redelivery).
    pub fn deliver_one(&mut self) -> bool {
        if self.inflight.is_empty() {
            return false;
        }
        let pick = self.rng.below(self.inflight.len() as u64) as usize;
        let keep = self.rng.chance(5);
        let advance = self.rng.below(3);
        let dup = self.rng.chance(10);
        self.deliver(pick, keep, advance, dup)
    }

    /// Deliver in-flight message `pick % len` (keeping a copy if `keep`), `advance_ms` later;
    /// ops it makes (write-backs) are sent twice if `dup`.
    pub fn deliver(&mut self, pick: usize, keep: bool, advance_ms: u64, dup: bool) -> bool {
        if self.inflight.is_empty() {
            return false;
        }
        let idx = pick % self.inflight.len();
        let (to, op) = if keep {
            self.inflight[idx].clone()
        } else {
            self.inflight.swap_remove(idx)
        };
        self.clocks[to] += advance_ms;
        let mut out = Output::default();
        self.engines[to].receive(op, self.clocks[to], &mut out);
        assert!(!out.catch_up, "buffer overflow in a small test");
        self.absorb(to, out, dup);
        true
    }

    /// Deliver everything, exchanging applied vectors (as acks would) until nothing new is made
    /// (write-backs of stable siblings make new ops).
    pub fn deliver_all(&mut self) {
        loop {
            // Copies kept for redelivery shrink the queue with probability 95% per pick: this ends.
            while self.deliver_one() {}
            self.sync_peers();
            if self.inflight.is_empty() {
                break;
            }
        }
        for e in &self.engines {
            assert_eq!(e.buffered_ops(), 0, "ops left in the causal buffer after full delivery");
        }
    }

    /// Give replica `i` every other replica's applied vector, as acks would.
    pub fn observe_peers(&mut self, i: usize) {
        let vectors: Vec<(ReplicaId, VersionVector)> = self
            .engines
            .iter()
            .map(|e| (e.replica(), e.applied().clone()))
            .collect();
        for (r, vv) in vectors {
            self.engines[i].observe_peer(r, &vv);
        }
    }

    /// Every replica learns every vector, then runs its periodic work.
    pub fn sync_peers(&mut self) {
        for i in 0..self.engines.len() {
            let dup = self.rng.chance(10);
            self.sync(i, dup);
        }
    }

    /// Replica `i` learns every vector, then runs its periodic work (its ops sent twice if `dup`).
    pub fn sync(&mut self, i: usize, dup: bool) {
        self.observe_peers(i);
        let mut out = Output::default();
        self.engines[i].tick(self.clocks[i], &mut out);
        self.absorb(i, out, dup);
    }

    pub fn gc(&mut self, i: usize) -> usize {
        self.observe_peers(i);
        let expiries: Vec<(Bytes, Dot)> = self.engines[i]
            .key_states()
            .filter(|(_, st)| st.only_tombstones())
            .flat_map(|(k, st)| st.observed_slot(&Slot::Expiry).into_iter().map(|(_, d)| (k.clone(), d)))
            .collect();
        let mut out = Output::default();
        let n = self.engines[i].collect_garbage(&mut out);
        for (k, d) in expiries {
            if self.engines[i].key_state(&k).is_none() {
                self.purged_expiries.insert((k, d));
            }
        }
        self.absorb(i, out, false);
        n
    }

    /// An active-expiry pass at replica `i`.
    pub fn expire(&mut self, i: usize) -> usize {
        let local_before = self.engines[i].meta().local_counter;
        let mut out = Output::default();
        let n = self.engines[i].expire_step(self.clocks[i], 1_000, &mut out);
        self.track_local(i, local_before, &out);
        self.absorb(i, out, false);
        n
    }

    /// The request a symbolic command stands for at replica `i` (a resolve reads its context now).
    pub fn request(&self, i: usize, cmd: &Cmd) -> Request {
        let k = |s: &str| Bytes::from(s.to_string());
        let m = |n: u8| Bytes::from(format!("m{n}"));
        let f = |n: u8| Bytes::from(format!("f{n}"));
        let end = |left: bool| if left { ListEnd::Left } else { ListEnd::Right };
        match cmd {
            Cmd::Set { key, val, cond, expiry } => Request::Set {
                key: k(key),
                value: value(*val),
                condition: *cond,
                expiry: *expiry,
                get: false,
            },
            Cmd::MSet(pairs) => Request::MSet(pairs.iter().map(|(key, v)| (k(key), value(*v))).collect()),
            Cmd::Del(keys) => Request::Del(keys.iter().map(|key| k(key)).collect()),
            Cmd::GetDel(key) => Request::GetDel(k(key)),
            Cmd::Append { key, val } => Request::Append {
                key: k(key),
                value: value(*val),
            },
            Cmd::Resolve { key, val } => Request::Resolve {
                key: k(key),
                context: self.engines[i]
                    .key_state(key.as_bytes())
                    .map(|s| s.ctx.clone())
                    .unwrap_or_default(),
                value: value(*val),
            },
            Cmd::IncrBy { key, by } => Request::IncrBy { key: k(key), by: *by },
            Cmd::SAdd { key, member } => Request::SAdd {
                key: k(key),
                members: vec![m(*member)],
            },
            Cmd::SRem { key, member } => Request::SRem {
                key: k(key),
                members: vec![m(*member)],
            },
            Cmd::HSet { key, field, val } => Request::HSet {
                key: k(key),
                pairs: vec![(f(*field), value(*val))],
            },
            Cmd::HDel { key, field } => Request::HDel {
                key: k(key),
                fields: vec![f(*field)],
            },
            Cmd::HIncrBy { key, field, by } => Request::HIncrBy {
                key: k(key),
                field: f(*field),
                by: *by,
            },
            Cmd::Expire { key, in_ms } => Request::Expire {
                key: k(key),
                in_ms: *in_ms,
            },
            Cmd::Persist(key) => Request::Persist(k(key)),
            Cmd::HSetNx { key, field, val } => Request::HSetNx {
                key: k(key),
                field: f(*field),
                value: value(*val),
            },
            Cmd::FlushAll => Request::FlushAll,
            Cmd::ZAdd { key, member, score, gt } => Request::Zset(concord_core::ZsetRequest::Add {
                key: k(key),
                flags: concord_core::ZAddFlags {
                    gt: *gt,
                    ..Default::default()
                },
                members: vec![(f64::from(*score) / 2.0, Bytes::from(format!("z{member}")))],
            }),
            Cmd::ZIncrBy { key, member, by } => Request::Zset(concord_core::ZsetRequest::IncrBy {
                key: k(key),
                by: f64::from(*by) / 4.0,
                member: Bytes::from(format!("z{member}")),
            }),
            Cmd::ZRem { key, member } => Request::Zset(concord_core::ZsetRequest::Rem {
                key: k(key),
                members: vec![Bytes::from(format!("z{member}"))],
            }),
            Cmd::ZPopMin(key) => Request::Zset(concord_core::ZsetRequest::Pop {
                key: k(key),
                max: false,
                count: None,
            }),
            Cmd::PfAdd { key, element } => Request::Hll(concord_core::HllRequest::Add {
                key: k(key),
                elements: vec![Bytes::from(format!("e{element}"))],
            }),
            Cmd::Push { key, left, vals } => Request::ListPush {
                key: k(key),
                end: end(*left),
                values: vals.iter().map(|v| value(*v)).collect(),
                if_exists: false,
            },
            Cmd::Pop { key, left, count } => Request::ListPop {
                key: k(key),
                end: end(*left),
                count: count.map(u64::from),
            },
            Cmd::LInsert {
                key,
                before,
                pivot,
                val,
            } => Request::LInsert {
                key: k(key),
                before: *before,
                pivot: value(*pivot),
                element: value(*val),
            },
            Cmd::LSet { key, index, val } => Request::LSet {
                key: k(key),
                index: i64::from(*index),
                value: value(*val),
            },
            Cmd::LRem { key, count, val } => Request::LRem {
                key: k(key),
                count: i64::from(*count),
                element: value(*val),
            },
            Cmd::LTrim { key, start, stop } => Request::LTrim {
                key: k(key),
                start: i64::from(*start),
                stop: i64::from(*stop),
            },
            Cmd::LMove {
                source,
                destination,
                from_left,
                to_left,
            } => Request::LMove {
                source: k(source),
                destination: k(destination),
                from: end(*from_left),
                to: end(*to_left),
            },
        }
    }

    /// `steps` random steps of `mix`, drawn from the cluster's own seed (for tests that drive a
    /// cluster without proptest, e.g. anti-entropy exchanges between runs).
    pub fn run(&mut self, mix: Mix, steps: usize) {
        use proptest::strategy::{Strategy as _, ValueTree};
        use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&self.rng.next().to_le_bytes());
        let mut runner = TestRunner::new_with_rng(
            proptest::test_runner::Config::default(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
        );
        let schedule = schedule(mix, steps..=steps)
            .new_tree(&mut runner)
            .expect("a schedule")
            .current();
        for s in &schedule {
            self.step(s);
        }
    }

    /// Feed the output of a call made outside [`Cluster::exec`] (the history and in-flight ops).
    pub fn absorb_output(&mut self, from: usize, out: Output) {
        self.absorb(from, out, false);
    }

    /// Apply one step of a schedule.
    pub fn step(&mut self, step: &Step) {
        let n = self.engines.len();
        match step {
            Step::Exec { at, cmd, dup } => {
                let i = at % n;
                self.clocks[i] += 1;
                let req = self.request(i, cmd);
                let _ = self.exec_at_clock(i, req, *dup); // WRONGTYPE etc. are fine: no op is made then
            }
            Step::Deliver { pick, keep } => {
                self.deliver(*pick, *keep, 1, false);
            }
            Step::Skew { at, by_ms } => {
                let i = at % n;
                self.clocks[i] = self.clocks[i].saturating_add_signed(*by_ms);
            }
            Step::Sync { at } => self.sync(at % n, false),
            Step::Gc { at } => {
                if self.purge_enabled {
                    self.gc(at % n);
                }
            }
            Step::Expire { at } => {
                self.expire(at % n);
            }
        }
    }

    /// Every replicated key's encoded state, per replica (region-local keys differ by design).
    pub fn snapshot(&self, i: usize) -> BTreeMap<Bytes, Vec<u8>> {
        let e = &self.engines[i];
        e.key_states()
            .filter(|(k, _)| e.policies().policy_for(k).replicate)
            .map(|(k, s)| (k.clone(), s.encode()))
            .collect()
    }

    pub fn assert_converged(&self, context: &str) {
        let first = self.snapshot(0);
        for i in 1..self.engines.len() {
            let other = self.snapshot(i);
            if other != first {
                let diff: Vec<_> = first
                    .keys()
                    .chain(other.keys())
                    .filter(|k| first.get(*k) != other.get(*k))
                    .map(|k| {
                        (
                            k.clone(),
                            self.engines[0].key_state(k).cloned(),
                            self.engines[i].key_state(k).cloned(),
                        )
                    })
                    .take(2)
                    .collect();
                panic!("{context}: replica 0 and {i} diverge: {diff:#?}");
            }
            assert_eq!(
                self.engines[0].applied(),
                self.engines[i].applied(),
                "{context}: applied vectors differ"
            );
        }
        self.check_local_keys(context);
    }

    /// Region-local keys hold only their own region's writes: nothing was shipped in or out.
    pub fn check_local_keys(&self, context: &str) {
        use concord_core::version::LOCAL_REPLICA;
        for (i, e) in self.engines.iter().enumerate() {
            for (k, st) in e.key_states() {
                if e.policies().policy_for(k).replicate {
                    continue;
                }
                let foreign = st
                    .slots
                    .values()
                    .flat_map(|es| es.keys())
                    .any(|d| d.replica != LOCAL_REPLICA)
                    || st.ctx.iter().any(|(r, c)| r != LOCAL_REPLICA && c > 0);
                assert!(
                    !foreign,
                    "{context}: region-local key {k:?} at replica {i} holds another region's write: {st:?}"
                );
            }
        }
    }

    /// The history checker. Every acknowledged write is, at every replica, in the final state, or
    /// was removed by a write that had seen it (its dot is in that write's `removes`), or lost an
    /// `lww` conflict and is in the conflict log (`lww` strings and hash fields only: `priority`,
    /// `siblings` and `script` keep every version until a write that saw it replaces it), or is a
    /// delete superseded by a later write that saw it, or is metadata that purge may drop.
    /// Region-local writes are in their replica's final state unless a later write there changed
    /// their key.
    pub fn check_no_lost_writes(&self, context: &str) {
        let removed: std::collections::BTreeSet<(Bytes, Slot, Dot)> = self
            .ops
            .values()
            .flat_map(|op| {
                op.delta
                    .removes
                    .iter()
                    .map(move |(s, d)| (op.key.clone(), s.clone(), *d))
            })
            .collect();
        let lww_losers: std::collections::BTreeSet<(Bytes, Dot)> = self
            .conflicts
            .iter()
            .filter(|c| c.policy == "lww" && matches!(c.kind, ConflictKind::Register | ConflictKind::Field(_)))
            .flat_map(|c| {
                c.versions
                    .iter()
                    .filter(move |v| Some(v.dot) != c.winner)
                    .map(move |v| (c.key.clone(), v.dot))
            })
            .collect();
        for w in &self.acked {
            for slot in &w.slots {
                for (i, e) in self.engines.iter().enumerate() {
                    let present = e
                        .key_state(&w.key)
                        .and_then(|s| s.entries(slot))
                        .is_some_and(|es| es.contains_key(&w.dot));
                    let overwritten = removed.contains(&(w.key.clone(), slot.clone(), w.dot));
                    let lost_lww = lww_losers.contains(&(w.key.clone(), w.dot));
                    // Deletes' tombstones, counter floors and expiries of dead keys are metadata:
                    // garbage collection drops them once stable.
                    // An expiry purged with its dead key is gone even where the key was written
                    // again: a write on a dead key starts from empty (so it removes the expiry
                    // where the key was not purged yet, see `Engine::apply_remote`).
                    let purged = self.purge_enabled
                        && (slot.is_floor()
                            || ((w.tombstone || *slot == Slot::Expiry)
                                && (e.key_state(&w.key).is_none()
                                    || self.purged_expiries.contains(&(w.key.clone(), w.dot)))));
                    // A delete (tombstone) is superseded by any later data write that saw it.
                    let superseded = w.tombstone
                        && self.ops.values().any(|o| {
                            o.key == w.key
                                && o.delta.adds.iter().any(|(s, _)| s.kind().is_some())
                                && ((o.origin == w.dot.replica && o.seq > w.dot.counter)
                                    || o.deps.get(w.dot.replica) >= w.dot.counter)
                        });
                    assert!(
                        present || overwritten || lost_lww || purged || superseded,
                        "{context}: acknowledged write {} on {:?} slot {slot:?} vanished at replica {i}",
                        w.dot,
                        w.key
                    );
                }
            }
        }
        for w in &self.local_writes {
            let present = self.engines[w.at]
                .key_state(&w.key)
                .and_then(|s| s.entries(&w.slot))
                .is_some_and(|es| es.contains_key(&w.dot));
            let changed_later = self
                .local_touches
                .iter()
                .any(|(at, key, t)| *at == w.at && *key == w.key && *t > w.t);
            assert!(
                present || changed_later,
                "{context}: acknowledged region-local write {} on {:?} slot {:?} vanished at replica {}",
                w.dot,
                w.key,
                w.slot,
                w.at
            );
        }
    }
}

// ----- schedules as proptest strategies ---------------------------------------------------------

use proptest::prelude::{any, prop_oneof, BoxedStrategy, Just};
use proptest::strategy::Strategy as PStrategy;

const HOUR_MS: i64 = 3_600_000;

fn key() -> impl PStrategy<Value = &'static str> {
    proptest::sample::select(&KEYS[..])
}

fn keys() -> impl PStrategy<Value = Vec<&'static str>> {
    proptest::collection::vec(key(), 1..=3)
}

fn val() -> impl PStrategy<Value = u16> {
    0u16..1000
}

/// `SET` flags: `NX`/`XX` sometimes, `EX`/`PX` (relative, short enough to expire during a run),
/// `KEEPTTL` or a plain clear.
fn set_cmd() -> impl PStrategy<Value = Cmd> {
    let cond = prop_oneof![
        6 => Just(SetCondition::Always),
        1 => Just(SetCondition::IfAbsent),
        1 => Just(SetCondition::IfPresent),
    ];
    let expiry = prop_oneof![
        6 => Just(SetExpiry::Clear),
        1 => Just(SetExpiry::Keep),
        2 => (1u64..400).prop_map(SetExpiry::InMs),
    ];
    (key(), val(), cond, expiry).prop_map(|(key, val, cond, expiry)| Cmd::Set { key, val, cond, expiry })
}

/// `PEXPIRE` (some ≤ 0, which deletes) and `PERSIST`: every mix has them.
fn ttl_cmd() -> impl PStrategy<Value = Cmd> {
    prop_oneof![
        3 => (key(), -5i64..400).prop_map(|(key, in_ms)| Cmd::Expire { key, in_ms }),
        2 => key().prop_map(Cmd::Persist),
    ]
}

fn string_cmd() -> impl PStrategy<Value = Cmd> {
    prop_oneof![
        40 => set_cmd(),
        6 => proptest::collection::vec((key(), val()), 1..=3).prop_map(Cmd::MSet),
        12 => keys().prop_map(Cmd::Del),
        3 => key().prop_map(Cmd::GetDel),
        8 => (key(), val()).prop_map(|(key, val)| Cmd::Append { key, val }),
        12 => (key(), val()).prop_map(|(key, val)| Cmd::Resolve { key, val }),
        8 => ttl_cmd(),
    ]
}

fn counter_cmd() -> impl PStrategy<Value = Cmd> {
    prop_oneof![
        80 => (key(), -10i64..=10).prop_map(|(key, by)| Cmd::IncrBy { key, by }),
        12 => keys().prop_map(Cmd::Del),
        8 => ttl_cmd(),
    ]
}

fn set_type_cmd() -> impl PStrategy<Value = Cmd> {
    prop_oneof![
        50 => (key(), 0u8..4).prop_map(|(key, member)| Cmd::SAdd { key, member }),
        32 => (key(), 0u8..4).prop_map(|(key, member)| Cmd::SRem { key, member }),
        10 => keys().prop_map(Cmd::Del),
        8 => ttl_cmd(),
    ]
}

fn hash_cmd() -> impl PStrategy<Value = Cmd> {
    prop_oneof![
        45 => (key(), 0u8..3, val()).prop_map(|(key, field, val)| Cmd::HSet { key, field, val }),
        25 => (key(), 0u8..3).prop_map(|(key, field)| Cmd::HDel { key, field }),
        12 => (key(), 0u8..3, -10i64..=10).prop_map(|(key, field, by)| Cmd::HIncrBy { key, field, by }),
        5 => (key(), 0u8..3, val()).prop_map(|(key, field, val)| Cmd::HSetNx { key, field, val }),
        10 => keys().prop_map(Cmd::Del),
        8 => ttl_cmd(),
    ]
}

fn zset_cmd() -> impl PStrategy<Value = Cmd> {
    prop_oneof![
        30 => (key(), 0u8..4, -8i8..=8, proptest::bool::weighted(0.2))
            .prop_map(|(key, member, score, gt)| Cmd::ZAdd { key, member, score, gt }),
        30 => (key(), 0u8..4, -8i8..=8).prop_map(|(key, member, by)| Cmd::ZIncrBy { key, member, by }),
        18 => (key(), 0u8..4).prop_map(|(key, member)| Cmd::ZRem { key, member }),
        4 => key().prop_map(Cmd::ZPopMin),
        10 => (key(), 0u16..200).prop_map(|(key, element)| Cmd::PfAdd { key, element }),
        8 => keys().prop_map(Cmd::Del),
        5 => ttl_cmd(),
    ]
}

/// List commands on a small value space (so `LREM` and `LINSERT` find their elements).
fn list_cmd() -> impl PStrategy<Value = Cmd> {
    let v = || 0u16..6;
    prop_oneof![
        30 => (key(), any::<bool>(), proptest::collection::vec(v(), 1..=3)).prop_map(|(key, left, vals)| Cmd::Push { key, left, vals }),
        18 => (key(), any::<bool>(), proptest::option::weighted(0.3, 0u8..4)).prop_map(|(key, left, count)| Cmd::Pop { key, left, count }),
        10 => (key(), any::<bool>(), v(), v()).prop_map(|(key, before, pivot, val)| Cmd::LInsert { key, before, pivot, val }),
        10 => (key(), -3i8..3, v()).prop_map(|(key, index, val)| Cmd::LSet { key, index, val }),
        8 => (key(), -2i8..=2, v()).prop_map(|(key, count, val)| Cmd::LRem { key, count, val }),
        4 => (key(), -3i8..3, -3i8..3).prop_map(|(key, start, stop)| Cmd::LTrim { key, start, stop }),
        6 => (key(), key(), any::<bool>(), any::<bool>()).prop_map(|(source, destination, from_left, to_left)| Cmd::LMove { source, destination, from_left, to_left }),
        6 => keys().prop_map(Cmd::Del),
        6 => ttl_cmd(),
    ]
}

pub fn cmd(mix: Mix) -> BoxedStrategy<Cmd> {
    match mix {
        Mix::ZSets => zset_cmd().boxed(),
        Mix::Strings => string_cmd().boxed(),
        Mix::Counters => counter_cmd().boxed(),
        Mix::Sets => set_type_cmd().boxed(),
        Mix::Hashes => hash_cmd().boxed(),
        Mix::Lists => list_cmd().boxed(),
        Mix::All => prop_oneof![
            25 => string_cmd(),
            25 => counter_cmd(),
            25 => set_type_cmd(),
            25 => hash_cmd(),
            // Sorted sets and lists weigh less: with both, the older families' rarer events (a
            // script error) still show in `schedules_exercise_every_feature`.
            15 => zset_cmd(),
            15 => list_cmd(),
            1 => Just(Cmd::FlushAll),
        ]
        .boxed(),
    }
}

/// One step: mostly commands and deliveries; sometimes clock skew (minutes to hours, either way),
/// vector exchange with write-backs, garbage collection and active expiry.
pub fn step(mix: Mix) -> impl PStrategy<Value = Step> {
    let at = 0usize..5;
    prop_oneof![
        45 => (at.clone(), cmd(mix), proptest::bool::weighted(0.1)).prop_map(|(at, cmd, dup)| Step::Exec { at, cmd, dup }),
        45 => (any::<u16>(), proptest::bool::weighted(0.05)).prop_map(|(pick, keep)| Step::Deliver { pick: pick as usize, keep }),
        2 => (at.clone(), proptest::sample::select(vec![-3 * HOUR_MS, -60_000, -1_000, 1_000, 60_000, 3 * HOUR_MS]))
            .prop_map(|(at, by_ms)| Step::Skew { at, by_ms }),
        3 => at.clone().prop_map(|at| Step::Sync { at }),
        3 => at.clone().prop_map(|at| Step::Gc { at }),
        2 => at.prop_map(|at| Step::Expire { at }),
    ]
}

/// A schedule of `len` steps (shrinks by dropping and simplifying steps).
pub fn schedule(mix: Mix, len: std::ops::RangeInclusive<usize>) -> impl PStrategy<Value = Vec<Step>> {
    proptest::collection::vec(step(mix), len)
}

/// The property tests' config: 64 cases (`PROPTEST_CASES=n` runs more), failures shrunk for up to
/// two minutes and saved beside the test file. The cases come from a fixed seed, so CI runs the
/// same cases every time (a failure is a bug to fix, not bad luck); `PROPTEST_RNG_SEED=n` explores
/// others.
pub fn proptest_config() -> proptest::test_runner::Config {
    let mut config = proptest::test_runner::Config {
        max_shrink_time: 120_000,
        ..Default::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    if config.rng_seed == proptest::test_runner::RngSeed::Random {
        config.rng_seed = proptest::test_runner::RngSeed::Fixed(0xC04C_0DDE_7E57);
    }
    config
}
