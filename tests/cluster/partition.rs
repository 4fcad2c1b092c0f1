//! Must show 2: during a partition set through the admin API, concurrent SETs on one key in `us`
//! and `eu` → after heal, under `siblings` every region holds both siblings and returns the same
//! GET winner; under `lww` one winner everywhere and the loser in the conflict log; 1,000 INCRs
//! spread over the regions → exactly 1,000 everywhere; SADD/SREM across regions follow add-wins.

use crate::harness::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// One version in a `CONCORD.SIBLINGS` reply: value (nil for a delete), region, HLC, dot.
type Sibling = (Option<String>, String, String, String);

fn incr(con: &mut redis::Connection, key: &str) {
    redis::cmd("INCR")
        .arg(key)
        .query::<i64>(con)
        .unwrap_or_else(|e| panic!("INCR {key}: {e}"));
}

fn smembers(con: &mut redis::Connection, key: &str) -> BTreeSet<String> {
    redis::cmd("SMEMBERS")
        .arg(key)
        .query(con)
        .unwrap_or_else(|e| panic!("SMEMBERS {key}: {e}"))
}

/// Cut `us` off from both other regions (at `us`, which cuts both directions of each link), and
/// wait until every side sees the links down.
fn partition_us(l: &Layout) {
    for peer in ["eu", "ap"] {
        l.set_link("us", peer, r#"{"partitioned": true}"#);
    }
    eventually("us cut off from eu and ap on every side", WAIT, || {
        let us = l.try_status("us")?;
        let eu = l.try_status("eu")?;
        let ap = l.try_status("ap")?;
        let down = |st: &Value, peer: &str| peer_of(st, peer)["connected"] == false;
        (down(&us, "eu") && down(&us, "ap") && down(&eu, "us") && down(&ap, "us")).then_some(())
    });
    let st = l.status("us");
    let warnings = st["warnings"].to_string();
    assert!(
        warnings.contains("partitioned"),
        "us's status does not show the admin partition: {warnings}"
    );
    assert_eq!(peer_of(&st, "eu")["link_faults"]["partitioned"], true, "{st}");
}

fn heal_us(l: &Layout) {
    for peer in ["eu", "ap"] {
        l.set_link("us", peer, "{}");
    }
    l.wait_ready(&REGIONS);
}

#[test]
fn partition_then_heal_converges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies.toml");
    std::fs::write(&policies, "[[policy]]\nmatch = \"s:*\"\nstrings = \"siblings\"\n").unwrap();
    let up = Up::start_in(dir, &["--policies", policies.to_str().unwrap()]);
    let l = &up.layout;
    let mut con: Vec<redis::Connection> = REGIONS.iter().map(|r| l.redis(r)).collect();
    let idx = |r: &str| REGIONS.iter().position(|x| *x == r).unwrap();

    // Before the partition: 300 INCRs round-robin, and a set everyone has.
    let mut incrs = 0;
    for i in 0..300 {
        incr(&mut con[i % 3], "counter");
        incrs += 1;
    }
    let added: i64 = redis::cmd("SADD")
        .arg("tags")
        .arg("x")
        .arg("y")
        .query(&mut con[idx("ap")])
        .unwrap();
    assert_eq!(added, 2);
    for r in REGIONS {
        let c = &mut con[idx(r)];
        eventually(&format!("tags {{x, y}} in {r}"), WAIT, || {
            (smembers(c, "tags").len() == 2).then_some(())
        });
    }

    partition_us(l);

    // Concurrent writes on both sides of the cut.
    set(&mut con[idx("us")], "s:cart", "from-us");
    set(&mut con[idx("eu")], "s:cart", "from-eu");
    set(&mut con[idx("us")], "l:owner", "us-value");
    set(&mut con[idx("eu")], "l:owner", "eu-value");
    // Add-wins: us re-adds x while eu removes it; eu also removes y, which nobody re-adds.
    let _: i64 = redis::cmd("SADD")
        .arg("tags")
        .arg("x")
        .query(&mut con[idx("us")])
        .unwrap();
    let removed: i64 = redis::cmd("SREM")
        .arg("tags")
        .arg("x")
        .arg("y")
        .query(&mut con[idx("eu")])
        .unwrap();
    assert_eq!(removed, 2, "SREM x y in eu");
    // 400 INCRs during the partition, on both sides.
    for i in 0..400 {
        incr(&mut con[i % 3], "counter");
        incrs += 1;
    }

    // The partition holds: ap gets eu's writes but us does not (and the other way round).
    let ap = &mut con[idx("ap")];
    eventually("eu's l:owner in ap", WAIT, || {
        (get(ap, "l:owner").as_deref() == Some("eu-value")).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        get(&mut con[idx("us")], "l:owner").as_deref(),
        Some("us-value"),
        "us saw eu's write through the partition"
    );
    assert_eq!(
        get(&mut con[idx("eu")], "l:owner").as_deref(),
        Some("eu-value"),
        "eu saw us's write through the partition"
    );
    let during: i64 = redis::cmd("GET").arg("counter").query(&mut con[idx("us")]).unwrap();
    assert!(
        during < incrs,
        "us counts {during} during the partition: it must miss eu's and ap's INCRs"
    );

    heal_us(l);

    // The remaining 300 INCRs after heal.
    for i in 0..300 {
        incr(&mut con[i % 3], "counter");
        incrs += 1;
    }
    assert_eq!(incrs, 1000);

    // Counters: exactly 1000 everywhere.
    for r in REGIONS {
        let c = &mut con[idx(r)];
        let mut last = None;
        eventually(&format!("counter = 1000 in {r}"), WAIT, || {
            last = get(c, "counter");
            (last.as_deref() == Some("1000")).then_some(())
        });
    }
    l.wait_caught_up(&REGIONS, WAIT);
    for r in REGIONS {
        assert_eq!(
            get(&mut con[idx(r)], "counter").as_deref(),
            Some("1000"),
            "{r} after catch-up"
        );
    }

    // Siblings: both values held everywhere, the same GET winner everywhere.
    let mut winners = BTreeSet::new();
    for r in REGIONS {
        let doc = eventually(&format!("two siblings of s:cart in {r}"), WAIT, || {
            let resp = http(l.http(r), "GET", "/v1/kv/s:cart", b"");
            let doc = resp.json();
            (doc["siblings"].as_array().map(Vec::len) == Some(2)).then_some(doc)
        });
        let values: BTreeSet<String> = doc["siblings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["value"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(
            values,
            ["from-eu", "from-us"].iter().map(|s| s.to_string()).collect(),
            "{r}: {doc}"
        );
        // CONCORD.SIBLINGS: [context, [[value, region, hlc, dot], ...]]: exactly the two
        // versions, each from the region that wrote it, with the context HTTP shows.
        let (context, siblings): (String, Vec<Sibling>) = redis::cmd("CONCORD.SIBLINGS")
            .arg("s:cart")
            .query(&mut con[idx(r)])
            .unwrap_or_else(|e| panic!("{r}: CONCORD.SIBLINGS s:cart: {e}"));
        let by_region: BTreeSet<(Option<String>, String)> = siblings
            .iter()
            .map(|(v, region, _, _)| (v.clone(), region.clone()))
            .collect();
        assert_eq!(
            (siblings.len(), by_region),
            (
                2,
                [("from-eu", "eu"), ("from-us", "us")]
                    .iter()
                    .map(|(v, region)| (Some(v.to_string()), region.to_string()))
                    .collect()
            ),
            "{r}: CONCORD.SIBLINGS s:cart shows {siblings:?}"
        );
        assert_eq!(
            context,
            doc["context"].as_str().unwrap_or(""),
            "{r}: RESP and HTTP contexts differ"
        );
        let resp_dots: BTreeSet<&str> = siblings.iter().map(|(_, _, _, dot)| dot.as_str()).collect();
        let http_dots: BTreeSet<&str> = doc["siblings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["dot"].as_str())
            .collect();
        assert_eq!(resp_dots, http_dots, "{r}: RESP and HTTP show different versions");
        winners.insert(get(&mut con[idx(r)], "s:cart").expect("s:cart has a value"));
    }
    assert_eq!(
        winners.len(),
        1,
        "regions return different GET winners for s:cart: {winners:?}"
    );

    // LWW: one winner everywhere (RESP and HTTP agree), the loser in some region's conflict log.
    let mut lww = BTreeSet::new();
    for r in REGIONS {
        let v = get(&mut con[idx(r)], "l:owner").expect("l:owner has a value");
        let doc = http(l.http(r), "GET", "/v1/kv/l:owner", b"").json();
        assert_eq!(doc["value"], v.as_str(), "{r}: HTTP and RESP disagree: {doc}");
        assert_eq!(doc["policy"], "lww", "{r}: {doc}");
        lww.insert(v);
    }
    assert_eq!(lww.len(), 1, "regions disagree on the lww winner of l:owner: {lww:?}");
    let winner = lww.into_iter().next().unwrap();
    let loser = if winner == "us-value" { "eu-value" } else { "us-value" };
    let mut logged_by = Vec::new();
    for r in REGIONS {
        let list = http(l.http(r), "GET", "/v1/conflicts?limit=1000", b"").json();
        let found = list["conflicts"].as_array().into_iter().flatten().any(|c| {
            c["key"] == "l:owner"
                && c["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|v| v["value"] == loser)
        });
        if found {
            logged_by.push(r);
        }
    }
    assert!(
        !logged_by.is_empty(),
        "the lww loser {loser:?} of l:owner is in no region's conflict log"
    );
    // The RESP view of the same log.
    let r = logged_by[0];
    let records: Vec<String> = redis::cmd("CONCORD.CONFLICTS")
        .arg(1000)
        .query(&mut con[idx(r)])
        .unwrap();
    assert!(
        records.iter().any(|c| c.contains("l:owner") && c.contains(loser)),
        "CONCORD.CONFLICTS in {r} lacks the loser {loser:?}: {records:?}"
    );
    eprintln!("lww winner of l:owner: {winner:?}; loser {loser:?} logged by {logged_by:?}");

    // Add-wins: x (re-added in us while eu removed it) is present everywhere; y is gone.
    for r in REGIONS {
        let c = &mut con[idx(r)];
        let members = smembers(c, "tags");
        assert_eq!(
            members,
            ["x".to_string()].into_iter().collect(),
            "{r}: tags after heal (add-wins: x stays, y removed)"
        );
    }
}
