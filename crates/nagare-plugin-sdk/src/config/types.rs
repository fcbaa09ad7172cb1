//! Fluentd's parameter value types (`lib/fluent/config/types.rs` semantics), as plain parsers
//! and as serde newtypes / `deserialize_with` helpers.
//!
//! | Fluentd type | parser | newtype | helper |
//! |---|---|---|---|
//! | `size` (`8m`, `1g`, powers of 1024) | [`parse_size`] | [`Size`] | [`size`] |
//! | `time` (`10s`, `5m`, `0.5`) | [`parse_time`] | [`Interval`] | [`time`] |
//! | `bool` (`true/yes/false/no`, empty = true) | [`parse_bool`] | native `bool` | — |
//! | `integer`, `float` | [`parse_integer`], [`parse_float`] | native ints/floats | — |
//! | `array` (`a,b` or JSON) | [`parse_array`] | native `Vec<T>` | — |
//! | `hash` (`k:v,k2:v2` or JSON) | [`parse_hash`] | native maps | — |
//! | `enum` | — | a unit-variant `enum` with `#[serde(rename_all = "snake_case")]` | — |
//! | `regexp` (`/re/i` or bare) | [`parse_regexp`] | [`Regexp`] | — |

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// Parses Fluentd's `size`: `<int>k|m|g|t` (case-insensitive, powers of 1024) or an integer,
/// read exactly as the host reads its own parameters ([`nagare_types::parse_size`] in strict
/// mode): the unit regex is unanchored, as in Fluentd, so `"1.5k"` is 5 KiB; garbage,
/// negatives and overflow are `None`.
pub fn parse_size(s: &str) -> Option<u64> {
    nagare_types::parse_size(s.trim(), true).ok()
}

/// Parses Fluentd's `time`: `<int>s|m|h|d` (unanchored, as in Fluentd: `"10sec"` is 10 s and
/// `"1.5m"` is 5 minutes — the host warns about such values) or a float number of seconds
/// (`"0.1"` = 100 ms); the host's own reading ([`nagare_types::parse_duration`], strict).
pub fn parse_time(s: &str) -> Option<Duration> {
    nagare_types::parse_duration(s.trim(), true).ok()
}

/// Parses Fluentd's `bool`: `true`/`yes` → true, `false`/`no` → false, `""` → true.
/// `TRUE` and `Yes` are not accepted, as in Fluentd.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "true" | "yes" | "" => Some(true),
        "false" | "no" => Some(false),
        _ => None,
    }
}

