//! The <match>/<filter>/<label> routing graph with first-match semantics and a per-tag cache.
