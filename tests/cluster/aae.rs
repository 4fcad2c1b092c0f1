//! Must show 5 (DESIGN §8.2): divergence is visible and repaired. Three `concord serve` regions
//! with anti-entropy every 300 ms and the test hooks on: after a partition and heal every region
//! reports the same `state_digest` and comparisons ran without repairing anything; a key state
//! forgotten on purpose in one region (no op: what bit rot or a storage bug would do) shows as a
//! different digest under equal applied vectors, and once the region's links heal anti-entropy
//! repairs it: the digests agree again and the repair shows in `/v1/status`, `/metrics` and the
//! log.

use crate::harness::*;
use serde_json::Value;
use std::collections::BTreeMap;

const EXTRA: &str = "[anti_entropy]\ninterval_ms = 300\n\n[testing]\nhooks = true\n";

/// Each region's (applied vector, state digest).
fn views(l: &Layout) -> Option<BTreeMap<&'static str, (Value, String)>> {
    let mut out = BTreeMap::new();
    for r in REGIONS {
        let st = l.try_status(r)?;
        out.insert(r, (st["applied"].clone(), st["state_digest"].as_str()?.to_string()));
    }
    Some(out)
}

/// Wait until every region has the same applied vector and the same digest; the digest.
fn wait_converged(l: &Layout, what: &str) -> String {
    eventually(what, WAIT, || {
        let v = views(l)?;
        let (a0, d0) = v["us"].clone();
        v.values().all(|(a, d)| *a == a0 && *d == d0).then_some(d0)
    })
}

