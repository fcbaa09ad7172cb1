//! The phi accrual failure detector of Fluentd's out_forward (`failure_detector.rb`), and the
//! per-node availability state machine built on it (`Node#tick`, `Node#heartbeat`).
//!
//! Times are seconds as `f64` passed in by the caller, so every transition is tested without
//! sleeping. Fluentd's arithmetic is kept exactly, including its quirks: gaps are stored in
//! whole microseconds, the mean is a weighted moving average (newer gaps weigh more) computed
//! in integer microseconds, and both the mean and the elapsed time are shifted by
//! `1 - heartbeat_interval` ("normalised into 1 s"), so with the defaults a silent node
//! crosses `phi_threshold 16` after about 37 s, well before `hard_timeout` (60 s).

use std::collections::VecDeque;

/// `1 / ln(10)`: turns the exponential tail into a base-10 log.
pub const PHI_FACTOR: f64 = std::f64::consts::LOG10_E;

/// Gaps kept in the window.
pub const SAMPLE_SIZE: usize = 1000;

/// Heartbeat arrival statistics of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureDetector {
    heartbeat_interval: f64,
    hard_timeout: f64,
    last: f64,
    init_gap: i64,
    window: VecDeque<i64>,
}

impl FailureDetector {
    /// A detector whose last heartbeat is `init_last` and whose window holds one gap of
    /// `heartbeat_interval`.
    pub fn new(heartbeat_interval: f64, hard_timeout: f64, init_last: f64) -> Self {
        let init_gap = (heartbeat_interval * 1e6) as i64;
        FailureDetector {
            heartbeat_interval,
            hard_timeout,
            last: init_last,
            init_gap,
            window: VecDeque::from([init_gap]),
        }
    }

    /// Whether nothing arrived for longer than `hard_timeout`.
    pub fn hard_timeout(&self, now: f64) -> bool {
        now - self.last > self.hard_timeout
    }

    /// Records a heartbeat at `now`.
    pub fn add(&mut self, now: f64) {
        if self.window.is_empty() {
            self.window.push_back(self.init_gap);
        } else {
            self.window.push_back(((now - self.last) * 1e6) as i64);
            if self.window.len() > SAMPLE_SIZE {
                self.window.pop_front();
            }
        }
        self.last = now;
    }

    /// The suspicion level at `now` (0 with an empty window).
    pub fn phi(&self, now: f64) -> f64 {
        if self.window.is_empty() {
            return 0.0;
        }
        let (mut sum, mut fact) = (0i128, 0i128);
        for (i, gap) in self.window.iter().enumerate() {
            let w = i as i128 + 1;
            sum += i128::from(*gap) * w;
            fact += w;
        }
        let mean_usec = sum.div_euclid(fact);
        let mean = (mean_usec as f64 / 1e6) - self.heartbeat_interval + 1.0;
        let t = now - self.last - self.heartbeat_interval + 1.0;
        PHI_FACTOR * t / mean
    }

    /// Number of gaps in the window.
    pub fn sample_size(&self) -> usize {
        self.window.len()
    }

    /// Forgets every sample (after a detach): recovery then needs a fresh window.
    pub fn clear(&mut self) {
        self.window.clear();
        self.last = 0.0;
    }
}

/// What a state transition did, so the caller knows to rebuild the weight array and what to log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    /// Nothing changed.
    None,
    /// Detached: no heartbeat for longer than `hard_timeout`.
    DetachedHardTimeout,
    /// Detached: phi crossed the threshold (the value).
    DetachedPhi(f64),
    /// Recovered after enough heartbeats.
    Recovered,
}

impl Transition {
    /// Whether the availability changed (the weight array must be rebuilt).
    pub fn changed(self) -> bool {
        self != Transition::None
    }
}

/// Detector parameters shared by every node of an output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    /// `heartbeat_interval` in seconds.
    pub heartbeat_interval: f64,
    /// `hard_timeout` in seconds.
    pub hard_timeout: f64,
    /// `phi_threshold`.
    pub phi_threshold: f64,
    /// `phi_failure_detector`.
    pub phi_failure_detector: bool,
    /// `recover_wait / heartbeat_interval`: heartbeats needed after a detach.
    pub recover_sample_size: f64,
}

