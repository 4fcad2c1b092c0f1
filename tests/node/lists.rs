//! List commands over a real socket: exact RESP2 replies as Redis 7.0 sends them (blocking
//! timeouts included), and a blocked client woken by another connection's push; the sorted
//! sets' blocking pops (`BZPOPMIN BZPOPMAX BZMPOP`), which share the blocking machinery.

use crate::harness::{bulk, bulk_array, Server};

#[track_caller]
fn check(c: &mut crate::harness::RawClient, args: &[&str], want: &str) {
    assert_eq!(c.cmd(args), want, "reply to {args:?}");
}

#[test]
fn list_commands_exact_replies() {
    let s = Server::start();
    let mut c = s.raw();
    check(&mut c, &["RPUSH", "l", "a", "b", "c"], ":3\r\n");
    check(&mut c, &["LPUSH", "l", "x"], ":4\r\n");
    check(
        &mut c,
        &["LRANGE", "l", "0", "-1"],
        &bulk_array(&[Some("x"), Some("a"), Some("b"), Some("c")]),
    );
    check(&mut c, &["LRANGE", "l", "5", "9"], "*0\r\n");
    check(&mut c, &["LLEN", "l"], ":4\r\n");
    check(&mut c, &["LINDEX", "l", "-1"], &bulk(Some("c")));
    check(&mut c, &["LSET", "l", "9", "z"], "-ERR index out of range\r\n");
    check(&mut c, &["LSET", "nope", "0", "z"], "-ERR no such key\r\n");
    check(&mut c, &["LINSERT", "l", "AFTER", "a", "m"], ":5\r\n");
    check(&mut c, &["LPOS", "l", "m"], ":2\r\n");
    check(&mut c, &["LPOS", "l", "m", "RANK", "0"], "-ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list\r\n");
    check(&mut c, &["LREM", "l", "0", "m"], ":1\r\n");
    check(&mut c, &["LPOP", "l", "2"], &bulk_array(&[Some("x"), Some("a")]));
    check(&mut c, &["RPOPLPUSH", "l", "l2"], &bulk(Some("c")));
    check(
        &mut c,
        &["LMPOP", "2", "nope", "l2", "RIGHT"],
        "*2\r\n$2\r\nl2\r\n*1\r\n$1\r\nc\r\n",
    );
    check(&mut c, &["TYPE", "l"], "+list\r\n");
    check(&mut c, &["OBJECT", "ENCODING", "l"], &bulk(Some("quicklist")));
    check(&mut c, &["SET", "s", "v"], "+OK\r\n");
    check(
        &mut c,
        &["LPUSH", "s", "a"],
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    );
    check(&mut c, &["BLPOP", "nope", "0.05"], "*-1\r\n");
    check(&mut c, &["BLMOVE", "nope", "x", "LEFT", "LEFT", "0.05"], "$-1\r\n");
    check(&mut c, &["BLPOP", "l", "0"], "*2\r\n$1\r\nl\r\n$1\r\nb\r\n");
    check(&mut c, &["BLPOP", "l", "-1"], "-ERR timeout is negative\r\n");

    // A client blocked forever is woken by another connection's push.
    let port = s.port();
    let waiter = std::thread::spawn(move || {
        let mut c = crate::harness::RawClient::connect(port);
        c.cmd(&["BRPOP", "jobs", "other", "0"])
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    check(&mut c, &["LPUSH", "other", "j1"], ":1\r\n");
    assert_eq!(waiter.join().unwrap(), "*2\r\n$5\r\nother\r\n$2\r\nj1\r\n");
    check(&mut c, &["EXISTS", "other"], ":0\r\n");
}

/// A pipeline whose last command blocks: the replies before it are sent at once.
#[test]
fn replies_before_a_blocking_command_are_not_held() {
    use std::io::{Read, Write};
    let s = Server::start();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", s.port())).unwrap();
    stream
        .write_all(b"*3\r\n$5\r\nRPUSH\r\n$1\r\na\r\n$1\r\nx\r\n*3\r\n$5\r\nBLPOP\r\n$1\r\nb\r\n$1\r\n0\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    let n = stream.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b":1\r\n", "the RPUSH reply came while BLPOP blocks");
}

/// `CLIENT UNBLOCK` ends a blocked command: as a timeout by default, with `-UNBLOCKED` with
/// `ERROR`; a connection that is not blocked is not unblocked.
#[test]
fn client_unblock_ends_a_blocking_command() {
    let s = Server::start();
    let mut c = s.raw();
    let port = s.port();
    for (reason, want) in [
        ("TIMEOUT", "*-1\r\n"),
        ("ERROR", "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"),
    ] {
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let mut b = crate::harness::RawClient::connect(port);
            let id = b.cmd(&["CLIENT", "ID"]);
            tx.send(id.trim_start_matches(':').trim().to_string()).unwrap();
            b.cmd(&["BLPOP", "nothing", "0"])
        });
        let id = rx.recv().unwrap();
        // Retry until the waiter is blocked (it may not have sent BLPOP yet).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while c.cmd(&["CLIENT", "UNBLOCK", &id, reason]) != ":1\r\n" {
            assert!(std::time::Instant::now() < deadline, "never blocked");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(waiter.join().unwrap(), want, "{reason}");
    }
    let own = c.cmd(&["CLIENT", "ID"]);
    check(
        &mut c,
        &["CLIENT", "UNBLOCK", own.trim_start_matches(':').trim()],
        ":0\r\n",
    );
}

/// Inside `MULTI` a blocking pop does not block (as in Redis): it runs as its non-blocking form
/// at `EXEC`, and on an empty list answers as at a timeout: a null array, a null bulk for
/// `BLMOVE`/`BRPOPLPUSH` (Redis 7.0).
#[test]
fn blocking_pops_inside_multi_do_not_block() {
    let s = Server::start();
    let mut c = s.raw();
    check(&mut c, &["MULTI"], "+OK\r\n");
    check(&mut c, &["BLPOP", "empty", "0"], "+QUEUED\r\n");
    check(&mut c, &["BLMPOP", "0", "1", "empty", "LEFT"], "+QUEUED\r\n");
    check(&mut c, &["BLMOVE", "empty", "dst", "LEFT", "RIGHT", "0"], "+QUEUED\r\n");
    check(&mut c, &["BRPOPLPUSH", "empty", "dst", "0"], "+QUEUED\r\n");
    check(&mut c, &["RPUSH", "full", "x", "y"], "+QUEUED\r\n");
    check(&mut c, &["BRPOP", "full", "0"], "+QUEUED\r\n");
    check(&mut c, &["BRPOPLPUSH", "full", "other", "0"], "+QUEUED\r\n");
    check(
        &mut c,
        &["EXEC"],
        "*7\r\n*-1\r\n*-1\r\n$-1\r\n$-1\r\n:2\r\n*2\r\n$4\r\nfull\r\n$1\r\ny\r\n$1\r\nx\r\n",
    );
    check(&mut c, &["LRANGE", "other", "0", "-1"], &bulk_array(&[Some("x")]));
}

/// `BZPOPMIN`/`BZPOPMAX`/`BZMPOP`: Redis 7.0's replies (scores as bulk text on RESP2), the
/// timeout's null array, errors, and a blocked client woken by another connection's `ZADD`.
#[test]
fn blocking_sorted_set_pops() {
    let s = Server::start();
    let mut c = s.raw();
    check(&mut c, &["ZADD", "z", "1", "a", "2", "b", "3", "c"], ":3\r\n");
    check(
        &mut c,
        &["BZPOPMIN", "nope", "z", "0"],
        "*3\r\n$1\r\nz\r\n$1\r\na\r\n$1\r\n1\r\n",
    );
    check(
        &mut c,
        &["BZPOPMAX", "z", "0.05"],
        "*3\r\n$1\r\nz\r\n$1\r\nc\r\n$1\r\n3\r\n",
    );
    check(
        &mut c,
        &["BZMPOP", "0", "2", "nope", "z", "MIN", "COUNT", "5"],
        "*2\r\n$1\r\nz\r\n*1\r\n*2\r\n$1\r\nb\r\n$1\r\n2\r\n",
    );
    check(&mut c, &["EXISTS", "z"], ":0\r\n");
    check(&mut c, &["BZPOPMIN", "z", "0.05"], "*-1\r\n");
    check(&mut c, &["BZMPOP", "0.05", "1", "z", "MAX"], "*-1\r\n");
    check(&mut c, &["BZPOPMAX", "z", "-1"], "-ERR timeout is negative\r\n");
    check(
        &mut c,
        &["BZMPOP", "0", "0", "z", "MIN"],
        "-ERR numkeys should be greater than 0\r\n",
    );
    check(&mut c, &["SET", "s", "v"], "+OK\r\n");
    check(
        &mut c,
        &["BZPOPMIN", "s", "0"],
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    );

    // Clients blocked forever are woken by another connection's ZADD.
    let port = s.port();
    let waiter = std::thread::spawn(move || {
        let mut c = crate::harness::RawClient::connect(port);
        c.cmd(&["BZPOPMAX", "board", "other", "0"])
    });
    let mpop_waiter = std::thread::spawn(move || {
        let mut c = crate::harness::RawClient::connect(port);
        c.cmd(&["BZMPOP", "0", "1", "third", "MIN", "COUNT", "2"])
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    check(&mut c, &["ZADD", "other", "1.5", "m"], ":1\r\n");
    assert_eq!(waiter.join().unwrap(), "*3\r\n$5\r\nother\r\n$1\r\nm\r\n$3\r\n1.5\r\n");
    check(&mut c, &["ZADD", "third", "2", "x", "1", "y"], ":2\r\n");
    assert_eq!(
        mpop_waiter.join().unwrap(),
        "*2\r\n$5\r\nthird\r\n*2\r\n*2\r\n$1\r\ny\r\n$1\r\n1\r\n*2\r\n$1\r\nx\r\n$1\r\n2\r\n"
    );
    check(&mut c, &["EXISTS", "other", "third"], ":0\r\n");
}
