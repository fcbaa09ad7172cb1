//! Ruby (Onigmo) regular expressions on top of Rust engines.
//!
//! Fluentd compiles `pattern` with Ruby's `Regexp`. This module reads the same syntax:
//! `/body/flags` (flags `i`, `m` = dot matches newline, `x`) or a bare body, with Ruby's
//! meanings kept where the engines differ:
//! * `^` and `$` always match at line boundaries (Ruby has no single-line mode);
//! * `\d`, `\w`, `\s`, `\h` (and `\D`, `\W`, `\S`, `\H`) are ASCII classes;
//! * `\Z` matches at the end or before a final newline; `\/` is a slash.
//!
//! Patterns the `regex` crate can run use it (linear time); look-around, back-references,
//! atomic groups and the like fall back to `fancy-regex` in Oniguruma mode.

use std::fmt;

/// A compiled Ruby pattern.
#[derive(Clone)]
pub enum RubyRegex {
    /// Runs on the `regex` crate.
    Fast(regex::Regex),
    /// `^literal$` with a plain literal and no `i`/`x` flag (the usual "field is exactly"
    /// pattern): matches when a line of the text (Ruby's `^`/`$` are line anchors) is the
    /// literal, answered with byte comparisons. The compiled regex is kept for display.
    WholeLine(String, regex::Regex),
    /// Needs backtracking features: runs on `fancy-regex`.
    Fancy(fancy_regex::Regex),
}

impl fmt::Debug for RubyRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RubyRegex::Fast(r) => write!(f, "Fast({:?})", r.as_str()),
            RubyRegex::WholeLine(_, r) => write!(f, "WholeLine({:?})", r.as_str()),
            RubyRegex::Fancy(r) => write!(f, "Fancy({:?})", r.as_str()),
        }
    }
}

/// Splits `/body/flags` into `(body, flags)`; anything else is a bare body.
pub fn split_literal(src: &str) -> (&str, &str) {
    if let Some(rest) = src.strip_prefix('/')
        && let Some(end) = rest.rfind('/')
    {
        let flags = &rest[end + 1..];
        if flags.chars().all(|c| matches!(c, 'i' | 'm' | 'x')) {
            return (&rest[..end], flags);
        }
    }
    (src, "")
}

const DIGIT: &str = "0-9";
const WORD: &str = "0-9A-Za-z_";
const SPACE: &str = "\\t\\n\\x0B\\f\\r ";
const HEX: &str = "0-9a-fA-F";

/// Rewrites Ruby-only syntax into what both Rust engines read the Ruby way.
fn translate(body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 16);
    let mut chars = body.chars().peekable();
    let mut class_depth = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let inside = class_depth > 0;
                let set = match e {
                    'd' | 'D' => Some(DIGIT),
                    'w' | 'W' => Some(WORD),
                    's' | 'S' => Some(SPACE),
                    'h' | 'H' => Some(HEX),
                    _ => None,
                };
                match (set, e.is_ascii_uppercase(), inside) {
                    (Some(s), false, true) => out.push_str(s),
                    (Some(s), false, false) => {
                        out.push('[');
                        out.push_str(s);
                        out.push(']');
                    }
                    (Some(s), true, false) => {
                        out.push_str("[^");
                        out.push_str(s);
                        out.push(']');
                    }
                    (Some(s), true, true) => {
                        // A negated class inside a class: a nested negated class.
                        out.push_str("[^");
                        out.push_str(s);
                        out.push(']');
                    }
                    (None, ..) => match e {
                        'Z' if !inside => out.push_str("(?=\\n?\\z)"),
                        '/' => out.push('/'),
                        other => {
                            out.push('\\');
                            out.push(other);
                        }
                    },
                }
            }
            '[' => {
                class_depth += 1;
                out.push('[');
                // A leading `]` (or `^]`) is a literal in both Ruby and Rust.
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push_str("\\]");
                    chars.next();
                }
            }
            ']' if class_depth > 0 => {
                class_depth -= 1;
                out.push(']');
            }
            other => out.push(other),
        }
    }
    out
}

/// The literal of a `^literal$` body whose literal is only characters with no regex
/// meaning (ASCII letters, digits, `_`, `-`, `:`, `@`, `,`); `None` otherwise.
fn whole_line_literal(body: &str) -> Option<&str> {
    let lit = body.strip_prefix('^')?.strip_suffix('$')?;
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'@' | b',');
    (!lit.is_empty() && lit.bytes().all(plain)).then_some(lit)
}

impl RubyRegex {
    /// Compiles a config value the way Fluentd's `:regexp` type does (`/body/flags` or bare).
    pub fn from_literal(src: &str) -> Result<Self, String> {
        let (body, flags) = split_literal(src);
        Self::new(body, flags)
    }

