//! The streaming server-side decoder: bytes in, [`Request`]s out.
//!
//! Framing is incremental and linear: the pending request is scanned once (msgpack by the
//! `framing` module, JSON with a small bracket scanner), its size lower bound is known
//! before it is buffered completely, and a request larger than `chunk_size_limit` is skipped
//! without being buffered. Complete requests are decoded into normalized [`Batch`]es.
//!
//! The hot paths walk each byte once: PackedForward entries are checked in one pass by
//! [`nagare_core::normalize_chunk`]'s fast path; Forward entries are checked while framing
//! and, when canonical, borrowed as they are; consecutive Message requests are coalesced
//! into one batch (see [`Decoder::next_request`]). Reads can go straight into the decoder's
//! buffer ([`Decoder::read_buf`]), which is compacted only when its room runs short.

use std::borrow::Cow;

use nagare_core::msgpack::{Head, MAX_DEPTH, Progress, Skipper, read_head, value_len};
use nagare_core::record::MapIter;
use nagare_core::{EventTime, InvalidEntry, InvalidPolicy, NormalizeOptions, TruncatedPolicy};

use crate::ack::AckId;
use crate::compress;
use crate::error::ForwardError;
use crate::framing::{ForwardScan, MsgpackFramer, Step};
use crate::json::{JsonFramer, json_to_msgpack};

/// Default `decompression_size_limit`: 256 MiB, as Fluentd.
pub const DEFAULT_DECOMPRESSION_LIMIT: u64 = 256 * 1024 * 1024;

/// Default hard bound of one request when no `chunk_size_limit` is set: 512 MiB.
pub const DEFAULT_MAX_REQUEST_SIZE: u64 = 512 * 1024 * 1024;

/// A batch of coalesced Message requests stops growing at this many chunk bytes.
pub const COALESCE_MAX_BYTES: usize = 1024 * 1024;

/// A batch of coalesced Message requests stops growing at this many events.
pub const COALESCE_MAX_EVENTS: u32 = 4096;

/// Spare room [`Decoder::read_buf`] makes when its caller asks for less.
pub const DEFAULT_READ_SIZE: usize = 64 * 1024;

/// Default `capture_min`: PackedForward payloads of 64 KiB and more are read into their own
/// buffer.
pub const DEFAULT_CAPTURE_MIN: usize = 64 * 1024;

/// A captured payload reserves at most this much up front; a larger one grows as it arrives
/// (a header alone never makes the decoder reserve its whole declared size).
const CAPTURE_RESERVE: usize = 16 * 1024 * 1024;

/// What is read past a captured payload's end, in the read that ends it
/// ([`Decoder::payload_buf`]) or in the next one ([`Decoder::read_buf`]): the rest of that
/// request and the head of the next, whose payload then goes straight where it belongs.
pub const PEEK_READ: usize = 1024;

/// The most [`Decoder::read_buf`] hands out of a captured payload at once (whatever `min`).
const CAPTURE_READ: usize = 1024 * 1024;

/// A buffer grown past this by one large request is given back once it is drained.
const SHRINK_ABOVE: usize = 4 * 1024 * 1024;

/// Past this size the buffer is compacted rather than grown whenever that makes room.
const GROW_LIMIT: usize = 16 * 1024 * 1024;

impl Capture {
    /// Payload bytes received.
    fn received(&self) -> usize {
        self.handed.unwrap_or(self.payload.len())
    }

    /// Takes back room handed out and never committed; the payload bytes received.
    fn settle(&mut self) -> usize {
        if let Some(received) = self.handed.take() {
            self.payload.truncate(received);
        }
        self.payload.len()
    }
}

/// Settings of a [`Decoder`]; names follow in_forward's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Requests larger than this are dropped (skipped without buffering, not acked).
    pub chunk_size_limit: Option<u64>,
    /// Requests larger than this are flagged for a warning.
    pub chunk_size_warn_limit: Option<u64>,
    /// The largest decompressed size of a CompressedPackedForward payload.
    pub decompression_size_limit: u64,
    /// Requests larger than this are a fatal error (bounds memory when no
    /// `chunk_size_limit` is set).
    pub max_request_size: u64,
    /// Deepest nesting accepted (at most [`MAX_DEPTH`]).
    pub max_depth: usize,
    /// Drop invalid events (`skip_invalid_event`, default true); otherwise keep them as sent.
    pub skip_invalid_event: bool,
    /// Replaces the incoming tag (`tag`).
    pub tag: Option<String>,
    /// Prefixes the tag with `"<prefix>."` (`add_tag_prefix`).
    pub add_tag_prefix: Option<String>,
    /// Whether a connection whose first byte is `{` or `[` speaks JSON (not with `<security>`).
    pub allow_json: bool,
    /// Whether consecutive Message requests already buffered are coalesced into one
    /// [`Batch`] (see [`Decoder::next_request`]). Turn it off where each request must stand
    /// alone (`deny_keepalive`, which closes the connection after the first one).
    pub coalesce_messages: bool,
    /// Whether a coalesced batch may end with a request that asks for an ack (default true;
    /// the batch then carries that ack). Turn it off where an acked request must be judged
    /// alone — e.g. a resend window that would skip a whole batch for a resent ack id: such
    /// a request is then decoded on its own.
    pub coalesce_acked: bool,
    /// A PackedForward payload (`[tag, <<entries>>, option?]`) of at least this many bytes
    /// is read into a buffer of its own, sized from its header, once the header has arrived:
    /// the request's [`Batch`] then owns that buffer as its chunk when the entries are
    /// canonical, so neither [`Request::into_owned`] nor a waiting connection copies or
    /// doubles it, and the connection's read buffer stays small. `usize::MAX` turns it off.
    pub capture_min: usize,
    /// Whether a capture waits to be admitted: the decoder then only reports it
    /// ([`Decoder::capture_pending`]) until [`Decoder::admit_capture`] starts it, so a server
    /// can bound the memory that large requests hold across its connections (the payload's
    /// buffer is reserved only on admission). Meanwhile the caller should not read.
    pub admit_captures: bool,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            chunk_size_limit: None,
            chunk_size_warn_limit: None,
            decompression_size_limit: DEFAULT_DECOMPRESSION_LIMIT,
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            max_depth: MAX_DEPTH,
            skip_invalid_event: true,
            tag: None,
            add_tag_prefix: None,
            allow_json: true,
            coalesce_messages: true,
            coalesce_acked: true,
            capture_min: DEFAULT_CAPTURE_MIN,
            admit_captures: false,
        }
    }
}

/// The serialization a connection uses; replies use the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// msgpack (the normal case).
    Msgpack,
    /// JSON (first byte `{` or `[`).
    Json,
}

/// The event mode of a request (decided by the type of its second element).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `[tag, time, record, option?]`.
    Message,
    /// `[tag, [[time, record]...], option?]`.
    Forward,
    /// `[tag, <<entries>>, option?]` with entries as str or bin.
    PackedForward,
    /// PackedForward with `compressed: "gzip"` or `"zstd"`.
    CompressedPackedForward,
}

