//! Executing the server and connection commands of [`crate::resp::cmd_server`] on a connection:
//! `CLIENT LIST|INFO|KILL|REPLY|PAUSE…`, `CONFIG SET|RESETSTAT`, `TIME LASTSAVE SAVE BGSAVE RESET
//! ROLE MEMORY LATENCY LOLWUT`. What each answers, and where Concord differs from Redis, is in
//! `docs/operations.md` (Redis protocol).

use super::{Connection, Next, REDIS_COMPAT_VERSION};
use crate::resp::cmd_server::{ReplyMode, ServerCommand};
use crate::resp::{Frame, Parsed};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// `CLIENT REPLY` state: which replies the connection sends.
#[derive(Debug, Default)]
pub(super) struct Replies {
    /// `CLIENT REPLY OFF` is in force.
    off: bool,
    /// The reply of the command just run is not sent (`CLIENT REPLY SKIP|OFF` themselves, and
    /// the command after a `SKIP`).
    skip_this: bool,
    /// After this command, skip the next one's reply too (`CLIENT REPLY SKIP`).
    skip_next: bool,
}

impl Replies {
    /// Whether to send the reply of the command just run; moves `SKIP` on by one command.
    pub(super) fn take_send(&mut self) -> bool {
        let send = !(self.off || self.skip_this);
        self.skip_this = std::mem::take(&mut self.skip_next);
        send
    }

    fn set(&mut self, mode: ReplyMode) {
        match mode {
            ReplyMode::On => *self = Replies::default(),
            ReplyMode::Off => {
                self.off = true;
                self.skip_this = true;
            }
            ReplyMode::Skip => {
                self.skip_this = true;
                self.skip_next = true;
            }
        }
    }
}

fn bulk(s: impl Into<String>) -> Frame {
    Frame::Bulk(Bytes::from(s.into()))
}

/// Milliseconds since the Unix epoch from the system clock (TIME, LASTSAVE and MEMORY's liveness
/// check are wall-clock questions of this node).
fn wall_ms() -> u64 {
    unix_now().as_millis() as u64
}

fn unix_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Resident set size of this process in bytes (Linux `/proc/self/statm`; 0 elsewhere).
pub(crate) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

impl Connection {
    /// `CLIENT PAUSE` holds data commands (only writes with `WRITE`) until it ends; connection
    /// and server commands still run, so `CLIENT UNPAUSE` can end it.
    pub(super) async fn wait_unpaused(&self, parsed: &Parsed) {
        match parsed {
            Parsed::Engine(req, _) => self.node.server_state.wait_unpaused(req.is_write()).await,
            Parsed::Blocking(b) => self.node.server_state.wait_unpaused(b.request.is_write()).await,
            // A script may write unless it is `EVAL_RO`/`EVALSHA_RO`.
            Parsed::Node(crate::resp::NodeCommand::Eval(e)) => self.node.server_state.wait_unpaused(!e.read_only).await,
            Parsed::Node(_) => {}
        }
    }

