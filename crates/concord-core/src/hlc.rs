//! Hybrid logical clock: 48 bits of physical milliseconds, 16 bits of logical counter.
//!
//! The clock never reads the wall clock itself: the caller passes `physical_ms` (the node passes
//! `SystemTime`, the simulation passes its own, possibly skewed, time). A timestamp taken after
//! observing another is always greater than it, so a write that causally follows another has a
//! greater HLC whatever the wall clocks say — that is what makes `lww` respect causality.

use serde::{Deserialize, Serialize};

/// Bits of the logical counter in an [`Hlc`].
pub const LOGICAL_BITS: u32 = 16;
const LOGICAL_MASK: u64 = (1 << LOGICAL_BITS) - 1;
/// Largest physical time an HLC can carry (2^48 - 1 ms, about year 10889).
pub const PHYSICAL_MS_MAX: u64 = (1 << 48) - 1;

/// One hybrid-logical-clock timestamp. Ordered as a plain `u64`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hlc(pub u64);

impl Hlc {
    pub const ZERO: Hlc = Hlc(0);

    pub fn new(physical_ms: u64, logical: u16) -> Hlc {
        Hlc((physical_ms.min(PHYSICAL_MS_MAX) << LOGICAL_BITS) | logical as u64)
    }
    pub fn physical_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }
    pub fn logical(self) -> u16 {
        (self.0 & LOGICAL_MASK) as u16
    }
}

impl std::fmt::Display for Hlc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.physical_ms(), self.logical())
    }
}

/// The clock of one replica.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HlcClock {
    last: Hlc,
    /// A remote timestamp more than this far ahead of local physical time is still accepted
    /// (replication must never stall on a bad clock) but counted in `remote_ahead_count`.
    pub max_forward_drift_ms: u64,
    /// How many remote timestamps were further ahead than `max_forward_drift_ms`.
    pub remote_ahead_count: u64,
    /// The largest drift seen among those, in ms.
    pub remote_ahead_max_ms: u64,
}

impl Default for HlcClock {
    fn default() -> Self {
        HlcClock::new(Hlc::ZERO)
    }
}

impl HlcClock {
    pub fn new(last: Hlc) -> Self {
        HlcClock {
            last,
            max_forward_drift_ms: 60_000,
            remote_ahead_count: 0,
            remote_ahead_max_ms: 0,
        }
    }

    pub fn last(&self) -> Hlc {
        self.last
    }

    /// A timestamp for a local event: `max(physical, last + 1)`.
    pub fn now(&mut self, physical_ms: u64) -> Hlc {
        let physical = Hlc::new(physical_ms, 0);
        self.last = if physical > self.last {
            physical
        } else {
            Hlc(self.last.0.saturating_add(1))
        };
        self.last
    }

    /// Merge a timestamp received from another replica, so the next local event is after it.
    pub fn observe(&mut self, remote: Hlc, physical_ms: u64) {
        let ahead_ms = remote.physical_ms().saturating_sub(physical_ms);
        if ahead_ms > self.max_forward_drift_ms {
            self.remote_ahead_count += 1;
            self.remote_ahead_max_ms = self.remote_ahead_max_ms.max(ahead_ms);
        }
        if remote > self.last {
            self.last = remote;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_strictly_monotonic_even_when_wall_clock_goes_back() {
        let mut c = HlcClock::default();
        let a = c.now(1000);
        let b = c.now(999);
        let d = c.now(1000);
        assert!(a < b && b < d);
        assert_eq!(a.physical_ms(), 1000);
        assert_eq!(b.logical(), 1);
    }

    #[test]
    fn observe_moves_past_remote_and_counts_far_future() {
        let mut c = HlcClock::default();
        let remote = Hlc::new(10_000_000, 5);
        c.observe(remote, 1000);
        assert_eq!(c.remote_ahead_count, 1);
        assert!(c.now(1000) > remote);
    }
}
