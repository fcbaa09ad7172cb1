//! Deserializer tests: each case is a config text, the expected value or error message.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use serde::Deserialize;

use super::text::parse_element;
use super::*;

fn parse<'a, T: Deserialize<'a>>(node: &'a ConfigNode) -> Result<(T, Vec<String>), String> {
    from_node::<T>(node)
        .map(|p| (p.value, p.unused.iter().map(ToString::to_string).collect()))
        .map_err(|e| e.to_string())
}

fn node(text: &str) -> ConfigNode {
    parse_element("fluent.conf", "match", "app.**", text).unwrap_or_else(|e| panic!("{e}"))
}

/// Checks a value (and that nothing was unused).
fn check<T: for<'a> Deserialize<'a> + PartialEq + Debug>(text: &str, expect: T) {
    let n = node(text);
    assert_eq!(parse::<T>(&n), Ok((expect, vec![])), "config {text:?}");
}

/// Checks an error message.
fn check_err<T: for<'a> Deserialize<'a> + Debug>(text: &str, expect: &str) {
    let n = node(text);
    assert_eq!(
        parse::<T>(&n).map(|v| v.0).err().as_deref(),
        Some(expect),
        "config {text:?}"
    );
}

#[derive(Deserialize, Debug, PartialEq)]
struct Scalars {
    #[serde(default)]
    port: u16,
    #[serde(default)]
    ratio: f64,
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    name: String,
    #[serde(default)]
    limit: Size,
    #[serde(default)]
    flush_interval: Interval,
    #[serde(default, deserialize_with = "super::time")]
    timeout: Duration,
    #[serde(default)]
    nothing: Option<String>,
}

fn scalars() -> Scalars {
    Scalars {
        port: 0,
        ratio: 0.0,
        enabled: false,
        name: String::new(),
        limit: Size(0),
        flush_interval: Interval(Duration::ZERO),
        timeout: Duration::ZERO,
        nothing: None,
    }
}

#[test]
fn scalar_values() {
    check(
        "port 24224",
        Scalars {
            port: 24224,
            ..scalars()
        },
    );
    check(
        "ratio 0.25",
        Scalars {
            ratio: 0.25,
            ..scalars()
        },
    );
    check(
        "ratio 3",
        Scalars {
            ratio: 3.0,
            ..scalars()
        },
    );
    check(
        "enabled",
        Scalars {
            enabled: true,
            ..scalars()
        },
    );
    check(
        "enabled yes",
        Scalars {
            enabled: true,
            ..scalars()
        },
    );
    check(
        "enabled false",
        Scalars {
            enabled: false,
            ..scalars()
        },
    );
    check(
        "name  a  b ",
        Scalars {
            name: "a  b".into(),
            ..scalars()
        },
    );
    check(
        "limit 8m",
        Scalars {
            limit: Size(8 << 20),
            ..scalars()
        },
    );
    check(
        "flush_interval 10s",
        Scalars {
            flush_interval: Interval(Duration::from_secs(10)),
            ..scalars()
        },
    );
    check(
        "timeout 0.5",
        Scalars {
            timeout: Duration::from_millis(500),
            ..scalars()
        },
    );
    check(
        "nothing x",
        Scalars {
            nothing: Some("x".into()),
            ..scalars()
        },
    );
    check(
        "port 1\nport 2",
        Scalars {
            port: 2,
            ..scalars()
        },
    );
    // reserved params are ignored by default
    check(
        "@type stdout\n@id out1\n@label @X\n@log_level debug\nport 3",
        Scalars {
            port: 3,
            ..scalars()
        },
    );
}

#[test]
fn nil_values() {
    let n = NodeBuilder::new("match", "**")
        .location("f:1")
        .nil_attr("nothing")
        .build();
    assert_eq!(parse::<Scalars>(&n), Ok((scalars(), vec![])));
    let n = NodeBuilder::new("match", "**")
        .location("f:1")
        .nil_attr("name")
        .build();
    assert_eq!(
        parse::<Scalars>(&n).err().as_deref(),
        Some("f:1: invalid value for name: nil (expected a string, got nil)")
    );
}

#[test]
fn scalar_errors() {
    check_err::<Scalars>(
        "port abc",
        "fluent.conf:1: invalid value for port: 'abc' (expected an integer)",
    );
    check_err::<Scalars>(
        "port 70000",
        "fluent.conf:1: invalid value for port: '70000' (expected an integer in range)",
    );
    check_err::<Scalars>(
        "ratio x",
        "fluent.conf:1: invalid value for ratio: 'x' (expected a number)",
    );
    check_err::<Scalars>(
        "enabled TRUE",
        "fluent.conf:1: invalid value for enabled: 'TRUE' (expected true, yes, false or no)",
    );
    check_err::<Scalars>(
        "limit 8q",
        "fluent.conf:1: invalid value for limit: '8q' (expected a size like 256, 8k, 8m, 1g)",
    );
    check_err::<Scalars>(
        "timeout soon",
        "fluent.conf:1: invalid value for timeout: 'soon' (expected a time like 10s, 5m, 1h, 0.5)",
    );
}

