//! The engine's key index: key states ordered by a keyed 53-bit hash of the key.
//!
//! Why not `BTreeMap<Bytes, KeyState>`: every comparison in a B-tree of `Bytes` follows a pointer
//! to the key's bytes, so one lookup among 100k keys costs ~17 pointer dereferences; those
//! lookups were the largest single cost of a SET in the profile. Here the B-tree compares `u64`s stored inline, and the key's bytes are
//! read once, in its bucket.
//!
//! Ordering by hash also gives `SCAN` the guarantee Redis gives: the cursor is a hash value, so a
//! key present from the first call to the last is returned (keys inserted or removed meanwhile
//! do not shift the others, as an offset cursor would). The hash is SipHash keyed with a seed: a
//! random seed per process (clients cannot aim keys at one bucket), a fixed one in simulations.

use crate::state::KeyState;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::hash::Hasher;

type Entry = (Bytes, KeyState);

/// Keys sharing one hash (almost always exactly one).
enum Bucket {
    One(Entry),
    Many(Vec<Entry>),
}

impl Bucket {
    fn entries(&self) -> &[Entry] {
        match self {
            Bucket::One(e) => std::slice::from_ref(e),
            Bucket::Many(v) => v,
        }
    }
    fn entries_mut(&mut self) -> &mut [Entry] {
        match self {
            Bucket::One(e) => std::slice::from_mut(e),
            Bucket::Many(v) => v,
        }
    }
}

pub struct KeyMap {
    /// SipHash state after absorbing the seed: cloned for every key hashed.
    hasher: std::collections::hash_map::DefaultHasher,
    map: BTreeMap<u64, Bucket>,
    len: usize,
}

impl KeyMap {
    pub fn new(seed: u64) -> KeyMap {
        #[allow(clippy::default_constructed_unit_structs)]
        let mut hasher = std::collections::hash_map::DefaultHasher::default();
        hasher.write_u64(seed);
        KeyMap {
            hasher,
            map: BTreeMap::new(),
            len: 0,
        }
    }

    /// The position of `key` in iteration order (and in `SCAN` cursors): 53 bits, because
    /// clients carry cursors as JavaScript numbers (node-redis) or signed 64-bit integers
    /// (Redisson, go-redis), and Redis's own cursors are small. Collisions share a bucket.
    pub fn hash(&self, key: &[u8]) -> u64 {
        let mut h = self.hasher.clone();
        h.write(key);
        h.finish() >> 11
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, key: &[u8]) -> Option<&KeyState> {
        self.get_at(self.hash(key), key)
    }

    fn get_at(&self, h: u64, key: &[u8]) -> Option<&KeyState> {
        let bucket = self.map.get(&h)?;
        bucket.entries().iter().find(|(k, _)| k == key).map(|(_, st)| st)
    }

    /// The state of `key`, created empty if it has none.
    pub fn get_or_default(&mut self, key: &Bytes) -> &mut KeyState {
        self.get_or_default_at(self.hash(key), key).0
    }

    /// The state of `key` at hash `h`, and whether it was just created.
    fn get_or_default_at(&mut self, h: u64, key: &Bytes) -> (&mut KeyState, bool) {
        let bucket = self.map.entry(h).or_insert_with(|| Bucket::Many(Vec::with_capacity(0)));
        let found = bucket.entries().iter().position(|(k, _)| k == key);
        let (i, added) = match (found, &mut *bucket) {
            (Some(i), _) => (i, false),
            (None, Bucket::Many(v)) if v.is_empty() => {
                *bucket = Bucket::One((key.clone(), KeyState::default()));
                (0, true)
            }
            (None, Bucket::Many(v)) => {
                v.push((key.clone(), KeyState::default()));
                (v.len() - 1, true)
            }
            (None, Bucket::One(_)) => {
                let Bucket::One(first) = std::mem::replace(bucket, Bucket::Many(Vec::new())) else {
                    unreachable!("matched a one-key bucket");
                };
                *bucket = Bucket::Many(vec![first, (key.clone(), KeyState::default())]);
                (1, true)
            }
        };
        if added {
            self.len += 1;
        }
        (&mut bucket.entries_mut()[i].1, added)
    }

