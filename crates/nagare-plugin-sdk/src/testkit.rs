//! Drives a plugin in-process, without building a `.so` (feature `testkit`).
//!
//! Instances are built through the module the export macro generates
//! (`nagare_plugin_module()`), so the test covers the same path the host uses: type dispatch,
//! the config deserializer, the adapters and their panic guards.
//!
//! ```ignore
//! let kit = TestKit::new(crate::nagare_plugin_module());
//! let mut out = kit.output("stdout", "output_type json")?;
//! out.start()?;
//! out.write("app", &entries)?;
//! assert!(kit.host().logs().is_empty());
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RResult, RSlice, RStr, RString, RVec, Tuple2};
use nagare_plugin_api::{
    self as api, ChunkFormat, ChunkRef, ConfigNode, EmitterBox, ErrorKind, EventBatch, FilterBox,
    HostBox, InputBox, InstanceInfo, LogLevel, Manifest, MetricId, MetricKind, OutputBox,
    PluginError, PluginModRef,
};
use rmpv::Value;

use crate::chunk::{ChunkReader, ChunkWriter, EventTime};
use crate::config::text::parse_element;
use crate::plugin::FilterOutcome;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One captured log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Its level.
    pub level: LogLevel,
    /// The target (the plugin type).
    pub target: String,
    /// The message.
    pub message: String,
}

/// One registered metric and its current value.
#[derive(Clone, Debug, PartialEq)]
pub struct TestMetric {
    /// Counter or gauge.
    pub kind: MetricKind,
    /// Its name.
    pub name: String,
    /// Its help text.
    pub help: String,
    /// Sum of counter adds, or the last gauge value.
    pub value: f64,
}

#[derive(Default)]
struct HostState {
    logs: Mutex<Vec<LogLine>>,
    metrics: Mutex<Vec<TestMetric>>,
}

/// A [`api::Host`] that captures logs and metrics.
#[derive(Clone)]
pub struct TestHost {
    level: LogLevel,
    state: Arc<HostState>,
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new(LogLevel::TRACE)
    }
}

impl TestHost {
    /// Captures everything at `level` and above.
    pub fn new(level: LogLevel) -> Self {
        TestHost {
            level,
            state: Arc::default(),
        }
    }

    /// The object to hand to constructors.
    pub fn host_box(&self) -> HostBox {
        HostBox::from_ptr(RArc::new(self.clone()), TD_Opaque)
    }

    /// Every captured log line.
    pub fn logs(&self) -> Vec<LogLine> {
        lock(&self.state.logs).clone()
    }

    /// Captured messages at `level`.
    pub fn messages(&self, level: LogLevel) -> Vec<String> {
        self.logs()
            .into_iter()
            .filter(|l| l.level == level)
            .map(|l| l.message)
            .collect()
    }

    /// Every registered metric.
    pub fn metrics(&self) -> Vec<TestMetric> {
        lock(&self.state.metrics).clone()
    }

    /// The value of the metric called `name`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics()
            .into_iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }
}

impl api::Host for TestHost {
    fn log_enabled(&self, level: LogLevel) -> bool {
        level >= self.level
    }

    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
        lock(&self.state.logs).push(LogLine {
            level,
            target: target.to_string(),
            message: message.to_string(),
        });
    }

    fn register_metric(&self, kind: MetricKind, name: RStr<'_>, help: RStr<'_>) -> MetricId {
        let mut metrics = lock(&self.state.metrics);
        metrics.push(TestMetric {
            kind,
            name: name.to_string(),
            help: help.to_string(),
            value: 0.0,
        });
        MetricId((metrics.len() - 1) as u64)
    }

    fn record_metric(&self, id: MetricId, value: f64) {
        let mut metrics = lock(&self.state.metrics);
        if let Some(m) = usize::try_from(id.0).ok().and_then(|i| metrics.get_mut(i)) {
            if m.kind == MetricKind::GAUGE {
                m.value = value;
            } else {
                m.value += value;
            }
        }
    }
}

