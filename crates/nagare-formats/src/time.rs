//! Fluentd's time handling (`lib/fluent/time.rb`, `timezone.rb`): [`EventTime`], time zones,
//! a `strptime` subset ([`TimeParser`]) and Ruby's `strftime` ([`TimeFormatter`]).
//!
//! Parsing rules follow Ruby's `Time.strptime`/the strptime gem that Fluentd uses:
//! - a space in the format matches any run of whitespace (including none);
//! - field widths are those of Ruby's `Date._strptime`: `%m %d %e %H %k %I %l %M %S %y`
//!   read at most two digits (`%d %e %H %k %I %l` also take one leading space as padding,
//!   then one digit), `%j` three; `%Y` reads every digit unless the format goes on with a
//!   numeric field (a digit or `%m`, `%d`, `%H`...), then four, so `%Y%m%d%H%M%S` reads
//!   `20120402182059`; `%C`, `%L` and `%N` likewise stop at 2, 3 and 9 digits before a
//!   numeric field; an explicit width such as `%3N` (a nagare extension) wins;
//! - fields missing before the first given date field are taken from "now" in the zone
//!   (so `%b %d %H:%M:%S` gets the current year), later ones default to 1/0;
//! - without `%z`/`%Z`/`%s` in the text, the wall time is read in the configured zone
//!   (`timezone`, else `utc`, else local time — Fluentd's `localtime true` default).
//!
//! Deviation (documented, deliberate): a year inferred from "now" for a date that would land
//! more than a day in the future is taken as last year, so `Dec 31 23:59:59` read on Jan 1
//! is not dated a year ahead.

use std::fmt::Write as _;

use chrono::{
    DateTime, Datelike, FixedOffset, Local, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike,
    Utc,
};
use rmpv::Value;

use crate::error::{ConfigError, FormatError, ParseError};
use crate::params::Params;

/// An event time: seconds since the Unix epoch and nanoseconds, as Fluentd's EventTime
/// (msgpack ext type 0 packs both as unsigned 32-bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventTime {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub sec: u32,
    /// Nanoseconds, `0..1_000_000_000`.
    pub nsec: u32,
}

impl EventTime {
    /// A time from its parts (`nsec` is clamped below one second).
    pub fn new(sec: u32, nsec: u32) -> EventTime {
        EventTime {
            sec,
            nsec: nsec.min(999_999_999),
        }
    }

    /// The current wall-clock time.
    pub fn now() -> EventTime {
        let d = Utc::now();
        EventTime::from_parts(d.timestamp(), d.timestamp_subsec_nanos()).unwrap_or_default()
    }

    /// A time from signed seconds and nanoseconds; `None` outside the u32 range.
    pub fn from_parts(sec: i64, nsec: u32) -> Option<EventTime> {
        let sec = u32::try_from(sec).ok()?;
        Some(EventTime::new(sec, nsec))
    }

    /// A time from a float number of seconds (Ruby `to_i` truncation for the seconds, the
    /// fraction rounded to nanoseconds); `None` when negative, too large or not finite.
    pub fn from_f64(f: f64) -> Option<EventTime> {
        if !f.is_finite() || !(0.0..4_294_967_296.0).contains(&f) {
            return None;
        }
        let sec = f.trunc();
        let nsec = ((f - sec) * 1e9).round().clamp(0.0, 999_999_999.0);
        Some(EventTime::new(sec as u32, nsec as u32))
    }

    /// Seconds as a float (`to_r.to_f`).
    pub fn as_f64(self) -> f64 {
        f64::from(self.sec) + f64::from(self.nsec) / 1e9
    }

    /// Nanoseconds since the epoch.
    pub fn as_nanos(self) -> u64 {
        u64::from(self.sec) * 1_000_000_000 + u64::from(self.nsec)
    }

    fn to_utc(self) -> Option<DateTime<Utc>> {
        DateTime::<Utc>::from_timestamp(i64::from(self.sec), self.nsec)
    }
}

/// An IANA zone read from the system's zoneinfo (`/usr/share/zoneinfo`) when a config names
/// it: no compiled-in tables, so plugins that never use a named zone pay nothing for them.
#[derive(Debug)]
pub struct NamedZone {
    name: String,
    tz: tz::TimeZone,
}

impl NamedZone {
    /// The zone's name as written (`Asia/Tokyo`).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn local_type(&self, unix: i64) -> Option<&tz::LocalTimeType> {
        self.tz.find_local_time_type(unix).ok()
    }

    fn offset_at_unix(&self, unix: i64) -> FixedOffset {
        self.local_type(unix)
            .and_then(|t| FixedOffset::east_opt(t.ut_offset()))
            .unwrap_or_else(utc_fixed)
    }
}

impl PartialEq for NamedZone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// A time zone as Fluentd accepts it: `[+-]HH:MM`, `[+-]HHMM`, `[+-]HH`, `Region/Zone`, plus
/// UTC and the machine's local zone.
#[derive(Debug, Clone, PartialEq)]
pub enum Zone {
    /// UTC (`utc true`, or `localtime false`).
    Utc,
    /// The machine's local zone (Fluentd's default `localtime true`).
    Local,
    /// A fixed offset (`+09:00`).
    Fixed(FixedOffset),
    /// An IANA zone (`Asia/Tokyo`), daylight saving aware.
    Named(std::sync::Arc<NamedZone>),
}

impl Zone {
    /// Parses Fluentd's `timezone` syntax; `None` when unsupported.
    pub fn parse(s: &str) -> Option<Zone> {
        let s = s.trim();
        if let Some(off) = parse_numeric_offset(s, true) {
            return FixedOffset::east_opt(off).map(Zone::Fixed);
        }
        if s.eq_ignore_ascii_case("UTC") || s == "Z" {
            return Some(Zone::Utc);
        }
        if s.contains('/') || s == "GMT" {
            // Only names from the zoneinfo directory: no path tricks, no POSIX rule strings.
            if s.starts_with('/') || s.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
                return None;
            }
            let tz = tz::TimeZone::from_posix_tz(&format!(":{s}")).ok()?;
            return Some(Zone::Named(std::sync::Arc::new(NamedZone {
                name: s.to_string(),
                tz,
            })));
        }
        None
    }

    /// The zone from `timezone`/`utc`/`localtime` params (Fluentd's TimeMixin rules).
    pub fn from_params(plugin: &str, p: &Params) -> Result<Zone, ConfigError> {
        if let Some(tz) = p.get("timezone") {
            return Zone::parse(tz).ok_or_else(|| {
                ConfigError::invalid(plugin, "timezone", tz, "unsupported timezone")
            });
        }
        let utc = p.bool(plugin, "utc")?;
        let localtime = p.bool(plugin, "localtime")?;
        if utc == Some(true) && localtime == Some(true) && p.has("localtime") && p.has("utc") {
            return Err(ConfigError::invalid(
                plugin,
                "utc",
                "true",
                "both of utc and localtime are specified, use only one of them",
            ));
        }
        if utc == Some(true) || localtime == Some(false) {
            Ok(Zone::Utc)
        } else {
            Ok(Zone::Local)
        }
    }

    /// Seconds east of UTC in force at `unix` (seconds since the epoch).
    pub fn utc_offset_at(&self, unix: i64) -> i32 {
        DateTime::<Utc>::from_timestamp(unix, 0)
            .map(|d| self.offset_at(&d.naive_utc()).local_minus_utc())
            .unwrap_or(0)
    }

    /// Offset east of UTC (seconds) in force at the UTC instant `utc`.
    fn offset_at(&self, utc: &NaiveDateTime) -> FixedOffset {
        match self {
            Zone::Utc => FixedOffset::east_opt(0).unwrap_or(utc_fixed()),
            Zone::Local => Local.offset_from_utc_datetime(utc).fix(),
            Zone::Fixed(f) => *f,
            Zone::Named(z) => z.offset_at_unix(utc.and_utc().timestamp()),
        }
    }

    /// Offset to use for a wall time read in this zone.
    fn offset_for_local(&self, local: &NaiveDateTime) -> FixedOffset {
        let pick = |r: chrono::LocalResult<FixedOffset>| match r {
            chrono::LocalResult::Single(o) => Some(o),
            chrono::LocalResult::Ambiguous(a, _) => Some(a),
            chrono::LocalResult::None => None,
        };
        match self {
            Zone::Utc => utc_fixed(),
            Zone::Fixed(f) => *f,
            Zone::Local => pick(Local.offset_from_local_datetime(local))
                .unwrap_or_else(|| self.offset_at(local)),
            Zone::Named(z) => {
                // The offset in force at the wall time: try the offset found for the wall
                // time read as UTC, then the one in force at the instant that gives.
                let wall = local.and_utc().timestamp();
                let first = z.offset_at_unix(wall);
                z.offset_at_unix(wall - i64::from(first.local_minus_utc()))
            }
        }
    }

    fn abbreviation(&self, utc: &NaiveDateTime) -> String {
        match self {
            Zone::Utc => "UTC".to_string(),
            Zone::Local => {
                if self.offset_at(utc).local_minus_utc() == 0 {
                    "UTC".to_string()
                } else {
                    String::new()
                }
            }
            Zone::Fixed(_) => String::new(),
            Zone::Named(z) => z
                .local_type(utc.and_utc().timestamp())
                .map(|t| t.time_zone_designation().to_string())
                .unwrap_or_default(),
        }
    }
}

