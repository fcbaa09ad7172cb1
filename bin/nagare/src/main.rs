//! The nagare host binary: command line, logging, signals. Thin glue over the library crates.
//!
//! Exit codes: 0 ok, 1 configuration (or start-up) error, 2 usage error.

mod log;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use nagare_config::Element;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The configuration used when no `-c` is given: Forward in on loopback, stdout out.
const DEFAULT_CONFIG: &str = "\
<source>
  @type forward
  @id in_forward
  bind 127.0.0.1
  port 24224
</source>

<match **>
  @type stdout
  @id out_stdout
</match>
";

#[derive(Parser, Debug)]
#[command(
    name = "nagare",
    version,
    about = "A Fluentd-compatible log collector with .so plugins"
)]
struct Cli {
    #[command(flatten)]
    common: Common,

    /// Parse and check the configuration and every plugin's parameters, then exit (0 or 1).
    #[arg(long)]
    dry_run: bool,

    /// Print the parsed configuration tree as one JSON object, then exit.
    #[arg(long)]
    dump_config: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// The configuration file (Fluentd syntax). Without it, an embedded default is used.
    #[arg(short = 'c', long = "config", value_name = "FILE", global = true)]
    config: Option<PathBuf>,

    /// A plugin directory to search first (repeatable). Also: NAGARE_PLUGIN_PATH.
    #[arg(short = 'p', long = "plugin", value_name = "DIR", global = true)]
    plugin_dirs: Vec<PathBuf>,

    /// More logging (repeatable).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    /// Less logging (repeatable).
    #[arg(short = 'q', long = "quiet", action = clap::ArgAction::Count, global = true)]
    quiet: u8,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the path a tag takes through the configuration: each filter, then the match.
    Route {
        /// Print JSON: {"tag":…,"steps":[{"kind","pattern","type","id","label"}]}.
        #[arg(long)]
        json: bool,
        /// Start in this label (e.g. @ERROR) instead of the top level.
        #[arg(long, value_name = "@LABEL")]
        label: Option<String>,
        /// The event tag.
        tag: String,
    },
    /// List the plugins found in the plugin directories: type, kind, version, file.
    Plugins,
}

fn main() -> ExitCode {
    tune_malloc();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap prints help/version on stdout (exit 0) and usage errors on stderr (exit 2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nagare: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Keeps batch-sized allocations in glibc's heap instead of fresh mappings.
///
/// A PackedForward request of 1000 events is ~150 KB, just above glibc's initial 128 KB
/// `mmap` threshold, and the heap top above the trim threshold is returned to the kernel on
/// free: each request's buffers were mapped, zero-filled page by page and unmapped again —
/// ~42 000 page faults per million events, about a quarter of in_forward's CPU. With a
/// 1 MiB threshold (and trimming only past 4 MiB of free top) they are reused: ~1 000
/// faults per million events, for ~1.5 MB more peak RSS. Plugins share the process's
/// allocator, so this covers them too. The `MALLOC_*`/`GLIBC_TUNABLES` environment still
/// wins: glibc reads it before `main`, and an explicit setting is left alone.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = std::env::var_os("GLIBC_TUNABLES")
            .is_some_and(|v| v.to_string_lossy().contains("glibc.malloc."))
            || std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
            || std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some();
        if !user_set {
            // SAFETY: mallopt only changes allocator parameters; it is called before any
            // other thread exists, and on failure (0) glibc keeps its defaults.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
            }
        }
    }
}

