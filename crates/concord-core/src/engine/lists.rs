//! List commands (Redis's `t_list.c`): `LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LRANGE LLEN LINDEX
//! LSET LREM LTRIM LINSERT LPOS LMOVE RPOPLPUSH LMPOP` (the blocking forms are these, retried by
//! the node when a list changes).
//!
//! Replicated semantics (DESIGN §8.4): a list is a sequence CRDT. Each element is one slot
//! [`Slot::ListElem`] at a dense, totally ordered [`Position`]; the slot's entries are the
//! element's values (normally one).
//! - A push makes fresh positions before the first element this region sees (`LPUSH`) or after
//!   the last (`RPUSH`), `LINSERT` between the pivot and its neighbour. All the elements of one
//!   push are one op, and stay together. Concurrent pushes at the same end from two regions both
//!   survive, ordered by their writers' dots (the same order everywhere).
//! - Removals (`LPOP RPOP LREM LTRIM`, the source of `LMOVE`) remove the elements this region
//!   observed, by their entries' dots, like `SREM`: an element pushed concurrently elsewhere is
//!   not removed. Two regions popping concurrently can return the same element (at-least-once, as
//!   Redis Active-Active); a key pattern with a home region forwards pops there (exactly-once).
//! - `LSET` replaces the element's observed value: concurrent `LSET`s of one element leave two
//!   values, and reads show the later (LWW by HLC). An `LSET` concurrent with the element's
//!   removal keeps the element with the new value (the update was not observed by the removal).
//! - `LMOVE` between two keys is a push to the destination followed by a removal from the
//!   source: two ops written as one unit ([`Engine::execute`]), so every other region applies
//!   both together and never sees the element in both lists, or in neither.

use super::Engine;
use crate::command::{CommandError, ListEnd, Reply, Request};
use crate::engine::Output;
use crate::op::Delta;
use crate::state::{lww_key, Entries, KeyState, Kind, Payload, Position, Slot};
use crate::version::{Dot, LOCAL_REPLICA};
use bytes::Bytes;

