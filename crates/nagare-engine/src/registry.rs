//! The plugin registry: `@type` → (kind, module, file), built from a [`PluginSearchPath`],
//! plus instance construction with errors a user can act on, and the host services
//! ([`HostServices`]: logging through `tracing`, an in-memory [`MetricsRegistry`]) handed to
//! every instance.
//!
//! A bad file is reported (a warning with the reason) and skipped: it never stops the other
//! plugins from loading. Two modules claiming one (kind, `@type`) is an error naming both
//! files.
//!
//! Loading is lazy: [`Registry::load`] indexes every file by its `.nagare_manifest` section
//! ([`crate::loader::index_plugin`]) and `dlopen`s a file only when an instance of one of its
//! types is first built (with every check of the loader, and the manifest compared with the
//! section), so an idle collector maps only the plugins its configuration uses. Files without
//! the section are loaded while indexing, as before. [`Registry::load_all`] opens the rest (for
//! `nagare plugins`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RArc, RStr};
use nagare_plugin_api::{
    ConfigNode, FilterBox, Host, HostBox, InputBox, InstanceInfo, LogLevel, MetricId, MetricKind,
    NewResult, OutputBox, PluginError, PluginKind,
};

use crate::loader::{
    Indexed, LoadError, LoadedModule, PluginSearchPath, SectionManifest, index_plugin,
    load_indexed, load_plugin,
};

/// One `@type` the registry knows, for `nagare plugins`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginInfo {
    /// The `@type`.
    pub type_name: String,
    /// Input, filter or output.
    pub kind: PluginKind,
    /// The providing crate.
    pub package: String,
    /// Its version.
    pub version: String,
    /// The SDK it was built with.
    pub sdk_version: String,
    /// The file it came from.
    pub file: PathBuf,
}

/// A file that was skipped, and why.
#[derive(Debug)]
pub struct SkippedFile {
    /// Why (the error names the file).
    pub error: Arc<LoadError>,
}

/// Errors building the registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two modules provide the same (kind, `@type`).
    #[error(
        "{kind} plugin '{type_name}' is provided twice: by {} and by {}; remove one of them",
        first.display(), second.display()
    )]
    Duplicate {
        /// `"input"`, `"filter"` or `"output"`.
        kind: &'static str,
        /// The `@type`.
        type_name: String,
        /// The file registered first.
        first: PathBuf,
        /// The file that collided.
        second: PathBuf,
    },
}

/// No module provides an `@type` for the requested kind.
#[derive(Debug, thiserror::Error)]
#[error("{}", unknown_type_message(.type_name, .element, .location, .other_kinds, .loaded, .searched))]
pub struct UnknownType {
    /// The `@type` asked for.
    pub type_name: String,
    /// The element (`match`, `source`, `filter`, `store`...).
    pub element: String,
    /// Where the element is.
    pub location: String,
    /// Kinds under which the type does exist.
    pub other_kinds: Vec<&'static str>,
    /// Every type loaded for the requested kind.
    pub loaded: Vec<String>,
    /// The directories searched.
    pub searched: Vec<PathBuf>,
}

/// A plugin constructor failed.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {kind} '{type_name}' (@id {plugin_id}, from {}): {error}", file.display())]
pub struct PluginFailure {
    /// `"input"`, `"filter"` or `"output"`.
    pub kind: &'static str,
    /// The `@type`.
    pub type_name: String,
    /// The `@id`.
    pub plugin_id: String,
    /// Where the element is.
    pub location: String,
    /// The module's file.
    pub file: PathBuf,
    /// What the plugin said.
    pub error: PluginError,
}

/// Errors creating an instance.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstantiateError {
    /// No module provides the `@type` for this kind.
    #[error(transparent)]
    UnknownType(Box<UnknownType>),
    /// The manifest lists the type but the constructor does not know it.
    #[error("{}: lists {kind} '{type_name}' in its manifest but cannot build it", file.display())]
    NotProvided {
        /// `"input"`, `"filter"` or `"output"`.
        kind: &'static str,
        /// The `@type`.
        type_name: String,
        /// The module's file.
        file: PathBuf,
    },
    /// The plugin's constructor failed (bad config, panic...).
    #[error(transparent)]
    Plugin(Box<PluginFailure>),
    /// The file providing the type (indexed from its manifest section) failed to load on
    /// first use: the loader's message, naming the file.
    #[error(transparent)]
    Load(Arc<LoadError>),
}

