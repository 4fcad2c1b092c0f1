//! Bitmap commands (Redis's `bitops.c`): `SETBIT GETBIT BITCOUNT BITPOS BITOP BITFIELD
//! BITFIELD_RO`.
//!
//! Replicated semantics (DESIGN §8.4, as Redis Active-Active): a bitmap is a string, and every
//! write here is a **register write of the resulting string** under the key's policy, like
//! `SETRANGE`. Two regions setting different bits of one key concurrently keep one of the two
//! results (`lww`: the later HLC); the other is in the conflict log. Bits are numbered from the
//! most significant bit of the first byte, as in Redis.

use super::Engine;
use crate::command::{BitFieldOp, BitOp, BitOverflow, BitType, CommandError, Reply, Request, SetExpiry};
use crate::engine::Output;
use bytes::Bytes;

fn bit_at(buf: &[u8], pos: u64) -> bool {
    buf.get((pos >> 3) as usize)
        .is_some_and(|b| (b >> (7 - (pos & 7))) & 1 == 1)
}

fn set_bit_at(buf: &mut [u8], pos: u64, on: bool) {
    let byte = &mut buf[(pos >> 3) as usize];
    let mask = 1u8 << (7 - (pos & 7));
    if on {
        *byte |= mask;
    } else {
        *byte &= !mask;
    }
}

/// Set bits in the inclusive bit range `first..=last`: whole bytes by popcount, the edges bit by
/// bit.
fn count_bits(buf: &[u8], first: u64, last: u64) -> u64 {
    let (first_byte, last_byte) = (first / 8, last / 8);
    if last_byte <= first_byte + 1 {
        return (first..=last).filter(|p| bit_at(buf, *p)).count() as u64;
    }
    let head = (first..(first_byte + 1) * 8).filter(|p| bit_at(buf, *p)).count() as u64;
    let middle: u64 = buf[(first_byte + 1) as usize..last_byte as usize]
        .iter()
        .map(|b| u64::from(b.count_ones()))
        .sum();
    let tail = (last_byte * 8..=last).filter(|p| bit_at(buf, *p)).count() as u64;
    head + middle + tail
}

/// The first bit equal to `bit` in `first..=last`, skipping whole bytes that cannot hold it.
fn find_bit(buf: &[u8], bit: bool, first: u64, last: u64) -> Option<u64> {
    let skip = if bit { 0x00 } else { 0xFF };
    let mut p = first;
    while p <= last {
        if p.is_multiple_of(8) && p + 7 <= last && buf.get((p / 8) as usize).copied().unwrap_or(0) == skip {
            p += 8;
            continue;
        }
        if bit_at(buf, p) == bit {
            return Some(p);
        }
        p += 1;
    }
    None
}

/// Redis's index normalisation for `BITCOUNT`/`BITPOS`: negatives count from the end; the end is
/// clamped to the last index. `None` when the range is empty.
fn normalise(start: i64, end: i64, total: i64) -> Option<(u64, u64)> {
    let start = if start < 0 { (total + start).max(0) } else { start };
    let mut end = if end < 0 { (total + end).max(0) } else { end };
    if end >= total {
        end = total - 1;
    }
    (total > 0 && start <= end).then_some((start as u64, end as u64))
}

/// Read `ty.bits` bits at `offset` (missing bytes read as 0), as the type's integer.
fn field_get(buf: &[u8], ty: BitType, offset: u64) -> i64 {
    let mut v: u64 = 0;
    for i in 0..u64::from(ty.bits) {
        v = (v << 1) | u64::from(bit_at(buf, offset + i));
    }
    if ty.signed && ty.bits < 64 && v >> (ty.bits - 1) & 1 == 1 {
        (v as i64) - (1i64 << ty.bits)
    } else {
        v as i64
    }
}

fn field_set(buf: &mut [u8], ty: BitType, offset: u64, value: i64) {
    let v = value as u64;
    for i in 0..u64::from(ty.bits) {
        let bit = (v >> (u64::from(ty.bits) - 1 - i)) & 1 == 1;
        set_bit_at(buf, offset + i, bit);
    }
}

/// `value` fitted to the type under the overflow policy (`None`: `FAIL` and out of range).
/// Redis's `checkSignedBitfieldOverflow` / `checkUnsignedBitfieldOverflow`.
fn fit(value: i128, ty: BitType, overflow: BitOverflow) -> Option<i64> {
    let bits = u32::from(ty.bits);
    let (min, max): (i128, i128) = if ty.signed {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    };
    if (min..=max).contains(&value) {
        return Some(value as i64);
    }
    match overflow {
        BitOverflow::Fail => None,
        BitOverflow::Sat => Some(if value > max { max } else { min } as i64),
        BitOverflow::Wrap => {
            let modulus = 1i128 << bits;
            let mut v = value.rem_euclid(modulus);
            if ty.signed && v > max {
                v -= modulus;
            }
            Some(v as i64)
        }
    }
}

