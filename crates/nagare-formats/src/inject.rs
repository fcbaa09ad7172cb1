//! The `<inject>` helper (`plugin_helper/inject.rb`): adds the hostname, worker id, tag and
//! time to a record before an output formats it.

use rmpv::Value;

use crate::error::{ConfigError, FormatError};
use crate::params::Params;
use crate::time::{EventTime, TimeFormatter};

const PL: &str = "inject";

/// How the injected time is written (`time_type`).
#[derive(Debug, Clone)]
pub enum InjectTime {
    /// Float seconds, truncated to microseconds (Fluentd's default).
    Float,
    /// Integer seconds.
    Unixtime,
    /// Integer milliseconds.
    UnixtimeMillis,
    /// Integer microseconds.
    UnixtimeMicros,
    /// Integer nanoseconds.
    UnixtimeNanos,
    /// Text with `time_format` (ISO 8601 when none) in the configured zone.
    String(TimeFormatter),
}

/// The `<inject>` section's settings.
#[derive(Debug, Clone, Default)]
pub struct InjectConfig {
    /// `hostname_key`: where to put the hostname.
    pub hostname_key: Option<String>,
    /// The hostname to write (`hostname`, else the machine's).
    pub hostname: String,
    /// `worker_id_key`: where to put the worker id.
    pub worker_id_key: Option<String>,
    /// `tag_key`: where to put the tag.
    pub tag_key: Option<String>,
    /// `time_key`: where to put the time, and how.
    pub time_key: Option<(String, InjectTime)>,
}

impl InjectConfig {
    /// Reads the `<inject>` params.
    pub fn from_params(p: &Params) -> Result<InjectConfig, ConfigError> {
        let hostname_key = p.get("hostname_key").map(str::to_string);
        let hostname = match p.get("hostname") {
            Some(h) => h.to_string(),
            None if hostname_key.is_some() => machine_hostname(),
            None => String::new(),
        };
        let time_key = match p.get("time_key") {
            None => None,
            Some(k) => {
                let tt = p.enum_or(
                    PL,
                    "time_type",
                    &[
                        "float",
                        "unixtime",
                        "unixtime_millis",
                        "unixtime_micros",
                        "unixtime_nanos",
                        "string",
                    ],
                    "float",
                )?;
                let t = match tt {
                    "unixtime" => InjectTime::Unixtime,
                    "unixtime_millis" => InjectTime::UnixtimeMillis,
                    "unixtime_micros" => InjectTime::UnixtimeMicros,
                    "unixtime_nanos" => InjectTime::UnixtimeNanos,
                    "string" => InjectTime::String(TimeFormatter::from_params(PL, p, None)?),
                    _ => InjectTime::Float,
                };
                Some((k.to_string(), t))
            }
        };
        Ok(InjectConfig {
            hostname_key,
            hostname,
            worker_id_key: p.get("worker_id_key").map(str::to_string),
            tag_key: p.get("tag_key").map(str::to_string),
            time_key,
        })
    }

    /// Whether anything is injected at all.
    pub fn is_enabled(&self) -> bool {
        self.hostname_key.is_some()
            || self.worker_id_key.is_some()
            || self.tag_key.is_some()
            || self.time_key.is_some()
    }
}

/// Applies an [`InjectConfig`] for one worker.
#[derive(Debug, Clone)]
pub struct Injector {
    config: InjectConfig,
    worker_id: u32,
}

impl Injector {
    /// An injector for `worker_id` (Fluentd's `fluentd_worker_id`, 0 with one worker).
    pub fn new(config: InjectConfig, worker_id: u32) -> Injector {
        Injector { config, worker_id }
    }

    /// Sets the configured keys in `record` (a map; other values are left alone). An existing
    /// key is overwritten in place, as a Ruby Hash assignment does.
    pub fn inject(
        &self,
        tag: &str,
        time: EventTime,
        record: &mut Value,
    ) -> Result<(), FormatError> {
        let c = &self.config;
        if !c.is_enabled() {
            return Ok(());
        }
        let Value::Map(m) = record else {
            return Err(FormatError::NotAMap { formatter: PL });
        };
        let mut set =
            |k: &str, v: Value| match m.iter_mut().find(|(key, _)| key.as_str() == Some(k)) {
                Some(slot) => slot.1 = v,
                None => m.push((Value::from(k), v)),
            };
        if let Some(k) = &c.hostname_key {
            set(k, Value::from(c.hostname.as_str()));
        }
        if let Some(k) = &c.worker_id_key {
            set(k, Value::from(self.worker_id));
        }
        if let Some(k) = &c.tag_key {
            set(k, Value::from(tag));
        }
        if let Some((k, how)) = &c.time_key {
            let v = match how {
                InjectTime::Float => {
                    let micros = u64::from(time.nsec) / 1_000;
                    Value::F64(f64::from(time.sec) + micros as f64 / 1e6)
                }
                InjectTime::Unixtime => Value::from(time.sec),
                InjectTime::UnixtimeMillis => Value::from(time.as_nanos() / 1_000_000),
                InjectTime::UnixtimeMicros => Value::from(time.as_nanos() / 1_000),
                InjectTime::UnixtimeNanos => Value::from(time.as_nanos()),
                InjectTime::String(f) => Value::from(f.format(time)?),
            };
            set(k, v);
        }
        Ok(())
    }
}

