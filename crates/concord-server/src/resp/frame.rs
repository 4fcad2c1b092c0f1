//! RESP values ([`Frame`]) and the incremental, bounded request parser.
//!
//! [`parse_request`] is stateless: it is handed everything buffered so far and answers "not yet"
//! (`Ok(None)`), "one command of these arguments, `n` bytes consumed", or a protocol error. It never
//! allocates for data it has not received, and rejects an oversized length from the header alone,
//! so a client announcing a 2 GB bulk string is refused before it sends a byte of it.
//!
//! The accepted syntax and the error texts follow Redis (`networking.c`: `processMultibulkBuffer`,
//! `processInlineBuffer`; `sds.c`: `sdssplitargs`; `util.c`: `string2ll`). One deliberate
//! difference: Redis skips the two bytes after a bulk payload without looking at them; we require
//! them to be `\r\n`, because anything else means the client and we disagree about framing and
//! every later command would be garbage.

use bytes::Bytes;

/// A RESP2/RESP3 value.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// `+OK` (RESP2/3 simple string).
    Simple(String),
    /// `-ERR ...`: the full text after the `-`, including the error code (`ERR`, `WRONGTYPE`).
    Error(String),
    Integer(i64),
    Bulk(Bytes),
    /// RESP2 `$-1`, RESP3 `_`.
    Null,
    Array(Vec<Frame>),
    /// RESP2 `*-1`, RESP3 `_`.
    NullArray,
    /// RESP3 `%`; a flat array of key, value, key, value... on RESP2.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~`; an array on RESP2.
    Set(Vec<Frame>),
    /// RESP3 `,`; a bulk string on RESP2.
    Double(f64),
    /// RESP3 `#t`/`#f`; an integer 1/0 on RESP2.
    Boolean(bool),
    /// Pairs (`ZRANGE … WITHSCORES`): RESP3 an array of two-element arrays; RESP2 one flat array.
    Pairs(Vec<(Frame, Frame)>),
    /// RESP3 `>` (out-of-band data: pub/sub messages and confirmations); an array on RESP2.
    Push(Vec<Frame>),
}

/// Bounds on what a client may send. Every length a client announces is checked against these
/// before anything is waited for or allocated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string (one argument), like Redis's `proto-max-bulk-len`.
    pub max_bulk_bytes: usize,
    /// Most arguments in one multibulk request.
    pub max_args: usize,
    /// Longest inline command line, and longest length header we wait for.
    pub max_inline_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_bytes: 512 * 1024 * 1024,
            max_args: 1_048_576,
            max_inline_bytes: 64 * 1024,
        }
    }
}

/// The most deeply nested aggregate [`parse_frame`] accepts (replies only; requests are flat).
pub const MAX_FRAME_DEPTH: usize = 64;

/// A malformed or oversized input. After one of these the connection's framing is lost: reply
/// with [`ProtocolError::to_frame`] and close the connection, as Redis does.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("Protocol error: expected '$', got '{}'", printable_byte(*.0))]
    ExpectedBulk(u8),
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("Protocol error: bulk payload not followed by CRLF")]
    MissingBulkTerminator,
    /// Only from [`parse_frame`] (reply parsing).
    #[error("Protocol error: {0}")]
    Invalid(&'static str),
}

impl ProtocolError {
    /// The error reply Redis sends for it (`-ERR Protocol error: ...`).
    pub fn to_frame(&self) -> Frame {
        Frame::Error(format!("ERR {self}"))
    }
}

fn printable_byte(b: u8) -> String {
    if b.is_ascii_graphic() || b == b' ' {
        (b as char).to_string()
    } else {
        format!("\\x{b:02x}")
    }
}