/// A decoded event request, normalized to a canonical chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<'a> {
    /// How it was sent.
    pub mode: Mode,
    /// The tag after `tag`/`add_tag_prefix`.
    pub tag: String,
    /// Canonical chunk entries; borrowed from the decoder when they arrived canonical.
    pub chunk: Cow<'a, [u8]>,
    /// Number of entries in `chunk`.
    pub records: u32,
    /// Number of invalid events (dropped unless `skip_invalid_event false`).
    pub invalid: u32,
    /// The first invalid event, for a log line.
    pub first_invalid: Option<InvalidEntry>,
    /// The `chunk` option: when present, the server must answer `{"ack": <it>}`.
    pub chunk_option: Option<AckId>,
    /// The `size` option as sent (informational).
    pub size_option: Option<u64>,
    /// The v1.5 `fluent_signal` option (0 logs, 1 metrics, 2 traces).
    pub fluent_signal: Option<i64>,
    /// Byte size of the request.
    pub request_size: u64,
    /// Whether the request is larger than `chunk_size_warn_limit`.
    pub over_warn_limit: bool,
    /// The encoding of the request (and of its ack).
    pub encoding: Encoding,
    /// How many requests the batch holds: 1, or more for coalesced Message requests.
    pub requests: u32,
}

impl Batch<'_> {
    /// A copy that owns its chunk.
    pub fn into_owned(self) -> Batch<'static> {
        Batch {
            chunk: Cow::Owned(self.chunk.into_owned()),
            ..self
        }
    }
}

/// One request from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// msgpack `nil`: a TCP heartbeat, ignored.
    Heartbeat,
    /// An event request (Message, Forward, PackedForward, CompressedPackedForward). When
    /// `records` is 0 there is nothing to emit, but an ack is still due if asked for.
    Events(Batch<'a>),
    /// A request that is not an array: Fluentd logs "incoming chunk is broken" and ignores it;
    /// the connection stays open.
    Broken {
        /// Why.
        reason: String,
        /// Byte size of the request.
        size: u64,
    },
    /// A request larger than `chunk_size_limit`: dropped, not acked.
    Oversized {
        /// The tag, when it could be read from the part that was seen.
        tag: Option<String>,
        /// Byte size of the request.
        size: u64,
        /// The limit in force.
        limit: u64,
    },
}

/// One framed value, before request decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete msgpack value (JSON values are converted to msgpack first, see
    /// [`Decoder::next_request`]; `next_frame` returns JSON text as is).
    Value(&'a [u8]),
    /// A value larger than `chunk_size_limit`, skipped.
    Oversized {
        /// Its byte size.
        size: u64,
    },
}

enum Framing {
    Unknown,
    Msgpack(Box<MsgpackFramer>),
    Json(JsonFramer),
}

enum Found {
    Value {
        start: usize,
        end: usize,
        scan: Option<ForwardScan>,
    },
    /// A PackedForward request read by [`Capture`]: `buf[start..start + head]` is its head,
    /// `payload` its entries, then `tail` bytes of options.
    Captured {
        start: usize,
        head: usize,
        payload: Vec<u8>,
        tail: usize,
        size: u64,
        offset: u64,
    },
    Oversized {
        size: u64,
        tag: Option<String>,
        limit: u64,
    },
}

/// Streaming decoder for one connection.
///
/// Bytes go in with [`feed`](Self::feed), or are read straight into the decoder's own buffer
/// with [`read_buf`](Self::read_buf) and [`commit`](Self::commit) (one copy less). The buffer
/// is compacted only when its spare room runs short, so a request is moved at most once
/// whatever the number of reads it arrives in.
pub struct Decoder {
    cfg: DecoderConfig,
    /// `buf[start..end]` is pending; `buf[end..]` is room handed out by `read_buf` (zeroed
    /// once), and the capacity past `buf.len()` is room not touched yet.
    buf: Vec<u8>,
    /// Start of the pending value in `buf`.
    start: usize,
    /// End of the bytes received.
    end: usize,
    framing: Framing,
    /// Bytes of an oversized value already dropped; `Some` while discarding.
    discarded: Option<u64>,
    discard_tag: Option<String>,
    /// Stream offset of `buf[0]`.
    base: u64,
    poisoned: bool,
    /// The PackedForward request whose payload is being read into its own buffer.
    capture: Option<Box<Capture>>,
    /// Whether the next read is kept small (see [`PEEK_READ`]): the connection is new, or a
    /// captured payload is whole; the next request may well be captured.
    peek_next: bool,
    /// Set by [`Decoder::admit_capture`] for the capture it starts.
    admitted: bool,
}

/// A PackedForward request whose payload is read into its own buffer (see
/// [`DecoderConfig::capture_min`]). Its head stays in the decoder's buffer at `start`, and
/// the bytes after the payload (the option map, the next requests) go there again once the
/// payload is complete.
struct Capture {
    /// Length of the head: request array header, tag, payload header.
    head: usize,
    /// Elements of the request array (2, or 3 with options).
    count: u32,
    /// The payload bytes received (and, between [`Decoder::read_buf`] and
    /// [`Decoder::commit`], zeroed room past them).
    payload: Vec<u8>,
    /// `Some(received)` while `read_buf` has room of the payload handed out.
    handed: Option<usize>,
    /// Its declared length.
    len: usize,
    /// Frames the option map.
    tail: Skipper,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("buffered", &self.buffered())
            .field("encoding", &self.encoding())
            .field("discarding", &self.discarded.is_some())
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// A decoder for a new connection.
    pub fn new(cfg: DecoderConfig) -> Self {
        Decoder {
            cfg,
            buf: Vec::new(),
            start: 0,
            end: 0,
            framing: Framing::Unknown,
            discarded: None,
            discard_tag: None,
            base: 0,
            poisoned: false,
            capture: None,
            // The first read too: a sender of large PackedForward requests then never
            // makes the connection's own buffer grow.
            peek_next: true,
            admitted: false,
        }
    }

    /// Changes [`DecoderConfig::capture_min`] from the next request on (a request already
    /// being captured stays so).
    pub fn set_capture_min(&mut self, capture_min: usize) {
        self.cfg.capture_min = capture_min;
    }

    /// The configuration.
    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    /// The connection's encoding, once its first byte was seen.
    pub fn encoding(&self) -> Option<Encoding> {
        match self.framing {
            Framing::Unknown => None,
            Framing::Msgpack(_) => Some(Encoding::Msgpack),
            Framing::Json(_) => Some(Encoding::Json),
        }
    }

    /// Bytes buffered and not yet returned (a captured payload's included).
    pub fn buffered(&self) -> usize {
        self.end - self.start + self.capture.as_ref().map_or(0, |c| c.received())
    }

    /// Whether a partial request is pending (or being discarded).
    pub fn in_request(&self) -> bool {
        self.buffered() > 0 || self.discarded.is_some()
    }

    /// Bytes in the decoder's own buffer, not counting a captured payload.
    fn pending(&self) -> usize {
        self.end - self.start
    }

