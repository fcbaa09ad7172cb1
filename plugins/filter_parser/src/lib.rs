//! `filter_parser` (`@type parser`): parses one record field with a `<parse>` section and
//! replaces (or, with `reserve_data`, extends) the record, as Fluentd's `filter_parser.rb`.
//!
//! * `key_name` (required): the field, a record accessor (`message`, `$.data.log`);
//! * `<parse>`: any parser of `nagare-formats` (`json`, `regexp`, `ltsv`, `csv`, …); the
//!   v0.12 flat form (`format json`, `format /re/`, `keys a,b`, `time_format …`) is accepted
//!   when there is no `<parse>` section;
//! * `reserve_data`: merge the parsed fields into the original record;
//! * `reserve_time`: keep the original event time (else the parsed time, else the original);
//! * `remove_key_name_field`: drop `key_name` from the kept record after a successful parse;
//! * `inject_key_prefix`: prefix every parsed key; `hash_value_field`: nest the parsed fields
//!   under this key;
//! * `replace_invalid_sequence`: scrub invalid UTF-8 to `?` before a regexp-based parser
//!   (without it, such input is an error event, Ruby's `ArgumentError`);
//! * `emit_invalid_record_to_error` (default true): a record whose field is missing, does
//!   not match, or fails to parse is an error event (and, with `reserve_data`, also passes on
//!   unchanged).
//!
//! Error events and the epoch-1 ABI: a filter can only fail a whole chunk. A chunk whose
//! events are all error events comes back as an `UNRECOVERABLE` error, which the host routes
//! to `@ERROR` (the original records, as Fluentd's `emit_error_event` sends them). In a
//! chunk where only some events are errors, those error events cannot reach `@ERROR`: they
//! are counted in `error_records_dropped` and reported by a rate-limited warning.
//! Metrics: `records_out`, `error_records`, `error_records_dropped`.

pub use nagare_plugin_sdk::log_limiter as limiter;
pub use nagare_plugin_sdk::record_accessor as accessor;

use std::borrow::Cow;
use std::time::Duration;

use nagare_core::msgpack::{Head, read_head};
use nagare_formats::{Params, Parser};
use nagare_plugin_sdk::rmpv::Value;
use nagare_plugin_sdk::{
    Chunk, ChunkWriter, ConfigNode, Counter, EventTime, Filter, FilterOutcome, LogLevel, Logger,
    PluginContext, Result, Visited, config, error, export_plugins, plugin_log,
};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use crate::accessor::{DigError, RecordAccessor, key_bytes};
use crate::limiter::{LogLimiter, suppressed_note};

/// Flat (v0.12) params moved into the parser when there is no `<parse>` section.
pub const COMPAT_PARSER_PARAMS: &[&str] = &[
    "types",
    "types_delimiter",
    "types_label_delimiter",
    "keys",
    "time_key",
    "time_format",
    "time_type",
    "localtime",
    "utc",
    "timezone",
    "delimiter",
    "label_delimiter",
    "keep_time_key",
    "null_value_pattern",
    "null_empty_string",
    "estimate_current_event",
    "message_key",
    "with_priority",
    "message_format",
    "rfc5424_time_format",
    "format_firstline",
    "expression",
    "json_parser",
];

/// Parsers that run a regular expression on the text (Ruby raises on invalid UTF-8 there).
const REGEXP_PARSERS: &[&str] = &[
    "regexp",
    "apache2",
    "apache_error",
    "nginx",
    "syslog",
    "multiline",
];

/// A section whose content is read from the element directly (`<parse>`): consumed here so
/// the deserializer does not report its params as unused. Its own sections (a third-party
/// parser's `<pattern>`, repeated or not) are consumed too, so the parser's `@type` is what
/// a configuration fails on, with its own message.
#[derive(Debug, Default)]
pub struct RawSection;

impl<'de> Deserialize<'de> for RawSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_map(Consume).map(|()| RawSection)
    }
}

/// Takes any value of a section: a parameter, a section, or several sections.
struct Consume;

impl<'de> Visitor<'de> for Consume {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a section")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        while map.next_key::<String>()?.is_some() {
            map.next_value::<Anything>()?;
        }
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<(), A::Error> {
        while seq.next_element::<Anything>()?.is_some() {}
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_none<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        Ok(())
    }
}

/// [`Consume`] as a value.
struct Anything;

impl<'de> Deserialize<'de> for Anything {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(Consume).map(|()| Anything)
    }
}

fn default_true() -> bool {
    true
}

