//! Value renderings the way Fluentd (Ruby) produces them:
//! - [`write_json`]: `record.to_json` / `Yajl.dump` of a msgpack value;
//! - [`json_to_value`]: a parsed JSON document as a msgpack value (what `Oj.load` yields);
//! - [`write_inspect`]: Ruby 3.4's `Hash#inspect` (`{"k" => "v"}`), used by the `hash`
//!   formatter, out_stdout's `output_type hash`, and wherever a hash is turned into text;
//! - [`write_to_s`]: Ruby's `to_s` of a value, used where values are joined into text
//!   (ltsv, csv, tsv, single_value).
//!
//! The renderers write into a `Vec<u8>` (`*_buf`; the `String` functions wrap them):
//! [`write_json_raw_buf`] renders straight from msgpack bytes, the hot path of the json and
//! out_file formatters (maps, i.e. records, through a write cursor over room made ahead in the
//! buffer: the private `map` module); [`write_json_string`] escapes with a word-at-a-time scan, copying
//! clean runs whole and checking UTF-8 once per string from its first non-ASCII byte;
//! integers go through `itoa` and floats through [`write_ruby_float_buf`], neither
//! allocating. [`raw_map_pairs`], [`raw_str`], [`skip_raw`] and [`write_scalar_to_s_raw`]
//! serve the ltsv and single_value fast paths.
//!
//! Choices where Ruby would raise: invalid UTF-8 in strings is replaced by U+FFFD (Ruby's
//! JSON generator raises instead); NaN and infinities become `null` (Ruby raises
//! GeneratorError). EventTime ext values (type 0) render as their seconds, as
//! `Fluent::EventTime#to_json` does; other ext values render as the string Ruby's
//! `MessagePack::ExtensionValue#to_s` would give.

use std::fmt::Write as _;

use rmpv::Value;

mod map;

pub(crate) use map::KeyCache;

/// Appends Ruby's `Float#to_s` of `f` (`1.0`, `0.0001`, `1.0e-05`, `1.0e+16`).
pub fn write_ruby_float(f: f64, out: &mut String) {
    let mut b = Vec::with_capacity(32);
    write_ruby_float_buf(f, &mut b);
    append_utf8(out, b);
}

/// A fixed stack buffer for `{:e}` (no allocation per float).
struct Stack {
    buf: [u8; 40],
    len: usize,
}

impl std::fmt::Write for Stack {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(std::fmt::Error)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// [`write_ruby_float`] into a byte buffer, without allocating.
pub fn write_ruby_float_buf(f: f64, out: &mut Vec<u8>) {
    if f.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 { b"Infinity" } else { b"-Infinity" });
        return;
    }
    if f == 0.0 {
        out.extend_from_slice(if f.is_sign_negative() {
            b"-0.0"
        } else {
            b"0.0"
        });
        return;
    }
    // Shortest round-trip digits and decimal exponent (`1.2345e20`, `1e-7`).
    let mut sci = Stack {
        buf: [0; 40],
        len: 0,
    };
    if write!(sci, "{:e}", f.abs()).is_err() {
        // Cannot happen (at most 24 bytes); keep a correct answer anyway.
        let mut s = String::new();
        let _ = write!(s, "{:e}", f.abs());
        sci.len = 0;
        let _ = sci.write_str(s.get(..40.min(s.len())).unwrap_or_default());
    }
    let text = sci.buf.get(..sci.len).unwrap_or_default();
    let (mant, exp) = match text.iter().position(|&b| b == b'e') {
        Some(e) => (
            text.get(..e).unwrap_or_default(),
            text.get(e + 1..).unwrap_or_default(),
        ),
        None => (text, &b"0"[..]),
    };
    let (neg_exp, exp_digits) = match exp.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, exp),
    };
    let magnitude = exp_digits.iter().fold(0i32, |a, &d| {
        a.saturating_mul(10)
            .saturating_add(i32::from(d.wrapping_sub(b'0')))
    });
    let exp = if neg_exp { -magnitude } else { magnitude };
    let mut digits = [0u8; 40];
    let mut nd = 0;
    for &c in mant.iter().filter(|c| c.is_ascii_digit()) {
        if let Some(slot) = digits.get_mut(nd) {
            *slot = c;
            nd += 1;
        }
    }
    let digits = digits.get(..nd).unwrap_or_default();
    let decpt = exp + 1;
    if f < 0.0 {
        out.push(b'-');
    }
    if !(-3..=16).contains(&decpt) {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        out.extend_from_slice(first);
        out.push(b'.');
        out.extend_from_slice(if rest.is_empty() { b"0" } else { rest });
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(itoa::Buffer::new().format(e).as_bytes());
    } else if decpt <= 0 {
        out.extend_from_slice(b"0.");
        for _ in 0..(-decpt) {
            out.push(b'0');
        }
        out.extend_from_slice(digits);
    } else {
        let d = decpt as usize;
        if digits.len() <= d {
            out.extend_from_slice(digits);
            for _ in digits.len()..d {
                out.push(b'0');
            }
            out.extend_from_slice(b".0");
        } else {
            let (int, frac) = digits.split_at(d);
            out.extend_from_slice(int);
            out.push(b'.');
            out.extend_from_slice(frac);
        }
    }
}

