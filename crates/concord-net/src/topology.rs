//! Who streams to whom. Every node *pulls*: it connects to each of its upstream regions and asks
//! for the ops it misses. Any op the upstream has is forwarded (except those the subscriber already
//! has, by its applied vector), so ops reach every region along the topology, loops and duplicates
//! are harmless, and an op never returns to its origin (the origin's vector covers it).

use concord_core::ReplicaId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Every region pulls from every other.
    Mesh,
    /// Region i pulls from region i-1 (ops flow around the ring in config order).
    Ring,
    /// Leaves pull from the hub; the hub pulls from every leaf.
    Star { hub: ReplicaId },
}

/// The regions `me` pulls from, given all region ids in config order.
pub fn upstreams(shape: Shape, regions: &[ReplicaId], me: ReplicaId) -> Vec<ReplicaId> {
    let others = || regions.iter().copied().filter(|r| *r != me).collect::<Vec<_>>();
    match shape {
        Shape::Mesh => others(),
        Shape::Ring => {
            let Some(i) = regions.iter().position(|r| *r == me) else {
                return Vec::new();
            };
            if regions.len() < 2 {
                return Vec::new();
            }
            vec![regions[(i + regions.len() - 1) % regions.len()]]
        }
        Shape::Star { hub } if hub == me => others(),
        Shape::Star { hub } => vec![hub],
    }
}

/// The regions that pull from `me` (my downstreams).
pub fn downstreams(shape: Shape, regions: &[ReplicaId], me: ReplicaId) -> Vec<ReplicaId> {
    regions
        .iter()
        .copied()
        .filter(|r| *r != me && upstreams(shape, regions, *r).contains(&me))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let rs = [1, 2, 3];
        assert_eq!(upstreams(Shape::Mesh, &rs, 2), vec![1, 3]);
        assert_eq!(upstreams(Shape::Ring, &rs, 1), vec![3]);
        assert_eq!(upstreams(Shape::Ring, &rs, 2), vec![1]);
        assert_eq!(downstreams(Shape::Ring, &rs, 2), vec![3]);
        assert_eq!(upstreams(Shape::Star { hub: 1 }, &rs, 1), vec![2, 3]);
        assert_eq!(upstreams(Shape::Star { hub: 1 }, &rs, 3), vec![1]);
        assert_eq!(downstreams(Shape::Star { hub: 1 }, &rs, 3), vec![1]);
    }
}
