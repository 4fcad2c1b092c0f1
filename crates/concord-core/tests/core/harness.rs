//! A tiny in-memory cluster of engines with a seeded scheduler: random commands on random
//! replicas, ops delivered in random order, duplicated and delayed.

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
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

/// Which commands a workload uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    Strings,
    Counters,
    Sets,
    Hashes,
    All,
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
        ],
        vec![2, 1, 3, 4, 5],
        16,
    )
}

pub fn regions(n: usize) -> BTreeMap<ReplicaId, String> {
    let names = ["us", "eu", "ap", "sa", "af"];
    (0..n).map(|i| (i as ReplicaId + 1, names[i].to_string())).collect()
}

impl Cluster {
    pub fn new(n: usize, seed: u64) -> Self {
        let engines = (0..n)
            .map(|i| {
                let mut cfg = EngineConfig::new(i as ReplicaId + 1, regions(n));
                cfg.policies = policies();
                Engine::new(cfg)
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
        }
    }

    /// Execute a command at replica `i`; ship its ops to every other replica (maybe twice).
    pub fn exec(&mut self, i: usize, req: Request) -> Result<Reply, CommandError> {
        self.clocks[i] += 1 + self.rng.below(5);
        let mut out = Output::default();
        let reply = self.engines[i].execute(req, self.clocks[i], &mut out);
        self.absorb(i, out);
        reply
    }

    fn absorb(&mut self, from: usize, out: Output) {
        self.conflicts.extend(out.conflicts);
        for op in out.local_ops {
            self.acked.push(AckedWrite {
                dot: op.dot(),
                key: op.key.clone(),
                slots: op.delta.adds.iter().map(|(s, _)| s.clone()).collect(),
                tombstone: op
                    .delta
                    .adds
                    .iter()
                    .all(|(_, p)| matches!(p, Payload::Value(None) | Payload::Floor { .. })),
            });
            self.ops.insert(op.dot(), op.clone());
            for j in 0..self.engines.len() {
                if j != from {
                    self.inflight.push((j, op.clone()));
                    if self.rng.chance(10) {
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
        let idx = self.rng.below(self.inflight.len() as u64) as usize;
        let (to, op) = if self.rng.chance(5) {
            self.inflight[idx].clone()
        } else {
            self.inflight.swap_remove(idx)
        };
        self.clocks[to] += self.rng.below(3);
        let mut out = Output::default();
        self.engines[to].receive(op, self.clocks[to], &mut out);
        assert!(!out.catch_up, "buffer overflow in a small test");
        self.absorb(to, out);
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
            self.observe_peers(i);
            let mut out = Output::default();
            self.engines[i].tick(self.clocks[i], &mut out);
            self.absorb(i, out);
        }
    }

    pub fn gc(&mut self, i: usize) -> usize {
        self.observe_peers(i);
        let mut out = Output::default();
        let n = self.engines[i].collect_garbage(&mut out);
        self.absorb(i, out);
        n
    }

    /// A random command of the mix on a random key.
    pub fn random_request(&mut self, mix: Mix, i: usize) -> Request {
        let mix = if mix == Mix::All {
            *self.rng.pick(&[Mix::Strings, Mix::Counters, Mix::Sets, Mix::Hashes])
        } else {
            mix
        };
        let prefixes = ["s:", "p:", "l:", "x"];
        let key = |rng: &mut Rng| Bytes::from(format!("{}{}", rng.pick(&prefixes), rng.below(3)));
        let val = |rng: &mut Rng| Bytes::from(format!("v{}", rng.below(1000)));
        let k = key(&mut self.rng);
        let r = self.rng.below(100);
        match mix {
            Mix::Strings => match r {
                0..=59 => Request::Set {
                    key: k,
                    value: val(&mut self.rng),
                    condition: SetCondition::Always,
                    expiry: SetExpiry::Clear,
                    get: false,
                },
                60..=74 => Request::Del(vec![k]),
                75..=84 => Request::Append {
                    key: k,
                    value: val(&mut self.rng),
                },
                _ => {
                    // Resolve siblings with the context just read, like a careful client.
                    let ctx = self.engines[i].key_state(&k).map(|s| s.ctx.clone()).unwrap_or_default();
                    Request::Resolve {
                        key: k,
                        context: ctx,
                        value: val(&mut self.rng),
                    }
                }
            },
            Mix::Counters => match r {
                0..=84 => Request::IncrBy {
                    key: k,
                    by: self.rng.below(21) as i64 - 10,
                },
                _ => Request::Del(vec![k]),
            },
            Mix::Sets => {
                let m = Bytes::from(format!("m{}", self.rng.below(4)));
                match r {
                    0..=54 => Request::SAdd {
                        key: k,
                        members: vec![m],
                    },
                    55..=89 => Request::SRem {
                        key: k,
                        members: vec![m],
                    },
                    _ => Request::Del(vec![k]),
                }
            }
            Mix::Hashes => {
                let f = Bytes::from(format!("f{}", self.rng.below(3)));
                match r {
                    0..=59 => Request::HSet {
                        key: k,
                        pairs: vec![(f, val(&mut self.rng))],
                    },
                    60..=89 => Request::HDel {
                        key: k,
                        fields: vec![f],
                    },
                    _ => Request::Del(vec![k]),
                }
            }
            Mix::All => unreachable!(),
        }
    }

    /// Run `steps` random steps: a command at a random replica, or some deliveries.
    pub fn run(&mut self, mix: Mix, steps: usize) {
        for _ in 0..steps {
            if self.rng.chance(55) {
                let i = self.rng.below(self.engines.len() as u64) as usize;
                let req = self.random_request(mix, i);
                let _ = self.exec(i, req); // WRONGTYPE etc. are fine: no op is made then
            } else {
                for _ in 0..self.rng.below(4) {
                    self.deliver_one();
                }
            }
            if self.purge_enabled && self.rng.chance(5) {
                let i = self.rng.below(self.engines.len() as u64) as usize;
                self.gc(i);
            }
        }
    }

    /// Every key's encoded state, per replica.
    pub fn snapshot(&self, i: usize) -> BTreeMap<Bytes, Vec<u8>> {
        self.engines[i]
            .key_states()
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
    }

    /// The history checker: every acknowledged write is in the final state, or was removed by a
    /// write that had seen it (its dot is in that write's `removes`), or lost an `lww` conflict
    /// and is in the conflict log.
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
        let logged_losers: std::collections::BTreeSet<(Bytes, Dot)> = self
            .conflicts
            .iter()
            .filter(|c| matches!(c.kind, ConflictKind::Register | ConflictKind::Field(_)))
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
                    let lost_lww = logged_losers.contains(&(w.key.clone(), w.dot));
                    // Deletes' tombstones, counter floors and expiries of dead keys are metadata:
                    // garbage collection drops them once stable.
                    let purged = self.purge_enabled
                        && (w.tombstone || *slot == Slot::Expiry)
                        && (e.key_state(&w.key).is_none() || matches!(slot, Slot::CounterFloor(_)));
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
    }
}
