//! Typed requests with Redis semantics, and their replies. The RESP layer parses into these and
//! encodes replies back; nothing here knows about sockets or frames.

use crate::version::VersionVector;
use bytes::Bytes;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetCondition {
    Always,
    /// `NX`: only if the key does not exist.
    IfAbsent,
    /// `XX`: only if the key exists.
    IfPresent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetExpiry {
    /// Clear any time to live (plain `SET`).
    Clear,
    /// `KEEPTTL`.
    Keep,
    /// `EX`/`PX`: relative to now, in ms (> 0).
    InMs(u64),
    /// `EXAT`/`PXAT`: absolute ms since the Unix epoch.
    AtMs(u64),
}

/// `EXPIRE … NX|XX|GT|LT`: when a new expiry replaces the current one. A key without an expiry
/// counts as never expiring (Redis 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpireCondition {
    Always,
    /// `NX`: only when the key has no expiry.
    IfNone,
    /// `XX`: only when it has one.
    IfSome,
    /// `GT`: only when the new expiry is later.
    IfLater,
    /// `LT`: only when the new expiry is sooner.
    IfSooner,
}

/// When a key expires: relative to now (`EXPIRE`) or absolute (`EXPIREAT`), in ms; at or before
/// now deletes the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    InMs(i64),
    AtMs(i64),
}

/// `SINTER` / `SUNION` / `SDIFF`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOp {
    Inter,
    Union,
    Diff,
}

/// What `LCS` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LcsReply {
    /// The common subsequence itself.
    String,
    /// `LEN`.
    Len,
    /// `IDX [MINMATCHLEN n] [WITHMATCHLEN]`.
    Idx { min_match_len: u64, with_match_len: bool },
}

/// `BITOP` operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitOp {
    And,
    Or,
    Xor,
    Not,
}

/// `BITFIELD … OVERFLOW`: what a `SET`/`INCRBY` does past the type's range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitOverflow {
    Wrap,
    Sat,
    /// The operation is skipped and answers nil.
    Fail,
}

/// A `BITFIELD` integer type: `i1`…`i64` or `u1`…`u63`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BitType {
    pub signed: bool,
    pub bits: u8,
}

/// One `BITFIELD` operation; `offset` is in bits (`#n` already multiplied out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitFieldOp {
    Get { ty: BitType, offset: u64 },
    Set { ty: BitType, offset: u64, value: i64 },
    IncrBy { ty: BitType, offset: u64, by: i64 },
    Overflow(BitOverflow),
}

/// `OBJECT` subcommands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectField {
    Encoding,
    RefCount,
    IdleTime,
    Freq,
}

/// Which end of a list (`LEFT` is the head, index 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListEnd {
    Left,
    Right,
}

