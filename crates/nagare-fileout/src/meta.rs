//! Chunk keys and chunk metadata as the file outputs see them.
//!
//! The host owns the `<buffer>` and hands every chunk over with its chunk-key `variables`
//! (plus `"timekey"` when `time` is a chunk key). When a chunk comes without them (an
//! unbuffered runner, or a host that chunks by tag only) the plugin still names files the way
//! Fluentd would: it derives each entry's metadata itself (timekey from the event time,
//! record keys from the record) and writes one file per distinct metadata.

use std::collections::HashMap;

use nagare_buffer::{ChunkKeys, Metadata, RecordKey};
use nagare_plugin_sdk::rmpv::Value;
use nagare_plugin_sdk::{Chunk, ConfigNode};

/// The variable under which the host passes the timekey (epoch seconds).
pub const TIMEKEY_VAR: &str = "timekey";

/// The `<buffer>` child of `node`, if any.
pub fn buffer_section(node: &ConfigNode) -> Option<&ConfigNode> {
    node.children.iter().find(|c| c.name.as_str() == "buffer")
}

/// The time-related params of a `<buffer>` section (what file naming depends on).
pub fn time_params(buffer: &ConfigNode) -> Vec<(String, String)> {
    const TIME_PARAMS: [&str; 4] = ["timekey", "timekey_wait", "timekey_use_utc", "timekey_zone"];
    buffer
        .attrs
        .iter()
        .filter(|a| TIME_PARAMS.contains(&a.0.as_str()))
        .map(|a| {
            let v = a.1.as_ref().map(|v| v.to_string()).into_option();
            (a.0.to_string(), v.unwrap_or_default())
        })
        .collect()
}

/// Builds [`ChunkKeys`] from a chunk-key list and time params, with Fluentd's messages.
pub fn chunk_keys(arg: &str, params: &[(String, String)]) -> Result<ChunkKeys, String> {
    nagare_buffer::BufferConfig::from_params(arg, params.iter().map(|(k, v)| (k, v)))
        .map(|c| c.chunk_keys)
        .map_err(|e| e.to_string())
}

/// Follows `key.path` through nested maps; `None` for a missing key or nil.
fn record_value(record: &Value, key: &RecordKey) -> Option<String> {
    let mut v = record;
    for part in &key.path {
        v = v
            .as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(part.as_str()))
            .map(|(_, v)| v)?;
    }
    match v {
        Value::Nil => None,
        Value::String(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        other => Some(nagare_formats::json::to_s(other)),
    }
}

/// Whether the chunk carries every variable `keys` needs (then the whole chunk shares one
/// metadata, [`chunk_metadata`]).
pub fn chunk_is_keyed(chunk: &Chunk<'_>, keys: &ChunkKeys) -> bool {
    (keys.time.is_none() || chunk.variable(TIMEKEY_VAR).is_some())
        && keys.keys.iter().all(|k| chunk.variable(&k.name).is_some())
}

/// The metadata of a chunk whose variables are complete.
pub fn chunk_metadata(chunk: &Chunk<'_>, keys: &ChunkKeys) -> Metadata {
    Metadata {
        timekey: keys.time.as_ref().and_then(|_| {
            chunk
                .variable(TIMEKEY_VAR)
                .and_then(|s| s.trim().parse().ok())
        }),
        tag: keys.tag.then(|| chunk.tag().to_owned()),
        variables: keys
            .keys
            .iter()
            .map(|k| {
                let v = chunk.variable(&k.name).filter(|v| !v.is_empty());
                (k.name.clone(), v.map(str::to_owned))
            })
            .collect(),
    }
}

/// The metadata of one entry: the chunk's variables where present, else derived from the
/// event time and the record.
pub fn entry_metadata(
    chunk: &Chunk<'_>,
    keys: &ChunkKeys,
    time_sec: u32,
    record: &Value,
) -> Metadata {
    Metadata {
        timekey: keys.time.as_ref().map(|tk| {
            chunk
                .variable(TIMEKEY_VAR)
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or_else(|| tk.timekey_of(i64::from(time_sec)))
        }),
        tag: keys.tag.then(|| chunk.tag().to_owned()),
        variables: keys
            .keys
            .iter()
            .map(|k| {
                let v = match chunk.variable(&k.name) {
                    Some(v) => Some(v.to_owned()).filter(|v| !v.is_empty()),
                    None => record_value(record, k),
                };
                (k.name.clone(), v)
            })
            .collect(),
    }
}

/// Groups in first-seen order: each distinct metadata with the data gathered for it.
#[derive(Debug, Default)]
pub struct Groups<T> {
    index: HashMap<Metadata, usize>,
    groups: Vec<(Metadata, T)>,
}

impl<T: Default> Groups<T> {
    /// The slot for `meta`, created empty on first sight.
    pub fn slot(&mut self, meta: Metadata) -> &mut T {
        let i = match self.index.get(&meta) {
            Some(i) => *i,
            None => {
                self.groups.push((meta.clone(), T::default()));
                self.index.insert(meta, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        &mut self.groups[i].1
    }

    /// The groups, in first-seen order.
    pub fn into_vec(self) -> Vec<(Metadata, T)> {
        self.groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_values() {
        let rec = Value::Map(vec![
            (Value::from("s"), Value::from("x")),
            (Value::from("n"), Value::from(12)),
            (Value::from("nil"), Value::Nil),
            (
                Value::from("a"),
                Value::Map(vec![(Value::from("b"), Value::from(true))]),
            ),
        ]);
        let key = |name: &str, path: &[&str]| RecordKey {
            name: name.into(),
            path: path.iter().map(|s| s.to_string()).collect(),
        };
        for (k, expect) in [
            (key("s", &["s"]), Some("x")),
            (key("n", &["n"]), Some("12")),
            (key("nil", &["nil"]), None),
            (key("missing", &["missing"]), None),
            (key("$.a.b", &["a", "b"]), Some("true")),
            (key("$.s.x", &["s", "x"]), None),
        ] {
            assert_eq!(record_value(&rec, &k).as_deref(), expect, "{k:?}");
        }
    }
}
