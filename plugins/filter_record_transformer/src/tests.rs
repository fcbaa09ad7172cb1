//! Filter tests: cases ported from fluentd `test/plugin/test_filter_record_transformer.rb`.

use nagare_plugin_sdk::rmpv::Value;
use nagare_plugin_sdk::testkit::TestKit;
use nagare_plugin_sdk::{ChunkReader, ChunkWriter, ErrorKind, EventTime, FilterOutcome, LogLevel};
use proptest::prelude::*;
use serde_json::json;

use super::*;

/// 2010-05-04 03:02:01 UTC, the time Fluentd's tests freeze.
const TIME: EventTime = EventTime::new(1_272_942_121, 0);

fn value(j: serde_json::Value) -> Value {
    nagare_formats::json::json_to_value(j)
}

fn hostname() -> String {
    nagare_formats::inject::machine_hostname()
}

fn local_time_string(t: EventTime) -> String {
    TimeFormatter::new(Some("%Y-%m-%d %H:%M:%S %z"), Zone::Local, false)
        .and_then(|f| {
            f.format(nagare_formats::EventTime::new(t.sec, t.nsec))
                .map_err(|e| e.to_string())
        })
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `conf` on `records` tagged `tag`; returns the events out (all of them, or none).
fn run_on(kit: &TestKit, conf: &str, tag: &str, records: &[Value]) -> Vec<(EventTime, Value)> {
    let f = kit
        .filter("record_transformer", conf)
        .unwrap_or_else(|e| panic!("config {conf:?}: {e}"));
    let mut w = ChunkWriter::new();
    for r in records {
        w.push_value(TIME, r);
    }
    match f.filter(tag, &w).unwrap_or_else(|e| panic!("filter: {e}")) {
        FilterOutcome::Unchanged => records.iter().map(|r| (TIME, r.clone())).collect(),
        FilterOutcome::Dropped => Vec::new(),
        FilterOutcome::Replaced { data, .. } => ChunkReader::new(&data)
            .values()
            .unwrap_or_else(|e| panic!("{e}")),
    }
}

fn run(conf: &str, tag: &str, records: &[Value]) -> Vec<Value> {
    let kit = TestKit::new(nagare_plugin_module());
    run_on(&kit, conf, tag, records)
        .into_iter()
        .map(|(_, r)| r)
        .collect()
}

/// Checks the records out for `records` in.
fn check(conf: &str, tag: &str, records: &[serde_json::Value], expect: &[serde_json::Value]) {
    let input: Vec<Value> = records.iter().cloned().map(value).collect();
    let want: Vec<Value> = expect.iter().cloned().map(value).collect();
    assert_eq!(run(conf, tag, &input), want, "config {conf:?}");
}

fn config_err(conf: &str) -> String {
    let kit = TestKit::new(nagare_plugin_module());
    match kit.filter("record_transformer", conf) {
        Ok(_) => panic!("config {conf:?} was accepted"),
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::CONFIG);
            e.message.to_string()
        }
    }
}

const CONFIG: &str = "<record>\nhostname ${hostname}\ntag ${tag}\ntime ${time}\n\
message ${hostname} ${tag_parts[-1]} ${record[\"message\"]}\n</record>\n";

fn option_records(msgs: &[&str]) -> Vec<serde_json::Value> {
    msgs.iter()
        .map(|m| json!({"foo": "bar", "message": m, "nest": {"k1": "v1", "k2": "v2"}}))
        .collect()
}

#[test]
fn configure() {
    let kit = TestKit::new(nagare_plugin_module());
    assert!(kit.filter("record_transformer", "").is_ok());
    assert!(kit.host().logs().is_empty());
    assert_eq!(
        config_err("keep_keys a"),
        "test.conf:1: `renew_record` must be true to use `keep_keys`"
    );
    let ruby = config_err("enable_ruby yes\n<record>\nx ${tag_parts.last}\n</record>");
    assert!(
        ruby.starts_with("test.conf:1: enable_ruby true is not supported"),
        "{ruby}"
    );
    assert!(
        ruby.contains("${record[\"key\"]}") && ruby.contains("${tag_parts[N]}"),
        "{ruby}"
    );
    assert_eq!(
        config_err("remove_keys $.a[x"),
        "test.conf:1: remove_keys: invalid record accessor '$.a[x': '[' found but ']' not found"
    );
    assert!(config_err("auto_typecast maybe").contains("auto_typecast"));
}

