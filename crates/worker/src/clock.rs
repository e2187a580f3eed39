//! The core's clocks from `Date.now()`: the monotonic instant for timers and the wall clock
//! that dates sealed sessions.
//!
//! Workers have no monotonic clock, and `Date.now()` only advances while the Worker waits on
//! IO; timeouts within one request are measured well enough with it. Sealed sessions are
//! dated by the wall clock on purpose: their age is checked on later requests, in other
//! isolates.

use mcp_proxy_core::{Instant, WallClock};

const NANOS_PER_MILLI: f64 = 1_000_000.0;

/// The current time on the core's monotonic clock.
pub(crate) fn now() -> Instant {
    let millis = worker::js_sys::Date::now();
    // `as` saturates: a clock before 1970 reads 0, one past the year 2554 reads u64::MAX.
    Instant((millis * NANOS_PER_MILLI) as u64)
}

/// The current wall-clock time, in seconds since the Unix epoch.
pub(crate) fn wall() -> WallClock {
    WallClock((worker::js_sys::Date::now() / 1000.0) as u64)
}
