//! [`Store`]: the redb database and its operations.

use crate::error::StoreError;
use crate::schema::{self, log_key, show_key, split_log_key};
use bytes::Bytes;
use concord_core::codec::{self, DecodeError};
use concord_core::state::Entries;
use concord_core::{ConflictRecord, EngineMeta, KeyState, Op, Slot, VersionVector};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableError, TableHandle, WriteTransaction};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// How durable a commit is when it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The commit is fsynced before `commit` returns.
    Immediate,
    /// No fsync: a crash may lose the commit (never half of it). It becomes durable with the next
    /// `Immediate` commit or [`Store::sync`]. Call one of those regularly: redb frees pages only
    /// in durable commits, so a long run of `Deferred` commits grows the file.
    Deferred,
}

impl Durability {
    fn to_redb(self) -> redb::Durability {
        match self {
            Durability::Immediate => redb::Durability::Immediate,
            Durability::Deferred => redb::Durability::None,
        }
    }
}

/// Options of [`Store::open_with`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Most conflict records kept; the oldest are deleted beyond it, in the commit that adds more.
    pub conflict_retention: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            conflict_retention: 10_000,
        }
    }
}

/// Some slots of one key, and its context after the change: what a write to a big set or hash
/// needs to store (the rest of the key is unchanged). Only for a key that has set members or hash
/// fields after the change (stored slot by slot, see [`stored_inline`]); a key that had none
/// before (stored whole in one row) must list every slot it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotWrite {
    pub key: Bytes,
    pub ctx: VersionVector,
    /// Each changed slot with its entries now, `None` when the slot is gone.
    pub slots: Vec<(Slot, Option<Entries>)>,
}

/// Everything one group commit writes, in one transaction.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// New whole key states (everything stored for the key is replaced); `None` deletes the key.
    pub states: Vec<(Bytes, Option<KeyState>)>,
    /// Slot-level changes of keys whose other slots are unchanged.
    pub slots: Vec<SlotWrite>,
    /// Keys stored whole in one row (see [`stored_inline`]) before and after the change: that row
    /// is replaced, nothing else is looked at. A key that had set members or hash fields before
    /// goes in `states` instead.
    pub inline: Vec<(Bytes, InlineState)>,
    /// Appended to the op log under `(origin, seq)`; seqs of one origin must increase.
    pub ops: Vec<Op>,
    /// Appended to the conflict log; a record whose `id` is already stored is skipped.
    pub conflicts: Vec<ConflictRecord>,
    /// The engine's metadata after the batch.
    pub meta: Option<EngineMeta>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
            && self.slots.is_empty()
            && self.inline.is_empty()
            && self.ops.is_empty()
            && self.conflicts.is_empty()
            && self.meta.is_none()
    }
}

/// Whether a key state is stored whole in its `key_ctx` row (no set members, hash fields,
/// sorted-set members or list elements: a string, a counter, a HyperLogLog, their expiry — a few
/// slots) rather than one row per slot.
pub fn stored_inline(state: &KeyState) -> bool {
    !state.slots.keys().any(Slot::is_element)
}

/// A key state checked and encoded for its one row: made only by [`InlineState::encode`], so a
/// batch cannot carry a state that fails its check or has members or fields. Encoding straight
/// from the engine's state saves cloning it into the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlineState(Vec<u8>);

impl InlineState {
    pub fn encode(key: &[u8], state: &KeyState) -> Result<InlineState, StoreError> {
        if !stored_inline(state) {
            return Err(StoreError::Invariant(format!(
                "key {} has members or fields: it cannot be stored in one row",
                show_key(key)
            )));
        }
        state
            .check()
            .map_err(|e| StoreError::Invariant(format!("state of key {} fails its check: {e}", show_key(key))))?;
        Ok(InlineState(codec::encode(schema::INLINE_STATE_VERSION, state)))
    }
}

/// Store a whole key state in its form (the caller removed the key's old rows, if any).
fn put_state(
    ctxs: &mut redb::Table<&[u8], &[u8]>,
    rows: &mut redb::Table<&[u8], &[u8]>,
    key: &[u8],
    state: &KeyState,
) -> Result<(), StoreError> {
    if stored_inline(state) {
        ctxs.insert(key, codec::encode(schema::INLINE_STATE_VERSION, state).as_slice())?;
        return Ok(());
    }
    ctxs.insert(key, codec::encode(schema::SLOT_FORMAT_VERSION, &state.ctx).as_slice())?;
    for (slot, entries) in &state.slots {
        rows.insert(
            slot_key(key, slot).as_slice(),
            codec::encode(schema::SLOT_FORMAT_VERSION, entries).as_slice(),
        )?;
    }
    Ok(())
}

