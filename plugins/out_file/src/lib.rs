//! `out_file` (`@type file`): writes each chunk to a file, the way Fluentd's `out_file.rb`
//! names and fills them.
//!
//! * **File name**: `path` + `.%Y%m%d` (the granularity follows `timekey`: `%Y%m%d%H` below a
//!   day, `%Y%m%d%H%M` below an hour, `%Y%m%d%H%M%S` below a minute; nothing is added when
//!   the path already has those fields, `*` in the path is replaced by them) when `time` is a
//!   chunk key, then `_N` (the first free index) unless `append true`, then `path_suffix`
//!   (`.log`, when `add_path_suffix`), then `.gz` with `compress gzip` (`.zst` with `zstd`).
//!   `${tag}`, `${tag[N]}`, `${key}`, `${chunk_id}` and strftime fields are expanded per chunk
//!   ([`nagare_buffer::placeholders`]) and checked against the chunk keys at start-up with
//!   Fluentd's messages. A tag or value that would leave the directory (`../`, leading `/`)
//!   makes the write `UNRECOVERABLE`.
//! * **Chunk keys**: from the `<buffer>` section (default `time` with `timekey 1d`, as Fluentd
//!   sets for this plugin); the host applies the buffer, this plugin only names files from
//!   the chunk's variables — or, when a chunk arrives without them, from each event
//!   ([`meta`]), writing one file per distinct key.
//! * **Content**: `<format>` (default `out_file`: `time<TAB>tag<TAB>json`; every formatter of
//!   `nagare-formats`), after `<inject>`. v0.12 flat params (`format`, `utc`,
//!   `include_time_key`, `time_slice_format`, …) are converted as Fluentd's
//!   `compat_parameters` does.
//! * **Durability**: parent directories are created (`dir_permission`), the whole formatted
//!   chunk is written under an exclusive lock (`file_permission` for new files), the file
//!   (and a new file's directory) is fsynced before `write` returns `Ok`. A failed write is
//!   rolled back (the new file removed, an appended file truncated back) and `RETRYABLE`.
//! * **Throughput**: a chunk that goes to one plain-text file with nothing to inject (the
//!   common case) is formatted straight from its msgpack bytes into a buffer reused across
//!   chunks and written in [`STREAM_PIECE`] slices while it is formatted (still under the
//!   lock, still undone whole on any error); other chunks are formatted whole, then
//!   compressed, then written with one `write`.
//! * `symlink_path` points at the latest file written (highest timekey).

pub use nagare_fileout::{fsio, meta};
pub mod path;

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Mutex;

use nagare_buffer::placeholders::{PlaceholderError, expand, validate_placeholders};
use nagare_buffer::{ChunkId, ChunkKeys, Metadata};
use nagare_formats::{Formatter, InjectConfig, Injector, Params, Scratch};
use nagare_plugin_sdk::api::ConfigNode;
use nagare_plugin_sdk::config::attr;
use nagare_plugin_sdk::{
    Chunk, ChunkReader, Counter, Output, PluginContext, Result, Visited, error, export_plugins,
};
use serde::Deserialize;

use crate::meta::{Groups, chunk_is_keyed, chunk_metadata, entry_metadata};
use crate::path::{Compress, TemplateOptions, claim_indexed, generate_path_template};

/// How many formatted bytes a streamed chunk gathers before writing them to its file: a
/// fraction of a core's L2 cache, and few enough syscalls (one per 256 KiB).
pub const STREAM_PIECE: usize = 256 << 10;

/// Why a streamed chunk failed: the file (retryable) or the chunk itself (unrecoverable).
enum StreamError {
    Io(std::io::Error),
    Format(nagare_plugin_sdk::PluginError),
}

impl From<std::io::Error> for StreamError {
    fn from(e: std::io::Error) -> Self {
        StreamError::Io(e)
    }
}

/// The largest output buffer kept from one chunk for the next (bigger ones are freed).
pub const MAX_SPARE_BUFFER: usize = 64 << 20;

