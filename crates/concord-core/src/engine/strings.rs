//! String commands beyond DESIGN §6 (Redis's `t_string.c`): `GETRANGE SETRANGE INCRBYFLOAT GETEX
//! MSETNX LCS`.
//!
//! Replicated semantics: every write here is a **register write of the resulting value** under
//! the key's policy, exactly like `SET … KEEPTTL` of that value (`APPEND` works the same way). Two
//! regions changing one key concurrently do not merge their edits: the policy picks one result
//! (`lww`: the later HLC) and the other is in the conflict log. `INCRBYFLOAT` is therefore not a
//! counter: concurrent increments in two regions keep one of them (see docs/consistency.md).

use super::Engine;
use crate::command::{CommandError, LcsReply, Reply, Request, SetExpiry};
use crate::engine::Output;
use bytes::Bytes;

/// A float argument as Redis's `string2ld` takes it: no spaces, not NaN.
pub fn parse_float(arg: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(arg).ok()?;
    if text.is_empty()
        || text.starts_with(|c: char| c.is_ascii_whitespace())
        || text.ends_with(|c: char| c.is_ascii_whitespace())
    {
        return None;
    }
    let v: f64 = text.parse().ok()?;
    (!v.is_nan()).then_some(v)
}

/// A float as `INCRBYFLOAT` answers it: the shortest text that reads back as the same number,
/// without an exponent (`3`, `10.5`, `0.0001`).
pub fn format_float(v: f64) -> String {
    let text = format!("{v}");
    if text == "-0" {
        "0".into()
    } else {
        text
    }
}

/// `GETRANGE`'s window of a `len`-byte string (Redis 7 semantics), as a byte range.
fn range_window(len: usize, start: i64, end: i64) -> std::ops::Range<usize> {
    let len = len as i64;
    if len == 0 || (start < 0 && end < 0 && start > end) {
        return 0..0;
    }
    let start = if start < 0 { (len + start).max(0) } else { start };
    let end = if end < 0 { (len + end).max(0) } else { end.min(len - 1) };
    if start > end {
        return 0..0;
    }
    start as usize..end as usize + 1
}

/// `LCS`: the common subsequence and the matched ranges, as Redis's `lcsCommand` computes them
/// (ranges from the end of the strings backwards).
struct Lcs {
    text: Vec<u8>,
    /// `((a_start, a_end), (b_start, b_end))`, inclusive.
    ranges: Vec<((usize, usize), (usize, usize))>,
}

fn lcs(a: &[u8], b: &[u8]) -> Lcs {
    let (alen, blen) = (a.len(), b.len());
    let width = blen + 1;
    let mut dp = vec![0u32; (alen + 1) * width];
    for i in 1..=alen {
        for j in 1..=blen {
            dp[i * width + j] = if a[i - 1] == b[j - 1] {
                dp[(i - 1) * width + j - 1] + 1
            } else {
                dp[(i - 1) * width + j].max(dp[i * width + j - 1])
            };
        }
    }
    let len = dp[alen * width + blen] as usize;
    let mut text = vec![0u8; len];
    let mut ranges = Vec::new();
    let (mut i, mut j, mut idx) = (alen, blen, len);
    // `a_start == alen` means "no range open", as in Redis.
    let (mut a_start, mut a_end, mut b_start, mut b_end) = (alen, 0, 0, 0);
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            text[idx - 1] = a[i - 1];
            if a_start == alen {
                (a_start, a_end, b_start, b_end) = (i - 1, i - 1, j - 1, j - 1);
            } else if a_start == i && b_start == j {
                a_start -= 1;
                b_start -= 1;
            } else {
                emit = true;
            }
            if a_start == 0 || b_start == 0 {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            j -= 1;
        } else {
            if dp[(i - 1) * width + j] > dp[i * width + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            if a_start != alen {
                emit = true;
            }
        }
        if emit {
            ranges.push(((a_start, a_end), (b_start, b_end)));
            a_start = alen;
        }
    }
    Lcs { text, ranges }
}

