//! `<buffer CHUNK_KEYS>` configuration: Fluentd's parameters, defaults, conflicts and
//! messages (`output.rb` `config_section :buffer`, `buffer.rb`, `buf_file.rb`).

use std::path::PathBuf;
use std::time::Duration;

use chrono::{FixedOffset, Local, Offset};

use crate::values::{parse_bool, parse_float, parse_integer, parse_size, parse_time};

/// A configuration error; the message names the parameter and matches Fluentd's wording
/// where Fluentd has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("<buffer> configuration error: {message}")]
pub struct ConfigError {
    /// The parameter at fault, when there is one.
    pub param: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn new(message: impl Into<String>) -> ConfigError {
        ConfigError {
            param: None,
            message: message.into(),
        }
    }
    fn param(param: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            param: Some(param.to_string()),
            message: message.into(),
        }
    }
}

/// Which storage backs the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferType {
    /// `@type memory`: chunks live in memory only.
    Memory,
    /// `@type file`: one framed, checksummed file per chunk, resumed at start.
    File,
}

/// When staged chunks are moved to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    /// Only full chunks, and (with `time`) chunks whose `timekey + timekey_wait` has passed.
    Lazy,
    /// Every `flush_interval` after a chunk was created (and full chunks).
    Interval,
    /// Every write is enqueued at once.
    Immediate,
}

/// What `write` does when `total_limit_size` is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowAction {
    /// Fail the write ([`crate::BufferError::Overflow`]); the caller keeps the data.
    ThrowException,
    /// Wait until there is space (or the buffer closes, or the block timeout passes).
    Block,
    /// Purge the oldest queued chunks to make space, counting them.
    DropOldestChunk,
}

/// The retry back-off shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryType {
    /// `wait × base^(steps-1)`, capped by `retry_max_interval`.
    ExponentialBackoff,
    /// Always `wait`.
    Periodic,
}

/// When file-buffer data is fsynced (nagare's own parameter `fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Default: data is fsynced before `write` returns `Ok`, and before a chunk is queued;
    /// the directory is fsynced after a chunk file is created or renamed.
    Always,
    /// Data is fsynced only when a chunk is queued (a crash may lose acked staged data).
    OnEnqueue,
    /// Never fsync (Fluentd's behaviour: write-through to the OS only).
    Never,
}

/// A record key used as a chunk key: a top-level key (`key`) or a nested path (`$.a.b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKey {
    /// The key as written in the config (`$.a.b`); also its placeholder name.
    pub name: String,
    /// The path of map keys to follow in the record.
    pub path: Vec<String>,
}

/// The zone time slices align to: a fixed offset, or an IANA zone (`Asia/Tokyo`) whose
/// offset is the one in force at each event's time, daylight saving included (Fluentd's
/// `Fluent::Timezone.utc_offset`, a proc for named zones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimekeyZone {
    /// `+0900`, `-05:30`, `UTC`.
    Fixed(FixedOffset),
    /// A zone read from the system's zoneinfo.
    Named(std::sync::Arc<NamedZone>),
}

/// An IANA zone read from the system's zoneinfo (`/usr/share/zoneinfo`).
#[derive(Debug)]
pub struct NamedZone {
    name: String,
    tz: tz::TimeZone,
}

impl PartialEq for NamedZone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for NamedZone {}

impl NamedZone {
    /// The zone's name as written.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl TimekeyZone {
    /// UTC.
    pub fn utc() -> TimekeyZone {
        TimekeyZone::Fixed(FixedOffset::east_opt(0).unwrap_or_else(|| Local::now().offset().fix()))
    }

    /// The offset in force at `unix` (seconds since the epoch).
    pub fn offset_at(&self, unix: i64) -> FixedOffset {
        match self {
            TimekeyZone::Fixed(f) => *f,
            TimekeyZone::Named(z) => {
                z.tz.find_local_time_type(unix)
                    .ok()
                    .and_then(|t| FixedOffset::east_opt(t.ut_offset()))
                    .unwrap_or_else(|| TimekeyZone::utc().offset_at(0))
            }
        }
    }
}

/// Time chunking: `timekey` and its companions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeKey {
    /// The time slice width in seconds (`timekey`), at least 1.
    pub timekey: u64,
    /// Seconds to wait after a slice ends before flushing it (`timekey_wait`, 600).
    pub timekey_wait: u64,
    /// The zone that slices align to and that strftime placeholders render in
    /// (`timekey_zone`, or UTC when `timekey_use_utc`).
    pub zone: TimekeyZone,
    /// `timekey_use_utc`: slices align to UTC.
    pub use_utc: bool,
}

