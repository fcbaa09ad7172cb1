//! `filter_record_transformer` (`@type record_transformer`): adds and rewrites record fields
//! from `<record>` templates, and removes or keeps fields, as Fluentd's
//! `filter_record_transformer.rb` with `enable_ruby false`.
//!
//! * `<record>` (one or more): `key value` pairs; a value starting with `{` or `[` is JSON
//!   (templates inside it are expanded too), keys are templates as well; placeholders are
//!   described in [`template`];
//! * `renew_record`: start from an empty record (with `keep_keys` copied from the original);
//! * `renew_time_key`: the event time becomes `Time.at(record[key].to_f)` when the key exists;
//! * `remove_keys`: record accessors deleted from the result (after the merge);
//! * `auto_typecast` (default true): a value that is one placeholder keeps its type;
//! * `enable_ruby true` is a configuration error: nagare runs no Ruby.
//!
//! A configuration that changes nothing returns [`FilterOutcome::Unchanged`] without reading
//! the chunk. Events that fail (a `renew_time_key` value without `to_f`, a time out of range)
//! are Fluentd error events: a chunk whose events all fail comes back as an `UNRECOVERABLE`
//! error so the host routes it to `@ERROR`; in a chunk where only some fail, those are dropped
//! with a rate-limited warning and counted in `error_records` (the epoch-1 ABI has no way to
//! send part of a chunk to `@ERROR`). Metrics: `records_out`, `error_records`.

pub use nagare_plugin_sdk::log_limiter as limiter;
pub use nagare_plugin_sdk::record_accessor as accessor;
pub mod template;

use std::time::Duration;

use nagare_formats::time::{TimeFormatter, Zone};
use nagare_plugin_sdk::rmpv::Value;
use nagare_plugin_sdk::{
    Chunk, ChunkWriter, ConfigNode, Counter, EventTime, Filter, FilterOutcome, LogLevel, Logger,
    PluginContext, Result, Visited, error, export_plugins, plugin_log,
};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use crate::accessor::{RecordAccessor, key_bytes, value_type};
use crate::limiter::{LogLimiter, suppressed_note};
use crate::template::{Context, Placeholder, StrTemplate, Template, UnknownSink};

/// The text of the `enable_ruby true` configuration error.
pub const NO_RUBY: &str = "enable_ruby true is not supported: nagare does not run Ruby code. \
Set enable_ruby false (the default) and use the placeholders ${record[\"key\"]}, ${tag}, \
${tag_parts[N]}, ${tag_prefix[N]}, ${tag_suffix[N]}, ${hostname} and ${time} \
(N may be negative; a value that is exactly one placeholder keeps its type with auto_typecast)";

/// One `<record>` section: its `key value` pairs in file order (values may be nil).
#[derive(Debug, Default)]
pub struct RecordSection(pub Vec<(String, Option<String>)>);

impl<'de> Deserialize<'de> for RecordSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = RecordSection;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("key value pairs")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<RecordSection, A::Error> {
                let mut pairs = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    pairs.push((k, map.next_value::<Option<String>>()?));
                }
                Ok(RecordSection(pairs))
            }
        }
        d.deserialize_map(Pairs)
    }
}

fn default_true() -> bool {
    true
}

/// `filter_record_transformer`'s parameters.
#[derive(Debug, Deserialize)]
pub struct TransformerConfig {
    /// Keys (record accessors) to delete from the result.
    #[serde(default)]
    pub remove_keys: Option<Vec<String>>,
    /// Keys to copy from the original record (needs `renew_record true`).
    #[serde(default)]
    pub keep_keys: Option<Vec<String>>,
    /// Build the result from an empty record instead of the original.
    #[serde(default)]
    pub renew_record: bool,
    /// Field whose value (unix time, `to_f`) becomes the event time.
    #[serde(default)]
    pub renew_time_key: Option<String>,
    /// Ruby expressions in placeholders: not supported (a configuration error when true).
    #[serde(default)]
    pub enable_ruby: bool,
    /// Keep the type of a value that is exactly one placeholder.
    #[serde(default = "default_true")]
    pub auto_typecast: bool,
    /// The `<record>` sections.
    #[serde(default)]
    pub record: Vec<RecordSection>,
}

