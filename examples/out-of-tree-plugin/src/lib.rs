//! `@type counter`: an example output plugin built outside the nagare workspace.
//!
//! It counts events per tag. With `path`, it rewrites a count file (`<tag>\t<count>` lines,
//! sorted by tag) after every chunk; on stop it logs one summary line through the host.
//! `control("stats.v1")` returns the counts as a msgpack map.
//!
//! ```text
//! <match app.**>
//!   @type counter
//!   path /var/lib/nagare/counts.tsv
//! </match>
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use nagare_plugin_sdk::rmpv::Value;
use nagare_plugin_sdk::serde::Deserialize;
use nagare_plugin_sdk::{
    Chunk, ConfigNode, Counter, Output, PluginContext, Result, error, export_plugins, info,
};

/// `counter`'s parameters.
#[derive(Debug, Deserialize)]
#[serde(crate = "nagare_plugin_sdk::serde")]
pub struct CounterConfig {
    /// Where to write the counts (optional).
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// The `counter` output.
pub struct CounterOutput {
    ctx: PluginContext,
    path: Option<PathBuf>,
    counts: Mutex<BTreeMap<String, u64>>,
    events: Counter,
}

impl CounterOutput {
    fn counts(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, u64>>> {
        self.counts
            .lock()
            .map_err(|_| error::internal("counter: state poisoned"))
    }

    fn save(&self, counts: &BTreeMap<String, u64>) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let text: String = counts
            .iter()
            .map(|(tag, n)| format!("{tag}\t{n}\n"))
            .collect();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| error::retryable(format!("counter: cannot write {}: {e}", path.display())))
    }
}

impl Output for CounterOutput {
    fn new(ctx: &PluginContext, config: &ConfigNode) -> Result<Self> {
        let conf: CounterConfig = ctx.config(config)?;
        Ok(CounterOutput {
            ctx: ctx.clone(),
            path: conf.path,
            counts: Mutex::new(BTreeMap::new()),
            events: ctx.counter("events", "events counted"),
        })
    }

    fn write(&self, chunk: Chunk<'_>) -> Result<()> {
        let mut counts = self.counts()?;
        let mut next = counts.clone();
        *next.entry(chunk.tag().to_owned()).or_default() += u64::from(chunk.records());
        // Only commit the new counts once they are saved: a failed write is retried.
        self.save(&next)?;
        *counts = next;
        self.events.add(f64::from(chunk.records()));
        Ok(())
    }

    fn control(&self, op: &str, _payload: &[u8]) -> Result<Vec<u8>> {
        if op != "stats.v1" {
            return Err(error::internal(format!(
                "counter: unknown control op '{op}'"
            )));
        }
        let counts = self.counts()?;
        let map = counts
            .iter()
            .map(|(t, n)| (Value::from(t.as_str()), Value::from(*n)))
            .collect();
        let mut out = Vec::new();
        nagare_plugin_sdk::rmpv::encode::write_value(&mut out, &Value::Map(map))
            .map_err(|e| error::internal(format!("counter: {e}")))?;
        Ok(out)
    }

    fn stop(&mut self) -> Result<()> {
        let counts = self.counts()?;
        let total: u64 = counts.values().sum();
        info!(self.ctx, "counter: {total} events in {} tags", counts.len());
        Ok(())
    }
}

export_plugins! {
    outputs: ["counter" => CounterOutput],
}

#[cfg(test)]
mod tests {
    use nagare_plugin_sdk::testkit::TestKit;
    use nagare_plugin_sdk::{ChunkWriter, EventTime, LogLevel, PluginError};

    use super::*;

    fn chunk(n: u32) -> ChunkWriter {
        let mut w = ChunkWriter::new();
        for i in 0..n {
            w.push_map(EventTime::new(1, i), [("i", Value::from(i))]);
        }
        w
    }

    #[test]
    fn conformance() -> std::result::Result<(), PluginError> {
        let dir = std::env::temp_dir().join(format!("nagare-counter-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(error::internal)?;
        let path = dir.join("counts.tsv");
        let kit = TestKit::new(nagare_plugin_module());
        let mut out = kit.output("counter", &format!("path {}", path.display()))?;
        out.start()?;
        out.write("b", &chunk(2))?;
        out.write("a", &chunk(1))?;
        out.write("b", &chunk(3))?;
        let file = std::fs::read_to_string(&path).map_err(error::internal)?;
        assert_eq!(file, "a\t1\nb\t5\n");
        out.stop()?;
        assert_eq!(
            kit.host().messages(LogLevel::INFO),
            ["counter: 6 events in 2 tags"]
        );
        assert_eq!(kit.host().metric("events"), Some(6.0));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
