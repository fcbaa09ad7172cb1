//! The `<record>` map as compiled templates, and their expansion (Fluentd's
//! `PlaceholderExpander` with `enable_ruby false`).
//!
//! A placeholder is `${…}` (no `}` inside) or `__UPPER_CASE__`, found left to right as
//! Ruby's `/(\${[^}]+}|__[A-Z_]+__)/`. Known ones: `${tag}`, `${tag_parts[N]}`,
//! `${tag_prefix[N]}`, `${tag_suffix[N]}` (N from `-size` to `size-1`), `${hostname}`,
//! `${time}` (Ruby's `Time#to_s` in the local zone), `${record["key"]}`, and — as Fluentd
//! v0.12 allowed — a bare `${key}` naming a top-level record key. Anything else expands to
//! nothing with an "unknown placeholder" warning.
//!
//! With `auto_typecast` (the default) a value that is exactly one placeholder takes the
//! placeholder's value with its type (`${record["n"]}` stays an integer); otherwise every
//! placeholder is replaced by Ruby's `to_s` of its value. Map keys are always strings.

use std::sync::LazyLock;

use nagare_plugin_sdk::rmpv::Value;
use regex::Regex;

use crate::accessor::key_bytes;

/// Ruby's placeholder pattern in `PlaceholderExpander#expand`.
static PLACEHOLDER: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\$\{[^}]+\}|__[A-Z_]+__").ok());

/// One placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placeholder {
    /// `${tag}`.
    Tag,
    /// `${tag_parts[N]}`.
    TagPart(i64),
    /// `${tag_prefix[N]}`.
    TagPrefix(i64),
    /// `${tag_suffix[N]}`.
    TagSuffix(i64),
    /// `${hostname}`.
    Hostname,
    /// `${time}`.
    Time,
    /// `${record["key"]}`.
    Record(String),
    /// `${key}`: a top-level record key (v0.12 style).
    Bare(String),
    /// Anything else (`__TAG__`, `${record['k']}`, …), as written.
    Unknown(String),
}

/// A piece of a string template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Literal text.
    Text(String),
    /// A placeholder and its text as written (for warnings).
    Placeholder(Placeholder, String),
}

/// A string with placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrTemplate {
    parts: Vec<Part>,
}

/// Ruby's canonical `Integer#to_s` text of an index (`0`, `12`, `-1`; not `01` or `+1`).
fn canonical_index(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && s != "-0";
    canonical.then(|| s.parse().ok()).flatten()
}

fn classify(text: &str) -> Placeholder {
    let Some(inner) = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) else {
        return Placeholder::Unknown(text.to_owned());
    };
    let indexed = |name: &str| {
        inner
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix('['))
            .and_then(|r| r.strip_suffix(']'))
            .and_then(canonical_index)
    };
    if let Some(n) = indexed("tag_parts") {
        return Placeholder::TagPart(n);
    }
    if let Some(n) = indexed("tag_prefix") {
        return Placeholder::TagPrefix(n);
    }
    if let Some(n) = indexed("tag_suffix") {
        return Placeholder::TagSuffix(n);
    }
    if let Some(key) = inner
        .strip_prefix("record[\"")
        .and_then(|r| r.strip_suffix("\"]"))
    {
        return Placeholder::Record(key.to_owned());
    }
    match inner {
        "tag" => Placeholder::Tag,
        "hostname" => Placeholder::Hostname,
        "time" => Placeholder::Time,
        other => Placeholder::Bare(other.to_owned()),
    }
}

impl StrTemplate {
    /// Splits `s` into text and placeholders.
    pub fn parse(s: &str) -> Self {
        let mut parts = Vec::new();
        let mut last = 0;
        if let Some(re) = PLACEHOLDER.as_ref() {
            for m in re.find_iter(s) {
                if m.start() > last {
                    parts.push(Part::Text(s[last..m.start()].to_owned()));
                }
                parts.push(Part::Placeholder(
                    classify(m.as_str()),
                    m.as_str().to_owned(),
                ));
                last = m.end();
            }
        }
        if last < s.len() || parts.is_empty() {
            parts.push(Part::Text(s[last..].to_owned()));
        }
        StrTemplate { parts }
    }

    /// Whether expansion depends on nothing (a plain string).
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// Whether any placeholder is `${time}`.
    pub fn uses_time(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Placeholder(Placeholder::Time, _)))
    }

    /// The placeholders.
    pub fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.parts.iter().filter_map(|p| match p {
            Part::Placeholder(ph, _) => Some(ph),
            Part::Text(_) => None,
        })
    }
}

/// A compiled `<record>` value: a string template, or JSON with templates inside.
#[derive(Clone, Debug, PartialEq)]
pub enum Template {
    /// A string with placeholders.
    Str(StrTemplate),
    /// A JSON object: keys are string templates (always stringified).
    Map(Vec<(StrTemplate, Template)>),
    /// A JSON array.
    Array(Vec<Template>),
    /// A JSON scalar other than a string.
    Literal(Value),
}

