//! Server and connection commands that clients and tools call at start or for introspection:
//! `CLIENT LIST|INFO|KILL|NO-EVICT|NO-TOUCH|REPLY|PAUSE|UNPAUSE|GETREDIR|TRACKINGINFO`,
//! `CONFIG SET|RESETSTAT` (and the parameter table `CONFIG GET` reads), `TIME LASTSAVE RESET ROLE
//! MEMORY LATENCY BGSAVE SAVE LOLWUT`.
//!
//! Parsing only, with Redis 7's arity, option syntax and error texts (`networking.c`
//! `clientCommand`, `config.c`, `object.c` `memoryCommand`, `latency.c`); the node executes the
//! [`ServerCommand`] (`server/commands.rs`). The client-list line format is here too, as a pure
//! function of a [`ClientLine`].

use super::command::{CommandParseError, NodeCommand, Parsed};
use super::frame::parse_i64_strict;
use bytes::Bytes;
use concord_core::CommandError;

use super::command::{is, other, syntax};
type Result<T> = std::result::Result<T, CommandParseError>;

/// `CLIENT LIST TYPE …` / `CLIENT KILL TYPE …`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    Normal,
    Master,
    Replica,
    PubSub,
}

/// `CLIENT REPLY ON|OFF|SKIP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyMode {
    On,
    Off,
    Skip,
}

/// `CLIENT KILL` filters; every given filter must match. The legacy `CLIENT KILL addr` form sets
/// `legacy` (reply `OK` / `-ERR No such client` instead of a count, and the caller may be killed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KillFilter {
    pub legacy: bool,
    pub id: Option<u64>,
    pub kind: Option<ClientKind>,
    pub user: Option<Bytes>,
    pub addr: Option<Bytes>,
    pub laddr: Option<Bytes>,
    /// Spare the calling connection (default yes in the filter form).
    pub skip_me: bool,
    /// Only connections older than this many seconds.
    pub max_age_s: Option<u64>,
}

/// What the node answers itself for these commands. The comment on each says what Redis replies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerCommand {
    /// `CLIENT LIST [TYPE t] [ID id…]`: one line per connection (bulk string).
    ClientList {
        kind: Option<ClientKind>,
        ids: Vec<u64>,
    },
    /// `CLIENT INFO`: this connection's line.
    ClientInfo,
    /// `CLIENT KILL …`: `OK` (legacy form) or the number of connections closed.
    ClientKill(KillFilter),
    /// `CLIENT NO-EVICT ON|OFF`: `OK`.
    ClientNoEvict(bool),
    /// `CLIENT NO-TOUCH ON|OFF`: `OK`.
    ClientNoTouch(bool),
    /// `CLIENT REPLY ON|OFF|SKIP`: `OK` for `ON`, nothing otherwise.
    ClientReply(ReplyMode),
    /// `CLIENT PAUSE timeout [WRITE|ALL]`: `OK`; commands (writes only with `WRITE`) of every
    /// connection wait until the timeout passes or `CLIENT UNPAUSE`.
    ClientPause {
        timeout_ms: u64,
        writes_only: bool,
    },
    /// `CLIENT UNPAUSE`: `OK`.
    ClientUnpause,
    /// `CLIENT UNBLOCK id [TIMEOUT|ERROR]`: 1 if that connection was blocked (`BLPOP`, …) and is
    /// now unblocked (answered as if timed out, or with `-UNBLOCKED …` with `ERROR`), else 0.
    ClientUnblock {
        id: i64,
        error: bool,
    },
    /// `CLIENT GETREDIR`: -1 (tracking is off: Concord has no client-side caching support).
    ClientGetRedir,
    /// `CLIENT TRACKINGINFO`: `flags [off] redirect -1 prefixes []`.
    ClientTrackingInfo,
    /// `CONFIG SET name value […]`: `OK`, all or nothing.
    ConfigSet(Vec<(String, Bytes)>),
    /// `CONFIG RESETSTAT`: `OK`.
    ConfigResetStat,
    /// `TIME`: `[unix seconds, microseconds]` as bulk strings.
    Time,
    /// `LASTSAVE`: unix seconds of the last write to disk.
    LastSave,
    /// `SAVE` (`OK`) / `BGSAVE [SCHEDULE]` (`Background saving started`): an fsync of everything.
    Save {
        background: bool,
    },
    /// `RESET`: `RESET`, the connection back to its initial state.
    Reset,
    /// `ROLE`: `[master, offset, []]`.
    Role,
    /// `MEMORY USAGE key [SAMPLES n]`: bytes, or nil for a missing key.
    MemoryUsage(Bytes),
    /// `MEMORY STATS`: a map of figures.
    MemoryStats,
    /// `MEMORY MALLOC-STATS`: a text.
    MemoryMallocStats,
    /// `MEMORY PURGE`: `OK`.
    MemoryPurge,
    /// `LATENCY LATEST` (`[]`), `LATENCY HISTORY event` (`[]`), `LATENCY RESET [event…]` (0): the
    /// latency monitor is off (Redis's default `latency-monitor-threshold 0`).
    LatencyLatest,
    LatencyHistory,
    LatencyReset,
    /// `LOLWUT [VERSION v …]`: a text ending in the Redis version answered as.
    Lolwut,
    /// `SLOWLOG GET [count]` (`None`: all; default 10): newest first.
    SlowlogGet(Option<usize>),
    /// `SLOWLOG LEN`.
    SlowlogLen,
    /// `SLOWLOG RESET`: `OK`.
    SlowlogReset,
}

