//! Concord's deterministic Lua sandbox ([`Sandbox`]), and user-defined conflict resolvers in it
//! (`strings = "script"` policies). `EVAL` scripts run in the same sandbox ([`crate::script`]).
//!
//! A script defines a global function `resolve(key, siblings)`: `key` is the key (a Lua string),
//! `siblings` an array (1-based, in the engine's canonical order: by HLC, then dot) of tables
//! `{ value = <string, or nil for a deleted version>, region = "us", hlc = "<physical>.<logical>" }`.
//! It returns a string (the resolved value) or `nil` (the key is deleted); anything else, or an
//! error, keeps the siblings (the engine records a `script_error` conflict).
//!
//! Every region calls the resolver with the same siblings and must get the same answer, so the
//! script runs in a deterministic sandbox:
//!
//! - Only Lua 5.4's base functions without `dofile`, `loadfile`, `load`, `require`,
//!   `collectgarbage`, `next`, `pcall` and `xpcall` (`print` is a no-op), and the `string`,
//!   `table`, `math` (without `random`/`randomseed`) and `utf8` libraries. No `io`, `os`,
//!   `package`, `debug` or `coroutine`: no clock, no randomness, no I/O.
//! - `pairs` iterates in sorted key order (numbers, then strings bytewise, then booleans; other key
//!   types are an error): Lua's own order depends on a per-process random hash seed.
//! - `table.sort` is a stable merge sort (Lua's quicksort picks random pivots on large arrays, so
//!   the order of equal elements could differ between regions).
//! - `tostring` and `string.format("%s")` show tables and functions as their type name, never an
//!   address; `string.format("%p")`, `string.dump`, and `__gc`/`__mode` metatables (which depend on
//!   garbage-collection timing) are refused; the string metatable is hidden.
//! - Every call runs the script's top level again in a fresh global environment, so no state
//!   survives from one call to the next (reads call the resolver too, so a counter kept across
//!   calls would make regions disagree).
//! - Limits per call: an instruction budget, a memory budget on top of the inputs, and a bound
//!   on the returned value's size ([`LuaLimits`]). `pcall` is absent so a script cannot catch the
//!   error that enforces a limit.
//!
//! Known limitation: the instruction hook only runs between Lua instructions, so one call into a
//! C library function (a pathological `string.find` pattern on a long subject) is not interrupted.

use bytes::Bytes;
use concord_core::{Resolver, SiblingView};
use mlua::{ChunkMode, Function, HookTriggers, Lua, LuaOptions, StdLib, Table, Value, VmState};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The instruction hook runs every this many Lua instructions.
const HOOK_INTERVAL: u32 = 1_000;

/// The limits a resolver or a script runs under (per call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LuaLimits {
    /// Lua VM instructions per call (the top level and `resolve` together), checked every
    /// 1,000 instructions.
    pub max_instructions: u64,
    /// Bytes the script may allocate per call, on top of the state and the call's inputs.
    pub max_memory_bytes: usize,
    /// The largest value `resolve` may return.
    pub max_result_bytes: usize,
}

impl Default for LuaLimits {
    fn default() -> Self {
        LuaLimits {
            max_instructions: 1_000_000,
            max_memory_bytes: 16 << 20,
            max_result_bytes: 16 << 20,
        }
    }
}

/// A loaded, sandboxed Lua resolver script.
pub struct LuaResolver {
    name: String,
    limits: LuaLimits,
    inner: Mutex<Inner>,
}

struct Inner {
    /// The compiled script: takes the environment to run in as its argument.
    chunk: Function,
    /// Declared last: the chunk is dropped before the state.
    sandbox: Sandbox,
}

/// One Lua state set up as Concord's deterministic sandbox (see the module docs), with the
/// per-call limits. Shared by conflict resolvers and by `EVAL` scripts ([`crate::script`]); not
/// thread-safe on its own (its owner holds it in a mutex).
pub(crate) struct Sandbox {
    /// The sandbox prelude's constructor of a fresh global environment.
    new_env: Function,
    /// Instructions run in the current call (advanced by the hook).
    instructions: Arc<AtomicU64>,
    limits: LuaLimits,
    /// Declared last: the references above are dropped before the state.
    lua: Lua,
}

