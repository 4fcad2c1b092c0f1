//! The commands beyond DESIGN §6 (engine/{strings,keyspace,hashes,sets}.rs): Redis semantics on
//! one replica, and the replicated semantics docs/consistency.md states for concurrent writes.

use super::harness::{b, set, Cluster};
use bytes::Bytes;
use concord_core::*;
use proptest::prelude::*;

/// A random write of this family (with plain SET/SADD/DEL among them) on a few keys. Kept here,
/// not in the shared harness, so the harness's own command model stays independent of it.
fn random_breadth_request(c: &mut Cluster) -> Request {
    fn pick<T: Copy>(c: &mut Cluster, xs: &[T]) -> T {
        xs[c.rng.below(xs.len() as u64) as usize]
    }
    let key = |c: &mut Cluster| Bytes::from(format!("{}{}", pick(c, &["s:", "p:", "l:", "x"]), c.rng.below(3)));
    let set_key = |c: &mut Cluster| Bytes::from(format!("s:set{}", c.rng.below(3)));
    let val = |c: &mut Cluster| Bytes::from(format!("v{}", c.rng.below(1000)));
    let num = |c: &mut Cluster| Bytes::from(format!("{}", c.rng.below(5)));
    let k = key(c);
    match c.rng.below(100) {
        0..=9 => Request::SetRange {
            key: k,
            offset: c.rng.below(6),
            value: val(c),
        },
        10..=19 => Request::IncrByFloat {
            key: k,
            by: Bytes::from(format!("{}.5", c.rng.below(3))),
        },
        20..=24 => Request::GetEx {
            key: k,
            expiry: pick(
                c,
                &[
                    SetExpiry::Clear,
                    SetExpiry::InMs(1_000_000),
                    SetExpiry::AtMs(2_000_000),
                    SetExpiry::AtMs(1), // in the past: deletes
                ],
            ),
        },
        25..=29 => Request::MSetNx(vec![(k, val(c)), (key(c), val(c))]),
        30..=37 => Request::ExpireWhen {
            key: k,
            deadline: if c.rng.chance(50) {
                Deadline::InMs(c.rng.below(1_000_000) as i64)
            } else {
                Deadline::AtMs(1_000_000 + c.rng.below(1_000_000) as i64)
            },
            condition: pick(
                c,
                &[
                    ExpireCondition::Always,
                    ExpireCondition::IfNone,
                    ExpireCondition::IfSome,
                    ExpireCondition::IfLater,
                    ExpireCondition::IfSooner,
                ],
            ),
        },
        38..=49 => Request::SAdd {
            key: set_key(c),
            members: vec![Bytes::from(format!("m{}", c.rng.below(4)))],
        },
        50..=57 => Request::SPop {
            key: set_key(c),
            count: Some(c.rng.below(3)),
        },
        58..=65 => Request::SMove {
            source: set_key(c),
            destination: set_key(c),
            member: Bytes::from(format!("m{}", c.rng.below(4))),
        },
        66..=71 => Request::SCombineStore {
            op: pick(c, &[SetOp::Inter, SetOp::Union, SetOp::Diff]),
            destination: set_key(c),
            keys: vec![set_key(c), set_key(c)],
        },
        72..=79 => Request::HIncrByFloat {
            key: Bytes::from(format!("h:{}", c.rng.below(2))),
            field: Bytes::from(format!("f{}", c.rng.below(2))),
            by: num(c),
        },
        80..=82 => Request::SetBit {
            key: k,
            offset: c.rng.below(24),
            value: c.rng.chance(70),
        },
        83 => Request::BitField {
            key: k,
            ops: vec![
                BitFieldOp::Overflow(pick(c, &[BitOverflow::Wrap, BitOverflow::Sat, BitOverflow::Fail])),
                BitFieldOp::IncrBy {
                    ty: BitType {
                        signed: c.rng.chance(50),
                        bits: 4,
                    },
                    offset: c.rng.below(16),
                    by: c.rng.below(20) as i64 - 10,
                },
            ],
        },
        84 => Request::BitOp {
            op: pick(c, &[BitOp::And, BitOp::Or, BitOp::Xor]),
            destination: k,
            keys: vec![key(c), key(c)],
        },
        85..=86 => Request::Rename {
            source: k,
            destination: key(c),
            if_absent: c.rng.chance(50),
        },
        87 => Request::Copy {
            source: set_key(c),
            destination: set_key(c),
            replace: true,
        },
        88..=92 => Request::Set {
            key: k,
            value: num(c),
            condition: SetCondition::Always,
            expiry: SetExpiry::Clear,
            get: false,
        },
        _ => Request::Del(vec![k]),
    }
}