/// Remove every `key_slots` row of `key`.
fn remove_rows(rows: &mut redb::Table<&[u8], &[u8]>, key: &[u8]) -> Result<(), StoreError> {
    let prefix = schema::slot_prefix(key);
    let old: Vec<Vec<u8>> = rows
        .range(prefix.as_slice()..schema::prefix_end(&prefix).as_slice())?
        .map(|r| r.map(|(k, _)| k.value().to_vec()))
        .collect::<Result<_, _>>()?;
    for k in old {
        rows.remove(k.as_slice())?;
    }
    Ok(())
}

/// Every key state stored in `ctxs` and `rows` (schema 2 or 3), in key order, checked.
fn read_states(
    ctxs: &impl ReadableTable<&'static [u8], &'static [u8]>,
    rows: &impl ReadableTable<&'static [u8], &'static [u8]>,
) -> Result<BTreeMap<Bytes, (KeyState, bool)>, StoreError> {
    let mut states: BTreeMap<Bytes, (KeyState, bool)> = BTreeMap::new();
    for entry in ctxs.iter()? {
        let (k, v) = entry?;
        let raw = v.value();
        let (state, inline) = if raw.first() == Some(&schema::INLINE_STATE_VERSION) {
            let st: KeyState = codec::decode(schema::INLINE_STATE_VERSION, raw)
                .map_err(|e| corrupt("key_ctx", show_key(k.value()), e))?;
            (st, true)
        } else {
            let ctx: VersionVector = codec::decode(schema::SLOT_FORMAT_VERSION, raw)
                .map_err(|e| corrupt("key_ctx", show_key(k.value()), e))?;
            let st = KeyState {
                ctx,
                slots: BTreeMap::new(),
            };
            (st, false)
        };
        states.insert(Bytes::copy_from_slice(k.value()), (state, inline));
    }
    for entry in rows.iter()? {
        let (k, v) = entry?;
        let raw = k.value();
        let (key, slot) = split_slot_key(raw).map_err(|e| corrupt("key_slots", show_key(raw), e))?;
        let entries: Entries = codec::decode(schema::SLOT_FORMAT_VERSION, v.value())
            .map_err(|e| corrupt("key_slots", show_key(raw), e))?;
        let (state, inline) = states
            .get_mut(key)
            .ok_or_else(|| corrupt("key_slots", show_key(raw), "a slot row without a context row"))?;
        if *inline {
            return Err(corrupt("key_slots", show_key(raw), "a slot row of a key stored whole"));
        }
        state.slots.insert(slot, entries);
    }
    // Invariants are asserted after reading.
    for (k, (st, _)) in &states {
        st.check().map_err(|e| corrupt("key_slots", show_key(k), e))?;
    }
    Ok(states)
}

/// Concord's redb database. `Send + Sync`; redb serialises write transactions, reads run
/// concurrently with a write.
pub struct Store {
    db: Database,
    /// The file, or `None` for a store on a [`redb::StorageBackend`] of the caller's.
    path: Option<PathBuf>,
    options: Options,
    /// `Some(reason)` once a write failed; every later write is refused.
    poisoned: Mutex<Option<String>>,
    /// Test hook: fail the next write just before its redb commit.
    fail_next_write: AtomicBool,
}

// The node shares one store between its threads.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Store>();
};

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Every table of the schema, opened (created) by `open` so readers never meet a missing table.
fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(schema::META)?;
    tx.open_table(schema::KEY_CTX)?;
    tx.open_table(schema::KEY_SLOTS)?;
    tx.open_table(schema::OPLOG)?;
    tx.open_table(schema::LOG_FLOOR)?;
    tx.open_table(schema::CONFLICTS)?;
    tx.open_table(schema::CONFLICT_IDS)?;
    tx.open_table(schema::PEER_VECTORS)?;
    Ok(())
}

/// A `key_slots` row key: the key's prefix, then the slot.
fn slot_key(key: &[u8], slot: &Slot) -> Vec<u8> {
    let mut k = schema::slot_prefix(key);
    k.extend_from_slice(&codec::encode(schema::SLOT_FORMAT_VERSION, slot));
    k
}

fn split_slot_key(raw: &[u8]) -> Result<(&[u8], Slot), String> {
    let len_bytes: [u8; 4] = raw
        .get(..4)
        .ok_or("row key shorter than its length")?
        .try_into()
        .expect("4 bytes");
    let len = u32::from_be_bytes(len_bytes) as usize;
    let key = raw.get(4..4 + len).ok_or("row key shorter than its key")?;
    let slot = codec::decode(schema::SLOT_FORMAT_VERSION, &raw[4 + len..]).map_err(|e| e.to_string())?;
    Ok((key, slot))
}