/// Reads the script at `path`, loads it in the sandbox and checks it defines `resolve`.
pub fn load_resolver(path: &Path) -> Result<LuaResolver, String> {
    load_resolver_with_limits(path, LuaLimits::default())
}

/// [`load_resolver`] with explicit limits.
pub fn load_resolver_with_limits(path: &Path, limits: LuaLimits) -> Result<LuaResolver, String> {
    let source = std::fs::read(path).map_err(|e| format!("cannot read resolver script {}: {e}", path.display()))?;
    LuaResolver::from_source(&path.display().to_string(), &source, limits)
}

/// The sandbox, run once per state with the real globals. Returns a function that builds a fresh
/// global environment for one call.
const PRELUDE: &str = r##"
local type, error, select, rawget, rawequal, rawlen, rawset = type, error, select, rawget, rawequal, rawlen, rawset
local next, ipairs, tostring, tonumber, assert = next, ipairs, tostring, tonumber, assert
local getmetatable, setmetatable, _VERSION = getmetatable, setmetatable, _VERSION
local string, table, math, utf8 = string, table, math, utf8
local str_format, str_gmatch, table_unpack, table_sort = string.format, string.gmatch, table.unpack, table.sort

-- Scripts reach the real string table through methods ("x"):upper(): patch it, then hide it.
getmetatable("").__metatable = false

local REF = { table = true, ["function"] = true, thread = true, userdata = true }

local function safe_tostring(v)
  if REF[type(v)] then
    local mt = getmetatable(v)
    if type(mt) == "table" and rawget(mt, "__tostring") ~= nil then
      return tostring(v)
    end
    return type(v)
  end
  return tostring(v)
end

local function safe_format(fmt, ...)
  if type(fmt) == "string" then
    for conv in str_gmatch(fmt, "%%[-+ #0]*%d*%.?%d*(.)") do
      if conv == "p" then
        error("bad argument #1 to 'format' (%p is not allowed in Concord's Lua sandbox)", 2)
      end
    end
  end
  local n = select("#", ...)
  local args = { ... }
  for i = 1, n do
    if REF[type(args[i])] then
      args[i] = safe_tostring(args[i])
    end
  end
  return str_format(fmt, table_unpack(args, 1, n))
end

string.format = safe_format
string.dump = nil

local KEY_RANK = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    return KEY_RANK[ta] < KEY_RANK[tb]
  end
  if ta == "boolean" then
    return (not a) and b
  end
  return a < b
end

-- pairs in sorted key order: Lua's own order depends on a random per-state hash seed.
local function sorted_pairs(t)
  if type(t) ~= "table" then
    error("bad argument #1 to 'pairs' (table expected, got " .. type(t) .. ")", 2)
  end
  local keys, n = {}, 0
  for k in next, t do
    if not KEY_RANK[type(k)] then
      error("pairs: a script can only iterate tables whose keys are numbers, strings or booleans", 2)
    end
    n = n + 1
    keys[n] = k
  end
  -- Keys are distinct and key_less is a total order on them: the result is unique.
  table_sort(keys, key_less)
  local i = 0
  return function()
    while i < n do
      i = i + 1
      local k = keys[i]
      local v = rawget(t, k)
      if v ~= nil then
        return k, v
      end
    end
    return nil
  end, t, nil
end

-- A stable merge sort: Lua's quicksort picks random pivots on large arrays.
local function stable_sort(t, lt)
  if lt == nil then
    lt = function(a, b) return a < b end
  elseif type(lt) ~= "function" then
    error("bad argument #2 to 'sort' (function expected, got " .. type(lt) .. ")", 2)
  end
  local n = #t
  if n < 2 then
    return
  end
  local a, b = {}, {}
  for i = 1, n do
    a[i] = t[i]
  end
  local width = 1
  while width < n do
    local lo = 1
    while lo <= n do
      local mid = lo + width
      if mid > n + 1 then mid = n + 1 end
      local hi = lo + 2 * width
      if hi > n + 1 then hi = n + 1 end
      local l, r, k = lo, mid, lo
      while l < mid and r < hi do
        if lt(a[r], a[l]) then
          b[k] = a[r]
          r = r + 1
        else
          b[k] = a[l]
          l = l + 1
        end
        k = k + 1
      end
      while l < mid do
        b[k] = a[l]
        l = l + 1
        k = k + 1
      end
      while r < hi do
        b[k] = a[r]
        r = r + 1
        k = k + 1
      end
      lo = hi
    end
    a, b = b, a
    width = width * 2
  end
  for i = 1, n do
    t[i] = a[i]
  end
