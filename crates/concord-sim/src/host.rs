//! One simulated region: a real `concord-server` [`Node`] on a turmoil host.
//!
//! The host opens the node with a simulated [`Env`]: turmoil's network (peer addresses of the
//! config map to hosts), a wall clock skewed per region, randomness from the seed, the committer
//! as a task, and the region's crash-faithful [`Disk`] under redb. It starts the node's real
//! replication links and maintenance, then runs a seeded client workload through the same entry
//! point the RESP front end uses ([`Node::client_command`]: routing to home regions, forwarding,
//! ack levels). Nothing of the node's logic is re-implemented here.

use crate::disk::Disk;
use crate::history::{Acked, Applied, History};
use crate::rng::Rng;
use bytes::Bytes;
use concord_core::{Op, ReplicaId};
use concord_server::config::Config;
use concord_server::env::{
    BoxFuture, BoxStream, Clock, CommitterMode, Env, Listener, Network, Observed, Random, Storage,
};
use concord_server::node::Node;
use concord_server::resp::{parse_command, Parsed};
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Base of the simulated wall clock (ms since the Unix epoch) before skew.
pub const EPOCH_MS: u64 = 1_790_000_000_000;
/// Region i's peer port (`127.0.0.1:PEER_BASE + i` in the config; turmoil host i listens on it).
pub const PEER_BASE: u16 = 9001;

/// Everything shared between the hosts and the driver (one thread: `Rc<RefCell>`); the history
/// is behind a mutex because the nodes' observers (which must be `Send`) write it.
pub struct World {
    pub names: Vec<String>,
    pub skew_ms: Vec<i64>,
    pub disks: Vec<Disk>,
    pub live: Vec<Option<Arc<Node>>>,
    pub history: Arc<Mutex<History>>,
    pub workload_on: bool,
    pub seed: u64,
    pub incarnation: Vec<u64>,
    /// Per region, the config file text it starts with (storage settings differ per region).
    pub configs: Vec<String>,
    /// Whether region i acknowledges writes only once fsynced (not `everysec`).
    pub durable_acks: Vec<bool>,
    pub planted: Option<concord_core::PlantedBug>,
    /// Run the pub/sub workload (`--pubsub`).
    pub pubsub: bool,
    /// Failures seen while running (a node that cannot open its disk, say).
    pub failures: Vec<String>,
}

pub type Shared = Rc<RefCell<World>>;

struct SimClock {
    skew_ms: i64,
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        let t = EPOCH_MS as i64 + turmoil::sim_elapsed().map(|d| d.as_millis() as i64).unwrap_or(0) + self.skew_ms;
        t.max(0) as u64
    }
}

/// Peer addresses of the config (`127.0.0.1:9001+i`) are turmoil host i.
struct SimNet {
    names: Vec<String>,
}

struct SimListener(turmoil::net::TcpListener);

impl Listener for SimListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (s, addr) = self.0.accept().await?;
            Ok((Box::new(s) as BoxStream, addr))
        })
    }
}

impl Network for SimNet {
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<BoxStream>> {
        let host = addr
            .port()
            .checked_sub(PEER_BASE)
            .and_then(|i| self.names.get(i as usize))
            .cloned();
        Box::pin(async move {
            let host = host.ok_or_else(|| io::Error::new(io::ErrorKind::ConnectionRefused, "no such host"))?;
            let s = turmoil::net::TcpStream::connect((host.as_str(), addr.port())).await?;
            Ok(Box::new(s) as BoxStream)
        })
    }

    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let l = turmoil::net::TcpListener::bind(("0.0.0.0", addr.port())).await?;
            Ok(Box::new(SimListener(l)) as Box<dyn Listener>)
        })
    }
}