impl TimeKey {
    /// The timekey (slice start, epoch seconds) of an event at `time` seconds, as
    /// Fluentd's `calculate_timekey`.
    pub fn timekey_of(&self, time: i64) -> i64 {
        let tk = i64::try_from(self.timekey).unwrap_or(i64::MAX).max(1);
        if self.use_utc {
            time - time.rem_euclid(tk)
        } else {
            let offset = i64::from(self.zone.offset_at(time).local_minus_utc());
            time - (time + offset).rem_euclid(tk)
        }
    }
}

/// The chunk keys of `<buffer ARG>`: `tag`, `time` and record keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChunkKeys {
    /// `tag` is a chunk key.
    pub tag: bool,
    /// `time` is a chunk key, with its timekey settings.
    pub time: Option<TimeKey>,
    /// Record keys, in configured order (Fluentd's `@chunk_keys`).
    pub keys: Vec<RecordKey>,
}

impl ChunkKeys {
    /// True when chunking needs only the tag (no record is looked into).
    pub fn is_simple(&self) -> bool {
        self.time.is_none() && self.keys.is_empty()
    }
}

/// Retry settings (`retry_*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// `retry_type`.
    pub retry_type: RetryType,
    /// `retry_wait` in seconds (1).
    pub wait: f64,
    /// `retry_exponential_backoff_base` (2).
    pub backoff_base: f64,
    /// `retry_max_interval` in seconds.
    pub max_interval: Option<f64>,
    /// `retry_timeout` in seconds (72h).
    pub timeout: f64,
    /// `retry_max_times`.
    pub max_times: Option<u64>,
    /// `retry_forever`.
    pub forever: bool,
    /// `retry_randomize` (true).
    pub randomize: bool,
    /// The randomize width (Fluentd's fixed 0.125).
    pub randomize_width: f64,
    /// `retry_secondary_threshold` (0.8).
    pub secondary_threshold: f64,
}

impl Default for RetryConfig {
    fn default() -> RetryConfig {
        RetryConfig {
            retry_type: RetryType::ExponentialBackoff,
            wait: 1.0,
            backoff_base: 2.0,
            max_interval: None,
            timeout: 72.0 * 3600.0,
            max_times: None,
            forever: false,
            randomize: true,
            randomize_width: 0.125,
            secondary_threshold: 0.8,
        }
    }
}

/// The resolved `<buffer>` section.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferConfig {
    /// `@type`.
    pub buffer_type: BufferType,
    /// `path` (file buffers): a directory, or a `prefix.*.suffix` file pattern.
    pub path: Option<PathBuf>,
    /// `path_suffix` (`.log`).
    pub path_suffix: String,
    /// The chunk keys from the section argument.
    pub chunk_keys: ChunkKeys,
    /// `chunk_limit_size` in bytes (8 MiB memory / 256 MiB file).
    pub chunk_limit_size: u64,
    /// `chunk_limit_records`.
    pub chunk_limit_records: Option<u64>,
    /// `chunk_full_threshold` (0.95).
    pub chunk_full_threshold: f64,
    /// `total_limit_size` in bytes (512 MiB memory / 64 GiB file), after `queue_limit_length`.
    pub total_limit_size: u64,
    /// `queue_limit_length` (legacy; sets total = chunk × length).
    pub queue_limit_length: Option<u64>,
    /// `queued_chunks_limit_size` (defaults to `flush_thread_count`).
    pub queued_chunks_limit_size: usize,
    /// The effective flush mode (`default` resolved).
    pub flush_mode: FlushMode,
    /// `flush_interval` (60s).
    pub flush_interval: Duration,
    /// `flush_thread_count` (1).
    pub flush_thread_count: usize,
    /// `flush_thread_interval` (1s): how often an idle flush thread looks again.
    pub flush_thread_interval: Duration,
    /// `flush_thread_burst_interval` (1s): pause between flushes while chunks are queued.
    pub flush_thread_burst_interval: Duration,
    /// `delayed_commit_timeout` (60s). Parsed and checked as Fluentd does, with a warning when
    /// set: no nagare output commits late (see the warning), so nothing reads it.
    pub delayed_commit_timeout: Duration,
    /// `flush_at_shutdown` (true for memory, false for file).
    pub flush_at_shutdown: bool,
    /// `overflow_action`.
    pub overflow_action: OverflowAction,
    /// `retry_*`.
    pub retry: RetryConfig,
    /// `disable_chunk_backup`.
    pub disable_chunk_backup: bool,
    /// `fsync` (nagare): `always` (default), `enqueue`, `never`.
    pub fsync: FsyncPolicy,
    /// Warnings Fluentd would log at configure time; the caller logs them.
    pub warnings: Vec<String>,
}

