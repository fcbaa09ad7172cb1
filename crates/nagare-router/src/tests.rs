//! Routing tables built from real configuration text: table-driven cases, cases ported from
//! Fluentd's test_event_router.rb and test_root_agent.rb, explain output and concurrency.

use std::path::Path;
use std::sync::Arc;

use nagare_config::{Attr, Element, Location, Value};

use super::*;

fn parse(conf: &str) -> Element {
    match nagare_config::parse_str(conf, Path::new("test.conf")) {
        Ok(root) => root,
        Err(e) => panic!("test config does not parse: {e}\n{conf}"),
    }
}

fn table(conf: &str) -> RoutingTable {
    table_for(conf, BuildOptions::default())
}

fn table_for(conf: &str, options: BuildOptions) -> RoutingTable {
    match RoutingTable::build_with(&parse(conf), options) {
        Ok(t) => t,
        Err(e) => panic!("table does not build: {e}\n{conf}"),
    }
}

fn build_err(conf: &str) -> RouterError {
    match RoutingTable::build(&parse(conf)) {
        Ok(t) => panic!("expected an error, built {t:?}\n{conf}"),
        Err(e) => e,
    }
}

/// A directive's name in expectations: its `@id`, else `type@line`.
fn name(d: &Directive) -> String {
    d.id.clone()
        .unwrap_or_else(|| format!("{}@{}", d.type_name, d.location().line))
}

fn describe_target(t: &RoutingTable, target: &Target) -> String {
    match target {
        Target::Output(id) => t.output(*id).map_or("?".to_owned(), name),
        Target::Relabel(label) => format!("relabel({})", t.label_name(*label)),
        Target::Copy { stores, .. } => {
            let inner: Vec<String> = stores
                .iter()
                .map(|s| {
                    let mut d = describe_target(t, &s.target);
                    if s.ignore_error {
                        d.push_str("!e");
                    }
                    if s.ignore_if_prev_success {
                        d.push_str("!p");
                    }
                    d
                })
                .collect();
            format!("copy[{}]", inner.join(","))
        }
    }
}

/// `"f1,f2 -> o1"`, `"-> none"`: the filters by name, then the target.
fn describe(t: &RoutingTable, route: &Route) -> String {
    let filters: Vec<String> = route
        .filters
        .iter()
        .map(|id| t.filter(*id).map_or("?".to_owned(), name))
        .collect();
    let target = route
        .target
        .as_ref()
        .map_or("none".to_owned(), |tg| describe_target(t, tg));
    format!("{} -> {}", filters.join(","), target)
        .trim_start()
        .to_owned()
}

/// `check(conf, [(label, tag, expect)])`: routes each tag in a label (`"@ROOT"` = top level).
#[track_caller]
fn check(conf: &str, cases: &[(&str, &str, &str)]) {
    let t = table(conf);
    check_table(&t, cases);
}

#[track_caller]
fn check_table(t: &RoutingTable, cases: &[(&str, &str, &str)]) {
    for &(label, tag, expect) in cases {
        let Some(l) = t.label_by_name(label) else {
            panic!("no label {label}");
        };
        let got = describe(t, &t.route(l, tag));
        assert_eq!(got, expect, "label {label} tag {tag:?}");
    }
}

const FILTERS_AROUND_MATCH: &str = r#"
<filter a.**>
  @type grep
  @id f1
</filter>
<match a.b>
  @type stdout
  @id o1
</match>
<filter a.**>
  @type record_transformer
  @id f2
</filter>
<filter x.**>
  @type grep
  @id f3
</filter>
<match a.** b.*>
  @type file
  @id o2
</match>
"#;

#[test]
fn filters_apply_until_the_first_match() {
    check(
        FILTERS_AROUND_MATCH,
        &[
            ("@ROOT", "a.b", "f1 -> o1"),
            ("@ROOT", "a.c", "f1,f2 -> o2"),
            ("@ROOT", "a", "f1,f2 -> o2"),
            ("@ROOT", "b.x", "-> o2"),
            ("@ROOT", "x.y", "f3 -> none"),
            ("@ROOT", "zzz", "-> none"),
        ],
    );
}

