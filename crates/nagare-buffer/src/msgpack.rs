//! The buffer's view of chunk bytes: entry boundaries, each entry's time, and chunk-key
//! values looked up in records and rendered for placeholders.
//!
//! The msgpack walking is nagare-core's: [`ChunkReader`] splits and checks entries (the
//! same rules as everywhere else: `[time, record]`, time an integer, an EventTime or a v1.5
//! `[EventTime, {metadata}]`, record a map, bounded nesting), [`MapIter`] walks a record and
//! [`read_head`] reads values. This module keeps the buffer's shapes (byte ranges into the
//! batch, placeholder text) and never panics on bad bytes.

use std::fmt::Write as _;
use std::ops::Range;

use nagare_core::chunk::{ChunkError, ChunkReader};
use nagare_core::msgpack::{Head, MAX_DEPTH, MsgpackError, read_head};
use nagare_core::record::{MapIter, RecordError};

/// Why bytes are not a valid chunk, or a record value cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunk data at byte {offset}: {reason}")]
pub struct WalkError {
    /// Byte offset in the chunk where the problem was found.
    pub offset: usize,
    /// What was wrong.
    pub reason: String,
}

impl WalkError {
    fn new(offset: usize, reason: impl std::fmt::Display) -> WalkError {
        WalkError {
            offset,
            reason: reason.to_string(),
        }
    }

    /// A chunk error, located at the offending byte where nagare-core says which.
    fn from_chunk(e: &ChunkError) -> WalkError {
        let offset = match e {
            ChunkError::Malformed { offset, source, .. } => offset + msgpack_offset(source),
            ChunkError::Truncated { offset, .. } => *offset,
            ChunkError::Invalid(i) => i.offset,
            _ => 0,
        };
        WalkError::new(offset, e)
    }

    /// A record look-up error; `base` is the record's offset in the chunk.
    pub fn in_record(base: usize, e: &RecordError) -> WalkError {
        let offset = match e {
            RecordError::Msgpack(m) => base + msgpack_offset(m),
            _ => base,
        };
        WalkError::new(offset, e)
    }
}

/// Where in a value a msgpack error is (0 when it says nothing more precise).
fn msgpack_offset(e: &MsgpackError) -> usize {
    match e {
        MsgpackError::Malformed { offset, .. } | MsgpackError::TooDeep { offset, .. } => *offset,
        _ => 0,
    }
}

/// One `[time, record]` entry of a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's bytes within the chunk.
    pub range: Range<usize>,
    /// The event time in whole seconds.
    pub time: i64,
    /// The record map's bytes within the chunk.
    pub record: Range<usize>,
}

/// Iterates the entries of a chunk; stops after the first error (an entry that is not an
/// event, such as a non-map record, is an error here: the buffer refuses such batches).
pub fn entries(buf: &[u8]) -> impl Iterator<Item = Result<Entry, WalkError>> + '_ {
    let mut reader = ChunkReader::new(buf);
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        let start = reader.offset();
        Some(match reader.next()? {
            Ok(e) => {
                // `[time, record]`: the record is the tail of the entry.
                let end = start + e.raw.len();
                Ok(Entry {
                    range: start..end,
                    time: i64::from(e.time.sec),
                    record: end - e.record.len()..end,
                })
            }
            Err(err) => {
                failed = true;
                Err(WalkError::from_chunk(&err))
            }
        })
    })
}

/// Counts the entries of a well-formed chunk.
pub fn count_entries(buf: &[u8]) -> Result<u64, WalkError> {
    entries(buf).try_fold(0u64, |n, e| e.map(|_| n + 1))
}

/// Looks up a key path in a raw record map; returns the value's bytes. A key that appears
/// twice resolves to its last value, as a Ruby Hash built from the map would.
pub fn lookup<'a>(record: &'a [u8], path: &[String]) -> Result<Option<&'a [u8]>, RecordError> {
    let mut map = record;
    for (i, key) in path.iter().enumerate() {
        if !matches!(read_head(map)?.0, Head::Map(_)) {
            return Ok(None);
        }
        let mut found = None;
        for pair in MapIter::new(map)? {
            let (k, v) = pair?;
            if read_head(k)?.0.str_or_bin() == Some(key.as_bytes()) {
                found = Some(v);
            }
        }
        match found {
            None => return Ok(None),
            Some(v) if i + 1 == path.len() => return Ok(Some(v)),
            Some(v) => map = v,
        }
    }
    Ok(None)
}

/// Renders a value the way a placeholder shows it: strings as is, numbers in decimal,
/// `nil` as `None`, arrays and maps as compact JSON-like text, other extension values as
/// the hex of their bytes.
pub fn render(value: &[u8]) -> Result<Option<String>, MsgpackError> {
    if matches!(read_head(value)?.0, Head::Nil) {
        return Ok(None);
    }
    let mut out = String::new();
    render_into(value, 0, &mut out, false)?;
    Ok(Some(out))
}

