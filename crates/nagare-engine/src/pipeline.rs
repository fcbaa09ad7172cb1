//! The event path inside the host: route → filters → output runners.
//!
//! An input's [`Emitter`] call lands in [`Pipeline::emit`] on the input's own thread. The tag's
//! [`Route`] comes from the routing table's per-tag cache; each filter runs in order on that
//! thread (a filter that keeps every event returns `Unchanged` and costs no copy); the target
//! is an output's buffer ([`BufferedRunner`]: `overflow_action` decides what a full buffer
//! does), every store of an `out_copy`, or another label (`out_relabel`). `Ok` from `emit`
//! means every destination accepted the events (durable there for a file buffer), which is
//! when in_forward sends its ack; a buffer that refuses (`throw_exception`, shutting down)
//! gives the input a retryable error, so it does not ack and the client retries.
//!
//! Errors follow Fluentd: a filter that rejects events sends them to the `@ERROR` label when
//! the configuration has one; without it they are logged and dropped, except a retryable
//! filter error, which goes back to the input (no ack, so the client resends). Records a buffer
//! refuses for being larger than a whole chunk go to `@ERROR` too (or are logged as dropped).
//! An output's failed writes are the buffer's business: retries, `<secondary>`, backup.
//!
//! [`Emitter`]: nagare_plugin_api::Emitter

use crate::buffered::BufferedRunner;
use crate::output::{Batch, chunk_ref};
use crate::payload::Payload;
use nagare_buffer::Durability;
use nagare_plugin_api::{ErrorKind, FilterBox, FilterOutcome, PluginError};
use nagare_router::{LabelRef, NoMatchReporter, RoutingTable, Target};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How deep relabel / @ERROR re-emits may nest before the host refuses (a runtime loop guard;
/// loops that are certain are refused when the config loads).
const MAX_RELABEL_DEPTH: u32 = 16;

/// One filter instance.
pub struct FilterInstance {
    /// `@id` or generated id.
    pub plugin_id: String,
    /// `@type`.
    pub type_name: String,
    /// The plugin object.
    pub filter: FilterBox,
}

/// The running event graph.
pub struct Pipeline {
    table: RoutingTable,
    filters: Vec<FilterInstance>,
    outputs: Vec<Arc<BufferedRunner>>,
    error_label: Option<LabelRef>,
    no_match: Mutex<NoMatchReporter>,
    /// Events that matched no `<match>` and were dropped.
    pub unmatched_events: AtomicU64,
    /// Events sent to `@ERROR` (or dropped for lack of it).
    pub error_events: AtomicU64,
}

/// Whether `emit` may wait for space.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Wait {
    /// Let a full destination buffer apply its `overflow_action` (`block` waits).
    Block,
    /// Fail with a retryable error instead of waiting.
    NoWait,
}

/// How an emitted batch is delivered to buffered outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// What a full destination buffer does.
    pub wait: Wait,
    /// Whether the caller needs the events durable (fsynced) when the emit returns.
    pub durability: Durability,
}

impl Delivery {
    /// Waits for room and for durability: what an input that acks its sender needs.
    pub const DURABLE: Delivery = Delivery {
        wait: Wait::Block,
        durability: Durability::Now,
    };
}

