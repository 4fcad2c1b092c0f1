//! `concord up --regions us`: a one-region local cluster serving redis-cli within seconds, stopped
//! cleanly by SIGTERM (exit 0, its child gone), resumed with its data on the same data dir.

use crate::harness::{concord_bin, redis_cli, wait_timeout, RawClient, WAIT};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A base port whose RESP, HTTP and peer ports (base, base+1000, base+2000) are all free now.
fn free_base_port() -> u16 {
    let seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Below the kernel's ephemeral range, where the other tests' ports come from.
        let base = 20_000 + (x % 10_000) as u16;
        let free = [base, base + 1000, base + 2000]
            .iter()
            .all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok());
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
