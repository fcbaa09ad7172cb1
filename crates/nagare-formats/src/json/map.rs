//! The JSON text of a msgpack map rendered straight from its bytes: the hot path of the json
//! and out_file formatters (a record is a map).
//!
//! The text is written through a cursor ([`Out`]) into bytes the `Vec` already holds: room is
//! made ahead of each key and value by growing the `Vec` (with zeros) to the widest rendering
//! that piece can have, the pieces are stored at the cursor, and the `Vec` is cut back to the
//! cursor at the end. Each piece is then one bounds-checked store, with no capacity check, no
//! length update and no `memcpy` call per value; a string is copied a whole 8-byte word at a
//! time and the cursor advanced by the bytes that belong to it.
//!
//! The usual record — string keys, values that are strings, integers, nil or booleans — is
//! rendered here entirely. Any other value (floats, arrays, nested maps, ext) goes through the
//! general renderer (`raw_value`) at that point, non-string keys through Ruby's `to_s` of the
//! decoded key, strings longer than [`LONG`] through the `Vec` escaper (no room six times
//! their size is zeroed for them); the text is the same either way.

use super::{
    HEX, JSON_ESCAPE, be, escape_in, lossy_escape, raw_value, str_head, to_s, write_json_string,
};
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
use super::{HI, WORD_MASK, special};

/// The widest JSON rendering of one byte of a string: a control character's `\u00XX`.
const PER_BYTE: usize = 6;
/// Room beyond `PER_BYTE` bytes per string byte that any piece may need: quotes, comma,
/// colon, the whole block the last store of a string writes past its end ([`BLOCK`]), or the
/// sign and 20 digits of an integer.
const SLACK: usize = 32;
/// The most room made ahead for a whole map at its start (more is made per piece as needed).
const START_ROOM: usize = 16 * 1024;
/// Strings longer than this are escaped through the `Vec` (room for them is not zeroed ahead).
pub(super) const LONG: usize = 2048;

/// Two decimal digits for each value below 100.
const DIGITS2: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// The bytes a string is scanned and copied by at a time: SSE2's 16 on x86_64 (always
/// there), a machine word elsewhere.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
const BLOCK: usize = 16;
/// The bytes a string is scanned and copied by at a time.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
const BLOCK: usize = 8;

/// The index of the first of the first `left` bytes of `w` that a JSON string cannot hold
/// as is: a control character, `"` or `\`, or, while `ascii` (UTF-8 not checked yet), a
/// byte >= 0x80.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn first_special(w: &[u8; BLOCK], ascii: bool, left: usize) -> Option<usize> {
    // SAFETY: `sse2_first_special` only needs SSE2, which this build enables for every
    // function (the cfg above; x86_64's baseline), so every CPU it runs on has it.
    unsafe { sse2_first_special(w, ascii, left) }
}

/// [`first_special`] with SSE2 compares.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
#[inline]
fn sse2_first_special(w: &[u8; BLOCK], ascii: bool, left: usize) -> Option<usize> {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x,
        _mm_set1_epi8,
    };
    let [a, b] = [w.first_chunk::<8>(), w.last_chunk::<8>()].map(|h| match h {
        Some(h) => i64::from_le_bytes(*h),
        None => 0,
    });
    let v = _mm_set_epi64x(b, a);
    // Signed: bytes >= 0x80 are below 0x20 too.
    let low = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
    let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
    let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
    let mut m = _mm_movemask_epi8(_mm_or_si128(low, _mm_or_si128(quote, backslash))) as u32;
    if !ascii {
        // Bytes >= 0x80 pass once the string is known to be UTF-8.
        m &= !(_mm_movemask_epi8(v) as u32);
    }
    m &= (1u32 << left.min(BLOCK)) - 1;
    (m != 0).then(|| m.trailing_zeros() as usize)
}

/// The index of the first of the first `left` bytes of `w` that a JSON string cannot hold
/// as is: a control character, `"` or `\`, or, while `ascii` (UTF-8 not checked yet), a
/// byte >= 0x80.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn first_special(w: &[u8; BLOCK], ascii: bool, left: usize) -> Option<usize> {
    let m = special(u64::from_le_bytes(*w), if ascii { HI } else { 0 }) & WORD_MASK[left.min(8)];
    (m != 0).then(|| (m.trailing_zeros() / 8) as usize)
}

/// A write cursor into `v`: bytes before `pos` are rendered text, bytes from `pos` to
/// `v.len()` are room (zeros or stale text) that the next pieces overwrite. `pos <= v.len()`.
struct Out<'a> {
    v: &'a mut Vec<u8>,
    pos: usize,
}