/// One batch an input emitted.
#[derive(Clone, Debug, PartialEq)]
pub struct CapturedBatch {
    /// The tag.
    pub tag: String,
    /// The entry count the input declared.
    pub records: u32,
    /// The `@label` it targeted.
    pub label: String,
    /// The entries.
    pub data: Vec<u8>,
    /// Whether it came through the blocking `emit` (durable before it returns) rather than
    /// `try_emit` (fsynced later, with its chunk).
    pub durable: bool,
}

impl CapturedBatch {
    /// The decoded entries (panics are not possible: malformed data gives an error).
    pub fn entries(&self) -> Result<Vec<(EventTime, Value)>, crate::chunk::ChunkError> {
        ChunkReader::new(&self.data).values()
    }
}

#[derive(Default)]
struct EmitterState {
    batches: Mutex<Vec<CapturedBatch>>,
    arrived: Condvar,
    full: AtomicBool,
    /// While held, `emit` waits and `try_emit` hands batches back.
    hold: Mutex<Hold>,
    released: Condvar,
}

#[derive(Default)]
struct Hold {
    held: bool,
    /// `emit` calls waiting now.
    emits: usize,
    /// Tags refused by `try_emit` or its probe since the hold began.
    refused: std::collections::BTreeSet<String>,
}

/// An [`api::Emitter`] that captures batches; it can pretend the buffer is full.
#[derive(Clone, Default)]
pub struct TestEmitter {
    state: Arc<EmitterState>,
}

impl TestEmitter {
    /// A fresh emitter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The object to hand to `Input::start`.
    pub fn emitter_box(&self) -> EmitterBox {
        EmitterBox::from_ptr(RArc::new(self.clone()), TD_Opaque)
    }

    /// Makes `emit` fail with `RETRYABLE` and `try_emit` hand batches back (as a full
    /// buffer with `overflow_action throw_exception`: the probe says nothing would wait).
    pub fn set_full(&self, full: bool) {
        self.state.full.store(full, Ordering::SeqCst);
    }

    /// While `held`, `emit` waits (as on a full buffer with `overflow_action block`),
    /// `try_emit` hands batches back and its probe says a batch would wait; releasing lets
    /// the waiting emits through.
    pub fn set_held(&self, held: bool) {
        let mut hold = lock(&self.state.hold);
        hold.held = held;
        hold.refused.clear();
        drop(hold);
        self.state.released.notify_all();
    }

    /// How many batches wait for [`set_held`](Self::set_held) to end now: `emit` calls
    /// waiting in the emitter, plus the distinct tags `try_emit` or its probe turned away
    /// during the hold (an input waiting on its own, one batch per tag in tests).
    pub fn waiting(&self) -> usize {
        let hold = lock(&self.state.hold);
        hold.emits + hold.refused.len()
    }

    /// How many `emit` calls wait in the emitter now (each holds a thread of the input).
    pub fn emits_waiting(&self) -> usize {
        lock(&self.state.hold).emits
    }

