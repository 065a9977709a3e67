//! Log lines for events that an attacker can repeat at will (connections refused at accept):
//! at most one line per interval, saying how many events it stands for. The events themselves
//! are counted in metrics, every one.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One log line per `every` at most.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    /// When the last line went out, and the events since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub const fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Records one event: `Some(n)` when a line may go out now, standing for the `n` events
    /// since the last line (this one included); `None` while the last line is recent.
    pub fn event(&self) -> Option<u64> {
        self.event_at(Instant::now())
    }

    fn event_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, since) = &mut *state;
        *since += 1;
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.every) {
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first event is logged at once; a burst within the interval gives no line; the next
    /// line after the interval stands for the whole burst.
    #[test]
    fn one_line_per_interval_counting_the_burst() {
        let throttle = Throttle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(throttle.event_at(start), Some(1));
        for i in 1..=399 {
            assert_eq!(throttle.event_at(start + Duration::from_millis(i)), None);
        }
        assert_eq!(
            throttle.event_at(start + Duration::from_secs(10)),
            Some(400)
        );
        assert_eq!(throttle.event_at(start + Duration::from_secs(11)), None);
    }
}
