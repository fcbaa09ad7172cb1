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
