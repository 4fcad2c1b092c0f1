//! Test harness: a `concord serve` child process on free loopback ports, a raw RESP client that
//! returns the exact bytes of each reply, a tiny HTTP/1.1 client, and `redis-cli`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The bound on every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// The `concord` binary Cargo built for this test run.
pub fn concord_bin() -> &'static str {
    env!("CARGO_BIN_EXE_concord")
}

/// A port that was free a moment ago (bound to 127.0.0.1:0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// `n` distinct free ports (all held open together while picking, so they differ).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    held.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// One `[[region]]` of a generated config.
#[derive(Clone, Debug)]
pub struct Region {
    pub name: String,
    pub id: u32,
    pub resp: u16,
    pub http: u16,
    pub peer: u16,
    pub data_dir: PathBuf,
}

impl Region {
    pub fn new(name: &str, id: u32, root: &Path) -> Region {
        let p = free_ports(3);
        Region {
            name: name.into(),
            id,
            resp: p[0],
            http: p[1],
            peer: p[2],
            data_dir: root.join(name),
        }
    }

    /// Fresh ports, same data dir (for a restart while the old ports may linger).
    pub fn with_new_ports(&self) -> Region {
        let p = free_ports(3);
        Region {
            resp: p[0],
            http: p[1],
            peer: p[2],
            ..self.clone()
        }
    }
}

/// What goes into a generated config file.
#[derive(Clone, Debug)]
pub struct Setup {
    pub password: Option<String>,
    pub fsync: &'static str,
    pub max_value_bytes: Option<usize>,
    /// Extra TOML appended verbatim (e.g. `[[policy]]` rules).
    pub extra: String,
    pub regions: Vec<Region>,
}

impl Setup {
    /// One region `us` (id 1) in `root`, `fsync = "batch"`.
    pub fn single(root: &Path) -> Setup {
        Setup {
            password: None,
            fsync: "batch",
            max_value_bytes: None,
            extra: String::new(),
            regions: vec![Region::new("us", 1, root)],
        }
    }

    pub fn toml(&self) -> String {
        let mut t = String::from("cluster = \"itest\"\nsecret = \"it-secret-0123456789\"\n");
        if let Some(pw) = &self.password {
            t += &format!("password = {pw:?}\n");
        }
        t += &format!("\n[storage]\nfsync = {:?}\n", self.fsync);
        if let Some(m) = self.max_value_bytes {
            t += &format!("\n[limits]\nmax_value_bytes = {m}\n");
        }
        for r in &self.regions {
            t += &format!(
                "\n[[region]]\nname = {:?}\nid = {}\nresp = \"127.0.0.1:{}\"\nhttp = \"127.0.0.1:{}\"\npeer = \"127.0.0.1:{}\"\ndata_dir = {:?}\n",
                r.name,
                r.id,
                r.resp,
                r.http,
                r.peer,
                r.data_dir.display().to_string()
            );
        }
        t += "\n";
        t += &self.extra;
        t
    }
}

/// A running `concord serve` child. Killed (SIGKILL, by PID) on drop unless already stopped.
pub struct Server {
    child: Option<Child>,
    pub setup: Setup,
    /// The region this process serves (`setup.regions[0]` unless said otherwise).
    pub region: Region,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    /// Keeps the temporary directory alive as long as the server (when the server owns it).
    _dir: Option<std::sync::Arc<tempfile::TempDir>>,
}

impl Server {
    /// A fresh single-region server in its own temporary directory.
    pub fn start() -> Server {
        Server::start_with(|_| {})
    }

    /// A fresh single-region server whose setup `f` adjusts first.
    pub fn start_with(f: impl FnOnce(&mut Setup)) -> Server {
        let dir = std::sync::Arc::new(tempfile::tempdir().expect("tempdir"));
        let mut setup = Setup::single(dir.path());
        f(&mut setup);
        let mut s = Server::spawn(setup, 0, dir.path());
        s._dir = Some(dir);
        s
    }

