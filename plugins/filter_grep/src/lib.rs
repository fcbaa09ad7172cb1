//! `filter_grep` (`@type grep`): keeps or drops events by regular expressions on record
//! fields, exactly as Fluentd's `filter_grep.rb`.
//!
//! * `<regexp>` sections (`key`, `pattern`): **all** must match for an event to stay;
//! * `<exclude>` sections: an event matching **any** of them is dropped;
//! * `<and>` / `<or>` groups hold either `<regexp>`s or `<exclude>`s (not both): `<or>` of
//!   regexps keeps an event when any matches, `<and>` of excludes drops it when all match;
//! * the legacy `regexp1`…`regexp20` / `exclude1`…`exclude20` params (`"key pattern"`, split
//!   at the first space) join the top-level `<regexp>` / `<exclude>` sets;
//! * `key` is a record accessor (`message`, `$.a.b`, `$['a']['b']`, `$.list[0]`);
//! * a value is matched on Ruby's `to_s` of it: strings as they are (invalid UTF-8 scrubbed
//!   to `?`), numbers and booleans as text, arrays and hashes as `inspect`; a missing key or
//!   `nil` is matched as the empty string, as in Fluentd (so `/^$/` matches it);
//! * a key per condition set appears once ("Duplicate key" is a config error).
//!
//! The hot path reads raw msgpack in one walk per record: the SDK reader hands over each
//! top-level pair as it frames the entry ([`ChunkReader::next_visiting`]) and the values of
//! top-level keys are kept on the way (paths like `$.a.b` are looked up afterwards); a
//! missing or nil value is matched with the pattern's answer on `""`, computed once; and a
//! chunk whose events all stay comes back as [`FilterOutcome::Unchanged`] without a copy.
//! Metrics: `records_kept`, `records_dropped`.

pub use nagare_plugin_sdk::log_limiter as limiter;
pub use nagare_plugin_sdk::record_accessor as accessor;
pub mod ruby_regex;

use std::borrow::Cow;
use std::time::Duration;

use nagare_core::msgpack::{Head, read_head};
use nagare_plugin_sdk::config::{self, Unused};
use nagare_plugin_sdk::{
    Chunk, ChunkReader, ChunkWriter, ConfigNode, Counter, Filter, FilterOutcome, LogLevel, Logger,
    PluginContext, Result, Visited, error, export_plugins, plugin_log,
};
use serde::Deserialize;

use crate::accessor::{DigError, RecordAccessor, Step, key_matches};
use crate::limiter::{LogLimiter, suppressed_note};
use crate::ruby_regex::RubyRegex;

/// How many legacy `regexpN` / `excludeN` params Fluentd declares.
pub const REGEXP_MAX_NUM: usize = 20;

/// One `<regexp>` or `<exclude>` section.
#[derive(Debug, Deserialize)]
pub struct ExpressionConfig {
    /// The field to test: a top-level key or a record accessor (`$.a.b`).
    pub key: String,
    /// The regular expression (`/re/flags` or a bare pattern), Ruby syntax.
    pub pattern: String,
}

/// One `<and>` or `<or>` section: `<regexp>`s or `<exclude>`s, not both.
#[derive(Debug, Default, Deserialize)]
pub struct GroupConfig {
    /// Regexp conditions of the group.
    #[serde(default)]
    pub regexp: Vec<ExpressionConfig>,
    /// Exclude conditions of the group.
    #[serde(default)]
    pub exclude: Vec<ExpressionConfig>,
}

/// `filter_grep`'s parameters (the legacy `regexpN`/`excludeN` are read from the element).
#[derive(Debug, Default, Deserialize)]
pub struct GrepConfig {
    /// Top-level `<regexp>` sections: all must match.
    #[serde(default)]
    pub regexp: Vec<ExpressionConfig>,
    /// Top-level `<exclude>` sections: any match drops the event.
    #[serde(default)]
    pub exclude: Vec<ExpressionConfig>,
    /// `<and>` groups.
    #[serde(default, rename = "and")]
    pub and_conditions: Vec<GroupConfig>,
    /// `<or>` groups.
    #[serde(default, rename = "or")]
    pub or_conditions: Vec<GroupConfig>,
}

