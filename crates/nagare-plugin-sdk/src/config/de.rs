//! The serde `Deserializer` over a [`ConfigNode`] tree.
//!
//! * Struct fields are looked up among the element's params, then among its child sections.
//! * Params are strings typed by the target: `bool`, integers and floats use Fluentd's parsers,
//!   `Vec<T>` reads an `array`, maps read a `hash`, unit-variant enums read `enum`, `Option`
//!   reads Fluentd's `nil` as `None`. Newtypes in [`super::types`] cover `size`, `time`, `regexp`.
//! * A child section name maps to a struct (exactly one), an `Option` of one, or a `Vec` of any
//!   number of them.
//! * `@type`, `@id`, `@label`, `@log_level` (and their legacy bare forms `type`, `id`,
//!   `log_level`) are skipped unless the struct names them as fields; `@arg`, `@name` and
//!   `@location` are pseudo-params for the element's argument, name and location.
//! * Params and sections the target ignores are collected as [`Unused`] for a warning.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use nagare_plugin_api::ConfigNode;
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

use super::types;

/// Reserved params Fluentd handles itself (with their legacy spellings), and `@root_dir`,
/// the host's `<system> root_dir` handed to every plugin.
const RESERVED: &[&str] = &[
    "@type",
    "@root_dir",
    "@id",
    "@label",
    "@log_level",
    "type",
    "id",
    "log_level",
];

/// What went wrong with one param or section.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The value does not parse; the string says what was expected.
    Invalid(String),
    /// A required param or section is missing.
    Missing,
    /// A param or section the plugin does not know (with `deny_unknown_fields`).
    Unknown,
    /// A section that may appear once appears several times.
    Repeated,
    /// Anything else.
    Other(String),
}

/// A configuration error, naming the location, the element, the param and the bad value:
/// `fluent.conf:12: invalid value for port: 'abc' (expected an integer)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(Box<ErrorDetail>);

impl std::ops::Deref for ConfigError {
    type Target = ErrorDetail;

    fn deref(&self) -> &ErrorDetail {
        &self.0
    }
}

/// The parts of a [`ConfigError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail {
    /// `file:line` of the element.
    pub location: String,
    /// The element name (`match`, `buffer`, ...).
    pub element: String,
    /// The param or section name.
    pub param: Option<String>,
    /// The offending value.
    pub value: Option<String>,
    /// What went wrong.
    pub problem: Problem,
}

impl ConfigError {
    fn new(problem: Problem) -> Self {
        ConfigError(Box::new(ErrorDetail {
            location: String::new(),
            element: String::new(),
            param: None,
            value: None,
            problem,
        }))
    }

    fn with_param(problem: Problem, param: &str) -> Self {
        let mut e = ConfigError::new(problem);
        e.0.param = Some(param.to_owned());
        e
    }

    fn at_param(mut self, param: &str, value: Option<&str>) -> Self {
        let d = &mut self.0;
        if d.param.is_none() {
            d.param = Some(param.to_owned());
            if d.value.is_none() {
                d.value = value.map(str::to_owned);
            }
        }
        self
    }

    fn at_node(mut self, node: &ConfigNode) -> Self {
        let d = &mut self.0;
        if d.location.is_empty() {
            d.location = node.location.to_string();
            d.element = node.name.to_string();
        }
        self
    }
}

impl fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.location.is_empty() {
            write!(f, "{}: ", self.location)?;
        }
        let param = self.param.as_deref().unwrap_or("?");
        let element = if self.element.is_empty() {
            "element"
        } else {
            &self.element
        };
        match &self.problem {
            Problem::Invalid(expected) => match &self.value {
                Some(v) => write!(f, "invalid value for {param}: '{v}' ({expected})"),
                None => write!(f, "invalid value for {param}: nil ({expected})"),
            },
            Problem::Missing => write!(f, "'{param}' parameter is required in <{element}>"),
            Problem::Unknown => write!(f, "unknown parameter '{param}' in <{element}>"),
            Problem::Repeated => write!(f, "<{param}> may appear only once in <{element}>"),
            Problem::Other(msg) => match &self.param {
                Some(p) => write!(f, "{p}: {msg}"),
                None => f.write_str(msg),
            },
        }
    }
}

