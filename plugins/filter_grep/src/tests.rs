//! Filter tests: cases ported from fluentd `test/plugin/test_filter_grep.rb` as tables.

use nagare_plugin_sdk::rmpv::Value;
use nagare_plugin_sdk::testkit::TestKit;
use nagare_plugin_sdk::{ChunkReader, ChunkWriter, EventTime, FilterOutcome, LogLevel};
use proptest::prelude::*;
use serde_json::json;

use super::*;

fn value(j: serde_json::Value) -> Value {
    nagare_formats::json::json_to_value(j)
}

fn chunk(records: &[Value]) -> ChunkWriter {
    let mut w = ChunkWriter::new();
    for r in records {
        w.push_value(EventTime::new(1_357_974_131, 124_202_000), r);
    }
    w
}

/// Runs `conf` over `records`; returns the kept records and the raw outcome kind.
fn run(kit: &TestKit, conf: &str, records: &[Value]) -> (Vec<Value>, &'static str) {
    let f = kit
        .filter("grep", conf)
        .unwrap_or_else(|e| panic!("config {conf:?}: {e}"));
    let out = f
        .filter("filter.test", &chunk(records))
        .unwrap_or_else(|e| panic!("filter: {e}"));
    match out {
        FilterOutcome::Unchanged => (records.to_vec(), "unchanged"),
        FilterOutcome::Dropped => (Vec::new(), "dropped"),
        FilterOutcome::Replaced { records: n, data } => {
            let got: Vec<Value> = ChunkReader::new(&data)
                .values()
                .unwrap_or_else(|e| panic!("{e}"))
                .into_iter()
                .map(|(t, v)| {
                    assert_eq!(t, EventTime::new(1_357_974_131, 124_202_000));
                    v
                })
                .collect();
            assert_eq!(got.len(), n as usize);
            (got, "replaced")
        }
    }
}

/// Checks which records (by index) `conf` keeps.
fn check(conf: &str, records: &[Value], expect: &[usize]) {
    let kit = TestKit::new(nagare_plugin_module());
    let (got, _) = run(&kit, conf, records);
    let want: Vec<Value> = expect.iter().map(|i| records[*i].clone()).collect();
    assert_eq!(got, want, "config {conf:?}");
}

fn check_config_err(conf: &str, expect: &str) {
    let kit = TestKit::new(nagare_plugin_module());
    let got = kit
        .filter("grep", conf)
        .map(drop)
        .map_err(|e| e.message.to_string());
    assert_eq!(got, Err(expect.to_owned()), "config {conf:?}");
}

fn messages() -> Vec<Value> {
    [
        "2013/01/13T07:02:11.124202 INFO GET /ping",
        "2013/01/13T07:02:13.232645 WARN POST /auth",
        "2013/01/13T07:02:21.542145 WARN GET /favicon.ico",
        "2013/01/13T07:02:43.632145 WARN POST /login",
    ]
    .iter()
    .map(|m| value(json!({"foo": "bar", "message": m})))
    .collect()
}

fn section(name: &str, key: &str, pattern: &str) -> String {
    format!("<{name}>\nkey {key}\npattern {pattern}\n</{name}>\n")
}

fn group(name: &str, inner: &[String]) -> String {
    format!("<{name}>\n{}</{name}>\n", inner.concat())
}

