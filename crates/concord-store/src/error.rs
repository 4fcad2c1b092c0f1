//! The store's error type.
//!
//! Errors fall in two families (STYLE.md, "retry or report" vs "this node must stop"):
//! - [`StoreError::Truncated`] is an ordinary answer: the caller falls back to a full-state transfer.
//! - Everything else raised by a write (`commit`, `sync`, `truncate_log`, `put_peer_vector`) poisons
//!   the store, after which writes return [`StoreError::Poisoned`]: once a write failed, what is on
//!   disk no longer matches what the engine holds in memory, so the node must stop acknowledging
//!   writes rather than guess (redb's `PreviousIo`, fjall's `Poisoned`).

/// An error of the store.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// An earlier write failed; the store refuses every later write. Restart the node (it recovers
    /// from what is durable and catches up from peers).
    #[error("store poisoned by an earlier failure, refusing writes: {0}")]
    Poisoned(String),

    /// A stored value (or key) failed to decode or broke an invariant after decoding.
    #[error("corrupt entry in table `{table}` at key {key}: {reason}")]
    Corrupt {
        table: &'static str,
        key: String,
        reason: String,
    },

    /// The file was written by a newer Concord with a schema this build does not know.
    #[error(
        "database schema version {found} is newer than this build supports ({supported}); \
         run a Concord version that supports it"
    )]
    SchemaTooNew { found: u32, supported: u32 },

    /// The file has an older schema for which no migration exists.
    #[error("database schema version {found} is not supported by this build ({supported}) and no migration exists")]
    SchemaUnsupported { found: u32, supported: u32 },

    /// A write would break a storage invariant (for example an op whose seq is not after the last
    /// one logged for its origin). Nothing was written.
    #[error("invariant violated, batch rejected: {0}")]
    Invariant(String),

    /// The op log of `origin` no longer holds the ops right after `after_seq` (they were truncated,
    /// or this node's log starts later): the asking peer needs a full-state transfer.
    #[error("op log of origin {origin} starts at seq {first_kept}: ops after {after_seq} are gone")]
    Truncated {
        origin: u64,
        after_seq: u64,
        first_kept: u64,
    },

    /// An error of redb (I/O, a corrupt file, the file already open elsewhere, ...). Boxed:
    /// `redb::Error` is large and this type travels in every `Result` of the store.
    #[error("storage: {0}")]
    Storage(Box<redb::Error>),

    /// An I/O error outside redb (for example reading the file size).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

// redb has one error type per operation; they all convert into `redb::Error`. A blanket
// `impl<E: Into<redb::Error>>` would collide with `From<T> for T`, hence the list.
macro_rules! from_redb {
    ($($t:ty),*) => {
        $(impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Storage(Box::new(redb::Error::from(e)))
            }
        })*
    };
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
