//! Issue 11, item 3 over real processes: the commands beyond DESIGN §6 written concurrently on
//! both sides of a partition (`SPOP SMOVE …STORE INCRBYFLOAT SETBIT EXPIRE NX RENAME GETEX`)
//! converge to the same values in all three regions once it heals, with the outcomes
//! docs/consistency.md states (the later `EXPIRE NX` deadline, one `INCRBYFLOAT` result with the
//! other in the conflict log, add-wins against a `…STORE`).

use crate::harness::*;
use redis::Value as R;

fn q(con: &mut redis::Connection, args: &[&str]) -> R {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(con).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// What every region must agree on, read in one region.
fn view(con: &mut redis::Connection) -> Vec<String> {
    [
        &["SMEMBERS", "jobs"][..],
        &["SMEMBERS", "queue"],
        &["SMEMBERS", "done"],
        &["SMEMBERS", "union"],
        &["GET", "price"],
        &["GET", "bits"],
        &["PEXPIRETIME", "session"],
        &["EXISTS", "old-name"],
        &["SMEMBERS", "new-name"],
        &["HGETALL", "h"],
    ]
    .iter()
    .map(|args| {
        let v = q(con, args);
        // Set replies are unordered on the wire: sort them.
        match v {
            R::Array(mut items) | R::Set(mut items) if args[0] == "SMEMBERS" => {
                items.sort_by_key(|i| format!("{i:?}"));
                format!("{args:?} {items:?}")
            }
            other => format!("{args:?} {other:?}"),
        }
    })
    .collect()
}

#[test]
fn breadth_commands_converge_after_a_partition() {
    let up = Up::start(&[]);
    let l = &up.layout;
    let mut us = l.redis("us");
    let mut eu = l.redis("eu");
    q(&mut us, &["SADD", "jobs", "j1", "j2", "j3"]);
    q(&mut us, &["SADD", "queue", "q1", "q2", "q3"]);
    q(&mut us, &["SADD", "other", "x"]);
    q(&mut us, &["SET", "price", "10"]);
    q(&mut us, &["SET", "session", "token"]);
    q(&mut us, &["SADD", "old-name", "a", "b"]);
    q(&mut us, &["HSET", "h", "n", "1"]);
    l.wait_caught_up(&REGIONS, WAIT);

    for peer in ["eu", "ap"] {
        l.set_link("us", peer, r#"{"partitioned": true}"#);
    }
    eventually("us cut off", WAIT, || {
        let st = l.try_status("us")?;
        (peer_of(&st, "eu")["connected"] == false && peer_of(&st, "ap")["connected"] == false).then_some(())
    });

    // Both sides of the partition, concurrently.
    let popped_us = q(&mut us, &["SPOP", "jobs"]);
    let popped_eu = q(&mut eu, &["SPOP", "jobs"]);
    assert_eq!(q(&mut us, &["SMOVE", "queue", "done", "q3"]), R::Int(1));
    q(&mut eu, &["SADD", "queue", "q4"]);
    q(&mut us, &["SUNIONSTORE", "union", "queue", "other"]);
    q(&mut eu, &["SADD", "union", "from-eu"]);
    q(&mut us, &["INCRBYFLOAT", "price", "0.5"]);
    q(&mut eu, &["INCRBYFLOAT", "price", "2"]);
    q(&mut us, &["SETBIT", "bits", "1", "1"]);
    q(&mut eu, &["SETBIT", "bits", "6", "1"]);
    assert_eq!(q(&mut us, &["EXPIRE", "session", "1000", "NX"]), R::Int(1));
    assert_eq!(q(&mut eu, &["EXPIRE", "session", "9000", "NX"]), R::Int(1));
    q(&mut us, &["RENAME", "old-name", "new-name"]);
    q(&mut eu, &["HINCRBYFLOAT", "h", "n", "0.25"]);
    // Each side popped something (both may have popped the same member: at-least-once).
    assert!(matches!(popped_us, R::BulkString(_)) && matches!(popped_eu, R::BulkString(_)));

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
    // The later NX deadline (eu's 9000 s) won everywhere.
    let at: i64 = match q(&mut cons[0], &["PEXPIRETIME", "session"]) {
        R::Int(n) => n,
        other => panic!("{other:?}"),
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        at - now_ms > 5_000_000,
        "session expires in {} ms: {agreed:?}",
        at - now_ms
    );
    // One INCRBYFLOAT result, not the sum; the other is in the conflict log.
    let price = q(&mut cons[0], &["GET", "price"]);
    assert!(
        price == R::BulkString(b"10.5".to_vec()) || price == R::BulkString(b"12".to_vec()),
        "{price:?}"
    );
    let conflicts = format!("{:?}", q(&mut cons[0], &["CONCORD.CONFLICTS", "100"]));
    assert!(conflicts.contains("price"), "{conflicts}");
    // The add made concurrently with SUNIONSTORE survived; the renamed set moved.
    let union = format!("{:?}", q(&mut cons[0], &["SMEMBERS", "union"]));
    assert!(union.contains("from-eu"), "{union}");
    assert_eq!(q(&mut cons[2], &["EXISTS", "old-name"]), R::Int(0));
    assert_eq!(q(&mut cons[2], &["SCARD", "new-name"]), R::Int(2));
    // SMOVE: q3 is in `done`, not in `queue`, which also has eu's q4.
    assert_eq!(q(&mut cons[1], &["SISMEMBER", "done", "q3"]), R::Int(1));
    assert_eq!(q(&mut cons[1], &["SISMEMBER", "queue", "q3"]), R::Int(0));
    assert_eq!(q(&mut cons[1], &["SISMEMBER", "queue", "q4"]), R::Int(1));
    // SPOP: each side removed what it popped (the same member if both drew it).
    let left = q(&mut cons[1], &["SCARD", "jobs"]);
    let expected = if popped_us == popped_eu { 2 } else { 1 };
    assert_eq!(left, R::Int(expected), "{popped_us:?} {popped_eu:?}");
}
