//! Fluentd's `record_accessor` helper: a field reference that is a plain top-level key
//! (`message`), a dot path (`$.a.b`, `$.list[0]`) or a bracket path (`$['a']["b"][1]`).
//!
//! Look-ups follow Ruby's `Hash#dig`: a missing key (or a `nil` value) ends the walk with
//! "nothing"; stepping into a value that is neither a map nor an array is a `TypeError` in
//! Ruby, here [`DigError::NotDiggable`]; an array index counts from the end when negative.
//! [`RecordAccessor::get_raw`] walks raw msgpack without decoding anything but the path;
//! [`RecordAccessor::get`] and [`RecordAccessor::delete`] work on decoded records.
//!
//! Used by filter_grep, filter_record_transformer and filter_parser; out-of-tree plugins
//! get the same reading of `$.a.b` paths from here.

use std::fmt;

use nagare_core::msgpack::{Head, MAX_DEPTH, read_head, value_len};
use nagare_core::record::MapIter;
use rmpv::Value;

/// One step of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A map key.
    Key(String),
    /// An array index (negative counts from the end) or an integer map key.
    Index(i64),
}

/// A bad accessor parameter (Fluentd raises a `ConfigError` with the same wording).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid record accessor '{param}': {reason}")]
pub struct AccessorError {
    /// The parameter as written.
    pub param: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a look-up could not finish.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigError {
    /// Ruby's `TypeError`: the path steps into a scalar, or indexes an array with a key.
    #[error("{0} does not have #dig method")]
    NotDiggable(&'static str),
    /// The raw record is not valid msgpack.
    #[error("malformed record: {0}")]
    Malformed(String),
}

/// A parsed field reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordAccessor {
    param: String,
    steps: Vec<Step>,
}

impl fmt::Display for RecordAccessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.param)
    }
}

fn accessor_error(param: &str, reason: impl Into<String>) -> AccessorError {
    AccessorError {
        param: param.to_owned(),
        reason: reason.into(),
    }
}

/// Ruby's `Integer()` on an index text (decimal, optional sign, `_` separators).
fn parse_index(param: &str, text: &str) -> Result<i64, AccessorError> {
    let t = text.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let valid = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    let value = valid
        .then(|| digits.replace('_', "").parse::<i64>().ok())
        .flatten()
        .ok_or_else(|| accessor_error(param, format!("invalid value for Integer(): {text:?}")))?;
    Ok(if neg { -value } else { value })
}

impl RecordAccessor {
    /// Parses a parameter the way Fluentd's `Accessor.parse_parameter` does.
    pub fn parse(param: &str) -> Result<Self, AccessorError> {
        let steps = if let Some(rest) = param.strip_prefix("$.") {
            Self::parse_dot(param, rest)?
        } else if param.starts_with("$[") {
            Self::parse_bracket(param)?
        } else {
            vec![Step::Key(param.to_owned())]
        };
        Ok(RecordAccessor {
            param: param.to_owned(),
            steps,
        })
    }

    fn parse_dot(param: &str, rest: &str) -> Result<Vec<Step>, AccessorError> {
        let mut steps = Vec::new();
        // Ruby's String#split drops trailing empty fields.
        let mut parts: Vec<&str> = rest.split('.').collect();
        while parts.last().is_some_and(|p| p.is_empty()) {
            parts.pop();
        }
        for part in parts {
            match part.find('[') {
                None => steps.push(Step::Key(part.to_owned())),
                Some(start) => {
                    if start > 0 {
                        steps.push(Step::Key(part[..start].to_owned()));
                    }
                    let mut key = &part[start + 1..];
                    let mut in_bracket = true;
                    while !key.is_empty() {
                        if in_bracket {
                            let Some(i) = key.find(']') else {
                                return Err(accessor_error(param, "'[' found but ']' not found"));
                            };
                            if i == 0 {
                                return Err(accessor_error(param, "missing array index in '[]'"));
                            }
                            steps.push(Step::Index(parse_index(param, &key[..i])?));
                            key = &key[i + 1..];
                            in_bracket = false;
                        } else {
                            let Some(i) = key.find('[') else {
                                return Err(accessor_error(
                                    param,
                                    "found more characters after ']'",
                                ));
                            };
                            key = &key[i + 1..];
                            in_bracket = true;
                        }
                    }
                }
            }
        }
        if steps.is_empty() {
            return Err(accessor_error(param, "empty keys in dot notation"));
        }
        if let Some(Step::Key(k)) = steps
            .iter()
            .find(|s| matches!(s, Step::Key(k) if k.chars().any(char::is_whitespace)))
        {
            return Err(accessor_error(
                param,
                format!(
                    "whitespace character is not allowed in dot notation. Use bracket notation: {k}"
                ),
            ));
        }
        Ok(steps)
    }