end

local function safe_setmetatable(t, mt)
  if type(mt) == "table" and (rawget(mt, "__gc") ~= nil or rawget(mt, "__mode") ~= nil) then
    error("setmetatable: __gc and __mode are not allowed in Concord's Lua sandbox (they depend on garbage collection)", 2)
  end
  return setmetatable(t, mt)
end

local function copy(src, drop)
  local c = {}
  for k, v in next, src do
    c[k] = v
  end
  for _, k in ipairs(drop) do
    c[k] = nil
  end
  return c
end

local function noop() end

-- Nothing below is reachable from a script, but leave no loader in the real globals either.
load, loadfile, dofile, require, collectgarbage, print = nil, nil, nil, nil, nil, nil
math.random, math.randomseed = nil, nil

return function()
  local env = {
    assert = assert,
    error = error,
    getmetatable = getmetatable,
    ipairs = ipairs,
    pairs = sorted_pairs,
    print = noop,
    rawequal = rawequal,
    rawget = rawget,
    rawlen = rawlen,
    rawset = rawset,
    select = select,
    setmetatable = safe_setmetatable,
    tonumber = tonumber,
    tostring = safe_tostring,
    type = type,
    _VERSION = _VERSION,
    string = copy(string, {}),
    table = copy(table, {}),
    math = copy(math, { "random", "randomseed" }),
    utf8 = copy(utf8, {}),
  }
  env.table.sort = stable_sort
  env._G = env
  return env
end
"##;

impl Sandbox {
    /// A new Lua state with the sandbox prelude run and the instruction hook set.
    pub(crate) fn new(limits: LuaLimits) -> Result<Sandbox, String> {
        let lua = Lua::new_with(
            StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8,
            LuaOptions::default(),
        )
        .map_err(|e| format!("cannot create a Lua state: {e}"))?;
        let new_env: Function = lua
            .load(PRELUDE)
            .set_name("=concord-sandbox")
            .call(())
            .map_err(|e| format!("cannot set up the sandbox: {e}"))?;
        let instructions = Arc::new(AtomicU64::new(0));
        let counter = instructions.clone();
        let max = limits.max_instructions;
        lua.set_hook(HookTriggers::new().every_nth_instruction(HOOK_INTERVAL), move |_, _| {
            let n = counter.fetch_add(u64::from(HOOK_INTERVAL), Ordering::Relaxed) + u64::from(HOOK_INTERVAL);
            if n > max {
                Err(mlua::Error::runtime(INSTRUCTION_LIMIT))
            } else {
                Ok(VmState::Continue)
            }
        });
        Ok(Sandbox {
            new_env,
            instructions,
            limits,
            lua,
        })
    }

    pub(crate) fn lua(&self) -> &Lua {
        &self.lua
    }

    pub(crate) fn limits(&self) -> LuaLimits {
        self.limits
    }

    /// Compile `source` (named `chunk_name`, Lua's `@name` form, in error messages) into a
    /// function that takes the global environment to run in as its argument: its globals are a
    /// local `_ENV`, so one compiled chunk runs in a fresh environment per call. The prefix is on
    /// the script's first line, so error line numbers stay right.
    pub(crate) fn compile(&self, chunk_name: &str, source: &[u8]) -> mlua::Result<Function> {
        let mut wrapped = b"local _ENV = ...; ".to_vec();
        wrapped.extend_from_slice(source);
        self.lua
            .load(wrapped)
            .set_name(chunk_name)
            .set_mode(ChunkMode::Text)
            .into_function()
    }

    /// A fresh global environment for one call (built with no memory limit in force).
    pub(crate) fn fresh_env(&self) -> mlua::Result<Table> {
        let _ = self.lua.set_memory_limit(0);
        self.new_env.call(())
    }

