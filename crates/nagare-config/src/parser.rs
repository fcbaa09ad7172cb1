//! The Fluentd v1 parser (`v1_parser.rb` + `literal_parser.rb`): elements, parameters,
//! quoted strings, multi-line JSON, embedded Ruby and `@include`.
//!
//! Lexical tokens come from the pest grammar in `fluentd.pest`; this module drives them the
//! way Fluentd drives Ruby's `StringScanner`, and scans quoted strings and JSON by hand.

use nagare_types::parse_json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pest::Parser as _;

use crate::element::{Attr, Element, Value};
use crate::env::Environment;
use crate::error::{ConfigError, ErrorKind, Warning, register_source};
use crate::location::{LineIndex, Location};
use crate::ruby::{self, Outcome};

#[derive(pest_derive::Parser)]
#[grammar = "fluentd.pest"]
struct Lexer;

/// Elements that reject unknown `@` parameters directly inside them (`v1_parser.rb`).
const ELEM_SYMBOLS: [&str; 4] = ["match", "source", "filter", "system"];
/// Parameters that may start with `@`.
const RESERVED_PARAMS: [&str; 4] = ["@type", "@id", "@label", "@log_level"];
/// Deepest element nesting accepted (keeps recursion bounded on hostile input).
const MAX_DEPTH: usize = 64;
/// Largest included file read.
const MAX_INCLUDE_BYTES: u64 = 16 << 20;
/// Deepest `@include` chain accepted.
const MAX_INCLUDE_DEPTH: usize = 16;

const RESERVED_HINT: &str = "only @type, @id, @label, @log_level and @include may start with '@'; \
rename the parameter without the '@'";

/// Parser-wide state shared across included files.
pub(crate) struct Ctx<'e> {
    pub(crate) env: &'e dyn Environment,
    pub(crate) warnings: Vec<Warning>,
    /// Canonical paths of the files being parsed, outermost first (cycle detection).
    include_stack: Vec<PathBuf>,
}

impl<'e> Ctx<'e> {
    pub(crate) fn new(env: &'e dyn Environment) -> Self {
        Ctx {
            env,
            warnings: Vec::new(),
            include_stack: Vec::new(),
        }
    }
}

/// A position in one source text.
struct Scanner {
    src: LineIndex,
    pos: usize,
    /// Directory that relative `@include` paths resolve against.
    base_dir: PathBuf,
}

/// Which boundary ends a non-quoted string.
#[derive(Clone, Copy)]
enum Boundary {
    /// Values and include paths: `LINE_END`.
    LineEnd,
    /// Parameter names: `SPACING`.
    Spacing,
    /// Element arguments: `ZERO_OR_MORE_SPACING >`.
    TagEnd,
}

impl Scanner {
    fn new(file: Arc<Path>, text: Arc<str>) -> Self {
        let base_dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Scanner {
            src: LineIndex::new(file, text),
            pos: 0,
            base_dir,
        }
    }

    fn text(&self) -> &str {
        self.src.text()
    }

    fn rest(&self) -> &str {
        self.text().get(self.pos..).unwrap_or_default()
    }