#[test]
fn empty_pattern_means_everything() {
    check(
        "<filter>\n  @type grep\n  @id f\n</filter>\n<match>\n  @type null\n  @id o\n</match>\n",
        &[("@ROOT", "", "f -> o"), ("@ROOT", "any.tag", "f -> o")],
    );
}

const LABELS: &str = r#"
<source>
  @type forward
  @id in_fwd
</source>
<source>
  @type tail
  @label @APP
</source>
<match fluent.**>
  @type null
  @id root_fluent
</match>
<match app.**>
  @type relabel
  @label @APP
</match>
<match **>
  @type stdout
  @id root_all
</match>
<label @APP>
  <filter **>
    @type grep
    @id app_filter
  </filter>
  <match app.back>
    @type relabel
    @label @ROOT
  </match>
  <match app.**>
    @type file
    @id app_out
  </match>
</label>
<label @ERROR>
  <match **>
    @type file
    @id error_out
  </match>
</label>
"#;

#[test]
fn labels_relabel_and_root() {
    let t = table(LABELS);
    check_table(
        &t,
        &[
            ("@ROOT", "fluent.info", "-> root_fluent"),
            ("@ROOT", "app.x", "-> relabel(@APP)"),
            ("@ROOT", "other", "-> root_all"),
            ("@APP", "app.x", "app_filter -> app_out"),
            ("@APP", "app.back", "app_filter -> relabel(@ROOT)"),
            ("@APP", "nope", "app_filter -> none"),
            ("@ERROR", "anything", "-> error_out"),
        ],
    );
    let sources: Vec<(&str, &str)> = t
        .sources()
        .iter()
        .map(|s| (s.type_name.as_str(), t.label_name(s.label)))
        .collect();
    assert_eq!(sources, [("forward", "@ROOT"), ("tail", "@APP")]);
    assert_eq!(t.error_label(), t.label_by_name("@ERROR"));
    assert!(t.error_label().is_some());
    assert_eq!(t.fluent_log_label(), None);
    assert_eq!(t.label_by_name("@ROOT"), Some(LabelRef::Root));
    let outputs: Vec<String> = t.outputs().map(name).collect();
    assert_eq!(outputs, ["root_fluent", "root_all", "app_out", "error_out"]);
    let filters: Vec<(String, LabelRef)> = t.filters().map(|d| (name(d), d.label)).collect();
    assert_eq!(filters, [("app_filter".to_owned(), LabelRef::Named(0))]);
}

#[test]
fn fluent_log_label_suppresses_no_match() {
    let t = table(
        "<label @FLUENT_LOG>\n  <match fluent.warn>\n    @type stdout\n  </match>\n</label>\n",
    );
    let l = t.fluent_log_label();
    assert!(l.is_some());
    assert!(t.labels().iter().all(Label::suppresses_no_match));
}

const COPY: &str = r#"
<match copy.**>
  @type copy
  copy_mode deep
  <store>
    @type file
    @id s1
  </store>
  <store ignore_error>
    @type relabel
    @label @X
  </store>
  <store ignore_if_prev_success ignore_error>
    @type copy
    <store>
      @type stdout
      @id inner
    </store>
  </store>
</match>
<match legacy>
  @type copy
  deep_copy true
  <store>
    @type null
    @id legacy_store
    ignore_error true
  </store>
</match>
<label @X>
  <match **>
    @type null
    @id x_out
  </match>
</label>
"#;

