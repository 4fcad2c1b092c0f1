//! A request's arguments → a typed command: an engine [`Request`] (with the [`ReplyShape`] that
//! turns the engine's reply into this Redis command's reply), or a [`NodeCommand`] the node answers
//! itself (connection state, introspection, replication waits).
//!
//! Arity, option syntax and error texts follow Redis 7 (`server.c` `processCommand`,
//! `t_string.c` `parseExtendedStringArgumentsOrReply`, `expire.c`, `db.c` `scanGenericCommand`,
//! `networking.c` `helloCommand`/`clientCommand`), so client libraries see the errors they expect.

use super::frame::{parse_i64_strict, Frame};
use bytes::Bytes;
use concord_core::codec::parse_context_token;
use concord_core::glob::glob_match;
use concord_core::{CommandError, Reply, Request, SetCondition, SetExpiry};

/// What a request parses into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Execute on the engine, then pass the reply through [`shape_reply`].
    Engine(Request, ReplyShape),
    /// Answered by the node without the engine.
    Node(NodeCommand),
    /// A blocking command (`BLPOP`, …): see [`Blocking`].
    Blocking(Blocking),
}

/// A blocking command: the node runs `request` (the non-blocking form: `LMPOP`, `LMOVE`) and,
/// while it answers nil, waits for a list to change (a local or a replicated write) and runs it
/// again, until `timeout_ms` (`None`: forever). `args` are that non-blocking form's arguments,
/// what is forwarded when the key has its home in another region (so the home pops, exactly
/// once, and nothing blocks there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocking {
    pub request: Request,
    pub shape: ReplyShape,
    pub timeout_ms: Option<u64>,
    pub args: Vec<Bytes>,
}

/// How a Redis command's reply differs from the reply of the engine request it maps to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplyShape {
    /// The engine's reply is the command's reply.
    #[default]
    AsIs,
    /// `SETNX`: `SET ... NX` answers `OK`/nil; `SETNX` answers `1`/`0`.
    SetNxInteger,
    /// `HMSET`: `HSET` answers the number of new fields; `HMSET` answers `OK`.
    Ok,
    /// `BLPOP`/`BRPOP`: `LMPOP` answers `[key, [element]]`; they answer `[key, element]`.
    FirstPopped,
}

/// Apply a [`ReplyShape`] to the engine's reply.
pub fn shape_reply(shape: ReplyShape, reply: Reply) -> Reply {
    match (shape, reply) {
        (ReplyShape::AsIs, reply) => reply,
        (ReplyShape::SetNxInteger, Reply::Ok) => Reply::Int(1),
        (ReplyShape::SetNxInteger, Reply::Nil) => Reply::Int(0),
        (ReplyShape::Ok, Reply::Int(_)) => Reply::Ok,
        (ReplyShape::FirstPopped, Reply::Array(mut kv)) if kv.len() == 2 => match kv.pop() {
            Some(Reply::Array(mut vs)) if !vs.is_empty() => Reply::Array(vec![kv.remove(0), vs.remove(0)]),
            _ => Reply::Nil,
        },
        // Anything else is not what the mapped request answers; pass it on rather than invent.
        (_, reply) => reply,
    }
}

/// `AUTH [username] password` / `HELLO ... AUTH username password`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// `None` for the one-argument `AUTH password` (Redis's `default` user).
    pub username: Option<Bytes>,
    pub password: Bytes,
}

/// `COMMAND` and its subcommands; [`command_reply`] answers all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandQuery {
    /// `COMMAND`: info on every command.
    All,
    /// `COMMAND COUNT`.
    Count,
    /// `COMMAND DOCS [name...]` (answered with an empty map).
    Docs(Vec<Bytes>),
    /// `COMMAND INFO [name...]` (no names: every command).
    Info(Vec<Bytes>),
    /// `COMMAND LIST [FILTERBY PATTERN pattern]`.
    List(Option<Bytes>),
    /// `COMMAND GETKEYS command [arg...]`: the keys that command would touch (found while
    /// parsing: see [`command_keys`]).
    GetKeys(Vec<Bytes>),
}

/// An `EVAL`-family call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eval {
    /// The source (`EVAL`) or the SHA1 of a cached script (`EVALSHA`).
    pub script: ScriptSource,
    pub keys: Vec<Bytes>,
    pub args: Vec<Bytes>,
    /// `EVAL_RO`/`EVALSHA_RO`: the script may not write.
    pub read_only: bool,
}

/// Where an `EVAL`-family call takes its script from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptSource {
    Source(Bytes),
    Sha(Bytes),
}

/// `SCRIPT` subcommands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptCommand {
    /// `SCRIPT LOAD script`: the SHA1.
    Load(Bytes),
    /// `SCRIPT EXISTS sha...`: 1/0 each.
    Exists(Vec<Bytes>),
    /// `SCRIPT FLUSH [ASYNC|SYNC]`: `OK`.
    Flush,
    /// `SCRIPT KILL`: `-NOTBUSY` (a script never outlives its instruction budget).
    Kill,
    /// `SCRIPT HELP`.
    Help,
}

/// `CLIENT SETINFO` attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAttribute {
    LibName,
    LibVersion,
}

