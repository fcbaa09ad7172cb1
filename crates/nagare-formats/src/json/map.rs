//! The JSON text of a msgpack map rendered straight from its bytes: the hot path of the json
//! and out_file formatters (a record is a map).
//!
//! The text is written through a cursor ([`Out`]) into the `Vec`'s spare capacity: room is
//! reserved ahead for the whole map at its start and checked again before each piece for the
//! widest rendering it can have, each piece is stored whole at the cursor (a fixed-size block
//! of which only a prefix may count), and the `Vec`'s length is moved to the cursor at the
//! end. Room is never zeroed. Each piece is then one bounds-checked store, with no length
//! update and no `memcpy` call per value; a string is scanned and copied a whole block
//! at a time (16 bytes with SSE2 on x86_64, 8 elsewhere) and the cursor advanced by the bytes
//! that belong to it. With a [`KeyCache`] (a batch's [`crate::Scratch`]), a key met before at
//! the same position is copied from its earlier rendering.
//!
//! The usual record — string keys, values that are strings, integers, nil or booleans — is
//! rendered here entirely. Any other value (floats, arrays, nested maps, ext) goes through the
//! general renderer (`raw_value`) at that point, non-string keys through Ruby's `to_s` of the
//! decoded key, strings longer than [`LONG`] through the `Vec` escaper (no room six times
//! their size is reserved for them); the text is the same either way.

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
/// The most map bytes room is made for ahead, at the map's start (more is made per piece as
/// needed). `raw` may run past the map (the rest of a chunk), so this stays small.
const START_ROOM: usize = 2 * 1024;
/// Strings longer than this are escaped through the `Vec` (room for them is not reserved ahead).
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

/// The first [`BLOCK`] bytes of `src`; when it is shorter (the last bytes of a record), its
/// bytes padded with zeros, gathered with a few overlapping fixed-size loads rather than a
/// `memcpy` call.
#[inline(always)]
fn load_block(src: &[u8]) -> [u8; BLOCK] {
    if let Some(w) = src.first_chunk::<BLOCK>() {
        return *w;
    }
    let n = src.len();
    // Two loads of `k` bytes, one at the start and one ending at `n` (they overlap when
    // n < 2k, and put the same bytes in the same places): every byte of `src`, once.
    macro_rules! pair {
        ($t:ty, $k:literal) => {{
            let head = src
                .first_chunk::<$k>()
                .map_or(0, |h| <$t>::from_le_bytes(*h));
            let tail = src
                .last_chunk::<$k>()
                .map_or(0, |t| <$t>::from_le_bytes(*t));
            u128::from(head) | (u128::from(tail) << (8 * (n - $k)))
        }};
    }
    let v = match n {
        8.. => pair!(u64, 8),
        4..=7 => pair!(u32, 4),
        2..=3 => pair!(u16, 2),
        1 => src.first().map_or(0, |&b| u128::from(b)),
        0 => 0,
    };
    let bytes = v.to_le_bytes();
    match bytes.first_chunk::<BLOCK>() {
        Some(w) => *w,
        None => [0u8; BLOCK],
    }
}

/// The rendered text of map keys met before (`"key":`), by their raw msgpack bytes (header
/// included), one slot per position in the map: the records of one chunk usually share
/// their keys, in the same order, so a key is rendered once per chunk and then found with
/// one masked 16-byte compare. Only keys whose raw bytes fit in 16 are kept.
///
/// It also keeps whole pairs (`"key":value`) whose raw bytes fit in 32, again one per
/// position: fields such as a level, a host or a pid often repeat the same value through a
/// chunk, and such a pair is then found with two masked compares and copied as one piece. A
/// position whose pair keeps changing ([`PAIR_MISSES`] times) stops being kept, so a
/// sequence number or a timestamp costs no more than before.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeyCache {
    slots: Vec<Piece<1, KEY_TEXT>>,
    pairs: Vec<PairSlot>,
}

/// Raw msgpack bytes met before (at most `16 * H`) and their JSON text (at most `T`): found
/// again with `H` masked 16-byte compares and copied as one fixed-size piece.
#[derive(Debug, Clone, Copy)]
struct Piece<const H: usize, const T: usize> {
    /// The raw bytes, zero-padded, as little-endian 16-byte halves ([`load_block16`]).
    raw: [u128; H],
    /// The low `raw_len` bytes of the halves.
    mask: [u128; H],
    /// 0: nothing kept (never matches).
    raw_len: usize,
    /// The text and room to copy it as one fixed-size piece.
    text: [u8; T],
    text_len: usize,
}

