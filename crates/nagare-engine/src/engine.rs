//! Building the running collector from a configuration, starting it, and the ordered shutdown.
//!
//! [`Engine::build`] instantiates every plugin (so `--dry-run` checks every plugin's
//! parameters, as Fluentd's does) without opening any socket or file. [`Engine::start`] starts
//! outputs first (opening their buffers: a file buffer resumes its chunks), then inputs.
//! [`Running::shutdown`] stops inputs (no new events), flushes every output's buffer (per
//! `flush_at_shutdown`), then stops outputs: the order of `plugin-abi.md` §2.3.
//!
//! Every output runs behind a [`BufferedRunner`]: its `<buffer>` section (or v0.12 flat
//! parameters, or per-type defaults, see [`plan_buffer`]) becomes a `nagare-buffer`, and a
//! `<secondary>` is built through the registry like any output.

use crate::buffered::{BufferPlan, BufferedRunner, RunnerSpec, SecondaryOutput, plan_buffer};
use crate::convert::to_config_node;
use crate::output::Batch;
use crate::payload::Payload;
use crate::pipeline::{Delivery, FilterInstance, Pipeline, Wait};
use crate::registry::Registry;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RResult, Tuple2};
use nagare_buffer::Durability;
use nagare_buffer::{BufferOptions, BufferType};
use nagare_config::Element;
use nagare_plugin_api::{
    Emitter, Emitter_TO, EmitterBox, ErrorKind, EventBatch, InputBox, PluginError,
};
use nagare_router::{LabelRef, RoutingTable};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, Weak};

/// Why the collector could not be built or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A plugin could not be created (unknown `@type`, bad parameters).
    #[error("{location}: cannot create {directive} plugin '{type_name}'{id}: {message}")]
    Plugin {
        /// `file:line` of the directive.
        location: String,
        /// `source`, `filter`, `match` or `store`.
        directive: &'static str,
        /// `@type`.
        type_name: String,
        /// ` (@id x)` or empty.
        id: String,
        /// What went wrong.
        message: String,
    },
    /// An output's buffer configuration is invalid.
    #[error("{location}: <buffer> of output '{plugin_id}' ({type_name}): {message}")]
    Buffer {
        /// `file:line` of the `<match>` (or `<store>`).
        location: String,
        /// The output's id.
        plugin_id: String,
        /// `@type`.
        type_name: String,
        /// What is wrong (Fluentd's wording where it has one).
        message: String,
    },
    /// A plugin failed to start.
    #[error("plugin {plugin_id} ({type_name}) failed to start: {message}")]
    Start {
        /// The plugin's id.
        plugin_id: String,
        /// `@type`.
        type_name: String,
        /// What went wrong.
        message: String,
    },
}

struct InputSlot {
    plugin_id: String,
    type_name: String,
    input: InputBox,
    label: LabelRef,
}

/// A built, not yet started collector.
pub struct Engine {
    pipeline: Arc<Pipeline>,
    inputs: Vec<InputSlot>,
}

/// A started collector.
pub struct Running {
    pipeline: Arc<Pipeline>,
    inputs: Vec<InputSlot>,
}

/// Fluentd's generated id for a plugin without `@id`.
fn generated_id(kind: &str, n: usize) -> String {
    format!("object:{kind}{n:x}")
}

/// The element handed to an output plugin: its own, minus the v0.12 flat buffer parameters
/// the host consumed.
fn plugin_element(element: &Element, plan: &BufferPlan) -> Element {
    if plan.consumed.is_empty() {
        return element.clone();
    }
    let mut e = element.clone();
    e.attrs.retain(|a| !plan.consumed.contains(&a.key));
    e
}

/// The directory a file buffer uses, to refuse two outputs sharing one.
fn file_buffer_dir(plan: &BufferPlan, root: Option<&PathBuf>, plugin_id: &str) -> Option<PathBuf> {
    if plan.config.buffer_type != BufferType::File {
        return None;
    }
    match (&plan.config.path, root) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(r)) => Some(r.join("worker0").join(plugin_id).join("buffer")),
        (None, None) => None,
    }
}

