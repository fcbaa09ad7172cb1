//! nagare's own log lines as events: `@FLUENT_LOG` and `fluent.*` (Fluentd's `log.rb`
//! event router).
//!
//! Every host or plugin log line at or above the configured level becomes an event tagged
//! `fluent.<level>` with the record `{"message": "..."}` (plus `"plugin_id"` when the line
//! came from a plugin). The events go to `<label @FLUENT_LOG>` when the configuration has one,
//! else to the top-level router (Fluentd's deprecated `<match fluent.**>`). If nothing would
//! receive them, the sink is not created at all.
//!
//! Logging must never block or recurse: lines are queued in a bounded channel and emitted by a
//! dedicated thread; when the queue is full lines are dropped and counted; a line logged while
//! that thread emits (e.g. an output's warning about a fluent.* event) is not turned into an
//! event again.

use crate::payload::Payload;
use crate::pipeline::{Delivery, Pipeline, Wait};
use nagare_buffer::Durability;
use nagare_core::chunk::ChunkWriter;
use nagare_core::time::EventTime;
use nagare_router::LabelRef;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How many log lines may wait for the emitting thread.
const QUEUE: usize = 1024;

thread_local! {
    /// Set on the emitting thread: its own log lines are not re-emitted.
    static IN_FLUENT_LOG: Cell<bool> = const { Cell::new(false) };
}

/// One log line.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// `trace`, `debug`, `info`, `warn`, `error` or `fatal`.
    pub level: &'static str,
    /// The message.
    pub message: String,
    /// The plugin that logged it, if any.
    pub plugin_id: Option<String>,
}

/// The producer side, cheap to clone, safe to call from any thread (a tracing layer).
#[derive(Clone)]
pub struct FluentLogSink {
    tx: SyncSender<LogLine>,
    dropped: Arc<AtomicU64>,
}

impl FluentLogSink {
    /// Queues a line; never blocks. Lines logged by the emitting thread itself are ignored.
    pub fn push(&self, line: LogLine) {
        if IN_FLUENT_LOG.with(Cell::get) {
            return;
        }
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The emitting thread.
pub struct FluentLog {
    sink: FluentLogSink,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl FluentLog {
    /// Starts the emitter when the configuration would receive `fluent.*` events: a
    /// `@FLUENT_LOG` label, or a top-level `<match>` whose pattern matches `fluent.warn`.
    pub fn start(pipeline: &Arc<Pipeline>) -> Option<FluentLog> {
        let table = pipeline.table();
        let label = match table.fluent_log_label() {
            Some(l) => l,
            None => {
                // Deviation from Fluentd, on purpose: Fluentd also feeds its logs to a
                // top-level catch-all `<match **>`, which makes a stdout/forward catch-all
                // echo the collector's own lines. nagare routes them to the top level only
                // when a pattern names `fluent.*` explicitly.
                let explicit = table.outputs().any(|d| {
                    d.label == LabelRef::Root
                        && d.pattern
                            .split_whitespace()
                            .any(|p| p.starts_with("fluent.") || p == "fluent")
                });
                if !explicit || table.route(LabelRef::Root, "fluent.warn").target.is_none() {
                    return None;
                }
                LabelRef::Root
            }
        };
        let (tx, rx) = sync_channel(QUEUE);
        let p = Arc::clone(pipeline);
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("fluent-log".into())
            .spawn(move || emit_loop(&p, label, &rx, &s))
            .ok()?;
        Some(FluentLog {
            sink: FluentLogSink {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The producer handle.
    pub fn sink(&self) -> FluentLogSink {
        self.sink.clone()
    }

    /// Stops the thread after it emitted what is queued (producers may still hold sinks;
    /// their later lines are dropped). Call before outputs shut down.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = h.join();
        }
    }
}

fn emit_loop(p: &Pipeline, label: LabelRef, rx: &Receiver<LogLine>, stop: &AtomicBool) {
    IN_FLUENT_LOG.with(|f| f.set(true));
    let mut record = Vec::with_capacity(256);
    loop {
        let line = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) if !stop.load(Ordering::SeqCst) => continue,
            Err(_) => return,
        };
        record.clear();
        encode_record(&line, &mut record);
        let mut w = ChunkWriter::with_capacity(record.len() + 16);
        if w.append_raw_unchecked(EventTime::now(), &record).is_err() {
            continue;
        }
        let tag = format!("fluent.{}", line.level);
        let _ = p.emit(
            label,
            &tag,
            Payload::from_host(w.into_bytes()),
            1,
            // The collector's own log: nobody waits on its durability.
            Delivery {
                wait: Wait::NoWait,
                durability: Durability::Deferred,
            },
        );
    }
}

/// The record of a log event: `{"message": …, "plugin_id"?: …}`.
#[derive(serde::Serialize)]
struct Record<'a> {
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    plugin_id: Option<&'a str>,
}

fn encode_record(line: &LogLine, out: &mut Vec<u8>) {
    let r = Record {
        message: &line.message,
        plugin_id: line.plugin_id.as_deref(),
    };
    // Serialising two strings into a Vec cannot fail.
    let _ = nagare_core::record::encode_serde_record_into(&r, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_msgpack_maps() {
        let mut out = Vec::new();
        encode_record(
            &LogLine {
                level: "warn",
                message: "x".repeat(300),
                plugin_id: Some("out_1".into()),
            },
            &mut out,
        );
        let v = rmpv::decode::read_value(&mut out.as_slice()).expect("valid msgpack");
        let map = v.as_map().expect("a map");
        assert_eq!(map.len(), 2);
        assert_eq!(map[0].0.as_str(), Some("message"));
        assert_eq!(map[0].1.as_str().map(str::len), Some(300));
        assert_eq!(map[1].1.as_str(), Some("out_1"));
    }
}