#[test]
fn configure_errors() {
    let r = |k: &str, p: &str| section("regexp", k, p);
    let x = |k: &str, p: &str| section("exclude", k, p);
    let cases: Vec<(String, &str)> = vec![
        (
            "regexp1 message test\nregexp2 message test2".into(),
            "test.conf:1: regexp2 contains a duplicated key, message",
        ),
        (
            r("message", "test") + &r("message", "test2"),
            "test.conf:1: Duplicate key: message",
        ),
        (
            "regexp1 message test\n".to_owned() + &r("message", "test"),
            "test.conf:1: Duplicate key: message",
        ),
        (
            group("and", &[r("message", "test"), r("message", "test")]),
            "test.conf:1: Duplicate key in <and>: message",
        ),
        (
            group("and", &[r("message", "test")]) + &group("and", &[r("message", "test")]),
            "test.conf:1: Duplicate key in <and>: message",
        ),
        (
            r("message", "test") + &group("and", &[r("message", "test")]),
            "test.conf:1: Duplicate key in <and>: message",
        ),
        (
            group("and", &[x("message", "test"), x("message", "test")]),
            "test.conf:1: Duplicate key in <and>: message",
        ),
        (
            group("and", &[x("message", "test")]) + &group("and", &[x("message", "test")]),
            "test.conf:1: Duplicate key in <and>: message",
        ),
        (
            x("message", "test") + &group("or", &[x("message", "test")]),
            "test.conf:1: Duplicate key in <or>: message",
        ),
        (
            group("and", &[r("message", "/test/"), x("level", "/debug/")]),
            "test.conf:1: Do not specify both <regexp> and <exclude> in <and>",
        ),
        (
            group("or", &[r("message", "/test/"), x("level", "/debug/")]),
            "test.conf:1: Do not specify both <regexp> and <exclude> in <or>",
        ),
        (
            "regexp1 message".into(),
            "test.conf:1: regexp1 does not contain 2 parameters",
        ),
        (
            "exclude3 message".into(),
            "test.conf:1: exclude3 does not contain 2 parameters",
        ),
        (
            r("message", "/(/"),
            "test.conf:1: invalid value for pattern in <regexp>: '/(/' (invalid regexp: ",
        ),
        (
            "<regexp>\npattern x\n</regexp>".into(),
            "test.conf:1: 'key' parameter is required in <regexp>",
        ),
        (
            r("$.a[x", "x"),
            "test.conf:1: invalid record accessor '$.a[x': '[' found but ']' not found",
        ),
    ];
    for (conf, expect) in cases {
        let kit = TestKit::new(nagare_plugin_module());
        let got = kit
            .filter("grep", &conf)
            .map(drop)
            .map_err(|e| e.message.to_string());
        match got {
            Err(msg) if expect.ends_with(": ") => assert!(msg.starts_with(expect), "{msg}"),
            other => assert_eq!(other, Err(expect.to_owned()), "config {conf:?}"),
        }
    }
    // the duplicate check is per set: the same key may be a regexp and an exclude
    check(
        &(r("message", "WARN") + &x("message", "favicon")),
        &messages(),
        &[1, 3],
    );
    check_config_err(
        &format!(
            "{}<regexp>\nkey k\npattern a\n</regexp>\n<regexp>\nkey k\npattern b\n</regexp>",
            ""
        ),
        "test.conf:1: Duplicate key: k",
    );
}

#[test]
fn configure_details() {
    let kit = TestKit::new(nagare_plugin_module());
    // regexpN can contain a space: split at the first one only
    let (got, _) = run(
        &kit,
        "regexp1 message  foo",
        &[
            value(json!({"message": "a foo"})),
            value(json!({"message": "afoo"})),
        ],
    );
    assert_eq!(got, vec![value(json!({"message": "a foo"}))]);
    // legacy params are deprecated but not unused; unknown ones are warned about
    let kit = TestKit::new(nagare_plugin_module());
    assert!(
        kit.filter("grep", "exclude20 message x\nregexp21 message y\nbogus 1")
            .is_ok()
    );
    let warns = kit.host().messages(LogLevel::WARN);
    assert_eq!(
        warns,
        [
            "test.conf:1: parameter 'regexp21' in <filter **> is not used.",
            "test.conf:1: parameter 'bogus' in <filter **> is not used.",
            "test.conf:1: 'exclude20' parameter is deprecated: Use <exclude> section",
        ]
    );
    assert!(is_legacy_param("regexp1") && is_legacy_param("exclude20"));
    assert!(
        !is_legacy_param("regexp0") && !is_legacy_param("regexp01") && !is_legacy_param("regexp+1")
    );
    // multiple top-level sections are noted at info level
    let kit = TestKit::new(nagare_plugin_module());
    let conf = section("regexp", "a", "x") + &section("regexp", "b", "y");
    assert!(kit.filter("grep", &conf).is_ok());
    assert_eq!(
        kit.host().messages(LogLevel::INFO),
        ["Top level multiple <regexp> is interpreted as 'and' condition"]
    );
}

