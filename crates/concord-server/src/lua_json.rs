//! `cjson` for scripts: Redis bundles lua-cjson, and real applications' scripts use it (job
//! queues keep JSON in their keys). `cjson.encode(value)`, `cjson.decode(text)` and `cjson.null`,
//! as lua-cjson 2.1 with Redis's settings, except where determinism asks otherwise:
//!
//! - A table whose keys are exactly 1..n is an array; any other non-empty table is an object
//!   (number keys written as strings); an empty table is `{}`. Object members are written in key
//!   order (lua-cjson follows Lua's hash order, which differs between processes): every region
//!   computes the same bytes.
//! - Numbers: integers as integers, floats as C's `%.14g` (lua-cjson's precision); NaN and the
//!   infinities are refused (`Cannot serialise number: must not be NaN or Inf`). Strings are
//!   written byte for byte, escaping `"`, `\`, `/` and control characters, as lua-cjson does.
//! - `decode` takes UTF-8 JSON; numbers without a fraction or exponent that fit 64 bits decode as
//!   integers, others as floats; `null` is `cjson.null` (a light userdata, as in lua-cjson).
//! - Nesting deeper than 128 is refused both ways (lua-cjson allows 1000; 128 is the JSON
//!   parser's bound, and keeps the recursion within a worker thread's stack).
//!
//! Not offered: `cjson.new`, `cjson.encode_*`/`decode_*` settings (Redis scripts rarely change
//! them; the defaults above hold).

use mlua::{LightUserData, Lua, Table, Value};

/// How deeply nested a value may be, encoded or decoded.
const MAX_DEPTH: usize = 128;

/// `cjson.null`: a light userdata holding NULL, as lua-cjson's.
pub fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

/// The `cjson` table scripts get.
pub fn cjson_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "encode",
        lua.create_function(|lua, v: Value| {
            let mut out = Vec::new();
            let mut budget = crate::lua::EncodeBudget::default();
            encode(&v, 0, &mut budget, &mut out).map_err(mlua::Error::runtime)?;
            if out.len() > crate::lua::ENCODE_MAX_BYTES {
                return Err(mlua::Error::runtime(format!(
                    "Cannot serialise: the encoding passes {} bytes",
                    crate::lua::ENCODE_MAX_BYTES
                )));
            }
            lua.create_string(&out)
        })?,
    )?;
    t.raw_set(
        "decode",
        lua.create_function(|lua, text: mlua::String| {
            let text = text.as_bytes();
            let json: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
                if e.to_string().contains("recursion limit") {
                    mlua::Error::runtime(format!(
                        "Found too many nested data structures ({}) at character {}",
                        MAX_DEPTH + 1,
                        e.column().max(1)
                    ))
                } else {
                    mlua::Error::runtime(format!(
                        "Expected value but found invalid token at character {}",
                        e.column().max(1)
                    ))
                }
            })?;
            decode(lua, &json, 0)
        })?,
    )?;
    t.raw_set("null", null())?;
    Ok(t)
}

fn encode(v: &Value, depth: usize, budget: &mut crate::lua::EncodeBudget, out: &mut Vec<u8>) -> Result<(), String> {
    budget.spend(out)?;
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(u) if u.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::Number(f) => {
            if !f.is_finite() {
                return Err("Cannot serialise number: must not be NaN or Inf".into());
            }
            out.extend_from_slice(crate::lua::format_g(*f, 14).as_bytes());
        }
        Value::String(s) => string(&s.as_bytes(), out),
        Value::Table(t) => {
            if depth >= MAX_DEPTH {
                return Err(format!("Cannot serialise, excessive nesting ({})", depth + 1));
            }
            let mut pairs: Vec<(Value, Value)> = t
                .clone()
                .pairs::<Value, Value>()
                .collect::<mlua::Result<_>>()
                .map_err(|e| e.to_string())?;
            let n = pairs.len();
            let is_array = n > 0
                && pairs
                    .iter()
                    .all(|(k, _)| matches!(k, Value::Integer(i) if *i >= 1 && (*i as usize) <= n));
            if is_array {
                pairs.sort_by_key(|(k, _)| match k {
                    Value::Integer(i) => *i,
                    _ => 0,
                });
                out.push(b'[');
                for (i, (_, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    encode(v, depth + 1, budget, out)?;
                }
                out.push(b']');
                return Ok(());
            }
            let mut members = Vec::with_capacity(n);
            for (k, v) in pairs {
                // (name, kind): `1` and `"1"` write the same name; the kind orders them.
                let key = match &k {
                    Value::String(s) => (s.as_bytes().to_vec(), 0),
                    Value::Integer(i) => (i.to_string().into_bytes(), 1),
                    Value::Number(f) => (crate::lua::format_g(*f, 14).into_bytes(), 2),
                    _ => return Err("Cannot serialise table: table key must be a number or string".into()),
                };
                members.push((key, v));
            }
            members.sort_by(|a, b| a.0.cmp(&b.0));
            out.push(b'{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(&k.0, out);
                out.push(b':');
                encode(v, depth + 1, budget, out)?;
            }
            out.push(b'}');
        }
        other => return Err(format!("Cannot serialise {}: type not supported", other.type_name())),
    }
    Ok(())
}

