//! `cmsgpack` for scripts: Redis bundles lua-cmsgpack, and job-queue scripts use it to pass
//! structured arguments. `cmsgpack.pack(v1, v2, …)` (the values' encodings, concatenated) and
//! `cmsgpack.unpack(bytes)` (every value it holds, as multiple results), as lua-cmsgpack 0.4 in
//! Redis does, except that map entries are written in key order (lua-cmsgpack follows Lua's
//! hash order, which differs between processes): every region computes the same bytes.
//!
//! - `nil`, booleans; integers in the smallest integer format; a float that a 32-bit float holds
//!   exactly as `float 32`, any other as `float 64`; strings as `fixstr`/`str 8/16/32`.
//! - A table whose keys are exactly 1..n (or an empty table) is an array, any other a map.
//!   Tables nested deeper than 16 are packed as `nil` (lua-cmsgpack's `LUACMSGPACK_MAX_NESTING`).
//! - `unpack` reads every MessagePack type but `ext` (refused): `bin` as strings, unsigned
//!   integers above `i64::MAX` as floats. Truncated input: `Missing bytes in input.`; an unknown
//!   type byte: `Bad data format in input.`
//!
//! Not offered: `unpack_one`, `unpack_limit`.

use mlua::{Lua, MultiValue, Table, Value};

/// lua-cmsgpack's nesting limit for packing.
const MAX_PACK_NESTING: usize = 16;
/// How deeply nested a value `unpack` builds (bounds the recursion).
const MAX_UNPACK_DEPTH: usize = 128;

/// The `cmsgpack` table scripts get.
pub fn cmsgpack_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "pack",
        lua.create_function(|lua, args: MultiValue| {
            if args.is_empty() {
                return Err(mlua::Error::runtime("MessagePack pack needs input."));
            }
            let mut out = Vec::new();
            let mut budget = crate::lua::EncodeBudget::default();
            for v in args.iter() {
                pack(v, 0, &mut budget, &mut out)?;
            }
            budget.spend(&out).map_err(mlua::Error::runtime)?;
            lua.create_string(&out)
        })?,
    )?;
    t.raw_set(
        "unpack",
        lua.create_function(|lua, bytes: mlua::String| {
            let bytes = bytes.as_bytes();
            let mut r = Reader { bytes: &bytes, at: 0 };
            let mut values = Vec::new();
            while r.at < r.bytes.len() {
                values.push(r.value(lua, 0)?);
            }
            Ok(MultiValue::from_vec(values))
        })?,
    )?;
    Ok(t)
}

