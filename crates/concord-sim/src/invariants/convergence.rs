//! Convergence after heal: every region holds the same data (identical state digests) and the
//! same applied vector.

use crate::host::World;

/// Every running region holds the same state digest.
pub fn digests_equal(world: &World) -> bool {
    let mut digests = world.live.iter().flatten().map(|l| l.with_engine(|e| e.state_digest()));
    let Some(first) = digests.next() else { return true };
    digests.all(|d| d == first)
}

pub fn check(world: &World) -> Vec<String> {
    let mut failures = Vec::new();
    let live: Vec<_> = world
        .live
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.as_ref().map(|l| (i, l.clone())))
        .collect();
    let Some((first, l0)) = live.first() else {
        return vec!["no region is running".into()];
    };
    let (d0, a0) = l0.with_engine(|e| (e.state_digest(), e.applied().clone()));
    for (i, l) in &live[1..] {
        let l0 = l0.clone();
        l.with_engine(|e| {
            if e.applied() != &a0 {
                failures.push(format!(
                    "applied vectors differ: {}={} vs {}={}",
                    world.names[*first],
                    a0,
                    world.names[*i],
                    e.applied()
                ));
            }
            if e.state_digest() != d0 {
                let diff: Vec<String> = l0.with_engine(|e0| {
                    e0.key_states()
                        .filter(|(k, s)| {
                            e.policies().policy_for(k).replicate
                                && e.key_state(k).map(|x| &x.slots) != Some(&s.slots)
                                && !s.only_tombstones()
                        })
                        .map(|(k, s)| format!("{k:?}: {:?} vs {:?}", s, e.key_state(k)))
                        .collect()
                });
                failures.push(format!(
                    "data differs between {} and {} (keys e.g. {:?})",
                    world.names[*first],
                    world.names[*i],
                    diff.iter().take(3).collect::<Vec<_>>()
                ));
            }
        });
    }
    failures
}
