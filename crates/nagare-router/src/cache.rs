//! The per-label route cache: Fluentd's `MatchCache` (1024 tags, oldest evicted first), split
//! into shards behind `RwLock`s so that hits from many threads only take a shared lock.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, RwLock};

use crate::table::Route;

/// Fluentd's `MatchCache::MATCH_CACHE_SIZE`.
pub const ROUTE_CACHE_CAPACITY: usize = 1024;

const SHARDS: usize = 16;

#[derive(Default)]
struct Shard {
    map: HashMap<Arc<str>, Arc<Route>>,
    /// Insertion order, for first-in-first-out eviction.
    order: VecDeque<Arc<str>>,
}

/// A bounded tag → route map safe to share between threads.
pub(crate) struct RouteCache {
    hasher: RandomState,
    shards: Vec<RwLock<Shard>>,
    per_shard: usize,
}

impl RouteCache {
    pub(crate) fn new() -> RouteCache {
        RouteCache {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            per_shard: ROUTE_CACHE_CAPACITY / SHARDS,
        }
    }

    fn shard(&self, tag: &str) -> Option<&RwLock<Shard>> {
        let h = self.hasher.hash_one(tag);
        // The modulo keeps the index in range; truncation of the hash is intended.
        self.shards.get((h as usize) % SHARDS)
    }

    /// The cached route for `tag`, or the one `compute` gives (then cached).
    pub(crate) fn get_or_insert_with(
        &self,
        tag: &str,
        compute: impl FnOnce() -> Route,
    ) -> Arc<Route> {
        let Some(shard) = self.shard(tag) else {
            return Arc::new(compute());
        };
        {
            let guard = shard
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(route) = guard.map.get(tag) {
                return Arc::clone(route);
            }
        }
        let route = Arc::new(compute());
        let mut guard = shard
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(existing) = guard.map.get(tag) {
            // Another thread got there first; both computed the same answer.
            return Arc::clone(existing);
        }
        let key: Arc<str> = Arc::from(tag);
        guard.map.insert(Arc::clone(&key), Arc::clone(&route));
        guard.order.push_back(key);
        while guard.order.len() > self.per_shard {
            if let Some(oldest) = guard.order.pop_front() {
                guard.map.remove(&oldest);
            }
        }
        route
    }

    /// How many tags are cached (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).map.len())
            .sum()
    }
}
