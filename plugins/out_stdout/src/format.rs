//! Rendering records the way Fluentd prints them: compact JSON (Ruby's JSON: floats as
//! `Float#to_s`, non-UTF-8 bytes replaced, binary as strings, non-string keys stringified),
//! Ruby's `Hash#inspect` (3.4 style, `{"k" => "v"}`), and the `stdout` header time
//! `%Y-%m-%d %H:%M:%S.%N %z`.

use std::fmt::Write as _;

use chrono::{DateTime, FixedOffset, Local, TimeZone, Utc};
use nagare_plugin_sdk::EventTime;
use nagare_plugin_sdk::rmpv::Value;

/// Which clock the time header uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    /// The process's local zone (honours `TZ`), Fluentd's default.
    Local,
    /// A fixed offset (`utc true` = +00:00, `timezone +09:00`).
    Fixed(FixedOffset),
}

/// Parses Fluentd's `timezone` forms this plugin supports: `+09:00`, `-0530`, `+09`, `UTC`, `Z`.
pub fn parse_offset(s: &str) -> Option<FixedOffset> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("utc") || s == "Z" {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    if m >= 60 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// Appends `time` as `2026-11-26 12:00:00.123456789 +0000` in `zone`.
pub fn write_time(out: &mut String, time: EventTime, zone: Zone) {
    const FMT: &str = "%Y-%m-%d %H:%M:%S%.9f %z";
    let utc: DateTime<Utc> = Utc
        .timestamp_opt(i64::from(time.sec), time.nsec.min(999_999_999))
        .single()
        .unwrap_or_default();
    let _ = match zone {
        Zone::Local => write!(out, "{}", utc.with_timezone(&Local).format(FMT)),
        Zone::Fixed(off) => write!(out, "{}", utc.with_timezone(&off).format(FMT)),
    };
}

/// Appends Ruby's `Float#to_s` of `f` (`1.0`, `1.5e-05`, `1.0e+20`).
pub fn write_ruby_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    } else if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0.0" } else { "0.0" });
    } else if f.abs() >= 1e16 || f.abs() < 1e-4 {
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        out.push_str(mantissa);
        if !mantissa.contains('.') {
            out.push_str(".0");
        }
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        let _ = write!(out, "e{sign}{digits:0>2}");
    } else {
        let s = format!("{f}");
        out.push_str(&s);
        if !s.contains('.') {
            out.push_str(".0");
        }
    }
}

fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The text of a msgpack string or binary (invalid UTF-8 replaced by U+FFFD).
fn string_of(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(lossy(s.as_bytes())),
        Value::Binary(b) => Some(lossy(b)),
        _ => None,
    }
}

/// Appends compact JSON of `v` the way Fluentd's JSON formatter writes it.
pub fn write_json(out: &mut String, v: &Value) {
    match v {
        Value::Nil => out.push_str("null"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::F32(f) => write_ruby_float(out, f64::from(*f)),
        Value::F64(f) => write_ruby_float(out, *f),
        Value::String(_) | Value::Binary(_) => {
            write_json_str(out, &string_of(v).unwrap_or_default());
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (k, val)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match string_of(k) {
                    Some(s) => write_json_str(out, &s),
                    None => {
                        // Ruby's JSON calls to_s on other keys: 1 → "1", nil → "".
                        let mut key = String::new();
                        if !k.is_nil() {
                            write_json(&mut key, k);
                        }
                        write_json_str(out, &key);
                    }
                }
                out.push(':');
                write_json(out, val);
            }
            out.push('}');
        }
        Value::Ext(ty, data) => write_ext(out, *ty, data, write_json),
    }
}

/// An EventTime inside a record prints as its seconds (Fluent::EventTime#to_json); other
/// extension types as their bytes.
fn write_ext(out: &mut String, ty: i8, data: &[u8], recurse: fn(&mut String, &Value)) {
    match (ty, EventTime::from_ext_bytes(data)) {
        (0, Some(t)) => {
            let _ = write!(out, "{}", t.sec);
        }
        _ => recurse(out, &Value::Binary(data.to_vec())),
    }
}

