//! Causal order: an op from a replica that had seen another op is not visible anywhere before it.

use super::harness::{set, Cluster};
use bytes::Bytes;
use concord_core::{Output, Received, Reply, Request, VersionVector};

fn get(key: &str) -> Request {
    Request::Get(Bytes::from(key.to_string()))
}

#[test]
fn reply_is_never_visible_before_question() {
    let mut c = Cluster::new(3, 1);
    c.exec(0, set("question", "anyone up?")).unwrap();
    let q = c.inflight.iter().find(|(to, _)| *to == 1).unwrap().1.clone();
    // Only replica 1 sees the question, and answers.
    let mut out = Output::default();
    assert_eq!(
        c.engines[1].receive(q.clone(), 2_000_000, &mut out),
        Received::Applied(1)
    );
    c.exec(1, set("answer", "yes")).unwrap();
    let a = c
        .inflight
        .iter()
        .rev()
        .find(|(to, op)| *to == 2 && op.key == "answer")
        .unwrap()
        .1
        .clone();
    assert!(a.deps.get(1) >= 1, "the answer depends on the question");

    // Replica 2 gets the answer first: it must wait.
    let mut out = Output::default();
    assert_eq!(c.engines[2].receive(a, 2_000_000, &mut out), Received::Buffered);
    assert_eq!(
        c.exec(2, get("answer")).unwrap(),
        Reply::Nil,
        "answer visible before its question"
    );
    assert_eq!(c.exec(2, get("question")).unwrap(), Reply::Nil);

    // The question arrives: both become visible, in order.
    let mut out = Output::default();
    assert_eq!(c.engines[2].receive(q, 2_000_000, &mut out), Received::Applied(2));
    assert_eq!(
        out.remote_ops.iter().map(|o| o.key.clone()).collect::<Vec<_>>(),
        vec!["question", "answer"]
    );
    assert_eq!(c.exec(2, get("answer")).unwrap(), Reply::Bulk(Bytes::from("yes")));
}

#[test]
fn per_origin_fifo_and_bounded_buffer() {
    let mut c = Cluster::new(2, 3);
    for i in 0..5 {
        c.exec(0, set("k", &format!("v{i}"))).unwrap();
    }
    let mut ops: Vec<_> = c.inflight.drain(..).map(|(_, op)| op).collect();
    ops.dedup_by_key(|o| o.seq);
    ops.reverse();
    // A receiver with a buffer of 2: the third out-of-order op overflows and asks for catch-up.
    let mut cfg = c.engines[1].config().clone();
    cfg.max_buffered_ops = 2;
    let mut small = concord_core::Engine::new(cfg);
    let mut out = Output::default();
    assert_eq!(small.receive(ops[0].clone(), 1, &mut out), Received::Buffered);
    assert_eq!(small.receive(ops[1].clone(), 1, &mut out), Received::Buffered);
    assert_eq!(small.receive(ops[2].clone(), 1, &mut out), Received::Overflow);
    assert!(out.catch_up);
    // Catch-up redelivers in order: everything applies, last write wins per FIFO.
    let mut out = Output::default();
    for op in ops.iter().rev() {
        small.receive(op.clone(), 1, &mut out);
    }
    assert_eq!(small.buffered_ops(), 0);
    assert_eq!(small.applied().get(1), 5);
    let mut out = Output::default();
    assert_eq!(
        small.execute(get("k"), 1, &mut out).unwrap(),
        Reply::Bulk(Bytes::from("v4"))
    );
}

#[test]
fn the_causal_buffer_is_bounded_in_bytes_too() {
    // Three out-of-order ops of 100 kB each; the buffer holds 1000 ops but only 250 kB.
    let mut c = Cluster::new(2, 4);
    let big = "x".repeat(100_000);
    for _ in 0..4 {
        c.exec(0, set("k", &big)).unwrap();
    }
    let mut ops: Vec<_> = c.inflight.drain(..).map(|(_, op)| op).collect();
    ops.dedup_by_key(|o| o.seq);
    assert!(ops[0].size_bytes() >= 100_000, "size {}", ops[0].size_bytes());
    let mut cfg = c.engines[1].config().clone();
    cfg.max_buffered_ops = 1_000;
    cfg.max_buffered_bytes = 250_000;
    let mut small = concord_core::Engine::new(cfg);
    let mut out = Output::default();
    assert_eq!(small.receive(ops[3].clone(), 1, &mut out), Received::Buffered);
    assert_eq!(small.receive(ops[2].clone(), 1, &mut out), Received::Buffered);
    assert_eq!(small.buffered_bytes(), ops[3].size_bytes() + ops[2].size_bytes());
    assert_eq!(small.receive(ops[1].clone(), 1, &mut out), Received::Overflow);
    assert!(
        out.catch_up,
        "an overflow by bytes asks for catch-up, as one by count does"
    );
    assert_eq!(small.stats.buffer_overflows, 1);
    // Catch-up redelivers in order: everything applies and the buffer empties, bytes included.
    let mut out = Output::default();
    for op in &ops {
        small.receive(op.clone(), 1, &mut out);
    }
    assert_eq!(small.buffered_ops(), 0);
    assert_eq!(small.buffered_bytes(), 0);
    assert_eq!(small.applied().get(1), 4);
}

#[test]
fn one_op_larger_than_the_byte_bound_still_waits_in_an_empty_buffer() {
    // Otherwise an op bigger than the bound could never be buffered and catch-up would loop.
    let mut c = Cluster::new(2, 5);
    c.exec(0, set("a", "1")).unwrap();
    c.exec(0, set("k", &"y".repeat(10_000))).unwrap();
    let mut ops: Vec<_> = c.inflight.drain(..).map(|(_, op)| op).collect();
    ops.dedup_by_key(|o| o.seq);
    let mut cfg = c.engines[1].config().clone();
    cfg.max_buffered_bytes = 1_000;
    let mut small = concord_core::Engine::new(cfg);
    let mut out = Output::default();
    assert_eq!(small.receive(ops[1].clone(), 1, &mut out), Received::Buffered);
    assert_eq!(small.receive(ops[0].clone(), 1, &mut out), Received::Applied(2));
    assert!(!out.catch_up);
}

#[test]
fn vectors_reported_for_regions_not_in_the_config_are_ignored() {
    let mut c = Cluster::new(2, 6);
    let mut vv = VersionVector::new();
    vv.set(1, 5);
    c.engines[0].observe_peer(42, &vv);
    c.engines[0].observe_peer(0, &vv); // the reserved region-local id is no region either
    assert!(
        c.engines[0].peer_vectors().is_empty(),
        "unknown regions recorded: {:?}",
        c.engines[0].peer_vectors()
    );
    assert_eq!(c.engines[0].stats.unknown_peer_vectors_ignored, 2);
    c.engines[0].observe_peer(2, &vv);
    assert_eq!(c.engines[0].peer_vectors().keys().copied().collect::<Vec<_>>(), vec![2]);
}
