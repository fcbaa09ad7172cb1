//! Fluentd's chunk format: concatenated msgpack `[time, record]` entries.
//!
//! A chunk is *canonical* when every entry is `0x92`, an EventTime as fixext8 with a non-zero
//! second, then a map. That is what Fluentd's buffers hold and what PackedForward carries.
//! [`normalize_chunk`] turns any acceptable chunk (integer times, v1.5 metadata times, time 0,
//! other array encodings) into a canonical one, copying only when something must change.

use std::borrow::Cow;

use crate::msgpack::{Head, MAX_DEPTH, MsgpackError, Skipper, read_head, value_len_with};
use crate::time::{EventTime, TimeError, type_name};

/// Why one entry of a chunk is not a valid event. Such entries can be skipped
/// (Fluentd's `skip_invalid_event`) and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidReason {
    /// The entry is not an array.
    NotAnArray(&'static str),
    /// The entry is an array of a length other than 2.
    WrongArity(u32),
    /// The time is not an integer or an EventTime.
    BadTime(&'static str),
    /// The record is not a map.
    RecordNotMap(&'static str),
    /// The chunk ends inside this entry.
    Truncated,
}

impl std::fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvalidReason::NotAnArray(t) => write!(f, "entry is a {t}, not a [time, record] array"),
            InvalidReason::WrongArity(n) => {
                write!(f, "entry is an array of {n} elements, not [time, record]")
            }
            InvalidReason::BadTime(t) => write!(f, "time is a {t}, not an integer or EventTime"),
            InvalidReason::RecordNotMap(t) => write!(f, "record is a {t}, not a map"),
            InvalidReason::Truncated => write!(f, "entry is truncated"),
        }
    }
}

/// An invalid entry: where it is and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid event #{index} at byte {offset}: {reason}")]
pub struct InvalidEntry {
    /// Index of the entry in the chunk (valid and invalid entries counted).
    pub index: u32,
    /// Byte offset of the entry in the chunk.
    pub offset: usize,
    /// What is wrong with it.
    pub reason: InvalidReason,
}

/// Errors from reading, validating or writing chunks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// An entry is not valid msgpack (or nests too deep): the rest of the chunk is unreadable.
    #[error("chunk is malformed at entry #{index} (byte {offset}): {source}")]
    Malformed {
        /// Index of the entry.
        index: u32,
        /// Byte offset of the entry.
        offset: usize,
        /// The msgpack error.
        #[source]
        source: MsgpackError,
    },
    /// The chunk ends in the middle of an entry.
    #[error(
        "chunk is truncated: entry #{index} at byte {offset} needs at least {needed} bytes, {available} left"
    )]
    Truncated {
        /// Index of the entry.
        index: u32,
        /// Byte offset of the entry.
        offset: usize,
        /// Lower bound of the entry's size.
        needed: u64,
        /// Bytes left in the chunk.
        available: usize,
    },
    /// A structurally valid entry that is not an event (see [`InvalidReason`]).
    #[error(transparent)]
    Invalid(#[from] InvalidEntry),
    /// A record handed to a writer is not a msgpack map.
    #[error("record is not a msgpack map: {0}")]
    NotAMap(String),
    /// Encoding a record failed.
    #[error("cannot encode record: {0}")]
    Encode(String),
    /// The chunk would hold more than `u32::MAX` entries.
    #[error("chunk holds more than u32::MAX entries")]
    TooManyEntries,
}

/// One event of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The event time as written (0 is *not* replaced here; see [`normalize_chunk`]).
    pub time: EventTime,
    /// The raw msgpack map of the record.
    pub record: &'a [u8],
    /// The raw bytes of the whole entry.
    pub raw: &'a [u8],
}

/// What one step of parsing found.
#[derive(Debug)]
pub(crate) enum Parsed<'a> {
    Valid { entry: Entry<'a>, canonical: bool },
    Invalid(InvalidReason, &'a [u8]),
}

/// Parses the entry at `buf[pos..]`, returning it and its length: one pass of the fast path
/// ([`crate::fast::entry`]) for the usual shapes, the general path for the rest. With `FAST`
/// false, the general path alone (the reference the fast path is tested against).
#[inline]
fn parse_entry<'a, const FAST: bool>(
    buf: &'a [u8],
    pos: usize,
    index: u32,
    sk: &mut Skipper,
) -> Result<(Parsed<'a>, usize), ChunkError> {
    if FAST
        && let Some(rest) = buf.get(pos..)
        && let Ok((entry, canonical)) = crate::fast::entry(rest, 0, MAX_DEPTH)
    {
        let len = entry.raw.len();
        return Ok((Parsed::Valid { entry, canonical }, len));
    }
    parse_entry_general(buf, pos, index, sk)
}

