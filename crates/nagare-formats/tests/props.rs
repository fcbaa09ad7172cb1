//! Property tests over the public API: parsers never panic on any input, the JSON
//! formatter always emits JSON, and text formats round-trip.

use nagare_formats::json::ruby_float;
use nagare_formats::time::{Strptime, TimeFormatter, Zone};
use nagare_formats::{EventTime, Params, Parser, build_formatter, build_parser};
use proptest::prelude::*;
use rmpv::Value;

fn parser(pairs: &[(&str, &str)]) -> Box<dyn Parser> {
    match build_parser(&Params::from_pairs(pairs.iter().copied())) {
        Ok(p) => p,
        Err(e) => panic!("{pairs:?}: {e}"),
    }
}

/// Built once: regexp compilation dominates otherwise.
static PARSERS: std::sync::LazyLock<Vec<Box<dyn Parser>>> = std::sync::LazyLock::new(all_parsers);

fn all_parsers() -> Vec<Box<dyn Parser>> {
    let configs: Vec<Vec<(&str, &str)>> = vec![
        vec![("@type", "json")],
        vec![
            ("@type", "json"),
            ("time_type", "mixed"),
            ("time_format", "%iso8601"),
            ("time_format_fallbacks", "unixtime"),
        ],
        vec![("@type", "msgpack"), ("time_key", "time")],
        vec![
            ("@type", "regexp"),
            ("expression", "/^(?<time>[^ ]+) (?<a>.*?)(?<b>x+)?$/"),
            ("time_format", "%Y-%m-%dT%H:%M:%S%z"),
        ],
        vec![
            ("@type", "ltsv"),
            ("types", "a:integer,b:time,c:array,d:bool,e:float"),
        ],
        vec![
            ("@type", "csv"),
            ("keys", "time,a,b"),
            ("time_key", "time"),
            ("time_format", "%s"),
        ],
        vec![("@type", "csv"), ("keys", "a,b"), ("parser_engine", "fast")],
        vec![
            ("@type", "tsv"),
            ("keys", "a,b"),
            ("null_value_pattern", "^-$"),
            ("null_empty_string", "true"),
        ],
        vec![("@type", "none")],
        vec![("@type", "apache2")],
        vec![("@type", "apache_error")],
        vec![("@type", "nginx")],
        vec![("@type", "syslog")],
        vec![
            ("@type", "syslog"),
            ("with_priority", "true"),
            ("parser_engine", "string"),
        ],
        vec![
            ("@type", "syslog"),
            ("parser_engine", "string"),
            ("support_colonless_ident", "false"),
        ],
        vec![
            ("@type", "syslog"),
            ("message_format", "rfc5424"),
            ("with_priority", "true"),
        ],
        vec![
            ("@type", "syslog"),
            ("message_format", "auto"),
            ("with_priority", "true"),
            ("parser_engine", "string"),
        ],
        vec![
            ("@type", "multiline"),
            ("format_firstline", "/^\\d/"),
            ("format1", "/^(?<time>\\d+) (?<m>.*)/"),
            ("time_format", "%s"),
        ],
    ];
    configs.iter().map(|c| parser(c)).collect()
}

/// Inputs that look like the formats, so the interesting paths are reached.
fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        "[ -~\\t\\n]{0,120}".prop_map(String::into_bytes),
        "<[0-9]{1,3}>[0-9]? ?[A-Za-z]{3} [ 0-9]{2} [0-9:.]{8,12} [a-z]{0,5}(\\[[0-9]*\\])?:? .{0,20}".prop_map(String::into_bytes),
        "\\{\"time\":[0-9.e\"a-z-]{0,15}(,\"[a-z]\":\"[^\"]{0,5}\")?\\}".prop_map(String::into_bytes),
        "[a-e]:[^\\t]{0,8}(\\t[a-e]:[^\\t]{0,8}){0,4}".prop_map(String::into_bytes),
        "(\"[^\"]{0,5}\"?|[^,\"]{0,5})(,(\"[^\"]{0,5}\"?|[^,\"]{0,5})){0,3}".prop_map(String::into_bytes),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Boolean),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::F64),
        any::<f32>().prop_map(Value::F32),
        ".{0,10}".prop_map(Value::from),
        proptest::collection::vec(any::<u8>(), 0..10).prop_map(Value::Binary),
        proptest::collection::vec(any::<u8>(), 0..10).prop_map(raw_str),
        (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..10))
            .prop_map(|(t, d)| Value::Ext(t, d)),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
        ]
    })
}

/// A msgpack "str" whose bytes may be invalid UTF-8 (decoded from the wire, as a peer may send).
fn raw_str(b: Vec<u8>) -> Value {
    let mut buf = Vec::new();
    let _ = rmp::encode::write_str_len(&mut buf, b.len() as u32);
    buf.extend_from_slice(&b);
    rmpv::decode::read_value(&mut buf.as_slice()).unwrap_or(Value::Nil)
}

