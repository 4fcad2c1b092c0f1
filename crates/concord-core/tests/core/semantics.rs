//! Redis semantics of single-replica commands and the per-policy views of concurrent writes.

use super::harness::{b, set, Cluster};
use bytes::Bytes;
use concord_core::*;

#[test]
fn strings_counters_and_errors() {
    let mut c = Cluster::new(1, 1);
    assert_eq!(c.exec(0, set("a", "1")).unwrap(), Reply::Ok);
    assert_eq!(
        c.exec(0, Request::IncrBy { key: b("a"), by: 5 }).unwrap(),
        Reply::Int(6)
    );
    assert_eq!(c.exec(0, Request::Get(b("a"))).unwrap(), Reply::Bulk(b("6")));
    assert_eq!(
        c.exec(0, Request::Type(b("a"))).unwrap(),
        Reply::Status("string".into())
    );
    assert_eq!(
        c.exec(
            0,
            Request::Append {
                key: b("a"),
                value: b("x")
            }
        )
        .unwrap(),
        Reply::Int(2)
    );
    assert_eq!(
        c.exec(0, Request::IncrBy { key: b("a"), by: 1 }),
        Err(CommandError::NotInteger)
    );
    c.exec(0, set("big", &i64::MAX.to_string())).unwrap();
    assert_eq!(
        c.exec(0, Request::IncrBy { key: b("big"), by: 1 }),
        Err(CommandError::Overflow)
    );
    c.exec(
        0,
        Request::SAdd {
            key: b("s"),
            members: vec![b("x")],
        },
    )
    .unwrap();
    assert_eq!(c.exec(0, Request::Get(b("s"))), Err(CommandError::WrongType));
    assert_eq!(
        c.exec(
            0,
            Request::HSet {
                key: b("s"),
                pairs: vec![(b("f"), b("v"))]
            }
        ),
        Err(CommandError::WrongType)
    );
    // SET NX / XX / GET
    let nx = |v: &str| Request::Set {
        key: b("n"),
        value: b(v),
        condition: SetCondition::IfAbsent,
        expiry: SetExpiry::Clear,
        get: false,
    };
    assert_eq!(c.exec(0, nx("1")).unwrap(), Reply::Ok);
    assert_eq!(c.exec(0, nx("2")).unwrap(), Reply::Nil);
    let getset = Request::Set {
        key: b("n"),
        value: b("3"),
        condition: SetCondition::Always,
        expiry: SetExpiry::Clear,
        get: true,
    };
    assert_eq!(c.exec(0, getset).unwrap(), Reply::Bulk(b("1")));
    // SET replaces any type
    assert_eq!(c.exec(0, set("s", "now-a-string")).unwrap(), Reply::Ok);
    assert_eq!(
        c.exec(0, Request::Type(b("s"))).unwrap(),
        Reply::Status("string".into())
    );
    assert_eq!(c.exec(0, Request::Del(vec![b("s"), b("nope")])).unwrap(), Reply::Int(1));
    assert_eq!(c.exec(0, Request::Exists(vec![b("s")])).unwrap(), Reply::Int(0));
}

#[test]
fn expiry_is_replicated_and_longer_lifetime_wins() {
    let mut c = Cluster::new(2, 2);
    c.clocks = vec![1_000, 1_000];
    let ex = Request::Set {
        key: b("t"),
        value: b("v"),
        condition: SetCondition::Always,
        expiry: SetExpiry::InMs(10_000),
        get: false,
    };
    c.exec(0, ex).unwrap();
    c.deliver_all();
    // Concurrent EXPIRE 5 s on 0 and PERSIST on 1: persist (the longer lifetime) wins.
    c.exec(
        0,
        Request::Expire {
            key: b("t"),
            in_ms: 5_000,
        },
    )
    .unwrap();
    assert_eq!(c.exec(1, Request::Persist(b("t"))).unwrap(), Reply::Int(1));
    c.deliver_all();
    for i in 0..2 {
        assert_eq!(
            c.exec(
                i,
                Request::Ttl {
                    key: b("t"),
                    millis: false
                }
            )
            .unwrap(),
            Reply::Int(-1)
        );
    }
    c.exec(
        0,
        Request::Expire {
            key: b("t"),
            in_ms: 100,
        },
    )
    .unwrap();
    c.deliver_all();
    c.clocks = vec![1_000_000, 1_000_000];
    for i in 0..2 {
        assert_eq!(
            c.exec(i, Request::Get(b("t"))).unwrap(),
            Reply::Nil,
            "expired key visible at {i}"
        );
    }
    // Active expiry: the region that wrote the expiry deletes it, and the delete replicates —
    // once the expiry is settled (every region has it, nothing concurrent can still come), which
    // takes a garbage-collection round (two calls).
    let mut out = Output::default();
    assert_eq!(c.engines[0].expire_step(1_000_000, 100, &mut out), 0, "not settled yet");
    for _ in 0..2 {
        c.gc(0);
    }
    assert_eq!(c.engines[0].expire_step(1_000_000, 100, &mut out), 1);
    assert_eq!(out.local_ops.len(), 1);
    let mut out1 = Output::default();
    assert_eq!(c.engines[1].expire_step(1_000_000, 100, &mut out1), 0);
}

