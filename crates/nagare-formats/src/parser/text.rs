//! Delimited-text parsers: `ltsv`, `csv`, `tsv`, `none`.

use fancy_regex::Regex;
use rmpv::Value;

use super::{Common, ParsedEvent, Parser, ruby_regex, text_of};
use crate::error::{ConfigError, ParseError};
use crate::params::Params;
use crate::time::TimeType;

fn ruby_split<'a>(s: &'a str, delim: &str) -> Vec<&'a str> {
    if delim == " " {
        return s.split_whitespace().collect();
    }
    if delim.is_empty() {
        return vec![s];
    }
    s.split(delim).collect()
}

/// `ltsv`: `label:value` pairs separated by `delimiter` (or `delimiter_pattern`).
#[derive(Debug)]
pub(crate) struct LtsvParser {
    common: Common,
    delimiter: String,
    delimiter_pattern: Option<Regex>,
    label_delimiter: String,
}

impl LtsvParser {
    pub(crate) fn new(p: &Params) -> Result<LtsvParser, ConfigError> {
        let delimiter_pattern = match p.get("delimiter_pattern") {
            Some(src) => Some(ruby_regex("ltsv", "delimiter_pattern", src, false)?),
            None => None,
        };
        let label_delimiter = p.str_or("label_delimiter", ":").to_string();
        if label_delimiter.is_empty() {
            return Err(ConfigError::invalid(
                "ltsv",
                "label_delimiter",
                "",
                "must not be empty",
            ));
        }
        Ok(LtsvParser {
            common: Common::new("ltsv", p, Some("time"), TimeType::String, None)?,
            delimiter: p.str_or("delimiter", "\t").to_string(),
            delimiter_pattern,
            label_delimiter,
        })
    }
}

impl Parser for LtsvParser {
    fn parse(&self, text: &[u8]) -> Result<Option<ParsedEvent>, ParseError> {
        let text = text_of(text);
        let pairs: Vec<&str> = match &self.delimiter_pattern {
            Some(re) => {
                let mut out = Vec::new();
                let mut last = 0;
                for m in re.find_iter(text.as_ref()) {
                    let m = m.map_err(|e| ParseError::Regex {
                        parser: "ltsv",
                        reason: e.to_string(),
                    })?;
                    if m.end() == m.start() {
                        continue;
                    }
                    out.push(&text[last..m.start()]);
                    last = m.end();
                }
                out.push(&text[last..]);
                out
            }
            None => ruby_split(&text, &self.delimiter),
        };
        let mut rec = Vec::new();
        for pair in pairs {
            if let Some((k, v)) = pair.split_once(self.label_delimiter.as_str()) {
                rec.retain(|(key, _): &(Value, Value)| key.as_str() != Some(k));
                rec.push((Value::from(k), Value::from(v)));
            }
        }
        self.common.finish(rec).map(Some)
    }

    fn type_name(&self) -> &'static str {
        "ltsv"
    }
}

fn keys_param(plugin: &str, p: &Params) -> Result<Vec<String>, ConfigError> {
    p.list(plugin, "keys")?.ok_or(ConfigError::Missing {
        plugin: plugin.to_string(),
        param: "keys",
    })
}

/// `csv`: values by `keys`, Ruby `CSV.parse_line` rules (`parser_engine normal`) or the
/// faster splitting heuristic (`parser_engine fast`).
#[derive(Debug)]
pub(crate) struct CsvParser {
    common: Common,
    keys: Vec<String>,
    delimiter: String,
    fast: bool,
}

impl CsvParser {
    pub(crate) fn new(p: &Params) -> Result<CsvParser, ConfigError> {
        let engine_key = if p.has("parser_engine") {
            "parser_engine"
        } else {
            "parser_type"
        };
        let engine = p.enum_or("csv", engine_key, &["normal", "fast"], "normal")?;
        let delimiter = p.str_or("delimiter", ",").to_string();
        if delimiter.is_empty() {
            return Err(ConfigError::invalid(
                "csv",
                "delimiter",
                "",
                "must not be empty",
            ));
        }
        Ok(CsvParser {
            common: Common::new("csv", p, None, TimeType::String, None)?,
            keys: keys_param("csv", p)?,
            delimiter,
            fast: engine == "fast",
        })
    }
}