impl Template {
    /// Compiles a JSON value.
    pub fn from_json(v: &serde_json::Value) -> Self {
        match v {
            serde_json::Value::String(s) => Template::Str(StrTemplate::parse(s)),
            serde_json::Value::Object(m) => Template::Map(
                m.iter()
                    .map(|(k, v)| (StrTemplate::parse(k), Template::from_json(v)))
                    .collect(),
            ),
            serde_json::Value::Array(a) => {
                Template::Array(a.iter().map(Template::from_json).collect())
            }
            other => Template::Literal(nagare_formats::json::json_to_value(other.clone())),
        }
    }

    /// Visits every string template.
    pub fn for_each_str<'a>(&'a self, f: &mut impl FnMut(&'a StrTemplate)) {
        match self {
            Template::Str(s) => f(s),
            Template::Map(m) => {
                for (k, v) in m {
                    f(k);
                    v.for_each_str(f);
                }
            }
            Template::Array(a) => a.iter().for_each(|t| t.for_each_str(f)),
            Template::Literal(_) => {}
        }
    }
}

/// The values placeholders expand to, for one chunk (tag-derived) and one event.
pub struct Context<'a> {
    /// The tag.
    pub tag: &'a str,
    /// `tag.split('.')` (Ruby drops trailing empty parts).
    pub tag_parts: &'a [&'a str],
    /// `tag_prefix[i]`: parts `0..=i` joined.
    pub tag_prefix: &'a [String],
    /// `tag_suffix[i]`: parts `i..` joined.
    pub tag_suffix: &'a [String],
    /// `Socket.gethostname`.
    pub hostname: &'a str,
    /// `Time.at(time).to_s`, when a template uses it.
    pub time: &'a str,
    /// The original record.
    pub record: &'a Value,
}

/// Ruby's `tag.split('.')`: empty fields kept except trailing ones.
pub fn split_tag(tag: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = tag.split('.').collect();
    while parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    parts
}

/// `tag_prefix` and `tag_suffix` arrays for `parts`.
pub fn prefixes_and_suffixes(parts: &[&str]) -> (Vec<String>, Vec<String>) {
    let prefix = (0..parts.len()).map(|i| parts[..=i].join(".")).collect();
    let suffix = (0..parts.len()).map(|i| parts[i..].join(".")).collect();
    (prefix, suffix)
}

fn index<T>(list: &[T], n: i64) -> Option<&T> {
    let len = i64::try_from(list.len()).ok()?;
    let i = if n < 0 { len + n } else { n };
    usize::try_from(i).ok().and_then(|i| list.get(i))
}

/// Where expansion reports placeholders it could not resolve.
pub trait UnknownSink {
    /// Called once per unresolved placeholder occurrence, with its text.
    fn unknown(&self, placeholder: &str);
}

