//! `SORT` and `SORT_RO` (Redis's `sort.c`) on lists, sets and sorted sets.
//!
//! Replicated semantics: a read of this region's state (the key, and the keys its `BY`/`GET`
//! patterns name). With `STORE`, the destination is replaced as by `…STORE` set commands: a
//! `DEL` of it (what this region observed), then one `RPUSH` of the result; an element pushed to
//! the destination concurrently in another region survives.

use super::Engine;
use crate::command::{CommandError, ListEnd, Reply, Request};
use crate::engine::Output;
use crate::state::Kind;
use bytes::Bytes;
use std::cmp::Ordering;

/// Redis's `string2d`-like parse of a sort weight: a finite float, no surrounding spaces.
fn weight(v: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(v).ok()?;
    if s.is_empty() || s.trim() != s {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| !f.is_nan())
}

impl Engine {
    /// Redis's `lookupKeyByPattern`: the value the pattern names for `element` — `#` is the
    /// element, `key*` a string key, `key*->field` a hash field; `None` if absent.
    fn sort_lookup(&self, pattern: &[u8], element: &[u8], now_ms: u64) -> Option<Bytes> {
        if pattern == b"#" {
            return Some(Bytes::copy_from_slice(element));
        }
        let star = pattern.iter().position(|&b| b == b'*')?;
        let rest = &pattern[star + 1..];
        let (suffix, field) = match rest.windows(2).position(|w| w == b"->") {
            Some(i) if i + 2 < rest.len() => (&rest[..i], Some(&rest[i + 2..])),
            _ => (rest, None),
        };
        let mut key = pattern[..star].to_vec();
        key.extend_from_slice(element);
        key.extend_from_slice(suffix);
        match field {
            None => self.string_value(&key, now_ms).ok().flatten(),
            Some(f) => {
                let st = self.expect_kind(&key, Kind::Hash, now_ms).ok().flatten()?;
                Self::hash_field(st, &Bytes::copy_from_slice(f))
            }
        }
    }

    pub(super) fn execute_sort(&mut self, req: Request, now_ms: u64, out: &mut Output) -> Result<Reply, CommandError> {
        let Request::Sort {
            key,
            by,
            limit,
            get,
            desc,
            alpha,
            store,
        } = req
        else {
            unreachable!("not SORT: {req:?}")
        };
        let dont_sort = by.as_ref().is_some_and(|p| !p.contains(&b'*'));
        // Unsorted (`BY nosort`) and `DESC`: a list from its tail, a sorted set highest score
        // first, as Redis (a set has no order to reverse).
        let elements: Vec<Bytes> = match self.live_kind(&key, now_ms) {
            None => Vec::new(),
            Some((Kind::Set, st)) => Self::set_members(st),
            Some((kind @ (Kind::List | Kind::ZSet), st)) => {
                let mut elements: Vec<Bytes> = if kind == Kind::List {
                    st.list_elems().map(|(_, es)| super::lists::elem_value(es)).collect()
                } else {
                    Self::zset_sorted(st).into_iter().map(|(_, m)| m).collect()
                };
                if dont_sort && desc {
                    elements.reverse();
                }
                elements
            }
            Some(_) => return Err(CommandError::WrongType),
        };
        let mut items: Vec<(Bytes, Option<Bytes>)> = elements
            .into_iter()
            .map(|e| {
                let w = match &by {
                    Some(p) if !dont_sort => self.sort_lookup(p, &e, now_ms),
                    _ => None,
                };
                (e, w)
            })
            .collect();
        if !dont_sort {
            if alpha {
                let sort_key = |(e, w): &(Bytes, Option<Bytes>)| -> Option<Bytes> {
                    if by.is_some() {
                        w.clone()
                    } else {
                        Some(e.clone())
                    }
                };
                items.sort_by(|a, b| {
                    let cmp = sort_key(a).cmp(&sort_key(b));
                    if desc {
                        cmp.reverse()
                    } else {
                        cmp
                    }
                });
            } else {
                let mut scored = Vec::with_capacity(items.len());
                for (e, w) in items {
                    let score = match (&by, &w) {
                        (Some(_), None) => Some(0.0),
                        (Some(_), Some(v)) => weight(v),
                        (None, _) => weight(&e),
                    }
                    .ok_or_else(|| CommandError::Other("One or more scores can't be converted into double".into()))?;
                    scored.push((score, e));
                }
                scored.sort_by(|(sa, ea), (sb, eb)| {
                    let cmp = sa.partial_cmp(sb).unwrap_or(Ordering::Equal).then_with(|| ea.cmp(eb));
                    if desc {
                        cmp.reverse()
                    } else {
                        cmp
                    }
                });
                items = scored.into_iter().map(|(_, e)| (e, None)).collect();
            }
        }
        let n = items.len() as i64;
        let (start, end) = match limit {
            None => (0, n - 1),
            Some((offset, count)) => {
                let start = offset.max(0);
                let end = if count < 0 {
                    n - 1
                } else {
                    start.saturating_add(count) - 1
                };
                if start >= n {
                    (0, -1)
                } else {
                    (start, end.min(n - 1))
                }
            }
        };
        let picked = if start <= end {
            &items[start as usize..=end as usize]
        } else {
            &items[..0]
        };
        let mut result: Vec<Option<Bytes>> = Vec::new();
        for (e, _) in picked {
            if get.is_empty() {
                result.push(Some(e.clone()));
            }
            for pattern in &get {
                result.push(self.sort_lookup(pattern, e, now_ms));
            }
        }
        // SORT … STORE replaces the destination whatever its type, as in Redis.
        let Some(dest) = store else {
            return Ok(Reply::Array(
                result.into_iter().map(|v| v.map_or(Reply::Nil, Reply::Bulk)).collect(),
            ));
        };
        let len = result.len() as i64;
        if self.live_kind(&dest, now_ms).is_some() {
            self.delete_key(&dest, now_ms, out);
        }
        if !result.is_empty() {
            self.execute(
                Request::ListPush {
                    key: dest,
                    end: ListEnd::Right,
                    values: result.into_iter().map(Option::unwrap_or_default).collect(),
                    if_exists: false,
                },
                now_ms,
                out,
            )?;
        }
        Ok(Reply::Int(len))
    }
}
