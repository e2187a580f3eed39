//! The Streamable HTTP transport (MCP 2025-11-25): POST, GET and DELETE on one endpoint.

use std::time::Duration;

use crate::error::RequestError;
use crate::ids::{ServerId, SessionId};
use crate::modern::Era;
use crate::proxy::{Caller, Proxy};
use crate::state::event_log::EventId;
use crate::state::exchange::{Exchange, ExchangeKind, PostState};
use crate::state::pending::ReplyTo;
use crate::state::session::{SessionState, Transport};
use crate::time::Instant;
use crate::transport::body;
use crate::wire::http::{Header, HttpRequest};
use crate::wire::jsonrpc::Message;
use crate::wire::mcp;

/// Why a request names no usable session.
enum SessionLookup {
    Found(SessionId),
    Missing,
    Unknown,
}

impl Proxy {
    fn lookup_streamable_session(&mut self, request: &HttpRequest, caller: &Caller) -> SessionLookup {
        let target = caller.target;
        let Some(header) = request.header("mcp-session-id") else {
            return SessionLookup::Missing;
        };
        if self.store.restores_from_ids() {
            return match self.restore_session(header.trim(), target, caller.credential) {
                Some(id) => SessionLookup::Found(id),
                None => SessionLookup::Unknown,
            };
        }
        match SessionId::parse(header.trim()) {
            Some(id) if self.sessions.get(&id).is_some_and(|s| s.is_streamable() && s.target == target) => {
                SessionLookup::Found(id)
            }
            _ => SessionLookup::Unknown,
        }
    }

    /// Whether the caller's credential reaches every server of a session (a merged session is
    /// opened with one credential; another that reaches less must not use it).
    pub(crate) fn caller_covers(&self, session_id: &SessionId, caller: &Caller) -> bool {
        let removed = |server: ServerId| self.ctx.config.servers.get(server).is_none_or(|s| s.options.disabled);
        self.sessions.get(session_id).is_some_and(|session| {
            session.members.iter().all(|member| removed(member.server) || caller.servers.contains(&member.server))
        })
    }

    /// Checks the session header of a non-initialize request, answering the refusal itself.
    fn require_session(&mut self, request: &HttpRequest, cors: &[Header], caller: &Caller) -> Option<SessionId> {
        match self.lookup_streamable_session(request, caller) {
            SessionLookup::Found(id) if !self.caller_covers(&id, caller) => {
                let message = "Forbidden: this session was opened with a credential that reaches other servers";
                self.ctx.refuse(request.exchange, cors.to_vec(), 403, message);
                None
            }
            SessionLookup::Found(id) => {
                let now = self.ctx.now;
                if let Some(session) = self.sessions.get_mut(&id) {
                    session.last_activity = now;
                }
                Some(id)
            }
            SessionLookup::Missing => {
                self.ctx.refuse(request.exchange, cors.to_vec(), 400, "Bad Request: Mcp-Session-Id header is required");
                None
            }
            SessionLookup::Unknown => {
                self.ctx.refuse(request.exchange, cors.to_vec(), 404, "Session not found");
                None
            }
        }
    }

    /// Checks `MCP-Protocol-Version`, answering 400 itself when it names an unknown revision.
    fn check_protocol_version(&mut self, request: &HttpRequest, cors: &[Header]) -> bool {
        match request.header("mcp-protocol-version").map(str::trim) {
            // A 2026 revision: the POST's classification decides.
            Some(version)
                if self.ctx.config.modern
                    && request.method == "POST"
                    && crate::modern::envelope::is_modern(version) =>
            {
                true
            }
            Some(version) if !mcp::is_supported_version(version) => {
                let message = format!(
                    "Bad Request: unsupported MCP-Protocol-Version {:?} (supported: {})",
                    crate::proxy::truncate(version, 40),
                    mcp::SUPPORTED_PROTOCOL_VERSIONS.join(", ")
                );
                self.ctx.refuse(request.exchange, cors.to_vec(), 400, &message);
                false
            }
            _ => true,
        }
    }

