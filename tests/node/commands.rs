//! Every command of DESIGN §6 over a real socket: the exact RESP bytes (as Redis sends them), the
//! same commands through the `redis` crate, pipelining, RESP3, expiry and AUTH.

use crate::harness::{bulk, bulk_array, redis_connect, RawClient, Server};
use redis::Value;
use std::time::{Duration, Instant};

/// Send `args`, assert the reply is exactly `want`.
#[track_caller]
fn check(c: &mut RawClient, args: &[&str], want: &str) {
    let got = c.cmd(args);
    assert_eq!(got, want, "reply to {args:?}");
}

/// Send `args`, assert the reply starts with `prefix`; returns it.
#[track_caller]
fn check_prefix(c: &mut RawClient, args: &[&str], prefix: &str) -> String {
    let got = c.cmd(args);
    assert!(
        got.starts_with(prefix),
        "reply to {args:?}: {got:?} does not start with {prefix:?}"
    );
    got
}

fn int(n: i64) -> String {
    format!(":{n}\r\n")
}

const OK: &str = "+OK\r\n";
const NIL: &str = "$-1\r\n";
const WRONGTYPE: &str = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

#[test]
fn every_command_exact_resp2_replies() {
    let s = Server::start();
    let mut c = s.raw();

    // Connection commands.
    check(&mut c, &["PING"], "+PONG\r\n");
    check(&mut c, &["ping", "hello world"], &bulk(Some("hello world")));
    check(&mut c, &["ECHO", "x y"], &bulk(Some("x y")));
    check(&mut c, &["SELECT", "0"], OK);
    check(&mut c, &["SELECT", "1"], "-ERR DB index is out of range\r\n");
    check(
        &mut c,
        &["AUTH", "pw"],
        "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n",
    );
    // HELLO without a version keeps RESP2: the server map as a flat array.
    let hello = check_prefix(
        &mut c,
        &["HELLO"],
        "*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n",
    );
    assert!(hello.contains("$5\r\nproto\r\n:2\r\n"), "{hello}");
    assert!(hello.contains("$4\r\nmode\r\n$10\r\nstandalone\r\n"), "{hello}");
    assert!(hello.ends_with("$7\r\nmodules\r\n*0\r\n"), "{hello}");
    let count = check_prefix(&mut c, &["COMMAND", "COUNT"], ":");
    let count: usize = count[1..count.len() - 2].parse().unwrap();
    assert!(count >= 60, "COMMAND COUNT {count}");
    let all = check_prefix(&mut c, &["COMMAND"], &format!("*{count}\r\n"));
    for name in ["get", "smismember", "concord.siblings", "wait"] {
        assert!(all.contains(&bulk(Some(name))), "COMMAND lacks {name}");
    }
    check_prefix(&mut c, &["COMMAND", "INFO", "get"], "*1\r\n*10\r\n$3\r\nget\r\n:2\r\n");
    let info = check_prefix(&mut c, &["INFO"], "$");
    for field in ["# Server\r\n", "redis_version:", "# Keyspace\r\n", "# Replication\r\n"] {
        assert!(info.contains(field), "INFO lacks {field:?}: {info}");
    }
    let info = check_prefix(&mut c, &["INFO", "server"], "$");
    assert!(info.contains("# Server\r\nredis_version:"), "{info}");
    assert!(
        !info.contains("# Keyspace"),
        "INFO server shows only the server section: {info}"
    );

    // Keyspace.
    check(&mut c, &["DBSIZE"], &int(0));
    check(&mut c, &["SET", "k", "v"], OK);
    check(&mut c, &["TYPE", "k"], "+string\r\n");
    check(&mut c, &["TYPE", "missing"], "+none\r\n");
    check(&mut c, &["EXISTS", "k", "missing", "k"], &int(2));
    check(&mut c, &["MSET", "a", "1", "b", "2", "c", "3"], OK);
    check(&mut c, &["DBSIZE"], &int(4));
    check(
        &mut c,
        &["KEYS", "*"],
        &bulk_array(&[Some("a"), Some("b"), Some("c"), Some("k")]),
    );
    check(&mut c, &["KEYS", "[ab]"], &bulk_array(&[Some("a"), Some("b")]));
    // A full SCAN iteration returns every key once and ends on cursor 0.
    let mut cursor = "0".to_string();
    let mut seen = Vec::new();
    for _ in 0..100 {
        c.send(&["SCAN", &cursor, "COUNT", "2"]).unwrap();
        let reply = c.read_reply();
        let parts: Vec<&str> = reply.split("\r\n").collect();
        assert_eq!(parts[0], "*2", "{reply}");
        cursor = parts[2].to_string();
        let n: usize = parts[3][1..].parse().unwrap();
        for i in 0..n {
            seen.push(parts[5 + 2 * i].to_string());
        }
        if cursor == "0" {
            break;
        }
    }
    seen.sort();
    assert_eq!(seen, ["a", "b", "c", "k"]);
    check(
        &mut c,
        &["SCAN", "0", "MATCH", "k*", "COUNT", "100"],
        "*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n",
    );
    check(&mut c, &["DEL", "a", "b", "missing"], &int(2));
    check(&mut c, &["UNLINK", "c"], &int(1));
    check(&mut c, &["EXISTS", "a", "b", "c"], &int(0));
    check(&mut c, &["FLUSHDB"], OK);
    check(&mut c, &["DBSIZE"], &int(0));
    check(&mut c, &["SET", "x", "1"], OK);
    check(&mut c, &["FLUSHALL"], OK);
    check(&mut c, &["GET", "x"], NIL);

    // Strings.
    check(&mut c, &["GET", "s"], NIL);
    check(&mut c, &["SET", "s", "one"], OK);
    check(&mut c, &["GET", "s"], &bulk(Some("one")));
    check(&mut c, &["SET", "s", "two", "NX"], NIL);
    check(&mut c, &["SET", "s2", "two", "XX"], NIL);
    check(&mut c, &["SET", "s", "two", "XX", "GET"], &bulk(Some("one")));
    check(&mut c, &["SET", "s2", "new", "NX"], OK);
    check(&mut c, &["SET", "s2", "x", "NX", "GET"], &bulk(Some("new")));
    check(&mut c, &["SET", "s", "v", "FOO"], "-ERR syntax error\r\n");
    check(
        &mut c,
        &["SET", "s", "v", "EX", "0"],
        "-ERR invalid expire time in 'set' command\r\n",
    );
    check(&mut c, &["SETNX", "s", "x"], &int(0));
    check(&mut c, &["SETNX", "s3", "x"], &int(1));
    check(&mut c, &["SETEX", "s4", "100", "v4"], OK);
    check(&mut c, &["TTL", "s4"], &int(100));
    check(
        &mut c,
        &["MGET", "s", "nope", "s3"],
        &bulk_array(&[Some("two"), None, Some("x")]),
    );
    check(&mut c, &["GETSET", "s", "three"], &bulk(Some("two")));
    check(&mut c, &["GETSET", "fresh", "v"], NIL);
    check(&mut c, &["STRLEN", "s"], &int(5));
    check(&mut c, &["STRLEN", "nope"], &int(0));
    check(&mut c, &["APPEND", "s", "!!"], &int(7));
    check(&mut c, &["APPEND", "new-append", "ab"], &int(2));
    check(&mut c, &["GET", "s"], &bulk(Some("three!!")));
    check(&mut c, &["GETDEL", "s"], &bulk(Some("three!!")));
    check(&mut c, &["GETDEL", "s"], NIL);
    check(&mut c, &["EXISTS", "s"], &int(0));

    // Binary-safe keys and values: CR, LF, NUL and non-UTF-8 bytes go through unchanged.
    let value: &[u8] = b"line1\r\nline2\x00\xff\xfe end";
    assert_eq!(c.cmd_bytes(&[b"SET", b"bin\r\nkey\x00", value]), OK);
    c.send_bytes(&RawClient::encode(&[b"GET", b"bin\r\nkey\x00"])).unwrap();
    let mut want = format!("${}\r\n", value.len()).into_bytes();
    want.extend_from_slice(value);
    want.extend_from_slice(b"\r\n");
    assert_eq!(c.try_read_reply().unwrap(), want);
    assert_eq!(c.cmd_bytes(&[b"STRLEN", b"bin\r\nkey\x00"]), int(value.len() as i64));
    assert_eq!(c.cmd_bytes(&[b"DEL", b"bin\r\nkey\x00"]), int(1));
    check(&mut c, &["SET", "", "empty key"], OK);
    check(&mut c, &["GET", ""], &bulk(Some("empty key")));
    check(&mut c, &["SET", "empty", ""], OK);
    check(&mut c, &["GET", "empty"], "$0\r\n\r\n");
    check(&mut c, &["DEL", "", "empty"], &int(2));

    // Counters.
    check(&mut c, &["INCR", "n"], &int(1));
    check(&mut c, &["INCRBY", "n", "41"], &int(42));
    check(&mut c, &["DECR", "n"], &int(41));
    check(&mut c, &["DECRBY", "n", "50"], &int(-9));
    check(&mut c, &["GET", "n"], &bulk(Some("-9")));
    check(&mut c, &["TYPE", "n"], "+string\r\n");
    check(&mut c, &["SET", "m", "10"], OK);
    check(&mut c, &["INCR", "m"], &int(11));
    check(&mut c, &["APPEND", "m", "5"], &int(3));
    check(&mut c, &["GET", "m"], &bulk(Some("115")));
    check(&mut c, &["STRLEN", "m"], &int(3));
    check(&mut c, &["SET", "big", "9223372036854775807"], OK);
    check(
        &mut c,
        &["INCR", "big"],
        "-ERR increment or decrement would overflow\r\n",
    );

    // Hashes (fields in sorted order, so the expected order is unambiguous).
    check(&mut c, &["HSET", "h", "a", "1", "b", "2"], &int(2));
    check(&mut c, &["HSET", "h", "b", "3", "c", "4"], &int(1));
    check(&mut c, &["HSETNX", "h", "a", "x"], &int(0));
    check(&mut c, &["HSETNX", "h", "d", "5"], &int(1));
    check(&mut c, &["HGET", "h", "b"], &bulk(Some("3")));
    check(&mut c, &["HGET", "h", "zz"], NIL);
    check(&mut c, &["HGET", "nohash", "a"], NIL);
    check(
        &mut c,
        &["HMGET", "h", "a", "zz", "c"],
        &bulk_array(&[Some("1"), None, Some("4")]),
    );
    check(&mut c, &["HEXISTS", "h", "a"], &int(1));
    check(&mut c, &["HEXISTS", "h", "zz"], &int(0));
    check(&mut c, &["HLEN", "h"], &int(4));
    check(
        &mut c,
        &["HKEYS", "h"],
        &bulk_array(&[Some("a"), Some("b"), Some("c"), Some("d")]),
    );
    check(
        &mut c,
        &["HVALS", "h"],
        &bulk_array(&[Some("1"), Some("3"), Some("4"), Some("5")]),
    );
    check(&mut c, &["HINCRBY", "h", "a", "10"], &int(11));
    check(&mut c, &["HINCRBY", "h", "new", "-3"], &int(-3));
    check(
        &mut c,
        &["HINCRBY", "h", "a", "x"],
        "-ERR value is not an integer or out of range\r\n",
    );
    check(&mut c, &["HSET", "h", "txt", "abc"], &int(1));
    check(
        &mut c,
        &["HINCRBY", "h", "txt", "1"],
        "-ERR hash value is not an integer\r\n",
    );
    check(&mut c, &["HDEL", "h", "new", "txt", "zz", "d"], &int(3));
    check(
        &mut c,
        &["HGETALL", "h"],
        &bulk_array(&[Some("a"), Some("11"), Some("b"), Some("3"), Some("c"), Some("4")]),
    );
    check(&mut c, &["HGETALL", "nohash"], "*0\r\n");
    check(&mut c, &["TYPE", "h"], "+hash\r\n");
    check(&mut c, &["HMSET", "h2", "f", "v"], OK);
    check(&mut c, &["HDEL", "h2", "f"], &int(1));
    check(&mut c, &["EXISTS", "h2"], &int(0));

    // Sets.
    check(&mut c, &["SADD", "set", "a", "b", "c", "a"], &int(3));
    check(&mut c, &["SADD", "set", "c", "d"], &int(1));
    check(&mut c, &["SREM", "set", "d", "zz"], &int(1));
    check(
        &mut c,
        &["SMEMBERS", "set"],
        &bulk_array(&[Some("a"), Some("b"), Some("c")]),
    );
    check(&mut c, &["SISMEMBER", "set", "a"], &int(1));
    check(&mut c, &["SISMEMBER", "set", "zz"], &int(0));
    check(
        &mut c,
        &["SMISMEMBER", "set", "a", "zz", "c"],
        "*3\r\n:1\r\n:0\r\n:1\r\n",
    );
    check(&mut c, &["SCARD", "set"], &int(3));
    check(&mut c, &["SCARD", "noset"], &int(0));
    check(&mut c, &["SMEMBERS", "noset"], "*0\r\n");
    check(&mut c, &["TYPE", "set"], "+set\r\n");
    check(&mut c, &["SREM", "set", "a", "b", "c"], &int(3));
    check(&mut c, &["EXISTS", "set"], &int(0));

    // Wrong types.
    check(&mut c, &["GET", "h"], WRONGTYPE);
    check(&mut c, &["SADD", "h", "x"], WRONGTYPE);
    check(&mut c, &["HGET", "n", "f"], WRONGTYPE);
    check(&mut c, &["INCR", "h"], WRONGTYPE);

    // Expiry commands (timing in `expiry_*` below).
    check(&mut c, &["EXPIRE", "nope", "10"], &int(0));
    check(&mut c, &["TTL", "nope"], &int(-2));
    check(&mut c, &["PTTL", "nope"], &int(-2));
    check(&mut c, &["TTL", "n"], &int(-1));
    check(&mut c, &["PTTL", "n"], &int(-1));
    check(&mut c, &["EXPIRE", "n", "100"], &int(1));
    check(&mut c, &["TTL", "n"], &int(100));
    check(&mut c, &["PEXPIRE", "n", "50000"], &int(1));
    let pttl = check_prefix(&mut c, &["PTTL", "n"], ":");
    let pttl: i64 = pttl[1..pttl.len() - 2].parse().unwrap();
    assert!((45_000..=50_000).contains(&pttl), "PTTL {pttl}");
    check(&mut c, &["PERSIST", "n"], &int(1));
    check(&mut c, &["PERSIST", "n"], &int(0));
    check(&mut c, &["TTL", "n"], &int(-1));

    // WAIT on a single region: no other region to wait for.
    check(&mut c, &["WAIT", "0", "0"], &int(0));
    let t = Instant::now();
    check(&mut c, &["WAIT", "1", "200"], &int(0));
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "WAIT 1 200 waits for its timeout"
    );

    // Concord's commands.
    check(&mut c, &["SET", "doc", "v1"], OK);
    let sib = check_prefix(&mut c, &["CONCORD.SIBLINGS", "doc"], "*2\r\n$");
    let lines: Vec<&str> = sib.split("\r\n").collect();
    let context = lines[2].to_string();
    assert_eq!(&lines[3..7], ["*1", "*4", "$2", "v1"], "{sib}");
    assert_eq!(&lines[7..9], ["$2", "us"], "{sib}");
    check(&mut c, &["CONCORD.RESOLVE", "doc", &context, "v2"], OK);
    check(&mut c, &["GET", "doc"], &bulk(Some("v2")));
    check_prefix(
        &mut c,
        &["CONCORD.RESOLVE", "doc", "!!!", "v"],
        "-ERR invalid context token",
    );
    check(&mut c, &["CONCORD.SIBLINGS", "h"], WRONGTYPE);
    check(&mut c, &["CONCORD.CONFLICTS"], "*0\r\n");
    check(&mut c, &["CONCORD.CONFLICTS", "5"], "*0\r\n");
    let status = check_prefix(&mut c, &["CONCORD.STATUS"], "$");
    let json: serde_json::Value = serde_json::from_str(status.split("\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(json["region"], "us");

    // QUIT answers OK and closes.
    check(&mut c, &["QUIT"], OK);
    c.expect_closed();
}

/// Run a command through the `redis` crate and return its value (panics on an error reply).
#[track_caller]
fn q(con: &mut redis::Connection, args: &[&str]) -> Value {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(con).unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

/// Run a command expected to fail; the error line as Redis sent it (`CODE detail`).
#[track_caller]
fn q_err(con: &mut redis::Connection, args: &[&str]) -> String {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match cmd.query::<Value>(con) {
        Ok(v) => panic!("{args:?} succeeded with {v:?}"),
        Err(e) => format!("{} {}", e.code().unwrap_or("?"), e.detail().unwrap_or("")),
    }
}

fn b(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

fn arr(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| b(s)).collect())
}

#[test]
fn every_command_with_the_redis_crate() {
    use redis::Commands;
    let s = Server::start();
    let mut con = s.redis();

    // Typed API.
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let () = con.set("greeting", "hello").unwrap();
    let v: String = con.get("greeting").unwrap();
    assert_eq!(v, "hello");
    let missing: Option<String> = con.get("nope").unwrap();
    assert_eq!(missing, None);
    let n: i64 = con.incr("counter", 5).unwrap();
    assert_eq!(n, 5);
    let () = con.hset_multiple("user:1", &[("name", "ada"), ("lang", "en")]).unwrap();
    let all: std::collections::HashMap<String, String> = con.hgetall("user:1").unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all["name"], "ada");
    let added: i64 = con.sadd("tags", &["x", "y"]).unwrap();
    assert_eq!(added, 2);
    let members: std::collections::BTreeSet<String> = con.smembers("tags").unwrap();
    assert_eq!(members.into_iter().collect::<Vec<_>>(), ["x", "y"]);
    let keys: Vec<String> = con.scan().unwrap().collect();
    assert_eq!(keys.len(), 4);
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();

    // Every command, as the raw values the crate decodes.
    assert_eq!(q(&mut con, &["PING"]), Value::SimpleString("PONG".into()));
    assert_eq!(q(&mut con, &["PING", "m"]), b("m"));
    assert_eq!(q(&mut con, &["ECHO", "e"]), b("e"));
    let Value::Array(hello) = q(&mut con, &["HELLO", "2"]) else {
        panic!("HELLO 2 is an array on RESP2")
    };
    assert_eq!(hello[..4], [b("server"), b("redis"), b("version"), b("7.2.0")]);
    assert_eq!(q(&mut con, &["SELECT", "0"]), Value::Okay);
    assert_eq!(
        q_err(&mut con, &["AUTH", "pw"]),
        "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
    );
    assert!(matches!(q(&mut con, &["COMMAND"]), Value::Array(v) if v.len() > 60));
    assert!(matches!(q(&mut con, &["COMMAND", "COUNT"]), Value::Int(n) if n > 60));
    let info: String = redis::cmd("INFO").query(&mut con).unwrap();
    assert!(info.contains("redis_version:"), "{info}");
    assert_eq!(q(&mut con, &["DBSIZE"]), Value::Int(0));
    assert_eq!(q(&mut con, &["SET", "k", "v", "EX", "100"]), Value::Okay);
    assert_eq!(q(&mut con, &["SET", "k", "v2", "KEEPTTL", "GET"]), b("v"));
    assert_eq!(q(&mut con, &["TTL", "k"]), Value::Int(100));
    assert_eq!(q(&mut con, &["SET", "k", "v3", "PX", "5000", "XX"]), Value::Okay);
    assert!(matches!(q(&mut con, &["PTTL", "k"]), Value::Int(n) if (4000..=5000).contains(&n)));
    assert_eq!(q(&mut con, &["SET", "k", "v4"]), Value::Okay);
    assert_eq!(q(&mut con, &["TTL", "k"]), Value::Int(-1), "a plain SET clears the TTL");
    assert_eq!(q(&mut con, &["TYPE", "k"]), Value::SimpleString("string".into()));
    assert_eq!(q(&mut con, &["EXISTS", "k", "zz"]), Value::Int(1));
    assert_eq!(q(&mut con, &["SET", "k", "x", "NX"]), Value::Nil);
    assert_eq!(q(&mut con, &["SETNX", "k", "x"]), Value::Int(0));
    assert_eq!(q(&mut con, &["SETEX", "e", "10", "x"]), Value::Okay);
    assert_eq!(q(&mut con, &["MSET", "m1", "a", "m2", "b"]), Value::Okay);
    assert_eq!(
        q(&mut con, &["MGET", "m1", "zz", "m2"]),
        Value::Array(vec![b("a"), Value::Nil, b("b")])
    );
    assert_eq!(q(&mut con, &["GETSET", "m1", "c"]), b("a"));
    assert_eq!(q(&mut con, &["GETDEL", "m1"]), b("c"));
    assert_eq!(q(&mut con, &["STRLEN", "m2"]), Value::Int(1));
    assert_eq!(q(&mut con, &["APPEND", "m2", "cd"]), Value::Int(3));
    assert_eq!(q(&mut con, &["INCR", "i"]), Value::Int(1));
    assert_eq!(q(&mut con, &["INCRBY", "i", "9"]), Value::Int(10));
    assert_eq!(q(&mut con, &["DECR", "i"]), Value::Int(9));
    assert_eq!(q(&mut con, &["DECRBY", "i", "4"]), Value::Int(5));
    assert_eq!(q(&mut con, &["KEYS", "m*"]), arr(&["m2"]));
    assert!(matches!(q(&mut con, &["SCAN", "0"]), Value::Array(v) if v.len() == 2));
    assert_eq!(q(&mut con, &["EXPIRE", "i", "100"]), Value::Int(1));
    assert_eq!(q(&mut con, &["PEXPIRE", "i", "100000"]), Value::Int(1));
    assert_eq!(q(&mut con, &["TTL", "i"]), Value::Int(100));
    assert_eq!(q(&mut con, &["PERSIST", "i"]), Value::Int(1));
    assert_eq!(q(&mut con, &["PTTL", "i"]), Value::Int(-1));
    assert_eq!(q(&mut con, &["HSET", "h", "f", "1", "g", "2"]), Value::Int(2));
    assert_eq!(q(&mut con, &["HSETNX", "h", "f", "x"]), Value::Int(0));
    assert_eq!(q(&mut con, &["HGET", "h", "f"]), b("1"));
    assert_eq!(
        q(&mut con, &["HMGET", "h", "f", "zz"]),
        Value::Array(vec![b("1"), Value::Nil])
    );
    assert_eq!(q(&mut con, &["HGETALL", "h"]), arr(&["f", "1", "g", "2"]));
    assert_eq!(q(&mut con, &["HEXISTS", "h", "g"]), Value::Int(1));
    assert_eq!(q(&mut con, &["HLEN", "h"]), Value::Int(2));
    assert_eq!(q(&mut con, &["HKEYS", "h"]), arr(&["f", "g"]));
    assert_eq!(q(&mut con, &["HVALS", "h"]), arr(&["1", "2"]));
    assert_eq!(q(&mut con, &["HINCRBY", "h", "f", "5"]), Value::Int(6));
    assert_eq!(q(&mut con, &["HDEL", "h", "g"]), Value::Int(1));
    assert_eq!(q(&mut con, &["SADD", "s", "a", "b"]), Value::Int(2));
    assert_eq!(q(&mut con, &["SREM", "s", "b"]), Value::Int(1));
    assert_eq!(q(&mut con, &["SMEMBERS", "s"]), arr(&["a"]));
    assert_eq!(q(&mut con, &["SISMEMBER", "s", "a"]), Value::Int(1));
    assert_eq!(
        q(&mut con, &["SMISMEMBER", "s", "a", "b"]),
        Value::Array(vec![Value::Int(1), Value::Int(0)])
    );
    assert_eq!(q(&mut con, &["SCARD", "s"]), Value::Int(1));
    assert_eq!(q(&mut con, &["DEL", "s", "zz"]), Value::Int(1));
    assert_eq!(q(&mut con, &["UNLINK", "h"]), Value::Int(1));
    assert_eq!(q(&mut con, &["WAIT", "0", "10"]), Value::Int(0));
    let Value::Array(sib) = q(&mut con, &["CONCORD.SIBLINGS", "k"]) else {
        panic!("CONCORD.SIBLINGS is an array")
    };
    let Value::BulkString(ctx) = &sib[0] else {
        panic!("context")
    };
    let ctx = String::from_utf8(ctx.clone()).unwrap();
    assert_eq!(q(&mut con, &["CONCORD.RESOLVE", "k", &ctx, "resolved"]), Value::Okay);
    assert_eq!(q(&mut con, &["GET", "k"]), b("resolved"));
    assert_eq!(q(&mut con, &["CONCORD.CONFLICTS"]), Value::Array(vec![]));
    assert!(matches!(q(&mut con, &["CONCORD.STATUS"]), Value::BulkString(_)));
    assert_eq!(q(&mut con, &["FLUSHDB"]), Value::Okay);
    assert_eq!(q(&mut con, &["FLUSHALL"]), Value::Okay);
    assert_eq!(q(&mut con, &["DBSIZE"]), Value::Int(0));

    // Errors, as the crate reports them.
    assert_eq!(
        q_err(&mut con, &["NOSUCH", "a"]),
        "ERR unknown command 'NOSUCH', with args beginning with: 'a' "
    );
    assert_eq!(
        q_err(&mut con, &["GET"]),
        "ERR wrong number of arguments for 'get' command"
    );
    q(&mut con, &["HSET", "h", "f", "v"]);
    assert_eq!(
        q_err(&mut con, &["GET", "h"]),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    q(&mut con, &["SET", "t", "abc"]);
    assert_eq!(
        q_err(&mut con, &["INCR", "t"]),
        "ERR value is not an integer or out of range"
    );
    // The connection is still usable after errors.
    assert_eq!(q(&mut con, &["PING"]), Value::SimpleString("PONG".into()));
    let _: () = redis::cmd("QUIT").query(&mut con).unwrap();
}

#[test]
fn pipelining_many_commands_in_one_write() {
    let s = Server::start();
    let mut c = s.raw();
    // 3 × 500 commands in a single write; the replies come back in order.
    let n = 500;
    let mut buf = Vec::new();
    for i in 0..n {
        let key = format!("p:{i}");
        let val = format!("v{i}");
        buf.extend(RawClient::encode(&[b"SET", key.as_bytes(), val.as_bytes()]));
        buf.extend(RawClient::encode(&[b"INCR", format!("c:{}", i % 7).as_bytes()]));
        buf.extend(RawClient::encode(&[b"GET", key.as_bytes()]));
    }
    // Inline commands pipeline too.
    buf.extend_from_slice(b"PING\r\nECHO done\r\n");
    c.send_bytes(&buf).unwrap();
    let mut counts = [0i64; 7];
    for i in 0..n {
        assert_eq!(c.read_reply(), "+OK\r\n", "SET #{i}");
        counts[i % 7] += 1;
        assert_eq!(c.read_reply(), format!(":{}\r\n", counts[i % 7]), "INCR #{i}");
        assert_eq!(c.read_reply(), bulk(Some(&format!("v{i}"))), "GET #{i}");
    }
    assert_eq!(c.read_reply(), "+PONG\r\n");
    assert_eq!(c.read_reply(), bulk(Some("done")));
    check(&mut c, &["DBSIZE"], &int(n as i64 + 7));

    // A command split across writes, byte by byte, is still one command.
    let cmd = RawClient::encode(&[b"SET", b"split", b"value"]);
    for byte in &cmd {
        c.send_bytes(std::slice::from_ref(byte)).unwrap();
    }
    assert_eq!(c.read_reply(), OK);

    // The redis crate's pipelines.
    let mut con = s.redis();
    let mut p = redis::pipe();
    for i in 0..200 {
        p.cmd("SET").arg(format!("rp:{i}")).arg(i).ignore();
    }
    for i in 0..200 {
        p.cmd("GET").arg(format!("rp:{i}"));
    }
    let values: Vec<i64> = p.query(&mut con).unwrap();
    assert_eq!(values, (0..200).collect::<Vec<i64>>());
    let (a, b): (i64, Option<String>) = redis::pipe()
        .cmd("INCR")
        .arg("rp-counter")
        .cmd("GET")
        .arg("missing")
        .query(&mut con)
        .unwrap();
    assert_eq!((a, b), (1, None));
}

#[test]
fn resp3_via_hello_3() {
    let s = Server::start();
    let mut c = s.raw();
    check(&mut c, &["HSET", "h", "a", "1", "b", "2"], &int(2));
    check(&mut c, &["SADD", "s", "x", "y"], &int(2));
    // Still RESP2 before HELLO 3.
    check(
        &mut c,
        &["HGETALL", "h"],
        &bulk_array(&[Some("a"), Some("1"), Some("b"), Some("2")]),
    );
    check(&mut c, &["GET", "nope"], NIL);
    let hello = check_prefix(&mut c, &["HELLO", "3"], "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n");
    assert!(hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello}");
    // Maps, sets and nulls now have their RESP3 types.
    check(
        &mut c,
        &["HGETALL", "h"],
        "%2\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n",
    );
    check(&mut c, &["HGETALL", "nohash"], "%0\r\n");
    check(&mut c, &["SMEMBERS", "s"], "~2\r\n$1\r\nx\r\n$1\r\ny\r\n");
    check(&mut c, &["GET", "nope"], "_\r\n");
    check(&mut c, &["HGET", "h", "zz"], "_\r\n");
    check(&mut c, &["MGET", "nope", "h"], "*2\r\n_\r\n_\r\n");
    check(&mut c, &["PING"], "+PONG\r\n");
    check(&mut c, &["INCR", "n"], &int(1));
    check(&mut c, &["TYPE", "s"], "+set\r\n");
    check(&mut c, &["GET", "h"], WRONGTYPE);
    check_prefix(&mut c, &["HELLO"], "%7\r\n");
    check(&mut c, &["HELLO", "4"], "-NOPROTO unsupported protocol version\r\n");
    // Back to RESP2.
    check_prefix(&mut c, &["HELLO", "2"], "*14\r\n");
    check(&mut c, &["GET", "nope"], NIL);
    check(&mut c, &["SMEMBERS", "s"], &bulk_array(&[Some("x"), Some("y")]));

    // The redis crate speaking RESP3 (it sends HELLO 3 itself).
    let mut con = redis_connect(&format!("redis://127.0.0.1:{}/?protocol=resp3", s.port()));
    assert_eq!(
        q(&mut con, &["HGETALL", "h"]),
        Value::Map(vec![(b("a"), b("1")), (b("b"), b("2"))])
    );
    assert_eq!(q(&mut con, &["SMEMBERS", "s"]), Value::Set(vec![b("x"), b("y")]));
    assert_eq!(q(&mut con, &["GET", "nope"]), Value::Nil);
}

#[test]
fn expiry_ex_px_expire_ttl_persist() {
    let s = Server::start();
    let mut c = s.raw();
    // Lifetimes scale with `k`: when the machine was too slow for a step's timing (measured,
    // never assumed), the whole check runs again with longer lifetimes. No assertion depends on
    // speed.
    for k in [1u64, 5, 25] {
        check(&mut c, &["FLUSHALL"], OK);
        if expiry_checks(&mut c, k) {
            return;
        }
    }
    panic!("the machine was too slow for the expiry checks even with 25x lifetimes");
}

/// The expiry checks with lifetimes `k` times the base ones; false if a step came too late for
/// its timing to mean anything.
fn expiry_checks(c: &mut RawClient, k: u64) -> bool {
    let (ms, secs) = ((300 * k).to_string(), (2 * k).to_string());
    let start = std::time::Instant::now();
    check(c, &["SET", "ex", "v", "EX", &secs], OK);
    check(c, &["SET", "px", "v", "PX", &ms], OK);
    check(c, &["SETEX", "setex", &secs, "v"], OK);
    check(c, &["SET", "exp", "v"], OK);
    check(c, &["PEXPIRE", "exp", &ms], &int(1));
    check(c, &["SET", "kept", "v"], OK);
    check(c, &["EXPIRE", "kept", "1"], &int(1));
    check(c, &["PERSIST", "kept"], &int(1));
    check(c, &["HSET", "h", "f", "v"], &int(1));
    check(c, &["PEXPIRE", "h", &ms], &int(1));
    check(c, &["SET", "gone", "v"], OK);
    check(c, &["EXPIRE", "gone", "-1"], &int(1));
    check(c, &["EXISTS", "gone"], &int(0));
    let ttl = c.cmd(&["TTL", "ex"]);
    let pttl = check_prefix(c, &["PTTL", "px"], ":");
    let dbsize = c.cmd(&["DBSIZE"]);
    if start.elapsed() >= Duration::from_millis(250 * k) {
        return false; // the millisecond lifetimes may have run out already
    }
    // EX 2k, a few commands ago: 2k, or 2k - 1 once a second boundary passed.
    assert!(
        ttl == int(2 * k as i64) || ttl == int(2 * k as i64 - 1),
        "TTL ex: {ttl:?}"
    );
    let pttl: i64 = pttl[1..pttl.len() - 2].parse().unwrap();
    assert!((1..=300 * k as i64).contains(&pttl), "PTTL {pttl}");
    check(c, &["TTL", "kept"], &int(-1));
    assert_eq!(dbsize, int(6));

    std::thread::sleep(Duration::from_millis(450 * k));
    // The millisecond expiries are gone: to reads, to TTL, to KEYS and DBSIZE.
    check(c, &["GET", "px"], NIL);
    check(c, &["EXISTS", "exp"], &int(0));
    check(c, &["HGETALL", "h"], "*0\r\n");
    check(c, &["TTL", "px"], &int(-2));
    check(c, &["PTTL", "exp"], &int(-2));
    let ex = c.cmd(&["GET", "ex"]);
    if start.elapsed() >= Duration::from_millis(1900 * k) {
        return false; // `ex` may have expired already
    }
    assert_eq!(ex, bulk(Some("v")));

    std::thread::sleep(Duration::from_millis(1700 * k));
    check(c, &["GET", "ex"], NIL);
    check(c, &["GET", "setex"], NIL);
    check(c, &["TTL", "ex"], &int(-2));
    check(c, &["GET", "kept"], &bulk(Some("v")));
    check(c, &["KEYS", "*"], &bulk_array(&[Some("kept")]));
    check(c, &["DBSIZE"], &int(1));
    // An expired key is absent for NX and starts afresh for INCR.
    check(c, &["SET", "ex", "again", "NX"], OK);
    check(c, &["GET", "ex"], &bulk(Some("again")));
    check(c, &["TTL", "ex"], &int(-1));
    true
}

#[test]
fn auth_when_a_password_is_configured() {
    let s = Server::start_with(|setup| setup.password = Some("s3cret pw".into()));
    let mut c = s.raw();
    let noauth = "-NOAUTH Authentication required.\r\n";
    check(&mut c, &["GET", "k"], noauth);
    check(&mut c, &["SET", "k", "v"], noauth);
    check(&mut c, &["PING"], noauth);
    check(
        &mut c,
        &["AUTH", "wrong"],
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    );
    check(
        &mut c,
        &["AUTH", "default", "wrong"],
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    );
    check(&mut c, &["GET", "k"], noauth);
    check_prefix(
        &mut c,
        &["HELLO", "3"],
        "-NOAUTH HELLO must be called with the client already authenticated",
    );
    check(&mut c, &["AUTH", "s3cret pw"], OK);
    check(&mut c, &["SET", "k", "v"], OK);
    check(&mut c, &["GET", "k"], &bulk(Some("v")));

    // AUTH default <pw>, and a wrong user.
    let mut c2 = s.raw();
    check(
        &mut c2,
        &["AUTH", "admin", "s3cret pw"],
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    );
    check(&mut c2, &["AUTH", "default", "s3cret pw"], OK);
    check(&mut c2, &["GET", "k"], &bulk(Some("v")));

    // HELLO 3 AUTH default <pw> authenticates and switches protocol at once.
    let mut c3 = s.raw();
    check(
        &mut c3,
        &["HELLO", "3", "AUTH", "default", "nope"],
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    );
    check(&mut c3, &["GET", "k"], noauth);
    check_prefix(&mut c3, &["HELLO", "3", "AUTH", "default", "s3cret pw"], "%7\r\n");
    check(&mut c3, &["GET", "nope"], "_\r\n");
    check(&mut c3, &["GET", "k"], &bulk(Some("v")));

    // QUIT is allowed before AUTH.
    let mut c4 = s.raw();
    check(&mut c4, &["QUIT"], OK);
    c4.expect_closed();

    // The redis crate: password in the URL; a wrong one fails to connect.
    let mut con = redis_connect(&format!("redis://:s3cret%20pw@127.0.0.1:{}/", s.port()));
    assert_eq!(q(&mut con, &["GET", "k"]), b("v"));
    let bad = redis::Client::open(format!("redis://:bad@127.0.0.1:{}/", s.port()))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(10));
    assert!(bad.is_err(), "a wrong password must not connect");
    let mut unauth = redis_connect(&format!("redis://127.0.0.1:{}/", s.port()));
    assert_eq!(q_err(&mut unauth, &["GET", "k"]), "NOAUTH Authentication required.");

    // Inline commands need AUTH as well.
    let mut c5 = s.raw();
    c5.send_bytes(b"SET k hacked\r\n").unwrap();
    assert_eq!(c5.read_reply(), noauth);
    check(&mut c5, &["AUTH", "s3cret pw"], OK);
    check(&mut c5, &["GET", "k"], &bulk(Some("v")));
}
