//! The running node: RESP listener, HTTP listener, maintenance, and clean shutdown.

use crate::config::Config;
use crate::http;
use crate::node::{Node, NodeError};
use crate::resp::{self, Credentials, Frame, Limits, NodeCommand, Parsed};
use bytes::{Buf, Bytes, BytesMut};
use std::sync::atomic::Ordering;
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
/// Resolves when the client closed its side of the connection (or it failed); never while it is
/// open, even with more requests waiting in the socket (those are read after the current one).
async fn peer_closed(socket: &TcpStream) {
    let mut byte = [0u8; 1];
    match socket.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

mod blocking;
mod commands;
mod pubsub;
mod scripting;
mod transaction;

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
        let laddr = socket.local_addr().unwrap_or(node.region.resp);
        let fd = {
            use std::os::fd::AsRawFd;
            i64::from(socket.as_raw_fd())
        };
        let client = node.server_state.register(peer, laddr, fd);
        tokio::spawn(async move {
            node.stats.connections_total.fetch_add(1, Ordering::Relaxed);
            node.stats.connections_current.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = Connection::new(node.clone(), client).run(socket, stop).await {
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
    /// This connection in the node's registry (`CLIENT LIST`): id, name, library, flags.
    client: crate::clients::Registered,
    resp3: bool,
    authenticated: bool,
    /// `CLIENT REPLY`: whether this command's reply (and with `SKIP` the next one's) is sent.
    replies: commands::Replies,
    /// The highest own-region sequence number this connection wrote (for `WAIT`).
    last_write_seq: u64,
    /// The last write this connection had each other region's home make (forwarded): a
    /// message it publishes reaches other regions after them too.
    home_writes: std::collections::BTreeMap<concord_core::ReplicaId, concord_core::Dot>,
    limits: Limits,
    /// Inside `MULTI`: the queued commands.
    tx: Option<transaction::Transaction>,
    /// `WATCH`ed keys.
    watched: transaction::Watched,
    /// Pub/sub: this connection's message queue, once it subscribed to something.
    subscriber: Option<pubsub::Subscriber>,
    /// Frames the current command answers before its reply (`SUBSCRIBE a b`: one per channel).
    before_reply: Vec<Frame>,
}

enum Next {
    Continue,
    Close,
}

impl Connection {
    fn new(node: Arc<Node>, client: crate::clients::Registered) -> Self {
        let limits = Limits {
            max_bulk_bytes: node.config.limits.max_value_bytes,
            ..Limits::default()
        };
        Connection {
            authenticated: node.config.password.is_none(),
            node,
            client,
            resp3: false,
            replies: commands::Replies::default(),
            last_write_seq: 0,
            home_writes: Default::default(),
            limits,
            tx: None,
            watched: Vec::new(),
            subscriber: None,
            before_reply: Vec::new(),
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
            // A blocking command after others in the pipeline: answer those first (it may wait
            // long), then run it without reading more.
            let mut blocking_next = false;
            loop {
                match resp::parse_request(&input, &self.limits) {
                    Ok(Some((args, used))) => {
                        if resp::is_blocking(&args) && (!output.is_empty() || ticket.is_some()) {
                            blocking_next = true;
                            break;
                        }
                        input.advance(used);
                        if args.is_empty() {
                            continue;
                        }
                        let (frame, t, next) = if resp::is_blocking(&args) {
                            // A blocked client may wait long: notice if it goes away meanwhile.
                            tokio::select! {
                                r = self.handle(&args) => r,
                                _ = peer_closed(&socket) => return Ok(()),
                                _ = stopped(&mut stop) => return Ok(()),
                            }
                        } else {
                            self.handle(&args).await
                        };
                        if let Some(t) = t {
                            ticket = Some(ticket.map_or(t, |old: u64| old.max(t)));
                        }
                        if self.replies.take_send() {
                            for f in self.before_reply.drain(..) {
                                resp::encode_frame(&f, self.resp3, &mut output);
                            }
                            resp::encode_frame(&frame, self.resp3, &mut output);
                        }
                        self.before_reply.clear();
                        // Killed (by another connection, or itself): no further pipelined command runs.
                        if matches!(next, Next::Close) || self.client.client.is_killed() {
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
            if blocking_next {
                continue;
            }
            if input.len() >= self.limits.max_bulk_bytes.saturating_add(64 * 1024) {
                // parse_request bounds what it waits for; this is a second line of defence.
                return Ok(());
            }
            // Like Redis, `timeout` never closes a subscriber (it only listens).
            let idle = self
                .node
                .server_state
                .idle_timeout()
                .filter(|_| self.subscriber.is_none());
            let idle_wait = async {
                match idle {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            let n = tokio::select! {
                r = socket.read_buf(&mut input) => r?,
                _ = stopped(&mut stop) => return Ok(()),
                // CLIENT KILL from another connection, or `timeout` (CONFIG SET) seconds idle.
                _ = self.client.client.killed() => return Ok(()),
                _ = idle_wait => return Ok(()),
                // A pub/sub message: write it (and whatever else is queued) at once.
                push = pubsub::next_push(&mut self.subscriber) => {
                    let Some(push) = push else {
                        // The node dropped this subscriber: its queue was full.
                        return Ok(());
                    };
                    self.encode_pushes(push, &mut output);
                    socket.write_all(&output).await?;
                    output.clear();
                    continue;
                }
            };
            if n == 0 {
                return Ok(());
            }
        }
    }

    /// Run one command: the reply frame, the commit ticket to wait for, and whether to close.
    async fn handle(&mut self, args: &[Bytes]) -> (Frame, Option<u64>, Next) {
        self.client.client.touch(args);
        let parsed = match resp::parse_command(args) {
            Ok(p) => p,
            Err(e) => {
                self.mark_failed();
                return (Frame::Error(e.to_string()), None, Next::Continue);
            }
        };
        if !self.authenticated {
            let allowed = matches!(
                &parsed,
                Parsed::Node(
                    NodeCommand::Auth(_)
                        | NodeCommand::Hello { .. }
                        | NodeCommand::Quit
                        | NodeCommand::Server(resp::cmd_server::ServerCommand::Reset)
                )
            );
            if !allowed {
                return (
                    Frame::Error("NOAUTH Authentication required.".into()),
                    None,
                    Next::Continue,
                );
            }
        }
        if let Some(refused) = self.subscribed_mode(&parsed, &args[0]) {
            return (refused, None, Next::Continue);
        }
        if self.tx.is_some() && !transaction::runs_inside_multi(&parsed) {
            return self.queue(&args[0], parsed);
        }
        self.wait_unpaused(&parsed).await;
        // SLOWLOG: execution time, without a pause; never commands that carry a password.
        let started = std::time::Instant::now();
        let secret = matches!(&parsed, Parsed::Node(NodeCommand::Auth(_) | NodeCommand::Hello { .. }));
        let result = match parsed {
            Parsed::Engine(req, shape) => self.engine_command(args, req, shape).await,
            Parsed::Node(cmd) => self.node_command(cmd).await,
            Parsed::Blocking(b) => self.blocking_command(b).await,
        };
        if !secret {
            self.node
                .server_state
                .slowlog_push(args, started.elapsed(), &self.client.client);
        }
        result
    }

    /// Remember a write made at another region's home for this connection (see `home_writes`).
    fn note_home_write(&mut self, dot: Option<concord_core::Dot>) {
        if let Some(d) = dot {
            self.home_writes.insert(concord_core::region_of(d.replica), d);
        }
    }

    /// The writes this connection's `PUBLISH` must follow in other regions besides this one's.
    fn home_writes(&self) -> Vec<concord_core::Dot> {
        self.home_writes.values().copied().collect()
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
        self.note_home_write(done.home_dot);
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
                self.client.client.state().resp = if self.resp3 { 3 } else { 2 };
                if let Some(n) = client_name {
                    self.client.client.state().name = Some(n);
                }
                let kv = |k: &str, v: Frame| (Frame::Bulk(Bytes::from(k.to_string())), v);
                let bulk = |s: &str| Frame::Bulk(Bytes::from(s.to_string()));
                ok(Frame::Map(vec![
                    kv("server", bulk("redis")),
                    kv("version", bulk(REDIS_COMPAT_VERSION)),
                    kv("proto", Frame::Integer(if self.resp3 { 3 } else { 2 })),
                    kv("id", Frame::Integer(self.client.client.id as i64)),
                    kv("mode", bulk("standalone")),
                    kv("role", bulk("master")),
                    kv("modules", Frame::Array(vec![])),
                ]))
            }
            NodeCommand::Select => ok(Frame::Simple("OK".into())),
            NodeCommand::Quit => (Frame::Simple("OK".into()), None, Next::Close),
            cmd @ (NodeCommand::Multi
            | NodeCommand::Exec
            | NodeCommand::Discard
            | NodeCommand::Watch(_)
            | NodeCommand::Unwatch) => self.transaction_command(cmd).await,
            NodeCommand::Eval(eval) => self.eval(eval).await,
            NodeCommand::Script(cmd) => self.script_command(cmd),
            NodeCommand::Command(q) => ok(resp::reply_to_frame(resp::command_reply(&q))),
            // INFO and the status read the op log (lag): off the async workers.
            NodeCommand::Info(sections) => {
                let n = self.node.clone();
                match self.node.blocking(move || info_text(&n, &sections)).await {
                    Ok(text) => ok(Frame::Bulk(Bytes::from(text))),
                    Err(e) => ok(Frame::Error(format!("ERR {e}"))),
                }
            }
            NodeCommand::Wait { regions, timeout_ms } => {
                ok(Frame::Integer(self.wait(regions, timeout_ms).await as i64))
            }
            NodeCommand::Conflicts { count } => {
                let n = count.unwrap_or(10).min(10_000);
                let node = self.node.clone();
                let list = self
                    .node
                    .blocking(move || node.store().conflicts(n))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                match list {
                    Ok(list) => ok(Frame::Array(
                        list.iter()
                            .map(|c| Frame::Bulk(Bytes::from(http::conflict_json(c, &self.node).to_string())))
                            .collect(),
                    )),
                    Err(e) => ok(Frame::Error(format!("ERR {e}"))),
                }
            }
            NodeCommand::Status => {
                let n = self.node.clone();
                match self.node.blocking(move || http::status_json(&n).to_string()).await {
                    Ok(doc) => ok(Frame::Bulk(Bytes::from(doc))),
                    Err(e) => ok(Frame::Error(format!("ERR {e}"))),
                }
            }
            NodeCommand::ClientSetName(n) => {
                self.client.client.state().name = if n.is_empty() { None } else { Some(n) };
                ok(Frame::Simple("OK".into()))
            }
            NodeCommand::ClientGetName => ok(self
                .client
                .client
                .state()
                .name
                .clone()
                .map(Frame::Bulk)
                .unwrap_or(Frame::Null)),
            NodeCommand::ClientSetInfo { attribute, value } => {
                let mut st = self.client.client.state();
                match attribute {
                    resp::ClientAttribute::LibName => st.lib_name = Some(value),
                    resp::ClientAttribute::LibVersion => st.lib_ver = Some(value),
                }
                ok(Frame::Simple("OK".into()))
            }
            NodeCommand::ClientId => ok(Frame::Integer(self.client.client.id as i64)),
            NodeCommand::ConfigGet(params) => ok(resp::reply_to_frame(resp::config_get_reply(
                &params,
                &self.node.server_state.config_values(),
            ))),
            NodeCommand::Server(cmd) => self.server_command(cmd).await,
            NodeCommand::PubSub(cmd) => self.pubsub_command(cmd),
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
    // CONFIG RESETSTAT moves these baselines; the node's counters themselves never go back.
    let base = &node.server_state.baselines;
    let since_reset = |n: &std::sync::atomic::AtomicU64, b: &std::sync::atomic::AtomicU64| {
        n.load(Ordering::Relaxed).saturating_sub(b.load(Ordering::Relaxed))
    };
    let mut out = String::new();
    if want("server") {
        let uptime = node.started.elapsed();
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let _ = write!(
            out,
            "# Server\r\nredis_version:{REDIS_COMPAT_VERSION}\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\nconcord_version:{}\r\nredis_mode:standalone\r\nos:{}\r\narch_bits:64\r\nmultiplexing_api:tokio\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nserver_time_usec:{now_us}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nhz:10\r\nconfigured_hz:10\r\nexecutable:{}\r\nconcord_region:{}\r\nconcord_cluster:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::process::id(),
            run_id(node),
            node.region.resp.port(),
            uptime.as_secs(),
            uptime.as_secs() / 86400,
            std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
            node.region.name,
            node.config.cluster,
        );
    }
    if want("clients") {
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\ncluster_connections:0\r\nmaxclients:{}\r\nblocked_clients:{}\r\ntracking_clients:0\r\nclients_in_timeout_table:0\r\n\r\n",
            st.connections_current.load(Ordering::Relaxed),
            node.config.limits.max_clients,
            node.server_state.blocked_clients.load(Ordering::Relaxed)
        );
    }
    if want("memory") {
        // No allocator accounting: the figures are the process's resident set size.
        let rss = commands::rss_bytes();
        let _ = write!(
            out,
            "# Memory\r\nused_memory:{rss}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nused_memory_peak:{rss}\r\nused_memory_peak_human:{}\r\nmaxmemory:0\r\nmaxmemory_human:0B\r\nmaxmemory_policy:noeviction\r\nmem_allocator:libc\r\n\r\n",
            human_bytes(rss),
            human_bytes(rss),
            human_bytes(rss),
        );
    }
    if want("persistence") {
        let healthy = if node.store().poison_reason().is_some() {
            "err"
        } else {
            "ok"
        };
        let _ = write!(
            out,
            "# Persistence\r\nloading:0\r\nasync_loading:0\r\nrdb_changes_since_last_save:0\r\nrdb_bgsave_in_progress:0\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:{healthy}\r\naof_enabled:1\r\naof_rewrite_in_progress:0\r\naof_last_write_status:{healthy}\r\nconcord_fsync:{}\r\nconcord_commits:{}\r\nconcord_fsyncs:{}\r\nconcord_disk_bytes:{}\r\n\r\n",
            node.server_state.last_save_unix_s(),
            format!("{:?}", node.config.storage.fsync).to_lowercase(),
            st.commits.load(Ordering::Relaxed),
            st.fsyncs.load(Ordering::Relaxed),
            node.store().disk_bytes()
        );
    }
    if want("stats") {
        let (channels, patterns, shard_channels) = {
            let reg = node.pubsub.registry();
            (reg.numchannels(), reg.numpat(), reg.numshardchannels())
        };
        let ps = &node.pubsub.stats;
        let _ = write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\npubsub_channels:{channels}\r\npubsub_patterns:{patterns}\r\npubsubshard_channels:{shard_channels}\r\nconcord_writes:{}\r\nconcord_protocol_errors:{}\r\nconcord_pubsub_published:{}\r\nconcord_pubsub_received:{}\r\nconcord_pubsub_sent_to_peers:{}\r\nconcord_pubsub_relayed:{}\r\nconcord_pubsub_peer_dropped:{}\r\nconcord_pubsub_duplicates:{}\r\nconcord_pubsub_slow_subscribers_dropped:{}\r\n\r\n",
            since_reset(&st.connections_total, &base.connections_total),
            since_reset(&st.commands, &base.commands),
            since_reset(&st.rejected_connections, &base.rejected_connections),
            since_reset(&st.writes, &base.writes),
            since_reset(&st.protocol_errors, &base.protocol_errors),
            ps.published.load(Ordering::Relaxed),
            ps.received.load(Ordering::Relaxed),
            ps.sent_to_peers.load(Ordering::Relaxed),
            ps.relayed.load(Ordering::Relaxed),
            ps.peer_dropped.load(Ordering::Relaxed),
            ps.duplicates.load(Ordering::Relaxed),
            ps.slow_subscribers_dropped.load(Ordering::Relaxed),
        );
    }
    if want("cpu") {
        // /proc/self/stat fields 14 and 15: user and system time in USER_HZ (100 on Linux) ticks.
        let ticks = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            Some((f.get(11)?.parse::<u64>().ok()?, f.get(12)?.parse::<u64>().ok()?))
        });
        let (user, sys) = ticks.unwrap_or((0, 0));
        let _ = write!(
            out,
            "# CPU\r\nused_cpu_sys:{}.{:02}\r\nused_cpu_user:{}.{:02}\r\n\r\n",
            sys / 100,
            sys % 100,
            user / 100,
            user % 100
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
    if want("cluster") {
        out += "# Cluster\r\ncluster_enabled:0\r\n\r\n";
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

/// A 40-hex-digit id for this node process (Redis's `run_id`): new on every start.
fn run_id(node: &Node) -> String {
    static RUN_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RUN_ID
        .get_or_init(|| {
            use std::hash::{BuildHasher, Hasher};
            let state = std::collections::hash_map::RandomState::new();
            let mut out = String::new();
            for part in 0..3u64 {
                let mut h = state.build_hasher();
                h.write_u64(part);
                h.write_u32(std::process::id());
                h.write_u16(node.region.resp.port());
                out += &format!("{:016x}", h.finish());
            }
            out.truncate(40);
            out
        })
        .clone()
}

/// Bytes as Redis's `bytesToHuman` writes them (`1.50M`).
fn human_bytes(n: u64) -> String {
    let units = [(1u64 << 40, "T"), (1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")];
    for (size, unit) in units {
        if n >= size {
            return format!("{:.2}{unit}", n as f64 / size as f64);
        }
    }
    format!("{n}B")
}