impl Engine {
    /// A string command of this family (the caller matched the variant).
    pub(super) fn execute_string(
        &mut self,
        req: Request,
        now_ms: u64,
        out: &mut Output,
    ) -> Result<Reply, CommandError> {
        let too_big = || CommandError::Other("string exceeds maximum allowed size (proto-max-bulk-len)".into());
        Ok(match req {
            Request::GetRange { key, start, end } => {
                let v = self.string_value(&key, now_ms)?.unwrap_or_default();
                Reply::Bulk(v.slice(range_window(v.len(), start, end)))
            }
            Request::SetRange { key, offset, value } => {
                let old = self.string_value(&key, now_ms)?;
                let old_len = old.as_ref().map_or(0, |o| o.len());
                if value.is_empty() {
                    // Redis writes nothing (and creates no key) for an empty value.
                    return Ok(Reply::Int(old_len as i64));
                }
                let offset = usize::try_from(offset).map_err(|_| too_big())?;
                let end = offset.checked_add(value.len()).ok_or_else(too_big)?;
                if end > self.cfg.max_value_bytes {
                    return Err(too_big());
                }
                let mut new = old.map(|o| o.to_vec()).unwrap_or_default();
                if new.len() < end {
                    new.resize(end, 0);
                }
                new[offset..end].copy_from_slice(&value);
                let len = new.len() as i64;
                self.set_string(&key, Bytes::from(new), SetExpiry::Keep, now_ms, out);
                Reply::Int(len)
            }
            Request::IncrByFloat { key, by } => {
                let by = parse_float(&by).ok_or(CommandError::NotFloat)?;
                let current = match self.string_value(&key, now_ms)? {
                    None => 0.0,
                    Some(v) => parse_float(&v).ok_or(CommandError::NotFloat)?,
                };
                let new = current + by;
                if !new.is_finite() {
                    return Err(CommandError::NanOrInfinity);
                }
                let text = Bytes::from(format_float(new));
                self.set_string(&key, text.clone(), SetExpiry::Keep, now_ms, out);
                Reply::Bulk(text)
            }
            Request::GetEx { key, expiry } => {
                let Some(value) = self.string_value(&key, now_ms)? else {
                    return Ok(Reply::Nil);
                };
                match expiry {
                    SetExpiry::Keep => {}
                    SetExpiry::Clear => {
                        self.persist(&key, now_ms, out);
                    }
                    SetExpiry::InMs(ms) => self.expire_at(&key, now_ms.saturating_add(ms), now_ms, out),
                    SetExpiry::AtMs(at) => self.expire_at(&key, at, now_ms, out),
                }
                Reply::Bulk(value)
            }
            Request::MSetNx(pairs) => {
                if pairs.iter().any(|(k, _)| self.live_kind(k, now_ms).is_some()) {
                    return Ok(Reply::Int(0));
                }
                for (k, v) in pairs {
                    self.set_string(&k, v, SetExpiry::Clear, now_ms, out);
                }
                Reply::Int(1)
            }
            Request::Lcs { a, b, reply } => {
                let a = self.string_value(&a, now_ms)?.unwrap_or_default();
                let b = self.string_value(&b, now_ms)?.unwrap_or_default();
                let cells = (a.len() as u128 + 1) * (b.len() as u128 + 1);
                if cells > (self.cfg.max_value_bytes / 4) as u128 {
                    return Err(CommandError::Other(
                        "Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len".into(),
                    ));
                }
                let found = lcs(&a, &b);
                match reply {
                    LcsReply::String => Reply::Bulk(Bytes::from(found.text)),
                    LcsReply::Len => Reply::Int(found.text.len() as i64),
                    LcsReply::Idx {
                        min_match_len,
                        with_match_len,
                    } => {
                        let matches = found
                            .ranges
                            .iter()
                            .filter(|((a0, a1), _)| (a1 - a0 + 1) as u64 >= min_match_len)
                            .map(|((a0, a1), (b0, b1))| {
                                let mut m = vec![
                                    Reply::Array(vec![Reply::Int(*a0 as i64), Reply::Int(*a1 as i64)]),
                                    Reply::Array(vec![Reply::Int(*b0 as i64), Reply::Int(*b1 as i64)]),
                                ];
                                if with_match_len {
                                    m.push(Reply::Int((a1 - a0 + 1) as i64));
                                }
                                Reply::Array(m)
                            })
                            .collect();
                        Reply::Map(vec![
                            (Reply::bulk("matches"), Reply::Array(matches)),
                            (Reply::bulk("len"), Reply::Int(found.text.len() as i64)),
                        ])
                    }
                }
            }
            other => unreachable!("not a string-family request: {other:?}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getrange_windows_follow_redis() {
        let w = |len, s, e| range_window(len, s, e);
        assert_eq!(w(3, 0, 0), 0..1);
        assert_eq!(w(3, 0, 2), 0..3);
        assert_eq!(w(3, 3, 4), 0..0);
        assert_eq!(w(10, -3, -1), 7..10);
        assert_eq!(w(10, 0, -100), 0..1);
        assert_eq!(w(10, -100, 100), 0..10);
        assert_eq!(w(10, -1, -5), 0..0);
        assert_eq!(w(0, 0, -1), 0..0);
        assert_eq!(w(10, 5, 3), 0..0);
    }

    #[test]
    fn lcs_matches_redis_example() {
        // The example of Redis's LCS documentation.
        let found = lcs(b"ohmytext", b"mynewtext");
        assert_eq!(found.text, b"mytext");
        assert_eq!(found.ranges, vec![((4, 7), (5, 8)), ((2, 3), (0, 1))]);
        assert!(lcs(b"", b"abc").text.is_empty());
    }

    #[test]
    fn floats_parse_and_print_like_redis() {
        assert_eq!(parse_float(b"1.5"), Some(1.5));
        assert_eq!(parse_float(b"-3"), Some(-3.0));
        assert_eq!(parse_float(b"5.0e3"), Some(5000.0));
        assert_eq!(parse_float(b" 1"), None);
        assert_eq!(parse_float(b"1 "), None);
        assert_eq!(parse_float(b"x"), None);
        assert_eq!(parse_float(b"nan"), None);
        assert_eq!(parse_float(b""), None);
        assert_eq!(format_float(3.0), "3");
        assert_eq!(format_float(1.0 + 1.1), "2.1");
        assert_eq!(format_float(10.5), "10.5");
        assert_eq!(format_float(5.0e3), "5000");
        assert_eq!(format_float(-0.0), "0");
    }
}
