//! Storage faults below redb: a [`redb::StorageBackend`] that fails the Nth page write or fsync,
//! or dies at the Nth write (a crash in the middle of a commit), and makes crash images that keep
//! only what was fsynced plus an arbitrary subset of the unsynced page writes, some of them torn
//! (redb's own crash tests are the model). The store must refuse every write after a failed one,
//! and a crash image must reopen to a state a commit left: never older than the last durable
//! commit, never torn.

use super::{meta, op};
use bytes::Bytes;
use concord_core::{KeyState, Op};
use concord_store::{Batch, Durability, Options, Store, StoreError};
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct DiskState {
    /// What reads see: every write so far.
    data: Vec<u8>,
    /// The bytes as of the last successful fsync.
    synced: Vec<u8>,
    /// Page writes since then, in order: `(offset, bytes)`.
    pending: Vec<(u64, Vec<u8>)>,
    /// Fail the write after this many more succeed (`Some(0)`: the next one).
    fail_write_in: Option<u64>,
    /// Fail the fsync after this many more succeed.
    fail_sync_in: Option<u64>,
    /// Die (every later call fails: the machine lost power) at the write after this many more.
    die_in: Option<u64>,
    dead: bool,
    /// Page writes made.
    writes: u64,
}

/// The shared disk under a [`FaultyBackend`]; the test keeps a handle to steer faults and crash.
#[derive(Clone, Debug, Default)]
struct Disk(Arc<Mutex<DiskState>>);

fn countdown(n: &mut Option<u64>) -> bool {
    match n {
        Some(0) => {
            *n = None;
            true
        }
        Some(k) => {
            *k -= 1;
            false
        }
        None => false,
    }
}

fn dead() -> io::Error {
    io::Error::other("disk gone (crashed)")
}

impl Disk {
    fn state(&self) -> std::sync::MutexGuard<'_, DiskState> {
        self.0.lock().unwrap()
    }

    /// Power loss now: the old database can no longer touch the disk (not even to mark a clean
    /// shutdown when dropped). Returns the disk as it is found after the reboot: the synced
    /// bytes plus, from the unsynced page writes in order, each one dropped, applied whole or
    /// torn (a prefix of 512-byte sectors), as `rng` decides. Length changes are durable at once,
    /// as redb assumes (its own failing backends apply `set_len` directly, and it asserts on open
    /// that the file is at least as long as the layout its header records).
    fn crash(&self, rng: &mut Rng) -> Disk {
        let mut st = self.state();
        st.dead = true;
        let mut image = st.synced.clone();
        for (offset, bytes) in &st.pending {
            let keep = match rng.below(4) {
                0 => 0,
                1 => (rng.below(bytes.len() as u64 / 512 + 1) * 512) as usize,
                _ => bytes.len(),
            };
            put(&mut image, *offset, &bytes[..keep]);
        }
        Disk(Arc::new(Mutex::new(DiskState {
            data: image.clone(),
            synced: image,
            ..DiskState::default()
        })))
    }
}

/// Write `bytes` at `offset` of `image`, within its length (redb sets the length first).
fn put(image: &mut [u8], offset: u64, bytes: &[u8]) {
    let start = (offset as usize).min(image.len());
    let end = (offset as usize + bytes.len()).min(image.len());
    image[start..end].copy_from_slice(&bytes[..end - start]);
}

#[derive(Debug)]
struct FaultyBackend(Disk);

impl redb::StorageBackend for FaultyBackend {
    fn len(&self) -> Result<u64, io::Error> {
        let st = self.0.state();
        if st.dead {
            return Err(dead());
        }
        Ok(st.data.len() as u64)
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, io::Error> {
        let st = self.0.state();
        if st.dead {
            return Err(dead());
        }
        let end = offset as usize + len;
        if end > st.data.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"));
        }
        Ok(st.data[offset as usize..end].to_vec())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut st = self.0.state();
        if st.dead {
            return Err(dead());
        }
        st.data.resize(len as usize, 0);
        st.synced.resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> Result<(), io::Error> {
        let mut st = self.0.state();
        if st.dead {
            return Err(dead());
        }
        if countdown(&mut st.fail_sync_in) {
            // What a failed fsync leaves is unknown (the pages may be written or dropped): the
            // writes stay pending, so a crash image may or may not hold them.
            return Err(io::Error::other("injected fsync failure"));
        }
        // Replay the pending writes on the synced image (cheaper than copying the whole disk).
        let pending = std::mem::take(&mut st.pending);
        for (offset, bytes) in pending {
            put(&mut st.synced, offset, &bytes);
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut st = self.0.state();
        if st.dead {
            return Err(dead());
        }
        if countdown(&mut st.die_in) {
            st.dead = true;
            return Err(dead());
        }
        if countdown(&mut st.fail_write_in) {
            return Err(io::Error::other("injected write failure"));
        }
        let end = offset as usize + data.len();
        if st.data.len() < end {
            st.data.resize(end, 0);
        }
        st.data[offset as usize..end].copy_from_slice(data);
        st.pending.push((offset, data.to_vec()));
        st.writes += 1;
        Ok(())
    }
}

/// xorshift64*, seeded: which faults, where, and what a crash keeps.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545F4914F6CDD1D) % n.max(1)
    }
}