    fn parse_bracket(param: &str) -> Result<Vec<Step>, AccessorError> {
        let mut steps = Vec::new();
        let mut rest = &param[1..];
        let mut in_bracket = false;
        while !rest.is_empty() {
            if in_bracket {
                let first = rest.as_bytes().first().copied();
                if matches!(first, Some(b'\'' | b'"')) {
                    let end = rest.find("']").or_else(|| rest.find("\"]"));
                    let Some(i) = end else {
                        return Err(accessor_error(param, "Incomplete bracket"));
                    };
                    if rest.as_bytes().get(i) != first.as_ref() || i == 0 {
                        return Err(accessor_error(param, "Mismatched quotes"));
                    }
                    steps.push(Step::Key(rest[1..i].to_owned()));
                    rest = &rest[i + 2..];
                } else {
                    let Some(i) = rest.find(']') else {
                        return Err(accessor_error(param, "'[' found but ']' not found"));
                    };
                    if i == 0 {
                        return Err(accessor_error(param, "missing array index in '[]'"));
                    }
                    steps.push(Step::Index(parse_index(param, &rest[..i])?));
                    rest = &rest[i + 1..];
                }
                in_bracket = false;
            } else {
                let Some(i) = rest.find('[') else {
                    return Err(accessor_error(param, "found more characters after ']'"));
                };
                rest = &rest[i + 1..];
                in_bracket = true;
            }
        }
        if steps.is_empty() {
            return Err(accessor_error(param, "empty keys in bracket notation"));
        }
        Ok(steps)
    }

    /// The parameter as written.
    pub fn param(&self) -> &str {
        &self.param
    }

    /// The path.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The one step of an accessor that names a top-level field (`message`, `$.message`,
    /// `$[0]`); `None` for longer paths.
    pub fn top_step(&self) -> Option<&Step> {
        match self.steps.as_slice() {
            [step] => Some(step),
            _ => None,
        }
    }

