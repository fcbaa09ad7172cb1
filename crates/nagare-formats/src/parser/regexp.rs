//! Regular-expression parsers: `regexp`, `apache2`, `apache_error`, `nginx`, `multiline`,
//! and the multi-line joining helper in_tail uses.

use fancy_regex::Regex;
use rmpv::Value;

use super::{
    Common, ParsedEvent, Parser, named_captures, ruby_regex, split_regex_literal, text_of,
};
use crate::error::{ConfigError, ParseError};
use crate::params::Params;
use crate::time::{TimeParser, TimeType};

/// The `apache_error` parser's expression.
pub(crate) const APACHE_ERROR: &str = r"/^\[[^ ]* (?<time>[^\]]*)\] \[(?<level>[^\]]*)\](?: \[pid (?<pid>[^\]]*)\])?( \[client (?<client>[^\]]*)\])? (?<message>.*)$/";

/// The `nginx` parser's expression (combined log format plus an optional
/// `http_x_forwarded_for` field).
pub(crate) const NGINX: &str = r#"/^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^\"]*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)"(?:\s+(?<http_x_forwarded_for>[^ ]+))?)?$/"#;

const APACHE2: &str = r#"^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>(?:[^\"]|\\.)*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>(?:[^\"]|\\.)*)" "(?<agent>(?:[^\"]|\\.)*)")?$"#;
const APACHE2_TIME: &str = "%d/%b/%Y:%H:%M:%S %z";

fn require_named(plugin: &str, param: &str, src: &str, re: &Regex) -> Result<(), ConfigError> {
    if re.capture_names().flatten().next().is_none() {
        return Err(ConfigError::invalid(
            plugin,
            param,
            src,
            "no named captures (need (?<name>...))",
        ));
    }
    Ok(())
}

/// `regexp` (and the regexp-based `apache_error`, `nginx`): named captures become fields.
#[derive(Debug)]
pub(crate) struct RegexpParser {
    name: &'static str,
    re: Regex,
    common: Common,
}

impl RegexpParser {
    pub(crate) fn new(
        name: &'static str,
        p: &Params,
        default_expression: Option<&str>,
        default_time_format: Option<&str>,
    ) -> Result<RegexpParser, ConfigError> {
        let src = p
            .get("expression")
            .or(default_expression)
            .ok_or(ConfigError::Missing {
                plugin: name.to_string(),
                param: "expression",
            })?;
        let re = ruby_regex(name, "expression", src, false)?;
        require_named(name, "expression", src, &re)?;
        Ok(RegexpParser {
            name,
            re,
            common: Common::new(name, p, Some("time"), TimeType::String, default_time_format)?,
        })
    }
}

impl Parser for RegexpParser {
    fn parse(&self, text: &[u8]) -> Result<Option<ParsedEvent>, ParseError> {
        let text = text_of(text);
        match named_captures(self.name, &self.re, &text)? {
            Some(rec) => self.common.finish(rec).map(Some),
            None => Ok(None),
        }
    }

    fn type_name(&self) -> &'static str {
        self.name
    }
}

/// `apache2`: the combined log format, `-` fields as nil, code and size as integers.
#[derive(Debug)]
pub(crate) struct Apache2Parser {
    re: Regex,
    time: TimeParser,
    keep_time_key: bool,
}

impl Apache2Parser {
    pub(crate) fn new(p: &Params) -> Result<Apache2Parser, ConfigError> {
        let common = Common::new("apache2", p, None, TimeType::String, Some(APACHE2_TIME))?;
        let zone = common.time_parser.zone();
        Ok(Apache2Parser {
            re: ruby_regex("apache2", "expression", APACHE2, false)?,
            time: TimeParser::new(TimeType::String, Some(APACHE2_TIME), &[], zone)
                .map_err(|e| ConfigError::invalid("apache2", "time_format", APACHE2_TIME, e))?,
            keep_time_key: common.keep_time_key,
        })
    }
}

