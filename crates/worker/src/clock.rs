//! The core's clock: `Date.now()` as nanoseconds since the Unix epoch.
//!
//! Wall-clock time on purpose: in edge mode the core dates the sessions it seals into ids
//! and checks their age on later requests, in other isolates. Workers have no monotonic
//! clock, and `Date.now()` only advances while the Worker waits on IO; timeouts within one
//! request are measured well enough with it.

use mcp_proxy_core::Instant;

const NANOS_PER_MILLI: f64 = 1_000_000.0;

/// The current time on the core's clock.
pub(crate) fn now() -> Instant {
    let millis = worker::js_sys::Date::now();
    // `as` saturates: a clock before 1970 reads 0, one past the year 2554 reads u64::MAX.
    Instant((millis * NANOS_PER_MILLI) as u64)
}
