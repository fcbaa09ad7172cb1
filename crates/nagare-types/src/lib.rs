//! Fluentd's parameter types (`lib/fluent/config/types.rb`): the conversions a plugin applies
//! to an attribute string. Shared by the host (`nagare-config`, `nagare-buffer`) and the
//! plugin SDK, so a parameter reads the same whether the host or a plugin reads it.
//!
//! Lenient mode (`strict: false`, Fluentd's default) follows Ruby's `to_i`/`to_f`: `"1x"` is 1,
//! `"hoge"` is 0. Strict mode (`<system> strict_config_value true`) follows `Integer()`/`Float()`
//! and rejects such values. Size and time suffix regexes are unanchored, as in Fluentd, so
//! `"10sec"` is 10 seconds and `"0.2s"` is 2 seconds.

use std::time::Duration;

use serde_json::{Map, Value as Json};

/// A value that does not convert to the requested type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypeError {
    /// The text is not a valid value of the type.
    #[error("invalid {ty} value {value:?}: {reason}")]
    Invalid {
        /// The type name (`size`, `time`, `bool`, ...).
        ty: &'static str,
        /// The offending text.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An `enum` value outside its list (Fluentd's wording).
    #[error("valid options are {} but got {value}", .options.join(","))]
    Enum {
        /// The allowed values.
        options: Vec<String>,
        /// The offending text.
        value: String,
    },
}

fn invalid(ty: &'static str, value: &str, reason: impl Into<String>) -> TypeError {
    TypeError::Invalid {
        ty,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Ruby's `String#to_i`: leading whitespace, a sign, digits with single `_` separators;
/// stops at the first other character; 0 when there are no digits. Saturates on overflow.
pub fn ruby_to_i(s: &str) -> i64 {
    let t = s.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, t.get(1..).unwrap_or_default()),
        Some(b'+') => (false, t.get(1..).unwrap_or_default()),
        _ => (false, t),
    };
    let mut acc: i64 = 0;
    let bytes = digits.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b.is_ascii_digit() {
            let d = i64::from(b - b'0');
            acc = acc.saturating_mul(10).saturating_add(d);
        } else if b == b'_' && i > 0 && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            // separator between digits
        } else {
            break;
        }
        i += 1;
    }
    if neg { -acc } else { acc }
}

/// Ruby's `String#to_f`: the longest leading decimal float (`_` between digits allowed);
/// 0.0 when there is none.
pub fn ruby_to_f(s: &str) -> f64 {
    let t = s.trim_start();
    let b = t.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    if let Some(&c @ (b'-' | b'+')) = b.first() {
        out.push(char::from(c));
        i = 1;
    }
    let digits = |i: &mut usize, out: &mut String| {
        let start = *i;
        while let Some(&c) = b.get(*i) {
            if c.is_ascii_digit() {
                out.push(char::from(c));
            } else if c == b'_' && *i > start && b.get(*i + 1).is_some_and(u8::is_ascii_digit) {
            } else {
                break;
            }
            *i += 1;
        }
        *i > start
    };
    let int = digits(&mut i, &mut out);
    if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        out.push('.');
        i += 1;
        digits(&mut i, &mut out);
    } else if !int {
        return 0.0;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut exp = String::from("e");
        let mut j = i + 1;
        if let Some(&c @ (b'-' | b'+')) = b.get(j) {
            exp.push(char::from(c));
            j += 1;
        }
        if digits(&mut j, &mut exp) {
            out.push_str(&exp);
        }
    }
    out.parse().unwrap_or(0.0)
}

/// Ruby's `Integer(str)`: the whole (trimmed) text must be an integer; `0x`, `0b`, `0o` and
/// leading-`0` octal prefixes, `_` between digits.
pub fn ruby_integer(s: &str) -> Option<i64> {
    let t = s.trim();
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, t.get(1..)?),
        Some(b'+') => (false, t.get(1..)?),
        _ => (false, t),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower.get(1..)?)
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let v = i64::from_str_radix(&digits.replace('_', ""), radix).ok()?;
    Some(if neg { -v } else { v })
}

/// Ruby's `Float(str)`: the whole (trimmed) text must be a decimal float (or an integer
/// literal `Integer()` accepts).
pub fn ruby_float(s: &str) -> Option<f64> {
    let t = s.trim();
    if let Some(i) = ruby_integer(t) {
        #[allow(clippy::cast_precision_loss)]
        return Some(i as f64);
    }
    let b = t.as_bytes();
    let ok_chars = b
        .iter()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-' | b'_'));
    if !ok_chars || t.ends_with('.') || t.contains("._") || t.contains("_.") || t.contains("__") {
        return None;
    }
    t.replace('_', "").parse().ok()
}

