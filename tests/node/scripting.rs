//! `EVAL EVALSHA EVAL_RO EVALSHA_RO SCRIPT` on one node over a real socket (issue 11, item 4):
//! exact RESP2 replies as Redis 7 sends them, and the `redis` crate's `Script` (EVALSHA, then
//! EVAL on `NOSCRIPT`) as a second client.

use crate::harness::{bulk, Server};

#[track_caller]
fn check(c: &mut crate::harness::RawClient, args: &[&str], want: &str) {
    assert_eq!(c.cmd(args), want, "reply to {args:?}");
}

const INCR_TWO: &str = "return {redis.call('INCR', KEYS[1]), redis.call('INCRBY', KEYS[2], ARGV[1])}";

#[test]
fn eval_evalsha_and_the_script_cache_reply_as_redis() {
    let s = Server::start();
    let mut c = s.raw();
    check(&mut c, &["EVAL", "return 1", "0"], ":1\r\n");
    check(&mut c, &["EVAL", INCR_TWO, "2", "a", "b", "10"], "*2\r\n:1\r\n:10\r\n");
    check(&mut c, &["EVAL", INCR_TWO, "2", "a", "b", "10"], "*2\r\n:2\r\n:20\r\n");
    check(&mut c, &["MGET", "a", "b"], "*2\r\n$1\r\n2\r\n$2\r\n20\r\n");
    // Conversions of the script's value.
    check(
        &mut c,
        &[
            "EVAL",
            "return {1, 'two', 3.7, true, false, {ok='S'}, nil, 'unreached'}",
            "0",
        ],
        "*6\r\n:1\r\n$3\r\ntwo\r\n:3\r\n:1\r\n$-1\r\n+S\r\n",
    );
    check(&mut c, &["EVAL", "return redis.call('GET', 'nope')", "0"], "$-1\r\n");
    check(
        &mut c,
        &["EVAL", "return tostring(redis.call('GET', 'nope'))", "0"],
        &bulk(Some("false")),
    );
    check(&mut c, &["EVAL", "return redis.call('SET', 'k', 'v')", "0"], "+OK\r\n");
    check(&mut c, &["EVAL", "return redis.status_reply('FINE')", "0"], "+FINE\r\n");
    check(
        &mut c,
        &["EVAL", "return redis.error_reply('MY failure')", "0"],
        "-MY failure\r\n",
    );
    check(&mut c, &["EVAL", "return {err = 'plain'}", "0"], "-plain\r\n");
    check(
        &mut c,
        &["EVAL", "return KEYS[2] .. ARGV[1]", "2", "x", "y", "z"],
        &bulk(Some("yz")),
    );
    check(&mut c, &["EVAL", "return redis.call('PING')", "0"], "+PONG\r\n");
    check(
        &mut c,
        &["EVAL", "return redis.call('ECHO', 'hi')", "0"],
        &bulk(Some("hi")),
    );

    // The cache: SCRIPT LOAD answers the SHA1, EVALSHA runs it, FLUSH forgets it.
    let sha = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db";
    check(&mut c, &["SCRIPT", "LOAD", "return 1"], &bulk(Some(sha)));
    check(&mut c, &["EVALSHA", sha, "0"], ":1\r\n");
    check(&mut c, &["EVALSHA", &sha.to_uppercase(), "0"], ":1\r\n");
    check(&mut c, &["SCRIPT", "EXISTS", sha, "ffff"], "*2\r\n:1\r\n:0\r\n");
    check(&mut c, &["SCRIPT", "FLUSH"], "+OK\r\n");
    check(&mut c, &["SCRIPT", "EXISTS", sha], "*1\r\n:0\r\n");
    check(
        &mut c,
        &["EVALSHA", sha, "0"],
        "-NOSCRIPT No matching script. Please use EVAL.\r\n",
    );
    // EVAL caches the script too.
    check(&mut c, &["EVAL", "return 1", "0"], ":1\r\n");
    check(&mut c, &["SCRIPT", "EXISTS", sha], "*1\r\n:1\r\n");
    check(&mut c, &["SCRIPT", "FLUSH", "ASYNC"], "+OK\r\n");
    check(
        &mut c,
        &["SCRIPT", "FLUSH", "NOTREAL"],
        "-ERR SCRIPT FLUSH only support SYNC|ASYNC option\r\n",
    );
    check(
        &mut c,
        &["SCRIPT", "KILL"],
        "-NOTBUSY No scripts in execution right now.\r\n",
    );
    check(
        &mut c,
        &["SCRIPT"],
        "-ERR wrong number of arguments for 'script' command\r\n",
    );
    check(
        &mut c,
        &["SCRIPT", "NOPE"],
        "-ERR unknown subcommand 'NOPE'. Try SCRIPT HELP.\r\n",
    );
    assert!(c.cmd(&["SCRIPT", "HELP"]).starts_with("*15\r\n+SCRIPT <subcommand>"));

    // Argument errors.
    check(
        &mut c,
        &["EVAL", "return 1"],
        "-ERR wrong number of arguments for 'eval' command\r\n",
    );
    check(
        &mut c,
        &["EVAL", "return 1", "x"],
        "-ERR value is not an integer or out of range\r\n",
    );
    check(
        &mut c,
        &["EVAL", "return 1", "-1"],
        "-ERR Number of keys can't be negative\r\n",
    );
    check(
        &mut c,
        &["EVAL", "return 1", "2", "k"],
        "-ERR Number of keys can't be greater than number of args\r\n",
    );
    let e = c.cmd(&["EVAL", "return (", "0"]);
    assert!(
        e.starts_with("-ERR Error compiling script (new function): user_script:1:"),
        "{e}"
    );

    // COMMAND GETKEYS gives the script's keys.
    check(
        &mut c,
        &["COMMAND", "GETKEYS", "EVAL", "return 1", "2", "k1", "k2", "arg"],
        "*2\r\n$2\r\nk1\r\n$2\r\nk2\r\n",
    );
    check(&mut c, &["COMMAND", "GETKEYS", "EVALSHA", sha, "0"], "*0\r\n");
}