#[test]
fn copy_stores_are_targets_and_outputs() {
    let t = table(COPY);
    check_table(
        &t,
        &[
            (
                "@ROOT",
                "copy.a",
                "-> copy[s1,relabel(@X)!e,copy[inner]!e!p]",
            ),
            ("@ROOT", "legacy", "-> copy[legacy_store!e]"),
        ],
    );
    let route = t.route(LabelRef::Root, "copy.a");
    assert!(matches!(
        route.target,
        Some(Target::Copy {
            copy_mode: CopyMode::Deep,
            ..
        })
    ));
    let legacy = t.route(LabelRef::Root, "legacy");
    assert!(matches!(
        legacy.target,
        Some(Target::Copy {
            copy_mode: CopyMode::Shallow,
            ..
        })
    ));
    let outputs: Vec<(String, DirectiveKind, String)> = t
        .outputs()
        .map(|d| (name(d), d.kind, d.pattern.clone()))
        .collect();
    assert_eq!(
        outputs,
        [
            ("s1".to_owned(), DirectiveKind::Store, "copy.**".to_owned()),
            (
                "inner".to_owned(),
                DirectiveKind::Store,
                "copy.**".to_owned()
            ),
            (
                "legacy_store".to_owned(),
                DirectiveKind::Store,
                "legacy".to_owned()
            ),
            ("x_out".to_owned(), DirectiveKind::Match, "**".to_owned()),
        ]
    );
    let warned = t
        .warnings()
        .iter()
        .any(|w| w.message.contains("ignore_errors"));
    assert!(warned, "all stores ignore_error: Fluentd warns");
}

const WORKERS: &str = r#"
<system>
  workers 3
</system>
<worker 0>
  <match w.**>
    @type stdout
    @id w0_out
  </match>
  <source>
    @type tail
    @id w0_src
  </source>
</worker>
<worker 1-2>
  <label @ONLY12>
    <match **>
      @type null
      @id only12
    </match>
  </label>
  <source>
    @type forward
    @label @ONLY12
  </source>
</worker>
<match w.x>
  @type file
  @id top
</match>
"#;

#[test]
fn worker_sections_apply_to_their_workers_after_the_top_level() {
    let w0 = table_for(WORKERS, BuildOptions::default());
    // Fluentd appends <worker> children after the top-level directives (`conf += e`).
    check_table(
        &w0,
        &[("@ROOT", "w.x", "-> top"), ("@ROOT", "w.y", "-> w0_out")],
    );
    assert_eq!(w0.sources().len(), 1);
    assert_eq!(w0.label_by_name("@ONLY12"), None);

    let w2 = table_for(
        WORKERS,
        BuildOptions {
            worker_id: 2,
            workers: None,
        },
    );
    check_table(
        &w2,
        &[("@ROOT", "w.y", "-> none"), ("@ONLY12", "z", "-> only12")],
    );
    assert_eq!(
        w2.sources().first().map(|s| s.label),
        w2.label_by_name("@ONLY12")
    );
}

/// `check_err(conf, expect)`: the build fails, and the message contains `expect`.
#[track_caller]
fn check_err(conf: &str, expect: &str) {
    let err = build_err(conf);
    let text = err.to_string();
    assert!(text.contains(expect), "error {text:?} lacks {expect:?}");
    assert!(
        text.starts_with("test.conf:"),
        "error {text:?} lacks a location"
    );
}

#[test]
fn configuration_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "<source>\n  @type tail\n  @label @NOPE\n</source>\n",
            "@NOPE label not found",
        ),
        (
            "<match **>\n  @type relabel\n  @label @NOPE\n</match>\n",
            "@NOPE label not found",
        ),
        (
            "<label>\n  <match **>\n    @type null\n  </match>\n</label>\n",
            "Missing symbol argument on <label> directive",
        ),
        (
            "<label @ROOT>\n  <match **>\n    @type null\n  </match>\n</label>\n",
            "@ROOT for <label> is not permitted",
        ),
        (
            "<label @A>\n  <match **>\n    @type null\n  </match>\n</label>\n\
             <label @A>\n  <match **>\n    @type null\n  </match>\n</label>\n",
            "Section <label @A> appears twice",
        ),
        (
            "<label @A>\n  <filter **>\n    @type grep\n  </filter>\n</label>\n",
            "Missing <match> sections in <label @A> section",
        ),
        (
            "<match a>\n  path x\n</match>\n",
            "Missing '@type' parameter on <match>",
        ),
        (
            "<filter a>\n  k v\n</filter>\n",
            "Missing '@type' parameter on <filter>",
        ),
        (
            "<source>\n  k v\n</source>\n",
            "Missing '@type' parameter on <source>",
        ),
        (
            "<match /a>\n  @type null\n</match>\n",
            "must start and end with `/`",
        ),
        (
            "<match **>\n  @type copy\n</match>\n",
            "'<store>' sections are required",
        ),
        (
            "<match **>\n  @type copy\n  <store ignore_if_prev_success>\n    @type null\n  </store>\n</match>\n",
            "ignore_if_prev_success must specify 2nd or later",
        ),
        (
            "<match **>\n  @type copy\n  copy_mode wide\n  <store>\n    @type null\n  </store>\n</match>\n",
            "but got wide",
        ),
        (
            "<match **>\n  @type copy\n  <store>\n    k v\n  </store>\n</match>\n",
            "Missing '@type' parameter on <store>",
        ),
    ];
    for &(conf, expect) in cases {
        check_err(conf, expect);
    }
}