impl de::Error for ConfigError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        let msg = msg.to_string();
        if msg.starts_with("expected ") {
            ConfigError::new(Problem::Invalid(msg))
        } else {
            ConfigError::new(Problem::Other(msg))
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        ConfigError::new(Problem::Invalid(format!("expected {exp}, got {unexp}")))
    }

    fn invalid_value(_unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        ConfigError::new(Problem::Invalid(format!("expected {exp}")))
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        ConfigError::new(Problem::Invalid(format!(
            "valid options are {}",
            expected.join(",")
        )))
    }

    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> Self {
        ConfigError::with_param(Problem::Unknown, field)
    }

    fn missing_field(field: &'static str) -> Self {
        ConfigError::with_param(Problem::Missing, field)
    }
}

/// A param or section the plugin did not use (Fluentd warns "parameter 'x' in <..> is not
/// used.").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unused {
    /// `file:line` of the element holding it.
    pub location: String,
    /// The element name and arg, as `match app.**`.
    pub element: String,
    /// The param or section name.
    pub name: String,
    /// Whether it is a section rather than a param.
    pub section: bool,
}

impl fmt::Display for Unused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.section { "section" } else { "parameter" };
        let name = if self.section {
            format!("<{}>", self.name)
        } else {
            format!("'{}'", self.name)
        };
        write!(
            f,
            "{}: {what} {name} in <{}> is not used.",
            self.location, self.element
        )
    }
}

type Sink = RefCell<Vec<Unused>>;

fn element_label(node: &ConfigNode) -> String {
    if node.arg.is_empty() {
        node.name.to_string()
    } else {
        format!("{} {}", node.name, node.arg)
    }
}

/// Deserializes `T` from `node`, returning it and what it left unused.
pub fn from_node<'de, T: de::Deserialize<'de>>(
    node: &'de ConfigNode,
) -> Result<(T, Vec<Unused>), ConfigError> {
    let sink = RefCell::new(Vec::new());
    let value = T::deserialize(NodeDe { node, sink: &sink })?;
    Ok((value, sink.into_inner()))
}

/// One element as a deserializer.
#[derive(Clone, Copy)]
pub(crate) struct NodeDe<'de, 's> {
    node: &'de ConfigNode,
    sink: &'s Sink,
}

impl<'de, 's> NodeDe<'de, 's> {
    fn map(self, fields: Option<&'static [&'static str]>) -> NodeMap<'de, 's> {
        let wants = |k: &str| fields.is_some_and(|f| f.contains(&k));
        let mut entries: Vec<Item<'de>> = Vec::new();
        for name in ["@arg", "@name", "@location"] {
            if wants(name) {
                let v = match name {
                    "@arg" => self.node.arg.as_str(),
                    "@name" => self.node.name.as_str(),
                    _ => self.node.location.as_str(),
                };
                entries.push(Item::Attr {
                    key: name,
                    value: Some(v),
                });
            }
        }
        for attr in self.node.attrs.iter() {
            let key = attr.0.as_str();
            if RESERVED.contains(&key) && !wants(key) {
                continue;
            }
            let value = attr.1.as_ref().map(|v| v.as_str()).into_option();
            // A later duplicate key wins, as in Fluentd.
            match entries
                .iter_mut()
                .find(|e| matches!(e, Item::Attr { key: k, .. } if *k == key))
            {
                Some(Item::Attr { value: v, .. }) => *v = value,
                _ => entries.push(Item::Attr { key, value }),
            }
        }
        for child in self.node.children.iter() {
            let name = child.name.as_str();
            match entries
                .iter_mut()
                .find(|e| matches!(e, Item::Sections { name: n, .. } if *n == name))
            {
                Some(Item::Sections { nodes, .. }) => nodes.push(child),
                _ => entries.push(Item::Sections {
                    name,
                    nodes: vec![child],
                }),
            }
        }
        NodeMap {
            node: self.node,
            sink: self.sink,
            entries: entries.into_iter(),
            current: None,
        }
    }

    fn fill<T>(&self, r: Result<T, ConfigError>) -> Result<T, ConfigError> {
        r.map_err(|e| e.at_node(self.node))
    }
}

