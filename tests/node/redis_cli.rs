//! The same commands through the real `redis-cli` (its non-TTY `--raw` output unless said), plus
//! RESP3 (`-3`), `--pipe` mass insertion, commands on stdin, and `-a` for AUTH.

use crate::harness::{redis_cli, redis_cli_with, run_bounded, RawClient, Server};
use std::process::Command;

#[track_caller]
fn cli(port: u16, args: &[&str], want: &str) {
    assert_eq!(redis_cli(port, args), want, "redis-cli {args:?}");
}

#[test]
fn redis_cli_every_command() {
    let s = Server::start();
    let p = s.port();
    let wrongtype = "WRONGTYPE Operation against a key holding the wrong kind of value";
    cli(p, &["PING"], "PONG");
    cli(p, &["PING", "hi"], "hi");
    cli(p, &["ECHO", "hello"], "hello");
    cli(p, &["SELECT", "0"], "OK");
    cli(p, &["SELECT", "3"], "ERR DB index is out of range");
    assert!(redis_cli(p, &["HELLO"]).starts_with("server\nredis\nversion\n7.2.0\nproto\n2\n"));
    assert!(redis_cli(p, &["AUTH", "x"]).starts_with("ERR AUTH <password> called without any password configured"));
    cli(p, &["QUIT"], "OK");
    assert!(redis_cli(p, &["COMMAND", "COUNT"]).parse::<u32>().unwrap() >= 60);
    assert!(redis_cli(p, &["COMMAND", "INFO", "set"]).starts_with("set\n-3\n"));
    assert!(redis_cli(p, &["COMMAND"]).contains("\nsmismember\n"));
    assert!(redis_cli(p, &["INFO"]).contains("# Server\r\nredis_version:7.2.0\r\n"));
    cli(p, &["DBSIZE"], "0");
    cli(p, &["SET", "k", "v"], "OK");
    cli(p, &["SET", "k", "w", "NX"], "");
    cli(p, &["SET", "k", "w", "XX", "GET"], "v");
    cli(p, &["SET", "k", "x", "EX", "100", "GET"], "w");
    cli(p, &["SET", "k", "y", "KEEPTTL"], "OK");
    cli(p, &["TTL", "k"], "100");
    cli(p, &["SET", "k", "z", "PX", "100000"], "OK");
    let pttl: i64 = redis_cli(p, &["PTTL", "k"]).parse().unwrap();
    assert!((90_000..=100_000).contains(&pttl), "{pttl}");
    cli(p, &["PERSIST", "k"], "1");
    cli(p, &["TTL", "k"], "-1");
    cli(p, &["EXPIRE", "k", "50"], "1");
    cli(p, &["TTL", "k"], "50");
    cli(p, &["PEXPIRE", "k", "60000"], "1");
    cli(p, &["TTL", "k"], "60");
    cli(p, &["TTL", "missing"], "-2");
    cli(p, &["PTTL", "missing"], "-2");
    cli(p, &["GET", "k"], "z");
    cli(p, &["GET", "missing"], "");
    cli(p, &["TYPE", "k"], "string");
    cli(p, &["SETNX", "k", "q"], "0");
    cli(p, &["SETNX", "k2", "q"], "1");
    cli(p, &["SETEX", "k3", "100", "v3"], "OK");
    cli(p, &["MSET", "a", "1", "b", "2"], "OK");
    cli(p, &["MGET", "a", "missing", "b"], "1\n\n2");
    cli(p, &["GETSET", "a", "10"], "1");
    cli(p, &["STRLEN", "a"], "2");
    cli(p, &["APPEND", "a", "0"], "3");
    cli(p, &["INCR", "a"], "101");
    cli(p, &["INCRBY", "a", "-1"], "100");
    cli(p, &["DECR", "a"], "99");
    cli(p, &["DECRBY", "a", "9"], "90");
    cli(p, &["GETDEL", "a"], "90");
    cli(p, &["EXISTS", "a", "b", "k"], "2");
    cli(p, &["KEYS", "k*"], "k\nk2\nk3");
    cli(p, &["SCAN", "0", "MATCH", "k?", "COUNT", "1000"], "0\nk2\nk3");
    cli(p, &["DEL", "k2", "missing"], "1");
    cli(p, &["UNLINK", "k3"], "1");
    cli(p, &["HSET", "h", "f1", "a", "f2", "b"], "2");
    cli(p, &["HSETNX", "h", "f1", "x"], "0");
    cli(p, &["HGET", "h", "f1"], "a");
    cli(p, &["HMGET", "h", "f1", "nope", "f2"], "a\n\nb");
    cli(p, &["HGETALL", "h"], "f1\na\nf2\nb");
    cli(p, &["HEXISTS", "h", "f2"], "1");
    cli(p, &["HLEN", "h"], "2");
    cli(p, &["HKEYS", "h"], "f1\nf2");
    cli(p, &["HVALS", "h"], "a\nb");
    cli(p, &["HINCRBY", "h", "n", "7"], "7");
    cli(p, &["HDEL", "h", "n", "f2"], "2");
    cli(p, &["TYPE", "h"], "hash");
    cli(p, &["SADD", "s", "m1", "m2", "m3"], "3");
    cli(p, &["SREM", "s", "m3"], "1");
    cli(p, &["SMEMBERS", "s"], "m1\nm2");
    cli(p, &["SISMEMBER", "s", "m1"], "1");
    cli(p, &["SMISMEMBER", "s", "m1", "zz"], "1\n0");
    cli(p, &["SCARD", "s"], "2");
    cli(p, &["TYPE", "s"], "set");
    cli(p, &["WAIT", "0", "0"], "0");
    cli(p, &["GET", "h"], wrongtype);
    cli(p, &["SADD", "k", "x"], wrongtype);
    cli(p, &["INCR", "b"], "3");
    cli(p, &["SET", "t", "text"], "OK");
    cli(p, &["INCR", "t"], "ERR value is not an integer or out of range");
    cli(p, &["GET"], "ERR wrong number of arguments for 'get' command");
    cli(
        p,
        &["NOSUCHCMD", "x", "y"],
        "ERR unknown command 'NOSUCHCMD', with args beginning with: 'x' 'y' ",
    );
    let sib = redis_cli(p, &["CONCORD.SIBLINGS", "k"]);
    let lines: Vec<&str> = sib.lines().collect();
    assert_eq!(lines.len(), 5, "{sib}");
    assert_eq!(&lines[1..3], ["z", "us"], "{sib}");
    cli(p, &["CONCORD.RESOLVE", "k", lines[0], "resolved"], "OK");
    cli(p, &["GET", "k"], "resolved");
    cli(p, &["CONCORD.CONFLICTS"], "");
    let status: serde_json::Value = serde_json::from_str(&redis_cli(p, &["CONCORD.STATUS"])).unwrap();
    assert_eq!(status["region"], "us");
    cli(p, &["DBSIZE"], "5");
    cli(p, &["FLUSHDB"], "OK");
    cli(p, &["SET", "x", "1"], "OK");
    cli(p, &["FLUSHALL"], "OK");
    cli(p, &["DBSIZE"], "0");
}

