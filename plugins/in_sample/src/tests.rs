//! Input tests: cases ported from fluentd `test/plugin/test_in_sample.rb`, plus back-pressure
//! and shutdown. Waits are bounded and event-driven (no timing luck: rates are high enough
//! that the first slot emits at once).

use std::time::{Duration, Instant};

use nagare_plugin_sdk::rmpv::Value;
use nagare_plugin_sdk::testkit::TestKit;
use nagare_plugin_sdk::{ErrorKind, LogLevel};
use serde_json::json;

use super::*;

fn value(j: serde_json::Value) -> Value {
    nagare_formats::json::json_to_value(j)
}

const WAIT: Duration = Duration::from_secs(10);

fn config_err(text: &str) -> String {
    let kit = TestKit::new(nagare_plugin_module());
    match kit.input("sample", text) {
        Ok(_) => panic!("config {text:?} was accepted"),
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::CONFIG);
            e.message.to_string()
        }
    }
}

#[test]
fn configure() {
    assert_eq!(
        config_err(""),
        "test.conf:1: 'tag' parameter is required in <source>"
    );
    let kit = TestKit::new(nagare_plugin_module());
    for ok in [
        "tag sample",
        "tag sample\nauto_increment_key id",
        "tag sample\nrate 10",
        "tag sample\nsample {\"foo\":\"bar\"}",
        "tag sample\nsample [{\"foo\":\"bar\"}]",
        "tag sample\ndummy [{\"foo\":\"bar\"}]",
    ] {
        assert!(kit.input("sample", ok).is_ok(), "{ok}");
    }
    assert!(kit.host().logs().is_empty(), "{:?}", kit.host().logs());
    assert!(
        config_err("tag sample\nsample \"foo\"")
            .starts_with("test.conf:1: invalid value for sample: JSON::ParserError"),
    );
    assert_eq!(
        config_err("tag sample\nsample [\"foo\"]"),
        "test.conf:1: invalid value for sample: 0th element of sample, \"foo\", is not a hash"
    );
    assert_eq!(
        config_err("tag sample\nsample []"),
        "test.conf:1: invalid value for sample: the array holds no hash"
    );
    assert!(config_err("tag sample\nrate x").contains("rate"));
    assert_eq!(parse_sample("{\"a\":1}"), Ok(vec![value(json!({"a": 1}))]));
    assert_eq!(
        parse_sample("[{\"a\":1},{\"b\":2}]"),
        Ok(vec![value(json!({"a": 1})), value(json!({"b": 2}))])
    );
    let kit = TestKit::new(nagare_plugin_module());
    assert!(kit.input("sample", "tag s\nsuspend true").is_ok());
    assert_eq!(
        kit.host().messages(LogLevel::WARN),
        ["test.conf:1: 'suspend' parameter is deprecated: This parameter is ignored"]
    );
}

/// Starts `text`, waits for `n` batches, stops; returns `(tag, records)` per batch.
fn collect(type_name: &str, text: &str, n: usize) -> Vec<(String, Vec<Value>)> {
    let kit = TestKit::new(nagare_plugin_module());
    let mut input = kit.input(type_name, text).unwrap_or_else(|e| panic!("{e}"));
    input.start().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        input.emitter().wait_for_batches(n, WAIT),
        "no {n} batches in {WAIT:?}"
    );
    input.stop().unwrap_or_else(|e| panic!("{e}"));
    input
        .emitter()
        .batches()
        .into_iter()
        .map(|b| {
            let recs = b.entries().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(recs.len(), b.records as usize);
            assert_eq!(b.label, "");
            (b.tag, recs.into_iter().map(|(_, r)| r).collect())
        })
        .collect()
}

#[test]
fn emits_samples() {
    let batches = collect("sample", "tag sample\nrate 10\nsample {\"foo\":\"bar\"}", 2);
    for (tag, recs) in &batches {
        assert_eq!(tag, "sample");
        assert!(
            recs.iter().all(|r| *r == value(json!({"foo": "bar"}))),
            "{recs:?}"
        );
    }
    // the default sample, through the `dummy` alias
    let batches = collect("dummy", "tag d\nrate 10", 1);
    assert_eq!(batches[0].1[0], value(json!({"message": "sample"})));
}

#[test]
fn auto_increment_and_rotation() {
    let text = "tag sample\nrate 20\nsample [{\"x\": 1}, {\"x\": 2}, {\"x\": 3, \"id\": \"old\"}]\nauto_increment_key id";
    let batches = collect("sample", text, 3);
    let recs: Vec<Value> = batches.into_iter().flat_map(|(_, r)| r).collect();
    assert!(recs.len() >= 6, "{recs:?}");
    for (i, r) in recs.iter().enumerate() {
        let x = (i % 3) + 1;
        assert_eq!(*r, value(json!({"x": x, "id": i})), "record {i}");
    }
}

#[test]
fn size_makes_batches() {
    let batches = collect("sample", "tag s\nrate 10\nsize 3", 2);
    assert!(batches.iter().all(|(_, r)| r.len() == 3), "{batches:?}");
}

#[test]
fn back_pressure_drops_nothing_and_stop_is_prompt() {
    let kit = TestKit::new(nagare_plugin_module());
    let mut input = kit
        .input("sample", "tag s\nrate 10\nauto_increment_key id")
        .unwrap_or_else(|e| panic!("{e}"));
    input.emitter().set_full(true);
    input.start().unwrap_or_else(|e| panic!("{e}"));
    // while the buffer is full nothing gets through (and nothing is generated)
    assert!(
        !input
            .emitter()
            .wait_for_batches(1, Duration::from_millis(150))
    );
    input.emitter().set_full(false);
    assert!(input.emitter().wait_for_batches(2, WAIT));
    let first = input.emitter().batches()[0].entries().unwrap_or_default();
    assert_eq!(first[0].1, value(json!({"message": "sample", "id": 0})));
    // a full buffer again: stop must not wait for it
    input.emitter().set_full(true);
    let t = Instant::now();
    input.stop().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        t.elapsed()
    );
    assert!(
        kit.host()
            .metric("records_emitted")
            .is_some_and(|n| n >= 2.0)
    );
}

#[test]
fn stop_interrupts_the_second_wait() {
    let kit = TestKit::new(nagare_plugin_module());
    let mut input = kit
        .input("sample", "tag s\nrate 1")
        .unwrap_or_else(|e| panic!("{e}"));
    input.start().unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(20));
    let t = Instant::now();
    input.stop().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "stop took {:?}",
        t.elapsed()
    );
    // stopping twice is harmless
    input.stop().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn conformance() {
    let kit = TestKit::new(nagare_plugin_module());
    let m = kit.manifest();
    assert_eq!(m.package.as_str(), "nagare-in-sample");
    let types: Vec<String> = m.plugins.iter().map(|p| p.type_name.to_string()).collect();
    assert_eq!(types, ["sample", "dummy"]);
    let mut input = kit
        .input("sample", "tag t\nrate 50")
        .unwrap_or_else(|e| panic!("{e}"));
    input.start().unwrap_or_else(|e| panic!("{e}"));
    assert!(input.emitter().wait_for_batches(1, WAIT));
    input.stop().unwrap_or_else(|e| panic!("{e}"));
    let n = input.emitter().batches().len();
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(input.emitter().batches().len(), n, "emitted after stop");
    assert!(kit.host().logs().is_empty(), "{:?}", kit.host().logs());
}