    /// Start region `index` of `setup`, writing the config into `dir`; waits until PING answers.
    pub fn spawn(setup: Setup, index: usize, dir: &Path) -> Server {
        let region = setup.regions[index].clone();
        let config_path = dir.join(format!("concord-{}-{}.toml", region.name, region.resp));
        std::fs::write(&config_path, setup.toml()).expect("write config");
        let log_path = dir.join(format!("{}-{}.log", region.name, region.resp));
        let log = std::fs::File::create(&log_path).expect("create log");
        let child = Command::new(concord_bin())
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--region")
            .arg(&region.name)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn concord serve");
        let mut s = Server {
            child: Some(child),
            setup,
            region,
            config_path,
            log_path,
            _dir: None,
        };
        s.wait_ready();
        s
    }

    /// The same data dir, on fresh ports (after a kill or stop).
    pub fn restart(mut self) -> Server {
        self.kill9();
        let dir = self._dir.take();
        let mut setup = self.setup.clone();
        let idx = setup.regions.iter().position(|r| r.name == self.region.name).unwrap();
        setup.regions = setup.regions.iter().map(Region::with_new_ports).collect();
        let root = self.config_path.parent().unwrap().to_path_buf();
        let mut s = Server::spawn(setup, idx, &root);
        s._dir = dir;
        s
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("server is running").id() as i32
    }

    pub fn port(&self) -> u16 {
        self.region.resp
    }

