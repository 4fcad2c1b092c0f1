//! Typed requests of the sorted-set, HyperLogLog and geo families (Redis's `t_zset.c`,
//! `hyperloglog.c`, `geo.c`). One [`crate::Request`] variant per family carries them, so the
//! family adds its commands here and in `engine/zsets.rs` / `engine/hyperloglogs.rs`.

use bytes::Bytes;

/// One end of a score range: `1.5`, `(1.5` (exclusive), `-inf`, `+inf`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreBound {
    pub value: f64,
    pub exclusive: bool,
}

impl Eq for ScoreBound {}

/// One end of a lexicographic range: `-`, `+`, `[a` (inclusive), `(a` (exclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LexBound {
    Min,
    Max,
    Inclusive(Bytes),
    Exclusive(Bytes),
}

/// Which members a range command selects. Score and lex bounds are always `(min, max)`: the
/// parser swaps the arguments of the `REV` forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZRangeBy {
    /// By rank, inclusive, negative counts from the end (of the order the command reads in).
    Rank(i64, i64),
    Score(ScoreBound, ScoreBound),
    Lex(LexBound, LexBound),
}

/// `ZADD` options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZAddFlags {
    /// `NX`: only add new members.
    pub nx: bool,
    /// `XX`: only update existing members.
    pub xx: bool,
    /// `GT`: only update when the new score is greater.
    pub gt: bool,
    /// `LT`: only update when the new score is less.
    pub lt: bool,
    /// `CH`: answer the number of members added or changed.
    pub ch: bool,
    /// `INCR`: act as `ZINCRBY` (one pair), answer the new score.
    pub incr: bool,
}

/// `ZUNION` / `ZINTER` / `ZDIFF`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZCombineOp {
    Union,
    Inter,
    Diff,
}

/// `AGGREGATE SUM|MIN|MAX`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Aggregate {
    #[default]
    Sum,
    Min,
    Max,
}

/// A score: an `f64`, never NaN (the parser refuses it), so requests can be `Eq`.
pub type Score = f64;

/// Every sorted-set command the engine executes.
#[derive(Clone, Debug, PartialEq)]
pub enum ZsetRequest {
    /// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member…`.
    Add {
        key: Bytes,
        flags: ZAddFlags,
        members: Vec<(Score, Bytes)>,
    },
    /// `ZINCRBY key increment member`.
    IncrBy {
        key: Bytes,
        by: Score,
        member: Bytes,
    },
    Rem {
        key: Bytes,
        members: Vec<Bytes>,
    },
    Card(Bytes),
    Score {
        key: Bytes,
        member: Bytes,
    },
    MScore {
        key: Bytes,
        members: Vec<Bytes>,
    },
    /// `ZRANK`/`ZREVRANK key member [WITHSCORE]` (`WITHSCORE`: Redis 7.2, answers `[rank, score]`).
    Rank {
        key: Bytes,
        member: Bytes,
        rev: bool,
        with_score: bool,
    },
    Count {
        key: Bytes,
        min: ScoreBound,
        max: ScoreBound,
    },
    LexCount {
        key: Bytes,
        min: LexBound,
        max: LexBound,
    },
    /// `ZRANGE` and its older forms. `limit` is `(offset, count)`, count < 0: all.
    Range {
        key: Bytes,
        by: ZRangeBy,
        rev: bool,
        limit: Option<(i64, i64)>,
        with_scores: bool,
    },
    /// `ZRANGESTORE dst src …`: the number of members stored.
    RangeStore {
        destination: Bytes,
        key: Bytes,
        by: ZRangeBy,
        rev: bool,
        limit: Option<(i64, i64)>,
    },
    /// `ZPOPMIN`/`ZPOPMAX key [count]` (`count` given: the reply is always an array).
    Pop {
        key: Bytes,
        max: bool,
        count: Option<u64>,
    },
    /// The non-blocking form of `BZPOPMIN`/`BZPOPMAX key…`: pops the lowest (highest) member of
    /// the first non-empty key and answers `[key, member, score]`, or nil when every key is
    /// empty (a blocking wrapper retries on nil).
    PopFirst {
        keys: Vec<Bytes>,
        max: bool,
    },
    /// `ZMPOP numkeys key… MIN|MAX [COUNT n]`: pops from the first non-empty key.
    MPop {
        keys: Vec<Bytes>,
        max: bool,
        count: u64,
    },
    /// `ZREMRANGEBYRANK|BYSCORE|BYLEX`.
    RemRange {
        key: Bytes,
        by: ZRangeBy,
    },
    /// `ZUNION|ZINTER|ZDIFF numkeys key… [WEIGHTS …] [AGGREGATE …] [WITHSCORES]`.
    Combine {
        op: ZCombineOp,
        keys: Vec<Bytes>,
        weights: Option<Vec<Score>>,
        aggregate: Aggregate,
        with_scores: bool,
    },
    /// The `STORE` forms: the number of members stored.
    CombineStore {
        op: ZCombineOp,
        destination: Bytes,
        keys: Vec<Bytes>,
        weights: Option<Vec<Score>>,
        aggregate: Aggregate,
    },
    /// `ZINTERCARD numkeys key… [LIMIT n]` (0: no limit).
    InterCard {
        keys: Vec<Bytes>,
        limit: u64,
    },
    /// `ZRANDMEMBER key [count [WITHSCORES]]`.
    RandMember {
        key: Bytes,
        count: Option<i64>,
        with_scores: bool,
    },
    /// `ZSCAN key cursor [MATCH p] [COUNT n]`: the whole set in one reply (cursor 0).
    Scan {
        key: Bytes,
        pattern: Option<Bytes>,
    },
    // ----- geo (a sorted set of geohash scores; `GEOADD` parses into `Add`) -----
    /// `GEOPOS key member…`.
    GeoPos {
        key: Bytes,
        members: Vec<Bytes>,
    },
    /// `GEODIST key a b [unit]`: `unit_m` meters per unit.
    GeoDist {
        key: Bytes,
        from: Bytes,
        to: Bytes,
        unit_m: f64,
    },
    /// `GEOHASH key member…`.
    GeoHash {
        key: Bytes,
        members: Vec<Bytes>,
    },
    /// `GEOSEARCH`, `GEOSEARCHSTORE`, `GEORADIUS…`.
    GeoSearch(Box<GeoSearch>),
}