impl Engine {
    /// Instantiates every plugin the routing table names.
    pub fn build(
        root: &Element,
        table: RoutingTable,
        registry: &Registry,
    ) -> Result<Engine, EngineError> {
        let root_dir = crate::buffered::root_dir(root);
        let mut filters = Vec::new();
        for (i, d) in table.filters().enumerate() {
            let id = d.id.clone().unwrap_or_else(|| generated_id("filter", i));
            let node = with_system(to_config_node(&d.element), root_dir.as_deref());
            let f = registry
                .new_filter(
                    &d.type_name,
                    &id,
                    &node,
                    registry.host_for(&id, &d.type_name),
                )
                .map_err(|e| plugin_error(d.location(), "filter", &d.type_name, &d.id, e))?;
            filters.push(FilterInstance {
                plugin_id: id,
                type_name: d.type_name.clone(),
                filter: f,
            });
        }

        // Output runners report rejected batches to the pipeline, which owns them: the cell
        // is filled once the pipeline exists.
        let cell: Arc<OnceLock<Weak<Pipeline>>> = Arc::new(OnceLock::new());
        let mut buffer_dirs: HashMap<PathBuf, String> = HashMap::new();
        let mut outputs = Vec::new();
        for (i, d) in table.outputs().enumerate() {
            let id = d.id.clone().unwrap_or_else(|| generated_id("output", i));
            let buffer_error = |message: String| EngineError::Buffer {
                location: d.location().to_string(),
                plugin_id: id.clone(),
                type_name: d.type_name.clone(),
                message,
            };
            let plan = plan_buffer(&d.type_name, &d.element, root_dir.is_some())
                .map_err(|e| buffer_error(e.message))?;
            if plan.config.buffer_type == BufferType::File
                && plan.config.path.is_none()
                && root_dir.is_none()
            {
                return Err(buffer_error(
                    "buffer path is not configured. specify 'path' in <buffer>, or set <system> root_dir"
                        .to_string(),
                ));
            }
            if let Some(dir) = file_buffer_dir(&plan, root_dir.as_ref(), &id) {
                if let Some(other) = buffer_dirs.get(&dir) {
                    return Err(buffer_error(format!(
                        "Other '{other}' plugin already use same buffer path: {}",
                        dir.display()
                    )));
                }
                buffer_dirs.insert(dir, id.clone());
            }
            for note in &plan.notes {
                tracing::warn!(plugin_id = %id, "{}: {note}", d.location());
            }
            tracing::debug!(plugin_id = %id, "{}", crate::buffered::describe(&plan.config));
            let node = with_system(
                to_config_node(&plugin_element(&d.element, &plan)),
                root_dir.as_deref(),
            );
            let o = registry
                .new_output(
                    &d.type_name,
                    &id,
                    &node,
                    registry.host_for(&id, &d.type_name),
                )
                .map_err(|e| plugin_error(d.location(), "match", &d.type_name, &d.id, e))?;
            let secondary = match d.element.children("secondary").next() {
                None => None,
                Some(sec) => {
                    let sec_type = sec
                        .type_name()
                        .map(str::to_string)
                        .unwrap_or_else(|| d.type_name.clone());
                    let sec_id = sec
                        .id()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("{id}.secondary"));
                    // A <secondary> may not contain <buffer> in a config file; the host hands
                    // it the primary's, so placeholders can be checked against the primary's
                    // chunk keys at start-up as Fluentd does.
                    let mut sec_node = to_config_node(sec);
                    if let Some(b) = d.element.children("buffer").last() {
                        sec_node.children.push(to_config_node(b));
                    }
                    let output = registry
                        .new_output(
                            &sec_type,
                            &sec_id,
                            &sec_node,
                            registry.host_for(&sec_id, &sec_type),
                        )
                        .map_err(|e| {
                            plugin_error(
                                &sec.location,
                                "secondary",
                                &sec_type,
                                &sec.id().map(str::to_string),
                                e,
                            )
                        })?;
                    // secondary_file is made to be a secondary of anything (Fluentd's
                    // `acts_as_secondary`); another type should be the primary's.
                    if sec_type != d.type_name && sec_type != "secondary_file" {
                        tracing::warn!(plugin_id = %id, primary = %d.type_name, secondary = %sec_type, "secondary type should be same with primary one");
                    }
                    Some(SecondaryOutput {
                        plugin_id: sec_id,
                        type_name: sec_type,
                        output,
                    })
                }
            };
            if secondary.is_some() && plan.config.retry.forever {
                return Err(buffer_error(
                    "<secondary> section and 'retry_forever' are exclusive".to_string(),
                ));
            }
            let spec = RunnerSpec {
                plugin_id: id.clone(),
                type_name: d.type_name.clone(),
                buffer: plan.config,
                options: BufferOptions {
                    plugin_id: id.clone(),
                    root_dir: root_dir.clone(),
                    ..BufferOptions::default()
                },
            };
            let c = Arc::clone(&cell);
            let on_error = Arc::new(move |b: Batch, e: &PluginError| {
                if let Some(p) = c.get().and_then(Weak::upgrade) {
                    p.output_rejected(b, e);
                }
            });
            outputs.push(Arc::new(BufferedRunner::new(spec, o, secondary, on_error)));
        }