const MIB: u64 = 1024 * 1024;

/// Known parameter names; anything else gets Fluentd's "not used" warning.
const KNOWN: &[&str] = &[
    "@type",
    "type",
    "path",
    "path_suffix",
    "timekey",
    "timekey_wait",
    "timekey_use_utc",
    "timekey_zone",
    "chunk_limit_size",
    "chunk_limit_records",
    "chunk_full_threshold",
    "total_limit_size",
    "queue_limit_length",
    "queued_chunks_limit_size",
    "compress",
    "flush_mode",
    "flush_interval",
    "flush_thread_count",
    "flush_thread_interval",
    "flush_thread_burst_interval",
    "delayed_commit_timeout",
    "flush_at_shutdown",
    "overflow_action",
    "retry_forever",
    "retry_timeout",
    "retry_max_times",
    "retry_secondary_threshold",
    "retry_type",
    "retry_wait",
    "retry_exponential_backoff_base",
    "retry_max_interval",
    "retry_randomize",
    "disable_chunk_backup",
    "fsync",
    "@id",
    "@log_level",
];

struct Params<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Params<'a> {
    /// The last value of `key` (a later duplicate wins, as in Fluentd).
    fn get(&self, key: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }
    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
    fn typed<T>(
        &self,
        key: &str,
        f: fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => f(v)
                .map(Some)
                .map_err(|e| ConfigError::param(key, format!("'{key}': {e}"))),
        }
    }
    fn enum_value<T: Copy>(
        &self,
        key: &str,
        options: &[(&str, T)],
    ) -> Result<Option<T>, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let v = v.trim();
        options
            .iter()
            .find(|(name, _)| *name == v)
            .map(|(_, t)| Some(*t))
            .ok_or_else(|| {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                ConfigError::param(
                    key,
                    format!("'{key}': valid options are {} but got {v}", names.join(",")),
                )
            })
    }
}

fn non_negative_secs(key: &str, v: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(v).map_err(|_| {
        ConfigError::param(key, format!("'{key}' must be a non-negative time, got {v}"))
    })
}

/// Parses a `timekey_zone`: `+HHMM`, `+HH:MM`, `+HH`, `UTC`/`GMT`/`Z`, or an IANA zone name
/// (`Asia/Tokyo`) from the system's zoneinfo.
pub fn parse_zone(s: &str) -> Result<TimekeyZone, String> {
    let s = s.trim();
    if s.contains('/') {
        // Only names under the zoneinfo directory: no paths, no POSIX rule strings.
        if s.starts_with('/') || s.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
            return Err(format!("invalid timezone '{s}'"));
        }
        return tz::TimeZone::from_posix_tz(&format!(":{s}"))
            .map(|tz| {
                TimekeyZone::Named(std::sync::Arc::new(NamedZone {
                    name: s.to_string(),
                    tz,
                }))
            })
            .map_err(|e| {
                format!(
                    "unknown timezone '{s}' ({e}): give a name from the system's zoneinfo (/usr/share/zoneinfo, Debian's tzdata) or a fixed offset such as +0900"
                )
            });
    }
    parse_offset(s).map(TimekeyZone::Fixed)
}

/// `+HHMM`, `+HH:MM`, `+HH`, `UTC`/`GMT`/`Z`.
fn parse_offset(s: &str) -> Result<FixedOffset, String> {
    if matches!(s, "UTC" | "GMT" | "Z" | "Etc/UTC" | "utc") {
        return FixedOffset::east_opt(0).ok_or_else(|| "bad zone".to_string());
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, s.get(1..).unwrap_or("")),
        Some(b'-') => (-1, s.get(1..).unwrap_or("")),
        _ => {
            return Err(format!(
                "unsupported timezone '{s}': give a fixed offset such as +0900, +09:00 or UTC, or a zone name such as Asia/Tokyo"
            ));
        }
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !(digits.len() == 2 || digits.len() == 4) {
        return Err(format!("invalid timezone offset '{s}'"));
    }
    let hh: i32 = digits
        .get(0..2)
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| format!("invalid timezone offset '{s}'"))?;
    let mm: i32 = digits
        .get(2..4)
        .map_or(Some(0), |d| d.parse().ok())
        .ok_or_else(|| format!("invalid timezone offset '{s}'"))?;
    if hh > 23 || mm > 59 {
        return Err(format!("invalid timezone offset '{s}'"));
    }
    FixedOffset::east_opt(sign * (hh * 3600 + mm * 60))
        .ok_or_else(|| format!("invalid timezone offset '{s}'"))
}