impl<'de> Deserializer<'de> for NodeDe<'de, '_> {
    type Error = ConfigError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        self.fill(visitor.visit_map(self.map(None)))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        self.fill(visitor.visit_map(self.map(Some(fields))))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map enum identifier
    }
}

enum Item<'de> {
    Attr {
        key: &'de str,
        value: Option<&'de str>,
    },
    Sections {
        name: &'de str,
        nodes: Vec<&'de ConfigNode>,
    },
}

struct NodeMap<'de, 's> {
    node: &'de ConfigNode,
    sink: &'s Sink,
    entries: std::vec::IntoIter<Item<'de>>,
    current: Option<Item<'de>>,
}

impl<'de> MapAccess<'de> for NodeMap<'de, '_> {
    type Error = ConfigError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ConfigError> {
        let Some(item) = self.entries.next() else {
            return Ok(None);
        };
        let key = match &item {
            Item::Attr { key, .. } => *key,
            Item::Sections { name, .. } => *name,
        };
        self.current = Some(item);
        seed.deserialize(KeyDe(key))
            .map(Some)
            .map_err(|e| e.at_param(key, None).at_node(self.node))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ConfigError> {
        match self.current.take() {
            Some(Item::Attr { key, value }) => {
                let de = ValueDe {
                    value: value.map(Cow::Borrowed),
                    unused: Some(UnusedCtx {
                        node: self.node,
                        name: key,
                        sink: self.sink,
                    }),
                };
                seed.deserialize(de)
                    .map_err(|e| e.at_param(key, value).at_node(self.node))
            }
            Some(Item::Sections { name, nodes }) => {
                let de = SectionsDe {
                    parent: self.node,
                    name,
                    nodes,
                    sink: self.sink,
                };
                seed.deserialize(de)
                    .map_err(|e| e.at_param(name, None).at_node(self.node))
            }
            None => Err(ConfigError::new(Problem::Other(
                "value requested before key".into(),
            ))),
        }
    }
}

struct KeyDe<'de>(&'de str);

impl<'de> Deserializer<'de> for KeyDe<'de> {
    type Error = ConfigError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_borrowed_str(self.0)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

/// All child sections of one name.
struct SectionsDe<'de, 's> {
    parent: &'de ConfigNode,
    name: &'de str,
    nodes: Vec<&'de ConfigNode>,
    sink: &'s Sink,
}

impl<'de, 's> SectionsDe<'de, 's> {
    fn single(&self) -> Result<NodeDe<'de, 's>, ConfigError> {
        match self.nodes.as_slice() {
            [one] => Ok(NodeDe {
                node: one,
                sink: self.sink,
            }),
            _ => Err(ConfigError::new(Problem::Repeated)),
        }
    }
}

impl<'de> Deserializer<'de> for SectionsDe<'de, '_> {
    type Error = ConfigError;

    /// One section is a map; several (for a type that takes anything) a sequence of them.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        if self.nodes.len() > 1 {
            return visitor.visit_seq(SectionSeq {
                nodes: self.nodes.into_iter(),
                sink: self.sink,
            });
        }
        self.single()?.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        self.single()?.deserialize_struct(name, fields, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_seq(SectionSeq {
            nodes: self.nodes.into_iter(),
            sink: self.sink,
        })
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        self.sink.borrow_mut().push(Unused {
            location: self.nodes.first().map_or_else(
                || self.parent.location.to_string(),
                |n| n.location.to_string(),
            ),
            element: element_label(self.parent),
            name: self.name.to_owned(),
            section: true,
        });
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct tuple tuple_struct map enum identifier
    }
}

struct SectionSeq<'de, 's> {
    nodes: std::vec::IntoIter<&'de ConfigNode>,
    sink: &'s Sink,
}

impl<'de> SeqAccess<'de> for SectionSeq<'de, '_> {
    type Error = ConfigError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ConfigError> {
        match self.nodes.next() {
            Some(node) => seed
                .deserialize(NodeDe {
                    node,
                    sink: self.sink,
                })
                .map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.nodes.len())
    }
}

#[derive(Clone, Copy)]
struct UnusedCtx<'de, 's> {
    node: &'de ConfigNode,
    name: &'de str,
    sink: &'s Sink,
}