/// Fluentd's `DEFAULT_TIMEKEY` for out_file (one day).
pub const DEFAULT_TIMEKEY: u64 = 86_400;

fn yes() -> bool {
    true
}

fn default_path_suffix() -> String {
    ".log".to_owned()
}

/// `out_file`'s parameters (Fluentd's names and defaults). The `<format>` and `<inject>`
/// sections and the v0.12 flat `format` param are read from the node as formatter params
/// ([`format_params`], [`inject_params`]); `<buffer>` for its chunk keys ([`file_chunk_keys`]).
#[derive(Debug, Deserialize)]
pub struct FileConfig {
    /// The file path, with placeholders (required).
    pub path: String,
    /// Add `path_suffix` to the file name.
    #[serde(default = "yes")]
    pub add_path_suffix: bool,
    /// The suffix added to the file name.
    #[serde(default = "default_path_suffix")]
    pub path_suffix: String,
    /// Append every chunk to one file instead of one file per chunk (`_N`).
    #[serde(default)]
    pub append: bool,
    /// `text`, `gz`/`gzip` or `zstd`.
    #[serde(default)]
    pub compress: Compress,
    /// Compress again even when the buffer chunk is compressed. Chunks here hold msgpack
    /// and are always formatted then compressed, so the output is the same either way.
    #[serde(default)]
    pub recompress: bool,
    /// A symlink kept pointing at the latest file written (placeholders allowed).
    #[serde(default)]
    pub symlink_path: Option<String>,
    /// Mode of new files, octal (Fluentd's `<system> file_permission`, default 0644).
    #[serde(default)]
    pub file_permission: Option<String>,
    /// Mode of new directories, octal (Fluentd's `<system> dir_permission`, default 0755).
    #[serde(default)]
    pub dir_permission: Option<String>,
    /// v0.12: the time part of the file name (sets the timekey when there is no `<buffer>`).
    #[serde(default)]
    pub time_slice_format: Option<String>,
    /// v0.12: `timekey_wait` when there is no `<buffer>` (read by the host).
    #[serde(default)]
    pub time_slice_wait: Option<String>,
    /// v0.12 formatter/inject params, converted like Fluentd's `compat_parameters`.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// v0.12 csv formatter param.
    #[serde(default)]
    pub force_quotes: Option<String>,
    /// v0.12 tsv formatter param.
    #[serde(default)]
    pub keys: Option<String>,
    /// v0.12 csv formatter param.
    #[serde(default)]
    pub fields: Option<String>,
    /// v0.12 json formatter param.
    #[serde(default)]
    pub json_parser: Option<String>,
    /// v0.12 ltsv formatter param.
    #[serde(default)]
    pub label_delimiter: Option<String>,
    /// v0.12 out_file formatter param.
    #[serde(default)]
    pub output_time: Option<String>,
    /// v0.12 out_file formatter param.
    #[serde(default)]
    pub output_tag: Option<String>,
    /// v0.12 time zone switch (formatter and inject).
    #[serde(default)]
    pub localtime: Option<String>,
    /// v0.12 time zone switch (formatter and inject).
    #[serde(default)]
    pub utc: Option<String>,
    /// v0.12 time zone (formatter, inject, and `timekey_zone` without `<buffer>`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// v0.12 single_value formatter param.
    #[serde(default)]
    pub message_key: Option<String>,
    /// v0.12 single_value formatter param.
    #[serde(default)]
    pub add_newline: Option<String>,
    /// v0.12 stdout formatter param.
    #[serde(default)]
    pub output_type: Option<String>,
    /// v0.12 inject: add the time under `time_key`.
    #[serde(default)]
    pub include_time_key: Option<String>,
    /// v0.12 inject: where the time goes.
    #[serde(default)]
    pub time_key: Option<String>,
    /// v0.12 inject: how the time is written.
    #[serde(default)]
    pub time_format: Option<String>,
    /// v0.12 inject: add the tag under `tag_key`.
    #[serde(default)]
    pub include_tag_key: Option<String>,
    /// v0.12 inject: where the tag goes.
    #[serde(default)]
    pub tag_key: Option<String>,
    /// v0.12: times as epoch seconds (formatter and inject).
    #[serde(default)]
    pub time_as_epoch: Option<String>,
}