/// Every command the engine executes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Get(Bytes),
    Set {
        key: Bytes,
        value: Bytes,
        condition: SetCondition,
        expiry: SetExpiry,
        get: bool,
    },
    MGet(Vec<Bytes>),
    MSet(Vec<(Bytes, Bytes)>),
    GetDel(Bytes),
    StrLen(Bytes),
    Append {
        key: Bytes,
        value: Bytes,
    },
    IncrBy {
        key: Bytes,
        by: i64,
    },
    Del(Vec<Bytes>),
    Exists(Vec<Bytes>),
    Type(Bytes),
    Keys(Bytes),
    Scan {
        cursor: u64,
        pattern: Option<Bytes>,
        count: usize,
        kind: Option<Bytes>,
    },
    DbSize,
    /// `FLUSHDB` / `FLUSHALL`: a replicated delete of every key this region has seen.
    FlushAll,
    /// `EXPIRE`/`PEXPIRE` (relative; ≤ 0 deletes the key).
    Expire {
        key: Bytes,
        in_ms: i64,
    },
    /// `TTL` (`millis = false`) / `PTTL`.
    Ttl {
        key: Bytes,
        millis: bool,
    },
    Persist(Bytes),
    HSet {
        key: Bytes,
        pairs: Vec<(Bytes, Bytes)>,
    },
    HSetNx {
        key: Bytes,
        field: Bytes,
        value: Bytes,
    },
    HGet {
        key: Bytes,
        field: Bytes,
    },
    HMGet {
        key: Bytes,
        fields: Vec<Bytes>,
    },
    HDel {
        key: Bytes,
        fields: Vec<Bytes>,
    },
    HGetAll(Bytes),
    HExists {
        key: Bytes,
        field: Bytes,
    },
    HLen(Bytes),
    HKeys(Bytes),
    HVals(Bytes),
    HIncrBy {
        key: Bytes,
        field: Bytes,
        by: i64,
    },
    SAdd {
        key: Bytes,
        members: Vec<Bytes>,
    },
    SRem {
        key: Bytes,
        members: Vec<Bytes>,
    },
    SMembers(Bytes),
    SIsMember {
        key: Bytes,
        member: Bytes,
    },
    SMIsMember {
        key: Bytes,
        members: Vec<Bytes>,
    },
    SCard(Bytes),
    /// `CONCORD.SIBLINGS key`: every concurrent version and the causal context token.
    Siblings(Bytes),
    // ----- strings (engine/strings.rs) -----
    /// `GETRANGE` / `SUBSTR`: inclusive, negative counts from the end.
    GetRange {
        key: Bytes,
        start: i64,
        end: i64,
    },
    /// `SETRANGE`: a register write of the resulting value.
    SetRange {
        key: Bytes,
        offset: u64,
        value: Bytes,
    },
    /// `INCRBYFLOAT`: a register write of the resulting value; `by` is the argument as given
    /// (checked to be a finite float by the parser).
    IncrByFloat {
        key: Bytes,
        by: Bytes,
    },
    /// `GETEX`: the value, and the expiry changed (`Keep`: unchanged, `Clear`: `PERSIST`).
    GetEx {
        key: Bytes,
        expiry: SetExpiry,
    },
    /// `MSETNX`: every pair, or none when any key exists.
    MSetNx(Vec<(Bytes, Bytes)>),
    /// `LCS key1 key2 …`.
    Lcs {
        a: Bytes,
        b: Bytes,
        reply: LcsReply,
    },
    // ----- bitmaps (engine/bitmaps.rs): string-register semantics -----
    /// `SETBIT key offset 0|1`: the old bit.
    SetBit {
        key: Bytes,
        offset: u64,
        value: bool,
    },
    GetBit {
        key: Bytes,
        offset: u64,
    },
    /// `BITCOUNT key [start end [BYTE|BIT]]` (`bits`: the range is in bits).
    BitCount {
        key: Bytes,
        range: Option<(i64, i64)>,
        bits: bool,
    },
    /// `BITPOS key bit [start [end [BYTE|BIT]]]`.
    BitPos {
        key: Bytes,
        bit: bool,
        start: Option<i64>,
        end: Option<i64>,
        bits: bool,
    },
    /// `BITOP op destination key…`: the length of the result.
    BitOp {
        op: BitOp,
        destination: Bytes,
        keys: Vec<Bytes>,
    },
    /// `BITFIELD` / `BITFIELD_RO` (only `Get` ops).
    BitField {
        key: Bytes,
        ops: Vec<BitFieldOp>,
    },
    // ----- keyspace (engine/keyspace.rs) -----
    /// `EXPIREAT`/`PEXPIREAT`, and `EXPIRE`/`PEXPIRE` with a condition.
    ExpireWhen {
        key: Bytes,
        deadline: Deadline,
        condition: ExpireCondition,
    },
    /// `EXPIRETIME` (`millis = false`) / `PEXPIRETIME`.
    ExpireTime {
        key: Bytes,
        millis: bool,
    },
    /// `TOUCH`: how many of the keys exist (Concord keeps no access times).
    Touch(Vec<Bytes>),
    /// `RANDOMKEY`.
    RandomKey,
    /// `RENAME` / `RENAMENX` (`if_absent`): a copy of the source to the destination, then a
    /// delete of the source.
    Rename {
        source: Bytes,
        destination: Bytes,
        if_absent: bool,
    },
    /// `COPY source destination [REPLACE]`.
    Copy {
        source: Bytes,
        destination: Bytes,
        replace: bool,
    },
    /// `DUMP key`: the key's value in Concord's dump format, or nil.
    Dump(Bytes),
    /// `RESTORE key ttl payload [REPLACE] [ABSTTL]` (`ttl_ms` 0: no expiry).
    Restore {
        key: Bytes,
        payload: Bytes,
        ttl_ms: u64,
        absolute: bool,
        replace: bool,
    },
    /// `OBJECT ENCODING|REFCOUNT|IDLETIME|FREQ key`.
    Object {
        field: ObjectField,
        key: Bytes,
    },
    // ----- hashes (engine/hashes.rs) -----
    /// `HINCRBYFLOAT`: a field write of the resulting value.
    HIncrByFloat {
        key: Bytes,
        field: Bytes,
        by: Bytes,
    },
    HStrLen {
        key: Bytes,
        field: Bytes,
    },
    /// `HRANDFIELD key [count [WITHVALUES]]`.
    HRandField {
        key: Bytes,
        count: Option<i64>,
        with_values: bool,
    },
    /// `HSCAN key cursor [MATCH p] [COUNT n]`: the whole hash in one reply (cursor 0).
    HScan {
        key: Bytes,
        pattern: Option<Bytes>,
    },
    // ----- sets (engine/sets.rs) -----
    /// `SPOP key [count]`: removes the observed members it returns.
    SPop {
        key: Bytes,
        count: Option<u64>,
    },
    /// `SRANDMEMBER key [count]`.
    SRandMember {
        key: Bytes,
        count: Option<i64>,
    },
    /// `SMOVE source destination member`.
    SMove {
        source: Bytes,
        destination: Bytes,
        member: Bytes,
    },
    /// `SINTER` / `SUNION` / `SDIFF`.
    SCombine {
        op: SetOp,
        keys: Vec<Bytes>,
    },
    /// `SINTERSTORE` / `SUNIONSTORE` / `SDIFFSTORE`: `destination` becomes the result.
    SCombineStore {
        op: SetOp,
        destination: Bytes,
        keys: Vec<Bytes>,
    },
    /// `SINTERCARD numkeys key… [LIMIT n]` (0: no limit).
    SInterCard {
        keys: Vec<Bytes>,
        limit: u64,
    },
    /// `SSCAN key cursor [MATCH p] [COUNT n]`: the whole set in one reply (cursor 0).
    SScan {
        key: Bytes,
        pattern: Option<Bytes>,
    },
    /// `CONCORD.RESOLVE key context value`: write superseding exactly what `context` covers.
    Resolve {
        key: Bytes,
        context: VersionVector,
        value: Bytes,
    },
    // ----- sorted sets (engine/zsets.rs) -----
    Zset(crate::zcommand::ZsetRequest),
    // ----- HyperLogLog (engine/hyperloglogs.rs) -----
    Hll(crate::zcommand::HllRequest),
    // ----- lists (engine/lists.rs): a sequence CRDT -----
    /// `LPUSH`/`RPUSH` (`if_exists`: `LPUSHX`/`RPUSHX`): the new length.
    ListPush {
        key: Bytes,
        end: ListEnd,
        values: Vec<Bytes>,
        if_exists: bool,
    },
    /// `LPOP`/`RPOP key [count]`: removes the observed elements it returns.
    ListPop {
        key: Bytes,
        end: ListEnd,
        count: Option<u64>,
    },
    LRange {
        key: Bytes,
        start: i64,
        stop: i64,
    },
    LLen(Bytes),
    LIndex {
        key: Bytes,
        index: i64,
    },
    LSet {
        key: Bytes,
        index: i64,
        value: Bytes,
    },
    /// `LREM key count element`.
    LRem {
        key: Bytes,
        count: i64,
        element: Bytes,
    },
    LTrim {
        key: Bytes,
        start: i64,
        stop: i64,
    },
    /// `LINSERT key BEFORE|AFTER pivot element`.
    LInsert {
        key: Bytes,
        before: bool,
        pivot: Bytes,
        element: Bytes,
    },
    /// `LPOS key element [RANK rank] [COUNT num] [MAXLEN len]` (`maxlen` 0: no limit).
    LPos {
        key: Bytes,
        element: Bytes,
        rank: i64,
        count: Option<u64>,
        maxlen: u64,
    },
    /// `LMOVE` / `RPOPLPUSH`: the element moved, or nil.
    LMove {
        source: Bytes,
        destination: Bytes,
        from: ListEnd,
        to: ListEnd,
    },
    /// `LMPOP numkeys key… LEFT|RIGHT [COUNT n]`: `[key, [elements]]` of the first non-empty list.
    LMPop {
        keys: Vec<Bytes>,
        end: ListEnd,
        count: u64,
    },
    /// `SORT` / `SORT_RO` (engine/sort.rs): the elements of a list or set, sorted; with `store`,
    /// a write of the result as a list (the reply is its length).
    Sort {
        key: Bytes,
        /// `BY pattern` (no `*` in it: do not sort).
        by: Option<Bytes>,
        /// `LIMIT offset count`.
        limit: Option<(i64, i64)>,
        /// `GET pattern…` (`#` is the element itself).
        get: Vec<Bytes>,
        desc: bool,
        alpha: bool,
        store: Option<Bytes>,
    },
}