fn utc_fixed() -> FixedOffset {
    // 0 is always in range; fall back through the type's own UTC constant.
    Utc.fix()
}

/// `+09:00`, `+0900`, `+09` (and `+09:00:00` when `allow_seconds`); seconds east of UTC.
fn parse_numeric_offset(s: &str, allow_seconds: bool) -> Option<i32> {
    let b = s.as_bytes();
    let sign = match b.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let rest = &s[1..];
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (h, m, sec) = match digits.len() {
        2 => (&digits[0..2], "0", "0"),
        4 => (&digits[0..2], &digits[2..4], "0"),
        6 if allow_seconds => (&digits[0..2], &digits[2..4], &digits[4..6]),
        _ => return None,
    };
    let h: i32 = h.parse().ok()?;
    let m: i32 = m.parse().ok()?;
    let sec: i32 = sec.parse().ok()?;
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60 + sec))
}

// ---------------------------------------------------------------------------------------
// strptime

#[derive(Debug, Clone, PartialEq)]
enum PItem {
    Lit(char),
    Space,
    /// A conversion; `width` is an explicit field width (a nagare extension: Ruby's
    /// `Date._strptime` has none), `next_num` whether the format goes on with a number
    /// (Ruby's `num_pattern_p`), which bounds `%Y %C %G %L %N`.
    Dir {
        conv: char,
        width: Option<usize>,
        next_num: bool,
    },
}

/// A compiled `strptime` format.
#[derive(Debug, Clone, PartialEq)]
pub struct Strptime {
    src: String,
    items: Vec<PItem>,
    iso8601: bool,
}

const PARSE_DIRECTIVES: &str = "YCymdejHkIlMSLNzZbBhaApPjsQTDFRrcxXnt%+uw";

impl Strptime {
    /// Compiles `format`; `%iso8601` is Fluentd's special whole-format name.
    pub fn new(format: &str) -> Result<Strptime, String> {
        if format == "%iso8601" {
            return Ok(Strptime {
                src: format.to_string(),
                items: Vec::new(),
                iso8601: true,
            });
        }
        let mut items = Vec::new();
        compile_into(format, &mut items, 0)?;
        Ok(Strptime {
            src: format.to_string(),
            items,
            iso8601: false,
        })
    }

    /// The format text.
    pub fn as_str(&self) -> &str {
        &self.src
    }

    /// Whether the format itself carries a zone or absolute time (`%z`, `%Z`, `%s`, `%Q`).
    pub fn has_zone(&self) -> bool {
        self.iso8601
            || self.items.iter().any(|i| {
                matches!(
                    i,
                    PItem::Dir {
                        conv: 'z' | 'Z' | 's' | 'Q',
                        ..
                    }
                )
            })
    }

    /// Parses `text` with wall times read in `zone`, filling missing leading fields from `now`.
    pub fn parse(&self, text: &str, zone: &Zone, now: EventTime) -> Result<EventTime, String> {
        if self.iso8601 {
            return parse_iso8601(text, zone);
        }
        let mut st = State::default();
        let rest = run_items(&self.items, text, &mut st)?;
        if !rest.trim().is_empty() {
            return Err(format!("unexpected trailing text {rest:?}"));
        }
        st.resolve(zone, now)
    }
}

fn compile_into(format: &str, items: &mut Vec<PItem>, depth: u8) -> Result<(), String> {
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            let mut width: Option<usize> = None;
            // flags
            while let Some(&f) = chars.peek() {
                if matches!(f, '-' | '_' | '0' | '^' | '#' | ':') {
                    chars.next();
                } else {
                    break;
                }
            }
            while let Some(&d) = chars.peek() {
                if let Some(v) = d.to_digit(10) {
                    width = Some(width.unwrap_or(0) * 10 + v as usize);
                    chars.next();
                } else {
                    break;
                }
            }
            let conv = chars
                .next()
                .ok_or_else(|| "format ends with '%'".to_string())?;
            if !PARSE_DIRECTIVES.contains(conv) {
                return Err(format!("unsupported directive %{conv}"));
            }
            let expand = match conv {
                'T' | 'X' => Some("%H:%M:%S"),
                'D' | 'x' => Some("%m/%d/%y"),
                'F' => Some("%Y-%m-%d"),
                'R' => Some("%H:%M"),
                'r' => Some("%I:%M:%S %p"),
                'c' => Some("%a %b %e %H:%M:%S %Y"),
                '+' => Some("%a %b %e %H:%M:%S %Z %Y"),
                _ => None,
            };
            if let Some(e) = expand {
                if depth > 2 {
                    return Err("format nests too deep".to_string());
                }
                compile_into(e, items, depth + 1)?;
            } else if conv == 'n' || conv == 't' {
                items.push(PItem::Space);
            } else if conv == '%' {
                items.push(PItem::Lit('%'));
            } else {
                items.push(PItem::Dir {
                    conv,
                    width,
                    next_num: num_pattern_follows(chars.clone()),
                });
            }
        } else if c.is_whitespace() {
            if items.last() != Some(&PItem::Space) {
                items.push(PItem::Space);
            }
        } else {
            items.push(PItem::Lit(c));
        }
    }
    Ok(())
}

/// Ruby's `num_pattern_p` (`date_strptime.c`) on the rest of the format: a digit, or a
/// `%` (optionally `E`/`O`) followed by a numeric conversion or a digit.
fn num_pattern_follows(mut rest: impl Iterator<Item = char>) -> bool {
    match rest.next() {
        Some(c) if c.is_ascii_digit() => true,
        Some('%') => {
            let mut c = rest.next();
            if matches!(c, Some('E' | 'O')) {
                c = rest.next();
            }
            c.is_some_and(|c| c.is_ascii_digit() || "CDdeFGgHIjkLlMmNQRrSsTUuVvWwXxYy".contains(c))
        }
        _ => false,
    }
}

#[derive(Debug, Default)]
struct State {
    year: Option<i32>,
    century: Option<i32>,
    yy: Option<i32>,
    month: Option<u32>,
    day: Option<u32>,
    yday: Option<u32>,
    hour: Option<u32>,
    hour12: Option<u32>,
    pm: Option<bool>,
    minute: Option<u32>,
    second: Option<u32>,
    nsec: u32,
    offset: Option<i32>,
    epoch: Option<(i64, u32)>,
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const DAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

fn take_digits(s: &str, max: usize) -> Option<(u64, &str)> {
    let n = s
        .bytes()
        .take(max)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if n == 0 {
        return None;
    }
    let v = s[..n].parse::<u64>().ok()?;
    Some((v, &s[n..]))
}

fn take_signed(s: &str, max: usize) -> Option<(i64, &str)> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (v, rest) = take_digits(body, max)?;
    let v = i64::try_from(v).ok()?;
    Some((if neg { -v } else { v }, rest))
}

fn take_name<'a>(s: &'a str, names: &[&str]) -> Option<(usize, &'a str)> {
    let lower = s.get(..s.len().min(12))?.to_ascii_lowercase();
    for (i, full) in names.iter().enumerate() {
        if lower.starts_with(full) {
            return Some((i, &s[full.len()..]));
        }
    }
    for (i, full) in names.iter().enumerate() {
        if lower.starts_with(&full[..3]) {
            return Some((i, &s[3..]));
        }
    }
    None
}

fn zone_abbrev_offset(name: &str) -> Option<i32> {
    let h = match name.to_ascii_uppercase().as_str() {
        "UTC" | "GMT" | "UT" | "Z" => 0,
        "EST" => -5,
        "EDT" => -4,
        "CST" => -6,
        "CDT" => -5,
        "MST" => -7,
        "MDT" => -6,
        "PST" => -8,
        "PDT" => -7,
        "JST" => 9,
        "KST" => 9,
        "CET" => 1,
        "CEST" => 2,
        "BST" => 1,
        _ => return None,
    };
    Some(h * 3600)
}

/// Reads a zone: `Z`, `UTC`, `+09:00`, `+0900`, `+09`, or a known abbreviation.
fn take_zone(s: &str) -> Option<(i32, &str)> {
    let b = s.as_bytes();
    match b.first()? {
        b'+' | b'-' => {
            // sign, 2 digits, optional ':' + 2 digits (+ optional ':' + 2 digits)
            let mut end = 1;
            let mut digits = 0;
            while end < b.len() && digits < 6 {
                if b[end].is_ascii_digit() {
                    digits += 1;
                    end += 1;
                } else if b[end] == b':' && digits > 0 && digits % 2 == 0 {
                    end += 1;
                } else {
                    break;
                }
            }
            if digits == 1 || digits == 3 || digits == 5 {
                end -= 1;
            }
            let candidate = s.get(..end)?.trim_end_matches(':');
            let off = parse_numeric_offset(candidate, true)?;
            Some((off, &s[candidate.len()..]))
        }
        _ => {
            let n = s.bytes().take_while(|c| c.is_ascii_alphabetic()).count();
            if n == 0 {
                return None;
            }
            let off = zone_abbrev_offset(&s[..n])?;
            let rest = &s[n..];
            // "UTC+9" / "GMT-05:00" style
            if let Some((extra, rest2)) = take_zone(rest).filter(|_| rest.starts_with(['+', '-'])) {
                return Some((off + extra, rest2));
            }
            Some((off, rest))
        }
    }
}

