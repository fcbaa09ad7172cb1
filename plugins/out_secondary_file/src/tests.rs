//! Conformance tests through the SDK test kit, with cases ported from fluentd
//! `test/plugin/test_out_secondary_file.rb` (written for `directory`/`basename`).

use std::io::Read as _;

use abi_stable::std_types::{RStr, Tuple2};
use nagare_plugin_sdk::api::{ChunkFormat, ChunkRef};
use nagare_plugin_sdk::rmpv::Value;
use nagare_plugin_sdk::testkit::{TestKit, TestOutput};
use nagare_plugin_sdk::{ChunkWriter, ErrorKind, EventTime, PluginError};

use super::*;

type R<T = ()> = std::result::Result<T, PluginError>;

/// 2011-01-02 13:14:15 UTC.
const T: u32 = 1_293_974_055;
const ID: u8 = 0xab;

struct Fx {
    dir: tempfile::TempDir,
    kit: TestKit,
}

fn fx() -> Fx {
    Fx {
        dir: tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")),
        kit: TestKit::new(nagare_plugin_module()),
    }
}

impl Fx {
    fn d(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// Builds `<secondary>` from `conf` (`{dir}` = the temp dir).
    fn out(&self, conf: &str) -> R<TestOutput> {
        let node = TestKit::config(
            "secondary",
            "",
            "secondary_file",
            &conf.replace("{dir}", &self.d()),
        )?;
        let mut o = self.kit.output_from("secondary_file", &node)?;
        o.start()?;
        Ok(o)
    }

    fn bytes(&self, rel: &str) -> Vec<u8> {
        let b = std::fs::read(self.dir.path().join(rel)).unwrap_or_default();
        if rel.ends_with(".gz") {
            let mut out = Vec::new();
            let _ = flate2::read::MultiGzDecoder::new(b.as_slice()).read_to_end(&mut out);
            out
        } else {
            b
        }
    }

    fn files(&self) -> Vec<String> {
        fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
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
        walk(self.dir.path(), self.dir.path(), &mut v);
        v.sort();
        v
    }
}

/// `{key: "vlaue"}` at T, as the Ruby tests' event stream.
fn es() -> ChunkWriter {
    let mut w = ChunkWriter::new();
    w.push_map(EventTime::new(T, 0), [("key", Value::from("vlaue"))]);
    w
}

fn write(out: &TestOutput, tag: &str, w: &ChunkWriter, vars: &[(&str, &str)]) -> R {
    let vars: Vec<Tuple2<RStr<'_>, RStr<'_>>> = vars
        .iter()
        .map(|(k, v)| Tuple2(RStr::from(*k), RStr::from(*v)))
        .collect();
    out.write_chunk(ChunkRef {
        tag: tag.into(),
        chunk_id: [ID; 16],
        records: w.records(),
        format: ChunkFormat::MSGPACK_STREAM,
        data: w.as_bytes().into(),
        variables: vars.as_slice().into(),
    })
}

#[test]
fn fluentd_write_cases() -> R {
    let packed = es().as_bytes().to_vec();
    // standard format, gzip and text
    for (conf, name) in [
        (
            "directory {dir}/out_file_test\ncompress gzip",
            "out_file_test/dump.bin.0.gz",
        ),
        ("directory {dir}/out_file_test", "out_file_test/dump.bin.0"),
    ] {
        let f = fx();
        write(&f.out(conf)?, "t", &es(), &[])?;
        assert_eq!(f.files(), [name]);
        assert_eq!(f.bytes(name), packed);
    }
    // the index increments without append
    let f = fx();
    let out = f.out("directory {dir}/out_file_test\ncompress gzip")?;
    for i in 0..5 {
        write(&out, "t", &es(), &[])?;
        assert_eq!(f.bytes(&format!("out_file_test/dump.bin.{i}.gz")), packed);
    }
    // the same file with append
    let f = fx();
    let out = f.out("directory {dir}/out_file_test\ncompress gzip\nappend true")?;
    for i in 1..=5 {
        write(&out, "t", &es(), &[])?;
        assert_eq!(f.files(), ["out_file_test/dump.bin.gz"]);
        assert_eq!(f.bytes("out_file_test/dump.bin.gz"), packed.repeat(i));
    }
    Ok(())
}

#[test]
fn fluentd_path_cases() -> R {
    let hex = "ab".repeat(16);
    for (conf, tag, vars, name) in [
        (
            "basename cool_${tag}",
            "test.dummy",
            &[][..],
            "cool_test.dummy.0".to_owned(),
        ),
        (
            "basename cool_${tag[0]}_${tag[1]}",
            "test.dummy",
            &[],
            "cool_test_dummy.0".into(),
        ),
        (
            "basename cool_%Y%m%d",
            "t",
            &[("timekey", "1293974055")],
            "cool_20110102.0".into(),
        ),
        (
            "basename cool_${test1}",
            "t",
            &[("test1", "dummy")],
            "cool_dummy.0".into(),
        ),
        (
            "basename cool_%Y%m%d_${tag}_${test1}",
            "test.tag",
            &[("timekey", "1293974055"), ("test1", "dummy")],
            "cool_20110102_test.tag_dummy.0".into(),
        ),
        ("basename ${chunk_id}.bin", "t", &[], format!("{hex}.bin.0")),
    ] {
        let f = fx();
        let out = f.out(&format!("directory {{dir}}/out_file_test\n{conf}"))?;
        write(&out, tag, &es(), vars)?;
        assert_eq!(f.files(), [format!("out_file_test/{name}")], "{conf}");
    }
    Ok(())
}

#[test]
fn primary_buffer_validates_placeholders() {
    let f = fx();
    let err = |conf: &str| {
        f.out(conf)
            .err()
            .map(|e| (e.kind, e.message.to_string().replace(&f.d(), "D")))
    };
    let pl =
        "test.conf:1: out_secondary_file: basename or directory has an incompatible placeholder";
    for (conf, expect) in [
        (
            "directory {dir}\nbasename ${tag}\n<buffer>\n</buffer>",
            Some(format!(
                "{pl} tag, remove tag placeholder, like `${{tag}}`, from basename or directory"
            )),
        ),
        (
            "directory {dir}\nbasename ${tag[0]}\n<buffer>\n</buffer>",
            Some(format!(
                "{pl} tag[0], remove tag placeholder, like `${{tag}}`, from basename or directory"
            )),
        ),
        (
            "directory {dir}\nbasename ${dummy}\n<buffer tag>\n</buffer>",
            Some(format!(
                "{pl} dummy, remove variable placeholder, like `${{varname}}`, from basename or directory"
            )),
        ),
        (
            "directory {dir}/%Y%m%d\n<buffer tag>\n</buffer>",
            Some(format!(
                "{pl}, remove time formats, like `%Y%m%d`, from basename or directory"
            )),
        ),
        (
            "directory {dir}\nbasename a/b",
            Some("test.conf:1: basename should not include `/`".into()),
        ),
        (
            "compress gzip",
            Some("test.conf:1: 'directory' parameter is required in <secondary>".into()),
        ),
        (
            "directory {dir}\ncompress gz",
            Some(
                "test.conf:1: invalid value for compress: 'gz' (valid options are text,gzip)"
                    .into(),
            ),
        ),
        (
            "directory {dir}/%Y%m%d/${tag}\n<buffer tag,time>\n timekey 1d\n</buffer>",
            None,
        ),
    ] {
        assert_eq!(err(conf), expect.map(|m| (ErrorKind::CONFIG, m)), "{conf}");
    }
    // not writable: a regular file in the way
    std::fs::write(f.dir.path().join("file"), b"").unwrap_or_default();
    assert_eq!(
        err("directory {dir}/file/sub"),
        Some((
            ErrorKind::CONFIG,
            "test.conf:1: out_secondary_file: `D/file/sub` should be writable".into()
        ))
    );
    // only inside <secondary>
    let e = f.kit.output("secondary_file", "directory /tmp").err();
    assert_eq!(
        e.map(|e| e.message.to_string()),
        Some("test.conf:1: This plugin can only be used in the <secondary> section".into())
    );
}

#[test]
fn time_placeholders_with_primary_timekey() -> R {
    let f = fx();
    let out = f.out(
        "directory {dir}/%Y%m%d/${tag}\n<buffer tag,time>\n timekey 1h\n timekey_use_utc true\n</buffer>",
    )?;
    // no timekey variable: the first event's slice
    write(&out, "a.b", &es(), &[])?;
    write(&out, "a.b", &es(), &[("timekey", "1293926400")])?;
    assert_eq!(
        f.files(),
        ["20110102/a.b/dump.bin.0", "20110102/a.b/dump.bin.1"]
    );
    Ok(())
}

#[test]
fn escapes_are_unrecoverable_and_gzip_chunks_pass_through() -> R {
    let f = fx();
    let out = f.out("directory {dir}/${tag}\ncompress gzip")?;
    for tag in ["../x", "/abs"] {
        let e = write(&out, tag, &es(), &[]).err();
        assert_eq!(
            e.as_ref().map(|e| e.kind),
            Some(ErrorKind::UNRECOVERABLE),
            "{tag}"
        );
        assert!(f.files().is_empty());
    }
    let gz = nagare_plugin_sdk::chunk::gzip(es().as_bytes());
    out.write_bytes("ok", &gz, 1, ChunkFormat::MSGPACK_STREAM_GZIP)?;
    assert_eq!(f.bytes("ok/dump.bin.0.gz"), es().as_bytes());
    let host = f.kit.host();
    assert_eq!(host.metric("chunks"), Some(1.0));
    assert_eq!(host.metric("errors"), Some(2.0));
    Ok(())
}

#[test]
fn placeholder_scan() {
    for (s, expect) in [
        (
            "/d/${tag}/${tag[1]}/${a.b-c@d}/${$.x}/${}",
            &["tag", "tag[1]", "a.b-c@d"][..],
        ),
        ("${chunk_id}x${", &["chunk_id"]),
        ("plain", &[]),
    ] {
        assert_eq!(placeholders(s), expect, "{s}");
    }
    assert!(has_time_format("/d/%Y"));
    assert!(!has_time_format("/d/plain"));
}
