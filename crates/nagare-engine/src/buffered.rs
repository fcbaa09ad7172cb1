//! The buffered output runner: one `nagare-buffer` [`Buffer`] in front of one output
//! instance (and its `<secondary>`), with the flush threads that empty it.
//!
//! * [`plan_buffer`] turns an output's configuration into a [`BufferConfig`]: its
//!   `<buffer>` section, else Fluentd's v0.12 flat parameters (`compat_parameters`), else the
//!   per-type defaults (see [`plan_buffer`] for the table).
//! * [`BufferedRunner::submit`] writes a batch into the buffer. `Ok` means the events are
//!   accepted: in memory for a memory buffer, on disk (fsynced per the buffer's `fsync`
//!   policy) for a file buffer — in_forward acks its sender only then. `overflow_action`
//!   decides what a full buffer does: `throw_exception` fails the submit with a retryable
//!   error (in_forward closes without ack, the client retries), `block` waits for space,
//!   `drop_oldest_chunk` purges queued chunks (the buffer logs and counts them).
//! * `flush_thread_count` threads loop on [`Buffer::next_ready`] and call
//!   [`Output::write`] with a [`ChunkRef`] carrying the chunk id, tag, records, data and
//!   `variables` (record chunk keys, plus `"timekey"` when `time` is a chunk key). `Ok`
//!   commits the chunk; an error rolls it back and the runner acts on the buffer's
//!   [`Decision`]: retry later (logged once per retry step, in Fluentd's wording), write to
//!   the `<secondary>`, backed up, or dropped at the retry limit.
//! * [`BufferedRunner::shutdown`] closes the buffer, flushes everything when
//!   `flush_at_shutdown` is set (bounded by [`SHUTDOWN_FLUSH_TIMEOUT`]), joins the threads,
//!   reports what is left (lost for memory, kept on disk for file buffers) and stops the
//!   outputs.
//!
//! Chunks are always split by tag, whatever the chunk keys: the buffer stores bare
//! `[time, record]` entries and [`ChunkRef::tag`] promises one tag per chunk, so the tag is
//! added to the chunk keys internally when the configuration does not list it. The
//! `variables` handed to the plugin still follow the configured keys only.
//!
//! [`Output::write`]: nagare_plugin_api::Output::write

use crate::output::{Batch, ErrorHandler};
use crate::payload::Payload;
use abi_stable::std_types::{RSlice, RStr, Tuple2};
use nagare_buffer::{
    Buffer, BufferConfig, BufferError, BufferOptions, BufferType, ChunkLease, ConfigError,
    Decision, Durability, Failure, FlushMode, Metrics, OverflowAction, WriteReceipt,
};
use nagare_config::{Element, Value};
use nagare_plugin_api::{
    CHUNK_FORMATS_OP, ChunkFormat, ChunkRef, ErrorKind, OutputBox, PluginError,
};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// How long [`BufferedRunner::shutdown`] keeps flushing (and retrying) when
/// `flush_at_shutdown` is set; what is still buffered then is reported (and lost for memory
/// buffers).
pub const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// The shortest pause of an idle flush thread (keeps a zero interval from spinning).
const MIN_PAUSE: Duration = Duration::from_millis(5);

/// The shortest pause before a chunk the output asked to resend is written again.
const RESEND_PAUSE: Duration = Duration::from_millis(100);

/// How often a flush thread looks at the buffer at the latest, whatever the intervals say
/// (staged chunks become due on their own clock; the buffer does not announce it).
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// v0.12 flat parameters on a `<match>` and their `<buffer>` names (Fluentd's
/// `compat_parameters.rb BUFFER_PARAMS` plus the time-sliced ones).
const COMPAT_BUFFER_PARAMS: &[(&str, &str)] = &[
    ("buffer_type", "@type"),
    ("buffer_path", "path"),
    ("num_threads", "flush_thread_count"),
    ("flush_interval", "flush_interval"),
    ("try_flush_interval", "flush_thread_interval"),
    ("queued_chunk_flush_interval", "flush_thread_burst_interval"),
    ("disable_retry_limit", "retry_forever"),
    ("retry_limit", "retry_max_times"),
    ("max_retry_wait", "retry_max_interval"),
    ("buffer_chunk_limit", "chunk_limit_size"),
    ("buffer_queue_limit", "queue_limit_length"),
    ("buffer_queue_full_action", "overflow_action"),
    ("flush_at_shutdown", "flush_at_shutdown"),
    ("time_slice_wait", "timekey_wait"),
    ("timezone", "timekey_zone"),
];

/// Flat parameters that trigger the conversion but are not copied by name.
const COMPAT_TRIGGERS: &[&str] = &["time_slice_format"];

/// Where an output's buffer settings came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferOrigin {
    /// A `<buffer>` section.
    Section,
    /// v0.12 flat parameters on the `<match>`, converted like Fluentd's `compat_parameters`.
    Compat,
    /// Neither: the per-type defaults.
    Defaults,
}

/// An output's resolved buffer configuration.
#[derive(Debug, Clone)]
pub struct BufferPlan {
    /// The buffer configuration (chunk keys always include `tag`, see the module docs).
    pub config: BufferConfig,
    /// Where it came from.
    pub origin: BufferOrigin,
    /// Whether `tag` was added to the configured chunk keys.
    pub tag_added: bool,
    /// Flat buffer parameters the host consumed; they are not handed to the plugin (so it
    /// does not warn that they are unused). The time-sliced ones (`time_slice_format`,
    /// `time_slice_wait`, `timezone`, `localtime`, `utc`) stay: plugins such as out_file read
    /// them too.
    pub consumed: Vec<String>,
    /// Messages to log at start-up (Fluentd's configure-time warnings and notes).
    pub notes: Vec<String>,
}

/// Per-type buffer defaults: Fluentd's `config_set_default`s in the core plugins.
struct TypeDefaults {
    /// Chunk keys when the section argument is empty.
    chunk_keys: &'static str,
    /// Parameters applied when absent (inside a section too).
    params: &'static [(&'static str, &'static str)],
    /// Without any buffer configuration, flush every write at once: outputs that Fluentd
    /// runs synchronously (or that the host cannot know) print promptly.
    prompt: bool,
}

fn type_defaults(type_name: &str) -> TypeDefaults {
    match type_name {
        // out_file: file buffer, chunk key time, timekey 1d.
        "file" => TypeDefaults {
            chunk_keys: "time",
            params: &[("@type", "file"), ("timekey", "86400")],
            prompt: false,
        },
        // out_forward: chunk key tag, Fluentd's interval defaults.
        "forward" => TypeDefaults {
            chunk_keys: "tag",
            params: &[],
            prompt: false,
        },
        // out_stdout / out_null: chunk key tag; synchronous in Fluentd without <buffer>.
        "stdout" | "null" => TypeDefaults {
            chunk_keys: "tag",
            params: &[],
            prompt: true,
        },
        _ => TypeDefaults {
            chunk_keys: "",
            params: &[],
            prompt: true,
        },
    }
}

/// Parameters of prompt (unbuffered-like) outputs when nothing is configured: every write is
/// its own chunk, queued at once, and flush threads do not pause between chunks.
const PROMPT_PARAMS: &[(&str, &str)] = &[
    ("flush_mode", "immediate"),
    ("flush_thread_burst_interval", "0"),
];

fn has_key(params: &[(String, String)], key: &str) -> bool {
    params.iter().any(|(k, _)| k == key)
}

fn set_default(params: &mut Vec<(String, String)>, key: &str, value: &str) {
    if !has_key(params, key) {
        params.push((key.to_string(), value.to_string()));
    }
}

fn attr_str<'a>(e: &'a Element, key: &str) -> Option<&'a str> {
    e.attr(key).and_then(|a| match &a.value {
        Value::Str(s) => Some(s.as_str()),
        _ => None,
    })
}

fn chunk_key_list(arg: &str) -> Vec<&str> {
    arg.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .collect()
}

/// `time_slice_format` → timekey seconds (Fluentd's `compat_parameters_buffer`).
fn timekey_of_slice_format(f: &str) -> Result<&'static str, ConfigError> {
    if f.contains("%S") {
        Ok("1")
    } else if f.contains("%M") {
        Ok("60")
    } else if f.contains("%H") {
        Ok("3600")
    } else if f.contains("%d") {
        Ok("86400")
    } else {
        Err(ConfigError {
            param: Some("time_slice_format".into()),
            message: "time_slice_format only with %Y or %m is too long".into(),
        })
    }
}

fn parse_flat_bool(key: &str, v: &str) -> Result<bool, ConfigError> {
    nagare_buffer::values::parse_bool(v).map_err(|e| ConfigError {
        param: Some(key.into()),
        message: format!("'{key}': {e}"),
    })
}

