//! The formatters: out_file, json, ltsv, csv, tsv, single_value, msgpack, hash, stdout.

use rmpv::Value;

use super::{Formatter, Scratch, build_formatter, lookup, newline_param};
use crate::error::{ConfigError, FormatError};
use crate::json::{
    RawPair, raw_map_pairs, raw_str, write_inspect, write_json_buf, write_json_raw_buf,
    write_json_raw_keyed, write_ruby_float_buf, write_scalar_to_s_raw, write_to_s,
};
use crate::params::Params;
use crate::time::{EventTime, TimeFormatter, Zone};

fn push(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

/// [`push`] for the short separators written once or twice per event (newlines,
/// delimiters): a single byte is stored directly instead of through a `memcpy` call.
#[inline(always)]
fn push_sep(out: &mut Vec<u8>, s: &str) {
    match s.as_bytes() {
        [b] => out.push(*b),
        other => out.extend_from_slice(other),
    }
}

fn need_map(record: &Value, formatter: &'static str) -> Result<(), FormatError> {
    if record.is_map() {
        Ok(())
    } else {
        Err(FormatError::NotAMap { formatter })
    }
}

/// Rejects `localtime` together with `utc` (Fluentd raises a ConfigError for it).
fn check_zone(plugin: &str, p: &Params) -> Result<(), ConfigError> {
    if p.has("localtime") && p.has("utc") {
        return Err(ConfigError::invalid(
            plugin,
            "utc",
            p.str_or("utc", ""),
            "both of utc and localtime are specified, use only one of them",
        ));
    }
    Zone::from_params(plugin, p).map(|_| ())
}

#[derive(Debug)]
enum TimeOut {
    Float,
    Unixtime,
    Text(TimeFormatter),
}

/// `out_file`: `time<delim>tag<delim>json\n`.
#[derive(Debug)]
pub(crate) struct OutFileFormatter {
    output_time: bool,
    output_tag: bool,
    delimiter: &'static str,
    time: TimeOut,
    /// The time text depends on the second only (one rendering per second is reused).
    per_second: bool,
    /// This instance's id in a [`Scratch`].
    id: u64,
}

impl OutFileFormatter {
    pub(crate) fn new(p: &Params) -> Result<OutFileFormatter, ConfigError> {
        const PL: &str = "out_file";
        check_zone(PL, p)?;
        // Fluentd maps only the names SPACE and COMMA (any case); anything else is a tab.
        // The literal characters are accepted too, as a harmless superset.
        let delimiter = match p.get("delimiter") {
            Some(d) if d.to_ascii_uppercase().contains("SPACE") || d == " " => " ",
            Some(d) if d.to_ascii_uppercase().contains("COMMA") || d == "," => ",",
            _ => "\t",
        };
        let mut time_type =
            p.enum_or(PL, "time_type", &["float", "unixtime", "string"], "string")?;
        if p.bool_or(PL, "time_as_epoch", false)? {
            time_type = "unixtime";
        }
        let time = match time_type {
            "float" => TimeOut::Float,
            "unixtime" => TimeOut::Unixtime,
            _ => TimeOut::Text(TimeFormatter::from_params(PL, p, None)?),
        };
        let per_second = match &time {
            TimeOut::Text(f) => f.ignores_subsec(),
            _ => false,
        };
        Ok(OutFileFormatter {
            output_time: p.bool_or(PL, "output_time", true)?,
            output_tag: p.bool_or(PL, "output_tag", true)?,
            delimiter,
            time,
            per_second,
            id: super::formatter_id(),
        })
    }
}

impl Formatter for OutFileFormatter {
    fn format(
        &self,
        tag: &str,
        time: EventTime,
        record: &Value,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        self.prefix(tag, time, out, &mut Scratch::new())?;
        write_json_buf(record, out);
        out.push(b'\n');
        Ok(())
    }

    fn type_name(&self) -> &'static str {
        "out_file"
    }

    fn format_raw(
        &self,
        tag: &str,
        time: EventTime,
        raw: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<Result<(), FormatError>> {
        Some(
            self.format_raw_prefix_with(tag, time, raw, out, &mut Scratch::new())?
                .map(|_| ()),
        )
    }

    fn format_raw_prefix_with(
        &self,
        tag: &str,
        time: EventTime,
        raw: &[u8],
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Option<Result<usize, FormatError>> {
        if raw
            .first()
            .is_none_or(|&m| !matches!(m, 0x80..=0x8f | 0xde | 0xdf))
        {
            return None;
        }
        let mark = out.len();
        if let Err(e) = self.prefix(tag, time, out, scratch) {
            out.truncate(mark);
            return Some(Err(e));
        }
        let Some(used) = write_json_raw_keyed(raw, out, &mut scratch.json_keys) else {
            out.truncate(mark);
            return None;
        };
        out.push(b'\n');
        Some(Ok(used))
    }
}

impl OutFileFormatter {
    /// `time<delimiter>tag<delimiter>`, as configured.
    fn prefix(
        &self,
        tag: &str,
        time: EventTime,
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Result<(), FormatError> {
        if self.output_time {
            match &self.time {
                TimeOut::Float => write_ruby_float_buf(time.as_f64(), out),
                TimeOut::Unixtime => {
                    out.extend_from_slice(itoa::Buffer::new().format(time.sec).as_bytes())
                }
                TimeOut::Text(f) if time.nsec < 1_000_000_000 => {
                    let key = if self.per_second {
                        EventTime {
                            sec: time.sec,
                            nsec: 0,
                        }
                    } else {
                        time
                    };
                    scratch.cached_time(self.id, key, out, |s| f.format_into(time, s))?;
                }
                TimeOut::Text(f) => {
                    let mut s = String::new();
                    f.format_into(time, &mut s)?;
                    push(out, &s);
                }
            }
            push_sep(out, self.delimiter);
        }
        if self.output_tag {
            push(out, tag);
            push_sep(out, self.delimiter);
        }
        Ok(())
    }
}

/// `json`: the record as JSON.
#[derive(Debug)]
pub(crate) struct JsonFormatter {
    newline: &'static str,
}

impl JsonFormatter {
    pub(crate) fn new(p: &Params) -> Result<JsonFormatter, ConfigError> {
        p.enum_or("json", "json_parser", &["oj", "yajl", "json"], "oj")?;
        Ok(JsonFormatter {
            newline: newline_param("json", p, true)?,
        })
    }
}

impl Formatter for JsonFormatter {
    fn format(
        &self,
        _tag: &str,
        _time: EventTime,
        record: &Value,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        write_json_buf(record, out);
        push_sep(out, self.newline);
        Ok(())
    }

    fn type_name(&self) -> &'static str {
        "json"
    }

    fn format_raw(
        &self,
        _tag: &str,
        _time: EventTime,
        raw: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<Result<(), FormatError>> {
        let mark = out.len();
        if write_json_raw_buf(raw, out).is_none() {
            out.truncate(mark);
            return None;
        }
        push_sep(out, self.newline);
        Some(Ok(()))
    }

    fn format_raw_prefix_with(
        &self,
        _tag: &str,
        _time: EventTime,
        raw: &[u8],
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Option<Result<usize, FormatError>> {
        let mark = out.len();
        let Some(used) = write_json_raw_keyed(raw, out, &mut scratch.json_keys) else {
            out.truncate(mark);
            return None;
        };
        push_sep(out, self.newline);
        Some(Ok(used))
    }
}

/// `ltsv`: `label:value` pairs; the delimiter inside values becomes `replacement`.
#[derive(Debug)]
pub(crate) struct LtsvFormatter {
    delimiter: String,
    label_delimiter: String,
    replacement: String,
    newline: &'static str,
}

impl LtsvFormatter {
    pub(crate) fn new(p: &Params) -> Result<LtsvFormatter, ConfigError> {
        Ok(LtsvFormatter {
            delimiter: p.str_or("delimiter", "\t").to_string(),
            label_delimiter: p.str_or("label_delimiter", ":").to_string(),
            replacement: p.str_or("replacement", " ").to_string(),
            newline: newline_param("ltsv", p, true)?,
        })
    }
}

impl Formatter for LtsvFormatter {
    fn format(
        &self,
        _tag: &str,
        _time: EventTime,
        record: &Value,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        need_map(record, "ltsv")?;
        let mut s = String::new();
        for (i, (k, v)) in record.as_map().into_iter().flatten().enumerate() {
            if i > 0 {
                s.push_str(&self.delimiter);
            }
            write_to_s(k, &mut s);
            s.push_str(&self.label_delimiter);
            let mut val = String::new();
            write_to_s(v, &mut val);
            if self.delimiter.is_empty() {
                s.push_str(&val);
            } else {
                s.push_str(&val.replace(self.delimiter.as_str(), &self.replacement));
            }
        }
        s.push_str(self.newline);
        push(out, &s);
        Ok(())
    }

    fn type_name(&self) -> &'static str {
        "ltsv"
    }

    fn format_raw(
        &self,
        _tag: &str,
        _time: EventTime,
        raw: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<Result<(), FormatError>> {
        let mark = out.len();
        let r = self.raw_line(raw, out);
        if r.is_none() {
            out.truncate(mark);
        }
        r.map(Ok)
    }
}

impl LtsvFormatter {
    /// The line from a raw map whose keys are strings and values scalars; `None` (with
    /// `out` partly written) for anything else.
    fn raw_line(&self, raw: &[u8], out: &mut Vec<u8>) -> Option<()> {
        let mut pairs = raw_map_pairs(raw)?;
        for (i, pair) in pairs.by_ref().enumerate() {
            let RawPair { key, value, .. } = pair?;
            if i > 0 {
                push(out, &self.delimiter);
            }
            push(out, &String::from_utf8_lossy(key));
            push(out, &self.label_delimiter);
            let at = out.len();
            write_scalar_to_s_raw(value, out)?;
            if !self.delimiter.is_empty()
                && let Some(text) = out.get(at..)
                && text
                    .windows(self.delimiter.len())
                    .any(|w| w == self.delimiter.as_bytes())
            {
                // The value text is UTF-8 (write_scalar_to_s_raw makes it so).
                let replaced = String::from_utf8_lossy(text)
                    .replace(self.delimiter.as_str(), &self.replacement);
                out.truncate(at);
                push(out, &replaced);
            }
        }
        push_sep(out, self.newline);
        Some(())
    }
}

/// A field reference: a plain key, or a record_accessor path (`$.a.b`, `$['a']['b']`).
#[derive(Debug, Clone)]
struct FieldPath(Vec<String>);

impl FieldPath {
    fn parse(f: &str) -> FieldPath {
        let Some(rest) = f.strip_prefix('$') else {
            return FieldPath(vec![f.to_string()]);
        };
        let mut parts = Vec::new();
        let mut r = rest;
        while !r.is_empty() {
            if let Some(x) = r.strip_prefix("['") {
                match x.find("']") {
                    Some(end) => {
                        parts.push(x[..end].to_string());
                        r = &x[end + 2..];
                    }
                    None => {
                        parts.push(x.to_string());
                        break;
                    }
                }
            } else if let Some(x) = r.strip_prefix('.') {
                let end = x.find(['.', '[']).unwrap_or(x.len());
                parts.push(x[..end].to_string());
                r = &x[end..];
            } else {
                parts.push(r.to_string());
                break;
            }
        }
        FieldPath(parts)
    }

    fn get<'a>(&self, record: &'a Value) -> Option<&'a Value> {
        let mut cur = record;
        for p in &self.0 {
            cur = lookup(cur, p)?;
        }
        Some(cur)
    }
}

/// `csv`: the `fields` values as one CSV row.
#[derive(Debug)]
pub(crate) struct CsvFormatter {
    fields: Vec<FieldPath>,
    delimiter: String,
    force_quotes: bool,
    newline: &'static str,
}

impl CsvFormatter {
    pub(crate) fn new(p: &Params) -> Result<CsvFormatter, ConfigError> {
        const PL: &str = "csv";
        let fields: Vec<String> = p
            .list(PL, "fields")?
            .ok_or(ConfigError::Missing {
                plugin: PL.to_string(),
                param: "fields",
            })?
            .into_iter()
            .filter(|f| !f.is_empty())
            .collect();
        if fields.is_empty() {
            return Err(ConfigError::invalid(
                PL,
                "fields",
                p.str_or("fields", ""),
                "empty value is specified in fields parameter",
            ));
        }
        let delimiter = match p.str_or("delimiter", ",") {
            "\\t" | "TAB" => "\t".to_string(),
            d => d.to_string(),
        };
        if delimiter.is_empty() {
            return Err(ConfigError::invalid(
                PL,
                "delimiter",
                "",
                "must not be empty",
            ));
        }
        Ok(CsvFormatter {
            fields: fields.iter().map(|f| FieldPath::parse(f)).collect(),
            delimiter,
            force_quotes: p.bool_or(PL, "force_quotes", true)?,
            newline: newline_param(PL, p, true)?,
        })
    }
}

/// Appends one CSV field, Ruby CSV style: nil is empty, `""` for an empty string, quotes
/// when forced or when the value holds the delimiter, a quote or a line break.
pub(crate) fn write_csv_field(v: Option<&Value>, delim: &str, force: bool, out: &mut String) {
    let text = match v {
        None | Some(Value::Nil) => None,
        Some(v) => {
            let mut s = String::new();
            write_to_s(v, &mut s);
            Some(s)
        }
    };
    let quote = force
        || text
            .as_deref()
            .is_some_and(|t| t.is_empty() || t.contains(delim) || t.contains(['"', '\r', '\n']));
    if quote {
        out.push('"');
        out.push_str(&text.unwrap_or_default().replace('"', "\"\""));
        out.push('"');
    } else if let Some(t) = text {
        out.push_str(&t);
    }
}

impl Formatter for CsvFormatter {
    fn format(
        &self,
        _tag: &str,
        _time: EventTime,
        record: &Value,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        need_map(record, "csv")?;
        let mut s = String::new();
        for (i, f) in self.fields.iter().enumerate() {
            if i > 0 {
                s.push_str(&self.delimiter);
            }
            write_csv_field(f.get(record), &self.delimiter, self.force_quotes, &mut s);
        }
        s.push_str(self.newline);
        push(out, &s);
        Ok(())
    }

    fn type_name(&self) -> &'static str {
        "csv"
    }
}

/// `tsv`: the `keys` values joined by `delimiter`.
#[derive(Debug)]
pub(crate) struct TsvFormatter {
    keys: Vec<String>,
    delimiter: String,
    newline: &'static str,
}

impl TsvFormatter {
    pub(crate) fn new(p: &Params) -> Result<TsvFormatter, ConfigError> {
        Ok(TsvFormatter {
            keys: p.list("tsv", "keys")?.ok_or(ConfigError::Missing {
                plugin: "tsv".to_string(),
                param: "keys",
            })?,
            delimiter: p.str_or("delimiter", "\t").to_string(),
            newline: newline_param("tsv", p, true)?,
        })
    }
}

impl Formatter for TsvFormatter {
    fn format(
        &self,
        _tag: &str,
        _time: EventTime,
        record: &Value,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        need_map(record, "tsv")?;
        let mut s = String::new();
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                s.push_str(&self.delimiter);
            }
            if let Some(v) = lookup(record, k) {
                write_to_s(v, &mut s);
            }
        }
        s.push_str(self.newline);
        push(out, &s);
        Ok(())
    }

    fn type_name(&self) -> &'static str {
        "tsv"
    }
}

