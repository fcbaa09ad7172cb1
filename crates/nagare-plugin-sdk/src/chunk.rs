//! Fluentd's chunk format for plugin authors: concatenated msgpack `[time, record]` entries,
//! `time` an `EventTime` (ext type 0: u32 BE seconds + u32 BE nanoseconds, written as fixext8)
//! or an integer. Also accepted on read: ext8 with 8 bytes, float times, and Fluent Bit's
//! `[[time, metadata], record]` form (the metadata is skipped).
//!
//! [`ChunkReader`] yields [`Entry`]s that borrow the record bytes (no decoding until asked);
//! [`ChunkWriter`] appends entries into a `Vec<u8>` ready for an [`crate::Emitter`] or
//! [`crate::FilterOutcome::Replaced`]. Nothing here panics on malformed input.
//!
//! The entries the host hands to filters and outputs are normalized (`0x92`, a fixext8
//! EventTime, a map): the reader frames those in one pass with nagare-core's fast path and
//! keeps its general walk (every accepted shape, every error worded) for the rest.
//! [`ChunkReader::next_visiting`] also hands over each top-level pair during that pass, so
//! a filter that reads top-level fields walks a record once.

use std::io::Write as _;

use rmpv::Value;

/// Maximum nesting of maps/arrays accepted while skipping over a record.
pub const MAX_DEPTH: usize = 512;

/// An event time: seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventTime {
    /// Seconds since the epoch (unsigned 32-bit, as Fluentd packs it).
    pub sec: u32,
    /// Nanoseconds, `0..1_000_000_000`.
    pub nsec: u32,
}

impl EventTime {
    /// Builds a time from seconds and nanoseconds.
    pub const fn new(sec: u32, nsec: u32) -> Self {
        EventTime { sec, nsec }
    }

    /// The current wall-clock time.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        EventTime {
            sec: u32::try_from(d.as_secs()).unwrap_or(u32::MAX),
            nsec: d.subsec_nanos(),
        }
    }

    /// The 8 payload bytes of the ext 0 representation.
    pub fn to_ext_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.sec.to_be_bytes());
        b[4..].copy_from_slice(&self.nsec.to_be_bytes());
        b
    }

    /// Parses the 8 payload bytes of an ext 0 value.
    pub fn from_ext_bytes(b: &[u8]) -> Option<Self> {
        let sec = u32::from_be_bytes(b.get(..4)?.try_into().ok()?);
        let nsec = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
        (b.len() == 8).then_some(EventTime { sec, nsec })
    }
}

/// Why a chunk could not be read. `offset` is the byte offset of the entry that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// The data ends in the middle of an entry.
    #[error("truncated entry at byte {offset}")]
    Truncated {
        /// Offset of the entry.
        offset: usize,
    },
    /// The bytes are not a `[time, record]` entry.
    #[error("malformed entry at byte {offset}: {reason}")]
    Malformed {
        /// Offset of the entry.
        offset: usize,
        /// What was wrong.
        reason: String,
    },
    /// The chunk's format is not one this SDK can decode.
    #[error("unsupported chunk format {0}")]
    UnsupportedFormat(u8),
    /// A gzip chunk failed to decompress.
    #[error("gzip chunk: {0}")]
    Gzip(String),
    /// A `FILE_RANGES` chunk's descriptor was malformed or its file could not be read.
    #[error("chunk in file ranges: {0}")]
    FileRanges(String),
}

/// One entry of a chunk: its time and the raw msgpack bytes of its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The event time.
    pub time: EventTime,
    /// The record, one msgpack value (normally a map), undecoded.
    pub record: &'a [u8],
}

impl Entry<'_> {
    /// Decodes the record.
    pub fn value(&self) -> Result<Value, ChunkError> {
        let mut rd = self.record;
        rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH).map_err(|e| {
            ChunkError::Malformed {
                offset: 0,
                reason: format!("record: {e}"),
            }
        })
    }
}

/// What [`ChunkReader::next_visiting`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visited<'a> {
    /// The next entry; every top-level pair of its record was visited, in order.
    Entry(Entry<'a>),
    /// No entry is left (or the reader stopped at an error).
    End,
    /// The one-pass read does not apply to this entry: nothing was consumed and the visits
    /// made for it are void; read it with [`Iterator::next`].
    Fallback,
}

