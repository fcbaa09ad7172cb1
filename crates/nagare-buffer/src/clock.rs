//! Wall-clock abstraction, so flush and retry timing can be tested without sleeping.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time for the buffer (chunk creation, flush intervals, retries).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The real clock: [`SystemTime::now`].
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug)]
pub struct FakeClock {
    now: Mutex<SystemTime>,
}

impl FakeClock {
    /// A fake clock set to `secs` seconds after the Unix epoch.
    pub fn at_secs(secs: u64) -> FakeClock {
        FakeClock {
            now: Mutex::new(UNIX_EPOCH + Duration::from_secs(secs)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now = now.checked_add(by).unwrap_or(*now);
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: SystemTime) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Seconds since the Unix epoch as a float (negative before 1970).
pub(crate) fn to_secs_f64(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// The inverse of [`to_secs_f64`], saturating far past/future and non-finite values.
pub(crate) fn from_secs_f64(secs: f64) -> SystemTime {
    // ~ 292 billion years is far beyond anything meaningful; keep well inside SystemTime.
    const LIMIT: f64 = 1.0e15;
    let s = if secs.is_nan() {
        0.0
    } else {
        secs.clamp(-LIMIT, LIMIT)
    };
    if s >= 0.0 {
        UNIX_EPOCH + Duration::from_secs_f64(s)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs_f64(-s))
            .unwrap_or(UNIX_EPOCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_moves_only_when_told() {
        let c = FakeClock::at_secs(100);
        assert_eq!(to_secs_f64(c.now()), 100.0);
        c.advance(Duration::from_millis(1500));
        assert_eq!(to_secs_f64(c.now()), 101.5);
        c.set(UNIX_EPOCH);
        assert_eq!(to_secs_f64(c.now()), 0.0);
    }

    #[test]
    fn float_round_trip_and_saturation() {
        for s in [0.0, 1.25, 1_700_000_000.5] {
            assert_eq!(to_secs_f64(from_secs_f64(s)), s);
        }
        assert!(to_secs_f64(from_secs_f64(f64::INFINITY)) > 1.0e14);
        assert_eq!(to_secs_f64(from_secs_f64(f64::NAN)), 0.0);
    }
}
