//! Sorted-set commands (Redis's `t_zset.c`).
//!
//! Replicated semantics (DESIGN §8.4): members are an add-wins set; `ZADD` sets a member's score,
//! last writer wins by HLC; `ZINCRBY` adds, and concurrent increments add up (like counters); a
//! `ZADD` resets the increments it had seen. Each member is one slot ([`Slot::Scored`]) holding
//! the entries of the writes that made its score: a `ZADD` entry ([`Payload::Score`]) and the
//! `ZINCRBY` entries since ([`Payload::Incr`]). A `ZADD` removes the member's entries it observed
//! and adds its score; a `ZINCRBY` adds its increment and removes nothing; `ZREM` (and every
//! removal: pops, `ZREMRANGE…`, `DEL`) removes the observed entries. A member is present while
//! any entry is left (so a `ZADD` or `ZINCRBY` concurrent with a `ZREM` keeps it: add-wins), and
//! its score is [`crate::state::KeyState::zscore`]: the winning `ZADD` score plus the increments
//! left, summed in dot order so every region computes the same bits.
//!
//! Reads are this region's view. `ZPOPMIN`/`ZPOPMAX`/`ZMPOP` remove what they return as `ZREM`
//! does: two regions popping at once can return the same member (at-least-once, as Redis
//! Active-Active), unless the key has a home region (pops forwarded there: exactly-once).
//! `…STORE` forms replace the destination: a `DEL` of it, then a `ZADD` of the result.
//!
//! Geo (Redis's `geo.c`) is a sorted set whose scores are 52-bit geohashes ([`crate::geo`]):
//! `GEOADD` is a `ZADD`, the rest read (or, with `STORE`, store like `ZRANGESTORE`).

use super::Engine;
use crate::command::{CommandError, Reply};
use crate::engine::Output;
use crate::geo;
use crate::glob::glob_match;
use crate::op::Delta;
use crate::state::{zscore_of, KeyState, Kind, Payload, Slot};
use crate::zcommand::{
    Aggregate, GeoFrom, GeoSearch, GeoShape, LexBound, ScoreBound, ZAddFlags, ZCombineOp, ZRangeBy, ZsetRequest,
};
use bytes::Bytes;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// A sorted set as read: `(score, member)` in Redis's order (score, then member bytes).
pub(super) type Sorted = Vec<(f64, Bytes)>;

fn redis_order(a: &(f64, Bytes), b: &(f64, Bytes)) -> Ordering {
    a.0.partial_cmp(&b.0)
        .unwrap_or(Ordering::Equal)
        .then_with(|| a.1.cmp(&b.1))
}

/// A score as Redis 7.2 replies it: `inf`, `-inf`, else the shortest text that reads back as the
/// same double, in exponent form (`1.5e+300`) for very large or very small magnitudes.
pub fn score_text(score: f64) -> Bytes {
    let magnitude = score.abs();
    if score.is_finite() && magnitude != 0.0 && !(1e-4..1e17).contains(&magnitude) {
        let text = format!("{score:e}");
        // Rust writes `1e300` and `1e-7`; C (and Redis) `1e+300` and `1e-07`.
        let (mantissa, exponent) = text.split_once('e').expect("exponent form");
        let (sign, digits) = match exponent.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exponent),
        };
        return Bytes::from(format!("{mantissa}e{sign}{digits:0>2}"));
    }
    // `inf`, `-inf`, `-0` and plain decimals are written as Rust writes them.
    Bytes::from(format!("{score}"))
}

fn score_reply(score: f64) -> Reply {
    Reply::Double(score)
}

fn above_min(score: f64, min: &ScoreBound) -> bool {
    if min.exclusive {
        score > min.value
    } else {
        score >= min.value
    }
}

fn below_max(score: f64, max: &ScoreBound) -> bool {
    if max.exclusive {
        score < max.value
    } else {
        score <= max.value
    }
}

fn lex_above_min(member: &[u8], min: &LexBound) -> bool {
    match min {
        LexBound::Min => true,
        LexBound::Max => false,
        LexBound::Inclusive(b) => member >= b.as_ref(),
        LexBound::Exclusive(b) => member > b.as_ref(),
    }
}

