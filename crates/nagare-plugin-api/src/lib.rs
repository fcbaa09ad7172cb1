//! The stable plugin ABI of nagare, epoch 1.
//!
//! This crate is the *only* thing a `.so` plugin and the host share at the type level. It holds
//! `abi_stable` types and `#[sabi_trait]` traits and nothing else: no logic, no std collections,
//! no runtime handles. Everything here is frozen for the life of an epoch:
//!
//! * the host never grows a vtable or the root module within an epoch (abi_stable rejects every
//!   older plugin when the host side grows, see `plugin-abi.md` §1.3);
//! * a plugin may be *newer* than the host: trailing trait methods with default bodies only;
//! * new host capabilities arrive as [`Output::control`] ops or in epoch 2.
//!
//! # Data
//! A batch of events is always Fluentd's chunk format: concatenated msgpack `[time, record]`
//! entries, `time` an `EventTime` (msgpack ext 0, u32 BE seconds + u32 BE nanoseconds) or an
//! integer. It borrows into filters and outputs ([`ChunkRef`]) and moves out of inputs and
//! filters ([`EventBatch`], [`FilterOutcome::Replaced`]) without copies.
//!
//! # Loading
//! Every plugin exports `extern "C" fn nagare_plugin_abi_epoch() -> u32` (checked first with
//! plain `libloading`, see [`EPOCH_SYMBOL`]) and the abi_stable root module [`PluginModRef`].
//! Plugin authors never write these by hand: `nagare-plugin-sdk`'s export macro does.
#![allow(non_local_definitions)]
#![allow(missing_docs)] // sabi_trait generates undocumented items

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RArc, RBox, ROption, RResult, RSlice, RStr, RString, RVec, Tuple2},
};

/// The ABI epoch this crate describes. Equal to the minor version of this crate (`0.N`).
pub const ABI_EPOCH: u32 = 1;

/// Name of the plain C symbol every plugin exports, returning its [`ABI_EPOCH`].
pub const EPOCH_SYMBOL: &[u8] = b"nagare_plugin_abi_epoch\0";

/// The kind of a [`PluginError`]. An open set: new kinds may be added without an ABI break,
/// so match with a fallback arm.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ErrorKind(pub u8);

impl ErrorKind {
    /// Bad configuration: the plugin must not start.
    pub const CONFIG: ErrorKind = ErrorKind(0);
    /// Temporary failure: back off (honour `retry_after_ms`) and retry the same chunk.
    pub const RETRYABLE: ErrorKind = ErrorKind(1);
    /// Permanent failure for this data: send the chunk to `<secondary>` or the backup dir.
    pub const UNRECOVERABLE: ErrorKind = ErrorKind(2);
    /// The plugin panicked; the SDK caught it. The instance is poisoned.
    pub const PANIC: ErrorKind = ErrorKind(3);
    /// A bug or unexpected state inside the plugin.
    pub const INTERNAL: ErrorKind = ErrorKind(4);
    /// Not delivered, with nothing to count against the output: the host puts the chunk back
    /// at the head of its queue without a retry step and writes it again after
    /// `flush_thread_burst_interval` (Fluentd's rollback without updating the retry state,
    /// what out_forward does when an ack does not come). A host that predates this kind
    /// retries it as [`ErrorKind::RETRYABLE`].
    pub const RESEND: ErrorKind = ErrorKind(5);

    /// A short lowercase name for logs.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "config",
            1 => "retryable",
            2 => "unrecoverable",
            3 => "panic",
            4 => "internal",
            5 => "resend",
            _ => "unknown",
        }
    }
}

/// An error returned across the boundary.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct PluginError {
    /// What the host should do about it.
    pub kind: ErrorKind,
    /// For [`ErrorKind::RETRYABLE`]: the earliest retry the plugin suggests, 0 for "host decides".
    pub retry_after_ms: u64,
    /// A human-readable message naming the thing that failed.
    pub message: RString,
}

impl PluginError {
    /// Builds an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<RString>) -> Self {
        PluginError {
            kind,
            retry_after_ms: 0,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} error: {}", self.kind.name(), self.message)
    }
}

impl std::error::Error for PluginError {}

