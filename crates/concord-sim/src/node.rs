//! One simulated region: an engine, its "disk", its pull links and its workload, on turmoil.
//!
//! It mirrors the real node's replication (`concord-server/src/replication.rs`) in miniature: pull
//! links subscribe with the applied vector, the source streams ops after it from its op log merged
//! by HLC (or a full-state transfer when the log was truncated past it), the subscriber applies
//! through the causal buffer, persists, and acks; both sides exchange vectors. Writes are made
//! durable (the disk updated) before they count as acknowledged.

use crate::history::{Acked, History};
use crate::rng::Rng;
use bytes::Bytes;
use concord_core::*;
use concord_net::frame::{read_message, write_message};
use concord_net::handshake::{handshake, Identity};
use concord_net::Message;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

pub const PEER_PORT: u16 = 9000;
/// A link that hears nothing for this long is dropped and re-established (heartbeats are 100 ms).
pub const LINK_IDLE_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Base of the simulated wall clock (ms since the Unix epoch) before skew.
pub const EPOCH_MS: u64 = 1_790_000_000_000;

/// What survives a crash.
#[derive(Clone, Default)]
pub struct Disk {
    pub meta: EngineMeta,
    pub states: BTreeMap<Bytes, KeyState>,
    pub log: BTreeMap<(ReplicaId, u64), Op>,
    /// Per origin, the highest seq truncated from the log.
    pub floor: BTreeMap<ReplicaId, u64>,
}

/// One region's live state while its host runs.
pub struct Live {
    pub engine: Engine,
    pub writable: bool,
    pub notify: Rc<Notify>,
}

/// Everything shared between the hosts and the driver (one thread: `Rc<RefCell>`).
pub struct World {
    pub names: Vec<String>,
    pub skew_ms: Vec<i64>,
    pub disks: Vec<Disk>,
    pub live: Vec<Option<Rc<RefCell<Live>>>>,
    pub history: History,
    pub workload_on: bool,
    pub seed: u64,
    pub incarnation: Vec<u64>,
    pub policies: PolicySet,
    pub planted: Option<crate::run::PlantedBug>,
    pub log_retention_ops: u64,
    /// Sources send ops merged by HLC (like the node) rather than grouped by origin.
    pub hlc_ordered_batches: bool,
}

pub type Shared = Rc<RefCell<World>>;

fn now_ms(world: &Shared, idx: usize) -> u64 {
    let skew = world.borrow().skew_ms[idx];
    let t = EPOCH_MS as i64 + turmoil::elapsed().as_millis() as i64 + skew;
    t.max(0) as u64
}

fn ids(world: &World) -> BTreeMap<ReplicaId, String> {
    world
        .names
        .iter()
        .enumerate()
        .map(|(i, n)| (i as ReplicaId + 1, n.clone()))
        .collect()
}

/// Persist an engine output to the region's disk and record it in the history.
fn persist(world: &Shared, idx: usize, live: &Live, out: Output, acked: bool) {
    let mut w = world.borrow_mut();
    let w = &mut *w;
    let disk = &mut w.disks[idx];
    for k in out.changed.keys() {
        match live.engine.key_state(k) {
            Some(s) => disk.states.insert(k.clone(), s.clone()),
            None => disk.states.remove(k),
        };
    }
    for op in out.remote_ops.iter().chain(out.local_ops.iter()) {
        disk.log.insert((op.origin, op.seq), op.clone());
        w.history.applied_order[idx].push(crate::history::Applied::Op(op.dot()));
    }
    disk.meta = live.engine.meta();
    for op in &out.local_ops {
        w.history.ops.insert(op.dot(), op.clone());
        if acked {
            w.history.acked.push(Acked {
                region: idx,
                op: op.clone(),
                slots: op.delta.adds.iter().map(|(s, _)| s.clone()).collect(),
            });
        }
    }
    w.history.conflicts.extend(out.conflicts);
    live.notify.notify_waiters();
}