fn lex_below_max(member: &[u8], max: &LexBound) -> bool {
    match max {
        LexBound::Min => false,
        LexBound::Max => true,
        LexBound::Inclusive(b) => member <= b.as_ref(),
        LexBound::Exclusive(b) => member < b.as_ref(),
    }
}

/// Sort `items` in the order a command reads them (`rev`: highest first).
fn sort_in(items: &mut Sorted, rev: bool) {
    if rev {
        items.sort_by(|a, b| redis_order(b, a));
    } else {
        items.sort_by(redis_order);
    }
}

/// The members `by` selects from `items` (any order), in the order the command reads them
/// (`rev`: highest first), after `LIMIT offset count` (count < 0: all the rest; offset < 0:
/// nothing, as Redis). Sorts only what it must: a rank window `[start, end]` partitions around
/// `end` and sorts the `end + 1` first (a top-10 of a big set is not a full sort), a score or lex
/// range sorts only the members in range.
pub(super) fn select(mut items: Sorted, by: &ZRangeBy, rev: bool, limit: Option<(i64, i64)>) -> Sorted {
    let picked: Sorted = match by {
        ZRangeBy::Rank(start, end) => {
            let len = items.len() as i64;
            let (mut start, mut end) = (*start, *end);
            if start < 0 {
                start += len;
            }
            if end < 0 {
                end += len;
            }
            start = start.max(0);
            if start > end || start >= len {
                return Vec::new();
            }
            end = end.min(len - 1);
            let keep = (end + 1) as usize;
            if keep < items.len() {
                if rev {
                    items.select_nth_unstable_by(end as usize, |a, b| redis_order(b, a));
                } else {
                    items.select_nth_unstable_by(end as usize, redis_order);
                }
                items.truncate(keep);
            }
            sort_in(&mut items, rev);
            items.drain(..start as usize);
            items
        }
        ZRangeBy::Score(min, max) => {
            items.retain(|(s, _)| above_min(*s, min) && below_max(*s, max));
            sort_in(&mut items, rev);
            items
        }
        ZRangeBy::Lex(min, max) => {
            items.retain(|(_, m)| lex_above_min(m, min) && lex_below_max(m, max));
            sort_in(&mut items, rev);
            items
        }
    };
    match limit {
        None => picked,
        Some((offset, _)) if offset < 0 => Vec::new(),
        Some((offset, count)) => {
            let rest = picked.into_iter().skip(offset as usize);
            if count < 0 {
                rest.collect()
            } else {
                rest.take(count as usize).collect()
            }
        }
    }
}

/// How many members a score or lex range holds (no sorting).
fn count_in(items: &Sorted, by: &ZRangeBy) -> usize {
    items
        .iter()
        .filter(|(s, m)| match by {
            ZRangeBy::Score(min, max) => above_min(*s, min) && below_max(*s, max),
            ZRangeBy::Lex(min, max) => lex_above_min(m, min) && lex_below_max(m, max),
            ZRangeBy::Rank(..) => true,
        })
        .count()
}

/// Members, with their scores when `with_scores` (pairs: flat on RESP2, nested on RESP3).
fn members_reply(items: Sorted, with_scores: bool) -> Reply {
    if with_scores {
        Reply::Pairs(
            items
                .into_iter()
                .map(|(s, m)| (Reply::Bulk(m), score_reply(s)))
                .collect(),
        )
    } else {
        Reply::Array(items.into_iter().map(|(_, m)| Reply::Bulk(m)).collect())
    }
}

impl Engine {
    /// Every member of a sorted-set state with its score, in Redis's order.
    pub(super) fn zset_sorted(st: &KeyState) -> Sorted {
        let mut out: Sorted = st.scored().map(|(m, es)| (zscore_of(st, m, es), m.clone())).collect();
        out.sort_by(redis_order);
        out
    }

    /// Every member with its score, in member order (not sorted by score).
    fn zset_unsorted(st: &KeyState) -> Sorted {
        st.scored().map(|(m, es)| (zscore_of(st, m, es), m.clone())).collect()
    }

    /// A live sorted set's members and scores, not sorted by score (see [`select`]).
    fn zset_read(&self, key: &[u8], now_ms: u64) -> Result<Option<Sorted>, CommandError> {
        Ok(self.expect_kind(key, Kind::ZSet, now_ms)?.map(Self::zset_unsorted))
    }

