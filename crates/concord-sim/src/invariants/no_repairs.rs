//! Anti-entropy finds nothing to repair: replication alone converged every region (DESIGN §8.2).
//! A repair means a bug (a lost op, a wrong merge) that anti-entropy papered over; in production
//! it is a warning, here a failure. Counted over each node's current incarnation. A join that
//! only brings back tombstones collected as settled (`keys_uncollected`) is expected after a lost
//! or restored data dir, and a failure otherwise.

use crate::host::World;

pub fn check(world: &World, h: &crate::history::History) -> Vec<String> {
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
            // Collected tombstones come back only under a write from a writer that had not seen
            // them although its region had: one that lost or restored its data dir.
            if p.keys_uncollected > 0 && h.disk_losses.is_empty() {
                failures.push(format!(
                    "anti-entropy brought back {} collected tombstone key(s) at {} (from region {peer}) though no region lost its disk: garbage collection purged too early",
                    p.keys_uncollected, world.names[i]
                ));
            }
        }
    }
    failures
}