/// The host's main future: recover from disk, serve, pull, write, maintain.
pub async fn run(world: Shared, idx: usize) -> turmoil::Result {
    let (engine, fresh, multi, incarnation) = {
        let mut w = world.borrow_mut();
        w.incarnation[idx] += 1;
        let mut cfg = EngineConfig::new(idx as ReplicaId + 1, ids(&w));
        cfg.policies = w.policies.clone();
        cfg.planted_bug = w.planted.map(|p| p.core());
        let disk = w.disks[idx].clone();
        let fresh = disk.meta.applied.is_empty();
        let engine = Engine::restore(cfg, disk.meta, disk.states);
        (engine, fresh, w.names.len() > 1, w.incarnation[idx])
    };
    let live = Rc::new(RefCell::new(Live {
        engine,
        writable: !(fresh && multi),
        notify: Rc::new(Notify::new()),
    }));
    world.borrow_mut().live[idx] = Some(live.clone());

    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PEER_PORT)).await?;
    {
        let (world, live) = (world.clone(), live.clone());
        tokio::task::spawn_local(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let (world, live) = (world.clone(), live.clone());
                tokio::task::spawn_local(async move {
                    let _ = serve(world, idx, live, socket).await;
                });
            }
        });
    }
    let n = world.borrow().names.len();
    for up in 0..n {
        if up != idx {
            let (world, live) = (world.clone(), live.clone());
            tokio::task::spawn_local(async move {
                loop {
                    let _ = pull(world.clone(), idx, up, live.clone()).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
    }
    {
        let (world, live) = (world.clone(), live.clone());
        tokio::task::spawn_local(workload(world, idx, live, incarnation));
    }
    // A fresh region that hears nobody for 5 s starts accepting writes (like the node).
    {
        let live = live.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            live.borrow_mut().writable = true;
        });
    }
    // Maintenance: write-backs, garbage collection, log truncation.
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut out = Output::default();
        let now = now_ms(&world, idx);
        {
            let mut l = live.borrow_mut();
            l.engine.tick(now, &mut out);
            l.engine.collect_garbage(&mut out);
        }
        persist(&world, idx, &live.borrow(), out, true);
        truncate(&world, idx, &live.borrow());
    }
}

fn truncate(world: &Shared, idx: usize, live: &Live) {
    let vectors = live.engine.peer_vectors().clone();
    let mut w = world.borrow_mut();
    let retention = w.log_retention_ops;
    if vectors.len() + 1 < w.names.len() {
        return;
    }
    let disk = &mut w.disks[idx];
    for (origin, _) in live.engine.applied().iter() {
        let everyone = vectors.values().map(|vv| vv.get(origin)).min().unwrap_or(0);
        let upto = everyone.saturating_sub(retention);
        if upto > disk.floor.get(&origin).copied().unwrap_or(0) {
            let keys: Vec<_> = disk.log.range((origin, 0)..=(origin, upto)).map(|(k, _)| *k).collect();
            for k in keys {
                disk.log.remove(&k);
            }
            disk.floor.insert(origin, upto);
        }
    }
}

fn identity(world: &Shared, idx: usize) -> Identity {
    let w = world.borrow();
    Identity {
        cluster: "sim".into(),
        region: w.names[idx].clone(),
        replica: idx as ReplicaId + 1,
        secret: "sim-secret".into(),
        config: Default::default(),
    }
}

fn nonce(world: &Shared, idx: usize, salt: u64) -> [u8; 16] {
    let mut r = Rng::new(world.borrow().seed ^ (idx as u64) << 40 ^ salt ^ turmoil::elapsed().as_nanos() as u64);
    let mut n = [0u8; 16];
    for b in n.iter_mut() {
        *b = r.next_u64() as u8;
    }
    n
}