/// One configuration element, Fluentd's `Config::Element` shape. Values stay strings; the
/// plugin types them (the SDK's deserializer understands Fluentd's value types).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct ConfigNode {
    /// Element name: `"source"`, `"match"`, `"buffer"`, `"parse"`, ...
    pub name: RString,
    /// Element argument: `"app.**"`, `"@ERROR"`, `"tag,time"`, or `""`.
    pub arg: RString,
    /// Where it was written, `"path/fluent.conf:12"`, for error messages.
    pub location: RString,
    /// Parameters in file order. `RNone` is Fluentd's `nil` (from `"#{use_nil}"`).
    /// A value of `use_default` is never passed: the host removes such params.
    pub attrs: RVec<Tuple2<RString, ROption<RString>>>,
    /// Nested elements in file order.
    pub children: RVec<ConfigNode>,
}

/// The encoding of a chunk's bytes. An open set.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ChunkFormat(pub u8);

impl ChunkFormat {
    /// Concatenated msgpack `[time, record]` entries.
    pub const MSGPACK_STREAM: ChunkFormat = ChunkFormat(0);
    /// The same, gzip-compressed (one or more members).
    pub const MSGPACK_STREAM_GZIP: ChunkFormat = ChunkFormat(1);
    /// A [`ChunkFormat::MSGPACK_STREAM`] payload left in the host's buffer file: `data` is a
    /// descriptor, little-endian `u64` words `[1, fd, n, offset_1, len_1, …, offset_n,
    /// len_n]`, and the payload is the concatenation of those `n` ranges of the file open as
    /// `fd`. The descriptor is valid for the call only; read it with positioned reads (or
    /// `sendfile`), never close it. Once a `write` returns `Ok` the host may overwrite those
    /// bytes in place (the file is reused): an output that hands pages to the kernel
    /// (`sendfile` to a socket) returns `Ok` only when the peer has consumed them (an
    /// application-level ack), and resets a connection it gives up on rather than leaving
    /// them queued. The host sends this format only to an output whose answer to
    /// [`CHUNK_FORMATS_OP`] lists this format, for a file buffer's chunks, so an output that
    /// sends chunks as they are can copy them from the page cache to a socket without a copy
    /// in memory. The SDK reads it (`Chunk::file_ranges`, `Chunk::payload`).
    pub const FILE_RANGES: ChunkFormat = ChunkFormat(2);
}

/// The `control` op by which the host asks an output which [`ChunkFormat`]s its `write`
/// takes beyond the two msgpack streams: the answer is a msgpack array of format numbers.
/// An output that does not know the op (its `INTERNAL` error) takes those two only.
pub const CHUNK_FORMATS_OP: &str = "chunk_formats.v1";

/// A chunk lent to a filter or an output for the duration of one call.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct ChunkRef<'a> {
    /// The tag of every event in the chunk.
    pub tag: RStr<'a>,
    /// A 128-bit unique chunk id (Fluentd's unique_id layout); zero for unbuffered calls.
    pub chunk_id: [u8; 16],
    /// Number of entries in `data`.
    pub records: u32,
    /// Encoding of `data`.
    pub format: ChunkFormat,
    /// The entries.
    pub data: RSlice<'a, u8>,
    /// Chunk-key variables of a buffered chunk (`${key}` placeholders), as key/value pairs;
    /// the timekey (seconds since the epoch) is under `"timekey"` when `time` is a chunk key.
    pub variables: RSlice<'a, Tuple2<RStr<'a>, RStr<'a>>>,
}

/// A batch moved from an input (or out_relabel-like plugins) into the host.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct EventBatch {
    /// The tag of every event in the batch.
    pub tag: RString,
    /// Number of entries in `data`.
    pub records: u32,
    /// Encoding of `data`.
    pub format: ChunkFormat,
    /// The entries. The host keeps this vector as is (no copy).
    pub data: RVec<u8>,
    /// `@label` to route into (`""` = the input's own label, or the root router).
    pub label: RString,
}

/// What a filter did to a chunk.
#[repr(C, u8)]
#[derive(StableAbi, Debug)]
pub enum FilterOutcome {
    /// Every event passes unchanged: the host keeps the original bytes.
    Unchanged,
    /// Every event was dropped.
    Dropped,
    /// The chunk was rewritten.
    Replaced {
        /// Number of entries in `data`.
        records: u32,
        /// The new entries.
        data: RVec<u8>,
    },
}