#[test]
fn options() {
    let host = hostname();
    let time = local_time_string(TIME);
    let out = run(
        CONFIG,
        "test.tag",
        &option_records(&["1", "2"])
            .into_iter()
            .map(value)
            .collect::<Vec<_>>(),
    );
    let expect: Vec<Value> = ["1", "2"]
        .iter()
        .map(|m| {
            value(json!({
                "foo": "bar", "message": format!("{host} tag {m}"),
                "nest": {"k1": "v1", "k2": "v2"},
                "hostname": host, "tag": "test.tag", "time": time,
            }))
        })
        .collect();
    assert_eq!(out, expect, "typical usage");

    check(
        &format!("{CONFIG}remove_keys foo,message"),
        "test.tag",
        &option_records(&[""]),
        &[
            json!({"nest": {"k1": "v1", "k2": "v2"}, "hostname": host, "tag": "test.tag", "time": time}),
        ],
    );
    check(
        &format!("{CONFIG}remove_keys $.nest.k1"),
        "test.tag",
        &option_records(&["m"]),
        &[
            json!({"foo": "bar", "message": format!("{host} tag m"), "nest": {"k2": "v2"},
                 "hostname": host, "tag": "test.tag", "time": time}),
        ],
    );
    check(
        &format!("{CONFIG}renew_record true"),
        "test.tag",
        &option_records(&["1"]),
        &[
            json!({"hostname": host, "tag": "test.tag", "time": time, "message": format!("{host} tag 1")}),
        ],
    );
    check(
        "renew_record true\nkeep_keys foo,message",
        "t",
        &option_records(&["1", "2"]),
        &[
            json!({"foo": "bar", "message": "1"}),
            json!({"foo": "bar", "message": "2"}),
        ],
    );
    check(
        "renew_record true\nkeep_keys foo, bar, baz, message",
        "t",
        &[
            json!({"foo": "bar", "message": "1"}),
            json!({"foo": "bar", "message": null}),
        ],
        &[
            json!({"foo": "bar", "message": "1"}),
            json!({"foo": "bar", "message": null}),
        ],
    );
    check(
        "<record>\nhash_field {\"k1\":100, \"k2\":\"foobar\"}\n</record>",
        "t",
        &[json!({})],
        &[json!({"hash_field": {"k1": 100, "k2": "foobar"}})],
    );
    check(
        "<record>\narray_field [1, 2, 3]\n</record>",
        "t",
        &[json!({})],
        &[json!({"array_field": [1, 2, 3]})],
    );
    check(
        "<record>\nmixed_field {\"hello\":[1,2,3], \"world\":{\"foo\":\"bar\"}}\n</record>",
        "t",
        &[json!({})],
        &[json!({"mixed_field": {"hello": [1, 2, 3], "world": {"foo": "bar"}}})],
    );
    // a value that looks like JSON but is not stays a string (with a warning)
    let kit = TestKit::new(nagare_plugin_module());
    let out = run_on(
        &kit,
        "<record>\nx {nope\n</record>",
        "t",
        &[value(json!({}))],
    );
    assert_eq!(out, vec![(TIME, value(json!({"x": "{nope"})))]);
    assert_eq!(kit.host().messages(LogLevel::WARN).len(), 1);
}