/// Why one event failed (a Fluentd error event).
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// `renew_time_key` names a value without `to_f` (Ruby's `NoMethodError`).
    #[error("undefined method `to_f' for {class} (renew_time_key '{key}')")]
    NoToF {
        /// The key.
        key: String,
        /// Ruby class of the value.
        class: &'static str,
    },
    /// The new time does not fit an EventTime.
    #[error("renew_time_key '{key}': time {value} is out of range")]
    TimeRange {
        /// The key.
        key: String,
        /// The value.
        value: f64,
    },
    /// The record could not be decoded.
    #[error("{0}")]
    Record(String),
}

/// Ruby's `String#to_f`: the longest leading float, else 0.0.
pub fn ruby_str_to_f(s: &str) -> f64 {
    let t = s.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let b = t.as_bytes();
    let mut i = 0;
    let mut text = String::new();
    if matches!(b.first(), Some(b'+' | b'-')) {
        text.push(char::from(b[0]));
        i = 1;
    }
    let digits = |i: &mut usize, text: &mut String| {
        let start = *i;
        while *i < b.len() {
            match b[*i] {
                c @ b'0'..=b'9' => text.push(char::from(c)),
                b'_' if *i > start && b.get(*i + 1).is_some_and(u8::is_ascii_digit) => {}
                _ => break,
            }
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i, &mut text) {
        return 0.0;
    }
    if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        text.push('.');
        i += 1;
        digits(&mut i, &mut text);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut exp = String::from("e");
        let mut j = i + 1;
        if let Some(&c @ (b'+' | b'-')) = b.get(j) {
            exp.push(char::from(c));
            j += 1;
        }
        if digits(&mut j, &mut exp) {
            text.push_str(&exp);
        }
    }
    text.parse().unwrap_or(0.0)
}

/// `Fluent::EventTime.from_time(Time.at(f))`: seconds floored, nanoseconds truncated from
/// the exact binary value of `f` (as Ruby's `Time` keeps floats as exact rationals).
pub fn time_at(f: f64) -> Option<EventTime> {
    if !f.is_finite() {
        return None;
    }
    let sec = f.floor();
    if !(0.0..=f64::from(u32::MAX)).contains(&sec) {
        return None;
    }
    let frac = f - sec; // exact in binary
    let nsec = if frac == 0.0 {
        0
    } else {
        let bits = frac.to_bits();
        let exp = ((bits >> 52) & 0x7ff) as i32;
        let (mant, e) = if exp == 0 {
            (bits & ((1 << 52) - 1), -1074)
        } else {
            ((bits & ((1 << 52) - 1)) | (1 << 52), exp - 1075)
        };
        // frac = mant * 2^e with e < 0
        let shift = u32::try_from(-e).unwrap_or(u32::MAX);
        let scaled = u128::from(mant) * 1_000_000_000;
        if shift >= 128 {
            0
        } else {
            u32::try_from(scaled >> shift).unwrap_or(999_999_999)
        }
    };
    Some(EventTime::new(sec as u32, nsec.min(999_999_999)))
}

/// The `record_transformer` filter.
pub struct RecordTransformer {
    map: Vec<(StrTemplate, Template)>,
    remove_keys: Vec<RecordAccessor>,
    keep_keys: Option<Vec<String>>,
    renew_record: bool,
    renew_time_key: Option<String>,
    auto_typecast: bool,
    uses_time: bool,
    /// The result is the record with the `<record>` fields set (no renew, no removal, no
    /// record placeholders): it is built on the raw map, without decoding it.
    raw_path: bool,
    /// The expanded fields depend only on the tag and hostname: expanded once per chunk.
    per_chunk: bool,
    hostname: String,
    time_format: TimeFormatter,
    log: Logger,
    unknown_log: LogLimiter,
    error_log: LogLimiter,
    records_out: Counter,
    error_records: Counter,
}

impl std::fmt::Debug for RecordTransformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordTransformer")
            .field("map", &self.map)
            .finish_non_exhaustive()
    }
}

impl UnknownSink for RecordTransformer {
    fn unknown(&self, placeholder: &str) {
        if let Some(n) = self.unknown_log.admit() {
            plugin_log!(
                self.log,
                LogLevel::WARN,
                "unknown placeholder `{placeholder}` found{}",
                suppressed_note(n)
            );
        }
    }
}

/// `parse_value`: JSON for values starting with `{` or `[`, else a string template.
fn parse_value(log: &Logger, location: &str, text: &str) -> Template {
    if text.starts_with(['{', '[']) {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => return Template::from_json(&v),
            Err(e) => plugin_log!(
                log,
                LogLevel::WARN,
                "{location}: failed to parse {text} as json. Assuming {text} is a string: {e}"
            ),
        }
    }
    Template::Str(StrTemplate::parse(text))
}

