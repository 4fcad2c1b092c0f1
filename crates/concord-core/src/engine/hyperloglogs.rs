//! HyperLogLog commands (Redis's `hyperloglog.c`): `PFADD PFCOUNT PFMERGE`.
//!
//! Replicated semantics: registers merge by max, a join-semilattice, so concurrent `PFADD`s and
//! `PFMERGE`s in any regions converge to the registers of every element added anywhere. The key
//! is one slot ([`Slot::Hll`]); each write that raises registers adds an entry holding the
//! registers it raised (removing nothing), and the value is the max over the entries. A `DEL`
//! removes the entries it observed: a `PFADD` concurrent with it keeps the registers that `PFADD`
//! raised. Once a key holds [`COMPACT_AFTER`] entries, the next raising write folds all it
//! observed into its own entry (and removes them), so a key's entries stay bounded; a `DEL`
//! concurrent with such a compaction then keeps what the compaction folded.
//!
//! `TYPE` answers `string`, as Redis; `GET` and the string commands answer `WRONGTYPE` (Concord
//! does not reproduce Redis's `HYLL` byte encoding).

use super::Engine;
use crate::command::{CommandError, Reply};
use crate::engine::Output;
use crate::hll;
use crate::op::Delta;
use crate::state::{KeyState, Kind, Payload, Slot};
use crate::zcommand::HllRequest;
use bytes::Bytes;

/// Entries a HyperLogLog key may hold before a write folds them into one.
pub const COMPACT_AFTER: usize = 32;

impl Engine {
    /// The dense registers of a HyperLogLog state (max over its entries).
    pub(super) fn hll_registers(st: &KeyState) -> hll::Registers {
        let mut regs = hll::empty();
        for e in st.entries(&Slot::Hll).into_iter().flat_map(|es| es.values()) {
            if let Payload::Registers(pairs) = &e.payload {
                hll::merge_pairs(&mut regs, pairs);
            }
        }
        regs
    }

    /// A live HyperLogLog's registers; `None` when the key is absent.
    fn hll_read(&self, key: &[u8], now_ms: u64) -> Result<Option<hll::Registers>, CommandError> {
        match self.live_kind(key, now_ms) {
            None => Ok(None),
            Some((Kind::Hll, st)) => Ok(Some(Self::hll_registers(st))),
            Some((Kind::String | Kind::Counter, _)) => Err(CommandError::NotHll),
            Some(_) => Err(CommandError::WrongType),
        }
    }

    /// Raise `key`'s registers to `target` (its current registers are `current`, `None` if the
    /// key is absent). Writes when a register rises or the key is new; whether it wrote.
    pub(super) fn hll_raise(
        &mut self,
        key: &Bytes,
        current: Option<&hll::Registers>,
        target: &[u8],
        now_ms: u64,
        out: &mut Output,
    ) -> bool {
        let raised: Vec<(u16, u8)> = match current {
            Some(cur) => hll::to_pairs(target)
                .into_iter()
                .filter(|&(i, v)| v > cur[usize::from(i)])
                .collect(),
            None => hll::to_pairs(target),
        };
        if current.is_some() && raised.is_empty() {
            return false;
        }
        let mut removes = self.stale_removes(key, now_ms);
        let mut pairs = raised;
        if let Some(st) = self.keys.get(key) {
            if current.is_some() && st.entries(&Slot::Hll).is_some_and(|es| es.len() >= COMPACT_AFTER) {
                removes.extend(st.observed_slot(&Slot::Hll));
                pairs = hll::to_pairs(target);
            }
        }
        self.write(
            key,
            Delta {
                removes,
                adds: vec![(Slot::Hll, Payload::Registers(pairs))],
            },
            now_ms,
            out,
        );
        true
    }

    /// A HyperLogLog command (the caller matched `Request::Hll`).
    pub(super) fn execute_hll(
        &mut self,
        req: HllRequest,
        now_ms: u64,
        out: &mut Output,
    ) -> Result<Reply, CommandError> {
        Ok(match req {
            HllRequest::Add { key, elements } => {
                let current = self.hll_read(&key, now_ms)?;
                let mut target = current.clone().unwrap_or_else(hll::empty);
                for e in &elements {
                    let (i, v) = hll::register_of(e);
                    hll::merge_pairs(&mut target, &[(i, v)]);
                }
                Reply::Int(self.hll_raise(&key, current.as_ref(), &target, now_ms, out) as i64)
            }
            HllRequest::Count(keys) => {
                let mut regs = hll::empty();
                for k in &keys {
                    if let Some(r) = self.hll_read(k, now_ms)? {
                        for (t, v) in regs.iter_mut().zip(r) {
                            *t = (*t).max(v);
                        }
                    }
                }
                Reply::Int(hll::count(&regs) as i64)
            }
            HllRequest::Merge { destination, sources } => {
                let current = self.hll_read(&destination, now_ms)?;
                let mut target = current.clone().unwrap_or_else(hll::empty);
                for k in &sources {
                    if let Some(r) = self.hll_read(k, now_ms)? {
                        for (t, v) in target.iter_mut().zip(r) {
                            *t = (*t).max(v);
                        }
                    }
                }
                self.hll_raise(&destination, current.as_ref(), &target, now_ms, out);
                Reply::Ok
            }
        })
    }
}