fn parse_chunk_keys(arg: &str) -> Result<(bool, bool, Vec<RecordKey>), ConfigError> {
    let mut tag = false;
    let mut time = false;
    let mut keys: Vec<RecordKey> = Vec::new();
    for raw in arg.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        match raw {
            "tag" => tag = true,
            "time" => time = true,
            _ => {
                let key = parse_record_key(raw)?;
                if !keys.iter().any(|k| k.name == key.name) {
                    keys.push(key);
                }
            }
        }
    }
    Ok((tag, time, keys))
}

fn valid_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')
}

fn parse_record_key(raw: &str) -> Result<RecordKey, ConfigError> {
    if raw.starts_with("$[") {
        return Err(ConfigError::new(
            "in chunk_keys: bracket notation is not allowed",
        ));
    }
    if let Some(rest) = raw.strip_prefix("$.") {
        let path: Vec<String> = rest.split('.').map(str::to_string).collect();
        if path
            .iter()
            .any(|p| p.is_empty() || !p.chars().all(|c| valid_key_char(c) && c != '.'))
        {
            return Err(ConfigError::new(format!(
                "in chunk_keys: invalid record accessor '{raw}' (use $.key1.key2)"
            )));
        }
        return Ok(RecordKey {
            name: raw.to_string(),
            path,
        });
    }
    if raw.chars().all(valid_key_char) {
        Ok(RecordKey {
            name: raw.to_string(),
            path: vec![raw.to_string()],
        })
    } else {
        Err(ConfigError::new(
            "chunk_keys specification includes invalid char",
        ))
    }
}

impl BufferConfig {
    /// Builds the configuration from a `<buffer ARG>` section: `arg` is the chunk-key
    /// list (`"tag,time,$.a.b"`), `params` its `key value` pairs as strings.
    pub fn from_params<I, K, V>(arg: &str, params: I) -> Result<BufferConfig, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let owned: Vec<(String, String)> = params
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
            .collect();
        let p = Params {
            pairs: owned
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        };
        let mut warnings = Vec::new();

        for (k, _) in &p.pairs {
            if !KNOWN.contains(k) {
                warnings.push(format!("parameter '{k}' in <buffer {arg}> is not used."));
            }
        }

        let buffer_type = match p.get("@type").or_else(|| p.get("type")).map(str::trim) {
            None | Some("memory") => BufferType::Memory,
            Some("file") => BufferType::File,
            Some(other) => {
                return Err(ConfigError::param(
                    "@type",
                    format!("Unknown buffer plugin '{other}' (nagare supports memory and file)"),
                ));
            }
        };
        let persistent = buffer_type == BufferType::File;

        let (tag, time, keys) = parse_chunk_keys(arg)?;
        let timekey = p.typed("timekey", parse_time)?;
        let time_key = if time {
            let Some(tk) = timekey else {
                return Err(ConfigError::param(
                    "timekey",
                    "<buffer ...> argument includes 'time', but timekey is not configured",
                ));
            };
            if tk.is_nan() || tk < 1.0 {
                return Err(ConfigError::param(
                    "timekey",
                    format!("timekey should be greater than 0. current timekey: {tk}"),
                ));
            }
            let timekey_wait = p.typed("timekey_wait", parse_time)?.unwrap_or(600.0);
            if timekey_wait < 0.0 {
                return Err(ConfigError::param(
                    "timekey_wait",
                    "'timekey_wait' must not be negative",
                ));
            }
            let use_utc = p.typed("timekey_use_utc", parse_bool)?.unwrap_or(false);
            let zone = match p.get("timekey_zone") {
                Some(z) => parse_zone(z).map_err(|e| {
                    ConfigError::param("timekey_zone", format!("'timekey_zone': {e}"))
                })?,
                None => TimekeyZone::Fixed(Local::now().offset().fix()),
            };
            let zone = if use_utc { TimekeyZone::utc() } else { zone };
            Some(TimeKey {
                timekey: tk as u64,
                timekey_wait: timekey_wait as u64,
                zone,
                use_utc,
            })
        } else {
            None
        };
        let chunk_keys = ChunkKeys {
            tag,
            time: time_key,
            keys,
        };

