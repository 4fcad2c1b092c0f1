//! Home-key uniqueness: a key with a home region is single-master, so at most one `SET … NX` on
//! it ever succeeds, across every region, crash, lost disk and restore (the workload's `u:*` keys
//! have `home` and `ack = "one"`: a success survives the loss of its home's disk).
//!
//! The one exception is the promise's own limit: a claim acknowledged at `one` lives in two
//! regions, and if both lose their disks before it spreads further, it is gone and the key can be
//! claimed again. A later success is excused only when every earlier one is an acknowledged
//! write lost beyond its ack level ([`super::no_lost_writes::lost_beyond_promise`]; seed 82765:
//! the home and the one region that had the claim both lost their disks).

use super::no_lost_writes::lost_beyond_promise;
use crate::history::History;
use std::collections::BTreeMap;

pub fn check(history: &History) -> Vec<String> {
    let mut by_key: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for (key, region, cmd, dot) in &history.nx_successes {
        by_key
            .entry(key.clone())
            .or_default()
            .push((format!("{cmd} in {region}"), *dot));
    }
    let lost = |dot: &Option<concord_core::Dot>| {
        dot.filter(|d| history.lost_ops.contains_key(d)).is_some_and(|d| {
            history
                .acked
                .iter()
                .any(|w| w.op.dot() == d && lost_beyond_promise(history, w))
        })
    };
    by_key
        .into_iter()
        .filter_map(|(key, wins)| {
            // A success while an earlier claim still stood: each but the last must be lost.
            let violated = wins.len() > 1 && wins[..wins.len() - 1].iter().any(|(_, d)| !lost(d));
            violated.then(|| {
                let all: Vec<&String> = wins.iter().map(|(c, _)| c).collect();
                format!(
                    "home key {key:?}: {} successful SET NX: {}",
                    wins.len(),
                    all.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; ")
                )
            })
        })
        .take(5)
        .collect()
}
