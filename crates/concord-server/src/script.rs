//! `EVAL` scripts: a per-node cache of compiled scripts, running one in Concord's deterministic
//! Lua sandbox ([`crate::lua::Sandbox`], shared with conflict resolvers) with Redis's scripting
//! API and its Lua ⇄ RESP conversions, and running one on the node as one atomic, replicated
//! unit ([`Node::client_eval`]).
//!
//! What a script sees:
//! - `KEYS` and `ARGV`: arrays of strings; a fresh global environment per call (no state
//!   survives between calls, as in the resolver sandbox).
//! - `redis.call(cmd, ...)` runs a command and returns its reply converted to Lua; an error
//!   aborts the script (the error reply names the script and line, as Redis 7 does).
//!   `redis.pcall` returns the error as a table `{err = "..."}` instead. What the command does is
//!   up to the caller's [`Call`] (the RESP front end runs it in the script's atomic unit; a
//!   `PUBLISH` there answers the receivers here now and is sent once the unit ran).
//! - `redis.error_reply`, `redis.status_reply`, `redis.sha1hex`, `redis.log` (a no-op: scripts
//!   write no log), `redis.setresp(2)` (RESP3 conversion is not offered), `redis.set_repl` and
//!   `redis.replicate_commands` (no-ops: a script's effects always replicate), and the `LOG_*`
//!   and `REPL_*` constants.
//! - `cjson.encode`, `cjson.decode`, `cjson.null` ([`crate::lua_json`]: lua-cjson's behaviour,
//!   object members in key order so every region computes the same bytes).
//! - `cmsgpack.pack`, `cmsgpack.unpack` ([`crate::lua_msgpack`]: lua-cmsgpack's behaviour, map
//!   entries in key order).
//! - `bit` ([`crate::lua_bit`]: LuaBitOp's functions, 32-bit results).
//! - Not offered: Lua's `pcall`/`xpcall` (a script cannot catch the error that enforces a limit),
//!   `struct`, and the `os`, `io` and `debug` libraries.
//!
//! Conversions, as Redis (RESP2 rules):
//! - reply → Lua: integer → integer, bulk → string, nil bulk or nil array → `false`, array → table,
//!   status → `{ok = ...}`, error → `{err = ...}` (only through `pcall`), a map → a flat array, a
//!   double → its text.
//! - Lua → reply: integer → integer, a float → integer (truncated), string → bulk, `true` → 1,
//!   `false` and `nil` → nil, a table with a string `err` → error, with a string `ok` → status,
//!   any other table → array of its elements 1, 2, … up to the first nil.
//!
//! The cache is bounded: at most [`MAX_SCRIPTS`] scripts and [`MAX_CACHE_BYTES`] of source;
//! loading one more evicts the oldest loaded first (`EVALSHA` of an evicted script answers
//! `NOSCRIPT`, which clients handle by sending `EVAL`). It is per node and in memory: a restart or
//! `SCRIPT FLUSH` empties it, and it is not replicated (as in Redis, where a replica's cache is
//! its own).

use crate::lua::{error_message, LuaLimits, Sandbox};
use crate::node::{Node, NodeError};
use crate::resp::cmd_pubsub::PubSubCommand;
use crate::resp::{self, CommandParseError, Frame, NodeCommand, Parsed};
use bytes::Bytes;
use concord_core::{Reply, Unit};
use mlua::{Function, MultiValue, Table, Value};
use sha1::{Digest, Sha1};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// The most scripts the cache holds.
pub const MAX_SCRIPTS: usize = 10_000;
/// The most script source bytes the cache holds.
pub const MAX_CACHE_BYTES: usize = 64 << 20;
/// How deeply nested a script's reply (or a command's reply given to it) may be.
const MAX_NESTING: usize = 64;

/// Runs one command for a script: its arguments (the name first) → its reply, or the Redis error
/// text (`"WRONGTYPE Operation against ..."`).
pub type Call<'a> = dyn FnMut(Vec<Bytes>) -> Result<Reply, String> + 'a;

/// A compiled script from the cache.
#[derive(Clone)]
pub struct Script {
    /// The SHA1 of its source, lower-case hex.
    pub sha: String,
    /// Its source: what is sent to the home region of its keys to run there.
    pub source: Bytes,
    func: Function,
}

/// The node's script cache and the Lua state scripts run in.
pub struct Scripts {
    inner: Mutex<State>,
}

struct State {
    cache: HashMap<String, Cached>,
    /// Shas in load order (eviction takes the oldest).
    order: VecDeque<String>,
    bytes: usize,
    /// `xpcall(chunk, handler, env)`: runs a script, keeping the error value a table.
    run: Function,
    /// The `redis` functions and constants every call gets a copy of (`call`/`pcall` are added
    /// per call: they reach the caller's [`Call`]).
    base: Table,
    /// The `cjson` and `cmsgpack` libraries ([`crate::lua_json`], [`crate::lua_msgpack`]),
    /// copied into every call's environment.
    cjson: Table,
    cmsgpack: Table,
    /// The `bit` library ([`crate::lua_bit`]).
    bit: Table,
    /// Declared last: the references above are dropped before the state.
    sandbox: Sandbox,
}

struct Cached {
    func: Function,
    source: Bytes,
}