    /// Appends bytes read from the connection.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            // A captured payload takes only its own bytes; the rest goes on.
            let spare = self.read_buf(data.len());
            let n = spare.len().min(data.len());
            let (now, later) = data.split_at(n);
            if let Some(dst) = spare.get_mut(..n) {
                dst.copy_from_slice(now);
            }
            self.commit(n);
            if n == 0 {
                return;
            }
            data = later;
        }
    }

    /// Spare room of at least `min` bytes (or [`DEFAULT_READ_SIZE`] when `min` is 0) to read
    /// the connection into; say how much was read with [`commit`](Self::commit). While a
    /// large PackedForward payload is read into its own buffer (see
    /// [`DecoderConfig::capture_min`]), the room is in that buffer and ends where the payload
    /// does, so it may be smaller than `min` (never empty); so are the connection's first read
    /// and the read right after such a payload ([`PEEK_READ`] bytes: a request's head, whose
    /// payload then goes straight where it belongs).
    ///
    /// Makes room by moving the pending bytes to the front when they are few, otherwise by
    /// growing the buffer's capacity (to about four times the largest pending request). Only
    /// the room handed out is zeroed, the first time it is used: a connection holds in memory
    /// the bytes it has read, never the whole capacity it grew to, so a thousand connections
    /// waiting on a full buffer hold little more than their requests.
    pub fn read_buf(&mut self, min: usize) -> &mut [u8] {
        let min = if min == 0 { DEFAULT_READ_SIZE } else { min };
        if self.capturing() {
            return self.capture_room(min);
        }
        // A peek: just the rest of a request and the head of the next one, whose payload,
        // if captured, is then read where it goes, not copied there (and the buffer is not
        // grown for it).
        let peek = std::mem::take(&mut self.peek_next);
        let min = if peek { PEEK_READ } else { min };
        if self.start == self.end {
            self.drop_consumed();
        }
        if self.buf.capacity() - self.end < min {
            // Move the pending bytes when they are few (at most a quarter of the buffer, so
            // moves cost at most a third of a byte per byte read), else grow the buffer;
            // past `GROW_LIMIT` memory matters more than moves.
            let few = self.pending().saturating_mul(4) <= self.buf.capacity();
            if self.start > 0 && (few || self.buf.capacity() >= GROW_LIMIT) {
                self.drop_consumed();
            }
            if self.buf.capacity() - self.end < min {
                let want = (self.pending() + min).max(self.buf.capacity().saturating_mul(2));
                self.regrow(want);
            }
        }
        let room = self.end + min;
        if self.buf.len() < room {
            // Within the capacity: no reallocation.
            self.buf.resize(room, 0);
        }
        let end = self.end;
        let room = self.buf.get_mut(end..).unwrap_or_default();
        if peek {
            let n = room.len().min(PEEK_READ);
            return room.get_mut(..n).unwrap_or_default();
        }
        room
    }

    /// Whether reads go into a captured payload.
    fn capturing(&self) -> bool {
        self.capture.as_ref().is_some_and(|c| c.received() < c.len)
    }

    /// Room in the captured payload, never past its end (zeroed: see
    /// [`payload_buf`](Self::payload_buf) for reading without).
    fn capture_room(&mut self, min: usize) -> &mut [u8] {
        let Some(c) = self.capture.as_deref_mut() else {
            return &mut [];
        };
        let received = c.settle();
        let room = (c.len - received).min(min.max(CAPTURE_READ));
        c.payload.resize(received + room, 0);
        c.handed = Some(received);
        c.payload.get_mut(received..).unwrap_or_default()
    }

    /// While a large PackedForward payload is being read into its own buffer (see
    /// [`DecoderConfig::capture_min`]): that buffer and how many bytes to append to it at
    /// most, without zeroing room first (tokio's `AsyncReadExt::read_buf` with the vector
    /// limited to that many bytes, say). That is what the payload lacks and [`PEEK_READ`]
    /// more, so the read that ends the payload can bring the rest of the request and the
    /// head of the next in the same call; bytes past the payload's end are the stream's
    /// next bytes (more than offered is allowed too). Bytes appended are received as soon
    /// as they are there: no [`commit`](Self::commit). `None` otherwise: read with
    /// [`read_buf`](Self::read_buf).
    pub fn payload_buf(&mut self) -> Option<(&mut Vec<u8>, usize)> {
        if !self.capturing() {
            return None;
        }
        let c = self.capture.as_deref_mut()?;
        let received = c.settle();
        Some((&mut c.payload, c.len - received + PEEK_READ))
    }

    /// Moves the pending bytes to the front of a new buffer of `capacity` bytes: only they
    /// are copied (a reallocation would copy, and so touch, the whole old buffer).
    fn regrow(&mut self, capacity: usize) {
        let mut grown = Vec::with_capacity(capacity);
        grown.extend_from_slice(self.buf.get(self.start..self.end).unwrap_or_default());
        self.base += self.start as u64;
        self.end -= self.start;
        self.start = 0;
        self.buf = grown;
    }

    /// Gives back the buffer's memory beyond the pending bytes (a partial next request, if
    /// any), for a connection about to wait long (for room downstream, for admission):
    /// waiting connections then hold their requests, not buffers grown or zeroed for reads.
    /// Reading later grows it again.
    pub fn compact(&mut self) {
        if self.buf.len() > self.pending() + PEEK_READ
            || self.buf.capacity() > self.pending().max(DEFAULT_READ_SIZE)
        {
            self.regrow(self.pending());
        }
    }

    /// (bytes of the buffer written so far, its capacity), for tests of its memory.
    #[cfg(test)]
    pub(crate) fn memory(&self) -> (usize, usize) {
        (self.buf.len(), self.buf.capacity())
    }

    /// (bytes of a captured payload handed out so far, its capacity), for tests of its memory.
    #[cfg(test)]
    pub(crate) fn capture_memory(&self) -> Option<(usize, usize)> {
        self.capture
            .as_ref()
            .map(|c| (c.payload.len(), c.payload.capacity()))
    }

    /// Records that the first `n` bytes of [`read_buf`](Self::read_buf) were filled.
    pub fn commit(&mut self, n: usize) {
        if let Some(c) = self.capture.as_deref_mut()
            && let Some(received) = c.handed.take()
        {
            c.payload.truncate(received.saturating_add(n));
            return;
        }
        self.end = self.end.saturating_add(n).min(self.buf.len());
    }

    /// Moves the pending bytes to the front of the buffer (cheap when there are none), and
    /// gives back a buffer a huge request left behind.
    fn drop_consumed(&mut self) {
        if self.start == 0 {
            return;
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.base += self.start as u64;
        self.end -= self.start;
        self.start = 0;
        if self.end == 0 && self.buf.capacity() > SHRINK_ABOVE {
            self.buf = Vec::new();
        }
    }

    /// The next complete request, or `None` when more bytes are needed.
    ///
    /// Message requests (`[tag, time, record, option?]`) are coalesced: when one is valid
    /// and asks for no ack, the complete Message requests buffered right after it with the
    /// same tag join its [`Batch`] (`requests` counts them), up to [`COALESCE_MAX_BYTES`]
    /// of chunk or [`COALESCE_MAX_EVENTS`] events. The batch stops before a different tag,
    /// an incomplete or unusual request (it comes next, on its own), and right after a
    /// request that asks for an ack: that ack id becomes the batch's `chunk_option`, so the
    /// ack still goes out only once every earlier event was accepted (with
    /// `coalesce_acked` off, the batch stops before it instead and the acked request comes
    /// alone). Tags, counts and acks are the same whatever the reads the stream arrived in.
    ///
    /// An `Err` is fatal: close the connection without acking.
    pub fn next_request(&mut self) -> Result<Option<Request<'_>>, ForwardError> {
        let Some(found) = self.find(true)? else {
            return Ok(None);
        };
        // Read after `find`: the first byte of the connection decides the encoding.
        let encoding = self.encoding();
        match found {
            Found::Oversized { size, tag, limit } => {
                Ok(Some(Request::Oversized { tag, size, limit }))
            }
            Found::Captured {
                start,
                head,
                payload,
                tail,
                size,
                offset,
            } => {
                let raw_head = self.buf.get(start..start + head).unwrap_or_default();
                let options = self
                    .buf
                    .get(start + head..start + head + tail)
                    .filter(|o| !o.is_empty());
                let res = decode_captured(raw_head, payload, options, &self.cfg, offset, size);
                if res.is_err() {
                    self.poisoned = true;
                }
                res.map(Some)
            }
            Found::Value { start, end, scan } => {
                let offset = self.base + start as u64;
                let message = encoding != Some(Encoding::Json)
                    && self.cfg.coalesce_messages
                    && is_message(self.buf.get(start..end).unwrap_or_default());
                let res = if message {
                    self.decode_message(start, end, offset)
                } else {
                    let raw = self.buf.get(start..end).unwrap_or_default();
                    match encoding {
                        Some(Encoding::Json) => decode_json_request(raw, &self.cfg, offset),
                        _ => decode_msgpack(raw, &self.cfg, Encoding::Msgpack, offset, scan),
                    }
                };
                if res.is_err() {
                    self.poisoned = true;
                }
                res.map(Some)
            }
        }
    }

    /// Decodes the Message request at `buf[start..end]` and coalesces the ones after it.
    fn decode_message(
        &mut self,
        start: usize,
        end: usize,
        offset: u64,
    ) -> Result<Request<'static>, ForwardError> {
        let raw = self.buf.get(start..end).unwrap_or_default();
        let tag_raw = message_tag(raw).map(<[u8]>::to_vec);
        // A Message batch owns its chunk: the conversion copies nothing.
        let req = owned_request(decode_msgpack(
            raw,
            &self.cfg,
            Encoding::Msgpack,
            offset,
            None,
        )?);
        Ok(match (req, tag_raw) {
            (Request::Events(mut b), Some(tag_raw)) if self.coalesces(&b) => {
                self.coalesce(&mut b, &tag_raw);
                Request::Events(b)
            }
            (req, _) => req,
        })
    }

    /// Whether more Message requests may join `b`.
    fn coalesces(&self, b: &Batch<'_>) -> bool {
        self.cfg.coalesce_messages
            && b.mode == Mode::Message
            && b.encoding == Encoding::Msgpack
            && b.records == 1
            && b.invalid == 0
            && b.chunk_option.is_none()
            && !b.over_warn_limit
    }

    /// Appends the buffered Message requests that may join `b` (see
    /// [`next_request`](Self::next_request)).
    fn coalesce(&mut self, b: &mut Batch<'static>, tag_raw: &[u8]) {
        // The largest request that would not be dropped, warned about or refused alone.
        let limit = [
            self.cfg.chunk_size_limit,
            self.cfg.chunk_size_warn_limit,
            Some(self.cfg.max_request_size),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(u64::MAX);
        let Cow::Owned(chunk) = &mut b.chunk else {
            return;
        };
        // Room for what is buffered, in one allocation.
        chunk.reserve(self.buffered().min(COALESCE_MAX_BYTES));
        while b.records < COALESCE_MAX_EVENTS {
            let view = self.buf.get(self.start..self.end).unwrap_or_default();
            let Some(m) = fast_message(view, tag_raw, self.cfg.max_depth) else {
                break;
            };
            if m.len as u64 > limit
                || (m.options.chunk.is_some() && !self.cfg.coalesce_acked)
                || chunk.len() + 11 + m.record.len() > COALESCE_MAX_BYTES
                || m.options.size != b.size_option
                || m.options.fluent_signal != b.fluent_signal
            {
                break;
            }
            chunk.push(0x92);
            m.time.write_to(chunk);
            chunk.extend_from_slice(m.record);
            b.records += 1;
            b.requests += 1;
            b.request_size += m.len as u64;
            self.start += m.len;
            if let Some(ack) = m.options.chunk {
                b.chunk_option = Some(ack);
                break;
            }
        }
    }

    /// The next framed value without request decoding (for the handshake phase).
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, ForwardError> {
        Ok(match self.find(false)? {
            None => None,
            Some(Found::Oversized { size, .. }) => Some(Frame::Oversized { size }),
            Some(Found::Captured { .. }) => {
                self.poisoned = true;
                return Err(ForwardError::FrameInRequest);
            }
            Some(Found::Value { start, end, .. }) => {
                Some(Frame::Value(self.buf.get(start..end).unwrap_or_default()))
            }
        })
    }

    /// Forces msgpack framing (a `<security>` session, where JSON is not allowed).
    pub fn force_msgpack(&mut self) {
        if matches!(self.framing, Framing::Unknown) {
            self.framing = Framing::Msgpack(Box::new(MsgpackFramer::new(self.cfg.max_depth)));
        }
    }

    /// The next framed value; `capture`: whether a large PackedForward payload may be read
    /// into its own buffer (not while framing values one by one for `next_frame`).
    fn find(&mut self, capture: bool) -> Result<Option<Found>, ForwardError> {
        if self.poisoned {
            return Err(ForwardError::Poisoned);
        }
        let res = self.find_inner(capture);
        if res.is_err() {
            self.poisoned = true;
        }
        res
    }

    fn find_inner(&mut self, capture: bool) -> Result<Option<Found>, ForwardError> {
        if self.capture.is_some() {
            return self.find_captured();
        }
        if self.start == self.end {
            self.drop_consumed();
        }
        loop {
            let view = self.buf.get(self.start..self.end).unwrap_or_default();
            let Some(&first) = view.first() else {
                return Ok(None);
            };
            if matches!(self.framing, Framing::Unknown) {
                self.framing = if first == b'{' || first == b'[' {
                    if !self.cfg.allow_json {
                        return Err(ForwardError::JsonNotAllowed);
                    }
                    Framing::Json(JsonFramer::new(self.cfg.max_depth))
                } else {
                    Framing::Msgpack(Box::new(MsgpackFramer::new(self.cfg.max_depth)))
                };
            }
            let offset = self.base + self.start as u64;
            // (complete end, or lower bound of the end and the bytes safe to drop)
            let mut scan = None;
            let step = match &mut self.framing {
                Framing::Msgpack(m) => match m.advance(view) {
                    Ok(Step::Complete(n)) => {
                        scan = m.scan();
                        Ok(n)
                    }
                    Ok(Step::Incomplete { needed, scanned }) => Err((needed, scanned)),
                    Err(source) => return Err(ForwardError::Msgpack { offset, source }),
                },
                Framing::Json(j) => match j.advance(view) {
                    Ok(Some(n)) => {
                        j.reset();
                        Ok(n)
                    }
                    Ok(None) => Err((j.position() as u64 + 1, j.position())),
                    Err(reason) => return Err(ForwardError::Json { offset, reason }),
                },
                Framing::Unknown => return Ok(None),
            };
            match step {
                Ok(n) => {
                    let start = self.start;
                    self.start += n;
                    let size = self.discarded.take().unwrap_or(0) + n as u64;
                    let tag = self.discard_tag.take();
                    let whitespace_only = matches!(self.framing, Framing::Json(_))
                        && view
                            .get(..n)
                            .is_some_and(|v| v.iter().all(u8::is_ascii_whitespace));
                    if whitespace_only {
                        continue;
                    }
                    if let Some(limit) = self.cfg.chunk_size_limit
                        && size > limit
                    {
                        let tag = tag.or_else(|| self.peek_tag(start, start + n));
                        return Ok(Some(Found::Oversized { size, tag, limit }));
                    }
                    if size > self.cfg.max_request_size {
                        return Err(ForwardError::TooLarge {
                            size,
                            limit: self.cfg.max_request_size,
                        });
                    }
                    return Ok(Some(Found::Value {
                        start,
                        end: start + n,
                        scan,
                    }));
                }
                Err((needed, scanned)) => {
                    let total = self.discarded.unwrap_or(0) + needed;
                    if self.discarded.is_none()
                        && let Some(limit) = self.cfg.chunk_size_limit
                        && total > limit
                    {
                        self.discard_tag = self.peek_tag(self.start, self.end);
                        self.discarded = Some(0);
                    }
                    if self.discarded.is_none() && total > self.cfg.max_request_size {
                        return Err(ForwardError::TooLarge {
                            size: total,
                            limit: self.cfg.max_request_size,
                        });
                    }
                    if capture && self.discarded.is_none() {
                        self.start_capture();
                    }
                    if let Some(d) = self.discarded.as_mut() {
                        // Drop what was scanned: the scanners never look back.
                        *d += scanned as u64;
                        let from = self.start + scanned;
                        self.buf.copy_within(from..self.end, self.start);
                        self.end -= scanned;
                        self.base += scanned as u64;
                        match &mut self.framing {
                            Framing::Msgpack(m) => m
                                .rebase(scanned)
                                .map_err(|source| ForwardError::Msgpack { offset, source })?,
                            Framing::Json(j) => j.rebase(scanned),
                            Framing::Unknown => {}
                        }
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// The pending request when it would be captured (a PackedForward request with a
    /// payload of at least `capture_min` bytes whose header has arrived and whose end has
    /// not): its head and payload length. Its options are not counted.
    fn capturable(&self) -> Option<(u32, usize, usize)> {
        if !matches!(self.framing, Framing::Msgpack(_))
            || self.capture.is_some()
            || self.discarded.is_some()
        {
            return None;
        }
        let view = self.buf.get(self.start..self.end).unwrap_or_default();
        let (count, head, len) = packed_head(view)?;
        (len >= self.cfg.capture_min && view.len() < head + len).then_some((count, head, len))
    }

    /// With [`DecoderConfig::admit_captures`]: when [`next_request`](Self::next_request)
    /// has returned `None` and the pending request waits to be captured, the bytes it will
    /// hold (its head and payload), before anything is reserved for it. Admit it with
    /// [`admit_capture`](Self::admit_capture) before reading on. `None` otherwise.
    pub fn capture_pending(&self) -> Option<usize> {
        if !self.cfg.admit_captures {
            return None;
        }
        self.capturable()
            .map(|(_, head, len)| head.saturating_add(len))
    }

    /// Starts the capture [`capture_pending`](Self::capture_pending) reported: its buffer
    /// is reserved and reads go there. `false` if nothing was started (the request is then
    /// read the ordinary way).
    pub fn admit_capture(&mut self) -> bool {
        self.admitted = true;
        self.start_capture();
        self.admitted = false;
        self.capture.is_some()
    }

    /// Starts capturing the pending request when it is a PackedForward request with a
    /// payload of at least `capture_min` bytes whose header has arrived and whose end has
    /// not (and, with [`DecoderConfig::admit_captures`], once admitted): the payload bytes
    /// already here move to their own buffer, and later reads go there (see [`Capture`]).
    fn start_capture(&mut self) {
        if self.cfg.admit_captures && !self.admitted {
            return;
        }
        let Some((count, head, len)) = self.capturable() else {
            return;
        };
        let view = self.buf.get(self.start..self.end).unwrap_or_default();
        let mut tail = Skipper::with_max_depth(self.cfg.max_depth);
        // The option map is the last element of the request array (a depth limit that
        // refuses even that leaves the request to the framer, which refuses it).
        if count == 3 && tail.resume_in(0, &[1]).is_err() {
            return;
        }
        // Room for a read past the payload too (see `payload_buf`).
        let mut payload = Vec::with_capacity(len.saturating_add(PEEK_READ).min(CAPTURE_RESERVE));
        payload.extend_from_slice(view.get(head..).unwrap_or_default());
        self.end = self.start + head;
        if let Framing::Msgpack(m) = &mut self.framing {
            m.reset();
        }
        self.capture = Some(Box::new(Capture {
            head,
            count,
            payload,
            handed: None,
            len,
            tail,
        }));
    }

    /// The captured request, once its payload and options are complete.
    fn find_captured(&mut self) -> Result<Option<Found>, ForwardError> {
        let Some(c) = self.capture.as_deref_mut() else {
            return Ok(None);
        };
        if c.settle() < c.len {
            return Ok(None);
        }
        if c.payload.len() > c.len {
            // Appended past the payload through `payload_buf`: the stream's next bytes.
            self.buf.truncate(self.end);
            self.buf
                .extend_from_slice(c.payload.get(c.len..).unwrap_or_default());
            self.end = self.buf.len();
            c.payload.truncate(c.len);
        } else if self.end == self.start + c.head {
            // The payload is whole and nothing after it has come: what comes next is small
            // (the options, the next request's head), so the next read is too.
            self.peek_next = true;
        }
        let offset = self.base + self.start as u64;
        let after = self.start + c.head;
        let rest = self.buf.get(after..self.end).unwrap_or_default();
        let tail = if c.count == 3 {
            match c.tail.advance(rest) {
                Ok(Progress::Complete(n)) => n,
                Ok(Progress::Incomplete { needed }) => {
                    let size = (c.head + c.len) as u64 + needed;
                    if let Some(limit) = self.cfg.chunk_size_limit
                        && size > limit
                    {
                        self.discard_captured();
                        return self.find_inner(false);
                    }
                    if size > self.cfg.max_request_size {
                        return Err(ForwardError::TooLarge {
                            size,
                            limit: self.cfg.max_request_size,
                        });
                    }
                    return Ok(None);
                }
                Err(source) => {
                    // Offsets from the start of the request, as framing it whole gives.
                    let source = source.shifted(c.head + c.len);
                    return Err(ForwardError::Msgpack { offset, source });
                }
            }
        } else {
            0
        };
        let Some(c) = self.capture.take() else {
            return Ok(None);
        };
        let start = self.start;
        let size = (c.head + c.len + tail) as u64;
        self.start = after + tail;
        // The payload's bytes never were in `buf`: later offsets are past them.
        self.base += c.len as u64;
        if let Some(limit) = self.cfg.chunk_size_limit
            && size > limit
        {
            let tag = self.peek_tag(start, start + c.head);
            return Ok(Some(Found::Oversized { size, tag, limit }));
        }
        if size > self.cfg.max_request_size {
            return Err(ForwardError::TooLarge {
                size,
                limit: self.cfg.max_request_size,
            });
        }
        Ok(Some(Found::Captured {
            start,
            head: c.head,
            payload: c.payload,
            tail,
            size,
            offset,
        }))
    }

    /// The captured request's options run past `chunk_size_limit`: it is dropped as any
    /// oversized request is. The payload is let go, the head leaves the buffer, and the
    /// framer skips the rest of the options, counting what was dropped.
    fn discard_captured(&mut self) {
        let Some(c) = self.capture.take() else {
            return;
        };
        self.discard_tag = self.peek_tag(self.start, self.start + c.head);
        let after = self.start + c.head;
        self.buf.copy_within(after..self.end, self.start);
        self.end -= c.head;
        // `buf[start]` is now the first byte of the options.
        self.base += (c.head + c.len) as u64;
        self.discarded = Some((c.head + c.len) as u64);
        if let Framing::Msgpack(m) = &mut self.framing {
            m.resume_skipper(c.tail);
        }
    }

    /// Best-effort tag of a (possibly partial) request at `buf[start..end]`.
    fn peek_tag(&self, start: usize, end: usize) -> Option<String> {
        let raw = self.buf.get(start..end)?;
        match self.framing {
            Framing::Msgpack(_) => {
                let (Head::Array(_), n) = read_head(raw).ok()? else {
                    return None;
                };
                let (head, _) = read_head(raw.get(n..)?).ok()?;
                let s = head.str_or_bin()?;
                Some(String::from_utf8_lossy(s).into_owned())
            }
            Framing::Json(_) => {
                let text = std::str::from_utf8(raw)
                    .ok()?
                    .trim_start()
                    .strip_prefix('[')?
                    .trim_start();
                let rest = text.strip_prefix('"')?;
                let end = rest.find('"')?;
                Some(rest.get(..end)?.to_owned())
            }
            Framing::Unknown => None,
        }
    }
}

/// Options of an event request.
#[derive(Default)]
struct Options {
    chunk: Option<AckId>,
    compressed: Option<Vec<u8>>,
    size: Option<u64>,
    fluent_signal: Option<i64>,
}

fn parse_options(raw: Option<&[u8]>) -> Options {
    let mut o = Options::default();
    let Some(raw) = raw else { return o };
    let Ok(iter) = MapIter::new(raw) else {
        return o;
    };
    for (k, v) in iter.flatten() {
        let Ok((Head::Str(key), _)) = read_head(k) else {
            continue;
        };
        let Ok((val, _)) = read_head(v) else { continue };
        match (key, val) {
            (b"chunk", h) => o.chunk = h.str_or_bin().map(|s| AckId(s.to_vec())),
            (b"compressed", h) => o.compressed = h.str_or_bin().map(<[u8]>::to_vec),
            (b"size", Head::Int(n)) => o.size = u64::try_from(n).ok(),
            (b"fluent_signal", Head::Int(n)) => o.fluent_signal = i64::try_from(n).ok(),
            _ => {}
        }
    }
    o
}

/// Splits a complete array value into its first `N` elements (missing ones are `None`).
fn elements<const N: usize>(
    raw: &[u8],
    count: u32,
    hdr: usize,
) -> Result<[Option<&[u8]>; N], nagare_core::MsgpackError> {
    let mut out = [None; N];
    let mut rest = raw.get(hdr..).unwrap_or_default();
    for slot in out.iter_mut().take(count as usize) {
        let n = value_len(rest)?;
        let (v, r) = rest.split_at(n.min(rest.len()));
        *slot = Some(v);
        rest = r;
    }
    Ok(out)
}

/// Whether a msgpack request is in Message mode (its second element is not a str, bin or
/// array), judged from its head alone.
fn is_message(raw: &[u8]) -> bool {
    let Ok((Head::Array(n), hdr)) = read_head(raw) else {
        return false;
    };
    let Some(tag_end) = raw
        .get(hdr..)
        .and_then(|r| value_len(r).ok())
        .map(|t| hdr + t)
    else {
        return false;
    };
    n >= 2
        && !matches!(
            raw.get(tag_end),
            Some(0xa0..=0xbf | 0xc4..=0xc6 | 0xd9..=0xdb | 0x90..=0x9f | 0xdc | 0xdd)
        )
}

/// A request that owns its data (copies only a borrowed chunk).
fn owned_request(r: Request<'_>) -> Request<'static> {
    r.into_owned()
}

impl Request<'_> {
    /// The same request owning its data (copies only a borrowed chunk), so the decoder can
    /// be used again while it is handled.
    pub fn into_owned(self) -> Request<'static> {
        match self {
            Request::Events(b) => Request::Events(b.into_owned()),
            Request::Heartbeat => Request::Heartbeat,
            Request::Broken { reason, size } => Request::Broken { reason, size },
            Request::Oversized { tag, size, limit } => Request::Oversized { tag, size, limit },
        }
    }
}

/// The encoded tag (header and bytes) of a request, when it is a string.
fn message_tag(raw: &[u8]) -> Option<&[u8]> {
    let (Head::Array(_), n) = read_head(raw).ok()? else {
        return None;
    };
    let rest = raw.get(n..)?;
    match read_head(rest).ok()? {
        (Head::Str(_), len) => rest.get(..len),
        _ => None,
    }
}

/// A Message request read by [`fast_message`].
struct FastMessage<'a> {
    /// Byte size of the request.
    len: usize,
    /// Its time (never 0).
    time: EventTime,
    /// Its record map.
    record: &'a [u8],
    /// Its options.
    options: Options,
}

/// Reads the complete Message request `[tag, time, record, option?]` at the start of `view`
/// when its tag is encoded as `tag` (header and bytes) and its shape is the usual one: an
/// integer or EventTime
/// time whose second is not 0, a map record. `None` otherwise (including when the request
/// is incomplete): the general path then decodes it on its own.
///
/// Framing follows the decoder's skipper (same depth limit), so the request found is the
/// one the skipper would frame.
fn fast_message<'a>(view: &'a [u8], tag: &[u8], max_depth: usize) -> Option<FastMessage<'a>> {
    let count = match view.first()? {
        0x93 => 3,
        0x94 => 4,
        _ => return None,
    };
    // The request array opens at depth 0, its elements sit at depth 1.
    if max_depth < 1 {
        return None;
    }
    let next = |at: usize| nagare_core::fast::skip(view, at, 1, max_depth).ok();
    let tag_end = 1 + tag.len();
    if view.get(1..tag_end)? != tag {
        return None;
    }
    let (time, time_end) = match view.get(tag_end..tag_end + 10) {
        Some(&[0xd7, 0x00, s0, s1, s2, s3, n0, n1, n2, n3]) => (
            EventTime::new(
                u32::from_be_bytes([s0, s1, s2, s3]),
                u32::from_be_bytes([n0, n1, n2, n3]),
            ),
            tag_end + 10,
        ),
        _ => {
            let time_end = next(tag_end)?;
            let time_raw = view.get(tag_end..time_end)?;
            // Integers and ext 0 only: a v1.5 metadata array goes the general way.
            if !matches!(time_raw.first()?, 0x00..=0x7f | 0xcc..=0xd3 | 0xe0..=0xff | 0xc7..=0xc9 | 0xd4..=0xd8)
            {
                return None;
            }
            match EventTime::decode(time_raw) {
                Ok((t, n)) if n == time_raw.len() => (t, time_end),
                _ => return None,
            }
        }
    };
    if time.is_zero() {
        return None;
    }
    let record_end = nagare_core::fast::map(view, time_end, 1, max_depth).ok()?;
    let record = view.get(time_end..record_end)?;
    let (len, options) = if count == 4 {
        let end = next(record_end)?;
        (end, parse_options(view.get(record_end..end)))
    } else {
        (record_end, Options::default())
    };
    Some(FastMessage {
        len,
        time,
        record,
        options,
    })
}

/// Decodes one complete msgpack request.
///
/// `offset` is the request's position in the stream, for error messages.
pub fn decode_request<'a>(
    raw: &'a [u8],
    cfg: &DecoderConfig,
    encoding: Encoding,
    offset: u64,
) -> Result<Request<'a>, ForwardError> {
    decode_msgpack(raw, cfg, encoding, offset, None)
}

