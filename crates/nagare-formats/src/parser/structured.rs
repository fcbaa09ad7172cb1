//! Structured-data parsers: `json` and `msgpack`.

use rmpv::Value;

use super::{Common, InputKind, ParsedEvent, Parser};
use crate::error::{ConfigError, ParseError};
use crate::json::json_to_value;
use crate::params::Params;
use crate::time::TimeType;

fn event_of(common: &Common, v: Value) -> Result<Option<ParsedEvent>, ParseError> {
    match v {
        Value::Map(m) => common.finish(m).map(Some),
        _ => Ok(None),
    }
}

/// `json`: one JSON object per input (an array of objects gives one event each). The time
/// is a float under `time` by default; giving `time_format` switches `time_type` to string.
#[derive(Debug)]
pub(crate) struct JsonParser {
    common: Common,
}

impl JsonParser {
    pub(crate) fn new(p: &Params) -> Result<JsonParser, ConfigError> {
        p.enum_or("json", "json_parser", &["oj", "yajl", "json"], "oj")?;
        let default_type = if p.has("time_format") {
            TimeType::String
        } else {
            TimeType::Float
        };
        Ok(JsonParser {
            common: Common::new("json", p, Some("time"), default_type, None)?,
        })
    }

    fn load(&self, text: &[u8]) -> Result<Value, ParseError> {
        let j: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| ParseError::Invalid {
                parser: "json",
                reason: format!("pattern not matched with data: {e}"),
            })?;
        Ok(json_to_value(j))
    }
}

impl Parser for JsonParser {
    fn parse(&self, text: &[u8]) -> Result<Option<ParsedEvent>, ParseError> {
        match self.load(text)? {
            Value::Array(items) => match items.into_iter().next() {
                Some(first) => event_of(&self.common, first),
                None => Ok(None),
            },
            other => event_of(&self.common, other),
        }
    }

    fn parse_each(
        &self,
        text: &[u8],
        emit: &mut dyn FnMut(Option<ParsedEvent>),
    ) -> Result<(), ParseError> {
        match self.load(text)? {
            Value::Array(items) => {
                for item in items {
                    emit(event_of(&self.common, item)?);
                }
            }
            other => emit(event_of(&self.common, other)?),
        }
        Ok(())
    }

    fn type_name(&self) -> &'static str {
        "json"
    }
}

/// `msgpack`: a stream of msgpack values; each map is an event, each array of maps gives
/// one event per map.
#[derive(Debug)]
pub(crate) struct MsgpackParser {
    common: Common,
}

impl MsgpackParser {
    pub(crate) fn new(p: &Params) -> Result<MsgpackParser, ConfigError> {
        Ok(MsgpackParser {
            common: Common::new("msgpack", p, None, TimeType::Float, None)?,
        })
    }
}

impl Parser for MsgpackParser {
    fn parse(&self, text: &[u8]) -> Result<Option<ParsedEvent>, ParseError> {
        let mut first: Option<Option<ParsedEvent>> = None;
        self.parse_each(text, &mut |e| {
            if first.is_none() {
                first = Some(e);
            }
        })?;
        Ok(first.flatten())
    }

    fn parse_each(
        &self,
        text: &[u8],
        emit: &mut dyn FnMut(Option<ParsedEvent>),
    ) -> Result<(), ParseError> {
        let mut cur = text;
        while !cur.is_empty() {
            let offset = text.len() - cur.len();
            let v = rmpv::decode::read_value(&mut cur).map_err(|e| ParseError::Invalid {
                parser: "msgpack",
                reason: format!("at byte {offset}: {e}"),
            })?;
            match v {
                Value::Array(items) => {
                    for item in items {
                        emit(event_of(&self.common, item)?);
                    }
                }
                other => emit(event_of(&self.common, other)?),
            }
        }
        Ok(())
    }