/// `single_value`: one field's value as text.
#[derive(Debug)]
pub(crate) struct SingleValueFormatter {
    message_key: String,
    newline: &'static str,
}

impl SingleValueFormatter {
    pub(crate) fn new(p: &Params) -> Result<SingleValueFormatter, ConfigError> {
        Ok(SingleValueFormatter {
            message_key: p.str_or("message_key", "message").to_string(),
            newline: newline_param("single_value", p, true)?,
        })
    }
}

impl Formatter for SingleValueFormatter {
    fn format(
        &self,
        _tag: &str,
        _time: EventTime,
        record: &Value,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        match lookup(record, &self.message_key) {
            Some(Value::String(s)) => out.extend_from_slice(s.as_bytes()),
            Some(Value::Binary(b)) => out.extend_from_slice(b),
            Some(v) => {
                let mut s = String::new();
                write_to_s(v, &mut s);
                push(out, &s);
            }
            None => {}
        }
        push_sep(out, self.newline);
        Ok(())
    }

    fn type_name(&self) -> &'static str {
        "single_value"
    }

    fn format_raw(
        &self,
        _tag: &str,
        _time: EventTime,
        raw: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<Result<(), FormatError>> {
        // The first pair whose key is `message_key`, as `lookup` finds it.
        let mut found = None;
        for pair in raw_map_pairs(raw)? {
            let RawPair {
                key,
                key_is_str,
                value,
            } = pair?;
            // `lookup` matches str keys only (a bin key is not a Ruby String in the map).
            if key_is_str && key == self.message_key.as_bytes() {
                found = Some(value);
                break;
            }
        }
        let mark = out.len();
        if let Some(value) = found {
            match raw_str(value) {
                // str and bin: the bytes as they are, as `format` writes them.
                Some((bytes, _)) => out.extend_from_slice(bytes),
                None => {
                    if write_scalar_to_s_raw(value, out).is_none() {
                        out.truncate(mark);
                        return None;
                    }
                }
            }
        }
        push_sep(out, self.newline);
        Some(Ok(()))
    }
}

