//! Anti-entropy between regions (DESIGN §8.2): divergence is visible and repaired.
//!
//! Every `[anti_entropy] interval_ms` (default 30 s; 0 turns it off) a node compares its key
//! states with each region it pulls from (its upstreams: every other region in a mesh, its
//! neighbours in a ring or star, so every link of the topology is compared from one end or both).
//! A comparison is one connection of its own to the peer's replication port (authenticated by the
//! same handshake; the first message, [`Message::AaeRequest`], tells the peer what it is for, like
//! `Forward` for forwarded writes), so it never holds up the op stream:
//!
//! 1. descend the peer's Merkle tree from the root ([`concord_core::merkle::Descent`]), asking only
//!    for the children of nodes that differ, down to the leaves;
//! 2. ask for the peer's key summaries (key, hash, context) of the differing leaves (at most
//!    [`MAX_LEAVES_PER_ROUND`] per round; the rest waits for the next round) and work out which
//!    keys differ although both sides applied the same ops on them
//!    ([`concord_core::merkle::plan`]);
//! 3. ask for the peer's states of those keys and join them into ours
//!    ([`concord_core::merkle::repair`]), then send ours of them; the peer joins them and answers
//!    how many keys it repaired.
//!
//! Both sides keep per-peer figures (the last comparison, leaves that differed, keys repaired),
//! shown in `/v1/status` (`anti_entropy`) and `/metrics` (`concord_aae_*`). A key repaired means
//! two regions that had applied the same ops on it held different data: a bug or bit rot, logged
//! as a warning. Keys that differ only because ops are still in flight are left to replication.
//!
//! The connection honours an admin partition of the link (it is refused, and an exchange in
//! progress stops), but not the simulated delay or loss, which apply to the op stream.
//!
//! Also here: `state_digest` for the status model, and the test hook that corrupts a key on
//! purpose (`[testing] hooks = true`).

use crate::env::BoxStream;
use crate::node::{Node, NodeError};
use bytes::Bytes;
use concord_core::merkle::{self, Descent, Repair, Tree};
use concord_core::{Engine, KeyState, ReplicaId, VersionVector};
use concord_net::frame::{read_message, write_message};
use concord_net::handshake::handshake;
use concord_net::wire::WireError;
use concord_net::{AaeRequest, Message};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{ReadHalf, WriteHalf};

type OwnedReadHalf = ReadHalf<BoxStream>;
type OwnedWriteHalf = WriteHalf<BoxStream>;
use tokio::sync::watch;
use tokio::time::Instant;

/// Differing leaves whose keys are compared in one round, at most (64 of 1,024: a round ships the
/// summaries of at most about 1/16 of the keys; a larger difference is repaired over several
/// rounds).
pub const MAX_LEAVES_PER_ROUND: usize = 64;
/// Keys per `AaeStates` message, and per `AaeRequest::States`, at most.
pub const CHUNK_KEYS: usize = 1_000;
/// Key summaries per `AaeKeys` message, at most.
pub const SUMMARY_CHUNK_KEYS: usize = 10_000;
/// Bytes of key states per `AaeStates` message (or of summaries per `AaeKeys`), roughly (one key
/// always goes, whatever its size).
pub const CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Connecting and the handshake, at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One answer from the peer, at most.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// A whole comparison, at most.
const ROUND_TIMEOUT: Duration = Duration::from_secs(120);

