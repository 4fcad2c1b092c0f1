//! Sorted sets and HyperLogLog (engine/zsets.rs, engine/hyperloglogs.rs): Redis semantics on one
//! replica, and the replicated semantics of DESIGN §8.4 under concurrency — `ZADD` last writer
//! wins, concurrent `ZINCRBY`s add up, a `ZADD` resets the increments it saw, members add-wins,
//! HyperLogLog registers merge by max.

use super::harness::{b, Cluster};
use bytes::Bytes;
use concord_core::*;

fn z(req: ZsetRequest) -> Request {
    Request::Zset(req)
}

fn zadd(key: &str, pairs: &[(f64, &str)]) -> Request {
    z(ZsetRequest::Add {
        key: b(key),
        flags: ZAddFlags::default(),
        members: pairs.iter().map(|(s, m)| (*s, b(m))).collect(),
    })
}

fn zincr(key: &str, by: f64, member: &str) -> Request {
    z(ZsetRequest::IncrBy {
        key: b(key),
        by,
        member: b(member),
    })
}

fn zrem(key: &str, member: &str) -> Request {
    z(ZsetRequest::Rem {
        key: b(key),
        members: vec![b(member)],
    })
}

fn all_with_scores(c: &mut Cluster, i: usize, key: &str) -> Vec<String> {
    let reply = c
        .exec(
            i,
            z(ZsetRequest::Range {
                key: b(key),
                by: ZRangeBy::Rank(0, -1),
                rev: false,
                limit: None,
                with_scores: true,
            }),
        )
        .unwrap();
    flat(reply)
}

/// A reply as text, pairs flattened and doubles written as RESP2 does.
fn flat(reply: Reply) -> Vec<String> {
    let text = |r: Reply| match r {
        Reply::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
        Reply::Double(d) => String::from_utf8(engine::score_text(d).to_vec()).unwrap(),
        other => panic!("{other:?}"),
    };
    match reply {
        Reply::Array(items) => items.into_iter().map(text).collect(),
        Reply::Pairs(pairs) => pairs.into_iter().flat_map(|(a, b)| [text(a), text(b)]).collect(),
        other => panic!("{other:?}"),
    }
}

fn score(c: &mut Cluster, i: usize, key: &str, member: &str) -> Reply {
    c.exec(
        i,
        z(ZsetRequest::Score {
            key: b(key),
            member: b(member),
        }),
    )
    .unwrap()
}

