//! What `out_file` and `out_secondary_file` share, linked into each of their `.so`s:
//!
//! * [`fsio`]: directories with a mode, appends under an exclusive lock, fsync of the file
//!   and of a new file's directory, atomic `ln -sf`, Fluentd's `writable_p?`, gzip.
//! * [`meta`]: chunk keys and per-entry chunk metadata as the file outputs see them, for
//!   chunks that arrive without their `variables`.

pub mod fsio;
pub mod meta;
