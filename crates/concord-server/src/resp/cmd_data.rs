//! Data commands beyond DESIGN §6 that map onto the existing types, parsed into engine
//! [`Request`]s with Redis 7's option syntax and error texts (`t_string.c` `getrangeCommand`,
//! `getexCommand`, `lcsCommand`; `expire.c` `expireGenericCommand`; `t_hash.c`
//! `hrandfieldCommand`; `t_set.c` `spopWithCountCommand`, `sinterCardCommand`; `db.c`
//! `scanGenericCommand`). Their replicated semantics are in `docs/consistency.md`.

use super::command::{CommandParseError, Parsed, ReplyShape};
use super::frame::parse_i64_strict;
use bytes::Bytes;
use concord_core::{
    BitFieldOp, BitOp, BitOverflow, BitType, CommandError, Deadline, ExpireCondition, LcsReply, ObjectField, Request,
    SetExpiry, SetOp,
};

use super::command::{integer, is, other, syntax};
type Result<T> = std::result::Result<T, CommandParseError>;

fn engine(request: Request) -> Result<Parsed> {
    Ok(Parsed::Engine(request, ReplyShape::AsIs))
}

/// The names this module parses (the command table lists them with their arity).
pub const NAMES: &[&str] = &[
    "getrange",
    "substr",
    "setrange",
    "incrbyfloat",
    "getex",
    "msetnx",
    "lcs",
    "setbit",
    "getbit",
    "bitcount",
    "bitpos",
    "bitop",
    "bitfield",
    "bitfield_ro",
    "expireat",
    "pexpireat",
    "expiretime",
    "pexpiretime",
    "touch",
    "randomkey",
    "rename",
    "renamenx",
    "copy",
    "object",
    "dump",
    "restore",
    "hincrbyfloat",
    "hstrlen",
    "hrandfield",
    "hscan",
    "spop",
    "srandmember",
    "smove",
    "sinter",
    "sunion",
    "sdiff",
    "sinterstore",
    "sunionstore",
    "sdiffstore",
    "sintercard",
    "sscan",
];

