//! `out_null` (`@type null`): discards every chunk, counting events and chunks.
//!
//! Like Fluentd's `out_null` it accepts `never_flush` (tests use it to keep chunks in the
//! buffer); here it makes `write` fail with a retryable error so the host keeps the chunk.
//! Counters: metrics `events` and `chunks`, and `control("stats.v1")` returning the msgpack map
//! `{"events": n, "chunks": n}`.

use std::sync::atomic::{AtomicU64, Ordering};

use nagare_plugin_sdk::{
    Chunk, ConfigNode, Counter, Output, PluginContext, Result, error, export_plugins,
};
use serde::Deserialize;

/// `out_null`'s parameters.
#[derive(Debug, Deserialize)]
pub struct NullConfig {
    /// Refuse every write (retryable), so chunks stay buffered. Fluentd's test helper.
    #[serde(default)]
    pub never_flush: bool,
}

/// The `null` output.
pub struct Null {
    conf: NullConfig,
    events: AtomicU64,
    chunks: AtomicU64,
    events_metric: Counter,
    chunks_metric: Counter,
}

impl Output for Null {
    fn new(ctx: &PluginContext, config: &ConfigNode) -> Result<Self> {
        Ok(Null {
            conf: ctx.config(config)?,
            events: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            events_metric: ctx.counter("events", "events discarded"),
            chunks_metric: ctx.counter("chunks", "chunks discarded"),
        })
    }

    /// Nothing of a chunk but its count is used: a file buffer need not keep its chunks in
    /// memory for this output, and they are never read back for it either.
    fn accepts_file_ranges(&self) -> bool {
        true
    }

    fn write(&self, chunk: Chunk<'_>) -> Result<()> {
        if self.conf.never_flush {
            return Err(error::retryable("never_flush is set"));
        }
        let records = u64::from(chunk.records());
        self.events.fetch_add(records, Ordering::Relaxed);
        self.chunks.fetch_add(1, Ordering::Relaxed);
        self.events_metric.add(records as f64);
        self.chunks_metric.inc();
        Ok(())
    }

    fn control(&self, op: &str, _payload: &[u8]) -> Result<Vec<u8>> {
        match op {
            "stats.v1" => Ok(stats(
                self.events.load(Ordering::Relaxed),
                self.chunks.load(Ordering::Relaxed),
            )),
            other => Err(error::internal(format!(
                "null: unknown control op '{other}'"
            ))),
        }
    }
}

/// Encodes `{"events": events, "chunks": chunks}`.
fn stats(events: u64, chunks: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    // Writing into a Vec cannot fail.
    let _ = rmp::encode::write_map_len(&mut out, 2);
    let _ = rmp::encode::write_str(&mut out, "events");
    let _ = rmp::encode::write_uint(&mut out, events);
    let _ = rmp::encode::write_str(&mut out, "chunks");
    let _ = rmp::encode::write_uint(&mut out, chunks);
    out
}

export_plugins! {
    outputs: ["null" => Null],
}

#[cfg(test)]
mod tests {
    use nagare_plugin_sdk::rmpv::Value;
    use nagare_plugin_sdk::testkit::TestKit;
    use nagare_plugin_sdk::{ChunkWriter, ErrorKind, EventTime, PluginError};

    use super::*;

    fn chunk(n: u32) -> ChunkWriter {
        let mut w = ChunkWriter::new();
        for i in 0..n {
            w.push_map(EventTime::new(1, 0), [("i", Value::from(i))]);
        }
        w
    }

    fn decode(bytes: &[u8]) -> Value {
        let mut rd = bytes;
        nagare_plugin_sdk::rmpv::decode::read_value(&mut rd).unwrap_or(Value::Nil)
    }

    #[test]
    fn file_range_chunks_are_counted_without_being_read() -> std::result::Result<(), PluginError> {
        let kit = TestKit::new(nagare_plugin_module());
        let out = kit.output("null", "")?;
        assert_eq!(
            out.control(nagare_plugin_sdk::api::CHUNK_FORMATS_OP, &[])?,
            vec![0x93, 0, 1, 2]
        );
        // Ranges far past the end of an empty file: nothing reads them.
        let file = tempfile::tempfile().expect("temp file");
        out.write_file_ranges("app", [0; 16], &file, &[(1 << 20, 4096)], 7)?;
        assert_eq!(kit.host().metric("events"), Some(7.0));
        assert_eq!(kit.host().metric("chunks"), Some(1.0));
        Ok(())
    }

    #[test]
    fn conformance_counts_and_stats() -> std::result::Result<(), PluginError> {
        let kit = TestKit::new(nagare_plugin_module());
        let mut out = kit.output("null", "")?;
        out.start()?;
        for n in [3, 0, 5] {
            out.write("app", &chunk(n))?;
        }
        let stats = decode(&out.control("stats.v1", &[])?);
        assert_eq!(
            stats,
            Value::Map(vec![
                (Value::from("events"), Value::from(8)),
                (Value::from("chunks"), Value::from(3)),
            ])
        );
        assert_eq!(kit.host().metric("events"), Some(8.0));
        assert_eq!(kit.host().metric("chunks"), Some(3.0));
        assert_eq!(
            out.control("x", &[]).err().map(|e| e.kind),
            Some(ErrorKind::INTERNAL)
        );
        out.stop()?;
        assert!(kit.host().logs().is_empty(), "{:?}", kit.host().logs());
        Ok(())
    }

    #[test]
    fn config_table() {
        let kit = TestKit::new(nagare_plugin_module());
        let check = |text: &str, expect: std::result::Result<(), &str>| {
            let got = kit
                .output("null", text)
                .map(drop)
                .map_err(|e| e.message.to_string());
            assert_eq!(got, expect.map_err(str::to_owned), "{text:?}");
        };
        check("", Ok(()));
        check(
            "never_flush true\n<buffer>\n flush_mode immediate\n</buffer>",
            Ok(()),
        );
        check(
            "never_flush maybe",
            Err(
                "test.conf:1: invalid value for never_flush: 'maybe' (expected true, yes, false or no)",
            ),
        );
        check("bogus 1", Ok(()));
        assert_eq!(
            kit.host().messages(nagare_plugin_sdk::LogLevel::WARN),
            ["test.conf:1: parameter 'bogus' in <match **> is not used."]
        );
    }

    #[test]
    fn never_flush_keeps_chunks() -> std::result::Result<(), PluginError> {
        let kit = TestKit::new(nagare_plugin_module());
        let out = kit.output("null", "never_flush")?;
        let err = out.write("app", &chunk(1)).err().map(|e| e.kind);
        assert_eq!(err, Some(ErrorKind::RETRYABLE));
        Ok(())
    }
}
