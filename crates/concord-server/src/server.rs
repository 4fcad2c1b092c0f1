//! The running node: RESP listener, HTTP listener, maintenance, and clean shutdown.

use crate::config::Config;
use crate::http;
use crate::node::{Node, NodeError};
use crate::resp::{self, Credentials, Frame, Limits, NodeCommand, Parsed};
use bytes::{Buf, Bytes, BytesMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// Run a node until SIGTERM / SIGINT: then stop accepting, flush with an fsync, return.
pub async fn serve(config: Config, region: String) -> anyhow_like::Result<()> {
    let node = Node::open(config, &region).map_err(|e| {
        let msg = e.to_string();
        anyhow_like::Error(msg.strip_prefix("ERR ").unwrap_or(&msg).to_string())
    })?;
    let resp_listener = TcpListener::bind(node.region.resp)
        .await
        .map_err(|e| anyhow_like::Error(format!("cannot listen for RESP on {}: {e}", node.region.resp)))?;
    let http_listener = TcpListener::bind(node.region.http)
        .await
        .map_err(|e| anyhow_like::Error(format!("cannot listen for HTTP on {}: {e}", node.region.http)))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    crate::replication::start(node.clone(), stop_rx.clone())
        .await
        .map_err(|e| anyhow_like::Error(format!("cannot listen for peers on {}: {e}", node.region.peer)))?;
    // Anti-entropy comparisons with the peers, every `[anti_entropy] interval_ms` (crate::aae).
    tokio::spawn(crate::aae::run(node.clone(), stop_rx.clone()));
    tracing::info!(region = %node.region.name, resp = %node.region.resp, http = %node.region.http, "serving");

    let resp_task = tokio::spawn(run_resp(node.clone(), resp_listener, stop_rx.clone()));
    let mut http_stop = stop_rx.clone();
    let app = http::router(node.clone());
    let http_task = tokio::spawn(async move {
        let _ = axum::serve(http_listener, app)
            .with_graceful_shutdown(async move {
                stopped(&mut http_stop).await;
            })
            .await;
    });
    let maint_task = tokio::spawn(crate::node::run_maintenance(node.clone(), stop_rx.clone()));

    wait_for_signal().await;
    tracing::info!("shutting down: flushing to disk");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = resp_task.await;
        let _ = http_task.await;
        let _ = maint_task.await;
    })
    .await;
    node.flush().map_err(|e| anyhow_like::Error(e.to_string()))?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// A minimal error type so this library needs no `anyhow`.