#[test]
fn siblings_policy_keeps_versions_and_resolve_with_context_merges_them() {
    let mut c = Cluster::new(3, 3);
    c.exec(0, set("s:doc", "from-us")).unwrap();
    c.exec(1, set("s:doc", "from-eu")).unwrap();
    c.deliver_all();
    let mut winners = Vec::new();
    for i in 0..3 {
        let view = c.engines[i].describe(b"s:doc", 5_000_000);
        assert_eq!(view.siblings.len(), 2, "replica {i} must hold both siblings");
        winners.push(view.value);
    }
    assert!(
        winners.windows(2).all(|w| w[0] == w[1]),
        "GET winner differs between regions"
    );
    // A client reads siblings + context at replica 2 and resolves.
    let ctx = c.engines[2].key_state(b"s:doc").unwrap().ctx.clone();
    c.exec(
        2,
        Request::Resolve {
            key: b("s:doc"),
            context: ctx,
            value: b("merged"),
        },
    )
    .unwrap();
    c.deliver_all();
    for i in 0..3 {
        let view = c.engines[i].describe(b"s:doc", 5_000_000);
        assert_eq!(view.siblings.len(), 1);
        assert_eq!(view.value, Some(b("merged")));
    }
    assert!(c.conflicts.iter().any(|r| r.policy == "siblings"));
}

#[test]
fn priority_policy_prefers_the_higher_region() {
    // priority order in the harness: replica 2 (eu) first, then 1 (us).
    let mut c = Cluster::new(3, 4);
    c.clocks = vec![9_000_000, 1_000, 1_000];
    c.exec(0, set("p:flag", "us-value")).unwrap();
    c.exec(1, set("p:flag", "eu-value")).unwrap();
    c.deliver_all();
    for i in 0..3 {
        assert_eq!(
            c.exec(i, Request::Get(b("p:flag"))).unwrap(),
            Reply::Bulk(b("eu-value")),
            "replica {i}"
        );
    }
}

struct Concat;
impl Resolver for Concat {
    fn resolve(&self, _key: &[u8], siblings: &[SiblingView]) -> Result<Option<Bytes>, String> {
        let mut vals: Vec<Vec<u8>> = siblings
            .iter()
            .filter_map(|s| s.value.as_ref().map(|v| v.to_vec()))
            .collect();
        vals.sort();
        Ok(Some(Bytes::from(vals.join(&b'+'))))
    }
}

#[test]
fn script_policy_resolves_identically_and_writes_back_once() {
    let mut c = Cluster::new(3, 8);
    for e in &mut c.engines {
        let mut cfg = e.config().clone();
        cfg.policies.rules.insert(
            0,
            Policy {
                pattern: "c:*".into(),
                strings: Strategy::Script("concat".into()),
                ..Policy::catch_all()
            },
        );
        *e = Engine::new(cfg);
        e.register_resolver("concat", std::sync::Arc::new(Concat));
    }
    c.exec(0, set("c:k", "a")).unwrap();
    c.exec(1, set("c:k", "b")).unwrap();
    c.exec(2, set("c:k", "c")).unwrap();
    c.deliver_all();
    for i in 0..3 {
        assert_eq!(
            c.exec(i, Request::Get(b("c:k"))).unwrap(),
            Reply::Bulk(b("a+b+c")),
            "replica {i}"
        );
        let view = c.engines[i].describe(b"c:k", 5_000_000);
        assert_eq!(
            view.siblings.len(),
            1,
            "write-back by the designated replica collapses the siblings"
        );
    }
}