/// A JSON string of `bytes`, escaped as lua-cjson does (bytes above 0x7f pass through).
fn string(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

fn decode(lua: &Lua, v: &serde_json::Value, depth: usize) -> mlua::Result<Value> {
    use serde_json::Value as J;
    if depth >= MAX_DEPTH {
        return Err(mlua::Error::runtime(format!(
            "Found too many nested data structures ({}) at character 1",
            depth + 1
        )));
    }
    Ok(match v {
        J::Null => null(),
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Number(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => Value::String(lua.create_string(s)?),
        J::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, decode(lua, item, depth + 1)?)?;
            }
            Value::Table(t)
        }
        J::Object(members) => {
            let t = lua.create_table_with_capacity(0, members.len())?;
            for (k, item) in members {
                t.raw_set(lua.create_string(k)?, decode(lua, item, depth + 1)?)?;
            }
            Value::Table(t)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lua: &Lua, code: &str) -> String {
        let env = lua.create_table().unwrap();
        env.raw_set("cjson", cjson_table(lua).unwrap()).unwrap();
        env.raw_set("type", lua.globals().get::<Value>("type").unwrap())
            .unwrap();
        env.raw_set("tostring", lua.globals().get::<Value>("tostring").unwrap())
            .unwrap();
        env.raw_set("string", lua.globals().get::<Value>("string").unwrap())
            .unwrap();
        match lua.load(code).set_environment(env).eval::<Value>() {
            Ok(Value::String(s)) => s.to_string_lossy(),
            Ok(other) => format!("{other:?}"),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn encodes_as_lua_cjson_in_key_order() {
        let lua = Lua::new();
        assert_eq!(run(&lua, "return cjson.encode({1, 2, 'three'})"), r#"[1,2,"three"]"#);
        assert_eq!(
            run(&lua, "return cjson.encode({b = 1, a = {x = true}, c = cjson.null})"),
            r#"{"a":{"x":true},"b":1,"c":null}"#
        );
        assert_eq!(run(&lua, "return cjson.encode({})"), "{}");
        assert_eq!(
            run(&lua, "return cjson.encode({[1] = 'a', [3] = 'c'})"),
            r#"{"1":"a","3":"c"}"#
        );
        assert_eq!(run(&lua, "return cjson.encode(0.1)"), "0.1");
        assert_eq!(run(&lua, "return cjson.encode(1/3)"), "0.33333333333333");
        assert_eq!(run(&lua, "return cjson.encode('a/b\"c\\n')"), r#""a\/b\"c\n""#);
        assert!(run(&lua, "return cjson.encode(0/0)").contains("must not be NaN or Inf"));
        assert!(run(&lua, "return cjson.encode({f = type})").contains("type not supported"));
        assert!(run(&lua, "local t = {} t.t = t return cjson.encode(t)").contains("excessive nesting"));
        // Shared tables make an exponential walk; big shared strings a huge output: bounded.
        assert!(run(
            &lua,
            "local t = {1} for i = 1, 100 do t = {t, t} end return cjson.encode(t)"
        )
        .contains("more than"));
        assert!(run(
            &lua,
            "local s = string.rep('x', 1000000) local t = {} for i = 1, 40 do t[i] = s end return cjson.encode(t)"
        )
        .contains("passes"));
    }

    #[test]
    fn decodes_to_tables_integers_and_null() {
        let lua = Lua::new();
        assert_eq!(
            run(
                &lua,
                r#"local t = cjson.decode('{"a":[1,2.5,"x"],"n":null}') return tostring(t.a[1]) .. ' ' .. tostring(t.a[2]) .. ' ' .. t.a[3] .. ' ' .. tostring(t.n == cjson.null)"#
            ),
            "1 2.5 x true"
        );
        assert_eq!(
            run(
                &lua,
                r#"return cjson.encode(cjson.decode('{"z":1,"a":[true,false,null]}'))"#
            ),
            r#"{"a":[true,false,null],"z":1}"#
        );
        assert!(run(&lua, "return cjson.decode('{nope')").contains("Expected value but found invalid token"));
        let deep = format!("return cjson.decode('{}{}')", "[".repeat(200), "]".repeat(200));
        assert!(run(&lua, &deep).contains("too many nested"), "{}", run(&lua, &deep));
    }
}