/// `compat_parameters.rb FORMATTER_PARAMS`: flat name → `<format>` name.
const FORMATTER_PARAMS: [(&str, &str); 15] = [
    ("format", "@type"),
    ("delimiter", "delimiter"),
    ("force_quotes", "force_quotes"),
    ("keys", "keys"),
    ("fields", "fields"),
    ("json_parser", "json_parser"),
    ("label_delimiter", "label_delimiter"),
    ("output_time", "output_time"),
    ("output_tag", "output_tag"),
    ("localtime", "localtime"),
    ("utc", "utc"),
    ("timezone", "timezone"),
    ("message_key", "message_key"),
    ("add_newline", "add_newline"),
    ("output_type", "output_type"),
];

/// `compat_parameters.rb INJECT_PARAMS` (flat names that trigger an `<inject>`).
const INJECT_PARAMS: [&str; 8] = [
    "include_time_key",
    "time_key",
    "time_format",
    "timezone",
    "include_tag_key",
    "tag_key",
    "localtime",
    "utc",
];

fn child<'a>(node: &'a ConfigNode, name: &str) -> Option<&'a ConfigNode> {
    node.children.iter().find(|c| c.name.as_str() == name)
}

/// A section's params as [`Params`] (`@type` included).
fn section_params(node: &ConfigNode) -> Params {
    node.attrs
        .iter()
        .filter_map(|a| {
            let v = a.1.as_ref().map(|v| v.to_string()).into_option()?;
            Some((a.0.to_string(), v))
        })
        .collect()
}

fn truthy(v: Option<&str>) -> bool {
    matches!(v.map(str::trim), Some("" | "true" | "yes"))
}

/// The `<format>` params: the section, else the v0.12 flat params; `@type` defaults to
/// `out_file`.
pub fn format_params(node: &ConfigNode) -> Params {
    let mut p = match child(node, "format") {
        Some(sec) => section_params(sec),
        None => {
            let mut p = Params::new();
            for (old, new) in FORMATTER_PARAMS {
                if let Some(v) = attr(node, old) {
                    p.set(new, v);
                }
            }
            if truthy(attr(node, "time_as_epoch")) {
                p.set("time_type", "unixtime");
            }
            p
        }
    };
    if p.type_name().is_none() {
        p.set("@type", "out_file");
    }
    p
}

/// The `<inject>` params: the section, else the v0.12 flat params, else none.
pub fn inject_params(node: &ConfigNode) -> std::result::Result<Option<Params>, String> {
    if let Some(sec) = child(node, "inject") {
        return Ok(Some(section_params(sec)));
    }
    if INJECT_PARAMS.iter().all(|k| attr(node, k).is_none()) {
        return Ok(None);
    }
    let mut p = Params::new();
    for k in ["time_key", "time_format", "timezone", "tag_key"] {
        if let Some(v) = attr(node, k) {
            p.set(k, v);
        }
    }
    if truthy(attr(node, "include_time_key")) {
        if !p.has("time_key") {
            p.set("time_key", "time");
        }
        p.set("time_type", "string");
    }
    if truthy(attr(node, "time_as_epoch")) {
        if !p.has("time_key") {
            p.set("time_key", "time");
        }
        p.set("time_type", "unixtime");
    }
    match (attr(node, "localtime"), attr(node, "utc")) {
        (Some(_), Some(_)) => {
            return Err("both of utc and localtime are specified, use only one of them".into());
        }
        (Some(l), None) => {
            p.set("localtime", if truthy(Some(l)) { "true" } else { "false" });
        }
        (None, Some(u)) => {
            p.set("localtime", if truthy(Some(u)) { "false" } else { "true" });
        }
        (None, None) => {}
    }
    if truthy(attr(node, "include_tag_key")) && !p.has("tag_key") {
        p.set("tag_key", "tag");
    }
    Ok(Some(p))
}