        let mut inputs = Vec::new();
        for (i, s) in table.sources().iter().enumerate() {
            let id = s.id.clone().unwrap_or_else(|| generated_id("input", i));
            let node = with_system(to_config_node(&s.element), root_dir.as_deref());
            let input = registry
                .new_input(
                    &s.type_name,
                    &id,
                    &node,
                    registry.host_for(&id, &s.type_name),
                )
                .map_err(|e| plugin_error(&s.element.location, "source", &s.type_name, &s.id, e))?;
            inputs.push(InputSlot {
                plugin_id: id,
                type_name: s.type_name.clone(),
                input,
                label: s.label,
            });
        }

        let pipeline = Arc::new(Pipeline::new(table, filters, outputs));
        let _ = cell.set(Arc::downgrade(&pipeline));
        Ok(Engine { pipeline, inputs })
    }

    /// The event graph (for inspection and tests).
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// Starts outputs, then inputs. On failure everything already started is stopped again.
    pub fn start(self) -> Result<Running, EngineError> {
        let Engine {
            pipeline,
            mut inputs,
        } = self;
        for (i, r) in pipeline.outputs().iter().enumerate() {
            if let Err(e) = r.start() {
                for started in &pipeline.outputs()[..i] {
                    let _ = started.shutdown();
                }
                let d = pipeline.table().output(nagare_router::OutputId(i));
                return Err(EngineError::Start {
                    plugin_id: d.and_then(|d| d.id.clone()).unwrap_or_default(),
                    type_name: d.map(|d| d.type_name.clone()).unwrap_or_default(),
                    message: e.to_string(),
                });
            }
        }
        let mut started = 0;
        let mut failure = None;
        for slot in inputs.iter_mut() {
            let emitter = HostEmitter {
                pipeline: Arc::clone(&pipeline),
                label: slot.label,
            };
            let boxed: EmitterBox = Emitter_TO::from_ptr(RArc::new(emitter), TD_Opaque);
            if let Err(e) = slot.input.start(boxed).into_result() {
                failure = Some(EngineError::Start {
                    plugin_id: slot.plugin_id.clone(),
                    type_name: slot.type_name.clone(),
                    message: e.to_string(),
                });
                break;
            }
            started += 1;
        }
        let mut running = Running { pipeline, inputs };
        if let Some(e) = failure {
            running.stop_inputs(started);
            running.stop_outputs();
            return Err(e);
        }
        Ok(running)
    }
}

impl Running {
    /// The event graph.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// Stops the first `n` inputs (all of them at shutdown): no emit follows.
    fn stop_inputs(&mut self, n: usize) {
        for slot in self.inputs.iter_mut().take(n) {
            if let Err(e) = slot.input.stop().into_result() {
                tracing::error!(
                    plugin_id = %slot.plugin_id,
                    "input {} failed to stop: {e}",
                    slot.type_name
                );
            }
        }
    }

    fn stop_outputs(&self) {
        for r in self.pipeline.outputs() {
            if let Err(e) = r.shutdown() {
                tracing::error!("output failed to stop: {e}");
            }
        }
    }

    /// Stops inputs, drains and flushes outputs, stops outputs.
    pub fn shutdown(mut self) {
        let n = self.inputs.len();
        self.stop_inputs(n);
        self.stop_outputs();
    }
}

/// Hands a plugin the `<system>` settings it may need as reserved params: `@root_dir` (where
/// Fluentd plugins keep their state: buffers, storage, nagare's resend window).
fn with_system(
    mut node: nagare_plugin_api::ConfigNode,
    root_dir: Option<&std::path::Path>,
) -> nagare_plugin_api::ConfigNode {
    if let Some(dir) = root_dir {
        node.attrs.push(abi_stable::std_types::Tuple2(
            "@root_dir".into(),
            abi_stable::std_types::ROption::RSome(dir.display().to_string().into()),
        ));
    }
    node
}

fn plugin_error(
    location: &nagare_config::Location,
    directive: &'static str,
    type_name: &str,
    id: &Option<String>,
    e: impl std::fmt::Display,
) -> EngineError {
    EngineError::Plugin {
        location: location.to_string(),
        directive,
        type_name: type_name.to_string(),
        id: id
            .as_ref()
            .map(|i| format!(" (@id {i})"))
            .unwrap_or_default(),
        message: e.to_string(),
    }
}

/// The [`Emitter`] handed to each input: routes into the input's label.
#[derive(Clone)]
struct HostEmitter {
    pipeline: Arc<Pipeline>,
    label: LabelRef,
}

