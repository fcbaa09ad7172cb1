//! A safe evaluator for the embedded Ruby that real configs put in `"#{...}"`.
//!
//! Supported: `ENV["X"]`, `ENV['X']`, `ENV.fetch("X")`, `ENV.fetch("X", "d")`,
//! `ENV.fetch("X") { "d" }`, `hostname`, `Socket.gethostname`, `worker_id`, `use_nil`,
//! `use_default`, `File.join(a, b, ...)`, string literals (with `#{}` inside double quotes),
//! integers, `true`, `false`, `nil`, `a || b`, `a && b` and parentheses. Ruby truthiness
//! applies: only `nil` and `false` are falsy, so an empty string is truthy. Anything else is
//! rejected with an error that quotes the expression; nothing is passed through verbatim.

use pest::Parser;
use pest::iterators::Pair;

use crate::env::Environment;

#[derive(pest_derive::Parser)]
#[grammar = "ruby.pest"]
struct RubyGrammar;

/// What a `#{...}` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Text to interpolate (`nil` interpolates as `""`).
    Text(String),
    /// `use_nil`: the whole value becomes nil.
    UseNil,
    /// `use_default`: the whole value becomes "use the plugin default".
    UseDefault,
}

/// The list printed in errors, so users know what they may write.
pub(crate) const SUPPORTED: &str = "supported forms are ENV['X'], ENV[\"X\"], ENV.fetch('X'), \
ENV.fetch('X', 'default'), ENV.fetch('X') { 'default' }, hostname, Socket.gethostname, \
worker_id, use_nil, use_default, File.join(a, b, ...), string/integer/true/false/nil literals, \
a || b, a && b and parentheses";

const MAX_NESTING: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
enum RVal {
    Nil,
    Bool(bool),
    Int(i64),
    Str(String),
}

impl RVal {
    fn truthy(&self) -> bool {
        !matches!(self, RVal::Nil | RVal::Bool(false))
    }

    fn into_text(self) -> String {
        match self {
            RVal::Nil => String::new(),
            RVal::Bool(b) => b.to_string(),
            RVal::Int(i) => i.to_string(),
            RVal::Str(s) => s,
        }
    }
}

enum Abort {
    UseNil,
    UseDefault,
    Error(String),
}

type EvalResult = Result<RVal, Abort>;

/// Evaluates the code between `#{` and `}`. `Err` carries a message for the user.
pub(crate) fn evaluate(code: &str, env: &dyn Environment) -> Result<Outcome, String> {
    if nesting_depth(code) > MAX_NESTING {
        return Err(format!("expression nests deeper than {MAX_NESTING} levels"));
    }
    let mut pairs = RubyGrammar::parse(Rule::program, code)
        .map_err(|_| format!("unsupported embedded Ruby `{}`; {SUPPORTED}", code.trim()))?;
    let program = pairs.next().ok_or_else(|| "empty parse".to_string())?;
    let result = match program.into_inner().find(|p| p.as_rule() == Rule::expr) {
        None => Ok(RVal::Nil), // "#{}" interpolates nil
        Some(expr) => eval_expr(expr, env),
    };
    match result {
        Ok(v) => Ok(Outcome::Text(v.into_text())),
        Err(Abort::UseNil) => Ok(Outcome::UseNil),
        Err(Abort::UseDefault) => Ok(Outcome::UseDefault),
        Err(Abort::Error(m)) => Err(format!("in `{}`: {m}", code.trim())),
    }
}