fn server(cmd: ServerCommand) -> Result<Parsed> {
    Ok(Parsed::Node(NodeCommand::Server(cmd)))
}

fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

fn arity(name: &'static str, arity: i32, argc: usize) -> Result<()> {
    let needed = arity.unsigned_abs() as usize;
    let ok = if arity >= 0 { argc == needed } else { argc >= needed };
    if ok {
        Ok(())
    } else {
        Err(CommandParseError::WrongArity(name))
    }
}

fn unknown_subcommand(command: &str, sub: &[u8]) -> CommandParseError {
    CommandParseError::UnknownSubcommand {
        command: command.to_ascii_uppercase(),
        subcommand: text(&sub[..sub.len().min(128)]),
    }
}

fn on_off(arg: &[u8]) -> Result<bool> {
    if is(arg, "on") {
        Ok(true)
    } else if is(arg, "off") {
        Ok(false)
    } else {
        Err(syntax())
    }
}

fn client_kind(arg: &[u8]) -> Result<ClientKind> {
    Ok(match arg.to_ascii_lowercase().as_slice() {
        b"normal" => ClientKind::Normal,
        b"master" => ClientKind::Master,
        b"replica" | b"slave" => ClientKind::Replica,
        b"pubsub" => ClientKind::PubSub,
        _ => return Err(other(format!("Unknown client type '{}'", text(arg)))),
    })
}