    /// Looks the path up in a decoded record. `Ok(None)` is Ruby's `nil` (missing or nil).
    pub fn get<'a>(&self, record: &'a Value) -> Result<Option<&'a Value>, DigError> {
        let mut cur = record;
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 && !matches!(cur, Value::Map(_) | Value::Array(_)) {
                return Err(DigError::NotDiggable(value_type(cur)));
            }
            let next = match (cur, step) {
                (Value::Map(m), Step::Key(k)) => m
                    .iter()
                    .find(|(mk, _)| key_bytes(mk) == Some(k.as_bytes()))
                    .map(|(_, v)| v),
                (Value::Map(m), Step::Index(n)) => m
                    .iter()
                    .find(|(mk, _)| mk.as_i64() == Some(*n))
                    .map(|(_, v)| v),
                (Value::Array(a), Step::Index(n)) => {
                    resolve_index(*n, a.len()).and_then(|i| a.get(i))
                }
                (Value::Array(_), Step::Key(_)) => {
                    return Err(DigError::NotDiggable("Array with a String key"));
                }
                (other, _) => return Err(DigError::NotDiggable(value_type(other))),
            };
            match next {
                None | Some(Value::Nil) => return Ok(None),
                Some(v) => cur = v,
            }
        }
        Ok(Some(cur))
    }

    /// Looks the path up in a raw msgpack record and returns the raw value bytes.
    #[inline]
    pub fn get_raw<'a>(&self, raw: &'a [u8]) -> Result<Option<&'a [u8]>, DigError> {
        // A top-level key in a map (nearly every accessor, nearly every record): one loop.
        if let [step] = self.steps.as_slice()
            && let Some(found) = fast_map_get(raw, step)
        {
            return Ok(found.filter(|v| v.first() != Some(&0xc0)));
        }
        self.get_raw_general(raw)
    }

    /// [`Self::get_raw`] step by step, for paths and whatever the one-loop look-up leaves.
    fn get_raw_general<'a>(&self, raw: &'a [u8]) -> Result<Option<&'a [u8]>, DigError> {
        let mut cur = raw;
        for (i, step) in self.steps.iter().enumerate() {
            let (head, _) = read_head(cur).map_err(|e| DigError::Malformed(e.to_string()))?;
            if i > 0 && !matches!(head, Head::Map(_) | Head::Array(_)) {
                return Err(DigError::NotDiggable(head_type(&head)));
            }
            let next = match (head, step) {
                (Head::Map(_), step) => raw_map_get(cur, step)?,
                (Head::Array(n), Step::Index(idx)) => match resolve_index(*idx, n as usize) {
                    Some(at) => Some(raw_array_get(cur, at)?),
                    None => None,
                },
                (Head::Array(_), Step::Key(_)) => {
                    return Err(DigError::NotDiggable("Array with a String key"));
                }
                (other, _) => return Err(DigError::NotDiggable(head_type(&other))),
            };
            match next {
                None => return Ok(None),
                Some(v) if v.first() == Some(&0xc0) => return Ok(None),
                Some(v) => cur = v,
            }
        }
        Ok(Some(cur))
    }

    /// Removes the field from a decoded record (Fluentd's `Accessor#delete`); returns it.
    /// Missing paths and paths through scalars remove nothing.
    pub fn delete(&self, record: &mut Value) -> Option<Value> {
        let (last, parents) = self.steps.split_last()?;
        let mut cur = record;
        for step in parents {
            cur = match (cur, step) {
                (Value::Map(m), Step::Key(k)) => m
                    .iter_mut()
                    .find(|(mk, _)| key_bytes(mk) == Some(k.as_bytes()))
                    .map(|(_, v)| v)?,
                (Value::Map(m), Step::Index(n)) => m
                    .iter_mut()
                    .find(|(mk, _)| mk.as_i64() == Some(*n))
                    .map(|(_, v)| v)?,
                (Value::Array(a), Step::Index(n)) => {
                    let i = resolve_index(*n, a.len())?;
                    a.get_mut(i)?
                }
                _ => return None,
            };
        }
        match (cur, last) {
            (Value::Map(m), Step::Key(k)) => {
                let pos = m
                    .iter()
                    .position(|(mk, _)| key_bytes(mk) == Some(k.as_bytes()))?;
                Some(m.remove(pos).1)
            }
            (Value::Map(m), Step::Index(n)) => {
                let pos = m.iter().position(|(mk, _)| mk.as_i64() == Some(*n))?;
                Some(m.remove(pos).1)
            }
            (Value::Array(a), Step::Index(n)) => {
                let i = resolve_index(*n, a.len())?;
                Some(a.remove(i))
            }
            _ => None,
        }
    }
}

/// Encodes a decoded value as msgpack, keeping `str` strings that are not valid UTF-8 as
/// `str` (rmpv's encoder turns them into `bin`, which would change the record's types).
pub fn write_value_lossless(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::String(s) => nagare_core::msgpack::write_str(out, s.as_bytes()),
        Value::Array(a) => {
            nagare_core::msgpack::write_array_header(
                out,
                u32::try_from(a.len()).unwrap_or(u32::MAX),
            );
            for x in a {
                write_value_lossless(out, x);
            }
        }
        Value::Map(m) => {
            nagare_core::msgpack::write_map_header(out, u32::try_from(m.len()).unwrap_or(u32::MAX));
            for (k, x) in m {
                write_value_lossless(out, k);
                write_value_lossless(out, x);
            }
        }
        // Writing into a Vec cannot fail.
        other => {
            let _ = rmpv::encode::write_value(out, other);
        }
    }
}

/// The bytes of a string (or binary) map key.
pub fn key_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::String(s) => Some(s.as_bytes()),
        Value::Binary(b) => Some(b),
        _ => None,
    }
}

fn resolve_index(n: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let i = if n < 0 { len + n } else { n };
    (0..len)
        .contains(&i)
        .then(|| usize::try_from(i).ok())
        .flatten()
}

