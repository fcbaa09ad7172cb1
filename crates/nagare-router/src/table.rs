//! The routing table built from a configuration tree: sources, labels, and per label the
//! ordered `<filter>`/`<match>` rules, with Fluentd's first-match routing (`event_router.rb`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use nagare_config::{Element, Location};

use crate::cache::RouteCache;
use crate::error::{RouterError, RouterWarning};
use crate::pattern::MatchPattern;

/// Fluentd's built-in label for events that failed to be emitted.
pub const ERROR_LABEL: &str = "@ERROR";
/// Fluentd's name for the top-level router (`out_relabel @label @ROOT`); never declared.
pub const ROOT_LABEL: &str = "@ROOT";
/// Fluentd's built-in label for its own log events (`fluent.<level>` tags).
pub const FLUENT_LOG_LABEL: &str = "@FLUENT_LOG";

/// Which router: the top level or a `<label>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LabelRef {
    /// The top level (`@ROOT`).
    Root,
    /// Index into [`RoutingTable::labels`].
    Named(usize),
}

/// Index into [`RoutingTable::filters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FilterId(pub usize);

/// Index into [`RoutingTable::outputs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutputId(pub usize);

/// What kind of directive a [`Directive`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectiveKind {
    /// `<filter>`.
    Filter,
    /// `<match>`.
    Match,
    /// `<store>` of an `@type copy` match.
    Store,
}

/// One `<filter>`, `<match>` or `<store>`, as the engine needs it to instantiate a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Filter, match or store.
    pub kind: DirectiveKind,
    /// The configuration element (with its sub-sections, e.g. `<buffer>`).
    pub element: Element,
    /// The routing pattern as written (`**` for an empty argument); for a store, its match's.
    pub pattern: String,
    /// `@type`.
    pub type_name: String,
    /// `@id`, if any.
    pub id: Option<String>,
    /// The router the directive belongs to.
    pub label: LabelRef,
    /// The router named by its own `@label` (where a plugin that emits sends its events), if
    /// it has one that names a defined label.
    pub emit_label: Option<LabelRef>,
}

impl Directive {
    /// Where the directive is in the configuration.
    pub fn location(&self) -> &Location {
        &self.element.location
    }
}

/// A `<source>` and the router its events enter.
#[derive(Debug, Clone)]
pub struct Source {
    /// The configuration element.
    pub element: Element,
    /// `@type`.
    pub type_name: String,
    /// `@id`, if any.
    pub id: Option<String>,
    /// The router named by `@label`, else the top level.
    pub label: LabelRef,
}

/// A declared `<label @NAME>`.
#[derive(Debug, Clone)]
pub struct Label {
    /// The name, with its `@`.
    pub name: String,
    /// Where it is declared.
    pub location: Location,
    rules: Vec<Rule>,
}

impl Label {
    /// Whether "no patterns matched" is never reported here (`@FLUENT_LOG`, as in Fluentd).
    pub fn suppresses_no_match(&self) -> bool {
        self.name == FLUENT_LOG_LABEL
    }
}

/// How out_copy duplicates events for each store (`copy_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CopyMode {
    /// Share the event stream (the default).
    #[default]
    NoCopy,
    /// Copy the stream, sharing records.
    Shallow,
    /// Copy records.
    Deep,
    /// Copy records by serialising them.
    Marshal,
}

/// One `<store>` of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// The `<store>` directive.
    pub directive: Arc<Directive>,
    /// Where the store sends events.
    pub target: Target,
    /// `<store ignore_error>`: an error here does not stop the copy.
    pub ignore_error: bool,
    /// `<store ignore_if_prev_success>`: skipped when the previous store succeeded.
    pub ignore_if_prev_success: bool,
}

/// Where a matched stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A plugin output.
    Output(OutputId),
    /// `@type copy`: every store in order.
    Copy {
        /// `copy_mode` (or the deprecated `deep_copy true`, which means shallow).
        copy_mode: CopyMode,
        /// The stores, in order.
        stores: Vec<Store>,
    },
    /// `@type relabel`: re-emit, same tag, into that router.
    Relabel(LabelRef),
}