impl Parser for Apache2Parser {
    fn parse(&self, text: &[u8]) -> Result<Option<ParsedEvent>, ParseError> {
        let text = text_of(text);
        let caps = self
            .re
            .captures(text.as_ref())
            .map_err(|e| ParseError::Regex {
                parser: "apache2",
                reason: e.to_string(),
            })?;
        let Some(caps) = caps else { return Ok(None) };
        let get = |n: &str| caps.name(n).map(|m| m.as_str());
        let dash_nil = |v: Option<&str>| match v {
            None | Some("-") => Value::Nil,
            Some(x) => Value::from(x),
        };
        let time_str = get("time").unwrap_or("");
        let time = self.time.parse_str(time_str)?;
        let code = match get("code").map(crate::types::ruby_to_i) {
            None | Some(0) => Value::Nil,
            Some(c) => Value::from(c),
        };
        let size = match get("size") {
            None | Some("-") => Value::Nil,
            Some(x) => Value::from(crate::types::ruby_to_i(x)),
        };
        let mut rec = vec![
            (Value::from("host"), dash_nil(get("host"))),
            (Value::from("user"), dash_nil(get("user"))),
            (
                Value::from("method"),
                get("method").map(Value::from).unwrap_or(Value::Nil),
            ),
            (
                Value::from("path"),
                get("path").map(Value::from).unwrap_or(Value::Nil),
            ),
            (Value::from("code"), code),
            (Value::from("size"), size),
            (Value::from("referer"), dash_nil(get("referer"))),
            (Value::from("agent"), dash_nil(get("agent"))),
        ];
        if self.keep_time_key {
            rec.push((Value::from("time"), Value::from(time_str)));
        }
        Ok(Some((Some(time), Value::Map(rec))))
    }

    fn type_name(&self) -> &'static str {
        "apache2"
    }
}

const FORMAT_MAX_NUM: usize = 20;

/// `multiline`: `format1`..`format20` joined into one regexp (dot matches newline), applied
/// to a text that in_tail joined from several lines; `format_firstline` tells where an event
/// starts (see [`MultilineJoiner`]).
#[derive(Debug)]
pub(crate) struct MultilineParser {
    inner: RegexpParser,
    firstline: Option<Regex>,
}

impl MultilineParser {
    pub(crate) fn new(p: &Params) -> Result<MultilineParser, ConfigError> {
        for (k, v) in p.iter() {
            if let Some(n) = k.strip_prefix("format") {
                if let Ok(n) = n.parse::<usize>() {
                    if !(1..=FORMAT_MAX_NUM).contains(&n) {
                        return Err(ConfigError::invalid(
                            "multiline",
                            k,
                            v,
                            "N should be 1 - 20",
                        ));
                    }
                }
            }
        }
        let mut body = String::new();
        let mut prev_missing = false;
        for i in 1..=FORMAT_MAX_NUM {
            let key = format!("format{i}");
            match p.get(&key) {
                Some(f) => {
                    if prev_missing {
                        return Err(ConfigError::invalid(
                            "multiline",
                            &key,
                            f,
                            format!("jump of format index found: format{} is missing", i - 1),
                        ));
                    }
                    let (b, flags) = split_regex_literal(f);
                    if !(f.trim().starts_with('/') && flags.is_empty() && f.trim().ends_with('/')) {
                        return Err(ConfigError::invalid(
                            "multiline",
                            &key,
                            f,
                            "format should be Regexp, need //",
                        ));
                    }
                    body.push_str(b);
                }
                None => prev_missing = true,
            }
        }
        if body.is_empty() {
            return Err(ConfigError::Missing {
                plugin: "multiline".to_string(),
                param: "format1",
            });
        }
        let re = ruby_regex("multiline", "format1", &body, true)?;
        require_named("multiline", "format1", &body, &re)?;
        let firstline = match p.get("format_firstline") {
            Some(f) => {
                let t = f.trim();
                if !(t.len() >= 2 && t.starts_with('/') && t.ends_with('/')) {
                    return Err(ConfigError::invalid(
                        "multiline",
                        "format_firstline",
                        f,
                        "format should be Regexp, need //",
                    ));
                }
                Some(ruby_regex("multiline", "format_firstline", t, false)?)
            }
            None => None,
        };
        Ok(MultilineParser {
            inner: RegexpParser {
                name: "multiline",
                re,
                common: Common::new("multiline", p, Some("time"), TimeType::String, None)?,
            },
            firstline,
        })
    }
}