/// Ruby's `Float#to_s` as a new string.
pub fn ruby_float(f: f64) -> String {
    let mut s = String::new();
    write_ruby_float(f, &mut s);
    s
}

/// Appends bytes this module rendered (always UTF-8) to a `String`.
fn append_utf8(out: &mut String, b: Vec<u8>) {
    match String::from_utf8(b) {
        Ok(s) if out.is_empty() => *out = s,
        Ok(s) => out.push_str(&s),
        Err(e) => out.push_str(&String::from_utf8_lossy(e.as_bytes())),
    }
}

/// What a byte needs inside a JSON string: 0 nothing (bytes >= 0x80 are checked as UTF-8
/// instead), `u` a `\u00XX` escape, else the letter that follows the backslash.
const JSON_ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";
/// `WORD_MASK[n]`: the low `n` bytes of a word.
const WORD_MASK: [u64; 9] = {
    let mut t = [u64::MAX; 9];
    let mut n = 0;
    while n < 8 {
        t[n] = (1u64 << (8 * n)) - 1;
        n += 1;
    }
    t
};
const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Bit 7 of each byte of `w` (little-endian: byte 0 is the lowest) that is a control
/// character, `"` or `\`, or has bit 7 set when `hi` is [`HI`]. Bits above the lowest one
/// may be false (a borrow carries only out of a byte that is itself flagged), so only the
/// lowest set bit is meaningful — it is exact.
#[inline(always)]
fn special(w: u64, hi: u64) -> u64 {
    let ctrl = w.wrapping_sub(LO * 0x20) & !w;
    let q = w ^ (LO * u64::from(b'"'));
    let q = q.wrapping_sub(LO) & !q;
    let bs = w ^ (LO * u64::from(b'\\'));
    let bs = bs.wrapping_sub(LO) & !bs;
    ((ctrl | q | bs) & HI) | (w & hi)
}