/// Log levels, Fluentd's names. An open set.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct LogLevel(pub u8);

impl LogLevel {
    pub const TRACE: LogLevel = LogLevel(0);
    pub const DEBUG: LogLevel = LogLevel(1);
    pub const INFO: LogLevel = LogLevel(2);
    pub const WARN: LogLevel = LogLevel(3);
    pub const ERROR: LogLevel = LogLevel(4);
    pub const FATAL: LogLevel = LogLevel(5);
}

/// Metric kinds. An open set.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MetricKind(pub u8);

impl MetricKind {
    pub const COUNTER: MetricKind = MetricKind(0);
    pub const GAUGE: MetricKind = MetricKind(1);
}

/// A metric handle returned by [`Host::register_metric`].
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MetricId(pub u64);

/// Services the host gives every plugin instance. The host adds the instance's `@id` and
/// `@type` to everything logged or recorded through it.
#[sabi_trait]
pub trait Host: Send + Sync + Clone {
    /// Whether `level` would be logged (check before formatting).
    fn log_enabled(&self, level: LogLevel) -> bool;
    /// Logs one message.
    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>);
    /// Registers a metric once; record it by id afterwards.
    fn register_metric(&self, kind: MetricKind, name: RStr<'_>, help: RStr<'_>) -> MetricId;
    /// Adds to a counter or sets a gauge.
    #[sabi(last_prefix_field)]
    fn record_metric(&self, id: MetricId, value: f64);
}

/// The host services object handed to plugin constructors.
pub type HostBox = Host_TO<'static, RArc<()>>;

/// The sink given to inputs. Call it only from threads the plugin owns.
#[sabi_trait]
pub trait Emitter: Send + Sync + Clone {
    /// Routes a batch. Blocks while the destination buffer is full (back-pressure). `Ok` means
    /// the events are accepted by every buffer they were routed to (durable there when that
    /// buffer is a file buffer): only then may an input ack its sender.
    fn emit(&self, batch: EventBatch) -> RResult<(), PluginError>;
    /// Like [`Emitter::emit`] but never blocks: on a full buffer it hands the batch back,
    /// and it does not wait for the disk either. `Ok` means accepted by every buffer the
    /// events were routed to (in a file buffer, written to its chunk file, so a crash of
    /// the process keeps them), but not yet fsynced: that happens when their chunk is
    /// queued, or with a later `emit` into the same chunk. An input that acks a sender on
    /// the strength of the call (Forward's `chunk` option) uses `emit`.
    ///
    /// An empty batch (no records, no data) is a probe and routes nothing: it comes back
    /// when a batch with its tag and label would now wait for room (a full buffer with
    /// `overflow_action block`), else `Ok`. An input can so wait for room on its own
    /// terms (a task polling the probe) instead of in a thread blocked in `emit`.
    #[sabi(last_prefix_field)]
    fn try_emit(&self, batch: EventBatch) -> RResult<(), Tuple2<EventBatch, PluginError>>;
}

/// The emitter object handed to [`Input::start`].
pub type EmitterBox = Emitter_TO<'static, RArc<()>>;

/// An input: owns its threads (or a runtime inside its `.so`) and pushes batches.
#[sabi_trait]
pub trait Input: Send {
    /// Starts producing; must return quickly (spawn threads). Errors here stop start-up.
    fn start(&mut self, emitter: EmitterBox) -> RResult<(), PluginError>;
    /// Stops producing and joins every thread the plugin started. No emit after it returns.
    #[sabi(last_prefix_field)]
    fn stop(&mut self) -> RResult<(), PluginError>;
}

