//! Rate-limited logging: at most one line per category per interval, with a count of the
//! lines suppressed meanwhile, so a misbehaving peer cannot flood the log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default interval between two lines of one category.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Per-category rate limiter.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    state: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl LogLimiter {
    /// A limiter allowing one line per `interval` per category.
    pub fn new(interval: Duration) -> Self {
        LogLimiter {
            interval,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a line of `category` may be logged at `now`; when it may, returns how many
    /// were suppressed since the last one.
    pub fn check_at(&self, category: &'static str, now: Instant) -> Option<u64> {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match st.get_mut(category) {
            Some((last, suppressed)) if now.saturating_duration_since(*last) < self.interval => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                *last = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                st.insert(category, (now, 0));
                Some(0)
            }
        }
    }

    /// [`check_at`](Self::check_at) now.
    pub fn check(&self, category: &'static str) -> Option<u64> {
        self.check_at(category, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_counts() {
        let l = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let steps = [
            ("a", t0, Some(0)),
            ("a", t0 + s(1), None),
            ("b", t0 + s(1), Some(0)),
            ("a", t0 + s(5), None),
            ("a", t0 + s(10), Some(2)),
            ("a", t0 + s(11), None),
            ("a", t0 + s(30), Some(1)),
        ];
        for (cat, at, want) in steps {
            assert_eq!(l.check_at(cat, at), want, "{cat} at {:?}", at - t0);
        }
    }
}
