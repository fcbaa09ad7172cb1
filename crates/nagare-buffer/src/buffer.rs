//! The thread-safe buffer: staging, queueing, leasing to flush threads, retries,
//! overflow handling and metrics.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::clock::{Clock, SystemClock, from_secs_f64, to_secs_f64};
use crate::config::{BufferConfig, BufferType, FlushMode, FsyncPolicy, OverflowAction};
use crate::error::BufferError;
use crate::file::{self, FileState, Layout, ResumeReport};
use crate::frame;
use crate::metadata::{ChunkId, Metadata};
use crate::msgpack;
use crate::retry::RetryState;
use crate::syncer::{Syncer, Ticket};

/// Host-side settings that do not come from the `<buffer>` section.
#[derive(Debug, Clone)]
pub struct BufferOptions {
    /// The output's `@id` (error messages, backup and default buffer paths).
    pub plugin_id: String,
    /// `<system> root_dir`: backups go to `${root_dir}/backup/worker${N}/${plugin_id}/`
    /// (`/tmp/fluent` without it, as Fluentd), and a file buffer without `path` lives in
    /// `${root_dir}/worker${N}/${plugin_id}/buffer`.
    pub root_dir: Option<PathBuf>,
    /// The worker id `N`.
    pub worker_id: u32,
    /// Whether the output has a `<secondary>`.
    pub has_secondary: bool,
    /// The clock used for chunk ages and retries.
    pub clock: Arc<dyn Clock>,
    /// With `overflow_action block`, give up after this long (`None`: wait until space
    /// frees up or the buffer is closed).
    pub block_timeout: Option<Duration>,
    /// Seeds the retry jitter and chunk ids (tests); `None` seeds from the OS.
    pub rng_seed: Option<u64>,
    /// The output takes a file chunk's payload as ranges of its file
    /// ([`ChunkLease::file_ranges`]; the plugin ABI's `ChunkFormat::FILE_RANGES`). A file
    /// buffer then keeps no in-memory mirrors, and an index of each chunk's payload ranges
    /// instead. A committed chunk's file is reused for a new chunk, its pages overwritten in
    /// place: the output must be done with the ranges (a `sendfile`'s pages consumed by the
    /// peer) when its write succeeds.
    pub file_ranges: bool,
}

impl Default for BufferOptions {
    fn default() -> BufferOptions {
        BufferOptions {
            plugin_id: "object".to_string(),
            root_dir: None,
            worker_id: 0,
            has_secondary: false,
            clock: Arc::new(SystemClock),
            block_timeout: None,
            rng_seed: None,
            file_ranges: false,
        }
    }
}

/// A record `write` refused because it alone is larger than `chunk_limit_size`
/// (Fluentd's `BufferChunkOverflowError`); the rest of the batch was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRecord {
    /// The record's index in the batch.
    pub index: usize,
    /// Its size in bytes.
    pub size: usize,
}

/// A queued chunk purged to make space (`overflow_action drop_oldest_chunk`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedChunk {
    /// The chunk.
    pub chunk_id: ChunkId,
    /// Its records.
    pub records: u64,
    /// Its bytes.
    pub bytes: u64,
}

/// Whether a [`Buffer::write_with`] caller needs its data durable when the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// As the `fsync` policy says: with `always` (the default), fsynced before `Ok`.
    #[default]
    Now,
    /// Written to the chunk (file) before `Ok`, fsynced when the chunk is queued or by a
    /// later `Now` write into the same chunk.
    Deferred,
}

/// What a successful `write` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReceipt {
    /// Records stored.
    pub records: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Records refused because each alone exceeds `chunk_limit_size`.
    pub rejected: Vec<RejectedRecord>,
    /// Queued chunks purged to make room (drop_oldest_chunk).
    pub dropped: Vec<DroppedChunk>,
}

/// Which output a leased chunk should be written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The primary output.
    Primary,
    /// The `<secondary>` (retries passed `retry_secondary_threshold`).
    Secondary,
    /// The `<secondary>`, directly after an unrecoverable primary error; any failure
    /// now sends the chunk to the backup directory.
    SecondaryAfterUnrecoverable,
}

/// A chunk handed to a flush thread. Settle it with [`Buffer::commit`] or
/// [`Buffer::rollback`]; until then it stays counted in the buffer.
#[derive(Debug)]
pub struct ChunkLease {
    pub(crate) id: ChunkId,
    pub(crate) metadata: Arc<Metadata>,
    pub(crate) data: Arc<Vec<u8>>,
    /// Set instead of `data` for a file-ranges lease.
    pub(crate) file: Option<FileRanges>,
    pub(crate) records: u64,
    pub(crate) route: Route,
}

/// Where a leased chunk's payload is in its file: the file, open for reading while the
/// lease lives, and the payload's `(offset, len)` ranges in order (the frames' payloads,
/// between their headers).
#[derive(Debug)]
pub struct FileRanges {
    file: File,
    ranges: Vec<(u64, u64)>,
}

impl FileRanges {
    /// The chunk file, open for reading. Read it with positioned reads only.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The payload's `(offset, len)` ranges, in order.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// Reads the payload into `buf` (cleared first).
    fn read_into(&self, buf: &mut Vec<u8>) -> std::io::Result<()> {
        nagare_core::file_ranges::read_ranges_into(&self.file, &self.ranges, buf)
    }
}

impl ChunkLease {
    /// The chunk id (for `${chunk_id}` and out_forward's ack).
    pub fn id(&self) -> ChunkId {
        self.id
    }
    /// The chunk's metadata (tag, timekey, variables) for placeholders.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }
    /// The chunk bytes: concatenated msgpack `[time, record]` entries. Empty for a lease
    /// whose payload is in [`ChunkLease::file_ranges`].
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// The payload's ranges in the chunk file, for a file buffer whose output takes them
    /// ([`BufferOptions::file_ranges`]), when the chunk goes to the primary output and was
    /// written by this process in few enough frames; `None` when [`ChunkLease::data`]
    /// holds the payload.
    pub fn file_ranges(&self) -> Option<&FileRanges> {
        self.file.as_ref()
    }
    /// Number of entries.
    pub fn records(&self) -> u64 {
        self.records
    }
    /// Which output to write to.
    pub fn route(&self) -> Route {
        self.route
    }
    /// True when the chunk should go to the `<secondary>`.
    pub fn use_secondary(&self) -> bool {
        self.route != Route::Primary
    }
}

/// Why a flush failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Temporary: retry with back-off; the plugin may ask for a minimum delay.
    Retryable {
        /// The plugin's `retry_after_ms`, when it gave one.
        retry_after: Option<Duration>,
    },
    /// Permanent for this chunk: secondary, else backup.
    Unrecoverable,
    /// Not delivered, with nothing to count against the output (Fluentd's
    /// `rollback_write(update_retry: false)`, what out_forward does when an ack does not
    /// come): the chunk goes back to the head of the queue and the retry state is left as
    /// it is, so the next flush writes it again.
    Resend,
}

/// What the caller must do after a rollback.
#[derive(Debug)]
pub enum Decision {
    /// The chunk is back at the head of the queue; flushing resumes at `at`
    /// (`next_ready` returns nothing before then).
    Retry {
        /// The next retry time.
        at: SystemTime,
        /// Retry steps so far.
        steps: u64,
        /// Whether the next attempt goes to the secondary.
        secondary: bool,
    },
    /// [`Failure::Resend`]: the chunk is back at the head of the queue, the retry state
    /// untouched.
    Resend,
    /// Write this lease to the `<secondary>` now, then commit or roll it back again.
    ToSecondary(ChunkLease),
    /// The chunk was written to the backup file (`None`: `disable_chunk_backup`, thrown
    /// away) and removed from the buffer.
    Backup {
        /// The backup file.
        path: Option<PathBuf>,
    },
    /// Retry limits were hit: "failed to flush the buffer, and hit limit for retries.
    /// dropping all chunks in the buffer queue." Every queued chunk was purged.
    Dropped {
        /// Chunks dropped.
        chunks: usize,
        /// Records dropped.
        records: u64,
    },
}