/// Appends the escaped text of `buf[start..end]`; `false` (with `out` partly written) when
/// those bytes are not UTF-8. Bytes of `buf` past `end` may be read, never written: reading
/// whole 8-byte words past the end of a short string (into the rest of the record) keeps
/// short strings off the byte-by-byte path.
///
/// Each word is checked ([`special`]) and stored whole; the output is then cut back to the
/// string's end or to the first byte that needs attention. UTF-8 is checked once, from the
/// first non-ASCII byte to the end.
#[inline(always)]
fn escape_window(buf: &[u8], start: usize, end: usize, out: &mut Vec<u8>) -> bool {
    let mut hi = HI;
    let mut i = start;
    while i < end {
        let left = end - i;
        let at = match buf.get(i..).and_then(<[u8]>::first_chunk::<8>) {
            Some(w) => {
                let m = special(u64::from_le_bytes(*w), hi) & WORD_MASK[left.min(8)];
                let kept = out.len();
                out.extend_from_slice(w);
                if m == 0 {
                    if left <= 8 {
                        out.truncate(kept + left);
                        return true;
                    }
                    i += 8;
                    continue;
                }
                let p = (m.trailing_zeros() / 8) as usize;
                out.truncate(kept + p);
                i + p
            }
            None => {
                // Fewer than 8 bytes left in `buf`: byte by byte.
                let hi_bit = if hi == 0 { 0 } else { 0x80 };
                let tail = buf.get(i..end).unwrap_or_default();
                match tail
                    .iter()
                    .position(|&b| JSON_ESCAPE[usize::from(b)] != 0 || b & hi_bit != 0)
                {
                    Some(p) => {
                        out.extend_from_slice(tail.get(..p).unwrap_or_default());
                        i + p
                    }
                    None => {
                        out.extend_from_slice(tail);
                        return true;
                    }
                }
            }
        };
        let Some(&b) = buf.get(at) else {
            return true;
        };
        if b >= 0x80 {
            // The bytes before are ASCII, so the string is UTF-8 iff the rest is; after
            // that, non-ASCII bytes are copied like any other.
            if std::str::from_utf8(buf.get(at..end).unwrap_or_default()).is_err() {
                return false;
            }
            hi = 0;
            i = at;
            continue;
        }
        match JSON_ESCAPE[usize::from(b)] {
            b'u' => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0x0f)],
            ]),
            e => out.extend_from_slice(&[b'\\', e]),
        }
        i = at + 1;
    }
    true
}

/// The escaped text of `buf[start..end]` without quotes (U+FFFD for bytes that are not
/// UTF-8), reading past `end` where `buf` goes on.
#[inline(always)]
fn escape_in(buf: &[u8], start: usize, end: usize, out: &mut Vec<u8>) {
    let mark = out.len();
    if !escape_window(buf, start, end, out) {
        out.truncate(mark);
        lossy_escape(buf.get(start..end).unwrap_or_default(), out);
    }
}

/// The escaped text of bytes that are not UTF-8 (rare: out of line).
#[cold]
#[inline(never)]
fn lossy_escape(bytes: &[u8], out: &mut Vec<u8>) {
    let fixed = String::from_utf8_lossy(bytes);
    escape_window(fixed.as_bytes(), 0, fixed.len(), out);
}

/// [`write_json_string`] of `buf[start..end]`, reading past `end` where `buf` goes on.
#[inline(always)]
fn write_json_string_in(buf: &[u8], start: usize, end: usize, out: &mut Vec<u8>) {
    out.push(b'"');
    escape_in(buf, start, end, out);
    out.push(b'"');
}

/// Appends `s` as a JSON string the way Ruby's `to_json` writes it: `"` and `\` escaped,
/// control characters as `\n`, `\r`, `\t`, `\b`, `\f` or `\u00xx`, everything else (`/`,
/// DEL, non-ASCII) as is. Bytes that are not UTF-8 become U+FFFD (the way
/// `String::from_utf8_lossy` replaces them) where Ruby would raise.
pub fn write_json_string(s: &[u8], out: &mut Vec<u8>) {
    out.reserve(s.len() + 10);
    write_json_string_in(s, 0, s.len(), out);
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
    let mut b = Vec::new();
    write_json_buf(v, &mut b);
    append_utf8(out, b);
}

/// A positive fixint (0..=127) in decimal, without itoa's buffer and copy.
#[inline(always)]
fn push_small(out: &mut Vec<u8>, v: u8) {
    if v < 10 {
        out.push(b'0' + v);
    } else if v < 100 {
        out.extend_from_slice(&[b'0' + v / 10, b'0' + v % 10]);
    } else {
        out.extend_from_slice(&[b'1', b'0' + (v - 100) / 10, b'0' + v % 10]);
    }
}

fn push_int(out: &mut Vec<u8>, i: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
}

