//! Bad input (DESIGN §6): each answered with a Redis-style error, while another client keeps
//! being served and the node keeps its data.

use crate::harness::{bulk, concord_bin, run_bounded, RawClient, Server, Setup};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A second client that keeps writing and reading on its own connection in the background.
struct Bystander {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bystander {
    fn start(s: &Server) -> Bystander {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let mut con = s.redis();
        let (stop2, done2) = (stop.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop2.load(Ordering::SeqCst) {
                let key = format!("bystander:{}", i % 100);
                let () = redis::cmd("SET")
                    .arg(&key)
                    .arg(i)
                    .query(&mut con)
                    .expect("bystander SET");
                let v: u64 = redis::cmd("GET").arg(&key).query(&mut con).expect("bystander GET");
                assert_eq!(v, i);
                i += 1;
                done2.store(i, Ordering::SeqCst);
            }
        });
        Bystander {
            stop,
            done,
            thread: Some(thread),
        }
    }

    /// Wait (bounded) until the bystander completed a few more round trips.
    fn still_served(&self) {
        let start = self.done.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.done.load(Ordering::SeqCst) < start + 3 {
            assert!(
                !self.thread.as_ref().unwrap().is_finished(),
                "the bystander client failed"
            );
            assert!(Instant::now() < deadline, "the bystander client is no longer served");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().expect("bystander client");
        self.done.load(Ordering::SeqCst)
    }
}

const MAX_VALUE: usize = 4096;

fn server() -> Server {
    Server::start_with(|setup| setup.max_value_bytes = Some(MAX_VALUE))
}

/// Send raw bytes on a fresh connection; expect exactly `reply`, then the connection closed.
#[track_caller]
fn protocol_error(s: &Server, input: &[u8], reply: &str) {
    let mut c = s.raw();
    let t = Instant::now();
    c.send_bytes(input).unwrap();
    assert_eq!(
        c.read_reply(),
        reply,
        "reply to {:?}",
        String::from_utf8_lossy(&input[..input.len().min(80)])
    );
    c.expect_closed();
    assert!(t.elapsed() < Duration::from_secs(5), "answered promptly");
}

#[test]
fn garbage_bytes_get_protocol_errors_and_others_are_served() {
    let s = server();
    let by = Bystander::start(&s);
    by.still_served();

    protocol_error(&s, b"*abc\r\n", "-ERR Protocol error: invalid multibulk length\r\n");
    by.still_served();
    protocol_error(&s, b"*1\r\nxyz\r\n", "-ERR Protocol error: expected '$', got 'x'\r\n");
    by.still_served();
    protocol_error(&s, b"*1\r\n$-5\r\n", "-ERR Protocol error: invalid bulk length\r\n");
    protocol_error(
        &s,
        b"\"unbalanced quote\r\n",
        "-ERR Protocol error: unbalanced quotes in request\r\n",
    );
    by.still_served();
    // 100 KB of random bytes with no line end: an inline request too big to wait for.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x as u8 {
                b'\n' | b'*' => b'?',
                b => b,
            }
        })
        .collect();
    protocol_error(&s, &noise, "-ERR Protocol error: too big inline request\r\n");
    by.still_served();
    // Binary junk on one line is an (unknown) inline command: an error, and the connection stays.
    let mut c = s.raw();
    c.send_bytes(b"\xff\xfe\x01junk\r\n").unwrap();
    let reply = c.read_reply();
    assert!(reply.starts_with("-ERR unknown command '"), "{reply}");
    assert_eq!(c.cmd(&["PING"]), "+PONG\r\n");
    // A client that sends half a command and hangs up.
    let mut half = s.raw();
    half.send_bytes(b"*3\r\n$3\r\nSET\r\n$1\r\nk").unwrap();
    drop(half);
    by.still_served();
    assert_eq!(c.cmd(&["EXISTS", "k"]), ":0\r\n");
    assert!(by.finish() > 10);
}

#[test]
fn a_bulk_header_announcing_2_gb_is_refused_at_once() {
    let s = server();
    let by = Bystander::start(&s);
    by.still_served();
    // Only the header: the server must refuse it without waiting for (or allocating) 2 GB.
    protocol_error(
        &s,
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2147483648\r\n",
        "-ERR Protocol error: invalid bulk length\r\n",
    );
    protocol_error(
        &s,
        b"*2\r\n$3\r\nGET\r\n$99999999999999999999999\r\n",
        "-ERR Protocol error: invalid bulk length\r\n",
    );
    protocol_error(
        &s,
        b"*2147483648\r\n",
        "-ERR Protocol error: invalid multibulk length\r\n",
    );
    by.still_served();
    assert_eq!(s.raw().cmd(&["EXISTS", "k"]), ":0\r\n");
    by.finish();
}