impl Engine {
    /// The string a bit command reads (`None`: missing), or WRONGTYPE.
    fn bitmap(&self, key: &[u8], now_ms: u64) -> Result<Option<Bytes>, CommandError> {
        self.string_value(key, now_ms)
    }

    /// The bytes a write that touches bit `last_bit` works on: the current string, zero-padded.
    fn grown(&self, current: &Option<Bytes>, last_bit: u64) -> Result<Vec<u8>, CommandError> {
        let needed = usize::try_from(last_bit / 8 + 1).map_err(|_| CommandError::BitOffset)?;
        if needed > self.cfg.max_value_bytes {
            return Err(CommandError::Other(
                "string exceeds maximum allowed size (proto-max-bulk-len)".into(),
            ));
        }
        let mut buf = current.as_ref().map(|b| b.to_vec()).unwrap_or_default();
        if buf.len() < needed {
            buf.resize(needed, 0);
        }
        Ok(buf)
    }

    /// A bitmap command (the caller matched the variant).
    pub(super) fn execute_bitmap(
        &mut self,
        req: Request,
        now_ms: u64,
        out: &mut Output,
    ) -> Result<Reply, CommandError> {
        Ok(match req {
            Request::SetBit { key, offset, value } => {
                let current = self.bitmap(&key, now_ms)?;
                let old = current.as_ref().is_some_and(|b| bit_at(b, offset));
                let mut buf = self.grown(&current, offset)?;
                set_bit_at(&mut buf, offset, value);
                if current.as_deref() != Some(&buf[..]) {
                    self.set_string(&key, Bytes::from(buf), SetExpiry::Keep, now_ms, out);
                }
                Reply::Int(i64::from(old))
            }
            Request::GetBit { key, offset } => Reply::Int(i64::from(
                self.bitmap(&key, now_ms)?.is_some_and(|b| bit_at(&b, offset)),
            )),
            Request::BitCount { key, range, bits } => {
                let buf = self.bitmap(&key, now_ms)?.unwrap_or_default();
                let Some((start, end)) = range else {
                    return Ok(Reply::Int(buf.iter().map(|b| b.count_ones() as i64).sum()));
                };
                let total = buf.len() as i64 * if bits { 8 } else { 1 };
                let Some((start, end)) = normalise(start, end, total) else {
                    return Ok(Reply::Int(0));
                };
                let (first, last) = if bits { (start, end) } else { (start * 8, end * 8 + 7) };
                Reply::Int(count_bits(&buf, first, last) as i64)
            }
            Request::BitPos {
                key,
                bit,
                start,
                end,
                bits,
            } => {
                let Some(buf) = self.bitmap(&key, now_ms)? else {
                    return Ok(Reply::Int(if bit { -1 } else { 0 }));
                };
                let total = buf.len() as i64 * if bits { 8 } else { 1 };
                let end_given = end.is_some();
                let Some((start, end)) = normalise(start.unwrap_or(0), end.unwrap_or(total - 1), total) else {
                    return Ok(Reply::Int(-1));
                };
                let (first, last) = if bits { (start, end) } else { (start * 8, end * 8 + 7) };
                match find_bit(&buf, bit, first, last) {
                    Some(p) => Reply::Int(p as i64),
                    // Looking for a clear bit with no end given: the string continues with zeros,
                    // so the answer is the first bit past the range's last byte.
                    None if !bit && !end_given => Reply::Int(((last / 8 + 1) * 8) as i64),
                    None => Reply::Int(-1),
                }
            }
            Request::BitOp { op, destination, keys } => {
                let sources = keys
                    .iter()
                    .map(|k| self.bitmap(k, now_ms).map(Option::unwrap_or_default))
                    .collect::<Result<Vec<Bytes>, _>>()?;
                let len = sources.iter().map(|s| s.len()).max().unwrap_or(0);
                if len == 0 {
                    if self.live_kind(&destination, now_ms).is_some() {
                        self.delete_key(&destination, now_ms, out);
                    }
                    return Ok(Reply::Int(0));
                }
                let byte = |s: &Bytes, i: usize| s.get(i).copied().unwrap_or(0);
                let result: Vec<u8> = (0..len)
                    .map(|i| match op {
                        BitOp::Not => !byte(&sources[0], i),
                        BitOp::And => sources.iter().fold(0xFF, |acc, s| acc & byte(s, i)),
                        BitOp::Or => sources.iter().fold(0, |acc, s| acc | byte(s, i)),
                        BitOp::Xor => sources.iter().fold(0, |acc, s| acc ^ byte(s, i)),
                    })
                    .collect();
                self.set_string(&destination, Bytes::from(result), SetExpiry::Clear, now_ms, out);
                Reply::Int(len as i64)
            }
            Request::BitField { key, ops } => {
                let current = self.bitmap(&key, now_ms)?;
                // The string grows to hold the furthest bit any write touches, as in Redis.
                let last_write_bit = ops
                    .iter()
                    .filter_map(|op| match op {
                        BitFieldOp::Set { ty, offset, .. } | BitFieldOp::IncrBy { ty, offset, .. } => {
                            Some(offset + u64::from(ty.bits) - 1)
                        }
                        _ => None,
                    })
                    .max();
                let mut buf = match last_write_bit {
                    Some(last) => self.grown(&current, last)?,
                    None => current.as_ref().map(|b| b.to_vec()).unwrap_or_default(),
                };
                let mut overflow = BitOverflow::Wrap;
                let mut replies = Vec::new();
                for op in ops {
                    match op {
                        BitFieldOp::Overflow(o) => overflow = o,
                        BitFieldOp::Get { ty, offset } => replies.push(Reply::Int(field_get(&buf, ty, offset))),
                        BitFieldOp::Set { ty, offset, value } => {
                            let old = field_get(&buf, ty, offset);
                            match fit(i128::from(value), ty, overflow) {
                                Some(v) => {
                                    field_set(&mut buf, ty, offset, v);
                                    replies.push(Reply::Int(old));
                                }
                                None => replies.push(Reply::Nil),
                            }
                        }
                        BitFieldOp::IncrBy { ty, offset, by } => {
                            let old = field_get(&buf, ty, offset);
                            match fit(i128::from(old) + i128::from(by), ty, overflow) {
                                Some(v) => {
                                    field_set(&mut buf, ty, offset, v);
                                    replies.push(Reply::Int(v));
                                }
                                None => replies.push(Reply::Nil),
                            }
                        }
                    }
                }
                if last_write_bit.is_some() && current.as_deref() != Some(&buf[..]) {
                    self.set_string(&key, Bytes::from(buf), SetExpiry::Keep, now_ms, out);
                }
                Reply::Array(replies)
            }
            other => unreachable!("not a bitmap request: {other:?}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_and_overflow_like_redis() {
        let u8t = BitType { signed: false, bits: 8 };
        let i8t = BitType { signed: true, bits: 8 };
        let u4 = BitType { signed: false, bits: 4 };
        let buf = [0x00, 0xFF];
        assert_eq!(field_get(&buf, u8t, 8), 255);
        assert_eq!(field_get(&buf, i8t, 8), -1);
        assert_eq!(field_get(&buf, u4, 13), 14); // 111 then a missing (zero) bit
        assert_eq!(fit(256, u8t, BitOverflow::Wrap), Some(0));
        assert_eq!(fit(256, u8t, BitOverflow::Sat), Some(255));
        assert_eq!(fit(-1, u8t, BitOverflow::Sat), Some(0));
        assert_eq!(fit(256, u8t, BitOverflow::Fail), None);
        assert_eq!(fit(128, i8t, BitOverflow::Wrap), Some(-128));
        assert_eq!(fit(-129, i8t, BitOverflow::Sat), Some(-128));
        let i64t = BitType { signed: true, bits: 64 };
        assert_eq!(fit(i128::from(i64::MAX) + 1, i64t, BitOverflow::Wrap), Some(i64::MIN));
        let mut b = vec![0u8; 2];
        field_set(&mut b, u8t, 4, 0xAB);
        assert_eq!(b, [0x0A, 0xB0]);
    }

    #[test]
    fn counting_and_finding_match_the_bit_by_bit_answer() {
        let buf: Vec<u8> = (0..40u32).map(|i| (i * 37 % 256) as u8).collect();
        let ones = |f: u64, l: u64| (f..=l).filter(|p| bit_at(&buf, *p)).count() as u64;
        let first_eq = |b: bool, f: u64, l: u64| (f..=l).find(|p| bit_at(&buf, *p) == b);
        for (f, l) in [(0, 319), (3, 4), (5, 17), (7, 8), (9, 300), (8, 15), (0, 0), (100, 319)] {
            assert_eq!(count_bits(&buf, f, l), ones(f, l), "{f}..={l}");
            for b in [false, true] {
                assert_eq!(find_bit(&buf, b, f, l), first_eq(b, f, l), "{b} in {f}..={l}");
            }
        }
        let zeros = [0u8; 8];
        assert_eq!(find_bit(&zeros, true, 0, 63), None);
        assert_eq!(find_bit(&[0xFF, 0xFF, 0xF0], false, 0, 23), Some(20));
    }

    #[test]
    fn ranges_normalise_like_redis() {
        assert_eq!(normalise(0, -1, 6), Some((0, 5)));
        assert_eq!(normalise(-2, -1, 6), Some((4, 5)));
        assert_eq!(normalise(5, 100, 6), Some((5, 5)));
        assert_eq!(normalise(4, 2, 6), None);
        assert_eq!(normalise(0, -1, 0), None);
    }
}