/// Records what every node's engine does into the history.
fn observer(history: Arc<Mutex<History>>, idx: usize) -> concord_server::env::Observer {
    Arc::new(move |seen: Observed<'_>| {
        let mut h = history.lock().unwrap();
        match seen {
            Observed::Output(out) => {
                for op in out.remote_ops.iter().chain(out.local_ops.iter()) {
                    h.applied_order[idx].push(Applied::Op(op.dot()));
                    h.record_op(op);
                }
                // Units: how many of each unit's ops this one engine output (one lock hold) made
                // or applied.
                let mut made = std::collections::BTreeMap::new();
                let mut applied = std::collections::BTreeMap::new();
                for op in out.local_ops.iter().filter(|o| o.in_unit()) {
                    *made.entry((op.origin, op.unit_end)).or_insert(0usize) += 1;
                }
                for op in out.remote_ops.iter().filter(|o| o.in_unit()) {
                    *applied.entry((op.origin, op.unit_end)).or_insert(0usize) += 1;
                }
                h.units_made.extend(made);
                for (unit, n) in applied {
                    h.unit_fragments.push((idx, unit, n));
                }
                h.conflicts.extend(out.conflicts.iter().cloned());
            }
            Observed::ForwardAnswered(dot) => {
                let now_ms = turmoil::sim_elapsed().map(|d| d.as_millis() as u64).unwrap_or(0);
                h.forward_answered.insert(dot, now_ms);
            }
            Observed::SnapshotMerged(vv) => {
                h.applied_order[idx].push(Applied::Snapshot(vv.clone()));
                h.snapshots += 1;
            }
        }
    })
}

/// The host's main future: open the node on the region's disk, start its links and
/// maintenance, run the workload.
pub async fn run(world: Shared, idx: usize) -> turmoil::Result {
    let (config, name, env, incarnation) = {
        let mut w = world.borrow_mut();
        w.incarnation[idx] += 1;
        let config = Config::parse(&w.configs[idx]).map_err(|e| format!("sim config: {e}"))?;
        let disk = w.disks[idx].clone();
        let env = Env {
            clock: Arc::new(SimClock {
                skew_ms: w.skew_ms[idx],
            }),
            net: Arc::new(SimNet { names: w.names.clone() }),
            random: Random::seeded(w.seed ^ ((idx as u64 + 1) << 48) ^ w.incarnation[idx].wrapping_mul(0x9E37)),
            committer: CommitterMode::Task,
            storage: Mutex::new(Some(Storage::Backend(Box::new(move || Box::new(disk.handle()))))),
            observer: Some(observer(w.history.clone(), idx)),
            planted_bug: w.planted,
        };
        (config, w.names[idx].clone(), env, w.incarnation[idx])
    };
    let node = match Node::open_in(config, &name, Arc::new(env)) {
        Ok(n) => n,
        Err(e) => {
            // A node that cannot trust its disk stops; after a crash that is a bug (redb must
            // recover any crash image), after an injected disk failure it is expected.
            let failed = world.borrow().disks[idx].has_failed();
            if !failed {
                world
                    .borrow_mut()
                    .failures
                    .push(format!("{name} cannot open its store after a restart: {e}"));
            }
            return Ok(());
        }
    };
    world.borrow_mut().live[idx] = Some(node.clone());
    // What the node recovered from its disk is what it has seen now (a crash took the rest).
    let recovered = node.applied();
    world.borrow().history.lock().unwrap().applied_order[idx].push(Applied::Opened(recovered));
    let (_stop_tx, stop_rx) = watch::channel(false);
    concord_server::replication::start(node.clone(), stop_rx.clone()).await?;
    tokio::spawn(concord_server::node::run_maintenance(node.clone(), stop_rx.clone()));
    tokio::spawn(concord_server::aae::run(node.clone(), stop_rx));
    if world.borrow().pubsub {
        pubsub_workload(&world, idx, &node, incarnation);
    }
    workload(world, idx, node, incarnation).await;
    Ok(())
}

/// The prefixes of the workload's keys and what their policies are (see `run::config_text`).
const PREFIXES: [&str; 7] = ["l:", "s:", "p:", "h:", "a:", "loc:", "x:"];