fn run_items<'a>(items: &[PItem], mut s: &'a str, st: &mut State) -> Result<&'a str, String> {
    for item in items {
        match item {
            PItem::Lit(c) => {
                s = s
                    .strip_prefix(*c)
                    .ok_or_else(|| format!("expected {c:?} at {s:?}"))?;
            }
            PItem::Space => s = s.trim_start(),
            PItem::Dir {
                conv,
                width,
                next_num,
            } => {
                let bad = || format!("%{conv} does not match at {s:?}");
                // Field widths as Ruby's `Date._strptime` reads them: `%Y` (and `%C`, `%L`,
                // `%N`) read every digit unless a numeric field follows, then 4 (2, 3, 9);
                // the others have fixed maxima. An explicit width (`%3N`) wins.
                let bounded = |n: usize| width.unwrap_or(if *next_num { n } else { usize::MAX });
                match conv {
                    'Y' => {
                        let (v, r) = take_signed(s, bounded(4)).ok_or_else(bad)?;
                        st.year = Some(i32::try_from(v).map_err(|_| bad())?);
                        s = r;
                    }
                    'C' => {
                        let (v, r) = take_signed(s, bounded(2)).ok_or_else(bad)?;
                        st.century = Some(i32::try_from(v).map_err(|_| bad())?);
                        s = r;
                    }
                    'y' => {
                        let (v, r) = take_digits(s, width.unwrap_or(2)).ok_or_else(bad)?;
                        st.yy = Some(v as i32);
                        s = r;
                    }
                    'm' | 'd' | 'e' | 'H' | 'k' | 'I' | 'l' | 'M' | 'S' => {
                        // `%d %e %H %k %I %l` take a leading space as padding, then 1 digit.
                        let padded =
                            matches!(conv, 'd' | 'e' | 'H' | 'k' | 'I' | 'l') && s.starts_with(' ');
                        let (v, r) = if padded {
                            take_digits(&s[1..], width.map_or(1, |w| w.saturating_sub(1)))
                        } else {
                            take_digits(s, width.unwrap_or(2))
                        }
                        .ok_or_else(bad)?;
                        let v = u32::try_from(v).map_err(|_| bad())?;
                        match conv {
                            'm' if (1..=12).contains(&v) => st.month = Some(v),
                            'd' | 'e' if (1..=31).contains(&v) => st.day = Some(v),
                            'H' | 'k' if v <= 24 => st.hour = Some(v),
                            'I' | 'l' if (1..=12).contains(&v) => st.hour12 = Some(v),
                            'M' if v <= 59 => st.minute = Some(v),
                            'S' if v <= 60 => st.second = Some(v),
                            _ => return Err(format!("%{conv} value {v} out of range")),
                        }
                        s = r;
                    }
                    'j' => {
                        let (v, r) = take_digits(s, width.unwrap_or(3)).ok_or_else(bad)?;
                        if !(1..=366).contains(&v) {
                            return Err(format!("%j value {v} out of range"));
                        }
                        st.yday = Some(v as u32);
                        s = r;
                    }
                    'L' | 'N' => {
                        let max = bounded(if *conv == 'L' { 3 } else { 9 });
                        let n = s
                            .bytes()
                            .take(max)
                            .take_while(|b| b.is_ascii_digit())
                            .count();
                        if n == 0 {
                            return Err(bad());
                        }
                        let mut ns: u32 = 0;
                        for (i, b) in s.bytes().take(n).enumerate() {
                            if i < 9 {
                                ns = ns * 10 + u32::from(b - b'0');
                            }
                        }
                        for _ in n..9 {
                            ns *= 10;
                        }
                        st.nsec = ns;
                        s = &s[n..];
                    }
                    'z' | 'Z' => {
                        let (off, r) = take_zone(s).ok_or_else(bad)?;
                        st.offset = Some(off);
                        s = r;
                    }
                    'b' | 'B' | 'h' => {
                        let (i, r) = take_name(s, &MONTHS).ok_or_else(bad)?;
                        st.month = Some(i as u32 + 1);
                        s = r;
                    }
                    'a' | 'A' => {
                        let (_, r) = take_name(s, &DAYS).ok_or_else(bad)?;
                        s = r;
                    }
                    'u' | 'w' => {
                        let (_, r) = take_digits(s, 1).ok_or_else(bad)?;
                        s = r;
                    }
                    'p' | 'P' => {
                        let lower = s.get(..2).map(str::to_ascii_lowercase);
                        let lower4 = s.get(..4).map(str::to_ascii_lowercase);
                        if lower4.as_deref() == Some("a.m.") || lower4.as_deref() == Some("p.m.") {
                            st.pm = Some(lower4.as_deref() == Some("p.m."));
                            s = &s[4..];
                        } else {
                            match lower.as_deref() {
                                Some("am") => st.pm = Some(false),
                                Some("pm") => st.pm = Some(true),
                                _ => return Err(bad()),
                            }
                            s = &s[2..];
                        }
                    }
                    's' => {
                        let (v, r) = take_signed(s, width.unwrap_or(19)).ok_or_else(bad)?;
                        st.epoch = Some((v, 0));
                        s = r;
                    }
                    'Q' => {
                        let (v, r) = take_signed(s, width.unwrap_or(22)).ok_or_else(bad)?;
                        st.epoch =
                            Some((v.div_euclid(1000), (v.rem_euclid(1000) as u32) * 1_000_000));
                        s = r;
                    }
                    _ => return Err(format!("unsupported directive %{conv}")),
                }
            }
        }
    }
    Ok(s)
}

impl State {
    fn resolve(self, zone: &Zone, now: EventTime) -> Result<EventTime, String> {
        if let Some((sec, nsec)) = self.epoch {
            return EventTime::from_parts(sec, if nsec > 0 { nsec } else { self.nsec })
                .ok_or_else(|| format!("epoch {sec} out of range"));
        }
        let mut year = self.year;
        if year.is_none() {
            if let Some(yy) = self.yy {
                year = Some(match self.century {
                    Some(c) => c * 100 + yy,
                    None if yy < 69 => 2000 + yy,
                    None => 1900 + yy,
                });
            } else if let Some(c) = self.century {
                year = Some(c * 100);
            }
        }
        let mut hour = self.hour.unwrap_or(0);
        if let Some(h12) = self.hour12 {
            hour = h12 % 12;
        }
        if let Some(true) = self.pm {
            if hour < 12 {
                hour += 12;
            }
        }
        let minute = self.minute.unwrap_or(0);
        let second = self.second.unwrap_or(0).min(59);
        let now_local = now
            .to_utc()
            .map(|u| {
                let off = zone.offset_at(&u.naive_utc());
                u.naive_utc() + chrono::Duration::seconds(i64::from(off.local_minus_utc()))
            })
            .ok_or_else(|| "clock out of range".to_string())?;
        let inferred_year = year.is_none() && self.yday.is_none();
        let date = if let Some(yday) = self.yday {
            let y = year.unwrap_or(now_local.year());
            NaiveDate::from_yo_opt(y, yday).ok_or_else(|| format!("no day {yday} in {y}"))?
        } else {
            // Ruby fills the leading missing fields from now, later ones default to 1.
            let (y, m, d) = match (year, self.month, self.day) {
                (Some(y), m, d) => (y, m.unwrap_or(1), d.unwrap_or(1)),
                (None, Some(m), d) => (now_local.year(), m, d.unwrap_or(1)),
                (None, None, Some(d)) => (now_local.year(), now_local.month(), d),
                (None, None, None) => (now_local.year(), now_local.month(), now_local.day()),
            };
            NaiveDate::from_ymd_opt(y, m, d).ok_or_else(|| format!("invalid date {y}-{m}-{d}"))?
        };
        let hour24 = hour.min(24);
        let mut naive = date
            .and_hms_opt(hour24 % 24, minute, second)
            .ok_or_else(|| "invalid time of day".to_string())?;
        if hour24 == 24 {
            naive += chrono::Duration::days(1);
        }
        if inferred_year && self.month.is_some() && naive > now_local + chrono::Duration::days(1) {
            if let Some(prev) = naive.with_year(naive.year() - 1) {
                naive = prev;
            }
        }
        let off = match self.offset {
            Some(o) => o,
            None => zone.offset_for_local(&naive).local_minus_utc(),
        };
        let secs = naive.and_utc().timestamp() - i64::from(off);
        EventTime::from_parts(secs, self.nsec).ok_or_else(|| format!("time {secs} out of range"))
    }
}

/// The date/time shapes `Time.iso8601` accepts, compiled once.
static ISO8601_FORMS: std::sync::LazyLock<Vec<Vec<PItem>>> = std::sync::LazyLock::new(|| {
    [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d",
        "%Y%m%dT%H%M%S",
    ]
    .iter()
    .filter_map(|f| {
        let mut items = Vec::new();
        compile_into(f, &mut items, 0).ok().map(|()| items)
    })
    .collect()
});