impl Context<'_> {
    fn record_value(&self, key: &str) -> Option<&Value> {
        match self.record {
            Value::Map(m) => m
                .iter()
                .find(|(k, _)| key_bytes(k) == Some(key.as_bytes()))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value of a placeholder; `None` when it is unknown (Ruby's missing hash entry).
    fn resolve(&self, ph: &Placeholder) -> Option<Value> {
        let s = |x: &str| Some(Value::from(x));
        match ph {
            Placeholder::Tag => s(self.tag),
            Placeholder::Hostname => s(self.hostname),
            Placeholder::Time => s(self.time),
            Placeholder::TagPart(n) => index(self.tag_parts, *n).and_then(|p| s(p)),
            Placeholder::TagPrefix(n) => index(self.tag_prefix, *n).and_then(|p| s(p)),
            Placeholder::TagSuffix(n) => index(self.tag_suffix, *n).and_then(|p| s(p)),
            Placeholder::Record(k) | Placeholder::Bare(k) => self.record_value(k).cloned(),
            Placeholder::Unknown(_) => None,
        }
    }

    /// Expands a string template; `typed` returns a single placeholder's value as is.
    pub fn expand_str(&self, t: &StrTemplate, typed: bool, sink: &dyn UnknownSink) -> Value {
        if typed && let [Part::Placeholder(ph, text)] = t.parts.as_slice() {
            return self.resolve(ph).unwrap_or_else(|| {
                sink.unknown(text);
                Value::Nil
            });
        }
        Value::from(self.expand_text(t, sink))
    }

    /// Expands a string template to text (map keys, interpolations).
    pub fn expand_text(&self, t: &StrTemplate, sink: &dyn UnknownSink) -> String {
        let mut out = String::new();
        for part in &t.parts {
            match part {
                Part::Text(s) => out.push_str(s),
                Part::Placeholder(ph, text) => match self.resolve(ph) {
                    Some(v) => nagare_formats::json::write_to_s(&v, &mut out),
                    None => sink.unknown(text),
                },
            }
        }
        out
    }

    /// Expands a whole template.
    pub fn expand(&self, t: &Template, typed: bool, sink: &dyn UnknownSink) -> Value {
        match t {
            Template::Str(s) => self.expand_str(s, typed, sink),
            Template::Map(m) => Value::Map(
                m.iter()
                    .map(|(k, v)| {
                        (
                            Value::from(self.expand_text(k, sink)),
                            self.expand(v, typed, sink),
                        )
                    })
                    .collect(),
            ),
            Template::Array(a) => {
                Value::Array(a.iter().map(|v| self.expand(v, typed, sink)).collect())
            }
            Template::Literal(v) => v.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    #[derive(Default)]
    struct Unknowns(RefCell<Vec<String>>);

    impl UnknownSink for Unknowns {
        fn unknown(&self, placeholder: &str) {
            self.0.borrow_mut().push(placeholder.to_owned());
        }
    }

    fn ph(p: Placeholder, text: &str) -> Part {
        Part::Placeholder(p, text.to_owned())
    }

    fn text(s: &str) -> Part {
        Part::Text(s.to_owned())
    }

    #[test]
    fn parse_table() {
        let check = |s: &str, parts: Vec<Part>| {
            assert_eq!(StrTemplate::parse(s).parts, parts, "{s:?}");
        };
        check("plain", vec![text("plain")]);
        check("", vec![text("")]);
        check("${tag}", vec![ph(Placeholder::Tag, "${tag}")]);
        check(
            "a ${tag_parts[-1]} b",
            vec![
                text("a "),
                ph(Placeholder::TagPart(-1), "${tag_parts[-1]}"),
                text(" b"),
            ],
        );
        check(
            "${tag_prefix[1]}",
            vec![ph(Placeholder::TagPrefix(1), "${tag_prefix[1]}")],
        );
        check(
            "${tag_suffix[-3]}",
            vec![ph(Placeholder::TagSuffix(-3), "${tag_suffix[-3]}")],
        );
        check(
            "${tag_parts[01]}",
            vec![ph(
                Placeholder::Bare("tag_parts[01]".into()),
                "${tag_parts[01]}",
            )],
        );
        check(
            "${record[\"@timestamp\"]}",
            vec![ph(
                Placeholder::Record("@timestamp".into()),
                "${record[\"@timestamp\"]}",
            )],
        );
        check(
            "${record['k']}",
            vec![ph(
                Placeholder::Bare("record['k']".into()),
                "${record['k']}",
            )],
        );
        check(
            "x__TAG__y",
            vec![
                text("x"),
                ph(Placeholder::Unknown("__TAG__".into()), "__TAG__"),
                text("y"),
            ],
        );
        check("${}", vec![text("${}")]);
        check(
            "${a}${b}",
            vec![
                ph(Placeholder::Bare("a".into()), "${a}"),
                ph(Placeholder::Bare("b".into()), "${b}"),
            ],
        );
        check(
            "${hostname}/${time}",
            vec![
                ph(Placeholder::Hostname, "${hostname}"),
                text("/"),
                ph(Placeholder::Time, "${time}"),
            ],
        );
    }

    #[test]
    fn expand_table() {
        let parts = split_tag("a.b");
        let (prefix, suffix) = prefixes_and_suffixes(&parts);
        let record = Value::Map(vec![(Value::from("n"), Value::from(7))]);
        let ctx = Context {
            tag: "a.b",
            tag_parts: &parts,
            tag_prefix: &prefix,
            tag_suffix: &suffix,
            hostname: "h",
            time: "T",
            record: &record,
        };
        let sink = Unknowns::default();
        let check = |s: &str, typed: bool, expect: Value| {
            assert_eq!(
                ctx.expand_str(&StrTemplate::parse(s), typed, &sink),
                expect,
                "{s:?}"
            );
        };
        check("${record[\"n\"]}", true, Value::from(7));
        check("${record[\"n\"]}", false, Value::from("7"));
        check("${n}!", true, Value::from("7!"));
        check(
            "${tag_suffix[-1]}/${hostname}/${time}",
            true,
            Value::from("b/h/T"),
        );
        check("${nope}", true, Value::Nil);
        check("<${nope}>", true, Value::from("<>"));
        assert_eq!(*sink.0.borrow(), ["${nope}", "${nope}"]);
    }

    #[test]
    fn tag_helpers() {
        assert_eq!(split_tag("a.b.c"), ["a", "b", "c"]);
        assert_eq!(split_tag("a..b."), ["a", "", "b"]);
        assert!(split_tag("").is_empty());
        let parts = split_tag("prefix.test.tag.suffix");
        let (p, s) = prefixes_and_suffixes(&parts);
        assert_eq!(
            p,
            [
                "prefix",
                "prefix.test",
                "prefix.test.tag",
                "prefix.test.tag.suffix"
            ]
        );
        assert_eq!(
            s,
            [
                "prefix.test.tag.suffix",
                "test.tag.suffix",
                "tag.suffix",
                "suffix"
            ]
        );
        assert_eq!(canonical_index("-1"), Some(-1));
        assert_eq!(canonical_index("0"), Some(0));
        assert_eq!(canonical_index("-0"), None);
        assert_eq!(canonical_index("+1"), None);
        assert_eq!(canonical_index("x"), None);
    }
}