/// The designated replica (us) must not write back a resolution while a concurrent sibling it
/// has not received is already reported by another region: us holds a (its own) and c (ap's); eu
/// wrote b concurrently and then received a and c, so a and c are stable, but eu's vector shows
/// b, which us lacks. Resolving then settled the cluster on concat(concat(a, c), b) = "a+c+b"
/// (seen as a flaky tests/cluster/lua.rs); us waits for b and every region gets "a+b+c".
#[test]
fn script_write_back_waits_for_every_op_other_regions_reported() {
    let now = 1_700_000_000_000;
    let (us_w, eu_w, ap_w) = (writer_id(1, 11), writer_id(2, 22), writer_id(3, 33));
    let engine = |w| {
        let mut cfg = EngineConfig::new(w, super::harness::regions(3));
        cfg.policies.rules.insert(
            0,
            Policy {
                pattern: "c:*".into(),
                strings: Strategy::Script("concat".into()),
                ..Policy::catch_all()
            },
        );
        let mut e = Engine::new(cfg);
        e.register_resolver("concat", std::sync::Arc::new(Concat));
        e
    };
    let (mut us, mut eu, mut ap) = (engine(us_w), engine(eu_w), engine(ap_w));
    let write = |e: &mut Engine, v: &str| {
        let mut out = Output::default();
        e.execute(set("c:k", v), now, &mut out).unwrap();
        out.local_ops.remove(0)
    };
    let recv = |e: &mut Engine, op: &Op| {
        let mut out = Output::default();
        e.receive(op.clone(), now, &mut out);
        out
    };
    let (op_a, op_b, op_c) = (write(&mut us, "a"), write(&mut eu, "b"), write(&mut ap, "c"));
    recv(&mut us, &op_c);
    recv(&mut eu, &op_a);
    recv(&mut eu, &op_c);
    recv(&mut ap, &op_a);
    us.observe_peer(2, &eu.applied().clone());
    us.observe_peer(3, &ap.applied().clone());
    let mut out = Output::default();
    us.tick(now, &mut out);
    assert!(
        out.local_ops.is_empty(),
        "us wrote back {:?} while eu's concurrent b (in eu's vector {}) had not reached it",
        out.local_ops.iter().map(|o| o.key.clone()).collect::<Vec<_>>(),
        eu.applied()
    );
    // b arrives; once every region reports the three siblings, us writes back a+b+c.
    recv(&mut us, &op_b);
    recv(&mut ap, &op_b);
    us.observe_peer(2, &eu.applied().clone());
    us.observe_peer(3, &ap.applied().clone());
    let mut out = Output::default();
    us.tick(now, &mut out);
    assert_eq!(out.local_ops.len(), 1, "us writes back once it holds every reported op");
    let wb = out.local_ops.remove(0);
    recv(&mut eu, &wb);
    recv(&mut ap, &wb);
    for (name, e) in [("us", &mut us), ("eu", &mut eu), ("ap", &mut ap)] {
        let mut out = Output::default();
        assert_eq!(
            e.execute(Request::Get(b("c:k")), now, &mut out).unwrap(),
            Reply::Bulk(b("a+b+c")),
            "{name}"
        );
        assert_eq!(e.describe(b"c:k", now).siblings.len(), 1, "{name}: one version left");
    }
}

/// Two engines (us, eu) whose `c:*` keys resolve strings with `Concat`, which answers a value
/// even for siblings that are all deletes ("", as the simulation's Lua resolver does), both
/// holding `c:k` as two concurrent deletes (`SET` by us, then `DEL` in both regions at once).
fn script_key_deleted_twice(now: u64) -> (Engine, Engine) {
    let engine = |w| {
        let mut cfg = EngineConfig::new(w, super::harness::regions(2));
        cfg.policies.rules.insert(
            0,
            Policy {
                pattern: "c:*".into(),
                strings: Strategy::Script("concat".into()),
                ..Policy::catch_all()
            },
        );
        let mut e = Engine::new(cfg);
        e.register_resolver("concat", std::sync::Arc::new(Concat));
        e
    };
    let (mut us, mut eu) = (engine(writer_id(1, 11)), engine(writer_id(2, 22)));
    let mut out = Output::default();
    us.execute(set("c:k", "v1"), now, &mut out).unwrap();
    us.execute(Request::Del(vec![b("c:k")]), now, &mut out).unwrap();
    let mut eu_out = Output::default();
    eu.receive(out.local_ops[0].clone(), now, &mut eu_out);
    eu.execute(Request::Del(vec![b("c:k")]), now, &mut eu_out).unwrap();
    for op in &out.local_ops[1..] {
        eu.receive(op.clone(), now, &mut Output::default());
    }
    for op in &eu_out.local_ops {
        us.receive(op.clone(), now, &mut Output::default());
    }
    assert_eq!(us.key_state(b"c:k"), eu.key_state(b"c:k"));
    assert_eq!(
        us.key_state(b"c:k").unwrap().entries(&Slot::Register).unwrap().len(),
        2,
        "two tombstones"
    );
    (us, eu)
}

