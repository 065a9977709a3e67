//! The DPoP replay cache: every accepted proof's `jti` is remembered until the proof could no
//! longer be accepted anyway, so a second use is refused (RFC 9449 section 11.1).
//!
//! Bounded: at capacity, after dropping expired entries, new proofs are refused (fail closed).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};

/// Why a `jti` was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("the DPoP proof was already used")]
    Replayed,
    #[error("the replay cache is full")]
    Full,
}

/// Seen `jti` values with their expiry (unix seconds).
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// jti → expiry.
    seen: HashMap<Arc<str>, i64>,
    /// Earliest expiry first, for pruning without a full sweep.
    by_expiry: BinaryHeap<Reverse<(i64, Arc<str>)>>,
}

impl ReplayCache {
    /// An empty cache holding at most `capacity` live entries.
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Admits `jti` through `expires_at` (the last second its proof is acceptable), or refuses
    /// it if it is still remembered or the cache is full of live entries. Entries whose
    /// `expires_at` is before `now` are dropped first.
    pub fn check_and_insert(
        &self,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), ReplayError> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.prune(now);
        if inner.seen.contains_key(jti) {
            return Err(ReplayError::Replayed);
        }
        if inner.seen.len() >= self.capacity {
            return Err(ReplayError::Full);
        }
        let key: Arc<str> = Arc::from(jti);
        inner.seen.insert(key.clone(), expires_at);
        inner.by_expiry.push(Reverse((expires_at, key)));
        Ok(())
    }

    /// Live entries (including any expired ones not yet pruned).
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.seen.len()).unwrap_or(0)
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn prune(&mut self, now: i64) {
        while let Some(Reverse((expiry, _))) = self.by_expiry.peek() {
            // A proof is still acceptable at its expiry second: keep its jti through it.
            if *expiry >= now {
                break;
            }
            if let Some(Reverse((_, jti))) = self.by_expiry.pop() {
                self.seen.remove(&jti);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A jti is refused while remembered, through its expiry second included (the proof is
    /// still acceptable then), and admitted again once expired.
    #[test]
    fn replay_then_expiry() {
        let cache = ReplayCache::new(10);
        assert_eq!(cache.check_and_insert("a", 100, 0), Ok(()));
        assert_eq!(
            cache.check_and_insert("a", 100, 50),
            Err(ReplayError::Replayed)
        );
        assert_eq!(
            cache.check_and_insert("a", 100, 100),
            Err(ReplayError::Replayed)
        );
        assert_eq!(cache.check_and_insert("a", 200, 101), Ok(()));
        assert_eq!(cache.len(), 1);
    }

    /// Case 68: at capacity new jtis are refused (fail closed) until entries expire.
    #[test]
    fn full_fails_closed() {
        let cache = ReplayCache::new(2);
        cache.check_and_insert("a", 10, 0).unwrap();
        cache.check_and_insert("b", 20, 0).unwrap();
        assert_eq!(cache.check_and_insert("c", 30, 10), Err(ReplayError::Full));
        assert_eq!(cache.check_and_insert("c", 30, 11), Ok(()));
        assert_eq!(cache.len(), 2);
    }

    /// Extreme expiry values neither panic nor wrap.
    #[test]
    fn extreme_times() {
        let cache = ReplayCache::new(4);
        cache.check_and_insert("max", i64::MAX, i64::MIN).unwrap();
        cache.check_and_insert("min", i64::MIN, i64::MAX).unwrap();
        assert_eq!(
            cache.check_and_insert("max", 0, i64::MAX),
            Err(ReplayError::Replayed)
        );
        assert_eq!(cache.check_and_insert("min", 0, i64::MAX), Ok(()));
    }
}
