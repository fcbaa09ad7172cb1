//! Cases ported from Fluentd's `test/config/test_types.rb`, plus property tests.

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn check<T: std::fmt::Debug + PartialEq>(f: impl Fn(&str) -> T, cases: &[(&str, T)]) {
    for (input, expect) in cases {
        assert_eq!(f(input), *expect, "input {input:?}");
    }
}

#[test]
fn size_values() {
    check(
        |s| parse_size(s, false),
        &[
            ("2k", Ok(2048)),
            ("2K", Ok(2048)),
            ("3m", Ok(3_145_728)),
            ("3M", Ok(3_145_728)),
            ("4g", Ok(4_294_967_296)),
            ("4G", Ok(4_294_967_296)),
            ("5t", Ok(5_497_558_138_880)),
            ("5T", Ok(5_497_558_138_880)),
            ("6", Ok(6)),
            ("1000", Ok(1000)),
            ("1k", Ok(1024)),
            ("1m", Ok(1024 * 1024)),
            ("hoge", Ok(0)),
            ("", Ok(0)),
            ("1.5k", Ok(5 * 1024)), // unanchored regex, as in Fluentd
            ("8MB", Ok(8 << 20)),
        ],
    );
    assert!(parse_size("hoge", true).is_err());
    assert!(parse_size("-1", false).is_err());
    assert_eq!(parse_size("0x10", true), Ok(16));
    assert!(parse_size("99999999999999999999t", false).is_err());
}

#[test]
fn time_values() {
    check(
        |s| parse_time(s, false),
        &[
            ("10s", Ok(10.0)),
            ("10sec", Ok(10.0)),
            ("2m", Ok(120.0)),
            ("3h", Ok(10800.0)),
            ("4d", Ok(345_600.0)),
            ("hoge", Ok(0.0)),
            ("", Ok(0.0)),
            ("0", Ok(0.0)),
            ("1", Ok(1.0)),
            ("1.01", Ok(1.01)),
            ("1s", Ok(1.0)),
            ("1m", Ok(60.0)),
            ("1h", Ok(3600.0)),
            ("1d", Ok(86400.0)),
            ("0.1", Ok(0.1)),
            ("1ms", Ok(60.0)), // /([0-9]+)m/ matches "1m", as in Fluentd
        ],
    );
    assert!(parse_time("hoge", true).is_err());
    assert_eq!(parse_time("1.5", true), Ok(1.5));
    assert_eq!(parse_duration("0.1", false), Ok(Duration::from_millis(100)));
    assert!(parse_duration("-1", false).is_err());
}

#[test]
fn bool_values() {
    check(
        |s| parse_bool(s, false),
        &[
            ("true", Ok(Some(true))),
            ("yes", Ok(Some(true))),
            ("", Ok(Some(true))),
            ("false", Ok(Some(false))),
            ("no", Ok(Some(false))),
            ("hoge", Ok(None)),
            ("TRUE", Ok(None)),
            ("True", Ok(None)),
            ("Yes", Ok(None)),
            ("No", Ok(None)),
            ("unexpected_string", Ok(None)),
            ("#comment", Ok(Some(true))),
        ],
    );
    assert!(parse_bool("TRUE", true).is_err());
    assert_eq!(parse_bool("no", true), Ok(Some(false)));
}

#[test]
fn integer_and_float_values() {
    check(
        |s| parse_integer(s, false),
        &[
            ("1", Ok(1)),
            ("1.0", Ok(1)),
            ("1_000", Ok(1000)),
            ("1x", Ok(1)),
            ("hoge", Ok(0)),
            (" -7", Ok(-7)),
        ],
    );
    check(
        |s| parse_integer(s, true),
        &[
            ("1", Ok(1)),
            ("1_000", Ok(1000)),
            ("0x1A", Ok(26)),
            ("010", Ok(8)),
            ("0b11", Ok(3)),
            (" 42 ", Ok(42)),
        ],
    );
    for bad in ["1x", "1.0", "", "hoge", "1__0", "_1"] {
        assert!(parse_integer(bad, true).is_err(), "{bad}");
    }
    check(
        |s| parse_float(s, false),
        &[
            ("1", Ok(1.0)),
            ("1.0", Ok(1.0)),
            ("1.00", Ok(1.0)),
            ("1e0", Ok(1.0)),
            ("hoge", Ok(0.0)),
            (".5", Ok(0.5)),
        ],
    );
    assert_eq!(parse_float("1e3", true), Ok(1000.0));
    for bad in ["hoge", "1.", "1x", ""] {
        assert!(parse_float(bad, true).is_err(), "{bad}");
    }
}