    /// Whether `key` is a live, non-empty sorted set (WRONGTYPE for another type).
    fn zset_nonempty(&self, key: &[u8], now_ms: u64) -> Result<bool, CommandError> {
        Ok(self
            .expect_kind(key, Kind::ZSet, now_ms)?
            .is_some_and(|st| st.scored().next().is_some()))
    }

    /// A `ZUNION`/`ZINTER`/`ZDIFF` input: a sorted set, or a set (every score 1, as Redis).
    fn zset_input(&self, key: &[u8], now_ms: u64) -> Result<BTreeMap<Bytes, f64>, CommandError> {
        Ok(match self.live_kind(key, now_ms) {
            None => BTreeMap::new(),
            Some((Kind::ZSet, st)) => Self::zset_unsorted(st).into_iter().map(|(s, m)| (m, s)).collect(),
            Some((Kind::Set, st)) => Self::set_members(st).into_iter().map(|m| (m, 1.0)).collect(),
            Some(_) => return Err(CommandError::WrongType),
        })
    }

    /// One sorted-set write: `scores` are `ZADD`s (each removes the member's observed entries),
    /// `incrs` are `ZINCRBY`s `(member, increment, score after it as read here)`: each replaces
    /// this replica's run entry on the member (see [`Payload::ScoreRun`]) and removes nothing
    /// else. The caller checked the key's type; a member is in one list at most.
    pub(super) fn zset_write(
        &mut self,
        key: &Bytes,
        scores: Vec<(Bytes, f64)>,
        incrs: Vec<(Bytes, f64, f64)>,
        now_ms: u64,
        out: &mut Output,
    ) {
        if scores.is_empty() && incrs.is_empty() {
            return;
        }
        let me = self.own_replica(key);
        let live = self.live_kind(key, now_ms).is_some();
        let mut removes = self.stale_removes(key, now_ms);
        let mut adds = Vec::with_capacity(scores.len() + incrs.len());
        let st = self.keys.get(key);
        for (m, s) in scores {
            if let Some(st) = st {
                removes.extend(st.observed_slot(&Slot::Scored(m.clone())));
            }
            adds.push((Slot::Scored(m), Payload::Score(s.to_bits())));
        }
        for (m, by, new_score) in incrs {
            let (start, sum, base, exact) = match st.filter(|_| live) {
                None => (0, by, None, Some((new_score.to_bits(), None))),
                Some(st) => {
                    // Floors on this replica's runs it has seen: folded into the entry below,
                    // or about runs that are over. Either way this write supersedes them.
                    removes.extend(st.observed_slot(&Slot::ScoreFloor(m.clone(), me)));
                    let (start, sum, base) = match st.score_run(&m, me) {
                        // The run goes on while its entry is here, with what removals took of
                        // it: a removal concurrent with this write may still take more (a later
                        // floor wins over the folded one, as for counters).
                        Some(run) => {
                            removes.push((Slot::Scored(m.clone()), run.dot));
                            (run.id, run.sum + by, st.floor_of(&m, &run))
                        }
                        // A removal this replica saw took the run (or there was none): a new one.
                        None => (0, by, None),
                    };
                    let entries = st.entries(&Slot::Scored(m.clone()));
                    let alone = entries.is_none_or(|es| {
                        es.iter()
                            .all(|(d, e)| matches!(e.payload, Payload::Score(_)) || d.replica == me)
                    });
                    let on = entries.and_then(|es| crate::state::zadd_winner(es).map(|(d, _)| *d));
                    (start, sum, base, alone.then_some((new_score.to_bits(), on)))
                }
            };
            let sum = if sum.is_nan() { 0.0 } else { sum };
            adds.push((
                Slot::Scored(m),
                Payload::ScoreRun {
                    start,
                    sum: sum.to_bits(),
                    base: base.map(|(seq, f)| (seq, f.to_bits())),
                    exact,
                },
            ));
        }
        self.write(key, Delta { removes, adds }, now_ms, out);
    }