#[test]
fn script_errors_call_versus_pcall() {
    let s = Server::start();
    let mut c = s.raw();
    check(&mut c, &["SET", "s", "text"], "+OK\r\n");
    let sha = |src: &str| {
        let mut c2 = s.raw();
        let reply = c2.cmd(&["SCRIPT", "LOAD", src]);
        reply.lines().nth(1).unwrap().to_string()
    };

    // redis.call: the command's error ends the script, naming the script and the line; writes
    // made before it are kept (as Redis).
    let src = "redis.call('SET', 'before', '1')\nreturn redis.call('INCR', 's')";
    let want = format!(
        "-ERR value is not an integer or out of range script: {}, on @user_script:2.\r\n",
        sha(src)
    );
    check(&mut c, &["EVAL", src, "0"], &want);
    check(&mut c, &["GET", "before"], &bulk(Some("1")));
    let src = "return redis.call('LPUSH', 's', 'x')";
    let want = format!(
        "-WRONGTYPE Operation against a key holding the wrong kind of value script: {}, on @user_script:1.\r\n",
        sha(src)
    );
    check(&mut c, &["EVAL", src, "0"], &want);

    // redis.pcall: the error is a value the script can look at or return.
    check(
        &mut c,
        &["EVAL", "return redis.pcall('INCR', 's')", "0"],
        "-ERR value is not an integer or out of range\r\n",
    );
    check(
        &mut c,
        &[
            "EVAL",
            "local r = redis.pcall('INCR', 's'); return type(r) .. ':' .. r.err",
            "0",
        ],
        &bulk(Some("table:ERR value is not an integer or out of range")),
    );

    // Unknown commands, wrong arity, commands refused in scripts.
    for (src, err) in [
        (
            "return redis.call('NOSUCH')",
            "ERR Unknown Redis command called from script",
        ),
        (
            "return redis.call('GET')",
            "ERR Wrong number of args calling Redis command from script",
        ),
        (
            "return redis.call('MULTI')",
            "ERR This Redis command is not allowed from script",
        ),
        (
            "return redis.call('EVAL', 'return 1', '0')",
            "ERR This Redis command is not allowed from script",
        ),
        (
            "return redis.call('BLPOP', 'l', '0')",
            "ERR This Redis command is not allowed from script",
        ),
        (
            "return redis.call('INFO')",
            "ERR This Redis command is not allowed from script",
        ),
        (
            "return redis.call('SET', 'k', {})",
            "ERR Lua redis lib command arguments must be strings or integers",
        ),
    ] {
        let reply = c.cmd(&["EVAL", src, "0"]);
        let want = format!("-{err} script: {}, on @user_script:1.\r\n", sha(src));
        assert_eq!(reply, want, "{src}");
        let reply = c.cmd(&["EVAL", &src.replace("redis.call", "redis.pcall"), "0"]);
        assert_eq!(reply, format!("-{err}\r\n"), "pcall: {src}");
    }

    // A blocking command without `noscript` does not block in a script.
    check(
        &mut c,
        &["EVAL", "return redis.call('BLMPOP', '5', '1', 'empty', 'LEFT')", "0"],
        "$-1\r\n",
    );

    // Lua errors.
    let src = "local x = nil\nreturn x.field";
    let reply = c.cmd(&["EVAL", src, "0"]);
    assert!(
        reply.starts_with("-ERR user_script:2: attempt to index a nil value (local 'x') script: "),
        "{reply}"
    );
    let reply = c.cmd(&["EVAL", "error('boom')", "0"]);
    assert!(reply.starts_with("-ERR user_script:1: boom script: "), "{reply}");
    // The instruction budget ends a runaway script; its writes so far are kept.
    let reply = c.cmd(&["EVAL", "redis.call('SET', 'spun', '1') while true do end", "0"]);
    assert!(
        reply.starts_with("-ERR Error running script ") && reply.contains("instruction limit"),
        "{reply}"
    );
    check(&mut c, &["GET", "spun"], &bulk(Some("1")));
    // No clock, no randomness, no OS.
    for src in ["return os.time()", "return math.random()", "return io.read()"] {
        assert!(
            c.cmd(&["EVAL", src, "0"])
                .starts_with("-ERR user_script:1: attempt to "),
            "{src}"
        );
    }
    // The node still answers.
    check(&mut c, &["PING"], "+PONG\r\n");
}

