//! Small helpers for plugins working on one record (a raw msgpack map).

use crate::msgpack::{
    Head, MsgpackError, Skipper, read_head, value_len, value_len_with, write_map_header, write_str,
};
use crate::time::type_name;

/// Errors from the record helpers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The bytes are not one complete msgpack value.
    #[error("record is not valid msgpack: {0}")]
    Msgpack(#[from] MsgpackError),
    /// The value is not a map.
    #[error("record is a {0}, not a map")]
    NotAMap(&'static str),
    /// Bytes follow the map.
    #[error("{0} trailing bytes after the record map")]
    Trailing(usize),
    /// rmpv could not decode or encode the value.
    #[error("cannot convert record: {0}")]
    Convert(String),
}

/// Checks that `raw` is exactly one complete msgpack map.
pub fn check_map(raw: &[u8]) -> Result<(), RecordError> {
    let len = value_len(raw)?;
    match read_head(raw)?.0 {
        Head::Map(_) => {}
        other => return Err(RecordError::NotAMap(type_name(&other))),
    }
    if len != raw.len() {
        return Err(RecordError::Trailing(raw.len() - len));
    }
    Ok(())
}

/// Decodes a raw record map into an `rmpv::Value` (checked first, so depth is bounded).
pub fn decode_record(raw: &[u8]) -> Result<rmpv::Value, RecordError> {
    check_map(raw)?;
    let mut rd = raw;
    rmpv::decode::read_value(&mut rd).map_err(|e| RecordError::Convert(e.to_string()))
}

/// Iterates the `(key, value)` pairs of a raw map as raw msgpack values.
pub struct MapIter<'a> {
    buf: &'a [u8],
    left: u32,
    sk: Skipper,
    failed: bool,
}

impl<'a> MapIter<'a> {
    /// Iterates the map at the start of `raw`.
    pub fn new(raw: &'a [u8]) -> Result<Self, RecordError> {
        let (head, n) = read_head(raw)?;
        let Head::Map(left) = head else {
            return Err(RecordError::NotAMap(type_name(&head)));
        };
        Ok(MapIter {
            buf: raw.get(n..).unwrap_or_default(),
            left,
            sk: Skipper::new(),
            failed: false,
        })
    }

    fn take(&mut self) -> Result<&'a [u8], MsgpackError> {
        let n = value_len_with(&mut self.sk, self.buf)?;
        let (v, rest) = self.buf.split_at(n.min(self.buf.len()));
        self.buf = rest;
        Ok(v)
    }
}

impl<'a> Iterator for MapIter<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.failed {
            return None;
        }
        self.left -= 1;
        let pair = self.take().and_then(|k| Ok((k, self.take()?)));
        if pair.is_err() {
            self.failed = true;
        }
        Some(pair.map_err(RecordError::from))
    }
}