/// Concurrent `DEL`s of a `script` key leave it holding two tombstones and nothing else: it is
/// deleted (garbage collection purges it, and a write on it starts from empty, also in the regions
/// that apply the write), whatever the resolver would answer for them. It used to read as the
/// resolver's "" in every region, so a `PEXPIRE` then an `APPEND` (which keeps the TTL) in eu kept
/// an expiry that us, applying the `APPEND` to a dead key whose every op eu had seen, removed:
/// different states under equal applied vectors (sim seed 169, repaired by anti-entropy).
#[test]
fn a_script_key_holding_only_concurrent_deletes_is_deleted_everywhere() {
    let now = 1_700_000_000_000;
    let (mut us, mut eu) = script_key_deleted_twice(now);
    let exec = |e: &mut Engine, req: Request| {
        let mut out = Output::default();
        let reply = e.execute(req, now, &mut out).unwrap();
        (reply, out.local_ops)
    };
    for (name, e) in [("us", &mut us), ("eu", &mut eu)] {
        assert_eq!(exec(e, Request::Get(b("c:k"))).0, Reply::Nil, "{name}");
        assert_eq!(exec(e, Request::Exists(vec![b("c:k")])).0, Reply::Int(0), "{name}");
    }
    let expire = Request::Expire {
        key: b("c:k"),
        in_ms: 10_000,
    };
    let (reply, expire) = exec(&mut eu, expire);
    assert_eq!(reply, Reply::Int(0), "PEXPIRE of a deleted key");
    let append = Request::Append {
        key: b("c:k"),
        value: b("v2"),
    };
    let (reply, append) = exec(&mut eu, append);
    assert_eq!(reply, Reply::Int(2), "APPEND to a deleted key starts from empty");
    for op in expire.iter().chain(&append) {
        us.receive(op.clone(), now, &mut Output::default());
    }
    assert_eq!(us.applied(), eu.applied());
    assert_eq!(
        us.key_state(b"c:k"),
        eu.key_state(b"c:k"),
        "equal applied vectors, equal states"
    );
    for (name, e) in [("us", &mut us), ("eu", &mut eu)] {
        assert_eq!(exec(e, Request::Get(b("c:k"))).0, Reply::Bulk(b("v2")), "{name}");
        let ttl = Request::Ttl {
            key: b("c:k"),
            millis: true,
        };
        assert_eq!(exec(e, ttl).0, Reply::Int(-1), "{name}: no expiry");
    }
}

/// Siblings that are all deletes are not resolved: once both regions have applied them, us (the
/// designated region) writes nothing back (it wrote the resolver's "", a value for a deleted key);
/// garbage collection purges the key instead.
#[test]
fn concurrent_deletes_of_a_script_key_are_not_written_back() {
    let now = 1_700_000_000_000;
    let (mut us, mut eu) = script_key_deleted_twice(now);
    us.observe_peer(2, &eu.applied().clone());
    eu.observe_peer(1, &us.applied().clone());
    for _ in 0..3 {
        let mut out = Output::default();
        us.tick(now, &mut out);
        assert!(
            out.local_ops.is_empty(),
            "a write-back of two deletes: {:?}",
            out.local_ops
        );
        us.collect_garbage(&mut out);
    }
    assert!(us.key_state(b"c:k").is_none(), "purged: {:?}", us.key_state(b"c:k"));
}

