//! `replicate = false`: region-local keys (login sessions) are never shipped, and say so.

use crate::harness::*;
use std::time::{Duration, Instant};

const POLICY: &str = "[[policy]]\nmatch = \"session:*\"\nreplicate = false\n";

#[test]
fn replicate_false_keys_stay_in_their_region() {
    let up = Up::with_policies(POLICY, &[]);
    let l = &up.layout;
    let mut us = l.raw("us");
    let t0 = Instant::now();
    assert!(us.cmd(&["SET", "session:1", "token-us"]).is_ok());
    // A replicated key written after it reaches every region...
    assert!(us.cmd(&["SET", "marker:1", "m"]).is_ok());
    for region in ["eu", "ap"] {
        let mut con = l.raw(region);
        eventually(&format!("marker:1 in {region}"), WAIT, || {
            (con.cmd(&["GET", "marker:1"]) == Resp::Bulk(Some("m".into()))).then_some(())
        });
    }
    // ... the session never does (given a second).
    if let Some(rest) = Duration::from_secs(1).checked_sub(t0.elapsed()) {
        std::thread::sleep(rest);
    }
    for region in ["eu", "ap"] {
        let mut con = l.raw(region);
        assert_eq!(
            con.cmd(&["GET", "session:1"]),
            Resp::Bulk(None),
            "session:1 visible in {region}"
        );
        let r = http(l.http(region), "GET", "/v1/kv/session:1", b"");
        assert_eq!(r.status, 404, "GET /v1/kv/session:1 in {region}: {}", r.text());
    }
    assert_eq!(us.cmd(&["GET", "session:1"]), Resp::Bulk(Some("token-us".into())));

    let r = http(l.http("us"), "GET", "/v1/kv/session:1", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let doc = r.json();
    assert_eq!(doc["replicated"], false, "{doc}");
    assert_eq!(doc["value"], "token-us", "{doc}");
    let r = http(l.http("us"), "GET", "/v1/kv/marker:1", b"");
    assert_eq!(r.json()["replicated"], true, "{}", r.text());

    // Each region has its own session under the same name.
    assert!(l.raw("eu").cmd(&["SET", "session:1", "token-eu"]).is_ok());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(us.cmd(&["GET", "session:1"]), Resp::Bulk(Some("token-us".into())));
    assert_eq!(
        l.raw("eu").cmd(&["GET", "session:1"]),
        Resp::Bulk(Some("token-eu".into()))
    );
}
