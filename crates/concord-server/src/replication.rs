//! Replication links between regions.
//!
//! Every node *pulls*: for each upstream region (per topology) a task connects to the upstream's
//! peer port, authenticates, sends `Subscribe { applied }`, and receives every op it misses
//! (catch-up from the upstream's op log, then the live stream), or a full-state transfer when the
//! log no longer holds what it needs. It applies ops through the core's causal buffer, and after
//! each batch is durable it answers `Ack { applied }`. Both sides exchange `Vectors` (every region's
//! applied vector as they know it) so every node learns every region's progress, whatever the
//! topology. Each direction passes through a bounded queue with the link's simulated faults.

use crate::env::BoxStream;
use crate::node::{CommitState, Node, NodeError};
use crate::pubsub::PeerMessage;
use concord_core::{Op, ReplicaId, VersionVector};
use concord_net::faults::FaultRng;
use concord_net::frame::{read_message, write_message};
use concord_net::handshake::{handshake, Identity, PeerInfo};
use concord_net::topology::{upstreams, Shape};
use concord_net::wire::WireError;
use concord_net::{LinkFaults, Message};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

/// Ops per `Ops` message, at most.
pub const MAX_OPS_PER_MESSAGE: usize = 512;
/// Keys per snapshot chunk.
pub const SNAPSHOT_CHUNK_KEYS: usize = 1_000;
/// Bytes per `Ops` message or snapshot chunk, roughly (one op or key always goes, whatever its
/// size, so a large value is never stuck).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Messages queued per link direction before the producer waits (backpressure).
pub const LINK_QUEUE_MESSAGES: usize = 256;
/// How often vectors are exchanged on an idle link.
pub const HEARTBEAT: Duration = Duration::from_millis(250);
/// A link that hears nothing for this long is dropped and re-established: peers send vectors
/// every [`HEARTBEAT`], so silence means a dead connection (a real partition can leave one open).
pub const LINK_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What the node knows about the link with one peer region.
#[derive(Clone, Debug)]
pub struct LinkState {
    pub region: String,
    pub faults: LinkFaults,
    /// We are pulling from this peer (connected and subscribed).
    pub upstream_connected: bool,
    /// This peer is pulling from us.
    pub downstream_connected: bool,
    /// Last time anything arrived from this peer.
    pub last_heard: Option<Instant>,
    pub last_error: Option<String>,
    pub ops_received: u64,
    pub ops_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub snapshots_received: u64,
    pub snapshots_sent: u64,
    /// Progress of a full-state transfer in flight from this peer: (keys received, keys total).
    pub snapshot_progress: Option<(u64, u64)>,
}

impl LinkState {
    pub fn new(region: String) -> Self {
        LinkState {
            region,
            faults: LinkFaults::default(),
            upstream_connected: false,
            downstream_connected: false,
            last_heard: None,
            last_error: None,
            ops_received: 0,
            ops_sent: 0,
            bytes_received: 0,
            bytes_sent: 0,
            snapshots_received: 0,
            snapshots_sent: 0,
            snapshot_progress: None,
        }
    }
}

fn shape(node: &Node) -> Shape {
    match node.config.topology {
        crate::config::Topology::Mesh => Shape::Mesh,
        crate::config::Topology::Ring => Shape::Ring,
        crate::config::Topology::Star => {
            let hub = node
                .config
                .hub
                .as_deref()
                .and_then(|h| node.config.region(h))
                .map(|r| r.id)
                .unwrap_or(0);
            Shape::Star { hub }
        }
    }
}

fn region_ids(node: &Node) -> Vec<ReplicaId> {
    node.config.regions.iter().map(|r| r.id).collect()
}

/// The regions that pull from this node.
pub fn my_downstreams(node: &Node) -> Vec<ReplicaId> {
    concord_net::topology::downstreams(shape(node), &region_ids(node), node.region.id)
}

/// The regions this node pulls from.
pub fn my_upstreams(node: &Node) -> Vec<ReplicaId> {
    upstreams(shape(node), &region_ids(node), node.region.id)
}

pub(crate) fn identity(node: &Node) -> Identity {
    Identity {
        cluster: node.config.cluster.clone(),
        region: node.region.name.clone(),
        replica: node.region.id,
        secret: node.config.secret.clone(),
        config: node.config.cluster_config(),
    }
}

pub(crate) fn nonce(node: &Node) -> [u8; 16] {
    node.env.random.bytes16()
}