/// Whether the raw map key `key` (exactly one msgpack value) is the one `step` names, as
/// [`RecordAccessor::get_raw`] compares keys: a `str`/`bin` key with the same bytes, or an
/// integer key equal to the index. A fixstr key is compared by length first.
#[inline]
pub fn key_matches(key: &[u8], step: &Step) -> bool {
    match (key.first(), step) {
        (Some(&b), Step::Key(want)) if b & 0xe0 == 0xa0 => {
            key.len() == want.len() + 1 && key.get(1..) == Some(want.as_bytes())
        }
        _ => key_is(key, step),
    }
}

/// Whether a raw map key is the one `step` names: a `str`/`bin` key with the same bytes, or
/// an integer key equal to the index.
#[inline]
fn key_is(key: &[u8], step: &Step) -> bool {
    match (key.first(), step) {
        // fixstr, the usual key: compare without decoding the head.
        (Some(&b), Step::Key(want)) if b & 0xe0 == 0xa0 => key.get(1..) == Some(want.as_bytes()),
        (_, Step::Key(want)) => {
            matches!(read_head(key), Ok((head, _)) if head.str_or_bin() == Some(want.as_bytes()))
        }
        (_, Step::Index(want)) => {
            matches!(read_head(key), Ok((Head::Int(n), _)) if n == i128::from(*want))
        }
    }
}

/// [`raw_map_get`] on nagare-core's non-allocating skipper: `None` when it cannot answer
/// (malformed bytes, nesting at the limit), and then the general path decides and words the
/// error. Whenever it answers, the general path gives the same answer.
///
/// One tight loop over the pairs: a fixstr key is told apart by its marker byte alone (which
/// holds its length) before any byte comparison, and values are skipped with
/// [`nagare_core::fast::skip`], which sizes strings and integers with arithmetic.
#[inline]
fn fast_map_get<'a>(raw: &'a [u8], step: &Step) -> Option<Option<&'a [u8]>> {
    let be = |at: std::ops::Range<usize>| {
        raw.get(at)
            .map(|b| b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
    };
    let (count, mut pos) = match *raw.first()? {
        b @ 0x80..=0x8f => (usize::from(b & 0x0f), 1),
        0xde => (be(1..3)?, 3),
        0xdf => (be(1..5)?, 5),
        _ => return None,
    };
    // The fixstr marker the wanted key has (0: it has none, being an index or too long).
    let (want, want_marker): (&[u8], u8) = match step {
        Step::Key(k) if k.len() <= 0x1f => (k.as_bytes(), 0xa0 | k.len() as u8),
        Step::Key(k) => (k.as_bytes(), 0),
        Step::Index(_) => (&[], 0),
    };
    for _ in 0..count {
        let b = *raw.get(pos)?;
        // Each key and value is skipped as a value of its own, as the general path does.
        let (key_end, hit) = if b & 0xe0 == 0xa0 {
            let key_end = pos + 1 + usize::from(b & 0x1f);
            // A fixstr key can only be the wanted key when its marker (so its length) is
            // the wanted key's; an index never equals a string key.
            let hit = b == want_marker && raw.get(pos + 1..key_end)? == want;
            (key_end, hit)
        } else {
            let key_end = nagare_core::fast::skip(raw, pos, 0, MAX_DEPTH).ok()?;
            (key_end, key_is(raw.get(pos..key_end)?, step))
        };
        let value_end = nagare_core::fast::skip(raw, key_end, 0, MAX_DEPTH).ok()?;
        if hit {
            return Some(raw.get(key_end..value_end));
        }
        pos = value_end;
    }
    Some(None)
}

fn raw_map_get<'a>(raw: &'a [u8], step: &Step) -> Result<Option<&'a [u8]>, DigError> {
    match fast_map_get(raw, step) {
        Some(found) => Ok(found),
        None => slow_map_get(raw, step),
    }
}

