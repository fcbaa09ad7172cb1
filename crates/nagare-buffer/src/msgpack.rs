//! A tiny, bounded msgpack walker: finds entry boundaries in a chunk, reads each entry's
//! time, and looks up chunk-key values in records. It never allocates per value except
//! when rendering a chunk-key value, never recurses deeper than [`MAX_DEPTH`], and never
//! panics on bad bytes.

use std::ops::Range;

/// Nesting limit for maps and arrays.
pub const MAX_DEPTH: usize = 64;

/// Why bytes are not a valid chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunk data at byte {offset}: {reason}")]
pub struct WalkError {
    /// Byte offset in the chunk where the problem was found.
    pub offset: usize,
    /// What was wrong.
    pub reason: &'static str,
}

fn err<T>(offset: usize, reason: &'static str) -> Result<T, WalkError> {
    Err(WalkError { offset, reason })
}

fn byte(buf: &[u8], pos: usize) -> Result<u8, WalkError> {
    buf.get(pos).copied().ok_or(WalkError {
        offset: pos,
        reason: "unexpected end of data",
    })
}

fn be(buf: &[u8], pos: usize, n: usize) -> Result<u64, WalkError> {
    let end = pos.checked_add(n).ok_or(WalkError {
        offset: pos,
        reason: "length overflow",
    })?;
    let bytes = buf.get(pos..end).ok_or(WalkError {
        offset: pos,
        reason: "unexpected end of data",
    })?;
    Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

fn advance(buf: &[u8], pos: usize, n: u64) -> Result<usize, WalkError> {
    let n = usize::try_from(n).map_err(|_| WalkError {
        offset: pos,
        reason: "length overflow",
    })?;
    let end = pos.checked_add(n).ok_or(WalkError {
        offset: pos,
        reason: "length overflow",
    })?;
    if end > buf.len() {
        return err(pos, "unexpected end of data");
    }
    Ok(end)
}

/// The shape of a value's header.
enum Head {
    /// A value with no nested values, ending at the given offset.
    Flat(usize),
    /// An array of `n` values starting at the offset.
    Array(u64, usize),
    /// A map of `n` pairs starting at the offset.
    Map(u64, usize),
}

fn head(buf: &[u8], pos: usize) -> Result<Head, WalkError> {
    let t = byte(buf, pos)?;
    let p = pos + 1;
    Ok(match t {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Head::Flat(p),
        0x80..=0x8f => Head::Map(u64::from(t & 0x0f), p),
        0x90..=0x9f => Head::Array(u64::from(t & 0x0f), p),
        0xa0..=0xbf => Head::Flat(advance(buf, p, u64::from(t & 0x1f))?),
        0xc1 => return err(pos, "reserved type byte 0xc1"),
        0xc4 | 0xd9 => Head::Flat(advance(buf, p + 1, be(buf, p, 1)?)?),
        0xc5 | 0xda => Head::Flat(advance(buf, p + 2, be(buf, p, 2)?)?),
        0xc6 | 0xdb => Head::Flat(advance(buf, p + 4, be(buf, p, 4)?)?),
        0xc7 => Head::Flat(advance(buf, p + 2, be(buf, p, 1)?)?),
        0xc8 => Head::Flat(advance(buf, p + 3, be(buf, p, 2)?)?),
        0xc9 => Head::Flat(advance(buf, p + 5, be(buf, p, 4)?)?),
        0xca => Head::Flat(advance(buf, p, 4)?),
        0xcb => Head::Flat(advance(buf, p, 8)?),
        0xcc | 0xd0 => Head::Flat(advance(buf, p, 1)?),
        0xcd | 0xd1 => Head::Flat(advance(buf, p, 2)?),
        0xce | 0xd2 => Head::Flat(advance(buf, p, 4)?),
        0xcf | 0xd3 => Head::Flat(advance(buf, p, 8)?),
        0xd4 => Head::Flat(advance(buf, p, 2)?),
        0xd5 => Head::Flat(advance(buf, p, 3)?),
        0xd6 => Head::Flat(advance(buf, p, 5)?),
        0xd7 => Head::Flat(advance(buf, p, 9)?),
        0xd8 => Head::Flat(advance(buf, p, 17)?),
        0xdc => Head::Array(be(buf, p, 2)?, p + 2),
        0xdd => Head::Array(be(buf, p, 4)?, p + 4),
        0xde => Head::Map(be(buf, p, 2)?, p + 2),
        0xdf => Head::Map(be(buf, p, 4)?, p + 4),
    })
}

/// Returns the offset just past the value starting at `pos`.
pub fn skip(buf: &[u8], pos: usize, depth: usize) -> Result<usize, WalkError> {
    if depth > MAX_DEPTH {
        return err(pos, "nesting too deep");
    }
    match head(buf, pos)? {
        Head::Flat(end) => Ok(end),
        Head::Array(n, mut p) => {
            for _ in 0..n {
                p = skip(buf, p, depth + 1)?;
            }
            Ok(p)
        }
        Head::Map(n, mut p) => {
            for _ in 0..n {
                p = skip(buf, p, depth + 1)?;
                p = skip(buf, p, depth + 1)?;
            }
            Ok(p)
        }
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

/// Reads an event time: an integer, an EventTime (ext 0, 8 bytes), a float, or the v1.5
/// form `[EventTime, {metadata}]` (its first element).
fn read_time(buf: &[u8], pos: usize, depth: usize) -> Result<i64, WalkError> {
    let t = byte(buf, pos)?;
    let p = pos + 1;
    Ok(match t {
        0x00..=0x7f => i64::from(t),
        0xe0..=0xff => i64::from(t as i8),
        0xcc => be(buf, p, 1)? as i64,
        0xcd => be(buf, p, 2)? as i64,
        0xce => be(buf, p, 4)? as i64,
        0xcf => i64::try_from(be(buf, p, 8)?).unwrap_or(i64::MAX),
        0xd0 => i64::from(be(buf, p, 1)? as u8 as i8),
        0xd1 => i64::from(be(buf, p, 2)? as u16 as i16),
        0xd2 => i64::from(be(buf, p, 4)? as u32 as i32),
        0xd3 => be(buf, p, 8)? as i64,
        0xca => f32::from_bits(be(buf, p, 4)? as u32).floor() as i64,
        0xcb => f64::from_bits(be(buf, p, 8)?).floor() as i64,
        0xd7 if byte(buf, p)? == 0 => be(buf, p + 1, 4)? as i64,
        0xc7 if byte(buf, p)? == 8 && byte(buf, p + 1)? == 0 => be(buf, p + 2, 4)? as i64,
        0x91..=0x9f | 0xdc | 0xdd if depth == 0 => {
            let Head::Array(n, first) = head(buf, pos)? else {
                return err(pos, "bad time");
            };
            if n == 0 {
                return err(pos, "empty time array");
            }
            read_time(buf, first, depth + 1)?
        }
        _ => return err(pos, "event time is not an integer or EventTime"),
    })
}

/// Parses one entry at `pos` (which must be `< buf.len()`).
pub fn entry_at(buf: &[u8], pos: usize) -> Result<Entry, WalkError> {
    let Head::Array(n, p) = head(buf, pos)? else {
        return err(pos, "entry is not an array");
    };
    if n < 2 {
        return err(pos, "entry array has fewer than 2 elements");
    }
    let time = read_time(buf, p, 0)?;
    let rec_start = skip(buf, p, 1)?;
    if !matches!(head(buf, rec_start)?, Head::Map(..)) {
        return err(rec_start, "record is not a map");
    }
    let rec_end = skip(buf, rec_start, 1)?;
    let mut end = rec_end;
    for _ in 2..n {
        end = skip(buf, end, 1)?;
    }
    Ok(Entry {
        range: pos..end,
        time,
        record: rec_start..rec_end,
    })
}

/// Iterates the entries of a chunk; stops after the first error.
pub fn entries(buf: &[u8]) -> impl Iterator<Item = Result<Entry, WalkError>> + '_ {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= buf.len() {
            return None;
        }
        let r = entry_at(buf, pos);
        match &r {
            Ok(e) => pos = e.range.end,
            Err(_) => failed = true,
        }
        Some(r)
    })
}