/// `msgpack`: the record as msgpack.
#[derive(Debug)]
pub(crate) struct MsgpackFormatter;

impl Formatter for MsgpackFormatter {
    fn format(
        &self,
        _tag: &str,
        _time: EventTime,
        record: &Value,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        rmpv::encode::write_value(out, record).map_err(|e| FormatError::Encode {
            formatter: "msgpack",
            reason: e.to_string(),
        })
    }

    fn type_name(&self) -> &'static str {
        "msgpack"
    }
}

/// `hash`: Ruby 3.4's `Hash#to_s` (`{"k" => "v"}`).
#[derive(Debug)]
pub(crate) struct HashFormatter {
    newline: &'static str,
}

impl HashFormatter {
    pub(crate) fn new(p: &Params) -> Result<HashFormatter, ConfigError> {
        Ok(HashFormatter {
            newline: newline_param("hash", p, true)?,
        })
    }
}

impl Formatter for HashFormatter {
    fn format(
        &self,
        _tag: &str,
        _time: EventTime,
        record: &Value,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        let mut s = String::new();
        write_inspect(record, &mut s);
        s.push_str(self.newline);
        push(out, &s);
        Ok(())
    }

    fn type_name(&self) -> &'static str {
        "hash"
    }
}

/// `stdout`: out_stdout's line, `%Y-%m-%d %H:%M:%S.%N %z tag: <output_type formatted>`.
#[derive(Debug)]
pub(crate) struct StdoutFormatter {
    time: TimeFormatter,
    sub: Box<dyn Formatter>,
}

