//! One seeded run: build the cluster, drive workload and chaos, heal, check the invariants.

use crate::disk::Disk;
use crate::history::{Applied, History};
use crate::host::{self, World, PEER_BASE};
use crate::invariants;
use crate::rng::Rng;
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A bug to plant, to show the invariants catch it; each names the invariant meant to catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// Causal delivery ignores `deps` → causal order.
    Causal,
    /// A broken merge: string siblings collapse to the lww winner whatever the policy → no lost
    /// writes.
    Merge,
    /// Remote ops skip their removals → convergence.
    SkippedRemoval,
    /// A restarted node reuses its old writer id → unique write identities.
    DotReuse,
    /// Writes are acknowledged before their commit: a crash loses them → no lost writes.
    DroppedAckedWrite,
    /// Tombstones purged before they are stable: a deleted key comes back → no resurrection.
    ResurrectedDelete,
    /// Links stop sending after their first batch → liveness.
    StalledLink,
    /// Receivers apply a unit's ops as they come, not together → atomic units.
    SplitUnits,
    /// Home regions take home-key writes before re-learning their history → home uniqueness.
    HomeWritesUnchecked,
    /// `DEL` spares older concurrent versions of a string → no resurrection.
    DeleteSparesSiblings,
    /// Pub/sub messages are sent and delivered without waiting for the writes before them →
    /// pub/sub order (implies `--pubsub`).
    PublishAhead,
    /// Blocking pops of home lists pop where they wait, not at the home → home pops once.
    BlockingPopsHere,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 12] = [
        PlantedBug::Causal,
        PlantedBug::Merge,
        PlantedBug::SkippedRemoval,
        PlantedBug::DotReuse,
        PlantedBug::DroppedAckedWrite,
        PlantedBug::ResurrectedDelete,
        PlantedBug::StalledLink,
        PlantedBug::SplitUnits,
        PlantedBug::HomeWritesUnchecked,
        PlantedBug::DeleteSparesSiblings,
        PlantedBug::PublishAhead,
        PlantedBug::BlockingPopsHere,
    ];

    pub fn core(self) -> concord_core::PlantedBug {
        use concord_core::PlantedBug as C;
        match self {
            PlantedBug::Causal => C::IgnoreDeps,
            PlantedBug::Merge => C::CollapseSiblings,
            PlantedBug::SkippedRemoval => C::IgnoreRemoves,
            PlantedBug::DotReuse => C::ReuseWriter,
            PlantedBug::DroppedAckedWrite => C::AckBeforeCommit,
            PlantedBug::ResurrectedDelete => C::PurgeUnstable,
            PlantedBug::StalledLink => C::StallLinks,
            PlantedBug::SplitUnits => C::SplitUnits,
            PlantedBug::HomeWritesUnchecked => C::HomeWritesUnchecked,
            PlantedBug::DeleteSparesSiblings => C::DeleteSparesSiblings,
            PlantedBug::PublishAhead => C::PublishAhead,
            PlantedBug::BlockingPopsHere => C::BlockingPopsHere,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::Causal => "causal",
            PlantedBug::Merge => "merge",
            PlantedBug::SkippedRemoval => "skipped-removal",
            PlantedBug::DotReuse => "dot-reuse",
            PlantedBug::DroppedAckedWrite => "dropped-acked-write",
            PlantedBug::ResurrectedDelete => "resurrected-delete",
            PlantedBug::StalledLink => "stalled-link",
            PlantedBug::SplitUnits => "split-units",
            PlantedBug::HomeWritesUnchecked => "home-writes-unchecked",
            PlantedBug::DeleteSparesSiblings => "delete-spares-siblings",
            PlantedBug::PublishAhead => "publish-ahead",
            PlantedBug::BlockingPopsHere => "blocking-pops-here",
        }
    }

    pub fn parse(name: &str) -> Option<PlantedBug> {
        PlantedBug::ALL.into_iter().find(|b| b.name() == name)
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Regions (3–5); 0 picks from the seed.
    pub regions: usize,
    /// How long workload and faults run, in simulated ms.
    pub chaos_ms: u64,
    /// How long the cluster may take to catch up after faults stop (liveness bound), in ms.
    pub heal_bound_ms: u64,
    pub planted: Option<PlantedBug>,
    pub log_retention_ops: u64,
    /// Also publish pub/sub messages and check their delivery (`invariants::pubsub_order`). Off
    /// by default: the extra traffic changes every seed's schedule.
    pub pubsub: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            regions: 0,
            chaos_ms: 8_000,
            heal_bound_ms: 30_000,
            planted: None,
            log_retention_ops: 50,
            pubsub: false,
        }
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub seed: u64,
    pub regions: usize,
    pub failures: Vec<String>,
    pub acked_writes: usize,
    pub ops: usize,
    pub conflicts: usize,
    pub restarts: u64,
    pub partitions: u64,
    pub snapshots: u64,
    /// Transactions and scripts committed, and unit fragments applied in other regions (all
    /// checked whole).
    pub transactions: u64,
    pub scripts: u64,
    /// Uniqueness claims made by a script that another region forwarded to the key's home.
    pub forwarded_scripts: u64,
    /// Blocking pops (`BLPOP`/`BRPOP` of home lists) that popped something.
    pub blocking_pops: u64,
    pub unit_fragments: usize,
    pub caught_up_after_ms: Option<u64>,
    /// Keys the no-resurrection check examined (deleted last).
    pub resurrection_keys: usize,
    /// Elements popped from home-region lists (`home_pops_once` examined them).
    pub home_pops: usize,
    pub events: Vec<String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