/// [`parse_entry`] without the fast path: frames the entry, then reads its parts.
#[cold]
pub(crate) fn parse_entry_general<'a>(
    buf: &'a [u8],
    pos: usize,
    index: u32,
    sk: &mut Skipper,
) -> Result<(Parsed<'a>, usize), ChunkError> {
    let rest = buf.get(pos..).unwrap_or_default();
    let len = match value_len_with(sk, rest) {
        Ok(n) => n,
        Err(MsgpackError::Incomplete { needed, available }) => {
            return Err(ChunkError::Truncated {
                index,
                offset: pos,
                needed,
                available,
            });
        }
        Err(source) => {
            return Err(ChunkError::Malformed {
                index,
                offset: pos,
                source,
            });
        }
    };
    let raw = rest.get(..len).unwrap_or_default();
    // The entry is a complete value from here on, so header reads cannot be incomplete.
    let malformed = |source| ChunkError::Malformed {
        index,
        offset: pos,
        source,
    };
    let (head, hlen) = read_head(raw).map_err(malformed)?;
    match head {
        Head::Array(2) => {}
        Head::Array(n) => return Ok((Parsed::Invalid(InvalidReason::WrongArity(n), raw), len)),
        other => {
            return Ok((
                Parsed::Invalid(InvalidReason::NotAnArray(type_name(&other)), raw),
                len,
            ));
        }
    }
    let after_hdr = raw.get(hlen..).unwrap_or_default();
    let (time, tlen) = match EventTime::decode(after_hdr) {
        Ok(t) => t,
        Err(TimeError::WrongType(t)) => {
            return Ok((Parsed::Invalid(InvalidReason::BadTime(t), raw), len));
        }
        Err(TimeError::Msgpack(e)) => return Err(malformed(e)),
    };
    let record = after_hdr.get(tlen..).unwrap_or_default();
    match read_head(record).map_err(malformed)?.0 {
        Head::Map(_) => {}
        other => {
            return Ok((
                Parsed::Invalid(InvalidReason::RecordNotMap(type_name(&other)), raw),
                len,
            ));
        }
    }
    let canonical =
        raw.first() == Some(&0x92) && raw.get(1..3) == Some(&[0xd7, 0x00]) && time.sec != 0;
    Ok((
        Parsed::Valid {
            entry: Entry { time, record, raw },
            canonical,
        },
        len,
    ))
}

/// Iterates the entries of a chunk.
///
/// Yields `Ok(entry)` for events and `Err(ChunkError::Invalid(..))` for entries that are
/// valid msgpack but not events (iteration goes on after those). A `Malformed` or
/// `Truncated` error ends the iteration.
pub struct ChunkReader<'a> {
    buf: &'a [u8],
    pos: usize,
    index: u32,
    done: bool,
    sk: Skipper,
}

