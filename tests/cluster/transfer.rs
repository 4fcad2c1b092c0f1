//! Must show 4: a region with a brand-new data dir recovers: by a full-state transfer when its
//! peers truncated their op logs (`log_retention_ops = 0`), and from the op log otherwise. Either
//! way it then writes as itself again without its new writes colliding with its old ones.

use crate::harness::*;
use std::time::Duration;

/// Run three regions with `extra` config, write 200 keys, wipe ap's data dir, restart ap; wait
/// until ap holds all 200 keys. Returns the cluster (ap running again).
fn wipe_ap_and_restart(extra: &str) -> ServeCluster {
    let mut c = ServeCluster::new(extra);
    c.start_all();
    let l = c.layout.clone();

    // 200 keys, written in all three regions.
    let mut cons: Vec<redis::Connection> = REGIONS.iter().map(|r| l.redis(r)).collect();
    for i in 0..200 {
        set(&mut cons[i % 3], &format!("k:{i:03}"), &format!("value-{i}"));
    }
    drop(cons);
    l.wait_caught_up(&REGIONS, WAIT);
    if extra.contains("log_retention_ops = 0") {
        // Truncation runs about once a second, once every region acknowledged.
        std::thread::sleep(Duration::from_millis(2500));
    }

    c.stop("ap");
    let ap_dir = c.data_dir("ap");
    assert!(ap_dir.exists(), "ap's data dir {} is missing", ap_dir.display());
    std::fs::remove_dir_all(&ap_dir).expect("delete ap's data dir");
    c.start("ap");
    // Writable at once under a new writer id (DESIGN §8.1), before it has re-learned anything;
    // `ap_writes_reach_the_others` checks this write arrives everywhere.
    let early = l.raw("ap").cmd(&["SET", "after-wipe:early", "from-ap"]);
    assert!(
        early.is_ok(),
        "ap on a new data dir must take a write at once; got {early:?}\nap log:\n{}",
        c.log("ap")
    );

    let mut ap = l.redis("ap");
    let mut missing = Vec::new();
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually("all 200 keys in ap", WAIT, || {
            missing = (0..200)
                .filter(|i| get(&mut ap, &format!("k:{i:03}")) != Some(format!("value-{i}")))
                .collect();
            missing.is_empty().then_some(())
        })
    }));
    if got.is_err() {
        panic!(
            "ap misses {} of 200 keys after a restart on a new data dir (e.g. {:?});\nap status: {}\nap log:\n{}\nus log:\n{}",
            missing.len(),
            &missing[..missing.len().min(10)],
            l.status("ap"),
            c.log("ap"),
            c.log("us")
        );
    }
    c
}

/// After recovery ap is a full member again: its new writes — the one it took right after the
/// restart and three more now — reach the others (a new data dir writes under a new writer id,
/// so its dots never collide with the ones it had before the wipe).
fn ap_writes_reach_the_others(c: &mut ServeCluster) {
    let l = c.layout.clone();
    let mut ap = l.redis("ap");
    for i in 0..3 {
        set(&mut ap, &format!("after-wipe:{i}"), "from-ap");
    }
    let keys: Vec<String> = ["early", "0", "1", "2"]
        .iter()
        .map(|k| format!("after-wipe:{k}"))
        .collect();
    for r in ["us", "eu"] {
        let mut con = l.redis(r);
        let mut last = Vec::new();
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            eventually(&format!("ap's new writes in {r}"), WAIT, || {
                last = keys.iter().map(|k| get(&mut con, k)).collect();
                last.iter().all(|v| v.as_deref() == Some("from-ap")).then_some(())
            })
        }));
        if ok.is_err() {
            panic!(
                "ap's writes after its recovery never reached {r} (it sees {last:?}); ap status: {}; {r} status: {}",
                l.status("ap"),
                l.status(r)
            );
        }
    }
}

#[test]
fn new_data_dir_recovers_by_full_state_transfer() {
    let mut c = wipe_ap_and_restart("topology = \"mesh\"\nlog_retention_ops = 0");
    let l = c.layout.clone();
    // The keys are readable as soon as the first chunk is merged; the transfer completes after.
    let transfers = |st: &serde_json::Value| -> u64 { transfer_figures(st).0 };
    let mut last = serde_json::Value::Null;
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually("a completed full-state transfer in ap's status", WAIT, || {
            last = l.status("ap");
            (transfers(&last) >= 1).then_some(())
        })
    }));
    assert!(
        done.is_ok(),
        "ap got its keys without a (completed) full-state transfer although the logs were truncated: {last}"
    );
    let log = c.log("ap");
    assert!(
        log.contains("full-state transfer"),
        "ap's log shows no full-state transfer:\n{log}"
    );
    ap_writes_reach_the_others(&mut c);
}

/// Full-state transfers seen in `region`'s status: (completed received, in progress, sent).
fn transfer_figures(status: &serde_json::Value) -> (u64, usize, u64) {
    let peers = status["peers"].as_array().cloned().unwrap_or_default();
    let sum = |field: &str| peers.iter().map(|p| p[field].as_u64().unwrap_or(0)).sum::<u64>();
    let in_progress = peers.iter().filter(|p| !p["snapshot_progress"].is_null()).count();
    (sum("snapshots_received"), in_progress, sum("snapshots_sent"))
}

#[test]
fn new_data_dir_catches_up_from_the_op_log() {
    let mut c = wipe_ap_and_restart("topology = \"mesh\"");
    ap_writes_reach_the_others(&mut c);
    // Caught up from the op log alone: no full-state transfer was received, is under way, or was
    // sent, in any region (the figures start at 0 with each process; us and eu ran throughout).
    let l = c.layout.clone();
    for r in REGIONS {
        let status = l.status(r);
        assert_eq!(
            transfer_figures(&status),
            (0, 0, 0),
            "{r}: a full-state transfer happened although the op logs held everything: {status}"
        );
        let log = c.log(r);
        assert!(
            !log.contains("full-state transfer"),
            "{r}'s log shows a full-state transfer although the op logs held everything:\n{log}"
        );
    }
}
