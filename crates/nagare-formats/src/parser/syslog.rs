//! `syslog`: RFC 3164 and RFC 5424 lines (`parser_syslog.rb`), with the regexp engine
//! (default) or Fluentd's hand-written RFC 3164 string engine.

use fancy_regex::Regex;
use rmpv::Value;

use super::{ParsedEvent, Parser, ruby_regex, text_of};
use crate::error::{ConfigError, ParseError};
use crate::params::Params;
use crate::time::{EventTime, TimeParser, TimeType, Zone};
use crate::types::ruby_to_i;

const RFC3164: &str = r"^(?<time>[^ ]*\s*[^ ]* [^ ]*) (?<host>[^ ]*) (?<ident>[^ :\[]*)(?:\[(?<pid>[0-9]+)\])?(?:[^\:]*\:)? *(?<message>.*)$";
const RFC3164_WITH_PRI: &str = r"^\<(?<pri>[0-9]+)\>(?<time>[^ ]* {1,2}[^ ]* [^ ]*) (?<host>[^ ]*) (?<ident>[^ :\[]*)(?:\[(?<pid>[0-9]+)\])?(?:[^\:]*\:)? *(?<message>.*)$";
const RFC5424_BODY: &str = r"(?<time>[^ ]+) (?<host>[!-~]{1,255}) (?<ident>[!-~]{1,48}) (?<pid>[!-~]{1,128}) (?<msgid>[!-~]{1,32}) (?<extradata>(?:\-|(?:\[.*?(?<!\\)\])+))(?: (?<message>.+))?";
const DETECT_RFC5424: &str = r"^\<[0-9]{1,3}\>[1-9]\d{0,2}";
const RFC5424_NO_SUBSEC: &str = "%Y-%m-%dT%H:%M:%S%z";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Rfc3164,
    Rfc5424,
    Auto,
}

/// The syslog parser.
#[derive(Debug)]
pub(crate) struct SyslogParser {
    format: Format,
    with_priority: bool,
    string_engine: bool,
    support_colonless_ident: bool,
    keep_time_key: bool,
    estimate_current_event: bool,
    re3164: Regex,
    re5424: Regex,
    detect: Regex,
    tp3164: TimeParser,
    tp5424: TimeParser,
    tp5424_nosub: TimeParser,
}

impl SyslogParser {
    pub(crate) fn new(p: &Params) -> Result<SyslogParser, ConfigError> {
        const PL: &str = "syslog";
        let format = match p.enum_or(
            PL,
            "message_format",
            &["rfc3164", "rfc5424", "auto"],
            "rfc3164",
        )? {
            "rfc5424" => Format::Rfc5424,
            "auto" => Format::Auto,
            _ => Format::Rfc3164,
        };
        let engine_key = if p.has("parser_engine") {
            "parser_engine"
        } else {
            "parser_type"
        };
        let engine = p.enum_or(PL, engine_key, &["regexp", "string"], "regexp")?;
        let with_priority = p.bool_or(PL, "with_priority", false)?;
        let zone = Zone::from_params(PL, p)?;
        let time_format = p.get("time_format");
        let rfc5424_format = p.str_or("rfc5424_time_format", "%Y-%m-%dT%H:%M:%S.%L%z");
        let tp = |f: &str, key: &str| {
            TimeParser::new(TimeType::String, Some(f), &[], zone.clone())
                .map_err(|e| ConfigError::invalid(PL, key, f, e))
        };
        let tp3164 = tp(time_format.unwrap_or("%b %d %H:%M:%S"), "time_format")?;
        // In rfc5424 mode an explicit time_format wins; in auto mode it only applies to 3164.
        let tp5424 = match (format, time_format) {
            (Format::Rfc5424, Some(f)) => tp(f, "time_format")?,
            _ => tp(rfc5424_format, "rfc5424_time_format")?,
        };
        let re3164 = ruby_regex(
            PL,
            "message_format",
            if with_priority {
                RFC3164_WITH_PRI
            } else {
                RFC3164
            },
            false,
        )?;
        let body5424 = if with_priority {
            format!(r"\A<(?<pri>[0-9]{{1,3}})\>[1-9]\d{{0,2}} {RFC5424_BODY}\z")
        } else {
            format!(r"\A{RFC5424_BODY}\z")
        };
        Ok(SyslogParser {
            format,
            with_priority,
            string_engine: engine == "string",
            support_colonless_ident: p.bool_or(PL, "support_colonless_ident", true)?,
            keep_time_key: p.bool_or(PL, "keep_time_key", false)?,
            estimate_current_event: p.bool_or(PL, "estimate_current_event", true)?,
            re3164,
            re5424: ruby_regex(PL, "message_format", &body5424, true)?,
            detect: ruby_regex(PL, "message_format", DETECT_RFC5424, false)?,
            tp3164,
            tp5424,
            tp5424_nosub: tp(RFC5424_NO_SUBSEC, "rfc5424_time_format")?,
        })
    }