pub mod anyhow_like {
    #[derive(Debug)]
    pub struct Error(pub String);
    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Error {}
    pub type Result<T> = std::result::Result<T, Error>;
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Resolves once the stop flag is set (the guard `wait_for` returns is dropped inside, so the
/// future stays `Send`).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

static CLIENT_IDS: AtomicU64 = AtomicU64::new(1);

/// Accept RESP clients, at most `limits.max_clients` at once.
pub async fn run_resp(node: Arc<Node>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(node.config.limits.max_clients));
    loop {
        let (mut socket, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => return,
        };
        let _ = socket.set_nodelay(true);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            node.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
            let _ = socket.write_all(b"-ERR max number of clients reached\r\n").await;
            continue;
        };
        let node = node.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            node.stats.connections_total.fetch_add(1, Ordering::Relaxed);
            node.stats.connections_current.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = Connection::new(node.clone()).run(socket, stop).await {
                tracing::debug!(%peer, error = %e, "connection closed with error");
            }
            node.stats.connections_current.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// One client connection's state.
struct Connection {
    node: Arc<Node>,
    id: u64,
    resp3: bool,
    authenticated: bool,
    name: Option<Bytes>,
    /// The highest own-region sequence number this connection wrote (for `WAIT`).
    last_write_seq: u64,
    limits: Limits,
}

enum Next {
    Continue,
    Close,
}

impl Connection {
    fn new(node: Arc<Node>) -> Self {
        let limits = Limits {
            max_bulk_bytes: node.config.limits.max_value_bytes,
            ..Limits::default()
        };
        Connection {
            authenticated: node.config.password.is_none(),
            node,
            id: CLIENT_IDS.fetch_add(1, Ordering::Relaxed),
            resp3: false,
            name: None,
            last_write_seq: 0,
            limits,
        }
    }

    async fn run(mut self, mut socket: TcpStream, mut stop: watch::Receiver<bool>) -> std::io::Result<()> {
        let mut input = BytesMut::with_capacity(16 * 1024);
        let mut output = BytesMut::with_capacity(16 * 1024);
        loop {
            // Answer every complete request in the buffer (pipelining), then flush once, after the
            // writes among them are durable.
            let mut ticket: Option<u64> = None;
            let mut close = false;
            loop {
                match resp::parse_request(&input, &self.limits) {
                    Ok(Some((args, used))) => {
                        input.advance(used);
                        if args.is_empty() {
                            continue;
                        }
                        let (frame, t, next) = self.handle(&args).await;
                        if let Some(t) = t {
                            ticket = Some(ticket.map_or(t, |old: u64| old.max(t)));
                        }
                        resp::encode_frame(&frame, self.resp3, &mut output);
                        if let Next::Close = next {
                            close = true;
                            break;
                        }
                        if output.len() > 1024 * 1024 {
                            break; // flush large outputs early
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.node.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                        resp::encode_frame(&e.to_frame(), self.resp3, &mut output);
                        close = true;
                        break;
                    }
                }
            }
            if let Some(t) = ticket {
                if let Err(e) = self.node.wait_acknowledgeable(t).await {
                    // The writes' replies must not go out as successes.
                    output.clear();
                    let msg = Frame::Error(e.to_string());
                    resp::encode_frame(&msg, self.resp3, &mut output);
                    close = true;
                }
            }
            if !output.is_empty() {
                socket.write_all(&output).await?;
                output.clear();
            }
            if close {
                return Ok(());
            }
            if input.len() >= self.limits.max_bulk_bytes.saturating_add(64 * 1024) {
                // parse_request bounds what it waits for; this is a second line of defence.
                return Ok(());
            }
            let n = tokio::select! {
                r = socket.read_buf(&mut input) => r?,
                _ = stopped(&mut stop) => return Ok(()),
            };
            if n == 0 {
                return Ok(());
            }
        }
    }

    /// Run one command: the reply frame, the commit ticket to wait for, and whether to close.
    async fn handle(&mut self, args: &[Bytes]) -> (Frame, Option<u64>, Next) {
        let parsed = match resp::parse_command(args) {
            Ok(p) => p,
            Err(e) => return (Frame::Error(e.to_string()), None, Next::Continue),
        };
        if !self.authenticated {
            let allowed = matches!(
                &parsed,
                Parsed::Node(NodeCommand::Auth(_) | NodeCommand::Hello { .. } | NodeCommand::Quit)
            );
            if !allowed {
                return (
                    Frame::Error("NOAUTH Authentication required.".into()),
                    None,
                    Next::Continue,
                );
            }
        }
        match parsed {
            Parsed::Engine(req, shape) => self.engine_command(args, req, shape).await,
            Parsed::Node(cmd) => self.node_command(cmd).await,
        }
    }

    /// A data command: at its home region if it has one elsewhere, else here; with the policy's
    /// ack level.
    async fn engine_command(
        &mut self,
        args: &[Bytes],
        req: concord_core::Request,
        shape: resp::ReplyShape,
    ) -> (Frame, Option<u64>, Next) {
        let err = |e: NodeError| match e {
            NodeError::Command(e) => (resp::error_frame(&e), None, Next::Continue),
            e => (Frame::Error(e.to_string()), None, Next::Continue),
        };
        let done = match self.node.client_command(args, req, None).await {
            Ok(d) => d,
            Err(e) => return err(e),
        };
        if let Some(seq) = done.own_seq {
            self.last_write_seq = seq;
        }
        let reply = if done.shaped {
            done.reply
        } else {
            resp::shape_reply(shape, done.reply)
        };
        (resp::reply_to_frame(reply), done.ticket, Next::Continue)
    }

    fn check_password(&self, c: &Credentials) -> bool {
        let Some(pw) = &self.node.config.password else {
            return false;
        };
        let user_ok = c.username.as_ref().is_none_or(|u| u.as_ref() == b"default");
        // Constant-time comparison: no early exit on the first differing byte.
        let a = pw.as_bytes();
        let b = c.password.as_ref();
        let same = a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        user_ok && same
    }

    async fn node_command(&mut self, cmd: NodeCommand) -> (Frame, Option<u64>, Next) {
        let ok = |f: Frame| (f, None, Next::Continue);
        match cmd {
            NodeCommand::Ping(None) => ok(Frame::Simple("PONG".into())),
            NodeCommand::Ping(Some(m)) | NodeCommand::Echo(m) => ok(Frame::Bulk(m)),
            NodeCommand::Auth(c) => {
                if self.node.config.password.is_none() {
                    return ok(Frame::Error(
                        "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?".into(),
                    ));
                }
                if self.check_password(&c) {
                    self.authenticated = true;
                    ok(Frame::Simple("OK".into()))
                } else {
                    ok(Frame::Error(
                        "WRONGPASS invalid username-password pair or user is disabled.".into(),
                    ))
                }
            }
            NodeCommand::Hello {
                protocol,
                auth,
                client_name,
            } => {
                if let Some(c) = auth {
                    if self.node.config.password.is_some() && !self.check_password(&c) {
                        return ok(Frame::Error(
                            "WRONGPASS invalid username-password pair or user is disabled.".into(),
                        ));
                    }
                    self.authenticated = true;
                }
                if !self.authenticated {
                    return ok(Frame::Error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into()));
                }
                if let Some(p) = protocol {
                    self.resp3 = p == 3;
                }
                if let Some(n) = client_name {
                    self.name = Some(n);
                }
                let kv = |k: &str, v: Frame| (Frame::Bulk(Bytes::from(k.to_string())), v);
                let bulk = |s: &str| Frame::Bulk(Bytes::from(s.to_string()));
                ok(Frame::Map(vec![
                    kv("server", bulk("redis")),
                    kv("version", bulk(REDIS_COMPAT_VERSION)),
                    kv("proto", Frame::Integer(if self.resp3 { 3 } else { 2 })),
                    kv("id", Frame::Integer(self.id as i64)),
                    kv("mode", bulk("standalone")),
                    kv("role", bulk("master")),
                    kv("modules", Frame::Array(vec![])),
                ]))
            }
            NodeCommand::Select => ok(Frame::Simple("OK".into())),
            NodeCommand::Quit => (Frame::Simple("OK".into()), None, Next::Close),
            NodeCommand::Command(q) => ok(resp::reply_to_frame(resp::command_reply(&q))),
            NodeCommand::Info(sections) => ok(Frame::Bulk(Bytes::from(info_text(&self.node, &sections)))),
            NodeCommand::Wait { regions, timeout_ms } => {
                ok(Frame::Integer(self.wait(regions, timeout_ms).await as i64))
            }
            NodeCommand::Conflicts { count } => {
                let n = count.unwrap_or(10).min(10_000);
                match self.node.store().conflicts(n) {
                    Ok(list) => ok(Frame::Array(
                        list.iter()
                            .map(|c| Frame::Bulk(Bytes::from(http::conflict_json(c, &self.node).to_string())))
                            .collect(),
                    )),
                    Err(e) => ok(Frame::Error(format!("ERR {e}"))),
                }
            }
            NodeCommand::Status => ok(Frame::Bulk(Bytes::from(http::status_json(&self.node).to_string()))),
            NodeCommand::ClientSetName(n) => {
                self.name = if n.is_empty() { None } else { Some(n) };
                ok(Frame::Simple("OK".into()))
            }
            NodeCommand::ClientGetName => ok(self.name.clone().map(Frame::Bulk).unwrap_or(Frame::Null)),
            NodeCommand::ClientSetInfo { .. } => ok(Frame::Simple("OK".into())),
            NodeCommand::ClientId => ok(Frame::Integer(self.id as i64)),
            NodeCommand::ConfigGet(params) => ok(resp::reply_to_frame(resp::config_get_reply(&params))),
        }
    }

    /// `WAIT`: how many other regions have applied this connection's last write, waiting up to
    /// `timeout_ms` (0 = no limit) for `want` of them. The write is never undone.
    async fn wait(&self, want: u64, timeout_ms: u64) -> usize {
        let seq = self.last_write_seq;
        if seq == 0 {
            // No write on this connection: like Redis, count the replicas that are connected.
            return self
                .node
                .links_snapshot()
                .values()
                .filter(|l| l.upstream_connected || l.downstream_connected)
                .count();
        }
        let deadline = (timeout_ms > 0).then(|| tokio::time::Instant::now() + Duration::from_millis(timeout_ms));
        loop {
            let have = self.node.regions_with(seq);
            if have as u64 >= want || deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                return have;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// The Redis version Concord reports, for client libraries that check features by version.
pub const REDIS_COMPAT_VERSION: &str = "7.2.0";

/// `INFO` in Redis's section format.
pub fn info_text(node: &Node, sections: &[String]) -> String {
    use std::fmt::Write;
    let all = sections.is_empty()
        || sections
            .iter()
            .any(|s| s == "all" || s == "everything" || s == "default");
    let want = |s: &str| all || sections.iter().any(|x| x == s);
    let st = &node.stats;
    let mut out = String::new();
    if want("server") {
        let _ = write!(
            out,
            "# Server\r\nredis_version:{REDIS_COMPAT_VERSION}\r\nconcord_version:{}\r\nredis_mode:standalone\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nconcord_region:{}\r\nconcord_cluster:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::process::id(),
            node.region.resp.port(),
            node.started.elapsed().as_secs(),
            node.started.elapsed().as_secs() / 86400,
            node.region.name,
            node.config.cluster,
        );
    }
    if want("clients") {
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n\r\n",
            st.connections_current.load(Ordering::Relaxed),
            node.config.limits.max_clients
        );
    }
    if want("persistence") {
        let _ = write!(
            out,
            "# Persistence\r\nloading:0\r\naof_enabled:1\r\nconcord_fsync:{}\r\nconcord_commits:{}\r\nconcord_fsyncs:{}\r\nconcord_disk_bytes:{}\r\n\r\n",
            format!("{:?}", node.config.storage.fsync).to_lowercase(),
            st.commits.load(Ordering::Relaxed),
            st.fsyncs.load(Ordering::Relaxed),
            node.store().disk_bytes()
        );
    }
    if want("stats") {
        let _ = write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\nconcord_writes:{}\r\nconcord_protocol_errors:{}\r\n\r\n",
            st.connections_total.load(Ordering::Relaxed),
            st.commands.load(Ordering::Relaxed),
            st.rejected_connections.load(Ordering::Relaxed),
            st.writes.load(Ordering::Relaxed),
            st.protocol_errors.load(Ordering::Relaxed),
        );
    }
    if want("replication") {
        let status = http::status_json(node);
        let _ = write!(
            out,
            "# Replication\r\nrole:master\r\nconnected_slaves:0\r\nconcord_region:{}\r\nconcord_applied:{}\r\n",
            node.region.name, status["applied"]
        );
        if let Some(peers) = status["peers"].as_array() {
            let _ = writeln!(out, "concord_peers:{}\r", peers.len());
            for (i, p) in peers.iter().enumerate() {
                let _ = write!(
                    out,
                    "concord_peer{i}:region={},connected={},lag_ops={},lag_ms={}\r\n",
                    p["region"].as_str().unwrap_or(""),
                    p["connected"],
                    p["lag_ops"],
                    p["lag_ms"]
                );
            }
        }
        if let Some(c) = status["conflicts_by_policy"].as_object() {
            for (policy, n) in c {
                let _ = write!(out, "concord_conflicts_{policy}:{n}\r\n");
            }
        }
        out += "\r\n";
    }
    if want("keyspace") {
        let (keys, expires) = node.with_engine(|e| {
            let now = node.now_ms();
            let live: Vec<_> = e.live_keys(now).cloned().collect();
            let expires = live
                .iter()
                .filter(|k| e.key_state(k).is_some_and(|s| s.expiry_ms().is_some()))
                .count();
            (live.len(), expires)
        });
        out += "# Keyspace\r\n";
        if keys > 0 {
            let _ = write!(out, "db0:keys={keys},expires={expires},avg_ttl=0\r\n");
        }
    }
    out
}