/// The availability of one node (Fluentd's `Node#available?` with `tick` and `heartbeat`).
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// Whether the load balancer may use the node.
    pub available: bool,
    /// Its heartbeat statistics.
    pub failure: FailureDetector,
}

impl Health {
    /// A node that starts available, its last heartbeat at `now`.
    pub fn new(conf: &DetectorConfig, now: f64) -> Self {
        Health {
            available: true,
            failure: FailureDetector::new(conf.heartbeat_interval, conf.hard_timeout, now),
        }
    }

    /// The periodic check (`Node#tick`): detaches a node whose heartbeats stopped.
    pub fn tick(&mut self, conf: &DetectorConfig, now: f64) -> Transition {
        if !self.available {
            if self.failure.hard_timeout(now) {
                self.failure.clear();
            }
            return Transition::None;
        }
        if self.failure.hard_timeout(now) {
            self.available = false;
            self.failure.clear();
            return Transition::DetachedHardTimeout;
        }
        if conf.phi_failure_detector {
            let phi = self.failure.phi(now);
            if phi > conf.phi_threshold {
                self.available = false;
                self.failure.clear();
                return Transition::DetachedPhi(phi);
            }
        }
        Transition::None
    }

    /// A heartbeat arrived (`detect`) or data was sent (`!detect`, which never recovers a node).
    pub fn heartbeat(&mut self, conf: &DetectorConfig, now: f64, detect: bool) -> Transition {
        self.failure.add(now);
        if detect && !self.available && self.failure.sample_size() as f64 > conf.recover_sample_size
        {
            self.available = true;
            return Transition::Recovered;
        }
        Transition::None
    }