/// Random client commands at random times while the workload is on.
async fn workload(world: Shared, idx: usize, node: Arc<Node>, incarnation: u64) {
    let seed = world.borrow().seed;
    let mut rng = Rng::new(seed ^ ((idx as u64 + 1) << 32) ^ incarnation.wrapping_mul(0x1000193));
    loop {
        tokio::time::sleep(Duration::from_millis(rng.range(2, 30))).await;
        if !world.borrow().workload_on {
            continue;
        }
        if rng.chance(5) {
            transaction(&world, idx, &node, &mut rng).await;
            continue;
        }
        let mut args = random_command(&mut rng, &node);
        // Every other single pop of a home list blocks (`BLPOP`/`BRPOP`, 200 ms): the node's
        // wait (`Node::client_blocking`, as the RESP front end runs it), woken by local or
        // replicated pushes, the pop forwarded to the home. Checked by `home_pops_once`.
        // Alternates without drawing from the workload's randomness.
        let single_home_pop = args.len() == 2
            && args[1].starts_with(b"hq:")
            && (args[0].as_ref() == b"LPOP" || args[0].as_ref() == b"RPOP");
        let blocking = single_home_pop && {
            let w = world.borrow();
            let mut h = w.history.lock().unwrap();
            h.blocking_started += 1;
            h.blocking_started.is_multiple_of(2)
        };
        if blocking {
            let name = if args[0].as_ref() == b"LPOP" { "BLPOP" } else { "BRPOP" };
            args = vec![b(name), args[1].clone(), b("0.2")];
        }
        let (req, blocked) = match parse_command(&args) {
            Ok(Parsed::Engine(req, _)) => (req, None),
            Ok(Parsed::Blocking(bl)) if blocking => (bl.request.clone(), Some(bl)),
            _ => panic!("the workload made an unparsable command: {args:?}"),
        };
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        let is_del = name == "DEL";
        let is_nx = name == "SET" && args.iter().any(|a| a.eq_ignore_ascii_case(b"NX"));
        let key = args.get(1).cloned().unwrap_or_default();
        // Ack levels apply to single-key writes (multi-key writes are answered locally).
        let single = req.keys().is_some_and(|k| k.len() == 1);
        // Every other uniqueness claim is a script declaring its key: run at the key's home
        // (forwarded whole from another region), checked by `home_unique` like a `SET NX`.
        // Alternates without drawing from the workload's randomness.
        let as_script = is_nx && key.starts_with(b"u:") && {
            let w = world.borrow();
            let mut h = w.history.lock().unwrap();
            h.claims_started += 1;
            h.claims_started.is_multiple_of(2)
        };
        let result = if as_script {
            claim_by_script(&node, &key, &args[2]).await
        } else if let Some(bl) = blocked {
            let timeout = tokio::time::sleep(Duration::from_millis(bl.timeout_ms.unwrap_or(200)));
            match node.client_blocking(&bl.args, bl.request, timeout).await {
                Ok(Ok(done)) => {
                    world.borrow().history.lock().unwrap().blocking_pops += 1;
                    Ok(done)
                }
                Ok(Err(())) => continue, // timed out: nothing popped
                Err(e) => Err(e),
            }
        } else {
            node.client_command(&args, req, None).await
        };
        let done = match result {
            Ok(d) => d,
            Err(_) => continue,
        };
        if let Some(t) = done.ticket {
            if node.wait_acknowledgeable(t).await.is_err() {
                continue;
            }
        }
        let w = world.borrow();
        let mut h = w.history.lock().unwrap();
        let now_ms = turmoil::sim_elapsed().map(|d| d.as_millis() as u64).unwrap_or(0);
        // The write's identity: made here, or at its home region (forwarded).
        let made = done
            .own_seq
            .map(|seq| (idx, concord_core::Dot::new(node.writer(), seq)))
            .or_else(|| {
                done.home_dot
                    .map(|d| (concord_core::region_of(d.replica) as usize - 1, d))
            });
        if as_script && done.home_dot.is_some() {
            h.forwarded_scripts += 1;
        }
        if is_nx && key.starts_with(b"u:") && done.reply != concord_core::Reply::Nil {
            h.nx_successes.push((
                key.clone(),
                w.names[idx].clone(),
                format!("{:?} at t={now_ms}ms", args),
                made.map(|(_, d)| d),
            ));
        }
        let is_pop = matches!(name.as_str(), "LPOP" | "RPOP" | "LMPOP" | "BLPOP" | "BRPOP");
        if is_pop && args.iter().any(|a| a.starts_with(b"hq:")) {
            for element in popped(&done.reply) {
                // LMPOP's reply names the key too.
                if !element.starts_with(b"hq:") {
                    h.home_pops
                        .push((element, w.names[idx].clone(), format!("{:?} at t={now_ms}ms", args)));
                }
            }
        }
        let Some((made_at, dot)) = made else { continue };
        let Some(op) = h.ops.get(&dot).cloned() else {
            continue;
        };
        if is_del {
            h.deletes.insert(dot);
        }
        // With `everysec` an acknowledged write may be lost in a crash (documented): only
        // writes acknowledged after their fsync must survive. A forwarded write counts where it
        // was made: its home.
        if w.durable_acks[made_at] {
            let others = if single {
                concord_server::routing::regions_needed(node.policy_ack(&key), w.names.len())
            } else {
                0
            };
            // A forwarded write was acknowledged when its home answered.
            let at_ms = h.forward_answered.get(&dot).copied().filter(|_| made_at != idx);
            h.acked.push(Acked {
                region: made_at,
                at_ms: at_ms.unwrap_or(now_ms),
                others,
                slots: op.delta.adds.iter().map(|(s, _)| s.clone()).collect(),
                op,
            });
        }
    }
}