impl Request {
    /// The keys the request touches (`None` for whole-keyspace commands: KEYS, SCAN, DBSIZE,
    /// FLUSHALL).
    pub fn keys(&self) -> Option<Vec<&Bytes>> {
        use Request::*;
        Some(match self {
            Get(k) | Dump(k) | GetDel(k) | StrLen(k) | Type(k) | Persist(k) | HGetAll(k) | HLen(k) | HKeys(k)
            | HVals(k) | SMembers(k) | SCard(k) | Siblings(k) => vec![k],
            GetRange { key, .. }
            | SetRange { key, .. }
            | IncrByFloat { key, .. }
            | GetEx { key, .. }
            | ExpireWhen { key, .. }
            | ExpireTime { key, .. }
            | HIncrByFloat { key, .. }
            | HStrLen { key, .. }
            | HRandField { key, .. }
            | HScan { key, .. }
            | SPop { key, .. }
            | SRandMember { key, .. }
            | SScan { key, .. }
            | Object { key, .. }
            | Restore { key, .. }
            | SetBit { key, .. }
            | GetBit { key, .. }
            | BitCount { key, .. }
            | BitPos { key, .. }
            | BitField { key, .. } => vec![key],
            BitOp { destination, keys, .. } => std::iter::once(destination).chain(keys).collect(),
            Rename {
                source, destination, ..
            }
            | Copy {
                source, destination, ..
            } => vec![source, destination],
            Lcs { a, b, .. } => vec![a, b],
            SMove {
                source, destination, ..
            } => vec![source, destination],
            Touch(keys) | SCombine { keys, .. } | SInterCard { keys, .. } => keys.iter().collect(),
            SCombineStore { destination, keys, .. } => std::iter::once(destination).chain(keys).collect(),
            MSetNx(pairs) => pairs.iter().map(|(k, _)| k).collect(),
            RandomKey => return None,
            Set { key, .. }
            | Append { key, .. }
            | IncrBy { key, .. }
            | Expire { key, .. }
            | Ttl { key, .. }
            | HSet { key, .. }
            | HSetNx { key, .. }
            | HGet { key, .. }
            | HMGet { key, .. }
            | HDel { key, .. }
            | HExists { key, .. }
            | HIncrBy { key, .. }
            | SAdd { key, .. }
            | SRem { key, .. }
            | SIsMember { key, .. }
            | SMIsMember { key, .. }
            | Resolve { key, .. } => vec![key],
            MGet(keys) | Del(keys) | Exists(keys) => keys.iter().collect(),
            LLen(k) => vec![k],
            ListPush { key, .. }
            | ListPop { key, .. }
            | LRange { key, .. }
            | LIndex { key, .. }
            | LSet { key, .. }
            | LRem { key, .. }
            | LTrim { key, .. }
            | LInsert { key, .. }
            | LPos { key, .. } => vec![key],
            LMove {
                source, destination, ..
            } => vec![source, destination],
            LMPop { keys, .. } => keys.iter().collect(),
            Sort { key, store, .. } => std::iter::once(key).chain(store).collect(),
            MSet(pairs) => pairs.iter().map(|(k, _)| k).collect(),
            Keys(_) | Scan { .. } | DbSize | FlushAll => return None,
            Zset(z) => z.keys(),
            Hll(h) => h.keys(),
        })
    }

