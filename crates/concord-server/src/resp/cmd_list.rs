//! List commands (Redis 7's `t_list.c`), parsed into engine [`Request`]s with Redis's option
//! syntax and error texts; the blocking forms (`BLPOP BRPOP BLMOVE BRPOPLPUSH BLMPOP`) parse into
//! a [`Blocking`]: the non-blocking command the node retries whenever a list may have changed,
//! until it answers or the timeout passes. Replicated semantics: `docs/consistency.md` ("Lists").

use super::command::{Blocking, CommandParseError, Parsed, ReplyShape};
use bytes::Bytes;
use concord_core::{ListEnd, Request};

use super::command::{integer, is, other, syntax};
type Result<T> = std::result::Result<T, CommandParseError>;

fn engine(request: Request) -> Result<Parsed> {
    Ok(Parsed::Engine(request, ReplyShape::AsIs))
}

/// The names this module parses (the command table lists them with their arity).
pub const NAMES: &[&str] = &[
    "lpush",
    "rpush",
    "lpushx",
    "rpushx",
    "lpop",
    "rpop",
    "lrange",
    "llen",
    "lindex",
    "lset",
    "lrem",
    "ltrim",
    "linsert",
    "lpos",
    "lmove",
    "rpoplpush",
    "lmpop",
    "blpop",
    "brpop",
    "blmove",
    "brpoplpush",
    "blmpop",
    "sort",
    "sort_ro",
];

/// The longest a blocking command may wait, whatever it asks (a bound, like every wait here):
/// about 31 years, i.e. Redis's "forever" in practice.
const MAX_BLOCK_MS: u64 = 1 << 40;

fn end(arg: &[u8]) -> Result<ListEnd> {
    if is(arg, "left") {
        Ok(ListEnd::Left)
    } else if is(arg, "right") {
        Ok(ListEnd::Right)
    } else {
        Err(syntax())
    }
}

fn end_word(end: ListEnd) -> Bytes {
    Bytes::from_static(match end {
        ListEnd::Left => b"LEFT",
        ListEnd::Right => b"RIGHT",
    })
}

/// Redis's `getTimeoutFromObjectOrReply` for blocking commands: seconds as a float, ≥ 0; 0 waits
/// forever (`None`).
pub(super) fn block_timeout(arg: &[u8]) -> Result<Option<u64>> {
    let secs: f64 = std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|f: &f64| f.is_finite())
        .ok_or_else(|| other("timeout is not a float or out of range"))?;
    if secs < 0.0 {
        return Err(other("timeout is negative"));
    }
    let ms = (secs * 1000.0).ceil();
    if ms == 0.0 {
        return Ok(None);
    }
    Ok(Some((ms as u64).min(MAX_BLOCK_MS)))
}

/// `numkeys key… LEFT|RIGHT [COUNT n]` of `LMPOP` / `BLMPOP` (`a` starts at `numkeys`).
fn mpop(a: &[Bytes]) -> Result<(Vec<Bytes>, ListEnd, u64)> {
    let numkeys = integer(&a[0]).map_err(|_| other("numkeys should be greater than 0"))?;
    if numkeys <= 0 {
        return Err(other("numkeys should be greater than 0"));
    }
    let numkeys = numkeys as usize;
    if a.len() < numkeys + 2 {
        return Err(syntax());
    }
    let keys = a[1..=numkeys].to_vec();
    let end = end(&a[numkeys + 1])?;
    let count = match &a[numkeys + 2..] {
        [] => 1,
        [w, n] if is(w, "count") => {
            let n = integer(n).map_err(|_| other("count should be greater than 0"))?;
            if n <= 0 {
                return Err(other("count should be greater than 0"));
            }
            n as u64
        }
        _ => return Err(syntax()),
    };
    Ok((keys, end, count))
}

fn mpop_args(keys: &[Bytes], end: ListEnd, count: u64) -> Vec<Bytes> {
    let mut args = vec![Bytes::from_static(b"LMPOP"), Bytes::from(keys.len().to_string())];
    args.extend(keys.iter().cloned());
    args.push(end_word(end));
    args.push(Bytes::from_static(b"COUNT"));
    args.push(Bytes::from(count.to_string()));
    args
}

fn lmove_args(source: &Bytes, destination: &Bytes, from: ListEnd, to: ListEnd) -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"LMOVE"),
        source.clone(),
        destination.clone(),
        end_word(from),
        end_word(to),
    ]
}

fn blocking(request: Request, shape: ReplyShape, timeout_ms: Option<u64>, args: Vec<Bytes>) -> Result<Parsed> {
    Ok(Parsed::Blocking(Blocking {
        request,
        shape,
        timeout_ms,
        args,
    }))
}

