//! The tables every feature shares, each with its invariants inside: sessions, requests in
//! flight and timers, open HTTP exchanges, and the event log for resumption.

pub(crate) mod event_log;
pub(crate) mod exchange;
pub(crate) mod pending;
pub(crate) mod session;
pub(crate) mod timers;
