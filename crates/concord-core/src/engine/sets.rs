//! Set commands beyond DESIGN §6 (Redis's `t_set.c`): `SPOP SRANDMEMBER SMOVE SINTER SUNION
//! SDIFF` and their `STORE` forms, `SINTERCARD SSCAN`.
//!
//! Replicated semantics (sets are add-wins OR-sets):
//! - `SPOP` removes the members it returns as `SREM` does (the dots this region observed). Two
//!   regions popping concurrently can return the same member — at-least-once, as Redis
//!   Active-Active; a key pattern with a home region forwards `SPOP` there, which makes it
//!   exactly-once.
//! - `SMOVE` is an `SADD` to the destination followed by an `SREM` from the source, two ops
//!   replicated as one unit ([`Engine::execute`]): another region applies both at once.
//! - `…STORE` replaces the destination: a `DEL` of it, then an `SADD` of the result. A concurrent
//!   `SADD` to the destination in another region survives (add-wins).

use super::Engine;
use crate::command::{CommandError, Reply, Request, SetOp};
use crate::engine::Output;
use crate::glob::glob_match;
use crate::state::{Kind, Slot};
use bytes::Bytes;
use std::collections::BTreeSet;

impl Engine {
    fn members_of(&self, key: &[u8], now_ms: u64) -> Result<Option<BTreeSet<Bytes>>, CommandError> {
        Ok(self
            .expect_kind(key, Kind::Set, now_ms)?
            .map(|st| Self::set_members(st).into_iter().collect()))
    }

    /// `SINTER`/`SUNION`/`SDIFF` of `keys` (every key is type-checked first, as in Redis).
    fn combine(&self, op: SetOp, keys: &[Bytes], now_ms: u64) -> Result<BTreeSet<Bytes>, CommandError> {
        let sets = keys
            .iter()
            .map(|k| self.members_of(k, now_ms))
            .collect::<Result<Vec<_>, _>>()?;
        let mut sets = sets.into_iter();
        let first = sets.next().flatten().unwrap_or_default();
        Ok(match op {
            SetOp::Union => sets.flatten().fold(first, |mut acc, s| {
                acc.extend(s);
                acc
            }),
            SetOp::Diff => sets
                .flatten()
                .fold(first, |acc, s| acc.difference(&s).cloned().collect()),
            SetOp::Inter => {
                let mut acc = first;
                for s in sets {
                    let s = s.unwrap_or_default();
                    acc.retain(|m| s.contains(m));
                }
                acc
            }
        })
    }

    /// A set command of this family (the caller matched the variant).
    pub(super) fn execute_set(&mut self, req: Request, now_ms: u64, out: &mut Output) -> Result<Reply, CommandError> {
        Ok(match req {
            Request::SPop { key, count } => {
                let members: Vec<Bytes> = self.members_of(&key, now_ms)?.unwrap_or_default().into_iter().collect();
                let n = count.map_or(1, |c| i64::try_from(c).unwrap_or(i64::MAX));
                let picked = self.random_sample(members, n)?;
                if !picked.is_empty() {
                    self.remove_slots(&key, Kind::Set, picked.iter().cloned().map(Slot::Member), now_ms, out)?;
                }
                match count {
                    None => picked.into_iter().next().map_or(Reply::Nil, Reply::Bulk),
                    Some(_) => Reply::Set(picked.into_iter().map(Reply::Bulk).collect()),
                }
            }
            Request::SRandMember { key, count } => {
                let members: Vec<Bytes> = self.members_of(&key, now_ms)?.unwrap_or_default().into_iter().collect();
                match count {
                    None => self
                        .random_sample(members, 1)?
                        .into_iter()
                        .next()
                        .map_or(Reply::Nil, Reply::Bulk),
                    Some(c) => Reply::Array(self.random_sample(members, c)?.into_iter().map(Reply::Bulk).collect()),
                }
            }
            Request::SMove {
                source,
                destination,
                member,
            } => {
                let src = self.members_of(&source, now_ms)?;
                self.expect_kind(&destination, Kind::Set, now_ms)?;
                if !src.is_some_and(|s| s.contains(&member)) {
                    return Ok(Reply::Int(0));
                }
                if source != destination {
                    // Add first, then remove: in between, other regions see the member in both.
                    self.execute(
                        Request::SAdd {
                            key: destination,
                            members: vec![member.clone()],
                        },
                        now_ms,
                        out,
                    )?;
                    self.remove_slots(&source, Kind::Set, [Slot::Member(member)], now_ms, out)?;
                }
                Reply::Int(1)
            }
            Request::SCombine { op, keys } => {
                Reply::Set(self.combine(op, &keys, now_ms)?.into_iter().map(Reply::Bulk).collect())
            }
            Request::SCombineStore { op, destination, keys } => {
                let result = self.combine(op, &keys, now_ms)?;
                let n = result.len() as i64;
                if self.live_kind(&destination, now_ms).is_some() {
                    self.delete_key(&destination, now_ms, out);
                }
                if !result.is_empty() {
                    self.execute(
                        Request::SAdd {
                            key: destination,
                            members: result.into_iter().collect(),
                        },
                        now_ms,
                        out,
                    )?;
                }
                Reply::Int(n)
            }
            Request::SInterCard { keys, limit } => {
                let n = self.combine(SetOp::Inter, &keys, now_ms)?.len() as u64;
                Reply::Int(if limit > 0 { n.min(limit) } else { n } as i64)
            }
            Request::SScan { key, pattern } => {
                let members = self.members_of(&key, now_ms)?.unwrap_or_default();
                let found = members
                    .into_iter()
                    .filter(|m| pattern.as_ref().is_none_or(|p| glob_match(p, m)))
                    .map(Reply::Bulk)
                    .collect();
                Reply::Array(vec![Reply::bulk("0"), Reply::Array(found)])
            }
            other => unreachable!("not a set-family request: {other:?}"),
        })
    }
}