impl<'a> ChunkReader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        ChunkReader {
            buf,
            pos: 0,
            index: 0,
            done: false,
            sk: Skipper::new(),
        }
    }

    /// Byte offset of the next entry.
    pub fn offset(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for ChunkReader<'a> {
    type Item = Result<Entry<'a>, ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.buf.len() {
            return None;
        }
        let index = self.index;
        match parse_entry::<true>(self.buf, self.pos, index, &mut self.sk) {
            Ok((parsed, len)) => {
                let offset = self.pos;
                self.pos += len;
                self.index = self.index.saturating_add(1);
                Some(match parsed {
                    Parsed::Valid { entry, .. } => Ok(entry),
                    Parsed::Invalid(reason, _) => Err(ChunkError::Invalid(InvalidEntry {
                        index,
                        offset,
                        reason,
                    })),
                })
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// A summary of a chunk, from [`validate_chunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChunkInfo {
    /// Number of valid events.
    pub records: u32,
    /// Number of invalid entries (see [`InvalidReason`]).
    pub invalid: u32,
    /// Whether the chunk is already canonical (every entry canonical, none invalid).
    pub canonical: bool,
    /// The first invalid entry, for a log line.
    pub first_invalid: Option<InvalidEntry>,
}

/// Checks a whole chunk: every entry must be complete, valid msgpack.
///
/// Invalid entries are counted, not errors; malformed or truncated data is an error.
pub fn validate_chunk(bytes: &[u8]) -> Result<ChunkInfo, ChunkError> {
    let mut info = ChunkInfo {
        canonical: true,
        ..ChunkInfo::default()
    };
    let mut sk = Skipper::new();
    let mut pos = 0;
    let mut index = 0u32;
    while pos < bytes.len() {
        let (parsed, len) = parse_entry::<true>(bytes, pos, index, &mut sk)?;
        match parsed {
            Parsed::Valid { canonical, .. } => {
                info.records = info
                    .records
                    .checked_add(1)
                    .ok_or(ChunkError::TooManyEntries)?;
                info.canonical &= canonical;
            }
            Parsed::Invalid(reason, _) => {
                info.canonical = false;
                info.invalid = info.invalid.saturating_add(1);
                info.first_invalid.get_or_insert(InvalidEntry {
                    index,
                    offset: pos,
                    reason,
                });
            }
        }
        pos += len;
        index = index.saturating_add(1);
    }
    Ok(info)
}

/// What [`normalize_chunk`] does with invalid entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvalidPolicy {
    /// Drop them (Fluentd's `skip_invalid_event true`, the default).
    #[default]
    Skip,
    /// Keep `[x, y]` entries verbatim (`skip_invalid_event false`); entries that are not
    /// two-element arrays are dropped all the same, as Fluentd cannot use them either.
    Keep,
}

/// How [`normalize_chunk`] treats an incomplete last entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TruncatedPolicy {
    /// An error (the default).
    #[default]
    Error,
    /// Drop the incomplete tail and count it as one invalid entry, as Fluentd's streaming
    /// unpacker does for PackedForward entries.
    Drop,
}

/// Options of [`normalize_chunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NormalizeOptions {
    /// Invalid entries.
    pub invalid: InvalidPolicy,
    /// A truncated tail.
    pub truncated: TruncatedPolicy,
}

/// A canonical chunk from [`normalize_chunk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized<'a> {
    /// The canonical entries: borrowed from the input when nothing had to change.
    pub data: Cow<'a, [u8]>,
    /// Number of entries in `data`.
    pub records: u32,
    /// Number of invalid entries seen (dropped, or kept under [`InvalidPolicy::Keep`]).
    pub invalid: u32,
    /// The first invalid entry, for a log line.
    pub first_invalid: Option<InvalidEntry>,
    /// Whether an incomplete tail was dropped.
    pub truncated: bool,
}

/// Rewrites a chunk into canonical form, copying only when an entry must change.
///
/// Integer and v1.5 metadata times become EventTime; a time whose second is 0 becomes `now`
/// (Fluentd: `time = EventTime.now if time.to_i == 0`); other encodings of `[time, record]`
/// are re-packed as `0x92`. Records are never decoded or re-encoded.
pub fn normalize_chunk(bytes: &[u8], opts: NormalizeOptions) -> Result<Normalized<'_>, ChunkError> {
    let mut now = None;
    normalize_with::<true>(bytes, opts, &mut || *now.get_or_insert_with(EventTime::now))
}

/// [`normalize_chunk`] with a fixed "now" (for tests and for one clock read per request).
pub fn normalize_chunk_at(
    bytes: &[u8],
    opts: NormalizeOptions,
    now: EventTime,
) -> Result<Normalized<'_>, ChunkError> {
    normalize_with::<true>(bytes, opts, &mut || now)
}