/// The chunk keys Fluentd would use for this out_file: the `<buffer>` section (default
/// chunk key `time`, default timekey 1d), else the v0.12 time-sliced params.
pub fn file_chunk_keys(node: &ConfigNode) -> std::result::Result<ChunkKeys, String> {
    let mut params;
    let arg;
    match meta::buffer_section(node) {
        Some(b) => {
            arg = if b.arg.trim().is_empty() {
                "time".to_owned()
            } else {
                b.arg.to_string()
            };
            params = meta::time_params(b);
        }
        None => {
            arg = "time".to_owned();
            params = Vec::new();
            if let Some(tsf) = attr(node, "time_slice_format") {
                let tk = if tsf.contains("%S") {
                    1
                } else if tsf.contains("%M") {
                    60
                } else if tsf.contains("%H") {
                    3600
                } else if tsf.contains("%d") {
                    86400
                } else {
                    return Err("time_slice_format only with %Y or %m is too long".into());
                };
                params.push(("timekey".to_owned(), tk.to_string()));
                match (attr(node, "localtime"), attr(node, "utc")) {
                    (Some(_), Some(_)) => {
                        return Err(
                            "both of utc and localtime are specified, use only one of them".into(),
                        );
                    }
                    (Some(l), None) => {
                        params.push(("timekey_use_utc".into(), (!truthy(Some(l))).to_string()))
                    }
                    (None, Some(u)) => {
                        params.push(("timekey_use_utc".into(), truthy(Some(u)).to_string()));
                    }
                    (None, None) => {}
                }
            }
            if let Some(w) = attr(node, "time_slice_wait") {
                params.push(("timekey_wait".into(), w.to_owned()));
            }
            if let Some(z) = attr(node, "timezone") {
                params.push(("timekey_zone".into(), z.to_owned()));
            }
        }
    }
    if !params.iter().any(|(k, _)| k == "timekey") {
        params.push(("timekey".into(), DEFAULT_TIMEKEY.to_string()));
    }
    meta::chunk_keys(&arg, &params)
}

/// The counters of one instance, registered once.
struct Metrics {
    chunks: Counter,
    records: Counter,
    bytes: Counter,
    files: Counter,
    errors: Counter,
}

impl Metrics {
    fn new(ctx: &PluginContext) -> Self {
        Metrics {
            chunks: ctx.counter("chunks", "chunks written"),
            records: ctx.counter("records", "events written"),
            bytes: ctx.counter("bytes", "bytes written to files (after compression)"),
            files: ctx.counter("files", "files written (one per chunk and key)"),
            errors: ctx.counter("errors", "failed writes"),
        }
    }
}

/// The `file` output.
pub struct FileOutput {
    ctx: PluginContext,
    /// `path` with the time suffix, `_**`, `path_suffix` and compression suffix.
    template: String,
    symlink_template: Option<String>,
    keys: ChunkKeys,
    append: bool,
    compress: Compress,
    formatter: Box<dyn Formatter>,
    injector: Option<Injector>,
    file_mode: u32,
    dir_mode: u32,
    /// Symlink path → timekey of the file it points at.
    latest: Mutex<HashMap<String, Option<i64>>>,
    /// The formatted text of the last chunk, emptied, kept for the next one: formatting
    /// writes into memory already faulted in instead of a fresh multi-MB allocation.
    spare: Mutex<Vec<u8>>,
    metrics: Metrics,
}

impl std::fmt::Debug for FileOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileOutput")
            .field("template", &self.template)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// Metadata shaped like Fluentd's `chunk_for_test` for the writability check: tag `a.a…`,
/// every record key `data`, the current time slice.
fn dummy_metadata(template: &str, keys: &ChunkKeys) -> Metadata {
    let max_tag_index = (0..8usize)
        .rev()
        .find(|i| template.contains(&format!("${{tag[{i}]}}")))
        .unwrap_or(1)
        .max(1);
    let now = chrono::Utc::now().timestamp();
    Metadata {
        timekey: keys.time.as_ref().map(|tk| tk.timekey_of(now)),
        tag: keys.tag.then(|| vec!["a"; max_tag_index].join(".")),
        variables: keys
            .keys
            .iter()
            .map(|k| (k.name.clone(), Some("data".to_owned())))
            .collect(),
    }
}

