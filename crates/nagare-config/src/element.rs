//! The configuration tree: [`Element`]s with ordered [`Attr`]s, as Fluentd's
//! `Fluent::Config::Element` holds them. Values stay strings until a plugin types them
//! (see [`crate::types`]).

use crate::location::Location;

/// An attribute value. Fluentd keeps every value as a string; the two embedded-Ruby helpers
/// replace the whole value with a marker instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A plain string (JSON literals are their compact re-serialized text).
    Str(String),
    /// `"#{use_nil}"`: the parameter is explicitly nil.
    Nil,
    /// `"#{use_default}"`: the parameter takes the plugin's default, as if absent.
    UseDefault,
}

impl Value {
    /// The string, for [`Value::Str`] only.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Nil | Value::UseDefault => None,
        }
    }
}

/// One `key value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// The parameter name as written (`@type`, `path`, ...).
    pub key: String,
    /// The value after quoting, escapes, JSON compaction and `#{}` evaluation.
    pub value: Value,
    /// Where the winning (last) definition of the key starts.
    pub location: Location,
}

/// A `<name arg>...</name>` section, or the `ROOT` of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The section name (`source`, `match`, `buffer`, ...); `ROOT` for the top.
    pub name: String,
    /// The trimmed argument (`<match a.** b>` gives `a.** b`); `""` when absent.
    pub arg: String,
    /// Parameters in first-definition order; a later duplicate replaced the value in place.
    pub attrs: Vec<Attr>,
    /// Child sections in file order, includes spliced in place.
    pub elements: Vec<Element>,
    /// Where the `<` of the opening tag is (`file:1:1` for `ROOT`).
    pub location: Location,
}

impl Element {
    /// An element with no attributes or children.
    pub fn new(name: impl Into<String>, arg: impl Into<String>, location: Location) -> Self {
        Element {
            name: name.into(),
            arg: arg.into(),
            attrs: Vec::new(),
            elements: Vec::new(),
            location,
        }
    }

    /// The attribute named `key`, if present.
    pub fn attr(&self, key: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.key == key)
    }

    /// The string value of `key`; `None` when absent or when it is `use_nil`/`use_default`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(|a| a.value.as_str())
    }

    /// The plugin type: `@type`, else the legacy `type`.
    pub fn type_name(&self) -> Option<&str> {
        self.get("@type").or_else(|| self.get("type"))
    }

    /// The plugin id: `@id`, else the legacy `id`.
    pub fn id(&self) -> Option<&str> {
        self.get("@id").or_else(|| self.get("id"))
    }

    /// The `@label` this element routes to.
    pub fn label(&self) -> Option<&str> {
        self.get("@label")
    }

    /// Child elements named `name`, in file order.
    pub fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.elements.iter().filter(move |e| e.name == name)
    }

    /// Sets `key` with Ruby `Hash` semantics: a new key is appended, an existing key keeps
    /// its position and takes the new value and location.
    pub fn set_attr(&mut self, attr: Attr) {
        match self.attrs.iter_mut().find(|a| a.key == attr.key) {
            Some(existing) => {
                existing.value = attr.value;
                existing.location = attr.location;
            }
            None => self.attrs.push(attr),
        }
    }

    /// The routing pattern of a `<match>`/`<filter>`: its argument, or `**` when empty
    /// (Fluentd's `agent.rb` does the same).
    pub fn pattern(&self) -> &str {
        if self.arg.is_empty() { "**" } else { &self.arg }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn loc(line: u32) -> Location {
        let mut l = Location::start_of(Path::new("t.conf"));
        l.line = line;
        l
    }

    fn attr(key: &str, value: Value, line: u32) -> Attr {
        Attr {
            key: key.into(),
            value,
            location: loc(line),
        }
    }

    #[test]
    fn accessors_prefer_at_forms_and_fall_back_to_legacy() {
        let mut e = Element::new("match", "", loc(1));
        e.set_attr(attr("type", Value::Str("file".into()), 2));
        e.set_attr(attr("id", Value::Str("legacy".into()), 3));
        assert_eq!(e.type_name(), Some("file"));
        assert_eq!(e.id(), Some("legacy"));
        e.set_attr(attr("@type", Value::Str("stdout".into()), 4));
        e.set_attr(attr("@id", Value::Str("out1".into()), 5));
        e.set_attr(attr("@label", Value::Str("@X".into()), 6));
        assert_eq!(e.type_name(), Some("stdout"));
        assert_eq!(e.id(), Some("out1"));
        assert_eq!(e.label(), Some("@X"));
        assert_eq!(e.pattern(), "**");
    }

    #[test]
    fn get_is_none_for_nil_and_default() {
        let mut e = Element::new("source", "", loc(1));
        e.set_attr(attr("a", Value::Nil, 2));
        e.set_attr(attr("b", Value::UseDefault, 3));
        assert_eq!(e.get("a"), None);
        assert_eq!(e.get("b"), None);
        assert!(e.attr("a").is_some());
    }

    #[test]
    fn duplicate_key_keeps_first_position_and_last_value() {
        let mut e = Element::new("ROOT", "", loc(1));
        e.set_attr(attr("k", Value::Str("1".into()), 1));
        e.set_attr(attr("j", Value::Str("2".into()), 2));
        e.set_attr(attr("k", Value::Str("3".into()), 3));
        let keys: Vec<_> = e.attrs.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["k", "j"]);
        assert_eq!(e.get("k"), Some("3"));
        assert_eq!(e.attr("k").map(|a| a.location.line), Some(3));
    }

    #[test]
    fn children_filters_by_name() {
        let mut root = Element::new("ROOT", "", loc(1));
        root.elements.push(Element::new("source", "", loc(2)));
        root.elements.push(Element::new("match", "a", loc(3)));
        root.elements.push(Element::new("source", "", loc(4)));
        assert_eq!(root.children("source").count(), 2);
        assert_eq!(
            root.children("match")
                .map(|e| e.pattern())
                .collect::<Vec<_>>(),
            ["a"]
        );
    }
}
