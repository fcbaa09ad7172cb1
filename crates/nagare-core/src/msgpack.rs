//! A hand-written, bounds-checked msgpack skipper and head reader.
//!
//! [`value_len`] returns the byte length of the next complete msgpack value without decoding
//! it; [`Skipper`] does the same incrementally over a growing buffer (it never looks back at
//! bytes it already passed, so a caller may drop them with [`Skipper::rebase`]); [`read_head`]
//! reads one value header (a scalar whole, or an array/map header) for callers that walk a
//! structure by hand. None of them allocates or panics, whatever the input.
//!
//! Errors tell "incomplete, need more bytes" ([`MsgpackError::Incomplete`]) apart from
//! "this can never become valid" ([`MsgpackError::Malformed`], [`MsgpackError::TooDeep`]).

use thiserror::Error;

/// The deepest nesting of arrays and maps any function here accepts.
pub const MAX_DEPTH: usize = 128;

/// Why a msgpack value could not be skipped or read.
#[derive(Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MsgpackError {
    /// The buffer ends before the value does; `needed` is a lower bound of the value's size.
    #[error("incomplete msgpack value: need at least {needed} bytes, have {available}")]
    Incomplete {
        /// Lower bound of the total length of the value, in bytes from its start.
        needed: u64,
        /// Bytes available.
        available: usize,
    },
    /// The bytes can never form a valid value (e.g. the reserved marker `0xc1`).
    #[error("malformed msgpack at byte {offset}: {reason}")]
    Malformed {
        /// Offset of the offending byte, from the start of the value.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// Arrays and maps nest deeper than the limit.
    #[error("msgpack nesting deeper than {limit} levels at byte {offset}")]
    TooDeep {
        /// Offset of the container that went too deep.
        offset: usize,
        /// The depth limit in force.
        limit: usize,
    },
}

impl MsgpackError {
    /// Whether more bytes could complete the value.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, MsgpackError::Incomplete { .. })
    }

    /// The same error in the coordinates of an enclosing value in which the failing one
    /// starts `by` bytes in (offsets and sizes moved on by `by`).
    pub fn shifted(self, by: usize) -> Self {
        match self {
            MsgpackError::Incomplete { needed, available } => MsgpackError::Incomplete {
                needed: needed.saturating_add(by as u64),
                available: available.saturating_add(by),
            },
            MsgpackError::Malformed { offset, reason } => MsgpackError::Malformed {
                offset: offset.saturating_add(by),
                reason,
            },
            MsgpackError::TooDeep { offset, limit } => MsgpackError::TooDeep {
                offset: offset.saturating_add(by),
                limit,
            },
        }
    }
}

/// The result of one [`Skipper::advance`] step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The value is complete and ends at this offset of the buffer (exclusive).
    Complete(usize),
    /// More bytes are needed; the value is at least this many bytes long (offsets of the
    /// current buffer, i.e. after any [`Skipper::rebase`]).
    Incomplete {
        /// Lower bound of the end offset of the value.
        needed: u64,
    },
}

/// How one marker byte is laid out.
enum Layout {
    /// `hdr` bytes of header, then `body` bytes of payload (fixed-size scalars included).
    Fixed { hdr: usize, body: u64 },
    /// A header whose length field is `len_bytes` wide (BE) at offset 1, followed by
    /// `extra` bytes (the ext type), then that many payload bytes.
    Sized { len_bytes: usize, extra: usize },
    /// A fixed container: `hdr` bytes, `items` child values.
    FixContainer { items: u64 },
    /// A container whose count field is `len_bytes` wide; `per` child values per count.
    SizedContainer { len_bytes: usize, per: u64 },
    /// The reserved marker.
    Reserved,
}