/// Ruby's `Hash#merge!`: existing keys keep their place, new ones are appended.
fn merge(into: &mut Vec<(Value, Value)>, key: Value, value: Value) {
    match into.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => into.push((key, value)),
    }
}

impl RecordTransformer {
    /// Whether the filter can change anything.
    fn is_noop(&self) -> bool {
        self.map.is_empty()
            && self.remove_keys.is_empty()
            && !self.renew_record
            && self.renew_time_key.is_none()
    }

    /// The `<record>` map expanded for one event.
    fn expand_map(&self, ctx: &Context<'_>) -> Vec<(Value, Value)> {
        self.map
            .iter()
            .map(|(k, v)| {
                (
                    Value::from(ctx.expand_text(k, self)),
                    ctx.expand(v, self.auto_typecast, self),
                )
            })
            .collect()
    }

    /// Fluentd's `reform` (given the expanded map) plus the time and key handling of
    /// `filter_stream`.
    fn transform(
        &self,
        expanded: Vec<(Value, Value)>,
        time: EventTime,
        record: Value,
    ) -> std::result::Result<(EventTime, Value), EventError> {
        let mut pairs = match record {
            Value::Map(m) if !self.renew_record => m,
            Value::Map(m) => {
                let mut kept = Vec::new();
                for k in self.keep_keys.iter().flatten() {
                    if let Some((key, v)) =
                        m.iter().find(|(mk, _)| key_bytes(mk) == Some(k.as_bytes()))
                    {
                        merge(&mut kept, key.clone(), v.clone());
                    }
                }
                kept
            }
            other => {
                return Err(EventError::Record(format!(
                    "record is a {}, not a map",
                    value_type(&other)
                )));
            }
        };
        for (k, v) in expanded {
            merge(&mut pairs, k, v);
        }
        let mut time = time;
        if let Some(key) = &self.renew_time_key
            && let Some((_, v)) = pairs
                .iter()
                .find(|(k, _)| key_bytes(k) == Some(key.as_bytes()))
        {
            let f = match v {
                Value::Nil => 0.0,
                Value::Integer(i) => i.as_f64().unwrap_or(0.0),
                Value::F32(f) => f64::from(*f),
                Value::F64(f) => *f,
                Value::String(s) => ruby_str_to_f(&String::from_utf8_lossy(s.as_bytes())),
                Value::Binary(b) => ruby_str_to_f(&String::from_utf8_lossy(b)),
                Value::Ext(..) => match nagare_formats::json::ext_event_time(v) {
                    Some((s, ns)) => f64::from(s) + f64::from(ns) / 1e9,
                    None => {
                        return Err(EventError::NoToF {
                            key: key.clone(),
                            class: value_type(v),
                        });
                    }
                },
                other => {
                    return Err(EventError::NoToF {
                        key: key.clone(),
                        class: value_type(other),
                    });
                }
            };
            time = time_at(f).ok_or(EventError::TimeRange {
                key: key.clone(),
                value: f,
            })?;
        }
        let mut out = Value::Map(pairs);
        for deleter in &self.remove_keys {
            deleter.delete(&mut out);
        }
        Ok((time, out))
    }
}

