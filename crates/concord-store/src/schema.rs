//! The on-disk layout: table names, key encodings and format versions.
//!
//! Every integer in a key or a store-owned value is fixed-width big-endian, so byte order is
//! numeric order and range scans over `(origin, seq)` come out sorted. The layout does not rely on
//! redb's own integer encoding. Values produced by concord-core carry the core's version byte
//! (`KeyState`, `Op`, `ConflictRecord`); the two values the core has no codec for
//! (`EngineMeta`, peer `VersionVector`s) get a version byte of this crate.
//!
//! | table          | key                         | value                                  |
//! |----------------|-----------------------------|----------------------------------------|
//! | `meta`         | `&str` name                 | see `META_*` below                     |
//! | `key_ctx`      | key bytes                   | a key with set members or hash fields: version byte 1 ++ postcard VersionVector (its slots are `key_slots` rows); any other key: version byte 2 ++ postcard `KeyState` (the whole key, no `key_slots` rows) |
//! | `key_slots`    | key len u32 BE ++ key ++ version byte ++ postcard `Slot` | version byte ++ postcard entries (dot → entry) |
//! | `states`       | key bytes                   | `KeyState::encode()` (schema 1 only; migrated) |
//! | `oplog`        | origin u32 BE ++ seq u64 BE | `Op::encode()`                         |
//! | `log_floor`    | origin u32 BE               | highest truncated seq, u64 BE          |
//! | `conflicts`    | log sequence u64 BE         | `ConflictRecord::encode()`             |
//! | `conflict_ids` | record id u64 BE            | its log sequence, u64 BE               |
//! | `peer_vectors` | region u32 BE               | version byte ++ postcard VersionVector |
//!
//! Changing any of this means bumping [`SCHEMA_VERSION`], writing a migration, and keeping the old
//! fixture tests (`tests/fixtures/v1.redb`, `v2.redb`) passing.

use redb::TableDefinition;

/// The layout version stored under [`META_SCHEMA_VERSION`].
/// Schema 2 stores a key's state as one row per slot (a set member, a hash field, the string
/// value…) plus its causal context, so a write to a big set or hash rewrites only what it changed.
/// Schema 3 keeps schema 2's rows for keys with set members or hash fields, and stores every
/// other key (strings, counters: a few small slots) whole in its `key_ctx` row: one row per
/// write instead of a context row and a slot row.
/// Schemas 1 (one row per key, `states`) and 2 are migrated on open.
pub const SCHEMA_VERSION: u32 = 4;

/// Version byte of a stored key context and of a slot row's key and value.
pub const SLOT_FORMAT_VERSION: u8 = 1;
/// Version byte of a `key_ctx` row holding a whole key state (schema 3).
pub const INLINE_STATE_VERSION: u8 = 2;

/// Version byte of the stored `EngineMeta` encoding. 2 adds the settled vector; version 1
/// (without it) is still read, with an empty settled vector.
pub const ENGINE_META_VERSION: u8 = 2;
/// Version byte of a stored peer `VersionVector`.
pub const PEER_VECTOR_VERSION: u8 = 1;

pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub const STATES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("states");
pub const KEY_CTX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key_ctx");
pub const KEY_SLOTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key_slots");

/// The prefix of every `key_slots` row of `key`: its length, u32 BE, then the key.
pub fn slot_prefix(key: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + key.len());
    p.extend_from_slice(&(key.len() as u32).to_be_bytes());
    p.extend_from_slice(key);
    p
}

/// The first byte string after every row with this prefix (for range scans and deletes).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    end.push(0xff);
    // No row key extends a prefix with more than a version byte (1) and a postcard `Slot`, whose
    // first byte is a small variant tag: `prefix ++ [0xff]` is above all of them.
    end
}
/// Schema 4: origins are 64-bit writer ids (DESIGN §8.1). Keys: writer id (8 bytes, big-endian)
/// then seq (8 bytes).
pub const OPLOG: TableDefinition<LogKey, &[u8]> = TableDefinition::new("oplog_w");
/// Per writer id (8 bytes), the highest truncated seq.
pub const LOG_FLOOR: TableDefinition<[u8; 8], [u8; 8]> = TableDefinition::new("log_floor_w");
/// Schemas 1–3: origins were 32-bit region ids. Migrated to [`OPLOG`] / [`LOG_FLOOR`] on open.
pub const OPLOG_V3: TableDefinition<[u8; 12], &[u8]> = TableDefinition::new("oplog");
pub const LOG_FLOOR_V3: TableDefinition<[u8; 4], [u8; 8]> = TableDefinition::new("log_floor");
pub const CONFLICTS: TableDefinition<[u8; 8], &[u8]> = TableDefinition::new("conflicts");
pub const CONFLICT_IDS: TableDefinition<[u8; 8], [u8; 8]> = TableDefinition::new("conflict_ids");
pub const PEER_VECTORS: TableDefinition<[u8; 4], &[u8]> = TableDefinition::new("peer_vectors");

/// `meta` key: [`SCHEMA_VERSION`] as u32 BE.
pub const META_SCHEMA_VERSION: &str = "schema_version";
/// `meta` key: the engine's metadata (applied vector, HLC, local counter).
pub const META_ENGINE: &str = "engine";
/// `meta` key: the next conflict log sequence, u64 BE. Kept here rather than derived from the
/// last record so sequences never repeat, even after retention emptied the log.
pub const META_CONFLICT_NEXT_SEQ: &str = "conflict_next_seq";

/// An op log key: origin u32 BE, then seq u64 BE.
pub type LogKey = [u8; 16];

pub fn log_key(origin: u64, seq: u64) -> LogKey {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&origin.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub fn split_log_key(k: &LogKey) -> (u64, u64) {
    let origin = u64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
    let seq = u64::from_be_bytes(k[8..].try_into().expect("8 bytes"));
    (origin, seq)
}

/// A schema-3 log key: (region id u32, seq).
pub fn split_log_key_v3(k: &[u8; 12]) -> (u64, u64) {
    let origin = u32::from_be_bytes(k[..4].try_into().expect("4 bytes")) as u64;
    let seq = u64::from_be_bytes(k[4..].try_into().expect("8 bytes"));
    (origin, seq)
}

/// Printable form of a binary key for error messages (`\xNN` escapes, capped in length).
pub fn show_key(key: &[u8]) -> String {
    const MAX: usize = 64;
    let mut s: String = key[..key.len().min(MAX)].escape_ascii().to_string();
    if key.len() > MAX {
        s.push_str(&format!("... ({} bytes)", key.len()));
    }
    format!("\"{s}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_numerically_and_round_trip() {
        let pairs = [
            (0, 0),
            (0, 1),
            (0, 255),
            (0, 256),
            (1, 0),
            (1, u64::MAX),
            (256, 2),
            (u32::MAX as u64, 7),
            (u64::MAX, 1),
        ];
        let keys: Vec<LogKey> = pairs.iter().map(|&(o, s)| log_key(o, s)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "byte order must be numeric (origin, seq) order");
        for (&(o, s), k) in pairs.iter().zip(&keys) {
            assert_eq!(split_log_key(k), (o, s));
        }
    }

    #[test]
    fn show_key_escapes_and_caps() {
        assert_eq!(show_key(b"a\x00b"), "\"a\\x00b\"");
        assert!(show_key(&[b'x'; 100]).ends_with("... (100 bytes)\""));
    }
}
