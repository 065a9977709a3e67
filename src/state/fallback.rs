//! `state.redis.onUnavailable: memory`: while Redis does not answer, this replica's memory
//! stores stand in, each use logged (a warning every 10 s at most) and counted in
//! `registry_token_state_fallbacks_total{op}`.
//!
//! The trade-off, for the README: replicas no longer see each other's spent proofs or counts
//! while Redis is away, so a proof can be replayed once per replica and a limit is counted per
//! replica. `refuse` (the default) keeps both exact and answers 503 instead.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::memory::MemoryCounters;
use super::{Counters, Hit, StateError, WARN_EVERY};
use crate::authority::{MemoryReplayStore, ProofUse, ReplayError, ReplayLimits, ReplayStore};
use crate::metrics::Metrics;
use crate::throttle::Throttle;

/// Counts fallbacks and rate-limits their warning.
struct Warned {
    metrics: Arc<Metrics>,
    warnings: Throttle,
}

impl Warned {
    fn new(metrics: Arc<Metrics>) -> Self {
        Warned {
            metrics,
            warnings: Throttle::new(WARN_EVERY),
        }
    }

    /// Counts a fallback for `op` and logs it unless a warning went out in the last
    /// [`WARN_EVERY`].
    fn fell_back(&self, op: &str, why: &str) {
        self.metrics.state_fallbacks.with_label_values(&[op]).inc();
        if let Some(fallbacks) = self.warnings.event() {
            tracing::warn!(
                op,
                error = why,
                fallbacks,
                "Redis does not answer: serving from this replica's memory (onUnavailable: memory)"
            );
        }
    }
}

/// Spends proofs on the shared store, or in memory while it is unavailable.
pub struct FallbackReplayStore {
    shared: Arc<dyn ReplayStore>,
    memory: MemoryReplayStore,
    warned: Warned,
}

impl FallbackReplayStore {
    pub fn new(shared: Arc<dyn ReplayStore>, metrics: Arc<Metrics>) -> Self {
        FallbackReplayStore {
            shared,
            memory: MemoryReplayStore::new(),
            warned: Warned::new(metrics),
        }
    }
}

#[async_trait]
impl ReplayStore for FallbackReplayStore {
    async fn spend(
        &self,
        proof: &ProofUse,
        limits: ReplayLimits,
        now: i64,
    ) -> Result<(), ReplayError> {
        match self.shared.spend(proof, limits, now).await {
            Err(ReplayError::Unavailable) => {
                self.warned
                    .fell_back("replay", "the replay store is unavailable");
                self.memory.spend_now(proof, limits, now)
            }
            // Also remembered here, so that this replica refuses the proof while Redis is away.
            Ok(()) => {
                let _ = self.memory.spend_now(proof, limits, now);
                Ok(())
            }
            refused => refused,
        }
    }

    fn entries(&self) -> usize {
        self.memory.len()
    }
}

/// Counts on the shared store, or in memory while it is unavailable.
pub struct FallbackCounters {
    shared: Arc<dyn Counters>,
    memory: MemoryCounters,
    warned: Warned,
}

impl FallbackCounters {
    pub fn new(shared: Arc<dyn Counters>, metrics: Arc<Metrics>) -> Self {
        FallbackCounters {
            shared,
            memory: MemoryCounters::default(),
            warned: Warned::new(metrics),
        }
    }
}

#[async_trait]
impl Counters for FallbackCounters {
    async fn hit(&self, key: &str, window: Duration) -> Result<Hit, StateError> {
        match self.shared.hit(key, window).await {
            Ok(hit) => Ok(hit),
            Err(e) => {
                self.warned.fell_back("count", &e.0);
                self.memory.hit(key, window).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A shared store that answers, or is down.
    #[derive(Default)]
    struct Flaky {
        down: AtomicBool,
        spent: MemoryReplayStore,
    }

    #[async_trait]
    impl ReplayStore for Flaky {
        async fn spend(
            &self,
            proof: &ProofUse,
            limits: ReplayLimits,
            now: i64,
        ) -> Result<(), ReplayError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(ReplayError::Unavailable);
            }
            self.spent.spend_now(proof, limits, now)
        }
        fn entries(&self) -> usize {
            0
        }
    }

    #[async_trait]
    impl Counters for Flaky {
        async fn hit(&self, _key: &str, window: Duration) -> Result<Hit, StateError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StateError("count: no answer".into()));
            }
            Ok(Hit {
                count: 100,
                resets_in: window,
            })
        }
    }

    const LIMITS: ReplayLimits = ReplayLimits {
        capacity: 10,
        per_key: 10,
    };

    fn proof(jti: &str) -> ProofUse {
        ProofUse {
            jkt: "k".into(),
            jti: jti.into(),
            expires_at: 100,
        }
    }

    /// Shared while up; memory while down, where a proof spent while up is still refused and
    /// one spent while down is refused once; counted.
    #[tokio::test]
    async fn replay_falls_back_to_memory() {
        let shared = Arc::new(Flaky::default());
        let metrics = Arc::new(Metrics::new());
        let store = FallbackReplayStore::new(shared.clone(), metrics.clone());
        let rows = [
            (false, "a", Ok(())),
            (false, "a", Err(ReplayError::Replayed)),
            (true, "a", Err(ReplayError::Replayed)),
            (true, "b", Ok(())),
            (true, "b", Err(ReplayError::Replayed)),
            (false, "c", Ok(())),
        ];
        for (down, jti, expected) in rows {
            shared.down.store(down, Ordering::SeqCst);
            assert_eq!(
                store.spend(&proof(jti), LIMITS, 0).await,
                expected,
                "{jti} down={down}"
            );
        }
        // The three spends while down, each counted.
        assert_eq!(
            metrics.state_fallbacks.with_label_values(&["replay"]).get(),
            3
        );
    }

    /// Counts come from the shared store while it answers, from memory while it does not.
    #[tokio::test]
    async fn counters_fall_back_to_memory() {
        let shared = Arc::new(Flaky::default());
        let metrics = Arc::new(Metrics::new());
        let counters = FallbackCounters::new(shared.clone(), metrics.clone());
        let window = Duration::from_secs(60);
        assert_eq!(counters.hit("k", window).await.unwrap().count, 100);
        shared.down.store(true, Ordering::SeqCst);
        assert_eq!(counters.hit("k", window).await.unwrap().count, 1);
        assert_eq!(counters.hit("k", window).await.unwrap().count, 2);
        assert_eq!(
            metrics.state_fallbacks.with_label_values(&["count"]).get(),
            2
        );
    }
}