#[test]
fn renew_time_key() {
    let kit = TestKit::new(nagare_plugin_module());
    let out = run_on(
        &kit,
        "renew_time_key message",
        "t",
        &[
            value(json!({"message": "1272942122.0"})),
            value(json!({"message": "1272942123.5"})),
        ],
    );
    assert_eq!(out[0].0, EventTime::new(1_272_942_122, 0));
    assert_eq!(out[1].0, EventTime::new(1_272_942_123, 500_000_000));
    assert_eq!(out[0].1, value(json!({"message": "1272942122.0"})));

    let out = run_on(
        &kit,
        "renew_time_key event_time_key\nremove_keys event_time_key\nauto_typecast true\n\
         <record>\nevent_time_key ${record[\"message\"]}\n</record>",
        "t",
        &[
            value(json!({"message": "1272942122.25"})),
            value(json!({"message": 1_272_942_124})),
        ],
    );
    assert_eq!(
        out,
        vec![
            (
                EventTime::new(1_272_942_122, 250_000_000),
                value(json!({"message": "1272942122.25"}))
            ),
            (
                EventTime::new(1_272_942_124, 0),
                value(json!({"message": 1_272_942_124}))
            ),
        ]
    );
    // a missing key keeps the time; nil and garbage are Ruby's 0.0
    let out = run_on(
        &kit,
        "renew_time_key t",
        "t",
        &[
            value(json!({})),
            value(json!({"t": null})),
            value(json!({"t": "abc"})),
        ],
    );
    let times: Vec<EventTime> = out.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, [TIME, EventTime::new(0, 0), EventTime::new(0, 0)]);
}