/// Like [`normalize_chunk`] but takes and returns an owned buffer, reusing it when it is
/// already canonical (for decompressed payloads).
pub fn normalize_chunk_vec(
    bytes: Vec<u8>,
    opts: NormalizeOptions,
) -> Result<(Vec<u8>, Normalized<'static>), ChunkError> {
    let n = normalize_chunk(&bytes, opts)?;
    let meta = Normalized {
        data: Cow::Borrowed(&[][..]),
        ..n.clone()
    };
    let data = match n.data {
        Cow::Borrowed(b) if b.len() == bytes.len() => None,
        Cow::Borrowed(b) => Some(b.to_vec()),
        Cow::Owned(v) => Some(v),
    };
    Ok((data.unwrap_or(bytes), meta))
}

/// [`normalize_chunk`] with a clock; `FAST` as for [`parse_entry`].
pub(crate) fn normalize_with<'a, const FAST: bool>(
    bytes: &'a [u8],
    opts: NormalizeOptions,
    now: &mut dyn FnMut() -> EventTime,
) -> Result<Normalized<'a>, ChunkError> {
    let mut sk = Skipper::new();
    let mut out: Option<Vec<u8>> = None;
    let mut records = 0u32;
    let mut invalid = 0u32;
    let mut first_invalid = None;
    let mut truncated = false;
    let mut pos = 0;
    let mut index = 0u32;
    // Start the copy at the first entry that changes; before that the output is bytes[..pos].
    let start_copy = |out: &mut Option<Vec<u8>>, pos: usize| {
        if out.is_none() {
            let mut v = Vec::with_capacity(bytes.len() + bytes.len() / 8 + 16);
            v.extend_from_slice(bytes.get(..pos).unwrap_or_default());
            *out = Some(v);
        }
    };
    while pos < bytes.len() {
        let (parsed, len) = match parse_entry::<FAST>(bytes, pos, index, &mut sk) {
            Ok(p) => p,
            Err(ChunkError::Truncated { index, offset, .. })
                if opts.truncated == TruncatedPolicy::Drop =>
            {
                start_copy(&mut out, pos);
                truncated = true;
                invalid = invalid.saturating_add(1);
                first_invalid.get_or_insert(InvalidEntry {
                    index,
                    offset,
                    reason: InvalidReason::Truncated,
                });
                break;
            }
            Err(e) => return Err(e),
        };
        match parsed {
            Parsed::Valid { entry, canonical } => {
                records = records.checked_add(1).ok_or(ChunkError::TooManyEntries)?;
                if canonical {
                    if let Some(o) = out.as_mut() {
                        o.extend_from_slice(entry.raw);
                    }
                } else {
                    start_copy(&mut out, pos);
                    if let Some(o) = out.as_mut() {
                        let t = if entry.time.is_zero() {
                            now()
                        } else {
                            entry.time
                        };
                        o.push(0x92);
                        t.write_to(o);
                        o.extend_from_slice(entry.record);
                    }
                }
            }
            Parsed::Invalid(reason, raw) => {
                invalid = invalid.saturating_add(1);
                first_invalid.get_or_insert(InvalidEntry {
                    index,
                    offset: pos,
                    reason,
                });
                let keep = opts.invalid == InvalidPolicy::Keep
                    && !matches!(
                        reason,
                        InvalidReason::NotAnArray(_) | InvalidReason::WrongArity(_)
                    );
                if keep {
                    records = records.checked_add(1).ok_or(ChunkError::TooManyEntries)?;
                    if let Some(o) = out.as_mut() {
                        o.extend_from_slice(raw);
                    }
                } else {
                    start_copy(&mut out, pos);
                }
            }
        }
        pos += len;
        index = index.saturating_add(1);
    }
    let data = match out {
        Some(v) => Cow::Owned(v),
        None => Cow::Borrowed(bytes),
    };
    Ok(Normalized {
        data,
        records,
        invalid,
        first_invalid,
        truncated,
    })
}

/// Builds a canonical chunk entry by entry.
#[derive(Debug, Clone, Default)]
pub struct ChunkWriter {
    buf: Vec<u8>,
    records: u32,
}