/// `CLIENT` subcommands beyond `SETNAME GETNAME ID SETINFO` (which `command.rs` parses).
pub fn parse_client(a: &[Bytes]) -> Result<Parsed> {
    let sub = &a[1];
    if is(sub, "list") {
        arity("client|list", -2, a.len())?;
        parse_client_list(a)
    } else if is(sub, "info") {
        arity("client|info", 2, a.len())?;
        server(ServerCommand::ClientInfo)
    } else if is(sub, "kill") {
        arity("client|kill", -3, a.len())?;
        parse_client_kill(a)
    } else if is(sub, "no-evict") {
        arity("client|no-evict", 3, a.len())?;
        server(ServerCommand::ClientNoEvict(on_off(&a[2])?))
    } else if is(sub, "no-touch") {
        arity("client|no-touch", 3, a.len())?;
        server(ServerCommand::ClientNoTouch(on_off(&a[2])?))
    } else if is(sub, "reply") {
        arity("client|reply", 3, a.len())?;
        let mode = if is(&a[2], "on") {
            ReplyMode::On
        } else if is(&a[2], "off") {
            ReplyMode::Off
        } else if is(&a[2], "skip") {
            ReplyMode::Skip
        } else {
            return Err(syntax());
        };
        server(ServerCommand::ClientReply(mode))
    } else if is(sub, "pause") {
        arity("client|pause", -3, a.len())?;
        let timeout = parse_i64_strict(&a[2]).ok_or_else(|| other("timeout is not an integer or out of range"))?;
        let timeout_ms = u64::try_from(timeout).map_err(|_| other("timeout is negative"))?;
        let writes_only = match a.get(3) {
            None => false,
            Some(m) if is(m, "all") && a.len() == 4 => false,
            Some(m) if is(m, "write") && a.len() == 4 => true,
            Some(_) => return Err(syntax()),
        };
        server(ServerCommand::ClientPause {
            timeout_ms,
            writes_only,
        })
    } else if is(sub, "unpause") {
        arity("client|unpause", 2, a.len())?;
        server(ServerCommand::ClientUnpause)
    } else if is(sub, "unblock") {
        arity("client|unblock", -3, a.len())?;
        let id = parse_i64_strict(&a[2]).ok_or(CommandError::NotInteger)?;
        let error = match a.get(3) {
            None => false,
            Some(m) if a.len() == 4 && (is(m, "timeout") || is(m, "error")) => is(m, "error"),
            Some(_) => return Err(other("CLIENT UNBLOCK reason should be TIMEOUT or ERROR")),
        };
        server(ServerCommand::ClientUnblock { id, error })
    } else if is(sub, "getredir") {
        arity("client|getredir", 2, a.len())?;
        server(ServerCommand::ClientGetRedir)
    } else if is(sub, "trackinginfo") {
        arity("client|trackinginfo", 2, a.len())?;
        server(ServerCommand::ClientTrackingInfo)
    } else {
        Err(unknown_subcommand("client", sub))
    }
}

fn parse_client_list(a: &[Bytes]) -> Result<Parsed> {
    let (mut kind, mut ids) = (None, Vec::new());
    let mut i = 2;
    while i < a.len() {
        if is(&a[i], "type") && i + 1 < a.len() {
            kind = Some(client_kind(&a[i + 1])?);
            i += 2;
        } else if is(&a[i], "id") && i + 1 < a.len() {
            for id in &a[i + 1..] {
                let id = parse_i64_strict(id)
                    .and_then(|n| u64::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| other("Invalid client ID"))?;
                ids.push(id);
            }
            i = a.len();
        } else {
            return Err(syntax());
        }
    }
    server(ServerCommand::ClientList { kind, ids })
}

fn parse_client_kill(a: &[Bytes]) -> Result<Parsed> {
    if a.len() == 3 {
        return server(ServerCommand::ClientKill(KillFilter {
            legacy: true,
            addr: Some(a[2].clone()),
            ..KillFilter::default()
        }));
    }
    let mut f = KillFilter {
        skip_me: true,
        ..KillFilter::default()
    };
    let mut i = 2;
    while i < a.len() {
        let Some(value) = a.get(i + 1) else {
            return Err(syntax());
        };
        let opt = &a[i];
        if is(opt, "id") {
            let id = parse_i64_strict(value)
                .and_then(|n| u64::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| other("client-id should be greater than 0"))?;
            f.id = Some(id);
        } else if is(opt, "type") {
            f.kind = Some(client_kind(value)?);
        } else if is(opt, "user") {
            f.user = Some(value.clone());
        } else if is(opt, "addr") {
            f.addr = Some(value.clone());
        } else if is(opt, "laddr") {
            f.laddr = Some(value.clone());
        } else if is(opt, "skipme") {
            f.skip_me = on_yes_no(value)?;
        } else if is(opt, "maxage") {
            let age = parse_i64_strict(value).ok_or(CommandError::NotInteger)?;
            f.max_age_s = Some(u64::try_from(age).unwrap_or(0));
        } else {
            return Err(syntax());
        }
        i += 2;
    }
    server(ServerCommand::ClientKill(f))
}