fn unknown_type_message(
    type_name: &str,
    element: &str,
    location: &str,
    other_kinds: &[&'static str],
    loaded: &[String],
    searched: &[PathBuf],
) -> String {
    let mut s = String::new();
    if !location.is_empty() {
        s.push_str(location);
        s.push_str(": ");
    }
    s.push_str(&format!("unknown @type '{type_name}' for <{element}>: "));
    if other_kinds.is_empty() {
        s.push_str("no plugin provides it");
    } else {
        s.push_str(&format!("it is a {} plugin", other_kinds.join("/")));
    }
    let loaded = if loaded.is_empty() {
        "(none)".to_owned()
    } else {
        loaded.join(", ")
    };
    s.push_str(&format!("; loaded types: {loaded}"));
    let searched: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
    let searched = if searched.is_empty() {
        "(none)".to_owned()
    } else {
        searched.join(", ")
    };
    s.push_str(&format!("; searched: {searched}"));
    s
}

/// One plugin file the registry knows: loaded already, or indexed from its section and
/// loaded on first use.
struct Slot {
    path: PathBuf,
    /// What the file's section declares; `None` for modules registered loaded.
    section: Option<SectionManifest>,
    /// Set once: at registration for loaded modules, on first use for indexed ones.
    loaded: OnceLock<Result<LoadedModule, Arc<LoadError>>>,
}

impl Slot {
    /// The module, loading it now if it was only indexed. A failure is remembered (and
    /// logged once).
    fn module(&self) -> Result<&LoadedModule, Arc<LoadError>> {
        self.loaded
            .get_or_init(|| {
                let loaded = match &self.section {
                    Some(section) => load_indexed(&self.path, section),
                    None => load_plugin(&self.path),
                };
                match &loaded {
                    Ok(m) => log_loaded(m, "loaded plugin module on first use"),
                    Err(e) => tracing::warn!("cannot load plugin file: {e}"),
                }
                loaded.map_err(Arc::new)
            })
            .as_ref()
            .map_err(Arc::clone)
    }

    /// What `nagare plugins` shows: the module's manifest when loaded, else the section;
    /// `None` when loading failed.
    fn describe(&self) -> Option<(String, String, String)> {
        match (self.loaded.get(), &self.section) {
            (Some(Ok(m)), _) => Some((
                m.manifest.package.to_string(),
                m.manifest.version.to_string(),
                m.manifest.sdk_version.to_string(),
            )),
            (Some(Err(_)), _) | (None, None) => None,
            (None, Some(s)) => Some((s.package.clone(), s.version.clone(), s.sdk_version.clone())),
        }
    }
}

fn log_loaded(module: &LoadedModule, what: &'static str) {
    tracing::debug!(
        file = %module.path.display(),
        package = %module.manifest.package,
        version = %module.manifest.version,
        sdk = %module.manifest.sdk_version,
        rustc = %module.manifest.rustc_version,
        "{what}"
    );
}

/// `@type` → module, for every kind.
#[derive(Default)]
pub struct Registry {
    slots: Vec<Slot>,
    types: BTreeMap<(u8, String), usize>,
    skipped: Vec<SkippedFile>,
    searched: Vec<PathBuf>,
    metrics: Arc<MetricsRegistry>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("types", &self.types.keys().collect::<Vec<_>>())
            .field("loaded", &self.loaded_files())
            .field("skipped", &self.skipped.len())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Indexes every candidate of `search` (see the module docs: files with a manifest
    /// section are opened on first use, others now). Bad files and unreadable directories are
    /// logged as warnings and skipped; duplicate types are an error.
    pub fn load(search: &PluginSearchPath) -> Result<Self, RegistryError> {
        let mut reg = Registry::new();
        reg.searched = search.dirs().iter().map(|d| d.path.clone()).collect();
        let (files, scan_errors) = search.candidates();
        for e in scan_errors {
            tracing::warn!("{e}");
        }
        for file in files {
            match index_plugin(&file) {
                Ok(Indexed::Loaded(module)) => {
                    log_loaded(&module, "loaded plugin module");
                    reg.add(module)?;
                }
                Ok(Indexed::Lazy(section)) => {
                    tracing::debug!(
                        file = %file.display(),
                        package = %section.package,
                        version = %section.version,
                        "indexed plugin module (loaded on first use)"
                    );
                    reg.add_indexed(file, section)?;
                }
                Err(error) => {
                    tracing::warn!("skipping plugin file: {error}");
                    reg.skipped.push(SkippedFile {
                        error: Arc::new(error),
                    });
                }
            }
        }
        Ok(reg)
    }

    /// Loads every module that is only indexed (for `nagare plugins`, which shows and
    /// validates everything). A file that fails is logged, listed in [`Registry::skipped`]
    /// and its types are forgotten.
    pub fn load_all(&mut self) {
        let mut failed = Vec::new();
        for (index, slot) in self.slots.iter().enumerate() {
            // Includes files that already failed on first use; each is reported once.
            if let Err(error) = slot.module()
                && self.types.values().any(|&i| i == index)
            {
                failed.push(index);
                self.skipped.push(SkippedFile { error });
            }
        }
        self.types.retain(|_, index| !failed.contains(index));
    }

    /// Registers a loaded module's types.
    pub fn add(&mut self, module: LoadedModule) -> Result<(), RegistryError> {
        let types: Vec<(PluginKind, String)> = module
            .manifest
            .plugins
            .iter()
            .map(|d| (d.kind, d.type_name.to_string()))
            .collect();
        let slot = Slot {
            path: module.path.clone(),
            section: None,
            loaded: OnceLock::from(Ok(module)),
        };
        self.claim(slot, &types)
    }

    /// Registers the types a file's manifest section declares; the file is loaded (and its
    /// manifest compared with `section`) when one of them is first built.
    pub fn add_indexed(
        &mut self,
        path: PathBuf,
        section: SectionManifest,
    ) -> Result<(), RegistryError> {
        let types = section.plugins.clone();
        let slot = Slot {
            path,
            section: Some(section),
            loaded: OnceLock::new(),
        };
        self.claim(slot, &types)
    }

    fn claim(&mut self, slot: Slot, types: &[(PluginKind, String)]) -> Result<(), RegistryError> {
        let index = self.slots.len();
        let mut claimed: Vec<(u8, String)> = Vec::new();
        for (kind, type_name) in types {
            let key = (kind.0, type_name.clone());
            if let Some(&other) = self.types.get(&key) {
                let first = self
                    .slots
                    .get(other)
                    .map(|m| m.path.clone())
                    .unwrap_or_default();
                return Err(RegistryError::Duplicate {
                    kind: kind.name(),
                    type_name: key.1,
                    first,
                    second: slot.path,
                });
            }
            if !claimed.contains(&key) {
                claimed.push(key);
            }
        }
        for key in claimed {
            self.types.insert(key, index);
        }
        self.slots.push(slot);
        Ok(())
    }

    /// Every known type, sorted by kind then name (from the section for files not loaded yet;
    /// files that failed to load are left out).
    pub fn list(&self) -> Vec<PluginInfo> {
        self.types
            .iter()
            .filter_map(|((kind, name), &i)| {
                let slot = self.slots.get(i)?;
                let (package, version, sdk_version) = slot.describe()?;
                Some(PluginInfo {
                    type_name: name.clone(),
                    kind: PluginKind(*kind),
                    package,
                    version,
                    sdk_version,
                    file: slot.path.clone(),
                })
            })
            .collect()
    }

    /// Files skipped while indexing (and by [`Registry::load_all`]). A file that fails when
    /// first used is reported by the instantiation error instead.
    pub fn skipped(&self) -> &[SkippedFile] {
        &self.skipped
    }

    /// The directories searched.
    pub fn searched(&self) -> &[PathBuf] {
        &self.searched
    }

    /// The files `dlopen`ed so far (successfully), in registration order.
    pub fn loaded_files(&self) -> Vec<&Path> {
        self.slots
            .iter()
            .filter(|s| matches!(s.loaded.get(), Some(Ok(_))))
            .map(|s| s.path.as_path())
            .collect()
    }

    /// Whether some file claims (kind, `@type`), without loading anything.
    pub fn knows(&self, kind: PluginKind, type_name: &str) -> bool {
        self.types.contains_key(&(kind.0, type_name.to_owned()))
    }

    /// The module providing (kind, `@type`), loading its file on first use; `None` when no
    /// file claims the type or its file failed to load.
    pub fn provider(&self, kind: PluginKind, type_name: &str) -> Option<&LoadedModule> {
        self.slot(kind, type_name)?.module().ok()
    }

    fn slot(&self, kind: PluginKind, type_name: &str) -> Option<&Slot> {
        let i = *self.types.get(&(kind.0, type_name.to_owned()))?;
        self.slots.get(i)
    }

    /// The metrics every instance built through [`Registry::host_for`] records into.
    pub fn metrics(&self) -> &Arc<MetricsRegistry> {
        &self.metrics
    }

    /// Host services for one instance.
    pub fn host_for(&self, plugin_id: &str, type_name: &str) -> HostBox {
        HostServices::new(plugin_id, type_name, self.metrics.clone()).into_host_box()
    }

    fn build<T>(
        &self,
        kind: PluginKind,
        type_name: &str,
        plugin_id: &str,
        config: &ConfigNode,
        host: HostBox,
        ctor: impl FnOnce(&LoadedModule, InstanceInfo<'_>, HostBox) -> NewResult<T>,
    ) -> Result<T, InstantiateError> {
        let Some(slot) = self.slot(kind, type_name) else {
            let other_kinds = [PluginKind::INPUT, PluginKind::FILTER, PluginKind::OUTPUT]
                .into_iter()
                .filter(|k| *k != kind && self.knows(*k, type_name))
                .map(PluginKind::name)
                .collect();
            let loaded = self
                .types
                .keys()
                .filter(|(k, _)| *k == kind.0)
                .map(|(_, n)| n.clone())
                .collect();
            let element = if config.name.is_empty() {
                default_element(kind).to_owned()
            } else {
                config.name.to_string()
            };
            return Err(InstantiateError::UnknownType(Box::new(UnknownType {
                type_name: type_name.to_owned(),
                element,
                location: config.location.to_string(),
                other_kinds,
                loaded,
                searched: self.searched.clone(),
            })));
        };
        let module = slot.module().map_err(InstantiateError::Load)?;
        let info = InstanceInfo {
            plugin_id: RStr::from(plugin_id),
            type_name: RStr::from(type_name),
            config,
        };
        match ctor(module, info, host).into_option() {
            None => Err(InstantiateError::NotProvided {
                kind: kind.name(),
                type_name: type_name.to_owned(),
                file: module.path.clone(),
            }),
            Some(r) => r.into_result().map_err(|error| {
                InstantiateError::Plugin(Box::new(PluginFailure {
                    kind: kind.name(),
                    type_name: type_name.to_owned(),
                    plugin_id: plugin_id.to_owned(),
                    location: config.location.to_string(),
                    file: module.path.clone(),
                    error,
                }))
            }),
        }
    }

    /// Builds an input of `@type type_name`.
    pub fn new_input(
        &self,
        type_name: &str,
        plugin_id: &str,
        config: &ConfigNode,
        host: HostBox,
    ) -> Result<InputBox, InstantiateError> {
        self.build(
            PluginKind::INPUT,
            type_name,
            plugin_id,
            config,
            host,
            |m, info, host| (m.module.new_input())(info, host),
        )
    }

    /// Builds a filter of `@type type_name`.
    pub fn new_filter(
        &self,
        type_name: &str,
        plugin_id: &str,
        config: &ConfigNode,
        host: HostBox,
    ) -> Result<FilterBox, InstantiateError> {
        self.build(
            PluginKind::FILTER,
            type_name,
            plugin_id,
            config,
            host,
            |m, info, host| (m.module.new_filter())(info, host),
        )
    }

    /// Builds an output of `@type type_name`.
    pub fn new_output(
        &self,
        type_name: &str,
        plugin_id: &str,
        config: &ConfigNode,
        host: HostBox,
    ) -> Result<OutputBox, InstantiateError> {
        self.build(
            PluginKind::OUTPUT,
            type_name,
            plugin_id,
            config,
            host,
            |m, info, host| (m.module.new_output())(info, host),
        )
    }
}

fn default_element(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::INPUT => "source",
        PluginKind::FILTER => "filter",
        _ => "match",
    }
}

/// One registered metric.
#[derive(Debug)]
struct MetricCell {
    kind: MetricKind,
    name: String,
    help: String,
    plugin_id: String,
    type_name: String,
    bits: AtomicU64,
}

/// A point-in-time value of one metric.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricSample {
    /// Counter or gauge.
    pub kind: MetricKind,
    /// The metric name.
    pub name: String,
    /// Its help text.
    pub help: String,
    /// The instance's `@id`.
    pub plugin_id: String,
    /// The instance's `@type`.
    pub type_name: String,
    /// The value.
    pub value: f64,
}

/// In-memory metrics of every plugin instance. Registration is idempotent per
/// (`@id`, name), so a re-instantiated instance keeps its counters.
#[derive(Debug, Default)]
pub struct MetricsRegistry {
    cells: RwLock<Vec<MetricCell>>,
}

impl MetricsRegistry {
    /// Registers (or finds) a metric.
    pub fn register(
        &self,
        kind: MetricKind,
        name: &str,
        help: &str,
        plugin_id: &str,
        type_name: &str,
    ) -> MetricId {
        let mut cells = self
            .cells
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(i) = cells
            .iter()
            .position(|c| c.plugin_id == plugin_id && c.name == name)
        {
            return MetricId(i as u64);
        }
        cells.push(MetricCell {
            kind,
            name: name.to_owned(),
            help: help.to_owned(),
            plugin_id: plugin_id.to_owned(),
            type_name: type_name.to_owned(),
            bits: AtomicU64::new(0f64.to_bits()),
        });
        MetricId((cells.len() - 1) as u64)
    }

    /// Adds to a counter or sets a gauge; unknown ids are ignored.
    pub fn record(&self, id: MetricId, value: f64) {
        let cells = self
            .cells
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(cell) = usize::try_from(id.0).ok().and_then(|i| cells.get(i)) else {
            return;
        };
        if cell.kind == MetricKind::GAUGE {
            cell.bits.store(value.to_bits(), Ordering::Relaxed);
        } else {
            let _ = cell
                .bits
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    Some((f64::from_bits(b) + value).to_bits())
                });
        }
    }

    /// Every metric's current value, in registration order.
    pub fn snapshot(&self) -> Vec<MetricSample> {
        let cells = self
            .cells
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cells
            .iter()
            .map(|c| MetricSample {
                kind: c.kind,
                name: c.name.clone(),
                help: c.help.clone(),
                plugin_id: c.plugin_id.clone(),
                type_name: c.type_name.clone(),
                value: f64::from_bits(c.bits.load(Ordering::Relaxed)),
            })
            .collect()
    }

    /// The value of `name` for instance `plugin_id`.
    pub fn value(&self, plugin_id: &str, name: &str) -> Option<f64> {
        self.snapshot()
            .into_iter()
            .find(|s| s.plugin_id == plugin_id && s.name == name)
            .map(|s| s.value)
    }
}

