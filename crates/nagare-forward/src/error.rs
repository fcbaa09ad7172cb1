//! Errors of the Forward codec.

use nagare_core::{ChunkError, MsgpackError};

/// A fatal protocol error: the caller closes the connection without an ack (Fluentd's
/// "unexpected error on reading data"), and the client retries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// The msgpack stream is broken.
    #[error("broken msgpack at stream byte {offset}: {source}")]
    Msgpack {
        /// Offset in the connection's byte stream of the request that failed.
        offset: u64,
        /// What was wrong.
        #[source]
        source: MsgpackError,
    },
    /// The JSON stream is broken.
    #[error("broken JSON at stream byte {offset}: {reason}")]
    Json {
        /// Offset in the connection's byte stream of the request that failed.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A request is larger than the decoder's hard bound (`max_request_size`).
    #[error("request of at least {size} bytes exceeds the hard limit of {limit} bytes")]
    TooLarge {
        /// Size (or lower bound of it) of the request.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The entries of a PackedForward request could not be decompressed.
    #[error("cannot decompress {codec} entries: {reason}")]
    Decompress {
        /// `"gzip"` or `"zstd"`.
        codec: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// The decompressed entries exceed `decompression_size_limit`.
    #[error("decompressed {codec} entries exceed decompression_size_limit ({limit} bytes)")]
    DecompressionLimit {
        /// `"gzip"` or `"zstd"`.
        codec: &'static str,
        /// The limit.
        limit: u64,
    },
    /// The entries of a request are not valid msgpack.
    #[error("broken event stream in a request for tag {tag:?}: {source}")]
    Entries {
        /// The request's tag.
        tag: String,
        /// What was wrong.
        #[source]
        source: ChunkError,
    },
    /// JSON framing was used where only msgpack is allowed (a `<security>` session).
    #[error("JSON requests are not allowed on this connection")]
    JsonNotAllowed,
    /// [`Decoder::next_frame`](crate::Decoder::next_frame) was called while
    /// [`Decoder::next_request`](crate::Decoder::next_request) was in the middle of a request
    /// (framing values one by one is for the handshake, before any event request).
    #[error("a single frame was asked for in the middle of an event request")]
    FrameInRequest,
    /// A call after an earlier fatal error.
    #[error("the decoder failed earlier and the connection must be closed")]
    Poisoned,
}
