//! [`Counters`] in this process's memory: the default without `state.redis` (one replica).
//!
//! One map from key to window behind a mutex held for a few instructions, never across an
//! await. Windows that have ended are dropped whenever the map has doubled since the last sweep,
//! so it holds about the windows still running, and never more than `capacity`: past that,
//! counting fails ([`StateError`], answered 503 `state_unavailable`) rather than forgetting
//! counts that still apply.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Counters, Hit, StateError};

/// Live windows held at most by default (about 100 bytes each).
pub const DEFAULT_CAPACITY: usize = 1_000_000;
/// The map is not swept below this many windows.
const MIN_SWEEP: usize = 1024;

/// One fixed window: its count and when it ends.
#[derive(Debug, Clone, Copy)]
struct Window {
    count: u64,
    ends: Instant,
}

#[derive(Debug)]
struct Windows {
    by_key: HashMap<String, Window>,
    /// The size at which the next sweep runs.
    sweep_at: usize,
}

/// Fixed-window counters in memory.
#[derive(Debug)]
pub struct MemoryCounters {
    windows: Mutex<Windows>,
    capacity: usize,
}

impl Default for MemoryCounters {
    fn default() -> Self {
        MemoryCounters::with_capacity(DEFAULT_CAPACITY)
    }
}

impl MemoryCounters {
    /// Counters that hold at most `capacity` running windows.
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryCounters {
            windows: Mutex::new(Windows {
                by_key: HashMap::new(),
                sweep_at: MIN_SWEEP.min(capacity.max(1)),
            }),
            capacity: capacity.max(1),
        }
    }

    /// Counts one event under `key` at `now` (the clock is the caller's, so tests need no sleep).
    pub fn hit_at(&self, key: &str, window: Duration, now: Instant) -> Result<Hit, StateError> {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = windows.by_key.get_mut(key) {
            if now < w.ends {
                w.count = w.count.saturating_add(1);
                return Ok(Hit {
                    count: w.count,
                    resets_in: w.ends - now,
                });
            }
            // The window is over: this event starts the next one.
            *w = Window {
                count: 1,
                ends: now + window,
            };
            return Ok(Hit {
                count: 1,
                resets_in: window,
            });
        }
        if windows.by_key.len() >= windows.sweep_at {
            windows.by_key.retain(|_, w| now < w.ends);
            let live = windows.by_key.len();
            windows.sweep_at = (live * 2).clamp(MIN_SWEEP.min(self.capacity), self.capacity);
        }
        if windows.by_key.len() >= self.capacity {
            return Err(StateError(format!(
                "{} rate-limit windows are running, the most this replica holds",
                self.capacity
            )));
        }
        windows.by_key.insert(
            key.to_string(),
            Window {
                count: 1,
                ends: now + window,
            },
        );
        Ok(Hit {
            count: 1,
            resets_in: window,
        })
    }

    /// Windows held right now (running or not yet swept).
    pub fn len(&self) -> usize {
        self.windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_key
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Counters for MemoryCounters {
    async fn hit(&self, key: &str, window: Duration) -> Result<Hit, StateError> {
        self.hit_at(key, window, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const HOUR: Duration = Duration::from_secs(3600);

    /// A window counts up from its first event, ends `window` later, and the next event after
    /// its end starts a new one; keys count apart.
    #[test]
    fn fixed_windows_roll_over() {
        let counters = MemoryCounters::default();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // (key, seconds after t0, expected count, expected seconds to reset)
        let rows = [
            ("a", 0, 1, 3600),
            ("a", 10, 2, 3590),
            ("b", 10, 1, 3600),
            ("a", 3599, 3, 1),
            ("a", 3600, 1, 3600),
            ("a", 3700, 2, 3500),
            ("b", 3610, 1, 3600),
        ];
        for (key, at, count, resets) in rows {
            let hit = counters.hit_at(key, HOUR, t0 + s(at)).unwrap();
            assert_eq!(
                hit,
                Hit {
                    count,
                    resets_in: s(resets)
                },
                "{key} at {at}s"
            );
        }
    }

    /// Ended windows are dropped, so the map holds about the running ones; a full map refuses
    /// (fail closed) until windows end.
    #[test]
    fn bounded() {
        let counters = MemoryCounters::with_capacity(4000);
        let t0 = Instant::now();
        for round in 0..10u64 {
            let now = t0 + Duration::from_secs(round * 10);
            for i in 0..1000 {
                counters
                    .hit_at(&format!("k{round}-{i}"), Duration::from_secs(5), now)
                    .unwrap();
            }
            assert!(
                counters.len() <= 2000 + MIN_SWEEP,
                "{} windows held",
                counters.len()
            );
        }

        let small = MemoryCounters::with_capacity(2);
        small.hit_at("a", HOUR, t0).unwrap();
        small.hit_at("b", HOUR, t0).unwrap();
        assert!(small.hit_at("c", HOUR, t0).is_err(), "full: refuse");
        assert_eq!(
            small.hit_at("a", HOUR, t0).unwrap().count,
            2,
            "known keys still count"
        );
        let later = t0 + HOUR;
        assert_eq!(
            small.hit_at("c", HOUR, later).unwrap().count,
            1,
            "ended windows make room"
        );
    }

    /// Concurrent hits on one key are each counted once: 8 tasks × 500 hits give the counts
    /// 1..=4000, each exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_hits_count_once() {
        let counters = Arc::new(MemoryCounters::default());
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let counters = counters.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    for _ in 0..500 {
                        seen.push(counters.hit("k", HOUR).await.unwrap().count);
                    }
                    seen
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (1..=4000).collect::<Vec<u64>>());
    }
}
