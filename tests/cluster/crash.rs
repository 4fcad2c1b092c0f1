//! Must show 3: `kill -9` one region mid-stream, restart it → it catches up; counters are exact
//! (nothing lost, nothing applied twice).
//!
//! `concord up` stops the whole cluster when a child dies, so this test runs the three regions as
//! `concord serve` processes of a config it writes.

use crate::harness::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// INCR `key` on `port` until `stop`; returns how many INCRs were acknowledged.
fn incr_loop(port: u16, key: &'static str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
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
    let stop = Arc::new(AtomicBool::new(false));
    let us = incr_loop(l.resp("us"), "c:shared", stop.clone());
    let eu = incr_loop(l.resp("eu"), "c:shared", stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    c.kill9("ap");
    std::thread::sleep(Duration::from_millis(500));
    c.start("ap");
    std::thread::sleep(Duration::from_millis(500));
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