#[test]
fn redis_semantics_on_one_replica() {
    let mut c = Cluster::new(1, 1);
    assert_eq!(
        c.exec(0, zadd("z", &[(1.0, "a"), (2.0, "b"), (2.0, "a")])).unwrap(),
        Reply::Int(2)
    );
    assert_eq!(all_with_scores(&mut c, 0, "z"), ["a", "2", "b", "2"]);
    assert_eq!(c.exec(0, zincr("z", 0.5, "a")).unwrap(), Reply::Double(2.5));
    assert_eq!(c.exec(0, zincr("z", 3.0, "c")).unwrap(), Reply::Double(3.0));
    assert_eq!(all_with_scores(&mut c, 0, "z"), ["b", "2", "a", "2.5", "c", "3"]);
    // GT only raises; CH counts changes; NX only adds; XX only updates.
    let gt = z(ZsetRequest::Add {
        key: b("z"),
        flags: ZAddFlags {
            gt: true,
            ch: true,
            ..Default::default()
        },
        members: vec![(1.0, b("a")), (9.0, b("b")), (4.0, b("d"))],
    });
    assert_eq!(c.exec(0, gt).unwrap(), Reply::Int(2));
    assert_eq!(score(&mut c, 0, "z", "a"), Reply::Double(2.5));
    assert_eq!(score(&mut c, 0, "z", "b"), Reply::Double(9.0));
    // INCR that would make NaN is refused.
    c.exec(0, zadd("inf", &[(f64::INFINITY, "x")])).unwrap();
    assert_eq!(
        c.exec(0, zincr("inf", f64::NEG_INFINITY, "x")),
        Err(CommandError::ScoreNan)
    );
    // WRONGTYPE both ways, TYPE zset.
    c.exec(
        0,
        Request::SAdd {
            key: b("s"),
            members: vec![b("m")],
        },
    )
    .unwrap();
    assert_eq!(c.exec(0, zadd("s", &[(1.0, "m")])), Err(CommandError::WrongType));
    assert_eq!(c.exec(0, Request::SCard(b("z"))), Err(CommandError::WrongType));
    assert_eq!(c.exec(0, Request::Type(b("z"))).unwrap(), Reply::Status("zset".into()));
    // Pops remove; the last member removed removes the key.
    let pop = z(ZsetRequest::Pop {
        key: b("z"),
        max: true,
        count: Some(10),
    });
    assert_eq!(
        flat(c.exec(0, pop).unwrap()),
        ["b", "9", "d", "4", "c", "3", "a", "2.5"]
    );
    assert_eq!(c.exec(0, Request::Exists(vec![b("z")])).unwrap(), Reply::Int(0));
    // The non-blocking form of BZPOPMIN: the first non-empty key, or nil.
    c.exec(0, zadd("z2", &[(3.0, "x"), (1.0, "y")])).unwrap();
    let pop_first = |max| {
        z(ZsetRequest::PopFirst {
            keys: vec![b("z"), b("z2")],
            max,
        })
    };
    assert_eq!(
        c.exec(0, pop_first(false)).unwrap(),
        Reply::Array(vec![Reply::bulk("z2"), Reply::bulk("y"), Reply::Double(1.0)])
    );
    assert_eq!(
        c.exec(0, pop_first(true)).unwrap(),
        Reply::Array(vec![Reply::bulk("z2"), Reply::bulk("x"), Reply::Double(3.0)])
    );
    assert_eq!(c.exec(0, pop_first(true)).unwrap(), Reply::Nil);
}

#[test]
fn concurrent_increments_add_up_and_zadd_is_last_writer_wins() {
    let mut c = Cluster::new(3, 2);
    c.exec(0, zadd("z", &[(10.0, "m")])).unwrap();
    c.deliver_all();
    // Three regions increment at once: all increments count.
    c.exec(0, zincr("z", 1.0, "m")).unwrap();
    c.exec(1, zincr("z", 2.0, "m")).unwrap();
    c.exec(2, zincr("z", 4.0, "m")).unwrap();
    c.deliver_all();
    for i in 0..3 {
        assert_eq!(score(&mut c, i, "z", "m"), Reply::Double(17.0), "replica {i}");
    }
    // Two concurrent ZADDs: the later HLC wins; an increment concurrent with them survives both,
    // and the increments both had seen are reset.
    c.clocks[1] += 1_000;
    c.exec(0, zadd("z", &[(100.0, "m")])).unwrap();
    c.exec(1, zadd("z", &[(200.0, "m")])).unwrap();
    c.exec(2, zincr("z", 5.0, "m")).unwrap();
    c.deliver_all();
    for i in 0..3 {
        assert_eq!(score(&mut c, i, "z", "m"), Reply::Double(205.0), "replica {i}");
    }
    c.assert_converged("zadd/zincrby");
}

#[test]
fn members_are_add_wins() {
    let mut c = Cluster::new(2, 3);
    c.exec(0, zadd("z", &[(1.0, "a"), (2.0, "b")])).unwrap();
    c.deliver_all();
    // A ZREM concurrent with a ZADD (or a ZINCRBY) of the same member: the member stays.
    c.exec(0, zrem("z", "a")).unwrap();
    c.exec(1, zadd("z", &[(5.0, "a")])).unwrap();
    c.exec(0, zrem("z", "b")).unwrap();
    c.exec(1, zincr("z", 1.0, "b")).unwrap();
    c.deliver_all();
    for i in 0..2 {
        // b's ZADD score was removed with the ZREM: only the concurrent increment is left.
        assert_eq!(all_with_scores(&mut c, i, "z"), ["b", "1", "a", "5"], "replica {i}");
    }
    // A ZREM that saw everything removes the member everywhere.
    c.exec(1, zrem("z", "a")).unwrap();
    c.deliver_all();
    for i in 0..2 {
        assert_eq!(score(&mut c, i, "z", "a"), Reply::Nil);
    }
    c.assert_converged("add-wins");
}

