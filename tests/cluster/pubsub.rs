//! Pub/sub across regions (issue 11, item 5; DESIGN §8.4): a message published in one region
//! reaches the subscribers of every region, once, in publish order per publishing region — in a
//! mesh (straight from the origin), in a ring (relayed around, never looping back) and in a star
//! (relayed by the hub).

use crate::harness::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const PER_REGION: usize = 40;

fn info_counter(l: &Layout, region: &str, name: &str) -> u64 {
    let mut con = l.redis(region);
    let info: String = redis::cmd("INFO").arg("stats").query(&mut con).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {info}"))
}

fn every_region_gets_every_message_once_in_order(c: &ServeCluster) {
    let l = &c.layout;
    // In every region: a channel subscription, and a pattern one on another connection.
    let mut conns: Vec<redis::Connection> = REGIONS.iter().flat_map(|r| [l.redis(r), l.redis(r)]).collect();
    let mut subs: Vec<redis::PubSub<'_>> = conns.iter_mut().map(|c| c.as_pubsub()).collect();
    for (i, sub) in subs.iter_mut().enumerate() {
        if i % 2 == 0 {
            sub.subscribe("events").unwrap();
        } else {
            sub.psubscribe("ev*").unwrap();
        }
        sub.set_read_timeout(Some(WAIT)).unwrap();
    }
    // Publish from every region, interleaved; each PUBLISH counts only its own region's two
    // receivers (the channel and the pattern subscription), as Redis Cluster does.
    let mut pubs: Vec<redis::Connection> = REGIONS.iter().map(|r| l.redis(r)).collect();
    for i in 0..PER_REGION {
        for (k, r) in REGIONS.iter().enumerate() {
            let n: i64 = redis::cmd("PUBLISH")
                .arg("events")
                .arg(format!("{r}:{i}"))
                .query(&mut pubs[k])
                .unwrap();
            assert_eq!(n, 2, "local receivers of a PUBLISH in {r}");
        }
    }
    let total = PER_REGION * REGIONS.len();
    for (i, sub) in subs.iter_mut().enumerate() {
        let region = REGIONS[i / 2];
        let what = if i % 2 == 0 { "channel" } else { "pattern" };
        {
            let mut got: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for _ in 0..total {
                let m = sub
                    .get_message()
                    .unwrap_or_else(|e| panic!("{region} ({what}) after {got:?}: {e}"));
                assert_eq!(m.get_channel_name(), "events");
                let payload: String = m.get_payload().unwrap();
                let (origin, i) = payload.split_once(':').unwrap();
                got.entry(origin.to_string()).or_default().push(i.parse().unwrap());
            }
            for r in REGIONS {
                assert_eq!(
                    got.get(r).cloned().unwrap_or_default(),
                    (0..PER_REGION).collect::<Vec<_>>(),
                    "{region} ({what}) got {r}'s messages once each, in publish order"
                );
            }
            // And nothing more: no duplicate arrives late by another path.
            sub.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
            let started = Instant::now();
            match sub.get_message() {
                Ok(m) => panic!("{region} ({what}) got an extra message {:?}", m.get_payload::<String>()),
                Err(e) => assert!(e.is_timeout(), "{e}"),
            }
            assert!(started.elapsed() >= Duration::from_millis(500));
        }
    }
}

#[test]
fn pubsub_reaches_every_region_once_in_order_in_a_mesh() {
    let mut c = ServeCluster::new("");
    c.start_all();
    every_region_gets_every_message_once_in_order(&c);
    for r in REGIONS {
        assert_eq!(
            info_counter(&c.layout, r, "concord_pubsub_relayed"),
            0,
            "a mesh relays nothing"
        );
        assert_eq!(
            info_counter(&c.layout, r, "concord_pubsub_published"),
            PER_REGION as u64
        );
        assert_eq!(
            info_counter(&c.layout, r, "concord_pubsub_received"),
            (PER_REGION * 2) as u64
        );
    }
}

#[test]
fn pubsub_reaches_every_region_once_in_order_around_a_ring() {
    let mut c = ServeCluster::new("topology = \"ring\"");
    c.start_all();
    every_region_gets_every_message_once_in_order(&c);
    for r in REGIONS {
        // Each region passes on its upstream's messages (not those of its downstream, the
        // messages' next stop would be their origin).
        assert_eq!(info_counter(&c.layout, r, "concord_pubsub_relayed"), PER_REGION as u64);
        assert_eq!(
            info_counter(&c.layout, r, "concord_pubsub_received"),
            (PER_REGION * 2) as u64
        );
        assert_eq!(info_counter(&c.layout, r, "concord_pubsub_duplicates"), 0);
    }
}

#[test]
fn pubsub_reaches_every_region_once_in_order_through_a_star_hub() {
    let mut c = ServeCluster::new("topology = \"star\"\nhub = \"eu\"");
    c.start_all();
    every_region_gets_every_message_once_in_order(&c);
    // The hub passes each leaf's messages to the other leaf; leaves pass nothing on.
    assert_eq!(
        info_counter(&c.layout, "eu", "concord_pubsub_relayed"),
        (PER_REGION * 2) as u64
    );
    for r in ["us", "ap"] {
        assert_eq!(info_counter(&c.layout, r, "concord_pubsub_relayed"), 0);
    }
}

