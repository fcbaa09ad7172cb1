//! Tag patterns of `<match>` and `<filter>`: Fluentd's `GlobMatchPattern`, bit for bit.
//!
//! Fluentd (`lib/fluent/match.rb`) turns a glob into a Ruby regexp anchored `\A…\Z`. Two of the
//! pieces it emits cannot be expressed with the `regex` crate (a `(?![^.])` look-ahead after
//! `.**`, and `\A` inside an alternation), so a glob here is translated into the same structure
//! and run on a small Pike VM ([`GlobProgram`]): linear in the tag length whatever the pattern,
//! no backtracking, no allocation beyond two thread lists per call. Patterns written `/regex/`
//! are Ruby regexps; they go to `fancy-regex` in Oniguruma mode (look-around works, as in Ruby).
//!
//! Quirks of Fluentd kept on purpose, because a drop-in must route the same way:
//! - `\Z` also matches before a final `"\n"`, so `a` matches the tag `"a\n"`.
//! - A `.` at the very end of a glob is dropped: `a.` matches `a`.
//! - `*` is `[^.]*` and so crosses a `"\n"`; `**` is `.*` and does not (except the bare `**`
//!   pattern, which matches every tag).
//! - An unclosed `{` turns its alternatives into literal text of their Ruby regexp source.
//! - `/a|b/` becomes `\Aa|b\Z`: the alternation is not grouped, so it matches `ax` and `xb`.

use std::fmt;

use thiserror::Error;

/// Why a match pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PatternError {
    /// A pattern starting with `/` does not end with `/` (Fluentd: "invalid match - regex").
    #[error(
        "invalid match pattern `{pattern}`: a regex pattern must start and end with `/` \
         (it cannot contain spaces; write `\\s` instead)"
    )]
    UnterminatedRegex {
        /// The offending whitespace-separated piece.
        pattern: String,
    },
    /// The text between the slashes is not a regular expression we can compile.
    #[error("invalid regex in match pattern `{pattern}`: {reason}")]
    InvalidRegex {
        /// The offending whitespace-separated piece.
        pattern: String,
        /// What the regex compiler said.
        reason: String,
    },
}

/// A compiled `<match>`/`<filter>` argument: one or more whitespace-separated patterns, OR-ed.
///
/// ```
/// use nagare_router::MatchPattern;
/// let p = MatchPattern::parse("app.** system.{kern,auth}").unwrap();
/// assert!(p.matches("app"));
/// assert!(p.matches("app.web.access"));
/// assert!(p.matches("system.auth"));
/// assert!(!p.matches("system.cron"));
/// ```
#[derive(Clone)]
pub struct MatchPattern {
    text: String,
    alternatives: Vec<Single>,
}

#[derive(Clone)]
enum Single {
    /// The bare `**` (Fluentd's `AllMatchPattern`): every tag, whatever its characters.
    All,
    /// A glob made only of literal characters: compared directly.
    Literal(String),
    /// Any other glob.
    Glob(GlobProgram),
    /// `/regex/`.
    Regex(Box<fancy_regex::Regex>),
}

impl MatchPattern {
    /// Compiles a pattern argument as Fluentd does: split on whitespace, each piece a glob
    /// (or `/regex/`), OR-ed. An argument with no pieces matches nothing (the routing table
    /// applies Fluentd's "empty argument means `**`" rule before calling this).
    pub fn parse(text: &str) -> Result<MatchPattern, PatternError> {
        let alternatives = text
            .split(is_ruby_space)
            .filter(|piece| !piece.is_empty())
            .map(Single::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MatchPattern {
            text: text.to_owned(),
            alternatives,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether one of the patterns is the bare `**`, which matches every tag.
    pub fn matches_everything(&self) -> bool {
        self.alternatives.iter().any(|s| matches!(s, Single::All))
    }

    /// Whether `tag` matches any of the patterns.
    pub fn matches(&self, tag: &str) -> bool {
        self.alternatives.iter().any(|s| s.matches(tag))
    }
}

impl fmt::Debug for MatchPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MatchPattern").field(&self.text).finish()
    }
}

impl fmt::Display for MatchPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Ruby's `\s`: space, `\t`, `\n`, `\v`, `\f`, `\r`.
fn is_ruby_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r')
}