/// The machine's hostname (`Socket.gethostname`); empty if it cannot be read.
pub fn machine_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call; gethostname
    // writes at most `len` bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIME: EventTime = EventTime {
        sec: 1_459_514_096,
        nsec: 123_456_789,
    };

    fn check(pairs: &[(&str, &str)], expect: Value) {
        let cfg = InjectConfig::from_params(&Params::from_pairs(pairs.iter().copied()))
            .unwrap_or_else(|e| panic!("{pairs:?}: {e}"));
        let mut rec = Value::Map(vec![(Value::from("k"), Value::from("v"))]);
        let r = Injector::new(cfg, 3).inject("my.tag", TIME, &mut rec);
        assert!(r.is_ok(), "{pairs:?}: {r:?}");
        assert_eq!(rec, expect, "{pairs:?}");
    }

    fn rec(extra: Vec<(&str, Value)>) -> Value {
        let mut m = vec![(Value::from("k"), Value::from("v"))];
        m.extend(extra.into_iter().map(|(k, v)| (Value::from(k), v)));
        Value::Map(m)
    }

    #[test]
    fn inject_table() {
        // ported from test/plugin_helper/test_inject.rb
        check(&[], rec(vec![]));
        check(&[("tag_key", "t")], rec(vec![("t", Value::from("my.tag"))]));
        check(
            &[("hostname_key", "h"), ("hostname", "myhost")],
            rec(vec![("h", Value::from("myhost"))]),
        );
        check(&[("worker_id_key", "w")], rec(vec![("w", Value::from(3))]));
        check(
            &[("time_key", "time")],
            rec(vec![("time", Value::F64(1459514096.123456))]),
        );
        check(
            &[("time_key", "time"), ("time_type", "unixtime")],
            rec(vec![("time", Value::from(1459514096))]),
        );
        check(
            &[("time_key", "time"), ("time_type", "unixtime_millis")],
            rec(vec![("time", Value::from(1459514096123u64))]),
        );
        check(
            &[("time_key", "time"), ("time_type", "unixtime_micros")],
            rec(vec![("time", Value::from(1459514096123456u64))]),
        );
        check(
            &[("time_key", "time"), ("time_type", "unixtime_nanos")],
            rec(vec![("time", Value::from(1459514096123456789u64))]),
        );
        check(
            &[
                ("time_key", "time"),
                ("time_type", "string"),
                ("utc", "true"),
            ],
            rec(vec![("time", Value::from("2016-04-01T12:34:56Z"))]),
        );
        check(
            &[
                ("time_key", "time"),
                ("time_type", "string"),
                ("time_format", "%Y-%m-%d %H:%M:%S.%3N %z"),
                ("timezone", "-0700"),
            ],
            rec(vec![("time", Value::from("2016-04-01 05:34:56.123 -0700"))]),
        );
        // an existing key is overwritten in place
        let cfg =
            InjectConfig::from_params(&Params::new().with("tag_key", "k")).unwrap_or_default();
        let mut r = rec(vec![]);
        assert!(Injector::new(cfg, 0).inject("x", TIME, &mut r).is_ok());
        assert_eq!(r, Value::Map(vec![(Value::from("k"), Value::from("x"))]));
    }

    #[test]
    fn inject_errors() {
        assert!(
            InjectConfig::from_params(
                &Params::new().with("time_key", "t").with("time_type", "bad")
            )
            .is_err()
        );
        let cfg =
            InjectConfig::from_params(&Params::new().with("tag_key", "t")).unwrap_or_default();
        assert!(
            Injector::new(cfg, 0)
                .inject("x", TIME, &mut Value::from(1))
                .is_err()
        );
    }

    #[test]
    fn hostname_default() {
        let cfg =
            InjectConfig::from_params(&Params::new().with("hostname_key", "h")).unwrap_or_default();
        assert_eq!(cfg.hostname, machine_hostname());
    }
}
