//! The plugin-author traits ([`Input`], [`Filter`], [`Output`]) in plain Rust, and the safe
//! views they work with: [`Chunk`] over the ABI's `ChunkRef`, [`Emitter`] over `EmitterBox`.
//! The export macro adapts them to the ABI's `#[sabi_trait]`s with panic guards around every
//! call (see [`crate::adapter`]).

use std::sync::OnceLock;

use abi_stable::std_types::{RString, RVec, Tuple2};
use nagare_plugin_api::{
    ChunkFormat, ChunkRef, ConfigNode, EmitterBox, ErrorKind, EventBatch, PluginError,
};

use crate::chunk::{ChunkError, ChunkReader, ChunkWriter, gunzip};
use crate::context::PluginContext;
use crate::error::Result;
use crate::file_ranges::FileRanges;

/// Largest decompressed size [`Chunk::entries`] accepts for a gzip chunk (256 MiB, Fluentd's
/// `decompression_size_limit` default).
pub const GZIP_LIMIT: u64 = 256 << 20;

/// An input plugin: produces events on threads it owns and pushes them through an [`Emitter`].
pub trait Input: Send + Sized + 'static {
    /// Builds an instance from its `<source>` element. Errors should be `CONFIG` errors.
    fn new(ctx: &PluginContext, config: &ConfigNode) -> Result<Self>;
    /// Starts producing. Must return quickly: spawn threads (or use [`crate::runtime`]).
    fn start(&mut self, emitter: Emitter) -> Result<()>;
    /// Stops producing and joins every thread started. No emit may follow.
    fn stop(&mut self) -> Result<()>;
}

/// What a filter did to a chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum FilterOutcome {
    /// Every event passes unchanged.
    Unchanged,
    /// Every event was dropped.
    Dropped,
    /// The chunk was rewritten into new entries.
    Replaced {
        /// Number of entries in `data`.
        records: u32,
        /// The new entries (see [`ChunkWriter`]).
        data: Vec<u8>,
    },
}

impl FilterOutcome {
    /// The outcome for a rewritten chunk (`Dropped` when the writer is empty).
    pub fn replaced(writer: ChunkWriter) -> Self {
        let (data, records) = writer.finish();
        if records == 0 {
            FilterOutcome::Dropped
        } else {
            FilterOutcome::Replaced { records, data }
        }
    }
}

/// A filter plugin. `filter` is called concurrently from host worker threads.
pub trait Filter: Send + Sync + Sized + 'static {
    /// Builds an instance from its `<filter>` element.
    fn new(ctx: &PluginContext, config: &ConfigNode) -> Result<Self>;
    /// Filters one chunk.
    fn filter(&self, chunk: Chunk<'_>) -> Result<FilterOutcome>;
}

/// An output plugin. `write` may be called concurrently (up to `flush_thread_count`).
pub trait Output: Send + Sync + Sized + 'static {
    /// Builds an instance from its `<match>` (or `<store>`) element.
    fn new(ctx: &PluginContext, config: &ConfigNode) -> Result<Self>;
    /// Opens connections or files; called once before any `write`.
    fn start(&mut self) -> Result<()> {
        Ok(())
    }
    /// Writes one chunk. `Ok` commits it; an error says what the host should do.
    fn write(&self, chunk: Chunk<'_>) -> Result<()>;
    /// Whether `write` takes chunks whose payload stays in the host's buffer file
    /// (`ChunkFormat::FILE_RANGES`; the host answers `chunk_formats.v1` from this). Such an
    /// output reads the payload with [`Chunk::payload`] like any other, or moves it with
    /// [`Chunk::file_ranges`] (`sendfile`). The host then keeps no copy of a file buffer's
    /// chunks in memory for it, and reuses a chunk's file once `write` returned `Ok`: an
    /// output that `sendfile`s ranges says yes only if it returns `Ok` once the peer has
    /// consumed them (an ack), and resets a connection it abandons
    /// ([`FileRanges::send_to`]). Default: no.
    fn accepts_file_ranges(&self) -> bool {
        false
    }
    /// A versioned escape hatch (`"stats.v1"`, …): msgpack in, msgpack out.
    fn control(&self, op: &str, _payload: &[u8]) -> Result<Vec<u8>> {
        Err(crate::error::internal(format!("unknown control op '{op}'")))
    }
    /// Flushes and closes; no `write` is in flight or follows.
    fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A chunk lent to a filter or an output for one call.
pub struct Chunk<'a> {
    raw: ChunkRef<'a>,
    inflated: OnceLock<std::result::Result<Vec<u8>, ChunkError>>,
}