/// Parse one of [`NAMES`] (arity already checked).
pub fn parse(name: &str, a: &[Bytes]) -> Result<Parsed> {
    match name {
        "getrange" | "substr" => engine(Request::GetRange {
            key: a[1].clone(),
            start: integer(&a[2])?,
            end: integer(&a[3])?,
        }),
        "setrange" => {
            let offset = integer(&a[2])?;
            let offset = u64::try_from(offset).map_err(|_| other("offset is out of range"))?;
            engine(Request::SetRange {
                key: a[1].clone(),
                offset,
                value: a[3].clone(),
            })
        }
        "incrbyfloat" => engine(Request::IncrByFloat {
            key: a[1].clone(),
            by: a[2].clone(),
        }),
        "getex" => parse_getex(a),
        "msetnx" => {
            if a.len() % 2 != 1 {
                return Err(CommandParseError::WrongArity("msetnx"));
            }
            engine(Request::MSetNx(
                a[1..].chunks_exact(2).map(|p| (p[0].clone(), p[1].clone())).collect(),
            ))
        }
        "lcs" => parse_lcs(a),
        "setbit" => {
            let offset = bit_offset(&a[2], false, 1)?;
            let value = match a[3].as_ref() {
                b"0" => false,
                b"1" => true,
                _ => return Err(other("bit is not an integer or out of range")),
            };
            engine(Request::SetBit {
                key: a[1].clone(),
                offset,
                value,
            })
        }
        "getbit" => engine(Request::GetBit {
            key: a[1].clone(),
            offset: bit_offset(&a[2], false, 1)?,
        }),
        "bitcount" => {
            let (range, bits) = match &a[2..] {
                [] => (None, false),
                [s, e] => (Some((integer(s)?, integer(e)?)), false),
                [s, e, unit] => (Some((integer(s)?, integer(e)?)), bit_unit(unit)?),
                _ => return Err(syntax()),
            };
            engine(Request::BitCount {
                key: a[1].clone(),
                range,
                bits,
            })
        }
        "bitpos" => {
            let bit = match integer(&a[2])? {
                0 => false,
                1 => true,
                _ => return Err(other("The bit argument must be 1 or 0.")),
            };
            let (start, end, bits) = match &a[3..] {
                [] => (None, None, false),
                [s] => (Some(integer(s)?), None, false),
                [s, e] => (Some(integer(s)?), Some(integer(e)?), false),
                [s, e, unit] => (Some(integer(s)?), Some(integer(e)?), bit_unit(unit)?),
                _ => return Err(syntax()),
            };
            engine(Request::BitPos {
                key: a[1].clone(),
                bit,
                start,
                end,
                bits,
            })
        }
        "bitop" => {
            let op = match a[1].to_ascii_lowercase().as_slice() {
                b"and" => BitOp::And,
                b"or" => BitOp::Or,
                b"xor" => BitOp::Xor,
                b"not" => BitOp::Not,
                _ => return Err(syntax()),
            };
            if op == BitOp::Not && a.len() != 4 {
                return Err(other("BITOP NOT must be called with a single source key."));
            }
            engine(Request::BitOp {
                op,
                destination: a[2].clone(),
                keys: a[3..].to_vec(),
            })
        }
        "bitfield" | "bitfield_ro" => parse_bitfield(a, name == "bitfield_ro"),
        "expireat" | "pexpireat" => {
            let condition = expire_condition(&a[3..])?;
            let value = integer(&a[2])?;
            let at_ms = if name == "expireat" {
                value.checked_mul(1000).ok_or(CommandError::InvalidExpire("expireat"))?
            } else {
                value
            };
            engine(Request::ExpireWhen {
                key: a[1].clone(),
                deadline: Deadline::AtMs(at_ms),
                condition,
            })
        }
        "expiretime" | "pexpiretime" => engine(Request::ExpireTime {
            key: a[1].clone(),
            millis: name == "pexpiretime",
        }),
        "touch" => engine(Request::Touch(a[1..].to_vec())),
        "randomkey" => engine(Request::RandomKey),
        "rename" | "renamenx" => engine(Request::Rename {
            source: a[1].clone(),
            destination: a[2].clone(),
            if_absent: name == "renamenx",
        }),
        "copy" => {
            let mut replace = false;
            let mut i = 3;
            while i < a.len() {
                if is(&a[i], "replace") {
                    replace = true;
                } else if is(&a[i], "db") && i + 1 < a.len() {
                    let db = integer(&a[i + 1])?;
                    if db != 0 {
                        return Err(other("DB index is out of range"));
                    }
                    i += 1;
                } else {
                    return Err(syntax());
                }
                i += 1;
            }
            engine(Request::Copy {
                source: a[1].clone(),
                destination: a[2].clone(),
                replace,
            })
        }
        "dump" => engine(Request::Dump(a[1].clone())),
        "restore" => parse_restore(a),
        "object" => {
            let sub = &a[1];
            let field = if is(sub, "encoding") {
                ObjectField::Encoding
            } else if is(sub, "refcount") {
                ObjectField::RefCount
            } else if is(sub, "idletime") {
                ObjectField::IdleTime
            } else if is(sub, "freq") {
                ObjectField::Freq
            } else {
                return Err(CommandParseError::UnknownSubcommand {
                    command: "OBJECT".into(),
                    subcommand: String::from_utf8_lossy(&sub[..sub.len().min(128)]).into_owned(),
                });
            };
            if a.len() != 3 {
                let full = match field {
                    ObjectField::Encoding => "object|encoding",
                    ObjectField::RefCount => "object|refcount",
                    ObjectField::IdleTime => "object|idletime",
                    ObjectField::Freq => "object|freq",
                };
                return Err(CommandParseError::WrongArity(full));
            }
            engine(Request::Object {
                field,
                key: a[2].clone(),
            })
        }
        "hincrbyfloat" => engine(Request::HIncrByFloat {
            key: a[1].clone(),
            field: a[2].clone(),
            by: a[3].clone(),
        }),
        "hstrlen" => engine(Request::HStrLen {
            key: a[1].clone(),
            field: a[2].clone(),
        }),
        "hrandfield" => {
            let (count, with_values) = match &a[2..] {
                [] => (None, false),
                [count] => (Some(integer(count)?), false),
                [count, w] if is(w, "withvalues") => (Some(integer(count)?), true),
                _ => return Err(syntax()),
            };
            engine(Request::HRandField {
                key: a[1].clone(),
                count,
                with_values,
            })
        }
        "hscan" | "sscan" => {
            let pattern = scan_options(a)?;
            let key = a[1].clone();
            engine(if name == "hscan" {
                Request::HScan { key, pattern }
            } else {
                Request::SScan { key, pattern }
            })
        }
        "spop" => {
            let count = match &a[2..] {
                [] => None,
                [count] => {
                    let n = integer(count)?;
                    Some(u64::try_from(n).map_err(|_| other("value is out of range, must be positive"))?)
                }
                _ => return Err(syntax()),
            };
            engine(Request::SPop {
                key: a[1].clone(),
                count,
            })
        }
        "srandmember" => {
            let count = match &a[2..] {
                [] => None,
                [count] => Some(integer(count)?),
                _ => return Err(syntax()),
            };
            engine(Request::SRandMember {
                key: a[1].clone(),
                count,
            })
        }
        "smove" => engine(Request::SMove {
            source: a[1].clone(),
            destination: a[2].clone(),
            member: a[3].clone(),
        }),
        "sinter" | "sunion" | "sdiff" => engine(Request::SCombine {
            op: set_op(name),
            keys: a[1..].to_vec(),
        }),
        "sinterstore" | "sunionstore" | "sdiffstore" => engine(Request::SCombineStore {
            op: set_op(name),
            destination: a[1].clone(),
            keys: a[2..].to_vec(),
        }),
        "sintercard" => parse_sintercard(a),
        _ => unreachable!("cmd_data::parse called for {name}"),
    }
}