fn on_yes_no(arg: &[u8]) -> Result<bool> {
    if is(arg, "yes") {
        Ok(true)
    } else if is(arg, "no") {
        Ok(false)
    } else {
        Err(syntax())
    }
}

/// `CONFIG` subcommands beyond `GET` (which `command.rs` parses).
pub fn parse_config(a: &[Bytes]) -> Result<Parsed> {
    let sub = &a[1];
    if is(sub, "set") {
        arity("config|set", -4, a.len())?;
        if !a.len().is_multiple_of(2) {
            return Err(CommandParseError::WrongArity("config|set"));
        }
        let pairs = a[2..]
            .chunks_exact(2)
            .map(|p| (text(&p[0]).to_ascii_lowercase(), p[1].clone()))
            .collect();
        server(ServerCommand::ConfigSet(pairs))
    } else if is(sub, "resetstat") {
        arity("config|resetstat", 2, a.len())?;
        server(ServerCommand::ConfigResetStat)
    } else {
        Err(unknown_subcommand("config", sub))
    }
}

/// `MEMORY USAGE|STATS|MALLOC-STATS|PURGE`.
pub fn parse_memory(a: &[Bytes]) -> Result<Parsed> {
    let sub = &a[1];
    if is(sub, "usage") {
        arity("memory|usage", -3, a.len())?;
        match &a[3..] {
            [] => {}
            [samples, n] if is(samples, "samples") => {
                parse_i64_strict(n).ok_or(CommandError::NotInteger)?;
            }
            _ => return Err(syntax()),
        }
        server(ServerCommand::MemoryUsage(a[2].clone()))
    } else if is(sub, "stats") {
        arity("memory|stats", 2, a.len())?;
        server(ServerCommand::MemoryStats)
    } else if is(sub, "malloc-stats") {
        arity("memory|malloc-stats", 2, a.len())?;
        server(ServerCommand::MemoryMallocStats)
    } else if is(sub, "purge") {
        arity("memory|purge", 2, a.len())?;
        server(ServerCommand::MemoryPurge)
    } else {
        Err(unknown_subcommand("memory", sub))
    }
}

/// `LATENCY LATEST|HISTORY|RESET`.
pub fn parse_latency(a: &[Bytes]) -> Result<Parsed> {
    let sub = &a[1];
    if is(sub, "latest") {
        arity("latency|latest", 2, a.len())?;
        server(ServerCommand::LatencyLatest)
    } else if is(sub, "history") {
        arity("latency|history", 3, a.len())?;
        server(ServerCommand::LatencyHistory)
    } else if is(sub, "reset") {
        server(ServerCommand::LatencyReset)
    } else {
        Err(unknown_subcommand("latency", sub))
    }
}

/// `SLOWLOG GET [count]|LEN|RESET`.
pub fn parse_slowlog(a: &[Bytes]) -> Result<Parsed> {
    let sub = &a[1];
    if is(sub, "get") {
        arity("slowlog|get", -2, a.len())?;
        let count = match &a[2..] {
            [] => Some(10),
            [n] => {
                let n = parse_i64_strict(n).ok_or(CommandError::NotInteger)?;
                match n {
                    -1 => None,
                    n if n < -1 => return Err(other("count should be greater than or equal to -1")),
                    n => Some(n as usize),
                }
            }
            _ => return Err(CommandParseError::WrongArity("slowlog|get")),
        };
        server(ServerCommand::SlowlogGet(count))
    } else if is(sub, "len") {
        arity("slowlog|len", 2, a.len())?;
        server(ServerCommand::SlowlogLen)
    } else if is(sub, "reset") {
        arity("slowlog|reset", 2, a.len())?;
        server(ServerCommand::SlowlogReset)
    } else {
        Err(unknown_subcommand("slowlog", sub))
    }
}