    pub fn http_port(&self) -> u16 {
        self.region.http
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("concord serve exited early ({status}); log:\n{}", self.log());
            }
            if let Ok(mut c) = RawClient::try_connect(self.port()) {
                // With a password PING answers -NOAUTH: any reply means the node is serving.
                if c.send(&["PING"]).is_ok() && c.try_read_reply().is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server not ready in {WAIT:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9` the server now and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the PID of a child this harness spawned and has not reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
            }
            let _ = child.wait();
        }
    }

    /// SIGTERM the server and wait (bounded) for it to exit; returns its exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server is running");
        // SAFETY: kill(2) on the PID of a child this harness spawned and has not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        match wait_timeout(&mut child, WAIT) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not exit within {WAIT:?} of SIGTERM; log:\n{}", self.log());
            }
        }
    }

    /// A `redis` crate connection with read/write timeouts.
    pub fn redis(&self) -> redis::Connection {
        redis_connect(&format!("redis://127.0.0.1:{}/", self.port()))
    }

    pub fn raw(&self) -> RawClient {
        RawClient::connect(self.port())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn redis_connect(url: &str) -> redis::Connection {
    let client = redis::Client::open(url).expect("redis url");
    let con = client.get_connection_with_timeout(WAIT).expect("redis connect");
    con.set_read_timeout(Some(WAIT)).unwrap();
    con.set_write_timeout(Some(WAIT)).unwrap();
    con
}

/// Wait for a child to exit, at most `limit`.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run a command to completion, bounded by [`WAIT`]; (exit status, stdout, stderr).
pub fn run_bounded(mut cmd: Command, stdin: &[u8]) -> (ExitStatus, String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let status = match wait_timeout(&mut child, WAIT) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {WAIT:?}");
        }
    };
    let _ = writer.join();
    let out = String::from_utf8_lossy(&out_t.join().unwrap()).into_owned();
    let err = String::from_utf8_lossy(&err_t.join().unwrap()).into_owned();
    (status, out, err)
}

/// A raw RESP connection: sends commands as multibulk (or raw bytes) and returns each reply's
/// exact bytes, so tests can compare the wire format with what Redis sends.
pub struct RawClient {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
}

impl RawClient {
    pub fn try_connect(port: u16) -> std::io::Result<RawClient> {
        let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))?;
        stream.set_read_timeout(Some(WAIT))?;
        stream.set_write_timeout(Some(WAIT))?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            reader: BufReader::new(stream.try_clone()?),
            stream,
        })
    }

    pub fn connect(port: u16) -> RawClient {
        RawClient::try_connect(port).expect("connect to RESP port")
    }

    pub fn encode(args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    pub fn send(&mut self, args: &[&str]) -> std::io::Result<()> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.stream.write_all(&Self::encode(&args))
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// One command, its reply's exact bytes as text.
    pub fn cmd(&mut self, args: &[&str]) -> String {
        self.send(args).expect("send");
        self.read_reply()
    }

    /// One command with binary arguments.
    pub fn cmd_bytes(&mut self, args: &[&[u8]]) -> String {
        self.stream.write_all(&Self::encode(args)).expect("send");
        self.read_reply()
    }

    pub fn read_reply(&mut self) -> String {
        let bytes = self.try_read_reply().expect("read a reply");
        String::from_utf8(bytes).expect("utf-8 reply")
    }

    /// Read one complete reply (any RESP2/RESP3 type) and return its bytes.
    pub fn try_read_reply(&mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        read_frame(&mut self.reader, &mut out)?;
        Ok(out)
    }

    /// After the server has answered, it must close the connection (EOF, or a reset).
    pub fn expect_closed(&mut self) {
        let mut buf = [0u8; 64];
        match self.reader.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!(
                "expected the connection closed, got {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected the connection closed, got error {e}"),
        }
    }
}

fn read_line(r: &mut BufReader<TcpStream>, out: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    out.extend_from_slice(&line);
    assert!(line.ends_with(b"\r\n"), "reply line not CRLF-terminated: {line:?}");
    line.truncate(line.len() - 2);
    Ok(line)
}

fn read_frame(r: &mut BufReader<TcpStream>, out: &mut Vec<u8>) -> std::io::Result<()> {
    let line = read_line(r, out)?;
    let kind = line[0];
    let rest = std::str::from_utf8(&line[1..]).unwrap_or("");
    let n = || rest.parse::<i64>().unwrap_or_else(|_| panic!("bad length in {line:?}"));
    match kind {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Ok(()),
        b'$' | b'=' | b'!' => {
            let len = n();
            if len < 0 {
                return Ok(());
            }
            let mut data = vec![0u8; len as usize + 2];
            r.read_exact(&mut data)?;
            out.extend_from_slice(&data);
            Ok(())
        }
        b'*' | b'~' | b'>' => {
            for _ in 0..n().max(0) {
                read_frame(r, out)?;
            }
            Ok(())
        }
        b'%' | b'|' => {
            for _ in 0..n().max(0) * 2 {
                read_frame(r, out)?;
            }
            Ok(())
        }
        other => panic!("unknown RESP type byte {:?} in {line:?}", other as char),
    }
}

/// Build the exact RESP2 bytes of an array of bulk strings (`None` is a nil bulk).
pub fn bulk_array(items: &[Option<&str>]) -> String {
    let mut s = format!("*{}\r\n", items.len());
    for i in items {
        s += &bulk(*i);
    }
    s
}

/// `$len\r\ndata\r\n`, or `$-1\r\n` for `None`.
pub fn bulk(item: Option<&str>) -> String {
    match item {
        Some(v) => format!("${}\r\n{v}\r\n", v.len()),
        None => "$-1\r\n".into(),
    }
}

/// `redis-cli -p PORT args...` (output in its non-TTY raw format); returns stdout + stderr, trimmed
/// of the final newline.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    redis_cli_with(port, &[], args)
}

/// `redis-cli` with extra options (`-3`, `-a pw`) before the command.
pub fn redis_cli_with(port: u16, opts: &[&str], args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.arg("-h").arg("127.0.0.1").arg("-p").arg(port.to_string());
    cmd.args(opts).args(args);
    let (status, out, err) = run_bounded(cmd, b"");
    assert!(status.success(), "redis-cli {args:?} failed: {status} {out} {err}");
    let mut s = out + &err;
    while s.ends_with('\n') {
        s.pop();
    }
    s
}

/// The HTTP response of [`http`].
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A one-shot HTTP/1.1 request over a fresh connection (`Connection: close`).
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += &format!("Content-Length: {}\r\n\r\n", body.len());
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    http_raw(port, &bytes)
}

/// Send raw bytes to the HTTP port and parse the (single) response.
pub fn http_raw(port: u16, request: &[u8]) -> HttpResponse {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), WAIT).expect("connect HTTP");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s.write_all(request).expect("send HTTP request");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header end in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse { status, headers, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

/// Poll `f` until it returns `Some`, at most [`WAIT`].
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}
