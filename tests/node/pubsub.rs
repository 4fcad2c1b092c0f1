//! Pub/sub on one node over real sockets (issue 11, item 5): Redis 7's exact replies on RESP2
//! (confirmations with counts, `message`/`pmessage`, subscribed mode and its error, `PING` as
//! `[pong, ""]`), RESP3 push frames, `PUBSUB CHANNELS|NUMSUB|NUMPAT`, and the `redis` crate's
//! own `PubSub` as a second client.

use crate::harness::{RawClient, Server};
use std::time::Duration;

#[track_caller]
fn check(c: &mut RawClient, args: &[&str], want: &str) {
    assert_eq!(c.cmd(args), want, "reply to {args:?}");
}

fn conf(kind: &str, name: Option<&str>, count: i64) -> String {
    let name = match name {
        Some(n) => format!("${}\r\n{n}\r\n", n.len()),
        None => "$-1\r\n".into(),
    };
    format!("*3\r\n${}\r\n{kind}\r\n{name}:{count}\r\n", kind.len())
}

fn message(channel: &str, payload: &str) -> String {
    format!(
        "*3\r\n$7\r\nmessage\r\n${}\r\n{channel}\r\n${}\r\n{payload}\r\n",
        channel.len(),
        payload.len()
    )
}

fn pmessage(pattern: &str, channel: &str, payload: &str) -> String {
    format!(
        "*4\r\n$8\r\npmessage\r\n${}\r\n{pattern}\r\n${}\r\n{channel}\r\n${}\r\n{payload}\r\n",
        pattern.len(),
        channel.len(),
        payload.len()
    )
}