#[derive(Deserialize, Debug, PartialEq)]
struct Required {
    path: String,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct Strict {
    #[serde(default)]
    path: String,
}

#[test]
fn required_unknown_and_unused() {
    check_err::<Required>("", "fluent.conf:1: 'path' parameter is required in <match>");
    check_err::<Strict>(
        "path /x\nbogus 1",
        "fluent.conf:1: unknown parameter 'bogus' in <match>",
    );
    let n = node("path /x\nbogus 1\n<extra>\n</extra>");
    assert_eq!(
        parse::<Required>(&n),
        Ok((
            Required { path: "/x".into() },
            vec![
                "fluent.conf:1: parameter 'bogus' in <match app.**> is not used.".to_owned(),
                "fluent.conf:3: section <extra> in <match app.**> is not used.".to_owned(),
            ]
        ))
    );
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Compress {
    Text,
    Gzip,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Collections {
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    ports: Vec<u16>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    weights: BTreeMap<String, u32>,
    #[serde(default)]
    compress: Option<Compress>,
}

fn collections() -> Collections {
    Collections {
        hosts: vec![],
        ports: vec![],
        labels: BTreeMap::new(),
        weights: BTreeMap::new(),
        compress: None,
    }
}

#[test]
fn arrays_hashes_enums() {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    check(
        "hosts a, b",
        Collections {
            hosts: s(&["a", "b"]),
            ..collections()
        },
    );
    check(
        "hosts [\"a\",\"b c\"]",
        Collections {
            hosts: s(&["a", "b c"]),
            ..collections()
        },
    );
    check(
        "ports [1, 2]",
        Collections {
            ports: vec![1, 2],
            ..collections()
        },
    );
    check(
        "ports 3,4",
        Collections {
            ports: vec![3, 4],
            ..collections()
        },
    );
    let m = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    };
    check(
        "labels k:v,k2:v2",
        Collections {
            labels: m(&[("k", "v"), ("k2", "v2")]),
            ..collections()
        },
    );
    check(
        "labels {\"a\":\"b\"}",
        Collections {
            labels: m(&[("a", "b")]),
            ..collections()
        },
    );
    check(
        "weights {\"a\":1,\"b\":2}",
        Collections {
            weights: [("a".to_owned(), 1), ("b".to_owned(), 2)].into(),
            ..collections()
        },
    );
    check(
        "compress gzip",
        Collections {
            compress: Some(Compress::Gzip),
            ..collections()
        },
    );
    check_err::<Collections>(
        "compress zip",
        "fluent.conf:1: invalid value for compress: 'zip' (valid options are text,gzip)",
    );
    check_err::<Collections>(
        "ports 1,x",
        "fluent.conf:1: invalid value for ports: '1,x' (expected an integer)",
    );
    check_err::<Collections>(
        "labels novalue",
        "fluent.conf:1: invalid value for labels: 'novalue' (expected a hash: 'novalue' is not a key:value pair)",
    );
    check_err::<Collections>(
        "hosts [1,",
        "fluent.conf:1: invalid value for hosts: '[1,' (expected an array: invalid JSON array: EOF while parsing a value at line 1 column 3)",
    );
}

#[derive(Deserialize, Debug, PartialEq, Default)]
struct Buffer {
    #[serde(rename = "@arg", default)]
    keys: String,
    #[serde(default)]
    timekey: Interval,
    #[serde(default)]
    chunk_limit_size: Size,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Server {
    host: String,
    #[serde(default)]
    port: u16,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Format {
    #[serde(rename = "@type")]
    kind: String,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Sections {
    #[serde(default)]
    buffer: Buffer,
    #[serde(default, rename = "server")]
    servers: Vec<Server>,
    #[serde(default)]
    format: Option<Format>,
    #[serde(default)]
    record: BTreeMap<String, String>,
}

#[test]
fn sub_sections() {
    let text = "<buffer tag,time>\n timekey 1h\n chunk_limit_size 1m\n</buffer>\n<server>\n host a\n port 1\n</server>\n<server>\n host b\n</server>\n<format>\n @type json\n</format>\n<record>\n k v\n @type skipped\n</record>";
    check(
        text,
        Sections {
            buffer: Buffer {
                keys: "tag,time".into(),
                timekey: Interval(Duration::from_secs(3600)),
                chunk_limit_size: Size(1 << 20),
            },
            servers: vec![
                Server {
                    host: "a".into(),
                    port: 1,
                },
                Server {
                    host: "b".into(),
                    port: 0,
                },
            ],
            format: Some(Format {
                kind: "json".into(),
            }),
            record: [("k".to_owned(), "v".to_owned())].into(),
        },
    );
    check(
        "",
        Sections {
            buffer: Buffer::default(),
            servers: vec![],
            format: None,
            record: BTreeMap::new(),
        },
    );
    check_err::<Sections>(
        "<buffer>\n</buffer>\n<buffer>\n</buffer>",
        "fluent.conf:1: <buffer> may appear only once in <match>",
    );
    check_err::<Sections>(
        "<server>\n port 1\n</server>",
        "fluent.conf:1: 'host' parameter is required in <server>",
    );
    check_err::<Sections>(
        "<server>\n host a\n port x\n</server>",
        "fluent.conf:1: invalid value for port: 'x' (expected an integer)",
    );
}

#[test]
fn nested_errors_name_the_section_line() {
    let n = node("\n\n<server>\n host a\n port x\n</server>");
    assert_eq!(
        parse::<Sections>(&n).err().as_deref(),
        Some("fluent.conf:3: invalid value for port: 'x' (expected an integer)")
    );
}

#[test]
fn unused_inside_sections() {
    let n = node("<server>\n host a\n weight 60\n</server>");
    let got = parse::<Sections>(&n).map(|v| v.1);
    assert_eq!(
        got,
        Ok(vec![
            "fluent.conf:1: parameter 'weight' in <server> is not used.".to_owned()
        ])
    );
}
