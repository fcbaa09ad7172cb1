//! A log rate limiter: "say what happened once, not per event".
//!
//! [`LogLimiter::admit`] lets the first message through, then at most one per interval; each
//! admitted message learns how many were suppressed since the previous one, so the log line
//! can say so. Lock-free: one atomic timestamp and one atomic counter.
//!
//! Used by the filter plugins for their per-event warnings.

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
        LogLimiter {
            origin: Instant::now(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            last_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when this message may be logged (`n` messages were suppressed since the
    /// last one), `None` when it must be dropped.
    pub fn admit(&self) -> Option<u64> {
        let now = u64::try_from(self.origin.elapsed().as_millis())
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

    #[test]
    fn zero_interval_admits_everything() {
        let l = LogLimiter::new(Duration::ZERO);
        assert_eq!(l.admit(), Some(0));
        assert_eq!(l.admit(), Some(0));
    }
}
