//! No resurrection: delete, late old ops, purge once causally stable → the key stays deleted.

use super::harness::{b, set, Cluster};
use concord_core::{Output, Reply, Request};

#[test]
fn late_duplicates_after_purge_do_not_resurrect() {
    let mut c = Cluster::new(3, 11);
    c.exec(0, set("k", "v")).unwrap();
    c.exec(
        0,
        Request::SAdd {
            key: b("s"),
            members: vec![b("x")],
        },
    )
    .unwrap();
    let old: Vec<_> = c.inflight.clone();
    c.deliver_all();
    c.exec(1, Request::Del(vec![b("k")])).unwrap();
    c.exec(
        1,
        Request::SRem {
            key: b("s"),
            members: vec![b("x")],
        },
    )
    .unwrap();
    c.deliver_all();
    // Purge everywhere (two rounds: open, close).
    for _ in 0..2 {
        for i in 0..3 {
            c.gc(i);
        }
    }
    for i in 0..3 {
        assert!(
            c.engines[i].key_state(b"k").is_none(),
            "tombstone of k not purged at {i}"
        );
        assert!(c.engines[i].key_state(b"s").is_none(), "empty set s not purged at {i}");
    }
    // The old SET and SADD arrive again, late.
    for (to, op) in old {
        let mut out = Output::default();
        c.engines[to].receive(op, 9_000_000, &mut out);
    }
    for i in 0..3 {
        assert_eq!(c.exec(i, Request::Get(b("k"))).unwrap(), Reply::Nil);
        assert_eq!(c.exec(i, Request::SCard(b("s"))).unwrap(), Reply::Int(0));
    }
}

/// A write concurrent with a delete must reach a replica before that replica purges the
/// tombstone, or under `lww` the older write would come back.
#[test]
fn purge_waits_for_ops_concurrent_with_the_tombstone() {
    let mut c = Cluster::new(3, 12);
    c.clocks = vec![1_000, 2_000, 1_500];
    c.exec(0, set("l:k", "v1")).unwrap();
    c.deliver_all();
    // Replica 2 writes concurrently with replica 1's later delete.
    c.exec(2, set("l:k", "v2")).unwrap();
    let concurrent: Vec<_> = c.inflight.drain(..).collect();
    c.exec(1, Request::Del(vec![b("l:k")])).unwrap();
    c.deliver_all();
    // Replica 2's SET reached replica 1 but not yet replica 0.
    for (to, op) in concurrent.iter().filter(|(to, _)| *to == 1) {
        let mut out = Output::default();
        c.engines[*to].receive(op.clone(), 10_000, &mut out);
    }
    // Replica 0 tries to purge with what it knows: it must not, since replica 2 reported a seq
    // replica 0 has not applied.
    for _ in 0..3 {
        c.gc(0);
    }
    assert!(
        c.engines[0].key_state(b"l:k").is_some(),
        "purged before a concurrent op arrived"
    );
    for (to, op) in concurrent.into_iter().filter(|(to, _)| *to == 0) {
        let mut out = Output::default();
        c.engines[to].receive(op, 10_000, &mut out);
    }
    for i in 0..3 {
        assert_eq!(
            c.exec(i, Request::Get(b("l:k"))).unwrap(),
            Reply::Nil,
            "deleted key came back at {i}"
        );
    }
}
