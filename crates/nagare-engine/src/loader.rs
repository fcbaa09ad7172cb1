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

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use abi_stable::library::LibraryError;
use nagare_plugin_api::{ABI_EPOCH, EPOCH_SYMBOL, Manifest, PluginModRef};

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
            | LoadError::ModuleEpoch { path, .. } => path,
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
}
