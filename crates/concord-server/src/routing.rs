//! Where a command runs, and how long its writer waits.
//!
//! - **Home regions** (`home = "<region>" | "hash"` in a policy): a write of such a key made in
//!   another region is forwarded over a peer connection to the home node, executed there as if a
//!   client had sent it, and answered with the home's reply. The key is single-master, so
//!   `SET NX` / `SETNX` / `HSETNX` on it are global uniqueness checks. A home that cannot be
//!   reached within [`FORWARD_TIMEOUT`] is answered with `-TRYAGAIN`, never with a local write.
//!   Reads stay local; with `read_miss = "home"` a read of a key absent locally asks the home.
//! - **Ack levels** (`ack = "one" | "majority" | "all"` in a policy, `?ack=` on HTTP writes): the
//!   writer is answered once that many other regions have applied the write, or, at the timeout,
//!   told honestly how many have (the write is not undone).

use crate::env::BoxStream;
use crate::node::{Node, NodeError};
use crate::resp::{self, Parsed};
use bytes::Bytes;
use concord_core::conflict::stable_hash;
use concord_core::{AckLevel, Home, ReplicaId, Reply, Request, Slot};
use concord_net::frame::{read_message, write_message};
use concord_net::handshake::handshake;
use concord_net::Message;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};

/// How long a forwarded write may take (connect + home's commit) before `-TRYAGAIN`.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// After a forwarded write, how long to wait for it to replicate back so a local read sees it.
pub const READ_YOUR_WRITE_WAIT: Duration = Duration::from_secs(1);
/// Forwarded requests in flight per home connection, at most.
pub const MAX_FORWARDS_IN_FLIGHT: usize = 1024;

/// A forwarded request's answer: the reply, and the home's writer id and seq of the write.
type Answer = Result<(Reply, ReplicaId, u64), String>;
type Pending = Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Answer>>>>;

#[derive(Clone)]
struct Conn {
    tx: mpsc::Sender<Message>,
    pending: Pending,
    alive: Arc<std::sync::atomic::AtomicBool>,
}

/// How long connecting (and the handshake) to a home region may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Connections to home regions, one per home, multiplexed by request id. Each home has its own
/// slot: a home that hangs delays only the writes of its own keys.
#[derive(Default)]
pub struct Forwarder {
    slots: std::sync::Mutex<BTreeMap<ReplicaId, Arc<tokio::sync::Mutex<Option<Conn>>>>>,
    next_id: AtomicU64,
}

/// What a client command did (see [`Node::client_command`]).
pub struct ClientDone {
    pub reply: Reply,
    /// Forwarded replies come shaped by the home already.
    pub shaped: bool,
    /// A local write: wait for this commit ticket before answering (pipelines wait once).
    pub ticket: Option<u64>,
    /// The sequence number this write took here, if it is a replicated write of this region.
    pub own_seq: Option<u64>,
    /// A write forwarded to its home region: the identity its (last) op took there.
    pub home_dot: Option<concord_core::Dot>,
}

/// How many other regions an ack level needs. `majority` is a majority of all regions, this one
/// included (3 regions: 1 other; 5 regions: 2 others).
pub fn regions_needed(level: AckLevel, regions: usize) -> usize {
    let others = regions.saturating_sub(1);
    match level {
        AckLevel::Local => 0,
        AckLevel::One => others.min(1),
        AckLevel::Majority => (regions / 2).min(others),
        AckLevel::All => others,
    }
}

pub fn parse_ack(s: &str) -> Option<AckLevel> {
    match s {
        "local" => Some(AckLevel::Local),
        "one" => Some(AckLevel::One),
        "majority" => Some(AckLevel::Majority),
        "all" => Some(AckLevel::All),
        _ => None,
    }
}

/// The outcome of waiting for other regions to apply a write.
#[derive(Debug, Clone)]
pub struct AckOutcome {
    pub wanted: usize,
    pub acked: usize,
    pub timed_out: bool,
    /// Concurrent versions of the key this region learned about while waiting (siblings > 1).
    pub concurrent_versions: usize,
}