#[test]
fn worker_errors_ported_from_test_root_agent() {
    let cases: &[(&str, &str)] = &[
        (
            "<worker>\n  <source>\n    @type dummy\n  </source>\n</worker>\n",
            "Missing worker id on <worker> directive",
        ),
        (
            "<system>\n  workers 2\n</system>\n<worker 2>\n  <source>\n    @type dummy\n  </source>\n</worker>\n",
            "worker2 specified by <worker> directive is not allowed. Available worker id is between 0 and 1",
        ),
        (
            "<system>\n  workers 4\n</system>\n<worker 3-1>\n  <source>\n    @type dummy\n  </source>\n</worker>\n",
            "greater first_worker_id<3> than last_worker_id<1>",
        ),
        (
            "<system>\n  workers 4\n</system>\n<worker 0-2>\n  <source>\n    @type dummy\n  </source>\n</worker>\n\
             <worker 2-3>\n  <source>\n    @type dummy\n  </source>\n</worker>\n",
            "specified worker_id<2> collisions is detected",
        ),
        (
            "<system>\n  workers 2\n</system>\n<worker 0-2>\n  <source>\n    @type dummy\n  </source>\n</worker>\n",
            "worker2 specified by <worker> directive is not allowed",
        ),
        (
            "<worker 0>\n  <system>\n    log_level debug\n  </system>\n</worker>\n",
            "<worker> section cannot have <system> directive",
        ),
    ];
    for &(conf, expect) in cases {
        check_err(conf, expect);
    }
}

#[test]
fn relabel_loops_detected_at_load() {
    let cases: &[(&str, &str)] = &[
        // Into its own label, with or without @label.
        (
            "<match a>\n  @type relabel\n</match>\n<match **>\n  @type null\n</match>\n",
            "@ROOT -> @ROOT",
        ),
        (
            "<match a>\n  @type relabel\n  @label @ROOT\n</match>\n",
            "@ROOT -> @ROOT",
        ),
        (
            "<label @A>\n  <match x>\n    @type relabel\n    @label @A\n  </match>\n  <match **>\n    @type null\n  </match>\n</label>\n",
            "@A -> @A",
        ),
        // Root sends some tags to @A, and @A sends every tag back.
        (
            "<match a.**>\n  @type relabel\n  @label @A\n</match>\n<match **>\n  @type null\n</match>\n\
             <label @A>\n  <match **>\n    @type relabel\n    @label @ROOT\n  </match>\n</label>\n",
            "@ROOT -> @A -> @ROOT",
        ),
        // Through a copy store.
        (
            "<label @A>\n  <match **>\n    @type copy\n    <store>\n      @type relabel\n      @label @B\n    </store>\n  </match>\n</label>\n\
             <label @B>\n  <match **>\n    @type relabel\n    @label @A\n  </match>\n</label>\n",
            "-> @A",
        ),
    ];
    for &(conf, expect) in cases {
        let err = build_err(conf);
        assert!(
            matches!(err, RouterError::RelabelLoop { .. }),
            "expected a loop, got {err}"
        );
        check_err(conf, expect);
    }
}

