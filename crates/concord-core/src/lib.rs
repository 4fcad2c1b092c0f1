//! # concord-core
//!
//! Concord's data model and replication logic as a **sans-I/O** state machine: hybrid logical
//! clocks, dots and version vectors, one causal dot store for every data type (registers with
//! siblings, counters, add-wins sets, hashes, expiry), conflict policies, ops, and the replica
//! [`engine::Engine`] that applies local commands and remote ops with causal delivery.
//!
//! Must not depend on: any other Concord crate, an async runtime, sockets, the system clock or a
//! random number generator. Time is always an argument. That is what lets the deterministic
//! simulation drive it and what lets the property tests prove the merge laws.

pub mod codec;
pub mod command;
pub mod conflict;
pub mod engine;
pub mod geo;
pub mod glob;
pub mod hlc;
pub mod hll;
pub mod keymap;
pub mod merkle;
pub mod op;
pub mod policy;
pub mod position;
pub mod state;
pub mod version;
pub mod zcommand;

pub use command::{
    BitFieldOp, BitOp, BitOverflow, BitType, CommandError, Deadline, ExpireCondition, LcsReply, ListEnd, ObjectField,
    Reply, Request, SetCondition, SetExpiry, SetOp,
};
pub use conflict::{ConflictKind, ConflictRecord};
pub use engine::{
    Engine, EngineConfig, EngineMeta, KeyView, Output, PlantedBug, Received, Resolver, SiblingView, Touched, Unit,
    MAX_UNIT_BYTES, MAX_UNIT_OPS,
};
pub use hlc::{Hlc, HlcClock};
pub use op::{Delta, Op};
pub use policy::{AckLevel, Home, Policy, PolicySet, Strategy};
pub use state::{KeyState, Kind, Payload, Position, Slot};
pub use version::{region_of, writer_id, Dot, ReplicaId, VersionVector, MAX_REGION_ID};
pub use zcommand::{
    Aggregate, GeoFrom, GeoSearch, GeoShape, HllRequest, LexBound, ScoreBound, ZAddFlags, ZCombineOp, ZRangeBy,
    ZsetRequest,
};
