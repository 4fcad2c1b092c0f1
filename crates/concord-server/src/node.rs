//! The node: one region's engine, its store, and group commit between them.
//!
//! Front ends (RESP, HTTP) call [`Node::execute`]. A read locks the engine, runs and returns: it
//! never waits for a disk flush. A write runs under the same lock, adds its changes to the pending
//! group, and waits until the committer thread has made that group durable (per `fsync`) — writes
//! from many connections share one transaction and one fsync.
//!
//! The committer takes the pending group *and* snapshots the states of its dirty keys and the
//! engine metadata under the engine lock, in one step, so what reaches disk is always a state the
//! engine was in: key states, op log and applied vector agree.

use crate::config::{Config, Fsync, RegionConfig};
use crate::env::{CommitterMode, Env, Storage};
use concord_core::{
    CommandError, ConflictRecord, Engine, EngineConfig, Op, Output, ReplicaId, Reply, Request, Slot, Touched,
    VersionVector,
};
use concord_store::{stored_inline, Batch, Durability, InlineState, SlotWrite, Store};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, watch, Notify};
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Command(#[from] CommandError),
    /// Storage failed (e.g. an fsync error): the node refuses writes rather than acknowledge what
    /// may be lost. Reads still work. Restart the node after fixing the disk.
    #[error("ERR storage failed, this node refuses writes until restarted: {0}")]
    WritesRefused(String),
    #[error("TRYAGAIN {0}")]
    TryAgain(String),
    /// An ack level was not met before the timeout (the write is applied and not undone).
    #[error("NOTACKED {0}")]
    NotAcked(String),
    /// A `siblings` key now holds concurrent versions (the write is kept as one of them).
    #[error("CONFLICT {0}")]
    Conflict(String),
    /// An error line from another region (a forwarded command's reply), passed on as it is.
    #[error("{0}")]
    Remote(String),
    #[error("ERR {0}")]
    Other(String),
}

/// The hasher of the pending group's key map: keyed per node from the node's randomness (keys
/// are client-chosen), and reproducible in a simulation (a seed replays the same commits).
#[derive(Clone, Default)]
pub(crate) struct KeyedHasher(u64);

impl std::hash::BuildHasher for KeyedHasher {
    type Hasher = std::collections::hash_map::DefaultHasher;
    fn build_hasher(&self) -> Self::Hasher {
        use std::hash::Hasher;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write_u64(self.0);
        h
    }
}

#[derive(Default)]
struct Pending {
    /// Last ticket handed out; a writer waits for `committed >= ticket`.
    ticket: u64,
    /// Keys changed since the last group commit, and how. A hash map: a group holds up to
    /// `max_pending_writes` keys and every write adds one.
    changed: HashMap<bytes::Bytes, Touched, KeyedHasher>,
    ops: Vec<Op>,
    conflicts: Vec<ConflictRecord>,
    changes: usize,
}

pub(crate) struct Inner {
    pub(crate) engine: Engine,
    pending: Pending,
}

/// Counters shown in INFO, /v1/status and /metrics.
#[derive(Default)]
pub struct NodeStats {
    pub commands: AtomicU64,
    pub writes: AtomicU64,
    pub commits: AtomicU64,
    pub fsyncs: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_current: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub protocol_errors: AtomicU64,
}

/// The committer's progress, published to writers and replication senders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitState {
    Committed(u64),
    Failed(String),
}

pub struct Node {
    pub config: Config,
    pub region: RegionConfig,
    inner: Mutex<Inner>,
    store: Arc<Store>,
    /// What the node takes from outside: clock, randomness, network (see [`crate::env`]).
    pub env: Arc<Env>,
    /// Rings the committer: a thread waits on the channel, a task on the notify.
    doorbell: Option<std::sync::mpsc::SyncSender<()>>,
    doorbell_task: Arc<Notify>,
    committed: watch::Sender<CommitState>,
    space: Notify,
    pub stats: NodeStats,
    pub started: Instant,
    /// Conflicts as they are committed (the HTTP live stream subscribes).
    pub conflict_feed: broadcast::Sender<ConflictRecord>,

    /// Replication links, by peer region id.
    pub links: Mutex<std::collections::BTreeMap<ReplicaId, crate::replication::LinkState>>,
    /// Highest own-region seq known to be on disk (fsynced): only those ops leave this node, so a
    /// crash can never make peers hold writes this region forgot (and would number again).
    pub durable_own_seq: AtomicU64,
    committed_own_seq: AtomicU64,
    /// (applied vector of the last commit, applied vector known to be fsynced): acks and the
    /// vectors this node reports use the durable one, so peers never truncate or purge on the
    /// strength of state this node could lose in a crash.
    applied_vectors: Mutex<(VersionVector, VersionVector)>,
    /// Held from taking a pending group to finishing its commit: groups reach the store in order.
    commit_lock: Mutex<()>,
    /// This incarnation's writer id (DESIGN §8.1): fresh at every start, so a crash that lost
    /// unsynced writes, a lost or a restored data dir can never issue a `(writer, seq)` twice.
    writer: ReplicaId,
    /// The data dir held no history when this node started (new, or lost): home-key writes wait
    /// until every other region has been heard from (see [`Node::check_home_writes`]).
    fresh_start: bool,
    /// Regions whose applied vector this node has received since it started.
    heard_since_start: Mutex<std::collections::BTreeSet<ReplicaId>>,
    /// Connections to home regions for forwarded writes.
    pub forwarder: crate::routing::Forwarder,
    /// The policy rules (also in the engine), readable without the engine lock.
    pub policies: concord_core::PolicySet,
    maintenance_rounds: AtomicU64,
    /// Mirrors of engine/pending figures, readable without the engine lock.
    own_seq_now: AtomicU64,
    pending_changes: std::sync::atomic::AtomicUsize,
    /// Anti-entropy figures per peer and the cached state digest (`crate::aae`).
    pub aae: crate::aae::AaeState,
    /// RESP connections, run-time CONFIG values, CLIENT PAUSE (see `clients.rs`).
    pub server_state: Arc<crate::clients::ServerState>,
    /// `EVAL` scripts: the cache and the Lua state they run in (see `crate::script`). Locked
    /// inside the engine lock while a script runs, never the other way round.
    pub scripts: crate::script::Scripts,
    /// Subscriptions, delivery and the fan-out to other regions (`pubsub.rs`).
    pub pubsub: crate::pubsub::PubSub,
}