/// A snapshot of the buffer's gauges and counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Staged chunks.
    pub stage_length: usize,
    /// Bytes in staged chunks.
    pub stage_byte_size: u64,
    /// Queued chunks waiting for a flush thread.
    pub queue_length: usize,
    /// Chunks leased to flush threads.
    pub inflight_length: usize,
    /// Bytes in queued and leased chunks.
    pub queue_byte_size: u64,
    /// `total_limit_size` minus what is used, as a fraction (Fluentd's
    /// `buffer_available_buffer_space_ratios`, 0..=1).
    pub available_space_ratio: f64,
    /// `write` calls that stored data.
    pub write_count: u64,
    /// Records stored.
    pub write_records: u64,
    /// Records refused for being larger than a chunk.
    pub rejected_records: u64,
    /// Chunks handed to flush threads.
    pub flush_count: u64,
    /// Chunks committed.
    pub commit_count: u64,
    /// Chunks rolled back.
    pub rollback_count: u64,
    /// Retry steps taken.
    pub retry_count: u64,
    /// Whether a retry state is active.
    pub retrying: bool,
    /// The next retry time, while retrying.
    pub next_retry: Option<SystemTime>,
    /// Chunks purged by `drop_oldest_chunk`.
    pub drop_oldest_chunk_count: u64,
    /// Chunks dropped because retries hit their limit.
    pub retry_limit_dropped_chunks: u64,
    /// Chunks written to the backup directory (or thrown away without backup).
    pub backup_count: u64,
    /// `write` calls refused with `Overflow`.
    pub overflow_count: u64,
    /// Writers currently waiting for space (`overflow_action block`).
    pub blocked_writers: usize,
}

#[derive(Debug)]
enum Body {
    Memory(Arc<Vec<u8>>),
    File {
        path: PathBuf,
        /// Open for append while staged (shared with a pending group fsync).
        file: Option<Arc<File>>,
        len: u64,
        /// The payloads as appended, kept while within [`MIRROR_BUDGET`], so a flush
        /// does not read back what was just written (`None`: read the file).
        mirror: Option<Arc<Vec<u8>>>,
        /// The payloads' `(offset, len)` in the file, kept for a file-ranges output
        /// ([`BufferOptions::file_ranges`]) up to [`MAX_SPANS`] frames (`None`: read the
        /// file).
        spans: Option<Vec<(u64, u64)>>,
        /// The data file held an earlier chunk (it may extend past `len` with stale bytes).
        reused: bool,
        /// Created by this process: only v2 frames, so the file may be reused once the
        /// chunk is flushed (resumed chunks' files are removed instead).
        own: bool,
    },
}

#[derive(Debug)]
struct Chunk {
    id: ChunkId,
    metadata: Arc<Metadata>,
    bytes: u64,
    records: u64,
    created: SystemTime,
    modified: SystemTime,
    body: Body,
}

#[derive(Debug, Default)]
struct Counters {
    write_count: u64,
    write_records: u64,
    rejected_records: u64,
    flush_count: u64,
    commit_count: u64,
    rollback_count: u64,
    retry_count: u64,
    drop_oldest_chunk_count: u64,
    retry_limit_dropped_chunks: u64,
    backup_count: u64,
    overflow_count: u64,
}

/// What [`Buffer::write_group`] did beyond appending: the chunks it appended to, and the
/// full ones it took for the queue (sealed once the lock is dropped).
#[derive(Default)]
struct Appended {
    touched: Vec<Arc<Metadata>>,
    sealing: Vec<Chunk>,
}

#[derive(Debug)]
struct State {
    stage: HashMap<Arc<Metadata>, Chunk>,
    queue: VecDeque<Chunk>,
    inflight: HashMap<ChunkId, Chunk>,
    stage_bytes: u64,
    queue_bytes: u64,
    retry: Option<RetryState>,
    retry_not_before: f64,
    rng: StdRng,
    counters: Counters,
    blocked_writers: usize,
    closed: bool,
    /// Chunks taken from the stage for the queue whose file is being fsynced and renamed
    /// outside the lock ([`Buffer::seal`]); counted as queued.
    sealing: usize,
}

/// Where [`Buffer::next_ready`] finds a leased chunk's payload.
enum LeaseSource {
    /// In memory (a memory chunk, or a file chunk's mirror).
    Bytes(Arc<Vec<u8>>),
    /// In its file, at these ranges (a file-ranges output).
    Ranges(PathBuf, Vec<(u64, u64)>),
    /// In its file, read back: path, length, reused.
    Read(PathBuf, u64, bool),
}

/// An output's buffer. All methods take `&self`; share it with `Arc`.
#[derive(Debug)]
pub struct Buffer {
    cfg: BufferConfig,
    opts: BufferOptions,
    layout: Option<Layout>,
    backup_dir: PathBuf,
    state: Mutex<State>,
    space: Condvar,
    resume: ResumeReport,
    /// Group commit of `fsync always` writes.
    syncer: Syncer,
    /// Buffers of settled file-chunk leases, reused for mirrors and by `next_ready` (a
    /// fresh multi-megabyte buffer per chunk costs a page fault per 4 KiB).
    spare: Mutex<Vec<Vec<u8>>>,
    /// Payload bytes held in chunk mirrors.
    pub(crate) mirrored: AtomicU64,
    /// Data files of flushed chunks waiting to be reused by new chunks.
    free: Mutex<Vec<PathBuf>>,
    /// Most bytes held in mirrors: [`MIRROR_BUDGET`] or [`MIRROR_CHUNKS`] chunks, whichever
    /// is less (set by tests).
    pub(crate) mirror_budget: u64,
}

/// Largest `chunk_limit_size` for which a file buffer keeps in-memory mirrors of its
/// chunks.
pub(crate) const MIRROR_CHUNK_LIMIT: u64 = 16 << 20;

/// Most payload bytes a file buffer keeps mirrored in memory across its chunks (and at
/// most [`MIRROR_CHUNKS`] chunks' worth); a chunk whose next append would pass it loses its
/// mirror and is read from its file instead.
pub(crate) const MIRROR_BUDGET: u64 = 32 << 20;

/// Most chunks mirrored at once: the staged one, the one in flight and a backlog of six
/// queued. An intake faster than the flush threads (requests that ask for no ack are not
/// fsynced one by one) queues up to ten 4 MiB chunks on two cores; with four mirrors a relay
/// read every chunk past them back from its file (relay bench, 9 alternated pairs: 0.29-0.37
/// CPU-s per 1M events with four, 0.27-0.33 with eight; peak RSS 24-30 MB with four, 20-39
/// MB with eight, within the same 32 MiB budget, since a read-back needs a buffer too).
pub(crate) const MIRROR_CHUNKS: u64 = 8;

/// Most frames of a chunk whose payload ranges are indexed for a file-ranges output; a chunk
/// written in more (many small writes) is read back from its file at flush instead of being
/// sent range by range.
pub(crate) const MAX_SPANS: usize = 1024;

/// Flushed chunk files kept for reuse by new chunks (each holds up to a chunk of disk
/// space; they are removed at the next start).
const FREE_FILES: usize = 2;

/// Largest settled buffer kept for reuse (bigger ones, read from large chunk files, are
/// freed rather than held while idle).
const RECYCLE_LIMIT: u64 = 2 * MIRROR_CHUNK_LIMIT;

/// Entries of one write that go to the same chunk metadata.
#[derive(Debug)]
struct Group {
    meta: Metadata,
    /// Byte ranges into the batch, in order.
    ranges: Vec<Range<usize>>,
    /// `Some(n)`: `ranges` is the whole batch as one range holding `n` entries (the fast
    /// path); `None`: one entry per range.
    whole: Option<u64>,
}

/// Fluentd's plugin-id sanitising for backup paths.
fn safe_plugin_id(id: &str) -> String {
    id.chars()
        .map(|c| if " \"/\\:;|*<>?".contains(c) { '_' } else { c })
        .collect()
}