impl Filter for RecordTransformer {
    fn new(ctx: &PluginContext, config: &ConfigNode) -> Result<Self> {
        let loc = config.location.as_str();
        let conf: TransformerConfig = ctx.config(config)?;
        if conf.enable_ruby {
            return Err(error::config_error(format!("{loc}: {NO_RUBY}")));
        }
        if conf.keep_keys.is_some() && !conf.renew_record {
            return Err(error::config_error(format!(
                "{loc}: `renew_record` must be true to use `keep_keys`"
            )));
        }
        let log = ctx.logger().clone();
        let mut map: Vec<(StrTemplate, Template)> = Vec::new();
        for section in &conf.record {
            for (k, v) in &section.0 {
                let value = match v {
                    Some(text) => parse_value(&log, loc, text),
                    None => Template::Literal(Value::Nil),
                };
                let key = StrTemplate::parse(k);
                match map.iter_mut().find(|(mk, _)| *mk == key) {
                    Some(slot) => slot.1 = value,
                    None => map.push((key, value)),
                }
            }
        }
        let remove_keys = conf
            .remove_keys
            .iter()
            .flatten()
            .map(|k| RecordAccessor::parse(k))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| error::config_error(format!("{loc}: remove_keys: {e}")))?;
        let mut uses_time = false;
        let (mut uses_record, mut uses_unknown) = (false, false);
        for (k, v) in &map {
            let mut visit = |s: &StrTemplate| {
                uses_time |= s.uses_time();
                for ph in s.placeholders() {
                    uses_record |= matches!(ph, Placeholder::Record(_) | Placeholder::Bare(_));
                    uses_unknown |= matches!(ph, Placeholder::Unknown(_));
                }
            };
            visit(k);
            v.for_each_str(&mut visit);
        }
        let raw_path = !conf.renew_record
            && conf.renew_time_key.is_none()
            && remove_keys.is_empty()
            && !uses_record;
        // Unknown placeholders warn once per event, so they are expanded per event.
        let per_chunk = raw_path && !uses_time && !uses_unknown;
        let time_format = TimeFormatter::new(Some("%Y-%m-%d %H:%M:%S %z"), Zone::Local, false)
            .map_err(|e| error::internal(format!("time format: {e}")))?;
        Ok(RecordTransformer {
            map,
            remove_keys,
            keep_keys: conf.keep_keys,
            renew_record: conf.renew_record,
            renew_time_key: conf.renew_time_key,
            auto_typecast: conf.auto_typecast,
            uses_time,
            raw_path,
            per_chunk,
            hostname: nagare_formats::inject::machine_hostname(),
            time_format,
            log,
            unknown_log: LogLimiter::new(Duration::from_secs(60)),
            error_log: LogLimiter::new(Duration::from_secs(60)),
            records_out: ctx.counter("records_out", "events passed on (transformed)"),
            error_records: ctx.counter(
                "error_records",
                "events that failed (routed to @ERROR with their chunk, or dropped)",
            ),
        })
    }

    fn filter(&self, chunk: Chunk<'_>) -> Result<FilterOutcome> {
        if self.is_noop() {
            self.records_out.add(f64::from(chunk.records()));
            return Ok(FilterOutcome::Unchanged);
        }
        let tag = chunk.tag();
        let bad = |e: nagare_plugin_sdk::chunk::ChunkError| {
            error::unrecoverable(format!("record_transformer: chunk tagged '{tag}': {e}"))
        };
        let parts = template::split_tag(tag);
        let (prefix, suffix) = template::prefixes_and_suffixes(&parts);
        if self.raw_path {
            let ctx = Context {
                tag,
                tag_parts: &parts,
                tag_prefix: &prefix,
                tag_suffix: &suffix,
                hostname: &self.hostname,
                time: "",
                record: &Value::Nil,
            };
            return self.filter_raw(chunk, &ctx);
        }
        let mut writer = ChunkWriter::with_capacity(chunk.payload().map_err(bad)?.len() * 2);
        let mut failed: Vec<EventError> = Vec::new();
        let mut time_text = String::new();
        for entry in chunk.entries().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            let result = entry
                .value()
                .map_err(|e| EventError::Record(e.to_string()))
                .and_then(|record| {
                    time_text.clear();
                    if self.uses_time {
                        let t = nagare_formats::EventTime::new(entry.time.sec, entry.time.nsec);
                        self.time_format
                            .format_into(t, &mut time_text)
                            .map_err(|e| EventError::Record(e.to_string()))?;
                    }
                    let ctx = Context {
                        tag,
                        tag_parts: &parts,
                        tag_prefix: &prefix,
                        tag_suffix: &suffix,
                        hostname: &self.hostname,
                        time: &time_text,
                        record: &record,
                    };
                    let expanded = self.expand_map(&ctx);
                    self.transform(expanded, entry.time, record)
                });
            match result {
                Ok((time, record)) => push_lossless(&mut writer, time, &record),
                Err(e) => failed.push(e),
            }
        }
        self.finish(tag, writer, &failed)
    }
}

impl RecordTransformer {
    /// Counts the chunk's events and reports the failed ones (see the crate doc).
    fn finish(
        &self,
        tag: &str,
        writer: ChunkWriter,
        failed: &[EventError],
    ) -> Result<FilterOutcome> {
        self.records_out.add(f64::from(writer.records()));
        if let Some(first) = failed.first() {
            self.error_records.add(failed.len() as f64);
            if writer.is_empty() {
                return Err(error::unrecoverable(format!(
                    "record_transformer: {} events tagged '{tag}' failed: {first}",
                    failed.len()
                )));
            }
            if let Some(n) = self.error_log.admit() {
                plugin_log!(
                    self.log,
                    LogLevel::WARN,
                    "record_transformer: dropped {} of {} events tagged '{tag}' (partial chunks cannot be sent to @ERROR): {first}{}",
                    failed.len(),
                    failed.len() + writer.records() as usize,
                    suppressed_note(n)
                );
            }
        }
        Ok(FilterOutcome::replaced(writer))
    }
}

