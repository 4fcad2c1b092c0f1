//! The data commands beyond DESIGN §6 on the existing types (issue 11, item 3) over a real
//! socket: exact RESP2 replies as Redis 7 sends them, and a few through the `redis` crate.

use crate::harness::{bulk, bulk_array, Server};

#[track_caller]
fn check(c: &mut crate::harness::RawClient, args: &[&str], want: &str) {
    assert_eq!(c.cmd(args), want, "reply to {args:?}");
}

#[test]
fn string_and_keyspace_commands_exact_replies() {
    let s = Server::start();
    let mut c = s.raw();
    check(&mut c, &["SETRANGE", "a", "5", "foo"], ":8\r\n");
    check(&mut c, &["GET", "a"], "$8\r\n\0\0\0\0\0foo\r\n");
    check(&mut c, &["SET", "s", "0123456789"], "+OK\r\n");
    check(&mut c, &["GETRANGE", "s", "0", "3"], &bulk(Some("0123")));
    check(&mut c, &["SUBSTR", "s", "-3", "-1"], &bulk(Some("789")));
    check(&mut c, &["GETRANGE", "s", "20", "30"], &bulk(Some("")));
    check(&mut c, &["SETRANGE", "s", "-1", "x"], "-ERR offset is out of range\r\n");
    check(&mut c, &["INCRBYFLOAT", "f", "10.5"], &bulk(Some("10.5")));
    check(&mut c, &["INCRBYFLOAT", "f", "0.1"], &bulk(Some("10.6")));
    check(
        &mut c,
        &["INCRBYFLOAT", "a", "1"],
        "-ERR value is not a valid float\r\n",
    );
    check(&mut c, &["MSETNX", "m1", "1", "m2", "2"], ":1\r\n");
    check(&mut c, &["MSETNX", "m2", "x", "m3", "3"], ":0\r\n");
    check(
        &mut c,
        &["MGET", "m1", "m2", "m3"],
        &bulk_array(&[Some("1"), Some("2"), None]),
    );
    check(&mut c, &["MSET", "foo", "ohmytext", "bar", "mynewtext"], "+OK\r\n");
    check(&mut c, &["LCS", "foo", "bar"], &bulk(Some("mytext")));
    check(&mut c, &["LCS", "foo", "bar", "LEN"], ":6\r\n");
    check(
        &mut c,
        &["LCS", "foo", "bar", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"],
        "*4\r\n$7\r\nmatches\r\n*1\r\n*3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n$3\r\nlen\r\n:6\r\n",
    );

    // Expiry family.
    check(&mut c, &["SET", "k", "v", "EX", "100"], "+OK\r\n");
    check(&mut c, &["EXPIRE", "k", "50", "GT"], ":0\r\n");
    check(&mut c, &["EXPIRE", "k", "500", "GT"], ":1\r\n");
    check(&mut c, &["EXPIRE", "k", "50", "NX"], ":0\r\n");
    check(&mut c, &["EXPIREAT", "k", "33177117420"], ":1\r\n");
    check(&mut c, &["EXPIRETIME", "k"], ":33177117420\r\n");
    check(&mut c, &["PEXPIRETIME", "k"], ":33177117420000\r\n");
    check(&mut c, &["PEXPIREAT", "k", "33177117419000", "LT"], ":1\r\n");
    check(&mut c, &["EXPIRETIME", "k"], ":33177117419\r\n");
    check(&mut c, &["EXPIRETIME", "nope"], ":-2\r\n");
    check(&mut c, &["EXPIRETIME", "s"], ":-1\r\n");
    check(
        &mut c,
        &["EXPIRE", "k", "1", "NX", "GT"],
        "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n",
    );
    check(&mut c, &["EXPIREAT", "k", "1"], ":1\r\n"); // in the past: deleted
    check(&mut c, &["EXISTS", "k"], ":0\r\n");
    check(&mut c, &["GETEX", "s", "EX", "60"], &bulk(Some("0123456789")));
    check(&mut c, &["TTL", "s"], ":60\r\n");
    check(&mut c, &["GETEX", "s", "PERSIST"], &bulk(Some("0123456789")));
    check(&mut c, &["TTL", "s"], ":-1\r\n");
    check(&mut c, &["TOUCH", "s", "m1", "nope"], ":2\r\n");
    let key = c.cmd(&["RANDOMKEY"]);
    assert!(key.starts_with('$') && key != "$-1\r\n", "{key}");
    check(&mut c, &["FLUSHALL"], "+OK\r\n");
    check(&mut c, &["RANDOMKEY"], "$-1\r\n");
}

#[test]
fn rename_copy_and_object() {
    let s = Server::start();
    let mut c = s.raw();
    check(&mut c, &["RENAME", "nope", "x"], "-ERR no such key\r\n");
    check(&mut c, &["SET", "a", "v", "EX", "100"], "+OK\r\n");
    check(&mut c, &["RENAME", "a", "b"], "+OK\r\n");
    check(&mut c, &["EXISTS", "a"], ":0\r\n");
    check(&mut c, &["GET", "b"], &bulk(Some("v")));
    check(&mut c, &["TTL", "b"], ":100\r\n");
    check(&mut c, &["SADD", "s", "m"], ":1\r\n");
    check(&mut c, &["RENAMENX", "b", "s"], ":0\r\n");
    check(&mut c, &["RENAMENX", "s", "t"], ":1\r\n");
    check(&mut c, &["SMEMBERS", "t"], &bulk_array(&[Some("m")]));
    check(&mut c, &["INCRBY", "n", "41"], ":41\r\n");
    check(&mut c, &["COPY", "n", "n2"], ":1\r\n");
    check(&mut c, &["INCR", "n2"], ":42\r\n");
    check(&mut c, &["GET", "n"], &bulk(Some("41")));
    check(&mut c, &["COPY", "n", "n2"], ":0\r\n");
    check(&mut c, &["COPY", "n", "n2", "REPLACE"], ":1\r\n");
    check(&mut c, &["GET", "n2"], &bulk(Some("41")));
    check(
        &mut c,
        &["COPY", "n", "n"],
        "-ERR source and destination objects are the same\r\n",
    );
    check(&mut c, &["HSET", "h", "f", "v"], ":1\r\n");
    check(&mut c, &["COPY", "h", "h2"], ":1\r\n");
    check(&mut c, &["HGETALL", "h2"], &bulk_array(&[Some("f"), Some("v")]));
    check(&mut c, &["OBJECT", "ENCODING", "n"], &bulk(Some("int")));
    check(&mut c, &["OBJECT", "ENCODING", "b"], &bulk(Some("embstr")));
    check(&mut c, &["OBJECT", "ENCODING", "t"], &bulk(Some("listpack")));
    check(&mut c, &["OBJECT", "REFCOUNT", "b"], ":1\r\n");
    // Idle seconds since the write: at most the seconds that passed here since before it.
    let before = std::time::Instant::now();
    check(&mut c, &["SET", "idle", "v"], "+OK\r\n");
    let idle = c.cmd(&["OBJECT", "IDLETIME", "idle"]);
    let bound = before.elapsed().as_secs();
    let idle: u64 = idle
        .strip_prefix(':')
        .and_then(|t| t.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("OBJECT IDLETIME: {idle:?}"));
    assert!(idle <= bound, "idle {idle} s, but only {bound} s passed");
    check(&mut c, &["OBJECT", "IDLETIME", "missing"], "$-1\r\n");

    // DUMP / RESTORE: Concord's own checksummed payload, through the redis crate (binary-safe).
    let mut con = s.redis();
    let dumped: Vec<u8> = redis::cmd("DUMP").arg("h").query(&mut con).unwrap();
    let busy: redis::RedisResult<()> = redis::cmd("RESTORE").arg("h").arg(0).arg(&dumped).query(&mut con);
    assert!(busy.unwrap_err().to_string().contains("BUSYKEY"));
    let _: () = redis::cmd("RESTORE")
        .arg("h3")
        .arg(60_000)
        .arg(&dumped)
        .query(&mut con)
        .unwrap();
    check(&mut c, &["HGETALL", "h3"], &bulk_array(&[Some("f"), Some("v")]));
    check(&mut c, &["TTL", "h3"], ":60\r\n");
    let mut corrupt = dumped.clone();
    corrupt[1] ^= 0xFF;
    let bad: redis::RedisResult<()> = redis::cmd("RESTORE").arg("h4").arg(0).arg(&corrupt).query(&mut con);
    assert!(bad
        .unwrap_err()
        .to_string()
        .contains("DUMP payload version or checksum are wrong"));
    let none: Option<Vec<u8>> = redis::cmd("DUMP").arg("missing").query(&mut con).unwrap();
    assert_eq!(none, None);
}

#[test]
fn bitmap_commands_exact_replies() {
    let s = Server::start();
    let mut c = s.raw();
    check(&mut c, &["SETBIT", "b", "1", "1"], ":0\r\n");
    check(&mut c, &["SETBIT", "b", "1", "1"], ":1\r\n");
    check(&mut c, &["GET", "b"], &bulk(Some("@")));
    check(&mut c, &["GETBIT", "b", "1"], ":1\r\n");
    check(&mut c, &["GETBIT", "b", "100"], ":0\r\n");
    check(
        &mut c,
        &["SETBIT", "b", "x", "1"],
        "-ERR bit offset is not an integer or out of range\r\n",
    );
    check(&mut c, &["SET", "mykey", "foobar"], "+OK\r\n");
    check(&mut c, &["BITCOUNT", "mykey"], ":26\r\n");
    check(&mut c, &["BITCOUNT", "mykey", "1", "1"], ":6\r\n");
    check(&mut c, &["BITCOUNT", "mykey", "5", "30", "BIT"], ":17\r\n");
    check(&mut c, &["SET", "p", "\u{0}\u{7f}"], "+OK\r\n");
    check(&mut c, &["BITPOS", "p", "1"], ":9\r\n");
    check(&mut c, &["BITPOS", "p", "0", "1"], ":8\r\n");
    check(&mut c, &["BITPOS", "p", "1", "0", "0"], ":-1\r\n");
    check(&mut c, &["BITPOS", "nope", "0"], ":0\r\n");
    check(&mut c, &["SET", "x", "\u{1}\u{2}"], "+OK\r\n");
    check(&mut c, &["BITOP", "OR", "dest", "x", "p"], ":2\r\n");
    check(&mut c, &["GET", "dest"], &bulk(Some("\u{1}\u{7f}")));
    check(&mut c, &["BITOP", "AND", "dest", "nope"], ":0\r\n");
    check(&mut c, &["EXISTS", "dest"], ":0\r\n");
    check(
        &mut c,
        &[
            "BITFIELD", "f", "SET", "u8", "8", "255", "GET", "u4", "12", "OVERFLOW", "FAIL", "INCRBY", "u8", "8", "1",
        ],
        "*3\r\n:0\r\n:15\r\n$-1\r\n",
    );
    check(&mut c, &["BITFIELD", "f", "INCRBY", "i8", "#1", "1"], "*1\r\n:0\r\n");
    check(&mut c, &["BITFIELD_RO", "f", "GET", "u16", "0"], "*1\r\n:0\r\n");
    check(
        &mut c,
        &["BITFIELD_RO", "f", "INCRBY", "u8", "0", "1"],
        "-ERR BITFIELD_RO only supports the GET subcommand\r\n",
    );
}

#[test]
fn hash_and_set_commands_exact_replies() {
    let s = Server::start();
    let mut c = s.raw();
    check(&mut c, &["HSET", "h", "a", "1", "b", "hello"], ":2\r\n");
    check(&mut c, &["HSTRLEN", "h", "b"], ":5\r\n");
    check(&mut c, &["HSTRLEN", "h", "zz"], ":0\r\n");
    check(&mut c, &["HINCRBYFLOAT", "h", "a", "0.25"], &bulk(Some("1.25")));
    check(
        &mut c,
        &["HINCRBYFLOAT", "h", "b", "1"],
        "-ERR hash value is not a float\r\n",
    );
    check(
        &mut c,
        &["HSCAN", "h", "0", "MATCH", "a"],
        "*2\r\n$1\r\n0\r\n*2\r\n$1\r\na\r\n$4\r\n1.25\r\n",
    );
    let two = c.cmd(&["HRANDFIELD", "h", "-5"]);
    assert!(two.starts_with("*5\r\n"), "{two}");
    assert!(c.cmd(&["HRANDFIELD", "h", "5", "WITHVALUES"]).starts_with("*4\r\n"));
    check(&mut c, &["HRANDFIELD", "nope"], "$-1\r\n");
    // Draws with repetition are bounded: no reply of billions of elements.
    check(
        &mut c,
        &["HRANDFIELD", "h", "-4000000000"],
        "-ERR value is out of range (at most 1000000 draws with repetition)\r\n",
    );
    check(
        &mut c,
        &["SRANDMEMBER", "nope", "-4000000000"],
        "-ERR value is out of range (at most 1000000 draws with repetition)\r\n",
    );

    check(&mut c, &["SADD", "a", "1", "2", "3"], ":3\r\n");
    check(&mut c, &["SADD", "b", "2", "3", "4"], ":3\r\n");
    check(&mut c, &["SINTER", "a", "b"], &bulk_array(&[Some("2"), Some("3")]));
    check(
        &mut c,
        &["SUNION", "a", "b"],
        &bulk_array(&[Some("1"), Some("2"), Some("3"), Some("4")]),
    );
    check(&mut c, &["SDIFF", "a", "b"], &bulk_array(&[Some("1")]));
    check(&mut c, &["SINTERCARD", "2", "a", "b", "LIMIT", "1"], ":1\r\n");
    check(&mut c, &["SDIFFSTORE", "d", "a", "b"], ":1\r\n");
    check(&mut c, &["SMEMBERS", "d"], &bulk_array(&[Some("1")]));
    check(&mut c, &["SMOVE", "a", "d", "2"], ":1\r\n");
    check(&mut c, &["SMOVE", "a", "d", "nope"], ":0\r\n");
    check(&mut c, &["SMEMBERS", "d"], &bulk_array(&[Some("1"), Some("2")]));
    check(
        &mut c,
        &["SSCAN", "d", "0"],
        "*2\r\n$1\r\n0\r\n*2\r\n$1\r\n1\r\n$1\r\n2\r\n",
    );
    let popped = c.cmd(&["SPOP", "d"]);
    assert!(popped == bulk(Some("1")) || popped == bulk(Some("2")), "{popped}");
    check(&mut c, &["SCARD", "d"], ":1\r\n");
    check(&mut c, &["SRANDMEMBER", "nope"], "$-1\r\n");
    check(&mut c, &["SET", "str", "x"], "+OK\r\n");
    check(
        &mut c,
        &["SINTER", "a", "str"],
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    );
}

#[test]
fn data_commands_through_the_redis_crate() {
    let s = Server::start();
    let mut con = s.redis();
    let _: () = redis::cmd("SADD")
        .arg("s")
        .arg(&["x", "y", "z"])
        .query(&mut con)
        .unwrap();
    let popped: Vec<String> = redis::cmd("SPOP").arg("s").arg(2).query(&mut con).unwrap();
    assert_eq!(popped.len(), 2);
    let left: i64 = redis::cmd("SCARD").arg("s").query(&mut con).unwrap();
    assert_eq!(left, 1);
    let f: f64 = redis::cmd("INCRBYFLOAT").arg("f").arg(2.5).query(&mut con).unwrap();
    assert_eq!(f, 2.5);
    let n: i64 = redis::cmd("SETRANGE")
        .arg("r")
        .arg(2)
        .arg("ab")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 4);
    let part: String = redis::cmd("GETRANGE").arg("r").arg(2).arg(-1).query(&mut con).unwrap();
    assert_eq!(part, "ab");
}