/// Schema 1 → 3: each `states` row becomes the key's rows of schema 3, in one transaction (a
/// crash leaves schema 1, migrated again on the next open).
fn migrate_v1(db: &Database) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    create_tables(&tx)?;
    {
        let old = tx.open_table(schema::STATES)?;
        let mut ctxs = tx.open_table(schema::KEY_CTX)?;
        let mut rows = tx.open_table(schema::KEY_SLOTS)?;
        for entry in old.iter()? {
            let (k, v) = entry?;
            let state = KeyState::decode(v.value()).map_err(|e| corrupt("states", show_key(k.value()), e))?;
            put_state(&mut ctxs, &mut rows, k.value(), &state)?;
        }
    }
    tx.delete_table(schema::STATES)?;
    migrate_log_v3(&tx)?;
    set_schema_version(&tx)?;
    tx.commit()?;
    Ok(())
}

/// Schema 3 → 4: the op log and its floors move to 64-bit origins (writer ids, DESIGN §8.1);
/// the region ids of schema 3 are the writer ids of incarnation 0. Part of the caller's
/// transaction: a crash leaves the old schema, migrated again on the next open.
fn migrate_log_v3(tx: &WriteTransaction) -> Result<(), StoreError> {
    let exists = |name: &str| -> Result<bool, StoreError> { Ok(tx.list_tables()?.any(|t| t.name() == name)) };
    let mut log = tx.open_table(schema::OPLOG)?;
    let mut floors = tx.open_table(schema::LOG_FLOOR)?;
    if exists("oplog")? {
        let old = tx.open_table(schema::OPLOG_V3)?;
        for entry in old.iter()? {
            let (k, v) = entry?;
            let (origin, seq) = schema::split_log_key_v3(&k.value());
            log.insert(log_key(origin, seq), v.value())?;
        }
        drop(old);
        tx.delete_table(schema::OPLOG_V3)?;
    }
    if exists("log_floor")? {
        let old = tx.open_table(schema::LOG_FLOOR_V3)?;
        for entry in old.iter()? {
            let (k, v) = entry?;
            floors.insert((u32::from_be_bytes(k.value()) as u64).to_be_bytes(), v.value())?;
        }
        drop(old);
        tx.delete_table(schema::LOG_FLOOR_V3)?;
    }
    Ok(())
}

fn migrate_v3(db: &Database) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    migrate_log_v3(&tx)?;
    set_schema_version(&tx)?;
    tx.commit()?;
    Ok(())
}

/// Schema 2 → 3: keys without set members or hash fields move from a context row and slot rows
/// to one whole row, in one transaction (a crash leaves schema 2, migrated again on the next open).
fn migrate_v2(db: &Database) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    {
        let mut ctxs = tx.open_table(schema::KEY_CTX)?;
        let mut rows = tx.open_table(schema::KEY_SLOTS)?;
        let states = read_states(&ctxs, &rows)?;
        for (key, (state, _)) in states {
            if stored_inline(&state) {
                remove_rows(&mut rows, &key)?;
                put_state(&mut ctxs, &mut rows, &key, &state)?;
            }
        }
    }
    migrate_log_v3(&tx)?;
    set_schema_version(&tx)?;
    tx.commit()?;
    Ok(())
}

fn set_schema_version(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(schema::META)?.insert(
        schema::META_SCHEMA_VERSION,
        schema::SCHEMA_VERSION.to_be_bytes().as_slice(),
    )?;
    Ok(())
}

fn corrupt(table: &'static str, key: String, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table,
        key,
        reason: reason.to_string(),
    }
}

fn be_u64(table: &'static str, key: String, bytes: &[u8]) -> Result<u64, StoreError> {
    let raw: [u8; 8] = bytes
        .try_into()
        .map_err(|_| corrupt(table, key, format!("expected 8 bytes, found {}", bytes.len())))?;
    Ok(u64::from_be_bytes(raw))
}

/// A stored vector never holds a zero entry (`VersionVector` keeps equal vectors byte-equal by
/// never storing zeros); a zero means the bytes were not written by us.
fn check_vector(vv: &VersionVector) -> Result<(), DecodeError> {
    if vv.iter().any(|(_, c)| c == 0) {
        return Err(DecodeError::Invalid("zero entry in version vector"));
    }
    Ok(())
}