    /// Runs `f` with the instruction counter reset and the memory budget set, then lifts the
    /// limit; maps failures to one-line messages.
    pub(crate) fn limited<T>(&self, f: impl FnOnce() -> mlua::Result<T>) -> Result<T, String> {
        let lua = &self.lua;
        self.instructions.store(0, Ordering::Relaxed);
        let budget = lua.used_memory().saturating_add(self.limits.max_memory_bytes);
        let _ = lua.set_memory_limit(budget);
        let result = f();
        let _ = lua.set_memory_limit(0);
        if self.instructions.load(Ordering::Relaxed) > self.limits.max_instructions {
            let _ = lua.gc_collect();
            return Err(format!(
                "{INSTRUCTION_LIMIT} ({} instructions)",
                self.limits.max_instructions
            ));
        }
        result.map_err(|e| {
            let _ = lua.gc_collect();
            if is_memory_error(&e) {
                self.memory_limit_message()
            } else {
                error_message(&e)
            }
        })
    }

    pub(crate) fn memory_limit_message(&self) -> String {
        format!(
            "script exceeded its memory limit ({} bytes)",
            self.limits.max_memory_bytes
        )
    }
}

impl LuaResolver {
    /// Loads `source` (named `name` in error messages) in the sandbox, runs its top level once and
    /// checks it defines a global function `resolve`.
    pub fn from_source(name: &str, source: &[u8], limits: LuaLimits) -> Result<LuaResolver, String> {
        let sandbox = Sandbox::new(limits).map_err(|e| format!("resolver script {name}: {e}"))?;
        let chunk = sandbox
            .compile(&format!("@{name}"), source)
            .map_err(|e| format!("resolver script {name}: {}", error_message(&e)))?;
        let defined = (|| {
            let env = sandbox
                .fresh_env()
                .map_err(|e| format!("cannot set up the sandbox: {e}"))?;
            sandbox.limited(|| {
                chunk.call::<()>(env.clone())?;
                Ok(matches!(env.raw_get::<Value>("resolve")?, Value::Function(_)))
            })
        })();
        match defined {
            Ok(true) => {}
            Ok(false) => {
                return Err(format!(
                    "resolver script {name} does not define a global function `resolve`"
                ))
            }
            Err(e) => return Err(format!("resolver script {name}: {e}")),
        }
        Ok(LuaResolver {
            name: name.to_string(),
            limits,
            inner: Mutex::new(Inner { chunk, sandbox }),
        })
    }

    /// The script's name (its path, for a loaded file).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn limits(&self) -> LuaLimits {
        self.limits
    }
}

const INSTRUCTION_LIMIT: &str = "script exceeded its instruction limit";

fn is_memory_error(e: &mlua::Error) -> bool {
    match e {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        mlua::Error::WithContext { cause, .. } => is_memory_error(cause),
        _ => false,
    }
}

/// A Lua error as one readable line: the message without its stack traceback.
pub(crate) fn error_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::SyntaxError { message, .. } => format!("syntax error: {message}"),
        mlua::Error::RuntimeError(m) => m.split("\nstack traceback:").next().unwrap_or(m).to_string(),
        mlua::Error::MemoryError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => error_message(cause),
        mlua::Error::WithContext { cause, .. } => error_message(cause),
        other => other.to_string(),
    }
}

impl Resolver for LuaResolver {
    fn resolve(&self, key: &[u8], siblings: &[SiblingView]) -> Result<Option<Bytes>, String> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let sandbox = &inner.sandbox;
        let lua = sandbox.lua();
        let setup = || -> mlua::Result<(Table, mlua::String, Table)> {
            let env = sandbox.fresh_env()?;
            let key = lua.create_string(key)?;
            let list = lua.create_table_with_capacity(siblings.len(), 0)?;
            for (i, s) in siblings.iter().enumerate() {
                let t = lua.create_table_with_capacity(0, 3)?;
                if let Some(v) = &s.value {
                    t.raw_set("value", lua.create_string(v)?)?;
                }
                t.raw_set("region", s.region.as_str())?;
                t.raw_set("hlc", s.hlc.to_string())?;
                list.raw_set(i + 1, t)?;
            }
            Ok((env, key, list))
        };
        let (env, key, list) = setup().map_err(|e| format!("cannot pass the siblings to the script: {e}"))?;
        let max_result = sandbox.limits().max_result_bytes;
        sandbox.limited(|| {
            inner.chunk.call::<()>(env.clone())?;
            let resolve = match env.raw_get::<Value>("resolve")? {
                Value::Function(f) => f,
                _ => return Ok(Err("script does not define a global function `resolve`".to_string())),
            };
            Ok(match resolve.call::<Value>((key, list))? {
                Value::Nil => Ok(None),
                Value::String(s) => {
                    let bytes = s.as_bytes();
                    if bytes.len() > max_result {
                        Err(format!(
                            "resolve returned {} bytes, more than the limit of {max_result}",
                            bytes.len()
                        ))
                    } else {
                        Ok(Some(Bytes::copy_from_slice(&bytes)))
                    }
                }
                other => Err(format!(
                    "resolve must return a string or nil, got {}",
                    other.type_name()
                )),
            })
        })?
    }
}