fn text_value() -> impl Strategy<Value = String> {
    "[^\\t\\n\\r]{0,12}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// The raw fast path renders exactly what the general path does, for any value.
    #[test]
    fn raw_json_equals_decoded_json(v in value()) {
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &v).expect("encode");
        let mut fast = String::new();
        let used = nagare_formats::json::write_json_raw(&bytes, &mut fast);
        prop_assert_eq!(used, Some(bytes.len()));
        // What the general path sees: the value decoded from the same bytes.
        let decoded = rmpv::decode::read_value(&mut bytes.as_slice()).expect("decode");
        prop_assert_eq!(fast, nagare_formats::json::to_json(&decoded));
    }

    /// Truncated or garbage bytes never panic the raw path.
    #[test]
    fn raw_json_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut s = String::new();
        let _ = nagare_formats::json::write_json_raw(&data, &mut s);
    }

    #[test]
    fn parsers_never_panic(data in input()) {
        for p in PARSERS.iter() {
            let _ = p.parse(&data);
            let _ = p.parse_each(&data, &mut |_| {});
            let _ = p.firstline(&data);
        }
    }

    #[test]
    fn json_formatter_emits_json(record in proptest::collection::vec((".{0,6}", value()), 0..5)) {
        let record = Value::Map(record.into_iter().map(|(k, v)| (Value::from(k), v)).collect());
        for pairs in [vec![("@type", "json")], vec![("@type", "out_file"), ("output_time", "false"), ("output_tag", "false")]] {
            let f = build_formatter(&Params::from_pairs(pairs));
            prop_assert!(f.is_ok());
            let Ok(f) = f else { continue };
            let out = f.format_to_vec("t", EventTime::new(1, 2), &record);
            prop_assert!(out.is_ok());
            let out = out.unwrap_or_default();
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&out);
            prop_assert!(parsed.is_ok(), "not JSON: {:?}", String::from_utf8_lossy(&out));
        }
    }

    #[test]
    fn ltsv_round_trip(pairs in proptest::collection::btree_map("[a-z_]{1,6}", text_value(), 0..6)) {
        let pairs: Vec<(String, String)> = pairs.into_iter().filter(|(k, _)| k != "time").collect();
        let record = Value::Map(pairs.iter().map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str()))).collect());
        let f = build_formatter(&Params::from_pairs([("@type", "ltsv"), ("add_newline", "false")]));
        let p = parser(&[("@type", "ltsv"), ("estimate_current_event", "false")]);
        let out = f.map(|f| f.format_to_vec("t", EventTime::new(0, 0), &record));
        let bytes = out.ok().and_then(Result::ok).unwrap_or_default();
        let back = p.parse(&bytes).ok().flatten().map(|(_, r)| r);
        prop_assert_eq!(back, Some(record));
    }

    #[test]
    fn csv_round_trip(values in proptest::collection::vec(".{0,8}", 3), force in any::<bool>()) {
        let record = Value::Map(vec![
            (Value::from("a"), Value::from(values[0].as_str())),
            (Value::from("b"), Value::from(values[1].as_str())),
            (Value::from("c"), Value::from(values[2].as_str())),
        ]);
        let f = build_formatter(&Params::from_pairs([("@type", "csv"), ("fields", "a,b,c"), ("force_quotes", if force { "true" } else { "false" })]));
        let bytes = f.ok().and_then(|f| f.format_to_vec("t", EventTime::new(0, 0), &record).ok()).unwrap_or_default();
        let p = parser(&[("@type", "csv"), ("keys", "a,b,c"), ("estimate_current_event", "false")]);
        let back = p.parse(&bytes);
        prop_assert!(back.is_ok(), "{:?} -> {:?}", String::from_utf8_lossy(&bytes), back);
        prop_assert_eq!(back.ok().flatten().map(|(_, r)| r), Some(record));
    }

    #[test]
    fn time_format_parse_round_trip(sec in 0u32.., nsec in 0u32..1_000_000_000, off_min in -720i32..=840) {
        let zone = chrono::FixedOffset::east_opt(off_min * 60).map(Zone::Fixed).unwrap_or(Zone::Utc);
        let t = EventTime::new(sec, nsec);
        let f = TimeFormatter::new(Some("%Y-%m-%dT%H:%M:%S.%N%:z"), zone, true).ok();
        let text = f.and_then(|f| f.format(t).ok()).unwrap_or_default();
        let p = Strptime::new("%Y-%m-%dT%H:%M:%S.%N%z").ok();
        let back = p.and_then(|p| p.parse(&text, &Zone::Utc, EventTime::new(0, 0)).ok());
        prop_assert_eq!(back, Some(t), "{}", text);
    }

    #[test]
    fn ruby_float_round_trips(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        let s = ruby_float(f);
        prop_assert_eq!(s.parse::<f64>().ok(), Some(f), "{}", s);
        prop_assert!(s.contains('.'), "{}", s);
    }
}
