//! Home-key uniqueness: a key with a home region is single-master, so at most one `SET … NX` on
//! it ever succeeds, across every region, crash, lost disk and restore (the workload's `u:*` keys
//! have `home` and `ack = "one"`: a success survives the loss of its home's disk).

use crate::history::History;
use std::collections::BTreeMap;

pub fn check(history: &History) -> Vec<String> {
    let mut by_key: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for (key, region, cmd) in &history.nx_successes {
        by_key
            .entry(key.clone())
            .or_default()
            .push(format!("{cmd} in {region}"));
    }
    by_key
        .into_iter()
        .filter(|(_, wins)| wins.len() > 1)
        .take(5)
        .map(|(key, wins)| {
            format!(
                "home key {key:?}: {} successful SET NX: {}",
                wins.len(),
                wins.join("; ")
            )
        })
        .collect()
}