        let chunk_limit_size = p
            .typed("chunk_limit_size", parse_size)?
            .unwrap_or(if persistent { 256 * MIB } else { 8 * MIB });
        if chunk_limit_size == 0 {
            return Err(ConfigError::param(
                "chunk_limit_size",
                "'chunk_limit_size' must be greater than 0",
            ));
        }
        let chunk_limit_records = match p.typed("chunk_limit_records", parse_integer)? {
            Some(n) if n <= 0 => {
                return Err(ConfigError::param(
                    "chunk_limit_records",
                    "'chunk_limit_records' must be greater than 0",
                ));
            }
            Some(n) => Some(n as u64),
            None => None,
        };
        let chunk_full_threshold = p
            .typed("chunk_full_threshold", parse_float)?
            .unwrap_or(0.95);
        if !(chunk_full_threshold > 0.0 && chunk_full_threshold <= 1.0) {
            return Err(ConfigError::param(
                "chunk_full_threshold",
                "'chunk_full_threshold' must be greater than 0 and at most 1",
            ));
        }
        let queue_limit_length = match p.typed("queue_limit_length", parse_integer)? {
            Some(n) if n <= 0 => {
                return Err(ConfigError::param(
                    "queue_limit_length",
                    "'queue_limit_length' must be greater than 0",
                ));
            }
            Some(n) => Some(n as u64),
            None => None,
        };
        let mut total_limit_size =
            p.typed("total_limit_size", parse_size)?
                .unwrap_or(if persistent {
                    64 * 1024 * MIB
                } else {
                    512 * MIB
                });
        if let Some(len) = queue_limit_length {
            total_limit_size = chunk_limit_size.saturating_mul(len);
        }

        if let Some(c) = p.get("compress") {
            match c.trim() {
                "text" => {}
                other => {
                    return Err(ConfigError::param(
                        "compress",
                        format!(
                            "'compress': '{other}' is not supported by nagare's buffer (only text)"
                        ),
                    ));
                }
            }
        }