/// Random writes of this family at random replicas, deliveries in random order with duplicates
/// (and garbage collection when `purge`), then: identical states (or, with purge, identical
/// digests) everywhere, and no acknowledged write lost.
fn breadth_converges(seed: u64, replicas: usize, steps: usize, purge: bool) {
    let mut c = Cluster::new(replicas, seed);
    c.purge_enabled = purge;
    for _ in 0..steps {
        if c.rng.chance(55) {
            let i = c.rng.below(replicas as u64) as usize;
            let req = random_breadth_request(&mut c);
            let _ = c.exec(i, req); // WRONGTYPE, no such key etc. make no op
        } else {
            for _ in 0..c.rng.below(4) {
                c.deliver_one();
            }
        }
        if purge && c.rng.chance(5) {
            let i = c.rng.below(replicas as u64) as usize;
            c.gc(i);
        }
    }
    c.deliver_all();
    let ctx = format!("seed {seed}, {replicas} replicas, {steps} steps, purge {purge}");
    if purge {
        for _ in 0..3 {
            for i in 0..replicas {
                c.gc(i);
            }
        }
        // Purge happens at different times in different replicas: compare digests, which skip
        // tombstone-only keys.
        let d0 = c.engines[0].state_digest();
        for (i, e) in c.engines.iter().enumerate() {
            assert_eq!(
                e.state_digest(),
                d0,
                "{ctx}: replica {i}'s data differs from replica 0's"
            );
        }
    } else {
        c.assert_converged(&ctx);
    }
    c.check_no_lost_writes(&ctx);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn breadth_commands_converge(seed in any::<u64>(), n in 3usize..=5) { breadth_converges(seed, n, 400, false) }

    #[test]
    fn breadth_commands_converge_with_purge(seed in any::<u64>(), n in 3usize..=5) { breadth_converges(seed, n, 400, true) }
}

fn sadd(key: &str, members: &[&str]) -> Request {
    Request::SAdd {
        key: b(key),
        members: members.iter().map(|m| b(m)).collect(),
    }
}