#[test]
fn error_events() {
    let kit = TestKit::new(nagare_plugin_module());
    let f = kit
        .filter("record_transformer", "renew_time_key t")
        .unwrap_or_else(|e| panic!("{e}"));
    let chunk = |recs: &[serde_json::Value]| {
        let mut w = ChunkWriter::new();
        for r in recs {
            w.push_value(TIME, &value(r.clone()));
        }
        w
    };
    // every event fails: the whole chunk is an error (the host sends it to @ERROR)
    let err = f
        .filter("t", &chunk(&[json!({"t": {"a": 1}}), json!({"t": true})]))
        .err();
    assert_eq!(err.as_ref().map(|e| e.kind), Some(ErrorKind::UNRECOVERABLE));
    assert_eq!(
        err.map(|e| e.message.to_string()).as_deref(),
        Some(
            "record_transformer: 2 events tagged 't' failed: undefined method `to_f' for Hash (renew_time_key 't')"
        )
    );
    // some fail: those are dropped and counted, the rest pass
    let out = f.filter("t", &chunk(&[json!({"t": [1]}), json!({"t": 5})]));
    match out {
        Ok(FilterOutcome::Replaced { records: 1, data }) => {
            let v = ChunkReader::new(&data)
                .values()
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(v, vec![(EventTime::new(5, 0), value(json!({"t": 5})))]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(kit.host().metric("error_records"), Some(3.0));
    assert_eq!(kit.host().metric("records_out"), Some(1.0));
    let warns = kit.host().messages(LogLevel::WARN);
    assert_eq!(warns.len(), 1, "{warns:?}");
    assert!(
        warns[0].contains("dropped 1 of 2 events tagged 't'"),
        "{warns:?}"
    );
    // a negative time is out of range
    assert!(f.filter("t", &chunk(&[json!({"t": -5})])).is_err());
}

#[test]
fn placeholders() {
    let host = hostname();
    let time = local_time_string(TIME);
    let recs = [json!({"eventType0": "bar", "message": ""})];
    let one = |conf: &str, tag: &str, expect: serde_json::Value| {
        let out = run(
            &format!("<record>\n{conf}\n</record>"),
            tag,
            &[value(recs[0].clone())],
        );
        let got = match out.first() {
            Some(Value::Map(m)) => m
                .iter()
                .find(|(k, _)| k.as_str() == Some("message"))
                .map(|(_, v)| v.clone()),
            _ => None,
        };
        assert_eq!(got, Some(value(expect)), "{conf:?}");
    };
    one("message ${hostname}", "test.tag", json!(host));
    one("message ${tag}", "test.tag", json!("test.tag"));
    one(
        "message ${tag_parts[0]} ${tag_parts[-1]}",
        "test.tag",
        json!("test tag"),
    );
    one(
        "message ${tag_prefix[1]} ${tag_prefix[-2]} ${tag_suffix[2]} ${tag_suffix[-3]}",
        "prefix.test.tag.suffix",
        json!("prefix.test prefix.test.tag tag.suffix test.tag.suffix"),
    );
    one("message ${time}", "test.tag", json!(time));
    one("message ${tag_parts[2]}", "test.tag", json!(null));
    one("message <${tag_parts[-3]}>", "test.tag", json!("<>"));
    one("message a__TAG__b", "test.tag", json!("ab"));
    one("message ${record[\"eventType0\"]}", "t", json!("bar"));
    // bare ${key}: a top-level record key (v0.12 style)
    one("message bar ${eventType0}", "t", json!("bar bar"));

    check(
        "remove_keys eventType0\n<record>\nmessage bar ${record[\"message\"]}\neventtype ${record[\"eventType0\"]}\n</record>",
        "t",
        &[json!({"eventType0": "bar", "message": "1"})],
        &[json!({"message": "bar 1", "eventtype": "bar"})],
    );
    // reserved names are not shadowed by record keys
    check(
        "<record>\nnew_tag ${tag}\nnew_record_tag ${record[\"tag\"]}\n</record>",
        "test.tag",
        &[json!({"tag": "tag", "time": "time"})],
        &[json!({"tag": "tag", "time": "time", "new_tag": "test.tag", "new_record_tag": "tag"})],
    );
    check(
        "<record>\nhash_field {\"hostname\":\"${hostname}\",\"tag\":\"${tag}\",\"${tag}\":100}\n</record>",
        "test.tag",
        &[json!({})],
        &[json!({"hash_field": {"hostname": host, "tag": "test.tag", "test.tag": 100}})],
    );
    check(
        "<record>\narray_field [\"${hostname}\", \"${tag}\"]\n</record>",
        "test.tag",
        &[json!({})],
        &[json!({"array_field": [host, "test.tag"]})],
    );
    check(
        "<record>\nmixed_field [{\"tag\":\"${tag}\"}]\n</record>",
        "test.tag",
        &[json!({})],
        &[json!({"mixed_field": [{"tag": "test.tag"}]})],
    );
    check(
        "renew_record true\n<record>\n${hostname} hostname\nfoo.${tag} tag\n</record>",
        "test.tag",
        &[json!({"message": "1"})],
        &[json!({host.clone(): "hostname", "foo.test.tag": "tag"})],
    );
    check(
        "<record>\n_timestamp ${record[\"@timestamp\"]}\n_foo_bar ${record[\"foo.bar\"]}\n</record>",
        "t",
        &[json!({"foo.bar": "foo.bar", "@timestamp": 10})],
        &[json!({"foo.bar": "foo.bar", "@timestamp": 10, "_timestamp": 10, "_foo_bar": "foo.bar"})],
    );
}

#[test]
fn typecasting() {
    let section = "<record>\nsingle ${record[\"source\"]}\nmultiple ${record[\"source\"]}${record[\"source\"]}\n\
        with_prefix prefix-${record[\"source\"]}\nwith_suffix ${record[\"source\"]}-suffix\n\
        with_quote record[\"source\"][\"\"]\n</record>";
    let sources = [
        json!("string"),
        json!(123),
        json!([1, 2]),
        json!({"a": 1, "b": 2}),
        json!(null),
    ];
    // Ruby 3.4's to_s of each source
    let texts = ["string", "123", "[1, 2]", "{\"a\" => 1, \"b\" => 2}", ""];
    for (auto, conf) in [(false, "auto_typecast false"), (true, "auto_typecast yes")] {
        for (src, text) in sources.iter().zip(texts) {
            let single = if auto { src.clone() } else { json!(text) };
            check(
                &format!("{conf}\n{section}"),
                "t",
                &[json!({"source": src})],
                &[json!({
                    "source": src,
                    "single": single,
                    "multiple": format!("{text}{text}"),
                    "with_prefix": format!("prefix-{text}"),
                    "with_suffix": format!("{text}-suffix"),
                    "with_quote": "record[\"source\"][\"\"]",
                })],
            );
        }
    }
}

#[test]
fn unknown_placeholders_warn_once() {
    let kit = TestKit::new(nagare_plugin_module());
    let out = run_on(
        &kit,
        "<record>\nmessage ${unknown}\nother x${record['k']}y\n</record>",
        "t",
        &[value(json!({"a": 1})), value(json!({"a": 2}))],
    );
    assert_eq!(
        out[0].1,
        value(json!({"a": 1, "message": null, "other": "xy"}))
    );
    assert_eq!(
        kit.host().messages(LogLevel::WARN),
        ["unknown placeholder `${unknown}` found"]
    );
}

#[test]
fn noop_is_unchanged() {
    let kit = TestKit::new(nagare_plugin_module());
    let f = kit
        .filter("record_transformer", "")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut w = ChunkWriter::new();
    w.push_value(TIME, &value(json!({"a": 1})));
    assert_eq!(f.filter("t", &w).ok(), Some(FilterOutcome::Unchanged));
    assert_eq!(kit.host().metric("records_out"), Some(1.0));
}

#[test]
fn conformance() {
    let kit = TestKit::new(nagare_plugin_module());
    let m = kit.manifest();
    assert_eq!(m.package.as_str(), "nagare-filter-record-transformer");
    let types: Vec<String> = m.plugins.iter().map(|p| p.type_name.to_string()).collect();
    assert_eq!(types, ["record_transformer"]);
    let f = kit
        .filter("record_transformer", CONFIG)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        f.filter("t", &ChunkWriter::new()).ok(),
        Some(FilterOutcome::Dropped)
    );
    assert!(kit.host().logs().is_empty(), "{:?}", kit.host().logs());
}

#[test]
fn ruby_conversions() {
    for (s, f) in [
        ("1.5", 1.5),
        ("  12abc", 12.0),
        ("-3e2", -300.0),
        ("1_000.5", 1000.5),
        ("1e", 1.0),
        (".5", 0.0),
        ("5.", 5.0),
        ("abc", 0.0),
        ("", 0.0),
        ("+7", 7.0),
        ("1272942121.123456", 1_272_942_121.123_456),
    ] {
        assert_eq!(ruby_str_to_f(s), f, "{s:?}");
    }
    for (f, t) in [
        (0.0, Some(EventTime::new(0, 0))),
        (1.5, Some(EventTime::new(1, 500_000_000))),
        (0.7, Some(EventTime::new(0, 699_999_999))),
        (1.3, Some(EventTime::new(1, 300_000_000))),
        (-0.5, None),
        (f64::NAN, None),
        (5e9, None),
    ] {
        assert_eq!(time_at(f), t, "{f}");
    }
}

proptest! {
    #[test]
    fn str_to_f_reads_plain_decimals(int in 0u32..1_000_000, frac in 0u32..1000, tail in "[a-z ]{0,3}") {
        let text = format!("{int}.{frac:03}{tail}");
        let want: f64 = format!("{int}.{frac:03}").parse().unwrap_or(-1.0);
        prop_assert_eq!(ruby_str_to_f(&text), want);
    }

    #[test]
    fn time_at_is_monotonic_and_in_range(a in 0.0f64..4.0e9, b in 0.0f64..4.0e9) {
        let (ta, tb) = (time_at(a), time_at(b));
        prop_assert!(ta.is_some() && tb.is_some());
        if a <= b {
            prop_assert!(ta <= tb);
        }
        prop_assert!(ta.map_or(0, |t| t.nsec) < 1_000_000_000);
    }
}

/// The raw field setter gives the record the decoded `Hash#merge!` path gives.
#[test]
fn raw_fields_match_the_decoded_merge() {
    fn check(record: &[u8], fields: &[(&str, Value)]) {
        let encoded: Vec<(String, Vec<u8>)> = fields
            .iter()
            .map(|(k, v)| {
                let mut b = Vec::new();
                crate::accessor::write_value_lossless(&mut b, v);
                ((*k).to_owned(), b)
            })
            .collect();
        let mut out = Vec::new();
        let got = crate::set_raw_fields(record, &encoded, &mut Vec::new(), &mut out).map(|()| out);
        let expect = match nagare_plugin_sdk::rmpv::decode::read_value(&mut &record[..]) {
            Ok(Value::Map(mut m)) => {
                for (k, v) in fields {
                    crate::merge(&mut m, Value::from(*k), v.clone());
                }
                let mut b = Vec::new();
                crate::accessor::write_value_lossless(&mut b, &Value::Map(m));
                Some(b)
            }
            _ => None,
        };
        // Compared decoded: the raw path keeps the record's own encodings (a str8 key stays
        // str8) where re-encoding picks the shortest.
        let decode = |b: Option<Vec<u8>>| {
            b.map(|b| nagare_plugin_sdk::rmpv::decode::read_value(&mut &b[..]).ok())
        };
        assert_eq!(decode(got), decode(expect), "{record:x?} {fields:?}");
    }
    let a = ("a", Value::from("x"));
    let k = ("k", Value::from(7));
    check(&[0x80], std::slice::from_ref(&a));
    check(&[0x81, 0xa1, b'k', 0x01], &[a.clone(), k.clone()]);
    check(
        &[0x82, 0xa1, b'k', 0x01, 0xa1, b'k', 0x02],
        std::slice::from_ref(&k),
    );
    check(&[0x81, 0xc4, 0x01, b'k', 0x01], std::slice::from_ref(&k)); // a bin key is another key
    check(&[0x81, 0xd9, 0x01, b'k', 0x01], std::slice::from_ref(&k)); // str8 key
    check(
        &[0xde, 0x00, 0x01, 0xa1, b'a', 0xc0],
        &[a.clone(), k.clone()],
    );
    check(&[0x81, 0xa1, b'q', 0x91, 0x01], &[]);
    check(&[0x91, 0x01], &[a]); // not a map
}

/// Raw records for the field-setting paths: keys of every encoding (fixstr, str8, bin,
/// integers), duplicates, nested values.
fn arb_raw_record() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        4 => "[ab]{1,2}".prop_map(Value::from),
        1 => Just(Value::Binary(b"a".to_vec())),
        1 => (0i64..3).prop_map(Value::from),
        1 => "[a]{32,33}".prop_map(Value::from),
    ];
    let val = prop_oneof![
        Just(Value::Nil),
        (0i64..70_000).prop_map(Value::from),
        "[xy]{0,40}".prop_map(Value::from),
        proptest::collection::vec(any::<u8>().prop_map(Value::from), 0..3).prop_map(Value::Array),
    ];
    proptest::collection::vec((key, val), 0..6).prop_map(|pairs| {
        let mut out = Vec::new();
        let _ = nagare_plugin_sdk::rmpv::encode::write_value(&mut out, &Value::Map(pairs));
        out
    })
}

