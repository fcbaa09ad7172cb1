//! The host side of plugins and the running pipeline.
//!
//! * [`loader`] finds `.so` files and loads them through the epoch probe and abi_stable's checks;
//! * [`registry`] maps `@type` to the module providing it and instantiates plugins, giving each
//!   its [`HostBox`](nagare_plugin_api::HostBox) (logs, metrics);
//! * [`convert`] turns the config tree into the ABI's string tree;
//! * [`engine`] builds the collector from a configuration, starts it and shuts it down in order;
//! * [`pipeline`] is the event path (route → filters → targets, `@ERROR`);
//! * [`buffered`] runs each output behind its buffer (`<buffer>`, flush threads, retries,
//!   `<secondary>`, overflow actions); [`output`] holds the batches they share;
//! * [`payload`] holds event bytes whoever allocated them;
//! * [`fluent_log`] turns the collector's own log lines into `fluent.*` events (`@FLUENT_LOG`).
//!
//! Nothing in here owns a tokio runtime: plugin calls run on input-owned threads (emit) and on
//! flush threads (write), never on a reactor.

pub mod buffered;
pub mod convert;
pub mod engine;
pub mod fluent_log;
pub mod loader;
pub mod output;
pub mod payload;
pub mod pipeline;
pub mod registry;

pub use engine::{Engine, EngineError, Running};