/// Anti-entropy figures for one peer (comparisons this node started and ones the peer started).
#[derive(Clone, Debug, Default)]
pub struct PeerAae {
    /// Comparisons completed.
    pub rounds: u64,
    /// Wall-clock time of the last completed comparison, ms since the Unix epoch.
    pub last_comparison_ms: Option<u64>,
    /// Leaves (key ranges) that differed in the last comparison.
    pub last_leaves_differing: u64,
    /// Keys repaired here in the last comparison.
    pub last_keys_repaired: u64,
    /// Leaves (key ranges) in which keys were repaired here in the last comparison.
    pub last_leaves_repaired: u64,
    /// Keys that differed in the last comparison only because ops were still in flight.
    pub last_keys_in_flight: u64,
    /// Keys repaired here from this peer's states, in all.
    pub keys_repaired: u64,
    /// Leaves (key ranges) repaired here from this peer's states, in all (a leaf counts once per
    /// comparison).
    pub leaves_repaired: u64,
    /// Comparisons that repaired at least one key here.
    pub repairs: u64,
    /// Keys whose join here only brought back string tombstones / expiry entries this region had
    /// garbage-collected as settled (the peer still held them under a write from a region that
    /// lost its data dir): not divergence, in all.
    pub keys_uncollected: u64,
    /// Why the last comparison this node started failed (cleared by a success).
    pub last_error: Option<String>,
}

/// The node's anti-entropy state (a field of [`Node`]).
#[derive(Default)]
pub struct AaeState {
    peers: Mutex<BTreeMap<ReplicaId, PeerAae>>,
    /// The last `state_digest` computed for the status (see [`cached`]).
    digest: Cached<u64>,
    /// The last tree built for a comparison: an idle node hashes its keys once, not every round.
    tree: Cached<Arc<Tree>>,
}

/// A value computed from the engine, with the commit ticket and the applied vector it was
/// computed at.
type Cached<T> = Mutex<Option<(u64, VersionVector, T)>>;

/// `f(engine)`, or the value it gave last time if nothing changed since: no group commit and the
/// same applied vector. Every change of a key state is committed; the ones that leave the applied
/// vector alone (anti-entropy merges, garbage collection) are seen at their commit, a few ms later.
fn cached<T: Clone>(node: &Node, slot: &Cached<T>, f: impl FnOnce(&Engine) -> T) -> T {
    let ticket = match &*node.subscribe_commits().borrow() {
        crate::node::CommitState::Committed(t) => Some(*t),
        crate::node::CommitState::Failed(_) => None,
    };
    let mut cache = slot.lock().unwrap_or_else(|p| p.into_inner());
    node.with_engine(|e| {
        if let (Some(t), Some((cached_t, cached_applied, v))) = (ticket, cache.as_ref()) {
            if *cached_t == t && cached_applied == e.applied() {
                return v.clone();
            }
        }
        let v = f(e);
        *cache = ticket.map(|t| (t, e.applied().clone(), v.clone()));
        v
    })
}

impl AaeState {
    fn record(&self, peer: ReplicaId, f: impl FnOnce(&mut PeerAae)) {
        f(self
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(peer)
            .or_default())
    }