/// Renders the value at the start of `buf`; returns its length.
fn render_into(
    buf: &[u8],
    depth: usize,
    out: &mut String,
    quoted: bool,
) -> Result<usize, MsgpackError> {
    if depth > MAX_DEPTH {
        return Err(MsgpackError::TooDeep {
            offset: 0,
            limit: MAX_DEPTH,
        });
    }
    let (head, n) = read_head(buf)?;
    let children = |count: u64, out: &mut String, open: char, close: char| {
        out.push(open);
        let mut pos = n;
        for i in 0..count {
            if i > 0 {
                out.push(if open == '{' && i % 2 == 1 { ':' } else { ',' });
            }
            let rest = buf.get(pos..).unwrap_or_default();
            pos += render_into(rest, depth + 1, out, true).map_err(|e| e.shifted(pos))?;
        }
        out.push(close);
        Ok::<usize, MsgpackError>(pos)
    };
    match head {
        Head::Array(len) => return children(u64::from(len), out, '[', ']'),
        Head::Map(len) => return children(u64::from(len) * 2, out, '{', '}'),
        Head::Nil => out.push_str(if quoted { "null" } else { "" }),
        Head::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Head::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Head::F32(f) => {
            let _ = write!(out, "{f}");
        }
        Head::F64(f) => {
            let _ = write!(out, "{f}");
        }
        Head::Str(s) | Head::Bin(s) => {
            let s = String::from_utf8_lossy(s);
            if quoted {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c if (c as u32) < 0x20 => {
                            let _ = write!(out, "\\u{:04x}", c as u32);
                        }
                        c => out.push(c),
                    }
                }
                out.push('"');
            } else {
                out.push_str(&s);
            }
        }
        Head::Ext(..) => {
            // hex of the whole value, good enough for grouping
            for b in buf.get(..n).unwrap_or_default() {
                let _ = write!(out, "{b:02x}");
            }
        }
    }
    Ok(n)
}

/// Small msgpack writers for tests and examples (the crate never encodes records itself).
#[doc(hidden)]
pub mod write {
    use nagare_core::EventTime;
    use nagare_core::msgpack::{write_array_header, write_int, write_map_header, write_str};

    /// Appends a string.
    pub fn str(out: &mut Vec<u8>, s: &str) {
        write_str(out, s.as_bytes());
    }

