//! The DPoP replay store: every proof that led to an issued token has its `jti` remembered
//! until the proof could no longer be accepted anyway, so a second use is refused (RFC 9449
//! section 11.1).
//!
//! Proof verification only says what a proof would spend ([`ProofUse`]); the realm spends it
//! last, after every other check has passed, so a refused request leaves no trace here
//! (docs/http.md, "The token realm").
//!
//! Bounded in total and per key thumbprint ([`ReplayLimits`]): at a limit, after dropping
//! expired entries, new proofs are refused (fail closed), and one key can only fill its share.
//!
//! The store is a seam: the [`ReplayStore`] trait here, one implementation per file beside it
//! (`memory.rs`: [`MemoryReplayStore`], for one process; `state::replay`'s `RedisReplayStore`,
//! shared by every replica on one Redis, so replicas refuse each other's replays). The verifier
//! never sees the store.

use async_trait::async_trait;

mod memory;

pub use memory::MemoryReplayStore;

/// Why a proof could not be spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("the DPoP proof was already used")]
    Replayed,
    #[error("the DPoP replay store is full")]
    Full,
    #[error("this DPoP key holds its whole share of the replay store")]
    KeyFull,
    /// The shared store (Redis) did not answer in time: fail closed, the realm answers 503
    /// `state_unavailable`.
    #[error("the shared DPoP replay store is unavailable")]
    Unavailable,
}

/// What a verified proof spends when its request is granted. Holds no proof text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofUse {
    /// RFC 7638 thumbprint of the proof key.
    pub jkt: String,
    /// The proof's `jti`.
    pub jti: String,
    /// The last second (unix) at which the proof is still acceptable.
    pub expires_at: i64,
}

/// How many live entries the store may hold (`authority.dpop.replayCapacity`,
/// `authority.dpop.replayPerKey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayLimits {
    /// All keys together.
    pub capacity: usize,
    /// One key thumbprint.
    pub per_key: usize,
}

/// Where spent proofs are remembered. The memory store serves one process; a shared store lets
/// replicas refuse each other's replays.
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Records `proof` as used through its expiry, or refuses it when it was used already or a
    /// limit is reached. Expired entries never count against a limit.
    async fn spend(
        &self,
        proof: &ProofUse,
        limits: ReplayLimits,
        now: i64,
    ) -> Result<(), ReplayError>;

    /// Entries held now (for `registry_token_dpop_replay_entries`).
    fn entries(&self) -> usize;
}
