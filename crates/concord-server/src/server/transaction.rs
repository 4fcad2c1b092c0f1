//! `MULTI EXEC DISCARD WATCH UNWATCH` on a connection (DESIGN §8.4).
//!
//! Commands after `MULTI` are checked (arity, syntax, where their keys are homed) and queued; a
//! command refused while queueing marks the transaction, and `EXEC` then answers `-EXECABORT`, as
//! Redis does. `EXEC` runs the queued commands under one engine lock, in order, as one atomic
//! unit ([`crate::node::Node::client_unit_with`]): no other client, here or in another region, sees
//! part of it — every other region applies its ops together (`Op::unit_end`). A failing command
//! (`WRONGTYPE`, say) does not stop the others. `WATCH` remembers each key's causal context and
//! liveness; any write to the key, local or replicated from another region, or its expiry, makes
//! `EXEC` answer a null array and run nothing.
//!
//! Writes of keys homed in another region cannot join a transaction here (they are refused when
//! queued: send the transaction to the home); reads in a transaction are local. `EVAL` (and its
//! forms) is queued like any command and runs inside the transaction's unit at its turn (a
//! script's writes homed elsewhere are refused when it runs, as outside a transaction).

use super::{Connection, Next};
use crate::node::NodeError;
use crate::resp::{self, Eval, Frame, NodeCommand, Parsed, ReplyShape, ScriptSource};
use crate::script::Published;
use bytes::Bytes;
use concord_core::{Reply, Request, VersionVector};

/// The most commands one transaction may queue: its ops are replicated as one unit, which every
/// receiver holds until it has all of it ([`concord_core::MAX_UNIT_OPS`]).
pub(super) const MAX_QUEUED: usize = 10_000;

/// A command waiting for `EXEC`.
enum Queued {
    /// With what a blocking command answers instead of nil (it does not block here).
    Engine(Request, ReplyShape, Option<Frame>),
    /// `EVAL` and its forms: the script runs inside the transaction's unit, at its turn.
    Eval(Eval),
    Ping(Option<Bytes>),
    Echo(Bytes),
    /// `PUBLISH` inside `MULTI`: published at `EXEC`, after the queued writes ran.
    Publish {
        shard: bool,
        channel: Bytes,
        message: Bytes,
    },
}

/// The connection's `MULTI` state.
#[derive(Default)]
pub(super) struct Transaction {
    queued: Vec<Queued>,
    /// A command was refused while queueing: `EXEC` aborts.
    failed: bool,
}

/// `WATCH`ed keys with their marks ([`concord_core::Engine::watch_mark`]).
pub(super) type Watched = Vec<(Bytes, (Option<VersionVector>, bool))>;

/// Whether a command runs at once even inside `MULTI` (the transaction commands themselves,
/// `QUIT`, `RESET`).
pub(super) fn runs_inside_multi(parsed: &Parsed) -> bool {
    matches!(
        parsed,
        Parsed::Node(
            NodeCommand::Multi
                | NodeCommand::Exec
                | NodeCommand::Discard
                | NodeCommand::Watch(_)
                | NodeCommand::Unwatch
                | NodeCommand::Quit
                | NodeCommand::Server(resp::cmd_server::ServerCommand::Reset)
        )
    )
}

impl Connection {
    /// Inside `MULTI`, a command that failed to parse marks the transaction.
    pub(super) fn mark_failed(&mut self) {
        if let Some(tx) = &mut self.tx {
            tx.failed = true;
        }
    }

    /// Queue `parsed` (the connection is inside `MULTI` and the command does not run at once).
    pub(super) fn queue(&mut self, name: &[u8], parsed: Parsed) -> (Frame, Option<u64>, Next) {
        let refuse = |this: &mut Self, msg: String| {
            this.mark_failed();
            (Frame::Error(msg), None, Next::Continue)
        };
        // A blocking command inside a transaction does not block (as in Redis): it is its
        // non-blocking form.
        let (parsed, when_nil) = match parsed {
            Parsed::Blocking(b) => {
                let nil = super::blocking::timed_out_frame(&b.request);
                (Parsed::Engine(b.request, b.shape), Some(nil))
            }
            p => (p, None),
        };
        let item = match parsed {
            Parsed::Engine(req, shape) => {
                if req.is_write() {
                    match self.node.write_home_elsewhere(&req) {
                        Ok(None) => {}
                        Ok(Some(home)) => {
                            return refuse(
                                self,
                                format!(
                                    "ERR a transaction cannot write a key homed in region {home} from region {}: send the transaction to {home}",
                                    self.node.region.name
                                ),
                            )
                        }
                        Err(e) => return refuse(self, format!("ERR {}", e.to_string().trim_start_matches("ERR "))),
                    }
                }
                Queued::Engine(req, shape, when_nil)
            }
            Parsed::Node(NodeCommand::Eval(e)) => Queued::Eval(e),
            Parsed::Node(NodeCommand::Ping(m)) => Queued::Ping(m),
            Parsed::Node(NodeCommand::Echo(m)) => Queued::Echo(m),
            Parsed::Node(NodeCommand::PubSub(resp::cmd_pubsub::PubSubCommand::Publish {
                shard,
                channel,
                message,
            })) => Queued::Publish {
                shard,
                channel,
                message,
            },
            Parsed::Node(_) | Parsed::Blocking(_) => {
                return refuse(
                    self,
                    format!(
                        "ERR Command '{}' is not allowed in a transaction on Concord",
                        String::from_utf8_lossy(name).to_lowercase()
                    ),
                )
            }
        };
        let tx = self.tx.as_mut().expect("inside MULTI");
        if tx.queued.len() >= MAX_QUEUED {
            return refuse(self, format!("ERR a transaction queues at most {MAX_QUEUED} commands"));
        }
        tx.queued.push(item);
        (Frame::Simple("QUEUED".into()), None, Next::Continue)
    }