#[test]
fn increments_are_exact_under_reordering_and_duplicates() {
    for seed in 0..10 {
        let mut c = Cluster::new(3, seed);
        let mut sum = 0.0f64;
        for step in 0..300 {
            let i = c.rng.below(3) as usize;
            let by = (c.rng.below(9) as f64 - 4.0) / 4.0; // exact in binary: sums are exact
            sum += by;
            c.exec(i, zincr("z", by, "m")).unwrap();
            if step % 3 == 0 {
                c.deliver_one();
            }
        }
        c.deliver_all();
        let want = Reply::Double(sum);
        for i in 0..3 {
            assert_eq!(score(&mut c, i, "z", "m"), want, "seed {seed} replica {i}");
        }
    }
}

#[test]
fn ranges_and_combinations() {
    let mut c = Cluster::new(1, 4);
    c.exec(0, zadd("z", &[(1.0, "a"), (2.0, "b"), (3.0, "c"), (4.0, "d")]))
        .unwrap();
    c.exec(0, zadd("y", &[(10.0, "b"), (20.0, "e")])).unwrap();
    let by_score = z(ZsetRequest::Range {
        key: b("z"),
        by: ZRangeBy::Score(
            ScoreBound {
                value: 1.0,
                exclusive: true,
            },
            ScoreBound {
                value: f64::INFINITY,
                exclusive: false,
            },
        ),
        rev: true,
        limit: Some((1, 2)),
        with_scores: false,
    });
    assert_eq!(
        c.exec(0, by_score).unwrap(),
        Reply::Array(vec![Reply::bulk("c"), Reply::bulk("b")])
    );
    let union = z(ZsetRequest::CombineStore {
        op: ZCombineOp::Union,
        destination: b("u"),
        keys: vec![b("z"), b("y")],
        weights: Some(vec![1.0, 2.0]),
        aggregate: Aggregate::Sum,
    });
    assert_eq!(c.exec(0, union).unwrap(), Reply::Int(5));
    assert_eq!(
        all_with_scores(&mut c, 0, "u"),
        ["a", "1", "c", "3", "d", "4", "b", "22", "e", "40"]
    );
    let inter = z(ZsetRequest::Combine {
        op: ZCombineOp::Inter,
        keys: vec![b("z"), b("y")],
        weights: None,
        aggregate: Aggregate::Max,
        with_scores: true,
    });
    assert_eq!(
        c.exec(0, inter).unwrap(),
        Reply::Pairs(vec![(Reply::bulk("b"), Reply::Double(10.0))])
    );
    let rank = z(ZsetRequest::Rank {
        key: b("z"),
        member: b("c"),
        rev: true,
        with_score: true,
    });
    assert_eq!(
        c.exec(0, rank).unwrap(),
        Reply::Array(vec![Reply::Int(1), Reply::Double(3.0)])
    );
    let rem = z(ZsetRequest::RemRange {
        key: b("z"),
        by: ZRangeBy::Rank(0, 1),
    });
    assert_eq!(c.exec(0, rem).unwrap(), Reply::Int(2));
    assert_eq!(all_with_scores(&mut c, 0, "z"), ["c", "3", "d", "4"]);
}

