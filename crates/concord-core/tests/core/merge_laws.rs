//! The join of key states is commutative, associative and idempotent, for every type; and joining
//! every replica's partial state gives the state the replicas converge to.

use super::harness::{Cluster, Mix};
use concord_core::KeyState;
use proptest::prelude::*;

fn laws(seed: u64, mix: Mix) {
    let mut c = Cluster::new(3, seed);
    c.run(mix, 200);
    // Partial views: each replica has seen a different subset of the ops.
    let keys: std::collections::BTreeSet<_> = c
        .engines
        .iter()
        .flat_map(|e| e.key_states().map(|(k, _)| k.clone()).collect::<Vec<_>>())
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
    c.deliver_all();
    for k in &keys {
        let joined = partial[0][k].join(&partial[1][k]).join(&partial[2][k]);
        let converged = c.engines[0].key_state(k).cloned().unwrap_or_default();
        assert_eq!(
            joined, converged,
            "seed {seed}: join of partial states differs from converged state on {k:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn register_join_laws(seed in any::<u64>()) { laws(seed, Mix::Strings) }

    #[test]
    fn counter_join_laws(seed in any::<u64>()) { laws(seed, Mix::Counters) }

    #[test]
    fn set_join_laws(seed in any::<u64>()) { laws(seed, Mix::Sets) }

    #[test]
    fn hash_join_laws(seed in any::<u64>()) { laws(seed, Mix::Hashes) }

    #[test]
    fn mixed_join_laws(seed in any::<u64>()) { laws(seed, Mix::All) }

    /// Encoding is canonical: decode(encode(s)) == s and equal states encode equally.
    #[test]
    fn encoding_round_trips(seed in any::<u64>()) {
        let mut c = Cluster::new(3, seed);
        c.run(Mix::All, 150);
        for (_, st) in c.engines[0].key_states() {
            let bytes = st.encode();
            prop_assert_eq!(&KeyState::decode(&bytes).unwrap(), st);
        }
        for (_, op) in c.ops.iter().take(50) {
            prop_assert_eq!(&concord_core::Op::decode(&op.encode()).unwrap(), op);
        }
    }
}
