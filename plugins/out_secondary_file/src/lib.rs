//! `out_secondary_file` (`@type secondary_file`): dumps the chunks its primary output gave up
//! on, as Fluentd's `out_secondary_file.rb` does.
//!
//! * Only valid inside `<secondary>`.
//! * The file is `directory/basename` (default `dump.bin`) with `${tag}`, `${tag[N]}`,
//!   `${key}`, `${chunk_id}` and strftime placeholders expanded per chunk, then `.N` (the
//!   first free index) unless `append true`, then `.gz` with `compress gzip`.
//! * The content is the chunk itself: concatenated msgpack `[time, record]` entries (gzip:
//!   one gzip member per chunk), so `fluent-cat --format msgpack` or a Forward client can
//!   replay it.
//! * A `${tag}`/value that would leave the directory makes the write `UNRECOVERABLE`; I/O
//!   errors are `RETRYABLE`. Writes are locked, fsynced, and rolled back on failure, as in
//!   `out_file`.
//!
//! The primary's chunk keys: a secondary cannot contain `<buffer>` in a config file, so a
//! `<buffer>` child of the `<secondary>` node can only come from the host, which may pass the
//! primary's there; then placeholders are checked against it at start-up with Fluentd's
//! messages. Without it, placeholders are expanded from what each chunk carries (its tag,
//! its variables, its `timekey`, else its first event's time).

pub use nagare_fileout::{fsio, meta};

use nagare_buffer::placeholders::expand;
use nagare_buffer::{ChunkId, ChunkKeys, RecordKey, TimeKey, TimekeyZone};
use nagare_plugin_sdk::api::{ChunkFormat, ConfigNode};
use nagare_plugin_sdk::{Chunk, Counter, Output, PluginContext, Result, error, export_plugins};
use serde::Deserialize;

/// `compress`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compress {
    /// The chunk bytes as they are.
    #[default]
    Text,
    /// One gzip member per chunk (`.gz`).
    Gzip,
}

fn dump_bin() -> String {
    "dump.bin".to_owned()
}

/// `out_secondary_file`'s parameters (Fluentd's names and defaults).
#[derive(Debug, Deserialize)]
pub struct SecondaryFileConfig {
    /// The directory of the dump files (required; placeholders allowed).
    pub directory: String,
    /// The file name (placeholders allowed, no `/`).
    #[serde(default = "dump_bin")]
    pub basename: String,
    /// Append every chunk to one file instead of one file per chunk (`.N`).
    #[serde(default)]
    pub append: bool,
    /// `text` or `gzip`.
    #[serde(default)]
    pub compress: Compress,
    /// Mode of new files, octal (Fluentd's `<system> file_permission`, default 0644).
    #[serde(default)]
    pub file_permission: Option<String>,
    /// Mode of new directories, octal (Fluentd's `<system> dir_permission`, default 0755).
    #[serde(default)]
    pub dir_permission: Option<String>,
}

/// `${tag}` or `${tag[N]}` (`PLACEHOLDER_REGEX`'s tag branch).
fn is_tag_placeholder(inner: &str) -> bool {
    inner == "tag"
        || inner
            .strip_prefix("tag[")
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The `${...}` names of `PLACEHOLDER_REGEX`: `tag`, `tag[N]` and `[\w.@-]+`.
pub fn placeholders(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(at) = rest.find("${") {
        let after = rest.get(at + 2..).unwrap_or("");
        match after.find('}') {
            Some(end) => {
                let inner = after.get(..end).unwrap_or("");
                let word = !inner.is_empty()
                    && inner
                        .chars()
                        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '@' | '-'));
                if word || is_tag_placeholder(inner) {
                    out.push(inner);
                }
                rest = after.get(end + 1..).unwrap_or("");
            }
            None => break,
        }
    }
    out
}

