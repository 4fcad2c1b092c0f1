//! Hash commands beyond DESIGN §6 (Redis's `t_hash.c`): `HINCRBYFLOAT HSTRLEN HRANDFIELD HSCAN`.
//!
//! Replicated semantics: `HINCRBYFLOAT` writes the resulting value into the field's register, as
//! `HSET` would (field-level LWW): concurrent increments of one field in two regions keep one.
//! The others are reads of this region's state.

use super::strings::{format_float, parse_float};
use super::Engine;
use crate::command::{CommandError, Reply, Request};
use crate::engine::Output;
use crate::glob::glob_match;
use crate::state::Kind;
use bytes::Bytes;

/// Most draws a negative `SRANDMEMBER`/`HRANDFIELD` count may ask for: each is a reply element,
/// and a client must not be able to make the node allocate without bound.
pub const MAX_RANDOM_DRAWS: u64 = 1_000_000;

impl Engine {
    /// `count` items drawn from `items` as Redis's `HRANDFIELD`/`SRANDMEMBER` do: distinct (at most
    /// all of them) for `count >= 0`, `|count|` draws with repeats for `count < 0`.
    pub(super) fn random_sample<T: Clone>(&mut self, mut items: Vec<T>, count: i64) -> Result<Vec<T>, CommandError> {
        if count < 0 && count.unsigned_abs() > MAX_RANDOM_DRAWS {
            return Err(CommandError::Other(format!(
                "value is out of range (at most {MAX_RANDOM_DRAWS} draws with repetition)"
            )));
        }
        if items.is_empty() {
            return Ok(Vec::new());
        }
        if count < 0 {
            let n = count.unsigned_abs() as usize;
            return Ok((0..n).map(|_| items[self.random_below(items.len())].clone()).collect());
        }
        let n = (count as u64).min(items.len() as u64) as usize;
        // A partial Fisher–Yates shuffle: the first n places end up a uniform sample.
        for i in 0..n {
            let j = i + self.random_below(items.len() - i);
            items.swap(i, j);
        }
        items.truncate(n);
        Ok(items)
    }

    /// A hash command of this family (the caller matched the variant).
    pub(super) fn execute_hash(&mut self, req: Request, now_ms: u64, out: &mut Output) -> Result<Reply, CommandError> {
        Ok(match req {
            Request::HIncrByFloat { key, field, by } => {
                let by = parse_float(&by).ok_or(CommandError::NotFloat)?;
                let current = match self
                    .expect_kind(&key, Kind::Hash, now_ms)?
                    .and_then(|st| Self::hash_field(st, &field))
                {
                    None => 0.0,
                    Some(v) => parse_float(&v).ok_or(CommandError::HashNotFloat)?,
                };
                let new = current + by;
                if !new.is_finite() {
                    return Err(CommandError::NanOrInfinity);
                }
                let text = Bytes::from(format_float(new));
                self.hset(&key, vec![(field, text.clone())], now_ms, out)?;
                Reply::Bulk(text)
            }
            Request::HStrLen { key, field } => Reply::Int(
                self.expect_kind(&key, Kind::Hash, now_ms)?
                    .and_then(|st| Self::hash_field(st, &field))
                    .map_or(0, |v| v.len() as i64),
            ),
            Request::HRandField {
                key,
                count,
                with_values,
            } => {
                let fields = self
                    .expect_kind(&key, Kind::Hash, now_ms)?
                    .map(Self::hash_fields)
                    .unwrap_or_default();
                let Some(count) = count else {
                    let pick = self.random_sample(fields, 1)?;
                    return Ok(pick.into_iter().next().map_or(Reply::Nil, |(f, _)| Reply::Bulk(f)));
                };
                let picked = self.random_sample(fields, count)?;
                if with_values {
                    Reply::Map(
                        picked
                            .into_iter()
                            .map(|(f, v)| (Reply::Bulk(f), Reply::Bulk(v)))
                            .collect(),
                    )
                } else {
                    Reply::Array(picked.into_iter().map(|(f, _)| Reply::Bulk(f)).collect())
                }
            }
            Request::HScan { key, pattern } => {
                let fields = self
                    .expect_kind(&key, Kind::Hash, now_ms)?
                    .map(Self::hash_fields)
                    .unwrap_or_default();
                let mut flat = Vec::new();
                for (f, v) in fields {
                    if pattern.as_ref().is_none_or(|p| glob_match(p, &f)) {
                        flat.push(Reply::Bulk(f));
                        flat.push(Reply::Bulk(v));
                    }
                }
                Reply::Array(vec![Reply::bulk("0"), Reply::Array(flat)])
            }
            other => unreachable!("not a hash-family request: {other:?}"),
        })
    }
}
