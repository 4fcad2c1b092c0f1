//! The join of key states is commutative, associative and idempotent, for every type; and joining
//! every replica's partial state gives the state the replicas converge to. Schedules are proptest
//! values (they shrink; failures are saved in `merge_laws.txt` beside this file).

use super::harness::{proptest_config, schedule, Cluster, Mix, Step};
use concord_core::KeyState;
use proptest::prelude::*;

fn laws(seed: u64, steps: &[Step]) {
    let mut c = Cluster::new(3, seed);
    for s in steps {
        c.step(s);
    }
    // Partial views: each replica has seen a different subset of the ops. Region-local keys are
    // not replicated: each replica's is its own.
    let keys: std::collections::BTreeSet<_> = c
        .engines
        .iter()
        .flat_map(|e| {
            e.key_states()
                .filter(|(k, _)| e.policies().policy_for(k).replicate)
                .map(|(k, _)| k.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    let partial: Vec<std::collections::BTreeMap<_, _>> = c
        .engines
        .iter()
        .map(|e| {
            keys.iter()
                .map(|k| (k.clone(), e.key_state(k).cloned().unwrap_or_default()))
                .collect()
        })
        .collect();
    for k in &keys {
        let (a, b, d) = (&partial[0][k], &partial[1][k], &partial[2][k]);
        assert_eq!(a.join(b), b.join(a), "seed {seed}: join not commutative on {k:?}");
        assert_eq!(
            a.join(&b.join(d)),
            a.join(b).join(d),
            "seed {seed}: join not associative on {k:?}"
        );
        assert_eq!(a.join(a), *a, "seed {seed}: join not idempotent on {k:?}");
        assert_eq!(
            a.join(&KeyState::default()),
            *a,
            "seed {seed}: bottom is not a unit on {k:?}"
        );
    }
    let written_before = c.ops.len();
    c.deliver_all();
    // Delivery may make new writes (script write-backs of stable siblings): the join of the
    // partial states says nothing about those keys.
    let rewritten: std::collections::BTreeSet<_> = if c.ops.len() > written_before {
        let before: std::collections::BTreeSet<_> = c.acked[..written_before].iter().map(|w| w.dot).collect();
        c.ops
            .values()
            .filter(|o| !before.contains(&o.dot()))
            .map(|o| o.key.clone())
            .collect()
    } else {
        Default::default()
    };
    for k in keys.iter().filter(|k| !rewritten.contains(*k)) {
        let joined = partial[0][k].join(&partial[1][k]).join(&partial[2][k]);
        let converged = c.engines[0].key_state(k).cloned().unwrap_or_default();
        assert_eq!(
            joined, converged,
            "seed {seed}: join of partial states differs from converged state on {k:?}"
        );
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn register_join_laws(seed in any::<u64>(), steps in schedule(Mix::Strings, 1..=200)) { laws(seed, &steps) }

    #[test]
    fn counter_join_laws(seed in any::<u64>(), steps in schedule(Mix::Counters, 1..=200)) { laws(seed, &steps) }

    #[test]
    fn set_join_laws(seed in any::<u64>(), steps in schedule(Mix::Sets, 1..=200)) { laws(seed, &steps) }

    #[test]
    fn hash_join_laws(seed in any::<u64>(), steps in schedule(Mix::Hashes, 1..=200)) { laws(seed, &steps) }

    #[test]
    fn zset_join_laws(seed in any::<u64>(), steps in schedule(Mix::ZSets, 1..=200)) { laws(seed, &steps) }

    #[test]
    fn list_join_laws(seed in any::<u64>(), steps in schedule(Mix::Lists, 1..=200)) { laws(seed, &steps) }

    #[test]
    fn mixed_join_laws(seed in any::<u64>(), steps in schedule(Mix::All, 1..=200)) { laws(seed, &steps) }

    /// Encoding is canonical: decode(encode(s)) == s and equal states encode equally.
    #[test]
    fn encoding_round_trips(seed in any::<u64>(), steps in schedule(Mix::All, 1..=150)) {
        let mut c = Cluster::new(3, seed);
        for s in &steps {
            c.step(s);
        }
        for (_, st) in c.engines[0].key_states() {
            let bytes = st.encode();
            prop_assert_eq!(&KeyState::decode(&bytes).unwrap(), st);
        }
        for (_, op) in c.ops.iter().take(50) {
            prop_assert_eq!(&concord_core::Op::decode(&op.encode()).unwrap(), op);
        }
    }
}