#[inline]
fn layout(b: u8) -> Layout {
    match b {
        0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => Layout::Fixed { hdr: 1, body: 0 },
        0x80..=0x8f => Layout::FixContainer {
            items: u64::from(b & 0x0f) * 2,
        },
        0x90..=0x9f => Layout::FixContainer {
            items: u64::from(b & 0x0f),
        },
        0xa0..=0xbf => Layout::Fixed {
            hdr: 1,
            body: u64::from(b & 0x1f),
        },
        0xc1 => Layout::Reserved,
        0xc4 | 0xd9 => Layout::Sized {
            len_bytes: 1,
            extra: 0,
        },
        0xc5 | 0xda => Layout::Sized {
            len_bytes: 2,
            extra: 0,
        },
        0xc6 | 0xdb => Layout::Sized {
            len_bytes: 4,
            extra: 0,
        },
        0xc7 => Layout::Sized {
            len_bytes: 1,
            extra: 1,
        },
        0xc8 => Layout::Sized {
            len_bytes: 2,
            extra: 1,
        },
        0xc9 => Layout::Sized {
            len_bytes: 4,
            extra: 1,
        },
        0xcc | 0xd0 => Layout::Fixed { hdr: 1, body: 1 },
        0xcd | 0xd1 => Layout::Fixed { hdr: 1, body: 2 },
        0xca | 0xce | 0xd2 => Layout::Fixed { hdr: 1, body: 4 },
        0xcb | 0xcf | 0xd3 => Layout::Fixed { hdr: 1, body: 8 },
        0xd4 => Layout::Fixed { hdr: 1, body: 2 },
        0xd5 => Layout::Fixed { hdr: 1, body: 3 },
        0xd6 => Layout::Fixed { hdr: 1, body: 5 },
        0xd7 => Layout::Fixed { hdr: 1, body: 9 },
        0xd8 => Layout::Fixed { hdr: 1, body: 17 },
        0xdc => Layout::SizedContainer {
            len_bytes: 2,
            per: 1,
        },
        0xdd => Layout::SizedContainer {
            len_bytes: 4,
            per: 1,
        },
        0xde => Layout::SizedContainer {
            len_bytes: 2,
            per: 2,
        },
        0xdf => Layout::SizedContainer {
            len_bytes: 4,
            per: 2,
        },
    }
}

