//! Server and connection commands over real sockets (issue 11, item 6): `CLIENT LIST|INFO|KILL|
//! REPLY|PAUSE|NO-EVICT|NO-TOUCH`, `CONFIG GET|SET|RESETSTAT`, `TIME LASTSAVE RESET MEMORY USAGE`,
//! and the `INFO` sections client libraries read.

use crate::harness::{bulk, Server};

/// The `key=value` fields of the `CLIENT LIST` line whose `name=` is `name`.
fn client_fields(list: &str, name: &str) -> Option<std::collections::BTreeMap<String, String>> {
    list.lines()
        .map(|line| {
            line.split(' ')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<std::collections::BTreeMap<_, _>>()
        })
        .find(|f| f.get("name").map(String::as_str) == Some(name))
}

/// A bulk reply's payload.
fn payload(reply: &str) -> &str {
    let start = reply.find("\r\n").expect("a bulk reply") + 2;
    &reply[start..reply.len() - 2]
}

#[test]
fn client_list_info_and_kill() {
    let s = Server::start();
    let mut a = s.raw();
    let mut b = s.raw();
    assert_eq!(a.cmd(&["CLIENT", "SETNAME", "conn-a"]), "+OK\r\n");
    assert_eq!(b.cmd(&["CLIENT", "SETNAME", "conn-b"]), "+OK\r\n");
    assert_eq!(b.cmd(&["CLIENT", "SETINFO", "LIB-NAME", "mylib"]), "+OK\r\n");
    assert_eq!(b.cmd(&["CLIENT", "SETINFO", "LIB-VER", "1.2"]), "+OK\r\n");
    assert_eq!(b.cmd(&["CLIENT", "NO-EVICT", "on"]), "+OK\r\n");

    let list = a.cmd(&["CLIENT", "LIST"]);
    let fa = client_fields(payload(&list), "conn-a").expect("conn-a listed");
    let fb = client_fields(payload(&list), "conn-b").expect("conn-b listed");
    assert_eq!(fa["cmd"], "client|list");
    assert_eq!(fb["lib-name"], "mylib");
    assert_eq!(fb["lib-ver"], "1.2");
    assert_eq!(fb["flags"], "e");
    assert_eq!(fb["db"], "0");
    assert!(fb["addr"].starts_with("127.0.0.1:"), "{fb:?}");
    assert_eq!(fb["laddr"], format!("127.0.0.1:{}", s.port()));

    // CLIENT INFO is the caller's own line; CLIENT ID matches it.
    let info = b.cmd(&["CLIENT", "INFO"]);
    let own = client_fields(payload(&info), "conn-b").expect("own line");
    assert_eq!(b.cmd(&["CLIENT", "ID"]), format!(":{}\r\n", own["id"]));
    // Filtered lists.
    let by_id = a.cmd(&["CLIENT", "LIST", "ID", &fb["id"]]);
    assert_eq!(payload(&by_id).lines().count(), 1);
    assert_eq!(a.cmd(&["CLIENT", "LIST", "TYPE", "replica"]), bulk(Some("")));
    assert_eq!(
        a.cmd(&["CLIENT", "LIST", "TYPE", "caster"]),
        "-ERR Unknown client type 'caster'\r\n"
    );

    // Kill b by id: one connection closed, and it is gone from the list.
    assert_eq!(a.cmd(&["CLIENT", "KILL", "ID", &fb["id"]]), ":1\r\n");
    b.expect_closed();
    crate::harness::eventually("b leaves CLIENT LIST", || {
        client_fields(payload(&a.cmd(&["CLIENT", "LIST"])), "conn-b")
            .is_none()
            .then_some(())
    });
    // The legacy form by address; SKIPME spares the caller by default in the filter form.
    assert_eq!(a.cmd(&["CLIENT", "KILL", "127.0.0.1:1"]), "-ERR No such client\r\n");
    assert_eq!(a.cmd(&["CLIENT", "KILL", "ID", &fa["id"]]), ":0\r\n");
    let mut c = s.raw();
    assert_eq!(c.cmd(&["CLIENT", "SETNAME", "conn-c"]), "+OK\r\n");
    let fc = client_fields(payload(&a.cmd(&["CLIENT", "LIST"])), "conn-c").unwrap();
    assert_eq!(a.cmd(&["CLIENT", "KILL", &fc["addr"]]), "+OK\r\n");
    c.expect_closed();
    // Killing itself in a pipeline: the KILL is answered, the command after it never runs.
    let mut d = s.raw();
    assert_eq!(d.cmd(&["CLIENT", "SETNAME", "conn-d"]), "+OK\r\n");
    let fd = client_fields(payload(&d.cmd(&["CLIENT", "INFO"])), "conn-d").unwrap();
    let mut pipeline = crate::harness::RawClient::encode(&[b"CLIENT", b"KILL", fd["addr"].as_bytes()]);
    pipeline.extend(crate::harness::RawClient::encode(&[b"SET", b"after-kill", b"1"]));
    d.send_bytes(&pipeline).unwrap();
    assert_eq!(d.read_reply(), "+OK\r\n");
    d.expect_closed();
    assert_eq!(a.cmd(&["EXISTS", "after-kill"]), ":0\r\n");
}