/// Parse one of [`NAMES`] (arity already checked).
pub fn parse(name: &str, a: &[Bytes]) -> Result<Parsed> {
    match name {
        "lpush" | "rpush" | "lpushx" | "rpushx" => engine(Request::ListPush {
            key: a[1].clone(),
            end: if name.starts_with('l') {
                ListEnd::Left
            } else {
                ListEnd::Right
            },
            values: a[2..].to_vec(),
            if_exists: name.ends_with('x'),
        }),
        "lpop" | "rpop" => {
            let count = match &a[2..] {
                [] => None,
                [count] => {
                    let n = integer(count).map_err(|_| other("value is out of range, must be positive"))?;
                    Some(u64::try_from(n).map_err(|_| other("value is out of range, must be positive"))?)
                }
                _ => {
                    return Err(CommandParseError::WrongArity(if name == "lpop" {
                        "lpop"
                    } else {
                        "rpop"
                    }))
                }
            };
            engine(Request::ListPop {
                key: a[1].clone(),
                end: if name == "lpop" { ListEnd::Left } else { ListEnd::Right },
                count,
            })
        }
        "lrange" => engine(Request::LRange {
            key: a[1].clone(),
            start: integer(&a[2])?,
            stop: integer(&a[3])?,
        }),
        "llen" => engine(Request::LLen(a[1].clone())),
        "lindex" => engine(Request::LIndex {
            key: a[1].clone(),
            index: integer(&a[2])?,
        }),
        "lset" => engine(Request::LSet {
            key: a[1].clone(),
            index: integer(&a[2])?,
            value: a[3].clone(),
        }),
        "lrem" => engine(Request::LRem {
            key: a[1].clone(),
            count: integer(&a[2])?,
            element: a[3].clone(),
        }),
        "ltrim" => engine(Request::LTrim {
            key: a[1].clone(),
            start: integer(&a[2])?,
            stop: integer(&a[3])?,
        }),
        "linsert" => {
            let before = if is(&a[2], "before") {
                true
            } else if is(&a[2], "after") {
                false
            } else {
                return Err(syntax());
            };
            engine(Request::LInsert {
                key: a[1].clone(),
                before,
                pivot: a[3].clone(),
                element: a[4].clone(),
            })
        }
        "lpos" => parse_lpos(a),
        "lmove" => engine(Request::LMove {
            source: a[1].clone(),
            destination: a[2].clone(),
            from: end(&a[3])?,
            to: end(&a[4])?,
        }),
        "rpoplpush" => engine(Request::LMove {
            source: a[1].clone(),
            destination: a[2].clone(),
            from: ListEnd::Right,
            to: ListEnd::Left,
        }),
        "lmpop" => {
            let (keys, end, count) = mpop(&a[1..])?;
            engine(Request::LMPop { keys, end, count })
        }
        "blpop" | "brpop" => {
            let timeout = block_timeout(&a[a.len() - 1])?;
            let keys = a[1..a.len() - 1].to_vec();
            let end = if name == "blpop" { ListEnd::Left } else { ListEnd::Right };
            let args = mpop_args(&keys, end, 1);
            blocking(
                Request::LMPop { keys, end, count: 1 },
                ReplyShape::FirstPopped,
                timeout,
                args,
            )
        }
        "blmove" | "brpoplpush" => {
            let (source, destination) = (a[1].clone(), a[2].clone());
            let (from, to, timeout) = if name == "blmove" {
                (end(&a[3])?, end(&a[4])?, block_timeout(&a[5])?)
            } else {
                (ListEnd::Right, ListEnd::Left, block_timeout(&a[3])?)
            };
            let args = lmove_args(&source, &destination, from, to);
            blocking(
                Request::LMove {
                    source,
                    destination,
                    from,
                    to,
                },
                ReplyShape::AsIs,
                timeout,
                args,
            )
        }
        "blmpop" => {
            let timeout = block_timeout(&a[1])?;
            let (keys, end, count) = mpop(&a[2..])?;
            let args = mpop_args(&keys, end, count);
            blocking(Request::LMPop { keys, end, count }, ReplyShape::AsIs, timeout, args)
        }
        "sort" | "sort_ro" => parse_sort(a, name == "sort_ro"),
        _ => unreachable!("not a list command: {name}"),
    }
}