/// Resolves the buffer of an output of `@type type_name` configured by `element` (its
/// `<match>` or `<store>`).
///
/// In order:
/// 1. the first `<buffer ARG>` section, with the type's defaults for what it leaves out;
/// 2. else v0.12 flat parameters (`buffer_type`, `buffer_path`, `flush_interval`,
///    `num_threads`, `buffer_chunk_limit`, `buffer_queue_limit`,
///    `buffer_queue_full_action`, `retry_limit`, `disable_retry_limit`, `max_retry_wait`,
///    `time_slice_format`/`time_slice_wait`/`timezone`, ...), converted as Fluentd's
///    `compat_parameters_buffer` does;
/// 3. else the per-type defaults.
///
/// Per-type defaults (Fluentd's, where the host knows them):
///
/// | `@type` | chunk keys | other |
/// |---|---|---|
/// | `file` | `time` | file buffer, `timekey 1d`; buffer `path` = out_file's `path` unless `@id` and `<system> root_dir` give one |
/// | `forward` | `tag` | Fluentd's defaults (interval mode, `flush_interval 60s`) |
/// | `stdout`, `null` | `tag` | without any buffer configuration: `flush_mode immediate`, no burst pause |
/// | anything else | none | without any buffer configuration: `flush_mode immediate`, no burst pause |
///
/// Fluentd runs stdout/null (and plugins without a `write`) synchronously when no
/// `<buffer>` is given; immediate mode is the buffered equivalent, so their output appears
/// at once. A flat `flush_interval` forces `flush_mode interval` unless a mode is set
/// (Fluentd's "'flush_interval' is configured at out side of <buffer>" note).
pub fn plan_buffer(
    type_name: &str,
    element: &Element,
    has_root_dir: bool,
) -> Result<BufferPlan, ConfigError> {
    let defaults = type_defaults(type_name);
    let mut params: Vec<(String, String)> = Vec::new();
    let mut consumed = Vec::new();
    let mut notes = Vec::new();
    let section = element.children("buffer").next();
    let flat_flush_interval = attr_str(element, "flush_interval").is_some();
    let (origin, mut arg) = if let Some(b) = section {
        for a in &b.attrs {
            if let Value::Str(s) = &a.value {
                params.push((a.key.clone(), s.clone()));
            }
        }
        if flat_flush_interval {
            consumed.push("flush_interval".to_string());
        }
        (BufferOrigin::Section, b.arg.trim().to_string())
    } else if COMPAT_BUFFER_PARAMS
        .iter()
        .map(|(k, _)| *k)
        .chain(COMPAT_TRIGGERS.iter().copied())
        .any(|k| attr_str(element, k).is_some())
    {
        let mut arg = defaults.chunk_keys.to_string();
        for (old, new) in COMPAT_BUFFER_PARAMS {
            if let Some(v) = attr_str(element, old) {
                let v = match (*old, v.trim()) {
                    ("buffer_queue_full_action", "exception") => "throw_exception".to_string(),
                    _ => v.to_string(),
                };
                params.push(((*new).to_string(), v));
                // The time-sliced parameters also shape file names (out_file's
                // `time_slice_format`), formatters and inject: leave them to the plugin.
                if !matches!(*old, "timezone" | "time_slice_wait") {
                    consumed.push((*old).to_string());
                }
            }
        }
        if let Some(f) = attr_str(element, "time_slice_format") {
            arg = "time".to_string();
            params.push(("timekey".into(), timekey_of_slice_format(f)?.into()));
            match (attr_str(element, "localtime"), attr_str(element, "utc")) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError {
                        param: Some("utc".into()),
                        message: "both of utc and localtime are specified, use only one of them"
                            .into(),
                    });
                }
                (Some(l), None) => {
                    let utc = !parse_flat_bool("localtime", l)?;
                    params.push(("timekey_use_utc".into(), utc.to_string()));
                }
                (None, Some(u)) => {
                    let utc = parse_flat_bool("utc", u)?;
                    params.push(("timekey_use_utc".into(), utc.to_string()));
                }
                (None, None) => {}
            }
        } else if chunk_key_list(&arg).contains(&"time") {
            // TimeSliceOutput's default time_slice_format is %Y%m%d.
            params.push(("timekey".into(), "86400".into()));
        }
        (BufferOrigin::Compat, arg)
    } else {
        if defaults.prompt {
            for (k, v) in PROMPT_PARAMS {
                params.push(((*k).to_string(), (*v).to_string()));
            }
        }
        (BufferOrigin::Defaults, String::new())
    };
    if arg.is_empty() {
        arg = defaults.chunk_keys.to_string();
    }
    for (k, v) in defaults.params {
        // `@type` and its legacy spelling are one parameter.
        if *k == "@type" && has_key(&params, "type") {
            continue;
        }
        set_default(&mut params, k, v);
    }
    if type_name == "file" && !has_key(&params, "path") && !(element.id().is_some() && has_root_dir)
    {
        let p = attr_str(element, "path").unwrap_or("/tmp/dummy_path");
        params.push(("path".into(), p.to_string()));
    }
    if flat_flush_interval && !has_key(&params, "flush_mode") {
        notes.push(
            "'flush_interval' is configured at out side of <buffer>. 'flush_mode' is set to 'interval' to keep existing behaviour"
                .to_string(),
        );
        params.push(("flush_mode".into(), "interval".into()));
    }
    let keys = chunk_key_list(&arg);
    let tag_added = !keys.contains(&"tag");
    let internal_arg = if tag_added {
        let mut k = vec!["tag"];
        k.extend(keys);
        k.join(",")
    } else {
        arg.clone()
    };
    let config = BufferConfig::from_params(&internal_arg, params)?;
    notes.extend(config.warnings.iter().cloned());
    Ok(BufferPlan {
        config,
        origin,
        tag_added,
        consumed,
        notes,
    })
}

/// Why a runner could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// The buffer could not be opened (file buffer directory, resume).
    #[error("output {plugin_id} ({type_name}): cannot open its buffer: {source}")]
    Buffer {
        /// The output's id.
        plugin_id: String,
        /// `@type`.
        type_name: String,
        /// What failed.
        #[source]
        source: Box<BufferError>,
    },
    /// The output (or its secondary) failed to start or stop.
    #[error("output {plugin_id} ({type_name}): {what} failed: {source}")]
    Plugin {
        /// The id of the instance that failed.
        plugin_id: String,
        /// Its `@type`.
        type_name: String,
        /// `"start"`, `"stop"`, `"secondary start"`, ...
        what: &'static str,
        /// The plugin's error.
        #[source]
        source: PluginError,
    },
    /// A flush thread could not be spawned.
    #[error("output {plugin_id}: cannot start flush thread: {source}")]
    Thread {
        /// The output's id.
        plugin_id: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A lock was poisoned by a panic in the host.
    #[error("output {plugin_id}: internal lock poisoned")]
    Poisoned {
        /// The output's id.
        plugin_id: String,
    },
}

/// Why a batch was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The buffer is full and `overflow_action` refused the batch (`throw_exception`, a
    /// `drop_oldest_chunk` with nothing queued to drop, or a `block` that was given up).
    #[error("output {plugin_id}: {source}")]
    Overflow {
        /// The output's id.
        plugin_id: String,
        /// The buffer's error.
        #[source]
        source: BufferError,
    },
    /// `try_submit` found the buffer full; nothing was stored.
    #[error("output {plugin_id}: the buffer is full (total_limit_size reached)")]
    WouldBlock {
        /// The output's id.
        plugin_id: String,
    },
    /// The runner is not started yet, or is shutting down.
    #[error("output {plugin_id}: the output is not running (starting or shutting down)")]
    Closed {
        /// The output's id.
        plugin_id: String,
    },
    /// The bytes are not a valid chunk: nothing was stored.
    #[error("output {plugin_id}: {source}")]
    Invalid {
        /// The output's id.
        plugin_id: String,
        /// Where the walk failed.
        #[source]
        source: BufferError,
    },
    /// The buffer's storage failed (disk full, I/O error).
    #[error("output {plugin_id}: {source}")]
    Storage {
        /// The output's id.
        plugin_id: String,
        /// The buffer's error.
        #[source]
        source: BufferError,
    },
}

impl SubmitError {
    /// The error an input gets: retryable (do not ack; the sender resends) except for data
    /// that can never be stored.
    pub fn to_plugin_error(&self) -> PluginError {
        let kind = match self {
            SubmitError::Invalid { .. } => ErrorKind::UNRECOVERABLE,
            _ => ErrorKind::RETRYABLE,
        };
        PluginError::new(kind, self.to_string())
    }
}

/// Counters of one runner (the buffer's own gauges and counters are in
/// [`BufferedRunner::buffer_metrics`]).
#[derive(Debug, Default)]
pub struct RunnerStats {
    /// Events accepted into the buffer.
    pub emitted_events: AtomicU64,
    /// Events written successfully (primary or secondary).
    pub written_events: AtomicU64,
    /// Successful `write` calls (committed chunks).
    pub write_count: AtomicU64,
    /// Chunks written by the `<secondary>`.
    pub secondary_write_count: AtomicU64,
    /// Failed `write` calls that were rolled back for a retry.
    pub retry_count: AtomicU64,
    /// Events given up: backed up, thrown away, dropped at the retry limit, or refused for
    /// being larger than a chunk.
    pub error_events: AtomicU64,
}

/// The `<secondary>` output of a runner.
pub struct SecondaryOutput {
    /// Its id (for logs and metrics).
    pub plugin_id: String,
    /// Its `@type`.
    pub type_name: String,
    /// The instance.
    pub output: OutputBox,
}

/// What a [`BufferedRunner`] needs besides its outputs.
#[derive(Debug, Clone)]
pub struct RunnerSpec {
    /// The output's `@id` (or generated id).
    pub plugin_id: String,
    /// Its `@type`.
    pub type_name: String,
    /// The buffer configuration (see [`plan_buffer`]).
    pub buffer: BufferConfig,
    /// Host-side buffer options (`root_dir`, worker id, clock). `plugin_id` and
    /// `has_secondary` are set by the runner.
    pub options: BufferOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not started, or running.
    Running,
    /// Shutting down with `flush_at_shutdown`: flush until empty or the deadline.
    Draining(Instant),
    /// Shutting down: finish the current write and exit.
    Stopping,
}

struct Control {
    phase: Phase,
    /// A wake-up arrived while no thread was waiting.
    kicked: bool,
    /// The retry step last logged (one "failed to flush" line per step).
    logged_step: Option<u64>,
    /// The last flush-thread error logged, and when (rate limit).
    last_error: Option<(String, Instant)>,
}

struct Slot {
    plugin_id: String,
    type_name: String,
    output: RwLock<OutputBox>,
}

struct Shared {
    spec: RunnerSpec,
    buffer: OnceLock<Buffer>,
    primary: Slot,
    secondary: Option<Slot>,
    control: Mutex<Control>,
    wake: Condvar,
    stats: RunnerStats,
    on_error: ErrorHandler,
    /// Whether the current full spell was reported to inputs that wait for room by polling
    /// ([`BufferedRunner::would_wait`]): once per spell, not once per look.
    wait_reported: AtomicBool,
}

