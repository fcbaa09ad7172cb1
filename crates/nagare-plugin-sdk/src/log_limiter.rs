//! A log rate limiter: "say what happened once, not per event".
//!
//! [`LogLimiter::admit`] lets the first message through, then at most one per interval; each
//! admitted message learns how many were suppressed since the previous one, so the log line
//! can say so. Lock-free: one atomic timestamp and one atomic counter.
//! [`KeyedLogLimiter`] keeps one such limiter per category of message.
//!
//! Used by the filter plugins for their per-event warnings and by in_forward for its
//! per-peer ones.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Admits one message per interval and counts the rest.
#[derive(Debug)]
pub struct LogLimiter {
    origin: Instant,
    interval_ms: u64,
    /// Milliseconds since `origin` of the last admitted message, plus one (0 = never).
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimiter {
    /// A limiter admitting one message per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self::with_origin(interval, Instant::now())
    }

    /// A limiter whose clock starts at `origin` (times before it count as `origin`).
    fn with_origin(interval: Duration, origin: Instant) -> Self {
        LogLimiter {
            origin,
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            last_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when this message may be logged (`n` messages were suppressed since the
    /// last one), `None` when it must be dropped.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    /// [`LogLimiter::admit`] at `now` (for tests with their own clock).
    pub fn admit_at(&self, now: Instant) -> Option<u64> {
        let now = u64::try_from(now.saturating_duration_since(self.origin).as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= self.interval_ms;
        if due
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// One [`LogLimiter`] per category of message (a `&'static str` such as `"invalid"`), so a
/// flood of one kind does not hide the first message of another.
#[derive(Debug)]
pub struct KeyedLogLimiter {
    origin: Instant,
    interval: Duration,
    limiters: Mutex<HashMap<&'static str, LogLimiter>>,
}

impl KeyedLogLimiter {
    /// Limiters admitting one message per `interval` per category.
    pub fn new(interval: Duration) -> Self {
        KeyedLogLimiter {
            origin: Instant::now(),
            interval,
            limiters: Mutex::new(HashMap::new()),
        }
    }

    /// [`LogLimiter::admit`] for `category`.
    pub fn admit(&self, category: &'static str) -> Option<u64> {
        self.admit_at(category, Instant::now())
    }

    /// [`LogLimiter::admit_at`] for `category`.
    pub fn admit_at(&self, category: &'static str, now: Instant) -> Option<u64> {
        let mut map = self
            .limiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(category)
            .or_insert_with(|| LogLimiter::with_origin(self.interval, self.origin))
            .admit_at(now)
    }
}

/// The suffix for an admitted message: `""` or `" (N similar messages suppressed)"`.
pub fn suppressed_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} similar messages suppressed)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_is_admitted_then_counted() {
        let l = LogLimiter::new(Duration::from_secs(3600));
        assert_eq!(l.admit(), Some(0));
        assert_eq!(l.admit(), None);
        assert_eq!(l.admit(), None);
        assert_eq!(l.suppressed.load(Ordering::Relaxed), 2);
        assert_eq!(suppressed_note(0), "");
        assert_eq!(suppressed_note(2), " (2 similar messages suppressed)");
    }

    /// Per category: the first admitted, then one per interval with the count between
    /// (the table in_forward's own limiter had).
    #[test]
    fn keyed_one_line_per_interval_with_counts() {
        let l = KeyedLogLimiter::new(Duration::from_secs(10));
        let t0 = l.origin;
        let s = Duration::from_secs;
        let steps = [
            ("a", t0, Some(0)),
            ("a", t0 + s(1), None),
            ("b", t0 + s(1), Some(0)),
            ("a", t0 + s(5), None),
            ("a", t0 + s(10), Some(2)),
            ("a", t0 + s(11), None),
            ("a", t0 + s(30), Some(1)),
            ("b", t0 + s(30), Some(0)),
        ];
        for (cat, at, want) in steps {
            assert_eq!(l.admit_at(cat, at), want, "{cat} at {:?}", at - t0);
        }
    }

    #[test]
    fn zero_interval_admits_everything() {
        let l = LogLimiter::new(Duration::ZERO);
        assert_eq!(l.admit(), Some(0));
        assert_eq!(l.admit(), Some(0));
    }
}