/// Reads a big-endian unsigned length of 1, 2 or 4 bytes at `at`.
#[inline]
fn be_len(buf: &[u8], at: usize, width: usize) -> Option<u64> {
    let bytes = buf.get(at..at.checked_add(width)?)?;
    Some(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// An incremental msgpack value skipper.
///
/// Feed it the same growing buffer (the value starts at offset 0) until it says
/// [`Progress::Complete`]. It keeps an explicit stack, so it never recurses, and it resumes
/// where it stopped, so skipping a value delivered in many pieces costs linear time.
#[derive(Clone)]
pub struct Skipper {
    pos: usize,
    body: u64,
    depth: usize,
    max_depth: usize,
    remaining: [u64; MAX_DEPTH],
}

impl Default for Skipper {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Skipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Skipper")
            .field("pos", &self.pos)
            .field("body", &self.body)
            .field("depth", &self.depth)
            .finish_non_exhaustive()
    }
}

impl Skipper {
    /// A skipper with the default depth limit [`MAX_DEPTH`].
    pub fn new() -> Self {
        Self::with_max_depth(MAX_DEPTH)
    }

    /// A skipper that rejects nesting deeper than `max_depth` (capped at [`MAX_DEPTH`]).
    pub fn with_max_depth(max_depth: usize) -> Self {
        Skipper {
            pos: 0,
            body: 0,
            depth: 0,
            max_depth: max_depth.min(MAX_DEPTH),
            remaining: [0; MAX_DEPTH],
        }
    }

    /// Forgets any progress: the next [`advance`](Self::advance) starts a new value at 0.
    #[inline]
    pub fn reset(&mut self) {
        self.pos = 0;
        self.body = 0;
        self.depth = 0;
    }

    /// Puts the skipper inside containers that a caller walked into itself (e.g. with the
    /// [`fast`](crate::fast) path): the next item starts at `pos`, and `open` lists, outermost
    /// first, how many items each open container still holds counting the next one (the
    /// request array's remaining elements, then an entries array's remaining entries...).
    ///
    /// Levels with a count of 0 are left out (they are finished). More levels than the
    /// skipper's depth limit are an error, as opening them would have been.
    pub fn resume_in(&mut self, pos: usize, open: &[u64]) -> Result<(), MsgpackError> {
        self.reset();
        for &count in open.iter().filter(|&&c| c > 0) {
            if self.depth >= self.max_depth {
                return Err(MsgpackError::TooDeep {
                    offset: pos,
                    limit: self.max_depth,
                });
            }
            self.remaining[self.depth] = count;
            self.depth += 1;
        }
        self.pos = pos;
        Ok(())
    }

    /// Offset up to which the value has been scanned.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Whether nothing has been scanned yet.
    pub fn is_fresh(&self) -> bool {
        self.pos == 0 && self.depth == 0 && self.body == 0
    }

    /// Tells the skipper the caller dropped the first `n` bytes of its buffer (`n` must not
    /// exceed [`position`](Self::position); larger values are clamped).
    pub fn rebase(&mut self, n: usize) {
        self.pos -= n.min(self.pos);
    }

    /// Lower bound of the value's end offset, given that the current item needs `cur` more
    /// bytes from `pos`.
    fn lower_bound(&self, cur: u64) -> u64 {
        let outer: u64 = self
            .remaining
            .iter()
            .take(self.depth)
            .map(|r| r.saturating_sub(1))
            .fold(0u64, u64::saturating_add);
        (self.pos as u64).saturating_add(cur).saturating_add(outer)
    }

    /// Marks the current item as finished; returns true when the whole value is.
    #[inline]
    fn finish_item(&mut self) -> bool {
        while self.depth > 0 {
            let top = &mut self.remaining[self.depth - 1];
            *top -= 1;
            if *top > 0 {
                return false;
            }
            self.depth -= 1;
        }
        true
    }

    /// Scans as far as `buf` allows.
    pub fn advance(&mut self, buf: &[u8]) -> Result<Progress, MsgpackError> {
        loop {
            if self.body > 0 {
                let avail = buf.len().saturating_sub(self.pos) as u64;
                let take = avail.min(self.body);
                // take <= avail, which fits in usize
                self.pos += take as usize;
                self.body -= take;
                if self.body > 0 {
                    return Ok(Progress::Incomplete {
                        needed: self.lower_bound(self.body),
                    });
                }
                if self.finish_item() {
                    return Ok(Progress::Complete(self.pos));
                }
                continue;
            }
            let Some(&b) = buf.get(self.pos) else {
                return Ok(Progress::Incomplete {
                    needed: self.lower_bound(1),
                });
            };
            match layout(b) {
                Layout::Fixed { hdr, body } => {
                    self.pos += hdr;
                    self.body = body;
                    if body == 0 && self.finish_item() {
                        return Ok(Progress::Complete(self.pos));
                    }
                }
                Layout::Sized { len_bytes, extra } => {
                    let hdr = 1 + len_bytes + extra;
                    let Some(len) = be_len(buf, self.pos + 1, len_bytes) else {
                        return Ok(Progress::Incomplete {
                            needed: self.lower_bound(hdr as u64),
                        });
                    };
                    if buf.len() < self.pos + hdr {
                        return Ok(Progress::Incomplete {
                            needed: self.lower_bound(hdr as u64 + len),
                        });
                    }
                    self.pos += hdr;
                    self.body = len;
                    if len == 0 && self.finish_item() {
                        return Ok(Progress::Complete(self.pos));
                    }
                }
                Layout::FixContainer { items } => self.open(1, items)?,
                Layout::SizedContainer { len_bytes, per } => {
                    let Some(count) = be_len(buf, self.pos + 1, len_bytes) else {
                        return Ok(Progress::Incomplete {
                            needed: self.lower_bound(1 + len_bytes as u64),
                        });
                    };
                    self.open(1 + len_bytes, count * per)?;
                }
                Layout::Reserved => {
                    return Err(MsgpackError::Malformed {
                        offset: self.pos,
                        reason: "reserved marker byte 0xc1",
                    });
                }
            }
            if self.depth == 0 && self.body == 0 && self.pos > 0 {
                // An empty container at top level finished in `open`.
                return Ok(Progress::Complete(self.pos));
            }
        }
    }

    /// Enters a container of `items` children whose header is `hdr` bytes.
    #[inline]
    fn open(&mut self, hdr: usize, items: u64) -> Result<(), MsgpackError> {
        if items == 0 {
            self.pos += hdr;
            // finish_item at depth 0 means the top-level value is done; advance() detects it
            // by depth == 0 after this returns.
            self.finish_item();
            return Ok(());
        }
        if self.depth >= self.max_depth {
            return Err(MsgpackError::TooDeep {
                offset: self.pos,
                limit: self.max_depth,
            });
        }
        self.remaining[self.depth] = items;
        self.depth += 1;
        self.pos += hdr;
        Ok(())
    }
}

/// Returns the byte length of the complete msgpack value at the start of `buf`.
///
/// Never panics; nesting deeper than [`MAX_DEPTH`] is an error.
///
/// Tries the non-streaming [`fast::skip`](crate::fast::skip) first; the streaming
/// [`Skipper`] only runs when that misses (and words the error).
pub fn value_len(buf: &[u8]) -> Result<usize, MsgpackError> {
    if let Ok(n) = crate::fast::skip(buf, 0, 0, MAX_DEPTH) {
        return Ok(n);
    }
    let mut s = Skipper::new();
    value_len_with(&mut s, buf)
}

/// [`value_len`] with a caller-provided (reused) skipper and its depth limit; the skipper is
/// reset first.
#[inline]
pub fn value_len_with(s: &mut Skipper, buf: &[u8]) -> Result<usize, MsgpackError> {
    if let Ok(n) = crate::fast::skip(buf, 0, 0, s.max_depth) {
        s.reset();
        return Ok(n);
    }
    s.reset();
    match s.advance(buf)? {
        Progress::Complete(n) => Ok(n),
        Progress::Incomplete { needed } => Err(MsgpackError::Incomplete {
            needed,
            available: buf.len(),
        }),
    }
}

/// One msgpack value header, as read by [`read_head`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Head<'a> {
    /// `nil`.
    Nil,
    /// A boolean.
    Bool(bool),
    /// Any integer (every msgpack integer fits an `i128`).
    Int(i128),
    /// A 32-bit float.
    F32(f32),
    /// A 64-bit float.
    F64(f64),
    /// A string's raw bytes (not checked for UTF-8).
    Str(&'a [u8]),
    /// A binary blob.
    Bin(&'a [u8]),
    /// An array header with its element count; the elements follow.
    Array(u32),
    /// A map header with its pair count; the pairs follow.
    Map(u32),
    /// An extension value: type and payload.
    Ext(i8, &'a [u8]),
}

impl<'a> Head<'a> {
    /// The bytes of a `str` or `bin`.
    pub fn str_or_bin(&self) -> Option<&'a [u8]> {
        match *self {
            Head::Str(s) | Head::Bin(s) => Some(s),
            _ => None,
        }
    }
}

fn incomplete(needed: usize, available: usize) -> MsgpackError {
    MsgpackError::Incomplete {
        needed: needed as u64,
        available,
    }
}

fn fixed<const N: usize>(buf: &[u8]) -> Result<[u8; N], MsgpackError> {
    buf.get(1..1 + N)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| incomplete(1 + N, buf.len()))
}

fn payload(buf: &[u8], hdr: usize, len: u64) -> Result<&[u8], MsgpackError> {
    let end = usize::try_from(len).ok().and_then(|l| l.checked_add(hdr));
    match end {
        Some(end) if end <= buf.len() => Ok(&buf[hdr..end]),
        _ => Err(MsgpackError::Incomplete {
            needed: (hdr as u64).saturating_add(len),
            available: buf.len(),
        }),
    }
}

/// Reads the value header at the start of `buf`.
///
/// Returns the head and the number of bytes it occupies: the whole value for scalars, str,
/// bin and ext; only the header for arrays and maps (their children follow).
pub fn read_head(buf: &[u8]) -> Result<(Head<'_>, usize), MsgpackError> {
    let Some(&b) = buf.first() else {
        return Err(incomplete(1, 0));
    };
    let sized =
        |width: usize| be_len(buf, 1, width).ok_or_else(|| incomplete(1 + width, buf.len()));
    Ok(match b {
        0x00..=0x7f => (Head::Int(i128::from(b)), 1),
        0xe0..=0xff => (Head::Int(i128::from(b as i8)), 1),
        0xc0 => (Head::Nil, 1),
        0xc2 => (Head::Bool(false), 1),
        0xc3 => (Head::Bool(true), 1),
        0x80..=0x8f => (Head::Map(u32::from(b & 0x0f)), 1),
        0x90..=0x9f => (Head::Array(u32::from(b & 0x0f)), 1),
        0xa0..=0xbf => {
            let p = payload(buf, 1, u64::from(b & 0x1f))?;
            (Head::Str(p), 1 + p.len())
        }
        0xc1 => {
            return Err(MsgpackError::Malformed {
                offset: 0,
                reason: "reserved marker byte 0xc1",
            });
        }
        0xc4..=0xc6 | 0xd9..=0xdb => {
            let width = match b {
                0xc4 | 0xd9 => 1,
                0xc5 | 0xda => 2,
                _ => 4,
            };
            let p = payload(buf, 1 + width, sized(width)?)?;
            let h = if b <= 0xc6 {
                Head::Bin(p)
            } else {
                Head::Str(p)
            };
            (h, 1 + width + p.len())
        }
        0xc7..=0xc9 => {
            let width = 1usize << (b - 0xc7);
            let len = sized(width)?;
            let ty = *buf
                .get(1 + width)
                .ok_or_else(|| incomplete(2 + width, buf.len()))? as i8;
            let p = payload(buf, 2 + width, len)?;
            (Head::Ext(ty, p), 2 + width + p.len())
        }
        0xd4..=0xd8 => {
            let len = 1usize << (b - 0xd4);
            let ty = *buf.get(1).ok_or_else(|| incomplete(2 + len, buf.len()))? as i8;
            let p = payload(buf, 2, len as u64)?;
            (Head::Ext(ty, p), 2 + len)
        }
        0xca => (Head::F32(f32::from_be_bytes(fixed::<4>(buf)?)), 5),
        0xcb => (Head::F64(f64::from_be_bytes(fixed::<8>(buf)?)), 9),
        0xcc => (
            Head::Int(i128::from(u8::from_be_bytes(fixed::<1>(buf)?))),
            2,
        ),
        0xcd => (
            Head::Int(i128::from(u16::from_be_bytes(fixed::<2>(buf)?))),
            3,
        ),
        0xce => (
            Head::Int(i128::from(u32::from_be_bytes(fixed::<4>(buf)?))),
            5,
        ),
        0xcf => (
            Head::Int(i128::from(u64::from_be_bytes(fixed::<8>(buf)?))),
            9,
        ),
        0xd0 => (
            Head::Int(i128::from(i8::from_be_bytes(fixed::<1>(buf)?))),
            2,
        ),
        0xd1 => (
            Head::Int(i128::from(i16::from_be_bytes(fixed::<2>(buf)?))),
            3,
        ),
        0xd2 => (
            Head::Int(i128::from(i32::from_be_bytes(fixed::<4>(buf)?))),
            5,
        ),
        0xd3 => (
            Head::Int(i128::from(i64::from_be_bytes(fixed::<8>(buf)?))),
            9,
        ),
        0xdc => (
            Head::Array(u32::from(u16::from_be_bytes(fixed::<2>(buf)?))),
            3,
        ),
        0xdd => (Head::Array(u32::from_be_bytes(fixed::<4>(buf)?)), 5),
        0xde => (
            Head::Map(u32::from(u16::from_be_bytes(fixed::<2>(buf)?))),
            3,
        ),
        0xdf => (Head::Map(u32::from_be_bytes(fixed::<4>(buf)?)), 5),
    })
}

/// Appends a msgpack `str` header for a string of `len` bytes (the shortest form).
pub fn write_str_header(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=31 => out.push(0xa0 | len as u8),
        32..=0xff => out.extend_from_slice(&[0xd9, len as u8]),
        0x100..=0xffff => {
            out.push(0xda);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdb);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
}

/// Appends a msgpack `str` (shortest header) holding `s`.
pub fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    write_str_header(out, s.len());
    out.extend_from_slice(s);
}

