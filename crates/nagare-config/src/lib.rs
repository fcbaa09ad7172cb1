//! Fluentd v1 configuration language: grammar, element tree, includes, embedded Ruby subset,
//! typed values.
//!
//! nagare reads the same `fluent.conf`/`td-agent.conf` files as Fluentd, with the same
//! lexical rules (`lib/fluent/config/{basic_parser,literal_parser,v1_parser}.rb`):
//!
//! - [`parse_file`] / [`parse_str`] / [`parse_str_with`] build the [`Element`] tree (root
//!   named `ROOT`), splicing `@include`d files in place and evaluating the safe subset of
//!   embedded Ruby in double-quoted strings (see [`Environment`]).
//! - [`check`] applies the start-up rules Fluentd enforces (missing `@type`, labels, plugin
//!   ids, workers, buffers) and returns warnings for deprecated forms.
//! - [`dump_json`] renders the tree for `--dump-config`.
//! - [`types`] converts attribute strings to Fluentd's parameter types.
//!
//! Every error is a [`ConfigError`] naming `file:line:column`, quoting the line with a caret
//! and ending with a hint. This crate knows nothing about plugins, routing or the runtime.
//!
//! Parsing never panics on any input (a fuzz target calls [`parse_str`] directly).

mod check;
mod dump;
mod element;
mod env;
mod error;
mod location;
mod parser;
mod ruby;
pub use nagare_types as types;

use std::path::Path;

pub use check::check;
pub use dump::dump_json;
pub use element::{Attr, Element, Value};
pub use env::{Environment, MapEnvironment, SystemEnvironment};
pub use error::{ConfigError, ErrorKind, Warning};
pub use location::Location;

/// A parsed configuration together with the warnings the parser raised (deprecated bare
/// `include`, reserved `@` parameters in nested sections, include globs matching nothing).
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The `ROOT` element.
    pub root: Element,
    /// Parse-time warnings, in file order.
    pub warnings: Vec<Warning>,
}

/// Reads and parses the configuration file at `path` with the real environment.
pub fn parse_file(path: &Path) -> Result<Element, ConfigError> {
    parse_file_with(path, &SystemEnvironment).map(|p| p.root)
}

/// Reads and parses `path`, evaluating embedded Ruby against `env`, keeping warnings.
pub fn parse_file_with(path: &Path, env: &dyn Environment) -> Result<Parsed, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigError::new(
            ErrorKind::Io,
            Location::start_of(path),
            format!("cannot read the configuration file: {e}"),
            "check the path given with -c and that the file is readable",
        )
        .with_io(e)
    })?;
    let text = String::from_utf8_lossy(&bytes);
    parse_str_with_warnings(&text, path, env)
}

/// Parses `text` as if read from `file` (relative `@include`s resolve against its
/// directory), with the real environment.
pub fn parse_str(text: &str, file: &Path) -> Result<Element, ConfigError> {
    parse_str_with(text, file, &SystemEnvironment)
}

/// Parses `text` as if read from `file`, evaluating embedded Ruby against `env`.
pub fn parse_str_with(
    text: &str,
    file: &Path,
    env: &dyn Environment,
) -> Result<Element, ConfigError> {
    parse_str_with_warnings(text, file, env).map(|p| p.root)
}

/// Parses `text` as if read from `file`, keeping the parser's warnings.
pub fn parse_str_with_warnings(
    text: &str,
    file: &Path,
    env: &dyn Environment,
) -> Result<Parsed, ConfigError> {
    let mut ctx = parser::Ctx::new(env);
    let root = parser::parse_root(text, file, &mut ctx)?;
    Ok(Parsed {
        root,
        warnings: ctx.warnings,
    })
}

/// Fuzzing entry point: parses arbitrary bytes (lossily decoded) with a fixed environment,
/// then runs [`check`] and [`dump_json`] on success. Never panics; all outcomes are ignored.
#[doc(hidden)]
pub fn fuzz_entry(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let env = MapEnvironment::new().with_var("FUZZ", "1");
    if let Ok(root) = parse_str_with(&text, Path::new("/nonexistent/fuzz.conf"), &env) {
        let _ = check(&root);
        let _ = dump_json(&root);
    }
}