/// `Time.iso8601`: `YYYY-MM-DD[Thh:mm[:ss[.frac]]][Z|±hh:mm|±hhmm]`.
fn parse_iso8601(text: &str, zone: &Zone) -> Result<EventTime, String> {
    let t = text.trim();
    let mut st = State::default();
    for items in ISO8601_FORMS.iter() {
        st = State::default();
        let Ok(mut rest) = run_items(items, t, &mut st) else {
            continue;
        };
        if let Some(frac) = rest.strip_prefix(['.', ',']) {
            rest = run_items(
                &[PItem::Dir {
                    conv: 'N',
                    width: None,
                    next_num: false,
                }],
                frac,
                &mut st,
            )?;
        }
        if !rest.is_empty() {
            let (off, r) = take_zone(rest).ok_or_else(|| format!("bad zone {rest:?}"))?;
            if !r.is_empty() {
                continue;
            }
            st.offset = Some(off);
        }
        return st.resolve(zone, EventTime::now());
    }
    let _ = st;
    Err(format!("{t:?} is not ISO 8601"))
}

/// Formats `Time.parse` understands well enough for log timestamps, tried in order.
const FLEXIBLE_FORMATS: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S.%N%z",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S.%N",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S.%N %z",
    "%Y-%m-%d %H:%M:%S %z",
    "%Y-%m-%d %H:%M:%S.%N",
    "%Y-%m-%d %H:%M:%S",
    "%Y/%m/%d %H:%M:%S.%N %z",
    "%Y/%m/%d %H:%M:%S %z",
    "%Y/%m/%d %H:%M:%S.%N",
    "%Y/%m/%d %H:%M:%S",
    "%a, %d %b %Y %H:%M:%S %z",
    "%d %b %Y %H:%M:%S %z",
    "%a %b %d %H:%M:%S.%N %Y",
    "%a %b %d %H:%M:%S %Y",
    "%a %b %d %H:%M:%S %z %Y",
    "%d/%b/%Y:%H:%M:%S %z",
    "%b %d %H:%M:%S.%N",
    "%b %d %H:%M:%S",
    "%b %d %Y %H:%M:%S",
    "%b %d %H:%M:%S.%N %Y",
    "%b %d %H:%M:%S %Y",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d",
];

// ---------------------------------------------------------------------------------------
// TimeParser

/// `time_type`: how a time field is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeType {
    /// Text, read with `time_format` (or `Time.parse`-like guessing when none).
    String,
    /// Integer seconds (number or numeric string).
    Unixtime,
    /// Float seconds (number or numeric string), exact to the nanosecond for strings.
    Float,
    /// Each of `time_format`, then `time_format_fallbacks`, which may name `unixtime`/`float`.
    Mixed,
}

