//! Issue 11, "Must show" 3 over real processes: sorted-set `ZADD`/`ZINCRBY`/`ZREM`, `PFADD` and
//! `GEOADD` written concurrently on both sides of a partition converge to identical state in all
//! three regions once it heals, with the outcomes docs/consistency.md states (increments add up,
//! a member removed on one side and re-added on the other stays, HyperLogLog registers merge by
//! max), driven with the `redis` crate.

use crate::harness::*;
use redis::Value as R;

fn q(con: &mut redis::Connection, args: &[&str]) -> R {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(con).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn view(con: &mut redis::Connection) -> Vec<String> {
    [
        &["ZRANGE", "board", "0", "-1", "WITHSCORES"][..],
        &["PFCOUNT", "visitors"],
        &["GEOPOS", "fleet", "van", "car"],
    ]
    .iter()
    .map(|args| format!("{args:?} {:?}", q(con, args)))
    .collect()
}

#[test]
fn sorted_sets_and_hyperloglogs_converge_after_a_partition() {
    let up = Up::start(&[]);
    let l = &up.layout;
    let mut us = l.redis("us");
    let mut eu = l.redis("eu");
    q(&mut us, &["ZADD", "board", "10", "player", "1", "gone", "5", "keeper"]);
    q(&mut us, &["GEOADD", "fleet", "2.17", "41.40", "van"]);
    l.wait_caught_up(&REGIONS, WAIT);

    for peer in ["eu", "ap"] {
        l.set_link("us", peer, r#"{"partitioned": true}"#);
    }
    eventually("us cut off", WAIT, || {
        let st = l.try_status("us")?;
        (peer_of(&st, "eu")["connected"] == false && peer_of(&st, "ap")["connected"] == false).then_some(())
    });

    // Both sides, concurrently: increments on each side, a removal on one side and a re-add of
    // the same member on the other, elements counted on each side.
    for _ in 0..5 {
        q(&mut us, &["ZINCRBY", "board", "1", "player"]);
        q(&mut eu, &["ZINCRBY", "board", "2", "player"]);
    }
    q(&mut us, &["ZREM", "board", "keeper"]);
    q(&mut eu, &["ZADD", "board", "7", "keeper"]);
    q(&mut us, &["ZREM", "board", "gone"]);
    let us_elements: Vec<String> = (0..300).map(|n| format!("u{n}")).collect();
    let eu_elements: Vec<String> = (0..300).map(|n| format!("e{n}")).collect();
    let mut args = vec!["PFADD", "visitors"];
    args.extend(us_elements.iter().map(String::as_str));
    q(&mut us, &args);
    let mut args = vec!["PFADD", "visitors"];
    args.extend(eu_elements.iter().map(String::as_str));
    q(&mut eu, &args);
    q(&mut eu, &["GEOADD", "fleet", "2.19", "41.43", "car"]);

    for peer in ["eu", "ap"] {
        l.set_link("us", peer, "{}");
    }
    l.wait_ready(&REGIONS);
    l.wait_caught_up(&REGIONS, WAIT);

    let mut cons: Vec<redis::Connection> = REGIONS.iter().map(|r| l.redis(r)).collect();
    let agreed = eventually("every region reads the same", WAIT, || {
        let views: Vec<Vec<String>> = cons.iter_mut().map(view).collect();
        views.windows(2).all(|w| w[0] == w[1]).then(|| views[0].clone())
    });
    // 10 + 5×1 + 5×2: every increment counted; `keeper` re-added concurrently with its removal
    // stays (add-wins) at eu's score; `gone` is gone.
    assert_eq!(
        q(&mut cons[2], &["ZRANGE", "board", "0", "-1", "WITHSCORES"]),
        R::Array(vec![
            R::BulkString(b"keeper".to_vec()),
            R::BulkString(b"7".to_vec()),
            R::BulkString(b"player".to_vec()),
            R::BulkString(b"25".to_vec()),
        ]),
        "{agreed:?}"
    );
    // The union of both sides' elements, the same estimate everywhere.
    let R::Int(n) = q(&mut cons[1], &["PFCOUNT", "visitors"]) else {
        panic!("{agreed:?}")
    };
    assert!((590..=610).contains(&n), "PFCOUNT {n}");
    assert_eq!(q(&mut cons[0], &["ZCARD", "fleet"]), R::Int(2));
    assert_eq!(q(&mut cons[0], &["TYPE", "board"]), R::SimpleString("zset".into()));
}

/// `BZPOPMIN` on a key homed in us, blocked in eu: the pop is forwarded to the home, and the
/// wait wakes for a `ZADD` made in ap; `BZMPOP` on a key without a home wakes for a replicated
/// `ZADD`. Every region ends with the popped members gone.
#[test]
fn blocking_sorted_set_pops_wake_on_replicated_writes() {
    let up = Up::with_policies("[[policy]]\nmatch = \"jobs:*\"\nhome = \"us\"\n", &[]);
    let l = up.layout.clone();
    let mut ap = l.redis("ap");
    let l2 = l.clone();
    let homed = std::thread::spawn(move || {
        let mut eu = l2.redis("eu");
        q(&mut eu, &["BZPOPMIN", "jobs:z", "8"])
    });
    let l3 = l.clone();
    let unhomed = std::thread::spawn(move || {
        let mut us = l3.redis("us");
        q(&mut us, &["BZMPOP", "8", "1", "board", "MAX"])
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    q(&mut ap, &["ZADD", "jobs:z", "2", "later", "1", "first"]);
    q(&mut ap, &["ZADD", "board", "7", "top"]);
    let bulk = |s: &str| R::BulkString(s.as_bytes().to_vec());
    assert_eq!(
        homed.join().unwrap(),
        R::Array(vec![bulk("jobs:z"), bulk("first"), bulk("1")])
    );
    assert_eq!(
        unhomed.join().unwrap(),
        R::Array(vec![
            bulk("board"),
            R::Array(vec![R::Array(vec![bulk("top"), bulk("7")])])
        ])
    );
    l.wait_caught_up(&REGIONS, WAIT);
    for region in REGIONS {
        let mut con = l.redis(region);
        assert_eq!(
            q(&mut con, &["ZRANGE", "jobs:z", "0", "-1"]),
            R::Array(vec![bulk("later")]),
            "at {region}"
        );
        assert_eq!(q(&mut con, &["EXISTS", "board"]), R::Int(0), "at {region}");
    }
}
