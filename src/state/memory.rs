//! Fixed-window counters in this process's memory: the store without `state.redis` (one
//! replica), and the stand-in while Redis does not answer under `onUnavailable: memory`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Counters, Hit, StateError};

/// Windows are swept when the map holds this many keys.
const SWEEP_AT: usize = 10_000;

/// Counts per key with the instant their window ends.
#[derive(Default)]
pub struct MemoryCounters {
    windows: Mutex<HashMap<String, (u64, Instant)>>,
}

impl MemoryCounters {
    pub fn new() -> Self {
        Self::default()
    }

    /// The synchronous core of [`Counters::hit`], at `now`.
    pub fn hit_at(&self, key: &str, window: Duration, now: Instant) -> Hit {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, (_, ends)| *ends > now);
        }
        let entry = windows.entry(key.to_string()).or_insert((0, now + window));
        if entry.1 <= now {
            *entry = (0, now + window);
        }
        entry.0 = entry.0.saturating_add(1);
        Hit {
            count: entry.0,
            resets_in: entry.1.saturating_duration_since(now),
        }
    }
}

#[async_trait]
impl Counters for MemoryCounters {
    async fn hit(&self, key: &str, window: Duration) -> Result<Hit, StateError> {
        Ok(self.hit_at(key, window, Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window starts at its first event, counts per key, and starts over once it ends.
    #[test]
    fn fixed_windows() {
        let counters = MemoryCounters::new();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let rows = [
            ("a", 0, 1, 60),
            ("a", 10, 2, 50),
            ("b", 10, 1, 60),
            ("a", 59, 3, 1),
            ("a", 60, 1, 60),
            ("a", 61, 2, 59),
        ];
        for (key, at, count, resets_in) in rows {
            let hit = counters.hit_at(key, s(60), t0 + s(at));
            assert_eq!(
                (hit.count, hit.resets_in),
                (count, s(resets_in)),
                "{key}@{at}"
            );
        }
    }
}
