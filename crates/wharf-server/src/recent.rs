//! [`RecentMap`]: what the server keeps in memory of what the store holds, for a
//! while.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A map whose entries are used for a while after they were put in (`fresh_for`),
/// then ignored until put in again: what the server keeps in memory of what the
/// store holds, so that thousands of agents' requests do not each read it. At
/// `max` entries the stale ones are dropped, and if that is not enough, all.
#[derive(Clone)]
pub struct RecentMap<V> {
    entries: Arc<Mutex<HashMap<String, (Instant, V)>>>,
    fresh_for: Duration,
    max: usize,
}

impl<V: Clone> RecentMap<V> {
    pub fn new(fresh_for: Duration, max: usize) -> Self {
        Self {
            entries: Arc::default(),
            fresh_for,
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, V)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry for `key`, if it is still fresh.
    pub fn get(&self, key: &str) -> Option<V> {
        self.lock()
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.fresh_for)
            .map(|(_, value)| value.clone())
    }

    pub fn insert(&self, key: &str, value: V) {
        let mut map = self.lock();
        if map.len() >= self.max && !map.contains_key(key) {
            map.retain(|_, (at, _)| at.elapsed() < self.fresh_for);
            if map.len() >= self.max {
                map.clear();
            }
        }
        map.insert(key.to_owned(), (Instant::now(), value));
    }

    /// Replaces the value of an entry that exists, keeping its age.
    pub fn update(&self, key: &str, value: V) {
        if let Some((_, kept)) = self.lock().get_mut(key) {
            *kept = value;
        }
    }

    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }
}