/// `filter_parser`'s parameters.
#[derive(Debug, Deserialize)]
pub struct ParserFilterConfig {
    /// The field to parse (a record accessor).
    pub key_name: String,
    /// Keep the original fields and merge the parsed ones in.
    #[serde(default)]
    pub reserve_data: bool,
    /// Keep the original event time.
    #[serde(default)]
    pub reserve_time: bool,
    /// Remove `key_name` from the record after a successful parse.
    #[serde(default)]
    pub remove_key_name_field: bool,
    /// A prefix for every parsed key.
    #[serde(default)]
    pub inject_key_prefix: Option<String>,
    /// Scrub invalid UTF-8 to `?` and parse again.
    #[serde(default)]
    pub replace_invalid_sequence: bool,
    /// Store the parsed fields as a map under this key.
    #[serde(default)]
    pub hash_value_field: Option<String>,
    /// Send records that fail to `@ERROR`.
    #[serde(default = "default_true")]
    pub emit_invalid_record_to_error: bool,
    /// v0.12 flat `format` (used when there is no `<parse>`).
    #[serde(default)]
    pub format: Option<String>,
    /// The `<parse>` section (read from the element).
    #[serde(default)]
    pub parse: Option<RawSection>,
}

/// Builds the parser params: the `<parse>` section, or the flat v0.12 params.
fn parser_params(node: &ConfigNode, conf: &ParserFilterConfig) -> Result<Params> {
    let loc = node.location.as_str();
    if let Some(parse) = node.children.iter().find(|c| c.name.as_str() == "parse") {
        let pairs = parse.attrs.iter().filter_map(|a| {
            a.1.as_ref()
                .into_option()
                .map(|v| (a.0.to_string(), v.to_string()))
        });
        return Ok(Params::from_pairs(pairs));
    }
    let Some(format) = &conf.format else {
        return Err(error::config_error(format!(
            "{loc}: <parse> section is required in <{}>",
            node.name
        )));
    };
    let mut p = Params::new().with("@type", format.as_str());
    for key in COMPAT_PARSER_PARAMS {
        if let Some(v) = config::attr(node, key) {
            p.set(*key, v);
        }
    }
    Ok(p)
}

/// What happened to one event.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Passed on.
    Emit(EventTime, Value),
    /// An error event (not passed on).
    Error(String),
    /// An error event that also passes on (`reserve_data`).
    ErrorAndPass(String, EventTime, Value),
    /// Dropped quietly (`emit_invalid_record_to_error false`).
    Drop,
}

/// The `parser` filter.
pub struct ParserFilter {
    key: RecordAccessor,
    parser: Box<dyn Parser>,
    regexp_parser: bool,
    reserve_data: bool,
    reserve_time: bool,
    remove_key_name_field: bool,
    inject_key_prefix: Option<String>,
    replace_invalid_sequence: bool,
    hash_value_field: Option<String>,
    emit_invalid_record_to_error: bool,
    log: Logger,
    error_log: LogLimiter,
    records_out: Counter,
    error_records: Counter,
    error_records_dropped: Counter,
}

impl std::fmt::Debug for ParserFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParserFilter")
            .field("key", &self.key)
            .field("parser", &self.parser)
            .finish_non_exhaustive()
    }
}

/// Ruby's `Hash#merge`: keys of `from` replace those of `into` in place or are appended.
fn merge(into: &mut Vec<(Value, Value)>, from: Vec<(Value, Value)>) {
    for (k, v) in from {
        match into.iter_mut().find(|(ik, _)| *ik == k) {
            Some(slot) => slot.1 = v,
            None => into.push((k, v)),
        }
    }
}

fn decode(raw: &[u8]) -> std::result::Result<Value, String> {
    let mut rd = raw;
    nagare_plugin_sdk::rmpv::decode::read_value_with_max_depth(
        &mut rd,
        nagare_plugin_sdk::chunk::MAX_DEPTH,
    )
    .map_err(|e| format!("malformed record: {e}"))
}

impl ParserFilter {
    /// Fluentd's `handle_parsed`: prefix, nest, merge into the record (`reserve_data`).
    fn handle_parsed(
        &self,
        raw_record: &[u8],
        values: Vec<(Value, Value)>,
    ) -> Result<Value, String> {
        let values = match &self.inject_key_prefix {
            Some(prefix) => values
                .into_iter()
                .map(|(k, v)| {
                    let key = match key_bytes(&k) {
                        Some(b) => Value::from(format!("{prefix}{}", String::from_utf8_lossy(b))),
                        None => k,
                    };
                    (key, v)
                })
                .collect(),
            None => values,
        };
        let r = match &self.hash_value_field {
            Some(field) => vec![(Value::from(field.as_str()), Value::Map(values))],
            None => values,
        };
        if !self.reserve_data {
            return Ok(Value::Map(r));
        }
        let mut record = match decode(raw_record)? {
            Value::Map(m) => m,
            _ => return Err("record is not a map".to_owned()),
        };
        if self.remove_key_name_field {
            let mut whole = Value::Map(record);
            self.key.delete(&mut whole);
            record = match whole {
                Value::Map(m) => m,
                _ => Vec::new(),
            };
        }
        merge(&mut record, r);
        Ok(Value::Map(record))
    }