#[test]
fn read_only_scripts_refuse_writes() {
    let s = Server::start();
    let mut c = s.raw();
    check(&mut c, &["SET", "a", "b"], "+OK\r\n");
    check(
        &mut c,
        &["EVAL_RO", "return redis.call('GET', KEYS[1])", "1", "a"],
        &bulk(Some("b")),
    );
    let src = "return redis.call('DEL', KEYS[1])";
    let reply = c.cmd(&["EVAL_RO", src, "1", "a"]);
    assert!(
        reply.starts_with("-ERR Write commands are not allowed from read-only scripts. script: "),
        "{reply}"
    );
    check(&mut c, &["GET", "a"], &bulk(Some("b")));
    let sha = c.cmd(&["SCRIPT", "LOAD", src]).lines().nth(1).unwrap().to_string();
    assert!(c
        .cmd(&["EVALSHA_RO", &sha, "1", "a"])
        .starts_with("-ERR Write commands are not allowed"));
    check(&mut c, &["EVALSHA", &sha, "1", "a"], ":1\r\n");
    check(&mut c, &["EXISTS", "a"], ":0\r\n");
}

#[test]
fn a_script_is_atomic_on_its_node() {
    // Many clients run a script that reads two counters and increments both; another client
    // reads both with MGET meanwhile: it never sees one incremented without the other.
    let s = Server::start();
    let script = "local a = redis.call('INCR', KEYS[1]); local b = redis.call('INCR', KEYS[2]); return a - b";
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let mut con = s.redis();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    let d: i64 = redis::cmd("EVAL")
                        .arg(script)
                        .arg(2)
                        .arg("x")
                        .arg("y")
                        .query(&mut con)
                        .unwrap();
                    assert_eq!(d, 0, "the script saw another client's half-done work");
                }
            })
        })
        .collect();
    let reader = {
        let mut con = s.redis();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (x, y): (Option<i64>, Option<i64>) = redis::cmd("MGET").arg("x").arg("y").query(&mut con).unwrap();
                assert_eq!(x, y, "a script's writes seen partly");
                reads += 1;
            }
            reads
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    let (x, y): (i64, i64) = redis::cmd("MGET").arg("x").arg("y").query(&mut s.redis()).unwrap();
    assert_eq!((x, y), (800, 800));
}

#[test]
fn the_redis_crate_script_helper_loads_on_noscript() {
    let s = Server::start();
    let mut con = s.redis();
    let script = redis::Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1]) * 2");
    // EVALSHA answers NOSCRIPT; the crate then sends EVAL (or SCRIPT LOAD) and retries.
    let v: i64 = script.key("n").arg(5).invoke(&mut con).unwrap();
    assert_eq!(v, 10);
    let exists: Vec<bool> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(script.get_hash())
        .query(&mut con)
        .unwrap();
    assert_eq!(exists, vec![true]);
    let v: i64 = script.key("n").arg(1).invoke(&mut con).unwrap();
    assert_eq!(v, 12);
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut con).unwrap();
    let v: i64 = script.key("n").arg(1).invoke(&mut con).unwrap();
    assert_eq!(v, 14);
    // Scripts in a pipeline.
    let (got, n): (i64, i64) = redis::pipe()
        .cmd("SET")
        .arg("p")
        .arg(2)
        .ignore()
        .cmd("EVAL")
        .arg("return redis.call('GET', KEYS[1]) * ARGV[1]")
        .arg(1)
        .arg("p")
        .arg(21)
        .cmd("GET")
        .arg("n")
        .query(&mut con)
        .unwrap();
    assert_eq!((got, n), (42, 7));
}

