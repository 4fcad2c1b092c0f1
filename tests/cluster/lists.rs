//! Lists over three real regions (issue 11, must show 3 and 4): a reliable queue written the way
//! job-queue libraries write it (`BRPOPLPUSH`/`LMOVE` from the queue to a per-worker processing
//! list, then `LREM` once the job is done), with a partition in the middle; and exactly-once pops
//! for a list whose key pattern has a home region, with workers in every region.

use crate::harness::*;
use redis::Value as R;
use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn q(con: &mut redis::Connection, args: &[&str]) -> R {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(con).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn text(v: &R) -> Option<String> {
    match v {
        R::BulkString(b) => Some(String::from_utf8(b.clone()).unwrap()),
        R::Nil => None,
        other => panic!("not a bulk string: {other:?}"),
    }
}

fn lrange(con: &mut redis::Connection, key: &str) -> Vec<String> {
    match q(con, &["LRANGE", key, "0", "-1"]) {
        R::Array(items) => items.iter().map(|i| text(i).unwrap()).collect(),
        other => panic!("{other:?}"),
    }
}

/// One worker of a reliable queue (the pattern of the Redis docs' "reliable queue", as RQ-style
/// libraries use it): move a job from `queue` to the worker's own processing list, atomically in
/// its region; "run" it; then remove it from the processing list. A job survives the worker's
/// crash in the processing list. Stops after `idle` without a job. Returns the jobs it ran.
fn worker(con: &mut redis::Connection, name: &str, use_lmove: bool, idle: Duration) -> Vec<String> {
    let processing = format!("processing:{name}");
    let mut done = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < idle {
        let job = if use_lmove {
            text(&q(con, &["BLMOVE", "queue", &processing, "RIGHT", "LEFT", "0.2"]))
        } else {
            text(&q(con, &["BRPOPLPUSH", "queue", &processing, "0.2"]))
        };
        let Some(job) = job else { continue };
        last = Instant::now();
        assert_eq!(q(con, &["LREM", &processing, "1", &job]), R::Int(1), "{name} {job}");
        done.push(job);
    }
    done
}

/// Producers in all three regions, a worker in each region, and the queue's first region cut off
/// for a while: every job runs at least once (the pops are at-least-once across regions, so a job
/// may run twice, never zero times), and once everything has crossed every region holds an empty
/// queue and empty processing lists.
#[test]
fn reliable_queue_across_three_regions() {
    let up = Up::start(&[]);
    let l = up.layout.clone();
    const JOBS_PER_REGION: usize = 60;
    let start = Arc::new(Barrier::new(REGIONS.len() * 2));
    let producers: Vec<_> = REGIONS
        .iter()
        .map(|region| {
            let (l, start) = (l.clone(), start.clone());
            let region = region.to_string();
            std::thread::spawn(move || {
                let mut con = l.redis(&region);
                start.wait();
                for n in 0..JOBS_PER_REGION {
                    q(&mut con, &["LPUSH", "queue", &format!("{region}-{n}")]);
                    std::thread::sleep(Duration::from_millis(3));
                }
            })
        })
        .collect();
    let workers: Vec<_> = REGIONS
        .iter()
        .enumerate()
        .map(|(i, region)| {
            let (l, start) = (l.clone(), start.clone());
            let region = region.to_string();
            std::thread::spawn(move || {
                let mut con = l.redis(&region);
                start.wait();
                worker(&mut con, &region, i % 2 == 0, Duration::from_secs(3))
            })
        })
        .collect();
    // A partition of us while jobs flow: its worker and producer go on alone.
    std::thread::sleep(Duration::from_millis(100));
    l.partition("us", &["eu", "ap"]);
    std::thread::sleep(Duration::from_millis(300));
    l.heal("us", &["eu", "ap"]);
    for p in producers {
        p.join().unwrap();
    }
    let mut runs: BTreeMap<String, usize> = BTreeMap::new();
    for w in workers {
        for job in w.join().unwrap() {
            *runs.entry(job).or_default() += 1;
        }
    }
    // Jobs still queued when the workers stopped (a late replicated push) are drained here.
    let mut us = l.redis("us");
    for job in worker(&mut us, "us", false, Duration::from_secs(1)) {
        *runs.entry(job).or_default() += 1;
    }
    for region in REGIONS {
        for n in 0..JOBS_PER_REGION {
            let job = format!("{region}-{n}");
            assert!(runs.contains_key(&job), "job {job} never ran");
        }
    }
    assert_eq!(
        runs.len(),
        REGIONS.len() * JOBS_PER_REGION,
        "a job ran that was never queued"
    );
    l.wait_caught_up(&REGIONS, WAIT);
    for region in REGIONS {
        let mut con = l.redis(region);
        assert_eq!(lrange(&mut con, "queue"), Vec::<String>::new(), "queue at {region}");
        for w in REGIONS {
            assert_eq!(
                lrange(&mut con, &format!("processing:{w}")),
                Vec::<String>::new(),
                "processing:{w} at {region}"
            );
        }
    }
    let twice = runs.values().filter(|n| **n > 1).count();
    eprintln!("reliable queue: {} jobs, {twice} ran more than once", runs.len());
}

pub const JOBS_POLICY: &str = "[[policy]]\nmatch = \"jobs:*\"\nhome = \"us\"\n";

/// `jobs:*` has its home in us: pops made in eu and ap are forwarded there, so with workers
/// popping in all three regions at once (`LPOP`, `BRPOP`, `LMOVE` to a processing list homed
/// there too) every job is popped exactly once. A blocking pop in a non-home region wakes for a
/// push made in a third region.
#[test]
fn home_region_list_pops_are_exactly_once() {
    let up = Up::with_policies(JOBS_POLICY, &[]);
    let l = up.layout.clone();
    const JOBS: usize = 300;
    let mut ap = l.redis("ap");
    for chunk in (0..JOBS).collect::<Vec<_>>().chunks(50) {
        let mut cmd = redis::cmd("RPUSH");
        cmd.arg("jobs:queue");
        for n in chunk {
            cmd.arg(format!("job-{n}"));
        }
        let _: i64 = cmd.query(&mut ap).unwrap();
    }
    l.wait_caught_up(&REGIONS, WAIT);
    let start = Arc::new(Barrier::new(REGIONS.len()));
    let workers: Vec<_> = REGIONS
        .iter()
        .enumerate()
        .map(|(i, region)| {
            let (l, start) = (l.clone(), start.clone());
            let region = region.to_string();
            std::thread::spawn(move || {
                let mut con = l.redis(&region);
                start.wait();
                let mut got = Vec::new();
                loop {
                    let job = match i {
                        0 => text(&q(&mut con, &["LPOP", "jobs:queue"])),
                        1 => match q(&mut con, &["BRPOP", "jobs:queue", "0.2"]) {
                            R::Array(kv) => text(&kv[1]),
                            R::Nil => None,
                            other => panic!("{other:?}"),
                        },
                        _ => text(&q(&mut con, &["LMOVE", "jobs:queue", "jobs:done", "LEFT", "RIGHT"])),
                    };
                    match job {
                        Some(j) => got.push(j),
                        None => return got,
                    }
                }
            })
        })
        .collect();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for w in workers {
        for j in w.join().unwrap() {
            *seen.entry(j).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), JOBS, "every job popped");
    let dup: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dup.is_empty(), "jobs popped more than once: {dup:?}");

    // A blocked BLPOP in eu (forwarded pops to us) wakes for a push made in ap.
    let l2 = l.clone();
    let waiter = std::thread::spawn(move || {
        let mut eu = l2.redis("eu");
        q(&mut eu, &["BLPOP", "jobs:queue", "8"])
    });
    std::thread::sleep(Duration::from_millis(300));
    q(&mut ap, &["RPUSH", "jobs:queue", "late"]);
    match waiter.join().unwrap() {
        R::Array(kv) => assert_eq!(text(&kv[1]).as_deref(), Some("late")),
        other => panic!("BLPOP answered {other:?}"),
    }
    l.wait_caught_up(&REGIONS, WAIT);
    for region in REGIONS {
        let mut con = l.redis(region);
        assert_eq!(q(&mut con, &["LLEN", "jobs:queue"]), R::Int(0), "at {region}");
    }
}

