//! What RESP connections share through the node: the registry of open connections (`CLIENT LIST`,
//! `CLIENT KILL`), `CLIENT PAUSE`, the run-time `CONFIG` values, `CONFIG RESETSTAT`'s baselines,
//! the slow log (`SLOWLOG`) and the time of the last write to disk (`LASTSAVE`).
//!
//! Every command reads some of this (pause, slow-log threshold, idle timeout): those reads are
//! atomics, never a lock shared by all connections.
//!
//! Must not depend on: the engine or the store (the node owns one [`ServerState`]; connections
//! read and write it).

use crate::config::{Config, RegionConfig};
use crate::resp::cmd_server::{ClientLine, KillFilter, CONFIG_PARAMS};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The mutable part of one connection's description.
#[derive(Clone, Debug, Default)]
pub struct ClientState {
    pub name: Option<Bytes>,
    pub lib_name: Option<Bytes>,
    pub lib_ver: Option<Bytes>,
    pub resp: u8,
    pub no_evict: bool,
    pub no_touch: bool,
    /// The last command run, as `CLIENT LIST`'s `cmd=` shows it (`get`, `client|list`).
    pub last_command: String,
}

/// One open connection, shared between its task and the registry.
pub struct Client {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub fd: i64,
    created: Instant,
    last_active_ms: AtomicU64,
    state: Mutex<ClientState>,
    killed: AtomicBool,
    kill: Notify,
    /// In a blocking command (`BLPOP`, …), which `CLIENT UNBLOCK` may end.
    blocked: AtomicBool,
    /// `CLIENT UNBLOCK`'s request: `Some(error)` until the blocked command takes it.
    unblock: Mutex<Option<bool>>,
    unblocked: Notify,
}

