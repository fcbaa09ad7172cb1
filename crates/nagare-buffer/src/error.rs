//! The buffer's error type.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::metadata::ChunkId;
use crate::msgpack::WalkError;

/// Everything that can go wrong in a [`crate::Buffer`] call. Each variant names the
/// plugin id (and the path, tag or chunk where one applies).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BufferError {
    /// The `<buffer>` configuration is invalid.
    #[error("plugin '{plugin_id}': {source}")]
    Config {
        /// The output's `@id`.
        plugin_id: String,
        /// What is wrong.
        #[source]
        source: ConfigError,
    },
    /// `total_limit_size` is reached and `overflow_action` gave up (Fluentd's
    /// `BufferOverflowError`): the data was not stored; keep it and retry later.
    #[error(
        "plugin '{plugin_id}': buffer space has too many data ({used} bytes used, total_limit_size {limit})"
    )]
    Overflow {
        /// The output's `@id`.
        plugin_id: String,
        /// Bytes staged and queued.
        used: u64,
        /// `total_limit_size`.
        limit: u64,
    },
    /// The bytes handed to `write` are not a valid chunk (concatenated `[time, record]`).
    #[error("plugin '{plugin_id}': rejected data for tag '{tag}': {source}")]
    InvalidChunk {
        /// The output's `@id`.
        plugin_id: String,
        /// The tag of the batch.
        tag: String,
        /// Where and why the walk failed.
        #[source]
        source: WalkError,
    },
    /// The buffer was closed; nothing more can be written.
    #[error("plugin '{plugin_id}': buffer is closed")]
    Closed {
        /// The output's `@id`.
        plugin_id: String,
    },
    /// A file operation failed.
    #[error("plugin '{plugin_id}': {op} {}: {source}", path.display())]
    Io {
        /// The output's `@id`.
        plugin_id: String,
        /// What was being done (`"append to"`, `"rename"`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `commit`/`rollback` got a lease this buffer does not hold (already settled, or from
    /// another buffer).
    #[error("plugin '{plugin_id}': chunk {chunk_id} is not leased from this buffer")]
    UnknownLease {
        /// The output's `@id`.
        plugin_id: String,
        /// The lease's chunk.
        chunk_id: ChunkId,
    },
}