/// Whether `s` changes under strftime (Fluentd's `has_time_format?`).
pub fn has_time_format(s: &str) -> bool {
    use std::fmt::Write as _;
    let mut out = String::new();
    let now = chrono::Local::now();
    match write!(out, "{}", now.format(s)) {
        Ok(()) => out != s,
        Err(_) => s.contains('%'),
    }
}

/// `validate_compatible_with_primary_buffer!`.
pub fn validate_with_primary(path: &str, keys: &ChunkKeys) -> std::result::Result<(), String> {
    const PL: &str = "out_secondary_file: basename or directory has an incompatible placeholder";
    if keys.time.is_none() && has_time_format(path) {
        return Err(format!(
            "{PL}, remove time formats, like `%Y%m%d`, from basename or directory"
        ));
    }
    let names = placeholders(path);
    if !keys.tag
        && let Some(ph) = names.iter().find(|p| is_tag_placeholder(p))
    {
        return Err(format!(
            "{PL} {ph}, remove tag placeholder, like `${{tag}}`, from basename or directory"
        ));
    }
    if let Some(ph) = names.iter().find(|p| {
        !is_tag_placeholder(p) && **p != "chunk_id" && !keys.keys.iter().any(|k| k.name == **p)
    }) {
        return Err(format!(
            "{PL} {ph}, remove variable placeholder, like `${{varname}}`, from basename or directory"
        ));
    }
    Ok(())
}

struct Metrics {
    chunks: Counter,
    records: Counter,
    bytes: Counter,
    errors: Counter,
}

/// The `secondary_file` output.
pub struct SecondaryFile {
    ctx: PluginContext,
    /// `directory/basename`, placeholders unexpanded.
    path: String,
    /// The primary's chunk keys, when the host passed its `<buffer>`.
    keys: Option<ChunkKeys>,
    append: bool,
    compress: Compress,
    file_mode: u32,
    dir_mode: u32,
    metrics: Metrics,
}

impl std::fmt::Debug for SecondaryFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecondaryFile")
            .field("path", &self.path)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Output for SecondaryFile {
    fn new(ctx: &PluginContext, config: &ConfigNode) -> Result<Self> {
        let loc = config.location.as_str();
        let cfg_err = |m: &dyn std::fmt::Display| error::config_error(format!("{loc}: {m}"));
        if config.name.as_str() != "secondary" {
            return Err(cfg_err(
                &"This plugin can only be used in the <secondary> section",
            ));
        }
        let conf: SecondaryFileConfig = ctx.config(config)?;
        if conf.basename.contains('/') {
            return Err(cfg_err(&"basename should not include `/`"));
        }
        let path = if conf.directory.ends_with('/') {
            format!("{}{}", conf.directory, conf.basename)
        } else {
            format!("{}/{}", conf.directory, conf.basename)
        };
        let keys = match meta::buffer_section(config) {
            Some(b) => Some(
                meta::chunk_keys(b.arg.as_str(), &meta::time_params(b)).map_err(|e| cfg_err(&e))?,
            ),
            None => None,
        };
        if let Some(k) = &keys {
            validate_with_primary(&path, k).map_err(|e| cfg_err(&e))?;
        }
        if !fsio::writable_p(&path) {
            return Err(cfg_err(&format!(
                "out_secondary_file: `{}` should be writable",
                conf.directory
            )));
        }
        let (file_mode, dir_mode) = fsio::permissions(
            conf.file_permission.as_deref(),
            conf.dir_permission.as_deref(),
            loc,
        )?;
        Ok(SecondaryFile {
            ctx: ctx.clone(),
            path,
            keys,
            append: conf.append,
            compress: conf.compress,
            file_mode,
            dir_mode,
            metrics: Metrics {
                chunks: ctx.counter("chunks", "chunks dumped"),
                records: ctx.counter("records", "events dumped"),
                bytes: ctx.counter("bytes", "bytes written to files"),
                errors: ctx.counter("errors", "failed writes"),
            },
        })
    }

    fn write(&self, chunk: Chunk<'_>) -> Result<()> {
        let r = self.write_chunk(&chunk);
        match &r {
            Ok(()) => {
                self.metrics.chunks.inc();
                self.metrics.records.add(f64::from(chunk.records()));
            }
            Err(_) => self.metrics.errors.inc(),
        }
        r
    }
}