    fn parse_plain(&self, text: &str, rfc5424: bool) -> Result<Option<ParsedEvent>, ParseError> {
        let re = if rfc5424 { &self.re5424 } else { &self.re3164 };
        let caps = re.captures(text).map_err(|e| ParseError::Regex {
            parser: "syslog",
            reason: e.to_string(),
        })?;
        let Some(caps) = caps else { return Ok(None) };
        let mut time = None;
        let mut rec = Vec::new();
        for name in re.capture_names().flatten() {
            let Some(m) = caps.name(name) else { continue };
            let value = m.as_str();
            match name {
                "pri" => rec.push((Value::from("pri"), Value::from(ruby_to_i(value)))),
                "time" => {
                    let squeezed = squeeze_spaces(value);
                    let t = if rfc5424 {
                        match self.tp5424.parse_str(&squeezed) {
                            Ok(t) => t,
                            Err(e) => self.tp5424_nosub.parse_str(&squeezed).map_err(|_| e)?,
                        }
                    } else {
                        self.tp3164.parse_str(&squeezed)?
                    };
                    time = Some(t);
                    if self.keep_time_key {
                        rec.push((Value::from("time"), Value::from(value)));
                    }
                }
                "message" => rec.push((Value::from("message"), Value::from(chomp(value)))),
                other => rec.push((Value::from(other), Value::from(value))),
            }
        }
        if time.is_none() && self.estimate_current_event {
            time = Some(EventTime::now());
        }
        Ok(Some((time, Value::Map(rec))))
    }