/// [`write_json`] into a byte buffer (what the formatters use).
pub fn write_json_buf(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => push_int(out, u),
            (None, Some(n)) => push_int(out, n),
            (None, None) => {
                let _ = std::io::Write::write_fmt(out, format_args!("{i}"));
            }
        },
        Value::F32(f) => write_json_float(f64::from(*f), out),
        Value::F64(f) => write_json_float(*f, out),
        Value::String(s) => write_json_string(s.as_bytes(), out),
        Value::Binary(b) => write_json_string(b, out),
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_buf(x, out);
            }
            out.push(b']');
        }
        Value::Map(m) => {
            out.push(b'{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match k {
                    Value::String(s) => write_json_string(s.as_bytes(), out),
                    Value::Binary(b) => write_json_string(b, out),
                    other => write_json_string(to_s(other).as_bytes(), out),
                }
                out.push(b':');
                write_json_buf(x, out);
            }
            out.push(b'}');
        }
        Value::Ext(ty, data) => match ext_event_time(v) {
            Some((sec, _)) => push_int(out, sec),
            None => write_json_string(ext_to_s(*ty, data).as_bytes(), out),
        },
    }
}

/// Appends the JSON text of the msgpack value at the start of `raw` without building an
/// [`Value`]; returns the bytes consumed. Gives exactly [`write_json`]'s text.
/// `None` when `raw` is malformed or nested deeper than 64 levels (nothing is appended
/// then: callers fall back to [`write_json`]).
pub fn write_json_raw(raw: &[u8], out: &mut String) -> Option<usize> {
    let mut b = Vec::with_capacity(raw.len() + 16);
    let used = raw_value(raw, &mut b, 0)?;
    append_utf8(out, b);
    Some(used)
}

/// [`write_json_raw`] into a byte buffer: the hot path of json and out_file formatting (no
/// allocation per value). `None` when `raw` is malformed or nested deeper than 64 levels;
/// `out` may then hold a partial rendering: callers truncate it and fall back to
/// [`write_json_buf`].
pub fn write_json_raw_buf(raw: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    raw_value(raw, out, 0)
}

/// [`write_json_raw_buf`] for one record of a batch: a map's keys are looked up in and added
/// to `keys` (rendered once per batch). The text is the same.
pub(crate) fn write_json_raw_keyed(
    raw: &[u8],
    out: &mut Vec<u8>,
    keys: &mut KeyCache,
) -> Option<usize> {
    match raw.first() {
        Some(0x80..=0x8f | 0xde | 0xdf) => map::write_map(raw, out, 0, Some(keys)),
        _ => raw_value(raw, out, 0),
    }
}

