//! Home regions: `home = "us"` on `phone:*` makes the key single-master. Must show 1 (a
//! registration race of 100 numbers across three regions has one winner each, and every region
//! agrees which) and 2 (a partition between two non-home regions does not stop forwarded writes;
//! a home partitioned away answers `-TRYAGAIN`, never a local success; healing restores writes).

use crate::harness::*;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

pub const PHONE_POLICY: &str = "[[policy]]\nmatch = \"phone:*\"\nhome = \"us\"\n";

#[test]
fn registration_race_has_one_winner_per_number() {
    let up = Up::with_policies(PHONE_POLICY, &[]);
    let l = up.layout.clone();
    const NUMBERS: usize = 100;

    // Three clients, one per region, released together, each registering every number.
    let start = Arc::new(Barrier::new(REGIONS.len()));
    let racers: Vec<_> = REGIONS
        .iter()
        .map(|region| {
            let (l, start) = (l.clone(), start.clone());
            std::thread::spawn(move || {
                let mut con = l.raw(region);
                start.wait();
                (0..NUMBERS)
                    .map(|n| con.cmd(&["SET", &format!("phone:{n}"), region, "NX"]))
                    .collect::<Vec<Resp>>()
            })
        })
        .collect();
    let replies: Vec<Vec<Resp>> = racers
        .into_iter()
        .map(|t| t.join().expect("a racing client panicked"))
        .collect();

    let winners: Vec<&str> = (0..NUMBERS)
        .map(|n| {
            let mut won = Vec::new();
            for (region, theirs) in REGIONS.iter().zip(&replies) {
                match &theirs[n] {
                    r if r.is_ok() => won.push(*region),
                    Resp::Bulk(None) => {}
                    other => panic!("SET phone:{n} {region} NX answered {other:?}"),
                }
            }
            assert_eq!(won.len(), 1, "phone:{n}: regions whose SET NX succeeded: {won:?}");
            won[0]
        })
        .collect();
    let wins = |r: &str| winners.iter().filter(|w| **w == r).count();
    eprintln!(
        "registration race winners: us {}, eu {}, ap {}",
        wins("us"),
        wins("eu"),
        wins("ap")
    );

    // Every region ends up holding the winner's value for every number.
    for region in REGIONS {
        let mut con = l.raw(region);
        eventually(
            &format!("{region} agreeing on all {NUMBERS} registrations"),
            WAIT,
            || {
                (0..NUMBERS)
                    .all(|n| con.cmd(&["GET", &format!("phone:{n}")]) == Resp::Bulk(Some(winners[n].to_string())))
                    .then_some(())
            },
        );
    }
}

fn set_ok(l: &Layout, region: &str, key: &str, value: &str) {
    let reply = l.raw(region).cmd(&["SET", key, value]);
    assert!(reply.is_ok(), "SET {key} {value} in {region}: {reply:?}");
}