/// out_stdout's time format.
pub(crate) const STDOUT_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S.%N %z";

impl StdoutFormatter {
    pub(crate) fn new(p: &Params) -> Result<StdoutFormatter, ConfigError> {
        const PL: &str = "stdout";
        check_zone(PL, p)?;
        let output_type = p.str_or("output_type", "json");
        if output_type == "stdout" {
            return Err(ConfigError::invalid(
                PL,
                "output_type",
                output_type,
                "must not be stdout itself",
            ));
        }
        let sub = build_formatter(&p.clone().with("@type", output_type))?;
        let zone = Zone::from_params(PL, p)?;
        let fmt = p.str_or("time_format", STDOUT_TIME_FORMAT);
        let time = TimeFormatter::new(Some(fmt), zone, p.has("timezone"))
            .map_err(|e| ConfigError::invalid(PL, "time_format", fmt, e))?;
        Ok(StdoutFormatter { time, sub })
    }
}

impl Formatter for StdoutFormatter {
    fn format(
        &self,
        tag: &str,
        time: EventTime,
        record: &Value,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        let mut head = String::new();
        self.time.format_into(time, &mut head)?;
        head.push(' ');
        head.push_str(tag);
        head.push_str(": ");
        push(out, &head);
        let start = out.len();
        self.sub.format(tag, time, record, out)?;
        // chomp whatever newline the sub-formatter added, then end the line
        if out.len() > start && out.last() == Some(&b'\n') {
            out.pop();
            if out.len() > start && out.last() == Some(&b'\r') {
                out.pop();
            }
        }
        out.push(b'\n');
        Ok(())
    }