impl std::fmt::Debug for Chunk<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("tag", &self.tag())
            .field("id", &self.id_hex())
            .field("records", &self.records())
            .field("bytes", &self.bytes().len())
            .finish()
    }
}

impl<'a> Chunk<'a> {
    /// Wraps a chunk from the host.
    pub fn new(raw: ChunkRef<'a>) -> Self {
        Chunk {
            raw,
            inflated: OnceLock::new(),
        }
    }

    /// The tag of every event.
    pub fn tag(&self) -> &'a str {
        self.raw.tag.as_str()
    }

    /// The 128-bit chunk id (zero for unbuffered calls).
    pub fn id(&self) -> [u8; 16] {
        self.raw.chunk_id
    }

    /// The chunk id as 32 lowercase hex digits (Fluentd's `${chunk_id}`).
    pub fn id_hex(&self) -> String {
        self.raw
            .chunk_id
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Number of entries, as the host counted them.
    pub fn records(&self) -> u32 {
        self.raw.records
    }

    /// The encoding of [`Chunk::bytes`].
    pub fn format(&self) -> ChunkFormat {
        self.raw.format
    }

    /// The raw bytes, as stored (possibly gzip-compressed).
    pub fn bytes(&self) -> &'a [u8] {
        self.raw.data.as_slice()
    }

    /// The chunk-key variables (`${key}` placeholders), in order.
    pub fn variables(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.raw
            .variables
            .as_slice()
            .iter()
            .map(|Tuple2(k, v)| (k.as_str(), v.as_str()))
    }

    /// One chunk-key variable.
    pub fn variable(&self, key: &str) -> Option<&'a str> {
        self.variables().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The uncompressed msgpack-stream bytes (decompressed once for gzip chunks, read once
    /// from the file for `FILE_RANGES` chunks).
    pub fn payload(&self) -> std::result::Result<&[u8], ChunkError> {
        match self.raw.format {
            ChunkFormat::MSGPACK_STREAM => Ok(self.bytes()),
            ChunkFormat::MSGPACK_STREAM_GZIP => self
                .inflated
                .get_or_init(|| gunzip(self.bytes(), GZIP_LIMIT))
                .as_deref()
                .map_err(Clone::clone),
            ChunkFormat::FILE_RANGES => self
                .inflated
                .get_or_init(|| {
                    self.file_ranges()
                        .unwrap_or(Err(ChunkError::UnsupportedFormat(2)))?
                        .read_to_vec()
                        .map_err(|e| ChunkError::FileRanges(e.to_string()))
                })
                .as_deref()
                .map_err(Clone::clone),
            ChunkFormat(other) => Err(ChunkError::UnsupportedFormat(other)),
        }
    }

    /// The payload's place in the host's buffer file, for a `FILE_RANGES` chunk (only sent
    /// to an output whose [`Output::accepts_file_ranges`] says yes); `None` for any other
    /// format. Valid for this call only.
    pub fn file_ranges(&self) -> Option<std::result::Result<FileRanges<'a>, ChunkError>> {
        if self.raw.format != ChunkFormat::FILE_RANGES {
            return None;
        }
        // SAFETY: the host keeps the descriptor's file open while it lends this chunk
        // (`ChunkFormat::FILE_RANGES`' contract), which is `'a`: the `write` call.
        Some(unsafe { FileRanges::from_descriptor(self.bytes()) })
    }

    /// Iterates the entries as `(time, raw record bytes)`.
    pub fn entries(&self) -> std::result::Result<ChunkReader<'_>, ChunkError> {
        self.payload().map(ChunkReader::new)
    }
}