/// One compiled condition.
#[derive(Debug)]
pub struct Expression {
    key: RecordAccessor,
    pattern: RubyRegex,
    /// The pattern's answer on `""`, what a missing key or `nil` is matched as (Ruby's
    /// `nil.to_s`): evaluated once here instead of once per event.
    on_nil: std::result::Result<bool, String>,
    /// Where the value of a top-level key is kept while a record is walked (an index into
    /// the slots [`Conditions::visit`] fills), for accessors of one step.
    slot: Option<usize>,
}

impl Expression {
    fn new(key: RecordAccessor, pattern: RubyRegex) -> Self {
        let on_nil = pattern.is_match("");
        Expression {
            key,
            pattern,
            on_nil,
            slot: None,
        }
    }
}

/// The four condition sets Fluentd builds (`@_regexp_and_conditions`, …).
#[derive(Debug, Default)]
pub struct Conditions {
    regexp_and: Vec<Expression>,
    regexp_or: Vec<Expression>,
    exclude_and: Vec<Expression>,
    exclude_or: Vec<Expression>,
    /// The top-level keys the conditions read, slot by slot.
    top_keys: Vec<Step>,
}

/// Which of the four sets a condition joins.
#[derive(Clone, Copy)]
enum Set {
    RegexpAnd,
    RegexpOr,
    ExcludeAnd,
    ExcludeOr,
}

impl Conditions {
    fn set(&mut self, set: Set) -> &mut Vec<Expression> {
        match set {
            Set::RegexpAnd => &mut self.regexp_and,
            Set::RegexpOr => &mut self.regexp_or,
            Set::ExcludeAnd => &mut self.exclude_and,
            Set::ExcludeOr => &mut self.exclude_or,
        }
    }

    /// Adds a condition; `duplicate` is the error message when `key` is already in the set.
    fn add(
        &mut self,
        location: &str,
        set: Set,
        key: &str,
        pattern: RubyRegex,
        duplicate: impl FnOnce() -> String,
    ) -> Result<()> {
        if self.set(set).iter().any(|e| e.key.param() == key) {
            return Err(error::config_error(format!("{location}: {}", duplicate())));
        }
        let accessor = RecordAccessor::parse(key)
            .map_err(|e| error::config_error(format!("{location}: {e}")))?;
        let mut expression = Expression::new(accessor, pattern);
        if let Some(step) = expression.key.top_step() {
            expression.slot = Some(self.top_keys.len());
            self.top_keys.push(step.clone());
        }
        self.set(set).push(expression);
        Ok(())
    }

    /// Records the value of a top-level pair in the slot of each condition that reads that
    /// key; the first pair of a key wins, as in a look-up.
    #[inline]
    fn visit<'a>(&self, key: &[u8], value: &'a [u8], slots: &mut [Option<&'a [u8]>]) {
        for (step, slot) in self.top_keys.iter().zip(slots.iter_mut()) {
            if slot.is_none() && key_matches(key, step) {
                *slot = Some(value);
            }
        }
    }

    /// Whether no condition is configured (every event stays).
    pub fn is_empty(&self) -> bool {
        self.regexp_and.is_empty()
            && self.regexp_or.is_empty()
            && self.exclude_and.is_empty()
            && self.exclude_or.is_empty()
    }