/// Counts the entries of a well-formed chunk.
pub fn count_entries(buf: &[u8]) -> Result<u64, WalkError> {
    entries(buf).try_fold(0u64, |n, e| e.map(|_| n + 1))
}

/// Reads a string or binary value's bytes.
fn str_bytes(buf: &[u8], pos: usize) -> Result<Option<&[u8]>, WalkError> {
    let t = byte(buf, pos)?;
    let (len, start) = match t {
        0xa0..=0xbf => (u64::from(t & 0x1f), pos + 1),
        0xd9 | 0xc4 => (be(buf, pos + 1, 1)?, pos + 2),
        0xda | 0xc5 => (be(buf, pos + 1, 2)?, pos + 3),
        0xdb | 0xc6 => (be(buf, pos + 1, 4)?, pos + 5),
        _ => return Ok(None),
    };
    let end = advance(buf, start, len)?;
    Ok(buf.get(start..end))
}

/// Looks up a key path in the record map at `record`; returns the value's range.
pub fn lookup(
    buf: &[u8],
    record: usize,
    path: &[String],
) -> Result<Option<Range<usize>>, WalkError> {
    let mut map_pos = record;
    for (i, key) in path.iter().enumerate() {
        let Head::Map(n, mut p) = head(buf, map_pos)? else {
            return Ok(None);
        };
        let mut found = None;
        for _ in 0..n {
            let kend = skip(buf, p, 1)?;
            let vend = skip(buf, kend, 1)?;
            if str_bytes(buf, p)? == Some(key.as_bytes()) {
                found = Some(kend..vend);
            }
            p = vend;
        }
        match found {
            None => return Ok(None),
            Some(r) if i + 1 == path.len() => return Ok(Some(r)),
            Some(r) => map_pos = r.start,
        }
    }
    Ok(None)
}