/// What the store should hold after `n` commits of [`Workload`]: the key states, `applied[1]` and
/// the op log.
#[derive(Clone, Debug, PartialEq)]
struct Expected {
    applied: u64,
    states: BTreeMap<Bytes, KeyState>,
}

/// Commit `n` writes op `(1, n)` to key `k{n % 4}` (new state, op log entry, engine metadata),
/// as the node's committer does for one write.
struct Workload {
    model: Expected,
    /// `history[n]`: the expected content after commit n (`history[0]`: empty store).
    history: Vec<Expected>,
    /// Bytes added to each value: big values make redb grow the file in unsynced commits.
    pad: usize,
}

impl Workload {
    fn new() -> Workload {
        let empty = Expected {
            applied: 0,
            states: BTreeMap::new(),
        };
        Workload {
            model: empty.clone(),
            history: vec![empty],
            pad: 0,
        }
    }

    fn next_batch(&mut self) -> Batch {
        let n = self.model.applied + 1;
        let key = format!("k{}", n % 4);
        let op: Op = op(1, n, &key, &format!("value-{n}-{}", "x".repeat(self.pad)));
        let state = self.model.states.entry(Bytes::from(key.clone())).or_default();
        state.apply(op.dot(), op.hlc, &op.delta);
        let batch = Batch {
            states: vec![(Bytes::from(key), Some(state.clone()))],
            ops: vec![op],
            meta: Some(meta(&[(1, n)], n << 16, 0)),
            ..Batch::default()
        };
        self.model.applied = n;
        self.history.push(self.model.clone());
        batch
    }
}

/// What the reopened store holds, checked for internal consistency on the way (every state
/// passes its check on load; the op log holds exactly the ops up to `applied`).
fn read_back(store: &Store) -> Expected {
    let (meta, states) = store.load().expect("a crash image loads with every check passing");
    let applied = meta.applied.get(1);
    let logged: Vec<u64> = store
        .ops_since(1, 0, usize::MAX)
        .expect("op log readable")
        .iter()
        .map(|o| o.seq)
        .collect();
    assert_eq!(
        logged,
        (1..=applied).collect::<Vec<_>>(),
        "op log and applied vector disagree after a crash"
    );
    Expected {
        applied,
        states: states.into_iter().collect(),
    }
}

fn open(disk: &Disk) -> Store {
    Store::open_backend(FaultyBackend(disk.clone()), Options::default()).expect("open on the backend")
}

/// A write that failed below redb poisons the store: that commit and every later write (commit,
/// sync, log truncation, peer vector) is refused with `Poisoned`, naming the first failure;
/// reads still work. Whatever the failure left on disk reopens to a committed state.
fn failure_poisons(fail: impl Fn(&mut DiskState, u64), what: &str) {
    for n in 0..12 {
        let disk = Disk::default();
        let store = open(&disk);
        let mut w = Workload::new();
        for _ in 0..3 {
            store.commit(&w.next_batch(), Durability::Immediate).unwrap();
        }
        fail(&mut disk.state(), n);
        let mut failed_at = None;
        for _ in 0..6 {
            let durability = if w.model.applied.is_multiple_of(2) {
                Durability::Immediate
            } else {
                Durability::Deferred
            };
            if let Err(e) = store.commit(&w.next_batch(), durability) {
                assert!(
                    !matches!(e, StoreError::Poisoned(_)),
                    "{what} {n}: first failure is the I/O error"
                );
                failed_at = Some(w.model.applied);
                break;
            }
        }
        let Some(failed_at) = failed_at else {
            continue; // the commits did not reach the Nth write/fsync
        };
        let reason = store
            .poison_reason()
            .unwrap_or_else(|| panic!("{what} {n}: not poisoned"));
        assert!(reason.contains("injected"), "{what} {n}: poison reason {reason:?}");
        let refused = [
            store.commit(&w.next_batch(), Durability::Immediate).err(),
            store.sync().err(),
            store.truncate_log(1, 1).err(),
            store.put_peer_vector(2, &[(1, 1)].into_iter().collect()).err(),
        ];
        for (i, e) in refused.into_iter().enumerate() {
            assert!(
                matches!(e, Some(StoreError::Poisoned(ref r)) if r.contains("injected")),
                "{what} {n}: write {i} after the failure was not refused as poisoned: {e:?}"
            );
        }
        assert!(store.load().is_ok(), "{what} {n}: reads still work on a poisoned store");
        // Everything before the failed commit was committed; the last durable one is at least the
        // last Immediate commit before it.
        let image = disk.crash(&mut Rng::new(n));
        drop(store);
        let got = read_back(&open(&image));
        assert!(
            got.applied <= failed_at && got == w.history[got.applied as usize],
            "{what} {n}: reopened to {got:?}, not a committed state (failed at commit {failed_at})"
        );
        let last_durable = (3..failed_at).rev().find(|a| a % 2 == 1).unwrap_or(3);
        assert!(
            got.applied >= last_durable,
            "{what} {n}: lost durable commit {last_durable} (reopened at {})",
            got.applied
        );
    }
}

