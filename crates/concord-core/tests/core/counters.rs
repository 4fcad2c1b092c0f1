//! Counter resets, case by case (found by review): a reset removes exactly the increments it
//! observed, whatever the order, decrements, expiry, type changes and garbage collection.

use bytes::Bytes;
use concord_core::*;
use std::collections::BTreeMap;

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_string())
}
fn regions(n: usize) -> BTreeMap<ReplicaId, String> {
    let names = ["us", "eu", "ap"];
    (0..n).map(|i| (i as ReplicaId + 1, names[i].to_string())).collect()
}
fn engines(n: usize) -> Vec<Engine> {
    (0..n)
        .map(|i| Engine::new(EngineConfig::new(i as ReplicaId + 1, regions(n))))
        .collect()
}
fn exec(e: &mut Engine, req: Request, now: u64) -> (Result<Reply, CommandError>, Vec<Op>) {
    let mut out = Output::default();
    let r = e.execute(req, now, &mut out);
    (r, out.local_ops)
}
fn recv(e: &mut Engine, ops: &[Op], now: u64) {
    for op in ops {
        let mut out = Output::default();
        e.receive(op.clone(), now, &mut out);
    }
}
fn incr(k: &str, by: i64) -> Request {
    Request::IncrBy { key: b(k), by }
}
fn get(e: &mut Engine, k: &str, now: u64) -> Reply {
    exec(e, Request::Get(b(k)), now).0.unwrap()
}
fn sync_all(es: &mut [Engine]) {
    let vs: Vec<(ReplicaId, VersionVector)> = es.iter().map(|e| (e.replica(), e.applied().clone())).collect();
    for e in es.iter_mut() {
        for (r, v) in &vs {
            e.observe_peer(*r, v);
        }
    }
}

/// Decrements make running totals go down: the later reset is the one that removed the later
/// entry (by seq), not the one with the larger total.
#[test]
fn the_later_reset_wins_by_seq_not_by_total() {
    let mut es = engines(2);
    let (_, a1) = exec(&mut es[0], incr("k", 10), 1);
    recv(&mut es[1], &a1, 2);
    let (_, b1) = exec(&mut es[1], Request::Del(vec![b("k")]), 3);
    recv(&mut es[0], &b1, 4);
    let (_, a2) = exec(&mut es[0], incr("k", -5), 5);
    let (_, a3) = exec(&mut es[0], incr("k", -5), 6);
    recv(&mut es[1], &a2, 7);
    let (_, b2) = exec(&mut es[1], Request::Del(vec![b("k")]), 8); // saw A1, A2
    recv(&mut es[1], &a3, 9);
    recv(&mut es[0], &b2, 9);
    // Only A3 (-5) is concurrent with the last reset.
    assert_eq!(get(&mut es[0], "k", 10), Reply::Bulk(b("-5")));
    assert_eq!(get(&mut es[1], "k", 10), Reply::Bulk(b("-5")));
}

/// INCR turning a string into a counter also supersedes this region's own floors.
#[test]
fn incr_on_a_string_over_an_old_reset_converges() {
    let mut es = engines(2);
    let (_, a1) = exec(&mut es[0], incr("k", 1), 1);
    recv(&mut es[1], &a1, 2);
    let (_, b1) = exec(&mut es[1], Request::Del(vec![b("k")]), 3);
    let set = Request::Set {
        key: b("k"),
        value: b("5"),
        condition: SetCondition::Always,
        expiry: SetExpiry::Clear,
        get: false,
    };
    let (_, a2) = exec(&mut es[0], set, 4);
    recv(&mut es[0], &b1, 5);
    let (r, a3) = exec(&mut es[0], incr("k", 1), 6);
    assert_eq!(r.unwrap(), Reply::Int(6));
    recv(&mut es[1], &a2, 7);
    recv(&mut es[1], &a3, 7);
    assert_eq!(
        es[0].key_state(b"k").map(|s| &s.slots),
        es[1].key_state(b"k").map(|s| &s.slots)
    );
    assert_eq!(get(&mut es[0], "k", 8), Reply::Bulk(b("6")));
    assert_eq!(get(&mut es[1], "k", 8), Reply::Bulk(b("6")));
}

/// An expired counter starts again from zero.
#[test]
fn incr_on_an_expired_counter_starts_from_zero() {
    let mut es = engines(1);
    exec(&mut es[0], incr("k", 5), 1).0.unwrap();
    exec(&mut es[0], Request::Expire { key: b("k"), in_ms: 10 }, 2)
        .0
        .unwrap();
    let (r, _) = exec(&mut es[0], incr("k", 1), 100);
    assert_eq!(r.unwrap(), Reply::Int(1));
    assert_eq!(get(&mut es[0], "k", 101), Reply::Bulk(b("1")));
}

/// Running totals are wide: a value that fits is never refused because of what was reset.
#[test]
fn running_totals_do_not_overflow_after_resets() {
    let mut es = engines(1);
    exec(&mut es[0], incr("k", 9_000_000_000_000_000_000), 1).0.unwrap();
    exec(&mut es[0], Request::Del(vec![b("k")]), 2).0.unwrap();
    let (r, _) = exec(&mut es[0], incr("k", 9_000_000_000_000_000_000), 3);
    assert_eq!(r.unwrap(), Reply::Int(9_000_000_000_000_000_000));
    assert_eq!(exec(&mut es[0], incr("k", i64::MAX), 4).0, Err(CommandError::Overflow));
}

/// Collecting a dead floor in one region while another region resets again stays exact.
#[test]
fn garbage_collected_floors_and_a_concurrent_reset() {
    for do_gc in [false, true] {
        let mut es = engines(3);
        let (_, a1) = exec(&mut es[0], incr("k", 10), 1);
        let (_, c1) = exec(&mut es[2], incr("k", 1), 1);
        for e in es.iter_mut() {
            recv(e, &a1, 2);
            recv(e, &c1, 2);
        }
        let (_, b1) = exec(&mut es[1], Request::Del(vec![b("k")]), 3);
        for i in [0, 2] {
            recv(&mut es[i], &b1, 4);
        }
        let (_, c2) = exec(&mut es[2], incr("k", 1), 5);
        for i in [0, 1] {
            recv(&mut es[i], &c2, 6);
        }
        sync_all(&mut es);
        if do_gc {
            let mut out = Output::default();
            es[0].collect_garbage(&mut out);
            es[0].collect_garbage(&mut out);
        }
        let (_, c3) = exec(&mut es[2], Request::Del(vec![b("k")]), 7);
        let (_, a2) = exec(&mut es[0], incr("k", 1), 7);
        recv(&mut es[0], &c3, 8);
        recv(&mut es[1], &c3, 8);
        recv(&mut es[1], &a2, 8);
        recv(&mut es[2], &a2, 8);
        for (i, e) in es.iter_mut().enumerate() {
            assert_eq!(get(e, "k", 9), Reply::Bulk(b("1")), "replica {i} gc={do_gc}");
        }
    }
}