/// Appends a msgpack array header (the shortest form).
pub fn write_array_header(out: &mut Vec<u8>, len: u32) {
    match len {
        0..=15 => out.push(0x90 | len as u8),
        16..=0xffff => {
            out.push(0xdc);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdd);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
}

/// Appends a msgpack map header (the shortest form).
pub fn write_map_header(out: &mut Vec<u8>, len: u32) {
    match len {
        0..=15 => out.push(0x80 | len as u8),
        16..=0xffff => {
            out.push(0xde);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdf);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
}

/// Appends a msgpack integer (the shortest form).
pub fn write_int(out: &mut Vec<u8>, v: i64) {
    // rmp's writer into a Vec cannot fail.
    let _ = rmp::encode::write_sint(out, v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(input: &[u8], expect: Result<usize, MsgpackError>) {
        assert_eq!(value_len(input), expect, "input {input:02x?}");
    }

    fn inc(needed: u64, available: usize) -> Result<usize, MsgpackError> {
        Err(MsgpackError::Incomplete { needed, available })
    }

    #[test]
    fn a_nested_error_shifted_is_the_enclosing_values_error() {
        // [nil, <reserved>] fails at byte 2; its second element alone fails at byte 0.
        let whole = value_len(&[0x92, 0xc0, 0xc1]);
        let inner = value_len(&[0xc1]).map_err(|e| e.shifted(2));
        assert_eq!(inner, whole);
        // [nil, str8 of 5 with 1 byte]: the string needs 7 bytes, the array 9.
        let whole = value_len(&[0x92, 0xc0, 0xd9, 5, b'a']);
        let inner = value_len(&[0xd9, 5, b'a']).map_err(|e| e.shifted(2));
        assert_eq!(inner, whole);
    }

    #[test]
    fn value_len_table() {
        check(&[0x01], Ok(1));
        check(&[0xc0, 0xff], Ok(1));
        check(&[0xa3, b'a', b'b', b'c', 0], Ok(4));
        check(&[0xa3, b'a'], inc(4, 2));
        check(&[0x92, 0x01, 0x02], Ok(3));
        check(&[0x92, 0x01], inc(3, 2));
        check(&[0x90], Ok(1));
        check(&[0x80], Ok(1));
        check(&[0x91, 0x90], Ok(2));
        check(&[0x81, 0xa1, b'k', 0x90], Ok(4));
        check(&[0x81, 0xa1, b'k'], inc(4, 3));
        check(&[0xdb, 0, 0, 0, 3, b'x', b'y', b'z'], Ok(8));
        check(&[0xdb, 0, 0, 1, 0], inc(5 + 256, 5));
        check(&[0xdb, 0, 0], inc(5, 3));
        check(&[0xc4, 2, 1, 2], Ok(4));
        check(&[0xd7, 0, 0, 0, 0, 1, 0, 0, 0, 2], Ok(10));
        check(&[0xc7, 8, 0, 0, 0, 0, 1, 0, 0, 0, 2], Ok(11));
        check(&[0xcf, 0, 0, 0, 0, 0, 0, 0, 1], Ok(9));
        check(&[0xcb, 0, 0], inc(9, 3));
        check(&[0xdc, 0, 2, 1, 2], Ok(5));
        check(&[0xdd, 0, 0, 0, 0], Ok(5));
        check(&[0xdf, 0, 0, 0, 1, 1, 2], Ok(7));
        check(&[0xdd, 0xff, 0xff, 0xff, 0xff], inc(5 + 0xffff_ffff, 5));
        check(
            &[0xc1],
            Err(MsgpackError::Malformed {
                offset: 0,
                reason: "reserved marker byte 0xc1",
            }),
        );
        check(
            &[0x92, 0x01, 0xc1],
            Err(MsgpackError::Malformed {
                offset: 2,
                reason: "reserved marker byte 0xc1",
            }),
        );
        check(&[], inc(1, 0));
    }

    #[test]
    fn depth_limit() {
        let mut deep = vec![0x91; MAX_DEPTH];
        deep.push(0x01);
        check(&deep, Ok(MAX_DEPTH + 1));
        let mut too_deep = vec![0x91; MAX_DEPTH + 1];
        too_deep.push(0x01);
        check(
            &too_deep,
            Err(MsgpackError::TooDeep {
                offset: MAX_DEPTH,
                limit: MAX_DEPTH,
            }),
        );
    }

    #[test]
    fn streaming_resumes_and_rebases() {
        let v = [0x92, 0xa3, b'a', b'b', b'c', 0xc4, 3, 1, 2, 3];
        let mut s = Skipper::new();
        let mut got = None;
        for end in 0..=v.len() {
            match s.advance(&v[..end]).expect("valid prefix") {
                Progress::Complete(n) => {
                    got = Some((end, n));
                    break;
                }
                Progress::Incomplete { needed } => assert!(needed as usize <= v.len()),
            }
        }
        assert_eq!(got, Some((v.len(), v.len())));

        // Discarding consumed bytes keeps the skipper in step.
        let mut s = Skipper::new();
        assert_eq!(s.advance(&v[..7]), Ok(Progress::Incomplete { needed: 10 }));
        s.rebase(7);
        assert_eq!(s.advance(&v[7..]), Ok(Progress::Complete(3)));
    }

    #[test]
    fn resume_inside_containers() {
        // [tag, [e1, e2], {}] walked by hand up to e2: the skipper finishes the request.
        let v = [0x93, 0xa1, b't', 0x92, 0x01, 0x02, 0x80];
        let mut s = Skipper::new();
        assert_eq!(s.resume_in(5, &[2, 1]), Ok(()));
        assert_eq!(s.advance(&v[..6]), Ok(Progress::Incomplete { needed: 7 }));
        assert_eq!(s.advance(&v), Ok(Progress::Complete(7)));
        // Finished levels are left out.
        assert_eq!(s.resume_in(6, &[1, 0]), Ok(()));
        assert_eq!(s.advance(&v), Ok(Progress::Complete(7)));
        // Errors keep request offsets.
        let bad = [0x93, 0xa1, b't', 0x92, 0x01, 0xc1, 0x80];
        assert_eq!(s.resume_in(5, &[2, 1]), Ok(()));
        assert!(matches!(
            s.advance(&bad),
            Err(MsgpackError::Malformed { offset: 5, .. })
        ));
        let mut shallow = Skipper::with_max_depth(1);
        assert!(matches!(
            shallow.resume_in(5, &[2, 1]),
            Err(MsgpackError::TooDeep { limit: 1, .. })
        ));
    }

    #[test]
    fn read_head_table() {
        let cases: &[(&[u8], Head<'_>, usize)] = &[
            (&[0x05], Head::Int(5), 1),
            (&[0xff], Head::Int(-1), 1),
            (&[0xd0, 0x80], Head::Int(-128), 2),
            (
                &[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                Head::Int(u64::MAX as i128),
                9,
            ),
            (&[0xa2, b'h', b'i'], Head::Str(b"hi"), 3),
            (&[0xc4, 1, 9], Head::Bin(&[9]), 3),
            (&[0x93], Head::Array(3), 1),
            (&[0xde, 0, 20], Head::Map(20), 3),
            (
                &[0xd7, 0, 1, 2, 3, 4, 5, 6, 7, 8],
                Head::Ext(0, &[1, 2, 3, 4, 5, 6, 7, 8]),
                10,
            ),
            (&[0xc7, 1, 5, 9], Head::Ext(5, &[9]), 4),
            (&[0xc2], Head::Bool(false), 1),
            (&[0xc0], Head::Nil, 1),
        ];
        for (input, head, len) in cases {
            assert_eq!(read_head(input), Ok((*head, *len)), "input {input:02x?}");
        }
        assert!(read_head(&[0xdb, 0, 0, 0, 9, 1]).is_err_and(|e| e.is_incomplete()));
        assert!(read_head(&[0xc1]).is_err_and(|e| !e.is_incomplete()));
    }

    fn arb_value() -> impl Strategy<Value = rmpv::Value> {
        let leaf = prop_oneof![
            Just(rmpv::Value::Nil),
            any::<bool>().prop_map(rmpv::Value::from),
            any::<i64>().prop_map(rmpv::Value::from),
            any::<u64>().prop_map(rmpv::Value::from),
            any::<f64>().prop_map(rmpv::Value::from),
            ".{0,40}".prop_map(rmpv::Value::from),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(rmpv::Value::from),
            (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..20))
                .prop_map(|(t, d)| rmpv::Value::Ext(t, d)),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..20).prop_map(rmpv::Value::Array),
                proptest::collection::vec((inner.clone(), inner), 0..20).prop_map(rmpv::Value::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn value_len_matches_encoder(v in arb_value(), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut buf = Vec::new();
            rmpv::encode::write_value(&mut buf, &v).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let len = buf.len();
            // Every strict prefix is incomplete, with a bound that never overshoots.
            // Every cut of small values, about 200 cuts of large ones (keeps the suite fast).
            for cut in (0..len).step_by(len / 200 + 1).chain(len.saturating_sub(3)..len) {
                match value_len(&buf[..cut]) {
                    Err(MsgpackError::Incomplete { needed, .. }) => prop_assert!(needed as usize <= len && needed as usize > cut),
                    other => prop_assert!(false, "prefix {} gave {:?}", cut, other),
                }
            }
            buf.extend_from_slice(&tail);
            prop_assert_eq!(value_len(&buf), Ok(len));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = value_len(&bytes);
            let _ = read_head(&bytes);
            let mut s = Skipper::new();
            for chunk in bytes.chunks(7) {
                let _ = s.advance(chunk);
            }
        }
    }
}
