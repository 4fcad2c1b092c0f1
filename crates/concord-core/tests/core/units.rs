//! Units: the ops of one multi-key command, transaction or script are applied by every other
//! replica together or not at all (atomic visibility, DESIGN §8.4), whatever order and batches
//! they arrive in, interleaved with other writers' ops.

use super::harness::{b, regions, set};
use concord_core::*;
use proptest::prelude::*;

const NOW: u64 = 1_700_000_000_000;

fn engine(id: ReplicaId) -> Engine {
    Engine::new(EngineConfig::new(id, regions(3)))
}

fn get(e: &mut Engine, key: &str) -> Reply {
    let mut out = Output::default();
    e.execute(Request::Get(b(key)), NOW, &mut out).unwrap()
}

/// What replica `e` shows of keys `k0..kn`: all present with `value`, or all absent.
fn all_or_none(e: &mut Engine, keys: &[String], value: &str) -> Option<bool> {
    let seen: Vec<bool> = keys.iter().map(|k| get(e, k) == Reply::Bulk(b(value))).collect();
    if seen.iter().all(|s| *s) {
        Some(true)
    } else if seen.iter().all(|s| !*s) {
        Some(false)
    } else {
        None
    }
}

#[test]
fn a_multi_key_write_is_one_unit() {
    let mut us = engine(1);
    let mut out = Output::default();
    us.execute(
        Request::MSet(vec![(b("a"), b("1")), (b("b"), b("1")), (b("c"), b("1"))]),
        NOW,
        &mut out,
    )
    .unwrap();
    let ends: Vec<u64> = out.local_ops.iter().map(|o| o.unit_end).collect();
    assert_eq!(ends, vec![3, 3, 3], "MSET of three keys: one unit ending at seq 3");
    // A single-key write is no unit.
    let mut out = Output::default();
    us.execute(set("d", "1"), NOW, &mut out).unwrap();
    assert_eq!(out.local_ops[0].unit_end, 0);
}

#[test]
fn a_transaction_is_one_unit_and_a_failing_command_does_not_stop_it() {
    let mut us = engine(1);
    let mut out = Output::default();
    us.execute(set("s", "text"), NOW, &mut out).unwrap();
    let mut out = Output::default();
    let replies = us.execute_unit(
        vec![
            set("a", "1"),
            Request::IncrBy { key: b("s"), by: 1 }, // not an integer: an error, the others still run
            Request::SAdd {
                key: b("m"),
                members: vec![b("x")],
            },
        ],
        NOW,
        &mut out,
    );
    assert_eq!(replies.len(), 3);
    assert!(
        replies[0].is_ok() && replies[1].is_err() && replies[2].is_ok(),
        "{replies:?}"
    );
    assert_eq!(out.local_ops.len(), 2);
    assert!(out.local_ops.iter().all(|o| o.unit_end == 3), "{:?}", out.local_ops);
}

#[test]
fn ops_encoded_before_units_still_decode() {
    // Version 1 of the op encoding: the same fields without `unit_end`.
    #[derive(serde::Serialize)]
    struct OpV1 {
        origin: ReplicaId,
        seq: u64,
        hlc: Hlc,
        deps: VersionVector,
        key: bytes::Bytes,
        delta: Delta,
    }
    let v1 = OpV1 {
        origin: 1,
        seq: 7,
        hlc: Hlc::new(NOW, 0),
        deps: VersionVector::new(),
        key: b("k"),
        delta: Delta::default(),
    };
    let bytes = concord_core::codec::encode(1, &v1);
    let op = Op::decode(&bytes).unwrap();
    assert_eq!((op.origin, op.seq, op.unit_end), (1, 7, 0));
    let again = Op::decode(&op.encode()).unwrap();
    assert_eq!(again, op);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Two replicas write units (MSETs of 2–5 keys, one value per unit) and single writes on the
    /// same keys; a third receives every op in a random order, each op possibly twice. After
    /// every delivery, each unit is visible whole or not at all — unless a later write on one of
    /// its keys, already applied, hides it; at the end everything is applied.
    #[test]
    fn units_are_applied_whole_in_any_delivery_order(
        units in proptest::collection::vec((0usize..2, 2usize..6), 1..5),
        order in proptest::collection::vec(any::<proptest::sample::Index>(), 0..60),
        dups in proptest::collection::vec(any::<bool>(), 0..60),
    ) {
        let mut writers = [engine(1), engine(2)];
        let mut rx = engine(3);
        let mut inflight: Vec<Op> = Vec::new();
        // Each unit writes its own keys (so no later write hides it) with its own value.
        let mut checks: Vec<(Vec<String>, String)> = Vec::new();
        for (u, (w, n)) in units.iter().enumerate() {
            let keys: Vec<String> = (0..*n).map(|k| format!("u{u}k{k}")).collect();
            let value = format!("v{u}");
            let mut out = Output::default();
            writers[*w]
                .execute(Request::MSet(keys.iter().map(|k| (b(k), b(&value))).collect()), NOW, &mut out)
                .unwrap();
            // The writer's other replica sees it too (so later units depend on it sometimes).
            let other = 1 - *w;
            let mut o2 = Output::default();
            for op in &out.local_ops {
                writers[other].receive(op.clone(), NOW, &mut o2);
            }
            inflight.extend(out.local_ops);
            checks.push((keys, value));
        }
        let mut step = 0;
        while !inflight.is_empty() {
            let pick = order.get(step).map(|i| i.index(inflight.len())).unwrap_or(0);
            let dup = dups.get(step).copied().unwrap_or(false);
            step += 1;
            let op = if dup { inflight[pick].clone() } else { inflight.swap_remove(pick) };
            let mut out = Output::default();
            rx.receive(op, NOW, &mut out);
            prop_assert!(!out.catch_up);
            for (keys, value) in &checks {
                prop_assert!(
                    all_or_none(&mut rx, keys, value).is_some(),
                    "unit {keys:?} partly visible after delivery {step}"
                );
            }
        }
        for (keys, value) in &checks {
            prop_assert_eq!(all_or_none(&mut rx, keys, value), Some(true), "unit {:?} not applied", keys);
        }
        prop_assert_eq!(rx.buffered_ops(), 0);
    }
}