impl Node {
    /// Open the store in the region's data dir, recover the engine and start the committer.
    pub fn open(config: Config, region_name: &str) -> Result<Arc<Node>, NodeError> {
        Node::open_in(config, region_name, Arc::new(Env::production()))
    }

    /// [`Node::open`] in a given environment (the simulation's clock, network and disk).
    pub fn open_in(config: Config, region_name: &str, env: Arc<Env>) -> Result<Arc<Node>, NodeError> {
        let region = config
            .region(region_name)
            .cloned()
            .ok_or_else(|| NodeError::Other(format!("region {region_name:?} is not in the config")))?;
        let store = match env.take_storage() {
            Storage::DataDir => {
                std::fs::create_dir_all(&region.data_dir).map_err(|e| {
                    NodeError::Other(format!("cannot create data dir {}: {e}", region.data_dir.display()))
                })?;
                check_identity(&region)?;
                Store::open(&region.data_dir.join("concord.redb"))
            }
            Storage::Backend(make) => Store::open_backend(BoxedBackend(make()), Default::default()),
        }
        .map_err(|e| NodeError::Other(format!("cannot open store: {e}")))?;
        let (meta, states) = store
            .load()
            .map_err(|e| NodeError::Other(format!("cannot load store: {e}")))?;
        let keys = states.len();
        let fresh = meta.applied.is_empty();
        let incarnation = env.random.next_u64();
        let writer = if env.planted_bug == Some(concord_core::PlantedBug::ReuseWriter) {
            concord_core::writer_id(region.id, 1)
        } else {
            concord_core::writer_id(region.id, incarnation)
        };
        let mut ecfg = EngineConfig::new(writer, config.region_names());
        let policies = config.policy_set();
        ecfg.policies = policies.clone();
        ecfg.max_value_bytes = config.limits.max_value_bytes;
        // Keys are ordered by a hash clients must not be able to predict.
        ecfg.key_hash_seed = env.random.next_u64();
        ecfg.planted_bug = env.planted_bug;
        let scripts: Vec<String> = ecfg
            .policies
            .rules
            .iter()
            .filter_map(|p| match &p.strings {
                concord_core::Strategy::Script(path) => Some(path.clone()),
                _ => None,
            })
            .collect();
        let mut engine = Engine::restore(ecfg, meta, states);
        for path in scripts {
            let resolver = crate::lua::load_resolver(std::path::Path::new(&path))
                .map_err(|e| NodeError::Other(format!("cannot load resolver: {e}")))?;
            tracing::info!(script = %path, "loaded Lua resolver");
            engine.register_resolver(path, Arc::new(resolver));
        }
        for (r, vv) in store.peer_vectors().map_err(|e| NodeError::Other(e.to_string()))? {
            engine.observe_peer(r, &vv);
        }
        // Ops a full-state transfer covered came as key states, not as log entries: the log has a
        // gap below the transfer's vector, which `mark_transferred` records after the transfer's
        // commit. A crash between the two leaves the gap unmarked, and a downstream behind it
        // would wait forever for ops this log cannot send (sim seed 70104). Every origin applied
        // beyond what the log holds gets its floor now.
        let bounds = store.log_bounds().map_err(|e| NodeError::Other(e.to_string()))?;
        for (origin, have) in engine.applied().iter() {
            let logged = bounds.get(&origin).map(|(_, last)| *last).unwrap_or(0);
            if have > logged {
                tracing::info!(
                    origin,
                    logged,
                    applied = have,
                    "marking the op log's gap below a transfer's vector"
                );
                store
                    .mark_transferred(origin, have)
                    .map_err(|e| NodeError::Other(e.to_string()))?;
            }
        }
        tracing::info!(region = %region.name, id = region.id, writer, keys, applied = %engine.applied(), "recovered");
        let (doorbell, rx) = std::sync::mpsc::sync_channel(1);
        let pending_hasher = KeyedHasher(env.random.next_u64());
        let (committed, _) = watch::channel(CommitState::Committed(0));
        let own_seq = engine.applied().get(writer);
        let recovered_applied = engine.applied().clone();
        let links = config
            .regions
            .iter()
            .filter(|r| r.id != region.id)
            .map(|r| (r.id, crate::replication::LinkState::new(r.name.clone())))
            .collect();
        let server_state = Arc::new(crate::clients::ServerState::new(&config, &region));
        let scripts = crate::script::Scripts::new(crate::lua::LuaLimits::default()).map_err(NodeError::Other)?;
        // Pub/sub numbers its messages from 1 at every start: the start time orders incarnations.
        let pubsub = crate::pubsub::PubSub::new(region.id, env.now_ms());
        let node = Arc::new(Node {
            pubsub,
            server_state,
            scripts,
            config,
            region,
            inner: Mutex::new(Inner {
                engine,
                pending: Pending {
                    changed: HashMap::with_hasher(pending_hasher),
                    ..Pending::default()
                },
            }),
            store: Arc::new(store),
            doorbell: (env.committer == CommitterMode::Thread).then_some(doorbell),
            doorbell_task: Arc::new(Notify::new()),
            env: env.clone(),
            committed,
            space: Notify::new(),
            stats: NodeStats::default(),
            started: Instant::now(),
            conflict_feed: broadcast::channel(1024).0,

            links: Mutex::new(links),
            durable_own_seq: AtomicU64::new(own_seq),
            committed_own_seq: AtomicU64::new(own_seq),
            applied_vectors: Mutex::new((recovered_applied.clone(), recovered_applied)),
            commit_lock: Mutex::new(()),
            writer,
            fresh_start: fresh,
            heard_since_start: Mutex::new(Default::default()),
            forwarder: crate::routing::Forwarder::default(),
            policies,
            maintenance_rounds: AtomicU64::new(0),
            own_seq_now: AtomicU64::new(own_seq),
            pending_changes: std::sync::atomic::AtomicUsize::new(0),
            aae: crate::aae::AaeState::default(),
        });
        let weak = Arc::downgrade(&node);
        match env.committer {
            CommitterMode::Thread => {
                std::thread::Builder::new()
                    .name("concord-committer".into())
                    .spawn(move || committer(weak, rx))
                    .map_err(|e| NodeError::Other(e.to_string()))?;
            }
            CommitterMode::Task => {
                tokio::spawn(committer_task(weak, node.doorbell_task.clone()));
            }
        }
        Ok(node)
    }