#[test]
fn type_conflict_resolves_to_the_later_type_everywhere() {
    let mut c = Cluster::new(2, 9);
    c.clocks = vec![1_000, 2_000];
    c.exec(0, set("k", "string")).unwrap();
    c.exec(
        1,
        Request::SAdd {
            key: b("k"),
            members: vec![b("m")],
        },
    )
    .unwrap();
    c.deliver_all();
    for i in 0..2 {
        assert_eq!(c.exec(i, Request::Type(b("k"))).unwrap(), Reply::Status("set".into()));
    }
    assert!(c.conflicts.iter().any(|r| r.kind == ConflictKind::Type));
}

#[test]
fn region_local_keys_are_never_shipped() {
    let mut c = Cluster::new(2, 10);
    for e in &mut c.engines {
        let mut cfg = e.config().clone();
        cfg.policies.rules.insert(
            0,
            Policy {
                pattern: "session:*".into(),
                replicate: false,
                ..Policy::catch_all()
            },
        );
        *e = Engine::new(cfg);
    }
    c.exec(0, set("session:1", "tok")).unwrap();
    assert!(c.inflight.is_empty(), "a replicate=false write produced an op");
    assert_eq!(
        c.engines[0].applied().get(1),
        0,
        "a replicate=false write took a sequence number"
    );
    c.exec(0, set("shared", "x")).unwrap();
    assert_eq!(c.engines[0].applied().get(1), 1);
    c.deliver_all();
    assert_eq!(c.exec(1, Request::Get(b("session:1"))).unwrap(), Reply::Nil);
    assert_eq!(c.exec(0, Request::Get(b("session:1"))).unwrap(), Reply::Bulk(b("tok")));
    assert_eq!(c.exec(0, Request::Del(vec![b("session:1")])).unwrap(), Reply::Int(1));
    assert!(c.engines[0].key_state(b"session:1").is_none());
}

#[test]
fn hash_fields_are_lww_and_add_wins_against_concurrent_hdel() {
    let mut c = Cluster::new(2, 13);
    c.exec(
        0,
        Request::HSet {
            key: b("h"),
            pairs: vec![(b("f"), b("1"))],
        },
    )
    .unwrap();
    c.deliver_all();
    c.exec(
        0,
        Request::HDel {
            key: b("h"),
            fields: vec![b("f")],
        },
    )
    .unwrap();
    c.exec(
        1,
        Request::HSet {
            key: b("h"),
            pairs: vec![(b("f"), b("2"))],
        },
    )
    .unwrap();
    c.deliver_all();
    for i in 0..2 {
        assert_eq!(
            c.exec(
                i,
                Request::HGet {
                    key: b("h"),
                    field: b("f")
                }
            )
            .unwrap(),
            Reply::Bulk(b("2"))
        );
    }
    // OR-set: concurrent add survives a remove that did not see it.
    c.exec(
        0,
        Request::SAdd {
            key: b("set"),
            members: vec![b("x")],
        },
    )
    .unwrap();
    c.deliver_all();
    c.exec(
        0,
        Request::SRem {
            key: b("set"),
            members: vec![b("x")],
        },
    )
    .unwrap();
    c.exec(
        1,
        Request::SAdd {
            key: b("set"),
            members: vec![b("x")],
        },
    )
    .unwrap_or(Reply::Int(0));
    c.deliver_all();
    for i in 0..2 {
        assert_eq!(
            c.exec(
                i,
                Request::SIsMember {
                    key: b("set"),
                    member: b("x")
                }
            )
            .unwrap(),
            Reply::Int(1),
            "replica {i}"
        );
    }
}

