//! Issue 11, "Must show" 3 over real processes: an `EVAL` script's writes replicate as one unit.
//! Scripts in all three regions increment two counters together (and set a string and a hash
//! field from the same values) while readers in every region read them all at once: no region
//! ever sees part of a script's writes, through a partition and its healing, and all converge to
//! the same totals. A script whose keys are homed in another region runs there, whichever region
//! received it.

use crate::harness::*;
use redis::Value as R;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

const PAIR: &str = r#"
local a = redis.call('INCR', KEYS[1])
local b = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], ARGV[1], a)
return a - b
"#;

/// The two counters as one region sees them (one `MGET`: one read under the engine lock).
fn pair(con: &mut redis::Connection) -> (i64, i64) {
    let (a, b): (Option<i64>, Option<i64>) = redis::cmd("MGET").arg("pair:a").arg("pair:b").query(con).expect("MGET");
    (a.unwrap_or(0), b.unwrap_or(0))
}

#[test]
fn a_scripts_writes_are_seen_together_in_every_other_region() {
    // Replication messages of one op each: a script's ops always cross in several messages, so
    // only the unit (`Op::unit_end`: the receiver holds a unit until it has all of it) keeps
    // them together.
    let mut c = ServeCluster::new("[testing]\nmax_batch_ops = 1\n");
    c.start_all();
    let l = c.layout.clone();
    const PER_REGION: usize = 120;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(REGIONS.len() * 2 + 1));
    let readers: Vec<_> = REGIONS
        .iter()
        .map(|region| {
            let (l, stop, start) = (l.clone(), stop.clone(), start.clone());
            let region = region.to_string();
            std::thread::spawn(move || {
                let mut con = l.redis(&region);
                start.wait();
                let mut reads = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let (a, b) = pair(&mut con);
                    assert_eq!(a, b, "{region} saw part of a script's writes");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let writers: Vec<_> = REGIONS
        .iter()
        .map(|region| {
            let (l, start) = (l.clone(), start.clone());
            let region = region.to_string();
            std::thread::spawn(move || {
                let mut con = l.redis(&region);
                start.wait();
                for _ in 0..PER_REGION {
                    let d: i64 = redis::cmd("EVAL")
                        .arg(PAIR)
                        .arg(3)
                        .arg("pair:a")
                        .arg("pair:b")
                        .arg("pair:last")
                        .arg(&region)
                        .query(&mut con)
                        .expect("EVAL");
                    // The script saw the two counters equal in its region: every other
                    // script's writes, local or replicated, were whole.
                    assert_eq!(d, 0, "a script in {region} saw part of another's writes");
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();
    start.wait();
    // Lossy, jittery links while the scripts run (a unit's ops may reach a region in different
    // messages, or be lost and sent again), and us cut off for a while, then healed: units
    // cross in catch-up too.
    let lossy = r#"{"delay_ms": 10, "jitter_ms": 10, "loss": 0.2}"#;
    for region in REGIONS {
        for peer in REGIONS.iter().filter(|p| **p != region) {
            l.set_link(region, peer, lossy);
        }
    }
    std::thread::sleep(Duration::from_millis(150));
    for peer in ["eu", "ap"] {
        l.set_link("us", peer, r#"{"partitioned": true}"#);
    }
    std::thread::sleep(Duration::from_millis(600));
    for region in REGIONS {
        for peer in REGIONS.iter().filter(|p| **p != region) {
            l.set_link(region, peer, "{}");
        }
    }
    for w in writers {
        w.join().expect("writer");
    }
    l.wait_caught_up(&REGIONS, WAIT);
    let total = (PER_REGION * REGIONS.len()) as i64;
    for region in REGIONS {
        let mut con = l.redis(region);
        eventually(&format!("{region} has every script's writes"), WAIT, || {
            (pair(&mut con) == (total, total)).then_some(())
        });
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader") > 0);
    }
    // The hash fields the scripts wrote agree everywhere too.
    let views: Vec<R> = REGIONS
        .iter()
        .map(|region| {
            redis::cmd("HGETALL")
                .arg("pair:last")
                .query(&mut l.redis(region))
                .expect("HGETALL")
        })
        .collect();
    assert!(views.windows(2).all(|w| w[0] == w[1]), "{views:?}");
}

#[test]
fn a_script_whose_keys_are_homed_elsewhere_runs_at_the_home() {
    let up = Up::with_policies(
        "[[policy]]\nmatch = \"h:*\"\nhome = \"us\"\n\n[[policy]]\nmatch = \"g:*\"\nhome = \"eu\"\n",
        &[],
    );
    let l = &up.layout;
    let mut eu = l.redis("eu");
    l.wait_writable("us");
    let set: &str = "return redis.call('SET', KEYS[1], ARGV[1])";
    // Sent from eu, run in us (the home), answered through eu; eu reads its own write.
    let ok: String = redis::cmd("EVAL")
        .arg(set)
        .arg(1)
        .arg("h:x")
        .arg("1")
        .query(&mut eu)
        .unwrap();
    assert_eq!(ok, "OK");
    assert_eq!(get(&mut eu, "h:x").as_deref(), Some("1"));
    // EVALSHA of a script only eu has cached: the home gets its source.
    let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(set).query(&mut eu).unwrap();
    let ok: String = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(1)
        .arg("h:x")
        .arg("2")
        .query(&mut eu)
        .unwrap();
    assert_eq!(ok, "OK");
    // The reply comes back whole: nested values, a status, an error element (the `redis`
    // crate answers an array holding an error as that error: the same from both regions).
    let nested = "redis.call('SET', KEYS[1], 'n'); return {1, 'two', {3, {ok = 'FINE'}}}";
    let got: R = redis::cmd("EVAL").arg(nested).arg(1).arg("h:n").query(&mut eu).unwrap();
    assert_eq!(
        got,
        R::Array(vec![
            R::Int(1),
            R::BulkString(b"two".to_vec()),
            R::Array(vec![R::Int(3), R::SimpleString("FINE".into())])
        ])
    );
    let with_error = "redis.call('SET', KEYS[1], 'e'); return {1, {err = 'E3 bad'}}";
    let mut us = l.redis("us");
    let here = redis::cmd("EVAL").arg(with_error).arg(1).arg("h:e").query::<R>(&mut us);
    let forwarded = redis::cmd("EVAL").arg(with_error).arg(1).arg("h:e").query::<R>(&mut eu);
    assert_eq!(format!("{here:?}"), format!("{forwarded:?}"));
    assert!(format!("{forwarded:?}").contains("E3"), "{forwarded:?}");
    // A script's error comes back as its error line.
    let err = redis::cmd("EVAL")
        .arg("return redis.error_reply('MINE went wrong')")
        .arg(1)
        .arg("h:x")
        .query::<String>(&mut eu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("MINE") && err.contains("went wrong"), "{err}");

    // Check-and-set from all three regions at once on one homed key: every script runs at the
    // home, one after another, so exactly one of them finds the key absent.
    const CLAIM: &str =
        "if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], ARGV[1]) return 1 end return 0";
    let winners: i64 = std::thread::scope(|s| {
        let handles: Vec<_> = REGIONS
            .iter()
            .flat_map(|r| (0..4).map(move |i| (*r, i)))
            .map(|(r, i)| {
                s.spawn(move || {
                    let mut con = l.redis(r);
                    redis::cmd("EVAL")
                        .arg(CLAIM)
                        .arg(1)
                        .arg("h:claim")
                        .arg(format!("{r}-{i}"))
                        .query::<i64>(&mut con)
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(winners, 1, "one claim, whichever region sent it");
    l.wait_caught_up(&REGIONS, WAIT);
    let owners: Vec<Option<String>> = REGIONS.iter().map(|r| get(&mut l.redis(r), "h:claim")).collect();
    assert!(
        owners.windows(2).all(|w| w[0] == w[1]) && owners[0].is_some(),
        "{owners:?}"
    );

    // Keys of two homes: refused before anything runs.
    let err = redis::cmd("EVAL")
        .arg("redis.call('SET', KEYS[2], 'no') return redis.call('SET', KEYS[1], 'no')")
        .arg(2)
        .arg("h:two")
        .arg("g:two")
        .query::<String>(&mut eu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a script's keys must share a home region: they are homed in us and eu"),
        "{err}"
    );
    assert_eq!(get(&mut eu, "g:two"), None);
    // An undeclared key homed elsewhere: the write is refused when the script issues it.
    let got: String = redis::cmd("EVAL")
        .arg("local r = redis.pcall('SET', 'h:x', 'no'); redis.call('SET', KEYS[1], 'yes'); return r.err")
        .arg(1)
        .arg("free")
        .query(&mut eu)
        .unwrap();
    assert!(
        got.starts_with("ERR a script cannot write a key homed in region us"),
        "{got}"
    );
    assert_eq!(get(&mut eu, "h:x").as_deref(), Some("2"));
    assert_eq!(get(&mut eu, "free").as_deref(), Some("yes"));
    // Reading a homed key in a script is local, as any read (EVAL_RO is never forwarded).
    let got: String = redis::cmd("EVAL_RO")
        .arg("return redis.call('GET', KEYS[1])")
        .arg(1)
        .arg("h:x")
        .query(&mut eu)
        .unwrap();
    assert_eq!(got, "2");
}
