//! `@FLUENT_LOG` and `fluent.*`: nagare's own log lines as routable events.

use crate::harness::{Nagare, free_port};

#[test]
fn own_logs_reach_the_fluent_log_label() {
    let port = free_port();
    let mut n = Nagare::start(&format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n</source>\n\
         <match **>\n  @type null\n</match>\n\
         <label @FLUENT_LOG>\n  <match fluent.**>\n    @type stdout\n    <format>\n      @type json\n    </format>\n  </match>\n</label>\n"
    ));
    n.wait_port(port);
    let lines = n.wait_stdout_lines(1);
    let v: serde_json::Value = serde_json::from_str(&lines[0]).expect("a JSON record");
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("started")),
        "{lines:?}"
    );
    assert_eq!(n.stop(), 0);
}

#[test]
fn an_explicit_top_level_fluent_match_receives_warnings() {
    let port = free_port();
    // A request that is not an array makes in_forward warn; the warning becomes an event.
    let mut n = Nagare::start(&format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n</source>\n\
         <match fluent.warn>\n  @type stdout\n</match>\n<match **>\n  @type null\n</match>\n"
    ));
    n.wait_port(port);
    let mut s = crate::harness::connect(port);
    use std::io::Write;
    s.write_all(&[0x01]).expect("write a bare integer request");
    let lines = n.wait_stdout_lines(1);
    assert!(lines[0].contains("fluent.warn: {"), "{lines:?}");
    assert!(
        !n.stdout().contains("fluent.info"),
        "only the matched level is routed"
    );
    assert_eq!(n.stop(), 0);
}

#[test]
fn a_catch_all_match_does_not_echo_the_collectors_own_lines() {
    let port = free_port();
    let mut n = Nagare::start(&format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n</source>\n<match **>\n  @type stdout\n</match>\n"
    ));
    n.wait_port(port);
    n.wait_stderr("started");
    assert_eq!(n.stop(), 0);
    assert!(!n.stdout().contains("fluent."), "{}", n.stdout());
}
