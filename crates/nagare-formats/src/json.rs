//! Value renderings the way Fluentd (Ruby) produces them:
//! - [`write_json`]: `record.to_json` / `Yajl.dump` of a msgpack value;
//! - [`json_to_value`]: a parsed JSON document as a msgpack value (what `Oj.load` yields);
//! - [`write_inspect`]: Ruby 3.4's `Hash#inspect` (`{"k" => "v"}`), used by the `hash`
//!   formatter, out_stdout's `output_type hash`, and wherever a hash is turned into text;
//! - [`write_to_s`]: Ruby's `to_s` of a value, used where values are joined into text
//!   (ltsv, csv, tsv, single_value).
//!
//! Choices where Ruby would raise: invalid UTF-8 in strings is replaced by U+FFFD (Ruby's
//! JSON generator raises instead); NaN and infinities become `null` (Ruby raises
//! GeneratorError). EventTime ext values (type 0) render as their seconds, as
//! `Fluent::EventTime#to_json` does; other ext values render as the string Ruby's
//! `MessagePack::ExtensionValue#to_s` would give.

use std::fmt::Write as _;

use rmpv::Value;

/// Appends Ruby's `Float#to_s` of `f` (`1.0`, `0.0001`, `1.0e-05`, `1.0e+16`).
pub fn write_ruby_float(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    // Shortest round-trip digits and decimal exponent.
    let sci = format!("{:e}", f.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let decpt = exp + 1;
    if f < 0.0 {
        out.push('-');
    }
    if !(-3..=16).contains(&decpt) {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        out.push_str(first);
        out.push('.');
        out.push_str(if rest.is_empty() { "0" } else { rest });
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    } else if decpt <= 0 {
        out.push_str("0.");
        for _ in 0..(-decpt) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let d = decpt as usize;
        if digits.len() <= d {
            out.push_str(&digits);
            for _ in digits.len()..d {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..d]);
            out.push('.');
            out.push_str(&digits[d..]);
        }
    }
}

/// Ruby's `Float#to_s` as a new string.
pub fn ruby_float(f: f64) -> String {
    let mut s = String::new();
    write_ruby_float(f, &mut s);
    s
}

fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    // Copy runs that need no escaping in one go; only ASCII bytes are ever escaped, so every
    // cut is on a char boundary.
    let bytes = s.as_bytes();
    // Most strings need no escape at all: one branch-free scan, then one copy.
    if !bytes
        .iter()
        .fold(false, |a, &b| a | (b < 0x20) | (b == b'"') | (b == b'\\'))
    {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(s.get(start..i).unwrap_or_default());
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

fn write_json_bytes(b: &[u8], out: &mut String) {
    match std::str::from_utf8(b) {
        Ok(s) => write_json_str(s, out),
        Err(_) => write_json_str(&String::from_utf8_lossy(b), out),
    }
}

/// If `v` is an EventTime ext (type 0, 8 bytes), its seconds and nanoseconds.
pub fn ext_event_time(v: &Value) -> Option<(u32, u32)> {
    match v {
        Value::Ext(0, data) if data.len() == 8 => {
            let sec = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
            let nsec = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
            Some((sec, nsec))
        }
        _ => None,
    }
}

fn ext_to_s(ty: i8, data: &[u8]) -> String {
    let mut s = format!("#<struct MessagePack::ExtensionValue type={ty}, payload=");
    write_inspect_bytes(data, false, &mut s);
    s.push('>');
    s
}

/// Appends the JSON text of `v` (Ruby `to_json`): map keys become strings via `to_s`.
pub fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::Nil => out.push_str("null"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::F32(f) => write_json_float(f64::from(*f), out),
        Value::F64(f) => write_json_float(*f, out),
        Value::String(s) => write_json_bytes(s.as_bytes(), out),
        Value::Binary(b) => write_json_bytes(b, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(x, out);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match k {
                    Value::String(s) => write_json_bytes(s.as_bytes(), out),
                    Value::Binary(b) => write_json_bytes(b, out),
                    other => write_json_str(&to_s(other), out),
                }
                out.push(':');
                write_json(x, out);
            }
            out.push('}');
        }
        Value::Ext(ty, data) => match ext_event_time(v) {
            Some((sec, _)) => {
                let _ = write!(out, "{sec}");
            }
            None => write_json_str(&ext_to_s(*ty, data), out),
        },
    }
}

