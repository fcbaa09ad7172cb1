//! Core event types of nagare: [`EventTime`], a msgpack skipper, Fluentd's chunk format
//! (reader, writer, validation, normalization), record helpers and unique chunk ids.
//!
//! A batch of events is always Fluentd's chunk format: concatenated msgpack `[time, record]`
//! entries. Everything here works on those bytes directly: validating or normalizing a chunk
//! allocates nothing per event and copies nothing when the chunk is already canonical.
//!
//! * [`msgpack`]: [`value_len`], the incremental
//!   [`Skipper`](msgpack::Skipper) and [`read_head`](msgpack::read_head).
//! * [`time`]: [`EventTime`] (msgpack ext 0).
//! * [`chunk`]: [`ChunkReader`], [`ChunkWriter`], [`validate_chunk`], [`normalize_chunk`].
//! * [`fast`]: the one-pass fast path for complete buffers ([`fast::skip`], [`fast::entry`]),
//!   which the general path above falls back from.
//! * [`record`]: look-ups in raw maps, conversions from/to `rmpv::Value` and serde.
//! * [`unique_id`]: [`UniqueId`], Fluentd's 128-bit chunk id.
//! * [`file_ranges`]: the descriptor of a chunk whose payload stays in the buffer's file.
//! * [`io`]: [`io::write_all_parts`], a message of several slices in as few `writev`s as can be.
//! * [`sample`]: the sample events every benchmark measures.

pub mod chunk;
pub mod fast;
pub mod file_ranges;
pub mod io;
pub mod msgpack;
pub mod record;
pub mod sample;
pub mod time;
pub mod unique_id;

pub use chunk::{
    ChunkError, ChunkInfo, ChunkReader, ChunkWriter, Entry, InvalidEntry, InvalidPolicy,
    InvalidReason, NormalizeOptions, Normalized, TruncatedPolicy, normalize_chunk,
    normalize_chunk_at, normalize_chunk_vec, validate_chunk,
};
pub use msgpack::{MsgpackError, value_len};
pub use record::RecordError;
pub use time::EventTime;
pub use unique_id::UniqueId;