/// `BYTE|BIT` of `BITCOUNT`/`BITPOS`: whether the range is in bits.
fn bit_unit(arg: &[u8]) -> Result<bool> {
    if is(arg, "bit") {
        Ok(true)
    } else if is(arg, "byte") {
        Ok(false)
    } else {
        Err(syntax())
    }
}

/// A bit offset (Redis's `getBitOffsetFromArgument`): `n`, or `#n` counted in fields of `bits`
/// when `hash` is allowed; below 2^32 bits (Redis's 512 MB string limit).
fn bit_offset(arg: &[u8], hash: bool, bits: u64) -> Result<u64> {
    let bad = || CommandParseError::from(CommandError::BitOffset);
    let (digits, multiply) = match arg.strip_prefix(b"#") {
        Some(rest) if hash => (rest, bits),
        _ => (arg, 1),
    };
    let n = parse_i64_strict(digits).ok_or_else(bad)?;
    let n = u64::try_from(n)
        .map_err(|_| bad())?
        .checked_mul(multiply)
        .ok_or_else(bad)?;
    if n >= 1 << 32 {
        return Err(bad());
    }
    Ok(n)
}

/// `BITFIELD key [GET t o] [SET t o v] [INCRBY t o n] [OVERFLOW WRAP|SAT|FAIL] …`; `BITFIELD_RO`
/// takes only `GET`.
fn parse_bitfield(a: &[Bytes], read_only: bool) -> Result<Parsed> {
    let ty = |arg: &[u8]| -> Result<BitType> {
        let bad =
            || other("Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.");
        let signed = match arg.first() {
            Some(b'i' | b'I') => true,
            Some(b'u' | b'U') => false,
            _ => return Err(bad()),
        };
        let bits = parse_i64_strict(&arg[1..]).ok_or_else(bad)?;
        let max = if signed { 64 } else { 63 };
        if !(1..=max).contains(&bits) {
            return Err(bad());
        }
        Ok(BitType {
            signed,
            bits: bits as u8,
        })
    };
    let mut ops = Vec::new();
    let mut i = 2;
    while i < a.len() {
        let op = &a[i];
        let left = a.len() - i - 1;
        if is(op, "get") && left >= 2 {
            let t = ty(&a[i + 1])?;
            ops.push(BitFieldOp::Get {
                ty: t,
                offset: bit_offset(&a[i + 2], true, u64::from(t.bits))?,
            });
            i += 3;
        } else if (is(op, "set") || is(op, "incrby")) && left >= 3 {
            if read_only {
                return Err(other("BITFIELD_RO only supports the GET subcommand"));
            }
            let t = ty(&a[i + 1])?;
            let offset = bit_offset(&a[i + 2], true, u64::from(t.bits))?;
            let n = integer(&a[i + 3])?;
            ops.push(if is(op, "set") {
                BitFieldOp::Set {
                    ty: t,
                    offset,
                    value: n,
                }
            } else {
                BitFieldOp::IncrBy { ty: t, offset, by: n }
            });
            i += 4;
        } else if is(op, "overflow") && left >= 1 {
            if read_only {
                return Err(other("BITFIELD_RO only supports the GET subcommand"));
            }
            let o = &a[i + 1];
            ops.push(BitFieldOp::Overflow(if is(o, "wrap") {
                BitOverflow::Wrap
            } else if is(o, "sat") {
                BitOverflow::Sat
            } else if is(o, "fail") {
                BitOverflow::Fail
            } else {
                return Err(other("Invalid OVERFLOW type specified"));
            }));
            i += 2;
        } else {
            return Err(syntax());
        }
    }
    engine(Request::BitField { key: a[1].clone(), ops })
}

