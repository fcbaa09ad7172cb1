//! The `out_stdout` plugin.
