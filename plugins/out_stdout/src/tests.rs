//! Conformance tests through the SDK test kit (the same entry points the host uses).

use nagare_plugin_sdk::api::{ChunkFormat, ChunkRef};
use nagare_plugin_sdk::rmpv::Value;
use nagare_plugin_sdk::testkit::TestKit;
use nagare_plugin_sdk::{ChunkWriter, ErrorKind, EventTime, PluginError};

use super::*;

const T: EventTime = EventTime::new(1_795_694_400, 123_456_789); // 2026-11-26 12:00:00 UTC

fn chunk() -> ChunkWriter {
    let mut w = ChunkWriter::new();
    w.push_map(T, [("k", Value::from("v"))]);
    w.push_map(
        EventTime::new(T.sec + 1, 0),
        [
            ("n", Value::from(1)),
            ("f", Value::from(0.5)),
            ("a", Value::Array(vec![Value::Nil])),
        ],
    );
    w
}

/// Builds `@type stdout` from `config`, writes [`chunk`] tagged `app.x`, returns the output.
fn run(config: &str) -> std::result::Result<String, PluginError> {
    let kit = TestKit::new(nagare_plugin_module());
    let mut out = kit.output("stdout", config)?;
    out.start()?;
    sink::take();
    out.write("app.x", &chunk())?;
    out.stop()?;
    Ok(sink::take())
}

fn check(config: &str, expect: &str) {
    assert_eq!(
        run(config).map_err(|e| e.to_string()).as_deref(),
        Ok(expect),
        "config {config:?}"
    );
}

#[test]
fn formats() {
    let utc = "<format>\n utc true\n</format>";
    check(
        utc,
        "2026-11-26 12:00:00.123456789 +0000 app.x: {\"k\":\"v\"}\n\
         2026-11-26 12:00:01.000000000 +0000 app.x: {\"n\":1,\"f\":0.5,\"a\":[null]}\n",
    );
    check(
        "<format>\n @type stdout\n output_type hash\n timezone +09:00\n</format>",
        "2026-11-26 21:00:00.123456789 +0900 app.x: {\"k\" => \"v\"}\n\
         2026-11-26 21:00:01.000000000 +0900 app.x: {\"n\" => 1, \"f\" => 0.5, \"a\" => [nil]}\n",
    );
    check(
        "output_type hash\n<format>\n localtime false\n</format>",
        "2026-11-26 12:00:00.123456789 +0000 app.x: {\"k\" => \"v\"}\n\
         2026-11-26 12:00:01.000000000 +0000 app.x: {\"n\" => 1, \"f\" => 0.5, \"a\" => [nil]}\n",
    );
    check(
        "<format>\n @type json\n</format>",
        "{\"k\":\"v\"}\n{\"n\":1,\"f\":0.5,\"a\":[null]}\n",
    );
    check(
        "<format>\n @type hash\n</format>",
        "{\"k\" => \"v\"}\n{\"n\" => 1, \"f\" => 0.5, \"a\" => [nil]}\n",
    );
    check(
        "<format>\n @type single_value\n message_key k\n</format>",
        "v\n\n",
    );
    check(
        "<format>\n timezone Asia/Tokyo\n</format>",
        "2026-11-26 21:00:00.123456789 +0900 app.x: {\"k\":\"v\"}\n\
         2026-11-26 21:00:01.000000000 +0900 app.x: {\"n\":1,\"f\":0.5,\"a\":[null]}\n",
    );
    check(
        "<format>\n @type single_value\n message_key a\n add_newline false\n</format>",
        "[nil]",
    );
    check(
        "<format>\n @type json\n add_newline false\n</format>",
        "{\"k\":\"v\"}{\"n\":1,\"f\":0.5,\"a\":[null]}",
    );
}

#[test]
fn config_errors() {
    let err = |config: &str| run(config).err().map(|e| (e.kind, e.message.to_string()));
    assert_eq!(
        err("<format>\n @type csv\n</format>"),
        Some((
            ErrorKind::CONFIG,
            "test.conf:1: invalid value for @type: 'csv' (valid options are stdout,json,hash,single_value)".into()
        ))
    );
    assert_eq!(
        err("output_type yaml"),
        Some((
            ErrorKind::CONFIG,
            "test.conf:1: invalid value for output_type: 'yaml' (valid options are json,hash)"
                .into()
        ))
    );
    let both = err("<format>\n utc true\n localtime true\n</format>");
    assert_eq!(both.as_ref().map(|e| e.0), Some(ErrorKind::CONFIG));
    assert!(
        both.as_ref()
            .is_some_and(|e| e.1.starts_with("test.conf:1: ")
                && e.1.contains("both of utc and localtime are specified")),
        "{both:?}"
    );
    assert_eq!(
        err("<format>\n timezone Mars/Olympus\n</format>"),
        Some((
            ErrorKind::CONFIG,
            "test.conf:1: invalid value for timezone: 'Mars/Olympus' (expected an offset like +09:00 or UTC)".into()
        ))
    );
}