    /// Builds the sets from the typed config and the legacy params of `node`, in Fluentd's
    /// order (legacy regexps, legacy excludes, `<regexp>`, `<exclude>`, `<and>`, `<or>`).
    pub fn build(conf: &GrepConfig, node: &ConfigNode, log: &Logger) -> Result<Self> {
        let loc = node.location.as_str();
        let mut c = Conditions::default();
        for (prefix, set) in [("regexp", Set::RegexpAnd), ("exclude", Set::ExcludeOr)] {
            for i in 1..=REGEXP_MAX_NUM {
                let name = format!("{prefix}{i}");
                let Some(value) = config::attr(node, &name) else {
                    continue;
                };
                plugin_log!(
                    log,
                    LogLevel::WARN,
                    "{loc}: '{name}' parameter is deprecated: Use <{prefix}> section"
                );
                let Some((key, pattern)) = value.split_once(' ') else {
                    return Err(error::config_error(format!(
                        "{loc}: {name} does not contain 2 parameters"
                    )));
                };
                // Legacy patterns are compiled from the whole text (`Regexp.compile`).
                let re = RubyRegex::new(pattern, "").map_err(|e| {
                    error::config_error(format!(
                        "{loc}: invalid value for {name}: '{value}' (invalid regexp: {e})"
                    ))
                })?;
                c.add(loc, set, key, re, || {
                    format!("{name} contains a duplicated key, {key}")
                })?;
            }
        }
        let compile = |e: &ExpressionConfig, section: &str| {
            RubyRegex::from_literal(&e.pattern).map_err(|err| {
                error::config_error(format!(
                    "{loc}: invalid value for pattern in <{section}>: '{}' (invalid regexp: {err})",
                    e.pattern
                ))
            })
        };
        if conf.regexp.len() > 1 {
            plugin_log!(
                log,
                LogLevel::INFO,
                "Top level multiple <regexp> is interpreted as 'and' condition"
            );
        }
        for e in &conf.regexp {
            c.add(loc, Set::RegexpAnd, &e.key, compile(e, "regexp")?, || {
                format!("Duplicate key: {}", e.key)
            })?;
        }
        if conf.exclude.len() > 1 {
            plugin_log!(
                log,
                LogLevel::INFO,
                "Top level multiple <exclude> is interpreted as 'or' condition"
            );
        }
        for e in &conf.exclude {
            c.add(loc, Set::ExcludeOr, &e.key, compile(e, "exclude")?, || {
                format!("Duplicate key: {}", e.key)
            })?;
        }
        for (name, groups, regexp_set, exclude_set) in [
            ("and", &conf.and_conditions, Set::RegexpAnd, Set::ExcludeAnd),
            ("or", &conf.or_conditions, Set::RegexpOr, Set::ExcludeOr),
        ] {
            for g in groups {
                if !g.regexp.is_empty() && !g.exclude.is_empty() {
                    return Err(error::config_error(format!(
                        "{loc}: Do not specify both <regexp> and <exclude> in <{name}>"
                    )));
                }
                for (list, set, section) in [
                    (&g.regexp, regexp_set, "regexp"),
                    (&g.exclude, exclude_set, "exclude"),
                ] {
                    for e in list {
                        c.add(loc, set, &e.key, compile(e, section)?, || {
                            format!("Duplicate key in <{name}>: {}", e.key)
                        })?;
                    }
                }
            }
        }
        Ok(c)
    }
}

/// Why one event could not be tested (Fluentd logs "failed to grep events" and keeps it).
#[derive(Debug, thiserror::Error)]
pub enum GrepError {
    /// The key's path steps into a scalar.
    #[error("key '{key}': {source}")]
    Dig {
        /// The accessor.
        key: String,
        /// What went wrong.
        source: DigError,
    },
    /// The regular expression engine gave up.
    #[error("pattern on key '{key}': {reason}")]
    Regex {
        /// The accessor.
        key: String,
        /// Engine message.
        reason: String,
    },
}

/// Appends Ruby's `String#scrub('?')` of `bytes`.
fn scrub_into(bytes: &[u8], out: &mut String) {
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            out.push('?');
        }
    }
}

/// The bytes of a fixstr or str8 value (the strings records nearly always hold); `None`
/// for anything else, including a string cut short.
#[inline]
fn short_str(raw: &[u8]) -> Option<&[u8]> {
    match *raw.first()? {
        b if b & 0xe0 == 0xa0 => raw.get(1..1 + usize::from(b & 0x1f)),
        0xd9 => raw.get(2..2 + usize::from(*raw.get(1)?)),
        _ => None,
    }
}

/// What a grep evaluation needs besides the record: scratch space and the logger for
/// "invalid byte sequence" notes.
struct Scratch<'a> {
    text: String,
    grep: &'a Grep,
}

