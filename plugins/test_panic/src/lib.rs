//! `test_panic` (output and filter): panics on purpose, for the host's panic-survival tests.
//!
//! `panic_on` picks the moment: `write` (the output's default), `filter` (the filter's
//! default), `new`, `start`, `stop`, `control`, or `never`. `message` sets the panic text.
//! `every` panics only on every N-th data call (1 = always), so a test can see calls that
//! succeed between panics.
//!
//! For the host's buffer and retry tests the output can also fail without panicking:
//! `fail_times N` makes the first N `write` calls return an error of `fail_kind`
//! (`retryable`, the default, or `unrecoverable`), and every successful `write` logs
//! `test_panic: wrote chunk <id> tag=<tag> records=<n> variables=<k=v,...>` at info level.
//! Use `panic_on never` with them (the output panics on `write` by default). Not for
//! production configs.

use std::sync::atomic::{AtomicU64, Ordering};

use nagare_plugin_sdk::{
    Chunk, ConfigNode, Filter, FilterOutcome, Output, PluginContext, Result, error, export_plugins,
    info,
};
use serde::Deserialize;

/// When to panic.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PanicOn {
    /// In the constructor.
    New,
    /// In `Output::start`.
    Start,
    /// In `Output::write`.
    Write,
    /// In `Filter::filter`.
    Filter,
    /// In `Output::control`.
    Control,
    /// In `Output::stop`.
    Stop,
    /// Never (a well-behaved instance).
    Never,
}

/// `test_panic`'s parameters.
#[derive(Debug, Deserialize)]
pub struct PanicConfig {
    /// When to panic (default: `write` for the output, `filter` for the filter).
    #[serde(default)]
    pub panic_on: Option<PanicOn>,
    /// The panic message.
    #[serde(default = "default_message")]
    pub message: String,
    /// Panic on every N-th data call only (1 = every call).
    #[serde(default = "default_every")]
    pub every: u64,
    /// The output's first N `write` calls fail (without panicking) with `fail_kind`.
    #[serde(default)]
    pub fail_times: u64,
    /// The error kind of those failures.
    #[serde(default)]
    pub fail_kind: FailKind,
}

/// The error a failing `write` returns.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailKind {
    /// A retryable error: the host backs off and retries the chunk.
    #[default]
    Retryable,
    /// An unrecoverable error: the host sends the chunk to `<secondary>` or the backup dir.
    Unrecoverable,
}

fn default_message() -> String {
    "test_panic: deliberate panic".to_owned()
}

fn default_every() -> u64 {
    1
}

struct Trigger {
    on: PanicOn,
    message: String,
    every: u64,
    calls: AtomicU64,
    fail_times: u64,
    fail_kind: FailKind,
    writes: AtomicU64,
}

impl Trigger {
    fn new(ctx: &PluginContext, config: &ConfigNode, default: PanicOn) -> Result<Self> {
        let conf: PanicConfig = ctx.config(config)?;
        if conf.every == 0 {
            return Err(nagare_plugin_sdk::error::config_error(format!(
                "{}: invalid value for every: '0' (expected an integer >= 1)",
                config.location
            )));
        }
        let trigger = Trigger {
            on: conf.panic_on.unwrap_or(default),
            message: conf.message,
            every: conf.every,
            calls: AtomicU64::new(0),
            fail_times: conf.fail_times,
            fail_kind: conf.fail_kind,
            writes: AtomicU64::new(0),
        };
        trigger.at(PanicOn::New);
        Ok(trigger)
    }

    /// Panics if `moment` is the configured one (data calls: on every `every`-th call).
    fn at(&self, moment: PanicOn) {
        if moment != self.on {
            return;
        }
        if matches!(moment, PanicOn::Write | PanicOn::Filter) {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if !n.is_multiple_of(self.every) {
                return;
            }
        }
        panic!("{}", self.message);
    }

    /// Fails the first `fail_times` writes.
    fn fail(&self) -> Result<()> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n > self.fail_times {
            return Ok(());
        }
        let msg = format!("test_panic: scripted failure {n} of {}", self.fail_times);
        Err(match self.fail_kind {
            FailKind::Retryable => error::retryable(msg),
            FailKind::Unrecoverable => error::unrecoverable(msg),
        })
    }
}

/// The `test_panic` output: discards chunks (logging each) unless it panics or fails.
pub struct PanicOutput(Trigger, PluginContext);

impl Output for PanicOutput {
    fn new(ctx: &PluginContext, config: &ConfigNode) -> Result<Self> {
        Trigger::new(ctx, config, PanicOn::Write).map(|t| PanicOutput(t, ctx.clone()))
    }

    fn start(&mut self) -> Result<()> {
        self.0.at(PanicOn::Start);
        Ok(())
    }

    fn write(&self, chunk: Chunk<'_>) -> Result<()> {
        self.0.at(PanicOn::Write);
        self.0.fail()?;
        let vars: Vec<String> = chunk.variables().map(|(k, v)| format!("{k}={v}")).collect();
        info!(
            self.1,
            "test_panic: wrote chunk {} tag={} records={} variables={}",
            chunk.id_hex(),
            chunk.tag(),
            chunk.records(),
            vars.join(",")
        );
        Ok(())
    }