    fn eof(&self) -> bool {
        self.pos >= self.text().len()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn bump(&mut self, c: char) {
        self.pos += c.len_utf8();
    }

    fn starts_with(&self, s: &str) -> bool {
        self.rest().starts_with(s)
    }

    /// Matches `rule` here; returns the matched length without moving.
    fn check(&self, rule: Rule) -> Option<usize> {
        let pairs = Lexer::parse(rule, self.rest()).ok()?;
        let pair = pairs.into_iter().next()?;
        Some(pair.as_span().end())
    }

    /// Matches `rule` here and moves past it; returns the matched text.
    fn skip(&mut self, rule: Rule) -> Option<String> {
        let len = self.check(rule)?;
        let start = self.pos;
        self.pos += len;
        Some(
            self.text()
                .get(start..self.pos)
                .unwrap_or_default()
                .to_string(),
        )
    }

    fn location_at(&self, pos: usize) -> Location {
        self.src.location(pos)
    }

    fn error_at(
        &self,
        pos: usize,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(ErrorKind::Syntax, self.location_at(pos), message, hint)
    }

    fn error(&self, message: impl Into<String>, hint: impl Into<String>) -> ConfigError {
        self.error_at(self.pos, message, hint)
    }
}

/// Parses one whole file's text into `root` (which must be the `ROOT` element).
pub(crate) fn parse_root(
    text: &str,
    file: &Path,
    ctx: &mut Ctx<'_>,
) -> Result<Element, ConfigError> {
    let file: Arc<Path> = Arc::from(file);
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text: Arc<str> = Arc::from(text);
    register_source(&file, text.clone());
    let mut root = Element::new("ROOT", "", Location::start_of(&file));
    ctx.include_stack.push(canonical(&file));
    let mut sc = Scanner::new(file, text);
    let result = parse_element(&mut sc, ctx, true, &mut root, 0);
    ctx.include_stack.pop();
    result.map(|()| root)
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `parse_element(root_element, elem_name, attrs, elems)` of `v1_parser.rb`: reads
/// parameters and child elements into `elem` until its end tag (or EOF at top level).
fn parse_element(
    sc: &mut Scanner,
    ctx: &mut Ctx<'_>,
    root_element: bool,
    elem: &mut Element,
    depth: usize,
) -> Result<(), ConfigError> {
    loop {
        sc.skip(Rule::spacing);
        if sc.eof() {
            if root_element {
                return Ok(());
            }
            return Err(sc.error(
                format!("expected end tag '</{}>' but got end of file", elem.name),
                format!(
                    "<{}> opened at {} is never closed; add '</{}>'",
                    elem.name, elem.location, elem.name
                ),
            ));
        }

        if sc.starts_with("</") {
            let tag_pos = sc.pos;
            sc.pos += 2;
            let e_name = sc.skip(Rule::element_name).unwrap_or_default();
            sc.skip(Rule::spacing);
            if sc.peek() != Some('>') {
                return Err(sc.error(
                    "expected character in tag name",
                    "an end tag is written '</name>' with a name of letters, digits and '_'",
                ));
            }
            sc.pos += 1;
            if sc.skip(Rule::line_end).is_none() {
                return Err(sc.error(
                    "expected end of line after end tag",
                    "put nothing but a comment after '</name>' on its line",
                ));
            }
            if root_element || e_name != elem.name {
                let hint = if root_element {
                    "no element is open here; remove this end tag or add the matching '<...>'"
                        .to_string()
                } else {
                    format!(
                        "the innermost open element is <{} {}> at {}; close it with '</{}>' first",
                        elem.name, elem.arg, elem.location, elem.name
                    )
                };
                return Err(sc.error_at(tag_pos, format!("unmatched end tag '</{e_name}>'"), hint));
            }
            return Ok(());
        }

        if sc.starts_with("<") {
            let tag_pos = sc.pos;
            sc.pos += 1;
            let Some(e_name) = sc.skip(Rule::element_name) else {
                return Err(sc.error(
                    "expected element name after '<'",
                    "element names are letters, digits and '_', e.g. '<source>' or '<match app.**>'",
                ));
            };
            sc.skip(Rule::spacing);
            let arg = scan_string(sc, ctx, Boundary::TagEnd)?;
            sc.skip(Rule::spacing);
            if sc.peek() != Some('>') {
                return Err(sc.error(
                    "expected '>'",
                    format!("close the opening tag: '<{e_name} ...>' (a '#' after a space starts a comment)"),
                ));
            }
            sc.pos += 1;
            if sc.skip(Rule::line_end).is_none() {
                return Err(sc.error(
                    "expected end of line after tag",
                    format!("start the contents of <{e_name}> (or its end tag) on the next line"),
                ));
            }
            if depth + 1 > MAX_DEPTH {
                return Err(sc.error_at(
                    tag_pos,
                    format!("elements are nested more than {MAX_DEPTH} levels deep"),
                    "flatten the configuration",
                ));
            }
            let arg = match arg {
                Some(Value::Str(s)) => s,
                _ => String::new(),
            };
            let mut child = Element::new(e_name, arg, sc.location_at(tag_pos));
            parse_element(sc, ctx, false, &mut child, depth + 1)?;
            elem.elements.push(child);
            continue;
        }

        if root_element {
            let here = sc.pos;
            if let Some(directive) = sc.skip(Rule::include_directive) {
                if !directive.starts_with('@') {
                    ctx.warnings.push(Warning {
                        location: sc.location_at(here),
                        message: "'include' is deprecated. Use '@include' instead".into(),
                    });
                }
                parse_include(sc, ctx, elem, here, depth)?;
                continue;
            }
        }

        // A parameter line.
        let key_pos = sc.pos;
        let key = match scan_string(sc, ctx, Boundary::Spacing)? {
            Some(Value::Str(k)) => k,
            Some(_) => {
                return Err(sc.error_at(
                    key_pos,
                    "a parameter name evaluated to use_nil/use_default",
                    "parameter names must be plain strings",
                ));
            }
            None => {
                return Err(sc.error("expected a parameter name", "write 'key value' on one line"));
            }
        };
        let Some(gap) = sc.skip(Rule::spacing_without_comment) else {
            return Err(sc.error(
                "expected whitespace after the parameter name",
                "separate the name from its value with a space",
            ));
        };
        let location = sc.location_at(key_pos);
        if gap.contains('\n') || sc.eof() {
            // A key alone on its line has the value "" (Fluentd's 'tag_mapped' style).
            elem.set_attr(Attr {
                key,
                value: Value::Str(String::new()),
                location,
            });
            continue;
        }
        if key == "@include" {
            parse_include(sc, ctx, elem, key_pos, depth)?;
            continue;
        }
        if key.starts_with('@') && !RESERVED_PARAMS.contains(&key.as_str()) {
            if root_element || ELEM_SYMBOLS.contains(&elem.name.as_str()) {
                return Err(sc.error_at(
                    key_pos,
                    format!(
                        "'@' is the system reserved prefix. Don't use '@' prefix parameter in the configuration: {key}"
                    ),
                    RESERVED_HINT,
                ));
            }
            ctx.warnings.push(Warning {
                location: location.clone(),
                message: format!(
                    "'@' is the system reserved prefix. It works in the nested configuration for now but it will be rejected: {key}"
                ),
            });
        }
        let value = parse_literal(sc, ctx)?;
        if sc.skip(Rule::line_end).is_none() {
            return Err(sc.error(
                "expected end of line",
                "only a comment may follow a quoted or JSON value; quote the whole value if it contains quotes",
            ));
        }
        elem.set_attr(Attr {
            key,
            value,
            location,
        });
    }
}

/// `parse_literal`: a JSON array/hash, or a quoted/non-quoted string up to the line end.
fn parse_literal(sc: &mut Scanner, ctx: &mut Ctx<'_>) -> Result<Value, ConfigError> {
    sc.skip(Rule::spacing_without_comment);
    match sc.peek() {
        Some('[') => scan_json(sc, ctx, true).map(Value::Str),
        Some('{') => scan_json(sc, ctx, false).map(Value::Str),
        _ => Ok(scan_string(sc, ctx, Boundary::LineEnd)?.unwrap_or(Value::Str(String::new()))),
    }
}

/// `scan_string`: double-quoted, single-quoted or non-quoted up to `boundary`.
/// `None` when a non-quoted string would be empty.
fn scan_string(
    sc: &mut Scanner,
    ctx: &mut Ctx<'_>,
    boundary: Boundary,
) -> Result<Option<Value>, ConfigError> {
    match sc.peek() {
        Some('"') => scan_double_quoted(sc, ctx).map(Some),
        Some('\'') => scan_single_quoted(sc).map(|s| Some(Value::Str(s))),
        _ => {
            let rule = match boundary {
                Boundary::LineEnd => Rule::nq_value,
                Boundary::Spacing => Rule::nq_key,
                Boundary::TagEnd => Rule::nq_arg,
            };
            Ok(sc.skip(rule).map(Value::Str))
        }
    }
}

/// `"..."`: escapes, backslash-newline joins, literal newlines kept, `#{}` evaluated.
fn scan_double_quoted(sc: &mut Scanner, ctx: &mut Ctx<'_>) -> Result<Value, ConfigError> {
    let open = sc.pos;
    sc.pos += 1;
    let mut out = String::new();
    let (mut nil, mut default) = (false, false);
    loop {
        let Some(c) = sc.peek() else {
            return Err(sc.error_at(
                open,
                "unexpected end of file in a double quoted string",
                "close the string with '\"'; write \\\" for a quote inside it",
            ));
        };
        match c {
            '"' => {
                sc.pos += 1;
                break;
            }
            '\\' => match sc.peek2() {
                None => {
                    sc.pos += 1;
                }
                Some('\n') => sc.pos += 2,
                Some('\r') => {
                    sc.pos += 2;
                    if sc.peek() == Some('\n') {
                        sc.pos += 1;
                    }
                }
                Some(e) => {
                    let at = sc.pos;
                    sc.pos += 1;
                    sc.bump(e);
                    out.push(match e {
                        'r' => '\r',
                        'n' => '\n',
                        't' => '\t',
                        'f' => '\x0c',
                        'b' => '\x08',
                        '0' => '\0',
                        c if c.is_ascii_alphanumeric() => {
                            return Err(sc.error_at(
                                at,
                                format!("unexpected back-slash escape character '{c}'"),
                                "known escapes are \\\" \\' \\\\ \\r \\n \\t \\f \\b \\0; write \\\\ for a literal backslash or use single quotes",
                            ));
                        }
                        other => other,
                    });
                }
            },
            '#' if sc.starts_with("#{") => match embedded(sc, ctx)? {
                Outcome::Text(t) => out.push_str(&t),
                Outcome::UseNil => nil = true,
                Outcome::UseDefault => default = true,
            },
            c => {
                out.push(c);
                sc.bump(c);
            }
        }
    }
    Ok(if nil {
        Value::Nil
    } else if default {
        Value::UseDefault
    } else {
        Value::Str(out)
    })
}

/// Evaluates `#{...}` at the scanner position and moves past its `}`.
fn embedded(sc: &mut Scanner, ctx: &mut Ctx<'_>) -> Result<Outcome, ConfigError> {
    let at = sc.pos;
    let code_start = sc.pos + 2;
    let Some(end) = ruby::find_code_end(sc.text(), code_start) else {
        sc.pos = sc.text().len();
        return Err(sc.error_at(
            at,
            "expected end of embedded code but $end",
            "close the embedded code with '}'; write \\#{ for a literal '#{'",
        ));
    };
    let code = sc
        .text()
        .get(code_start..end)
        .unwrap_or_default()
        .to_string();
    sc.pos = end + 1;
    ruby::evaluate(&code, ctx.env).map_err(|msg| {
        ConfigError::new(
            ErrorKind::EmbeddedRuby,
            sc.location_at(at),
            msg,
            format!(
                "nagare evaluates a safe subset of Ruby: {}; write \\#{{ for a literal '#{{'",
                ruby::SUPPORTED
            ),
        )
    })
}

/// `'...'`: only `\'` and `\\` are escapes.
fn scan_single_quoted(sc: &mut Scanner) -> Result<String, ConfigError> {
    let open = sc.pos;
    sc.pos += 1;
    let mut out = String::new();
    loop {
        match (sc.peek(), sc.peek2()) {
            (None, _) => {
                return Err(sc.error_at(
                    open,
                    "unexpected end of file in a single quoted string",
                    "close the string with \"'\"; write \\' for a quote inside it",
                ));
            }
            (Some('\''), _) => {
                sc.pos += 1;
                return Ok(out);
            }
            (Some('\\'), Some(e @ ('\'' | '\\'))) => {
                out.push(e);
                sc.pos += 2;
            }
            (Some(c), _) => {
                out.push(c);
                sc.bump(c);
            }
        }
    }
}

/// `scan_json`: accumulates text until it is a complete JSON array/hash, accepting `#`
/// comments where the text so far is already valid and `//`/`/* */` comments, then stores
/// the compact re-serialized JSON.
fn scan_json(sc: &mut Scanner, ctx: &mut Ctx<'_>, is_array: bool) -> Result<String, ConfigError> {
    let start = sc.pos;
    let (open, close) = if is_array { ('[', ']') } else { ('{', '}') };
    let kind = if is_array { "array" } else { "hash" };
    sc.pos += 1;
    let mut buffer = String::from(open);
    let mut line_buffer = String::new();
    let mut tracker = JsonTracker::default();
    tracker.feed(open);
    let incomplete_hint = "a value starting with '[' or '{' is JSON and may span lines until it is complete; \
check brackets, quotes and commas (trailing commas are not allowed), or quote the value to keep it a plain string";

    while let Some(c) = sc.peek() {
        sc.bump(c);
        if c == '#' {
            let trimmed = line_buffer.trim_end();
            let trimmed = trimmed.strip_suffix(',').unwrap_or(trimmed);
            let probe = format!("{buffer}{trimmed}{close}");
            if parse_json(&probe).is_ok() {
                // A comment: drop the rest of the line.
                while let Some(d) = sc.peek() {
                    sc.bump(d);
                    if d == '\n' {
                        break;
                    }
                }
                buffer.push_str(&line_buffer);
                buffer.push('\n');
                line_buffer.clear();
                tracker.feed('\n');
            } else if tracker.in_string() && sc.peek() == Some('{') {
                sc.pos -= 1; // back onto '#'
                let text = match embedded(sc, ctx)? {
                    Outcome::Text(t) => t,
                    Outcome::UseNil | Outcome::UseDefault => String::new(),
                };
                let quoted = serde_json::Value::String(text).to_string();
                let inner = quoted
                    .get(1..quoted.len().saturating_sub(1))
                    .unwrap_or_default();
                line_buffer.push_str(inner);
            } else {
                line_buffer.push('#');
                tracker.feed('#');
            }
            continue;
        }
        if c == '\n' {
            buffer.push_str(&line_buffer);
            buffer.push('\n');
            line_buffer.clear();
            tracker.feed('\n');
            continue;
        }
        line_buffer.push(c);
        if tracker.feed(c) {
            buffer.push_str(&line_buffer);
            return match parse_json(&buffer) {
                Ok(v) => Ok(v.to_string()),
                Err(e) => Err(sc.error_at(
                    start,
                    format!("got incomplete JSON {kind} configuration: {e}"),
                    incomplete_hint,
                )),
            };
        }
    }
    Err(sc.error_at(
        start,
        format!("got incomplete JSON {kind} configuration"),
        incomplete_hint,
    ))
}

/// Follows JSON lexical state so the scanner knows when the top-level bracket closes.
#[derive(Default)]
struct JsonTracker {
    depth: i64,
    state: JsonState,
}

#[derive(Default, PartialEq, Eq, Clone, Copy)]
enum JsonState {
    #[default]
    Normal,
    Str,
    StrEscape,
    Slash,
    LineComment,
    BlockComment,
    BlockStar,
}

impl JsonTracker {
    fn in_string(&self) -> bool {
        matches!(self.state, JsonState::Str | JsonState::StrEscape)
    }

    /// Feeds one char; true when it closed the top-level value.
    fn feed(&mut self, c: char) -> bool {
        use JsonState::*;
        match self.state {
            Str => match c {
                '\\' => self.state = StrEscape,
                '"' => self.state = Normal,
                _ => {}
            },
            StrEscape => self.state = Str,
            LineComment => {
                if c == '\n' {
                    self.state = Normal;
                }
            }
            BlockComment => {
                if c == '*' {
                    self.state = BlockStar;
                }
            }
            BlockStar => {
                self.state = match c {
                    '/' => Normal,
                    '*' => BlockStar,
                    _ => BlockComment,
                }
            }
            Slash => match c {
                '/' => self.state = LineComment,
                '*' => self.state = BlockComment,
                _ => {
                    self.state = Normal;
                    return self.feed(c);
                }
            },
            Normal => match c {
                '"' => self.state = Str,
                '/' => self.state = Slash,
                '[' | '{' => self.depth += 1,
                ']' | '}' => {
                    self.depth -= 1;
                    return self.depth <= 0;
                }
                _ => {}
            },
        }
        false
    }
}

/// `@include <path>`: reads the path literal and splices the included files into `elem`.
fn parse_include(
    sc: &mut Scanner,
    ctx: &mut Ctx<'_>,
    elem: &mut Element,
    at: usize,
    depth: usize,
) -> Result<(), ConfigError> {
    let uri = match scan_string(sc, ctx, Boundary::LineEnd)? {
        Some(Value::Str(s)) if !s.is_empty() => s,
        _ => {
            return Err(ConfigError::new(
                ErrorKind::Include,
                sc.location_at(at),
                "@include needs a path",
                "write '@include path/to/file.conf' (relative to this file) or a glob like 'conf.d/*.conf'",
            ));
        }
    };
    let location = sc.location_at(at);
    eval_include(sc, ctx, elem, &uri, &location, depth)?;
    sc.skip(Rule::line_end);
    Ok(())
}

fn include_error(location: &Location, message: String, hint: impl Into<String>) -> ConfigError {
    ConfigError::new(ErrorKind::Include, location.clone(), message, hint)
}

fn eval_include(
    sc: &Scanner,
    ctx: &mut Ctx<'_>,
    elem: &mut Element,
    uri: &str,
    location: &Location,
    depth: usize,
) -> Result<(), ConfigError> {
    let path = if let Some(rest) = uri.strip_prefix("file://") {
        rest.to_string()
    } else if let Some(scheme) = uri_scheme(uri) {
        let hint = "nagare reads no configuration over the network; download the file and @include it by path";
        return Err(include_error(
            location,
            format!("cannot @include {uri}: '{scheme}' URIs are not supported"),
            hint,
        ));
    } else {
        uri.to_string()
    };
    let pattern = if Path::new(&path).is_absolute() {
        PathBuf::from(&path)
    } else {
        sc.base_dir.join(&path)
    };
    let pattern_str = pattern.to_string_lossy().into_owned();

    let files: Vec<PathBuf> = if has_glob_meta(&path) {
        let mut found = Vec::new();
        for alternative in expand_braces(&pattern_str) {
            let entries = glob::glob(&alternative).map_err(|e| {
                include_error(
                    location,
                    format!("invalid @include pattern {uri}: {e}"),
                    "fix the glob pattern",
                )
            })?;
            found.extend(entries.filter_map(Result::ok).filter(|p| p.is_file()));
        }
        found.sort_by(|a, b| {
            a.as_os_str()
                .as_encoded_bytes()
                .cmp(b.as_os_str().as_encoded_bytes())
        });
        found.dedup();
        if found.is_empty() {
            ctx.warnings.push(Warning {
                location: location.clone(),
                message: format!("@include {uri}: the pattern {pattern_str} matches no file"),
            });
        }
        found
    } else {
        if !pattern.exists() {
            return Err(include_error(
                location,
                format!("include file not found: {}", pattern.display()),
                format!(
                    "relative paths resolve against the including file's directory ({}); fix the path or create the file",
                    sc.base_dir.display()
                ),
            ));
        }
        vec![pattern]
    };

    for file in files {
        let canon = canonical(&file);
        if ctx.include_stack.contains(&canon) {
            let chain: Vec<String> = ctx
                .include_stack
                .iter()
                .chain(std::iter::once(&canon))
                .map(|p| p.display().to_string())
                .collect();
            return Err(include_error(
                location,
                format!("include cycle: {}", chain.join(" -> ")),
                "remove the @include that leads back to a file already being read",
            ));
        }
        if ctx.include_stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(include_error(
                location,
                format!("@include chain deeper than {MAX_INCLUDE_DEPTH} files"),
                "flatten the include hierarchy",
            ));
        }
        match std::fs::metadata(&file) {
            Ok(m) if !m.is_file() => {
                return Err(include_error(
                    location,
                    format!("include error {}: not a regular file", file.display()),
                    "@include only reads regular files",
                ));
            }
            Ok(m) if m.len() > MAX_INCLUDE_BYTES => {
                return Err(include_error(
                    location,
                    format!(
                        "include error {}: file is larger than {MAX_INCLUDE_BYTES} bytes",
                        file.display()
                    ),
                    "configuration files this large are not supported",
                ));
            }
            _ => {}
        }
        let bytes = std::fs::read(&file).map_err(|e| {
            include_error(
                location,
                format!("include error {}: {e}", file.display()),
                "check the file's permissions",
            )
            .with_io(e)
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let text: Arc<str> = Arc::from(text);
        let file_arc: Arc<Path> = Arc::from(file.as_path());
        register_source(&file_arc, text.clone());
        let mut inner = Scanner::new(file_arc, text);
        ctx.include_stack.push(canon);
        let result = parse_element(&mut inner, ctx, true, elem, depth);
        ctx.include_stack.pop();
        result?;
    }
    Ok(())
}

/// `scheme` of `scheme://...` (two letters or more, so `C:\...` stays a path).
fn uri_scheme(uri: &str) -> Option<&str> {
    let (scheme, _) = uri.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (scheme.len() > 1
        && first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

fn has_glob_meta(path: &str) -> bool {
    path.contains(['*', '?', '[', '{'])
}

/// Expands the first `{a,b}` group (recursively), as Ruby's `Dir.glob` does.
fn expand_braces(pattern: &str) -> Vec<String> {
    let Some(open) = pattern.find('{') else {
        return vec![pattern.to_string()];
    };
    let Some(close_rel) = pattern.get(open..).and_then(|s| s.find('}')) else {
        return vec![pattern.to_string()];
    };
    let close = open + close_rel;
    let (head, body, tail) = (
        pattern.get(..open).unwrap_or_default(),
        pattern.get(open + 1..close).unwrap_or_default(),
        pattern.get(close + 1..).unwrap_or_default(),
    );
    body.split(',')
        .flat_map(|alt| expand_braces(&format!("{head}{alt}{tail}")))
        .collect()
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod ported_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(rule: Rule, text: &str) -> Option<usize> {
        let sc = Scanner::new(Arc::from(Path::new("t")), Arc::from(text));
        sc.check(rule)
    }

    #[test]
    fn lexical_rules_match_fluentd_regexes() {
        let cases: &[(Rule, &str, Option<usize>)] = &[
            (Rule::spacing, "", Some(0)),
            (Rule::spacing, "  \n\t# c\n  x", Some(10)),
            (Rule::spacing, "x", None),
            (Rule::spacing_without_comment, " # c", Some(1)),
            (Rule::spacing_without_comment, "", Some(0)),
            (Rule::line_end, "", Some(0)),
            (Rule::line_end, "  # c", Some(5)),
            (Rule::line_end, "  # c\n\n  x", Some(7)),
            (Rule::line_end, " x", None),
            (Rule::line_end, "\r\n", Some(2)),
            (Rule::nq_value, "a b  # c\n", Some(3)),
            (Rule::nq_value, "#x y", Some(4)),
            (Rule::nq_value, "a#b\tc ", Some(5)),
            (Rule::nq_key, "k#v v", Some(3)),
            (Rule::nq_arg, "a.** b.** >", Some(9)),
            (Rule::nq_arg, ">", None),
            (Rule::element_name, "my-elem", Some(2)),
            (Rule::include_directive, "@include x", Some(9)),
            (Rule::include_directive, "include_dir x", None),
        ];
        for (rule, text, expect) in cases {
            assert_eq!(lex(*rule, text), *expect, "{rule:?} on {text:?}");
        }
    }

    #[test]
    fn uri_schemes() {
        assert_eq!(uri_scheme("http://x/y"), Some("http"));
        assert_eq!(uri_scheme("https://x/y"), Some("https"));
        assert_eq!(uri_scheme("C://x"), None);
        assert_eq!(uri_scheme("dir/x.conf"), None);
    }

    #[test]
    fn braces_expand() {
        assert_eq!(
            expand_braces("a/{b,c}/*.conf"),
            ["a/b/*.conf", "a/c/*.conf"]
        );
        assert_eq!(expand_braces("x{1,2}{a,b}"), ["x1a", "x1b", "x2a", "x2b"]);
        assert_eq!(expand_braces("no{brace"), ["no{brace"]);
    }
}