/// `SET key value NX` as a script declaring `key` (`EVAL … 1 key value`), answered as the
/// command would be.
async fn claim_by_script(
    node: &Node,
    key: &Bytes,
    value: &Bytes,
) -> Result<concord_server::routing::ClientDone, concord_server::node::NodeError> {
    const CLAIM: &str = "return redis.call('SET', KEYS[1], ARGV[1], 'NX')";
    let script = node.scripts.load(CLAIM.as_bytes()).expect("the claim script compiles");
    let done = node
        .client_eval(&script, std::slice::from_ref(key), std::slice::from_ref(value), false)
        .await?;
    if let concord_server::resp::Frame::Error(e) = done.frame {
        return Err(concord_server::node::NodeError::Remote(e));
    }
    Ok(concord_server::routing::ClientDone {
        reply: concord_server::resp::frame_to_reply(done.frame),
        shaped: true,
        ticket: done.ticket,
        own_seq: done.own_seq,
        home_dot: done.home_dot,
    })
}

/// Pub/sub: one subscriber per node records every message it gets; a publisher sends
/// `"<region index>:<incarnation>:<n>"` (n = 1, 2, …) at random times while the workload is on.
/// Each gets its own random stream, so the data workload draws the same numbers as without it.
fn pubsub_workload(world: &Shared, idx: usize, node: &Arc<Node>, incarnation: u64) {
    const CHANNEL: &[u8] = b"sim";
    let mut sub = node.pubsub.registry().attach(u64::MAX);
    node.pubsub.registry().subscribe(
        u64::MAX,
        concord_server::pubsub::Kind::Channel,
        &Bytes::from_static(CHANNEL),
    );
    let history = world.borrow().history.clone();
    let receiver = node.clone();
    tokio::spawn(async move {
        while let Some(push) = sub.recv().await {
            if let concord_server::pubsub::Push::Message { payload, .. } = push {
                let payload = String::from_utf8_lossy(&payload).into_owned();
                let mut h = history.lock().unwrap();
                // A message follows the writes published before it: they are applied here.
                if let Some(after) = h.pubsub_after.get(&payload).copied() {
                    let had = receiver.applied().get(after.replica);
                    if had < after.counter {
                        h.pubsub_early.push((idx, payload.clone(), had));
                    }
                }
                h.pubsub_received.push((idx, incarnation, payload));
            }
        }
    });
    let (world, node) = (world.clone(), node.clone());
    // The world is the host's own (`Rc`): a task of this host's local set.
    tokio::task::spawn_local(async move {
        let seed = world.borrow().seed;
        let mut rng = Rng::new(seed ^ 0x5B5B ^ ((idx as u64 + 1) << 40) ^ incarnation);
        let mut n = 0u64;
        loop {
            tokio::time::sleep(Duration::from_millis(rng.range(5, 60))).await;
            if !world.borrow().workload_on {
                continue;
            }
            n += 1;
            let payload = format!("{idx}:{incarnation}:{n}");
            // What `Node::publish` gives as the write the message follows (nothing runs between).
            let after = concord_core::Dot::new(node.writer(), node.own_seq());
            {
                let w = world.borrow();
                let mut h = w.history.lock().unwrap();
                h.pubsub_published += 1;
                h.pubsub_after.insert(payload.clone(), after);
            }
            node.publish(false, Bytes::from_static(CHANNEL), b(payload), Vec::new());
        }
    });
}

