//! Source positions: every element, attribute and error points at `file:line:column`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// A position in a configuration file, 1-based. `column` counts characters, not bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// The file the text came from (the included file for included content).
    pub file: Arc<Path>,
    /// Line number, starting at 1.
    pub line: u32,
    /// Column number in characters, starting at 1.
    pub column: u32,
}

impl Location {
    /// Builds a location from its parts.
    pub fn new(file: Arc<Path>, line: u32, column: u32) -> Self {
        Location { file, line, column }
    }

    /// The start of `file` (`file:1:1`), used for whole-file conditions.
    pub fn start_of(file: &Path) -> Self {
        Location {
            file: Arc::from(file),
            line: 1,
            column: 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Maps byte offsets in one source text to [`Location`]s and gives back line texts.
#[derive(Debug, Clone)]
pub(crate) struct LineIndex {
    file: Arc<Path>,
    text: Arc<str>,
    /// Byte offset of the start of each line.
    starts: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(file: Arc<Path>, text: Arc<str>) -> Self {
        let mut starts = vec![0];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                starts.push(i + 1);
            }
        }
        LineIndex { file, text, starts }
    }

    pub(crate) fn text(&self) -> &Arc<str> {
        &self.text
    }

    /// The location of byte offset `pos` (clamped to the text and to a char boundary).
    pub(crate) fn location(&self, pos: usize) -> Location {
        let mut pos = pos.min(self.text.len());
        while !self.text.is_char_boundary(pos) {
            pos -= 1;
        }
        let line_idx = match self.starts.binary_search(&pos) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.starts.get(line_idx).copied().unwrap_or(0);
        let column = self.text.get(start..pos).map_or(0, |s| s.chars().count()) + 1;
        Location {
            file: self.file.clone(),
            line: u32::try_from(line_idx + 1).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }
}

/// The text of 1-based line `line` of `text`, without `\r\n`/`\n`.
pub(crate) fn line_of(text: &str, line: u32) -> String {
    let idx = usize::try_from(line.saturating_sub(1)).unwrap_or(usize::MAX);
    text.split('\n')
        .nth(idx)
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, pos: usize, expect: (u32, u32)) {
        let idx = LineIndex::new(Arc::from(Path::new("f.conf")), Arc::from(text));
        let loc = idx.location(pos);
        assert_eq!((loc.line, loc.column), expect, "pos {pos} in {text:?}");
    }

    #[test]
    fn offsets_map_to_lines_and_char_columns() {
        check("", 0, (1, 1));
        check("abc", 2, (1, 3));
        check("abc\ndef", 4, (2, 1));
        check("abc\ndef", 6, (2, 3));
        check("abc\n", 4, (2, 1));
        check("é\nx", 2, (1, 2)); // after the 2-byte char
        check("éa", 1, (1, 1)); // inside a char: clamped back
        check("a", 99, (1, 2));
    }

    #[test]
    fn display_is_file_line_col() {
        let loc = Location::new(Arc::from(Path::new("/etc/td.conf")), 3, 7);
        assert_eq!(loc.to_string(), "/etc/td.conf:3:7");
    }

    #[test]
    fn line_text_strips_terminators() {
        assert_eq!(line_of("a\r\nb\n", 1), "a");
        assert_eq!(line_of("a\r\nb\n", 2), "b");
        assert_eq!(line_of("a", 5), "");
    }
}