impl Node {
    /// The home region of `key`, if its policy has one.
    pub fn home_of(&self, key: &[u8]) -> Option<ReplicaId> {
        let home = self.policies.policy_for(key).home.clone()?;
        match home {
            Home::Region(name) => self.config.region(&name).map(|r| r.id),
            Home::Hash => {
                let n = self.config.regions.len() as u64;
                let i = stable_hash(&[key]) % n.max(1);
                Some(self.config.regions[i as usize].id)
            }
        }
    }

    /// Where a request must run: `None` here, `Some(home)` at another region's node.
    pub fn route(&self, req: &Request) -> Result<Option<ReplicaId>, NodeError> {
        let Some(keys) = req.keys() else { return Ok(None) };
        let mut homes = keys.iter().map(|k| self.home_of(k));
        let first = homes.next().flatten();
        if homes.any(|h| h != first) {
            return Err(NodeError::Other("keys in one command must share a home region".into()));
        }
        Ok(first.filter(|h| *h != self.region.id))
    }

    pub(crate) fn region_name(&self, id: ReplicaId) -> String {
        self.config
            .regions
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.name.clone())
            .unwrap_or_default()
    }

    /// Run a client command (its Redis arguments) at its home region and return the reply.
    pub async fn forward(&self, home: ReplicaId, args: Vec<Bytes>) -> Result<Reply, NodeError> {
        Ok(self.forward_inner(home, args, true, None, None).await?.0)
    }

    /// Run a script (`EVAL source numkeys keys… args…`) at the home region of its keys: it
    /// runs there as one unit, waiting there for the strictest ack level among `keys`.
    pub async fn forward_script(
        &self,
        home: ReplicaId,
        args: Vec<Bytes>,
        keys: &[Bytes],
    ) -> Result<(Reply, Option<concord_core::Dot>), NodeError> {
        let n = self.config.regions.len();
        let level = keys
            .iter()
            .map(|k| self.policy_ack(k))
            .max_by_key(|l| regions_needed(*l, n))
            .unwrap_or_default();
        self.forward_inner(home, args, true, None, Some(level)).await
    }

    /// A write forwarded with an explicit ack level (HTTP `?ack=`), applied at the home.
    pub async fn forward_with_ack(&self, home: ReplicaId, args: Vec<Bytes>, ack: AckLevel) -> Result<Reply, NodeError> {
        Ok(self.forward_inner(home, args, true, Some(ack), None).await?.0)
    }

    /// A read sent to the home region (`read_miss = "home"`): no waiting for replication after.
    pub async fn forward_read(&self, home: ReplicaId, args: Vec<Bytes>) -> Result<Reply, NodeError> {
        Ok(self.forward_inner(home, args, false, None, None).await?.0)
    }

    /// Forward, and return the reply with the identity of the (last) op the write took at the
    /// home, if it made one. `waits`: the ack level the home will wait for (what the answer's
    /// timeout allows for); by default `ack`, else the policy of the key in `args[1]`.
    async fn forward_inner(
        &self,
        home: ReplicaId,
        args: Vec<Bytes>,
        write: bool,
        ack: Option<AckLevel>,
        waits: Option<AckLevel>,
    ) -> Result<(Reply, Option<concord_core::Dot>), NodeError> {
        let name = self.region_name(home);
        let unreachable = |why: String| NodeError::TryAgain(format!("home region {name} is unreachable: {why}"));
        if self.link_faults(home).partitioned {
            return Err(unreachable("link partitioned".into()));
        }
        let id = self.forwarder.next_id.fetch_add(1, Ordering::Relaxed);
        // A key with an ack level may wait at the home for other regions too.
        let acks = waits
            .or(ack)
            .unwrap_or_else(|| args.get(1).map(|k| self.policy_ack(k)).unwrap_or_default());
        let limit = if acks == AckLevel::Local {
            FORWARD_TIMEOUT
        } else {
            FORWARD_TIMEOUT + Duration::from_millis(self.config.ack_timeout_ms)
        };
        let deadline = tokio::time::Instant::now() + limit;
        let slot = self
            .forwarder
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(home)
            .or_default()
            .clone();
        // The connection (made under this home's slot only, with its own timeout).
        let conn = {
            let mut guard = match tokio::time::timeout_at(deadline, slot.lock()).await {
                Ok(g) => g,
                Err(_) => return Err(unreachable("connection attempt still in progress".into())),
            };
            if guard.as_ref().is_none_or(|c| !c.alive.load(Ordering::Acquire)) {
                match tokio::time::timeout(CONNECT_TIMEOUT, self.connect_home(home)).await {
                    Ok(Ok(c)) => *guard = Some(c),
                    Ok(Err(e)) => return Err(unreachable(e)),
                    Err(_) => {
                        return Err(unreachable(format!(
                            "no connection within {} ms",
                            CONNECT_TIMEOUT.as_millis()
                        )))
                    }
                }
            }
            guard.clone().expect("connected")
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = conn.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.len() >= MAX_FORWARDS_IN_FLIGHT {
                return Err(unreachable("too many forwarded requests in flight".into()));
            }
            pending.insert(id, tx);
        }
        let forget = || {
            conn.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        };
        match tokio::time::timeout_at(deadline, conn.tx.send(Message::Forward { id, args, ack })).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                forget();
                return Err(unreachable("connection lost before sending".into()));
            }
            Err(_) => {
                forget();
                return Err(unreachable(
                    "the connection is congested; the request was not sent".into(),
                ));
            }
        }
        let (reply, home_writer, home_seq) = match tokio::time::timeout_at(deadline, rx).await {
            Err(_) => {
                forget(); // abandoned entries would fill the in-flight limit
                return Err(unreachable(format!(
                    "no answer within {} ms (the write may or may not have been applied there)",
                    limit.as_millis()
                )));
            }
            Ok(Err(_)) => {
                return Err(unreachable(
                    "connection lost after sending (the write may or may not have been applied there)".into(),
                ))
            }
            Ok(Ok(Err(line))) => return Err(NodeError::Remote(line)),
            Ok(Ok(Ok(x))) => x,
        };
        // Read your own write here: wait (bounded) for it to replicate back.
        let deadline = tokio::time::Instant::now() + READ_YOUR_WRITE_WAIT;
        while write && self.applied().get(home_writer) < home_seq && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok((
            reply,
            (home_seq > 0).then(|| concord_core::Dot::new(home_writer, home_seq)),
        ))
    }

    async fn connect_home(&self, home: ReplicaId) -> Result<Conn, String> {
        let addr = self
            .config
            .regions
            .iter()
            .find(|r| r.id == home)
            .map(|r| r.peer)
            .ok_or("unknown region")?;
        let mut socket = self.env.net.connect(addr).await.map_err(|e| e.to_string())?;
        handshake(
            &mut socket,
            &crate::replication::identity(self),
            true,
            crate::replication::nonce(self),
        )
        .await
        .map_err(|e| e.to_string())?;
        let (mut read, mut write) = tokio::io::split(socket);
        let (tx, mut rx) = mpsc::channel::<Message>(256);
        let pending: Pending = Arc::default();
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let alive_w = alive.clone();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if write_message(&mut write, &m).await.is_err() {
                    break;
                }
            }
            alive_w.store(false, Ordering::Release);
        });
        let (pending_r, alive_r) = (pending.clone(), alive.clone());
        tokio::spawn(async move {
            while let Ok((m, _)) = read_message(&mut read).await {
                if let Message::ForwardReply {
                    id,
                    result,
                    home_writer,
                    home_seq,
                } = m
                {
                    if let Some(tx) = pending_r.lock().unwrap_or_else(|p| p.into_inner()).remove(&id) {
                        let _ = tx.send(result.map(|r| (r, home_writer, home_seq)));
                    }
                }
            }
            alive_r.store(false, Ordering::Release);
            // Fail whatever was waiting: dropping the senders ends their receivers.
            pending_r.lock().unwrap_or_else(|p| p.into_inner()).clear();
        });
        Ok(Conn { tx, pending, alive })
    }

    /// Wait until `wanted` other regions applied own write `seq` (or the timeout). Also waits to
    /// have received what those regions had when they acknowledged, so a version they wrote
    /// concurrently is here to be reported.
    pub async fn wait_for_acks(&self, key: &[u8], seq: u64, wanted: usize, timeout: Duration) -> AckOutcome {
        let deadline = tokio::time::Instant::now() + timeout;
        let (me, writer) = (self.region.id, self.writer());
        loop {
            let (acked, caught_up) = self.with_engine(|e| {
                let mut acked = 0;
                let mut caught_up = true;
                for (r, vv) in e.peer_vectors() {
                    if *r != me && vv.get(writer) >= seq {
                        acked += 1;
                        // What that region wrote itself (any of its writers) is here too.
                        caught_up &= vv
                            .iter()
                            .filter(|(w, _)| concord_core::region_of(*w) == *r)
                            .all(|(w, c)| e.applied().get(w) >= c);
                    }
                }
                (acked, caught_up)
            });
            let done = acked >= wanted && caught_up;
            if done || tokio::time::Instant::now() >= deadline {
                let concurrent_versions = self.with_engine(|e| {
                    e.key_state(key)
                        .and_then(|s| s.entries(&Slot::Register))
                        .map(|es| es.len())
                        .unwrap_or(0)
                });
                return AckOutcome {
                    wanted,
                    acked,
                    timed_out: acked < wanted,
                    concurrent_versions,
                };
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Run a client's data command as every front end does: at its home region if it has one
    /// elsewhere (forwarded), else here; a read that misses a `read_miss = "home"` key asks the
    /// home; a write waits for its policy's ack level (or `ack`). The reply of a local command is
    /// not shaped yet ([`ClientDone::shaped`]); the caller waits for `ticket` before answering.
    pub async fn client_command(
        &self,
        args: &[Bytes],
        req: Request,
        ack: Option<AckLevel>,
    ) -> Result<ClientDone, NodeError> {
        let forwarded = |(reply, home_dot)| ClientDone {
            reply,
            shaped: true,
            ticket: None,
            own_seq: None,
            home_dot,
        };
        let home = self.route(&req)?;
        let keys: Vec<Bytes> = req
            .keys()
            .map(|ks| ks.into_iter().cloned().collect())
            .unwrap_or_default();
        let single_key = (keys.len() == 1).then(|| keys[0].clone());
        if let Some(home) = home {
            if req.is_write() {
                return Ok(forwarded(
                    self.forward_inner(home, args.to_vec(), true, ack, None).await?,
                ));
            }
        }
        if !req.is_write() {
            if let Some(home) = single_key.as_ref().and_then(|k| self.read_miss_home(k)) {
                return Ok(forwarded(
                    self.forward_inner(home, args.to_vec(), false, None, None).await?,
                ));
            }
        }
        if req.is_write() && single_or_all_homed_here(self, &req) {
            self.check_home_writes()?;
        }
        let (reply, ticket, own_seq) = self.execute_tracked(req).await?;
        let done = ClientDone {
            reply,
            shaped: false,
            ticket,
            own_seq,
            home_dot: None,
        };
        let Some(ticket) = ticket else { return Ok(done) };
        if self.wait_ack_level(&keys, ack, ticket, own_seq).await? {
            // Durable here and applied by enough regions: nothing left to wait for.
            return Ok(ClientDone { ticket: None, ..done });
        }
        // Local durability: the caller waits for `ticket` before answering.
        Ok(done)
    }

    /// Run a transaction's commands (`MULTI`/`EXEC`) here as one atomic unit: every write must
    /// be homed here or nowhere (checked when queued, again here, before anything runs),
    /// home-key writes wait for this region's history, and the unit waits for the strictest ack
    /// level among its keys. `None`: a watched key changed, nothing ran.
    #[allow(clippy::type_complexity)]
    pub async fn client_unit(
        &self,
        reqs: Vec<Request>,
        watched: &[(Bytes, (Option<concord_core::VersionVector>, bool))],
    ) -> Result<Option<(Vec<Result<Reply, concord_core::CommandError>>, Option<u64>, Option<u64>)>, NodeError> {
        self.stats.commands.fetch_add(reqs.len() as u64, Ordering::Relaxed);
        let writes = reqs.iter().any(|r| r.is_write());
        let ran = self
            .client_unit_with(writes, watched, |unit, written| {
                self.check_unit_writes(unit.engine(), &reqs, "transaction", written)?;
                Ok::<_, NodeError>(reqs.into_iter().map(|r| unit.execute(r)).collect::<Vec<_>>())
            })
            .await?;
        let Some((replies, ticket, own_seq)) = ran else {
            return Ok(None);
        };
        Ok(Some((replies?, ticket, own_seq)))
    }

    /// Run a unit whose commands `f` decides as it goes (a script: each `redis.call` depends on
    /// the replies before it) here, under one engine lock ([`Node::execute_with`]): `f` runs its
    /// commands through the unit, checks each write first ([`Node::check_unit_write`]) and
    /// records the keys it writes in the `Vec` it is given; the unit then waits for the
    /// strictest ack level among those keys. `writes`: whether it may write (`EVAL_RO` may not).
    /// `None`: a watched key changed, `f` did not run. Also the commit ticket and the highest own
    /// seq written: what `f` wrote stays written whatever it returns.
    #[allow(clippy::type_complexity)]
    pub async fn client_unit_with<T>(
        &self,
        writes: bool,
        watched: &[(Bytes, (Option<concord_core::VersionVector>, bool))],
        f: impl FnOnce(&mut concord_core::Unit<'_>, &mut Vec<Bytes>) -> T,
    ) -> Result<Option<(T, Option<u64>, Option<u64>)>, NodeError> {
        let mut keys = Vec::new();
        let ran = self.execute_with(writes, watched, |unit| f(unit, &mut keys)).await?;
        let Some((value, ticket, own_seq)) = ran else {
            return Ok(None);
        };
        if let Some(t) = ticket {
            self.wait_ack_level(&keys, None, t, own_seq).await?;
        }
        Ok(Some((value, ticket, own_seq)))
    }

    /// [`Node::check_unit_write`] for every write of `reqs`, all before any runs (a unit whose
    /// commands are known in advance is refused whole); their keys go to `written`.
    pub fn check_unit_writes(
        &self,
        engine: &concord_core::Engine,
        reqs: &[Request],
        what: &str,
        written: &mut Vec<Bytes>,
    ) -> Result<(), NodeError> {
        for req in reqs.iter().filter(|r| r.is_write()) {
            self.check_unit_write(engine, req, what)?;
            written.extend(req.keys().unwrap_or_default().into_iter().cloned());
        }
        Ok(())
    }

    /// Whether `req`, a write inside an atomic unit (a `what`: "transaction", "script") may
    /// run in this region's unit now: refused when its keys are homed in another region (the
    /// unit must run there), when a key homed here waits for this region's history
    /// ([`Node::check_home_writes`]), or while a key is still being merged from a full-state
    /// transfer. For units whose writes are known only as they run (scripts): `engine` is the
    /// unit's, already locked.
    pub fn check_unit_write(&self, engine: &concord_core::Engine, req: &Request, what: &str) -> Result<(), NodeError> {
        if self.unit_write_homed_here(req, what)? {
            self.check_home_writes_in(engine)?;
        }
        if let Some(keys) = req.keys() {
            crate::node::transfer_guard(engine, &keys)?;
        }
        Ok(())
    }

    /// A unit's write of keys homed in another region is refused (naming the home); `true`
    /// when one of its keys is homed here.
    fn unit_write_homed_here(&self, req: &Request, what: &str) -> Result<bool, NodeError> {
        if let Some(home) = self.route(req)? {
            let home = self.region_name(home);
            return Err(NodeError::Other(format!(
                "a {what} cannot write a key homed in region {home} from region {}: send the {what} to {home}",
                self.region.name
            )));
        }
        Ok(single_or_all_homed_here(self, req))
    }

    /// The home region of a write, if another region's (`None`: here or nowhere).
    pub fn write_home_elsewhere(&self, req: &Request) -> Result<Option<String>, NodeError> {
        Ok(self.route(req)?.map(|h| self.region_name(h)))
    }

    /// Wait for the ack level `ack` (or the strictest among `keys`' policies) of a write that
    /// took own seqs up to `own_seq` and commits with `ticket`. Whether it waited (then the write
    /// is durable here too); `false` at the `local` level, where the caller must still wait for
    /// `ticket` before answering.
    async fn wait_ack_level(
        &self,
        keys: &[Bytes],
        ack: Option<AckLevel>,
        ticket: u64,
        own_seq: Option<u64>,
    ) -> Result<bool, NodeError> {
        // Region-local writes take no seq: nothing to wait for here.
        let Some(seq) = own_seq else { return Ok(false) };
        // A multi-key write (`MSET`, `DEL a b`, a transaction) waits for the strictest level among its
        // keys' policies; its ops are contiguous seqs of this writer, so a region that applied the
        // last one applied them all.
        let n = self.config.regions.len();
        let level = ack.unwrap_or_else(|| {
            keys.iter()
                .map(|k| self.policy_ack(k))
                .max_by_key(|l| regions_needed(*l, n))
                .unwrap_or_default()
        });
        if level == AckLevel::Local || keys.is_empty() {
            return Ok(false);
        }
        // Synchronous replication for these keys: durable here, then applied by enough regions.
        self.wait_acknowledgeable(ticket).await?;
        let wanted = regions_needed(level, n);
        let timeout = Duration::from_millis(self.config.ack_timeout_ms);
        let o = self.wait_for_acks(&keys[0], seq, wanted, timeout).await;
        if o.timed_out {
            return Err(NodeError::NotAcked(format!(
                "write applied here and in {} of the {} other region(s) required before the timeout; it is not undone",
                o.acked, o.wanted
            )));
        }
        // Under `siblings`, a key left with concurrent versions is reported.
        for key in keys {
            if self.policy_name(key) != "siblings" {
                continue;
            }
            let versions = self.with_engine(|e| {
                e.key_state(key)
                    .and_then(|s| s.entries(&Slot::Register))
                    .map(|es| es.len())
                    .unwrap_or(0)
            });
            if versions > 1 {
                return Err(NodeError::Conflict(format!(
                    "{versions} concurrent versions of this key exist (see CONCORD.SIBLINGS); the write is kept as one of them"
                )));
            }
        }
        Ok(true)
    }

    /// The ack level a policy asks for on `key`.
    pub fn policy_ack(&self, key: &[u8]) -> AckLevel {
        self.policies.policy_for(key).ack
    }

    pub fn policy_name(&self, key: &[u8]) -> String {
        self.policies.policy_for(key).strings.name().to_string()
    }

    /// Whether a read of `key` that misses locally should ask the home region.
    pub fn read_miss_home(&self, key: &[u8]) -> Option<ReplicaId> {
        let ask = self.policies.policy_for(key).read_miss_home;
        if !ask {
            return None;
        }
        let home = self.home_of(key)?;
        if home == self.region.id {
            return None;
        }
        let absent = self.with_engine(|e| e.describe(key, self.now_ms()).kind.is_none());
        absent.then_some(home)
    }
}

/// Whether a request touches a key whose home is this region.
fn single_or_all_homed_here(node: &Node, req: &Request) -> bool {
    req.keys()
        .is_some_and(|keys| keys.iter().any(|k| node.home_of(k) == Some(node.region.id)))
}

/// The home side: answer forwarded commands on one connection until it closes.
pub async fn serve_forwards(
    node: Arc<Node>,
    peer: ReplicaId,
    first: Message,
    mut read: ReadHalf<BoxStream>,
    mut write: WriteHalf<BoxStream>,
) {
    let (tx, mut rx) = mpsc::channel::<Message>(256);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if write_message(&mut write, &m).await.is_err() {
                return;
            }
        }
    });
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_FORWARDS_IN_FLIGHT));
    let mut next = Some(first);
    loop {
        let msg = match next.take() {
            Some(m) => m,
            None => match read_message(&mut read).await {
                Ok((m, _)) => m,
                Err(_) => break,
            },
        };
        let Message::Forward { id, args, ack } = msg else { break };
        // A link partitioned by the admin API carries no forwarded writes either: closing makes
        // the forwarder answer -TRYAGAIN.
        if node.link_faults(peer).partitioned {
            break;
        }
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let (node, tx) = (node.clone(), tx.clone());
        tokio::spawn(async move {
            let (result, home_seq) = match run_forwarded(&node, args, ack).await {
                Ok((reply, seq)) => (Ok(reply), seq.unwrap_or(0)),
                Err(e) => (Err(e), 0),
            };
            let home_writer = node.writer();
            if let (Some(observe), true, true) = (&node.env.observer, result.is_ok(), home_seq > 0) {
                observe(crate::env::Observed::ForwardAnswered(concord_core::Dot::new(
                    home_writer,
                    home_seq,
                )));
            }
            let _ = tx
                .send(Message::ForwardReply {
                    id,
                    result,
                    home_writer,
                    home_seq,
                })
                .await;
            drop(permit);
        });
    }
    drop(tx);
    let _ = writer.await;
}

