//! `MULTI EXEC DISCARD WATCH UNWATCH` on one node over a real socket (issue 11, item 4): exact
//! RESP2 replies as Redis 7 sends them, and the `redis` crate's own transaction helpers
//! (`redis::pipe().atomic()`, `redis::transaction` with `WATCH`) as a second client.

use crate::harness::{bulk, Server};

#[track_caller]
fn check(c: &mut crate::harness::RawClient, args: &[&str], want: &str) {
    assert_eq!(c.cmd(args), want, "reply to {args:?}");
}

#[test]
fn multi_exec_discard_and_errors_reply_as_redis() {
    let s = Server::start();
    let mut c = s.raw();
    check(&mut c, &["EXEC"], "-ERR EXEC without MULTI\r\n");
    check(&mut c, &["DISCARD"], "-ERR DISCARD without MULTI\r\n");
    check(&mut c, &["SET", "s", "text"], "+OK\r\n");

    check(&mut c, &["MULTI"], "+OK\r\n");
    check(&mut c, &["MULTI"], "-ERR MULTI calls can not be nested\r\n");
    check(&mut c, &["SET", "a", "1"], "+QUEUED\r\n");
    check(&mut c, &["INCR", "a"], "+QUEUED\r\n");
    check(&mut c, &["INCR", "s"], "+QUEUED\r\n"); // fails at EXEC; the others run
    check(&mut c, &["PING"], "+QUEUED\r\n");
    check(&mut c, &["GET", "a"], "+QUEUED\r\n");
    check(&mut c, &["WATCH", "a"], "-ERR WATCH inside MULTI is not allowed\r\n");
    assert_eq!(
        c.cmd(&["EXEC"]),
        "*5\r\n+OK\r\n:2\r\n-ERR value is not an integer or out of range\r\n+PONG\r\n$1\r\n2\r\n"
    );
    check(&mut c, &["GET", "a"], &bulk(Some("2")));

    // DISCARD drops the queue.
    check(&mut c, &["MULTI"], "+OK\r\n");
    check(&mut c, &["SET", "a", "discarded"], "+QUEUED\r\n");
    check(&mut c, &["DISCARD"], "+OK\r\n");
    check(&mut c, &["GET", "a"], &bulk(Some("2")));

    // A command refused while queueing (arity, unknown) aborts the whole transaction.
    check(&mut c, &["MULTI"], "+OK\r\n");
    check(&mut c, &["SET", "a", "never"], "+QUEUED\r\n");
    assert!(c.cmd(&["SET", "a"]).starts_with("-ERR wrong number of arguments"));
    assert!(c.cmd(&["NOSUCHCOMMAND"]).starts_with("-ERR unknown command"));
    check(
        &mut c,
        &["EXEC"],
        "-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    check(&mut c, &["GET", "a"], &bulk(Some("2")));
    // An empty transaction.
    check(&mut c, &["MULTI"], "+OK\r\n");
    check(&mut c, &["EXEC"], "*0\r\n");
}

#[test]
fn watch_aborts_exec_when_a_watched_key_changed() {
    let s = Server::start();
    let mut c = s.raw();
    let mut other = s.raw();
    check(&mut c, &["SET", "w", "1"], "+OK\r\n");
    check(&mut c, &["WATCH", "w", "absent"], "+OK\r\n");
    check(&mut other, &["SET", "w", "2"], "+OK\r\n");
    check(&mut c, &["MULTI"], "+OK\r\n");
    check(&mut c, &["SET", "w", "3"], "+QUEUED\r\n");
    check(&mut c, &["EXEC"], "*-1\r\n");
    check(&mut c, &["GET", "w"], &bulk(Some("2")));

    // Unchanged watched keys: EXEC runs. A key created meanwhile counts as changed.
    check(&mut c, &["WATCH", "w"], "+OK\r\n");
    check(&mut c, &["MULTI"], "+OK\r\n");
    check(&mut c, &["SET", "w", "4"], "+QUEUED\r\n");
    check(&mut c, &["EXEC"], "*1\r\n+OK\r\n");
    check(&mut c, &["WATCH", "new"], "+OK\r\n");
    check(&mut other, &["SET", "new", "x"], "+OK\r\n");
    check(&mut c, &["MULTI"], "+OK\r\n");
    check(&mut c, &["EXEC"], "*-1\r\n");

    // UNWATCH forgets; EXEC and DISCARD forget too.
    check(&mut c, &["WATCH", "w"], "+OK\r\n");
    check(&mut other, &["SET", "w", "5"], "+OK\r\n");
    check(&mut c, &["UNWATCH"], "+OK\r\n");
    check(&mut c, &["MULTI"], "+OK\r\n");
    check(&mut c, &["SET", "w", "6"], "+QUEUED\r\n");
    check(&mut c, &["EXEC"], "*1\r\n+OK\r\n");

    // An expiry changes a watched key. The key must still be live after WATCH (PTTL > 0): on a
    // machine too loaded for that, try again with a longer lifetime rather than depend on speed.
    for px in [100, 1_000, 10_000] {
        check(&mut c, &["SET", "e", "1", "PX", &px.to_string()], "+OK\r\n");
        check(&mut c, &["WATCH", "e"], "+OK\r\n");
        let pttl = c.cmd(&["PTTL", "e"]);
        if pttl.starts_with(':') && !pttl.starts_with(":-") {
            break;
        }
        assert!(px < 10_000, "the key expired before WATCH even with PX {px}");
        check(&mut c, &["UNWATCH"], "+OK\r\n");
    }
    while c.cmd(&["EXISTS", "e"]) != ":0\r\n" {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    check(&mut c, &["MULTI"], "+OK\r\n");
    check(&mut c, &["SET", "e", "2"], "+QUEUED\r\n");
    check(&mut c, &["EXEC"], "*-1\r\n");
}

#[test]
fn the_redis_crate_runs_atomic_pipelines_and_optimistic_transactions() {
    let s = Server::start();
    let mut con = s.redis();
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("INCRBY")
        .arg("ca")
        .arg(5)
        .cmd("INCRBY")
        .arg("cb")
        .arg(7)
        .query(&mut con)
        .unwrap();
    assert_eq!((a, b), (5, 7));
    // redis::transaction: WATCH, read, MULTI … EXEC, retried while a watched key changes.
    let mut attempts = 0;
    let mut other = s.redis();
    let (total,): (i64,) = redis::transaction(&mut con, &["ca"], |con, pipe| {
        attempts += 1;
        let v: i64 = redis::cmd("GET").arg("ca").query(con)?;
        if attempts == 1 {
            // Another client changes the watched key before EXEC: the first attempt aborts.
            let _: i64 = redis::cmd("INCR").arg("ca").query(&mut other)?;
        }
        pipe.cmd("SET")
            .arg("ca")
            .arg(v * 10)
            .ignore()
            .cmd("GET")
            .arg("ca")
            .query(con)
    })
    .unwrap();
    assert_eq!(attempts, 2, "the first EXEC must abort on the changed watched key");
    assert_eq!(total, 60);
}
