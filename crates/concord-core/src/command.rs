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
    /// `CONCORD.RESOLVE key context value`: write superseding exactly what `context` covers.
    Resolve {
        key: Bytes,
        context: VersionVector,
        value: Bytes,
    },
}

impl Request {
    /// The keys the request touches (`None` for whole-keyspace commands: KEYS, SCAN, DBSIZE,
    /// FLUSHALL).
    pub fn keys(&self) -> Option<Vec<&Bytes>> {
        use Request::*;
        Some(match self {
            Get(k) | GetDel(k) | StrLen(k) | Type(k) | Persist(k) | HGetAll(k) | HLen(k) | HKeys(k) | HVals(k)
            | SMembers(k) | SCard(k) | Siblings(k) => vec![k],
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
            MSet(pairs) => pairs.iter().map(|(k, _)| k).collect(),
            Keys(_) | Scan { .. } | DbSize | FlushAll => return None,
        })
    }

    /// Whether the request may change state (writes go through group commit; reads do not).
    pub fn is_write(&self) -> bool {
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
        )
    }
}

/// A reply, shaped like RESP values (RESP3 maps and sets flatten to arrays on RESP2).
/// Serializable: a write forwarded to its home region travels back as one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Reply {
    Ok,
    Nil,
    Int(i64),
    Bulk(Bytes),
    Status(String),
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    Set(Vec<Reply>),
}

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
    #[error("ERR invalid context token: {0}")]
    BadContext(String),
    #[error("ERR {0}")]
    Other(String),
}