/// Redis's `string2ll`: an optional `-`, no `+`, no leading zeros (except `0` itself), no spaces,
/// fewer than 21 bytes, and within `i64`. Command arguments use the same rules.
pub fn parse_i64_strict(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() >= 21 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        Some((v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

/// One `\r\n`-terminated header line starting at `start`: its content and the position after it.
/// `Ok(None)` if the line is not complete yet; `too_big` if no line end is in sight after
/// `max_bytes`; `invalid` if the `\r` is not followed by `\n`.
fn header_line(
    buf: &[u8],
    start: usize,
    max_bytes: usize,
    too_big: ProtocolError,
    invalid: ProtocolError,
) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let rest = &buf[start..];
    let Some(cr) = rest.iter().position(|&b| b == b'\r') else {
        return if rest.len() > max_bytes { Err(too_big) } else { Ok(None) };
    };
    match rest.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((&rest[..cr], start + cr + 2))),
        Some(_) => Err(invalid),
    }
}

/// Parse one client request from the start of `buf`.
///
/// Returns `Ok(Some((args, consumed)))` for a complete request, `Ok(None)` if more bytes are
/// needed (call again with the same bytes plus more), or a [`ProtocolError`]. `args` may be
/// **empty** — an empty inline line or a `*0`/`*-1` header, which Redis silently skips: advance by
/// `consumed` and execute nothing.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<(Vec<Bytes>, usize)>, ProtocolError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => {
            // First pass only checks completeness, so a request that is still arriving costs a walk
            // over its headers but no copies; the second pass copies the arguments out.
            let Some((count, end)) = walk_multibulk(buf, limits, |_| {})? else {
                return Ok(None);
            };
            let mut args = Vec::with_capacity(count);
            walk_multibulk(buf, limits, |arg| args.push(Bytes::copy_from_slice(arg)))?;
            Ok(Some((args, end)))
        }
        Some(_) => parse_inline(buf, limits),
    }
}

/// Walk `*N\r\n($len\r\n<data>\r\n){N}`, calling `on_arg` for each argument. Returns the argument
/// count and the bytes consumed, or `None` if incomplete.
fn walk_multibulk(
    buf: &[u8],
    limits: &Limits,
    mut on_arg: impl FnMut(&[u8]),
) -> Result<Option<(usize, usize)>, ProtocolError> {
    let Some((count_text, mut pos)) = header_line(
        buf,
        1,
        limits.max_inline_bytes,
        ProtocolError::TooBigMultibulkCount,
        ProtocolError::InvalidMultibulkLength,
    )?
    else {
        return Ok(None);
    };
    let count = parse_i64_strict(count_text).ok_or(ProtocolError::InvalidMultibulkLength)?;
    if count <= 0 {
        return Ok(Some((0, pos)));
    }
    let count = usize::try_from(count).map_err(|_| ProtocolError::InvalidMultibulkLength)?;
    if count > limits.max_args {
        return Err(ProtocolError::InvalidMultibulkLength);
    }
    for _ in 0..count {
        let Some(&marker) = buf.get(pos) else { return Ok(None) };
        if marker != b'$' {
            return Err(ProtocolError::ExpectedBulk(marker));
        }
        let Some((len_text, data_start)) = header_line(
            buf,
            pos + 1,
            limits.max_inline_bytes,
            ProtocolError::TooBigBulkCount,
            ProtocolError::InvalidBulkLength,
        )?
        else {
            return Ok(None);
        };
        let len = parse_i64_strict(len_text).ok_or(ProtocolError::InvalidBulkLength)?;
        let len = usize::try_from(len).map_err(|_| ProtocolError::InvalidBulkLength)?;
        if len > limits.max_bulk_bytes {
            return Err(ProtocolError::InvalidBulkLength);
        }
        // `len <= max_bulk_bytes`, so this cannot overflow for any sane limit; checked anyway.
        let data_end = data_start.checked_add(len).ok_or(ProtocolError::InvalidBulkLength)?;
        let Some(terminator) = buf.get(data_end..data_end + 2) else {
            return Ok(None);
        };
        if terminator != b"\r\n" {
            return Err(ProtocolError::MissingBulkTerminator);
        }
        on_arg(&buf[data_start..data_end]);
        pos = data_end + 2;
    }
    Ok(Some((count, pos)))
}

