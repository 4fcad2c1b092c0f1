//! # concord-sim
//!
//! A deterministic simulation of a Concord cluster on [turmoil]: 3–5 regions, each a real
//! `concord-server` node ([`host`]) opened with a simulated environment (turmoil's network, a
//! clock skewed per region by up to hours, randomness from the seed, the committer as a task) on a
//! crash-faithful disk under redb ([`disk`]). A seeded workload writes through the node's RESP
//! command path in every region while a seeded chaos schedule partitions links, crashes and
//! restarts nodes, loses disks, restores backups and fails disks ([`run`]). Then faults stop, and
//! the invariants in [`invariants`] are checked: convergence, no acknowledged write lost, no
//! resurrection, causal order, liveness, unique write identities, home-key uniqueness, no
//! anti-entropy repairs. The same seed reproduces the same run exactly.
//!
//! Must not depend on: the wall clock or OS randomness (everything comes from the seed).

pub mod disk;
pub mod history;
pub mod host;
pub mod invariants;
pub mod rng;
pub mod run;

pub use run::{run_seed, Options, Outcome, PlantedBug};
