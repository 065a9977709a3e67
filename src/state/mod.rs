//! State that replicas share (docs/operations.md, "Running several replicas"): fixed-window
//! counters for plan limits, beside the DPoP replay store (the seam is `authority::replay`; its
//! Redis side is `replay`). Without `state.redis` both live in this process's memory; with it, on
//! Redis, so every replica sees every other's counts and spent proofs.
//!
//! The request path only sees the traits; `server` picks the implementation from the config
//! ([`Stores::build`]): `memory` without `state.redis`; `redis` with it, wrapped by `fallback`
//! under `onUnavailable: memory`. Replicas also hear each other over pub/sub (`pubsub`): the
//! revocation set (`revocations`, docs/revocation.md) is followed that way.

pub mod fallback;
pub mod memory;
pub mod pubsub;
pub mod redis;
pub mod replay;
pub mod revocations;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use self::redis::{OnUnavailable, Redis, RedisSettings};
use self::replay::RedisReplayStore;
use crate::authority::{MemoryReplayStore, ReplayStore};
use crate::metrics::Metrics;
use crate::policy::limits::{self, Kind, Limit, Verdict};

/// A failure of the shared store, or a fallback from it, is logged at most this often (each
/// one is counted in metrics); the lines go through [`crate::throttle::Throttle`].
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The shared store could not answer within `state.redis.timeout`, or answered an error.
/// Holds no key or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the shared state store is unavailable: {0}")]
pub struct StateError(pub String);

/// What a counter answers: the plan limits' own type.
pub use crate::policy::limits::Hit;

/// Fixed-window counters: `key` names what is counted (a plan limit's kind and the caller's
/// license, subject or address); a window starts with its first event and lasts `window`.
#[async_trait]
pub trait Counters: Send + Sync {
    /// Counts one event under `key` and returns the window's count after it.
    async fn hit(&self, key: &str, window: Duration) -> Result<Hit, StateError>;

    /// Counts one `kind` event of `caller` under `limit` (keyed as [`limits::key`] says) and
    /// judges the count: what the realm and the proxy do for a plan limit.
    async fn count(
        &self,
        limit: &Limit,
        kind: Kind,
        caller: &limits::Caller<'_>,
    ) -> Result<Verdict, StateError> {
        let hit = self.hit(&limits::key(kind, caller), limit.per).await?;
        Ok(limits::judge(limit, &hit))
    }
}

/// The stores one process uses, built once at start (a change of `state` needs a restart).
#[derive(Clone)]
pub struct Stores {
    /// Where spent DPoP proofs are remembered (hand it to `Authority::with_store`).
    pub replay: Arc<dyn ReplayStore>,
    /// Where plan limits count.
    pub counters: Arc<dyn Counters>,
    /// The Redis behind both, for readiness and `doctor`; `None` in memory.
    pub redis: Option<Arc<Redis>>,
}

impl Stores {
    /// Memory stores without `state.redis`; Redis stores with it (no I/O yet), counting their
    /// commands, errors and fallbacks into `metrics`.
    pub fn build(
        settings: Option<&RedisSettings>,
        metrics: Arc<Metrics>,
    ) -> Result<Stores, StateError> {
        let Some(settings) = settings else {
            return Ok(Stores {
                replay: Arc::new(MemoryReplayStore::new()),
                counters: Arc::new(memory::MemoryCounters::default()),
                redis: None,
            });
        };
        let redis = Arc::new(Redis::new(settings.clone(), metrics.clone())?);
        let replay: Arc<dyn ReplayStore> = Arc::new(RedisReplayStore::new(redis.clone()));
        let counters: Arc<dyn Counters> = redis.clone();
        let (replay, counters): (Arc<dyn ReplayStore>, Arc<dyn Counters>) =
            match settings.on_unavailable {
                OnUnavailable::Refuse => (replay, counters),
                OnUnavailable::Memory => (
                    Arc::new(fallback::FallbackReplayStore::new(replay, metrics.clone())),
                    Arc::new(fallback::FallbackCounters::new(counters, metrics)),
                ),
            };
        Ok(Stores {
            replay,
            counters,
            redis: Some(redis),
        })
    }
}
