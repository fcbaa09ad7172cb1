//! The command line: `--version`, `--dump-config`, `--dry-run`, `route`, exit codes.

use crate::harness::{self, run};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> PathBuf {
    harness::workspace().join("tests/e2e/fixtures").join(name)
}

fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(harness::bin());
    c.args(args)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run nagare")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write_conf(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("fluent.conf");
    std::fs::write(&p, body).expect("write config");
    p
}

#[test]
fn version_and_usage_errors() {
    let d = harness::tempdir();
    let out = run(&["--version"], d.path());
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).starts_with("nagare "),
        "{}",
        text(&out.stdout)
    );

    let out = run(&["--no-such-flag"], d.path());
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");

    let out = run(&["route"], d.path());
    assert_eq!(
        out.status.code(),
        Some(2),
        "route without a tag is a usage error"
    );
}

#[test]
fn dump_config_resolves_includes_and_env() {
    let conf = fixture("td-agent/td-agent.conf");
    let out = run_env(
        &["--dump-config", "-c", conf.to_str().expect("utf-8 path")],
        &[
            ("NAGARE_TEST_PORT", "25000"),
            ("NAGARE_TEST_ROOT", "/var/x"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["name"], "ROOT");
    assert_eq!(v["arg"], "");
    let elements = v["elements"].as_array().expect("elements");
    let names: Vec<&str> = elements.iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(
        names,
        vec![
            "system", "source", "source", "filter", "filter", "label", "match", "label", "match"
        ],
        "includes are spliced in place, in sorted glob order"
    );
    assert_eq!(elements[0]["attrs"]["root_dir"], "/var/x");
    assert_eq!(elements[1]["attrs"]["port"], "25000");
    assert_eq!(elements[1]["attrs"]["@type"], "forward");
    assert_eq!(elements[2]["attrs"]["@label"], "@AUDIT");
    assert_eq!(elements[3]["arg"], "app.access");
    assert_eq!(elements[3]["elements"][0]["name"], "exclude");
    assert_eq!(
        elements[3]["elements"][0]["attrs"]["pattern"],
        "/^\\/healthz/"
    );
}

#[test]
fn dump_config_keeps_nil_default_and_json_literals() {
    let d = harness::tempdir();
    let conf = write_conf(
        d.path(),
        "<source>\n  @type sample\n  sample {\"a\": 1,\n   \"b\": [1, 2]}\n  tag \"#{use_nil}\"\n  rate \"#{use_default}\"\n</source>\n",
    );
    let out = run(
        &["--dump-config", "-c", conf.to_str().expect("path")],
        d.path(),
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let attrs = &v["elements"][0]["attrs"];
    assert_eq!(attrs["sample"], "{\"a\":1,\"b\":[1,2]}");
    assert!(attrs["tag"].is_null());
    assert_eq!(attrs["rate"], serde_json::json!({"use_default": true}));
}

#[test]
fn syntax_errors_are_located_with_a_caret_and_a_hint() {
    let d = harness::tempdir();
    let conf = write_conf(
        d.path(),
        "<source>\n  @type forward\n</source>\n<match app.**>\n  @type stdout\n</matc>\n",
    );
    let out = run(&["--dry-run", "-c", conf.to_str().expect("path")], d.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("fluent.conf:6:"), "{err}");
    assert!(
        err.contains("</matc>"),
        "the offending line is quoted: {err}"
    );
    assert!(err.contains('^'), "a caret points at the column: {err}");
    assert!(err.to_lowercase().contains("hint"), "{err}");
}

#[test]
fn unsupported_embedded_ruby_is_an_error_quoting_the_expression() {
    let d = harness::tempdir();
    let conf = write_conf(
        d.path(),
        "<source>\n  @type forward\n  port \"#{1 + 1}\"\n</source>\n<match **>\n  @type null\n</match>\n",
    );
    let out = run(&["--dry-run", "-c", conf.to_str().expect("path")], d.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("1 + 1"), "{err}");
    assert!(err.contains("fluent.conf:3:"), "{err}");
}

#[test]
fn missing_type_and_duplicate_label_use_fluentds_messages() {
    let d = harness::tempdir();
    let conf = write_conf(d.path(), "<source>\n  port 1\n</source>\n");
    let out = run(&["--dry-run", "-c", conf.to_str().expect("path")], d.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Missing '@type' parameter on <source> directive"),
        "{}",
        text(&out.stderr)
    );

    let conf = write_conf(
        d.path(),
        "<label @A>\n  <match **>\n    @type null\n  </match>\n</label>\n<label @A>\n  <match **>\n    @type null\n  </match>\n</label>\n",
    );
    let out = run(&["--dry-run", "-c", conf.to_str().expect("path")], d.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Section <label @A> appears twice"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn dry_run_rejects_an_unknown_plugin_type() {
    let d = harness::tempdir();
    let conf = write_conf(
        d.path(),
        "<source>\n  @type forward\n  port 0\n</source>\n<match **>\n  @type no_such_output\n</match>\n",
    );
    let out = run(&["--dry-run", "-c", conf.to_str().expect("path")], d.path());
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no_such_output"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn dry_run_accepts_a_valid_config() {
    let d = harness::tempdir();
    let conf = write_conf(
        d.path(),
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port 24224\n</source>\n<match **>\n  @type stdout\n</match>\n",
    );
    let out = run(&["--dry-run", "-c", conf.to_str().expect("path")], d.path());
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
}

#[test]
fn route_shows_filters_then_the_match() {
    let conf = fixture("td-agent/td-agent.conf");
    let c = conf.to_str().expect("path");
    let out = run_env(&["route", "--json", "-c", c, "app.access"], &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["tag"], "app.access");
    let steps = v["steps"].as_array().expect("steps");
    let summary: Vec<(String, String)> = steps
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap_or("?").to_string(),
                s["id"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    let expect: Vec<(String, String)> = [
        ("filter", "drop_health"),
        ("filter", "add_host"),
        ("match", "-"),
        ("store", "app_stdout"),
        ("store", "app_null"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(summary, expect);
    assert_eq!(steps[0]["pattern"], "app.access");
    assert_eq!(steps[0]["type"], "grep");
    assert_eq!(steps[2]["type"], "copy");

    // A tag the filters do not match goes straight to the catch-all.
    let out = run_env(&["route", "--json", "-c", c, "system.disk"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let steps = v["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0]["id"], "catch_all");

    // Inside a label.
    let out = run_env(&["route", "--json", "--label", "@AUDIT", "-c", c, "x"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let ids: Vec<&str> = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["audit_only_writes", "audit_out"]);

    // The text form names the same steps.
    let out = run_env(&["route", "-c", c, "app.access"], &[]);
    let t = text(&out.stdout);
    assert!(t.contains("drop_health") && t.contains("app_stdout"), "{t}");
}

/// Every real-world config either loads (`--dump-config` exits 0) or fails with a located
/// error (exit 1, "file:line"); none crashes or hangs.
#[test]
fn real_configs_load_or_fail_with_a_located_error() {
    let Some(dir) = harness::real_configs() else {
        eprintln!("skipping: ../shared/testdata/real-configs is not present");
        return;
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read real-configs")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let (mut ok, mut failed) = (0, 0);
    for p in entries {
        let conf = if p.is_dir() {
            match main_file(&p) {
                Some(f) => f,
                None => continue,
            }
        } else if p.extension().is_some_and(|e| e == "conf") {
            p.clone()
        } else {
            continue;
        };
        let out = run(&["--dump-config", "-c", conf.to_str().expect("path")], &dir);
        match out.status.code() {
            Some(0) => ok += 1,
            Some(1) => {
                failed += 1;
                let err = text(&out.stderr);
                let name = conf.file_name().and_then(|n| n.to_str()).unwrap_or("");
                assert!(
                    err.contains(&format!("{name}:")) || err.contains(".conf:"),
                    "{}: the error must name file:line:\n{err}",
                    conf.display()
                );
            }
            other => panic!(
                "{}: exit {other:?} (crash?)\n{}",
                conf.display(),
                text(&out.stderr)
            ),
        }
    }
    eprintln!("real configs: {ok} loaded, {failed} rejected with a located error");
    assert!(ok >= 45, "most real configs must load ({ok} did)");
}

/// The entry file of an `*-include-dir` example.
fn main_file(dir: &Path) -> Option<PathBuf> {
    for name in ["fluent.conf", "td-agent.conf", "fluentd.conf", "main.conf"] {
        let p = dir.join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    let mut confs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    confs.sort();
    confs.into_iter().next()
}
