//! How long to wait before starting again something that keeps failing: a pool child, a
//! shared upstream, a server left out of a merged session. One rule for all of them.

use std::time::Duration;

use crate::time::Instant;

/// Exponential backoff that forgets past failures once a start lived long enough.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// The first delay.
    first: Duration,
    /// Failures in a row without a healthy lifetime.
    failures: u32,
    /// When the current attempt started.
    started: Instant,
}

/// The delay never grows beyond this.
const MAX: Duration = Duration::from_secs(30);
/// A start that lived this long before failing resets the backoff.
const HEALTHY_LIFETIME: Duration = Duration::from_secs(30);

impl Backoff {
    /// Backoff for restarting a process or connection: 100 ms, doubling up to 30 s.
    pub(crate) fn restart(now: Instant) -> Backoff {
        Backoff { first: Duration::from_millis(100), failures: 0, started: now }
    }

    /// Backoff for a server rejoining a merged session: 500 ms, doubling up to 30 s.
    pub(crate) fn rejoin(now: Instant) -> Backoff {
        Backoff { first: Duration::from_millis(500), failures: 0, started: now }
    }

    /// Notes a new attempt starting at `now`.
    pub(crate) fn started(&mut self, now: Instant) {
        self.started = now;
    }

    /// Notes a failure at `now` and returns how long to wait before the next attempt.
    pub(crate) fn failed(&mut self, now: Instant) -> Duration {
        if now.since(self.started) >= HEALTHY_LIFETIME {
            self.failures = 0;
        }
        let delay = self.first.saturating_mul(1 << self.failures.min(16)).min(MAX);
        self.failures = self.failures.saturating_add(1);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset_after_a_healthy_run() {
        let start = Instant(0);
        let mut backoff = Backoff::restart(start);
        let delays: Vec<u128> = (0..12).map(|_| backoff.failed(start).as_millis()).collect();
        assert_eq!(&delays[..4], &[100, 200, 400, 800]);
        assert_eq!(delays[11], 30_000);
        let later = start.after(Duration::from_secs(100));
        backoff.started(later);
        assert_eq!(backoff.failed(later.after(HEALTHY_LIFETIME)).as_millis(), 100, "a healthy run resets it");
        assert_eq!(Backoff::rejoin(start).failed(start).as_millis(), 500);
    }
}