/// Appends the JSON text of the msgpack value at the start of `raw` without building an
/// [`Value`] (the hot path of json and out_file formatting); returns the bytes consumed.
/// Gives exactly [`write_json`]'s text: floats and ext values are decoded and rendered by it.
/// `None` when `raw` is malformed or nested deeper than 64 levels (`out` may then hold a
/// partial rendering: callers truncate and fall back to [`write_json`]).
pub fn write_json_raw(raw: &[u8], out: &mut String) -> Option<usize> {
    raw_value(raw, out, 0)
}

fn be(raw: &[u8], at: usize, n: usize) -> Option<u64> {
    let b = raw.get(at..at.checked_add(n)?)?;
    Some(b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
}

fn raw_value(raw: &[u8], out: &mut String, depth: usize) -> Option<usize> {
    if depth > 64 {
        return None;
    }
    let m = *raw.first()?;
    let int = |out: &mut String, v: i128, used: usize| {
        let _ = write!(out, "{v}");
        Some(used)
    };
    match m {
        0x00..=0x7f => int(out, i128::from(m), 1),
        0xe0..=0xff => int(out, i128::from(m as i8), 1),
        0xc0 => {
            out.push_str("null");
            Some(1)
        }
        0xc2 | 0xc3 => {
            out.push_str(if m == 0xc3 { "true" } else { "false" });
            Some(1)
        }
        0xcc..=0xcf => {
            let n = 1usize << (m - 0xcc);
            int(out, i128::from(be(raw, 1, n)?), 1 + n)
        }
        0xd0..=0xd3 => {
            let n = 1usize << (m - 0xd0);
            let u = be(raw, 1, n)?;
            let shift = 64 - 8 * n as u32;
            int(out, i128::from(((u << shift) as i64) >> shift), 1 + n)
        }
        0xa0..=0xbf | 0xd9..=0xdb | 0xc4..=0xc6 => {
            let (hdr, len): (usize, usize) = match m {
                0xa0..=0xbf => (1, usize::from(m & 0x1f)),
                0xd9 | 0xc4 => (2, be(raw, 1, 1)? as usize),
                0xda | 0xc5 => (3, be(raw, 1, 2)? as usize),
                _ => (5, be(raw, 1, 4)? as usize),
            };
            let body = raw.get(hdr..hdr.checked_add(len)?)?;
            write_json_bytes(body, out);
            Some(hdr + len)
        }
        0x90..=0x9f | 0xdc | 0xdd => {
            let (mut at, n) = match m {
                0x90..=0x9f => (1, usize::from(m & 0x0f)),
                0xdc => (3, be(raw, 1, 2)? as usize),
                _ => (5, be(raw, 1, 4)? as usize),
            };
            out.push('[');
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                at += raw_value(raw.get(at..)?, out, depth + 1)?;
            }
            out.push(']');
            Some(at)
        }
        0x80..=0x8f | 0xde | 0xdf => {
            let (mut at, n) = match m {
                0x80..=0x8f => (1, usize::from(m & 0x0f)),
                0xde => (3, be(raw, 1, 2)? as usize),
                _ => (5, be(raw, 1, 4)? as usize),
            };
            out.push('{');
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                let key = raw.get(at..)?;
                match key.first()? {
                    0xa0..=0xbf | 0xd9..=0xdb | 0xc4..=0xc6 => {
                        at += raw_value(key, out, depth + 1)?;
                    }
                    _ => {
                        // Non-string keys: Ruby's `to_s`, through the decoded value.
                        let mut rest = key;
                        let k = rmpv::decode::read_value(&mut rest).ok()?;
                        write_json_str(&to_s(&k), out);
                        at += key.len() - rest.len();
                    }
                }
                out.push(':');
                at += raw_value(raw.get(at..)?, out, depth + 1)?;
            }
            out.push('}');
            Some(at)
        }
        // Floats and ext values (EventTime, …): rare; render through the decoded value.
        _ => {
            let mut rest = raw;
            let v = rmpv::decode::read_value(&mut rest).ok()?;
            write_json(&v, out);
            Some(raw.len() - rest.len())
        }
    }
}

