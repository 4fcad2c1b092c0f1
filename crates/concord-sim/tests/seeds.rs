//! The simulation in CI: 60 seeds must keep every invariant, and each planted bug must be caught
//! by the invariant meant for it (the invariants can fail). Longer sweeps: `scripts/sim-sweep`.
//!
//! Every seed runs in its own `concord-sim` process, exactly as `concord-sim --seed N` (the
//! reproduce command a failure prints) runs it.

use std::process::Command;

fn run(seed: u64, plant: Option<&str>) -> (bool, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_concord-sim"));
    c.arg("--seed").arg(seed.to_string());
    if let Some(p) = plant {
        c.arg("--plant").arg(p);
    }
    let out = c.output().expect("run concord-sim");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sweep(first: u64, count: u64) {
    let failures: Vec<String> = (first..first + count)
        .filter_map(|s| {
            let (ok, out) = run(s, None);
            (!ok).then_some(out)
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn seeds_1_to_15() {
    sweep(1, 15);
}
#[test]
fn seeds_16_to_30() {
    sweep(16, 15);
}
#[test]
fn seeds_31_to_45() {
    sweep(31, 15);
}
#[test]
fn seeds_46_to_60() {
    sweep(46, 15);
}

/// Pub/sub under the same faults (`--pubsub`): at most once, in order per publisher.
#[test]
fn seeds_1_to_8_with_pubsub() {
    let failures: Vec<String> = (1..=8)
        .filter_map(|s| {
            let out = Command::new(env!("CARGO_BIN_EXE_concord-sim"))
                .args(["--seed", &s.to_string(), "--pubsub"])
                .output()
                .expect("run concord-sim");
            (!out.status.success()).then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Some seed among `seeds` fails with the planted bug, and the failure is the one `expect`
/// describes (a line starting `FAIL ` that contains it): the invariant meant for the bug caught
/// it, not merely some other check.
fn caught(plant: &str, seeds: std::ops::RangeInclusive<u64>, expect: &str) {
    let mut seen = Vec::new();
    for s in seeds {
        let (ok, out) = run(s, Some(plant));
        if ok {
            continue;
        }
        if out
            .lines()
            .any(|l| l.trim_start().starts_with("FAIL ") && l.contains(expect))
        {
            return;
        }
        seen.push(format!("seed {s}:\n{out}"));
    }
    panic!(
        "planted {plant}: no seed failed with {expect:?} (the invariant meant for it cannot fail?); other failures: {}",
        seen.join("\n")
    );
}

#[test]
fn planted_causal_delivery_bug_is_caught_by_causal_order() {
    // causal_order: "<region>: applied <dot> (deps …) having seen only …"
    caught("causal", 1..=20, "having seen only");
}

#[test]
fn planted_merge_bug_is_caught_by_no_lost_writes() {
    caught("merge", 1..=20, "is missing at");
}

#[test]
fn planted_skipped_removal_is_caught_by_convergence() {
    caught("skipped-removal", 1..=20, "data differs between");
}

#[test]
fn planted_dot_reuse_is_caught_by_unique_identities() {
    caught("dot-reuse", 1..=20, "was used for two different writes");
}

#[test]
fn planted_dropped_acked_write_is_caught_by_no_lost_writes() {
    caught("dropped-acked-write", 30..=90, "was lost: no region has it");
}

#[test]
fn planted_resurrected_delete_is_caught_by_no_repairs() {
    // Since anti-entropy no longer takes states from a region behind (sim seed 37742), a
    // premature purge shows as the purging region's data differing from the others (anti-entropy
    // then has to repair it), no longer as a value copied back everywhere: `no_resurrection`
    // ("was deleted last") did not fire on seeds 1–60 of the merged head. Open in issue 10's
    // note: make a seed where the purge resurrects a key everywhere, and expect that message again.
    caught("resurrected-delete", 1..=40, "anti-entropy had to repair");
}

#[test]
fn planted_stalled_link_is_caught_by_liveness() {
    caught("stalled-link", 1..=20, "not caught up");
}

#[test]
fn planted_blocking_pops_here_is_caught_by_home_pops_once() {
    caught("blocking-pops-here", 1..=5, "popped 2 times");
}

#[test]
fn planted_publish_ahead_is_caught_by_pubsub_order() {
    caught("publish-ahead", 1..=10, "before the write it follows");
}

#[test]
fn planted_split_units_is_caught_by_atomic_units() {
    caught("split-units", 1..=20, "(partly visible)");
}

/// A seed reproduces its run exactly: the same history (counts and every fault event).
#[test]
fn a_seed_is_deterministic() {
    let verbose = || {
        let out = Command::new(env!("CARGO_BIN_EXE_concord-sim"))
            .args(["--seed", "7", "--verbose"])
            .output()
            .expect("run concord-sim");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (a, b) = (verbose(), verbose());
    assert!(a.starts_with("seed 7: ") && a.contains(" t="), "{a}");
    assert_eq!(a, b);
}

#[test]
fn planted_unchecked_home_writes_are_caught_by_home_unique() {
    // A home region that takes home-key writes right after a restart, before it has re-learned
    // its history, lets a claim it lost be made again. The race needs a home that lost its disk
    // before a claim spread: of seeds 1–100, 94 shows it.
    caught("home-writes-unchecked", 90..=100, "successful SET NX");
}

#[test]
fn planted_delete_sparing_siblings_is_caught_by_no_resurrection() {
    // `DEL` removing only the newest version of a string leaves older concurrent versions
    // standing in every region alike: replication converges, anti-entropy finds nothing to
    // repair, and only the no-resurrection check sees the deleted key back (seeds 1 and 9).
    caught("delete-spares-siblings", 1..=10, "was deleted last");
}
