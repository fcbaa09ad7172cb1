//! The export macro end to end, in-process: a module with an input, a filter and outputs,
//! driven through the test kit (the same entry points the host calls through the `.so`).

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use nagare_plugin_sdk::rmpv::Value;
use nagare_plugin_sdk::testkit::TestKit;
use nagare_plugin_sdk::{
    Chunk, ChunkWriter, ConfigNode, Emitter, ErrorKind, EventTime, Filter, FilterOutcome, Input,
    LogLevel, Output, PluginContext, PluginError, Result, api,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct SampleConfig {
    #[serde(default = "default_tag")]
    tag: String,
    #[serde(default)]
    size: u32,
}

fn default_tag() -> String {
    "sample".to_owned()
}

struct Sample {
    conf: SampleConfig,
    stop: std::sync::Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Input for Sample {
    fn new(ctx: &PluginContext, config: &ConfigNode) -> Result<Self> {
        Ok(Sample {
            conf: ctx.config(config)?,
            stop: Default::default(),
            thread: None,
        })
    }

    fn start(&mut self, emitter: Emitter) -> Result<()> {
        let (tag, size, stop) = (self.conf.tag.clone(), self.conf.size, self.stop.clone());
        self.thread = Some(std::thread::spawn(move || {
            let mut w = ChunkWriter::new();
            for i in 0..size {
                w.push_map(EventTime::new(1, i), [("n", Value::from(i))]);
            }
            if !stop.load(Ordering::SeqCst) {
                let _ = emitter.emit_writer(&tag, &mut w);
            }
        }));
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| nagare_plugin_sdk::error::internal("sample thread panicked"))?;
        }
        Ok(())
    }
}

/// Drops records whose `n` is odd; panics on tag "boom".
struct Even;

impl Filter for Even {
    fn new(_ctx: &PluginContext, _config: &ConfigNode) -> Result<Self> {
        Ok(Even)
    }

    fn filter(&self, chunk: Chunk<'_>) -> Result<FilterOutcome> {
        assert_ne!(chunk.tag(), "boom", "filter asked to explode");
        let mut w = ChunkWriter::new();
        for e in chunk
            .entries()
            .map_err(nagare_plugin_sdk::error::unrecoverable)?
        {
            let e = e.map_err(nagare_plugin_sdk::error::unrecoverable)?;
            let v = e.value().map_err(nagare_plugin_sdk::error::unrecoverable)?;
            let n = v["n"].as_u64().unwrap_or(0);
            if n % 2 == 0 {
                w.push_raw(e.time, e.record);
            }
        }
        Ok(FilterOutcome::replaced(w))
    }
}

#[derive(Deserialize)]
struct CollectConfig {
    #[serde(default)]
    fail_with: Option<String>,
    /// Answer `accepts_file_ranges` with yes.
    #[serde(default)]
    file_ranges: bool,
}

struct Collect {
    ctx: PluginContext,
    conf: CollectConfig,
    seen: Mutex<Vec<(String, u32)>>,
    /// The last chunk's payload (`last.v1`).
    last: Mutex<Vec<u8>>,
    writes: nagare_plugin_sdk::Counter,
}

impl Output for Collect {
    fn new(ctx: &PluginContext, config: &ConfigNode) -> Result<Self> {
        let conf: CollectConfig = ctx.config(config)?;
        if conf.fail_with.as_deref() == Some("new") {
            panic!("constructor exploded");
        }
        Ok(Collect {
            writes: ctx.counter("writes", "chunks written"),
            ctx: ctx.clone(),
            conf,
            seen: Mutex::default(),
            last: Mutex::default(),
        })
    }

    fn write(&self, chunk: Chunk<'_>) -> Result<()> {
        match self.conf.fail_with.as_deref() {
            Some("retry") => return Err(nagare_plugin_sdk::error::retryable("try later")),
            Some("panic") => panic!("write exploded on {}", chunk.tag()),
            _ => {}
        }
        let payload = chunk
            .payload()
            .map_err(nagare_plugin_sdk::error::unrecoverable)?;
        *self
            .last
            .lock()
            .map_err(|_| nagare_plugin_sdk::error::internal("poisoned"))? = payload.to_vec();
        nagare_plugin_sdk::info!(
            self.ctx,
            "got {} records for {}",
            chunk.records(),
            chunk.tag()
        );
        self.writes.inc();
        self.seen
            .lock()
            .map_err(|_| nagare_plugin_sdk::error::internal("poisoned"))?
            .push((chunk.tag().to_owned(), chunk.records()));
        Ok(())
    }

    fn accepts_file_ranges(&self) -> bool {
        self.conf.file_ranges
    }

    fn control(&self, op: &str, _payload: &[u8]) -> Result<Vec<u8>> {
        match op {
            "count.v1" => {
                let n = self.seen.lock().map(|s| s.len()).unwrap_or(0);
                Ok(vec![n as u8])
            }
            "last.v1" => Ok(self.last.lock().map(|l| l.clone()).unwrap_or_default()),
            other => Err(nagare_plugin_sdk::error::internal(format!(
                "unknown op {other}"
            ))),
        }
    }
}

