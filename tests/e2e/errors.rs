//! What happens to events a filter rejects when the configuration has no `@ERROR` label.

use crate::harness::{self, Nagare, free_port};

/// A Message request with an ack id, built by hand: `["app.log", 1764158400, {"log": …}, {"chunk": id}]`.
fn message_with_ack(log: &str, id: &str) -> Vec<u8> {
    let mut m = vec![0x94, 0xa7];
    m.extend_from_slice(b"app.log");
    m.extend_from_slice(&[0xce, 0x69, 0x26, 0x6b, 0x40]);
    m.extend_from_slice(&[0x81, 0xa3]);
    m.extend_from_slice(b"log");
    m.push(0xa0 | log.len() as u8);
    m.extend_from_slice(log.as_bytes());
    m.extend_from_slice(&[0x81, 0xa5]);
    m.extend_from_slice(b"chunk");
    m.push(0xa0 | id.len() as u8);
    m.extend_from_slice(id.as_bytes());
    m
}

/// Fluentd logs "dump an error event" and drops the events; the sender still gets its ack
/// (resending would fail the same way forever), and good events keep flowing.
#[test]
fn unparsable_records_without_error_label_are_dropped_and_acked() {
    let port = free_port();
    let mut n = Nagare::start(&format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n</source>\n\
         <filter app.**>\n  @type parser\n  key_name log\n  <parse>\n    @type json\n  </parse>\n</filter>\n\
         <match app.**>\n  @type stdout\n</match>\n"
    ));
    n.wait_port(port);
    let mut s = harness::connect(port);
    let reply = harness::request(&mut s, &message_with_ack("not json", "bad1"));
    assert!(
        reply.windows(4).any(|w| w == b"bad1"),
        "the bad event is acked, not retried forever: {reply:?}"
    );
    let reply = harness::request(&mut s, &message_with_ack("{\"k\":1}", "good"));
    assert!(reply.windows(4).any(|w| w == b"good"), "{reply:?}");
    let lines = n.wait_stdout_lines(1);
    assert!(lines[0].ends_with("app.log: {\"k\":1}"), "{lines:?}");
    assert!(
        n.stderr().contains("dropped 1 events tagged 'app.log'"),
        "{}",
        n.stderr()
    );
    assert_eq!(n.stop(), 0);
}

/// The host hands `<secondary>` the primary's `<buffer>`, so a placeholder the primary's chunk
/// keys cannot fill is refused when the config loads (Fluentd's start-up check).
#[test]
fn secondary_placeholders_are_checked_against_the_primary_chunk_keys() {
    let d = harness::tempdir();
    let conf = |keys: &str, path: &str| {
        format!(
            "<source>\n  @type forward\n  port 0\n</source>\n<match **>\n  @type file\n  path {dir}/out/{path}\n\
             <buffer {keys}>\n    timekey 1h\n    path {dir}/buf\n  </buffer>\n\
             <secondary>\n    @type secondary_file\n    directory {dir}/dump\n    basename ${{tag}}\n  </secondary>\n</match>\n",
            dir = d.path().display()
        )
    };
    let path = d.path().join("fluent.conf");
    std::fs::write(&path, conf("time", "all")).expect("write config");
    let out = harness::run(&["--dry-run", "-c", path.to_str().expect("path")], d.path());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("incompatible placeholder tag"), "{err}");

    std::fs::write(&path, conf("tag,time", "${tag}")).expect("write config");
    let out = harness::run(&["--dry-run", "-c", path.to_str().expect("path")], d.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