impl Parser for MultilineParser {
    fn parse(&self, text: &[u8]) -> Result<Option<ParsedEvent>, ParseError> {
        self.inner.parse(text)
    }

    fn type_name(&self) -> &'static str {
        "multiline"
    }

    fn firstline(&self, line: &[u8]) -> Option<bool> {
        let re = self.firstline.as_ref()?;
        Some(re.is_match(text_of(line).as_ref()).unwrap_or(false))
    }
}

/// What [`MultilineJoiner::push_line`] hands back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// A complete event text (lines joined with `\n`): parse it with the parser.
    Text(Vec<u8>),
    /// A line that came before any first line (Fluentd warns "got incomplete line before
    /// first line"; with `emit_unmatched_lines` it is emitted as unmatched).
    Orphan(Vec<u8>),
}

/// in_tail's multi-line contract (`in_tail.rb parse_multilines`), independent of files:
/// - with `format_firstline`: a first line flushes the pending text and starts a new one;
///   other lines are appended to it (or are orphans when nothing is pending);
/// - without it: lines are appended until the pending text parses, then it is complete.
///
/// Lines are given without their line terminator; [`MultilineJoiner::flush`] hands out the
/// pending text at EOF or when `multiline_flush_interval` expires.
#[derive(Debug, Default, Clone)]
pub struct MultilineJoiner {
    pending: Option<Vec<u8>>,
}

impl MultilineJoiner {
    /// An empty joiner.
    pub fn new() -> MultilineJoiner {
        MultilineJoiner::default()
    }

    /// Feeds one line; returns what became complete.
    pub fn push_line(&mut self, parser: &dyn Parser, line: &[u8]) -> Vec<Joined> {
        let mut out = Vec::new();
        match parser.firstline(line) {
            Some(true) => {
                if let Some(prev) = self.pending.replace(line.to_vec()) {
                    out.push(Joined::Text(prev));
                }
            }
            Some(false) => match self.pending.as_mut() {
                Some(buf) => {
                    buf.push(b'\n');
                    buf.extend_from_slice(line);
                }
                None => out.push(Joined::Orphan(line.to_vec())),
            },
            None => {
                let buf = self.pending.get_or_insert_with(Vec::new);
                if !buf.is_empty() {
                    buf.push(b'\n');
                }
                buf.extend_from_slice(line);
                if matches!(parser.parse(buf), Ok(Some(_))) {
                    if let Some(done) = self.pending.take() {
                        out.push(Joined::Text(done));
                    }
                }
            }
        }
        out
    }

    /// Whether a text is pending.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Takes the pending text, if any.
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        self.pending.take()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    const NOEST: (&str, &str) = ("estimate_current_event", "false");

