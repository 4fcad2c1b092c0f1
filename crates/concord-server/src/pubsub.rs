//! Pub/sub (DESIGN §8.4): who is subscribed to what on this node, delivery to them, and the
//! fan-out of published messages to the other regions.
//!
//! Messages are not data: they are in no op log, no store and no snapshot. A message reaches the
//! subscribers connected when it arrives, at most once, in publish order per publishing region;
//! it is lost for a region that is partitioned away, whose link is down, or whose queues are full
//! (docs/replication.md, "Pub/sub").
//!
//! - Local: every subscribing connection has one bounded queue ([`SUBSCRIBER_QUEUE_MESSAGES`]
//!   messages, [`SUBSCRIBER_QUEUE_BYTES`] bytes). A subscriber that lets it fill is disconnected,
//!   as Redis does with `client-output-buffer-limit pubsub` (a log line, and
//!   `concord_pubsub_slow_subscribers_dropped`): dropping messages silently would leave it
//!   believing it saw everything.
//! - Across regions: a message published here gets this node's `(origin, incarnation, seq)` and
//!   goes into a bounded broadcast queue ([`PEER_FANOUT_MESSAGES`]) that every downstream link
//!   reads ([`crate::replication`]); a link that falls behind loses the oldest messages (counted,
//!   never blocking `PUBLISH` or writes). A receiver keeps the highest `(incarnation, seq)` seen
//!   per origin and drops anything not above it, so a message that arrives by two paths is
//!   delivered once and an older one never after a newer one; then it relays it to the downstreams
//!   that cannot get it straight from its origin (a ring's or a star's far side) — never back to
//!   the origin, so it never loops.

use bytes::Bytes;
use concord_core::glob::glob_match;
use concord_core::ReplicaId;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc};

/// Messages queued for one subscribing connection before it is disconnected as too slow.
pub const SUBSCRIBER_QUEUE_MESSAGES: usize = 16_384;
/// Bytes (channel, pattern and payload) queued for one subscribing connection before it is
/// disconnected as too slow: Redis's default hard `client-output-buffer-limit pubsub` (32 MiB).
pub const SUBSCRIBER_QUEUE_BYTES: usize = 32 * 1024 * 1024;
/// Published messages held for the links to the other regions; a link further behind than this
/// loses the oldest (counted in `concord_pubsub_peer_dropped`).
pub const PEER_FANOUT_MESSAGES: usize = 4_096;

/// Which kind of subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Channel,
    Pattern,
    /// A shard channel (`SSUBSCRIBE`, `SPUBLISH`): a namespace of its own, as in Redis 7.
    Shard,
}

/// One message for one subscribing connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Push {
    /// `message channel payload` (a channel subscription).
    Message { channel: Bytes, payload: Bytes },
    /// `pmessage pattern channel payload` (a pattern subscription).
    PMessage {
        pattern: Bytes,
        channel: Bytes,
        payload: Bytes,
    },
    /// `smessage channel payload` (a shard channel subscription).
    SMessage { channel: Bytes, payload: Bytes },
}

impl Push {
    fn size(&self) -> usize {
        match self {
            Push::Message { channel, payload } | Push::SMessage { channel, payload } => channel.len() + payload.len(),
            Push::PMessage {
                pattern,
                channel,
                payload,
            } => pattern.len() + channel.len() + payload.len(),
        }
    }
}

/// A message as it travels between regions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerMessage {
    /// The region where it was published.
    pub origin: ReplicaId,
    /// The publishing node's start (ms): a restarted node numbers from 1 again, above its past.
    pub incarnation: u64,
    /// Per origin and incarnation, from 1, in publish order.
    pub seq: u64,
    /// Published with `SPUBLISH` (to shard channel subscribers).
    pub shard: bool,
    pub channel: Bytes,
    pub payload: Bytes,
    /// The origin's last own write when it was published (its writer and seq; seq 0: none).
    /// Every link sends the message only after that write (and so after every earlier write of
    /// that writer), so a subscriber in another region woken by it reads what was written
    /// before it: a script's `SET` then `PUBLISH`, a client's. Carried on the wire for relays.
    pub after: concord_core::Dot,
    /// The publishing connection's last writes forwarded to other regions' homes (one per
    /// home): a receiving node delivers the message once it has applied them too (a link cannot
    /// hold for them: they are not this region's to send).
    pub home_writes: Vec<concord_core::Dot>,
}

