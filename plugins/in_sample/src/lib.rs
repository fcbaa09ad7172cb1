//! `in_sample` (`@type sample`, alias `dummy`): emits sample records at a fixed rate, as
//! Fluentd's `in_sample.rb`.
//!
//! * `tag` (required); `sample` (alias `dummy`): a JSON hash or an array of hashes, used in
//!   turn (default `[{"message":"sample"}]`);
//! * `rate` (default 1): emits per second, spread like Fluentd's: each second is ten 100 ms
//!   slots of `rate / 10` emits, then `rate % 10` more, then a wait for the second to end;
//! * `size` (default 1): events per emit (each emit of `size > 1` is one batch; with
//!   `size 1` the emits of one slot travel as one batch, each event with its own time);
//! * `auto_increment_key`: a counter from 0 put in each record under that key;
//! * `suspend` is accepted and ignored (deprecated in Fluentd too); a `<storage>` section is
//!   not supported (the counter restarts at 0).
//!
//! The plugin owns one thread. Back-pressure: a batch the host cannot take (full buffer) is
//! offered again every 10 ms until it is accepted, so nothing is dropped and no new events
//! are generated meanwhile; `stop` interrupts any wait at once and joins the thread. Other
//! emit errors are counted and logged (rate-limited) and the batch is skipped, as Fluentd
//! ignores emit errors here. Metrics: `records_emitted`, `emit_errors`.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nagare_plugin_sdk::rmpv::Value;
use nagare_plugin_sdk::{
    ChunkWriter, ConfigNode, Counter, Emitter, ErrorKind, EventTime, Input, LogLevel, Logger,
    PluginContext, Result, error, export_plugins, plugin_log,
};
use serde::Deserialize;

/// Fluentd's `BIN_NUM`: slots per second.
pub const BIN_NUM: u32 = 10;
/// How long a rejected batch waits before it is offered again.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(10);

fn one() -> u32 {
    1
}

/// `in_sample`'s parameters.
#[derive(Debug, Deserialize)]
pub struct SampleConfig {
    /// The tag of the generated events.
    pub tag: String,
    /// Events per emit.
    #[serde(default = "one")]
    pub size: u32,
    /// Emits per second.
    #[serde(default = "one")]
    pub rate: u32,
    /// If set, each record gets an auto-incremented integer under this key.
    #[serde(default)]
    pub auto_increment_key: Option<String>,
    /// Ignored (Fluentd: "This parameters is ignored").
    #[serde(default)]
    pub suspend: Option<bool>,
    /// The sample data: a JSON hash or an array of JSON hashes.
    #[serde(default, alias = "dummy")]
    pub sample: Option<String>,
}

/// Parses `sample`: a hash, or an array whose elements must all be hashes.
pub fn parse_sample(text: &str) -> std::result::Result<Vec<Value>, String> {
    let parsed: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("JSON::ParserError: {e}"))?;
    let list = match parsed {
        serde_json::Value::Array(a) => a,
        other => vec![other],
    };
    list.into_iter()
        .enumerate()
        .map(|(i, e)| {
            if e.is_object() {
                Ok(nagare_formats::json::json_to_value(e))
            } else {
                Err(format!("{i}th element of sample, {e}, is not a hash"))
            }
        })
        .collect()
}

/// What the generator thread needs.
struct Generator {
    tag: String,
    size: u32,
    rate: u32,
    auto_increment_key: Option<String>,
    /// The samples; pre-encoded when there is no counter to insert.
    samples: Vec<Value>,
    encoded: Vec<Vec<u8>>,
    index: usize,
    counter: i64,
    log: Logger,
    emitted: Counter,
    errors: Counter,
    last_error_log: Option<Instant>,
}

