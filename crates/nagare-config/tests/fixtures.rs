//! A realistic multi-file td-agent configuration (`tests/fixtures/td-agent/`), plus include
//! behaviour ported from Fluentd's `test_config_parser.rb` "@include parsing" case.

use std::path::{Path, PathBuf};

use nagare_config::{Element, ErrorKind, MapEnvironment, Value};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn env() -> MapEnvironment {
    MapEnvironment::new()
        .with_var("AGGREGATOR_HOST", "agg.internal")
        .with_var("DEPLOY_ENV", "prod")
        .with_hostname("web-7")
}

fn only<'a>(parent: &'a Element, name: &'a str, arg: &str) -> &'a Element {
    let found: Vec<_> = parent.children(name).filter(|e| e.arg == arg).collect();
    assert_eq!(
        found.len(),
        1,
        "<{name} {arg}> in <{} {}>",
        parent.name,
        parent.arg
    );
    found[0]
}

#[test]
fn td_agent_tree() {
    let parsed =
        nagare_config::parse_file_with(&fixture("td-agent/td-agent.conf"), &env()).expect("parses");
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let root = &parsed.root;
    let warnings = nagare_config::check(root).expect("checks");
    assert!(warnings.is_empty(), "{warnings:?}");

    let names: Vec<(&str, &str)> = root
        .elements
        .iter()
        .map(|e| (e.name.as_str(), e.arg.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("system", ""),
            ("source", ""),
            ("source", ""),  // conf.d/10-tail.conf
            ("worker", "1"), // conf.d/20-http.conf
            ("label", "@INGEST"),
            ("label", "@APP"),
            ("label", "@ERROR"),
        ]
    );
    assert_eq!(only(root, "system", "").get("workers"), Some("2"));

    let forward = &root.elements[1];
    assert_eq!(forward.get("port"), Some("24224")); // ENV unset: the || default
    assert_eq!(forward.label(), Some("@INGEST"));
    assert_eq!(forward.id(), Some("in_forward"));

    let tail = &root.elements[2];
    assert!(tail.location.file.ends_with("conf.d/10-tail.conf"));
    assert_eq!(tail.location.line, 1);
    let parse = only(tail, "parse", "");
    assert_eq!(
        parse.get("types"),
        Some(r#"{"status":"integer","latency":"float"}"#)
    );

    let ingest = only(root, "label", "@INGEST");
    let record = only(only(ingest, "filter", "**"), "record", "");
    assert_eq!(record.get("hostname"), Some("web-7"));
    assert_eq!(record.get("env"), Some("prod"));

    let out = only(only(root, "label", "@APP"), "match", "app.**");
    assert_eq!(only(out, "server", "").get("host"), Some("agg.internal"));
    let buffer = only(out, "buffer", "tag,time");
    let keys: Vec<&str> = buffer.attrs.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "@type",
            "path",
            "flush_interval",
            "chunk_limit_size",
            "retry_max_interval",
            "overflow_action",
            "timekey"
        ]
    );
    assert!(
        buffer
            .attr("@type")
            .is_some_and(|a| a.location.file.ends_with("common/buffer.conf"))
    );
    assert_eq!(buffer.type_name(), Some("file"));
}

#[test]
fn td_agent_dump_json() {
    let root = nagare_config::parse_file_with(&fixture("td-agent/td-agent.conf"), &env())
        .expect("parses")
        .root;
    let json = nagare_config::dump_json(&root);
    assert_eq!(json["name"], "ROOT");
    assert_eq!(
        json["elements"][0]["attrs"]["root_dir"],
        "/var/lib/td-agent"
    );
    assert_eq!(
        json["elements"][2]["elements"][0]["attrs"]["types"],
        r#"{"status":"integer","latency":"float"}"#
    );
    assert_eq!(
        json["elements"][3]["elements"][0]["attrs"]["body_size_limit"],
        "32m"
    );
}

