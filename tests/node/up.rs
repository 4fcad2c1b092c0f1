//! `concord up --regions us`: a one-region local cluster serving redis-cli within seconds, stopped
//! cleanly by SIGTERM (exit 0, its child gone), resumed with its data on the same data dir.

use crate::harness::{concord_bin, redis_cli, wait_timeout, RawClient, WAIT};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A base port whose RESP, HTTP and peer ports (base, base+1000, base+2000) are all free now.
fn free_base_port() -> u16 {
    free_base_ports(1)
}

/// A base port for `n` regions: base+i, base+1000+i and base+2000+i are all free now.
fn free_base_ports(n: u16) -> u16 {
    // Each call its own sequence (tests of one process run at once; `Instant::now().elapsed()`
    // is about 0, so the process id alone would give them all the same candidates).
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let seed = (std::process::id() as u64) ^ nanos ^ call.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Below the kernel's ephemeral range, where the other tests' ports come from.
        let base = 20_000 + (x % 9_990) as u16;
        let free = (0..n).all(|i| {
            [base, base + 1000, base + 2000]
                .iter()
                .all(|p| TcpListener::bind(("127.0.0.1", *p + i)).is_ok())
        });
        if free {
            return base;
        }
    }
    panic!("no free base port found");
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// The `up` process; on drop (a failed test) it is stopped, and the node it started too.
struct Up {
    child: Option<Child>,
    node_pid: Option<i32>,
}

impl Up {
    fn start(base: u16, data_dir: &std::path::Path, log: &std::path::Path) -> Up {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(concord_bin())
            .args(["up", "--regions", "us", "--base-port", &base.to_string(), "--data-dir"])
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn concord up");
        Up {
            child: Some(child),
            node_pid: None,
        }
    }