#[test]
fn malformed_chunk_is_unrecoverable_and_prints_nothing() -> std::result::Result<(), PluginError> {
    let kit = TestKit::new(nagare_plugin_module());
    let out = kit.output("stdout", "")?;
    sink::take();
    let mut data = chunk().as_bytes().to_vec();
    data.truncate(data.len() - 2);
    let r = out.write_chunk(ChunkRef {
        tag: "t".into(),
        chunk_id: [0xab; 16],
        records: 2,
        format: ChunkFormat::MSGPACK_STREAM,
        data: data.as_slice().into(),
        variables: Default::default(),
    });
    let e = r.err();
    assert_eq!(e.as_ref().map(|e| e.kind), Some(ErrorKind::UNRECOVERABLE));
    let msg = e.map(|e| e.message.to_string()).unwrap_or_default();
    assert!(
        msg.starts_with(
            "stdout: chunk abababababababababababababababab (tag t): truncated entry at byte"
        ),
        "{msg}"
    );
    assert_eq!(sink::take(), "");
    Ok(())
}

#[test]
fn gzip_chunks_are_printed() -> std::result::Result<(), PluginError> {
    let kit = TestKit::new(nagare_plugin_module());
    let out = kit.output("stdout", "<format>\n @type json\n</format>")?;
    sink::take();
    let gz = nagare_plugin_sdk::chunk::gzip(chunk().as_bytes());
    out.write_bytes("t", &gz, 2, ChunkFormat::MSGPACK_STREAM_GZIP)?;
    assert_eq!(
        sink::take(),
        "{\"k\":\"v\"}\n{\"n\":1,\"f\":0.5,\"a\":[null]}\n"
    );
    Ok(())
}

/// The default local-time path, run in a child process with a fixed `TZ` (setting `TZ` in
/// this multi-threaded test process would race with other tests).
#[test]
fn default_format_uses_local_time_from_tz() {
    if let Ok(expect) = std::env::var("NAGARE_STDOUT_EXPECT") {
        // Child: TZ is already set by the parent.
        let got = run("").unwrap_or_else(|e| e.to_string());
        assert_eq!(got.lines().next(), Some(expect.as_str()));
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    for (tz, expect) in [
        (
            "UTC",
            "2026-11-26 12:00:00.123456789 +0000 app.x: {\"k\":\"v\"}",
        ),
        (
            "JST-9",
            "2026-11-26 21:00:00.123456789 +0900 app.x: {\"k\":\"v\"}",
        ),
    ] {
        let status = std::process::Command::new(&exe)
            .args([
                "--exact",
                "tests::default_format_uses_local_time_from_tz",
                "--test-threads=1",
            ])
            .env("TZ", tz)
            .env("NAGARE_STDOUT_EXPECT", expect)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        assert!(
            status.map(|s| s.success()).unwrap_or(false),
            "child with TZ={tz} failed"
        );
    }
}

/// A file buffer's chunk lent as ranges of its file prints like the same chunk lent as
/// bytes; a file shorter than its ranges is a retryable error that prints nothing.
#[test]
fn file_range_chunks_are_printed() -> std::result::Result<(), PluginError> {
    use std::io::Write as _;
    let kit = TestKit::new(nagare_plugin_module());
    let out = kit.output("stdout", "<format>\n @type json\n</format>")?;
    assert_eq!(
        out.control(nagare_plugin_sdk::api::CHUNK_FORMATS_OP, &[])?,
        vec![0x93, 0, 1, 2]
    );
    // The two entries in two frames, each after a junk header.
    let w = chunk();
    let bytes = w.as_bytes();
    let mut one = ChunkWriter::new();
    one.push_map(T, [("k", Value::from("v"))]);
    let first = one.as_bytes().len();
    assert!(bytes.starts_with(one.as_bytes()) && first < bytes.len());
    let mut file = tempfile::tempfile().expect("temp file");
    let mut ranges = Vec::new();
    let mut at = 0u64;
    for piece in [&bytes[..first], &bytes[first..]] {
        file.write_all(&[0xc1; 24]).expect("write");
        at += 24;
        ranges.push((at, piece.len() as u64));
        file.write_all(piece).expect("write");
        at += piece.len() as u64;
    }
    sink::take();
    out.write_file_ranges("t", [0; 16], &file, &ranges, 2)?;
    assert_eq!(
        sink::take(),
        "{\"k\":\"v\"}\n{\"n\":1,\"f\":0.5,\"a\":[null]}\n"
    );
    ranges.push((at - 2, 10));
    let e = out
        .write_file_ranges("t", [0; 16], &file, &ranges, 3)
        .expect_err("past the end of the file");
    assert_eq!(e.kind, ErrorKind::RETRYABLE, "{e}");
    assert_eq!(sink::take(), "");
    Ok(())
}
