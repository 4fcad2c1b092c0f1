//! Atomic units (DESIGN §8.4): the ops of one multi-key write, transaction or script are applied
//! by every other region within one engine output — one hold of the engine lock, so no reader
//! there ever sees part of a unit.

use crate::history::History;

pub fn check(h: &History, names: &[String]) -> Vec<String> {
    let mut failures = Vec::new();
    for (region, unit, n) in &h.unit_fragments {
        let Some(made) = h.units_made.get(unit) else { continue };
        if n != made && failures.len() < 5 {
            failures.push(format!(
                "atomic units: {} applied {n} of the {made} ops of unit {:x}..={} in one go (partly visible)",
                names[*region], unit.0, unit.1
            ));
        }
    }
    failures
}
