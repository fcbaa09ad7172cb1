//! `out_stdout` (`@type stdout`): prints every event the way Fluentd does.
//!
//! Default (`<format> @type stdout`, `output_type json`):
//! `2026-11-26 12:00:00.123456789 +0000 tag: {"k":"v"}`, the time in the local zone
//! (honouring `TZ`) unless `<format>` says `utc true` or `timezone +09:00`.
//! Other formats: `<format> @type json` (one JSON object per line), `@type hash` and
//! `output_type hash` (Ruby's `Hash#inspect`), `@type single_value` (`message_key`).
//! The flat v0.12 parameter `output_type` is accepted too. Each chunk is rendered completely,
//! then written to stdout under its lock and flushed: lines of concurrent chunks never mix.

pub mod format;

use nagare_plugin_sdk::rmpv::Value;
use nagare_plugin_sdk::{Chunk, ConfigNode, Output, PluginContext, Result, error, export_plugins};
use serde::Deserialize;

use crate::format::{Zone, parse_offset, write_json, write_ruby_inspect, write_time};

/// The formatter `@type`s this plugin renders.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FormatType {
    /// `time tag: record` (Fluentd's default for out_stdout).
    #[default]
    Stdout,
    /// One JSON object per line.
    Json,
    /// Ruby's `Hash#inspect`, one per line.
    Hash,
    /// The value of `message_key`, one per line.
    SingleValue,
}

/// How the `stdout` format renders the record.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutputType {
    /// Compact JSON.
    #[default]
    Json,
    /// Ruby's `Hash#inspect`.
    Hash,
}

/// The `<format>` section.
#[derive(Debug, Default, Deserialize)]
pub struct FormatConfig {
    /// The formatter.
    #[serde(rename = "@type", default)]
    pub kind: FormatType,
    /// For `@type stdout`: how to render the record.
    #[serde(default)]
    pub output_type: Option<OutputType>,
    /// Print times in UTC.
    #[serde(default)]
    pub utc: bool,
    /// Print times in the local zone (the default; `false` means UTC, as in Fluentd).
    #[serde(default)]
    pub localtime: Option<bool>,
    /// Print times at this fixed offset (`+09:00`, `-0530`, `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// For `single_value`: the field to print.
    #[serde(default = "default_message_key")]
    pub message_key: String,
    /// For `json`/`single_value`/`hash`: end each event with a newline.
    #[serde(default = "default_true")]
    pub add_newline: bool,
}

fn default_message_key() -> String {
    "message".to_owned()
}

fn default_true() -> bool {
    true
}

/// `out_stdout`'s parameters.
#[derive(Debug, Deserialize)]
pub struct StdoutConfig {
    /// v0.12-style flat `output_type` (used when `<format>` does not set one).
    #[serde(default)]
    pub output_type: Option<OutputType>,
    /// The `<format>` section.
    #[serde(default)]
    pub format: Option<FormatConfig>,
}

/// The resolved rendering settings.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Render {
    kind: FormatType,
    output_type: OutputType,
    zone: Zone,
    message_key: String,
    add_newline: bool,
}

impl Render {
    fn from_config(conf: StdoutConfig, location: &str) -> Result<Self> {
        let format = conf.format.unwrap_or_default();
        let zone = match (&format.timezone, format.utc, format.localtime) {
            (Some(tz), _, _) => Zone::Fixed(parse_offset(tz).ok_or_else(|| {
                error::config_error(format!(
                    "{location}: invalid value for timezone: '{tz}' (expected an offset like +09:00 or UTC)"
                ))
            })?),
            (None, true, _) | (None, false, Some(false)) => {
                Zone::Fixed(parse_offset("UTC").ok_or_else(|| error::internal("UTC offset"))?)
            }
            _ => Zone::Local,
        };
        Ok(Render {
            kind: format.kind,
            output_type: format.output_type.or(conf.output_type).unwrap_or_default(),
            zone,
            message_key: format.message_key,
            add_newline: format.add_newline,
        })
    }

    /// Appends one event.
    fn event(
        &self,
        out: &mut String,
        tag: &str,
        time: nagare_plugin_sdk::EventTime,
        record: &Value,
    ) {
        let record_text = |out: &mut String, ty: OutputType| match ty {
            OutputType::Json => write_json(out, record),
            OutputType::Hash => write_ruby_inspect(out, record),
        };
        match self.kind {
            FormatType::Stdout => {
                write_time(out, time, self.zone);
                out.push(' ');
                out.push_str(tag);
                out.push_str(": ");
                record_text(out, self.output_type);
                out.push('\n');
                return;
            }
            FormatType::Json => record_text(out, OutputType::Json),
            FormatType::Hash => record_text(out, OutputType::Hash),
            FormatType::SingleValue => {
                let field = match record {
                    Value::Map(m) => m
                        .iter()
                        .find(|(k, _)| k.as_str() == Some(&self.message_key)),
                    _ => None,
                };
                match field.map(|(_, v)| v) {
                    Some(Value::String(s)) => out.push_str(&String::from_utf8_lossy(s.as_bytes())),
                    Some(Value::Nil) | None => {}
                    Some(other) => write_json(out, other),
                }
            }
        }
        if self.add_newline {
            out.push('\n');
        }
    }
}

/// The `stdout` output.
pub struct Stdout {
    render: Render,
}

impl Output for Stdout {
    fn new(ctx: &PluginContext, config: &ConfigNode) -> Result<Self> {
        let conf: StdoutConfig = ctx.config(config)?;
        Ok(Stdout {
            render: Render::from_config(conf, config.location.as_str())?,
        })
    }

    fn write(&self, chunk: Chunk<'_>) -> Result<()> {
        let text = self.render_chunk(&chunk)?;
        sink::write(text.as_bytes()).map_err(|e| {
            error::retryable(format!(
                "stdout: cannot write chunk {}: {e}",
                chunk.id_hex()
            ))
        })
    }
}

impl Stdout {
    /// Renders every event of `chunk`; a malformed chunk is unrecoverable (nothing printed).
    fn render_chunk(&self, chunk: &Chunk<'_>) -> Result<String> {
        let bad = |e: nagare_plugin_sdk::chunk::ChunkError| {
            error::unrecoverable(format!(
                "stdout: chunk {} (tag {}): {e}",
                chunk.id_hex(),
                chunk.tag()
            ))
        };
        let mut out = String::with_capacity(chunk.bytes().len() * 2);
        for entry in chunk.entries().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            let record = entry.value().map_err(bad)?;
            self.render
                .event(&mut out, chunk.tag(), entry.time, &record);
        }
        Ok(out)
    }
}

#[cfg(not(test))]
mod sink {
    use std::io::Write as _;

    /// Writes to stdout under its lock and flushes.
    pub fn write(bytes: &[u8]) -> std::io::Result<()> {
        let mut lock = std::io::stdout().lock();
        lock.write_all(bytes)?;
        lock.flush()
    }
}

/// In unit tests the plugin's writes land in a per-thread buffer instead of the real stdout.
#[cfg(test)]
mod sink {
    use std::cell::RefCell;

    thread_local! {
        static CAPTURED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }

    pub fn write(bytes: &[u8]) -> std::io::Result<()> {
        CAPTURED.with(|c| c.borrow_mut().extend_from_slice(bytes));
        Ok(())
    }

    /// Takes what this thread wrote.
    pub fn take() -> String {
        CAPTURED
            .with(|c| String::from_utf8_lossy(&std::mem::take(&mut *c.borrow_mut())).into_owned())
    }
}

export_plugins! {
    outputs: ["stdout" => Stdout],
}

#[cfg(test)]
mod tests;