/// The host services of one instance: logs go to `tracing` (target `nagare::plugin`) with
/// `plugin_id` and `plugin_type` fields; metrics go to a [`MetricsRegistry`].
#[derive(Clone, Debug)]
pub struct HostServices {
    plugin_id: Arc<str>,
    type_name: Arc<str>,
    metrics: Arc<MetricsRegistry>,
}

impl HostServices {
    /// Services for instance `plugin_id` of `type_name`.
    pub fn new(plugin_id: &str, type_name: &str, metrics: Arc<MetricsRegistry>) -> Self {
        HostServices {
            plugin_id: plugin_id.into(),
            type_name: type_name.into(),
            metrics,
        }
    }

    /// The FFI-safe object to hand to constructors.
    pub fn into_host_box(self) -> HostBox {
        HostBox::from_ptr(RArc::new(self), TD_Opaque)
    }
}

macro_rules! plugin_event {
    ($level:expr, $self:ident, $target:ident, $message:ident) => {
        tracing::event!(
            target: "nagare::plugin",
            $level,
            plugin_id = %$self.plugin_id,
            plugin_type = %$self.type_name,
            source = %$target,
            "{}",
            $message
        )
    };
}

impl Host for HostServices {
    fn log_enabled(&self, level: LogLevel) -> bool {
        use tracing::Level;
        match level {
            LogLevel::TRACE => tracing::enabled!(target: "nagare::plugin", Level::TRACE),
            LogLevel::DEBUG => tracing::enabled!(target: "nagare::plugin", Level::DEBUG),
            LogLevel::INFO => tracing::enabled!(target: "nagare::plugin", Level::INFO),
            LogLevel::WARN => tracing::enabled!(target: "nagare::plugin", Level::WARN),
            _ => tracing::enabled!(target: "nagare::plugin", Level::ERROR),
        }
    }

    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
        use tracing::Level;
        let (target, message) = (target.as_str(), message.as_str());
        match level {
            LogLevel::TRACE => plugin_event!(Level::TRACE, self, target, message),
            LogLevel::DEBUG => plugin_event!(Level::DEBUG, self, target, message),
            LogLevel::INFO => plugin_event!(Level::INFO, self, target, message),
            LogLevel::WARN => plugin_event!(Level::WARN, self, target, message),
            // FATAL and unknown future levels log as errors.
            _ => plugin_event!(Level::ERROR, self, target, message),
        }
    }

    fn register_metric(&self, kind: MetricKind, name: RStr<'_>, help: RStr<'_>) -> MetricId {
        self.metrics.register(
            kind,
            name.as_str(),
            help.as_str(),
            &self.plugin_id,
            &self.type_name,
        )
    }

    fn record_metric(&self, id: MetricId, value: f64) {
        self.metrics.record(id, value);
    }
}