/// Where a geo search is centred.
#[derive(Clone, Debug, PartialEq)]
pub enum GeoFrom {
    Member(Bytes),
    LonLat(f64, f64),
}

/// The area a geo search covers, in meters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GeoShape {
    Radius(f64),
    Box { width: f64, height: f64 },
}

/// A geo search (Redis's `georadiusGeneric`).
#[derive(Clone, Debug, PartialEq)]
pub struct GeoSearch {
    pub key: Bytes,
    pub from: GeoFrom,
    pub shape: GeoShape,
    /// Meters per unit of the distances answered (and stored by `STOREDIST`).
    pub unit_m: f64,
    /// `Some(false)`: nearest first (`ASC`), `Some(true)`: `DESC`, `None`: as found.
    pub desc: Option<bool>,
    /// `COUNT n [ANY]`.
    pub count: Option<(u64, bool)>,
    pub with_coord: bool,
    pub with_dist: bool,
    pub with_hash: bool,
    /// `STORE`/`STOREDIST` (or `GEOSEARCHSTORE`): the destination, and whether the scores stored
    /// are the distances.
    pub store: Option<(Bytes, bool)>,
}

impl Eq for ZsetRequest {}

impl ZsetRequest {
    pub fn keys(&self) -> Vec<&Bytes> {
        use ZsetRequest::*;
        match self {
            Card(key)
            | Add { key, .. }
            | IncrBy { key, .. }
            | Rem { key, .. }
            | Score { key, .. }
            | MScore { key, .. }
            | Rank { key, .. }
            | Count { key, .. }
            | LexCount { key, .. }
            | Range { key, .. }
            | Pop { key, .. }
            | RemRange { key, .. }
            | RandMember { key, .. }
            | Scan { key, .. }
            | GeoPos { key, .. }
            | GeoDist { key, .. }
            | GeoHash { key, .. } => vec![key],
            GeoSearch(search) => match &search.store {
                Some((destination, _)) => vec![destination, &search.key],
                None => vec![&search.key],
            },
            RangeStore { destination, key, .. } => vec![destination, key],
            MPop { keys, .. } | PopFirst { keys, .. } | Combine { keys, .. } | InterCard { keys, .. } => {
                keys.iter().collect()
            }
            CombineStore { destination, keys, .. } => std::iter::once(destination).chain(keys).collect(),
        }
    }

    pub fn is_write(&self) -> bool {
        use ZsetRequest::*;
        if let GeoSearch(search) = self {
            return search.store.is_some();
        }
        matches!(
            self,
            Add { .. }
                | IncrBy { .. }
                | Rem { .. }
                | RangeStore { .. }
                | Pop { .. }
                | PopFirst { .. }
                | MPop { .. }
                | RemRange { .. }
                | CombineStore { .. }
        )
    }
}

/// HyperLogLog commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HllRequest {
    /// `PFADD key element…`: 1 if a register rose (or the key was made), else 0.
    Add { key: Bytes, elements: Vec<Bytes> },
    /// `PFCOUNT key…`: the estimate of the union.
    Count(Vec<Bytes>),
    /// `PFMERGE destination source…`.
    Merge { destination: Bytes, sources: Vec<Bytes> },
}

impl HllRequest {
    pub fn keys(&self) -> Vec<&Bytes> {
        match self {
            HllRequest::Add { key, .. } => vec![key],
            HllRequest::Count(keys) => keys.iter().collect(),
            HllRequest::Merge { destination, sources } => std::iter::once(destination).chain(sources).collect(),
        }
    }

    pub fn is_write(&self) -> bool {
        !matches!(self, HllRequest::Count(_))
    }
}
