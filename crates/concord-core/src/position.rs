//! Positions of list elements: a dense, totally ordered identifier space (Logoot-style digit
//! strings), so a list is a sequence CRDT that fits the dot store without tombstones.
//!
//! A position is a string of digits compared lexicographically (a proper prefix sorts first).
//! Each digit is `(n, replica, counter)`: the number, then the dot of the write that made the
//! digit. The last digit of every position carries the dot of the write that created the element,
//! so two writes never make the same position, and positions made concurrently between the same
//! neighbours are ordered by their writers' dots: every replica orders them the same way.
//!
//! Between any two positions there is always room for another ([`Position::between`]). Pushes at
//! the ends stay one digit long (`RPUSH` after the last element takes its first digit + 1, `LPUSH`
//! before the first takes its first digit − 1), so a long-running queue does not grow its
//! positions; only repeated inserts at one place in the middle lengthen them (by one digit per
//! ~63 halvings).

use crate::version::{Dot, ReplicaId};
use serde::{Deserialize, Serialize};

/// One digit of a [`Position`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Digit {
    pub n: i64,
    pub replica: ReplicaId,
    pub counter: u64,
}

/// Where a list element sits in its list. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position(pub Vec<Digit>);

/// The bounds no written digit reaches: `i64::MIN` and `i64::MAX` are never written, so there is
/// always room below and above every written digit at the same level.
const VIRTUAL_MIN: i128 = i64::MIN as i128;
const VIRTUAL_MAX: i128 = i64::MAX as i128;

impl Position {
    /// A position above every position [`Position::between`] makes (its first digit is the
    /// virtual maximum): the exclusive end of the range of list slots.
    pub fn above_all() -> Position {
        Position(vec![Digit {
            n: i64::MAX,
            replica: ReplicaId::MAX,
            counter: u64::MAX,
        }])
    }

    /// A fresh position strictly between `lo` and `hi` (`None`: the start / the end of the list),
    /// made by the write `dot` (its last digit carries the dot). Requires `lo < hi` and valid
    /// bounds ([`Position::is_valid`]); with bounds that break that (a corrupt state), it still
    /// returns a position — after `lo` — rather than panic.
    pub fn between(lo: Option<&Position>, hi: Option<&Position>, dot: Dot) -> Position {
        let hi = match (lo, hi) {
            (Some(l), Some(h)) if l >= h => None,
            (_, Some(h)) if !h.is_valid() => None,
            _ => hi,
        };
        let lo = lo.map(|p| p.0.as_slice());
        let hi = hi.map(|p| p.0.as_slice());
        let mut out: Vec<Digit> = Vec::new();
        // `out` equals lo's (hi's) first digits: lo (hi) still constrains the next digit.
        let mut lo_tight = lo.is_some();
        let mut hi_tight = hi.is_some();
        for i in 0.. {
            let ld = if lo_tight {
                lo.and_then(|l| l.get(i)).copied()
            } else {
                None
            };
            if ld.is_none() {
                lo_tight = false; // out == lo: every extension of out is above lo
            }
            // While hi is tight, out is a proper prefix of hi (out < hi always holds), so hi has
            // a digit here.
            let hd = if hi_tight {
                hi.and_then(|h| h.get(i)).copied()
            } else {
                None
            };
            debug_assert!(!hi_tight || hd.is_some(), "a tight upper bound has a digit here");
            let l = ld.map_or(VIRTUAL_MIN, |d| d.n as i128);
            let h = hd.map_or(VIRTUAL_MAX, |d| d.n as i128);
            if h - l > 1 {
                let n = match (ld, hd) {
                    (None, None) => 0,
                    (Some(_), None) => l + 1,
                    (None, Some(_)) => h - 1,
                    (Some(_), Some(_)) => l + (h - l) / 2,
                };
                out.push(Digit {
                    n: n as i64,
                    replica: dot.replica,
                    counter: dot.counter,
                });
                return Position(out);
            }
            // No room at this level: go one level down.
            match (ld, hd) {
                (Some(d), _) => {
                    out.push(d);
                    if hd != Some(d) {
                        hi_tight = false; // d < hi's digit: everything below d's extensions is < hi
                    }
                }
                (None, Some(d)) => {
                    // lo does not constrain this level and hi's digit is the smallest number:
                    // go below it at the same number (a digit with dot (0, 0) is only ever an
                    // inner digit, never a last one, so hi then has more digits).
                    let floor = Digit {
                        n: d.n,
                        replica: 0,
                        counter: 0,
                    };
                    if floor < d {
                        out.push(floor);
                        hi_tight = false;
                    } else {
                        out.push(d);
                    }
                }
                (None, None) => unreachable!("the virtual bounds leave room"),
            }
        }
        unreachable!()
    }