    /// Fluentd's `parse_rfc3164` string engine, with bounds checked.
    fn parse_rfc3164_string(&self, text: &str) -> Result<Option<ParsedEvent>, ParseError> {
        let b = text.as_bytes();
        let at = |i: usize| b.get(i).copied();
        let slice = |from: usize, to: usize| text.get(from..to);
        let mut cursor = 0usize;
        let mut pri = None;
        if self.with_priority {
            if at(0) != Some(b'<') {
                return Ok(None);
            }
            let Some(i) = text.get(1..).and_then(|t| t.find('>')).map(|i| i + 1) else {
                return Ok(None);
            };
            if i < 2 {
                return Ok(None);
            }
            pri = Some(ruby_to_i(slice(1, i).unwrap_or("")));
            cursor = i + 1;
        }
        const TIME_SIZE: usize = 15;
        let time_str = match at(cursor + TIME_SIZE) {
            Some(b' ') => {
                let Some(t) = slice(cursor, cursor + TIME_SIZE) else {
                    return Ok(None);
                };
                cursor += TIME_SIZE + 1;
                t
            }
            Some(b'.') => {
                let Some(i) = find_from(text, ' ', cursor + TIME_SIZE) else {
                    return Ok(None);
                };
                let Some(t) = slice(cursor, i) else {
                    return Ok(None);
                };
                cursor = i + 1;
                t
            }
            _ => return Ok(None),
        };
        let Some(i) = find_from(text, ' ', cursor) else {
            return Ok(None);
        };
        let Some(host) = slice(cursor, i) else {
            return Ok(None);
        };
        cursor = i + 1;
        let mut rec = vec![(Value::from("host"), Value::from(host))];
        if let Some(p) = pri {
            rec.push((Value::from("pri"), Value::from(p)));
        }
        let rest_from = |from: usize| text.get(from..).unwrap_or("");
        let msg = match find_from(text, ' ', cursor) {
            None => rest_from(cursor),
            Some(i) => {
                let before = i.checked_sub(1).and_then(at);
                let before2 = i.checked_sub(2).and_then(at);
                let mut ident_pid = |ident_end_bracket: bool,
                                     pid_end: usize,
                                     plain_end: usize|
                 -> Option<()> {
                    if ident_end_bracket {
                        let lb = find_from(text, '[', cursor)?;
                        rec.push((Value::from("ident"), Value::from(slice(cursor, lb)?)));
                        rec.push((Value::from("pid"), Value::from(slice(lb + 1, pid_end)?)));
                    } else {
                        rec.push((Value::from("ident"), Value::from(slice(cursor, plain_end)?)));
                    }
                    Some(())
                };
                if before == Some(b':') {
                    if ident_pid(before2 == Some(b']'), i.saturating_sub(2), i - 1).is_none() {
                        return Ok(None);
                    }
                    rest_from(i + 1)
                } else if self.support_colonless_ident {
                    if ident_pid(before == Some(b']'), i.saturating_sub(1), i).is_none() {
                        return Ok(None);
                    }
                    rest_from(i + 1)
                } else {
                    rest_from(cursor)
                }
            }
        };
        rec.push((Value::from("message"), Value::from(chomp(msg))));
        let time = self.tp3164.parse_str(time_str)?;
        if self.keep_time_key {
            rec.push((Value::from("time"), Value::from(time_str)));
        }
        Ok(Some((Some(time), Value::Map(rec))))
    }
}

fn find_from(text: &str, c: char, from: usize) -> Option<usize> {
    text.get(from..)?.find(c).map(|i| i + from)
}

/// Ruby `squeeze(' ')`: runs of spaces become one.
fn squeeze_spaces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_space = false;
    for c in s.chars() {
        if c == ' ' && prev_space {
            continue;
        }
        prev_space = c == ' ';
        out.push(c);
    }
    out
}

/// Ruby `chomp`: one trailing `\r\n`, `\n` or `\r` removed.
fn chomp(s: &str) -> &str {
    s.strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .or_else(|| s.strip_suffix('\r'))
        .unwrap_or(s)
}

impl Parser for SyslogParser {
    fn parse(&self, text: &[u8]) -> Result<Option<ParsedEvent>, ParseError> {
        let text = text_of(text);
        let rfc5424 = match self.format {
            Format::Rfc3164 => false,
            Format::Rfc5424 => true,
            Format::Auto => self.detect.is_match(text.as_ref()).unwrap_or(false),
        };
        if !rfc5424 && self.string_engine {
            self.parse_rfc3164_string(&text)
        } else {
            self.parse_plain(&text, rfc5424)
        }
    }

    fn type_name(&self) -> &'static str {
        "syslog"
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use chrono::{Datelike, TimeZone, Utc};

    /// Seconds for `month day hh:mm:ss` UTC in the year the parser infers (this year, or
    /// last year when that would be more than a day ahead).
    fn inferred(month: u32, day: u32, h: u32, m: u32, sec: u32) -> u32 {
        let now = Utc::now();
        let at = |y: i32| {
            Utc.with_ymd_and_hms(y, month, day, h, m, sec)
                .single()
                .map(|d| d.timestamp())
                .unwrap_or(0)
        };
        let mut t = at(now.year());
        if t > now.timestamp() + 86_400 {
            t = at(now.year() - 1);
        }
        t as u32
    }

    fn base3164() -> Vec<(&'static str, Value)> {
        vec![
            ("host", s("192.168.0.1")),
            ("ident", s("fluentd")),
            ("pid", s("11111")),
            ("message", s("[error] Syslog test")),
        ]
    }

