//! When the agent tries a failed request again: exponential backoff with full
//! jitter, and the server's `Retry-After` honoured.
//!
//! Full jitter (each delay drawn uniformly between zero and the current ceiling)
//! matters for a fleet: when a server restarts, thousands of agents whose requests
//! failed together would otherwise retry together, on the same 1, 2, 4, 8 s
//! schedule, and meet the restarted server as one wave each time.

use rand::Rng;
use std::time::Duration;

/// The first ceiling after a failed request; it doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// The highest ceiling. It stays below the server's offline threshold (30 s by
/// default) by a wide margin, so that an agent retrying after an outage is heard
/// from within the grace a restarted server gives it.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15);
/// The shortest delay drawn, so that a draw near zero never makes a busy loop.
const FLOOR: Duration = Duration::from_millis(50);
/// The longest `Retry-After` taken from a server; a larger one is capped.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The delays of one run of failures.
#[derive(Debug)]
pub struct Backoff {
    ceiling: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    pub fn new() -> Self {
        Self::up_to(MAX_BACKOFF)
    }

    /// A backoff whose ceiling grows to `max` at most (heartbeats retry within
    /// their interval).
    pub fn up_to(max: Duration) -> Self {
        Self {
            ceiling: MIN_BACKOFF.min(max),
            max,
        }
    }

    /// The current ceiling: no delay drawn now is longer.
    pub fn ceiling(&self) -> Duration {
        self.ceiling
    }

    /// A delay drawn uniformly between zero and the ceiling (at least [`FLOOR`]);
    /// the ceiling then doubles, up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let delay = draw(self.ceiling);
        self.ceiling = (self.ceiling * 2).min(self.max);
        delay
    }

    /// The delay after a failure whose answer said `Retry-After`: at least that
    /// long, plus a draw as [`Backoff::next_delay`] makes, so that agents the
    /// server sent away together do not come back together.
    pub fn next_delay_after(&mut self, retry_after: Option<Duration>) -> Duration {
        let jittered = self.next_delay();
        match retry_after {
            Some(after) => after.min(MAX_RETRY_AFTER) + jittered,
            None => jittered,
        }
    }

    pub fn reset(&mut self) {
        self.ceiling = MIN_BACKOFF.min(self.max);
    }
}

/// A duration drawn uniformly from `[FLOOR, ceiling]`.
fn draw(ceiling: Duration) -> Duration {
    if ceiling <= FLOOR {
        return ceiling;
    }
    let millis = rand::thread_rng().gen_range(FLOOR.as_millis()..=ceiling.as_millis());
    Duration::from_millis(millis as u64)
}

/// The time to the next heartbeat: the interval less up to a fifth of it, drawn at
/// random, so that agents started together (a fleet booted at once, or all
/// reconnected after a restart) drift apart instead of heartbeating in one wave,
/// and no heartbeat comes later than the server asked.
pub fn heartbeat_delay(interval: Duration) -> Duration {
    interval - draw(interval / 5).min(interval / 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_up_to_fifteen_seconds_and_resets() {
        let mut backoff = Backoff::new();
        let ceilings: Vec<u64> = (0..6)
            .map(|_| {
                let ceiling = backoff.ceiling();
                let delay = backoff.next_delay();
                assert!(
                    delay <= ceiling && delay >= FLOOR,
                    "{delay:?} of {ceiling:?}"
                );
                ceiling.as_secs()
            })
            .collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 15, 15]);
        backoff.reset();
        assert_eq!(backoff.ceiling(), MIN_BACKOFF);
    }

    #[test]
    fn delays_are_spread_over_the_whole_range() {
        // 2,000 draws under a 15 s ceiling: a fixed schedule would give one value.
        let mut backoff = Backoff::new();
        for _ in 0..4 {
            backoff.next_delay();
        }
        let draws: Vec<Duration> = (0..2000).map(|_| backoff.next_delay()).collect();
        let below = draws
            .iter()
            .filter(|d| **d < Duration::from_millis(7500))
            .count();
        assert!(
            (800..1200).contains(&below),
            "{below} of 2000 below half the ceiling"
        );
        assert!(draws.iter().any(|d| *d < Duration::from_secs(1)));
        assert!(draws.iter().any(|d| *d > Duration::from_secs(14)));
    }

    #[test]
    fn retry_after_is_a_lower_bound() {
        let mut backoff = Backoff::new();
        for _ in 0..100 {
            let delay = backoff.next_delay_after(Some(Duration::from_secs(3)));
            assert!(delay >= Duration::from_secs(3) && delay <= Duration::from_secs(18));
        }
        let capped = backoff.next_delay_after(Some(Duration::from_secs(100_000)));
        assert!(capped <= MAX_RETRY_AFTER + MAX_BACKOFF, "{capped:?}");
    }

    #[test]
    fn a_capped_backoff_stays_under_its_cap() {
        let mut backoff = Backoff::up_to(Duration::from_millis(500));
        for _ in 0..50 {
            assert!(backoff.next_delay() <= Duration::from_millis(500));
        }
    }

    #[test]
    fn heartbeats_come_within_their_interval() {
        let interval = Duration::from_secs(10);
        let delays: Vec<Duration> = (0..500).map(|_| heartbeat_delay(interval)).collect();
        assert!(delays
            .iter()
            .all(|d| *d <= interval && *d >= Duration::from_secs(8)));
        assert!(delays.iter().any(|d| *d < Duration::from_millis(9500)));
    }
}
