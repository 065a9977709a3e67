//! The edge cache (docs/cache.md): manifests by digest and blobs, served again without the registry
//! once their bytes were seen to hash to their digest. Cached bytes are shared by every caller,
//! so each rule below is a guard against one tenant reading another's objects.
//!
//! ```text
//! /v2/ request ─▶ authorize, revocation, limits.pulls (proxy) ─▶ allowed
//!   GET/HEAD manifest|blob by a digest that matches `digest` ─▶ Cache::lookup(kind, repo, digest)
//!      ├─ hit (the registry said 200 for THIS repository within ttl) → answered here
//!      └─ miss → Cache::claim: the first GET fills, the others wait (bounded), then look again
//!            fill: the body is hashed while it streams to the client; stored only on a match
//!   DELETE manifest|blob ─▶ Cache::invalidate (here and, with Redis, on every replica)
//! ```
//!
//! Why a cache of our own and not pingora-cache's `HttpCache`: `HttpCache` is an HTTP cache,
//! keyed by request and driven by `Cache-Control`, with storage left to write either way
//! (its `MemCache` is for tests). The rules here are not HTTP caching rules: the key is a
//! digest checked against a strict grammar, an entry is served per repository only after the
//! registry answered 200 for that repository, and nothing is stored before its bytes hash to
//! the key. Written as a narrow store they are each a few lines that a test can pin down; as
//! `HttpCache` hooks (cache key callbacks, `response_cache_filter`, a verifying storage) they
//! would be spread over its state machine. Eviction is a plain LRU bounded by bytes (the `lru`
//! crate); the streaming hash is `sha2`.
//!
//! This module knows nothing of pingora: `proxy::cached` calls it from the hooks.

pub mod bus;
pub mod digest;
pub mod disk;
pub mod memory;
pub mod range;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

pub use digest::{Digest, Hasher};
use disk::{Disk, DiskObject, DiskSettings};
use memory::Memory;

use crate::metrics::Metrics;

/// How long a request waits for another's fill of the same object before going upstream itself.
pub const FILL_WAIT: Duration = Duration::from_secs(30);

/// The response headers a hit repeats as the registry gave them (`Content-Length` is computed).
pub const KEPT_HEADERS: [&str; 5] = [
    "Content-Type",
    "Docker-Content-Digest",
    "ETag",
    "Docker-Distribution-Api-Version",
    "Accept-Ranges",
];

/// `cache` (docs/cache.md), validated by `config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Bytes the memory tier may hold; 0 turns it off.
    pub memory: u64,
    /// Largest object kept in memory.
    pub max_object: u64,
    /// Longest an entry is served for a repository after the registry last said 200 for it.
    pub ttl: Duration,
    /// The disk tier, for objects larger than `max_object`; its path is read at start only.
    pub disk: Option<DiskSettings>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            memory: 64 << 20,
            max_object: 4 << 20,
            ttl: Duration::from_secs(3600),
            disk: None,
        }
    }
}

impl CacheSettings {
    /// True when an object of `len` bytes may be kept in memory.
    pub fn in_memory(&self, len: u64) -> bool {
        len <= self.max_object && len < self.memory
    }

    /// True when nothing can be stored.
    pub fn off(&self) -> bool {
        self.memory == 0 && self.disk.as_ref().is_none_or(|d| d.size == 0)
    }
}

/// What a digest names: the two routes cached separately (the registry answers a manifest's
/// digest on `blobs/` too, with other headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Manifest,
    Blob,
}

/// An entry's key: the bytes of one digest as one route answers them.
pub type Key = (Kind, Digest);

