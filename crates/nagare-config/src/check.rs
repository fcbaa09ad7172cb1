//! Start-up checks Fluentd applies after parsing (`root_agent.rb`, `agent.rb`, `label.rb`,
//! `plugin_id.rb`, `output.rb`), with Fluentd's messages where it has one.
//!
//! Decisions worth knowing:
//! - `<match>`/`<filter>` with an empty argument is accepted and matches `**`, as Fluentd's
//!   `agent.rb` does (see [`Element::pattern`]).
//! - `<worker N>` contents count as top-level directives (Fluentd splices them in).
//! - A `@label` naming `@ROOT` is valid (Fluentd ≥ 1.14 routes it to the top-level router).

use std::collections::HashMap;

use crate::element::Element;
use crate::error::{ConfigError, ErrorKind, Warning};
use crate::location::Location;
use crate::types::ruby_to_i;

const PLUGIN_DIRECTIVES: [&str; 3] = ["source", "match", "filter"];

fn err(location: &Location, message: impl Into<String>, hint: impl Into<String>) -> ConfigError {
    ConfigError::new(ErrorKind::Semantic, location.clone(), message, hint)
}

/// Checks `root` the way Fluentd does at start-up. Returns warnings for deprecated or
/// suspicious forms; the first violated rule is an error.
pub fn check(root: &Element) -> Result<Vec<Warning>, ConfigError> {
    let mut warnings = Vec::new();
    let workers = root
        .children("system")
        .filter_map(|s| s.get("workers"))
        .last()
        .map_or(1, ruby_to_i);

    // <worker> sections, then the directives they contain join the top level.
    let mut top: Vec<&Element> = Vec::new();
    let mut used_ids: Vec<i64> = Vec::new();
    for e in &root.elements {
        if e.name == "worker" {
            check_worker(e, workers, &mut used_ids)?;
            top.extend(e.elements.iter());
        } else {
            top.push(e);
        }
    }

    // Labels first, so references can be resolved.
    let mut labels: HashMap<&str, &Element> = HashMap::new();
    for label in top.iter().filter(|e| e.name == "label") {
        let name = label.arg.as_str();
        if name.is_empty() {
            return Err(err(
                &label.location,
                "Missing symbol argument on <label> directive",
                "name the label, e.g. '<label @mylabel>'",
            ));
        }
        if name == "@ROOT" {
            return Err(err(
                &label.location,
                "@ROOT for <label> is not permitted, reserved for getting root router",
                "choose another label name; '@label @ROOT' already routes back to the top level",
            ));
        }
        if let Some(first) = labels.insert(name, label) {
            return Err(err(
                &label.location,
                format!("Section <label {name}> appears twice"),
                format!(
                    "the first <label {name}> is at {}; merge the two sections",
                    first.location
                ),
            ));
        }
    }

    for e in &top {
        match e.name.as_str() {
            "source" => require_type(e, &mut warnings)?,
            "match" | "filter" => {
                require_type(e, &mut warnings)?;
                if e.name == "match"
                    && e.pattern()
                        .split_whitespace()
                        .any(|p| p == "fluent.**" || p.starts_with("fluent."))
                {
                    warnings.push(Warning {
                        location: e.location.clone(),
                        message: "define <match fluent.**> to capture fluentd logs in top level is deprecated. Use <label @FLUENT_LOG> instead".into(),
                    });
                }
            }
            "label" => {
                if e.children("match").next().is_none() {
                    return Err(err(
                        &e.location,
                        format!("Missing <match> sections in <label {}> section", e.arg),
                        "add a <match> inside the label, or remove the label",
                    ));
                }
                for child in &e.elements {
                    match child.name.as_str() {
                        "match" | "filter" => require_type(child, &mut warnings)?,
                        "source" => warnings.push(Warning {
                            location: child.location.clone(),
                            message: format!("<source> inside <label {}> is ignored; put it at top level with '@label {}'", e.arg, e.arg),
                        }),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    let mut ids: HashMap<String, Location> = HashMap::new();
    walk(root, 0, &mut |e, depth| {
        check_element(e, depth, &labels, &mut ids, &mut warnings)
    })?;
    warn_fractional_times(root, &mut warnings);
    Ok(warnings)
}

/// The unit a value like `0.2s` carries (`s`, `m`, `h` or `d`) when it is a decimal
/// fraction followed by a time unit: Fluentd reads the digits right before the unit
/// (unanchored `/([0-9]+)s/`), so `0.2s` is 2 seconds and `1.5h` is 5 hours.
fn fractional_time_unit(value: &str) -> Option<char> {
    let v = value.trim();
    let unit = v
        .chars()
        .last()
        .filter(|c| matches!(c, 's' | 'm' | 'h' | 'd'))?;
    let number = v.get(..v.len() - 1)?;
    let (int, frac) = number.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(int) && digits(frac)).then_some(unit)
}

/// Warns about every parameter written like `0.2s` (see [`fractional_time_unit`]): nagare
/// reads it as Fluentd does, which is rarely what the author meant.
fn warn_fractional_times(e: &Element, warnings: &mut Vec<Warning>) {
    for a in &e.attrs {
        let Some(v) = a.value.as_str() else { continue };
        if let Some(unit) = fractional_time_unit(v) {
            let v = v.trim();
            let read_as = crate::types::parse_time(v, false).unwrap_or_default();
            // The unit's length in seconds, as the type itself reads "1s", "1m", ...
            let unit_secs = crate::types::parse_time(&format!("1{unit}"), true).unwrap_or(1.0);
            let meant = v
                .get(..v.len() - 1)
                .and_then(|n| n.parse::<f64>().ok())
                .map_or(0.0, |n| n * unit_secs);
            warnings.push(Warning {
                location: a.location.clone(),
                message: format!(
                    "{} {v}: a time with a fraction before its unit is read as Fluentd reads it, by the digits next to the unit ({read_as} seconds here); write {meant} for {meant} seconds",
                    a.key
                ),
            });
        }
    }
    for child in &e.elements {
        warn_fractional_times(child, warnings);
    }
}

fn walk<'a>(
    e: &'a Element,
    depth: usize,
    f: &mut dyn FnMut(&'a Element, usize) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    f(e, depth)?;
    for child in &e.elements {
        walk(child, depth + 1, f)?;
    }
    Ok(())
}

fn require_type(e: &Element, warnings: &mut Vec<Warning>) -> Result<(), ConfigError> {
    if e.get("@type").is_some() {
        return Ok(());
    }
    if let Some(a) = e.attr("type").filter(|a| a.value.as_str().is_some()) {
        warnings.push(Warning {
            location: a.location.clone(),
            message: format!(
                "'type' is the deprecated v0.12 spelling in <{}>; use '@type'",
                e.name
            ),
        });
        return Ok(());
    }
    Err(err(
        &e.location,
        format!("Missing '@type' parameter on <{}> directive", e.name),
        format!("add '@type <plugin>' inside <{} {}>", e.name, e.arg),
    ))
}

fn check_element(
    e: &Element,
    depth: usize,
    labels: &HashMap<&str, &Element>,
    ids: &mut HashMap<String, Location>,
    warnings: &mut Vec<Warning>,
) -> Result<(), ConfigError> {
    if depth == 0 {
        return Ok(());
    }
    // Plugin ids: @id anywhere, legacy `id` on the plugin directives only.
    let id_attr = e.attr("@id").or_else(|| {
        PLUGIN_DIRECTIVES
            .contains(&e.name.as_str())
            .then(|| e.attr("id"))
            .flatten()
    });
    if let Some(a) = id_attr {
        if let Some(id) = a.value.as_str() {
            if let Some(first) = ids.get(id) {
                return Err(err(
                    &a.location,
                    format!("Duplicated plugin id `{id}`. Check whole configuration and fix it."),
                    format!("the id is first used at {first}; give each plugin a unique @id"),
                ));
            }
            ids.insert(id.to_string(), a.location.clone());
        }
    }
    if let Some(a) = e.attr("@label") {
        if let Some(name) = a.value.as_str() {
            if name != "@ROOT" && !labels.contains_key(name) {
                let known: Vec<&str> = labels.keys().copied().collect();
                return Err(err(
                    &a.location,
                    format!("{name} label not found"),
                    if known.is_empty() {
                        format!("define '<label {name}>' with a <match> inside")
                    } else {
                        format!(
                            "define '<label {name}>' or use one of: {}",
                            sorted(known).join(", ")
                        )
                    },
                ));
            }
        }
    }
    for legacy in ["id", "log_level"] {
        if PLUGIN_DIRECTIVES.contains(&e.name.as_str()) {
            if let Some(a) = e.attr(legacy) {
                warnings.push(Warning {
                    location: a.location.clone(),
                    message: format!(
                        "'{legacy}' is the deprecated v0.12 spelling in <{}>; use '@{legacy}'",
                        e.name
                    ),
                });
            }
        }
    }
    match e.name.as_str() {
        "buffer" => check_buffer(e)?,
        "secondary" => {
            for inner in ["buffer", "secondary"] {
                if let Some(child) = e.children(inner).next() {
                    return Err(err(
                        &child.location,
                        format!("<secondary> section cannot have <{inner}> section"),
                        "the secondary output reuses the primary's buffer; remove this section",
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn sorted(mut v: Vec<&str>) -> Vec<&str> {
    v.sort_unstable();
    v
}

fn check_buffer(e: &Element) -> Result<(), ConfigError> {
    let keys: Vec<&str> = e
        .arg
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .collect();
    if keys.contains(&"time") {
        match e.attr("timekey") {
            None => {
                return Err(err(
                    &e.location,
                    format!(
                        "<buffer {}> argument includes 'time', but timekey is not configured",
                        e.arg
                    ),
                    "add 'timekey 1h' (or another interval) inside the <buffer> section",
                ));
            }
            Some(a) => {
                if let Some(v) = a.value.as_str() {
                    if crate::types::parse_time(v, false).is_ok_and(|t| t <= 0.0) {
                        return Err(err(
                            &a.location,
                            format!("timekey should be greater than 0. current timekey: {v}"),
                            "set timekey to a positive interval such as 1h",
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

fn check_worker(e: &Element, workers: i64, used: &mut Vec<i64>) -> Result<(), ConfigError> {
    let arg = e.arg.trim();
    if arg.is_empty() {
        return Err(err(
            &e.location,
            "Missing worker id on <worker> directive",
            "write '<worker 0>' or '<worker 0-1>'",
        ));
    }
    let max = workers - 1;
    let range_hint = format!("<system> sets workers {workers}, so worker ids run from 0 to {max}");
    let ids: Vec<i64> = match arg.split_once('-') {
        Some((first, last)) => {
            let (first, last) = (ruby_to_i(first), ruby_to_i(last));
            if first > last {
                return Err(err(
                    &e.location,
                    format!(
                        "greater first_worker_id<{first}> than last_worker_id<{last}> specified by <worker> directive is not allowed. Available multi worker assign syntax is <smaller_worker_id>-<greater_worker_id>"
                    ),
                    "write the range as <smaller>-<greater>",
                ));
            }
            (first..=last).collect()
        }
        None => vec![ruby_to_i(arg)],
    };
    let is_range = arg.contains('-');
    for id in ids {
        if id < 0 || id > max {
            return Err(err(
                &e.location,
                format!(
                    "worker id {id} specified by <worker> directive is not allowed. Available worker id is between 0 and {max}"
                ),
                range_hint.clone(),
            ));
        }
        if is_range {
            if used.contains(&id) {
                let available: Vec<String> = (0..workers)
                    .filter(|w| !used.contains(w))
                    .map(|w| w.to_string())
                    .collect();
                return Err(err(
                    &e.location,
                    format!(
                        "specified worker_id<{id}> collisions is detected on <worker> directive. Available worker id(s): [{}]",
                        available.join(", ")
                    ),
                    "each worker id may appear in one <worker> range only",
                ));
            }
            used.push(id);
        }
    }
    for child in &e.elements {
        if !["source", "match", "filter", "label"].contains(&child.name.as_str()) {
            return Err(err(
                &child.location,
                format!("<worker> section cannot have <{}> directive", child.name),
                "only <source>, <match>, <filter> and <label> may appear inside <worker>",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::MapEnvironment;
    use std::path::Path;

    fn run(text: &str) -> Result<Vec<Warning>, ConfigError> {
        let root = crate::parse_str_with(
            text,
            Path::new("/nonexistent/check.conf"),
            &MapEnvironment::new(),
        )
        .unwrap_or_else(|e| panic!("parse failed:\n{e}"));
        check(&root)
    }

    /// `Ok(n)` = passes with n warnings; `Err((message part, line))`.
    type Expect = Result<usize, (&'static str, u32)>;

    fn check_case(text: &str, expect: Expect) {
        match (run(text), expect) {
            (Ok(w), Ok(n)) => assert_eq!(w.len(), n, "{text}\nwarnings: {w:?}"),
            (Err(e), Err((msg, line))) => {
                assert!(e.message().contains(msg), "{text}\n{e}\nlacks {msg:?}");
                assert_eq!(e.location().line, line, "{text}\n{e}");
                assert_eq!(e.kind(), ErrorKind::Semantic);
            }
            (got, want) => panic!("{text}\n got {got:?}\nwant {want:?}"),
        }
    }

    #[test]
    fn fractional_time_values_are_warned_about() {
        assert_eq!(fractional_time_unit("0.2s"), Some('s'));
        assert_eq!(fractional_time_unit(" 1.5h "), Some('h'));
        assert_eq!(fractional_time_unit("2s"), None);
        assert_eq!(fractional_time_unit("0.2"), None);
        assert_eq!(fractional_time_unit(".2s"), None);
        assert_eq!(fractional_time_unit("v1.2s"), None);
        assert_eq!(fractional_time_unit("1.2.3s"), None);
        let w = run("<match **>\n  @type null\n  <buffer>\n    flush_interval 0.5s\n  </buffer>\n</match>\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].location.line, 4);
        assert!(
            w[0].message.contains("flush_interval 0.5s"),
            "{}",
            w[0].message
        );
        assert!(
            w[0].message.contains("(5 seconds here)"),
            "{}",
            w[0].message
        );
        assert!(
            w[0].message.contains("write 0.5 for 0.5 seconds"),
            "{}",
            w[0].message
        );
        check_case(
            "<match **>\n  @type null\n  flush_interval 0.5\n</match>\n",
            Ok(0),
        );
    }

    #[test]
    fn directives_need_a_type() {
        let cases: &[(&str, Expect)] = &[
            (
                "<source>\n @type forward\n</source>\n<match **>\n @type stdout\n</match>\n",
                Ok(0),
            ),
            (
                "<source>\n port 1\n</source>\n",
                Err(("Missing '@type' parameter on <source> directive", 1)),
            ),
            (
                "\n<match a>\n</match>\n",
                Err(("Missing '@type' parameter on <match> directive", 2)),
            ),
            (
                "<filter a>\n</filter>\n",
                Err(("Missing '@type' parameter on <filter> directive", 1)),
            ),
            ("<source>\n type forward\n</source>\n", Ok(1)), // legacy spelling warns
            ("<match>\n @type null\n</match>\n", Ok(0)),     // empty pattern means **
            (
                "<label @A>\n<match>\n</match>\n</label>\n",
                Err(("Missing '@type' parameter on <match> directive", 2)),
            ),
            ("<match fluent.**>\n @type stdout\n</match>\n", Ok(1)),
        ];
        for (text, expect) in cases {
            check_case(text, *expect);
        }
    }

    #[test]
    fn labels() {
        let m = "<match **>\n @type null\n</match>\n";
        let cases: Vec<(String, Expect)> = vec![
            (
                format!("<label>\n{m}</label>\n"),
                Err(("Missing symbol argument on <label> directive", 1)),
            ),
            (
                format!("<label @ROOT>\n{m}</label>\n"),
                Err(("@ROOT for <label> is not permitted", 1)),
            ),
            (
                format!("<label @A>\n{m}</label>\n<label @A>\n{m}</label>\n"),
                Err(("Section <label @A> appears twice", 6)),
            ),
            (
                "<label @A>\n</label>\n".to_string(),
                Err(("Missing <match> sections in <label @A> section", 1)),
            ),
            (
                "<source>\n @type forward\n @label @NOPE\n</source>\n".to_string(),
                Err(("@NOPE label not found", 3)),
            ),
            (
                format!(
                    "<source>\n @type forward\n @label @A\n</source>\n<label @A>\n{m}</label>\n"
                ),
                Ok(0),
            ),
            (
                format!("<match x>\n @type relabel\n @label @ROOT\n</match>\n{m}"),
                Ok(0),
            ),
            (
                format!(
                    "<match x>\n @type copy\n <store>\n  @type relabel\n  @label @B\n </store>\n</match>\n<label @A>\n{m}</label>\n"
                ),
                Err(("@B label not found", 5)),
            ),
            (
                format!("<label @A>\n<source>\n @type x\n</source>\n{m}</label>\n"),
                Ok(1),
            ),
        ];
        for (text, expect) in cases {
            check_case(&text, expect);
        }
    }

    #[test]
    fn plugin_ids_are_unique() {
        check_case(
            "<source>\n @type a\n @id x\n</source>\n<match **>\n @type b\n @id x\n</match>\n",
            Err((
                "Duplicated plugin id `x`. Check whole configuration and fix it.",
                7,
            )),
        );
        check_case(
            "<match **>\n @type copy\n @id c\n <store>\n  @type null\n  @id c\n </store>\n</match>\n",
            Err(("Duplicated plugin id `c`", 6)),
        );
        // `id` inside a <record> is a record field, not a plugin id.
        check_case(
            "<filter **>\n @type record_transformer\n @id f\n <record>\n  id f\n </record>\n</filter>\n",
            Ok(0),
        );
    }

    #[test]
    fn buffers_and_secondaries() {
        let cases: &[(&str, Expect)] = &[
            (
                "<match **>\n @type file\n <buffer tag, time>\n </buffer>\n</match>\n",
                Err((
                    "<buffer tag, time> argument includes 'time', but timekey is not configured",
                    3,
                )),
            ),
            (
                "<match **>\n @type file\n <buffer time>\n  timekey 1h\n </buffer>\n</match>\n",
                Ok(0),
            ),
            (
                "<match **>\n @type file\n <buffer time>\n  timekey 0\n </buffer>\n</match>\n",
                Err(("timekey should be greater than 0", 4)),
            ),
            (
                "<match **>\n @type file\n <buffer timestamp>\n </buffer>\n</match>\n",
                Ok(0),
            ),
            (
                "<match **>\n @type forward\n <secondary>\n  @type file\n  <buffer>\n  </buffer>\n </secondary>\n</match>\n",
                Err(("<secondary> section cannot have <buffer> section", 5)),
            ),
        ];
        for (text, expect) in cases {
            check_case(text, *expect);
        }
    }

    #[test]
    fn workers() {
        let sys = "<system>\n workers 4\n</system>\n";
        let src = "<source>\n @type sample\n</source>\n";
        let cases: Vec<(String, Expect)> = vec![
            (
                format!("{sys}<worker 0>\n{src}</worker>\n<worker 1-3>\n{src}</worker>\n"),
                Ok(0),
            ),
            (
                format!("{sys}<worker 4>\n{src}</worker>\n"),
                Err((
                    "worker id 4 specified by <worker> directive is not allowed. Available worker id is between 0 and 3",
                    4,
                )),
            ),
            (
                format!("<worker 1>\n{src}</worker>\n"),
                Err(("Available worker id is between 0 and 0", 1)),
            ),
            (
                format!("{sys}<worker 3-1>\n{src}</worker>\n"),
                Err(("greater first_worker_id<3> than last_worker_id<1>", 4)),
            ),
            (
                format!("{sys}<worker 0-2>\n{src}</worker>\n<worker 2-3>\n{src}</worker>\n"),
                Err(("specified worker_id<2> collisions is detected", 9)),
            ),
            (
                format!("{sys}<worker>\n{src}</worker>\n"),
                Err(("Missing worker id on <worker> directive", 4)),
            ),
            (
                format!("{sys}<worker 0>\n<system>\n</system>\n</worker>\n"),
                Err(("<worker> section cannot have <system> directive", 5)),
            ),
            (
                format!("{sys}<worker 0>\n<source>\n</source>\n</worker>\n"),
                Err(("Missing '@type' parameter on <source> directive", 5)),
            ),
        ];
        for (text, expect) in cases {
            check_case(&text, expect);
        }
    }

    #[test]
    fn nested_unknown_at_params_warn_through_parse() {
        let parsed = crate::parse_str_with_warnings(
            "<match **>\n @type copy\n <store>\n  @type null\n  @weird 1\n </store>\n</match>\n",
            Path::new("/nonexistent/w.conf"),
            &MapEnvironment::new(),
        )
        .expect("parses");
        assert_eq!(parsed.warnings.len(), 1);
        assert!(check(&parsed.root).is_ok());
    }
}