impl std::fmt::Debug for LuaResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LuaResolver")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .finish()
    }
}

/// C's `%.<precision>g` of a finite or non-finite float (`nan`, `inf`, `-inf`).
pub fn format_g(f: f64, precision: usize) -> String {
    let precision = precision.max(1);
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let sci = format!("{f:.prec$e}", prec = precision - 1);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let p = i32::try_from(precision).unwrap_or(17);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if !(-4..p).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        let decimals = usize::try_from(p - 1 - exp).unwrap_or(0);
        trim(&format!("{f:.decimals$}"))
    }
}

/// The work a library call of a script (`cjson.encode`, `cmsgpack.pack`) may do in Rust, where
/// the instruction hook does not count and the output is not Lua memory yet: at most
/// `ENCODE_MAX_VALUES` values visited (a table referenced twice is visited twice: a few shared
/// tables nest into an exponential walk) and `ENCODE_MAX_BYTES` of output.
pub struct EncodeBudget {
    values: usize,
}

/// See [`EncodeBudget`].
pub const ENCODE_MAX_VALUES: usize = 1_000_000;
/// See [`EncodeBudget`]: the script memory budget's size.
pub const ENCODE_MAX_BYTES: usize = 16 << 20;

impl Default for EncodeBudget {
    fn default() -> Self {
        EncodeBudget {
            values: ENCODE_MAX_VALUES,
        }
    }
}

