//! State that replicas share (SPEC section 8): fixed-window counters for plan limits, beside the
//! DPoP replay store (`authority::replay`). Without `state.redis` both live in this process's
//! memory; with it, on Redis, so every replica sees every other's counts and spent proofs.
//!
//! The request path only sees the traits; `server` picks the implementation from the config.

pub mod memory;

use std::time::Duration;

use async_trait::async_trait;

/// The shared store could not answer within `state.redis.timeout`, or answered an error.
/// Holds no key or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the shared state store is unavailable: {0}")]
pub struct StateError(pub String);

/// One counted event in a fixed window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Events counted in the current window, this one included.
    pub count: u64,
    /// Time until the window ends and the count starts again.
    pub resets_in: Duration,
}

/// Fixed-window counters: `key` names what is counted (a plan limit's kind and the caller's
/// license, subject or address); a window starts with its first event and lasts `window`.
#[async_trait]
pub trait Counters: Send + Sync {
    /// Counts one event under `key` and returns the window's count after it.
    async fn hit(&self, key: &str, window: Duration) -> Result<Hit, StateError>;
}