fn parse_inline(buf: &[u8], limits: &Limits) -> Result<Option<(Vec<Bytes>, usize)>, ProtocolError> {
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > limits.max_inline_bytes {
            Err(ProtocolError::TooBigInline)
        } else {
            Ok(None)
        };
    };
    if newline > limits.max_inline_bytes {
        return Err(ProtocolError::TooBigInline);
    }
    let mut line = &buf[..newline];
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    let args = split_args(line).ok_or(ProtocolError::UnbalancedQuotes)?;
    Ok(Some((args, newline + 1)))
}

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Redis's `sdssplitargs`: split on whitespace; `"..."` understands `\n \r \t \b \a \xHH` and
/// `\<any>`; `'...'` understands only `\'`; a closing quote must be followed by whitespace or the
/// end. `None` for unbalanced quotes. Like the C original, a NUL byte ends the line.
fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let line = &line[..line.iter().position(|&b| b == 0).unwrap_or(line.len())];
    // Reads past the end see NUL, exactly like the C string the original walks.
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while p < line.len() && is_c_space(line[p]) {
            p += 1;
        }
        if p >= line.len() {
            return Some(args);
        }
        let (mut in_double, mut in_single, mut done) = (false, false, false);
        let mut current = Vec::new();
        while !done {
            let c = at(p);
            if in_double {
                match (c, at(p + 1)) {
                    (b'\\', b'x') if hex_value(at(p + 2)).is_some() && hex_value(at(p + 3)).is_some() => {
                        let hi = hex_value(at(p + 2)).unwrap_or(0);
                        let lo = hex_value(at(p + 3)).unwrap_or(0);
                        current.push(hi * 16 + lo);
                        p += 3;
                    }
                    (b'\\', next) if next != 0 => {
                        p += 1;
                        current.push(match next {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                    }
                    (b'"', next) => {
                        if next != 0 && !is_c_space(next) {
                            return None;
                        }
                        done = true;
                    }
                    (0, _) => return None,
                    _ => current.push(c),
                }
            } else if in_single {
                match (c, at(p + 1)) {
                    (b'\\', b'\'') => {
                        p += 1;
                        current.push(b'\'');
                    }
                    (b'\'', next) => {
                        if next != 0 && !is_c_space(next) {
                            return None;
                        }
                        done = true;
                    }
                    (0, _) => return None,
                    _ => current.push(c),
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => current.push(c),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        args.push(Bytes::from(current));
    }
}

/// Parse one reply frame (RESP2 or RESP3) from the start of `buf`: for clients of Concord (the
/// CLI, tests) rather than the server. Same contract as [`parse_request`]: `Ok(None)` when
/// incomplete; lengths are checked against `limits` from the header; nesting is bounded by
/// [`MAX_FRAME_DEPTH`].
pub fn parse_frame(buf: &[u8], limits: &Limits) -> Result<Option<(Frame, usize)>, ProtocolError> {
    parse_frame_at(buf, 0, limits, 0)
}

fn parse_frame_at(
    buf: &[u8],
    start: usize,
    limits: &Limits,
    depth: usize,
) -> Result<Option<(Frame, usize)>, ProtocolError> {
    if depth > MAX_FRAME_DEPTH {
        return Err(ProtocolError::Invalid("nesting too deep"));
    }
    let Some(&kind) = buf.get(start) else { return Ok(None) };
    let line = header_line(
        buf,
        start + 1,
        limits.max_inline_bytes,
        ProtocolError::Invalid("line too long"),
        ProtocolError::Invalid("expected CRLF"),
    )?;
    let Some((text, mut pos)) = line else { return Ok(None) };
    let length = |invalid| -> Result<i64, ProtocolError> { parse_i64_strict(text).ok_or(invalid) };
    let frame = match kind {
        b'+' => Frame::Simple(String::from_utf8_lossy(text).into_owned()),
        b'-' => Frame::Error(String::from_utf8_lossy(text).into_owned()),
        b':' => Frame::Integer(parse_i64_strict(text).ok_or(ProtocolError::Invalid("invalid integer"))?),
        b'_' if text.is_empty() => Frame::Null,
        b'#' => match text {
            b"t" => Frame::Boolean(true),
            b"f" => Frame::Boolean(false),
            _ => return Err(ProtocolError::Invalid("invalid boolean")),
        },
        b',' => {
            let s = std::str::from_utf8(text).map_err(|_| ProtocolError::Invalid("invalid double"))?;
            Frame::Double(s.parse().map_err(|_| ProtocolError::Invalid("invalid double"))?)
        }
        b'$' => {
            let len = length(ProtocolError::InvalidBulkLength)?;
            if len == -1 {
                Frame::Null
            } else {
                let len = usize::try_from(len).map_err(|_| ProtocolError::InvalidBulkLength)?;
                if len > limits.max_bulk_bytes {
                    return Err(ProtocolError::InvalidBulkLength);
                }
                let end = pos.checked_add(len).ok_or(ProtocolError::InvalidBulkLength)?;
                let Some(terminator) = buf.get(end..end + 2) else {
                    return Ok(None);
                };
                if terminator != b"\r\n" {
                    return Err(ProtocolError::MissingBulkTerminator);
                }
                let data = Bytes::copy_from_slice(&buf[pos..end]);
                pos = end + 2;
                Frame::Bulk(data)
            }
        }
        b'*' | b'~' | b'%' | b'>' => {
            let n = length(ProtocolError::InvalidMultibulkLength)?;
            if n == -1 && kind == b'*' {
                return Ok(Some((Frame::NullArray, pos)));
            }
            let n = usize::try_from(n).map_err(|_| ProtocolError::InvalidMultibulkLength)?;
            if n > limits.max_args {
                return Err(ProtocolError::InvalidMultibulkLength);
            }
            let elements = if kind == b'%' {
                n.checked_mul(2).ok_or(ProtocolError::InvalidMultibulkLength)?
            } else {
                n
            };
            let mut items = Vec::with_capacity(elements.min(1024));
            for _ in 0..elements {
                let Some((item, next)) = parse_frame_at(buf, pos, limits, depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                pos = next;
            }
            match kind {
                b'*' => Frame::Array(items),
                b'~' => Frame::Set(items),
                b'>' => Frame::Push(items),
                _ => {
                    let mut pairs = Vec::with_capacity(n.min(1024));
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Frame::Map(pairs)
                }
            }
        }
        _ => return Err(ProtocolError::Invalid("unknown frame type")),
    };
    Ok(Some((frame, pos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Result<Option<(Vec<Bytes>, usize)>, ProtocolError> {
        parse_request(input, &Limits::default())
    }

    fn args(input: &[u8]) -> Vec<Bytes> {
        let (args, used) = parse(input).expect("valid").expect("complete");
        assert_eq!(used, input.len(), "consumed everything of {input:?}");
        args
    }

    fn strs(v: &[&str]) -> Vec<Bytes> {
        v.iter().map(|s| Bytes::copy_from_slice(s.as_bytes())).collect()
    }

    #[test]
    fn string2ll_rules() {
        assert_eq!(parse_i64_strict(b"0"), Some(0));
        assert_eq!(parse_i64_strict(b"-1"), Some(-1));
        assert_eq!(parse_i64_strict(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64_strict(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"01",
            b"-0",
            b" 1",
            b"1 ",
            b"1a",
            b"9223372036854775808",
            b"00",
        ] {
            assert_eq!(parse_i64_strict(bad), None, "{bad:?}");
        }
        assert_eq!(parse_i64_strict(b"-9223372036854775809"), None);
        assert_eq!(parse_i64_strict(b"123456789012345678901"), None);
    }

    #[test]
    fn multibulk_complete_and_pipelined() {
        let input = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
        let (a, used) = parse(input).unwrap().unwrap();
        assert_eq!(a, strs(&["GET", "k"]));
        let (b, used2) = parse(&input[used..]).unwrap().unwrap();
        assert_eq!(b, strs(&["PING"]));
        assert_eq!(used + used2, input.len());
    }

    #[test]
    fn multibulk_binary_and_empty_arguments() {
        assert_eq!(
            args(b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\na\r\nb\r\n"),
            vec![Bytes::from_static(b"SET"), Bytes::new(), Bytes::from_static(b"a\r\nb")]
        );
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
        for n in 0..input.len() {
            assert_eq!(parse(&input[..n]), Ok(None), "prefix of {n} bytes");
        }
        assert_eq!(args(input), strs(&["SET", "k", "hello"]));
        let inline = b"SET k \"a b\"\r\n";
        for n in 0..inline.len() {
            assert_eq!(parse(&inline[..n]), Ok(None), "inline prefix of {n} bytes");
        }
    }

    #[test]
    fn empty_and_negative_multibulk_are_skipped() {
        assert_eq!(parse(b"*0\r\n"), Ok(Some((vec![], 4))));
        assert_eq!(parse(b"*-10\r\n*1\r\n"), Ok(Some((vec![], 6))));
        assert_eq!(parse(b"\r\n"), Ok(Some((vec![], 2))));
        assert_eq!(parse(b"   \n"), Ok(Some((vec![], 4))));
    }

    #[test]
    fn redis_error_texts() {
        let err = |input: &[u8]| parse(input).unwrap_err().to_string();
        assert_eq!(err(b"*3000000000\r\n"), "Protocol error: invalid multibulk length");
        assert_eq!(err(b"*x\r\n"), "Protocol error: invalid multibulk length");
        assert_eq!(err(b"*1\r\n$-1\r\n"), "Protocol error: invalid bulk length");
        assert_eq!(err(b"*1\r\n$abc\r\n"), "Protocol error: invalid bulk length");
        assert_eq!(
            err(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n"),
            "Protocol error: expected '$', got 'f'"
        );
        assert_eq!(err(b"SET \"abc\n"), "Protocol error: unbalanced quotes in request");
        assert_eq!(
            ProtocolError::InvalidBulkLength.to_frame(),
            Frame::Error("ERR Protocol error: invalid bulk length".into())
        );
        assert_eq!(
            ProtocolError::ExpectedBulk(0).to_string(),
            "Protocol error: expected '$', got '\\x00'"
        );
    }

    #[test]
    fn huge_bulk_header_is_rejected_from_the_header_alone() {
        // 2 GB announced, not a byte of it sent: refuse now rather than wait.
        assert_eq!(
            parse(b"*2\r\n$3\r\nSET\r\n$2147483648\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
        let limits = Limits {
            max_bulk_bytes: 10,
            ..Limits::default()
        };
        assert_eq!(
            parse_request(b"*1\r\n$11\r\n", &limits),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(parse_request(b"*1\r\n$10\r\n", &limits), Ok(None));
        let limits = Limits {
            max_args: 2,
            ..Limits::default()
        };
        assert_eq!(
            parse_request(b"*3\r\n", &limits),
            Err(ProtocolError::InvalidMultibulkLength)
        );
    }

    #[test]
    fn overlong_headers_and_inline_lines() {
        let limits = Limits {
            max_inline_bytes: 16,
            ..Limits::default()
        };
        assert_eq!(
            parse_request(&[b'*'; 40], &limits),
            Err(ProtocolError::TooBigMultibulkCount)
        );
        let mut bulk_header = b"*1\r\n$".to_vec();
        bulk_header.extend([b'1'; 40]);
        assert_eq!(
            parse_request(&bulk_header, &limits),
            Err(ProtocolError::TooBigBulkCount)
        );
        assert_eq!(parse_request(&[b'a'; 17], &limits), Err(ProtocolError::TooBigInline));
        assert_eq!(parse_request(&[b'a'; 16], &limits), Ok(None));
        let mut long_line = vec![b'a'; 30];
        long_line.push(b'\n');
        assert_eq!(parse_request(&long_line, &limits), Err(ProtocolError::TooBigInline));
    }

    #[test]
    fn bulk_payload_must_end_with_crlf() {
        assert_eq!(parse(b"*1\r\n$3\r\nGETxx"), Err(ProtocolError::MissingBulkTerminator));
        assert_eq!(parse(b"*1\r\n$3\r\nGET\rx"), Err(ProtocolError::MissingBulkTerminator));
        assert_eq!(parse(b"*1\r\n$3\r\nGET\r"), Ok(None));
        assert_eq!(parse(b"*1\rx"), Err(ProtocolError::InvalidMultibulkLength));
    }

    #[test]
    fn inline_plain_and_quoted() {
        assert_eq!(args(b"SET k v\r\n"), strs(&["SET", "k", "v"]));
        assert_eq!(args(b"  PING  \n"), strs(&["PING"]));
        assert_eq!(args(b"SET k \"hello world\"\r\n"), strs(&["SET", "k", "hello world"]));
    }

    #[test]
    fn inline_quoting_rules_follow_sdssplitargs() {
        let one = |line: &[u8]| split_args(line);
        assert_eq!(
            one(b"\"a\\x41\\n\\t\\\\\\\"b\""),
            Some(vec![Bytes::from_static(b"aA\n\t\\\"b")])
        );
        assert_eq!(one(b"'it\\'s' x"), Some(strs(&["it's", "x"])));
        assert_eq!(one(b"'a\\nb'"), Some(strs(&["a\\nb"])));
        assert_eq!(one(b"\"\""), Some(vec![Bytes::new()]));
        assert_eq!(one(b"a\"b c\"d"), None, "closing quote followed by a non-space");
        assert_eq!(one(b"a\"b c\" d"), Some(strs(&["ab c", "d"])));
        assert_eq!(one(b"\"abc"), None);
        assert_eq!(one(b"'abc"), None);
        assert_eq!(one(b"\"abc\\"), None);
        assert_eq!(one(b"\"\\xZZ\""), Some(strs(&["xZZ"])));
        assert_eq!(
            one(b"a\x0bb"),
            Some(strs(&["a\x0bb"])),
            "only space, tab, CR, LF end a word"
        );
        assert_eq!(one(b"a b\0c d"), Some(strs(&["a", "b"])), "NUL ends the line");
        assert_eq!(one(b""), Some(vec![]));
    }

    #[test]
    fn inline_unbalanced_quote_error() {
        // A closing quote must be followed by whitespace or the end; here another quote follows.
        assert_eq!(parse(b"SET k 'it''s'\r\n"), Err(ProtocolError::UnbalancedQuotes));
    }

    #[test]
    fn reply_frames_parse() {
        let limits = Limits::default();
        let input = b"*3\r\n+OK\r\n$-1\r\n%1\r\n:1\r\n#t\r\n";
        let (frame, used) = parse_frame(input, &limits).unwrap().unwrap();
        assert_eq!(used, input.len());
        assert_eq!(
            frame,
            Frame::Array(vec![
                Frame::Simple("OK".into()),
                Frame::Null,
                Frame::Map(vec![(Frame::Integer(1), Frame::Boolean(true))]),
            ])
        );
        assert_eq!(parse_frame(b"*2\r\n+OK\r\n", &limits), Ok(None));
        assert_eq!(parse_frame(b"*-1\r\n", &limits), Ok(Some((Frame::NullArray, 5))));
        assert!(parse_frame(b"?\r\n", &limits).is_err());
        let deep = "*1\r\n".repeat(MAX_FRAME_DEPTH + 2);
        assert!(parse_frame(deep.as_bytes(), &limits).is_err());
    }

    /// Tiny deterministic xorshift so the fuzz loop needs no dependency and reproduces exactly.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_input_never_panics() {
        // Bias the alphabet toward protocol bytes so the parser gets deep, not just rejected.
        const ALPHABET: &[u8] = b"*$\r\n0123456789-+:_,#%~\"' \\xabAGET\0";
        let limits = Limits {
            max_bulk_bytes: 64,
            max_args: 16,
            max_inline_bytes: 64,
        };
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for round in 0..20_000 {
            let len = (rng.next() % 64) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rng.next();
                    if round % 3 == 0 {
                        r as u8
                    } else {
                        ALPHABET[(r % ALPHABET.len() as u64) as usize]
                    }
                })
                .collect();
            for limits in [&limits, &Limits::default()] {
                if let Ok(Some((_, used))) = parse_request(&input, limits) {
                    assert!(used <= input.len() && used > 0, "round {round}: {input:?}");
                }
                if let Ok(Some((_, used))) = parse_frame(&input, limits) {
                    assert!(used <= input.len(), "round {round}: {input:?}");
                }
            }
        }
    }
}
