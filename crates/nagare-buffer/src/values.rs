//! Fluentd's parameter value types (`size`, `time`, `bool`, `integer`, `float`) as the
//! `<buffer>` section reads them.
//!
//! The conversions are [`nagare_config::types`]' (the one implementation of
//! `lib/fluent/config/types.rb`), always in strict mode (`<system> strict_config_value
//! true`: Ruby's `Integer()`/`Float()`), so a typo in a buffer parameter is an error instead
//! of a silent zero. These wrappers only turn the typed error into the text that
//! [`crate::ConfigError`] carries after the parameter name.

use nagare_config::types;

fn text(e: types::TypeError) -> String {
    e.to_string()
}

/// A `size`: `<int>k|m|g|t` (case-insensitive, powers of 1024, matched anywhere in the
/// text as Fluentd does), else an integer; negative sizes are errors.
pub fn parse_size(s: &str) -> Result<u64, String> {
    types::parse_size(s, true).map_err(text)
}

/// A `time` in seconds: `<int>s|m|h|d` (matched anywhere, so `10sec` is 10), else a
/// number of seconds (`0.5`).
pub fn parse_time(s: &str) -> Result<f64, String> {
    types::parse_time(s, true).map_err(text)
}

/// A `bool`: `true`/`yes`/empty are true, `false`/`no` are false.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match types::parse_bool(s, true) {
        Ok(Some(b)) => Ok(b),
        // Strict mode answers every value; keep a message rather than a panic path.
        Ok(None) => Err(format!("invalid bool value {s:?}")),
        Err(e) => Err(text(e)),
    }
}

/// An `integer` (Ruby's `Integer()`: `_` separators and `0x`/`0b`/`0o`/`0` prefixes).
pub fn parse_integer(s: &str) -> Result<i64, String> {
    types::parse_integer(s, true).map_err(text)
}

/// A `float` (Ruby's `Float()`).
pub fn parse_float(s: &str) -> Result<f64, String> {
    types::parse_float(s, true).map_err(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: PartialEq + std::fmt::Debug>(
        f: fn(&str) -> Result<T, String>,
        cases: &[(&str, Option<T>)],
    ) {
        for (input, expect) in cases {
            assert_eq!(f(input).ok().as_ref(), expect.as_ref(), "input {input:?}");
        }
    }

    // The full test_types.rb tables live with the implementation (nagare-config); these
    // pin what strict mode means for `<buffer>`: typos are errors, never zeroes.
    #[test]
    fn strict_values() {
        check(
            parse_size,
            &[
                ("8m", Some(8 << 20)),
                ("1K", Some(1024)),
                ("1.5m", Some(5 << 20)), // unanchored, like Fluentd
                ("lots", None),
                ("-1", None),
                ("", None),
            ],
        );
        check(
            parse_time,
            &[
                ("10sec", Some(10.0)),
                ("1m30s", Some(30.0)), // Fluentd checks the `s` form first
                ("0.5", Some(0.5)),
                ("x", None),
                ("inf", None),
            ],
        );
        check(
            parse_bool,
            &[
                ("yes", Some(true)),
                ("", Some(true)),
                ("no", Some(false)),
                ("TRUE", None),
                ("1", None),
            ],
        );
        check(
            parse_integer,
            &[
                (" 4 ", Some(4)),
                ("1_000", Some(1000)),
                ("0x10", Some(16)),
                ("1x", None),
                ("", None),
            ],
        );
        check(
            parse_float,
            &[("0.8", Some(0.8)), ("2", Some(2.0)), ("nan", None)],
        );
    }

    #[test]
    fn messages_name_the_value() {
        let e = parse_size("lots").err().unwrap_or_default();
        assert!(e.contains("\"lots\""), "{e}");
        let e = parse_bool("TRUE").err().unwrap_or_default();
        assert!(e.contains("\"TRUE\""), "{e}");
    }
}
