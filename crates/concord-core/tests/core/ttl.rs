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

/// A key that expired and was deleted everywhere keeps its expiry entries (the expiry delete
/// leaves them, see `Engine::expire_step`) until garbage collection purges the dead key, at each
/// region's own time. A write made after one region purged it cannot list those entries; before
/// the fix, a region that had not purged yet kept the old (past) expiry under the new value:
/// `GET` answered the value in one region and nil in the other, with equal applied vectors, and
/// anti-entropy "repaired" the key. (Found by `anti_entropy_repairs_nothing_in_a_correct_cluster`,
/// seeds 14351746375258475686 and 12896339185479149864.)
#[test]
fn a_write_after_one_region_purged_an_expired_key_carries_no_old_expiry() {
    let mut c = Cluster::new(2, 3);
    c.purge_enabled = true;
    let t0 = 2_000_000;
    c.clocks = vec![t0, t0];
    c.exec(0, set("k", "v1")).unwrap();
    c.exec(0, expire("k", 100)).unwrap();
    c.deliver_all();
    settle(&mut c, 2);
    c.clocks = vec![t0 + 1_000, t0 + 1_000];
    assert_eq!(expire_all(&mut c), 1, "us deletes its expired key");
    c.deliver_all();
    // us purges the dead key; eu has not collected yet and still holds its expiry entry.
    for _ in 0..2 {
        c.gc(0);
    }
    assert!(c.engines[0].key_state(b"k").is_none(), "us purged the dead key");
    assert!(
        c.engines[1]
            .key_state(b"k")
            .is_some_and(|st| st.entries(&Slot::Expiry).is_some()),
        "eu still holds the dead key's expiry"
    );
    c.exec(0, set("k", "v2")).unwrap();
    c.deliver_all();
    for i in 0..2 {
        assert_eq!(
            c.exec(i, Request::Get(b("k"))).unwrap(),
            Reply::Bulk(b("v2")),
            "region {i}: a value written after the purge inherited the dead key's expiry"
        );
    }
    c.assert_converged("after the write");
    assert_eq!(c.engines[0].state_digest(), c.engines[1].state_digest());
    c.check_no_lost_writes("after the write");
}

/// `CONCORD.RESOLVE` on a key that expired and was deleted starts from empty, like every other
/// write on a dead key: before, it kept the dead key's (past) expiry, so the resolved value was
/// expired the moment it was written; and a region applying it, not knowing whether its writer
/// had purged the key, could not tell which expiry entries the write superseded.
#[test]
fn resolve_on_an_expired_and_deleted_key_carries_no_old_expiry() {
    let mut c = Cluster::new(2, 5);
    let t0 = 2_000_000;
    c.clocks = vec![t0, t0];
    c.exec(0, set("k", "v1")).unwrap();
    c.exec(0, expire("k", 100)).unwrap();
    c.deliver_all();
    settle(&mut c, 2);
    c.clocks = vec![t0 + 1_000, t0 + 1_000];
    assert_eq!(expire_all(&mut c), 1);
    c.deliver_all();
    let context = c.engines[1].key_state(b"k").expect("dead key").ctx.clone();
    c.exec(
        1,
        Request::Resolve {
            key: b("k"),
            context,
            value: b("v2"),
        },
    )
    .unwrap();
    c.deliver_all();
    for i in 0..2 {
        assert_eq!(
            c.exec(i, Request::Get(b("k"))).unwrap(),
            Reply::Bulk(b("v2")),
            "region {i}: the resolved value inherited the dead key's expiry"
        );
    }
    c.assert_converged("after the resolve");
}

/// The history checker's side: a `PEXPIRE` concurrent with a `DEL` of the key outlives the
/// data in no region (the key is dead, its expiry is metadata that garbage collection drops once
/// stable, docs/replication.md), and a later write that makes the key again starts from empty.
/// The checker must not call that expiry lost. (Seed 1096493031771857541 of the anti-entropy
/// test failed on it.)
#[test]
fn an_expire_concurrent_with_a_delete_is_purged_with_the_dead_key() {
    let mut c = Cluster::new(2, 9);
    c.purge_enabled = true;
    c.exec(0, set("k", "v")).unwrap();
    c.deliver_all();
    c.exec(0, Request::Del(vec![b("k")])).unwrap();
    c.exec(1, expire("k", 60_000)).unwrap();
    c.deliver_all();
    settle(&mut c, 3);
    for i in 0..2 {
        assert!(c.engines[i].key_state(b"k").is_none(), "region {i} purged the dead key");
    }
    c.exec(0, Request::IncrBy { key: b("k"), by: 2 }).unwrap();
    c.deliver_all();
    c.assert_converged("after the write");
    for i in 0..2 {
        assert_eq!(c.exec(i, Request::Get(b("k"))).unwrap(), Reply::Bulk(b("2")));
        assert_eq!(
            c.exec(
                i,
                Request::Ttl {
                    key: b("k"),
                    millis: true
                }
            )
            .unwrap(),
            Reply::Int(-1)
        );
    }
    c.check_no_lost_writes("after the write");
}