fn pack(v: &Value, depth: usize, budget: &mut crate::lua::EncodeBudget, out: &mut Vec<u8>) -> mlua::Result<()> {
    budget.spend(out).map_err(mlua::Error::runtime)?;
    match v {
        Value::Nil => out.push(0xc0),
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(n) => int(*n, out),
        Value::Number(f) => {
            // lua-cmsgpack packs an integral double as an integer.
            if f.fract() == 0.0 && *f >= i64::MIN as f64 && *f < i64::MAX as f64 {
                int(*f as i64, out);
            } else if f64::from(*f as f32) == *f || f.is_nan() {
                out.push(0xca);
                out.extend_from_slice(&(*f as f32).to_be_bytes());
            } else {
                out.push(0xcb);
                out.extend_from_slice(&f.to_be_bytes());
            }
        }
        Value::String(s) => {
            let b = s.as_bytes();
            let n = b.len();
            if n < 32 {
                out.push(0xa0 | n as u8);
            } else if n <= 0xff {
                out.extend_from_slice(&[0xd9, n as u8]);
            } else if n <= 0xffff {
                out.push(0xda);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            } else {
                out.push(0xdb);
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
            out.extend_from_slice(&b);
        }
        Value::Table(_) if depth >= MAX_PACK_NESTING => out.push(0xc0),
        Value::Table(t) => {
            let mut pairs: Vec<(Value, Value)> = t.clone().pairs::<Value, Value>().collect::<mlua::Result<_>>()?;
            let n = pairs.len();
            let is_array = pairs
                .iter()
                .all(|(k, _)| matches!(k, Value::Integer(i) if *i >= 1 && (*i as usize) <= n));
            if is_array {
                pairs.sort_by_key(|(k, _)| match k {
                    Value::Integer(i) => *i,
                    _ => 0,
                });
                header(n, 0x90, 0xdc, 0xdd, out);
                for (_, v) in &pairs {
                    pack(v, depth + 1, budget, out)?;
                }
            } else {
                let mut keyed = Vec::with_capacity(n);
                for (k, v) in pairs {
                    let mut key = Vec::new();
                    pack(&k, depth + 1, budget, &mut key)?;
                    keyed.push((key, v));
                }
                keyed.sort_by(|a, b| a.0.cmp(&b.0));
                header(n, 0x80, 0xde, 0xdf, out);
                for (k, v) in keyed {
                    out.extend_from_slice(&k);
                    pack(&v, depth + 1, budget, out)?;
                }
            }
        }
        // Functions, userdata, threads: lua-cmsgpack packs them as nil.
        _ => out.push(0xc0),
    }
    Ok(())
}

/// An array or map header: fix form up to 15 entries, then 16- and 32-bit counts.
fn header(n: usize, fix: u8, c16: u8, c32: u8, out: &mut Vec<u8>) {
    if n < 16 {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(c16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(c32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn int(n: i64, out: &mut Vec<u8>) {
    if n >= 0 {
        let u = n as u64;
        if u < 128 {
            out.push(u as u8);
        } else if u <= 0xff {
            out.extend_from_slice(&[0xcc, u as u8]);
        } else if u <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(u as u16).to_be_bytes());
        } else if u <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(u as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&u.to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= i64::from(i8::MIN) {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= i64::from(i16::MIN) {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= i64::from(i32::MIN) {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> mlua::Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let Some(end) = end else {
            return Err(mlua::Error::runtime("Missing bytes in input."));
        };
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> mlua::Result<u64> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn value(&mut self, lua: &Lua, depth: usize) -> mlua::Result<Value> {
        if depth >= MAX_UNPACK_DEPTH {
            return Err(mlua::Error::runtime("MessagePack data nested too deeply."));
        }
        let t = self.take(1)?[0];
        let unsigned = |u: u64| match i64::try_from(u) {
            Ok(i) => Value::Integer(i),
            Err(_) => Value::Number(u as f64),
        };
        Ok(match t {
            0x00..=0x7f => Value::Integer(i64::from(t)),
            0x80..=0x8f => self.map(lua, usize::from(t & 0x0f), depth)?,
            0x90..=0x9f => self.array(lua, usize::from(t & 0x0f), depth)?,
            0xa0..=0xbf => self.string(lua, usize::from(t & 0x1f))?,
            0xc0 => Value::Nil,
            0xc2 => Value::Boolean(false),
            0xc3 => Value::Boolean(true),
            0xc4 | 0xd9 => {
                let n = self.uint(1)? as usize;
                self.string(lua, n)?
            }
            0xc5 | 0xda => {
                let n = self.uint(2)? as usize;
                self.string(lua, n)?
            }
            0xc6 | 0xdb => {
                let n = self.uint(4)? as usize;
                self.string(lua, n)?
            }
            0xca => Value::Number(f64::from(f32::from_bits(self.uint(4)? as u32))),
            0xcb => Value::Number(f64::from_bits(self.uint(8)?)),
            0xcc => unsigned(self.uint(1)?),
            0xcd => unsigned(self.uint(2)?),
            0xce => unsigned(self.uint(4)?),
            0xcf => unsigned(self.uint(8)?),
            0xd0 => Value::Integer(i64::from(self.uint(1)? as u8 as i8)),
            0xd1 => Value::Integer(i64::from(self.uint(2)? as u16 as i16)),
            0xd2 => Value::Integer(i64::from(self.uint(4)? as u32 as i32)),
            0xd3 => Value::Integer(self.uint(8)? as i64),
            0xdc => {
                let n = self.uint(2)? as usize;
                self.array(lua, n, depth)?
            }
            0xdd => {
                let n = self.uint(4)? as usize;
                self.array(lua, n, depth)?
            }
            0xde => {
                let n = self.uint(2)? as usize;
                self.map(lua, n, depth)?
            }
            0xdf => {
                let n = self.uint(4)? as usize;
                self.map(lua, n, depth)?
            }
            0xe0..=0xff => Value::Integer(i64::from(t as i8)),
            _ => return Err(mlua::Error::runtime("Bad data format in input.")),
        })
    }

    fn string(&mut self, lua: &Lua, n: usize) -> mlua::Result<Value> {
        let s = self.take(n)?;
        Ok(Value::String(lua.create_string(s)?))
    }

    fn array(&mut self, lua: &Lua, n: usize, depth: usize) -> mlua::Result<Value> {
        // Each entry takes at least a byte: a count beyond the input is truncated data.
        if n > self.bytes.len() - self.at {
            return Err(mlua::Error::runtime("Missing bytes in input."));
        }
        let t = lua.create_table_with_capacity(n, 0)?;
        for i in 1..=n {
            t.raw_set(i, self.value(lua, depth + 1)?)?;
        }
        Ok(Value::Table(t))
    }

    fn map(&mut self, lua: &Lua, n: usize, depth: usize) -> mlua::Result<Value> {
        if n.saturating_mul(2) > self.bytes.len() - self.at {
            return Err(mlua::Error::runtime("Missing bytes in input."));
        }
        let t = lua.create_table_with_capacity(0, n)?;
        for _ in 0..n {
            let k = self.value(lua, depth + 1)?;
            let v = self.value(lua, depth + 1)?;
            if k != Value::Nil {
                t.raw_set(k, v)?;
            }
        }
        Ok(Value::Table(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lua: &Lua, code: &str) -> Vec<u8> {
        let env = lua.create_table().unwrap();
        env.raw_set("cmsgpack", cmsgpack_table(lua).unwrap()).unwrap();
        env.raw_set("tostring", lua.globals().get::<Value>("tostring").unwrap())
            .unwrap();
        env.raw_set("select", lua.globals().get::<Value>("select").unwrap())
            .unwrap();
        match lua.load(code).set_environment(env).eval::<Value>() {
            Ok(Value::String(s)) => s.as_bytes().to_vec(),
            Ok(other) => format!("{other:?}").into_bytes(),
            Err(e) => format!("error: {e}").into_bytes(),
        }
    }

    #[test]
    fn packs_as_msgpack_with_map_keys_in_order() {
        let lua = Lua::new();
        // msgpack.dumps({"name": "Joe"}), the redis-py suite's example.
        assert_eq!(
            run(&lua, "return cmsgpack.pack({name = 'Joe'})"),
            b"\x81\xa4name\xa3Joe"
        );
        assert_eq!(
            run(&lua, "return cmsgpack.pack({b = 1, a = 2})"),
            b"\x82\xa1a\x02\xa1b\x01"
        );
        assert_eq!(run(&lua, "return cmsgpack.pack({1, true, nil})"), b"\x92\x01\xc3");
        assert_eq!(run(&lua, "return cmsgpack.pack({})"), b"\x90");
        assert_eq!(
            run(&lua, "return cmsgpack.pack(-1, 300, -200, 1.5, 0.1)"),
            b"\xff\xcd\x01\x2c\xd1\xff\x38\xca\x3f\xc0\x00\x00\xcb\x3f\xb9\x99\x99\x99\x99\x99\x9a"
        );
        assert_eq!(run(&lua, "return cmsgpack.pack(3.0)"), b"\x03");
        // Shared tables make an exponential walk: bounded.
        let wide = "local t = {1} for i = 1, 15 do t = {t, t, t, t, t, t, t, t, t, t} end return cmsgpack.pack(t)";
        assert!(String::from_utf8_lossy(&run(&lua, wide)).contains("more than"));
    }

    #[test]
    fn unpacks_every_value() {
        let lua = Lua::new();
        assert_eq!(
            run(&lua, "return cmsgpack.unpack('\\x81\\xa4name\\xa3Joe').name"),
            b"Joe"
        );
        assert_eq!(
            run(&lua, "local a, b, c = cmsgpack.unpack(cmsgpack.pack(7, 'x', {1, {k = -3}})) return tostring(a) .. b .. tostring(c[2].k)"),
            b"7x-3"
        );
        assert_eq!(
            run(&lua, "return select('#', cmsgpack.unpack('\\x01\\x02\\x03'))"),
            b"Integer(3)"
        );
        assert!(String::from_utf8(run(&lua, "return cmsgpack.unpack('\\xa4ab')"))
            .unwrap()
            .contains("Missing bytes in input."));
        assert!(String::from_utf8(run(&lua, "return cmsgpack.unpack('\\xc1')"))
            .unwrap()
            .contains("Bad data format in input."));
        assert!(
            String::from_utf8(run(&lua, "return cmsgpack.unpack('\\xdd\\xff\\xff\\xff\\xff')"))
                .unwrap()
                .contains("Missing bytes")
        );
    }
}
