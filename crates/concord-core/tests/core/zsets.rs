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