impl Buffer {
    /// Opens a buffer. A file buffer resumes the chunks in its directory first (see
    /// [`Buffer::resume_report`]).
    pub fn open(cfg: BufferConfig, opts: BufferOptions) -> Result<Buffer, BufferError> {
        let plugin_id = opts.plugin_id.clone();
        let cfg_err = |message: &str| BufferError::Config {
            plugin_id: plugin_id.clone(),
            source: crate::config::ConfigError {
                param: None,
                message: message.to_string(),
            },
        };
        if opts.has_secondary && cfg.retry.forever {
            return Err(cfg_err(
                "<secondary> section and 'retry_forever' are exclusive",
            ));
        }
        let root = opts
            .root_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/tmp/fluent"));
        let backup_dir = root
            .join("backup")
            .join(format!("worker{}", opts.worker_id))
            .join(safe_plugin_id(&opts.plugin_id));
        let layout = match cfg.buffer_type {
            BufferType::Memory => None,
            BufferType::File => {
                let path = match (&cfg.path, &opts.root_dir) {
                    (Some(p), _) => p.clone(),
                    (None, Some(root)) => root
                        .join(format!("worker{}", opts.worker_id))
                        .join(&opts.plugin_id)
                        .join("buffer"),
                    (None, None) => {
                        return Err(cfg_err(
                            "buffer path is not configured. specify 'path' in <buffer>",
                        ));
                    }
                };
                Some(Layout::new(&path, &cfg.path_suffix))
            }
        };
        let rng = match opts.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        let mut state = State {
            stage: HashMap::new(),
            queue: VecDeque::new(),
            inflight: HashMap::new(),
            stage_bytes: 0,
            queue_bytes: 0,
            retry: None,
            retry_not_before: f64::NEG_INFINITY,
            rng,
            counters: Counters::default(),
            blocked_writers: 0,
            closed: false,
            sealing: 0,
        };
        let mut resume = ResumeReport::default();
        if let Some(layout) = &layout {
            let backup = (!cfg.disable_chunk_backup).then_some(backup_dir.as_path());
            let sync = cfg.fsync != FsyncPolicy::Never;
            let (loaded, report) =
                file::resume(layout, backup, sync).map_err(|source| BufferError::Io {
                    plugin_id: opts.plugin_id.clone(),
                    op: "resume chunks in",
                    path: layout.dir.clone(),
                    source,
                })?;
            resume = report;
            Self::adopt(&cfg, &opts, layout, &mut state, loaded, &mut resume)?;
        }
        let cfg_chunk_limit = cfg.chunk_limit_size;
        Ok(Buffer {
            cfg,
            opts,
            layout,
            backup_dir,
            state: Mutex::new(state),
            space: Condvar::new(),
            resume,
            syncer: Syncer::default(),
            spare: Mutex::new(Vec::new()),
            mirrored: AtomicU64::new(0),
            free: Mutex::new(Vec::new()),
            mirror_budget: MIRROR_BUDGET.min(cfg_chunk_limit.saturating_mul(MIRROR_CHUNKS)),
        })
    }

    /// Puts resumed chunks on the stage or in the queue, following Fluentd's `resume`.
    fn adopt(
        cfg: &BufferConfig,
        opts: &BufferOptions,
        layout: &Layout,
        st: &mut State,
        mut loaded: Vec<file::Loaded>,
        report: &mut ResumeReport,
    ) -> Result<(), BufferError> {
        loaded.sort_by_key(|a| (a.created, a.id));
        let mut queue: Vec<Chunk> = Vec::new();
        for l in loaded {
            let chunk = Chunk {
                id: l.id,
                metadata: Arc::new(l.metadata),
                bytes: l.bytes,
                records: l.records,
                created: l.created,
                modified: l.modified,
                body: Body::File {
                    path: l.path,
                    file: None,
                    len: l.file_len,
                    mirror: None,
                    spans: None,
                    reused: l.reused,
                    own: false,
                },
            };
            match l.state {
                FileState::Queued => queue.push(chunk),
                FileState::Staged => {
                    let full = is_full(cfg, &chunk);
                    let older = st.stage.remove(&chunk.metadata);
                    let mut to_queue = Vec::new();
                    if let Some(older) = older {
                        to_queue.push(older);
                    }
                    if full {
                        to_queue.push(chunk);
                    } else {
                        st.stage.insert(chunk.metadata.clone(), chunk);
                    }
                    for mut c in to_queue {
                        rename_queued(cfg, opts, layout, &mut c)?;
                        report.enqueued_at_resume += 1;
                        queue.push(c);
                    }
                }
            }
        }
        queue.sort_by_key(|a| (a.modified, a.created, a.id));
        st.stage_bytes = st.stage.values().map(|c| c.bytes).sum();
        st.queue_bytes = queue.iter().map(|c| c.bytes).sum();
        report.staged = st.stage.len();
        report.queued = queue.len();
        st.queue = queue.into();
        if report.staged + report.queued > 0 {
            tracing::info!(plugin_id = %opts.plugin_id, staged = report.staged, queued = report.queued, "resumed buffer chunks");
        }
        Ok(())
    }

    /// What resuming the file buffer found (empty for memory buffers).
    pub fn resume_report(&self) -> &ResumeReport {
        &self.resume
    }

