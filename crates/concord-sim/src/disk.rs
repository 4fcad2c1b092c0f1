//! A crash-faithful disk under redb: the simulation's `StorageBackend`.
//!
//! Writes land in the page cache (`current`) and in a list of unsynced writes; `sync_data(false)`
//! makes everything durable; `sync_data(true)` (redb's eventual durability) is a write barrier:
//! writes before it reach the platter before writes after it. A **crash** keeps what was durable
//! plus, from the unsynced writes, every segment before a random barrier and a random subset of
//! the writes of the next segment (a torn commit), as a power loss may. A **wipe** loses
//! everything; a **restore** puts back an old image. A disk can also be set to **fail** at its
//! N-th write from now (an I/O error, as a dying disk or a full one), after which it refuses every
//! write until the host crashes: the node must refuse writes rather than acknowledge them.
//!
//! Handles are fenced by a generation: after a crash the old node's handle (still referenced by a
//! dropping redb `Database`) can no longer write, so nothing reaches the disk after the crash.

use crate::rng::Rng;
use std::io;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    Barrier,
}

#[derive(Debug, Default)]
struct State {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<Pending>,
    generation: u64,
    /// Fail the write that brings `writes` to this count (and every one after).
    fail_at_write: Option<u64>,
    writes: u64,
    failed: bool,
}

/// One region's disk; survives the host's crashes (it lives in the simulation's world).
#[derive(Clone, Debug, Default)]
pub struct Disk(Arc<Mutex<State>>);

/// What redb writes through: one node incarnation's view of the disk.
#[derive(Debug)]
pub struct Handle {
    disk: Arc<Mutex<State>>,
    generation: u64,
}

fn apply(image: &mut Vec<u8>, p: &Pending) {
    match p {
        Pending::Write { offset, data } => {
            let end = *offset as usize + data.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[*offset as usize..end].copy_from_slice(data);
        }
        Pending::Barrier => {}
    }
}

impl Disk {
    /// A handle for a node starting now (the previous incarnation's handle stops working).
    pub fn handle(&self) -> Handle {
        let mut s = self.0.lock().unwrap();
        s.generation += 1;
        s.failed = false;
        s.fail_at_write = None;
        s.writes = 0;
        Handle {
            disk: self.0.clone(),
            generation: s.generation,
        }
    }

    /// Power loss: keep the durable bytes and, of the unsynced writes, the segments before a
    /// random barrier and a random subset of the next one. Returns how many writes were lost.
    pub fn crash(&self, rng: &mut Rng) -> usize {
        let mut s = self.0.lock().unwrap();
        s.generation += 1;
        let pending = std::mem::take(&mut s.pending);
        let segments: Vec<&[Pending]> = pending.split(|p| matches!(p, Pending::Barrier)).collect();
        let keep_whole = rng.below(segments.len() as u64 + 1) as usize;
        let mut image = s.durable.clone();
        let mut lost = 0;
        for (i, seg) in segments.iter().enumerate() {
            if i < keep_whole {
                seg.iter().for_each(|p| apply(&mut image, p));
            } else if i == keep_whole {
                for p in seg.iter() {
                    if rng.chance(50) {
                        apply(&mut image, p);
                    } else {
                        lost += 1;
                    }
                }
            } else {
                lost += seg.len();
            }
        }
        s.durable = image.clone();
        s.current = image;
        s.failed = false;
        lost
    }

    /// The disk is lost: a new, empty one.
    pub fn wipe(&self) {
        let mut s = self.0.lock().unwrap();
        s.generation += 1;
        s.durable.clear();
        s.current.clear();
        s.pending.clear();
        s.failed = false;
    }

    /// A backup as a file-system snapshot would take it: what a crash now could leave (the
    /// durable bytes).
    pub fn backup(&self) -> Vec<u8> {
        self.0.lock().unwrap().durable.clone()
    }