/// [`decode_request`], taking the entries of a Forward request as they are when framing
/// found them all canonical (`scan`), so that they are not walked again.
fn decode_msgpack<'a>(
    raw: &'a [u8],
    cfg: &DecoderConfig,
    encoding: Encoding,
    offset: u64,
    scan: Option<ForwardScan>,
) -> Result<Request<'a>, ForwardError> {
    let msgpack_err = |source| ForwardError::Msgpack { offset, source };
    let size = raw.len() as u64;
    let (head, hdr) = read_head(raw).map_err(msgpack_err)?;
    let count = match head {
        Head::Nil => return Ok(Request::Heartbeat),
        Head::Array(n) => n,
        other => {
            return Ok(Request::Broken {
                reason: format!(
                    "incoming chunk is broken: request is a {}, not an array",
                    head_name(&other)
                ),
                size,
            });
        }
    };
    let [e0, e1, e2, e3] = match scan {
        // [tag, [entries], option?], as framing found it.
        Some(sc) => [
            raw.get(hdr..sc.tag_end),
            raw.get(sc.tag_end..sc.end),
            raw.get(sc.end..).filter(|_| count > 2),
            None,
        ],
        None => elements::<4>(raw, count, hdr).map_err(msgpack_err)?,
    };
    let tag = resolve_tag(e0, cfg);
    let second = e1.map(read_head).transpose().map_err(msgpack_err)?;
    let (mode, mut options) = match second {
        Some((Head::Str(_) | Head::Bin(_), _)) => (Mode::PackedForward, parse_options(e2)),
        Some((Head::Array(_), _)) => (Mode::Forward, parse_options(e2)),
        _ => (Mode::Message, parse_options(e3)),
    };
    let norm_opts = normalize_options(cfg);
    let mut batch = new_batch(mode, &mut options, size, cfg, encoding);
    let Some(tag) = tag else {
        // Fluentd's invalid_event? checks the tag: every event of the request is invalid.
        batch.invalid = match (mode, second) {
            (Mode::Forward, Some((Head::Array(n), _))) => n,
            (Mode::PackedForward, Some((h, _))) => count_entries(h.str_or_bin()),
            _ => 1,
        };
        return Ok(Request::Events(batch));
    };
    let entries_err = |source| ForwardError::Entries {
        tag: tag.clone(),
        source,
    };
    match (mode, second) {
        (Mode::PackedForward, Some((h, _))) => {
            let entries = Cow::Borrowed(h.str_or_bin().unwrap_or_default());
            packed_entries(
                &mut batch,
                entries,
                options.compressed.as_deref(),
                cfg,
                &tag,
            )?;
        }
        (Mode::Forward, Some((Head::Array(_), _))) if let Some(sc) = scan => {
            // Every entry was checked canonical while framing: taken as they are.
            batch.chunk = Cow::Borrowed(raw.get(sc.start..sc.end).unwrap_or_default());
            batch.records = sc.records;
        }
        (Mode::Forward, Some((Head::Array(_), ahdr))) => {
            let body = e1.and_then(|e| e.get(ahdr..)).unwrap_or_default();
            let n = nagare_core::normalize_chunk(body, norm_opts).map_err(entries_err)?;
            (batch.records, batch.invalid, batch.first_invalid) =
                (n.records, n.invalid, n.first_invalid);
            batch.chunk = n.data;
        }
        _ => {
            // Message: [tag, time, record, option?], built as one entry.
            let time = e1.map(EventTime::decode);
            let record_is_map = e2.is_some_and(|r| matches!(read_head(r), Ok((Head::Map(_), _))));
            let mut entry = Vec::with_capacity(11 + e2.map_or(0, <[u8]>::len));
            match (time, e2) {
                (Some(Ok((t, _))), Some(rec)) if record_is_map => {
                    let t = if t.is_zero() { EventTime::now() } else { t };
                    entry.push(0x92);
                    t.write_to(&mut entry);
                    entry.extend_from_slice(rec);
                    batch.records = 1;
                }
                (time, rec) => {
                    batch.invalid = 1;
                    let reason = match time {
                        Some(Ok(_)) => nagare_core::InvalidReason::RecordNotMap(
                            rec.and_then(|r| read_head(r).ok())
                                .map_or("nothing", |(h, _)| head_name(&h)),
                        ),
                        _ => nagare_core::InvalidReason::BadTime(
                            e1.and_then(|t| read_head(t).ok())
                                .map_or("nothing", |(h, _)| head_name(&h)),
                        ),
                    };
                    batch.first_invalid = Some(InvalidEntry {
                        index: 0,
                        offset: 0,
                        reason,
                    });
                    if !cfg.skip_invalid_event
                        && let (Some(t), Some(r)) = (e1, rec)
                    {
                        // Kept as sent; a nil time becomes now, as Fluentd does.
                        entry.push(0x92);
                        if t == [0xc0] {
                            EventTime::now().write_to(&mut entry);
                        } else {
                            entry.extend_from_slice(t);
                        }
                        entry.extend_from_slice(r);
                        batch.records = 1;
                    }
                }
            }
            batch.chunk = Cow::Owned(entry);
        }
    }
    batch.tag = tag;
    Ok(Request::Events(batch))
}

