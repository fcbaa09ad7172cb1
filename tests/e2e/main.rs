//! End-to-end tests: the real `nagare` binary, the real `.so` plugins, real sockets and files.
//!
//! One test binary (fast to link), one module per area. Run with `cargo xtask test`, which
//! builds the binary and the plugins first.

mod harness;

mod buffer;
mod cli;
mod errors;
mod fluent_log;
mod forward;
mod out_file;
mod plugins;
mod relay;
mod routing;