/// `TIME LASTSAVE RESET ROLE SAVE BGSAVE LOLWUT` (their arity is checked by the table).
pub fn parse_plain(name: &str, a: &[Bytes]) -> Result<Parsed> {
    match name {
        "time" => server(ServerCommand::Time),
        "lastsave" => server(ServerCommand::LastSave),
        "reset" => server(ServerCommand::Reset),
        "role" => server(ServerCommand::Role),
        "save" => server(ServerCommand::Save { background: false }),
        "bgsave" => match &a[1..] {
            [] => server(ServerCommand::Save { background: true }),
            [s] if is(s, "schedule") => server(ServerCommand::Save { background: true }),
            _ => Err(syntax()),
        },
        "lolwut" => {
            let mut i = 1;
            while i < a.len() {
                if is(&a[i], "version") && i + 1 < a.len() {
                    parse_i64_strict(&a[i + 1]).ok_or(CommandError::NotInteger)?;
                    i += 2;
                } else {
                    // Redis passes the remaining numbers to the art; there is no art here.
                    parse_i64_strict(&a[i]).ok_or(CommandError::NotInteger)?;
                    i += 1;
                }
            }
            server(ServerCommand::Lolwut)
        }
        _ => unreachable!("parse_plain called for {name}"),
    }
}

/// How `CONFIG SET` treats a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// Fixed by the node's config file or by what Concord is; `CONFIG SET` refuses it.
    Immutable,
    /// Concord acts on it (see `docs/operations.md`); the value must be an integer ≥ 0.
    Seconds,
    /// Concord acts on it; an integer of at least `min`.
    Integer { min: i64 },
    /// Accepted and reported, with no effect: Redis memory-encoding thresholds. Concord's types
    /// have one representation each, so these change no reply. Must be an integer.
    EncodingHint,
    /// Only this one value is accepted (Concord does not have the feature the others would turn on).
    Only(&'static str),
}

/// One row of the `CONFIG GET|SET` table.
pub struct ConfigParam {
    pub name: &'static str,
    /// The value at start; `None` when the node fills it in from its config.
    pub default: Option<&'static str>,
    pub kind: ParamKind,
}

const fn param(name: &'static str, default: Option<&'static str>, kind: ParamKind) -> ConfigParam {
    ConfigParam { name, default, kind }
}

/// The parameters `CONFIG GET` reports, sorted by name. Tools read several at start
/// (`redis-benchmark`: `save`, `appendonly`; client test suites: `maxmemory`, `timeout`).
pub const CONFIG_PARAMS: &[ConfigParam] = &[
    param("appendonly", Some("no"), ParamKind::Immutable),
    param("bind", None, ParamKind::Immutable),
    param("databases", Some("1"), ParamKind::Immutable),
    param("dir", None, ParamKind::Immutable),
    param("hash-max-listpack-entries", Some("128"), ParamKind::EncodingHint),
    param("hash-max-listpack-value", Some("64"), ParamKind::EncodingHint),
    param("hash-max-ziplist-entries", Some("128"), ParamKind::EncodingHint),
    param("hash-max-ziplist-value", Some("64"), ParamKind::EncodingHint),
    param("latency-monitor-threshold", Some("0"), ParamKind::Only("0")),
    param("list-compress-depth", Some("0"), ParamKind::EncodingHint),
    param("list-max-listpack-size", Some("-2"), ParamKind::EncodingHint),
    param("list-max-ziplist-size", Some("-2"), ParamKind::EncodingHint),
    param("maxclients", None, ParamKind::Immutable),
    param("maxmemory", Some("0"), ParamKind::Only("0")),
    param("maxmemory-policy", Some("noeviction"), ParamKind::Only("noeviction")),
    param("notify-keyspace-events", Some(""), ParamKind::Only("")),
    param("port", None, ParamKind::Immutable),
    param("proto-max-bulk-len", None, ParamKind::Immutable),
    param("save", Some(""), ParamKind::Immutable),
    param("set-max-intset-entries", Some("512"), ParamKind::EncodingHint),
    param("set-max-listpack-entries", Some("128"), ParamKind::EncodingHint),
    param("set-max-listpack-value", Some("64"), ParamKind::EncodingHint),
    param("slowlog-log-slower-than", Some("10000"), ParamKind::Integer { min: -1 }),
    param("slowlog-max-len", Some("128"), ParamKind::Integer { min: 0 }),
    param("timeout", Some("0"), ParamKind::Seconds),
    param("zset-max-listpack-entries", Some("128"), ParamKind::EncodingHint),
    param("zset-max-listpack-value", Some("64"), ParamKind::EncodingHint),
    param("zset-max-ziplist-entries", Some("128"), ParamKind::EncodingHint),
    param("zset-max-ziplist-value", Some("64"), ParamKind::EncodingHint),
];

