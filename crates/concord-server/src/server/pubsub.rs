//! Pub/sub on a connection: the (P)SUBSCRIBE/(P)UNSUBSCRIBE/PUBLISH/PUBSUB commands, RESP2's
//! subscribed mode, and writing delivered messages out (`crate::pubsub` holds the registry).

use super::{Connection, Next};
use crate::pubsub::{Kind, Push, Subscription};
use crate::resp::cmd_pubsub::{self, PubSubCommand};
use crate::resp::{Frame, NodeCommand, Parsed};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

/// Messages written per wake-up before the connection reads its requests again.
const PUSHES_PER_WRITE: usize = 1024;

/// A connection's queue in the registry; dropping it (the connection closed) forgets every
/// subscription it had.
pub(super) struct Subscriber {
    node: Arc<crate::node::Node>,
    queue: Subscription,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.node.pubsub.registry().detach(self.queue.client);
    }
}

/// Shard channels or ordinary ones.
fn kind(shard: bool) -> Kind {
    if shard {
        Kind::Shard
    } else {
        Kind::Channel
    }
}

/// The next message for a subscribed connection (never, for one that never subscribed); `None`
/// when the node dropped it for being too slow.
pub(super) async fn next_push(sub: &mut Option<Subscriber>) -> Option<Push> {
    match sub {
        Some(s) => s.queue.recv().await,
        None => std::future::pending().await,
    }
}

impl Connection {
    /// Channels, patterns and shard channels this connection is subscribed to.
    pub(super) fn subscriptions(&self) -> usize {
        self.subscriber.as_ref().map_or(0, |s| {
            let (channels, patterns, shards) = self.node.pubsub.registry().counts(s.queue.client);
            channels + patterns + shards
        })
    }

    /// In RESP2 subscribed mode only (P)SUBSCRIBE, (P)UNSUBSCRIBE, PING, QUIT and RESET run;
    /// PING answers `[pong, message]`. `Some(reply)` for a command answered here.
    pub(super) fn subscribed_mode(&self, parsed: &Parsed, name: &[u8]) -> Option<Frame> {
        if self.resp3 || self.subscriber.is_none() || self.subscriptions() == 0 {
            return None;
        }
        match parsed {
            Parsed::Node(NodeCommand::Ping(m)) => Some(cmd_pubsub::subscribed_pong(m.clone())),
            Parsed::Node(NodeCommand::PubSub(c)) if c.allowed_when_subscribed() => None,
            Parsed::Node(NodeCommand::Quit | NodeCommand::Server(crate::resp::cmd_server::ServerCommand::Reset)) => {
                None
            }
            _ => Some(cmd_pubsub::not_allowed_when_subscribed(
                &String::from_utf8_lossy(name).to_lowercase(),
            )),
        }
    }

    /// Run a pub/sub command. (Un)subscribing answers one frame per channel or pattern: all but
    /// the last go to `self.before_reply`.
    pub(super) fn pubsub_command(&mut self, cmd: PubSubCommand) -> (Frame, Option<u64>, Next) {
        let ok = |f: Frame| (f, None, Next::Continue);
        let ps = &self.node.pubsub;
        match cmd {
            PubSubCommand::Subscribe(names) => ok(self.subscribe(Kind::Channel, names)),
            PubSubCommand::PSubscribe(names) => ok(self.subscribe(Kind::Pattern, names)),
            PubSubCommand::Unsubscribe(names) => ok(self.unsubscribe(Kind::Channel, names)),
            PubSubCommand::PUnsubscribe(names) => ok(self.unsubscribe(Kind::Pattern, names)),
            PubSubCommand::SSubscribe(names) => ok(self.subscribe(Kind::Shard, names)),
            PubSubCommand::SUnsubscribe(names) => ok(self.unsubscribe(Kind::Shard, names)),
            PubSubCommand::Publish {
                shard,
                channel,
                message,
            } => ok(Frame::Integer(
                self.node.publish(shard, channel, message, self.home_writes()) as i64,
            )),
            PubSubCommand::Channels { shard, pattern } => ok(Frame::Array(
                ps.registry()
                    .active_channels(kind(shard), pattern.as_deref())
                    .into_iter()
                    .map(Frame::Bulk)
                    .collect(),
            )),
            PubSubCommand::NumSub { shard, channels } => {
                let reg = ps.registry();
                ok(Frame::Array(
                    channels
                        .into_iter()
                        .flat_map(|c| {
                            let n = reg.numsub(kind(shard), &c) as i64;
                            [Frame::Bulk(c), Frame::Integer(n)]
                        })
                        .collect(),
                ))
            }
            PubSubCommand::NumPat => ok(Frame::Integer(ps.registry().numpat() as i64)),
            PubSubCommand::Help => ok(cmd_pubsub::help()),
        }
    }

