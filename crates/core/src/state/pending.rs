//! Requests forwarded upstream and awaiting an answer, keyed by the id the proxy gave them.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{ExchangeId, ProxyRequestId, SessionId, UpstreamId};
use crate::time::Instant;
use crate::wire::jsonrpc::RequestId;
use crate::wire::mcp::ProgressToken;

/// Where the answer to a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReplyTo {
    /// The POST exchange that carried the request.
    Exchange(ExchangeId),
    /// The session's own stream (legacy SSE).
    SessionStream,
    /// The proxy's own `initialize` of a stateless pool child.
    PoolInitialize,
    /// A part of a merged request fanned out to several servers (the aggregate's number).
    Aggregate(u64),
    /// The proxy's own `initialize` of a server coming back into a merged session.
    Rejoin,
    /// The proxy's own `initialize` of a shared upstream.
    SharedInitialize,
}

/// One forwarded request.
#[derive(Clone, Debug)]
pub(crate) struct PendingRequest {
    pub(crate) session: SessionId,
    /// The server asked, and its upstream in the session.
    pub(crate) server: usize,
    pub(crate) upstream: UpstreamId,
    pub(crate) reply_to: ReplyTo,
    pub(crate) original_id: RequestId,
    pub(crate) progress: Option<ProgressToken>,
    pub(crate) deadline: Instant,
    pub(crate) initialize: bool,
    /// A `tools/list`: the answer passes through the server's tool filter.
    pub(crate) lists_tools: bool,
}

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

/// The table of forwarded requests and the timers of the proxy.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    requests: BTreeMap<ProxyRequestId, PendingRequest>,
    timers: BTreeSet<(Instant, Timer)>,
    next_id: i64,
}

impl Pending {
    /// Records a forwarded request and returns the id to send upstream.
    pub(crate) fn insert(&mut self, request: PendingRequest) -> ProxyRequestId {
        self.next_id += 1;
        let id = ProxyRequestId(self.next_id);
        self.timers.insert((request.deadline, Timer::Request(id)));
        self.requests.insert(id, request);
        id
    }

    /// Takes a request out of the table (its timer is dropped lazily).
    pub(crate) fn remove(&mut self, id: ProxyRequestId) -> Option<PendingRequest> {
        let request = self.requests.remove(&id)?;
        self.timers.remove(&(request.deadline, Timer::Request(id)));
        Some(request)
    }

    /// Looks a request up.
    pub(crate) fn get(&self, id: ProxyRequestId) -> Option<&PendingRequest> {
        self.requests.get(&id)
    }

    /// The request in flight on `upstream` that its client calls `id`.
    pub(crate) fn find(&self, upstream: UpstreamId, id: &RequestId) -> Option<ProxyRequestId> {
        self.requests.iter().find(|(_, p)| p.upstream == upstream && p.original_id == *id).map(|(proxy, _)| *proxy)
    }

    /// The requests in flight on `upstream`.
    pub(crate) fn ids_on(&self, upstream: UpstreamId) -> Vec<ProxyRequestId> {
        self.requests.iter().filter(|(_, p)| p.upstream == upstream).map(|(id, _)| *id).collect()
    }

    /// Arms a timer.
    pub(crate) fn set_timer(&mut self, at: Instant, timer: Timer) {
        self.timers.insert((at, timer));
    }

    /// Disarms a timer.
    pub(crate) fn cancel_timer(&mut self, at: Instant, timer: Timer) {
        self.timers.remove(&(at, timer));
    }

    /// The earliest armed deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Takes the earliest timer if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.timers.first() {
            Some((at, _)) if *at <= now => self.timers.pop_first().map(|(_, timer)| timer),
            _ => None,
        }
    }

    /// How many requests are in flight.
    pub(crate) fn len(&self) -> usize {
        self.requests.len()
    }
}