proptest! {
    /// Setting fields from the values the reader's walk found gives the bytes the separate
    /// walk of `set_raw_fields` gives.
    #[test]
    fn visited_hits_write_what_the_record_walk_writes(
        record in arb_raw_record(),
        names in proptest::collection::vec("[ab]{1,2}|a{32}", 0..3),
    ) {
        let fields: Vec<(String, Vec<u8>)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), vec![u8::try_from(i).unwrap_or(0)]))
            .collect();
        let (mut hits, mut expect) = (Vec::new(), Vec::new());
        prop_assert!(set_raw_fields(&record, &fields, &mut hits, &mut expect).is_some());
        let mut w = ChunkWriter::new();
        w.push_raw(TIME, &record);
        let payload = w.as_bytes();
        let mut visited_hits = Vec::new();
        let mut reader = ChunkReader::new(payload);
        let got = reader.next_visiting(|k, v| {
            if let Some(i) = field_index(&fields, k)
                && !visited_hits.iter().any(|&(_, _, h)| h == i)
            {
                let start = offset_in(payload, v);
                visited_hits.push((start, start + v.len(), i));
            }
        });
        let nagare_plugin_sdk::Visited::Entry(entry) = got else {
            return Err(TestCaseError::fail("a host-shaped entry is visited"));
        };
        let mut out = Vec::new();
        let base = offset_in(payload, entry.record);
        prop_assert!(write_with_hits(entry.record, base, &fields, &visited_hits, &mut out).is_some());
        prop_assert_eq!(out, expect);
    }
}
