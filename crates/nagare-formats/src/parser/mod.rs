//! Parsers (`<parse>` sections): text or bytes in, `(time, record)` out.
//!
//! Build one with [`ParserConfig::build`] (or [`build_parser`]) from the section's params.
//! Every parser follows Fluentd's contract:
//! - `Ok(None)`: the input does not match the format (Fluentd yields `nil, nil`; in_tail then
//!   logs "pattern not matched", filter_parser routes to `@ERROR`);
//! - `Err(_)`: the input is broken for the format (bad JSON, bad time field);
//! - `Ok(Some((time, record)))`: `time` is `None` only when the text had no time and
//!   `estimate_current_event` is false; with the default (`true`) the parser fills in the
//!   current time itself, exactly as Fluentd does. Callers use `None` as "keep/choose a time
//!   yourself" (filter_parser keeps the original event time, inputs take now).
//!
//! Common params: `time_key`, `time_type`, `time_format`, `time_format_fallbacks`,
//! `localtime`, `utc`, `timezone`, `keep_time_key`, `types`, `null_value_pattern`,
//! `null_empty_string`, `estimate_current_event`.

mod regexp;
mod structured;
mod syslog;
mod text;

use std::fmt::Debug;

use fancy_regex::{Regex, RegexBuilder};
use rmpv::Value;

use crate::error::{ConfigError, ParseError};
use crate::params::Params;
use crate::time::{EventTime, TimeParser, TimeType};
use crate::types::Converters;

pub use regexp::{Joined, MultilineJoiner};

/// One parsed event: the event time (see the module docs for `None`) and the record map.
pub type ParsedEvent = (Option<EventTime>, Value);

/// What kind of input a parser expects (Fluentd's `parser_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// One line (or one joined multi-line text) per call.
    TextPerLine,
    /// Arbitrary bytes that may hold several events (msgpack).
    Binary,
}

/// A configured parser.
pub trait Parser: Send + Sync + Debug {
    /// Parses one input (a line, a joined multi-line text, a request body). For inputs that
    /// can hold several events (a JSON array, a msgpack stream), this returns the first;
    /// use [`Parser::parse_each`] to get them all.
    fn parse(&self, text: &[u8]) -> Result<Option<ParsedEvent>, ParseError>;

    /// Parses `text` and calls `emit` once per event found (`None` for an element that is
    /// not a record, as Fluentd yields `nil, nil` for it).
    fn parse_each(
        &self,
        text: &[u8],
        emit: &mut dyn FnMut(Option<ParsedEvent>),
    ) -> Result<(), ParseError> {
        emit(self.parse(text)?);
        Ok(())
    }

    /// The `@type` name.
    fn type_name(&self) -> &'static str;

    /// What input this parser expects.
    fn input_kind(&self) -> InputKind {
        InputKind::TextPerLine
    }

    /// For multi-line parsers with `format_firstline`: whether `line` starts a new event.
    /// `None` for parsers that are not multi-line (every line is one event).
    fn firstline(&self, line: &[u8]) -> Option<bool> {
        let _ = line;
        None
    }
}

/// The `<parse>` section: its params, `@type` included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParserConfig {
    /// The section's params.
    pub params: Params,
}

/// The parser types this crate provides.
pub const PARSER_TYPES: &str =
    "json, regexp, ltsv, csv, tsv, none, apache2, apache_error, nginx, syslog, msgpack, multiline";

impl ParserConfig {
    /// A config from params.
    pub fn new(params: Params) -> ParserConfig {
        ParserConfig { params }
    }

    /// Builds the parser named by `@type`.
    pub fn build(&self) -> Result<Box<dyn Parser>, ConfigError> {
        build_parser(&self.params)
    }
}

/// Builds the parser named by `@type` in `p`. A `@type` written as `/regexp/` (the v0.12
/// `format /.../` style) is a regexp parser with that expression.
pub fn build_parser(p: &Params) -> Result<Box<dyn Parser>, ConfigError> {
    let name = p.type_name().ok_or(ConfigError::Missing {
        plugin: "parse".to_string(),
        param: "@type",
    })?;
    if name.starts_with('/') {
        let p2 = p.clone().with("@type", "regexp").with("expression", name);
        return Ok(Box::new(regexp::RegexpParser::new(
            "regexp", &p2, None, None,
        )?));
    }
    Ok(match name {
        "json" => Box::new(structured::JsonParser::new(p)?),
        "msgpack" => Box::new(structured::MsgpackParser::new(p)?),
        "regexp" => Box::new(regexp::RegexpParser::new("regexp", p, None, None)?),
        "apache_error" => Box::new(regexp::RegexpParser::new(
            "apache_error",
            p,
            Some(regexp::APACHE_ERROR),
            None,
        )?),
        "nginx" => Box::new(regexp::RegexpParser::new(
            "nginx",
            p,
            Some(regexp::NGINX),
            Some("%d/%b/%Y:%H:%M:%S %z"),
        )?),
        "apache2" => Box::new(regexp::Apache2Parser::new(p)?),
        "multiline" => Box::new(regexp::MultilineParser::new(p)?),
        "ltsv" => Box::new(text::LtsvParser::new(p)?),
        "csv" => Box::new(text::CsvParser::new(p)?),
        "tsv" => Box::new(text::TsvParser::new(p)?),
        "none" => Box::new(text::NoneParser::new(p)?),
        "syslog" => Box::new(syslog::SyslogParser::new(p)?),
        other => {
            return Err(ConfigError::UnknownType {
                kind: "parser",
                name: other.to_string(),
                known: PARSER_TYPES,
            });
        }
    })
}

