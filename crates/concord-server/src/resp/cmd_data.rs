//! Data commands beyond DESIGN §6 that map onto the existing types, parsed into engine
//! [`Request`]s with Redis 7's option syntax and error texts (`t_string.c` `getrangeCommand`,
//! `getexCommand`, `lcsCommand`; `expire.c` `expireGenericCommand`; `t_hash.c`
//! `hrandfieldCommand`; `t_set.c` `spopWithCountCommand`, `sinterCardCommand`; `db.c`
//! `scanGenericCommand`). Their replicated semantics are in `docs/consistency.md`.

use super::command::{CommandParseError, Parsed, ReplyShape};
use super::frame::parse_i64_strict;
use bytes::Bytes;
use concord_core::{CommandError, Deadline, ExpireCondition, LcsReply, ObjectField, Request, SetExpiry, SetOp};

type Result<T> = std::result::Result<T, CommandParseError>;

fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

fn integer(arg: &[u8]) -> Result<i64> {
    parse_i64_strict(arg).ok_or(CommandError::NotInteger.into())
}

fn other(message: impl Into<String>) -> CommandParseError {
    CommandError::Other(message.into()).into()
}

fn syntax() -> CommandParseError {
    CommandError::Syntax.into()
}

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
fn scan_options(a: &[Bytes]) -> Result<Option<Bytes>> {
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
