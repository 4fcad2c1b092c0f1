//! Replica convergence: random schedules of commands on random replicas, ops delivered in random
//! order with duplicates and delays, clocks skewed → every replicated key's encoded state is
//! byte-identical on every replica, and no acknowledged write is lost (checked over the whole
//! history).
//!
//! The schedules are proptest values ([`schedule`]): a failure shrinks to a short list of steps
//! and is saved in `convergence.txt` beside this file (commit it: it is replayed first).

use super::harness::{proptest_config, schedule, Cluster, Cmd, Mix, Step};
use proptest::prelude::*;

fn converge(seed: u64, replicas: usize, steps: &[Step], purge: bool) {
    converge_capped(seed, replicas, steps, purge, 16)
}

fn converge_capped(seed: u64, replicas: usize, steps: &[Step], purge: bool, max_siblings: usize) {
    let mut c = Cluster::new(replicas, seed);
    c.set_max_siblings(max_siblings);
    c.purge_enabled = purge;
    // Wall clocks of today (skew steps move them by hours either way without reaching 0).
    c.clocks = vec![1_800_000_000_000; replicas];
    for s in steps {
        c.step(s);
    }
    c.deliver_all();
    if purge {
        // A last garbage collection everywhere (a round takes two calls; one may be half done).
        for _ in 0..3 {
            for i in 0..replicas {
                c.gc(i);
            }
        }
    }
    let ctx = format!(
        "seed {seed}, {replicas} replicas, {} steps, purge {purge}, max_siblings {max_siblings}",
        steps.len()
    );
    if !purge {
        c.assert_converged(&ctx);
    } else {
        // Purge happens at different times in different replicas: compare digests, which skip
        // tombstone-only keys, and require identical live data.
        let d0 = c.engines[0].state_digest();
        for (i, e) in c.engines.iter().enumerate() {
            if e.state_digest() != d0 {
                let e0 = &c.engines[0];
                let diff: Vec<_> = e0
                    .key_states()
                    .map(|(k, _)| k.clone())
                    .chain(e.key_states().map(|(k, _)| k.clone()))
                    .filter(|k| e0.key_state(k).map(|s| &s.slots) != e.key_state(k).map(|s| &s.slots))
                    .map(|k| {
                        (
                            k.clone(),
                            e0.key_state(&k).map(|s| s.slots.clone()),
                            e.key_state(&k).map(|s| s.slots.clone()),
                        )
                    })
                    .take(1)
                    .collect();
                panic!("{ctx}: replica {i} data differs: {diff:#?}");
            }
        }
        c.check_local_keys(&ctx);
    }
    c.check_no_lost_writes(&ctx);
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn strings_converge(seed in any::<u64>(), n in 3usize..=5, steps in schedule(Mix::Strings, 1..=300)) {
        converge(seed, n, &steps, false)
    }

    #[test]
    fn counters_converge(seed in any::<u64>(), n in 3usize..=5, steps in schedule(Mix::Counters, 1..=300)) {
        converge(seed, n, &steps, false)
    }

    #[test]
    fn sets_converge(seed in any::<u64>(), n in 3usize..=5, steps in schedule(Mix::Sets, 1..=300)) {
        converge(seed, n, &steps, false)
    }

    #[test]
    fn hashes_converge(seed in any::<u64>(), n in 3usize..=5, steps in schedule(Mix::Hashes, 1..=300)) {
        converge(seed, n, &steps, false)
    }

    /// Lists: the converged states are byte-identical, so every replica reads the same sequence
    /// (also checked through `LRANGE`); with and without purge.
    #[test]
    fn lists_converge(seed in any::<u64>(), n in 3usize..=5, steps in schedule(Mix::Lists, 1..=300), purge in any::<bool>()) {
        converge(seed, n, &steps, purge)
    }

    #[test]
    fn zsets_converge(seed in any::<u64>(), n in 3usize..=5, steps in schedule(Mix::ZSets, 1..=300)) {
        converge(seed, n, &steps, false)
    }

    #[test]
    fn zsets_converge_with_purge(seed in any::<u64>(), n in 3usize..=5, steps in schedule(Mix::ZSets, 1..=300)) {
        converge(seed, n, &steps, true)
    }

    #[test]
    fn mixed_types_converge(
        seed in any::<u64>(),
        n in 3usize..=5,
        steps in schedule(Mix::All, 1..=400),
        max_siblings in proptest::sample::select(vec![16usize, 2]),
    ) {
        converge_capped(seed, n, &steps, false, max_siblings)
    }

    /// `max_siblings = 2`: three or more concurrent versions are collapsed by the cap's `lww`
    /// write-back (a write that saw them, so no-lost-writes holds without excuse).
    #[test]
    fn capped_siblings_converge(seed in any::<u64>(), n in 3usize..=5, steps in schedule(Mix::Strings, 1..=300)) {
        converge_capped(seed, n, &steps, false, 2)
    }

    #[test]
    fn mixed_types_converge_with_purge(
        seed in any::<u64>(),
        n in 3usize..=5,
        steps in schedule(Mix::All, 1..=400),
        max_siblings in proptest::sample::select(vec![16usize, 2]),
    ) {
        converge_capped(seed, n, &steps, true, max_siblings)
    }
}
/// Counters are exact: with increments only, every replica ends at the sum of all increments.
#[test]
fn counters_are_exact_under_reordering_and_duplicates() {
    use bytes::Bytes;
    use concord_core::{Reply, Request};
    for seed in 0..20 {
        let mut c = Cluster::new(3, seed);
        let mut sum = 0i64;
        for step in 0..1000 {
            let i = (c.rng.below(3)) as usize;
            let by = c.rng.below(7) as i64 - 2;
            sum += by;
            c.exec(
                i,
                Request::IncrBy {
                    key: Bytes::from("likes"),
                    by,
                },
            )
            .unwrap();
            if step % 3 == 0 {
                c.deliver_one();
            }
        }
        c.deliver_all();
        for i in 0..3 {
            let got = c.exec(i, Request::Get(Bytes::from("likes"))).unwrap();
            assert_eq!(
                got,
                Reply::Bulk(Bytes::from(sum.to_string())),
                "seed {seed} replica {i}"
            );
        }
    }
}