    fn type_name(&self) -> &'static str {
        "stdout"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(pairs: &[(&str, &str)]) -> Box<dyn Formatter> {
        match build_formatter(&Params::from_pairs(pairs.iter().copied())) {
            Ok(f) => f,
            Err(e) => panic!("{pairs:?}: {e}"),
        }
    }

    fn rec(pairs: &[(&str, Value)]) -> Value {
        Value::Map(
            pairs
                .iter()
                .map(|(k, v)| (Value::from(*k), v.clone()))
                .collect(),
        )
    }

    /// 2016-04-01T12:34:56.123456789Z
    const TIME: EventTime = EventTime {
        sec: 1_459_514_096,
        nsec: 123_456_789,
    };
    const TAG: &str = "tag";

    fn check(pairs: &[(&str, &str)], record: &Value, expect: &str) {
        let f = fmt(pairs);
        let got = f
            .format_to_vec(TAG, TIME, record)
            .unwrap_or_else(|e| panic!("{pairs:?}: {e}"));
        assert_eq!(String::from_utf8_lossy(&got), expect, "{pairs:?}");
        // The raw-bytes path, where the formatter has one, writes the same line.
        let mut raw = Vec::new();
        let _ = rmpv::encode::write_value(&mut raw, record);
        let mut fast = b"<".to_vec();
        match f.format_raw(TAG, TIME, &raw, &mut fast) {
            Some(r) => {
                assert!(r.is_ok(), "{pairs:?}: {r:?}");
                assert_eq!(
                    String::from_utf8_lossy(&fast),
                    format!("<{expect}"),
                    "{pairs:?}"
                );
            }
            None => assert_eq!(fast, b"<", "{pairs:?}"),
        }
    }

    fn sample() -> Value {
        rec(&[
            ("message", Value::from("awesome")),
            ("greeting", Value::from("hello")),
        ])
    }