impl Pipeline {
    /// Assembles a pipeline from instantiated filters and started output runners, indexed
    /// like `table.filters()` and `table.outputs()`.
    pub fn new(
        table: RoutingTable,
        filters: Vec<FilterInstance>,
        outputs: Vec<Arc<BufferedRunner>>,
    ) -> Self {
        let error_label = table.error_label();
        Pipeline {
            table,
            filters,
            outputs,
            error_label,
            no_match: Mutex::new(NoMatchReporter::new(1024)),
            unmatched_events: AtomicU64::new(0),
            error_events: AtomicU64::new(0),
        }
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// The output runners, indexed like `table().outputs()`.
    pub fn outputs(&self) -> &[Arc<BufferedRunner>] {
        &self.outputs
    }

    /// Whether emitting `tag` into `label` now would not be taken at once by a full output
    /// buffer (it would wait, or be refused or make room by `overflow_action`).
    pub fn would_block(&self, label: LabelRef, tag: &str) -> bool {
        self.any_output(label, tag, &|r| r.is_full())
    }

    /// Whether emitting `tag` into `label` now would wait for room in an output buffer with
    /// `overflow_action block` (what an input may wait out without holding a thread).
    pub fn would_wait(&self, label: LabelRef, tag: &str) -> bool {
        self.any_output(label, tag, &|r| r.would_wait())
    }

    /// Whether `pred` holds for an output that events tagged `tag` in `label` reach.
    fn any_output(
        &self,
        label: LabelRef,
        tag: &str,
        pred: &dyn Fn(&BufferedRunner) -> bool,
    ) -> bool {
        let route = self.table.route(label, tag);
        route
            .target
            .as_ref()
            .is_some_and(|t| self.target_any(t, tag, pred, 0))
    }

    fn target_any(
        &self,
        target: &Target,
        tag: &str,
        pred: &dyn Fn(&BufferedRunner) -> bool,
        depth: u32,
    ) -> bool {
        if depth > MAX_RELABEL_DEPTH {
            return false;
        }
        match target {
            Target::Output(id) => self.outputs.get(id.0).is_some_and(|r| pred(r)),
            Target::Copy { stores, .. } => stores
                .iter()
                .any(|s| self.target_any(&s.target, tag, pred, depth)),
            Target::Relabel(label) => self
                .table
                .route(*label, tag)
                .target
                .as_ref()
                .is_some_and(|t| self.target_any(t, tag, pred, depth + 1)),
        }
    }

    /// Routes a batch emitted in `label` (the root router for `LabelRef::Root`).
    pub fn emit(
        &self,
        label: LabelRef,
        tag: &str,
        data: Payload,
        records: u32,
        how: Delivery,
    ) -> Result<(), PluginError> {
        self.emit_at(label, tag, data, records, how, 0)
    }

    fn emit_at(
        &self,
        label: LabelRef,
        tag: &str,
        mut data: Payload,
        mut records: u32,
        how: Delivery,
        depth: u32,
    ) -> Result<(), PluginError> {
        if depth > MAX_RELABEL_DEPTH {
            return Err(PluginError::new(
                ErrorKind::UNRECOVERABLE,
                format!(
                    "events tagged '{tag}' were relabeled more than {MAX_RELABEL_DEPTH} times: a routing loop"
                ),
            ));
        }
        let route = self.table.route(label, tag);
        for fid in &route.filters {
            let Some(f) = self.filters.get(fid.0) else {
                continue;
            };
            let batch = Batch {
                tag: Arc::from(tag),
                data: data.clone(),
                records,
            };
            match f.filter.filter(chunk_ref(&batch)).into_result() {
                Ok(FilterOutcome::Unchanged) => {}
                Ok(FilterOutcome::Dropped) => return Ok(()),
                Ok(FilterOutcome::Replaced {
                    records: n,
                    data: d,
                }) => {
                    if n == 0 {
                        return Ok(());
                    }
                    records = n;
                    data = Payload::from_plugin(d);
                }
                Err(e) => {
                    tracing::warn!(
                        plugin_id = %f.plugin_id,
                        "filter {} failed on {records} events tagged '{tag}': {e}",
                        f.type_name
                    );
                    // A retryable failure goes back to the input (no ack: the client resends);
                    // anything else is about these events and would fail again: @ERROR, or
                    // Fluentd's "dump an error event" and drop.
                    let propagate = (e.kind == ErrorKind::RETRYABLE).then(|| e.clone());
                    return self.to_error_label(tag, data, records, &e, depth, propagate);
                }
            }
        }
        match &route.target {
            None => {
                self.report_no_match(label, tag, records);
                Ok(())
            }
            Some(target) => self.deliver(target, tag, data, records, how, depth),
        }
    }

    fn deliver(
        &self,
        target: &Target,
        tag: &str,
        data: Payload,
        records: u32,
        how: Delivery,
        depth: u32,
    ) -> Result<(), PluginError> {
        match target {
            Target::Output(id) => self.submit(id.0, tag, data, records, how),
            Target::Relabel(label) => self.emit_at(*label, tag, data, records, how, depth + 1),
            // Records are immutable bytes here, so every copy_mode shares them safely.
            Target::Copy { stores, .. } => {
                let mut prev_ok = false;
                for store in stores {
                    if store.ignore_if_prev_success && prev_ok {
                        continue;
                    }
                    let r = self.deliver(&store.target, tag, data.clone(), records, how, depth);
                    match r {
                        Ok(()) => prev_ok = true,
                        Err(e) if store.ignore_error => {
                            prev_ok = false;
                            tracing::warn!("copy store ignored an error (ignore_error): {e}");
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
        }
    }

    fn submit(
        &self,
        output: usize,
        tag: &str,
        data: Payload,
        records: u32,
        how: Delivery,
    ) -> Result<(), PluginError> {
        let Some(runner) = self.outputs.get(output) else {
            return Err(PluginError::new(
                ErrorKind::INTERNAL,
                format!("no output #{output}"),
            ));
        };
        let r = match how.wait {
            Wait::Block => runner.submit_with(tag, &data, records, how.durability),
            Wait::NoWait => runner.try_submit_with(tag, &data, records, how.durability),
        };
        r.map_err(|e| e.to_plugin_error())
    }

    /// Sends rejected events to `@ERROR`, or reports them dropped. `propagate` is returned to
    /// the caller when there is no `@ERROR` label (a filter error goes back to the input).
    fn to_error_label(
        &self,
        tag: &str,
        data: Payload,
        records: u32,
        why: &PluginError,
        depth: u32,
        propagate: Option<PluginError>,
    ) -> Result<(), PluginError> {
        self.error_events
            .fetch_add(u64::from(records), Ordering::Relaxed);
        match self.error_label {
            Some(label) if depth < MAX_RELABEL_DEPTH => {
                tracing::warn!(
                    "send an error event stream to @ERROR: {records} events tagged '{tag}' ({why})"
                );
                self.emit_at(label, tag, data, records, Delivery::DURABLE, depth + 1)
            }
            _ => match propagate {
                Some(e) => Err(e),
                None => {
                    tracing::error!("dropped {records} events tagged '{tag}': {why}");
                    Ok(())
                }
            },
        }
    }

    /// Called by output runners with events their buffer refused for good.
    pub fn output_rejected(&self, batch: Batch, why: &PluginError) {
        let _ = self.to_error_label(&batch.tag, batch.data, batch.records, why, 1, None);
    }

    fn report_no_match(&self, label: LabelRef, tag: &str, records: u32) {
        self.unmatched_events
            .fetch_add(u64::from(records), Ordering::Relaxed);
        if label != LabelRef::Root
            && self
                .table
                .labels()
                .iter()
                .position(|l| l.suppresses_no_match())
                .is_some_and(|i| label == LabelRef::Named(i))
        {
            return;
        }
        let warn = self
            .no_match
            .lock()
            .map(|mut r| r.record(tag))
            .unwrap_or(false);
        if warn {
            tracing::warn!("no patterns matched tag=\"{tag}\"");
        }
    }
}