    fn control(&self, op: &str, _payload: &[u8]) -> Result<Vec<u8>> {
        self.0.at(PanicOn::Control);
        Err(nagare_plugin_sdk::error::internal(format!(
            "test_panic: unknown control op '{op}'"
        )))
    }

    fn stop(&mut self) -> Result<()> {
        self.0.at(PanicOn::Stop);
        Ok(())
    }
}

/// The `test_panic` filter: passes chunks unchanged unless it panics.
pub struct PanicFilter(Trigger);

impl Filter for PanicFilter {
    fn new(ctx: &PluginContext, config: &ConfigNode) -> Result<Self> {
        Trigger::new(ctx, config, PanicOn::Filter).map(PanicFilter)
    }

    fn filter(&self, _chunk: Chunk<'_>) -> Result<FilterOutcome> {
        self.0.at(PanicOn::Filter);
        Ok(FilterOutcome::Unchanged)
    }
}

export_plugins! {
    filters: ["test_panic" => PanicFilter],
    outputs: ["test_panic" => PanicOutput],
}

#[cfg(test)]
mod tests {
    use nagare_plugin_sdk::testkit::TestKit;
    use nagare_plugin_sdk::{ChunkWriter, ErrorKind, EventTime, PluginError};

    use super::*;

    fn chunk() -> ChunkWriter {
        let mut w = ChunkWriter::new();
        w.push_map(EventTime::new(1, 0), []);
        w
    }

    /// What each lifecycle call returned: "ok" or the error kind name and message prefix.
    fn outcome<T>(r: std::result::Result<T, PluginError>) -> String {
        match r {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!(
                "{}: {}",
                e.kind.name(),
                e.message.split(" at ").next().unwrap_or("")
            ),
        }
    }

    fn check_output(config: &str, expect: [&str; 5]) {
        let kit = TestKit::new(nagare_plugin_module());
        let got = match kit.output("test_panic", config) {
            Err(e) => vec![outcome::<()>(Err(e))],
            Ok(mut out) => vec![
                "ok".to_owned(),
                outcome(out.start()),
                outcome(out.write("t", &chunk())),
                outcome(out.control("x", &[])),
                outcome(out.stop()),
            ],
        };
        let expect: Vec<_> = expect
            .iter()
            .take(got.len())
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(got, expect, "config {config:?}");
    }

    #[test]
    fn output_panics_where_told() {
        let p = "panic: test_panic: deliberate panic";
        let unknown = "internal: test_panic: unknown control op 'x'";
        check_output("", ["ok", "ok", p, unknown, "ok"]);
        check_output("panic_on new", [p, "", "", "", ""]);
        check_output("panic_on start", ["ok", p, "ok", unknown, "ok"]);
        check_output(
            "panic_on control\nmessage custom",
            ["ok", "ok", "ok", "panic: custom", "ok"],
        );
        check_output("panic_on stop", ["ok", "ok", "ok", unknown, p]);
        check_output("panic_on never", ["ok", "ok", "ok", unknown, "ok"]);
        check_output(
            "every 0",
            [
                "config: test.conf:1: invalid value for every: '0' (expected an integer >= 1)",
                "",
                "",
                "",
                "",
            ],
        );
    }

    #[test]
    fn panic_messages_carry_the_location() -> std::result::Result<(), PluginError> {
        let kit = TestKit::new(nagare_plugin_module());
        let out = kit.output("test_panic", "")?;
        let msg = out
            .write("t", &chunk())
            .err()
            .map(|e| e.message.to_string())
            .unwrap_or_default();
        assert!(msg.starts_with("test_panic: deliberate panic at "), "{msg}");
        assert!(msg.contains("lib.rs:"), "{msg}");
        Ok(())
    }

    #[test]
    fn fail_times_fails_the_first_writes_then_succeeds() -> std::result::Result<(), PluginError> {
        let kit = TestKit::new(nagare_plugin_module());
        for (config, kind) in [
            ("panic_on never\nfail_times 2", ErrorKind::RETRYABLE),
            (
                "panic_on never\nfail_times 2\nfail_kind unrecoverable",
                ErrorKind::UNRECOVERABLE,
            ),
        ] {
            let out = kit.output("test_panic", config)?;
            let kinds: Vec<_> = (0..4)
                .map(|_| out.write("t", &chunk()).err().map(|e| e.kind))
                .collect();
            assert_eq!(kinds, [Some(kind), Some(kind), None, None], "{config}");
        }
        let bad = kit.output("test_panic", "fail_kind sometimes").err();
        assert_eq!(bad.map(|e| e.kind), Some(ErrorKind::CONFIG));
        Ok(())
    }

    #[test]
    fn filter_panics_every_nth_call() -> std::result::Result<(), PluginError> {
        let kit = TestKit::new(nagare_plugin_module());
        let f = kit.filter("test_panic", "every 2")?;
        let kinds: Vec<_> = (0..4)
            .map(|_| f.filter("t", &chunk()).err().map(|e| e.kind))
            .collect();
        assert_eq!(
            kinds,
            [None, Some(ErrorKind::PANIC), None, Some(ErrorKind::PANIC)]
        );
        let quiet = kit.filter("test_panic", "panic_on write")?;
        assert_eq!(quiet.filter("t", &chunk())?, FilterOutcome::Unchanged);
        Ok(())
    }
}
