//! The plugin system end to end: `nagare plugins`, panics inside plugins, files that are not
//! plugins, insecure permissions, and a plugin built out of tree (`examples/out-of-tree-plugin`)
//! loaded with `-p DIR` and `NAGARE_PLUGIN_PATH`.

use crate::forward::{Client, KV, T0, line, message_with_chunk, mp, start};
use crate::harness::{self, Nagare};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `nagare ARGS` with extra environment variables, bounded like `harness::run`.
fn run_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(harness::bin());
    c.args(args)
        .env("TZ", "UTC")
        .env_remove("NAGARE_PLUGIN_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    wait_output(
        c.spawn().expect("start nagare"),
        Duration::from_secs(60),
        "nagare",
    )
}

/// Waits (bounded) for a child and collects its output.
fn wait_output(mut child: std::process::Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "{what} did not finish within {limit:?}:\n{}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

/// A plugin directory only we can write (0755), inside `parent`.
fn plugin_dir(parent: &Path) -> PathBuf {
    let d = parent.join("plugins");
    std::fs::create_dir(&d).expect("plugin dir");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    d
}

/// Copies `src` into `dir` as `name` with `mode`.
fn install(src: &Path, dir: &Path, name: &str, mode: u32) -> PathBuf {
    let dst = dir.join(name);
    std::fs::copy(src, &dst).expect("copy the .so");
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode)).expect("chmod file");
    dst
}

/// The rows of `nagare plugins`: (type, kind, version, file).
fn plugin_rows(stdout: &str) -> Vec<(String, String, String, String)> {
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["TYPE", "KIND", "VERSION", "FILE"], "{stdout}");
    lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 4, "a row of 4 columns: {l:?}");
            (
                f[0].to_string(),
                f[1].to_string(),
                f[2].to_string(),
                f[3].to_string(),
            )
        })
        .collect()
}

fn row(type_name: &str, kind: &str, file: &Path) -> (String, String, String, String) {
    (
        type_name.to_string(),
        kind.to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
        file.display().to_string(),
    )
}