#[test]
fn conditional_relabel_cycles_are_accepted() {
    let ok = [
        // Two conditional edges: whether a tag loops depends on the tag (here, none does).
        "<match a.**>\n  @type relabel\n  @label @A\n</match>\n<match **>\n  @type null\n</match>\n\
         <label @A>\n  <match b.**>\n    @type relabel\n    @label @ROOT\n  </match>\n  <match **>\n    @type null\n  </match>\n</label>\n",
        // The self relabel is unreachable after `**`.
        "<label @A>\n  <match **>\n    @type null\n  </match>\n  <match x>\n    @type relabel\n    @label @A\n  </match>\n</label>\n",
        // ignore_if_prev_success makes the store edge conditional.
        "<label @A>\n  <match **>\n    @type copy\n    <store>\n      @type null\n    </store>\n    <store ignore_if_prev_success>\n      @type relabel\n      @label @B\n    </store>\n  </match>\n</label>\n\
         <label @B>\n  <match b>\n    @type relabel\n    @label @A\n  </match>\n  <match **>\n    @type null\n  </match>\n</label>\n",
    ];
    for conf in ok {
        let _ = table(conf);
    }
}

#[test]
fn undefined_label_on_other_plugins_is_a_warning() {
    let t = table("<match **>\n  @type rewrite_tag_filter\n  @label @NOPE\n</match>\n");
    assert_eq!(t.outputs().next().and_then(|d| d.emit_label), None);
    assert!(t.warnings().iter().any(|w| w.message.contains("@NOPE")));
}

// Ported from fluentd test/test_event_router.rb.

#[test]
fn event_router_match_and_default_collector() {
    // `match?`: a rule for 'test' matches 'test' only; an unmatched tag goes to the default
    // collector ("no patterns matched").
    check(
        "<match test>\n  @type null\n  @id out\n</match>\n",
        &[("@ROOT", "test", "-> out"), ("@ROOT", "t", "-> none")],
    );
}

#[test]
fn event_router_filter_cases() {
    let conf = r#"
<filter test>
  @type f
  @id f1
</filter>
<filter xxx>
  @type f
  @id unmatched
</filter>
<filter test>
  @type f
  @id f2
</filter>
<match test>
  @type null
  @id out
</match>
<filter test>
  @type f
  @id after
</filter>
"#;
    // Filters apply in order; a filter with an unmatched pattern and one placed after the
    // output are not applied.
    check(conf, &[("@ROOT", "test", "f1,f2 -> out")]);
}

#[test]
fn route_cache_is_bounded_and_consistent() {
    let t = table(FILTERS_AROUND_MATCH);
    let first = t.route(LabelRef::Root, "a.c");
    let again = t.route(LabelRef::Root, "a.c");
    assert!(
        Arc::ptr_eq(&first, &again),
        "a hit returns the cached route"
    );
    for i in 0..3000 {
        let tag = format!("a.t{i}");
        assert_eq!(describe(&t, &t.route(LabelRef::Root, &tag)), "f1,f2 -> o2");
    }
    assert!(t.cached_tags(LabelRef::Root) <= ROUTE_CACHE_CAPACITY);
    assert!(t.cached_tags(LabelRef::Root) >= ROUTE_CACHE_CAPACITY / 2);
    // Evicted or not, the answer is the same.
    assert_eq!(*t.route(LabelRef::Root, "a.c"), *first);
    assert_eq!(t.route(LabelRef::Named(99), "a").target, None);
}