#[inline(always)]
fn be(raw: &[u8], at: usize, n: usize) -> Option<u64> {
    let b = raw.get(at..)?;
    match n {
        1 => b.first().map(|&x| u64::from(x)),
        2 => b.first_chunk().map(|x| u64::from(u16::from_be_bytes(*x))),
        4 => b.first_chunk().map(|x| u64::from(u32::from_be_bytes(*x))),
        8 => b.first_chunk().map(|x| u64::from_be_bytes(*x)),
        _ => {
            let b = b.get(..n)?;
            Some(b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
        }
    }
}

/// The header length and body length of a str/bin value with marker `m`, if it is one.
#[inline(always)]
fn str_head(raw: &[u8], m: u8) -> Option<(usize, usize)> {
    Some(match m {
        0xa0..=0xbf => (1, usize::from(m & 0x1f)),
        0xd9 | 0xc4 => (2, be(raw, 1, 1)? as usize),
        0xda | 0xc5 => (3, be(raw, 1, 2)? as usize),
        0xdb | 0xc6 => (5, be(raw, 1, 4)? as usize),
        _ => return None,
    })
}

/// A str or bin value at the start of `raw`: its bytes (as sent, not checked for UTF-8) and
/// its total length; `None` for other values or truncated bytes.
#[inline(always)]
pub fn raw_str(raw: &[u8]) -> Option<(&[u8], usize)> {
    let (hdr, len) = str_head(raw, *raw.first()?)?;
    let end = hdr.checked_add(len)?;
    Some((raw.get(hdr..end)?, end))
}

fn raw_value(raw: &[u8], out: &mut Vec<u8>, depth: usize) -> Option<usize> {
    if depth > 64 {
        return None;
    }
    let m = *raw.first()?;
    match m {
        0x00..=0x7f => {
            push_small(out, m);
            Some(1)
        }
        0xa0..=0xbf | 0xd9..=0xdb | 0xc4..=0xc6 => {
            let (hdr, len) = str_head(raw, m)?;
            let end = hdr.checked_add(len)?;
            raw.get(hdr..end)?;
            write_json_string_in(raw, hdr, end, out);
            Some(end)
        }
        0xe0..=0xff => {
            push_int(out, m as i8);
            Some(1)
        }
        0xc0 => {
            out.extend_from_slice(b"null");
            Some(1)
        }
        0xc2 | 0xc3 => {
            out.extend_from_slice(if m == 0xc3 { b"true" } else { b"false" });
            Some(1)
        }
        0xcc..=0xcf => {
            let n = 1usize << (m - 0xcc);
            push_int(out, be(raw, 1, n)?);
            Some(1 + n)
        }
        0xd0..=0xd3 => {
            let n = 1usize << (m - 0xd0);
            let u = be(raw, 1, n)?;
            let shift = 64 - 8 * n as u32;
            push_int(out, ((u << shift) as i64) >> shift);
            Some(1 + n)
        }
        0xca => {
            let bits = be(raw, 1, 4)? as u32;
            write_json_float(f64::from(f32::from_bits(bits)), out);
            Some(5)
        }
        0xcb => {
            write_json_float(f64::from_bits(be(raw, 1, 8)?), out);
            Some(9)
        }
        // EventTime as fixext8 or ext8: its seconds.
        0xd7 if raw.get(1) == Some(&0) => {
            push_int(out, be(raw, 2, 4)?);
            raw.get(9)?;
            Some(10)
        }
        0xc7 if raw.get(1..3) == Some(&[8, 0]) => {
            push_int(out, be(raw, 3, 4)?);
            raw.get(10)?;
            Some(11)
        }
        0x90..=0x9f | 0xdc | 0xdd => {
            let (mut at, n) = match m {
                0x90..=0x9f => (1, usize::from(m & 0x0f)),
                0xdc => (3, be(raw, 1, 2)? as usize),
                _ => (5, be(raw, 1, 4)? as usize),
            };
            out.push(b'[');
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                at += raw_value(raw.get(at..)?, out, depth + 1)?;
            }
            out.push(b']');
            Some(at)
        }
        0x80..=0x8f | 0xde | 0xdf => map::write_map(raw, out, depth, None),
        // Other ext values and the rest: rare; render through the decoded value.
        _ => {
            let mut rest = raw;
            let v = rmpv::decode::read_value(&mut rest).ok()?;
            write_json_buf(&v, out);
            Some(raw.len() - rest.len())
        }
    }
}

/// Ruby's `to_s` of the scalar msgpack value at the start of `raw` (str/bin, integers,
/// floats, nil, booleans, EventTime), appended to `out`, and the bytes consumed. `None` for
/// values whose `to_s` is an `inspect` (arrays, maps, other ext values) or malformed bytes:
/// use [`write_to_s`] on the decoded value then.
pub fn write_scalar_to_s_raw(raw: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    let m = *raw.first()?;
    match m {
        0xa0..=0xbf | 0xd9..=0xdb | 0xc4..=0xc6 => {
            let (body, used) = raw_str(raw)?;
            match std::str::from_utf8(body) {
                Ok(_) => out.extend_from_slice(body),
                Err(_) => out.extend_from_slice(String::from_utf8_lossy(body).as_bytes()),
            }
            Some(used)
        }
        0xc0 => Some(1),
        0xc2 | 0xc3 => {
            out.extend_from_slice(if m == 0xc3 { b"true" } else { b"false" });
            Some(1)
        }
        0xca => {
            let bits = be(raw, 1, 4)? as u32;
            write_ruby_float_buf(f64::from(f32::from_bits(bits)), out);
            Some(5)
        }
        0xcb => {
            write_ruby_float_buf(f64::from_bits(be(raw, 1, 8)?), out);
            Some(9)
        }
        // Integers and EventTimes render as in JSON.
        0x00..=0x7f | 0xe0..=0xff | 0xcc..=0xd3 => raw_value(raw, out, 0),
        0xd7 if raw.get(1) == Some(&0) => raw_value(raw, out, 0),
        0xc7 if raw.get(1..3) == Some(&[8, 0]) => raw_value(raw, out, 0),
        _ => None,
    }
}

