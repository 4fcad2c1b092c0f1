//! HLC: under `lww`, a write that causally follows another wins even when its origin's wall clock
//! is hours behind.

use super::harness::{set, Cluster};
use bytes::Bytes;
use concord_core::{Reply, Request};

const HOUR_MS: u64 = 3_600_000;

#[test]
fn causal_successor_wins_despite_wall_clock_hours_behind() {
    let mut c = Cluster::new(3, 5);
    c.clocks = vec![10 * HOUR_MS, 1_000, 5 * HOUR_MS]; // replica 1 is ~10 hours behind
    c.exec(0, set("l:profile", "written-by-fast-clock")).unwrap();
    c.deliver_all();
    c.exec(1, set("l:profile", "written-later-by-slow-clock")).unwrap();
    c.deliver_all();
    for i in 0..3 {
        assert_eq!(
            c.exec(i, Request::Get(Bytes::from("l:profile"))).unwrap(),
            Reply::Bulk(Bytes::from("written-later-by-slow-clock")),
            "replica {i}"
        );
    }
    // And a remote timestamp hours ahead was accepted but counted.
    assert!(c.engines[1].clock().remote_ahead_count >= 1);
}

#[test]
fn concurrent_writes_pick_one_winner_everywhere_and_log_the_loser() {
    let mut c = Cluster::new(3, 6);
    c.clocks = vec![5_000, 1_000, 3_000];
    c.exec(0, set("l:k", "from-0")).unwrap();
    c.exec(1, set("l:k", "from-1")).unwrap();
    c.deliver_all();
    for i in 0..3 {
        assert_eq!(
            c.exec(i, Request::Get(Bytes::from("l:k"))).unwrap(),
            Reply::Bulk(Bytes::from("from-0"))
        );
        assert_eq!(c.engines[i].key_state(b"l:k"), c.engines[0].key_state(b"l:k"));
    }
    let losers: Vec<_> = c
        .conflicts
        .iter()
        .filter(|r| r.key == "l:k" && r.policy == "lww")
        .collect();
    assert!(!losers.is_empty());
    assert!(losers.iter().all(|r| r
        .versions
        .iter()
        .any(|v| v.value.as_deref() == Some(b"from-1".as_slice()))));
    // One identity for the same conflict, whichever replica detected it.
    let ids: std::collections::BTreeSet<u64> = losers.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 1);
}
