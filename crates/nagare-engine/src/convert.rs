//! The host's config tree ([`nagare_config::Element`]) as the ABI's string tree
//! ([`nagare_plugin_api::ConfigNode`]).
//!
//! Values stay strings, as Fluentd hands them to `config_param`. `"#{use_nil}"` becomes
//! `RNone`; a param whose value is `"#{use_default}"` is left out, so the plugin applies its
//! default.

use abi_stable::std_types::{ROption, RString, RVec, Tuple2};
use nagare_config::{Element, Value};
use nagare_plugin_api::ConfigNode;

/// Converts an element and everything below it.
pub fn to_config_node(e: &Element) -> ConfigNode {
    let attrs: RVec<Tuple2<RString, ROption<RString>>> = e
        .attrs
        .iter()
        .filter_map(|a| {
            let v = match &a.value {
                Value::Str(s) => ROption::RSome(RString::from(s.as_str())),
                Value::Nil => ROption::RNone,
                Value::UseDefault => return None,
            };
            Some(Tuple2(RString::from(a.key.as_str()), v))
        })
        .collect();
    ConfigNode {
        name: RString::from(e.name.as_str()),
        arg: RString::from(e.arg.as_str()),
        location: RString::from(format!("{}:{}", e.location.file.display(), e.location.line)),
        attrs,
        children: e.elements.iter().map(to_config_node).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn values_nil_and_use_default() {
        let text = "<match a.**>\n  @type stdout\n  x \"#{use_nil}\"\n  y \"#{use_default}\"\n  <format>\n    @type json\n  </format>\n</match>\n";
        let root = nagare_config::parse_str(text, Path::new("/etc/t.conf")).expect("parses");
        let m = to_config_node(&root.elements[0]);
        assert_eq!(m.name.as_str(), "match");
        assert_eq!(m.arg.as_str(), "a.**");
        assert_eq!(m.location.as_str(), "/etc/t.conf:1");
        let keys: Vec<&str> = m.attrs.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(keys, vec!["@type", "x"]);
        assert!(matches!(m.attrs[1].1, ROption::RNone));
        assert_eq!(m.children[0].name.as_str(), "format");
    }
}