impl Parser for CsvParser {
    fn parse(&self, text: &[u8]) -> Result<Option<ParsedEvent>, ParseError> {
        let text = text_of(text);
        let values = if self.fast {
            parse_csv_fast(&text, &self.delimiter)
        } else {
            match parse_csv_line(&text, &self.delimiter) {
                Ok(Some(v)) => v,
                Ok(None) => return Ok(None),
                Err(reason) => {
                    return Err(ParseError::Invalid {
                        parser: "csv",
                        reason,
                    });
                }
            }
        };
        let n = if self.fast {
            values.len().min(self.keys.len())
        } else {
            self.keys.len()
        };
        let mut rec = Vec::with_capacity(n);
        for (i, k) in self.keys.iter().take(n).enumerate() {
            let v = values
                .get(i)
                .cloned()
                .flatten()
                .map(Value::from)
                .unwrap_or(Value::Nil);
            rec.push((Value::from(k.as_str()), v));
        }
        self.common.finish(rec).map(Some)
    }

    fn type_name(&self) -> &'static str {
        "csv"
    }
}

/// One CSV row, Ruby `CSV.parse_line` style: unquoted empty fields are `None`, quoted ones
/// `Some("")`; `""` inside quotes is a quote; a line break ends the row. `Ok(None)` for an
/// empty line.
pub(crate) fn parse_csv_line(
    text: &str,
    delim: &str,
) -> Result<Option<Vec<Option<String>>>, String> {
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(text);
    if text.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        if let Some(q) = rest.strip_prefix('"') {
            let mut field = String::new();
            let mut r = q;
            loop {
                let Some(pos) = r.find('"') else {
                    return Err(format!("unclosed quoted field at column {}", out.len() + 1));
                };
                field.push_str(&r[..pos]);
                r = &r[pos + 1..];
                if let Some(after) = r.strip_prefix('"') {
                    field.push('"');
                    r = after;
                } else {
                    break;
                }
            }
            out.push(Some(field));
            if r.is_empty() {
                return Ok(Some(out));
            }
            rest = r.strip_prefix(delim).ok_or_else(|| {
                format!(
                    "any value after quoted field isn't allowed (column {})",
                    out.len()
                )
            })?;
        } else {
            let (field, next) = match rest.find(delim) {
                Some(pos) => (&rest[..pos], Some(&rest[pos + delim.len()..])),
                None => (rest, None),
            };
            if field.contains('"') {
                return Err(format!("illegal quoting in column {}", out.len() + 1));
            }
            if field.contains(['\r', '\n']) {
                return Err(format!(
                    "unquoted fields do not allow \\r or \\n (column {})",
                    out.len() + 1
                ));
            }
            out.push(if field.is_empty() {
                None
            } else {
                Some(field.to_string())
            });
            match next {
                Some(n) => rest = n,
                None => return Ok(Some(out)),
            }
        }
    }
}

/// Fluentd's `parse_fast_internal`: split on the delimiter, re-join quoted columns.
fn parse_csv_fast(text: &str, delim: &str) -> Vec<Option<String>> {
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(text);
    if text.is_empty() {
        return Vec::new();
    }
    let cols: Vec<&str> = text.split(delim).collect();
    let mut out = Vec::new();
    let mut j = 0;
    let strip = |c: &str| -> String {
        let mut it = c.chars();
        it.next();
        it.next_back();
        it.as_str().to_string()
    };
    while j < cols.len() {
        let col = cols[j];
        let quotes = col.matches('"').count();
        let value = match quotes {
            0 => (!col.is_empty()).then(|| col.to_string()),
            1 if col.starts_with('"') => {
                let mut merged = vec![col];
                while j + 1 < cols.len() {
                    j += 1;
                    merged.push(cols[j]);
                    if cols[j].ends_with('"') {
                        break;
                    }
                }
                Some(strip(&merged.join(delim)))
            }
            2 if col.len() >= 2 && col.starts_with('"') && col.ends_with('"') => Some(strip(col)),
            1 | 2 => Some(col.to_string()),
            _ => {
                let c = if col.len() >= 2 && col.starts_with('"') && col.ends_with('"') {
                    strip(col)
                } else {
                    col.to_string()
                };
                Some(c.replace("\"\"", "\""))
            }
        };
        out.push(value);
        j += 1;
    }
    out
}