impl Node {
    pub fn link_faults(&self, peer: ReplicaId) -> LinkFaults {
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&peer)
            .map(|l| l.faults)
            .unwrap_or_default()
    }

    pub fn set_link_faults(&self, peer: ReplicaId, faults: LinkFaults) -> Result<(), String> {
        faults.validate()?;
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let link = links
            .get_mut(&peer)
            .ok_or_else(|| format!("no link to region id {peer}"))?;
        tracing::info!(peer = %link.region, ?faults, "link faults changed");
        link.faults = faults;
        Ok(())
    }

    pub fn with_link<T>(&self, peer: ReplicaId, f: impl FnOnce(&mut LinkState) -> T) -> Option<T> {
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&peer)
            .map(f)
    }

    pub fn links_snapshot(&self) -> BTreeMap<ReplicaId, LinkState> {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn partitioned(&self, peer: ReplicaId) -> bool {
        self.link_faults(peer).partitioned
    }

    /// Every region's applied vector as this node knows it (its own included).
    pub fn vector_matrix(&self) -> BTreeMap<ReplicaId, VersionVector> {
        self.with_engine(|e| {
            let mut m = e.peer_vectors().clone();
            m.insert(self.region.id, self.durable_applied());
            m
        })
    }

    fn observe_vectors(&self, from: ReplicaId, vectors: &BTreeMap<ReplicaId, VersionVector>) {
        let mut inner = self.lock();
        for (r, vv) in vectors {
            inner.engine.observe_peer(*r, vv);
        }
        drop(inner);
        // Heard from `from` itself, now. A vector relayed for another region may be old (from
        // before this node started): it proves nothing about that region's present history,
        // except for regions this node has no direct link with (a ring's or a star's far side).
        self.heard_from(from);
        let neighbours: Vec<ReplicaId> = my_upstreams(self).into_iter().chain(my_downstreams(self)).collect();
        for r in vectors.keys().filter(|r| !neighbours.contains(r)) {
            self.heard_from(*r);
        }
        self.with_link(from, |l| l.last_heard = Some(Instant::now()));
    }

    /// Time since the oldest op this node has that `peer` has not acknowledged was written (0 when
    /// the peer has everything), and how many ops it misses.
    pub fn lag(&self, peer: ReplicaId) -> (u64, u64) {
        let (mine, theirs) = self.with_engine(|e| {
            (
                e.applied().clone(),
                e.peer_vectors().get(&peer).cloned().unwrap_or_default(),
            )
        });
        let ops = mine.ops_ahead_of(&theirs);
        if ops == 0 {
            return (0, 0);
        }
        let now = self.now_ms();
        let mut oldest: Option<u64> = None;
        for (origin, have) in mine.iter() {
            let missing_from = theirs.get(origin);
            if have > missing_from {
                if let Ok(ops) = self.store().ops_since(origin, missing_from, 1) {
                    if let Some(op) = ops.first() {
                        let t = op.hlc.physical_ms();
                        oldest = Some(oldest.map_or(t, |o: u64| o.min(t)));
                    }
                }
            }
        }
        (oldest.map(|t| now.saturating_sub(t)).unwrap_or(0), ops)
    }
}

/// Silence longer than this drops a link: the base timeout plus whatever delay the link's faults
/// add (in both directions), so a slow simulated WAN is not mistaken for a dead one.
fn idle_timeout(node: &Node, peer: ReplicaId) -> Duration {
    let f = node.link_faults(peer);
    let extra = 2 * (f.delay_ms + f.jitter_ms + node.config.link_delay_ms) + concord_net::faults::RETRANSMIT_MS;
    LINK_IDLE_TIMEOUT + Duration::from_millis(extra)
}

/// A queue that holds each message for the link's current fault delay, in order, then hands it on.
fn delayed_channel(
    node: Arc<Node>,
    peer: ReplicaId,
    base_delay_ms: u64,
) -> (mpsc::Sender<Message>, mpsc::Receiver<Message>) {
    let (in_tx, mut in_rx) = mpsc::channel::<(Instant, Message)>(LINK_QUEUE_MESSAGES);
    let (out_tx, out_rx) = mpsc::channel::<Message>(LINK_QUEUE_MESSAGES);
    let (tx, mut rx) = mpsc::channel::<Message>(LINK_QUEUE_MESSAGES);
    // Stamp on entry.
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if in_tx.send((Instant::now(), m)).await.is_err() {
                return;
            }
        }
    });
    // Release in order, each no earlier than stamp + hold and no earlier than the one before.
    tokio::spawn(async move {
        let mut rng = FaultRng::new(node.env.random.next_u64() ^ (peer << 32));
        let mut last_release = Instant::now();
        while let Some((stamped, m)) = in_rx.recv().await {
            let faults = node.link_faults(peer);
            let hold = faults.hold_ms(base_delay_ms, rng.next_f64(), rng.next_f64());
            let release = (stamped + Duration::from_millis(hold)).max(last_release);
            last_release = release;
            // A message already due goes on at once: the timer rounds a deadline up to its next
            // millisecond tick, which would add ~1 ms to every hop of a link without delay.
            if release > Instant::now() {
                tokio::time::sleep_until(release).await;
            }
            if out_tx.send(m).await.is_err() {
                return;
            }
        }
    });
    (tx, out_rx)
}

/// Pump messages from a channel to the socket's write half.
fn spawn_writer(
    node: Arc<Node>,
    peer: ReplicaId,
    mut write: WriteHalf<BoxStream>,
    mut rx: mpsc::Receiver<Message>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let ops = if let Message::Ops(o) = &m { o.len() as u64 } else { 0 };
            // A peer that stops reading (black-holed, or stuck) must not hold this writer, and
            // the link's queue, forever: the write gets the link's idle timeout.
            let written = tokio::time::timeout(LINK_IDLE_TIMEOUT, write_message(&mut write, &m))
                .await
                .unwrap_or_else(|_| Err(WireError::Handshake("write timed out: the peer stopped reading".into())));
            match written {
                Ok(n) => {
                    node.with_link(peer, |l| {
                        l.bytes_sent += n as u64;
                        l.ops_sent += ops;
                    });
                }
                Err(e) => {
                    tracing::warn!(peer, error = %e, message = m.name(), "sending on a replication link failed");
                    return;
                }
            }
        }
    })
}

/// Pump messages from the socket's read half into a channel.
/// When this connection last received a frame, for its idle timeout (per connection: another
/// connection with the same peer being alive says nothing about this one).
#[derive(Clone)]
struct Heard(Arc<std::sync::Mutex<Instant>>);