/// Iterates the entries of a msgpack-stream chunk. After an error it yields nothing more.
#[derive(Clone, Debug)]
pub struct ChunkReader<'a> {
    data: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> ChunkReader<'a> {
    /// Reads `data`, concatenated `[time, record]` entries.
    pub fn new(data: &'a [u8]) -> Self {
        ChunkReader {
            data,
            pos: 0,
            failed: false,
        }
    }

    /// Byte offset of the next entry.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Collects every entry as `(time, decoded record)`.
    pub fn values(self) -> Result<Vec<(EventTime, Value)>, ChunkError> {
        self.map(|e| e.and_then(|e| Ok((e.time, e.value()?))))
            .collect()
    }

    /// The entry at the reader's position when it has the shape the host writes after
    /// normalizing a batch (`0x92`, a fixext8 EventTime, a map), read in one pass by
    /// nagare-core's fast path: `(entry, offset past it)`. `None` when that path cannot
    /// answer (another shape, malformed or truncated bytes, deep nesting); the general
    /// [`Cursor`] walk then decides and words the error. Whenever this answers, the general
    /// walk gives the same entry.
    #[inline]
    fn fast_entry(&self) -> Option<(Entry<'a>, usize)> {
        let (time, rec_start) = self.host_head()?;
        // The record sits inside the entry's array: one container open around it.
        let end = nagare_core::fast::map(self.data, rec_start, 1, nagare_core::msgpack::MAX_DEPTH)
            .ok()?;
        let record = self.data.get(rec_start..end)?;
        Some((Entry { time, record }, end))
    }

    /// The head of a host-shaped entry at the reader's position (`0x92` and a fixext8
    /// EventTime): its time and where its record starts. `None` for any other shape.
    #[inline(always)]
    fn host_head(&self) -> Option<(EventTime, usize)> {
        let start = self.pos;
        let rec_start = start.checked_add(11)?;
        let &[0x92, 0xd7, 0x00, s0, s1, s2, s3, n0, n1, n2, n3] =
            self.data.get(start..rec_start)?
        else {
            return None;
        };
        let time = EventTime {
            sec: u32::from_be_bytes([s0, s1, s2, s3]),
            nsec: u32::from_be_bytes([n0, n1, n2, n3]),
        };
        Some((time, rec_start))
    }

    /// Reads the next entry and, in the same pass over its record, calls `pair(key, value)`
    /// with the raw msgpack bytes of each top-level key and value, in order: a filter that
    /// looks up top-level fields walks each record once instead of twice.
    ///
    /// Only host-shaped entries (`0x92`, a fixext8 EventTime, a map) are read this way. For
    /// anything else — another shape, bytes the general walk must judge, the end — it
    /// consumes nothing and says so ([`Visited::Fallback`], [`Visited::End`]); then the
    /// calls `pair` got for this entry are void and the caller reads the entry with
    /// [`Iterator::next`], which gives every answer (errors included) as before.
    #[inline]
    pub fn next_visiting(&mut self, mut pair: impl FnMut(&'a [u8], &'a [u8])) -> Visited<'a> {
        if self.failed || self.pos >= self.data.len() {
            return Visited::End;
        }
        let data = self.data;
        let Some((time, rec_start)) = self.host_head() else {
            return Visited::Fallback;
        };
        let be = |at: std::ops::Range<usize>| {
            data.get(at)
                .map(|b| b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
        };
        let (count, first) = match data.get(rec_start) {
            Some(&b @ 0x80..=0x8f) => (Some(u64::from(b & 0x0f)), rec_start + 1),
            Some(0xde) => (be(rec_start + 1..rec_start + 3), rec_start + 3),
            Some(0xdf) => (be(rec_start + 1..rec_start + 5), rec_start + 5),
            _ => (None, 0),
        };
        let Some(count) = count else {
            return Visited::Fallback;
        };
        // As `nagare_core::fast::map` frames it: the entry's array is open around the
        // record, the record's map around its keys and values (depth 2).
        let max = nagare_core::msgpack::MAX_DEPTH;
        let mut pos = first;
        for _ in 0..count {
            let Ok(key_end) = nagare_core::fast::skip(data, pos, 2, max) else {
                return Visited::Fallback;
            };
            let Ok(value_end) = nagare_core::fast::skip(data, key_end, 2, max) else {
                return Visited::Fallback;
            };
            if let (Some(k), Some(v)) = (data.get(pos..key_end), data.get(key_end..value_end)) {
                pair(k, v);
            }
            pos = value_end;
        }
        let Some(record) = data.get(rec_start..pos) else {
            return Visited::Fallback;
        };
        self.pos = pos;
        Visited::Entry(Entry { time, record })
    }

    /// Reads the next entry by letting `render` walk its record: `render` gets the entry's
    /// time and the chunk's bytes from the record's first byte to the chunk's end, and
    /// answers how many of them the record took (`None`: it cannot say). An output that
    /// renders each record straight from its bytes (out_file's JSON) then walks each record
    /// once, not once here and once again to render it; and its reads never stop short at a
    /// record's last bytes.
    ///
    /// `render` must answer the record's exact length: the reader moves on by it. A chunk
    /// handed over by the host is well-formed (it validates every batch it accepts), and a
    /// renderer that decodes the record fully measures it exactly.
    ///
    /// Only host-shaped entries (`0x92`, a fixext8 EventTime, a map) are read this way. For
    /// anything else, or when `render` answers `None`, 0 or more than is left, nothing is
    /// consumed ([`Visited::Fallback`]): the caller undoes what `render` did and reads the
    /// entry with [`Iterator::next`], which gives every answer (errors included) as before.
    #[inline]
    pub fn next_rendering(
        &mut self,
        render: impl FnOnce(EventTime, &'a [u8]) -> Option<usize>,
    ) -> Visited<'a> {
        if self.failed || self.pos >= self.data.len() {
            return Visited::End;
        }
        let Some((time, rec_start)) = self.host_head() else {
            return Visited::Fallback;
        };
        let Some(rest) = self
            .data
            .get(rec_start..)
            .filter(|r| matches!(r.first(), Some(0x80..=0x8f | 0xde | 0xdf)))
        else {
            return Visited::Fallback;
        };
        let Some(record) = render(time, rest)
            .filter(|&n| n > 0)
            .and_then(|n| rest.get(..n))
        else {
            return Visited::Fallback;
        };
        self.pos = rec_start + record.len();
        Visited::Entry(Entry { time, record })
    }

    /// Reads the entry at the reader's position: the fast path, else the general walk.
    #[inline]
    fn read_entry(&mut self) -> Result<Entry<'a>, ChunkError> {
        if let Some((entry, end)) = self.fast_entry() {
            self.pos = end;
            return Ok(entry);
        }
        self.read_entry_general()
    }

    /// The general walk over one entry: every accepted shape, every error worded.
    #[cold]
    #[inline(never)]
    fn read_entry_general(&mut self) -> Result<Entry<'a>, ChunkError> {
        let start = self.pos;
        let mut cur = Cursor {
            data: self.data,
            pos: start,
            entry: start,
        };
        let n = cur.array_len()?;
        if n != 2 {
            return Err(cur.malformed(format!("expected a 2-element array, got {n} elements")));
        }
        let time = cur.time(true)?;
        let rec_start = cur.pos;
        cur.skip_value()?;
        let record = self
            .data
            .get(rec_start..cur.pos)
            .ok_or_else(|| cur.truncated())?;
        self.pos = cur.pos;
        Ok(Entry { time, record })
    }
}