/// An element's value: the LWW winner of its entries.
pub(super) fn elem_value(es: &Entries) -> Bytes {
    es.iter()
        .max_by_key(|(d, e)| lww_key(d, e))
        .and_then(|(_, e)| match &e.payload {
            Payload::Value(Some(v)) => Some(v.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Redis's range normalisation (`LRANGE`, `LTRIM`): the inclusive index range, or `None` if empty.
fn index_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 { (len + start).max(0) } else { start };
    let stop = if stop < 0 { len + stop } else { stop };
    if start > stop || start >= len {
        return None;
    }
    Some((start as usize, stop.min(len - 1) as usize))
}

/// A list index, negative from the end, if in range.
fn index_of(index: i64, len: usize) -> Option<usize> {
    let i = if index < 0 { len as i64 + index } else { index };
    (0..len as i64).contains(&i).then_some(i as usize)
}

fn removes_of(st: &KeyState, positions: impl IntoIterator<Item = Position>) -> Vec<(Slot, Dot)> {
    positions
        .into_iter()
        .flat_map(|p| st.observed_slot(&Slot::ListElem(p)))
        .collect()
}

impl Engine {
    /// The live list at `key` (`None`: no such key), or WRONGTYPE.
    fn list(&self, key: &[u8], now_ms: u64) -> Result<Option<&KeyState>, CommandError> {
        self.expect_kind(key, Kind::List, now_ms)
    }

    /// The elements of a list, in order: (position, value).
    fn list_items(st: &KeyState) -> Vec<(Position, Bytes)> {
        st.list_elems().map(|(p, es)| (p.clone(), elem_value(es))).collect()
    }

    /// The dot the next write of `key` takes (its positions carry it).
    fn next_dot(&self, key: &[u8]) -> Dot {
        if self.cfg.policies.policy_for(key).replicate {
            Dot::new(self.cfg.replica, self.applied.get(self.cfg.replica) + 1)
        } else {
            Dot::new(LOCAL_REPLICA, self.local_counter + 1)
        }
    }

    /// One list write: removes of observed elements, adds of new ones or new values.
    fn list_write(
        &mut self,
        key: &Bytes,
        mut removes: Vec<(Slot, Dot)>,
        adds: Vec<(Slot, Payload)>,
        now_ms: u64,
        out: &mut Output,
    ) -> Dot {
        removes.extend(self.stale_removes(key, now_ms));
        self.write(key, Delta { removes, adds }, now_ms, out)
    }

    /// Push `values` at `end` of the list at `key` as one op (`LPUSH k a b c` leaves `c b a`
    /// first), with `removes` (an `LMOVE` rotating one list) in the same op. Returns the length.
    fn list_push(
        &mut self,
        key: &Bytes,
        end: ListEnd,
        values: Vec<Bytes>,
        removes: Vec<(Slot, Dot)>,
        now_ms: u64,
        out: &mut Output,
    ) -> Result<usize, CommandError> {
        if values.is_empty() && removes.is_empty() {
            return Ok(self.list(key, now_ms)?.map_or(0, |st| st.list_elems().count()));
        }
        let dot = self.next_dot(key);
        let removed: Vec<Position> = removes
            .iter()
            .filter_map(|(s, _)| match s {
                Slot::ListElem(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        let (len, neighbour) = match self.list(key, now_ms)? {
            None => (0, None),
            Some(st) => {
                let mut left = st.list_elems().map(|(p, _)| p).filter(|p| !removed.contains(p));
                let n = match end {
                    ListEnd::Left => left.next().cloned(),
                    ListEnd::Right => left.next_back().cloned(),
                };
                let len = st.list_elems().count() - removed.len();
                (len, n)
            }
        };
        let m = values.len();
        let (positions, values): (Vec<Position>, Vec<Bytes>) = match end {
            ListEnd::Left => (
                Position::run(None, neighbour.as_ref(), dot, m),
                values.into_iter().rev().collect(),
            ),
            ListEnd::Right => (Position::run(neighbour.as_ref(), None, dot, m), values),
        };
        let adds = positions
            .into_iter()
            .zip(values)
            .map(|(p, v)| (Slot::ListElem(p), Payload::Value(Some(v))))
            .collect();
        let written = self.list_write(key, removes, adds, now_ms, out);
        assert_eq!(written, dot, "a list write took another dot than its positions carry");
        Ok(len + m)
    }

    /// Pop up to `count` elements from `end`: their values, in pop order (`None`: no such key).
    fn list_pop(
        &mut self,
        key: &Bytes,
        end: ListEnd,
        count: usize,
        now_ms: u64,
        out: &mut Output,
    ) -> Result<Option<Vec<Bytes>>, CommandError> {
        let Some(st) = self.list(key, now_ms)? else {
            return Ok(None);
        };
        let picked: Vec<(Position, Bytes)> = match end {
            ListEnd::Left => st
                .list_elems()
                .take(count)
                .map(|(p, es)| (p.clone(), elem_value(es)))
                .collect(),
            ListEnd::Right => st
                .list_elems()
                .rev()
                .take(count)
                .map(|(p, es)| (p.clone(), elem_value(es)))
                .collect(),
        };
        if !picked.is_empty() {
            let removes = removes_of(st, picked.iter().map(|(p, _)| p.clone()));
            self.list_write(key, removes, Vec::new(), now_ms, out);
        }
        Ok(Some(picked.into_iter().map(|(_, v)| v).collect()))
    }

    /// A list command (the caller matched the variant).
    pub(super) fn execute_list(&mut self, req: Request, now_ms: u64, out: &mut Output) -> Result<Reply, CommandError> {
        Ok(match req {
            Request::ListPush {
                key,
                end,
                values,
                if_exists,
            } => {
                let exists = self.list(&key, now_ms)?.is_some();
                if if_exists && !exists {
                    return Ok(Reply::Int(0));
                }
                Reply::Int(self.list_push(&key, end, values, Vec::new(), now_ms, out)? as i64)
            }
            Request::ListPop { key, end, count } => {
                let n = count.map_or(1, |c| usize::try_from(c).unwrap_or(usize::MAX));
                if count == Some(0) {
                    // Redis: a count of 0 answers an empty array for a list, nil for no key.
                    return Ok(match self.list(&key, now_ms)? {
                        Some(_) => Reply::Array(Vec::new()),
                        None => Reply::Nil,
                    });
                }
                match (self.list_pop(&key, end, n, now_ms, out)?, count) {
                    (None, _) => Reply::Nil,
                    (Some(vs), None) => vs.into_iter().next().map_or(Reply::Nil, Reply::Bulk),
                    (Some(vs), Some(_)) => Reply::Array(vs.into_iter().map(Reply::Bulk).collect()),
                }
            }
            Request::LRange { key, start, stop } => {
                let Some(st) = self.list(&key, now_ms)? else {
                    return Ok(Reply::Array(Vec::new()));
                };
                let len = st.list_elems().count();
                match index_range(start, stop, len) {
                    None => Reply::Array(Vec::new()),
                    Some((a, b)) => Reply::Array(
                        st.list_elems()
                            .skip(a)
                            .take(b - a + 1)
                            .map(|(_, es)| Reply::Bulk(elem_value(es)))
                            .collect(),
                    ),
                }
            }
            Request::LLen(key) => Reply::Int(self.list(&key, now_ms)?.map_or(0, |st| st.list_elems().count()) as i64),
            Request::LIndex { key, index } => {
                let Some(st) = self.list(&key, now_ms)? else {
                    return Ok(Reply::Nil);
                };
                let found = if index < 0 {
                    st.list_elems().nth_back((-(index + 1)) as usize)
                } else {
                    st.list_elems().nth(index as usize)
                };
                found.map_or(Reply::Nil, |(_, es)| Reply::Bulk(elem_value(es)))
            }
            Request::LSet { key, index, value } => {
                let Some(st) = self.list(&key, now_ms)? else {
                    return Err(CommandError::Other("no such key".into()));
                };
                let len = st.list_elems().count();
                let i = index_of(index, len).ok_or_else(|| CommandError::Other("index out of range".into()))?;
                let (pos, _) = st.list_elems().nth(i).expect("index in range");
                let slot = Slot::ListElem(pos.clone());
                let removes = st.observed_slot(&slot);
                self.list_write(&key, removes, vec![(slot, Payload::Value(Some(value)))], now_ms, out);
                Reply::Ok
            }
            Request::LRem { key, count, element } => {
                let Some(st) = self.list(&key, now_ms)? else {
                    return Ok(Reply::Int(0));
                };
                let limit = if count == 0 {
                    usize::MAX
                } else {
                    usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX)
                };
                let matching = |(p, es): (&Position, &Entries)| (elem_value(es) == element).then(|| p.clone());
                let hits: Vec<Position> = if count < 0 {
                    st.list_elems().rev().filter_map(matching).take(limit).collect()
                } else {
                    st.list_elems().filter_map(matching).take(limit).collect()
                };
                let n = hits.len();
                if n > 0 {
                    let removes = removes_of(st, hits);
                    self.list_write(&key, removes, Vec::new(), now_ms, out);
                }
                Reply::Int(n as i64)
            }
            Request::LTrim { key, start, stop } => {
                let Some(st) = self.list(&key, now_ms)? else {
                    return Ok(Reply::Ok);
                };
                let len = st.list_elems().count();
                let keep = index_range(start, stop, len);
                let drop: Vec<Position> = st
                    .list_elems()
                    .enumerate()
                    .filter(|(i, _)| keep.is_none_or(|(a, b)| *i < a || *i > b))
                    .map(|(_, (p, _))| p.clone())
                    .collect();
                if !drop.is_empty() {
                    let removes = removes_of(st, drop);
                    self.list_write(&key, removes, Vec::new(), now_ms, out);
                }
                Reply::Ok
            }
            Request::LInsert {
                key,
                before,
                pivot,
                element,
            } => {
                let Some(st) = self.list(&key, now_ms)? else {
                    return Ok(Reply::Int(0));
                };
                let items: Vec<&Position> = st.list_elems().map(|(p, _)| p).collect();
                let Some(at) = st.list_elems().position(|(_, es)| elem_value(es) == pivot) else {
                    return Ok(Reply::Int(-1));
                };
                let (lo, hi) = if before {
                    (at.checked_sub(1).map(|i| items[i].clone()), Some(items[at].clone()))
                } else {
                    (Some(items[at].clone()), items.get(at + 1).map(|p| (*p).clone()))
                };
                let len = items.len();
                let dot = self.next_dot(&key);
                let pos = Position::between(lo.as_ref(), hi.as_ref(), dot);
                let written = self.list_write(
                    &key,
                    Vec::new(),
                    vec![(Slot::ListElem(pos), Payload::Value(Some(element)))],
                    now_ms,
                    out,
                );
                assert_eq!(written, dot, "a list write took another dot than its position carries");
                Reply::Int(len as i64 + 1)
            }
            Request::LPos {
                key,
                element,
                rank,
                count,
                maxlen,
            } => {
                let items = self.list(&key, now_ms)?.map(Self::list_items).unwrap_or_default();
                let len = items.len();
                let scan = if maxlen == 0 {
                    len
                } else {
                    len.min(usize::try_from(maxlen).unwrap_or(usize::MAX))
                };
                let skip = (rank.unsigned_abs() - 1) as usize;
                let wanted = match count {
                    None => 1,
                    Some(0) => usize::MAX,
                    Some(c) => usize::try_from(c).unwrap_or(usize::MAX),
                };
                let indices: Box<dyn Iterator<Item = usize>> = if rank > 0 {
                    Box::new(0..len)
                } else {
                    Box::new((0..len).rev())
                };
                let found: Vec<usize> = indices
                    .take(scan)
                    .filter(|i| items[*i].1 == element)
                    .skip(skip)
                    .take(wanted)
                    .collect();
                match count {
                    None => found.first().map_or(Reply::Nil, |i| Reply::Int(*i as i64)),
                    Some(_) => Reply::Array(found.into_iter().map(|i| Reply::Int(i as i64)).collect()),
                }
            }
            Request::LMove {
                source,
                destination,
                from,
                to,
            } => {
                let Some(st) = self.list(&source, now_ms)? else {
                    return Ok(Reply::Nil);
                };
                let picked = match from {
                    ListEnd::Left => st.list_elems().next(),
                    ListEnd::Right => st.list_elems().next_back(),
                };
                let Some((pos, es)) = picked else {
                    return Ok(Reply::Nil);
                };
                let (pos, value) = (pos.clone(), elem_value(es));
                let removes = removes_of(st, [pos]);
                if source == destination {
                    // One op: the element leaves one end and comes back at the other.
                    self.list_push(&destination, to, vec![value.clone()], removes, now_ms, out)?;
                } else {
                    self.list(&destination, now_ms)?;
                    // Push, then remove: one unit, applied together everywhere else.
                    self.list_push(&destination, to, vec![value.clone()], Vec::new(), now_ms, out)?;
                    self.list_write(&source, removes, Vec::new(), now_ms, out);
                }
                Reply::Bulk(value)
            }
            Request::LMPop { keys, end, count } => {
                for key in keys {
                    let Some(st) = self.list(&key, now_ms)? else { continue };
                    if st.list_elems().next().is_none() {
                        continue;
                    }
                    let n = usize::try_from(count).unwrap_or(usize::MAX);
                    let values = self.list_pop(&key, end, n, now_ms, out)?.unwrap_or_default();
                    return Ok(Reply::Array(vec![
                        Reply::Bulk(key),
                        Reply::Array(values.into_iter().map(Reply::Bulk).collect()),
                    ]));
                }
                Reply::Nil
            }
            other => unreachable!("not a list-family request: {other:?}"),
        })
    }
}