    /// Marks the node unavailable after a failed exchange (`Node#disable!`): no ack, or the
    /// peer closed the connection. Heartbeats bring it back.
    pub fn disable(&mut self) {
        self.available = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> DetectorConfig {
        DetectorConfig {
            heartbeat_interval: 1.0,
            hard_timeout: 60.0,
            phi_threshold: 16.0,
            phi_failure_detector: true,
            recover_sample_size: 10.0,
        }
    }

    #[test]
    fn phi_values() {
        // (heartbeats at these times, now, expected phi)
        let check = |beats: &[f64], now: f64, expect: f64| {
            let mut d = FailureDetector::new(1.0, 60.0, 0.0);
            for b in beats {
                d.add(*b);
            }
            let got = d.phi(now);
            assert!(
                (got - expect).abs() < 1e-9,
                "{beats:?} at {now}: {got} != {expect}"
            );
        };
        // One initial gap of 1 s: mean 1, t = elapsed.
        check(&[], 0.0, 0.0);
        check(&[], 1.0, PHI_FACTOR);
        check(&[], 10.0, 10.0 * PHI_FACTOR);
        // Regular 1 s beats keep the mean at 1 s.
        check(&[1.0, 2.0, 3.0], 4.0, PHI_FACTOR);
        // Gaps of 2 s after the initial 1 s: weighted mean (1*1 + 2*2 + 2*3) / 6 = 11/6 s,
        // kept in whole microseconds (1.833333 s).
        check(&[2.0, 4.0], 4.0, 0.0);
        check(&[2.0, 4.0], 6.0, PHI_FACTOR * 2.0 / 1.833_333);
        // The mean is whole microseconds: (1e6 + 2*1.5e6 + 3*0.25e6) / 6 truncates to 791666.
        let mut d = FailureDetector::new(1.0, 60.0, 0.0);
        d.add(1.5);
        d.add(1.75);
        assert!((d.phi(2.75) - PHI_FACTOR / 0.791_666).abs() < 1e-9);
    }

    #[test]
    fn phi_crosses_16_after_about_37_seconds_with_defaults() {
        let d = FailureDetector::new(1.0, 60.0, 100.0);
        assert!(d.phi(136.0) < 16.0);
        assert!(d.phi(137.0) > 16.0);
        // A short interval does not make detection faster: Fluentd normalises to 1 s.
        let d = FailureDetector::new(0.1, 60.0, 100.0);
        assert!(d.phi(135.0) < 16.0);
        assert!(d.phi(137.0) > 16.0);
    }

    #[test]
    fn window_is_bounded_and_clear_empties_it() {
        let mut d = FailureDetector::new(1.0, 60.0, 0.0);
        for i in 1..=SAMPLE_SIZE + 50 {
            d.add(i as f64);
        }
        assert_eq!(d.sample_size(), SAMPLE_SIZE);
        d.clear();
        assert_eq!((d.sample_size(), d.phi(5.0)), (0, 0.0));
        d.add(7.0);
        assert_eq!(
            d.sample_size(),
            1,
            "first add after clear seeds the initial gap"
        );
    }

    #[test]
    fn hard_timeout_is_strictly_greater() {
        let d = FailureDetector::new(1.0, 60.0, 0.0);
        assert!(!d.hard_timeout(60.0));
        assert!(d.hard_timeout(60.001));
    }

    #[derive(Clone, Copy)]
    enum Step {
        Tick,
        Beat,
        Sent,
        Disable,
    }

    /// Runs (time, action, expected transition, expected availability) steps.
    fn run(conf: &DetectorConfig, steps: &[(f64, Step, Transition, bool)]) {
        let mut h = Health::new(conf, 0.0);
        for (i, (now, step, want, avail)) in steps.iter().enumerate() {
            let got = match step {
                Step::Tick => h.tick(conf, *now),
                Step::Beat => h.heartbeat(conf, *now, true),
                Step::Sent => h.heartbeat(conf, *now, false),
                Step::Disable => {
                    h.disable();
                    Transition::None
                }
            };
            let same = match (got, want) {
                (Transition::DetachedPhi(_), Transition::DetachedPhi(_)) => true,
                (g, w) => g == *w,
            };
            assert!(same, "step {i}: got {got:?}, want {want:?}");
            assert_eq!(h.available, *avail, "step {i}: availability");
        }
    }

    #[test]
    fn detach_by_phi_then_recover_after_recover_wait() {
        use Step::*;
        let c = conf();
        let mut steps = vec![
            (1.0, Beat, Transition::None, true),
            (1.0, Tick, Transition::None, true),
            (30.0, Tick, Transition::None, true),
            (40.0, Tick, Transition::DetachedPhi(0.0), false),
            (41.0, Tick, Transition::None, false),
        ];
        // 10 heartbeats are not enough (sample_size must exceed recover_wait/interval = 10).
        for i in 0..10 {
            steps.push((42.0 + f64::from(i), Beat, Transition::None, false));
        }
        steps.push((52.0, Beat, Transition::Recovered, true));
        steps.push((53.0, Tick, Transition::None, true));
        run(&c, &steps);
    }

    #[test]
    fn detach_by_hard_timeout_when_phi_is_off() {
        use Step::*;
        let c = DetectorConfig {
            phi_failure_detector: false,
            hard_timeout: 5.0,
            ..conf()
        };
        run(
            &c,
            &[
                (4.0, Tick, Transition::None, true),
                (5.5, Tick, Transition::DetachedHardTimeout, false),
                // Sending data never recovers a node.
                (6.0, Sent, Transition::None, false),
            ],
        );
    }

    #[test]
    fn disable_then_a_heartbeat_with_a_full_window_recovers_at_once() {
        use Step::*;
        // Fluentd's disable! keeps the window: a node with history comes back on the next beat.
        let c = conf();
        let mut steps: Vec<_> = (1..=11)
            .map(|i| (f64::from(i), Beat, Transition::None, true))
            .collect();
        steps.push((11.5, Disable, Transition::None, false));
        steps.push((12.0, Beat, Transition::Recovered, true));
        run(&c, &steps);
    }
}