/// `tsv`: values split on `delimiter` (default tab), named by `keys`.
#[derive(Debug)]
pub(crate) struct TsvParser {
    common: Common,
    keys: Vec<String>,
    delimiter: String,
}

impl TsvParser {
    pub(crate) fn new(p: &Params) -> Result<TsvParser, ConfigError> {
        Ok(TsvParser {
            common: Common::new("tsv", p, None, TimeType::String, None)?,
            keys: keys_param("tsv", p)?,
            delimiter: p.str_or("delimiter", "\t").to_string(),
        })
    }
}

impl Parser for TsvParser {
    fn parse(&self, text: &[u8]) -> Result<Option<ParsedEvent>, ParseError> {
        let text = text_of(text);
        let values = ruby_split(&text, &self.delimiter);
        let rec = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let v = values.get(i).map(|v| Value::from(*v)).unwrap_or(Value::Nil);
                (Value::from(k.as_str()), v)
            })
            .collect();
        self.common.finish(rec).map(Some)
    }

    fn type_name(&self) -> &'static str {
        "tsv"
    }
}

/// `none`: the whole text under `message_key`.
#[derive(Debug)]
pub(crate) struct NoneParser {
    common: Common,
    message_key: String,
}

impl NoneParser {
    pub(crate) fn new(p: &Params) -> Result<NoneParser, ConfigError> {
        Ok(NoneParser {
            common: Common::new("none", p, None, TimeType::String, None)?,
            message_key: p.str_or("message_key", "message").to_string(),
        })
    }
}

impl Parser for NoneParser {
    fn parse(&self, text: &[u8]) -> Result<Option<ParsedEvent>, ParseError> {
        let rec = vec![(
            Value::from(self.message_key.as_str()),
            Value::from(text_of(text).as_ref()),
        )];
        Ok(Some((self.common.no_time(), Value::Map(rec))))
    }

    fn type_name(&self) -> &'static str {
        "none"
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    const NOEST: (&str, &str) = ("estimate_current_event", "false");

    #[test]
    fn ltsv_cases() {
        // ported from test_parser_labeled_tsv.rb
        let p = parser(&[
            ("@type", "ltsv"),
            ("utc", "true"),
            ("time_format", "%Y/%m/%d %H:%M:%S"),
            NOEST,
        ]);
        check(
            &*p,
            "time:2013/02/28 12:00:00\thost:192.168.0.1\treq_id:111",
            Some((
                Some(1362052800),
                rec(&[("host", s("192.168.0.1")), ("req_id", s("111"))]),
            )),
        );
        let p = parser(&[
            ("@type", "ltsv"),
            ("delimiter", ","),
            ("label_delimiter", "="),
            ("utc", "true"),
            ("time_format", "%Y-%m-%d %H:%M:%S"),
            NOEST,
        ]);
        check(
            &*p,
            "time=2013-02-28 12:00:00,host=192.168.0.1,req_id=111",
            Some((
                Some(1362052800),
                rec(&[("host", s("192.168.0.1")), ("req_id", s("111"))]),
            )),
        );
        let p = parser(&[
            ("@type", "ltsv"),
            ("delimiter_pattern", "/\\s+/"),
            ("label_delimiter", "="),
            NOEST,
        ]);
        check(
            &*p,
            "a=1  b=2\tc=3",
            Some((None, rec(&[("a", s("1")), ("b", s("2")), ("c", s("3"))]))),
        );
        let p = parser(&[
            ("@type", "ltsv"),
            NOEST,
            ("types", "n:integer"),
            ("null_value_pattern", "^-$"),
        ]);
        check(
            &*p,
            "n:5\tx:-\tnolabel\tv:a:b",
            Some((
                None,
                rec(&[("n", Value::from(5)), ("x", Value::Nil), ("v", s("a:b"))]),
            )),
        );
        check(&*p, "", Some((None, rec(&[]))));
    }

    #[test]
    fn ltsv_keep_time_key() {
        let p = parser(&[
            ("@type", "ltsv"),
            ("keep_time_key", "true"),
            ("time_format", "%s"),
        ]);
        check(
            &*p,
            "time:1362052800\ta:b",
            Some((
                Some(1362052800),
                rec(&[("time", s("1362052800")), ("a", s("b"))]),
            )),
        );
    }