    pub(super) async fn server_command(&mut self, cmd: ServerCommand) -> (Frame, Option<u64>, Next) {
        let ok = |f: Frame| (f, None, Next::Continue);
        let state = self.node.server_state.clone();
        let me = self.client.client.clone();
        match cmd {
            ServerCommand::ClientList { kind, ids } => {
                // Connections are normal ones or, subscribed to something, pub/sub ones (Redis's
                // `getClientType`); no replicas or masters here.
                let mut text = String::new();
                for c in state.clients() {
                    let line = self.client_line(&c);
                    let is = self.client_kind(&c);
                    if kind.is_none_or(|k| k == is) && (ids.is_empty() || ids.contains(&c.id)) {
                        text += &line.render();
                        text.push('\n');
                    }
                }
                ok(bulk(text))
            }
            ServerCommand::ClientInfo => ok(bulk(self.client_line(&me).render() + "\n")),
            ServerCommand::ClientKill(filter) => {
                let n = state.kill(&filter, me.id, |c| self.client_kind(c));
                if filter.legacy {
                    if n == 0 {
                        return ok(Frame::Error("ERR No such client".into()));
                    }
                    return ok(Frame::Simple("OK".into()));
                }
                ok(Frame::Integer(n as i64))
            }
            ServerCommand::ClientNoEvict(on) => {
                me.state().no_evict = on;
                ok(Frame::Simple("OK".into()))
            }
            ServerCommand::ClientNoTouch(on) => {
                me.state().no_touch = on;
                ok(Frame::Simple("OK".into()))
            }
            ServerCommand::ClientReply(mode) => {
                self.replies.set(mode);
                ok(Frame::Simple("OK".into()))
            }
            ServerCommand::ClientPause {
                timeout_ms,
                writes_only,
            } => {
                state.pause(Duration::from_millis(timeout_ms), writes_only);
                ok(Frame::Simple("OK".into()))
            }
            ServerCommand::ClientUnpause => {
                state.unpause();
                ok(Frame::Simple("OK".into()))
            }
            ServerCommand::ClientGetRedir => ok(Frame::Integer(-1)),
            ServerCommand::ClientUnblock { id, error } => {
                let unblocked = state
                    .clients()
                    .into_iter()
                    .find(|c| c.id as i64 == id)
                    .is_some_and(|c| c.unblock(error));
                ok(Frame::Integer(unblocked as i64))
            }
            ServerCommand::ClientTrackingInfo => ok(Frame::Map(vec![
                (bulk("flags"), Frame::Set(vec![bulk("off")])),
                (bulk("redirect"), Frame::Integer(-1)),
                (bulk("prefixes"), Frame::Array(vec![])),
            ])),
            ServerCommand::ConfigSet(pairs) => match crate::resp::cmd_server::check_config_set(&pairs) {
                Ok(values) => {
                    state.set_config(values);
                    ok(Frame::Simple("OK".into()))
                }
                Err(e) => ok(Frame::Error(e)),
            },
            ServerCommand::ConfigResetStat => {
                let st = &self.node.stats;
                let b = &state.baselines;
                b.commands.store(st.commands.load(Ordering::Relaxed), Ordering::Relaxed);
                b.connections_total
                    .store(st.connections_total.load(Ordering::Relaxed), Ordering::Relaxed);
                b.rejected_connections
                    .store(st.rejected_connections.load(Ordering::Relaxed), Ordering::Relaxed);
                b.protocol_errors
                    .store(st.protocol_errors.load(Ordering::Relaxed), Ordering::Relaxed);
                b.writes.store(st.writes.load(Ordering::Relaxed), Ordering::Relaxed);
                ok(Frame::Simple("OK".into()))
            }
            ServerCommand::Time => {
                let now = unix_now();
                ok(Frame::Array(vec![
                    bulk(now.as_secs().to_string()),
                    bulk(now.subsec_micros().to_string()),
                ]))
            }
            ServerCommand::LastSave => ok(Frame::Integer(state.last_save_unix_s() as i64)),
            ServerCommand::Save { background } => {
                // Every write is already in the store; this forces an fsync of all of it.
                let node = self.node.clone();
                let flushed = tokio::task::spawn_blocking(move || node.flush()).await;
                match flushed {
                    Ok(Ok(())) => {
                        state.note_saved();
                        ok(if background {
                            Frame::Simple("Background saving started".into())
                        } else {
                            Frame::Simple("OK".into())
                        })
                    }
                    Ok(Err(e)) => ok(Frame::Error(e.to_string())),
                    Err(e) => ok(Frame::Error(format!("ERR {e}"))),
                }
            }
            ServerCommand::Reset => {
                // Redis's clearClientConnectionState: RESP2, no name, replies on, flags off, and
                // back to the default user (unauthenticated when a password is set).
                self.resp3 = false;
                self.replies = Replies::default();
                self.tx = None;
                self.watched.clear();
                self.pubsub_reset();
                self.authenticated = self.node.config.password.is_none();
                {
                    let mut st = me.state();
                    st.name = None;
                    st.resp = 2;
                    st.no_evict = false;
                    st.no_touch = false;
                }
                ok(Frame::Simple("RESET".into()))
            }
            ServerCommand::Role => ok(Frame::Array(vec![
                bulk("master"),
                Frame::Integer(self.node.own_seq() as i64),
                Frame::Array(vec![]),
            ])),
            ServerCommand::MemoryUsage(key) => {
                let now = wall_ms();
                let size = self.node.with_engine(|e| {
                    e.describe(&key, now).kind?;
                    let st = e.key_state(&key)?;
                    let encoded = concord_core::codec::encode(concord_core::codec::KEY_STATE_VERSION, &st.slots).len();
                    // Key bytes + the state as stored + the map entry and vector it lives in.
                    Some(key.len() + encoded + 64 + 16 * st.ctx.iter().count())
                });
                ok(size.map_or(Frame::Null, |n| Frame::Integer(n as i64)))
            }
            ServerCommand::MemoryStats => {
                let now = wall_ms();
                let keys = self.node.with_engine(|e| e.live_keys(now).count());
                let rss = rss_bytes() as i64;
                ok(Frame::Map(vec![
                    (bulk("peak.allocated"), Frame::Integer(rss)),
                    (bulk("total.allocated"), Frame::Integer(rss)),
                    (bulk("keys.count"), Frame::Integer(keys as i64)),
                    (
                        bulk("db.0"),
                        Frame::Map(vec![
                            (bulk("overhead.hashtable.main"), Frame::Integer(0)),
                            (bulk("overhead.hashtable.expires"), Frame::Integer(0)),
                        ]),
                    ),
                    (
                        bulk("concord.disk.bytes"),
                        Frame::Integer(self.node.store().disk_bytes() as i64),
                    ),
                ]))
            }
            ServerCommand::MemoryMallocStats => ok(bulk("Stats not supported for the current allocator")),
            ServerCommand::MemoryPurge => ok(Frame::Simple("OK".into())),
            ServerCommand::LatencyLatest | ServerCommand::LatencyHistory => ok(Frame::Array(vec![])),
            ServerCommand::LatencyReset => ok(Frame::Integer(0)),
            ServerCommand::SlowlogGet(count) => ok(Frame::Array(
                state
                    .slowlog(count)
                    .into_iter()
                    .map(|e| {
                        Frame::Array(vec![
                            Frame::Integer(e.id as i64),
                            Frame::Integer(e.unix_s as i64),
                            Frame::Integer(e.duration_us as i64),
                            Frame::Array(e.args.into_iter().map(Frame::Bulk).collect()),
                            bulk(e.addr),
                            Frame::Bulk(e.name),
                        ])
                    })
                    .collect(),
            )),
            ServerCommand::SlowlogLen => ok(Frame::Integer(state.slowlog_len() as i64)),
            ServerCommand::SlowlogReset => {
                state.slowlog_reset();
                ok(Frame::Simple("OK".into()))
            }
            ServerCommand::Lolwut => ok(bulk(format!(
                "Concord {} speaks the Redis protocol.\nRedis ver. {REDIS_COMPAT_VERSION}\n",
                env!("CARGO_PKG_VERSION")
            ))),
        }
    }
}