fn set_op(name: &str) -> SetOp {
    if name.starts_with("sinter") {
        SetOp::Inter
    } else if name.starts_with("sunion") {
        SetOp::Union
    } else {
        SetOp::Diff
    }
}

/// `EXPIRE`-family options `NX|XX|GT|LT` (Redis's `parseExtendedExpireArgumentsOrReply`).
pub fn expire_condition(options: &[Bytes]) -> Result<ExpireCondition> {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in options {
        if is(opt, "nx") {
            nx = true;
        } else if is(opt, "xx") {
            xx = true;
        } else if is(opt, "gt") {
            gt = true;
        } else if is(opt, "lt") {
            lt = true;
        } else {
            return Err(other(format!("Unsupported option {}", String::from_utf8_lossy(opt))));
        }
    }
    if nx && (xx || gt || lt) {
        return Err(other("NX and XX, GT or LT options at the same time are not compatible"));
    }
    if gt && lt {
        return Err(other("GT and LT options at the same time are not compatible"));
    }
    Ok(if nx {
        ExpireCondition::IfNone
    } else if gt {
        ExpireCondition::IfLater
    } else if lt {
        ExpireCondition::IfSooner
    } else if xx {
        ExpireCondition::IfSome
    } else {
        ExpireCondition::Always
    })
}

/// `GETEX key [EX s | PX ms | EXAT s | PXAT ms | PERSIST]`.
fn parse_getex(a: &[Bytes]) -> Result<Parsed> {
    let expiry = match &a[2..] {
        [] => SetExpiry::Keep,
        [p] if is(p, "persist") => SetExpiry::Clear,
        [unit, value] => {
            let invalid = || CommandParseError::from(CommandError::InvalidExpire("getex"));
            let n = integer(value)?;
            if n <= 0 {
                return Err(invalid());
            }
            let ms = |n: i64| n.checked_mul(1000).ok_or_else(invalid).map(|v| v as u64);
            if is(unit, "ex") {
                SetExpiry::InMs(ms(n)?)
            } else if is(unit, "px") {
                SetExpiry::InMs(n as u64)
            } else if is(unit, "exat") {
                SetExpiry::AtMs(ms(n)?)
            } else if is(unit, "pxat") {
                SetExpiry::AtMs(n as u64)
            } else {
                return Err(syntax());
            }
        }
        _ => return Err(syntax()),
    };
    engine(Request::GetEx {
        key: a[1].clone(),
        expiry,
    })
}