    #[test]
    fn out_file_cases() {
        // ported from test_formatter_out_file.rb
        let r = sample();
        let json = r#"{"message":"awesome","greeting":"hello"}"#;
        for (pairs, expect) in [
            (
                vec![("@type", "out_file"), ("utc", "true")],
                format!("2016-04-01T12:34:56Z\ttag\t{json}\n"),
            ),
            (
                vec![("@type", "out_file"), ("timezone", "+09:00")],
                format!("2016-04-01T21:34:56+09:00\ttag\t{json}\n"),
            ),
            (
                // test_out_file.rb: iso8601 in the zone, offset with a colon
                vec![("@type", "out_file"), ("timezone", "-03:30")],
                format!("2016-04-01T09:04:56-03:30\ttag\t{json}\n"),
            ),
            (
                vec![("@type", "out_file"), ("timezone", "Asia/Taipei")],
                format!("2016-04-01T20:34:56+08:00\ttag\t{json}\n"),
            ),
            (
                vec![
                    ("@type", "out_file"),
                    ("timezone", "Asia/Tokyo"),
                    ("time_format", "%Y%m%d %H%M%S"),
                ],
                format!("20160401 213456\ttag\t{json}\n"),
            ),
            (
                vec![
                    ("@type", "out_file"),
                    ("localtime", "false"),
                    ("time_format", "%Y-%m-%d %H:%M:%S.%N"),
                ],
                format!("2016-04-01 12:34:56.123456789\ttag\t{json}\n"),
            ),
            (
                vec![("@type", "out_file"), ("output_time", "false")],
                format!("tag\t{json}\n"),
            ),
            (
                vec![
                    ("@type", "out_file"),
                    ("output_time", "false"),
                    ("output_tag", "false"),
                ],
                format!("{json}\n"),
            ),
            (
                vec![
                    ("@type", "out_file"),
                    ("utc", "true"),
                    ("delimiter", "SPACE"),
                ],
                format!("2016-04-01T12:34:56Z tag {json}\n"),
            ),
            (
                vec![
                    ("@type", "out_file"),
                    ("utc", "true"),
                    ("delimiter", "comma"),
                ],
                format!("2016-04-01T12:34:56Z,tag,{json}\n"),
            ),
            (
                vec![("@type", "out_file"), ("utc", "true"), ("delimiter", "|")],
                format!("2016-04-01T12:34:56Z\ttag\t{json}\n"),
            ),
            (
                vec![("@type", "out_file"), ("time_type", "unixtime")],
                format!("1459514096\ttag\t{json}\n"),
            ),
            (
                vec![("@type", "out_file"), ("time_as_epoch", "true")],
                format!("1459514096\ttag\t{json}\n"),
            ),
            (
                vec![("@type", "out_file"), ("time_type", "float")],
                format!("1459514096.1234567\ttag\t{json}\n"),
            ),
        ] {
            check(&pairs, &r, &expect);
        }
    }

    #[test]
    fn json_cases() {
        let r = sample();
        check(
            &[("@type", "json")],
            &r,
            "{\"message\":\"awesome\",\"greeting\":\"hello\"}\n",
        );
        check(
            &[("@type", "json"), ("add_newline", "false")],
            &r,
            r#"{"message":"awesome","greeting":"hello"}"#,
        );
        check(
            &[("@type", "json"), ("newline", "crlf")],
            &r,
            "{\"message\":\"awesome\",\"greeting\":\"hello\"}\r\n",
        );
        check(
            &[("@type", "json")],
            &rec(&[
                ("n", Value::F64(1.0)),
                ("a", Value::Array(vec![Value::Nil])),
            ]),
            "{\"n\":1.0,\"a\":[null]}\n",
        );
    }

    #[test]
    fn ltsv_cases() {
        // ported from test_formatter_ltsv.rb
        let r = sample();
        check(
            &[("@type", "ltsv")],
            &r,
            "message:awesome\tgreeting:hello\n",
        );
        check(
            &[
                ("@type", "ltsv"),
                ("delimiter", ","),
                ("label_delimiter", "="),
            ],
            &r,
            "message=awesome,greeting=hello\n",
        );
        check(
            &[("@type", "ltsv"), ("add_newline", "false")],
            &r,
            "message:awesome\tgreeting:hello",
        );
        let r = rec(&[
            ("m", Value::from("a\tb")),
            ("n", Value::from(1)),
            ("x", Value::Nil),
        ]);
        check(&[("@type", "ltsv")], &r, "m:a b\tn:1\tx:\n");
        check(
            &[("@type", "ltsv"), ("replacement", "_")],
            &r,
            "m:a_b\tn:1\tx:\n",
        );
        assert!(
            fmt(&[("@type", "ltsv")])
                .format_to_vec(TAG, TIME, &Value::from(1))
                .is_err()
        );
    }