impl ChunkWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        ChunkWriter {
            buf: Vec::with_capacity(bytes),
            records: 0,
        }
    }

    /// A writer appending to a reused buffer (cleared first).
    pub fn from_vec(mut buf: Vec<u8>) -> Self {
        buf.clear();
        ChunkWriter { buf, records: 0 }
    }

    /// Appends `[time, record]` where `record` is the raw bytes of one msgpack map.
    ///
    /// The record is checked to be a single complete map.
    pub fn append_raw(&mut self, time: EventTime, record: &[u8]) -> Result<(), ChunkError> {
        crate::record::check_map(record).map_err(|e| ChunkError::NotAMap(e.to_string()))?;
        self.append_raw_unchecked(time, record)
    }

    /// Appends `[time, record]` without checking `record` (the caller guarantees one map).
    pub fn append_raw_unchecked(
        &mut self,
        time: EventTime,
        record: &[u8],
    ) -> Result<(), ChunkError> {
        self.records = self
            .records
            .checked_add(1)
            .ok_or(ChunkError::TooManyEntries)?;
        self.buf.push(0x92);
        time.write_to(&mut self.buf);
        self.buf.extend_from_slice(record);
        Ok(())
    }

    /// Appends `[time, record]` from a decoded record (must be a map).
    pub fn append_value(
        &mut self,
        time: EventTime,
        record: &rmpv::Value,
    ) -> Result<(), ChunkError> {
        if !record.is_map() {
            return Err(ChunkError::NotAMap(format!("{record}")));
        }
        let mark = self.buf.len();
        self.buf.push(0x92);
        time.write_to(&mut self.buf);
        if let Err(e) = rmpv::encode::write_value(&mut self.buf, record) {
            self.buf.truncate(mark);
            return Err(ChunkError::Encode(e.to_string()));
        }
        self.bump(mark)
    }

    /// Appends `[time, record]` from any serde value that serializes to a map (structs are
    /// written with field names).
    pub fn append_serde<T: serde::Serialize + ?Sized>(
        &mut self,
        time: EventTime,
        record: &T,
    ) -> Result<(), ChunkError> {
        let mark = self.buf.len();
        self.buf.push(0x92);
        time.write_to(&mut self.buf);
        let rec_start = self.buf.len();
        if let Err(e) = rmp_serde::encode::write_named(&mut self.buf, record) {
            self.buf.truncate(mark);
            return Err(ChunkError::Encode(e.to_string()));
        }
        if let Err(e) = crate::record::check_map(self.buf.get(rec_start..).unwrap_or_default()) {
            self.buf.truncate(mark);
            return Err(ChunkError::NotAMap(e.to_string()));
        }
        self.bump(mark)
    }

    fn bump(&mut self, mark: usize) -> Result<(), ChunkError> {
        match self.records.checked_add(1) {
            Some(r) => {
                self.records = r;
                Ok(())
            }
            None => {
                self.buf.truncate(mark);
                Err(ChunkError::TooManyEntries)
            }
        }
    }

    /// Number of entries written.
    pub fn records(&self) -> u32 {
        self.records
    }

    /// Bytes written.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Forgets the entries, keeping the allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.records = 0;
    }

    /// The finished chunk.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: EventTime = EventTime::new(1_700_000_000, 42);

    /// `[time, {"k": v}]` with the time written by `time_bytes`.
    fn entry(time_bytes: &[u8], v: u8) -> Vec<u8> {
        let mut e = vec![0x92];
        e.extend_from_slice(time_bytes);
        e.extend_from_slice(&[0x81, 0xa1, b'k', v & 0x7f]);
        e
    }

    fn canon(sec: u32, v: u8) -> Vec<u8> {
        entry(&EventTime::new(sec, 7).encode(), v)
    }

    fn check(input: &[u8], opts: NormalizeOptions, expect: Result<(&[u8], u32, u32, bool), &str>) {
        match (normalize_chunk_at(input, opts, NOW), expect) {
            (Ok(n), Ok((data, records, invalid, borrowed))) => {
                assert_eq!(&*n.data, data, "input {input:02x?}");
                assert_eq!(
                    (n.records, n.invalid),
                    (records, invalid),
                    "input {input:02x?}"
                );
                assert_eq!(
                    matches!(n.data, Cow::Borrowed(_)),
                    borrowed,
                    "borrowed? input {input:02x?}"
                );
            }
            (Err(e), Err(msg)) => {
                assert!(e.to_string().contains(msg), "{e} does not contain {msg}")
            }
            (got, want) => panic!("input {input:02x?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn normalize_table() {
        let d = NormalizeOptions::default();
        let a = canon(100, 1);
        let b = canon(200, 2);
        let ab = [a.clone(), b.clone()].concat();
        check(&[], d, Ok((&[], 0, 0, true)));
        check(&ab, d, Ok((&ab, 2, 0, true)));
        // Integer time → EventTime.
        let int_t = entry(&[0xcd, 0x01, 0x00], 3);
        let int_canon = entry(&EventTime::new(256, 0).encode(), 3);
        check(
            &[a.clone(), int_t].concat(),
            d,
            Ok((&[a.clone(), int_canon].concat(), 2, 0, false)),
        );
        // ext8 → fixext8.
        let mut ext8 = vec![0xc7, 8, 0];
        ext8.extend_from_slice(&EventTime::new(100, 7).encode()[2..]);
        check(&entry(&ext8, 1), d, Ok((&a, 1, 0, false)));
        // Metadata time [EventTime, {}] → element 0.
        let mut meta = vec![0x92];
        meta.extend_from_slice(&EventTime::new(100, 7).encode());
        meta.push(0x80);
        check(&entry(&meta, 1), d, Ok((&a, 1, 0, false)));
        // Time 0 → now, for int and EventTime.
        let now_e = entry(&NOW.encode(), 5);
        check(&entry(&[0x00], 5), d, Ok((&now_e, 1, 0, false)));
        check(
            &entry(&EventTime::new(0, 9).encode(), 5),
            d,
            Ok((&now_e, 1, 0, false)),
        );
        // array16 of 2 → 0x92.
        let mut a16 = vec![0xdc, 0, 2];
        a16.extend_from_slice(&a[1..]);
        check(&a16, d, Ok((&a, 1, 0, false)));
        // Invalid entries: dropped and counted.
        let bad_time = entry(&[0xa1, b'x'], 1);
        let mut bad_rec = vec![0x92, 0x01, 0x01];
        bad_rec.truncate(3);
        check(
            &[a.clone(), bad_time.clone(), b.clone()].concat(),
            d,
            Ok((&ab, 2, 1, false)),
        );
        check(
            &[bad_rec.clone(), a.clone()].concat(),
            d,
            Ok((&a, 1, 1, false)),
        );
        check(&[0x01, 0x93, 0x01, 0x02, 0x03], d, Ok((&[], 0, 2, false)));
        // Kept under InvalidPolicy::Keep (only [x, y] shapes).
        let keep = NormalizeOptions {
            invalid: InvalidPolicy::Keep,
            ..d
        };
        check(
            &[a.clone(), bad_time.clone()].concat(),
            keep,
            Ok((&[a.clone(), bad_time.clone()].concat(), 2, 1, true)),
        );
        check(
            &[vec![0x01], a.clone()].concat(),
            keep,
            Ok((&a, 1, 1, false)),
        );
        // Malformed and truncated data.
        check(
            &[a.clone(), vec![0xc1]].concat(),
            d,
            Err("malformed at entry #1"),
        );
        check(&a[..a.len() - 1], d, Err("truncated"));
        let drop = NormalizeOptions {
            truncated: TruncatedPolicy::Drop,
            ..d
        };
        check(
            &[a.clone(), b[..4].to_vec()].concat(),
            drop,
            Ok((&a, 1, 1, false)),
        );
    }

    #[test]
    fn reader_and_validate() {
        let a = canon(100, 1);
        let bad = entry(&[0xc0], 1);
        let chunk = [a.clone(), bad.clone(), entry(&[0x05], 2)].concat();
        let got: Vec<_> = ChunkReader::new(&chunk).collect();
        assert_eq!(got.len(), 3);
        let first = got[0].as_ref().expect("valid");
        assert_eq!(
            (first.time, first.record, first.raw),
            (EventTime::new(100, 7), &a[11..], &a[..])
        );
        assert!(matches!(
            got[1],
            Err(ChunkError::Invalid(InvalidEntry {
                index: 1,
                reason: InvalidReason::BadTime("nil"),
                ..
            }))
        ));
        assert_eq!(
            got[2].as_ref().map(|e| e.time).ok(),
            Some(EventTime::new(5, 0))
        );

        let info = validate_chunk(&chunk).expect("valid msgpack");
        assert_eq!((info.records, info.invalid, info.canonical), (2, 1, false));
        assert_eq!(
            validate_chunk(&a).ok().map(|i| (i.records, i.canonical)),
            Some((1, true))
        );
        assert!(validate_chunk(&a[..5]).is_err());
        // A malformed entry ends the iteration.
        let mal = [a.clone(), vec![0xc1], a.clone()].concat();
        let got: Vec<_> = ChunkReader::new(&mal).collect();
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn writer_builds_canonical_chunks() {
        let mut w = ChunkWriter::new();
        let t = EventTime::new(10, 1);
        w.append_raw(t, &[0x81, 0xa1, b'a', 0x01]).expect("map");
        assert!(w.append_raw(t, &[0x01]).is_err());
        assert!(w.append_raw(t, &[0x81, 0xa1]).is_err());
        let v = rmpv::Value::Map(vec![("b".into(), 2.into())]);
        w.append_value(t, &v).expect("map");
        assert!(w.append_value(t, &rmpv::Value::from(3)).is_err());
        #[derive(serde::Serialize)]
        struct Rec {
            c: u8,
        }
        w.append_serde(t, &Rec { c: 3 }).expect("struct as map");
        assert!(w.append_serde(t, &5u8).is_err());
        assert_eq!(w.records(), 3);
        let bytes = w.into_bytes();
        let info = validate_chunk(&bytes).expect("valid");
        assert_eq!((info.records, info.canonical), (3, true));
        let recs: Vec<_> = ChunkReader::new(&bytes)
            .filter_map(Result::ok)
            .map(|e| e.record.to_vec())
            .collect();
        assert_eq!(
            recs,
            vec![
                vec![0x81, 0xa1, b'a', 1],
                vec![0x81, 0xa1, b'b', 2],
                vec![0x81, 0xa1, b'c', 3]
            ]
        );
    }

    #[test]
    fn normalize_vec_reuses_canonical_buffer() {
        let a = canon(100, 1);
        let ptr = a.as_ptr();
        let (v, n) = normalize_chunk_vec(a, NormalizeOptions::default()).expect("valid");
        assert_eq!((v.as_ptr(), n.records), (ptr, 1));
    }

    fn arb_entry() -> impl Strategy<Value = (Vec<u8>, bool)> {
        // (entry bytes, valid?)
        (0u8..6, any::<u32>(), any::<u32>(), any::<u8>()).prop_map(|(kind, sec, nsec, v)| {
            let t = match kind {
                0 => EventTime::new(sec, nsec).encode().to_vec(),
                1 => {
                    let mut b = Vec::new();
                    write_int_vec(&mut b, i64::from(sec));
                    b
                }
                2 => {
                    let mut b = vec![0x92];
                    b.extend_from_slice(&EventTime::new(sec, nsec).encode());
                    b.push(0x80);
                    b
                }
                3 => vec![0xa1, b'x'],
                4 => vec![0xc0],
                _ => vec![0xcb, 0, 0, 0, 0, 0, 0, 0, 0],
            };
            (entry(&t, v), kind < 3)
        })
    }

    fn write_int_vec(b: &mut Vec<u8>, v: i64) {
        crate::msgpack::write_int(b, v);
    }

    proptest! {
        #[test]
        fn normalize_is_idempotent_and_counts(entries in proptest::collection::vec(arb_entry(), 0..20)) {
            let chunk: Vec<u8> = entries.iter().flat_map(|(e, _)| e.clone()).collect();
            let valid = entries.iter().filter(|(_, v)| *v).count() as u32;
            let n = normalize_chunk_at(&chunk, NormalizeOptions::default(), NOW).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!((n.records, n.invalid), (valid, entries.len() as u32 - valid));
            let info = validate_chunk(&n.data).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(info.canonical);
            prop_assert_eq!(info.records, valid);
            let again = normalize_chunk_at(&n.data, NormalizeOptions::default(), NOW).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(matches!(again.data, Cow::Borrowed(_)));
        }

        #[test]
        fn arbitrary_chunks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = validate_chunk(&bytes);
            let _ = normalize_chunk(&bytes, NormalizeOptions { invalid: InvalidPolicy::Keep, truncated: TruncatedPolicy::Drop });
            for e in ChunkReader::new(&bytes) { let _ = e; }
        }
    }
}
