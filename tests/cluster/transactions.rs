//! Issue 11, "Must show" 3 for `MULTI`/`EXEC` over real processes: a transaction's writes are
//! never seen partly in another region — not while replication streams, not across a partition
//! and its heal — and transactions made on both sides of a partition converge everywhere. Driven
//! with the `redis` crate (`redis::pipe().atomic()` sends `MULTI` … `EXEC`).

use crate::harness::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pair(con: &mut redis::Connection) -> (i64, i64) {
    let (a, b): (Option<i64>, Option<i64>) = redis::cmd("MGET").arg("tx:a").arg("tx:b").query(con).unwrap();
    (a.unwrap_or(0), b.unwrap_or(0))
}

#[test]
fn transactions_are_seen_whole_in_other_regions_across_a_partition() {
    let up = Up::start(&[]);
    let l = &up.layout;
    let mut us = l.redis("us");
    let done = Arc::new(AtomicBool::new(false));
    // Readers in eu and ap: `MGET` reads both keys at one instant; a transaction increments both,
    // so any instant where they differ shows part of a transaction.
    let readers: Vec<_> = ["eu", "ap"]
        .into_iter()
        .map(|region| {
            let mut con = l.redis(region);
            let done = done.clone();
            std::thread::spawn(move || {
                let (mut reads, mut max) = (0u64, 0i64);
                while !done.load(Ordering::Acquire) {
                    let (a, b) = pair(&mut con);
                    assert_eq!(a, b, "{region} saw part of a transaction: tx:a={a} tx:b={b}");
                    max = max.max(a);
                    reads += 1;
                }
                (reads, max)
            })
        })
        .collect();

    const N: i64 = 300;
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 1..=N {
        // A partition between us and eu for the middle third: eu catches up after the heal.
        if i == N / 3 {
            l.set_link("us", "eu", r#"{"partitioned": true}"#);
        }
        if i == 2 * N / 3 {
            l.set_link("us", "eu", "{}");
        }
        let (a, b): (i64, i64) = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg("tx:a")
            .cmd("INCR")
            .arg("tx:b")
            .query(&mut us)
            .unwrap();
        assert_eq!((a, b), (i, i));
        assert!(Instant::now() < deadline, "300 transactions took over 60 s");
    }
    l.wait_caught_up(&REGIONS, WAIT);
    done.store(true, Ordering::Release);
    for (region, r) in ["eu", "ap"].into_iter().zip(readers) {
        let (reads, max) = r.join().unwrap_or_else(|_| panic!("the {region} reader failed"));
        assert!(reads > 10, "{region} read only {reads} times");
        assert!(max > 0, "{region} never saw a transaction while they ran");
    }
    for region in REGIONS {
        assert_eq!(pair(&mut l.redis(region)), (N, N), "{region} after catching up");
    }
}

#[test]
fn transactions_on_both_sides_of_a_partition_converge() {
    let up = Up::start(&[]);
    let l = &up.layout;
    for peer in ["eu", "ap"] {
        l.set_link("us", peer, r#"{"partitioned": true}"#);
    }
    eventually("us cut off", WAIT, || {
        let st = l.try_status("us")?;
        (peer_of(&st, "eu")["connected"] == false && peer_of(&st, "ap")["connected"] == false).then_some(())
    });
    for (region, tag) in [("us", "u"), ("eu", "e")] {
        let mut con = l.redis(region);
        for i in 0..20 {
            let item = format!("{tag}{i}");
            let _: () = redis::pipe()
                .atomic()
                .cmd("SADD")
                .arg("tx:set")
                .arg(&item)
                .ignore()
                .cmd("RPUSH")
                .arg("tx:list")
                .arg(&item)
                .ignore()
                .cmd("INCR")
                .arg("tx:n")
                .ignore()
                .query(&mut con)
                .unwrap();
        }
    }
    for peer in ["eu", "ap"] {
        l.set_link("us", peer, "{}");
    }
    l.wait_caught_up(&REGIONS, WAIT);
    let view = |region: &str| {
        let mut con = l.redis(region);
        let mut set: Vec<String> = redis::cmd("SMEMBERS").arg("tx:set").query(&mut con).unwrap();
        set.sort();
        let list: Vec<String> = redis::cmd("LRANGE")
            .arg("tx:list")
            .arg(0)
            .arg(-1)
            .query(&mut con)
            .unwrap();
        let n: i64 = redis::cmd("GET").arg("tx:n").query(&mut con).unwrap();
        (set, list, n)
    };
    let first = view("us");
    assert_eq!(first.0.len(), 40, "every transaction's SADD: {:?}", first.0);
    assert_eq!(first.1.len(), 40, "every transaction's RPUSH: {:?}", first.1);
    assert_eq!(first.2, 40, "the INCRs of both sides add up (a counter)");
    for region in ["eu", "ap"] {
        assert_eq!(view(region), first, "{region} differs from us");
    }
}