impl Single {
    fn parse(piece: &str) -> Result<Single, PatternError> {
        if piece == "**" {
            return Ok(Single::All);
        }
        if let Some(rest) = piece.strip_prefix('/') {
            let Some(inner) =
                rest.strip_suffix('/')
                    .or(if rest.is_empty() { Some("") } else { None })
            else {
                return Err(PatternError::UnterminatedRegex {
                    pattern: piece.to_owned(),
                });
            };
            return compile_regex(piece, inner).map(|re| Single::Regex(Box::new(re)));
        }
        let seq = translate_glob(piece);
        if let Some(literal) = seq.literal() {
            return Ok(Single::Literal(literal));
        }
        Ok(Single::Glob(GlobProgram::compile(&seq.nodes)))
    }

    fn matches(&self, tag: &str) -> bool {
        match self {
            Single::All => true,
            Single::Literal(lit) => {
                // `\A lit \Z`: equal, or equal followed by one final newline.
                tag == lit || tag.strip_suffix('\n') == Some(lit.as_str())
            }
            Single::Glob(prog) => prog.is_match(tag),
            // A regex that exhausts the backtracking budget is treated as not matching.
            Single::Regex(re) => re.is_match(tag).unwrap_or(false),
        }
    }
}

/// Builds Ruby's `Regexp.new("\\A" + inner + "\\Z")` with Ruby's defaults (`^`/`$` match at
/// line boundaries). The concatenation is textual, exactly like Fluentd's.
///
/// Ruby's `\Z` is written `(?=\n?\z)`: fancy-regex's `\Z` also matches before several
/// trailing newlines. When `inner` ends with an odd number of backslashes, Ruby reads the
/// `\Z` as an escaped backslash and a literal `Z`, and so do we by keeping the text.
fn compile_regex(piece: &str, inner: &str) -> Result<fancy_regex::Regex, PatternError> {
    let trailing_backslashes = inner.chars().rev().take_while(|&c| c == '\\').count();
    let end = if trailing_backslashes % 2 == 1 {
        "\\Z"
    } else {
        "(?=\\n?\\z)"
    };
    let source = format!("\\A{inner}{end}");
    fancy_regex::RegexBuilder::new(&source)
        .oniguruma_mode(true)
        .multi_line(true)
        .build()
        .map_err(|e| PatternError::InvalidRegex {
            pattern: piece.to_owned(),
            reason: e.to_string(),
        })
}

// ---------------------------------------------------------------------------------------------
// Glob translation: the same state machine as GlobMatchPattern#initialize.

/// One element of the translated glob, mirroring a piece of Fluentd's generated regexp.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// A literal character.
    Lit(char),
    /// `[^\.]*`: any run of characters other than `.` (newline included).
    NotDotStar,
    /// `.*`: any run of characters other than `"\n"`.
    AnyStar,
    /// `(?![^\.])`: at the end, or before a `.`.
    DotOrEnd,
    /// `\A`: at the start of the tag.
    Start,
    /// A group of alternatives.
    Alt(Vec<Vec<Node>>),
}

/// A sequence under construction, with the Ruby regexp source Fluentd would have built for it
/// (needed only for the unclosed-brace quirk, which turns that source into literal text).
#[derive(Debug, Default)]
struct Seq {
    nodes: Vec<Node>,
    source: String,
}

impl Seq {
    fn push(&mut self, node: Node, source: &str) {
        self.nodes.push(node);
        self.source.push_str(source);
    }

    /// The text this sequence matches when it is made of literal characters only.
    fn literal(&self) -> Option<String> {
        self.nodes
            .iter()
            .map(|n| match n {
                Node::Lit(c) => Some(*c),
                _ => None,
            })
            .collect()
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Ruby's `Regexp.escape` (`rb_reg_quote`).
fn ruby_regexp_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '[' | ']' | '{' | '}' | '(' | ')' | '|' | '-' | '*' | '.' | '\\' | '?' | '+' | '^'
            | '$' | '#' => {
                out.push('\\');
                out.push(c);
            }
            ' ' => out.push_str("\\ "),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            _ => out.push(c),
        }
    }
    out
}

/// `Regexp.union(*regexps).to_s` for a closed `{…}` group.
fn union_of_regexps_source(alts: &[Seq]) -> String {
    match alts {
        [one] => format!("(?-mix:{})", one.source),
        _ => {
            let inner: Vec<String> = alts
                .iter()
                .map(|a| format!("(?-mix:{})", a.source))
                .collect();
            format!("(?-mix:{})", inner.join("|"))
        }
    }
}