impl<'a> Iterator for ChunkReader<'a> {
    type Item = Result<Entry<'a>, ChunkError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let r = self.read_entry();
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    entry: usize,
}

impl Cursor<'_> {
    fn truncated(&self) -> ChunkError {
        ChunkError::Truncated { offset: self.entry }
    }

    fn malformed(&self, reason: String) -> ChunkError {
        ChunkError::Malformed {
            offset: self.entry,
            reason,
        }
    }

    fn byte(&mut self) -> Result<u8, ChunkError> {
        let b = *self.data.get(self.pos).ok_or_else(|| self.truncated())?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&[u8], ChunkError> {
        let n = usize::try_from(n).map_err(|_| self.truncated())?;
        let end = self.pos.checked_add(n).ok_or_else(|| self.truncated())?;
        let s = self
            .data
            .get(self.pos..end)
            .ok_or_else(|| self.truncated())?;
        self.pos = end;
        Ok(s)
    }

    fn uint(&mut self, n: u64) -> Result<u64, ChunkError> {
        let bytes = self.take(n)?;
        Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn array_len(&mut self) -> Result<u64, ChunkError> {
        match self.byte()? {
            b @ 0x90..=0x9f => Ok(u64::from(b & 0x0f)),
            0xdc => self.uint(2),
            0xdd => self.uint(4),
            b => Err(self.malformed(format!("expected an array, got marker 0x{b:02x}"))),
        }
    }

    /// Reads a time: int, float, ext 0 (8 bytes), or (when `allow_array`) `[time, meta]`.
    fn time(&mut self, allow_array: bool) -> Result<EventTime, ChunkError> {
        let marker = *self.data.get(self.pos).ok_or_else(|| self.truncated())?;
        let clamp = |v: u64| EventTime::new(u32::try_from(v).unwrap_or(u32::MAX), 0);
        match marker {
            0x00..=0x7f => {
                self.pos += 1;
                Ok(clamp(u64::from(marker)))
            }
            0xcc..=0xcf => {
                self.pos += 1;
                let v = self.uint(1 << (marker - 0xcc))?;
                Ok(clamp(v))
            }
            0xd0..=0xd3 | 0xe0..=0xff => {
                // negative or signed ints: clamp negatives to 0
                if marker >= 0xe0 {
                    self.pos += 1;
                    return Ok(EventTime::default());
                }
                self.pos += 1;
                let n = 1u64 << (marker - 0xd0);
                let raw = self.uint(n)?;
                let shift = 64 - 8 * n;
                let v = ((raw << shift) as i64) >> shift;
                Ok(clamp(u64::try_from(v).unwrap_or(0)))
            }
            0xca | 0xcb => {
                self.pos += 1;
                let f = if marker == 0xca {
                    f64::from(f32::from_bits(self.uint(4)? as u32))
                } else {
                    f64::from_bits(self.uint(8)?)
                };
                if !f.is_finite() || f < 0.0 {
                    return Ok(EventTime::default());
                }
                let sec = f.trunc();
                let nsec = ((f - sec) * 1e9).round().min(999_999_999.0);
                Ok(EventTime::new(
                    if sec > f64::from(u32::MAX) {
                        u32::MAX
                    } else {
                        sec as u32
                    },
                    nsec as u32,
                ))
            }
            0xd7 | 0xc7 => {
                self.pos += 1;
                if marker == 0xc7 && self.byte()? != 8 {
                    return Err(self.malformed("time ext must have 8 bytes".to_owned()));
                }
                let ty = self.byte()?;
                if ty != 0 {
                    return Err(self.malformed(format!("time ext type {ty}, expected 0")));
                }
                let bytes = self.take(8)?;
                EventTime::from_ext_bytes(bytes).ok_or(ChunkError::Truncated { offset: self.entry })
            }
            0x90..=0x9f | 0xdc | 0xdd if allow_array => {
                let n = self.array_len()?;
                if n == 0 {
                    return Err(self.malformed("empty time array".to_owned()));
                }
                let t = self.time(false)?;
                for _ in 1..n {
                    self.skip_value()?;
                }
                Ok(t)
            }
            b => Err(self.malformed(format!("expected a time, got marker 0x{b:02x}"))),
        }
    }

    /// Skips one msgpack value, iteratively, bounded by [`MAX_DEPTH`].
    fn skip_value(&mut self) -> Result<(), ChunkError> {
        // Fast path: nagare-core's one-pass skipper over a complete value. Anything it does not
        // accept (truncated, malformed, very deep) takes the walk below, which says what is
        // wrong and where.
        if let Some(rest) = self.data.get(self.pos..)
            && let Ok(n) = nagare_core::msgpack::value_len(rest)
        {
            self.pos += n;
            return Ok(());
        }
        // Stack of remaining element counts of open containers.
        let mut pending: Vec<u64> = Vec::new();
        let mut remaining: u64 = 1;
        loop {
            while remaining == 0 {
                match pending.pop() {
                    Some(r) => remaining = r,
                    None => return Ok(()),
                }
            }
            remaining -= 1;
            let b = self.byte()?;
            let children: u64 = match b {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 0,
                0x80..=0x8f => u64::from(b & 0x0f) * 2,
                0x90..=0x9f => u64::from(b & 0x0f),
                0xa0..=0xbf => {
                    self.take(u64::from(b & 0x1f))?;
                    0
                }
                0xc4 | 0xd9 => {
                    let n = self.uint(1)?;
                    self.take(n)?;
                    0
                }
                0xc5 | 0xda => {
                    let n = self.uint(2)?;
                    self.take(n)?;
                    0
                }
                0xc6 | 0xdb => {
                    let n = self.uint(4)?;
                    self.take(n)?;
                    0
                }
                0xc7 => {
                    let n = self.uint(1)?;
                    self.take(n + 1)?;
                    0
                }
                0xc8 => {
                    let n = self.uint(2)?;
                    self.take(n + 1)?;
                    0
                }
                0xc9 => {
                    let n = self.uint(4)?;
                    self.take(n + 1)?;
                    0
                }
                0xca | 0xd2 => {
                    self.take(4)?;
                    0
                }
                0xcb | 0xd3 | 0xcf => {
                    self.take(8)?;
                    0
                }
                0xcc | 0xd0 => {
                    self.take(1)?;
                    0
                }
                0xcd | 0xd1 => {
                    self.take(2)?;
                    0
                }
                0xce => {
                    self.take(4)?;
                    0
                }
                0xd4..=0xd8 => {
                    self.take((1u64 << (b - 0xd4)) + 1)?;
                    0
                }
                0xdc => self.uint(2)?,
                0xdd => self.uint(4)?,
                0xde => self.uint(2)? * 2,
                0xdf => self.uint(4)? * 2,
                0xc1 => return Err(self.malformed("reserved marker 0xc1".to_owned())),
            };
            if children > 0 {
                if pending.len() >= MAX_DEPTH {
                    return Err(self.malformed(format!("nesting deeper than {MAX_DEPTH}")));
                }
                // Each child needs at least one byte: reject impossible counts early.
                let left = (self.data.len() - self.pos) as u64;
                if children > left {
                    return Err(self.truncated());
                }
                pending.push(remaining);
                remaining = children;
            }
        }
    }
}

/// Builds a chunk: appends `[EventTime, record]` entries.
#[derive(Clone, Debug, Default)]
pub struct ChunkWriter {
    buf: Vec<u8>,
    records: u32,
}

impl ChunkWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with `bytes` of capacity.
    pub fn with_capacity(bytes: usize) -> Self {
        ChunkWriter {
            buf: Vec::with_capacity(bytes),
            records: 0,
        }
    }

    fn header(&mut self, time: EventTime) {
        // fixarray(2), fixext8 type 0, sec, nsec
        self.buf.extend_from_slice(&[0x92, 0xd7, 0x00]);
        self.buf.extend_from_slice(&time.to_ext_bytes());
    }

    /// Appends an entry whose record is already msgpack-encoded (exactly one value).
    pub fn push_raw(&mut self, time: EventTime, record: &[u8]) {
        self.header(time);
        self.buf.extend_from_slice(record);
        self.records = self.records.saturating_add(1);
    }

    /// Appends an entry whose record `write` encodes straight into the chunk (exactly one
    /// msgpack value), saving the copy of a record built elsewhere. When `write` says `None`
    /// the chunk is left as it was (whatever it wrote is removed) and no entry is counted.
    pub fn push_with<T>(
        &mut self,
        time: EventTime,
        write: impl FnOnce(&mut Vec<u8>) -> Option<T>,
    ) -> Option<T> {
        let len = self.buf.len();
        self.header(time);
        let written = write(&mut self.buf);
        if written.is_some() {
            self.records = self.records.saturating_add(1);
        } else {
            self.buf.truncate(len);
        }
        written
    }

    /// Appends an entry from a decoded record.
    pub fn push_value(&mut self, time: EventTime, record: &Value) {
        self.header(time);
        // Writing into a Vec cannot fail.
        let _ = rmpv::encode::write_value(&mut self.buf, record);
        self.records = self.records.saturating_add(1);
    }

    /// Appends an entry whose record is a map of string keys to values.
    pub fn push_map<'k>(
        &mut self,
        time: EventTime,
        fields: impl IntoIterator<Item = (&'k str, Value)>,
    ) {
        let map: Vec<(Value, Value)> = fields
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect();
        self.push_value(time, &Value::Map(map));
    }

    /// Number of entries written.
    pub fn records(&self) -> u32 {
        self.records
    }

    /// Bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Returns `(bytes, records)` and leaves the writer empty for reuse.
    pub fn take(&mut self) -> (Vec<u8>, u32) {
        let records = std::mem::take(&mut self.records);
        (std::mem::take(&mut self.buf), records)
    }

    /// Consumes the writer into `(bytes, records)`.
    pub fn finish(self) -> (Vec<u8>, u32) {
        (self.buf, self.records)
    }
}