/// Skips the msgpack value at the start of `raw`; its length. `None` when malformed or
/// nested deeper than 64 levels.
pub fn skip_raw(raw: &[u8]) -> Option<usize> {
    skip_value(raw, 0)
}

fn skip_value(raw: &[u8], depth: usize) -> Option<usize> {
    if depth > 64 {
        return None;
    }
    let m = *raw.first()?;
    let (mut at, items) = match m {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => return Some(1),
        0xa0..=0xbf | 0xd9..=0xdb | 0xc4..=0xc6 => return raw_str(raw).map(|(_, n)| n),
        0xcc..=0xcf => (1 + (1usize << (m - 0xcc)), 0),
        0xd0..=0xd3 => (1 + (1usize << (m - 0xd0)), 0),
        0xca => (5, 0),
        0xcb => (9, 0),
        0xd4..=0xd8 => (2 + (1usize << (m - 0xd4)), 0),
        0xc7 => (3 + be(raw, 1, 1)? as usize, 0),
        0xc8 => (4 + be(raw, 1, 2)? as usize, 0),
        0xc9 => (6 + be(raw, 1, 4)? as usize, 0),
        0x90..=0x9f => (1, usize::from(m & 0x0f)),
        0xdc => (3, be(raw, 1, 2)? as usize),
        0xdd => (5, be(raw, 1, 4)? as usize),
        0x80..=0x8f => (1, 2 * usize::from(m & 0x0f)),
        0xde => (3, 2 * be(raw, 1, 2)? as usize),
        0xdf => (5, 2 * be(raw, 1, 4)? as usize),
        _ => return None,
    };
    for _ in 0..items {
        at = at.checked_add(skip_value(raw.get(at..)?, depth + 1)?)?;
    }
    raw.get(..at)?;
    Some(at)
}

/// The entries of the msgpack map at the start of `raw`, in order, as [`RawPair`]s (keys that
/// are str or bin); `None` when `raw` is not a map.
pub fn raw_map_pairs(raw: &[u8]) -> Option<RawMapPairs<'_>> {
    let m = *raw.first()?;
    let (at, n) = match m {
        0x80..=0x8f => (1, usize::from(m & 0x0f)),
        0xde => (3, be(raw, 1, 2)? as usize),
        0xdf => (5, be(raw, 1, 4)? as usize),
        _ => return None,
    };
    Some(RawMapPairs {
        raw,
        at,
        left: n,
        failed: false,
    })
}

/// One entry of a raw map ([`raw_map_pairs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawPair<'a> {
    /// The key's bytes (not checked for UTF-8).
    pub key: &'a [u8],
    /// Whether the key is a msgpack str (a Ruby String) rather than a bin.
    pub key_is_str: bool,
    /// The value's raw msgpack bytes.
    pub value: &'a [u8],
}

/// Iterator of [`raw_map_pairs`]: `Some(None)` once on malformed bytes or a key that is not
/// a str or bin, then nothing.
#[derive(Debug, Clone)]
pub struct RawMapPairs<'a> {
    raw: &'a [u8],
    at: usize,
    left: usize,
    failed: bool,
}

impl<'a> RawMapPairs<'a> {
    /// Bytes consumed so far (the whole map once every pair was read).
    pub fn position(&self) -> usize {
        self.at
    }
}

impl<'a> Iterator for RawMapPairs<'a> {
    type Item = Option<RawPair<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.failed {
            return None;
        }
        self.left -= 1;
        let pair = (|| {
            let rest = self.raw.get(self.at..)?;
            let (key, used) = raw_str(rest)?;
            let key_is_str = matches!(rest.first(), Some(0xa0..=0xbf | 0xd9..=0xdb));
            let vrest = rest.get(used..)?;
            let vlen = skip_value(vrest, 1)?;
            self.at += used + vlen;
            Some(RawPair {
                key,
                key_is_str,
                value: vrest.get(..vlen)?,
            })
        })();
        if pair.is_none() {
            self.failed = true;
        }
        Some(pair)
    }
}