    /// A failure that is an error event when `emit_invalid_record_to_error` is set and, with
    /// `reserve_data`, passes the record on (Fluentd's "key does not exist" and "pattern not
    /// match" branches).
    fn soft_failure(&self, message: String, time: EventTime, raw_record: &[u8]) -> Outcome {
        let pass = if self.reserve_data {
            // handle_parsed with empty values; no key removal on failure
            let values = match &self.hash_value_field {
                Some(field) => vec![(Value::from(field.as_str()), Value::Map(Vec::new()))],
                None => Vec::new(),
            };
            match decode(raw_record) {
                Ok(Value::Map(mut m)) => {
                    merge(&mut m, values);
                    Some(Value::Map(m))
                }
                Ok(_) => return Outcome::Error("record is not a map".to_owned()),
                Err(e) => return Outcome::Error(e),
            }
        } else {
            None
        };
        match (self.emit_invalid_record_to_error, pass) {
            (true, Some(v)) => Outcome::ErrorAndPass(message, time, v),
            (true, None) => Outcome::Error(message),
            (false, Some(v)) => Outcome::Emit(time, v),
            (false, None) => Outcome::Drop,
        }
    }

    /// Fluentd's `filter_with_time` for one event. `found` is the value of a top-level
    /// `key_name` when the reader's walk over the record already found it (`Some(None)`:
    /// missing or nil); `None` looks it up.
    fn process(&self, time: EventTime, raw_record: &[u8], found: Option<Option<&[u8]>>) -> Outcome {
        let looked_up = match found {
            Some(v) => Ok(v),
            None => self.key.get_raw(raw_record),
        };
        let raw_value = match looked_up {
            Ok(v) => v,
            // Ruby raises TypeError out of the filter: always an error event
            Err(e @ DigError::NotDiggable(_)) => {
                return Outcome::Error(format!("key_name '{}': {e}", self.key));
            }
            Err(e) => return Outcome::Error(e.to_string()),
        };
        let Some(raw_value) = raw_value else {
            return self.soft_failure(format!("{} does not exist", self.key), time, raw_record);
        };
        let bytes = match read_head(raw_value) {
            Ok((Head::Str(b) | Head::Bin(b), _)) => b,
            Ok(_) => {
                return self.hard_failure(format!(
                    "parse failed: value of '{}' is not a string",
                    self.key
                ));
            }
            Err(e) => return Outcome::Error(format!("malformed record: {e}")),
        };
        let text: Cow<'_, [u8]> = if self.regexp_parser && std::str::from_utf8(bytes).is_err() {
            if !self.replace_invalid_sequence {
                // Ruby's ArgumentError is re-raised: an error event whatever the settings
                return Outcome::Error("invalid byte sequence in UTF-8".to_owned());
            }
            let mut s = String::with_capacity(bytes.len());
            for chunk in bytes.utf8_chunks() {
                s.push_str(chunk.valid());
                if !chunk.invalid().is_empty() {
                    s.push('?');
                }
            }
            Cow::Owned(s.into_bytes())
        } else {
            Cow::Borrowed(bytes)
        };
        match self.parser.parse(&text) {
            Ok(Some((parsed_time, Value::Map(values)))) => {
                let t = match (self.reserve_time, parsed_time) {
                    (false, Some(t)) => EventTime::new(t.sec, t.nsec),
                    _ => time,
                };
                match self.handle_parsed(raw_record, values) {
                    Ok(v) => Outcome::Emit(t, v),
                    Err(e) => Outcome::Error(e),
                }
            }
            Ok(Some(_)) | Ok(None) => self.soft_failure(
                format!(
                    "pattern not match with data '{}'",
                    String::from_utf8_lossy(bytes)
                ),
                time,
                raw_record,
            ),
            Err(e) => self.hard_failure(e.to_string()),
        }
    }

    /// A `ParserError`: an error event, or a quiet drop without `emit_invalid_record_to_error`.
    fn hard_failure(&self, message: String) -> Outcome {
        if self.emit_invalid_record_to_error {
            Outcome::Error(message)
        } else {
            Outcome::Drop
        }
    }
}