/// Pub/sub counters, shown in `INFO stats` and `/metrics`.
#[derive(Default)]
pub struct PubSubStats {
    /// `PUBLISH` commands run on this node.
    pub published: AtomicU64,
    /// Messages from other regions delivered here (after duplicates are dropped).
    pub received: AtomicU64,
    /// Messages sent to other regions' links (own and relayed ones).
    pub sent_to_peers: AtomicU64,
    /// Messages of other regions passed on to a further region (a ring's or a star's far side).
    pub relayed: AtomicU64,
    /// Messages a link to another region lost: its fan-out queue or its send queue was full.
    pub peer_dropped: AtomicU64,
    /// Messages from other regions dropped as already seen (or older than one seen).
    pub duplicates: AtomicU64,
    /// Subscribing connections disconnected because their queue was full.
    pub slow_subscribers_dropped: AtomicU64,
}

/// A subscribing connection's end of its queue.
pub struct Subscription {
    pub client: u64,
    rx: mpsc::Receiver<Push>,
    queued_bytes: Arc<AtomicUsize>,
}

impl Subscription {
    /// The next message; `None` once the node dropped this connection for being too slow.
    pub async fn recv(&mut self) -> Option<Push> {
        let p = self.rx.recv().await?;
        self.queued_bytes.fetch_sub(p.size(), Ordering::Relaxed);
        Some(p)
    }

    /// A message already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Push> {
        let p = self.rx.try_recv().ok()?;
        self.queued_bytes.fetch_sub(p.size(), Ordering::Relaxed);
        Some(p)
    }
}

struct Subscriber {
    tx: mpsc::Sender<Push>,
    queued_bytes: Arc<AtomicUsize>,
    channels: BTreeSet<Bytes>,
    patterns: BTreeSet<Bytes>,
    shards: BTreeSet<Bytes>,
}

impl Subscriber {
    fn set(&mut self, kind: Kind) -> &mut BTreeSet<Bytes> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shards,
        }
    }

    /// The count a confirmation of `kind` reports: channels + patterns, or shard channels
    /// (Redis 7.0 counts them apart).
    fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Channel | Kind::Pattern => self.channels.len() + self.patterns.len(),
            Kind::Shard => self.shards.len(),
        }
    }
}

/// Who is subscribed to what on this node. Deterministic order everywhere (BTree maps), so
/// replies that list subscriptions are stable.
#[derive(Default)]
pub struct Registry {
    clients: BTreeMap<u64, Subscriber>,
    channels: BTreeMap<Bytes, BTreeSet<u64>>,
    patterns: BTreeMap<Bytes, BTreeSet<u64>>,
    shards: BTreeMap<Bytes, BTreeSet<u64>>,
}

