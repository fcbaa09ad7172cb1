//! Errors and warnings. Every error names `file:line:column`, quotes the offending line with a
//! caret under the column, and ends with a hint a user can act on.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::location::{Location, line_of};

/// What kind of problem a [`ConfigError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The text does not follow the Fluentd v1 syntax (tags, quoting, JSON, reserved `@` keys).
    Syntax,
    /// An `@include` could not be resolved: missing file, cycle, URL, unreadable file.
    Include,
    /// A `"#{...}"` expression is outside the supported Ruby subset or failed to evaluate.
    EmbeddedRuby,
    /// The tree parsed but breaks a rule Fluentd enforces at start-up (see [`crate::check`]).
    Semantic,
    /// The configuration file itself could not be read.
    Io,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Syntax => "syntax error",
            ErrorKind::Include => "include error",
            ErrorKind::EmbeddedRuby => "embedded Ruby error",
            ErrorKind::Semantic => "configuration error",
            ErrorKind::Io => "I/O error",
        })
    }
}

/// A configuration error located at `file:line:column`.
///
/// `Display` renders:
/// ```text
/// <file>:<line>:<col>: <message>
/// <the offending line>
/// <caret under the column>
/// hint: <hint>
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.location, .message, .line_text, .hint))]
pub struct ConfigError {
    kind: ErrorKind,
    location: Location,
    message: String,
    line_text: String,
    hint: String,
    #[source]
    source: Option<std::io::Error>,
}

fn render(location: &Location, message: &str, line_text: &str, hint: &str) -> String {
    let col = usize::try_from(location.column.saturating_sub(1)).unwrap_or(0);
    // Keep tabs so the caret lines up under tab-indented text.
    let mut caret: String = line_text
        .chars()
        .take(col)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let have = caret.chars().count();
    caret.extend(std::iter::repeat_n(' ', col.saturating_sub(have)));
    caret.push('^');
    format!("{location}: {message}\n{line_text}\n{caret}\nhint: {hint}")
}

impl ConfigError {
    /// Builds an error; the offending line text is looked up from the parsed sources (or the
    /// file on disk) by `location`.
    pub fn new(
        kind: ErrorKind,
        location: Location,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        let line_text = source_line(&location);
        ConfigError {
            kind,
            location,
            message: message.into(),
            line_text,
            hint: hint.into(),
            source: None,
        }
    }

    /// Attaches the underlying I/O error.
    pub(crate) fn with_io(mut self, err: std::io::Error) -> Self {
        self.source = Some(err);
        self
    }

    /// Which kind of problem this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Where the problem is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The one-line description (Fluentd's wording where it has one).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What the user can do about it.
    pub fn hint(&self) -> &str {
        &self.hint
    }

    /// The text of the offending line (empty when unknown).
    pub fn line_text(&self) -> &str {
        &self.line_text
    }
}

/// A non-fatal finding: a deprecated form, or something Fluentd only warns about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where the finding is.
    pub location: Location,
    /// What was found and what to use instead.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: warning: {}", self.location, self.message)
    }
}

/// Texts of the files parsed in this process, so errors raised later (by [`crate::check`])
/// can still quote the offending line. Keyed by path: re-parsing a file replaces its entry,
/// so the map is bounded by the number of distinct files.
static SOURCES: Mutex<Option<HashMap<PathBuf, Arc<str>>>> = Mutex::new(None);

pub(crate) fn register_source(file: &Path, text: Arc<str>) {
    if let Ok(mut guard) = SOURCES.lock() {
        guard
            .get_or_insert_with(HashMap::new)
            .insert(file.to_path_buf(), text);
    }
}

fn source_line(location: &Location) -> String {
    let cached = SOURCES
        .lock()
        .ok()
        .and_then(|g| g.as_ref().and_then(|m| m.get(&*location.file).cloned()));
    match cached {
        Some(text) => line_of(&text, location.line),
        None => std::fs::read_to_string(&location.file)
            .map(|t| line_of(&t, location.line))
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_location_line_caret_and_hint() {
        let file: Arc<Path> = Arc::from(Path::new("/nonexistent/render-test.conf"));
        register_source(&file, Arc::from("<source>\n\t@typo x\n"));
        let err = ConfigError::new(
            ErrorKind::Syntax,
            Location::new(file, 2, 3),
            "bad key",
            "fix it",
        );
        assert_eq!(
            err.to_string(),
            "/nonexistent/render-test.conf:2:3: bad key\n\t@typo x\n\t ^\nhint: fix it"
        );
        assert_eq!(err.kind(), ErrorKind::Syntax);
        assert_eq!(err.message(), "bad key");
        assert_eq!(err.hint(), "fix it");
        assert_eq!(err.location().line, 2);
    }

    #[test]
    fn caret_past_end_of_line_is_padded() {
        let s = render(&Location::start_of(Path::new("x")), "m", "", "h");
        assert_eq!(s, "x:1:1: m\n\n^\nhint: h");
        let mut loc = Location::start_of(Path::new("x"));
        loc.column = 4;
        assert_eq!(render(&loc, "m", "ab", "h"), "x:1:4: m\nab\n   ^\nhint: h");
    }
}
