//! Deadlines: what happens when, in one ordered set.

use std::collections::BTreeSet;

use crate::ids::{ExchangeId, ProxyRequestId, ServerId, SessionId};
use crate::time::Instant;

/// Something that happens at a deadline.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// A forwarded request's answer is due.
    Request(ProxyRequestId),
    /// A new session's `initialize` result is due.
    Connect(SessionId),
    /// A pool slot's replacement child is due (server, slot).
    Respawn(ServerId, usize),
    /// Time to check whether a session went idle.
    Idle(SessionId),
    /// Time to write keep-alive comments on open streams.
    KeepAlive,
    /// A request has waited for a free pool child as long as it may.
    PoolWait(ExchangeId),
    /// A server left out of a merged session is due to be brought back.
    Rejoin(SessionId, ServerId),
    /// A dead shared upstream of a server is due to be started again.
    SharedRespawn(ServerId),
    /// The questions a child asked for a 2026 request are gathered: ask its client.
    InputRequired(ProxyRequestId),
    /// A finished call that waited for its client's input was never collected.
    Parked(u64),
    /// A 2026 server asked to be asked again later (an input round without questions).
    AskAgain(u64),
    /// A 2025 session's listen on its 2026 upstream is due to be opened again.
    Relisten(crate::ids::UpstreamId),
    /// A Streamable HTTP upstream's first requests have waited for its session's start as
    /// long as they may (see `upstream/http/gate.rs`).
    Ungate(crate::ids::UpstreamId),
}

/// The armed timers, earliest first (ties broken by the timer, so the order is fixed).
#[derive(Debug, Default)]
pub(crate) struct Timers {
    armed: BTreeSet<(Instant, Timer)>,
}

impl Timers {
    /// Arms a timer.
    pub(crate) fn set(&mut self, at: Instant, timer: Timer) {
        self.armed.insert((at, timer));
    }

    /// Disarms a timer.
    pub(crate) fn cancel(&mut self, at: Instant, timer: &Timer) {
        self.armed.remove(&(at, timer.clone()));
    }

    /// The earliest armed deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.armed.first().map(|(at, _)| *at)
    }

    /// Takes the earliest timer if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.armed.first() {
            Some((at, _)) if *at <= now => self.armed.pop_first().map(|(_, timer)| timer),
            _ => None,
        }
    }
}