impl Output for FileOutput {
    fn new(ctx: &PluginContext, config: &ConfigNode) -> Result<Self> {
        // `format` is both a v0.12 param and a section name; both are read below.
        let mut typed = config.clone();
        typed.attrs.retain(|a| a.0.as_str() != "format");
        typed
            .children
            .retain(|c| !matches!(c.name.as_str(), "format" | "inject"));
        let conf: FileConfig = ctx.config(&typed)?;
        let loc = config.location.as_str();
        let cfg_err = |m: &dyn std::fmt::Display| error::config_error(format!("{loc}: {m}"));

        let keys = file_chunk_keys(config).map_err(|e| cfg_err(&e))?;
        let path_suffix = if conf.add_path_suffix {
            conf.path_suffix.as_str()
        } else {
            ""
        };
        let template = generate_path_template(
            &conf.path,
            &TemplateOptions {
                timekey: keys.time.as_ref().map(|t| t.timekey),
                append: conf.append,
                compress: conf.compress,
                path_suffix,
                time_slice_format: conf.time_slice_format.as_deref(),
            },
        )
        .map_err(|e| cfg_err(&e))?;
        validate_placeholders("path", &template, &keys).map_err(|e| cfg_err(&e))?;

        let test_path = expand(&template, &dummy_metadata(&template, &keys), None, &keys)
            .map_err(|e| cfg_err(&e))?;
        if !fsio::writable_p(&test_path) {
            return Err(cfg_err(&format!("out_file: `{test_path}` is not writable")));
        }

        let formatter =
            nagare_formats::build_formatter(&format_params(config)).map_err(|e| cfg_err(&e))?;
        let injector = match inject_params(config).map_err(|e| cfg_err(&e))? {
            Some(p) => {
                let c = InjectConfig::from_params(&p).map_err(|e| cfg_err(&e))?;
                c.is_enabled().then(|| Injector::new(c, 0))
            }
            None => None,
        };
        let (file_mode, dir_mode) = fsio::permissions(
            conf.file_permission.as_deref(),
            conf.dir_permission.as_deref(),
            loc,
        )?;
        Ok(FileOutput {
            ctx: ctx.clone(),
            template,
            symlink_template: conf.symlink_path.clone(),
            keys,
            append: conf.append,
            compress: conf.compress,
            formatter,
            injector,
            file_mode,
            dir_mode,
            latest: Mutex::new(HashMap::new()),
            spare: Mutex::new(Vec::new()),
            metrics: Metrics::new(ctx),
        })
    }

    /// A file buffer's chunks are read in place (mapped from the page cache) rather than
    /// copied into memory as they are written; `write` is done with them when it returns.
    fn accepts_file_ranges(&self) -> bool {
        true
    }

    fn write(&self, chunk: Chunk<'_>) -> Result<()> {
        let r = self.write_chunk(&chunk);
        if r.is_err() {
            self.metrics.errors.inc();
        }
        r
    }
}

impl FileOutput {
    /// The path template (for tests and logs).
    pub fn template(&self) -> &str {
        &self.template
    }

    fn context(&self, chunk: &Chunk<'_>) -> String {
        format!(
            "out_file {}: chunk {} (tag {})",
            self.ctx.plugin_id(),
            chunk.id_hex(),
            chunk.tag()
        )
    }

