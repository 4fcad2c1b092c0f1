//! Anti-entropy finds nothing to repair: replication alone converged every region (DESIGN §8.2).
//! A repair means a bug (a lost op, a wrong merge) that anti-entropy papered over; in production
//! it is a warning, here a failure. Counted over each node's current incarnation.

use crate::host::World;

pub fn check(world: &World) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, node) in world.live.iter().enumerate() {
        let Some(node) = node else { continue };
        for (peer, p) in node.aae.peers() {
            if p.keys_repaired > 0 {
                failures.push(format!(
                    "anti-entropy had to repair {} key(s) at {} (comparing with region {peer}): replication lost or mis-merged them",
                    p.keys_repaired, world.names[i]
                ));
            }
        }
    }
    failures
}
