//! Fluentd's weighted round-robin (`out_forward/load_balancer.rb`).
//!
//! The weight array lists node indices: each node with weight `w > 0` appears `w / gcd`
//! times, the array is repeated until it holds at least 6× the node count ("for load
//! balancing during detecting crashed servers"), then shuffled with a seed fixed for the
//! life of the output, so every rebuild of the same node set gives the same order. When
//! regular nodes are unavailable, available standby nodes are promoted (in config order)
//! until the lost weight is covered. Selection walks the array round-robin from a shared
//! cursor, skipping unavailable nodes, and tries each slot at most once per call.

use rand::SeedableRng;
use rand::seq::SliceRandom;

/// What the balancer needs to know about a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeInfo {
    /// `weight` (0 = never used).
    pub weight: u32,
    /// `standby`.
    pub standby: bool,
    /// Whether the failure detector currently lets it be used.
    pub available: bool,
}

/// The result of a rebuild: the weight array and the standby nodes promoted into it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WeightArray {
    /// Node indices, repeated per weight and shuffled.
    pub slots: Vec<usize>,
    /// Standby nodes promoted because regular nodes are down.
    pub promoted: Vec<usize>,
    /// Weight of the unavailable regular nodes.
    pub lost_weight: u64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Builds the weight array for `nodes` with the output's fixed `seed`.
pub fn build_weight_array(nodes: &[NodeInfo], seed: u64) -> WeightArray {
    let used: Vec<(usize, NodeInfo)> = nodes
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, n)| n.weight > 0)
        .collect();
    let (standby, mut regular): (Vec<_>, Vec<_>) = used.into_iter().partition(|(_, n)| n.standby);
    let lost_weight: u64 = regular
        .iter()
        .filter(|(_, n)| !n.available)
        .map(|(_, n)| u64::from(n.weight))
        .sum();
    let mut promoted = Vec::new();
    let mut lost = i128::from(lost_weight);
    if lost > 0 {
        for &(i, n) in &standby {
            if n.available {
                regular.push((i, n));
                promoted.push(i);
                lost -= i128::from(n.weight);
                if lost <= 0 {
                    break;
                }
            }
        }
    }
    let g = regular
        .iter()
        .fold(0u64, |acc, (_, n)| gcd(acc, u64::from(n.weight)))
        .max(1);
    let mut slots = Vec::new();
    for &(i, n) in &regular {
        let times = usize::try_from(u64::from(n.weight) / g).unwrap_or(0);
        slots.extend(std::iter::repeat_n(i, times));
    }
    if !slots.is_empty() {
        let coe = (regular.len() * 6) / slots.len();
        if coe > 1 {
            let once = slots.clone();
            for _ in 1..coe {
                slots.extend_from_slice(&once);
            }
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        slots.shuffle(&mut rng);
    }
    WeightArray {
        slots,
        promoted,
        lost_weight,
    }
}

/// The weight array plus the round-robin cursor.
#[derive(Debug, Clone, Default)]
pub struct RoundRobin {
    slots: Vec<usize>,
    rr: usize,
}

impl RoundRobin {
    /// Replaces the array, keeping the cursor (Fluentd does not reset it).
    pub fn set(&mut self, slots: Vec<usize>) {
        self.slots = slots;
    }

    /// The current weight array.
    pub fn slots(&self) -> &[usize] {
        &self.slots
    }

    /// Advances the cursor and returns the node in that slot (`@rr = (@rr + 1) % len`).
    pub fn next_slot(&mut self) -> Option<usize> {
        let len = self.slots.len();
        if len == 0 {
            return None;
        }
        self.rr = (self.rr + 1) % len;
        self.slots.get(self.rr).copied()
    }

