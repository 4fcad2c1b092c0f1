//! Sorted-set and HyperLogLog commands, parsed into engine requests with Redis 7's option syntax
//! and error texts (`t_zset.c` `zaddGenericCommand`, `zrangeGenericCommand`, `zslParseRange`,
//! `zslParseLexRangeItem`, `zunionInterDiffGenericCommand`, `zpopMinMaxCommand`,
//! `zmpopGenericCommand`, `zrandmemberCommand`; `hyperloglog.c`). Their replicated semantics are
//! in `docs/consistency.md` ("Sorted sets", "HyperLogLog"). The blocking pops (`BZPOPMIN
//! BZPOPMAX BZMPOP`) parse into a [`Blocking`] as the blocking list pops do (server/blocking.rs).

use super::command::{Blocking, CommandParseError, Parsed, ReplyShape};
use bytes::Bytes;
use concord_core::{
    Aggregate, CommandError, GeoFrom, GeoSearch, GeoShape, HllRequest, LexBound, Request, ScoreBound, ZAddFlags,
    ZCombineOp, ZRangeBy, ZsetRequest,
};

use super::command::{integer, is, other, syntax};
type Result<T> = std::result::Result<T, CommandParseError>;

fn zset(request: ZsetRequest) -> Result<Parsed> {
    Ok(Parsed::Engine(Request::Zset(request), ReplyShape::AsIs))
}

fn hll(request: HllRequest) -> Result<Parsed> {
    Ok(Parsed::Engine(Request::Hll(request), ReplyShape::AsIs))
}

/// A float as Redis's `strtod` reads it for scores: `inf`, `-inf`, `+inf` too; never NaN, no
/// surrounding spaces.
pub fn parse_score(arg: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(arg).ok()?;
    if text.is_empty() || text.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let v: f64 = text.parse().ok()?;
    (!v.is_nan()).then_some(v)
}

fn score(arg: &[u8]) -> Result<f64> {
    parse_score(arg).ok_or(CommandError::NotFloat.into())
}

/// `zslParseRange`: `1.5`, `(1.5`, `-inf`, `+inf`.
fn score_bound(arg: &[u8]) -> Result<ScoreBound> {
    let (exclusive, text) = match arg.strip_prefix(b"(") {
        Some(rest) => (true, rest),
        None => (false, arg),
    };
    let value = parse_score(text).ok_or_else(|| other("min or max is not a float"))?;
    Ok(ScoreBound { value, exclusive })
}

/// `zslParseLexRangeItem`: `-`, `+`, `[a`, `(a`.
fn lex_bound(arg: &Bytes) -> Result<LexBound> {
    match arg.first() {
        Some(b'+') if arg.len() == 1 => Ok(LexBound::Max),
        Some(b'-') if arg.len() == 1 => Ok(LexBound::Min),
        Some(b'[') => Ok(LexBound::Inclusive(arg.slice(1..))),
        Some(b'(') => Ok(LexBound::Exclusive(arg.slice(1..))),
        _ => Err(other("min or max not valid string range item")),
    }
}

/// The names this module parses (the command table lists them with their arity).
pub const NAMES: &[&str] = &[
    "zadd",
    "zincrby",
    "zrem",
    "zcard",
    "zscore",
    "zmscore",
    "zrank",
    "zrevrank",
    "zcount",
    "zlexcount",
    "zrange",
    "zrangestore",
    "zrangebyscore",
    "zrevrangebyscore",
    "zrangebylex",
    "zrevrangebylex",
    "zrevrange",
    "zpopmin",
    "zpopmax",
    "zmpop",
    "bzpopmin",
    "bzpopmax",
    "bzmpop",
    "zremrangebyscore",
    "zremrangebyrank",
    "zremrangebylex",
    "zunion",
    "zinter",
    "zdiff",
    "zunionstore",
    "zinterstore",
    "zdiffstore",
    "zintercard",
    "zrandmember",
    "zscan",
    "pfadd",
    "pfcount",
    "pfmerge",
    "geoadd",
    "geopos",
    "geodist",
    "geohash",
    "geosearch",
    "geosearchstore",
    "georadius",
    "georadius_ro",
    "georadiusbymember",
    "georadiusbymember_ro",
];