fn nesting_depth(code: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for c in code.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn eval_expr(pair: Pair<'_, Rule>, env: &dyn Environment) -> EvalResult {
    match pair.as_rule() {
        Rule::expr => {
            // a || b || c: first truthy operand, else the last one.
            let mut last = RVal::Nil;
            for operand in pair.into_inner() {
                last = eval_expr(operand, env)?;
                if last.truthy() {
                    return Ok(last);
                }
            }
            Ok(last)
        }
        Rule::and_expr => {
            let mut last = RVal::Nil;
            for operand in pair.into_inner() {
                last = eval_expr(operand, env)?;
                if !last.truthy() {
                    return Ok(last);
                }
            }
            Ok(last)
        }
        Rule::env_index => {
            let name = string_arg(first_inner(pair)?, env, "ENV[]")?;
            Ok(env.var(&name).map_or(RVal::Nil, RVal::Str))
        }
        Rule::env_fetch => {
            let mut inner = pair.into_inner();
            let name_pair = inner
                .next()
                .ok_or_else(|| Abort::Error("ENV.fetch needs a name".into()))?;
            let name = string_arg(name_pair, env, "ENV.fetch")?;
            if let Some(v) = env.var(&name) {
                return Ok(RVal::Str(v));
            }
            match inner.next() {
                Some(default) if default.as_rule() == Rule::fetch_block => {
                    eval_expr(first_inner(default)?, env)
                }
                Some(default) => eval_expr(default, env),
                None => Err(Abort::Error(format!(
                    "key not found: \"{name}\" (ENV.fetch without a default and the variable is unset)"
                ))),
            }
        }
        Rule::file_join => {
            let mut out = String::new();
            for (i, part) in pair.into_inner().enumerate() {
                let part = string_arg(part, env, "File.join")?;
                if i == 0 {
                    out = part;
                } else {
                    match (out.ends_with('/'), part.starts_with('/')) {
                        (true, true) => out.push_str(part.trim_start_matches('/')),
                        (false, false) => {
                            out.push('/');
                            out.push_str(&part);
                        }
                        _ => out.push_str(&part),
                    }
                }
            }
            Ok(RVal::Str(out))
        }
        Rule::socket_gethostname | Rule::kw_hostname => Ok(RVal::Str(env.hostname())),
        Rule::kw_worker_id => Ok(RVal::Str(env.worker_id())),
        Rule::kw_use_nil => Err(Abort::UseNil),
        Rule::kw_use_default => Err(Abort::UseDefault),
        Rule::kw_nil => Ok(RVal::Nil),
        Rule::kw_true => Ok(RVal::Bool(true)),
        Rule::kw_false => Ok(RVal::Bool(false)),
        Rule::integer => pair
            .as_str()
            .replace('_', "")
            .parse::<i64>()
            .map(RVal::Int)
            .map_err(|_| Abort::Error(format!("integer {} out of range", pair.as_str()))),
        Rule::sq_string => {
            let mut s = String::new();
            for part in pair.into_inner() {
                match part.as_rule() {
                    Rule::sq_escape => s.push_str(part.as_str().get(1..).unwrap_or_default()),
                    _ => s.push_str(part.as_str()),
                }
            }
            Ok(RVal::Str(s))
        }
        Rule::dq_string => {
            let mut s = String::new();
            for part in pair.into_inner() {
                match part.as_rule() {
                    Rule::dq_escape => s.push(ruby_escape(part.as_str().chars().nth(1))),
                    Rule::dq_interp => {
                        if let Some(e) = part.into_inner().next() {
                            s.push_str(&eval_expr(e, env)?.into_text());
                        }
                    }
                    _ => s.push_str(part.as_str()),
                }
            }
            Ok(RVal::Str(s))
        }
        other => Err(Abort::Error(format!("unexpected {other:?}"))),
    }
}

fn first_inner<'i>(pair: Pair<'i, Rule>) -> Result<Pair<'i, Rule>, Abort> {
    let what = pair.as_str().to_string();
    pair.into_inner()
        .next()
        .ok_or_else(|| Abort::Error(format!("missing operand in `{what}`")))
}

fn string_arg(pair: Pair<'_, Rule>, env: &dyn Environment, what: &str) -> Result<String, Abort> {
    let text = pair.as_str().trim().to_string();
    match eval_expr(pair, env)? {
        RVal::Str(s) => Ok(s),
        other => Err(Abort::Error(format!(
            "{what} needs a string but `{text}` is {}",
            match other {
                RVal::Nil => "nil",
                RVal::Bool(_) => "a boolean",
                RVal::Int(_) => "an integer",
                RVal::Str(_) => "a string",
            }
        ))),
    }
}

fn ruby_escape(c: Option<char>) -> char {
    match c {
        Some('n') => '\n',
        Some('t') => '\t',
        Some('r') => '\r',
        Some('0') => '\0',
        Some('s') => ' ',
        Some('e') => '\x1b',
        Some('a') => '\x07',
        Some('b') => '\x08',
        Some('f') => '\x0c',
        Some('v') => '\x0b',
        Some(other) => other,
        None => '\\',
    }
}

/// Finds the `}` that closes embedded code starting at byte `start` of `text` (just after
/// `#{`), skipping nested braces and Ruby string literals. Returns its byte offset.
pub(crate) fn find_code_end(text: &str, start: usize) -> Option<usize> {
    find_code_end_bytes(text.as_bytes(), start)
}

/// Skips a Ruby string literal starting with the quote at `i`; returns the offset after it.
fn skip_ruby_string(bytes: &[u8], i: usize) -> Option<usize> {
    let quote = *bytes.get(i)?;
    let mut j = i + 1;
    while let Some(&b) = bytes.get(j) {
        if b == b'\\' {
            j += 2;
            continue;
        }
        if b == quote {
            return Some(j + 1);
        }
        if quote != b'\'' && b == b'#' && bytes.get(j + 1) == Some(&b'{') {
            let end = find_code_end_bytes(bytes, j + 2)?;
            j = end + 1;
            continue;
        }
        j += 1;
    }
    None
}