    #[test]
    fn raw_paths_of_ltsv_and_single_value() {
        let r = rec(&[
            ("s", Value::from("x\ty")),
            ("i", Value::from(-7)),
            ("u", Value::from(u64::MAX)),
            ("f", Value::F64(0.5)),
            ("b", Value::from(false)),
            ("n", Value::Nil),
            ("t", Value::Ext(0, vec![0, 0, 0, 9, 0, 0, 0, 1])),
            ("bin", Value::Binary(b"\xffz".to_vec())),
        ]);
        check(
            &[("@type", "ltsv")],
            &r,
            "s:x y\ti:-7\tu:18446744073709551615\tf:0.5\tb:false\tn:\tt:9\tbin:\u{fffd}z\n",
        );
        check(
            &[
                ("@type", "ltsv"),
                ("delimiter", "1"),
                ("replacement", "one"),
            ],
            &r,
            "s:x\ty1i:-71u:one844674407370955one6one51f:0.51b:false1n:1t:91bin:\u{fffd}z\n",
        );
        // nested values and other ext values go through the general path
        check(
            &[("@type", "ltsv")],
            &rec(&[
                ("a", Value::Array(vec![Value::from(1)])),
                ("e", Value::Ext(5, vec![1])),
            ]),
            "a:[1]\te:#<struct MessagePack::ExtensionValue type=5, payload=\"\\x01\">\n",
        );
        for (key, expect) in [
            ("s", "x\ty\n"),
            ("i", "-7\n"),
            ("f", "0.5\n"),
            ("n", "\n"),
            ("t", "9\n"),
            ("missing", "\n"),
        ] {
            check(
                &[("@type", "single_value"), ("message_key", key)],
                &r,
                expect,
            );
        }
        // a bin key is not the message key, even with the same bytes
        check(
            &[("@type", "single_value")],
            &Value::Map(vec![
                (Value::Binary(b"message".to_vec()), Value::from("bin")),
                (Value::from("message"), Value::from("str")),
            ]),
            "str\n",
        );
        // a str that is not UTF-8 is written as is
        let bad = rmpv::decode::read_value(
            &mut &[
                0x81, 0xa7, b'm', b'e', b's', b's', b'a', b'g', b'e', 0xa2, b'a', 0xff,
            ][..],
        )
        .unwrap_or(Value::Nil);
        let f = fmt(&[("@type", "single_value")]);
        assert_eq!(
            f.format_to_vec(TAG, TIME, &bad).ok(),
            Some(b"a\xff\n".to_vec())
        );
        check(
            &[("@type", "single_value"), ("message_key", "a")],
            &rec(&[("a", rec(&[("k", Value::from(1))]))]),
            "{\"k\" => 1}\n",
        );
    }

    #[test]
    fn a_scratch_outliving_its_formatter_is_not_reused_by_the_next() {
        // Each formatter is dropped before the next is built, likely at the same address.
        let mut scratch = Scratch::new();
        for (zone, expect) in [
            ("+09:00", "2016-04-01T21:34:56+09:00"),
            ("+01:00", "2016-04-01T13:34:56+01:00"),
            ("-02:00", "2016-04-01T10:34:56-02:00"),
        ] {
            let f = fmt(&[
                ("@type", "out_file"),
                ("timezone", zone),
                ("output_tag", "false"),
            ]);
            let mut line = Vec::new();
            let _ = f.format_raw_with(TAG, TIME, &[0x80], &mut line, &mut scratch);
            assert_eq!(String::from_utf8_lossy(&line), format!("{expect}\t{{}}\n"));
        }
    }

    #[test]
    fn out_file_time_is_rendered_once_per_second() {
        // One scratch over a batch: every line shows its own time, sub-second digits too.
        for (pairs, expect) in [
            (
                vec![("@type", "out_file"), ("utc", "true")],
                [
                    "2016-04-01T12:34:56Z",
                    "2016-04-01T12:34:56Z",
                    "2016-04-01T12:34:57Z",
                ],
            ),
            (
                vec![
                    ("@type", "out_file"),
                    ("utc", "true"),
                    ("time_format", "%S.%L"),
                ],
                ["56.123", "56.999", "57.000"],
            ),
            (
                vec![
                    ("@type", "out_file"),
                    ("utc", "true"),
                    ("time_format", "%Q"),
                ],
                ["1459514096123", "1459514096999", "1459514097000"],
            ),
        ] {
            let f = fmt(&pairs);
            let mut scratch = Scratch::new();
            let mut out = Vec::new();
            for t in [
                TIME,
                EventTime::new(TIME.sec, 999_999_999),
                EventTime::new(TIME.sec + 1, 0),
            ] {
                let r = f.format_raw_with(TAG, t, &[0x80], &mut out, &mut scratch);
                assert!(matches!(r, Some(Ok(()))), "{pairs:?}");
            }
            let want: String = expect.iter().map(|t| format!("{t}\ttag\t{{}}\n")).collect();
            assert_eq!(String::from_utf8_lossy(&out), want, "{pairs:?}");
            // the same scratch handed to another formatter is refilled, not reused
            let other = fmt(&[("@type", "out_file"), ("timezone", "+09:00")]);
            let mut line = Vec::new();
            let _ = other.format_raw_with(TAG, TIME, &[0x80], &mut line, &mut scratch);
            assert_eq!(
                String::from_utf8_lossy(&line),
                "2016-04-01T21:34:56+09:00\ttag\t{}\n"
            );
        }
    }