impl Registry {
    /// Register a connection's queue (before its first subscription).
    pub fn attach(&mut self, client: u64) -> Subscription {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE_MESSAGES);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        self.clients.insert(
            client,
            Subscriber {
                tx,
                queued_bytes: queued_bytes.clone(),
                channels: BTreeSet::new(),
                patterns: BTreeSet::new(),
                shards: BTreeSet::new(),
            },
        );
        Subscription {
            client,
            rx,
            queued_bytes,
        }
    }

    /// Forget a connection and all its subscriptions (it closed, or it was too slow).
    pub fn detach(&mut self, client: u64) {
        let Some(s) = self.clients.remove(&client) else {
            return;
        };
        for c in s.channels {
            remove_from(&mut self.channels, &c, client);
        }
        for p in s.patterns {
            remove_from(&mut self.patterns, &p, client);
        }
        for c in s.shards {
            remove_from(&mut self.shards, &c, client);
        }
    }

    fn index(&mut self, kind: Kind) -> &mut BTreeMap<Bytes, BTreeSet<u64>> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shards,
        }
    }

    /// Subscribe; the count its confirmation reports ([`Subscriber::count`]). `None` if the
    /// connection is not attached.
    pub fn subscribe(&mut self, client: u64, kind: Kind, name: &Bytes) -> Option<usize> {
        let s = self.clients.get_mut(&client)?;
        let added = s.set(kind).insert(name.clone());
        let count = s.count(kind);
        if added {
            self.index(kind).entry(name.clone()).or_default().insert(client);
        }
        Some(count)
    }

    /// Unsubscribe (nothing happens if it was not subscribed); the count after it.
    pub fn unsubscribe(&mut self, client: u64, kind: Kind, name: &Bytes) -> usize {
        let Some(s) = self.clients.get_mut(&client) else {
            return 0;
        };
        let removed = s.set(kind).remove(name);
        let count = s.count(kind);
        if removed {
            remove_from(self.index(kind), name, client);
        }
        count
    }

    /// The connection's channels, patterns or shard channels, in order.
    pub fn subscriptions(&self, client: u64, kind: Kind) -> Vec<Bytes> {
        self.clients
            .get(&client)
            .map(|s| match kind {
                Kind::Channel => s.channels.iter().cloned().collect(),
                Kind::Pattern => s.patterns.iter().cloned().collect(),
                Kind::Shard => s.shards.iter().cloned().collect(),
            })
            .unwrap_or_default()
    }

    /// The count a confirmation of `kind` reports for the connection.
    pub fn count(&self, client: u64, kind: Kind) -> usize {
        self.clients.get(&client).map(|s| s.count(kind)).unwrap_or(0)
    }

    /// (channels, patterns, shard channels) of one connection, for `CLIENT LIST`'s `sub=`,
    /// `psub=` and `ssub=`; any of them puts a RESP2 connection in subscribed mode.
    pub fn counts(&self, client: u64) -> (usize, usize, usize) {
        self.clients
            .get(&client)
            .map(|s| (s.channels.len(), s.patterns.len(), s.shards.len()))
            .unwrap_or((0, 0, 0))
    }

    /// `PUBSUB CHANNELS|SHARDCHANNELS [pattern]`: channels with at least one subscriber, sorted.
    pub fn active_channels(&self, kind: Kind, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let index = if kind == Kind::Shard {
            &self.shards
        } else {
            &self.channels
        };
        index
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob_match(p, c)))
            .cloned()
            .collect()
    }

    /// `PUBSUB NUMSUB|SHARDNUMSUB`: subscribers of one channel (pattern subscribers not
    /// counted, as Redis).
    pub fn numsub(&self, kind: Kind, channel: &[u8]) -> usize {
        let index = if kind == Kind::Shard {
            &self.shards
        } else {
            &self.channels
        };
        index.get(channel).map(BTreeSet::len).unwrap_or(0)
    }

    /// `PUBSUB NUMPAT`: distinct patterns subscribed to.
    pub fn numpat(&self) -> usize {
        self.patterns.len()
    }

    /// Distinct channels subscribed to (`INFO stats` `pubsub_channels`).
    pub fn numchannels(&self) -> usize {
        self.channels.len()
    }

    /// Distinct shard channels subscribed to (`INFO stats` `pubsubshard_channels`).
    pub fn numshardchannels(&self) -> usize {
        self.shards.len()
    }

    /// Queue a message for every subscriber of `channel` and of every pattern matching it: the
    /// number of receivers (one per matching subscription, as Redis counts), and the connections
    /// whose queue was full (the caller detaches them).
    /// How many receivers a message on `channel` would have here now (what `PUBLISH` would
    /// answer): a script's `PUBLISH` answers this, and is sent once its unit ran.
    pub fn receivers(&self, shard: bool, channel: &Bytes) -> usize {
        if shard {
            return self.shards.get(channel).map_or(0, |ids| ids.len());
        }
        let direct = self.channels.get(channel).map_or(0, |ids| ids.len());
        let by_pattern: usize = self
            .patterns
            .iter()
            .filter(|(pattern, _)| glob_match(pattern, channel))
            .map(|(_, ids)| ids.len())
            .sum();
        direct + by_pattern
    }

    fn deliver(&self, shard: bool, channel: &Bytes, payload: &Bytes) -> (usize, Vec<u64>) {
        let mut receivers = 0;
        let mut slow = Vec::new();
        let mut send = |client: u64, push: Push| {
            receivers += 1;
            let Some(s) = self.clients.get(&client) else {
                return;
            };
            let size = push.size();
            let over = s.queued_bytes.load(Ordering::Relaxed) + size > SUBSCRIBER_QUEUE_BYTES;
            if over || s.tx.try_send(push).is_err() {
                slow.push(client);
            } else {
                s.queued_bytes.fetch_add(size, Ordering::Relaxed);
            }
        };
        if shard {
            for &id in self.shards.get(channel).into_iter().flatten() {
                send(
                    id,
                    Push::SMessage {
                        channel: channel.clone(),
                        payload: payload.clone(),
                    },
                );
            }
            slow.sort_unstable();
            slow.dedup();
            return (receivers, slow);
        }
        if let Some(ids) = self.channels.get(channel) {
            for &id in ids {
                send(
                    id,
                    Push::Message {
                        channel: channel.clone(),
                        payload: payload.clone(),
                    },
                );
            }
        }
        for (pattern, ids) in &self.patterns {
            if glob_match(pattern, channel) {
                for &id in ids {
                    send(
                        id,
                        Push::PMessage {
                            pattern: pattern.clone(),
                            channel: channel.clone(),
                            payload: payload.clone(),
                        },
                    );
                }
            }
        }
        slow.sort_unstable();
        slow.dedup();
        (receivers, slow)
    }
}

