//! Formatters (`<format>` sections): `(tag, time, record)` in, bytes out.
//!
//! Build one with [`FormatterConfig::build`] (or [`build_formatter`]). Formatters append to
//! the caller's buffer so outputs can reuse one allocation per chunk.
//!
//! Text formatters take `newline` (`lf`|`crlf`, default `lf`) where Fluentd's do.

mod text;

use std::fmt::Debug;

use rmpv::Value;

use crate::error::{ConfigError, FormatError};
use crate::params::Params;
use crate::time::EventTime;

/// A configured formatter.
pub trait Formatter: Send + Sync + Debug {
    /// Appends the formatted event to `out`.
    fn format(
        &self,
        tag: &str,
        time: EventTime,
        record: &Value,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError>;

    /// The `@type` name.
    fn type_name(&self) -> &'static str;

    /// Formats straight from the record's raw msgpack bytes, when this formatter can (json,
    /// out_file): the same text as [`Formatter::format`] without building a [`Value`].
    /// `None`: not supported, or the bytes need the general path — call `format` then.
    fn format_raw(
        &self,
        _tag: &str,
        _time: EventTime,
        _raw: &[u8],
        _out: &mut Vec<u8>,
    ) -> Option<Result<(), FormatError>> {
        None
    }

    /// [`Formatter::format_raw`] for one event of a batch (a chunk's events, in order):
    /// `scratch` carries what can be reused from one event to the next (out_file's
    /// rendered time). The text is the same as `format_raw`'s. By default the
    /// [`Formatter::format_raw_prefix_with`] answer when there is one, else `format_raw`'s.
    fn format_raw_with(
        &self,
        tag: &str,
        time: EventTime,
        raw: &[u8],
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Option<Result<(), FormatError>> {
        match self.format_raw_prefix_with(tag, time, raw, out, scratch) {
            Some(r) => Some(r.map(|_| ())),
            None => self.format_raw(tag, time, raw, out),
        }
    }

    /// [`Formatter::format_raw_with`] for a record that starts `raw` and may be followed by
    /// other bytes (the rest of a chunk): the same text, and the record's length in bytes,
    /// measured by the walk that renders it. A chunk reader then moves on by that length
    /// instead of walking the record a second time.
    /// `None`: not supported, or the bytes need the general path (nothing is then left in
    /// `out`).
    fn format_raw_prefix_with(
        &self,
        _tag: &str,
        _time: EventTime,
        _raw: &[u8],
        _out: &mut Vec<u8>,
        _scratch: &mut Scratch,
    ) -> Option<Result<usize, FormatError>> {
        None
    }

    /// The formatted event as a new buffer.
    fn format_to_vec(
        &self,
        tag: &str,
        time: EventTime,
        record: &Value,
    ) -> Result<Vec<u8>, FormatError> {
        let mut out = Vec::new();
        self.format(tag, time, record, &mut out)?;
        Ok(out)
    }
}

/// State a formatter may reuse across the events of a batch ([`Formatter::format_raw_with`]):
/// the last time it rendered, and the JSON text of the record keys it met (by their raw
/// bytes). Make one per batch (or keep one per formatter); a scratch passed to another
/// formatter is noticed and refilled, never misused.
#[derive(Debug, Default)]
pub struct Scratch {
    /// The [`formatter_id`] of the formatter that filled `time_text` (0: none).
    owner: u64,
    /// The time `time_text` shows (nanoseconds zeroed when the format ignores them).
    time: Option<EventTime>,
    time_text: String,
    /// Rendered JSON keys by their raw bytes: the same for any formatter.
    pub(crate) json_keys: crate::json::KeyCache,
}

impl Scratch {
    /// A new, empty scratch.
    pub fn new() -> Scratch {
        Scratch::default()
    }

    /// Appends the rendering of `key` by `owner`, from the cache or by `render`.
    pub(crate) fn cached_time(
        &mut self,
        owner: u64,
        key: EventTime,
        out: &mut Vec<u8>,
        render: impl FnOnce(&mut String) -> Result<(), FormatError>,
    ) -> Result<(), FormatError> {
        if self.owner != owner || self.time != Some(key) {
            self.time = None;
            self.time_text.clear();
            render(&mut self.time_text)?;
            self.owner = owner;
            self.time = Some(key);
        }
        out.extend_from_slice(self.time_text.as_bytes());
        Ok(())
    }
}

/// A fresh id for a formatter instance that caches in a [`Scratch`] (never 0, never reused,
/// so a scratch cannot mistake a new formatter for an old one at the same address).
pub(crate) fn formatter_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The `<format>` section: its params, `@type` included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormatterConfig {
    /// The section's params.
    pub params: Params,
}

/// The formatter types this crate provides.
pub const FORMATTER_TYPES: &str =
    "out_file, json, ltsv, csv, tsv, single_value, msgpack, hash, stdout";

impl FormatterConfig {
    /// A config from params.
    pub fn new(params: Params) -> FormatterConfig {
        FormatterConfig { params }
    }

    /// Builds the formatter named by `@type`.
    pub fn build(&self) -> Result<Box<dyn Formatter>, ConfigError> {
        build_formatter(&self.params)
    }
}

/// Builds the formatter named by `@type` in `p`.
pub fn build_formatter(p: &Params) -> Result<Box<dyn Formatter>, ConfigError> {
    let name = p.type_name().ok_or(ConfigError::Missing {
        plugin: "format".to_string(),
        param: "@type",
    })?;
    Ok(match name {
        "out_file" => Box::new(text::OutFileFormatter::new(p)?),
        "json" => Box::new(text::JsonFormatter::new(p)?),
        "ltsv" => Box::new(text::LtsvFormatter::new(p)?),
        "csv" => Box::new(text::CsvFormatter::new(p)?),
        "tsv" => Box::new(text::TsvFormatter::new(p)?),
        "single_value" => Box::new(text::SingleValueFormatter::new(p)?),
        "msgpack" => Box::new(text::MsgpackFormatter),
        "hash" => Box::new(text::HashFormatter::new(p)?),
        "stdout" => Box::new(text::StdoutFormatter::new(p)?),
        other => {
            return Err(ConfigError::UnknownType {
                kind: "formatter",
                name: other.to_string(),
                known: FORMATTER_TYPES,
            });
        }
    })
}

/// `newline` + `add_newline` as the bytes to append after a line.
pub(crate) fn newline_param(
    plugin: &str,
    p: &Params,
    add_default: bool,
) -> Result<&'static str, ConfigError> {
    if !p.bool_or(plugin, "add_newline", add_default)? {
        return Ok("");
    }
    Ok(match p.enum_or(plugin, "newline", &["lf", "crlf"], "lf")? {
        "crlf" => "\r\n",
        _ => "\n",
    })
}

/// Looks `key` up in a record map.
pub(crate) fn lookup<'a>(record: &'a Value, key: &str) -> Option<&'a Value> {
    record
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factory_errors() {
        for (pairs, needle) in [
            (vec![], "@type"),
            (vec![("@type", "xml")], "unknown formatter type 'xml'"),
            (vec![("@type", "csv")], "fields"),
            (vec![("@type", "csv"), ("fields", ",")], "fields"),
            (vec![("@type", "tsv")], "keys"),
            (vec![("@type", "json"), ("newline", "cr")], "newline"),
            (
                vec![("@type", "out_file"), ("timezone", "Nowhere")],
                "timezone",
            ),
            (
                vec![
                    ("@type", "out_file"),
                    ("localtime", "true"),
                    ("utc", "true"),
                ],
                "both",
            ),
            (
                vec![("@type", "out_file"), ("time_type", "weird")],
                "time_type",
            ),
            (
                vec![("@type", "stdout"), ("output_type", "stdout")],
                "output_type",
            ),
        ] {
            let err = build_formatter(&Params::from_pairs(pairs.clone()))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(needle), "{pairs:?}: {err:?}");
        }
    }
}