    fn sigterm(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on the PID of the child this test spawned.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        wait_timeout(&mut child, Duration::from_secs(15)).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("concord up did not exit after SIGTERM");
        })
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the PID of the child this test spawned.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            if wait_timeout(&mut child, Duration::from_secs(10)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Some(pid) = self.node_pid.take() {
            if pid_alive(pid) {
                // SAFETY: the node `up` started for this test (its PID reported by INFO).
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// Wait until the RESP port answers PING; returns how long it took.
fn wait_pong(port: u16, up: &mut Up, log: &std::path::Path) -> Duration {
    let t = Instant::now();
    loop {
        if let Ok(mut c) = RawClient::try_connect(port) {
            if c.send(&["PING"]).is_ok() && c.try_read_reply().ok().as_deref() == Some(b"+PONG\r\n".as_slice()) {
                return t.elapsed();
            }
        }
        if let Some(status) = up.child.as_mut().unwrap().try_wait().unwrap() {
            panic!(
                "concord up exited ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            t.elapsed() < WAIT,
            "concord up did not serve within {WAIT:?}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn node_pid(port: u16) -> i32 {
    let info = redis_cli(port, &["INFO", "server"]);
    info.lines()
        .find_map(|l| l.trim().strip_prefix("process_id:"))
        .expect("INFO server has process_id")
        .parse()
        .unwrap()
}

#[test]
fn up_single_region_serves_redis_cli_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("concord-data");
    let log = dir.path().join("up.log");
    let base = free_base_port();

    let mut up = Up::start(base, &data, &log);
    let took = wait_pong(base, &mut up, &log);
    assert!(took < Duration::from_secs(5), "serving took {took:?}");
    let pid = node_pid(base);
    up.node_pid = Some(pid);
    assert_ne!(
        pid as u32,
        up.child.as_ref().unwrap().id(),
        "the node is a child process"
    );
    assert_eq!(redis_cli(base, &["SET", "hello", "world"]), "OK");
    assert_eq!(redis_cli(base, &["GET", "hello"]), "world");
    // The HTTP port is base + 1000.
    let health = crate::harness::http(base + 1000, "GET", "/v1/health", &[], b"");
    assert_eq!(health.json()["region"], "us");
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(
        out.contains(&format!("127.0.0.1:{base}")),
        "up prints its endpoints:\n{out}"
    );

    let status = up.sigterm();
    assert_eq!(
        status.code(),
        Some(0),
        "up exits 0:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(!pid_alive(pid), "the node process {pid} is gone after up exits");
    up.node_pid = None;
    assert!(
        RawClient::try_connect(base).is_err(),
        "nothing listens on {base} any more"
    );

    // `up` again on the same data dir resumes with the data.
    let mut up = Up::start(base, &data, &log);
    wait_pong(base, &mut up, &log);
    up.node_pid = Some(node_pid(base));
    assert_eq!(redis_cli(base, &["GET", "hello"]), "world");
    assert_eq!(up.sigterm().code(), Some(0));
}

/// Issue 10, must show 4 (DESIGN §8.1): a fresh data dir is writable at once. A script a new user
/// would write — `concord up --regions us,eu,ap` on a new data dir, then for each region: poll
/// `redis-cli PING` until PONG and send `SET` straight away — gets `OK` from every region (no
/// `-TRYAGAIN`, although eu and ap may not even listen yet when us answers); once every region has
/// answered, a second `SET` in each is `OK` too, and every write reaches every region.
#[test]
fn fresh_up_takes_a_set_right_after_ping_in_every_region() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("concord-data");
    let log_path = dir.path().join("up.log");
    let base = free_base_ports(3);
    let ports: Vec<u16> = (0..3).map(|i| base + i).collect();

    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(concord_bin())
        .args([
            "up",
            "--regions",
            "us,eu,ap",
            "--base-port",
            &base.to_string(),
            "--data-dir",
        ])
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn concord up");
    let mut up = Up {
        child: Some(child),
        node_pid: None,
    };

    let list = ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ");
    let script = format!(
        r#"set -u
for p in {list}; do
  n=0
  until [ "$(redis-cli -h 127.0.0.1 -p $p PING 2>/dev/null)" = PONG ]; do
    n=$((n+1)); [ $n -gt 300 ] && {{ echo "$p no-pong"; exit 1; }}; sleep 0.02
  done
  echo "$p first $(redis-cli -h 127.0.0.1 -p $p SET fresh:first:$p v 2>&1)"
done
for p in {list}; do
  echo "$p second $(redis-cli -h 127.0.0.1 -p $p SET fresh:second:$p v 2>&1)"
done
"#
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(&script);
    let (status, out, err) = crate::harness::run_bounded(cmd, b"");
    let node_pids: Vec<i32> = ports.iter().filter_map(|p| try_node_pid(*p)).collect();
    let up_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.success(),
        "the script failed ({status}): {out}{err}\nup log:\n{}",
        up_log()
    );
    for p in &ports {
        for round in ["first", "second"] {
            let line = format!("{p} {round} OK");
            assert!(
                out.lines().any(|l| l == line),
                "SET {round} on port {p} right after PING was not OK; script output:\n{out}{err}\nup log:\n{}",
                up_log()
            );
        }
    }
    // Every write reaches every region (the fresh writers' dots are new everywhere).
    for p in &ports {
        let deadline = Instant::now() + WAIT;
        for q in &ports {
            for round in ["first", "second"] {
                let key = format!("fresh:{round}:{q}");
                while try_get(*p, &key).as_deref() != Some(b"$1\r\nv\r\n".as_slice()) {
                    assert!(
                        Instant::now() < deadline,
                        "{key} never reached port {p}\nup log:\n{}",
                        up_log()
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
    assert_eq!(up.sigterm().code(), Some(0), "up exits 0:\n{}", up_log());
    for pid in node_pids {
        assert!(!pid_alive(pid), "the node process {pid} is gone after up exits");
    }
}

/// `process_id` from `INFO server`, if the port answers.
fn try_node_pid(port: u16) -> Option<i32> {
    let mut c = RawClient::try_connect(port).ok()?;
    c.send(&["INFO", "server"]).ok()?;
    let reply = c.try_read_reply().ok()?;
    String::from_utf8_lossy(&reply)
        .lines()
        .find_map(|l| l.trim().strip_prefix("process_id:").map(|s| s.trim().parse().ok()))?
}

/// The raw reply to `GET key` on `port`, if it answers.
fn try_get(port: u16, key: &str) -> Option<Vec<u8>> {
    let mut c = RawClient::try_connect(port).ok()?;
    c.send(&["GET", key]).ok()?;
    c.try_read_reply().ok()
}
