//! Requests forwarded upstream and awaiting an answer, keyed by the id the proxy gave them.

use std::collections::BTreeMap;

use crate::ids::{ExchangeId, ProxyRequestId, ServerId, SessionId, UpstreamId};
use crate::state::timers::{Timer, Timers};
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
    /// A 2026 request whose client was asked for input (`input_required`) and has not come
    /// back yet: its answer waits for the retry.
    Parked,
    /// Nobody: the answer is dropped (the client was answered already, or the proxy asked).
    Discard,
    /// The proxy's own `tools/list` of a pool's server (which arguments travel in headers).
    ToolScan(ServerId),
    /// The proxy's `server/discover` asking a new upstream which era it speaks.
    Probe,
    /// The `subscriptions/listen` the proxy keeps on a 2026 upstream for a 2025 session.
    UpstreamListen,
}

/// One forwarded request.
#[derive(Clone, Debug)]
pub(crate) struct PendingRequest {
    /// Its id (set when it is recorded).
    pub(crate) id: ProxyRequestId,
    pub(crate) session: SessionId,
    /// The server asked, and its upstream in the session.
    pub(crate) server: ServerId,
    pub(crate) upstream: UpstreamId,
    pub(crate) reply_to: ReplyTo,
    pub(crate) original_id: RequestId,
    pub(crate) progress: Option<ProgressToken>,
    pub(crate) deadline: Instant,
    pub(crate) initialize: bool,
    /// A `tools/list`: the answer passes through the server's tool filter.
    pub(crate) lists_tools: bool,
}

/// The table of forwarded requests; each one's deadline is a [`Timer::Request`] in
/// [`Timers`], set and cleared with it.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    requests: BTreeMap<ProxyRequestId, PendingRequest>,
    next_id: i64,
}

impl Pending {
    /// Records a forwarded request, arms its deadline, and returns the id to send upstream.
    pub(crate) fn insert(&mut self, request: PendingRequest, timers: &mut Timers) -> ProxyRequestId {
        self.next_id += 1;
        let id = ProxyRequestId(self.next_id);
        timers.set(request.deadline, Timer::Request(id));
        self.requests.insert(id, PendingRequest { id, ..request });
        id
    }

    /// Takes a request out of the table, with its deadline.
    pub(crate) fn remove(&mut self, id: ProxyRequestId, timers: &mut Timers) -> Option<PendingRequest> {
        let request = self.requests.remove(&id)?;
        timers.cancel(request.deadline, &Timer::Request(id));
        Some(request)
    }

    /// Looks a request up.
    pub(crate) fn get(&self, id: ProxyRequestId) -> Option<&PendingRequest> {
        self.requests.get(&id)
    }

    /// Looks a request up, to redirect its answer.
    pub(crate) fn get_mut(&mut self, id: ProxyRequestId) -> Option<&mut PendingRequest> {
        self.requests.get_mut(&id)
    }

    /// The request in flight on `upstream` that its client calls `id`.
    pub(crate) fn find(&self, upstream: UpstreamId, id: &RequestId) -> Option<ProxyRequestId> {
        self.requests.iter().find(|(_, p)| p.upstream == upstream && p.original_id == *id).map(|(proxy, _)| *proxy)
    }

    /// The requests in flight on `upstream`.
    pub(crate) fn ids_on(&self, upstream: UpstreamId) -> Vec<ProxyRequestId> {
        self.requests.iter().filter(|(_, p)| p.upstream == upstream).map(|(id, _)| *id).collect()
    }

    /// How many requests are in flight.
    pub(crate) fn len(&self) -> usize {
        self.requests.len()
    }
}