#[test]
fn filter_stream() {
    let m = messages();
    check("", &m, &[0, 1, 2, 3]);
    check("regexp1 message WARN", &m, &[1, 2, 3]);
    check("exclude1 message favicon", &m, &[0, 1, 3]);
    check(&section("regexp", "message", "WARN"), &m, &[1, 2, 3]);
    check(&section("exclude", "message", "favicon"), &m, &[0, 1, 3]);
    check(&section("regexp", "message", "/warn/i"), &m, &[1, 2, 3]);
    check(&section("regexp", "message", "/[a-z]nfo/"), &m, &[]);
}

#[test]
fn outcomes_copy_only_when_needed() {
    let kit = TestKit::new(nagare_plugin_module());
    let m = messages();
    assert_eq!(run(&kit, "", &m).1, "unchanged");
    assert_eq!(run(&kit, "regexp1 message GET|POST", &m).1, "unchanged");
    assert_eq!(run(&kit, "regexp1 message DELETE", &m).1, "dropped");
    assert_eq!(run(&kit, "regexp1 message WARN", &m).1, "replaced");
    assert_eq!(run(&kit, "regexp1 message INFO", &m).1, "replaced");
    let kit = TestKit::new(nagare_plugin_module());
    let f = kit
        .filter("grep", "regexp1 message WARN")
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..2 {
        f.filter("t", &chunk(&m)).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(kit.host().metric("records_kept"), Some(6.0));
    assert_eq!(kit.host().metric("records_dropped"), Some(2.0));
}

#[test]
fn invalid_sequence_is_scrubbed() {
    let kit = TestKit::new(nagare_plugin_module());
    let raw: &[u8] = &[
        0x81, 0xa7, b'm', b'e', b's', b's', b'a', b'g', b'e', 0xa2, 0xff, b'W',
    ];
    let rec = nagare_plugin_sdk::rmpv::decode::read_value(&mut &raw[..])
        .unwrap_or_else(|e| panic!("{e}"));
    let (got, _) = run(&kit, "regexp1 message WARN", std::slice::from_ref(&rec));
    assert!(got.is_empty());
    let (got, _) = run(&kit, "regexp1 message ^\\?W$", std::slice::from_ref(&rec));
    assert_eq!(got, vec![rec.clone()]);
    let infos = kit.host().messages(LogLevel::INFO);
    // one note per instance (each run builds one), not one per event
    assert_eq!(infos, ["invalid byte sequence is replaced in `?W`"; 2]);
}

fn level_records() -> Vec<Value> {
    [
        ("INFO", "GET", "/ping"),
        ("WARN", "POST", "/auth"),
        ("WARN", "GET", "/favicon.ico"),
        ("WARN", "POST", "/login"),
        ("ERROR", "POST", "/login"),
        ("ERROR", "GET", "/ping"),
        ("WARN", "GET", "/info"),
        ("WARN", "POST", "/ban"),
    ]
    .iter()
    .map(|(l, m, p)| {
        value(json!({"time": "2013/01/13T07:02:11.124202", "level": l, "method": m, "path": p}))
    })
    .collect()
}

#[test]
fn and_or_sections() {
    let r = |k: &str, p: &str| section("regexp", k, p);
    let x = |k: &str, p: &str| section("exclude", k, p);
    let four = &level_records()[..4];
    check(
        &group("and", &[r("level", "^INFO$"), r("method", "^GET$")]),
        four,
        &[0],
    );
    check(
        &group("or", &[x("level", "^INFO$"), x("method", "^GET$")]),
        four,
        &[1, 3],
    );
    check(
        &group("or", &[r("level", "^INFO$"), r("method", "^GET$")]),
        four,
        &[0, 2],
    );
    check(
        &group("and", &[x("level", "^INFO$"), x("method", "^GET$")]),
        four,
        &[1, 2, 3],
    );

    let all = level_records();
    let and_re = group(
        "and",
        &[r("level", "^ERROR|WARN$"), r("method", "^GET|POST$")],
    );
    let or_re = group(
        "or",
        &[r("level", "^ERROR|WARN$"), r("method", "^GET|POST$")],
    );
    let or_x = group("or", &[x("level", "^WARN$"), x("method", "^GET$")]);
    let and_x = group("and", &[x("level", "^WARN$"), x("method", "^GET$")]);
    let top_re = r("level", "^ERROR|WARN$") + &r("method", "^GET|POST$");
    let cases: Vec<(String, &[usize])> = vec![
        (and_re.clone() + &or_x, &[4]),
        (and_re.clone() + &and_x, &[1, 3, 4, 5, 7]),
        (or_re.clone() + &and_x, &[0, 1, 3, 4, 5, 7]),
        (or_re.clone() + &or_x, &[4]),
        (and_re.clone() + &r("path", "^/login$"), &[3, 4]),
        (top_re.clone() + &or_x, &[4]),
        (top_re.clone() + &and_x, &[1, 3, 4, 5, 7]),
    ];
    for (conf, expect) in cases {
        check(&conf, &all, expect);
    }
}

#[test]
fn nested_keys() {
    let recs: Vec<Value> = ["INFO", "WARN", "WARN"]
        .iter()
        .map(|l| value(json!({"foo": "bar", "message": {"nest1": {"nest2": l}}})))
        .collect();
    check(
        &section("regexp", "$.message.nest1.nest2", "WARN"),
        &recs,
        &[1, 2],
    );
    check(
        &section("exclude", "$.message.nest1.nest2", "WARN"),
        &recs,
        &[0],
    );
    check(
        &section("regexp", "$['message']['nest1']['nest2']", "WARN"),
        &recs,
        &[1, 2],
    );
    let arr = vec![
        value(json!({"l": ["a", "WARN"]})),
        value(json!({"l": ["WARN", "a"]})),
    ];
    check(&section("regexp", "$.l[1]", "WARN"), &arr, &[0]);
    check(&section("regexp", "$.l[-1]", "WARN"), &arr, &[0]);
}

#[test]
fn non_string_values_match_their_to_s() {
    let cases = [
        (json!(["0"]), "regexp1 message 0", true),
        (json!({"0": "0"}), "regexp1 message 0", true),
        (json!(0), "regexp1 message 0", true),
        (json!(0.1), "regexp1 message 0", true),
        (json!(true), "regexp1 message true", true),
        (json!(["0"]), "regexp1 message ^\\[\"0\"\\]$", true),
        (json!({"k": 1}), "regexp1 message ^\\{\"k\" => 1\\}$", true),
        (json!(1.0e20), "regexp1 message ^1\\.0e\\+20$", true),
        (json!(12), "regexp1 message ^12$", true),
        (json!(false), "regexp1 message ^false$", true),
        (json!(null), "regexp1 message ^$", true),
        (json!(null), "regexp1 message null|nil", false),
    ];
    for (msg, conf, kept) in cases {
        let rec = value(json!({"foo": "bar", "message": msg}));
        let expect: &[usize] = if kept { &[0] } else { &[] };
        check(conf, &[rec], expect);
    }
}

#[test]
fn missing_keys_are_empty_strings() {
    let recs = vec![value(json!({"a": "x"})), value(json!({"b": "x"}))];
    check(&section("regexp", "b", "x"), &recs, &[1]);
    check(&section("exclude", "b", "x"), &recs, &[0]);
    // Fluentd matches nil.to_s == "": an empty-matching pattern sees missing keys
    check(&section("exclude", "b", "^$"), &recs, &[1]);
    // `$.b.c` through a string is Ruby's TypeError: the event is kept (with a warning)
    check(&section("regexp", "$.b.c", "x"), &recs, &[1]);
}

#[test]
fn dig_errors_keep_the_event_and_warn_once() {
    let kit = TestKit::new(nagare_plugin_module());
    let recs = vec![value(json!({"a": "scalar"})), value(json!({"a": "scalar"}))];
    let (got, kind) = run(&kit, &section("regexp", "$.a.b", "x"), &recs);
    assert_eq!((got, kind), (recs.clone(), "unchanged"));
    let warns = kit.host().messages(LogLevel::WARN);
    assert_eq!(
        warns,
        [
            "failed to grep events (tag 'filter.test', event kept): key '$.a.b': String does not have #dig method"
        ]
    );
}

#[test]
fn malformed_chunk_is_unrecoverable() {
    let kit = TestKit::new(nagare_plugin_module());
    let f = kit
        .filter("grep", "regexp1 a b")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut w = ChunkWriter::new();
    w.push_raw(EventTime::new(1, 0), &[0x81, 0xa1]);
    let err = f.filter("t", &w).err().map(|e| e.kind);
    assert_eq!(err, Some(nagare_plugin_sdk::ErrorKind::UNRECOVERABLE));
}

#[test]
fn conformance() {
    let kit = TestKit::new(nagare_plugin_module());
    let manifest = kit.manifest();
    assert_eq!(manifest.package.as_str(), "nagare-filter-grep");
    let types: Vec<String> = manifest
        .plugins
        .iter()
        .map(|p| p.type_name.to_string())
        .collect();
    assert_eq!(types, ["grep"]);
    let f = kit
        .filter("grep", &section("regexp", "message", "WARN"))
        .unwrap_or_else(|e| panic!("{e}"));
    let empty = f
        .filter("t", &ChunkWriter::new())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(empty, FilterOutcome::Unchanged);
    assert!(kit.host().logs().is_empty(), "{:?}", kit.host().logs());
}

proptest! {
    /// The raw-msgpack path keeps exactly what a decoded-record oracle keeps.
    #[test]
    fn raw_path_matches_oracle(
        msgs in proptest::collection::vec(proptest::option::of("[a-cW ]{0,6}"), 0..8),
        pattern in "[a-cW]{1,2}",
    ) {
        let recs: Vec<Value> = msgs
            .iter()
            .map(|m| match m {
                Some(m) => value(json!({"message": m, "n": 1})),
                None => value(json!({"n": 1})),
            })
            .collect();
        let re = regex::Regex::new(&pattern).unwrap_or_else(|e| panic!("{e}"));
        let expect: Vec<usize> = msgs
            .iter()
            .enumerate()
            .filter(|(_, m)| re.is_match(m.as_deref().unwrap_or("")))
            .map(|(i, _)| i)
            .collect();
        check(&format!("regexp1 message {pattern}"), &recs, &expect);
    }
}

/// Runs grep on raw chunk bytes (any entry shapes), outside the test kit's writer.
fn run_raw(conf: &str, data: &[u8], records: u32) -> (String, Vec<String>) {
    use abi_stable::std_types::{RSlice, RStr};
    use nagare_plugin_sdk::api::{ChunkFormat, ChunkRef};
    let host = nagare_plugin_sdk::testkit::TestHost::new(LogLevel::WARN);
    let ctx = PluginContext::new("grep_test", "grep", host.host_box());
    let node = TestKit::config("filter", "**", "grep", conf).unwrap_or_else(|e| panic!("{e}"));
    let grep = Grep::new(&ctx, &node).unwrap_or_else(|e| panic!("{e}"));
    let chunk = Chunk::new(ChunkRef {
        tag: RStr::from("filter.test"),
        chunk_id: [0; 16],
        records,
        format: ChunkFormat::MSGPACK_STREAM,
        data: RSlice::from(data),
        variables: RSlice::from(&[][..]),
    });
    let outcome = match grep.filter(chunk) {
        Ok(FilterOutcome::Unchanged) => "unchanged".to_owned(),
        Ok(FilterOutcome::Dropped) => "dropped".to_owned(),
        Ok(FilterOutcome::Replaced { records, data }) => format!("replaced {records} {data:02x?}"),
        Err(e) => format!("error {e}"),
    };
    (outcome, host.messages(LogLevel::WARN))
}

/// Top-level keys of several encodings, duplicates and nil; nested maps; other scalars.
fn arb_record() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        4 => Just(Value::from("message")),
        2 => Just(Value::from("a")),
        1 => Just(Value::Binary(b"message".to_vec())),
        1 => Just(Value::from(7)),
        1 => "[a-z]{0,3}".prop_map(Value::from),
    ];
    let leaf = prop_oneof![
        Just(Value::Nil),
        "[abW ]{0,5}".prop_map(Value::from),
        (-3i64..300).prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::F64(1.5)),
    ];
    let value = leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::vec(("[ab]".prop_map(Value::from), inner), 0..3)
                .prop_map(Value::Map),
        ]
    });
    prop_oneof![
        8 => proptest::collection::vec((key, value.clone()), 0..5).prop_map(Value::Map),
        1 => value,
    ]
}

