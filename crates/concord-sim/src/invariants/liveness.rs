//! Liveness: once faults stop, every region catches up with every other within a bound.

use crate::host::World;

/// Whether the cluster has caught up: every region running, same applied vector, nothing buffered.
pub fn caught_up(world: &World) -> bool {
    let mut vectors = Vec::new();
    for l in &world.live {
        let Some(l) = l else { return false };
        let (buffered, applied) = l.with_engine(|e| (e.buffered_ops(), e.applied().clone()));
        if buffered > 0 {
            return false;
        }
        vectors.push(applied);
    }
    vectors.windows(2).all(|w| w[0] == w[1])
}

pub fn check(world: &World, caught_up_after_ms: Option<u64>, bound_ms: u64) -> Vec<String> {
    match caught_up_after_ms {
        Some(_) => Vec::new(),
        None => {
            let vectors: Vec<String> = world
                .live
                .iter()
                .enumerate()
                .map(|(i, l)| match l {
                    Some(l) => {
                        l.with_engine(|e| format!("{}={} (buffered {})", world.names[i], e.applied(), e.buffered_ops()))
                    }
                    None => format!("{}=down", world.names[i]),
                })
                .collect();
            vec![format!(
                "not caught up {bound_ms} ms after faults stopped: {}",
                vectors.join(", ")
            )]
        }
    }
}