/// Comparisons `region` completed with each peer so far.
fn rounds(l: &Layout, region: &str) -> BTreeMap<String, u64> {
    let st = l.status(region);
    st["anti_entropy"]["peers"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v["rounds"].as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

fn keys_repaired_total(l: &Layout, region: &str) -> u64 {
    let st = l.status(region);
    st["anti_entropy"]["keys_repaired_total"]
        .as_u64()
        .unwrap_or_else(|| panic!("no anti_entropy.keys_repaired_total in {region}'s status: {st}"))
}

/// Wait until every region completed `more` further comparisons with each of its peers.
fn wait_rounds(l: &Layout, more: u64) {
    let before: BTreeMap<&str, BTreeMap<String, u64>> = REGIONS.iter().map(|r| (*r, rounds(l, r))).collect();
    for r in REGIONS {
        eventually(&format!("{r}: {more} more comparisons with each peer"), WAIT, || {
            let now = rounds(l, r);
            REGIONS
                .iter()
                .filter(|p| **p != r)
                .all(|p| {
                    let was = before[r].get(*p).copied().unwrap_or(0);
                    now.get(*p).copied().unwrap_or(0) >= was + more
                })
                .then_some(())
        });
    }
}

#[test]
fn anti_entropy_makes_divergence_visible_and_repairs_it() {
    let mut c = ServeCluster::new(EXTRA);
    c.start_all();
    let l = c.layout.clone();
    let mut con: Vec<redis::Connection> = REGIONS.iter().map(|r| l.redis(r)).collect();

    // Data of each type, written in every region.
    for i in 0..60 {
        set(&mut con[i % 3], &format!("k{i}"), &format!("v{i}"));
    }
    for i in 0..30 {
        let _: i64 = redis::cmd("INCR").arg("counter").query(&mut con[i % 3]).unwrap();
    }
    let _: i64 = redis::cmd("SADD")
        .arg("tags")
        .arg("a")
        .arg("b")
        .query(&mut con[2])
        .unwrap();
    let _: i64 = redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("1")
        .query(&mut con[1])
        .unwrap();

    // A partition with writes on both sides, then heal.
    l.partition("us", &["eu", "ap"]);
    for i in 0..20 {
        set(&mut con[0], &format!("p{i}"), "from-us");
        set(&mut con[1], &format!("p{i}"), "from-eu");
    }
    let _: i64 = redis::cmd("SREM").arg("tags").arg("a").query(&mut con[1]).unwrap();
    l.heal("us", &["eu", "ap"]);
    l.wait_ready(&REGIONS);
    let digest = wait_converged(&l, "equal applied vectors and state digests after the heal");
    assert_eq!(digest.len(), 16, "state_digest is 16 hex digits: {digest}");

    // CONCORD.STATUS renders the same status model.
    let resp = l.raw("ap").cmd(&["CONCORD.STATUS"]);
    let text = format!("{resp:?}");
    assert!(
        text.contains(&digest),
        "CONCORD.STATUS lacks state_digest {digest}: {text}"
    );

    // Comparisons run, and a correct cluster never needs a repair, not even while every region
    // writes the same keys: differences while ops are in flight are left to replication.
    let writers: Vec<_> = REGIONS
        .iter()
        .map(|r| {
            let mut w = l.redis(r);
            let r = r.to_string();
            std::thread::spawn(move || {
                let until = std::time::Instant::now() + std::time::Duration::from_millis(1500);
                let mut i = 0u64;
                while std::time::Instant::now() < until {
                    set(&mut w, &format!("hot{}", i % 10), &format!("{r}-{i}"));
                    let _: i64 = redis::cmd("INCR").arg("hot-counter").query(&mut w).unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    wait_rounds(&l, 2);
    for w in writers {
        w.join().expect("writer thread");
    }
    let digest = wait_converged(&l, "equal state digests after concurrent writes");
    wait_rounds(&l, 1);
    for r in REGIONS {
        assert_eq!(keys_repaired_total(&l, r), 0, "{r} repaired keys in a correct cluster");
    }

    // Divergence on purpose: eu, cut off from everyone, forgets one key's state.
    l.partition("eu", &["us", "ap"]);
    let r = http(l.http("eu"), "POST", "/v1/admin/test/corrupt/k7", b"");
    assert_eq!(r.status, 200, "corrupt k7 in eu: {}", r.text());
    let r = http(l.http("eu"), "POST", "/v1/admin/test/corrupt/no-such-key", b"");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(get(&mut con[1], "k7"), None, "eu still has k7");
    assert_eq!(get(&mut con[0], "k7").as_deref(), Some("v7"));

    // Visible: the same applied vectors, a different digest in eu.
    let v = views(&l).expect("statuses");
    assert!(
        v["us"].0 == v["eu"].0 && v["ap"].0 == v["eu"].0,
        "applied vectors should still agree: {v:?}"
    );
    assert_eq!(v["us"].1, digest);
    assert_eq!(v["ap"].1, digest);
    assert_ne!(v["eu"].1, digest, "eu's digest does not show the lost key");
    // Anti-entropy honours the partition: several intervals later eu still lacks k7, and us's
    // comparisons with eu fail.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(get(&mut con[1], "k7"), None, "k7 reached eu through the partition");
    let us_view = l.status("us")["anti_entropy"]["peers"]["eu"].clone();
    assert!(
        us_view["last_error"].is_string(),
        "us compared with a partitioned eu: {us_view}"
    );

    // Repaired once eu's links heal: the same digest everywhere, k7 back in eu.
    l.heal("eu", &["us", "ap"]);
    l.wait_ready(&REGIONS);
    eventually("k7 repaired in eu", WAIT, || {
        (get(&mut con[1], "k7").as_deref() == Some("v7")).then_some(())
    });
    wait_converged(&l, "equal state digests after the repair");

    // The repair shows: exactly one key repaired, in eu only.
    assert_eq!(keys_repaired_total(&l, "eu"), 1);
    for r in ["us", "ap"] {
        assert_eq!(keys_repaired_total(&l, r), 0, "{r} repaired keys it never lost");
    }
    let st = l.status("eu");
    let aae = &st["anti_entropy"];
    assert!(aae["repairs_total"].as_u64() >= Some(1), "{aae}");
    assert_eq!(aae["interval_ms"], 300);
    let repaired_from: Vec<&String> = aae["peers"]
        .as_object()
        .expect("peers")
        .iter()
        .filter(|(_, p)| p["keys_repaired_total"] == 1)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(repaired_from.len(), 1, "one peer's states repaired eu: {aae}");
    let peer = &aae["peers"][repaired_from[0].as_str()];
    assert!(peer["last_comparison_ms"].as_u64().is_some(), "{peer}");
    assert_eq!(aae["leaves_repaired_total"], 1, "one key range repaired: {aae}");
    assert_eq!(peer["leaves_repaired_total"], 1, "{peer}");
    let metrics = http(l.http("eu"), "GET", "/metrics", b"").text();
    let line = format!(
        "concord_aae_keys_repaired_total{{region=\"eu\",peer=\"{}\"}} 1",
        repaired_from[0]
    );
    assert!(metrics.contains(&line), "no `{line}` in eu's metrics:\n{metrics}");
    let log = c.log("eu");
    assert!(
        log.contains("anti-entropy repaired keys") && log.contains("bug or bit rot"),
        "eu's log has no repair warning:\n{log}"
    );
}

/// In a star, comparisons follow the topology's links (a leaf with the hub, the hub with every
/// leaf, never leaf with leaf), and a key a leaf lost is repaired from the hub.
#[test]
fn anti_entropy_follows_a_star() {
    let mut c = ServeCluster::new(&format!("topology = \"star\"\nhub = \"us\"\n{EXTRA}"));
    c.start_all();
    let l = c.layout.clone();
    let mut us = l.redis("us");
    for i in 0..20 {
        set(&mut us, &format!("s{i}"), &format!("v{i}"));
    }
    wait_converged(&l, "equal digests in a star");
    wait_rounds_with(&l, &[("us", "eu"), ("us", "ap"), ("eu", "us"), ("ap", "us")], 1);
    for (leaf, other) in [("eu", "ap"), ("ap", "eu")] {
        let peers = l.status(leaf)["anti_entropy"]["peers"].clone();
        assert!(
            peers.get(other).is_none(),
            "leaf {leaf} compared with leaf {other}: {peers}"
        );
    }

    let r = http(l.http("ap"), "POST", "/v1/admin/test/corrupt/s3", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let mut ap = l.redis("ap");
    eventually("s3 repaired in ap", WAIT, || {
        (get(&mut ap, "s3").as_deref() == Some("v3")).then_some(())
    });
    wait_converged(&l, "equal digests after the repair in a star");
    assert_eq!(keys_repaired_total(&l, "ap"), 1);
    let st = l.status("ap");
    assert_eq!(st["anti_entropy"]["peers"]["us"]["keys_repaired_total"], 1, "{st}");
}

/// Wait until each (region, peer) pair completed `more` further comparisons.
fn wait_rounds_with(l: &Layout, pairs: &[(&str, &str)], more: u64) {
    let before: Vec<u64> = pairs
        .iter()
        .map(|(r, p)| rounds(l, r).get(*p).copied().unwrap_or(0))
        .collect();
    for ((r, p), was) in pairs.iter().zip(before) {
        eventually(&format!("{r}: {more} more comparisons with {p}"), WAIT, || {
            (rounds(l, r).get(*p).copied().unwrap_or(0) >= was + more).then_some(())
        });
    }
}