/// Reads the configuration named by `-c`, or the embedded default.
fn load_config(common: &Common) -> Result<(Element, bool), nagare_config::ConfigError> {
    match &common.config {
        Some(path) => nagare_config::parse_file(path).map(|e| (e, false)),
        None => nagare_config::parse_str(DEFAULT_CONFIG, Path::new("<embedded default>"))
            .map(|e| (e, true)),
    }
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    if cli.command.is_some() && (cli.dry_run || cli.dump_config) {
        eprintln!("nagare: --dry-run and --dump-config cannot be combined with a subcommand");
        return Ok(ExitCode::from(2));
    }
    if matches!(cli.command, Some(Command::Plugins)) {
        log::init(log::adjust(
            tracing::Level::INFO,
            cli.common.verbose,
            cli.common.quiet,
        ));
        return plugins(&cli.common);
    }
    let (root, embedded) = match load_config(&cli.common) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };

    if cli.dump_config {
        let json = nagare_config::dump_json(&root);
        println!("{}", serde_json::to_string(&json)?);
        return Ok(ExitCode::SUCCESS);
    }

    let base_level = root
        .children("system")
        .filter_map(|s| s.get("log_level").or_else(|| s.get("@log_level")))
        .last()
        .and_then(log::level_from)
        .unwrap_or(tracing::Level::INFO);
    log::init(log::adjust(
        base_level,
        cli.common.verbose,
        cli.common.quiet,
    ));
    if embedded {
        tracing::info!(
            "no -c given: running the embedded default configuration (forward on 127.0.0.1:24224 → stdout)"
        );
    }

    match nagare_config::check(&root) {
        Ok(warnings) => {
            for w in warnings {
                tracing::warn!("{}: {}", w.location, w.message);
            }
        }
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    }

    let table = match nagare_router::RoutingTable::build(&root) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };

    match cli.command {
        Some(Command::Route { json, label, tag }) => {
            return route(&table, label.as_deref(), &tag, json);
        }
        Some(Command::Plugins) | None => {}
    }

    let registry = match load_registry(&cli.common) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let engine = match nagare_engine::Engine::build(&root, table, &registry) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    if cli.dry_run {
        tracing::info!("finished dry run mode: the configuration is valid");
        return Ok(ExitCode::SUCCESS);
    }
    run(engine)
}

fn search_path(common: &Common) -> nagare_engine::loader::PluginSearchPath {
    nagare_engine::loader::PluginSearchPath::new(&common.plugin_dirs)
}

fn load_registry(common: &Common) -> Result<nagare_engine::registry::Registry, ExitCode> {
    nagare_engine::registry::Registry::load(&search_path(common)).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(1)
    })
}

fn plugins(common: &Common) -> Result<ExitCode> {
    let mut registry = match load_registry(common) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    // The registry opens plugin files lazily; the listing loads and checks every one.
    registry.load_all();
    let list = registry.list();
    if list.is_empty() {
        let dirs: Vec<String> = search_path(common)
            .dirs()
            .iter()
            .map(|d| d.path.display().to_string())
            .collect();
        println!("no plugins found in: {}", dirs.join(", "));
        return Ok(ExitCode::from(1));
    }
    println!("{:<24} {:<8} {:<10} FILE", "TYPE", "KIND", "VERSION");
    for p in list {
        println!(
            "{:<24} {:<8} {:<10} {}",
            p.type_name,
            p.kind.name(),
            p.version,
            p.file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn route(
    table: &nagare_router::RoutingTable,
    label: Option<&str>,
    tag: &str,
    json: bool,
) -> Result<ExitCode> {
    if let Some(l) = label
        && l != nagare_router::ROOT_LABEL
        && table.label_by_name(l).is_none()
    {
        let known: Vec<&str> = table.labels().iter().map(|l| l.name.as_str()).collect();
        eprintln!(
            "unknown label {l}; the configuration defines: {}",
            known.join(", ")
        );
        return Ok(ExitCode::from(1));
    }
    let explanation = table.explanation(label, tag);
    if json {
        println!("{}", serde_json::to_string(&explanation)?);
        return Ok(ExitCode::SUCCESS);
    }
    if explanation.steps.is_empty() {
        println!("{tag}: no patterns matched (the events would be dropped)");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{tag}:");
    for (i, s) in explanation.steps.iter().enumerate() {
        let kind = match s.kind {
            nagare_router::StepKind::Filter => "filter",
            nagare_router::StepKind::Match => "match",
            nagare_router::StepKind::Store => "  store",
        };
        println!(
            "  {}. {kind} <{}> @type {}{}{}  ({})",
            i + 1,
            s.pattern,
            s.type_name,
            s.id.as_ref()
                .map(|i| format!(" @id {i}"))
                .unwrap_or_default(),
            s.label
                .as_ref()
                .map(|l| format!(" in {l}"))
                .unwrap_or_default(),
            s.location
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run(engine: nagare_engine::Engine) -> Result<ExitCode> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    // Register before starting inputs so an early signal is not lost.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install signal handlers")?;
    let running = match engine.start() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let fluent_log = nagare_engine::fluent_log::FluentLog::start(running.pipeline());
    if let Some(f) = &fluent_log {
        let _ = log::FLUENT_LOG.set(f.sink());
    }
    tracing::info!("nagare {} started", env!("CARGO_PKG_VERSION"));
    if let Some(sig) = signals.forever().next() {
        let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
        tracing::info!("received {name}: stopping inputs, draining and flushing outputs");
    }
    if let Some(f) = fluent_log {
        f.stop();
    }
    running.shutdown();
    tracing::info!("shutdown complete");
    Ok(ExitCode::SUCCESS)
}