const EQUIVALENCE_CONFIGS: &[&str] = &[
    "<regexp>\n key message\n pattern /a/\n</regexp>",
    "<exclude>\n key message\n pattern /^$/\n</exclude>",
    "<exclude>\n key no_such_key\n pattern /x/\n</exclude>",
    "<regexp>\n key $.a.b\n pattern /1|a/\n</regexp>\n<exclude>\n key $.[7]\n pattern /W/\n</exclude>",
    "<or>\n <regexp>\n key message\n pattern /b/\n </regexp>\n <regexp>\n key a\n pattern /true|1/\n </regexp>\n</or>",
    "<and>\n <exclude>\n key message\n pattern /a/\n </exclude>\n <exclude>\n key $['a']\n pattern /./\n </exclude>\n</and>",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Host-shaped chunks (one walk per record, values found on the way) give the same
    /// outcome and warnings as the same events written with integer times, which the reader
    /// cannot visit and which take the look-up path; mixed chunks too.
    #[test]
    fn one_walk_path_matches_lookup_path(
        records in proptest::collection::vec((arb_record(), any::<bool>()), 0..6),
        conf in proptest::sample::select(EQUIVALENCE_CONFIGS),
    ) {
        let sec: u32 = 1_357_974_131;
        let (mut visited, mut general, mut mixed) = (Vec::new(), Vec::new(), Vec::new());
        for (r, int_time) in &records {
            let mut body = Vec::new();
            let _ = nagare_plugin_sdk::rmpv::encode::write_value(&mut body, r);
            let ext = [&[0x92, 0xd7, 0x00][..], &sec.to_be_bytes(), &[0; 4], &body].concat();
            let int = [&[0x92, 0xce][..], &sec.to_be_bytes(), &body].concat();
            visited.extend_from_slice(&ext);
            general.extend_from_slice(&int);
            mixed.extend_from_slice(if *int_time { &int } else { &ext });
        }
        let n = u32::try_from(records.len()).unwrap_or(0);
        let fast = run_raw(conf, &visited, n);
        prop_assert_eq!(&fast, &run_raw(conf, &general, n), "{}", conf);
        prop_assert_eq!(&fast, &run_raw(conf, &mixed, n), "{}", conf);
    }
}
