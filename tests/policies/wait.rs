//! Must show 3: `WAIT numregions timeout` counts the other regions that applied this connection's
//! last write: 2 with every region connected, 1 after the timeout with one region partitioned.

use crate::harness::*;
use std::time::{Duration, Instant};

#[test]
fn wait_counts_regions_that_applied_the_write() {
    let up = Up::start(&[]);
    let l = &up.layout;

    // A connection with no write counts the connected regions (like Redis's connected replicas).
    assert_eq!(
        l.raw("us").cmd(&["WAIT", "2", "1000"]),
        Resp::Int(2),
        "WAIT with no write"
    );

    let mut us = l.raw("us");
    assert!(us.cmd(&["SET", "w:1", "a"]).is_ok());
    let t0 = Instant::now();
    assert_eq!(
        us.cmd(&["WAIT", "2", "1000"]),
        Resp::Int(2),
        "WAIT 2 1000, all regions connected"
    );
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(900),
        "WAIT took {took:?} though both regions were up"
    );

    // ap cut off from us and eu (at ap, both directions of both links).
    l.partition("ap", &["us", "eu"]);
    assert!(us.cmd(&["SET", "w:2", "b"]).is_ok());
    let t0 = Instant::now();
    let got = us.cmd(&["WAIT", "2", "1000"]);
    let took = t0.elapsed();
    assert_eq!(got, Resp::Int(1), "WAIT 2 1000 with ap partitioned");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "WAIT 2 1000 returned after {took:?}"
    );
    // Asking for only what is there answers at once.
    let t0 = Instant::now();
    assert_eq!(
        us.cmd(&["WAIT", "1", "5000"]),
        Resp::Int(1),
        "WAIT 1 5000 with ap partitioned"
    );
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "WAIT 1 took {:?}",
        t0.elapsed()
    );
    // The write was not undone.
    assert_eq!(us.cmd(&["GET", "w:2"]), Resp::Bulk(Some("b".into())));
    // A fresh connection (no write) counts the connected regions: eu only.
    assert_eq!(
        l.raw("us").cmd(&["WAIT", "2", "1000"]),
        Resp::Int(1),
        "WAIT with no write, ap cut off"
    );

    // Healed: ap catches up and the same connection's WAIT reaches 2.
    l.heal("ap", &["us", "eu"]);
    l.wait_ready(&REGIONS);
    assert_eq!(us.cmd(&["WAIT", "2", "10000"]), Resp::Int(2), "WAIT after healing");
}