/// `size`: `<int>k|m|g|t` (case-insensitive, powers of 1024, matched anywhere in the text),
/// else an integer (`to_i`, or `Integer()` when `strict`). Negative sizes are rejected.
pub fn parse_size(s: &str, strict: bool) -> Result<u64, TypeError> {
    let lower = s.to_ascii_lowercase();
    for (suffix, shift) in [('k', 10u32), ('m', 20), ('g', 30), ('t', 40)] {
        if let Some(n) = digits_before(&lower, suffix) {
            return n
                .checked_mul(1u64 << shift)
                .ok_or_else(|| invalid("size", s, "too large"));
        }
    }
    let n = if strict {
        ruby_integer(s).ok_or_else(|| invalid("size", s, "expected an integer or <int>k/m/g/t"))?
    } else {
        ruby_to_i(s)
    };
    u64::try_from(n).map_err(|_| invalid("size", s, "a size cannot be negative"))
}

/// The first `[0-9]+` immediately followed by `suffix` (Ruby's unanchored `/([0-9]+)k/`).
fn digits_before(s: &str, suffix: char) -> Option<u64> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b.get(i).is_some_and(u8::is_ascii_digit) {
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if b.get(i).map(|&c| char::from(c)) == Some(suffix) {
                // Saturate absurd digit runs instead of failing: they then overflow the multiply.
                return Some(s.get(start..i)?.parse::<u64>().unwrap_or(u64::MAX));
            }
        } else {
            i += 1;
        }
    }
    None
}

/// `time`: `<int>s|m|h|d` (case-sensitive, matched anywhere) as whole seconds, else a float
/// of seconds (`to_f`, or `Float()` when `strict`): `"0.1"` is 100 ms.
pub fn parse_time(s: &str, strict: bool) -> Result<f64, TypeError> {
    for (suffix, mult) in [('s', 1u64), ('m', 60), ('h', 3600), ('d', 86400)] {
        if let Some(n) = digits_before(s, suffix) {
            #[allow(clippy::cast_precision_loss)]
            return Ok(n.saturating_mul(mult) as f64);
        }
    }
    if strict {
        ruby_float(s)
            .ok_or_else(|| invalid("time", s, "expected a number of seconds or <int>s/m/h/d"))
    } else {
        Ok(ruby_to_f(s))
    }
}

/// [`parse_time`] as a [`Duration`]; negative, NaN and overflowing values are errors.
pub fn parse_duration(s: &str, strict: bool) -> Result<Duration, TypeError> {
    let secs = parse_time(s, strict)?;
    Duration::try_from_secs_f64(secs).map_err(|e| invalid("time", s, e.to_string()))
}

/// `bool`: `true`/`yes` → true, `false`/`no` → false, `""` (key without value) → true, a
/// value starting with `#` (a "comment" Fluentd passes through) → true. Anything else is
/// `None` (Ruby nil) in lenient mode and an error in strict mode. Case-sensitive.
pub fn parse_bool(s: &str, strict: bool) -> Result<Option<bool>, TypeError> {
    match s {
        "true" | "yes" | "" => Ok(Some(true)),
        "false" | "no" => Ok(Some(false)),
        _ if s.starts_with('#') => Ok(Some(true)),
        _ if strict => Err(invalid("bool", s, "expected true, false, yes or no")),
        _ => Ok(None),
    }
}

/// `integer`: `to_i` (lenient) or `Integer()` (strict).
pub fn parse_integer(s: &str, strict: bool) -> Result<i64, TypeError> {
    if strict {
        ruby_integer(s).ok_or_else(|| invalid("integer", s, "expected an integer"))
    } else {
        Ok(ruby_to_i(s))
    }
}

/// `float`: `to_f` (lenient) or `Float()` (strict).
pub fn parse_float(s: &str, strict: bool) -> Result<f64, TypeError> {
    if strict {
        ruby_float(s).ok_or_else(|| invalid("float", s, "expected a number"))
    } else {
        Ok(ruby_to_f(s))
    }
}

/// `enum`: the value must be one of `options` ("valid options are a,b but got x").
pub fn parse_enum<'a>(s: &str, options: &[&'a str]) -> Result<&'a str, TypeError> {
    options
        .iter()
        .find(|o| **o == s)
        .copied()
        .ok_or_else(|| TypeError::Enum {
            options: options.iter().map(|o| o.to_string()).collect(),
            value: s.to_string(),
        })
}

