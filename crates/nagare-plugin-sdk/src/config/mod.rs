//! Typed configuration for plugins: a serde `Deserializer` over the host's [`ConfigNode`]
//! tree that understands Fluentd's value types (see [`types`]).
//!
//! ```
//! use nagare_plugin_sdk::config::{self, Interval, NodeBuilder, Size};
//! #[derive(serde::Deserialize)]
//! struct Conf {
//!     port: u16,
//!     #[serde(default)]
//!     chunk_limit_size: Size,
//!     #[serde(default)]
//!     flush_interval: Interval,
//! }
//! let node = NodeBuilder::new("match", "**").attr("port", "24224").attr("chunk_limit_size", "8m").build();
//! let conf: Conf = config::from_node(&node).map(|p| p.value).unwrap_or_else(|e| panic!("{e}"));
//! assert_eq!(conf.chunk_limit_size.0, 8 << 20);
//! ```

mod de;
pub mod text;
pub mod types;

use abi_stable::std_types::{ROption, RString, Tuple2};
use nagare_plugin_api::ConfigNode;

pub use de::{ConfigError, ErrorDetail, Problem, Unused};
pub use types::{Interval, Regexp, Size, size, time};

/// A deserialized configuration and the params/sections it did not use.
#[derive(Debug)]
pub struct Parsed<T> {
    /// The typed configuration.
    pub value: T,
    /// Params and sections present in the config but unknown to `T` (warn about them).
    pub unused: Vec<Unused>,
}

/// Deserializes `T` from `node` (see the module docs for the mapping).
pub fn from_node<'a, T: serde::Deserialize<'a>>(
    node: &'a ConfigNode,
) -> Result<Parsed<T>, ConfigError> {
    de::from_node(node).map(|(value, unused)| Parsed { value, unused })
}

/// The value of param `key` of `node` (last one wins), `None` when absent or nil.
pub fn attr<'a>(node: &'a ConfigNode, key: &str) -> Option<&'a str> {
    node.attrs
        .iter()
        .rev()
        .find(|a| a.0.as_str() == key)
        .and_then(|a| a.1.as_ref().map(RString::as_str).into_option())
}

/// Builds [`ConfigNode`] trees in code (tests, built-in defaults).
#[derive(Clone, Debug, Default)]
pub struct NodeBuilder {
    node: ConfigNode,
}

impl NodeBuilder {
    /// Starts an element `<name arg>`.
    pub fn new(name: &str, arg: &str) -> Self {
        NodeBuilder {
            node: ConfigNode {
                name: name.into(),
                arg: arg.into(),
                ..ConfigNode::default()
            },
        }
    }

    /// Sets the location (`"file:line"`).
    pub fn location(mut self, location: impl Into<String>) -> Self {
        self.node.location = RString::from(location.into());
        self
    }

    /// Adds a param.
    pub fn attr(mut self, key: &str, value: &str) -> Self {
        self.push_attr(key, Some(value.to_owned()));
        self
    }

    /// Adds a nil param (Fluentd's `"#{use_nil}"`).
    pub fn nil_attr(mut self, key: &str) -> Self {
        self.push_attr(key, None);
        self
    }

    /// Adds a child element.
    pub fn child(mut self, child: NodeBuilder) -> Self {
        self.push_child(child.build());
        self
    }

    /// Adds a param in place.
    pub fn push_attr(&mut self, key: &str, value: Option<String>) {
        let value = match value {
            Some(v) => ROption::RSome(RString::from(v)),
            None => ROption::RNone,
        };
        self.node.attrs.push(Tuple2(key.into(), value));
    }

    /// Adds a child element in place.
    pub fn push_child(&mut self, child: ConfigNode) {
        self.node.children.push(child);
    }

    /// The element name.
    pub fn name(&self) -> &str {
        self.node.name.as_str()
    }

    /// The finished tree.
    pub fn build(self) -> ConfigNode {
        self.node
    }
}

#[cfg(test)]
mod tests;
