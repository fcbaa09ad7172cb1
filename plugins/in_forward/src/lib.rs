//! The `in_forward` plugin.