/// A filter: called concurrently from host worker threads.
#[sabi_trait]
pub trait Filter: Send + Sync {
    /// Filters one chunk.
    #[sabi(last_prefix_field)]
    fn filter(&self, chunk: ChunkRef<'_>) -> RResult<FilterOutcome, PluginError>;
}

/// An output: writes chunks handed to it by the host's buffer, up to `flush_thread_count`
/// calls at once.
#[sabi_trait]
pub trait Output: Send + Sync {
    /// Opens connections or files. Called once before any `write`.
    fn start(&mut self) -> RResult<(), PluginError>;
    /// Writes one chunk. `Ok` commits it; an error says what the host should do.
    fn write(&self, chunk: ChunkRef<'_>) -> RResult<(), PluginError>;
    /// A versioned escape hatch (`"stats.v1"`, ...): msgpack payload in, msgpack out.
    /// Unknown ops return an `INTERNAL` error.
    fn control(&self, op: RStr<'_>, payload: RSlice<'_, u8>) -> RResult<RVec<u8>, PluginError>;
    /// Flushes and closes. No `write` is in flight or follows.
    #[sabi(last_prefix_field)]
    fn stop(&mut self) -> RResult<(), PluginError>;
}

/// An input instance.
pub type InputBox = Input_TO<'static, RBox<()>>;
/// A filter instance.
pub type FilterBox = Filter_TO<'static, RBox<()>>;
/// An output instance.
pub type OutputBox = Output_TO<'static, RBox<()>>;

/// What the host tells a constructor about the instance to build.
#[repr(C)]
#[derive(StableAbi)]
pub struct InstanceInfo<'a> {
    /// The `@id` (or a generated `object:<hex>` id, as Fluentd does).
    pub plugin_id: RStr<'a>,
    /// The `@type`.
    pub type_name: RStr<'a>,
    /// The whole element (`<source>`, `<match>`, `<filter>`, `<store>`...).
    pub config: &'a ConfigNode,
}

/// The kind of a plugin type. An open set.
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PluginKind(pub u8);

impl PluginKind {
    pub const INPUT: PluginKind = PluginKind(0);
    pub const FILTER: PluginKind = PluginKind(1);
    pub const OUTPUT: PluginKind = PluginKind(2);

    /// `"input"`, `"filter"` or `"output"`.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "input",
            1 => "filter",
            2 => "output",
            _ => "unknown",
        }
    }
}

/// One `@type` a module provides.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct PluginDescriptor {
    /// Input, filter or output.
    pub kind: PluginKind,
    /// The `@type` name (`"forward"`, `"stdout"`, ...).
    pub type_name: RString,
}

/// What a module says about itself.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct Manifest {
    /// The plugin crate's package name.
    pub package: RString,
    /// The plugin crate's version.
    pub version: RString,
    /// The SDK version it was built with.
    pub sdk_version: RString,
    /// The rustc that built it, if known.
    pub rustc_version: RString,
    /// Every type this module provides.
    pub plugins: RVec<PluginDescriptor>,
}

/// A constructor result: `RNone` = "this module has no such `@type`".
pub type NewResult<T> = ROption<RResult<T, PluginError>>;

/// The root module every plugin `.so` exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(option))]
pub struct PluginMod {
    /// Must equal [`ABI_EPOCH`].
    pub abi_epoch: u32,
    /// Describes the module.
    pub manifest: extern "C" fn() -> Manifest,
    /// Builds an input of `info.type_name`.
    pub new_input: extern "C" fn(InstanceInfo<'_>, HostBox) -> NewResult<InputBox>,
    /// Builds a filter of `info.type_name`.
    pub new_filter: extern "C" fn(InstanceInfo<'_>, HostBox) -> NewResult<FilterBox>,
    /// Builds an output of `info.type_name`.
    #[sabi(last_prefix_field)]
    pub new_output: extern "C" fn(InstanceInfo<'_>, HostBox) -> NewResult<OutputBox>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "nagare_plugin";
    const NAME: &'static str = "nagare_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_have_names() {
        assert_eq!(ErrorKind::RETRYABLE.name(), "retryable");
        assert_eq!(ErrorKind(99).name(), "unknown");
        let e = PluginError::new(ErrorKind::CONFIG, "bad port");
        assert_eq!(e.to_string(), "config error: bad port");
    }

    #[test]
    fn abi_epoch_matches_crate_minor_version() {
        let minor: u32 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap_or(u32::MAX);
        assert_eq!(minor, ABI_EPOCH, "the crate's 0.N must equal ABI_EPOCH");
    }
}
