//! Ack levels: `ack = "all"` in a policy (RESP) and `?ack=` on HTTP writes. The writer is answered
//! once enough other regions applied the write; at the timeout (`ack_timeout_ms = 1000` here) it
//! is told honestly how many have it (`-NOTACKED`, HTTP 202) and the write is not undone. Under
//! `siblings`, a write that leaves concurrent versions is reported (`-CONFLICT`, HTTP 409).

use crate::harness::*;
use std::time::{Duration, Instant};

const EXTRA: &str = "ack_timeout_ms = 1000\n\n[[policy]]\nmatch = \"cart:*\"\nstrings = \"siblings\"\nack = \"all\"\n";

fn cluster() -> ServeCluster {
    let mut c = ServeCluster::new(EXTRA);
    c.start_all();
    c
}

fn put(l: &Layout, region: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let r = http(l.http(region), "PUT", path, body.as_bytes());
    let doc = if r.status == 400 || r.status < 300 || r.status == 409 {
        r.json()
    } else {
        panic!("PUT {path} in {region}: {} {}", r.status, r.text())
    };
    (r.status, doc)
}

#[test]
fn ack_all_waits_and_reports_timeouts() {
    let c = cluster();
    let l = &c.layout;
    let mut us = l.raw("us");

    // Everyone connected: the policy's ack = all is met.
    let t0 = Instant::now();
    let reply = us.cmd(&["SET", "cart:1", "a"]);
    assert!(reply.is_ok(), "SET cart:1 with ack = all, all connected: {reply:?}");
    assert!(t0.elapsed() < Duration::from_millis(900), "took {:?}", t0.elapsed());
    // Acknowledged by all means applied by all.
    for region in ["eu", "ap"] {
        assert_eq!(
            l.raw(region).cmd(&["GET", "cart:1"]),
            Resp::Bulk(Some("a".into())),
            "{region}"
        );
    }

    // HTTP ?ack= on a key whose policy has no ack level.
    let (status, doc) = put(l, "us", "/v1/kv/x?ack=all", "v1");
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["acked_regions"], 2, "{doc}");
    assert_eq!(doc["wanted_regions"], 2, "{doc}");
    assert_eq!(doc["timed_out"], false, "{doc}");
    let (status, doc) = put(l, "us", "/v1/kv/x?ack=bogus", "v2");
    assert_eq!(status, 400, "{doc}");
    assert!(doc["error"].as_str().unwrap_or("").contains("bogus"), "{doc}");
    // The refused write did not happen.
    assert_eq!(us.cmd(&["GET", "x"]), Resp::Bulk(Some("v1".into())));
    // The policy's level applies to HTTP writes too.
    let (status, doc) = put(l, "us", "/v1/kv/cart:h", "h");
    assert_eq!((status, &doc["acked_regions"]), (200, &serde_json::json!(2)), "{doc}");

    // ap cut off (at ap, from us and eu).
    l.partition("ap", &["us", "eu"]);
    let t0 = Instant::now();
    let reply = us.cmd(&["SET", "cart:2", "b"]);
    let took = t0.elapsed();
    let e = reply.error();
    assert!(e.starts_with("NOTACKED"), "SET cart:2 with ap partitioned: {e}");
    assert!(
        e.contains("1 of the 2"),
        "NOTACKED does not say how many regions have it: {e}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "NOTACKED after {took:?} (ack_timeout_ms = 1000)"
    );
    // Not undone: here, and replicated to eu.
    assert_eq!(us.cmd(&["GET", "cart:2"]), Resp::Bulk(Some("b".into())));
    let mut eu = l.raw("eu");
    eventually("cart:2 in eu", WAIT, || {
        (eu.cmd(&["GET", "cart:2"]) == Resp::Bulk(Some("b".into()))).then_some(())
    });

    // HTTP: all → 202 with the honest count; majority (1 other of 3 regions) → 200.
    let t0 = Instant::now();
    let (status, doc) = put(l, "us", "/v1/kv/y?ack=all", "y1");
    assert_eq!(status, 202, "{doc}");
    assert_eq!(doc["acked_regions"], 1, "{doc}");
    assert_eq!(doc["timed_out"], true, "{doc}");
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "202 after {:?}",
        t0.elapsed()
    );
    let (status, doc) = put(l, "us", "/v1/kv/y?ack=majority", "y2");
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["acked_regions"], 1, "{doc}");
    assert_eq!(doc["wanted_regions"], 1, "{doc}");
    let (status, doc) = put(l, "us", "/v1/kv/y?ack=one", "y3");
    assert_eq!((status, &doc["acked_regions"]), (200, &serde_json::json!(1)), "{doc}");
    assert_eq!(us.cmd(&["GET", "y"]), Resp::Bulk(Some("y3".into())));

    // Multi-key writes wait for the strictest level among their keys (here cart:*'s `all`).
    for cmd in [
        &["MSET", "plain", "p", "cart:4", "d"][..],
        &["DEL", "plain", "cart:4"][..],
    ] {
        let t0 = Instant::now();
        let reply = us.cmd(cmd);
        let e = reply.error();
        assert!(e.starts_with("NOTACKED"), "{cmd:?} with ap partitioned: {e}");
        assert!(e.contains("1 of the 2"), "{cmd:?}: {e}");
        assert!(
            t0.elapsed() >= Duration::from_millis(900),
            "{cmd:?} answered after {:?}",
            t0.elapsed()
        );
    }
    // Keys without an ack level: answered at local durability.
    assert!(us.cmd(&["MSET", "plain", "p", "other", "o"]).is_ok());

    // Healed: ap gets what it missed, and ack = all is met again.
    l.heal("ap", &["us", "eu"]);
    l.wait_ready(&REGIONS);
    let mut ap = l.raw("ap");
    eventually("cart:2 in ap after healing", WAIT, || {
        (ap.cmd(&["GET", "cart:2"]) == Resp::Bulk(Some("b".into()))).then_some(())
    });
    let reply = us.cmd(&["SET", "cart:3", "c"]);
    assert!(reply.is_ok(), "SET cart:3 after healing: {reply:?}");
    let reply = us.cmd(&["MSET", "cart:5", "e", "plain", "q"]);
    assert!(reply.is_ok(), "MSET with a cart:* key after healing: {reply:?}");
}

