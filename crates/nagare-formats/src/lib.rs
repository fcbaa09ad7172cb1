//! Fluentd's parsers and formatters as a plain library.
//!
//! This crate is what the parser/formatter-using plugins (`filter_parser`, `in_tail`, `in_http`,
//! `in_tcp`, `out_file`, `out_stdout`, ...) link. It depends on no other nagare crate, so
//! out-of-tree plugins can use it too.
//!
//! Map:
//! - [`params`]: the `<parse>`/`<format>`/`<inject>` parameters as a key→string map, with
//!   Fluentd's value syntax (bools, lists, sizes of delimiters).
//! - [`time`]: Fluentd's time handling: a `strptime` subset ([`time::TimeParser`]), Ruby's
//!   `strftime` ([`time::TimeFormatter`]), numeric times, time zones.
//! - [`json`]: JSON ↔ msgpack values, rendered the way Ruby's `to_json` does, plus Ruby's
//!   `inspect`/`to_s` renderings used by the text formatters.
//! - [`parser`]: [`ParserConfig`] → `Box<dyn Parser>` for json, regexp, ltsv, csv, tsv, none,
//!   apache2, apache_error, nginx, syslog, msgpack and multiline.
//! - [`formatter`]: [`FormatterConfig`] → `Box<dyn Formatter>` for out_file, json, ltsv, csv,
//!   tsv, single_value, msgpack, hash and stdout.
//! - [`inject`]: the `<inject>` helper (hostname/worker id/tag/time keys).
//!
//! Records are [`rmpv::Value`] maps with string keys; times are [`EventTime`].
//!
//! ```
//! use nagare_formats::{EventTime, Params, ParserConfig, FormatterConfig};
//!
//! let parser = ParserConfig::new(
//!     Params::new()
//!         .with("@type", "regexp")
//!         .with("expression", "/^(?<time>[^ ]+) (?<level>\\w+) (?<msg>.*)$/")
//!         .with("time_format", "%iso8601"),
//! )
//! .build()?;
//! let (time, record) = parser.parse(b"2013-02-28T12:00:00+09:00 INFO hello")?.expect("matches");
//! assert_eq!(time, Some(EventTime::new(1362020400, 0)));
//!
//! let formatter = FormatterConfig::new(Params::new().with("@type", "out_file").with("utc", "true")).build()?;
//! let mut line = Vec::new();
//! formatter.format("app.log", EventTime::new(1362020400, 0), &record, &mut line)?;
//! assert_eq!(line, b"2013-02-28T03:00:00Z\tapp.log\t{\"level\":\"INFO\",\"msg\":\"hello\"}\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Invariant: nothing here panics on input that comes from outside (log lines, config values);
//! every failure is a typed error carrying the parser/formatter name and the offending value.

#![warn(missing_docs)]

pub mod error;
pub mod formatter;
pub mod inject;
pub mod json;
pub mod params;
pub mod parser;
pub mod time;
mod types;

pub use error::{ConfigError, FormatError, ParseError};
pub use formatter::{Formatter, FormatterConfig, Scratch, build_formatter};
pub use inject::{InjectConfig, Injector};
pub use params::Params;
pub use parser::{
    InputKind, Joined, MultilineJoiner, ParsedEvent, Parser, ParserConfig, build_parser,
};
pub use time::EventTime;

/// A record: an [`rmpv::Value::Map`] whose keys are strings.
pub type Record = rmpv::Value;
