//! `out_stdout` (`@type stdout`): prints every event the way Fluentd does.
//!
//! Default (`<format> @type stdout`, `output_type json`):
//! `2026-11-26 12:00:00.123456789 +0000 tag: {"k":"v"}`, the time in the local zone
//! (honouring `TZ`) unless `<format>` says `utc true` or `timezone +09:00`.
//! Other formats: `<format> @type json` (one JSON object per line), `@type hash` and
//! `output_type hash` (Ruby 3.4's `Hash#inspect`, `{"k" => "v"}`), `@type single_value`
//! (`message_key`). The flat v0.12 parameter `output_type` is accepted too. Every rendering is
//! `nagare-formats`' formatter of that name; this plugin only checks its parameters.
//! Each chunk is rendered completely, then written to stdout under its lock and flushed:
//! lines of concurrent chunks never mix.

use nagare_formats::time::Zone;
use nagare_formats::{Formatter, Params, build_formatter};
use nagare_plugin_sdk::chunk::ChunkError;
use nagare_plugin_sdk::rmpv::Value;
use nagare_plugin_sdk::{
    Chunk, ChunkReader, ConfigNode, Output, PluginContext, Result, error, export_plugins,
};
use serde::Deserialize;

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

impl FormatType {
    /// The `nagare-formats` formatter name.
    fn name(self) -> &'static str {
        match self {
            FormatType::Stdout => "stdout",
            FormatType::Json => "json",
            FormatType::Hash => "hash",
            FormatType::SingleValue => "single_value",
        }
    }
}

impl OutputType {
    /// The `nagare-formats` sub-formatter name.
    fn name(self) -> &'static str {
        match self {
            OutputType::Json => "json",
            OutputType::Hash => "hash",
        }
    }
}

/// The resolved rendering: the `nagare-formats` formatter the config names.
#[derive(Debug)]
struct Render {
    formatter: Box<dyn Formatter>,
}

impl Render {
    fn from_config(conf: StdoutConfig, location: &str) -> Result<Self> {
        let format = conf.format.unwrap_or_default();
        let mut params = Params::new()
            .with("@type", format.kind.name())
            .with(
                "output_type",
                format
                    .output_type
                    .or(conf.output_type)
                    .unwrap_or_default()
                    .name(),
            )
            .with("message_key", format.message_key.as_str())
            .with(
                "add_newline",
                if format.add_newline { "true" } else { "false" },
            );
        if let Some(tz) = &format.timezone {
            if Zone::parse(tz).is_none() {
                return Err(error::config_error(format!(
                    "{location}: invalid value for timezone: '{tz}' (expected an offset like +09:00 or UTC)"
                )));
            }
            params = params.with("timezone", tz.as_str());
        }
        if format.utc {
            params = params.with("utc", "true");
        }
        if let Some(localtime) = format.localtime {
            params = params.with("localtime", if localtime { "true" } else { "false" });
        }
        let formatter = build_formatter(&params)
            .map_err(|e| error::config_error(format!("{location}: {e}")))?;
        Ok(Render { formatter })
    }

    /// Appends one event.
    fn event(
        &self,
        out: &mut Vec<u8>,
        tag: &str,
        time: nagare_plugin_sdk::EventTime,
        record: &Value,
    ) -> std::result::Result<(), nagare_formats::FormatError> {
        let time = nagare_formats::EventTime::new(time.sec, time.nsec);
        self.formatter.format(tag, time, record, out)
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

    /// A file buffer's chunk is read from its file when printed (`Chunk::payload`), so the
    /// buffer keeps no copy of it in memory meanwhile.
    fn accepts_file_ranges(&self) -> bool {
        true
    }

    fn write(&self, chunk: Chunk<'_>) -> Result<()> {
        let text = self.render_chunk(&chunk)?;
        sink::write(&text).map_err(|e| {
            error::retryable(format!(
                "stdout: cannot write chunk {}: {e}",
                chunk.id_hex()
            ))
        })
    }
}

impl Stdout {
    /// Renders every event of `chunk`; a malformed chunk is unrecoverable (nothing printed).
    fn render_chunk(&self, chunk: &Chunk<'_>) -> Result<Vec<u8>> {
        let bad = |e: &dyn std::fmt::Display| {
            error::unrecoverable(format!(
                "stdout: chunk {} (tag {}): {e}",
                chunk.id_hex(),
                chunk.tag()
            ))
        };
        // A buffer file that cannot be read now may be read on a retry.
        let payload = chunk.payload().map_err(|e| match e {
            ChunkError::FileRanges(m) => {
                error::retryable(format!("stdout: chunk {}: chunk file: {m}", chunk.id_hex()))
            }
            e => bad(&e),
        })?;
        let mut out = Vec::with_capacity(payload.len() * 2);
        for entry in ChunkReader::new(payload) {
            let entry = entry.map_err(|e| bad(&e))?;
            let record = entry.value().map_err(|e| bad(&e))?;
            self.render
                .event(&mut out, chunk.tag(), entry.time, &record)
                .map_err(|e| bad(&e))?;
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