impl Filter for ParserFilter {
    fn new(ctx: &PluginContext, node: &ConfigNode) -> Result<Self> {
        let loc = node.location.as_str();
        let parsed = config::from_node::<ParserFilterConfig>(node).map_err(error::config_error)?;
        let conf = parsed.value;
        let compat = conf.parse.is_none() && conf.format.is_some();
        for u in &parsed.unused {
            if !(compat && !u.section && COMPAT_PARSER_PARAMS.contains(&u.name.as_str())) {
                plugin_log!(ctx, LogLevel::WARN, "{u}");
            }
        }
        let key = RecordAccessor::parse(&conf.key_name)
            .map_err(|e| error::config_error(format!("{loc}: key_name: {e}")))?;
        let params = parser_params(node, &conf)?;
        let parser = params
            .type_name()
            .ok_or_else(|| {
                error::config_error(format!("{loc}: '@type' parameter is required in <parse>"))
            })
            .and_then(|_| {
                nagare_formats::build_parser(&params)
                    .map_err(|e| error::config_error(format!("{loc}: <parse>: {e}")))
            })?;
        Ok(ParserFilter {
            key,
            regexp_parser: REGEXP_PARSERS.contains(&parser.type_name()),
            parser,
            reserve_data: conf.reserve_data,
            reserve_time: conf.reserve_time,
            remove_key_name_field: conf.remove_key_name_field,
            inject_key_prefix: conf.inject_key_prefix,
            replace_invalid_sequence: conf.replace_invalid_sequence,
            hash_value_field: conf.hash_value_field,
            emit_invalid_record_to_error: conf.emit_invalid_record_to_error,
            log: ctx.logger().clone(),
            error_log: LogLimiter::new(Duration::from_secs(60)),
            records_out: ctx.counter("records_out", "events passed on"),
            error_records: ctx.counter("error_records", "error events (parse failures)"),
            error_records_dropped: ctx.counter(
                "error_records_dropped",
                "error events that could not be sent to @ERROR (part of a chunk)",
            ),
        })
    }

    fn filter(&self, chunk: Chunk<'_>) -> Result<FilterOutcome> {
        let tag = chunk.tag();
        let bad = |e: nagare_plugin_sdk::chunk::ChunkError| {
            error::unrecoverable(format!("parser: chunk tagged '{tag}': {e}"))
        };
        let mut writer = ChunkWriter::with_capacity(chunk.payload().map_err(bad)?.len() * 2);
        let (mut errors, mut others) = (0u32, 0u32);
        let mut first_error: Option<String> = None;
        let mut reader = chunk.entries().map_err(bad)?;
        let top = self.key.top_step();
        loop {
            // A top-level key_name is found while the reader walks the record (one walk).
            let mut value: Option<&[u8]> = None;
            let visited = match top {
                Some(step) => reader.next_visiting(|k, v| {
                    if value.is_none() && accessor::key_matches(k, step) {
                        value = Some(v);
                    }
                }),
                None => Visited::Fallback,
            };
            let (entry, found) = match visited {
                Visited::Entry(entry) => (entry, Some(value.filter(|v| v.first() != Some(&0xc0)))),
                Visited::End => break,
                Visited::Fallback => match reader.next() {
                    Some(entry) => (entry.map_err(bad)?, None),
                    None => break,
                },
            };
            let mut note = |m: String| {
                errors += 1;
                first_error.get_or_insert(m);
            };
            match self.process(entry.time, entry.record, found) {
                Outcome::Emit(t, v) => push_lossless(&mut writer, t, &v),
                Outcome::Error(m) => note(m),
                Outcome::ErrorAndPass(m, t, v) => {
                    note(m);
                    others += 1;
                    push_lossless(&mut writer, t, &v);
                }
                Outcome::Drop => others += 1,
            }
        }
        self.records_out.add(f64::from(writer.records()));
        if let Some(first) = first_error {
            self.error_records.add(f64::from(errors));
            if writer.is_empty() && others == 0 {
                return Err(error::unrecoverable(format!(
                    "parser: {errors} events tagged '{tag}' failed to parse: {first}"
                )));
            }
            self.error_records_dropped.add(f64::from(errors));
            if let Some(n) = self.error_log.admit() {
                plugin_log!(
                    self.log,
                    LogLevel::WARN,
                    "parser: {errors} error events tagged '{tag}' were dropped instead of sent to @ERROR (the chunk also had events that passed): {first}{}",
                    suppressed_note(n)
                );
            }
        }
        Ok(FilterOutcome::replaced(writer))
    }
}

/// Appends an entry, keeping invalid-UTF-8 strings as `str`.
fn push_lossless(writer: &mut ChunkWriter, time: EventTime, record: &Value) {
    let mut buf = Vec::new();
    accessor::write_value_lossless(&mut buf, record);
    writer.push_raw(time, &buf);
}

export_plugins! {
    filters: ["parser" => ParserFilter],
}

#[cfg(test)]
mod tests;