impl<'a> Out<'a> {
    fn new(v: &'a mut Vec<u8>) -> Out<'a> {
        Out { pos: v.len(), v }
    }

    /// Makes at least `need` bytes of room after the cursor.
    #[inline(always)]
    fn room(&mut self, need: usize) {
        if self.v.len() - self.pos < need {
            self.grow(need);
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, need: usize) {
        self.v
            .resize(self.pos.saturating_add(need).saturating_add(SLACK), 0);
    }

    /// Stores `bytes` at the cursor. `None` only when no room was made for them (a bug the
    /// caller turns into the general renderer's answer, never a panic).
    #[inline(always)]
    fn put<const N: usize>(&mut self, bytes: [u8; N]) -> Option<()> {
        self.v
            .get_mut(self.pos..self.pos + N)?
            .copy_from_slice(&bytes);
        self.pos += N;
        Some(())
    }

    /// The `Vec` cut back to the rendered text, for a renderer that appends to it; call
    /// [`Out::resync`] after.
    #[inline(always)]
    fn vec(&mut self) -> &mut Vec<u8> {
        self.v.truncate(self.pos);
        self.v
    }

    /// Takes the cursor to the end of what was appended to [`Out::vec`].
    #[inline(always)]
    fn resync(&mut self) {
        self.pos = self.v.len();
    }

    /// Cuts the `Vec` back to the rendered text.
    fn finish(self) {
        self.v.truncate(self.pos);
    }

    /// `v` in decimal.
    #[inline(always)]
    fn uint(&mut self, mut v: u64) -> Option<()> {
        let n = v.checked_ilog10().unwrap_or(0) as usize + 1;
        let d = self.v.get_mut(self.pos..self.pos + n)?;
        let mut k = n;
        while v >= 100 {
            k = k.checked_sub(2)?;
            d.get_mut(k..k + 2)?
                .copy_from_slice(&DIGITS2[(v % 100) as usize]);
            v /= 100;
        }
        if v >= 10 {
            d.get_mut(..2)?.copy_from_slice(&DIGITS2[v as usize]);
        } else {
            *d.first_mut()? = b'0' + v as u8;
        }
        self.pos += n;
        Some(())
    }

    /// `v` in decimal, with its sign.
    #[inline(always)]
    fn int(&mut self, v: i64) -> Option<()> {
        if v < 0 {
            self.put([b'-'])?;
        }
        self.uint(v.unsigned_abs())
    }

    /// The escaped text of `src[start..end]` (no quotes); `Some(false)` when those bytes are
    /// not UTF-8 (the cursor then stands somewhere inside the partial text). Needs room for
    /// `PER_BYTE * (end - start) + BLOCK` bytes. Bytes of `src` past `end` may be read, never
    /// rendered.
    ///
    /// Each block of [`BLOCK`] bytes is checked ([`first_special`]) and stored whole; the
    /// cursor then moves to the string's end or to the first byte that needs attention. UTF-8
    /// is checked once, from the first non-ASCII byte to the end.
    #[inline(always)]
    fn escape(&mut self, src: &[u8], start: usize, end: usize) -> Option<bool> {
        let mut ascii = true;
        let mut i = start;
        while i < end {
            let left = end - i;
            let w = match src.get(i..).and_then(<[u8]>::first_chunk::<BLOCK>) {
                Some(w) => *w,
                None => {
                    // The last bytes of `src`: a block padded with zeros (never rendered:
                    // `left` stops before them).
                    let rest = src.get(i..)?;
                    let mut w = [0u8; BLOCK];
                    w.get_mut(..rest.len())?.copy_from_slice(rest);
                    w
                }
            };
            self.v
                .get_mut(self.pos..self.pos + BLOCK)?
                .copy_from_slice(&w);
            let Some(p) = first_special(&w, ascii, left) else {
                if left <= BLOCK {
                    self.pos += left;
                    return Some(true);
                }
                self.pos += BLOCK;
                i += BLOCK;
                continue;
            };
            self.pos += p;
            let at = i + p;
            let b = *src.get(at)?;
            if b >= 0x80 {
                // The bytes before are ASCII, so the string is UTF-8 iff the rest is; after
                // that, non-ASCII bytes are copied like any other.
                if std::str::from_utf8(src.get(at..end)?).is_err() {
                    return Some(false);
                }
                ascii = false;
                i = at;
                continue;
            }
            match JSON_ESCAPE[usize::from(b)] {
                b'u' => self.put([
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0x0f)],
                ])?,
                e => self.put([b'\\', e])?,
            }
            i = at + 1;
        }
        Some(true)
    }

    /// The escaped text of `src[start..end]`, U+FFFD for bytes that are not UTF-8 (as
    /// [`escape_in`]); makes its own room.
    #[inline(always)]
    fn text(&mut self, src: &[u8], start: usize, end: usize) -> Option<()> {
        let len = end - start;
        if len > LONG {
            escape_in(src, start, end, self.vec());
            self.resync();
            return Some(());
        }
        self.room(PER_BYTE * len + SLACK);
        let from = self.pos;
        if !self.escape(src, start, end)? {
            self.pos = from;
            lossy_escape(src.get(start..end)?, self.vec());
            self.resync();
        }
        Some(())
    }
}