#[test]
fn a_value_over_max_value_bytes_is_refused() {
    let s = server();
    let by = Bystander::start(&s);
    let mut c = s.raw();
    let at_limit = "a".repeat(MAX_VALUE);
    assert_eq!(c.cmd(&["SET", "fits", &at_limit]), "+OK\r\n");
    assert_eq!(c.cmd(&["STRLEN", "fits"]), format!(":{MAX_VALUE}\r\n"));
    // One byte over: refused like Redis refuses a bulk over proto-max-bulk-len.
    let over = "b".repeat(MAX_VALUE + 1);
    let input = RawClient::encode(&[b"SET", b"big", over.as_bytes()]);
    protocol_error(&s, &input, "-ERR Protocol error: invalid bulk length\r\n");
    let input = RawClient::encode(&[b"HSET", b"bigh", b"f", "c".repeat(100_000).as_bytes()]);
    protocol_error(&s, &input, "-ERR Protocol error: invalid bulk length\r\n");
    by.still_served();
    assert_eq!(c.cmd(&["EXISTS", "big", "bigh"]), ":0\r\n");
    assert_eq!(c.cmd(&["STRLEN", "fits"]), format!(":{MAX_VALUE}\r\n"));
    by.finish();
}

/// Redis refuses to grow a string past `proto-max-bulk-len` with APPEND
/// (`-ERR string exceeds maximum allowed size (proto-max-bulk-len)`); the limit on values must not
/// be side-stepped by appending.
#[test]
fn append_cannot_grow_a_value_past_max_value_bytes() {
    let s = server();
    let mut c = s.raw();
    let half = "a".repeat(MAX_VALUE / 2 + 100);
    assert_eq!(c.cmd(&["SET", "k", &half]), "+OK\r\n");
    assert_eq!(
        c.cmd(&["APPEND", "k", &half]),
        "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"
    );
    assert_eq!(c.cmd(&["STRLEN", "k"]), format!(":{}\r\n", half.len()));
}

#[test]
fn command_errors_keep_the_connection_and_others_served() {
    let s = server();
    let by = Bystander::start(&s);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["FLY", "me", "to", "the", "moon"]),
        "-ERR unknown command 'FLY', with args beginning with: 'me' 'to' 'the' 'moon' \r\n"
    );
    assert_eq!(
        c.cmd(&["FLY"]),
        "-ERR unknown command 'FLY', with args beginning with: \r\n"
    );
    assert_eq!(c.cmd(&["GET"]), "-ERR wrong number of arguments for 'get' command\r\n");
    assert_eq!(
        c.cmd(&["SET", "k"]),
        "-ERR wrong number of arguments for 'set' command\r\n"
    );
    assert_eq!(
        c.cmd(&["GET", "a", "b"]),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert_eq!(
        c.cmd(&["MSET", "a", "1", "b"]),
        "-ERR wrong number of arguments for 'mset' command\r\n"
    );
    assert_eq!(
        c.cmd(&["HSET", "h", "f"]),
        "-ERR wrong number of arguments for 'hset' command\r\n"
    );
    by.still_served();
    assert_eq!(c.cmd(&["SADD", "s", "m"]), ":1\r\n");
    let wrongtype = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
    assert_eq!(c.cmd(&["GET", "s"]), wrongtype);
    assert_eq!(c.cmd(&["HSET", "s", "f", "v"]), wrongtype);
    assert_eq!(c.cmd(&["INCR", "s"]), wrongtype);
    assert_eq!(c.cmd(&["APPEND", "s", "x"]), wrongtype);
    assert_eq!(c.cmd(&["SMEMBERS", "s"]), "*1\r\n$1\r\nm\r\n", "the set is untouched");
    assert_eq!(c.cmd(&["SET", "t", "12abc"]), "+OK\r\n");
    let not_int = "-ERR value is not an integer or out of range\r\n";
    assert_eq!(c.cmd(&["INCR", "t"]), not_int);
    assert_eq!(c.cmd(&["INCRBY", "n", "ten"]), not_int);
    assert_eq!(c.cmd(&["DECRBY", "n", "1.5"]), not_int);
    assert_eq!(c.cmd(&["SET", "f", "1.5"]), "+OK\r\n");
    assert_eq!(c.cmd(&["INCR", "f"]), not_int);
    assert_eq!(c.cmd(&["SET", "sp", " 1"]), "+OK\r\n");
    assert_eq!(c.cmd(&["INCR", "sp"]), not_int);
    assert_eq!(
        c.cmd(&["GET", "t"]),
        bulk(Some("12abc")),
        "a failed INCR changes nothing"
    );
    assert_eq!(c.cmd(&["EXISTS", "n"]), ":0\r\n");
    // The same connection goes on.
    assert_eq!(c.cmd(&["PING"]), "+PONG\r\n");
    by.still_served();
    assert!(by.finish() > 5);
}

