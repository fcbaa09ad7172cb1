//! Parses and checks a config file, printing warnings and the `--dump-config` JSON.
//!
//! `cargo run -p nagare-config --example dump -- path/to/fluent.conf`

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: dump <fluent.conf>");
        return ExitCode::from(2);
    };
    let parsed = match nagare_config::parse_file_with(&path, &nagare_config::SystemEnvironment) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for w in &parsed.warnings {
        eprintln!("{w}");
    }
    match nagare_config::check(&parsed.root) {
        Ok(warnings) => warnings.iter().for_each(|w| eprintln!("{w}")),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    let json = nagare_config::dump_json(&parsed.root);
    println!(
        "{}",
        serde_json::to_string_pretty(&json).unwrap_or_default()
    );
    ExitCode::SUCCESS
}
