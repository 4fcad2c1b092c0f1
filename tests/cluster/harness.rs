//! Test harness for the multi-region test binaries (`tests/cluster.rs`, `tests/policies.rs`): port ranges
//! picked free, a `concord up --policies FILE` cluster or three `concord serve` processes of a
//! cluster config this harness writes, the `redis` crate and a raw RESP client (for the exact
//! text of error replies), a tiny HTTP/1.1 client for the JSON API, partitions through the admin
//! API, and bounded polling.
//!
//! Port layout (the one `concord up` uses): region *i* listens on RESP `base+i`, HTTP
//! `base+1000+i`, peer `base+2000+i`. Bases come from a process-wide counter starting at 21000 in
//! steps of 10 (ranges below the kernel's ephemeral range, so outgoing connections never take
//! them), skipping ranges where any port is busy or that another test process holds: the lock
//! files (`flock`, one per range) are the ones `tests/cluster` uses, so the two binaries can run
//! at the same time without sharing a range. Each cluster gets its own cluster name and secret.
//!
//! Every process is ours, remembered by its PID, and stopped on drop (SIGTERM, then SIGKILL after
//! 10 s).

#![allow(dead_code)]

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// The three regions every test runs.
pub const REGIONS: [&str; 3] = ["us", "eu", "ap"];
/// The bound on ordinary waits (readiness, convergence).
pub const WAIT: Duration = Duration::from_secs(15);

const FIRST_BASE: u16 = 21000;
const LAST_BASE: u16 = 21990;
static NEXT_BASE: AtomicU16 = AtomicU16::new(FIRST_BASE);

/// A port range reserved for one cluster: an exclusive `flock` on a per-base lock file (released
/// when this is dropped or the process exits), so concurrent runs of this binary never share a
/// range, plus a probe that every port is free.
pub struct PortLease {
    pub base: u16,
    _lock: std::fs::File,
}

/// A base port whose RESP, HTTP and peer ports for `n` regions were all free a moment ago.
pub fn free_base(n: u16) -> PortLease {
    let dir = std::env::temp_dir().join("concord-cluster-tests");
    std::fs::create_dir_all(&dir).expect("create the port lock dir");
    let slots = (LAST_BASE - FIRST_BASE) / 10 + 1;
    for _ in 0..slots {
        let base = FIRST_BASE + (NEXT_BASE.fetch_add(10, Ordering::SeqCst) - FIRST_BASE) % (slots * 10);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("base-{base}.lock")))
            .expect("open a port lock file");
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock(2) on a file descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        let free = (0..n).all(|i| {
            [0u16, 1000, 2000]
                .iter()
                .all(|off| TcpListener::bind(("127.0.0.1", base + off + i)).is_ok())
        });
        if free {
            return PortLease { base, _lock: lock };
        }
    }
    panic!("no free port range left in {FIRST_BASE}..={LAST_BASE}");
}

/// A cluster name and secret of our own for each cluster (process id and base port), so two
/// clusters can never replicate with each other, whatever happens to their ports.
pub fn identity(base: u16) -> (String, String) {
    let pid = std::process::id();
    (
        format!("itest-{pid}-{base}"),
        format!("itest-secret-{pid}-{base}-0123456789"),
    )
}

/// The endpoints of a cluster laid out from a base port.
#[derive(Clone, Debug)]
pub struct Layout {
    pub base: u16,
    pub names: Vec<String>,
}

