//! The `<match>`/`<filter>`/`<label>` routing graph with first-match semantics and a per-tag cache.

pub mod pattern;

pub use pattern::{MatchPattern, PatternError};