#[test]
fn zsets_survive_dump_restore_rename_and_copy() {
    let mut c = Cluster::new(1, 5);
    c.exec(0, zadd("z", &[(1.5, "a"), (f64::NEG_INFINITY, "b")])).unwrap();
    let Reply::Bulk(payload) = c.exec(0, Request::Dump(b("z"))).unwrap() else {
        panic!("no dump")
    };
    c.exec(
        0,
        Request::Restore {
            key: b("r"),
            payload,
            ttl_ms: 0,
            absolute: false,
            replace: false,
        },
    )
    .unwrap();
    assert_eq!(all_with_scores(&mut c, 0, "r"), ["b", "-inf", "a", "1.5"]);
    c.exec(
        0,
        Request::Copy {
            source: b("r"),
            destination: b("c"),
            replace: false,
        },
    )
    .unwrap();
    c.exec(
        0,
        Request::Rename {
            source: b("c"),
            destination: b("d"),
            if_absent: false,
        },
    )
    .unwrap();
    assert_eq!(all_with_scores(&mut c, 0, "d"), ["b", "-inf", "a", "1.5"]);
    assert_eq!(
        c.exec(
            0,
            Request::Object {
                field: ObjectField::Encoding,
                key: b("d")
            }
        )
        .unwrap(),
        Reply::bulk("listpack")
    );
}

fn pfadd(key: &str, elements: impl IntoIterator<Item = String>) -> Request {
    Request::Hll(HllRequest::Add {
        key: b(key),
        elements: elements.into_iter().map(Bytes::from).collect(),
    })
}

#[test]
fn hyperloglogs_merge_by_max_across_regions() {
    let mut c = Cluster::new(3, 6);
    // Each region adds its own elements, some shared, all concurrently.
    for i in 0..3 {
        let elements = (0..400).map(move |n| format!("e{}", n + i * 200));
        assert_eq!(c.exec(i, pfadd("h", elements)).unwrap(), Reply::Int(1));
    }
    c.deliver_all();
    let mut counts = Vec::new();
    for i in 0..3 {
        counts.push(c.exec(i, Request::Hll(HllRequest::Count(vec![b("h")]))).unwrap());
    }
    // The same estimate everywhere, close to the 800 distinct elements.
    assert!(counts.iter().all(|r| *r == counts[0]), "{counts:?}");
    let Reply::Int(n) = counts[0] else { panic!() };
    assert!((780..=820).contains(&n), "{n}");
    // Adding elements already counted changes nothing and writes nothing.
    assert_eq!(c.exec(1, pfadd("h", ["e1".to_string()])).unwrap(), Reply::Int(0));
    assert_eq!(
        c.exec(0, Request::Type(b("h"))).unwrap(),
        Reply::Status("string".into())
    );
    assert_eq!(c.exec(0, Request::Get(b("h"))), Err(CommandError::WrongType));
    c.exec(
        0,
        Request::Set {
            key: b("str"),
            value: b("x"),
            condition: SetCondition::Always,
            expiry: SetExpiry::Clear,
            get: false,
        },
    )
    .unwrap();
    assert_eq!(c.exec(0, pfadd("str", ["a".to_string()])), Err(CommandError::NotHll));
    c.deliver_all();
    c.assert_converged("hll");
}

#[test]
fn hyperloglog_entries_fold_and_converge_with_concurrent_deletes() {
    for seed in 0..5 {
        let mut c = Cluster::new(3, seed);
        for n in 0..120u32 {
            let i = c.rng.below(3) as usize;
            c.exec(i, pfadd("h", [format!("x{n}")])).unwrap();
            if n % 40 == 39 {
                let j = c.rng.below(3) as usize;
                c.exec(j, Request::Del(vec![b("h")])).unwrap();
            }
            if c.rng.chance(30) {
                c.deliver_one();
            }
        }
        c.deliver_all();
        c.assert_converged(&format!("seed {seed}"));
        c.check_no_lost_writes(&format!("seed {seed}"));
        let entries = c.engines[0]
            .key_state(b"h")
            .and_then(|s| s.entries(&Slot::Hll))
            .map_or(0, |es| es.len());
        assert!(entries <= 3 * 33, "seed {seed}: {entries} entries");
    }
}

