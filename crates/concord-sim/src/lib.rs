//! # concord-sim
//!
//! A deterministic simulation of a Concord cluster on [turmoil]: 3–5 regions, each a replica
//! [`concord_core::Engine`] with an in-memory "disk" (written synchronously after every change, as
//! with `fsync = "always"`), replicating over simulated TCP with the real wire format and
//! handshake of `concord-net`, pull links with catch-up from the op log, acks and vectors, like the
//! node. A seeded workload writes in every region while a seeded chaos schedule partitions links,
//! crashes and restarts regions, with clocks skewed by up to hours. Then faults stop, and the
//! invariants in [`invariants`] are checked: convergence, no acknowledged write lost, causal order,
//! no resurrection, liveness. The same seed reproduces the same run exactly.
//!
//! Must not depend on: the node, the store, the front ends, the wall clock or OS randomness.

pub mod disk;
pub mod history;
pub mod host;
pub mod invariants;
pub mod rng;
pub mod run;

pub use run::{run_seed, Options, Outcome, PlantedBug};