    pub fn peers(&self) -> BTreeMap<ReplicaId, PeerAae> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

// ----- status model ------------------------------------------------------------------------------

/// The engine's [`concord_core::Engine::state_digest`]. It hashes every key state under the engine
/// lock, so it is [`cached`] until something changes. Equal applied vectors give equal digests.
pub fn state_digest(node: &Node) -> u64 {
    cached(node, &node.aae.digest, |e| e.state_digest())
}

/// `state_digest` as the status shows it: 16 hex digits.
pub fn state_digest_hex(node: &Node) -> String {
    format!("{:016x}", state_digest(node))
}

fn region_name(node: &Node, id: ReplicaId) -> String {
    node.config
        .regions
        .iter()
        .find(|r| r.id == id)
        .map(|r| r.name.clone())
        .unwrap_or_else(|| format!("#{id}"))
}

/// The `anti_entropy` object of `/v1/status`.
pub fn status_json(node: &Node) -> Value {
    let peers = node.aae.peers();
    let now = node.now_ms();
    let per_peer: serde_json::Map<String, Value> = peers
        .iter()
        .map(|(id, p)| {
            (
                region_name(node, *id),
                json!({
                    "rounds": p.rounds,
                    "last_comparison_ms": p.last_comparison_ms,
                    "last_comparison_ms_ago": p.last_comparison_ms.map(|t| now.saturating_sub(t)),
                    "leaves_differing": p.last_leaves_differing,
                    "keys_repaired": p.last_keys_repaired,
                    "leaves_repaired": p.last_leaves_repaired,
                    "leaves_repaired_total": p.leaves_repaired,
                    "keys_in_flight": p.last_keys_in_flight,
                    "keys_repaired_total": p.keys_repaired,
                    "repairs_total": p.repairs,
                    "keys_uncollected_total": p.keys_uncollected,
                    "last_error": p.last_error,
                }),
            )
        })
        .collect();
    json!({
        "interval_ms": node.config.anti_entropy.interval_ms,
        "keys_repaired_total": peers.values().map(|p| p.keys_repaired).sum::<u64>(),
        "repairs_total": peers.values().map(|p| p.repairs).sum::<u64>(),
        "leaves_repaired_total": peers.values().map(|p| p.leaves_repaired).sum::<u64>(),
        "keys_uncollected_total": peers.values().map(|p| p.keys_uncollected).sum::<u64>(),
        "peers": per_peer,
    })
}

/// The `concord_aae_*` lines of `/metrics`.
pub fn write_metrics(node: &Node, s: &mut String) {
    use std::fmt::Write;
    let r = &node.region.name;
    let peers = node.aae.peers();
    let mut family = |name: &str, kind: &str, help: &str, value: &dyn Fn(&PeerAae) -> Option<u64>| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (id, p) in &peers {
            if let Some(v) = value(p) {
                let _ = writeln!(s, "{name}{{region=\"{r}\",peer=\"{}\"}} {v}", region_name(node, *id));
            }
        }
    };
    family(
        "concord_aae_rounds_total",
        "counter",
        "Anti-entropy comparisons completed with the peer.",
        &|p| Some(p.rounds),
    );
    family(
        "concord_aae_last_comparison_timestamp_ms",
        "gauge",
        "Wall-clock time of the last comparison with the peer (ms since the Unix epoch).",
        &|p| p.last_comparison_ms,
    );
    family(
        "concord_aae_leaves_differing",
        "gauge",
        "Key ranges (tree leaves) that differed in the last comparison with the peer.",
        &|p| Some(p.last_leaves_differing),
    );
    family(
        "concord_aae_keys_repaired_total",
        "counter",
        "Keys repaired here from the peer's states (each one means divergence: a bug or bit rot).",
        &|p| Some(p.keys_repaired),
    );
    family(
        "concord_aae_keys_uncollected_total",
        "counter",
        "Keys whose join only brought back tombstones garbage-collected here (after a region lost its data dir; not divergence).",
        &|p| Some(p.keys_uncollected),
    );
    family(
        "concord_aae_leaves_repaired_total",
        "counter",
        "Key ranges (tree leaves) in which keys were repaired here from the peer's states.",
        &|p| Some(p.leaves_repaired),
    );
    family(
        "concord_aae_repairs_total",
        "counter",
        "Comparisons with the peer that repaired at least one key here.",
        &|p| Some(p.repairs),
    );
}

// ----- test hook ---------------------------------------------------------------------------------

/// Forget `key`'s state in this region without an op, persisted, as if storage had lost it (only
/// served with `[testing] hooks = true`). Returns whether the key existed.
pub async fn corrupt_key_for_test(node: &Node, key: &[u8]) -> Result<bool, NodeError> {
    let mut existed = false;
    let ticket = node.submit(|engine, out| existed = engine.forget_key_for_test(key, out));
    if let Some(t) = ticket {
        node.wait_committed(t).await?;
    }
    tracing::warn!(key = %String::from_utf8_lossy(key), existed, "test hook: forgot a key's state on purpose");
    Ok(existed)
}

// ----- the comparing side ------------------------------------------------------------------------

/// What one comparison found and did, seen from one side.
#[derive(Debug, Default)]
struct Round {
    leaves_differing: usize,
    here: Repair,
    /// The leaves of `here.repaired`.
    leaves_repaired: std::collections::BTreeSet<u32>,
    keys_repaired_there: u64,
}