impl Layout {
    pub fn new(base: u16) -> Layout {
        Layout {
            base,
            names: REGIONS.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn index(&self, region: &str) -> u16 {
        self.names
            .iter()
            .position(|n| n == region)
            .unwrap_or_else(|| panic!("unknown region {region}")) as u16
    }

    pub fn resp(&self, region: &str) -> u16 {
        self.base + self.index(region)
    }

    pub fn http(&self, region: &str) -> u16 {
        self.base + 1000 + self.index(region)
    }

    pub fn peer(&self, region: &str) -> u16 {
        self.base + 2000 + self.index(region)
    }

    /// A `redis` crate connection to a region, with read/write timeouts.
    pub fn redis(&self, region: &str) -> redis::Connection {
        redis_connect(self.resp(region))
    }

    /// `GET /v1/status` of a region.
    pub fn status(&self, region: &str) -> Value {
        let r = http(self.http(region), "GET", "/v1/status", b"");
        assert_eq!(r.status, 200, "status of {region}: {}", r.text());
        r.json()
    }

    /// `GET /v1/status` of a region, or `None` if it does not answer.
    pub fn try_status(&self, region: &str) -> Option<Value> {
        let r = try_http(self.http(region), "GET", "/v1/status", b"").ok()?;
        (r.status == 200).then(|| r.json())
    }

    /// The entry for `peer` in `region`'s status.
    pub fn peer_status(&self, region: &str, peer: &str) -> Value {
        peer_of(&self.status(region), peer)
    }

    /// Set the simulated faults of `region`'s link to `peer` (JSON body of the admin API).
    pub fn set_link(&self, region: &str, peer: &str, faults: &str) {
        let r = http(
            self.http(region),
            "PUT",
            &format!("/v1/admin/links/{peer}"),
            faults.as_bytes(),
        );
        assert_eq!(r.status, 200, "PUT link {region}->{peer}: {}", r.text());
    }

    /// Wait until `region` answers PING.
    pub fn wait_ping(&self, region: &str) {
        let port = self.resp(region);
        eventually(&format!("{region} answering PING on {port}"), WAIT, || {
            let mut con = try_redis_connect(port).ok()?;
            let pong: String = redis::cmd("PING").query(&mut con).ok()?;
            (pong == "PONG").then_some(())
        });
    }

    /// Wait until each of `regions` answers PING, is subscribed to each of its upstreams among
    /// `regions`, and accepts writes.
    pub fn wait_ready(&self, regions: &[&str]) {
        for r in regions {
            self.wait_ping(r);
        }
        for r in regions {
            eventually(&format!("{r} connected to its upstreams"), WAIT, || {
                let st = self.try_status(r)?;
                let peers = st["peers"].as_array()?.clone();
                peers
                    .iter()
                    .filter(|p| p["upstream"] == true && regions.contains(&p["region"].as_str().unwrap_or("")))
                    .all(|p| p["upstream_connected"] == true)
                    .then_some(())
            });
        }
        for r in regions {
            self.wait_writable(r);
        }
    }

    /// Wait until a write to a key with no home succeeds in `region` (a fresh data dir takes such
    /// writes at once, DESIGN §8.1; this still waits out a node that is starting or refusing
    /// writes after a storage failure).
    pub fn wait_writable(&self, region: &str) {
        eventually(&format!("{region} accepting writes"), WAIT, || {
            let mut con = try_redis_connect(self.resp(region)).ok()?;
            redis::cmd("SET")
                .arg(format!("itest:ready:{region}"))
                .arg("1")
                .query::<()>(&mut con)
                .ok()
        });
    }

    /// Wait until every pair of `regions` reports lag 0 (in ops) for the other.
    pub fn wait_caught_up(&self, regions: &[&str], limit: Duration) {
        eventually(&format!("lag 0 between {regions:?}"), limit, || {
            for r in regions {
                let st = self.try_status(r)?;
                for p in st["peers"].as_array()? {
                    if regions.contains(&p["region"].as_str().unwrap_or("")) && p["lag_ops"] != 0 {
                        return None;
                    }
                }
            }
            Some(())
        });
    }
}

/// The entry for `peer` in a status document.
pub fn peer_of(status: &Value, peer: &str) -> Value {
    status["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["region"] == peer))
        .cloned()
        .unwrap_or_else(|| panic!("no peer {peer} in status {status}"))
}

pub fn try_redis_connect(port: u16) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let con = client.get_connection_with_timeout(Duration::from_secs(2))?;
    con.set_read_timeout(Some(Duration::from_secs(10)))?;
    con.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(con)
}

pub fn redis_connect(port: u16) -> redis::Connection {
    try_redis_connect(port).unwrap_or_else(|e| panic!("connect to RESP port {port}: {e}"))
}

/// `GET key` on a connection.
pub fn get(con: &mut redis::Connection, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query(con)
        .unwrap_or_else(|e| panic!("GET {key}: {e}"))
}

/// `SET key value` on a connection.
pub fn set(con: &mut redis::Connection, key: &str, value: &str) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query::<()>(con)
        .unwrap_or_else(|e| panic!("SET {key} {value}: {e}"));
}

/// Poll `f` every 20 ms until it returns `Some`, at most `limit`; panics naming `what` after.
pub fn eventually<T>(what: &str, limit: Duration, f: impl FnMut() -> Option<T>) -> T {
    eventually_every(what, limit, Duration::from_millis(20), f)
}

/// [`eventually`] polling every `every`.
pub fn eventually_every<T>(what: &str, limit: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(every);
    }
}

