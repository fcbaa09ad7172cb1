//! Walks every config in `shared/testdata/real-configs` (entry files from `sources.json`)
//! and asserts each either parses and checks cleanly, or fails with the located error this
//! table expects.

use std::path::{Path, PathBuf};

use nagare_config::{ErrorKind, MapEnvironment};

/// Configs that must fail, why, and where: (entry file, kind, message fragment, file suffix, line).
const EXPECTED_FAILURES: &[(&str, ErrorKind, &str, &str, u32)] = &[
    // `ENV[...] || https://#{...}` is not even valid Ruby (unquoted URL): Fluentd fails too.
    (
        "018-k8s-daemonset-v1.4-kafka-include-dir/fluent.conf",
        ErrorKind::EmbeddedRuby,
        "unsupported embedded Ruby",
        "018-k8s-daemonset-v1.4-kafka-include-dir/kubernetes.conf",
        191,
    ),
    // Assignments, IPAddr, `rescue`: beyond the safe subset (in an included file).
    (
        "019-k8s-daemonset-v1.19-es8-include-dir/fluent.conf",
        ErrorKind::EmbeddedRuby,
        "unsupported embedded Ruby",
        "019-k8s-daemonset-v1.19-es8-include-dir/kubernetes.conf",
        30,
    ),
    // `if (val = ENV.fetch(...)) && (val.length > 0); ...; end`: beyond the safe subset.
    (
        "020-openshift-origin-logging-include-dir/fluent.conf",
        ErrorKind::EmbeddedRuby,
        "unsupported embedded Ruby",
        "configs.d/openshift/input-pre-systemd.conf",
        5,
    ),
    // Two <match> sections share `@id stdout_output`: Fluentd refuses it too.
    (
        "035-juniper-open-nti-udp-telemetry.conf",
        ErrorKind::Semantic,
        "Duplicated plugin id `stdout_output`",
        "035-juniper-open-nti-udp-telemetry.conf",
        196,
    ),
    // Fluentd's example of `"#{test}"` (Kernel#test without arguments fails in Ruby too).
    (
        "039-fluentd-example-v1-literals.conf",
        ErrorKind::EmbeddedRuby,
        "unsupported embedded Ruby `test`",
        "039-fluentd-example-v1-literals.conf",
        22,
    ),
    // A <match> that is never closed.
    (
        "041-chenyexin-unclosed-match.conf",
        ErrorKind::Syntax,
        "expected end tag '</match>' but got end of file",
        "041-chenyexin-unclosed-match.conf",
        87,
    ),
    // v0-only syntax: `aws_key_id {AWS_ACCESS_KEY_ID}` starts a (broken) JSON hash in v1.
    (
        "043-akca-braces-v0-only.conf",
        ErrorKind::Syntax,
        "got incomplete JSON hash configuration",
        "043-akca-braces-v0-only.conf",
        26,
    ),
    // Backticks run a shell command: never evaluated.
    (
        "049-pws-dark-td-agent-backticks.conf",
        ErrorKind::EmbeddedRuby,
        "unsupported embedded Ruby",
        "049-pws-dark-td-agent-backticks.conf",
        28,
    ),
    // An absolute include of a file that only exists in the original container image
    // (Fluentd silently skips it; nagare reports it).
    (
        "055-sumologic-abs-include.conf",
        ErrorKind::Include,
        "include file not found: /fluentd/conf.d/out.sumo.conf",
        "055-sumologic-abs-include.conf",
        6,
    ),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/real-configs")
}

/// The entry files named by `sources.json`.
fn entries(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("sources.json")).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    json.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["file"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn real_configs_parse_or_fail_as_expected() {
    let dir = corpus_dir();
    if !dir.join("sources.json").exists() {
        println!(
            "note: {} is absent; skipping the real-config corpus",
            dir.display()
        );
        return;
    }
    let env = MapEnvironment::new().with_hostname("testhost");
    let files = entries(&dir);
    assert!(
        files.len() >= 60,
        "sources.json lists {} configs",
        files.len()
    );
    let mut problems = Vec::new();
    for file in &files {
        let path = dir.join(file);
        let result = nagare_config::parse_file_with(&path, &env)
            .and_then(|p| nagare_config::check(&p.root).map(|w| (p, w)));
        let expected = EXPECTED_FAILURES.iter().find(|f| f.0 == file);
        match (result, expected) {
            (Ok(_), None) => {}
            (Ok(_), Some(f)) => {
                problems.push(format!("{file}: parsed, but expected failure {:?}", f.2))
            }
            (Err(e), None) => problems.push(format!("{file}: unexpected error\n{e}")),
            (Err(e), Some(&(_, kind, msg, suffix, line))) => {
                let loc = e.location();
                if e.kind() != kind
                    || !e.message().contains(msg)
                    || !loc.file.to_string_lossy().ends_with(suffix)
                    || loc.line != line
                {
                    problems.push(format!(
                        "{file}: expected {kind:?} {msg:?} at {suffix}:{line}, got {:?}\n{e}",
                        e.kind()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    let failing = EXPECTED_FAILURES
        .iter()
        .filter(|f| files.iter().any(|x| x == f.0))
        .count();
    println!(
        "{} configs: {} parse and check, {failing} fail as expected",
        files.len(),
        files.len() - failing
    );
}