    #[test]
    fn rfc3164_both_engines() {
        // ported from test_parser_syslog.rb
        for engine in ["regexp", "string"] {
            let p = parser(&[
                ("@type", "syslog"),
                ("utc", "true"),
                ("parser_engine", engine),
            ]);
            check(
                &*p,
                "Feb 28 12:00:00 192.168.0.1 fluentd[11111]: [error] Syslog test",
                Some((Some(inferred(2, 28, 12, 0, 0)), rec(&base3164()))),
            );
            check(
                &*p,
                "Feb 28 12:00:00 192.168.0.1 fluentd: [error] Syslog test",
                Some((
                    Some(inferred(2, 28, 12, 0, 0)),
                    rec(&[
                        ("host", s("192.168.0.1")),
                        ("ident", s("fluentd")),
                        ("message", s("[error] Syslog test")),
                    ]),
                )),
            );
            let p = parser(&[
                ("@type", "syslog"),
                ("utc", "true"),
                ("with_priority", "true"),
                ("parser_engine", engine),
            ]);
            let got = p
                .parse(b"<6>Feb 28 12:00:00 192.168.0.1 fluentd[11111]: [error] Syslog test")
                .ok()
                .flatten();
            let (t, r) = got.unwrap_or((None, Value::Nil));
            assert_eq!(
                t.map(|t| t.sec),
                Some(inferred(2, 28, 12, 0, 0)),
                "{engine}"
            );
            let m = r.as_map().cloned().unwrap_or_default();
            assert!(m.contains(&(s("pri"), Value::from(6))), "{engine}: {m:?}");
            assert!(
                m.contains(&(s("message"), s("[error] Syslog test"))),
                "{engine}: {m:?}"
            );
            check(&*p, "no priority here at all, sorry", None);
        }
    }

    #[test]
    fn rfc3164_string_engine_details() {
        let p = parser(&[
            ("@type", "syslog"),
            ("utc", "true"),
            ("parser_engine", "string"),
            ("time_format", "%b %d %H:%M:%S.%N"),
        ]);
        check(
            &*p,
            "Feb 28 12:00:00.5 host app[1]: msg\n",
            Some((
                Some(inferred(2, 28, 12, 0, 0)),
                rec(&[
                    ("host", s("host")),
                    ("ident", s("app")),
                    ("pid", s("1")),
                    ("message", s("msg")),
                ]),
            )),
        );
        let p = parser(&[
            ("@type", "syslog"),
            ("utc", "true"),
            ("parser_engine", "string"),
        ]);
        check(
            &*p,
            "Feb 28 12:00:00 host app[1] colonless",
            Some((
                Some(inferred(2, 28, 12, 0, 0)),
                rec(&[
                    ("host", s("host")),
                    ("ident", s("app")),
                    ("pid", s("1")),
                    ("message", s("colonless")),
                ]),
            )),
        );
        check(
            &*p,
            "Feb 28 12:00:00 host onlyword",
            Some((
                Some(inferred(2, 28, 12, 0, 0)),
                rec(&[("host", s("host")), ("message", s("onlyword"))]),
            )),
        );
        check(&*p, "Feb 28 12:00:00 hostonly", None);
        check(&*p, "short", None);
        let p = parser(&[
            ("@type", "syslog"),
            ("utc", "true"),
            ("parser_engine", "string"),
            ("support_colonless_ident", "false"),
        ]);
        check(
            &*p,
            "Feb 28 12:00:00 host app[1] colonless",
            Some((
                Some(inferred(2, 28, 12, 0, 0)),
                rec(&[("host", s("host")), ("message", s("app[1] colonless"))]),
            )),
        );
    }

    #[test]
    fn rfc3164_double_space_day_and_keep_time() {
        let p = parser(&[
            ("@type", "syslog"),
            ("utc", "true"),
            ("keep_time_key", "true"),
        ]);
        check(
            &*p,
            "Feb  3 12:00:00 h a: m",
            Some((
                Some(inferred(2, 3, 12, 0, 0)),
                rec(&[
                    ("time", s("Feb  3 12:00:00")),
                    ("host", s("h")),
                    ("ident", s("a")),
                    ("message", s("m")),
                ]),
            )),
        );
    }

