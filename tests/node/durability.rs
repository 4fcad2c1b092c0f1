//! Durability (DESIGN §5): `kill -9` right after acknowledged writes, then a restart on the same
//! data dir.

use crate::harness::{bulk, RawClient, Server};
use std::time::Duration;

/// Acknowledged writes of several kinds, from several connections at once and from one pipeline.
/// Returns the keys written as strings `(key, value)`.
fn write_acknowledged(s: &Server, prefix: &str) -> Vec<(String, String)> {
    let mut threads = Vec::new();
    for t in 0..4 {
        let mut con = s.redis();
        let prefix = prefix.to_string();
        threads.push(std::thread::spawn(move || {
            let mut written = Vec::new();
            for i in 0..50 {
                let (k, v) = (format!("{prefix}:t{t}:{i}"), format!("value-{t}-{i}"));
                let () = redis::cmd("SET")
                    .arg(&k)
                    .arg(&v)
                    .query(&mut con)
                    .expect("SET acknowledged");
                written.push((k, v));
            }
            written
        }));
    }
    let mut written: Vec<(String, String)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    // One pipeline of 200 SETs; every reply read before returning.
    let mut c = s.raw();
    let mut buf = Vec::new();
    for i in 0..200 {
        let (k, v) = (format!("{prefix}:pipe:{i}"), format!("p{i}"));
        buf.extend(RawClient::encode(&[b"SET", k.as_bytes(), v.as_bytes()]));
        written.push((k, v));
    }
    c.send_bytes(&buf).unwrap();
    for i in 0..200 {
        assert_eq!(c.read_reply(), "+OK\r\n", "pipelined SET #{i}");
    }
    // Other types.
    assert_eq!(
        c.cmd(&["HSET", &format!("{prefix}:hash"), "f", "v", "g", "w"]),
        ":2\r\n"
    );
    assert_eq!(c.cmd(&["SADD", &format!("{prefix}:set"), "a", "b", "c"]), ":3\r\n");
    for _ in 0..5 {
        c.cmd(&["INCR", &format!("{prefix}:counter")]);
    }
    assert_eq!(c.cmd(&["INCR", &format!("{prefix}:counter")]), ":6\r\n");
    written.push((format!("{prefix}:counter"), "6".into()));
    assert_eq!(c.cmd(&["SET", &format!("{prefix}:ttl"), "t", "EX", "1000"]), "+OK\r\n");
    written
}

fn assert_all_present(s: &Server, prefix: &str, written: &[(String, String)]) {
    let mut c = s.raw();
    for (k, v) in written {
        assert_eq!(c.cmd(&["GET", k]), bulk(Some(v)), "{k} lost after restart");
    }
    assert_eq!(c.cmd(&["HGET", &format!("{prefix}:hash"), "g"]), bulk(Some("w")));
    assert_eq!(c.cmd(&["SCARD", &format!("{prefix}:set")]), ":3\r\n");
    let ttl = c.cmd(&["TTL", &format!("{prefix}:ttl")]);
    let ttl: i64 = ttl[1..ttl.len() - 2].parse().unwrap();
    assert!((990..=1000).contains(&ttl), "TTL survives a restart: {ttl}");
}

#[test]
fn fsync_always_kill_9_right_after_acknowledged_writes_loses_nothing() {
    let s = Server::start_with(|setup| setup.fsync = "always");
    let written = write_acknowledged(&s, "a");
    // kill -9 immediately after the last acknowledgement, then restart on the same data dir.
    let s = s.restart();
    assert_all_present(&s, "a", &written);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["DBSIZE"]), format!(":{}\r\n", written.len() + 3));
    // The node keeps working (and its sequence numbers keep counting) after recovery.
    assert_eq!(c.cmd(&["INCR", "a:counter"]), ":7\r\n");
    let s = s.restart();
    assert_eq!(s.raw().cmd(&["GET", "a:counter"]), bulk(Some("7")));
}