#[test]
fn geo_positions_are_last_writer_wins_and_searches_store() {
    let mut c = Cluster::new(2, 9);
    let at = |lon: f64, lat: f64| geo::encode(lon, lat) as f64;
    c.exec(0, zadd("fleet", &[(at(2.17, 41.40), "van")])).unwrap();
    c.clocks[1] += 1_000;
    c.exec(1, zadd("fleet", &[(at(2.19, 41.43), "van"), (at(2.18, 41.41), "car")]))
        .unwrap();
    c.deliver_all();
    let pos = |c: &mut Cluster, i: usize| {
        c.exec(
            i,
            z(ZsetRequest::GeoPos {
                key: b("fleet"),
                members: vec![b("van")],
            }),
        )
        .unwrap()
    };
    let (p0, p1) = (pos(&mut c, 0), pos(&mut c, 1));
    assert_eq!(p0, p1);
    let Reply::Array(points) = p0 else { panic!("{p0:?}") };
    let Reply::Array(ref lonlat) = points[0] else { panic!() };
    let Reply::Double(lat) = lonlat[1] else { panic!() };
    assert!((lat - 41.43).abs() < 1e-4, "the later GEOADD wins: {lat}");
    let search = |store: Option<(Bytes, bool)>, key: &str| {
        z(ZsetRequest::GeoSearch(Box::new(GeoSearch {
            key: b(key),
            from: GeoFrom::LonLat(2.19, 41.43),
            shape: GeoShape::Radius(5_000.0),
            unit_m: 1000.0,
            desc: Some(false),
            count: None,
            with_coord: false,
            with_dist: false,
            with_hash: false,
            store,
        })))
    };
    assert_eq!(
        c.exec(0, search(None, "fleet")).unwrap(),
        Reply::Array(vec![Reply::bulk("van"), Reply::bulk("car")])
    );
    assert_eq!(
        c.exec(0, search(Some((b("near"), true)), "fleet")).unwrap(),
        Reply::Int(2)
    );
    // STOREDIST: the distance in km (the stored point is its geohash cell's centre: ~0.1 m off).
    let Reply::Double(km) = score(&mut c, 0, "near", "van") else {
        panic!()
    };
    assert!(km < 0.001, "{km}");
    // A missing source deletes the destination, as Redis.
    assert_eq!(
        c.exec(0, search(Some((b("near"), false)), "nothing")).unwrap(),
        Reply::Int(0)
    );
    assert_eq!(c.exec(0, Request::Exists(vec![b("near")])).unwrap(), Reply::Int(0));
    c.deliver_all();
    c.assert_converged("geo");
}

/// One sorted-set write as the reference model sees it (the semantics of DESIGN §8.4, with one
/// entry per increment: obviously right, and unbounded, which is why the engine does not keep it).
#[derive(Clone, Debug)]
enum Event {
    /// `ZINCRBY`: adds `by`, until a removal of the member that saw it.
    Incr { member: u8, by: f64 },
    /// `ZADD`: sets the score (last writer wins), resets what it saw of the member.
    Add { member: u8, score: f64 },
    /// `ZREM` of one member, or `DEL` of the key (`None`): removes what it saw.
    Rem { member: Option<u8> },
}

/// Whether op `r` had seen dot `d` when it was made.
fn saw(r: &Op, d: Dot) -> bool {
    (r.origin == d.replica && d.counter < r.seq) || r.deps.get(d.replica) >= d.counter
}

/// The reference score of `member` over the ops `applied` covers.
fn reference_score(events: &[(Op, Event)], applied: &VersionVector, member: u8) -> Option<f64> {
    let here: Vec<&(Op, Event)> = events.iter().filter(|(op, _)| applied.covers(op.dot())).collect();
    let removes_member = |e: &Event| match e {
        Event::Add { member: m, .. } | Event::Rem { member: Some(m) } => *m == member,
        Event::Rem { member: None } => true,
        Event::Incr { .. } => false,
    };
    let alive = |op: &Op| !here.iter().any(|(r, e)| removes_member(e) && saw(r, op.dot()));
    let mut base: Option<((Hlc, ReplicaId, u64), f64)> = None;
    let mut incrs = 0.0;
    let mut present = false;
    for (op, e) in &here {
        match e {
            Event::Incr { member: m, by } if *m == member && alive(op) => {
                incrs += by;
                present = true;
            }
            Event::Add { member: m, score } if *m == member && alive(op) => {
                let k = (op.hlc, op.origin, op.seq);
                if base.is_none_or(|(b, _)| k > b) {
                    base = Some((k, *score));
                }
                present = true;
            }
            _ => {}
        }
    }
    present.then(|| base.map_or(0.0, |(_, s)| s) + incrs)
}

