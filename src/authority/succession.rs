//! The Authority in force, and the one a reload asked for (docs/configuration.md, on reload).
//!
//! ```text
//! keys loop ─▶ tend(wanted = Settings.authority)
//!                ├─ same as current().config() → refresh the keys of the one in force
//!                └─ different → successor built beside it (same DPoP replay store), keys fetched
//!                                 ├─ fetched, or the one in force has no usable keys either
//!                                 │     → it takes over
//!                                 └─ not fetched → the one in force keeps serving; retried soon
//! ```
//!
//! The Authority in force carries its own settings: the realm and the proxy read the sender
//! constraint, claim names and clock skew from `current().config()`, never from `Settings`, so
//! a request never mixes two versions of the `authority` section.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::{Authority, AuthorityConfig};

/// How often the keys of the Authority in force are fetched again when all is well.
pub const REFRESH: Duration = Duration::from_secs(300);
/// How soon a failed fetch (of either Authority) is tried again.
pub const RETRY: Duration = Duration::from_secs(5);

/// The Authority in force and its successor-to-be. `Send + Sync`; share it in an `Arc`.
pub struct Succession {
    current: ArcSwap<Authority>,
    /// Built for a reloaded `authority` section, waiting for its keys.
    pending: Mutex<Option<Arc<Authority>>>,
}

impl Succession {
    pub fn new(authority: Authority) -> Self {
        Succession {
            current: ArcSwap::from_pointee(authority),
            pending: Mutex::new(None),
        }
    }

    /// The Authority in force: load it once per request and use it for the whole request.
    pub fn current(&self) -> Arc<Authority> {
        self.current.load_full()
    }

    /// The successor still waiting for its keys, if a reload asked for one.
    pub fn pending(&self) -> Option<Arc<Authority>> {
        self.slot().clone()
    }

