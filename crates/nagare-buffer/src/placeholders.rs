//! Placeholder expansion in output parameters (Fluentd `output.rb extract_placeholders`
//! and `placeholder_validate!`): `${tag}`, `${tag[N]}`, `${key}`, `${$.a.b}`,
//! `${chunk_id}` and strftime `%Y%m%d…` when `time` is a chunk key.

use std::fmt::Write as _;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};

use crate::config::ChunkKeys;
use crate::metadata::{ChunkId, Metadata};

/// Why a template could not be expanded or validated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceholderError {
    /// A substituted tag or value would escape a directory (Fluentd's UnrecoverableError).
    #[error("Invalid path component detected: '{value}' in template '{template}'")]
    InvalidPathComponent {
        /// The offending value.
        value: String,
        /// The template being expanded.
        template: String,
    },
    /// The template has a strftime directive chrono cannot render.
    #[error("invalid time format in template '{template}'")]
    BadTimeFormat {
        /// The template.
        template: String,
    },
    /// A configuration mismatch between the template and the chunk keys (the message is
    /// Fluentd's `Fluent::ConfigError` text).
    #[error("{0}")]
    Config(String),
}

/// A `${...}` occurrence: byte range and inner text.
fn occurrences(s: &str, inner_ok: impl Fn(&str) -> bool) -> Vec<(usize, usize)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'$' && b[i + 1] == b'{' {
            if let Some(close) = s.get(i + 2..).and_then(|rest| rest.find('}')) {
                let inner = s.get(i + 2..i + 2 + close).unwrap_or("");
                if !inner.is_empty() && inner_ok(inner) {
                    out.push((i, i + 2 + close + 1));
                    i += close + 3;
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

/// `CHUNK_KEY_PLACEHOLDER_PATTERN`: `\$\{([-_.@$a-zA-Z0-9]+)\}`.
fn is_key_inner(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '$'))
}

/// `CHUNK_TAG_PLACEHOLDER_PATTERN`: `\$\{(tag(?:\[-?\d+\])?)\}`; returns the index, if any.
fn tag_inner(s: &str) -> Option<Option<i64>> {
    if s == "tag" {
        return Some(None);
    }
    let idx = s.strip_prefix("tag[")?.strip_suffix(']')?;
    let digits = idx.strip_prefix('-').unwrap_or(idx);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    idx.parse::<i64>().ok().map(Some)
}

/// Replaces every occurrence matching `inner_ok` with `f(inner)`.
fn gsub(
    s: &str,
    inner_ok: impl Fn(&str) -> bool,
    mut f: impl FnMut(&str) -> Result<String, PlaceholderError>,
) -> Result<String, PlaceholderError> {
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for (start, end) in occurrences(s, inner_ok) {
        out.push_str(s.get(last..start).unwrap_or(""));
        out.push_str(&f(s.get(start + 2..end - 1).unwrap_or(""))?);
        last = end;
    }
    out.push_str(s.get(last..).unwrap_or(""));
    Ok(out)
}

/// Fluentd's `INVALID_PATH_COMPONENT_PATTERN` (`\.\.[/\\]|^[/\\]`), and also a value that
/// is or ends in a `..` component (a tag `..`, a record value `x/..`), which that pattern
/// lets through and which would climb out of the directory just as well.
fn check_path_component(value: &str, template: &str) -> Result<(), PlaceholderError> {
    if value.starts_with(['/', '\\'])
        || value.contains("../")
        || value.contains("..\\")
        || value.split(['/', '\\']).any(|c| c == "..")
    {
        return Err(PlaceholderError::InvalidPathComponent {
            value: value.to_string(),
            template: template.to_string(),
        });
    }
    Ok(())
}

fn strftime(template: &str, at: DateTime<FixedOffset>) -> Result<String, PlaceholderError> {
    let mut out = String::with_capacity(template.len() + 8);
    write!(out, "{}", at.format(template)).map_err(|_| PlaceholderError::BadTimeFormat {
        template: template.to_string(),
    })?;
    Ok(out)
}

/// Expands `template` for a chunk with `metadata` (and `chunk_id` when a chunk, not bare
/// metadata, is at hand), given the output's chunk keys.
///
/// Follows Fluentd step by step: strftime first (only when `time` is a chunk key, in
/// `timekey_zone`), then `${tag}` and `${tag[N]}` (only when `tag` is a chunk key;
/// negative N counts from the end; out of range gives `""`), then `${key}` for record
/// keys (unknown keys and nil values give `""`), then the first `${chunk_id}`. A tag or
/// value matching `\.\.[/\\]|^[/\\]` is refused. One deliberate difference: `${chunk_id}`
/// survives the record-key pass (Fluentd erases it there when record keys are set).
pub fn expand(
    template: &str,
    metadata: &Metadata,
    chunk_id: Option<&ChunkId>,
    keys: &ChunkKeys,
) -> Result<String, PlaceholderError> {
    let chunk_id_hex = |warn_ctx: &str| -> String {
        match chunk_id {
            Some(id) => id.hex(),
            None => {
                tracing::warn!(
                    "${{chunk_id}} is not allowed in this plugin. Pass Chunk instead of metadata ({warn_ctx})"
                );
                String::new()
            }
        }
    };
    let replace_first_chunk_id = |s: String| -> String {
        match s.find("${chunk_id}") {
            Some(at) => {
                let mut out = String::with_capacity(s.len() + 32);
                out.push_str(s.get(..at).unwrap_or(""));
                out.push_str(&chunk_id_hex(template));
                out.push_str(s.get(at + "${chunk_id}".len()..).unwrap_or(""));
                out
            }
            None => s,
        }
    };
    if metadata.is_empty() {
        return Ok(replace_first_chunk_id(template.to_string()));
    }

    let mut rvalue = template.to_string();
    if let Some(tk) = &keys.time {
        let secs = metadata.timekey.unwrap_or(0);
        let at = Utc
            .timestamp_opt(secs, 0)
            .single()
            .unwrap_or_default()
            .with_timezone(&tk.zone.offset_at(secs));
        rvalue = strftime(template, at)?;
    }
    if keys.tag {
        let tag = metadata.tag.as_deref().unwrap_or("");
        let parts: Vec<&str> = tag.split('.').collect();
        let n = parts.len() as i64;
        rvalue = gsub(
            &rvalue,
            |s| tag_inner(s).is_some(),
            |inner| {
                let value = match tag_inner(inner).flatten() {
                    None => tag,
                    Some(i) => {
                        let i = if i < 0 { i + n } else { i };
                        usize::try_from(i)
                            .ok()
                            .and_then(|i| parts.get(i).copied())
                            .unwrap_or("")
                    }
                };
                check_path_component(value, template)?;
                Ok(value.to_string())
            },
        )?;
        if let Some((s, e)) = occurrences(&rvalue, |s| tag_inner(s).is_some()).first() {
            tracing::warn!(
                "tag placeholder '{}' not replaced. tag:{tag}, template:{template}",
                rvalue.get(s + 2..e - 1).unwrap_or("")
            );
        }
    }
    if !keys.keys.is_empty() {
        rvalue = gsub(&rvalue, is_key_inner, |inner| {
            if inner == "tag" || inner == "chunk_id" {
                return Ok(format!("${{{inner}}}"));
            }
            if !keys.keys.iter().any(|k| k.name == inner) {
                tracing::warn!("chunk key placeholder '{inner}' not replaced. template:{template}");
                return Ok(String::new());
            }
            let value = metadata
                .variables
                .get(inner)
                .cloned()
                .flatten()
                .unwrap_or_default();
            check_path_component(&value, template)?;
            Ok(value)
        })?;
    }
    if let Some((s, e)) = occurrences(&rvalue, |s| {
        is_key_inner(s) && s != "tag" && s != "chunk_id"
    })
    .first()
    {
        tracing::warn!(
            "chunk key placeholder '{}' not replaced. template:{template}",
            rvalue.get(s + 2..e - 1).unwrap_or("")
        );
    }
    Ok(replace_first_chunk_id(rvalue))
}

/// `TIME_KEY_PLACEHOLDER_THRESHOLDS`: the finest time unit a template shows.
const TIME_UNITS: [(u64, &str, &str); 4] = [
    (1, "second", "%S"),
    (60, "minute", "%M"),
    (3600, "hour", "%H"),
    (86400, "day", "%d"),
];

fn time_placeholder(
    template: &str,
) -> Result<Option<(u64, &'static str, &'static str)>, PlaceholderError> {
    let base = Utc
        .timestamp_opt(1_451_606_400, 0)
        .single()
        .unwrap_or_default()
        .fixed_offset(); // 2016-01-01 UTC
    let base_s = strftime(template, base)?;
    for (sec, title, example) in TIME_UNITS {
        let later = base + chrono::Duration::seconds(sec as i64);
        if strftime(template, later)? != base_s {
            return Ok(Some((sec, title, example)));
        }
    }
    Ok(None)
}

/// Checks that `template` (the value of parameter `name`) uses exactly the chunk keys
/// configured, as Fluentd's `placeholder_validate!` does for out_file-like outputs.
pub fn validate_placeholders(
    name: &str,
    template: &str,
    keys: &ChunkKeys,
) -> Result<(), PlaceholderError> {
    let cfg = |msg: String| {
        Err(PlaceholderError::Config(format!(
            "Parameter '{name}: {template}' {msg}"
        )))
    };

    let timekey = keys.time.as_ref().map(|t| t.timekey);
    let time = time_placeholder(template)?;
    match (time, timekey) {
        (None, Some(tk)) => {
            return cfg(format!(
                "doesn't have timestamp placeholders for timekey {tk}"
            ));
        }
        (Some(_), None) => {
            return cfg(
                "has timestamp placeholders, but chunk key 'time' is not configured".into(),
            );
        }
        (Some((sec, title, example)), Some(tk)) if tk < sec => {
            return cfg(format!(
                "doesn't have timestamp placeholder for {title}('{example}') for timekey {tk}"
            ));
        }
        _ => {}
    }

    let tag_parts = occurrences(template, |s| tag_inner(s).is_some()).len();
    if keys.tag && tag_parts == 0 {
        return cfg("doesn't have tag placeholder".into());
    }
    if !keys.tag && tag_parts > 0 {
        return cfg("has tag placeholders, but chunk key 'tag' is not configured".into());
    }

    let mut used: Vec<String> = occurrences(template, is_key_inner)
        .into_iter()
        .filter_map(|(s, e)| template.get(s + 2..e - 1))
        .filter(|k| *k != "tag" && *k != "chunk_id")
        .map(str::to_string)
        .collect();
    used.sort();
    used.dedup();
    let mut configured: Vec<String> = keys.keys.iter().map(|k| k.name.clone()).collect();
    configured.sort();
    let missing: Vec<&str> = configured
        .iter()
        .filter(|k| !used.contains(k))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return cfg(format!(
            "doesn't have enough placeholders for keys {}",
            missing.join(",")
        ));
    }
    let extra: Vec<&str> = used
        .iter()
        .filter(|k| !configured.contains(k))
        .map(String::as_str)
        .collect();
    if !extra.is_empty() {
        return cfg(format!(
            "has placeholders, but chunk keys doesn't have keys {}",
            extra.join(",")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Cases ported from fluentd `test/plugin/test_output.rb` (`#extract_placeholders`,
    //! `#placeholder_validate!`).
    use super::*;
    use crate::config::BufferConfig;

    fn keys(arg: &str, params: &[(&str, &str)]) -> ChunkKeys {
        BufferConfig::from_params(arg, params.iter().copied())
            .expect("config")
            .chunk_keys
    }

    fn meta(tag: &str, vars: &[(&str, &str)], keys: &ChunkKeys) -> Metadata {
        // 2016-04-11 20:30:00 +0900
        let t = 1_460_374_200;
        Metadata {
            timekey: keys.time.as_ref().map(|tk| tk.timekey_of(t)).or(Some(t)),
            tag: Some(tag.to_string()),
            variables: vars
                .iter()
                .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                .collect(),
        }
    }

    const TMPL: &str = "/mypath/%Y/%m/%d/%H-%M/${tag}/${tag[1]}/${tag[2]}/${key1}/${key2}/tail";
    const V: &[(&str, &str)] = &[("key1", "value1"), ("key2", "value2")];

    fn check(arg: &str, params: &[(&str, &str)], tmpl: &str, vars: &[(&str, &str)], expect: &str) {
        let k = keys(arg, params);
        let m = meta("fluentd.test.output", vars, &k);
        assert_eq!(
            expand(tmpl, &m, None, &k).as_deref(),
            Ok(expect),
            "arg {arg:?} tmpl {tmpl}"
        );
    }

    #[test]
    fn fluentd_extract_placeholders_cases() {
        let tz = &[("timekey", "1800"), ("timekey_zone", "+0900")][..];
        check(
            "",
            &[],
            "/mypath/%Y/%m/%d/${tag}/${tag[1]}/${tag[2]}/${key1}/${key2}/tail",
            V,
            "/mypath/%Y/%m/%d/${tag}/${tag[1]}/${tag[2]}/${key1}/${key2}/tail",
        );
        check(
            "time",
            tz,
            TMPL,
            V,
            "/mypath/2016/04/11/20-30/${tag}/${tag[1]}/${tag[2]}/${key1}/${key2}/tail",
        );
        check(
            "tag",
            &[],
            TMPL,
            V,
            "/mypath/%Y/%m/%d/%H-%M/fluentd.test.output/test/output/${key1}/${key2}/tail",
        );
        check(
            "key1,key2",
            &[],
            TMPL,
            V,
            "/mypath/%Y/%m/%d/%H-%M/${tag}/${tag[1]}/${tag[2]}/value1/value2/tail",
        );
        check(
            "key,$.nest.key",
            &[],
            "/mypath/%Y/%m/%d/%H-%M/${tag}/${tag[1]}/${tag[2]}/${key}/${$.nest.key}/tail",
            &[("key", "value1"), ("$.nest.key", "value2")],
            "/mypath/%Y/%m/%d/%H-%M/${tag}/${tag[1]}/${tag[2]}/value1/value2/tail",
        );
        check(
            "time,tag,key1,key2",
            tz,
            TMPL,
            V,
            "/mypath/2016/04/11/20-30/fluentd.test.output/test/output/value1/value2/tail",
        );
        check(
            "time,tag,key1,key2",
            tz,
            "/mypath/%Y/%m/%d/%H-%M/${tag}/${tag[-1]}/${tag[-2]}/${key1}/${key2}/tail",
            V,
            "/mypath/2016/04/11/20-30/fluentd.test.output/output/test/value1/value2/tail",
        );
        check(
            "time,tag,key1,key2",
            tz,
            "/mypath/%Y/%m/%d/%H-%M/${tag}/${tag[3]}/${tag[-4]}/${key3}/${key4}/tail",
            V,
            "/mypath/2016/04/11/20-30/fluentd.test.output/////tail",
        );
    }

    #[test]
    fn timekey_zone_and_utc() {
        check(
            "time",
            &[("timekey", "1d"), ("timekey_zone", "+0900")],
            "%Y%m%d-%H",
            &[],
            "20160411-00",
        );
        check(
            "time",
            &[("timekey", "1d"), ("timekey_use_utc", "true")],
            "%Y%m%d-%H",
            &[],
            "20160411-00",
        );
        check(
            "time",
            &[("timekey", "1h"), ("timekey_zone", "-0500")],
            "%Y%m%d-%H%z",
            &[],
            "20160411-06-0500",
        );
        // Named zones render with the offset in force at the slice (daylight saving in April).
        check(
            "time",
            &[("timekey", "1d"), ("timekey_zone", "Asia/Seoul")],
            "%Y%m%d-%H%z",
            &[],
            "20160411-00+0900",
        );
        check(
            "time",
            &[("timekey", "1h"), ("timekey_zone", "America/New_York")],
            "%Y%m%d-%H%z",
            &[],
            "20160411-07-0400",
        );
    }

    #[test]
    fn chunk_id_first_occurrence_only() {
        let k = keys("key1", &[]);
        let m = meta("a.b", V, &k);
        let id = ChunkId([0xab; 16]);
        let hex = "ab".repeat(16);
        assert_eq!(
            expand("/p/${chunk_id}/${key1}/${chunk_id}", &m, Some(&id), &k),
            Ok(format!("/p/{hex}/value1/${{chunk_id}}"))
        );
        assert_eq!(
            expand(
                "/p/${chunk_id}",
                &Metadata::default(),
                Some(&id),
                &ChunkKeys::default()
            ),
            Ok(format!("/p/{hex}"))
        );
        assert_eq!(
            expand(
                "/p/${chunk_id}",
                &Metadata::default(),
                None,
                &ChunkKeys::default()
            ),
            Ok("/p/".to_string())
        );
    }

    #[test]
    fn nil_and_missing_values_become_empty() {
        let k = keys("key1,key2", &[]);
        let mut m = meta("a", &[("key1", "x")], &k);
        m.variables.insert("key2".into(), None);
        assert_eq!(
            expand("${key1}-${key2}-${nope}", &m, None, &k),
            Ok("x--".into())
        );
    }

    #[test]
    fn path_escapes_are_refused() {
        let k = keys("tag,key1", &[]);
        for (tag, v) in [
            ("../etc", "ok"),
            ("a", "../../x"),
            ("a", "/abs"),
            ("a", "..\\win"),
            ("/root.x", "ok"),
            ("..", "ok"),
            ("a", ".."),
            ("a", "x/.."),
            ("a", "x\\.."),
        ] {
            let m = Metadata {
                timekey: None,
                tag: Some(tag.into()),
                variables: [("key1".to_string(), Some(v.to_string()))].into(),
            };
            let r = expand("/data/${tag}/${key1}/${tag[0]}", &m, None, &k);
            assert!(
                matches!(r, Err(PlaceholderError::InvalidPathComponent { .. })),
                "{tag} {v}: {r:?}"
            );
        }
        let m = Metadata {
            timekey: None,
            tag: Some("a..b".into()),
            variables: [("key1".to_string(), Some("x..y".to_string()))].into(),
        };
        assert_eq!(
            expand("/d/${tag}/${key1}", &m, None, &k),
            Ok("/d/a..b/x..y".into())
        );
    }

    fn check_validate(arg: &str, params: &[(&str, &str)], tmpl: &str, expect: Result<(), &str>) {
        let k = keys(arg, params);
        let got = validate_placeholders("path", tmpl, &k).map_err(|e| e.to_string());
        assert_eq!(
            got.as_ref().map_err(String::as_str),
            expect.as_ref().map_err(|e| *e),
            "{arg} {tmpl}"
        );
    }

    #[test]
    fn fluentd_placeholder_validate_cases() {
        check_validate(
            "",
            &[],
            "/path/without/timestamp/file.%Y%m%d-%H%M.log",
            Err(
                "Parameter 'path: /path/without/timestamp/file.%Y%m%d-%H%M.log' has timestamp placeholders, but chunk key 'time' is not configured",
            ),
        );
        check_validate(
            "time",
            &[("timekey", "180")],
            "/my/path/file.log",
            Err(
                "Parameter 'path: /my/path/file.log' doesn't have timestamp placeholders for timekey 180",
            ),
        );
        check_validate(
            "time",
            &[("timekey", "180")],
            "/my/path/%Y%m%d/file.%H%M.log",
            Ok(()),
        );
        check_validate(
            "time",
            &[("timekey", "180")],
            "/my/path/file.%Y%m%d_%H.log",
            Err(
                "Parameter 'path: /my/path/file.%Y%m%d_%H.log' doesn't have timestamp placeholder for hour('%H') for timekey 180",
            ),
        );
        check_validate(
            "time",
            &[("timekey", "180")],
            "/my/path/file.%Y%m%d_%H%M.log",
            Ok(()),
        );
        check_validate(
            "",
            &[],
            "/my/path/${tag}/file.${tag[2]}.log",
            Err(
                "Parameter 'path: /my/path/${tag}/file.${tag[2]}.log' has tag placeholders, but chunk key 'tag' is not configured",
            ),
        );
        check_validate(
            "tag",
            &[],
            "/my/path/file.log",
            Err("Parameter 'path: /my/path/file.log' doesn't have tag placeholder"),
        );
        check_validate("tag", &[], "/my/path/${tag}/file.${tag[2]}.log", Ok(()));
        check_validate("tag", &[], "/my/path/${tag}/file.${tag[-1]}.log", Ok(()));
        check_validate(
            "",
            &[],
            "/my/path/${service}/file.${username}.log",
            Err(
                "Parameter 'path: /my/path/${service}/file.${username}.log' has placeholders, but chunk keys doesn't have keys service,username",
            ),
        );
        check_validate(
            "username,group",
            &[],
            "/my/path/file.log",
            Err(
                "Parameter 'path: /my/path/file.log' doesn't have enough placeholders for keys group,username",
            ),
        );
        check_validate(
            "time,tag,username",
            &[("timekey", "60")],
            "/my/path/${tag}/${username}/file.%Y%m%d_%H%M.log",
            Ok(()),
        );
        check_validate("", &[], "/my/path/file.${chunk_id}.log", Ok(()));
    }
}
