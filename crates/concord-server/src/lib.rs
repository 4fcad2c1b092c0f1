//! # concord-server
//!
//! The Concord node: drives the core engine and the store; RESP and HTTP front ends.
//! Front ends talk to the node's service API, never to storage.

pub mod resp;