    /// Whether the request may change state (writes go through group commit; reads do not).
    pub fn is_write(&self) -> bool {
        if let Request::Sort { store, .. } = self {
            return store.is_some();
        }
        if let Request::BitField { ops, .. } = self {
            return ops
                .iter()
                .any(|op| matches!(op, BitFieldOp::Set { .. } | BitFieldOp::IncrBy { .. }));
        }
        match self {
            Request::Zset(z) => return z.is_write(),
            Request::Hll(h) => return h.is_write(),
            _ => {}
        }
        !matches!(
            self,
            Request::Get(_)
                | Request::MGet(_)
                | Request::StrLen(_)
                | Request::Exists(_)
                | Request::Type(_)
                | Request::Keys(_)
                | Request::Scan { .. }
                | Request::DbSize
                | Request::Ttl { .. }
                | Request::HGet { .. }
                | Request::HMGet { .. }
                | Request::HGetAll(_)
                | Request::HExists { .. }
                | Request::HLen(_)
                | Request::HKeys(_)
                | Request::HVals(_)
                | Request::SMembers(_)
                | Request::SIsMember { .. }
                | Request::SMIsMember { .. }
                | Request::SCard(_)
                | Request::Siblings(_)
                | Request::GetRange { .. }
                | Request::Lcs { .. }
                | Request::ExpireTime { .. }
                | Request::Touch(_)
                | Request::RandomKey
                | Request::Object { .. }
                | Request::Dump(_)
                | Request::GetBit { .. }
                | Request::BitCount { .. }
                | Request::BitPos { .. }
                | Request::HStrLen { .. }
                | Request::HRandField { .. }
                | Request::HScan { .. }
                | Request::SRandMember { .. }
                | Request::SCombine { .. }
                | Request::SInterCard { .. }
                | Request::SScan { .. }
                | Request::LRange { .. }
                | Request::LLen(_)
                | Request::LIndex { .. }
                | Request::LPos { .. }
        )
    }
}