/// Decodes a PackedForward request read with a [`Capture`]: `head` holds its array header,
/// tag and payload header, `payload` its entries (taken as the chunk when canonical: no
/// copy), `options` its option map when it has one.
fn decode_captured(
    head: &[u8],
    payload: Vec<u8>,
    options: Option<&[u8]>,
    cfg: &DecoderConfig,
    offset: u64,
    size: u64,
) -> Result<Request<'static>, ForwardError> {
    let msgpack_err = |source| ForwardError::Msgpack { offset, source };
    let (_, hdr) = read_head(head).map_err(msgpack_err)?;
    let tag_raw = head.get(hdr..).unwrap_or_default();
    let tag_len = value_len(tag_raw).map_err(msgpack_err)?;
    let tag = resolve_tag(tag_raw.get(..tag_len), cfg);
    let mut options = parse_options(options);
    let mut batch = new_batch(
        Mode::PackedForward,
        &mut options,
        size,
        cfg,
        Encoding::Msgpack,
    );
    match tag {
        Some(tag) => {
            let codec = options.compressed.as_deref();
            packed_entries(&mut batch, Cow::Owned(payload), codec, cfg, &tag)?;
            batch.tag = tag;
        }
        // As for any request: every event is invalid without a tag.
        None => batch.invalid = count_entries(Some(&payload)),
    }
    Ok(Request::Events(batch))
}