/// Check a `CONFIG SET` (every pair before any is applied, as Redis does): the values to store,
/// or Redis's error text.
pub fn check_config_set(pairs: &[(String, Bytes)]) -> std::result::Result<Vec<(&'static str, String)>, String> {
    let failed =
        |name: &str, why: &str| format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {why}");
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for (name, value) in pairs {
        let Some(p) = CONFIG_PARAMS.iter().find(|p| p.name == name) else {
            return Err(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
            ));
        };
        if out.iter().any(|(n, _)| *n == p.name) {
            return Err(failed(name, "duplicate parameter"));
        }
        let value = String::from_utf8_lossy(value).into_owned();
        let integer = || value.trim().parse::<i64>().ok();
        let stored = match p.kind {
            ParamKind::Immutable => return Err(failed(name, "can't set immutable config")),
            ParamKind::Seconds => match integer() {
                Some(n) if n >= 0 => n.to_string(),
                Some(_) => return Err(failed(name, "argument must be between 0 and 2147483647 inclusive")),
                None => return Err(failed(name, "argument couldn't be parsed into an integer")),
            },
            ParamKind::Integer { min } => match integer() {
                Some(n) if n >= min => n.to_string(),
                Some(_) => {
                    return Err(failed(
                        name,
                        &format!("argument must be between {min} and 9223372036854775807 inclusive"),
                    ))
                }
                None => return Err(failed(name, "argument couldn't be parsed into an integer")),
            },
            ParamKind::EncodingHint => match integer() {
                Some(n) => n.to_string(),
                None => return Err(failed(name, "argument couldn't be parsed into an integer")),
            },
            ParamKind::Only(only) => {
                let same = value.eq_ignore_ascii_case(only) || (only == "0" && integer() == Some(0));
                if !same {
                    return Err(failed(
                        name,
                        &format!("Concord supports only {name} {only:?} (see docs/operations.md#config)"),
                    ));
                }
                only.to_string()
            }
        };
        out.push((p.name, stored));
    }
    Ok(out)
}

/// One connection as `CLIENT LIST` / `CLIENT INFO` show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientLine {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub fd: i64,
    pub name: String,
    pub age_s: u64,
    pub idle_s: u64,
    pub flags: String,
    pub last_command: String,
    pub resp: u8,
    pub lib_name: String,
    pub lib_ver: String,
    /// Channels and patterns subscribed to.
    pub sub: usize,
    pub psub: usize,
    pub ssub: usize,
}

