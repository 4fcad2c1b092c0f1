//! Causal order: in every region, an op is applied only after every op it depends on (its
//! `deps`) and after every earlier op of its origin. Checked from the outside, on the order in
//! which each region applied ops — so a region that delivered "the reply before the question"
//! is caught even though its own bookkeeping thought all was well.

use crate::history::{Applied, History};
use concord_core::VersionVector;

pub fn check(history: &History, names: &[String]) -> Vec<String> {
    let mut failures = Vec::new();
    for (region, order) in history.applied_order.iter().enumerate() {
        let mut seen = VersionVector::new();
        for entry in order {
            match entry {
                Applied::Wiped => seen = VersionVector::new(),
                Applied::Opened(vv) => seen = vv.clone(),
                Applied::Snapshot(vv) => seen.join(vv),
                Applied::Op(dot) => {
                    let Some(op) = history.ops.get(dot) else { continue };
                    if seen.covers(*dot) {
                        continue; // a re-application after a restart from an older disk is a no-op
                    }
                    let fifo = seen.get(op.origin) + 1 == op.seq;
                    let deps = op.deps.iter().all(|(r, c)| r == op.origin || seen.get(r) >= c);
                    if !fifo || !deps {
                        failures.push(format!(
                            "{}: applied {} (deps {}) having seen only {}",
                            names[region], dot, op.deps, seen
                        ));
                        if failures.len() > 5 {
                            return failures;
                        }
                    }
                    seen.add(*dot);
                }
            }
        }
    }
    failures
}