impl<const H: usize, const T: usize> Piece<H, T> {
    /// A piece nothing matches.
    const NONE: Self = Piece {
        raw: [1; H],
        mask: [0; H],
        raw_len: 0,
        text: [0; T],
        text_len: 0,
    };

    /// The piece for `raw` rendered as `text`; `None` when either is empty or too long.
    fn new(raw: &[u8], text: &[u8]) -> Option<Self> {
        if raw.is_empty() || raw.len() > 16 * H || text.len() > T {
            return None;
        }
        let mut p = Self::NONE;
        for (h, (r, m)) in p.raw.iter_mut().zip(p.mask.iter_mut()).enumerate() {
            let half = raw.get(16 * h..).unwrap_or_default();
            *r = u128::from_le_bytes(load_block16(half));
            *m = match half.len() {
                0 => 0,
                16.. => u128::MAX,
                n => (1u128 << (8 * n)) - 1,
            };
        }
        p.raw_len = raw.len();
        p.text.get_mut(..text.len())?.copy_from_slice(text);
        p.text_len = text.len();
        Some(p)
    }

    /// Whether `src` starts with this piece's raw bytes (never for [`Piece::NONE`], which
    /// is told apart before any load).
    #[inline(always)]
    fn matches(&self, src: &[u8]) -> bool {
        if self.raw_len == 0 || src.len() < self.raw_len {
            return false;
        }
        let mut h = 0;
        while h < H {
            let half = src.get(16 * h..).unwrap_or_default();
            if u128::from_le_bytes(load_block16(half)) & self.mask[h] != self.raw[h] {
                return false;
            }
            h += 1;
        }
        true
    }
}

/// A whole pair met before at one map position, and how often that position held another.
#[derive(Debug, Clone, Copy)]
struct PairSlot {
    piece: Piece<PAIR_HALVES, PAIR_TEXT>,
    /// Times the position held another pair than the one kept.
    misses: u8,
}

/// Pairs of more than `16 * PAIR_HALVES` raw bytes are not kept.
const PAIR_HALVES: usize = 2;
/// Pairs rendered longer than this are not kept.
const PAIR_TEXT: usize = 64;
/// A position stops keeping pairs after this many misses (per batch).
const PAIR_MISSES: u8 = 4;

/// Keys rendered longer than this (`"key":` included) are not cached.
const KEY_TEXT: usize = 32;
/// Keys cached per map position for at most this many positions.
const KEY_SLOTS: usize = 64;

impl KeyCache {
    /// The key kept for position `i` if `key` starts with it.
    #[inline(always)]
    fn find(&self, i: usize, key: &[u8]) -> Option<&Piece<1, KEY_TEXT>> {
        self.slots.get(i).filter(|p| p.matches(key))
    }

    /// The pair kept for position `i` if `key` (a pair's key and the rest) starts with it.
    #[inline(always)]
    fn find_pair(&self, i: usize, key: &[u8]) -> Option<&Piece<PAIR_HALVES, PAIR_TEXT>> {
        self.pairs
            .get(i)
            .map(|p| &p.piece)
            .filter(|p| p.matches(key))
    }

    /// Whether a pair rendered in `text_len` bytes may be kept for position `i` (which did
    /// not match the pair kept there, if any): counts the miss.
    #[inline(always)]
    fn pair_wanted(&mut self, i: usize, text_len: usize) -> bool {
        if text_len > PAIR_TEXT || i >= KEY_SLOTS {
            return false;
        }
        match self.pairs.get_mut(i) {
            Some(p) if p.misses >= PAIR_MISSES => false,
            Some(p) => {
                if p.piece.raw_len != 0 {
                    p.misses += 1;
                    if p.misses >= PAIR_MISSES {
                        p.piece = Piece::NONE;
                        return false;
                    }
                }
                true
            }
            None => true,
        }
    }

