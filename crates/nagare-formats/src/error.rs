//! Typed errors: configuration errors (raised once, when a `<parse>`/`<format>` section is
//! built) and per-event parse/format errors.

use thiserror::Error;

/// A `<parse>`, `<format>` or `<inject>` section could not be turned into a working plugin.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `@type` names no parser/formatter this crate knows.
    #[error("unknown {kind} type '{name}' (known: {known})")]
    UnknownType {
        /// "parser" or "formatter".
        kind: &'static str,
        /// The `@type` value given.
        name: String,
        /// The comma-separated list of known types.
        known: &'static str,
    },
    /// A required parameter is missing.
    #[error("{plugin}: parameter '{param}' is required")]
    Missing {
        /// Plugin type (e.g. "csv").
        plugin: String,
        /// Parameter name.
        param: &'static str,
    },
    /// A parameter has a value that cannot be used.
    #[error("{plugin}: invalid value for '{param}': {value:?}: {reason}")]
    Invalid {
        /// Plugin type (e.g. "regexp").
        plugin: String,
        /// Parameter name.
        param: String,
        /// The value as written in the config.
        value: String,
        /// What was expected.
        reason: String,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub fn invalid(
        plugin: &str,
        param: &str,
        value: &str,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            plugin: plugin.to_string(),
            param: param.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// One piece of input could not be parsed (Fluentd's `ParserError`). A line that simply does
/// not match a pattern is not an error: parsers return `Ok(None)` for it, as Fluentd yields
/// `nil` there.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// The input is not valid for the format (bad JSON, unterminated CSV quote, bad msgpack).
    #[error("{parser}: invalid input: {reason}")]
    Invalid {
        /// Parser type.
        parser: &'static str,
        /// What went wrong, with position where known.
        reason: String,
    },
    /// The time field could not be parsed with the configured format.
    #[error("invalid time format: value = {value:?}, format = {format:?}: {reason}")]
    Time {
        /// The time text (lossy UTF-8).
        value: String,
        /// The format(s) tried.
        format: String,
        /// Why it failed.
        reason: String,
    },
    /// The regular expression engine gave up (backtracking limit).
    #[error("{parser}: regular expression failed on input: {reason}")]
    Regex {
        /// Parser type.
        parser: &'static str,
        /// Engine message.
        reason: String,
    },
}

/// An event could not be formatted.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// The record is not a map where the formatter needs one.
    #[error("{formatter}: record is not a map")]
    NotAMap {
        /// Formatter type.
        formatter: &'static str,
    },
    /// msgpack encoding failed.
    #[error("{formatter}: encoding failed: {reason}")]
    Encode {
        /// Formatter type.
        formatter: &'static str,
        /// Underlying error.
        reason: String,
    },
    /// The time cannot be represented (out of the calendar range).
    #[error("time {sec}.{nsec:09} cannot be formatted")]
    Time {
        /// Seconds.
        sec: u32,
        /// Nanoseconds.
        nsec: u32,
    },
}