    /// `m` fresh positions, in order, strictly between `lo` and `hi`, made by one write `dot`.
    /// More than one share a first position and extend it by one digit each, so the run stays
    /// together: a concurrent push of another run at the same place goes before or after all of it.
    pub fn run(lo: Option<&Position>, hi: Option<&Position>, dot: Dot, m: usize) -> Vec<Position> {
        let head = Position::between(lo, hi, dot);
        if m <= 1 {
            return vec![head];
        }
        // head's last digit holds the fresh dot, which no digit of hi holds: head is not a
        // prefix of hi, so every extension of head is still below hi.
        (1..=m as i64)
            .map(|i| {
                let mut p = head.clone();
                p.0.push(Digit {
                    n: i,
                    replica: dot.replica,
                    counter: dot.counter,
                });
                p
            })
            .collect()
    }

    /// The structural invariant of a written position: non-empty, its last digit made by a write
    /// (counter ≥ 1), no digit at a virtual bound.
    pub fn is_valid(&self) -> bool {
        self.0.last().is_some_and(|d| d.counter >= 1) && self.0.iter().all(|d| d.n != i64::MIN && d.n != i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dot(c: u64) -> Dot {
        Dot::new(7, c)
    }

    #[test]
    fn end_pushes_stay_one_digit() {
        let mut last = Position::between(None, None, dot(1));
        let mut first = last.clone();
        for c in 2..1000 {
            let next = Position::between(Some(&last), None, dot(c));
            assert!(next > last && next.0.len() == 1);
            last = next;
            let before = Position::between(None, Some(&first), dot(c + 10_000));
            assert!(before < first && before.0.len() == 1);
            first = before;
        }
    }

    #[test]
    fn room_at_the_extremes() {
        let low = Position(vec![Digit {
            n: i64::MIN + 1,
            replica: 1,
            counter: 1,
        }]);
        let p = Position::between(None, Some(&low), dot(1));
        assert!(p < low && p.is_valid());
        let q = Position::between(None, Some(&p), dot(2));
        assert!(q < p && q.is_valid());
        let high = Position(vec![Digit {
            n: i64::MAX - 1,
            replica: 1,
            counter: 1,
        }]);
        let r = Position::between(Some(&high), None, dot(3));
        assert!(r > high && r < Position::above_all() && r.is_valid());
    }

    #[test]
    fn corrupt_bounds_do_not_panic() {
        let empty = Position::default();
        let p = Position::between(None, Some(&empty), dot(1));
        assert!(p.is_valid());
        let a = Position::between(None, None, dot(2));
        let q = Position::between(Some(&a), Some(&a), dot(3));
        assert!(q > a && q.is_valid());
    }

    proptest! {
        /// Random inserts anywhere: every new position is strictly between its neighbours, valid,
        /// and below `above_all`.
        #[test]
        fn between_is_strict(picks in proptest::collection::vec((any::<u16>(), 1usize..4), 1..300)) {
            let mut list: Vec<Position> = Vec::new();
            for (c, (pick, m)) in picks.into_iter().enumerate() {
                let at = pick as usize % (list.len() + 1);
                let lo = at.checked_sub(1).map(|i| list[i].clone());
                let hi = list.get(at).cloned();
                let run = Position::run(lo.as_ref(), hi.as_ref(), dot(c as u64 + 1), m);
                for (j, p) in run.iter().enumerate() {
                    prop_assert!(p.is_valid());
                    prop_assert!(lo.as_ref().is_none_or(|l| l < p));
                    prop_assert!(hi.as_ref().is_none_or(|h| p < h));
                    prop_assert!(*p < Position::above_all());
                    if j > 0 {
                        prop_assert!(run[j - 1] < *p);
                    }
                }
                list.splice(at..at, run);
            }
            prop_assert!(list.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