    pub fn insert(&mut self, key: Bytes, state: KeyState) -> Option<KeyState> {
        let (slot, added) = self.get_or_default_at(self.hash(&key), &key);
        let old = std::mem::replace(slot, state);
        (!added).then_some(old)
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<KeyState> {
        self.remove_at(self.hash(key), key)
    }

    fn remove_at(&mut self, h: u64, key: &[u8]) -> Option<KeyState> {
        let bucket = self.map.get_mut(&h)?;
        let removed = match bucket {
            Bucket::One((k, _)) if k == key => match self.map.remove(&h) {
                Some(Bucket::One((_, st))) => Some(st),
                _ => unreachable!("the bucket held one key"),
            },
            Bucket::One(_) => None,
            Bucket::Many(v) => {
                let i = v.iter().position(|(k, _)| k == key)?;
                let (_, st) = v.swap_remove(i);
                if v.len() == 1 {
                    let last = v.pop().expect("one left");
                    *bucket = Bucket::One(last);
                }
                Some(st)
            }
        };
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Every key, in hash order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &KeyState)> {
        self.map
            .values()
            .flat_map(|b| b.entries().iter().map(|(k, st)| (k, st)))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Bytes, &mut KeyState)> {
        self.map
            .values_mut()
            .flat_map(|b| b.entries_mut().iter_mut().map(|(k, st)| (&*k, st)))
    }

    pub fn keys(&self) -> impl Iterator<Item = &Bytes> {
        self.iter().map(|(k, _)| k)
    }

    /// Keys whose hash is `>= from`, in hash order, bucket by bucket: `(hash, keys of the bucket)`.
    /// A cursor taken from the hash of the next bucket resumes without missing or repeating keys
    /// that stayed in the map.
    pub fn buckets_from(&self, from: u64) -> impl Iterator<Item = (u64, impl Iterator<Item = (&Bytes, &KeyState)>)> {
        self.map
            .range(from..)
            .map(|(h, b)| (*h, b.entries().iter().map(|(k, st)| (k, st))))
    }
}

impl std::fmt::Debug for KeyMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Slot;
    use crate::version::Dot;

    fn state(n: u64) -> KeyState {
        let mut st = KeyState::default();
        st.ctx.add(Dot::new(1, n));
        st.slots.entry(Slot::Register).or_default();
        st
    }

    #[test]
    fn behaves_like_a_map() {
        let mut m = KeyMap::new(7);
        let mut model = std::collections::BTreeMap::new();
        for i in 0..2_000u64 {
            let key = Bytes::from(format!("k{}", i % 700));
            match i % 5 {
                0..=2 => assert_eq!(m.insert(key.clone(), state(i)), model.insert(key, state(i))),
                3 => assert_eq!(m.remove(&key), model.remove(&key)),
                _ => {
                    m.get_or_default(&key).ctx.add(Dot::new(2, i));
                    model.entry(key).or_default().ctx.add(Dot::new(2, i));
                }
            }
            assert_eq!(m.len(), model.len());
        }
        for (k, st) in &model {
            assert_eq!(m.get(k), Some(st));
        }
        let mut seen: Vec<_> = m.keys().cloned().collect();
        seen.sort();
        assert_eq!(seen, model.keys().cloned().collect::<Vec<_>>());
    }

    #[test]
    fn colliding_keys_share_a_bucket() {
        let mut m = KeyMap::new(0);
        let keys: Vec<Bytes> = ["a", "b", "c"]
            .iter()
            .map(|k| Bytes::from_static(k.as_bytes()))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            let (st, added) = m.get_or_default_at(42, k);
            assert!(added);
            *st = state(i as u64 + 1);
        }
        assert!(matches!(m.map.get(&42), Some(Bucket::Many(v)) if v.len() == 3));
        assert_eq!(m.len(), 3);
        assert_eq!(m.get_at(42, b"b"), Some(&state(2)));
        assert!(!m.get_or_default_at(42, &keys[1]).1, "found, not added");
        assert_eq!(m.remove_at(42, b"b"), Some(state(2)));
        assert_eq!(m.remove_at(42, b"b"), None);
        assert_eq!(m.remove_at(42, b"a"), Some(state(1)));
        assert!(
            matches!(m.map.get(&42), Some(Bucket::One(_))),
            "one key left: inline again"
        );
        assert_eq!(m.get_at(42, b"c"), Some(&state(3)));
        assert_eq!(m.remove_at(42, b"c"), Some(state(3)));
        assert!(m.map.is_empty() && m.is_empty());
    }

    #[test]
    fn seed_changes_the_order() {
        let a = KeyMap::new(1);
        let b = KeyMap::new(2);
        assert_ne!(a.hash(b"key"), b.hash(b"key"));
        assert_eq!(a.hash(b"key"), KeyMap::new(1).hash(b"key"));
        assert!(
            (0..1_000).all(|i| a.hash(format!("k{i}").as_bytes()) < 1 << 53),
            "cursors fit 53 bits"
        );
    }
}