#[test]
fn redis_cli_resp3() {
    let s = Server::start();
    let p = s.port();
    cli(p, &["HSET", "h", "a", "1", "b", "2"], "2");
    cli(p, &["SADD", "s", "x", "y"], "2");
    // `-3` makes redis-cli send HELLO 3; its human output shows the RESP3 types: `#` for a map
    // entry, `~` for a set member.
    let map = redis_cli_with(p, &["-3", "--no-raw"], &["HGETALL", "h"]);
    assert_eq!(map, "1# \"a\" => \"1\"\n2# \"b\" => \"2\"");
    let set = redis_cli_with(p, &["-3", "--no-raw"], &["SMEMBERS", "s"]);
    assert_eq!(set, "1~ \"x\"\n2~ \"y\"");
    assert_eq!(redis_cli_with(p, &["-3", "--no-raw"], &["GET", "nope"]), "(nil)");
    assert_eq!(
        redis_cli_with(p, &["-3", "--no-raw"], &["HGETALL", "nope"]),
        "(empty hash)"
    );
    assert_eq!(redis_cli_with(p, &["-3"], &["HGETALL", "h"]), "a 1\nb 2");
    let hello = redis_cli_with(p, &["-3"], &["HELLO", "3"]);
    assert!(hello.contains("proto 3"), "{hello}");
    // Without -3 the same replies are RESP2 arrays.
    assert_eq!(
        redis_cli_with(p, &["--no-raw"], &["HGETALL", "h"]),
        "1) \"a\"\n2) \"1\"\n3) \"b\"\n4) \"2\""
    );
}

#[test]
fn redis_cli_pipe_mass_insert() {
    let s = Server::start();
    let n = 2000;
    let mut input = Vec::new();
    for i in 0..n {
        input.extend(RawClient::encode(&[
            b"SET",
            format!("mass:{i}").as_bytes(),
            format!("{i}").as_bytes(),
        ]));
    }
    input.extend(RawClient::encode(&[b"INCR", b"mass:0"]));
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &s.port().to_string(), "--pipe"]);
    let (status, out, err) = run_bounded(cmd, &input);
    assert!(status.success(), "redis-cli --pipe failed: {out} {err}");
    assert!(
        out.contains(&format!("errors: 0, replies: {}", n + 1)),
        "redis-cli --pipe: {out} {err}"
    );
    cli(s.port(), &["DBSIZE"], &n.to_string());
    cli(s.port(), &["GET", "mass:0"], "1");
    cli(s.port(), &["GET", "mass:1999"], "1999");
}

#[test]
fn redis_cli_commands_on_stdin_share_one_connection() {
    let s = Server::start();
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &s.port().to_string()]);
    let script = b"SET a 1\nINCR a\nINCRBY a 40\nGET a\nHSET h f \"two words\"\nHGET h f\nCLIENT SETNAME itest\nCLIENT GETNAME\n";
    let (status, out, err) = run_bounded(cmd, script);
    assert!(status.success(), "{out} {err}");
    assert_eq!(out, "OK\n2\n42\n42\n1\ntwo words\nOK\nitest\n", "stderr: {err}");
}

#[test]
fn redis_cli_auth() {
    let s = Server::start_with(|setup| setup.password = Some("pw-123".into()));
    let p = s.port();
    cli(p, &["SET", "k", "v"], "NOAUTH Authentication required.");
    let auth = ["-a", "pw-123", "--no-auth-warning"];
    assert_eq!(redis_cli_with(p, &auth, &["SET", "k", "v"]), "OK");
    assert_eq!(redis_cli_with(p, &auth, &["GET", "k"]), "v");
    let auth3 = ["-3", "-a", "pw-123", "--no-auth-warning"];
    assert_eq!(redis_cli_with(p, &auth3, &["GET", "k"]), "v");
    let wrong = redis_cli_with(p, &["-a", "nope", "--no-auth-warning"], &["GET", "k"]);
    assert!(
        wrong.contains("WRONGPASS invalid username-password pair or user is disabled."),
        "{wrong}"
    );
    // redis-cli goes on to send the command, which is refused.
    assert!(wrong.contains("NOAUTH Authentication required."), "{wrong}");
}
