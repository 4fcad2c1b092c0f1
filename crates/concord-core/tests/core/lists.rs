//! Lists (engine/lists.rs): Redis semantics on one replica, and the replicated semantics of the
//! sequence CRDT (docs/consistency.md, "Lists") for concurrent writes in several regions.

use super::harness::{b, Cluster};
use concord_core::*;

fn push(key: &str, end: ListEnd, values: &[&str]) -> Request {
    Request::ListPush {
        key: b(key),
        end,
        values: values.iter().map(|v| b(v)).collect(),
        if_exists: false,
    }
}

fn pop(key: &str, end: ListEnd) -> Request {
    Request::ListPop {
        key: b(key),
        end,
        count: None,
    }
}

fn range(c: &mut Cluster, at: usize, key: &str) -> Vec<String> {
    match c
        .exec(
            at,
            Request::LRange {
                key: b(key),
                start: 0,
                stop: -1,
            },
        )
        .unwrap()
    {
        Reply::Array(items) => items
            .into_iter()
            .map(|r| match r {
                Reply::Bulk(v) => String::from_utf8(v.to_vec()).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect(),
        other => panic!("{other:?}"),
    }
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(b(s))
}

use ListEnd::{Left, Right};

#[test]
fn redis_semantics_on_one_replica() {
    let mut c = Cluster::new(1, 1);
    assert_eq!(c.exec(0, push("q", Right, &["a", "b", "c"])), Ok(Reply::Int(3)));
    assert_eq!(c.exec(0, push("q", Left, &["x", "y"])), Ok(Reply::Int(5)));
    assert_eq!(range(&mut c, 0, "q"), ["y", "x", "a", "b", "c"]);
    assert_eq!(c.exec(0, pop("q", Left)), Ok(bulk("y")));
    assert_eq!(c.exec(0, pop("q", Right)), Ok(bulk("c")));
    let lindex = |i| Request::LIndex { key: b("q"), index: i };
    assert_eq!(c.exec(0, lindex(-1)), Ok(bulk("b")));
    assert_eq!(c.exec(0, lindex(5)), Ok(Reply::Nil));
    let lset = |i, v: &str| Request::LSet {
        key: b("q"),
        index: i,
        value: b(v),
    };
    assert_eq!(c.exec(0, lset(1, "A")), Ok(Reply::Ok));
    assert_eq!(
        c.exec(0, lset(9, "A")),
        Err(CommandError::Other("index out of range".into()))
    );
    assert_eq!(range(&mut c, 0, "q"), ["x", "A", "b"]);
    let insert = |before, pivot: &str, v: &str| Request::LInsert {
        key: b("q"),
        before,
        pivot: b(pivot),
        element: b(v),
    };
    assert_eq!(c.exec(0, insert(true, "A", "m")), Ok(Reply::Int(4)));
    assert_eq!(c.exec(0, insert(false, "b", "z")), Ok(Reply::Int(5)));
    assert_eq!(c.exec(0, insert(false, "nope", "z")), Ok(Reply::Int(-1)));
    assert_eq!(range(&mut c, 0, "q"), ["x", "m", "A", "b", "z"]);
    c.exec(0, push("q", Right, &["m", "m"])).unwrap();
    let lrem = |n, v: &str| Request::LRem {
        key: b("q"),
        count: n,
        element: b(v),
    };
    assert_eq!(c.exec(0, lrem(-2, "m")), Ok(Reply::Int(2)));
    assert_eq!(range(&mut c, 0, "q"), ["x", "m", "A", "b", "z"]);
    let lpos = |v: &str, rank, count| Request::LPos {
        key: b("q"),
        element: b(v),
        rank,
        count,
        maxlen: 0,
    };
    assert_eq!(c.exec(0, lpos("A", 1, None)), Ok(Reply::Int(2)));
    assert_eq!(c.exec(0, lpos("A", 2, None)), Ok(Reply::Nil));
    assert_eq!(c.exec(0, lpos("z", -1, Some(0))), Ok(Reply::Array(vec![Reply::Int(4)])));
    c.exec(
        0,
        Request::LTrim {
            key: b("q"),
            start: 1,
            stop: -2,
        },
    )
    .unwrap();
    assert_eq!(range(&mut c, 0, "q"), ["m", "A", "b"]);
    assert_eq!(
        c.exec(
            0,
            Request::ListPop {
                key: b("q"),
                end: Right,
                count: Some(5)
            }
        ),
        Ok(Reply::Array(vec![bulk("b"), bulk("A"), bulk("m")]))
    );
    assert_eq!(c.exec(0, Request::Type(b("q"))), Ok(Reply::Status("none".into())));
    assert_eq!(c.exec(0, Request::LLen(b("q"))), Ok(Reply::Int(0)));
    // The X forms push only onto an existing list.
    let pushx = Request::ListPush {
        key: b("q"),
        end: Left,
        values: vec![b("a")],
        if_exists: true,
    };
    assert_eq!(c.exec(0, pushx), Ok(Reply::Int(0)));
    // Types.
    c.exec(0, push("l", Left, &["1"])).unwrap();
    assert_eq!(c.exec(0, Request::Type(b("l"))), Ok(Reply::Status("list".into())));
    assert_eq!(c.exec(0, Request::Get(b("l"))), Err(CommandError::WrongType));
    c.exec(0, super::harness::set("s", "v")).unwrap();
    assert_eq!(c.exec(0, push("s", Left, &["1"])), Err(CommandError::WrongType));
    // LMOVE, to another list and rotating one list.
    c.exec(0, push("r", Right, &["1", "2", "3"])).unwrap();
    let lmove = |s: &str, d: &str, from, to| Request::LMove {
        source: b(s),
        destination: b(d),
        from,
        to,
    };
    assert_eq!(c.exec(0, lmove("r", "r", Left, Right)), Ok(bulk("1")));
    assert_eq!(range(&mut c, 0, "r"), ["2", "3", "1"]);
    assert_eq!(c.exec(0, lmove("r", "w", Right, Left)), Ok(bulk("1")));
    assert_eq!(range(&mut c, 0, "w"), ["1"]);
    assert_eq!(c.exec(0, lmove("r", "s", Right, Left)), Err(CommandError::WrongType));
    assert_eq!(c.exec(0, lmove("none", "w", Right, Left)), Ok(Reply::Nil));
    let lmpop = Request::LMPop {
        keys: vec![b("none"), b("r")],
        end: Left,
        count: 10,
    };
    assert_eq!(
        c.exec(0, lmpop),
        Ok(Reply::Array(vec![bulk("r"), Reply::Array(vec![bulk("2"), bulk("3")])]))
    );
    // DUMP/RESTORE and COPY keep the list.
    let Ok(Reply::Bulk(dump)) = c.exec(0, Request::Dump(b("w"))) else {
        panic!()
    };
    c.exec(
        0,
        Request::Restore {
            key: b("w2"),
            payload: dump,
            ttl_ms: 0,
            absolute: false,
            replace: false,
        },
    )
    .unwrap();
    assert_eq!(range(&mut c, 0, "w2"), ["1"]);
}

/// Concurrent pushes at the same end in two regions both survive, in the same order everywhere,
/// and each multi-element push stays together.
#[test]
fn concurrent_pushes_both_survive_in_one_order() {
    for seed in 0..20 {
        let mut c = Cluster::new(3, seed);
        c.exec(0, push("q", Right, &["base"])).unwrap();
        c.deliver_all();
        c.exec(0, push("q", Right, &["a1", "a2"])).unwrap();
        c.exec(1, push("q", Right, &["b1", "b2"])).unwrap();
        c.exec(2, push("q", Left, &["c1"])).unwrap();
        c.exec(1, push("q", Left, &["d1"])).unwrap();
        c.deliver_all();
        c.assert_converged(&format!("seed {seed}"));
        let r = range(&mut c, 0, "q");
        assert_eq!(r.len(), 7, "{r:?}");
        for i in 1..3 {
            assert_eq!(range(&mut c, i, "q"), r);
        }
        let at = |v: &str| r.iter().position(|x| x == v).unwrap();
        assert_eq!(at("a2"), at("a1") + 1, "a push's elements stay together: {r:?}");
        assert_eq!(at("b2"), at("b1") + 1, "a push's elements stay together: {r:?}");
        assert!(at("base") < at("a1") && at("base") < at("b1"));
        assert!(at("c1") < at("base") && at("d1") < at("base"));
    }
}

/// Two regions popping the same head concurrently both get it (at-least-once); the element is
/// gone everywhere afterwards, and nothing else is lost.
#[test]
fn concurrent_pops_are_at_least_once() {
    let mut c = Cluster::new(2, 7);
    c.exec(0, push("q", Right, &["j1", "j2", "j3"])).unwrap();
    c.deliver_all();
    assert_eq!(c.exec(0, pop("q", Left)), Ok(bulk("j1")));
    assert_eq!(c.exec(1, pop("q", Left)), Ok(bulk("j1")));
    c.deliver_all();
    c.assert_converged("pops");
    assert_eq!(range(&mut c, 0, "q"), ["j2", "j3"]);
}

/// A pop only removes what its region observed: an element pushed concurrently elsewhere stays.
#[test]
fn a_pop_removes_only_observed_elements() {
    let mut c = Cluster::new(2, 3);
    c.exec(0, push("q", Right, &["a"])).unwrap();
    c.deliver_all();
    c.exec(
        1,
        Request::LTrim {
            key: b("q"),
            start: 1,
            stop: 0,
        },
    )
    .unwrap(); // empties the list, as region 1 sees it
    c.exec(0, push("q", Right, &["b"])).unwrap();
    c.deliver_all();
    c.assert_converged("trim");
    assert_eq!(range(&mut c, 1, "q"), ["b"]);
}

/// Concurrent LSETs of one element: both values are kept, reads show the later (LWW); an LSET
/// concurrent with the element's removal keeps the element with the new value.
#[test]
fn concurrent_lset() {
    let mut c = Cluster::new(2, 5);
    c.exec(0, push("q", Right, &["a", "b"])).unwrap();
    c.deliver_all();
    let lset = |v: &str| Request::LSet {
        key: b("q"),
        index: 0,
        value: b(v),
    };
    c.exec(0, lset("x")).unwrap();
    c.clocks[1] = c.clocks[0] + 100;
    c.exec(1, lset("y")).unwrap();
    c.deliver_all();
    c.assert_converged("lset");
    assert_eq!(range(&mut c, 0, "q"), ["y", "b"]);
    // LSET in one region, LPOP of the same element in the other.
    c.exec(0, lset("z")).unwrap();
    assert_eq!(c.exec(1, pop("q", Left)), Ok(bulk("y")));
    c.deliver_all();
    c.assert_converged("lset vs pop");
    assert_eq!(range(&mut c, 1, "q"), ["z", "b"]);
}

/// Inserts at one place from several regions, in any delivery order: one sequence everywhere.
#[test]
fn concurrent_inserts_converge() {
    for seed in 0..30 {
        let mut c = Cluster::new(3, seed);
        c.exec(0, push("q", Right, &["p", "q"])).unwrap();
        c.deliver_all();
        for i in 0..3 {
            for j in 0..3 {
                c.exec(
                    i,
                    Request::LInsert {
                        key: b("q"),
                        before: j % 2 == 0,
                        pivot: b("q"),
                        element: b(&format!("r{i}{j}")),
                    },
                )
                .unwrap();
                c.deliver_one();
            }
        }
        c.deliver_all();
        c.assert_converged(&format!("seed {seed}"));
        c.check_no_lost_writes(&format!("seed {seed}"));
        assert_eq!(range(&mut c, 0, "q").len(), 11);
    }
}

/// A long-running queue (push at the tail, pop at the head) keeps one-digit positions.
#[test]
fn queue_positions_stay_bounded() {
    let mut c = Cluster::new(2, 9);
    for i in 0..3000 {
        let at = i % 2;
        c.exec(at, push("q", Right, &["job"])).unwrap();
        if i % 3 != 0 {
            c.exec(1 - at, pop("q", Left)).unwrap();
        }
        c.deliver_one();
    }
    c.deliver_all();
    c.assert_converged("queue");
    let st = c.engines[0].key_state(b"q").unwrap();
    let longest = st.list_elems().map(|(p, _)| p.0.len()).max().unwrap_or(0);
    assert!(longest <= 2, "positions grew to {longest} digits");
}

/// The worked example of docs/consistency.md ("Lists: a sequence CRDT"), step by step.
#[test]
fn worked_example_of_consistency_md() {
    let (us, eu) = (0, 1);
    let mut c = Cluster::new(2, 11);
    c.exec(us, push("jobs", Right, &["j1", "j2"])).unwrap();
    c.deliver_all();
    c.exec(us, push("jobs", Right, &["a1", "a2"])).unwrap();
    assert_eq!(c.exec(us, pop("jobs", Left)), Ok(bulk("j1")));
    c.exec(eu, push("jobs", Right, &["b1"])).unwrap();
    c.exec(
        eu,
        Request::LSet {
            key: b("jobs"),
            index: 1,
            value: b("J2"),
        },
    )
    .unwrap();
    assert_eq!(c.exec(eu, pop("jobs", Left)), Ok(bulk("j1")));
    assert_eq!(range(&mut c, us, "jobs"), ["j2", "a1", "a2"]);
    assert_eq!(range(&mut c, eu, "jobs"), ["J2", "b1"]);
    c.deliver_all();
    c.assert_converged("worked example");
    assert_eq!(range(&mut c, us, "jobs"), ["J2", "a1", "a2", "b1"]);
    assert_eq!(range(&mut c, eu, "jobs"), ["J2", "a1", "a2", "b1"]);
}

/// `SORT`: numeric and `ALPHA` orders, `BY` and `GET` patterns (string keys and hash fields),
/// `LIMIT`, and `STORE` as a list; and the replicated `STORE`: a push to the destination made
/// concurrently in another region survives.
#[test]
fn sort_and_sort_store() {
    let sort = |by: Option<&str>, get: &[&str], limit, desc, alpha, store: Option<&str>| Request::Sort {
        key: b("a"),
        by: by.map(b),
        limit,
        get: get.iter().map(|g| b(g)).collect(),
        desc,
        alpha,
        store: store.map(b),
    };
    let bulks = |vs: &[&str]| Reply::Array(vs.iter().map(|v| bulk(v)).collect());
    let mut c = Cluster::new(2, 1);
    c.exec(0, push("a", Right, &["3", "10", "1", "2"])).unwrap();
    assert_eq!(
        c.exec(0, sort(None, &[], None, false, false, None)),
        Ok(bulks(&["1", "2", "3", "10"]))
    );
    assert_eq!(
        c.exec(0, sort(None, &[], None, false, true, None)),
        Ok(bulks(&["1", "10", "2", "3"]))
    );
    assert_eq!(
        c.exec(0, sort(None, &[], Some((1, 2)), true, false, None)),
        Ok(bulks(&["3", "2"]))
    );
    for (k, v) in [("w_1", "9"), ("w_2", "1"), ("w_3", "5")] {
        c.exec(0, super::harness::set(k, v)).unwrap();
    }
    c.exec(
        0,
        Request::HSet {
            key: b("h_2"),
            pairs: vec![(b("name"), b("two"))],
        },
    )
    .unwrap();
    // Missing weights count as 0; ties are ordered by the element.
    assert_eq!(
        c.exec(0, sort(Some("w_*"), &[], None, false, false, None)),
        Ok(bulks(&["10", "2", "3", "1"]))
    );
    assert_eq!(
        c.exec(
            0,
            sort(Some("nosort"), &["#", "h_*->name"], Some((0, 2)), false, false, None)
        ),
        Ok(Reply::Array(vec![bulk("3"), Reply::Nil, bulk("10"), Reply::Nil]))
    );
    // `BY nosort DESC` reads a list from its tail, `LIMIT` counting from there (Redis's sort.c).
    assert_eq!(
        c.exec(0, sort(Some("nosort"), &[], Some((0, 3)), true, false, None)),
        Ok(bulks(&["2", "1", "10"]))
    );
    c.exec(0, push("x", Right, &["word"])).unwrap();
    assert_eq!(
        c.exec(
            0,
            Request::Sort {
                key: b("x"),
                by: None,
                limit: None,
                get: vec![],
                desc: false,
                alpha: false,
                store: None
            }
        ),
        Err(CommandError::Other(
            "One or more scores can't be converted into double".into()
        ))
    );
    c.exec(0, push("dst", Right, &["old"])).unwrap();
    c.deliver_all();
    assert_eq!(
        c.exec(0, sort(None, &[], None, false, false, Some("dst"))),
        Ok(Reply::Int(4))
    );
    c.exec(1, push("dst", Right, &["concurrent"])).unwrap();
    c.deliver_all();
    c.assert_converged("sort store");
    assert_eq!(range(&mut c, 1, "dst"), ["1", "2", "3", "10", "concurrent"]);
}

/// `SORT` on a sorted set sorts its members (by value, `ALPHA`, `BY`); `BY nosort` keeps the
/// score order (`DESC`: highest first); a HyperLogLog is `WRONGTYPE`.
#[test]
fn sort_of_a_sorted_set() {
    let sort = |key: &str, by: Option<&str>, desc, alpha| Request::Sort {
        key: b(key),
        by: by.map(b),
        limit: None,
        get: vec![],
        desc,
        alpha,
        store: None,
    };
    let bulks = |vs: &[&str]| Reply::Array(vs.iter().map(|v| bulk(v)).collect());
    let mut c = Cluster::new(1, 1);
    c.exec(
        0,
        Request::Zset(ZsetRequest::Add {
            key: b("z"),
            flags: ZAddFlags::default(),
            members: vec![(1.0, b("30")), (2.0, b("4")), (3.0, b("100"))],
        }),
    )
    .unwrap();
    assert_eq!(c.exec(0, sort("z", None, false, false)), Ok(bulks(&["4", "30", "100"])));
    assert_eq!(c.exec(0, sort("z", None, false, true)), Ok(bulks(&["100", "30", "4"])));
    assert_eq!(
        c.exec(0, sort("z", Some("nosort"), false, false)),
        Ok(bulks(&["30", "4", "100"]))
    );
    assert_eq!(
        c.exec(0, sort("z", Some("nosort"), true, false)),
        Ok(bulks(&["100", "4", "30"]))
    );
    c.exec(
        0,
        Request::Hll(HllRequest::Add {
            key: b("h"),
            elements: vec![b("a")],
        }),
    )
    .unwrap();
    assert_eq!(c.exec(0, sort("h", None, false, false)), Err(CommandError::WrongType));
}

/// `LMOVE` between two lists replicates as one unit: another region holding only the first op
/// shows neither change, then both at once.
#[test]
fn lmove_is_one_unit() {
    let mut c = Cluster::new(2, 4);
    c.exec(0, push("src", Right, &["a", "b"])).unwrap();
    c.deliver_all();
    let moved = c.exec(
        0,
        Request::LMove {
            source: b("src"),
            destination: b("dst"),
            from: Left,
            to: Right,
        },
    );
    assert_eq!(moved, Ok(bulk("a")));
    let mut ops: Vec<Op> = c
        .inflight
        .drain(..)
        .filter(|(to, _)| *to == 1)
        .map(|(_, op)| op)
        .collect();
    ops.sort_by_key(|op| op.seq);
    ops.dedup_by_key(|op| op.seq);
    assert_eq!(ops.len(), 2);
    let mut out = Output::default();
    c.engines[1].receive(ops[0].clone(), c.clocks[1], &mut out);
    assert_eq!(range(&mut c, 1, "src"), ["a", "b"]);
    assert_eq!(range(&mut c, 1, "dst"), Vec::<String>::new());
    c.engines[1].receive(ops[1].clone(), c.clocks[1], &mut out);
    assert_eq!(range(&mut c, 1, "src"), ["b"]);
    assert_eq!(range(&mut c, 1, "dst"), ["a"]);
    c.deliver_all();
    c.assert_converged("LMOVE");
}