/// One param value (or an element of an array/hash value). `None` is Fluentd's nil.
struct ValueDe<'de, 's> {
    value: Option<Cow<'de, str>>,
    unused: Option<UnusedCtx<'de, 's>>,
}

impl<'de> ValueDe<'de, '_> {
    fn text(&self, what: &str) -> Result<&str, ConfigError> {
        self.value
            .as_deref()
            .ok_or_else(|| ConfigError::new(Problem::Invalid(format!("expected {what}, got nil"))))
    }

    fn invalid(what: &str) -> ConfigError {
        ConfigError::new(Problem::Invalid(format!("expected {what}")))
    }

    fn int<T: TryFrom<i128>>(&self, what: &str) -> Result<T, ConfigError> {
        let s = self.text(what)?;
        let v = types::parse_integer(s).ok_or_else(|| Self::invalid(what))?;
        T::try_from(v)
            .map_err(|_| ConfigError::new(Problem::Invalid(format!("expected {what} in range"))))
    }

    fn float(&self) -> Result<f64, ConfigError> {
        let s = self.text("a number")?;
        types::parse_float(s).ok_or_else(|| Self::invalid("a number"))
    }
}

fn element<'de, 's>(value: String) -> ValueDe<'de, 's> {
    ValueDe {
        value: Some(Cow::Owned(value)),
        unused: None,
    }
}

macro_rules! int_method {
    ($method:ident, $visit:ident, $ty:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
            visitor.$visit(self.int::<$ty>("an integer")?)
        }
    };
}

impl<'de> Deserializer<'de> for ValueDe<'de, '_> {
    type Error = ConfigError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        match self.value {
            None => visitor.visit_none(),
            Some(Cow::Borrowed(s)) => visitor.visit_borrowed_str(s),
            Some(Cow::Owned(s)) => visitor.visit_string(s),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let s = self.text("true or false")?;
        visitor.visit_bool(
            types::parse_bool(s).ok_or_else(|| Self::invalid("true, yes, false or no"))?,
        )
    }

    int_method!(deserialize_i8, visit_i8, i8);
    int_method!(deserialize_i16, visit_i16, i16);
    int_method!(deserialize_i32, visit_i32, i32);
    int_method!(deserialize_i64, visit_i64, i64);
    int_method!(deserialize_i128, visit_i128, i128);
    int_method!(deserialize_u8, visit_u8, u8);
    int_method!(deserialize_u16, visit_u16, u16);
    int_method!(deserialize_u32, visit_u32, u32);
    int_method!(deserialize_u64, visit_u64, u64);
    int_method!(deserialize_u128, visit_u128, u128);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_f32(self.float()? as f32)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_f64(self.float()?)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let s = self.text("a character")?;
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => visitor.visit_char(c),
            _ => Err(Self::invalid("a single character")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        self.text("a string")?;
        self.deserialize_any(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_bytes(self.text("a string")?.as_bytes())
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        match self.value {
            None => visitor.visit_none(),
            Some(_) => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let s = self.text("an array")?;
        let items = types::parse_array(s).map_err(|e| Self::invalid(&format!("an array: {e}")))?;
        let mut seq = de::value::SeqDeserializer::new(items.into_iter().map(element));
        let v = visitor.visit_seq(&mut seq)?;
        seq.end()?;
        Ok(v)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        let s = self.text("a hash")?;
        let pairs = types::parse_hash(s).map_err(|e| Self::invalid(&format!("a hash: {e}")))?;
        let mut map = de::value::MapDeserializer::new(
            pairs.into_iter().map(|(k, v)| (element(k), element(v))),
        );
        let v = visitor.visit_map(&mut map)?;
        map.end()?;
        Ok(v)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ConfigError> {
        let s = self.text("one of the options")?.trim().to_owned();
        let d: de::value::StringDeserializer<ConfigError> = s.into_deserializer();
        visitor.visit_enum(d)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ConfigError> {
        if let Some(ctx) = self.unused {
            ctx.sink.borrow_mut().push(Unused {
                location: ctx.node.location.to_string(),
                element: element_label(ctx.node),
                name: ctx.name.to_owned(),
                section: false,
            });
        }
        visitor.visit_unit()
    }
}

impl<'de> IntoDeserializer<'de, ConfigError> for ValueDe<'de, '_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}