impl Scratch<'_> {
    /// Ruby's `to_s` of a raw value (`None` = nil), borrowed when it is valid UTF-8 text.
    fn ruby_to_s<'v>(&'v mut self, raw: Option<&'v [u8]>) -> Cow<'v, str> {
        let Some(raw) = raw else {
            return Cow::Borrowed("");
        };
        self.text.clear();
        match read_head(raw) {
            Ok((Head::Str(b) | Head::Bin(b), _)) => match std::str::from_utf8(b) {
                Ok(s) => return Cow::Borrowed(s),
                Err(_) => {
                    scrub_into(b, &mut self.text);
                    self.grep.note_invalid_sequence(&self.text);
                }
            },
            Ok((Head::Nil, _)) => {}
            Ok((Head::Bool(b), _)) => self.text.push_str(if b { "true" } else { "false" }),
            Ok((Head::Int(i), _)) => self.text.push_str(&i.to_string()),
            Ok((Head::F32(f), _)) => {
                nagare_formats::json::write_ruby_float(f64::from(f), &mut self.text);
            }
            Ok((Head::F64(f), _)) => nagare_formats::json::write_ruby_float(f, &mut self.text),
            _ => {
                let mut rd = raw;
                if let Ok(v) = nagare_plugin_sdk::rmpv::decode::read_value_with_max_depth(
                    &mut rd,
                    nagare_plugin_sdk::chunk::MAX_DEPTH,
                ) {
                    nagare_formats::json::write_to_s(&v, &mut self.text);
                }
            }
        }
        Cow::Borrowed(self.text.as_str())
    }

    #[inline]
    fn matches(
        &mut self,
        e: &Expression,
        record: &[u8],
        slots: Option<&[Option<&[u8]>]>,
    ) -> std::result::Result<bool, GrepError> {
        let raw = match (slots, e.slot) {
            // Found (or not) while the record was walked: a nil value is nil.
            (Some(slots), Some(slot)) => slots
                .get(slot)
                .copied()
                .flatten()
                .filter(|v| v.first() != Some(&0xc0)),
            _ => e.key.get_raw(record).map_err(|source| GrepError::Dig {
                key: e.key.param().to_owned(),
                source,
            })?,
        };
        let regex_error = |reason: String| GrepError::Regex {
            key: e.key.param().to_owned(),
            reason,
        };
        let Some(raw) = raw else {
            // Missing or nil: matched as "", whose answer is known.
            return e.on_nil.clone().map_err(regex_error);
        };
        // The usual value, a fixstr or str8 of valid UTF-8, is matched in place.
        if let Some(text) = short_str(raw).and_then(|b| std::str::from_utf8(b).ok()) {
            return e.pattern.is_match(text).map_err(regex_error);
        }
        let text = self.ruby_to_s(Some(raw));
        e.pattern
            .is_match(&text)
            .map_err(|reason| GrepError::Regex {
                key: e.key.param().to_owned(),
                reason,
            })
    }

    /// Fluentd's `filter`: `Ok(true)` keeps the record. `slots` holds the top-level values
    /// found while the record was walked, when it was ([`Conditions::visit`]).
    fn keep(
        &mut self,
        c: &Conditions,
        record: &[u8],
        slots: Option<&[Option<&[u8]>]>,
    ) -> std::result::Result<bool, GrepError> {
        for e in &c.regexp_and {
            if !self.matches(e, record, slots)? {
                return Ok(false);
            }
        }
        if !c.regexp_or.is_empty() {
            let mut any = false;
            for e in &c.regexp_or {
                if self.matches(e, record, slots)? {
                    any = true;
                    break;
                }
            }
            if !any {
                return Ok(false);
            }
        }
        if !c.exclude_and.is_empty() {
            let mut all = true;
            for e in &c.exclude_and {
                if !self.matches(e, record, slots)? {
                    all = false;
                    break;
                }
            }
            if all {
                return Ok(false);
            }
        }
        for e in &c.exclude_or {
            if self.matches(e, record, slots)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The `grep` filter.
pub struct Grep {
    conditions: Conditions,
    log: Logger,
    kept: Counter,
    dropped: Counter,
    failure_log: LogLimiter,
    invalid_log: LogLimiter,
}

impl std::fmt::Debug for Grep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grep")
            .field("conditions", &self.conditions)
            .finish_non_exhaustive()
    }
}

/// Whether `name` is one of the legacy params (`regexp1`…`regexp20`, `exclude1`…).
fn is_legacy_param(name: &str) -> bool {
    ["regexp", "exclude"].iter().any(|p| {
        name.strip_prefix(p)
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0'))
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| (1..=REGEXP_MAX_NUM).contains(&n))
    })
}

/// Logs unused params/sections like `PluginContext::config`, except the legacy params.
fn warn_unused(log: &Logger, unused: &[Unused]) {
    for u in unused
        .iter()
        .filter(|u| u.section || !is_legacy_param(&u.name))
    {
        plugin_log!(log, LogLevel::WARN, "{u}");
    }
}