/// The result of routing a tag in one router.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Route {
    /// Every matching `<filter>` before the first matching `<match>`, in order.
    pub filters: Vec<FilterId>,
    /// The first matching `<match>`; `None` means "no patterns matched".
    pub target: Option<Target>,
}

#[derive(Debug, Clone)]
pub(crate) enum RuleAction {
    Filter(FilterId),
    Match(Target),
}

/// One `<filter>`/`<match>` of a router, in configuration order.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) pattern: MatchPattern,
    pub(crate) directive: Arc<Directive>,
    pub(crate) action: RuleAction,
}

/// Options for [`RoutingTable::build_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BuildOptions {
    /// The worker this table is for: `<worker N>` sections for other workers are left out.
    pub worker_id: u32,
    /// The number of workers; `None` reads `<system> workers` (default 1).
    pub workers: Option<u32>,
}

/// The routing graph of one worker: immutable after [`RoutingTable::build`], shared between
/// threads; [`RoutingTable::route`] is cached per `(label, tag)`.
pub struct RoutingTable {
    sources: Vec<Source>,
    filters: Vec<Arc<Directive>>,
    outputs: Vec<Arc<Directive>>,
    labels: Vec<Label>,
    root_rules: Vec<Rule>,
    label_index: HashMap<String, usize>,
    warnings: Vec<RouterWarning>,
    root_cache: RouteCache,
    label_caches: Vec<RouteCache>,
}