/// Looks up `key` (a string key) in a raw map without decoding it; returns the raw value.
pub fn map_get<'a>(raw: &'a [u8], key: &[u8]) -> Result<Option<&'a [u8]>, RecordError> {
    for pair in MapIter::new(raw)? {
        let (k, v) = pair?;
        if let Ok((Head::Str(s), _)) = read_head(k)
            && s == key
        {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// Reads a raw value as a string (`str` must be UTF-8; `bin` is not a string).
pub fn as_str(raw: &[u8]) -> Option<&str> {
    match read_head(raw) {
        Ok((Head::Str(s), _)) => std::str::from_utf8(s).ok(),
        _ => None,
    }
}

/// Encodes a record map from an `rmpv::Value`, appending to `out`.
pub fn encode_record_into(v: &rmpv::Value, out: &mut Vec<u8>) -> Result<(), RecordError> {
    if !v.is_map() {
        return Err(RecordError::NotAMap("non-map value"));
    }
    rmpv::encode::write_value(out, v).map_err(|e| RecordError::Convert(e.to_string()))
}

/// Encodes a record map from an `rmpv::Value`.
pub fn encode_record(v: &rmpv::Value) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::new();
    encode_record_into(v, &mut out)?;
    Ok(out)
}

/// Encodes a record map from a serde value (structs with field names), appending to `out`.
pub fn encode_serde_record_into<T: serde::Serialize + ?Sized>(
    v: &T,
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    let mark = out.len();
    let res = rmp_serde::encode::write_named(out, v)
        .map_err(|e| RecordError::Convert(e.to_string()))
        .and_then(|()| check_map(out.get(mark..).unwrap_or_default()));
    if res.is_err() {
        out.truncate(mark);
    }
    res
}

/// Writes `raw` (a map) with string fields set: existing keys of the same name are replaced,
/// new ones appended (Fluentd's `record[key] = value`).
pub fn set_str_fields(
    raw: &[u8],
    fields: &[(&str, &str)],
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    let mut kept = 0u32;
    let mut body = Vec::with_capacity(raw.len());
    for pair in MapIter::new(raw)? {
        let (k, v) = pair?;
        let replaced = matches!(read_head(k), Ok((Head::Str(s), _)) if fields.iter().any(|(f, _)| f.as_bytes() == s));
        if !replaced {
            body.extend_from_slice(k);
            body.extend_from_slice(v);
            kept = kept.saturating_add(1);
        }
    }
    write_map_header(out, kept.saturating_add(fields.len() as u32));
    out.extend_from_slice(&body);
    for (k, v) in fields {
        write_str(out, k.as_bytes());
        write_str(out, v.as_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value;

    fn map(pairs: &[(&str, Value)]) -> Vec<u8> {
        let v = Value::Map(
            pairs
                .iter()
                .map(|(k, v)| (Value::from(*k), v.clone()))
                .collect(),
        );
        encode_record(&v).unwrap_or_default()
    }

    fn check_get(raw: &[u8], key: &str, expect: Option<Value>) {
        let got = map_get(raw, key.as_bytes()).ok().flatten().map(|v| {
            let mut r = v;
            rmpv::decode::read_value(&mut r).unwrap_or(Value::Nil)
        });
        assert_eq!(got, expect, "key {key}");
    }

    #[test]
    fn map_get_table() {
        let raw = map(&[
            ("a", 1.into()),
            ("msg", "hi".into()),
            ("n", Value::Array(vec![1.into()])),
        ]);
        check_get(&raw, "a", Some(1.into()));
        check_get(&raw, "msg", Some("hi".into()));
        check_get(&raw, "n", Some(Value::Array(vec![1.into()])));
        check_get(&raw, "zz", None);
        check_get(&[0x80], "a", None);
        assert!(map_get(&[0x01], b"a").is_err());
        assert!(map_get(&[0x81, 0xa1, b'a'], b"a").is_err());
        assert_eq!(
            map_get(&raw, b"msg").ok().flatten().and_then(as_str),
            Some("hi")
        );
    }

    #[test]
    fn decode_and_check() {
        let raw = map(&[("a", 1.into())]);
        assert_eq!(
            decode_record(&raw).ok(),
            Some(Value::Map(vec![("a".into(), 1.into())]))
        );
        assert!(matches!(
            check_map(&[0x91, 0x01]),
            Err(RecordError::NotAMap("array"))
        ));
        assert!(matches!(
            check_map(&[0x80, 0x01]),
            Err(RecordError::Trailing(1))
        ));
        assert!(encode_record(&Value::from(1)).is_err());
        let mut out = Vec::new();
        #[derive(serde::Serialize)]
        struct R {
            x: bool,
        }
        encode_serde_record_into(&R { x: true }, &mut out).expect("map");
        assert_eq!(out, map(&[("x", true.into())]));
        assert!(encode_serde_record_into(&[1, 2], &mut out).is_err());
        assert_eq!(out.len(), 4, "failed encodes leave the buffer as it was");
    }

    #[test]
    fn set_fields_replaces_and_appends() {
        let raw = map(&[("a", 1.into()), ("host", "old".into())]);
        let mut out = Vec::new();
        set_str_fields(&raw, &[("host", "h1"), ("addr", "127.0.0.1")], &mut out).expect("map");
        assert_eq!(
            decode_record(&out).ok(),
            Some(Value::Map(vec![
                ("a".into(), 1.into()),
                ("host".into(), "h1".into()),
                ("addr".into(), "127.0.0.1".into())
            ]))
        );
    }
}