fn write_json_float(f: f64, out: &mut String) {
    if f.is_finite() {
        write_ruby_float(f, out);
    } else {
        out.push_str("null");
    }
}

/// The JSON text of `v` as a new string.
pub fn to_json(v: &Value) -> String {
    let mut s = String::new();
    write_json(v, &mut s);
    s
}

/// Converts a parsed JSON document to a msgpack value (integers stay integers, other
/// numbers become F64, object key order is kept).
pub fn json_to_value(j: serde_json::Value) -> Value {
    match j {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Boolean(b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s),
        serde_json::Value::Array(a) => Value::Array(a.into_iter().map(json_to_value).collect()),
        serde_json::Value::Object(o) => Value::Map(
            o.into_iter()
                .map(|(k, v)| (Value::from(k), json_to_value(v)))
                .collect(),
        ),
    }
}

/// Appends Ruby's `String#inspect` of `b`.
///
/// `utf8` is a msgpack `str` (a UTF-8 Ruby string): printable characters stay, other
/// control characters become `\u0001`, bytes that are not UTF-8 become `\xFF`. Otherwise
/// `b` is a msgpack `bin`, which msgpack-ruby unpacks as an ASCII-8BIT string: every byte
/// outside printable ASCII becomes `\xNN`.
fn write_inspect_bytes(b: &[u8], utf8: bool, out: &mut String) {
    out.push('"');
    let mut i = 0;
    while let Some(rest) = b.get(i..) {
        let Some(&first) = rest.first() else {
            break;
        };
        let decoded = if utf8 {
            utf8_len(rest)
                .and_then(|n| rest.get(..n))
                .and_then(|c| std::str::from_utf8(c).ok())
                .and_then(|c| c.chars().next())
        } else {
            first.is_ascii().then_some(char::from(first))
        };
        let Some(c) = decoded else {
            let _ = write!(out, "\\x{first:02X}");
            i += 1;
            continue;
        };
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            '\u{08}' => out.push_str("\\b"),
            '\u{07}' => out.push_str("\\a"),
            '\u{1b}' => out.push_str("\\e"),
            '#' => {
                if matches!(rest.get(1), Some(b'{') | Some(b'$') | Some(b'@')) {
                    out.push_str("\\#");
                } else {
                    out.push('#');
                }
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                if utf8 {
                    let _ = write!(out, "\\u{:04X}", c as u32);
                } else {
                    let _ = write!(out, "\\x{:02X}", c as u32);
                }
            }
            c => out.push(c),
        }
        i += c.len_utf8();
    }
    out.push('"');
}