impl fmt::Debug for RoutingTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutingTable")
            .field("sources", &self.sources.len())
            .field("filters", &self.filters.len())
            .field("outputs", &self.outputs.len())
            .field(
                "labels",
                &self.labels.iter().map(|l| &l.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl RoutingTable {
    /// Builds the table for worker 0, reading `<system> workers`.
    pub fn build(root: &Element) -> Result<RoutingTable, RouterError> {
        RoutingTable::build_with(root, BuildOptions::default())
    }

    /// Builds the table for `options.worker_id`.
    pub fn build_with(root: &Element, options: BuildOptions) -> Result<RoutingTable, RouterError> {
        Builder::new(options).build(root)
    }

    /// Every `<source>` of this worker, in configuration order.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// Every `<filter>`, indexed by [`FilterId`].
    pub fn filter(&self, id: FilterId) -> Option<&Directive> {
        self.filters.get(id.0).map(|d| &**d)
    }

    /// Every `<filter>` of this worker: top level first, then each label's.
    pub fn filters(&self) -> impl ExactSizeIterator<Item = &Directive> {
        self.filters.iter().map(|d| &**d)
    }

    /// One plugin output by id.
    pub fn output(&self, id: OutputId) -> Option<&Directive> {
        self.outputs.get(id.0).map(|d| &**d)
    }

    /// Every plugin output to instantiate: `<match>`es and `<store>`s whose type is neither
    /// `copy` nor `relabel` (those two are routing, done by the host).
    pub fn outputs(&self) -> impl ExactSizeIterator<Item = &Directive> {
        self.outputs.iter().map(|d| &**d)
    }

    /// The declared labels, indexed by [`LabelRef::Named`].
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// A label by name; `@ROOT` is the top level.
    pub fn label_by_name(&self, name: &str) -> Option<LabelRef> {
        if name == ROOT_LABEL {
            return Some(LabelRef::Root);
        }
        self.label_index.get(name).map(|&i| LabelRef::Named(i))
    }

    /// The name of a router (`@ROOT` for the top level).
    pub fn label_name(&self, label: LabelRef) -> &str {
        match label {
            LabelRef::Root => ROOT_LABEL,
            LabelRef::Named(i) => self.labels.get(i).map_or("?", |l| l.name.as_str()),
        }
    }

    /// `<label @ERROR>`, where failed emits go, if declared.
    pub fn error_label(&self) -> Option<LabelRef> {
        self.label_by_name(ERROR_LABEL)
    }

    /// `<label @FLUENT_LOG>`, where the collector's own logs go, if declared (else they go to
    /// the top level, where `<match fluent.**>` catches them).
    pub fn fluent_log_label(&self) -> Option<LabelRef> {
        self.label_by_name(FLUENT_LOG_LABEL)
    }

    /// Accepted oddities worth a log line at start-up.
    pub fn warnings(&self) -> &[RouterWarning] {
        &self.warnings
    }

    /// Routes `tag` in `label`: the filters to run and where the stream then goes.
    ///
    /// Cached per `(label, tag)` (1024 tags per router, oldest evicted first, as Fluentd's
    /// `MatchCache`). An unknown label routes nowhere.
    pub fn route(&self, label: LabelRef, tag: &str) -> Arc<Route> {
        let (rules, cache) = match label {
            LabelRef::Root => (&self.root_rules, &self.root_cache),
            LabelRef::Named(i) => match (self.labels.get(i), self.label_caches.get(i)) {
                (Some(l), Some(c)) => (&l.rules, c),
                _ => return Arc::new(Route::default()),
            },
        };
        cache.get_or_insert_with(tag, || find(rules, tag))
    }

    /// How many tags are cached for `label` (tests and metrics).
    pub fn cached_tags(&self, label: LabelRef) -> usize {
        match label {
            LabelRef::Root => self.root_cache.len(),
            LabelRef::Named(i) => self.label_caches.get(i).map_or(0, RouteCache::len),
        }
    }

    pub(crate) fn rules(&self, label: LabelRef) -> &[Rule] {
        match label {
            LabelRef::Root => &self.root_rules,
            LabelRef::Named(i) => self.labels.get(i).map_or(&[], |l| l.rules.as_slice()),
        }
    }
}

/// Fluentd's `EventRouter#find`: filters until the first match.
fn find(rules: &[Rule], tag: &str) -> Route {
    let mut route = Route::default();
    for rule in rules {
        if !rule.pattern.matches(tag) {
            continue;
        }
        match &rule.action {
            RuleAction::Filter(id) => route.filters.push(*id),
            RuleAction::Match(target) => {
                route.target = Some(target.clone());
                return route;
            }
        }
    }
    route
}

pub(crate) fn find_rule<'r>(rules: &'r [Rule], tag: &str) -> (Vec<&'r Rule>, Option<&'r Rule>) {
    let mut filters = Vec::new();
    for rule in rules {
        if !rule.pattern.matches(tag) {
            continue;
        }
        match rule.action {
            RuleAction::Filter(_) => filters.push(rule),
            RuleAction::Match(_) => return (filters, Some(rule)),
        }
    }
    (filters, None)
}

// ---------------------------------------------------------------------------------------------
// Building.

/// Ruby's `String#to_i`: optional leading whitespace and sign, then digits (single `_`
/// between digits allowed); anything else stops the number; no digits gives 0.
fn ruby_to_i(s: &str) -> i64 {
    let s = s.trim_start();
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, s.get(1..).unwrap_or("")),
        Some(b'+') => (false, s.get(1..).unwrap_or("")),
        _ => (false, s),
    };
    let mut value: i64 = 0;
    let mut prev_digit = false;
    let mut chars = digits.chars().peekable();
    while let Some(c) = chars.next() {
        if let Some(d) = c.to_digit(10) {
            value = value.saturating_mul(10).saturating_add(i64::from(d));
            prev_digit = true;
        } else if c == '_' && prev_digit && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
            prev_digit = false;
        } else {
            break;
        }
    }
    if negative { -value } else { value }
}

/// Fluentd's lenient bool (`""`, `true`, `yes` are true).
fn ruby_bool(value: &str) -> Option<bool> {
    match value {
        "" | "true" | "yes" => Some(true),
        "false" | "no" => Some(false),
        _ => None,
    }
}

struct Builder {
    options: BuildOptions,
    sources: Vec<Source>,
    filters: Vec<Arc<Directive>>,
    outputs: Vec<Arc<Directive>>,
    labels: Vec<Label>,
    label_index: HashMap<String, usize>,
    warnings: Vec<RouterWarning>,
}