    #[test]
    fn regexp_cases() {
        // ported from test_parser_regexp.rb
        let p = parser(&[
            ("@type", "regexp"),
            (
                "expression",
                r#"/^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] \[(?<date>[^\]]*)\] "(?<flag>\S+)(?: +(?<path>[^ ]*) +\S*)?" (?<code>[^ ]*) (?<size>[^ ]*)$/"#,
            ),
            ("time_format", "%d/%b/%Y:%H:%M:%S %z"),
            (
                "types",
                "code:integer,date:time:%d/%b/%Y:%H:%M:%S %z,flag:bool,path:array,size:integer",
            ),
        ]);
        check(
            &*p,
            r#"192.168.0.1 - - [28/Feb/2013:12:00:00 +0900] [14/Feb/2013:12:00:00 +0900] "true /,/user HTTP/1.1" 200 777"#,
            Some((
                Some(1362020400),
                rec(&[
                    ("host", s("192.168.0.1")),
                    ("user", s("-")),
                    (
                        "date",
                        Value::Ext(0, vec![0x51, 0x1c, 0x53, 0x30, 0, 0, 0, 0]),
                    ),
                    ("flag", Value::Boolean(true)),
                    ("path", Value::Array(vec![s("/"), s("/user")])),
                    ("code", Value::from(200)),
                    ("size", Value::from(777)),
                ]),
            )),
        );
        check(&*p, "no match here", None);

        let p = parser(&[
            ("@type", "regexp"),
            ("expression", "/^(?<a>\\w+)(?: (?<b>\\w+))?$/"),
            NOEST,
        ]);
        check(&*p, "x", Some((None, rec(&[("a", s("x"))]))));
        let p = parser(&[("@type", "regexp"), ("expression", "/^(?<a>ABC)$/i"), NOEST]);
        check(&*p, "abc", Some((None, rec(&[("a", s("abc"))]))));
        let p = parser(&[("@type", "regexp"), ("expression", "/(?<a>a.b)/m"), NOEST]);
        check(&*p, "a\nb", Some((None, rec(&[("a", s("a\nb"))]))));
        let p = parser(&[("@type", "regexp"), ("expression", "/(?<a>a.b)/"), NOEST]);
        check(&*p, "a\nb", None);
        // Ruby's ^ matches after any newline; lookbehind works
        let p = parser(&[
            ("@type", "regexp"),
            ("expression", r"/^(?<a>(?<!x)y+)$/"),
            NOEST,
        ]);
        check(&*p, "first\nyy", Some((None, rec(&[("a", s("yy"))]))));
        // test_filter_parser.rb's CONFIG: a compact `%Y%m%d%H%M%S` time
        let p = parser(&[
            ("@type", "regexp"),
            ("expression", "/^(?<x>.)(?<y>.) (?<time>.+)$/"),
            ("time_format", "%Y%m%d%H%M%S"),
            ("utc", "true"),
        ]);
        for (line, time, x, y) in [
            ("12 20120402182059", 1333390859, "1", "2"),
            ("34 20120402182100", 1333390860, "3", "4"),
            ("56 20120402182100", 1333390860, "5", "6"),
            ("78 20120402182101", 1333390861, "7", "8"),
            ("90 20120402182100", 1333390860, "9", "0"),
        ] {
            check(
                &*p,
                line,
                Some((Some(time), rec(&[("x", s(x)), ("y", s(y))]))),
            );
        }
        // bad time → error
        let p = parser(&[
            ("@type", "regexp"),
            ("expression", "/(?<time>.+)/"),
            ("time_format", "%Y"),
        ]);
        assert!(p.parse(b"never").is_err());
    }

