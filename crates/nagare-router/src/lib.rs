//! The `<match>`/`<filter>`/`<label>` routing graph of Fluentd, with first-match semantics and
//! a per-tag cache. Pure logic: no plugins, no I/O, no threads.
//!
//! - [`pattern`]: tag patterns, exactly Fluentd's `GlobMatchPattern` (and `/regex/`).
//! - [`RoutingTable::build`]: sources, top-level rules, `<label>`s, `<worker N>` sections,
//!   out_copy and out_relabel modelled as [`Target::Copy`] and [`Target::Relabel`], and the
//!   configuration errors Fluentd reports (plus certain relabel loops).
//! - [`RoutingTable::route`]: the filters and the target for a tag in a router, cached.
//! - [`RoutingTable::explain`]: the path of a tag, for `nagare route`.
//! - [`NoMatchReporter`]: when to log "no patterns matched".
//!
//! The table knows nothing about plugins beyond their `@type` strings `copy` and `relabel`,
//! which are routing features of the host in nagare.

mod cache;
mod error;
mod explain;
mod nomatch;
pub mod pattern;
mod table;

pub use cache::ROUTE_CACHE_CAPACITY;
pub use error::{RouterError, RouterWarning};
pub use explain::{Explanation, Step, StepKind};
pub use nomatch::{NoMatchReporter, should_warn_no_match};
pub use pattern::{MatchPattern, PatternError};
pub use table::{
    BuildOptions, CopyMode, Directive, DirectiveKind, ERROR_LABEL, FLUENT_LOG_LABEL, FilterId,
    Label, LabelRef, OutputId, ROOT_LABEL, Route, RoutingTable, Source, Store, Target,
};

#[cfg(test)]
mod tests;
