//! `bit` for scripts: Redis bundles LuaBitOp (`bit.band(x, y, …)`, …), which scripts written for
//! Redis's Lua 5.1 use (Lua 5.4's own `&`, `|`, `~` operators work as well). As LuaBitOp: every
//! argument is taken modulo 2^32 and every result is a signed 32-bit integer.
//!
//! `tobit`, `tohex`, `bnot`, `band`, `bor`, `bxor`, `lshift`, `rshift`, `arshift`, `rol`, `ror`,
//! `bswap`.

use mlua::{Lua, MultiValue, Table, Value};

/// A number as LuaBitOp normalises it: its value modulo 2^32, as an `i32`.
fn tobit(v: &Value) -> mlua::Result<i32> {
    let n = match v {
        Value::Integer(i) => *i as i32,
        Value::Number(f) if f.is_finite() => (f.trunc().rem_euclid(4_294_967_296.0)) as u32 as i32,
        Value::String(s) => {
            let s = s.to_str()?;
            let t = s.trim();
            // As Lua's `tonumber`: decimal, or hexadecimal with `0x` (LuaBitOp takes both).
            let (negative, digits) = match t.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, t),
            };
            let hex = digits
                .strip_prefix("0x")
                .or_else(|| digits.strip_prefix("0X"))
                .and_then(|h| u64::from_str_radix(h, 16).ok());
            match (hex, t.parse::<i64>()) {
                (Some(h), _) => (if negative { h.wrapping_neg() } else { h }) as i32,
                (None, Ok(i)) => i as i32,
                (None, Err(_)) => t
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| f.trunc().rem_euclid(4_294_967_296.0) as u32 as i32)
                    .ok_or_else(|| mlua::Error::runtime("bad argument to bit function (number expected)"))?,
            }
        }
        _ => return Err(mlua::Error::runtime("bad argument to bit function (number expected)")),
    };
    Ok(n)
}

fn args(a: &MultiValue) -> mlua::Result<Vec<i32>> {
    if a.is_empty() {
        return Err(mlua::Error::runtime(
            "bad argument #1 to bit function (number expected, got no value)",
        ));
    }
    a.iter().map(tobit).collect()
}

/// The `bit` table scripts get.
pub fn bit_table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let fold = |f: fn(i32, i32) -> i32| {
        move |_: &Lua, a: MultiValue| -> mlua::Result<i64> {
            let v = args(&a)?;
            Ok(i64::from(v[1..].iter().fold(v[0], |acc, x| f(acc, *x))))
        }
    };
    t.raw_set("band", lua.create_function(fold(|a, b| a & b))?)?;
    t.raw_set("bor", lua.create_function(fold(|a, b| a | b))?)?;
    t.raw_set("bxor", lua.create_function(fold(|a, b| a ^ b))?)?;
    let unary =
        |f: fn(i32) -> i32| move |_: &Lua, a: MultiValue| -> mlua::Result<i64> { Ok(i64::from(f(args(&a)?[0]))) };
    t.raw_set("tobit", lua.create_function(unary(|x| x))?)?;
    t.raw_set("bnot", lua.create_function(unary(|x| !x))?)?;
    t.raw_set("bswap", lua.create_function(unary(|x| x.swap_bytes()))?)?;
    let shift = |f: fn(i32, u32) -> i32| {
        move |_: &Lua, a: MultiValue| -> mlua::Result<i64> {
            let v = args(&a)?;
            let n = v.get(1).copied().unwrap_or(0) as u32 & 31;
            Ok(i64::from(f(v[0], n)))
        }
    };
    t.raw_set("lshift", lua.create_function(shift(|x, n| ((x as u32) << n) as i32))?)?;
    t.raw_set("rshift", lua.create_function(shift(|x, n| ((x as u32) >> n) as i32))?)?;
    t.raw_set("arshift", lua.create_function(shift(|x, n| x >> n))?)?;
    t.raw_set(
        "rol",
        lua.create_function(shift(|x, n| (x as u32).rotate_left(n) as i32))?,
    )?;
    t.raw_set(
        "ror",
        lua.create_function(shift(|x, n| (x as u32).rotate_right(n) as i32))?,
    )?;
    t.raw_set(
        "tohex",
        lua.create_function(|_, a: MultiValue| {
            let v = args(&a)?;
            let n = v.get(1).copied().unwrap_or(8);
            let (upper, digits) = (n < 0, n.unsigned_abs().clamp(1, 8) as usize);
            let x = v[0] as u32;
            let masked = if digits >= 8 {
                x
            } else {
                x & ((1u32 << (4 * digits)) - 1)
            };
            Ok(if upper {
                format!("{masked:0digits$X}")
            } else {
                format!("{masked:0digits$x}")
            })
        })?,
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(code: &str) -> String {
        let lua = Lua::new();
        let env = lua.create_table().unwrap();
        env.raw_set("bit", bit_table(&lua).unwrap()).unwrap();
        match lua.load(code).set_environment(env).eval::<Value>() {
            Ok(Value::Integer(i)) => i.to_string(),
            Ok(Value::String(s)) => s.to_string_lossy(),
            Ok(other) => format!("{other:?}"),
            Err(e) => format!("error: {e}"),
        }
    }

    /// LuaBitOp's own examples (bitop.luajit.org/api.html).
    #[test]
    fn as_luabitop() {
        assert_eq!(eval("return bit.tobit(0xffffffff)"), "-1");
        assert_eq!(eval("return bit.tobit(0xffffffff + 1)"), "0");
        assert_eq!(eval("return bit.tohex(1)"), "00000001");
        assert_eq!(eval("return bit.tohex(-1)"), "ffffffff");
        assert_eq!(eval("return bit.tohex(0xffffffff, -4)"), "FFFF");
        assert_eq!(eval("return bit.bnot(0)"), "-1");
        assert_eq!(eval("return bit.bor(1, 2, 4, 8)"), "15");
        assert_eq!(eval("return bit.band(0x12345678, 0xff)"), "120");
        assert_eq!(eval("return bit.bxor(0xa5a5f0f0, 0xaa55ff00)"), "267390960"); // 0x0ff00ff0
        assert_eq!(eval("return bit.lshift(1, 0)"), "1");
        assert_eq!(eval("return bit.lshift(1, 8)"), "256");
        assert_eq!(eval("return bit.lshift(1, 40)"), "256");
        assert_eq!(eval("return bit.rshift(256, 8)"), "1");
        assert_eq!(eval("return bit.rshift(-256, 8)"), "16777215");
        assert_eq!(eval("return bit.arshift(-256, 8)"), "-1");
        assert_eq!(eval("return bit.rol(0x12345678, 12)"), "1164411171");
        assert_eq!(eval("return bit.bswap(0x12345678)"), "2018915346");
        assert!(eval("return bit.band()").contains("number expected"));
        // Strings as Lua's tonumber reads them, hexadecimal included.
        assert_eq!(eval("return bit.band('0xff', '300')"), "44");
        assert_eq!(eval("return bit.tobit('-0x1')"), "-1");
        assert!(eval("return bit.band('nope', 1)").contains("number expected"));
    }
}