    #[test]
    fn apache2_cases() {
        // ported from test_parser_apache2.rb
        let p = parser(&[("@type", "apache2")]);
        check(
            &*p,
            r#"192.168.0.1 - - [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 200 777 "-" "Opera/12.0""#,
            Some((
                Some(1362020400),
                rec(&[
                    ("host", s("192.168.0.1")),
                    ("user", Value::Nil),
                    ("method", s("GET")),
                    ("path", s("/")),
                    ("code", Value::from(200)),
                    ("size", Value::from(777)),
                    ("referer", Value::Nil),
                    ("agent", s("Opera/12.0")),
                ]),
            )),
        );
        check(
            &*p,
            r#"192.168.0.1 - - [28/Feb/2013:12:00:00 +0900] "GET /a\"b HTTP/1.1" 200 - "-" "-""#,
            Some((
                Some(1362020400),
                rec(&[
                    ("host", s("192.168.0.1")),
                    ("user", Value::Nil),
                    ("method", s("GET")),
                    ("path", s("/a\\\"b")),
                    ("code", Value::from(200)),
                    ("size", Value::Nil),
                    ("referer", Value::Nil),
                    ("agent", Value::Nil),
                ]),
            )),
        );
        check(
            &*p,
            r#"192.168.0.1 - - [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 200 777"#,
            Some((
                Some(1362020400),
                rec(&[
                    ("host", s("192.168.0.1")),
                    ("user", Value::Nil),
                    ("method", s("GET")),
                    ("path", s("/")),
                    ("code", Value::from(200)),
                    ("size", Value::from(777)),
                    ("referer", Value::Nil),
                    ("agent", Value::Nil),
                ]),
            )),
        );
        check(&*p, "garbage", None);
        let p = parser(&[("@type", "apache2"), ("keep_time_key", "true")]);
        let got = p
            .parse(br#"h - u [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 404 1 "r" "a""#)
            .ok()
            .flatten();
        let time = got.and_then(|(_, r)| {
            r.as_map().and_then(|m| {
                m.iter()
                    .find(|(k, _)| k.as_str() == Some("time"))
                    .map(|(_, v)| v.clone())
            })
        });
        assert_eq!(time, Some(s("28/Feb/2013:12:00:00 +0900")));
    }

    #[test]
    fn apache_error_cases() {
        // ported from test_parser_apache_error.rb
        let p = parser(&[
            ("@type", "apache_error"),
            ("utc", "true"),
            ("time_format", "%b %d %H:%M:%S %Y"),
        ]);
        check(
            &*p,
            "[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] client denied by server configuration",
            Some((
                Some(971274772),
                rec(&[
                    ("level", s("error")),
                    ("client", s("127.0.0.1")),
                    ("message", s("client denied by server configuration")),
                ]),
            )),
        );
        // default: no time_format, the time is guessed (Time.parse) in local time
        let p = parser(&[("@type", "apache_error")]);
        let got = p
            .parse(
                b"[Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 12345:tid 4567] AH00000: msg",
            )
            .ok()
            .flatten();
        let (t, r) = got.unwrap_or((None, Value::Nil));
        assert!(
            t.is_some_and(|t| t.sec.abs_diff(971274772) <= 14 * 3600 && t.nsec == 123_456_000),
            "{t:?}"
        );
        assert_eq!(
            r,
            rec(&[
                ("level", s("core:error")),
                ("pid", s("12345:tid 4567")),
                ("message", s("AH00000: msg"))
            ])
        );
    }

    #[test]
    fn nginx_cases() {
        // ported from test_parser_nginx.rb
        let p = parser(&[("@type", "nginx")]);
        let base = vec![
            ("remote", s("127.0.0.1")),
            ("host", s("192.168.0.1")),
            ("user", s("-")),
            ("method", s("GET")),
            ("path", s("/")),
            ("code", s("200")),
            ("size", s("777")),
            ("referer", s("-")),
            ("agent", s("Opera/12.0")),
        ];
        check(
            &*p,
            r#"127.0.0.1 192.168.0.1 - [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 200 777 "-" "Opera/12.0""#,
            Some((Some(1362020400), rec(&base))),
        );
        let mut with_xff = base.clone();
        with_xff.push(("http_x_forwarded_for", s("10.0.0.1")));
        check(
            &*p,
            r#"127.0.0.1 192.168.0.1 - [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 200 777 "-" "Opera/12.0" 10.0.0.1"#,
            Some((Some(1362020400), rec(&with_xff))),
        );
        check(
            &*p,
            r#"127.0.0.1 192.168.0.1 - [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 200 777"#,
            Some((Some(1362020400), rec(&base[..7]))),
        );
        let p = parser(&[("@type", "nginx"), ("types", "code:integer,size:integer")]);
        let got = p
            .parse(
                br#"127.0.0.1 192.168.0.1 - [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 200 777"#,
            )
            .ok()
            .flatten();
        assert_eq!(
            got.and_then(|(_, r)| r.as_map().and_then(|m| m.get(5).map(|(_, v)| v.clone()))),
            Some(Value::from(200))
        );
    }

    fn ml() -> Box<dyn Parser> {
        parser(&[
            ("@type", "multiline"),
            ("format_firstline", r"/^\d{4}-\d{2}-\d{2}/"),
            (
                "format1",
                r"/^(?<time>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) \[(?<thread>.*)\] (?<level>[^\s]+)(?<message>.*)/",
            ),
            ("time_format", "%Y-%m-%d %H:%M:%S"),
            ("utc", "true"),
        ])
    }

    #[test]
    fn multiline_parse() {
        // ported from test_parser_multiline.rb (java stack trace)
        let p = ml();
        let text = "2013-3-03 14:27:33 [main] ERROR Main - Exception\njavax.management.RuntimeErrorException: null\n\tat Main.main(Main.java:16) ~[bin/:na]";
        check(&*p, text, None);
        let text = "2013-03-03 14:27:33 [main] ERROR Main - Exception\njavax.management.RuntimeErrorException: null\n\tat Main.main(Main.java:16) ~[bin/:na]";
        check(
            &*p,
            text,
            Some((
                Some(1362320853),
                rec(&[
                    ("thread", s("main")),
                    ("level", s("ERROR")),
                    (
                        "message",
                        s(
                            " Main - Exception\njavax.management.RuntimeErrorException: null\n\tat Main.main(Main.java:16) ~[bin/:na]",
                        ),
                    ),
                ]),
            )),
        );
        assert_eq!(p.firstline(b"2013-03-03 x"), Some(true));
        assert_eq!(p.firstline(b"\tat x"), Some(false));
        assert_eq!(parser(&[("@type", "none")]).firstline(b"x"), None);
        // formats concatenate
        let p = parser(&[
            ("@type", "multiline"),
            ("format1", "/^(?<a>\\w+)\\n/"),
            ("format2", "/(?<b>\\w+)$/"),
            NOEST,
        ]);
        check(
            &*p,
            "x\ny",
            Some((None, rec(&[("a", s("x")), ("b", s("y"))]))),
        );
    }

    #[test]
    fn multiline_joiner_with_firstline() {
        let p = ml();
        let mut j = MultilineJoiner::new();
        let mut out = Vec::new();
        for line in [
            "  orphan",
            "2013-03-03 14:27:33 [main] INFO a",
            "  cont",
            "2013-03-03 14:27:34 [main] INFO b",
        ] {
            out.extend(j.push_line(&*p, line.as_bytes()));
        }
        assert_eq!(
            out,
            vec![
                Joined::Orphan(b"  orphan".to_vec()),
                Joined::Text(b"2013-03-03 14:27:33 [main] INFO a\n  cont".to_vec()),
            ]
        );
        assert!(j.has_pending());
        assert_eq!(
            j.flush(),
            Some(b"2013-03-03 14:27:34 [main] INFO b".to_vec())
        );
        assert_eq!(j.flush(), None);
    }

    #[test]
    fn multiline_joiner_without_firstline() {
        let p = parser(&[
            ("@type", "multiline"),
            ("format1", "/^begin\\n(?<body>.*)\\nend$/"),
            NOEST,
        ]);
        let mut j = MultilineJoiner::new();
        let mut out = Vec::new();
        for line in ["begin", "x", "end", "begin"] {
            out.extend(j.push_line(&*p, line.as_bytes()));
        }
        assert_eq!(out, vec![Joined::Text(b"begin\nx\nend".to_vec())]);
        assert_eq!(j.flush(), Some(b"begin".to_vec()));
    }
}