/// A registry from explicit directories only (no environment, no executable directory).
pub fn load_dirs(dirs: &[PathBuf]) -> Result<Registry, RegistryError> {
    Registry::load(&PluginSearchPath::explicit(dirs))
}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::{RSlice, RStr as S};
    use nagare_plugin_api::{ChunkFormat, ChunkRef, ErrorKind};

    use std::path::Path;

    use super::*;
    use crate::loader::MANIFEST_SECTION;
    use crate::loader::tests::{
        built_plugin, copy_into, elf, patch_file, private_dir, section_blob, sectioned_plugin,
        set_mode,
    };

    fn node(name: &str, location: &str, attrs: &[(&str, &str)]) -> ConfigNode {
        ConfigNode {
            name: name.into(),
            location: location.into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| {
                    abi_stable::std_types::Tuple2(
                        (*k).into(),
                        abi_stable::std_types::ROption::RSome((*v).into()),
                    )
                })
                .collect(),
            ..ConfigNode::default()
        }
    }

    #[test]
    fn unknown_type_in_empty_registry() {
        let reg = Registry::new();
        let host = reg.host_for("o1", "foo");
        let err = reg
            .new_output("foo", "o1", &node("match", "fluent.conf:3", &[]), host)
            .err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some(
                "fluent.conf:3: unknown @type 'foo' for <match>: no plugin provides it; loaded types: (none); searched: (none)"
            )
        );
    }

    #[test]
    fn metrics_registry() {
        let m = MetricsRegistry::default();
        let c = m.register(MetricKind::COUNTER, "events", "h", "o1", "null");
        let g = m.register(MetricKind::GAUGE, "queue", "h", "o1", "null");
        assert_eq!(
            m.register(MetricKind::COUNTER, "events", "h", "o1", "null"),
            c
        );
        assert_ne!(
            m.register(MetricKind::COUNTER, "events", "h", "o2", "null"),
            c
        );
        m.record(c, 2.0);
        m.record(c, 3.0);
        m.record(g, 7.0);
        m.record(g, 4.0);
        m.record(MetricId(999), 1.0);
        assert_eq!(
            (
                m.value("o1", "events"),
                m.value("o1", "queue"),
                m.value("o2", "events")
            ),
            (Some(5.0), Some(4.0), Some(0.0))
        );
        // Through the FFI-safe host object.
        let host = HostServices::new("o3", "x", Arc::new(MetricsRegistry::default()));
        let metrics = host.metrics.clone();
        let boxed = host.into_host_box();
        let id = boxed.register_metric(MetricKind::COUNTER, S::from("n"), S::from("help"));
        boxed.record_metric(id, 1.5);
        assert_eq!(metrics.value("o3", "n"), Some(1.5));
        // Without a subscriber nothing is enabled, and logging is harmless.
        assert!(!boxed.log_enabled(LogLevel::ERROR));
        boxed.log(LogLevel::FATAL, S::from("t"), S::from("m"));
    }

    /// A private dir with copies of the built plugins (None when they are not built).
    fn plugin_dir(files: &[(&str, &str)]) -> Option<tempfile::TempDir> {
        let dir = private_dir();
        for (src, name) in files {
            let Some(so) = built_plugin(src) else {
                eprintln!(
                    "{src} not built; skipping (cargo build -p nagare-out-null -p nagare-out-stdout -p nagare-test-panic)"
                );
                return None;
            };
            copy_into(&so, dir.path(), name);
        }
        Some(dir)
    }

    fn chunk(data: &[u8]) -> ChunkRef<'_> {
        ChunkRef {
            tag: "app".into(),
            chunk_id: [1; 16],
            records: 2,
            format: ChunkFormat::MSGPACK_STREAM,
            data: RSlice::from(data),
            variables: RSlice::from(&[][..]),
        }
    }

    #[test]
    fn real_plugins_register_build_and_survive_panics() {
        let Some(dir) = plugin_dir(&[
            ("libnagare_out_null.so", "libnagare_out_null.so"),
            ("libnagare_test_panic.so", "libnagare_test_panic.so"),
            ("libnagare_out_stdout.so", "libnagare_out_stdout.so"),
        ]) else {
            return;
        };
        if let Some(libm) = [
            "/lib/x86_64-linux-gnu/libm.so.6",
            "/usr/lib/x86_64-linux-gnu/libm.so.6",
        ]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        {
            copy_into(libm, dir.path(), "libm_copy.so");
        }
        let reg = load_dirs(&[dir.path().to_path_buf()]).unwrap_or_else(|e| panic!("{e}"));
        let listed: Vec<_> = reg
            .list()
            .iter()
            .map(|p| (p.kind.name(), p.type_name.clone(), p.package.clone()))
            .collect();
        let own = |k: &'static str, t: &str, p: &str| (k, t.to_owned(), p.to_owned());
        assert_eq!(
            listed,
            [
                own("filter", "test_panic", "nagare-test-panic"),
                own("output", "null", "nagare-out-null"),
                own("output", "stdout", "nagare-out-stdout"),
                own("output", "test_panic", "nagare-test-panic"),
            ]
        );
        // The bad file was skipped with its reason; the others loaded.
        let skipped: Vec<_> = reg.skipped().iter().map(|s| s.error.to_string()).collect();
        assert!(skipped.len() <= 1);
        assert!(
            skipped.iter().all(|s| s.ends_with(
                "libm_copy.so: not a nagare plugin (it exports no nagare_plugin_abi_epoch)"
            )),
            "{skipped:?}"
        );

        // Two entries, each `[1, {}]`.
        let data = [0x92, 0x01, 0x80, 0x92, 0x02, 0x80];
        let conf = node("match", "fluent.conf:9", &[("@type", "null")]);
        let mut null = reg
            .new_output("null", "n1", &conf, reg.host_for("n1", "null"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(null.start().is_ok());
        assert!(null.write(chunk(&data)).is_ok());
        let stats = null
            .control(S::from("stats.v1"), RSlice::from(&[][..]))
            .into_result()
            .map(|v| v.to_vec());
        // {"events": 2, "chunks": 1}
        assert_eq!(
            stats.ok(),
            Some(vec![
                0x82, 0xa6, b'e', b'v', b'e', b'n', b't', b's', 0x02, 0xa6, b'c', b'h', b'u', b'n',
                b'k', b's', 0x01
            ])
        );
        assert_eq!(reg.metrics().value("n1", "events"), Some(2.0));
        assert!(null.stop().is_ok());

        // A panicking write comes back as a PANIC error, and the instance stays usable.
        let conf = node(
            "match",
            "fluent.conf:12",
            &[("@type", "test_panic"), ("every", "2")],
        );
        let boom = reg
            .new_output("test_panic", "p1", &conf, reg.host_for("p1", "test_panic"))
            .unwrap_or_else(|e| panic!("{e}"));
        let kinds: Vec<_> = (0..3)
            .map(|_| boom.write(chunk(&data)).into_result().err().map(|e| e.kind))
            .collect();
        assert_eq!(kinds, [None, Some(ErrorKind::PANIC), None]);
        // A panicking constructor is an instantiation error naming the element.
        let conf = node("match", "fluent.conf:20", &[("panic_on", "new")]);
        let err = reg
            .new_output("test_panic", "p2", &conf, reg.host_for("p2", "test_panic"))
            .err();
        match err {
            Some(InstantiateError::Plugin(f)) => {
                let (error, location) = (f.error, f.location);
                assert_eq!(
                    (error.kind, location.as_str()),
                    (ErrorKind::PANIC, "fluent.conf:20")
                );
                assert!(
                    error
                        .message
                        .starts_with("test_panic: deliberate panic at "),
                    "{}",
                    error.message
                );
            }
            other => panic!("expected a plugin error, got {other:?}"),
        }
        // A config error from the plugin carries its message.
        let conf = node("match", "fluent.conf:30", &[("panic_on", "sometimes")]);
        let err = reg
            .new_output("test_panic", "p3", &conf, reg.host_for("p3", "test_panic"))
            .err()
            .map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(
            err.starts_with("fluent.conf:30: output 'test_panic' (@id p3, from ")
                && err.ends_with("config error: fluent.conf:30: invalid value for panic_on: 'sometimes' (valid options are new,start,write,filter,control,stop,never)"),
            "{err}"
        );
        // Wrong kind: the message says what the type is.
        let err = reg
            .new_input(
                "test_panic",
                "i1",
                &node("source", "fluent.conf:1", &[]),
                reg.host_for("i1", "x"),
            )
            .err()
            .map(|e| e.to_string());
        let expect = format!(
            "fluent.conf:1: unknown @type 'test_panic' for <source>: it is a filter/output plugin; loaded types: (none); searched: {}",
            dir.path().display()
        );
        assert_eq!(err, Some(expect));
        let filter = reg
            .new_filter(
                "test_panic",
                "f1",
                &node("filter", "f:1", &[]),
                reg.host_for("f1", "x"),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            filter
                .filter(chunk(&data))
                .into_result()
                .err()
                .map(|e| e.kind),
            Some(ErrorKind::PANIC)
        );
    }

    #[test]
    fn duplicate_types_name_both_files() {
        let Some(dir) = plugin_dir(&[
            ("libnagare_out_null.so", "a_null.so"),
            ("libnagare_out_null.so", "b_null.so"),
        ]) else {
            return;
        };
        let err = load_dirs(&[dir.path().to_path_buf()])
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err,
            Some(format!(
                "output plugin 'null' is provided twice: by {} and by {}; remove one of them",
                dir.path().join("a_null.so").display(),
                dir.path().join("b_null.so").display()
            ))
        );
    }

    /// The lines of `/proc/self/maps` naming a file under `dir`.
    fn mapped_under(dir: &Path) -> Vec<String> {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let prefix = dir.display().to_string();
        let mut files: Vec<String> = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .filter(|p| p.starts_with(&prefix))
            .filter_map(|p| Some(Path::new(p).file_name()?.to_str()?.to_owned()))
            .collect();
        files.sort();
        files.dedup();
        files
    }

    fn names(paths: Vec<&Path>) -> Vec<String> {
        paths
            .iter()
            .filter_map(|p| Some(p.file_name()?.to_str()?.to_owned()))
            .collect()
    }

    #[test]
    fn only_the_plugins_a_config_uses_are_mapped() {
        let dir = private_dir();
        for file in [
            "libnagare_out_null.so",
            "libnagare_out_stdout.so",
            "libnagare_test_panic.so",
        ] {
            if sectioned_plugin(dir.path(), file).is_none() {
                return;
            }
        }
        let mut reg = load_dirs(&[dir.path().to_path_buf()]).unwrap_or_else(|e| panic!("{e}"));
        // Indexed from the sections: every type is known and listed, nothing is mapped.
        assert!(reg.loaded_files().is_empty(), "{reg:?}");
        assert_eq!(mapped_under(dir.path()), Vec::<String>::new());
        let listed: Vec<_> = reg
            .list()
            .iter()
            .map(|p| format!("{}:{} {}", p.kind.name(), p.type_name, p.package))
            .collect();
        assert_eq!(
            listed,
            [
                "filter:test_panic nagare-test-panic",
                "output:null nagare-out-null",
                "output:stdout nagare-out-stdout",
                "output:test_panic nagare-test-panic",
            ]
        );
        // A wrong-kind lookup answers from the index without loading anything.
        let err = reg
            .new_input(
                "null",
                "i1",
                &node("source", "fluent.conf:1", &[]),
                reg.host_for("i1", "null"),
            )
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err,
            Some(format!(
                "fluent.conf:1: unknown @type 'null' for <source>: it is a output plugin; loaded types: (none); searched: {}",
                dir.path().display()
            ))
        );
        assert_eq!(mapped_under(dir.path()), Vec::<String>::new());

        // A config that uses only `null` maps only out_null.
        let conf = node("match", "fluent.conf:9", &[("@type", "null")]);
        let mut null = reg
            .new_output("null", "n1", &conf, reg.host_for("n1", "null"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(null.start().is_ok());
        assert_eq!(mapped_under(dir.path()), ["libnagare_out_null.so"]);
        assert_eq!(names(reg.loaded_files()), ["libnagare_out_null.so"]);
        // A second instance reuses the module.
        assert!(
            reg.new_output("null", "n2", &conf, reg.host_for("n2", "null"))
                .is_ok()
        );
        assert_eq!(mapped_under(dir.path()), ["libnagare_out_null.so"]);
        assert!(null.stop().is_ok());

        // `nagare plugins` loads and checks the rest.
        reg.load_all();
        assert!(reg.skipped().is_empty());
        assert_eq!(
            mapped_under(dir.path()),
            [
                "libnagare_out_null.so",
                "libnagare_out_stdout.so",
                "libnagare_test_panic.so"
            ]
        );
        assert_eq!(reg.list().len(), 4);
    }

    #[test]
    fn registry_is_shareable_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Registry>();
    }

    #[test]
    fn duplicates_are_found_from_sections_without_loading() {
        let dir = private_dir();
        let Some(first) = sectioned_plugin(dir.path(), "libnagare_out_null.so") else {
            return;
        };
        copy_into(&first, dir.path(), "libnagare_zz_null.so");
        let err = load_dirs(&[dir.path().to_path_buf()])
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err,
            Some(format!(
                "output plugin 'null' is provided twice: by {} and by {}; remove one of them",
                first.display(),
                dir.path().join("libnagare_zz_null.so").display()
            ))
        );
        assert_eq!(mapped_under(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn a_lazy_file_that_fails_to_load_is_reported_on_use() {
        let dir = private_dir();
        // A file whose section is fine but which is no loadable library.
        let blob = section_blob(
            nagare_plugin_api::ABI_EPOCH,
            "package:nagare-fake\nversion:1.0.0\nsdk:0.1.0\noutput:fake\n",
        );
        let fake = dir.path().join("libnagare_fake.so");
        std::fs::write(&fake, elf(&[(MANIFEST_SECTION, 1, &blob)], false))
            .unwrap_or_else(|e| panic!("{e}"));
        set_mode(&fake, 0o755);
        // A plugin whose section was altered after the build (the type renamed).
        let altered = sectioned_plugin(dir.path(), "libnagare_out_null.so");
        if let Some(altered) = &altered {
            patch_file(altered, b"output:null\n", b"output:nulx\n");
        }
        let mut reg = load_dirs(&[dir.path().to_path_buf()]).unwrap_or_else(|e| panic!("{e}"));
        assert!(reg.skipped().is_empty());
        assert!(reg.list().iter().any(|p| p.type_name == "fake"));
        let conf = node("match", "fluent.conf:4", &[("@type", "fake")]);
        let err = reg
            .new_output("fake", "f1", &conf, reg.host_for("f1", "fake"))
            .err();
        match &err {
            Some(InstantiateError::Load(e)) => {
                assert!(matches!(**e, LoadError::Open { .. }), "{e}");
                assert!(
                    e.to_string()
                        .starts_with(&format!("{}: cannot load: ", fake.display())),
                    "{e}"
                );
            }
            other => panic!("expected a load error, got {other:?}"),
        }
        // The failure is remembered: the same error, and the type is no longer listed.
        let again = reg
            .new_output("fake", "f2", &conf, reg.host_for("f2", "fake"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(again, err.map(|e| e.to_string()));
        assert!(!reg.list().iter().any(|p| p.type_name == "fake"));
        assert!(reg.provider(PluginKind::OUTPUT, "fake").is_none());
        if let Some(altered) = &altered {
            let err = reg
                .new_output("nulx", "x1", &conf, reg.host_for("x1", "nulx"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.starts_with(&format!(
                    "{}: the module's manifest (nagare-out-null ",
                    altered.display()
                )) && err.contains("output:null) differs from its .nagare_manifest section")
                    && err.contains("output:nulx)"),
                "{err}"
            );
        }
        // load_all reports what failed and forgets its types.
        reg.load_all();
        assert!(!reg.knows(PluginKind::OUTPUT, "fake"));
        assert_eq!(reg.skipped().len(), 1 + usize::from(altered.is_some()));
        reg.load_all();
        assert_eq!(reg.skipped().len(), 1 + usize::from(altered.is_some()));
    }
}