/// The directives of this worker, in Fluentd's order: top-level elements first, then the
/// children of each applicable `<worker>` section (Fluentd appends them with `conf += e`).
fn effective_elements(root: &Element, options: BuildOptions) -> Result<Vec<&Element>, RouterError> {
    let workers = i64::from(options.workers.unwrap_or_else(|| {
        root.children("system")
            .filter_map(|s| s.get("workers"))
            .last()
            .map(ruby_to_i)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1)
    }));
    let max = workers - 1;
    let me = i64::from(options.worker_id);
    let mut used: Vec<i64> = Vec::new();
    let mut elements: Vec<&Element> = root
        .elements
        .iter()
        .filter(|e| e.name != "worker")
        .collect();

    for worker in root.children("worker") {
        let location = &worker.location;
        if worker.arg.is_empty() {
            return Err(RouterError::WorkerWithoutId {
                location: location.clone(),
            });
        }
        let check_children = || -> Result<(), RouterError> {
            for child in &worker.elements {
                if !matches!(child.name.as_str(), "source" | "match" | "filter" | "label") {
                    return Err(RouterError::WorkerInvalidChild {
                        child: child.name.clone(),
                        location: child.location.clone(),
                    });
                }
            }
            Ok(())
        };
        let parts: Vec<&str> = worker.arg.split('-').collect();
        let mine = if let [first, last] = parts.as_slice() {
            let (first, last) = (ruby_to_i(first), ruby_to_i(last));
            if first > last {
                return Err(RouterError::WorkerRangeReversed {
                    first,
                    last,
                    location: location.clone(),
                });
            }
            for id in first..=last {
                if id < 0 || id > max {
                    return Err(RouterError::WorkerIdOutOfRange {
                        id,
                        max,
                        location: location.clone(),
                    });
                }
                if used.contains(&id) {
                    return Err(RouterError::WorkerCollision {
                        id,
                        location: location.clone(),
                    });
                }
                used.push(id);
            }
            check_children()?;
            (first..=last).contains(&me)
        } else {
            let id = ruby_to_i(&worker.arg);
            if id < 0 || id > max {
                return Err(RouterError::WorkerIdOutOfRange {
                    id,
                    max,
                    location: location.clone(),
                });
            }
            check_children()?;
            id == me
        };
        if mine {
            elements.extend(worker.elements.iter());
        }
    }
    Ok(elements)
}

impl Builder {
    fn new(options: BuildOptions) -> Builder {
        Builder {
            options,
            sources: Vec::new(),
            filters: Vec::new(),
            outputs: Vec::new(),
            labels: Vec::new(),
            label_index: HashMap::new(),
            warnings: Vec::new(),
        }
    }

    fn build(mut self, root: &Element) -> Result<RoutingTable, RouterError> {
        let elements = effective_elements(root, self.options)?;

        // Declare every label first, so that references in any order resolve.
        let mut label_elements: Vec<&Element> = Vec::new();
        for e in elements.iter().filter(|e| e.name == "label") {
            let name = e.arg.as_str();
            if name.is_empty() {
                return Err(RouterError::LabelWithoutName {
                    location: e.location.clone(),
                });
            }
            if name == ROOT_LABEL {
                return Err(RouterError::RootLabelDeclared {
                    location: e.location.clone(),
                });
            }
            if let Some(&first) = self.label_index.get(name) {
                let first = self
                    .labels
                    .get(first)
                    .map_or_else(|| e.location.clone(), |l| l.location.clone());
                return Err(RouterError::DuplicateLabel {
                    name: name.to_owned(),
                    location: e.location.clone(),
                    first,
                });
            }
            if e.children("match").next().is_none() {
                return Err(RouterError::LabelWithoutMatch {
                    name: name.to_owned(),
                    location: e.location.clone(),
                });
            }
            self.label_index.insert(name.to_owned(), self.labels.len());
            self.labels.push(Label {
                name: name.to_owned(),
                location: e.location.clone(),
                rules: Vec::new(),
            });
            label_elements.push(e);
        }

        let root_rules = self.rules_of(elements.iter().copied(), LabelRef::Root)?;
        for (i, e) in label_elements.iter().enumerate() {
            let rules = self.rules_of(e.elements.iter(), LabelRef::Named(i))?;
            if let Some(label) = self.labels.get_mut(i) {
                label.rules = rules;
            }
        }

        for e in elements.iter().filter(|e| e.name == "source") {
            let type_name = required_type(e, "source")?;
            let label = match e.label() {
                Some(name) => self.resolve_label(name, "source", e)?,
                None => LabelRef::Root,
            };
            self.sources.push(Source {
                element: (*e).clone(),
                type_name,
                id: e.id().map(str::to_owned),
                label,
            });
        }

        let table = RoutingTable {
            label_caches: self.labels.iter().map(|_| RouteCache::new()).collect(),
            root_cache: RouteCache::new(),
            sources: self.sources,
            filters: self.filters,
            outputs: self.outputs,
            labels: self.labels,
            root_rules,
            label_index: self.label_index,
            warnings: self.warnings,
        };
        check_relabel_loops(&table)?;
        Ok(table)
    }