/// A reply, shaped like RESP values (RESP3 maps and sets flatten to arrays on RESP2).
/// Serializable: a write forwarded to its home region travels back as one.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Reply {
    Ok,
    Nil,
    Int(i64),
    Bulk(Bytes),
    Status(String),
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    Set(Vec<Reply>),
    /// A double (never NaN): RESP3 `,`; on RESP2 a bulk string as Redis formats scores.
    Double(f64),
    /// Pairs (`WITHSCORES`): on RESP3 an array of two-element arrays, on RESP2 one flat array.
    Pairs(Vec<(Reply, Reply)>),
    /// An error line as an element of a reply (a script's `{err = …}` inside the array it
    /// returns, carried back from the home region that ran it). The engine never makes one: its
    /// errors are [`CommandError`]s.
    Error(String),
}

/// Replies never hold NaN (scores and coordinates refuse it), so equality is total.
impl Eq for Reply {}

impl Reply {
    pub fn bulk(b: impl Into<Bytes>) -> Reply {
        Reply::Bulk(b.into())
    }
}

/// Errors a command answers with; each maps to one Redis error line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR hash value is not an integer")]
    HashNotInteger,
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpire(&'static str),
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR value is not a valid float")]
    NotFloat,
    #[error("ERR hash value is not a float")]
    HashNotFloat,
    #[error("ERR increment would produce NaN or Infinity")]
    NanOrInfinity,
    #[error("ERR bit offset is not an integer or out of range")]
    BitOffset,
    #[error("BUSYKEY Target key name already exists.")]
    BusyKey,
    #[error("ERR invalid context token: {0}")]
    BadContext(String),
    #[error("WRONGTYPE Key is not a valid HyperLogLog string value.")]
    NotHll,
    #[error("ERR resulting score is not a number (NaN)")]
    ScoreNan,
    #[error("ERR {0}")]
    Other(String),
}
