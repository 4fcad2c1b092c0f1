//! Keyspace commands beyond DESIGN §6 (Redis's `expire.c`, `db.c`): `EXPIREAT PEXPIREAT`,
//! `EXPIRE … NX|XX|GT|LT`, `EXPIRETIME PEXPIRETIME TOUCH RANDOMKEY`.
//!
//! Replicated semantics: a conditional expiry is decided against this region's view of the key;
//! what replicates is the resulting expiry write, which merges like any `EXPIRE` (concurrent
//! expiries resolve to the longer lifetime, DESIGN §6). So `EXPIRE k 10 NX` in two regions at once
//! can both succeed, and the key keeps the later deadline. An expiry at or before now deletes the
//! key, as a replicated `DEL`.
//!
//! `RENAME`/`COPY` write the destination as this region sees the source (a `DEL` of the
//! destination, then the source's value written as that type's ordinary writes, then its expiry),
//! and `RENAME` then deletes the source. They are several ops, applied in that order everywhere: a
//! region between them sees the key under both names, never under neither. A write to the source
//! made concurrently in another region stays at the source name (the `DEL` removes only what this
//! region saw); it is not carried to the destination.

use super::Engine;
use crate::codec;
use crate::command::{CommandError, Deadline, ExpireCondition, ObjectField, Reply, Request, SetExpiry};
use crate::engine::Output;
use crate::op::Delta;
use crate::state::{Kind, Payload, Slot};
use bytes::Bytes;

/// A key's logical value, as `RENAME`/`COPY` carry it and `DUMP` encodes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Value {
    String(Bytes),
    Counter(i64),
    Set(Vec<Bytes>),
    Hash(Vec<(Bytes, Bytes)>),
    /// Members and the bits of their scores (in Redis order).
    ZSet(Vec<(Bytes, u64)>),
    /// A HyperLogLog's non-zero registers.
    Hll(Vec<(u16, u8)>),
    List(Vec<Bytes>),
}

/// Version byte of the `DUMP` payload: [`codec::encode`] of a [`Value`], then an 8-byte
/// little-endian FNV-1a checksum of those bytes. It holds the value, not the CRDT state (no
/// versions, siblings or tombstones): `RESTORE` makes fresh writes, in any cluster.
pub const DUMP_VERSION: u8 = 1;