fn find_code_end_bytes(bytes: &[u8], start: usize) -> Option<usize> {
    // All delimiters are ASCII, so byte offsets are char boundaries.
    let mut i = start;
    let mut depth = 0usize;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            b'\'' | b'"' | b'`' => {
                i = skip_ruby_string(bytes, i)?;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnvironment;

    fn env() -> MapEnvironment {
        MapEnvironment::new()
            .with_var("SET", "value")
            .with_var("EMPTY", "")
            .with_var("PORT", "24224")
            .with_hostname("node-1")
            .with_worker_id("3")
    }

    fn check(code: &str, expect: Result<Outcome, &str>) {
        let got = evaluate(code, &env());
        match (&got, &expect) {
            (Ok(g), Ok(e)) => assert_eq!(g, e, "code {code:?}"),
            (Err(g), Err(e)) => assert!(g.contains(e), "code {code:?}: error {g:?} lacks {e:?}"),
            _ => panic!("code {code:?}: got {got:?}, expected {expect:?}"),
        }
    }

    fn text(s: &str) -> Result<Outcome, &'static str> {
        Ok(Outcome::Text(s.to_string()))
    }

    #[test]
    fn supported_forms() {
        let cases: &[(&str, Result<Outcome, &str>)] = &[
            ("ENV['SET']", text("value")),
            ("ENV[\"SET\"]", text("value")),
            (" ENV[ 'SET' ] ", text("value")),
            ("ENV['UNSET']", text("")),
            ("ENV['UNSET'] || 'd'", text("d")),
            ("ENV['EMPTY'] || 'd'", text("")), // "" is truthy in Ruby
            ("ENV['A'] || ENV['B'] || 'x'", text("x")),
            ("ENV['UNSET'] || false", text("false")),
            ("ENV['UNSET'] || true", text("true")),
            ("ENV['UNSET'] || nil", text("")),
            ("ENV['UNSET'] || 2", text("2")),
            ("ENV['UNSET'] || -1", text("-1")),
            ("ENV['SET'] && 'both'", text("both")),
            ("ENV['UNSET'] && 'both'", text("")),
            ("ENV.fetch('SET', 'd')", text("value")),
            ("ENV.fetch('UNSET', 'd')", text("d")),
            ("ENV.fetch(\"UNSET\") { 'blk' }", text("blk")),
            ("ENV.fetch('PORT')", text("24224")),
            ("hostname", text("node-1")),
            ("Socket.gethostname", text("node-1")),
            ("worker_id", text("3")),
            ("use_nil", Ok(Outcome::UseNil)),
            ("use_default", Ok(Outcome::UseDefault)),
            ("ENV['UNSET'] || use_default", Ok(Outcome::UseDefault)),
            ("ENV['SET'] || use_nil", text("value")),
            ("", text("")),
            ("'}'", text("}")),
            ("'it\\'s'", text("it's")),
            ("\"a\\tb\"", text("a\tb")),
            ("\"x-#{ENV['SET']}\"", text("x-value")),
            ("(ENV['UNSET'] || 'p')", text("p")),
            (
                "File.join('/var/log/', ENV.fetch('UNSET', ''), 'x.pos')",
                text("/var/log/x.pos"),
            ),
            ("File.join('a', 'b')", text("a/b")),
            ("File.join('a/', '/b')", text("a/b")),
        ];
        for (code, expect) in cases {
            check(code, expect.clone());
        }
    }

    #[test]
    fn unsupported_forms_are_errors_quoting_the_code() {
        for code in [
            "1+1",
            "`hostname -I`.strip",
            "ENV['X'].upcase",
            "hostname_x",
            "#",
            "if true; 'a'; else 'b'; end",
            "ENV",
            "system('rm -rf /')",
        ] {
            let err = evaluate(code, &env()).expect_err(code);
            assert!(err.contains(code.trim()), "{err}");
        }
        check("ENV.fetch('UNSET')", Err("key not found: \"UNSET\""));
        check("ENV[1]", Err("needs a string"));
        check("99999999999999999999", Err("out of range"));
    }

    #[test]
    fn deep_nesting_is_rejected_without_recursion() {
        let code = format!("{}'x'{}", "(".repeat(10_000), ")".repeat(10_000));
        check(&code, Err("nests deeper"));
    }

    #[test]
    fn code_end_skips_strings_and_braces() {
        let cases: &[(&str, Option<usize>)] = &[
            ("}", Some(0)),
            ("ENV['a']}x", Some(8)),
            ("\"}\"}", Some(3)),
            ("'}'}", Some(3)),
            ("{ 'd' }}", Some(7)),
            ("\"#{'}'}\"}", Some(8)),
            ("'unterminated", None),
            ("no end", None),
        ];
        for (text, expect) in cases {
            assert_eq!(find_code_end(text, 0), *expect, "{text:?}");
        }
    }
}
