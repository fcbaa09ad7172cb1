//! Errors found while building a [`crate::RoutingTable`]. Each names the place in the
//! configuration (`file:line:col`) and, where Fluentd has one, uses Fluentd's message.

use nagare_config::Location;
use thiserror::Error;

use crate::pattern::PatternError;

/// Why a configuration cannot be turned into a routing table.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RouterError {
    /// A `<match>`/`<filter>` argument is not a valid pattern.
    #[error("{location}: {source}")]
    InvalidPattern {
        /// The directive.
        location: Location,
        /// What is wrong with the pattern.
        source: PatternError,
    },
    /// A directive that needs a plugin type has none.
    #[error("{location}: Missing '@type' parameter on <{directive}> directive")]
    MissingType {
        /// `source`, `match`, `filter` or `store`.
        directive: String,
        /// The directive.
        location: Location,
    },
    /// `<label>` without a name.
    #[error("{location}: Missing symbol argument on <label> directive")]
    LabelWithoutName {
        /// The `<label>`.
        location: Location,
    },
    /// `<label @ROOT>`: the name is reserved for the top level.
    #[error(
        "{location}: @ROOT for <label> is not permitted, reserved for getting root router \
         (use another name)"
    )]
    RootLabelDeclared {
        /// The `<label>`.
        location: Location,
    },
    /// The same label twice.
    #[error("{location}: Section <label {name}> appears twice (first at {first})")]
    DuplicateLabel {
        /// The label name.
        name: String,
        /// The second definition.
        location: Location,
        /// The first definition.
        first: Location,
    },
    /// A label with no `<match>`: its events could go nowhere.
    #[error("{location}: Missing <match> sections in <label {name}> section")]
    LabelWithoutMatch {
        /// The label name.
        name: String,
        /// The `<label>`.
        location: Location,
    },
    /// `@label` names a label that is not defined (for this worker).
    #[error(
        "{location}: {name} label not found (referenced by `@label` on <{directive}>); \
         define <label {name}> or fix the name"
    )]
    UndefinedLabel {
        /// The label name as written.
        name: String,
        /// The directive holding the `@label`.
        directive: String,
        /// Where the reference is.
        location: Location,
    },
    /// Events relabelled along this cycle come back to where they started, for ever.
    #[error(
        "{location}: relabel loop: events go {} and back again for ever; \
         break the cycle (out_relabel without @label re-emits into its own label)",
        cycle.join(" -> ")
    )]
    RelabelLoop {
        /// The labels of the cycle, first and last equal (`@ROOT` for the top level).
        cycle: Vec<String>,
        /// The relabel directive that closes the cycle.
        location: Location,
    },
    /// `@type copy` without any `<store>`.
    #[error("{location}: '<store>' sections are required in <match> with @type copy")]
    CopyWithoutStore {
        /// The `<match>`.
        location: Location,
    },
    /// `ignore_if_prev_success` on the first `<store>`, which has no previous store.
    #[error("{location}: ignore_if_prev_success must specify 2nd or later <store> directives")]
    IgnoreIfPrevSuccessOnFirstStore {
        /// The `<store>`.
        location: Location,
    },
    /// `copy_mode` is not one of Fluentd's values.
    #[error(
        "{location}: valid options are no_copy,shallow,deep,marshal but got {value} \
         (copy_mode of out_copy)"
    )]
    InvalidCopyMode {
        /// The value written.
        value: String,
        /// The `<match>`.
        location: Location,
    },
    /// `<worker>` without an id.
    #[error("{location}: Missing worker id on <worker> directive")]
    WorkerWithoutId {
        /// The `<worker>`.
        location: Location,
    },
    /// A worker id outside `0..workers`.
    #[error(
        "{location}: worker{id} specified by <worker> directive is not allowed. \
         Available worker id is between 0 and {max} (set <system> workers)"
    )]
    WorkerIdOutOfRange {
        /// The id written.
        id: i64,
        /// The highest valid id.
        max: i64,
        /// The `<worker>`.
        location: Location,
    },
    /// `<worker 3-1>`.
    #[error(
        "{location}: greater first_worker_id<{first}> than last_worker_id<{last}> specified by \
         <worker> directive is not allowed. Available multi worker assign syntax is \
         <smaller_worker_id>-<greater_worker_id>"
    )]
    WorkerRangeReversed {
        /// First id of the range.
        first: i64,
        /// Last id of the range.
        last: i64,
        /// The `<worker>`.
        location: Location,
    },
    /// Two `<worker N-M>` ranges share an id.
    #[error("{location}: specified worker_id<{id}> collisions is detected on <worker> directive")]
    WorkerCollision {
        /// The shared id.
        id: i64,
        /// The second `<worker>`.
        location: Location,
    },
    /// `<worker>` may only hold `<source>`, `<match>`, `<filter>` and `<label>`.
    #[error("{location}: <worker> section cannot have <{child}> directive")]
    WorkerInvalidChild {
        /// The offending child's name.
        child: String,
        /// The child.
        location: Location,
    },
}

impl RouterError {
    /// Where in the configuration the problem is.
    pub fn location(&self) -> &Location {
        match self {
            RouterError::InvalidPattern { location, .. }
            | RouterError::MissingType { location, .. }
            | RouterError::LabelWithoutName { location }
            | RouterError::RootLabelDeclared { location }
            | RouterError::DuplicateLabel { location, .. }
            | RouterError::LabelWithoutMatch { location, .. }
            | RouterError::UndefinedLabel { location, .. }
            | RouterError::RelabelLoop { location, .. }
            | RouterError::CopyWithoutStore { location }
            | RouterError::IgnoreIfPrevSuccessOnFirstStore { location }
            | RouterError::InvalidCopyMode { location, .. }
            | RouterError::WorkerWithoutId { location }
            | RouterError::WorkerIdOutOfRange { location, .. }
            | RouterError::WorkerRangeReversed { location, .. }
            | RouterError::WorkerCollision { location, .. }
            | RouterError::WorkerInvalidChild { location, .. } => location,
        }
    }
}

/// Something suspicious but accepted, as Fluentd accepts it with a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterWarning {
    /// Where.
    pub location: Location,
    /// What, and what to do.
    pub message: String,
}
