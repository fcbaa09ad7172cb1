//! Parses arbitrary text as a Fluentd config file: errors are fine, panics are not.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = nagare_config::parse_str(text, Path::new("fuzz.conf"));
    }
});