#[test]
fn fsync_everysec_kill_9_loses_at_most_the_last_seconds() {
    let s = Server::start_with(|setup| setup.fsync = "everysec");
    let early = write_acknowledged(&s, "e");
    // Everything acknowledged more than ~2 s before the crash is on disk.
    std::thread::sleep(Duration::from_millis(2500));
    let mut c = s.raw();
    let mut late = Vec::new();
    for i in 0..50 {
        let (k, v) = (format!("late:{i}"), format!("l{i}"));
        assert_eq!(c.cmd(&["SET", &k, &v]), "+OK\r\n");
        late.push((k, v));
    }
    let s = s.restart();
    assert_all_present(&s, "e", &early);
    // The last second may be lost, but never half-written: a late key is absent or intact.
    let mut c = s.raw();
    let mut survived = 0;
    for (k, v) in &late {
        let got = c.cmd(&["GET", k]);
        if got == bulk(Some(v)) {
            survived += 1;
        } else {
            assert_eq!(got, "$-1\r\n", "{k} is neither absent nor intact");
        }
    }
    eprintln!(
        "everysec: {survived}/{} writes of the last second survived kill -9",
        late.len()
    );
}

#[test]
fn sigterm_flushes_and_exits_0() {
    let mut s = Server::start_with(|setup| setup.fsync = "everysec");
    let written = write_acknowledged(&s, "t");
    let status = s.terminate();
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0; log:\n{}", s.log());
    let s = s.restart();
    assert_all_present(&s, "t", &written);
}

/// Keys change storage form as they change type (strings and counters in one row, sets and
/// hashes a row per member): every form and every move between them survives a crash.
#[test]
fn keys_changing_type_survive_kill_9_in_every_storage_form() {
    let s = Server::start_with(|setup| setup.fsync = "always");
    let mut c = s.raw();
    // A string with a TTL, deleted, then a set on the same key (its register tombstone moves out
    // of the one row, beside the members).
    assert_eq!(c.cmd(&["SET", "k", "v", "EX", "1000"]), "+OK\r\n");
    assert_eq!(c.cmd(&["DEL", "k"]), ":1\r\n");
    assert_eq!(c.cmd(&["SADD", "k", "a", "b"]), ":2\r\n");
    // A set emptied, then a counter on it (back to one row).
    assert_eq!(c.cmd(&["SADD", "gone", "x"]), ":1\r\n");
    assert_eq!(c.cmd(&["SREM", "gone", "x"]), ":1\r\n");
    assert_eq!(c.cmd(&["INCRBY", "gone", "5"]), ":5\r\n");
    // A hash, and a plain string with an expiry.
    assert_eq!(c.cmd(&["HSET", "h", "f", "1"]), ":1\r\n");
    assert_eq!(c.cmd(&["SET", "s", "x", "EX", "1000"]), "+OK\r\n");
    drop(c);
    let s = s.restart();
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SMEMBERS", "k"]), "*2\r\n$1\r\na\r\n$1\r\nb\r\n");
    assert_eq!(c.cmd(&["TTL", "k"]), ":-1\r\n", "the deleted string's TTL went with it");
    assert_eq!(c.cmd(&["GET", "gone"]), bulk(Some("5")));
    assert_eq!(c.cmd(&["HGET", "h", "f"]), bulk(Some("1")));
    assert_eq!(c.cmd(&["GET", "s"]), bulk(Some("x")));
    // And back: the set emptied and overwritten by a string.
    assert_eq!(c.cmd(&["SET", "k", "str"]), "+OK\r\n");
    assert_eq!(c.cmd(&["HDEL", "h", "f"]), ":1\r\n");
    drop(c);
    let s = s.restart();
    let mut c = s.raw();
    assert_eq!(c.cmd(&["GET", "k"]), bulk(Some("str")));
    assert_eq!(c.cmd(&["EXISTS", "h"]), ":0\r\n");
    assert_eq!(c.cmd(&["DBSIZE"]), ":3\r\n");
}