    #[test]
    fn csv_cases() {
        // ported from test_parser_csv.rb
        let p = parser(&[
            ("@type", "csv"),
            ("keys", "time,c,d"),
            ("time_key", "time"),
            ("utc", "true"),
            ("time_format", "%Y/%m/%d %H:%M:%S"),
            NOEST,
        ]);
        check(
            &*p,
            "2013/02/28 12:00:00,192.168.0.1,111",
            Some((
                Some(1362052800),
                rec(&[("c", s("192.168.0.1")), ("d", s("111"))]),
            )),
        );
        let p = parser(&[("@type", "csv"), ("keys", r#"["a","b","c"]"#), NOEST]);
        check(
            &*p,
            r#"1,"x,""y""",3"#,
            Some((
                None,
                rec(&[("a", s("1")), ("b", s("x,\"y\"")), ("c", s("3"))]),
            )),
        );
        check(
            &*p,
            "1,,\"\"",
            Some((None, rec(&[("a", s("1")), ("b", Value::Nil), ("c", s(""))]))),
        );
        check(
            &*p,
            "1",
            Some((
                None,
                rec(&[("a", s("1")), ("b", Value::Nil), ("c", Value::Nil)]),
            )),
        );
        check(
            &*p,
            "1,2,3,4\n",
            Some((None, rec(&[("a", s("1")), ("b", s("2")), ("c", s("3"))]))),
        );
        check(&*p, "", None);
        assert!(p.parse(b"\"unterminated,1").is_err());
        assert!(p.parse(b"a\"b,1").is_err());
        assert!(p.parse(b"\"a\"x,1").is_err());
        let p = parser(&[
            ("@type", "csv"),
            ("keys", "a,b"),
            ("delimiter", "\t"),
            NOEST,
        ]);
        check(
            &*p,
            "1\t\"2\t3\"",
            Some((None, rec(&[("a", s("1")), ("b", s("2\t3"))]))),
        );
        let p = parser(&[
            ("@type", "csv"),
            ("keys", "a,b"),
            ("delimiter", "||"),
            NOEST,
        ]);
        check(
            &*p,
            "1||2",
            Some((None, rec(&[("a", s("1")), ("b", s("2"))]))),
        );
    }

    #[test]
    fn csv_fast_engine() {
        let p = parser(&[
            ("@type", "csv"),
            ("keys", "a,b,c,d"),
            ("parser_engine", "fast"),
            NOEST,
        ]);
        check(
            &*p,
            r#"1,"x,y","q""q",,"#,
            Some((
                None,
                rec(&[
                    ("a", s("1")),
                    ("b", s("x,y")),
                    ("c", s("q\"q")),
                    ("d", Value::Nil),
                ]),
            )),
        );
        check(
            &*p,
            "1,2",
            Some((None, rec(&[("a", s("1")), ("b", s("2"))]))),
        );
        check(&*p, "", Some((None, rec(&[]))));
    }

    #[test]
    fn tsv_cases() {
        let p = parser(&[("@type", "tsv"), ("keys", "a,b,c"), NOEST]);
        check(
            &*p,
            "1\t2\t3",
            Some((None, rec(&[("a", s("1")), ("b", s("2")), ("c", s("3"))]))),
        );
        check(
            &*p,
            "1\t\t",
            Some((None, rec(&[("a", s("1")), ("b", s("")), ("c", s(""))]))),
        );
        check(
            &*p,
            "1",
            Some((
                None,
                rec(&[("a", s("1")), ("b", Value::Nil), ("c", Value::Nil)]),
            )),
        );
        let p = parser(&[
            ("@type", "tsv"),
            ("keys", "time,a"),
            ("time_key", "time"),
            ("time_format", "%s"),
            ("delimiter", ","),
            NOEST,
        ]);
        check(
            &*p,
            "1362052800,x",
            Some((Some(1362052800), rec(&[("a", s("x"))]))),
        );
        assert!(p.parse(b"nope,x").is_err());
    }

    #[test]
    fn none_cases() {
        let p = parser(&[("@type", "none"), NOEST]);
        check(
            &*p,
            "log message!",
            Some((None, rec(&[("message", s("log message!"))]))),
        );
        let p = parser(&[("@type", "none"), ("message_key", "log"), NOEST]);
        check(&*p, "x\ty", Some((None, rec(&[("log", s("x\ty"))]))));
        check(&*p, "", Some((None, rec(&[("log", s(""))]))));
    }
}