impl RecordTransformer {
    /// The `<record>` fields expanded for one event (or chunk) without a record: keys and
    /// encoded values, a key expanded twice keeping its first place and last value (as
    /// `Hash#merge!` does).
    fn expand_raw(&self, ctx: &Context<'_>, fields: &mut Vec<(String, Vec<u8>)>) {
        fields.clear();
        for (k, v) in &self.map {
            let key = ctx.expand_text(k, self);
            let mut value = Vec::new();
            accessor::write_value_lossless(&mut value, &ctx.expand(v, self.auto_typecast, self));
            match fields.iter_mut().find(|(fk, _)| *fk == key) {
                Some(slot) => slot.1 = value,
                None => fields.push((key, value)),
            }
        }
    }

    /// The filter when [`raw_path`](Self::raw_path) holds: each record map is copied with the
    /// fields set in place or appended. Events the raw walk cannot handle take the general path.
    fn filter_raw(&self, chunk: Chunk<'_>, chunk_ctx: &Context<'_>) -> Result<FilterOutcome> {
        let tag = chunk_ctx.tag;
        let bad = |e: nagare_plugin_sdk::chunk::ChunkError| {
            error::unrecoverable(format!("record_transformer: chunk tagged '{tag}': {e}"))
        };
        let payload = chunk.payload().map_err(bad)?;
        let mut writer = ChunkWriter::with_capacity(payload.len() + payload.len() / 2);
        let mut fields = Vec::new();
        if self.per_chunk {
            self.expand_raw(chunk_ctx, &mut fields);
        }
        let mut failed: Vec<EventError> = Vec::new();
        let mut time_text = String::new();
        let mut out = Vec::new();
        let mut hits = Vec::new();
        let mut reader = nagare_plugin_sdk::ChunkReader::new(payload);
        loop {
            let entry = if self.per_chunk {
                // Fields known for the whole chunk: the reader's one walk over each record
                // also finds the values they replace.
                hits.clear();
                let visited = reader.next_visiting(|k, v| {
                    if let Some(i) = field_index(&fields, k)
                        && !hits.iter().any(|&(_, _, h)| h == i)
                    {
                        let start = offset_in(payload, v);
                        hits.push((start, start + v.len(), i));
                    }
                });
                match visited {
                    Visited::Entry(entry) => {
                        let base = offset_in(payload, entry.record);
                        let written = writer.push_with(entry.time, |out| {
                            write_with_hits(entry.record, base, &fields, &hits, out)
                        });
                        if written.is_some() {
                            continue;
                        }
                        entry
                    }
                    Visited::End => break,
                    Visited::Fallback => match reader.next() {
                        Some(entry) => entry.map_err(bad)?,
                        None => break,
                    },
                }
            } else {
                match reader.next() {
                    Some(entry) => entry.map_err(bad)?,
                    None => break,
                }
            };
            if !self.per_chunk {
                time_text.clear();
                if self.uses_time {
                    let t = nagare_formats::EventTime::new(entry.time.sec, entry.time.nsec);
                    if let Err(e) = self.time_format.format_into(t, &mut time_text) {
                        failed.push(EventError::Record(e.to_string()));
                        continue;
                    }
                }
                let ctx = Context {
                    time: &time_text,
                    ..*chunk_ctx
                };
                self.expand_raw(&ctx, &mut fields);
            }
            out.clear();
            if set_raw_fields(entry.record, &fields, &mut hits, &mut out).is_some() {
                writer.push_raw(entry.time, &out);
                continue;
            }
            // Not a map, or a shape the fast skipper leaves to the general path.
            let result = entry
                .value()
                .map_err(|e| EventError::Record(e.to_string()))
                .and_then(|record| {
                    let expanded = fields
                        .iter()
                        .map(|(k, v)| {
                            let mut rd = v.as_slice();
                            let v = nagare_plugin_sdk::rmpv::decode::read_value(&mut rd)
                                .unwrap_or(Value::Nil);
                            (Value::from(k.as_str()), v)
                        })
                        .collect();
                    self.transform(expanded, entry.time, record)
                });
            match result {
                Ok((time, record)) => push_lossless(&mut writer, time, &record),
                Err(e) => failed.push(e),
            }
        }
        self.finish(tag, writer, &failed)
    }
}