/// The parts every parser shares: time extraction and value conversion
/// (Fluentd's `Parser#parse_time` and `#convert_values`).
#[derive(Debug, Clone)]
pub(crate) struct Common {
    pub(crate) time_key: Option<String>,
    pub(crate) keep_time_key: bool,
    pub(crate) estimate_current_event: bool,
    pub(crate) time_parser: TimeParser,
    pub(crate) conv: Converters,
}

impl Common {
    pub(crate) fn new(
        plugin: &str,
        p: &Params,
        default_time_key: Option<&str>,
        default_type: TimeType,
        default_format: Option<&str>,
    ) -> Result<Common, ConfigError> {
        let time_parser = TimeParser::from_params(plugin, p, default_type, default_format)?;
        let conv = Converters::from_params(plugin, p, time_parser.zone())?;
        Ok(Common {
            time_key: p.get("time_key").or(default_time_key).map(str::to_string),
            keep_time_key: p.bool_or(plugin, "keep_time_key", false)?,
            estimate_current_event: p.bool_or(plugin, "estimate_current_event", true)?,
            time_parser,
            conv,
        })
    }

    /// The time to use when the input carried none.
    pub(crate) fn no_time(&self) -> Option<EventTime> {
        self.estimate_current_event.then(EventTime::now)
    }

    /// Takes the time out of `rec` (or leaves it with `keep_time_key`) and parses it.
    pub(crate) fn parse_time(
        &self,
        rec: &mut Vec<(Value, Value)>,
    ) -> Result<Option<EventTime>, ParseError> {
        let Some(key) = self.time_key.as_deref() else {
            return Ok(self.no_time());
        };
        let Some(pos) = rec.iter().position(|(k, _)| k.as_str() == Some(key)) else {
            return Ok(self.no_time());
        };
        let t = if self.keep_time_key {
            self.time_parser.parse_value(&rec[pos].1)?
        } else {
            let (_, v) = rec.remove(pos);
            self.time_parser.parse_value(&v)?
        };
        Ok(Some(t))
    }

    /// `convert_values(parse_time(r), r)`.
    pub(crate) fn finish(&self, mut rec: Vec<(Value, Value)>) -> Result<ParsedEvent, ParseError> {
        let t = self.parse_time(&mut rec)?;
        self.conv.apply(&mut rec);
        Ok((t, Value::Map(rec)))
    }
}

/// Compiles a Ruby regexp literal: `/body/flags` (flags `i`, `m` = dot matches newline,
/// `x`) or a bare body. `^`/`$` always match at line boundaries, as in Ruby.
pub(crate) fn ruby_regex(
    plugin: &str,
    param: &str,
    src: &str,
    force_dotall: bool,
) -> Result<Regex, ConfigError> {
    let (body, flags) = split_regex_literal(src);
    let body = body.replace("\\/", "/").replace("\\h", "[0-9a-fA-F]");
    RegexBuilder::new(&body)
        .oniguruma_mode(true)
        .multi_line(true)
        .case_insensitive(flags.contains('i'))
        .dot_matches_new_line(force_dotall || flags.contains('m'))
        .verbose_mode(flags.contains('x'))
        .build()
        .map_err(|e| ConfigError::invalid(plugin, param, src, format!("invalid regexp: {e}")))
}

/// `("body", "flags")` of `/body/flags`, or `(src, "")` when `src` is not slash-delimited.
pub(crate) fn split_regex_literal(src: &str) -> (&str, &str) {
    let t = src.trim();
    if let Some(rest) = t.strip_prefix('/') {
        if let Some(end) = rest.rfind('/') {
            let flags = &rest[end + 1..];
            if flags.chars().all(|c| matches!(c, 'i' | 'm' | 'x')) {
                return (&rest[..end], flags);
            }
        }
    }
    (t, "")
}

/// Named captures of `re` on `text`, in pattern order, unmatched groups left out.
pub(crate) fn named_captures(
    parser: &'static str,
    re: &Regex,
    text: &str,
) -> Result<Option<Vec<(Value, Value)>>, ParseError> {
    let caps = re.captures(text).map_err(|e| ParseError::Regex {
        parser,
        reason: e.to_string(),
    })?;
    let Some(caps) = caps else { return Ok(None) };
    let mut rec = Vec::new();
    for name in re.capture_names().flatten() {
        if let Some(m) = caps.name(name) {
            rec.push((Value::from(name), Value::from(m.as_str())));
        }
    }
    Ok(Some(rec))
}