/// Commands the node answers itself. The comment on each says what Redis replies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeCommand {
    /// `PING [message]`: `+PONG`, or the message as a bulk string.
    Ping(Option<Bytes>),
    /// `ECHO message`: the message.
    Echo(Bytes),
    /// `HELLO [protover [AUTH username password] [SETNAME name]]`: switch protocol (2 or 3; `None`
    /// keeps the current one), authenticate, name the connection; reply with the server map.
    Hello {
        protocol: Option<u8>,
        auth: Option<Credentials>,
        client_name: Option<Bytes>,
    },
    /// `AUTH [username] password`: `OK` or `-WRONGPASS invalid username-password pair or user is
    /// disabled.`
    Auth(Credentials),
    /// `SELECT 0` (every other index is rejected while parsing): `OK`.
    Select,
    /// `QUIT`: `OK`, then close the connection.
    Quit,
    /// `MULTI`: start queueing this connection's commands (server.rs, `Transaction`).
    Multi,
    /// `EXEC`: run the queued commands as one atomic unit, replicated as one.
    Exec,
    /// `DISCARD`: drop the queued commands.
    Discard,
    /// `WATCH key…`: `EXEC` aborts if any of them changed (by any region's write) since.
    Watch(Vec<Bytes>),
    /// `UNWATCH`.
    Unwatch,
    /// `EVAL script numkeys key... arg...` (and `EVALSHA`, `EVAL_RO`, `EVALSHA_RO`): run a Lua
    /// script atomically, replicated as one unit (server/scripting.rs).
    Eval(Eval),
    /// `SCRIPT LOAD|EXISTS|FLUSH|KILL|HELP`.
    Script(ScriptCommand),
    /// `COMMAND ...`: see [`command_reply`].
    Command(CommandQuery),
    /// `INFO [section...]`: sections in lower case; empty means the default set.
    Info(Vec<String>),
    /// `WAIT numregions timeout_ms`: the number of regions that acknowledged this connection's
    /// writes when `numregions` did or the timeout passed (0 = wait forever). Negative counts are
    /// 0, as Redis treats them.
    Wait { regions: u64, timeout_ms: u64 },
    /// `CONCORD.CONFLICTS [count]`: the most recent conflict records.
    Conflicts { count: Option<usize> },
    /// `CONCORD.STATUS`: region, applied vector, peers and lag.
    Status,
    /// `CLIENT SETNAME name` (empty clears it): `OK`.
    ClientSetName(Bytes),
    /// `CLIENT GETNAME`: the name, or nil.
    ClientGetName,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`: `OK`.
    ClientSetInfo { attribute: ClientAttribute, value: Bytes },
    /// `CLIENT ID`: the connection's id as an integer.
    ClientId,
    /// `CONFIG GET parameter...`: see [`config_get_reply`].
    ConfigGet(Vec<Bytes>),
    /// The other server and connection commands: see [`super::cmd_server`].
    Server(super::cmd_server::ServerCommand),
    /// Pub/sub: see [`super::cmd_pubsub`].
    PubSub(super::cmd_pubsub::PubSubCommand),
}

/// Why a request could not be parsed into a command. `Display` is the Redis error text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandParseError {
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    UnknownCommand { name: String, args: String },
    #[error("ERR unknown subcommand '{subcommand}'. Try {command} HELP.")]
    UnknownSubcommand { command: String, subcommand: String },
    /// Holds Redis's full command name (`get`, `client|setname`).
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(&'static str),
    #[error("NOPROTO unsupported protocol version")]
    NoProto,
    #[error(transparent)]
    Command(#[from] CommandError),
}

impl CommandParseError {
    /// The error reply for it.
    pub fn to_frame(&self) -> Frame {
        Frame::Error(self.to_string())
    }
}

/// One row of the command table: Redis's `COMMAND INFO` fields, which also drive the arity check.
struct Spec {
    name: &'static str,
    /// Arguments including the name; negative means "at least".
    arity: i32,
    flags: &'static [&'static str],
    first_key: i64,
    last_key: i64,
    step: i64,
}

const fn spec(name: &'static str, arity: i32, flags: &'static [&'static str], keys: (i64, i64, i64)) -> Spec {
    Spec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
    }
}

const CONNECTION: &[&str] = &["noscript", "loading", "stale", "fast"];
const NO_AUTH_BUSY: &[&str] = &["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"];
const ADMIN: &[&str] = &["admin", "noscript", "loading", "stale"];
const READ: &[&str] = &["readonly"];
const READ_FAST: &[&str] = &["readonly", "fast"];
const WRITE: &[&str] = &["write"];
const WRITE_FAST: &[&str] = &["write", "fast"];
const WRITE_GROW: &[&str] = &["write", "denyoom"];
const WRITE_GROW_FAST: &[&str] = &["write", "denyoom", "fast"];
const SCRIPTING: &[&str] = &[
    "noscript",
    "stale",
    "skip_monitor",
    "may_replicate",
    "no_mandatory_keys",
    "movablekeys",
];
const SCRIPTING_RO: &[&str] = &[
    "readonly",
    "noscript",
    "stale",
    "skip_monitor",
    "no_mandatory_keys",
    "movablekeys",
];
const NO_KEYS: (i64, i64, i64) = (0, 0, 0);
const ONE_KEY: (i64, i64, i64) = (1, 1, 1);
const ALL_KEYS: (i64, i64, i64) = (1, -1, 1);

const TABLE: &[Spec] = &[
    // Redis 7.0's flags: no `noscript` (scripts may call them).
    spec("ping", -1, &["fast", "sentinel"], NO_KEYS),
    spec("echo", 2, &["loading", "stale", "fast"], NO_KEYS),
    spec("hello", -1, NO_AUTH_BUSY, NO_KEYS),
    spec("auth", -2, NO_AUTH_BUSY, NO_KEYS),
    spec("select", 2, &["loading", "stale", "fast"], NO_KEYS),
    spec("quit", -1, NO_AUTH_BUSY, NO_KEYS),
    spec("command", -1, &["loading", "stale"], NO_KEYS),
    spec("info", -1, &["loading", "stale"], NO_KEYS),
    spec("client", -2, CONNECTION, NO_KEYS),
    spec("config", -2, ADMIN, NO_KEYS),
    spec("wait", 3, &["noscript"], NO_KEYS),
    spec("dbsize", 1, READ_FAST, NO_KEYS),
    spec("type", 2, READ_FAST, ONE_KEY),
    spec("exists", -2, READ_FAST, ALL_KEYS),
    spec("del", -2, WRITE, ALL_KEYS),
    spec("unlink", -2, WRITE_FAST, ALL_KEYS),
    spec("keys", 2, READ, NO_KEYS),
    spec("scan", -2, &["readonly", "touches_arbitrary_keys"], NO_KEYS),
    spec("flushdb", -1, WRITE, NO_KEYS),
    spec("flushall", -1, WRITE, NO_KEYS),
    spec("expire", -3, WRITE_FAST, ONE_KEY),
    spec("pexpire", -3, WRITE_FAST, ONE_KEY),
    spec("ttl", 2, READ_FAST, ONE_KEY),
    spec("pttl", 2, READ_FAST, ONE_KEY),
    spec("persist", 2, WRITE_FAST, ONE_KEY),
    spec("get", 2, READ_FAST, ONE_KEY),
    spec("set", -3, WRITE_GROW, ONE_KEY),
    spec("setnx", 3, WRITE_GROW_FAST, ONE_KEY),
    spec("setex", 4, WRITE_GROW, ONE_KEY),
    spec("psetex", 4, WRITE_GROW, ONE_KEY),
    spec("mget", -2, READ_FAST, ALL_KEYS),
    spec("mset", -3, WRITE_GROW, (1, -1, 2)),
    spec("getset", 3, WRITE_GROW_FAST, ONE_KEY),
    spec("getdel", 2, WRITE_FAST, ONE_KEY),
    spec("strlen", 2, READ_FAST, ONE_KEY),
    spec("append", 3, WRITE_GROW_FAST, ONE_KEY),
    spec("incr", 2, WRITE_GROW_FAST, ONE_KEY),
    spec("incrby", 3, WRITE_GROW_FAST, ONE_KEY),
    spec("decr", 2, WRITE_GROW_FAST, ONE_KEY),
    spec("decrby", 3, WRITE_GROW_FAST, ONE_KEY),
    spec("hset", -4, WRITE_GROW_FAST, ONE_KEY),
    spec("hmset", -4, WRITE_GROW_FAST, ONE_KEY),
    spec("hsetnx", 4, WRITE_GROW_FAST, ONE_KEY),
    spec("hget", 3, READ_FAST, ONE_KEY),
    spec("hmget", -3, READ_FAST, ONE_KEY),
    spec("hdel", -3, WRITE_FAST, ONE_KEY),
    spec("hgetall", 2, READ, ONE_KEY),
    spec("hexists", 3, READ_FAST, ONE_KEY),
    spec("hlen", 2, READ_FAST, ONE_KEY),
    spec("hkeys", 2, READ, ONE_KEY),
    spec("hvals", 2, READ, ONE_KEY),
    spec("hincrby", 4, WRITE_GROW_FAST, ONE_KEY),
    spec("sadd", -3, WRITE_GROW_FAST, ONE_KEY),
    spec("srem", -3, WRITE_FAST, ONE_KEY),
    spec("smembers", 2, READ, ONE_KEY),
    spec("sismember", 3, READ_FAST, ONE_KEY),
    spec("smismember", -3, READ_FAST, ONE_KEY),
    spec("scard", 2, READ_FAST, ONE_KEY),
    spec("concord.siblings", 2, READ, ONE_KEY),
    spec("concord.resolve", 4, WRITE_GROW, ONE_KEY),
    spec("concord.conflicts", -1, READ, NO_KEYS),
    spec("concord.status", 1, READ, NO_KEYS),
    // Server and connection commands (resp/cmd_server.rs); flags as Redis 7.0 reports them.
    spec("time", 1, &["loading", "stale", "fast"], NO_KEYS),
    spec("lastsave", 1, &["loading", "stale", "fast"], NO_KEYS),
    spec(
        "save",
        1,
        &["admin", "noscript", "no_async_loading", "no_multi"],
        NO_KEYS,
    ),
    spec("bgsave", -1, &["admin", "noscript", "no_async_loading"], NO_KEYS),
    spec(
        "reset",
        1,
        &["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"],
        NO_KEYS,
    ),
    spec(
        "role",
        1,
        &["noscript", "loading", "stale", "fast", "sentinel"],
        NO_KEYS,
    ),
    spec("memory", -2, &[], NO_KEYS),
    spec("latency", -2, &[], NO_KEYS),
    spec("slowlog", -2, &[], NO_KEYS),
    spec("lolwut", -1, &["readonly", "fast"], NO_KEYS),
    // Data commands on the existing types (resp/cmd_data.rs); arity and flags as Redis 7.0.
    spec("getrange", 4, READ, ONE_KEY),
    spec("substr", 4, READ, ONE_KEY),
    spec("setrange", 4, WRITE_GROW, ONE_KEY),
    spec("incrbyfloat", 3, WRITE_GROW_FAST, ONE_KEY),
    spec("getex", -2, WRITE_FAST, ONE_KEY),
    spec("msetnx", -3, WRITE_GROW, (1, -1, 2)),
    spec("lcs", -3, READ, (1, 2, 1)),
    spec("setbit", 4, WRITE_GROW, ONE_KEY),
    spec("getbit", 3, READ_FAST, ONE_KEY),
    spec("bitcount", -2, READ, ONE_KEY),
    spec("bitpos", -3, READ, ONE_KEY),
    spec("bitop", -4, WRITE_GROW, (2, -1, 1)),
    spec("bitfield", -2, WRITE_GROW, ONE_KEY),
    spec("bitfield_ro", -2, READ_FAST, ONE_KEY),
    spec("expireat", -3, WRITE_FAST, ONE_KEY),
    spec("pexpireat", -3, WRITE_FAST, ONE_KEY),
    spec("expiretime", 2, READ_FAST, ONE_KEY),
    spec("pexpiretime", 2, READ_FAST, ONE_KEY),
    spec("touch", -2, READ_FAST, ALL_KEYS),
    spec("randomkey", 1, &["readonly", "touches_arbitrary_keys"], NO_KEYS),
    spec("rename", 3, WRITE, (1, 2, 1)),
    spec("renamenx", 3, WRITE_FAST, (1, 2, 1)),
    spec("copy", -3, WRITE_GROW, (1, 2, 1)),
    spec("object", -2, READ, (2, 2, 1)),
    spec("dump", 2, READ, ONE_KEY),
    spec("restore", -4, WRITE_GROW, ONE_KEY),
    spec("hincrbyfloat", 4, WRITE_GROW_FAST, ONE_KEY),
    spec("hstrlen", 3, READ_FAST, ONE_KEY),
    spec("hrandfield", -2, READ, ONE_KEY),
    spec("hscan", -3, READ, ONE_KEY),
    spec("spop", -2, WRITE_FAST, ONE_KEY),
    spec("srandmember", -2, READ, ONE_KEY),
    spec("smove", 4, WRITE_FAST, (1, 2, 1)),
    spec("sinter", -2, READ, ALL_KEYS),
    spec("sunion", -2, READ, ALL_KEYS),
    spec("sdiff", -2, READ, ALL_KEYS),
    spec("sinterstore", -3, WRITE_GROW, ALL_KEYS),
    spec("sunionstore", -3, WRITE_GROW, ALL_KEYS),
    spec("sdiffstore", -3, WRITE_GROW, ALL_KEYS),
    spec("sintercard", -3, &["readonly", "movablekeys"], NO_KEYS),
    spec("sscan", -3, READ, ONE_KEY),
    // Transactions (server.rs `Transaction`): flags as Redis 7.0.
    spec(
        "multi",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        NO_KEYS,
    ),
    spec("exec", 1, &["noscript", "loading", "stale", "skip_slowlog"], NO_KEYS),
    spec(
        "discard",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        NO_KEYS,
    ),
    spec(
        "watch",
        -2,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        ALL_KEYS,
    ),
    spec(
        "unwatch",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        NO_KEYS,
    ),
    // Scripts (server/scripting.rs): arity and flags as Redis 7.0; the keys are `numkeys` after
    // the script (`movablekeys`, found by parsing, as `COMMAND GETKEYS` shows).
    spec("eval", -3, SCRIPTING, NO_KEYS),
    spec("evalsha", -3, SCRIPTING, NO_KEYS),
    spec("eval_ro", -3, SCRIPTING_RO, NO_KEYS),
    spec("evalsha_ro", -3, SCRIPTING_RO, NO_KEYS),
    spec("script", -2, &[], NO_KEYS),
    // Sorted sets and HyperLogLog (resp/cmd_zset.rs); arity, flags and keys as Redis 7.0.
    spec("zadd", -4, WRITE_GROW_FAST, ONE_KEY),
    spec("zincrby", 4, WRITE_GROW_FAST, ONE_KEY),
    spec("zrem", -3, WRITE_FAST, ONE_KEY),
    spec("zcard", 2, READ_FAST, ONE_KEY),
    spec("zscore", 3, READ_FAST, ONE_KEY),
    spec("zmscore", -3, READ_FAST, ONE_KEY),
    // Redis 7.2's arity (7.0's is 3): Concord reports 7.2.0 and takes `WITHSCORE`.
    spec("zrank", -3, READ_FAST, ONE_KEY),
    spec("zrevrank", -3, READ_FAST, ONE_KEY),
    spec("zcount", 4, READ_FAST, ONE_KEY),
    spec("zlexcount", 4, READ_FAST, ONE_KEY),
    spec("zrange", -4, READ, ONE_KEY),
    spec("zrangestore", -5, WRITE_GROW, (1, 2, 1)),
    spec("zrangebyscore", -4, READ, ONE_KEY),
    spec("zrevrangebyscore", -4, READ, ONE_KEY),
    spec("zrangebylex", -4, READ, ONE_KEY),
    spec("zrevrangebylex", -4, READ, ONE_KEY),
    spec("zrevrange", -4, READ, ONE_KEY),
    spec("zpopmin", -2, WRITE_FAST, ONE_KEY),
    spec("zpopmax", -2, WRITE_FAST, ONE_KEY),
    spec("zmpop", -4, &["write", "movablekeys"], NO_KEYS),
    spec("bzpopmin", -3, &["write", "noscript", "fast", "blocking"], (1, -2, 1)),
    spec("bzpopmax", -3, &["write", "noscript", "fast", "blocking"], (1, -2, 1)),
    spec("bzmpop", -5, &["write", "blocking", "movablekeys"], NO_KEYS),
    spec("zremrangebyscore", 4, WRITE, ONE_KEY),
    spec("zremrangebyrank", 4, WRITE, ONE_KEY),
    spec("zremrangebylex", 4, WRITE, ONE_KEY),
    spec("zunion", -3, &["readonly", "movablekeys"], NO_KEYS),
    spec("zinter", -3, &["readonly", "movablekeys"], NO_KEYS),
    spec("zdiff", -3, &["readonly", "movablekeys"], NO_KEYS),
    spec("zunionstore", -4, &["write", "denyoom", "movablekeys"], ONE_KEY),
    spec("zinterstore", -4, &["write", "denyoom", "movablekeys"], ONE_KEY),
    spec("zdiffstore", -4, &["write", "denyoom", "movablekeys"], ONE_KEY),
    spec("zintercard", -3, &["readonly", "movablekeys"], NO_KEYS),
    spec("zrandmember", -2, READ, ONE_KEY),
    spec("zscan", -3, READ, ONE_KEY),
    spec("pfadd", -2, WRITE_GROW_FAST, ONE_KEY),
    spec("pfcount", -2, &["readonly", "may_replicate"], ALL_KEYS),
    spec("pfmerge", -2, WRITE_GROW, ALL_KEYS),
    spec("geoadd", -5, WRITE_GROW, ONE_KEY),
    spec("geopos", -2, READ, ONE_KEY),
    spec("geodist", -4, READ, ONE_KEY),
    spec("geohash", -2, READ, ONE_KEY),
    spec("geosearch", -7, READ, ONE_KEY),
    spec("geosearchstore", -8, WRITE_GROW, (1, 2, 1)),
    spec("georadius", -6, &["write", "denyoom", "movablekeys"], ONE_KEY),
    spec("georadius_ro", -6, READ, ONE_KEY),
    spec("georadiusbymember", -5, &["write", "denyoom", "movablekeys"], ONE_KEY),
    spec("georadiusbymember_ro", -5, READ, ONE_KEY),
    // Lists (resp/cmd_list.rs); arity, flags and key positions as Redis 7.0.
    spec("lpush", -3, WRITE_GROW_FAST, ONE_KEY),
    spec("rpush", -3, WRITE_GROW_FAST, ONE_KEY),
    spec("lpushx", -3, WRITE_GROW_FAST, ONE_KEY),
    spec("rpushx", -3, WRITE_GROW_FAST, ONE_KEY),
    spec("lpop", -2, WRITE_FAST, ONE_KEY),
    spec("rpop", -2, WRITE_FAST, ONE_KEY),
    spec("lrange", 4, READ, ONE_KEY),
    spec("llen", 2, READ_FAST, ONE_KEY),
    spec("lindex", 3, READ, ONE_KEY),
    spec("lset", 4, WRITE_GROW, ONE_KEY),
    spec("lrem", 4, WRITE, ONE_KEY),
    spec("ltrim", 4, WRITE, ONE_KEY),
    spec("linsert", 5, WRITE_GROW, ONE_KEY),
    spec("lpos", -3, READ, ONE_KEY),
    spec("lmove", 5, WRITE_GROW, (1, 2, 1)),
    spec("rpoplpush", 3, WRITE_GROW, (1, 2, 1)),
    spec("lmpop", -4, &["write", "movablekeys"], NO_KEYS),
    spec("blpop", -3, &["write", "noscript", "blocking"], (1, -2, 1)),
    spec("brpop", -3, &["write", "noscript", "blocking"], (1, -2, 1)),
    spec("blmove", 6, &["write", "denyoom", "noscript", "blocking"], (1, 2, 1)),
    spec(
        "brpoplpush",
        4,
        &["write", "denyoom", "noscript", "blocking"],
        (1, 2, 1),
    ),
    spec("blmpop", -5, &["write", "blocking", "movablekeys"], NO_KEYS),
    spec("sort", -2, &["write", "denyoom", "movablekeys"], ONE_KEY),
    spec("sort_ro", -2, &["readonly", "movablekeys"], ONE_KEY),
    // Pub/sub (resp/cmd_pubsub.rs); arity and flags as Redis 7.0 (COMMAND INFO shows no `sentinel`).
    spec("subscribe", -2, PUBSUB_SUBSCRIBE, NO_KEYS),
    spec("unsubscribe", -1, PUBSUB_SUBSCRIBE, NO_KEYS),
    spec("psubscribe", -2, PUBSUB_SUBSCRIBE, NO_KEYS),
    spec("punsubscribe", -1, PUBSUB_SUBSCRIBE, NO_KEYS),
    spec("publish", 3, PUBSUB_PUBLISH, NO_KEYS),
    spec("pubsub", -2, &[], NO_KEYS),
    // Shard channels: Redis 7.0 reports the channel as a key position (`not_key` key specs).
    spec("ssubscribe", -2, PUBSUB_SUBSCRIBE, ALL_KEYS),
    spec("sunsubscribe", -1, PUBSUB_SUBSCRIBE, ALL_KEYS),
    spec("spublish", 3, PUBSUB_PUBLISH, ONE_KEY),
];

const PUBSUB_SUBSCRIBE: &[&str] = &["pubsub", "noscript", "loading", "stale"];
const PUBSUB_PUBLISH: &[&str] = &["pubsub", "loading", "stale", "fast", "may_replicate"];

const COMMAND_NAMES: [&str; TABLE.len()] = {
    let mut names = [""; TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        names[i] = TABLE[i].name;
        i += 1;
    }
    names
};

/// Every supported command, lower case as `COMMAND` reports them.
pub const COMMANDS: &[&str] = &COMMAND_NAMES;

/// Whether a request is a blocking command (its spec has the `blocking` flag): it may wait long
/// before it answers.
pub fn is_blocking(args: &[Bytes]) -> bool {
    args.first()
        .and_then(|n| lookup(n))
        .is_some_and(|s| s.flags.contains(&"blocking"))
}

/// Whether a command may not run inside a script (its spec has the `noscript` flag, as Redis):
/// transactions, blocking pops, scripts themselves, connection and server administration.
pub fn is_noscript(name: &[u8]) -> bool {
    lookup(name).is_some_and(|s| s.flags.contains(&"noscript"))
}

fn lookup(name: &[u8]) -> Option<&'static Spec> {
    TABLE.iter().find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
}

type Result<T> = std::result::Result<T, CommandParseError>;

pub(super) fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

pub(super) fn integer(arg: &[u8]) -> Result<i64> {
    parse_i64_strict(arg).ok_or(CommandError::NotInteger.into())
}

pub(super) fn other(message: impl Into<String>) -> CommandParseError {
    CommandError::Other(message.into()).into()
}

pub(super) fn syntax() -> CommandParseError {
    CommandError::Syntax.into()
}

/// Text as C's `%.*s` prints it: stops at a NUL, at most `max` bytes.
fn c_text(arg: &[u8], max: usize) -> &[u8] {
    let arg = &arg[..arg.iter().position(|&b| b == 0).unwrap_or(arg.len())];
    &arg[..arg.len().min(max)]
}

fn unknown_command(args: &[Bytes]) -> CommandParseError {
    let name = args.first().map(|a| c_text(a, 128)).unwrap_or_default();
    // Redis: append `'arg' ` while the list is shorter than 128 bytes, each cut to what is left.
    let mut list = Vec::new();
    for arg in args.iter().skip(1) {
        if list.len() >= 128 {
            break;
        }
        let room = 128 - list.len();
        list.push(b'\'');
        list.extend_from_slice(c_text(arg, room));
        list.extend_from_slice(b"' ");
    }
    CommandParseError::UnknownCommand {
        name: String::from_utf8_lossy(name).into_owned(),
        args: String::from_utf8_lossy(&list).into_owned(),
    }
}

fn unknown_subcommand(command: &str, sub: &[u8]) -> CommandParseError {
    CommandParseError::UnknownSubcommand {
        command: command.to_ascii_uppercase(),
        subcommand: String::from_utf8_lossy(c_text(sub, 128)).into_owned(),
    }
}

pub(super) fn check_arity(name: &'static str, arity: i32, argc: usize) -> Result<()> {
    let needed = arity.unsigned_abs() as usize;
    let ok = if arity >= 0 { argc == needed } else { argc >= needed };
    if ok {
        Ok(())
    } else {
        Err(CommandParseError::WrongArity(name))
    }
}

fn pairs(args: &[Bytes]) -> Vec<(Bytes, Bytes)> {
    args.chunks_exact(2).map(|p| (p[0].clone(), p[1].clone())).collect()
}

fn engine(request: Request) -> Result<Parsed> {
    Ok(Parsed::Engine(request, ReplyShape::AsIs))
}

fn node(command: NodeCommand) -> Result<Parsed> {
    Ok(Parsed::Node(command))
}

/// Parse a request's arguments (`args[0]` is the command name, any case). An empty `args` (which
/// [`super::frame::parse_request`] yields for blank input) should be skipped by the caller; here it
/// is an unknown command `''`.
pub fn parse_command(args: &[Bytes]) -> Result<Parsed> {
    let Some(name) = args.first() else {
        return Err(unknown_command(args));
    };
    let spec = lookup(name).ok_or_else(|| unknown_command(args))?;
    check_arity(spec.name, spec.arity, args.len())?;
    let a = args;
    match spec.name {
        "ping" => {
            if a.len() > 2 {
                return Err(CommandParseError::WrongArity("ping"));
            }
            node(NodeCommand::Ping(a.get(1).cloned()))
        }
        "echo" => node(NodeCommand::Echo(a[1].clone())),
        "hello" => parse_hello(a),
        "auth" => match a.len() {
            2 => node(NodeCommand::Auth(Credentials {
                username: None,
                password: a[1].clone(),
            })),
            3 => node(NodeCommand::Auth(Credentials {
                username: Some(a[1].clone()),
                password: a[2].clone(),
            })),
            _ => Err(syntax()),
        },
        "select" => {
            let index = integer(&a[1])?;
            if i32::try_from(index).is_err() {
                return Err(CommandError::NotInteger.into());
            }
            if index != 0 {
                return Err(other("DB index is out of range"));
            }
            node(NodeCommand::Select)
        }
        "quit" => node(NodeCommand::Quit),
        "multi" => node(NodeCommand::Multi),
        "exec" => node(NodeCommand::Exec),
        "discard" => node(NodeCommand::Discard),
        "watch" => node(NodeCommand::Watch(a[1..].to_vec())),
        "unwatch" => node(NodeCommand::Unwatch),
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" => parse_eval(spec.name, a),
        "script" => parse_script(a),
        "command" => parse_command_command(a),
        "info" => node(NodeCommand::Info(
            a[1..]
                .iter()
                .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
                .collect(),
        )),
        "client" => parse_client(a),
        "config" => parse_config(a),
        "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "publish" | "pubsub" | "ssubscribe"
        | "sunsubscribe" | "spublish" => super::cmd_pubsub::parse(spec.name, a),
        "memory" => super::cmd_server::parse_memory(a),
        "latency" => super::cmd_server::parse_latency(a),
        "slowlog" => super::cmd_server::parse_slowlog(a),
        "time" | "lastsave" | "save" | "bgsave" | "reset" | "role" | "lolwut" => {
            super::cmd_server::parse_plain(spec.name, a)
        }
        "wait" => {
            let regions = integer(&a[1])?;
            let timeout_ms =
                parse_i64_strict(&a[2]).ok_or_else(|| other("timeout is not an integer or out of range"))?;
            let timeout_ms = u64::try_from(timeout_ms).map_err(|_| other("timeout is negative"))?;
            node(NodeCommand::Wait {
                regions: u64::try_from(regions).unwrap_or(0),
                timeout_ms,
            })
        }
        "dbsize" => engine(Request::DbSize),
        "type" => engine(Request::Type(a[1].clone())),
        "exists" => engine(Request::Exists(a[1..].to_vec())),
        "del" | "unlink" => engine(Request::Del(a[1..].to_vec())),
        "keys" => engine(Request::Keys(a[1].clone())),
        "scan" => parse_scan(a),
        "flushdb" | "flushall" => match a {
            [_] => engine(Request::FlushAll),
            [_, mode] if is(mode, "sync") || is(mode, "async") => engine(Request::FlushAll),
            _ => Err(syntax()),
        },
        "expire" | "pexpire" => parse_expire(a, spec.name == "expire"),
        "ttl" => engine(Request::Ttl {
            key: a[1].clone(),
            millis: false,
        }),
        "pttl" => engine(Request::Ttl {
            key: a[1].clone(),
            millis: true,
        }),
        "persist" => engine(Request::Persist(a[1].clone())),
        "get" => engine(Request::Get(a[1].clone())),
        "set" => parse_set(a),
        "setnx" => Ok(Parsed::Engine(
            Request::Set {
                key: a[1].clone(),
                value: a[2].clone(),
                condition: SetCondition::IfAbsent,
                expiry: SetExpiry::Clear,
                get: false,
            },
            ReplyShape::SetNxInteger,
        )),
        "setex" | "psetex" => {
            let unit = if spec.name == "setex" {
                ExpireUnit::Seconds
            } else {
                ExpireUnit::Millis
            };
            let command = if spec.name == "setex" { "setex" } else { "psetex" };
            let expiry = set_expiry(unit, &a[2], command)?;
            engine(Request::Set {
                key: a[1].clone(),
                value: a[3].clone(),
                condition: SetCondition::Always,
                expiry,
                get: false,
            })
        }
        "mget" => engine(Request::MGet(a[1..].to_vec())),
        "mset" => {
            // The name plus whole pairs is an odd count.
            if a.len() % 2 != 1 {
                return Err(CommandParseError::WrongArity("mset"));
            }
            engine(Request::MSet(pairs(&a[1..])))
        }
        "getset" => engine(Request::Set {
            key: a[1].clone(),
            value: a[2].clone(),
            condition: SetCondition::Always,
            expiry: SetExpiry::Clear,
            get: true,
        }),
        "getdel" => engine(Request::GetDel(a[1].clone())),
        "strlen" => engine(Request::StrLen(a[1].clone())),
        "append" => engine(Request::Append {
            key: a[1].clone(),
            value: a[2].clone(),
        }),
        "incr" => engine(Request::IncrBy {
            key: a[1].clone(),
            by: 1,
        }),
        "decr" => engine(Request::IncrBy {
            key: a[1].clone(),
            by: -1,
        }),
        "incrby" => engine(Request::IncrBy {
            key: a[1].clone(),
            by: integer(&a[2])?,
        }),
        "decrby" => {
            let by = integer(&a[2])?
                .checked_neg()
                .ok_or_else(|| other("decrement would overflow"))?;
            engine(Request::IncrBy { key: a[1].clone(), by })
        }
        "hset" | "hmset" => {
            if a.len() % 2 == 1 {
                return Err(CommandParseError::WrongArity(spec.name));
            }
            let request = Request::HSet {
                key: a[1].clone(),
                pairs: pairs(&a[2..]),
            };
            let shape = if spec.name == "hmset" {
                ReplyShape::Ok
            } else {
                ReplyShape::AsIs
            };
            Ok(Parsed::Engine(request, shape))
        }
        "hsetnx" => engine(Request::HSetNx {
            key: a[1].clone(),
            field: a[2].clone(),
            value: a[3].clone(),
        }),
        "hget" => engine(Request::HGet {
            key: a[1].clone(),
            field: a[2].clone(),
        }),
        "hmget" => engine(Request::HMGet {
            key: a[1].clone(),
            fields: a[2..].to_vec(),
        }),
        "hdel" => engine(Request::HDel {
            key: a[1].clone(),
            fields: a[2..].to_vec(),
        }),
        "hgetall" => engine(Request::HGetAll(a[1].clone())),
        "hexists" => engine(Request::HExists {
            key: a[1].clone(),
            field: a[2].clone(),
        }),
        "hlen" => engine(Request::HLen(a[1].clone())),
        "hkeys" => engine(Request::HKeys(a[1].clone())),
        "hvals" => engine(Request::HVals(a[1].clone())),
        "hincrby" => engine(Request::HIncrBy {
            key: a[1].clone(),
            field: a[2].clone(),
            by: integer(&a[3])?,
        }),
        "sadd" => engine(Request::SAdd {
            key: a[1].clone(),
            members: a[2..].to_vec(),
        }),
        "srem" => engine(Request::SRem {
            key: a[1].clone(),
            members: a[2..].to_vec(),
        }),
        "smembers" => engine(Request::SMembers(a[1].clone())),
        "sismember" => engine(Request::SIsMember {
            key: a[1].clone(),
            member: a[2].clone(),
        }),
        "smismember" => engine(Request::SMIsMember {
            key: a[1].clone(),
            members: a[2..].to_vec(),
        }),
        "scard" => engine(Request::SCard(a[1].clone())),
        "concord.siblings" => engine(Request::Siblings(a[1].clone())),
        "concord.resolve" => {
            let context = parse_context_token(&a[2]).map_err(|e| CommandError::BadContext(e.to_string()))?;
            engine(Request::Resolve {
                key: a[1].clone(),
                context,
                value: a[3].clone(),
            })
        }
        "concord.conflicts" => {
            let count = match a {
                [_] => None,
                [_, count] => {
                    let count = integer(count)?;
                    Some(usize::try_from(count).map_err(|_| other("value is out of range, must be positive"))?)
                }
                _ => return Err(CommandParseError::WrongArity("concord.conflicts")),
            };
            node(NodeCommand::Conflicts { count })
        }
        "concord.status" => node(NodeCommand::Status),
        name if super::cmd_data::NAMES.contains(&name) => super::cmd_data::parse(name, a),
        name if super::cmd_zset::NAMES.contains(&name) => super::cmd_zset::parse(name, a),
        name if super::cmd_list::NAMES.contains(&name) => super::cmd_list::parse(name, a),
        // Every table entry has an arm above; the test `every_table_entry_parses` keeps it so.
        _ => Err(unknown_command(args)),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ExpireUnit {
    Seconds,
    Millis,
    UnixSeconds,
    UnixMillis,
}

fn expire_unit(opt: &[u8]) -> Option<ExpireUnit> {
    [
        ("ex", ExpireUnit::Seconds),
        ("px", ExpireUnit::Millis),
        ("exat", ExpireUnit::UnixSeconds),
        ("pxat", ExpireUnit::UnixMillis),
    ]
    .into_iter()
    .find(|(word, _)| is(opt, word))
    .map(|(_, unit)| unit)
}

/// Redis's `getExpireMillisecondsOrReply`: an integer, > 0, and in range once made milliseconds.
fn set_expiry(unit: ExpireUnit, arg: &[u8], command: &'static str) -> Result<SetExpiry> {
    let value = integer(arg)?;
    let invalid = || CommandParseError::from(CommandError::InvalidExpire(command));
    if value <= 0 {
        return Err(invalid());
    }
    let ms = match unit {
        ExpireUnit::Seconds | ExpireUnit::UnixSeconds => value.checked_mul(1000).ok_or_else(invalid)?,
        ExpireUnit::Millis | ExpireUnit::UnixMillis => value,
    };
    let ms = ms as u64; // > 0 checked above
    Ok(match unit {
        ExpireUnit::Seconds | ExpireUnit::Millis => SetExpiry::InMs(ms),
        ExpireUnit::UnixSeconds | ExpireUnit::UnixMillis => SetExpiry::AtMs(ms),
    })
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`, options in any order. As in
/// Redis, an option may repeat (the last expiry wins) but not contradict another, and every option
/// is checked before the expiry's value is.
fn parse_set(a: &[Bytes]) -> Result<Parsed> {
    let (mut if_absent, mut if_present, mut get, mut keep_ttl) = (false, false, false, false);
    let mut expire: Option<(ExpireUnit, &Bytes)> = None;
    let mut j = 3;
    while j < a.len() {
        let opt = &a[j];
        let next = a.get(j + 1);
        if is(opt, "nx") && !if_present {
            if_absent = true;
        } else if is(opt, "xx") && !if_absent {
            if_present = true;
        } else if is(opt, "get") {
            get = true;
        } else if is(opt, "keepttl") && expire.is_none() {
            keep_ttl = true;
        } else {
            let unit = expire_unit(opt).ok_or_else(syntax)?;
            let compatible = !keep_ttl && !matches!(expire, Some((u, _)) if u != unit);
            match next {
                Some(value) if compatible => {
                    expire = Some((unit, value));
                    j += 1;
                }
                _ => return Err(syntax()),
            }
        }
        j += 1;
    }
    let expiry = match expire {
        Some((unit, value)) => set_expiry(unit, value, "set")?,
        None if keep_ttl => SetExpiry::Keep,
        None => SetExpiry::Clear,
    };
    let condition = if if_absent {
        SetCondition::IfAbsent
    } else if if_present {
        SetCondition::IfPresent
    } else {
        SetCondition::Always
    };
    engine(Request::Set {
        key: a[1].clone(),
        value: a[2].clone(),
        condition,
        expiry,
        get,
    })
}

