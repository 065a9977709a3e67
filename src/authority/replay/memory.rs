//! The in-process [`ReplayStore`]: spent `(jkt, jti)` pairs in a map, their expiries in a heap
//! so that pruning never sweeps the whole map. Serves one process; an Authority rebuilt on
//! reload shares it with its predecessor.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{ProofUse, ReplayError, ReplayLimits, ReplayStore};

/// The in-process store: spent `(jkt, jti)` pairs with their expiry.
#[derive(Default)]
pub struct MemoryReplayStore {
    inner: Mutex<Inner>,
}

/// A spent proof: (key thumbprint, jti).
type Spent = (Arc<str>, Arc<str>);

#[derive(Default)]
struct Inner {
    /// Spent proof → expiry.
    seen: HashMap<Spent, i64>,
    /// Live entries per key thumbprint.
    per_key: HashMap<Arc<str>, usize>,
    /// Earliest expiry first, for pruning without a full sweep.
    by_expiry: BinaryHeap<Reverse<(i64, Spent)>>,
}

impl MemoryReplayStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The synchronous core of [`ReplayStore::spend`].
    pub fn spend_now(
        &self,
        proof: &ProofUse,
        limits: ReplayLimits,
        now: i64,
    ) -> Result<(), ReplayError> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.prune(now);
        let jkt: Arc<str> = Arc::from(proof.jkt.as_str());
        let jti: Arc<str> = Arc::from(proof.jti.as_str());
        let key = (jkt.clone(), jti.clone());
        if inner.seen.contains_key(&key) {
            return Err(ReplayError::Replayed);
        }
        if inner.seen.len() >= limits.capacity {
            return Err(ReplayError::Full);
        }
        let held = inner.per_key.get(&jkt).copied().unwrap_or(0);
        if held >= limits.per_key {
            return Err(ReplayError::KeyFull);
        }
        inner.seen.insert(key, proof.expires_at);
        inner.per_key.insert(jkt.clone(), held + 1);
        inner
            .by_expiry
            .push(Reverse((proof.expires_at, (jkt, jti))));
        Ok(())
    }

    /// Live entries (including any expired ones not yet pruned).
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.seen.len()).unwrap_or(0)
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl ReplayStore for MemoryReplayStore {
    async fn spend(
        &self,
        proof: &ProofUse,
        limits: ReplayLimits,
        now: i64,
    ) -> Result<(), ReplayError> {
        self.spend_now(proof, limits, now)
    }

    fn entries(&self) -> usize {
        self.len()
    }
}

impl Inner {
    fn prune(&mut self, now: i64) {
        while let Some(Reverse((expiry, _))) = self.by_expiry.peek() {
            // A proof is still acceptable at its expiry second: keep its jti through it.
            if *expiry >= now {
                break;
            }
            let Some(Reverse((_, spent))) = self.by_expiry.pop() else {
                break;
            };
            self.seen.remove(&spent);
            let jkt = spent.0;
            if let Some(held) = self.per_key.get_mut(&jkt) {
                *held -= 1;
                if *held == 0 {
                    self.per_key.remove(&jkt);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proof(jkt: &str, jti: &str, expires_at: i64) -> ProofUse {
        ProofUse {
            jkt: jkt.into(),
            jti: jti.into(),
            expires_at,
        }
    }

    const ROOMY: ReplayLimits = ReplayLimits {
        capacity: 10,
        per_key: 10,
    };

    /// (jkt, jti, expires_at, now, expected)
    type Row<'a> = (&'a str, &'a str, i64, i64, Result<(), ReplayError>);

    /// Each row spends one proof at `now` against the same store and limits.
    fn run(limits: ReplayLimits, rows: &[Row]) {
        let store = MemoryReplayStore::new();
        for (i, (jkt, jti, expires_at, now, expected)) in rows.iter().enumerate() {
            assert_eq!(
                store.spend_now(&proof(jkt, jti, *expires_at), limits, *now),
                *expected,
                "row {i}: {jkt}/{jti} at {now}"
            );
        }
    }

    /// A jti is refused while remembered, through its expiry second included (the proof is
    /// still acceptable then), and admitted again once expired; the same jti under another key
    /// is another proof.
    #[test]
    fn replay_then_expiry() {
        use ReplayError::*;
        run(
            ROOMY,
            &[
                ("k", "a", 100, 0, Ok(())),
                ("k", "a", 100, 50, Err(Replayed)),
                ("k", "a", 100, 100, Err(Replayed)),
                ("other", "a", 100, 100, Ok(())),
                ("k", "a", 200, 101, Ok(())),
            ],
        );
    }

    /// Case 68: at capacity new proofs are refused (fail closed) until entries expire.
    #[test]
    fn full_fails_closed() {
        use ReplayError::*;
        let limits = ReplayLimits {
            capacity: 2,
            per_key: 2,
        };
        run(
            limits,
            &[
                ("k1", "a", 10, 0, Ok(())),
                ("k2", "b", 20, 0, Ok(())),
                ("k3", "c", 30, 10, Err(Full)),
                ("k3", "c", 30, 11, Ok(())),
            ],
        );
    }

    /// Case 72: one key fills only its share; other keys still get in, and the key gets room
    /// back as its own entries expire.
    #[test]
    fn per_key_share() {
        use ReplayError::*;
        let limits = ReplayLimits {
            capacity: 10,
            per_key: 2,
        };
        run(
            limits,
            &[
                ("greedy", "1", 10, 0, Ok(())),
                ("greedy", "2", 20, 0, Ok(())),
                ("greedy", "3", 30, 0, Err(KeyFull)),
                ("other", "1", 30, 0, Ok(())),
                ("other", "2", 30, 0, Ok(())),
                ("other", "3", 30, 0, Err(KeyFull)),
                ("greedy", "3", 30, 11, Ok(())),
                ("greedy", "4", 30, 11, Err(KeyFull)),
            ],
        );
    }

    /// Limits are read per call: a store shared across a reload follows the new limits.
    #[test]
    fn limits_per_call() {
        let store = MemoryReplayStore::new();
        let tight = ReplayLimits {
            capacity: 1,
            per_key: 1,
        };
        store.spend_now(&proof("k", "a", 10), tight, 0).unwrap();
        assert_eq!(
            store.spend_now(&proof("k", "b", 10), tight, 0),
            Err(ReplayError::Full)
        );
        store.spend_now(&proof("k", "b", 10), ROOMY, 0).unwrap();
        assert_eq!(store.entries(), 2);
    }

    /// Extreme expiry values neither panic nor wrap.
    #[test]
    fn extreme_times() {
        let store = MemoryReplayStore::new();
        store
            .spend_now(&proof("k", "max", i64::MAX), ROOMY, i64::MIN)
            .unwrap();
        store
            .spend_now(&proof("k", "min", i64::MIN), ROOMY, i64::MAX)
            .unwrap();
        assert_eq!(
            store.spend_now(&proof("k", "max", 0), ROOMY, i64::MAX),
            Err(ReplayError::Replayed)
        );
        assert_eq!(
            store.spend_now(&proof("k", "min", 0), ROOMY, i64::MAX),
            Ok(())
        );
    }
}