#[test]
fn connections_over_max_clients_are_refused_redis_style() {
    let s = Server::start_with(|setup| setup.extra = "[limits]\nmax_clients = 3\n".into());
    let mut first = s.raw();
    // Until the harness's readiness probe has let go of its slot, this is the second client.
    let connected = |c: &mut RawClient, n: u32| {
        crate::harness::eventually(&format!("{n} connected clients"), || {
            let info = c.cmd(&["INFO", "clients"]);
            info.contains(&format!("connected_clients:{n}\r\n")).then_some(())
        })
    };
    connected(&mut first, 1);
    let mut held = vec![first, s.raw(), s.raw()];
    for c in &mut held {
        assert_eq!(c.cmd(&["PING"]), "+PONG\r\n");
    }
    let mut fourth = s.raw();
    assert_eq!(fourth.read_reply(), "-ERR max number of clients reached\r\n");
    fourth.expect_closed();
    // The clients already connected are still served.
    for c in &mut held {
        assert!(c.cmd(&["INCR", "n"]).starts_with(':'));
    }
    // A slot freed is a slot to use again.
    drop(held.pop());
    connected(&mut held[0], 2);
    let mut again = s.raw();
    assert_eq!(again.cmd(&["PING"]), "+PONG\r\n");
}

/// Run `concord serve` on a config text; it must fail, naming `field` on stderr.
#[track_caller]
fn refused(config: &str, field: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(concord_bin());
    cmd.arg("serve").arg("--config").arg(&path).arg("--region").arg("us");
    let (status, out, err) = run_bounded(cmd, b"");
    assert!(
        !status.success(),
        "a bad config must be refused:\n{config}\nstdout: {out}"
    );
    assert!(
        err.contains(field),
        "stderr should name `{field}`:\n{err}\nconfig:\n{config}"
    );
}

#[test]
fn a_config_with_a_wrong_field_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let good = Setup::single(dir.path()).toml();
    // The good config starts (sanity check of the mutations below).
    assert!(good.contains("fsync = \"batch\""));
    refused(&good.replace("fsync = \"batch\"", "fsyncc = \"always\""), "fsyncc");
    refused(&good.replace("fsync = \"batch\"", "fsync = \"sometimes\""), "sometimes");
    refused(&good.replace("id = 1", "id = 0"), "region[0].id");
    refused(
        &good.replace("cluster = \"itest\"", "cluster = \"itest\"\ncolour = \"red\""),
        "colour",
    );
    refused(
        &good.replace("secret = \"it-secret-0123456789\"", "secret = \"short\""),
        "secret",
    );
    refused(
        &(good.clone() + "[limits]\nmax_value_bytes = 10\n"),
        "limits.max_value_bytes",
    );
    refused(
        &(good.clone() + "[[policy]]\nmatch = \"doc:*\"\nstrings = \"newest\"\n"),
        "policy[0].strings",
    );
    let addr = good.lines().find(|l| l.starts_with("resp = ")).unwrap().to_string();
    refused(&good.replace(&addr, "resp = \"not-an-address\""), "resp");
    // A region that is not in the config.
    let path = dir.path().join("good.toml");
    std::fs::write(&path, &good).unwrap();
    let mut cmd = Command::new(concord_bin());
    cmd.arg("serve").arg("--config").arg(&path).arg("--region").arg("mars");
    let (status, _, err) = run_bounded(cmd, b"");
    assert!(!status.success());
    assert!(err.contains("mars"), "{err}");
}

/// A data dir belongs to one region: serving it as another (a reordered `up --regions`, a copied
/// dir) is refused at start, naming both.
#[test]
fn a_data_dir_of_another_region_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::single(dir.path());
    let s = Server::spawn(setup.clone(), 0, dir.path());
    drop(s);
    setup.regions[0].name = "eu".into();
    setup.regions[0].id = 2;
    let path = dir.path().join("other.toml");
    std::fs::write(&path, setup.toml()).unwrap();
    let mut cmd = Command::new(concord_bin());
    cmd.arg("serve").arg("--config").arg(&path).arg("--region").arg("eu");
    let (status, _out, err) = run_bounded(cmd, b"");
    assert!(!status.success(), "serving another region's data dir must fail");
    assert!(err.contains("belongs to region") && err.contains("us 1"), "{err}");
}

/// A resolver script that does not load fails validation, naming the policy's `script` field.
#[test]
fn a_resolver_script_that_fails_to_load_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = Setup::single(dir.path()).toml();
    let script = dir.path().join("broken.lua");
    std::fs::write(&script, "function resolve(key, siblings) return end end").unwrap();
    refused(
        &format!(
            "{good}[[policy]]\nmatch = \"n:*\"\nstrings = \"script\"\nscript = {:?}\n",
            script.display().to_string()
        ),
        "policy[0].script",
    );
    refused(
        &format!("{good}[[policy]]\nmatch = \"n:*\"\nstrings = \"script\"\nscript = \"/nonexistent.lua\"\n"),
        "policy[0].script",
    );
}