nagare_plugin_sdk::export_plugins! {
    inputs: ["sample" => Sample, "dummy" => Sample],
    filters: ["even" => Even],
    outputs: ["collect" => Collect],
}

fn kit() -> TestKit {
    TestKit::new(nagare_plugin_module())
}

fn entries(n: u32) -> ChunkWriter {
    let mut w = ChunkWriter::new();
    for i in 0..n {
        w.push_map(EventTime::new(100, i), [("n", Value::from(i))]);
    }
    w
}

#[test]
fn manifest_lists_every_type() {
    let m = kit().manifest();
    assert_eq!(m.package.as_str(), "nagare-plugin-sdk");
    assert_eq!(m.sdk_version.as_str(), env!("CARGO_PKG_VERSION"));
    assert!(m.rustc_version.starts_with("rustc "), "{}", m.rustc_version);
    let types: Vec<_> = m
        .plugins
        .iter()
        .map(|p| (p.kind.name(), p.type_name.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("input", "sample"),
            ("input", "dummy"),
            ("filter", "even"),
            ("output", "collect")
        ]
    );
    assert_eq!(nagare_plugin_abi_epoch(), api::ABI_EPOCH);
    assert_eq!(nagare_plugin_module().abi_epoch(), api::ABI_EPOCH);
}

#[test]
fn root_module_symbol_matches_abi_stable() {
    assert_eq!(
        nagare_plugin_sdk::export::ROOT_MODULE_SYMBOL,
        abi_stable::library::ROOT_MODULE_LOADER_NAME
    );
}

#[test]
fn output_writes_logs_counts_and_controls() -> Result<()> {
    let kit = kit();
    let mut out = kit.output("collect", "unknown_param 1")?;
    out.start()?;
    out.write("app.a", &entries(3))?;
    out.write("app.b", &entries(1))?;
    assert_eq!(out.control("count.v1", &[])?, vec![2]);
    let err = out.control("nope", &[]).err().map(|e| e.kind);
    assert_eq!(err, Some(ErrorKind::INTERNAL));
    out.stop()?;
    let host = kit.host();
    assert_eq!(host.metric("writes"), Some(2.0));
    assert_eq!(
        host.messages(LogLevel::INFO),
        ["got 3 records for app.a", "got 1 records for app.b"]
    );
    assert_eq!(
        host.messages(LogLevel::WARN),
        ["test.conf:1: parameter 'unknown_param' in <match **> is not used."]
    );
    Ok(())
}

fn check_err(result: std::result::Result<(), PluginError>, kind: ErrorKind, prefix: &str) {
    match result {
        Err(e) => {
            assert_eq!(e.kind, kind, "{e}");
            assert!(
                e.message.starts_with(prefix),
                "{:?} vs {prefix:?}",
                e.message
            );
        }
        Ok(()) => panic!("expected {prefix:?}"),
    }
}

#[test]
fn panics_and_errors_cross_as_errors() {
    let kit = kit();
    let out = kit.output("collect", "fail_with panic");
    let out = out.unwrap_or_else(|e| panic!("{e}"));
    check_err(
        out.write("app", &entries(1)),
        ErrorKind::PANIC,
        "write exploded on app at ",
    );
    // The instance is still callable after a panic.
    check_err(
        out.write("app2", &entries(1)),
        ErrorKind::PANIC,
        "write exploded on app2 at ",
    );

    let retry = kit
        .output("collect", "fail_with retry")
        .unwrap_or_else(|e| panic!("{e}"));
    check_err(
        retry.write("app", &entries(1)),
        ErrorKind::RETRYABLE,
        "try later",
    );

    check_err(
        kit.output("collect", "fail_with new").map(drop),
        ErrorKind::PANIC,
        "constructor exploded at ",
    );
    check_err(
        kit.output("nosuch", "").map(drop),
        ErrorKind::CONFIG,
        "module has no such type 'nosuch'",
    );
    check_err(
        kit.input("sample", "size abc").map(drop),
        ErrorKind::CONFIG,
        "test.conf:1: invalid value for size: 'abc' (expected an integer)",
    );

    let filter = kit.filter("even", "").unwrap_or_else(|e| panic!("{e}"));
    let r = filter.filter("boom", &entries(1)).map(drop);
    check_err(
        r,
        ErrorKind::PANIC,
        "assertion `left != right` failed: filter asked to explode",
    );
}

#[test]
fn filter_rewrites_and_drops() -> Result<()> {
    let filter = kit().filter("even", "")?;
    let out = filter.filter("app", &entries(4))?;
    let FilterOutcome::Replaced { records, data } = out else {
        panic!("expected Replaced, got {out:?}")
    };
    assert_eq!(records, 2);
    let ns: Vec<_> = nagare_plugin_sdk::ChunkReader::new(&data)
        .values()
        .map_err(nagare_plugin_sdk::error::internal)?
        .into_iter()
        .map(|(t, v)| (t.nsec, v["n"].as_u64()))
        .collect();
    assert_eq!(ns, [(0, Some(0)), (2, Some(2))]);
    assert_eq!(filter.filter("app", &entries(0))?, FilterOutcome::Dropped);
    Ok(())
}