/// Input bytes as text; invalid UTF-8 is replaced (Fluentd would raise on it in a regexp).
pub(crate) fn text_of(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Helpers for the parser tests.
    use super::*;

    /// Builds a parser from `pairs`, panicking with the config error (tests only).
    pub fn parser(pairs: &[(&str, &str)]) -> Box<dyn Parser> {
        let p = Params::from_pairs(pairs.iter().copied());
        match build_parser(&p) {
            Ok(x) => x,
            Err(e) => panic!("config {pairs:?}: {e}"),
        }
    }

    /// A record from string pairs.
    pub fn rec(pairs: &[(&str, Value)]) -> Value {
        Value::Map(
            pairs
                .iter()
                .map(|(k, v)| (Value::from(*k), v.clone()))
                .collect(),
        )
    }

    /// `Value::from(&str)` shorthand.
    pub fn s(x: &str) -> Value {
        Value::from(x)
    }

    /// Parses `input` and checks the time and the record.
    pub fn check(p: &dyn Parser, input: &str, expect: Option<(Option<u32>, Value)>) {
        let got = p
            .parse(input.as_bytes())
            .unwrap_or_else(|e| panic!("{input:?}: {e}"))
            .map(|(t, r)| (t.map(|t| t.sec), r));
        assert_eq!(got, expect, "input {input:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn factory_errors() {
        for (pairs, needle) in [
            (vec![], "@type"),
            (vec![("@type", "nope")], "unknown parser type 'nope'"),
            (vec![("@type", "regexp")], "expression"),
            (
                vec![("@type", "regexp"), ("expression", "/(?<a>/")],
                "invalid regexp",
            ),
            (
                vec![("@type", "regexp"), ("expression", "/a/")],
                "named capture",
            ),
            (vec![("@type", "csv")], "keys"),
            (vec![("@type", "json"), ("time_type", "bogus")], "time_type"),
            (
                vec![("@type", "json"), ("timezone", "Mars/Base")],
                "timezone",
            ),
            (
                vec![("@type", "json"), ("time_format", "%Q%q")],
                "time_format",
            ),
            (
                vec![("@type", "json"), ("keep_time_key", "maybe")],
                "keep_time_key",
            ),
            (
                vec![("@type", "syslog"), ("message_format", "rfc9999")],
                "message_format",
            ),
            (vec![("@type", "multiline"), ("format1", "abc")], "format1"),
            (
                vec![
                    ("@type", "multiline"),
                    ("format1", "/(?<a>x)/"),
                    ("format3", "/y/"),
                ],
                "format2",
            ),
        ] {
            let err = build_parser(&Params::from_pairs(pairs.clone()))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(needle), "{pairs:?}: {err:?}");
        }
    }

    #[test]
    fn regex_literals() {
        for (src, body, flags) in [
            ("/a.b/", "a.b", ""),
            ("/a/im", "a", "im"),
            ("a/b", "a/b", ""),
            ("/a/b/", "a/b", ""),
            ("/a/q", "/a/q", ""),
        ] {
            assert_eq!(split_regex_literal(src), (body, flags), "{src}");
        }
    }

    #[test]
    fn ruby_regexp_syntax() {
        // (expression, input, expected capture of `a`)
        for (expr, input, expect) in [
            (r"/\A(?<a>\h+)\z/", "00ff", Some("00ff")),
            (r"/\A(?<a>\h+)\z/", "xyz", None),
            (r"/^(?<a>[^\/]+)\/x$/", "ab/x", Some("ab")),
            (r"/(?<a>[[:alpha:]]+)/", "12abc34", Some("abc")),
            (r"/(?<a>foo)(?=bar)/", "foobar", Some("foo")),
            (r"/(?<a>\w+)\Z/", "word\n", Some("word")),
            (r"/(?<a>x) # comment\n/x", "x", Some("x")),
            (r"/(?<a>é+)/i", "ÉÉ", Some("ÉÉ")),
            (r"(?<a>bare)", "a bare word", Some("bare")),
        ] {
            let re = ruby_regex("t", "expression", expr, false)
                .unwrap_or_else(|e| panic!("{expr}: {e}"));
            let got = named_captures("regexp", &re, input)
                .ok()
                .flatten()
                .and_then(|r| r.into_iter().next())
                .and_then(|(_, v)| v.as_str().map(str::to_string));
            assert_eq!(got.as_deref(), expect, "{expr} on {input:?}");
        }
    }

    #[test]
    fn v012_format_literal_is_regexp() {
        let p = parser(&[
            ("@type", "/^(?<a>\\w+) (?<b>\\w+)$/"),
            ("estimate_current_event", "false"),
        ]);
        check(
            &*p,
            "x y",
            Some((None, rec(&[("a", s("x")), ("b", s("y"))]))),
        );
    }

    #[test]
    fn estimate_current_event_fills_now() {
        let p = parser(&[("@type", "none")]);
        let before = EventTime::now().sec;
        let t = p
            .parse(b"x")
            .ok()
            .flatten()
            .and_then(|(t, _)| t)
            .map(|t| t.sec)
            .unwrap_or(0);
        assert!(t >= before && t <= before + 5);
    }
}