fn remove_from(map: &mut BTreeMap<Bytes, BTreeSet<u64>>, name: &Bytes, client: u64) {
    if let Some(ids) = map.get_mut(name) {
        ids.remove(&client);
        if ids.is_empty() {
            map.remove(name);
        }
    }
}

/// The node's pub/sub state.
pub struct PubSub {
    registry: Mutex<Registry>,
    /// This node's published messages and the ones it relays, for the downstream links.
    peers: broadcast::Sender<Arc<PeerMessage>>,
    origin: ReplicaId,
    incarnation: u64,
    next_seq: AtomicU64,
    /// Per origin, the highest `(incarnation, seq)` delivered here.
    seen: Mutex<HashMap<ReplicaId, (u64, u64)>>,
    pub stats: PubSubStats,
}

impl PubSub {
    /// `origin`: this region's id; `incarnation`: this node's start time in ms (above any earlier
    /// start's, so receivers take its messages numbered from 1 again).
    pub fn new(origin: ReplicaId, incarnation: u64) -> Self {
        PubSub {
            registry: Mutex::new(Registry::default()),
            peers: broadcast::channel(PEER_FANOUT_MESSAGES).0,
            origin,
            incarnation,
            next_seq: AtomicU64::new(1),
            seen: Mutex::new(HashMap::new()),
            stats: PubSubStats::default(),
        }
    }

    /// The registry, locked (only for quick, non-blocking work).
    pub fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deliver to local subscribers; disconnects the slow ones. The number of receivers.
    fn deliver_local(&self, shard: bool, channel: &Bytes, payload: &Bytes) -> usize {
        let mut reg = self.registry();
        let (receivers, slow) = reg.deliver(shard, channel, payload);
        for client in slow {
            reg.detach(client);
            self.stats.slow_subscribers_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                client,
                limit_messages = SUBSCRIBER_QUEUE_MESSAGES,
                limit_bytes = SUBSCRIBER_QUEUE_BYTES,
                "pub/sub subscriber is not reading its messages: disconnecting it (its queue is full)"
            );
        }
        receivers
    }

    /// `PUBLISH` (`SPUBLISH` with `shard`) here: the number of local receivers (other regions'
    /// are not counted, as in Redis Cluster); the message goes to the other regions too, each
    /// after this region's own writes up to seq `after` ([`PeerMessage::after`]).
    /// `fan_out`: there are other regions.
    pub fn publish(
        &self,
        shard: bool,
        channel: Bytes,
        payload: Bytes,
        fan_out: bool,
        after: concord_core::Dot,
        home_writes: Vec<concord_core::Dot>,
    ) -> usize {
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        let receivers = self.deliver_local(shard, &channel, &payload);
        if fan_out {
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            // No link subscribed (no downstream connected): nothing to send it to.
            let _ = self.peers.send(Arc::new(PeerMessage {
                origin: self.origin,
                incarnation: self.incarnation,
                seq,
                shard,
                channel,
                payload,
                after,
                home_writes,
            }));
        }
        receivers
    }

    /// A message from another region: delivered (and, with `relay`, offered to the downstream
    /// links) unless it was seen already or is older than one seen. Whether it was new.
    pub fn receive(&self, relay: bool, m: PeerMessage) -> bool {
        if m.origin == self.origin {
            // Our own, come back around: never delivered twice, never sent on.
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let last = seen.entry(m.origin).or_insert((0, 0));
            if (m.incarnation, m.seq) <= *last {
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            *last = (m.incarnation, m.seq);
        }
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        self.deliver_local(m.shard, &m.channel, &m.payload);
        if relay {
            let _ = self.peers.send(Arc::new(m));
        }
        true
    }

    /// A downstream link's feed of messages to send (this node's and the ones it relays).
    pub fn feed(&self) -> broadcast::Receiver<Arc<PeerMessage>> {
        self.peers.subscribe()
    }

    pub fn origin(&self) -> ReplicaId {
        self.origin
    }
}

