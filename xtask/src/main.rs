//! `cargo xtask …`: nagare's build, test, dist, bench and fuzz automation.
//!
//! Only `cargo` is needed to run it (the alias lives in `.cargo/config.toml`). Each task is a
//! plain function that shells out to cargo and friends; nothing here is clever on purpose.
//!
//! | task | what it does |
//! | --- | --- |
//! | `build [--release]` | builds the host and every plugin `.so` |
//! | `run [-- ARGS]` | builds, then runs the collector on `examples/forward-stdout.conf` (or ARGS) |
//! | `test` | makes sure the test peers are installed, builds everything, runs the whole suite |
//! | `lint` | `cargo fmt --check` and `cargo clippy -D warnings` over the workspace |
//! | `ci` | `lint` then `test`: what `.ci/run` does |
//! | `dist` | release build staged as `target/dist/{bin/nagare,lib/nagare/plugins/*.so}` |
//! | `bench [forward|filter|…]` | release build, then the load-generator benchmarks |
//! | `fuzz TARGET [SECONDS]` | runs a `cargo fuzz` target for a bounded time |

mod bench;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((t, r)) => (t.as_str(), r),
        None => ("help", &[][..]),
    };
    match task {
        "build" => build(rest.iter().any(|a| a == "--release")),
        "run" => run(rest),
        "test" => test(rest),
        "lint" => lint(),
        "ci" => {
            lint()?;
            test(&[])
        }
        "dist" => dist(),
        "bench" => bench::run(&root()?, rest),
        "fuzz" => fuzz(rest),
        "help" | "-h" | "--help" => {
            println!("{}", HELP);
            Ok(())
        }
        other => bail!("unknown task '{other}'\n{HELP}"),
    }
}

const HELP: &str = "usage: cargo xtask <build [--release] | run [-- ARGS] | test [ARGS] | lint | ci | dist | bench [NAME…] | fuzz TARGET [SECONDS]>";

/// The workspace root (the parent of this crate's directory).
pub(crate) fn root() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    dir.parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

pub(crate) fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    if let Ok(r) = root() {
        c.current_dir(r);
    }
    c
}

pub(crate) fn status(mut cmd: Command) -> Result<()> {
    eprintln!("xtask: running {:?}", cmd);
    let st = cmd
        .status()
        .with_context(|| format!("cannot start {:?}", cmd))?;
    if !st.success() {
        bail!("{:?} failed: {st}", cmd);
    }
    Ok(())
}

fn build(release: bool) -> Result<()> {
    let mut c = cargo();
    c.args(["build", "--workspace", "--bins", "--lib"]);
    if release {
        c.arg("--release");
    }
    status(c)
}

fn run(args: &[String]) -> Result<()> {
    build(false)?;
    let root = root()?;
    let bin = root.join("target/debug/nagare");
    let mut c = Command::new(&bin);
    let passthrough: Vec<&String> = args.iter().skip_while(|a| *a == "--").collect();
    if passthrough.is_empty() {
        c.arg("-c").arg(root.join("examples/forward-stdout.conf"));
    } else {
        c.args(passthrough);
    }
    // Replace this process's job with the collector: Ctrl-C goes to it.
    let st = c
        .status()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    std::process::exit(st.code().unwrap_or(1));
}

/// Python packages the end-to-end tests use as real Fluentd clients.
const PY_PACKAGES: &[(&str, &str)] = &[("msgpack", "msgpack"), ("fluent", "fluent-logger")];

fn ensure_python_peers() -> Result<()> {
    let missing: Vec<&str> = PY_PACKAGES
        .iter()
        .filter(|(module, _)| {
            !Command::new("python3")
                .args(["-c", &format!("import {module}")])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing the Python test peers {missing:?} with pip");
    let mut c = Command::new("python3");
    c.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]);
    c.args(&missing);
    status(c).context("the end-to-end tests need Python's msgpack and fluent-logger")
}

fn test(args: &[String]) -> Result<()> {
    ensure_python_peers()?;
    // The end-to-end tests run the real binary and load the real .so plugins: build them first.
    build(false)?;
    let mut c = cargo();
    c.args(["test", "--workspace", "--exclude", "xtask"]);
    c.args(args);
    status(c)
}

fn lint() -> Result<()> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    status(fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    status(clippy)
}

fn dist() -> Result<()> {
    build(true)?;
    let root = root()?;
    let rel = root.join("target/release");
    let dist = root.join("target/dist");
    let plugins = dist.join("lib/nagare/plugins");
    std::fs::create_dir_all(dist.join("bin"))?;
    std::fs::create_dir_all(&plugins)?;
    std::fs::copy(rel.join("nagare"), dist.join("bin/nagare"))?;
    let mut n = 0;
    for entry in std::fs::read_dir(&rel)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("libnagare_") && name.ends_with(".so") && !name.contains("test_") {
            std::fs::copy(&path, plugins.join(name))?;
            n += 1;
        }
    }
    println!("staged bin/nagare and {n} plugins in {}", dist.display());
    Ok(())
}

fn fuzz(args: &[String]) -> Result<()> {
    let target = args
        .first()
        .context("usage: cargo xtask fuzz TARGET [SECONDS]")?;
    let secs = args.get(1).map(String::as_str).unwrap_or("60");
    let root = root()?;
    let mut c = Command::new("cargo");
    c.current_dir(root.join("fuzz"));
    // cargo-fuzz needs nightly-only flags; this machine has one stable toolchain.
    c.env("RUSTC_BOOTSTRAP", "1");
    c.args([
        "fuzz",
        "run",
        target,
        "--",
        &format!("-max_total_time={secs}"),
    ]);
    status(c).context("is cargo-fuzz installed? `cargo install cargo-fuzz`")
}
