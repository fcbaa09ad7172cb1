//! The retry state machine of Fluentd's `plugin_helper/retry_state.rb`, on float epoch
//! seconds, with the randomness injected so schedules are testable exactly.

use crate::config::{RetryConfig, RetryType};

/// Which output the retries currently go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryTarget {
    /// The primary output.
    Primary,
    /// The `<secondary>` output (after `retry_secondary_threshold` of the budget).
    Secondary,
}

/// One output's retry state, created on the first failed flush and dropped on success.
#[derive(Debug, Clone)]
pub struct RetryState {
    cfg: RetryConfig,
    start: f64,
    steps: u64,
    next_time: f64,
    timeout_at: f64,
    current: RetryTarget,
    secondary: bool,
    secondary_transition_at: f64,
    secondary_transition_steps: u64,
}

impl RetryState {
    /// Starts retrying at `now` (seconds); the first retry is at `now + retry_wait`.
    pub fn new(cfg: &RetryConfig, has_secondary: bool, now: f64) -> RetryState {
        let mut s = RetryState {
            cfg: *cfg,
            start: now,
            steps: 0,
            next_time: now + cfg.wait,
            timeout_at: now + cfg.timeout,
            current: RetryTarget::Primary,
            secondary: has_secondary,
            secondary_transition_at: f64::INFINITY,
            secondary_transition_steps: 0,
        };
        if has_secondary {
            let mut max_retry_timeout = cfg.timeout;
            if let Some(max_steps) = cfg.max_times {
                let by_steps = s.max_retry_timeout(max_steps);
                if by_steps < max_retry_timeout {
                    max_retry_timeout = by_steps;
                }
            }
            s.secondary_transition_at = now + max_retry_timeout * cfg.secondary_threshold;
        }
        s
    }

    /// When retrying started.
    pub fn start(&self) -> f64 {
        self.start
    }

    /// How many times [`RetryState::step`] ran.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The earliest time of the next retry.
    pub fn next_time(&self) -> f64 {
        self.next_time
    }

    /// `start + retry_timeout`.
    pub fn timeout_at(&self) -> f64 {
        self.timeout_at
    }

    /// `start + budget × retry_secondary_threshold` (infinite without a secondary).
    pub fn secondary_transition_at(&self) -> f64 {
        self.secondary_transition_at
    }

    /// The target chosen at the last step.
    pub fn current(&self) -> RetryTarget {
        self.current
    }

    /// Whether the next flush should go to the secondary.
    pub fn secondary(&self, now: f64) -> bool {
        !self.cfg.forever
            && self.secondary
            && (self.current == RetryTarget::Secondary || now >= self.secondary_transition_at)
    }

    /// Whether retrying must stop: `next_time` reached the timeout or `retry_max_times`
    /// steps were made (never with `retry_forever`).
    pub fn limit(&self) -> bool {
        if self.cfg.forever {
            return false;
        }
        self.next_time >= self.timeout_at || self.cfg.max_times.is_some_and(|m| self.steps >= m)
    }

    /// Records one more failure at `now` and computes the next retry time. `rand` yields
    /// numbers in `[0, 1)` for the randomization.
    pub fn step(&mut self, now: f64, rand: &mut dyn FnMut() -> f64) {
        self.steps += 1;
        if !self.cfg.forever
            && self.secondary
            && self.current != RetryTarget::Secondary
            && now >= self.secondary_transition_at
        {
            self.current = RetryTarget::Secondary;
            self.secondary_transition_steps = self.steps;
        }
        self.next_time = self.calc_next_time(now, rand);
    }

    fn calc_next_time(&self, now: f64, rand: &mut dyn FnMut() -> f64) -> f64 {
        if self.cfg.forever || !self.secondary {
            let naive = self.naive_next_time(self.steps, now, rand);
            if self.cfg.forever || naive < self.timeout_at {
                naive
            } else {
                self.timeout_at
            }
        } else if self.current == RetryTarget::Primary {
            let naive = self.naive_next_time(self.steps, now, rand);
            naive.min(self.secondary_transition_at)
        } else {
            let n = self.steps.saturating_sub(self.secondary_transition_steps) + 1;
            let naive = self.naive_next_time(n, now, rand);
            naive.min(self.timeout_at)
        }
    }

    fn randomize(&self, interval: f64, rand: &mut dyn FnMut() -> f64) -> f64 {
        if !self.cfg.randomize {
            return interval;
        }
        interval + interval * self.cfg.randomize_width * (2.0 * rand() - 1.0)
    }

