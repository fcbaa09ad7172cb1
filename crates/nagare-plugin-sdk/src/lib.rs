//! The nagare plugin author kit, statically linked into every plugin `.so`.
//!
//! A plugin is a `cdylib` crate that implements [`Input`], [`Filter`] or [`Output`] for its
//! types, types its configuration with `#[derive(Deserialize)]` through [`config`], and calls
//! [`export_plugins!`] once:
//!
//! ```ignore
//! use nagare_plugin_sdk::{Chunk, ConfigNode, Output, PluginContext, Result};
//!
//! #[derive(serde::Deserialize)]
//! struct NullConfig {}
//!
//! struct Null;
//! impl Output for Null {
//!     fn new(ctx: &PluginContext, config: &ConfigNode) -> Result<Self> {
//!         let _conf: NullConfig = ctx.config(config)?;
//!         Ok(Null)
//!     }
//!     fn write(&self, _chunk: Chunk<'_>) -> Result<()> { Ok(()) }
//! }
//!
//! nagare_plugin_sdk::export_plugins! { outputs: ["null" => Null] }
//! ```
//!
//! What the SDK takes care of (`plugin-abi.md` §2.3–2.5):
//! * the ABI: the epoch probe symbol, the abi_stable root module, the manifest, constructors
//!   dispatching on `@type` ([`export`]);
//! * panics: every call from the host runs under [`guard::catch`] and comes back as a `PANIC`
//!   error, never as an unwind across `extern "C"` (which would abort the host);
//! * Fluentd's config value types ([`config`]), unknown-param warnings included;
//! * Fluentd's chunk format ([`chunk`]);
//! * logs and metrics through the host ([`context`], [`info!`] and friends), and a rate
//!   limiter for per-event warnings ([`log_limiter`]);
//! * Fluentd's `record_accessor` helper: `key`, `$.a.b`, `$['a'][0]` paths on raw and
//!   decoded records ([`record_accessor`]);
//! * a per-`.so` tokio runtime (`runtime` feature) and an in-process test kit (`testkit`).
//!
//! This crate depends on `nagare-plugin-api` and external crates only, so out-of-tree
//! plugins build against it alone; it re-exports the API as [`api`].

pub mod adapter;
pub mod chunk;
pub mod config;
pub mod context;
pub mod error;
pub mod export;
pub mod file_ranges;
pub mod guard;
pub mod log_limiter;
pub mod plugin;
pub mod record_accessor;
#[cfg(feature = "runtime")]
pub mod runtime;
#[cfg(feature = "testkit")]
pub mod testkit;

/// The stable ABI crate this SDK builds against.
pub use nagare_plugin_api as api;
/// `rmpv`, for decoding records.
pub use rmpv;
/// `serde`, for config structs.
pub use serde;

pub use api::{ConfigNode, ErrorKind, LogLevel, PluginError};
pub use chunk::{ChunkReader, ChunkWriter, Entry, EventTime, Visited};
pub use context::{Counter, Gauge, Logger, PluginContext};
pub use error::Result;
pub use file_ranges::{FileRanges, MappedRanges};
pub use plugin::{Chunk, Emitter, Filter, FilterOutcome, Input, Output, Rejected};

/// Items the macros expand to. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
    pub use abi_stable::prefix_type::PrefixTypeTrait;
    pub use abi_stable::std_types::ROption::{RNone, RSome};
}
