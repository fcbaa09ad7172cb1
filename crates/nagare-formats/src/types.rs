//! Value conversion shared by the parsers (`Parser#convert_values`): `types`,
//! `null_value_pattern` and `null_empty_string`.

use fancy_regex::Regex;
use rmpv::Value;

use crate::error::ConfigError;
use crate::json::to_s;
use crate::params::Params;
use crate::time::{TimeParser, TimeType, Zone};

#[derive(Debug, Clone)]
enum Conv {
    String,
    Integer,
    Float,
    Bool,
    Time(Box<TimeParser>),
    Array(String),
}

/// The configured conversions; empty when none of the params is given.
#[derive(Debug, Clone, Default)]
pub(crate) struct Converters {
    types: Vec<(String, Conv)>,
    null_re: Option<Regex>,
    null_empty: bool,
}

impl Converters {
    pub(crate) fn from_params(
        plugin: &str,
        p: &Params,
        zone: Zone,
    ) -> Result<Converters, ConfigError> {
        let mut types = Vec::new();
        for (field, def) in p.hash(plugin, "types")?.unwrap_or_default() {
            let (ty, option) = match def.split_once(':') {
                Some((t, o)) => (t, Some(o)),
                None => (def.as_str(), None),
            };
            let conv = match ty {
                "string" => Conv::String,
                "integer" => Conv::Integer,
                "float" => Conv::Float,
                "bool" => Conv::Bool,
                "array" => Conv::Array(option.unwrap_or(",").to_string()),
                "time" => {
                    let mut tz = zone.clone();
                    let mut format = option;
                    if let Some(o) = option {
                        if let Some((z, f)) = o.split_once(':') {
                            if let Some(parsed) = Zone::parse(z) {
                                tz = parsed;
                                format = Some(f);
                            }
                        }
                    }
                    let (tt, fmt) = match format.and_then(TimeType::parse) {
                        Some(tt) => (tt, None),
                        None => (TimeType::String, format),
                    };
                    let tp = TimeParser::new(tt, fmt, &[], tz)
                        .map_err(|e| ConfigError::invalid(plugin, "types", &def, e))?;
                    Conv::Time(Box::new(tp))
                }
                other => {
                    return Err(ConfigError::invalid(
                        plugin,
                        "types",
                        &def,
                        format!("unknown value conversion for key:'{field}', type:'{other}'"),
                    ));
                }
            };
            types.push((field, conv));
        }
        let null_re = match p.get("null_value_pattern") {
            Some(pat) => Some(Regex::new(pat).map_err(|e| {
                ConfigError::invalid(plugin, "null_value_pattern", pat, e.to_string())
            })?),
            None => None,
        };
        Ok(Converters {
            types,
            null_re,
            null_empty: p.bool_or(plugin, "null_empty_string", false)?,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.types.is_empty() && self.null_re.is_none() && !self.null_empty
    }

    /// Applies the conversions to a record's entries in place.
    pub(crate) fn apply(&self, record: &mut [(Value, Value)]) {
        if self.is_empty() {
            return;
        }
        for (k, v) in record.iter_mut() {
            if v.is_nil() {
                continue;
            }
            if let Some(s) = string_of(v) {
                let nul = (self.null_empty && s.is_empty())
                    || self
                        .null_re
                        .as_ref()
                        .is_some_and(|re| re.is_match(&s).unwrap_or(false));
                if nul {
                    *v = Value::Nil;
                    continue;
                }
            }
            let Some(key) = k.as_str() else { continue };
            if let Some((_, conv)) = self.types.iter().find(|(f, _)| f == key) {
                *v = convert(conv, v);
            }
        }
    }
}

fn string_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Value::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

fn convert(conv: &Conv, v: &Value) -> Value {
    match conv {
        Conv::String => Value::from(to_s(v)),
        Conv::Integer => match v {
            Value::Integer(_) => v.clone(),
            Value::F32(f) => Value::from(f64::from(*f).trunc() as i64),
            Value::F64(f) => Value::from(f.trunc() as i64),
            other => Value::from(ruby_to_i(&to_s(other))),
        },
        Conv::Float => match v {
            Value::F64(_) => v.clone(),
            Value::F32(f) => Value::F64(f64::from(*f)),
            Value::Integer(i) => Value::F64(i.as_f64().unwrap_or(0.0)),
            other => Value::F64(ruby_to_f(&to_s(other))),
        },
        Conv::Bool => {
            let s = to_s(v).to_lowercase();
            Value::Boolean(matches!(s.as_str(), "true" | "yes" | "1"))
        }
        Conv::Time(tp) => match tp.parse_value(v) {
            Ok(t) => {
                let mut data = Vec::with_capacity(8);
                data.extend_from_slice(&t.sec.to_be_bytes());
                data.extend_from_slice(&t.nsec.to_be_bytes());
                Value::Ext(0, data)
            }
            Err(_) => Value::Nil,
        },
        Conv::Array(delim) => {
            let s = to_s(v);
            let mut parts: Vec<&str> = if delim == " " {
                s.split_whitespace().collect()
            } else {
                s.split(delim.as_str()).collect()
            };
            // Ruby's String#split drops trailing empty fields.
            while parts.last() == Some(&"") {
                parts.pop();
            }
            Value::Array(parts.into_iter().map(Value::from).collect())
        }
    }
}

/// The numeric prefix of `s` after optional whitespace and sign, digits joined by single
/// underscores — Ruby's `String#to_i`-style scanning. Returns the prefix text.
fn numeric_prefix(s: &str, float: bool) -> String {
    let t = s.trim_start();
    let b = t.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    if matches!(b.first(), Some(b'+') | Some(b'-')) {
        out.push(b[0] as char);
        i = 1;
    }
    let digits = |i: &mut usize, out: &mut String| {
        let start = out.len();
        while *i < b.len() {
            if b[*i].is_ascii_digit() {
                out.push(b[*i] as char);
                *i += 1;
            } else if b[*i] == b'_'
                && out.len() > start
                && b.get(*i + 1).is_some_and(|c| c.is_ascii_digit())
            {
                *i += 1;
            } else {
                break;
            }
        }
        out.len() > start
    };
    if !digits(&mut i, &mut out) {
        return String::new();
    }
    if float {
        if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
            out.push('.');
            i += 1;
            digits(&mut i, &mut out);
        }
        if matches!(b.get(i), Some(b'e') | Some(b'E')) {
            let mut j = i + 1;
            let mut exp = String::from("e");
            if matches!(b.get(j), Some(b'+') | Some(b'-')) {
                exp.push(b[j] as char);
                j += 1;
            }
            let mut any = false;
            while j < b.len() && b[j].is_ascii_digit() {
                exp.push(b[j] as char);
                j += 1;
                any = true;
            }
            if any {
                out.push_str(&exp);
            }
        }
    }
    out
}

/// Ruby's `String#to_i` (saturating at the i64 range instead of growing a Bignum).
pub(crate) fn ruby_to_i(s: &str) -> i64 {
    let p = numeric_prefix(s, false);
    if p.is_empty() {
        return 0;
    }
    p.parse::<i64>().unwrap_or(if p.starts_with('-') {
        i64::MIN
    } else {
        i64::MAX
    })
}

/// Ruby's `String#to_f`.
pub(crate) fn ruby_to_f(s: &str) -> f64 {
    numeric_prefix(s, true).parse::<f64>().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruby_numbers() {
        for (s, i) in [
            ("12", 12),
            (" 12abc", 12),
            ("abc", 0),
            ("-3", -3),
            ("1_000", 1000),
            ("1__0", 1),
            ("+7", 7),
            ("", 0),
        ] {
            assert_eq!(ruby_to_i(s), i, "{s:?}");
        }
        for (s, f) in [
            ("1.5", 1.5),
            ("1.5abc", 1.5),
            ("abc", 0.0),
            ("1e3", 1000.0),
            ("2.", 2.0),
            ("-0.25", -0.25),
            ("1e", 1.0),
        ] {
            assert_eq!(ruby_to_f(s), f, "{s:?}");
        }
    }

    fn check(types: &str, input: Value, expect: Value) {
        let p = Params::new().with("types", types);
        let c = Converters::from_params("t", &p, Zone::Utc).unwrap_or_default();
        let mut rec = vec![(Value::from("k"), input.clone())];
        c.apply(&mut rec);
        assert_eq!(rec[0].1, expect, "types {types:?} input {input:?}");
    }

    #[test]
    fn conversions() {
        check("k:integer", Value::from("42"), Value::from(42));
        check("k:integer", Value::from("x"), Value::from(0));
        check("k:integer", Value::F64(2.9), Value::from(2));
        check("k:float", Value::from("0.5"), Value::F64(0.5));
        check("k:float", Value::from(3), Value::F64(3.0));
        check("k:bool", Value::from("yes"), Value::Boolean(true));
        check("k:bool", Value::from("TRUE"), Value::Boolean(true));
        check("k:bool", Value::from("no"), Value::Boolean(false));
        check("k:string", Value::from(5), Value::from("5"));
        check(
            "k:array",
            Value::from("a,b,c,,"),
            Value::Array(vec!["a".into(), "b".into(), "c".into()]),
        );
        check(
            "k:array:|",
            Value::from("a|b"),
            Value::Array(vec!["a".into(), "b".into()]),
        );
        check(
            "k:time",
            Value::from("2013-02-28T12:00:00Z"),
            Value::Ext(0, vec![0x51, 0x2f, 0x46, 0xc0, 0, 0, 0, 0]),
        );
        check(
            "k:time:%d/%b/%Y:%H:%M:%S %z",
            Value::from("28/Feb/2013:12:00:00 +0000"),
            Value::Ext(0, vec![0x51, 0x2f, 0x46, 0xc0, 0, 0, 0, 0]),
        );
        check(
            "k:time:+0900:%Y-%m-%d %H:%M:%S",
            Value::from("2013-02-28 21:00:00"),
            Value::Ext(0, vec![0x51, 0x2f, 0x46, 0xc0, 0, 0, 0, 0]),
        );
        check(
            "k:time:unixtime",
            Value::from("1362052800"),
            Value::Ext(0, vec![0x51, 0x2f, 0x46, 0xc0, 0, 0, 0, 0]),
        );
        check("k:time:%Y", Value::from("bad"), Value::Nil);
        check("k:integer", Value::Nil, Value::Nil);
        check("other:integer", Value::from("42"), Value::from("42"));
    }

    #[test]
    fn nulls_and_errors() {
        let p = Params::new()
            .with("null_value_pattern", "^(-|null)$")
            .with("null_empty_string", "true");
        let c = Converters::from_params("t", &p, Zone::Utc).unwrap_or_default();
        let mut rec = vec![
            (Value::from("a"), Value::from("-")),
            (Value::from("b"), Value::from("")),
            (Value::from("c"), Value::from("x")),
        ];
        c.apply(&mut rec);
        assert_eq!(rec[0].1, Value::Nil);
        assert_eq!(rec[1].1, Value::Nil);
        assert_eq!(rec[2].1, Value::from("x"));
        assert!(
            Converters::from_params("t", &Params::new().with("types", "a:nope"), Zone::Utc)
                .is_err()
        );
        assert!(
            Converters::from_params(
                "t",
                &Params::new().with("null_value_pattern", "("),
                Zone::Utc
            )
            .is_err()
        );
    }
}