impl EncodeBudget {
    /// Count one value about to be written to `out`; an error once either bound is passed.
    pub fn spend(&mut self, out: &[u8]) -> Result<(), String> {
        if self.values == 0 {
            return Err(format!("Cannot serialise: more than {ENCODE_MAX_VALUES} values"));
        }
        self.values -= 1;
        if out.len() > ENCODE_MAX_BYTES {
            return Err(format!(
                "Cannot serialise: the encoding passes {ENCODE_MAX_BYTES} bytes"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_core::{Dot, Engine, EngineConfig, Hlc, Output, Policy, PolicySet, Reply, Request, Strategy};
    use concord_core::{SetCondition, SetExpiry};
    use std::collections::{BTreeMap, VecDeque};
    use std::time::{Duration, Instant};

    fn resolver(src: &str) -> LuaResolver {
        LuaResolver::from_source("test.lua", src.as_bytes(), LuaLimits::default()).expect("script loads")
    }

    fn load_err(src: &str) -> String {
        LuaResolver::from_source("test.lua", src.as_bytes(), LuaLimits::default()).expect_err("script must not load")
    }

    fn sib(replica: concord_core::ReplicaId, counter: u64, ms: u64, region: &str, value: Option<&[u8]>) -> SiblingView {
        SiblingView {
            dot: Dot::new(replica, counter),
            hlc: Hlc::new(ms, 0),
            region: region.into(),
            value: value.map(Bytes::copy_from_slice),
        }
    }

    fn three() -> Vec<SiblingView> {
        vec![
            sib(1, 1, 1_000, "us", Some(b"10")),
            sib(2, 1, 1_001, "eu", Some(b"9")),
            sib(3, 1, 1_002, "ap", Some(b"123")),
        ]
    }

    const CONCAT: &str = r#"
        function resolve(key, siblings)
          local parts = {}
          for i, s in ipairs(siblings) do
            parts[#parts + 1] = (s.value or "<del>") .. "@" .. s.region .. "@" .. s.hlc
          end
          return key .. "=" .. table.concat(parts, "+")
        end
    "#;

    #[test]
    fn lua_concat_is_deterministic() {
        let r = resolver(CONCAT);
        let mut sibs = three();
        sibs[1].value = None;
        let want = Bytes::from_static(b"k=10@us@1000.0+<del>@eu@1001.0+123@ap@1002.0");
        for _ in 0..5 {
            assert_eq!(r.resolve(b"k", &sibs), Ok(Some(want.clone())));
        }
        // A second, independent state gives the same answer.
        assert_eq!(resolver(CONCAT).resolve(b"k", &sibs), Ok(Some(want)));
    }

    #[test]
    fn lua_values_are_binary_safe() {
        let r = resolver("function resolve(k, s) return s[1].value .. s[2].value end");
        let sibs = vec![
            sib(1, 1, 1, "us", Some(b"\x00\xff")),
            sib(2, 1, 2, "eu", Some(b"\x80\x00")),
        ];
        assert_eq!(
            r.resolve(b"\x00", &sibs),
            Ok(Some(Bytes::from_static(b"\x00\xff\x80\x00")))
        );
    }

    #[test]
    fn lua_nil_means_deleted() {
        let r = resolver("function resolve(key, siblings) return nil end");
        assert_eq!(r.resolve(b"k", &three()), Ok(None));
    }

    #[test]
    fn lua_longest_value() {
        let r = resolver(
            r#"
            function resolve(key, siblings)
              local best
              for _, s in ipairs(siblings) do
                if s.value and (best == nil or #s.value > #best) then best = s.value end
              end
              return best
            end
        "#,
        );
        assert_eq!(r.resolve(b"k", &three()), Ok(Some(Bytes::from_static(b"123"))));
    }

    #[test]
    fn lua_max_numeric() {
        let r = resolver(
            r#"
            function resolve(key, siblings)
              local best
              for _, s in ipairs(siblings) do
                local n = tonumber(s.value)
                if n and (best == nil or n > best) then best = n end
              end
              return best and tostring(best)
            end
        "#,
        );
        assert_eq!(r.resolve(b"k", &three()), Ok(Some(Bytes::from_static(b"123"))));
    }

    #[test]
    fn lua_infinite_loop_hits_the_instruction_limit_and_the_resolver_recovers() {
        let r = resolver(
            r#"
            function resolve(key, siblings)
              if key == "loop" then while true do end end
              return "ok"
            end
        "#,
        );
        let started = Instant::now();
        let err = r.resolve(b"loop", &three()).unwrap_err();
        assert!(err.contains("instruction limit"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        for _ in 0..3 {
            assert_eq!(r.resolve(b"k", &three()), Ok(Some(Bytes::from_static(b"ok"))));
            assert!(r.resolve(b"loop", &three()).is_err());
        }
    }

    #[test]
    fn lua_forbidden_functions_fail() {
        for (body, needle) in [
            (r#"os.execute("true")"#, "global 'os'"),
            (r#"io.open("/etc/passwd")"#, "global 'io'"),
            (r#"require("x")"#, "global 'require'"),
            ("math.random()", "field 'random'"),
            ("math.randomseed(1)", "field 'randomseed'"),
            (r#"load("return 1")"#, "global 'load'"),
            (r#"dofile("/etc/passwd")"#, "global 'dofile'"),
            ("collectgarbage()", "global 'collectgarbage'"),
            ("pcall(error)", "global 'pcall'"),
            ("debug.getinfo(1)", "global 'debug'"),
            ("package.loaded.x = 1", "global 'package'"),
            ("string.dump(resolve)", "field 'dump'"),
            (r#"getmetatable("").__index.upper = nil"#, "index a boolean"),
            (r#"string.format("%p", {})"#, "%p"),
            ("setmetatable({}, { __gc = print })", "__gc"),
        ] {
            let r = resolver(&format!("function resolve(key, siblings) {body}; return 'x' end"));
            if body.starts_with("os.") {
                assert_eq!(
                    r.resolve(b"k", &three()),
                    Err("test.lua:1: attempt to index a nil value (global 'os')".to_string())
                );
            }
            let err = r.resolve(b"k", &three()).expect_err(body);
            assert!(err.contains(needle), "{body}: {err}");
            assert!(!err.contains("traceback"), "{body}: {err}");
            // At the top level, the same call fails the load.
            let err = load_err(&format!("{body}\nfunction resolve() return 'x' end"));
            assert!(err.contains(needle), "{body} at load: {err}");
        }
    }

    #[test]
    fn lua_memory_bomb_fails() {
        let r = resolver(
            r#"
            function resolve(key, siblings)
              if key == "rep" then return string.rep("x", 1e9) end
              local t = {}
              for i = 1, 1e9 do t[i] = string.rep("y", 64) .. i end
              return "unreachable"
            end
        "#,
        );
        let err = r.resolve(b"rep", &three()).unwrap_err();
        assert!(err.contains("memory limit"), "{err}");
        let err = r.resolve(b"table", &three()).unwrap_err();
        assert!(
            err.contains("memory limit") || err.contains("instruction limit"),
            "{err}"
        );
        // Inputs do not count against the script's budget.
        let big = vec![b'v'; 12 << 20];
        let r = resolver("function resolve(k, s) return s[1].value end");
        let sibs = vec![sib(1, 1, 1, "us", Some(&big)), sib(2, 1, 2, "eu", Some(&big))];
        assert_eq!(r.resolve(b"k", &sibs).map(|v| v.map(|v| v.len())), Ok(Some(12 << 20)));
    }

    #[test]
    fn lua_result_size_is_bounded() {
        let limits = LuaLimits {
            max_result_bytes: 100,
            ..LuaLimits::default()
        };
        let r =
            LuaResolver::from_source("t.lua", b"function resolve() return string.rep('x', 101) end", limits).unwrap();
        let err = r.resolve(b"k", &three()).unwrap_err();
        assert!(err.contains("more than the limit"), "{err}");
    }

    #[test]
    fn lua_load_errors() {
        let err = load_err("x = 1");
        assert!(err.contains("does not define a global function `resolve`"), "{err}");
        let err = load_err("local function resolve() return 'x' end");
        assert!(err.contains("does not define a global function `resolve`"), "{err}");
        let err = load_err("resolve = 'not a function'");
        assert!(err.contains("does not define a global function `resolve`"), "{err}");
        let err = load_err("function resolve(key, siblings)\n  return (\nend");
        assert!(err.contains("syntax error") && err.contains("test.lua:3"), "{err}");
        let err = load_err("while true do end");
        assert!(err.contains("instruction limit"), "{err}");
        let err = load_resolver(Path::new("/nonexistent/resolver.lua")).unwrap_err();
        assert!(
            err.contains("cannot read resolver script /nonexistent/resolver.lua"),
            "{err}"
        );
    }

    #[test]
    fn lua_load_resolver_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.lua");
        std::fs::write(&path, CONCAT).unwrap();
        let r = load_resolver(&path).unwrap();
        assert_eq!(r.name(), path.display().to_string());
        assert!(r.resolve(b"k", &three()).is_ok());
        std::fs::write(&path, "function resolve() error('boom') end").unwrap();
        let err = load_resolver(&path).unwrap().resolve(b"k", &three()).unwrap_err();
        assert!(err.contains("r.lua:1: boom"), "{err}");
    }

    #[test]
    fn lua_non_string_return_fails() {
        for (ret, ty) in [
            ("42", "integer"),
            ("{}", "table"),
            ("true", "boolean"),
            ("print", "function"),
        ] {
            let r = resolver(&format!("function resolve() return {ret} end"));
            assert_eq!(
                r.resolve(b"k", &three()),
                Err(format!("resolve must return a string or nil, got {ty}"))
            );
        }
    }

    #[test]
    fn lua_no_state_survives_between_calls() {
        let r = resolver(
            r#"
            calls = 0
            local n = 0
            function resolve(key, siblings)
              calls = calls + 1
              n = n + 1
              string.upper = nil
              return calls .. ":" .. n .. ":" .. type(string.upper)
            end
        "#,
        );
        for _ in 0..3 {
            assert_eq!(r.resolve(b"k", &three()), Ok(Some(Bytes::from_static(b"1:1:nil"))));
        }
    }

    #[test]
    fn lua_iteration_and_sorting_are_deterministic() {
        let r = resolver(
            r#"
            function resolve(key, siblings)
              local set = {}
              for _, s in ipairs(siblings) do set[s.value] = true end
              set[3] = true; set[1.5] = true; set[true] = true; set[false] = true
              local out = {}
              for k in pairs(set) do out[#out + 1] = tostring(k) end
              local recs = { {k = 2, v = "a"}, {k = 1, v = "b"}, {k = 2, v = "c"}, {k = 1, v = "d"} }
              table.sort(recs, function(a, b) return a.k < b.k end)
              for _, rec in ipairs(recs) do out[#out + 1] = rec.v end
              out[#out + 1] = tostring({}) .. string.format("%s", print)
              return table.concat(out, ",")
            end
        "#,
        );
        let sibs = vec![
            sib(1, 1, 1, "us", Some(b"zeta")),
            sib(2, 1, 2, "eu", Some(b"alpha")),
            sib(3, 1, 3, "ap", Some(b"mid")),
        ];
        assert_eq!(
            r.resolve(b"k", &sibs),
            Ok(Some(Bytes::from_static(
                b"1.5,3,alpha,mid,zeta,false,true,b,d,a,c,tablefunction"
            )))
        );
    }

    fn set(key: &str, value: &str) -> Request {
        Request::Set {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            condition: SetCondition::Always,
            expiry: SetExpiry::Clear,
            get: false,
        }
    }

    #[test]
    fn lua_script_policy_resolves_identically_and_writes_back_once() {
        let regions: BTreeMap<concord_core::ReplicaId, String> = [(1, "us"), (2, "eu"), (3, "ap")]
            .into_iter()
            .map(|(r, n)| (r, n.to_string()))
            .collect();
        let script = r#"
            function resolve(key, siblings)
              local parts = {}
              for _, s in ipairs(siblings) do parts[#parts + 1] = s.value or "-" end
              return table.concat(parts, "+")
            end
        "#;
        let mut engines: Vec<Engine> = (1..=3)
            .map(|id| {
                let mut cfg = EngineConfig::new(id, regions.clone());
                let rule = Policy {
                    pattern: "c:*".into(),
                    strings: Strategy::Script("x".into()),
                    ..Policy::catch_all()
                };
                cfg.policies = PolicySet::new(vec![rule], vec![], 16);
                let mut e = Engine::new(cfg);
                e.register_resolver("x", Arc::new(resolver(script)));
                e
            })
            .collect();
        let mut now = 1_000_000;
        let mut queue: VecDeque<(usize, concord_core::Op)> = VecDeque::new();
        let mut conflicts = Vec::new();
        let mut absorb = |from: usize, out: Output, queue: &mut VecDeque<_>| {
            conflicts.extend(out.conflicts);
            for op in out.local_ops {
                for to in (0..3).filter(|&to| to != from) {
                    queue.push_back((to, op.clone()));
                }
            }
        };
        for (i, v) in ["a", "b", "c"].into_iter().enumerate() {
            now += 1;
            let mut out = Output::default();
            engines[i].execute(set("c:k", v), now, &mut out).unwrap();
            absorb(i, out, &mut queue);
        }
        for _round in 0..10 {
            while let Some((to, op)) = queue.pop_front() {
                now += 1;
                let mut out = Output::default();
                engines[to].receive(op, now, &mut out);
                absorb(to, out, &mut queue);
            }
            let vectors: Vec<_> = engines.iter().map(|e| (e.replica(), e.applied().clone())).collect();
            for (i, e) in engines.iter_mut().enumerate() {
                for (r, vv) in &vectors {
                    e.observe_peer(*r, vv);
                }
                let mut out = Output::default();
                e.tick(now, &mut out);
                absorb(i, out, &mut queue);
            }
            if queue.is_empty() {
                break;
            }
        }
        assert!(queue.is_empty(), "ops still in flight");
        for (i, e) in engines.iter_mut().enumerate() {
            let mut out = Output::default();
            let got = e
                .execute(Request::Get(Bytes::from_static(b"c:k")), now, &mut out)
                .unwrap();
            assert_eq!(got, Reply::Bulk(Bytes::from_static(b"a+b+c")), "replica {i}");
            let view = e.describe(b"c:k", now);
            assert_eq!(
                view.siblings.len(),
                1,
                "replica {i}: the write-back collapses the siblings"
            );
            assert_eq!(view.siblings[0].value.as_deref(), Some(&b"a+b+c"[..]));
        }
        assert!(conflicts
            .iter()
            .all(|c| !matches!(c.kind, concord_core::ConflictKind::ScriptError(_))));
    }
}