/// A blocked client wakes for a push replicated from another region (no home), and a blocking
/// pop times out with a nil as in Redis.
#[test]
fn blocking_pops_wake_on_replicated_pushes() {
    let up = Up::start(&[]);
    let l = up.layout.clone();
    let mut eu = l.redis("eu");
    let t = Instant::now();
    assert_eq!(q(&mut eu, &["BLPOP", "nothing", "0.3"]), R::Nil);
    assert!(t.elapsed() >= Duration::from_millis(300));
    let l2 = l.clone();
    let waiter = std::thread::spawn(move || {
        let mut ap = l2.redis("ap");
        q(&mut ap, &["BLMOVE", "inbox", "taken", "LEFT", "RIGHT", "0"])
    });
    std::thread::sleep(Duration::from_millis(300));
    q(&mut eu, &["RPUSH", "inbox", "hello"]);
    assert_eq!(text(&waiter.join().unwrap()).as_deref(), Some("hello"));
    l.wait_caught_up(&REGIONS, WAIT);
    for region in REGIONS {
        let mut con = l.redis(region);
        assert_eq!(lrange(&mut con, "taken"), ["hello"], "at {region}");
        assert_eq!(q(&mut con, &["TYPE", "taken"]), R::SimpleString("list".into()));
    }
}
