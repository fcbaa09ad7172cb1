//! Output buffers: memory and file chunks, chunk keys, flush, retry, overflow, recovery.
//!
//! This is the host-side buffer every buffered output uses, following Fluentd's
//! `output.rb` / `buffer.rb` / `buf_memory.rb` / `buf_file.rb` / `retry_state.rb`
//! semantics. It is a pure library: std threads and locks only, with a [`Clock`] so
//! flush and retry timing are testable without sleeping.
//!
//! Data is Fluentd's chunk format (concatenated msgpack `[time, record]` entries). The
//! buffer never decodes records except to find entry boundaries and chunk-key values, with
//! nagare-core's bounded walker (through [`msgpack`]). Parameter values are read by
//! nagare-config's types in strict mode (through [`values`]).
//!
//! # Pieces
//! - [`BufferConfig::from_params`] reads a `<buffer CHUNK_KEYS>` section (Fluentd's
//!   parameter names, value types, defaults, conflicts and messages).
//! - [`Buffer`] is the buffer: [`Buffer::write`] from emit paths, [`Buffer::next_ready`],
//!   [`Buffer::commit`] and [`Buffer::rollback`] from flush threads, [`Buffer::metrics`].
//!   A rollback returns a [`Decision`] the caller acts on: retry later, write to the
//!   secondary, backed up, or dropped at the retry limit.
//! - [`placeholders::expand`] and [`placeholders::validate_placeholders`] for output
//!   parameters such as out_file's `path`.
//! - The file buffer stores each chunk as `buffer.b<id>.log` (staged) /
//!   `buffer.q<id>.log` (queued) plus `.meta`; every append is a checksummed frame
//!   ([`frame`]), fsynced per the `fsync` policy before `write` returns (unless the caller
//!   says with [`Buffer::write_with`] and [`Durability::Deferred`] that nobody waits on it:
//!   then with its chunk, at the latest when the chunk is queued), and a restart
//!   keeps every intact batch (see [`ResumeReport`]). With `fsync always`, writers append
//!   under the buffer lock and fsync outside it in groups: concurrent writers share one
//!   `fdatasync` per file (group commit), and flush threads never wait behind one.
//!   A flush thread takes a chunk from its in-memory mirror (kept for small chunks within
//!   a budget) or reads it into a reused buffer. The data file of a flushed chunk is kept
//!   as `buffer.f<id>.log` and reused by the next new chunk (overwriting a file's blocks
//!   and cached pages costs much less than a new file's, and its `fdatasync` need not
//!   write the inode); each frame names its chunk, so an earlier chunk's bytes in a reused
//!   file are never resumed (see [`frame`]). Free files are removed at start.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use nagare_buffer::{Buffer, BufferConfig, BufferOptions, Decision, FakeClock, Failure};
//!
//! let cfg = BufferConfig::from_params("tag", [("flush_interval", "5s")]).unwrap();
//! let clock = Arc::new(FakeClock::at_secs(1_700_000_000));
//! let opts = BufferOptions { plugin_id: "out_example".into(), clock: clock.clone(), ..Default::default() };
//! let buffer = Buffer::open(cfg, opts).unwrap();
//!
//! // An input emits one [time, {"msg": "hi"}] entry for tag "app.web".
//! let mut batch = Vec::new();
//! nagare_buffer::msgpack::write::entry(&mut batch, 1_700_000_000, &[("msg", "hi")]);
//! buffer.write("app.web", &batch, 1).unwrap();
//!
//! // A flush thread: nothing is due before flush_interval...
//! assert!(buffer.next_ready(nagare_buffer::Clock::now(&*clock)).unwrap().is_none());
//! clock.advance(Duration::from_secs(5));
//! let lease = buffer.next_ready(nagare_buffer::Clock::now(&*clock)).unwrap().expect("due");
//! assert_eq!(lease.metadata().tag.as_deref(), Some("app.web"));
//! // ...the output fails once: the chunk goes back and a retry is scheduled.
//! match buffer.rollback(lease, Failure::Retryable { retry_after: None }).unwrap() {
//!     Decision::Retry { .. } => {}
//!     other => panic!("{other:?}"),
//! }
//! clock.advance(Duration::from_secs(1));
//! let lease = buffer.next_ready(nagare_buffer::Clock::now(&*clock)).unwrap().expect("retry is due");
//! buffer.commit(lease).unwrap();
//! assert!(buffer.is_empty());
//! ```

mod buffer;
mod clock;
pub mod config;
mod error;
mod file;
pub mod frame;
mod metadata;
pub mod msgpack;
pub mod placeholders;
pub mod retry;
mod syncer;
pub mod values;

#[cfg(test)]
mod buffer_tests;

pub use buffer::{
    Buffer, BufferOptions, ChunkLease, Decision, DroppedChunk, Durability, Failure, FileRanges,
    Metrics, RejectedRecord, Route, WriteReceipt,
};
pub use clock::{Clock, FakeClock, SystemClock};
pub use config::{
    BufferConfig, BufferType, ChunkKeys, ConfigError, FlushMode, FsyncPolicy, OverflowAction,
    RecordKey, RetryConfig, RetryType, TimeKey, TimekeyZone,
};
pub use error::BufferError;
pub use file::{Repair, ResumeReport};
pub use metadata::{ChunkId, Metadata};