    /// Keeps the pair `raw` (key and value), rendered as `text`, for position `i`.
    #[cold]
    #[inline(never)]
    fn store_pair(&mut self, i: usize, raw: &[u8], text: &[u8]) {
        let Some(piece) = Piece::new(raw, text).filter(|_| i < KEY_SLOTS) else {
            return;
        };
        while self.pairs.len() <= i {
            self.pairs.push(PairSlot {
                piece: Piece::NONE,
                misses: 0,
            });
        }
        if let Some(p) = self.pairs.get_mut(i) {
            p.piece = piece;
        }
    }

    /// Remembers that the raw key `raw` renders as `text` at position `i`.
    #[cold]
    #[inline(never)]
    fn store(&mut self, i: usize, raw: &[u8], text: &[u8]) {
        if i >= KEY_SLOTS {
            return;
        }
        // Positions before `i` whose keys are not kept (too long) hold a piece that matches
        // nothing, so the keys after them are kept all the same.
        while self.slots.len() < i {
            self.slots.push(Piece::NONE);
        }
        let Some(piece) = Piece::new(raw, text) else {
            return;
        };
        match self.slots.get_mut(i) {
            Some(s) => *s = piece,
            None => self.slots.push(piece),
        }
    }
}

/// The first 16 bytes of `src`, zero-padded ([`load_block`] at 16 bytes whatever
/// [`BLOCK`] is).
#[inline(always)]
fn load_block16(src: &[u8]) -> [u8; 16] {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        load_block(src)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        let mut w = [0u8; 16];
        let lo = load_block(src);
        let hi = load_block(src.get(BLOCK..).unwrap_or_default());
        for (slot, b) in w.iter_mut().zip(lo.into_iter().chain(hi)) {
            *slot = b;
        }
        w
    }
}

/// A write cursor over `v`'s spare capacity: `v[..v.len()]` is text rendered before, the
/// bytes from `v.len()` to `pos` are rendered text not yet counted in the length (written
/// into the spare capacity), and the capacity past `pos` is room the next pieces are stored
/// into. Pieces are stored whole (a fixed-size block, of which only a prefix may count), so
/// room is never zeroed ahead. `v.len() <= pos <= cap`, and every byte below `pos` has been
/// written: [`Out::commit`] relies on it.
///
/// The cursor keeps `v`'s buffer pointer and capacity ([`Out::refresh`]) so that a store is
/// one compare and one copy, with nothing read back from the `Vec`: at ~25 stores per
/// record, the hot path of out_file. The `unsafe` is in two places, each with its reason.
struct Out<'a> {
    v: &'a mut Vec<u8>,
    /// `v`'s buffer, as `as_mut_ptr` gave it after the last call that may have moved it.
    ptr: *mut u8,
    /// `v.capacity()` at that time.
    cap: usize,
    pos: usize,
}