/// Appends the JSON text of the msgpack map at the start of `raw` (marker `0x80..=0x8f`,
/// `0xde` or `0xdf`); the bytes consumed. `None` when `raw` is malformed or nested deeper
/// than the general renderer allows (`out` may then hold a partial rendering).
pub(super) fn write_map(raw: &[u8], out: &mut Vec<u8>, depth: usize) -> Option<usize> {
    let m = *raw.first()?;
    let (mut at, n) = match m {
        0x80..=0x8f => (1, usize::from(m & 0x0f)),
        0xde => (3, be(raw, 1, 2)? as usize),
        0xdf => (5, be(raw, 1, 4)? as usize),
        _ => return None,
    };
    let mut o = Out::new(out);
    o.room(PER_BYTE * raw.len().min(START_ROOM) + SLACK);
    o.put([b'{'])?;
    for i in 0..n {
        let key = raw.get(at..)?;
        match str_head(key, *key.first()?) {
            Some((hdr, len)) => {
                let end = hdr.checked_add(len)?;
                key.get(hdr..end)?;
                o.room(SLACK);
                if i > 0 {
                    o.put(*b",\"")?;
                } else {
                    o.put([b'"'])?;
                }
                o.text(key, hdr, end)?;
                o.room(SLACK);
                o.put(*b"\":")?;
                at += end;
            }
            None => {
                // Non-string keys: Ruby's `to_s`, through the decoded value.
                let mut rest = key;
                let k = rmpv::decode::read_value(&mut rest).ok()?;
                let v = o.vec();
                if i > 0 {
                    v.push(b',');
                }
                write_json_string(to_s(&k).as_bytes(), v);
                v.push(b':');
                o.resync();
                at += key.len() - rest.len();
            }
        }
        let v = raw.get(at..)?;
        let vm = *v.first()?;
        at += match vm {
            0xa0..=0xbf | 0xd9..=0xdb | 0xc4..=0xc6 => {
                let (hdr, len) = str_head(v, vm)?;
                let end = hdr.checked_add(len)?;
                v.get(hdr..end)?;
                o.room(SLACK);
                o.put([b'"'])?;
                o.text(v, hdr, end)?;
                o.room(SLACK);
                o.put([b'"'])?;
                end
            }
            0x00..=0x7f => {
                o.room(SLACK);
                o.uint(u64::from(vm))?;
                1
            }
            0xcc..=0xcf => {
                let len = 1usize << (vm - 0xcc);
                o.room(SLACK);
                o.uint(be(v, 1, len)?)?;
                1 + len
            }
            0xe0..=0xff => {
                o.room(SLACK);
                o.int(i64::from(vm as i8))?;
                1
            }
            0xd0..=0xd3 => {
                let len = 1usize << (vm - 0xd0);
                let u = be(v, 1, len)?;
                let shift = 64 - 8 * len as u32;
                o.room(SLACK);
                o.int(((u << shift) as i64) >> shift)?;
                1 + len
            }
            0xc0 => {
                o.room(SLACK);
                o.put(*b"null")?;
                1
            }
            0xc2 => {
                o.room(SLACK);
                o.put(*b"false")?;
                1
            }
            0xc3 => {
                o.room(SLACK);
                o.put(*b"true")?;
                1
            }
            _ => {
                let used = raw_value(v, o.vec(), depth + 1)?;
                o.resync();
                used
            }
        };
    }
    o.room(SLACK);
    o.put([b'}'])?;
    o.finish();
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_uint(v: u64) {
        let mut buf = Vec::new();
        let mut o = Out::new(&mut buf);
        o.room(SLACK);
        assert_eq!(o.uint(v), Some(()));
        o.finish();
        assert_eq!(String::from_utf8_lossy(&buf), v.to_string());
    }

    #[test]
    fn first_special_finds_the_first_byte_exactly() {
        // Each byte value alone at each position of a clean block, every `left`.
        for b in 0u8..=255 {
            for pos in 0..BLOCK {
                let mut w = [b'a'; BLOCK];
                w[pos] = b;
                let needs = b < 0x20 || b == b'"' || b == b'\\';
                for left in 0..=BLOCK + 1 {
                    let seen = pos < left;
                    let want = (seen && (needs || b >= 0x80)).then_some(pos);
                    assert_eq!(first_special(&w, true, left), want, "{b:#x} at {pos}");
                    // Once UTF-8 is known, non-ASCII bytes pass.
                    let want = (seen && needs).then_some(pos);
                    assert_eq!(first_special(&w, false, left), want, "{b:#x} at {pos}");
                }
                // An earlier special byte wins.
                w[0] = b'"';
                assert_eq!(first_special(&w, true, BLOCK), Some(0));
            }
        }
    }

    #[test]
    fn integers_in_decimal() {
        for v in [0, 1, 9, 10, 99, 100, 101, 999, 1000, 4242, 65535, 1_000_000] {
            check_uint(v);
        }
        for p in 0..20 {
            let v = 10u64.pow(p);
            check_uint(v - 1);
            check_uint(v);
            check_uint(v + 1);
        }
        check_uint(u64::MAX);
        for v in [i64::MIN, -1, -32, -128, 0, i64::MAX] {
            let mut buf = Vec::new();
            let mut o = Out::new(&mut buf);
            o.room(SLACK);
            assert_eq!(o.int(v), Some(()));
            o.finish();
            assert_eq!(String::from_utf8_lossy(&buf), v.to_string());
        }
    }
}