/// Decompresses a gzip chunk (one or more members), refusing more than `limit` bytes.
pub fn gunzip(data: &[u8], limit: u64) -> Result<Vec<u8>, ChunkError> {
    use std::io::Read as _;
    let mut out = Vec::new();
    let mut dec = flate2::read::MultiGzDecoder::new(data).take(limit.saturating_add(1));
    dec.read_to_end(&mut out)
        .map_err(|e| ChunkError::Gzip(e.to_string()))?;
    if out.len() as u64 > limit {
        return Err(ChunkError::Gzip(format!(
            "decompressed size exceeds {limit} bytes"
        )));
    }
    Ok(out)
}

/// Compresses bytes as one gzip member (for tests and plugins producing gzip chunks).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(bytes: &[u8], expect: Result<Vec<(EventTime, Value)>, &str>) {
        let got = ChunkReader::new(bytes).values().map_err(|e| e.to_string());
        match expect {
            Ok(v) => assert_eq!(got, Ok(v)),
            Err(prefix) => match got {
                Err(msg) => assert!(msg.starts_with(prefix), "{msg:?} vs {prefix:?}"),
                Ok(v) => panic!("expected error {prefix:?}, got {v:?}"),
            },
        }
    }

    fn map(k: &str, v: &str) -> Value {
        Value::Map(vec![(Value::from(k), Value::from(v))])
    }

    #[test]
    fn read_table() {
        let t = EventTime::new(0x5f00_0000, 123);
        // fixext8 EventTime
        let mut a = vec![0x92, 0xd7, 0x00];
        a.extend_from_slice(&t.to_ext_bytes());
        a.extend_from_slice(&[0x81, 0xa1, b'k', 0xa1, b'v']);
        check(&a, Ok(vec![(t, map("k", "v"))]));
        // ext8 len 8 EventTime
        let mut b = vec![0x92, 0xc7, 0x08, 0x00];
        b.extend_from_slice(&t.to_ext_bytes());
        b.extend_from_slice(&[0x80]);
        check(&b, Ok(vec![(t, Value::Map(vec![]))]));
        // integer times (u32 and fixint), two entries
        check(
            &[0x92, 0xce, 0, 0, 0, 10, 0x80, 0x92, 0x05, 0x80],
            Ok(vec![
                (EventTime::new(10, 0), Value::Map(vec![])),
                (EventTime::new(5, 0), Value::Map(vec![])),
            ]),
        );
        // float time
        let mut f = vec![0x92, 0xcb];
        f.extend_from_slice(&1.5f64.to_bits().to_be_bytes());
        f.push(0x80);
        check(
            &f,
            Ok(vec![(EventTime::new(1, 500_000_000), Value::Map(vec![]))]),
        );
        // Fluent Bit v5 [[time, meta], record]
        let mut fb = vec![0x92, 0x92, 0xd7, 0x00];
        fb.extend_from_slice(&t.to_ext_bytes());
        fb.extend_from_slice(&[0x81, 0xa1, b'm', 0x01, 0x80]);
        check(&fb, Ok(vec![(t, Value::Map(vec![]))]));
        // empty chunk
        check(&[], Ok(vec![]));
        // errors
        check(
            &[0x93, 0x01, 0x80, 0x80],
            Err("malformed entry at byte 0: expected a 2-element"),
        );
        check(&[0x92, 0x01], Err("truncated entry at byte 0"));
        check(
            &[0x92, 0x05, 0x80, 0x92, 0x05, 0x81],
            Err("truncated entry at byte 3"),
        );
        check(
            &[0x92, 0xd7, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0x80],
            Err("malformed entry at byte 0: time ext type 1"),
        );
        check(
            &[0x92, 0xa1, b'x', 0x80],
            Err("malformed entry at byte 0: expected a time"),
        );
        check(&[0xc1], Err("malformed entry at byte 0: expected an array"));
        // huge declared length does not allocate or panic
        check(
            &[0x92, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff],
            Err("truncated entry at byte 0"),
        );
    }

    /// Host-shaped entries take the one-pass path; other shapes are left to the general walk.
    #[test]
    fn fast_entry_table() {
        let t = EventTime::new(0x5f00_0000, 123);
        let with = |time: &[u8], rec: &[u8]| [&[0x92][..], time, rec].concat();
        let ext = [&[0xd7, 0x00][..], &t.to_ext_bytes()].concat();
        let rec = [0x82, 0xa1, b'k', 0xcd, 1, 2, 0xa1, b'm', 0xd9, 1, b'x'];
        let check = |bytes: &[u8], expect: Option<usize>| {
            let r = ChunkReader::new(bytes);
            let got = r.fast_entry().map(|(e, end)| {
                assert_eq!(e.time, t);
                assert_eq!(e.record, &bytes[11..end]);
                end
            });
            assert_eq!(got, expect, "{bytes:02x?}");
        };
        check(&with(&ext, &rec), Some(22));
        check(&with(&ext, &[0x80, 0x92]), Some(12));
        check(&with(&ext, &[0xde, 0, 1, 0xa1, b'k', 0x90]), Some(17));
        // Not a map, an integer or ext8 time, truncated, reserved marker: the general walk.
        check(&with(&ext, &[0x91, 0x01]), None);
        check(&with(&[0x05], &rec), None);
        check(&with(&[&[0xc7, 0x08][..], &ext[1..]].concat(), &rec), None);
        check(&with(&ext, &rec[..5]), None);
        check(&with(&ext, &[0x81, 0xa1, b'k', 0xc1]), None);
        check(&with(&ext[..5], &[]), None);
        // Visiting: the pairs of a host-shaped record, in order; nothing for the others.
        let visit = |bytes: &[u8]| {
            let mut r = ChunkReader::new(bytes);
            let mut pairs = Vec::new();
            let got = r.next_visiting(|k, v| pairs.push([k, v].concat()));
            (got.clone_entry_len(), pairs, r.position())
        };
        let host = with(&ext, &rec);
        assert_eq!(
            visit(&host),
            (
                Some(11),
                vec![
                    vec![0xa1, b'k', 0xcd, 1, 2],
                    vec![0xa1, b'm', 0xd9, 1, b'x']
                ],
                22
            )
        );
        assert_eq!(visit(&with(&[0x05], &rec)), (None, vec![], 0));
        assert_eq!(visit(&[]), (None, vec![], 0));
    }

    impl Visited<'_> {
        /// The record length of a visited entry.
        fn clone_entry_len(&self) -> Option<usize> {
            match self {
                Visited::Entry(e) => Some(e.record.len()),
                _ => None,
            }
        }
    }

    #[test]
    fn push_with_writes_in_place_or_not_at_all() {
        let t = EventTime::new(7, 8);
        let mut w = ChunkWriter::new();
        assert_eq!(
            w.push_with(t, |b| {
                b.extend_from_slice(&[0x81, 0xa1, b'k', 0x01]);
                Some(())
            }),
            Some(())
        );
        let before = w.as_bytes().to_vec();
        assert_eq!(
            w.push_with(t, |b| {
                b.push(0x81);
                None::<()>
            }),
            None
        );
        assert_eq!(w.as_bytes(), before);
        assert_eq!(w.records(), 1);
        check(
            w.as_bytes(),
            Ok(vec![(
                t,
                Value::Map(vec![(Value::from("k"), Value::from(1))]),
            )]),
        );
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut v = vec![0x92, 0x01];
        v.extend(std::iter::repeat_n(0x91, MAX_DEPTH + 5));
        v.push(0xc0);
        check(&v, Err("malformed entry at byte 0: nesting deeper"));
    }

    #[test]
    fn gzip_roundtrip_and_limit() {
        let mut w = ChunkWriter::new();
        w.push_value(EventTime::new(1, 2), &map("a", "b"));
        let (bytes, _) = w.finish();
        let mut two = gzip(&bytes);
        two.extend_from_slice(&gzip(&bytes));
        let out = gunzip(&two, 1 << 20).unwrap_or_default();
        assert_eq!(ChunkReader::new(&out).count(), 2);
        assert!(gunzip(&two, 4).is_err());
        assert!(gunzip(b"not gzip", 100).is_err());
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("nan", |f| !f.is_nan())
                .prop_map(Value::from),
            ".{0,20}".prop_map(Value::from),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((".{0,8}".prop_map(Value::from), inner), 0..6)
                    .prop_map(Value::Map),
            ]
        })
    }

    /// Bytes shaped mostly like host-written entries (`0x92`, fixext8 time, a record), with
    /// other times, arbitrary bytes and truncations mixed in.
    fn arb_entryish() -> impl Strategy<Value = Vec<u8>> {
        let time = prop_oneof![
            4 => (any::<u32>(), any::<u32>()).prop_map(|(s, n)| {
                let mut b = vec![0xd7, 0x00];
                b.extend_from_slice(&EventTime::new(s, n).to_ext_bytes());
                b
            }),
            1 => proptest::collection::vec(any::<u8>(), 0..12),
        ];
        let record = prop_oneof![
            4 => proptest::collection::vec((".{0,8}".prop_map(Value::from), arb_value()), 0..8)
                .prop_map(Value::Map),
            1 => arb_value(),
        ];
        (
            time,
            record,
            proptest::collection::vec(any::<u8>(), 0..4),
            0usize..160,
        )
            .prop_map(|(t, rec, junk, cut)| {
                let mut b = vec![0x92];
                b.extend_from_slice(&t);
                let _ = rmpv::encode::write_value(&mut b, &rec);
                b.extend_from_slice(&junk);
                if cut < b.len() && cut % 3 == 0 {
                    b.truncate(cut);
                }
                b
            })
    }

    /// Reads `chunk` one `step` at a time (a `next_visiting` or `next_rendering` call that
    /// checks what it read), taking the iterator's entry after a fallback; checks that a
    /// fallback consumed nothing and that the entries read are the iterator's.
    fn agrees_with_iterator<'a>(
        chunk: &'a [u8],
        mut step: impl FnMut(&mut ChunkReader<'a>) -> Result<Visited<'a>, TestCaseError>,
    ) -> Result<(), TestCaseError> {
        let expect: Vec<_> = ChunkReader::new(chunk).collect();
        let mut got = Vec::new();
        let mut r = ChunkReader::new(chunk);
        loop {
            let before = r.pos;
            match step(&mut r)? {
                Visited::Entry(e) => got.push(Ok(e)),
                Visited::End => break,
                Visited::Fallback => {
                    prop_assert_eq!(r.pos, before);
                    match r.next() {
                        Some(e) => got.push(e),
                        None => break,
                    }
                }
            }
        }
        prop_assert_eq!(got, expect);
        Ok(())
    }

    proptest! {
        #[test]
        fn write_then_read(entries in proptest::collection::vec(
            (any::<u32>(), 0u32..1_000_000_000, arb_value()), 0..8)) {
            let mut w = ChunkWriter::new();
            for (s, n, v) in &entries {
                w.push_value(EventTime::new(*s, *n), v);
            }
            prop_assert_eq!(w.records() as usize, entries.len());
            let (bytes, _) = w.finish();
            let back = ChunkReader::new(&bytes).values();
            let expect: Vec<_> = entries.into_iter().map(|(s, n, v)| (EventTime::new(s, n), v)).collect();
            prop_assert_eq!(back, Ok(expect));
        }

        /// The one-pass reading of host-shaped entries agrees with the general walk on
        /// arbitrary bytes, entry by entry, at every offset of a chunk.
        #[test]
        fn fast_entry_agrees_with_general_walk(bytes in arb_entryish()) {
            for start in 0..bytes.len() {
                let reader = ChunkReader { data: &bytes, pos: start, failed: false };
                let mut general = reader.clone();
                let slow = general.read_entry_general();
                match reader.fast_entry() {
                    Some((entry, end)) => {
                        prop_assert_eq!(slow, Ok(entry));
                        prop_assert_eq!(general.pos, end);
                    }
                    None => {
                        // The general walk decides alone; the reader gives its answer.
                        let mut r = reader.clone();
                        prop_assert_eq!(r.read_entry(), slow);
                    }
                }
            }
        }

        /// Whole chunks read through the iterator equal the general walk alone.
        #[test]
        fn reader_agrees_with_general_walk(parts in proptest::collection::vec(arb_entryish(), 0..5)) {
            let chunk = parts.concat();
            let fast: Vec<_> = ChunkReader::new(&chunk).collect();
            let mut general = Vec::new();
            let mut r = ChunkReader::new(&chunk);
            while r.pos < chunk.len() {
                let e = r.read_entry_general();
                let stop = e.is_err();
                general.push(e);
                if stop {
                    break;
                }
            }
            prop_assert_eq!(fast, general);
        }

        /// Visiting reads the same entries as the iterator, its pairs are the record's
        /// top-level pairs, and a fallback consumes nothing.
        #[test]
        fn visiting_agrees_with_iterator(parts in proptest::collection::vec(arb_entryish(), 0..5)) {
            let chunk = parts.concat();
            agrees_with_iterator(&chunk, |r| {
                let mut pairs = Vec::new();
                let visited = r.next_visiting(|k, v| pairs.push((k, v)));
                if let Visited::Entry(e) = &visited {
                    let mut rd = e.record;
                    let decoded = rmpv::decode::read_value(&mut rd).ok();
                    let want: Option<Vec<(Value, Value)>> = decoded.and_then(|v| match v {
                        Value::Map(m) => Some(m),
                        _ => None,
                    });
                    let seen: Vec<(Value, Value)> = pairs
                        .iter()
                        .filter_map(|&(k, v)| {
                            let (mut k, mut v) = (k, v);
                            Some((rmpv::decode::read_value(&mut k).ok()?, rmpv::decode::read_value(&mut v).ok()?))
                        })
                        .collect();
                    prop_assert_eq!(Some(seen), want);
                }
                Ok(visited)
            })?;
        }

        /// Rendering reads the same entries as the iterator when the renderer measures
        /// records exactly, and consumes nothing when it cannot say or says too much.
        #[test]
        fn rendering_agrees_with_iterator(
            parts in proptest::collection::vec(arb_entryish(), 0..5),
            refuse in any::<u8>(),
        ) {
            let chunk = parts.concat();
            let mut calls = 0u8;
            agrees_with_iterator(&chunk, |r| {
                calls = calls.wrapping_add(1);
                let call = calls;
                // Every so often the renderer declines, or claims more than the chunk holds.
                let answer = move |_: EventTime, rest: &[u8]| match call % 8 {
                    0 if refuse % 2 == 0 => None,
                    1 if refuse % 3 == 0 => Some(rest.len() + 1),
                    _ => nagare_core::fast::map(rest, 0, 1, nagare_core::msgpack::MAX_DEPTH).ok(),
                };
                Ok(r.next_rendering(answer))
            })?;
        }

        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            for e in ChunkReader::new(&bytes).flatten() {
                let _ = e.value();
            }
        }
    }
}