    /// Formats the chunk into one buffer per metadata.
    fn render(&self, chunk: &Chunk<'_>) -> Result<Vec<(Metadata, Vec<u8>, u32)>> {
        let bad = |e: &dyn std::fmt::Display| {
            error::unrecoverable(format!("{}: {e}", self.context(chunk)))
        };
        let keyed = chunk_is_keyed(chunk, &self.keys);
        let tag = chunk.tag();
        // A chunk file that cannot be read now may be read on a retry; a chunk that does not
        // decode never will.
        let payload = chunk.payload().map_err(|e| match e {
            nagare_plugin_sdk::chunk::ChunkError::FileRanges(m) => {
                error::retryable(format!("{}: chunk file: {m}", self.context(chunk)))
            }
            e => bad(&e),
        })?;
        let mut single: (Vec<u8>, u32) = (self.take_buffer(payload.len() * 2), 0);
        let mut groups: Groups<(Vec<u8>, u32)> = Groups::default();
        let mut scratch = Scratch::new();
        for entry in ChunkReader::new(payload) {
            let entry = entry.map_err(|e| bad(&e))?;
            let time = nagare_formats::EventTime::new(entry.time.sec, entry.time.nsec);
            // Hot path: one file for the whole chunk and nothing to inject, so formatters that
            // can render straight from the msgpack bytes skip building a Value.
            if keyed && self.injector.is_none() {
                let mark = single.0.len();
                match self.formatter.format_raw_with(
                    tag,
                    time,
                    entry.record,
                    &mut single.0,
                    &mut scratch,
                ) {
                    Some(r) => {
                        r.map_err(|e| bad(&e))?;
                        single.1 += 1;
                        continue;
                    }
                    None => single.0.truncate(mark),
                }
            }
            let mut record = entry.value().map_err(|e| bad(&e))?;
            let slot = if keyed {
                &mut single
            } else {
                groups.slot(entry_metadata(chunk, &self.keys, entry.time.sec, &record))
            };
            if let Some(inj) = &self.injector {
                inj.inject(tag, time, &mut record).map_err(|e| bad(&e))?;
            }
            self.formatter
                .format(tag, time, &record, &mut slot.0)
                .map_err(|e| bad(&e))?;
            slot.1 += 1;
        }
        Ok(if keyed {
            if single.1 == 0 {
                self.give_buffer(single.0);
                Vec::new()
            } else {
                vec![(chunk_metadata(chunk, &self.keys), single.0, single.1)]
            }
        } else {
            self.give_buffer(single.0);
            groups
                .into_vec()
                .into_iter()
                .map(|(m, (d, n))| (m, d, n))
                .collect()
        })
    }

    fn write_chunk(&self, chunk: &Chunk<'_>) -> Result<()> {
        if self.compress == Compress::Text
            && self.injector.is_none()
            && chunk_is_keyed(chunk, &self.keys)
        {
            // A file buffer's chunk is rendered in place from the page cache (no copy of it
            // was kept in memory); each frame of it holds whole entries.
            if let Some(ranges) = chunk.file_ranges() {
                let io = |e: &dyn std::fmt::Display| {
                    error::retryable(format!("{}: chunk file: {e}", self.context(chunk)))
                };
                let ranges = ranges.map_err(|e| io(&e))?;
                if let Some(mapped) = ranges.map().map_err(|e| io(&e))? {
                    let segments: Vec<&[u8]> = mapped.segments().collect();
                    return self.write_streamed(chunk, &segments);
                }
            } else if !chunk.bytes().is_empty() {
                let payload = chunk
                    .payload()
                    .map_err(|e| error::unrecoverable(format!("{}: {e}", self.context(chunk))))?;
                return self.write_streamed(chunk, &[payload]);
            }
        }
        let groups = self.render(chunk)?;
        let id = ChunkId(chunk.id());
        for (meta, data, records) in groups {
            let path = expand(&self.template, &meta, Some(&id), &self.keys)
                .map_err(|e| self.placeholder_error(chunk, e))?;
            let encoded = self.encode(&data).map_err(|e| {
                error::internal(format!("{}: cannot compress: {e}", self.context(chunk)))
            })?;
            let written = self.write_file(&path, &encoded).map_err(|e| {
                error::retryable(format!("{}: cannot write {path}: {e}", self.context(chunk)))
            })?;
            self.metrics.files.inc();
            self.metrics.records.add(f64::from(records));
            self.metrics.bytes.add(encoded.len() as f64);
            drop(encoded);
            self.give_buffer(data);
            self.update_symlink(&meta, &id, &written);
        }
        self.metrics.chunks.inc();
        Ok(())
    }