impl Generator {
    /// Fluentd's `generate`: the next sample (with the counter) appended to `w`.
    fn generate_into(&mut self, w: &mut ChunkWriter) {
        if self.index >= self.samples.len() {
            self.index = 0;
        }
        let i = self.index;
        self.index += 1;
        let now = EventTime::now();
        match &self.auto_increment_key {
            None => {
                if let Some(raw) = self.encoded.get(i) {
                    w.push_raw(now, raw);
                }
            }
            Some(key) => {
                let Some(Value::Map(pairs)) = self.samples.get(i) else {
                    return;
                };
                let mut pairs = pairs.clone();
                let v = Value::from(self.counter);
                self.counter += 1;
                match pairs.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
                    Some(slot) => slot.1 = v,
                    None => pairs.push((Value::from(key.as_str()), v)),
                }
                w.push_value(now, &Value::Map(pairs));
            }
        }
    }

    /// Emits `num` times (one event, or a batch of `size`).
    fn emit(&mut self, num: u32, emitter: &Emitter, stop: &StopFlag) {
        if num == 0 {
            return;
        }
        if self.size <= 1 {
            let mut w = ChunkWriter::new();
            for _ in 0..num {
                self.generate_into(&mut w);
            }
            self.send(w, emitter, stop);
        } else {
            for _ in 0..num {
                if stop.is_set() {
                    return;
                }
                let mut w = ChunkWriter::new();
                for _ in 0..self.size {
                    self.generate_into(&mut w);
                }
                self.send(w, emitter, stop);
            }
        }
    }

    /// Hands a batch to the host, waiting (interruptibly) while its buffer is full.
    fn send(&mut self, w: ChunkWriter, emitter: &Emitter, stop: &StopFlag) {
        let (mut data, records) = w.finish();
        loop {
            match emitter.try_emit(&self.tag, data, records) {
                Ok(()) => {
                    self.emitted.add(f64::from(records));
                    return;
                }
                Err(rej) if rej.error.kind == ErrorKind::RETRYABLE && !rej.data.is_empty() => {
                    data = rej.data;
                    if stop.wait(RETRY_INTERVAL) {
                        return;
                    }
                }
                Err(rej) => {
                    self.errors.inc();
                    let due = self
                        .last_error_log
                        .is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
                    if due {
                        self.last_error_log = Some(Instant::now());
                        plugin_log!(
                            self.log,
                            LogLevel::WARN,
                            "sample: {records} events tagged '{}' were not accepted: {}",
                            self.tag,
                            rej.error
                        );
                    }
                    return;
                }
            }
        }
    }

    /// Fluentd's `run` loop.
    fn run(mut self, emitter: Emitter, stop: StopFlag) {
        let batch_num = self.rate / BIN_NUM;
        let residual = self.rate % BIN_NUM;
        let second = Duration::from_secs(1);
        let slot = second / BIN_NUM;
        while !stop.is_set() {
            let start = Instant::now();
            for _ in 0..BIN_NUM {
                if stop.is_set() || start.elapsed() >= second {
                    break;
                }
                let slot_start = Instant::now();
                self.emit(batch_num, &emitter, &stop);
                if stop.wait_until(slot_start + slot) {
                    return;
                }
            }
            if stop.is_set() {
                return;
            }
            self.emit(residual, &emitter, &stop);
            if stop.wait_until(start + second) {
                return;
            }
        }
    }
}

/// A stop flag that interrupts waits.
#[derive(Clone, Default)]
struct StopFlag(Arc<(Mutex<bool>, Condvar)>);

impl StopFlag {
    fn lock(&self) -> MutexGuard<'_, bool> {
        self.0
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self) {
        *self.lock() = true;
        self.0.1.notify_all();
    }

    fn is_set(&self) -> bool {
        *self.lock()
    }

    /// Waits up to `d`; returns whether stop was requested.
    fn wait(&self, d: Duration) -> bool {
        self.wait_until(Instant::now() + d)
    }

    /// Waits until `deadline`; returns whether stop was requested.
    fn wait_until(&self, deadline: Instant) -> bool {
        let mut stopped = self.lock();
        while !*stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            stopped = match self.0.1.wait_timeout(stopped, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }
}

/// The `sample` (and `dummy`) input.
pub struct Sample {
    generator: Option<Generator>,
    stop: StopFlag,
    thread: Option<JoinHandle<()>>,
}

impl Input for Sample {
    fn new(ctx: &PluginContext, config: &ConfigNode) -> Result<Self> {
        let loc = config.location.as_str();
        let conf: SampleConfig = ctx.config(config)?;
        if conf.suspend.is_some() {
            plugin_log!(
                ctx,
                LogLevel::WARN,
                "{loc}: 'suspend' parameter is deprecated: This parameter is ignored"
            );
        }
        let samples = match &conf.sample {
            Some(text) => parse_sample(text).map_err(|e| {
                error::config_error(format!("{loc}: invalid value for sample: {e}"))
            })?,
            None => vec![Value::Map(vec![(
                Value::from("message"),
                Value::from("sample"),
            )])],
        };
        if samples.is_empty() {
            return Err(error::config_error(format!(
                "{loc}: invalid value for sample: the array holds no hash"
            )));
        }
        let encoded = samples
            .iter()
            .map(|v| {
                let mut out = Vec::new();
                nagare_plugin_sdk::rmpv::encode::write_value(&mut out, v)
                    .map(|()| out)
                    .map_err(|e| error::internal(format!("encode sample: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Sample {
            generator: Some(Generator {
                tag: conf.tag,
                size: conf.size,
                rate: conf.rate,
                auto_increment_key: conf.auto_increment_key,
                samples,
                encoded,
                index: 0,
                counter: 0,
                log: ctx.logger().clone(),
                emitted: ctx.counter("records_emitted", "events emitted"),
                errors: ctx.counter("emit_errors", "batches the host did not accept"),
                last_error_log: None,
            }),
            stop: StopFlag::default(),
            thread: None,
        })
    }

    fn start(&mut self, emitter: Emitter) -> Result<()> {
        let Some(generator) = self.generator.take() else {
            return Err(error::internal("sample: started twice"));
        };
        let stop = self.stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("in_sample:{}", generator.tag))
            .spawn(move || generator.run(emitter, stop))
            .map_err(|e| error::internal(format!("sample: cannot start its thread: {e}")))?;
        self.thread = Some(handle);
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        self.stop.set();
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| error::internal("sample: the generator thread panicked"))?;
        }
        Ok(())
    }
}

impl Drop for Sample {
    fn drop(&mut self) {
        self.stop.set();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

export_plugins! {
    inputs: ["sample" => Sample, "dummy" => Sample],
}

#[cfg(test)]
mod tests;