impl TimeType {
    /// Parses the `time_type` value.
    pub fn parse(s: &str) -> Option<TimeType> {
        match s {
            "string" => Some(TimeType::String),
            "unixtime" => Some(TimeType::Unixtime),
            "float" => Some(TimeType::Float),
            "mixed" => Some(TimeType::Mixed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Candidate {
    Unixtime,
    Float,
    Format(Strptime),
    Flexible,
}

/// Reads time values (Fluentd's TimeParser/NumericTimeParser/MixedTimeParser).
#[derive(Debug, Clone)]
pub struct TimeParser {
    candidates: Vec<Candidate>,
    zone: Zone,
    describe: String,
}

impl TimeParser {
    /// A parser for `time_type`, an optional `time_format`, `fallbacks` and the wall-time zone.
    pub fn new(
        time_type: TimeType,
        format: Option<&str>,
        fallbacks: &[String],
        zone: Zone,
    ) -> Result<TimeParser, String> {
        fn cand(f: &str, numeric_names: bool) -> Result<Candidate, String> {
            Ok(match f {
                "unixtime" if numeric_names => Candidate::Unixtime,
                "float" if numeric_names => Candidate::Float,
                _ => Candidate::Format(Strptime::new(f)?),
            })
        }
        let mut candidates = Vec::new();
        match time_type {
            TimeType::Unixtime => candidates.push(Candidate::Unixtime),
            TimeType::Float => candidates.push(Candidate::Float),
            TimeType::String | TimeType::Mixed => {
                let mixed = time_type == TimeType::Mixed;
                match format {
                    Some(f) => candidates.push(cand(f, mixed)?),
                    None if fallbacks.is_empty() => candidates.push(Candidate::Flexible),
                    None => {}
                }
                for f in fallbacks {
                    candidates.push(cand(f, true)?);
                }
            }
        }
        let mut describe = String::new();
        for c in &candidates {
            if !describe.is_empty() {
                describe.push_str(" | ");
            }
            describe.push_str(match c {
                Candidate::Unixtime => "unixtime",
                Candidate::Float => "float",
                Candidate::Format(s) => s.as_str(),
                Candidate::Flexible => "(any common format)",
            });
        }
        Ok(TimeParser {
            candidates,
            zone,
            describe,
        })
    }

    /// Builds from `<parse>` params: `time_type`, `time_format`, `time_format_fallbacks`,
    /// `localtime`/`utc`/`timezone`; `default_type`/`default_format` are the parser's defaults.
    pub fn from_params(
        plugin: &str,
        p: &Params,
        default_type: TimeType,
        default_format: Option<&str>,
    ) -> Result<TimeParser, ConfigError> {
        let time_type = match p.get("time_type") {
            Some(t) => TimeType::parse(t).ok_or_else(|| {
                ConfigError::invalid(
                    plugin,
                    "time_type",
                    t,
                    "expected string, unixtime, float or mixed",
                )
            })?,
            None => default_type,
        };
        let format = p.get("time_format").or(default_format);
        let fallbacks = p.list(plugin, "time_format_fallbacks")?.unwrap_or_default();
        let zone = Zone::from_params(plugin, p)?;
        if time_type == TimeType::Mixed && format.is_none() && fallbacks.is_empty() {
            return Err(ConfigError::invalid(
                plugin,
                "time_type",
                "mixed",
                "time_type is mixed but time_format and time_format_fallbacks are empty",
            ));
        }
        if time_type == TimeType::String
            && format.is_none()
            && fallbacks.is_empty()
            && zone != Zone::Local
        {
            let (param, value) = match p.get("timezone") {
                Some(tz) => ("timezone", tz),
                None if p.has("utc") => ("utc", p.str_or("utc", "")),
                None => ("localtime", p.str_or("localtime", "")),
            };
            return Err(ConfigError::invalid(
                plugin,
                param,
                value,
                "specifying timezone requires time format",
            ));
        }
        TimeParser::new(time_type, format, &fallbacks, zone)
            .map_err(|e| ConfigError::invalid(plugin, "time_format", format.unwrap_or(""), e))
    }

    /// The zone wall times are read in.
    pub fn zone(&self) -> Zone {
        self.zone.clone()
    }

    fn err(&self, value: &str, reason: impl Into<String>) -> ParseError {
        ParseError::Time {
            value: value.to_string(),
            format: self.describe.clone(),
            reason: reason.into(),
        }
    }

    /// Parses a text time value.
    pub fn parse_str(&self, text: &str) -> Result<EventTime, ParseError> {
        self.parse_str_at(text, EventTime::now())
    }

    /// Parses a text time value, with `now` supplying missing date fields.
    pub fn parse_str_at(&self, text: &str, now: EventTime) -> Result<EventTime, ParseError> {
        let mut last = String::from("no format");
        for c in &self.candidates {
            let r = match c {
                Candidate::Unixtime => parse_unixtime_str(text),
                Candidate::Float => parse_float_str(text),
                Candidate::Format(f) => f.parse(text, &self.zone, now),
                Candidate::Flexible => parse_flexible(text, &self.zone, now),
            };
            match r {
                Ok(t) => return Ok(t),
                Err(e) => last = e,
            }
        }
        Err(self.err(text, last))
    }

    /// Parses a record value: text, or a number for numeric time types.
    pub fn parse_value(&self, v: &Value) -> Result<EventTime, ParseError> {
        match v {
            Value::String(s) => match s.as_str() {
                Some(t) => self.parse_str(t),
                None => Err(self.err(&String::from_utf8_lossy(s.as_bytes()), "not UTF-8")),
            },
            Value::Binary(b) => match std::str::from_utf8(b) {
                Ok(t) => self.parse_str(t),
                Err(_) => Err(self.err(&String::from_utf8_lossy(b), "not UTF-8")),
            },
            Value::Integer(_) | Value::F32(_) | Value::F64(_) => {
                let f = match v {
                    Value::Integer(i) => i.as_f64().unwrap_or(f64::NAN),
                    Value::F32(f) => f64::from(*f),
                    Value::F64(f) => *f,
                    _ => f64::NAN,
                };
                for c in &self.candidates {
                    let r = match c {
                        Candidate::Unixtime => match v {
                            Value::Integer(i) => {
                                i.as_i64().and_then(|n| EventTime::from_parts(n, 0))
                            }
                            _ => EventTime::from_f64(f.trunc()),
                        },
                        Candidate::Float => match v {
                            Value::Integer(i) => {
                                i.as_i64().and_then(|n| EventTime::from_parts(n, 0))
                            }
                            _ => EventTime::from_f64(f),
                        },
                        _ => None,
                    };
                    if let Some(t) = r {
                        return Ok(t);
                    }
                }
                Err(self.err(&v.to_string(), "value must be a string"))
            }
            other => Err(self.err(&other.to_string(), "value must be a string or a number")),
        }
    }
}

fn parse_unixtime_str(text: &str) -> Result<EventTime, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i64>() {
        return EventTime::from_parts(n, 0).ok_or_else(|| format!("{n} out of range"));
    }
    parse_float_str(t).map(|e| EventTime::new(e.sec, 0))
}

fn parse_float_str(text: &str) -> Result<EventTime, String> {
    let t = text.trim();
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
    {
        let sec: i64 = int.parse().map_err(|_| format!("{t:?} out of range"))?;
        let mut ns: u32 = 0;
        for (i, b) in frac.bytes().enumerate().take(9) {
            let _ = i;
            ns = ns * 10 + u32::from(b - b'0');
        }
        for _ in frac.len().min(9)..9 {
            ns *= 10;
        }
        return EventTime::from_parts(sec, ns).ok_or_else(|| format!("{t:?} out of range"));
    }
    let f: f64 = t.parse().map_err(|_| format!("{t:?} is not a number"))?;
    EventTime::from_f64(f).ok_or_else(|| format!("{t:?} out of range"))
}

/// [`FLEXIBLE_FORMATS`] compiled once.
static FLEXIBLE: std::sync::LazyLock<Vec<Strptime>> = std::sync::LazyLock::new(|| {
    FLEXIBLE_FORMATS
        .iter()
        .filter_map(|f| Strptime::new(f).ok())
        .collect()
});

fn parse_flexible(text: &str, zone: &Zone, now: EventTime) -> Result<EventTime, String> {
    let t = text.trim();
    if let Ok(r) = parse_iso8601(t, zone) {
        return Ok(r);
    }
    for p in FLEXIBLE.iter() {
        if let Ok(r) = p.parse(t, zone, now) {
            return Ok(r);
        }
    }
    Err(format!("no known time format matches {t:?}"))
}

// ---------------------------------------------------------------------------------------
// strftime

#[derive(Debug, Clone, PartialEq)]
enum FItem {
    Lit(String),
    Dir {
        conv: char,
        flag: Option<char>,
        colons: u8,
        width: Option<usize>,
    },
}

/// A compiled Ruby `strftime` format.
#[derive(Debug, Clone, PartialEq)]
pub struct Strftime {
    items: Vec<FItem>,
}

const FORMAT_DIRECTIVES: &str = "YCymBbhdejHkIlPpMSLNzZAaUuWwGgVsQnt%cDFTRrxX+";

impl Strftime {
    /// Compiles a Ruby `strftime` format.
    pub fn new(format: &str) -> Result<Strftime, String> {
        let mut items = Vec::new();
        let mut lit = String::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                lit.push(c);
                continue;
            }
            let mut flag = None;
            let mut colons = 0u8;
            while let Some(&f) = chars.peek() {
                match f {
                    '-' | '_' | '0' | '^' | '#' => flag = Some(f),
                    ':' => colons += 1,
                    _ => break,
                }
                chars.next();
            }
            let mut width: Option<usize> = None;
            while let Some(&d) = chars.peek() {
                if let Some(v) = d.to_digit(10) {
                    width = Some(
                        width
                            .unwrap_or(0)
                            .saturating_mul(10)
                            .saturating_add(v as usize)
                            .min(64),
                    );
                    chars.next();
                } else {
                    break;
                }
            }
            let Some(conv) = chars.next() else {
                lit.push('%');
                break;
            };
            if !FORMAT_DIRECTIVES.contains(conv) {
                return Err(format!("unsupported directive %{conv}"));
            }
            if !lit.is_empty() {
                items.push(FItem::Lit(std::mem::take(&mut lit)));
            }
            items.push(FItem::Dir {
                conv,
                flag,
                colons,
                width,
            });
        }
        if !lit.is_empty() {
            items.push(FItem::Lit(lit));
        }
        Ok(Strftime { items })
    }

    /// Whether the format shows sub-second digits.
    pub fn has_subsec(&self) -> bool {
        self.items.iter().any(|i| {
            matches!(
                i,
                FItem::Dir {
                    conv: 'L' | 'N',
                    ..
                }
            )
        })
    }

    /// Renders `t` (already shifted to `off`) into `out`.
    fn render(&self, t: &NaiveDateTime, off: i32, abbr: &str, epoch: EventTime, out: &mut String) {
        for item in &self.items {
            match item {
                FItem::Lit(s) => out.push_str(s),
                FItem::Dir {
                    conv,
                    flag,
                    colons,
                    width,
                } => render_dir(*conv, *flag, *colons, *width, t, off, abbr, epoch, out),
            }
        }
    }
}

fn pad_num(
    out: &mut String,
    v: i64,
    default_width: usize,
    default_pad: char,
    flag: Option<char>,
    width: Option<usize>,
) {
    let w = width.unwrap_or(default_width);
    let pad = match flag {
        Some('-') => None,
        Some('_') => Some(' '),
        Some('0') => Some('0'),
        _ => Some(default_pad),
    };
    let digits = v.unsigned_abs().to_string();
    if v < 0 {
        out.push('-');
    }
    if let Some(p) = pad {
        let used = digits.len() + usize::from(v < 0);
        for _ in used..w {
            out.push(p);
        }
    }
    out.push_str(&digits);
}

fn push_text(out: &mut String, s: &str, flag: Option<char>, width: Option<usize>) {
    let s = match flag {
        Some('^') | Some('#') => s.to_uppercase(),
        _ => s.to_string(),
    };
    if let Some(w) = width {
        for _ in s.chars().count()..w {
            out.push(' ');
        }
    }
    out.push_str(&s);
}

#[allow(clippy::too_many_arguments)]
fn render_dir(
    conv: char,
    flag: Option<char>,
    colons: u8,
    width: Option<usize>,
    t: &NaiveDateTime,
    off: i32,
    abbr: &str,
    epoch: EventTime,
    out: &mut String,
) {
    let sub = |f: &str, out: &mut String| {
        if let Ok(s) = Strftime::new(f) {
            s.render(t, off, abbr, epoch, out);
        }
    };
    match conv {
        'Y' => pad_num(out, i64::from(t.year()), 4, '0', flag, width),
        'C' => pad_num(
            out,
            i64::from(t.year().div_euclid(100)),
            2,
            '0',
            flag,
            width,
        ),
        'y' => pad_num(
            out,
            i64::from(t.year().rem_euclid(100)),
            2,
            '0',
            flag,
            width,
        ),
        'm' => pad_num(out, i64::from(t.month()), 2, '0', flag, width),
        'B' => push_text(
            out,
            &capitalize(MONTHS[t.month0() as usize % 12]),
            flag,
            width,
        ),
        'b' | 'h' => push_text(
            out,
            &capitalize(&MONTHS[t.month0() as usize % 12][..3]),
            flag,
            width,
        ),
        'd' => pad_num(out, i64::from(t.day()), 2, '0', flag, width),
        'e' => pad_num(out, i64::from(t.day()), 2, ' ', flag, width),
        'j' => pad_num(out, i64::from(t.ordinal()), 3, '0', flag, width),
        'H' => pad_num(out, i64::from(t.hour()), 2, '0', flag, width),
        'k' => pad_num(out, i64::from(t.hour()), 2, ' ', flag, width),
        'I' | 'l' => {
            let h = t.hour() % 12;
            let h = if h == 0 { 12 } else { h };
            pad_num(
                out,
                i64::from(h),
                2,
                if conv == 'I' { '0' } else { ' ' },
                flag,
                width,
            );
        }
        'P' => out.push_str(if t.hour() < 12 { "am" } else { "pm" }),
        'p' => {
            let s = if t.hour() < 12 { "AM" } else { "PM" };
            if flag == Some('#') {
                out.push_str(&s.to_lowercase());
            } else {
                out.push_str(s);
            }
        }
        'M' => pad_num(out, i64::from(t.minute()), 2, '0', flag, width),
        'S' => pad_num(out, i64::from(t.second()), 2, '0', flag, width),
        'L' | 'N' => {
            let w = width.unwrap_or(if conv == 'L' { 3 } else { 9 });
            let digits = format!("{:09}", epoch.nsec);
            if w <= 9 {
                out.push_str(&digits[..w]);
            } else {
                out.push_str(&digits);
                for _ in 9..w {
                    out.push('0');
                }
            }
        }
        'z' => {
            let sign = if off < 0 { '-' } else { '+' };
            let a = off.unsigned_abs();
            let (h, m, s) = (a / 3600, (a / 60) % 60, a % 60);
            out.push(sign);
            match colons {
                0 => {
                    let _ = write!(out, "{h:02}{m:02}");
                }
                1 => {
                    let _ = write!(out, "{h:02}:{m:02}");
                }
                _ => {
                    let _ = write!(out, "{h:02}:{m:02}:{s:02}");
                }
            }
        }
        'Z' => push_text(out, abbr, flag, width),
        'A' => push_text(
            out,
            &capitalize(DAYS[t.weekday().num_days_from_sunday() as usize % 7]),
            flag,
            width,
        ),
        'a' => push_text(
            out,
            &capitalize(&DAYS[t.weekday().num_days_from_sunday() as usize % 7][..3]),
            flag,
            width,
        ),
        'u' => pad_num(
            out,
            i64::from(t.weekday().number_from_monday()),
            1,
            '0',
            flag,
            width,
        ),
        'w' => pad_num(
            out,
            i64::from(t.weekday().num_days_from_sunday()),
            1,
            '0',
            flag,
            width,
        ),
        'U' => {
            let v = (t.ordinal0() + 7 - t.weekday().num_days_from_sunday()) / 7;
            pad_num(out, i64::from(v), 2, '0', flag, width);
        }
        'W' => {
            let v = (t.ordinal0() + 7 - t.weekday().num_days_from_monday()) / 7;
            pad_num(out, i64::from(v), 2, '0', flag, width);
        }
        'G' => pad_num(out, i64::from(t.iso_week().year()), 4, '0', flag, width),
        'g' => pad_num(
            out,
            i64::from(t.iso_week().year().rem_euclid(100)),
            2,
            '0',
            flag,
            width,
        ),
        'V' => pad_num(out, i64::from(t.iso_week().week()), 2, '0', flag, width),
        's' => pad_num(out, i64::from(epoch.sec), 1, '0', flag, width),
        'Q' => pad_num(
            out,
            (epoch.as_nanos() / 1_000_000) as i64,
            1,
            '0',
            flag,
            width,
        ),
        'n' => out.push('\n'),
        't' => out.push('\t'),
        '%' => out.push('%'),
        'c' => sub("%a %b %e %H:%M:%S %Y", out),
        'D' | 'x' => sub("%m/%d/%y", out),
        'F' => sub("%Y-%m-%d", out),
        'T' | 'X' => sub("%H:%M:%S", out),
        'R' => sub("%H:%M", out),
        'r' => sub("%I:%M:%S %p", out),
        '+' => sub("%a %b %e %H:%M:%S %Z %Y", out),
        _ => {}
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Formats event times (Fluentd's TimeFormatter): `time_format` in a zone, or ISO 8601.
#[derive(Debug, Clone)]
pub struct TimeFormatter {
    format: Option<Strftime>,
    zone: Zone,
    /// ISO 8601 with `Z` for UTC (Ruby `Time#utc.iso8601`).
    utc_z: bool,
}

impl TimeFormatter {
    /// Fluentd's rules (`time.rb` `TimeFormatter`, `timezone.rb` `formatter`): `format` in
    /// the zone when given; else ISO 8601 (`Time#iso8601`) in the zone: `2013-02-28T12:00:00`
    /// then the offset with a colon (`+09:00`) for `timezone` and for local time, `Z` only
    /// for UTC chosen by `utc true`/`localtime false` (`Time#utc.iso8601`).
    pub fn new(
        format: Option<&str>,
        zone: Zone,
        timezone_given: bool,
    ) -> Result<TimeFormatter, String> {
        let format = format.map(Strftime::new).transpose()?;
        // `timezone UTC`/`+00:00` is `Time#localtime(0)`, which iso8601 prints as `+00:00`.
        let utc_z = format.is_none() && zone == Zone::Utc && !timezone_given;
        Ok(TimeFormatter {
            format,
            zone,
            utc_z,
        })
    }

    /// Builds from `time_format`, `localtime`, `utc`, `timezone` params.
    pub fn from_params(
        plugin: &str,
        p: &Params,
        default_format: Option<&str>,
    ) -> Result<TimeFormatter, ConfigError> {
        let zone = Zone::from_params(plugin, p)?;
        let format = p.get("time_format").or(default_format);
        TimeFormatter::new(format, zone, p.has("timezone"))
            .map_err(|e| ConfigError::invalid(plugin, "time_format", format.unwrap_or(""), e))
    }

    /// Whether the text depends only on the second (no `%L`, `%N` or `%Q`): callers may
    /// then reuse one rendering for every event of the same second.
    pub fn ignores_subsec(&self) -> bool {
        self.format.as_ref().is_none_or(|f| {
            !f.items.iter().any(|i| {
                matches!(
                    i,
                    FItem::Dir {
                        conv: 'L' | 'N' | 'Q',
                        ..
                    }
                )
            })
        })
    }

    /// Appends the formatted time to `out`.
    pub fn format_into(&self, t: EventTime, out: &mut String) -> Result<(), FormatError> {
        let utc = t.to_utc().ok_or(FormatError::Time {
            sec: t.sec,
            nsec: t.nsec,
        })?;
        let naive_utc = utc.naive_utc();
        let off = self.zone.offset_at(&naive_utc).local_minus_utc();
        let local = naive_utc + chrono::Duration::seconds(i64::from(off));
        match &self.format {
            Some(f) => {
                let abbr = self.zone.abbreviation(&naive_utc);
                f.render(&local, off, &abbr, t, out);
            }
            None => {
                let _ = write!(out, "{}", local.format("%Y-%m-%dT%H:%M:%S"));
                if self.utc_z {
                    out.push('Z');
                } else {
                    render_dir('z', None, 1, None, &local, off, "", t, out);
                }
            }
        }
        Ok(())
    }

    /// The formatted time as a new string.
    pub fn format(&self, t: EventTime) -> Result<String, FormatError> {
        let mut s = String::new();
        self.format_into(t, &mut s)?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> Zone {
        Zone::Utc
    }
    fn fixed(h: i32) -> Zone {
        Zone::Fixed(FixedOffset::east_opt(h * 3600).unwrap_or(utc_fixed()))
    }
    /// 2016-06-15T12:00:00Z, a fixed "now" for tests.
    const NOW: EventTime = EventTime {
        sec: 1_465_992_000,
        nsec: 0,
    };

    fn check_parse(format: &str, zone: Zone, input: &str, expect: Option<(u32, u32)>) {
        let p = Strptime::new(format).unwrap_or_else(|e| panic!("{format}: {e}"));
        let got = p.parse(input, &zone, NOW).ok().map(|t| (t.sec, t.nsec));
        assert_eq!(got, expect, "format {format:?} input {input:?}");
    }

    #[test]
    fn strptime_table() {
        // (format, zone, input, expected (sec, nsec))
        type Case<'a> = (&'a str, Zone, &'a str, Option<(u32, u32)>);
        let cases: &[Case] = &[
            (
                "%Y-%m-%d %H:%M:%S",
                utc(),
                "2013-02-28 12:00:00",
                Some((1362052800, 0)),
            ),
            (
                "%Y-%m-%d %H:%M:%S",
                fixed(9),
                "2013-02-28 12:00:00",
                Some((1362020400, 0)),
            ),
            (
                "%Y-%m-%d %H:%M:%S %z",
                utc(),
                "2013-02-28 12:00:00 +0900",
                Some((1362020400, 0)),
            ),
            (
                "%Y-%m-%d %H:%M:%S %z",
                utc(),
                "2013-02-28 12:00:00 +09:00",
                Some((1362020400, 0)),
            ),
            (
                "%Y-%m-%d %H:%M:%S %z",
                utc(),
                "2013-02-28 12:00:00 Z",
                Some((1362052800, 0)),
            ),
            (
                "%Y-%m-%dT%H:%M:%S.%L%z",
                utc(),
                "2013-02-28T12:00:00.123+09:00",
                Some((1362020400, 123_000_000)),
            ),
            (
                "%Y-%m-%dT%H:%M:%S.%N%z",
                utc(),
                "2013-02-28T12:00:00.123456789Z",
                Some((1362052800, 123_456_789)),
            ),
            (
                "%Y-%m-%dT%H:%M:%S.%N",
                utc(),
                "2013-02-28T12:00:00.5",
                Some((1362052800, 500_000_000)),
            ),
            (
                "%Y-%m-%dT%H:%M:%S.%3N",
                utc(),
                "2013-02-28T12:00:00.123",
                Some((1362052800, 123_000_000)),
            ),
            (
                "%d/%b/%Y:%H:%M:%S %z",
                utc(),
                "28/Feb/2013:12:00:00 +0900",
                Some((1362020400, 0)),
            ),
            (
                "%d/%B/%Y:%H:%M:%S %z",
                utc(),
                "28/february/2013:12:00:00 +0900",
                Some((1362020400, 0)),
            ),
            (
                "%a %b %d %H:%M:%S %Y",
                utc(),
                "Thu Feb 28 12:00:00 2013",
                Some((1362052800, 0)),
            ),
            ("%s", fixed(9), "1362020400", Some((1362020400, 0))),
            (
                "%Q",
                utc(),
                "1362020400123",
                Some((1362020400, 123_000_000)),
            ),
            ("%Y %j", utc(), "2013 059", Some((1362009600, 0))),
            ("%y-%m-%d", utc(), "13-02-28", Some((1362009600, 0))),
            ("%F %T", utc(), "2013-02-28 12:00:00", Some((1362052800, 0))),
            (
                "%I:%M %p %F",
                utc(),
                "01:00 PM 2013-02-28",
                Some((1362056400, 0)),
            ),
            (
                "%I:%M %p %F",
                utc(),
                "12:00 AM 2013-02-28",
                Some((1362009600, 0)),
            ),
            // whitespace in the format matches any whitespace run
            (
                "%b %d %H:%M:%S %Y",
                utc(),
                "Feb  8 12:00:00 2013",
                Some((1360324800, 0)),
            ),
            // Ruby's `Date._strptime` widths: `%Y` stops at 4 digits before a numeric field
            (
                "%Y%m%d%H%M%S",
                utc(),
                "20120402182059",
                Some((1333390859, 0)),
            ),
            ("%Y%m%d", utc(), "20130228", Some((1362009600, 0))),
            ("%Y%j", utc(), "2013059", Some((1362009600, 0))),
            ("%y%m%d", utc(), "130228", Some((1362009600, 0))),
            ("%d%m%Y", utc(), "28022013", Some((1362009600, 0))),
            ("%H%M%S", utc(), "010203", Some((1465952523, 0))),
            (
                "%Y%m%d%H%M%S%L",
                utc(),
                "20130228120000123",
                Some((1362052800, 123_000_000)),
            ),
            (
                "%Y%m%d%H%M%S%N",
                utc(),
                "20130228120000123456789",
                Some((1362052800, 123_456_789)),
            ),
            (
                "%Y%m%dT%H%M%S%z",
                utc(),
                "20130228T210000+0900",
                Some((1362052800, 0)),
            ),
            // ... and reads every digit when no numeric field follows
            ("%Y-%m-%d", utc(), "02013-02-28", Some((1362009600, 0))),
            ("%Y%m", utc(), "2013123", None),
            // `%e`/`%d`/`%H` take one space as padding then one digit; `%m` does not
            ("%Y-%m-%e", utc(), "2013-02- 8", Some((1360281600, 0))),
            ("%Y-%m-%d", utc(), "2013-02- 8", Some((1360281600, 0))),
            ("%Y-%m-%d", utc(), "2013- 2-08", None),
            ("%Y-%m-%d", utc(), "2013-02-30", None),
            ("%Y-%m-%d", utc(), "2013-02-28x", None),
            ("%Y-%m-%d", utc(), "garbage", None),
            ("%H:%M:%S", utc(), "25:00:00", None),
            (
                "%iso8601",
                utc(),
                "2013-02-28T12:00:00+09:00",
                Some((1362020400, 0)),
            ),
            (
                "%iso8601",
                utc(),
                "2013-02-28T12:00:00.25Z",
                Some((1362052800, 250_000_000)),
            ),
            (
                "%iso8601",
                fixed(9),
                "2013-02-28T12:00:00",
                Some((1362020400, 0)),
            ),
            ("%iso8601", utc(), "2013-02-28", Some((1362009600, 0))),
            ("%iso8601", utc(), "not a time", None),
            // year inferred from now (2016), month given
            (
                "%b %d %H:%M:%S",
                utc(),
                "Feb 28 12:00:00",
                Some((1456660800, 0)),
            ),
            // more than a day in the future: last year
            (
                "%b %d %H:%M:%S",
                utc(),
                "Dec 31 23:59:59",
                Some((1451606399, 0)),
            ),
            // only a time: today's date
            ("%H:%M:%S", utc(), "01:02:03", Some((1465952523, 0))),
            (
                "%Y-%m-%d %H:%M:%S",
                Zone::parse("Asia/Tokyo").unwrap_or(utc()),
                "2013-02-28 12:00:00",
                Some((1362020400, 0)),
            ),
            (
                "%Y-%m-%d %H:%M:%S",
                Zone::parse("America/New_York").unwrap_or(utc()),
                "2013-07-01 12:00:00",
                Some((1372694400, 0)),
            ),
            (
                "%Y-%m-%d %H:%M:%S",
                Zone::parse("America/New_York").unwrap_or(utc()),
                "2013-01-01 12:00:00",
                Some((1357059600, 0)),
            ),
        ];
        for (f, z, i, e) in cases {
            check_parse(f, z.clone(), i, *e);
        }
    }

    #[test]
    fn bad_formats_are_config_errors() {
        assert!(Strptime::new("%Y-%q").is_err());
        assert!(Strptime::new("%").is_err());
        assert!(Strftime::new("%q").is_err());
    }

    #[test]
    fn zones() {
        for (input, expect) in [
            ("+09:00", Some(32400)),
            ("+0900", Some(32400)),
            ("+09", Some(32400)),
            ("-05:30", Some(-19800)),
            ("UTC", Some(0)),
            ("Asia/Tokyo", Some(32400)),
            ("JST", None),
            ("Nowhere/City", None),
            ("+25:00", None),
        ] {
            let got = Zone::parse(input).map(|z| {
                let n = NaiveDate::from_ymd_opt(2013, 1, 1)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .unwrap_or_default();
                z.offset_at(&n).local_minus_utc()
            });
            assert_eq!(got, expect, "{input}");
        }
    }

    fn tp(tt: TimeType, f: Option<&str>, fb: &[&str]) -> TimeParser {
        let fb: Vec<String> = fb.iter().map(|s| s.to_string()).collect();
        TimeParser::new(tt, f, &fb, Zone::Utc).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn time_parser_types() {
        let u = tp(TimeType::Unixtime, None, &[]);
        assert_eq!(
            u.parse_str("1362020400").ok(),
            Some(EventTime::new(1362020400, 0))
        );
        assert_eq!(
            u.parse_value(&Value::from(1362020400)).ok(),
            Some(EventTime::new(1362020400, 0))
        );
        assert_eq!(
            u.parse_value(&Value::from(1362020400.5)).ok(),
            Some(EventTime::new(1362020400, 0))
        );
        let f = tp(TimeType::Float, None, &[]);
        assert_eq!(
            f.parse_str("1362020400.123456789").ok(),
            Some(EventTime::new(1362020400, 123456789))
        );
        assert_eq!(
            f.parse_value(&Value::from(1362020400.5)).ok(),
            Some(EventTime::new(1362020400, 500_000_000))
        );
        assert!(f.parse_str("abc").is_err());
        assert!(f.parse_str("-5").is_err());
        let s = tp(TimeType::String, Some("%Y-%m-%d"), &[]);
        assert!(s.parse_value(&Value::from(5)).is_err());
        let fb = tp(TimeType::String, Some("%Y-%m-%d %H:%M:%S"), &["%iso8601"]);
        assert_eq!(
            fb.parse_str("2013-02-28T12:00:00Z").ok(),
            Some(EventTime::new(1362052800, 0))
        );
        let m = tp(TimeType::Mixed, Some("%iso8601"), &["unixtime"]);
        assert_eq!(
            m.parse_str("1362052800").ok(),
            Some(EventTime::new(1362052800, 0))
        );
        assert_eq!(
            m.parse_str("2013-02-28T12:00:00Z").ok(),
            Some(EventTime::new(1362052800, 0))
        );
        assert_eq!(
            m.parse_value(&Value::from(1362052800)).ok(),
            Some(EventTime::new(1362052800, 0))
        );
        let err = m
            .parse_str("nope")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("nope") && err.contains("unixtime"), "{err}");
    }

    #[test]
    fn flexible_parse() {
        let p = tp(TimeType::String, None, &[]);
        for (input, expect) in [
            ("2013-02-28 12:00:00 +0900", 1362020400),
            ("2013-02-28T12:00:00Z", 1362052800),
            ("2013-02-28T12:00:00.000+09:00", 1362020400),
            ("Thu, 28 Feb 2013 12:00:00 +0900", 1362020400),
            ("Thu Feb 28 12:00:00 2013", 1362052800),
            ("Thu Feb 28 12:00:00.123456 2013", 1362052800),
            ("2013/02/28 12:00:00", 1362052800),
        ] {
            assert_eq!(
                p.parse_str(input).ok().map(|t| t.sec),
                Some(expect),
                "{input}"
            );
        }
    }

    fn check_fmt(format: Option<&str>, zone: Zone, tz_given: bool, t: EventTime, expect: &str) {
        let f = TimeFormatter::new(format, zone, tz_given).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.format(t).ok().as_deref(), Some(expect), "{format:?}");
    }

    #[test]
    fn strftime_table() {
        let t = EventTime::new(1362020400, 123_456_789); // 2013-02-28T03:00:00.123456789Z
        let cases: &[(Option<&str>, Zone, bool, &str)] = &[
            (None, utc(), false, "2013-02-28T03:00:00Z"),
            (None, fixed(9), false, "2013-02-28T12:00:00+09:00"),
            (None, fixed(9), true, "2013-02-28T12:00:00+09:00"),
            (None, fixed(-3), true, "2013-02-28T00:00:00-03:00"),
            (None, utc(), true, "2013-02-28T03:00:00+00:00"),
            (
                None,
                Zone::parse("Asia/Taipei").unwrap_or(utc()),
                true,
                "2013-02-28T11:00:00+08:00",
            ),
            (
                Some("%Y-%m-%d %H:%M:%S.%N %z"),
                utc(),
                false,
                "2013-02-28 03:00:00.123456789 +0000",
            ),
            (
                Some("%Y%m%d %L %3N %6N"),
                utc(),
                false,
                "20130228 123 123 123456",
            ),
            (
                Some("%d/%b/%Y:%H:%M:%S %z"),
                fixed(-5),
                false,
                "27/Feb/2013:22:00:00 -0500",
            ),
            (
                Some("%a %A %B %j %e %-d %k %l %I %p %P"),
                utc(),
                false,
                "Thu Thursday February 059 28 28  3  3 03 AM am",
            ),
            (
                Some("%s %Q %% %:z %::z %Z"),
                utc(),
                false,
                "1362020400 1362020400123 % +00:00 +00:00:00 UTC",
            ),
            (
                Some("%F %T %D %R"),
                utc(),
                false,
                "2013-02-28 03:00:00 02/28/13 03:00",
            ),
            (Some("%^b %10Y %_m"), utc(), false, "FEB 0000002013  2"),
            (
                Some("%Z"),
                Zone::parse("Asia/Tokyo").unwrap_or(utc()),
                true,
                "JST",
            ),
        ];
        for (f, z, g, e) in cases {
            check_fmt(*f, z.clone(), *g, t, e);
        }
    }

    #[test]
    fn local_time_default_is_iso8601_with_a_colon_offset() {
        // Whatever TZ the test runs under: `Time.at(t).iso8601` prints `+HH:MM`, never `Z`.
        let f = TimeFormatter::new(None, Zone::Local, false).unwrap_or_else(|e| panic!("{e}"));
        let s = f.format(EventTime::new(1362020400, 5)).unwrap_or_default();
        let b = s.as_bytes();
        assert_eq!(b.len(), 25, "{s}");
        assert!(matches!(b.get(19), Some(b'+' | b'-')), "{s}");
        assert_eq!(b.get(22), Some(&b':'), "{s}");
    }

    #[test]
    fn event_time_conversions() {
        assert_eq!(
            EventTime::from_f64(1.5),
            Some(EventTime::new(1, 500_000_000))
        );
        assert_eq!(EventTime::from_f64(-1.0), None);
        assert_eq!(EventTime::from_f64(f64::NAN), None);
        assert_eq!(EventTime::from_parts(1 << 40, 0), None);
        assert_eq!(EventTime::new(1, 5).as_nanos(), 1_000_000_005);
    }

    fn from(pairs: &[(&str, &str)]) -> Result<TimeParser, ConfigError> {
        TimeParser::from_params(
            "t",
            &Params::from_pairs(pairs.iter().copied()),
            TimeType::String,
            None,
        )
    }

    #[test]
    fn ported_time_parser_cases() {
        // from test/test_time_parser.rb
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, Option<(u32, u32)>);
        let cases: &[Case] = &[
            (
                &[("time_format", "%d/%b/%Y:%H:%M:%S %z")],
                "28/Feb/2013:12:00:00 +0900",
                Some((1362020400, 0)),
            ),
            (
                &[("time_format", "%d/%b/%Y:%H:%M:%S:%N %z")],
                "28/Feb/2013:12:00:00:123456789 +0900",
                Some((1362020400, 123456789)),
            ),
            (
                &[("time_format", "%iso8601")],
                "2017-01-01T12:00:00+09:00",
                Some((1483239600, 0)),
            ),
            (
                &[("time_format", "%iso8601")],
                "2017-01-01T12:00:00.123+09:00",
                Some((1483239600, 123_000_000)),
            ),
            (
                &[("time_format", "%Y-%m-%d %H:%M:%S.%N"), ("utc", "true")],
                "2016-09-02 18:42:31.123456789",
                Some((1472841751, 123456789)),
            ),
            (
                &[
                    ("time_format", "%Y-%m-%d %H:%M:%S.%N"),
                    ("timezone", "-07:00"),
                ],
                "2016-09-02 18:42:31.123456789",
                Some((1472866951, 123456789)),
            ),
            (
                &[
                    ("time_format", "%Y-%m-%d %H:%M:%S.%N"),
                    ("timezone", "Europe/Zurich"),
                ],
                "2016-12-02 18:42:31.123456789",
                Some((1480700551, 123456789)),
            ),
            (
                &[
                    ("time_format", "%m/%d/%Y %H-%M-%S %N"),
                    ("localtime", "false"),
                ],
                "09/02/2016 18-42-31 012345678",
                Some((1472841751, 12345678)),
            ),
            (
                &[
                    ("time_format", "%m/%d/%Y %H-%M-%S %N"),
                    ("timezone", "-01:00"),
                ],
                "09/02/2016 18-42-31 012345678",
                Some((1472845351, 12345678)),
            ),
            (
                &[("time_type", "unixtime")],
                "1475521710",
                Some((1475521710, 0)),
            ),
            (
                &[("time_type", "float")],
                "1475521710.123456789",
                Some((1475521710, 123456789)),
            ),
            (
                &[
                    ("time_type", "mixed"),
                    ("time_format_fallbacks", "%iso8601"),
                ],
                "INVALID",
                None,
            ),
            (
                &[
                    ("time_type", "mixed"),
                    ("time_format", "unixtime"),
                    ("time_format_fallbacks", "%iso8601"),
                ],
                "2021-01-01T12:00:00+0900",
                Some((1609470000, 0)),
            ),
            (
                &[
                    ("time_type", "mixed"),
                    ("time_format", "%iso8601"),
                    ("time_format_fallbacks", "unixtime"),
                ],
                "1609470000",
                Some((1609470000, 0)),
            ),
            (
                &[("time_type", "mixed"), ("time_format", "%iso8601")],
                "1609470000",
                None,
            ),
            (
                &[("time_type", "mixed"), ("time_format", "unixtime")],
                "2021-01-01T12:00:00+0900",
                None,
            ),
            (
                &[
                    ("time_type", "mixed"),
                    ("time_format_fallbacks", "%iso8601, unixtime"),
                ],
                "1609470000",
                Some((1609470000, 0)),
            ),
            (
                &[
                    ("time_type", "mixed"),
                    ("time_format_fallbacks", "unixtime, %iso8601"),
                ],
                "2021-01-01T12:00:00+0900",
                Some((1609470000, 0)),
            ),
            // test_filter_parser.rb CONFIG: `time_format %Y%m%d%H%M%S`
            (
                &[("time_format", "%Y%m%d%H%M%S"), ("utc", "true")],
                "20120402182059",
                Some((1333390859, 0)),
            ),
            (
                &[("time_format", "%Y%m%d%H%M%S"), ("utc", "true")],
                "20120402182100",
                Some((1333390860, 0)),
            ),
            (
                &[("time_format", "%Y%m%d%H%M%S"), ("utc", "true")],
                "20120402182101",
                Some((1333390861, 0)),
            ),
            (
                &[("time_format", "%Y%m%d%H%M%S"), ("timezone", "+09:00")],
                "20120403032059",
                Some((1333390859, 0)),
            ),
            (
                &[("time_format", "%Y%m%d%H%M%S"), ("utc", "true")],
                "2012040218205", // Ruby reads `%S` as one digit: 18:20:05
                Some((1333390805, 0)),
            ),
            (
                &[("time_format", "%Y%m%d%H%M%S"), ("utc", "true")],
                "20120402182",
                None,
            ),
            // issue 3195: a literal Z with utc
            (
                &[("time_format", "%Y-%m-%dT%H:%M:%SZ"), ("utc", "true")],
                "2020-12-08T20:00:00Z",
                Some((1607457600, 0)),
            ),
            (&[], "", None),
        ];
        for (pairs, input, expect) in cases {
            let p = from(pairs).unwrap_or_else(|e| panic!("{pairs:?}: {e}"));
            let got = p.parse_str(input).ok().map(|t| (t.sec, t.nsec));
            assert_eq!(got, *expect, "{pairs:?} {input:?}");
        }
    }

    #[test]
    fn ported_time_parser_config_errors() {
        for pairs in [
            vec![("utc", "true")],
            vec![("localtime", "false")],
            vec![("timezone", "-0700")],
            vec![("time_type", "mixed")],
        ] {
            assert!(from(&pairs).is_err(), "{pairs:?}");
        }
        assert!(from(&[("time_type", "unixtime"), ("utc", "true")]).is_ok());
        let p = from(&[]).unwrap_or_else(|e| panic!("{e}"));
        for v in [
            Value::Nil,
            Value::Boolean(true),
            Value::from(10000),
            Value::Array(vec![]),
            Value::Map(vec![]),
        ] {
            assert!(p.parse_value(&v).is_err(), "{v:?}");
        }
    }
}

#[cfg(test)]
mod zone_tests {
    use super::Zone;

    #[test]
    fn named_zones_come_from_zoneinfo_and_paths_are_refused() {
        let tokyo = Zone::parse("Asia/Tokyo").expect("tzdata has Asia/Tokyo");
        assert_eq!(tokyo.utc_offset_at(1_764_158_400), 9 * 3600);
        let ny = Zone::parse("America/New_York").expect("tzdata");
        // January (EST) and July (EDT).
        assert_eq!(ny.utc_offset_at(1_767_225_600), -5 * 3600);
        assert_eq!(ny.utc_offset_at(1_783_000_000), -4 * 3600);
        for bad in [
            "../etc/passwd",
            "/etc/localtime",
            "Asia/../Tokyo",
            "Asia//Tokyo",
            "No/Such_Zone",
        ] {
            assert!(Zone::parse(bad).is_none(), "{bad}");
        }
    }
}