fn write_json_float(f: f64, out: &mut Vec<u8>) {
    if f.is_finite() {
        write_ruby_float_buf(f, out);
    } else {
        out.extend_from_slice(b"null");
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

    fn check_escape(input: &[u8], expect: &str) {
        let mut out = Vec::new();
        write_json_string(input, &mut out);
        assert_eq!(String::from_utf8_lossy(&out), expect, "{input:?}");
    }

    #[test]
    fn json_string_escapes() {
        for (input, expect) in [
            (&b""[..], r#""""#),
            (b"plain", r#""plain""#),
            (b"exactly8", r#""exactly8""#),
            (b"a/b<>&'\x7f", "\"a/b<>&'\u{7f}\""),
            (b"q\"", r#""q\"""#),
            (b"\\", r#""\\""#),
            (b"\x00\x01\x1f", r#""\u0000\u0001\u001f""#),
            (b"\x08\x09\x0a\x0c\x0d\x0b", r#""\b\t\n\f\r\u000b""#),
            // the special byte at every offset of the first and second 8-byte word
            (b"\"1234567", r#""\"1234567""#),
            (b"1234567\"", r#""1234567\"""#),
            (b"12345678\n", r#""12345678\n""#),
            (b"123456789abcdef\\x", r#""123456789abcdef\\x""#),
            ("été \"日本\" 𝄞\n".as_bytes(), "\"été \\\"日本\\\" 𝄞\\n\""),
            ("0123456é\t".as_bytes(), "\"0123456é\\t\""),
            // not UTF-8: replacement characters, escapes still applied
            (b"a\xffb\"", "\"a\u{fffd}b\\\"\""),
            (b"12345678\xe6\x97", "\"12345678\u{fffd}\""),
            (b"\xc3\xa9\xc3", "\"é\u{fffd}\""),
            (b"\xed\xa0\x80", "\"\u{fffd}\u{fffd}\u{fffd}\""),
        ] {
            check_escape(input, expect);
        }
    }

    #[test]
    fn bytes_past_the_string_are_read_not_rendered() {
        let strings: [&[u8]; 8] = [
            b"",
            b"a",
            b"abcdefg",
            b"abcdefgh",
            b"q\"x",
            "é\n".as_bytes(),
            b"ab\xff",
            b"0123456789abcdef\\",
        ];
        let tails: [&[u8]; 5] = [
            b"",
            b"\"",
            b"\x00\x01\x02\x03\x04\x05\x06\x07",
            b"\xff\xfe",
            b"\\zzzzzzzzzz",
        ];
        for s in strings {
            let mut want = Vec::new();
            write_json_string(s, &mut want);
            for t in tails {
                let buf = [s, t].concat();
                let mut got = Vec::new();
                write_json_string_in(&buf, 0, s.len(), &mut got);
                assert_eq!(got, want, "{s:?} + {t:?}");
                // and from an offset, with bytes before it
                let buf = [&b"\"\xff"[..], s, t].concat();
                let mut got = Vec::new();
                write_json_string_in(&buf, 2, 2 + s.len(), &mut got);
                assert_eq!(got, want, "{s:?} + {t:?} at 2");
            }
        }
    }

    #[test]
    fn special_flags_the_first_byte_exactly() {
        // Each byte value alone at each position of a clean word.
        for b in 0u8..=255 {
            for pos in 0..8 {
                let mut w = *b"abcdefgh";
                w[pos] = b;
                let m = special(u64::from_le_bytes(w), HI);
                let needs = b < 0x20 || b == b'"' || b == b'\\' || b >= 0x80;
                if needs {
                    assert_eq!(m.trailing_zeros() / 8, pos as u32, "{b:#x} at {pos}");
                } else {
                    assert_eq!(m, 0, "{b:#x} at {pos}");
                }
                // Once UTF-8 is known, non-ASCII bytes pass.
                let m = special(u64::from_le_bytes(w), 0);
                assert_eq!(m != 0, needs && b < 0x80, "{b:#x} at {pos} (utf8)");
            }
        }
    }

    #[test]
    fn raw_scalars() {
        for (raw, json, to_s) in [
            (&[0x05][..], Some("5"), Some("5")),
            (&[0xff], Some("-1"), Some("-1")),
            (
                &[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                Some("18446744073709551615"),
                Some("18446744073709551615"),
            ),
            (
                &[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0],
                Some("-9223372036854775808"),
                Some("-9223372036854775808"),
            ),
            (&[0xd1, 0xff, 0x00], Some("-256"), Some("-256")),
            (
                &[0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0],
                Some("1.5"),
                Some("1.5"),
            ),
            (
                &[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],
                Some("null"),
                Some("NaN"),
            ),
            (
                &[0xca, 0x3d, 0xcc, 0xcc, 0xcd],
                Some("0.10000000149011612"),
                Some("0.10000000149011612"),
            ),
            (&[0xc0], Some("null"), Some("")),
            (&[0xc3], Some("true"), Some("true")),
            (
                &[0xd7, 0x00, 0, 0, 0, 10, 0, 0, 0, 5],
                Some("10"),
                Some("10"),
            ),
            (
                &[0xc7, 0x08, 0x00, 0, 0, 0, 11, 0, 0, 0, 5],
                Some("11"),
                Some("11"),
            ),
            (
                &[0xd4, 0x05, 0x01],
                Some(r##""#<struct MessagePack::ExtensionValue type=5, payload=\"\\x01\">""##),
                None,
            ),
            (&[0xa2, b'h', b'i'], Some(r#""hi""#), Some("hi")),
            (&[0xc4, 0x01, 0xff], Some("\"\u{fffd}\""), Some("\u{fffd}")),
            (&[0x91, 0x01], Some("[1]"), None),
            // truncated
            (&[0xcd, 0x01], None, None),
            (&[0xd7, 0x00, 0, 0], None, None),
            (&[0xa3, b'a'], None, None),
            // the reserved marker: rmpv reads it as nil (the old renderer did too)
            (&[0xc1], Some("null"), None),
        ] {
            let mut out = Vec::new();
            let got = write_json_raw_buf(raw, &mut out)
                .map(|_| String::from_utf8_lossy(&out).into_owned());
            assert_eq!(got.as_deref(), json, "{raw:x?}");
            let mut out = Vec::new();
            let got = write_scalar_to_s_raw(raw, &mut out)
                .map(|_| String::from_utf8_lossy(&out).into_owned());
            assert_eq!(got.as_deref(), to_s, "{raw:x?}");
        }
    }

    #[test]
    fn small_ints_in_decimal() {
        for v in 0u8..=127 {
            let mut out = Vec::new();
            push_small(&mut out, v);
            assert_eq!(out, v.to_string().into_bytes());
            // as a map value (inlined) and on its own
            let mut raw = vec![0x81, 0xa1, b'k', v];
            let mut out = Vec::new();
            assert_eq!(write_json_raw_buf(&raw, &mut out), Some(4));
            assert_eq!(String::from_utf8_lossy(&out), format!(r#"{{"k":{v}}}"#));
            raw.drain(..3);
            let mut out = Vec::new();
            assert_eq!(write_json_raw_buf(&raw, &mut out), Some(1));
            assert_eq!(out, v.to_string().into_bytes());
        }
    }

    #[test]
    fn raw_map_pairs_in_order() {
        // {"a": 1, bin "b": [2], 3: 4}
        let raw = [
            0x83, 0xa1, b'a', 0x01, 0xc4, 1, b'b', 0x91, 0x02, 0x03, 0x04,
        ];
        let mut it = raw_map_pairs(&raw).into_iter().flatten();
        let pair = |key: &'static [u8], key_is_str, value: &'static [u8]| RawPair {
            key,
            key_is_str,
            value,
        };
        assert_eq!(it.next(), Some(Some(pair(b"a", true, &[0x01]))));
        assert_eq!(it.next(), Some(Some(pair(b"b", false, &[0x91, 0x02]))));
        assert_eq!(it.next(), Some(None), "a non-string key stops the walk");
        assert_eq!(it.next(), None);
        assert!(raw_map_pairs(&[0x91, 0x01]).is_none());
        let Some(mut whole) = raw_map_pairs(&raw[..9]) else {
            panic!("a map");
        };
        assert_eq!(whole.by_ref().take(2).filter(Option::is_some).count(), 2);
        assert_eq!(whole.position(), 9);
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