impl Round {
    fn repaired_any(&self) -> bool {
        !self.here.repaired.is_empty()
    }
}

/// Compare with every upstream each interval, until `stop`.
pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let every = node.config.anti_entropy.interval_ms;
    if every == 0 || node.config.regions.len() < 2 {
        return;
    }
    let every = Duration::from_millis(every);
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::server::stopped(&mut stop) => return,
        }
        for peer in crate::replication::my_upstreams(&node) {
            if node.link_faults(peer).partitioned {
                continue;
            }
            let result = tokio::select! {
                r = tokio::time::timeout(ROUND_TIMEOUT, compare_with(&node, peer)) => {
                    r.unwrap_or_else(|_| Err(WireError::Handshake("comparison timed out".into())))
                }
                _ = crate::server::stopped(&mut stop) => return,
            };
            match result {
                Ok(round) => finish_round(&node, peer, &round, true),
                Err(e) => {
                    tracing::info!(peer = %region_name(&node, peer), error = %e, "anti-entropy comparison failed");
                    node.aae.record(peer, |p| p.last_error = Some(e.to_string()));
                }
            }
        }
    }
}

/// Record a completed comparison (either side). Repairs are counted and logged as they are
/// merged ([`merge`]), so one is never lost with a comparison that fails half-way.
fn finish_round(node: &Node, peer: ReplicaId, round: &Round, started_here: bool) {
    let repaired = round.here.repaired.len() as u64;
    node.aae.record(peer, |p| {
        p.rounds += 1;
        p.last_comparison_ms = Some(node.now_ms());
        p.last_leaves_differing = round.leaves_differing as u64;
        p.last_keys_repaired = repaired;
        p.last_leaves_repaired = round.leaves_repaired.len() as u64;
        p.last_keys_in_flight = round.here.in_flight as u64;
        if started_here {
            p.last_error = None;
        }
    });
    tracing::debug!(
        peer = %region_name(node, peer),
        leaves = round.leaves_differing,
        repaired_here = repaired,
        repaired_there = round.keys_repaired_there,
        in_flight = round.here.in_flight,
        "anti-entropy comparison done"
    );
}

async fn send(write: &mut OwnedWriteHalf, m: &Message) -> Result<(), WireError> {
    write_message(write, m).await.map(|_| ())
}

async fn receive(node: &Node, peer: ReplicaId, read: &mut OwnedReadHalf) -> Result<Message, WireError> {
    if node.link_faults(peer).partitioned {
        return Err(WireError::Handshake("link partitioned (admin)".into()));
    }
    let (m, _) = tokio::time::timeout(STEP_TIMEOUT, read_message(read))
        .await
        .map_err(|_| WireError::Handshake("peer did not answer in time".into()))??;
    Ok(m)
}

/// Build this node's tree off the async threads (it hashes every key state).
async fn build_tree(node: &Arc<Node>) -> Result<Arc<Tree>, WireError> {
    let n = node.clone();
    node.blocking(move || cached(&n, &n.aae.tree, |e| Arc::new(Tree::build(e))))
        .await
        .map_err(|e| WireError::Handshake(format!("building the tree failed: {e}")))
}

/// `f(engine)` off the async threads (it may visit every key), with the applied vector read
/// together.
async fn read_engine<T: Send + 'static>(
    node: &Arc<Node>,
    f: impl FnOnce(&Engine) -> T + Send + 'static,
) -> Result<(VersionVector, T), WireError> {
    let n = node.clone();
    node.blocking(move || n.with_engine(|e| (e.applied().clone(), f(e))))
        .await
        .map_err(|e| WireError::Handshake(format!("reading key states failed: {e}")))
}