impl HostEmitter {
    fn label_for(&self, batch: &EventBatch) -> Result<LabelRef, PluginError> {
        if batch.label.is_empty() {
            return Ok(self.label);
        }
        if batch.label.as_str() == nagare_router::ROOT_LABEL {
            return Ok(LabelRef::Root);
        }
        self.pipeline
            .table()
            .label_by_name(batch.label.as_str())
            .ok_or_else(|| {
                PluginError::new(
                    ErrorKind::UNRECOVERABLE,
                    format!("emit into undefined label {}", batch.label),
                )
            })
    }
}

impl Emitter for HostEmitter {
    fn emit(&self, batch: EventBatch) -> RResult<(), PluginError> {
        let label = match self.label_for(&batch) {
            Ok(l) => l,
            Err(e) => return RResult::RErr(e),
        };
        let EventBatch {
            tag, records, data, ..
        } = batch;
        self.pipeline
            .emit(
                label,
                tag.as_str(),
                Payload::from_plugin(data),
                records,
                Delivery::DURABLE,
            )
            .into()
    }

    fn try_emit(&self, batch: EventBatch) -> RResult<(), Tuple2<EventBatch, PluginError>> {
        let label = match self.label_for(&batch) {
            Ok(l) => l,
            Err(e) => return RResult::RErr(Tuple2(batch, e)),
        };
        if batch.records == 0 && batch.data.is_empty() {
            // A probe (see the trait's docs): nothing is routed.
            if self.pipeline.would_wait(label, batch.tag.as_str()) {
                let e = PluginError::new(ErrorKind::RETRYABLE, "the output's buffer is full");
                return RResult::RErr(Tuple2(batch, e));
            }
            return RResult::ROk(());
        }
        if self.pipeline.would_block(label, batch.tag.as_str()) {
            let e = PluginError::new(ErrorKind::RETRYABLE, "the output's buffer is full");
            return RResult::RErr(Tuple2(batch, e));
        }
        // There is room now; a concurrent emitter may still take it first, in which case this
        // waits briefly rather than dropping or handing back bytes already routed.
        let EventBatch {
            tag, records, data, ..
        } = batch;
        match self.pipeline.emit(
            label,
            tag.as_str(),
            Payload::from_plugin(data),
            records,
            Delivery {
                wait: Wait::Block,
                durability: Durability::Deferred,
            },
        ) {
            Ok(()) => RResult::ROk(()),
            // The events were handed on (e.g. a filter failed after routing started): nothing
            // is left to give back but the tag.
            Err(e) => RResult::RErr(Tuple2(
                EventBatch {
                    tag,
                    records: 0,
                    format: nagare_plugin_api::ChunkFormat::MSGPACK_STREAM,
                    data: abi_stable::std_types::RVec::new(),
                    label: abi_stable::std_types::RString::new(),
                },
                e,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn keys_handed_to_the_plugin(body: &str) -> Vec<String> {
        let text = format!("<match **>\n  @type file\n  path /out/a\n{body}</match>\n");
        let root = nagare_config::parse_str(&text, Path::new("t.conf")).expect("parses");
        let e = &root.elements[0];
        let plan = plan_buffer("file", e, false).expect("plan");
        plugin_element(e, &plan)
            .attrs
            .iter()
            .map(|a| a.key.clone())
            .collect()
    }

    #[test]
    fn the_plugin_does_not_see_the_flat_buffer_params_the_host_consumed() {
        let cases: &[(&str, &[&str])] = &[
            ("", &["@type", "path"]),
            (
                "  buffer_path /b\n  flush_interval 5s\n  time_slice_format %Y%m%d%H\n  utc\n",
                &["@type", "path", "time_slice_format", "utc"],
            ),
            (
                "  flush_interval 5s\n  <buffer time>\n    timekey 1h\n  </buffer>\n",
                &["@type", "path"],
            ),
        ];
        for (body, expect) in cases {
            assert_eq!(keys_handed_to_the_plugin(body), *expect, "{body:?}");
        }
    }

    #[test]
    fn file_buffer_dirs_come_from_path_or_root_dir() {
        let text =
            "<match **>\n  @type forward\n  <buffer>\n    @type file\n  </buffer>\n</match>\n";
        let root = nagare_config::parse_str(text, Path::new("t.conf")).expect("parses");
        let plan = plan_buffer("forward", &root.elements[0], true).expect("plan");
        let r = PathBuf::from("/var/lib/nagare");
        assert_eq!(
            file_buffer_dir(&plan, Some(&r), "fwd"),
            Some(PathBuf::from("/var/lib/nagare/worker0/fwd/buffer"))
        );
        assert_eq!(file_buffer_dir(&plan, None, "fwd"), None);
    }
}
