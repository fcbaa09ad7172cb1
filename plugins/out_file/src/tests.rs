//! Conformance tests through the SDK test kit (the host's entry points), with cases ported
//! from fluentd `test/plugin/test_out_file.rb`: exact file names and contents.

use std::io::Read as _;
use std::path::Path;

use abi_stable::std_types::{RStr, Tuple2};
use nagare_plugin_sdk::api::{ChunkFormat, ChunkRef};
use nagare_plugin_sdk::rmpv::Value;
use nagare_plugin_sdk::testkit::{TestKit, TestOutput};
use nagare_plugin_sdk::{ChunkWriter, ErrorKind, EventTime, PluginError};

use super::*;

type R<T = ()> = std::result::Result<T, PluginError>;

/// 2011-01-02 13:14:15 UTC, the time of most Fluentd cases.
const T: u32 = 1_293_974_055;
/// Its day slice (2011-01-02 00:00:00 UTC).
const DAY: &str = "1293926400";
const LINES: &str =
    "2011-01-02T13:14:15Z\ttest\t{\"a\":1}\n2011-01-02T13:14:15Z\ttest\t{\"a\":2}\n";

/// `CONFIG` of the Ruby tests, with `{dir}` for the temp dir.
const CONFIG: &str =
    "path {dir}/out_file_test\ncompress gz\nutc\n<buffer>\n timekey_use_utc true\n</buffer>";

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

    fn out(&self, conf: &str) -> R<TestOutput> {
        let mut o = self.kit.output("file", &conf.replace("{dir}", &self.d()))?;
        o.start()?;
        Ok(o)
    }

    fn read(&self, rel: &str) -> String {
        let p = self.dir.path().join(rel);
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        if rel.ends_with(".gz") {
            let mut s = String::new();
            flate2::read::MultiGzDecoder::new(bytes.as_slice())
                .read_to_string(&mut s)
                .unwrap_or_else(|e| panic!("gunzip {rel}: {e}"));
            s
        } else if rel.ends_with(".zst") {
            String::from_utf8_lossy(&zstd::decode_all(bytes.as_slice()).unwrap_or_default())
                .into_owned()
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }

    /// Every file under the temp dir, relative, sorted.
    fn files(&self) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() && !p.is_symlink() {
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

fn entries(list: &[(u32, &[(&str, Value)])]) -> ChunkWriter {
    let mut w = ChunkWriter::new();
    for (t, fields) in list {
        w.push_map(EventTime::new(*t, 0), fields.iter().cloned());
    }
    w
}

/// The two-event chunk of most Ruby cases.
fn a12() -> ChunkWriter {
    entries(&[(T, &[("a", Value::from(1))]), (T, &[("a", Value::from(2))])])
}

/// Writes `w` as a buffered chunk: tag, id and chunk-key variables as the host passes them.
fn write(out: &TestOutput, tag: &str, w: &ChunkWriter, vars: &[(&str, &str)], id: u8) -> R {
    let vars: Vec<Tuple2<RStr<'_>, RStr<'_>>> = vars
        .iter()
        .map(|(k, v)| Tuple2(RStr::from(*k), RStr::from(*v)))
        .collect();
    out.write_chunk(ChunkRef {
        tag: tag.into(),
        chunk_id: [id; 16],
        records: w.records(),
        format: ChunkFormat::MSGPACK_STREAM,
        data: w.as_bytes().into(),
        variables: vars.as_slice().into(),
    })
}

#[test]
fn fluentd_write_basic_case() -> R {
    // With the host's timekey variable, and without it (the plugin derives it).
    for vars in [&[("timekey", DAY)][..], &[]] {
        let f = fx();
        let out = f.out(CONFIG)?;
        write(&out, "test", &a12(), vars, 1)?;
        assert_eq!(f.files(), ["out_file_test.20110102_0.log.gz"]);
        assert_eq!(f.read("out_file_test.20110102_0.log.gz"), LINES);
    }
    Ok(())
}

#[test]
fn fluentd_path_with_index_number() -> R {
    let f = fx();
    for i in 0..3 {
        let out = f.out(CONFIG)?;
        write(&out, "test", &a12(), &[("timekey", DAY)], 1)?;
        let name = format!("out_file_test.20110102_{i}.log.gz");
        assert_eq!(f.read(&name), LINES);
        assert_eq!(f.files().len(), i + 1);
    }
    Ok(())
}

#[test]
fn fluentd_append_with_and_without_compression() -> R {
    for (compress, name) in [
        ("compress gz", "out_file_test.20110102.log.gz"),
        ("", "out_file_test.20110102.log"),
        ("compress zstd", "out_file_test.20110102.log.zst"),
    ] {
        let f = fx();
        let conf = format!(
            "path {{dir}}/out_file_test\nutc\nappend true\n{compress}\n<buffer>\n timekey_use_utc true\n</buffer>"
        );
        for i in 1..=3 {
            let out = f.out(&conf)?;
            write(&out, "test", &a12(), &[("timekey", DAY)], 1)?;
            assert_eq!(f.files(), [name]);
            assert_eq!(f.read(name), LINES.repeat(i), "{name} after {i} writes");
        }
    }
    Ok(())
}

#[test]
fn fluentd_append_with_timekey_zone() -> R {
    // 'append when UTC-02 but timekey_zone is +0900': 2011-01-02 17:14:15+02:00 is the
    // 2011-01-03 slice in +09:00.
    let f = fx();
    let conf = "path {dir}/out_file_test\ncompress gz\nappend true\n<format>\n timezone +02:00\n time_format %Y-%m-%dT%H:%M:%S%:z\n</format>\n<buffer>\n timekey_use_utc false\n timekey_zone +0900\n</buffer>";
    let t = 1_293_981_255; // 2011-01-02 15:14:15 UTC
    let w = entries(&[(t, &[("a", Value::from(1))])]);
    for _ in 0..2 {
        write(&f.out(conf)?, "test", &w, &[], 1)?;
    }
    let line = "2011-01-02T17:14:15+02:00\ttest\t{\"a\":1}\n";
    assert_eq!(f.read("out_file_test.20110103.log.gz"), line.repeat(2));
    Ok(())
}

#[test]
fn fluentd_format_cases() -> R {
    let t = T.to_string();
    for (extra, expect) in [
        // 'format specified': json + include_time_key + time_as_epoch
        (
            "format json\ninclude_time_key true\ntime_as_epoch".to_owned(),
            format!("{{\"a\":1,\"time\":{t}}}\n{{\"a\":2,\"time\":{t}}}\n"),
        ),
        (
            "format ltsv\ninclude_time_key true".to_owned(),
            "a:1\ttime:2011-01-02T13:14:15Z\na:2\ttime:2011-01-02T13:14:15Z\n".to_owned(),
        ),
        (
            "format single_value\nmessage_key a".to_owned(),
            "1\n2\n".to_owned(),
        ),
        // sections, every formatter of nagare-formats
        (
            "<format>\n @type csv\n fields a\n</format>".to_owned(),
            "\"1\"\n\"2\"\n".to_owned(),
        ),
        (
            "<format>\n @type tsv\n keys a\n</format>".to_owned(),
            "1\n2\n".to_owned(),
        ),
        (
            "<format>\n @type hash\n</format>".to_owned(),
            // nagare-formats renders Ruby 3.4's Hash#inspect
            "{\"a\" => 1}\n{\"a\" => 2}\n".to_owned(),
        ),
        (
            "<format>\n @type out_file\n output_tag false\n delimiter SPACE\n utc true\n</format>"
                .to_owned(),
            "2011-01-02T13:14:15Z {\"a\":1}\n2011-01-02T13:14:15Z {\"a\":2}\n".to_owned(),
        ),
        (
            "<inject>\n tag_key t\n</inject>\n<format>\n @type json\n</format>".to_owned(),
            "{\"a\":1,\"t\":\"test\"}\n{\"a\":2,\"t\":\"test\"}\n".to_owned(),
        ),
    ] {
        let f = fx();
        let out = f.out(&format!("{CONFIG}\n{extra}"))?;
        write(&out, "test", &a12(), &[("timekey", DAY)], 1)?;
        assert_eq!(f.read("out_file_test.20110102_0.log.gz"), expect, "{extra}");
        // sections and v0.12 params are all consumed: no "not used" warnings
        assert_eq!(f.kit.host().logs(), [], "{extra}");
    }
    // msgpack: the records back to back
    let f = fx();
    let out = f.out("path {dir}/m\n<format>\n @type msgpack\n</format>")?;
    write(&out, "test", &a12(), &[], 1)?;
    let bytes = std::fs::read(f.dir.path().join("m.20110102_0.log")).unwrap_or_default();
    assert_eq!(bytes, [0x81, 0xa1, b'a', 1, 0x81, 0xa1, b'a', 2]);
    Ok(())
}

#[test]
fn fluentd_timezone_cases() -> R {
    for (tz, line) in [
        ("-03:30", "2011-01-02T09:44:15-03:30\ttest\t{\"a\":1}\n"),
        (
            "Asia/Taipei",
            "2011-01-02T21:14:15+08:00\ttest\t{\"a\":1}\n",
        ),
    ] {
        let f = fx();
        let out = f.out(&format!(
            "path {{dir}}/out_file_test\ntimezone {tz}\nappend true"
        ))?;
        write(
            &out,
            "test",
            &entries(&[(T, &[("a", Value::from(1))])]),
            &[],
            1,
        )?;
        assert_eq!(f.read("out_file_test.20110102.log"), line, "{tz}");
    }
    Ok(())
}

#[test]
fn fluentd_path_cases() -> R {
    for (conf, name) in [
        (
            "path {dir}/out_file_test\ntime_slice_format %Y-%m-%d-%H\nutc true",
            "out_file_test.2011-01-02-13_0.log",
        ),
        (
            "path {dir}/out_file_test\ntime_slice_format %Y-%m-%d-%H\nutc true\nappend true",
            "out_file_test.2011-01-02-13.log",
        ),
        (
            "path {dir}/out_file_test.*.txt\ntime_slice_format %Y-%m-%d-%H\nutc true",
            "out_file_test.2011-01-02-13_0.txt",
        ),
        (
            "path {dir}/out_file_test.*.txt\ntime_slice_format %Y-%m-%d-%H\nutc true\nappend true",
            "out_file_test.2011-01-02-13.txt",
        ),
        (
            "path {dir}/x\nadd_path_suffix false\n<buffer>\n timekey 1h\n timekey_use_utc true\n</buffer>",
            "x.2011010213_0",
        ),
        (
            "path {dir}/x\npath_suffix .txt\n<buffer>\n timekey 60\n timekey_use_utc true\n</buffer>",
            "x.201101021314_0.txt",
        ),
        (
            "path {dir}/%Y/%m/x.%d\nappend true\n<buffer>\n timekey_use_utc true\n</buffer>",
            "2011/01/x.02.log",
        ),
        (
            "path {dir}/x.${tag}\nappend true\n<buffer tag>\n</buffer>",
            "x.test.log",
        ),
    ] {
        let f = fx();
        let out = f.out(conf)?;
        write(
            &out,
            "test",
            &entries(&[(T, &[("a", Value::from(1))])]),
            &[],
            1,
        )?;
        assert_eq!(f.files(), [name], "{conf}");
    }
    Ok(())
}

#[test]
fn fluentd_fully_configured_output() -> R {
    // One chunk holding both tags' events is split by (time, tag, type) like Fluentd's
    // buffer would have; then the same events as keyed chunks, appended to the same files.
    let f = fx();
    let conf = r#"path {dir}/${tag}/${type}/full.%Y%m%d.%H%M.log
add_path_suffix false
append true
symlink_path {dir}/full.current.log
compress gzip
recompress true
<inject>
 hostname_key hostname
 hostname testing.local
 tag_key tag
 time_key time
 time_type string
 time_format %Y/%m/%d %H:%M:%S %z
 timezone +0900
</inject>
<format>
 @type out_file
 include_tag true
 include_time true
 delimiter COMMA
 time_type string
 time_format %Y-%m-%d %H:%M:%S %z
 utc true
</format>
<buffer time,tag,type>
 @type file
 timekey 15m
 timekey_wait 5s
 timekey_zone +0000
 path /nonexistent/buf_full
 chunk_limit_size 50m
 total_limit_size 1g
 compress gzip
</buffer>"#;
    let out = f.out(conf)?;
    let rec = |_: &str| -> Vec<(&str, Value)> {
        vec![
            ("type", Value::from("a")),
            ("message", Value::from("data raw content")),
        ]
    };
    let times = [
        1_475_539_089,
        1_475_539_173,
        1_475_539_197,
        1_475_539_217,
        1_475_539_319,
    ];
    let tags = ["my.data", "my.data", "your.data", "my.data", "your.data"];
    let line = |i: usize| {
        let local = ["08:58:09", "08:59:33", "08:59:57", "09:00:17", "09:01:59"][i];
        let utc = [
            "2016-10-03 23:58:09",
            "2016-10-03 23:59:33",
            "2016-10-03 23:59:57",
            "2016-10-04 00:00:17",
            "2016-10-04 00:01:59",
        ][i];
        format!(
            "{utc} +0000,{tag},{{\"type\":\"a\",\"message\":\"data raw content\",\"hostname\":\"testing.local\",\"tag\":\"{tag}\",\"time\":\"2016/10/04 {local} +0900\"}}\n",
            tag = tags[i]
        )
    };
    // unkeyed: one chunk per tag, events of several slices mixed
    for tag in ["my.data", "your.data"] {
        let list: Vec<(u32, Vec<(&str, Value)>)> = (0..5)
            .filter(|i| tags[*i] == tag)
            .map(|i| (times[i], rec(tag)))
            .collect();
        let mut w = ChunkWriter::new();
        for (t, r) in &list {
            w.push_map(EventTime::new(*t, 0), r.iter().cloned());
        }
        write(&out, tag, &w, &[], 1)?;
    }
    let expect = [
        ("my.data/a/full.20161003.2345.log.gz", line(0) + &line(1)),
        ("my.data/a/full.20161004.0000.log.gz", line(3)),
        ("your.data/a/full.20161003.2345.log.gz", line(2)),
        ("your.data/a/full.20161004.0000.log.gz", line(4)),
    ];
    for (name, content) in &expect {
        assert_eq!(&f.read(name), content, "{name}");
    }
    // keyed: the host passes the variables; the same files grow
    let w = entries(&[(times[4], &rec("your.data"))]);
    write(
        &out,
        "your.data",
        &w,
        &[("timekey", "1475539200"), ("type", "a")],
        2,
    )?;
    assert_eq!(
        f.read("your.data/a/full.20161004.0000.log.gz"),
        line(4).repeat(2)
    );
    // the symlink points at the latest slice's file
    let link = std::fs::read_link(f.dir.path().join("full.current.log")).unwrap_or_default();
    assert!(
        link.ends_with("full.20161004.0000.log.gz"),
        "{}",
        link.display()
    );
    Ok(())
}

#[test]
fn fluentd_chunk_id_placeholder() -> R {
    let f = fx();
    let out = f.out("path {dir}/out_file_chunk_id_${chunk_id}\nutc\nappend true\n<buffer>\n timekey_use_utc true\n</buffer>")?;
    write(&out, "test", &a12(), &[("timekey", DAY)], 0xab)?;
    let name = format!("out_file_chunk_id_{}.20110102.log", "ab".repeat(16));
    assert_eq!(f.files(), std::slice::from_ref(&name));
    assert_eq!(f.read(&name), LINES);
    Ok(())
}

#[test]
fn fluentd_symlink_cases() -> R {
    for (conf, link_rel) in [
        (format!("{CONFIG}\nsymlink_path {{dir}}/current"), "current"),
        (
            "path {dir}/${tag}/out_file_test\nsymlink_path {dir}/foo/${tag}\n<buffer tag,time>\n timekey_use_utc true\n</buffer>".to_owned(),
            "foo/tag",
        ),
    ] {
        let f = fx();
        let out = f.out(&conf)?;
        let link = f.dir.path().join(link_rel);
        write(&out, "tag", &entries(&[(T, &[("a", Value::from(1))])]), &[], 1)?;
        assert!(link.is_symlink() && link.exists(), "{conf}");
        let t2 = 1_294_064_116; // 2011-01-03 14:15:16 UTC
        write(&out, "tag", &entries(&[(t2, &[("a", Value::from(2))])]), &[], 2)?;
        let target = std::fs::read_link(&link).unwrap_or_default();
        assert!(target.display().to_string().contains("20110103_0"), "{}", target.display());
        // an older slice written later does not move the link back
        write(&out, "tag", &entries(&[(T, &[("a", Value::from(3))])]), &[], 3)?;
        assert_eq!(std::fs::read_link(&link).unwrap_or_default(), target);
    }
    Ok(())
}

#[test]
fn record_key_placeholders_from_host_or_record() -> R {
    let f = fx();
    let out = f.out("path {dir}/${service}/${$.k.sub}/x\nappend true\n<buffer service,$.k.sub>\n</buffer>\n<format>\n @type json\n</format>")?;
    let w = entries(&[
        (
            T,
            &[
                ("service", Value::from("web")),
                ("k", Value::Map(vec![(Value::from("sub"), Value::from(7))])),
            ],
        ),
        (
            T,
            &[
                ("service", Value::from("db")),
                ("k", Value::Map(vec![(Value::from("sub"), Value::from(7))])),
            ],
        ),
        (T, &[("service", Value::Nil)]),
    ]);
    write(&out, "t", &w, &[], 1)?;
    write(
        &out,
        "t",
        &entries(&[(T, &[("n", Value::from(1))])]),
        &[("service", "api"), ("$.k.sub", "x")],
        2,
    )?;
    assert_eq!(
        f.files(),
        ["api/x/x.log", "db/7/x.log", "web/7/x.log", "x.log"]
    );
    assert_eq!(f.read("x.log"), "{\"service\":null}\n");
    assert_eq!(f.read("api/x/x.log"), "{\"n\":1}\n");
    Ok(())
}

#[test]
fn path_escapes_are_unrecoverable_and_write_nothing() -> R {
    for (conf, tag, vars) in [
        (
            "path {dir}/${tag}/x\n<buffer tag>\n</buffer>",
            "../../etc",
            &[][..],
        ),
        (
            "path {dir}/${tag[1]}/x\n<buffer tag>\n</buffer>",
            "a./abs",
            &[],
        ),
        (
            "path {dir}/${k}/x\n<buffer k>\n</buffer>",
            "t",
            &[("k", "../up")],
        ),
        (
            "path {dir}/${k}/x\n<buffer k>\n</buffer>",
            "t",
            &[("k", "/root")],
        ),
    ] {
        let f = fx();
        let out = f.out(conf)?;
        let e = write(&out, tag, &a12(), vars, 1).err();
        assert_eq!(
            e.as_ref().map(|e| e.kind),
            Some(ErrorKind::UNRECOVERABLE),
            "{conf}"
        );
        let msg = e.map(|e| e.message.to_string()).unwrap_or_default();
        assert!(msg.contains("Invalid path component detected"), "{msg}");
        assert!(f.files().is_empty(), "{conf}: {:?}", f.files());
    }
    Ok(())
}

#[test]
fn config_errors() {
    let f = fx();
    let err = |conf: &str| {
        f.out(conf)
            .err()
            .map(|e| (e.kind, e.message.to_string().replace(&f.d(), "D")))
    };
    let cfg = |m: &str| Some((ErrorKind::CONFIG, format!("test.conf:1: {m}")));
    for (conf, expect) in [
        ("", cfg("'path' parameter is required in <match>")),
        (
            "path {dir}/${tag}/x",
            cfg(
                "Parameter 'path: D/${tag}/x.%Y%m%d_**.log' has tag placeholders, but chunk key 'tag' is not configured",
            ),
        ),
        (
            "path {dir}/x\n<buffer tag,time>\n</buffer>",
            cfg("Parameter 'path: D/x.%Y%m%d_**.log' doesn't have tag placeholder"),
        ),
        (
            "path {dir}/${key1}/x\n<buffer>\n</buffer>",
            cfg(
                "Parameter 'path: D/${key1}/x.%Y%m%d_**.log' has placeholders, but chunk keys doesn't have keys key1",
            ),
        ),
        (
            "path {dir}/x\n<buffer key1,key2>\n</buffer>",
            cfg("Parameter 'path: D/x_**.log' doesn't have enough placeholders for keys key1,key2"),
        ),
        (
            "path {dir}/x.%Y%m%d\n<buffer tag>\n</buffer>",
            cfg(
                "Parameter 'path: D/x.%Y%m%d_**.log' has timestamp placeholders, but chunk key 'time' is not configured",
            ),
        ),
        (
            "path {dir}/x.*\n<buffer tag>\n</buffer>",
            cfg("path including '*' must be used with buffer chunk key 'time'"),
        ),
        (
            "path {dir}/%Y%m/x",
            cfg("insufficient timestamp placeholders in path"),
        ),
        (
            "path {dir}/x\ntime_slice_format %Y%m",
            cfg("time_slice_format only with %Y or %m is too long"),
        ),
        (
            "path {dir}/x\ncompress lz4",
            cfg("invalid value for compress: 'lz4' (valid options are text,gz,gzip,zstd)"),
        ),
        (
            "path {dir}/x\nfile_permission rw",
            cfg("invalid value for file_permission: 'rw' (expected an octal mode such as 0644)"),
        ),
        (
            "path {dir}/x\n<buffer time>\n timekey 0\n</buffer>",
            cfg(
                "<buffer> configuration error: timekey should be greater than 0. current timekey: 0",
            ),
        ),
    ] {
        assert_eq!(err(conf), expect, "{conf}");
    }
    for (conf, needle) in [
        ("path {dir}/x\ntimezone Invalid/Invalid", "timezone"),
        (
            "path {dir}/x\n<format>\n @type xml\n</format>",
            "unknown formatter type 'xml'",
        ),
        ("path {dir}/x\nutc\nlocaltime", "both"),
    ] {
        let got = err(conf).map(|e| e.1).unwrap_or_default();
        assert!(got.contains(needle), "{conf}: {got}");
    }
    // a path under a regular file can never be created
    std::fs::write(f.dir.path().join("file"), b"").unwrap_or_default();
    assert_eq!(
        err("path {dir}/file/sub/x"),
        cfg("out_file: `D/file/sub/x.%Y%m%d_**.log` is not writable").map(|(k, m)| {
            let now = chrono::Local::now().format("%Y%m%d").to_string();
            (k, m.replace("%Y%m%d", &now))
        })
    );
}

#[test]
fn permissions_apply_to_new_files_and_dirs() -> R {
    use std::os::unix::fs::PermissionsExt as _;
    let f = fx();
    let out = f.out("path {dir}/sub/dir/x\nfile_permission 0640\ndir_permission 0750")?;
    write(&out, "t", &a12(), &[], 1)?;
    let mode = |rel: &str| {
        std::fs::metadata(f.dir.path().join(rel))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    };
    assert_eq!(mode("sub/dir/x.20110102_0.log"), 0o640);
    assert_eq!(mode("sub/dir"), 0o750);
    assert_eq!(mode("sub"), 0o750);
    Ok(())
}

#[test]
fn io_failures_are_retryable_and_leave_no_partial_file() -> R {
    let f = fx();
    let out = f.out("path {dir}/sub/x")?;
    // a regular file where the directory should be created
    std::fs::write(f.dir.path().join("sub"), b"").unwrap_or_default();
    let e = write(&out, "t", &a12(), &[], 1).err();
    assert_eq!(e.as_ref().map(|e| e.kind), Some(ErrorKind::RETRYABLE));
    let msg = e.map(|e| e.message.to_string()).unwrap_or_default();
    assert!(
        msg.starts_with(
            "out_file test_id: chunk 01010101010101010101010101010101 (tag t): cannot write"
        ),
        "{msg}"
    );
    assert_eq!(f.files(), ["sub"]);
    assert_eq!(f.kit.host().metric("errors"), Some(1.0));
    Ok(())
}

#[test]
fn malformed_and_gzip_chunks() -> R {
    let f = fx();
    let out = f.out("path {dir}/x\nappend true\nutc")?;
    let mut data = a12().as_bytes().to_vec();
    data.truncate(data.len() - 1);
    let e = out
        .write_bytes("t", &data, 2, ChunkFormat::MSGPACK_STREAM)
        .err();
    assert_eq!(e.map(|e| e.kind), Some(ErrorKind::UNRECOVERABLE));
    assert!(f.files().is_empty());
    let gz = nagare_plugin_sdk::chunk::gzip(a12().as_bytes());
    out.write_bytes("test", &gz, 2, ChunkFormat::MSGPACK_STREAM_GZIP)?;
    assert_eq!(f.read("x.20110102.log"), LINES);
    Ok(())
}

#[test]
fn metrics_count_what_was_written() -> R {
    let f = fx();
    let out = f.out("path {dir}/x\nappend true")?;
    write(&out, "t", &a12(), &[], 1)?;
    write(&out, "t", &a12(), &[], 2)?;
    let host = f.kit.host();
    assert_eq!(host.metric("chunks"), Some(2.0));
    assert_eq!(host.metric("records"), Some(4.0));
    assert_eq!(host.metric("files"), Some(2.0));
    let size = std::fs::metadata(f.dir.path().join("x.20110102.log"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(host.metric("bytes"), Some(size as f64));
    assert!(host.logs().is_empty(), "{:?}", host.logs());
    Ok(())
}

#[test]
fn concurrent_appends_never_interleave() -> R {
    let f = fx();
    let out = f.out(
        "path {dir}/x\nappend true\n<format>\n @type single_value\n message_key m\n</format>",
    )?;
    let big = "z".repeat(100_000);
    let w = entries(&[(T, &[("m", Value::from(big.as_str()))])]);
    std::thread::scope(|s| {
        for id in 0..4u8 {
            let (out, w) = (&out, &w);
            s.spawn(move || write(out, "t", w, &[], id));
        }
    });
    let text = f.read("x.20110102.log");
    assert_eq!(text.lines().count(), 4);
    assert!(text.lines().all(|l| l == big));
    Ok(())
}

#[test]
fn one_instance_reuses_its_buffer_across_chunks() {
    // The formatted text of a big chunk is kept for the next (smaller) one: nothing of the
    // first may show in the second, whatever the formatter and the compression.
    let big: Vec<(u32, Vec<(&str, Value)>)> = (0..50)
        .map(|i| {
            (
                T + i,
                vec![("msg", Value::from("x".repeat(100))), ("i", Value::from(i))],
            )
        })
        .collect();
    let big_refs: Vec<(u32, &[(&str, Value)])> =
        big.iter().map(|(t, f)| (*t, f.as_slice())).collect();
    for (format, compress, name, first, second) in [
        (
            "out_file\n utc true",
            "",
            "out.20110102.log",
            "2011-01-02T13:14:15Z\tbig\t{\"msg\":\"xxx",
            "2011-01-02T13:14:15Z\tsmall\t{\"a\":1}\n",
        ),
        (
            "json",
            "compress gz",
            "out.20110102.log.gz",
            "{\"msg\":\"xxx",
            "{\"a\":1}\n",
        ),
        (
            "single_value\n message_key msg",
            "",
            "out.20110102.log",
            "xxx",
            "\n",
        ),
    ] {
        let f = fx();
        let conf = format!(
            "path {{dir}}/${{tag}}/out\nutc\nappend true\n{compress}\n<format>\n @type {}\n</format>\n<buffer tag,time>\n timekey_use_utc true\n</buffer>",
            if format.is_empty() {
                "out_file"
            } else {
                format
            }
        );
        let out = f.out(&conf).unwrap_or_else(|e| panic!("{format}: {e:?}"));
        let vars = [("timekey", DAY)];
        let w = entries(&big_refs);
        let r = write(&out, "big", &w, &vars, 1);
        assert!(r.is_ok(), "{format}: {r:?}");
        let small = entries(&[(T, &[("a", Value::from(1))])]);
        let r = write(&out, "small", &small, &vars, 2);
        assert!(r.is_ok(), "{format}: {r:?}");
        let big_text = f.read(&format!("big/{name}"));
        assert_eq!(big_text.lines().count(), 50, "{format}");
        assert!(
            big_text.starts_with(first),
            "{format}: {:?}",
            big_text.get(..80)
        );
        assert_eq!(f.read(&format!("small/{name}")), second, "{format}");
    }
}

#[test]
fn streamed_chunks_are_written_in_pieces_and_undone_whole() -> R {
    // A chunk whose text spans several STREAM_PIECEs, then one that breaks after its first
    // piece reached the file: the second leaves the file as the first left it.
    let f = fx();
    let conf = "path {dir}/big\nappend true\n<format>\n @type json\n</format>\n<buffer time>\n timekey_use_utc true\n</buffer>";
    let out = f.out(conf)?;
    let n = 3 * STREAM_PIECE / 100;
    let fields: Vec<(u32, Vec<(&str, Value)>)> = (0..n)
        .map(|i| {
            let i = i as u32;
            (
                T,
                vec![("msg", Value::from("y".repeat(80))), ("i", Value::from(i))],
            )
        })
        .collect();
    let refs: Vec<(u32, &[(&str, Value)])> =
        fields.iter().map(|(t, f)| (*t, f.as_slice())).collect();
    let w = entries(&refs);
    write(&out, "t", &w, &[("timekey", DAY)], 1)?;
    let text = f.read("big.20110102.log");
    assert!(text.len() > 2 * STREAM_PIECE, "{}", text.len());
    let want: String = (0..n)
        .map(|i| format!("{{\"msg\":\"{}\",\"i\":{i}}}\n", "y".repeat(80)))
        .collect();
    assert!(text == want, "the streamed text differs");
    assert_eq!(f.kit.host().metric("bytes"), Some(want.len() as f64));
    assert_eq!(f.kit.host().metric("records"), Some(n as f64));

    let mut broken = w.as_bytes().to_vec();
    broken.truncate(broken.len() - 1);
    let e = out
        .write_chunk(ChunkRef {
            tag: "t".into(),
            chunk_id: [2; 16],
            records: n as u32,
            format: ChunkFormat::MSGPACK_STREAM,
            data: broken.as_slice().into(),
            variables: [Tuple2(RStr::from("timekey"), RStr::from(DAY))][..].into(),
        })
        .err();
    assert_eq!(e.map(|e| e.kind), Some(ErrorKind::UNRECOVERABLE));
    assert!(
        f.read("big.20110102.log") == want,
        "the broken chunk was not undone"
    );

    // A new file (not appending) is removed when its chunk breaks.
    let f = fx();
    let out = f.out(&conf.replace("append true", "append false"))?;
    let e = out
        .write_chunk(ChunkRef {
            tag: "t".into(),
            chunk_id: [3; 16],
            records: n as u32,
            format: ChunkFormat::MSGPACK_STREAM,
            data: broken.as_slice().into(),
            variables: [Tuple2(RStr::from("timekey"), RStr::from(DAY))][..].into(),
        })
        .err();
    assert_eq!(e.map(|e| e.kind), Some(ErrorKind::UNRECOVERABLE));
    assert!(f.files().is_empty(), "{:?}", f.files());
    Ok(())
}

#[test]
fn streamed_chunks_name_files_and_move_symlinks_like_whole_ones() -> R {
    // The host passes the timekey, the output is plain text: the streamed path. Same files,
    // same symlink rules as `fluentd_symlink_cases`.
    let f = fx();
    let conf = "path {dir}/${tag}/out_file_test\nsymlink_path {dir}/foo/${tag}\nutc\n<buffer tag,time>\n timekey_use_utc true\n</buffer>";
    let out = f.out(conf)?;
    let link = f.dir.path().join("foo/tag");
    let t2 = 1_294_064_116; // 2011-01-03 14:15:16 UTC
    write(
        &out,
        "tag",
        &entries(&[(T, &[("a", Value::from(1))])]),
        &[("timekey", DAY)],
        1,
    )?;
    write(
        &out,
        "tag",
        &entries(&[(t2, &[("a", Value::from(2))])]),
        &[("timekey", "1294012800")],
        2,
    )?;
    write(
        &out,
        "tag",
        &entries(&[(T, &[("a", Value::from(3))])]),
        &[("timekey", DAY)],
        3,
    )?;
    assert_eq!(
        f.files(),
        [
            "foo/tag",
            "tag/out_file_test.20110102_0.log",
            "tag/out_file_test.20110102_1.log",
            "tag/out_file_test.20110103_0.log",
        ]
    );
    let target = std::fs::read_link(&link).unwrap_or_default();
    assert!(
        target.display().to_string().ends_with("20110103_0.log"),
        "{}",
        target.display()
    );
    assert_eq!(
        f.read("tag/out_file_test.20110102_1.log"),
        "2011-01-02T13:14:15Z\ttag\t{\"a\":3}\n"
    );
    assert_eq!(
        f.read("tag/out_file_test.20110103_0.log"),
        "2011-01-03T14:15:16Z\ttag\t{\"a\":2}\n"
    );
    Ok(())
}

/// A chunk mixing the entry shapes the streamed path reads in one walk (fixext8 times, map
/// records, nested values, invalid UTF-8) with the ones it hands to the general reader
/// (integer and ext8 times, a record that is not a map): the streamed text equals what the
/// whole-chunk path (taken with compression) writes, entry for entry.
#[test]
fn streamed_one_walk_equals_the_whole_chunk_path_on_mixed_entries() -> R {
    let enc = |v: &Value| {
        let mut b = Vec::new();
        let _ = nagare_plugin_sdk::rmpv::encode::write_value(&mut b, v);
        b
    };
    let map = |pairs: Vec<(&str, Value)>| {
        Value::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect(),
        )
    };
    let ext = |sec: u32| {
        let mut b = vec![0xd7, 0x00];
        b.extend_from_slice(&sec.to_be_bytes());
        b.extend_from_slice(&5u32.to_be_bytes());
        b
    };
    let mut data = Vec::new();
    let mut push = |time: Vec<u8>, record: Vec<u8>| {
        data.push(0x92);
        data.extend_from_slice(&time);
        data.extend_from_slice(&record);
    };
    push(
        ext(T),
        enc(&map(vec![("a", 1.into()), ("s", "x\"y".into())])),
    );
    let mut int_time = vec![0xce];
    int_time.extend_from_slice(&(T + 1).to_be_bytes());
    push(int_time, enc(&map(vec![("b", 2.into())])));
    push(
        ext(T + 2),
        enc(&map(vec![
            (
                "k",
                map(vec![("n", Value::Array(vec![1.into(), 2.5.into()]))]),
            ),
            ("f", 1.5.into()),
        ])),
    );
    push(ext(T + 3), enc(&Value::Array(vec![1.into(), 2.into()])));
    let mut ext8 = vec![0xc7, 0x08, 0x00];
    ext8.extend_from_slice(&(T + 4).to_be_bytes());
    ext8.extend_from_slice(&0u32.to_be_bytes());
    push(ext8, enc(&map(vec![("c", Value::Nil)])));
    push(ext(T + 5), vec![0x81, 0xa1, b'u', 0xa2, 0xff, b'z']);
    push(
        ext(T + 6),
        enc(&map(vec![("a", 1.into()), ("s", "x\"y".into())])),
    );
    for format in ["", "<format>\n @type json\n</format>"] {
        let f = fx();
        for (name, extra) in [("s", ""), ("g", "compress gz")] {
            let out = f.out(&format!(
                "path {{dir}}/{name}\nappend true\nutc\n{extra}\n{format}"
            ))?;
            out.write_bytes("t", &data, 7, ChunkFormat::MSGPACK_STREAM)?;
        }
        let files = f.files();
        let (Some(s), Some(g)) = (
            files.iter().find(|n| n.starts_with("s.")),
            files.iter().find(|n| n.starts_with("g.")),
        ) else {
            panic!("both files written: {files:?}");
        };
        let streamed = f.read(s);
        assert_eq!(streamed, f.read(g), "format {format:?}");
        assert_eq!(streamed.lines().count(), 7, "{streamed}");
        assert!(streamed.contains(r#""s":"x\"y""#), "{streamed}");
        assert!(streamed.contains("\u{fffd}z"), "{streamed}");
    }
    Ok(())
}

/// A file buffer's chunk lent as ranges of its file (frames between headers, here junk)
/// renders the same text as the same entries lent as bytes: streamed and mapped in place
/// (plain text, json or the default format), or read for the whole-chunk path (gzip).
#[test]
fn file_range_chunks_render_like_byte_chunks() -> R {
    // 300 entries, each encoded alone so its end is known.
    let (mut payload, mut ends) = (Vec::new(), Vec::new());
    for i in 0..300u32 {
        let mut one = ChunkWriter::new();
        one.push_map(
            EventTime::new(T + i, i),
            [
                ("i", Value::from(i)),
                (
                    "msg",
                    Value::from(format!("line \"{i}\" {}", "x".repeat(i as usize))),
                ),
            ],
        );
        payload.extend_from_slice(one.as_bytes());
        ends.push(payload.len());
    }
    // Frames of whole entries, each after a 24-byte junk header; the second frame starts
    // past the first page.
    let cuts = [0, ends[100], ends[101], ends[200], payload.len()];
    let mut file_bytes = Vec::new();
    let mut ranges = Vec::new();
    for c in cuts.windows(2) {
        file_bytes.extend_from_slice(&[0xc1; 24]);
        ranges.push((file_bytes.len() as u64, (c[1] - c[0]) as u64));
        file_bytes.extend_from_slice(&payload[c[0]..c[1]]);
    }
    assert!(ranges[1].0 > 4096, "a range starts past the first page");
    let mut file = tempfile::tempfile().expect("temp file");
    file.write_all(&file_bytes).expect("write the chunk file");

    for (format, extra) in [
        ("", ""),
        ("<format>\n @type json\n</format>", ""),
        ("", "compress gz"),
    ] {
        let f = fx();
        // `<buffer tag>`: every chunk key is known, so plain text is streamed.
        let conf = |name: &str| {
            format!(
                "path {{dir}}/{name}.${{tag}}\nappend true\nutc\n{extra}\n{format}\n<buffer tag>\n</buffer>"
            )
        };
        let bytes_out = f.out(&conf("b"))?;
        bytes_out.write_bytes("t", &payload, 300, ChunkFormat::MSGPACK_STREAM)?;
        let ranges_out = f.out(&conf("r"))?;
        ranges_out.write_file_ranges("t", [0; 16], &file, &ranges, 300)?;
        let files = f.files();
        let (Some(b), Some(r)) = (
            files.iter().find(|n| n.starts_with("b.")),
            files.iter().find(|n| n.starts_with("r.")),
        ) else {
            panic!("both files written: {files:?}");
        };
        let text = f.read(r);
        assert!(
            text == f.read(b),
            "format {format:?} {extra:?}: the texts differ"
        );
        assert_eq!(text.lines().count(), 300);
    }

    // A range past the end of the file: a retryable error (mapped or read), and no file.
    let f = fx();
    let mut past = ranges.clone();
    past.push((file_bytes.len() as u64 - 4, 10));
    for extra in ["", "compress gz"] {
        let out = f.out(&format!(
            "path {{dir}}/p.${{tag}}\nappend true\n{extra}\n<buffer tag>\n</buffer>"
        ))?;
        let e = out
            .write_file_ranges("t", [0; 16], &file, &past, 300)
            .expect_err("ranges past the end");
        assert_eq!(e.kind, ErrorKind::RETRYABLE, "{extra:?}: {e}");
    }
    assert!(f.files().is_empty(), "{:?}", f.files());
    let out = f.out("path {dir}/p\nappend true")?;

    // The host is told it may lend such chunks.
    assert_eq!(
        out.control(nagare_plugin_sdk::api::CHUNK_FORMATS_OP, &[])?,
        vec![0x93, 0, 1, 2]
    );
    Ok(())
}