fn pushed(kind: &str, channel: &str, payload: &str) -> Resp {
    let b = |s: &str| Resp::Bulk(Some(s.to_string()));
    Resp::Array(Some(vec![b(kind), b(channel), b(payload)]))
}

#[test]
fn shard_messages_cross_regions_and_a_partition_loses_messages_without_replaying_them() {
    let mut c = ServeCluster::new("");
    c.start_all();
    let l = &c.layout;
    let mut sub = l.raw("eu");
    let b = |s: &str| Resp::Bulk(Some(s.to_string()));
    assert_eq!(
        sub.cmd(&["SUBSCRIBE", "p"]),
        Resp::Array(Some(vec![b("subscribe"), b("p"), Resp::Int(1)]))
    );
    assert_eq!(
        sub.cmd(&["SSUBSCRIBE", "s"]),
        Resp::Array(Some(vec![b("ssubscribe"), b("s"), Resp::Int(1)]))
    );
    let mut us = l.raw("us");
    // SPUBLISH reaches shard subscribers in another region; this region has none.
    assert_eq!(us.cmd(&["SPUBLISH", "s", "shard-1"]), Resp::Int(0));
    assert_eq!(sub.read_reply().unwrap(), pushed("smessage", "s", "shard-1"));
    assert_eq!(us.cmd(&["PUBLISH", "p", "before"]), Resp::Int(0));
    assert_eq!(sub.read_reply().unwrap(), pushed("message", "p", "before"));

    // Cut eu off: what us publishes meanwhile never reaches it, not even once the links heal.
    l.partition("eu", &["us", "ap"]);
    assert_eq!(us.cmd(&["PUBLISH", "p", "lost"]), Resp::Int(0));
    l.heal("eu", &["us", "ap"]);
    l.wait_ready(&REGIONS);
    assert_eq!(us.cmd(&["PUBLISH", "p", "after"]), Resp::Int(0));
    assert_eq!(
        sub.read_reply().unwrap(),
        pushed("message", "p", "after"),
        "the message published during the partition is lost, not replayed"
    );
    let dropped = info_counter(l, "eu", "concord_pubsub_duplicates");
    assert_eq!(dropped, 0);
}

/// A script that writes a key then publishes: in another region the message comes after the
/// write (sent once the unit ran, on the same replication stream), so a subscriber woken by it
/// reads the new value. Scripts whose keys are homed elsewhere publish from the home.
#[test]
fn a_scripts_message_follows_its_writes_to_other_regions() {
    let mut c = ServeCluster::new("[[policy]]\nmatch = \"h:*\"\nhome = \"us\"\n");
    c.start_all();
    let l = &c.layout;
    let mut sub = l.raw("eu");
    let b = |s: &str| Resp::Bulk(Some(s.to_string()));
    assert_eq!(
        sub.cmd(&["SUBSCRIBE", "changed"]),
        Resp::Array(Some(vec![b("subscribe"), b("changed"), Resp::Int(1)]))
    );
    let mut reader = l.raw("eu");
    let mut us = l.raw("us");
    let script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('PUBLISH', 'changed', ARGV[1])";
    for i in 0..50 {
        let v = format!("v{i}");
        assert_eq!(us.cmd(&["EVAL", script, "1", "doc", &v]), Resp::Int(0));
        assert_eq!(sub.read_reply().unwrap(), pushed("message", "changed", &v));
        assert_eq!(reader.cmd(&["GET", "doc"]), b(&v), "message {i} came before its write");
    }
    // Sent from ap for a key homed in us: it runs (and publishes) in us.
    let mut ap = l.raw("ap");
    assert_eq!(ap.cmd(&["EVAL", script, "1", "h:doc", "homed"]), Resp::Int(0));
    assert_eq!(sub.read_reply().unwrap(), pushed("message", "changed", "homed"));
    assert_eq!(reader.cmd(&["GET", "h:doc"]), b("homed"));
    // A client in ap writes a key homed in us (forwarded), then publishes from ap: eu delivers
    // the message once it has applied the home's write too — here 300 ms late (us → eu delayed),
    // while ap's message comes straight away.
    l.set_link("us", "eu", r#"{"delay_ms": 300}"#);
    for i in 0..8 {
        let v = format!("fwd{i}");
        assert_eq!(ap.cmd(&["SET", "h:doc", &v]), Resp::Simple("OK".into()));
        assert_eq!(ap.cmd(&["PUBLISH", "changed", &v]), Resp::Int(0));
        assert_eq!(sub.read_reply().unwrap(), pushed("message", "changed", &v));
        assert_eq!(
            reader.cmd(&["GET", "h:doc"]),
            b(&v),
            "message {i} came before the home's write"
        );
    }
    l.set_link("us", "eu", "{}");
}