/// A verified object: the bytes hash to `digest`.
#[derive(Debug)]
pub struct Object {
    pub kind: Kind,
    pub digest: Digest,
    /// [`KEPT_HEADERS`] as the registry sent them.
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Object {
    pub fn key(&self) -> Key {
        (self.kind, self.digest.clone())
    }
}

/// A hit, from either tier.
pub enum Hit {
    Memory(Arc<Object>),
    Disk(DiskObject),
}

/// Fills in progress: one per object and repository.
type Fills = Mutex<HashMap<(Kind, Digest, String), watch::Receiver<()>>>;

/// The cache, shared by every request of the process.
pub struct Cache {
    memory: Mutex<Memory>,
    /// Opened at start from `cache.disk`; `None` without it.
    disk: Option<Disk>,
    fills: Arc<Fills>,
    /// The configuration generation whose sizes are applied.
    applied: AtomicU64,
    metrics: Arc<Metrics>,
    /// The invalidation channel to the other replicas (`state.redis`); `None`: one replica.
    bus: Option<bus::Bus>,
}

/// The first request for an uncached object fills it; the others wait for that.
pub enum Claim {
    Fill(FillGuard),
    Wait(watch::Receiver<()>),
}

/// Held while a request fills an object; dropping it wakes the requests waiting for it.
pub struct FillGuard {
    fills: Arc<Fills>,
    key: (Kind, Digest, String),
    _done: watch::Sender<()>,
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        if let Ok(mut fills) = self.fills.lock() {
            fills.remove(&self.key);
        }
        // `_done` drops after this: every waiter's `changed()` returns.
    }
}

/// Waits until the fill a [`Claim::Wait`] names ended, at most `FILL_WAIT`; false on timeout.
pub async fn wait(mut done: watch::Receiver<()>) -> bool {
    tokio::time::timeout(FILL_WAIT, done.changed())
        .await
        .is_ok()
}