    /// The common case — one file for the whole chunk, plain text, nothing to inject —
    /// formatted in pieces of [`STREAM_PIECE`] bytes, each written as soon as it is full: the
    /// text is still in the CPU's cache when the kernel copies it, and no buffer the size of
    /// the chunk is needed. Under the file's lock, fsynced at the end, undone on any error
    /// like a whole-chunk write.
    fn write_streamed(&self, chunk: &Chunk<'_>, segments: &[&[u8]]) -> Result<()> {
        let id = ChunkId(chunk.id());
        let meta = chunk_metadata(chunk, &self.keys);
        let path = expand(&self.template, &meta, Some(&id), &self.keys)
            .map_err(|e| self.placeholder_error(chunk, e))?;
        let mut buf = self.take_buffer(STREAM_PIECE + STREAM_PIECE / 4);
        let result = self.write_file_with(&path, |file| {
            self.stream_chunk(chunk, segments, file, &mut buf)
        });
        self.give_buffer(buf);
        let ((records, bytes), written) = result.map_err(|e| match e {
            StreamError::Format(e) => e,
            StreamError::Io(e) => {
                error::retryable(format!("{}: cannot write {path}: {e}", self.context(chunk)))
            }
        })?;
        self.metrics.files.inc();
        self.metrics.records.add(f64::from(records));
        self.metrics.bytes.add(bytes as f64);
        self.update_symlink(&meta, &id, &written);
        self.metrics.chunks.inc();
        Ok(())
    }

    /// Formats every entry of `chunk` (its payload: the entries of `segments`, in order) into
    /// `buf`, writing it to `file` whenever it holds [`STREAM_PIECE`] bytes; returns the
    /// events and bytes written.
    fn stream_chunk(
        &self,
        chunk: &Chunk<'_>,
        segments: &[&[u8]],
        file: &mut std::fs::File,
        buf: &mut Vec<u8>,
    ) -> std::result::Result<(u32, usize), StreamError> {
        let bad = |e: &dyn std::fmt::Display| {
            StreamError::Format(error::unrecoverable(format!(
                "{}: {e}",
                self.context(chunk)
            )))
        };
        let tag = chunk.tag();
        let mut scratch = Scratch::new();
        let (mut records, mut bytes) = (0u32, 0usize);
        buf.clear();
        for segment in segments {
            let mut reader = ChunkReader::new(segment);
            loop {
                // Hot path: the formatter walks each record once, rendering it and measuring it
                // for the reader.
                let mark = buf.len();
                let mut failed = None;
                let mut declined = false;
                let visited = reader.next_rendering(|time, rest| {
                    let time = nagare_formats::EventTime::new(time.sec, time.nsec);
                    match self
                        .formatter
                        .format_raw_prefix_with(tag, time, rest, buf, &mut scratch)
                    {
                        Some(Ok(used)) => Some(used),
                        Some(Err(e)) => {
                            failed = Some(e);
                            None
                        }
                        None => {
                            declined = true;
                            None
                        }
                    }
                });
                match visited {
                    Visited::Entry(_) => {}
                    Visited::End => break,
                    Visited::Fallback => {
                        buf.truncate(mark);
                        if let Some(e) = failed {
                            return Err(bad(&e));
                        }
                        let Some(entry) = reader.next() else { break };
                        let entry = entry.map_err(|e| bad(&e))?;
                        let time = nagare_formats::EventTime::new(entry.time.sec, entry.time.nsec);
                        // A record the prefix renderer declined gets the same answer again
                        // (it depends on the record's bytes alone): go straight to the raw
                        // renderer. One the reader did not offer it (an unusual entry head)
                        // may still take the cached path.
                        let rendered = if declined {
                            self.formatter.format_raw(tag, time, entry.record, buf)
                        } else {
                            self.formatter.format_raw_with(
                                tag,
                                time,
                                entry.record,
                                buf,
                                &mut scratch,
                            )
                        };
                        match rendered {
                            Some(r) => r.map_err(|e| bad(&e))?,
                            None => {
                                buf.truncate(mark);
                                let record = entry.value().map_err(|e| bad(&e))?;
                                self.formatter
                                    .format(tag, time, &record, buf)
                                    .map_err(|e| bad(&e))?;
                            }
                        }
                    }
                }
                records += 1;
                if buf.len() >= STREAM_PIECE {
                    file.write_all(buf)?;
                    bytes += buf.len();
                    buf.clear();
                }
            }
        }
        file.write_all(buf)?;
        bytes += buf.len();
        buf.clear();
        Ok((records, bytes))
    }