fn decode_meta(bytes: &[u8]) -> Result<EngineMeta, DecodeError> {
    /// Version 1: before the settled vector.
    #[derive(serde::Deserialize)]
    struct MetaV1 {
        applied: concord_core::VersionVector,
        hlc: concord_core::Hlc,
        local_counter: u64,
    }
    let meta = if bytes.first() == Some(&1) {
        let v1: MetaV1 = codec::decode(1, bytes)?;
        EngineMeta {
            applied: v1.applied,
            hlc: v1.hlc,
            local_counter: v1.local_counter,
            settled: Default::default(),
        }
    } else {
        codec::decode(schema::ENGINE_META_VERSION, bytes)?
    };
    check_vector(&meta.applied)?;
    check_vector(&meta.settled)?;
    Ok(meta)
}

fn decode_vector(bytes: &[u8]) -> Result<VersionVector, DecodeError> {
    let vv: VersionVector = codec::decode(schema::PEER_VECTOR_VERSION, bytes)?;
    check_vector(&vv)?;
    Ok(vv)
}

/// Decode an op log entry and check it is stored under its own `(origin, seq)`.
fn decode_op(key: &schema::LogKey, bytes: &[u8]) -> Result<Op, StoreError> {
    let (origin, seq) = split_log_key(key);
    let show = || format!("{origin}:{seq}");
    let op = Op::decode(bytes).map_err(|e| corrupt("oplog", show(), e))?;
    if (op.origin, op.seq) != (origin, seq) {
        return Err(corrupt("oplog", show(), format!("holds op {}:{}", op.origin, op.seq)));
    }
    Ok(op)
}

fn decode_conflict(seq_key: &[u8; 8], bytes: &[u8]) -> Result<ConflictRecord, StoreError> {
    ConflictRecord::decode(bytes).map_err(|e| corrupt("conflicts", u64::from_be_bytes(*seq_key).to_string(), e))
}

