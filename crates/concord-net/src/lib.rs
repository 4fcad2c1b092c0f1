//! # concord-net
//!
//! The peer protocol between regions: the versioned wire messages ([`wire`]), length-delimited
//! framing over any async byte stream ([`frame`]), the authenticated handshake ([`handshake`]),
//! who streams to whom in each topology ([`topology`]), and simulated WAN faults ([`faults`]).
//!
//! Must not depend on: the node, the store or the front ends. It moves ops; what they mean is
//! `concord-core`'s business, and what to do with them is the node's.

pub mod faults;
pub mod frame;
pub mod handshake;
pub mod topology;
pub mod wire;

pub use faults::LinkFaults;
pub use wire::{AaeRequest, Message, PROTOCOL_VERSION};