/// The index of the field a raw map key names: a `str` key (not `bin`) with the field's
/// bytes, as `Hash#merge!` of string keys compares them.
#[inline]
fn field_index(fields: &[(String, Vec<u8>)], key: &[u8]) -> Option<usize> {
    use nagare_core::msgpack::{Head, read_head};
    let name = match key.first() {
        Some(&b) if b & 0xe0 == 0xa0 => key.get(1..)?,
        _ => match read_head(key) {
            Ok((Head::Str(s), _)) => s,
            _ => return None,
        },
    };
    fields.iter().position(|(k, _)| k.as_bytes() == name)
}

/// Where `part` (a sub-slice of `whole`) starts within `whole`.
#[inline]
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize)
}

/// Writes `record` (a raw map) with `fields` (keys, encoded values) set as `Hash#merge!`
/// does: the first `str` key equal to a field gets its value in place, the other fields are
/// appended in order. `None` when the record is not a map or the fast skipper cannot walk it
/// (the caller then takes the general path); `out` is then unspecified.
fn set_raw_fields(
    record: &[u8],
    fields: &[(String, Vec<u8>)],
    hits: &mut Vec<(usize, usize, usize)>,
    out: &mut Vec<u8>,
) -> Option<()> {
    use nagare_core::msgpack::MAX_DEPTH;
    let (count, body) = map_head(record)?;
    // (value start, value end, field index) of each replaced value, in record order.
    hits.clear();
    let mut pos = body;
    for _ in 0..count {
        let key_end = nagare_core::fast::skip(record, pos, 0, MAX_DEPTH).ok()?;
        let value_end = nagare_core::fast::skip(record, key_end, 0, MAX_DEPTH).ok()?;
        let key = record.get(pos..key_end)?;
        if let Some(i) = field_index(fields, key)
            && !hits.iter().any(|&(_, _, h)| h == i)
        {
            hits.push((key_end, value_end, i));
        }
        pos = value_end;
    }
    if pos != record.len() {
        return None;
    }
    write_with_hits(record, 0, fields, hits, out)
}

/// The pair count of a raw map and the offset of its first key.
#[inline]
fn map_head(record: &[u8]) -> Option<(usize, usize)> {
    let be = |at: std::ops::Range<usize>| {
        record
            .get(at)
            .map(|b| b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
    };
    match *record.first()? {
        b @ 0x80..=0x8f => Some((usize::from(b & 0x0f), 1)),
        0xde => Some((be(1..3)?, 3)),
        0xdf => Some((be(1..5)?, 5)),
        _ => None,
    }
}

/// Writes the whole map `record` with `fields` set: `hits` are the replaced values, as
/// (start, end, field index) in record order, offsets counted from `base` (where the
/// record starts in the buffer the offsets refer to); the other fields are appended.
fn write_with_hits(
    record: &[u8],
    base: usize,
    fields: &[(String, Vec<u8>)],
    hits: &[(usize, usize, usize)],
    out: &mut Vec<u8>,
) -> Option<()> {
    use nagare_core::msgpack::{write_map_header, write_str};
    let (count, body) = map_head(record)?;
    let total = count + fields.len() - hits.len();
    write_map_header(out, u32::try_from(total).ok()?);
    let mut from = body;
    for &(start, end, i) in hits {
        let (start, end) = (start.checked_sub(base)?, end.checked_sub(base)?);
        out.extend_from_slice(record.get(from..start)?);
        out.extend_from_slice(&fields.get(i)?.1);
        from = end;
    }
    out.extend_from_slice(record.get(from..)?);
    for (i, (k, v)) in fields.iter().enumerate() {
        if !hits.iter().any(|&(_, _, h)| h == i) {
            write_str(out, k.as_bytes());
            out.extend_from_slice(v);
        }
    }
    Some(())
}

/// Appends an entry, keeping invalid-UTF-8 strings as `str`.
fn push_lossless(writer: &mut ChunkWriter, time: EventTime, record: &Value) {
    let mut buf = Vec::new();
    accessor::write_value_lossless(&mut buf, record);
    writer.push_raw(time, &buf);
}

export_plugins! {
    filters: ["record_transformer" => RecordTransformer],
}

#[cfg(test)]
mod tests;
