//! Cases ported from Fluentd's `test/config/test_literal_parser.rb` and
//! `test/config/test_config_parser.rb`, plus nagare's own regressions.

use std::path::Path;

use proptest::prelude::*;

use crate::element::{Element, Value};
use crate::env::MapEnvironment;
use crate::error::{ConfigError, ErrorKind};

fn env() -> MapEnvironment {
    MapEnvironment::new()
        .with_var("V1", "test")
        .with_var("V2", "true")
        .with_var("EMPTY", "")
        .with_hostname("myhost")
        .with_worker_id("1")
}

fn parse(text: &str) -> Result<Element, ConfigError> {
    crate::parse_str_with(text, Path::new("/nonexistent/test.conf"), &env())
}

/// `k <literal>` must give `expect` (`None`: a parse error is expected).
fn check_literal(literal: &str, expect: Option<Value>) {
    let text = format!("k {literal}");
    match (parse(&text), expect) {
        (Ok(root), Some(v)) => {
            let got = root.attr("k").map(|a| a.value.clone());
            assert_eq!(got, Some(v), "literal {literal:?}");
        }
        (Err(_), None) => {}
        (Ok(root), None) => panic!(
            "literal {literal:?}: expected an error, got {:?}",
            root.attr("k")
        ),
        (Err(e), Some(v)) => panic!("literal {literal:?}: expected {v:?}, got error\n{e}"),
    }
}

fn s(v: &str) -> Option<Value> {
    Some(Value::Str(v.to_string()))
}

fn json(v: &str) -> Option<Value> {
    // Expected JSON is written loosely; compare against its compact form.
    let parsed: serde_json::Value = serde_json::from_str(v).unwrap_or(serde_json::Value::Null);
    Some(Value::Str(parsed.to_string()))
}

/// The attrs of the root as `(key, value)` strings.
fn root_attrs(root: &Element) -> Vec<(String, String)> {
    root.attrs
        .iter()
        .map(|a| {
            (
                a.key.clone(),
                a.value.as_str().unwrap_or("<nil>").to_string(),
            )
        })
        .collect()
}

fn check_attrs(text: &str, expect: &[(&str, &str)]) {
    let root = parse(text).unwrap_or_else(|e| panic!("{text:?}:\n{e}"));
    let expect: Vec<(String, String)> = expect
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(root_attrs(&root), expect, "text {text:?}");
}

fn check_error(text: &str, message: &str, line: u32) {
    match parse(text) {
        Ok(root) => panic!("{text:?}: expected error {message:?}, parsed {root:?}"),
        Err(e) => {
            assert!(
                e.message().contains(message),
                "{text:?}: message {:?} lacks {message:?}",
                e.message()
            );
            assert_eq!(e.location().line, line, "{text:?}: wrong line in\n{e}");
            assert!(!e.hint().is_empty());
        }
    }
}

#[test]
fn literal_booleans_numbers_and_keywords_stay_strings() {
    for v in [
        "true",
        "false",
        "trueX",
        "falseX",
        "0",
        "1",
        "10",
        "-1",
        "-10",
        "01",
        "00",
        "-01",
        "-00",
        "0x61",
        "0s",
        "1.1",
        "0.1",
        "0.0",
        "-1.1",
        "-0.1",
        "1.10",
        "12e8",
        "12.1e7",
        "-12e8",
        "-12.1e7",
        ".0",
        ".1",
        "0.",
        "1.",
        ".0a",
        "1.a",
        "0@",
        "NaN",
        "Infinity",
        "-Infinity",
        "NaNX",
        "InfinityX",
        "-InfinityX",
    ] {
        check_literal(v, s(v));
    }
    check_literal("0 ", s("0"));
    check_literal(" -1 ", s("-1"));
}

