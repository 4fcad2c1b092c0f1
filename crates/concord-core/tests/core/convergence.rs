//! Replica convergence: random commands on random replicas, ops delivered in random order with
//! duplicates and delays → every key's encoded state is byte-identical on every replica, and no
//! acknowledged write is lost (checked over the whole history).

use super::harness::{Cluster, Mix};
use proptest::prelude::*;

fn converge(seed: u64, replicas: usize, steps: usize, mix: Mix, purge: bool) {
    let mut c = Cluster::new(replicas, seed);
    c.purge_enabled = purge;
    c.run(mix, steps);
    c.deliver_all();
    if purge {
        // A last garbage collection everywhere (a round takes two calls; one may be half done).
        for _ in 0..3 {
            for i in 0..replicas {
                c.gc(i);
            }
        }
    }
    let ctx = format!("seed {seed}, {replicas} replicas, {steps} steps, {mix:?}, purge {purge}");
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
    }
    c.check_no_lost_writes(&ctx);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn strings_converge(seed in any::<u64>(), n in 3usize..=5) { converge(seed, n, 300, Mix::Strings, false) }

    #[test]
    fn counters_converge(seed in any::<u64>(), n in 3usize..=5) { converge(seed, n, 300, Mix::Counters, false) }

    #[test]
    fn sets_converge(seed in any::<u64>(), n in 3usize..=5) { converge(seed, n, 300, Mix::Sets, false) }

    #[test]
    fn hashes_converge(seed in any::<u64>(), n in 3usize..=5) { converge(seed, n, 300, Mix::Hashes, false) }

    #[test]
    fn mixed_types_converge(seed in any::<u64>(), n in 3usize..=5) { converge(seed, n, 400, Mix::All, false) }

    #[test]
    fn mixed_types_converge_with_purge(seed in any::<u64>(), n in 3usize..=5) { converge(seed, n, 400, Mix::All, true) }
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