/// The SHA1 of `source` in lower-case hex (what `SCRIPT LOAD` answers and `EVALSHA` takes).
pub fn sha1hex(source: &[u8]) -> String {
    Sha1::digest(source).iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs a script with `xpcall` in the real globals (never reachable from a script): Lua errors
/// (strings) become `{err = "ERR ..."}`, tables (`redis.call` failures, `error({err = ...})`)
/// pass unchanged.
const RUNNER: &str = r#"
local xpcall, type = xpcall, type
local function handler(e)
  if type(e) == "string" then
    return { err = "ERR " .. e }
  end
  return e
end
return function(chunk, env)
  return xpcall(chunk, handler, env)
end
"#;

impl Scripts {
    pub fn new(limits: LuaLimits) -> Result<Scripts, String> {
        let sandbox = Sandbox::new(limits)?;
        let lua = sandbox.lua();
        let run: Function = lua
            .load(RUNNER)
            .set_name("=concord-script-runner")
            .call(())
            .map_err(|e| format!("cannot set up the script runner: {e}"))?;
        let base = redis_base(lua).map_err(|e| format!("cannot set up the redis API for scripts: {e}"))?;
        let cjson = crate::lua_json::cjson_table(lua).map_err(|e| format!("cannot set up cjson for scripts: {e}"))?;
        let cmsgpack =
            crate::lua_msgpack::cmsgpack_table(lua).map_err(|e| format!("cannot set up cmsgpack for scripts: {e}"))?;
        let bit = crate::lua_bit::bit_table(lua).map_err(|e| format!("cannot set up bit for scripts: {e}"))?;
        Ok(Scripts {
            inner: Mutex::new(State {
                cache: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
                run,
                base,
                cjson,
                cmsgpack,
                bit,
                sandbox,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Compile `source` and cache it (`SCRIPT LOAD`, `EVAL`); a cached script is not compiled
    /// again. `Err`: the error reply (a syntax error).
    pub fn load(&self, source: &[u8]) -> Result<Script, String> {
        let sha = sha1hex(source);
        let mut st = self.state();
        if let Some(c) = st.cache.get(&sha) {
            return Ok(Script {
                sha,
                source: c.source.clone(),
                func: c.func.clone(),
            });
        }
        if source.len() > MAX_CACHE_BYTES {
            return Err(format!(
                "ERR a script may be at most {MAX_CACHE_BYTES} bytes (the script cache's size)"
            ));
        }
        let func = st.sandbox.compile("@user_script", source).map_err(|e| {
            let msg = match &e {
                mlua::Error::SyntaxError { message, .. } => message.clone(),
                other => error_message(other),
            };
            format!("ERR Error compiling script (new function): {msg}")
        })?;
        while st.cache.len() >= MAX_SCRIPTS || st.bytes + source.len() > MAX_CACHE_BYTES {
            let Some(old) = st.order.pop_front() else { break };
            if let Some(c) = st.cache.remove(&old) {
                st.bytes -= c.source.len();
            }
        }
        st.bytes += source.len();
        st.order.push_back(sha.clone());
        st.cache.insert(
            sha.clone(),
            Cached {
                func: func.clone(),
                source: Bytes::copy_from_slice(source),
            },
        );
        Ok(Script {
            sha,
            source: Bytes::copy_from_slice(source),
            func,
        })
    }

    /// The cached script with this SHA1 (any case), if any (`EVALSHA`).
    pub fn get(&self, sha: &[u8]) -> Option<Script> {
        let sha = String::from_utf8_lossy(sha).to_ascii_lowercase();
        let st = self.state();
        st.cache.get(&sha).map(|c| Script {
            func: c.func.clone(),
            source: c.source.clone(),
            sha,
        })
    }

    /// Whether a script with this SHA1 is cached (`SCRIPT EXISTS`).
    pub fn exists(&self, sha: &[u8]) -> bool {
        let sha = String::from_utf8_lossy(sha).to_ascii_lowercase();
        self.state().cache.contains_key(&sha)
    }

    /// Empty the cache (`SCRIPT FLUSH`).
    pub fn flush(&self) {
        let mut st = self.state();
        st.cache.clear();
        st.order.clear();
        st.bytes = 0;
        let _ = st.sandbox.lua().gc_collect();
    }

    /// How many scripts are cached.
    pub fn len(&self) -> usize {
        self.state().cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Run `script` with `keys` and `argv`; its commands go to `call`. The reply frame: the
    /// script's value converted to RESP, or the error reply (a command error through
    /// `redis.call`, a Lua error, or a limit exceeded). Commands run before an error are not
    /// undone (as in Redis).
    pub fn run(&self, script: &Script, keys: &[Bytes], argv: &[Bytes], call: &mut Call<'_>) -> Frame {
        let st = self.state();
        let lua = st.sandbox.lua();
        // The error `redis.call` raised (message, line): the value that reaches the handler is
        // then mlua's wrapper of a Rust error, which does not carry it.
        let raised: RefCell<Option<(String, Option<i64>)>> = RefCell::new(None);
        let call = RefCell::new(call);
        let setup = || -> mlua::Result<(Table, Table)> {
            let env = st.sandbox.fresh_env()?;
            env.raw_set("KEYS", strings(lua, keys)?)?;
            env.raw_set("ARGV", strings(lua, argv)?)?;
            let redis = lua.create_table()?;
            for pair in st.base.pairs::<Value, Value>() {
                let (k, v) = pair?;
                redis.raw_set(k, v)?;
            }
            env.raw_set("redis", redis.clone())?;
            for (name, lib) in [("cjson", &st.cjson), ("cmsgpack", &st.cmsgpack), ("bit", &st.bit)] {
                let copy = lua.create_table()?;
                for pair in lib.pairs::<Value, Value>() {
                    let (k, v) = pair?;
                    copy.raw_set(k, v)?;
                }
                env.raw_set(name, copy)?;
            }
            Ok((env, redis))
        };
        let (env, redis) = match setup() {
            Ok(x) => x,
            Err(e) => return Frame::Error(format!("ERR cannot set up the script's environment: {e}")),
        };
        let outcome = st.sandbox.limited(|| {
            lua.scope(|scope| {
                let command = |lua: &mlua::Lua, args: MultiValue, raise: bool| -> mlua::Result<Value> {
                    let reply = command_args(args).and_then(|args| {
                        let mut call = call.borrow_mut();
                        (*call)(args)
                    });
                    match reply {
                        Ok(reply) => reply_to_lua(lua, reply, 0),
                        Err(text) if raise => {
                            let line = lua.inspect_stack(1).map(|d| i64::from(d.curr_line()));
                            let message = text.trim_end_matches(['\r', '\n']).to_string();
                            *raised.borrow_mut() = Some((message.clone(), line));
                            Err(mlua::Error::runtime(message))
                        }
                        Err(text) => error_table(lua, text.trim_end_matches(['\r', '\n'])),
                    }
                };
                redis.raw_set(
                    "call",
                    scope.create_function(move |lua, args: MultiValue| command(lua, args, true))?,
                )?;
                redis.raw_set(
                    "pcall",
                    scope.create_function(move |lua, args: MultiValue| command(lua, args, false))?,
                )?;
                let mut results = st
                    .run
                    .call::<MultiValue>((script.func.clone(), env.clone()))?
                    .into_iter();
                let ok = matches!(results.next(), Some(Value::Boolean(true)));
                let value = results.next().unwrap_or(Value::Nil);
                Ok((ok, value))
            })
        });
        let (ok, value) = match outcome {
            Ok(x) => x,
            Err(e) => return Frame::Error(format!("ERR Error running script {}: {e}", script.sha)),
        };
        if ok {
            return lua_to_frame(&value);
        }
        if let Some((message, line)) = raised.take() {
            return Frame::Error(located(&message, line, &script.sha));
        }
        Frame::Error(match value {
            Value::Table(t) => match t.raw_get::<Value>("err") {
                Ok(Value::String(s)) => {
                    let message = s.to_string_lossy();
                    let line = t.raw_get::<i64>("line").ok().or_else(|| lua_line(&message));
                    located(&message, line, &script.sha)
                }
                _ => format!(
                    "ERR Error running script {}: the script raised a table without `err`",
                    script.sha
                ),
            },
            Value::String(s) if s.to_string_lossy() == "not enough memory" => format!(
                "ERR Error running script {}: {}",
                script.sha,
                st.sandbox.memory_limit_message()
            ),
            Value::Error(e) => format!("ERR Error running script {}: {}", script.sha, error_message(&e)),
            other => format!("ERR Error running script {}: {}", script.sha, other.type_name()),
        })
    }
}

impl Node {
    /// Run `script` (`EVAL`) in this region under one engine lock, as one atomic unit
    /// ([`Node::client_unit_with`]): no other client, here or in another region, sees part of it —
    /// its writes replicate as one unit that every other region applies together
    /// (`Op::unit_end`), as a `MULTI`/`EXEC` transaction's. Each `redis.call` is parsed by the
    /// same command table and parsers as a client's command ([`resp::parse_command`]) and runs in
    /// that unit; its reply feeds the script.
    ///
    /// - Commands Redis refuses in scripts (the `noscript` flag: `MULTI`, `EXEC`, `WATCH`,
    ///   `EVAL`, `BLPOP`, `CLIENT`, `WAIT`, …) are refused with Redis's error; so are the other
    ///   commands Concord answers outside the engine (`INFO`, `TIME`, …: a script's commands are
    ///   data commands), except `PING` and `ECHO`. A blocking command without `noscript`
    ///   (`BLMPOP`, `BZMPOP`) does not block: it is its non-blocking form, as in Redis.
    /// - A script whose declared `KEYS` are homed in another region (all in the same one; keys
    ///   with no home may be among them) runs there: it is forwarded whole, as `EVAL` with its
    ///   source, and answered from there ([`Node::forward_script`]). Keys homed in two regions
    ///   (or here and elsewhere) are refused before anything runs. A write the script makes of an
    ///   undeclared key homed elsewhere is refused when issued (declare every key, as Redis asks).
    ///   `read_only` (`EVAL_RO`) refuses every write, and runs here: it reads this region's view.
    /// - A script that fails part way (a `redis.call` error, a Lua error, its instruction or
    ///   memory budget exceeded) keeps the writes it made before the failure, as Redis does:
    ///   they replicate, still as one unit.
    /// - The unit waits for the strictest ack level among the keys the script wrote.
    ///
    /// The reply frame (the script's value or its error), the commit ticket to wait for and the
    /// highest own seq written; or, run at the home, the home's last op.
    pub async fn client_eval(
        &self,
        script: &Script,
        keys: &[Bytes],
        args: &[Bytes],
        read_only: bool,
    ) -> Result<EvalDone, NodeError> {
        if !read_only {
            if let Some(home) = self.script_home(keys)? {
                let mut forwarded = Vec::with_capacity(3 + keys.len() + args.len());
                forwarded.push(Bytes::from_static(b"EVAL"));
                forwarded.push(script.source.clone());
                forwarded.push(Bytes::from(keys.len().to_string()));
                forwarded.extend(keys.iter().cloned());
                forwarded.extend(args.iter().cloned());
                let (reply, home_dot) = self.forward_script(home, forwarded, keys).await?;
                return Ok(EvalDone {
                    frame: resp::reply_to_frame(reply),
                    ticket: None,
                    own_seq: None,
                    home_dot,
                });
            }
        }
        let (frame, ticket, own_seq) = self.client_eval_here(script, keys, args, read_only).await?;
        Ok(EvalDone {
            frame,
            ticket,
            own_seq,
            home_dot: None,
        })
    }

    /// Where a script whose `KEYS` are `keys` runs: `None` here, `Some(home)` at the region
    /// every homed key among them shares. Keys homed in different regions: refused.
    pub fn script_home(&self, keys: &[Bytes]) -> Result<Option<concord_core::ReplicaId>, NodeError> {
        let homes: std::collections::BTreeSet<_> = keys.iter().filter_map(|k| self.home_of(k)).collect();
        let mut it = homes.iter();
        match (it.next(), it.next()) {
            (None, _) => Ok(None),
            (Some(&h), None) => Ok((h != self.region.id).then_some(h)),
            _ => {
                let names: Vec<String> = homes.iter().map(|h| self.region_name(*h)).collect();
                Err(NodeError::Other(format!(
                    "a script's keys must share a home region: they are homed in {}",
                    names.join(" and ")
                )))
            }
        }
    }

    /// A script another region forwarded here, the home of its keys ([`Node::client_eval`]):
    /// run here, never forwarded again. The reply (a script's error is a [`Reply::Error`]) and
    /// the last own seq it wrote.
    pub async fn run_forwarded_eval(&self, eval: resp::Eval) -> Result<(Reply, Option<u64>), String> {
        let resp::ScriptSource::Source(source) = &eval.script else {
            return Err("ERR only EVAL with its source can be forwarded".into());
        };
        let script = self.scripts.load(source)?;
        if self.script_home(&eval.keys).map_err(|e| e.to_string())?.is_some() {
            return Err(format!("ERR region {} is not the home of these keys", self.region.name));
        }
        let (frame, ticket, own_seq) = self
            .client_eval_here(&script, &eval.keys, &eval.args, false)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(t) = ticket {
            self.wait_acknowledgeable(t).await.map_err(|e| e.to_string())?;
        }
        // A script's error is its reply (`Reply::Error`), not a failure of the forwarding: the
        // writes it made before it stay, and the region that sent it waits to read them.
        Ok((resp::frame_to_reply(frame), own_seq))
    }

    /// [`Node::client_eval`] in this region (the script's keys are homed here or nowhere).
    async fn client_eval_here(
        &self,
        script: &Script,
        keys: &[Bytes],
        args: &[Bytes],
        read_only: bool,
    ) -> Result<(Frame, Option<u64>, Option<u64>), NodeError> {
        self.stats.commands.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut published = Vec::new();
        let ran = self
            .client_unit_with(!read_only, &[], |unit, written| {
                self.run_script_in(unit, written, &mut published, script, keys, args, read_only)
            })
            .await;
        // Sent even when waiting for the ack level failed: the unit ran, and a message the
        // script published goes with its writes, as it would have in Redis.
        self.publish_all(published, &[]);
        Ok(ran?.expect("nothing is watched: the script runs"))
    }

    /// Send the messages a unit's scripts published, in order, once the unit ran.
    pub fn publish_all(&self, published: Vec<Published>, home_writes: &[concord_core::Dot]) {
        for p in published {
            self.publish(p.shard, p.channel, p.message, home_writes.to_vec());
        }
    }

    /// Run `script` inside a unit being executed (`EVAL`, or one in a `MULTI`/`EXEC`): see
    /// [`Node::client_eval`]. Records the keys it writes in `written`, and the messages it
    /// publishes in `published` (the caller sends them once the unit ran:
    /// [`Node::publish_all`]).
    #[allow(clippy::too_many_arguments)]
    pub fn run_script_in(
        &self,
        unit: &mut Unit<'_>,
        written: &mut Vec<Bytes>,
        published: &mut Vec<Published>,
        script: &Script,
        keys: &[Bytes],
        args: &[Bytes],
        read_only: bool,
    ) -> Frame {
        let mut call = |command: Vec<Bytes>| self.script_call(unit, written, published, read_only, command);
        self.scripts.run(script, keys, args, &mut call)
    }

    /// One `redis.call`/`redis.pcall` of a script: parsed like a client's command, checked, and
    /// run in the script's unit. Records the keys it writes in `written`.
    fn script_call(
        &self,
        unit: &mut Unit<'_>,
        written: &mut Vec<Bytes>,
        published: &mut Vec<Published>,
        read_only: bool,
        args: Vec<Bytes>,
    ) -> Result<Reply, String> {
        // Redis's words for the errors a command gets in a script.
        let parsed = resp::parse_command(&args).map_err(|e| match e {
            CommandParseError::UnknownCommand { .. } => "ERR Unknown Redis command called from script".to_string(),
            CommandParseError::WrongArity(_) => {
                "ERR Wrong number of args calling Redis command from script".to_string()
            }
            e => e.to_string(),
        })?;
        let not_allowed = || "ERR This Redis command is not allowed from script".to_string();
        if resp::is_noscript(&args[0]) {
            return Err(not_allowed());
        }
        let (req, shape) = match parsed {
            Parsed::Engine(req, shape) => (req, shape),
            Parsed::Blocking(b) => (b.request, b.shape),
            Parsed::Node(NodeCommand::Ping(None)) => return Ok(Reply::Status("PONG".into())),
            Parsed::Node(NodeCommand::Ping(Some(m)) | NodeCommand::Echo(m)) => return Ok(Reply::Bulk(m)),
            // Answered with the receivers this node has now; sent after the unit, so it
            // follows the script's writes on every region's replication stream.
            Parsed::Node(NodeCommand::PubSub(PubSubCommand::Publish {
                shard,
                channel,
                message,
            })) => {
                let receivers = self.pubsub.registry().receivers(shard, &channel);
                published.push(Published {
                    shard,
                    channel,
                    message,
                });
                return Ok(Reply::Int(receivers as i64));
            }
            Parsed::Node(_) => return Err(not_allowed()),
        };
        if req.is_write() {
            if read_only {
                return Err("ERR Write commands are not allowed from read-only scripts.".into());
            }
            self.check_unit_write(unit.engine(), &req, "script")
                .map_err(|e| e.to_string())?;
            written.extend(req.keys().unwrap_or_default().into_iter().cloned());
        }
        unit.execute(req)
            .map(|reply| resp::shape_reply(shape, reply))
            .map_err(|e| e.to_string())
    }
}

/// A message a script published (`PUBLISH`, `SPUBLISH` with `shard`), sent once its unit ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub shard: bool,
    pub channel: Bytes,
    pub message: Bytes,
}

/// What [`Node::client_eval`] did.
#[derive(Debug)]
pub struct EvalDone {
    /// The script's value, or its error.
    pub frame: Frame,
    /// The commit to wait for before answering (durability here).
    pub ticket: Option<u64>,
    /// The highest own seq the script wrote here.
    pub own_seq: Option<u64>,
    /// Run at the home region of its keys: the home's last op then (if it wrote).
    pub home_dot: Option<concord_core::Dot>,
}

/// Redis 7's script error text: the error, then which script and line raised it.
fn located(message: &str, line: Option<i64>, sha: &str) -> String {
    let message = one_line(message);
    match line {
        Some(line) if line > 0 => format!("{message} script: {sha}, on @user_script:{line}."),
        _ => message,
    }
}

/// The line of a Lua error message (`ERR user_script:3: boom` → 3).
fn lua_line(message: &str) -> Option<i64> {
    let rest = message
        .strip_prefix("ERR ")
        .unwrap_or(message)
        .strip_prefix("user_script:")?;
    rest.split(':').next()?.parse().ok()
}

/// An error or status line may not hold CR or LF (Redis replaces them with spaces).
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

fn strings(lua: &mlua::Lua, items: &[Bytes]) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, item) in items.iter().enumerate() {
        t.raw_set(i + 1, lua.create_string(item)?)?;
    }
    Ok(t)
}

fn error_table(lua: &mlua::Lua, message: &str) -> mlua::Result<Value> {
    let t = lua.create_table()?;
    t.raw_set("err", lua.create_string(message)?)?;
    Ok(Value::Table(t))
}

/// A script's arguments to `redis.call` as a command's arguments: strings and numbers only.
fn command_args(args: MultiValue) -> Result<Vec<Bytes>, String> {
    if args.is_empty() {
        return Err("ERR Please specify at least one argument for this redis lib call".into());
    }
    args.into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(Bytes::copy_from_slice(&s.as_bytes())),
            Value::Integer(i) => Ok(Bytes::from(i.to_string())),
            Value::Number(f) => Ok(Bytes::from(format_number(f))),
            _ => Err("ERR Lua redis lib command arguments must be strings or integers".to_string()),
        })
        .collect()
}

/// A Lua float as Redis passes it to a command: C's `%.17g` (3.0 → `3`, 0.5 → `0.5`).
pub fn format_number(f: f64) -> String {
    crate::lua::format_g(f, 17)
}

/// A command's reply as the script sees it (Redis's RESP2 conversion).
fn reply_to_lua(lua: &mlua::Lua, reply: Reply, depth: usize) -> mlua::Result<Value> {
    if depth > MAX_NESTING {
        return Err(mlua::Error::runtime("reply nested too deeply"));
    }
    let status = |s: &str| -> mlua::Result<Value> {
        let t = lua.create_table()?;
        t.raw_set("ok", s)?;
        Ok(Value::Table(t))
    };
    let array = |items: Vec<Reply>| -> mlua::Result<Value> {
        let t = lua.create_table_with_capacity(items.len(), 0)?;
        for (i, item) in items.into_iter().enumerate() {
            t.raw_set(i + 1, reply_to_lua(lua, item, depth + 1)?)?;
        }
        Ok(Value::Table(t))
    };
    match reply {
        Reply::Ok => status("OK"),
        Reply::Status(s) => status(&s),
        Reply::Nil => Ok(Value::Boolean(false)),
        Reply::Int(n) => Ok(Value::Integer(n)),
        Reply::Bulk(b) => Ok(Value::String(lua.create_string(&b)?)),
        Reply::Double(d) => Ok(Value::String(lua.create_string(crate::resp::format_double(d))?)),
        Reply::Array(items) | Reply::Set(items) => array(items),
        Reply::Map(pairs) | Reply::Pairs(pairs) => array(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()),
        Reply::Error(line) => {
            let t = lua.create_table()?;
            t.raw_set("err", lua.create_string(&line)?)?;
            Ok(Value::Table(t))
        }
    }
}

/// A script's value as its reply (Redis's conversion).
fn lua_to_frame(value: &Value) -> Frame {
    nested_lua_to_frame(value, 0).unwrap_or_else(|| Frame::Error("ERR reached lua stack limit".into()))
}

/// `None`: nested more than [`MAX_NESTING`] deep (a table that contains itself, say).
fn nested_lua_to_frame(value: &Value, depth: usize) -> Option<Frame> {
    Some(match value {
        Value::Nil | Value::Boolean(false) => Frame::Null,
        Value::Boolean(true) => Frame::Integer(1),
        Value::Integer(n) => Frame::Integer(*n),
        // Truncated toward zero, as Redis's `(long long)` cast (saturating; NaN → 0).
        Value::Number(f) => Frame::Integer(*f as i64),
        Value::String(s) => Frame::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Table(t) => {
            if depth >= MAX_NESTING {
                return None;
            }
            if let Ok(Value::String(e)) = t.raw_get::<Value>("err") {
                return Some(Frame::Error(one_line(&e.to_string_lossy())));
            }
            if let Ok(Value::String(s)) = t.raw_get::<Value>("ok") {
                return Some(Frame::Simple(one_line(&s.to_string_lossy())));
            }
            let mut items = Vec::new();
            for i in 1.. {
                match t.raw_get::<Value>(i) {
                    Ok(Value::Nil) | Err(_) => break,
                    Ok(v) => items.push(nested_lua_to_frame(&v, depth + 1)?),
                }
            }
            Frame::Array(items)
        }
        _ => Frame::Null,
    })
}

/// `redis.error_reply(msg)`'s error text, as Redis 7 builds it: a leading `-` is dropped, and a
/// message without an error code (no space) gets `ERR`.
fn error_reply_text(msg: &str) -> String {
    let msg = msg.trim_end_matches(['\r', '\n']);
    match msg.strip_prefix('-') {
        Some(rest) if rest.contains(' ') => rest.to_string(),
        Some(rest) => format!("ERR {rest}"),
        None if msg.contains(' ') => msg.to_string(),
        None => format!("ERR {msg}"),
    }
}

/// The `redis` table's functions and constants that do not reach the node.
fn redis_base(lua: &mlua::Lua) -> mlua::Result<Table> {
    let redis = lua.create_table()?;
    let wrong_args = || mlua::Error::runtime("wrong number or type of arguments");
    redis.raw_set(
        "error_reply",
        lua.create_function(move |lua, args: MultiValue| {
            let args = args.into_vec();
            let [Value::String(s)] = args.as_slice() else {
                return Err(wrong_args());
            };
            error_table(lua, &error_reply_text(&s.to_string_lossy()))
        })?,
    )?;
    redis.raw_set(
        "status_reply",
        lua.create_function(move |lua, args: MultiValue| {
            let args = args.into_vec();
            let [Value::String(s)] = args.as_slice() else {
                return Err(wrong_args());
            };
            let t = lua.create_table()?;
            t.raw_set("ok", s.clone())?;
            Ok(t)
        })?,
    )?;
    redis.raw_set(
        "sha1hex",
        lua.create_function(|_, args: MultiValue| {
            let text = match args.into_vec().as_slice() {
                [Value::String(s)] => s.as_bytes().to_vec(),
                [Value::Integer(n)] => n.to_string().into_bytes(),
                [Value::Number(f)] => format_number(*f).into_bytes(),
                _ => return Err(mlua::Error::runtime("wrong number of arguments")),
            };
            Ok(sha1hex(&text))
        })?,
    )?;
    redis.raw_set(
        "log",
        lua.create_function(|_, args: MultiValue| {
            let args = args.into_vec();
            if args.len() < 2 {
                return Err(mlua::Error::runtime("redis.log() requires two arguments or more."));
            }
            match args[0] {
                Value::Integer(0..=3) => Ok(()),
                Value::Integer(_) => Err(mlua::Error::runtime("Invalid debug level.")),
                _ => Err(mlua::Error::runtime("First argument must be a number (log level).")),
            }
        })?,
    )?;
    redis.raw_set(
        "setresp",
        lua.create_function(|_, version: Value| match version {
            Value::Integer(2) => Ok(()),
            Value::Integer(3) => Err(mlua::Error::runtime(
                "RESP3 replies to scripts are not supported on Concord (redis.setresp(2) only)",
            )),
            _ => Err(mlua::Error::runtime("RESP version must be 2 or 3.")),
        })?,
    )?;
    redis.raw_set("set_repl", lua.create_function(|_, _: MultiValue| Ok(()))?)?;
    redis.raw_set("replicate_commands", lua.create_function(|_, ()| Ok(true))?)?;
    for (name, value) in [
        ("LOG_DEBUG", 0),
        ("LOG_VERBOSE", 1),
        ("LOG_NOTICE", 2),
        ("LOG_WARNING", 3),
        ("REPL_NONE", 0),
        ("REPL_AOF", 1),
        ("REPL_SLAVE", 2),
        ("REPL_REPLICA", 2),
        ("REPL_ALL", 3),
    ] {
        redis.raw_set(name, value)?;
    }
    redis.raw_set("REDIS_VERSION", crate::server::REDIS_COMPAT_VERSION)?;
    redis.raw_set("REDIS_VERSION_NUM", 0x0007_0200)?;
    Ok(redis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn scripts() -> Scripts {
        Scripts::new(LuaLimits::default()).unwrap()
    }

    /// Run `src` with a `call` that answers from `replies` by command name (upper case), and
    /// records the commands it was given.
    fn eval_with(
        src: &str,
        keys: &[&str],
        argv: &[&str],
        replies: &[(&str, Result<Reply, &str>)],
    ) -> (Frame, Vec<Vec<Bytes>>) {
        let s = scripts();
        let script = s.load(src.as_bytes()).unwrap();
        let keys: Vec<Bytes> = keys.iter().map(|k| b(k)).collect();
        let argv: Vec<Bytes> = argv.iter().map(|k| b(k)).collect();
        let mut seen = Vec::new();
        let mut call = |args: Vec<Bytes>| -> Result<Reply, String> {
            let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
            seen.push(args);
            replies
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, r)| r.clone().map_err(|e| e.to_string()))
                .unwrap_or_else(|| Err(format!("ERR unknown command '{name}'")))
        };
        let frame = s.run(&script, &keys, &argv, &mut call);
        (frame, seen)
    }

    fn eval(src: &str) -> Frame {
        eval_with(src, &[], &[], &[]).0
    }

    #[test]
    fn sha1hex_matches_redis() {
        // SCRIPT LOAD "return 1" in Redis.
        assert_eq!(sha1hex(b"return 1"), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
        assert_eq!(
            eval("return redis.sha1hex('')"),
            Frame::Bulk(b("da39a3ee5e6b4b0d3255bfef95601890afd80709"))
        );
    }

    #[test]
    fn lua_values_become_replies() {
        assert_eq!(eval("return 42"), Frame::Integer(42));
        assert_eq!(eval("return 3.99"), Frame::Integer(3));
        assert_eq!(eval("return -3.99"), Frame::Integer(-3));
        assert_eq!(eval("return 'x'"), Frame::Bulk(b("x")));
        assert_eq!(eval("return true"), Frame::Integer(1));
        assert_eq!(eval("return false"), Frame::Null);
        assert_eq!(eval("return nil"), Frame::Null);
        assert_eq!(eval("return"), Frame::Null);
        assert_eq!(
            eval("return {1, 'a', {2, 3}, true, false}"),
            Frame::Array(vec![
                Frame::Integer(1),
                Frame::Bulk(b("a")),
                Frame::Array(vec![Frame::Integer(2), Frame::Integer(3)]),
                Frame::Integer(1),
                Frame::Null,
            ])
        );
        // The array stops at the first nil.
        assert_eq!(eval("return {1, nil, 3}"), Frame::Array(vec![Frame::Integer(1)]));
        assert_eq!(eval("return {ok = 'FINE'}"), Frame::Simple("FINE".into()));
        assert_eq!(eval("return {err = 'BAD thing'}"), Frame::Error("BAD thing".into()));
        assert_eq!(eval("return redis.status_reply('PONG')"), Frame::Simple("PONG".into()));
        assert_eq!(
            eval("return redis.error_reply('My Error')"),
            Frame::Error("My Error".into())
        );
        assert_eq!(
            eval("return redis.error_reply('oops')"),
            Frame::Error("ERR oops".into())
        );
        assert_eq!(
            eval("return redis.error_reply('-WRONGTYPE x')"),
            Frame::Error("WRONGTYPE x".into())
        );
        assert_eq!(eval("return print"), Frame::Null);
        // A table that contains itself ends in an error, not a stack overflow.
        assert_eq!(
            eval("local t = {}; t[1] = t; return t"),
            Frame::Error("ERR reached lua stack limit".into())
        );
    }

    #[test]
    fn replies_become_lua_values() {
        let replies = [
            ("GET", Ok(Reply::Bulk(b("v")))),
            ("NIL", Ok(Reply::Nil)),
            ("INCR", Ok(Reply::Int(7))),
            ("SET", Ok(Reply::Ok)),
            (
                "ARR",
                Ok(Reply::Array(vec![Reply::Bulk(b("a")), Reply::Nil, Reply::Int(1)])),
            ),
            ("MAP", Ok(Reply::Map(vec![(Reply::Bulk(b("f")), Reply::Bulk(b("v")))]))),
            ("DBL", Ok(Reply::Double(1.5))),
        ];
        let src = r#"
            local out = {}
            out[1] = type(redis.call('GET', 'k'))
            out[2] = tostring(redis.call('NIL'))
            out[3] = math.type(redis.call('INCR', 'k'))
            out[4] = redis.call('SET', 'k', 'v').ok
            local a = redis.call('ARR')
            out[5] = a[1] .. tostring(a[2]) .. a[3]
            local m = redis.call('MAP')
            out[6] = m[1] .. '=' .. m[2]
            out[7] = redis.call('DBL')
            return out
        "#;
        let (frame, _) = eval_with(src, &[], &[], &replies);
        let want: Vec<Frame> = ["string", "false", "integer", "OK", "afalse1", "f=v", "1.5"]
            .iter()
            .map(|s| Frame::Bulk(b(s)))
            .collect();
        assert_eq!(frame, Frame::Array(want));
    }

    #[test]
    fn keys_argv_and_command_arguments() {
        let (frame, seen) = eval_with(
            "redis.call('SET', KEYS[1], ARGV[1], 10, 2.5, 3.0, ARGV[2] * 2); return {KEYS[1], ARGV[2]}",
            &["k"],
            &["v", "21"],
            &[("SET", Ok(Reply::Ok))],
        );
        assert_eq!(frame, Frame::Array(vec![Frame::Bulk(b("k")), Frame::Bulk(b("21"))]));
        assert_eq!(seen, vec![["SET", "k", "v", "10", "2.5", "3", "42"].map(b).to_vec()]);
        assert_eq!(format_number(0.1), "0.10000000000000001");
        assert_eq!(format_number(1e20), "1e+20");
        assert_eq!(format_number(-2.5e-7), "-2.4999999999999999e-07");
    }

    #[test]
    fn call_raises_pcall_returns_the_error() {
        let replies = [(
            "GET",
            Err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        )];
        let (frame, _) = eval_with("local x = 1\nreturn redis.call('GET', 'k')", &[], &[], &replies);
        let sha = sha1hex(b"local x = 1\nreturn redis.call('GET', 'k')");
        assert_eq!(
            frame,
            Frame::Error(format!(
                "WRONGTYPE Operation against a key holding the wrong kind of value script: {sha}, on @user_script:2."
            ))
        );
        let (frame, _) = eval_with("local e = redis.pcall('GET', 'k'); return e", &[], &[], &replies);
        assert_eq!(
            frame,
            Frame::Error("WRONGTYPE Operation against a key holding the wrong kind of value".into())
        );
        let (frame, _) = eval_with("return redis.pcall('GET', 'k').err", &[], &[], &replies);
        assert!(
            matches!(frame, Frame::Bulk(ref e) if e.starts_with(b"WRONGTYPE")),
            "{frame:?}"
        );
        // Bad arguments: raised by call, returned by pcall.
        let Frame::Error(e) = eval("return redis.call('SET', 'k', {})") else {
            panic!()
        };
        assert!(
            e.starts_with("ERR Lua redis lib command arguments must be strings or integers script: "),
            "{e}"
        );
        assert_eq!(
            eval("return redis.pcall()"),
            Frame::Error("ERR Please specify at least one argument for this redis lib call".into())
        );
    }

    #[test]
    fn lua_errors_name_the_script_and_line() {
        let src = "\nerror('boom')";
        let Frame::Error(e) = eval(src) else { panic!() };
        assert_eq!(
            e,
            format!(
                "ERR user_script:2: boom script: {}, on @user_script:2.",
                sha1hex(src.as_bytes())
            )
        );
        let Frame::Error(e) = eval("return nil + 1") else {
            panic!()
        };
        assert!(
            e.starts_with("ERR user_script:1: attempt to perform arithmetic on a nil value"),
            "{e}"
        );
        assert_eq!(
            eval("error({err = 'CUSTOM failure'})"),
            Frame::Error("CUSTOM failure".into())
        );
        let Frame::Error(e) = eval("pcall(print)") else {
            panic!()
        };
        assert!(e.contains("global 'pcall'"), "{e}");
        let Frame::Error(e) = eval("os.time()") else { panic!() };
        assert!(e.contains("global 'os'"), "{e}");
    }

    #[test]
    fn limits_abort_the_script() {
        let Frame::Error(e) = eval("while true do end") else {
            panic!()
        };
        assert!(
            e.starts_with("ERR Error running script ") && e.contains("instruction limit"),
            "{e}"
        );
        let Frame::Error(e) = eval("local t = {} for i = 1, 1e9 do t[i] = string.rep('y', 64) .. i end") else {
            panic!()
        };
        assert!(e.contains("memory limit") || e.contains("instruction limit"), "{e}");
        // The state is fine afterwards.
        assert_eq!(eval("return 1"), Frame::Integer(1));
    }

    #[test]
    fn compile_errors_and_the_cache() {
        let s = scripts();
        let e = s.load(b"return (").err().unwrap();
        assert!(
            e.starts_with("ERR Error compiling script (new function): user_script:1:"),
            "{e}"
        );
        let script = s.load(b"return 1").unwrap();
        assert!(s.exists(script.sha.as_bytes()));
        assert!(s.exists(script.sha.to_uppercase().as_bytes()));
        assert!(s.get(script.sha.as_bytes()).is_some());
        assert_eq!(s.len(), 1);
        s.load(b"return 1").unwrap();
        assert_eq!(s.len(), 1);
        s.flush();
        assert!(!s.exists(script.sha.as_bytes()));
        assert!(s.get(script.sha.as_bytes()).is_none());
        // A script taken before the flush still runs.
        assert_eq!(s.run(&script, &[], &[], &mut |_| Ok(Reply::Nil)), Frame::Integer(1));
    }

    #[test]
    fn the_cache_evicts_the_oldest() {
        let s = scripts();
        let first = s.load(b"return 0").unwrap();
        for i in 1..=MAX_SCRIPTS {
            s.load(format!("return {i}").as_bytes()).unwrap();
        }
        assert_eq!(s.len(), MAX_SCRIPTS);
        assert!(!s.exists(first.sha.as_bytes()));
        assert!(s.exists(sha1hex(format!("return {MAX_SCRIPTS}").as_bytes()).as_bytes()));
    }

    #[test]
    fn no_state_survives_between_runs() {
        let s = scripts();
        let script = s
            .load(b"counter = (counter or 0) + 1; redis.x = 1; return counter")
            .unwrap();
        for _ in 0..3 {
            assert_eq!(s.run(&script, &[], &[], &mut |_| Ok(Reply::Nil)), Frame::Integer(1));
        }
    }
}