    /// True when `wanted` is the configuration in force and no successor waits: nothing to do
    /// until the next regular refresh.
    pub fn settled(&self, wanted: &AuthorityConfig) -> bool {
        self.current().config() == wanted && self.slot().is_none()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<Authority>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One round of the keys loop for the configuration `wanted` (the reloaded settings'):
    /// refreshes the keys in force, or moves towards `wanted`. Returns when to come back.
    pub async fn tend(&self, wanted: &AuthorityConfig) -> Duration {
        let current = self.current();
        if current.config() == wanted {
            // Also what a reload back to the settings in force does to a waiting successor.
            self.slot().take();
            return match current.refresh().await {
                Ok(_) => REFRESH,
                Err(_) => RETRY, // logged by the key cache
            };
        }
        let successor = {
            let mut slot = self.slot();
            match slot.as_ref() {
                Some(s) if s.config() == wanted => s.clone(),
                _ => slot
                    .insert(Arc::new(current.successor(wanted.clone())))
                    .clone(),
            }
        };
        let fetched = successor.refresh().await;
        // A successor without keys replaces one without usable keys at once: neither can serve,
        // and the newer settings are the ones the operator asked for.
        if fetched.is_ok() || !current.status().usable {
            self.current.store(successor.clone());
            let mut slot = self.slot();
            if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, &successor)) {
                slot.take();
            }
            tracing::info!(
                issuer = %wanted.issuer,
                keys = fetched.is_ok(),
                "the reloaded authority settings are in force"
            );
            return if fetched.is_ok() { REFRESH } else { RETRY };
        }
        tracing::warn!(
            issuer = %wanted.issuer,
            "the reloaded authority settings wait for their keys; the previous Authority keeps serving"
        );
        // The one in force keeps its own refresh schedule meanwhile.
        if current.status().age.is_none_or(|age| age >= REFRESH) {
            let _ = current.refresh().await;
        }
        RETRY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::dpop::tests::TestKey;
    use crate::authority::jwks::tests::jwks;
    use crate::authority::tests::config;
    use crate::authority::SenderConstraint;

    /// Nothing listens on port 9: every fetch there fails at once.
    fn unreachable(constraint: SenderConstraint) -> AuthorityConfig {
        AuthorityConfig {
            issuer: "http://127.0.0.1:9".into(),
            metadata_address: "http://127.0.0.1:9/.well-known/openid-configuration".into(),
            ..config(constraint)
        }
    }

    /// An Authority for `config` holding one key, as if fetched.
    fn with_keys(config: AuthorityConfig) -> Authority {
        let authority = Authority::new(config);
        authority
            .load_jwks(&jwks(&[("a1", &TestKey::p256())]))
            .unwrap();
        authority
    }

    /// Each row: the Authority in force has usable keys or not; the wanted settings are the
    /// same as its own or new (at an Authority that cannot be reached). Outcome: which
    /// settings are in force after one round, whether a successor waits, and when to come back.
    #[tokio::test]
    async fn tend_moves_to_the_wanted_settings_only_when_that_can_serve() {
        let in_force = unreachable(SenderConstraint::Dpop);
        let new = unreachable(SenderConstraint::None);
        // (name, current has keys, wanted, in force after, successor waiting, next round)
        let rows = [
            ("same settings", true, &in_force, &in_force, false, RETRY),
            (
                "new settings, no keys for them",
                true,
                &new,
                &in_force,
                true,
                RETRY,
            ),
            ("nothing usable in force", false, &new, &new, false, RETRY),
        ];
        for (name, keys, wanted, after, waiting, next) in rows {
            let current = if keys {
                with_keys(in_force.clone())
            } else {
                Authority::new(in_force.clone())
            };
            let succession = Succession::new(current);
            assert_eq!(succession.tend(wanted).await, next, "{name}");
            assert_eq!(succession.current().config(), after, "{name}");
            assert_eq!(succession.pending().is_some(), waiting, "{name}");
        }
    }

    /// A waiting successor is kept across rounds while the wanted settings stay the same, is
    /// replaced when they change again, and dropped when they go back to the ones in force.
    #[tokio::test]
    async fn a_waiting_successor_follows_the_latest_reload() {
        let in_force = unreachable(SenderConstraint::Dpop);
        let succession = Succession::new(with_keys(in_force.clone()));
        assert!(succession.settled(&in_force));
        let first = unreachable(SenderConstraint::None);
        assert!(!succession.settled(&first));
        succession.tend(&first).await;
        assert!(!succession.settled(&in_force), "a successor waits");
        let waiting = succession.pending().unwrap();
        succession.tend(&first).await;
        assert!(Arc::ptr_eq(&waiting, &succession.pending().unwrap()));

        let second = unreachable(SenderConstraint::Mtls);
        succession.tend(&second).await;
        assert_eq!(succession.pending().unwrap().config(), &second);

        succession.tend(&in_force).await;
        assert!(succession.settled(&in_force));
        assert!(succession.pending().is_none());
        assert_eq!(succession.current().config(), &in_force);
    }

    /// A successor shares the DPoP replay store: a proof spent before the reload stays spent.
    #[tokio::test]
    async fn a_successor_shares_the_replay_store() {
        use crate::authority::{ProofUse, ReplayError, ReplayLimits};
        let limits = ReplayLimits {
            capacity: 10,
            per_key: 10,
        };
        let proof = ProofUse {
            jkt: "key".into(),
            jti: "jti-1".into(),
            expires_at: i64::MAX,
        };
        let before = Authority::new(config(SenderConstraint::Dpop));
        before.replay.spend(&proof, limits, 0).await.unwrap();
        let after = before.successor(config(SenderConstraint::None));
        assert_eq!(after.replay_entries(), 1);
        assert_eq!(
            after.replay.spend(&proof, limits, 0).await,
            Err(ReplayError::Replayed)
        );
        assert_eq!(after.config().sender_constraint, SenderConstraint::None);
    }
}