/// `ZINCRBY`s are held as one running entry per replica and member (with floors for removals
/// concurrent with a run): under random concurrent `ZADD`/`ZINCRBY`/`ZREM`/`DEL`, reordering,
/// redelivery and garbage collection, every replica's score of every member is the reference
/// model's (one entry per increment) over the ops it has applied, at every step; and a member
/// never holds more than one increment entry per replica.
#[test]
fn increments_fold_per_replica_and_score_as_one_entry_per_increment_would() {
    let (mut floors_seen, mut floors_applied) = (0, 0);
    for seed in 0..150u64 {
        // Two or three regions, one to three members: small spaces reach the rare interleavings
        // (a run going on across two removals, each concurrent with it).
        let n = 2 + (seed % 2) as usize;
        let members = 1 + seed % 3;
        let mut c = Cluster::new(n, 1000 + seed);
        let mut events: Vec<(Op, Event)> = Vec::new();
        for step in 0..250 {
            let i = c.rng.below(n as u64) as usize;
            let member = c.rng.below(members) as u8;
            let m = format!("m{member}");
            let (req, event) = match c.rng.below(20) {
                0..=10 => {
                    let by = (c.rng.below(17) as f64 - 8.0) / 4.0; // exact in binary
                    (zincr("z", by, &m), Event::Incr { member, by })
                }
                11..=14 => {
                    let score = c.rng.below(9) as f64 - 4.0;
                    (zadd("z", &[(score, &m)]), Event::Add { member, score })
                }
                15..=18 => (zrem("z", &m), Event::Rem { member: Some(member) }),
                _ => (Request::Del(vec![b("z")]), Event::Rem { member: None }),
            };
            let before: std::collections::BTreeSet<Dot> = c.ops.keys().copied().collect();
            c.exec(i, req).unwrap();
            let new: Vec<Op> = c
                .ops
                .iter()
                .filter(|(d, _)| !before.contains(d))
                .map(|(_, o)| o.clone())
                .collect();
            assert!(new.len() <= 1, "one op per command");
            events.extend(new.into_iter().map(|op| (op, event.clone())));
            for _ in 0..c.rng.below(3) {
                c.deliver_one();
            }
            if step % 40 == 39 {
                let g = c.rng.below(n as u64) as usize;
                c.gc(g);
            }
            for r in 0..n {
                for member in 0..members as u8 {
                    let m = format!("m{member}");
                    let want = reference_score(&events, c.engines[r].applied(), member);
                    let got = match score(&mut c, r, "z", &m) {
                        Reply::Double(d) => Some(d),
                        Reply::Nil => None,
                        other => panic!("{other:?}"),
                    };
                    assert_eq!(got, want, "seed {seed} step {step} replica {r} member {m}");
                    let per_replica = c.engines[r]
                        .key_state(b"z")
                        .and_then(|st| st.entries(&Slot::Scored(b(&m))))
                        .map(|es| {
                            let mut runs = std::collections::BTreeMap::new();
                            for (d, e) in es {
                                if matches!(e.payload, Payload::ScoreRun { .. }) {
                                    *runs.entry(d.replica).or_insert(0) += 1;
                                }
                            }
                            runs.into_values().max().unwrap_or(0)
                        })
                        .unwrap_or(0);
                    assert!(
                        per_replica <= 1,
                        "seed {seed} step {step}: {per_replica} runs of one replica"
                    );
                    if let Some(st) = c.engines[r].key_state(b"z") {
                        for w in 1..=n as ReplicaId {
                            let slot = Slot::ScoreFloor(b(&m), w);
                            let Some(es) = st.entries(&slot) else { continue };
                            floors_seen += 1;
                            floors_applied += usize::from(es.values().any(|e| !st.score_floor_dead(&slot, e)));
                        }
                    }
                }
            }
        }
        c.deliver_all();
        for _ in 0..3 {
            for g in 0..n {
                c.gc(g);
            }
            c.deliver_all();
        }
        c.assert_converged(&format!("seed {seed}"));
        // Floors that can apply to nothing are collected once stable.
        for (r, e) in c.engines.iter().enumerate() {
            if let Some(st) = e.key_state(b"z") {
                for (slot, es) in &st.slots {
                    for e in es.values() {
                        assert!(
                            !st.score_floor_dead(slot, e),
                            "seed {seed} replica {r}: dead floor {slot:?} kept"
                        );
                    }
                }
            }
        }
    }
    // The schedule reaches the case the floors exist for: a run going on concurrently with a
    // removal of part of it.
    assert!(
        floors_applied > 100,
        "floors applied in {floors_applied} checks (of {floors_seen} with floors)"
    );
}

