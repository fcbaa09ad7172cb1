//! What a plugin instance knows about itself and the host: [`PluginContext`] (id, type, host
//! services), the log bridge ([`Logger`] and the `trace!` … `error!` macros) and metric
//! handles ([`Counter`], [`Gauge`]).
//!
//! A `.so` has its own copies of every global (`log`, `tracing`, metrics recorders), so plugin
//! logs go nowhere unless bridged: everything here forwards to the instance's `HostBox`, which
//! adds the `@id` and `@type` labels. Loggers check `Host::log_enabled` before formatting.

use std::fmt;

use abi_stable::std_types::RStr;
use nagare_plugin_api::{ConfigNode, HostBox, LogLevel, MetricId, MetricKind, PluginError};

use crate::config::{self, Parsed};

/// Sections of a `<match>` the host reads (buffering and fallback are the host's job), so a
/// plugin config struct need not declare them.
pub const HOST_SECTIONS: &[&str] = &["buffer", "secondary"];

/// The identity of an instance and the host services it may use. Cheap to clone.
#[derive(Clone)]
pub struct PluginContext {
    plugin_id: String,
    type_name: String,
    logger: Logger,
}

impl fmt::Debug for PluginContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginContext")
            .field("plugin_id", &self.plugin_id)
            .field("type_name", &self.type_name)
            .finish_non_exhaustive()
    }
}

impl PluginContext {
    /// Builds a context (the export macro does this for every constructor call).
    pub fn new(plugin_id: &str, type_name: &str, host: HostBox) -> Self {
        PluginContext {
            plugin_id: plugin_id.to_owned(),
            type_name: type_name.to_owned(),
            logger: Logger {
                host,
                target: type_name.to_owned(),
            },
        }
    }

    /// The instance's `@id` (or the host-generated id).
    pub fn plugin_id(&self) -> &str {
        &self.plugin_id
    }

    /// The instance's `@type`.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The host services object.
    pub fn host(&self) -> &HostBox {
        &self.logger.host
    }

    /// The log bridge for this instance.
    pub fn logger(&self) -> &Logger {
        &self.logger
    }

    /// Registers a counter (do it once, in `new`).
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        Counter(self.register(MetricKind::COUNTER, name, help))
    }

    /// Registers a gauge (do it once, in `new`).
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        Gauge(self.register(MetricKind::GAUGE, name, help))
    }

    fn register(&self, kind: MetricKind, name: &str, help: &str) -> Metric {
        let host = self.logger.host.clone();
        let id = host.register_metric(kind, RStr::from(name), RStr::from(help));
        Metric { host, id }
    }

    /// Deserializes the instance's configuration, warning (through the host log, as Fluentd
    /// does) about every param or section `T` does not use, except the sections the host
    /// itself reads ([`HOST_SECTIONS`]). Errors are `CONFIG` errors whose message names the
    /// location, the param, the value and what was expected.
    pub fn config<'a, T: serde::Deserialize<'a>>(
        &self,
        node: &'a ConfigNode,
    ) -> Result<T, PluginError> {
        let Parsed { value, unused } =
            config::from_node(node).map_err(crate::error::config_error)?;
        for u in unused
            .iter()
            .filter(|u| !(u.section && HOST_SECTIONS.contains(&u.name.as_str())))
        {
            self.logger.log(LogLevel::WARN, format_args!("{u}"));
        }
        Ok(value)
    }
}

/// Forwards log lines to the host. Obtain it from [`PluginContext::logger`].
#[derive(Clone)]
pub struct Logger {
    host: HostBox,
    target: String,
}

impl Logger {
    /// Whether `level` would be logged.
    pub fn enabled(&self, level: LogLevel) -> bool {
        crate::guard::catch_or(false, || self.host.log_enabled(level))
    }

    /// Logs a message if `level` is enabled (formatting only then).
    pub fn log(&self, level: LogLevel, args: fmt::Arguments<'_>) {
        if !self.enabled(level) {
            return;
        }
        let text = match args.as_str() {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(args.to_string()),
        };
        crate::guard::catch_or((), || {
            self.host.log(
                level,
                RStr::from(self.target.as_str()),
                RStr::from(text.as_ref()),
            );
        });
    }
}

/// Things that can log: a [`Logger`], a [`PluginContext`], or a reference to either.
/// The logging macros take any of them.
pub trait AsLogger {
    /// The logger to use.
    fn as_logger(&self) -> &Logger;
}

impl AsLogger for Logger {
    fn as_logger(&self) -> &Logger {
        self
    }
}

impl AsLogger for PluginContext {
    fn as_logger(&self) -> &Logger {
        &self.logger
    }
}

impl<T: AsLogger + ?Sized> AsLogger for &T {
    fn as_logger(&self) -> &Logger {
        (**self).as_logger()
    }
}

/// Logs through the host at a given level: `plugin_log!(ctx, LogLevel::INFO, "x={}", x)`.
#[macro_export]
macro_rules! plugin_log {
    ($target:expr, $level:expr, $($arg:tt)+) => {{
        let logger = $crate::context::AsLogger::as_logger(&$target);
        let level = $level;
        if logger.enabled(level) {
            logger.log(level, ::std::format_args!($($arg)+));
        }
    }};
}

/// Logs at trace level: `trace!(ctx, "…", args)`.
#[macro_export]
macro_rules! trace {
    ($target:expr, $($arg:tt)+) => { $crate::plugin_log!($target, $crate::api::LogLevel::TRACE, $($arg)+) };
}

/// Logs at debug level: `debug!(ctx, "…", args)`.
#[macro_export]
macro_rules! debug {
    ($target:expr, $($arg:tt)+) => { $crate::plugin_log!($target, $crate::api::LogLevel::DEBUG, $($arg)+) };
}

/// Logs at info level: `info!(ctx, "…", args)`.
#[macro_export]
macro_rules! info {
    ($target:expr, $($arg:tt)+) => { $crate::plugin_log!($target, $crate::api::LogLevel::INFO, $($arg)+) };
}

/// Logs at warn level: `warn!(ctx, "…", args)`.
#[macro_export]
macro_rules! warn {
    ($target:expr, $($arg:tt)+) => { $crate::plugin_log!($target, $crate::api::LogLevel::WARN, $($arg)+) };
}

/// Logs at error level: `error!(ctx, "…", args)`.
#[macro_export]
macro_rules! error {
    ($target:expr, $($arg:tt)+) => { $crate::plugin_log!($target, $crate::api::LogLevel::ERROR, $($arg)+) };
}

#[derive(Clone)]
struct Metric {
    host: HostBox,
    id: MetricId,
}

impl Metric {
    fn record(&self, value: f64) {
        crate::guard::catch_or((), || self.host.record_metric(self.id, value));
    }
}

/// A counter registered once; [`Counter::add`] records by id (no name lookups per event).
#[derive(Clone)]
pub struct Counter(Metric);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: f64) {
        self.0.record(n);
    }

    /// Adds one.
    pub fn inc(&self) {
        self.0.record(1.0);
    }

    /// The host's id for this metric.
    pub fn id(&self) -> MetricId {
        self.0.id
    }
}

/// A gauge registered once; [`Gauge::set`] records by id.
#[derive(Clone)]
pub struct Gauge(Metric);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: f64) {
        self.0.record(value);
    }

    /// The host's id for this metric.
    pub fn id(&self) -> MetricId {
        self.0.id
    }
}