#[derive(Clone, Debug)]
enum Fault {
    Partition(usize, usize),
    Repair(usize, usize),
    /// Power loss: unsynced writes are lost or torn.
    Crash(usize),
    Restart(usize),
    /// Crash and lose the disk (a brand-new data dir), at any time.
    Wipe(usize),
    /// Take a backup of the disk now (restored by a later `Restore`).
    Backup(usize),
    /// Crash and put back the last backup (an old data dir).
    Restore(usize),
    /// The disk fails from its n-th write on; the node must refuse writes. (The operator
    /// restarts it later on a repaired disk: a `Restart`.)
    DiskFailure(usize, u64),
}

const NAMES: [&str; 5] = ["us", "eu", "ap", "sa", "af"];

/// The resolver of `x:*` keys (strings = "script"): the concurrent values joined, sorted.
const RESOLVER: &str = r#"
function resolve(key, siblings)
  local vals = {}
  for _, s in ipairs(siblings) do
    if s.value ~= nil then vals[#vals + 1] = s.value end
  end
  table.sort(vals)
  return table.concat(vals, "+")
end
"#;

fn resolver_path() -> std::path::PathBuf {
    // One file for every run (a sweep starts a process per seed): written only when missing or
    // different, so concurrent runs read the same bytes.
    let path = std::env::temp_dir().join("concord-sim-resolver.lua");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(RESOLVER) {
        let tmp = path.with_extension(format!("lua.{}", std::process::id()));
        std::fs::write(&tmp, RESOLVER).expect("write the simulation's Lua resolver");
        std::fs::rename(&tmp, &path).expect("install the simulation's Lua resolver");
    }
    path
}

/// The config region `idx` starts with: the cluster-wide part is the same for every region;
/// `[storage]` is the region's own.
fn config_text(names: &[String], topology: &str, fsync: &str, retention: u64, by_origin: bool) -> String {
    let mut t = format!(
        "cluster = \"sim\"\nsecret = \"sim-secret-0123\"\ntopology = \"{topology}\"\nlog_retention_ops = {retention}\nack_timeout_ms = 1000\npriority = [{}]\n",
        names.iter().rev().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
    );
    if topology == "star" {
        t += &format!("hub = \"{}\"\n", names[0]);
    }
    // A group-commit window (as a busy disk makes one): a crash can fall between a write and
    // its commit.
    t += &format!(
        "[storage]\nfsync = \"{fsync}\"\nbatch_delay_us = 3000\n[anti_entropy]\ninterval_ms = 1500\n[testing]\nbatches_by_origin = {by_origin}\n{}",
        // The same seeds cut batches at 3 ops, so units straddle messages.
        if by_origin { "max_batch_ops = 3\n" } else { "" }
    );
    for (i, n) in names.iter().enumerate() {
        t += &format!(
            "[[region]]\nname = \"{n}\"\nid = {}\nresp = \"127.0.0.1:{}\"\nhttp = \"127.0.0.1:{}\"\npeer = \"127.0.0.1:{}\"\ndata_dir = \"/sim/{n}\"\n",
            i + 1,
            7001 + i,
            8001 + i,
            PEER_BASE as usize + i
        );
    }
    let script = resolver_path();
    t += &format!(
        r#"
[[policy]]
match = "s:*"
strings = "siblings"
[[policy]]
match = "p:*"
strings = "priority"
[[policy]]
match = "u:*"
home = "{home}"
ack = "one"
[[policy]]
match = "hq:*"
home = "{home}"
ack = "one"
[[policy]]
match = "h:*"
home = "hash"
[[policy]]
match = "a:*"
ack = "majority"
[[policy]]
match = "loc:*"
replicate = false
[[policy]]
match = "x:*"
strings = "script"
script = "{script}"
"#,
        home = names[0],
        script = script.display()
    );
    t
}

/// Run one seed on a fresh thread: thread-local state of the runtime and the libraries (tokio's
/// context, std's hash-map keys) starts the same for every run, so `--seed N` alone replays
/// exactly what seed N did inside a sweep.
pub fn run_seed(seed: u64, opts: &Options) -> Outcome {
    let opts = opts.clone();
    std::thread::Builder::new()
        .name(format!("sim-seed-{seed}"))
        .stack_size(64 << 20)
        .spawn(move || run_seed_here(seed, &opts))
        .expect("spawn the simulation thread")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn run_seed_here(seed: u64, opts: &Options) -> Outcome {
    let mut rng = Rng::new(seed);
    let n = if opts.regions == 0 {
        3 + rng.below(3) as usize
    } else {
        opts.regions.clamp(2, 5)
    };
    let names: Vec<String> = NAMES[..n].iter().map(|s| s.to_string()).collect();
    // Clocks: most near true time, some minutes to hours off either way.
    let skew_ms: Vec<i64> = (0..n)
        .map(|_| match rng.below(10) {
            0..=5 => rng.below(100) as i64 - 50,
            6..=7 => -(rng.range(60_000, 3 * 3_600_000) as i64),
            _ => rng.range(60_000, 3_600_000) as i64,
        })
        .collect();
    let topology = ["mesh", "mesh", "ring", "star"][rng.below(4) as usize];
    let fsyncs: Vec<&str> = (0..n)
        .map(|_| ["always", "batch", "batch", "everysec"][rng.below(4) as usize])
        .collect();
    // Half the seeds send batches by origin rather than by HLC: the receivers' causal buffers
    // must then restore causal order.
    let by_origin = rng.chance(50);
    let configs: Vec<String> = fsyncs
        .iter()
        .map(|f| config_text(&names, topology, f, opts.log_retention_ops, by_origin))
        .collect();
    let world: Rc<RefCell<World>> = Rc::new(RefCell::new(World {
        names: names.clone(),
        skew_ms: skew_ms.clone(),
        disks: (0..n).map(|_| Disk::default()).collect(),
        live: vec![None; n],
        history: Arc::new(Mutex::new(History::new(n))),
        workload_on: true,
        seed,
        incarnation: vec![0; n],
        configs,
        durable_acks: fsyncs.iter().map(|f| *f != "everysec").collect(),
        planted: opts.planted.map(|p| p.core()),
        pubsub: opts.pubsub,
        failures: Vec::new(),
    }));
    {
        let w = world.borrow();
        let mut h = w.history.lock().unwrap();
        h.events.push(format!(
            "{n} regions, {topology} topology, fsync {fsyncs:?}, clock skew ms {skew_ms:?}, batches by origin: {by_origin}"
        ));
    }
    let max_latency = rng.range(2, 60);
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_millis(opts.chaos_ms + opts.heal_bound_ms + 10_000))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(max_latency))
        .rng_seed(seed)
        .build();
    for (i, name) in names.iter().enumerate() {
        let w = world.clone();
        sim.host(name.as_str(), move || host::run(w.clone(), i));
    }

    // The fault schedule, from the seed.
    let mut schedule: Vec<(u64, Fault)> = Vec::new();
    let mut t = 300;
    while t < opts.chaos_ms {
        let a = rng.below(n as u64) as usize;
        match rng.below(100) {
            0..=14 => {
                let b = (a + 1 + rng.below(n as u64 - 1) as usize) % n;
                // Some partitions outlast the log retention by far.
                let d = if rng.chance(20) {
                    rng.range(3_000, 6_000)
                } else {
                    rng.range(200, 3_000)
                };
                schedule.push((t, Fault::Partition(a, b)));
                schedule.push(((t + d).min(opts.chaos_ms), Fault::Repair(a, b)));
            }
            15..=22 => {
                let d = rng.range(100, 2_000);
                schedule.push((t, Fault::Crash(a)));
                schedule.push(((t + d).min(opts.chaos_ms), Fault::Restart(a)));
            }
            23..=24 => {
                let d = rng.range(100, 1_000);
                schedule.push((t, Fault::Wipe(a)));
                schedule.push(((t + d).min(opts.chaos_ms), Fault::Restart(a)));
            }
            25..=26 => schedule.push((t, Fault::Backup(a))),
            27 => {
                let d = rng.range(100, 1_000);
                schedule.push((t, Fault::Restore(a)));
                schedule.push(((t + d).min(opts.chaos_ms), Fault::Restart(a)));
            }
            28 => {
                let d = rng.range(300, 2_000);
                schedule.push((t, Fault::DiskFailure(a, rng.range(1, 40))));
                schedule.push(((t + d).min(opts.chaos_ms), Fault::Crash(a)));
                schedule.push(((t + d + 100).min(opts.chaos_ms), Fault::Restart(a)));
            }
            _ => {}
        }
        t += rng.range(100, 600);
    }
    schedule.sort_by_key(|(t, _)| *t);
    let mut backups: Vec<Option<Vec<u8>>> = vec![None; n];
    // One generator per crash, from the seed and the crash's number: how many unsynced writes a
    // crash finds depends on redb's page layout, which varies with its internal hash maps'
    // (process-random) order; a shared stream would carry that into every later fault.
    let mut crashes = 0u64;
    let mut fault_rng = move || {
        crashes += 1;
        Rng::new(seed ^ 0xD15C ^ crashes.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    };

    let mut crashed = vec![false; n];
    let mut next = 0;
    let mut healed_at: Option<u64> = None;
    let mut caught_up_after_ms = None;
    let mut failures = Vec::new();
    let log = |w: &Rc<RefCell<World>>, t: u64, s: String| {
        w.borrow().history.lock().unwrap().events.push(format!("t={t}ms {s}"))
    };
    // Take a region down: fence and crash its disk first, so nothing the dying node writes
    // reaches it, then stop the host.
    let take_down = |sim: &mut turmoil::Sim, a: usize, rng: &mut Rng| -> usize {
        let w = world.borrow();
        let lost = w.disks[a].crash(rng);
        drop(w);
        world.borrow_mut().live[a] = None;
        sim.crash(names[a].as_str());
        lost
    };
    loop {
        if let Err(e) = sim.step() {
            failures.push(format!("simulation error: {e}"));
            break;
        }
        let now = sim.elapsed().as_millis() as u64;
        while next < schedule.len() && schedule[next].0 <= now {
            let fault = schedule[next].1.clone();
            next += 1;
            match fault {
                Fault::Partition(a, b) => {
                    sim.partition(names[a].as_str(), names[b].as_str());
                    world.borrow().history.lock().unwrap().partitions += 1;
                    log(&world, now, format!("partition {}-{}", names[a], names[b]));
                }
                Fault::Repair(a, b) => {
                    sim.repair(names[a].as_str(), names[b].as_str());
                    log(&world, now, format!("repair {}-{}", names[a], names[b]));
                }
                Fault::Crash(a) if !crashed[a] => {
                    let lost = take_down(&mut sim, a, &mut fault_rng());
                    crashed[a] = true;
                    log(
                        &world,
                        now,
                        format!("crash {} ({lost} unsynced disk writes lost)", names[a]),
                    );
                }
                Fault::Wipe(a) if !crashed[a] => {
                    take_down(&mut sim, a, &mut fault_rng());
                    let w = world.borrow();
                    w.disks[a].wipe();
                    {
                        let mut h = w.history.lock().unwrap();
                        h.applied_order[a].push(Applied::Wiped);
                        h.disk_losses.push((a, now));
                    }
                    drop(w);
                    crashed[a] = true;
                    log(&world, now, format!("crash and lose the disk of {}", names[a]));
                }
                Fault::Backup(a) if !crashed[a] => {
                    backups[a] = Some(world.borrow().disks[a].backup());
                    log(&world, now, format!("backup of {}", names[a]));
                }
                Fault::Restore(a) if !crashed[a] => {
                    if let Some(image) = backups[a].clone() {
                        take_down(&mut sim, a, &mut fault_rng());
                        let w = world.borrow();
                        w.disks[a].restore(image);
                        {
                            let mut h = w.history.lock().unwrap();
                            h.applied_order[a].push(Applied::Wiped);
                            h.disk_losses.push((a, now));
                        }
                        drop(w);
                        crashed[a] = true;
                        log(&world, now, format!("crash {} and restore its last backup", names[a]));
                    }
                }
                Fault::DiskFailure(a, k) if !crashed[a] => {
                    world.borrow().disks[a].fail_after_writes(k);
                    log(
                        &world,
                        now,
                        format!("the disk of {} fails from its {k}th write on", names[a]),
                    );
                }
                Fault::Restart(a) if crashed[a] => {
                    sim.bounce(names[a].as_str());
                    crashed[a] = false;
                    world.borrow().history.lock().unwrap().restarts += 1;
                    log(&world, now, format!("restart {}", names[a]));
                }
                _ => {}
            }
        }
        if healed_at.is_none() && now >= opts.chaos_ms {
            for a in 0..n {
                for b in a + 1..n {
                    sim.repair(names[a].as_str(), names[b].as_str());
                }
                // A failed disk is replaced by the operator: the node restarts on it.
                if !crashed[a] && world.borrow().disks[a].has_failed() {
                    take_down(&mut sim, a, &mut fault_rng());
                    crashed[a] = true;
                }
                if crashed[a] {
                    sim.bounce(names[a].as_str());
                    crashed[a] = false;
                }
            }
            world.borrow_mut().workload_on = false;
            healed_at = Some(now);
            log(&world, now, "faults stop; workload stops".into());
        }
        if let Some(h) = healed_at {
            if now.is_multiple_of(50) && invariants::liveness::caught_up(&world.borrow()) {
                // Let write-backs and vectors settle, then stop.
                caught_up_after_ms = Some(now - h);
                for _ in 0..1_000 {
                    if sim.step().is_err() {
                        break;
                    }
                }
                if !invariants::liveness::caught_up(&world.borrow()) {
                    caught_up_after_ms = None;
                    continue;
                }
                // After a lost or restored disk, replication alone may leave a collected
                // tombstone uncollected in some regions (docs/consistency.md, "After a lost or
                // restored data dir, one exception"): anti-entropy joins it everywhere. Give it
                // rounds enough to go around a ring (every 1.5 s here) before judging
                // convergence (sim seed 104757).
                if !world.borrow().history.lock().unwrap().disk_losses.is_empty() {
                    for step in 0..12_000 {
                        if step % 50 == 0 && invariants::convergence::digests_equal(&world.borrow()) {
                            break;
                        }
                        if sim.step().is_err() {
                            break;
                        }
                    }
                }
                break;
            }
            if now >= h + opts.heal_bound_ms {
                break;
            }
        }
    }

    let w = world.borrow();
    let mut h = w.history.lock().unwrap();
    // Ops a crash took before they were durable or shipped never happened for the cluster (an
    // `everysec` write, or one not acknowledged yet): judge the history by what survived. The
    // regions agree on one applied vector once caught up.
    if caught_up_after_ms.is_some() {
        if let Some(Some(node)) = w.live.first() {
            let fin = node.with_engine(|e| e.applied().clone());
            let (kept, lost): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut h.ops)
                .into_iter()
                .partition(|(d, _)| fin.covers(*d));
            h.ops = kept;
            h.final_vector = Some(fin.clone());
            h.events.push(format!(
                "{} ops were lost: no region had them durably after the crashes and lost disks",
                lost.len()
            ));
            h.lost_ops = lost;
        }
    }
    let mut resurrection_keys = 0;
    failures.extend(w.failures.iter().cloned());
    failures.extend(invariants::liveness::check(&w, caught_up_after_ms, opts.heal_bound_ms));
    if caught_up_after_ms.is_some() {
        failures.extend(invariants::convergence::check(&w));
        failures.extend(invariants::no_lost_writes::check(&w, &h));
        let (f, examined) = invariants::no_resurrection::check(&w, &h);
        failures.extend(f);
        resurrection_keys = examined;
    }
    failures.extend(invariants::causal_order::check(&h, &w.names));
    failures.extend(invariants::atomic_units::check(&h, &w.names));
    failures.extend(invariants::unique_ids::check(&h));
    failures.extend(invariants::home_unique::check(&h));
    failures.extend(invariants::home_pops_once::check(&h));
    if opts.pubsub {
        failures.extend(invariants::pubsub_order::check(&h, &w.names));
        let remote = h
            .pubsub_received
            .iter()
            .filter(|(to, _, m)| m.split(':').next() != Some(to.to_string().as_str()))
            .count();
        let line = format!(
            "pub/sub: {} published, {} deliveries ({remote} from another region)",
            h.pubsub_published,
            h.pubsub_received.len()
        );
        h.events.push(line);
    }
    if caught_up_after_ms.is_some() {
        failures.extend(invariants::no_repairs::check(&w, &h));
    }
    Outcome {
        seed,
        regions: n,
        failures,
        acked_writes: h.acked.len(),
        ops: h.ops.len(),
        conflicts: h.conflicts.len(),
        restarts: h.restarts,
        partitions: h.partitions,
        snapshots: h.snapshots,
        transactions: h.transactions,
        scripts: h.scripts,
        forwarded_scripts: h.forwarded_scripts,
        blocking_pops: h.blocking_pops,
        unit_fragments: h.unit_fragments.len(),
        caught_up_after_ms,
        resurrection_keys,
        home_pops: h.home_pops.len(),
        events: {
            let mut events = h.events.clone();
            trace_key(&w, &h, &mut events);
            events
        },
    }
}