/// A batch an input hands back when [`Emitter::try_emit`] finds the buffer full.
#[derive(Debug)]
pub struct Rejected {
    /// The tag.
    pub tag: String,
    /// The entries, to retry later.
    pub data: Vec<u8>,
    /// Number of entries.
    pub records: u32,
    /// Why (usually a `RETRYABLE` "buffer full").
    pub error: PluginError,
}

/// The sink an input pushes batches into. Call it only from threads the plugin owns.
#[derive(Clone)]
pub struct Emitter {
    inner: EmitterBox,
    label: String,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl Emitter {
    /// Wraps the host's emitter.
    pub fn new(inner: EmitterBox) -> Self {
        Emitter {
            inner,
            label: String::new(),
        }
    }

    /// An emitter that routes into `@label` (`""` = the input's own label).
    pub fn with_label(&self, label: &str) -> Self {
        Emitter {
            inner: self.inner.clone(),
            label: label.to_owned(),
        }
    }

    fn batch(&self, tag: &str, data: Vec<u8>, records: u32) -> EventBatch {
        EventBatch {
            tag: RString::from(tag),
            records,
            format: ChunkFormat::MSGPACK_STREAM,
            data: RVec::from(data),
            label: RString::from(self.label.as_str()),
        }
    }

    /// Routes a batch of entries, blocking while the destination buffer is full. `Ok` means
    /// accepted and durable (fsynced in a file buffer): only then may the input ack its
    /// sender.
    pub fn emit(&self, tag: &str, data: Vec<u8>, records: u32) -> Result<()> {
        let batch = self.batch(tag, data, records);
        crate::guard::catch(|| self.inner.emit(batch).into_result())
    }

    /// Routes what `writer` holds (nothing when it is empty) and leaves it empty for reuse.
    pub fn emit_writer(&self, tag: &str, writer: &mut ChunkWriter) -> Result<()> {
        if writer.is_empty() {
            return Ok(());
        }
        let (data, records) = writer.take();
        self.emit(tag, data, records)
    }

    /// Whether a batch tagged `tag` would now wait for room (a full buffer with
    /// `overflow_action block` on its route): the host's probe, which routes nothing. An
    /// input that must not hold a thread while it waits polls this before [`emit`](Self::emit)
    /// (which then waits for the fsync alone, unless others took the room first).
    pub fn would_wait(&self, tag: &str) -> bool {
        let probe = self.batch(tag, Vec::new(), 0);
        // Anything but "full" (an undefined label, say) is for the emit to report.
        matches!(
            crate::guard::catch(|| Ok(self.inner.try_emit(probe).into_result())),
            Ok(Err(Tuple2(_, e))) if e.kind == ErrorKind::RETRYABLE
        )
    }

    /// Like [`Emitter::emit`] but never blocks: on a full buffer the batch comes back, and
    /// it does not wait for an fsync (the events are fsynced when their chunk is queued, or
    /// by a later `emit` into the same chunk). For events nobody will be acked for.
    pub fn try_emit(
        &self,
        tag: &str,
        data: Vec<u8>,
        records: u32,
    ) -> std::result::Result<(), Rejected> {
        let batch = self.batch(tag, data, records);
        match crate::guard::catch(|| Ok(self.inner.try_emit(batch).into_result())) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Tuple2(batch, error))) => Err(Rejected {
                tag: batch.tag.into_string(),
                records: batch.records,
                data: batch.data.into_vec(),
                error,
            }),
            Err(error) => Err(Rejected {
                tag: tag.to_owned(),
                data: Vec::new(),
                records: 0,
                error,
            }),
        }
    }
}
