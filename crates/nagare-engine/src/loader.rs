//! Finding and loading plugin `.so` files (`plugin-abi.md` §2.5 "Version checks").
//!
//! [`PluginSearchPath`] lists directories in order: `-p DIR` flags, `NAGARE_PLUGIN_PATH`
//! (colon-separated), the running executable's directory (dev builds: cargo puts
//! `libnagare_*.so` next to the binary), and `<exe>/../lib/nagare/plugins` (installed layout).
//! In the executable's directory only `libnagare_*.so` files count; elsewhere any `*.so`.
//!
//! [`load_plugin`] checks one file, in this order, each failure a one-line [`LoadError`]:
//! 1. neither the file nor its directory may be group- or world-writable;
//! 2. `dlopen` with `libloading` and the plain `nagare_plugin_abi_epoch` probe (missing:
//!    not a nagare plugin; other value: built for another epoch). The library handle is leaked
//!    on purpose: plugins are never unloaded (`dlclose` after TLS use is unsound);
//! 3. abi_stable's header, version and layout checks through `lib_header_from_path` +
//!    `init_root_module` (never `RootModule::load_from_file`, which caches one module per
//!    interface type, abi_stable #92); a layout report is cut down to its `Error:` lines;
//! 4. the root module's `abi_epoch` field, then the manifest.
//!
//! Lazy loading: plugins built with the SDK's `export_plugins!` carry their manifest's type list
//! in the ELF section [`MANIFEST_SECTION`] (`.nagare_manifest`). [`index_plugin`] reads it from
//! the file with a small bounds-checked ELF64 reader (no `dlopen`, no code run) after the
//! permission check, so the registry knows which file provides which `@type` and opens only
//! what a configuration uses ([`load_indexed`], which runs every check of [`load_plugin`] and
//! then compares the module's manifest with the section). A file without a readable section
//! (older plugins, other ELF files, anything odd) is loaded eagerly, as before.
//!
//! The section's layout (written by `nagare_plugin_sdk::export::section_bytes`), integers
//! little-endian: 8 bytes magic `NAGAREMF`, u32 format (1), u32 ABI epoch, u32 body length, then
//! the body: UTF-8 lines `key:value\n` — `package`, `version`, `sdk`, then one
//! `input:`/`filter:`/`output:` line per `@type`. Unknown keys and bytes after the body are
//! ignored; another format number or magic means "no usable section" (eager load).

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use abi_stable::library::LibraryError;
use nagare_plugin_api::{ABI_EPOCH, EPOCH_SYMBOL, Manifest, PluginKind, PluginModRef};

/// The environment variable listing extra plugin directories (colon-separated).
pub const PLUGIN_PATH_ENV: &str = "NAGARE_PLUGIN_PATH";

/// Where a search directory came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchOrigin {
    /// A `-p DIR` flag.
    Flag,
    /// `NAGARE_PLUGIN_PATH`.
    Env,
    /// The running executable's directory (only `libnagare_*.so` there).
    ExeDir,
    /// `<exe>/../lib/nagare/plugins`.
    Installed,
}

/// One directory to search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchDir {
    /// The directory.
    pub path: PathBuf,
    /// Why it is searched.
    pub origin: SearchOrigin,
}

/// The ordered list of plugin directories.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PluginSearchPath {
    dirs: Vec<SearchDir>,
}

/// A directory that could not be scanned (missing explicit dir, permission problem...).
#[derive(Debug, thiserror::Error)]
#[error("plugin directory {}: {source}", path.display())]
pub struct ScanError {
    /// The directory.
    pub path: PathBuf,
    /// What failed.
    #[source]
    pub source: std::io::Error,
}

impl PluginSearchPath {
    /// The standard search path: `flag_dirs`, then `NAGARE_PLUGIN_PATH`, then the
    /// executable's directory and the installed layout next to it.
    pub fn new(flag_dirs: &[PathBuf]) -> Self {
        let env = std::env::var_os(PLUGIN_PATH_ENV);
        let exe = std::env::current_exe().ok();
        Self::from_parts(flag_dirs, env.as_deref(), exe.as_deref())
    }

    /// The search path built from explicit parts (what [`PluginSearchPath::new`] reads).
    pub fn from_parts(flag_dirs: &[PathBuf], env: Option<&OsStr>, exe: Option<&Path>) -> Self {
        let mut dirs: Vec<SearchDir> = flag_dirs
            .iter()
            .map(|p| SearchDir {
                path: p.clone(),
                origin: SearchOrigin::Flag,
            })
            .collect();
        if let Some(env) = env {
            dirs.extend(
                std::env::split_paths(env)
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(|path| SearchDir {
                        path,
                        origin: SearchOrigin::Env,
                    }),
            );
        }
        if let Some(dir) = exe.and_then(Path::parent) {
            dirs.push(SearchDir {
                path: dir.to_path_buf(),
                origin: SearchOrigin::ExeDir,
            });
            dirs.push(SearchDir {
                path: dir.join("..").join("lib").join("nagare").join("plugins"),
                origin: SearchOrigin::Installed,
            });
        }
        PluginSearchPath { dirs }
    }

    /// Only the given directories (every `*.so` in them).
    pub fn explicit(dirs: &[PathBuf]) -> Self {
        Self::from_parts(dirs, None, None)
    }

    /// The directories, in search order.
    pub fn dirs(&self) -> &[SearchDir] {
        &self.dirs
    }

    /// Every candidate file, in order (sorted by name within a directory), each once, and the
    /// directories that could not be read. Missing implicit directories are not errors.
    pub fn candidates(&self) -> (Vec<PathBuf>, Vec<ScanError>) {
        let mut files: Vec<PathBuf> = Vec::new();
        let mut seen: Vec<PathBuf> = Vec::new();
        let mut errors = Vec::new();
        for dir in &self.dirs {
            let entries = match std::fs::read_dir(&dir.path) {
                Ok(entries) => entries,
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        && matches!(dir.origin, SearchOrigin::ExeDir | SearchOrigin::Installed) =>
                {
                    continue;
                }
                Err(source) => {
                    errors.push(ScanError {
                        path: dir.path.clone(),
                        source,
                    });
                    continue;
                }
            };
            let mut names: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| is_candidate(p, dir.origin))
                .collect();
            names.sort();
            for path in names {
                let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
                if !seen.contains(&key) {
                    seen.push(key);
                    files.push(path);
                }
            }
        }
        (files, errors)
    }
}

fn is_candidate(path: &Path, origin: SearchOrigin) -> bool {
    let Some(name) = path.file_name().and_then(OsStr::to_str) else {
        return false;
    };
    if !name.ends_with(".so") || !path.is_file() {
        return false;
    }
    origin != SearchOrigin::ExeDir || name.starts_with("libnagare_")
}