fn write_ruby_str(out: &mut String, s: &str) {
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\u{1b}' => out.push_str("\\e"),
            '#' if matches!(chars.peek(), Some('{' | '$' | '@')) => out.push_str("\\#"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends Ruby 3.4's `inspect` of `v` (`{"k" => "v", "n" => 1, "x" => nil}`).
pub fn write_ruby_inspect(out: &mut String, v: &Value) {
    match v {
        Value::Nil => out.push_str("nil"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::F32(f) => write_ruby_float(out, f64::from(*f)),
        Value::F64(f) => write_ruby_float(out, *f),
        Value::String(_) | Value::Binary(_) => {
            write_ruby_str(out, &string_of(v).unwrap_or_default());
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_ruby_inspect(out, item);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (k, val)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_ruby_inspect(out, k);
                out.push_str(" => ");
                write_ruby_inspect(out, val);
            }
            out.push('}');
        }
        Value::Ext(ty, data) => write_ext(out, *ty, data, write_ruby_inspect),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(f: impl Fn(&mut String), expect: &str) {
        let mut s = String::new();
        f(&mut s);
        assert_eq!(s, expect);
    }

    #[test]
    fn ruby_floats() {
        for (f, expect) in [
            (1.0, "1.0"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (100.0, "100.0"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1.0e-05"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1000000000000000.0"),
            (1e16, "1.0e+16"),
            (1.2345e20, "1.2345e+20"),
            (1e100, "1.0e+100"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            check(|s| write_ruby_float(s, f), expect);
        }
    }

    fn record() -> Value {
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
    fn json_of_every_type() {
        check(
            |s| write_json(s, &record()),
            concat!(
                r#"{"s":"a\"b\\c\n\u0001é","i":-3,"u":18446744073709551615,"f":2.5,"n":null,"#,
                r##""b":true,"bin":"raw�","a":[1,{}],"7":"int key","t":10,"#{x}":"#@y"}"##
            ),
        );
        check(
            |s| write_json(s, &Value::Map(vec![(Value::Nil, Value::from(1))])),
            r#"{"":1}"#,
        );
    }

    #[test]
    fn ruby_inspect_of_every_type() {
        check(
            |s| write_ruby_inspect(s, &record()),
            concat!(
                r#"{"s" => "a\"b\\c\n\u0001é", "i" => -3, "u" => 18446744073709551615, "f" => 2.5, "#,
                r#""n" => nil, "b" => true, "bin" => "raw�", "a" => [1, {}], 7 => "int key", "#,
                r##""t" => 10, "\#{x}" => "\#@y"}"##
            ),
        );
    }

    #[test]
    fn times_and_offsets() {
        let t = EventTime::new(1_795_694_400, 123_456_789); // 2026-11-26 12:00:00 UTC
        let utc = parse_offset("UTC").map(Zone::Fixed);
        let jst = parse_offset("+09:00").map(Zone::Fixed);
        check(
            |s| write_time(s, t, utc.unwrap_or(Zone::Local)),
            "2026-11-26 12:00:00.123456789 +0000",
        );
        check(
            |s| write_time(s, t, jst.unwrap_or(Zone::Local)),
            "2026-11-26 21:00:00.123456789 +0900",
        );
        check(
            |s| write_time(s, EventTime::new(0, 5), utc.unwrap_or(Zone::Local)),
            "1970-01-01 00:00:00.000000005 +0000",
        );
        for (s, secs) in [
            ("+09:00", Some(32400)),
            ("-0530", Some(-19800)),
            ("+01", Some(3600)),
            ("Z", Some(0)),
            ("9", None),
            ("+9:99", None),
            ("+ab", None),
        ] {
            assert_eq!(parse_offset(s).map(|o| o.local_minus_utc()), secs, "{s}");
        }
    }

    proptest! {
        #[test]
        fn json_strings_parse_back(s in ".{0,40}") {
            let mut out = String::new();
            write_json(&mut out, &Value::from(s.as_str()));
            let back: Result<String, _> = serde_json::from_str(&out);
            prop_assert_eq!(back.ok(), Some(s));
        }

        #[test]
        fn ruby_floats_parse_back(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let mut out = String::new();
            write_ruby_float(&mut out, f);
            let back: f64 = out.replace("e+", "e").parse().unwrap_or(f64::NAN);
            prop_assert_eq!(back, f);
        }
    }
}