    fn resolve_label(
        &self,
        name: &str,
        directive: &str,
        e: &Element,
    ) -> Result<LabelRef, RouterError> {
        if name == ROOT_LABEL {
            return Ok(LabelRef::Root);
        }
        match self.label_index.get(name) {
            Some(&i) => Ok(LabelRef::Named(i)),
            None => Err(RouterError::UndefinedLabel {
                name: name.to_owned(),
                directive: directive.to_owned(),
                location: e
                    .attr("@label")
                    .map_or_else(|| e.location.clone(), |a| a.location.clone()),
            }),
        }
    }

    /// The `@label` of a plugin directive other than relabel: resolved when it can be, else
    /// a warning (Fluentd fails only when the plugin actually emits into it).
    fn emit_label(&mut self, e: &Element, directive: &str) -> Option<LabelRef> {
        let name = e.label()?;
        match self.resolve_label(name, directive, e) {
            Ok(label) => Some(label),
            Err(err) => {
                self.warnings.push(RouterWarning {
                    location: err.location().clone(),
                    message: format!(
                        "{name} label not found (referenced by `@label` on <{directive}>); a \
                         plugin that emits events will fail to start"
                    ),
                });
                None
            }
        }
    }

    fn rules_of<'a>(
        &mut self,
        elements: impl Iterator<Item = &'a Element>,
        label: LabelRef,
    ) -> Result<Vec<Rule>, RouterError> {
        let mut rules = Vec::new();
        for e in elements {
            let kind = match e.name.as_str() {
                "filter" => DirectiveKind::Filter,
                "match" => DirectiveKind::Match,
                _ => continue,
            };
            let pattern_text = if e.arg.is_empty() {
                "**"
            } else {
                e.arg.as_str()
            };
            let pattern = MatchPattern::parse(pattern_text).map_err(|source| {
                RouterError::InvalidPattern {
                    location: e.location.clone(),
                    source,
                }
            })?;
            let type_name = required_type(e, &e.name)?;
            let directive = Directive {
                kind,
                element: e.clone(),
                pattern: pattern_text.to_owned(),
                type_name,
                id: e.id().map(str::to_owned),
                label,
                emit_label: None,
            };
            let (directive, action) = match kind {
                DirectiveKind::Filter => {
                    let mut directive = directive;
                    directive.emit_label = self.emit_label(e, "filter");
                    let directive = Arc::new(directive);
                    let id = FilterId(self.filters.len());
                    self.filters.push(Arc::clone(&directive));
                    (directive, RuleAction::Filter(id))
                }
                _ => {
                    let (directive, target) = self.target_of(directive)?;
                    (directive, RuleAction::Match(target))
                }
            };
            rules.push(Rule {
                pattern,
                directive,
                action,
            });
        }
        Ok(rules)
    }

    /// Turns a `<match>` or `<store>` into its target, registering plugin outputs.
    fn target_of(
        &mut self,
        mut directive: Directive,
    ) -> Result<(Arc<Directive>, Target), RouterError> {
        let e = directive.element.clone();
        let what = if directive.kind == DirectiveKind::Store {
            "store"
        } else {
            "match"
        };
        match directive.type_name.as_str() {
            "relabel" => {
                // Without @label, out_relabel re-emits into its own router.
                let to = match e.label() {
                    Some(name) => self.resolve_label(name, what, &e)?,
                    None => directive.label,
                };
                directive.emit_label = Some(to);
                Ok((Arc::new(directive), Target::Relabel(to)))
            }
            "copy" => {
                let copy_mode = copy_mode_of(&e)?;
                let mut stores = Vec::new();
                let mut flags = Vec::new();
                for (i, store) in e.children("store").enumerate() {
                    let ignore_error = store_flag(store, "ignore_error");
                    let ignore_if_prev_success = store_flag(store, "ignore_if_prev_success");
                    if i == 0 && ignore_if_prev_success {
                        return Err(RouterError::IgnoreIfPrevSuccessOnFirstStore {
                            location: store.location.clone(),
                        });
                    }
                    let child = Directive {
                        kind: DirectiveKind::Store,
                        element: store.clone(),
                        pattern: directive.pattern.clone(),
                        type_name: required_type(store, "store")?,
                        id: store.id().map(str::to_owned),
                        label: directive.label,
                        emit_label: None,
                    };
                    let (store_directive, target) = self.target_of(child)?;
                    flags.push((ignore_error, ignore_if_prev_success));
                    stores.push(Store {
                        directive: store_directive,
                        target,
                        ignore_error,
                        ignore_if_prev_success,
                    });
                }
                if stores.is_empty() {
                    return Err(RouterError::CopyWithoutStore {
                        location: e.location.clone(),
                    });
                }
                if flags.iter().all(|&(ie, _)| ie) && flags.iter().any(|&(_, ip)| !ip) {
                    self.warnings.push(RouterWarning {
                        location: e.location.clone(),
                        message: "ignore_errors are specified in all <store>, but \
                                  ignore_if_prev_success is not specified. Is this intended?"
                            .to_owned(),
                    });
                }
                Ok((Arc::new(directive), Target::Copy { copy_mode, stores }))
            }
            _ => {
                directive.emit_label = self.emit_label(&e, what);
                let directive = Arc::new(directive);
                let id = OutputId(self.outputs.len());
                self.outputs.push(Arc::clone(&directive));
                Ok((directive, Target::Output(id)))
            }
        }
    }
}