/// A hot member: 30,000 increments from three regions leave one entry per region, not one per
/// increment, and the sum is exact.
#[test]
fn a_hot_member_holds_one_entry_per_region() {
    let mut c = Cluster::new(3, 77);
    c.exec(0, zadd("z", &[(1.0, "hot")])).unwrap();
    c.deliver_all();
    for k in 0..30_000u32 {
        c.exec((k % 3) as usize, zincr("z", 1.0, "hot")).unwrap();
        if k % 100 == 0 {
            c.deliver_all();
        }
    }
    c.deliver_all();
    for i in 0..3 {
        assert_eq!(score(&mut c, i, "z", "hot"), Reply::Double(30_001.0));
        let entries = c.engines[i]
            .key_state(b"z")
            .unwrap()
            .entries(&Slot::Scored(b("hot")))
            .unwrap()
            .len();
        assert!(entries <= 4, "replica {i}: {entries} entries for one member");
    }
}

/// On one region the score is Redis's to the last bit: each `ZINCRBY` adds to the score read,
/// in order (`0.1 + 0.2` is not `0.30000000000000004` added to 10). Once two regions' runs meet,
/// the score is the `ZADD` plus each run's sum: the same in every region, and what the
/// `ZINCRBY` answered, but not always Redis's last bit (there is no single order to follow).
#[test]
fn one_region_increments_round_as_redis() {
    let mut c = Cluster::new(2, 5);
    c.exec(0, zadd("z", &[(10.0, "m")])).unwrap();
    c.exec(0, zincr("z", 0.1, "m")).unwrap();
    assert_eq!(
        c.exec(0, zincr("z", 0.2, "m")).unwrap(),
        Reply::Double(10.0 + 0.1 + 0.2)
    );
    c.deliver_all();
    assert_eq!(score(&mut c, 1, "z", "m"), Reply::Double(10.0 + 0.1 + 0.2));
    let Reply::Double(answered) = c.exec(1, zincr("z", 0.7, "m")).unwrap() else {
        panic!()
    };
    assert!((answered - 11.0).abs() < 1e-12, "{answered}");
    assert_eq!(
        score(&mut c, 1, "z", "m"),
        Reply::Double(answered),
        "the reply is what reads see"
    );
    c.deliver_all();
    assert_eq!(score(&mut c, 0, "z", "m"), Reply::Double(answered));
    c.assert_converged("exact");
}