impl Store {
    /// Open (or create) the store at `path` with default [`Options`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, Options::default())
    }

    /// Open (or create) the store at `path`. Creates the tables and the schema version on a new
    /// file; refuses a file whose schema is newer (or older with no migration) than this build's.
    pub fn open_with(path: &Path, options: Options) -> Result<Store, StoreError> {
        // The v3 file format is the one redb 3 reads, so a later redb upgrade needs no file upgrade.
        let db = Database::builder().create_with_file_format_v3(true).create(path)?;
        Store::open_database(db, Some(path.to_path_buf()), options)
    }

    /// Open (or create) a store on `backend` instead of a file: what redb stores is read and
    /// written through it (tests use it to inject I/O failures and crashes). Otherwise exactly
    /// [`Store::open_with`].
    pub fn open_backend(backend: impl redb::StorageBackend, options: Options) -> Result<Store, StoreError> {
        let db = Database::builder()
            .create_with_file_format_v3(true)
            .create_with_backend(backend)?;
        Store::open_database(db, None, options)
    }

    /// The common part of opening: check (or create) the schema, migrate an older one.
    fn open_database(db: Database, path: Option<PathBuf>, options: Options) -> Result<Store, StoreError> {
        // Check the version before creating anything, so a newer file is left untouched.
        let fresh = {
            let rx = db.begin_read()?;
            match rx.open_table(schema::META) {
                Ok(meta) => match meta.get(schema::META_SCHEMA_VERSION)? {
                    Some(v) => {
                        let raw: [u8; 4] = v.value().try_into().map_err(|_| {
                            corrupt(
                                "meta",
                                schema::META_SCHEMA_VERSION.into(),
                                "schema version is not 4 bytes",
                            )
                        })?;
                        let found = u32::from_be_bytes(raw);
                        let supported = schema::SCHEMA_VERSION;
                        if found > supported {
                            return Err(StoreError::SchemaTooNew { found, supported });
                        }
                        if (1..=3).contains(&found) {
                            drop(meta);
                            drop(rx);
                            match found {
                                1 => migrate_v1(&db)?,
                                2 => migrate_v2(&db)?,
                                _ => migrate_v3(&db)?,
                            }
                            return Ok(Store {
                                db,
                                path,
                                options,
                                poisoned: Mutex::new(None),
                                fail_next_write: AtomicBool::new(false),
                            });
                        }
                        if found < supported {
                            return Err(StoreError::SchemaUnsupported { found, supported });
                        }
                        false
                    }
                    None => return Err(corrupt("meta", schema::META_SCHEMA_VERSION.into(), "missing")),
                },
                Err(TableError::TableDoesNotExist(_)) => {
                    if let Some(t) = rx.list_tables()?.next() {
                        let reason = format!("no schema version but table `{}` exists: not a Concord store", t.name());
                        return Err(corrupt("meta", schema::META_SCHEMA_VERSION.into(), reason));
                    }
                    true
                }
                Err(e) => return Err(e.into()),
            }
        };
        if fresh {
            let tx = db.begin_write()?;
            create_tables(&tx)?;
            tx.open_table(schema::META)?.insert(
                schema::META_SCHEMA_VERSION,
                schema::SCHEMA_VERSION.to_be_bytes().as_slice(),
            )?;
            tx.commit()?;
        }
        Ok(Store {
            db,
            path,
            options,
            poisoned: Mutex::new(None),
            fail_next_write: AtomicBool::new(false),
        })
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Why the store refuses writes, if it does.
    pub fn poison_reason(&self) -> Option<String> {
        self.poisoned.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Mark the store poisoned, as a failed write would.
    #[doc(hidden)]
    pub fn poison_for_test(&self, reason: &str) {
        self.poison(reason.to_string());
    }

    /// Make the next write fail (with an injected I/O error) just before its redb commit, as a
    /// failed fsync would.
    #[doc(hidden)]
    pub fn fail_next_write_for_test(&self) {
        self.fail_next_write.store(true, Ordering::SeqCst);
    }

    fn poison(&self, reason: String) {
        let mut p = self.poisoned.lock().unwrap_or_else(|p| p.into_inner());
        // Keep the first reason: later failures are usually consequences of it.
        p.get_or_insert(reason);
    }

    /// Run one write: refused when poisoned; poisons the store when it fails.
    fn write<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        if let Some(reason) = self.poison_reason() {
            return Err(StoreError::Poisoned(reason));
        }
        let result = f();
        if let Err(e) = &result {
            self.poison(e.to_string());
        }
        result
    }

    fn begin_write(&self, durability: Durability) -> Result<WriteTransaction, StoreError> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(durability.to_redb());
        Ok(tx)
    }

    fn finish(&self, tx: WriteTransaction) -> Result<(), StoreError> {
        if self.fail_next_write.swap(false, Ordering::SeqCst) {
            tx.abort()?;
            let injected = redb::Error::Io(std::io::Error::other("injected write failure"));
            return Err(injected.into());
        }
        tx.commit()?;
        Ok(())
    }

    /// Everything needed to restart an engine: its metadata (default on a new store) and every key
    /// state, in key order. A value that does not decode is a [`StoreError::Corrupt`] naming it.
    pub fn load(&self) -> Result<(EngineMeta, Vec<(Bytes, KeyState)>), StoreError> {
        let rx = self.db.begin_read()?;
        let meta = match rx.open_table(schema::META)?.get(schema::META_ENGINE)? {
            Some(v) => decode_meta(v.value()).map_err(|e| corrupt("meta", schema::META_ENGINE.into(), e))?,
            None => EngineMeta::default(),
        };
        let states = read_states(&rx.open_table(schema::KEY_CTX)?, &rx.open_table(schema::KEY_SLOTS)?)?;
        let states: Vec<(Bytes, KeyState)> = states.into_iter().map(|(k, (st, _))| (k, st)).collect();
        Ok((meta, states))
    }

    /// Write `batch` in one transaction. Rejects (writing nothing) a state failing
    /// `KeyState::check`, an op with seq 0, or an op whose seq is not after the last seq logged
    /// (or truncated) for its origin. Conflicts already stored (same `id`) are skipped, and the
    /// oldest are deleted beyond `conflict_retention` (a corrupt record met while deleting is a
    /// [`StoreError::Corrupt`]). Any error poisons the store.
    pub fn commit(&self, batch: &Batch, durability: Durability) -> Result<(), StoreError> {
        self.write(|| {
            let tx = self.begin_write(durability)?;
            self.write_batch(&tx, batch)?;
            self.finish(tx)
        })
    }

    fn write_batch(&self, tx: &WriteTransaction, batch: &Batch) -> Result<(), StoreError> {
        {
            let mut ctxs = tx.open_table(schema::KEY_CTX)?;
            let mut rows = tx.open_table(schema::KEY_SLOTS)?;
            for (key, state) in &batch.states {
                if let Some(state) = state {
                    // Assert before writing: a state we could not load back must not be stored.
                    state.check().map_err(|e| {
                        StoreError::Invariant(format!("state of key {} fails its check: {e}", show_key(key)))
                    })?;
                }
                // Replace everything stored for the key.
                remove_rows(&mut rows, key)?;
                match state {
                    Some(state) => put_state(&mut ctxs, &mut rows, key, state)?,
                    None => {
                        ctxs.remove(key.as_ref())?;
                    }
                }
            }
            for (key, row) in &batch.inline {
                ctxs.insert(key.as_ref(), row.0.as_slice())?;
            }
            for w in &batch.slots {
                let changed = KeyState {
                    ctx: w.ctx.clone(),
                    slots: w
                        .slots
                        .iter()
                        .filter_map(|(s, e)| e.clone().map(|e| (s.clone(), e)))
                        .collect(),
                };
                changed.check().map_err(|e| {
                    StoreError::Invariant(format!("slots of key {} fail their check: {e}", show_key(&w.key)))
                })?;
                ctxs.insert(
                    w.key.as_ref(),
                    codec::encode(schema::SLOT_FORMAT_VERSION, &w.ctx).as_slice(),
                )?;
                for (slot, entries) in &w.slots {
                    let row = slot_key(&w.key, slot);
                    match entries {
                        Some(entries) => {
                            rows.insert(
                                row.as_slice(),
                                codec::encode(schema::SLOT_FORMAT_VERSION, entries).as_slice(),
                            )?;
                        }
                        None => {
                            rows.remove(row.as_slice())?;
                        }
                    }
                }
            }
        }
        if !batch.ops.is_empty() {
            let mut log = tx.open_table(schema::OPLOG)?;
            let floors = tx.open_table(schema::LOG_FLOOR)?;
            // Highest seq per origin: what is logged (or was truncated), then what this batch adds.
            let mut last: BTreeMap<u64, u64> = BTreeMap::new();
            for op in &batch.ops {
                let prev = match last.get(&op.origin) {
                    Some(&s) => s,
                    None => last_logged(&log, &floors, op.origin)?,
                };
                if op.seq == 0 || op.seq <= prev {
                    return Err(StoreError::Invariant(format!(
                        "op {}:{} is not after seq {prev} already logged for origin {}",
                        op.origin, op.seq, op.origin
                    )));
                }
                log.insert(log_key(op.origin, op.seq), op.encode().as_slice())?;
                last.insert(op.origin, op.seq);
            }
        }
        if !batch.conflicts.is_empty() {
            self.append_conflicts(tx, &batch.conflicts)?;
        }
        if let Some(meta) = &batch.meta {
            let bytes = codec::encode(schema::ENGINE_META_VERSION, meta);
            tx.open_table(schema::META)?
                .insert(schema::META_ENGINE, bytes.as_slice())?;
        }
        Ok(())
    }

    fn append_conflicts(&self, tx: &WriteTransaction, records: &[ConflictRecord]) -> Result<(), StoreError> {
        let mut meta = tx.open_table(schema::META)?;
        let mut log = tx.open_table(schema::CONFLICTS)?;
        let mut ids = tx.open_table(schema::CONFLICT_IDS)?;
        let mut next = match meta.get(schema::META_CONFLICT_NEXT_SEQ)? {
            Some(v) => be_u64("meta", schema::META_CONFLICT_NEXT_SEQ.into(), v.value())?,
            None => 1,
        };
        for record in records {
            let id = record.id.to_be_bytes();
            if ids.get(id)?.is_some() {
                continue; // The same conflict, detected again (here or by another region).
            }
            let seq = next.to_be_bytes();
            log.insert(seq, record.encode().as_slice())?;
            ids.insert(id, seq)?;
            next += 1;
        }
        meta.insert(schema::META_CONFLICT_NEXT_SEQ, next.to_be_bytes().as_slice())?;

        let retention = self.options.conflict_retention as u64;
        let mut excess = log.len()?.saturating_sub(retention);
        while excess > 0 {
            let Some((k, v)) = log.pop_first()? else { break };
            let seq = k.value();
            let record = decode_conflict(&seq, v.value())?;
            let id = record.id.to_be_bytes();
            // The index points at the record it de-duplicates; drop it only if it is this one.
            let indexes_this = ids.get(id)?.is_some_and(|s| s.value() == seq);
            if indexes_this {
                ids.remove(id)?;
            }
            excess -= 1;
        }
        Ok(())
    }

    /// An empty fsynced commit: makes every earlier `Deferred` commit durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.write(|| {
            let tx = self.begin_write(Durability::Immediate)?;
            self.finish(tx)
        })
    }

    /// Up to `limit` ops of `origin` with seq > `after_seq`, in seq order. Returns
    /// [`StoreError::Truncated`] when the log no longer holds the op right after `after_seq`
    /// (the peer needs a full-state transfer), never a list with a gap at its start.
    pub fn ops_since(&self, origin: u64, after_seq: u64, limit: usize) -> Result<Vec<Op>, StoreError> {
        let Some(from) = after_seq.checked_add(1) else {
            return Ok(Vec::new());
        };
        let rx = self.db.begin_read()?;
        let log = rx.open_table(schema::OPLOG)?;
        let floors = rx.open_table(schema::LOG_FLOOR)?;
        if let Some((first_kept, _)) = origin_bounds(&log, &floors, origin)? {
            if from < first_kept {
                return Err(StoreError::Truncated {
                    origin,
                    after_seq,
                    first_kept,
                });
            }
        }
        let mut out = Vec::new();
        for entry in log
            .range(log_key(origin, from)..=log_key(origin, u64::MAX))?
            .take(limit)
        {
            let (k, v) = entry?;
            out.push(decode_op(&k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Per origin, `(first seq kept, last seq)` of the op log. An origin whose entries were all
    /// truncated reports `(t + 1, t)` where `t` is the highest truncated seq: empty, but telling a
    /// peer behind `t` that it needs a full-state transfer.
    pub fn log_bounds(&self) -> Result<BTreeMap<u64, (u64, u64)>, StoreError> {
        let rx = self.db.begin_read()?;
        let log = rx.open_table(schema::OPLOG)?;
        let floors = rx.open_table(schema::LOG_FLOOR)?;
        let mut origins: Vec<u64> = Vec::new();
        // Skip from origin to origin instead of scanning every entry.
        let mut cursor = Some(0u64);
        while let Some(start) = cursor {
            let Some(entry) = log.range(log_key(start, 0)..)?.next() else {
                break;
            };
            let (origin, _) = split_log_key(&entry?.0.value());
            origins.push(origin);
            cursor = origin.checked_add(1);
        }
        for entry in floors.iter()? {
            origins.push(u64::from_be_bytes(entry?.0.value()));
        }
        origins.sort_unstable();
        origins.dedup();
        let mut out = BTreeMap::new();
        for origin in origins {
            if let Some(bounds) = origin_bounds(&log, &floors, origin)? {
                out.insert(origin, bounds);
            }
        }
        Ok(out)
    }

    /// Delete the op log entries of `origin` with seq <= `up_to_seq`; returns how many. Later ops
    /// of `origin` must still come after every truncated seq. Written like a `Deferred` commit: a
    /// crash may bring the entries back, which is harmless.
    /// After a full-state transfer covering `origin` up to `up_to_seq`: the log has a gap below
    /// it (those ops came as key states, not ops), so mark it truncated there. A downstream behind
    /// `up_to_seq` then gets a full-state transfer from this node instead of a stream with a hole
    /// (which it would wait on forever). Unlike [`Store::truncate_log`] the floor moves even where
    /// nothing was logged: this node has applied everything up to `up_to_seq`.
    pub fn mark_transferred(&self, origin: u64, up_to_seq: u64) -> Result<(), StoreError> {
        self.write(|| {
            let tx = self.begin_write(Durability::Deferred)?;
            {
                let mut log = tx.open_table(schema::OPLOG)?;
                let mut floors = tx.open_table(schema::LOG_FLOOR)?;
                log.retain_in(log_key(origin, 0)..=log_key(origin, up_to_seq), |_, _| false)?;
                let old = match floors.get(origin.to_be_bytes())? {
                    Some(v) => u64::from_be_bytes(v.value()),
                    None => 0,
                };
                if up_to_seq > old {
                    floors.insert(origin.to_be_bytes(), up_to_seq.to_be_bytes())?;
                }
            }
            self.finish(tx)
        })
    }

    pub fn truncate_log(&self, origin: u64, up_to_seq: u64) -> Result<u64, StoreError> {
        self.write(|| {
            let tx = self.begin_write(Durability::Deferred)?;
            let mut deleted = 0u64;
            {
                let mut log = tx.open_table(schema::OPLOG)?;
                let mut floors = tx.open_table(schema::LOG_FLOOR)?;
                let range = log_key(origin, 0)..=log_key(origin, up_to_seq);
                let last_deleted = log
                    .range(range.clone())?
                    .next_back()
                    .transpose()?
                    .map(|(k, _)| split_log_key(&k.value()).1);
                log.retain_in(range, |_, _| {
                    deleted += 1;
                    false
                })?;
                // The floor only moves to a seq that was logged: truncating past the end of the log
                // must not make later, never-seen ops look like duplicates.
                if let Some(seq) = last_deleted {
                    let old = match floors.get(origin.to_be_bytes())? {
                        Some(v) => u64::from_be_bytes(v.value()),
                        None => 0,
                    };
                    if seq > old {
                        floors.insert(origin.to_be_bytes(), seq.to_be_bytes())?;
                    }
                }
            }
            self.finish(tx)?;
            Ok(deleted)
        })
    }

    /// Up to `limit` conflict records, newest first.
    pub fn conflicts(&self, limit: usize) -> Result<Vec<ConflictRecord>, StoreError> {
        let rx = self.db.begin_read()?;
        let log = rx.open_table(schema::CONFLICTS)?;
        let mut out = Vec::new();
        for entry in log.iter()?.rev().take(limit) {
            let (k, v) = entry?;
            out.push(decode_conflict(&k.value(), v.value())?);
        }
        Ok(out)
    }

    /// How many conflict records are kept (at most `conflict_retention` after any commit).
    pub fn conflict_count(&self) -> Result<u64, StoreError> {
        let rx = self.db.begin_read()?;
        Ok(rx.open_table(schema::CONFLICTS)?.len()?)
    }

    /// Record the applied vector `region` last reported. Written like a `Deferred` commit (the
    /// vectors are re-learned from peers after a crash).
    pub fn put_peer_vector(&self, region: u64, vv: &VersionVector) -> Result<(), StoreError> {
        // Region ids are at most 16 bits (writer ids carry them in their low bits).
        let region =
            u32::try_from(region).map_err(|_| corrupt("peer_vectors", region.to_string(), "not a region id"))?;
        self.write(|| {
            let tx = self.begin_write(Durability::Deferred)?;
            let bytes = codec::encode(schema::PEER_VECTOR_VERSION, vv);
            tx.open_table(schema::PEER_VECTORS)?
                .insert(region.to_be_bytes(), bytes.as_slice())?;
            self.finish(tx)
        })
    }

    /// The applied vector each region last reported.
    pub fn peer_vectors(&self) -> Result<BTreeMap<u64, VersionVector>, StoreError> {
        let rx = self.db.begin_read()?;
        let table = rx.open_table(schema::PEER_VECTORS)?;
        let mut out = BTreeMap::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let region = u32::from_be_bytes(k.value());
            let vv = decode_vector(v.value()).map_err(|e| corrupt("peer_vectors", region.to_string(), e))?;
            out.insert(region as u64, vv);
        }
        Ok(out)
    }

    /// Size of the database file in bytes (0 if it cannot be read).
    pub fn disk_bytes(&self) -> u64 {
        match &self.path {
            Some(path) => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            None => 0,
        }
    }
}

/// The highest seq of `origin` that is logged or was truncated (0 if none).
fn last_logged(
    log: &impl ReadableTable<schema::LogKey, &'static [u8]>,
    floors: &impl ReadableTable<[u8; 8], [u8; 8]>,
    origin: u64,
) -> Result<u64, StoreError> {
    let logged = match log.range(log_key(origin, 0)..=log_key(origin, u64::MAX))?.next_back() {
        Some(entry) => split_log_key(&entry?.0.value()).1,
        None => 0,
    };
    let floor = match floors.get(origin.to_be_bytes())? {
        Some(v) => u64::from_be_bytes(v.value()),
        None => 0,
    };
    Ok(logged.max(floor))
}

/// `(first seq kept, last seq)` of `origin`, or `None` if it was never logged nor truncated.
fn origin_bounds(
    log: &impl ReadableTable<schema::LogKey, &'static [u8]>,
    floors: &impl ReadableTable<[u8; 8], [u8; 8]>,
    origin: u64,
) -> Result<Option<(u64, u64)>, StoreError> {
    let mut range = log.range(log_key(origin, 0)..=log_key(origin, u64::MAX))?;
    let first = range.next().transpose()?.map(|(k, _)| split_log_key(&k.value()).1);
    let last = range.next_back().transpose()?.map(|(k, _)| split_log_key(&k.value()).1);
    let floor = floors.get(origin.to_be_bytes())?.map(|v| u64::from_be_bytes(v.value()));
    Ok(match (first, floor) {
        (Some(first), _) => Some((first, last.unwrap_or(first))),
        (None, Some(floor)) => Some((floor.saturating_add(1), floor)),
        (None, None) => None,
    })
}

#[cfg(test)]
mod meta_tests {
    use super::*;

    /// The settled vector survives a restart (version 2); a version-1 meta (written before it)
    /// still reads, with nothing settled.
    #[test]
    fn meta_keeps_settled_and_reads_version_1() {
        let mut meta = EngineMeta {
            applied: [(7, 40)].into_iter().collect(),
            hlc: concord_core::Hlc(99),
            local_counter: 3,
            settled: [(7, 35)].into_iter().collect(),
        };
        let v2 = codec::encode(schema::ENGINE_META_VERSION, &meta);
        assert_eq!(decode_meta(&v2), Ok(meta.clone()));
        #[derive(serde::Serialize)]
        struct MetaV1<'a> {
            applied: &'a concord_core::VersionVector,
            hlc: concord_core::Hlc,
            local_counter: u64,
        }
        let v1 = codec::encode(
            1,
            &MetaV1 {
                applied: &meta.applied,
                hlc: meta.hlc,
                local_counter: meta.local_counter,
            },
        );
        meta.settled = Default::default();
        assert_eq!(decode_meta(&v1), Ok(meta));
    }
}