/// `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]`.
fn parse_lcs(a: &[Bytes]) -> Result<Parsed> {
    let (mut len, mut idx, mut with_match_len, mut min_match_len) = (false, false, false, 0u64);
    let mut j = 3;
    while j < a.len() {
        let opt = &a[j];
        if is(opt, "idx") {
            idx = true;
        } else if is(opt, "len") {
            len = true;
        } else if is(opt, "withmatchlen") {
            with_match_len = true;
        } else if is(opt, "minmatchlen") && j + 1 < a.len() {
            min_match_len = u64::try_from(integer(&a[j + 1])?).unwrap_or(0);
            j += 1;
        } else {
            return Err(syntax());
        }
        j += 1;
    }
    if len && idx {
        return Err(other("If you want both the length and indexes, please just use IDX."));
    }
    let reply = if idx {
        LcsReply::Idx {
            min_match_len,
            with_match_len,
        }
    } else if len {
        LcsReply::Len
    } else {
        LcsReply::String
    };
    engine(Request::Lcs {
        a: a[1].clone(),
        b: a[2].clone(),
        reply,
    })
}

/// `RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]`. Concord keeps no access
/// times or frequencies, so `IDLETIME` and `FREQ` are checked and have no effect.
fn parse_restore(a: &[Bytes]) -> Result<Parsed> {
    let (mut replace, mut absolute, mut idle, mut freq) = (false, false, false, false);
    let mut i = 4;
    while i < a.len() {
        let opt = &a[i];
        if is(opt, "replace") {
            replace = true;
        } else if is(opt, "absttl") {
            absolute = true;
        } else if is(opt, "idletime") && i + 1 < a.len() && !freq {
            if integer(&a[i + 1])? < 0 {
                return Err(other("Invalid IDLETIME value, must be >= 0"));
            }
            idle = true;
            i += 1;
        } else if is(opt, "freq") && i + 1 < a.len() && !idle {
            if !(0..=255).contains(&integer(&a[i + 1])?) {
                return Err(other("Invalid FREQ value, must be >= 0 and <= 255"));
            }
            freq = true;
            i += 1;
        } else {
            return Err(syntax());
        }
        i += 1;
    }
    let ttl = integer(&a[2])?;
    let ttl_ms = u64::try_from(ttl).map_err(|_| other("Invalid TTL value, must be >= 0"))?;
    engine(Request::Restore {
        key: a[1].clone(),
        payload: a[3].clone(),
        ttl_ms,
        absolute,
        replace,
    })
}

/// `SINTERCARD numkeys key… [LIMIT n]`.
fn parse_sintercard(a: &[Bytes]) -> Result<Parsed> {
    let numkeys = integer(&a[1])?;
    if numkeys <= 0 {
        return Err(other("numkeys should be greater than 0"));
    }
    let numkeys = numkeys as usize;
    if numkeys > a.len() - 2 {
        return Err(other("Number of keys can't be greater than number of args"));
    }
    let keys = a[2..2 + numkeys].to_vec();
    let limit = match &a[2 + numkeys..] {
        [] => 0,
        [l, n] if is(l, "limit") => u64::try_from(integer(n)?).map_err(|_| other("LIMIT can't be negative"))?,
        _ => return Err(syntax()),
    };
    engine(Request::SInterCard { keys, limit })
}