impl SecondaryFile {
    fn context(&self, chunk: &Chunk<'_>) -> String {
        format!(
            "secondary_file {}: chunk {} (tag {})",
            self.ctx.plugin_id(),
            chunk.id_hex(),
            chunk.tag()
        )
    }

    /// The chunk keys to expand with: the primary's, else what the chunk carries.
    fn keys_for(&self, chunk: &Chunk<'_>) -> ChunkKeys {
        if let Some(k) = &self.keys {
            return k.clone();
        }
        let local = *chrono::Local::now().offset();
        ChunkKeys {
            tag: placeholders(&self.path)
                .iter()
                .any(|p| is_tag_placeholder(p)),
            time: (chunk.variable(meta::TIMEKEY_VAR).is_some() || has_time_format(&self.path))
                .then_some(TimeKey {
                    timekey: 1,
                    timekey_wait: 0,
                    zone: TimekeyZone::Fixed(local),
                    use_utc: false,
                }),
            keys: chunk
                .variables()
                .filter(|(k, _)| *k != meta::TIMEKEY_VAR)
                .map(|(k, _)| RecordKey {
                    name: k.to_owned(),
                    path: vec![k.to_owned()],
                })
                .collect(),
        }
    }

    fn write_chunk(&self, chunk: &Chunk<'_>) -> Result<()> {
        let bad = |e: &dyn std::fmt::Display| {
            error::unrecoverable(format!("{}: {e}", self.context(chunk)))
        };
        let payload = chunk.payload().map_err(|e| bad(&e))?;
        let keys = self.keys_for(chunk);
        let mut meta = meta::chunk_metadata(chunk, &keys);
        if let (Some(tk), None) = (&keys.time, meta.timekey) {
            let first = nagare_plugin_sdk::ChunkReader::new(payload)
                .next()
                .and_then(|e| e.ok())
                .map(|e| e.time.sec);
            meta.timekey = Some(tk.timekey_of(i64::from(first.unwrap_or(0))));
        }
        let id = ChunkId(chunk.id());
        let base = expand(&self.path, &meta, Some(&id), &keys).map_err(|e| bad(&e))?;
        let data = match (self.compress, chunk.format()) {
            (Compress::Text, _) => payload.to_vec(),
            (Compress::Gzip, ChunkFormat::MSGPACK_STREAM_GZIP) => chunk.bytes().to_vec(),
            (Compress::Gzip, _) => fsio::gzip(payload).map_err(|e| {
                error::internal(format!("{}: cannot compress: {e}", self.context(chunk)))
            })?,
        };
        self.write_file(&base, &data).map_err(|e| {
            error::retryable(format!("{}: cannot write {base}: {e}", self.context(chunk)))
        })?;
        self.metrics.bytes.add(data.len() as f64);
        Ok(())
    }

    /// `generate_path` + write: `base[.N]` + `.gz`; returns the path written.
    fn write_file(&self, base: &str, data: &[u8]) -> std::io::Result<String> {
        let suffix = match self.compress {
            Compress::Text => "",
            Compress::Gzip => ".gz",
        };
        fsio::create_parent_dirs(base, self.dir_mode)?;
        let (file, path, created) = if self.append {
            let path = format!("{base}{suffix}");
            let (f, created) = fsio::open_append(&path, self.file_mode)?;
            (f, path, created)
        } else {
            let (f, path) =
                fsio::claim_first_free(|i| format!("{base}.{i}{suffix}"), self.file_mode)?;
            (f, path, true)
        };
        fsio::write_durably(file, &path, created, data)?;
        Ok(path)
    }
}

export_plugins! {
    outputs: ["secondary_file" => SecondaryFile],
}

#[cfg(test)]
mod tests;
