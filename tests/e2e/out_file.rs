//! out_file and out_secondary_file end to end: raw PackedForward bytes into in_forward (with
//! an ack, so the events are buffered before the test goes on), the host's buffer keyed by
//! `tag,time` with `timekey 1d`, and the exact file names and lines on disk. A tag that would
//! escape the output directory is refused by out_file (unrecoverable) and dumped by
//! `<secondary> @type secondary_file` as the chunk's msgpack.

use std::path::Path;

use crate::harness::{self, Nagare};
use rmpv::Value;

/// 2011-01-02 13:14:15 UTC and 2011-01-03 14:15:16 UTC.
const T1: u32 = 1_293_974_055;
const T2: u32 = 1_294_064_116;

/// One Forward entry `[EventTime, {"a": n}]`.
fn entry(out: &mut Vec<u8>, t: u32, n: i64) {
    let mut time = t.to_be_bytes().to_vec();
    time.extend_from_slice(&0u32.to_be_bytes());
    let v = Value::Array(vec![
        Value::Ext(0, time),
        Value::Map(vec![(Value::from("a"), Value::from(n))]),
    ]);
    rmpv::encode::write_value(out, &v).expect("encode entry");
}

/// PackedForward `[tag, entries, {"chunk": id}]`.
fn packed_forward(tag: &str, entries: &[u8], chunk: &str) -> Vec<u8> {
    let v = Value::Array(vec![
        Value::from(tag),
        Value::Binary(entries.to_vec()),
        Value::Map(vec![(Value::from("chunk"), Value::from(chunk))]),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &v).expect("encode message");
    out
}

/// Sends one PackedForward message and checks the ack.
fn send(port: u16, tag: &str, entries: &[u8], chunk: &str) {
    let mut s = harness::connect(port);
    let reply = harness::request(&mut s, &packed_forward(tag, entries, chunk));
    let v = rmpv::decode::read_value(&mut reply.as_slice()).expect("ack is msgpack");
    assert_eq!(
        v,
        Value::Map(vec![(Value::from("ack"), Value::from(chunk))]),
        "ack"
    );
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if let Ok(rel) = p.strip_prefix(base) {
                out.push(rel.display().to_string());
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// Starts nagare with a forward source on a free port followed by `matches` (`{dir}` is the
/// run's directory), and waits for the port.
fn start(matches: &str) -> (Nagare, u16) {
    let port = harness::free_port();
    let mut n = Nagare::start(&format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n</source>\n{matches}"
    ));
    n.wait_port(port);
    (n, port)
}

/// Waits until `dir` holds at least `count` files; returns them (see [`files`]).
fn wait_files(n: &mut Nagare, dir: &Path, count: usize) -> Vec<String> {
    n.wait_for(
        || {
            let f = files(dir);
            (f.len() >= count).then_some(f)
        },
        &format!("{count} output file(s)"),
    )
}

#[test]
fn forward_to_time_sliced_files() {
    let (mut n, port) = start(
        r#"
<match app.**>
  @type file
  path {dir}/out/${tag}/access
  <format>
    utc true
  </format>
  <buffer tag,time>
    @type memory
    timekey 1d
    timekey_use_utc true
    flush_mode interval
    flush_interval 1s
  </buffer>
</match>
"#,
    );
    let mut entries = Vec::new();
    entry(&mut entries, T1, 1);
    entry(&mut entries, T2, 2);
    entry(&mut entries, T1, 3);
    send(port, "app.web", &entries, "c1");
    let mut other = Vec::new();
    entry(&mut other, T1, 4);
    send(port, "app.db", &other, "c2");

    let out = n.dir.path().join("out");
    let expect = [
        "app.db/access.20110102_0.log",
        "app.web/access.20110102_0.log",
        "app.web/access.20110103_0.log",
    ];
    let got = wait_files(&mut n, &out, expect.len());
    assert_eq!(got, expect);
    let read = |rel: &str| std::fs::read_to_string(out.join(rel)).unwrap_or_default();
    assert_eq!(
        read("app.web/access.20110102_0.log"),
        "2011-01-02T13:14:15Z\tapp.web\t{\"a\":1}\n2011-01-02T13:14:15Z\tapp.web\t{\"a\":3}\n"
    );
    assert_eq!(
        read("app.web/access.20110103_0.log"),
        "2011-01-03T14:15:16Z\tapp.web\t{\"a\":2}\n"
    );
    assert_eq!(
        read("app.db/access.20110102_0.log"),
        "2011-01-02T13:14:15Z\tapp.db\t{\"a\":4}\n"
    );
    assert_eq!(n.stop(), 0, "stderr:\n{}", n.stderr());
}

#[test]
fn a_named_timekey_zone_slices_at_local_midnight_with_daylight_saving() {
    let (mut n, port) = start(
        r#"
<match app.**>
  @type file
  path {dir}/out/ny
  append true
  <buffer time>
    @type memory
    timekey 1d
    timekey_zone America/New_York
    flush_mode interval
    flush_interval 1s
  </buffer>
</match>
"#,
    );
    let mut entries = Vec::new();
    // 2011-01-02 13:14:15 UTC: 08:14 EST, Jan 2.
    entry(&mut entries, T1, 1);
    // 2011-01-03 03:00:00 UTC: 22:00 EST, still Jan 2 in New York.
    entry(&mut entries, 1_294_023_600, 2);
    // 2011-07-01 04:30:00 UTC: 00:30 EDT, Jul 1 (a fixed -0500 would make it Jun 30).
    entry(&mut entries, 1_309_494_600, 3);
    send(port, "app.web", &entries, "c1");
    let out = n.dir.path().join("out");
    let expect = ["ny.20110102.log", "ny.20110701.log"];
    let got = wait_files(&mut n, &out, expect.len());
    assert_eq!(got, expect);
    let lines = |rel: &str| {
        std::fs::read_to_string(out.join(rel))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!((lines(expect[0]), lines(expect[1])), (2, 1));
    assert_eq!(n.stop(), 0, "stderr:\n{}", n.stderr());
}

#[test]
fn escaping_tag_goes_to_secondary_file() {
    let (mut n, port) = start(
        r#"
<match **>
  @type file
  path {dir}/out/${tag}/access
  append true
  <buffer tag>
    @type memory
    flush_mode interval
    flush_interval 1s
  </buffer>
  <secondary>
    @type secondary_file
    directory {dir}/dump
    basename failed.${chunk_id}
  </secondary>
</match>
"#,
    );
    let mut entries = Vec::new();
    entry(&mut entries, T1, 1);
    entry(&mut entries, T2, 2);
    send(port, "../escape", &entries, "c1");
    send(port, "ok", &entries, "c2");

    let dump = n.dir.path().join("dump");
    let got = n.wait_for(
        || {
            let f = files(&dump);
            (!f.is_empty()).then_some(f)
        },
        "a dump file",
    );
    assert_eq!(got.len(), 1, "{got:?}");
    let name = &got[0];
    assert!(
        name.starts_with("failed.")
            && name.ends_with(".0")
            && name.len() == "failed.".len() + 32 + 2,
        "{name}"
    );
    assert_eq!(
        std::fs::read(dump.join(name)).unwrap_or_default(),
        entries,
        "the dump holds the chunk's msgpack entries"
    );
    let ok = n.dir.path().join("out/ok/access.log");
    let text = n.wait_for(
        || {
            std::fs::read_to_string(&ok)
                .ok()
                .filter(|t| t.lines().count() == 2)
        },
        "the ok tag's file",
    );
    assert_eq!(text.lines().count(), 2);
    assert!(!n.dir.path().join("escape").exists());
    assert_eq!(n.stop(), 0, "stderr:\n{}", n.stderr());
}
