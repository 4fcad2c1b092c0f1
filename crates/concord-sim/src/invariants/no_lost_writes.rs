//! No acknowledged write lost: every acknowledged write is in the final state of every region, or
//! was removed by a write that had seen it (its dot is in that write's removals, or, for a delete's
//! tombstone, a later data write saw it), or lost an `lww` conflict and is in the conflict log
//! (only `lww` losers: `priority`, `siblings` and `script` keep every version until a write that
//! saw it replaces it).
//!
//! A write acknowledged at ack level `local` survives crashes but not the loss of its region's
//! disk before it replicated; one acknowledged after `k` other regions applied it survives the
//! loss of any `k` disks. A write lost beyond what its level promises is a failure.

use crate::history::{Acked, History};
use crate::host::World;
use concord_core::{ConflictKind, Payload};
use std::collections::BTreeSet;

/// More disks were lost (or restored from old copies) after `w` was acknowledged than its ack
/// level promised to survive: `w` may be gone without a bug.
pub fn lost_beyond_promise(history: &History, w: &Acked) -> bool {
    let lost_disks: BTreeSet<usize> = history
        .disk_losses
        .iter()
        .filter(|(_, t)| *t >= w.at_ms)
        .map(|(r, _)| *r)
        .collect();
    lost_disks.len() > w.others && (w.others > 0 || lost_disks.contains(&w.region))
}

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
        .filter(|c| c.policy == "lww" && matches!(c.kind, ConflictKind::Register | ConflictKind::Field(_)))
        .flat_map(|c| {
            c.versions
                .iter()
                .filter(move |v| Some(v.dot) != c.winner)
                .map(move |v| (c.key.clone(), v.dot))
        })
        .collect();
    let mut failures = Vec::new();
    for w in &history.acked {
        if let Some(fin) = &history.final_vector {
            if !fin.covers(w.op.dot()) {
                if lost_beyond_promise(history, w) {
                    continue;
                }
                failures.push(format!(
                    "acknowledged write {} on {:?} by {} (ack level: {} other region(s)) was lost: no region has it",
                    w.op.dot(),
                    w.op.key,
                    world.names[w.region],
                    w.others
                ));
                if failures.len() > 5 {
                    return failures;
                }
                continue;
            }
        }
        let tombstone =
            w.op.delta
                .adds
                .iter()
                .all(|(_, p)| *p == Payload::Value(None) || p.is_floor());
        for slot in &w.slots {
            // Floors (counter and score) are metadata about what a removal took: garbage
            // collection drops them once they can apply to nothing, at each region's own time.
            // What they do is checked through the values (convergence, core's reference tests).
            if slot.is_floor() {
                continue;
            }
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
                    // The lost-disk exception (docs/consistency.md): a region that lost its
                    // disk after the delete writes the key under a new writer id without having
                    // seen the delete; where the delete was already collected, its tombstone is
                    // gone for good and the concurrent write stands (sim seed 104133).
                    let rewritten_after_lost_disk = history.key_ops(&w.op.key).any(|o| {
                        // Region ids are 1-based; a region-local op (id 0) names no region.
                        let region = (concord_core::region_of(o.origin) as usize).checked_sub(1);
                        o.delta.adds.iter().any(|(s, _)| s.kind().is_some())
                            && o.origin != w.op.origin
                            && o.deps.get(w.op.origin) < w.op.seq
                            && history
                                .disk_losses
                                .iter()
                                .any(|(r, t)| Some(*r) == region && *t >= w.at_ms)
                    });
                    if superseded || dead || rewritten_after_lost_disk {
                        continue;
                    }
                }
                // An expiry is a property of the key's data: once the key is deleted (its data
                // tombstoned, the key purged when stable), its expiry goes with it.
                // (A write on a key that holds only tombstones and a stale expiry starts from
                // empty: the expiry went with the data it belonged to.)
                let seen_later = || {
                    history.key_ops(&w.op.key).any(|o| {
                        o.dot() != w.op.dot()
                            && ((o.origin == w.op.origin && o.seq > w.op.seq) || o.deps.get(w.op.origin) >= w.op.seq)
                    })
                };
                if matches!(slot, concord_core::Slot::Expiry) && (dead || seen_later()) {
                    continue;
                }
                let mut msg = format!(
                    "acknowledged write {} on {:?} ({slot:?}) by {} is missing at {}",
                    w.op.dot(),
                    w.op.key,
                    world.names[w.region],
                    world.names[i]
                );
                if failures.is_empty() {
                    // The key's history, to read the failure without a debugger.
                    for o in history.key_ops(&w.op.key).take(16) {
                        msg += &format!(
                            "\n      op {} hlc {} deps {} delta {:?}",
                            o.dot(),
                            o.hlc,
                            o.deps,
                            o.delta
                        );
                    }
                    let st = live.with_engine(|e| format!("{:?}", e.key_state(&w.op.key)));
                    msg += &format!("\n      state there: {st}");
                }
                failures.push(msg);
                if failures.len() > 5 {
                    return failures;
                }
            }
        }
    }
    failures
}
