//! Exactly-once pops on home-region lists: the workload's `hq:*` lists have a home region (and
//! `ack = "one"`), so every pop, made in any region, runs at the home; each element is pushed
//! once, so no successful pop may return an element another pop already returned — across
//! partitions, crashes, lost disks and restores (DESIGN §8.4).

use crate::history::History;
use std::collections::BTreeMap;

pub fn check(history: &History) -> Vec<String> {
    let mut by_element: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for (element, region, cmd) in &history.home_pops {
        by_element
            .entry(element.clone())
            .or_default()
            .push(format!("{cmd} in {region}"));
    }
    by_element
        .into_iter()
        .filter(|(_, pops)| pops.len() > 1)
        .take(5)
        .map(|(element, pops)| {
            format!(
                "home-list element {element:?} popped {} times: {}",
                pops.len(),
                pops.join("; ")
            )
        })
        .collect()
}
