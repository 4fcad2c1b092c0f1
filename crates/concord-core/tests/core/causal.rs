//! Causal order: an op from a replica that had seen another op is not visible anywhere before it.

use super::harness::{set, Cluster};
use bytes::Bytes;
use concord_core::{Output, Received, Reply, Request};

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