impl<'a> Out<'a> {
    fn new(v: &'a mut Vec<u8>) -> Out<'a> {
        let (ptr, cap) = (v.as_mut_ptr(), v.capacity());
        Out {
            pos: v.len(),
            v,
            ptr,
            cap,
        }
    }

    /// Takes `v`'s buffer pointer and capacity again (after anything that may move it).
    #[inline(always)]
    fn refresh(&mut self) {
        self.ptr = self.v.as_mut_ptr();
        self.cap = self.v.capacity();
    }

    /// Makes at least `need` bytes of room after the cursor.
    #[inline(always)]
    fn room(&mut self, need: usize) {
        if self.cap.saturating_sub(self.pos) < need {
            self.grow(need);
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, need: usize) {
        // The text below `pos` must be inside the length before the `Vec` may move.
        self.commit();
        self.v.reserve(need.saturating_add(SLACK));
        self.refresh();
    }

    /// Counts the rendered text in `v`'s length.
    #[inline(always)]
    fn commit(&mut self) {
        if self.pos <= self.cap && self.cap <= self.v.capacity() {
            // SAFETY: `v.len() <= pos <= v.capacity()`, and every byte below `pos` was
            // written: those below `v.len()` by the `Vec`'s own methods, those from
            // `v.len()` by `store`, and `pos` only moves over bytes just stored.
            unsafe { self.v.set_len(self.pos) };
        }
    }

    /// Stores `bytes` at the cursor. `None` only when no room was made for them (a bug the
    /// caller turns into the general renderer's answer, never a panic).
    #[inline(always)]
    fn put<const N: usize>(&mut self, bytes: [u8; N]) -> Option<()> {
        self.store(bytes)?;
        self.pos += N;
        Some(())
    }

    /// Writes `bytes` at the cursor without moving it (the caller then moves it over the
    /// bytes that count, at most `N`). `None` when there is no room for them.
    #[inline(always)]
    fn store<const N: usize>(&mut self, bytes: [u8; N]) -> Option<()> {
        if self.cap.saturating_sub(self.pos) < N {
            return None;
        }
        // SAFETY: `ptr` is `v`'s buffer of `cap` bytes (taken again after every call that
        // may move it: `new`, `grow`, `resync`), and `pos + N <= cap`, so the write is inside
        // the allocation. The bytes are at or past `v.len()`, in spare capacity no reference
        // points into, and `v` itself is borrowed mutably by this cursor alone.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(self.pos), N) };
        Some(())
    }

    /// Writes a cached piece's text at the cursor, after a comma unless it opens the map.
    #[inline(always)]
    fn put_piece<const H: usize, const T: usize>(
        &mut self,
        comma: bool,
        p: &Piece<H, T>,
    ) -> Option<()> {
        self.room(T + SLACK);
        if comma {
            self.put([b','])?;
        }
        self.store(p.text)?;
        self.pos += p.text_len;
        Some(())
    }

    /// The rendered text from `from` to the cursor (for the key caches; rare).
    fn text_since(&mut self, from: usize) -> Option<&[u8]> {
        self.commit();
        self.refresh();
        self.v.get(from..self.pos)
    }

    /// The `Vec` holding exactly the rendered text, for a renderer that appends to it; call
    /// [`Out::resync`] after.
    #[inline(always)]
    fn vec(&mut self) -> &mut Vec<u8> {
        self.commit();
        self.v
    }

    /// Takes the cursor to the end of what was appended to [`Out::vec`].
    #[inline(always)]
    fn resync(&mut self) {
        self.pos = self.v.len();
        self.refresh();
    }

    /// Counts the rendered text in the `Vec` and ends the cursor.
    fn finish(mut self) {
        self.commit();
    }

    /// `v` in decimal: digits made two at a time at the end of a stack buffer, then stored
    /// as one fixed 32-byte piece (no digit count first, no `memcpy` call). Needs room for
    /// 32 bytes.
    #[inline(always)]
    fn uint(&mut self, mut v: u64) -> Option<()> {
        // At most 20 digits end at index 20; 32 bytes from any start up to 20 fit in 52.
        let mut buf = [0u8; 52];
        let mut k = 20;
        while v >= 100 {
            k -= 2;
            buf.get_mut(k..k + 2)?
                .copy_from_slice(&DIGITS2[(v % 100) as usize]);
            v /= 100;
        }
        if v >= 10 {
            k -= 2;
            buf.get_mut(k..k + 2)?.copy_from_slice(&DIGITS2[v as usize]);
        } else {
            k -= 1;
            *buf.get_mut(k)? = b'0' + v as u8;
        }
        let digits = buf.get(k..)?.first_chunk::<32>()?;
        self.store(*digits)?;
        self.pos += 20 - k;
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
            let w = load_block(src.get(i..)?);
            self.store(w)?;
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
/// than the general renderer allows (`out` may then hold a partial rendering). With `keys`,
/// its keys are looked up in and added to that cache.
pub(super) fn write_map(
    raw: &[u8],
    out: &mut Vec<u8>,
    depth: usize,
    mut keys: Option<&mut KeyCache>,
) -> Option<usize> {
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
        if let Some(p) = keys.as_deref().and_then(|k| k.find_pair(i, key)) {
            o.put_piece(i > 0, p)?;
            at += p.raw_len;
            continue;
        }
        let pair_at = at;
        let pair_from = o.pos + usize::from(i > 0);
        if let Some(slot) = keys.as_deref().and_then(|k| k.find(i, key)) {
            o.put_piece(i > 0, slot)?;
            at += slot.raw_len;
        } else {
            match str_head(key, *key.first()?) {
                Some((hdr, len)) => {
                    let end = hdr.checked_add(len)?;
                    key.get(hdr..end)?;
                    o.room(SLACK);
                    if i > 0 {
                        o.put([b','])?;
                    }
                    let from = o.pos;
                    o.put([b'"'])?;
                    o.text(key, hdr, end)?;
                    o.room(SLACK);
                    o.put(*b"\":")?;
                    if let Some(k) = keys.as_deref_mut() {
                        k.store(i, key.get(..end)?, o.text_since(from)?);
                    }
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
        if let Some(k) = keys.as_deref_mut() {
            if at - pair_at <= 16 * PAIR_HALVES && k.pair_wanted(i, o.pos - pair_from) {
                k.store_pair(i, raw.get(pair_at..at)?, o.text_since(pair_from)?);
            }
        }
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

    /// Renders `raw` through a shared key cache and on its own: the same text.
    fn check_keyed(keys: &mut KeyCache, raw: &[u8], expect: &str) {
        let mut cached = b"x".to_vec();
        assert_eq!(write_map(raw, &mut cached, 0, Some(keys)), Some(raw.len()));
        let mut plain = b"x".to_vec();
        assert_eq!(write_map(raw, &mut plain, 0, None), Some(raw.len()));
        assert_eq!(
            String::from_utf8_lossy(&cached),
            format!("x{expect}"),
            "{raw:x?}"
        );
        assert_eq!(cached, plain);
    }

    #[test]
    fn cached_keys_match_their_raw_bytes_exactly() {
        let mut keys = KeyCache::default();
        for (raw, expect) in [
            (&b"\x82\xa1a\x01\xa1b\x02"[..], r#"{"a":1,"b":2}"#),
            // the same keys again (from the cache), then other values
            (b"\x82\xa1a\x01\xa1b\x02", r#"{"a":1,"b":2}"#),
            (b"\x82\xa1a\xa1x\xa1b\xc0", r#"{"a":"x","b":null}"#),
            // the keys swapped, a key one byte longer, the same key as str8 and as bin
            (b"\x82\xa1b\x01\xa1a\x02", r#"{"b":1,"a":2}"#),
            (b"\x82\xa2ab\x01\xa1b\x02", r#"{"ab":1,"b":2}"#),
            (b"\x82\xd9\x01a\x01\xc4\x01b\x02", r#"{"a":1,"b":2}"#),
            // a key that needs escaping, a key of 15 bytes (16 raw) and one of 16 (not kept)
            (b"\x81\xa2\"\n\x01", r#"{"\"\n":1}"#),
            (b"\x81\xa2\"\n\x01", r#"{"\"\n":1}"#),
            (
                b"\x82\xaf0123456789abcde\x01\xb00123456789abcdef\x02",
                r#"{"0123456789abcde":1,"0123456789abcdef":2}"#,
            ),
            (
                b"\x82\xaf0123456789abcde\x01\xb00123456789abcdef\x02",
                r#"{"0123456789abcde":1,"0123456789abcdef":2}"#,
            ),
            // a first key too long to keep, then keys kept after it
            (
                b"\x82\xb1a_key_of_17_bytes\x01\xa1b\x02",
                r#"{"a_key_of_17_bytes":1,"b":2}"#,
            ),
            (
                b"\x82\xb1a_key_of_17_bytes\x01\xa1b\x02",
                r#"{"a_key_of_17_bytes":1,"b":2}"#,
            ),
            (b"\x82\xa1b\x01\xa1b\x02", r#"{"b":1,"b":2}"#),
            // a key that ends the record's bytes early: a prefix of a cached key
            (b"\x81\xa1a\x01", r#"{"a":1}"#),
            (b"\x80", "{}"),
        ] {
            check_keyed(&mut keys, raw, expect);
        }
        // A truncated record whose key would match a cached key padded with zeros.
        let mut keys = KeyCache::default();
        check_keyed(&mut keys, b"\x81\xa2a\x00\x01", r#"{"a\u0000":1}"#);
        let mut out = Vec::new();
        assert_eq!(write_map(b"\x81\xa2a", &mut out, 0, Some(&mut keys)), None);
    }

    #[test]
    fn tails_loaded_without_memcpy() {
        let bytes: Vec<u8> = (1..=40).collect();
        for n in 0..=BLOCK + 2 {
            let src = &bytes[..n];
            let w = load_block(src);
            for (i, b) in w.iter().enumerate() {
                assert_eq!(*b, src.get(i).copied().unwrap_or(0), "{n} bytes, byte {i}");
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