    /// Number of slots (the most attempts one selection makes).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no node can be selected at all.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(weight: u32, standby: bool, available: bool) -> NodeInfo {
        NodeInfo {
            weight,
            standby,
            available,
        }
    }

    #[test]
    fn weight_array_table() {
        // (nodes, occurrences per node in the array, promoted standby nodes)
        let check = |nodes: &[NodeInfo], expect: &[usize], promoted: &[usize]| {
            let w = build_weight_array(nodes, 42);
            let mut c = vec![0; nodes.len()];
            for &i in &w.slots {
                c[i] += 1;
            }
            assert_eq!(
                (c.as_slice(), w.promoted.as_slice()),
                (expect, promoted),
                "{nodes:?}"
            );
        };
        // Equal weights: gcd reduces 60/60 to 1/1, repeated to 6x the node count.
        check(&[n(60, false, true), n(60, false, true)], &[6, 6], &[]);
        // 3:1 after gcd → 4 slots, repeated 12/4 = 3 times.
        check(&[n(30, false, true), n(10, false, true)], &[9, 3], &[]);
        // 5:1 → 6 slots, repeated 12/6 = 2 times; 7:1 → 8 slots, no repetition.
        check(&[n(50, false, true), n(10, false, true)], &[10, 2], &[]);
        check(&[n(70, false, true), n(10, false, true)], &[7, 1], &[]);
        // Weight 0 is ignored, also for standby nodes.
        check(&[n(0, false, true), n(60, false, true)], &[0, 6], &[]);
        check(&[n(60, false, false), n(0, true, true)], &[6, 0], &[]);
        // Unavailable regular nodes stay in the array (selection skips them).
        check(&[n(60, false, false), n(60, false, true)], &[6, 6], &[]);
        // Standby nodes are only used when regular weight is lost.
        check(
            &[n(60, false, true), n(60, false, true), n(60, true, true)],
            &[6, 6, 0],
            &[],
        );
        // One regular down: the first available standby is promoted.
        check(
            &[n(60, false, false), n(60, false, true), n(60, true, true)],
            &[6, 6, 6],
            &[2],
        );
        // Promotion continues until the lost weight is covered, skipping dead standbys.
        check(
            &[
                n(60, false, false),
                n(20, true, false),
                n(20, true, true),
                n(20, true, true),
                n(20, true, true),
            ],
            &[12, 0, 4, 4, 4],
            &[2, 3, 4],
        );
        check(
            &[n(60, false, false), n(60, true, true), n(60, true, true)],
            &[6, 6, 0],
            &[1],
        );
        // Nothing available at all: regular nodes still form the array (they may recover).
        check(&[n(60, false, false)], &[6], &[]);
        // Only standby nodes: nothing is lost, nothing promoted, nothing to select.
        check(&[n(60, true, true)], &[0], &[]);
        check(&[], &[], &[]);
    }

    #[test]
    fn shuffle_is_fixed_per_seed() {
        let nodes = [n(60, false, true), n(30, false, true), n(10, false, true)];
        let a = build_weight_array(&nodes, 7).slots;
        assert_eq!(a, build_weight_array(&nodes, 7).slots);
        assert_eq!(a.len(), 10);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_ne!(a, sorted, "shuffled");
    }

    // Ported from fluentd test/plugin/out_forward/test_load_balancer.rb.
    #[test]
    fn select_skips_unavailable_and_alternates_like_round_robin() {
        // 'select healthy node': n1 down, n2 up → always n2.
        let nodes = [n(1, false, false), n(1, false, true)];
        let mut rr = RoundRobin::default();
        rr.set(build_weight_array(&nodes, 1).slots);
        for _ in 0..rr.len() {
            let picked = (0..rr.len())
                .filter_map(|_| rr.next_slot())
                .find(|&i| nodes[i].available);
            assert_eq!(picked, Some(1));
        }
        // 'call like round robin': over a full cycle each of two equal nodes is picked
        // equally often.
        let both = [n(1, false, true), n(1, false, true)];
        rr.set(build_weight_array(&both, 3).slots);
        let mut c = [0; 2];
        for _ in 0..rr.len() {
            if let Some(i) = rr.next_slot() {
                c[i] += 1;
            }
        }
        assert_eq!(c, [6, 6]);
        // 'raise an error if all node are unavailable': nothing is selectable.
        let dead = [n(1, false, false)];
        rr.set(build_weight_array(&dead, 1).slots);
        let picked = (0..rr.len())
            .filter_map(|_| rr.next_slot())
            .find(|&i| dead[i].available);
        assert_eq!(picked, None);
    }

    #[test]
    fn round_robin_advances_then_reads() {
        let mut rr = RoundRobin::default();
        assert_eq!(rr.next_slot(), None);
        rr.set(vec![0, 1, 2]);
        let got: Vec<_> = (0..7).filter_map(|_| rr.next_slot()).collect();
        assert_eq!(got, [1, 2, 0, 1, 2, 0, 1]);
        // A rebuild keeps the cursor.
        rr.set(vec![5, 6, 7, 8]);
        assert_eq!(rr.next_slot(), Some(7));
    }
}
