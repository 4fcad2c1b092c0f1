//! Issue 10, must show 3 (DESIGN §8.1): the home region of `user:*` loses its data dir. Three
//! regions, `user:*` homed in us. `eu> SET user:alice from-eu NX` (forwarded to us) → OK; all three
//! regions stop; us's data dir is deleted; us starts alone. It takes writes to other keys at once
//! (under a new writer id), but `SET user:alice other NX` is refused (`-TRYAGAIN`) — it cannot
//! know `user:alice` exists until the other regions give its history back. Once eu and ap are back
//! the same command answers nil (the key exists), every region holds `from-eu`, the writes us took
//! while alone reach eu and ap (its new dots are not mistaken for duplicates of its old ones), and
//! every region reports the same applied vector and `state_digest`.
//!
//! The second test restarts the wiped us a second time, still alone, after it took a write: the
//! data dir is no longer empty then, but it still has not heard its history back, so home-key
//! writes must stay refused.

use crate::harness::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const EXTRA: &str = "topology = \"mesh\"\n\n[[policy]]\nmatch = \"user:*\"\nhome = \"us\"\n";

/// `SET user:alice other NX` on `region`.
fn set_nx_other(l: &Layout, region: &str) -> Resp {
    l.raw(region).cmd(&["SET", "user:alice", "other", "NX"])
}

/// A reply the home may give while it cannot know whether `user:alice` exists: `-TRYAGAIN` (or
/// nil, had it learned the key). Anything else — above all `OK` — fails the test.
fn assert_refused_or_nil(reply: &Resp, when: &str) {
    match reply {
        Resp::Error(e) if e.starts_with("TRYAGAIN") => {}
        Resp::Bulk(None) => {}
        other => panic!(
            "{when}: `us> SET user:alice other NX` answered {other:?}; only -TRYAGAIN or nil may come \
             back (OK would make user:alice a second, conflicting registration)"
        ),
    }
}