// ----- processes ---------------------------------------------------------------------------------

/// A child process of this test, stopped on drop: SIGTERM, then SIGKILL after 10 s.
pub struct Proc {
    child: Option<Child>,
    pub what: String,
    pub log_path: PathBuf,
}

impl Proc {
    /// Spawn `cmd` with stdout and stderr appended to `log_path`.
    pub fn spawn(mut cmd: Command, what: &str, log_path: &Path) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .expect("open log");
        let child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        Proc {
            child: Some(child),
            what: what.to_string(),
            log_path: log_path.to_path_buf(),
        }
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Still running (not exited)?
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on the PID of a child we spawned and have not reaped yet.
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait, at most 10 s, then SIGKILL. True if it exited by itself.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        // SAFETY: as in `signal`: our own, unreaped child.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return true,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    eprintln!("{} did not stop within 10 s of SIGTERM; killing it", self.what);
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The `concord` binary Cargo built for this test run.
pub fn concord_bin() -> &'static str {
    env!("CARGO_BIN_EXE_concord")
}

/// A cluster started by `concord up --regions us,eu,ap`.
pub struct Up {
    pub layout: Layout,
    pub proc: Proc,
    pub dir: tempfile::TempDir,
    /// Dropped last: the range stays reserved until the processes are gone.
    _ports: PortLease,
}

impl Up {
    /// `concord up` with `extra` flags, waiting until every region is ready.
    pub fn start(extra: &[&str]) -> Up {
        let dir = tempfile::tempdir().expect("tempdir");
        Up::start_in(dir, extra)
    }

    /// `concord up --policies <file with `policies`>` plus `extra` flags.
    pub fn with_policies(policies: &str, extra: &[&str]) -> Up {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("policies.toml");
        std::fs::write(&path, policies).expect("write the policies file");
        let mut args = vec!["--policies", path.to_str().expect("utf-8 temp path")];
        args.extend_from_slice(extra);
        Up::start_in(dir, &args)
    }