    fn zadd(
        &mut self,
        key: &Bytes,
        flags: ZAddFlags,
        members: Vec<(f64, Bytes)>,
        now_ms: u64,
        out: &mut Output,
    ) -> Result<Reply, CommandError> {
        let st = self.expect_kind(key, Kind::ZSet, now_ms)?;
        // Pairs apply one after another, as in Redis (a member given twice: the last counts).
        let mut current: BTreeMap<Bytes, Option<f64>> = BTreeMap::new();
        let mut scores: BTreeMap<Bytes, f64> = BTreeMap::new();
        let mut incrs: Vec<(Bytes, f64, f64)> = Vec::new();
        let (mut added, mut changed) = (0i64, 0i64);
        let mut last: Option<f64> = None;
        for (score, member) in members {
            let cur = *current
                .entry(member.clone())
                .or_insert_with(|| st.and_then(|st| st.zscore(&member)));
            last = None;
            let new = match cur {
                None if flags.xx => continue,
                None => score,
                Some(_) if flags.nx => continue,
                Some(c) => {
                    let new = if flags.incr { c + score } else { score };
                    if new.is_nan() {
                        return Err(CommandError::ScoreNan);
                    }
                    if (flags.gt && new <= c) || (flags.lt && new >= c) {
                        continue;
                    }
                    new
                }
            };
            match cur {
                None => added += 1,
                Some(c) if c != new => changed += 1,
                Some(_) => {}
            }
            current.insert(member.clone(), Some(new));
            last = Some(new);
            if flags.incr {
                incrs.push((member, score, new));
            } else {
                scores.insert(member, new);
            }
        }
        let incremented = incrs.first().map(|(m, ..)| m.clone());
        self.zset_write(key, scores.into_iter().collect(), incrs, now_ms, out);
        if let (Some(_), Some(m)) = (last, incremented.filter(|_| flags.incr)) {
            // The score as reads see it now: the one computed above, unless other regions'
            // increments are here too (then each run's sum is added, see `KeyState::zscore`).
            last = self.keys.get(key).and_then(|st| st.zscore(&m));
        }
        Ok(if flags.incr {
            last.map_or(Reply::Nil, score_reply)
        } else if flags.ch {
            Reply::Int(added + changed)
        } else {
            Reply::Int(added)
        })
    }

    /// Remove `members` (present ones) from a live sorted set.
    fn zrem(&mut self, key: &Bytes, members: impl IntoIterator<Item = Bytes>, now_ms: u64, out: &mut Output) -> i64 {
        self.remove_slots(key, Kind::ZSet, members.into_iter().map(Slot::Scored), now_ms, out)
            .unwrap_or(0)
    }

    /// Replace `destination` with `items` (a `DEL`, then a `ZADD`); the number stored.
    fn zstore(&mut self, destination: &Bytes, items: Sorted, now_ms: u64, out: &mut Output) -> i64 {
        let n = items.len() as i64;
        if self.live_kind(destination, now_ms).is_some() {
            self.delete_key(destination, now_ms, out);
        }
        self.zset_write(
            destination,
            items.into_iter().map(|(s, m)| (m, s)).collect(),
            Vec::new(),
            now_ms,
            out,
        );
        n
    }