/// Keep asking us for `SET user:alice other NX` for `span`; every reply must be a refusal or nil.
/// Returns the last reply.
fn refused_throughout(l: &Layout, span: Duration, when: &str) -> Resp {
    let deadline = Instant::now() + span;
    loop {
        let reply = set_nx_other(l, "us");
        assert_refused_or_nil(&reply, when);
        if Instant::now() >= deadline {
            return reply;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Each region's (applied vector, state digest).
fn views(l: &Layout) -> Option<Vec<(Value, String)>> {
    REGIONS
        .iter()
        .map(|r| {
            let st = l.try_status(r)?;
            Some((st["applied"].clone(), st["state_digest"].as_str()?.to_string()))
        })
        .collect()
}

/// The scenario; with `restart_alone`, us is restarted once more (still alone, its data dir no
/// longer empty) before eu and ap come back.
fn lost_home_disk(restart_alone: bool) {
    let mut c = ServeCluster::new(EXTRA);
    c.start_all();
    let l = c.layout.clone();

    // eu registers alice; the write is forwarded to us, its home.
    assert!(
        l.raw("eu").cmd(&["SET", "user:alice", "from-eu", "NX"]).is_ok(),
        "eu> SET user:alice from-eu NX must succeed on a healthy cluster"
    );
    for r in REGIONS {
        let mut con = l.redis(r);
        eventually(&format!("user:alice in {r}"), WAIT, || {
            (get(&mut con, "user:alice").as_deref() == Some("from-eu")).then_some(())
        });
    }
    l.wait_caught_up(&REGIONS, WAIT);
    let old_writer = l.status("us")["writer"].clone();

    // Stop eu and ap, then us; us loses its data dir and starts alone.
    c.stop("eu");
    c.stop("ap");
    c.stop("us");
    let us_dir = c.data_dir("us");
    assert!(us_dir.exists(), "us's data dir {} is missing", us_dir.display());
    std::fs::remove_dir_all(&us_dir).expect("delete us's data dir");
    c.start("us");

    // A key with no home is writable at once, under a new writer id.
    let reply = l.raw("us").cmd(&["SET", "plain:after-loss", "from-us"]);
    assert!(
        reply.is_ok(),
        "a fresh data dir must take writes to keys not homed in its region at once; got {reply:?}\nus log:\n{}",
        c.log("us")
    );
    let new_writer = l.status("us")["writer"].clone();
    assert_ne!(
        old_writer, new_writer,
        "us must write under a new writer id after losing its data dir"
    );

    // Alone, us cannot know user:alice exists: refused (or nil), never OK — right away and for 6 s.
    assert_refused_or_nil(&set_nx_other(&l, "us"), "right after us restarted on an empty data dir");
    let last = refused_throughout(&l, Duration::from_secs(6), "us alone on an empty data dir");
    eprintln!("lost_disk: us alone answered {last:?}");

    if restart_alone {
        // us restarts again, still alone: its data dir now holds a write, but not its history.
        c.stop("us");
        c.start("us");
        assert_refused_or_nil(
            &set_nx_other(&l, "us"),
            "right after us restarted alone a second time (data dir wiped earlier, not re-learned yet)",
        );
        refused_throughout(
            &l,
            Duration::from_secs(3),
            "us restarted alone a second time (data dir wiped earlier, not re-learned yet)",
        );
        let reply = l.raw("us").cmd(&["SET", "plain:after-restart", "from-us"]);
        assert!(reply.is_ok(), "us must keep taking non-home writes; got {reply:?}");
    }

    // eu and ap return: us re-learns alice and answers nil.
    c.start("eu");
    c.start("ap");
    let mut last = Resp::Bulk(None);
    let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually_every(
            "us answering `SET user:alice other NX` with nil",
            WAIT,
            Duration::from_millis(100),
            || {
                last = set_nx_other(&l, "us");
                assert_refused_or_nil(&last, "while eu and ap give us its history back");
                (last == Resp::Bulk(None)).then_some(())
            },
        )
    }));
    if answered.is_err() {
        panic!(
            "us never answered nil (last reply {last:?}); us status: {}\nus log:\n{}",
            l.status("us"),
            c.log("us")
        );
    }

    // Every region: alice is from-eu, and us's writes while alone arrived.
    let mut plain_keys = vec!["plain:after-loss"];
    if restart_alone {
        plain_keys.push("plain:after-restart");
    }
    for r in REGIONS {
        let mut con = l.redis(r);
        let mut seen = (None, Vec::new());
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            eventually(
                &format!("{r} holding user:alice = from-eu and us's new writes"),
                WAIT,
                || {
                    seen = (
                        get(&mut con, "user:alice"),
                        plain_keys.iter().map(|k| get(&mut con, k)).collect(),
                    );
                    (seen.0.as_deref() == Some("from-eu") && seen.1.iter().all(|v| v.as_deref() == Some("from-us")))
                        .then_some(())
                },
            )
        }));
        if ok.is_err() {
            panic!(
                "{r} holds user:alice = {:?} and {plain_keys:?} = {:?}; expected from-eu and from-us; {r} status: {}",
                seen.0,
                seen.1,
                l.status(r)
            );
        }
    }

    // Identical applied vectors and state digests everywhere.
    let mut last = None;
    let converged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually("equal applied vectors and state digests in every region", WAIT, || {
            last = views(&l);
            let v = last.as_ref()?;
            v.iter().all(|x| *x == v[0]).then_some(())
        })
    }));
    assert!(
        converged.is_ok(),
        "regions (us, eu, ap) never agreed on (applied, state_digest): {last:?}"
    );
    // Still refused as a duplicate registration from anywhere.
    for r in REGIONS {
        assert_eq!(
            l.raw(r).cmd(&["SET", "user:alice", "again", "NX"]),
            Resp::Bulk(None),
            "{r}> SET user:alice again NX after recovery"
        );
    }
}

#[test]
fn home_region_losing_its_data_dir_never_takes_a_second_set_nx() {
    lost_home_disk(false);
}

#[test]
fn wiped_home_restarted_alone_again_still_refuses_home_writes() {
    lost_home_disk(true);
}
