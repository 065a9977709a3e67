//! The memory tier: objects in an LRU list bounded by bytes. Each entry remembers the
//! repositories the registry answered 200 for, and when; an entry is served for a repository
//! only while that answer is younger than `ttl`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;

use super::{Key, Object};

/// Bookkeeping counted against the limit besides the bytes themselves.
const ENTRY_OVERHEAD: u64 = 128;

struct Entry {
    object: Arc<Object>,
    /// Repository → when the registry last answered 200 for it with these bytes.
    repos: HashMap<String, Instant>,
}

impl Entry {
    fn cost(&self) -> u64 {
        let headers: usize = self
            .object
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum();
        let repos: usize = self.repos.keys().map(|r| r.len() + 16).sum();
        self.object.body.len() as u64 + (headers + repos) as u64 + ENTRY_OVERHEAD
    }
}

/// The memory tier. Not synchronised: the cache holds it under a lock.
pub struct Memory {
    entries: LruCache<Key, Entry>,
    bytes: u64,
    limit: u64,
}

impl Memory {
    /// An empty tier that holds at most `limit` bytes (0: nothing).
    pub fn new(limit: u64) -> Memory {
        Memory {
            entries: LruCache::unbounded(),
            bytes: 0,
            limit,
        }
    }

    /// Bytes held now, bookkeeping included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The object for `repo`, when the registry answered 200 for it less than `ttl` ago.
    pub fn get(
        &mut self,
        key: &Key,
        repo: &str,
        ttl: Duration,
        now: Instant,
    ) -> Option<Arc<Object>> {
        let entry = self.entries.get(key)?;
        let said = entry.repos.get(repo)?;
        (now.saturating_duration_since(*said) < ttl).then(|| entry.object.clone())
    }

    /// True when the bytes of `key` are held (for any repository).
    pub fn contains(&self, key: &Key) -> bool {
        self.entries.contains(key)
    }

    /// Records that the registry answered 200 for `repo` with `object`'s verified bytes; stores
    /// them when new. Returns how many entries were evicted to stay under the limit.
    pub fn insert(&mut self, object: Arc<Object>, repo: &str, now: Instant) -> u64 {
        let key = object.key();
        if let Some(entry) = self.entries.get_mut(&key) {
            let before = entry.cost();
            entry.repos.insert(repo.to_string(), now);
            let after = entry.cost();
            self.bytes = self.bytes - before + after;
        } else {
            let entry = Entry {
                object,
                repos: HashMap::from([(repo.to_string(), now)]),
            };
            if entry.cost() > self.limit {
                return 0;
            }
            self.bytes += entry.cost();
            self.entries.put(key.clone(), entry);
        }
        self.shrink_to(self.limit)
    }

    /// Drops the entry of `key`; true when there was one.
    pub fn remove(&mut self, key: &Key) -> bool {
        match self.entries.pop(key) {
            Some(entry) => {
                self.bytes -= entry.cost();
                true
            }
            None => false,
        }
    }

    /// Applies a new limit, evicting the least recently used entries; returns how many.
    pub fn resize(&mut self, limit: u64) -> u64 {
        self.limit = limit;
        self.shrink_to(limit)
    }

    fn shrink_to(&mut self, limit: u64) -> u64 {
        let mut evicted = 0;
        while self.bytes > limit {
            let Some((_, entry)) = self.entries.pop_lru() else {
                break;
            };
            self.bytes -= entry.cost();
            evicted += 1;
        }
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Digest, Kind};
    use bytes::Bytes;

    fn object(n: u8, len: usize) -> Arc<Object> {
        let hex: String = std::iter::repeat_n(format!("{n:02x}"), 32).collect();
        Arc::new(Object {
            kind: Kind::Blob,
            digest: Digest::parse(&format!("sha256:{hex}")).unwrap(),
            headers: vec![],
            body: Bytes::from(vec![n; len]),
        })
    }

    /// The tier never holds more than its limit; the least recently used goes first; a
    /// smaller limit evicts at once; an object larger than the limit is not stored.
    #[test]
    fn bounded_by_bytes() {
        let now = Instant::now();
        let ttl = Duration::from_secs(60);
        let mut m = Memory::new(3 * 1200);
        for n in 0..3 {
            assert_eq!(m.insert(object(n, 1000), "r", now), 0);
        }
        assert!(m.get(&object(0, 0).key(), "r", ttl, now).is_some());
        assert_eq!(m.insert(object(3, 1000), "r", now), 1);
        assert!(m.bytes() <= 3 * 1200);
        assert!(m.contains(&object(0, 0).key()), "recently used stays");
        assert!(!m.contains(&object(1, 0).key()), "least recently used goes");
        assert_eq!(m.resize(1200), 2);
        assert!(m.bytes() <= 1200);
        assert_eq!(m.insert(object(9, 5000), "r", now), 0);
        assert!(!m.contains(&object(9, 0).key()));
        assert_eq!(m.resize(0), 1);
        assert_eq!(m.bytes(), 0);
    }

    /// An entry is served only for the repositories the registry answered for, within `ttl`.
    #[test]
    fn per_repository_and_ttl() {
        let now = Instant::now();
        let ttl = Duration::from_secs(60);
        let mut m = Memory::new(1 << 20);
        let key = object(1, 0).key();
        m.insert(object(1, 10), "a/x", now);
        assert!(m.get(&key, "a/x", ttl, now).is_some());
        assert!(m.get(&key, "b/y", ttl, now).is_none());
        assert!(m.get(&key, "a/x", ttl, now + ttl).is_none(), "expired");
        m.insert(object(1, 10), "b/y", now);
        assert!(m.get(&key, "b/y", ttl, now).is_some());
        assert!(m.remove(&key));
        assert!(m.get(&key, "a/x", ttl, now).is_none());
        assert_eq!(m.bytes(), 0);
    }
}
