//! Must show 3: `kill -9` one region mid-stream, restart it → it catches up; counters are exact
//! (nothing lost, nothing applied twice). And `kill -9` a partitioned region, whose last writes no
//! other region has: they survive on its own disk (`fsync = batch` and `always`).
//!
//! `concord up` stops the whole cluster when a child dies, so this test runs the three regions as
//! `concord serve` processes of a config it writes.

use crate::harness::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// INCR `key` on `port` until `stop`, counting acknowledged INCRs in `acked` too; returns how
/// many INCRs were acknowledged.
fn incr_loop(
    port: u16,
    key: &'static str,
    stop: Arc<AtomicBool>,
    acked_so_far: Arc<AtomicU64>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut con = redis_connect(port);
        let mut acked = 0u64;
        let mut last = 0i64;
        while !stop.load(Ordering::SeqCst) {
            let n: i64 = redis::cmd("INCR")
                .arg(key)
                .query(&mut con)
                .unwrap_or_else(|e| panic!("INCR {key} on {port}: {e}"));
            assert!(n > last, "INCR answered {n} after {last}");
            last = n;
            acked += 1;
            acked_so_far.fetch_add(1, Ordering::SeqCst);
        }
        acked
    })
}

fn counter(l: &Layout, region: &str, key: &str) -> Option<i64> {
    let mut con = try_redis_connect(l.resp(region)).ok()?;
    let v: Option<String> = redis::cmd("GET").arg(key).query(&mut con).ok()?;
    Some(v.map(|s| s.parse().expect("counter is an integer")).unwrap_or(0))
}

#[test]
fn kill9_mid_stream_then_restart_keeps_counters_exact() {
    let mut c = ServeCluster::new("topology = \"mesh\"");
    c.start_all();
    let l = c.layout.clone();

    // ap's own writes, acknowledged just before it is killed: they must survive the kill -9.
    let mut ap = l.redis("ap");
    for _ in 0..200 {
        let _: i64 = redis::cmd("INCR").arg("c:ap").query(&mut ap).unwrap();
    }
    drop(ap);

    // us and eu increment one shared counter throughout.
    // Mid-stream: at least 50 more INCRs acknowledged (and at least 300 ms) before the kill,
    // while ap is down, and after it is back, whatever the machine's load.
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let us = incr_loop(l.resp("us"), "c:shared", stop.clone(), count.clone());
    let eu = incr_loop(l.resp("eu"), "c:shared", stop.clone(), count.clone());
    let more = |what: &str, ms: u64| {
        let from = count.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(ms));
        eventually(&format!("50 more INCRs {what}"), WAIT, || {
            (count.load(Ordering::SeqCst) >= from + 50).then_some(())
        });
    };
    more("before the kill", 300);
    c.kill9("ap");
    more("while ap is down", 500);
    c.start("ap");
    more("after ap is back", 500);
    stop.store(true, Ordering::SeqCst);
    let acked = us.join().expect("us INCR loop") + eu.join().expect("eu INCR loop");
    eprintln!("kill9 test: {acked} acknowledged INCRs on c:shared from us and eu");
    assert!(acked > 100, "too few INCRs ({acked}) to have been mid-stream");

    for r in REGIONS {
        let mut last = None;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            eventually(&format!("exact counters in {r}"), WAIT, || {
                last = Some((counter(&l, r, "c:shared")?, counter(&l, r, "c:ap")?));
                (last == Some((acked as i64, 200))).then_some(())
            })
        }));
        if outcome.is_err() {
            panic!(
                "{r}: (c:shared, c:ap) = {last:?}, expected ({acked}, 200); ap's log:\n{}",
                c.log("ap")
            );
        }
    }
    // Stable: nothing arrives twice later.
    l.wait_caught_up(&REGIONS, WAIT);
    for r in REGIONS {
        assert_eq!(counter(&l, r, "c:shared"), Some(acked as i64), "{r} after catch-up");
        assert_eq!(counter(&l, r, "c:ap"), Some(200), "{r} after catch-up");
    }
}

/// `kill -9` a region whose latest writes exist nowhere else: ap is partitioned from both other
/// regions (at both ends), acknowledges 200 SETs and 200 INCRs, and is killed right after the
/// last acknowledgement. Restarted while still cut off, it must hold every one of them: they can
/// only come from its own disk. Healed, the others get them exactly once.
fn kill9_keeps_writes_that_exist_only_locally(fsync: &str) {
    let mut c = ServeCluster::new("topology = \"mesh\"");
    c.set_fsync(fsync);
    c.start_all();
    let l = c.layout.clone();
    l.partition("ap", &["us", "eu"]);
    l.partition("us", &["ap"]);
    l.partition("eu", &["ap"]);

    let mut ap = l.redis("ap");
    for i in 0..200 {
        set(&mut ap, &format!("local:{i:03}"), &format!("v{i}"));
        let _: i64 = redis::cmd("INCR").arg("c:local").query(&mut ap).unwrap();
    }
    c.kill9("ap");
    drop(ap);
    // The partition held: nobody else has any of them.
    for r in ["us", "eu"] {
        let mut con = l.redis(r);
        assert_eq!(
            get(&mut con, "local:000"),
            None,
            "{r} got ap's write through the partition"
        );
        assert_eq!(
            get(&mut con, "c:local"),
            None,
            "{r} got ap's INCR through the partition"
        );
    }

    c.start("ap");
    let status = l.status("ap");
    for peer in ["us", "eu"] {
        assert_eq!(
            peer_of(&status, peer)["connected"],
            false,
            "ap reconnected to {peer} through the partition: {status}"
        );
    }
    let mut ap = l.redis("ap");
    let missing: Vec<usize> = (0..200)
        .filter(|i| get(&mut ap, &format!("local:{i:03}")) != Some(format!("v{i}")))
        .collect();
    let counted = get(&mut ap, "c:local");
    assert!(
        missing.is_empty() && counted.as_deref() == Some("200"),
        "fsync = {fsync}: after kill -9 ap lost acknowledged writes only it had: {} of 200 SETs \
         missing (e.g. {:?}), c:local = {counted:?}; ap's log:\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        c.log("ap")
    );

    l.heal("us", &["ap"]);
    l.heal("eu", &["ap"]);
    for r in ["us", "eu"] {
        let mut con = l.redis(r);
        eventually(&format!("ap's local writes in {r}"), WAIT, || {
            (get(&mut con, "c:local").as_deref() == Some("200")
                && get(&mut con, "local:199").as_deref() == Some("v199"))
            .then_some(())
        });
    }
}

#[test]
fn kill9_keeps_local_only_writes_with_fsync_batch() {
    kill9_keeps_writes_that_exist_only_locally("batch");
}

#[test]
fn kill9_keeps_local_only_writes_with_fsync_always() {
    kill9_keeps_writes_that_exist_only_locally("always");
}