    fn type_name(&self) -> &'static str {
        "msgpack"
    }

    fn input_kind(&self) -> InputKind {
        InputKind::Binary
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    const NOEST: (&str, &str) = ("estimate_current_event", "false");

    #[test]
    fn json_cases() {
        // ported from test_parser_json.rb
        let p = parser(&[("@type", "json"), NOEST]);
        check(
            &*p,
            r#"{"time":1362020400,"host":"192.168.0.1","size":777,"method":"PUT"}"#,
            Some((
                Some(1362020400),
                rec(&[
                    ("host", s("192.168.0.1")),
                    ("size", Value::from(777)),
                    ("method", s("PUT")),
                ]),
            )),
        );
        check(
            &*p,
            r#"{"time":"1362020400","k":null}"#,
            Some((Some(1362020400), rec(&[("k", Value::Nil)]))),
        );
        check(
            &*p,
            r#"{"host":"x"}"#,
            Some((None, rec(&[("host", s("x"))]))),
        );
        check(&*p, r#""just a string""#, None);
        check(&*p, "123", None);
        assert!(p.parse(b"{not json").is_err());
        assert!(p.parse(b"").is_err());
        assert!(p.parse(b"{\"a\":\"\xff\"}").is_err());

        let p = parser(&[
            ("@type", "json"),
            ("time_format", "%d/%b/%Y:%H:%M:%S %z"),
            NOEST,
        ]);
        check(
            &*p,
            r#"{"time":"28/Feb/2013:12:00:00 +0900","host":"192.168.0.1"}"#,
            Some((Some(1362020400), rec(&[("host", s("192.168.0.1"))]))),
        );
        let p = parser(&[
            ("@type", "json"),
            ("time_key", "ts"),
            ("keep_time_key", "true"),
            NOEST,
        ]);
        check(
            &*p,
            r#"{"ts":1362020400.5,"a":1}"#,
            Some((
                Some(1362020400),
                rec(&[("ts", Value::F64(1362020400.5)), ("a", Value::from(1))]),
            )),
        );
        let p = parser(&[("@type", "json"), ("time_type", "string"), NOEST]);
        assert!(p.parse(br#"{"time":1362020400}"#).is_err());
        let p = parser(&[
            ("@type", "json"),
            ("time_type", "mixed"),
            ("time_format", "%iso8601"),
            ("time_format_fallbacks", "unixtime"),
            NOEST,
        ]);
        check(
            &*p,
            r#"{"time":1362020400}"#,
            Some((Some(1362020400), rec(&[]))),
        );
        check(
            &*p,
            r#"{"time":"2013-02-28T03:00:00Z"}"#,
            Some((Some(1362020400), rec(&[]))),
        );
        let p = parser(&[
            ("@type", "json"),
            ("types", "a:string,b:integer"),
            ("null_empty_string", "true"),
            NOEST,
        ]);
        check(
            &*p,
            r#"{"a":1,"b":"2","c":""}"#,
            Some((
                None,
                rec(&[("a", s("1")), ("b", Value::from(2)), ("c", Value::Nil)]),
            )),
        );
    }

    #[test]
    fn json_subsecond_time_is_exact() {
        let p = parser(&[("@type", "json"), NOEST]);
        let ev = p
            .parse(br#"{"time":"1362020400.123456789"}"#)
            .ok()
            .flatten();
        assert_eq!(
            ev.and_then(|e| e.0).map(|t| (t.sec, t.nsec)),
            Some((1362020400, 123456789))
        );
    }

    #[test]
    fn json_arrays() {
        let p = parser(&[("@type", "json"), NOEST]);
        let mut got = Vec::new();
        let r = p.parse_each(br#"[{"a":1},2,{"time":5,"b":2}]"#, &mut |e| {
            got.push(e.map(|(t, r)| (t.map(|t| t.sec), r)))
        });
        assert!(r.is_ok());
        assert_eq!(
            got,
            vec![
                Some((None, rec(&[("a", Value::from(1))]))),
                None,
                Some((Some(5), rec(&[("b", Value::from(2))]))),
            ]
        );
        check(
            &*p,
            r#"[{"a":1},{"b":2}]"#,
            Some((None, rec(&[("a", Value::from(1))]))),
        );
        check(&*p, "[]", None);
    }

    #[test]
    fn msgpack_cases() {
        let p = parser(&[("@type", "msgpack"), ("time_key", "time"), NOEST]);
        let mut buf = Vec::new();
        let one = rec(&[("time", Value::from(1362020400)), ("a", s("x"))]);
        let two = Value::Array(vec![rec(&[("b", Value::from(1))]), Value::from(3)]);
        let _ = rmpv::encode::write_value(&mut buf, &one);
        let _ = rmpv::encode::write_value(&mut buf, &two);
        let mut got = Vec::new();
        assert!(
            p.parse_each(&buf, &mut |e| got
                .push(e.map(|(t, r)| (t.map(|t| t.sec), r))))
                .is_ok()
        );
        assert_eq!(
            got,
            vec![
                Some((Some(1362020400), rec(&[("a", s("x"))]))),
                Some((None, rec(&[("b", Value::from(1))]))),
                None,
            ]
        );
        assert_eq!(p.input_kind(), InputKind::Binary);
        assert!(p.parse(&[0x81, 0xa1]).is_err());
        assert_eq!(p.parse(&[]).ok(), Some(None));
    }

    #[test]
    fn ported_json_cases() {
        // from test_parser_json.rb
        for engine in ["oj", "yajl", "json"] {
            let p = parser(&[("@type", "json"), ("json_parser", engine), NOEST]);
            let got = p
                .parse(br#"{"num":999999999999999999999999999999.99999}"#)
                .ok()
                .flatten();
            assert!(
                matches!(got.map(|(_, r)| r), Some(Value::Map(m)) if matches!(m.first(), Some((_, Value::F64(_)))))
            );
            assert!(p.parse(br#"{"time":[],"k":"v"}"#).is_err(), "{engine}");
            let p = parser(&[
                ("@type", "json"),
                ("json_parser", engine),
                ("keep_time_key", "true"),
            ]);
            check(
                &*p,
                r#"{"time":"100"}"#,
                Some((Some(100), rec(&[("time", s("100"))]))),
            );
        }
        assert!(build_parser_err(&[
            ("@type", "json"),
            ("json_parser", "simd")
        ]));
    }

    fn build_parser_err(pairs: &[(&str, &str)]) -> bool {
        crate::parser::build_parser(&Params::from_pairs(pairs.iter().copied())).is_err()
    }
}