    /// Appends an unsigned integer.
    pub fn uint(out: &mut Vec<u8>, v: u64) {
        match i64::try_from(v) {
            Ok(i) => write_int(out, i),
            Err(_) => {
                out.push(0xcf);
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
    }

    /// Appends a map header.
    pub fn map_len(out: &mut Vec<u8>, n: u32) {
        write_map_header(out, n);
    }

    /// Appends an EventTime (fixext8, type 0).
    pub fn event_time(out: &mut Vec<u8>, sec: u32, nsec: u32) {
        EventTime::new(sec, nsec).write_to(out);
    }

    /// Appends one `[EventTime, {k: v, ...}]` entry whose values are strings.
    pub fn entry(out: &mut Vec<u8>, sec: u32, fields: &[(&str, &str)]) {
        write_array_header(out, 2);
        event_time(out, sec, 0);
        map_len(out, u32::try_from(fields.len()).unwrap_or(u32::MAX));
        for (k, v) in fields {
            str(out, k);
            str(out, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(entries: &[(u32, &[(&str, &str)])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (t, f) in entries {
            write::entry(&mut out, *t, f);
        }
        out
    }

    #[test]
    fn walks_entries_and_times() {
        let c = chunk(&[(10, &[("a", "1")]), (20, &[]), (30, &[("b", "x")])]);
        let es: Vec<Entry> = entries(&c).collect::<Result<_, _>>().unwrap_or_default();
        assert_eq!(es.iter().map(|e| e.time).collect::<Vec<_>>(), [10, 20, 30]);
        assert_eq!(es.last().map(|e| e.range.end), Some(c.len()));
        assert_eq!(es.first().map(|e| e.record.clone()), Some(11..16));
        assert_eq!(count_entries(&c), Ok(3));
    }

    #[test]
    fn time_forms() {
        // nagare-core's rules: integers (packed as u32, as Fluentd's pack('N')), EventTime
        // in any ext form, the v1.5 metadata array; floats and other types are not times.
        fn check(time: &[u8], expect: Result<i64, ()>) {
            let mut c = vec![0x92];
            c.extend_from_slice(time);
            c.push(0x80);
            let got = entries(&c)
                .next()
                .map(|r| r.map(|e| e.time).map_err(|_| ()));
            assert_eq!(got, Some(expect), "{time:x?}");
        }
        check(&[0x05], Ok(5));
        check(&[0xce, 0, 0, 1, 0], Ok(256));
        check(&[0xd2, 0xff, 0xff, 0xff, 0xff], Ok(i64::from(u32::MAX)));
        check(&[0xd7, 0, 0, 0, 0, 7, 0, 0, 0, 1], Ok(7));
        check(&[0xc7, 8, 0, 0, 0, 0, 9, 0, 0, 0, 0], Ok(9));
        check(&[0x92, 0xd7, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0x80], Ok(7)); // v1.5 metadata time
        check(&[0xcb, 0x40, 0x24, 0, 0, 0, 0, 0, 0], Err(())); // 10.0
        check(&[0xd7, 1, 0, 0, 0, 7, 0, 0, 0, 0], Err(())); // ext type 1
        check(&[0xa1, b'x'], Err(()));
        check(&[0x90], Err(()));
    }

    #[test]
    fn rejects_bad_shapes() {
        for (bad, offset) in [
            (&[0x91u8, 0x01][..], 0),
            (&[0x01], 0),
            (&[0x93, 0x01, 0x80, 0x01], 0),
            (&[0x92, 0x01, 0x01], 0),
            (&[0x92, 0x01, 0x81], 0),
            (&[0xc1], 0),
            (&[0x92, 0x01, 0x81, 0xc1, 0x01], 3),
            (&[0x92, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff], 0),
        ] {
            assert_eq!(
                count_entries(bad).map_err(|e| e.offset),
                Err(offset),
                "{bad:x?}"
            );
        }
        // a bad entry after good ones is located in the chunk
        let mut c = chunk(&[(1, &[("a", "b")])]);
        let good = c.len();
        c.extend_from_slice(&[0x92, 0xc1]);
        let e = count_entries(&c).err();
        assert_eq!(e.as_ref().map(|e| e.offset), Some(good + 1));
        assert!(e.is_some_and(|e| e.to_string().starts_with(&format!(
            "invalid chunk data at byte {}: chunk is malformed at entry #1",
            good + 1
        ))),);
        // deep nesting is refused, not a stack overflow
        let mut deep = vec![0x92, 0x01, 0x81, 0xa1, b'k'];
        deep.extend(std::iter::repeat_n(0x91, 1000));
        deep.push(0x01);
        assert!(count_entries(&deep).is_err());
    }

    #[test]
    fn lookup_and_render() {
        let mut c = vec![0x92, 0x01];
        // {"a": "x", "n": {"k": 5, "arr": [1, "s"]}, "z": nil, "f": true, "a": "last"}
        c.push(0x85);
        write::str(&mut c, "a");
        write::str(&mut c, "x");
        write::str(&mut c, "n");
        c.push(0x82);
        write::str(&mut c, "k");
        c.push(0x05);
        write::str(&mut c, "arr");
        c.extend_from_slice(&[0x92, 0x01, 0xa1, b's']);
        write::str(&mut c, "z");
        c.push(0xc0);
        write::str(&mut c, "f");
        c.push(0xc3);
        write::str(&mut c, "d");
        c.extend_from_slice(&[0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]); // 1.5
        let e = entries(&c).next().and_then(Result::ok);
        let record = e.and_then(|e| c.get(e.record)).unwrap_or_default();
        let get = |path: &[&str]| -> Option<Option<String>> {
            let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            let v = lookup(record, &path).ok()??;
            render(v).ok()
        };
        assert_eq!(get(&["a"]), Some(Some("x".into())));
        assert_eq!(get(&["n", "k"]), Some(Some("5".into())));
        assert_eq!(get(&["n", "arr"]), Some(Some("[1,\"s\"]".into())));
        assert_eq!(
            get(&["n"]),
            Some(Some("{\"k\":5,\"arr\":[1,\"s\"]}".into()))
        );
        assert_eq!(get(&["z"]), Some(None));
        assert_eq!(get(&["f"]), Some(Some("true".into())));
        assert_eq!(get(&["d"]), Some(Some("1.5".into())));
        assert_eq!(get(&["missing"]), None);
        assert_eq!(get(&["a", "deeper"]), None);
        // duplicate keys: the last value wins, as in a Ruby Hash
        let mut dup = vec![0x82];
        for v in ["first", "last"] {
            write::str(&mut dup, "k");
            write::str(&mut dup, v);
        }
        let v = lookup(&dup, &["k".to_string()]).ok().flatten();
        assert_eq!(
            v.map(render).and_then(Result::ok),
            Some(Some("last".into()))
        );
        // ext values render as hex
        assert_eq!(
            render(&[0xd4, 0x05, 0xab]).ok(),
            Some(Some("d405ab".into()))
        );
    }

    proptest::proptest! {
        #[test]
        fn walker_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = count_entries(&bytes);
            let _ = lookup(&bytes, &["a".to_string(), "b".to_string()]);
            let _ = render(&bytes);
        }
    }
}