/// The general path of [`raw_map_get`] (nagare-core's streaming skipper, worded errors).
fn slow_map_get<'a>(raw: &'a [u8], step: &Step) -> Result<Option<&'a [u8]>, DigError> {
    let malformed = |e: nagare_core::record::RecordError| DigError::Malformed(e.to_string());
    for pair in MapIter::new(raw).map_err(malformed)? {
        let (k, v) = pair.map_err(malformed)?;
        let hit = match (read_head(k), step) {
            (Ok((head, _)), Step::Key(want)) => head.str_or_bin() == Some(want.as_bytes()),
            (Ok((Head::Int(n), _)), Step::Index(want)) => n == i128::from(*want),
            _ => false,
        };
        if hit {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

fn raw_array_get(raw: &[u8], at: usize) -> Result<&[u8], DigError> {
    let malformed = |e: nagare_core::MsgpackError| DigError::Malformed(e.to_string());
    let (_, hdr) = read_head(raw).map_err(malformed)?;
    let mut rest = raw.get(hdr..).unwrap_or_default();
    for _ in 0..at {
        let n = value_len(rest).map_err(malformed)?;
        rest = rest.get(n..).unwrap_or_default();
    }
    let n = value_len(rest).map_err(malformed)?;
    Ok(rest.get(..n).unwrap_or_default())
}

/// Ruby's class name of a decoded value, for `TypeError` messages.
pub fn value_type(v: &Value) -> &'static str {
    match v {
        Value::Nil => "NilClass",
        Value::Boolean(true) => "TrueClass",
        Value::Boolean(false) => "FalseClass",
        Value::Integer(_) => "Integer",
        Value::F32(_) | Value::F64(_) => "Float",
        Value::String(_) | Value::Binary(_) => "String",
        Value::Array(_) => "Array",
        Value::Map(_) => "Hash",
        Value::Ext(..) => "EventTime",
    }
}

fn head_type(h: &Head<'_>) -> &'static str {
    match h {
        Head::Nil => "NilClass",
        Head::Bool(true) => "TrueClass",
        Head::Bool(false) => "FalseClass",
        Head::Int(_) => "Integer",
        Head::F32(_) | Head::F64(_) => "Float",
        Head::Str(_) | Head::Bin(_) => "String",
        Head::Array(_) => "Array",
        Head::Map(_) => "Hash",
        Head::Ext(..) => "EventTime",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(k: &str) -> Step {
        Step::Key(k.to_owned())
    }

    fn check_parse(param: &str, expect: Result<Vec<Step>, &str>) {
        let got = RecordAccessor::parse(param)
            .map(|a| a.steps)
            .map_err(|e| e.reason);
        assert_eq!(got, expect.map_err(str::to_owned), "{param:?}");
    }

    // Cases ported from fluentd test/plugin_helper/test_record_accessor.rb.
    #[test]
    fn parse_table() {
        check_parse("key1", Ok(vec![s("key1")]));
        check_parse("$.key1", Ok(vec![s("key1")]));
        check_parse("$.key1.key2", Ok(vec![s("key1"), s("key2")]));
        check_parse("$.key1[0]", Ok(vec![s("key1"), Step::Index(0)]));
        check_parse(
            "$.key1[0][-1].key2",
            Ok(vec![s("key1"), Step::Index(0), Step::Index(-1), s("key2")]),
        );
        check_parse("$.[0]", Ok(vec![Step::Index(0)]));
        check_parse("$['key1']", Ok(vec![s("key1")]));
        check_parse("$['key1'][0]", Ok(vec![s("key1"), Step::Index(0)]));
        check_parse("$['key1']['key2']", Ok(vec![s("key1"), s("key2")]));
        check_parse("$[\"key1\"][\"key2\"]", Ok(vec![s("key1"), s("key2")]));
        check_parse("$['key.1']['key 2']", Ok(vec![s("key.1"), s("key 2")]));
        check_parse("$[0]", Ok(vec![Step::Index(0)]));
        check_parse("$.", Err("empty keys in dot notation"));
        check_parse("$.key1[", Ok(vec![s("key1")])); // Fluentd stops at the empty rest
        check_parse("$.key1[0", Err("'[' found but ']' not found"));
        check_parse("$.key1[]", Err("missing array index in '[]'"));
        check_parse("$.key1[0]x", Err("found more characters after ']'"));
        check_parse("$.key1[x]", Err("invalid value for Integer(): \"x\""));
        check_parse(
            "$.key 1",
            Err("whitespace character is not allowed in dot notation. Use bracket notation: key 1"),
        );
        check_parse("$['key1'", Err("Incomplete bracket"));
        check_parse("$['key1\"]", Err("Mismatched quotes"));
        check_parse("$['key1']x", Err("found more characters after ']'"));
        check_parse("$[", Err("empty keys in bracket notation"));
    }

    fn record() -> Value {
        let m = |pairs: Vec<(&str, Value)>| {
            Value::Map(
                pairs
                    .into_iter()
                    .map(|(k, v)| (Value::from(k), v))
                    .collect(),
            )
        };
        m(vec![
            ("key1", Value::from("v1")),
            (
                "nest",
                m(vec![("k", Value::from("nv")), ("nil", Value::Nil)]),
            ),
            (
                "list",
                Value::Array(vec![Value::from(1), m(vec![("a", Value::from("b"))])]),
            ),
            ("key 2", Value::from(2)),
        ])
    }

    fn encode(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = rmpv::encode::write_value(&mut out, v);
        out
    }

    #[test]
    fn get_table() {
        let rec = record();
        let raw = encode(&rec);
        let check = |param: &str, expect: Result<Option<Value>, DigError>| {
            let acc = RecordAccessor::parse(param).unwrap_or_else(|e| panic!("{e}"));
            let got = acc.get(&rec).map(|v| v.cloned());
            assert_eq!(got, expect, "get {param:?}");
            let got_raw = acc
                .get_raw(&raw)
                .map(|v| v.map(|mut b| rmpv::decode::read_value(&mut b).unwrap_or(Value::Nil)));
            assert_eq!(got_raw, expect, "get_raw {param:?}");
        };
        check("key1", Ok(Some(Value::from("v1"))));
        check("missing", Ok(None));
        check("$.nest.k", Ok(Some(Value::from("nv"))));
        check("$['nest']['k']", Ok(Some(Value::from("nv"))));
        check("$.nest.nil", Ok(None));
        check("$.nest.nil.deeper", Ok(None));
        check("$.missing.deeper", Ok(None));
        check("$.list[0]", Ok(Some(Value::from(1))));
        check("$.list[-1].a", Ok(Some(Value::from("b"))));
        check("$.list[5]", Ok(None));
        check("$.list[-3]", Ok(None));
        check("$['key 2']", Ok(Some(Value::from(2))));
        check("$.key1.x", Err(DigError::NotDiggable("String")));
        check(
            "$.list.x",
            Err(DigError::NotDiggable("Array with a String key")),
        );
        check("$.list[0].x", Err(DigError::NotDiggable("Integer")));
    }

    #[test]
    fn delete_table() {
        let check = |param: &str, removed: Option<Value>, left: &[&str]| {
            let mut rec = record();
            let acc = RecordAccessor::parse(param).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(acc.delete(&mut rec), removed, "{param:?}");
            let keys: Vec<String> = match &rec {
                Value::Map(m) => m
                    .iter()
                    .filter_map(|(k, _)| k.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            assert_eq!(keys, left, "{param:?}");
        };
        check("key1", Some(Value::from("v1")), &["nest", "list", "key 2"]);
        check("missing", None, &["key1", "nest", "list", "key 2"]);
        check(
            "$.nest.k",
            Some(Value::from("nv")),
            &["key1", "nest", "list", "key 2"],
        );
        check(
            "$.list[0]",
            Some(Value::from(1)),
            &["key1", "nest", "list", "key 2"],
        );
        check("$.key1.x", None, &["key1", "nest", "list", "key 2"]);
        let mut rec = record();
        let acc = RecordAccessor::parse("$.nest.k").unwrap_or_else(|e| panic!("{e}"));
        acc.delete(&mut rec);
        let nested = RecordAccessor::parse("$.nest").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            nested.get(&rec).ok().flatten(),
            Some(&Value::Map(vec![(Value::from("nil"), Value::Nil)]))
        );
    }

    #[test]
    fn lossless_encoding_keeps_invalid_strings_as_str() {
        let raw: &[u8] = &[
            0x82, 0xa1, b'k', 0xa1, 0xff, 0xa1, b'a', 0x91, 0xc4, 0x01, 0x00,
        ];
        let v = rmpv::decode::read_value(&mut &raw[..]).unwrap_or(Value::Nil);
        let mut out = Vec::new();
        write_value_lossless(&mut out, &v);
        assert_eq!(out, raw);
    }

    /// The fast map look-up answers as the general one whenever it answers, on whole maps
    /// and on every truncation of them.
    #[test]
    fn fast_map_get_agrees_with_the_general_path() {
        let mut deep = vec![0x81, 0xa1, b'd'];
        deep.extend(std::iter::repeat_n(0x91, MAX_DEPTH + 2));
        deep.push(0x01);
        let map16 = vec![
            0xde, 0x00, 0x02, 0xa1, b'x', 0x01, 0xa1, b'k', 0xa2, b'h', b'i',
        ];
        let map32 = [0xdf, 0, 0, 0, 1, 0xc4, 1, b'k', 0xc0];
        let maps: Vec<Vec<u8>> = vec![
            vec![0x80],
            vec![0x82, 0xa1, b'a', 0x01, 0xa1, b'k', 0x02],
            vec![0x82, 0xa1, b'k', 0x01, 0xa1, b'k', 0x02], // duplicate: the first wins
            vec![0x81, 0xc4, 0x01, b'k', 0x03],             // bin key
            vec![0x81, 0xd9, 0x01, b'k', 0x04],             // str8 key
            vec![0x82, 0x07, 0xa1, b'z', 0xd0, 0xff, 0x05], // integer keys
            vec![0x81, 0xa1, b'q', 0x81, 0xa1, b'k', 0x06], // nested, not looked into
            vec![0x81, 0xa1, b'k', 0xc1],                   // reserved marker
            vec![0x81, 0xa1, b'k', 0x92, 0x01],             // truncated array
            vec![0x91, 0x01],                               // not a map
            deep,
            map32.to_vec(),
        ];
        let steps = [
            s("k"),
            s("x"),
            s("missing"),
            Step::Index(7),
            Step::Index(-1),
        ];
        for raw in maps.iter().chain([&map16]) {
            for end in 0..=raw.len() {
                let cut = &raw[..end];
                for step in &steps {
                    let general = slow_map_get(cut, step);
                    if let Some(fast) = fast_map_get(cut, step) {
                        assert_eq!(Ok(fast), general, "{cut:x?} {step:?}");
                    }
                }
            }
        }
        // The usual shapes are answered by the fast path.
        assert_eq!(fast_map_get(&maps[2], &s("k")), Some(Some(&[0x01u8][..])));
        assert_eq!(
            fast_map_get(&maps[5], &Step::Index(-1)),
            Some(Some(&[0x05u8][..]))
        );
        assert_eq!(
            fast_map_get(&map16, &s("k")),
            Some(Some(&[0xa2, b'h', b'i'][..]))
        );
        assert_eq!(fast_map_get(&maps[1], &s("missing")), Some(None));
    }

    fn arb_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<i64>().prop_map(Value::from),
            any::<u16>().prop_map(Value::from),
            "[a-z]{0,40}".prop_map(Value::from),
            proptest::collection::vec(any::<u8>(), 0..4).prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
            ]
        })
    }

    /// A record-like map: short string keys (some the accessors name), some integer keys.
    fn arb_record() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let key = prop_oneof![
            4 => "[kxa]{1,2}".prop_map(Value::from),
            1 => "[k]{30,34}".prop_map(Value::from),
            1 => (-2i64..9).prop_map(Value::from),
            1 => Just(Value::Binary(b"k".to_vec())),
        ];
        (
            proptest::collection::vec((key, arb_value()), 0..8),
            proptest::collection::vec(any::<u8>(), 0..3),
            any::<usize>(),
            any::<bool>(),
        )
            .prop_map(|(pairs, junk, cut, truncate)| {
                let mut out = encode(&Value::Map(pairs));
                out.extend_from_slice(&junk);
                if truncate {
                    out.truncate(cut % (out.len() + 1));
                }
                out
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// The one-loop top-level look-up answers as the step-by-step walk, on arbitrary
        /// records and bytes (truncated, malformed, keys of every encoding).
        #[test]
        fn get_raw_agrees_with_general_walk(
            raw in proptest::prop_oneof![arb_record(), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)],
        ) {
            for param in ["k", "x", "kk", "missing", &"k".repeat(32), "$.[7]", "$.[-1]", "$.k.x"] {
                let acc = RecordAccessor::parse(param).unwrap_or_else(|e| panic!("{e}"));
                let fast = acc.get_raw(&raw);
                let general = acc.get_raw_general(&raw);
                proptest::prop_assert_eq!(fast, general, "{} on {:02x?}", param, raw);
            }
        }
    }

    #[test]
    fn malformed_raw_is_an_error() {
        let acc = RecordAccessor::parse("$.a.b").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            acc.get_raw(&[0x81, 0xa1, b'a']),
            Err(DigError::Malformed(_))
        ));
        assert!(matches!(acc.get_raw(&[]), Err(DigError::Malformed(_))));
    }
}
