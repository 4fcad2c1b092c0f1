//! Must show 5: `read_miss = "home"` — a key written in its home region a moment ago is readable
//! in another region before replication delivers it (every link delayed by `--wan-delay-ms 300`).

use crate::harness::*;
use std::time::{Duration, Instant};

const POLICY: &str = "[[policy]]\nmatch = \"user:*\"\nhome = \"us\"\nread_miss = \"home\"\n";

#[test]
fn read_miss_reads_through_to_home() {
    let up = Up::with_policies(POLICY, &["--wan-delay-ms", "300"]);
    let l = &up.layout;
    let mut us = l.raw("us");
    let mut eu = l.raw("eu");

    // A key without read_miss first, then the user: both replicate from us in this order.
    assert!(us.cmd(&["SET", "plain:1", "p"]).is_ok());
    assert!(us.cmd(&["SET", "user:1", "alice"]).is_ok());
    let t0 = Instant::now();
    let got = eu.cmd(&["GET", "user:1"]);
    let took = t0.elapsed();
    // Checked right after the read: ops from us apply in order, so plain:1 missing means user:1
    // had not been replicated to eu either when the read was answered.
    let plain = eu.cmd(&["GET", "plain:1"]);
    assert_eq!(
        got,
        Resp::Bulk(Some("alice".into())),
        "GET user:1 in eu right after SET in us"
    );
    assert_eq!(
        plain,
        Resp::Bulk(None),
        "plain:1 already replicated to eu when user:1 was read (the read took {took:?}): the read-through \
         waited for replication instead of answering from the home"
    );

    // An absent key asked at the home is still absent.
    assert_eq!(eu.cmd(&["GET", "user:nobody"]), Resp::Bulk(None));
    // Replication then delivers both, and the read is local.
    eventually("plain:1 replicated to eu", Duration::from_secs(10), || {
        (eu.cmd(&["GET", "plain:1"]) == Resp::Bulk(Some("p".into()))).then_some(())
    });
    assert_eq!(eu.cmd(&["GET", "user:1"]), Resp::Bulk(Some("alice".into())));
}
