//! No resurrection: a key whose causally last write was a delete stays deleted in every region,
//! whatever arrived late and whatever was purged.

use crate::history::History;
use crate::host::World;
use concord_core::Op;
use std::collections::BTreeMap;

fn before(a: &Op, b: &Op) -> bool {
    (a.origin == b.origin && a.seq < b.seq) || b.deps.get(a.origin) >= a.seq
}

/// The violations found, and how many keys were examined (keys whose causally last op is a
/// delete: a run that examined none proved nothing about resurrection).
pub fn check(world: &World, history: &History) -> (Vec<String>, usize) {
    let mut examined = 0;
    let mut by_key: BTreeMap<_, Vec<&Op>> = BTreeMap::new();
    for op in history.ops.values() {
        by_key.entry(op.key.clone()).or_default().push(op);
    }
    let mut failures = Vec::new();
    for (key, ops) in by_key {
        // The causally last op on the key, if there is exactly one.
        let maxima: Vec<&&Op> = ops
            .iter()
            .filter(|o| ops.iter().all(|x| x.dot() == o.dot() || before(x, o)))
            .collect();
        let [last] = maxima.as_slice() else { continue };
        if !history.deletes.contains(&last.dot()) {
            continue;
        }
        examined += 1;
        for (i, live) in world.live.iter().enumerate() {
            let Some(live) = live else { continue };
            let view = live.with_engine(|e| e.describe(&key, u64::MAX / 2));
            if view.kind.is_some() {
                failures.push(format!(
                    "{key:?} was deleted last (by {}) but is back at {} as {:?}",
                    last.dot(),
                    world.names[i],
                    view.kind
                ));
            }
        }
    }
    (failures, examined)
}