    fn naive_next_time(&self, n: u64, now: f64, rand: &mut dyn FnMut() -> f64) -> f64 {
        let interval = match self.cfg.retry_type {
            RetryType::ExponentialBackoff => self.calc_interval(n),
            RetryType::Periodic => self.cfg.wait,
        };
        now + self.randomize(interval, rand)
    }

    /// `wait × base^(n-1)`, capped by `retry_max_interval`; an infinite value falls back
    /// to the largest finite one below it.
    fn calc_interval(&self, n: u64) -> f64 {
        let raw = |k: i64| {
            self.cfg.wait
                * self
                    .cfg
                    .backoff_base
                    .powi(i32::try_from(k).unwrap_or(i32::MAX))
        };
        let mut k = i64::try_from(n).unwrap_or(i64::MAX) - 1;
        let mut interval = raw(k);
        if let Some(max) = self.cfg.max_interval {
            if interval > max {
                return max;
            }
        }
        while !interval.is_finite() && k > -1100 {
            k -= 1;
            interval = raw(k);
        }
        interval
    }

    fn max_retry_timeout(&self, max_steps: u64) -> f64 {
        match self.cfg.retry_type {
            RetryType::Periodic => self.cfg.wait * max_steps as f64,
            RetryType::ExponentialBackoff => {
                let mut total = 0.0;
                for i in 0..max_steps {
                    total += self.calc_interval(i + 1);
                    if total >= self.cfg.timeout || !total.is_finite() {
                        break; // only the minimum with retry_timeout matters
                    }
                }
                total
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Ported from fluentd `test/plugin_helper/test_retry_state.rb`, with exact times.
    use super::*;

    const T0: f64 = 1_700_000_000.0;

    fn cfg(retry_type: RetryType, wait: f64, timeout: f64) -> RetryConfig {
        RetryConfig {
            retry_type,
            wait,
            timeout,
            randomize: false,
            ..RetryConfig::default()
        }
    }

    fn no_rand() -> impl FnMut() -> f64 {
        || 0.5
    }

    /// Steps at each `next_time`, checking the interval after each step.
    fn check_steps(s: &mut RetryState, expect: &[(f64, bool)]) {
        for (i, (interval, limit)) in expect.iter().enumerate() {
            let now = s.next_time();
            s.step(now, &mut no_rand());
            assert_eq!(s.next_time() - now, *interval, "step {}", i + 1);
            assert_eq!(s.limit(), *limit, "limit after step {}", i + 1);
        }
    }

    #[test]
    fn randomize_stays_within_width() {
        let c = RetryConfig {
            randomize: true,
            ..RetryConfig::default()
        };
        let s = RetryState::new(&c, false, T0);
        for (r, expect) in [(0.0, 875.0), (0.5, 1000.0), (0.75, 1062.5)] {
            assert_eq!(s.randomize(1000.0, &mut || r), expect);
        }
        let mut rng = rand::thread_rng();
        for _ in 0..200 {
            let v = s.randomize(1000.0, &mut || rand::Rng::r#gen::<f64>(&mut rng));
            assert!((875.0..1125.0).contains(&v));
        }
    }

    #[test]
    fn initial_state() {
        let s = RetryState::new(
            &RetryConfig {
                wait: 0.5,
                timeout: 30.0,
                ..RetryConfig::default()
            },
            false,
            T0,
        );
        assert_eq!(
            (s.steps(), s.next_time(), s.timeout_at(), s.current()),
            (0, T0 + 0.5, T0 + 30.0, RetryTarget::Primary)
        );
    }

    #[test]
    fn periodic() {
        let mut s = RetryState::new(&cfg(RetryType::Periodic, 3.0, 29.0), false, T0);
        assert_eq!(s.next_time(), T0 + 3.0);
        let mut expect = vec![(3.0, false); 8];
        expect.push((2.0, true)); // at 27: 30 >= 29 → capped at timeout_at
        check_steps(&mut s, &expect);
        assert_eq!(s.next_time(), s.timeout_at());
    }

    #[test]
    fn periodic_max_steps() {
        let c = RetryConfig {
            max_times: Some(5),
            ..cfg(RetryType::Periodic, 3.0, 29.0)
        };
        let mut s = RetryState::new(&c, false, T0);
        check_steps(
            &mut s,
            &[
                (3.0, false),
                (3.0, false),
                (3.0, false),
                (3.0, false),
                (3.0, true),
            ],
        );
    }

    #[test]
    fn periodic_secondary() {
        let mut s = RetryState::new(&cfg(RetryType::Periodic, 3.0, 100.0), true, T0);
        assert_eq!(s.secondary_transition_at(), T0 + 80.0);
        let mut expect = vec![(3.0, false); 25]; // up to 78
        expect.push((2.0, false)); // 78 → capped at the transition (80)
        check_steps(&mut s, &expect);
        assert!(!s.secondary(T0 + 79.0));
        assert!(s.secondary(s.next_time()));
        check_steps(&mut s, &[(3.0, false); 6]); // 80 → 98
        assert_eq!(s.current(), RetryTarget::Secondary);
        check_steps(&mut s, &[(2.0, true)]); // 98 → 100 (timeout)
    }

    #[test]
    fn secondary_thresholds_and_max_steps() {
        let c = RetryConfig {
            secondary_threshold: 0.75,
            ..cfg(RetryType::Periodic, 3.0, 100.0)
        };
        assert_eq!(
            RetryState::new(&c, true, T0).secondary_transition_at(),
            T0 + 75.0
        );
        let c = RetryConfig {
            max_times: Some(5),
            ..cfg(RetryType::Periodic, 3.0, 100.0)
        };
        assert_eq!(
            RetryState::new(&c, true, T0).secondary_transition_at(),
            T0 + 12.0
        );
        let c = RetryConfig {
            max_times: Some(5),
            ..cfg(RetryType::ExponentialBackoff, 1.0, 100.0)
        };
        assert_eq!(
            RetryState::new(&c, true, T0).secondary_transition_at(),
            T0 + 31.0 * 0.8
        );
        assert_eq!(
            RetryState::new(&c, false, T0).secondary_transition_at(),
            f64::INFINITY
        );
    }

    #[test]
    fn exponential_forever_without_randomize() {
        let c = RetryConfig {
            forever: true,
            ..cfg(RetryType::ExponentialBackoff, 1.0, 300.0)
        };
        let mut s = RetryState::new(&c, false, T0);
        for i in 1..=40u32 {
            s.step(T0, &mut no_rand()); // time frozen, as in Fluentd's test
            assert_eq!(s.next_time(), T0 + 2f64.powi(i as i32 - 1), "step {i}");
            assert!(!s.limit());
        }
    }

    #[test]
    fn exponential_max_interval() {
        let c = RetryConfig {
            forever: true,
            max_interval: Some(100.0),
            ..cfg(RetryType::ExponentialBackoff, 1.0, 300.0)
        };
        let mut s = RetryState::new(&c, false, T0);
        let expect = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 100.0, 100.0];
        for (i, e) in expect.iter().enumerate() {
            s.step(T0, &mut no_rand());
            assert_eq!(s.next_time(), T0 + e, "step {}", i + 1);
        }
    }

    /// `retry_exponential_backoff_base 3`: Fluentd's `wait × base^(steps-1)` after each step
    /// (the first retry, before any step, is at `wait`), capped by `retry_max_interval`.
    #[test]
    fn exponential_backoff_base_other_than_two() {
        let c = RetryConfig {
            backoff_base: 3.0,
            max_interval: Some(100.0),
            ..cfg(RetryType::ExponentialBackoff, 1.0, 1000.0)
        };
        let mut s = RetryState::new(&c, false, T0);
        assert_eq!(s.next_time(), T0 + 1.0);
        // 1×3^0, 1×3^1, 1×3^2, 1×3^3, 1×3^4, then 3^5 = 243 capped at 100.
        check_steps(
            &mut s,
            &[
                (1.0, false),
                (3.0, false),
                (9.0, false),
                (27.0, false),
                (81.0, false),
                (100.0, false),
                (100.0, false),
            ],
        );
        // 1 + 1 + 3 + 9 + 27 + 81 + 100 + 100
        assert_eq!(s.next_time(), T0 + 322.0);

        // The timeout still wins over the base: at 1 + 1 + 3 + 9 = 14 the next +27 passes
        // 30, so the last retry is at the timeout.
        let c = RetryConfig {
            backoff_base: 3.0,
            ..cfg(RetryType::ExponentialBackoff, 1.0, 30.0)
        };
        let mut s = RetryState::new(&c, false, T0);
        check_steps(
            &mut s,
            &[(1.0, false), (3.0, false), (9.0, false), (16.0, true)],
        );

        // A fractional base scales `retry_wait` too: 2 × 1.5^(n-1) (exact in binary).
        let c = RetryConfig {
            backoff_base: 1.5,
            forever: true,
            ..cfg(RetryType::ExponentialBackoff, 2.0, 300.0)
        };
        let mut s = RetryState::new(&c, false, T0);
        assert_eq!(s.next_time(), T0 + 2.0);
        check_steps(
            &mut s,
            &[(2.0, false), (3.0, false), (4.5, false), (6.75, false)],
        );
    }

    #[test]
    fn exponential_shorter_timeout() {
        let c = RetryConfig {
            max_interval: Some(10.0),
            ..cfg(RetryType::ExponentialBackoff, 1.0, 12.0)
        };
        let mut s = RetryState::new(&c, false, T0);
        assert_eq!(s.next_time(), T0 + 1.0);
        // 1 + 1 + 2 + 4 = 8; the next +8 passes 12 → capped at the timeout.
        check_steps(
            &mut s,
            &[(1.0, false), (2.0, false), (4.0, false), (4.0, true)],
        );
    }

    #[test]
    fn exponential_max_steps() {
        let c = RetryConfig {
            max_interval: Some(10.0),
            max_times: Some(6),
            ..cfg(RetryType::ExponentialBackoff, 1.0, 120.0)
        };
        let mut s = RetryState::new(&c, false, T0);
        check_steps(
            &mut s,
            &[
                (1.0, false),
                (2.0, false),
                (4.0, false),
                (8.0, false),
                (10.0, false),
                (10.0, true),
            ],
        );
    }

    #[test]
    fn exponential_secondary() {
        let mut s = RetryState::new(&cfg(RetryType::ExponentialBackoff, 1.0, 100.0), true, T0);
        assert_eq!(s.secondary_transition_at(), T0 + 80.0);
        // 1, (2), (4), (8), (16), (32), (64) then capped at 80
        check_steps(
            &mut s,
            &[
                (1.0, false),
                (2.0, false),
                (4.0, false),
                (8.0, false),
                (16.0, false),
                (32.0, false),
                (16.0, false),
            ],
        );
        assert_eq!(s.next_time(), T0 + 80.0);
        assert!(s.secondary(s.next_time()));
        // the back-off restarts in secondary: 81, 83, 87, 95, then the timeout (100)
        check_steps(
            &mut s,
            &[
                (1.0, false),
                (2.0, false),
                (4.0, false),
                (8.0, false),
                (5.0, true),
            ],
        );
        assert_eq!(s.current(), RetryTarget::Secondary);
    }

    #[test]
    fn exponential_with_randomize_is_exact_given_the_draws() {
        let c = RetryConfig {
            randomize: true,
            ..cfg(RetryType::ExponentialBackoff, 2.0, 1000.0)
        };
        let mut s = RetryState::new(&c, false, T0);
        assert_eq!(s.next_time(), T0 + 2.0); // the first retry is never randomized
        let draws = [0.0, 1.0 - f64::EPSILON, 0.5, 0.25];
        let base = [2.0, 4.0, 8.0, 16.0];
        for (d, b) in draws.iter().zip(base) {
            let now = s.next_time();
            s.step(now, &mut || *d);
            let expect = b + b * 0.125 * (2.0 * d - 1.0);
            assert!((s.next_time() - now - expect).abs() < 1e-9, "draw {d}");
        }
    }

    #[test]
    fn huge_step_counts_stay_finite() {
        let c = RetryConfig {
            forever: true,
            ..cfg(RetryType::ExponentialBackoff, 1.0, 300.0)
        };
        let mut s = RetryState::new(&c, false, T0);
        for _ in 0..1030 {
            s.step(T0, &mut no_rand());
        }
        assert_eq!(s.next_time(), T0 + 2f64.powi(1023));
    }

    #[test]
    fn forever_ignores_secondary_and_limits() {
        let c = RetryConfig {
            forever: true,
            max_times: Some(1),
            ..cfg(RetryType::Periodic, 1.0, 2.0)
        };
        let mut s = RetryState::new(&c, true, T0);
        for _ in 0..5 {
            let now = s.next_time();
            s.step(now, &mut no_rand());
        }
        assert!(!s.limit());
        assert!(!s.secondary(T0 + 1e6));
    }
}