/// `array`: JSON when the text starts with `[`, else the shorthand `a,b` split on
/// `\s*,\s*` after trimming (trailing empty items dropped, as Ruby's `split` does).
pub fn parse_array(s: &str) -> Result<Vec<Json>, TypeError> {
    if s.starts_with('[') {
        return match parse_json(s) {
            Ok(Json::Array(a)) => Ok(a),
            Ok(_) => Err(invalid("array", s, "array required")),
            Err(e) => Err(invalid("array", s, e.to_string())),
        };
    }
    Ok(split_commas(s).into_iter().map(Json::String).collect())
}

fn split_commas(s: &str) -> Vec<String> {
    let t = s.trim();
    if t.is_empty() {
        return Vec::new();
    }
    let mut items: Vec<String> = t.split(',').map(|p| p.trim().to_string()).collect();
    while items.last().is_some_and(String::is_empty) {
        items.pop();
    }
    items
}

/// `hash`: JSON when the text starts with `{`, else the shorthand `k1:v1,k2:v2`, each item
/// split on its first `:` (string values).
pub fn parse_hash(s: &str) -> Result<Map<String, Json>, TypeError> {
    if s.starts_with('{') {
        return match parse_json(s) {
            Ok(Json::Object(m)) => Ok(m),
            Ok(_) => Err(invalid("hash", s, "hash required")),
            Err(e) => Err(invalid("hash", s, e.to_string())),
        };
    }
    let mut map = Map::new();
    for item in split_commas(s) {
        let Some((k, v)) = item.split_once(':') else {
            return Err(invalid(
                "hash",
                s,
                format!("item {item:?} has no ':' (write key:value)"),
            ));
        };
        map.insert(k.to_string(), Json::String(v.to_string()));
    }
    Ok(map)
}

/// A `regexp` parameter: `/re/flags` (flags `i` and `m`) or a bare pattern.
#[derive(Debug, Clone)]
pub struct Regexp {
    /// The pattern between the slashes (or the whole bare text).
    pub source: String,
    /// The `i` flag.
    pub ignore_case: bool,
    /// Ruby's `m` flag: `.` matches newlines.
    pub multiline: bool,
    /// The compiled pattern (Rust `regex` syntax, which covers Ruby's common subset).
    pub regex: regex::Regex,
}

/// `regexp`: `/re/` with optional `i`/`m` flags (at most 3 characters after the last `/`,
/// as Fluentd checks), or a bare pattern; compiled with the `regex` crate.
pub fn parse_regexp(s: &str) -> Result<Regexp, TypeError> {
    let (source, flags) = match s.strip_prefix('/') {
        None => (s, ""),
        Some(rest) => {
            let Some(right) = rest.rfind('/') else {
                return Err(invalid("regexp", s, "missing right slash"));
            };
            let flags = rest.get(right + 1..).unwrap_or_default();
            if flags.len() > 2 {
                return Err(invalid("regexp", s, "missing right slash"));
            }
            (rest.get(..right).unwrap_or_default(), flags)
        }
    };
    let ignore_case = flags.contains('i');
    let multiline = flags.contains('m');
    let regex = regex::RegexBuilder::new(source)
        .case_insensitive(ignore_case)
        .dot_matches_new_line(multiline)
        .build()
        .map_err(|e| invalid("regexp", s, e.to_string()))?;
    Ok(Regexp {
        source: source.to_string(),
        ignore_case,
        multiline,
        regex,
    })
}

/// Parses JSON the way Ruby's `JSON.parse` does for configs: `//` and `/* */` comments
/// outside strings are whitespace, and an unknown escape like `\.` is the bare character.
pub fn parse_json(text: &str) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::from_str(&strip_js_comments(text))
}

fn strip_js_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            match c {
                '\\' => match chars.next() {
                    // Ruby's JSON parser drops the backslash of an unknown escape (`\.` is `.`).
                    Some(n)
                        if !matches!(n, '"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't' | 'u') =>
                    {
                        out.push(n)
                    }
                    Some(n) => {
                        out.push('\\');
                        out.push(n);
                    }
                    None => out.push('\\'),
                },
                '"' => {
                    in_string = false;
                    out.push(c);
                }
                _ => out.push(c),
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = '\0';
                for d in chars.by_ref() {
                    if prev == '*' && d == '/' {
                        break;
                    }
                    prev = d;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