    pub(crate) fn stream_post(&mut self, now: Instant, caller: &Caller, request: HttpRequest, cors: Vec<Header>) {
        let exchange = request.exchange;
        if !body::acceptable(&mut self.ctx, &request, &cors) {
            return;
        }
        let accepts_sse = request.accepts("text/event-stream");
        let accepts_json = request.accepts("application/json");
        if !accepts_sse && !accepts_json {
            return self.ctx.refuse(
                exchange,
                cors,
                406,
                "Not Acceptable: Accept must include application/json or text/event-stream",
            );
        }
        if !self.check_protocol_version(&request, &cors) {
            return;
        }
        let Some((messages, batch)) = body::messages(&mut self.ctx, &request, &cors) else {
            return;
        };
        if self.ctx.config.modern {
            match crate::modern::classify(&request, &messages, batch) {
                Era::Legacy => {}
                Era::Refused(status, response) => return self.ctx.refuse_with(exchange, cors, status, response),
                Era::Modern(call) => return self.modern_post(now, caller, request, cors, *call),
            }
        }
        if self.ctx.config.stateless {
            let bytes = request.body.len();
            let post = crate::modes::pool::WaitingPost { exchange, cors, messages, batch, accepts_sse, bytes };
            return self.stateless_post(now, post);
        }
        let initialize = messages.iter().any(|m| matches!(m, Message::Request(r) if r.method == mcp::INITIALIZE));
        let session_id = if initialize {
            if batch {
                return self.ctx.refuse(
                    exchange,
                    cors,
                    400,
                    "Bad Request: initialize must be sent alone, not in a batch",
                );
            }
            if request.header("mcp-session-id").is_some() {
                return self.ctx.refuse(
                    exchange,
                    cors,
                    400,
                    "Bad Request: initialize starts a new session and must not carry Mcp-Session-Id",
                );
            }
            if self.at_session_limit() {
                return self.ctx.refuse(exchange, cors, 503, "Service Unavailable: too many sessions");
            }
            let deadline = now.after(Duration::from_millis(self.ctx.config.connection_timeout_ms));
            let transport = Transport::Streamable { standalone: None, posts: Vec::new(), backlog: Default::default() };
            let id = self.open_session(
                caller.target,
                &caller.servers,
                SessionState::ExpectInitializeResult { deadline },
                transport,
            );
            if let Some(session) = self.sessions.get_mut(&id) {
                session.credential = caller.credential;
            }
            id
        } else {
            match self.require_session(&request, &cors, caller) {
                Some(id) => id,
                None => return,
            }
        };
        self.note_client_credentials(&session_id, &request);
        body::log_received(&mut self.ctx, &session_id, &request.body);
        let requests = self.forward_from_client(now, &session_id, ReplyTo::Exchange(exchange), messages);
        if requests == 0 {
            return self
                .ctx
                .respond(crate::wire::http::ResponseHead { exchange, status: 202, headers: cors }, Vec::new());
        }
        let post = PostState::new(requests, batch, accepts_sse, initialize);
        self.exchanges
            .insert(exchange, Exchange { session: session_id.clone(), headers: cors, kind: ExchangeKind::Post(post) });
        if let Some(Transport::Streamable { posts, .. }) = self.sessions.get_mut(&session_id).map(|s| &mut s.transport)
        {
            posts.push(exchange);
        }
    }

    pub(crate) fn stream_get(&mut self, caller: &Caller, request: HttpRequest, cors: Vec<Header>) {
        let exchange = request.exchange;
        if self.ctx.config.stateless {
            return self.stateless_not_allowed(exchange, cors);
        }
        if !request.accepts("text/event-stream") {
            return self.ctx.refuse(exchange, cors, 406, "Not Acceptable: Accept must include text/event-stream");
        }
        if !self.check_protocol_version(&request, &cors) {
            return;
        }
        let Some(session_id) = self.require_session(&request, &cors, caller) else {
            return;
        };
        self.note_client_credentials(&session_id, &request);
        if let Some(last) = request.header("last-event-id").and_then(EventId::parse) {
            return self.resume_stream(exchange, &session_id, cors, last);
        }
        let open = matches!(
            self.sessions.get(&session_id).map(|s| &s.transport),
            Some(Transport::Streamable { standalone: Some(_), .. })
        );
        if open {
            return self.ctx.refuse(exchange, cors, 409, "Conflict: this session already has an open GET stream");
        }
        self.open_standalone(exchange, &session_id, cors, Vec::new());
        if !self.store.listens_ahead() {
            // At the edge the upstreams' streams live exactly as long as the client's.
            let upstreams: Vec<_> = self
                .sessions
                .get(&session_id)
                .map(|s| s.members.iter().filter(|m| !m.failed).map(|m| (m.server, m.upstream)).collect())
                .unwrap_or_default();
            for (server, upstream) in upstreams {
                if self.eras.is_modern(upstream) {
                    self.edge_upstream_listen(&session_id, server, upstream);
                } else {
                    self.http.listen(&mut self.ctx, upstream);
                }
            }
        }
    }

    fn stateless_not_allowed(&mut self, exchange: crate::ids::ExchangeId, mut headers: Vec<Header>) {
        headers.push(Header::new("allow", "POST, OPTIONS"));
        self.ctx.refuse(
            exchange,
            headers,
            405,
            "Method Not Allowed: the server is stateless (no sessions, no GET stream)",
        );
    }

    pub(crate) fn stream_delete(&mut self, caller: &Caller, request: HttpRequest, cors: Vec<Header>) {
        if self.ctx.config.stateless {
            return self.stateless_not_allowed(request.exchange, cors);
        }
        let Some(session_id) = self.require_session(&request, &cors, caller) else {
            return;
        };
        self.note_client_credentials(&session_id, &request);
        self.end_session(&session_id, &RequestError::SessionEnded, "the client deleted it");
        self.ctx.respond(
            crate::wire::http::ResponseHead { exchange: request.exchange, status: 200, headers: cors },
            Vec::new(),
        );
    }
}