impl Heard {
    fn new() -> Self {
        Heard(Arc::new(std::sync::Mutex::new(Instant::now())))
    }
    fn touch(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
    fn elapsed(&self) -> Duration {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
    }
}

fn spawn_reader(
    node: Arc<Node>,
    peer: ReplicaId,
    mut read: ReadHalf<BoxStream>,
    tx: mpsc::Sender<Message>,
    heard: Heard,
) -> tokio::task::JoinHandle<Result<(), WireError>> {
    tokio::spawn(async move {
        loop {
            let (m, n) = read_message(&mut read).await?;
            heard.touch();
            node.with_link(peer, |l| {
                l.bytes_received += n as u64;
                l.last_heard = Some(Instant::now());
            });
            if tx.send(m).await.is_err() {
                return Ok(());
            }
        }
    })
}

/// Start replication: the peer listener and one puller per upstream.
pub async fn start(node: Arc<Node>, stop: watch::Receiver<bool>) -> std::io::Result<()> {
    if node.config.regions.len() < 2 {
        return Ok(());
    }
    let listener = node.env.net.bind(node.region.peer).await?;
    tracing::info!(peer = %node.region.peer, upstreams = ?my_upstreams(&node), "replication listening");
    tokio::spawn(accept_loop(node.clone(), listener, stop.clone()));
    for up in my_upstreams(&node) {
        tokio::spawn(pull_loop(node.clone(), up, stop.clone()));
    }
    Ok(())
}

// ----- source side: serve subscribers ------------------------------------------------------------

async fn accept_loop(node: Arc<Node>, mut listener: Box<dyn crate::env::Listener>, mut stop: watch::Receiver<bool>) {
    loop {
        let (socket, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "peer accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::server::stopped(&mut stop) => return,
        };
        let node = node.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            match serve_subscriber(node.clone(), socket, stop).await {
                Ok(peer) => tracing::info!(peer = %peer.region, "downstream link closed"),
                Err((peer, e)) => {
                    let who = peer
                        .as_ref()
                        .map(|p| p.region.clone())
                        .unwrap_or_else(|| addr.to_string());
                    tracing::warn!(peer = %who, error = %e, "downstream link ended");
                    if let Some(p) = peer {
                        node.with_link(p.replica, |l| l.last_error = Some(e.to_string()));
                    }
                }
            }
        });
    }
}

type LinkResult = Result<PeerInfo, (Option<PeerInfo>, WireError)>;

async fn serve_subscriber(node: Arc<Node>, mut socket: BoxStream, mut stop: watch::Receiver<bool>) -> LinkResult {
    let peer = tokio::time::timeout(
        Duration::from_secs(5),
        handshake(&mut socket, &identity(&node), false, nonce(&node)),
    )
    .await
    .map_err(|_| (None, WireError::Handshake("timed out".into())))?
    .map_err(|e| (None, e))?;
    let known = node
        .config
        .regions
        .iter()
        .any(|r| r.id == peer.replica && r.name == peer.region);
    if !known {
        let reason = format!(
            "region {} (id {}) is not in this cluster's config",
            peer.region, peer.replica
        );
        let _ = write_message(&mut socket, &Message::Refused { reason: reason.clone() }).await;
        return Err((Some(peer), WireError::Handshake(reason)));
    }
    if node.partitioned(peer.replica) {
        return Err((Some(peer), WireError::Handshake("link is partitioned (admin)".into())));
    }
    let p = Some(peer.clone());
    let (first, _) = tokio::time::timeout(Duration::from_secs(5), read_message(&mut socket))
        .await
        .map_err(|_| (p.clone(), WireError::Handshake("no subscribe".into())))?
        .map_err(|e| (p.clone(), e))?;
    if let Message::Forward { .. } = first {
        // A forwarding connection: this node is the home of the keys it carries.
        let (read, write) = tokio::io::split(socket);
        crate::routing::serve_forwards(node.clone(), peer.replica, first, read, write).await;
        return Ok(peer);
    }
    if let Message::AaeRequest(_) = first {
        // An anti-entropy comparison the peer started: its own connection (crate::aae).
        crate::aae::serve(node.clone(), peer.replica, first, socket).await;
        return Ok(peer);
    }
    let Message::Subscribe { applied, writer } = first else {
        return Err((p, WireError::Handshake("expected subscribe".into())));
    };
    tracing::info!(peer = %peer.region, from = %applied, "downstream subscribed");
    {
        let mut inner = node.lock();
        inner.engine.observe_peer(peer.replica, &applied);
    }
    node.heard_from(peer.replica);
    node.with_link(peer.replica, |l| l.downstream_connected = true);
    let result = stream_to(node.clone(), &peer, socket, applied, writer, &mut stop).await;
    node.with_link(peer.replica, |l| l.downstream_connected = false);
    result.map(|_| peer.clone()).map_err(|e| (Some(peer), e))
}