    fn subscribe(&mut self, kind: Kind, names: Vec<Bytes>) -> Frame {
        let client = self.client.client.id;
        if self.subscriber.is_none() {
            let queue = self.node.pubsub.registry().attach(client);
            self.subscriber = Some(Subscriber {
                node: self.node.clone(),
                queue,
            });
        }
        let word = match kind {
            Kind::Channel => "subscribe",
            Kind::Pattern => "psubscribe",
            Kind::Shard => "ssubscribe",
        };
        let mut frames: Vec<Frame> = {
            let mut reg = self.node.pubsub.registry();
            names
                .into_iter()
                .map(|n| {
                    // Not attached any more: the node dropped this connection as too slow, and
                    // the connection closes once its queue ends.
                    let count = reg.subscribe(client, kind, &n).unwrap_or(0);
                    cmd_pubsub::confirmation(word, Some(n), count)
                })
                .collect()
        };
        let last = frames.pop().expect("arity: at least one name");
        self.before_reply.extend(frames);
        last
    }

    fn unsubscribe(&mut self, kind: Kind, names: Vec<Bytes>) -> Frame {
        let client = self.client.client.id;
        let word = match kind {
            Kind::Channel => "unsubscribe",
            Kind::Pattern => "punsubscribe",
            Kind::Shard => "sunsubscribe",
        };
        let mut reg = self.node.pubsub.registry();
        let names = if names.is_empty() {
            reg.subscriptions(client, kind)
        } else {
            names
        };
        if names.is_empty() {
            // Nothing to drop: one confirmation with a nil name (Redis).
            return cmd_pubsub::confirmation(word, None, reg.count(client, kind));
        }
        let mut frames: Vec<Frame> = names
            .into_iter()
            .map(|n| {
                let count = reg.unsubscribe(client, kind, &n);
                cmd_pubsub::confirmation(word, Some(n), count)
            })
            .collect();
        drop(reg);
        let last = frames.pop().expect("at least one name");
        self.before_reply.extend(frames);
        last
    }

    /// A connection's `CLIENT LIST` line, with its subscription counts and Redis's `P` flag.
    pub(super) fn client_line(&self, c: &crate::clients::Client) -> crate::resp::cmd_server::ClientLine {
        let mut line = c.line();
        (line.sub, line.psub, line.ssub) = self.node.pubsub.registry().counts(c.id);
        if line.sub + line.psub + line.ssub > 0 {
            line.flags = line.flags.replace('N', "");
            line.flags.push('P');
        }
        line
    }

    /// A connection's type for `CLIENT LIST|KILL TYPE`: pub/sub while it is subscribed to
    /// something, else normal (Redis's `getClientType`; no replicas or masters here).
    pub(super) fn client_kind(&self, c: &crate::clients::Client) -> crate::resp::cmd_server::ClientKind {
        let (sub, psub, ssub) = self.node.pubsub.registry().counts(c.id);
        if sub + psub + ssub > 0 {
            crate::resp::cmd_server::ClientKind::PubSub
        } else {
            crate::resp::cmd_server::ClientKind::Normal
        }
    }

    /// `RESET`: leave every channel and pattern (Redis's `pubsubUnsubscribeAllChannels`, without
    /// the confirmations).
    pub(super) fn pubsub_reset(&mut self) {
        self.subscriber = None;
    }

    /// Encode `first` and whatever else is queued (up to [`PUSHES_PER_WRITE`]).
    pub(super) fn encode_pushes(&mut self, first: Push, out: &mut BytesMut) {
        crate::resp::encode_frame(&cmd_pubsub::message_frame(&first), self.resp3, out);
        let Some(sub) = self.subscriber.as_mut() else {
            return;
        };
        for _ in 1..PUSHES_PER_WRITE {
            let Some(p) = sub.queue.try_recv() else {
                break;
            };
            crate::resp::encode_frame(&cmd_pubsub::message_frame(&p), self.resp3, out);
        }
    }
}