/// Parses an integer strictly (Ruby's `Integer()`: optional sign, `_` separators, `0x` hex).
pub fn parse_integer(s: &str) -> Option<i128> {
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (radix, digits) = match body.get(..2) {
        Some("0x" | "0X") => (16, &body[2..]),
        _ => (10, body),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let cleaned: String = digits.chars().filter(|c| *c != '_').collect();
    let v = i128::from_str_radix(&cleaned, radix).ok()?;
    Some(if neg { -v } else { v })
}

/// Parses a float strictly (`1`, `1.5`, `-2e3`, `inf` and `nan` are refused as in `Float()`).
pub fn parse_float(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty()
        || t.chars()
            .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
    {
        return None;
    }
    t.replace('_', "").parse().ok()
}

/// An element of an array or hash value: strings unquoted, other JSON values as JSON text.
fn json_scalar_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses Fluentd's `array`: a JSON array, or the shorthand `a, b` split on `\s*,\s*`.
/// `""` is an empty array. Elements come back as strings (JSON non-strings as JSON text).
pub fn parse_array(s: &str) -> Result<Vec<String>, String> {
    let t = s.trim();
    if t.starts_with('[') {
        let v: Vec<serde_json::Value> =
            serde_json::from_str(t).map_err(|e| format!("invalid JSON array: {e}"))?;
        return Ok(v.iter().map(json_scalar_text).collect());
    }
    if t.is_empty() {
        return Ok(Vec::new());
    }
    Ok(t.split(',').map(|p| p.trim().to_owned()).collect())
}

/// Parses Fluentd's `hash`: a JSON object, or `k1:v1,k2:v2` (split on the first `:`).
/// `""` is an empty hash. Order is kept.
pub fn parse_hash(s: &str) -> Result<Vec<(String, String)>, String> {
    let t = s.trim();
    if t.starts_with('{') {
        let v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(t).map_err(|e| format!("invalid JSON object: {e}"))?;
        return Ok(v
            .iter()
            .map(|(k, v)| (k.clone(), json_scalar_text(v)))
            .collect());
    }
    if t.is_empty() {
        return Ok(Vec::new());
    }
    t.split(',')
        .map(|pair| {
            let (k, v) = pair
                .split_once(':')
                .ok_or_else(|| format!("'{}' is not a key:value pair", pair.trim()))?;
            Ok((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

/// Parses Fluentd's `regexp`: `/pattern/flags` (flags `i`, `m`, `x`) or a bare pattern.
/// Ruby's `m` (dot matches newline) maps to Rust's `s`.
pub fn parse_regexp(s: &str) -> Result<regex::Regex, String> {
    let (pattern, flags) = match s
        .strip_prefix('/')
        .and_then(|r| r.rfind('/').map(|i| (r, i)))
    {
        Some((rest, i)) if rest[i + 1..].chars().all(|c| matches!(c, 'i' | 'm' | 'x')) => {
            (&rest[..i], &rest[i + 1..])
        }
        _ => (s, ""),
    };
    let mut b = regex::RegexBuilder::new(pattern);
    b.case_insensitive(flags.contains('i'))
        .dot_matches_new_line(flags.contains('m'))
        .ignore_whitespace(flags.contains('x'));
    b.build().map_err(|e| e.to_string())
}

/// A Fluentd `size` parameter in bytes (`8m` = 8 MiB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub u64);

/// A Fluentd `time` parameter (`10s`, `5m`, `0.5`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval(pub Duration);

/// A Fluentd `regexp` parameter, compiled.
#[derive(Clone, Debug)]
pub struct Regexp(pub regex::Regex);

impl PartialEq for Regexp {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

struct StrVisitor<F> {
    expecting: &'static str,
    parse: F,
}

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> Visitor<'de> for StrVisitor<F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
}

fn expected(what: &str) -> String {
    format!("expected {what}")
}

impl<'de> serde::Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor {
            expecting: "a size like 8m",
            parse: |s: &str| {
                parse_size(s)
                    .map(Size)
                    .ok_or_else(|| expected("a size like 256, 8k, 8m, 1g"))
            },
        })
    }
}

impl<'de> serde::Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor {
            expecting: "a time like 10s",
            parse: |s: &str| {
                parse_time(s)
                    .map(Interval)
                    .ok_or_else(|| expected("a time like 10s, 5m, 1h, 0.5"))
            },
        })
    }
}

impl<'de> serde::Deserialize<'de> for Regexp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor {
            expecting: "a regular expression",
            parse: |s: &str| {
                parse_regexp(s)
                    .map(Regexp)
                    .map_err(|e| format!("expected a regular expression: {e}"))
            },
        })
    }
}

/// `#[serde(deserialize_with = "nagare_plugin_sdk::config::size")]` for a plain `u64` field.
pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    <Size as serde::Deserialize>::deserialize(d).map(|s| s.0)
}