#[test]
fn input_emits_through_the_emitter() -> Result<()> {
    let kit = kit();
    let mut input = kit.input("dummy", "tag in.test\nsize 3")?;
    input.start()?;
    assert!(input.emitter().wait_for_batches(1, Duration::from_secs(10)));
    input.stop()?;
    let batches = input.emitter().batches();
    assert_eq!(batches.len(), 1);
    assert_eq!(
        (batches[0].tag.as_str(), batches[0].records),
        ("in.test", 3)
    );
    let got = batches[0]
        .entries()
        .map_err(nagare_plugin_sdk::error::internal)?;
    assert_eq!(got.len(), 3);
    Ok(())
}

#[test]
fn try_emit_hands_the_batch_back() {
    let emitter = nagare_plugin_sdk::testkit::TestEmitter::new();
    let e = Emitter::new(emitter.emitter_box());
    emitter.set_full(true);
    let rejected = e.try_emit("t", vec![1, 2, 3], 1).err();
    assert_eq!(
        rejected
            .as_ref()
            .map(|r| (r.tag.as_str(), r.data.as_slice(), r.records)),
        Some(("t", &[1u8, 2, 3][..], 1))
    );
    assert_eq!(
        e.emit("t", vec![], 0).err().map(|e| e.kind),
        Some(ErrorKind::RETRYABLE)
    );
    emitter.set_full(false);
    assert!(e.with_label("@OUT").emit("t", vec![0x90], 0).is_ok());
    assert_eq!(emitter.batches()[0].label, "@OUT");
}

#[test]
fn chunk_formats_op_lists_file_ranges_only_when_the_output_accepts_them() -> Result<()> {
    let kit = kit();
    let plain = kit.output("collect", "")?;
    let ranged = kit.output("collect", "file_ranges true")?;
    // msgpack fixarrays of positive fixints: [0, 1] and [0, 1, 2].
    assert_eq!(plain.control(api::CHUNK_FORMATS_OP, &[])?, [0x92, 0, 1]);
    assert_eq!(ranged.control(api::CHUNK_FORMATS_OP, &[])?, [0x93, 0, 1, 2]);
    let answer = ranged.control(api::CHUNK_FORMATS_OP, b"ignored")?;
    let formats = nagare_plugin_sdk::rmpv::decode::read_value(&mut answer.as_slice())
        .map_err(nagare_plugin_sdk::error::internal)?;
    let want = [
        api::ChunkFormat::MSGPACK_STREAM,
        api::ChunkFormat::MSGPACK_STREAM_GZIP,
        api::ChunkFormat::FILE_RANGES,
    ]
    .map(|f| Value::from(f.0));
    assert_eq!(formats, Value::Array(want.to_vec()));
    // The output's own ops still reach it.
    assert_eq!(ranged.control("count.v1", &[])?, vec![0]);
    let err = ranged
        .control("chunk_formats.v2", &[])
        .err()
        .map(|e| e.kind);
    assert_eq!(err, Some(ErrorKind::INTERNAL));
    Ok(())
}

#[test]
fn write_file_ranges_lends_the_ranges_of_a_file() -> Result<()> {
    let kit = kit();
    let mut out = kit.output("collect", "file_ranges true")?;
    out.start()?;
    let w = entries(5);
    let payload = w.as_bytes();
    let cut = payload.len() / 2;
    // Two frames: junk headers before each piece, a stale tail after them.
    let mut file = tempfile::tempfile().map_err(nagare_plugin_sdk::error::internal)?;
    let mut bytes = vec![0xc1; 24];
    bytes.extend_from_slice(&payload[..cut]);
    bytes.extend_from_slice(&[0xc1; 24]);
    bytes.extend_from_slice(&payload[cut..]);
    bytes.extend_from_slice(&[0xc1; 100]);
    file.write_all(&bytes)
        .map_err(nagare_plugin_sdk::error::internal)?;
    let ranges = [
        (24, cut as u64),
        (48 + cut as u64, (payload.len() - cut) as u64),
    ];
    out.write_file_ranges("app.f", [0; 16], &file, &ranges, 5)?;
    assert_eq!(out.control("last.v1", &[])?, payload);
    assert_eq!(
        kit.host().messages(LogLevel::INFO),
        ["got 5 records for app.f"]
    );

    // A range past the end of the file: the payload cannot be read.
    let past = [(24, cut as u64), (bytes.len() as u64 - 10, 20)];
    check_err(
        out.write_file_ranges("app.f", [0; 16], &file, &past, 5),
        ErrorKind::UNRECOVERABLE,
        "chunk in file ranges: ",
    );
    assert_eq!(out.control("count.v1", &[])?, vec![1]);
    out.stop()?;
    Ok(())
}