#[test]
fn client_reply_off_skip_on() {
    let s = Server::start();
    let mut c = s.raw();
    // OFF: no reply to it or to anything after it, until ON (whose OK is the next reply read).
    c.send(&["CLIENT", "REPLY", "OFF"]).unwrap();
    c.send(&["SET", "k", "1"]).unwrap();
    c.send(&["CLIENT", "REPLY", "ON"]).unwrap();
    assert_eq!(c.read_reply(), "+OK\r\n");
    // SKIP: no reply to it or to the next command.
    c.send(&["CLIENT", "REPLY", "SKIP"]).unwrap();
    c.send(&["SET", "k", "2"]).unwrap();
    assert_eq!(c.cmd(&["GET", "k"]), bulk(Some("2")));
}

#[test]
fn client_pause_holds_writes_until_unpause() {
    let s = Server::start();
    let mut admin = s.raw();
    let mut writer = s.raw();
    let mut reader = s.raw();
    assert_eq!(admin.cmd(&["SET", "k", "old"]), "+OK\r\n");
    assert_eq!(admin.cmd(&["CLIENT", "PAUSE", "60000", "WRITE"]), "+OK\r\n");
    writer.send(&["SET", "k", "new"]).unwrap();
    // Reads still run while writes wait; the held write has not happened.
    assert_eq!(reader.cmd(&["GET", "k"]), bulk(Some("old")));
    assert_eq!(admin.cmd(&["CLIENT", "UNPAUSE"]), "+OK\r\n");
    assert_eq!(writer.read_reply(), "+OK\r\n");
    assert_eq!(reader.cmd(&["GET", "k"]), bulk(Some("new")));
}

#[test]
fn config_get_set_resetstat() {
    let s = Server::start();
    let mut c = s.raw();
    let port = s.port().to_string();
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "port"]),
        format!("*2\r\n$4\r\nport\r\n${}\r\n{port}\r\n", port.len())
    );
    assert_eq!(c.cmd(&["CONFIG", "SET", "timeout", "70"]), "+OK\r\n");
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "timeout"]),
        "*2\r\n$7\r\ntimeout\r\n$2\r\n70\r\n"
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "timeout", "1", "maxmemory", "100"]),
        "-ERR CONFIG SET failed (possibly related to argument 'maxmemory') - Concord supports only maxmemory \"0\" (see docs/operations.md#config)\r\n"
    );
    // All or nothing: timeout kept its value.
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "timeout"]),
        "*2\r\n$7\r\ntimeout\r\n$2\r\n70\r\n"
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "port", "1"]),
        "-ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config\r\n"
    );
    let multi = c.cmd(&["CONFIG", "GET", "*max-*-entries*", "maxmemory"]);
    assert!(
        multi.contains("hash-max-listpack-entries") && multi.contains("maxmemory"),
        "{multi}"
    );

    // RESETSTAT zeroes what INFO shows.
    assert_eq!(c.cmd(&["GET", "k"]), "$-1\r\n");
    assert_eq!(c.cmd(&["CONFIG", "RESETSTAT"]), "+OK\r\n");
    let info = c.cmd(&["INFO", "stats"]);
    assert!(info.contains("total_commands_processed:0\r\n"), "{info}");

    // timeout: an idle connection is closed once it has been idle that long.
    assert_eq!(c.cmd(&["CONFIG", "SET", "timeout", "1"]), "+OK\r\n");
    let mut idle = s.raw();
    assert_eq!(idle.cmd(&["PING"]), "+PONG\r\n");
    idle.expect_closed();
    // (`c` was idle as long, and is closed too.)
    assert_eq!(s.raw().cmd(&["CONFIG", "SET", "timeout", "0"]), "+OK\r\n");
}

