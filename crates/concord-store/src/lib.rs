//! # concord-store
//!
//! Concord's durable storage on [redb] (DESIGN.md §5): key states, the op log indexed by
//! `(origin, seq)`, the engine's metadata (applied vector, HLC, local counter), the bounded
//! conflict log, and the applied vectors peers last reported. Everything one engine step produces
//! — new key states, op log entries, conflicts, metadata — is written by [`Store::commit`] in one
//! redb write transaction, so a crash leaves either all of it or none of it. The node does group
//! commit on top: many writes in one [`Batch`], fsynced ([`Durability::Immediate`]) before any of
//! them is acknowledged, or written with [`Durability::Deferred`] and made durable by a later
//! [`Store::sync`].
//!
//! Must not depend on: an async runtime, networking, or any Concord crate other than
//! `concord-core` (whose types it stores as the core's versioned bytes). Calls block on disk I/O;
//! an async caller runs them on a blocking thread.
//!
//! After any failed write the store is *poisoned* and refuses further writes (see [`StoreError`]).
//! The on-disk layout is described in [`schema`].

mod error;
pub mod schema;
mod store;

pub use error::StoreError;
pub use store::{stored_inline, Batch, Durability, InlineState, Options, SlotWrite, Store};