/// A counter reset removes exactly the increments it observed: increments concurrent with it
/// survive, and nothing it reset comes back.
#[test]
fn counter_reset_removes_observed_increments_only() {
    let mut c = Cluster::new(3, 14);
    let get = |c: &mut Cluster, i: usize| c.exec(i, Request::Get(b("likes"))).unwrap();
    c.exec(0, Request::IncrBy { key: b("likes"), by: 5 }).unwrap();
    c.exec(1, Request::IncrBy { key: b("likes"), by: 3 }).unwrap();
    c.deliver_all();
    assert_eq!(get(&mut c, 2), Reply::Bulk(b("8")));
    // us resets while eu concurrently adds 1.
    c.exec(0, Request::Del(vec![b("likes")])).unwrap();
    c.exec(1, Request::IncrBy { key: b("likes"), by: 1 }).unwrap();
    c.deliver_all();
    for i in 0..3 {
        assert_eq!(
            get(&mut c, i),
            Reply::Bulk(b("1")),
            "replica {i}: only the concurrent +1 survives the reset"
        );
    }
    // Later increments from every side count from there.
    c.exec(0, Request::IncrBy { key: b("likes"), by: 2 }).unwrap();
    c.exec(
        1,
        Request::IncrBy {
            key: b("likes"),
            by: -4,
        },
    )
    .unwrap();
    c.exec(
        2,
        Request::IncrBy {
            key: b("likes"),
            by: 10,
        },
    )
    .unwrap();
    c.deliver_all();
    for i in 0..3 {
        assert_eq!(get(&mut c, i), Reply::Bulk(b("9")), "replica {i}");
    }
    // Two concurrent resets that saw different amounts: the later view wins per replica.
    c.exec(1, Request::IncrBy { key: b("likes"), by: 5 }).unwrap(); // eu's total moves on
    let (to_ap, rest): (Vec<_>, Vec<_>) = c.inflight.drain(..).partition(|(to, _)| *to == 2);
    c.inflight = rest; // us gets eu's +5 only later
    for (to, op) in to_ap {
        let mut out = Output::default();
        c.engines[to].receive(op, 9_000_000, &mut out);
    }
    c.exec(0, Request::Del(vec![b("likes")])).unwrap(); // us did not see eu's +5
    c.exec(2, Request::Del(vec![b("likes")])).unwrap(); // ap saw it
    c.deliver_all();
    for i in 0..3 {
        assert!(
            matches!(get(&mut c, i), Reply::Nil | Reply::Bulk(_)),
            "replica {i} answers"
        );
    }
    let values: Vec<Reply> = (0..3).map(|i| get(&mut c, i)).collect();
    assert!(values.windows(2).all(|w| w[0] == w[1]), "{values:?}");
    assert_eq!(
        values[0],
        Reply::Nil,
        "both resets together removed everything: {values:?}"
    );
}

/// SCAN's guarantee (as in Redis): a key present from the first call to the last is returned,
/// however many keys are added or removed between calls — the cursor is a key hash, not an offset.
#[test]
fn scan_returns_every_key_present_throughout_despite_concurrent_changes() {
    for seed in [0u64, 1, 99] {
        let mut cfg = EngineConfig::new(1, [(1, "us".to_string())].into_iter().collect());
        cfg.key_hash_seed = seed;
        let mut e = Engine::new(cfg);
        let exec = |e: &mut Engine, req: Request| e.execute(req, 1_000, &mut Output::default()).unwrap();
        for i in 0..500 {
            exec(&mut e, set(&format!("stay{i}"), "v"));
            exec(&mut e, set(&format!("go{i}"), "v"));
        }
        let (mut cursor, mut seen, mut calls, mut added) = (0u64, Vec::new(), 0, 0);
        loop {
            let Reply::Array(parts) = exec(
                &mut e,
                Request::Scan {
                    cursor,
                    pattern: None,
                    count: 37,
                    kind: None,
                },
            ) else {
                panic!("SCAN replies with an array")
            };
            let [Reply::Bulk(next), Reply::Array(keys)] = &parts[..] else {
                panic!("SCAN replies [cursor, keys]: {parts:?}")
            };
            seen.extend(keys.iter().map(|k| match k {
                Reply::Bulk(k) => String::from_utf8(k.to_vec()).unwrap(),
                other => panic!("a key is a bulk string: {other:?}"),
            }));
            cursor = std::str::from_utf8(next).unwrap().parse().unwrap();
            assert!(cursor < 1 << 53, "a cursor fits a JavaScript number: {cursor}");
            calls += 1;
            if cursor == 0 {
                break;
            }
            // Between calls: delete some keys, add new ones (both would shift an offset cursor).
            for _ in 0..20 {
                exec(
                    &mut e,
                    Request::Del(vec![b(&format!("go{}", (calls * 20 + added) % 500))]),
                );
                exec(&mut e, set(&format!("new{added}"), "v"));
                added += 1;
            }
            assert!(calls < 1_000, "the scan ends");
        }
        for i in 0..500 {
            assert!(seen.contains(&format!("stay{i}")), "seed {seed}: stay{i} missed");
        }
        let before = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(
            seen.len(),
            before,
            "seed {seed}: no key is returned twice by one scan here"
        );
    }
}