/// Why a plugin file was not loaded. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file or its directory is writable by others.
    #[error(
        "{}: refusing to load: the {what} {} is group- or world-writable (mode {mode:o}); \
         run chmod go-w on it",
        path.display(), target.display()
    )]
    Insecure {
        /// The plugin file.
        path: PathBuf,
        /// `"file"` or `"directory"`.
        what: &'static str,
        /// The writable file or directory.
        target: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file could not be inspected.
    #[error("{}: {source}", path.display())]
    Io {
        /// The plugin file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// `dlopen` failed.
    #[error("{}: cannot load: {reason}", path.display())]
    Open {
        /// The plugin file.
        path: PathBuf,
        /// The dynamic loader's message.
        reason: String,
    },
    /// No `nagare_plugin_abi_epoch` symbol.
    #[error("{}: not a nagare plugin (it exports no nagare_plugin_abi_epoch)", path.display())]
    NotAPlugin {
        /// The file.
        path: PathBuf,
    },
    /// Built for another ABI epoch.
    #[error(
        "{}: built for ABI epoch {epoch}, this host speaks {ABI_EPOCH}: rebuild it against \
         nagare-plugin-api 0.{ABI_EPOCH}",
        path.display()
    )]
    WrongEpoch {
        /// The file.
        path: PathBuf,
        /// The epoch it reports.
        epoch: u32,
    },
    /// abi_stable's header, version or layout checks failed.
    #[error("{}: incompatible plugin ABI: {summary}", path.display())]
    Abi {
        /// The file.
        path: PathBuf,
        /// The failed checks, one line.
        summary: String,
    },
    /// The root module's `abi_epoch` disagrees with the probe.
    #[error(
        "{}: root module says ABI epoch {module_epoch}, this host speaks {ABI_EPOCH}: rebuild it",
        path.display()
    )]
    ModuleEpoch {
        /// The file.
        path: PathBuf,
        /// The epoch in the root module.
        module_epoch: u32,
    },
    /// The loaded module's manifest differs from the file's `.nagare_manifest` section.
    #[error(
        "{}: the module's manifest ({module}) differs from its {MANIFEST_SECTION} section \
         ({section}); the file was altered or built by a broken SDK: rebuild it",
        path.display()
    )]
    ManifestMismatch {
        /// The file.
        path: PathBuf,
        /// What the module says, one line.
        module: String,
        /// What the section says, one line.
        section: String,
    },
}

impl LoadError {
    /// The plugin file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            LoadError::Insecure { path, .. }
            | LoadError::Io { path, .. }
            | LoadError::Open { path, .. }
            | LoadError::NotAPlugin { path }
            | LoadError::WrongEpoch { path, .. }
            | LoadError::Abi { path, .. }
            | LoadError::ModuleEpoch { path, .. }
            | LoadError::ManifestMismatch { path, .. } => path,
        }
    }
}

/// A loaded, checked plugin module.
#[derive(Clone)]
pub struct LoadedModule {
    /// The file it came from.
    pub path: PathBuf,
    /// The root module.
    pub module: PluginModRef,
    /// What it says about itself.
    pub manifest: Manifest,
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule")
            .field("path", &self.path)
            .field("manifest", &self.manifest)
            .finish_non_exhaustive()
    }
}

impl LoadedModule {
    /// Wraps a module that is already in memory (a built-in plugin linked into the host).
    pub fn in_process(label: impl Into<PathBuf>, module: PluginModRef) -> Result<Self, LoadError> {
        let path = label.into();
        check_module(&path, module)
    }
}

fn check_module(path: &Path, module: PluginModRef) -> Result<LoadedModule, LoadError> {
    let module_epoch = module.abi_epoch();
    if module_epoch != ABI_EPOCH {
        return Err(LoadError::ModuleEpoch {
            path: path.to_path_buf(),
            module_epoch,
        });
    }
    let manifest = (module.manifest())();
    Ok(LoadedModule {
        path: path.to_path_buf(),
        module,
        manifest,
    })
}