/// `EXPIRE key seconds [NX|XX|GT|LT]` / `PEXPIRE key ms […]`. Options are checked before the
/// time, as in Redis; with one, the request is a conditional [`Request::ExpireWhen`].
fn parse_expire(a: &[Bytes], seconds: bool) -> Result<Parsed> {
    let condition = super::cmd_data::expire_condition(&a[3..])?;
    let command = if seconds { "expire" } else { "pexpire" };
    let value = integer(&a[2])?;
    let in_ms = if seconds {
        value.checked_mul(1000).ok_or(CommandError::InvalidExpire(command))?
    } else {
        value
    };
    if condition != concord_core::ExpireCondition::Always {
        return engine(Request::ExpireWhen {
            key: a[1].clone(),
            deadline: concord_core::Deadline::InMs(in_ms),
            condition,
        });
    }
    engine(Request::Expire {
        key: a[1].clone(),
        in_ms,
    })
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.
fn parse_scan(a: &[Bytes]) -> Result<Parsed> {
    let cursor = parse_cursor(&a[1]).ok_or_else(|| other("invalid cursor"))?;
    let (mut pattern, mut count, mut kind) = (None, 10usize, None);
    let mut i = 2;
    while i < a.len() {
        let Some(value) = a.get(i + 1) else {
            return Err(syntax());
        };
        if is(&a[i], "count") {
            let n = integer(value)?;
            if n < 1 {
                return Err(syntax());
            }
            count = usize::try_from(n).unwrap_or(usize::MAX);
        } else if is(&a[i], "match") {
            // `*` matches everything; Redis skips the matching for it, and so do we.
            pattern = if value.as_ref() == b"*" {
                None
            } else {
                Some(value.clone())
            };
        } else if is(&a[i], "type") {
            kind = Some(value.clone());
        } else {
            return Err(syntax());
        }
        i += 2;
    }
    engine(Request::Scan {
        cursor,
        pattern,
        count,
        kind,
    })
}

/// Redis's `string2ull`: a non-negative `string2ll`, or plain digits up to `u64::MAX`.
fn parse_cursor(arg: &[u8]) -> Option<u64> {
    if let Some(n) = parse_i64_strict(arg) {
        return u64::try_from(n).ok();
    }
    if arg.is_empty() || !arg.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// Redis's `validateClientName`/`validateClientAttr`: printable ASCII, no spaces.
fn valid_client_text(text: &[u8]) -> bool {
    text.iter().all(|b| (b'!'..=b'~').contains(b))
}

fn parse_hello(a: &[Bytes]) -> Result<Parsed> {
    let mut protocol = None;
    let mut next = 1;
    if let Some(version) = a.get(1) {
        let version =
            parse_i64_strict(version).ok_or_else(|| other("Protocol version is not an integer or out of range"))?;
        if !(2..=3).contains(&version) {
            return Err(CommandParseError::NoProto);
        }
        protocol = Some(version as u8);
        next = 2;
    }
    let (mut auth, mut client_name) = (None, None);
    while next < a.len() {
        let opt = &a[next];
        let more = a.len() - 1 - next;
        if is(opt, "auth") && more >= 2 {
            auth = Some(Credentials {
                username: Some(a[next + 1].clone()),
                password: a[next + 2].clone(),
            });
            next += 3;
        } else if is(opt, "setname") && more >= 1 {
            let name = &a[next + 1];
            if !valid_client_text(name) {
                return Err(other(
                    "Client names cannot contain spaces, newlines or special characters.",
                ));
            }
            client_name = Some(name.clone());
            next += 2;
        } else {
            let opt = String::from_utf8_lossy(c_text(opt, usize::MAX)).into_owned();
            return Err(other(format!("Syntax error in HELLO option '{opt}'")));
        }
    }
    node(NodeCommand::Hello {
        protocol,
        auth,
        client_name,
    })
}

/// `EVAL script numkeys [key ...] [arg ...]` and its `SHA`/`_RO` forms; errors as Redis 7.0.
fn parse_eval(name: &str, a: &[Bytes]) -> Result<Parsed> {
    let numkeys = integer(&a[2])?;
    if numkeys < 0 {
        return Err(other("Number of keys can't be negative"));
    }
    let rest = &a[3..];
    let numkeys = usize::try_from(numkeys).unwrap_or(usize::MAX);
    if numkeys > rest.len() {
        return Err(other("Number of keys can't be greater than number of args"));
    }
    let script = if name.starts_with("evalsha") {
        ScriptSource::Sha(a[1].clone())
    } else {
        ScriptSource::Source(a[1].clone())
    };
    node(NodeCommand::Eval(Eval {
        script,
        keys: rest[..numkeys].to_vec(),
        args: rest[numkeys..].to_vec(),
        read_only: name.ends_with("_ro"),
    }))
}

fn parse_script(a: &[Bytes]) -> Result<Parsed> {
    let sub = &a[1];
    let command = if is(sub, "load") {
        check_arity("script|load", 3, a.len())?;
        ScriptCommand::Load(a[2].clone())
    } else if is(sub, "exists") {
        check_arity("script|exists", -3, a.len())?;
        ScriptCommand::Exists(a[2..].to_vec())
    } else if is(sub, "flush") {
        check_arity("script|flush", -2, a.len())?;
        match &a[2..] {
            [] => {}
            [mode] if is(mode, "async") || is(mode, "sync") => {}
            _ => return Err(other("SCRIPT FLUSH only support SYNC|ASYNC option")),
        }
        ScriptCommand::Flush
    } else if is(sub, "kill") {
        check_arity("script|kill", 2, a.len())?;
        ScriptCommand::Kill
    } else if is(sub, "help") {
        check_arity("script|help", 2, a.len())?;
        ScriptCommand::Help
    } else {
        return Err(unknown_subcommand("script", sub));
    };
    node(NodeCommand::Script(command))
}

fn parse_command_command(a: &[Bytes]) -> Result<Parsed> {
    let Some(sub) = a.get(1) else {
        return node(NodeCommand::Command(CommandQuery::All));
    };
    let query = if is(sub, "count") {
        check_arity("command|count", 2, a.len())?;
        CommandQuery::Count
    } else if is(sub, "docs") {
        CommandQuery::Docs(a[2..].to_vec())
    } else if is(sub, "info") {
        CommandQuery::Info(a[2..].to_vec())
    } else if is(sub, "getkeys") {
        check_arity("command|getkeys", -3, a.len())?;
        CommandQuery::GetKeys(command_keys(&a[2..])?)
    } else if is(sub, "list") {
        match &a[2..] {
            [] => CommandQuery::List(None),
            [filter, by, pattern] if is(filter, "filterby") && is(by, "pattern") => {
                CommandQuery::List(Some(pattern.clone()))
            }
            _ => return Err(syntax()),
        }
    } else {
        return Err(unknown_subcommand("command", sub));
    };
    node(NodeCommand::Command(query))
}

fn parse_client(a: &[Bytes]) -> Result<Parsed> {
    let sub = &a[1];
    if is(sub, "setname") {
        check_arity("client|setname", 3, a.len())?;
        if !valid_client_text(&a[2]) {
            return Err(other(
                "Client names cannot contain spaces, newlines or special characters.",
            ));
        }
        node(NodeCommand::ClientSetName(a[2].clone()))
    } else if is(sub, "getname") {
        check_arity("client|getname", 2, a.len())?;
        node(NodeCommand::ClientGetName)
    } else if is(sub, "id") {
        check_arity("client|id", 2, a.len())?;
        node(NodeCommand::ClientId)
    } else if is(sub, "setinfo") {
        check_arity("client|setinfo", 4, a.len())?;
        let attr = &a[2];
        let attribute = if is(attr, "lib-name") {
            ClientAttribute::LibName
        } else if is(attr, "lib-ver") {
            ClientAttribute::LibVersion
        } else {
            let attr = String::from_utf8_lossy(c_text(attr, usize::MAX)).into_owned();
            return Err(other(format!("Unrecognized option '{attr}'")));
        };
        if !valid_client_text(&a[3]) {
            let attr = String::from_utf8_lossy(c_text(attr, usize::MAX)).into_owned();
            return Err(other(format!(
                "{attr} cannot contain spaces, newlines or special characters."
            )));
        }
        node(NodeCommand::ClientSetInfo {
            attribute,
            value: a[3].clone(),
        })
    } else {
        super::cmd_server::parse_client(a)
    }
}

fn parse_config(a: &[Bytes]) -> Result<Parsed> {
    if is(&a[1], "get") {
        check_arity("config|get", -3, a.len())?;
        node(NodeCommand::ConfigGet(a[2..].to_vec()))
    } else {
        super::cmd_server::parse_config(a)
    }
}

/// `CONFIG GET pattern...`: `{parameter: value}` for every parameter of `values` (the node's
/// current values of [`super::cmd_server::CONFIG_PARAMS`]) matching a pattern (glob,
/// case-insensitive), each once; a map on RESP3, flat pairs on RESP2, empty if none match.
pub fn config_get_reply(patterns: &[Bytes], values: &[(&str, String)]) -> Reply {
    let mut found: Vec<(Reply, Reply)> = Vec::new();
    for (name, value) in values {
        if patterns
            .iter()
            .any(|p| glob_match(&p.to_ascii_lowercase(), name.as_bytes()))
        {
            found.push((Reply::bulk(name.to_string()), Reply::bulk(value.clone())));
        }
    }
    Reply::Map(found)
}

fn command_info(spec: &Spec) -> Reply {
    Reply::Array(vec![
        Reply::bulk(spec.name),
        Reply::Int(i64::from(spec.arity)),
        Reply::Set(spec.flags.iter().map(|f| Reply::Status((*f).to_owned())).collect()),
        Reply::Int(spec.first_key),
        Reply::Int(spec.last_key),
        Reply::Int(spec.step),
        Reply::Set(vec![]),   // ACL categories
        Reply::Set(vec![]),   // tips
        Reply::Array(vec![]), // key specifications
        Reply::Array(vec![]), // subcommands
    ])
}

/// `COMMAND GETKEYS`: the command is parsed as it would be run, so the keys are exactly the ones
/// its request touches (movable-key commands such as `SINTERCARD` included). Errors as Redis.
fn command_keys(args: &[Bytes]) -> Result<Vec<Bytes>> {
    let spec = lookup(&args[0]).ok_or_else(|| other("Invalid command specified"))?;
    if check_arity(spec.name, spec.arity, args.len()).is_err() {
        return Err(other("Invalid number of arguments specified for command"));
    }
    match parse_command(args)? {
        Parsed::Engine(req, _) | Parsed::Blocking(Blocking { request: req, .. }) => match req.keys() {
            Some(keys) if !keys.is_empty() => Ok(keys.into_iter().cloned().collect()),
            _ => Err(other("The command has no key arguments")),
        },
        // A script's keys may be none (Redis's `no_mandatory_keys`): an empty list, no error.
        Parsed::Node(NodeCommand::Eval(eval)) => Ok(eval.keys),
        Parsed::Node(_) => Err(other("The command has no key arguments")),
    }
}

/// The reply to a `COMMAND` query, in Redis 7's shapes (`COMMAND DOCS` is an empty map).
pub fn command_reply(query: &CommandQuery) -> Reply {
    match query {
        CommandQuery::All => Reply::Array(TABLE.iter().map(command_info).collect()),
        CommandQuery::Info(names) if names.is_empty() => Reply::Array(TABLE.iter().map(command_info).collect()),
        CommandQuery::Count => Reply::Int(COMMANDS.len() as i64),
        CommandQuery::Docs(_) => Reply::Map(vec![]),
        CommandQuery::Info(names) => Reply::Array(
            names
                .iter()
                .map(|n| lookup(n).map_or(Reply::Nil, command_info))
                .collect(),
        ),
        CommandQuery::GetKeys(keys) => Reply::Array(keys.iter().cloned().map(Reply::Bulk).collect()),
        CommandQuery::List(pattern) => Reply::Array(
            COMMANDS
                .iter()
                .filter(|name| match pattern {
                    Some(p) => glob_match(&p.to_ascii_lowercase(), name.as_bytes()),
                    None => true,
                })
                .map(|name| Reply::bulk(*name))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_core::codec::context_token;
    use concord_core::VersionVector;

    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ').map(|s| Bytes::copy_from_slice(s.as_bytes())).collect()
    }

    fn parse(line: &str) -> Result<Parsed> {
        parse_command(&args(line))
    }

    fn request(line: &str) -> Request {
        match parse(line) {
            Ok(Parsed::Engine(r, ReplyShape::AsIs)) => r,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn node_command(line: &str) -> NodeCommand {
        match parse(line) {
            Ok(Parsed::Node(n)) => n,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn err(line: &str) -> String {
        match parse(line) {
            Err(e) => e.to_string(),
            Ok(p) => panic!("{line}: expected an error, got {p:?}"),
        }
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn set(key: &str, value: &str, condition: SetCondition, expiry: SetExpiry, get: bool) -> Request {
        Request::Set {
            key: b(key),
            value: b(value),
            condition,
            expiry,
            get,
        }
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(request("GeT k"), Request::Get(b("k")));
        assert_eq!(request("concord.SIBLINGS k"), Request::Siblings(b("k")));
    }

    #[test]
    fn unknown_command_error_is_redis_format() {
        assert_eq!(
            err("foo a b"),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
        );
        assert_eq!(err("foo"), "ERR unknown command 'foo', with args beginning with: ");
        let long = format!("foo {} x", "a".repeat(200));
        let expected = format!(
            "ERR unknown command 'foo', with args beginning with: '{}' ",
            "a".repeat(128)
        );
        assert_eq!(err(&long), expected);
        assert_eq!(
            parse_command(&[]).unwrap_err().to_string(),
            "ERR unknown command '', with args beginning with: "
        );
    }

    #[test]
    fn arity_is_checked_like_redis() {
        assert_eq!(err("GET"), "ERR wrong number of arguments for 'get' command");
        assert_eq!(err("GET a b"), "ERR wrong number of arguments for 'get' command");
        assert_eq!(err("DEL"), "ERR wrong number of arguments for 'del' command");
        assert_eq!(err("SET k"), "ERR wrong number of arguments for 'set' command");
        assert_eq!(err("HSET h f"), "ERR wrong number of arguments for 'hset' command");
        assert_eq!(err("HSET h f v g"), "ERR wrong number of arguments for 'hset' command");
        assert_eq!(
            err("HMSET h f v g"),
            "ERR wrong number of arguments for 'hmset' command"
        );
        assert_eq!(err("MSET a 1 b"), "ERR wrong number of arguments for 'mset' command");
        assert_eq!(err("PING a b"), "ERR wrong number of arguments for 'ping' command");
        assert_eq!(err("DBSIZE x"), "ERR wrong number of arguments for 'dbsize' command");
        assert_eq!(err("CLIENT"), "ERR wrong number of arguments for 'client' command");
        assert_eq!(
            err("CLIENT SETNAME"),
            "ERR wrong number of arguments for 'client|setname' command"
        );
        assert_eq!(
            err("CONFIG GET"),
            "ERR wrong number of arguments for 'config|get' command"
        );
        assert_eq!(
            err("CONCORD.CONFLICTS 1 2"),
            "ERR wrong number of arguments for 'concord.conflicts' command"
        );
        assert_eq!(
            err("CONCORD.RESOLVE k c"),
            "ERR wrong number of arguments for 'concord.resolve' command"
        );
    }

    #[test]
    fn every_table_entry_parses() {
        // One valid call of each command: none may fall through to "unknown command".
        let examples = [
            "PING",
            "ECHO m",
            "HELLO 2",
            "AUTH pw",
            "SELECT 0",
            "QUIT",
            "COMMAND",
            "INFO",
            "CLIENT ID",
            "CONFIG GET save",
            "WAIT 1 0",
            "DBSIZE",
            "TYPE k",
            "EXISTS k",
            "DEL k",
            "UNLINK k",
            "KEYS *",
            "SCAN 0",
            "FLUSHDB",
            "FLUSHALL",
            "EXPIRE k 1",
            "PEXPIRE k 1",
            "TTL k",
            "PTTL k",
            "PERSIST k",
            "GET k",
            "SET k v",
            "SETNX k v",
            "SETEX k 1 v",
            "PSETEX k 1 v",
            "MGET k",
            "MSET k v",
            "GETSET k v",
            "GETDEL k",
            "STRLEN k",
            "APPEND k v",
            "INCR k",
            "INCRBY k 1",
            "DECR k",
            "DECRBY k 1",
            "HSET h f v",
            "HMSET h f v",
            "HSETNX h f v",
            "HGET h f",
            "HMGET h f",
            "HDEL h f",
            "HGETALL h",
            "HEXISTS h f",
            "HLEN h",
            "HKEYS h",
            "HVALS h",
            "HINCRBY h f 1",
            "SADD s m",
            "SREM s m",
            "SMEMBERS s",
            "SISMEMBER s m",
            "SMISMEMBER s m",
            "SCARD s",
            "CONCORD.SIBLINGS k",
            "CONCORD.RESOLVE k  v",
            "CONCORD.CONFLICTS",
            "CONCORD.STATUS",
            "TIME",
            "LASTSAVE",
            "SAVE",
            "BGSAVE",
            "RESET",
            "ROLE",
            "MEMORY USAGE k",
            "LATENCY LATEST",
            "SLOWLOG LEN",
            "LOLWUT",
            "GETRANGE k 0 1",
            "SUBSTR k 0 1",
            "SETRANGE k 0 v",
            "INCRBYFLOAT k 1.5",
            "GETEX k",
            "MSETNX a 1",
            "LCS a b",
            "SETBIT k 1 1",
            "GETBIT k 1",
            "BITCOUNT k",
            "BITPOS k 1",
            "BITOP AND d a",
            "BITFIELD k GET u8 0",
            "BITFIELD_RO k GET u8 0",
            "EXPIREAT k 1",
            "PEXPIREAT k 1",
            "EXPIRETIME k",
            "PEXPIRETIME k",
            "TOUCH k",
            "RANDOMKEY",
            "RENAME a b",
            "RENAMENX a b",
            "COPY a b",
            "OBJECT ENCODING k",
            "DUMP k",
            "RESTORE k 0 x",
            "HINCRBYFLOAT h f 1",
            "HSTRLEN h f",
            "HRANDFIELD h",
            "HSCAN h 0",
            "SPOP s",
            "SRANDMEMBER s",
            "SMOVE a b m",
            "SINTER a",
            "SUNION a",
            "SDIFF a",
            "SINTERSTORE d a",
            "SUNIONSTORE d a",
            "SDIFFSTORE d a",
            "SINTERCARD 1 a",
            "SSCAN s 0",
            "ZADD z 1 m",
            "ZINCRBY z 1 m",
            "ZREM z m",
            "ZCARD z",
            "ZSCORE z m",
            "ZMSCORE z m",
            "ZRANK z m",
            "ZREVRANK z m",
            "ZCOUNT z 0 1",
            "ZLEXCOUNT z - +",
            "ZRANGE z 0 -1",
            "ZRANGESTORE d z 0 -1",
            "ZRANGEBYSCORE z 0 1",
            "ZREVRANGEBYSCORE z 1 0",
            "ZRANGEBYLEX z - +",
            "ZREVRANGEBYLEX z + -",
            "ZREVRANGE z 0 -1",
            "ZPOPMIN z",
            "ZPOPMAX z",
            "ZMPOP 1 z MIN",
            "BZPOPMIN z 0",
            "BZPOPMAX z 0",
            "BZMPOP 0 1 z MIN",
            "ZREMRANGEBYSCORE z 0 1",
            "ZREMRANGEBYRANK z 0 1",
            "ZREMRANGEBYLEX z - +",
            "ZUNION 1 z",
            "ZINTER 1 z",
            "ZDIFF 1 z",
            "ZUNIONSTORE d 1 z",
            "ZINTERSTORE d 1 z",
            "ZDIFFSTORE d 1 z",
            "ZINTERCARD 1 z",
            "ZRANDMEMBER z",
            "ZSCAN z 0",
            "PFADD h a",
            "PFCOUNT h",
            "PFMERGE d h",
            "GEOADD g 1 2 m",
            "GEOPOS g m",
            "GEODIST g a b",
            "GEOHASH g m",
            "GEOSEARCH g FROMMEMBER m BYRADIUS 1 km",
            "GEOSEARCHSTORE d g FROMLONLAT 1 2 BYBOX 1 1 m",
            "GEORADIUS g 1 2 3 km",
            "GEORADIUS_RO g 1 2 3 km",
            "GEORADIUSBYMEMBER g m 3 km",
            "GEORADIUSBYMEMBER_RO g m 3 km",
            "MULTI",
            "EXEC",
            "DISCARD",
            "WATCH a b",
            "UNWATCH",
            "EVAL s 0",
            "EVALSHA s 1 k a",
            "EVAL_RO s 0",
            "EVALSHA_RO s 0",
            "SCRIPT FLUSH",
            "LPUSH l a",
            "RPUSH l a",
            "LPUSHX l a",
            "RPUSHX l a",
            "LPOP l",
            "RPOP l 2",
            "LRANGE l 0 -1",
            "LLEN l",
            "LINDEX l 0",
            "LSET l 0 a",
            "LREM l 0 a",
            "LTRIM l 0 1",
            "LINSERT l BEFORE a b",
            "LPOS l a",
            "LMOVE a b LEFT RIGHT",
            "RPOPLPUSH a b",
            "LMPOP 1 l LEFT",
            "BLPOP l 0",
            "BRPOP l 0",
            "BLMOVE a b LEFT RIGHT 0",
            "BRPOPLPUSH a b 0",
            "BLMPOP 0 1 l LEFT",
            "SORT l",
            "SORT_RO l",
            "SUBSCRIBE c",
            "UNSUBSCRIBE",
            "PSUBSCRIBE c*",
            "PUNSUBSCRIBE",
            "PUBLISH c m",
            "PUBSUB NUMPAT",
            "SSUBSCRIBE c",
            "SUNSUBSCRIBE",
            "SPUBLISH c m",
        ];
        for line in examples {
            assert!(parse(line).is_ok(), "{line}: {:?}", parse(line));
        }
        for name in COMMANDS {
            let covered = examples
                .iter()
                .any(|l| l.split(' ').next().unwrap().eq_ignore_ascii_case(name));
            assert!(covered, "no example for {name}");
        }
        assert_eq!(COMMANDS.len(), TABLE.len());
        assert_eq!(examples.len(), TABLE.len());
    }

    /// Redis 7.0.15's own command facts (redis/redis `src/commands/*.json` at that tag), one row
    /// per command: name, group, arity, flags, key specs, ACL categories.
    const REDIS_7_0: &str = include_str!("redis-7.0-commands.tsv");

    /// Redis's legacy `(first, last, step)` key range of a key-specs column: the adjacent
    /// `index` + `range` specs merged (Redis's `populateCommandLegacyRangeSpec`); `(0, 0, 0)`
    /// when none.
    fn legacy_range(specs: &str) -> (i64, i64, i64) {
        let mut out: Option<(i64, i64, i64)> = None;
        for spec in specs.split(';').filter(|s| !s.is_empty()) {
            let Some((_, search)) = spec.split_once('@') else {
                continue;
            };
            let Some((begin, find)) = search.split_once('/') else {
                continue;
            };
            let (Some(pos), Some(range)) = (begin.strip_prefix("index:"), find.strip_prefix("range:")) else {
                continue;
            };
            let r: Vec<i64> = range.split(',').map(|x| x.parse().unwrap()).collect();
            let (first, last, step, limit) = (pos.parse::<i64>().unwrap(), r[0], r[1], r[2]);
            if limit != 0 {
                continue;
            }
            let last = if last >= 0 { first + last } else { last };
            match out {
                None => out = Some((first, last, step)),
                Some((f, l, s)) if l >= 0 && first == l + 1 && step == s => out = Some((f, last, s)),
                Some(_) => break,
            }
        }
        out.unwrap_or((0, 0, 0))
    }

    /// Every command of the table that Redis 7.0 has answers `COMMAND INFO` with Redis's arity,
    /// flags and key range, and so checks arity as Redis does; the exceptions are listed, each
    /// with why.
    #[test]
    fn the_table_matches_redis_7_0() {
        // name → (arity, flags, key range) in Redis 7.0.
        type Facts = (i32, Vec<String>, (i64, i64, i64));
        let redis: std::collections::HashMap<String, Facts> = REDIS_7_0
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("name\t"))
            .filter_map(|l| {
                let c: Vec<&str> = l.split('\t').collect();
                (c.len() >= 5 && !c[0].contains(' ')).then(|| {
                    let flags = c[3]
                        .split(',')
                        .filter(|f| !f.is_empty())
                        .map(|f| f.to_ascii_lowercase())
                        .collect();
                    (
                        c[0].to_ascii_lowercase(),
                        (c[2].parse().unwrap(), flags, legacy_range(c[4])),
                    )
                })
            })
            .collect();
        assert!(redis.len() > 200, "the reference lists Redis's commands");
        let redis_movable: std::collections::HashSet<String> = REDIS_7_0
            .lines()
            .filter_map(|l| {
                let c: Vec<&str> = l.split('\t').collect();
                let specs = c.get(4)?;
                (specs.contains("keynum:") || specs.contains("keyword:") || specs.contains("unknown"))
                    .then(|| c[0].to_ascii_lowercase())
            })
            .collect();
        // Containers in Redis (their flags and keys are their subcommands'): Concord's table has
        // one row per name, with the subcommands' flags (and `OBJECT`'s key).
        let containers = ["client", "config", "object"];
        // Concord accepts Redis 7.2's `WITHSCORE`.
        let arity_exceptions = ["zrank", "zrevrank"];
        let mut mismatches = Vec::new();
        let mut compared = 0;
        for spec in TABLE {
            let Some((arity, flags, range)) = redis.get(spec.name) else {
                continue;
            };
            if containers.contains(&spec.name) {
                continue;
            }
            compared += 1;
            if spec.arity != *arity && !arity_exceptions.contains(&spec.name) {
                mismatches.push(format!("{}: arity {} (Redis {arity})", spec.name, spec.arity));
            }
            // `movablekeys` is not in Redis's JSON: its `COMMAND INFO` adds it when the key specs
            // are not one plain range (`EVAL`'s key count, `SORT`'s `STORE`, …).
            let movable = redis_movable.contains(spec.name);
            let mut ours: Vec<String> = spec.flags.iter().map(|f| f.to_string()).collect();
            let mut theirs: Vec<String> = flags.clone();
            if movable {
                theirs.push("movablekeys".into());
            }
            // Sentinel mode is not offered: its flags are not compared.
            ours.retain(|f| f != "sentinel");
            theirs.retain(|f| f != "sentinel" && f != "only_sentinel");
            ours.sort();
            theirs.sort();
            if ours != theirs {
                mismatches.push(format!("{}: flags {ours:?} (Redis {theirs:?})", spec.name));
            }
            let keys = (spec.first_key, spec.last_key, spec.step);
            if keys != *range {
                mismatches.push(format!("{}: keys {keys:?} (Redis {range:?})", spec.name));
            }
        }
        assert!(compared > 150, "only {compared} commands compared");
        assert!(
            mismatches.is_empty(),
            "{} differences:\n{}",
            mismatches.len(),
            mismatches.join("\n")
        );
    }

    /// docs/commands.md has one row per command of the table, with its arity and flags.
    #[test]
    fn docs_commands_md_lists_every_command() {
        let doc = include_str!("../../../../docs/commands.md");
        let rows: Vec<(String, i32, String)> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .map(|l| {
                let cells: Vec<&str> = l.split(" | ").collect();
                let name = cells[0].trim_end_matches('`').to_string();
                (name, cells[1].parse().expect("arity"), cells[2].to_string())
            })
            .collect();
        let documented: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        for spec in TABLE {
            let row = rows
                .iter()
                .find(|r| r.0 == spec.name)
                .unwrap_or_else(|| panic!("docs/commands.md has no row for {}", spec.name));
            assert_eq!(row.1, spec.arity, "arity of {} in docs/commands.md", spec.name);
            let flags = if spec.flags.is_empty() {
                "—".to_string()
            } else {
                spec.flags.join(" ")
            };
            assert_eq!(row.2, flags, "flags of {} in docs/commands.md", spec.name);
        }
        for name in documented {
            assert!(
                lookup(name.as_bytes()).is_some(),
                "docs/commands.md lists {name}, which is not a command"
            );
        }
        assert_eq!(rows.len(), TABLE.len(), "docs/commands.md lists a command twice");
    }

    #[test]
    fn integer_arguments_follow_string2ll() {
        assert_eq!(request("INCRBY k -5"), Request::IncrBy { key: b("k"), by: -5 });
        assert_eq!(err("INCRBY k 1.5"), "ERR value is not an integer or out of range");
        assert_eq!(err("INCRBY k 01"), "ERR value is not an integer or out of range");
        assert_eq!(
            err("INCRBY k 9223372036854775808"),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(err("HINCRBY h f x"), "ERR value is not an integer or out of range");
    }

    #[test]
    fn incr_and_decr() {
        assert_eq!(request("INCR k"), Request::IncrBy { key: b("k"), by: 1 });
        assert_eq!(request("DECR k"), Request::IncrBy { key: b("k"), by: -1 });
        assert_eq!(request("DECRBY k 7"), Request::IncrBy { key: b("k"), by: -7 });
        assert_eq!(
            request("DECRBY k -9223372036854775807"),
            Request::IncrBy {
                key: b("k"),
                by: i64::MAX
            }
        );
        assert_eq!(err("DECRBY k -9223372036854775808"), "ERR decrement would overflow");
    }

    #[test]
    fn set_options() {
        use SetCondition::*;
        assert_eq!(request("SET k v"), set("k", "v", Always, SetExpiry::Clear, false));
        assert_eq!(
            request("SET k v EX 10"),
            set("k", "v", Always, SetExpiry::InMs(10_000), false)
        );
        assert_eq!(
            request("set k v px 10 nx"),
            set("k", "v", IfAbsent, SetExpiry::InMs(10), false)
        );
        assert_eq!(
            request("SET k v XX GET KEEPTTL"),
            set("k", "v", IfPresent, SetExpiry::Keep, true)
        );
        assert_eq!(
            request("SET k v EXAT 5"),
            set("k", "v", Always, SetExpiry::AtMs(5000), false)
        );
        assert_eq!(
            request("SET k v PXAT 5"),
            set("k", "v", Always, SetExpiry::AtMs(5), false)
        );
        assert_eq!(
            request("SET k v NX NX"),
            set("k", "v", IfAbsent, SetExpiry::Clear, false)
        );
        assert_eq!(
            request("SET k v EX 1 EX 2"),
            set("k", "v", Always, SetExpiry::InMs(2000), false)
        );
        assert_eq!(
            request("SET k v NX GET"),
            set("k", "v", IfAbsent, SetExpiry::Clear, true)
        );
    }

    #[test]
    fn set_option_errors() {
        for bad in [
            "SET k v NX XX",
            "SET k v XX NX",
            "SET k v EX",
            "SET k v EX 1 PX 1",
            "SET k v EX 1 KEEPTTL",
            "SET k v KEEPTTL PX 1",
            "SET k v FOO",
            "SET k v EX x PX 1",
        ] {
            assert_eq!(err(bad), "ERR syntax error", "{bad}");
        }
        assert_eq!(err("SET k v EX 0"), "ERR invalid expire time in 'set' command");
        assert_eq!(err("SET k v PX -1"), "ERR invalid expire time in 'set' command");
        assert_eq!(
            err("SET k v EX 9223372036854775807"),
            "ERR invalid expire time in 'set' command"
        );
        assert_eq!(err("SET k v EX x"), "ERR value is not an integer or out of range");
        assert_eq!(err("SETEX k 0 v"), "ERR invalid expire time in 'setex' command");
        assert_eq!(err("PSETEX k -5 v"), "ERR invalid expire time in 'psetex' command");
    }

    #[test]
    fn string_aliases_and_shapes() {
        assert_eq!(
            parse("SETNX k v").unwrap(),
            Parsed::Engine(
                set("k", "v", SetCondition::IfAbsent, SetExpiry::Clear, false),
                ReplyShape::SetNxInteger
            )
        );
        assert_eq!(
            request("SETEX k 5 v"),
            set("k", "v", SetCondition::Always, SetExpiry::InMs(5000), false)
        );
        assert_eq!(
            request("PSETEX k 5 v"),
            set("k", "v", SetCondition::Always, SetExpiry::InMs(5), false)
        );
        assert_eq!(
            request("GETSET k v"),
            set("k", "v", SetCondition::Always, SetExpiry::Clear, true)
        );
        assert_eq!(
            request("MSET a 1 b 2"),
            Request::MSet(vec![(b("a"), b("1")), (b("b"), b("2"))])
        );
        assert_eq!(
            parse("HMSET h f v").unwrap(),
            Parsed::Engine(
                Request::HSet {
                    key: b("h"),
                    pairs: vec![(b("f"), b("v"))]
                },
                ReplyShape::Ok
            )
        );
        assert_eq!(
            request("HSET h f v"),
            Request::HSet {
                key: b("h"),
                pairs: vec![(b("f"), b("v"))]
            }
        );
        assert_eq!(request("UNLINK a b"), Request::Del(vec![b("a"), b("b")]));
        assert_eq!(request("FLUSHDB"), Request::FlushAll);
        assert_eq!(request("FLUSHALL async"), Request::FlushAll);
        assert_eq!(err("FLUSHALL now"), "ERR syntax error");
        assert_eq!(err("FLUSHALL SYNC ASYNC"), "ERR syntax error");
        assert_eq!(request("DBSIZE"), Request::DbSize);
    }

    #[test]
    fn shape_reply_adjusts() {
        assert_eq!(shape_reply(ReplyShape::SetNxInteger, Reply::Ok), Reply::Int(1));
        assert_eq!(shape_reply(ReplyShape::SetNxInteger, Reply::Nil), Reply::Int(0));
        assert_eq!(shape_reply(ReplyShape::Ok, Reply::Int(3)), Reply::Ok);
        assert_eq!(shape_reply(ReplyShape::AsIs, Reply::Nil), Reply::Nil);
    }

    #[test]
    fn expire() {
        assert_eq!(
            request("EXPIRE k 10"),
            Request::Expire {
                key: b("k"),
                in_ms: 10_000
            }
        );
        assert_eq!(request("PEXPIRE k -5"), Request::Expire { key: b("k"), in_ms: -5 });
        // Redis also refuses a time that overflows once "now" is added; the engine saturates instead.
        assert_eq!(
            request("EXPIRE k 9223372036854775"),
            Request::Expire {
                key: b("k"),
                in_ms: 9_223_372_036_854_775_000
            }
        );
        assert_eq!(
            err("EXPIRE k 9223372036854776"),
            "ERR invalid expire time in 'expire' command"
        );
        assert_eq!(
            err("EXPIRE k -9223372036854776"),
            "ERR invalid expire time in 'expire' command"
        );
        assert_eq!(err("EXPIRE k x"), "ERR value is not an integer or out of range");
        assert_eq!(err("EXPIRE k 10 FOO"), "ERR Unsupported option FOO");
        assert_eq!(
            request("TTL k"),
            Request::Ttl {
                key: b("k"),
                millis: false
            }
        );
        assert_eq!(
            request("PTTL k"),
            Request::Ttl {
                key: b("k"),
                millis: true
            }
        );
    }

    #[test]
    fn scan() {
        assert_eq!(
            request("SCAN 0"),
            Request::Scan {
                cursor: 0,
                pattern: None,
                count: 10,
                kind: None
            }
        );
        assert_eq!(
            request("SCAN 17 MATCH user:* COUNT 100 TYPE hash"),
            Request::Scan {
                cursor: 17,
                pattern: Some(b("user:*")),
                count: 100,
                kind: Some(b("hash"))
            }
        );
        assert_eq!(
            request("SCAN 18446744073709551615 match *"),
            Request::Scan {
                cursor: u64::MAX,
                pattern: None,
                count: 10,
                kind: None
            }
        );
        assert_eq!(err("SCAN x"), "ERR invalid cursor");
        assert_eq!(err("SCAN -1"), "ERR invalid cursor");
        assert_eq!(err("SCAN 0 COUNT 0"), "ERR syntax error");
        assert_eq!(err("SCAN 0 COUNT x"), "ERR value is not an integer or out of range");
        assert_eq!(err("SCAN 0 MATCH"), "ERR syntax error");
        assert_eq!(err("SCAN 0 FOO bar"), "ERR syntax error");
    }

    #[test]
    fn hashes_and_sets() {
        assert_eq!(
            request("HGET h f"),
            Request::HGet {
                key: b("h"),
                field: b("f")
            }
        );
        assert_eq!(
            request("HMGET h a b"),
            Request::HMGet {
                key: b("h"),
                fields: vec![b("a"), b("b")]
            }
        );
        assert_eq!(
            request("HINCRBY h f 3"),
            Request::HIncrBy {
                key: b("h"),
                field: b("f"),
                by: 3
            }
        );
        assert_eq!(
            request("SMISMEMBER s a b"),
            Request::SMIsMember {
                key: b("s"),
                members: vec![b("a"), b("b")]
            }
        );
        assert_eq!(err("SADD s"), "ERR wrong number of arguments for 'sadd' command");
    }

    #[test]
    fn concord_commands() {
        let vv: VersionVector = [(1, 3)].into_iter().collect();
        let token = context_token(&vv);
        assert_eq!(
            request(&format!("CONCORD.RESOLVE k {token} v")),
            Request::Resolve {
                key: b("k"),
                context: vv,
                value: b("v")
            }
        );
        assert!(err("CONCORD.RESOLVE k !!! v").starts_with("ERR invalid context token: "));
        assert_eq!(
            node_command("CONCORD.CONFLICTS"),
            NodeCommand::Conflicts { count: None }
        );
        assert_eq!(
            node_command("CONCORD.CONFLICTS 5"),
            NodeCommand::Conflicts { count: Some(5) }
        );
        assert_eq!(
            err("CONCORD.CONFLICTS -1"),
            "ERR value is out of range, must be positive"
        );
        assert_eq!(node_command("CONCORD.STATUS"), NodeCommand::Status);
    }

    #[test]
    fn connection_commands() {
        assert_eq!(node_command("PING"), NodeCommand::Ping(None));
        assert_eq!(node_command("PING hi"), NodeCommand::Ping(Some(b("hi"))));
        assert_eq!(node_command("ECHO x"), NodeCommand::Echo(b("x")));
        assert_eq!(node_command("SELECT 0"), NodeCommand::Select);
        assert_eq!(err("SELECT 1"), "ERR DB index is out of range");
        assert_eq!(err("SELECT x"), "ERR value is not an integer or out of range");
        assert_eq!(err("SELECT 4294967296"), "ERR value is not an integer or out of range");
        assert_eq!(node_command("QUIT"), NodeCommand::Quit);
        assert_eq!(
            node_command("AUTH pw"),
            NodeCommand::Auth(Credentials {
                username: None,
                password: b("pw")
            })
        );
        assert_eq!(
            node_command("AUTH u pw"),
            NodeCommand::Auth(Credentials {
                username: Some(b("u")),
                password: b("pw")
            })
        );
        assert_eq!(err("AUTH a b c"), "ERR syntax error");
        assert_eq!(
            node_command("INFO Server KEYSPACE"),
            NodeCommand::Info(vec!["server".into(), "keyspace".into()])
        );
        assert_eq!(
            node_command("WAIT 2 100"),
            NodeCommand::Wait {
                regions: 2,
                timeout_ms: 100
            }
        );
        assert_eq!(
            node_command("WAIT -1 0"),
            NodeCommand::Wait {
                regions: 0,
                timeout_ms: 0
            }
        );
        assert_eq!(err("WAIT 1 -1"), "ERR timeout is negative");
        assert_eq!(err("WAIT 1 x"), "ERR timeout is not an integer or out of range");
        assert_eq!(err("WAIT x 1"), "ERR value is not an integer or out of range");
    }

    #[test]
    fn hello() {
        assert_eq!(
            node_command("HELLO"),
            NodeCommand::Hello {
                protocol: None,
                auth: None,
                client_name: None
            }
        );
        assert_eq!(
            node_command("HELLO 3 AUTH u p SETNAME app"),
            NodeCommand::Hello {
                protocol: Some(3),
                auth: Some(Credentials {
                    username: Some(b("u")),
                    password: b("p")
                }),
                client_name: Some(b("app")),
            }
        );
        assert_eq!(err("HELLO 4"), "NOPROTO unsupported protocol version");
        assert_eq!(err("HELLO x"), "ERR Protocol version is not an integer or out of range");
        assert_eq!(err("HELLO 3 AUTH u"), "ERR Syntax error in HELLO option 'AUTH'");
        assert_eq!(err("HELLO 3 SETNAME"), "ERR Syntax error in HELLO option 'SETNAME'");
        assert_eq!(
            parse("HELLO 4").unwrap_err().to_frame(),
            Frame::Error("NOPROTO unsupported protocol version".into())
        );
    }

    #[test]
    fn client_and_config() {
        assert_eq!(node_command("CLIENT SETNAME app"), NodeCommand::ClientSetName(b("app")));
        assert_eq!(
            parse_command(&[b("CLIENT"), b("SETNAME"), b("a b")])
                .unwrap_err()
                .to_string(),
            "ERR Client names cannot contain spaces, newlines or special characters."
        );
        assert_eq!(node_command("client getname"), NodeCommand::ClientGetName);
        assert_eq!(node_command("CLIENT ID"), NodeCommand::ClientId);
        assert_eq!(
            node_command("CLIENT SETINFO LIB-NAME redis-py"),
            NodeCommand::ClientSetInfo {
                attribute: ClientAttribute::LibName,
                value: b("redis-py")
            }
        );
        assert_eq!(err("CLIENT SETINFO color red"), "ERR Unrecognized option 'color'");
        assert_eq!(err("CLIENT FOO x"), "ERR unknown subcommand 'FOO'. Try CLIENT HELP.");
        assert_eq!(err("CONFIG FOO a b"), "ERR unknown subcommand 'FOO'. Try CONFIG HELP.");
        assert_eq!(node_command("CONFIG GET save"), NodeCommand::ConfigGet(vec![b("save")]));
        let values = vec![("appendonly", "no".to_string()), ("save", String::new())];
        assert_eq!(
            config_get_reply(&[b("save")], &values),
            Reply::Map(vec![(Reply::bulk("save"), Reply::bulk(""))])
        );
        assert_eq!(
            config_get_reply(&[b("APPENDONLY"), b("appendonly")], &values),
            Reply::Map(vec![(Reply::bulk("appendonly"), Reply::bulk("no"))])
        );
        assert_eq!(config_get_reply(&[b("maxmemory")], &values), Reply::Map(vec![]));
        let Reply::Map(all) = config_get_reply(&[b("*")], &values) else {
            panic!()
        };
        assert_eq!(all.len(), values.len());
    }

    #[test]
    fn random_arguments_never_panic() {
        // Command names (some mangled) with argument lists of every length, drawn from words that
        // reach the option parsers; a deterministic xorshift keeps it reproducible.
        const WORDS: &[&str] = &[
            "",
            "0",
            "1",
            "-1",
            "x",
            "NX",
            "XX",
            "GET",
            "EX",
            "PX",
            "EXAT",
            "PXAT",
            "KEEPTTL",
            "MATCH",
            "COUNT",
            "TYPE",
            "AUTH",
            "SETNAME",
            "SETINFO",
            "LIB-NAME",
            "FILTERBY",
            "PATTERN",
            "3",
            "9223372036854775807",
            "-9223372036854775808",
            "a b",
            "\0",
        ];
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let name = COMMANDS[(next() % COMMANDS.len() as u64) as usize];
            let mut line = vec![Bytes::copy_from_slice(name.as_bytes())];
            for _ in 0..next() % 7 {
                line.push(b(WORDS[(next() % WORDS.len() as u64) as usize]));
            }
            let _ = parse_command(&line);
            line[0] = Bytes::copy_from_slice(name.to_ascii_uppercase().as_bytes());
            let _ = parse_command(&line[..line.len().min(2)]);
        }
    }

    #[test]
    fn scripts() {
        assert_eq!(
            node_command("EVAL return 2 k1 k2 a1"),
            NodeCommand::Eval(Eval {
                script: ScriptSource::Source(b("return")),
                keys: vec![b("k1"), b("k2")],
                args: vec![b("a1")],
                read_only: false,
            })
        );
        assert_eq!(
            node_command("evalsha_ro abc 0 a1"),
            NodeCommand::Eval(Eval {
                script: ScriptSource::Sha(b("abc")),
                keys: vec![],
                args: vec![b("a1")],
                read_only: true,
            })
        );
        assert_eq!(err("EVAL s"), "ERR wrong number of arguments for 'eval' command");
        assert_eq!(err("EVAL s x"), "ERR value is not an integer or out of range");
        assert_eq!(err("EVAL s -1"), "ERR Number of keys can't be negative");
        assert_eq!(
            err("EVAL s 2 k"),
            "ERR Number of keys can't be greater than number of args"
        );
        assert_eq!(
            node_command("SCRIPT LOAD s"),
            NodeCommand::Script(ScriptCommand::Load(b("s")))
        );
        assert_eq!(
            node_command("script exists a b"),
            NodeCommand::Script(ScriptCommand::Exists(vec![b("a"), b("b")]))
        );
        assert_eq!(
            node_command("SCRIPT FLUSH ASYNC"),
            NodeCommand::Script(ScriptCommand::Flush)
        );
        assert_eq!(
            node_command("SCRIPT flush sync"),
            NodeCommand::Script(ScriptCommand::Flush)
        );
        assert_eq!(
            err("SCRIPT FLUSH NOTREAL"),
            "ERR SCRIPT FLUSH only support SYNC|ASYNC option"
        );
        assert_eq!(err("SCRIPT"), "ERR wrong number of arguments for 'script' command");
        assert_eq!(
            err("SCRIPT LOAD"),
            "ERR wrong number of arguments for 'script|load' command"
        );
        assert_eq!(
            err("SCRIPT EXISTS"),
            "ERR wrong number of arguments for 'script|exists' command"
        );
        assert_eq!(err("SCRIPT NOPE"), "ERR unknown subcommand 'NOPE'. Try SCRIPT HELP.");
        assert_eq!(
            node_command("COMMAND GETKEYS EVAL s 2 k1 k2 a"),
            NodeCommand::Command(CommandQuery::GetKeys(vec![b("k1"), b("k2")]))
        );
        assert_eq!(
            node_command("COMMAND GETKEYS EVAL s 0 a"),
            NodeCommand::Command(CommandQuery::GetKeys(vec![]))
        );
        for name in [
            "eval",
            "evalsha_ro",
            "multi",
            "exec",
            "watch",
            "blpop",
            "client",
            "wait",
        ] {
            assert!(is_noscript(name.as_bytes()), "{name}");
        }
        assert!(!is_noscript(b"get") && !is_noscript(b"blmpop") && !is_noscript(b"nope"));
    }

    #[test]
    fn command_introspection() {
        assert_eq!(command_reply(&CommandQuery::Count), Reply::Int(COMMANDS.len() as i64));
        assert_eq!(node_command("COMMAND COUNT"), NodeCommand::Command(CommandQuery::Count));
        assert_eq!(
            node_command("COMMAND DOCS"),
            NodeCommand::Command(CommandQuery::Docs(vec![]))
        );
        assert_eq!(command_reply(&CommandQuery::Docs(vec![])), Reply::Map(vec![]));
        assert_eq!(
            err("COMMAND COUNT x"),
            "ERR wrong number of arguments for 'command|count' command"
        );
        assert_eq!(err("COMMAND FOO"), "ERR unknown subcommand 'FOO'. Try COMMAND HELP.");
        assert_eq!(
            node_command("COMMAND GETKEYS MSET a b c d"),
            NodeCommand::Command(CommandQuery::GetKeys(vec![b("a"), b("c")]))
        );
        assert_eq!(
            node_command("COMMAND GETKEYS SINTERCARD 2 x y LIMIT 1"),
            NodeCommand::Command(CommandQuery::GetKeys(vec![b("x"), b("y")]))
        );
        assert_eq!(err("COMMAND GETKEYS NOPE a"), "ERR Invalid command specified");
        assert_eq!(
            err("COMMAND GETKEYS GET a b"),
            "ERR Invalid number of arguments specified for command"
        );
        assert_eq!(err("COMMAND GETKEYS PING x"), "ERR The command has no key arguments");
        assert_eq!(
            command_reply(&CommandQuery::GetKeys(vec![b("k")])),
            Reply::Array(vec![Reply::bulk("k")])
        );
        let Reply::Array(info) = command_reply(&CommandQuery::Info(vec![b("GET"), b("nope")])) else {
            panic!()
        };
        assert_eq!(info[1], Reply::Nil);
        let Reply::Array(get) = &info[0] else { panic!() };
        assert_eq!(get[0], Reply::bulk("get"));
        assert_eq!(get[1], Reply::Int(2));
        assert_eq!(get.len(), 10);
        let Reply::Array(all) = command_reply(&CommandQuery::All) else {
            panic!()
        };
        assert_eq!(all.len(), COMMANDS.len());
        assert_eq!(
            command_reply(&CommandQuery::List(Some(b("concord.s*")))),
            Reply::Array(vec![Reply::bulk("concord.siblings"), Reply::bulk("concord.status")])
        );
    }
}