fn members(c: &mut Cluster, i: usize, key: &str) -> Vec<Bytes> {
    match c.exec(i, Request::SMembers(b(key))).unwrap() {
        Reply::Set(items) => items
            .into_iter()
            .map(|r| match r {
                Reply::Bulk(m) => m,
                other => panic!("{other:?}"),
            })
            .collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn strings_on_one_replica() {
    let mut c = Cluster::new(1, 1);
    let setrange = |key: &str, offset, value: &str| Request::SetRange {
        key: b(key),
        offset,
        value: b(value),
    };
    assert_eq!(c.exec(0, setrange("a", 5, "foo")).unwrap(), Reply::Int(8));
    assert_eq!(
        c.exec(0, Request::Get(b("a"))).unwrap(),
        Reply::Bulk(b("\0\0\0\0\0foo"))
    );
    assert_eq!(c.exec(0, setrange("nothing", 3, "")).unwrap(), Reply::Int(0));
    assert_eq!(c.exec(0, Request::Exists(vec![b("nothing")])).unwrap(), Reply::Int(0));
    let getrange = |start, end| Request::GetRange {
        key: b("a"),
        start,
        end,
    };
    assert_eq!(c.exec(0, getrange(-3, -1)).unwrap(), Reply::Bulk(b("foo")));
    assert_eq!(c.exec(0, getrange(10, 20)).unwrap(), Reply::Bulk(b("")));

    // INCRBYFLOAT on a counter turns it into the string of the sum, keeping the TTL.
    c.exec(0, Request::IncrBy { key: b("n"), by: 10 }).unwrap();
    c.exec(
        0,
        Request::Expire {
            key: b("n"),
            in_ms: 100_000,
        },
    )
    .unwrap();
    let incr = |by: &str| Request::IncrByFloat { key: b("n"), by: b(by) };
    assert_eq!(c.exec(0, incr("0.5")).unwrap(), Reply::Bulk(b("10.5")));
    assert_eq!(c.exec(0, incr("5.0e3")).unwrap(), Reply::Bulk(b("5010.5")));
    assert!(matches!(
        c.exec(0, Request::Ttl { key: b("n"), millis: false }).unwrap(),
        Reply::Int(t) if t > 0
    ));
    assert_eq!(c.exec(0, incr("x")), Err(CommandError::NotFloat));
    // No exponent in the reply, as Redis's human format: 1e308 prints as 309 digits.
    assert!(matches!(c.exec(0, incr("1e308")).unwrap(), Reply::Bulk(v) if v.len() == 309));
    assert_eq!(c.exec(0, incr("1e308")), Err(CommandError::NanOrInfinity));
    c.exec(0, sadd("s", &["x"])).unwrap();
    assert_eq!(
        c.exec(
            0,
            Request::IncrByFloat {
                key: b("s"),
                by: b("1")
            }
        ),
        Err(CommandError::WrongType)
    );

    // MSETNX: all or nothing.
    let msetnx = |pairs: &[(&str, &str)]| Request::MSetNx(pairs.iter().map(|(k, v)| (b(k), b(v))).collect());
    assert_eq!(c.exec(0, msetnx(&[("m1", "1"), ("m2", "2")])).unwrap(), Reply::Int(1));
    assert_eq!(c.exec(0, msetnx(&[("m2", "x"), ("m3", "3")])).unwrap(), Reply::Int(0));
    assert_eq!(c.exec(0, Request::Get(b("m3"))).unwrap(), Reply::Nil);

    // GETEX with an expiry in the past deletes the key after reading it.
    c.exec(0, set("g", "v")).unwrap();
    let getex = |expiry| Request::GetEx { key: b("g"), expiry };
    assert_eq!(c.exec(0, getex(SetExpiry::InMs(60_000))).unwrap(), Reply::Bulk(b("v")));
    let at = c.clocks[0] as i64 + 60_000; // the harness's clock when GETEX ran
    assert_eq!(
        c.exec(
            0,
            Request::ExpireTime {
                key: b("g"),
                millis: true
            }
        )
        .unwrap(),
        Reply::Int(at)
    );
    assert_eq!(c.exec(0, getex(SetExpiry::AtMs(1))).unwrap(), Reply::Bulk(b("v")));
    assert_eq!(c.exec(0, Request::Get(b("g"))).unwrap(), Reply::Nil);
}

#[test]
fn conditional_expiry_on_one_replica() {
    let mut c = Cluster::new(1, 2);
    let expire = |at: i64, condition| Request::ExpireWhen {
        key: b("k"),
        deadline: Deadline::AtMs(at),
        condition,
    };
    assert_eq!(
        c.exec(0, expire(5_000_000, ExpireCondition::Always)).unwrap(),
        Reply::Int(0)
    );
    c.exec(0, set("k", "v")).unwrap();
    assert_eq!(
        c.exec(0, expire(5_000_000, ExpireCondition::IfSome)).unwrap(),
        Reply::Int(0)
    );
    // No expiry counts as infinite: GT never applies, LT always does.
    assert_eq!(
        c.exec(0, expire(5_000_000, ExpireCondition::IfLater)).unwrap(),
        Reply::Int(0)
    );
    assert_eq!(
        c.exec(0, expire(5_000_000, ExpireCondition::IfSooner)).unwrap(),
        Reply::Int(1)
    );
    assert_eq!(
        c.exec(0, expire(6_000_000, ExpireCondition::IfNone)).unwrap(),
        Reply::Int(0)
    );
    assert_eq!(
        c.exec(0, expire(4_000_000, ExpireCondition::IfLater)).unwrap(),
        Reply::Int(0)
    );
    assert_eq!(
        c.exec(0, expire(6_000_000, ExpireCondition::IfLater)).unwrap(),
        Reply::Int(1)
    );
    assert_eq!(
        c.exec(
            0,
            Request::ExpireTime {
                key: b("k"),
                millis: false
            }
        )
        .unwrap(),
        Reply::Int(6_000)
    );
    // A deadline already passed deletes the key.
    assert_eq!(c.exec(0, expire(1, ExpireCondition::Always)).unwrap(), Reply::Int(1));
    assert_eq!(
        c.exec(
            0,
            Request::ExpireTime {
                key: b("k"),
                millis: false
            }
        )
        .unwrap(),
        Reply::Int(-2)
    );
}

/// `EXPIRE k … NX` in two regions at once: both succeed locally; the key ends with the later
/// deadline everywhere (concurrent expiries keep the longer lifetime).
#[test]
fn concurrent_conditional_expiries_keep_the_later_deadline() {
    let mut c = Cluster::new(2, 3);
    c.exec(0, set("k", "v")).unwrap();
    c.deliver_all();
    let nx = |at| Request::ExpireWhen {
        key: b("k"),
        deadline: Deadline::AtMs(at),
        condition: ExpireCondition::IfNone,
    };
    assert_eq!(c.exec(0, nx(7_000_000)).unwrap(), Reply::Int(1));
    assert_eq!(c.exec(1, nx(9_000_000)).unwrap(), Reply::Int(1));
    c.deliver_all();
    c.assert_converged("concurrent EXPIRE NX");
    for i in 0..2 {
        assert_eq!(
            c.exec(
                i,
                Request::ExpireTime {
                    key: b("k"),
                    millis: true
                }
            )
            .unwrap(),
            Reply::Int(9_000_000)
        );
    }
}

/// `INCRBYFLOAT` is a register write of the result: two regions incrementing concurrently keep one
/// result (the later HLC), and the other is in the conflict log — not lost silently.
#[test]
fn concurrent_incrbyfloat_keeps_one_result_and_logs_the_other() {
    let mut c = Cluster::new(2, 4);
    c.exec(0, set("l:f", "1")).unwrap();
    c.deliver_all();
    c.exec(
        0,
        Request::IncrByFloat {
            key: b("l:f"),
            by: b("0.5"),
        },
    )
    .unwrap();
    c.exec(
        1,
        Request::IncrByFloat {
            key: b("l:f"),
            by: b("2"),
        },
    )
    .unwrap();
    c.deliver_all();
    c.assert_converged("concurrent INCRBYFLOAT");
    let v0 = c.exec(0, Request::Get(b("l:f"))).unwrap();
    assert!(v0 == Reply::Bulk(b("1.5")) || v0 == Reply::Bulk(b("3")), "{v0:?}");
    assert!(
        c.conflicts.iter().any(|r| r.key == b("l:f")),
        "the losing increment is in the conflict log"
    );
}

/// `SPOP` in two regions at once may return the same member in both (at-least-once); the set
/// converges without it.
#[test]
fn concurrent_spop_can_return_the_same_member_and_converges() {
    let mut c = Cluster::new(2, 5);
    c.exec(0, sadd("s", &["only"])).unwrap();
    c.deliver_all();
    let pop = Request::SPop {
        key: b("s"),
        count: None,
    };
    assert_eq!(c.exec(0, pop.clone()).unwrap(), Reply::Bulk(b("only")));
    assert_eq!(c.exec(1, pop).unwrap(), Reply::Bulk(b("only")));
    c.deliver_all();
    c.assert_converged("concurrent SPOP");
    for i in 0..2 {
        assert!(members(&mut c, i, "s").is_empty());
    }
}

/// `SMOVE` is an add to the destination and a remove from the source, replicated as one unit: a
/// region that has received only the first op shows neither change, then both at once.
#[test]
fn smove_is_one_unit_never_in_both_sets_nor_in_neither() {
    let mut c = Cluster::new(2, 6);
    c.exec(0, sadd("src", &["m", "other"])).unwrap();
    c.deliver_all();
    assert_eq!(
        c.exec(
            0,
            Request::SMove {
                source: b("src"),
                destination: b("dst"),
                member: b("m"),
            },
        )
        .unwrap(),
        Reply::Int(1)
    );
    // Deliver the two ops to replica 1 in order, looking in between.
    let ops: Vec<Op> = c
        .inflight
        .drain(..)
        .filter(|(to, _)| *to == 1)
        .map(|(_, op)| op)
        .collect();
    let mut ops = ops;
    ops.sort_by_key(|op| op.seq);
    ops.dedup_by_key(|op| op.seq);
    assert_eq!(ops.len(), 2);
    assert!(
        ops.iter().all(|o| o.unit_end == ops[1].seq),
        "SMOVE's two ops are one unit"
    );
    // The first op alone changes nothing visible: the unit waits for its second op.
    let mut out = Output::default();
    c.engines[1].receive(ops[0].clone(), c.clocks[1], &mut out);
    assert_eq!(members(&mut c, 1, "dst"), Vec::<Bytes>::new());
    assert_eq!(members(&mut c, 1, "src"), vec![b("m"), b("other")]);
    c.engines[1].receive(ops[1].clone(), c.clocks[1], &mut out);
    assert_eq!(members(&mut c, 1, "dst"), vec![b("m")]);
    assert_eq!(members(&mut c, 1, "src"), vec![b("other")]);
    c.deliver_all();
    c.assert_converged("SMOVE");
}

/// `SUNIONSTORE` replaces the destination; an `SADD` to it in another region at the same time
/// survives (add-wins), and every region ends with the same set.
#[test]
fn store_replaces_the_destination_and_a_concurrent_add_survives() {
    let mut c = Cluster::new(2, 7);
    c.exec(0, sadd("a", &["1", "2"])).unwrap();
    c.exec(0, sadd("b", &["3"])).unwrap();
    c.exec(0, sadd("d", &["old"])).unwrap();
    c.deliver_all();
    let store = Request::SCombineStore {
        op: SetOp::Union,
        destination: b("d"),
        keys: vec![b("a"), b("b")],
    };
    assert_eq!(c.exec(0, store).unwrap(), Reply::Int(3));
    c.exec(1, sadd("d", &["concurrent"])).unwrap();
    c.deliver_all();
    c.assert_converged("SUNIONSTORE");
    for i in 0..2 {
        assert_eq!(members(&mut c, i, "d"), vec![b("1"), b("2"), b("3"), b("concurrent")]);
    }
    // Set algebra on one replica.
    let combine = |op| Request::SCombine {
        op,
        keys: vec![b("d"), b("a")],
    };
    assert_eq!(
        c.exec(0, combine(SetOp::Inter)).unwrap(),
        Reply::Set(vec![Reply::Bulk(b("1")), Reply::Bulk(b("2"))])
    );
    assert_eq!(
        c.exec(0, combine(SetOp::Diff)).unwrap(),
        Reply::Set(vec![Reply::Bulk(b("3")), Reply::Bulk(b("concurrent"))])
    );
    assert_eq!(
        c.exec(
            0,
            Request::SInterCard {
                keys: vec![b("d"), b("a")],
                limit: 1
            }
        )
        .unwrap(),
        Reply::Int(1)
    );
}