    /// The configuration in force.
    pub fn config(&self) -> &BufferConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn io_err(&self, op: &'static str, path: &Path, source: std::io::Error) -> BufferError {
        BufferError::Io {
            plugin_id: self.opts.plugin_id.clone(),
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    fn metadata_for(
        &self,
        tag: &str,
        data: &[u8],
        e: &msgpack::Entry,
    ) -> Result<Metadata, msgpack::WalkError> {
        let keys = &self.cfg.chunk_keys;
        let mut m = Metadata {
            timekey: keys.time.as_ref().map(|tk| tk.timekey_of(e.time)),
            tag: keys.tag.then(|| tag.to_string()),
            variables: Default::default(),
        };
        let record = data.get(e.record.clone()).unwrap_or_default();
        for k in &keys.keys {
            let v = match msgpack::lookup(record, &k.path)
                .map_err(|err| msgpack::WalkError::in_record(e.record.start, &err))?
            {
                Some(v) => msgpack::render(v)
                    .map_err(|err| msgpack::WalkError::in_record(e.record.start, &err.into()))?,
                None => None,
            };
            m.variables.insert(k.name.clone(), v);
        }
        Ok(m)
    }

    /// Files fsynced by the group commit of `fsync always` writes so far (not counting the
    /// fsyncs of queueing).
    #[cfg(test)]
    pub(crate) fn synced_files(&self) -> u64 {
        self.syncer.synced_files()
    }

    /// Stores a batch (concatenated msgpack `[time, record]` entries) for `tag`.
    ///
    /// Entries are grouped by chunk keys and appended to staged chunks, rolling over at
    /// `chunk_limit_size` / `chunk_limit_records`. A record larger than a whole chunk is
    /// refused alone and listed in the receipt. When `total_limit_size` is reached,
    /// `overflow_action` applies. On `Ok`, a file buffer's data is on disk per the
    /// `fsync` policy. Invalid bytes are refused whole, before anything is stored.
    ///
    /// `records` is the caller's count of entries in `data`. When chunking needs nothing
    /// from the records (chunk keys `tag` or none), no `chunk_limit_records` is set and the
    /// whole batch fits a chunk, the batch is appended as is and counted as `records`
    /// entries after only a cheap shape check (see [`Buffer::whole_batch`]); the caller
    /// vouches for the bytes and the count (in_forward has validated every entry). When
    /// the staged chunk has no room for such a batch, that chunk is enqueued and the batch
    /// starts a fresh one, never split (Fluentd's `write_once` does the same: "event
    /// streams should be appended into a chunk at once as far as possible"). Every other
    /// batch is walked entry by entry, split across chunks where it must be, and then the
    /// buffer counts entries itself and `records` is only a sizing hint.
    pub fn write(&self, tag: &str, data: &[u8], records: u64) -> Result<WriteReceipt, BufferError> {
        self.write_with(tag, data, records, Durability::Now)
    }

    /// [`Buffer::write`], saying whether the caller needs the data durable when this
    /// returns. [`Durability::Deferred`] skips the `fsync always` wait (and its fsync): the
    /// data is written to the chunk file (a killed process loses nothing) and is fsynced
    /// with its chunk when the chunk is queued, or by any later [`Durability::Now`] write
    /// into the same chunk. For events nobody was promised anything about: a Forward
    /// request that asked for no ack.
    pub fn write_with(
        &self,
        tag: &str,
        data: &[u8],
        records: u64,
        durability: Durability,
    ) -> Result<WriteReceipt, BufferError> {
        // 1. Group: the whole batch at once when it can be, else walk it outside the lock.
        let mut receipt = WriteReceipt::default();
        let groups = match self.whole_batch(tag, data, records) {
            Some(group) => vec![group],
            None => self.walk(tag, data, records, &mut receipt)?,
        };
        if groups.is_empty() {
            self.lock().counters.rejected_records += receipt.rejected.len() as u64;
            return Ok(receipt);
        }
        self.store(groups, data, receipt, durability)
    }

    /// The fast path of [`Buffer::write`]: the batch as one group of one range holding
    /// `records` entries, when chunking needs no per-record data, no
    /// `chunk_limit_records` is set, the batch alone fits a chunk and the file frame limit,
    /// and it passes a cheap shape check: it starts with a 2-array marker and is at least
    /// 3 bytes per entry (the smallest `[time, {}]`). `None`: walk it.
    ///
    /// Whether the staged chunk has room is not asked here: a whole batch that does not
    /// fit it makes [`Buffer::write_group`] enqueue that chunk and start a fresh one.
    fn whole_batch(&self, tag: &str, data: &[u8], records: u64) -> Option<Group> {
        let cfg = &self.cfg;
        let len = data.len() as u64;
        if !cfg.chunk_keys.is_simple()
            || cfg.chunk_limit_records.is_some()
            || records == 0
            || records > u64::from(u32::MAX)
            || records.checked_mul(3).is_none_or(|min| min > len)
            || len > cfg.chunk_limit_size
            || data.len() > frame::MAX_PAYLOAD
            || data.first() != Some(&0x92)
        {
            return None;
        }
        Some(Group {
            meta: Metadata {
                timekey: None,
                tag: cfg.chunk_keys.tag.then(|| tag.to_string()),
                variables: Default::default(),
            },
            ranges: std::iter::once(0..data.len()).collect(),
            whole: Some(records),
        })
    }

    /// The slow path of [`Buffer::write`]: checks every entry, refuses records larger
    /// than a chunk (listed in `receipt`) and groups the rest by chunk keys.
    fn walk(
        &self,
        tag: &str,
        data: &[u8],
        records: u64,
        receipt: &mut WriteReceipt,
    ) -> Result<Vec<Group>, BufferError> {
        let cap = usize::try_from(records)
            .unwrap_or(0)
            .min(data.len() / 4 + 1);
        let mut groups: Vec<Group> = Vec::new();
        let mut index: HashMap<Metadata, usize> = HashMap::new();
        let simple = self.cfg.chunk_keys.is_simple();
        for (i, entry) in msgpack::entries(data).enumerate() {
            let invalid = |source| BufferError::InvalidChunk {
                plugin_id: self.opts.plugin_id.clone(),
                tag: tag.to_string(),
                source,
            };
            let e = entry.map_err(invalid)?;
            let len = e.range.len();
            if len as u64 > self.cfg.chunk_limit_size {
                receipt.rejected.push(RejectedRecord {
                    index: i,
                    size: len,
                });
                continue;
            }
            let slot = if simple && !groups.is_empty() {
                0
            } else {
                let meta = self.metadata_for(tag, data, &e).map_err(invalid)?;
                match index.get(&meta) {
                    Some(slot) => *slot,
                    None => {
                        index.insert(meta.clone(), groups.len());
                        groups.push(Group {
                            meta,
                            ranges: Vec::with_capacity(if simple { cap } else { 4 }),
                            whole: None,
                        });
                        groups.len() - 1
                    }
                }
            };
            if let Some(g) = groups.get_mut(slot) {
                g.ranges.push(e.range);
            }
        }
        if !receipt.rejected.is_empty() {
            tracing::warn!(
                plugin_id = %self.opts.plugin_id,
                tag,
                count = receipt.rejected.len(),
                chunk_limit_size = self.cfg.chunk_limit_size,
                "a record is larger than chunk_limit_size; refused (BufferChunkOverflowError), the rest is kept"
            );
        }
        Ok(groups)
    }

    /// Steps 2-4 of [`Buffer::write`], under the lock: make space per `overflow_action`,
    /// append the groups, enqueue full chunks, update the counters.
    fn store(
        &self,
        groups: Vec<Group>,
        data: &[u8],
        mut receipt: WriteReceipt,
        durability: Durability,
    ) -> Result<WriteReceipt, BufferError> {
        // 2. Space.
        let mut st = self.lock();
        if st.closed {
            return Err(BufferError::Closed {
                plugin_id: self.opts.plugin_id.clone(),
            });
        }
        let deadline = self.opts.block_timeout.map(|t| Instant::now() + t);
        let mut logged_block = false;
        while !self.storable(&st) {
            let overflow = |st: &State| BufferError::Overflow {
                plugin_id: self.opts.plugin_id.clone(),
                used: st.stage_bytes + st.queue_bytes,
                limit: self.cfg.total_limit_size,
            };
            match self.cfg.overflow_action {
                OverflowAction::ThrowException => {
                    st.counters.overflow_count += 1;
                    tracing::warn!(plugin_id = %self.opts.plugin_id, action = "throw_exception", "failed to write data into buffer by buffer overflow");
                    return Err(overflow(&st));
                }
                OverflowAction::Block => {
                    if !logged_block {
                        tracing::warn!(plugin_id = %self.opts.plugin_id, action = "block", "failed to write data into buffer by buffer overflow; blocking");
                        logged_block = true;
                    }
                    let wait = match deadline {
                        None => Duration::from_secs(1),
                        Some(d) => match d.checked_duration_since(Instant::now()) {
                            Some(left) if !left.is_zero() => left.min(Duration::from_secs(1)),
                            _ => {
                                st.counters.overflow_count += 1;
                                return Err(overflow(&st));
                            }
                        },
                    };
                    st.blocked_writers += 1;
                    st = self
                        .space
                        .wait_timeout(st, wait)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                    st.blocked_writers -= 1;
                    if st.closed {
                        tracing::error!(plugin_id = %self.opts.plugin_id, "breaking block behavior to shutdown");
                        return Err(BufferError::Closed {
                            plugin_id: self.opts.plugin_id.clone(),
                        });
                    }
                }
                OverflowAction::DropOldestChunk => match st.queue.pop_front() {
                    Some(oldest) => {
                        tracing::warn!(plugin_id = %self.opts.plugin_id, chunk_id = %oldest.id, records = oldest.records, "dropping oldest chunk to make space after buffer overflow");
                        st.queue_bytes -= oldest.bytes;
                        st.counters.drop_oldest_chunk_count += 1;
                        receipt.dropped.push(DroppedChunk {
                            chunk_id: oldest.id,
                            records: oldest.records,
                            bytes: oldest.bytes,
                        });
                        self.purge(oldest);
                    }
                    None => {
                        st.counters.overflow_count += 1;
                        tracing::error!(plugin_id = %self.opts.plugin_id, "no queued chunks to be dropped for drop_oldest_chunk");
                        return Err(overflow(&st));
                    }
                },
            }
        }

        // 3. Append.
        let now = self.opts.clock.now();
        let mut appended = Appended::default();
        for group in groups {
            let r = self.write_group(&mut st, group, data, now, &mut appended, &mut receipt);
            if let Err(e) = r {
                drop(st);
                // What filled up before the error is queued all the same.
                let _ = self.seal(appended.sealing);
                return Err(e);
            }
        }
        let Appended {
            touched,
            mut sealing,
        } = appended;
        // 4. Enqueue full chunks (all of them in immediate mode; queueing fsyncs them),
        // register the rest for the group fsync (unless the caller needs no durability yet).
        let mut tickets: Vec<Ticket> = Vec::new();
        for meta in touched {
            let Some(chunk) = st.stage.get_mut(&meta) else {
                continue;
            };
            if self.cfg.flush_mode == FlushMode::Immediate || is_full(&self.cfg, chunk) {
                self.enqueue(&mut st, &meta, &mut sealing);
            } else if self.cfg.fsync == FsyncPolicy::Always && durability == Durability::Now {
                if let Body::File {
                    path,
                    file: Some(f),
                    ..
                } = &chunk.body
                {
                    // A leader (holding only the syncer lock) may take the open group
                    // between two registrations, so they can land in different groups:
                    // keep every ticket.
                    let t = self.syncer.register(f, path);
                    if !tickets.iter().any(|k| k.same_group(&t)) {
                        tickets.push(t);
                    }
                }
            }
        }
        if receipt.records > 0 {
            st.counters.write_count += 1;
            st.counters.write_records += receipt.records;
        }
        st.counters.rejected_records += receipt.rejected.len() as u64;
        drop(st);
        // 5. Durable before `Ok`, outside the buffer lock: full chunks are fsynced for the
        // queue, and the rest waits for the group fsync, so concurrent writers share fsyncs
        // and flush threads are not held up.
        self.seal(sealing)?;
        for t in tickets {
            self.syncer
                .wait(t)
                .map_err(|f| self.io_err("fsync", &f.path, f.to_io_error()))?;
        }
        Ok(receipt)
    }

    /// Appends one group to its staged chunk under the lock, rolling over to fresh chunks:
    /// what does not fit the staged chunk enqueues it. Entries are split across chunks;
    /// a whole batch (one range) never is: it goes whole into a fresh chunk.
    fn write_group(
        &self,
        st: &mut State,
        group: Group,
        data: &[u8],
        now: SystemTime,
        appended: &mut Appended,
        receipt: &mut WriteReceipt,
    ) -> Result<(), BufferError> {
        let limit = self.cfg.chunk_limit_size;
        let rlimit = self.cfg.chunk_limit_records.unwrap_or(u64::MAX);
        let Group {
            meta,
            ranges,
            whole,
        } = group;
        // Entries per range: one, or all of them for a whole batch (a single range).
        let per_range = whole.unwrap_or(1);
        let meta = match st.stage.get_key_value(&meta) {
            Some((k, _)) => k.clone(),
            None => Arc::new(meta),
        };
        let mut i = 0;
        while i < ranges.len() {
            if !st.stage.contains_key(&meta) {
                let chunk = self.new_chunk(st, meta.clone(), now)?;
                st.stage.insert(meta.clone(), chunk);
            }
            let Some(chunk) = st.stage.get_mut(&meta) else {
                break;
            };
            let incarnation = file::incarnation(&chunk.id);
            let mut take = 0usize;
            let mut take_bytes = 0u64;
            let mut take_records = 0u64;
            for r in ranges.iter().skip(i) {
                let len = r.len() as u64;
                if chunk.bytes + take_bytes + len > limit
                    || chunk.records + take_records + per_range > rlimit
                    || take_bytes + len > frame::MAX_PAYLOAD as u64
                {
                    break;
                }
                take += 1;
                take_bytes += len;
                take_records += per_range;
            }
            if take == 0 {
                if chunk.records == 0 {
                    // Cannot happen (oversized records and whole batches larger than a
                    // chunk never get here); never loop forever.
                    i += 1;
                    continue;
                }
                self.enqueue(st, &meta, &mut appended.sealing);
                continue;
            }
            let parts: Vec<&[u8]> = ranges
                .iter()
                .skip(i)
                .take(take)
                .filter_map(|r| data.get(r.clone()))
                .collect();
            match &mut chunk.body {
                Body::Memory(buf) => {
                    let buf = Arc::make_mut(buf);
                    for p in &parts {
                        buf.extend_from_slice(p);
                    }
                }
                Body::File {
                    path,
                    file,
                    len,
                    mirror,
                    spans,
                    ..
                } => {
                    let f = match file {
                        Some(f) => f,
                        None => {
                            let opened = std::fs::OpenOptions::new()
                                .append(true)
                                .open(&*path)
                                .map_err(|e| self.io_err("open", path, e))?;
                            file.insert(Arc::new(opened))
                        }
                    };
                    let frame_records = u32::try_from(take_records).map_err(|_| {
                        self.io_err(
                            "append to",
                            path,
                            std::io::Error::new(
                                std::io::ErrorKind::InvalidInput,
                                "more than u32::MAX records in one frame",
                            ),
                        )
                    })?;
                    let written = file::append_frame(f, &parts, frame_records, incarnation, *len)
                        .map_err(|e| self.io_err("append to", path, e))?;
                    if let Some(v) = spans {
                        if v.len() < MAX_SPANS {
                            v.push((*len + (written - take_bytes), take_bytes));
                        } else {
                            *spans = None;
                        }
                    }
                    *len += written;
                    self.extend_mirror(mirror, &parts, take_bytes);
                }
            }
            chunk.bytes += take_bytes;
            chunk.records += take_records;
            chunk.modified = now;
            st.stage_bytes += take_bytes;
            receipt.records += take_records;
            receipt.bytes += take_bytes;
            if !appended.touched.contains(&meta) {
                appended.touched.push(meta.clone());
            }
            i += take;
        }
        Ok(())
    }

    fn new_chunk(
        &self,
        st: &mut State,
        meta: Arc<Metadata>,
        now: SystemTime,
    ) -> Result<Chunk, BufferError> {
        let id = ChunkId::generate(now, &mut st.rng);
        let body = match &self.layout {
            None => Body::Memory(Arc::new(Vec::new())),
            Some(layout) => {
                let path = layout.data_path(&id, FileState::Staged);
                let sync = self.cfg.fsync != FsyncPolicy::Never;
                let free = self.lock_free().pop();
                let reused = free.and_then(|free| {
                    let meta = file::encode_meta_with(&id, &meta, now, true);
                    match file::reuse_chunk(&free, &path, &meta, sync) {
                        Ok(f) => Some(f),
                        Err(e) => {
                            tracing::debug!(plugin_id = %self.opts.plugin_id, path = %free.display(), error = %e, "cannot reuse a flushed chunk file; creating a new one");
                            let _ = std::fs::remove_file(&free);
                            None
                        }
                    }
                });
                let (f, reused) = match reused {
                    Some(f) => (f, true),
                    None => (
                        file::create_chunk(&path, &file::encode_meta(&id, &meta, now), sync)
                            .map_err(|e| self.io_err("create chunk file", &path, e))?,
                        false,
                    ),
                };
                if sync {
                    file::sync_dir(&layout.dir)
                        .map_err(|e| self.io_err("fsync directory", &layout.dir, e))?;
                }
                Body::File {
                    path,
                    file: Some(Arc::new(f)),
                    len: 0,
                    mirror: self.new_mirror(),
                    spans: self.opts.file_ranges.then(Vec::new),
                    reused,
                    own: true,
                }
            }
        };
        Ok(Chunk {
            id,
            metadata: meta,
            bytes: 0,
            records: 0,
            created: now,
            modified: now,
            body,
        })
    }

    /// Moves the staged chunk for `meta` to the queue. A memory chunk goes at once; a file
    /// chunk must be made durable and renamed first, which waits for the disk, so it is
    /// handed to the caller in `sealing` and counted as queued until [`Buffer::seal`]
    /// (called after the lock is dropped) puts it in the queue: writers and flush threads
    /// are not held up by the fsyncs of queueing.
    fn enqueue(&self, st: &mut State, meta: &Arc<Metadata>, sealing: &mut Vec<Chunk>) {
        let Some(chunk) = st.stage.remove(meta) else {
            return;
        };
        st.stage_bytes -= chunk.bytes;
        st.queue_bytes += chunk.bytes;
        if self.layout.is_some() {
            st.sealing += 1;
            sealing.push(chunk);
        } else {
            st.queue.push_back(chunk);
        }
    }

    /// Makes the chunks [`Buffer::enqueue`] handed out durable under their queued names,
    /// outside the lock, then puts them in the queue (in creation order). A chunk whose
    /// fsync or rename fails is queued all the same (its data is in the file and, while
    /// small, in memory, so it is still delivered) and the first error is returned.
    fn seal(&self, sealing: Vec<Chunk>) -> Result<(), BufferError> {
        if sealing.is_empty() {
            return Ok(());
        }
        let mut first_err = None;
        let mut done = Vec::with_capacity(sealing.len());
        for mut chunk in sealing {
            if let Some(layout) = &self.layout
                && let Err(e) = rename_queued(&self.cfg, &self.opts, layout, &mut chunk)
            {
                tracing::error!(plugin_id = %self.opts.plugin_id, chunk_id = %chunk.id, "cannot make a chunk durable for the queue: {e}");
                first_err.get_or_insert(e);
            }
            done.push(chunk);
        }
        let mut st = self.lock();
        for chunk in done {
            st.sealing -= 1;
            // Usually the newest: insert from the back, after every older chunk.
            let at = st
                .queue
                .iter()
                .rposition(|c| c.created <= chunk.created)
                .map_or(0, |i| i + 1);
            st.queue.insert(at, chunk);
        }
        drop(st);
        first_err.map_or(Ok(()), Err)
    }

    fn storable(&self, st: &State) -> bool {
        self.cfg.total_limit_size > st.stage_bytes + st.queue_bytes
    }

    fn queue_full(&self, st: &State) -> bool {
        st.queue.len() + st.sealing >= self.cfg.queued_chunks_limit_size
    }

    /// Enqueues staged chunks whose time has come: `flush_interval` after creation
    /// (interval mode), `timekey + timekey + timekey_wait` passed (time chunk key).
    /// Stops at `queued_chunks_limit_size` queued chunks. Returns how many moved.
    pub fn enqueue_due(&self, now: SystemTime) -> Result<usize, BufferError> {
        let mut sealing = Vec::new();
        let n = self.enqueue_due_locked(&mut self.lock(), now, &mut sealing);
        self.seal(sealing)?;
        Ok(n)
    }

    fn enqueue_due_locked(
        &self,
        st: &mut State,
        now: SystemTime,
        sealing: &mut Vec<Chunk>,
    ) -> usize {
        let mut due: Vec<(SystemTime, ChunkId, Arc<Metadata>)> = st
            .stage
            .iter()
            .filter(|(m, c)| self.due_time(m, c.created).is_some_and(|t| t <= now))
            .map(|(m, c)| (c.created, c.id, m.clone()))
            .collect();
        due.sort();
        let mut n = 0;
        for (_, _, meta) in due {
            if self.queue_full(st) {
                break;
            }
            self.enqueue(st, &meta, sealing);
            n += 1;
        }
        n
    }

    /// Enqueues every staged chunk regardless of limits (shutdown, `flush_at_shutdown`,
    /// forced flush). Returns how many moved.
    pub fn enqueue_all(&self) -> Result<usize, BufferError> {
        let mut sealing = Vec::new();
        let mut st = self.lock();
        let mut metas: Vec<(SystemTime, ChunkId, Arc<Metadata>)> = st
            .stage
            .iter()
            .map(|(m, c)| (c.created, c.id, m.clone()))
            .collect();
        metas.sort();
        for (_, _, m) in &metas {
            self.enqueue(&mut st, m, &mut sealing);
        }
        drop(st);
        self.seal(sealing)?;
        Ok(metas.len())
    }

    /// For a flush thread: enqueues what is due at `now`, then leases the oldest queued
    /// chunk, unless a retry is pending before `now`. Returns `Ok(None)` when there is
    /// nothing to do.
    pub fn next_ready(&self, now: SystemTime) -> Result<Option<ChunkLease>, BufferError> {
        let now_f = to_secs_f64(now);
        let mut sealing = Vec::new();
        self.enqueue_due_locked(&mut self.lock(), now, &mut sealing);
        self.seal(sealing)?;
        let (id, metadata, records, route, body) = {
            let mut st = self.lock();
            let secondary = match &st.retry {
                Some(r) if now_f < r.next_time().max(st.retry_not_before) => return Ok(None),
                Some(r) => self.opts.has_secondary && r.secondary(now_f),
                None => false,
            };
            let Some(chunk) = st.queue.pop_front() else {
                return Ok(None);
            };
            let route = if secondary {
                Route::Secondary
            } else {
                Route::Primary
            };
            let body = match &chunk.body {
                Body::Memory(d) => LeaseSource::Bytes(d.clone()),
                Body::File {
                    mirror: Some(m), ..
                } => LeaseSource::Bytes(m.clone()),
                Body::File {
                    path,
                    spans: Some(spans),
                    ..
                } if route == Route::Primary => LeaseSource::Ranges(path.clone(), spans.clone()),
                Body::File {
                    path, len, reused, ..
                } => LeaseSource::Read(path.clone(), *len, *reused),
            };
            let out = (chunk.id, chunk.metadata.clone(), chunk.records, route, body);
            st.inflight.insert(chunk.id, chunk);
            st.counters.flush_count += 1;
            out
        };
        let mut ranges = None;
        let data = match body {
            LeaseSource::Bytes(d) => d,
            LeaseSource::Ranges(path, spans) => match File::open(&path) {
                Ok(file) => {
                    ranges = Some(FileRanges {
                        file,
                        ranges: spans,
                    });
                    Arc::new(Vec::new())
                }
                Err(e) => {
                    let mut st = self.lock();
                    if let Some(c) = st.inflight.remove(&id) {
                        st.queue.push_front(c);
                    }
                    return Err(self.io_err("open chunk", &path, e));
                }
            },
            LeaseSource::Read(path, len, reused) => {
                let mut buf = self.lock_spare().pop().unwrap_or_default();
                let inc = file::incarnation(&id);
                match file::read_payloads_into(&path, len, inc, reused, &mut buf) {
                    Ok(scan) => {
                        if !scan.is_clean() {
                            tracing::warn!(plugin_id = %self.opts.plugin_id, chunk_id = %id, dropped_bytes = scan.dropped_bytes(), "buffer chunk damaged on disk; flushing its intact batches");
                        }
                        Arc::new(buf)
                    }
                    Err(e) => {
                        self.recycle(Arc::new(buf), 0);
                        let mut st = self.lock();
                        if let Some(c) = st.inflight.remove(&id) {
                            st.queue.push_front(c);
                        }
                        return Err(self.io_err("read chunk", &path, e));
                    }
                }
            }
        };
        Ok(Some(ChunkLease {
            id,
            metadata,
            data,
            file: ranges,
            records,
            route,
        }))
    }

    /// Puts a file-ranges lease's payload in [`ChunkLease::data`], read from its file (for
    /// the `<secondary>` or a backup file, which take bytes); on failure the lease is as it was.
    fn with_bytes(&self, lease: &mut ChunkLease) -> std::io::Result<()> {
        if let Some(r) = lease.file.take() {
            let mut buf = self.lock_spare().pop().unwrap_or_default();
            if let Err(e) = r.read_into(&mut buf) {
                lease.file = Some(r);
                return Err(e);
            }
            lease.data = Arc::new(buf);
        }
        Ok(())
    }

    /// An empty mirror for a new file chunk: a recycled buffer when one is large enough,
    /// else a fresh one (its pages are touched only as data arrives). `None` when chunks
    /// are too large to mirror or the budget is spent.
    fn new_mirror(&self) -> Option<Arc<Vec<u8>>> {
        let limit = self.cfg.chunk_limit_size;
        if self.opts.file_ranges
            || limit > MIRROR_CHUNK_LIMIT
            || self.mirrored.load(AtomicOrdering::Relaxed) >= self.mirror_budget
        {
            return None;
        }
        let cap = usize::try_from(limit).ok()?;
        let mut spare = self.lock_spare();
        let buf = match spare.iter().position(|b| b.capacity() >= cap) {
            Some(i) => spare.swap_remove(i),
            None => Vec::with_capacity(cap),
        };
        Some(Arc::new(buf))
    }

    /// Appends `parts` (`bytes` in all, already in the chunk file) to a chunk's mirror,
    /// or drops the mirror when the budget would be passed or it is shared.
    fn extend_mirror(&self, mirror: &mut Option<Arc<Vec<u8>>>, parts: &[&[u8]], bytes: u64) {
        let Some(m) = mirror else {
            return;
        };
        let fits = self
            .mirrored
            .load(AtomicOrdering::Relaxed)
            .saturating_add(bytes)
            <= self.mirror_budget;
        match Arc::get_mut(m).filter(|_| fits) {
            Some(buf) => {
                for p in parts {
                    buf.extend_from_slice(p);
                }
                self.mirrored.fetch_add(bytes, AtomicOrdering::Relaxed);
            }
            None => {
                self.mirrored
                    .fetch_sub(m.len() as u64, AtomicOrdering::Relaxed);
                *mirror = None;
            }
        }
    }

    pub(crate) fn lock_spare(&self) -> MutexGuard<'_, Vec<Vec<u8>>> {
        self.spare.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the buffer of a settled file-chunk lease (its mirror, or what `next_ready`
    /// read) for the next chunk's mirror or read, and none larger than two chunks or
    /// [`RECYCLE_LIMIT`] (memory chunks' data is shared with their writers, so only file
    /// buffers recycle). While `backlog` chunks are queued it keeps as many as there can be
    /// mirrors, so new chunks' mirrors find pages already mapped; once the queue is empty,
    /// one per flush thread, so a burst leaves no idle memory behind.
    fn recycle(&self, data: Arc<Vec<u8>>, backlog: usize) {
        if self.layout.is_none() {
            return;
        }
        let Ok(mut buf) = Arc::try_unwrap(data) else {
            return;
        };
        let max = self
            .cfg
            .chunk_limit_size
            .saturating_mul(2)
            .saturating_add(1 << 20)
            .min(RECYCLE_LIMIT);
        if buf.capacity() == 0 || buf.capacity() as u64 > max {
            return;
        }
        buf.clear();
        let threads = self.cfg.flush_thread_count.max(1);
        let keep = if backlog > 0 {
            let mirrors = self.mirror_budget / self.cfg.chunk_limit_size.max(1);
            usize::try_from(mirrors).unwrap_or(usize::MAX).max(threads)
        } else {
            threads
        };
        let mut spare = self.lock_spare();
        if spare.len() < keep {
            spare.push(buf);
        }
        spare.truncate(keep);
    }

    /// Removes a chunk's storage (files) once it is out of the state.
    fn purge(&self, chunk: Chunk) {
        if let Body::File {
            mirror: Some(m), ..
        } = &chunk.body
        {
            self.mirrored
                .fetch_sub(m.len() as u64, AtomicOrdering::Relaxed);
        }
        let Body::File { path, own, .. } = &chunk.body else {
            return;
        };
        if let (true, Some(layout)) = (*own, &self.layout) {
            let mut free = self.lock_free();
            if free.len() < FREE_FILES {
                let to = layout.free_path(&chunk.id);
                match file::release_to_free(path, &to) {
                    Ok(()) => {
                        free.push(to);
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(plugin_id = %self.opts.plugin_id, path = %path.display(), error = %e, "cannot keep a flushed chunk file for reuse; removing it");
                    }
                }
            }
        }
        if let Err(e) = file::remove_chunk(path) {
            tracing::error!(plugin_id = %self.opts.plugin_id, path = %path.display(), error = %e, "failed to remove a flushed chunk file");
        }
    }

    fn lock_free(&self) -> MutexGuard<'_, Vec<PathBuf>> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The chunk was written: remove it, and end any retry state ("retry succeeded").
    pub fn commit(&self, lease: ChunkLease) -> Result<(), BufferError> {
        let mut st = self.lock();
        let chunk = st
            .inflight
            .remove(&lease.id)
            .ok_or_else(|| BufferError::UnknownLease {
                plugin_id: self.opts.plugin_id.clone(),
                chunk_id: lease.id,
            })?;
        st.queue_bytes -= chunk.bytes;
        st.counters.commit_count += 1;
        if st.retry.take().is_some() {
            st.retry_not_before = f64::NEG_INFINITY;
            let how = if lease.use_secondary() {
                "retry succeeded by secondary."
            } else {
                "retry succeeded."
            };
            tracing::warn!(plugin_id = %self.opts.plugin_id, chunk_id = %lease.id, "{how}");
        }
        let backlog = st.queue.len() + st.sealing;
        drop(st);
        self.purge(chunk);
        self.space.notify_all();
        self.recycle(lease.data, backlog);
        Ok(())
    }

    /// The flush failed; returns what the caller must do next (see [`Decision`]).
    ///
    /// The caller reports the failure (it knows the error): the buffer logs its retry
    /// bookkeeping at `debug` only, so a failed flush is one line in the log, not two.
    pub fn rollback(
        &self,
        mut lease: ChunkLease,
        failure: Failure,
    ) -> Result<Decision, BufferError> {
        let after_unrecoverable = lease.route == Route::SecondaryAfterUnrecoverable;
        let unrecoverable = failure == Failure::Unrecoverable || after_unrecoverable;
        // The secondary and the backup file take bytes: a file-ranges lease's payload is read
        // before the lock is taken (the chunk stays in flight meanwhile).
        let read = if unrecoverable {
            self.with_bytes(&mut lease)
        } else {
            Ok(())
        };
        let mut st = self.lock();
        let Some(chunk) = st.inflight.remove(&lease.id) else {
            return Err(BufferError::UnknownLease {
                plugin_id: self.opts.plugin_id.clone(),
                chunk_id: lease.id,
            });
        };
        if unrecoverable {
            if let Err(e) = read {
                let path = match &chunk.body {
                    Body::File { path, .. } => path.clone(),
                    Body::Memory(_) => PathBuf::new(),
                };
                st.queue.push_front(chunk);
                return Err(self.io_err("read chunk", &path, e));
            }
            if !after_unrecoverable && self.opts.has_secondary && lease.route == Route::Primary {
                tracing::warn!(plugin_id = %self.opts.plugin_id, chunk_id = %lease.id, "got unrecoverable error in primary. Skip retry and flush chunk to secondary");
                st.inflight.insert(chunk.id, chunk);
                return Ok(Decision::ToSecondary(ChunkLease {
                    route: Route::SecondaryAfterUnrecoverable,
                    ..lease
                }));
            }
            return self.backup(st, chunk, &lease);
        }
        if failure == Failure::Unrecoverable {
            return Ok(Decision::Backup { path: None });
        }
        st.counters.rollback_count += 1;
        st.queue.push_front(chunk);
        let Failure::Retryable { retry_after } = failure else {
            tracing::debug!(plugin_id = %self.opts.plugin_id, chunk_id = %lease.id, "chunk rolled back to be written again (no retry step)");
            return Ok(Decision::Resend);
        };
        let now = to_secs_f64(self.opts.clock.now());
        let cfg = self.cfg.retry;
        let has_secondary = self.opts.has_secondary;
        if st.retry.as_ref().is_some_and(RetryState::limit) {
            let steps = st.retry.as_ref().map_or(0, RetryState::steps);
            let records: u64 = st.queue.iter().map(|c| c.records).sum();
            tracing::debug!(plugin_id = %self.opts.plugin_id, retry_times = steps, records, "failed to flush the buffer, and hit limit for retries. dropping all chunks in the buffer queue.");
            let dropped: Vec<Chunk> = st.queue.drain(..).collect();
            let chunks = dropped.len();
            st.queue_bytes -= dropped.iter().map(|c| c.bytes).sum::<u64>();
            st.counters.retry_limit_dropped_chunks += chunks as u64;
            st.retry = None;
            st.retry_not_before = f64::NEG_INFINITY;
            drop(st);
            for c in dropped {
                self.purge(c);
            }
            self.space.notify_all();
            return Ok(Decision::Dropped { chunks, records });
        }
        let state = &mut *st;
        match &mut state.retry {
            None => {
                let r = RetryState::new(&cfg, has_secondary, now);
                tracing::debug!(plugin_id = %self.opts.plugin_id, chunk_id = %lease.id, retry_time = 0, next_retry_seconds = r.next_time(), "failed to flush the buffer.");
                state.retry = Some(r);
            }
            Some(r) => {
                // Several flush threads may fail the same round; count it once.
                if now >= r.next_time() {
                    let rng = &mut state.rng;
                    r.step(now, &mut || rng.r#gen::<f64>());
                    state.counters.retry_count += 1;
                }
                tracing::debug!(plugin_id = %self.opts.plugin_id, chunk_id = %lease.id, retry_time = r.steps(), next_retry_seconds = r.next_time(), secondary = lease.use_secondary(), "failed to flush the buffer.");
            }
        }
        if let Some(after) = retry_after {
            state.retry_not_before = state.retry_not_before.max(now + after.as_secs_f64());
        }
        let (at, steps, secondary) = match &state.retry {
            Some(r) => {
                let at = r.next_time().max(state.retry_not_before);
                (at, r.steps(), has_secondary && r.secondary(at))
            }
            None => (now, 0, false),
        };
        Ok(Decision::Retry {
            at: from_secs_f64(at),
            steps,
            secondary,
        })
    }

    fn backup(
        &self,
        mut st: MutexGuard<'_, State>,
        chunk: Chunk,
        lease: &ChunkLease,
    ) -> Result<Decision, BufferError> {
        let path = if self.cfg.disable_chunk_backup {
            tracing::warn!(plugin_id = %self.opts.plugin_id, "disable_chunk_backup is true. {} chunk is thrown away", lease.id);
            None
        } else {
            match file::write_backup(
                &self.backup_dir,
                &format!("{}.log", lease.id.hex()),
                lease.data(),
            ) {
                Ok(p) => {
                    tracing::warn!(plugin_id = %self.opts.plugin_id, "bad chunk is moved to {}", p.display());
                    Some(p)
                }
                Err(e) => {
                    // Keep the data: back to the queue head, and tell the caller.
                    st.queue.push_front(chunk);
                    return Err(self.io_err("write backup", &self.backup_dir, e));
                }
            }
        };
        st.queue_bytes -= chunk.bytes;
        st.counters.backup_count += 1;
        if st.retry.take().is_some() {
            st.retry_not_before = f64::NEG_INFINITY;
        }
        drop(st);
        self.purge(chunk);
        self.space.notify_all();
        Ok(Decision::Backup { path })
    }

    /// Stops accepting writes and wakes writers blocked by `overflow_action block`
    /// (they get [`BufferError::Closed`]). Leasing and settling keep working, so the
    /// caller can flush what is left.
    pub fn close(&self) {
        self.lock().closed = true;
        self.space.notify_all();
    }

    /// When a flush thread should look again: the retry time while retrying, else
    /// `now + flush_thread_burst_interval` if chunks are queued, else
    /// `now + flush_thread_interval` (Fluentd's `next_flush_time`).
    pub fn next_flush_time(&self, now: SystemTime) -> SystemTime {
        let st = self.lock();
        if let Some(r) = &st.retry {
            return from_secs_f64(r.next_time().max(st.retry_not_before));
        }
        let pause = if st.queue.is_empty() {
            self.cfg.flush_thread_interval
        } else {
            self.cfg.flush_thread_burst_interval
        };
        let idle = now.checked_add(pause).unwrap_or(now);
        // A staged chunk coming due earlier than the idle pause wakes the flusher then, so
        // `flush_interval 0.2` means 0.2 s, not "the next thread tick".
        st.stage
            .iter()
            .filter_map(|(m, c)| self.due_time(m, c.created))
            .fold(idle, |a, t| a.min(t.max(now)))
    }

    /// When a staged chunk created at `created` with metadata `m` is due for the queue:
    /// `created + flush_interval` in interval mode, `timekey + timekey + timekey_wait` for a
    /// time-keyed chunk (lazy), whichever comes first; `None` when only size or an explicit
    /// flush enqueues it.
    fn due_time(&self, m: &Metadata, created: SystemTime) -> Option<SystemTime> {
        let by_interval = (self.cfg.flush_mode == FlushMode::Interval)
            .then(|| created.checked_add(self.cfg.flush_interval))
            .flatten();
        let by_timekey = match (self.cfg.chunk_keys.time.as_ref(), m.timekey) {
            (Some(tk), Some(key)) => {
                let end = key
                    .saturating_add(i64::try_from(tk.timekey).unwrap_or(i64::MAX))
                    .saturating_add(i64::try_from(tk.timekey_wait).unwrap_or(i64::MAX));
                u64::try_from(end)
                    .ok()
                    .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
            }
            _ => None,
        };
        match (by_interval, by_timekey) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// True when nothing is staged, queued or leased.
    pub fn is_empty(&self) -> bool {
        let st = self.lock();
        st.stage.is_empty() && st.queue.is_empty() && st.inflight.is_empty() && st.sealing == 0
    }

    /// A snapshot of the gauges and counters.
    pub fn metrics(&self) -> Metrics {
        let st = self.lock();
        let c = &st.counters;
        let used = st.stage_bytes + st.queue_bytes;
        let limit = self.cfg.total_limit_size.max(1);
        Metrics {
            stage_length: st.stage.len(),
            stage_byte_size: st.stage_bytes,
            queue_length: st.queue.len() + st.sealing,
            inflight_length: st.inflight.len(),
            queue_byte_size: st.queue_bytes,
            available_space_ratio: (1.0 - used as f64 / limit as f64).clamp(0.0, 1.0),
            write_count: c.write_count,
            write_records: c.write_records,
            rejected_records: c.rejected_records,
            flush_count: c.flush_count,
            commit_count: c.commit_count,
            rollback_count: c.rollback_count,
            retry_count: c.retry_count,
            retrying: st.retry.is_some(),
            next_retry: st
                .retry
                .as_ref()
                .map(|r| from_secs_f64(r.next_time().max(st.retry_not_before))),
            drop_oldest_chunk_count: c.drop_oldest_chunk_count,
            retry_limit_dropped_chunks: c.retry_limit_dropped_chunks,
            backup_count: c.backup_count,
            overflow_count: c.overflow_count,
            blocked_writers: st.blocked_writers,
        }
    }
}

/// `chunk_size_full?`: at least `chunk_full_threshold` of either limit.
fn is_full(cfg: &BufferConfig, c: &Chunk) -> bool {
    c.bytes as f64 >= cfg.chunk_limit_size as f64 * cfg.chunk_full_threshold
        || cfg
            .chunk_limit_records
            .is_some_and(|r| c.records as f64 >= r as f64 * cfg.chunk_full_threshold)
}

/// Makes a staged file chunk durable and renames it to its queued name.
fn rename_queued(
    cfg: &BufferConfig,
    opts: &BufferOptions,
    layout: &Layout,
    chunk: &mut Chunk,
) -> Result<(), BufferError> {
    let Body::File { path, file, .. } = &mut chunk.body else {
        return Ok(());
    };
    let io = |op, p: &Path, source| BufferError::Io {
        plugin_id: opts.plugin_id.clone(),
        op,
        path: p.to_path_buf(),
        source,
    };
    let sync = cfg.fsync != FsyncPolicy::Never;
    if sync {
        match file.take() {
            Some(f) => f.sync_data().map_err(|e| io("fsync", path, e))?,
            None => File::open(&*path)
                .and_then(|f| f.sync_data())
                .map_err(|e| io("fsync", path, e))?,
        }
    } else {
        *file = None;
    }
    let to = layout.data_path(&chunk.id, FileState::Queued);
    file::rename_to_queued(path, &to).map_err(|e| io("rename", path, e))?;
    if sync {
        file::sync_dir(&layout.dir).map_err(|e| io("fsync directory", &layout.dir, e))?;
    }
    *path = to;
    Ok(())
}
