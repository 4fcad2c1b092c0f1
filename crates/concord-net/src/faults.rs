//! Simulated WAN faults on one link, set at run time through the admin API.
//!
//! - `delay_ms` / `jitter_ms`: each message is held for `delay ± jitter` before it moves on;
//!   messages keep their order (a message is never released before the one ahead of it).
//! - `loss`: TCP never loses a message, it retransmits; so a "lost" message (probability `loss`)
//!   is held for an extra retransmission timeout ([`RETRANSMIT_MS`]), which is what loss does to
//!   a stream.
//! - `partitioned`: the link is cut: connections are closed and refused while it lasts.

use serde::{Deserialize, Serialize};

/// The extra hold of a "lost" message (a typical minimum TCP retransmission timeout).
pub const RETRANSMIT_MS: u64 = 200;

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkFaults {
    #[serde(default)]
    pub partitioned: bool,
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub jitter_ms: u64,
    #[serde(default)]
    pub loss: f64,
}

impl LinkFaults {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.loss) || self.loss.is_nan() {
            return Err(format!("loss must be within 0.0..=1.0, got {}", self.loss));
        }
        if self.delay_ms > 600_000 || self.jitter_ms > 600_000 {
            return Err("delay_ms and jitter_ms must be at most 600000".into());
        }
        if self.jitter_ms > self.delay_ms {
            return Err("jitter_ms must not exceed delay_ms".into());
        }
        Ok(())
    }

    pub fn is_clear(&self) -> bool {
        *self == LinkFaults::default()
    }

    /// How long to hold a message, given two uniform random numbers in [0, 1).
    pub fn hold_ms(&self, extra_delay_ms: u64, r_jitter: f64, r_loss: f64) -> u64 {
        let mut ms = self.delay_ms + extra_delay_ms;
        if self.jitter_ms > 0 {
            let j = (r_jitter * (2 * self.jitter_ms + 1) as f64) as i64 - self.jitter_ms as i64;
            ms = (ms as i64 + j).max(0) as u64;
        }
        if self.loss > 0.0 && r_loss < self.loss {
            ms += RETRANSMIT_MS;
        }
        ms
    }
}

/// A small seeded generator for jitter and loss (not cryptographic, not in the core).
pub struct FaultRng(u64);

impl FaultRng {
    pub fn new(seed: u64) -> Self {
        FaultRng(seed | 1)
    }
    pub fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_and_validate() {
        let f = LinkFaults {
            delay_ms: 50,
            jitter_ms: 10,
            ..Default::default()
        };
        assert!(f.validate().is_ok());
        for r in [0.0, 0.5, 0.999] {
            let h = f.hold_ms(0, r, 1.0);
            assert!((40..=60).contains(&h), "{h}");
        }
        let lossy = LinkFaults {
            loss: 1.0,
            ..Default::default()
        };
        assert_eq!(lossy.hold_ms(0, 0.0, 0.5), RETRANSMIT_MS);
        assert!(LinkFaults {
            loss: 2.0,
            ..Default::default()
        }
        .validate()
        .is_err());
    }
}