fn utf8_len(b: &[u8]) -> Option<usize> {
    let first = *b.first()?;
    let n = match first {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    if b.len() < n {
        return None;
    }
    Some(n)
}

/// Appends Ruby 3.4's `inspect` of `v` (`{"k" => "v", "n" => 1, "x" => nil}`), which is
/// also `Hash#to_s` and `Array#to_s`.
pub fn write_inspect(v: &Value, out: &mut String) {
    match v {
        Value::Nil => out.push_str("nil"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::F32(f) => write_ruby_float(f64::from(*f), out),
        Value::F64(f) => write_ruby_float(*f, out),
        Value::String(s) => write_inspect_bytes(s.as_bytes(), true, out),
        Value::Binary(b) => write_inspect_bytes(b, false, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_inspect(x, out);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_inspect(k, out);
                out.push_str(" => ");
                write_inspect(x, out);
            }
            out.push('}');
        }
        Value::Ext(ty, data) => match ext_event_time(v) {
            Some((sec, _)) => {
                let _ = write!(out, "{sec}");
            }
            None => out.push_str(&ext_to_s(*ty, data)),
        },
    }
}

/// Ruby's `inspect` of `v` as a new string.
pub fn inspect(v: &Value) -> String {
    let mut s = String::new();
    write_inspect(v, &mut s);
    s
}

/// Appends Ruby's `to_s` of `v`: strings as-is (invalid UTF-8 replaced), nil as empty,
/// arrays and hashes as `inspect`.
pub fn write_to_s(v: &Value, out: &mut String) {
    match v {
        Value::Nil => {}
        Value::String(s) => out.push_str(&String::from_utf8_lossy(s.as_bytes())),
        Value::Binary(b) => out.push_str(&String::from_utf8_lossy(b)),
        other => write_inspect(other, out),
    }
}

/// Ruby's `to_s` of `v` as a new string.
pub fn to_s(v: &Value) -> String {
    let mut s = String::new();
    write_to_s(v, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: Vec<(&str, Value)>) -> Value {
        Value::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect(),
        )
    }

    #[test]
    fn ruby_floats() {
        for (f, expect) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (100.0, "100.0"),
            (0.0001, "0.0001"),
            (0.00001, "1.0e-05"),
            (1e15, "1000000000000000.0"),
            (1e16, "1.0e+16"),
            (1.5e300, "1.5e+300"),
            (1.5e-7, "1.5e-07"),
            (1.2345e20, "1.2345e+20"),
            (1e100, "1.0e+100"),
            (-0.0, "-0.0"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (123456.789, "123456.789"),
            (1362020400.5, "1362020400.5"),
            (0.0, "0.0"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(ruby_float(f), expect, "{f}");
        }
        // a msgpack float32 is widened to a double, as msgpack-ruby does
        let mut s = String::new();
        write_json(&Value::F32(0.1), &mut s);
        assert_eq!(s, "0.10000000149011612");
    }

    #[test]
    fn json_rendering() {
        let cases: Vec<(Value, &str)> = vec![
            (
                map(vec![("message", Value::from("awesome"))]),
                r#"{"message":"awesome"}"#,
            ),
            (
                map(vec![
                    ("a", Value::from(1)),
                    ("b", Value::Nil),
                    ("c", Value::from(true)),
                ]),
                r#"{"a":1,"b":null,"c":true}"#,
            ),
            (map(vec![("f", Value::F64(2.0))]), r#"{"f":2.0}"#),
            (
                map(vec![("s", Value::from("q\"\\\n\u{1}é"))]),
                r#"{"s":"q\"\\\n\u0001é"}"#,
            ),
            (
                map(vec![("b", Value::Binary(vec![b'h', b'i']))]),
                r#"{"b":"hi"}"#,
            ),
            (
                map(vec![("x", Value::Binary(vec![0xff]))]),
                "{\"x\":\"\u{fffd}\"}",
            ),
            (
                Value::Map(vec![(Value::from(1), Value::from("one"))]),
                r#"{"1":"one"}"#,
            ),
            (
                map(vec![("t", Value::Ext(0, vec![0, 0, 0, 10, 0, 0, 0, 5]))]),
                r#"{"t":10}"#,
            ),
            (map(vec![("n", Value::F64(f64::INFINITY))]), r#"{"n":null}"#),
            (
                map(vec![(
                    "a",
                    Value::Array(vec![Value::from(1), Value::from("x")]),
                )]),
                r#"{"a":[1,"x"]}"#,
            ),
        ];
        for (v, expect) in cases {
            assert_eq!(to_json(&v), expect);
        }
    }

    #[test]
    fn inspect_rendering() {
        let v = map(vec![
            ("k", Value::from("v")),
            ("n", Value::from(1)),
            ("x", Value::Nil),
            ("f", Value::F64(1.5)),
            ("a", Value::Array(vec![Value::from(1), Value::from(true)])),
            ("h", map(vec![("q", Value::from("a\"b#{c}\t"))])),
            ("bin", Value::Binary(vec![0xff, b'a'])),
        ]);
        assert_eq!(
            inspect(&v),
            r#"{"k" => "v", "n" => 1, "x" => nil, "f" => 1.5, "a" => [1, true], "h" => {"q" => "a\"b\#{c}\t"}, "bin" => "\xFFa"}"#
        );
        assert_eq!(to_s(&Value::Nil), "");
        assert_eq!(to_s(&Value::from("plain")), "plain");
        assert_eq!(to_s(&Value::F64(3.0)), "3.0");
        assert_eq!(
            to_s(&map(vec![("a", Value::from(1)), ("b", Value::from(2))])),
            r#"{"a" => 1, "b" => 2}"#
        );
    }

    /// A record with every msgpack type (ported from out_stdout's renderer tests).
    fn every_type() -> Value {
        Value::Map(vec![
            (Value::from("s"), Value::from("a\"b\\c\n\u{1}é")),
            (Value::from("i"), Value::from(-3)),
            (Value::from("u"), Value::from(u64::MAX)),
            (Value::from("f"), Value::from(2.5)),
            (Value::from("n"), Value::Nil),
            (Value::from("b"), Value::from(true)),
            (Value::from("bin"), Value::Binary(b"raw\xff".to_vec())),
            (
                Value::from("a"),
                Value::Array(vec![Value::from(1), Value::Map(vec![])]),
            ),
            (Value::from(7), Value::from("int key")),
            (
                Value::from("t"),
                Value::Ext(0, vec![0, 0, 0, 10, 0, 0, 0, 1]),
            ),
            (Value::from("#{x}"), Value::from("#@y")),
        ])
    }

    #[test]
    fn json_and_inspect_of_every_type() {
        assert_eq!(
            to_json(&every_type()),
            concat!(
                r#"{"s":"a\"b\\c\n\u0001é","i":-3,"u":18446744073709551615,"f":2.5,"n":null,"#,
                r##""b":true,"bin":"raw�","a":[1,{}],"7":"int key","t":10,"#{x}":"#@y"}"##
            )
        );
        assert_eq!(
            to_json(&Value::Map(vec![(Value::Nil, Value::from(1))])),
            r#"{"":1}"#
        );
        // Ruby 3.4 `Hash#inspect`: a msgpack str is a UTF-8 string (`\u0001`), a bin an
        // ASCII-8BIT one (`\xFF`).
        assert_eq!(
            inspect(&every_type()),
            concat!(
                r#"{"s" => "a\"b\\c\n\u0001é", "i" => -3, "u" => 18446744073709551615, "f" => 2.5, "#,
                r#""n" => nil, "b" => true, "bin" => "raw\xFF", "a" => [1, {}], 7 => "int key", "#,
                r##""t" => 10, "\#{x}" => "\#@y"}"##
            )
        );
    }

    #[test]
    fn inspect_escapes() {
        for (v, expect) in [
            (Value::from("\u{7f}\u{1b}\u{7}"), r#""\u007F\e\a""#),
            (Value::from("日本"), r#""日本""#),
            (Value::Binary("é".as_bytes().to_vec()), r#""\xC3\xA9""#),
            (Value::Binary(vec![1, b'\n']), r#""\x01\n""#),
            (
                // a msgpack str holding invalid UTF-8
                rmpv::decode::read_value(&mut &[0xa2, b'a', 0xc3][..]).unwrap_or(Value::Nil),
                r#""a\xC3""#,
            ),
            (Value::from("#a #{ #$ #@"), r##""#a \#{ \#$ \#@""##),
            (Value::Array(vec![]), "[]"),
            (Value::Map(vec![]), "{}"),
            (
                Value::Map(vec![(Value::Nil, Value::from(false))]),
                "{nil => false}",
            ),
        ] {
            assert_eq!(inspect(&v), expect, "{v:?}");
        }
    }

    #[test]
    fn json_in() {
        let j: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":[1.5,null,"x"],"big":18446744073709551615}"#)
                .unwrap_or_default();
        let v = json_to_value(j);
        assert_eq!(
            to_json(&v),
            r#"{"b":1,"a":[1.5,null,"x"],"big":18446744073709551615}"#
        );
    }
}