/// Stream every op the subscriber misses, then live ops, with vectors on idle ticks.
async fn stream_to(
    node: Arc<Node>,
    peer: &PeerInfo,
    socket: BoxStream,
    applied: VersionVector,
    subscriber_writer: ReplicaId,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), WireError> {
    let (read, write) = tokio::io::split(socket);
    let (out_tx, out_rx) = delayed_channel(node.clone(), peer.replica, node.config.link_delay_ms);
    let writer = spawn_writer(node.clone(), peer.replica, write, out_rx);
    let (in_tx, mut in_rx) = mpsc::channel(LINK_QUEUE_MESSAGES);
    let heard = Heard::new();
    let reader = spawn_reader(node.clone(), peer.replica, read, in_tx, heard.clone());
    let mut commits = node.subscribe_commits();
    let mut cursor = applied;
    let mut sent_batches = 0u64;
    let mut acked_here = VersionVector::new();
    let mut tick = tokio::time::interval(HEARTBEAT);
    // Pub/sub messages (published here, or relayed) go on this stream among the ops.
    let mut feed = node.pubsub.feed();
    // Messages published here waiting for the writes made before them to be sent first.
    let mut held = Held::default();
    let peer_upstreams = upstreams(shape(&node), &region_ids(&node), peer.replica);
    let result = async {
        loop {
            if node.partitioned(peer.replica) {
                return Err(WireError::Handshake("link partitioned (admin)".into()));
            }
            if heard.elapsed() > idle_timeout(&node, peer.replica) {
                return Err(WireError::Handshake("subscriber silent: dropping the link".into()));
            }
            send_held(&node, &mut held, &cursor, &out_tx)?;
            send_published(&node, &mut feed, None, peer.replica, &peer_upstreams, &out_tx, &mut held, &cursor)?;
            // Read acks and vectors even while a long catch-up keeps this loop busy sending.
            loop {
                match in_rx.try_recv() {
                    Ok(Message::Ack { applied }) => {
                        node.lock().engine.observe_peer(peer.replica, &applied);
                        node.heard_from(peer.replica);
                        acked_here.join(&applied);
                    }
                    Ok(Message::Vectors(v)) => node.observe_vectors(peer.replica, &v),
                    Ok(other) => {
                        return Err(WireError::Handshake(format!("unexpected {} from subscriber", other.name())))
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return Err(WireError::Closed),
                }
            }
            // Skip what the subscriber acknowledged on this connection (it may get ops by other
            // paths). Never its vector as relayed by others: a region that lost its data dir
            // reports less than it once had, and only what it says itself is true now.
            cursor.join(&acked_here);
            send_held(&node, &mut held, &cursor, &out_tx)?;
            let stalled = node.env.planted_bug == Some(concord_core::PlantedBug::StallLinks) && sent_batches > 0;
            // The op log is read off the async workers (redb blocks).
            let (n, c) = (node.clone(), cursor.clone());
            let read = node
                .blocking(move || next_batch(&n, &c, subscriber_writer))
                .await
                .map_err(|e| WireError::Handshake(format!("reading the op log failed: {e}")))?;
            match read {
                Ok(batch) if !batch.is_empty() && !stalled => {
                    sent_batches += 1;
                    for op in &batch {
                        cursor.add(op.dot());
                    }
                    out_tx.send(Message::Ops(batch)).await.map_err(|_| WireError::Closed)?;
                    send_held(&node, &mut held, &cursor, &out_tx)?;
                    continue;
                }
                Ok(_) => {}
                Err(BatchError::Truncated) => {
                    cursor = send_snapshot(&node, peer, &out_tx).await?;
                    continue;
                }
                Err(BatchError::Store(e)) => {
                    return Err(WireError::Handshake(format!("reading the op log failed: {e}")));
                }
            }
            // Wait for something to do. A pub/sub message is sent and waited past: it changes
            // nothing in the op log, which is read again only after a commit, an ack or a tick.
            loop {
                tokio::select! {
                    c = commits.changed() => { if c.is_err() { return Ok(()); } }
                    _ = tick.tick() => {
                        out_tx.send(Message::Vectors(node.vector_matrix())).await.map_err(|_| WireError::Closed)?;
                    }
                    m = feed.recv() => {
                        send_published(&node, &mut feed, Some(m), peer.replica, &peer_upstreams, &out_tx, &mut held, &cursor)?;
                        continue;
                    }
                    m = in_rx.recv() => match m {
                        Some(Message::Ack { applied }) => {
                            node.lock().engine.observe_peer(peer.replica, &applied);
                            acked_here.join(&applied);
                        }
                        Some(Message::Vectors(v)) => node.observe_vectors(peer.replica, &v),
                        Some(other) => return Err(WireError::Handshake(format!("unexpected {} from subscriber", other.name()))),
                        None => return Err(WireError::Closed),
                    },
                    _ = crate::server::stopped(stop) => return Ok(()),
                }
                break;
            }
        }
    }
    .await;
    reader.abort();
    drop(out_tx);
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    result
}

/// Most pub/sub messages, and bytes of them, one link holds back until the writes published
/// before them are sent; beyond either the oldest of the origin at hand is dropped (counted in
/// `concord_pubsub_peer_dropped`).
const MAX_HELD_MESSAGES: usize = 4096;
const MAX_HELD_BYTES: usize = 16 << 20;
/// A held message whose write is still not sent after this long (a commit that failed, a link
/// far behind) is dropped (counted): at most once, never after its writes.
const MAX_HELD_FOR: Duration = Duration::from_secs(30);

/// Pub/sub messages a link holds until it has sent the write each follows
/// ([`PeerMessage::after`]), per origin (messages keep their order per origin, and one origin's
/// wait delays no other's), with when each was held.
#[derive(Default)]
struct Held {
    by_origin: BTreeMap<ReplicaId, VecDeque<(tokio::time::Instant, Arc<PeerMessage>)>>,
    len: usize,
    bytes: usize,
}

/// Pub/sub messages from an upstream waiting here until this node has applied the write each
/// follows ([`PeerMessage::after`]): the link sent that write first, but it may wait in the
/// causal buffer for an op of a third region (a mesh sends each region's ops on its own link).
/// Per origin, with when each arrived and whether it is to be relayed; bounded as [`Held`].
#[derive(Default)]
struct Waiting {
    by_origin: BTreeMap<ReplicaId, VecDeque<(tokio::time::Instant, bool, PeerMessage)>>,
    len: usize,
    bytes: usize,
}

impl Waiting {
    /// Deliver `m` now if its write is applied here and nothing of its origin waits, else queue
    /// it (dropping this origin's oldest when full).
    fn arrive(&mut self, node: &Node, relay: bool, m: PeerMessage) {
        let queue = self.by_origin.entry(m.origin).or_default();
        if queue.is_empty() && applied_here(node, &m, &node.applied()) {
            node.pubsub.receive(relay, m);
            return;
        }
        let size = held_size(&m);
        while self.len >= MAX_HELD_MESSAGES || self.bytes + size > MAX_HELD_BYTES {
            let Some((_, _, old)) = queue.pop_front() else { break };
            self.len -= 1;
            self.bytes -= held_size(&old);
            node.pubsub.stats.peer_dropped.fetch_add(1, Ordering::Relaxed);
        }
        if self.len >= MAX_HELD_MESSAGES || self.bytes + size > MAX_HELD_BYTES {
            node.pubsub.stats.peer_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        queue.push_back((tokio::time::Instant::now(), relay, m));
        self.len += 1;
        self.bytes += size;
    }

    /// Deliver, in order per origin, the messages whose writes are applied here now; drop those
    /// that waited longer than [`MAX_HELD_FOR`] (counted).
    fn release(&mut self, node: &Node) {
        if self.len == 0 {
            return;
        }
        let applied = node.applied();
        let now = tokio::time::Instant::now();
        for queue in self.by_origin.values_mut() {
            while let Some((at, _, m)) = queue.front() {
                let ready = applied_here(node, m, &applied);
                if !ready && now.duration_since(*at) < MAX_HELD_FOR {
                    break;
                }
                let (_, relay, m) = queue.pop_front().expect("checked");
                self.len -= 1;
                self.bytes -= held_size(&m);
                if ready {
                    node.pubsub.receive(relay, m);
                } else {
                    node.pubsub.stats.peer_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.by_origin.retain(|_, q| !q.is_empty());
    }
}

/// Whether this node has applied the writes message `m` follows (`applied`: its vector): the
/// publisher's own, and those its connection had forwarded to homes.
fn applied_here(node: &Node, m: &PeerMessage, applied: &VersionVector) -> bool {
    let covered = |d: &concord_core::Dot| d.counter == 0 || applied.covers(*d);
    (covered(&m.after) && m.home_writes.iter().all(covered))
        || node.env.planted_bug == Some(concord_core::PlantedBug::PublishAhead)
}

/// What a held message counts against [`MAX_HELD_BYTES`].
fn held_size(m: &PeerMessage) -> usize {
    m.channel.len() + m.payload.len() + 64
}

/// Whether the link has sent the write message `m` follows (`sent`: what it has sent).
fn may_send(node: &Node, m: &PeerMessage, sent: &VersionVector) -> bool {
    m.after.counter == 0 || sent.covers(m.after) || node.env.planted_bug == Some(concord_core::PlantedBug::PublishAhead)
}

/// Send the held messages whose writes the link has sent (`sent`), in order per origin; drop
/// those held longer than [`MAX_HELD_FOR`].
fn send_held(node: &Node, held: &mut Held, sent: &VersionVector, out: &mpsc::Sender<Message>) -> Result<(), WireError> {
    if held.len == 0 {
        return Ok(());
    }
    let now = tokio::time::Instant::now();
    for queue in held.by_origin.values_mut() {
        while let Some((at, m)) = queue.front() {
            let send = may_send(node, m, sent);
            if !send && now.duration_since(*at) < MAX_HELD_FOR {
                break;
            }
            let (_, m) = queue.pop_front().expect("checked");
            held.len -= 1;
            held.bytes -= held_size(&m);
            if send {
                send_one(node, &m, out)?;
            } else {
                node.pubsub.stats.peer_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    held.by_origin.retain(|_, q| !q.is_empty());
    Ok(())
}

/// Put one pub/sub message on the link's send queue; a full queue loses it (counted).
fn send_one(node: &Node, m: &PeerMessage, out: &mpsc::Sender<Message>) -> Result<(), WireError> {
    let stats = &node.pubsub.stats;
    let msg = Message::Publish {
        origin: m.origin,
        incarnation: m.incarnation,
        seq: m.seq,
        shard: m.shard,
        channel: m.channel.clone(),
        message: m.payload.clone(),
        after: m.after,
        home_writes: m.home_writes.clone(),
    };
    match out.try_send(msg) {
        Ok(()) => {
            stats.sent_to_peers.fetch_add(1, Ordering::Relaxed);
            if m.origin != node.pubsub.origin() {
                stats.relayed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            stats.peer_dropped.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Err(WireError::Closed),
    }
}

/// Pass pub/sub messages from the node's fan-out feed (`first`, then whatever else is waiting)
/// to this downstream's send queue, those it should get ([`crate::pubsub::sends_to`]). A message
/// that follows a write this link has not sent yet (`sent`: what it has sent) waits in `held`,
/// and every later one of its origin behind it, until that write is sent ([`send_held`]).
/// Never waits: a full send queue, a full `held`, or a feed this link fell behind on, loses
/// messages (counted).
#[allow(clippy::too_many_arguments)]
fn send_published(
    node: &Node,
    feed: &mut broadcast::Receiver<Arc<PeerMessage>>,
    first: Option<Result<Arc<PeerMessage>, broadcast::error::RecvError>>,
    downstream: ReplicaId,
    downstream_upstreams: &[ReplicaId],
    out: &mpsc::Sender<Message>,
    held: &mut Held,
    sent: &VersionVector,
) -> Result<(), WireError> {
    let stats = &node.pubsub.stats;
    let me = node.pubsub.origin();
    let mut next = first.map(|r| {
        r.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => broadcast::error::TryRecvError::Lagged(n),
            broadcast::error::RecvError::Closed => broadcast::error::TryRecvError::Closed,
        })
    });
    loop {
        let item = match next.take() {
            Some(r) => r,
            None => feed.try_recv(),
        };
        match item {
            Ok(m) => {
                if !crate::pubsub::sends_to(me, m.origin, downstream, downstream_upstreams) {
                    continue;
                }
                let queue = held.by_origin.entry(m.origin).or_default();
                if queue.is_empty() && may_send(node, &m, sent) {
                    send_one(node, &m, out)?;
                    continue;
                }
                let size = held_size(&m);
                // Full: make room from this origin's oldest, or drop this one.
                while held.len >= MAX_HELD_MESSAGES || held.bytes + size > MAX_HELD_BYTES {
                    let Some((_, old)) = queue.pop_front() else { break };
                    held.len -= 1;
                    held.bytes -= held_size(&old);
                    stats.peer_dropped.fetch_add(1, Ordering::Relaxed);
                }
                if held.len >= MAX_HELD_MESSAGES || held.bytes + size > MAX_HELD_BYTES {
                    stats.peer_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                queue.push_back((tokio::time::Instant::now(), m));
                held.len += 1;
                held.bytes += size;
            }
            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                stats.peer_dropped.fetch_add(n, Ordering::Relaxed);
                tracing::debug!(
                    peer = downstream,
                    lost = n,
                    "a link fell behind the pub/sub fan-out: messages lost"
                );
            }
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => return Ok(()),
        }
    }
}

enum BatchError {
    /// The log no longer holds what the subscriber needs: a full-state transfer follows.
    Truncated,
    /// The op log could not be read: the link ends (and is retried) rather than stall silently.
    Store(String),
}

/// The next ops after `cursor` from the op log, merged across origins by HLC (an order that
/// respects causality), at most [`MAX_OPS_PER_MESSAGE`] and about [`MAX_MESSAGE_BYTES`]. Own ops
/// only up to what is fsynced; never the subscriber's current writer's (it made them all).
///
/// The cursor moves to the highest seq sent per origin, so what is sent of each origin must be
/// contiguous from the cursor: an origin whose HLCs are not monotone in seq (ops recovered by a
/// full-state transfer, a slow clock) could otherwise have a middle op cut by the HLC order and
/// skipped for good.
fn next_batch(node: &Node, cursor: &VersionVector, subscriber_writer: ReplicaId) -> Result<Vec<Op>, BatchError> {
    let mine = node.applied();
    let durable_own = node.durable_own_seq.load(Ordering::Acquire);
    let mut all = Vec::new();
    for (origin, have) in mine.iter() {
        if origin == subscriber_writer {
            continue;
        }
        let limit_seq = if origin == node.writer() {
            have.min(durable_own)
        } else {
            have
        };
        let from = cursor.get(origin);
        if limit_seq <= from {
            continue;
        }
        match node.store().ops_since(origin, from, MAX_OPS_PER_MESSAGE) {
            Ok(ops) => all.extend(ops.into_iter().filter(|o| o.seq <= limit_seq)),
            Err(concord_store::StoreError::Truncated { .. }) => return Err(BatchError::Truncated),
            Err(e) => {
                tracing::warn!(error = %e, "reading the op log failed");
                return Err(BatchError::Store(e.to_string()));
            }
        }
    }
    if all.is_empty() {
        return Ok(all);
    }
    let by_seq = {
        let mut v = all.clone();
        v.sort_by_key(|o| (o.origin, o.seq));
        v
    };
    let max_ops = node
        .config
        .testing
        .max_batch_ops
        .unwrap_or(MAX_OPS_PER_MESSAGE)
        .clamp(1, MAX_OPS_PER_MESSAGE);
    if node.config.testing.batches_by_origin {
        return Ok(cut_contiguous(by_seq, cursor, max_ops));
    }
    all.sort_by_key(|o| (o.hlc, o.origin, o.seq));
    let batch = cut_contiguous(all, cursor, max_ops);
    if !batch.is_empty() {
        return Ok(batch);
    }
    // Every origin's next op sorts after a later op of its own: send in seq order instead
    // (the receiver's causal buffer restores causal order).
    Ok(cut_contiguous(by_seq, cursor, max_ops))
}

/// Cut `ops` to the message limits, then keep of each origin only the ops contiguous from the
/// cursor.
fn cut_contiguous(mut ops: Vec<Op>, cursor: &VersionVector, max_ops: usize) -> Vec<Op> {
    ops.truncate(max_ops);
    // Cap the message by bytes too (at least one op), so a batch of large values stays a
    // reasonable frame; the rest follows in the next message.
    let mut bytes = 0;
    let keep = ops
        .iter()
        .take_while(|op| {
            bytes += op.encode().len();
            bytes <= MAX_MESSAGE_BYTES
        })
        .count()
        .max(1);
    ops.truncate(keep);
    let mut seqs: BTreeMap<ReplicaId, std::collections::BTreeSet<u64>> = BTreeMap::new();
    for op in &ops {
        seqs.entry(op.origin).or_default().insert(op.seq);
    }
    let upto: BTreeMap<ReplicaId, u64> = seqs
        .into_iter()
        .map(|(origin, set)| {
            let mut next = cursor.get(origin) + 1;
            while set.contains(&next) {
                next += 1;
            }
            (origin, next - 1)
        })
        .collect();
    ops.retain(|op| op.seq <= upto[&op.origin]);
    ops
}

async fn send_snapshot(node: &Node, peer: &PeerInfo, out: &mpsc::Sender<Message>) -> Result<VersionVector, WireError> {
    let (vector, states) = node.with_engine(|e| e.snapshot());
    // Never ship own writes that are not on disk yet (a crash would number them again).
    let own = vector.get(node.writer());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while node.durable_own_seq.load(Ordering::Acquire) < own {
        if tokio::time::Instant::now() > deadline {
            return Err(WireError::Handshake("own writes not yet durable for a snapshot".into()));
        }
        node.ring();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let total = states.len() as u64;
    tracing::info!(peer = %peer.region, keys = total, vector = %vector, "peer is behind the op log: full-state transfer");
    out.send(Message::SnapshotBegin {
        vector: vector.clone(),
        keys: total,
    })
    .await
    .map_err(|_| WireError::Closed)?;
    let mut sent = 0u64;
    let mut chunk = Vec::with_capacity(SNAPSHOT_CHUNK_KEYS);
    let mut chunk_bytes = 0;
    for kv in states {
        chunk_bytes += kv.0.len() + kv.1.encode().len();
        chunk.push(kv);
        if chunk.len() == SNAPSHOT_CHUNK_KEYS || chunk_bytes >= MAX_MESSAGE_BYTES {
            chunk_bytes = 0;
            sent += chunk.len() as u64;
            out.send(Message::SnapshotChunk(std::mem::take(&mut chunk)))
                .await
                .map_err(|_| WireError::Closed)?;
            tracing::debug!(peer = %peer.region, sent, total, "snapshot progress");
        }
    }
    if !chunk.is_empty() {
        out.send(Message::SnapshotChunk(chunk))
            .await
            .map_err(|_| WireError::Closed)?;
    }
    out.send(Message::SnapshotEnd { vector: vector.clone() })
        .await
        .map_err(|_| WireError::Closed)?;
    node.with_link(peer.replica, |l| l.snapshots_sent += 1);
    tracing::info!(peer = %peer.region, keys = total, "full-state transfer sent");
    Ok(vector)
}

// ----- subscriber side: pull from an upstream ----------------------------------------------------

async fn pull_loop(node: Arc<Node>, upstream: ReplicaId, mut stop: watch::Receiver<bool>) {
    let Some(addr) = node.config.regions.iter().find(|r| r.id == upstream).map(|r| r.peer) else {
        return;
    };
    let name = node
        .config
        .regions
        .iter()
        .find(|r| r.id == upstream)
        .map(|r| r.name.clone())
        .unwrap_or_default();
    let mut backoff = BACKOFF_MIN;
    loop {
        if *stop.borrow() {
            return;
        }
        if node.partitioned(upstream) {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                _ = crate::server::stopped(&mut stop) => return,
            }
        }
        let started = Instant::now();
        let result = pull_once(&node, upstream, addr, &mut stop).await;
        node.with_link(upstream, |l| {
            l.upstream_connected = false;
            l.snapshot_progress = None;
        });
        match result {
            Ok(()) => return,
            Err(e) => {
                node.with_link(upstream, |l| l.last_error = Some(e.to_string()));
                tracing::info!(upstream = %name, error = %e, "upstream link down; reconnecting");
            }
        }
        if started.elapsed() > Duration::from_secs(5) {
            backoff = BACKOFF_MIN;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = crate::server::stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn pull_once(
    node: &Arc<Node>,
    upstream: ReplicaId,
    addr: std::net::SocketAddr,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), WireError> {
    let mut socket = tokio::time::timeout(Duration::from_secs(3), node.env.net.connect(addr))
        .await
        .map_err(|_| WireError::Handshake(format!("connect to {addr} timed out")))??;
    let peer = tokio::time::timeout(
        Duration::from_secs(5),
        handshake(&mut socket, &identity(node), true, nonce(node)),
    )
    .await
    .map_err(|_| WireError::Handshake("timed out".into()))??;
    if peer.replica != upstream {
        return Err(WireError::Handshake(format!(
            "expected region id {upstream}, reached {}",
            peer.region
        )));
    }
    // What this node has made durable, not what it holds in memory: the upstream records it as
    // this region's applied vector (and gossips it) for GC, log truncation and WAIT, which must
    // not count on ops a crash here can still lose (F1). Ops it already holds come again and are
    // dropped as duplicates.
    let applied = node.durable_applied();
    write_message(
        &mut socket,
        &Message::Subscribe {
            applied: applied.clone(),
            writer: node.writer(),
        },
    )
    .await?;
    tracing::info!(upstream = %peer.region, from = %applied, "subscribed");
    // Connected once the upstream answers the subscription (its first vectors or ops): an
    // upstream that refuses it (a partitioned link) closes the connection instead, and the link
    // must not read as connected meanwhile.
    let mut answered = false;

    let (read, write) = tokio::io::split(socket);
    let (out_tx, out_rx) = delayed_channel(node.clone(), upstream, node.config.link_delay_ms);
    let writer = spawn_writer(node.clone(), upstream, write, out_rx);
    // Inbound: the link's faults apply to this direction too ("both directions at this node").
    let (raw_tx, mut raw_rx) = mpsc::channel(LINK_QUEUE_MESSAGES);
    let heard = Heard::new();
    let reader = spawn_reader(node.clone(), upstream, read, raw_tx, heard.clone());
    let (held_tx, mut held_rx) = delayed_channel(node.clone(), upstream, 0);
    let forward = tokio::spawn(async move {
        while let Some(m) = raw_rx.recv().await {
            if held_tx.send(m).await.is_err() {
                return;
            }
        }
    });
    let mut tick = tokio::time::interval(HEARTBEAT);
    let mut snapshot: Option<(VersionVector, u64, u64)> = None;
    // Ops are applied (and readable) as they arrive; their ack waits for their commit without
    // holding up the next message. The last ticket applied here that is not committed yet:
    let mut commits = node.subscribe_commits();
    let mut unacked: Option<u64> = None;
    let mut waiting = Waiting::default();
    let result: Result<(), WireError> = async {
        loop {
            // Messages whose writes another link's ops (or this one's) have let apply since.
            waiting.release(node);
            if node.partitioned(upstream) {
                return Err(WireError::Handshake("link partitioned (admin)".into()));
            }
            if heard.elapsed() > idle_timeout(node, upstream) {
                return Err(WireError::Handshake("upstream silent: dropping the link".into()));
            }
            let msg = tokio::select! {
                m = held_rx.recv() => m.ok_or(WireError::Closed)?,
                c = commits.changed(), if unacked.is_some() => {
                    c.map_err(|_| WireError::Closed)?;
                    let committed = match &*commits.borrow_and_update() {
                        CommitState::Committed(t) => *t,
                        CommitState::Failed(e) => {
                            return Err(WireError::Handshake(NodeError::WritesRefused(e.clone()).to_string()))
                        }
                    };
                    if unacked.is_some_and(|t| committed >= t) {
                        unacked = None;
                    }
                    // Every commit while ops are outstanding: a steady stream still gets acks.
                    out_tx.send(Message::Ack { applied: node.durable_applied() }).await.map_err(|_| WireError::Closed)?;
                    continue;
                }
                _ = tick.tick() => {
                    out_tx.send(Message::Ack { applied: node.durable_applied() }).await.map_err(|_| WireError::Closed)?;
                    out_tx.send(Message::Vectors(node.vector_matrix())).await.map_err(|_| WireError::Closed)?;
                    continue;
                }
                _ = crate::server::stopped(stop) => return Ok(()),
            };
            if !answered {
                answered = true;
                node.with_link(upstream, |l| {
                    l.upstream_connected = true;
                    l.last_error = None;
                });
            }
            match msg {
                Message::Ops(ops) => {
                    let n = ops.len() as u64;
                    let mut catch_up = false;
                    // Bounded like client writes: a receiver faster than the disk waits here, and
                    // the upstream's queue fills.
                    node.wait_for_space()
                        .await
                        .map_err(|e| WireError::Handshake(e.to_string()))?;
                    let engine_now = node.now_ms();
                    let ticket = node.submit(|engine, out| {
                        let now = engine_now;
                        for op in ops {
                            engine.receive(op, now, out);
                        }
                        catch_up = out.catch_up;
                    });
                    node.with_link(upstream, |l| l.ops_received += n);
                    if catch_up {
                        // The causal buffer overflowed: reconnect and subscribe from what we have
                        // (acknowledged once durable).
                        if let Some(t) = ticket.or(unacked) {
                            node.wait_committed(t)
                                .await
                                .map_err(|e| WireError::Handshake(e.to_string()))?;
                        }
                        out_tx
                            .send(Message::Ack {
                                applied: node.durable_applied(),
                            })
                            .await
                            .map_err(|_| WireError::Closed)?;
                        return Err(WireError::Handshake("causal buffer full: catching up again".into()));
                    }
                    match ticket {
                        Some(t) => {
                            node.ring();
                            unacked = Some(t);
                        }
                        // Nothing new (duplicates): nothing to wait for.
                        None if unacked.is_none() => {
                            out_tx
                                .send(Message::Ack {
                                    applied: node.durable_applied(),
                                })
                                .await
                                .map_err(|_| WireError::Closed)?;
                        }
                        None => {}
                    }
                }
                Message::Vectors(v) => {
                    node.observe_vectors(upstream, &v);
                }
                Message::SnapshotBegin { vector, keys } => {
                    tracing::info!(upstream = %peer.region, keys, vector = %vector, "receiving full-state transfer");
                    node.with_link(upstream, |l| l.snapshot_progress = Some((0, keys)));
                    let _ = node.submit(|engine, _| engine.begin_snapshot(upstream, &vector));
                    snapshot = Some((vector, 0, keys));
                }
                Message::SnapshotChunk(states) => {
                    let Some((_, got, total)) = snapshot.as_mut() else {
                        return Err(WireError::Handshake("snapshot chunk outside a snapshot".into()));
                    };
                    *got += states.len() as u64;
                    let (g, t) = (*got, *total);
                    let mut rejected = Vec::new();
                    let ticket = node.submit(|engine, out| rejected = engine.merge_transfer(upstream, states, out));
                    if !rejected.is_empty() {
                        tracing::error!(
                            upstream = %peer.region,
                            count = rejected.len(),
                            first = ?rejected.first(),
                            "full-state transfer carried invalid key states; they were not merged"
                        );
                    }
                    if let Some(t) = ticket {
                        node.wait_committed(t)
                            .await
                            .map_err(|e| WireError::Handshake(e.to_string()))?;
                    }
                    node.with_link(upstream, |l| l.snapshot_progress = Some((g, t)));
                    tracing::info!(upstream = %peer.region, received = g, total = t, "full-state transfer progress");
                }
                Message::SnapshotEnd { vector } => {
                    if snapshot.take().is_none() {
                        return Err(WireError::Handshake("snapshot end outside a snapshot".into()));
                    }
                    let now = node.now_ms();
                    // Before the engine raises its vector: finishing drains the causal buffer, and
                    // the ops it applies come after the snapshot in the observed order.
                    if let Some(observe) = &node.env.observer {
                        observe(crate::env::Observed::SnapshotMerged(&vector));
                    }
                    let ticket = node.submit(|engine, out| engine.finish_transfer(upstream, &vector, now, out));
                    if let Some(t) = ticket {
                        node.wait_committed(t)
                            .await
                            .map_err(|e| WireError::Handshake(e.to_string()))?;
                    }
                    // The log now has a gap below the snapshot's vector: mark it truncated there, so
                    // a downstream behind it gets a snapshot from here rather than a stream with
                    // a hole.
                    for (origin, upto) in vector.iter().filter(|(o, _)| *o != node.writer()) {
                        if let Err(e) = node.store().mark_transferred(origin, upto) {
                            tracing::warn!(error = %e, origin, upto, "marking the log after a snapshot failed");
                        }
                    }
                    node.with_link(upstream, |l| {
                        l.snapshots_received += 1;
                        l.snapshot_progress = None;
                    });
                    tracing::info!(upstream = %peer.region, vector = %vector, "full-state transfer complete");
                    out_tx
                        .send(Message::Ack {
                            applied: node.durable_applied(),
                        })
                        .await
                        .map_err(|_| WireError::Closed)?;
                }
                Message::Publish {
                    origin,
                    incarnation,
                    seq,
                    shard,
                    channel,
                    message,
                    after,
                    home_writes,
                } => {
                    // Passed on only if a downstream cannot get it from its origin directly.
                    let me = node.region.id;
                    let relay = my_downstreams(node)
                        .into_iter()
                        .any(|d| crate::pubsub::sends_to(me, origin, d, &upstreams(shape(node), &region_ids(node), d)));
                    waiting.arrive(
                        node,
                        relay,
                        PeerMessage {
                            origin,
                            incarnation,
                            seq,
                            shard,
                            channel,
                            payload: message,
                            after,
                            home_writes,
                        },
                    );
                }
                Message::Refused { reason } => return Err(WireError::Handshake(format!("refused: {reason}"))),
                other => {
                    return Err(WireError::Handshake(format!(
                        "unexpected {} from upstream",
                        other.name()
                    )))
                }
            }
        }
    }
    .await;
    reader.abort();
    forward.abort();
    drop(out_tx);
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    result
}
