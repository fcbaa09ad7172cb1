//! nagare's own log lines, in Fluentd's shape: `2026-11-26 12:00:00 +0000 [info]: message`.
//!
//! Plugin logs arrive through the host callback as `tracing` events with `plugin_id` and
//! `type` fields; they print as `[info]: #in_forward message`, like Fluentd's per-plugin logger.

use nagare_engine::fluent_log::{FluentLogSink, LogLine};
use std::fmt::Write as _;
use std::sync::OnceLock;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, format::Writer};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Formats events as Fluentd does.
pub struct FluentdFormat;

#[derive(Default)]
struct Fields {
    message: String,
    plugin_id: Option<String>,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "plugin_id" => self.plugin_id = Some(value.to_string()),
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "plugin_id" => self.plugin_id = Some(format!("{value:?}")),
            name => {
                let _ = write!(self.rest, " {name}={value:?}");
            }
        }
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

impl<S, N> FormatEvent<S, N> for FluentdFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut f = Fields::default();
        event.record(&mut f);
        let now = chrono::Local::now();
        write!(
            w,
            "{} [{}]: ",
            now.format("%Y-%m-%d %H:%M:%S %z"),
            level_name(event.metadata().level())
        )?;
        if let Some(id) = &f.plugin_id {
            write!(w, "#{id} ")?;
        }
        writeln!(w, "{}{}", f.message, f.rest)
    }
}

/// Where log lines also go as `fluent.*` events, once the pipeline runs (see
/// `nagare_engine::fluent_log`).
pub static FLUENT_LOG: OnceLock<FluentLogSink> = OnceLock::new();

/// A layer feeding log lines to [`FLUENT_LOG`] when it is set.
struct FluentLogLayer;

impl<S: Subscriber> Layer<S> for FluentLogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let Some(sink) = FLUENT_LOG.get() else {
            return;
        };
        let mut f = Fields::default();
        event.record(&mut f);
        sink.push(LogLine {
            level: level_name(event.metadata().level()),
            message: f.message,
            plugin_id: f.plugin_id,
        });
    }
}

/// Installs the global subscriber writing to stderr at `level`.
pub fn init(level: Level) {
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .event_format(FluentdFormat);
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(LevelFilter::from_level(level)))
        .with(FluentLogLayer.with_filter(LevelFilter::from_level(level)))
        .try_init();
}

/// Maps Fluentd's `log_level` names (and `-v`/`-q` steps) to a tracing level.
pub fn level_from(name: &str) -> Option<Level> {
    Some(match name {
        "trace" => Level::TRACE,
        "debug" => Level::DEBUG,
        "info" => Level::INFO,
        "warn" => Level::WARN,
        "error" | "fatal" => Level::ERROR,
        _ => return None,
    })
}

/// Applies `-v` (more) and `-q` (less) to a base level.
pub fn adjust(base: Level, verbose: u8, quiet: u8) -> Level {
    const ORDER: [Level; 5] = [
        Level::TRACE,
        Level::DEBUG,
        Level::INFO,
        Level::WARN,
        Level::ERROR,
    ];
    let pos = ORDER.iter().position(|l| *l == base).unwrap_or(2) as i32;
    let p = (pos - i32::from(verbose) + i32::from(quiet)).clamp(0, 4);
    ORDER[p as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_steps() {
        assert_eq!(adjust(Level::INFO, 1, 0), Level::DEBUG);
        assert_eq!(adjust(Level::INFO, 5, 0), Level::TRACE);
        assert_eq!(adjust(Level::INFO, 0, 2), Level::ERROR);
        assert_eq!(level_from("warn"), Some(Level::WARN));
        assert_eq!(level_from("loud"), None);
    }
}