/// Translates one glob piece exactly as `GlobMatchPattern#initialize` does.
fn translate_glob(pat: &str) -> Seq {
    let chars: Vec<char> = pat.chars().collect();
    // `stack` holds the alternatives collected so far for each open `{`;
    // `regex` holds the sequence being built at each nesting level (never empty).
    let mut stack: Vec<Vec<Seq>> = Vec::new();
    let mut regex: Vec<Seq> = vec![Seq::default()];
    let mut escape = false;
    let mut dot = false;
    let mut i = 0;

    while let Some(&c) = chars.get(i) {
        let Some(current) = regex.last_mut() else {
            break;
        };
        if escape {
            current.push(Node::Lit(c), &ruby_regexp_escape(&c.to_string()));
            escape = false;
            i += 1;
            continue;
        }
        if c == '*' && chars.get(i + 1) == Some(&'*') {
            // recursive any
            if dot {
                current.push(Node::DotOrEnd, "(?![^\\.])");
                dot = false;
            }
            if chars.get(i + 2) == Some(&'.') {
                current.push(
                    Node::Alt(vec![vec![Node::AnyStar, Node::Lit('.')], vec![Node::Start]]),
                    "(?:.*\\.|\\A)",
                );
                i += 3;
            } else {
                current.push(Node::AnyStar, ".*");
                i += 2;
            }
            continue;
        }
        if dot {
            current.push(Node::Lit('.'), "\\.");
            dot = false;
        }
        match c {
            '\\' => escape = true,
            '.' => dot = true,
            '*' => current.push(Node::NotDotStar, "[^\\.]*"),
            '{' => {
                stack.push(Vec::new());
                regex.push(Seq::default());
            }
            '}' if !stack.is_empty() => {
                if let (Some(done), Some(mut alts)) = (regex.pop(), stack.pop()) {
                    alts.push(done);
                    let source = union_of_regexps_source(&alts);
                    let node = Node::Alt(alts.into_iter().map(|s| s.nodes).collect());
                    if let Some(outer) = regex.last_mut() {
                        outer.push(node, &source);
                    }
                }
            }
            ',' if !stack.is_empty() => {
                if let (Some(done), Some(alts)) = (regex.pop(), stack.last_mut()) {
                    alts.push(done);
                }
                regex.push(Seq::default());
            }
            c if is_word_char(c) => current.push(Node::Lit(c), &c.to_string()),
            c => current.push(Node::Lit(c), &format!("\\{c}")),
        }
        i += 1;
    }

    // Unclosed groups: `Regexp.union(*strings)` escapes each alternative's *source* as text.
    while let Some(mut alts) = stack.pop() {
        if let Some(done) = regex.pop() {
            alts.push(done);
        }
        let escaped: Vec<String> = alts.iter().map(|a| ruby_regexp_escape(&a.source)).collect();
        let source = format!("(?-mix:{})", escaped.join("|"));
        let node = Node::Alt(
            alts.iter()
                .map(|a| a.source.chars().map(Node::Lit).collect())
                .collect(),
        );
        match regex.last_mut() {
            Some(outer) => outer.push(node, &source),
            None => regex.push(Seq {
                nodes: vec![node],
                source,
            }),
        }
    }
    regex.pop().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Pike VM.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inst {
    /// Consume this character.
    Char(char),
    /// Consume any character but `.`.
    NotDot,
    /// Consume any character but `"\n"`.
    NotNewline,
    /// Continue at both targets.
    Split(usize, usize),
    /// Continue at the target.
    Jmp(usize),
    /// Continue only at position 0.
    AssertStart,
    /// Continue only at the end or before a `.`.
    AssertDotOrEnd,
    /// Accept if at the end, or before a final `"\n"` (Ruby's `\Z`).
    Match,
}

/// A glob compiled to a Thompson NFA, matched with a Pike VM (linear time, no backtracking).
#[derive(Debug, Clone)]
pub struct GlobProgram {
    insts: Vec<Inst>,
}

impl GlobProgram {
    fn compile(nodes: &[Node]) -> GlobProgram {
        let mut insts = Vec::new();
        emit_seq(&mut insts, nodes);
        insts.push(Inst::Match);
        GlobProgram { insts }
    }

    /// Whether the whole `tag` matches (the program is anchored at both ends).
    pub fn is_match(&self, tag: &str) -> bool {
        let n = self.insts.len();
        let mut current = ThreadList::new(n);
        let mut next = ThreadList::new(n);
        let mut stack = Vec::new();
        let mut chars = tag.chars().peekable();
        let mut at_start = true;

        self.add_thread(&mut current, &mut stack, 0, at_start, chars.peek().copied());
        loop {
            let Some(c) = chars.next() else {
                return current
                    .iter()
                    .any(|pc| self.insts.get(pc) == Some(&Inst::Match));
            };
            let following = chars.peek().copied();
            // Ruby's `\Z` also accepts right before a final newline.
            if c == '\n'
                && following.is_none()
                && current
                    .iter()
                    .any(|pc| self.insts.get(pc) == Some(&Inst::Match))
            {
                return true;
            }
            at_start = false;
            next.clear();
            for pc in current.iter() {
                let advance = match self.insts.get(pc) {
                    Some(Inst::Char(want)) => *want == c,
                    Some(Inst::NotDot) => c != '.',
                    Some(Inst::NotNewline) => c != '\n',
                    _ => false,
                };
                if advance {
                    self.add_thread(&mut next, &mut stack, pc + 1, at_start, following);
                }
            }
            if next.is_empty() {
                return false;
            }
            std::mem::swap(&mut current, &mut next);
        }
    }

    /// Adds `pc` and everything reachable from it without consuming input.
    fn add_thread(
        &self,
        list: &mut ThreadList,
        stack: &mut Vec<usize>,
        pc: usize,
        at_start: bool,
        following: Option<char>,
    ) {
        stack.clear();
        stack.push(pc);
        while let Some(pc) = stack.pop() {
            if !list.insert(pc) {
                continue;
            }
            match self.insts.get(pc) {
                Some(Inst::Jmp(to)) => stack.push(*to),
                Some(Inst::Split(a, b)) => {
                    stack.push(*b);
                    stack.push(*a);
                }
                Some(Inst::AssertStart) if at_start => stack.push(pc + 1),
                Some(Inst::AssertDotOrEnd) if matches!(following, None | Some('.')) => {
                    stack.push(pc + 1)
                }
                _ => {}
            }
        }
    }
}

fn emit_seq(insts: &mut Vec<Inst>, nodes: &[Node]) {
    for node in nodes {
        emit_node(insts, node);
    }
}

fn emit_star(insts: &mut Vec<Inst>, one: Inst) {
    // L0: split L1, L3; L1: one; L2: jmp L0; L3:
    let l0 = insts.len();
    insts.push(Inst::Split(l0 + 1, l0 + 3));
    insts.push(one);
    insts.push(Inst::Jmp(l0));
}

fn emit_node(insts: &mut Vec<Inst>, node: &Node) {
    match node {
        Node::Lit(c) => insts.push(Inst::Char(*c)),
        Node::NotDotStar => emit_star(insts, Inst::NotDot),
        Node::AnyStar => emit_star(insts, Inst::NotNewline),
        Node::DotOrEnd => insts.push(Inst::AssertDotOrEnd),
        Node::Start => insts.push(Inst::AssertStart),
        Node::Alt(alts) => emit_alt(insts, alts),
    }
}

/// `split L_a1, next; L_a1: a1; jmp end; next: split L_a2, …` with the last alternative bare.
fn emit_alt(insts: &mut Vec<Inst>, alts: &[Vec<Node>]) {
    let mut jumps_to_end = Vec::new();
    let count = alts.len();
    for (i, alt) in alts.iter().enumerate() {
        if i + 1 < count {
            let split = insts.len();
            insts.push(Inst::Split(split + 1, usize::MAX));
            emit_seq(insts, alt);
            jumps_to_end.push(insts.len());
            insts.push(Inst::Jmp(usize::MAX));
            let after = insts.len();
            if let Some(Inst::Split(_, b)) = insts.get_mut(split) {
                *b = after;
            }
        } else {
            emit_seq(insts, alt);
        }
    }
    let end = insts.len();
    for j in jumps_to_end {
        if let Some(Inst::Jmp(to)) = insts.get_mut(j) {
            *to = end;
        }
    }
}

/// A sparse set of program counters, in insertion order.
struct ThreadList {
    dense: Vec<usize>,
    member: Vec<bool>,
}

impl ThreadList {
    fn new(size: usize) -> ThreadList {
        ThreadList {
            dense: Vec::with_capacity(size),
            member: vec![false; size + 1],
        }
    }

    fn insert(&mut self, pc: usize) -> bool {
        match self.member.get_mut(pc) {
            Some(seen) if !*seen => {
                *seen = true;
                self.dense.push(pc);
                true
            }
            _ => false,
        }
    }

    fn clear(&mut self) {
        for &pc in &self.dense {
            if let Some(seen) = self.member.get_mut(pc) {
                *seen = false;
            }
        }
        self.dense.clear();
    }

    fn is_empty(&self) -> bool {
        self.dense.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.dense.iter().copied()
    }
}

#[cfg(test)]
mod tests;
