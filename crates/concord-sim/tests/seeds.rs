//! The simulation in CI: 50 seeds must keep every invariant, and planted bugs must be caught
//! (the invariants can fail). Longer sweeps: `scripts/sim-sweep`.

use concord_sim::{run_seed, Options, PlantedBug};

fn sweep(first: u64, count: u64) {
    let opts = Options::default();
    let mut failures = Vec::new();
    for seed in first..first + count {
        let o = run_seed(seed, &opts);
        if !o.ok() {
            failures.push(format!(
                "seed {seed}: {:?}\n  reproduce: cargo run -p concord-sim -- --seed {seed} --verbose",
                o.failures
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn seeds_1_to_10() {
    sweep(1, 10);
}
#[test]
fn seeds_11_to_20() {
    sweep(11, 10);
}
#[test]
fn seeds_21_to_30() {
    sweep(21, 10);
}
#[test]
fn seeds_31_to_40() {
    sweep(31, 10);
}
#[test]
fn seeds_41_to_50() {
    sweep(41, 10);
}

/// With causal delivery broken, some seed among the first ten violates causal order.
#[test]
fn planted_causal_bug_is_caught() {
    let opts = Options {
        planted: Some(PlantedBug::Causal),
        ..Options::default()
    };
    let caught = (1..=10).map(|s| run_seed(s, &opts)).find(|o| !o.ok());
    let o = caught.expect("no seed caught a causal-delivery bug: the causal-order invariant cannot fail");
    assert!(o.failures.iter().any(|f| f.contains("applied")), "{:?}", o.failures);
}

/// With the merge broken (removals dropped), some seed among the first ten diverges or loses writes.
#[test]
fn planted_merge_bug_is_caught() {
    let opts = Options {
        planted: Some(PlantedBug::Merge),
        ..Options::default()
    };
    let caught = (1..=10).map(|s| run_seed(s, &opts)).find(|o| !o.ok());
    assert!(
        caught.is_some(),
        "no seed caught a broken merge: convergence cannot fail"
    );
}

/// A seed reproduces its run exactly.
#[test]
fn a_seed_is_deterministic() {
    let a = run_seed(7, &Options::default());
    let b = run_seed(7, &Options::default());
    assert_eq!(
        (a.acked_writes, a.ops, a.conflicts, a.restarts),
        (b.acked_writes, b.ops, b.conflicts, b.restarts)
    );
    assert_eq!(a.events, b.events);
}
