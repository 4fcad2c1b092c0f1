//! One seeded run: build the cluster, drive workload and chaos, heal, check the invariants.

use crate::history::{Applied, History};
use crate::invariants;
use crate::node::{self, Disk, World};
use crate::rng::Rng;
use concord_core::{Policy, PolicySet, ReplicaId, Strategy};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// A bug to plant, to show the invariants catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// Causal delivery ignores `deps`.
    Causal,
    /// Remote ops lose their removals (a broken merge).
    Merge,
}

impl PlantedBug {
    pub fn core(self) -> concord_core::PlantedBug {
        match self {
            PlantedBug::Causal => concord_core::PlantedBug::IgnoreDeps,
            PlantedBug::Merge => concord_core::PlantedBug::IgnoreRemoves,
        }
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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            regions: 0,
            chaos_ms: 8_000,
            heal_bound_ms: 30_000,
            planted: None,
            log_retention_ops: 50,
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
    pub caught_up_after_ms: Option<u64>,
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
    Crash(usize),
    Restart(usize),
    /// Crash, lose the disk (a brand-new data dir), restart later.
    Wipe(usize),
}

const NAMES: [&str; 5] = ["us", "eu", "ap", "sa", "af"];

fn policies() -> PolicySet {
    let rule = |pattern: &str, strings: Strategy| Policy {
        pattern: pattern.into(),
        strings,
        ..Policy::catch_all()
    };
    PolicySet::new(
        vec![
            rule("s:*", Strategy::Siblings),
            rule("p:*", Strategy::Priority),
            rule("l:*", Strategy::Lww),
        ],
        vec![2, 1, 3, 4, 5],
        16,
    )
}

pub fn run_seed(seed: u64, opts: &Options) -> Outcome {
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
    let world: Rc<RefCell<World>> = Rc::new(RefCell::new(World {
        names: names.clone(),
        skew_ms: skew_ms.clone(),
        disks: vec![Disk::default(); n],
        live: vec![None; n],
        history: History::new(n),
        workload_on: true,
        seed,
        incarnation: vec![0; n],
        policies: policies(),
        planted: opts.planted,
        log_retention_ops: opts.log_retention_ops,
        hlc_ordered_batches: rng.chance(50),
    }));
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
        sim.host(name.as_str(), move || node::run(w.clone(), i));
    }

    // The fault schedule, from the seed.
    let mut schedule: Vec<(u64, Fault)> = Vec::new();
    let mut t = 300;
    while t < opts.chaos_ms {
        match rng.below(100) {
            0..=14 => {
                let a = rng.below(n as u64) as usize;
                let b = (a + 1 + rng.below(n as u64 - 1) as usize) % n;
                let d = rng.range(200, 3_000);
                schedule.push((t, Fault::Partition(a, b)));
                schedule.push(((t + d).min(opts.chaos_ms), Fault::Repair(a, b)));
            }
            15..=22 => {
                let a = rng.below(n as u64) as usize;
                let d = rng.range(100, 2_000);
                schedule.push((t, Fault::Crash(a)));
                schedule.push(((t + d).min(opts.chaos_ms), Fault::Restart(a)));
            }
            23..=24 => {
                let a = rng.below(n as u64) as usize;
                let d = rng.range(100, 1_000);
                schedule.push((t, Fault::Wipe(a)));
                schedule.push(((t + d).min(opts.chaos_ms), Fault::Restart(a)));
            }
            _ => {}
        }
        t += rng.range(100, 600);
    }
    schedule.sort_by_key(|(t, _)| *t);

    let mut crashed = vec![false; n];
    let mut next = 0;
    let mut healed_at: Option<u64> = None;
    let mut caught_up_after_ms = None;
    let mut failures = Vec::new();
    let log = |w: &Rc<RefCell<World>>, t: u64, s: String| w.borrow_mut().history.events.push(format!("t={t}ms {s}"));
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
                    world.borrow_mut().history.partitions += 1;
                    log(&world, now, format!("partition {}-{}", names[a], names[b]));
                }
                Fault::Repair(a, b) => {
                    sim.repair(names[a].as_str(), names[b].as_str());
                    log(&world, now, format!("repair {}-{}", names[a], names[b]));
                }
                Fault::Crash(a) if !crashed[a] => {
                    sim.crash(names[a].as_str());
                    world.borrow_mut().live[a] = None;
                    crashed[a] = true;
                    log(&world, now, format!("crash {}", names[a]));
                }
                Fault::Wipe(a) if !crashed[a] => {
                    // Only wipe a region whose own writes every other region already has: the
                    // cluster then holds everything it acknowledged.
                    let safe = {
                        let w = world.borrow();
                        let own = w.disks[a].meta.applied.get(a as ReplicaId + 1);
                        (0..n)
                            .filter(|j| *j != a)
                            .all(|j| w.disks[j].meta.applied.get(a as ReplicaId + 1) >= own)
                    };
                    if safe {
                        sim.crash(names[a].as_str());
                        let mut w = world.borrow_mut();
                        w.live[a] = None;
                        w.disks[a] = Disk::default();
                        w.history.applied_order[a].push(Applied::Wiped);
                        crashed[a] = true;
                        drop(w);
                        log(&world, now, format!("crash and wipe {}", names[a]));
                    }
                }
                Fault::Restart(a) if crashed[a] => {
                    sim.bounce(names[a].as_str());
                    crashed[a] = false;
                    world.borrow_mut().history.restarts += 1;
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
                break;
            }
            if now >= h + opts.heal_bound_ms {
                break;
            }
        }
    }

    let w = world.borrow();
    failures.extend(invariants::liveness::check(&w, caught_up_after_ms, opts.heal_bound_ms));
    if caught_up_after_ms.is_some() {
        failures.extend(invariants::convergence::check(&w));
        failures.extend(invariants::no_lost_writes::check(&w, &w.history));
        failures.extend(invariants::no_resurrection::check(&w, &w.history));
    }
    failures.extend(invariants::causal_order::check(&w.history, &w.names));
    Outcome {
        seed,
        regions: n,
        failures,
        acked_writes: w.history.acked.len(),
        ops: w.history.ops.len(),
        conflicts: w.history.conflicts.len(),
        restarts: w.history.restarts,
        partitions: w.history.partitions,
        snapshots: w.history.snapshots,
        caught_up_after_ms,
        events: w.history.events.clone(),
    }
}