    /// Put an old image back (the host must be down).
    pub fn restore(&self, image: Vec<u8>) {
        let mut s = self.0.lock().unwrap();
        s.generation += 1;
        s.durable = image.clone();
        s.current = image;
        s.pending.clear();
        s.failed = false;
    }

    /// Make the `n`-th write from now fail, and every write after it.
    pub fn fail_after_writes(&self, n: u64) {
        let mut s = self.0.lock().unwrap();
        s.fail_at_write = Some(s.writes + n.max(1));
    }

    /// Whether a write has failed since the current incarnation started.
    pub fn has_failed(&self) -> bool {
        self.0.lock().unwrap().failed
    }

    pub fn is_empty(&self) -> bool {
        self.0.lock().unwrap().durable.is_empty()
    }
}

impl Handle {
    fn state(&self) -> io::Result<std::sync::MutexGuard<'_, State>> {
        let s = self.disk.lock().unwrap();
        if s.generation != self.generation {
            return Err(io::Error::other("simulated disk: this node crashed"));
        }
        Ok(s)
    }

    fn mutate(&self) -> io::Result<std::sync::MutexGuard<'_, State>> {
        let mut s = self.state()?;
        if s.failed {
            return Err(io::Error::other("simulated disk failure"));
        }
        s.writes += 1;
        if s.fail_at_write.is_some_and(|n| s.writes >= n) {
            s.failed = true;
            return Err(io::Error::other("simulated disk failure"));
        }
        Ok(s)
    }
}

impl redb::StorageBackend for Handle {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.state()?.current.len() as u64)
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, io::Error> {
        let s = self.state()?;
        let end = offset as usize + len;
        if end > s.current.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"));
        }
        Ok(s.current[offset as usize..end].to_vec())
    }

    /// A length change is durable at once: redb assumes so (it checks the file is as long as its
    /// header says before it repairs anything), as file systems that journal metadata provide.
    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut s = self.mutate()?;
        s.current.resize(len as usize, 0);
        s.durable.resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self, eventual: bool) -> Result<(), io::Error> {
        let mut s = self.mutate()?;
        if eventual {
            s.pending.push(Pending::Barrier);
        } else {
            s.durable = s.current.clone();
            s.pending.clear();
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut s = self.mutate()?;
        let w = Pending::Write {
            offset,
            data: data.to_vec(),
        };
        apply(&mut s.current, &w);
        s.pending.push(w);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::StorageBackend;

    #[test]
    fn a_crash_keeps_synced_writes_and_may_lose_the_rest() {
        let disk = Disk::default();
        let h = disk.handle();
        h.write(0, b"abcd").unwrap();
        h.sync_data(false).unwrap();
        h.write(0, b"XY").unwrap();
        let mut rng = Rng::new(1);
        let mut saw_lost = false;
        let mut saw_kept = false;
        for _ in 0..32 {
            let d = Disk::default();
            let h = d.handle();
            h.write(0, b"abcd").unwrap();
            h.sync_data(false).unwrap();
            h.write(0, b"XY").unwrap();
            d.crash(&mut rng);
            let got = d.handle().read(0, 4).unwrap();
            assert!(got == b"abcd" || got == b"XYcd", "{got:?}");
            saw_lost |= got == b"abcd";
            saw_kept |= got == b"XYcd";
        }
        assert!(
            saw_lost && saw_kept,
            "a crash sometimes keeps, sometimes loses unsynced writes"
        );
        // The old handle is fenced after a crash.
        disk.crash(&mut rng);
        assert!(h.write(0, b"z").is_err());
    }

    #[test]
    fn a_failing_disk_refuses_writes_from_the_nth() {
        let disk = Disk::default();
        let h = disk.handle();
        disk.fail_after_writes(2);
        h.write(0, b"a").unwrap();
        assert!(h.write(1, b"b").is_err());
        assert!(h.sync_data(false).is_err());
        assert!(disk.has_failed());
    }
}