/// The tag a request is stored under: the incoming one (a str) after `tag` and
/// `add_tag_prefix`; `None` when there is none.
fn resolve_tag(raw: Option<&[u8]>, cfg: &DecoderConfig) -> Option<String> {
    let incoming = raw.and_then(|t| match read_head(t) {
        Ok((Head::Str(s), _)) => std::str::from_utf8(s).ok(),
        _ => None,
    });
    let tag = match (&cfg.tag, incoming) {
        (Some(t), _) => Some(t.as_str()),
        (None, t) => t,
    };
    tag.map(|t| match &cfg.add_tag_prefix {
        Some(p) => format!("{p}.{t}"),
        None => t.to_owned(),
    })
}

/// How entries are normalized under `cfg`.
fn normalize_options(cfg: &DecoderConfig) -> NormalizeOptions {
    NormalizeOptions {
        invalid: if cfg.skip_invalid_event {
            InvalidPolicy::Skip
        } else {
            InvalidPolicy::Keep
        },
        truncated: TruncatedPolicy::Drop,
    }
}

/// An empty batch of a request of `size` bytes, with the options it sent (the ack id is
/// taken from `options`).
fn new_batch<'a>(
    mode: Mode,
    options: &mut Options,
    size: u64,
    cfg: &DecoderConfig,
    encoding: Encoding,
) -> Batch<'a> {
    Batch {
        mode,
        tag: String::new(),
        chunk: Cow::Borrowed(&[]),
        records: 0,
        invalid: 0,
        first_invalid: None,
        chunk_option: options.chunk.take(),
        size_option: options.size,
        fluent_signal: options.fluent_signal,
        request_size: size,
        over_warn_limit: cfg.chunk_size_warn_limit.is_some_and(|l| size > l),
        encoding,
        requests: 1,
    }
}