/// `CONCORD_SIM_TRACE_KEY=k`: the story of one key, for diagnosing a failure: every op made on it,
/// where each region applied it (with opens, wipes and snapshots around it), and each region's
/// final state of the key.
fn trace_key(w: &World, h: &History, events: &mut Vec<String>) {
    let Ok(key) = std::env::var("CONCORD_SIM_TRACE_KEY") else {
        return;
    };
    let key = Bytes::from(key.into_bytes());
    let region = |writer: u64| {
        let r = concord_core::region_of(writer) as usize;
        w.names
            .get(r.wrapping_sub(1))
            .cloned()
            .unwrap_or_else(|| format!("r{r}"))
    };
    let mut dots = std::collections::BTreeSet::new();
    events.push(format!("trace of {}:", String::from_utf8_lossy(&key)));
    let lost = h.lost_ops.values().map(|o| (o, "LOST "));
    for (op, tag) in h
        .ops
        .values()
        .map(|o| (o, ""))
        .chain(lost)
        .filter(|(o, _)| o.key == key)
    {
        dots.insert(op.dot());
        events.push(format!(
            "  {tag}op {}:{:x}/{} hlc {:?} deps {:?} delta {:?}",
            region(op.origin),
            op.origin,
            op.seq,
            op.hlc,
            op.deps,
            op.delta
        ));
    }
    for (i, order) in h.applied_order.iter().enumerate() {
        let mut line = format!("  applied at {}:", w.names[i]);
        for a in order {
            match a {
                Applied::Op(d) if dots.contains(d) => line.push_str(&format!(" {}/{}", region(d.replica), d.counter)),
                Applied::Op(_) => {}
                Applied::Snapshot(v) => line.push_str(&format!(" [snapshot {v:?}]")),
                Applied::Wiped => line.push_str(" [wiped]"),
                Applied::Opened(v) => line.push_str(&format!(" [opened {v:?}]")),
            }
        }
        events.push(line);
    }
    for (i, node) in w.live.iter().enumerate() {
        if let Some(node) = node {
            let st = node.with_engine(|e| e.key_state(&key).cloned());
            events.push(format!("  state at {}: {st:?}", w.names[i]));
        }
    }
}
