//! The DPoP replay store on Redis (docs/operations.md, "Running several replicas"), beside the
//! other Redis state: the [`ReplayStore`] seam is `authority::replay`'s: a spent proof is one key,
//! `keyPrefix + "dpop:" + jkt + ":" + jti`, written with `SET NX PX` to live until the proof
//! could no longer be accepted anyway. `NX` makes the first replica to spend a proof the only
//! one: every other replica, and this one after a restart, sees `dpop_replay`.
//!
//! A Redis that does not answer within `state.redis.timeout` is [`ReplayError::Unavailable`]:
//! the proof is not accepted unchecked (`state::fallback` decides whether this replica's memory
//! stands in). The store's bounds (`replayCapacity`, `replayPerKey`) are the memory store's;
//! on Redis, memory is bounded by Redis itself (`maxmemory` with `noeviction`, so a full Redis
//! refuses writes — fail closed — rather than forgetting spent proofs).

use std::sync::Arc;

use async_trait::async_trait;

use super::redis::{ttl_ms, Redis};
use crate::authority::{ProofUse, ReplayError, ReplayLimits, ReplayStore};

/// Spent proofs on Redis, shared by every replica that uses the same Redis and `keyPrefix`.
pub struct RedisReplayStore {
    redis: Arc<Redis>,
}

impl RedisReplayStore {
    pub fn new(redis: Arc<Redis>) -> Self {
        RedisReplayStore { redis }
    }

    /// The key of a spent proof: `jkt` is a fixed-length thumbprint, so `:` cannot blur it.
    fn key(&self, proof: &ProofUse) -> String {
        self.redis.key(&format!("dpop:{}:{}", proof.jkt, proof.jti))
    }
}

#[async_trait]
impl ReplayStore for RedisReplayStore {
    async fn spend(
        &self,
        proof: &ProofUse,
        _limits: ReplayLimits,
        now: i64,
    ) -> Result<(), ReplayError> {
        let key = self.key(proof);
        // Through the expiry second included, as the memory store keeps it.
        let ttl = ttl_ms(proof.expires_at.saturating_sub(now).saturating_add(1));
        let set: Option<String> = self
            .redis
            .run("replay", |mut c| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl)
                    .query_async(&mut c)
                    .await
            })
            .await
            .map_err(|_| ReplayError::Unavailable)?;
        match set {
            Some(_) => Ok(()),
            None => Err(ReplayError::Replayed),
        }
    }

    /// Redis holds the entries; this process holds none.
    fn entries(&self) -> usize {
        0
    }
}
