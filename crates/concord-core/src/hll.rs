//! HyperLogLog as Redis computes it (`hyperloglog.c`): 16384 six-bit registers, elements hashed
//! with MurmurHash64A (seed `0xadc83b19`), and Ertl's improved estimator, so `PFCOUNT` answers
//! what Redis answers for the same elements. Registers merge by max: a join-semilattice, so the
//! replicated HyperLogLog is a true CRDT (see `engine/hyperloglogs.rs` for how it is stored).
//! Redis's sparse/dense byte encodings are not reproduced: only the registers matter here.

/// Registers (2^14, Redis's `HLL_REGISTERS`).
pub const REGISTERS: usize = 1 << P;
const P: u32 = 14;
/// Bits of the hash left for the run of zeros (Redis's `HLL_Q`).
const Q: u32 = 64 - P;

/// Redis's `MurmurHash64A` (little-endian reads, as on the platforms Redis runs on).
pub fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let mut k = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate().rev() {
            h ^= u64::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element falls in and the value it brings there (Redis's `hllPatLen`).
pub fn register_of(element: &[u8]) -> (u16, u8) {
    let hash = murmur64a(element, 0xadc8_3b19);
    let index = (hash & (REGISTERS as u64 - 1)) as u16;
    let rest = (hash >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// Dense registers.
pub type Registers = Vec<u8>;

pub fn empty() -> Registers {
    vec![0; REGISTERS]
}

/// Raise `regs` by sparse pairs; whether any register rose.
pub fn merge_pairs(regs: &mut [u8], pairs: &[(u16, u8)]) -> bool {
    let mut changed = false;
    for &(i, v) in pairs {
        let r = &mut regs[usize::from(i)];
        if v > *r {
            *r = v;
            changed = true;
        }
    }
    changed
}

/// The non-zero registers as sorted pairs.
pub fn to_pairs(regs: &[u8]) -> Vec<(u16, u8)> {
    regs.iter()
        .enumerate()
        .filter(|(_, v)| **v > 0)
        .map(|(i, v)| (i as u16, *v))
        .collect()
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let prev = z;
        z += x * y;
        y += y;
        if prev == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let prev = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if prev == z {
            return z / 3.0;
        }
    }
}

/// The cardinality estimate of dense registers (Redis's `hllCount`).
pub fn count(regs: &[u8]) -> u64 {
    let m = REGISTERS as f64;
    let mut histogram = [0u32; 64];
    for &r in regs {
        histogram[usize::from(r)] += 1;
    }
    let q = Q as usize;
    let mut z = m * tau((m - f64::from(histogram[q + 1])) / m);
    for j in (1..=q).rev() {
        z += f64::from(histogram[j]);
        z *= 0.5;
    }
    z += m * sigma(f64::from(histogram[0]) / m);
    const ALPHA_INF: f64 = 0.721_347_520_444_481_7;
    (ALPHA_INF * m * m / z).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_like_redis() {
        let mut regs = empty();
        assert_eq!(count(&regs), 0);
        for e in ["a", "b", "c", "d", "e", "f", "g"] {
            let (i, v) = register_of(e.as_bytes());
            merge_pairs(&mut regs, &[(i, v)]);
        }
        assert_eq!(count(&regs), 7);
        let mut big = empty();
        for n in 0..100_000u32 {
            let (i, v) = register_of(n.to_string().as_bytes());
            merge_pairs(&mut big, &[(i, v)]);
        }
        let c = count(&big) as f64;
        assert!((c - 100_000.0).abs() / 100_000.0 < 0.02, "{c}");
    }
}