    pub(super) async fn transaction_command(&mut self, cmd: NodeCommand) -> (Frame, Option<u64>, Next) {
        let ok = |f: Frame| (f, None, Next::Continue);
        let err = |m: &str| (Frame::Error(m.to_string()), None, Next::Continue);
        match cmd {
            NodeCommand::Multi => {
                if self.tx.is_some() {
                    return err("ERR MULTI calls can not be nested");
                }
                self.tx = Some(Transaction::default());
                ok(Frame::Simple("OK".into()))
            }
            NodeCommand::Discard => {
                if self.tx.take().is_none() {
                    return err("ERR DISCARD without MULTI");
                }
                self.watched.clear();
                ok(Frame::Simple("OK".into()))
            }
            NodeCommand::Watch(keys) => {
                if self.tx.is_some() {
                    return err("ERR WATCH inside MULTI is not allowed");
                }
                let now = self.node.now_ms();
                let marks: Watched = self.node.with_engine(|e| {
                    keys.into_iter()
                        .map(|k| {
                            let mark = e.watch_mark(&k, now);
                            (k, mark)
                        })
                        .collect()
                });
                self.watched.extend(marks);
                ok(Frame::Simple("OK".into()))
            }
            NodeCommand::Unwatch => {
                self.watched.clear();
                ok(Frame::Simple("OK".into()))
            }
            NodeCommand::Exec => {
                let Some(tx) = self.tx.take() else {
                    return err("ERR EXEC without MULTI");
                };
                let watched = std::mem::take(&mut self.watched);
                if tx.failed {
                    return err("EXECABORT Transaction discarded because of previous errors.");
                }
                self.exec(tx, &watched).await
            }
            _ => err("ERR not a transaction command"),
        }
    }

    async fn exec(&mut self, tx: Transaction, watched: &Watched) -> (Frame, Option<u64>, Next) {
        let node = self.node.clone();
        node.stats
            .commands
            .fetch_add(tx.queued.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let reqs: Vec<Request> = tx
            .queued
            .iter()
            .filter_map(|q| match q {
                Queued::Engine(req, ..) => Some(req.clone()),
                _ => None,
            })
            .collect();
        let writes =
            reqs.iter().any(|r| r.is_write()) || tx.queued.iter().any(|q| matches!(q, Queued::Eval(e) if !e.read_only));
        // Scripts are found (or compiled) before the engine is locked; an unknown SHA1 is that
        // command's `NOSCRIPT`, as in Redis.
        let scripts: Vec<Option<Result<crate::script::Script, String>>> = tx
            .queued
            .iter()
            .map(|q| match q {
                Queued::Eval(e) => Some(match &e.script {
                    ScriptSource::Source(source) => node.scripts.load(source),
                    ScriptSource::Sha(sha) => node
                        .scripts
                        .get(sha)
                        .ok_or_else(|| "NOSCRIPT No matching script. Please use EVAL.".to_string()),
                }),
                _ => None,
            })
            .collect();
        // `PUBLISH`es (the command's, a script's) are answered with this node's receivers now
        // and sent once the unit ran, in order — even when waiting for an ack level fails after.
        let mut published: Vec<Published> = Vec::new();
        let ran = node
            .client_unit_with(writes, watched, |unit, written| {
                // Every queued write is checked before anything runs: refused whole.
                node.check_unit_writes(unit.engine(), &reqs, "transaction", written)?;
                let frames = tx
                    .queued
                    .into_iter()
                    .zip(scripts)
                    .map(|(q, script)| match (q, script) {
                        (Queued::Engine(req, shape, when_nil), _) => match unit.execute(req) {
                            Ok(Reply::Nil) if when_nil.is_some() => when_nil.expect("checked"),
                            Ok(reply) => resp::reply_to_frame(resp::shape_reply(shape, reply)),
                            Err(e) => resp::error_frame(&e),
                        },
                        (Queued::Eval(e), Some(Ok(script))) => {
                            node.run_script_in(unit, written, &mut published, &script, &e.keys, &e.args, e.read_only)
                        }
                        (Queued::Eval(_), Some(Err(message))) => Frame::Error(message),
                        (Queued::Eval(_), None) => Frame::Error("ERR missing script".into()),
                        (Queued::Ping(None), _) => Frame::Simple("PONG".into()),
                        (Queued::Ping(Some(m)) | Queued::Echo(m), _) => Frame::Bulk(m),
                        (
                            Queued::Publish {
                                shard,
                                channel,
                                message,
                            },
                            _,
                        ) => {
                            let receivers = node.pubsub.registry().receivers(shard, &channel);
                            published.push(Published {
                                shard,
                                channel,
                                message,
                            });
                            Frame::Integer(receivers as i64)
                        }
                    })
                    .collect::<Vec<_>>();
                Ok::<_, NodeError>(frames)
            })
            .await;
        node.publish_all(published, &self.home_writes());
        let (frames, ticket, own_seq) = match ran {
            // A watched key changed: nothing ran.
            Ok(None) => return (Frame::NullArray, None, Next::Continue),
            Ok(Some((Ok(frames), ticket, own_seq))) => (frames, ticket, own_seq),
            Ok(Some((Err(e), ..))) | Err(e) => {
                let frame = match e {
                    NodeError::Command(e) => resp::error_frame(&e),
                    e => Frame::Error(e.to_string()),
                };
                return (frame, None, Next::Continue);
            }
        };
        if let Some(seq) = own_seq {
            self.last_write_seq = seq;
        }
        (Frame::Array(frames), ticket, Next::Continue)
    }
}