/// `SORT key [BY pattern] [LIMIT offset count] [GET pattern …] [ASC|DESC] [ALPHA] [STORE dest]`
/// (`SORT_RO`: no `STORE`), options in any order as Redis's `sortCommandGeneric` takes them.
fn parse_sort(a: &[Bytes], read_only: bool) -> Result<Parsed> {
    let (mut by, mut limit, mut get, mut desc, mut alpha, mut store) = (None, None, Vec::new(), false, false, None);
    let mut j = 2;
    while j < a.len() {
        let left = a.len() - j - 1;
        let w = &a[j];
        if is(w, "asc") {
            desc = false;
        } else if is(w, "desc") {
            desc = true;
        } else if is(w, "alpha") {
            alpha = true;
        } else if is(w, "limit") && left >= 2 {
            limit = Some((integer(&a[j + 1])?, integer(&a[j + 2])?));
            j += 2;
        } else if !read_only && is(w, "store") && left >= 1 {
            store = Some(a[j + 1].clone());
            j += 1;
        } else if is(w, "by") && left >= 1 {
            by = Some(a[j + 1].clone());
            j += 1;
        } else if is(w, "get") && left >= 1 {
            get.push(a[j + 1].clone());
            j += 1;
        } else {
            return Err(syntax());
        }
        j += 1;
    }
    engine(Request::Sort {
        key: a[1].clone(),
        by,
        limit,
        get,
        desc,
        alpha,
        store,
    })
}

/// `LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]`.
fn parse_lpos(a: &[Bytes]) -> Result<Parsed> {
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0u64);
    let mut i = 3;
    while i < a.len() {
        let Some(value) = a.get(i + 1) else {
            return Err(syntax());
        };
        if is(&a[i], "rank") {
            rank = integer(value)?;
            if rank == 0 {
                return Err(other(
                    "RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
            if rank == i64::MIN {
                return Err(other("value is out of range"));
            }
        } else if is(&a[i], "count") {
            let n = integer(value)?;
            count = Some(u64::try_from(n).map_err(|_| other("COUNT can't be negative"))?);
        } else if is(&a[i], "maxlen") {
            let n = integer(value)?;
            maxlen = u64::try_from(n).map_err(|_| other("MAXLEN can't be negative"))?;
        } else {
            return Err(syntax());
        }
        i += 2;
    }
    engine(Request::LPos {
        key: a[1].clone(),
        element: a[2].clone(),
        rank,
        count,
        maxlen,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::command::parse_command;

    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ').map(|s| Bytes::copy_from_slice(s.as_bytes())).collect()
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn err(line: &str) -> String {
        parse_command(&args(line)).unwrap_err().to_string()
    }

    #[test]
    fn pushes_pops_and_options() {
        assert_eq!(
            parse_command(&args("RPUSHX q a b")).unwrap(),
            Parsed::Engine(
                Request::ListPush {
                    key: b("q"),
                    end: ListEnd::Right,
                    values: vec![b("a"), b("b")],
                    if_exists: true
                },
                ReplyShape::AsIs
            )
        );
        assert_eq!(err("LPOP q -1"), "ERR value is out of range, must be positive");
        assert_eq!(err("LPOP q 1 2"), "ERR wrong number of arguments for 'lpop' command");
        assert_eq!(err("LINSERT q middle a b"), "ERR syntax error");
        assert_eq!(err("LMOVE a b UP LEFT"), "ERR syntax error");
        assert!(err("LPOS q a RANK 0").starts_with("ERR RANK can't be zero"));
        assert_eq!(err("LPOS q a COUNT -1"), "ERR COUNT can't be negative");
        assert_eq!(err("LPOS q a MAXLEN -1"), "ERR MAXLEN can't be negative");
        assert_eq!(err("LMPOP 0 a LEFT"), "ERR numkeys should be greater than 0");
        assert_eq!(err("LMPOP 1 a LEFT COUNT 0"), "ERR count should be greater than 0");
        assert_eq!(err("LMPOP 2 a LEFT"), "ERR syntax error");
    }

    #[test]
    fn blocking_forms_retry_their_non_blocking_command() {
        let Parsed::Blocking(b1) = parse_command(&args("BLPOP a b 1.5")).unwrap() else {
            panic!()
        };
        assert_eq!(b1.timeout_ms, Some(1500));
        assert_eq!(b1.shape, ReplyShape::FirstPopped);
        assert_eq!(b1.args, args("LMPOP 2 a b LEFT COUNT 1"));
        let Parsed::Blocking(b2) = parse_command(&args("BRPOPLPUSH a b 0")).unwrap() else {
            panic!()
        };
        assert_eq!(b2.timeout_ms, None);
        assert_eq!(b2.args, args("LMOVE a b RIGHT LEFT"));
        assert!(matches!(
            parse_command(&b2.args).unwrap(),
            Parsed::Engine(Request::LMove { .. }, _)
        ));
        assert_eq!(err("BLPOP a -1"), "ERR timeout is negative");
        assert_eq!(err("BLPOP a x"), "ERR timeout is not a float or out of range");
        let Parsed::Blocking(b3) = parse_command(&args("BLMPOP 0 1 a RIGHT COUNT 2")).unwrap() else {
            panic!()
        };
        assert_eq!(b3.args, args("LMPOP 1 a RIGHT COUNT 2"));
    }
}