impl Grep {
    fn note_invalid_sequence(&self, scrubbed: &str) {
        if let Some(n) = self.invalid_log.admit() {
            plugin_log!(
                self.log,
                LogLevel::INFO,
                "invalid byte sequence is replaced in `{scrubbed}`{}",
                suppressed_note(n)
            );
        }
    }

    fn note_failure(&self, tag: &str, e: &GrepError) {
        if let Some(n) = self.failure_log.admit() {
            plugin_log!(
                self.log,
                LogLevel::WARN,
                "failed to grep events (tag '{tag}', event kept): {e}{}",
                suppressed_note(n)
            );
        }
    }

    /// Decides one event: errors keep it (Fluentd rescues, warns and returns the record).
    fn keep(
        &self,
        scratch: &mut Scratch<'_>,
        tag: &str,
        record: &[u8],
        slots: Option<&[Option<&[u8]>]>,
    ) -> bool {
        scratch
            .keep(&self.conditions, record, slots)
            .unwrap_or_else(|e| {
                self.note_failure(tag, &e);
                true
            })
    }
}

impl Filter for Grep {
    fn new(ctx: &PluginContext, config: &ConfigNode) -> Result<Self> {
        let parsed = config::from_node::<GrepConfig>(config).map_err(error::config_error)?;
        warn_unused(ctx.logger(), &parsed.unused);
        let conditions = Conditions::build(&parsed.value, config, ctx.logger())?;
        Ok(Grep {
            conditions,
            log: ctx.logger().clone(),
            kept: ctx.counter("records_kept", "events that passed the filter"),
            dropped: ctx.counter("records_dropped", "events the filter dropped"),
            failure_log: LogLimiter::new(Duration::from_secs(60)),
            invalid_log: LogLimiter::new(Duration::from_secs(60)),
        })
    }

    fn filter(&self, chunk: Chunk<'_>) -> Result<FilterOutcome> {
        if self.conditions.is_empty() {
            self.kept.add(f64::from(chunk.records()));
            return Ok(FilterOutcome::Unchanged);
        }
        let tag = chunk.tag();
        let bad = |e: nagare_plugin_sdk::chunk::ChunkError| {
            error::unrecoverable(format!("grep: chunk tagged '{tag}': {e}"))
        };
        let payload = chunk.payload().map_err(bad)?;
        let mut scratch = Scratch {
            text: String::new(),
            grep: self,
        };
        // Nothing is copied until the first dropped event.
        let mut writer: Option<ChunkWriter> = None;
        let (mut kept, mut dropped) = (0u32, 0u32);
        let mut reader = ChunkReader::new(payload);
        let mut slots: Vec<Option<&[u8]>> = vec![None; self.conditions.top_keys.len()];
        for index in 0usize.. {
            // One walk per record: the reader hands over the top-level pairs it steps over,
            // and the values the conditions read are kept on the way.
            slots.fill(None);
            let visited = reader.next_visiting(|k, v| self.conditions.visit(k, v, &mut slots));
            let (entry, walked) = match visited {
                Visited::Entry(entry) => (entry, true),
                Visited::End => break,
                Visited::Fallback => match reader.next() {
                    Some(entry) => (entry.map_err(bad)?, false),
                    None => break,
                },
            };
            let keep = self.keep(
                &mut scratch,
                tag,
                entry.record,
                walked.then_some(slots.as_slice()),
            );
            match (&mut writer, keep) {
                (Some(w), true) => w.push_raw(entry.time, entry.record),
                (None, true) => {}
                (Some(_), false) => {}
                (None, false) => {
                    let mut w = ChunkWriter::with_capacity(payload.len());
                    for earlier in ChunkReader::new(payload).take(index) {
                        let earlier = earlier.map_err(bad)?;
                        w.push_raw(earlier.time, earlier.record);
                    }
                    writer = Some(w);
                }
            }
            if keep {
                kept += 1;
            } else {
                dropped += 1;
            }
        }
        self.kept.add(f64::from(kept));
        self.dropped.add(f64::from(dropped));
        Ok(match writer {
            None => FilterOutcome::Unchanged,
            Some(w) => FilterOutcome::replaced(w),
        })
    }
}

export_plugins! {
    filters: ["grep" => Grep],
}

#[cfg(test)]
mod tests;
