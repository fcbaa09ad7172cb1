//! `--dump-config`: the element tree as JSON.

use serde_json::{Map, Value as Json, json};

use crate::element::{Element, Value};

/// Renders `root` as `{"name", "arg", "attrs": {...}, "elements": [...]}`, recursively.
/// Attributes keep file order; `Nil` is `null`, `UseDefault` is `{"use_default": true}`,
/// JSON literals stay their compact text (a JSON string).
pub fn dump_json(root: &Element) -> Json {
    let mut attrs = Map::new();
    for a in &root.attrs {
        let v = match &a.value {
            Value::Str(s) => Json::String(s.clone()),
            Value::Nil => Json::Null,
            Value::UseDefault => json!({ "use_default": true }),
        };
        attrs.insert(a.key.clone(), v);
    }
    json!({
        "name": root.name,
        "arg": root.arg,
        "attrs": Json::Object(attrs),
        "elements": root.elements.iter().map(dump_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::Attr;
    use crate::location::Location;
    use std::path::Path;

    #[test]
    fn shape_and_value_encoding() {
        let loc = Location::start_of(Path::new("t.conf"));
        let mut root = Element::new("ROOT", "", loc.clone());
        let mut m = Element::new("match", "a.**", loc.clone());
        for (k, v) in [
            ("z", Value::Str("1".into())),
            ("a", Value::Nil),
            ("m", Value::UseDefault),
            ("j", Value::Str("[\"x\",1]".into())),
        ] {
            m.set_attr(Attr {
                key: k.into(),
                value: v,
                location: loc.clone(),
            });
        }
        root.elements.push(m);
        let got = dump_json(&root);
        let expect = json!({
            "name": "ROOT", "arg": "", "attrs": {},
            "elements": [{
                "name": "match", "arg": "a.**",
                "attrs": {"z": "1", "a": null, "m": {"use_default": true}, "j": "[\"x\",1]"},
                "elements": []
            }]
        });
        assert_eq!(got, expect);
        // file order of attrs is kept
        let keys: Vec<_> = got["elements"][0]["attrs"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(keys, ["z", "a", "m", "j"]);
    }
}