/// Number of entries in a PackedForward payload (all invalid when the request has no tag).
fn count_entries(entries: Option<&[u8]>) -> u32 {
    entries.map_or(0, |s| nagare_core::ChunkReader::new(s).count() as u32)
}

/// Fills `batch` with the entries of a PackedForward payload, decompressed when `codec`
/// (the `compressed` option) says so, normalized; canonical entries are taken as they are,
/// borrowed or owned as `entries` is.
fn packed_entries<'a>(
    batch: &mut Batch<'a>,
    entries: Cow<'a, [u8]>,
    codec: Option<&[u8]>,
    cfg: &DecoderConfig,
    tag: &str,
) -> Result<(), ForwardError> {
    let norm_opts = normalize_options(cfg);
    let entries_err = |source| ForwardError::Entries {
        tag: tag.to_owned(),
        source,
    };
    let limit = cfg.decompression_size_limit;
    let plain = match codec {
        Some(b"gzip") => Some(compress::gunzip(&entries, limit)?),
        Some(b"zstd") => Some(compress::unzstd(&entries, limit)?),
        _ => None,
    };
    if plain.is_some() {
        batch.mode = Mode::CompressedPackedForward;
    }
    let n = match (plain, entries) {
        (Some(owned), _) | (None, Cow::Owned(owned)) => {
            let (data, n) =
                nagare_core::normalize_chunk_vec(owned, norm_opts).map_err(entries_err)?;
            batch.chunk = Cow::Owned(data);
            n
        }
        (None, Cow::Borrowed(entries)) => {
            let mut n = nagare_core::normalize_chunk(entries, norm_opts).map_err(entries_err)?;
            batch.chunk = std::mem::take(&mut n.data);
            n
        }
    };
    (batch.records, batch.invalid, batch.first_invalid) = (n.records, n.invalid, n.first_invalid);
    Ok(())
}