#[test]
fn enum_values() {
    let list = ["val", "value", "v"];
    assert_eq!(parse_enum("val", &list), Ok("val"));
    assert_eq!(parse_enum("v", &list), Ok("v"));
    let err = parse_enum("x", &list).expect_err("not in list");
    assert_eq!(err.to_string(), "valid options are val,value,v but got x");
}

#[test]
fn hash_values() {
    let cases: &[(&str, serde_json::Value)] = &[
        (r#"{"x":"v","k":1}"#, json!({"x":"v","k":1})),
        ("x:v,k:1", json!({"x":"v","k":"1"})),
        ("x:v, k:1", json!({"x":"v","k":"1"})),
        (" x:v, k:1 ", json!({"x":"v","k":"1"})),
        ("x:v , k:1 ", json!({"x":"v","k":"1"})),
        ("x:v:v, k:1", json!({"x":"v:v","k":"1"})),
        ("3:Märch", json!({"3":"Märch"})),
        ("hiragana:あいうえお", json!({"hiragana":"あいうえお"})),
        ("", json!({})),
    ];
    for (input, expect) in cases {
        let got = parse_hash(input).map(serde_json::Value::Object);
        assert_eq!(got.as_ref(), Ok(expect), "{input}");
    }
    assert!(parse_hash("novalue").is_err());
    assert!(parse_hash("[1]").is_err()); // not '{', shorthand without ':'
    assert!(parse_hash("{\"a\":").is_err());
}

#[test]
fn array_values() {
    let cases: &[(&str, serde_json::Value)] = &[
        (r#"["1","2",1]"#, json!(["1", "2", 1])),
        ("1,2,1", json!(["1", "2", "1"])),
        (r#"["a","b","c"]"#, json!(["a", "b", "c"])),
        ("a,b,c", json!(["a", "b", "c"])),
        ("a, b, c", json!(["a", "b", "c"])),
        ("a , b , c", json!(["a", "b", "c"])),
        (r#"["a a","b,b"," c "]"#, json!(["a a", "b,b", " c "])),
        ("a a,b,c", json!(["a a", "b", "c"])),
        ("[1,2,1]", json!([1, 2, 1])),
        ("a,,b,,", json!(["a", "", "b"])),
        ("", json!([])),
    ];
    for (input, expect) in cases {
        let got = parse_array(input).map(serde_json::Value::Array);
        assert_eq!(got.as_ref(), Ok(expect), "{input}");
    }
    assert!(parse_array("[1,").is_err());
    assert!(parse_array("[1,2,]").is_err());
}

#[test]
fn regexp_values() {
    let re = parse_regexp("/^foo.bar$/i").expect("valid");
    assert!(re.ignore_case && !re.multiline);
    assert_eq!(re.source, "^foo.bar$");
    assert!(re.regex.is_match("FOOxBAR"));
    let re = parse_regexp("/a.b/m").expect("valid");
    assert!(re.regex.is_match("a\nb"));
    let re = parse_regexp("bare(?<x>\\d+)").expect("valid");
    assert!(re.regex.is_match("bare12"));
    assert!(parse_regexp("/abc").is_err());
    assert!(parse_regexp("/abc/ixyz").is_err());
    assert!(parse_regexp("(unclosed").is_err());
    assert_eq!(
        parse_regexp("/a/b/").map(|r| r.source),
        Ok("a/b".to_string())
    );
}

#[test]
fn ruby_conversions() {
    check(
        ruby_to_i,
        &[
            ("", 0),
            ("12abc", 12),
            ("+5", 5),
            ("-", 0),
            ("1__0", 1),
            ("_1", 0),
        ],
    );
    check(
        ruby_to_f,
        &[
            ("", 0.0),
            ("1.5x", 1.5),
            ("1.", 1.0),
            ("1e", 1.0),
            ("-2.5e2", -250.0),
            ("e5", 0.0),
        ],
    );
}

proptest! {
    #[test]
    fn value_parsers_never_panic(s in "\\PC*") {
        let _ = parse_size(&s, false);
        let _ = parse_size(&s, true);
        let _ = parse_time(&s, false);
        let _ = parse_time(&s, true);
        let _ = parse_duration(&s, true);
        let _ = parse_bool(&s, true);
        let _ = parse_integer(&s, true);
        let _ = parse_float(&s, true);
        let _ = parse_array(&s);
        let _ = parse_hash(&s);
        let _ = parse_regexp(&s);
        let _ = ruby_to_i(&s);
        let _ = ruby_to_f(&s);
    }

    #[test]
    fn size_round_trips(n in 0u64..1_000_000, unit in 0usize..5) {
        let (suffix, mult) = [("", 1u64), ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40)][unit];
        prop_assert_eq!(parse_size(&format!("{n}{suffix}"), true), Ok(n * mult));
        prop_assert_eq!(parse_size(&format!("{n}{}", suffix.to_uppercase()), false), Ok(n * mult));
    }

    #[test]
    fn time_round_trips(n in 0u64..1_000_000, unit in 0usize..4) {
        let (suffix, mult) = [("s", 1u64), ("m", 60), ("h", 3600), ("d", 86400)][unit];
        #[allow(clippy::cast_precision_loss)]
        let expect = (n * mult) as f64;
        prop_assert_eq!(parse_time(&format!("{n}{suffix}"), true), Ok(expect));
    }

    #[test]
    fn float_time_round_trips(x in 0.0f64..1e9) {
        let text = format!("{x}");
        prop_assert_eq!(parse_time(&text, true), Ok(x));
        prop_assert_eq!(parse_time(&text, false), Ok(x));
    }

    #[test]
    fn bool_round_trips(b in any::<bool>(), yes_no in any::<bool>()) {
        let text = match (b, yes_no) { (true, true) => "yes", (true, false) => "true", (false, true) => "no", (false, false) => "false" };
        prop_assert_eq!(parse_bool(text, true), Ok(Some(b)));
    }

    #[test]
    fn array_round_trips(items in proptest::collection::vec("[a-z0-9 ._-]{0,8}", 0..6)) {
        let values: Vec<serde_json::Value> = items.iter().cloned().map(serde_json::Value::String).collect();
        let text = serde_json::Value::Array(values.clone()).to_string();
        prop_assert_eq!(parse_array(&text), Ok(values));
        // The shorthand trims items and drops trailing empties.
        let shorthand = items.join(",");
        let mut expect: Vec<String> = items.iter().map(|s| s.trim().to_string()).collect();
        while expect.last().is_some_and(String::is_empty) { expect.pop(); }
        let got: Vec<String> = parse_array(&shorthand)
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect();
        prop_assert_eq!(got, expect);
    }

    #[test]
    fn hash_round_trips(pairs in proptest::collection::btree_map("[a-z][a-z0-9_]{0,6}", "[a-z0-9./]{0,8}", 0..6)) {
        let mut map = serde_json::Map::new();
        for (k, v) in &pairs { map.insert(k.clone(), serde_json::Value::String(v.clone())); }
        let text = serde_json::Value::Object(map.clone()).to_string();
        prop_assert_eq!(parse_hash(&text), Ok(map.clone()));
        let shorthand: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        prop_assert_eq!(parse_hash(&shorthand.join(",")), Ok(map));
    }
}

#[test]
fn js_comments_are_stripped_outside_strings() {
    let cases = [
        ("[1, // one\n 2]", "[1, \n 2]"),
        ("[\"a//b\"]", "[\"a//b\"]"),
        ("[1 /* x */, 2]", "[1  , 2]"),
        ("[\"\\\"//\"]", "[\"\\\"//\"]"),
        ("[\"a\\.b\\\\\"]", "[\"a.b\\\\\"]"),
    ];
    for (input, expect) in cases {
        assert_eq!(strip_js_comments(input), expect);
    }
}
