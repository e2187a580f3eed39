//! Order at the start of a Streamable HTTP session. A client that writes its messages one
//! after another (a stdio client in reverse mode, a pipelining HTTP client) would otherwise
//! have its first request reach the server before the server took `notifications/initialized`
//! (server-everything registers tools then) or before the server-to-client stream is up (what
//! the server says outside the request is then lost). So from `notifications/initialized` on,
//! later POSTs wait until the server answered it and, where the proxy opens the server's
//! stream then, until that stream is up — at most [`GATE_BOUND`], so a server that never
//! answers cannot hold them for ever.

use std::time::Duration;

use super::{HttpUpstreams, Purpose};
use crate::ctx::Ctx;
use crate::ids::{FetchId, UpstreamId};
use crate::state::timers::Timer;
use crate::wire::http::Header;

/// The longest the first requests wait for the session's start.
pub(crate) const GATE_BOUND: Duration = Duration::from_secs(2);

/// POSTs held while the session starts.
#[derive(Debug)]
pub(super) struct Gate {
    /// The fetch whose head opens the gate (the `initialized` POST, then the stream's GET).
    pub(super) waiting_for: FetchId,
    pub(super) held: Vec<(Vec<Header>, Vec<u8>, Purpose)>,
    /// When it opens anyway.
    bound: crate::time::Instant,
}

impl HttpUpstreams {
    /// Closes the gate behind the `initialized` POST `fetch` of `upstream`.
    pub(super) fn close_gate(&mut self, ctx: &mut Ctx, upstream: UpstreamId, fetch: FetchId) {
        // At the edge each request is served on its own: nothing to order across them.
        if !self.listens_ahead {
            return;
        }
        if let Some(state) = self.upstreams.get_mut(&upstream) {
            let bound = ctx.now.after(GATE_BOUND);
            state.gate = Some(Gate { waiting_for: fetch, held: Vec::new(), bound });
            ctx.timers.set(bound, Timer::Ungate(upstream));
        }
    }

    /// Holds a POST while the gate is closed; gives it back if it is open.
    pub(super) fn hold(
        &mut self,
        upstream: UpstreamId,
        headers: Vec<Header>,
        body: Vec<u8>,
        purpose: Purpose,
    ) -> Option<(Vec<Header>, Vec<u8>, Purpose)> {
        match self.upstreams.get_mut(&upstream).and_then(|s| s.gate.as_mut()) {
            Some(gate) => {
                gate.held.push((headers, body, purpose));
                None
            }
            None => Some((headers, body, purpose)),
        }
    }

    /// The gate now waits for `fetch` (the stream's GET) instead.
    pub(super) fn gate_waits_for(&mut self, upstream: UpstreamId, fetch: FetchId) {
        if let Some(gate) = self.upstreams.get_mut(&upstream).and_then(|s| s.gate.as_mut()) {
            gate.waiting_for = fetch;
        }
    }

    /// Whether `fetch` is what `upstream`'s gate waits for.
    pub(super) fn gate_waits_on(&self, upstream: UpstreamId, fetch: FetchId) -> bool {
        self.upstreams.get(&upstream).and_then(|s| s.gate.as_ref()).is_some_and(|g| g.waiting_for == fetch)
    }

    /// Opens the gate: what it held goes out, in order.
    pub(crate) fn open_gate(&mut self, ctx: &mut Ctx, upstream: UpstreamId) {
        let Some(state) = self.upstreams.get_mut(&upstream) else {
            return;
        };
        let Some(gate) = state.gate.take() else {
            return;
        };
        ctx.timers.cancel(gate.bound, &Timer::Ungate(upstream));
        let url = state.url.clone();
        for (headers, body, purpose) in gate.held {
            self.fetch(ctx, upstream, "POST", url.clone(), headers, body, purpose);
        }
    }
}