/// `#[serde(deserialize_with = "nagare_plugin_sdk::config::time")]` for a plain `Duration`.
pub fn time<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    <Interval as serde::Deserialize>::deserialize(d).map(|s| s.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: PartialEq + fmt::Debug>(parse: impl Fn(&str) -> T, cases: &[(&str, T)]) {
        for (input, expect) in cases {
            assert_eq!(&parse(input), expect, "input {input:?}");
        }
    }

    // Cases ported from fluentd test/config/test_types.rb (strict variants).
    #[test]
    fn sizes() {
        check(
            parse_size,
            &[
                ("0", Some(0)),
                ("1000", Some(1000)),
                ("1k", Some(1024)),
                ("1K", Some(1024)),
                ("2m", Some(2 << 20)),
                ("3g", Some(3 << 30)),
                ("4T", Some(4 << 40)),
                (" 8m ", Some(8 << 20)),
                ("", None),
                ("k", None),
                ("1x", None),
                ("-1", None),
                ("1.5k", Some(5 << 10)),
                ("99999999999999999999t", None),
            ],
        );
    }

    #[test]
    fn times() {
        check(
            parse_time,
            &[
                ("0", Some(Duration::ZERO)),
                ("10", Some(Duration::from_secs(10))),
                ("10s", Some(Duration::from_secs(10))),
                ("10sec", Some(Duration::from_secs(10))),
                ("2m", Some(Duration::from_secs(120))),
                ("3h", Some(Duration::from_secs(10800))),
                ("1d", Some(Duration::from_secs(86400))),
                ("0.5", Some(Duration::from_millis(500))),
                ("0.1", Some(Duration::from_millis(100))),
                // Fluentd's unanchored /([0-9]+)m/: the digits next to the unit.
                ("1.5m", Some(Duration::from_secs(300))),
                ("0.2s", Some(Duration::from_secs(2))),
                ("", None),
                ("abc", None),
                ("-1s", Some(Duration::from_secs(1))),
                ("-1", None),
                ("10x", None),
            ],
        );
    }

    #[test]
    fn bools() {
        check(
            parse_bool,
            &[
                ("true", Some(true)),
                ("yes", Some(true)),
                ("", Some(true)),
                ("false", Some(false)),
                ("no", Some(false)),
                ("TRUE", None),
                ("Yes", None),
                ("1", None),
            ],
        );
    }

    #[test]
    fn numbers() {
        check(
            parse_integer,
            &[
                ("0", Some(0)),
                ("-12", Some(-12)),
                ("+7", Some(7)),
                ("1_000", Some(1000)),
                ("0x1f", Some(31)),
                ("1x", None),
                ("hoge", None),
                ("", None),
                ("1.0", None),
                ("_1", None),
            ],
        );
        check(
            parse_float,
            &[
                ("1", Some(1.0)),
                ("1.5", Some(1.5)),
                ("-2e3", Some(-2000.0)),
                ("1_0.5", Some(10.5)),
                ("inf", None),
                ("nan", None),
                ("x", None),
                ("", None),
            ],
        );
    }

    #[test]
    fn arrays_and_hashes() {
        let s = |v: &[&str]| Ok(v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>());
        check(
            parse_array,
            &[
                ("a,b", s(&["a", "b"])),
                ("a , b ,c", s(&["a", "b", "c"])),
                ("[\"a\",\"b\"]", s(&["a", "b"])),
                ("[1,true,null]", s(&["1", "true", "null"])),
                ("", s(&[])),
                ("single", s(&["single"])),
            ],
        );
        assert!(parse_array("[1,").is_err());
        let h = |v: &[(&str, &str)]| {
            Ok(v.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect::<Vec<_>>())
        };
        check(
            parse_hash,
            &[
                ("k:v,k2:v2", h(&[("k", "v"), ("k2", "v2")])),
                ("a: 1 , b:http://x", h(&[("a", "1"), ("b", "http://x")])),
                ("{\"k\":\"v\",\"n\":1}", h(&[("k", "v"), ("n", "1")])),
                ("", h(&[])),
            ],
        );
        assert_eq!(
            parse_hash("novalue"),
            Err("'novalue' is not a key:value pair".to_owned())
        );
    }

    #[test]
    fn regexps() {
        let m = |s: &str, text: &str| parse_regexp(s).map(|r| r.is_match(text)).ok();
        assert_eq!(m("/ab+c/", "xabbbc"), Some(true));
        assert_eq!(m("/ABC/i", "abc"), Some(true));
        assert_eq!(m("/a.b/m", "a\nb"), Some(true));
        assert_eq!(m("/a.b/", "a\nb"), Some(false));
        assert_eq!(m("^foo$", "foo"), Some(true));
        assert_eq!(m("/path/to", "/path/to"), Some(true));
        assert_eq!(m("(", "x"), None);
    }
}