#[test]
fn use_nil_and_use_default_in_the_tree() {
    let root = nagare_config::parse_str_with(
        "<match **>\n  @type s3\n  aws_key_id \"#{ENV['K'] || use_nil}\"\n  region \"#{ENV['R'] || use_default}\"\n</match>\n",
        Path::new("/nonexistent/x.conf"),
        &env(),
    )
    .expect("parses");
    let m = &root.elements[0];
    assert_eq!(m.attr("aws_key_id").map(|a| &a.value), Some(&Value::Nil));
    assert_eq!(m.attr("region").map(|a| &a.value), Some(&Value::UseDefault));
    let json = nagare_config::dump_json(&root);
    assert_eq!(
        json["elements"][0]["attrs"]["aws_key_id"],
        serde_json::Value::Null
    );
    assert_eq!(
        json["elements"][0]["attrs"]["region"],
        serde_json::json!({"use_default": true})
    );
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

#[test]
fn include_forms_ported_from_fluentd() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let abs4 = d.join("config_test_4.conf");
    let abs5 = d.join("config_test_5.conf");
    write(
        d,
        "config_test_1.conf",
        &format!(
            "k1 root_config\ninclude dir/config_test_2.conf  #\n@include {}\ninclude file://{}\n@include config.d/*.conf\n",
            abs4.display(),
            abs5.display()
        ),
    );
    write(
        d,
        "dir/config_test_2.conf",
        "k2 relative_path_include\n@include ../config_test_3.conf\n",
    );
    write(
        d,
        "config_test_3.conf",
        "k3 relative_include_in_included_file\n",
    );
    write(d, "config_test_4.conf", "k4 absolute_path_include\n");
    write(d, "config_test_5.conf", "k5 uri_include\n");
    write(
        d,
        "config.d/config_test_6.conf",
        "k6 wildcard_include_1\n<elem1 name>\n  include normal_parameter\n</elem1>\n",
    );
    write(d, "config.d/config_test_7.conf", "k7 wildcard_include_2\n");
    write(
        d,
        "config.d/config_test_8.conf",
        "<elem2 name>\n  @include ../dir/config_test_9.conf\n</elem2>\n",
    );
    write(
        d,
        "dir/config_test_9.conf",
        "k9 embeded\n<elem3 name>\n  nested nested_value\n  include hoge\n</elem3>\n",
    );
    write(
        d,
        "config.d/00_config_test_8.conf",
        "k8 wildcard_include_3\n<elem4 name>\n  include normal_parameter\n</elem4>\n",
    );

    let parsed =
        nagare_config::parse_file_with(&d.join("config_test_1.conf"), &env()).expect("parses");
    let c = &parsed.root;
    let keys: Vec<&str> = c.attrs.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, ["k1", "k2", "k3", "k4", "k5", "k8", "k6", "k7"]);
    assert_eq!(c.get("k3"), Some("relative_include_in_included_file"));
    assert_eq!(c.get("k5"), Some("uri_include"));
    let elem1 = only(c, "elem1", "name");
    assert_eq!(elem1.get("include"), Some("normal_parameter"));
    let elem2 = only(c, "elem2", "name");
    assert_eq!(elem2.get("k9"), Some("embeded"));
    assert!(elem2.attr("include").is_none());
    assert_eq!(only(elem2, "elem3", "name").get("include"), Some("hoge"));
    // the bare top-level `include` is deprecated
    assert_eq!(
        parsed
            .warnings
            .iter()
            .filter(|w| w.message.contains("'include' is deprecated"))
            .count(),
        2
    );
}

#[test]
fn include_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    write(d, "a.conf", "k a\n@include b.conf\n");
    write(d, "b.conf", "<x>\n  @include c/a.conf\n</x>\n");
    std::fs::create_dir_all(d.join("c")).expect("mkdir");
    write(d, "c/a.conf", "@include ../a.conf\n");
    let err = nagare_config::parse_file(&d.join("a.conf")).expect_err("cycle");
    assert_eq!(err.kind(), ErrorKind::Include);
    assert!(err.message().starts_with("include cycle:"), "{err}");
    assert!(err.location().file.ends_with("c/a.conf"), "{err}");

    write(
        d,
        "m.conf",
        "<source>\n  @type forward\n  @include missing.conf\n</source>\n",
    );
    let err = nagare_config::parse_file(&d.join("m.conf")).expect_err("missing");
    assert_eq!(
        (err.kind(), err.location().line, err.location().column),
        (ErrorKind::Include, 3, 3)
    );
    assert!(
        err.to_string()
            .contains("m.conf:3:3: include file not found"),
        "{err}"
    );

    write(d, "g.conf", "@include nothing/*.conf\n");
    let parsed =
        nagare_config::parse_file_with(&d.join("g.conf"), &env()).expect("empty glob is fine");
    assert_eq!(parsed.warnings.len(), 1);

    write(d, "s.conf", "@include \"with space.conf\"\n");
    write(d, "with space.conf", "k spaced\n");
    assert_eq!(
        nagare_config::parse_file(&d.join("s.conf"))
            .expect("parses")
            .get("k"),
        Some("spaced")
    );

    let err = nagare_config::parse_file(&d.join("absent.conf")).expect_err("no file");
    assert_eq!(err.kind(), ErrorKind::Io);
}

#[test]
fn error_in_included_file_points_into_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    write(d, "main.conf", "@include inc.conf\n");
    write(d, "inc.conf", "a 1\n<match x>\n  k \"\\q\"\n</match>\n");
    let err = nagare_config::parse_file(&d.join("main.conf")).expect_err("bad escape");
    assert!(err.location().file.ends_with("inc.conf"));
    assert_eq!((err.location().line, err.location().column), (3, 6));
    let text = err.to_string();
    assert!(
        text.contains("unexpected back-slash escape character 'q'\n  k \"\\q\"\n     ^\nhint: "),
        "{text}"
    );
}