/// Runs the commands its `ARGV` holds (each as its argument count, then its arguments) with
/// `redis.pcall`, so a failing one does not stop the others, as in a transaction.
const SCRIPT: &str = r#"
local i = 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.pcall(table.unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
"#;

/// `MULTI` … `EXEC` of 2–4 random commands (as `Node::client_unit` runs them for RESP), or
/// every other time the same as an `EVAL` script running them (as `Node::client_eval` runs it
/// for RESP): one unit, which every other region must apply at once
/// (`invariants::atomic_units`).
async fn transaction(world: &Shared, idx: usize, node: &Arc<Node>, rng: &mut Rng) {
    let n = rng.range(2, 5);
    let mut reqs = Vec::new();
    let mut argv = Vec::new();
    for _ in 0..n {
        let args = random_command(rng, node);
        let Ok(Parsed::Engine(req, _)) = parse_command(&args) else {
            panic!("the workload made an unparsable command: {args:?}");
        };
        reqs.push(req);
        argv.push(b(args.len().to_string()));
        argv.extend(args);
    }
    // Alternate without drawing from the workload's randomness.
    let as_script = {
        let w = world.borrow();
        let mut h = w.history.lock().unwrap();
        h.units_started += 1;
        h.units_started.is_multiple_of(2)
    };
    let ran = if as_script {
        let script = node
            .scripts
            .load(SCRIPT.as_bytes())
            .expect("the workload's script compiles");
        match node.client_eval(&script, &[], &argv, false).await {
            Ok(concord_server::script::EvalDone {
                ticket: Some(ticket),
                own_seq: Some(seq),
                ..
            }) => Some((ticket, seq)),
            _ => None,
        }
    } else {
        match node.client_unit(reqs, &[]).await {
            Ok(Some((_, Some(ticket), Some(seq)))) => Some((ticket, seq)),
            _ => None,
        }
    };
    let Some((ticket, seq)) = ran else { return };
    if node.wait_acknowledgeable(ticket).await.is_err() {
        return;
    }
    let w = world.borrow();
    let mut h = w.history.lock().unwrap();
    if as_script {
        h.scripts += 1;
    } else {
        h.transactions += 1;
    }
    let now_ms = turmoil::sim_elapsed().map(|d| d.as_millis() as u64).unwrap_or(0);
    let dot = concord_core::Dot::new(node.writer(), seq);
    if let (true, Some(op)) = (w.durable_acks[idx], h.ops.get(&dot).cloned()) {
        h.acked.push(Acked {
            region: idx,
            at_ms: now_ms,
            others: 0,
            slots: op.delta.adds.iter().map(|(s, _)| s.clone()).collect(),
            op,
        });
    }
}

/// A list command on the `q:*` keys (lists: a sequence CRDT, docs/consistency.md): pushes of one
/// or more elements at either end, pops (with a count sometimes), inserts around a pivot, `LSET`,
/// `LREM`, `LTRIM`, `LMOVE` between the queues and `DEL`, on a small value space so pivots and
/// `LREM` find their elements.
fn list_command(rng: &mut Rng) -> Vec<Bytes> {
    let key = format!("q:{}", rng.below(3));
    let val = |rng: &mut Rng| format!("e{}", rng.below(6));
    let end = |rng: &mut Rng| if rng.chance(50) { "LEFT" } else { "RIGHT" };
    let cmd: Vec<String> = match rng.below(100) {
        0..=29 => {
            let mut c = vec![if rng.chance(50) { "LPUSH" } else { "RPUSH" }.to_string(), key];
            for _ in 0..rng.range(1, 4) {
                c.push(val(rng));
            }
            c
        }
        30..=49 => {
            let mut c = vec![if rng.chance(50) { "LPOP" } else { "RPOP" }.to_string(), key];
            if rng.chance(25) {
                c.push(rng.range(1, 4).to_string());
            }
            c
        }
        50..=61 => vec![
            "LINSERT".into(),
            key,
            if rng.chance(50) { "BEFORE" } else { "AFTER" }.into(),
            val(rng),
            val(rng),
        ],
        62..=73 => vec!["LSET".into(), key, (rng.below(5) as i64 - 2).to_string(), val(rng)],
        74..=83 => vec!["LREM".into(), key, (rng.below(5) as i64 - 2).to_string(), val(rng)],
        84..=87 => vec![
            "LTRIM".into(),
            key,
            (rng.below(3) as i64 - 1).to_string(),
            (rng.below(5) as i64 - 2).to_string(),
        ],
        88..=95 => vec![
            "LMOVE".into(),
            key,
            format!("q:{}", rng.below(3)),
            end(rng).into(),
            end(rng).into(),
        ],
        _ => vec!["DEL".into(), key],
    };
    cmd.into_iter().map(b).collect()
}

/// Pushes of unique elements onto, and pops from, the home-region lists `hq:*` (home = the first
/// region, `ack = "one"`): every pop runs at the home, so no element may be popped twice
/// (`invariants::home_pops_once`).
fn home_list_command(rng: &mut Rng, node: &Node) -> Vec<Bytes> {
    let key = format!("hq:{}", rng.below(2));
    let cmd: Vec<String> = match rng.below(100) {
        0..=49 => {
            let mut c = vec![if rng.chance(50) { "LPUSH" } else { "RPUSH" }.to_string(), key];
            for _ in 0..rng.range(1, 3) {
                c.push(format!("j{}-{:x}", node.writer(), rng.next_u64()));
            }
            c
        }
        50..=89 => {
            let mut c = vec![if rng.chance(50) { "LPOP" } else { "RPOP" }.to_string(), key];
            if rng.chance(30) {
                c.push(rng.range(1, 3).to_string());
            }
            c
        }
        _ => vec![
            "LMPOP".into(),
            "2".into(),
            "hq:0".into(),
            "hq:1".into(),
            if rng.chance(50) { "LEFT" } else { "RIGHT" }.into(),
        ],
    };
    cmd.into_iter().map(b).collect()
}

/// The elements a successful pop reply holds (`LPOP`/`RPOP` with or without a count, `LMPOP`).
fn popped(reply: &concord_core::Reply) -> Vec<Bytes> {
    use concord_core::Reply;
    match reply {
        Reply::Bulk(v) => vec![v.clone()],
        Reply::Array(items) => items.iter().flat_map(popped).collect(),
        _ => Vec::new(),
    }
}

fn b(s: impl Into<String>) -> Bytes {
    Bytes::from(s.into())
}

fn random_command(rng: &mut Rng, node: &Node) -> Vec<Bytes> {
    if rng.chance(8) {
        // Uniqueness claims: only ever `SET NX` (home region, ack one).
        return vec![
            b("SET"),
            b(format!("u:{}", rng.below(30))),
            b(format!("claim{}", rng.below(1000))),
            b("NX"),
        ];
    }
    if rng.chance(15) {
        // Sorted sets (`z:*`, and now and then on the other prefixes: type conflicts) and
        // HyperLogLogs (`f:*`), default `lww` policy.
        let key = if rng.chance(90) {
            format!("z:{}", rng.below(4))
        } else {
            format!(
                "{}{}",
                PREFIXES[rng.below(PREFIXES.len() as u64) as usize],
                rng.below(4)
            )
        };
        let member = format!("m{}", rng.below(5));
        let score = (rng.below(41) as i64 - 20).to_string();
        let cmd: Vec<String> = match rng.below(100) {
            0..=29 => vec!["ZADD".into(), key, score, member],
            30..=34 => vec!["ZADD".into(), key, "GT".into(), "CH".into(), score, member],
            35..=59 => vec!["ZINCRBY".into(), key, score, member],
            60..=74 => vec!["ZREM".into(), key, member],
            75..=77 => vec!["ZPOPMIN".into(), key],
            78..=79 => vec!["ZREMRANGEBYSCORE".into(), key, "-inf".into(), "(-10".into()],
            80..=82 => vec!["DEL".into(), key],
            _ => vec![
                "PFADD".into(),
                format!("f:{}", rng.below(3)),
                format!("e{}", rng.below(5_000)),
                format!("e{}", rng.below(5_000)),
            ],
        };
        return cmd.into_iter().map(b).collect();
    }
    if rng.chance(15) {
        return list_command(rng);
    }
    if rng.chance(10) {
        return home_list_command(rng, node);
    }
    let prefix = PREFIXES[rng.below(PREFIXES.len() as u64) as usize];
    let key = format!("{prefix}{}", rng.below(4));
    let val = format!("v{}", rng.below(10_000));
    let member = format!("m{}", rng.below(4));
    let cmd: Vec<String> = match rng.below(100) {
        0..=19 => vec!["SET".into(), key, val],
        20..=23 => vec!["SET".into(), key, val, "NX".into()],
        24..=25 => vec!["SET".into(), key, val, "XX".into()],
        26..=28 => vec!["SET".into(), key, val, "PX".into(), rng.range(50, 3_000).to_string()],
        29..=33 => vec!["DEL".into(), key],
        34..=35 => vec!["DEL".into(), key.clone(), format!("{key}b")],
        36..=45 => vec!["INCRBY".into(), key, (rng.below(11) as i64 - 5).to_string()],
        46..=55 => vec!["SADD".into(), key, member],
        56..=61 => vec!["SREM".into(), key, member],
        62..=71 => vec!["HSET".into(), key, member, val],
        72..=74 => vec!["HINCRBY".into(), key, member, (rng.below(7) as i64 - 3).to_string()],
        75..=79 => vec!["HDEL".into(), key, member],
        80..=83 => vec!["PEXPIRE".into(), key, rng.range(50, 5_000).to_string()],
        84..=85 => vec!["PERSIST".into(), key],
        86..=88 => vec!["MSET".into(), key.clone(), val.clone(), format!("{key}b"), val],
        89..=93 => {
            // Resolve whatever siblings this region sees, with their context.
            let ctx = node.with_engine(|e| e.key_state(key.as_bytes()).map(|s| s.ctx.clone()).unwrap_or_default());
            vec![
                "CONCORD.RESOLVE".into(),
                key,
                concord_core::codec::context_token(&ctx),
                val,
            ]
        }
        _ => vec!["APPEND".into(), key, val],
    };
    cmd.into_iter().map(b).collect()
}

impl History {
    /// Record an op seen anywhere; a `(writer, seq)` seen with two different contents is a
    /// reused write identity (DESIGN §8.1).
    pub fn record_op(&mut self, op: &Op) {
        match self.ops.get(&op.dot()) {
            Some(known) if known != op => {
                if self.dot_reuse.len() < 5 {
                    self.dot_reuse.push(format!(
                        "write identity {} was used for two different writes: {:?} {:?} and {:?} {:?}",
                        op.dot(),
                        known.key,
                        known.delta,
                        op.key,
                        op.delta
                    ));
                }
            }
            Some(_) => {}
            None => {
                self.ops.insert(op.dot(), op.clone());
            }
        }
    }
}

/// Region ids are 1-based in the config.
pub fn region_id(idx: usize) -> ReplicaId {
    idx as ReplicaId + 1
}