/// Join a peer's states into this node, count and log what was repaired, and wait until the
/// result is durable.
async fn merge(
    node: &Node,
    peer: ReplicaId,
    applied: &VersionVector,
    states: Vec<(Bytes, KeyState)>,
    round: &mut Round,
) -> Result<(), WireError> {
    let first_of_round = !round.repaired_any();
    let mut r = Repair::default();
    let mut new_leaves = std::collections::BTreeSet::new();
    let ticket = node.submit(|engine, out| {
        r = merkle::repair(engine, applied, states, out);
        if !r.uncollected.is_empty() {
            let keys = r.uncollected.len() as u64;
            node.aae.record(peer, |p| p.keys_uncollected += keys);
        }
        if !r.repaired.is_empty() {
            new_leaves = r
                .repaired
                .iter()
                .map(|k| merkle::leaf_of(k))
                .filter(|l| !round.leaves_repaired.contains(l))
                .collect();
            // Counted under the engine lock: whoever reads the repaired data sees the count.
            let (keys, leaves) = (r.repaired.len() as u64, new_leaves.len() as u64);
            node.aae.record(peer, |p| {
                p.keys_repaired += keys;
                p.leaves_repaired += leaves;
                p.repairs += first_of_round as u64;
            });
        }
    });
    round.leaves_repaired.extend(new_leaves);
    let name = region_name(node, peer);
    if !r.repaired.is_empty() {
        let keys: Vec<String> = r
            .repaired
            .iter()
            .take(5)
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        tracing::warn!(
            peer = %name,
            keys = r.repaired.len(),
            first = ?keys,
            "anti-entropy repaired keys whose data differed although both regions had applied the same ops on them: this means a bug or bit rot"
        );
    }
    if let Some(first) = r.uncollected.first() {
        tracing::info!(
            peer = %name,
            keys = r.uncollected.len(),
            first = %String::from_utf8_lossy(first),
            "anti-entropy brought back tombstones collected here that the peer still holds under a write made without them (a region that lost or restored its data dir wrote before catching up)"
        );
    }
    if !r.rejected.is_empty() {
        tracing::error!(
            peer = %name,
            count = r.rejected.len(),
            first = ?r.rejected.first(),
            "anti-entropy received invalid key states; they were not merged"
        );
    }
    let here = &mut round.here;
    here.repaired.extend(r.repaired);
    here.in_flight += r.in_flight;
    here.peer_behind += r.peer_behind;
    here.rejected.extend(r.rejected);
    if let Some(t) = ticket {
        node.wait_committed(t)
            .await
            .map_err(|e| WireError::Handshake(e.to_string()))?;
    }
    Ok(())
}

/// Send `states` as `AaeStates` messages bounded by keys and bytes (at least one, the last
/// marked).
async fn send_states(
    write: &mut OwnedWriteHalf,
    applied: &VersionVector,
    states: Vec<(Bytes, KeyState)>,
) -> Result<(), WireError> {
    let mut chunk = Vec::new();
    let mut bytes = 0;
    let mut rest = states.into_iter().peekable();
    loop {
        let Some(kv) = rest.next() else { break };
        bytes += kv.0.len() + kv.1.encode().len();
        chunk.push(kv);
        if chunk.len() >= CHUNK_KEYS || bytes >= CHUNK_BYTES {
            let last = rest.peek().is_none();
            let states = std::mem::take(&mut chunk);
            send(
                write,
                &Message::AaeStates {
                    applied: applied.clone(),
                    states,
                    last,
                },
            )
            .await?;
            bytes = 0;
            if last {
                return Ok(());
            }
        }
    }
    send(
        write,
        &Message::AaeStates {
            applied: applied.clone(),
            states: chunk,
            last: true,
        },
    )
    .await
}