#[test]
fn sorted_set_geo_and_hyperloglog_exact_replies() {
    let s = Server::start();
    let mut c = s.raw();
    check(&mut c, &["ZADD", "z", "1", "a", "2", "b", "+inf", "c"], ":3\r\n");
    check(&mut c, &["ZADD", "z", "XX", "CH", "5", "a", "1", "new"], ":1\r\n");
    check(&mut c, &["ZINCRBY", "z", "0.5", "b"], &bulk(Some("2.5")));
    check(&mut c, &["ZSCORE", "z", "c"], &bulk(Some("inf")));
    check(
        &mut c,
        &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
        &bulk_array(&[Some("b"), Some("2.5"), Some("a"), Some("5"), Some("c"), Some("inf")]),
    );
    check(
        &mut c,
        &["ZRANGEBYSCORE", "z", "(2.5", "+inf", "LIMIT", "0", "1"],
        &bulk_array(&[Some("a")]),
    );
    check(&mut c, &["ZREVRANK", "z", "c"], ":0\r\n");
    check(&mut c, &["ZADD", "z", "x", "a"], "-ERR value is not a valid float\r\n");
    check(
        &mut c,
        &["ZINCRBY", "z", "-inf", "c"],
        "-ERR resulting score is not a number (NaN)\r\n",
    );
    check(&mut c, &["TYPE", "z"], "+zset\r\n");
    check(&mut c, &["OBJECT", "ENCODING", "z"], &bulk(Some("listpack")));
    check(
        &mut c,
        &["ZPOPMIN", "z", "2"],
        &bulk_array(&[Some("b"), Some("2.5"), Some("a"), Some("5")]),
    );
    check(
        &mut c,
        &["GEOADD", "Sicily", "13.361389", "38.115556", "Palermo"],
        ":1\r\n",
    );
    check(
        &mut c,
        &["GEOADD", "Sicily", "15.087269", "37.502669", "Catania"],
        ":1\r\n",
    );
    check(
        &mut c,
        &["GEODIST", "Sicily", "Palermo", "Catania", "km"],
        &bulk(Some("166.2742")),
    );
    check(
        &mut c,
        &["GEOHASH", "Sicily", "Palermo", "nope"],
        &bulk_array(&[Some("sqc8b49rny0"), None]),
    );
    check(
        &mut c,
        &[
            "GEOSEARCH",
            "Sicily",
            "FROMLONLAT",
            "15",
            "37",
            "BYRADIUS",
            "200",
            "km",
            "ASC",
        ],
        &bulk_array(&[Some("Catania"), Some("Palermo")]),
    );
    check(
        &mut c,
        &["GEOADD", "Sicily", "181", "0", "x"],
        "-ERR invalid longitude,latitude pair 181.000000,0.000000\r\n",
    );
    check(&mut c, &["PFADD", "h", "a", "b", "c"], ":1\r\n");
    check(&mut c, &["PFADD", "h", "a"], ":0\r\n");
    check(&mut c, &["PFADD", "h2", "c", "d"], ":1\r\n");
    check(&mut c, &["PFCOUNT", "h", "h2"], ":4\r\n");
    check(&mut c, &["PFMERGE", "h3", "h", "h2"], "+OK\r\n");
    check(&mut c, &["PFCOUNT", "h3"], ":4\r\n");
    check(&mut c, &["TYPE", "h3"], "+string\r\n");
}

#[test]
fn sorted_sets_through_the_redis_crate() {
    let s = Server::start();
    let mut con = s.redis();
    let added: i64 = redis::cmd("ZADD")
        .arg("board")
        .arg(&[("10", "ann"), ("20", "bob")])
        .query(&mut con)
        .unwrap();
    assert_eq!(added, 2);
    let score: f64 = redis::cmd("ZINCRBY")
        .arg("board")
        .arg(15)
        .arg("ann")
        .query(&mut con)
        .unwrap();
    assert_eq!(score, 25.0);
    let top: Vec<(String, f64)> = redis::cmd("ZREVRANGE")
        .arg("board")
        .arg(0)
        .arg(0)
        .arg("WITHSCORES")
        .query(&mut con)
        .unwrap();
    assert_eq!(top, vec![("ann".to_string(), 25.0)]);
    let n: i64 = redis::cmd("ZCOUNT")
        .arg("board")
        .arg("(20")
        .arg("+inf")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1);
}