    #[test]
    fn csv_cases() {
        // ported from test_formatter_csv.rb
        let r = rec(&[
            ("message", Value::from("awesome")),
            ("message2", Value::from("awesome2")),
            ("n", Value::Nil),
        ]);
        check(
            &[("@type", "csv"), ("fields", "message,message2")],
            &r,
            "\"awesome\",\"awesome2\"\n",
        );
        check(
            &[
                ("@type", "csv"),
                ("fields", "message,message2"),
                ("delimiter", "\\t"),
            ],
            &r,
            "\"awesome\"\t\"awesome2\"\n",
        );
        check(
            &[
                ("@type", "csv"),
                ("fields", "message,message2"),
                ("delimiter", "TAB"),
            ],
            &r,
            "\"awesome\"\t\"awesome2\"\n",
        );
        check(
            &[
                ("@type", "csv"),
                ("fields", "message,message2"),
                ("force_quotes", "false"),
            ],
            &r,
            "awesome,awesome2\n",
        );
        check(
            &[
                ("@type", "csv"),
                ("fields", "message,n,missing"),
                ("force_quotes", "false"),
            ],
            &r,
            "awesome,,\n",
        );
        check(
            &[
                ("@type", "csv"),
                ("fields", "message,n"),
                ("force_quotes", "true"),
            ],
            &r,
            "\"awesome\",\"\"\n",
        );
        check(
            &[
                ("@type", "csv"),
                ("fields", "message,message2,"),
                ("add_newline", "false"),
            ],
            &r,
            "\"awesome\",\"awesome2\"",
        );
        let q = rec(&[
            ("a", Value::from("x,\"y\"")),
            ("b", Value::from("")),
            ("c", Value::from(3)),
        ]);
        check(
            &[
                ("@type", "csv"),
                ("fields", "a,b,c"),
                ("force_quotes", "false"),
            ],
            &q,
            "\"x,\"\"y\"\"\",\"\",3\n",
        );
        let nested = rec(&[
            ("a", rec(&[("b", Value::from("deep"))])),
            ("c", Value::from(1)),
        ]);
        check(
            &[
                ("@type", "csv"),
                ("fields", "$.a.b,$['c'],a"),
                ("force_quotes", "false"),
            ],
            &nested,
            "deep,1,\"{\"\"b\"\" => \"\"deep\"\"}\"\n",
        );
    }

    #[test]
    fn tsv_single_value_hash_msgpack() {
        let r = sample();
        check(
            &[("@type", "tsv"), ("keys", "message,greeting,none")],
            &r,
            "awesome\thello\t\n",
        );
        check(
            &[
                ("@type", "tsv"),
                ("keys", "greeting"),
                ("delimiter", ","),
                ("add_newline", "false"),
            ],
            &r,
            "hello",
        );
        check(&[("@type", "single_value")], &r, "awesome\n");
        check(
            &[
                ("@type", "single_value"),
                ("message_key", "greeting"),
                ("add_newline", "false"),
            ],
            &r,
            "hello",
        );
        check(
            &[("@type", "single_value"), ("message_key", "missing")],
            &r,
            "\n",
        );
        check(
            &[("@type", "hash")],
            &r,
            "{\"message\" => \"awesome\", \"greeting\" => \"hello\"}\n",
        );
        check(
            &[("@type", "hash"), ("add_newline", "false")],
            &rec(&[("n", Value::Nil)]),
            "{\"n\" => nil}",
        );
        let f = fmt(&[("@type", "msgpack")]);
        let bytes = f.format_to_vec(TAG, TIME, &r).unwrap_or_default();
        let back = rmpv::decode::read_value(&mut bytes.as_slice()).ok();
        assert_eq!(back, Some(r));
    }

    #[test]
    fn stdout_cases() {
        // ported from test_formatter_stdout / test_out_stdout.rb
        let r = sample();
        check(
            &[("@type", "stdout"), ("utc", "true")],
            &r,
            "2016-04-01 12:34:56.123456789 +0000 tag: {\"message\":\"awesome\",\"greeting\":\"hello\"}\n",
        );
        check(
            &[("@type", "stdout"), ("timezone", "+09:00")],
            &r,
            "2016-04-01 21:34:56.123456789 +0900 tag: {\"message\":\"awesome\",\"greeting\":\"hello\"}\n",
        );
        check(
            &[
                ("@type", "stdout"),
                ("utc", "true"),
                ("output_type", "hash"),
            ],
            &r,
            "2016-04-01 12:34:56.123456789 +0000 tag: {\"message\" => \"awesome\", \"greeting\" => \"hello\"}\n",
        );
        check(
            &[
                ("@type", "stdout"),
                ("utc", "true"),
                ("output_type", "ltsv"),
            ],
            &r,
            "2016-04-01 12:34:56.123456789 +0000 tag: message:awesome\tgreeting:hello\n",
        );
    }
}
