//! The parameters of a `<parse>`, `<format>` or `<inject>` section, as written in the config:
//! a key → string map, read with Fluentd's value syntax.

use std::collections::BTreeMap;

use crate::error::ConfigError;

/// Section parameters, key → raw string value (`@type` included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    map: BTreeMap<String, String>,
}

impl Params {
    /// An empty parameter set.
    pub fn new() -> Params {
        Params::default()
    }

    /// Builds from `(key, value)` pairs; a later duplicate key wins.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Params {
        Params {
            map: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Sets `key` to `value`, replacing any earlier value.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Params {
        self.map.insert(key.into(), value.into());
        self
    }

    /// Builder-style [`Params::set`].
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Params {
        self.set(key, value);
        self
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    /// Whether `key` was given at all.
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Iterates over all `(key, value)` pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The `@type` value, if given.
    pub fn type_name(&self) -> Option<&str> {
        self.get("@type").or_else(|| self.get("type"))
    }

    /// A string value, or `default`.
    pub fn str_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// A bool value with Fluentd's syntax (`true`/`yes`/empty → true, `false`/`no` → false).
    pub fn bool(&self, plugin: &str, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => parse_bool(v)
                .map(Some)
                .ok_or_else(|| ConfigError::invalid(plugin, key, v, "expected true or false")),
        }
    }

    /// A bool value, or `default`.
    pub fn bool_or(&self, plugin: &str, key: &str, default: bool) -> Result<bool, ConfigError> {
        Ok(self.bool(plugin, key)?.unwrap_or(default))
    }

    /// An integer value.
    pub fn int(&self, plugin: &str, key: &str) -> Result<Option<i64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ConfigError::invalid(plugin, key, v, "expected an integer")),
        }
    }

    /// An array value: a JSON array (`["a","b"]`) or a comma-separated list (`a, b`).
    pub fn list(&self, plugin: &str, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => parse_list(v)
                .map(Some)
                .ok_or_else(|| ConfigError::invalid(plugin, key, v, "expected a list")),
        }
    }

    /// A hash value: a JSON object or `k1:v1,k2:v2` (values may contain further colons).
    pub fn hash(
        &self,
        plugin: &str,
        key: &str,
    ) -> Result<Option<Vec<(String, String)>>, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let t = v.trim();
        if t.starts_with('{') {
            let parsed: serde_json::Value = serde_json::from_str(t)
                .map_err(|e| ConfigError::invalid(plugin, key, v, format!("bad JSON: {e}")))?;
            let obj = parsed
                .as_object()
                .ok_or_else(|| ConfigError::invalid(plugin, key, v, "expected a JSON object"))?;
            return Ok(Some(
                obj.iter()
                    .map(|(k, val)| {
                        let s = match val {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), s)
                    })
                    .collect(),
            ));
        }
        let mut out = Vec::new();
        for item in t.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (k, val) = item.split_once(':').ok_or_else(|| {
                ConfigError::invalid(plugin, key, v, format!("entry {item:?} has no ':'"))
            })?;
            out.push((k.trim().to_string(), val.trim().to_string()));
        }
        Ok(Some(out))
    }

    /// One of `choices`, or `default`.
    pub fn enum_or<'a>(
        &'a self,
        plugin: &str,
        key: &str,
        choices: &[&str],
        default: &'a str,
    ) -> Result<&'a str, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) if choices.contains(&v) => Ok(v),
            Some(v) => Err(ConfigError::invalid(
                plugin,
                key,
                v,
                format!("expected one of {}", choices.join(", ")),
            )),
        }
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Params {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Params {
        Params::from_pairs(iter)
    }
}

/// Fluentd's bool syntax; `None` when the text is not a bool.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "" | "true" | "yes" => Some(true),
        "false" | "no" => Some(false),
        _ => None,
    }
}

/// Fluentd's array syntax; `None` for a malformed JSON array.
pub fn parse_list(v: &str) -> Option<Vec<String>> {
    let t = v.trim();
    if t.starts_with('[') {
        let parsed: Vec<serde_json::Value> = serde_json::from_str(t).ok()?;
        return Some(
            parsed
                .into_iter()
                .map(|x| match x {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
        );
    }
    if t.is_empty() {
        return Some(Vec::new());
    }
    Some(t.split(',').map(|s| s.trim().to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools() {
        for (input, expect) in [
            ("true", Some(true)),
            ("yes", Some(true)),
            ("", Some(true)),
            ("false", Some(false)),
            ("no", Some(false)),
            ("maybe", None),
        ] {
            assert_eq!(parse_bool(input), expect, "{input:?}");
        }
    }

    #[test]
    fn lists() {
        for (input, expect) in [
            ("a,b, c", Some(vec!["a", "b", "c"])),
            (r#"["a","b"]"#, Some(vec!["a", "b"])),
            ("", Some(vec![])),
            ("[1,", None),
        ] {
            let expect = expect.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(parse_list(input), expect, "{input:?}");
        }
    }

    #[test]
    fn hashes() {
        let p = Params::new().with("types", "a:integer, b:time:%d/%m:%H");
        assert_eq!(
            p.hash("x", "types").ok().flatten(),
            Some(vec![
                ("a".to_string(), "integer".to_string()),
                ("b".to_string(), "time:%d/%m:%H".to_string())
            ])
        );
        let p = Params::new().with("types", r#"{"a":"integer"}"#);
        assert_eq!(
            p.hash("x", "types").ok().flatten(),
            Some(vec![("a".to_string(), "integer".to_string())])
        );
        assert!(Params::new().with("types", "a").hash("x", "types").is_err());
    }

    #[test]
    fn enums_and_ints() {
        let p = Params::new().with("m", "rfc5424").with("n", "x");
        assert_eq!(
            p.enum_or("s", "m", &["rfc3164", "rfc5424"], "rfc3164"),
            Ok("rfc5424")
        );
        assert_eq!(p.enum_or("s", "z", &["a"], "a"), Ok("a"));
        assert!(p.enum_or("s", "n", &["a"], "a").is_err());
        assert!(p.int("s", "n").is_err());
        assert_eq!(Params::new().with("n", " 5").int("s", "n"), Ok(Some(5)));
    }
}
