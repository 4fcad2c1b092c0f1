//! Time to live across regions: concurrent `EXPIRE`s resolve to the longer lifetime (DESIGN §6),
//! and the expiry delete never cuts a lifetime another region extended concurrently.

use super::harness::{b, set, Cluster};
use concord_core::*;

fn expire(key: &str, in_ms: i64) -> Request {
    Request::Expire { key: b(key), in_ms }
}

/// Run `rounds` rounds of "learn every vector, collect garbage" on every replica (each GC round
/// takes two calls), as the node's maintenance does.
fn settle(c: &mut Cluster, rounds: usize) {
    for _ in 0..rounds {
        for i in 0..c.engines.len() {
            c.gc(i);
        }
    }
}

fn expire_all(c: &mut Cluster) -> usize {
    let mut n = 0;
    for i in 0..c.engines.len() {
        let mut out = Output::default();
        n += c.engines[i].expire_step(c.clocks[i], 1_000, &mut out);
        c.absorb_output(i, out);
    }
    n
}

#[test]
fn a_shorter_expiry_firing_first_does_not_cut_a_concurrent_longer_expire() {
    let mut c = Cluster::new(2, 7);
    c.exec(0, set("k", "v")).unwrap();
    c.deliver_all();
    settle(&mut c, 2);
    let t0 = 2_000_000;
    c.clocks = vec![t0, t0];
    // Concurrent: us gives 10 s, eu gives 100 s. Neither has seen the other's.
    c.exec(0, expire("k", 10_000)).unwrap();
    c.exec(1, expire("k", 100_000)).unwrap();
    // us reaches its own expiry first and runs its periodic work, knowing eu's vector (which
    // carries eu's EXPIRE, not yet delivered) — as acks and heartbeats would tell it.
    c.clocks = vec![t0 + 20_000, t0 + 20_000];
    settle(&mut c, 3);
    expire_all(&mut c);
    c.deliver_all();
    // The longer lifetime wins everywhere: the key is alive with eu's expiry in both regions.
    for i in 0..2 {
        assert_eq!(
            c.exec(i, Request::Get(b("k"))).unwrap(),
            Reply::Bulk(b("v")),
            "region {i} lost the key to the shorter of two concurrent EXPIREs"
        );
        let ttl = c
            .exec(
                i,
                Request::Ttl {
                    key: b("k"),
                    millis: true,
                },
            )
            .unwrap();
        assert!(
            matches!(ttl, Reply::Int(ms) if ms > 70_000 && ms <= 100_000),
            "region {i}: TTL {ttl:?}, expected eu's 100 s lifetime"
        );
    }
    // Once the longer lifetime has passed, the key is deleted once, everywhere, and the regions
    // converge.
    c.clocks = vec![t0 + 200_000, t0 + 200_000];
    settle(&mut c, 3);
    let deletes = expire_all(&mut c);
    assert_eq!(
        deletes, 1,
        "exactly one region (eu, the winning expiry's writer) deletes"
    );
    c.deliver_all();
    for i in 0..2 {
        assert_eq!(c.exec(i, Request::Get(b("k"))).unwrap(), Reply::Nil);
    }
    assert_eq!(c.engines[0].key_state(b"k"), c.engines[1].key_state(b"k"));
    assert_eq!(c.engines[0].state_digest(), c.engines[1].state_digest());
}

#[test]
fn a_field_written_concurrently_with_the_expiry_delete_keeps_the_expiry() {
    let mut c = Cluster::new(2, 11);
    let t0 = 2_000_000;
    c.clocks = vec![t0, t0];
    let hset = |f: &str, v: &str| Request::HSet {
        key: b("h"),
        pairs: vec![(b(f), b(v))],
    };
    c.exec(0, hset("f", "v")).unwrap();
    c.exec(0, expire("h", 10_000)).unwrap();
    c.deliver_all();
    settle(&mut c, 2);
    // eu, just before the expiry, adds a field (the TTL stays); us, just after, deletes the
    // expired key without having seen that write.
    c.clocks = vec![t0 + 10_500, t0 + 9_000];
    c.exec(1, hset("g", "w")).unwrap();
    let held: Vec<_> = std::mem::take(&mut c.inflight);
    assert_eq!(expire_all(&mut c), 1, "us deletes its expired key");
    c.inflight.extend(held);
    c.deliver_all();
    // The field was added under the key's TTL: it must not outlive it.
    c.clocks = vec![t0 + 20_000, t0 + 20_000];
    for i in 0..2 {
        assert_eq!(
            c.exec(i, Request::Exists(vec![b("h")])).unwrap(),
            Reply::Int(0),
            "region {i}: a field written under a TTL outlived it"
        );
    }
    settle(&mut c, 3);
    expire_all(&mut c);
    c.deliver_all();
    assert_eq!(c.engines[0].key_state(b"h"), c.engines[1].key_state(b"h"));
}