    /// Compiles `body` with Ruby `flags` (`i`, `m`, `x`).
    pub fn new(body: &str, flags: &str) -> Result<Self, String> {
        let pattern = translate(body);
        let (i, m, x) = (
            flags.contains('i'),
            flags.contains('m'),
            flags.contains('x'),
        );
        let fast = regex::RegexBuilder::new(&pattern)
            .multi_line(true)
            .case_insensitive(i)
            .dot_matches_new_line(m)
            .ignore_whitespace(x)
            .build();
        match fast {
            Ok(r) => Ok(match whole_line_literal(body) {
                Some(lit) if !i && !x => RubyRegex::WholeLine(lit.to_owned(), r),
                _ => RubyRegex::Fast(r),
            }),
            Err(fast_err) => fancy_regex::RegexBuilder::new(&pattern)
                .oniguruma_mode(true)
                .multi_line(true)
                .case_insensitive(i)
                .dot_matches_new_line(m)
                .verbose_mode(x)
                .build()
                .map(RubyRegex::Fancy)
                .map_err(|fancy_err| match fast_err {
                    regex::Error::Syntax(_) => format!("{fancy_err}"),
                    other => format!("{other}"),
                }),
        }
    }

    /// Whether the pattern matches somewhere in `text`. A backtracking engine that gives up
    /// (catastrophic pattern) is an error.
    pub fn is_match(&self, text: &str) -> Result<bool, String> {
        match self {
            RubyRegex::Fast(r) => Ok(r.is_match(text)),
            RubyRegex::WholeLine(lit, _) => Ok(text.split('\n').any(|line| line == lit)),
            RubyRegex::Fancy(r) => r.is_match(text).map_err(|e| e.to_string()),
        }
    }

    /// Whether the slower backtracking engine runs this pattern.
    pub fn is_fancy(&self) -> bool {
        matches!(self, RubyRegex::Fancy(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(src: &str, cases: &[(&str, bool)]) {
        let re = RubyRegex::from_literal(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        for (text, expect) in cases {
            assert_eq!(re.is_match(text), Ok(*expect), "{src} on {text:?}");
        }
    }

    #[test]
    fn ruby_semantics() {
        check("WARN", &[("a WARN b", true), ("warn", false)]);
        check("/warn/i", &[("WARN", true)]);
        check("/a.b/", &[("a\nb", false)]);
        check("/a.b/m", &[("a\nb", true)]);
        check("^INFO$", &[("x\nINFO\ny", true), ("xINFO", false)]);
        check("\\d+", &[("٣", false), ("3", true)]);
        check("^\\w+$", &[("abc_1", true), ("héllo", false)]);
        check("[\\d\\s]x", &[(" x", true), ("1x", true), ("ax", false)]);
        check("\\h\\H", &[("fz", true), ("ff", false)]);
        check(
            "end\\Z",
            &[("the end\n", true), ("the end", true), ("end\nx", false)],
        );
        check("/[a-z]test/", &[("atest", true), ("Atest", false)]);
        check("a\\/b", &[("a/b", true)]);
        check("[]a]", &[("]", true), ("a", true), ("b", false)]);
        check("[^]a]", &[("]", false), ("b", true)]);
        check("/ a b /x", &[("ab", true)]);
    }

    #[test]
    fn fancy_fallback() {
        let re = RubyRegex::from_literal("(?<=a)b").unwrap_or_else(|e| panic!("{e}"));
        assert!(re.is_fancy());
        assert_eq!(re.is_match("ab"), Ok(true));
        assert_eq!(re.is_match("cb"), Ok(false));
        let re = RubyRegex::from_literal("(a)\\1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(re.is_match("aa"), Ok(true));
        assert!(!RubyRegex::from_literal("WARN").is_ok_and(|r| r.is_fancy()));
    }

    #[test]
    fn whole_line_literals() {
        let whole =
            |src: &str| matches!(RubyRegex::from_literal(src), Ok(RubyRegex::WholeLine(..)));
        assert!(whole("/^even$/"));
        assert!(whole("^web-01:a@b,c_D9$"));
        assert!(whole("/^even$/m"));
        assert!(!whole("/^even$/i"));
        assert!(!whole("/^even$/x"));
        assert!(!whole("^ev.n$"));
        assert!(!whole("^$"));
        assert!(!whole("^a b$"));
        assert!(!whole("even$"));
        check(
            "/^even$/",
            &[
                ("even", true),
                ("odd\neven", true),
                ("even\n", true),
                ("even\r", false),
                ("evens", false),
                ("", false),
            ],
        );
    }

    proptest::proptest! {
        /// The line comparison answers as the regex it stands for, on texts made of the
        /// literal's pieces, line breaks and other bytes.
        #[test]
        fn whole_line_agrees_with_regex(
            lit in "[a-c_:-]{1,4}",
            text in "(ab|a|b|c|_|:|-|\\n|\\r|x| |é){0,8}",
        ) {
            let body = format!("^{lit}$");
            let re = RubyRegex::new(&body, "").unwrap_or_else(|e| panic!("{e}"));
            let RubyRegex::WholeLine(_, regex) = &re else {
                return Err(proptest::test_runner::TestCaseError::fail("not a whole-line literal"));
            };
            proptest::prop_assert_eq!(re.is_match(&text), Ok(regex.is_match(&text)), "{} on {:?}", body, text);
        }
    }

    #[test]
    fn invalid_patterns_are_errors() {
        assert!(RubyRegex::from_literal("(").is_err());
        assert!(RubyRegex::from_literal("[a").is_err());
    }

    #[test]
    fn literal_split() {
        assert_eq!(split_literal("/a/i"), ("a", "i"));
        assert_eq!(split_literal("/a/b"), ("/a/b", ""));
        assert_eq!(split_literal("a/"), ("a/", ""));
        assert_eq!(split_literal("/"), ("/", ""));
    }
}