    fn placeholder_error(
        &self,
        chunk: &Chunk<'_>,
        e: PlaceholderError,
    ) -> nagare_plugin_sdk::PluginError {
        error::unrecoverable(format!("{}: {e}", self.context(chunk)))
    }

    fn encode<'d>(&self, data: &'d [u8]) -> std::io::Result<std::borrow::Cow<'d, [u8]>> {
        Ok(match self.compress {
            Compress::Text => std::borrow::Cow::Borrowed(data),
            Compress::Gz | Compress::Gzip => fsio::gzip(data)?.into(),
            Compress::Zstd => zstd::encode_all(data, 3)?.into(),
        })
    }

    /// An empty buffer with room for `want` bytes: the spare one when there is one.
    fn take_buffer(&self, want: usize) -> Vec<u8> {
        let mut buf = std::mem::take(
            &mut *self
                .spare
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        buf.clear();
        buf.reserve(want);
        buf
    }

    /// Keeps `buf` for the next chunk when it is the largest seen and not too large.
    fn give_buffer(&self, buf: Vec<u8>) {
        if buf.capacity() > MAX_SPARE_BUFFER {
            return;
        }
        let mut spare = self
            .spare
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buf.capacity() > spare.capacity() {
            *spare = buf;
        }
    }

    /// Creates directories, picks the file (append or the next free `_N`), writes, fsyncs;
    /// returns the path written.
    fn write_file(&self, path: &str, data: &[u8]) -> std::io::Result<String> {
        self.write_file_with(path, |f: &mut std::fs::File| f.write_all(data))
            .map(|((), actual)| actual)
    }

    /// [`FileOutput::write_file`] with the data written piece by piece by `fill`; returns what
    /// `fill` returned and the path written.
    fn write_file_with<T, E: From<std::io::Error>>(
        &self,
        path: &str,
        fill: impl FnOnce(&mut std::fs::File) -> std::result::Result<T, E>,
    ) -> std::result::Result<(T, String), E> {
        fsio::create_parent_dirs(path, self.dir_mode)?;
        let (file, actual, created) = if self.append {
            let (f, created) = fsio::open_append(path, self.file_mode)?;
            (f, path.to_owned(), created)
        } else {
            let (f, actual) = claim_indexed(path, self.file_mode)?;
            (f, actual, true)
        };
        let t = fsio::write_durably_with(file, &actual, created, fill)?;
        Ok((t, actual))
    }

    /// Points `symlink_path` at `written` when its timekey is the latest seen. A failure is
    /// logged, not returned: the data is already durable and a retry would duplicate it.
    fn update_symlink(&self, meta: &Metadata, id: &ChunkId, written: &str) {
        let Some(tmpl) = &self.symlink_template else {
            return;
        };
        let link = match expand(tmpl, meta, Some(id), &self.keys) {
            Ok(l) => l,
            Err(e) => {
                nagare_plugin_sdk::warn!(self.ctx, "symlink_path not updated: {e}");
                return;
            }
        };
        let mut latest = self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(seen) = latest.get(&link)
            && *seen > meta.timekey
        {
            return;
        }
        match fsio::replace_symlink(written, &link, self.dir_mode) {
            Ok(()) => {
                latest.insert(link, meta.timekey);
            }
            Err(e) => {
                nagare_plugin_sdk::warn!(self.ctx, "cannot link {link} to {written}: {e}");
            }
        }
    }
}

export_plugins! {
    outputs: ["file" => FileOutput],
}

#[cfg(test)]
mod tests;