#[test]
fn subscribe_publish_unsubscribe_reply_as_redis_on_resp2() {
    let s = Server::start();
    let mut sub = s.raw();
    let mut p = s.raw();
    // Unsubscribing from nothing: one confirmation with a nil name and count 0.
    check(&mut sub, &["UNSUBSCRIBE"], &conf("unsubscribe", None, 0));
    check(&mut sub, &["PUNSUBSCRIBE"], &conf("punsubscribe", None, 0));
    // One confirmation per channel, counting channels + patterns; a repeat does not count twice.
    sub.send(&["SUBSCRIBE", "news", "sport", "news"]).unwrap();
    assert_eq!(sub.read_reply(), conf("subscribe", Some("news"), 1));
    assert_eq!(sub.read_reply(), conf("subscribe", Some("sport"), 2));
    assert_eq!(sub.read_reply(), conf("subscribe", Some("news"), 2));
    check(&mut sub, &["PSUBSCRIBE", "n*"], &conf("psubscribe", Some("n*"), 3));
    // CLIENT LIST: a subscribed connection is of type pubsub, flag P, with its counts.
    let list = p.cmd(&["CLIENT", "LIST", "TYPE", "pubsub"]);
    assert!(list.contains(" flags=P db=0 sub=2 psub=1 "), "{list}");
    assert_eq!(list.matches("id=").count(), 1, "{list}");
    let normal = p.cmd(&["CLIENT", "LIST", "TYPE", "normal"]);
    assert!(!normal.contains("flags=P"), "{normal}");

    // Subscribed mode (RESP2): only the pub/sub commands, PING, QUIT and RESET.
    check(
        &mut sub,
        &["GET", "k"],
        "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
    );
    check(&mut sub, &["PING"], "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    check(&mut sub, &["PING", "hi"], "*2\r\n$4\r\npong\r\n$2\r\nhi\r\n");

    // PUBLISH counts every receiving subscription of this node: a channel and a pattern.
    check(&mut p, &["PUBLISH", "news", "hello"], ":2\r\n");
    assert_eq!(sub.read_reply(), message("news", "hello"));
    assert_eq!(sub.read_reply(), pmessage("n*", "news", "hello"));
    check(&mut p, &["PUBLISH", "nobody", "x"], ":1\r\n");
    assert_eq!(sub.read_reply(), pmessage("n*", "nobody", "x"));
    check(&mut p, &["PUBLISH", "weather", "x"], ":0\r\n");

    check(&mut p, &["PUBSUB", "CHANNELS"], "*2\r\n$4\r\nnews\r\n$5\r\nsport\r\n");
    check(&mut p, &["PUBSUB", "CHANNELS", "s*"], "*1\r\n$5\r\nsport\r\n");
    check(
        &mut p,
        &["PUBSUB", "NUMSUB", "news", "none"],
        "*4\r\n$4\r\nnews\r\n:1\r\n$4\r\nnone\r\n:0\r\n",
    );
    check(&mut p, &["PUBSUB", "NUMSUB"], "*0\r\n");
    check(&mut p, &["PUBSUB", "NUMPAT"], ":1\r\n");
    assert!(p.cmd(&["PUBSUB", "HELP"]).starts_with("*14\r\n+PUBSUB <subcommand>"));
    check(
        &mut p,
        &["PUBSUB", "NOPE"],
        "-ERR unknown subcommand 'NOPE'. Try PUBSUB HELP.\r\n",
    );

    // UNSUBSCRIBE with no argument leaves every channel (patterns stay).
    sub.send(&["UNSUBSCRIBE"]).unwrap();
    assert_eq!(sub.read_reply(), conf("unsubscribe", Some("news"), 2));
    assert_eq!(sub.read_reply(), conf("unsubscribe", Some("sport"), 1));
    check(&mut sub, &["UNSUBSCRIBE"], &conf("unsubscribe", None, 1));
    check(&mut sub, &["PUNSUBSCRIBE", "n*"], &conf("punsubscribe", Some("n*"), 0));
    // Out of subscribed mode: any command again.
    check(&mut sub, &["PING"], "+PONG\r\n");
    check(&mut sub, &["GET", "k"], "$-1\r\n");
    check(&mut p, &["PUBSUB", "NUMPAT"], ":0\r\n");
    check(&mut p, &["PUBLISH", "news", "x"], ":0\r\n");

    // RESET leaves subscribed mode too; a closed subscriber leaves its channels.
    check(&mut sub, &["SUBSCRIBE", "a"], &conf("subscribe", Some("a"), 1));
    check(&mut sub, &["RESET"], "+RESET\r\n");
    check(&mut p, &["PUBLISH", "a", "x"], ":0\r\n");
    check(&mut sub, &["SUBSCRIBE", "b"], &conf("subscribe", Some("b"), 1));
    drop(sub);
    let mut gone = false;
    for _ in 0..100 {
        if p.cmd(&["PUBLISH", "b", "x"]) == ":0\r\n" {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gone, "a closed connection's subscriptions are dropped");

    // CLIENT KILL TYPE pubsub closes the subscribed connections only.
    let mut listener = s.raw();
    check(&mut listener, &["SUBSCRIBE", "c"], &conf("subscribe", Some("c"), 1));
    let mut bystander = s.raw();
    check(&mut bystander, &["PING"], "+PONG\r\n");
    check(&mut p, &["CLIENT", "KILL", "TYPE", "pubsub"], ":1\r\n");
    check(&mut p, &["CLIENT", "KILL", "TYPE", "pubsub"], ":0\r\n");
    listener.expect_closed();
    check(&mut bystander, &["PING"], "+PONG\r\n");
    let info = p.cmd(&["INFO", "stats"]);
    assert!(info.contains("pubsub_channels:0\r\n"), "{info}");
    assert!(info.contains("concord_pubsub_published:"), "{info}");
}

#[test]
fn resp3_gets_push_frames_and_may_run_any_command_while_subscribed() {
    let s = Server::start();
    let mut sub = s.raw();
    let mut p = s.raw();
    assert!(sub.cmd(&["HELLO", "3"]).starts_with('%'));
    check(
        &mut sub,
        &["SUBSCRIBE", "c"],
        ">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n",
    );
    check(
        &mut sub,
        &["PSUBSCRIBE", "c*"],
        ">3\r\n$10\r\npsubscribe\r\n$2\r\nc*\r\n:2\r\n",
    );
    // Any command, with its ordinary reply.
    check(&mut sub, &["GET", "k"], "_\r\n");
    check(&mut sub, &["PING"], "+PONG\r\n");
    check(&mut p, &["PUBLISH", "c", "m"], ":2\r\n");
    assert_eq!(sub.read_reply(), ">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n");
    assert_eq!(
        sub.read_reply(),
        ">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$1\r\nc\r\n$1\r\nm\r\n"
    );
    check(
        &mut sub,
        &["UNSUBSCRIBE"],
        ">3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:1\r\n",
    );
    check(&mut sub, &["UNSUBSCRIBE"], ">3\r\n$11\r\nunsubscribe\r\n_\r\n:1\r\n");
}

#[test]
fn publish_inside_multi_is_published_at_exec() {
    let s = Server::start();
    let mut sub = s.raw();
    let mut p = s.raw();
    check(&mut sub, &["SUBSCRIBE", "q"], &conf("subscribe", Some("q"), 1));
    check(&mut p, &["MULTI"], "+OK\r\n");
    check(&mut p, &["SET", "k", "v"], "+QUEUED\r\n");
    check(&mut p, &["PUBLISH", "q", "done"], "+QUEUED\r\n");
    check(&mut p, &["EXEC"], "*2\r\n+OK\r\n:1\r\n");
    assert_eq!(sub.read_reply(), message("q", "done"));
}

/// `PUBLISH` inside a script (allowed, as in Redis) answers this node's receivers at that point
/// (channel and pattern subscribers) and is sent once the script's unit ran, in the script's
/// order; inside `MULTI` too.
#[test]
fn publish_inside_a_script_is_sent_after_its_writes() {
    let s = Server::start();
    let mut sub = s.raw();
    let mut p = s.raw();
    check(&mut sub, &["SUBSCRIBE", "q"], &conf("subscribe", Some("q"), 1));
    check(&mut sub, &["PSUBSCRIBE", "q*"], &conf("psubscribe", Some("q*"), 2));
    let script = "redis.call('SET', KEYS[1], ARGV[1]); local n = redis.call('PUBLISH', 'q', ARGV[1]); redis.call('PUBLISH', 'other', 'x'); return {n, redis.call('SPUBLISH', 'q', 's')}";
    check(&mut p, &["EVAL", script, "1", "k", "first"], "*2\r\n:2\r\n:0\r\n");
    assert_eq!(sub.read_reply(), message("q", "first"));
    assert_eq!(sub.read_reply(), pmessage("q*", "q", "first"));
    check(&mut p, &["GET", "k"], "$5\r\nfirst\r\n");
    // In a read-only script too (PUBLISH is not a write), and inside MULTI, in queue order.
    check(
        &mut p,
        &["EVAL_RO", "return redis.call('PUBLISH', 'q', 'ro')", "0"],
        ":2\r\n",
    );
    assert_eq!(sub.read_reply(), message("q", "ro"));
    assert_eq!(sub.read_reply(), pmessage("q*", "q", "ro"));
    check(&mut p, &["MULTI"], "+OK\r\n");
    check(&mut p, &["PUBLISH", "q", "one"], "+QUEUED\r\n");
    check(
        &mut p,
        &["EVAL", "return redis.call('PUBLISH', 'q', 'two')", "0"],
        "+QUEUED\r\n",
    );
    check(&mut p, &["EXEC"], "*2\r\n:2\r\n:2\r\n");
    for payload in ["one", "two"] {
        assert_eq!(sub.read_reply(), message("q", payload));
        assert_eq!(sub.read_reply(), pmessage("q*", "q", payload));
    }
}

#[test]
fn the_redis_crate_pubsub_client_receives_in_publish_order() {
    let s = Server::start();
    let mut con = s.redis();
    let mut publisher = s.redis();
    let mut ps = con.as_pubsub();
    ps.subscribe("orders").unwrap();
    ps.psubscribe("audit.*").unwrap();
    ps.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for i in 0..50 {
        let n: i64 = redis::cmd("PUBLISH")
            .arg("orders")
            .arg(format!("o{i}"))
            .query(&mut publisher)
            .unwrap();
        assert_eq!(n, 1);
    }
    let n: i64 = redis::cmd("PUBLISH")
        .arg("audit.login")
        .arg("alice")
        .query(&mut publisher)
        .unwrap();
    assert_eq!(n, 1);
    for i in 0..50 {
        let m = ps.get_message().unwrap();
        assert_eq!(m.get_channel_name(), "orders");
        assert_eq!(m.get_payload::<String>().unwrap(), format!("o{i}"));
    }
    let m = ps.get_message().unwrap();
    assert_eq!(m.get_channel_name(), "audit.login");
    assert_eq!(m.get_pattern::<String>().unwrap(), "audit.*");
    assert_eq!(m.get_payload::<String>().unwrap(), "alice");
    ps.unsubscribe("orders").unwrap();
    ps.punsubscribe("audit.*").unwrap();
}

#[test]
fn shard_channels_are_a_namespace_of_their_own() {
    let s = Server::start();
    let mut sub = s.raw();
    let mut p = s.raw();
    check(&mut sub, &["SUNSUBSCRIBE"], &conf("sunsubscribe", None, 0));
    check(&mut sub, &["SUBSCRIBE", "c"], &conf("subscribe", Some("c"), 1));
    // Shard channels count apart from channels and patterns (Redis 7.0).
    sub.send(&["SSUBSCRIBE", "c", "d"]).unwrap();
    assert_eq!(sub.read_reply(), conf("ssubscribe", Some("c"), 1));
    assert_eq!(sub.read_reply(), conf("ssubscribe", Some("d"), 2));
    check(&mut p, &["SPUBLISH", "c", "s"], ":1\r\n");
    assert_eq!(sub.read_reply(), "*3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$1\r\ns\r\n");
    check(&mut p, &["PUBLISH", "c", "m"], ":1\r\n");
    assert_eq!(sub.read_reply(), message("c", "m"));
    check(&mut p, &["PUBSUB", "SHARDCHANNELS"], "*2\r\n$1\r\nc\r\n$1\r\nd\r\n");
    check(&mut p, &["PUBSUB", "SHARDCHANNELS", "d*"], "*1\r\n$1\r\nd\r\n");
    check(
        &mut p,
        &["PUBSUB", "SHARDNUMSUB", "c", "x"],
        "*4\r\n$1\r\nc\r\n:1\r\n$1\r\nx\r\n:0\r\n",
    );
    let list = p.cmd(&["CLIENT", "LIST", "TYPE", "pubsub"]);
    assert!(list.contains(" sub=1 psub=0 ssub=2 "), "{list}");
    // Leaving the channel keeps the connection subscribed (to shard channels).
    check(&mut sub, &["UNSUBSCRIBE", "c"], &conf("unsubscribe", Some("c"), 0));
    assert!(sub.cmd(&["GET", "k"]).starts_with("-ERR Can't execute 'get'"));
    sub.send(&["SUNSUBSCRIBE"]).unwrap();
    assert_eq!(sub.read_reply(), conf("sunsubscribe", Some("c"), 1));
    assert_eq!(sub.read_reply(), conf("sunsubscribe", Some("d"), 0));
    check(&mut sub, &["GET", "k"], "$-1\r\n");
}

#[test]
fn a_subscriber_that_stops_reading_is_disconnected_and_counted() {
    let s = Server::start();
    let mut slow = s.raw();
    check(
        &mut slow,
        &["SUBSCRIBE", "firehose"],
        &conf("subscribe", Some("firehose"), 1),
    );
    let mut p = s.raw();
    // 96 MiB published to a subscriber that reads nothing: more than its queue (32 MiB) plus what
    // the sockets buffer. PUBLISH never waits for it.
    let payload = "x".repeat(1 << 20);
    for _ in 0..96 {
        check(&mut p, &["PUBLISH", "firehose", &payload], ":1\r\n");
        if p.cmd(&["PUBSUB", "NUMSUB", "firehose"]).ends_with(":0\r\n") {
            break;
        }
    }
    check(
        &mut p,
        &["PUBSUB", "NUMSUB", "firehose"],
        "*2\r\n$8\r\nfirehose\r\n:0\r\n",
    );
    let info = p.cmd(&["INFO", "stats"]);
    assert!(info.contains("concord_pubsub_slow_subscribers_dropped:1\r\n"), "{info}");
    assert!(s.log().contains("pub/sub subscriber is not reading its messages"));
}