/// Renders a value the way a placeholder shows it: strings as is, numbers in decimal,
/// `nil` as `None`, arrays and maps as compact JSON-like text.
pub fn render(buf: &[u8], pos: usize) -> Result<Option<String>, WalkError> {
    if byte(buf, pos)? == 0xc0 {
        return Ok(None);
    }
    let mut out = String::new();
    render_into(buf, pos, 0, &mut out, false)?;
    Ok(Some(out))
}

fn render_into(
    buf: &[u8],
    pos: usize,
    depth: usize,
    out: &mut String,
    quoted: bool,
) -> Result<usize, WalkError> {
    use std::fmt::Write as _;
    if depth > MAX_DEPTH {
        return err(pos, "nesting too deep");
    }
    if let Some(bytes) = str_bytes(buf, pos)? {
        let s = String::from_utf8_lossy(bytes);
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
        return skip(buf, pos, depth);
    }
    let t = byte(buf, pos)?;
    let p = pos + 1;
    match head(buf, pos)? {
        Head::Array(n, mut q) => {
            out.push('[');
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                q = render_into(buf, q, depth + 1, out, true)?;
            }
            out.push(']');
            Ok(q)
        }
        Head::Map(n, mut q) => {
            out.push('{');
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                q = render_into(buf, q, depth + 1, out, true)?;
                out.push(':');
                q = render_into(buf, q, depth + 1, out, true)?;
            }
            out.push('}');
            Ok(q)
        }
        Head::Flat(end) => {
            let _ = match t {
                0xc0 => write!(out, "{}", if quoted { "null" } else { "" }),
                0xc2 => write!(out, "false"),
                0xc3 => write!(out, "true"),
                0x00..=0x7f | 0xe0..=0xff | 0xcc..=0xcf | 0xd0..=0xd3 => {
                    write!(out, "{}", read_int(buf, pos)?)
                }
                0xca => write!(out, "{}", f32::from_bits(be(buf, p, 4)? as u32)),
                0xcb => write!(out, "{}", f64::from_bits(be(buf, p, 8)?)),
                _ => {
                    // ext types: hex of the payload, good enough for grouping
                    for b in buf.get(pos..end).unwrap_or_default() {
                        let _ = write!(out, "{b:02x}");
                    }
                    Ok(())
                }
            };
            Ok(end)
        }
    }
}

fn read_int(buf: &[u8], pos: usize) -> Result<i128, WalkError> {
    let t = byte(buf, pos)?;
    let p = pos + 1;
    Ok(match t {
        0x00..=0x7f => i128::from(t),
        0xe0..=0xff => i128::from(t as i8),
        0xcc => i128::from(be(buf, p, 1)?),
        0xcd => i128::from(be(buf, p, 2)?),
        0xce => i128::from(be(buf, p, 4)?),
        0xcf => i128::from(be(buf, p, 8)?),
        0xd0 => i128::from(be(buf, p, 1)? as u8 as i8),
        0xd1 => i128::from(be(buf, p, 2)? as u16 as i16),
        0xd2 => i128::from(be(buf, p, 4)? as u32 as i32),
        _ => i128::from(be(buf, p, 8)? as i64),
    })
}

