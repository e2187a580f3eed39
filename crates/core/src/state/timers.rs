//! Deadlines: what happens when, in one ordered set.

use std::collections::BTreeSet;

use crate::ids::{ExchangeId, ProxyRequestId, SessionId};
use crate::time::Instant;

/// Something that happens at a deadline.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// A forwarded request's answer is due.
    Request(ProxyRequestId),
    /// A new session's `initialize` result is due.
    Connect(SessionId),
    /// A stateless pool slot's replacement child is due.
    Respawn(usize),
    /// Time to check whether a session went idle.
    Idle(SessionId),
    /// Time to write keep-alive comments on open streams.
    KeepAlive,
    /// A stateless POST has waited for a ready child as long as it may.
    PoolWait(ExchangeId),
    /// A server left out of a merged session is due to be brought back.
    Rejoin(SessionId, usize),
    /// A dead shared upstream of a server is due to be started again.
    SharedRespawn(usize),
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