#[test]
fn a_failed_page_write_poisons_the_store() {
    failure_poisons(|st, n| st.fail_write_in = Some(n), "write");
}

#[test]
fn a_failed_fsync_poisons_the_store() {
    failure_poisons(|st, n| st.fail_sync_in = Some(n), "fsync");
}

/// One run: `commits` commits of `pad`-padded values, each `Immediate`, `Deferred` then `sync`,
/// or `Deferred` alone (from `kinds`, cycled), on a disk that dies at write `die_at` (if any);
/// then a crash image made with `rng`. It must reopen, with every check passing, to the state of
/// some commit at or after the last durable one, and take writes again. Returns the number of
/// page writes the run made and whether the disk died during it.
fn crash_run(commits: u64, pad: usize, kinds: &[u64], die_at: Option<u64>, rng: &mut Rng, what: &str) -> (u64, bool) {
    let disk = Disk::default();
    let store = open(&disk);
    let writes_before = disk.state().writes;
    disk.state().die_in = die_at;
    let mut w = Workload::new();
    w.pad = pad;
    let mut durable = 0;
    let mut died = false;
    for i in 0..commits {
        let batch = w.next_batch();
        // Durable by the store's contract: an `Immediate` commit, or a `sync` after it.
        let (result, durable_now) = match kinds[i as usize % kinds.len()] {
            0 => (store.commit(&batch, Durability::Immediate), true),
            1 => (
                store.commit(&batch, Durability::Deferred).and_then(|()| store.sync()),
                true,
            ),
            _ => (store.commit(&batch, Durability::Deferred), false),
        };
        match result {
            Ok(()) if durable_now => durable = w.model.applied,
            Ok(()) => {}
            Err(_) => {
                died = true;
                break;
            }
        }
    }
    let writes = disk.state().writes - writes_before;
    let attempted = w.model.applied;
    let image = disk.crash(rng);
    drop(store);
    let reopened = open(&image);
    let got = read_back(&reopened);
    assert!(
        got.applied >= durable && got.applied <= attempted,
        "{what}: reopened at commit {} (durable {durable}, attempted {attempted})",
        got.applied
    );
    assert_eq!(
        got, w.history[got.applied as usize],
        "{what}: reopened state is not the state commit {} left",
        got.applied
    );
    // The store is writable after recovery: the next commit lands on what was recovered.
    let mut again = Workload {
        model: got.clone(),
        history: Vec::new(),
        pad: 0,
    };
    reopened.commit(&again.next_batch(), Durability::Immediate).unwrap();
    assert_eq!(read_back(&reopened).applied, got.applied + 1, "{what}");
    (writes, died)
}

/// A crash at every page write of a sequence of commits of every kind (the disk dies there: the
/// commit fails), with unsynced writes kept, dropped or torn at random.
#[test]
fn a_crash_at_any_write_of_a_commit_reopens_to_a_committed_state() {
    let kinds = [0, 2, 2, 1, 0, 2];
    let (total, _) = crash_run(6, 3_000, &kinds, None, &mut Rng::new(0), "no crash");
    assert!(total > 10, "only {total} page writes");
    for k in 0..total {
        let (_, died) = crash_run(
            6,
            3_000,
            &kinds,
            Some(k),
            &mut Rng::new(k),
            &format!("crash at write {k}"),
        );
        assert!(died, "crash at write {k}: the disk did not die");
    }
}

/// Crashes between commits, after random mixes of durable and unsynced commits of small and big
/// values (big ones make redb grow the file in unsynced commits).
#[test]
fn crash_images_reopen_to_a_committed_state() {
    for seed in 0..60u64 {
        let mut rng = Rng::new(seed);
        let pad = [0, 3_000, 40_000][rng.below(3) as usize];
        let kinds: Vec<u64> = (0..16).map(|_| rng.below(4)).collect();
        let commits = rng.below(16) + 1;
        crash_run(commits, pad, &kinds, None, &mut rng, &format!("seed {seed}"));
    }
}