    /// Waits until `n` batches are [`waiting`](Self::waiting) or `timeout` passed; returns
    /// whether they were.
    pub fn wait_for_waiting(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.waiting() < n {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Every batch received so far.
    pub fn batches(&self) -> Vec<CapturedBatch> {
        lock(&self.state.batches).clone()
    }

    /// Waits until at least `n` batches arrived or `timeout` passed; returns whether they did.
    pub fn wait_for_batches(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut batches = lock(&self.state.batches);
        while batches.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            batches = match self.state.arrived.wait_timeout(batches, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }

    fn capture(&self, batch: EventBatch, durable: bool) {
        lock(&self.state.batches).push(CapturedBatch {
            tag: batch.tag.into_string(),
            records: batch.records,
            label: batch.label.into_string(),
            data: batch.data.to_vec(),
            durable,
        });
        self.state.arrived.notify_all();
    }
}

fn buffer_full() -> PluginError {
    PluginError::new(ErrorKind::RETRYABLE, "buffer full (test emitter)")
}

impl api::Emitter for TestEmitter {
    fn emit(&self, batch: EventBatch) -> RResult<(), PluginError> {
        if self.state.full.load(Ordering::SeqCst) {
            return RResult::RErr(buffer_full());
        }
        let mut hold = lock(&self.state.hold);
        if hold.held {
            hold.emits += 1;
            while hold.held {
                hold = match self.state.released.wait(hold) {
                    Ok(g) => g,
                    Err(poisoned) => poisoned.into_inner(),
                };
            }
            hold.emits -= 1;
        }
        drop(hold);
        self.capture(batch, true);
        RResult::ROk(())
    }

    fn try_emit(&self, batch: EventBatch) -> RResult<(), Tuple2<EventBatch, PluginError>> {
        let probe = batch.records == 0 && batch.data.is_empty();
        {
            let mut hold = lock(&self.state.hold);
            if hold.held {
                hold.refused.insert(batch.tag.to_string());
                return RResult::RErr(Tuple2(batch, buffer_full()));
            }
        }
        if probe {
            return RResult::ROk(());
        }
        if self.state.full.load(Ordering::SeqCst) {
            return RResult::RErr(Tuple2(batch, buffer_full()));
        }
        self.capture(batch, false);
        RResult::ROk(())
    }
}

/// Builds instances from a plugin module and a config text.
pub struct TestKit {
    module: PluginModRef,
    host: TestHost,
}

impl TestKit {
    /// A kit over `module` (the macro's `nagare_plugin_module()`), capturing every log level.
    pub fn new(module: PluginModRef) -> Self {
        TestKit {
            module,
            host: TestHost::default(),
        }
    }

    /// The host that captures logs and metrics of every instance this kit builds.
    pub fn host(&self) -> &TestHost {
        &self.host
    }

    /// The module's manifest.
    pub fn manifest(&self) -> Manifest {
        (self.module.manifest())()
    }

    /// Parses `text` (Fluentd syntax, see [`crate::config::text`]) into an element
    /// `<name arg>` with `@type type_name` first.
    pub fn config(
        name: &str,
        arg: &str,
        type_name: &str,
        text: &str,
    ) -> Result<ConfigNode, PluginError> {
        let mut node =
            parse_element("test.conf", name, arg, text).map_err(crate::error::config_error)?;
        node.attrs.insert(
            0,
            Tuple2(
                RString::from("@type"),
                abi_stable::std_types::ROption::RSome(type_name.into()),
            ),
        );
        Ok(node)
    }

    fn build<T>(
        &self,
        type_name: &str,
        node: &ConfigNode,
        ctor: extern "C" fn(InstanceInfo<'_>, HostBox) -> api::NewResult<T>,
    ) -> Result<T, PluginError> {
        let info = InstanceInfo {
            plugin_id: RStr::from("test_id"),
            type_name: RStr::from(type_name),
            config: node,
        };
        ctor(info, self.host.host_box())
            .into_option()
            .ok_or_else(|| {
                crate::error::config_error(format!("module has no such type '{type_name}'"))
            })?
            .into_result()
    }

    /// Builds an output `<match **>` from `text`.
    pub fn output(&self, type_name: &str, text: &str) -> Result<TestOutput, PluginError> {
        let node = Self::config("match", "**", type_name, text)?;
        self.output_from(type_name, &node)
    }

    /// Builds an output from a prepared element.
    pub fn output_from(
        &self,
        type_name: &str,
        node: &ConfigNode,
    ) -> Result<TestOutput, PluginError> {
        let inner = self.build(type_name, node, self.module.new_output())?;
        Ok(TestOutput { inner })
    }

    /// Builds a filter `<filter **>` from `text`.
    pub fn filter(&self, type_name: &str, text: &str) -> Result<TestFilter, PluginError> {
        let node = Self::config("filter", "**", type_name, text)?;
        let inner = self.build(type_name, &node, self.module.new_filter())?;
        Ok(TestFilter { inner })
    }

    /// Builds an input `<source>` from `text`.
    pub fn input(&self, type_name: &str, text: &str) -> Result<TestInput, PluginError> {
        let node = Self::config("source", "", type_name, text)?;
        let inner = self.build(type_name, &node, self.module.new_input())?;
        Ok(TestInput {
            inner,
            emitter: TestEmitter::new(),
        })
    }
}

fn chunk_ref<'a>(
    tag: &'a str,
    data: &'a [u8],
    records: u32,
    format: ChunkFormat,
    vars: &'a [Tuple2<RStr<'a>, RStr<'a>>],
) -> ChunkRef<'a> {
    ChunkRef {
        tag: RStr::from(tag),
        chunk_id: [0; 16],
        records,
        format,
        data: RSlice::from(data),
        variables: RSlice::from(vars),
    }
}

/// An output under test.
pub struct TestOutput {
    inner: OutputBox,
}

impl TestOutput {
    /// Calls `start`.
    pub fn start(&mut self) -> Result<(), PluginError> {
        self.inner.start().into_result()
    }

    /// Writes the entries of `writer` as one chunk tagged `tag`.
    pub fn write(&self, tag: &str, writer: &ChunkWriter) -> Result<(), PluginError> {
        self.inner
            .write(chunk_ref(
                tag,
                writer.as_bytes(),
                writer.records(),
                ChunkFormat::MSGPACK_STREAM,
                &[],
            ))
            .into_result()
    }

    /// Writes `data` as one chunk tagged `tag` holding `records` entries in `format`, as
    /// is: gzipped chunks, or bytes that are not a valid chunk.
    pub fn write_bytes(
        &self,
        tag: &str,
        data: &[u8],
        records: u32,
        format: ChunkFormat,
    ) -> Result<(), PluginError> {
        self.inner
            .write(chunk_ref(tag, data, records, format, &[]))
            .into_result()
    }

    /// Writes the `ranges` of `file` (`(offset, len)`, in payload order) as the
    /// `FILE_RANGES` chunk `id` tagged `tag` holding `records` entries, as the host lends a
    /// file buffer's chunk to an output whose `accepts_file_ranges` says yes. `file` stays
    /// open (and unmoved: the plugin reads it at offsets) for the call.
    pub fn write_file_ranges(
        &self,
        tag: &str,
        id: [u8; 16],
        file: &std::fs::File,
        ranges: &[(u64, u64)],
        records: u32,
    ) -> Result<(), PluginError> {
        let descriptor = nagare_core::file_ranges::FileRanges {
            fd: std::os::fd::AsRawFd::as_raw_fd(file),
            ranges: ranges.to_vec(),
        }
        .encode();
        self.write_chunk(ChunkRef {
            chunk_id: id,
            ..chunk_ref(tag, &descriptor, records, ChunkFormat::FILE_RANGES, &[])
        })
    }

    /// Writes an arbitrary chunk (id, format, variables as given).
    pub fn write_chunk(&self, chunk: ChunkRef<'_>) -> Result<(), PluginError> {
        self.inner.write(chunk).into_result()
    }

    /// Calls `control`.
    pub fn control(&self, op: &str, payload: &[u8]) -> Result<Vec<u8>, PluginError> {
        self.inner
            .control(RStr::from(op), RSlice::from(payload))
            .into_result()
            .map(RVec::into_vec)
    }

    /// Calls `stop`.
    pub fn stop(&mut self) -> Result<(), PluginError> {
        self.inner.stop().into_result()
    }
}

/// A filter under test.
pub struct TestFilter {
    inner: FilterBox,
}

impl TestFilter {
    /// Filters the entries of `writer` as one chunk tagged `tag`.
    pub fn filter(&self, tag: &str, writer: &ChunkWriter) -> Result<FilterOutcome, PluginError> {
        let out = self
            .inner
            .filter(chunk_ref(
                tag,
                writer.as_bytes(),
                writer.records(),
                ChunkFormat::MSGPACK_STREAM,
                &[],
            ))
            .into_result()?;
        Ok(match out {
            api::FilterOutcome::Unchanged => FilterOutcome::Unchanged,
            api::FilterOutcome::Dropped => FilterOutcome::Dropped,
            api::FilterOutcome::Replaced { records, data } => FilterOutcome::Replaced {
                records,
                data: data.into_vec(),
            },
        })
    }
}

/// An input under test, with its capturing emitter.
pub struct TestInput {
    inner: InputBox,
    emitter: TestEmitter,
}

impl TestInput {
    /// The emitter `start` hands to the plugin.
    pub fn emitter(&self) -> &TestEmitter {
        &self.emitter
    }

    /// Calls `start` with the capturing emitter.
    pub fn start(&mut self) -> Result<(), PluginError> {
        self.inner.start(self.emitter.emitter_box()).into_result()
    }

    /// Calls `stop`.
    pub fn stop(&mut self) -> Result<(), PluginError> {
        self.inner.stop().into_result()
    }
}