    fn r5424(fields: &[(&'static str, Value)]) -> Value {
        rec(fields)
    }

    #[test]
    fn rfc5424_cases() {
        let p = parser(&[
            ("@type", "syslog"),
            ("message_format", "rfc5424"),
            ("with_priority", "true"),
        ]);
        let t = Some(1486386855);
        check(
            &*p,
            "<16>1 2017-02-06T13:14:15.003Z 192.168.0.1 fluentd - - - Hi, from Fluentd!",
            Some((
                t,
                r5424(&[
                    ("pri", Value::from(16)),
                    ("host", s("192.168.0.1")),
                    ("ident", s("fluentd")),
                    ("pid", s("-")),
                    ("msgid", s("-")),
                    ("extradata", s("-")),
                    ("message", s("Hi, from Fluentd!")),
                ]),
            )),
        );
        check(
            &*p,
            r#"<16>1 2017-02-06T13:14:15.003Z 192.168.0.1 fluentd 11111 ID24224 [exampleSDID@20224 iut="3" eventSource="Application" eventID="11211"] Hi, from Fluentd!"#,
            Some((
                t,
                r5424(&[
                    ("pri", Value::from(16)),
                    ("host", s("192.168.0.1")),
                    ("ident", s("fluentd")),
                    ("pid", s("11111")),
                    ("msgid", s("ID24224")),
                    (
                        "extradata",
                        s(
                            r#"[exampleSDID@20224 iut="3" eventSource="Application" eventID="11211"]"#,
                        ),
                    ),
                    ("message", s("Hi, from Fluentd!")),
                ]),
            )),
        );
        check(
            &*p,
            r#"<16>1 2017-02-06T13:14:15.003Z 192.168.0.1 fluentd 11111 ID24224 [a x="\]"][b y="2"] msg"#,
            Some((
                t,
                r5424(&[
                    ("pri", Value::from(16)),
                    ("host", s("192.168.0.1")),
                    ("ident", s("fluentd")),
                    ("pid", s("11111")),
                    ("msgid", s("ID24224")),
                    ("extradata", s(r#"[a x="\]"][b y="2"]"#)),
                    ("message", s("msg")),
                ]),
            )),
        );
        // no subseconds: falls back to %Y-%m-%dT%H:%M:%S%z
        check(
            &*p,
            "<16>1 2017-02-06T13:14:15Z 192.168.0.1 fluentd - - -",
            Some((
                t,
                r5424(&[
                    ("pri", Value::from(16)),
                    ("host", s("192.168.0.1")),
                    ("ident", s("fluentd")),
                    ("pid", s("-")),
                    ("msgid", s("-")),
                    ("extradata", s("-")),
                ]),
            )),
        );
        // multi-line message, trailing newline chomped
        check(
            &*p,
            "<16>1 2017-02-06T13:14:15.003+09:00 h i - - - line1\nline2\n",
            Some((
                Some(1486354455),
                r5424(&[
                    ("pri", Value::from(16)),
                    ("host", s("h")),
                    ("ident", s("i")),
                    ("pid", s("-")),
                    ("msgid", s("-")),
                    ("extradata", s("-")),
                    ("message", s("line1\nline2")),
                ]),
            )),
        );
        check(&*p, "Feb 28 12:00:00 192.168.0.1 fluentd[11111]: x", None);
        assert!(p.parse(b"<16>1 yesterday h i - - - m").is_err());
        let p = parser(&[("@type", "syslog"), ("message_format", "rfc5424")]);
        check(
            &*p,
            "2017-02-06T13:14:15.003Z h i - - - m",
            Some((
                t,
                r5424(&[
                    ("host", s("h")),
                    ("ident", s("i")),
                    ("pid", s("-")),
                    ("msgid", s("-")),
                    ("extradata", s("-")),
                    ("message", s("m")),
                ]),
            )),
        );
        let p = parser(&[
            ("@type", "syslog"),
            ("message_format", "rfc5424"),
            ("time_format", "%Y-%m-%dT%H:%M:%S%z"),
        ]);
        check(
            &*p,
            "2017-02-06T13:14:15Z h i - - - m",
            Some((
                t,
                r5424(&[
                    ("host", s("h")),
                    ("ident", s("i")),
                    ("pid", s("-")),
                    ("msgid", s("-")),
                    ("extradata", s("-")),
                    ("message", s("m")),
                ]),
            )),
        );
    }

    #[test]
    fn auto_detection() {
        for engine in ["regexp", "string"] {
            let p = parser(&[
                ("@type", "syslog"),
                ("message_format", "auto"),
                ("with_priority", "true"),
                ("utc", "true"),
                ("parser_engine", engine),
            ]);
            let a = p
                .parse(b"<16>1 2017-02-06T13:14:15.003Z 192.168.0.1 fluentd - - - Hi")
                .ok()
                .flatten();
            assert_eq!(
                a.and_then(|x| x.0).map(|t| t.sec),
                Some(1486386855),
                "{engine}"
            );
            let b = p
                .parse(b"<6>Feb 28 12:00:00 192.168.0.1 fluentd[11111]: [error] Syslog test")
                .ok()
                .flatten();
            assert_eq!(
                b.and_then(|x| x.0).map(|t| t.sec),
                Some(inferred(2, 28, 12, 0, 0)),
                "{engine}"
            );
        }
    }

    /// A case from test_parser_syslog.rb: extra params, input, expected (time, record).
    type Case = (
        Vec<(&'static str, &'static str)>,
        &'static str,
        Option<(Option<u32>, Vec<(&'static str, Value)>)>,
    );

    fn expected() -> Vec<(&'static str, Value)> {
        base3164()
    }

    fn with(
        mut base: Vec<(&'static str, Value)>,
        extra: Vec<(&'static str, Value)>,
    ) -> Vec<(&'static str, Value)> {
        for (k, v) in extra {
            match base.iter_mut().find(|(bk, _)| *bk == k) {
                Some(slot) => slot.1 = v,
                None => base.insert(0, (k, v)),
            }
        }
        base
    }

    /// Compares ignoring key order (the string engine orders keys differently).
    fn same(a: &Value, b: &Value) -> bool {
        let (Some(a), Some(b)) = (a.as_map(), b.as_map()) else {
            return a == b;
        };
        a.len() == b.len() && a.iter().all(|kv| b.contains(kv))
    }

    #[test]
    fn ported_fluentd_cases_both_engines() {
        let feb28 = Some(inferred(2, 28, 12, 0, 0));
        let sd = r#"[exampleSDID@20224 iut="3" eventSource="Application" eventID="11211"]"#;
        let ident = r#"~!@#$%^&*()_+=-`]{};"'/?\,.<>"#;
        let cases: Vec<Case> = vec![
            (
                vec![],
                "Feb 28 12:00:00 192.168.0.1 fluentd[11111]: [error] Syslog test",
                Some((feb28, expected())),
            ),
            (
                vec![("time_format", "%b %d %M:%S:%H")],
                "Feb 28 00:00:12 192.168.0.1 fluentd[11111]: [error] Syslog test",
                Some((feb28, expected())),
            ),
            (
                vec![("with_priority", "true")],
                "<6>Feb 28 12:00:00 192.168.0.1 fluentd[11111]: [error] Syslog test",
                Some((feb28, with(expected(), vec![("pri", Value::from(6))]))),
            ),
            (
                vec![("with_priority", "true")],
                "<>Feb 28 12:00:00 192.168.0.1 fluentd[11111]: [error] Syslog test",
                None,
            ),
            (
                vec![],
                "Feb 28 12:00:00 192.168.0.1 fluentd[11111] [error] Syslog test",
                Some((feb28, expected())),
            ),
            (
                vec![],
                "Feb  5 17:32:18 10.0.0.99 Use the BFG!",
                Some((
                    Some(inferred(2, 5, 17, 32, 18)),
                    vec![
                        ("host", s("10.0.0.99")),
                        ("ident", s("Use")),
                        ("message", s("the BFG!")),
                    ],
                )),
            ),
            (
                vec![
                    ("message_format", "auto"),
                    ("time_format", "%b %d %M:%S:%H"),
                ],
                "Feb 28 00:00:12 192.168.0.1 fluentd[11111]: [error] Syslog test",
                Some((feb28, expected())),
            ),
            (
                vec![
                    ("message_format", "auto"),
                    ("with_priority", "true"),
                    ("time_format", "%b %d %M:%S:%H"),
                ],
                "<1>Feb 28 12:00:02 192.168.0.1 fluentd[11111]: [error] Syslog test 2>1",
                Some((
                    Some(inferred(2, 28, 2, 12, 0)),
                    with(
                        expected(),
                        vec![
                            ("pri", Value::from(1)),
                            ("message", s("[error] Syslog test 2>1")),
                        ],
                    ),
                )),
            ),
            (
                vec![("message_format", "auto"), ("with_priority", "true")],
                "<16>1 2017-02-06T13:14:15Z 192.168.0.1 fluentd - - - Hi, from Fluentd without subseconds!",
                Some((
                    Some(1486386855),
                    vec![
                        ("pri", Value::from(16)),
                        ("host", s("192.168.0.1")),
                        ("ident", s("fluentd")),
                        ("pid", s("-")),
                        ("msgid", s("-")),
                        ("extradata", s("-")),
                        ("message", s("Hi, from Fluentd without subseconds!")),
                    ],
                )),
            ),
            (
                vec![("message_format", "auto"), ("with_priority", "true")],
                r#"<16>1 2017-02-06T13:14:15.003Z 192.168.0.1 fluentd 11111 ID24224 [exampleSDID@20224 iut="3" eventSource="Application" eventID="11211"] Hi, from Fluentd!"#,
                Some((
                    Some(1486386855),
                    vec![
                        ("pri", Value::from(16)),
                        ("host", s("192.168.0.1")),
                        ("ident", s("fluentd")),
                        ("pid", s("11111")),
                        ("msgid", s("ID24224")),
                        ("extradata", s(sd)),
                        ("message", s("Hi, from Fluentd!")),
                    ],
                )),
            ),
        ];
        for engine in ["regexp", "string"] {
            for (extra, input, expect) in &cases {
                let mut pairs = vec![
                    ("@type", "syslog"),
                    ("utc", "true"),
                    ("parser_type", engine),
                ];
                pairs.extend(extra.iter().copied());
                let p = parser(&pairs);
                let got = p
                    .parse(input.as_bytes())
                    .unwrap_or_else(|e| panic!("{engine} {input:?}: {e}"));
                let got = got.map(|(t, r)| (t.map(|t| t.sec), r));
                let want = expect.as_ref().map(|(t, r)| (*t, rec(r)));
                match (&got, &want) {
                    (Some((gt, gr)), Some((wt, wr))) => {
                        assert_eq!(gt, wt, "{engine} {input:?}");
                        assert!(same(gr, wr), "{engine} {input:?}: {gr:?} vs {wr:?}");
                    }
                    _ => assert_eq!(got, want, "{engine} {input:?}"),
                }
            }
            // various characters in ident
            let p = parser(&[
                ("@type", "syslog"),
                ("utc", "true"),
                ("parser_type", engine),
                ("with_priority", "true"),
            ]);
            let line =
                format!("<6>Feb 28 12:00:00 192.168.0.1 {ident}[11111]: [error] Syslog test");
            let got = p
                .parse(line.as_bytes())
                .ok()
                .flatten()
                .map(|(_, r)| r)
                .unwrap_or(Value::Nil);
            assert!(
                same(
                    &got,
                    &rec(&with(
                        expected(),
                        vec![("pri", Value::from(6)), ("ident", s(ident))]
                    ))
                ),
                "{engine}: {got:?}"
            );
        }
    }

    #[test]
    fn ported_engine_differences() {
        let p = parser(&[("@type", "syslog"), ("parser_type", "regexp")]);
        assert!(p.parse(b"1990 Oct 22 10:52:01 TZ-6 scapegoat.dmz.example.org 10.1.2.32 sched[0]: That's All Folks!").is_err());
        let p = parser(&[
            ("@type", "syslog"),
            ("utc", "true"),
            ("parser_type", "string"),
        ]);
        let got = p
            .parse(b"Aug 10 12:00:00 127.0.0.1 test foo:bar")
            .ok()
            .flatten()
            .map(|(_, r)| r)
            .unwrap_or(Value::Nil);
        assert!(
            same(
                &got,
                &rec(&[
                    ("host", s("127.0.0.1")),
                    ("ident", s("test")),
                    ("message", s("foo:bar"))
                ])
            ),
            "{got:?}"
        );
        let got = p
            .parse(b"Aug 10 12:00:00 127.0.0.1 value1,value2")
            .ok()
            .flatten()
            .map(|(_, r)| r)
            .unwrap_or(Value::Nil);
        assert!(
            same(
                &got,
                &rec(&[("host", s("127.0.0.1")), ("message", s("value1,value2"))])
            ),
            "{got:?}"
        );
        let p = parser(&[
            ("@type", "syslog"),
            ("utc", "true"),
            ("parser_type", "regexp"),
        ]);
        let got = p
            .parse(b"Aug 10 12:00:00 127.0.0.1 value1,value2")
            .ok()
            .flatten()
            .map(|(_, r)| r)
            .unwrap_or(Value::Nil);
        assert!(
            same(
                &got,
                &rec(&[
                    ("host", s("127.0.0.1")),
                    ("ident", s("value1,value2")),
                    ("message", s(""))
                ])
            ),
            "{got:?}"
        );
    }

    #[test]
    fn ported_rfc5424_edge_cases() {
        let p = parser(&[
            ("@type", "syslog"),
            ("message_format", "rfc5424"),
            ("with_priority", "true"),
        ]);
        let field = |input: &str, key: &str| -> Option<Value> {
            let r = p.parse(input.as_bytes()).ok().flatten()?.1;
            r.as_map()?
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v.clone())
        };
        let line = "<28>1 2018-09-26T15:54:26.620412+09:00 machine minissdpd 1298 - -  peer 192.168.0.5:50123 is not from a LAN";
        assert_eq!(
            field(line, "message"),
            Some(s(" peer 192.168.0.5:50123 is not from a LAN"))
        );
        assert_eq!(
            p.parse(line.as_bytes())
                .ok()
                .flatten()
                .and_then(|x| x.0)
                .map(|t| (t.sec, t.nsec)),
            Some((1537944866, 620412000))
        );
        let sd = r#"[exampleSDID@20224 iut="3" eventSource="Application" eventID="11211"]"#;
        let line = format!(
            "<16>1 2017-02-06T13:14:15.003Z 192.168.0.1 fluentd 11111 ID24224 {sd} [Hi] from Fluentd]!"
        );
        assert_eq!(field(&line, "extradata"), Some(s(sd)));
        assert_eq!(field(&line, "message"), Some(s("[Hi] from Fluentd]!")));
        let line = format!(
            "<16>1 2017-02-06T13:14:15.003Z 192.168.0.1 fluentd 11111 ID24224 {sd}[exampleSDID@20224 class=\"high\"] Hi"
        );
        assert_eq!(
            field(&line, "extradata"),
            Some(s(&format!("{sd}[exampleSDID@20224 class=\"high\"]")))
        );
        let line = format!("<16>1 2017-02-06T13:14:15.003Z 192.168.0.1 fluentd 11111 ID24224 {sd}");
        assert_eq!(field(&line, "extradata"), Some(s(sd)));
        assert_eq!(field(&line, "message"), None);
        assert_eq!(
            field(
                "<16>1 2017-02-06T13:14:15.003Z 192.168.0.1 fluentd - - - Hi,\nfrom\nFluentd!",
                "message"
            ),
            Some(s("Hi,\nfrom\nFluentd!"))
        );
    }
}