/// `HSCAN`/`SSCAN key cursor [MATCH p] [COUNT n]`: the pattern (`None` for all). Concord answers
/// with the whole collection and cursor 0 (as Redis does for small collections), so the cursor
/// and `COUNT` are only checked.
pub(crate) fn scan_options(a: &[Bytes]) -> Result<Option<Bytes>> {
    let cursor = &a[2];
    let digits = !cursor.is_empty() && cursor.iter().all(u8::is_ascii_digit);
    if parse_i64_strict(cursor).is_none_or(|n| n < 0) && !digits {
        return Err(other("invalid cursor"));
    }
    let mut pattern = None;
    let mut i = 3;
    while i < a.len() {
        let Some(value) = a.get(i + 1) else {
            return Err(syntax());
        };
        if is(&a[i], "count") {
            if integer(value)? < 1 {
                return Err(syntax());
            }
        } else if is(&a[i], "match") {
            pattern = (value.as_ref() != b"*").then(|| value.clone());
        } else {
            return Err(syntax());
        }
        i += 2;
    }
    Ok(pattern)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::parse_command;

    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ').map(|s| Bytes::copy_from_slice(s.as_bytes())).collect()
    }

    fn request(line: &str) -> Request {
        match parse_command(&args(line)) {
            Ok(Parsed::Engine(r, ReplyShape::AsIs)) => r,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn err(line: &str) -> String {
        match parse_command(&args(line)) {
            Err(e) => e.to_string(),
            Ok(p) => panic!("{line}: expected an error, got {p:?}"),
        }
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn strings() {
        assert_eq!(
            request("SUBSTR k 0 -1"),
            Request::GetRange {
                key: b("k"),
                start: 0,
                end: -1
            }
        );
        assert_eq!(err("SETRANGE k -1 x"), "ERR offset is out of range");
        assert_eq!(
            request("COPY a b DB 0 REPLACE"),
            Request::Copy {
                source: b("a"),
                destination: b("b"),
                replace: true
            }
        );
        assert_eq!(err("COPY a b DB 1"), "ERR DB index is out of range");
        assert_eq!(
            request("RESTORE k 0 xyz REPLACE IDLETIME 5"),
            Request::Restore {
                key: b("k"),
                payload: b("xyz"),
                ttl_ms: 0,
                absolute: false,
                replace: true
            }
        );
        assert_eq!(err("RESTORE k -1 xyz"), "ERR Invalid TTL value, must be >= 0");
        assert_eq!(
            err("RESTORE k 0 xyz FREQ 300"),
            "ERR Invalid FREQ value, must be >= 0 and <= 255"
        );
        assert_eq!(err("RESTORE k 0 xyz FREQ 1 IDLETIME 1"), "ERR syntax error");
        assert_eq!(
            request("object ENCODING k"),
            Request::Object {
                field: ObjectField::Encoding,
                key: b("k")
            }
        );
        assert_eq!(err("OBJECT FOO k"), "ERR unknown subcommand 'FOO'. Try OBJECT HELP.");
        assert_eq!(
            err("OBJECT ENCODING"),
            "ERR wrong number of arguments for 'object|encoding' command"
        );
        assert_eq!(
            request("GETEX k PXAT 5"),
            Request::GetEx {
                key: b("k"),
                expiry: SetExpiry::AtMs(5)
            }
        );
        assert_eq!(
            request("GETEX k persist"),
            Request::GetEx {
                key: b("k"),
                expiry: SetExpiry::Clear
            }
        );
        assert_eq!(err("GETEX k EX 0"), "ERR invalid expire time in 'getex' command");
        assert_eq!(err("GETEX k EX 1 PX 1"), "ERR syntax error");
        assert_eq!(
            err("MSETNX a 1 b"),
            "ERR wrong number of arguments for 'msetnx' command"
        );
        assert_eq!(
            request("LCS a b IDX MINMATCHLEN 3 WITHMATCHLEN"),
            Request::Lcs {
                a: b("a"),
                b: b("b"),
                reply: LcsReply::Idx {
                    min_match_len: 3,
                    with_match_len: true
                }
            }
        );
        assert_eq!(
            err("LCS a b LEN IDX"),
            "ERR If you want both the length and indexes, please just use IDX."
        );
    }

    #[test]
    fn bitmaps() {
        assert_eq!(
            request("SETBIT k 7 1"),
            Request::SetBit {
                key: b("k"),
                offset: 7,
                value: true
            }
        );
        assert_eq!(err("SETBIT k 7 2"), "ERR bit is not an integer or out of range");
        assert_eq!(
            err("SETBIT k 4294967296 1"),
            "ERR bit offset is not an integer or out of range"
        );
        assert_eq!(err("GETBIT k -1"), "ERR bit offset is not an integer or out of range");
        assert_eq!(err("BITCOUNT k 1"), "ERR syntax error");
        assert_eq!(err("BITCOUNT k 1 2 but"), "ERR syntax error");
        assert_eq!(err("BITPOS k 7"), "ERR The bit argument must be 1 or 0.");
        assert_eq!(
            err("BITOP NOT d a b"),
            "ERR BITOP NOT must be called with a single source key."
        );
        assert_eq!(err("BITOP NAND d a"), "ERR syntax error");
        let u8t = BitType { signed: false, bits: 8 };
        assert_eq!(
            request("BITFIELD k SET u8 #1 255 OVERFLOW FAIL INCRBY u8 8 1 GET i64 0"),
            Request::BitField {
                key: b("k"),
                ops: vec![
                    BitFieldOp::Set {
                        ty: u8t,
                        offset: 8,
                        value: 255
                    },
                    BitFieldOp::Overflow(BitOverflow::Fail),
                    BitFieldOp::IncrBy {
                        ty: u8t,
                        offset: 8,
                        by: 1
                    },
                    BitFieldOp::Get {
                        ty: BitType { signed: true, bits: 64 },
                        offset: 0
                    },
                ]
            }
        );
        assert_eq!(
            err("BITFIELD k GET u64 0"),
            "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is."
        );
        assert_eq!(
            err("BITFIELD_RO k SET u8 0 1"),
            "ERR BITFIELD_RO only supports the GET subcommand"
        );
        assert_eq!(err("BITFIELD k OVERFLOW maybe"), "ERR Invalid OVERFLOW type specified");
        assert_eq!(err("BITFIELD k GET u8"), "ERR syntax error");
    }

    #[test]
    fn expire_options() {
        assert_eq!(
            request("EXPIREAT k 10 gt"),
            Request::ExpireWhen {
                key: b("k"),
                deadline: Deadline::AtMs(10_000),
                condition: ExpireCondition::IfLater
            }
        );
        assert_eq!(
            request("PEXPIRE k 10 NX"),
            Request::ExpireWhen {
                key: b("k"),
                deadline: Deadline::InMs(10),
                condition: ExpireCondition::IfNone
            }
        );
        assert_eq!(
            err("EXPIRE k 10 NX XX"),
            "ERR NX and XX, GT or LT options at the same time are not compatible"
        );
        assert_eq!(
            err("EXPIRE k 10 GT LT"),
            "ERR GT and LT options at the same time are not compatible"
        );
        assert_eq!(err("EXPIRE k 10 FOO"), "ERR Unsupported option FOO");
        assert_eq!(err("EXPIRE k x FOO"), "ERR Unsupported option FOO");
    }

    #[test]
    fn hashes_and_sets() {
        assert_eq!(
            request("HRANDFIELD h -5 WITHVALUES"),
            Request::HRandField {
                key: b("h"),
                count: Some(-5),
                with_values: true
            }
        );
        assert_eq!(err("HRANDFIELD h 1 foo"), "ERR syntax error");
        assert_eq!(
            request("SSCAN s 0 MATCH a* COUNT 5"),
            Request::SScan {
                key: b("s"),
                pattern: Some(b("a*"))
            }
        );
        assert_eq!(err("HSCAN h x"), "ERR invalid cursor");
        assert_eq!(err("SPOP s -1"), "ERR value is out of range, must be positive");
        assert_eq!(
            request("SINTERCARD 2 a b LIMIT 1"),
            Request::SInterCard {
                keys: vec![b("a"), b("b")],
                limit: 1
            }
        );
        assert_eq!(err("SINTERCARD 0 a"), "ERR numkeys should be greater than 0");
        assert_eq!(
            err("SINTERCARD 3 a b"),
            "ERR Number of keys can't be greater than number of args"
        );
        assert_eq!(err("SINTERCARD 1 a LIMIT -1"), "ERR LIMIT can't be negative");
        assert_eq!(
            request("SDIFFSTORE d a b"),
            Request::SCombineStore {
                op: SetOp::Diff,
                destination: b("d"),
                keys: vec![b("a"), b("b")]
            }
        );
    }
}