#[test]
fn route_from_many_threads() {
    let t = Arc::new(table(LABELS));
    let tags: Vec<String> = (0..1500)
        .map(|i| match i % 4 {
            0 => format!("app.{i}"),
            1 => format!("fluent.{i}"),
            2 => "app.back".to_owned(),
            _ => format!("x{i}"),
        })
        .collect();
    let expected: Vec<String> = tags
        .iter()
        .map(|tag| {
            let fresh = table(LABELS);
            describe(&fresh, &fresh.route(LabelRef::Root, tag))
        })
        .take(8)
        .collect();
    let handles: Vec<_> = (0..8)
        .map(|n| {
            let t = Arc::clone(&t);
            let tags = tags.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                for round in 0..3 {
                    for (i, tag) in tags.iter().enumerate().skip((n + round) % 7) {
                        let r = t.route(LabelRef::Root, tag);
                        let a = t.route(LabelRef::Named(0), tag);
                        if i < 8 {
                            seen.push((i, describe(&t, &r)));
                        }
                        assert_eq!(a.filters.len(), 1);
                    }
                }
                seen
            })
        })
        .collect();
    for h in handles {
        let seen = match h.join() {
            Ok(s) => s,
            Err(_) => panic!("a routing thread panicked"),
        };
        for (i, got) in seen {
            assert_eq!(Some(&got), expected.get(i));
        }
    }
}

#[test]
fn explain_follows_relabel_and_copy() {
    let conf = r#"
<filter **>
  @type grep
  @id top_filter
</filter>
<match app.**>
  @type copy
  <store>
    @type file
    @id archive
  </store>
  <store>
    @type relabel
    @label @APP
  </store>
</match>
<label @APP>
  <filter app.**>
    @type record_transformer
  </filter>
  <match **>
    @type stdout
    @id app_out
  </match>
</label>
"#;
    let t = table(conf);
    let explained = t.explanation(None, "app.web");
    let json = serde_json::to_value(&explained).ok();
    let expect = serde_json::json!({
        "tag": "app.web",
        "steps": [
            {"kind": "filter", "pattern": "**", "type": "grep", "id": "top_filter", "label": null},
            {"kind": "match", "pattern": "app.**", "type": "copy", "id": null, "label": null},
            {"kind": "store", "pattern": "app.**", "type": "file", "id": "archive", "label": null},
            {"kind": "store", "pattern": "app.**", "type": "relabel", "id": null, "label": null},
            {"kind": "filter", "pattern": "app.**", "type": "record_transformer", "id": null, "label": "@APP"},
            {"kind": "match", "pattern": "**", "type": "stdout", "id": "app_out", "label": "@APP"},
        ]
    });
    assert_eq!(json, Some(expect));
    let lines: Vec<u32> = explained.steps.iter().map(|s| s.location.line).collect();
    assert_eq!(lines, [2, 6, 8, 12, 18, 21]);

    assert_eq!(t.explain(Some("@APP"), "x").len(), 1);
    assert!(t.explain(Some("@NOPE"), "x").is_empty());
    let nothing = t.explanation(None, "other");
    assert_eq!(
        nothing.steps.len(),
        1,
        "only the filter: no patterns matched"
    );
}

#[test]
fn hand_built_elements_work_too() {
    let loc = |line| Location::new(Arc::from(Path::new("mem")), line, 1);
    let attr = |k: &str, v: &str, line| Attr {
        key: k.to_owned(),
        value: Value::Str(v.to_owned()),
        location: loc(line),
    };
    let mut m = Element::new("match", "a.*", loc(2));
    m.attrs.push(attr("@type", "null", 3));
    m.attrs.push(attr("@id", "o", 4));
    let mut root = Element::new("ROOT", "", loc(1));
    root.elements.push(m);
    let t = match RoutingTable::build(&root) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    check_table(&t, &[("@ROOT", "a.b", "-> o"), ("@ROOT", "a", "-> none")]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// A cached answer is the answer: the same tag routed again (possibly after evictions)
    /// and routed by a fresh table agree.
    #[test]
    fn cached_routes_equal_fresh_ones(tags in proptest::collection::vec("(app|fluent|a|b|x)(\\.[abc]{1,2}){0,3}", 1..40)) {
        let shared = table(LABELS);
        let fresh = table(LABELS);
        for tag in &tags {
            for label in [LabelRef::Root, LabelRef::Named(0)] {
                let first = shared.route(label, tag);
                proptest::prop_assert_eq!(&*first, &*fresh.route(label, tag));
                proptest::prop_assert_eq!(&*first, &*shared.route(label, tag));
            }
        }
    }
}