/// A `ZADD` in one region while another keeps incrementing the run the `ZADD` reset part of:
/// only the increments the `ZADD` had not seen count on top of it, in both regions, and the
/// incrementing region folds the floor the `ZADD` left into its run once it has seen it.
#[test]
fn a_zadd_concurrent_with_a_run_keeps_only_what_it_did_not_see() {
    let mut c = Cluster::new(2, 9);
    c.exec(0, zincr("z", 5.0, "m")).unwrap();
    c.deliver_all();
    c.exec(1, zadd("z", &[(100.0, "m")])).unwrap(); // saw the 5
    c.exec(0, zincr("z", 1.0, "m")).unwrap(); // concurrent: the run is now 6
    c.exec(0, zincr("z", 2.0, "m")).unwrap(); // 8
    c.deliver_all();
    for i in 0..2 {
        assert_eq!(score(&mut c, i, "z", "m"), Reply::Double(103.0), "replica {i}");
    }
    assert_eq!(c.exec(0, zincr("z", 4.0, "m")).unwrap(), Reply::Double(107.0));
    c.deliver_all();
    for i in 0..2 {
        assert_eq!(score(&mut c, i, "z", "m"), Reply::Double(107.0), "replica {i}");
        let st = c.engines[i].key_state(b"z").unwrap();
        let run = st.score_run(&b("m"), c.engines[0].replica()).unwrap();
        assert_eq!(run.sum, 12.0, "replica {i}: the run goes on");
        assert_eq!(
            run.base,
            Some((run.id, 5.0)),
            "replica {i}: with the floor it saw folded in"
        );
        assert_eq!(st.run_counts(&b("m"), &run), 7.0);
        assert!(
            st.score_floor(&b("m"), c.engines[0].replica(), run.id).is_none(),
            "the folded floor is gone from the state"
        );
    }
    c.assert_converged("run");
}

/// Two removals in a row, each concurrent with an increment of the run: the second removal's
/// floor counts although the incrementing region had folded in the first (found by review: a
/// run restarted on seeing a floor made the second floor apply to nothing, and the +2 the
/// second `ZREM` removed came back).
#[test]
fn a_later_removal_concurrent_with_a_folded_run_still_counts() {
    let mut c = Cluster::new(2, 11);
    c.exec(0, zincr("z", 1.0, "m")).unwrap();
    c.deliver_all();
    c.exec(1, zrem("z", "m")).unwrap(); // took the 1
    c.exec(0, zincr("z", 2.0, "m")).unwrap(); // concurrent: the run holds 3
    c.deliver_all();
    for i in 0..2 {
        assert_eq!(score(&mut c, i, "z", "m"), Reply::Double(2.0), "replica {i}");
    }
    c.exec(1, zrem("z", "m")).unwrap(); // took the 2 as well
    c.exec(0, zincr("z", 5.0, "m")).unwrap(); // concurrent: saw the first ZREM only
    c.deliver_all();
    for i in 0..2 {
        assert_eq!(score(&mut c, i, "z", "m"), Reply::Double(5.0), "replica {i}");
    }
    c.assert_converged("two removals");
}

/// States written by versions that kept one `Incr` entry per `ZINCRBY` still read and still
/// take increments.
#[test]
fn legacy_increment_entries_still_count() {
    let mut st = KeyState::new();
    let hlc = Hlc::new(1, 0);
    let mut put = |seq: u64, payload: Payload| {
        let delta = op::Delta {
            removes: Vec::new(),
            adds: vec![(Slot::Scored(b("m")), payload)],
        };
        st.apply(Dot::new(1, seq), hlc, &delta);
    };
    put(1, Payload::Score(3.0f64.to_bits()));
    put(2, Payload::Incr(1.5f64.to_bits()));
    put(3, Payload::Incr(0.5f64.to_bits()));
    let st = KeyState::decode(&st.encode()).unwrap();
    assert_eq!(st.zscore(&b("m")), Some(5.0));
    let mut meta = EngineMeta::default();
    meta.applied.set(1, 3);
    let mut e = Engine::restore(EngineConfig::new(1, super::harness::regions(1)), meta, [(b("z"), st)]);
    let mut out = Output::default();
    assert_eq!(
        e.execute(zincr("z", 2.0, "m"), 10, &mut out).unwrap(),
        Reply::Double(7.0)
    );
    assert_eq!(e.key_state(b"z").unwrap().zscore(&b("m")), Some(7.0));
}