#[test]
fn home_partitions_forward_or_refuse() {
    let up = Up::with_policies(PHONE_POLICY, &[]);
    let l = &up.layout;

    // 1. eu and ap cannot talk to each other (cut at both ends); both can still reach the home.
    l.partition("eu", &["ap"]);
    l.partition("ap", &["eu"]);
    for region in ["eu", "ap"] {
        let mut con = l.raw(region);
        for i in 0..5 {
            let key = format!("phone:split:{region}:{i}");
            let reply = con.cmd(&["SET", &key, region, "NX"]);
            assert!(
                reply.is_ok(),
                "forwarded SET {key} NX from {region} during eu-ap partition: {reply:?}"
            );
            // Read your own forwarded write, locally.
            assert_eq!(
                con.cmd(&["GET", &key]),
                Resp::Bulk(Some(region.into())),
                "GET {key} in {region}"
            );
        }
    }
    // The uniqueness check is still global: ap cannot take a number eu registered, though the
    // two cannot see each other.
    let reply = l.raw("ap").cmd(&["SET", "phone:split:eu:0", "ap", "NX"]);
    assert_eq!(
        reply,
        Resp::Bulk(None),
        "ap re-registering eu's number during the partition"
    );
    let mut us = l.raw("us");
    for region in ["eu", "ap"] {
        for i in 0..5 {
            assert_eq!(
                us.cmd(&["GET", &format!("phone:split:{region}:{i}")]),
                Resp::Bulk(Some(region.into())),
                "the home us holds {region}'s forwarded write {i}"
            );
        }
    }
    l.heal("eu", &["ap"]);
    l.heal("ap", &["eu"]);
    l.wait_ready(&REGIONS);

    // 2. The home is cut off from both other regions (at us, both directions).
    l.partition("us", &["eu", "ap"]);
    for region in ["eu", "ap"] {
        let mut con = l.raw(region);
        for (i, args) in [
            vec!["SET", "phone:cut:1", region],
            vec!["SET", "phone:cut:2", region, "NX"],
            vec!["SETNX", "phone:cut:3", region],
            vec!["DEL", "phone:split:eu:1"],
        ]
        .into_iter()
        .enumerate()
        {
            let t0 = Instant::now();
            let reply = con.cmd(&args);
            let took = t0.elapsed();
            let e = reply.error();
            assert!(
                e.starts_with("TRYAGAIN"),
                "{args:?} in {region} (#{i}) with the home cut off: {e}"
            );
            assert!(
                e.contains("us"),
                "the TRYAGAIN error does not name the home region: {e}"
            );
            assert!(took < Duration::from_secs(4), "{args:?} took {took:?} to be refused");
        }
        // Never a local success: nothing of it was written here.
        for k in ["phone:cut:1", "phone:cut:2", "phone:cut:3"] {
            assert_eq!(
                con.cmd(&["GET", k]),
                Resp::Bulk(None),
                "{k} written locally in {region}"
            );
        }
        assert_eq!(
            con.cmd(&["GET", "phone:split:eu:1"]),
            Resp::Bulk(Some("eu".into())),
            "the refused DEL deleted phone:split:eu:1 locally in {region}"
        );
        // HTTP writes of home keys are refused the same way (503).
        let r = http(l.http(region), "PUT", "/v1/kv/phone:cut:4", region.as_bytes());
        assert_eq!(
            r.status,
            503,
            "HTTP PUT of a home key in {region} with the home cut off: {}",
            r.text()
        );
        assert!(r.text().contains("us"), "{}", r.text());
        // Keys without a home still take local writes.
        set_ok(l, region, &format!("free:{region}"), "local");
    }
    assert_eq!(
        us.cmd(&["GET", "phone:cut:1"]),
        Resp::Bulk(None),
        "a refused write reached the home"
    );
    // The home itself keeps serving its keys.
    let reply = us.cmd(&["SET", "phone:cut:home", "us", "NX"]);
    assert!(reply.is_ok(), "SET NX at the home during the partition: {reply:?}");

    // 3. Healed: forwarded writes succeed again (the first once the links are back).
    l.heal("us", &["eu", "ap"]);
    l.wait_ready(&REGIONS);
    for region in ["eu", "ap"] {
        let mut con = l.raw(region);
        let key = format!("phone:healed:{region}");
        eventually(
            &format!("a forwarded write from {region} after healing"),
            WAIT,
            || match con.cmd(&["SET", &key, region, "NX"]) {
                r if r.is_ok() => Some(()),
                Resp::Error(e) if e.starts_with("TRYAGAIN") => None,
                other => panic!("SET {key} NX from {region} after healing: {other:?}"),
            },
        );
        for i in 0..5 {
            let key = format!("phone:healed:{region}:{i}");
            let reply = con.cmd(&["SET", &key, region, "NX"]);
            assert!(reply.is_ok(), "SET {key} NX from {region} after healing: {reply:?}");
        }
    }
    // The number the home registered while cut off is taken for everyone.
    for region in ["eu", "ap"] {
        let reply = l.raw(region).cmd(&["SET", "phone:cut:home", region, "NX"]);
        assert_eq!(
            reply,
            Resp::Bulk(None),
            "{region} re-registering the home's number after healing"
        );
    }
}