/// The checker can fail: dropping a write on one replica is caught.
#[test]
fn checker_detects_a_divergent_replica() {
    use bytes::Bytes;
    use concord_core::Request;
    let mut c = Cluster::new(3, 7);
    c.exec(
        0,
        Request::SAdd {
            key: Bytes::from("cart"),
            members: vec![Bytes::from("apple")],
        },
    )
    .unwrap();
    // Lose the op on the way to replica 2.
    c.inflight.retain(|(to, _)| *to != 2);
    c.deliver_all();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.assert_converged("planted")));
    assert!(r.is_err(), "a replica that missed an op must be reported as divergent");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.check_no_lost_writes("planted")));
    assert!(r.is_err(), "a write missing at one replica must be reported as lost");
}

/// The no-lost-writes checker excuses only `lww` losers, as the docs promise: a planted bug that
/// collapses every key's string siblings to the `lww` winner on arrival is caught on `siblings`,
/// `priority` and `script` keys, and passes on an `lww` key (its loser is in the conflict log).
#[test]
fn checker_detects_collapsed_siblings_except_lww_losers() {
    use super::harness::set;
    use concord_core::PlantedBug;
    for key in ["s:k", "p:k", "c:k", "l:k"] {
        let mut c = Cluster::with_bug(3, 3, Some(PlantedBug::CollapseSiblings));
        c.exec(0, set(key, "from-0")).unwrap();
        c.exec(1, set(key, "from-1")).unwrap();
        c.deliver_all();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.check_no_lost_writes("planted")));
        if key == "l:k" {
            assert!(r.is_ok(), "an lww loser in the conflict log is excused");
            continue;
        }
        let msg = r
            .expect_err("a collapsed sibling must be reported as lost")
            .downcast::<String>()
            .expect("a formatted panic message");
        assert!(
            msg.contains("vanished") && msg.contains(&format!("{:?}", bytes::Bytes::from(key))),
            "{key}: wrong failure: {msg}"
        );
    }
}

/// The random schedules are not vacuous: over a few of them, every feature the checks claim to
/// cover happens (conflicts under every policy, a failing resolver, script write-backs, the
/// `max_siblings` collapse (half of them run with `max_siblings = 2`),
/// region-local writes, TTLs that expire and are deleted, `PERSIST`, `SET NX`/`XX` outcomes,
/// `MSET`, multi-key `DEL`, `HINCRBY`, and remote clocks far ahead).
#[test]
fn schedules_exercise_every_feature() {
    use concord_core::{ConflictKind, Payload, Slot};
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::BTreeSet;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut runner = TestRunner::deterministic();
    for seed in 0..20 {
        let steps = schedule(Mix::All, 400..=400).new_tree(&mut runner).unwrap().current();
        let mut c = Cluster::new(3, seed);
        if seed % 2 == 1 {
            c.set_max_siblings(2);
        }
        for s in &steps {
            if let Step::Exec { cmd, .. } = s {
                let name = format!("{cmd:?}");
                let name = name.split([' ', '(']).next().unwrap().to_string();
                match cmd {
                    Cmd::Del(keys) if keys.len() > 1 => seen.insert("multi-key Del".into()),
                    Cmd::MSet(pairs) if pairs.len() > 1 => seen.insert("multi-key MSet".into()),
                    _ => seen.insert(name),
                };
            }
            c.step(s);
        }
        c.deliver_all();
        for r in &c.conflicts {
            seen.insert(format!("conflict {}", r.policy));
            if matches!(r.kind, ConflictKind::ScriptError(_)) {
                seen.insert("script error".into());
            }
            if matches!(r.kind, ConflictKind::SiblingCap) {
                seen.insert("sibling cap write-back".into());
            }
        }
        for op in c.ops.values() {
            let expiry_write = op.delta.adds.iter().any(|(s, _)| *s == Slot::Expiry);
            let persist = op.delta.adds.iter().any(|(_, p)| *p == Payload::Expiry(None));
            if persist {
                seen.insert("persist op".into());
            } else if expiry_write {
                seen.insert("expiry op".into());
            }
            if op.key.starts_with(b"c:") && op.delta.removes.len() >= 2 {
                seen.insert("script write-back".into());
            }
        }
        if !c.local_writes.is_empty() {
            seen.insert("region-local write".into());
        }
        if c.engines.iter().any(|e| e.clock().remote_ahead_count > 0) {
            seen.insert("remote clock ahead".into());
        }
        if c.engines.iter().any(|e| e.stats.keys_purged > 0) {
            seen.insert("purge".into());
        }
    }
    let expected = [
        "conflict lww",
        "conflict priority",
        "conflict siblings",
        "conflict script",
        "conflict type",
        "script error",
        "script write-back",
        "sibling cap write-back",
        "expiry op",
        "persist op",
        "region-local write",
        "remote clock ahead",
        "multi-key Del",
        "multi-key MSet",
        "HIncrBy",
        "Expire",
        "Persist",
        "Set",
        "GetDel",
        "Resolve",
        "Append",
        "HSetNx",
        "FlushAll",
    ];
    let missing: Vec<_> = expected.iter().filter(|e| !seen.contains(**e)).collect();
    assert!(
        missing.is_empty(),
        "schedules never exercised {missing:?}; saw {seen:?}"
    );
}