/// Parse one of [`NAMES`] (arity already checked).
pub fn parse(name: &str, a: &[Bytes]) -> Result<Parsed> {
    let key = || a[1].clone();
    match name {
        "zadd" => parse_zadd(a),
        "zincrby" => zset(ZsetRequest::IncrBy {
            key: key(),
            by: score(&a[2])?,
            member: a[3].clone(),
        }),
        "zrem" => zset(ZsetRequest::Rem {
            key: key(),
            members: a[2..].to_vec(),
        }),
        "zcard" => zset(ZsetRequest::Card(key())),
        "zscore" => zset(ZsetRequest::Score {
            key: key(),
            member: a[2].clone(),
        }),
        "zmscore" => zset(ZsetRequest::MScore {
            key: key(),
            members: a[2..].to_vec(),
        }),
        "zrank" | "zrevrank" => {
            let with_score = match &a[3..] {
                [] => false,
                [w] if is(w, "withscore") => true,
                _ => return Err(syntax()),
            };
            zset(ZsetRequest::Rank {
                key: key(),
                member: a[2].clone(),
                rev: name == "zrevrank",
                with_score,
            })
        }
        "zcount" => zset(ZsetRequest::Count {
            key: key(),
            min: score_bound(&a[2])?,
            max: score_bound(&a[3])?,
        }),
        "zlexcount" => zset(ZsetRequest::LexCount {
            key: key(),
            min: lex_bound(&a[2])?,
            max: lex_bound(&a[3])?,
        }),
        "zrange" => parse_zrange(a, 1, RangeKind::Auto, false, false),
        "zrangestore" => parse_zrange(a, 2, RangeKind::Auto, false, true),
        "zrangebyscore" => parse_zrange(a, 1, RangeKind::Score, false, false),
        "zrevrangebyscore" => parse_zrange(a, 1, RangeKind::Score, true, false),
        "zrangebylex" => parse_zrange(a, 1, RangeKind::Lex, false, false),
        "zrevrangebylex" => parse_zrange(a, 1, RangeKind::Lex, true, false),
        "zrevrange" => parse_zrange(a, 1, RangeKind::Rank, true, false),
        "zpopmin" | "zpopmax" => {
            let count = match a {
                [_, _] => None,
                [_, _, c] => {
                    Some(u64::try_from(integer(c)?).map_err(|_| other("value is out of range, must be positive"))?)
                }
                _ => return Err(syntax()),
            };
            zset(ZsetRequest::Pop {
                key: key(),
                max: name == "zpopmax",
                count,
            })
        }
        "zmpop" => parse_zmpop(a),
        // The node retries the non-blocking form until it answers (server/blocking.rs); a home
        // elsewhere runs it once, as the forwarded `args` (a blocking command forwarded there
        // runs as its non-blocking form).
        "bzpopmin" | "bzpopmax" => {
            let timeout_ms = super::cmd_list::block_timeout(&a[a.len() - 1])?;
            Ok(Parsed::Blocking(Blocking {
                request: Request::Zset(ZsetRequest::PopFirst {
                    keys: a[1..a.len() - 1].to_vec(),
                    max: name == "bzpopmax",
                }),
                shape: ReplyShape::AsIs,
                timeout_ms,
                args: a.to_vec(),
            }))
        }
        "bzmpop" => {
            let timeout_ms = super::cmd_list::block_timeout(&a[1])?;
            // `timeout numkeys key… MIN|MAX [COUNT n]`: `ZMPOP`'s arguments after the timeout.
            let Parsed::Engine(request, shape) = parse_zmpop(&a[1..])? else {
                unreachable!("ZMPOP parses into an engine request")
            };
            let mut args = vec![Bytes::from_static(b"ZMPOP")];
            args.extend(a[2..].iter().cloned());
            Ok(Parsed::Blocking(Blocking {
                request,
                shape,
                timeout_ms,
                args,
            }))
        }
        "zremrangebyscore" => zset(ZsetRequest::RemRange {
            key: key(),
            by: ZRangeBy::Score(score_bound(&a[2])?, score_bound(&a[3])?),
        }),
        "zremrangebylex" => zset(ZsetRequest::RemRange {
            key: key(),
            by: ZRangeBy::Lex(lex_bound(&a[2])?, lex_bound(&a[3])?),
        }),
        "zremrangebyrank" => zset(ZsetRequest::RemRange {
            key: key(),
            by: ZRangeBy::Rank(integer(&a[2])?, integer(&a[3])?),
        }),
        "zunion" => parse_combine(a, ZCombineOp::Union, name, false),
        "zinter" => parse_combine(a, ZCombineOp::Inter, name, false),
        "zdiff" => parse_combine(a, ZCombineOp::Diff, name, false),
        "zunionstore" => parse_combine(a, ZCombineOp::Union, name, true),
        "zinterstore" => parse_combine(a, ZCombineOp::Inter, name, true),
        "zdiffstore" => parse_combine(a, ZCombineOp::Diff, name, true),
        "zintercard" => {
            let (keys, rest) = numkeys(a, 1)?;
            let limit = match rest {
                [] => 0,
                [l, n] if is(l, "limit") => u64::try_from(integer(n)?).map_err(|_| other("LIMIT can't be negative"))?,
                _ => return Err(syntax()),
            };
            zset(ZsetRequest::InterCard { keys, limit })
        }
        "zrandmember" => {
            let (count, with_scores) = match &a[2..] {
                [] => (None, false),
                [c] => (Some(integer(c)?), false),
                [c, w] if is(w, "withscores") => (Some(integer(c)?), true),
                _ => return Err(syntax()),
            };
            zset(ZsetRequest::RandMember {
                key: key(),
                count,
                with_scores,
            })
        }
        "zscan" => zset(ZsetRequest::Scan {
            key: key(),
            pattern: super::cmd_data::scan_options(a)?,
        }),
        "pfadd" => hll(HllRequest::Add {
            key: key(),
            elements: a[2..].to_vec(),
        }),
        "pfcount" => hll(HllRequest::Count(a[1..].to_vec())),
        "pfmerge" => hll(HllRequest::Merge {
            destination: key(),
            sources: a[2..].to_vec(),
        }),
        "geoadd" => parse_geoadd(a),
        "geopos" => zset(ZsetRequest::GeoPos {
            key: key(),
            members: a[2..].to_vec(),
        }),
        "geohash" => zset(ZsetRequest::GeoHash {
            key: key(),
            members: a[2..].to_vec(),
        }),
        "geodist" => {
            let unit_m = match &a[4..] {
                [] => 1.0,
                [u] => unit(u)?,
                _ => return Err(syntax()),
            };
            zset(ZsetRequest::GeoDist {
                key: key(),
                from: a[2].clone(),
                to: a[3].clone(),
                unit_m,
            })
        }
        "geosearch" => parse_geo_search(a, GeoForm::Search),
        "geosearchstore" => parse_geo_search(a, GeoForm::SearchStore),
        "georadius" => parse_geo_search(a, GeoForm::Radius { read_only: false }),
        "georadius_ro" => parse_geo_search(a, GeoForm::Radius { read_only: true }),
        "georadiusbymember" => parse_geo_search(a, GeoForm::ByMember { read_only: false }),
        "georadiusbymember_ro" => parse_geo_search(a, GeoForm::ByMember { read_only: true }),
        _ => unreachable!("{name} is not a sorted-set, HyperLogLog or geo command"),
    }
}

/// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member …]`.
fn parse_zadd(a: &[Bytes]) -> Result<Parsed> {
    let mut flags = ZAddFlags::default();
    let mut i = 2;
    while i < a.len() {
        let opt = &a[i];
        if is(opt, "nx") {
            flags.nx = true;
        } else if is(opt, "xx") {
            flags.xx = true;
        } else if is(opt, "gt") {
            flags.gt = true;
        } else if is(opt, "lt") {
            flags.lt = true;
        } else if is(opt, "ch") {
            flags.ch = true;
        } else if is(opt, "incr") {
            flags.incr = true;
        } else {
            break;
        }
        i += 1;
    }
    let rest = &a[i..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Err(syntax());
    }
    if flags.nx && flags.xx {
        return Err(other("XX and NX options at the same time are not compatible"));
    }
    if [flags.gt, flags.lt, flags.nx].iter().filter(|f| **f).count() > 1 {
        return Err(other("GT, LT, and/or NX options at the same time are not compatible"));
    }
    if flags.incr && rest.len() > 2 {
        return Err(other("INCR option supports a single increment-element pair"));
    }
    let members = rest
        .chunks_exact(2)
        .map(|p| Ok((score(&p[0])?, p[1].clone())))
        .collect::<Result<Vec<_>>>()?;
    zset(ZsetRequest::Add {
        key: a[1].clone(),
        flags,
        members,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RangeKind {
    /// `ZRANGE`/`ZRANGESTORE`: by rank unless `BYSCORE`/`BYLEX`.
    Auto,
    Rank,
    Score,
    Lex,
}

/// `zrangeGenericCommand`: the range starts at argument `first` (the source key); the older
/// forms preset the kind and direction.
fn parse_zrange(a: &[Bytes], first: usize, preset: RangeKind, preset_rev: bool, store: bool) -> Result<Parsed> {
    let key = a[first].clone();
    let (mut kind, mut rev, mut rev_given) = (preset, preset_rev, preset != RangeKind::Auto);
    let (mut with_scores, mut limit) = (false, None);
    let mut j = first + 3;
    while j < a.len() {
        let opt = &a[j];
        let left = a.len() - j - 1;
        if !store && is(opt, "withscores") {
            with_scores = true;
        } else if is(opt, "limit") && left >= 2 {
            limit = Some((integer(&a[j + 1])?, integer(&a[j + 2])?));
            j += 2;
        } else if !rev_given && is(opt, "rev") {
            rev = true;
            rev_given = true;
        } else if kind == RangeKind::Auto && is(opt, "bylex") {
            kind = RangeKind::Lex;
        } else if kind == RangeKind::Auto && is(opt, "byscore") {
            kind = RangeKind::Score;
        } else {
            return Err(syntax());
        }
        j += 1;
    }
    if kind == RangeKind::Auto {
        kind = RangeKind::Rank;
    }
    if limit.is_some() && kind == RangeKind::Rank {
        return Err(other(
            "syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if with_scores && kind == RangeKind::Lex {
        return Err(other(
            "syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let (lo, hi) = (&a[first + 1], &a[first + 2]);
    // The REV forms of score and lex ranges take `max min`.
    let (lo, hi) = if rev && kind != RangeKind::Rank {
        (hi, lo)
    } else {
        (lo, hi)
    };
    let by = match kind {
        RangeKind::Rank => ZRangeBy::Rank(integer(lo)?, integer(hi)?),
        RangeKind::Score => ZRangeBy::Score(score_bound(lo)?, score_bound(hi)?),
        _ => ZRangeBy::Lex(lex_bound(lo)?, lex_bound(hi)?),
    };
    if store {
        return zset(ZsetRequest::RangeStore {
            destination: a[1].clone(),
            key,
            by,
            rev,
            limit,
        });
    }
    zset(ZsetRequest::Range {
        key,
        by,
        rev,
        limit,
        with_scores,
    })
}

/// `numkeys key…` starting at argument `at`: the keys and the arguments after them.
fn numkeys(a: &[Bytes], at: usize) -> Result<(Vec<Bytes>, &[Bytes])> {
    let n = integer(&a[at])?;
    if n <= 0 {
        return Err(other("numkeys should be greater than 0"));
    }
    let n = n as usize;
    if n > a.len() - at - 1 {
        return Err(other("Number of keys can't be greater than number of args"));
    }
    Ok((a[at + 1..at + 1 + n].to_vec(), &a[at + 1 + n..]))
}

/// `ZMPOP numkeys key… MIN|MAX [COUNT n]`.
fn parse_zmpop(a: &[Bytes]) -> Result<Parsed> {
    let (keys, rest) = numkeys(a, 1)?;
    let (max, rest) = match rest.split_first() {
        Some((w, rest)) if is(w, "min") => (false, rest),
        Some((w, rest)) if is(w, "max") => (true, rest),
        _ => return Err(syntax()),
    };
    let count = match rest {
        [] => 1,
        [c, n] if is(c, "count") => {
            let n = integer(n)?;
            if n <= 0 {
                return Err(other("count should be greater than 0"));
            }
            n as u64
        }
        _ => return Err(syntax()),
    };
    zset(ZsetRequest::MPop { keys, max, count })
}

/// `ZUNION|ZINTER|ZDIFF numkeys key… [WEIGHTS w…] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]` and the
/// `STORE` forms (`destination numkeys key…`, no `WITHSCORES`). `ZDIFF` takes no weights.
fn parse_combine(a: &[Bytes], op: ZCombineOp, name: &str, store: bool) -> Result<Parsed> {
    let at = if store { 2 } else { 1 };
    let n = integer(&a[at])?;
    if n < 1 {
        return Err(other(format!("at least 1 input key is needed for '{name}' command")));
    }
    let n = n as usize;
    if n > a.len() - at - 1 {
        return Err(syntax());
    }
    let keys = a[at + 1..at + 1 + n].to_vec();
    let (mut weights, mut aggregate, mut with_scores) = (None, Aggregate::Sum, false);
    let mut j = at + 1 + n;
    while j < a.len() {
        let opt = &a[j];
        let left = a.len() - j - 1;
        if op != ZCombineOp::Diff && is(opt, "weights") && left >= n {
            let w = a[j + 1..j + 1 + n]
                .iter()
                .map(|w| parse_score(w).ok_or_else(|| other("weight value is not a float")))
                .collect::<Result<Vec<f64>>>()?;
            weights = Some(w);
            j += n;
        } else if op != ZCombineOp::Diff && is(opt, "aggregate") && left >= 1 {
            let v = &a[j + 1];
            aggregate = if is(v, "sum") {
                Aggregate::Sum
            } else if is(v, "min") {
                Aggregate::Min
            } else if is(v, "max") {
                Aggregate::Max
            } else {
                return Err(syntax());
            };
            j += 1;
        } else if !store && is(opt, "withscores") {
            with_scores = true;
        } else {
            return Err(syntax());
        }
        j += 1;
    }
    if store {
        return zset(ZsetRequest::CombineStore {
            op,
            destination: a[1].clone(),
            keys,
            weights,
            aggregate,
        });
    }
    zset(ZsetRequest::Combine {
        op,
        keys,
        weights,
        aggregate,
        with_scores,
    })
}

/// Redis's `extractLongLatOrReply`.
fn lon_lat(lon: &[u8], lat: &[u8]) -> Result<(f64, f64)> {
    let (lon, lat) = (score(lon)?, score(lat)?);
    if !concord_core::geo::valid(lon, lat) {
        return Err(other(format!("invalid longitude,latitude pair {lon:.6},{lat:.6}")));
    }
    Ok((lon, lat))
}

/// Meters per `m|km|ft|mi` (Redis's `extractUnitOrReply`).
fn unit(arg: &[u8]) -> Result<f64> {
    [("m", 1.0), ("km", 1000.0), ("ft", 0.3048), ("mi", 1609.34)]
        .into_iter()
        .find(|(u, _)| is(arg, u))
        .map(|(_, m)| m)
        .ok_or_else(|| other("unsupported unit provided. please use M, KM, FT, MI"))
}

/// A distance and its unit: (meters, meters per unit).
fn distance(value: &[u8], unit_arg: &[u8], what: &str) -> Result<(f64, f64)> {
    let v = parse_score(value).ok_or_else(|| other(format!("need numeric {what}")))?;
    if v < 0.0 {
        return Err(other(if what == "radius" {
            "radius cannot be negative"
        } else {
            "height or width cannot be negative"
        }));
    }
    let per = unit(unit_arg)?;
    Ok((v * per, per))
}

/// `GEOADD key [NX|XX] [CH] lon lat member…`: a `ZADD` of the members' geohashes.
fn parse_geoadd(a: &[Bytes]) -> Result<Parsed> {
    let mut flags = ZAddFlags::default();
    let mut i = 2;
    while i < a.len() {
        if is(&a[i], "nx") {
            flags.nx = true;
        } else if is(&a[i], "xx") {
            flags.xx = true;
        } else if is(&a[i], "ch") {
            flags.ch = true;
        } else {
            break;
        }
        i += 1;
    }
    let rest = &a[i..];
    if rest.is_empty() || !rest.len().is_multiple_of(3) || (flags.nx && flags.xx) {
        return Err(syntax());
    }
    let members = rest
        .chunks_exact(3)
        .map(|t| {
            let (lon, lat) = lon_lat(&t[0], &t[1])?;
            Ok((concord_core::geo::encode(lon, lat) as f64, t[2].clone()))
        })
        .collect::<Result<Vec<_>>>()?;
    zset(ZsetRequest::Add {
        key: a[1].clone(),
        flags,
        members,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum GeoForm {
    Search,
    SearchStore,
    Radius { read_only: bool },
    ByMember { read_only: bool },
}

/// Redis's `georadiusGeneric` argument parsing, for every form.
fn parse_geo_search(a: &[Bytes], form: GeoForm) -> Result<Parsed> {
    let (key, mut from, mut shape, mut unit_m, mut j) = match form {
        GeoForm::Search => (a[1].clone(), None, None, 1.0, 2),
        GeoForm::SearchStore => (a[2].clone(), None, None, 1.0, 3),
        GeoForm::Radius { .. } => {
            let (lon, lat) = lon_lat(&a[2], &a[3])?;
            let (r, per) = distance(&a[4], &a[5], "radius")?;
            (
                a[1].clone(),
                Some(GeoFrom::LonLat(lon, lat)),
                Some(GeoShape::Radius(r)),
                per,
                6,
            )
        }
        GeoForm::ByMember { .. } => {
            let (r, per) = distance(&a[3], &a[4], "radius")?;
            (
                a[1].clone(),
                Some(GeoFrom::Member(a[2].clone())),
                Some(GeoShape::Radius(r)),
                per,
                5,
            )
        }
    };
    let searching = matches!(form, GeoForm::Search | GeoForm::SearchStore);
    let radius_store = matches!(
        form,
        GeoForm::Radius { read_only: false } | GeoForm::ByMember { read_only: false }
    );
    let (mut with_dist, mut with_hash, mut with_coord, mut any) = (false, false, false, false);
    let (mut desc, mut count, mut store, mut store_dist) = (None, None, None, false);
    while j < a.len() {
        let arg = &a[j];
        let left = a.len() - j - 1;
        if is(arg, "withdist") {
            with_dist = true;
        } else if is(arg, "withhash") {
            with_hash = true;
        } else if is(arg, "withcoord") {
            with_coord = true;
        } else if is(arg, "any") {
            any = true;
        } else if is(arg, "asc") {
            desc = Some(false);
        } else if is(arg, "desc") {
            desc = Some(true);
        } else if is(arg, "count") && left >= 1 {
            let n = integer(&a[j + 1])?;
            if n <= 0 {
                return Err(other("COUNT must be > 0"));
            }
            count = Some(n as u64);
            j += 1;
        } else if radius_store && (is(arg, "store") || is(arg, "storedist")) && left >= 1 {
            store = Some(a[j + 1].clone());
            store_dist = is(arg, "storedist");
            j += 1;
        } else if form == GeoForm::SearchStore && is(arg, "storedist") {
            store_dist = true;
        } else if searching && is(arg, "frommember") && left >= 1 && from.is_none() {
            from = Some(GeoFrom::Member(a[j + 1].clone()));
            j += 1;
        } else if searching && is(arg, "fromlonlat") && left >= 2 && from.is_none() {
            let (lon, lat) = lon_lat(&a[j + 1], &a[j + 2])?;
            from = Some(GeoFrom::LonLat(lon, lat));
            j += 2;
        } else if searching && is(arg, "byradius") && left >= 2 && shape.is_none() {
            let (r, per) = distance(&a[j + 1], &a[j + 2], "radius")?;
            shape = Some(GeoShape::Radius(r));
            unit_m = per;
            j += 2;
        } else if searching && is(arg, "bybox") && left >= 3 && shape.is_none() {
            let (width, per) = distance(&a[j + 1], &a[j + 3], "width")?;
            let (height, _) = distance(&a[j + 2], &a[j + 3], "height")?;
            shape = Some(GeoShape::Box { width, height });
            unit_m = per;
            j += 3;
        } else {
            return Err(syntax());
        }
        j += 1;
    }
    if form == GeoForm::SearchStore {
        store = Some(a[1].clone());
    }
    if store.is_some() && (with_dist || with_hash || with_coord) {
        let name = if form == GeoForm::SearchStore {
            "GEOSEARCHSTORE"
        } else {
            "STORE option in GEORADIUS"
        };
        return Err(other(format!(
            "{name} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        )));
    }
    let command = String::from_utf8_lossy(&a[0]).into_owned();
    let Some(from) = from else {
        return Err(other(format!(
            "exactly one of FROMMEMBER or FROMLONLAT can be specified for {command}"
        )));
    };
    let Some(shape) = shape else {
        return Err(other(format!(
            "exactly one of BYRADIUS and BYBOX can be specified for {command}"
        )));
    };
    if any && count.is_none() {
        return Err(other("the ANY argument requires COUNT argument"));
    }
    zset(ZsetRequest::GeoSearch(Box::new(GeoSearch {
        key,
        from,
        shape,
        unit_m,
        desc,
        count: count.map(|n| (n, any)),
        with_coord,
        with_dist,
        with_hash,
        store: store.map(|s| (s, store_dist)),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::parse_command;

    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ').map(|s| Bytes::copy_from_slice(s.as_bytes())).collect()
    }

    fn request(line: &str) -> ZsetRequest {
        match parse_command(&args(line)) {
            Ok(Parsed::Engine(Request::Zset(r), ReplyShape::AsIs)) => r,
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
    fn zadd_options_and_errors_are_redis() {
        assert_eq!(
            request("ZADD z GT CH 1 a +inf b"),
            ZsetRequest::Add {
                key: b("z"),
                flags: ZAddFlags {
                    gt: true,
                    ch: true,
                    ..ZAddFlags::default()
                },
                members: vec![(1.0, b("a")), (f64::INFINITY, b("b"))],
            }
        );
        assert_eq!(err("ZADD z 1 a 2"), "ERR syntax error");
        assert_eq!(err("ZADD z x a"), "ERR value is not a valid float");
        assert_eq!(err("ZADD z nan a"), "ERR value is not a valid float");
        assert_eq!(
            err("ZADD z NX XX 1 a"),
            "ERR XX and NX options at the same time are not compatible"
        );
        assert_eq!(
            err("ZADD z GT LT 1 a"),
            "ERR GT, LT, and/or NX options at the same time are not compatible"
        );
        assert_eq!(
            err("ZADD z INCR 1 a 2 b"),
            "ERR INCR option supports a single increment-element pair"
        );
    }

    #[test]
    fn ranges_swap_rev_bounds_and_check_options() {
        assert_eq!(
            request("ZREVRANGEBYSCORE z (5 -inf LIMIT 1 2"),
            ZsetRequest::Range {
                key: b("z"),
                by: ZRangeBy::Score(
                    ScoreBound {
                        value: f64::NEG_INFINITY,
                        exclusive: false
                    },
                    ScoreBound {
                        value: 5.0,
                        exclusive: true
                    }
                ),
                rev: true,
                limit: Some((1, 2)),
                with_scores: false,
            }
        );
        assert_eq!(
            request("ZRANGE z [b - BYLEX REV"),
            ZsetRequest::Range {
                key: b("z"),
                by: ZRangeBy::Lex(LexBound::Min, LexBound::Inclusive(b("b"))),
                rev: true,
                limit: None,
                with_scores: false,
            }
        );
        assert_eq!(
            err("ZRANGE z 0 1 LIMIT 0 1"),
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
        );
        assert_eq!(
            err("ZRANGE z - + BYLEX WITHSCORES"),
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX"
        );
        assert_eq!(err("ZRANGEBYSCORE z a 1"), "ERR min or max is not a float");
        assert_eq!(err("ZRANGEBYLEX z a b"), "ERR min or max not valid string range item");
        assert_eq!(err("ZRANGEBYSCORE z 0 1 BYLEX"), "ERR syntax error");
        assert_eq!(err("ZRANGESTORE d z 0 1 WITHSCORES"), "ERR syntax error");
    }

    #[test]
    fn numkeys_commands() {
        assert_eq!(
            err("ZUNION 0 a"),
            "ERR at least 1 input key is needed for 'zunion' command"
        );
        assert_eq!(err("ZINTER 3 a b"), "ERR syntax error");
        assert_eq!(
            err("ZUNIONSTORE d 2 a b WEIGHTS 1 x"),
            "ERR weight value is not a float"
        );
        assert_eq!(err("ZDIFF 1 a WEIGHTS 1"), "ERR syntax error");
        assert_eq!(
            request("ZINTERSTORE d 2 a b WEIGHTS 2 3 AGGREGATE max"),
            ZsetRequest::CombineStore {
                op: ZCombineOp::Inter,
                destination: b("d"),
                keys: vec![b("a"), b("b")],
                weights: Some(vec![2.0, 3.0]),
                aggregate: Aggregate::Max,
            }
        );
        assert_eq!(err("ZMPOP 1 a LEFT"), "ERR syntax error");
        assert_eq!(err("ZMPOP 1 a MIN COUNT 0"), "ERR count should be greater than 0");
        assert_eq!(err("ZPOPMIN a -1"), "ERR value is out of range, must be positive");
        assert_eq!(
            err("ZINTERCARD 2 a"),
            "ERR Number of keys can't be greater than number of args"
        );
    }

    /// The blocking pops retry the non-blocking request, which is a write (so a home elsewhere
    /// runs it); a home runs the forwarded `args` once.
    #[test]
    fn blocking_pops_retry_their_non_blocking_request() {
        let Ok(Parsed::Blocking(b)) = parse_command(&args("BZPOPMAX a b 1.5")) else {
            panic!()
        };
        assert_eq!(b.timeout_ms, Some(1500));
        assert_eq!(
            b.request,
            Request::Zset(ZsetRequest::PopFirst {
                keys: args("a b"),
                max: true
            })
        );
        assert!(b.request.is_write());
        assert_eq!(b.args, args("BZPOPMAX a b 1.5"));
        let Ok(Parsed::Blocking(b)) = parse_command(&args("BZMPOP 0 2 a b MIN COUNT 3")) else {
            panic!()
        };
        assert_eq!(b.timeout_ms, None);
        assert_eq!(b.args, args("ZMPOP 2 a b MIN COUNT 3"));
        assert_eq!(
            parse_command(&b.args).unwrap(),
            Parsed::Engine(b.request.clone(), ReplyShape::AsIs)
        );
    }
}