fn required_type(e: &Element, directive: &str) -> Result<String, RouterError> {
    e.type_name()
        .map(str::to_owned)
        .ok_or_else(|| RouterError::MissingType {
            directive: directive.to_owned(),
            location: e.location.clone(),
        })
}

/// `<store ignore_error>` (Fluentd tests the argument with `include?`) or, as a nagare
/// extension, an `ignore_error true` parameter inside the store.
fn store_flag(store: &Element, flag: &str) -> bool {
    store.arg.contains(flag) || store.get(flag).and_then(ruby_bool).unwrap_or(false)
}

fn copy_mode_of(e: &Element) -> Result<CopyMode, RouterError> {
    let location = || {
        e.attr("copy_mode")
            .map_or_else(|| e.location.clone(), |a| a.location.clone())
    };
    match e.get("copy_mode") {
        Some("no_copy") => Ok(CopyMode::NoCopy),
        Some("shallow") => Ok(CopyMode::Shallow),
        Some("deep") => Ok(CopyMode::Deep),
        Some("marshal") => Ok(CopyMode::Marshal),
        Some(other) => Err(RouterError::InvalidCopyMode {
            value: other.to_owned(),
            location: location(),
        }),
        // The deprecated `deep_copy true` always meant a shallow copy of the stream.
        None if e.get("deep_copy").and_then(ruby_bool) == Some(true) => Ok(CopyMode::Shallow),
        None => Ok(CopyMode::NoCopy),
    }
}

