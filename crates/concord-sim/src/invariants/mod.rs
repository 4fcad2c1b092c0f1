//! The properties every run must keep, one file each. Each returns the violations it found.

pub mod atomic_units;
pub mod causal_order;
pub mod convergence;
pub mod home_pops_once;
pub mod home_unique;
pub mod liveness;
pub mod no_lost_writes;
pub mod no_repairs;
pub mod no_resurrection;
pub mod pubsub_order;
pub mod unique_ids;