/// Refuses a file or directory writable by group or others.
pub fn check_permissions(path: &Path) -> Result<(), LoadError> {
    let io = |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file_mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
    if file_mode & 0o022 != 0 {
        return Err(LoadError::Insecure {
            path: path.to_path_buf(),
            what: "file",
            target: path.to_path_buf(),
            mode: file_mode & 0o7777,
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir_mode = std::fs::metadata(&dir).map_err(io)?.permissions().mode();
    // A sticky world-writable dir (like /tmp) still lets others replace files they own
    // only; refuse anyway: plugins run with the host's privileges.
    if dir_mode & 0o022 != 0 {
        return Err(LoadError::Insecure {
            path: path.to_path_buf(),
            what: "directory",
            target: dir,
            mode: dir_mode & 0o7777,
        });
    }
    Ok(())
}

/// Cuts abi_stable's error text to one line: the `Error:` lines of a layout report, or the
/// first lines of any other error, at most `MAX` items.
pub fn summarize_abi_error(text: &str) -> String {
    const MAX: usize = 4;
    let mut items: Vec<String> = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Error:"))
    {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if !items.contains(&line) {
            items.push(line);
        }
    }
    if items.is_empty() {
        items = text
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| !l.is_empty())
            .collect();
    }
    let extra = items.len().saturating_sub(MAX);
    items.truncate(MAX);
    let mut out = items.join("; ");
    if extra > 0 {
        out.push_str(&format!("; (+{extra} more)"));
    }
    out
}

fn abi_error(path: &Path, e: &LibraryError) -> LoadError {
    LoadError::Abi {
        path: path.to_path_buf(),
        summary: summarize_abi_error(&e.to_string()),
    }
}

/// Loads and checks one plugin file (see the module docs for the order of checks).
pub fn load_plugin(path: &Path) -> Result<LoadedModule, LoadError> {
    check_permissions(path)?;
    // SAFETY: loading a library runs its initialisers. Plugins are trusted code by design (the
    // permission check above keeps other users from planting one); the handle is never closed.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| LoadError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    // SAFETY: the symbol, when present, is the SDK's `extern "C" fn() -> u32` probe.
    let epoch = unsafe {
        lib.get::<unsafe extern "C" fn() -> u32>(EPOCH_SYMBOL)
            .map(|probe| probe())
    };
    // Never dlclose: plugins are not unloaded (and a non-plugin was opened for nothing).
    std::mem::forget(lib);
    let epoch = epoch.map_err(|_| LoadError::NotAPlugin {
        path: path.to_path_buf(),
    })?;
    if epoch != ABI_EPOCH {
        return Err(LoadError::WrongEpoch {
            path: path.to_path_buf(),
            epoch,
        });
    }
    let header =
        abi_stable::library::lib_header_from_path(path).map_err(|e| abi_error(path, &e))?;
    let module = header
        .init_root_module::<PluginModRef>()
        .map_err(|e| abi_error(path, &e))?;
    check_module(path, module)
}

/// The ELF section the SDK's `export_plugins!` writes the manifest's type list into.
pub const MANIFEST_SECTION: &str = ".nagare_manifest";

/// The first bytes of the section.
const SECTION_MAGIC: &[u8; 8] = b"NAGAREMF";
/// The only section layout this host reads.
const SECTION_FORMAT: u32 = 1;
/// Magic, format, epoch, body length.
const SECTION_HEADER_LEN: usize = 20;
/// Larger sections are not read (a real one is well under 1 KiB).
const MAX_SECTION_LEN: u64 = 64 * 1024;
/// At most this many `@type` lines.
const MAX_SECTION_TYPES: usize = 1024;

/// What a plugin file's `.nagare_manifest` section declares, read without loading the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionManifest {
    /// The ABI epoch the plugin was built for.
    pub epoch: u32,
    /// The providing crate.
    pub package: String,
    /// Its version.
    pub version: String,
    /// The SDK it was built with.
    pub sdk_version: String,
    /// Every (kind, `@type`), in manifest order.
    pub plugins: Vec<(PluginKind, String)>,
}

impl SectionManifest {
    /// The same facts taken from a loaded module's manifest (for comparison).
    pub fn of_manifest(manifest: &Manifest) -> Self {
        SectionManifest {
            epoch: ABI_EPOCH,
            package: manifest.package.to_string(),
            version: manifest.version.to_string(),
            sdk_version: manifest.sdk_version.to_string(),
            plugins: manifest
                .plugins
                .iter()
                .map(|d| (d.kind, d.type_name.to_string()))
                .collect(),
        }
    }

    /// One line for messages: `package version (sdk X): kind:type, ...`.
    pub fn summary(&self) -> String {
        let types: Vec<String> = self
            .plugins
            .iter()
            .map(|(k, t)| format!("{}:{t}", k.name()))
            .collect();
        format!(
            "{} {} (sdk {}): {}",
            self.package,
            self.version,
            self.sdk_version,
            types.join(", ")
        )
    }

    /// Whether a module's manifest says the same (epoch aside, which is checked separately).
    fn matches(&self, module: &SectionManifest) -> bool {
        let sorted = |m: &SectionManifest| {
            let mut v: Vec<(u8, String)> =
                m.plugins.iter().map(|(k, t)| (k.0, t.clone())).collect();
            v.sort();
            v.dedup();
            v
        };
        self.package == module.package
            && self.version == module.version
            && self.sdk_version == module.sdk_version
            && sorted(self) == sorted(module)
    }
}

/// Why a `.nagare_manifest` section could not be read. Never fatal: the file is then loaded
/// eagerly, and `dlopen` and the ABI checks have the last word.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SectionError {
    /// Not a 64-bit ELF file (or not ELF at all).
    #[error("not an ELF64 file")]
    NotElf64,
    /// A structure of the file lies outside it or is inconsistent.
    #[error("malformed ELF: {what} (at offset {offset})")]
    Malformed {
        /// Which structure.
        what: &'static str,
        /// Its file offset.
        offset: u64,
    },
    /// Over one of the reader's limits.
    #[error("ELF {what} too large ({size} bytes, limit {limit})")]
    TooLarge {
        /// Which structure.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The section exists but its content is not a manifest this host reads.
    #[error("bad {MANIFEST_SECTION} section: {0}")]
    BadContent(String),
    /// Reading the file failed.
    #[error("read error at offset {offset}: {kind}")]
    Io {
        /// The file offset.
        offset: u64,
        /// The I/O error's kind.
        kind: std::io::ErrorKind,
    },
}

/// A file or byte slice the ELF reader can read at offsets (bounds-checked).
trait ReadAt {
    /// Total length.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`; the caller checked the range against [`ReadAt::size`].
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SectionError>;
}

impl ReadAt for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SectionError> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|start| self.get(start..start.checked_add(buf.len())?))
            .ok_or(SectionError::Io {
                offset,
                kind: std::io::ErrorKind::UnexpectedEof,
            })?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

struct FileAt {
    file: std::fs::File,
    len: u64,
}

impl ReadAt for FileAt {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SectionError> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset).map_err(|e| {
            SectionError::Io {
                offset,
                kind: e.kind(),
            }
        })
    }
}

/// A little or big endian field reader over a fixed buffer; out-of-range reads give 0-free
/// errors instead of panics.
struct Fields<'a> {
    bytes: &'a [u8],
    big_endian: bool,
    /// The buffer's file offset, for messages.
    base: u64,
    what: &'static str,
}