// ---------------------------------------------------------------------------------------------
// Relabel loops.

/// A relabel edge between routers.
struct Edge<'t> {
    from: LabelRef,
    to: LabelRef,
    /// Every tag routed in `from` takes this edge.
    unconditional: bool,
    directive: &'t Directive,
}

/// Relabel edges of one router. A `<match>` after one whose pattern is the bare `**` can never
/// be reached and contributes nothing. An edge is unconditional when it comes from the first
/// `<match>` of the router, whose pattern is `**`, directly or through copy stores that are
/// not `ignore_if_prev_success`.
fn edges_of<'t>(table: &'t RoutingTable, from: LabelRef, out: &mut Vec<Edge<'t>>) {
    let mut first_match = true;
    for rule in table.rules(from) {
        let RuleAction::Match(target) = &rule.action else {
            continue;
        };
        let universal = rule.pattern.matches_everything();
        collect_relabels(target, &rule.directive, from, first_match && universal, out);
        if universal {
            break;
        }
        first_match = false;
    }
}

fn collect_relabels<'t>(
    target: &'t Target,
    directive: &'t Directive,
    from: LabelRef,
    unconditional: bool,
    out: &mut Vec<Edge<'t>>,
) {
    match target {
        Target::Output(_) => {}
        Target::Relabel(to) => out.push(Edge {
            from,
            to: *to,
            unconditional,
            directive,
        }),
        Target::Copy { stores, .. } => {
            for store in stores {
                collect_relabels(
                    &store.target,
                    &store.directive,
                    from,
                    unconditional && !store.ignore_if_prev_success,
                    out,
                );
            }
        }
    }
}

/// Fails when events can go round a relabel cycle for ever. Precisely: there is a relabel
/// edge `A → B` (any edge, from a reachable `<match>` or `<store>`) and a path from `B` back
/// to `A` made only of unconditional edges (`B = A` included). Every tag that takes the first
/// edge then comes back to `A` with the same tag and takes it again: filters never change the
/// tag. Cycles with two or more conditional edges depend on the tag and are left to the
/// engine's run-time hop limit.
fn check_relabel_loops(table: &RoutingTable) -> Result<(), RouterError> {
    let mut edges = Vec::new();
    edges_of(table, LabelRef::Root, &mut edges);
    for i in 0..table.labels.len() {
        edges_of(table, LabelRef::Named(i), &mut edges);
    }
    let mut unconditional: HashMap<LabelRef, Vec<LabelRef>> = HashMap::new();
    for e in edges.iter().filter(|e| e.unconditional) {
        unconditional.entry(e.from).or_default().push(e.to);
    }
    for edge in &edges {
        if let Some(path) = unconditional_path(&unconditional, edge.to, edge.from) {
            let mut cycle = vec![table.label_name(edge.from).to_owned()];
            cycle.extend(path.iter().map(|l| table.label_name(*l).to_owned()));
            return Err(RouterError::RelabelLoop {
                cycle,
                location: edge.directive.location().clone(),
            });
        }
    }
    Ok(())
}

/// A path `start, …, goal` following unconditional edges (breadth first), if any.
fn unconditional_path(
    graph: &HashMap<LabelRef, Vec<LabelRef>>,
    start: LabelRef,
    goal: LabelRef,
) -> Option<Vec<LabelRef>> {
    let mut previous: HashMap<LabelRef, LabelRef> = HashMap::new();
    let mut seen: HashSet<LabelRef> = HashSet::from([start]);
    let mut queue = VecDeque::from([start]);
    while let Some(at) = queue.pop_front() {
        if at == goal {
            let mut path = vec![at];
            let mut cur = at;
            while let Some(&p) = previous.get(&cur) {
                path.push(p);
                cur = p;
            }
            path.reverse();
            return Some(path);
        }
        for &next in graph.get(&at).map_or(&[][..], Vec::as_slice) {
            if seen.insert(next) {
                previous.insert(next, at);
                queue.push_back(next);
            }
        }
    }
    None
}