/// Send `keys` as `AaeKeys` messages bounded by keys and bytes (at least one, the last marked).
async fn send_summaries(
    write: &mut OwnedWriteHalf,
    applied: &VersionVector,
    keys: Vec<merkle::KeySummary>,
) -> Result<(), WireError> {
    let mut chunk = Vec::new();
    let mut bytes = 0;
    let mut rest = keys.into_iter().peekable();
    while let Some(k) = rest.next() {
        bytes += k.key.len() + 16 + 12 * k.ctx.iter().count();
        chunk.push(k);
        let last = rest.peek().is_none();
        if last || chunk.len() >= SUMMARY_CHUNK_KEYS || bytes >= CHUNK_BYTES {
            let keys = std::mem::take(&mut chunk);
            send(
                write,
                &Message::AaeKeys {
                    applied: applied.clone(),
                    keys,
                    last,
                },
            )
            .await?;
            bytes = 0;
            if last {
                return Ok(());
            }
        }
    }
    send(
        write,
        &Message::AaeKeys {
            applied: applied.clone(),
            keys: Vec::new(),
            last: true,
        },
    )
    .await
}

/// One comparison with `peer`, started here.
async fn compare_with(node: &Arc<Node>, peer: ReplicaId) -> Result<Round, WireError> {
    let addr = node
        .config
        .regions
        .iter()
        .find(|r| r.id == peer)
        .map(|r| r.peer)
        .ok_or_else(|| WireError::Handshake(format!("unknown region id {peer}")))?;
    let (socket, info) = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let mut s = node.env.net.connect(addr).await?;
        let info = handshake(
            &mut s,
            &crate::replication::identity(node),
            true,
            crate::replication::nonce(node),
        )
        .await?;
        Ok::<_, WireError>((s, info))
    })
    .await
    .map_err(|_| WireError::Handshake(format!("connect to {addr} timed out")))??;
    if info.replica != peer {
        return Err(WireError::Handshake(format!(
            "expected region id {peer}, reached {}",
            info.region
        )));
    }
    let (mut read, mut write) = tokio::io::split(socket);

    let mine = build_tree(node).await?;
    let mut descent = Descent::new();
    while let Some((level, indices)) = descent.next_request() {
        send(&mut write, &Message::AaeRequest(AaeRequest::Nodes { level, indices })).await?;
        match receive(node, peer, &mut read).await? {
            Message::AaeNodes { level, indices, hashes } => descent
                .receive(&mine, level, &indices, &hashes)
                .map_err(|e| WireError::Handshake(format!("anti-entropy: {e}")))?,
            other => return Err(unexpected(&other)),
        }
    }
    let mut round = Round {
        leaves_differing: descent.differing_leaves().len(),
        ..Round::default()
    };
    if round.leaves_differing == 0 {
        return Ok(round);
    }
    let leaves: Vec<u32> = descent
        .differing_leaves()
        .iter()
        .copied()
        .take(MAX_LEAVES_PER_ROUND)
        .collect();
    // Key summaries of the differing leaves: only keys that differ although both sides applied
    // the same ops on them need their states shipped.
    send(
        &mut write,
        &Message::AaeRequest(AaeRequest::Keys { leaves: leaves.clone() }),
    )
    .await?;
    let mut theirs = Vec::new();
    // Every chunk carries the same vector: the summaries were taken at once.
    let their_applied = loop {
        match receive(node, peer, &mut read).await? {
            Message::AaeKeys { applied, keys, last } => {
                theirs.extend(keys);
                if last {
                    break applied;
                }
            }
            other => return Err(unexpected(&other)),
        }
    };
    let (_, plan) = read_engine(node, move |e| merkle::plan(e, &their_applied, &theirs, &leaves)).await?;
    round.here.in_flight += plan.in_flight;
    for keys in plan.fetch.chunks(CHUNK_KEYS) {
        let keys = keys.to_vec();
        send(&mut write, &Message::AaeRequest(AaeRequest::States { keys })).await?;
        loop {
            match receive(node, peer, &mut read).await? {
                Message::AaeStates { applied, states, last } => {
                    merge(node, peer, &applied, states, &mut round).await?;
                    if last {
                        break;
                    }
                }
                other => return Err(unexpected(&other)),
            }
        }
    }
    let push = plan.push;
    let (applied, states) = read_engine(node, move |e| merkle::key_states(e, &push)).await?;
    send_states(&mut write, &applied, states).await?;
    match receive(node, peer, &mut read).await? {
        Message::AaeDone { keys_repaired } => round.keys_repaired_there = keys_repaired,
        other => return Err(unexpected(&other)),
    }
    Ok(round)
}