#[test]
fn literal_double_quoted() {
    let cases: &[(&str, Option<Value>)] = &[
        (r#""""#, s("")),
        (r#""text""#, s("text")),
        (r#""\"""#, s("\"")),
        (r#""\t""#, s("\t")),
        (r#""\n""#, s("\n")),
        (r#""\r\n""#, s("\r\n")),
        (r#""\f\b""#, s("\x0c\x08")),
        (r#""\.t""#, s(".t")),
        (r#""\$t""#, s("$t")),
        (r##""\#t""##, s("#t")),
        (r#""\0""#, s("\0")),
        (r#""\z""#, None),
        (r#""\1""#, None),
        (r#""t"#, None),
        ("\"t\nt\"", s("t\nt")),
        ("\"t\\\nt\"", s("tt")),
        ("\"t\\\r\nt\"", s("tt")),
        (r#"t""#, s("t\"")),
        (r#"".""#, s(".")),
        (r#""*""#, s("*")),
        (r#""@""#, s("@")),
        (r##""\#{test}""##, s("#{test}")),
        (r#""$""#, s("$")),
        (r#""$t""#, s("$t")),
        (r#""$}""#, s("$}")),
        (r#""\\""#, s("\\")),
        (r#""\[""#, s("[")),
        (r#""\'""#, s("'")),
        (r#""a#comment""#, s("a#comment")),
        (r#""a" # comment"#, s("a")),
        (r#""a" 1"#, None),
        (r#""\""#, None),
        (r#"""""#, None),
    ];
    for (lit, expect) in cases {
        check_literal(lit, expect.clone());
    }
}

#[test]
fn literal_single_quoted() {
    let cases: &[(&str, Option<Value>)] = &[
        ("''", s("")),
        ("'text'", s("text")),
        (r"'\''", s("'")),
        (r"'\t'", s(r"\t")),
        (r"'\n'", s(r"\n")),
        (r"'\r\n'", s(r"\r\n")),
        (r"'\f\b'", s(r"\f\b")),
        (r"'\.t'", s(r"\.t")),
        (r"'\$t'", s(r"\$t")),
        (r"'\#t'", s(r"\#t")),
        (r"'\z'", s(r"\z")),
        (r"'\0'", s(r"\0")),
        (r"'\1'", s(r"\1")),
        ("'t", None),
        ("t'", s("t'")),
        ("'.'", s(".")),
        ("'*'", s("*")),
        ("'@'", s("@")),
        ("'#{test}'", s("#{test}")),
        ("'$'", s("$")),
        ("'$t'", s("$t")),
        ("'$}'", s("$}")),
        (r"'\\'", s("\\")),
        (r"'\['", s(r"\[")),
        ("'a#comment'", s("a#comment")),
        ("'a' 1", None),
        (r"'\'", None),
        ("'''", None),
        ("'a\nb'", s("a\nb")),
    ];
    for (lit, expect) in cases {
        check_literal(lit, expect.clone());
    }
}

#[test]
fn literal_nonquoted() {
    let same = [
        "text",
        r##"\""##,
        r"\t",
        r"\n",
        r"\r\n",
        r"\f\b",
        r"\.t",
        r"\$t",
        r"\#t",
        r"\z",
        r"\0",
        r"\1",
        ".",
        "*",
        "@",
        "#{test}",
        "$",
        "$t",
        "$}",
        r"\\",
        r"\[",
        "#foo",
        "foo#bar",
        "t",
        "T",
        "_",
        "T1",
        "_2",
        "t0",
        "t@",
        "t-",
        "t.",
        "t+",
        "t/",
        "t=",
        "t,",
        "0t",
        "@1t",
        "-1t",
        ".1t",
        ",1t",
        ".t",
        "*t",
        "@t",
        "t{",
        "}t",
        "t[",
        "]t",
        "t:",
        "t;",
        "t?",
        "t^",
        "t`",
        "t~",
        "t|",
        "t>",
        "t<",
        "t(",
        "_.%$!,",
        "/=~-~@`:?",
        "()*{}.[]",
        "a  b  c",
    ];
    for v in same {
        check_literal(v, s(v));
    }
    check_literal(" text", s("text"));
    check_literal(" #foo", s("#foo"));
    check_literal("foo #bar", s("foo"));
    check_literal("foo\t#bar", s("foo"));
    check_literal("a    ", s("a"));
    check_literal("{t", None); // '{' begins a hash
    check_literal("[t", None); // '[' begins an array
}

#[test]
fn embedded_ruby_in_double_quotes() {
    let cases: &[(&str, Option<Value>)] = &[
        (r##""#{ENV['V1']}""##, s("test")),
        (r##""#{ENV["V2"]}""##, s("true")),
        (r##""#{ENV['UNSET']}""##, s("")),
        (r##""#{}""##, s("")),
        (r#""t#{ENV['V1']}""#, s("ttest")),
        (r#""t#{ENV['V1']}t""#, s("ttestt")),
        (r##""#{"}"}""##, s("}")),
        (r##""#{ENV['V1']}foo#{ENV['V2']}""##, s("testfootrue")),
        (r#""foo#{hostname}""#, s("foomyhost")),
        (r#""foo#{Socket.gethostname}""#, s("foomyhost")),
        (r#""foo#{worker_id}""#, s("foo1")),
        (r##""#{use_nil}""##, Some(Value::Nil)),
        (r##""#{use_default}""##, Some(Value::UseDefault)),
        (r##""#{use_nil}/x""##, Some(Value::Nil)),
        (
            r##""#{ENV['UNSET'] || use_default}""##,
            Some(Value::UseDefault),
        ),
        (r##""#{ENV['UNSET'] || 'fallback'}""##, s("fallback")),
        (r##""#{ENV['EMPTY'] || 'fallback'}""##, s("")),
        (r##""#{ENV.fetch('UNSET', 'd')}""##, s("d")),
        (r##""#{ENV.fetch('UNSET') { 'blk' }}""##, s("blk")),
        // Outside the supported subset: an error, never the literal text.
        (r##""#{1+1}""##, None),
        (r##""#{#}""##, None),
        ("\"#{\n=begin\n}\"", None),
        (r##""#{`hostname`}""##, None),
        (r##""#{ENV['V1']""##, None),
    ];
    for (lit, expect) in cases {
        check_literal(lit, expect.clone());
    }
}

#[test]
fn unsupported_ruby_error_quotes_expression_and_lists_forms() {
    let err = parse("k \"#{1+1}\"").expect_err("must fail");
    assert_eq!(err.kind(), ErrorKind::EmbeddedRuby);
    assert!(err.message().contains("1+1"), "{err}");
    assert!(err.hint().contains("ENV.fetch"), "{err}");
    assert_eq!((err.location().line, err.location().column), (1, 4));
}

#[test]
fn json_arrays() {
    let cases: &[(&str, Option<Value>)] = &[
        ("[]", json("[]")),
        ("[1]", json("[1]")),
        ("[1,2]", json("[1,2]")),
        ("[1, 2]", json("[1,2]")),
        ("[ 1 , 2 ]", json("[1,2]")),
        ("[1,2,]", None),
        ("[\n1\n,\n2\n]", json("[1,2]")),
        (r#"["a"]"#, json(r#"["a"]"#)),
        (r#"["a","b"]"#, json(r#"["a","b"]"#)),
        (r#"[ "a" , "b" ]"#, json(r#"["a","b"]"#)),
        ("[\n\"a\"\n,\n\"b\"\n]", json(r#"["a","b"]"#)),
        (r#"["ab","cd"]"#, json(r#"["ab","cd"]"#)),
        (
            "[\n \"a\", // this is a\n \"b\", // this is b\n \"c\"  // this is c\n]",
            json(r#"["a","b","c"]"#),
        ),
        (
            "[\n \"a\", # this is a\n \"b\", # this is b\n \"c\"  # this is c\n]",
            json(r#"["a","b","c"]"#),
        ),
        (
            "[\n \"a\", # this is a\n \"b\", # this is b\n \"c\", # this is c\n]",
            None,
        ),
        (r#"["a#b", "c # d"]"#, json(r#"["a#b","c # d"]"#)),
        (r##"["#{ENV['V1']}", "x"]"##, json(r#"["test","x"]"#)),
        (r#"[1] # trailing comment"#, json("[1]")),
        (r#"[1] x"#, None),
        (
            "[\"a\",\n\"b\", \"c\",\n\"d\"]",
            json(r#"["a","b","c","d"]"#),
        ),
    ];
    for (lit, expect) in cases {
        check_literal(lit, expect.clone());
    }
}

#[test]
fn json_hashes() {
    let cases: &[(&str, Option<Value>)] = &[
        ("{}", json("{}")),
        (r#"{"a":1}"#, json(r#"{"a":1}"#)),
        (r#"{"a":1,"b":2}"#, json(r#"{"a":1,"b":2}"#)),
        (r#"{ "a" : 1 , "b" : 2 }"#, json(r#"{"a":1,"b":2}"#)),
        (r#"{"a":1,"b":2,}"#, None),
        (
            "{\n\"a\"\n:\n1\n,\n\"b\"\n:\n2\n}",
            json(r#"{"a":1,"b":2}"#),
        ),
        (r#"{"a":"b"}"#, json(r#"{"a":"b"}"#)),
        (r#"{"a":"b","c":"d"}"#, json(r#"{"a":"b","c":"d"}"#)),
        (
            "{\n \"a\": 1, # this is a\n \"b\": 2, # this is b\n \"c\": 3  # this is c\n}",
            json(r#"{"a":1,"b":2,"c":3}"#),
        ),
        (
            r#"{"z":1,"a":2}"#,
            Some(Value::Str(r#"{"z":1,"a":2}"#.into())),
        ), // key order kept
        (
            r#"{ "key1": "value1", "key2": 2 }"#,
            Some(Value::Str(r#"{"key1":"value1","key2":2}"#.into())),
        ),
        (r#"{"a": [1, {"b": "}"}]}"#, json(r#"{"a":[1,{"b":"}"}]}"#)),
    ];
    for (lit, expect) in cases {
        check_literal(lit, expect.clone());
    }
}

#[test]
fn incomplete_json_is_located_at_its_start() {
    check_error(
        "a 1\nk [1,\n2,\n",
        "got incomplete JSON array configuration",
        2,
    );
    check_error(
        "k {\"a\":1,}\n",
        "got incomplete JSON hash configuration",
        1,
    );
}

#[test]
fn attribute_parsing() {
    check_attrs("\n  k1 v1\n  k2 v2\n", &[("k1", "v1"), ("k2", "v2")]);
    check_attrs("\n  k1\n  k2 v2\n", &[("k1", ""), ("k2", "v2")]);
    check_attrs("k1", &[("k1", "")]);
    check_attrs("k1   ", &[("k1", "")]);
    check_attrs("1 1", &[("1", "1")]);
    check_attrs("  k1     a    ", &[("k1", "a")]);
    check_attrs("k1 a  b  c", &[("k1", "a  b  c")]);
    check_attrs("  k1 #not_comment", &[("k1", "#not_comment")]);
    check_attrs("  k1 a#not_comment", &[("k1", "a#not_comment")]);
    check_attrs("  k1 a #comment", &[("k1", "a")]);
    check_attrs("  k1 \\\\", &[("k1", "\\\\")]);
    check_attrs("  k1 \\", &[("k1", "\\")]);
    check_attrs("  k1 \\[", &[("k1", "\\[")]);
    check_attrs("  k1 \\n", &[("k1", "\\n")]);
    check_attrs("  k1 \"\\\\\"", &[("k1", "\\")]);
    check_attrs("  k1 '\\\\'", &[("k1", "\\")]);
    check_attrs("  k1 '\\''", &[("k1", "'")]);
    check_attrs("\"quoted key\" v", &[("quoted key", "v")]);
    check_attrs("k#x v", &[("k#x", "v")]);
    check_attrs("# only a comment\n\n   # another\n", &[]);
    check_attrs("k a\r\nj b\r\n", &[("k", "a"), ("j", "b")]);
}

#[test]
fn last_duplicate_wins_at_first_position() {
    check_attrs("a 1\nb 2\na 3\n", &[("a", "3"), ("b", "2")]);
    let root = parse("a 1\nb 2\na 3\n").expect("parses");
    assert_eq!(root.attr("a").map(|a| a.location.line), Some(3));
}

#[test]
fn at_prefix_rules() {
    for text in [
        "<match>\n  @k v\n</match>\n",
        "<source>\n  @k v\n</source>\n",
        "<filter>\n  @k v\n</filter>\n",
        "<system>\n  @k v\n</system>\n",
        "  @k v ",
    ] {
        let err = parse(text).expect_err(text);
        assert!(
            err.message().contains("'@' is the system reserved prefix"),
            "{err}"
        );
    }
    let parsed = crate::parse_str_with_warnings(
        "<match>\n  <record>\n    @k v\n  </record>\n</match>\n",
        Path::new("/nonexistent/w.conf"),
        &env(),
    )
    .expect("nested @ is only a warning");
    assert_eq!(parsed.warnings.len(), 1);
    assert_eq!(parsed.warnings[0].location.line, 3);
    for ok in [
        "@type x",
        "@id x",
        "@label @X",
        "@log_level debug",
        "<label @A>\n @k v\n</label>\n",
    ] {
        assert!(parse(ok).is_ok(), "{ok}");
    }
}

fn e(name: &str, arg: &str, attrs: &[(&str, &str)], children: Vec<Elem>) -> Elem {
    Elem {
        name: name.into(),
        arg: arg.into(),
        attrs: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        children,
    }
}

#[derive(Debug, PartialEq)]
struct Elem {
    name: String,
    arg: String,
    attrs: Vec<(String, String)>,
    children: Vec<Elem>,
}

fn shape(el: &Element) -> Elem {
    Elem {
        name: el.name.clone(),
        arg: el.arg.clone(),
        attrs: root_attrs(el),
        children: el.elements.iter().map(shape).collect(),
    }
}

fn check_tree(text: &str, expect: Elem) {
    let root = parse(text).unwrap_or_else(|err| panic!("{text:?}:\n{err}"));
    assert_eq!(shape(&root), expect, "text {text:?}");
}

#[test]
fn element_parsing() {
    check_tree("", e("ROOT", "", &[], vec![]));
    check_tree(
        "\n<test>\n</test>\n",
        e("ROOT", "", &[], vec![e("test", "", &[], vec![])]),
    );
    check_tree(
        "<test var>\n  key val\n</test>\n",
        e(
            "ROOT",
            "",
            &[],
            vec![e("test", "var", &[("key", "val")], vec![])],
        ),
    );
    check_tree(
        "<test var>\n key 1\n <nested1>\n </nested1>\n <nested2>\n </nested2>\n</test>",
        e(
            "ROOT",
            "",
            &[],
            vec![e(
                "test",
                "var",
                &[("key", "1")],
                vec![e("nested1", "", &[], vec![]), e("nested2", "", &[], vec![])],
            )],
        ),
    );
    check_tree(
        "<test var>\n  key [\"a\",\n\"b\", \"c\",\n\"d\"]\n</test>\n",
        e(
            "ROOT",
            "",
            &[],
            vec![e("test", "var", &[("key", r#"["a","b","c","d"]"#)], vec![])],
        ),
    );
    check_tree(
        "<test >\n</test>\n",
        e("ROOT", "", &[], vec![e("test", "", &[], vec![])]),
    );
    check_tree(
        "<test    a    >\n</test>\n",
        e("ROOT", "", &[], vec![e("test", "a", &[], vec![])]),
    );
    check_tree(
        "<test    a.** b.** >\n</test>\n",
        e("ROOT", "", &[], vec![e("test", "a.** b.**", &[], vec![])]),
    );
    for arg in ["**", "*.*", "1", "_.%$!", "/", "()*{}.[]", "a#b"] {
        check_tree(
            &format!("<test {arg}>\n</test>\n"),
            e("ROOT", "", &[], vec![e("test", arg, &[], vec![])]),
        );
    }
    check_tree(
        "<my-elem>\n</my>\n",
        e("ROOT", "", &[], vec![e("my", "-elem", &[], vec![])]),
    );
    check_tree(
        "<match \"app.#{ENV['V1']}\">\n</match>\n",
        e("ROOT", "", &[], vec![e("match", "app.test", &[], vec![])]),
    );
    check_tree(
        "<test 'a b'  >\n</test> # done\n",
        e("ROOT", "", &[], vec![e("test", "a b", &[], vec![])]),
    );
}

#[test]
fn element_errors() {
    check_error(
        "\n<test #a>\n</test>\n",
        "expected end tag '</test>' but got end of file",
        4,
    );
    check_error("\n<test></test>\n", "expected end of line after tag", 2);
    check_error(
        "<test>\n</test><test>\n</test>\n",
        "expected end of line after end tag",
        2,
    );
    check_error("<a>\n<b>\n</a>\n", "unmatched end tag", 3);
    check_error("</a>\n", "unmatched end tag", 1);
    check_error(
        "<source>\n  @type forward\n",
        "expected end tag '</source>' but got end of file",
        3,
    );
    check_error("<source\n", "expected '>'", 2);
    check_error("< source>\n</source>\n", "expected element name", 1);
    check_error("<a>\n</a\n", "expected character in tag name", 3);
    check_error("\"k\"v 1\n", "expected whitespace", 1);
}

#[test]
fn unclosed_element_hint_points_to_the_open_tag() {
    let err = parse("<match a>\n  @type stdout\n").expect_err("unclosed");
    assert!(err.hint().contains("test.conf:1:1"), "{err}");
    let rendered = err.to_string();
    assert!(
        rendered.starts_with("/nonexistent/test.conf:3:1: expected end tag '</match>'"),
        "{rendered}"
    );
}

#[test]
fn element_locations() {
    let root =
        parse("# c\n<source>\n  @type forward\n  <parse>\n    @type json\n  </parse>\n</source>\n")
            .expect("parses");
    let src = &root.elements[0];
    assert_eq!((src.location.line, src.location.column), (2, 1));
    assert_eq!(
        src.attr("@type")
            .map(|a| (a.location.line, a.location.column)),
        Some((3, 3))
    );
    assert_eq!(src.elements[0].location.line, 4);
    assert_eq!(src.elements[0].location.column, 3);
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let text = "<a>\n".repeat(10_000);
    let err = parse(&text).expect_err("too deep");
    assert!(err.message().contains("nested more than"), "{err}");
}

#[test]
fn include_over_network_is_refused() {
    let err = parse("@include https://example.com/x.conf\n").expect_err("no network");
    assert_eq!(err.kind(), ErrorKind::Include);
    assert!(err.message().contains("https"), "{err}");
}

#[test]
fn missing_include_names_the_including_line() {
    let err = parse("a 1\n@include nope/missing.conf\n").expect_err("missing");
    assert_eq!(err.kind(), ErrorKind::Include);
    assert_eq!(err.location().line, 2);
    assert!(
        err.message().contains("/nonexistent/nope/missing.conf"),
        "{err}"
    );
}

#[test]
fn non_regular_include_is_refused() {
    let err = parse("@include /dev/null\n").expect_err("not a regular file");
    assert_eq!(err.kind(), ErrorKind::Include);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics(text in "\\PC{0,200}") {
        crate::fuzz_entry(text.as_bytes());
    }

    #[test]
    fn parse_never_panics_on_config_like_text(
        text in "[<>/ \t\r\na-z@#\"'\\\\{}\\[\\],:.*|$`=-]{0,160}"
    ) {
        crate::fuzz_entry(text.as_bytes());
    }

    #[test]
    fn parse_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        crate::fuzz_entry(&bytes);
    }

    #[test]
    fn single_quoted_values_round_trip(v in "[^\n\r]{0,30}") {
        let quoted = v.replace('\\', "\\\\").replace('\'', "\\'");
        let root = parse(&format!("k '{quoted}'")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(root.get("k"), Some(v.as_str()));
    }

    #[test]
    fn double_quoted_values_round_trip(v in "[^\r]{0,30}") {
        let quoted = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('#', "\\#")
            .replace('\n', "\\n");
        let root = parse(&format!("k \"{quoted}\" # trailing comment")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(root.get("k"), Some(v.as_str()));
    }

    #[test]
    fn nonquoted_values_round_trip(v in "[a-zA-Z0-9_./:%$-][a-zA-Z0-9_./:%$ -]{0,20}[a-zA-Z0-9_./:%$-]") {
        let root = parse(&format!("  k   {v}   # c\n")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(root.get("k"), Some(v.as_str()));
    }

    #[test]
    fn json_values_round_trip_compactly(items in proptest::collection::vec(("[a-z]{1,6}", -1000i64..1000), 0..5)) {
        let map: serde_json::Map<String, serde_json::Value> =
            items.iter().map(|(k, n)| (k.clone(), serde_json::Value::from(*n))).collect();
        let compact = serde_json::Value::Object(map.clone()).to_string();
        let pretty = serde_json::to_string_pretty(&serde_json::Value::Object(map)).unwrap_or_default();
        let root = parse(&format!("k {pretty}\nnext 1\n")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(root.get("k"), Some(compact.as_str()));
        prop_assert_eq!(root.get("next"), Some("1"));
    }
}
