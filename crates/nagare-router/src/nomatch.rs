//! Fluentd's "no patterns matched" log policy (`match.rb NoMatchMatch`): warn at the 1st, 2nd,
//! 4th, … 256th occurrence, then at every 512th; the others are trace-level only.

use std::collections::HashMap;

/// Whether the `count`-th occurrence (1-based) is logged at warn level.
///
/// Fluentd: `c < 512 ? log2(c) is an integer : c % 512 == 0`.
pub fn should_warn_no_match(count: u64) -> bool {
    if count < 512 {
        count.is_power_of_two()
    } else {
        count % 512 == 0
    }
}

/// Counts "no patterns matched" occurrences per tag and says when to warn.
///
/// Fluentd keeps one counter per router; nagare keeps one per tag so that a noisy tag does not
/// hide a new one. At most `max_tags` tags are tracked; when full, the counters start over
/// (so a flood of distinct tags is still reported, at the same rate as a fresh start).
#[derive(Debug)]
pub struct NoMatchReporter {
    counts: HashMap<String, u64>,
    max_tags: usize,
    suppressed: bool,
}

impl Default for NoMatchReporter {
    fn default() -> Self {
        NoMatchReporter::new(crate::cache::ROUTE_CACHE_CAPACITY)
    }
}

impl NoMatchReporter {
    /// A reporter tracking at most `max_tags` distinct tags.
    pub fn new(max_tags: usize) -> NoMatchReporter {
        NoMatchReporter {
            counts: HashMap::new(),
            max_tags: max_tags.max(1),
            suppressed: false,
        }
    }

    /// Never warn (Fluentd's `suppress_missing_match!`, used for `<label @FLUENT_LOG>`).
    pub fn suppressed() -> NoMatchReporter {
        NoMatchReporter {
            suppressed: true,
            ..NoMatchReporter::default()
        }
    }

    /// Records one unmatched emit of `tag`; `true` when it should be logged at warn level.
    pub fn record(&mut self, tag: &str) -> bool {
        if self.suppressed {
            return false;
        }
        if let Some(count) = self.counts.get_mut(tag) {
            *count = count.saturating_add(1);
            return should_warn_no_match(*count);
        }
        if self.counts.len() >= self.max_tags {
            self.counts.clear();
        }
        self.counts.insert(tag.to_owned(), 1);
        should_warn_no_match(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warn_counts_follow_fluentd() {
        let warned: Vec<u64> = (1..=3000).filter(|&c| should_warn_no_match(c)).collect();
        assert_eq!(
            warned,
            [
                1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 1536, 2048, 2560
            ]
        );
        assert!(!should_warn_no_match(0));
    }

    #[test]
    fn counts_are_per_tag() {
        let mut r = NoMatchReporter::default();
        let seq: Vec<bool> = ["a", "a", "b", "a", "a", "b"]
            .iter()
            .map(|t| r.record(t))
            .collect();
        assert_eq!(seq, [true, true, true, false, true, true]);
    }

    #[test]
    fn bounded_and_suppressible() {
        let mut r = NoMatchReporter::new(2);
        assert!(r.record("a"));
        assert!(r.record("b"));
        assert!(r.record("c")); // table full: starts over
        assert!(r.record("a"));
        assert!(r.counts.len() <= 2);
        let mut s = NoMatchReporter::suppressed();
        assert!(!s.record("a"));
    }
}