    fn zcombine(
        &self,
        op: ZCombineOp,
        keys: &[Bytes],
        weights: Option<&[f64]>,
        aggregate: Aggregate,
        now_ms: u64,
    ) -> Result<Sorted, CommandError> {
        let inputs = keys
            .iter()
            .map(|k| self.zset_input(k, now_ms))
            .collect::<Result<Vec<_>, _>>()?;
        let weighted = |i: usize, s: f64| {
            let v = s * weights.map_or(1.0, |w| w[i]);
            if v.is_nan() {
                0.0
            } else {
                v
            }
        };
        let combine = |acc: f64, v: f64| match aggregate {
            Aggregate::Sum => {
                let s = acc + v;
                if s.is_nan() {
                    0.0
                } else {
                    s
                }
            }
            Aggregate::Min => acc.min(v),
            Aggregate::Max => acc.max(v),
        };
        let mut result: BTreeMap<Bytes, f64> = BTreeMap::new();
        match op {
            ZCombineOp::Union => {
                for (i, input) in inputs.iter().enumerate() {
                    for (m, s) in input {
                        let v = weighted(i, *s);
                        result
                            .entry(m.clone())
                            .and_modify(|acc| *acc = combine(*acc, v))
                            .or_insert(v);
                    }
                }
            }
            ZCombineOp::Inter => {
                if let Some((first, rest)) = inputs.split_first() {
                    'members: for (m, s) in first {
                        let mut acc = weighted(0, *s);
                        for (j, input) in rest.iter().enumerate() {
                            match input.get(m) {
                                Some(s) => acc = combine(acc, weighted(j + 1, *s)),
                                None => continue 'members,
                            }
                        }
                        result.insert(m.clone(), acc);
                    }
                }
            }
            ZCombineOp::Diff => {
                if let Some((first, rest)) = inputs.split_first() {
                    for (m, s) in first {
                        if !rest.iter().any(|r| r.contains_key(m)) {
                            result.insert(m.clone(), *s);
                        }
                    }
                }
            }
        }
        let mut sorted: Sorted = result.into_iter().map(|(m, s)| (s, m)).collect();
        sorted.sort_by(redis_order);
        Ok(sorted)
    }

    /// Pop up to `count` of the lowest (or highest) members of a live sorted set.
    fn zpop(
        &mut self,
        key: &Bytes,
        max: bool,
        count: u64,
        now_ms: u64,
        out: &mut Output,
    ) -> Result<Sorted, CommandError> {
        let Some(items) = self.zset_read(key, now_ms)? else {
            return Ok(Vec::new());
        };
        if count == 0 {
            return Ok(Vec::new());
        }
        let last = i64::try_from(count).unwrap_or(i64::MAX).saturating_sub(1);
        let picked = select(items, &ZRangeBy::Rank(0, last), max, None);
        self.zrem(key, picked.iter().map(|(_, m)| m.clone()), now_ms, out);
        Ok(picked)
    }

    /// A sorted-set command (the caller matched `Request::Zset`).
    pub(super) fn execute_zset(
        &mut self,
        req: ZsetRequest,
        now_ms: u64,
        out: &mut Output,
    ) -> Result<Reply, CommandError> {
        use ZsetRequest as Z;
        Ok(match req {
            Z::Add { key, flags, members } => self.zadd(&key, flags, members, now_ms, out)?,
            Z::IncrBy { key, by, member } => {
                let flags = ZAddFlags {
                    incr: true,
                    ..ZAddFlags::default()
                };
                self.zadd(&key, flags, vec![(by, member)], now_ms, out)?
            }
            Z::Rem { key, members } => {
                self.expect_kind(&key, Kind::ZSet, now_ms)?;
                Reply::Int(self.zrem(&key, members, now_ms, out))
            }
            Z::Card(key) => Reply::Int(
                self.expect_kind(&key, Kind::ZSet, now_ms)?
                    .map_or(0, |st| st.scored().count()) as i64,
            ),
            Z::Score { key, member } => self
                .expect_kind(&key, Kind::ZSet, now_ms)?
                .and_then(|st| st.zscore(&member))
                .map_or(Reply::Nil, score_reply),
            Z::MScore { key, members } => {
                let st = self.expect_kind(&key, Kind::ZSet, now_ms)?;
                Reply::Array(
                    members
                        .iter()
                        .map(|m| st.and_then(|st| st.zscore(m)).map_or(Reply::Nil, score_reply))
                        .collect(),
                )
            }
            Z::Rank {
                key,
                member,
                rev,
                with_score,
            } => {
                let items = self.zset_read(&key, now_ms)?.unwrap_or_default();
                let Some(me) = items.iter().find(|(_, m)| *m == member).cloned() else {
                    return Ok(Reply::Nil);
                };
                // The rank is how many members come before it: a count, not a sort.
                let before = items
                    .iter()
                    .filter(|other| {
                        let order = redis_order(other, &me);
                        if rev {
                            order == Ordering::Greater
                        } else {
                            order == Ordering::Less
                        }
                    })
                    .count();
                let rank = Reply::Int(before as i64);
                if with_score {
                    Reply::Array(vec![rank, score_reply(me.0)])
                } else {
                    rank
                }
            }
            Z::Count { key, min, max } => {
                let items = self.zset_read(&key, now_ms)?.unwrap_or_default();
                Reply::Int(count_in(&items, &ZRangeBy::Score(min, max)) as i64)
            }
            Z::LexCount { key, min, max } => {
                let items = self.zset_read(&key, now_ms)?.unwrap_or_default();
                Reply::Int(count_in(&items, &ZRangeBy::Lex(min, max)) as i64)
            }
            Z::Range {
                key,
                by,
                rev,
                limit,
                with_scores,
            } => {
                let items = self.zset_read(&key, now_ms)?.unwrap_or_default();
                members_reply(select(items, &by, rev, limit), with_scores)
            }
            Z::RangeStore {
                destination,
                key,
                by,
                rev,
                limit,
            } => {
                let items = self.zset_read(&key, now_ms)?.unwrap_or_default();
                let picked = select(items, &by, rev, limit);
                Reply::Int(self.zstore(&destination, picked, now_ms, out))
            }
            Z::Pop { key, max, count } => {
                let picked = self.zpop(&key, max, count.unwrap_or(1), now_ms, out)?;
                match count {
                    // Without a count, one flat `[member, score]` on RESP3 too (as Redis).
                    None => Reply::Array(
                        picked
                            .into_iter()
                            .flat_map(|(s, m)| [Reply::Bulk(m), score_reply(s)])
                            .collect(),
                    ),
                    Some(_) => members_reply(picked, true),
                }
            }
            Z::MPop { keys, max, count } => {
                for key in &keys {
                    // Every key is type-checked up to the first non-empty one, as in Redis.
                    if self.zset_nonempty(key, now_ms)? {
                        let picked = self.zpop(key, max, count, now_ms, out)?;
                        let pairs = picked
                            .into_iter()
                            .map(|(s, m)| Reply::Array(vec![Reply::Bulk(m), score_reply(s)]))
                            .collect();
                        return Ok(Reply::Array(vec![Reply::Bulk(key.clone()), Reply::Array(pairs)]));
                    }
                }
                Reply::Nil
            }
            Z::PopFirst { keys, max } => {
                for key in &keys {
                    if self.zset_nonempty(key, now_ms)? {
                        let picked = self.zpop(key, max, 1, now_ms, out)?;
                        let (s, m) = picked.into_iter().next().expect("a non-empty set pops one");
                        return Ok(Reply::Array(vec![
                            Reply::Bulk(key.clone()),
                            Reply::Bulk(m),
                            score_reply(s),
                        ]));
                    }
                }
                Reply::Nil
            }
            Z::RemRange { key, by } => {
                let items = self.zset_read(&key, now_ms)?.unwrap_or_default();
                let picked = select(items, &by, false, None);
                Reply::Int(self.zrem(&key, picked.into_iter().map(|(_, m)| m), now_ms, out))
            }
            Z::Combine {
                op,
                keys,
                weights,
                aggregate,
                with_scores,
            } => members_reply(
                self.zcombine(op, &keys, weights.as_deref(), aggregate, now_ms)?,
                with_scores,
            ),
            Z::CombineStore {
                op,
                destination,
                keys,
                weights,
                aggregate,
            } => {
                let result = self.zcombine(op, &keys, weights.as_deref(), aggregate, now_ms)?;
                Reply::Int(self.zstore(&destination, result, now_ms, out))
            }
            Z::InterCard { keys, limit } => {
                let n = self
                    .zcombine(ZCombineOp::Inter, &keys, None, Aggregate::Sum, now_ms)?
                    .len() as u64;
                Reply::Int(if limit > 0 { n.min(limit) } else { n } as i64)
            }
            Z::RandMember {
                key,
                count,
                with_scores,
            } => {
                let sorted = self.zset_read(&key, now_ms)?.unwrap_or_default();
                match count {
                    None => self
                        .random_sample(sorted, 1)?
                        .into_iter()
                        .next()
                        .map_or(Reply::Nil, |(_, m)| Reply::Bulk(m)),
                    Some(c) => members_reply(self.random_sample(sorted, c)?, with_scores),
                }
            }
            Z::Scan { key, pattern } => {
                let sorted = self
                    .expect_kind(&key, Kind::ZSet, now_ms)?
                    .map(Self::zset_sorted)
                    .unwrap_or_default();
                // Scan replies are flat with scores as bulk strings, on RESP3 too (as Redis).
                let found = sorted
                    .into_iter()
                    .filter(|(_, m)| pattern.as_ref().is_none_or(|p| glob_match(p, m)))
                    .flat_map(|(s, m)| [Reply::Bulk(m), Reply::Bulk(score_text(s))])
                    .collect();
                Reply::Array(vec![Reply::bulk("0"), Reply::Array(found)])
            }
            Z::GeoPos { key, members } => {
                let st = self.expect_kind(&key, Kind::ZSet, now_ms)?;
                Reply::Array(
                    members
                        .iter()
                        .map(|m| match st.and_then(|st| st.zscore(m)).and_then(geo::decode_score) {
                            Some((lon, lat)) => Reply::Array(vec![coord_reply(lon), coord_reply(lat)]),
                            None => Reply::Nil,
                        })
                        .collect(),
                )
            }
            Z::GeoDist { key, from, to, unit_m } => {
                let st = self.expect_kind(&key, Kind::ZSet, now_ms)?;
                let point = |m: &Bytes| st.and_then(|st| st.zscore(m)).and_then(geo::decode_score);
                match (point(&from), point(&to)) {
                    (Some((lon1, lat1)), Some((lon2, lat2))) => Reply::Bulk(Bytes::from(format!(
                        "{:.4}",
                        geo::distance(lon1, lat1, lon2, lat2) / unit_m
                    ))),
                    _ => Reply::Nil,
                }
            }
            Z::GeoHash { key, members } => {
                let st = self.expect_kind(&key, Kind::ZSet, now_ms)?;
                Reply::Array(
                    members
                        .iter()
                        .map(|m| {
                            st.and_then(|st| st.zscore(m))
                                .and_then(geo::hash_string)
                                .map_or(Reply::Nil, Reply::bulk)
                        })
                        .collect(),
                )
            }
            Z::GeoSearch(search) => self.geo_search(*search, now_ms, out)?,
        })
    }

    /// `GEOSEARCH` and friends: every member is checked against the shape (Redis scans the
    /// geohash cells around the centre, then checks the same exact distance: the same members).
    fn geo_search(&mut self, search: GeoSearch, now_ms: u64, out: &mut Output) -> Result<Reply, CommandError> {
        let Some(st) = self.expect_kind(&search.key, Kind::ZSet, now_ms)? else {
            // No source: the destination is deleted (as Redis does), the answer is empty.
            return Ok(match search.store {
                Some((destination, _)) => Reply::Int(self.zstore(&destination, Vec::new(), now_ms, out)),
                None => Reply::Array(Vec::new()),
            });
        };
        let (lon, lat) = match &search.from {
            GeoFrom::LonLat(lon, lat) => (*lon, *lat),
            GeoFrom::Member(m) => st
                .zscore(m)
                .and_then(geo::decode_score)
                .ok_or_else(|| CommandError::Other("could not decode requested zset member".into()))?,
        };
        // (distance in meters, score, member, lon, lat), in score order.
        let mut found: Vec<(f64, f64, Bytes, f64, f64)> = Vec::new();
        for (score, member) in Self::zset_sorted(st) {
            let Some((plon, plat)) = geo::decode_score(score) else {
                continue;
            };
            let dist = match search.shape {
                GeoShape::Radius(r) => Some(geo::distance(lon, lat, plon, plat)).filter(|d| *d <= r),
                GeoShape::Box { width, height } => geo::distance_in_box(width, height, lon, lat, plon, plat),
            };
            if let Some(d) = dist {
                found.push((d, score, member, plon, plat));
                if search.count.is_some_and(|(n, any)| any && found.len() as u64 >= n) {
                    break;
                }
            }
        }
        // COUNT without ANY means the nearest ones: sorted ascending unless told otherwise.
        let desc = match (search.desc, search.count) {
            (None, Some((_, false))) => Some(false),
            (d, _) => d,
        };
        match desc {
            Some(false) => found.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal)),
            Some(true) => found.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal)),
            None => {}
        }
        if let Some((n, _)) = search.count {
            found.truncate(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if let Some((destination, store_dist)) = search.store {
            let items: Sorted = found
                .into_iter()
                .map(|(d, score, m, _, _)| (if store_dist { d / search.unit_m } else { score }, m))
                .collect();
            return Ok(Reply::Int(self.zstore(&destination, items, now_ms, out)));
        }
        let plain = !(search.with_coord || search.with_dist || search.with_hash);
        Ok(Reply::Array(
            found
                .into_iter()
                .map(|(d, score, m, plon, plat)| {
                    if plain {
                        return Reply::Bulk(m);
                    }
                    let mut item = vec![Reply::Bulk(m)];
                    if search.with_dist {
                        item.push(Reply::Bulk(Bytes::from(format!("{:.4}", d / search.unit_m))));
                    }
                    if search.with_hash {
                        item.push(Reply::Int(score as i64));
                    }
                    if search.with_coord {
                        item.push(Reply::Array(vec![coord_reply(plon), coord_reply(plat)]));
                    }
                    Reply::Array(item)
                })
                .collect(),
        ))
    }
}