fn unexpected(m: &Message) -> WireError {
    WireError::Handshake(format!("anti-entropy: unexpected {}", m.name()))
}

// ----- the compared side -------------------------------------------------------------------------

/// Answer one comparison `peer` started (the connection's first message is `first`), until the
/// peer closes it. Called by the replication listener.
pub async fn serve(node: Arc<Node>, peer: ReplicaId, first: Message, socket: BoxStream) {
    let (mut read, mut write) = tokio::io::split(socket);
    let mut round = None;
    let result = serve_inner(&node, peer, first, &mut read, &mut write, &mut round).await;
    match result {
        // The comparing side closes the connection when it is done: a descent that found no
        // difference ends here, and counts as a comparison on this side too.
        Err(WireError::Closed) => {
            if let Some(round) = round {
                finish_round(&node, peer, &round, false);
            }
        }
        Err(e) => tracing::info!(peer = %region_name(&node, peer), error = %e, "anti-entropy exchange ended"),
        Ok(()) => {}
    }
}

/// `round` is `Some` from the first request of a comparison until it is recorded.
async fn serve_inner(
    node: &Arc<Node>,
    peer: ReplicaId,
    first: Message,
    read: &mut OwnedReadHalf,
    write: &mut OwnedWriteHalf,
    round: &mut Option<Round>,
) -> Result<(), WireError> {
    let mut tree: Option<Arc<Tree>> = None;
    let mut next = Some(first);
    loop {
        let msg = match next.take() {
            Some(m) => m,
            None => receive(node, peer, read).await?,
        };
        let current = round.get_or_insert_with(Round::default);
        match msg {
            Message::AaeRequest(AaeRequest::Nodes { level, indices }) => {
                if indices.len() > merkle::LEAVES {
                    return Err(WireError::Handshake("anti-entropy: too many nodes asked for".into()));
                }
                if tree.is_none() {
                    // One tree per exchange: every answer describes the same moment.
                    tree = Some(build_tree(node).await?);
                }
                let hashes = tree
                    .as_ref()
                    .map(|t| t.nodes(level, &indices))
                    .unwrap_or(Ok(Vec::new()))
                    .map_err(|e| WireError::Handshake(format!("anti-entropy: {e}")))?;
                send(write, &Message::AaeNodes { level, indices, hashes }).await?;
            }
            Message::AaeRequest(AaeRequest::Keys { leaves }) => {
                if leaves.len() > merkle::LEAVES || leaves.iter().any(|&l| l as usize >= merkle::LEAVES) {
                    return Err(WireError::Handshake("anti-entropy: invalid leaves asked for".into()));
                }
                current.leaves_differing = leaves.len();
                let (applied, keys) = read_engine(node, move |e| merkle::summaries(e, &leaves)).await?;
                send_summaries(write, &applied, keys).await?;
            }
            Message::AaeRequest(AaeRequest::States { keys }) => {
                if keys.len() > CHUNK_KEYS {
                    return Err(WireError::Handshake("anti-entropy: too many keys asked for".into()));
                }
                let (applied, states) = read_engine(node, move |e| merkle::key_states(e, &keys)).await?;
                send_states(write, &applied, states).await?;
            }
            Message::AaeStates { applied, states, last } => {
                merge(node, peer, &applied, states, current).await?;
                if last {
                    let keys_repaired = current.here.repaired.len() as u64;
                    send(write, &Message::AaeDone { keys_repaired }).await?;
                    if let Some(done) = round.take() {
                        finish_round(node, peer, &done, false);
                    }
                }
            }
            other => return Err(unexpected(&other)),
        }
    }
}