    /// Like [`Up::start`], in a given directory (for a `--policies` file written there first).
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Up {
        let ports = free_base(3);
        let layout = Layout::new(ports.base);
        let mut cmd = Command::new(concord_bin());
        cmd.arg("up")
            .arg("--regions")
            .arg(REGIONS.join(","))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--base-port")
            .arg(layout.base.to_string())
            .args(extra);
        let proc = Proc::spawn(cmd, "concord up", &dir.path().join("up.log"));
        let mut up = Up {
            layout,
            _ports: ports,
            proc,
            dir,
        };
        up.wait_ready();
        up
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        for r in REGIONS {
            loop {
                assert!(
                    self.proc.running(),
                    "concord up exited early; log:\n{}",
                    self.proc.log()
                );
                if try_redis_connect(self.layout.resp(r))
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                    .is_ok()
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{r} not answering PING within {WAIT:?}; log:\n{}",
                    self.proc.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.layout.wait_ready(&REGIONS);
    }
}

/// A cluster of `concord serve` processes, one per region, from a config this harness writes.
pub struct ServeCluster {
    pub layout: Layout,
    /// This cluster's name and secret.
    pub cluster: String,
    pub secret: String,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub procs: Vec<(String, Proc)>,
    /// Top-level TOML lines (topology, log_retention_ops, ...).
    pub extra: String,
    /// `[storage] fsync` of every region (`batch` unless a test sets another before starting).
    pub fsync: String,
    /// Dropped last: the range stays reserved until the processes are gone.
    _ports: PortLease,
}

impl ServeCluster {
    /// Write the config (with `extra` top-level TOML) for us, eu, ap; starts nothing.
    pub fn new(extra: &str) -> ServeCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = free_base(3);
        let layout = Layout::new(ports.base);
        let (cluster, secret) = identity(ports.base);
        let config_path = dir.path().join("concord.toml");
        let c = ServeCluster {
            layout,
            _ports: ports,
            cluster,
            secret,
            dir,
            config_path,
            procs: Vec::new(),
            extra: extra.to_string(),
            fsync: "batch".into(),
        };
        std::fs::write(&c.config_path, c.config_text(&c.cluster, &c.secret)).expect("write config");
        c
    }

    /// Use `fsync` (`always`, `batch`, `everysec`) in every region; call before starting any.
    pub fn set_fsync(&mut self, fsync: &str) {
        self.fsync = fsync.to_string();
        std::fs::write(&self.config_path, self.config_text(&self.cluster, &self.secret)).expect("write config");
    }

    /// The data dir of a region.
    pub fn data_dir(&self, region: &str) -> PathBuf {
        self.dir.path().join("data").join(region)
    }

    /// The config text, with a given cluster name and secret (for impostors).
    pub fn config_text(&self, cluster: &str, secret: &str) -> String {
        let mut t = format!("cluster = {cluster:?}\nsecret = {secret:?}\n{}\n", self.extra);
        t += &format!("\n[storage]\nfsync = {:?}\n", self.fsync);
        for (i, r) in self.layout.names.iter().enumerate() {
            t += &format!(
                "\n[[region]]\nname = {r:?}\nid = {}\nresp = \"127.0.0.1:{}\"\nhttp = \"127.0.0.1:{}\"\npeer = \"127.0.0.1:{}\"\ndata_dir = {:?}\n",
                i + 1,
                self.layout.resp(r),
                self.layout.http(r),
                self.layout.peer(r),
                self.data_dir(r).display().to_string()
            );
        }
        t
    }

    /// Start `concord serve --config <config> --region <region>`, logging to `<region>.log`;
    /// waits for PING.
    pub fn start(&mut self, region: &str) {
        let config = self.config_path.clone();
        let log = self.dir.path().join(format!("{region}.log"));
        let p = self.spawn_with(&config, region, &log);
        self.procs.retain(|(n, _)| n != region);
        self.procs.push((region.to_string(), p));
        self.layout.wait_ping(region);
    }

    /// Spawn `concord serve` of `region` with any config file; does not wait.
    pub fn spawn_with(&self, config: &Path, region: &str, log: &Path) -> Proc {
        let mut cmd = Command::new(concord_bin());
        cmd.arg("serve").arg("--config").arg(config).arg("--region").arg(region);
        Proc::spawn(cmd, &format!("concord serve {region}"), log)
    }

    /// Start every region and wait until all are connected and writable.
    pub fn start_all(&mut self) {
        for r in REGIONS {
            self.start(r);
        }
        self.layout.wait_ready(&REGIONS);
    }

    pub fn proc(&mut self, region: &str) -> &mut Proc {
        self.procs
            .iter_mut()
            .find(|(n, _)| n == region)
            .map(|(_, p)| p)
            .unwrap_or_else(|| panic!("{region} was never started"))
    }

    /// `kill -9` a region's process.
    pub fn kill9(&mut self, region: &str) {
        self.proc(region).kill9();
    }

    /// SIGTERM a region's process and wait for it; asserts it stopped by itself.
    pub fn stop(&mut self, region: &str) {
        let clean = self.proc(region).terminate();
        assert!(clean, "{region} did not stop on SIGTERM");
    }

    pub fn log(&mut self, region: &str) -> String {
        self.proc(region).log()
    }
}

impl Drop for ServeCluster {
    fn drop(&mut self) {
        // Stop every process before the temporary directory goes.
        for (_, p) in self.procs.iter_mut() {
            p.terminate();
        }
    }
}

// ----- HTTP --------------------------------------------------------------------------------------

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A one-shot HTTP/1.1 request (`Connection: close`); panics if the server does not answer.
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> HttpResponse {
    try_http(port, method, path, body).unwrap_or_else(|e| panic!("{method} {path} on port {port}: {e}"))
}

pub fn try_http(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<HttpResponse> {
    try_http_with(port, method, path, &[], body)
}

/// [`http`] with extra request headers.
pub fn http_with(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    try_http_with(port, method, path, headers, body).unwrap_or_else(|e| panic!("{method} {path} on port {port}: {e}"))
}

pub fn try_http_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of HTTP headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body);
    }
    Ok(HttpResponse { status, body })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let Ok(size) = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16) else {
            break;
        };
        if size == 0 || b.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}

