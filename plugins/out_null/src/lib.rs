//! The `out_null` plugin.