#[test]
fn scripts_run_inside_multi_exec() {
    let s = Server::start();
    let mut c = s.raw();
    check(&mut c, &["MULTI"], "+OK\r\n");
    check(&mut c, &["SET", "a", "2"], "+QUEUED\r\n");
    check(
        &mut c,
        &["EVAL", "return redis.call('INCRBY', KEYS[1], ARGV[1])", "1", "a", "3"],
        "+QUEUED\r\n",
    );
    check(
        &mut c,
        &["EVALSHA", "0000000000000000000000000000000000000000", "0"],
        "+QUEUED\r\n",
    );
    check(
        &mut c,
        &["EVAL_RO", "return redis.call('SET', 'a', 'x')", "0"],
        "+QUEUED\r\n",
    );
    check(&mut c, &["GET", "a"], "+QUEUED\r\n");
    let reply = c.cmd(&["EXEC"]);
    assert!(
        reply.starts_with(
            "*5\r\n+OK\r\n:5\r\n-NOSCRIPT No matching script. Please use EVAL.\r\n-ERR Write commands are not allowed from read-only scripts. script: "
        ),
        "{reply}"
    );
    assert!(reply.ends_with("\r\n$1\r\n5\r\n"), "{reply}");
    // The redis crate's atomic pipeline with a script in it.
    let mut con = s.redis();
    let (v, got): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("EVAL")
        .arg("return redis.call('INCR', KEYS[1])")
        .arg(1)
        .arg("a")
        .cmd("GET")
        .arg("a")
        .query(&mut con)
        .unwrap();
    assert_eq!((v, got), (6, 6));
}

/// `cjson` as job-queue scripts use it: a job stored as JSON, read, changed and written back
/// in one script; encoding is in key order (the same bytes in every region).
#[test]
fn scripts_read_and_write_json_with_cjson() {
    let s = Server::start();
    let mut c = s.raw();
    let job = r#"{"id":7,"queue":"mail","attempts":0,"args":["a@b.c",{"retry":true}],"parent":null}"#;
    check(&mut c, &["SET", "job:7", job], "+OK\r\n");
    const RETRY: &str = r#"
local job = cjson.decode(redis.call('GET', KEYS[1]))
job.attempts = job.attempts + 1
job.error = ARGV[1]
redis.call('SET', KEYS[1], cjson.encode(job))
return {job.attempts, job.args[1], tostring(job.parent == cjson.null)}
"#;
    check(
        &mut c,
        &["EVAL", RETRY, "1", "job:7", "timeout"],
        "*3\r\n:1\r\n$5\r\na@b.c\r\n$4\r\ntrue\r\n",
    );
    check(
        &mut c,
        &["GET", "job:7"],
        &bulk(Some(
            r#"{"args":["a@b.c",{"retry":true}],"attempts":1,"error":"timeout","id":7,"parent":null,"queue":"mail"}"#,
        )),
    );
    check(
        &mut c,
        &["EVAL", "return cjson.encode({1, 2.5, 'x/y'})", "0"],
        &bulk(Some(r#"[1,2.5,"x\/y"]"#)),
    );
    let err = c.cmd(&["EVAL", "return cjson.decode('{oops')", "0"]);
    assert!(
        err.starts_with("-ERR") && err.contains("Expected value but found invalid token"),
        "{err}"
    );
}

/// `cmsgpack` as redis-py's own suite uses it (`test_eval_msgpack`): arguments packed by the
/// client, unpacked by the script; and packing in the script.
#[test]
fn scripts_unpack_and_pack_msgpack() {
    let s = Server::start();
    let mut c = s.raw();
    let hello = "local message = cmsgpack.unpack(ARGV[1]) return 'hello ' .. message['name']";
    let packed: &[u8] = b"\x81\xa4name\xa3Joe";
    assert_eq!(
        c.cmd_bytes(&[b"EVAL", hello.as_bytes(), b"0", packed]),
        bulk(Some("hello Joe"))
    );
    c.send(&["EVAL", "return cmsgpack.pack({name = 'Joe'})", "0"]).unwrap();
    let mut want = b"$10\r\n".to_vec();
    want.extend_from_slice(packed);
    want.extend_from_slice(b"\r\n");
    assert_eq!(c.try_read_reply().unwrap(), want);
    let err = c.cmd(&["EVAL", "return cmsgpack.unpack('\\xa4ab')", "0"]);
    assert!(
        err.starts_with("-ERR") && err.contains("Missing bytes in input."),
        "{err}"
    );
}
