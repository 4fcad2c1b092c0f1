//! No acknowledged write lost: every acknowledged write is in the final state of every region, or
//! was removed by a write that had seen it (its dot is in that write's removals, or, for a delete's
//! tombstone, a later data write saw it), or lost an `lww`-style conflict and is in the conflict log.

use crate::history::History;
use crate::host::World;
use concord_core::{ConflictKind, Payload};
use std::collections::BTreeSet;

pub fn check(world: &World, history: &History) -> Vec<String> {
    let removed: BTreeSet<_> = history
        .ops
        .values()
        .flat_map(|op| {
            op.delta
                .removes
                .iter()
                .map(move |(s, d)| (op.key.clone(), s.clone(), *d))
        })
        .collect();
    let losers: BTreeSet<_> = history
        .conflicts
        .iter()
        .filter(|c| matches!(c.kind, ConflictKind::Register | ConflictKind::Field(_)))
        .flat_map(|c| {
            c.versions
                .iter()
                .filter(move |v| Some(v.dot) != c.winner)
                .map(move |v| (c.key.clone(), v.dot))
        })
        .collect();
    let mut failures = Vec::new();
    for w in &history.acked {
        let tombstone =
            w.op.delta
                .adds
                .iter()
                .all(|(_, p)| matches!(p, Payload::Value(None) | Payload::Floor { .. }));
        for slot in &w.slots {
            for (i, live) in world.live.iter().enumerate() {
                let Some(live) = live else { continue };
                let (present, dead) = live.with_engine(|e| {
                    let state = e.key_state(&w.op.key);
                    (
                        state
                            .and_then(|s| s.entries(slot))
                            .is_some_and(|es| es.contains_key(&w.op.dot())),
                        state.is_none_or(|s| s.only_tombstones()),
                    )
                });
                if present || removed.contains(&(w.op.key.clone(), slot.clone(), w.op.dot())) {
                    continue;
                }
                if losers.contains(&(w.op.key.clone(), w.op.dot())) {
                    continue;
                }
                if tombstone {
                    // Purged once stable, or superseded by a later data write that saw it.
                    let superseded = history.key_ops(&w.op.key).any(|o| {
                        o.delta.adds.iter().any(|(s, _)| s.kind().is_some())
                            && ((o.origin == w.op.origin && o.seq > w.op.seq) || o.deps.get(w.op.origin) >= w.op.seq)
                    });
                    let floor = matches!(slot, concord_core::Slot::CounterFloor(_));
                    if superseded || floor || dead {
                        continue;
                    }
                }
                failures.push(format!(
                    "acknowledged write {} on {:?} ({slot:?}) by {} is missing at {}",
                    w.op.dot(),
                    w.op.key,
                    world.names[w.region],
                    world.names[i]
                ));
                if failures.len() > 5 {
                    return failures;
                }
            }
        }
    }
    failures
}