/// Run a forwarded command at its home; returns the reply and the seq the write took here.
async fn run_forwarded(node: &Node, args: Vec<Bytes>, ack: Option<AckLevel>) -> Result<(Reply, Option<u64>), String> {
    // A blocking command forwarded to its home runs once, as its non-blocking form: the
    // region that received it does the waiting (server/blocking.rs).
    let parsed = match resp::parse_command(&args).map_err(|e| e.to_string())? {
        Parsed::Blocking(b) => Parsed::Engine(b.request, b.shape),
        p => p,
    };
    match parsed {
        Parsed::Engine(req, shape) => {
            if node.route(&req).map_err(|e| e.to_string())?.is_some() {
                return Err(format!("ERR region {} is not the home of these keys", node.region.name));
            }
            let keys: Vec<Bytes> = req
                .keys()
                .map(|ks| ks.into_iter().cloned().collect())
                .unwrap_or_default();
            let write = req.is_write();
            if write {
                node.check_home_writes().map_err(|e| e.to_string())?;
            }
            let (reply, ticket, own_seq) = node.execute_tracked(req).await.map_err(|e| e.to_string())?;
            if let Some(t) = ticket {
                node.wait_acknowledgeable(t).await.map_err(|e| e.to_string())?;
            }
            // The keys' ack level applies to a forwarded write too, counted at the home: the
            // strictest among them for a multi-key write (`LMPOP 2 hq:0 hq:1` skipped it, and an
            // `everysec` home acknowledged pops a crash then lost: sim seeds 80545, 85842, …).
            if let Some(key) = keys.first().filter(|_| write) {
                let n = node.config.regions.len();
                let level = ack.unwrap_or_else(|| {
                    keys.iter()
                        .map(|k| node.policy_ack(k))
                        .max_by_key(|l| regions_needed(*l, n))
                        .unwrap_or_default()
                });
                if level != AckLevel::Local {
                    let wanted = regions_needed(level, node.config.regions.len());
                    let timeout = Duration::from_millis(node.config.ack_timeout_ms);
                    let seq = own_seq.unwrap_or(0);
                    let o = node.wait_for_acks(key, seq, wanted, timeout).await;
                    if o.timed_out {
                        return Err(format!(
                            "NOTACKED write applied at home region {} and in {} of the {} other region(s) required before the timeout; it is not undone",
                            node.region.name, o.acked, o.wanted
                        ));
                    }
                }
            }
            Ok((resp::shape_reply(shape, reply), own_seq))
        }
        Parsed::Node(crate::resp::NodeCommand::Eval(eval)) if !eval.read_only => node.run_forwarded_eval(eval).await,
        Parsed::Node(_) | Parsed::Blocking(_) => Err("ERR only data commands and scripts can be forwarded".into()),
    }
}