/// Whether a link toward `downstream` carries a message of `origin`: never back to its origin,
/// and a message of another region only if `downstream` does not pull from that region itself
/// (in a mesh nothing is relayed; in a ring or a star, the far side gets it through us).
pub fn sends_to(me: ReplicaId, origin: ReplicaId, downstream: ReplicaId, downstream_upstreams: &[ReplicaId]) -> bool {
    origin != downstream && (origin == me || !downstream_upstreams.contains(&origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    #[test]
    fn subscribe_counts_and_unsubscribe() {
        let mut r = Registry::default();
        let _s = r.attach(1);
        assert_eq!(r.subscribe(1, Kind::Channel, &b("a")), Some(1));
        assert_eq!(r.subscribe(1, Kind::Channel, &b("a")), Some(1), "twice is once");
        assert_eq!(r.subscribe(1, Kind::Pattern, &b("a*")), Some(2));
        assert_eq!(r.subscribe(1, Kind::Channel, &b("b")), Some(3));
        assert_eq!(r.subscribe(2, Kind::Channel, &b("a")), None, "not attached");
        assert_eq!(
            r.subscribe(1, Kind::Shard, &b("a")),
            Some(1),
            "shard channels count apart"
        );
        assert_eq!(r.active_channels(Kind::Channel, None), vec![b("a"), b("b")]);
        assert_eq!(r.active_channels(Kind::Channel, Some(b"b*")), vec![b("b")]);
        assert_eq!(r.active_channels(Kind::Shard, None), vec![b("a")]);
        assert_eq!(
            (
                r.numsub(Kind::Channel, b"a"),
                r.numsub(Kind::Channel, b"zz"),
                r.numpat()
            ),
            (1, 0, 1)
        );
        assert_eq!(r.counts(1), (2, 1, 1));
        assert_eq!(r.unsubscribe(1, Kind::Channel, &b("nope")), 3);
        assert_eq!(r.unsubscribe(1, Kind::Channel, &b("a")), 2);
        assert_eq!(r.active_channels(Kind::Channel, None), vec![b("b")]);
        assert_eq!(r.subscriptions(1, Kind::Channel), vec![b("b")]);
        r.detach(1);
        assert_eq!((r.numchannels(), r.numpat(), r.numshardchannels()), (0, 0, 0));
        assert_eq!(r.counts(1), (0, 0, 0));
    }

    #[tokio::test]
    async fn delivery_to_channels_and_matching_patterns_counts_each_subscription() {
        let ps = PubSub::new(1, 100);
        let mut s1 = ps.registry().attach(1);
        let mut s2 = ps.registry().attach(2);
        ps.registry().subscribe(1, Kind::Channel, &b("news.eu"));
        ps.registry().subscribe(1, Kind::Pattern, &b("news.*"));
        ps.registry().subscribe(2, Kind::Pattern, &b("news.[ae]u"));
        ps.registry().subscribe(2, Kind::Pattern, &b("sport.*"));
        assert_eq!(
            ps.publish(
                false,
                b("news.eu"),
                b("hi"),
                false,
                concord_core::Dot::new(0, 0),
                Vec::new()
            ),
            3
        );
        assert_eq!(
            ps.publish(
                false,
                b("weather"),
                b("x"),
                false,
                concord_core::Dot::new(0, 0),
                Vec::new()
            ),
            0
        );
        assert_eq!(
            s1.recv().await,
            Some(Push::Message {
                channel: b("news.eu"),
                payload: b("hi")
            })
        );
        assert_eq!(
            s1.recv().await,
            Some(Push::PMessage {
                pattern: b("news.*"),
                channel: b("news.eu"),
                payload: b("hi")
            })
        );
        assert_eq!(
            s2.recv().await,
            Some(Push::PMessage {
                pattern: b("news.[ae]u"),
                channel: b("news.eu"),
                payload: b("hi")
            })
        );
        assert_eq!(s1.try_recv(), None);
        assert_eq!(s2.try_recv(), None);
        // Shard channels are a namespace of their own: SPUBLISH reaches only SSUBSCRIBE.
        ps.registry().subscribe(2, Kind::Shard, &b("news.eu"));
        assert_eq!(
            ps.publish(
                true,
                b("news.eu"),
                b("s"),
                false,
                concord_core::Dot::new(0, 0),
                Vec::new()
            ),
            1
        );
        assert_eq!(
            s2.try_recv(),
            Some(Push::SMessage {
                channel: b("news.eu"),
                payload: b("s")
            })
        );
        assert_eq!(s1.try_recv(), None);
        assert_eq!(ps.stats.published.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn a_subscriber_that_does_not_read_is_disconnected_not_waited_for() {
        let ps = PubSub::new(1, 100);
        let mut slow = ps.registry().attach(7);
        ps.registry().subscribe(7, Kind::Channel, &b("c"));
        let big = Bytes::from(vec![0u8; 1024 * 1024]);
        for _ in 0..(SUBSCRIBER_QUEUE_BYTES / big.len()) + 1 {
            ps.publish(
                false,
                b("c"),
                big.clone(),
                false,
                concord_core::Dot::new(0, 0),
                Vec::new(),
            );
        }
        assert_eq!(ps.stats.slow_subscribers_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(
            ps.registry().numsub(Kind::Channel, b"c"),
            0,
            "its subscriptions are gone"
        );
        // What was queued drains, then the queue ends: the connection closes.
        let mut n = 0;
        while slow.recv().await.is_some() {
            n += 1;
        }
        assert_eq!(n, SUBSCRIBER_QUEUE_BYTES / big.len() - 1);
    }

    fn msg(origin: ReplicaId, incarnation: u64, seq: u64) -> PeerMessage {
        PeerMessage {
            origin,
            incarnation,
            seq,
            shard: false,
            channel: b("c"),
            payload: Bytes::from(seq.to_string()),
            after: concord_core::Dot::new(0, 0),
            home_writes: Vec::new(),
        }
    }

    #[tokio::test]
    async fn remote_messages_are_delivered_once_in_order_and_relayed() {
        let ps = PubSub::new(1, 100);
        let mut sub = ps.registry().attach(1);
        ps.registry().subscribe(1, Kind::Channel, &b("c"));
        let mut feed = ps.feed();
        assert!(ps.receive(true, msg(2, 50, 1)));
        assert!(!ps.receive(true, msg(2, 50, 1)), "a duplicate (another path)");
        assert!(ps.receive(true, msg(2, 50, 3)));
        assert!(
            !ps.receive(true, msg(2, 50, 2)),
            "older than one delivered: dropped, order kept"
        );
        assert!(ps.receive(true, msg(3, 10, 1)), "origins are independent");
        assert!(
            ps.receive(true, msg(2, 60, 1)),
            "a restarted origin numbers from 1 again"
        );
        assert!(ps.receive(false, msg(2, 60, 2)), "delivered here, not relayed");
        assert!(
            !ps.receive(true, msg(2, 50, 9)),
            "its previous incarnation's stragglers are old"
        );
        assert!(!ps.receive(true, msg(1, 100, 1)), "our own message come back around");
        let got: Vec<_> = std::iter::from_fn(|| sub.try_recv()).collect();
        assert_eq!(got.len(), 5);
        let relayed: Vec<_> = std::iter::from_fn(|| feed.try_recv().ok())
            .map(|m| (m.origin, m.seq))
            .collect();
        assert_eq!(relayed, vec![(2, 1), (2, 3), (3, 1), (2, 1)]);
        assert_eq!(ps.stats.duplicates.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn relaying_follows_the_topology_and_never_returns_to_the_origin() {
        use concord_net::topology::{upstreams, Shape};
        let regions = [1, 2, 3];
        // Which regions a message published in `origin` reaches, hop by hop through `sends_to`.
        let reach = |shape: Shape, origin: ReplicaId| {
            let mut got = BTreeMap::new();
            let mut frontier = vec![origin];
            let mut hops = 0;
            while let Some(at) = frontier.pop() {
                for d in concord_net::topology::downstreams(shape, &regions, at) {
                    if sends_to(at, origin, d, &upstreams(shape, &regions, d)) {
                        hops += 1;
                        *got.entry(d).or_insert(0) += 1;
                        frontier.push(d);
                    }
                }
            }
            (got, hops)
        };
        for shape in [Shape::Mesh, Shape::Ring, Shape::Star { hub: 1 }, Shape::Star { hub: 2 }] {
            for origin in regions {
                let (got, _) = reach(shape, origin);
                let expected: BTreeMap<_, _> = regions.iter().filter(|r| **r != origin).map(|r| (*r, 1)).collect();
                assert_eq!(got, expected, "{shape:?} from {origin}: every other region once");
            }
        }
    }
}
