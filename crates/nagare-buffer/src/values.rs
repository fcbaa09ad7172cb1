//! Fluentd's parameter value types (`size`, `time`, `bool`, `integer`, `float`), as
//! `lib/fluent/config/types.rb` reads them, with errors instead of silent zeroes.

/// Finds the leftmost run of ASCII digits immediately followed by `suffix`, the way the
/// unanchored Ruby regex `/([0-9]+)<suffix>/` does, and returns the digits' value.
fn leftmost_digits_before(s: &str, suffix: impl Fn(u8) -> bool) -> Option<Option<u64>> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b.get(i).is_some_and(u8::is_ascii_digit) {
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if b.get(i).is_some_and(|c| suffix(*c)) {
                // Ruby takes the whole digit run before the suffix.
                return Some(s.get(start..i).and_then(|d| d.parse::<u64>().ok()));
            }
        } else {
            i += 1;
        }
    }
    None
}

/// Parses a Fluentd `size` value: `<int>k|m|g|t` (case-insensitive, powers of 1024,
/// matched anywhere in the string as Fluentd does), else a plain integer.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let units: [(u8, u32); 4] = [(b'k', 1), (b'm', 2), (b'g', 3), (b't', 4)];
    for (unit, pow) in units {
        if let Some(v) = leftmost_digits_before(s, |c| c.eq_ignore_ascii_case(&unit)) {
            let v = v.ok_or_else(|| format!("size value out of range: '{s}'"))?;
            return v
                .checked_mul(1024u64.pow(pow))
                .ok_or_else(|| format!("size value out of range: '{s}'"));
        }
    }
    s.parse::<u64>()
        .map_err(|_| format!("invalid size value '{s}' (expected an integer or <int>k|m|g|t)"))
}

/// Parses a Fluentd `time` value into seconds: `<int>s|m|h|d` (matched anywhere, so
/// `10sec` is 10), else a float (`0.5`).
pub fn parse_time(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let units: [(u8, f64); 4] = [(b's', 1.0), (b'm', 60.0), (b'h', 3600.0), (b'd', 86400.0)];
    for (unit, mul) in units {
        if let Some(v) = leftmost_digits_before(s, |c| c == unit) {
            let v = v.ok_or_else(|| format!("time value out of range: '{s}'"))?;
            return Ok(v as f64 * mul);
        }
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!(
            "invalid time value '{s}' (expected <int>s|m|h|d or seconds)"
        )),
    }
}

/// Parses a Fluentd `bool`: `true`/`yes`/empty are true, `false`/`no` are false.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim() {
        "true" | "yes" | "" => Ok(true),
        "false" | "no" => Ok(false),
        other => Err(format!(
            "invalid bool value '{other}' (expected true, false, yes or no)"
        )),
    }
}

/// Parses an integer value (strictly).
pub fn parse_integer(s: &str) -> Result<i64, String> {
    s.trim()
        .parse::<i64>()
        .map_err(|_| format!("invalid integer value '{}'", s.trim()))
}

/// Parses a float value (strictly).
pub fn parse_float(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("invalid float value '{}'", s.trim())),
    }
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

    // Cases from fluentd test/config/test_types.rb (size_value, time_value, bool_value).
    #[test]
    fn sizes() {
        check(
            parse_size,
            &[
                ("0", Some(0)),
                ("1", Some(1)),
                ("1k", Some(1024)),
                ("1K", Some(1024)),
                ("8m", Some(8 << 20)),
                ("8M", Some(8 << 20)),
                ("2g", Some(2 << 30)),
                ("1t", Some(1 << 40)),
                ("256m", Some(256 << 20)),
                ("1.5m", Some(5 << 20)), // unanchored, like Fluentd
                ("abc", None),
                ("", None),
                ("-1", None),
                ("99999999999999999999k", None),
            ],
        );
    }

    #[test]
    fn times() {
        check(
            parse_time,
            &[
                ("10s", Some(10.0)),
                ("10sec", Some(10.0)),
                ("2m", Some(120.0)),
                ("3h", Some(10800.0)),
                ("1d", Some(86400.0)),
                ("0.5", Some(0.5)),
                ("60", Some(60.0)),
                ("1m30s", Some(30.0)), // Fluentd checks the `s` form first
                ("x", None),
                ("inf", None),
            ],
        );
    }

    #[test]
    fn bools() {
        check(
            parse_bool,
            &[
                ("true", Some(true)),
                ("yes", Some(true)),
                ("", Some(true)),
                ("false", Some(false)),
                ("no", Some(false)),
                ("TRUE", None),
                ("Yes", None),
                ("1", None),
            ],
        );
    }

    #[test]
    fn numbers() {
        check(
            parse_integer,
            &[("3", Some(3)), (" 4 ", Some(4)), ("1x", None)],
        );
        check(
            parse_float,
            &[("0.8", Some(0.8)), ("2", Some(2.0)), ("nan", None)],
        );
    }
}