impl Fields<'_> {
    fn take<const N: usize>(&self, at: usize) -> Result<[u8; N], SectionError> {
        self.bytes
            .get(at..)
            .and_then(|rest| rest.get(..N))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or(SectionError::Malformed {
                what: self.what,
                offset: self.base.saturating_add(at as u64),
            })
    }

    fn u16(&self, at: usize) -> Result<u16, SectionError> {
        let b = self.take::<2>(at)?;
        Ok(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&self, at: usize) -> Result<u32, SectionError> {
        let b = self.take::<4>(at)?;
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn u64(&self, at: usize) -> Result<u64, SectionError> {
        let b = self.take::<8>(at)?;
        Ok(if self.big_endian {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }
}

/// Reads `len` bytes at `offset`, checking the range against the file and `limit`.
fn read_range(
    src: &(impl ReadAt + ?Sized),
    offset: u64,
    len: u64,
    limit: u64,
    what: &'static str,
) -> Result<Vec<u8>, SectionError> {
    if len > limit {
        return Err(SectionError::TooLarge {
            what,
            size: len,
            limit,
        });
    }
    match offset.checked_add(len) {
        Some(end) if end <= src.size() => {}
        _ => return Err(SectionError::Malformed { what, offset }),
    }
    let len = usize::try_from(len).map_err(|_| SectionError::Malformed { what, offset })?;
    let mut buf = vec![0u8; len];
    src.read_exact_at(offset, &mut buf)?;
    Ok(buf)
}

/// One section header's fields the reader uses.
struct SectionHeader {
    name: u32,
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
}

/// The contents of the section called `name`, `Ok(None)` when the file has no such section.
/// Limits: 64 KiB for the section, 1 MiB for the section-header table and for the section-name
/// table.
fn find_section(
    src: &(impl ReadAt + ?Sized),
    name: &[u8],
) -> Result<Option<Vec<u8>>, SectionError> {
    const EHDR_LEN: u64 = 64;
    const SHDR_LEN: usize = 64;
    const MAX_TABLE: u64 = 1024 * 1024;
    const SHN_XINDEX: u32 = 0xffff;
    const SHT_NOBITS: u32 = 8;

    if src.size() < EHDR_LEN {
        return Err(SectionError::NotElf64);
    }
    let mut ehdr = [0u8; EHDR_LEN as usize];
    src.read_exact_at(0, &mut ehdr)?;
    // e_ident: magic, class 2 (64-bit), data 1 (LE) or 2 (BE).
    let big_endian = match (ehdr.get(..4), ehdr.get(4), ehdr.get(5)) {
        (Some(b"\x7fELF"), Some(2), Some(1)) => false,
        (Some(b"\x7fELF"), Some(2), Some(2)) => true,
        _ => return Err(SectionError::NotElf64),
    };
    let eh = Fields {
        bytes: &ehdr,
        big_endian,
        base: 0,
        what: "ELF header",
    };
    let shoff = eh.u64(40)?;
    let shentsize = usize::from(eh.u16(58)?);
    let mut shnum = u64::from(eh.u16(60)?);
    let mut shstrndx = u32::from(eh.u16(62)?);
    if shoff == 0 {
        return Ok(None);
    }
    if shentsize < SHDR_LEN {
        return Err(SectionError::Malformed {
            what: "section header size",
            offset: 58,
        });
    }
    let header_at = |table: &[u8], index: u64| -> Result<SectionHeader, SectionError> {
        let start = usize::try_from(index)
            .ok()
            .and_then(|i| i.checked_mul(shentsize))
            .ok_or(SectionError::Malformed {
                what: "section index",
                offset: shoff,
            })?;
        let f = Fields {
            bytes: table.get(start..).unwrap_or_default(),
            big_endian,
            base: shoff.saturating_add(start as u64),
            what: "section header",
        };
        Ok(SectionHeader {
            name: f.u32(0)?,
            kind: f.u32(4)?,
            offset: f.u64(24)?,
            size: f.u64(32)?,
            link: f.u32(40)?,
        })
    };
    // Extended numbering: the real count / string-table index live in section 0.
    if shnum == 0 || shstrndx == SHN_XINDEX {
        let first = read_range(src, shoff, shentsize as u64, MAX_TABLE, "section header")?;
        let zero = header_at(&first, 0)?;
        if shnum == 0 {
            shnum = zero.size;
        }
        if shstrndx == SHN_XINDEX {
            shstrndx = zero.link;
        }
    }
    let table_len = shnum
        .checked_mul(shentsize as u64)
        .ok_or(SectionError::TooLarge {
            what: "section header table",
            size: u64::MAX,
            limit: MAX_TABLE,
        })?;
    let table = read_range(src, shoff, table_len, MAX_TABLE, "section header table")?;
    if u64::from(shstrndx) >= shnum {
        return Err(SectionError::Malformed {
            what: "section name table index",
            offset: 62,
        });
    }
    let strtab_hdr = header_at(&table, u64::from(shstrndx))?;
    if strtab_hdr.kind == SHT_NOBITS {
        return Err(SectionError::Malformed {
            what: "section name table",
            offset: strtab_hdr.offset,
        });
    }
    let strtab = read_range(
        src,
        strtab_hdr.offset,
        strtab_hdr.size,
        MAX_TABLE,
        "section name table",
    )?;
    for index in 0..shnum {
        let h = header_at(&table, index)?;
        let Some(rest) = usize::try_from(h.name).ok().and_then(|n| strtab.get(n..)) else {
            continue;
        };
        let this = rest.split(|&b| b == 0).next().unwrap_or_default();
        if this != name || rest.len() == this.len() {
            // Another name, or one not NUL-terminated inside the table.
            continue;
        }
        if h.kind == SHT_NOBITS {
            return Err(SectionError::BadContent("it has no file contents".into()));
        }
        return read_range(src, h.offset, h.size, MAX_SECTION_LEN, "manifest section").map(Some);
    }
    Ok(None)
}

/// Parses the bytes of a `.nagare_manifest` section (layout in the module docs).
pub fn parse_manifest_section(bytes: &[u8]) -> Result<SectionManifest, SectionError> {
    let bad = |m: &str| SectionError::BadContent(m.to_owned());
    let header = bytes
        .get(..SECTION_HEADER_LEN)
        .ok_or_else(|| bad("shorter than its header"))?;
    let f = Fields {
        bytes: header,
        big_endian: false,
        base: 0,
        what: "manifest header",
    };
    if header.get(..8) != Some(&SECTION_MAGIC[..]) {
        return Err(bad("wrong magic"));
    }
    let format = f.u32(8)?;
    if format != SECTION_FORMAT {
        return Err(SectionError::BadContent(format!(
            "layout version {format}, this host reads {SECTION_FORMAT}"
        )));
    }
    let epoch = f.u32(12)?;
    let body_len = usize::try_from(f.u32(16)?).map_err(|_| bad("body length"))?;
    let body = bytes
        .get(SECTION_HEADER_LEN..)
        .and_then(|rest| rest.get(..body_len))
        .ok_or_else(|| bad("body longer than the section"))?;
    let body = std::str::from_utf8(body).map_err(|_| bad("body is not UTF-8"))?;
    let mut m = SectionManifest {
        epoch,
        package: String::new(),
        version: String::new(),
        sdk_version: String::new(),
        plugins: Vec::new(),
    };
    let Some(body) = body.strip_suffix('\n').or(body.is_empty().then_some(body)) else {
        return Err(bad("last line not terminated"));
    };
    for line in body.split('\n').filter(|_| !body.is_empty()) {
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| SectionError::BadContent(format!("line without ':': {line:?}")))?;
        if value.is_empty() {
            return Err(SectionError::BadContent(format!("empty value for {key:?}")));
        }
        let kind = match key {
            "package" => {
                m.package = value.to_owned();
                continue;
            }
            "version" => {
                m.version = value.to_owned();
                continue;
            }
            "sdk" => {
                m.sdk_version = value.to_owned();
                continue;
            }
            "input" => PluginKind::INPUT,
            "filter" => PluginKind::FILTER,
            "output" => PluginKind::OUTPUT,
            // Later SDKs may add keys.
            _ => continue,
        };
        if m.plugins.len() >= MAX_SECTION_TYPES {
            return Err(bad("too many types"));
        }
        m.plugins.push((kind, value.to_owned()));
    }
    if m.package.is_empty() {
        return Err(bad("no package line"));
    }
    Ok(m)
}

/// Reads the `.nagare_manifest` section of `path` without loading it: `Ok(None)` when the file
/// has none (an older plugin, another library).
pub fn read_manifest_section(path: &Path) -> Result<Option<SectionManifest>, SectionError> {
    let file = std::fs::File::open(path).map_err(|e| SectionError::Io {
        offset: 0,
        kind: e.kind(),
    })?;
    let len = file
        .metadata()
        .map_err(|e| SectionError::Io {
            offset: 0,
            kind: e.kind(),
        })?
        .len();
    let src = FileAt { file, len };
    match find_section(&src, MANIFEST_SECTION.as_bytes())? {
        None => Ok(None),
        Some(bytes) => parse_manifest_section(&bytes).map(Some),
    }
}

/// What [`index_plugin`] found out about a file.
#[derive(Debug)]
pub enum Indexed {
    /// The file has a manifest section for this epoch: load it on first use with
    /// [`load_indexed`].
    Lazy(SectionManifest),
    /// No usable section: the file was loaded and checked now.
    Loaded(LoadedModule),
}

/// Indexes one plugin file: the permission check, then its manifest section (a wrong epoch
/// there is the same [`LoadError::WrongEpoch`] the probe gives); without a usable section the
/// file is loaded now with [`load_plugin`].
pub fn index_plugin(path: &Path) -> Result<Indexed, LoadError> {
    check_permissions(path)?;
    match read_manifest_section(path) {
        Ok(Some(section)) if section.epoch != ABI_EPOCH => Err(LoadError::WrongEpoch {
            path: path.to_path_buf(),
            epoch: section.epoch,
        }),
        Ok(Some(section)) => Ok(Indexed::Lazy(section)),
        Ok(None) => load_plugin(path).map(Indexed::Loaded),
        Err(e) => {
            tracing::debug!(
                file = %path.display(),
                "no usable {MANIFEST_SECTION} section ({e}); loading the file now"
            );
            load_plugin(path).map(Indexed::Loaded)
        }
    }
}

/// Loads a file indexed from its section: every check of [`load_plugin`], then the module's
/// manifest must say what the section said.
pub fn load_indexed(path: &Path, section: &SectionManifest) -> Result<LoadedModule, LoadError> {
    let module = load_plugin(path)?;
    let actual = SectionManifest::of_manifest(&module.manifest);
    if !section.matches(&actual) {
        return Err(LoadError::ManifestMismatch {
            path: path.to_path_buf(),
            module: actual.summary(),
            section: section.summary(),
        });
    }
    Ok(module)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `target/debug` (or the profile dir) of this build, from the test executable's path.
    pub(crate) fn target_dir() -> Option<PathBuf> {
        let exe = std::env::current_exe().ok()?;
        let deps = exe.parent()?;
        Some(if deps.ends_with("deps") {
            deps.parent()?.to_path_buf()
        } else {
            deps.to_path_buf()
        })
    }

    /// A real plugin `.so` built in this workspace, when present (`cargo build -p <plugin>`).
    pub(crate) fn built_plugin(file: &str) -> Option<PathBuf> {
        let dir = target_dir()?;
        [dir.join(file), dir.join("deps").join(file)]
            .into_iter()
            .find(|p| p.is_file())
    }

    pub(crate) fn private_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
    }

    /// Copies `src` into `dir` as `name`, with mode 0o755.
    pub(crate) fn copy_into(src: &Path, dir: &Path, name: &str) -> PathBuf {
        let dst = dir.join(name);
        std::fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        set_mode(&dst, 0o755);
        dst
    }

    pub(crate) fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    }

    #[test]
    fn search_path_order() {
        let flags = [PathBuf::from("/a"), PathBuf::from("/b")];
        let sp = PluginSearchPath::from_parts(
            &flags,
            Some(OsStr::new("/c::/d")),
            Some(Path::new("/opt/nagare/bin/nagare")),
        );
        let got: Vec<_> = sp
            .dirs()
            .iter()
            .map(|d| (d.path.clone(), d.origin))
            .collect();
        let p = PathBuf::from;
        assert_eq!(
            got,
            [
                (p("/a"), SearchOrigin::Flag),
                (p("/b"), SearchOrigin::Flag),
                (p("/c"), SearchOrigin::Env),
                (p("/d"), SearchOrigin::Env),
                (p("/opt/nagare/bin"), SearchOrigin::ExeDir),
                (
                    p("/opt/nagare/bin/../lib/nagare/plugins"),
                    SearchOrigin::Installed
                ),
            ]
        );
        assert_eq!(PluginSearchPath::explicit(&flags).dirs().len(), 2);
    }

    #[test]
    fn candidates_filter_by_origin() {
        let dir = private_dir();
        for name in [
            "libnagare_x.so",
            "other.so",
            "readme.txt",
            "libnagare_y.so.1",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap_or_else(|e| panic!("{e}"));
        }
        let names = |sp: PluginSearchPath| {
            let (files, errors) = sp.candidates();
            assert!(errors.is_empty(), "{errors:?}");
            files
                .iter()
                .filter_map(|f| f.file_name()?.to_str().map(str::to_owned))
                .collect::<Vec<_>>()
        };
        // An explicit dir listed twice yields each file once.
        let explicit = [dir.path().to_path_buf(), dir.path().to_path_buf()];
        assert_eq!(
            names(PluginSearchPath::explicit(&explicit)),
            ["libnagare_x.so", "other.so"]
        );
        let exe = dir.path().join("nagare");
        assert_eq!(
            names(PluginSearchPath::from_parts(&[], None, Some(&exe))),
            ["libnagare_x.so"]
        );
        // A missing explicit dir is reported; missing implicit ones are not.
        let missing = dir.path().join("nope");
        let (_, errors) = PluginSearchPath::explicit(std::slice::from_ref(&missing)).candidates();
        assert_eq!(errors.len(), 1);
        let (_, errors) =
            PluginSearchPath::from_parts(&[], None, Some(&missing.join("nagare"))).candidates();
        assert!(errors.is_empty());
    }

    #[test]
    fn writable_files_and_dirs_are_refused() {
        let dir = private_dir();
        let file = dir.path().join("libnagare_w.so");
        std::fs::write(&file, b"").unwrap_or_else(|e| panic!("{e}"));
        set_mode(&file, 0o666);
        let msg = load_plugin(&file)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            msg,
            format!(
                "{0}: refusing to load: the file {0} is group- or world-writable (mode 666); run chmod go-w on it",
                file.display()
            )
        );
        set_mode(&file, 0o644);
        set_mode(dir.path(), 0o777);
        let err = load_plugin(&file).err();
        set_mode(dir.path(), 0o700);
        assert!(
            matches!(
                err,
                Some(LoadError::Insecure {
                    what: "directory",
                    mode: 0o777,
                    ..
                })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn non_plugin_library_is_named_as_such() {
        let Some(libm) = [
            "/lib/x86_64-linux-gnu/libm.so.6",
            "/usr/lib/x86_64-linux-gnu/libm.so.6",
            "/lib64/libm.so.6",
        ]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file()) else {
            eprintln!("no libm found; skipping");
            return;
        };
        let dir = private_dir();
        let copy = copy_into(libm, dir.path(), "libnagare_fake.so");
        let err = load_plugin(&copy).err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some(format!(
                "{}: not a nagare plugin (it exports no nagare_plugin_abi_epoch)",
                copy.display()
            ))
        );
        let garbage = dir.path().join("garbage.so");
        std::fs::write(&garbage, b"not an ELF").unwrap_or_else(|e| panic!("{e}"));
        set_mode(&garbage, 0o755);
        assert!(matches!(load_plugin(&garbage), Err(LoadError::Open { .. })));
    }

    #[test]
    fn error_messages() {
        let path = PathBuf::from("/p/libx.so");
        let e = LoadError::WrongEpoch {
            path: path.clone(),
            epoch: 2,
        };
        assert_eq!(
            e.to_string(),
            "/p/libx.so: built for ABI epoch 2, this host speaks 1: rebuild it against nagare-plugin-api 0.1"
        );
        let report = "Layout of the library:\n  blah\nError:incompatible type size\n  Expected: 136 Found: 128\n\
                      Error:too many fields  Expected: 5 Found: 4\nError:incompatible type size\n";
        assert_eq!(
            summarize_abi_error(report),
            "Error:incompatible type size; Error:too many fields Expected: 5 Found: 4"
        );
        assert_eq!(
            summarize_abi_error("one\n\n two  words \nthree\nfour\nfive\nsix"),
            "one; two words; three; four; (+2 more)"
        );
    }

    #[test]
    fn real_plugins_load_when_built() {
        let Some(so) = built_plugin("libnagare_out_null.so") else {
            eprintln!("libnagare_out_null.so not built; skipping (cargo build -p nagare-out-null)");
            return;
        };
        let dir = private_dir();
        let copy = copy_into(&so, dir.path(), "libnagare_out_null.so");
        let loaded = load_plugin(&copy).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.manifest.package.as_str(), "nagare-out-null");
        let types: Vec<_> = loaded
            .manifest
            .plugins
            .iter()
            .map(|p| (p.kind.name(), p.type_name.to_string()))
            .collect();
        assert_eq!(types, [("output", "null".to_owned())]);
        // Loading the same file again works (abi_stable's per-type cache is not used).
        assert!(load_plugin(&copy).is_ok());
    }

    /// A minimal ELF64 file: the given sections (name, type, contents), then `.shstrtab`,
    /// then the section-header table.
    pub(crate) fn elf(sections: &[(&str, u32, &[u8])], big_endian: bool) -> Vec<u8> {
        let u16b = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let u32b = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let u64b = |v: u64| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut out = vec![0u8; 64];
        let mut strtab = vec![0u8];
        // (name offset, type, offset, size)
        let mut headers = vec![(0u32, 0u32, 0u64, 0u64)];
        for (name, kind, data) in sections {
            let name_at = strtab.len() as u32;
            strtab.extend_from_slice(name.as_bytes());
            strtab.push(0);
            headers.push((name_at, *kind, out.len() as u64, data.len() as u64));
            out.extend_from_slice(data);
        }
        let name_at = strtab.len() as u32;
        strtab.extend_from_slice(b".shstrtab\0");
        headers.push((name_at, 3, out.len() as u64, strtab.len() as u64));
        out.extend_from_slice(&strtab);
        let shoff = out.len() as u64;
        for (name, kind, offset, size) in &headers {
            let mut h = [0u8; 64];
            h[0..4].copy_from_slice(&u32b(*name));
            h[4..8].copy_from_slice(&u32b(*kind));
            h[24..32].copy_from_slice(&u64b(*offset));
            h[32..40].copy_from_slice(&u64b(*size));
            out.extend_from_slice(&h);
        }
        out[0..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = if big_endian { 2 } else { 1 };
        out[6] = 1;
        out[16..18].copy_from_slice(&u16b(3));
        out[18..20].copy_from_slice(&u16b(62));
        out[40..48].copy_from_slice(&u64b(shoff));
        out[52..54].copy_from_slice(&u16b(64));
        out[58..60].copy_from_slice(&u16b(64));
        out[60..62].copy_from_slice(&u16b(headers.len() as u16));
        out[62..64].copy_from_slice(&u16b(headers.len() as u16 - 1));
        out
    }

    /// A manifest section blob as the SDK writes it.
    pub(crate) fn section_blob(epoch: u32, body: &str) -> Vec<u8> {
        let mut b = b"NAGAREMF".to_vec();
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&epoch.to_le_bytes());
        b.extend_from_slice(&(body.len() as u32).to_le_bytes());
        b.extend_from_slice(body.as_bytes());
        b
    }

    fn find(bytes: &[u8]) -> Result<Option<Vec<u8>>, SectionError> {
        find_section(bytes, MANIFEST_SECTION.as_bytes())
    }

    fn set(bytes: &mut [u8], at: usize, value: &[u8]) -> Vec<u8> {
        bytes[at..at + value.len()].copy_from_slice(value);
        bytes.to_vec()
    }

    #[test]
    fn elf_section_reader() {
        let payload = b"hello manifest".as_slice();
        let good = elf(
            &[(".text", 1, b"\x90\x90"), (MANIFEST_SECTION, 1, payload)],
            false,
        );
        let shoff = u64::from_le_bytes(good[40..48].try_into().unwrap_or_default()) as usize;
        let check = |bytes: Vec<u8>, expect: Result<Option<&[u8]>, SectionError>| {
            assert_eq!(
                find(&bytes),
                expect.map(|o| o.map(<[u8]>::to_vec)),
                "{:?}",
                bytes.get(..8)
            );
        };
        check(good.clone(), Ok(Some(payload)));
        check(
            elf(&[(MANIFEST_SECTION, 1, payload)], true),
            Ok(Some(payload)),
        );
        check(elf(&[(".text", 1, b"x")], false), Ok(None));
        // A name that only starts like ours, and one that continues it, do not match.
        check(
            elf(
                &[(".nagare_manifes", 1, b"a"), (".nagare_manifest2", 1, b"b")],
                false,
            ),
            Ok(None),
        );
        check(
            b"not an ELF at all, just some text that is long enough to have a header.....".to_vec(),
            Err(SectionError::NotElf64),
        );
        check(good[..63].to_vec(), Err(SectionError::NotElf64));
        check(set(&mut good.clone(), 4, &[1]), Err(SectionError::NotElf64));
        check(set(&mut good.clone(), 5, &[3]), Err(SectionError::NotElf64));
        // No section headers at all.
        check(set(&mut good.clone(), 40, &[0; 8]), Ok(None));
        // Section headers past the end, or overflowing.
        check(
            set(&mut good.clone(), 40, &(good.len() as u64).to_le_bytes()),
            Err(SectionError::Malformed {
                what: "section header table",
                offset: good.len() as u64,
            }),
        );
        check(
            set(&mut good.clone(), 40, &u64::MAX.to_le_bytes()),
            Err(SectionError::Malformed {
                what: "section header table",
                offset: u64::MAX,
            }),
        );
        check(
            set(&mut good.clone(), 58, &32u16.to_le_bytes()),
            Err(SectionError::Malformed {
                what: "section header size",
                offset: 58,
            }),
        );
        check(
            set(&mut good.clone(), 62, &9u16.to_le_bytes()),
            Err(SectionError::Malformed {
                what: "section name table index",
                offset: 62,
            }),
        );
        // Extended numbering: e_shnum 0 with section 0's size 0 means no sections.
        check(
            set(&mut good.clone(), 60, &0u16.to_le_bytes()),
            Err(SectionError::Malformed {
                what: "section name table index",
                offset: 62,
            }),
        );
        // ... and with the real count in section 0, it works.
        let mut ext = good.clone();
        set(&mut ext, 60, &0u16.to_le_bytes());
        set(&mut ext, shoff + 32, &4u64.to_le_bytes());
        check(ext.clone(), Ok(Some(payload)));
        set(&mut ext, 62, &0xffffu16.to_le_bytes());
        set(&mut ext, shoff + 40, &3u32.to_le_bytes());
        check(ext, Ok(Some(payload)));
        // Too many sections for the reader's limit.
        let mut many = good.clone();
        set(&mut many, 60, &0u16.to_le_bytes());
        check(
            set(&mut many, shoff + 32, &(1u64 << 40).to_le_bytes()),
            Err(SectionError::TooLarge {
                what: "section header table",
                size: (1u64 << 40) * 64,
                limit: 1024 * 1024,
            }),
        );
        // Our section's size runs past the end of the file; then it is NOBITS.
        let manifest_hdr = shoff + 2 * 64;
        check(
            set(
                &mut good.clone(),
                manifest_hdr + 32,
                &(1u64 << 20).to_le_bytes(),
            ),
            Err(SectionError::TooLarge {
                what: "manifest section",
                size: 1 << 20,
                limit: 64 * 1024,
            }),
        );
        check(
            set(
                &mut good.clone(),
                manifest_hdr + 32,
                &60_000u64.to_le_bytes(),
            ),
            Err(SectionError::Malformed {
                what: "manifest section",
                offset: 66,
            }),
        );
        check(
            set(&mut good.clone(), manifest_hdr + 4, &8u32.to_le_bytes()),
            Err(SectionError::BadContent("it has no file contents".into())),
        );
        // A name offset outside the string table is skipped, not a panic.
        check(
            set(&mut good.clone(), manifest_hdr, &u32::MAX.to_le_bytes()),
            Ok(None),
        );
    }

    #[test]
    fn every_truncation_is_an_error_or_none() {
        let body = "package:p\nversion:1\nsdk:0.1.0\noutput:null\n";
        let good = elf(&[(MANIFEST_SECTION, 1, &section_blob(1, body))], false);
        for len in 0..good.len() {
            let cut = &good[..len];
            assert!(
                !matches!(find(cut), Ok(Some(ref b)) if parse_manifest_section(b).is_ok()),
                "a {len}-byte prefix parsed"
            );
        }
        // The same for a real plugin: cut inside its section-header table.
        let Some(so) = built_plugin("libnagare_out_null.so") else {
            return;
        };
        let real = std::fs::read(&so).unwrap_or_else(|e| panic!("{e}"));
        let step = (real.len() / 512).max(1);
        for len in (0..real.len())
            .step_by(step)
            .chain(real.len().saturating_sub(4096)..real.len())
        {
            let _ = find(&real[..len]);
        }
    }

    #[test]
    fn manifest_section_content() {
        let check = |bytes: Vec<u8>, expect: Result<&str, &str>| {
            let got = parse_manifest_section(&bytes)
                .map(|m| format!("epoch {} {}", m.epoch, m.summary()))
                .map_err(|e| e.to_string());
            assert_eq!(
                got,
                expect.map(str::to_owned).map_err(str::to_owned),
                "{:?}",
                String::from_utf8_lossy(&bytes)
            );
        };
        let meta = "package:nagare-x\nversion:0.3.0\nsdk:0.1.0\n";
        check(
            section_blob(
                1,
                &format!("{meta}input:forward\nfilter:grep\noutput:null\n"),
            ),
            Ok("epoch 1 nagare-x 0.3.0 (sdk 0.1.0): input:forward, filter:grep, output:null"),
        );
        check(
            section_blob(7, &format!("{meta}future:thing\noutput:a:b\n")),
            Ok("epoch 7 nagare-x 0.3.0 (sdk 0.1.0): output:a:b"),
        );
        // Trailing linker padding after the body is ignored.
        let mut padded = section_blob(1, &format!("{meta}output:null\n"));
        padded.extend_from_slice(&[0; 12]);
        check(
            padded,
            Ok("epoch 1 nagare-x 0.3.0 (sdk 0.1.0): output:null"),
        );
        check(
            section_blob(1, meta),
            Ok("epoch 1 nagare-x 0.3.0 (sdk 0.1.0): "),
        );
        check(
            b"NAGAREMF".to_vec(),
            Err("bad .nagare_manifest section: shorter than its header"),
        );
        let mut wrong_magic = section_blob(1, meta);
        wrong_magic[0] = b'X';
        check(
            wrong_magic,
            Err("bad .nagare_manifest section: wrong magic"),
        );
        let mut v2 = section_blob(1, meta);
        v2[8] = 2;
        check(
            v2,
            Err("bad .nagare_manifest section: layout version 2, this host reads 1"),
        );
        let mut long = section_blob(1, meta);
        long[16] = 200;
        check(
            long,
            Err("bad .nagare_manifest section: body longer than the section"),
        );
        check(
            section_blob(1, "package:p\noutput:\n"),
            Err("bad .nagare_manifest section: empty value for \"output\""),
        );
        check(
            section_blob(1, "package:p\noutput:null"),
            Err("bad .nagare_manifest section: last line not terminated"),
        );
        check(
            section_blob(1, "package:p\n\noutput:null\n"),
            Err("bad .nagare_manifest section: line without ':': \"\""),
        );
        check(
            section_blob(1, "output:null\n"),
            Err("bad .nagare_manifest section: no package line"),
        );
        check(
            section_blob(1, ""),
            Err("bad .nagare_manifest section: no package line"),
        );
        let mut latin1 = section_blob(1, "package:p\noutput:nul\n");
        let at = latin1.len() - 2;
        latin1[at] = 0xff;
        check(
            latin1,
            Err("bad .nagare_manifest section: body is not UTF-8"),
        );
        let many: String = (0..=MAX_SECTION_TYPES)
            .map(|i| format!("output:t{i}\n"))
            .collect();
        check(
            section_blob(1, &format!("package:p\n{many}")),
            Err("bad .nagare_manifest section: too many types"),
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn section_reader_never_panics_on_arbitrary_bytes(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            elf_prefix in proptest::prelude::any::<bool>(),
        ) {
            let mut bytes = bytes;
            if elf_prefix && bytes.len() >= 6 {
                bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
            }
            if let Ok(Some(section)) = find(&bytes) {
                let _ = parse_manifest_section(&section);
            }
            let _ = parse_manifest_section(&bytes);
        }

        #[test]
        fn section_reader_never_panics_on_mutated_elf(
            edits in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()),
                1..8,
            ),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let body = "package:p\nversion:1\nsdk:0.1.0\ninput:forward\noutput:null\n";
            let mut bytes = elf(&[(".text", 1, b"\x90"), (MANIFEST_SECTION, 1, &section_blob(1, body))], false);
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            let len = cut.index(bytes.len() + 1);
            if let Ok(Some(section)) = find(&bytes[..len]) {
                let _ = parse_manifest_section(&section);
            }
        }
    }

    /// Replaces the first `from` in the file with `to` (same length).
    pub(crate) fn patch_file(path: &Path, from: &[u8], to: &[u8]) {
        let mut bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{e}"));
        let at = bytes
            .windows(from.len())
            .position(|w| w == from)
            .unwrap_or_else(|| panic!("{} has no {from:?}", path.display()));
        bytes[at..at + to.len()].copy_from_slice(to);
        std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{e}"));
    }

    /// A built plugin copied into a private dir, when it is built with a manifest section.
    pub(crate) fn sectioned_plugin(dir: &Path, file: &str) -> Option<PathBuf> {
        let so = built_plugin(file)?;
        if !matches!(read_manifest_section(&so), Ok(Some(_))) {
            eprintln!("{file} has no {MANIFEST_SECTION} section (stale build?); skipping");
            return None;
        }
        Some(copy_into(&so, dir, file))
    }

    #[test]
    fn real_plugin_is_indexed_from_its_section() {
        let dir = private_dir();
        let Some(copy) = sectioned_plugin(dir.path(), "libnagare_out_null.so") else {
            return;
        };
        let section = match index_plugin(&copy) {
            Ok(Indexed::Lazy(s)) => s,
            other => panic!("expected a lazy index, got {other:?}"),
        };
        assert_eq!(
            (
                section.epoch,
                section.package.as_str(),
                section.plugins.clone()
            ),
            (
                ABI_EPOCH,
                "nagare-out-null",
                vec![(PluginKind::OUTPUT, "null".to_owned())]
            )
        );
        let loaded = load_indexed(&copy, &section).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(SectionManifest::of_manifest(&loaded.manifest), section);
        // A section that says something else than the module is refused on load.
        let mut other = section.clone();
        other.plugins.push((PluginKind::INPUT, "ghost".to_owned()));
        let err = load_indexed(&copy, &other).err().map(|e| e.to_string());
        assert_eq!(
            err,
            Some(format!(
                "{}: the module's manifest ({}) differs from its .nagare_manifest section ({}); \
                 the file was altered or built by a broken SDK: rebuild it",
                copy.display(),
                section.summary(),
                other.summary()
            ))
        );
        // The epoch in the section is checked without loading, with the probe's message.
        let wrong = copy_into(&copy, dir.path(), "libnagare_epoch.so");
        let mut epoch_field = b"NAGAREMF".to_vec();
        epoch_field.extend_from_slice(&1u32.to_le_bytes());
        epoch_field.extend_from_slice(&ABI_EPOCH.to_le_bytes());
        let mut patched = epoch_field.clone();
        patched.truncate(12);
        patched.extend_from_slice(&(ABI_EPOCH + 1).to_le_bytes());
        patch_file(&wrong, &epoch_field, &patched);
        assert_eq!(
            index_plugin(&wrong).err().map(|e| e.to_string()),
            Some(format!(
                "{}: built for ABI epoch {}, this host speaks {ABI_EPOCH}: rebuild it against \
                 nagare-plugin-api 0.{ABI_EPOCH}",
                wrong.display(),
                ABI_EPOCH + 1
            ))
        );
        // Insecure files are still refused before anything is read.
        set_mode(&wrong, 0o666);
        assert!(matches!(
            index_plugin(&wrong),
            Err(LoadError::Insecure { what: "file", .. })
        ));
    }

    #[test]
    fn files_without_a_usable_section_load_eagerly() {
        let dir = private_dir();
        // Not ELF: loaded now, with dlopen's error as before.
        let garbage = dir.path().join("garbage.so");
        std::fs::write(&garbage, b"not an ELF").unwrap_or_else(|e| panic!("{e}"));
        set_mode(&garbage, 0o755);
        assert!(matches!(
            index_plugin(&garbage),
            Err(LoadError::Open { .. })
        ));
        // A future layout version: loaded now (here dlopen fails on the fake file).
        let mut blob = section_blob(ABI_EPOCH, "package:p\noutput:x\n");
        blob[8] = 9;
        let fake = dir.path().join("libnagare_future.so");
        std::fs::write(&fake, elf(&[(MANIFEST_SECTION, 1, &blob)], false))
            .unwrap_or_else(|e| panic!("{e}"));
        set_mode(&fake, 0o755);
        assert!(matches!(index_plugin(&fake), Err(LoadError::Open { .. })));
        // The current layout: indexed without opening.
        let blob = section_blob(ABI_EPOCH, "package:p\nversion:1\nsdk:0.1.0\noutput:x\n");
        std::fs::write(&fake, elf(&[(MANIFEST_SECTION, 1, &blob)], false))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(index_plugin(&fake), Ok(Indexed::Lazy(_))));
    }
}