        let flush_thread_count = match p.typed("flush_thread_count", parse_integer)? {
            Some(n) if n < 1 => {
                return Err(ConfigError::param(
                    "flush_thread_count",
                    "'flush_thread_count' must be 1 or more",
                ));
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => 1,
        };
        let queued_chunks_limit_size = match p.typed("queued_chunks_limit_size", parse_integer)? {
            Some(n) if n < 1 => {
                return Err(ConfigError::param(
                    "queued_chunks_limit_size",
                    "'queued_chunks_limit_size' must be 1 or more",
                ));
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => flush_thread_count,
        };

        let mode = p.enum_value(
            "flush_mode",
            &[
                ("default", None),
                ("lazy", Some(FlushMode::Lazy)),
                ("interval", Some(FlushMode::Interval)),
                ("immediate", Some(FlushMode::Immediate)),
            ],
        )?;
        let explicit_mode = mode.flatten();
        let flush_mode = explicit_mode.unwrap_or(if time {
            FlushMode::Lazy
        } else {
            FlushMode::Interval
        });
        if flush_mode != FlushMode::Interval && p.has("flush_interval") {
            let name = match flush_mode {
                FlushMode::Lazy => "lazy",
                FlushMode::Immediate => "immediate",
                FlushMode::Interval => "interval",
            };
            if p.has("flush_mode") {
                return Err(ConfigError::param(
                    "flush_interval",
                    format!(
                        "'flush_interval' can't be specified when 'flush_mode' is not 'interval' explicitly: '{name}'"
                    ),
                ));
            }
            warnings.push(format!("'flush_interval' is ignored because default 'flush_mode' is not 'interval': '{name}'"));
        }
        let flush_interval = non_negative_secs(
            "flush_interval",
            p.typed("flush_interval", parse_time)?.unwrap_or(60.0),
        )?;
        let flush_thread_interval = non_negative_secs(
            "flush_thread_interval",
            p.typed("flush_thread_interval", parse_float)?
                .unwrap_or(1.0),
        )?;
        let flush_thread_burst_interval = non_negative_secs(
            "flush_thread_burst_interval",
            p.typed("flush_thread_burst_interval", parse_float)?
                .unwrap_or(1.0),
        )?;
        let delayed_commit_timeout = non_negative_secs(
            "delayed_commit_timeout",
            p.typed("delayed_commit_timeout", parse_time)?
                .unwrap_or(60.0),
        )?;
        if p.get("delayed_commit_timeout").is_some() {
            // Fluentd's delayed commit is for outputs whose write returns before the
            // destination confirmed it; a nagare output's write returns only once it did.
            warnings.push("'delayed_commit_timeout' has no effect: nagare commits a chunk when the output's write returns, and out_forward waits for its ack inside the write (bounded by ack_response_timeout)".to_string());
        }

        let flush_at_shutdown = match p.typed("flush_at_shutdown", parse_bool)? {
            None => !persistent,
            Some(v) => {
                if !v && !persistent {
                    warnings.push(
                        "'flush_at_shutdown' is false, and buffer plugin 'memory' is not persistent buffer.".to_string(),
                    );
                    warnings.push(
                        "your configuration will lose buffered data at shutdown. please confirm your configuration again."
                            .to_string(),
                    );
                }
                v
            }
        };

        let overflow_action = p
            .enum_value(
                "overflow_action",
                &[
                    ("throw_exception", OverflowAction::ThrowException),
                    ("block", OverflowAction::Block),
                    ("drop_oldest_chunk", OverflowAction::DropOldestChunk),
                ],
            )?
            .unwrap_or(OverflowAction::ThrowException);

        let defaults = RetryConfig::default();
        let retry_type = p
            .enum_value(
                "retry_type",
                &[
                    ("exponential_backoff", RetryType::ExponentialBackoff),
                    ("periodic", RetryType::Periodic),
                ],
            )?
            .unwrap_or(defaults.retry_type);
        let wait = p.typed("retry_wait", parse_time)?.unwrap_or(defaults.wait);
        if wait <= 0.0 {
            return Err(ConfigError::param(
                "retry_wait",
                "'retry_wait' must be greater than 0",
            ));
        }
        let backoff_base = p
            .typed("retry_exponential_backoff_base", parse_float)?
            .unwrap_or(defaults.backoff_base);
        if backoff_base <= 0.0 {
            return Err(ConfigError::param(
                "retry_exponential_backoff_base",
                "'retry_exponential_backoff_base' must be greater than 0",
            ));
        }
        let max_interval = p.typed("retry_max_interval", parse_time)?;
        let timeout = p
            .typed("retry_timeout", parse_time)?
            .unwrap_or(defaults.timeout);
        let max_times = match p.typed("retry_max_times", parse_integer)? {
            Some(n) if n < 0 => {
                return Err(ConfigError::param(
                    "retry_max_times",
                    "'retry_max_times' must not be negative",
                ));
            }
            Some(n) => Some(n as u64),
            None => None,
        };
        let secondary_threshold = p
            .typed("retry_secondary_threshold", parse_float)?
            .unwrap_or(defaults.secondary_threshold);
        if !(secondary_threshold > 0.0 && secondary_threshold < 1.0) {
            return Err(ConfigError::param(
                "retry_secondary_threshold",
                "'retry_secondary_threshold' must be between 0 and 1 (exclusive)",
            ));
        }
        let retry = RetryConfig {
            retry_type,
            wait,
            backoff_base,
            max_interval,
            timeout,
            max_times,
            forever: p.typed("retry_forever", parse_bool)?.unwrap_or(false),
            randomize: p.typed("retry_randomize", parse_bool)?.unwrap_or(true),
            randomize_width: defaults.randomize_width,
            secondary_threshold,
        };

        let fsync = match p.get("fsync").map(str::trim) {
            None | Some("always") | Some("true") | Some("yes") | Some("") => FsyncPolicy::Always,
            Some("enqueue") => FsyncPolicy::OnEnqueue,
            Some("never") | Some("false") | Some("no") => FsyncPolicy::Never,
            Some(other) => {
                return Err(ConfigError::param(
                    "fsync",
                    format!("'fsync': valid options are always,enqueue,never but got {other}"),
                ));
            }
        };

        let path = p.get("path").map(|s| PathBuf::from(s.trim()));
        let path_suffix = p.get("path_suffix").unwrap_or(".log").to_string();
        if buffer_type == BufferType::Memory && path.is_some() {
            warnings.push("parameter 'path' is not used by the memory buffer.".to_string());
        }

        Ok(BufferConfig {
            buffer_type,
            path,
            path_suffix,
            chunk_keys,
            chunk_limit_size,
            chunk_limit_records,
            chunk_full_threshold,
            total_limit_size,
            queue_limit_length,
            queued_chunks_limit_size,
            flush_mode,
            flush_interval,
            flush_thread_count,
            flush_thread_interval,
            flush_thread_burst_interval,
            delayed_commit_timeout,
            flush_at_shutdown,
            overflow_action,
            retry,
            disable_chunk_backup: p
                .typed("disable_chunk_backup", parse_bool)?
                .unwrap_or(false),
            fsync,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(arg: &str, params: &[(&str, &str)]) -> Result<BufferConfig, ConfigError> {
        BufferConfig::from_params(arg, params.iter().copied())
    }

    fn check_err(arg: &str, params: &[(&str, &str)], expect: &str) {
        match conf(arg, params) {
            Ok(_) => panic!("expected error {expect:?} for {arg:?} {params:?}"),
            Err(e) => assert!(
                e.message.contains(expect),
                "got {:?}, want {expect:?}",
                e.message
            ),
        }
    }

    #[test]
    fn defaults_memory_and_file() {
        let m = conf("", &[]).expect("memory");
        assert_eq!(m.buffer_type, BufferType::Memory);
        assert_eq!(m.chunk_limit_size, 8 * MIB);
        assert_eq!(m.total_limit_size, 512 * MIB);
        assert_eq!(m.flush_mode, FlushMode::Interval);
        assert_eq!(m.flush_interval, Duration::from_secs(60));
        assert!(m.flush_at_shutdown);
        assert_eq!(m.overflow_action, OverflowAction::ThrowException);
        assert_eq!(m.queued_chunks_limit_size, 1);
        assert_eq!(m.retry, RetryConfig::default());
        assert_eq!(m.fsync, FsyncPolicy::Always);

        let f = conf("tag", &[("@type", "file"), ("path", "/var/buf")]).expect("file");
        assert_eq!(f.buffer_type, BufferType::File);
        assert_eq!(f.chunk_limit_size, 256 * MIB);
        assert_eq!(f.total_limit_size, 64 * 1024 * MIB);
        assert!(!f.flush_at_shutdown);
        assert!(f.chunk_keys.tag);
    }

    #[test]
    fn flush_mode_resolution() {
        let c = conf("time", &[("timekey", "1h")]).expect("lazy");
        assert_eq!(c.flush_mode, FlushMode::Lazy);
        let c = conf("time", &[("timekey", "1h"), ("flush_interval", "10s")]).expect("warns");
        assert_eq!(c.flush_mode, FlushMode::Lazy);
        assert!(c.warnings.iter().any(|w| w == "'flush_interval' is ignored because default 'flush_mode' is not 'interval': 'lazy'"));
        let c = conf("tag", &[("delayed_commit_timeout", "10")]).expect("warns");
        assert!(
            c.warnings
                .iter()
                .any(|w| w.starts_with("'delayed_commit_timeout' has no effect")),
            "{:?}",
            c.warnings
        );
        assert!(conf("tag", &[]).expect("quiet").warnings.is_empty());
        check_err(
            "tag",
            &[("flush_mode", "immediate"), ("flush_interval", "1s")],
            "'flush_interval' can't be specified when 'flush_mode' is not 'interval' explicitly: 'immediate'",
        );
        let c = conf(
            "tag",
            &[("flush_mode", "interval"), ("flush_interval", "5s")],
        )
        .expect("interval");
        assert_eq!(c.flush_interval, Duration::from_secs(5));
    }

    #[test]
    fn validation_messages() {
        check_err(
            "time",
            &[],
            "<buffer ...> argument includes 'time', but timekey is not configured",
        );
        check_err(
            "time",
            &[("timekey", "0")],
            "timekey should be greater than 0",
        );
        check_err("a b", &[], "chunk_keys specification includes invalid char");
        check_err(
            "$[\"a\"]",
            &[],
            "in chunk_keys: bracket notation is not allowed",
        );
        check_err(
            "",
            &[("overflow_action", "explode")],
            "valid options are throw_exception,block,drop_oldest_chunk but got explode",
        );
        check_err(
            "",
            &[("chunk_limit_size", "lots")],
            "'chunk_limit_size': invalid size value \"lots\"",
        );
        check_err(
            "",
            &[("flush_at_shutdown", "TRUE")],
            "'flush_at_shutdown': invalid bool value \"TRUE\"",
        );
        check_err(
            "",
            &[("retry_secondary_threshold", "1.0")],
            "retry_secondary_threshold",
        );
        check_err("", &[("@type", "redis")], "Unknown buffer plugin 'redis'");
        check_err("", &[("compress", "gzip")], "not supported");
        check_err(
            "time",
            &[("timekey", "1h"), ("timekey_zone", "Mars/Base")],
            "unknown timezone 'Mars/Base'",
        );
        let e = conf("", &[("flush_thread_count", "0")]).expect_err("count");
        assert_eq!(e.param.as_deref(), Some("flush_thread_count"));
    }

    #[test]
    fn chunk_keys_and_timekey() {
        let c = conf(
            "tag, time ,key1,$.nest.key",
            &[
                ("timekey", "30m"),
                ("timekey_zone", "+0900"),
                ("timekey_wait", "10s"),
            ],
        )
        .expect("keys");
        assert!(c.chunk_keys.tag);
        let tk = c.chunk_keys.time.expect("time");
        assert_eq!(
            (
                tk.timekey,
                tk.timekey_wait,
                tk.zone.offset_at(0).local_minus_utc()
            ),
            (1800, 10, 9 * 3600)
        );
        let names: Vec<&str> = c.chunk_keys.keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["key1", "$.nest.key"]);
        assert_eq!(c.chunk_keys.keys[1].path, ["nest", "key"]);

        let utc = conf(
            "time",
            &[
                ("timekey", "1d"),
                ("timekey_use_utc", "true"),
                ("timekey_zone", "+0900"),
            ],
        )
        .expect("utc");
        assert_eq!(
            utc.chunk_keys
                .time
                .map(|t| t.zone.offset_at(0).local_minus_utc()),
            Some(0)
        );
    }

    #[test]
    fn timekey_alignment_follows_zone() {
        // 2016-04-11 20:30:00 +0900 == 1460374200
        let t = 1_460_374_200;
        let tk = |secs, zone: &str, utc| TimeKey {
            timekey: secs,
            timekey_wait: 0,
            zone: parse_zone(zone).expect("z"),
            use_utc: utc,
        };
        assert_eq!(tk(1800, "+0900", false).timekey_of(t), t);
        assert_eq!(tk(86400, "+0900", false).timekey_of(t), 1_460_300_400); // 2016-04-11 00:00 +0900
        assert_eq!(tk(86400, "+0900", true).timekey_of(t), 1_460_332_800); // 2016-04-11 00:00 UTC
        assert_eq!(tk(3600, "-05:30", false).timekey_of(t), t);
        assert_eq!(tk(3600, "+0900", false).timekey_of(t + 1799), t - 1800);
        assert_eq!(tk(60, "UTC", false).timekey_of(-1), -60);
        // A named zone: Asia/Seoul is +0900 all year.
        assert_eq!(tk(86400, "Asia/Seoul", false).timekey_of(t), 1_460_300_400);
        // A named zone with daylight saving: a day slice starts at local midnight in summer
        // (-0400) and in winter (-0500). 2024-07-01 12:00 UTC and 2024-01-15 12:00 UTC.
        let ny = tk(86400, "America/New_York", false);
        assert_eq!(ny.timekey_of(1_719_835_200), 1_719_806_400); // 2024-07-01 00:00 -0400
        assert_eq!(ny.timekey_of(1_705_320_000), 1_705_294_800); // 2024-01-15 00:00 -0500
    }

    #[test]
    fn sizes_limits_and_legacy_queue_length() {
        let c = conf(
            "",
            &[("chunk_limit_size", "1m"), ("queue_limit_length", "4")],
        )
        .expect("legacy");
        assert_eq!(c.total_limit_size, 4 * MIB);
        let c = conf(
            "",
            &[
                ("chunk_limit_records", "10"),
                ("queued_chunks_limit_size", "7"),
                ("flush_thread_count", "3"),
            ],
        )
        .expect("n");
        assert_eq!(
            (
                c.chunk_limit_records,
                c.queued_chunks_limit_size,
                c.flush_thread_count
            ),
            (Some(10), 7, 3)
        );
        let c = conf("", &[("flush_thread_count", "3")]).expect("n");
        assert_eq!(c.queued_chunks_limit_size, 3);
    }

    #[test]
    fn retry_params_and_fsync_and_unknown() {
        let c = conf(
            "",
            &[
                ("retry_type", "periodic"),
                ("retry_wait", "3s"),
                ("retry_max_times", "5"),
                ("retry_forever", "true"),
                ("retry_randomize", "false"),
                ("retry_max_interval", "1m"),
                ("fsync", "enqueue"),
                ("bogus", "1"),
            ],
        )
        .expect("retry");
        assert_eq!(c.retry.retry_type, RetryType::Periodic);
        assert_eq!(
            (
                c.retry.wait,
                c.retry.max_times,
                c.retry.forever,
                c.retry.randomize
            ),
            (3.0, Some(5), true, false)
        );
        assert_eq!(c.retry.max_interval, Some(60.0));
        assert_eq!(c.fsync, FsyncPolicy::OnEnqueue);
        assert!(c.warnings.iter().any(|w| w.contains("parameter 'bogus'")));
    }

    #[test]
    fn zones() {
        for (z, secs) in [
            ("+0900", 32400),
            ("+09:00", 32400),
            ("-05", -18000),
            ("UTC", 0),
            ("-0330", -12600),
        ] {
            assert_eq!(
                parse_zone(z).map(|o| o.offset_at(0).local_minus_utc()),
                Ok(secs),
                "{z}"
            );
        }
        for z in [
            "0900",
            "+9",
            "+2500",
            "",
            "Mars/Base",
            "../etc/passwd",
            "/usr/share/zoneinfo/UTC",
            "Asia/../Tokyo",
        ] {
            assert!(parse_zone(z).is_err(), "{z}");
        }
    }
}