/// Small msgpack writers for tests and examples (the crate never encodes records itself).
#[doc(hidden)]
pub mod write {
    /// Appends a string.
    pub fn str(out: &mut Vec<u8>, s: &str) {
        let n = s.len();
        if n < 32 {
            out.push(0xa0 | n as u8);
        } else if n < 256 {
            out.extend_from_slice(&[0xd9, n as u8]);
        } else if n < 65536 {
            out.push(0xda);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            out.push(0xdb);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        out.extend_from_slice(s.as_bytes());
    }

    /// Appends an unsigned integer.
    pub fn uint(out: &mut Vec<u8>, v: u64) {
        if v < 128 {
            out.push(v as u8);
        } else {
            out.push(0xcf);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// Appends a map header.
    pub fn map_len(out: &mut Vec<u8>, n: u32) {
        if n < 16 {
            out.push(0x80 | n as u8);
        } else {
            out.push(0xdf);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }

    /// Appends an EventTime (fixext8, type 0).
    pub fn event_time(out: &mut Vec<u8>, sec: u32, nsec: u32) {
        out.extend_from_slice(&[0xd7, 0x00]);
        out.extend_from_slice(&sec.to_be_bytes());
        out.extend_from_slice(&nsec.to_be_bytes());
    }

    /// Appends one `[EventTime, {k: v, ...}]` entry whose values are strings.
    pub fn entry(out: &mut Vec<u8>, sec: u32, fields: &[(&str, &str)]) {
        out.push(0x92);
        event_time(out, sec, 0);
        map_len(out, fields.len() as u32);
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
        let es: Vec<Entry> = entries(&c).collect::<Result<_, _>>().expect("valid");
        assert_eq!(es.iter().map(|e| e.time).collect::<Vec<_>>(), [10, 20, 30]);
        assert_eq!(es.last().map(|e| e.range.end), Some(c.len()));
        assert_eq!(count_entries(&c), Ok(3));
    }

    #[test]
    fn time_forms() {
        fn check(time: &[u8], expect: Result<i64, ()>) {
            let mut c = vec![0x92];
            c.extend_from_slice(time);
            c.push(0x80);
            assert_eq!(
                entry_at(&c, 0).map(|e| e.time).map_err(|_| ()),
                expect,
                "{time:x?}"
            );
        }
        check(&[0x05], Ok(5));
        check(&[0xce, 0, 0, 1, 0], Ok(256));
        check(&[0xd2, 0xff, 0xff, 0xff, 0xff], Ok(-1));
        check(&[0xcb, 0x40, 0x24, 0, 0, 0, 0, 0, 0], Ok(10)); // 10.0
        check(&[0xd7, 0, 0, 0, 0, 7, 0, 0, 0, 1], Ok(7));
        check(&[0xc7, 8, 0, 0, 0, 0, 9, 0, 0, 0, 0], Ok(9));
        check(&[0x92, 0xd7, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0x80], Ok(7)); // v1.5 metadata time
        check(&[0xd7, 1, 0, 0, 0, 7, 0, 0, 0, 0], Err(())); // ext type 1
        check(&[0xa1, b'x'], Err(()));
        check(&[0x90], Err(()));
    }

    #[test]
    fn rejects_bad_shapes() {
        for bad in [
            &[0x91u8, 0x01][..],
            &[0x01],
            &[0x92, 0x01, 0x01],
            &[0x92, 0x01, 0x81],
            &[0xc1],
            &[0x92, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(count_entries(bad).is_err(), "{bad:x?}");
        }
        // deep nesting is refused, not a stack overflow
        let mut deep = vec![0x92, 0x01, 0x81, 0xa1, b'k'];
        deep.extend(std::iter::repeat_n(0x91, 1000));
        deep.push(0x01);
        assert!(count_entries(&deep).is_err());
    }

    #[test]
    fn lookup_and_render() {
        let mut c = vec![0x92, 0x01];
        // {"a": "x", "n": {"k": 5, "arr": [1, "s"]}, "z": nil, "f": true}
        c.push(0x84);
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
        let e = entry_at(&c, 0).expect("entry");
        let get = |path: &[&str]| -> Option<Option<String>> {
            let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            lookup(&c, e.record.start, &path)
                .expect("lookup")
                .map(|r| render(&c, r.start).expect("render"))
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
        assert_eq!(get(&["missing"]), None);
        assert_eq!(get(&["a", "deeper"]), None);
    }

    proptest::proptest! {
        #[test]
        fn walker_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = count_entries(&bytes);
            let _ = lookup(&bytes, 0, &["a".to_string(), "b".to_string()]);
            let _ = render(&bytes, 0);
        }
    }
}