/// The head of a PackedForward request at the start of `view`: `(elements, head length,
/// payload length)` when `view` holds a 2- or 3-element request array, a str or bin tag and
/// the str or bin header of the payload (any of its bytes may be missing).
fn packed_head(view: &[u8]) -> Option<(u32, usize, usize)> {
    let count = match view.first()? {
        0x92 => 2,
        0x93 => 3,
        _ => return None,
    };
    let rest = view.get(1..)?;
    let (Head::Str(_) | Head::Bin(_), tag_len) = read_head(rest).ok()? else {
        return None;
    };
    let at = 1 + tag_len;
    let marker = *view.get(at)?;
    let be = |n: usize| -> Option<usize> {
        let bytes = view.get(at + 1..at + 1 + n)?;
        Some(
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b)),
        )
    };
    let (hdr, len) = match marker {
        0xa0..=0xbf => (1, usize::from(marker & 0x1f)),
        0xc4 | 0xd9 => (2, be(1)?),
        0xc5 | 0xda => (3, be(2)?),
        0xc6 | 0xdb => (5, be(4)?),
        _ => return None,
    };
    Some((count, at + hdr, len))
}

/// Decodes one complete JSON request (converted to msgpack, then decoded as such).
pub fn decode_json_request(
    raw: &[u8],
    cfg: &DecoderConfig,
    offset: u64,
) -> Result<Request<'static>, ForwardError> {
    let value: serde_json::Value = serde_json::from_slice(raw).map_err(|e| ForwardError::Json {
        offset,
        reason: e.to_string(),
    })?;
    let mut packed = Vec::with_capacity(raw.len());
    json_to_msgpack(&value, &mut packed);
    let req = decode_request(&packed, cfg, Encoding::Json, offset)?;
    Ok(match req {
        Request::Events(b) => Request::Events(Batch {
            request_size: raw.len() as u64,
            ..b.into_owned()
        }),
        Request::Heartbeat => Request::Heartbeat,
        Request::Broken { reason, .. } => Request::Broken {
            reason,
            size: raw.len() as u64,
        },
        Request::Oversized { tag, size, limit } => Request::Oversized { tag, size, limit },
    })
}

fn head_name(h: &Head<'_>) -> &'static str {
    match h {
        Head::Nil => "nil",
        Head::Bool(_) => "bool",
        Head::Int(_) => "int",
        Head::F32(_) | Head::F64(_) => "float",
        Head::Str(_) => "str",
        Head::Bin(_) => "bin",
        Head::Array(_) => "array",
        Head::Map(_) => "map",
        Head::Ext(_, _) => "ext",
    }
}