/// A buffer in front of one output instance, with its flush threads.
pub struct BufferedRunner {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl BufferedRunner {
    /// Wraps an output (and its secondary). Nothing runs and no file is touched until
    /// [`BufferedRunner::start`]. `on_error` gets records the buffer refused for being
    /// larger than a whole chunk (the pipeline sends them to `@ERROR`).
    pub fn new(
        spec: RunnerSpec,
        primary: OutputBox,
        secondary: Option<SecondaryOutput>,
        on_error: ErrorHandler,
    ) -> Self {
        let primary = Slot {
            plugin_id: spec.plugin_id.clone(),
            type_name: spec.type_name.clone(),
            output: RwLock::new(primary),
        };
        let secondary = secondary.map(|s| Slot {
            plugin_id: s.plugin_id,
            type_name: s.type_name,
            output: RwLock::new(s.output),
        });
        BufferedRunner {
            shared: Arc::new(Shared {
                spec,
                buffer: OnceLock::new(),
                primary,
                secondary,
                control: Mutex::new(Control {
                    phase: Phase::Running,
                    kicked: false,
                    logged_step: None,
                    last_error: None,
                }),
                wake: Condvar::new(),
                stats: RunnerStats::default(),
                on_error,
                wait_reported: AtomicBool::new(false),
            }),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// The output's id.
    pub fn plugin_id(&self) -> &str {
        &self.shared.spec.plugin_id
    }

    /// The output's `@type`.
    pub fn type_name(&self) -> &str {
        &self.shared.spec.type_name
    }

    /// The buffer configuration in force.
    pub fn buffer_config(&self) -> &BufferConfig {
        &self.shared.spec.buffer
    }

    /// Opens the buffer (a file buffer resumes the chunks on disk), starts the output and
    /// its secondary, then the flush threads.
    pub fn start(&self) -> Result<(), RunnerError> {
        let s = &self.shared;
        let id = &s.spec.plugin_id;
        if s.buffer.get().is_none() {
            let mut opts = s.spec.options.clone();
            opts.plugin_id = id.clone();
            opts.has_secondary = s.secondary.is_some();
            // Only a file buffer has ranges to lend (and a memory buffer's output is not
            // asked: nothing more runs at start than before).
            opts.file_ranges =
                s.spec.buffer.buffer_type == BufferType::File && takes_file_ranges(&s.primary);
            let buffer = Buffer::open(s.spec.buffer.clone(), opts).map_err(|source| {
                RunnerError::Buffer {
                    plugin_id: id.clone(),
                    type_name: s.spec.type_name.clone(),
                    source: Box::new(source),
                }
            })?;
            log_resume(id, &buffer);
            let _ = s.buffer.set(buffer);
        }
        start_slot(&s.primary, "start")?;
        if let Some(sec) = &s.secondary
            && let Err(e) = start_slot(sec, "secondary start")
        {
            let _ = stop_slot(&s.primary, "stop");
            return Err(e);
        }
        let mut threads = self.threads.lock().map_err(|_| RunnerError::Poisoned {
            plugin_id: id.clone(),
        })?;
        for i in 0..s.spec.buffer.flush_thread_count.max(1) {
            let shared = Arc::clone(s);
            let h = std::thread::Builder::new()
                .name(format!("flush-{id}-{i}"))
                .spawn(move || flush_loop(&shared))
                .map_err(|source| RunnerError::Thread {
                    plugin_id: id.clone(),
                    source,
                })?;
            threads.push(h);
        }
        Ok(())
    }

    /// Writes a batch (concatenated msgpack `[time, record]` entries) into the buffer,
    /// waiting for space when `overflow_action` is `block`. `Ok` means accepted (durable for
    /// a file buffer, per its `fsync` policy).
    pub fn submit(&self, tag: &str, data: &Payload, records: u32) -> Result<(), SubmitError> {
        self.submit_with(tag, data, records, Durability::Now)
    }

    /// Like [`BufferedRunner::submit`] but never waits: a full buffer gives
    /// [`SubmitError::WouldBlock`] and stores nothing.
    pub fn try_submit(&self, tag: &str, data: &Payload, records: u32) -> Result<(), SubmitError> {
        self.try_submit_with(tag, data, records, Durability::Now)
    }

    /// [`BufferedRunner::try_submit`] with a [`Durability`], as for
    /// [`BufferedRunner::submit_with`].
    pub fn try_submit_with(
        &self,
        tag: &str,
        data: &Payload,
        records: u32,
        durability: Durability,
    ) -> Result<(), SubmitError> {
        if self.is_full() {
            return Err(SubmitError::WouldBlock {
                plugin_id: self.shared.spec.plugin_id.clone(),
            });
        }
        self.submit_with(tag, data, records, durability)
    }

    /// [`BufferedRunner::submit`], saying whether the caller needs the events durable when
    /// it returns: with [`Durability::Deferred`] they are fsynced with their chunk, at the
    /// latest when it is queued.
    pub fn submit_with(
        &self,
        tag: &str,
        data: &Payload,
        records: u32,
        durability: Durability,
    ) -> Result<(), SubmitError> {
        let s = &self.shared;
        let plugin_id = || s.spec.plugin_id.clone();
        let Some(buffer) = s.buffer.get() else {
            return Err(SubmitError::Closed {
                plugin_id: plugin_id(),
            });
        };
        let receipt = buffer
            .write_with(tag, data.as_slice(), u64::from(records), durability)
            .map_err(|e| match e {
                BufferError::Overflow { .. } => SubmitError::Overflow {
                    plugin_id: plugin_id(),
                    source: e,
                },
                BufferError::Closed { .. } => SubmitError::Closed {
                    plugin_id: plugin_id(),
                },
                BufferError::InvalidChunk { .. } => SubmitError::Invalid {
                    plugin_id: plugin_id(),
                    source: e,
                },
                other => SubmitError::Storage {
                    plugin_id: plugin_id(),
                    source: other,
                },
            })?;
        s.stats
            .emitted_events
            .fetch_add(receipt.records, Ordering::Relaxed);
        if !receipt.rejected.is_empty() {
            self.reject_oversized(tag, data, &receipt);
        }
        let m = buffer.metrics();
        if m.queue_length > 0 && !m.retrying {
            s.kick();
        }
        Ok(())
    }

    /// Hands records refused for being larger than a chunk to the error handler.
    fn reject_oversized(&self, tag: &str, data: &Payload, receipt: &WriteReceipt) {
        let bytes = data.as_slice();
        let mut out = Vec::new();
        let mut n = 0u32;
        for (i, entry) in nagare_buffer::msgpack::entries(bytes).enumerate() {
            let Ok(e) = entry else { break };
            if receipt.rejected.iter().any(|r| r.index == i)
                && let Some(b) = bytes.get(e.range)
            {
                out.extend_from_slice(b);
                n += 1;
            }
        }
        let s = &self.shared;
        s.stats
            .error_events
            .fetch_add(u64::from(n), Ordering::Relaxed);
        if n == 0 {
            return;
        }
        let why = PluginError::new(
            ErrorKind::UNRECOVERABLE,
            format!(
                "output {}: {n} record(s) larger than chunk_limit_size ({} bytes) (BufferChunkOverflowError)",
                s.spec.plugin_id, s.spec.buffer.chunk_limit_size
            ),
        );
        (s.on_error)(
            Batch {
                tag: Arc::from(tag),
                data: Payload::from_host(out),
                records: n,
            },
            &why,
        );
    }

    /// The runner's counters.
    pub fn stats(&self) -> &RunnerStats {
        &self.shared.stats
    }

    /// The buffer's gauges and counters (`None` before start).
    pub fn buffer_metrics(&self) -> Option<Metrics> {
        self.shared.buffer.get().map(Buffer::metrics)
    }

    /// Whether a submit now would not be accepted at once (the buffer is at
    /// `total_limit_size` and `overflow_action` would wait or refuse).
    pub fn is_full(&self) -> bool {
        let Some(buffer) = self.shared.buffer.get() else {
            return false;
        };
        let m = buffer.metrics();
        let full =
            m.stage_byte_size + m.queue_byte_size >= self.shared.spec.buffer.total_limit_size;
        full && (self.shared.spec.buffer.overflow_action != OverflowAction::DropOldestChunk
            || m.queue_length == 0)
    }

    /// Whether a submit now would wait for room: [`is_full`](Self::is_full) with
    /// `overflow_action block` (the other actions refuse or drop at once instead).
    /// Inputs poll this while they wait, so the first `true` of a full spell logs Fluentd's
    /// warning, as a submit that starts to wait does.
    pub fn would_wait(&self) -> bool {
        let s = &self.shared;
        if s.spec.buffer.overflow_action != OverflowAction::Block {
            return false;
        }
        let full = self.is_full();
        if full != s.wait_reported.swap(full, Ordering::Relaxed) && full {
            tracing::warn!(
                plugin_id = %s.spec.plugin_id,
                action = "block",
                "failed to write data into buffer by buffer overflow; blocking (inputs wait for room)"
            );
        }
        full
    }

    /// Calls the output's `control` op.
    pub fn control(&self, op: &str, payload: &[u8]) -> Result<Vec<u8>, PluginError> {
        let out = self
            .shared
            .primary
            .output
            .read()
            .map_err(|_| poisoned(&self.shared.primary))?;
        out.control(RStr::from(op), RSlice::from(payload))
            .into_result()
            .map(|v| v.to_vec())
    }

    /// Stops accepting, flushes what is buffered when `flush_at_shutdown` is set (for up to
    /// [`SHUTDOWN_FLUSH_TIMEOUT`]), joins the flush threads, reports what is left, then stops
    /// the output and its secondary.
    pub fn shutdown(&self) -> Result<(), RunnerError> {
        let s = &self.shared;
        let id = &s.spec.plugin_id;
        let buffer = s.buffer.get();
        let flush = s.spec.buffer.flush_at_shutdown;
        if let Some(b) = buffer {
            b.close();
            if flush && let Err(e) = b.enqueue_all() {
                tracing::error!(plugin_id = %id, "cannot enqueue the staged chunks at shutdown: {e}");
            }
        }
        {
            let mut c = s.lock_control();
            c.phase = if flush {
                Phase::Draining(Instant::now() + SHUTDOWN_FLUSH_TIMEOUT)
            } else {
                Phase::Stopping
            };
            c.kicked = true;
        }
        s.wake.notify_all();
        let threads = self
            .threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for h in threads {
            let _ = h.join();
        }
        if let Some(b) = buffer {
            report_leftovers(id, b);
        }
        let primary = stop_slot(&s.primary, "stop");
        let secondary = match &s.secondary {
            Some(sec) => stop_slot(sec, "secondary stop"),
            None => Ok(()),
        };
        primary.and(secondary)
    }
}

fn poisoned(slot: &Slot) -> PluginError {
    PluginError::new(
        ErrorKind::INTERNAL,
        format!(
            "output {} ({}): lock poisoned",
            slot.plugin_id, slot.type_name
        ),
    )
}

/// Whether the output's `write` takes `ChunkFormat::FILE_RANGES` chunks: its answer to
/// `chunk_formats.v1` lists it. An output that does not know the op, or answers anything
/// else, takes bytes.
fn takes_file_ranges(slot: &Slot) -> bool {
    let Ok(out) = slot.output.read() else {
        return false;
    };
    let Ok(answer) = out
        .control(RStr::from(CHUNK_FORMATS_OP), RSlice::from(&[][..]))
        .into_result()
    else {
        return false;
    };
    let mut rd = answer.as_slice();
    let Ok(n) = rmp::decode::read_array_len(&mut rd) else {
        return false;
    };
    let mut found = false;
    for _ in 0..n {
        match rmp::decode::read_int::<u64, _>(&mut rd) {
            Ok(f) => found |= f == u64::from(ChunkFormat::FILE_RANGES.0),
            Err(_) => return false,
        }
    }
    found
}

fn start_slot(slot: &Slot, what: &'static str) -> Result<(), RunnerError> {
    let mut out = slot.output.write().map_err(|_| RunnerError::Poisoned {
        plugin_id: slot.plugin_id.clone(),
    })?;
    out.start()
        .into_result()
        .map_err(|source| RunnerError::Plugin {
            plugin_id: slot.plugin_id.clone(),
            type_name: slot.type_name.clone(),
            what,
            source,
        })
}

fn stop_slot(slot: &Slot, what: &'static str) -> Result<(), RunnerError> {
    let mut out = slot.output.write().map_err(|_| RunnerError::Poisoned {
        plugin_id: slot.plugin_id.clone(),
    })?;
    out.stop()
        .into_result()
        .map_err(|source| RunnerError::Plugin {
            plugin_id: slot.plugin_id.clone(),
            type_name: slot.type_name.clone(),
            what,
            source,
        })
}

fn log_resume(id: &str, buffer: &Buffer) {
    let r = buffer.resume_report();
    if !r.repaired.is_empty() {
        let dropped: u64 = r.repaired.iter().map(|x| x.dropped_bytes).sum();
        let kept: usize = r.repaired.iter().map(|x| x.kept_batches).sum();
        tracing::warn!(
            plugin_id = %id,
            "recovered {} damaged buffer chunk(s): kept {kept} intact batch(es), dropped {dropped} damaged byte(s)",
            r.repaired.len()
        );
    }
    if !r.quarantined.is_empty() {
        let files: Vec<String> = r
            .quarantined
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        tracing::error!(
            plugin_id = %id,
            "moved {} unreadable buffer chunk(s) to the backup directory: {}",
            files.len(),
            files.join(", ")
        );
    }
}

fn report_leftovers(id: &str, buffer: &Buffer) {
    let m = buffer.metrics();
    let chunks = m.stage_length + m.queue_length + m.inflight_length;
    if chunks == 0 {
        return;
    }
    let bytes = m.stage_byte_size + m.queue_byte_size;
    match buffer.config().buffer_type {
        BufferType::Memory => tracing::error!(
            plugin_id = %id,
            "{chunks} buffer chunk(s) ({bytes} bytes) could not be flushed before shutdown and are lost"
        ),
        BufferType::File => tracing::info!(
            plugin_id = %id,
            "{chunks} buffer chunk(s) ({bytes} bytes) stay in the file buffer and are flushed after the next start"
        ),
    }
}

/// `next_retry_time` as Fluentd prints a `Time`.
fn fmt_time(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Local>::from(t)
        .format("%Y-%m-%d %H:%M:%S %z")
        .to_string()
}

/// What the buffer does about a failed write. A kind this host does not know (from a newer
/// plugin) is retried: never a reason to give the chunk up.
fn failure_of(e: &PluginError) -> Failure {
    match e.kind {
        ErrorKind::UNRECOVERABLE | ErrorKind::PANIC | ErrorKind::CONFIG => Failure::Unrecoverable,
        ErrorKind::RESEND => Failure::Resend,
        _ => Failure::Retryable {
            retry_after: (e.retry_after_ms > 0).then(|| Duration::from_millis(e.retry_after_ms)),
        },
    }
}

/// The `variables` of a chunk: record chunk keys (nil → `""`, as Fluentd's placeholder
/// substitution renders it), then `"timekey"` when `time` is a chunk key.
fn chunk_variables(lease: &ChunkLease) -> Vec<(String, String)> {
    let m = lease.metadata();
    let mut v: Vec<(String, String)> = m
        .variables
        .iter()
        .map(|(k, val)| (k.clone(), val.clone().unwrap_or_default()))
        .collect();
    if let Some(tk) = m.timekey {
        v.push(("timekey".to_string(), tk.to_string()));
    }
    v
}

impl Shared {
    fn lock_control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn phase(&self) -> Phase {
        self.lock_control().phase
    }

    /// Wakes one flush thread (or the next one to wait).
    fn kick(&self) {
        self.lock_control().kicked = true;
        self.wake.notify_one();
    }

    /// Waits up to `d`, returning early on a kick or a phase change.
    fn pause(&self, d: Duration) {
        let mut c = self.lock_control();
        if c.kicked {
            c.kicked = false;
            return;
        }
        let phase = c.phase;
        let deadline = Instant::now() + d;
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            if left.is_zero() {
                return;
            }
            c = self
                .wake
                .wait_timeout(c, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
            if c.kicked || c.phase != phase {
                c.kicked = false;
                return;
            }
        }
    }

    /// Logs a flush-thread error, at most once a minute for the same text.
    fn log_error(&self, msg: String) {
        let mut c = self.lock_control();
        let repeat = c
            .last_error
            .as_ref()
            .is_some_and(|(m, at)| *m == msg && at.elapsed() < Duration::from_secs(60));
        if !repeat {
            tracing::error!(plugin_id = %self.spec.plugin_id, "{msg}");
            c.last_error = Some((msg, Instant::now()));
        }
    }

    fn write_to(&self, slot: &Slot, lease: &ChunkLease) -> Result<(), PluginError> {
        let vars = chunk_variables(lease);
        let pairs: Vec<Tuple2<RStr<'_>, RStr<'_>>> = vars
            .iter()
            .map(|(k, v)| Tuple2(RStr::from(k.as_str()), RStr::from(v.as_str())))
            .collect();
        // A file-ranges lease (only leased for the primary, which asked for them) lends the
        // chunk file's descriptor, open until the lease is settled, after this call.
        let descriptor = lease.file_ranges().map(|r| {
            nagare_core::file_ranges::FileRanges {
                fd: r.file().as_raw_fd(),
                ranges: r.ranges().to_vec(),
            }
            .encode()
        });
        let (format, data) = match &descriptor {
            Some(d) => (ChunkFormat::FILE_RANGES, d.as_slice()),
            None => (ChunkFormat::MSGPACK_STREAM, lease.data()),
        };
        let chunk = ChunkRef {
            tag: RStr::from(lease.metadata().tag.as_deref().unwrap_or("")),
            chunk_id: lease.id().0,
            records: u32::try_from(lease.records()).unwrap_or(u32::MAX),
            format,
            data: RSlice::from(data),
            variables: RSlice::from(pairs.as_slice()),
        };
        match slot.output.read() {
            Ok(out) => out.write(chunk).into_result(),
            Err(_) => Err(poisoned(slot)),
        }
    }

    /// Writes one leased chunk and settles it, following the buffer's decisions. `true` when
    /// the output asked for the chunk to be written again ([`ErrorKind::RESEND`]).
    fn flush(&self, buffer: &Buffer, mut lease: ChunkLease) -> bool {
        let id = &self.spec.plugin_id;
        loop {
            let slot = match (&self.secondary, lease.use_secondary()) {
                (Some(sec), true) => sec,
                _ => &self.primary,
            };
            let records = lease.records();
            let chunk_hex = lease.id().hex();
            let error = match self.write_to(slot, &lease) {
                Ok(()) => {
                    let secondary = !std::ptr::eq(slot, &self.primary);
                    match buffer.commit(lease) {
                        Ok(()) => {
                            self.stats.write_count.fetch_add(1, Ordering::Relaxed);
                            self.stats
                                .written_events
                                .fetch_add(records, Ordering::Relaxed);
                            if secondary {
                                self.stats
                                    .secondary_write_count
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                            self.lock_control().logged_step = None;
                        }
                        Err(e) => self.log_error(format!("cannot commit a written chunk: {e}")),
                    }
                    return false;
                }
                Err(e) => e,
            };
            let failure = failure_of(&error);
            if error.kind == ErrorKind::PANIC {
                tracing::error!(plugin_id = %slot.plugin_id, "output {} panicked while writing chunk {chunk_hex}: {error}", slot.type_name);
            }
            let decision = match buffer.rollback(lease, failure) {
                Ok(d) => d,
                Err(e) => {
                    self.log_error(format!("cannot roll back chunk {chunk_hex}: {e}"));
                    return false;
                }
            };
            match decision {
                Decision::Retry { at, steps, .. } => {
                    self.stats.retry_count.fetch_add(1, Ordering::Relaxed);
                    let mut c = self.lock_control();
                    if c.logged_step != Some(steps) {
                        c.logged_step = Some(steps);
                        drop(c);
                        tracing::warn!(
                            plugin_id = %id,
                            "failed to flush the buffer. retry_times={steps} next_retry_time={} chunk=\"{chunk_hex}\" error=\"{error}\"",
                            fmt_time(at)
                        );
                    }
                    return false;
                }
                Decision::Resend => {
                    // The output said why (out_forward warns about the node); the chunk is
                    // written again after the burst pause, with no retry step.
                    tracing::debug!(plugin_id = %id, "chunk {chunk_hex} is written again: {error}");
                    return true;
                }
                Decision::ToSecondary(next) => {
                    lease = next;
                }
                Decision::Backup { path } => {
                    self.stats
                        .error_events
                        .fetch_add(records, Ordering::Relaxed);
                    self.lock_control().logged_step = None;
                    match path {
                        Some(p) => tracing::error!(
                            plugin_id = %id,
                            "got unrecoverable error in {}: {error}; chunk {chunk_hex} ({records} records) was written to the backup file {}",
                            if std::ptr::eq(slot, &self.primary) { "primary and no secondary" } else { "secondary" },
                            p.display()
                        ),
                        None => tracing::error!(
                            plugin_id = %id,
                            "got unrecoverable error: {error}; chunk {chunk_hex} ({records} records) is thrown away (disable_chunk_backup)"
                        ),
                    }
                    return false;
                }
                Decision::Dropped { chunks, records } => {
                    self.stats
                        .error_events
                        .fetch_add(records, Ordering::Relaxed);
                    self.lock_control().logged_step = None;
                    tracing::error!(
                        plugin_id = %id,
                        "Hit limit for retries. dropping all chunks in the buffer queue. chunks={chunks} records={records} error=\"{error}\""
                    );
                    return false;
                }
            }
        }
    }
}

fn flush_loop(s: &Shared) {
    let Some(buffer) = s.buffer.get() else {
        return;
    };
    let clock = Arc::clone(&s.spec.options.clock);
    let burst = s.spec.buffer.flush_thread_burst_interval;
    let idle = s.spec.buffer.flush_thread_interval;
    loop {
        let phase = s.phase();
        if phase == Phase::Stopping {
            return;
        }
        let now = clock.now();
        match buffer.next_ready(now) {
            Ok(Some(lease)) => {
                if s.flush(buffer, lease) {
                    // Written again next, with no retry step to space the attempts out: a
                    // peer that closes at once must not make this spin.
                    s.pause(burst.max(RESEND_PAUSE));
                    continue;
                }
                if phase == Phase::Running && !burst.is_zero() {
                    let m = buffer.metrics();
                    if m.queue_length > 0 && !m.retrying {
                        s.pause(burst);
                    }
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                s.log_error(format!("failed to take a chunk from the buffer: {e}"));
                s.pause(idle.clamp(MIN_PAUSE, MAX_PAUSE));
                continue;
            }
        }
        let next = buffer.next_flush_time(now);
        if let Phase::Draining(deadline) = phase {
            if buffer.is_empty() {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let until_next = next.duration_since(now).unwrap_or_default();
            if left.is_zero() || (buffer.metrics().retrying && until_next > left) {
                return;
            }
        }
        let wait = next
            .duration_since(now)
            .unwrap_or_default()
            .clamp(MIN_PAUSE, idle.clamp(MIN_PAUSE, MAX_PAUSE));
        s.pause(wait);
    }
}

/// The root directory for buffers and backups from `<system> root_dir`.
pub fn root_dir(root: &Element) -> Option<PathBuf> {
    root.children("system")
        .filter_map(|s| attr_str(s, "root_dir"))
        .last()
        .map(PathBuf::from)
}

/// The chunk-key list a plan's flush mode and keys give, for messages: `"tag,time"`.
pub fn describe(cfg: &BufferConfig) -> String {
    let mut keys = Vec::new();
    if cfg.chunk_keys.tag {
        keys.push("tag".to_string());
    }
    if cfg.chunk_keys.time.is_some() {
        keys.push("time".to_string());
    }
    keys.extend(cfg.chunk_keys.keys.iter().map(|k| k.name.clone()));
    let mode = match cfg.flush_mode {
        FlushMode::Lazy => "lazy",
        FlushMode::Interval => "interval",
        FlushMode::Immediate => "immediate",
    };
    let kind = match cfg.buffer_type {
        BufferType::Memory => "memory",
        BufferType::File => "file",
    };
    format!(
        "{kind} buffer, chunk keys [{}], flush_mode {mode}",
        keys.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::sabi_trait::TD_Opaque;
    use abi_stable::std_types::{RBox, RResult, RVec};
    use nagare_plugin_api::Output_TO;
    use std::collections::VecDeque;
    use std::path::Path;

    /// One chunk an output received.
    #[derive(Debug, Clone, PartialEq)]
    struct Seen {
        tag: String,
        id: [u8; 16],
        records: u32,
        vars: Vec<(String, String)>,
        /// Its `ChunkFormat`.
        format: u8,
        /// The ranges of a `FILE_RANGES` chunk (0 for bytes).
        ranges: usize,
        /// The payload as the output read it during `write`.
        payload: Vec<u8>,
    }

    /// What a fake output does: fail the next calls with these kinds, then succeed; write
    /// calls wait while the gate is closed.
    #[derive(Default)]
    struct Script {
        fail: VecDeque<ErrorKind>,
        fail_forever: Option<ErrorKind>,
        closed: bool,
        seen: Vec<Seen>,
        calls: usize,
        /// The answer to `chunk_formats.v1` (`None`: `"ok"`, as to every other op).
        formats: Option<Answer>,
        /// Every `write` call's chunk format, ranges and payload, failed or not.
        attempts: Vec<(u8, usize, Vec<u8>)>,
    }

    /// A `control` answer: msgpack bytes, or an error of this kind.
    type Answer = Result<Vec<u8>, ErrorKind>;

    #[derive(Clone, Default)]
    struct Fake(Arc<(Mutex<Script>, Condvar)>);

    impl Fake {
        fn failing(kinds: &[ErrorKind]) -> Fake {
            let f = Fake::default();
            f.script().fail = kinds.iter().copied().collect();
            f
        }
        fn script(&self) -> MutexGuard<'_, Script> {
            self.0.0.lock().unwrap_or_else(|p| p.into_inner())
        }
        fn gate(&self, open: bool) {
            self.script().closed = !open;
            self.0.1.notify_all();
        }
        fn seen(&self) -> Vec<Seen> {
            self.script().seen.clone()
        }
        fn records(&self) -> u32 {
            self.seen().iter().map(|s| s.records).sum()
        }
        fn boxed(&self) -> OutputBox {
            Output_TO::from_ptr(RBox::new(self.clone()), TD_Opaque)
        }
        /// A fake answering `chunk_formats.v1` with `answer`.
        fn answering(answer: Answer) -> Fake {
            let f = Fake::default();
            f.script().formats = Some(answer);
            f
        }
    }

    /// A `chunk_formats.v1` answer: a msgpack array of these format numbers.
    fn formats(list: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        rmp::encode::write_array_len(&mut out, list.len() as u32).expect("encode");
        for f in list {
            rmp::encode::write_uint(&mut out, *f).expect("encode");
        }
        out
    }

    /// A chunk's payload as an output reads it during `write` (the only time a
    /// `FILE_RANGES` descriptor is valid): its bytes, or its ranges read with positioned
    /// reads through a duplicate of the lent descriptor; and the number of ranges.
    fn payload_of(chunk: &ChunkRef<'_>) -> Result<(usize, Vec<u8>), String> {
        use std::os::unix::fs::FileExt;
        if chunk.format != ChunkFormat::FILE_RANGES {
            return Ok((0, chunk.data.as_slice().to_vec()));
        }
        let d = nagare_core::file_ranges::FileRanges::decode(chunk.data.as_slice())
            .map_err(|e| e.to_string())?;
        // SAFETY: the host keeps the descriptor open for the duration of `write`, which
        // this runs in; it is duplicated, never closed.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(d.fd) };
        let file = std::fs::File::from(fd.try_clone_to_owned().map_err(|e| e.to_string())?);
        let mut out = Vec::new();
        for &(offset, len) in &d.ranges {
            let mut buf = vec![0; usize::try_from(len).map_err(|e| e.to_string())?];
            file.read_exact_at(&mut buf, offset)
                .map_err(|e| format!("range ({offset}, {len}): {e}"))?;
            out.extend_from_slice(&buf);
        }
        Ok((d.ranges.len(), out))
    }

    impl nagare_plugin_api::Output for Fake {
        fn start(&mut self) -> RResult<(), PluginError> {
            RResult::ROk(())
        }
        fn write(&self, chunk: ChunkRef<'_>) -> RResult<(), PluginError> {
            let mut s = self.script();
            while s.closed {
                s = self.0.1.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            s.calls += 1;
            let (ranges, payload) = match payload_of(&chunk) {
                Ok(p) => p,
                Err(e) => {
                    return RResult::RErr(PluginError::new(ErrorKind::UNRECOVERABLE, e));
                }
            };
            s.attempts.push((chunk.format.0, ranges, payload.clone()));
            if let Some(kind) = s.fail.pop_front().or(s.fail_forever) {
                return RResult::RErr(PluginError::new(kind, "scripted failure"));
            }
            s.seen.push(Seen {
                tag: chunk.tag.to_string(),
                id: chunk.chunk_id,
                records: chunk.records,
                vars: chunk
                    .variables
                    .iter()
                    .map(|Tuple2(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                format: chunk.format.0,
                ranges,
                payload,
            });
            RResult::ROk(())
        }
        fn control(&self, op: RStr<'_>, _: RSlice<'_, u8>) -> RResult<RVec<u8>, PluginError> {
            match &self.script().formats {
                Some(Ok(answer)) if op.as_str() == CHUNK_FORMATS_OP => {
                    RResult::ROk(RVec::from(answer.clone()))
                }
                Some(Err(kind)) if op.as_str() == CHUNK_FORMATS_OP => RResult::RErr(
                    PluginError::new(*kind, format!("unknown control op '{op}'")),
                ),
                _ => RResult::ROk(RVec::from(b"ok".to_vec())),
            }
        }
        fn stop(&mut self) -> RResult<(), PluginError> {
            RResult::ROk(())
        }
    }

    fn element(type_name: &str, body: &str) -> Element {
        let text = format!("<match **>\n  @type {type_name}\n{body}\n</match>\n");
        let root = nagare_config::parse_str(&text, Path::new("test.conf")).expect("config parses");
        root.elements.into_iter().next().expect("one element")
    }

    struct Rig {
        runner: BufferedRunner,
        primary: Fake,
        secondary: Option<Fake>,
        rejected: Arc<Mutex<Vec<u32>>>,
    }

    fn rig_in(body: &str, primary: Fake, secondary: Option<Fake>, root: Option<&Path>) -> Rig {
        let plan = plan_buffer("test", &element("test", body), root.is_some()).expect("plan");
        let spec = RunnerSpec {
            plugin_id: "out_test".into(),
            type_name: "test".into(),
            buffer: plan.config,
            options: BufferOptions {
                root_dir: root.map(Path::to_path_buf),
                rng_seed: Some(7),
                ..BufferOptions::default()
            },
        };
        let rejected = Arc::new(Mutex::new(Vec::new()));
        let r = Arc::clone(&rejected);
        let runner = BufferedRunner::new(
            spec,
            primary.boxed(),
            secondary.as_ref().map(|s| SecondaryOutput {
                plugin_id: "out_test.secondary".into(),
                type_name: "test".into(),
                output: s.boxed(),
            }),
            Arc::new(move |b: Batch, _e: &PluginError| {
                r.lock().unwrap_or_else(|p| p.into_inner()).push(b.records)
            }),
        );
        runner.start().expect("start");
        Rig {
            runner,
            primary,
            secondary,
            rejected,
        }
    }

    fn rig(body: &str, primary: Fake) -> Rig {
        rig_in(body, primary, None, None)
    }

    /// `n` entries `{"k": value}`.
    fn batch(n: usize, value: &str) -> Payload {
        Payload::from_host(entries(n, value))
    }

    /// `n` entries `{"k": value}`, as bytes.
    fn entries(n: usize, value: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..n {
            nagare_buffer::msgpack::write::entry(&mut out, 1_700_000_000, &[("k", value)]);
        }
        out
    }

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn metrics(r: &Rig) -> Metrics {
        r.runner.buffer_metrics().expect("started")
    }

    const FAST: &str = "    flush_mode immediate\n    retry_wait 0.01\n    retry_randomize false\n    flush_thread_burst_interval 0";

    fn summary(p: &BufferPlan) -> String {
        let c = &p.config;
        let mut s = format!(
            "{:?} {}",
            p.origin,
            describe(c).replace(", ", " ").replace("flush_mode ", "")
        );
        if c.flush_mode == FlushMode::Interval {
            s.push_str(&format!(" every {}s", c.flush_interval.as_secs_f64()));
        }
        if let Some(tk) = &c.chunk_keys.time {
            s.push_str(&format!(
                " timekey={} wait={} utc={}",
                tk.timekey, tk.timekey_wait, tk.use_utc
            ));
        }
        if let Some(path) = &c.path {
            s.push_str(&format!(" path={}", path.display()));
        }
        s.push_str(&format!(
            " threads={} chunk={} total={} {:?}",
            c.flush_thread_count, c.chunk_limit_size, c.total_limit_size, c.overflow_action
        ));
        if c.retry.forever || c.retry.max_times.is_some() || c.retry.max_interval.is_some() {
            s.push_str(&format!(
                " retry(forever={} max_times={:?} max_interval={:?})",
                c.retry.forever, c.retry.max_times, c.retry.max_interval
            ));
        }
        if !c.flush_at_shutdown {
            s.push_str(" no-flush-at-shutdown");
        }
        if p.tag_added {
            s.push_str(" +tag");
        }
        if !p.consumed.is_empty() {
            s.push_str(&format!(" consumed={}", p.consumed.join(",")));
        }
        s
    }

    fn check_plan(type_name: &str, body: &str, root: bool, expect: &str) {
        let plan = plan_buffer(type_name, &element(type_name, body), root)
            .unwrap_or_else(|e| panic!("{type_name} {body:?}: {e}"));
        assert_eq!(summary(&plan), expect, "{type_name} {body:?}");
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn plans_follow_sections_compat_params_and_type_defaults() {
        let m8 = 8 * MIB;
        let m512 = 512 * MIB;
        let cases: Vec<(&str, &str, bool, String)> = vec![
            ("stdout", "", false, format!("Defaults memory buffer chunk keys [tag] immediate threads=1 chunk={m8} total={m512} ThrowException")),
            ("null", "", false, format!("Defaults memory buffer chunk keys [tag] immediate threads=1 chunk={m8} total={m512} ThrowException")),
            ("counter", "", false, format!("Defaults memory buffer chunk keys [tag] immediate threads=1 chunk={m8} total={m512} ThrowException +tag")),
            ("forward", "", false, format!("Defaults memory buffer chunk keys [tag] interval every 60s threads=1 chunk={m8} total={m512} ThrowException")),
            ("file", "  path /var/log/app", false, format!("Defaults file buffer chunk keys [tag,time] lazy timekey=86400 wait=600 utc=false path=/var/log/app threads=1 chunk={} total={} ThrowException no-flush-at-shutdown +tag", 256 * MIB, 64 * 1024 * MIB)),
            ("file", "  @id f\n  path /var/log/app", true, format!("Defaults file buffer chunk keys [tag,time] lazy timekey=86400 wait=600 utc=false threads=1 chunk={} total={} ThrowException no-flush-at-shutdown +tag", 256 * MIB, 64 * 1024 * MIB)),
            // A section keeps Fluentd's defaults for what it leaves out (no prompt mode).
            ("stdout", "  <buffer>\n  </buffer>", false, format!("Section memory buffer chunk keys [tag] interval every 60s threads=1 chunk={m8} total={m512} ThrowException")),
            ("test", "  <buffer key1>\n    flush_interval 5s\n    overflow_action block\n  </buffer>", false, format!("Section memory buffer chunk keys [tag,key1] interval every 5s threads=1 chunk={m8} total={m512} Block +tag")),
            ("test", "  <buffer time>\n    timekey 1h\n    timekey_use_utc true\n  </buffer>", false, format!("Section memory buffer chunk keys [tag,time] lazy timekey=3600 wait=600 utc=true threads=1 chunk={m8} total={m512} ThrowException +tag")),
            // A flat flush_interval forces interval mode, even beside a section.
            ("test", "  flush_interval 3s\n  <buffer time>\n    timekey 1h\n  </buffer>", false, format!("Section memory buffer chunk keys [tag,time] interval every 60s timekey=3600 wait=600 utc=false threads=1 chunk={m8} total={m512} ThrowException +tag consumed=flush_interval")),
            // v0.12 flat parameters.
            ("forward", "  buffer_type file\n  buffer_path /var/buf/fwd\n  flush_interval 10s\n  num_threads 2\n  buffer_chunk_limit 1m\n  buffer_queue_limit 4\n  buffer_queue_full_action exception\n  retry_limit 5\n  max_retry_wait 30s\n  disable_retry_limit false\n  flush_at_shutdown true", false,
                "Compat file buffer chunk keys [tag] interval every 10s path=/var/buf/fwd threads=2 chunk=1048576 total=4194304 ThrowException retry(forever=false max_times=Some(5) max_interval=Some(30.0)) consumed=buffer_type,buffer_path,num_threads,flush_interval,disable_retry_limit,retry_limit,max_retry_wait,buffer_chunk_limit,buffer_queue_limit,buffer_queue_full_action,flush_at_shutdown".to_string()),
            ("test", "  buffer_queue_full_action drop_oldest_chunk\n  disable_retry_limit true", false, format!("Compat memory buffer chunk keys [tag] interval every 60s threads=1 chunk={m8} total={m512} DropOldestChunk retry(forever=true max_times=None max_interval=None) +tag consumed=disable_retry_limit,buffer_queue_full_action")),
            ("test", "  time_slice_format %Y%m%d%H\n  time_slice_wait 10m\n  utc", false, format!("Compat memory buffer chunk keys [tag,time] lazy timekey=3600 wait=600 utc=true threads=1 chunk={m8} total={m512} ThrowException +tag")),
            ("file", "  path /out/x\n  time_slice_format %Y%m%d%H%M\n  localtime false\n  timezone +0900", false, format!("Compat file buffer chunk keys [tag,time] lazy timekey=60 wait=600 utc=true path=/out/x threads=1 chunk={} total={} ThrowException no-flush-at-shutdown +tag", 256 * MIB, 64 * 1024 * MIB)),
            ("file", "  path /out/y\n  flush_interval 30s", false, format!("Compat file buffer chunk keys [tag,time] interval every 30s timekey=86400 wait=600 utc=false path=/out/y threads=1 chunk={} total={} ThrowException no-flush-at-shutdown +tag consumed=flush_interval", 256 * MIB, 64 * 1024 * MIB)),
        ];
        for (t, body, root, expect) in cases {
            check_plan(t, body, root, &expect);
        }
    }

    #[test]
    fn plan_errors_use_fluentds_messages() {
        for (t, body, expect) in [
            (
                "test",
                "  <buffer time>\n  </buffer>",
                "<buffer ...> argument includes 'time', but timekey is not configured",
            ),
            (
                "test",
                "  time_slice_format %Y",
                "time_slice_format only with %Y or %m is too long",
            ),
            (
                "test",
                "  time_slice_format %d\n  utc\n  localtime",
                "both of utc and localtime are specified, use only one of them",
            ),
            (
                "test",
                "  buffer_queue_full_action explode",
                "valid options are throw_exception,block,drop_oldest_chunk but got explode",
            ),
            (
                "test",
                "  <buffer>\n    @type redis\n  </buffer>",
                "Unknown buffer plugin 'redis'",
            ),
        ] {
            match plan_buffer(t, &element(t, body), false) {
                Ok(p) => panic!("{body:?}: expected an error, got {}", summary(&p)),
                Err(e) => assert!(e.message.contains(expect), "{body:?}: {}", e.message),
            }
        }
        let p = plan_buffer(
            "test",
            &element(
                "test",
                "  <buffer>\n    flush_at_shutdown false\n  </buffer>",
            ),
            false,
        )
        .expect("plan");
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("is not persistent buffer")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn chunks_carry_id_tag_records_and_variables() {
        let r = rig(
            &format!("  <buffer key1>\n{FAST}\n  </buffer>"),
            Fake::default(),
        );
        let mut data = Vec::new();
        for v in ["a", "b", "a"] {
            nagare_buffer::msgpack::write::entry(&mut data, 1_700_000_000, &[("key1", v)]);
        }
        r.runner
            .submit("app.web", &Payload::from_host(data), 3)
            .expect("accepted");
        wait_until("two chunks", || r.primary.seen().len() == 2);
        let mut seen = r.primary.seen();
        seen.sort_by(|a, b| a.vars.cmp(&b.vars));
        assert_eq!(seen[0].tag, "app.web");
        assert_eq!(seen[0].records, 2);
        assert_eq!(seen[0].vars, vec![("key1".to_string(), "a".to_string())]);
        assert_eq!(seen[1].vars, vec![("key1".to_string(), "b".to_string())]);
        assert_ne!(seen[0].id, [0; 16]);
        assert_ne!(seen[0].id, seen[1].id);
        r.runner.shutdown().expect("shutdown");

        // time as a chunk key: "timekey" is the slice start; the tag still splits chunks.
        let r = rig(
            &format!("  <buffer time>\n    timekey 1h\n{FAST}\n  </buffer>"),
            Fake::default(),
        );
        r.runner.submit("a", &batch(1, "x"), 1).expect("accepted");
        r.runner.submit("b", &batch(2, "x"), 2).expect("accepted");
        wait_until("two chunks", || r.primary.seen().len() == 2);
        let mut seen = r.primary.seen();
        seen.sort_by(|a, b| a.tag.cmp(&b.tag));
        let slice = (1_700_000_000 / 3600 * 3600).to_string();
        assert_eq!((seen[0].tag.as_str(), seen[0].records), ("a", 1));
        assert_eq!((seen[1].tag.as_str(), seen[1].records), ("b", 2));
        assert_eq!(seen[1].vars, vec![("timekey".to_string(), slice)]);
        assert_eq!(r.runner.stats().written_events.load(Ordering::Relaxed), 3);
        r.runner.shutdown().expect("shutdown");
    }

    #[test]
    fn retryable_errors_are_retried_then_committed() {
        for kind in [ErrorKind::RETRYABLE, ErrorKind::INTERNAL] {
            let r = rig(
                &format!("  <buffer>\n{FAST}\n  </buffer>"),
                Fake::failing(&[kind, kind]),
            );
            r.runner.submit("t", &batch(3, "v"), 3).expect("accepted");
            wait_until("the chunk written", || r.primary.records() == 3);
            assert_eq!(r.runner.stats().retry_count.load(Ordering::Relaxed), 2);
            let m = metrics(&r);
            assert_eq!(
                (m.commit_count, m.rollback_count, m.retrying),
                (1, 2, false)
            );
            r.runner.shutdown().expect("shutdown");
        }
    }

    #[test]
    fn a_resend_is_written_again_without_a_retry_step() {
        // One retry allowed: three counted failures would drop the chunk.
        let r = rig(
            &format!("  <buffer>\n{FAST}\n    retry_max_times 1\n  </buffer>"),
            Fake::failing(&[ErrorKind::RESEND, ErrorKind::RESEND, ErrorKind::RESEND]),
        );
        r.runner.submit("t", &batch(3, "v"), 3).expect("accepted");
        wait_until("the chunk written", || r.primary.records() == 3);
        assert_eq!(r.runner.stats().retry_count.load(Ordering::Relaxed), 0);
        let m = metrics(&r);
        assert_eq!(
            (m.commit_count, m.rollback_count, m.retry_count, m.retrying),
            (1, 3, 0, false)
        );
        r.runner.shutdown().expect("shutdown");
    }

    #[test]
    fn an_error_kind_this_host_does_not_know_is_retried() {
        let sec = Fake::default();
        let r = rig_in(
            &format!("  <buffer>\n{FAST}\n  </buffer>"),
            Fake::failing(&[ErrorKind(200)]),
            Some(sec.clone()),
            None,
        );
        r.runner.submit("t", &batch(2, "v"), 2).expect("accepted");
        wait_until("the chunk written", || r.primary.records() == 2);
        assert_eq!(r.runner.stats().retry_count.load(Ordering::Relaxed), 1);
        assert_eq!(sec.records(), 0, "not given up to the secondary");
        r.runner.shutdown().expect("shutdown");
    }

    #[test]
    fn unrecoverable_errors_and_panics_go_to_the_secondary() {
        for kind in [
            ErrorKind::UNRECOVERABLE,
            ErrorKind::PANIC,
            ErrorKind::CONFIG,
        ] {
            let sec = Fake::default();
            let r = rig_in(
                &format!("  <buffer>\n{FAST}\n  </buffer>"),
                Fake::failing(&[kind]),
                Some(sec),
                None,
            );
            r.runner.submit("t", &batch(2, "v"), 2).expect("accepted");
            let s = r.secondary.clone().expect("secondary");
            wait_until("the secondary write", || s.records() == 2);
            assert_eq!(r.primary.records(), 0);
            assert_eq!(s.seen()[0].tag, "t");
            assert_eq!(
                r.runner
                    .stats()
                    .secondary_write_count
                    .load(Ordering::Relaxed),
                1
            );
            r.runner.shutdown().expect("shutdown");
        }
    }

    #[test]
    fn unrecoverable_errors_without_secondary_are_backed_up() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = rig_in(
            &format!("  <buffer>\n{FAST}\n  </buffer>"),
            Fake::failing(&[ErrorKind::UNRECOVERABLE]),
            None,
            Some(root.path()),
        );
        r.runner.submit("t", &batch(2, "v"), 2).expect("accepted");
        // The runner counts the events after the buffer's rollback returns: wait for both.
        wait_until("the backup", || {
            metrics(&r).backup_count == 1
                && r.runner.stats().error_events.load(Ordering::Relaxed) == 2
        });
        let dir = root.path().join("backup/worker0/out_test");
        let files: Vec<_> = std::fs::read_dir(&dir).expect("backup dir").collect();
        assert_eq!(files.len(), 1);
        r.runner.shutdown().expect("shutdown");
    }

    #[test]
    fn the_retry_limit_drops_the_queue() {
        let f = Fake::default();
        f.script().fail_forever = Some(ErrorKind::RETRYABLE);
        let r = rig(
            &format!("  <buffer>\n{FAST}\n    retry_max_times 1\n  </buffer>"),
            f,
        );
        r.runner.submit("t", &batch(4, "v"), 4).expect("accepted");
        wait_until("the drop", || {
            metrics(&r).retry_limit_dropped_chunks == 1
                && r.runner.stats().error_events.load(Ordering::Relaxed) == 4
        });
        assert!(!metrics(&r).retrying);
        r.runner.shutdown().expect("shutdown");
    }

    #[test]
    fn throw_exception_refuses_with_a_retryable_error() {
        let f = Fake::default();
        f.gate(false);
        let r = rig(
            &format!(
                "  <buffer>\n{FAST}\n    total_limit_size 100\n    chunk_limit_size 50\n  </buffer>"
            ),
            f,
        );
        let mut accepted = 0;
        let err = loop {
            match r.runner.submit("t", &batch(1, "0123456789"), 1) {
                Ok(()) => accepted += 1,
                Err(e) => break e,
            }
            assert!(accepted < 100, "never refused");
        };
        assert!(matches!(err, SubmitError::Overflow { .. }), "{err:?}");
        assert_eq!(err.to_plugin_error().kind, ErrorKind::RETRYABLE);
        assert!(r.runner.is_full());
        assert!(
            !r.runner.would_wait(),
            "throw_exception refuses at once: nothing to wait out"
        );
        assert!(matches!(
            r.runner.try_submit("t", &batch(1, "x"), 1),
            Err(SubmitError::WouldBlock { .. })
        ));
        r.primary.gate(true);
        r.runner.shutdown().expect("shutdown");
        assert_eq!(r.primary.records(), accepted);
    }

    #[test]
    fn block_waits_for_space() {
        let f = Fake::default();
        f.gate(false);
        let r = rig(
            &format!(
                "  <buffer>\n{FAST}\n    total_limit_size 60\n    overflow_action block\n  </buffer>"
            ),
            f,
        );
        r.runner
            .submit("t", &batch(3, "0123456789"), 3)
            .expect("accepted");
        assert!(r.runner.is_full());
        assert!(r.runner.would_wait());
        assert!(matches!(
            r.runner.try_submit("t", &batch(1, "x"), 1),
            Err(SubmitError::WouldBlock { .. })
        ));
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|sc| {
            sc.spawn(|| {
                r.runner
                    .submit("t", &batch(1, "x"), 1)
                    .expect("accepted after waiting");
                done.store(true, Ordering::SeqCst);
            });
            wait_until("a blocked writer", || metrics(&r).blocked_writers == 1);
            assert!(
                !done.load(Ordering::SeqCst),
                "submit must wait while the buffer is full"
            );
            r.primary.gate(true);
        });
        assert!(done.load(Ordering::SeqCst));
        wait_until("room after the flush", || !r.runner.would_wait());
        r.runner.shutdown().expect("shutdown");
        assert_eq!(r.primary.records(), 4);
    }

    #[test]
    fn drop_oldest_chunk_makes_room() {
        let f = Fake::default();
        f.gate(false);
        let r = rig(
            &format!(
                "  <buffer>\n{FAST}\n    total_limit_size 100\n    overflow_action drop_oldest_chunk\n  </buffer>"
            ),
            f,
        );
        for _ in 0..10 {
            r.runner
                .submit("t", &batch(1, "0123456789"), 1)
                .expect("accepted");
        }
        assert!(metrics(&r).drop_oldest_chunk_count > 0);
        assert!(!r.runner.is_full());
        r.primary.gate(true);
        r.runner.shutdown().expect("shutdown");
    }

    #[test]
    fn flush_at_shutdown_writes_staged_chunks_of_a_memory_buffer() {
        let r = rig(
            "  <buffer>\n    flush_interval 1h\n  </buffer>",
            Fake::default(),
        );
        r.runner.submit("t", &batch(5, "v"), 5).expect("accepted");
        assert_eq!(r.primary.records(), 0);
        r.runner.shutdown().expect("shutdown");
        assert_eq!(r.primary.records(), 5);

        let r = rig(
            "  <buffer>\n    flush_interval 1h\n    flush_at_shutdown false\n  </buffer>",
            Fake::default(),
        );
        r.runner.submit("t", &batch(5, "v"), 5).expect("accepted");
        r.runner.shutdown().expect("shutdown");
        assert_eq!(
            r.primary.records(),
            0,
            "flush_at_shutdown false keeps (and loses) them"
        );
    }

    #[test]
    fn a_file_buffer_resumes_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("buf");
        let conf = |interval: &str| {
            format!(
                "  <buffer tag>\n    @type file\n    path {}\n    flush_interval {interval}\n  </buffer>",
                path.display()
            )
        };
        let r = rig(&conf("1h"), Fake::default());
        r.runner.submit("app", &batch(3, "v"), 3).expect("accepted");
        r.runner
            .submit("other", &batch(2, "v"), 2)
            .expect("accepted");
        r.runner.shutdown().expect("shutdown");
        assert_eq!(
            r.primary.records(),
            0,
            "a file buffer does not flush at shutdown"
        );

        let r = rig(&conf("0"), Fake::default());
        wait_until("the resumed chunks", || r.primary.records() == 5);
        let mut tags: Vec<String> = r.primary.seen().into_iter().map(|s| s.tag).collect();
        tags.sort();
        assert_eq!(tags, ["app", "other"]);
        r.runner.shutdown().expect("shutdown");
        let left = std::fs::read_dir(&path).expect("dir").count();
        assert_eq!(left, 0, "committed chunk files are removed");
    }

    #[test]
    fn oversized_records_go_to_the_error_handler_and_the_rest_is_kept() {
        let r = rig(
            &format!("  <buffer>\n{FAST}\n    chunk_limit_size 64\n  </buffer>"),
            Fake::default(),
        );
        let mut data = Vec::new();
        nagare_buffer::msgpack::write::entry(&mut data, 1, &[("k", "small")]);
        nagare_buffer::msgpack::write::entry(&mut data, 1, &[("k", &"x".repeat(100))]);
        nagare_buffer::msgpack::write::entry(&mut data, 1, &[("k", "small")]);
        r.runner
            .submit("t", &Payload::from_host(data), 3)
            .expect("accepted");
        wait_until("the kept records", || r.primary.records() == 2);
        assert_eq!(
            *r.rejected.lock().unwrap_or_else(|p| p.into_inner()),
            vec![1]
        );
        assert_eq!(r.runner.stats().error_events.load(Ordering::Relaxed), 1);
        r.runner.shutdown().expect("shutdown");
    }

    #[test]
    fn submits_outside_the_running_window_are_refused() {
        let plan = plan_buffer("test", &element("test", ""), false).expect("plan");
        let runner = BufferedRunner::new(
            RunnerSpec {
                plugin_id: "x".into(),
                type_name: "test".into(),
                buffer: plan.config,
                options: BufferOptions::default(),
            },
            Fake::default().boxed(),
            None,
            Arc::new(|_: Batch, _: &PluginError| {}),
        );
        let e = runner
            .submit("t", &batch(1, "v"), 1)
            .expect_err("not started");
        assert!(matches!(e, SubmitError::Closed { .. }), "{e:?}");
        runner.start().expect("start");
        assert_eq!(runner.control("stats.v1", &[]).expect("control"), b"ok");
        runner.shutdown().expect("shutdown");
        let e = runner.submit("t", &batch(1, "v"), 1).expect_err("stopped");
        assert!(matches!(e, SubmitError::Closed { .. }), "{e:?}");
        assert_eq!(e.to_plugin_error().kind, ErrorKind::RETRYABLE);
        let bad = runner.buffer_metrics().map(|m| m.write_count);
        assert_eq!(bad, Some(0));
    }

    #[test]
    fn invalid_bytes_are_unrecoverable() {
        let r = rig("", Fake::default());
        let e = r
            .runner
            .submit("t", &Payload::from_host(vec![0xc1, 0x00]), 1)
            .expect_err("invalid");
        assert!(matches!(e, SubmitError::Invalid { .. }), "{e:?}");
        assert_eq!(e.to_plugin_error().kind, ErrorKind::UNRECOVERABLE);
        r.runner.shutdown().expect("shutdown");
    }

    #[test]
    fn several_flush_threads_share_the_queue() {
        let r = rig(
            &format!("  <buffer>\n{FAST}\n    flush_thread_count 4\n  </buffer>"),
            Fake::default(),
        );
        for i in 0..40 {
            r.runner
                .submit(&format!("t{}", i % 7), &batch(2, "v"), 2)
                .expect("accepted");
        }
        r.runner.shutdown().expect("shutdown");
        assert_eq!(r.primary.records(), 80);
        let mut ids: Vec<[u8; 16]> = r.primary.seen().iter().map(|s| s.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(
            ids.len(),
            r.primary.seen().len(),
            "each chunk is written once"
        );
    }

    #[test]
    fn helpers_render_fluentd_shapes() {
        let e = PluginError {
            kind: ErrorKind::RETRYABLE,
            retry_after_ms: 1500,
            message: "x".into(),
        };
        assert_eq!(
            failure_of(&e),
            Failure::Retryable {
                retry_after: Some(Duration::from_millis(1500))
            }
        );
        assert_eq!(
            failure_of(&PluginError::new(ErrorKind(42), "?")),
            Failure::Retryable { retry_after: None },
            "a kind from a newer plugin never gives a chunk up"
        );
        assert_eq!(
            failure_of(&PluginError::new(ErrorKind::RESEND, "no ack")),
            Failure::Resend
        );
        let t = fmt_time(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(t.len(), "2023-11-14 22:13:20 +0000".len(), "{t}");
        let root = nagare_config::parse_str(
            "<system>\n  root_dir /var/lib/nagare\n</system>\n",
            Path::new("t.conf"),
        )
        .expect("parses");
        assert_eq!(root_dir(&root), Some(PathBuf::from("/var/lib/nagare")));
    }

    fn slot(output: &Fake) -> Slot {
        Slot {
            plugin_id: "out_test".into(),
            type_name: "test".into(),
            output: RwLock::new(output.boxed()),
        }
    }

    #[test]
    fn takes_file_ranges_when_the_answer_lists_format_2() {
        let cases: [(&str, Option<Answer>, bool); 10] = [
            ("[0, 1, 2]", Some(Ok(formats(&[0, 1, 2]))), true),
            ("[2]", Some(Ok(formats(&[2]))), true),
            ("[0, 1]", Some(Ok(formats(&[0, 1]))), false),
            ("[]", Some(Ok(formats(&[]))), false),
            ("[3, 300]", Some(Ok(formats(&[3, 300]))), false),
            ("an INTERNAL error", Some(Err(ErrorKind::INTERNAL)), false),
            ("\"ok\" (not msgpack)", None, false),
            ("nil", Some(Ok(vec![0xc0])), false),
            // [0, "x", 2]: anything but integers is refused whole
            (
                "[0, \"x\", 2]",
                Some(Ok(vec![0x93, 0, 0xa1, b'x', 2])),
                false,
            ),
            // an array of 3 holding 2
            ("a short array", Some(Ok(vec![0x93, 0, 2])), false),
        ];
        for (what, answer, expect) in cases {
            let f = Fake::default();
            f.script().formats = answer;
            assert_eq!(takes_file_ranges(&slot(&f)), expect, "{what}");
        }
    }

    /// A file buffer's chunks reach an output that lists `ChunkFormat::FILE_RANGES` in its
    /// answer to `chunk_formats.v1` as descriptors of ranges of the chunk file, one per
    /// batch, whose bytes (read during `write`) are the batches submitted; any other answer
    /// gets the same bytes as a msgpack stream.
    #[test]
    fn a_file_buffer_sends_ranges_only_to_an_output_that_asks_for_them() {
        let cases = [
            ("[0, 1, 2]", Fake::answering(Ok(formats(&[0, 1, 2]))), true),
            ("[0, 1]", Fake::answering(Ok(formats(&[0, 1]))), false),
            ("an error", Fake::answering(Err(ErrorKind::INTERNAL)), false),
            ("garbage", Fake::default(), false),
        ];
        for (what, fake, ranged) in cases {
            let dir = tempfile::tempdir().expect("tempdir");
            let body = format!(
                "  <buffer tag>\n    @type file\n    path {}\n    flush_mode interval\n    flush_interval 1h\n    flush_at_shutdown true\n  </buffer>",
                dir.path().join("buf").display()
            );
            let r = rig(&body, fake);
            let mut app = Vec::new();
            for (n, v) in [(1, "a"), (3, "bb"), (2, "ccc")] {
                let b = entries(n, v);
                app.extend_from_slice(&b);
                r.runner
                    .submit("app", &Payload::from_host(b), n as u32)
                    .expect("accepted");
            }
            let web = entries(4, "w");
            r.runner
                .submit("web", &Payload::from_host(web.clone()), 4)
                .expect("accepted");
            // The chunks stay staged (1h) until the shutdown flushes them.
            r.runner.shutdown().expect("shutdown");
            let mut seen = r.primary.seen();
            seen.sort_by(|a, b| a.tag.cmp(&b.tag));
            let got: Vec<(&str, u8, usize, u32)> = seen
                .iter()
                .map(|s| (s.tag.as_str(), s.format, s.ranges, s.records))
                .collect();
            let expect = if ranged {
                [("app", 2, 3, 6), ("web", 2, 1, 4)]
            } else {
                [("app", 0, 0, 6), ("web", 0, 0, 4)]
            };
            assert_eq!(got, expect, "{what}");
            assert_eq!(seen[0].payload, app, "{what}");
            assert_eq!(seen[1].payload, web, "{what}");
        }
    }

    /// A ranged chunk the primary fails to write, first retryably then unrecoverably, is
    /// sent to the primary as ranges again, then to the secondary as bytes.
    #[test]
    fn a_ranged_chunk_reaches_the_secondary_as_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = format!(
            "  <buffer tag>\n    @type file\n    path {}\n{FAST}\n  </buffer>",
            dir.path().join("buf").display()
        );
        let primary = Fake::answering(Ok(formats(&[0, 1, 2])));
        primary.script().fail = [ErrorKind::RETRYABLE, ErrorKind::UNRECOVERABLE].into();
        let r = rig_in(&body, primary, Some(Fake::default()), None);
        let data = entries(3, "v");
        r.runner
            .submit("t", &Payload::from_host(data.clone()), 3)
            .expect("accepted");
        let s = r.secondary.clone().expect("secondary");
        wait_until("the secondary write", || s.records() == 3);
        r.runner.shutdown().expect("shutdown");
        assert_eq!(
            r.primary.script().attempts,
            [(2, 1, data.clone()), (2, 1, data.clone())],
            "the primary gets ranges on each try"
        );
        let seen = s.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].format, seen[0].ranges), (0, 0));
        assert_eq!(seen[0].payload, data);
    }
}