/// Read messages off a connection into a channel (so `select!` never cancels a half-read frame).
fn spawn_reader(mut read: turmoil::net::tcp::OwnedReadHalf) -> mpsc::Receiver<Message> {
    let (tx, rx) = mpsc::channel::<Message>(64);
    tokio::task::spawn_local(async move {
        while let Ok((m, _)) = read_message(&mut read).await {
            if tx.send(m).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// Source side: stream what the subscriber misses, then live ops; read its acks and vectors.
async fn serve(
    world: Shared,
    idx: usize,
    live: Rc<RefCell<Live>>,
    mut socket: turmoil::net::TcpStream,
) -> Result<(), Box<dyn std::error::Error>> {
    let peer = handshake(&mut socket, &identity(&world, idx), false, nonce(&world, idx, 1)).await?;
    let (Message::Subscribe { applied }, _) = read_message(&mut socket).await? else {
        return Err("expected subscribe".into());
    };
    let (read, mut write) = socket.into_split();
    let mut rx = spawn_reader(read);
    let peer_own_upto = live.borrow().engine.applied().get(peer.replica);
    let mut cursor = applied;
    let mut acked_here = VersionVector::new();
    let notify = live.borrow().notify.clone();
    let mut last_heard = tokio::time::Instant::now();
    loop {
        if last_heard.elapsed() > LINK_IDLE_TIMEOUT {
            return Err("subscriber silent".into());
        }
        // Skip what the subscriber acknowledged on this connection (it may get ops by other
        // paths). Never its vector as relayed by others: a region that lost its disk reports less
        // than it once had, and only what it says itself is true now.
        cursor.join(&acked_here);
        match next_batch(&world, idx, &live, &cursor, peer.replica, peer_own_upto) {
            Some(batch) if !batch.is_empty() => {
                for op in &batch {
                    cursor.add(op.dot());
                }
                write_message(&mut write, &Message::Ops(batch)).await?;
                continue;
            }
            Some(_) => {}
            None => {
                // Behind the log: full-state transfer.
                let (vector, states) = live.borrow().engine.snapshot();
                world.borrow_mut().history.snapshots += 1;
                write_message(
                    &mut write,
                    &Message::SnapshotBegin {
                        vector: vector.clone(),
                        keys: states.len() as u64,
                    },
                )
                .await?;
                for chunk in states.chunks(50) {
                    write_message(&mut write, &Message::SnapshotChunk(chunk.to_vec())).await?;
                }
                write_message(&mut write, &Message::SnapshotEnd { vector: vector.clone() }).await?;
                cursor = vector;
                continue;
            }
        }
        let vectors = {
            let l = live.borrow();
            let mut m = l.engine.peer_vectors().clone();
            m.insert(idx as ReplicaId + 1, l.engine.applied().clone());
            m
        };
        tokio::select! {
            biased;
            _ = notify.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                write_message(&mut write, &Message::Vectors(vectors)).await?;
            }
            m = rx.recv() => {
                last_heard = tokio::time::Instant::now();
                match m {
                    Some(Message::Ack { applied }) => {
                        live.borrow_mut().engine.observe_peer(peer.replica, &applied);
                        acked_here.join(&applied);
                    }
                    Some(Message::Vectors(v)) => {
                        let mut l = live.borrow_mut();
                        for (r, vv) in &v { l.engine.observe_peer(*r, vv); }
                    }
                    _ => return Ok(()),
                }
            }
        }
    }
}

/// Ops after `cursor` from this region's log, merged by HLC; `None` if the log was truncated past it.
fn next_batch(
    world: &Shared,
    idx: usize,
    live: &Rc<RefCell<Live>>,
    cursor: &VersionVector,
    peer: ReplicaId,
    peer_own_upto: u64,
) -> Option<Vec<Op>> {
    let applied = live.borrow().engine.applied().clone();
    let w = world.borrow();
    let disk = &w.disks[idx];
    let mut all = Vec::new();
    for (origin, have) in applied.iter() {
        // Never echo the subscriber's own ops back, except those it lacked when it subscribed.
        let have = if origin == peer { have.min(peer_own_upto) } else { have };
        let from = cursor.get(origin);
        if have <= from {
            continue;
        }
        if disk.floor.get(&origin).copied().unwrap_or(0) > from {
            return None;
        }
        all.extend(
            disk.log
                .range((origin, from + 1)..=(origin, have))
                .take(100)
                .map(|(_, op)| op.clone()),
        );
    }
    // Half the seeds send by origin rather than by HLC: the stream then does not respect
    // causality on its own, and the receiver's causal buffer must.
    if w.hlc_ordered_batches {
        all.sort_by_key(|o| (o.hlc, o.origin, o.seq));
    } else {
        all.sort_by_key(|o| (o.origin, o.seq));
    }
    all.truncate(100);
    Some(all)
}

/// Subscriber side: pull from `up`, apply, persist, ack.
async fn pull(world: Shared, idx: usize, up: usize, live: Rc<RefCell<Live>>) -> Result<(), Box<dyn std::error::Error>> {
    let name = world.borrow().names[up].clone();
    let mut socket = tokio::time::timeout(
        Duration::from_secs(1),
        turmoil::net::TcpStream::connect((name.as_str(), PEER_PORT)),
    )
    .await??;
    handshake(
        &mut socket,
        &identity(&world, idx),
        true,
        nonce(&world, idx, 2 + up as u64),
    )
    .await?;
    let applied = live.borrow().engine.applied().clone();
    write_message(&mut socket, &Message::Subscribe { applied }).await?;
    let (read, mut write) = socket.into_split();
    let mut rx = spawn_reader(read);
    let mut last_heard = tokio::time::Instant::now();
    loop {
        // A link that hears nothing for a second is dead (a partition can leave a connection
        // silently broken): drop it and reconnect.
        if last_heard.elapsed() > LINK_IDLE_TIMEOUT {
            return Err("upstream silent".into());
        }
        let msg = tokio::select! {
            biased;
            m = rx.recv() => { last_heard = tokio::time::Instant::now(); m.ok_or("closed")? }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                let (applied, vectors) = {
                    let l = live.borrow();
                    let mut m = l.engine.peer_vectors().clone();
                    m.insert(idx as ReplicaId + 1, l.engine.applied().clone());
                    (l.engine.applied().clone(), m)
                };
                write_message(&mut write, &Message::Ack { applied }).await?;
                write_message(&mut write, &Message::Vectors(vectors)).await?;
                continue;
            }
        };
        let now = now_ms(&world, idx);
        let mut out = Output::default();
        match msg {
            Message::Ops(ops) => {
                {
                    let mut l = live.borrow_mut();
                    for op in ops {
                        l.engine.receive(op, now, &mut out);
                    }
                }
                let catch_up = out.catch_up;
                persist(&world, idx, &live.borrow(), out, true);
                let applied = live.borrow().engine.applied().clone();
                write_message(&mut write, &Message::Ack { applied }).await?;
                if catch_up {
                    return Err("causal buffer overflow".into());
                }
            }
            Message::Vectors(v) => {
                let mut l = live.borrow_mut();
                for (r, vv) in &v {
                    l.engine.observe_peer(*r, vv);
                }
                // Caught up with this upstream; writes open once no region is known to hold
                // more of this region's own ops (as in the node).
                let me = idx as ReplicaId + 1;
                let most = l.engine.peer_vectors().values().map(|vv| vv.get(me)).max().unwrap_or(0);
                if l.engine.applied().get(me) >= most {
                    l.writable = true;
                }
            }
            Message::SnapshotBegin { .. } => {}
            Message::SnapshotChunk(states) => {
                let rejected = live.borrow_mut().engine.merge_snapshot(states, &mut out);
                assert!(rejected.is_empty(), "a snapshot carried invalid states: {rejected:?}");
                persist(&world, idx, &live.borrow(), out, true);
            }
            Message::SnapshotEnd { vector } => {
                world.borrow_mut().history.applied_order[idx].push(crate::history::Applied::Snapshot(vector.clone()));
                live.borrow_mut().engine.finish_snapshot(&vector, now, &mut out);
                persist(&world, idx, &live.borrow(), out, true);
            }
            _ => return Err("unexpected message".into()),
        }
    }
}

/// Random commands at random times while the workload is on.
async fn workload(world: Shared, idx: usize, live: Rc<RefCell<Live>>, incarnation: u64) {
    let seed = world.borrow().seed;
    let mut rng = Rng::new(seed ^ ((idx as u64 + 1) << 32) ^ incarnation.wrapping_mul(0x1000193));
    loop {
        tokio::time::sleep(Duration::from_millis(rng.range(2, 30))).await;
        if !world.borrow().workload_on || !live.borrow().writable {
            continue;
        }
        let req = random_request(&mut rng, &live.borrow().engine);
        let is_del = matches!(req, Request::Del(_));
        let now = now_ms(&world, idx);
        let mut out = Output::default();
        let result = live.borrow_mut().engine.execute(req, now, &mut out);
        if result.is_ok() {
            if is_del {
                let dots: Vec<Dot> = out.local_ops.iter().map(|o| o.dot()).collect();
                world.borrow_mut().history.deletes.extend(dots);
            }
            persist(&world, idx, &live.borrow(), out, true);
        }
    }
}

fn random_request(rng: &mut Rng, engine: &Engine) -> Request {
    let prefixes = ["s:", "l:", "p:", "x"];
    let key = Bytes::from(format!("{}{}", prefixes[rng.below(4) as usize], rng.below(4)));
    let val = Bytes::from(format!("v{}", rng.below(10_000)));
    let member = Bytes::from(format!("m{}", rng.below(4)));
    match rng.below(100) {
        0..=29 => Request::Set {
            key,
            value: val,
            condition: SetCondition::Always,
            expiry: SetExpiry::Clear,
            get: false,
        },
        30..=37 => Request::Del(vec![key]),
        38..=49 => Request::IncrBy {
            key,
            by: rng.below(11) as i64 - 5,
        },
        50..=61 => Request::SAdd {
            key,
            members: vec![member],
        },
        62..=69 => Request::SRem {
            key,
            members: vec![member],
        },
        70..=81 => Request::HSet {
            key,
            pairs: vec![(member, val)],
        },
        82..=87 => Request::HDel {
            key,
            fields: vec![member],
        },
        88..=93 => {
            let context = engine.key_state(&key).map(|s| s.ctx.clone()).unwrap_or_default();
            Request::Resolve {
                key,
                context,
                value: val,
            }
        }
        _ => Request::Append { key, value: val },
    }
}
