//! The legacy HTTP+SSE transport (MCP 2024-11-05): a GET stream plus POSTed messages.

use crate::ids::SessionId;
use crate::proxy::{Caller, Proxy};
use crate::state::exchange::{Exchange, ExchangeKind};
use crate::state::pending::ReplyTo;
use crate::state::session::{SessionState, Transport};
use crate::time::Instant;
use crate::transport::body;
use crate::wire::http::{Header, HttpRequest, ResponseHead};
use crate::wire::sse;

impl Proxy {
    pub(crate) fn legacy_open(&mut self, caller: &Caller, request: HttpRequest, cors: Vec<Header>) {
        let target = caller.target;
        let exchange = request.exchange;
        if !request.accepts("text/event-stream") {
            return self.ctx.refuse(exchange, cors, 406, "Not Acceptable: Accept must include text/event-stream");
        }
        if self.at_session_limit() {
            return self.ctx.refuse(exchange, cors, 503, "Service Unavailable: too many sessions");
        }
        let session_id =
            self.open_session(target, &caller.servers, SessionState::Ready, Transport::LegacySse { stream: exchange });
        self.exchanges.insert(
            exchange,
            Exchange { session: session_id.clone(), headers: cors.clone(), kind: ExchangeKind::LegacyStream },
        );
        self.ctx.start_stream(exchange, cors);
        let messages = crate::route::endpoint_path(&self.ctx.config, target, crate::route::Endpoint::Messages);
        // Behind a public base URL its path comes first (what a reverse proxy in front strips);
        // the origin stays the connection's, which clients check (the Python SDK refuses an
        // endpoint of another origin).
        let messages = format!("{}{messages}", crate::route::public_path_prefix(&self.ctx.config));
        let endpoint = format!("{messages}?sessionId={session_id}");
        self.ctx.stream_data(exchange, sse::event(None, Some("endpoint"), endpoint.as_bytes()));
    }

    pub(crate) fn legacy_post(&mut self, now: Instant, caller: &Caller, request: HttpRequest, cors: Vec<Header>) {
        let target = caller.target;
        let exchange = request.exchange;
        let Some(raw_id) = request.query_param("sessionId") else {
            return self.ctx.refuse(exchange, cors, 400, "Bad Request: the sessionId query parameter is required");
        };
        let session_id = match SessionId::parse(&raw_id) {
            Some(id)
                if self
                    .sessions
                    .get(&id)
                    .is_some_and(|s| matches!(s.transport, Transport::LegacySse { .. }) && s.target == target) =>
            {
                id
            }
            _ => return self.ctx.refuse(exchange, cors, 404, "Session not found"),
        };
        if !self.caller_covers(&session_id, caller) {
            let message = "Forbidden: this session was opened with a credential that reaches other servers";
            return self.ctx.refuse(exchange, cors, 403, message);
        }
        self.note_client_credentials(&session_id, &request);
        if !body::acceptable(&mut self.ctx, &request, &cors) {
            return;
        }
        let Some((messages, _)) = body::messages(&mut self.ctx, &request, &cors) else {
            return;
        };
        body::log_received(&mut self.ctx, &session_id, &request.body);
        self.forward_from_client(now, &session_id, ReplyTo::SessionStream, messages);
        let mut headers = cors;
        headers.push(Header::new("content-type", "text/plain"));
        self.ctx.respond(ResponseHead { exchange, status: 202, headers }, b"Accepted".to_vec());
    }
}