#[test]
fn plugins_lists_the_builtin_plugins_with_kind_version_and_file() {
    let out = run_env(&["plugins"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows = plugin_rows(&text(&out.stdout));
    let t = harness::target_dir();
    for want in [
        row("forward", "input", &t.join("libnagare_in_forward.so")),
        row("stdout", "output", &t.join("libnagare_out_stdout.so")),
        row("null", "output", &t.join("libnagare_out_null.so")),
        row("test_panic", "output", &t.join("libnagare_test_panic.so")),
        row("test_panic", "filter", &t.join("libnagare_test_panic.so")),
    ] {
        assert!(rows.contains(&want), "{want:?} missing from {rows:?}");
    }
    // Sorted by kind (input, filter, output), then name.
    let order: Vec<(u8, String)> = rows
        .iter()
        .map(|(t, k, _, _)| {
            let rank = match k.as_str() {
                "input" => 0,
                "filter" => 1,
                _ => 2,
            };
            (rank, t.clone())
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
}

/// The examples' README and `--help` put the global options first: `nagare -p DIR plugins`.
#[test]
fn global_options_before_the_subcommand() {
    let d = harness::tempdir();
    let dir = plugin_dir(d.path());
    let out = run_env(&["-p", dir.to_str().expect("path"), "plugins"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        plugin_rows(&text(&out.stdout))
            .iter()
            .any(|r| r.0 == "forward")
    );
    let conf = d.path().join("fluent.conf");
    std::fs::write(&conf, "<match **>\n  @type null\n</match>\n").expect("write config");
    let out = run_env(
        &["-q", "-c", conf.to_str().expect("path"), "route", "a.b"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn a_panicking_output_is_logged_and_the_other_outputs_keep_receiving() {
    // root_dir keeps the backup of the rejected chunks inside the test's temp dir.
    let matches = "<system>\n  root_dir {dir}/root\n</system>\n<match **>\n  @type copy\n  <store>\n    @type test_panic\n    @id boom\n    \
                   panic_on write\n    message kaboom from the test\n  </store>\n  <store>\n    \
                   @type stdout\n  </store>\n</match>\n";
    let (mut n, port) = start("", matches);
    let mut c = Client::connect(port);
    for i in 0..3u32 {
        let tag = format!("p.{i}");
        c.send(&message_with_chunk(&tag, &tag));
        assert_eq!(c.ack(), tag.as_bytes());
    }
    let log = n.wait_stderr("kaboom from the test");
    assert!(
        log.contains("#boom output test_panic panicked while writing chunk"),
        "names the plugin: {log}"
    );
    let lines = c.sync(&mut n, "after-panics");
    assert_eq!(
        lines,
        (0..3)
            .map(|i| line(0, 0, &format!("p.{i}"), r#"{"k":"v"}"#))
            .collect::<Vec<_>>()
    );
    // Still serving: a new connection, more events.
    let mut c2 = Client::connect(port);
    c2.send(&message_with_chunk("p.late", "late"));
    assert_eq!(c2.ack(), b"late");
    let path = n.stdout_path.clone();
    n.wait_for(|| contains(&path, "p.late: "), "the late event on stdout");
    n.assert_alive();
    assert_eq!(n.stop(), 0, "{}", n.stderr());
    // Fluentd keeps chunks an output rejected for good: root_dir/backup/worker0/<@id>/.
    let backup = n.dir.path().join("root/backup/worker0/boom");
    let saved = std::fs::read_dir(&backup)
        .map(|d| d.filter_map(Result::ok).count())
        .unwrap_or(0);
    assert!(
        saved >= 4,
        "the rejected chunks are in {}",
        backup.display()
    );
}

/// `Some(())` when the file at `path` contains `needle`.
fn contains(path: &Path, needle: &str) -> Option<()> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .contains(needle)
        .then_some(())
}

#[test]
fn a_panicking_filter_drops_that_batch_only() {
    // `every 2`: the 2nd filter call panics, the 1st and 3rd pass.
    let matches = "<filter f.**>\n  @type test_panic\n  every 2\n  message filter went boom\n</filter>\n\
                   <match **>\n  @type stdout\n</match>\n";
    let (mut n, port) = start("", matches);
    let mut c = Client::connect(port);
    for i in 1..=3u32 {
        c.send(&mp::cat(&[
            &mp::arr(4),
            &mp::s("f.x"),
            &mp::u32(T0 + i),
            KV,
            &mp::chunk_opt(&format!("f{i}")),
        ]));
        assert_eq!(c.ack(), format!("f{i}").as_bytes());
    }
    c.send(&message_with_chunk("other", "o1"));
    assert_eq!(c.ack(), b"o1");
    let lines = c.sync(&mut n, "after-filter");
    assert_eq!(
        lines,
        vec![
            line(1, 0, "f.x", r#"{"k":"v"}"#),
            line(3, 0, "f.x", r#"{"k":"v"}"#),
            line(0, 0, "other", r#"{"k":"v"}"#),
        ]
    );
    let log = n.wait_stderr("filter went boom");
    assert!(log.contains("dropped 1 events tagged 'f.x'"), "{log}");
    n.assert_alive();
}

#[test]
fn panic_on_new_fails_the_dry_run_with_a_clear_message() {
    let d = harness::tempdir();
    let conf = d.path().join("fluent.conf");
    std::fs::write(
        &conf,
        "<source>\n  @type forward\n  port 0\n</source>\n<match **>\n  @type test_panic\n  @id boom\n  panic_on new\n</match>\n",
    )
    .expect("write config");
    let c = conf.to_str().expect("utf-8 path");
    let out = run_env(&["--dry-run", "-c", c], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("fluent.conf:5"),
        "names the <match> line: {err}"
    );
    assert!(err.contains("test_panic"), "{err}");
    assert!(err.contains("boom"), "names the @id: {err}");
    assert!(err.contains("test_panic: deliberate panic"), "{err}");
}

/// A panic in `start` stops the collector from starting (exit 1, the plugin named); a panic
/// in `stop` is logged and the shutdown still completes (exit 0).
#[test]
fn panics_in_start_and_stop() {
    let conf = |on: &str, port: u16| {
        format!(
            "<source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n</source>\n\
             <match **>\n  @type test_panic\n  @id boom\n  panic_on {on}\n</match>\n"
        )
    };
    let d = harness::tempdir();
    let path = d.path().join("fluent.conf");
    std::fs::write(&path, conf("start", harness::free_port())).expect("write config");
    let out = run_env(&["-c", path.to_str().expect("path")], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("plugin boom (test_panic) failed to start")
            && err.contains("test_panic: deliberate panic"),
        "{err}"
    );

    let port = harness::free_port();
    let mut n = Nagare::start(&conf("stop", port));
    n.wait_port(port);
    assert_eq!(n.stop(), 0, "{}", n.stderr());
    let log = n.stderr();
    assert!(
        log.contains("boom (test_panic): stop failed: panic error: test_panic: deliberate panic"),
        "{log}"
    );
    assert!(log.contains("shutdown complete"), "{log}");
}

/// The system's libm, a shared library that is not a nagare plugin.
fn libm() -> PathBuf {
    let out = Command::new("ldconfig")
        .arg("-p")
        .output()
        .or_else(|_| Command::new("/sbin/ldconfig").arg("-p").output());
    if let Ok(out) = out {
        for l in text(&out.stdout).lines() {
            if l.trim_start().starts_with("libm.so.6 ")
                && let Some((_, path)) = l.rsplit_once("=> ")
            {
                return PathBuf::from(path.trim());
            }
        }
    }
    for p in [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
        "/usr/lib64/libm.so.6",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("no libm.so.6 on this system");
}

#[test]
fn a_shared_library_that_is_not_a_plugin_is_warned_about_and_skipped() {
    let d = harness::tempdir();
    let dir = plugin_dir(d.path());
    let copy = install(&libm(), &dir, "libm_copy.so", 0o644);
    let dir_s = dir.to_str().expect("utf-8 path");
    let out = run_env(&["plugins", "-p", dir_s], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{}: not a nagare plugin", copy.display())),
        "{err}"
    );
    assert!(err.contains("[warn]"), "a warning, not an error: {err}");
    let rows = plugin_rows(&text(&out.stdout));
    assert!(rows.iter().any(|r| r.0 == "forward"), "{rows:?}");

    // A running pipeline with that directory starts and works.
    let (mut n, port) = {
        let port = harness::free_port();
        let conf = format!(
            "<source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n</source>\n<match **>\n  @type stdout\n</match>\n"
        );
        let mut n = Nagare::start_with(&conf, &["-p", dir_s]);
        n.wait_port(port);
        (n, port)
    };
    assert!(n.stderr().contains("not a nagare plugin"), "{}", n.stderr());
    let mut c = Client::connect(port);
    assert_eq!(
        c.sync(&mut n, "still-works"),
        Vec::<String>::new(),
        "nothing but the sync line"
    );
}

#[test]
fn world_writable_plugin_files_and_directories_are_refused() {
    let d = harness::tempdir();
    let null_so = harness::target_dir().join("libnagare_out_null.so");

    // A world-writable copy of a real plugin in a safe directory.
    let dir = plugin_dir(d.path());
    let copy = install(&null_so, &dir, "libnagare_null_copy.so", 0o666);
    let out = run_env(&["plugins", "-p", dir.to_str().expect("path")], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{0}: refusing to load: the file {0} is group- or world-writable (mode 666)",
            copy.display()
        )),
        "{err}"
    );
    assert!(err.contains("chmod go-w"), "says what to do: {err}");
    let rows = plugin_rows(&text(&out.stdout));
    let null_files: Vec<&str> = rows
        .iter()
        .filter(|r| r.0 == "null")
        .map(|r| r.3.as_str())
        .collect();
    assert_eq!(
        null_files,
        [null_so.display().to_string()],
        "only the real plugin provides null"
    );

    // A safe file in a world-writable directory.
    let open_dir = d.path().join("open");
    std::fs::create_dir(&open_dir).expect("dir");
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    install(&null_so, &open_dir, "libnagare_null_copy.so", 0o644);
    let out = run_env(&["plugins", "-p", open_dir.to_str().expect("path")], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "the directory {} is group- or world-writable",
            open_dir.display()
        )),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// The out-of-tree plugin
// ---------------------------------------------------------------------------------------

/// Builds `examples/out-of-tree-plugin` once per test run (its own workspace and target
/// directory) and returns the `.so`.
fn counter_so() -> PathBuf {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let example = harness::workspace().join("examples/out-of-tree-plugin");
        let target = example.join("target");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let child = Command::new(cargo)
            .arg("build")
            .arg("--manifest-path")
            .arg(example.join("Cargo.toml"))
            // Its own target dir, never the workspace's (locked by the running `cargo test`).
            .env("CARGO_TARGET_DIR", &target)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cargo");
        let out = wait_output(
            child,
            Duration::from_secs(600),
            "cargo build of the example",
        );
        assert!(
            out.status.success(),
            "building the out-of-tree plugin failed:\n{}",
            text(&out.stderr)
        );
        let so = target.join("debug/libnagare_counter.so");
        assert!(so.is_file(), "{} was not built", so.display());
        so
    })
    .clone()
}

const COUNTER_MATCH: &str = "<match app.**>\n  @type counter\n  @id counts\n  path {dir}/counts.tsv\n</match>\n<match **>\n  @type stdout\n</match>\n";

#[test]
fn the_out_of_tree_plugin_loads_with_dash_p_and_counts_events() {
    let so = counter_so();
    let plugins = harness::tempdir();
    let dir = plugin_dir(plugins.path());
    let installed = install(&so, &dir, "libnagare_counter.so", 0o644);
    let dir_s = dir.to_str().expect("path");

    let out = run_env(&["plugins", "-p", dir_s], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows = plugin_rows(&text(&out.stdout));
    assert!(
        rows.contains(&(
            "counter".to_string(),
            "output".to_string(),
            "0.1.0".to_string(),
            installed.display().to_string()
        )),
        "{rows:?}"
    );

    let port = harness::free_port();
    let conf = format!(
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n</source>\n{COUNTER_MATCH}"
    );
    let mut n = Nagare::start_with(&conf, &["-p", dir_s]);
    n.wait_port(port);
    let counts = n.dir.path().join("counts.tsv");
    let mut c = Client::connect(port);
    let three = mp::cat(&[
        &mp::arr(3),
        &mp::arr(2),
        &mp::u32(T0),
        KV,
        &mp::arr(2),
        &mp::u32(T0),
        KV,
        &mp::arr(2),
        &mp::u32(T0),
        KV,
    ]);
    c.send(&mp::cat(&[
        &mp::arr(3),
        &mp::s("app.a"),
        &three,
        &mp::chunk_opt("c1"),
    ]));
    assert_eq!(c.ack(), b"c1");
    c.send(&message_with_chunk("app.b", "c2"));
    assert_eq!(c.ack(), b"c2");
    c.send(&message_with_chunk("app.b", "c3"));
    assert_eq!(c.ack(), b"c3");
    c.send(&message_with_chunk("other", "c4"));
    assert_eq!(c.ack(), b"c4");
    n.wait_for(
        || {
            (std::fs::read_to_string(&counts).unwrap_or_default() == "app.a\t3\napp.b\t2\n")
                .then_some(())
        },
        "counts.tsv with app.a 3 and app.b 2",
    );
    assert_eq!(
        c.sync(&mut n, "counter"),
        vec![line(0, 0, "other", r#"{"k":"v"}"#)],
        "only unmatched tags reach stdout"
    );
    assert_eq!(n.stop(), 0, "{}", n.stderr());
    let log = n.stderr();
    assert!(
        log.contains("#counts counter: 5 events in 2 tags"),
        "the plugin logs through the host with its @id: {log}"
    );
}

#[test]
fn the_out_of_tree_plugin_loads_from_nagare_plugin_path() {
    let so = counter_so();
    let plugins = harness::tempdir();
    let dir = plugin_dir(plugins.path());
    let installed = install(&so, &dir, "libnagare_counter.so", 0o644);
    let env: &[(&str, &Path)] = &[("NAGARE_PLUGIN_PATH", &dir)];

    let out = run_env(&["plugins"], env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows = plugin_rows(&text(&out.stdout));
    let counter: Vec<&String> = rows
        .iter()
        .filter(|r| r.0 == "counter")
        .map(|r| &r.3)
        .collect();
    assert_eq!(counter, [&installed.display().to_string()]);

    let d = harness::tempdir();
    let conf = d.path().join("fluent.conf");
    std::fs::write(
        &conf,
        format!(
            "<source>\n  @type forward\n  port 0\n</source>\n{}",
            COUNTER_MATCH.replace("{dir}", &d.path().display().to_string())
        ),
    )
    .expect("write config");
    let c = conf.to_str().expect("path");
    let out = run_env(&["--dry-run", "-c", c], env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Without the variable, @type counter is unknown.
    let out = run_env(&["--dry-run", "-c", c], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("counter"),
        "{}",
        text(&out.stderr)
    );
}