#[test]
fn slowlog_records_commands_over_the_threshold() {
    let s = Server::start();
    let mut c = s.raw();
    assert_eq!(c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]), "+OK\r\n");
    assert_eq!(c.cmd(&["SLOWLOG", "RESET"]), "+OK\r\n");
    assert_eq!(c.cmd(&["CLIENT", "SETNAME", "slow"]), "+OK\r\n");
    let long = "x".repeat(200);
    assert_eq!(c.cmd(&["SET", "k", &long]), "+OK\r\n");
    assert_eq!(c.cmd(&["AUTH", "secret"]).chars().next(), Some('-'));
    let log = c.cmd(&["SLOWLOG", "GET", "2"]);
    // Newest first: the SET (with its value cut at 128 bytes), then CLIENT SETNAME. AUTH is never
    // logged.
    assert!(log.starts_with("*2\r\n*6\r\n:"), "{log}");
    let cut = format!("{}... (72 more bytes)", "x".repeat(128));
    assert!(
        log.contains(&format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n{cut}\r\n", cut.len())),
        "{log}"
    );
    assert!(log.contains("$4\r\nslow\r\n"), "{log}");
    assert!(!log.contains("secret"), "{log}");
    // SLOWLOG RESET itself (logged after it ran), CLIENT SETNAME, SET, SLOWLOG GET.
    assert_eq!(c.cmd(&["SLOWLOG", "LEN"]), ":4\r\n");
    assert_eq!(c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"]), "+OK\r\n");
    assert_eq!(c.cmd(&["SLOWLOG", "RESET"]), "+OK\r\n");
    assert_eq!(c.cmd(&["GET", "k"]).len(), "$200\r\n".len() + 200 + 2);
    assert_eq!(c.cmd(&["SLOWLOG", "LEN"]), ":0\r\n");
}

#[test]
fn time_lastsave_reset_memory_and_info_sections() {
    let s = Server::start();
    let mut c = s.raw();
    let time = c.cmd(&["TIME"]);
    let parts: Vec<&str> = time.split("\r\n").collect();
    let secs: u64 = parts[2].parse().unwrap();
    let micros: u64 = parts[4].parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(secs.abs_diff(now) <= 5 && micros < 1_000_000, "{time}");
    let lastsave = c.cmd(&["LASTSAVE"]);
    let lastsave: u64 = lastsave[1..lastsave.len() - 2].parse().unwrap();
    assert!(lastsave <= now + 5);
    assert_eq!(c.cmd(&["BGSAVE"]), "+Background saving started\r\n");

    assert_eq!(c.cmd(&["SET", "foo", "bar"]), "+OK\r\n");
    let usage = c.cmd(&["MEMORY", "USAGE", "foo"]);
    assert!(usage.starts_with(':') && usage != ":0\r\n", "{usage}");
    assert_eq!(c.cmd(&["MEMORY", "USAGE", "missing"]), "$-1\r\n");

    // RESET: back to RESP2, no name.
    assert!(c.cmd(&["HELLO", "3", "SETNAME", "x"]).starts_with('%'));
    assert_eq!(c.cmd(&["RESET"]), "+RESET\r\n");
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), "$-1\r\n");
    assert_eq!(
        c.cmd(&["ROLE"]).split("\r\n").take(3).collect::<Vec<_>>(),
        ["*3", "$6", "master"]
    );

    let info = c.cmd(&["INFO"]);
    for field in [
        "# Server\r\nredis_version:",
        "\r\narch_bits:64\r\n",
        "\r\nrun_id:",
        "# Clients\r\nconnected_clients:",
        "\r\nblocked_clients:0\r\n",
        "# Memory\r\nused_memory:",
        "\r\nmaxmemory_policy:noeviction\r\n",
        "\r\nrdb_last_save_time:",
        "# CPU\r\nused_cpu_sys:",
        "# Cluster\r\ncluster_enabled:0\r\n",
        "# Keyspace\r\ndb0:keys=1,",
    ] {
        assert!(info.contains(field), "INFO lacks {field:?}: {info}");
    }
    let two = c.cmd(&["INFO", "clients", "server"]);
    assert!(two.contains("redis_version:") && two.contains("connected_clients:") && !two.contains("# Memory"));
}