impl Client {
    pub fn state(&self) -> MutexGuard<'_, ClientState> {
        locked(&self.state)
    }

    /// Note a command: its name for `cmd=` (`name`, or `name|sub` for a container command) and
    /// the time for `idle=`. Allocates only when the name changes.
    pub fn touch(&self, args: &[Bytes]) {
        self.last_active_ms
            .store(self.created.elapsed().as_millis() as u64, Ordering::Relaxed);
        let name = &args[0][..args[0].len().min(64)];
        let sub = args
            .get(1)
            .filter(|_| CONTAINERS.iter().any(|c| name.eq_ignore_ascii_case(c.as_bytes())))
            .map(|s| &s[..s.len().min(32)]);
        let mut st = self.state();
        let same = match sub {
            None => st.last_command.as_bytes().eq_ignore_ascii_case(name),
            Some(sub) => st.last_command.split_once('|').is_some_and(|(n, s)| {
                n.as_bytes().eq_ignore_ascii_case(name) && s.as_bytes().eq_ignore_ascii_case(sub)
            }),
        };
        if !same {
            let mut text = String::from_utf8_lossy(name).to_ascii_lowercase();
            if let Some(sub) = sub {
                text.push('|');
                text.push_str(&String::from_utf8_lossy(sub).to_ascii_lowercase());
            }
            st.last_command = text;
        }
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// Resolves once `CLIENT KILL` chose this connection.
    pub async fn killed(&self) {
        loop {
            let notified = self.kill.notified();
            if self.is_killed() {
                return;
            }
            notified.await;
        }
    }

    /// Mark the connection as in (or out of) a blocking command; leaving clears any unblock.
    pub fn set_blocked(&self, blocked: bool) {
        let mut pending = locked(&self.unblock);
        *pending = None;
        self.blocked.store(blocked, Ordering::Release);
    }

    /// `CLIENT UNBLOCK`: whether the connection was blocked (it then ends its wait).
    pub fn unblock(&self, error: bool) -> bool {
        let mut pending = locked(&self.unblock);
        if !self.blocked.load(Ordering::Acquire) || pending.is_some() {
            return false;
        }
        *pending = Some(error);
        self.unblocked.notify_waiters();
        true
    }

    /// Resolves when `CLIENT UNBLOCK` ends this connection's blocking command: with `ERROR`
    /// (true) or as a timeout (false).
    pub async fn unblocked(&self) -> bool {
        loop {
            let notified = self.unblocked.notified();
            if let Some(error) = *locked(&self.unblock) {
                return error;
            }
            notified.await;
        }
    }

    fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.kill.notify_waiters();
    }

    fn age(&self) -> Duration {
        self.created.elapsed()
    }

    pub fn line(&self) -> ClientLine {
        let st = self.state().clone();
        let text = |b: &Option<Bytes>| {
            b.as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let age = self.age();
        let idle_ms = (age.as_millis() as u64).saturating_sub(self.last_active_ms.load(Ordering::Relaxed));
        let mut flags = String::new();
        if st.no_evict {
            flags.push('e');
        }
        if st.no_touch {
            flags.push('T');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        ClientLine {
            id: self.id,
            addr: self.addr.to_string(),
            laddr: self.laddr.to_string(),
            fd: self.fd,
            name: text(&st.name),
            age_s: age.as_secs(),
            idle_s: idle_ms / 1000,
            flags,
            last_command: if st.last_command.is_empty() {
                "NULL".into()
            } else {
                st.last_command.clone()
            },
            resp: st.resp,
            lib_name: text(&st.lib_name),
            lib_ver: text(&st.lib_ver),
            // Filled in by the connection commands, which see the pub/sub registry.
            sub: 0,
            psub: 0,
            ssub: 0,
        }
    }
}

/// Commands whose `CLIENT LIST` name includes the subcommand (`client|list`).
const CONTAINERS: &[&str] = &["client", "config", "memory", "latency", "command", "object", "slowlog"];

/// One `SLOWLOG` entry.
#[derive(Clone, Debug)]
pub struct SlowEntry {
    pub id: u64,
    pub unix_s: u64,
    pub duration_us: u64,
    /// At most 32 arguments (the last then says how many more), each at most 128 bytes.
    pub args: Vec<Bytes>,
    pub addr: String,
    pub name: Bytes,
}

/// Counters `CONFIG RESETSTAT` zeroes as `INFO` shows them. The node's own counters stay
/// monotonic (Prometheus counters must not go back); INFO shows the difference from these.
#[derive(Default)]
pub struct StatBaselines {
    pub commands: AtomicU64,
    pub connections_total: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub writes: AtomicU64,
}

/// `CLIENT PAUSE`: until when, and whether reads may still run.
#[derive(Clone, Copy, Debug)]
struct Pause {
    until: Instant,
    writes_only: bool,
}

/// The node's RESP-facing state shared by every connection.
pub struct ServerState {
    clients: Mutex<BTreeMap<u64, Arc<Client>>>,
    next_id: AtomicU64,
    config: Mutex<BTreeMap<&'static str, String>>,
    pause: Mutex<Option<Pause>>,
    /// Whether a pause may be in force (the lock above is taken only then).
    pause_set: AtomicBool,
    unpaused: Notify,
    /// `timeout`, `slowlog-log-slower-than`, `slowlog-max-len` as the hot paths read them.
    idle_timeout_s: AtomicU64,
    slowlog_threshold_us: AtomicI64,
    slowlog_max_len: AtomicU64,
    slowlog: Mutex<VecDeque<SlowEntry>>,
    slowlog_next_id: AtomicU64,
    pub baselines: StatBaselines,
    /// Unix seconds of the last group commit or fsync (`LASTSAVE`); the start time before any.
    last_save_unix_s: AtomicU64,
    /// Connections waiting in a blocking command (`BLPOP`, …): `INFO clients` `blocked_clients`.
    pub blocked_clients: AtomicU64,
}

impl ServerState {
    pub fn new(config: &Config, region: &RegionConfig) -> ServerState {
        let values = CONFIG_PARAMS
            .iter()
            .map(|p| {
                let value = match (p.name, p.default) {
                    (_, Some(v)) => v.to_string(),
                    ("bind", None) => region.resp.ip().to_string(),
                    ("port", None) => region.resp.port().to_string(),
                    ("dir", None) => region.data_dir.display().to_string(),
                    ("maxclients", None) => config.limits.max_clients.to_string(),
                    ("proto-max-bulk-len", None) => config.limits.max_value_bytes.to_string(),
                    (name, None) => unreachable!("CONFIG parameter {name} has no value"),
                };
                (p.name, value)
            })
            .collect();
        let state = ServerState {
            clients: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            config: Mutex::new(BTreeMap::new()),
            pause: Mutex::new(None),
            pause_set: AtomicBool::new(false),
            unpaused: Notify::new(),
            idle_timeout_s: AtomicU64::new(0),
            slowlog_threshold_us: AtomicI64::new(0),
            slowlog_max_len: AtomicU64::new(0),
            slowlog: Mutex::new(VecDeque::new()),
            slowlog_next_id: AtomicU64::new(0),
            baselines: StatBaselines::default(),
            last_save_unix_s: AtomicU64::new(unix_s()),
            blocked_clients: AtomicU64::new(0),
        };
        state.set_config(values);
        state
    }

    /// Register a new connection; it is removed when the returned guard drops.
    pub fn register(self: &Arc<Self>, addr: SocketAddr, laddr: SocketAddr, fd: i64) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let client = Arc::new(Client {
            id,
            addr,
            laddr,
            fd,
            created: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            state: Mutex::new(ClientState {
                resp: 2,
                ..ClientState::default()
            }),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
            blocked: AtomicBool::new(false),
            unblock: Mutex::new(None),
            unblocked: Notify::new(),
        });
        locked(&self.clients).insert(id, client.clone());
        Registered {
            client,
            server: self.clone(),
        }
    }

    /// Every open connection, by id.
    pub fn clients(&self) -> Vec<Arc<Client>> {
        locked(&self.clients).values().cloned().collect()
    }

    /// Close the connections `filter` selects (`me` is the caller; `kind_of` tells a connection's
    /// type: normal, or pub/sub while subscribed); how many were chosen.
    pub fn kill(
        &self,
        filter: &KillFilter,
        me: u64,
        kind_of: impl Fn(&Client) -> crate::resp::cmd_server::ClientKind,
    ) -> usize {
        let eq = |want: &Option<Bytes>, have: String| want.as_ref().is_none_or(|w| w.as_ref() == have.as_bytes());
        let chosen: Vec<Arc<Client>> = self
            .clients()
            .into_iter()
            .filter(|c| {
                eq(&filter.addr, c.addr.to_string())
                    && eq(&filter.laddr, c.laddr.to_string())
                    && filter.id.is_none_or(|id| id == c.id)
                    && filter.kind.is_none_or(|k| k == kind_of(c))
                    // Every connection is of the `default` user.
                    && filter.user.as_ref().is_none_or(|u| u.as_ref() == b"default")
                    && filter.max_age_s.is_none_or(|age| c.age().as_secs() >= age)
                    && !(filter.skip_me && c.id == me)
            })
            .collect();
        for c in &chosen {
            c.kill();
        }
        chosen.len()
    }

    /// The current `CONFIG` values, in name order.
    pub fn config_values(&self) -> Vec<(&'static str, String)> {
        locked(&self.config).iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    /// Store checked values (see `check_config_set`), and mirror the ones the hot paths read.
    pub fn set_config(&self, values: Vec<(&'static str, String)>) {
        let mut config = locked(&self.config);
        for (k, v) in values {
            let n = v.parse::<i64>().ok();
            match (k, n) {
                ("timeout", Some(n)) => self.idle_timeout_s.store(n.max(0) as u64, Ordering::Relaxed),
                ("slowlog-log-slower-than", Some(n)) => self.slowlog_threshold_us.store(n, Ordering::Relaxed),
                ("slowlog-max-len", Some(n)) => {
                    self.slowlog_max_len.store(n.max(0) as u64, Ordering::Relaxed);
                    let mut log = locked(&self.slowlog);
                    log.truncate(n.max(0) as usize);
                }
                _ => {}
            }
            config.insert(k, v);
        }
    }

    /// `timeout`: close a connection idle this long (`None`: never).
    pub fn idle_timeout(&self) -> Option<Duration> {
        let secs = self.idle_timeout_s.load(Ordering::Relaxed);
        (secs > 0).then(|| Duration::from_secs(secs))
    }

    /// Log a command that took `duration` if `slowlog-log-slower-than` says so (Redis's
    /// `slowlogPushEntryIfNeeded`; negative disables the log).
    pub fn slowlog_push(&self, args: &[Bytes], duration: Duration, client: &Client) {
        let threshold = self.slowlog_threshold_us.load(Ordering::Relaxed);
        let duration_us = duration.as_micros() as u64;
        if threshold < 0 || duration_us < threshold as u64 {
            return;
        }
        let max_len = self.slowlog_max_len.load(Ordering::Relaxed) as usize;
        if max_len == 0 {
            return;
        }
        const MAX_ARGS: usize = 32;
        const MAX_BYTES: usize = 128;
        let shown = args.len().min(MAX_ARGS);
        let mut logged: Vec<Bytes> = Vec::with_capacity(shown);
        for (i, a) in args.iter().take(shown).enumerate() {
            if i == MAX_ARGS - 1 && args.len() > MAX_ARGS {
                logged.push(Bytes::from(format!(
                    "... ({} more arguments)",
                    args.len() - MAX_ARGS + 1
                )));
            } else if a.len() > MAX_BYTES {
                let mut t = a[..MAX_BYTES].to_vec();
                t.extend_from_slice(format!("... ({} more bytes)", a.len() - MAX_BYTES).as_bytes());
                logged.push(Bytes::from(t));
            } else {
                logged.push(a.clone());
            }
        }
        let entry = SlowEntry {
            id: self.slowlog_next_id.fetch_add(1, Ordering::Relaxed),
            unix_s: unix_s(),
            duration_us,
            args: logged,
            addr: client.addr.to_string(),
            name: client.state().name.clone().unwrap_or_default(),
        };
        let mut log = locked(&self.slowlog);
        log.push_front(entry);
        log.truncate(max_len);
    }

    /// The newest `count` entries (all for `None`), newest first.
    pub fn slowlog(&self, count: Option<usize>) -> Vec<SlowEntry> {
        let log = locked(&self.slowlog);
        log.iter().take(count.unwrap_or(usize::MAX)).cloned().collect()
    }

    pub fn slowlog_len(&self) -> usize {
        locked(&self.slowlog).len()
    }

    pub fn slowlog_reset(&self) {
        locked(&self.slowlog).clear();
    }

    pub fn pause(&self, timeout: Duration, writes_only: bool) {
        *locked(&self.pause) = Some(Pause {
            until: Instant::now() + timeout,
            writes_only,
        });
        self.pause_set.store(true, Ordering::Release);
    }

    pub fn unpause(&self) {
        *locked(&self.pause) = None;
        self.pause_set.store(false, Ordering::Release);
        self.unpaused.notify_waiters();
    }

    /// Wait while `CLIENT PAUSE` holds commands of this kind.
    pub async fn wait_unpaused(&self, is_write: bool) {
        if !self.pause_set.load(Ordering::Acquire) {
            return;
        }
        loop {
            let notified = self.unpaused.notified();
            let until = match *locked(&self.pause) {
                Some(p) if (is_write || !p.writes_only) && p.until > Instant::now() => p.until,
                _ => return,
            };
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => {}
                _ = notified => {}
            }
        }
    }

    pub fn note_saved(&self) {
        self.last_save_unix_s.store(unix_s(), Ordering::Relaxed);
    }

    pub fn last_save_unix_s(&self) -> u64 {
        self.last_save_unix_s.load(Ordering::Relaxed)
    }
}

/// A registered connection; dropping it removes the connection from the registry.
pub struct Registered {
    pub client: Arc<Client>,
    server: Arc<ServerState>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        locked(&self.server.clients).remove(&self.client.id);
    }
}