/// A write under `siblings` with an ack level that leaves concurrent versions is reported to the
/// writer. Concurrency here comes from a stale causal context (the writer did not see the
/// latest version), which is what a write racing another region's looks like to the node.
#[test]
fn ack_reports_concurrent_versions() {
    let c = cluster();
    let l = &c.layout;
    let mut us = l.raw("us");
    assert!(us.cmd(&["SET", "cart:c", "v1"]).is_ok());
    let r = http(l.http("us"), "GET", "/v1/kv/cart:c", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let stale = r.json()["context"].as_str().expect("context token").to_string();
    assert!(us.cmd(&["SET", "cart:c", "v2"]).is_ok());

    // RESP: CONCORD.RESOLVE with the stale context keeps v2 as a sibling of v3.
    let reply = us.cmd(&["CONCORD.RESOLVE", "cart:c", &stale, "v3"]);
    let e = reply.error();
    assert!(
        e.starts_with("CONFLICT"),
        "a write concurrent with another version: {e}"
    );
    match us.cmd(&["CONCORD.SIBLINGS", "cart:c"]) {
        Resp::Array(Some(items)) => {
            let text = format!("{items:?}");
            assert!(text.contains("v2") && text.contains("v3"), "siblings: {text}");
        }
        other => panic!("CONCORD.SIBLINGS: {other:?}"),
    }

    // HTTP: a PUT with the stale context → 409 with the siblings.
    let r = http_with(
        l.http("us"),
        "PUT",
        "/v1/kv/cart:c",
        &[("X-Concord-Context", &stale)],
        b"v4",
    );
    assert_eq!(r.status, 409, "{}", r.text());
    let doc = r.json();
    let values: Vec<String> = doc["siblings"]
        .as_array()
        .unwrap_or_else(|| panic!("no siblings: {doc}"))
        .iter()
        .filter_map(|s| s["value"].as_str().map(str::to_string))
        .collect();
    assert!(values.contains(&"v4".to_string()) && values.len() >= 2, "{doc}");
    assert_eq!(doc["acked_regions"], 2, "{doc}");

    // Resolving with the current context is an ordinary, acknowledged write.
    let ctx = http(l.http("us"), "GET", "/v1/kv/cart:c", b"").json()["context"]
        .as_str()
        .expect("context")
        .to_string();
    let r = http_with(
        l.http("us"),
        "PUT",
        "/v1/kv/cart:c",
        &[("X-Concord-Context", &ctx)],
        b"merged",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for region in REGIONS {
        let mut con = l.raw(region);
        eventually(&format!("cart:c resolved in {region}"), WAIT, || {
            (con.cmd(&["GET", "cart:c"]) == Resp::Bulk(Some("merged".into()))).then_some(())
        });
    }
}
