//! Time as the core sees it, handed in by the shell: monotonic instants for timers, and the
//! wall clock for dates that other machines must read the same way.

use core::time::Duration;

/// A point on the shell's monotonic clock, in nanoseconds.
///
/// The core never reads a clock; every input carries the shell's `now`.
/// The unit matches the WASI monotonic clock, so a host can pass its reading through unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub u64);

impl Instant {
    /// Returns the instant `duration` after `self`, saturating at the end of time.
    pub fn after(self, duration: Duration) -> Instant {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }

    /// Returns the time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// A reading of the shell's wall clock, in seconds since the Unix epoch.
///
/// Only what must mean the same on any machine uses it (the dates of sealed sessions at the
/// edge, checked by another isolate or replica); timers use [`Instant`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WallClock(pub u64);