fn dump(value: &Value) -> Vec<u8> {
    let mut out = codec::encode(DUMP_VERSION, value);
    let sum = crate::conflict::stable_hash(&[&out]);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

fn undump(payload: &[u8]) -> Option<Value> {
    let (body, sum) = payload.split_at_checked(payload.len().checked_sub(8)?)?;
    if crate::conflict::stable_hash(&[body]).to_le_bytes() != sum {
        return None;
    }
    codec::decode(DUMP_VERSION, body).ok()
}

impl Engine {
    /// Set `key`'s expiry to `at_ms` (a live key), or delete it when that is not in the future.
    pub(super) fn expire_at(&mut self, key: &bytes::Bytes, at_ms: u64, now_ms: u64, out: &mut Output) {
        if at_ms <= now_ms {
            self.delete_key(key, now_ms, out);
            return;
        }
        let Some(st) = self.keys.get(key) else { return };
        let removes = st.observed_slot(&Slot::Expiry);
        self.write(
            key,
            Delta {
                removes,
                adds: vec![(Slot::Expiry, Payload::Expiry(Some(at_ms)))],
            },
            now_ms,
            out,
        );
    }

    /// Remove a live key's expiry; whether it had one.
    pub(super) fn persist(&mut self, key: &bytes::Bytes, now_ms: u64, out: &mut Output) -> bool {
        match self.live_kind(key, now_ms) {
            Some((_, st)) if st.expiry_ms().is_some() => {
                let removes = st.observed_slot(&Slot::Expiry);
                self.write(
                    key,
                    Delta {
                        removes,
                        adds: vec![(Slot::Expiry, Payload::Expiry(None))],
                    },
                    now_ms,
                    out,
                );
                true
            }
            _ => false,
        }
    }

    /// This region's view of a live key: its logical value and expiry.
    fn read_value(&self, key: &[u8], now_ms: u64) -> Result<Option<(Value, Option<u64>)>, CommandError> {
        let Some((kind, st)) = self.live_kind(key, now_ms) else {
            return Ok(None);
        };
        let value = match kind {
            Kind::String => Value::String(self.register_view(key, st).unwrap_or_default()),
            Kind::Counter => Value::Counter(i64::try_from(st.counter_value()).map_err(|_| CommandError::Overflow)?),
            Kind::Set => Value::Set(Self::set_members(st)),
            Kind::Hash => Value::Hash(Self::hash_fields(st)),
            Kind::ZSet => Value::ZSet(
                Self::zset_sorted(st)
                    .into_iter()
                    .map(|(s, m)| (m, s.to_bits()))
                    .collect(),
            ),
            Kind::Hll => Value::Hll(crate::hll::to_pairs(&Self::hll_registers(st))),
            Kind::List => Value::List(st.list_elems().map(|(_, es)| super::lists::elem_value(es)).collect()),
        };
        Ok(Some((value, st.expiry_ms())))
    }

    /// Replace `key` with `value` (a `DEL` if it is live, then the type's ordinary writes — a
    /// counter stays a counter), then set its expiry.
    fn write_value(
        &mut self,
        key: &Bytes,
        value: Value,
        expiry: Option<u64>,
        now_ms: u64,
        out: &mut Output,
    ) -> Result<(), CommandError> {
        if self.live_kind(key, now_ms).is_some() {
            self.delete_key(key, now_ms, out);
        }
        match value {
            Value::String(v) => self.set_string(key, v, SetExpiry::Clear, now_ms, out),
            Value::Counter(n) => {
                self.incr_by(key, n, now_ms, out)?;
            }
            Value::Set(members) => {
                self.execute(
                    Request::SAdd {
                        key: key.clone(),
                        members,
                    },
                    now_ms,
                    out,
                )?;
            }
            Value::Hash(pairs) => {
                self.hset(key, pairs, now_ms, out)?;
            }
            Value::ZSet(members) => {
                // Decoded from a DUMP payload too: a NaN score is refused, as ZADD refuses it.
                let scores: Vec<(Bytes, f64)> = members.into_iter().map(|(m, s)| (m, f64::from_bits(s))).collect();
                if scores.iter().any(|(_, s)| s.is_nan()) {
                    return Err(CommandError::Other("Bad data format".into()));
                }
                self.zset_write(key, scores, Vec::new(), now_ms, out);
            }
            Value::Hll(pairs) => {
                let mut target = crate::hll::empty();
                if pairs.iter().any(|&(i, _)| usize::from(i) >= crate::hll::REGISTERS) {
                    return Err(CommandError::Other("Bad data format".into()));
                }
                crate::hll::merge_pairs(&mut target, &pairs);
                self.hll_raise(key, None, &target, now_ms, out);
            }
            Value::List(values) => {
                self.execute(
                    Request::ListPush {
                        key: key.clone(),
                        end: crate::command::ListEnd::Right,
                        values,
                        if_exists: false,
                    },
                    now_ms,
                    out,
                )?;
            }
        }
        if let Some(at) = expiry {
            self.expire_at(key, at, now_ms, out);
        }
        Ok(())
    }

    /// Replace `destination` with this region's view of the live key `source` (same type, value
    /// and expiry).
    fn copy_key(
        &mut self,
        source: &Bytes,
        destination: &Bytes,
        now_ms: u64,
        out: &mut Output,
    ) -> Result<(), CommandError> {
        match self.read_value(source, now_ms)? {
            Some((value, expiry)) => self.write_value(destination, value, expiry, now_ms, out),
            None => Ok(()),
        }
    }

    /// A keyspace command of this family (the caller matched the variant).
    pub(super) fn execute_keyspace(
        &mut self,
        req: Request,
        now_ms: u64,
        out: &mut Output,
    ) -> Result<Reply, CommandError> {
        Ok(match req {
            Request::ExpireWhen {
                key,
                deadline,
                condition,
            } => {
                let Some((_, st)) = self.live_kind(&key, now_ms) else {
                    return Ok(Reply::Int(0));
                };
                let at = match deadline {
                    Deadline::InMs(ms) => (now_ms as i64).saturating_add(ms),
                    Deadline::AtMs(at) => at,
                };
                // A key without an expiry never expires: GT never beats it, LT always does.
                let current = st.expiry_ms().map(|c| c as i64);
                let applies = match condition {
                    ExpireCondition::Always => true,
                    ExpireCondition::IfNone => current.is_none(),
                    ExpireCondition::IfSome => current.is_some(),
                    ExpireCondition::IfLater => current.is_some_and(|c| at > c),
                    ExpireCondition::IfSooner => current.is_none_or(|c| at < c),
                };
                if !applies {
                    return Ok(Reply::Int(0));
                }
                self.expire_at(&key, u64::try_from(at).unwrap_or(0), now_ms, out);
                Reply::Int(1)
            }
            Request::ExpireTime { key, millis } => match self.live_kind(&key, now_ms) {
                None => Reply::Int(-2),
                Some((_, st)) => match st.expiry_ms() {
                    None => Reply::Int(-1),
                    Some(at) => Reply::Int(if millis { at as i64 } else { (at / 1000) as i64 }),
                },
            },
            Request::Touch(keys) => {
                Reply::Int(keys.iter().filter(|k| self.live_kind(k, now_ms).is_some()).count() as i64)
            }
            Request::RandomKey => {
                // The first live key at or after a random point of the hash order, wrapping once.
                let from = self.next_random() >> 11;
                let found = {
                    let live = |(k, _): &(&bytes::Bytes, &crate::state::KeyState)| self.live_kind(k, now_ms).is_some();
                    let after = self.keys.buckets_from(from).flat_map(|(_, b)| b).find(live);
                    after
                        .or_else(|| self.keys.buckets_from(0).flat_map(|(_, b)| b).find(live))
                        .map(|(k, _)| k.clone())
                };
                found.map(Reply::Bulk).unwrap_or(Reply::Nil)
            }
            Request::Rename {
                source,
                destination,
                if_absent,
            } => {
                if self.live_kind(&source, now_ms).is_none() {
                    return Err(CommandError::Other("no such key".into()));
                }
                if source == destination {
                    return Ok(if if_absent { Reply::Int(0) } else { Reply::Ok });
                }
                if if_absent && self.live_kind(&destination, now_ms).is_some() {
                    return Ok(Reply::Int(0));
                }
                self.copy_key(&source, &destination, now_ms, out)?;
                self.delete_key(&source, now_ms, out);
                if if_absent {
                    Reply::Int(1)
                } else {
                    Reply::Ok
                }
            }
            Request::Copy {
                source,
                destination,
                replace,
            } => {
                if source == destination {
                    return Err(CommandError::Other(
                        "source and destination objects are the same".into(),
                    ));
                }
                if self.live_kind(&source, now_ms).is_none()
                    || (!replace && self.live_kind(&destination, now_ms).is_some())
                {
                    return Ok(Reply::Int(0));
                }
                self.copy_key(&source, &destination, now_ms, out)?;
                Reply::Int(1)
            }
            Request::Object { field, key } => {
                let Some((kind, st)) = self.live_kind(&key, now_ms) else {
                    return Ok(Reply::Nil);
                };
                match field {
                    // The encoding Redis 7 would choose for this value (Concord has one
                    // representation per type; clients and tools only read the name).
                    ObjectField::Encoding => Reply::bulk(match kind {
                        Kind::Counter => "int",
                        Kind::String => {
                            let v = self.register_view(&key, st).unwrap_or_default();
                            if v.len() <= 20 && super::parse_i64(&v).is_some() {
                                "int"
                            } else if v.len() <= 44 {
                                "embstr"
                            } else {
                                "raw"
                            }
                        }
                        Kind::Set => {
                            let members = Self::set_members(st);
                            if members.len() <= 512 && members.iter().all(|m| super::parse_i64(m).is_some()) {
                                "intset"
                            } else if members.len() <= 128 && members.iter().all(|m| m.len() <= 64) {
                                "listpack"
                            } else {
                                "hashtable"
                            }
                        }
                        Kind::Hash => {
                            let fields = Self::hash_fields(st);
                            if fields.len() <= 128 && fields.iter().all(|(f, v)| f.len() <= 64 && v.len() <= 64) {
                                "listpack"
                            } else {
                                "hashtable"
                            }
                        }
                        Kind::ZSet => {
                            let members = Self::zset_sorted(st);
                            if members.len() <= 128 && members.iter().all(|(_, m)| m.len() <= 64) {
                                "listpack"
                            } else {
                                "skiplist"
                            }
                        }
                        Kind::Hll => "raw",
                        // Redis 7.0 encodes every list as a quicklist (listpack lists came in 7.2).
                        Kind::List => "quicklist",
                    }),
                    ObjectField::RefCount => Reply::Int(1),
                    // Concord keeps no access times: seconds since the key was last written.
                    ObjectField::IdleTime => {
                        let last = st
                            .slots
                            .values()
                            .flat_map(|es| es.values())
                            .map(|e| e.hlc.physical_ms())
                            .max()
                            .unwrap_or(now_ms);
                        Reply::Int((now_ms.saturating_sub(last) / 1000) as i64)
                    }
                    ObjectField::Freq => {
                        return Err(CommandError::Other(
                            "An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.".into(),
                        ))
                    }
                }
            }
            Request::Dump(key) => match self.read_value(&key, now_ms)? {
                Some((value, _)) => Reply::Bulk(Bytes::from(dump(&value))),
                None => Reply::Nil,
            },
            Request::Restore {
                key,
                payload,
                ttl_ms,
                absolute,
                replace,
            } => {
                if !replace && self.live_kind(&key, now_ms).is_some() {
                    return Err(CommandError::BusyKey);
                }
                let value = undump(&payload)
                    .ok_or_else(|| CommandError::Other("DUMP payload version or checksum are wrong".into()))?;
                let expiry = match (ttl_ms, absolute) {
                    (0, _) => None,
                    (at, true) => Some(at),
                    (ms, false) => Some(now_ms.saturating_add(ms)),
                };
                if expiry.is_some_and(|at| at <= now_ms) {
                    // Already expired: Redis adds nothing (and with REPLACE removes the old key).
                    if self.live_kind(&key, now_ms).is_some() {
                        self.delete_key(&key, now_ms, out);
                    }
                    return Ok(Reply::Ok);
                }
                self.write_value(&key, value, expiry, now_ms, out)?;
                Reply::Ok
            }
            other => unreachable!("not a keyspace-family request: {other:?}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_payloads_round_trip_and_are_checked() {
        let v = Value::Hash(vec![(Bytes::from_static(b"f"), Bytes::from_static(b"v"))]);
        let payload = dump(&v);
        assert_eq!(payload[0], DUMP_VERSION);
        assert_eq!(undump(&payload), Some(v));
        let mut bad = payload.clone();
        bad[2] ^= 1;
        assert_eq!(undump(&bad), None);
        assert_eq!(undump(&payload[..5]), None);
        assert_eq!(undump(b""), None);
    }
}