impl Cache {
    /// The cache, its disk tier opened (and its index rebuilt) when `settings.disk` is set;
    /// with `bus`, DELETEs reach the other replicas through it.
    pub fn open(
        settings: &CacheSettings,
        metrics: Arc<Metrics>,
        bus: Option<bus::Bus>,
    ) -> std::io::Result<Cache> {
        let disk = settings.disk.as_ref().map(Disk::open).transpose()?;
        let cache = Cache {
            memory: Mutex::new(Memory::new(settings.memory)),
            disk,
            fills: Arc::default(),
            applied: AtomicU64::new(0),
            metrics,
            bus,
        };
        if let Some(disk) = &cache.disk {
            cache.account_disk(disk, 0);
        }
        Ok(cache)
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies the sizes of configuration `generation` once (a reload that shrinks evicts).
    pub fn apply(&self, settings: &CacheSettings, generation: u64) {
        if self.applied.swap(generation, Ordering::Relaxed) == generation {
            return;
        }
        let mut memory = self.memory();
        let evicted = memory.resize(settings.memory);
        self.account(&memory, evicted);
        drop(memory);
        if let Some(disk) = &self.disk {
            let size = settings.disk.as_ref().map_or(0, |d| d.size);
            self.account_disk(disk, disk.resize(size));
        }
    }

    fn account(&self, memory: &Memory, evicted: u64) {
        self.tier_metrics("memory", memory.bytes(), evicted);
    }

    fn account_disk(&self, disk: &Disk, evicted: u64) {
        self.tier_metrics("disk", disk.bytes(), evicted);
    }

    fn tier_metrics(&self, tier: &str, bytes: u64, evicted: u64) {
        let m = &self.metrics;
        m.cache_bytes.with_label_values(&[tier]).set(bytes as i64);
        if evicted > 0 {
            m.cache_evictions.with_label_values(&[tier]).inc_by(evicted);
        }
    }

    /// The object for `repo`, when it is held and the registry said 200 for `repo` within ttl.
    pub fn lookup(
        &self,
        settings: &CacheSettings,
        kind: Kind,
        repo: &str,
        digest: &Digest,
    ) -> Option<Hit> {
        let key = (kind, digest.clone());
        if let Some(object) = self.memory().get(&key, repo, settings.ttl, Instant::now()) {
            return Some(Hit::Memory(object));
        }
        let disk = self.disk.as_ref()?;
        disk.get(&key, repo, settings.ttl).map(Hit::Disk)
    }

    /// True when an object of `len` bytes may go to the disk tier.
    pub fn fits_disk(&self, settings: &CacheSettings, len: u64) -> bool {
        settings.disk.is_some() && self.disk.as_ref().is_some_and(|d| d.fits(len))
    }

    /// A temporary file of the disk tier for a body being received.
    pub fn disk_temp(&self) -> Option<(std::fs::File, std::path::PathBuf)> {
        let disk = self.disk.as_ref()?;
        disk.temp()
            .map_err(|e| tracing::warn!(error = %e, "cannot write to the cache's disk tier"))
            .ok()
    }

    /// Moves a verified body from its temporary file into the disk tier for `repo`.
    pub fn store_file(
        &self,
        kind: Kind,
        digest: &Digest,
        headers: &[(&'static str, String)],
        temp: &std::path::Path,
        len: u64,
        repo: &str,
    ) {
        let Some(disk) = &self.disk else { return };
        match disk.insert(kind, digest, headers, temp, len, repo) {
            Ok(evicted) => self.account_disk(disk, evicted),
            Err(e) => tracing::warn!(error = %e, %digest, "cannot store in the cache's disk tier"),
        }
    }

    /// Remembers that a disk file hashed to its name, so that later hits need not hash it.
    pub fn remember(&self, kind: Kind, digest: &Digest, verified: disk::Verified) {
        if let Some(disk) = &self.disk {
            disk.remember(&(kind, digest.clone()), verified);
        }
    }

    /// A disk file that no longer hashes to its name: dropped, counted, logged.
    pub fn corrupted(&self, kind: Kind, digest: &Digest) {
        if let Some(disk) = &self.disk {
            disk.remove(&(kind, digest.clone()));
            self.account_disk(disk, 0);
        }
        self.integrity_failure();
        tracing::warn!(%digest, "a file of the cache's disk tier no longer hashes to its name: dropped");
    }

    /// Becomes the filler of `(kind, digest)` for `repo`, or learns whom to wait for.
    pub fn claim(&self, kind: Kind, repo: &str, digest: &Digest) -> Claim {
        let key = (kind, digest.clone(), repo.to_string());
        let mut fills = self.fills.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(done) = fills.get(&key) {
            return Claim::Wait(done.clone());
        }
        let (tx, rx) = watch::channel(());
        fills.insert(key.clone(), rx);
        Claim::Fill(FillGuard {
            fills: self.fills.clone(),
            key,
            _done: tx,
        })
    }

    /// Stores a verified object for `repo` (or records `repo` for the bytes already held).
    pub fn store(&self, settings: &CacheSettings, object: Object, repo: &str) {
        if !settings.in_memory(object.body.len() as u64) {
            return;
        }
        let mut memory = self.memory();
        let evicted = memory.insert(Arc::new(object), repo, Instant::now());
        self.account(&memory, evicted);
    }

    /// Drops every entry of `(kind, digest)` here and, with a bus, on the other replicas
    /// (a failure to publish is logged and counted; the others then drop it within `ttl`).
    pub async fn invalidate(&self, kind: Kind, digest: &Digest) {
        self.drop_local(kind, digest);
        if let Some(bus) = &self.bus {
            if let Err(e) = bus.publish(kind, digest).await {
                tracing::warn!(error = %e, %digest, "cannot tell the other replicas to drop a deleted object");
            }
        }
    }

    /// Drops every entry of `(kind, digest)` in this process; true when there was one.
    pub fn drop_local(&self, kind: Kind, digest: &Digest) -> bool {
        let key = (kind, digest.clone());
        let mut memory = self.memory();
        let mut dropped = memory.remove(&key);
        self.account(&memory, 0);
        drop(memory);
        if let Some(disk) = &self.disk {
            dropped |= disk.remove(&key);
            self.account_disk(disk, 0);
        }
        dropped
    }

    /// Counts one request by how the cache handled it: `hit`, `miss` or `bypass`.
    pub fn count(&self, result: &str) {
        self.metrics
            .cache_requests
            .with_label_values(&[result])
            .inc();
    }

    /// Counts a body that did not hash to its digest (or did not arrive whole).
    pub fn integrity_failure(&self) {
        self.metrics.cache_integrity_failures.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first claimant fills; the others wait and are woken when the filler is done.
    #[tokio::test]
    async fn concurrent_misses_collapse() {
        let cache = Cache::open(&CacheSettings::default(), Arc::new(Metrics::new()), None).unwrap();
        let d = Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
        let Claim::Fill(guard) = cache.claim(Kind::Blob, "r", &d) else {
            panic!("the first claim fills")
        };
        let Claim::Wait(done) = cache.claim(Kind::Blob, "r", &d) else {
            panic!("the second claim waits")
        };
        assert!(matches!(
            cache.claim(Kind::Blob, "other", &d),
            Claim::Fill(_)
        ));
        let waiter = tokio::spawn(wait(done));
        drop(guard);
        assert!(waiter.await.unwrap(), "woken before the bound");
        assert!(matches!(cache.claim(Kind::Blob, "r", &d), Claim::Fill(_)));
    }
}