/// A coordinate as `GEOPOS` answers it (a double; on RESP2 the shortest text that reads back as
/// the same double).
fn coord_reply(v: f64) -> Reply {
    Reply::Double(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `select` against the obvious implementation: sort everything, then slice.
    #[test]
    fn select_matches_a_full_sort() {
        let mut seed = 7u64;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for _ in 0..300 {
            let len = next(30) as usize;
            let members: BTreeMap<Bytes, f64> = (0..len)
                .map(|i| (Bytes::from(format!("m{}", (i * 7919) % 31)), (next(7) as f64) - 3.0))
                .collect();
            let items: Sorted = members.into_iter().map(|(m, s)| (s, m)).collect();
            let rev = next(2) == 1;
            let by = match next(3) {
                0 => ZRangeBy::Rank(next(40) as i64 - 20, next(40) as i64 - 20),
                1 => ZRangeBy::Score(
                    ScoreBound {
                        value: next(7) as f64 - 3.0,
                        exclusive: next(2) == 1,
                    },
                    ScoreBound {
                        value: next(7) as f64 - 3.0,
                        exclusive: next(2) == 1,
                    },
                ),
                _ => ZRangeBy::Lex(
                    LexBound::Inclusive(Bytes::from("m1")),
                    LexBound::Exclusive(Bytes::from("m3")),
                ),
            };
            let limit = match (&by, next(3)) {
                (ZRangeBy::Rank(..), _) | (_, 0) => None,
                _ => Some((next(5) as i64 - 1, next(6) as i64 - 1)),
            };
            let mut all = items.clone();
            all.sort_by(redis_order);
            if rev {
                all.reverse();
            }
            let want: Sorted = match &by {
                ZRangeBy::Rank(a, b) => {
                    let n = all.len() as i64;
                    let (a, b) = (
                        (if *a < 0 { a + n } else { *a }).max(0),
                        if *b < 0 { b + n } else { *b },
                    );
                    if a > b || a >= n {
                        Vec::new()
                    } else {
                        all[a as usize..=(b.min(n - 1)) as usize].to_vec()
                    }
                }
                _ => {
                    let inside: Sorted = all
                        .into_iter()
                        .filter(|x| count_in(&vec![x.clone()], &by) == 1)
                        .collect();
                    match limit {
                        None => inside,
                        Some((o, _)) if o < 0 => Vec::new(),
                        Some((o, c)) => inside
                            .into_iter()
                            .skip(o as usize)
                            .take(if c < 0 { usize::MAX } else { c as usize })
                            .collect(),
                    }
                }
            };
            assert_eq!(select(items, &by, rev, limit), want, "{by:?} rev {rev} limit {limit:?}");
        }
    }

    #[test]
    fn scores_format_like_redis() {
        use super::score_text;
        for (v, text) in [
            (1.0, "1"),
            (2.5, "2.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (1e300, "1e+300"),
            (-1.5e-7, "-1.5e-07"),
            (123456789012.0, "123456789012"),
            (-0.0, "-0"),
        ] {
            assert_eq!(score_text(v), text);
            if v.is_finite() {
                assert_eq!(std::str::from_utf8(&score_text(v)).unwrap().parse::<f64>().unwrap(), v);
            }
        }
    }
}