// ----- raw RESP ----------------------------------------------------------------------------------

/// One RESP2 reply, as the server sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    /// The error line without its leading `-`, e.g. `TRYAGAIN home region us is unreachable: ...`.
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    pub fn is_ok(&self) -> bool {
        *self == Resp::Simple("OK".into())
    }

    /// The error line, or a panic naming what came instead.
    pub fn error(&self) -> &str {
        match self {
            Resp::Error(e) => e,
            other => panic!("expected an error reply, got {other:?}"),
        }
    }
}

/// A raw RESP connection: sends commands as arrays of bulk strings, reads one reply per command.
pub struct RawConn {
    reader: std::io::BufReader<TcpStream>,
    writer: TcpStream,
}

impl RawConn {
    pub fn connect(port: u16) -> RawConn {
        let s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("connect to RESP port {port}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(15))).expect("read timeout");
        s.set_write_timeout(Some(Duration::from_secs(15)))
            .expect("write timeout");
        let _ = s.set_nodelay(true);
        RawConn {
            reader: std::io::BufReader::new(s.try_clone().expect("clone socket")),
            writer: s,
        }
    }

    pub fn cmd(&mut self, args: &[&str]) -> Resp {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        self.writer
            .write_all(&req)
            .unwrap_or_else(|e| panic!("send {args:?}: {e}"));
        self.read_reply().unwrap_or_else(|e| panic!("reply to {args:?}: {e}"))
    }

    fn line(&mut self) -> std::io::Result<String> {
        use std::io::BufRead;
        let mut l = String::new();
        self.reader.read_line(&mut l)?;
        if !l.ends_with("\r\n") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("connection closed mid-reply ({l:?})"),
            ));
        }
        l.truncate(l.len() - 2);
        Ok(l)
    }

    /// Read one reply (or pushed message).
    pub fn read_reply(&mut self) -> std::io::Result<Resp> {
        let l = self.line()?;
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad reply line {l:?}"));
        let (t, rest) = l.split_at(1.min(l.len()));
        Ok(match t {
            "+" => Resp::Simple(rest.to_string()),
            "-" => Resp::Error(rest.to_string()),
            ":" => Resp::Int(rest.parse().map_err(|_| bad())?),
            "$" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    Resp::Bulk(None)
                } else {
                    let mut buf = vec![0u8; n as usize + 2];
                    self.reader.read_exact(&mut buf)?;
                    buf.truncate(n as usize);
                    Resp::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
                }
            }
            "*" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    Resp::Array(None)
                } else {
                    let mut items = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        items.push(self.read_reply()?);
                    }
                    Resp::Array(Some(items))
                }
            }
            _ => return Err(bad()),
        })
    }
}

impl Layout {
    /// A raw RESP connection to a region.
    pub fn raw(&self, region: &str) -> RawConn {
        RawConn::connect(self.resp(region))
    }

    /// Partition `at`'s links to each of `peers` (the fault applies at `at`, both directions),
    /// then wait until both ends of every such link see it down.
    pub fn partition(&self, at: &str, peers: &[&str]) {
        for p in peers {
            self.set_link(at, p, r#"{"partitioned": true}"#);
        }
        eventually(&format!("{at} cut off from {peers:?} on both sides"), WAIT, || {
            let mine = self.try_status(at)?;
            for p in peers {
                let theirs = self.try_status(p)?;
                if peer_of(&mine, p)["connected"] != false || peer_of(&theirs, at)["connected"] != false {
                    return None;
                }
            }
            Some(())
        });
    }

    /// Clear the faults of `at`'s links to `peers` (without waiting for reconnection).
    pub fn heal(&self, at: &str, peers: &[&str]) {
        for p in peers {
            self.set_link(at, p, "{}");
        }
    }
}