    pub fn replica(&self) -> ReplicaId {
        self.region.id
    }

    /// The wall clock (milliseconds since the Unix epoch), from the node's environment.
    pub fn now_ms(&self) -> u64 {
        self.env.now_ms()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` with the engine locked (reads for status pages).
    pub fn with_engine<T>(&self, f: impl FnOnce(&Engine) -> T) -> T {
        f(&self.lock().engine)
    }

    fn refused(&self) -> Option<String> {
        match &*self.committed.borrow() {
            CommitState::Failed(e) => Some(e.clone()),
            CommitState::Committed(_) => None,
        }
    }

    /// Execute one command. Writes return once durable (per the fsync mode).
    pub async fn execute(&self, req: Request) -> Result<Reply, NodeError> {
        let (reply, ticket) = self.execute_deferred(req).await?;
        if let Some(ticket) = ticket {
            self.wait_acknowledgeable(ticket).await?;
        }
        Ok(reply)
    }

    /// Execute one command without waiting for its commit: returns the reply and, for a write
    /// that changed something, the ticket to wait for before the reply may be sent. Pipelined
    /// commands use this to wait once for the whole pipeline.
    pub async fn execute_deferred(&self, req: Request) -> Result<(Reply, Option<u64>), NodeError> {
        self.execute_tracked(req).await.map(|(r, t, _)| (r, t))
    }

    /// Run `f` with the engine locked, as one atomic unit ([`Engine::execute_with`]): every op
    /// the commands it executes write replicates as one unit. For a unit whose commands are not
    /// known in advance (a script: each `redis.call` depends on the replies before it). `writes`:
    /// whether it may write (then it waits for room in the commit queue first, and is refused
    /// while writes are). `None` when a watched key's mark changed: `f` does not run. Also the
    /// commit ticket and the highest own seq written, as [`Node::execute_tracked`]: whatever `f`
    /// returns, what it wrote stays written and must be waited for.
    #[allow(clippy::type_complexity)]
    pub async fn execute_with<T>(
        &self,
        writes: bool,
        watched: &[(bytes::Bytes, (Option<concord_core::VersionVector>, bool))],
        f: impl FnOnce(&mut concord_core::Unit<'_>) -> T,
    ) -> Result<Option<(T, Option<u64>, Option<u64>)>, NodeError> {
        if writes {
            if let Some(e) = self.refused() {
                return Err(NodeError::WritesRefused(e));
            }
            self.wait_for_space().await?;
        }
        let now = self.now_ms();
        let mut inner = self.lock();
        if watched.iter().any(|(k, mark)| inner.engine.watch_mark(k, now) != *mark) {
            return Ok(None);
        }
        let mut out = Output::default();
        let result = inner.engine.execute_with(now, &mut out, f);
        let me = self.writer;
        let own_seq = out.local_ops.iter().filter(|o| o.origin == me).map(|o| o.seq).max();
        let ticket = self.absorb(&mut inner, out);
        drop(inner);
        if ticket.is_some() {
            self.stats.writes.fetch_add(1, Ordering::Relaxed);
            self.ring();
        }
        Ok(Some((result, ticket, own_seq)))
    }

    /// [`Node::execute_deferred`], also returning the highest sequence number this write took in
    /// this region (what `WAIT` and ack levels wait for: this write's own, not the latest).
    pub async fn execute_tracked(&self, req: Request) -> Result<(Reply, Option<u64>, Option<u64>), NodeError> {
        self.stats.commands.fetch_add(1, Ordering::Relaxed);
        if !req.is_write() {
            let mut out = Output::default();
            let reply = self.lock().engine.execute(req, self.now_ms(), &mut out)?;
            debug_assert!(out.is_empty(), "a read changed state");
            return Ok((reply, None, None));
        }
        if let Some(e) = self.refused() {
            return Err(NodeError::WritesRefused(e));
        }
        self.wait_for_space().await?;
        let mut inner = self.lock();
        if let Some(keys) = req.keys() {
            transfer_guard(&inner.engine, &keys)?;
        }
        let mut out = Output::default();
        let reply = inner.engine.execute(req, self.now_ms(), &mut out)?;
        let me = self.writer;
        let own_seq = out.local_ops.iter().filter(|o| o.origin == me).map(|o| o.seq).max();
        let ticket = self.absorb(&mut inner, out);
        drop(inner);
        if ticket.is_some() {
            self.stats.writes.fetch_add(1, Ordering::Relaxed);
            self.ring();
        }
        Ok((reply, ticket, own_seq))
    }

    /// The highest sequence number this region has given its own writes.
    pub fn own_seq(&self) -> u64 {
        self.own_seq_now.load(Ordering::Acquire)
    }

    /// `PUBLISH` (`SPUBLISH` with `shard`) here: delivered to this node's subscribers (their
    /// number is the answer) and sent to every other region after the writes this region made
    /// before it ([`crate::pubsub::PeerMessage::after`]) and `home_writes`, the publishing
    /// connection's writes forwarded to other regions' homes.
    pub fn publish(
        &self,
        shard: bool,
        channel: bytes::Bytes,
        message: bytes::Bytes,
        home_writes: Vec<concord_core::Dot>,
    ) -> usize {
        let fan_out = self.config.regions.len() > 1;
        let after = concord_core::Dot::new(self.writer(), self.own_seq());
        self.pubsub
            .publish(shard, channel, message, fan_out, after, home_writes)
    }

    /// How many other regions have applied this region's write `seq` (for `WAIT`).
    pub fn regions_with(&self, seq: u64) -> usize {
        let (region, writer) = (self.region.id, self.writer);
        self.with_engine(|e| {
            e.peer_vectors()
                .iter()
                .filter(|(r, vv)| **r != region && vv.get(writer) >= seq)
                .count()
        })
    }

    /// Apply a batch of changes made outside `execute` (remote ops, expiry, GC); returns the
    /// ticket to wait for, if anything changed.
    pub fn submit(&self, f: impl FnOnce(&mut Engine, &mut Output)) -> Option<u64> {
        let mut inner = self.lock();
        let mut out = Output::default();
        f(&mut inner.engine, &mut out);
        self.absorb(&mut inner, out)
    }

    fn absorb(&self, inner: &mut Inner, out: Output) -> Option<u64> {
        if out.is_empty() {
            return None;
        }
        if let Some(observe) = &self.env.observer {
            observe(crate::env::Observed::Output(&out));
        }
        self.own_seq_now
            .store(inner.engine.applied().get(self.writer), Ordering::Release);
        let p = &mut inner.pending;
        p.changes += out.changed.len().max(1);
        for (k, t) in out.changed {
            match p.changed.entry(k) {
                std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().merge(t),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(t);
                }
            }
        }
        // Remote ops first: within one output they were applied before any write-back, and an
        // origin's ops must reach the log in seq order (own ops re-learned from a peer included).
        p.ops.extend(out.remote_ops);
        p.ops.extend(out.local_ops);
        p.conflicts.extend(out.conflicts);
        p.ticket += 1;
        self.pending_changes.store(p.changes, Ordering::Release);
        Some(p.ticket)
    }

    /// Ring the committer (after `submit`).
    pub fn ring(&self) {
        match &self.doorbell {
            Some(d) => {
                let _ = d.try_send(());
            }
            None => self.doorbell_task.notify_one(),
        }
    }

    pub(crate) async fn wait_for_space(&self) -> Result<(), NodeError> {
        loop {
            let notified = self.space.notified();
            if let Some(e) = self.refused() {
                return Err(NodeError::WritesRefused(e));
            }
            if self.pending_changes.load(Ordering::Acquire) < self.config.limits.max_pending_writes {
                return Ok(());
            }
            self.ring();
            // Bounded: a committer that failed meanwhile is noticed on the next pass.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(100), notified).await;
        }
    }

    /// Wait until a client write of `ticket` may be acknowledged. With `fsync = always | batch`,
    /// once its group is committed and fsynced. With `everysec`, at once: its group commit is not
    /// fsynced either, and a crash loses up to the last second of acknowledged writes whether
    /// they were acknowledged before or after that commit (redb recovers to the last fsynced
    /// commit), so waiting for it would cost throughput and buy nothing.
    pub async fn wait_acknowledgeable(&self, ticket: u64) -> Result<(), NodeError> {
        if self.env.planted_bug == Some(concord_core::PlantedBug::AckBeforeCommit) {
            return Ok(());
        }
        if self.config.storage.fsync == Fsync::Everysec {
            self.ring();
            return match self.refused() {
                Some(e) => Err(NodeError::WritesRefused(e)),
                None => Ok(()),
            };
        }
        self.wait_committed(ticket).await
    }

    /// Wait until the group holding `ticket` is committed.
    pub async fn wait_committed(&self, ticket: u64) -> Result<(), NodeError> {
        self.ring();
        let mut rx = self.committed.subscribe();
        loop {
            match &*rx.borrow_and_update() {
                CommitState::Committed(t) if *t >= ticket => return Ok(()),
                CommitState::Failed(e) => return Err(NodeError::WritesRefused(e.clone())),
                _ => {}
            }
            if rx.changed().await.is_err() {
                return Err(NodeError::Other("node is shutting down".into()));
            }
        }
    }

    /// Commit whatever is pending now (used at shutdown and by the committer).
    fn commit_pending(&self, durability: Durability) -> Result<u64, String> {
        let _ordered = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (batch, ticket, conflicts) = {
            let mut inner = self.lock();
            let pending = std::mem::take(&mut inner.pending);
            self.pending_changes.store(0, Ordering::Release);
            // `ticket` keeps counting across groups.
            inner.pending.ticket = pending.ticket;
            if pending.changes == 0 && pending.ops.is_empty() {
                return Ok(pending.ticket);
            }
            // A string or counter (no set members or hash fields) is stored whole in one row;
            // a set or hash changed slot by slot is stored slot by slot (its context and those
            // slots): a write to a big set or hash costs what it changed, not the size of the key.
            let mut states = Vec::new();
            let mut slots = Vec::new();
            let mut inline = Vec::new();
            for (k, touched) in pending.changed {
                let state = inner.engine.key_state(&k);
                match (state, touched) {
                    (Some(st), Touched::Slots(changed)) => {
                        let members = |s: &Slot| s.is_element();
                        let members_changed = changed.iter().any(members);
                        match (stored_inline(st), members_changed) {
                            // No members before or after: one row, before and after.
                            (true, false) => match InlineState::encode(&k, st) {
                                Ok(row) => inline.push((k, row)),
                                // A state failing its check: written whole, the store refuses
                                // it and poisons itself, as for any other invalid state.
                                Err(_) => states.push((k, Some(st.clone()))),
                            },
                            // The last member went: from slot rows to one row.
                            (true, true) => states.push((k, Some(st.clone()))),
                            (false, _) => {
                                // Maybe its first member: the other slots move out of the one row.
                                let mut changed = changed;
                                if members_changed {
                                    changed.extend(st.slots.keys().filter(|s| !members(s)).cloned());
                                    changed.sort();
                                    changed.dedup();
                                }
                                slots.push(SlotWrite {
                                    ctx: st.ctx.clone(),
                                    slots: changed
                                        .into_iter()
                                        .map(|s| {
                                            let entries = st.entries(&s).cloned();
                                            (s, entries)
                                        })
                                        .collect(),
                                    key: k,
                                })
                            }
                        }
                    }
                    (state, _) => states.push((k, state.cloned())),
                }
            }
            let batch = Batch {
                slots,
                states,
                inline,
                ops: pending.ops,
                conflicts: pending.conflicts.clone(),
                meta: Some(inner.engine.meta()),
            };
            self.committed_own_seq
                .store(inner.engine.applied().get(self.writer), Ordering::Release);
            self.applied_vectors.lock().unwrap_or_else(|p| p.into_inner()).0 = inner.engine.applied().clone();
            (batch, pending.ticket, pending.conflicts)
        };
        self.space.notify_waiters();
        self.store.commit(&batch, durability).map_err(|e| e.to_string())?;
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.server_state.note_saved();
        if durability == Durability::Immediate {
            self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.mark_durable();
        }
        for c in conflicts {
            let _ = self.conflict_feed.send(c);
        }

        Ok(ticket)
    }

    /// Everything committed so far is on disk: own ops up to it may be shipped.
    fn mark_durable(&self) {
        self.durable_own_seq
            .fetch_max(self.committed_own_seq.load(Ordering::Acquire), Ordering::AcqRel);
        let mut v = self.applied_vectors.lock().unwrap_or_else(|p| p.into_inner());
        let committed = v.0.clone();
        v.1.join(&committed);
    }

    /// The applied vector known to be on disk (what acks and reported vectors carry).
    pub fn durable_applied(&self) -> VersionVector {
        self.applied_vectors.lock().unwrap_or_else(|p| p.into_inner()).1.clone()
    }

    /// Run blocking work (redb I/O, a pass over every key) off the async threads: on tokio's
    /// blocking pool in production; inline in the simulation, where threads would make a seed's
    /// run irreproducible and the disk is memory.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        match self.env.committer {
            CommitterMode::Thread => tokio::task::spawn_blocking(f).await,
            CommitterMode::Task => Ok(f()),
        }
    }

    /// This incarnation's writer id (the replica of the dots it issues).
    pub fn writer(&self) -> ReplicaId {
        self.writer
    }

    /// Record that `region`'s applied vector arrived (directly or relayed) since this start.
    pub fn heard_from(&self, region: ReplicaId) {
        self.heard_since_start
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(region);
    }

    /// Whether this node may apply a write to a key homed in its region (DESIGN §8.1). Writes to
    /// other keys never wait: their dots are unique whatever this node forgot. A home key is a
    /// uniqueness claim (`SET NX`), so the home must hold its own history first:
    /// - after every start it waits until every other region has been heard from since (their op
    ///   logs or a full-state transfer bring back whatever of this region they saw): a data dir
    ///   that is new, lost, or restored from an old backup cannot be told from one that is not;
    /// - any node waits while some region reports ops of this region's writers that this node
    ///   lacks (a data dir restored from an old backup, or one still catching up).
    pub fn check_home_writes(&self) -> Result<(), NodeError> {
        self.with_engine(|e| self.check_home_writes_in(e))
    }

    /// [`Node::check_home_writes`] with the engine already locked (inside a unit).
    pub fn check_home_writes_in(&self, e: &Engine) -> Result<(), NodeError> {
        let me = self.region.id;
        let others: Vec<ReplicaId> = self.config.regions.iter().map(|r| r.id).filter(|r| *r != me).collect();
        // Every start, not only an empty data dir: a data dir restored from an old backup looks
        // like any other, and its stored peer vectors are as old as it is.
        if self.env.planted_bug != Some(concord_core::PlantedBug::HomeWritesUnchecked) {
            let heard = self.heard_since_start.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let missing: Vec<&str> = self
                .config
                .regions
                .iter()
                .filter(|r| r.id != me && !heard.contains(&r.id))
                .map(|r| r.name.as_str())
                .collect();
            if !missing.is_empty() {
                let how = if self.fresh_start {
                    "this region's data dir started empty"
                } else {
                    "this node restarted (its data dir may be an old copy)"
                };
                return Err(NodeError::TryAgain(format!(
                    "{how}: keys homed here take writes once it has re-learned its history from every other region (not heard yet: {})",
                    missing.join(", ")
                )));
            }
        }
        let behind = others.iter().find_map(|r| {
            let vv = e.peer_vectors().get(r)?;
            vv.iter()
                .find(|(w, c)| concord_core::region_of(*w) == me && e.applied().get(*w) < *c)
                .map(|(w, c)| (e.region_name(*r), w, c, e.applied().get(w)))
        });
        if let Some((region, w, theirs, ours)) = behind {
            return Err(NodeError::TryAgain(format!(
                "this node is behind its own region's history: {region} has writes {w}:{theirs}, this node {w}:{ours} (a restored data dir?); keys homed here take writes once it has caught up"
            )));
        }
        Ok(())
    }

    /// Watch commits (replication senders wake on each).
    pub fn subscribe_commits(&self) -> watch::Receiver<CommitState> {
        self.committed.subscribe()
    }

    /// Flush everything pending with an fsync (clean shutdown). A failure refuses writes from
    /// then on, as a failure of the committer does: the group it took is not on disk.
    pub fn flush(&self) -> Result<(), NodeError> {
        let result = self.commit_pending(Durability::Immediate).and_then(|t| {
            self.sync_committed()?;
            Ok(t)
        });
        match result {
            Ok(t) => {
                self.committed.send_replace(CommitState::Committed(t));
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "flush failed: refusing writes from now on");
                self.committed.send_replace(CommitState::Failed(e.clone()));
                Err(NodeError::WritesRefused(e))
            }
        }
    }

    /// fsync everything committed so far and mark it durable. Holds `commit_lock`: a group being
    /// committed meanwhile has already published its vectors, and must not count as durable.
    fn sync_committed(&self) -> Result<(), String> {
        let _ordered = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.store.sync().map_err(|e| e.to_string())?;
        self.mark_durable();
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Periodic maintenance: active expiry, write-backs, garbage collection.
    pub fn maintenance(&self) {
        // Garbage collection scans every key: every 2 s is plenty (a purge takes two rounds).
        let round = self.maintenance_rounds.fetch_add(1, Ordering::Relaxed);
        let ticket = self.submit(|engine, out| {
            let now = self.now_ms();
            engine.expire_step(now, 1_000, out);
            engine.tick(now, out);
            if round.is_multiple_of(20) {
                engine.collect_garbage(out);
            }
        });
        if ticket.is_some() {
            self.ring();
        }
    }

    /// Once a second: persist peer vectors and truncate the op log of what every region has
    /// (beyond `log_retention_ops`).
    pub fn replication_housekeeping(&self) {
        let (vectors, regions_known) = self.with_engine(|e| {
            let others = self.config.regions.iter().filter(|r| r.id != self.region.id).count();
            (e.peer_vectors().clone(), e.peer_vectors().len() >= others)
        });
        for (r, vv) in &vectors {
            if let Err(e) = self.store.put_peer_vector(*r, vv) {
                tracing::warn!(error = %e, "cannot persist a peer vector");
            }
        }
        if !regions_known || self.config.regions.len() < 2 {
            return;
        }
        let mine = self.applied();
        for (origin, _) in mine.iter() {
            let everyone = vectors.values().map(|vv| vv.get(origin)).min().unwrap_or(0);
            let upto = everyone.saturating_sub(self.config.log_retention_ops);
            if upto > 0 {
                if let Err(e) = self.store.truncate_log(origin, upto) {
                    tracing::warn!(error = %e, origin, upto, "op log truncation failed");
                }
            }
        }
    }

    pub fn applied(&self) -> VersionVector {
        self.lock().engine.applied().clone()
    }
}

/// The node's periodic work until `stop`: expiry, write-backs and GC every 100 ms; persisting peer
/// vectors and truncating the op log every second (off the runtime's threads in production: it
/// does redb I/O).
pub async fn run_maintenance(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                node.maintenance();
                n += 1;
                if n.is_multiple_of(10) {
                    let n2 = node.clone();
                    let _ = node.blocking(move || n2.replication_housekeeping()).await;
                }
            }
            _ = crate::server::stopped(&mut stop) => return,
        }
    }
}

/// A data dir belongs to one region for life: `region` in it names the region and its id, and a
/// node refuses a data dir of another (a reordered `concord up --regions` list, a copied dir).
fn check_identity(region: &RegionConfig) -> Result<(), NodeError> {
    let path = region.data_dir.join("region");
    let me = format!("{} {}\n", region.name, region.id);
    match std::fs::read_to_string(&path) {
        Ok(found) if found == me => Ok(()),
        Ok(found) => Err(NodeError::Other(format!(
            "data dir {} belongs to region {:?}, not {} (id {}): refusing to open it",
            region.data_dir.display(),
            found.trim(),
            region.name,
            region.id
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&path, me).map_err(|e| NodeError::Other(format!("cannot write {}: {e}", path.display())))
        }
        Err(e) => Err(NodeError::Other(format!("cannot read {}: {e}", path.display()))),
    }
}

/// The committer thread: wait for the doorbell, commit the pending group, publish the ticket.
fn committer(node: std::sync::Weak<Node>, doorbell: std::sync::mpsc::Receiver<()>) {
    let mut last_sync = Instant::now();
    loop {
        let rung = doorbell.recv_timeout(Duration::from_millis(200));
        if matches!(rung, Err(std::sync::mpsc::RecvTimeoutError::Disconnected)) {
            return;
        }
        let Some(node) = node.upgrade() else { return };
        if node.refused().is_some() {
            continue;
        }
        if rung.is_ok() && node.config.storage.fsync == Fsync::Batch && node.config.storage.batch_delay_us > 0 {
            // Let concurrent writers join this group.
            std::thread::sleep(Duration::from_micros(node.config.storage.batch_delay_us));
        }
        node.commit_round(&mut last_sync);
    }
}

/// The committer as a task on the node's runtime (the simulation: one thread, an in-memory disk,
/// so a commit's redb calls do not block anything real). The same rounds as the thread.
async fn committer_task(node: std::sync::Weak<Node>, doorbell: Arc<Notify>) {
    let mut last_sync = Instant::now();
    loop {
        let rung = tokio::time::timeout(Duration::from_millis(200), doorbell.notified())
            .await
            .is_ok();
        let Some(node) = node.upgrade() else { return };
        if node.refused().is_some() {
            continue;
        }
        if rung && node.config.storage.fsync == Fsync::Batch && node.config.storage.batch_delay_us > 0 {
            tokio::time::sleep(Duration::from_micros(node.config.storage.batch_delay_us)).await;
        }
        node.commit_round(&mut last_sync);
    }
}

impl Node {
    /// One committer round: commit the pending group (fsynced per the mode), publish the ticket;
    /// on failure refuse writes from now on.
    fn commit_round(&self, last_sync: &mut Instant) {
        let fsync = self.config.storage.fsync;
        let durability = match fsync {
            Fsync::Always | Fsync::Batch => Durability::Immediate,
            Fsync::Everysec => Durability::Deferred,
        };
        let result = self.commit_pending(durability).and_then(|t| {
            if fsync == Fsync::Everysec && last_sync.elapsed() >= Duration::from_secs(1) {
                self.sync_committed()?;
                *last_sync = Instant::now();
            }
            Ok(t)
        });
        match result {
            Ok(t) => {
                self.committed.send_if_modified(|s| match s {
                    CommitState::Committed(old) if *old < t => {
                        *old = t;
                        true
                    }
                    _ => false,
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "commit failed: refusing writes from now on");
                self.committed.send_replace(CommitState::Failed(e));
            }
        }
    }
}

/// A boxed storage backend is one (redb takes `impl StorageBackend`).
#[derive(Debug)]
struct BoxedBackend(Box<dyn redb::StorageBackend>);

impl redb::StorageBackend for BoxedBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.0.len()
    }
    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, std::io::Error> {
        self.0.read(offset, len)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.0.set_len(len)
    }
    fn sync_data(&self, eventual: bool) -> Result<(), std::io::Error> {
        self.0.sync_data(eventual)
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.0.write(offset, data)
    }
}

/// A key merged from a full-state transfer that is still in progress covers ops this node has not
/// applied yet (and may lack removals they carry): a write on it now would build on a state that
/// is not final and depend on ops its writer never applied (F5). Only such keys wait; every other
/// key is writable (a fresh data dir at once, §8.1).
pub(crate) fn transfer_guard(engine: &Engine, keys: &[&bytes::Bytes]) -> Result<(), NodeError> {
    if let Some(k) = keys.iter().find(|k| {
        engine
            .key_state(k)
            .is_some_and(|st| !st.ctx.dominated_by(engine.applied()))
    }) {
        return Err(NodeError::TryAgain(format!(
            "key {:?} was merged from a full-state transfer still in progress; retry in a moment",
            String::from_utf8_lossy(k)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::Clock;
    use crate::resp::command::{parse_command, Parsed};

    /// One region, us, with its data dir under `dir`.
    fn us_only(dir: &std::path::Path) -> String {
        format!(
            r#"
cluster = "t"
secret = "0123456789"
[[region]]
name = "us"
id = 1
resp = "127.0.0.1:1"
http = "127.0.0.1:2"
peer = "127.0.0.1:3"
data_dir = "{}"
"#,
            dir.join("us").display()
        )
    }

    fn config(dir: &std::path::Path) -> Config {
        Config::parse(&us_only(dir)).unwrap()
    }

    /// `config` with a second region, eu (id 2), that never runs: its ops are made by an engine.
    fn two_regions(dir: &std::path::Path) -> Config {
        let eu = r#"
[[region]]
name = "eu"
id = 2
resp = "127.0.0.1:4"
http = "127.0.0.1:5"
peer = "127.0.0.1:6"
data_dir = "/nonexistent/eu"
"#;
        Config::parse(&(us_only(dir) + eu)).unwrap()
    }

    /// What the store loads equals what the engine holds.
    fn assert_stored_equals_engine(node: &Node, after: &str) {
        node.flush().unwrap();
        let mut engine: Vec<(bytes::Bytes, concord_core::KeyState)> =
            node.with_engine(|e| e.key_states().map(|(k, st)| (k.clone(), st.clone())).collect());
        engine.sort_by(|a, b| a.0.cmp(&b.0));
        let (_, stored) = node.store().load().unwrap();
        assert_eq!(stored, engine, "after {after}");
    }

    /// A command line (space-separated) as an engine request.
    fn request(line: &str) -> Request {
        let args: Vec<bytes::Bytes> = line.split(' ').map(|a| bytes::Bytes::from(a.to_string())).collect();
        let Ok(Parsed::Engine(req, _)) = parse_command(&args) else {
            panic!("{line}: not an engine command")
        };
        req
    }

    async fn run(node: &Node, line: &str) {
        node.execute(request(line))
            .await
            .unwrap_or_else(|e| panic!("{line}: {e}"));
    }

    /// The committer picks a storage form per key (one row; context and slot rows) and moves keys
    /// between forms as they change type: after every step, what the store loads is exactly what
    /// the engine holds (tombstones, contexts and expiries included).
    #[tokio::test(flavor = "current_thread")]
    async fn the_store_holds_exactly_the_engine_states_through_form_changes() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::open(config(dir.path()), "us").unwrap();
        let steps = [
            "SET k v EX 1000",
            "DEL k",
            "SADD k a b",
            "EXPIRE k 500",
            "SREM k a b",
            "INCRBY k 3",
            "HSET h f 1 g 2",
            "HDEL h f",
            "SET h plain",
            "SET s x PX 99999",
            "SADD s2 m",
            "DEL s2",
            "APPEND s y",
            // A counter reset leaves a floor that outlives other writes: it moves from the one
            // row to a slot row when the key becomes a set, and back.
            "INCR c",
            "DEL c",
            "SADD c a",
            "SREM c a",
            // Lists are stored slot by slot too (one row per element), and a string again after.
            "SET q one",
            "RPUSH l a b c",
            "LSET l 1 B",
            "LPOP l",
            "LMOVE l q2 LEFT RIGHT",
            "RPOP l",
            "SET l plain",
        ];
        for line in steps {
            run(&node, line).await;
            assert_stored_equals_engine(&node, line);
        }
    }

    /// The same through the paths that are not client writes: remote ops (type changes made in
    /// another region), a full-state merge, and the purge of tombstone-only keys.
    #[tokio::test(flavor = "current_thread")]
    async fn the_store_holds_exactly_the_engine_states_after_remote_ops_merges_and_purges() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::open(two_regions(dir.path()), "us").unwrap();
        let mut eu = Engine::new(EngineConfig::new(2, node.config.region_names()));
        let eu_exec = |eu: &mut Engine, line: &str| {
            let mut out = Output::default();
            eu.execute(request(line), crate::env::SystemClock.now_ms(), &mut out)
                .unwrap();
            out.local_ops
        };
        run(&node, "SET k v EX 1000").await;
        run(&node, "INCR c").await;
        run(&node, "DEL c").await;
        // eu turns k into a set and c into a hash, then empties them, one op at a time.
        let mut ops = Vec::new();
        for line in [
            "SET k v",
            "DEL k",
            "SADD k a b",
            "HSET c f 1",
            "SREM k a b",
            "HDEL c f",
            "SET gone x",
        ] {
            ops.extend(eu_exec(&mut eu, line));
        }
        for op in ops {
            let what = format!("remote op {}:{} on {:?}", op.origin, op.seq, op.key);
            node.submit(|e, out| {
                e.receive(op, crate::env::SystemClock.now_ms(), out);
            });
            assert_stored_equals_engine(&node, &what);
        }
        // A full-state merge of eu's states (whole rewrites).
        let (_, states) = eu.snapshot();
        node.submit(|e, out| {
            assert!(e.merge_snapshot(states, out).is_empty());
        });
        assert_stored_equals_engine(&node, "a snapshot merge");
        // Deletes leave tombstone-only keys; once both regions report them stable, GC purges them.
        run(&node, "DEL gone").await;
        run(&node, "DEL k").await;
        for _ in 0..2 {
            node.submit(|e, out| {
                let everything = e.applied().clone();
                e.observe_peer(2, &everything);
                e.collect_garbage(out);
            });
        }
        assert_stored_equals_engine(&node, "garbage collection");
        assert!(node.with_engine(|e| e.stats.keys_purged) > 0, "something was purged");
    }

    /// The storage-failure path: once a commit fails (in every fsync mode), the writer of the
    /// failed group (or, under `everysec`, whose write was acknowledged before it, the next
    /// writer) and every later writer get the documented error, on RESP and as HTTP 503; reads
    /// keep being served from memory; a restart recovers the last durable commit and takes
    /// writes again.
    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_commit_refuses_writes_and_keeps_serving_reads() {
        use crate::config::Fsync;
        use axum::response::IntoResponse;
        for fsync in [Fsync::Always, Fsync::Batch, Fsync::Everysec] {
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = config(dir.path());
            cfg.storage.fsync = fsync;
            let node = Node::open(cfg.clone(), "us").unwrap();
            run(&node, "SET kept v1").await;
            run(&node, "SADD set a").await;
            node.flush().unwrap();
            node.store().fail_next_write_for_test();
            let failed = node.execute(request("SET lost v2")).await;
            let err = match (fsync, failed) {
                (Fsync::Everysec, Ok(_)) => {
                    // Acknowledged before its group commit (everysec): the commit fails behind it.
                    node.flush().expect_err("the group holding the write fails to commit");
                    node.execute(request("SET other v3"))
                        .await
                        .expect_err("a write after the failure is refused")
                }
                (_, Ok(_)) => panic!("{fsync:?}: a write whose commit failed was acknowledged"),
                (_, Err(e)) => e,
            };
            let line = err.to_string();
            assert!(
                matches!(err, NodeError::WritesRefused(_))
                    && line.starts_with("ERR storage failed, this node refuses writes until restarted: ")
                    && line.contains("injected write failure"),
                "{fsync:?}: {line}"
            );
            for later in ["SET kept v9", "DEL kept", "SADD set b", "INCR n", "EXPIRE kept 10"] {
                let e = node
                    .execute(request(later))
                    .await
                    .expect_err("every later write is refused");
                assert!(matches!(e, NodeError::WritesRefused(_)), "{fsync:?} {later}: {e}");
            }
            let status = crate::http::ApiError::from(err).into_response().status();
            assert_eq!(status, axum::http::StatusCode::SERVICE_UNAVAILABLE, "{fsync:?}");
            assert_eq!(
                node.execute(request("GET kept")).await.unwrap(),
                Reply::Bulk("v1".into()),
                "{fsync:?}: reads are served"
            );
            assert!(matches!(
                node.execute(request("SMEMBERS set")).await.unwrap(),
                Reply::Set(ref m) if m == &vec![Reply::Bulk("a".into())]
            ));
            // A restart recovers what was durable, without the failed write, and takes writes.
            // (The committer thread may hold the node, and the file lock, a moment longer.)
            drop(node);
            let node = {
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    match Node::open(cfg.clone(), "us") {
                        Ok(node) => break node,
                        Err(e) if Instant::now() < deadline && e.to_string().contains("already open") => {
                            tokio::time::sleep(Duration::from_millis(50)).await
                        }
                        Err(e) => panic!("{fsync:?}: reopen: {e}"),
                    }
                }
            };
            assert_eq!(
                node.execute(request("GET lost")).await.unwrap(),
                Reply::Nil,
                "{fsync:?}"
            );
            assert_eq!(
                node.execute(request("GET kept")).await.unwrap(),
                Reply::Bulk("v1".into())
            );
            run(&node, "SET kept v10").await;
        }
    }
}