impl ClientLine {
    /// Redis 7.2's field order (`networking.c` `catClientInfoString`); buffers this node does not
    /// account per client read 0.
    pub fn render(&self) -> String {
        format!(
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db=0 sub={} psub={} ssub={} multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            self.name,
            self.age_s,
            self.idle_s,
            self.flags,
            self.sub,
            self.psub,
            self.ssub,
            self.last_command,
            self.resp,
            self.lib_name,
            self.lib_ver
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::parse_command;

    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ').map(|s| Bytes::copy_from_slice(s.as_bytes())).collect()
    }

    fn cmd(line: &str) -> ServerCommand {
        match parse_command(&args(line)) {
            Ok(Parsed::Node(NodeCommand::Server(c))) => c,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn err(line: &str) -> String {
        match parse_command(&args(line)) {
            Err(e) => e.to_string(),
            Ok(p) => panic!("{line}: expected an error, got {p:?}"),
        }
    }

    #[test]
    fn client_subcommands() {
        assert_eq!(
            cmd("CLIENT LIST"),
            ServerCommand::ClientList {
                kind: None,
                ids: vec![]
            }
        );
        assert_eq!(
            cmd("client list type replica id 3 4"),
            ServerCommand::ClientList {
                kind: Some(ClientKind::Replica),
                ids: vec![3, 4]
            }
        );
        assert_eq!(err("CLIENT LIST TYPE caster"), "ERR Unknown client type 'caster'");
        assert_eq!(err("CLIENT LIST ID x"), "ERR Invalid client ID");
        assert_eq!(err("CLIENT LIST foo"), "ERR syntax error");
        assert_eq!(cmd("CLIENT INFO"), ServerCommand::ClientInfo);
        assert_eq!(
            err("CLIENT INFO x"),
            "ERR wrong number of arguments for 'client|info' command"
        );
        assert_eq!(
            cmd("CLIENT KILL 127.0.0.1:5"),
            ServerCommand::ClientKill(KillFilter {
                legacy: true,
                addr: Some(Bytes::from_static(b"127.0.0.1:5")),
                ..KillFilter::default()
            })
        );
        assert_eq!(
            cmd("CLIENT KILL ID 7 SKIPME no"),
            ServerCommand::ClientKill(KillFilter {
                id: Some(7),
                ..KillFilter::default()
            })
        );
        assert_eq!(err("CLIENT KILL ID 0"), "ERR client-id should be greater than 0");
        assert_eq!(err("CLIENT KILL ID 1 SKIPME maybe"), "ERR syntax error");
        assert_eq!(err("CLIENT KILL ID 1 SKIPME"), "ERR syntax error");
        assert_eq!(
            err("CLIENT KILL"),
            "ERR wrong number of arguments for 'client|kill' command"
        );
        assert_eq!(cmd("CLIENT NO-EVICT on"), ServerCommand::ClientNoEvict(true));
        assert_eq!(cmd("CLIENT NO-TOUCH OFF"), ServerCommand::ClientNoTouch(false));
        assert_eq!(err("CLIENT NO-TOUCH maybe"), "ERR syntax error");
        assert_eq!(cmd("CLIENT REPLY skip"), ServerCommand::ClientReply(ReplyMode::Skip));
        assert_eq!(
            cmd("CLIENT PAUSE 10 WRITE"),
            ServerCommand::ClientPause {
                timeout_ms: 10,
                writes_only: true
            }
        );
        assert_eq!(err("CLIENT PAUSE x"), "ERR timeout is not an integer or out of range");
        assert_eq!(err("CLIENT PAUSE -1"), "ERR timeout is negative");
        assert_eq!(err("CLIENT PAUSE 1 SOME"), "ERR syntax error");
        assert_eq!(cmd("CLIENT GETREDIR"), ServerCommand::ClientGetRedir);
        assert_eq!(err("CLIENT FOO"), "ERR unknown subcommand 'FOO'. Try CLIENT HELP.");
    }

    #[test]
    fn config_set_and_resetstat() {
        assert_eq!(
            cmd("CONFIG SET Timeout 70"),
            ServerCommand::ConfigSet(vec![("timeout".into(), Bytes::from_static(b"70"))])
        );
        assert_eq!(
            err("CONFIG SET timeout"),
            "ERR wrong number of arguments for 'config|set' command"
        );
        assert_eq!(
            err("CONFIG SET timeout 1 maxmemory"),
            "ERR wrong number of arguments for 'config|set' command"
        );
        assert_eq!(cmd("CONFIG RESETSTAT"), ServerCommand::ConfigResetStat);
        let set = |pairs: &[(&str, &str)]| {
            check_config_set(
                &pairs
                    .iter()
                    .map(|(n, v)| (n.to_string(), Bytes::copy_from_slice(v.as_bytes())))
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(set(&[("timeout", "70")]), Ok(vec![("timeout", "70".into())]));
        assert_eq!(
            set(&[("timeout", "x")]),
            Err("ERR CONFIG SET failed (possibly related to argument 'timeout') - argument couldn't be parsed into an integer".into())
        );
        assert_eq!(
            set(&[("port", "1")]),
            Err("ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config".into())
        );
        assert_eq!(
            set(&[("nope", "1")]),
            Err("ERR Unknown option or number of arguments for CONFIG SET - 'nope'".into())
        );
        assert_eq!(set(&[("maxmemory", "0")]), Ok(vec![("maxmemory", "0".into())]));
        assert!(set(&[("timeout", "1"), ("maxmemory", "100")]).is_err());
        assert!(set(&[("timeout", "1"), ("timeout", "2")])
            .unwrap_err()
            .contains("duplicate"));
        // The table is sorted (CONFIG GET * answers in this order).
        assert!(CONFIG_PARAMS.windows(2).all(|w| w[0].name < w[1].name));
    }

    #[test]
    fn other_server_commands() {
        assert_eq!(cmd("TIME"), ServerCommand::Time);
        assert_eq!(err("TIME x"), "ERR wrong number of arguments for 'time' command");
        assert_eq!(cmd("LASTSAVE"), ServerCommand::LastSave);
        assert_eq!(cmd("RESET"), ServerCommand::Reset);
        assert_eq!(cmd("BGSAVE SCHEDULE"), ServerCommand::Save { background: true });
        assert_eq!(err("BGSAVE now"), "ERR syntax error");
        assert_eq!(
            cmd("MEMORY USAGE k SAMPLES 5"),
            ServerCommand::MemoryUsage(Bytes::from_static(b"k"))
        );
        assert_eq!(err("MEMORY USAGE k SAMPLES"), "ERR syntax error");
        assert_eq!(err("MEMORY FOO"), "ERR unknown subcommand 'FOO'. Try MEMORY HELP.");
        assert_eq!(cmd("LATENCY HISTORY command"), ServerCommand::LatencyHistory);
        assert_eq!(cmd("LOLWUT VERSION 5 1 2"), ServerCommand::Lolwut);
        assert_eq!(err("LOLWUT x"), "ERR value is not an integer or out of range");
        assert_eq!(cmd("SLOWLOG GET"), ServerCommand::SlowlogGet(Some(10)));
        assert_eq!(cmd("SLOWLOG GET -1"), ServerCommand::SlowlogGet(None));
        assert_eq!(err("SLOWLOG GET -2"), "ERR count should be greater than or equal to -1");
        assert_eq!(cmd("slowlog len"), ServerCommand::SlowlogLen);
    }

    #[test]
    fn client_line_format() {
        let line = ClientLine {
            id: 3,
            addr: "127.0.0.1:5000".into(),
            laddr: "127.0.0.1:7001".into(),
            fd: 9,
            name: "app".into(),
            age_s: 1,
            idle_s: 0,
            flags: "N".into(),
            last_command: "client|list".into(),
            resp: 2,
            lib_name: "redis-py".into(),
            lib_ver: "5.2.1".into(),
            sub: 0,
            psub: 0,
            ssub: 0,
        }
        .render();
        assert!(
            line.starts_with("id=3 addr=127.0.0.1:5000 laddr=127.0.0.1:7001 fd=9 name=app age=1 idle=0 flags=N db=0 ")
        );
        assert!(line.ends_with(" cmd=client|list user=default redir=-1 resp=2 lib-name=redis-py lib-ver=5.2.1"));
    }
}
