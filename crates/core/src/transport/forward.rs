//! Forwarding: a client's messages to the upstream(s) of its session under the proxy's own
//! ids, and the answers back to whoever waits for them (a POST, the session's stream, or the
//! proxy itself).

use std::time::Duration;

use crate::error::{codes, RequestError};
use crate::ids::{ProxyRequestId, ServerId, SessionId, UpstreamId};
use crate::io::LogLevel;
use crate::policy::access::forwardable_authorization;
use crate::proxy::Proxy;
use crate::route::Target;
use crate::state::pending::{PendingRequest, ReplyTo};
use crate::state::session::{Session, SessionState};
use crate::state::timers::Timer;
use crate::time::Instant;
use crate::wire::http::HttpRequest;
use crate::wire::jsonrpc::{Message, Notification, Request, RequestId, Response};
use crate::wire::mcp;

/// The ids the proxy gives server requests it renames: this and a number.
const SERVER_REQUEST_PREFIX: &str = "mcp-proxy-";

/// Requests one session may have in flight; more are answered with an error at once.
pub(crate) const MAX_IN_FLIGHT: usize = 256;

impl Proxy {
    /// Forwards the messages a client sent in one body; returns how many were requests.
    pub(crate) fn forward_from_client(
        &mut self,
        now: Instant,
        session_id: &SessionId,
        reply_to: ReplyTo,
        messages: Vec<Message>,
    ) -> usize {
        let mut requests = 0;
        for message in messages {
            match message {
                Message::Request(request) => {
                    requests += 1;
                    let busy = self.sessions.get(session_id).is_some_and(|s| s.in_flight.len() >= MAX_IN_FLIGHT);
                    if busy {
                        let error = crate::wire::jsonrpc::ErrorObject::new(
                            codes::TOO_MANY_REQUESTS,
                            format!("too many requests in flight in this session (at most {MAX_IN_FLIGHT})"),
                        );
                        self.answer_locally(session_id, reply_to, &request, Err(error));
                        continue;
                    }
                    self.forward_request(now, session_id, reply_to, request);
                }
                Message::Notification(mut notification) if notification.method == mcp::CANCELLED => {
                    if let Some(upstream) = self.rewrite_cancellation(session_id, &mut notification) {
                        self.send_upstream(upstream, &Message::Notification(notification));
                    }
                }
                Message::Notification(notification) => {
                    self.send_to_session_upstream(session_id, &Message::Notification(notification));
                }
                Message::Response(response) => self.forward_client_response(session_id, response),
            }
        }
        requests
    }

    pub(crate) fn forward_request(
        &mut self,
        now: Instant,
        session_id: &SessionId,
        reply_to: ReplyTo,
        request: Request,
    ) {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        if request.method == mcp::INITIALIZE {
            session.initialize_params.clone_from(&request.params);
        }
        let server = match session.target {
            Target::Merged => return self.dispatch_merged(now, session_id, reply_to, request),
            Target::Server(server) => server,
        };
        self.forward_to(now, session_id, server, reply_to, request);
    }

    /// Forwards a request to `server`'s upstream in the session, with a proxy id (returned).
    pub(crate) fn forward_to(
        &mut self,
        now: Instant,
        session_id: &SessionId,
        server: ServerId,
        reply_to: ReplyTo,
        mut request: Request,
    ) -> Option<ProxyRequestId> {
        let upstream = self.sessions.get(session_id).and_then(|s| s.upstream_of(server))?;
        let progress = mcp::progress_token(&request.params);
        let initialize = request.method == mcp::INITIALIZE;
        // A server that does not initialize within the connection timeout is given up on.
        let timeout =
            if initialize { self.ctx.config.connection_timeout_ms } else { self.ctx.config.request_timeout_ms };
        // A listen stream lasts as long as its client wants it.
        let deadline = match request.method.as_str() {
            mcp::SUBSCRIPTIONS_LISTEN => Instant(u64::MAX),
            _ => now.after(Duration::from_millis(timeout)),
        };
        let pending = PendingRequest {
            id: ProxyRequestId(0),
            session: session_id.clone(),
            server,
            upstream,
            reply_to,
            original_id: request.id.clone(),
            progress: progress.clone(),
            deadline,
            initialize,
            lists_tools: request.method == mcp::TOOLS_LIST,
        };
        let proxy_id = self.pending.insert(pending, &mut self.ctx.timers);
        if let Some(session) = self.sessions.get_mut(session_id) {
            session.in_flight.insert(proxy_id, request.id.clone());
            if let Some(token) = progress {
                // A pool child serves many clients: their tokens become the proxy's id there,
                // so two clients' tokens never meet (the client's comes back with the progress).
                let token = match session.transport {
                    crate::state::session::Transport::Pool { .. } => {
                        mcp::set_progress_token(&mut request.params, proxy_id.0);
                        RequestId::Number(proxy_id.0)
                    }
                    _ => token,
                };
                session.progress.insert(token, proxy_id);
            }
        }
        if let Err(error) = crate::policy::tool_filter::check_call(&self.ctx.config, server, &request) {
            self.local_answers.push_back((proxy_id, Err(error)));
            return Some(proxy_id);
        }
        request.id = self.store.upstream_id(proxy_id, &request.id);
        self.send_request_upstream(session_id, server, upstream, proxy_id, request);
        Some(proxy_id)
    }

    /// Queues an answer the proxy gives itself, delivered at the end of the turn.
    pub(crate) fn answer_later(
        &mut self,
        proxy_id: ProxyRequestId,
        outcome: Result<serde_json::Value, crate::wire::jsonrpc::ErrorObject>,
    ) {
        self.local_answers.push_back((proxy_id, outcome));
    }

    /// Delivers the answers the proxy gave itself (a blocked tool) once the exchange exists.
    pub(crate) fn deliver_local_answers(&mut self) {
        while let Some((proxy_id, outcome)) = self.local_answers.pop_front() {
            if let Some(pending) = self.take_pending(proxy_id) {
                let mut response = Response { id: Some(pending.original_id.clone()), outcome };
                self.filter_listed_tools(&pending, &mut response);
                self.deliver_response(&pending, response);
            }
        }
    }

    /// Points a client's `notifications/cancelled` at the id the server knows, and
    /// finishes the cancelled request.
    /// Returns the upstream the cancellation is for, if the request is still in flight.
    pub(crate) fn rewrite_cancellation(
        &mut self,
        session_id: &SessionId,
        notification: &mut Notification,
    ) -> Option<UpstreamId> {
        let client_id = mcp::cancelled_request_id(&notification.params)?;
        let proxy_id = self.sessions.get(session_id).and_then(|s| s.proxy_id_of(&client_id));
        let proxy_id = match (proxy_id, self.store.keeps_client_ids()) {
            (Some(proxy_id), false) => {
                mcp::set_cancelled_request_id(&mut notification.params, proxy_id.0);
                proxy_id
            }
            (Some(proxy_id), true) => proxy_id,
            (None, false) => return None,
            // At the edge the request went out in an earlier request, under the client's id.
            (None, true) => {
                let cancel = Message::Notification(notification.clone());
                self.send_to_session_upstream(session_id, &cancel);
                return None;
            }
        };
        let pending = self.take_pending(proxy_id)?;
        let upstream = pending.upstream;
        let response = Response::error(Some(pending.original_id.clone()), RequestError::Cancelled.to_error_object());
        self.deliver_response(&pending, response);
        Some(upstream)
    }

    /// Removes a request from the pending table and from its session's maps.
    pub(crate) fn take_pending(&mut self, proxy_id: ProxyRequestId) -> Option<PendingRequest> {
        let pending = self.pending.remove(proxy_id, &mut self.ctx.timers)?;
        if let Some(session) = self.sessions.get_mut(&pending.session) {
            session.finish(proxy_id, pending.progress.as_ref());
            session.last_activity = self.ctx.now;
        }
        Some(pending)
    }

    /// Hands the answer of a request to whoever waits for it.
    pub(crate) fn deliver_response(&mut self, pending: &PendingRequest, mut response: Response) {
        match pending.reply_to {
            ReplyTo::Parked => {
                self.mrtr_parked_answer(pending.id, response);
                self.modern_done(pending.id, &pending.session);
                return;
            }
            ReplyTo::Discard => {
                self.modern_done(pending.id, &pending.session);
                return;
            }
            ReplyTo::ToolScan(server) => {
                return self.pool_tools_scanned(server, &pending.session, response.outcome.map_err(|_| ()));
            }
            ReplyTo::Probe => return self.probed(pending, response.outcome),
            ReplyTo::UpstreamListen => return self.upstream_listen_ended(pending),
            _ if self.modern.in_flight.contains_key(&pending.id) => {
                if let Some(missing) = self.modern_done(pending.id, &pending.session) {
                    response = crate::modern::capabilities::lacking(response, missing);
                }
            }
            _ => {}
        }
        if let ReplyTo::Aggregate(aggregate) = pending.reply_to {
            return self.aggregate_part(aggregate, pending.server, response.outcome);
        }
        if pending.reply_to == ReplyTo::Rejoin {
            return self.rejoined(&pending.session, pending.server, response.outcome);
        }
        if pending.reply_to == ReplyTo::SharedInitialize {
            return self.shared_initialized(pending.server, pending.upstream, response.outcome);
        }
        let succeeded = response.outcome.is_ok();
        if pending.initialize {
            if let Some(session) = self.sessions.get_mut(&pending.session) {
                if let SessionState::ExpectInitializeResult { deadline } = session.state {
                    self.ctx.timers.cancel(deadline, &Timer::Connect(pending.session.clone()));
                }
                session.state = SessionState::Ready;
                if let Ok(result) = &response.outcome {
                    session.protocol_version =
                        result.get("protocolVersion").and_then(|v| v.as_str()).map(str::to_owned);
                }
            }
        }
        if pending.reply_to == ReplyTo::PoolInitialize {
            return self.pool_initialized(self.ctx.now, &pending.session, response);
        }
        let message = Message::Response(response);
        match pending.reply_to {
            ReplyTo::SessionStream => self.route_to_session(&pending.session, &message),
            ReplyTo::Exchange(exchange_id) => self.answer_post(exchange_id, message),
            ReplyTo::PoolInitialize
            | ReplyTo::Aggregate(_)
            | ReplyTo::Rejoin
            | ReplyTo::SharedInitialize
            | ReplyTo::Parked
            | ReplyTo::Discard
            | ReplyTo::ToolScan(_)
            | ReplyTo::Probe
            | ReplyTo::UpstreamListen => {}
        }
        if pending.initialize && !succeeded && self.sessions.get(&pending.session).is_some_and(Session::is_streamable) {
            self.end_session(&pending.session, &RequestError::SessionEnded, "the server refused initialize");
        }
    }

    /// Sends a client's message to every upstream of the session that is still in it.
    pub(crate) fn send_to_session_upstream(&mut self, session_id: &SessionId, message: &Message) {
        // A shared upstream was initialized by the proxy; a client's `initialized` has no place.
        let initialized = message.method() == Some(mcp::INITIALIZED);
        let upstreams: Vec<UpstreamId> = match self.sessions.get(session_id) {
            Some(session) => session
                .members
                .iter()
                .filter(|m| !m.failed && (!initialized || self.shared.server_of(m.upstream).is_none()))
                .map(|m| m.upstream)
                .collect(),
            None => return,
        };
        for upstream in upstreams {
            self.send_upstream(upstream, message);
        }
    }

    /// A client answered a server's request: back to the server that asked, with its own id.
    pub(crate) fn forward_client_response(&mut self, session_id: &SessionId, mut response: Response) {
        if self.modern_upstream_input(&response) {
            // An answer to a 2026 server's question, asked for it by the proxy.
            return;
        }
        let named = match (&response.id, self.sessions.get_mut(session_id)) {
            (Some(RequestId::String(id)), Some(session)) if !self.store.remembers() => {
                crate::modes::edge::unname_server_request(id)
                    .and_then(|(server, original)| Some((session.upstream_of(server)?, original)))
            }
            (Some(RequestId::String(id)), Some(session)) => id
                .strip_prefix(SERVER_REQUEST_PREFIX)
                .and_then(|number| number.parse().ok())
                .and_then(|number| session.server_requests.remove(&number)),
            _ => None,
        };
        match named {
            Some((upstream, original)) => {
                response.id = Some(original);
                self.send_upstream(upstream, &Message::Response(response));
            }
            None => {
                // Only a session's own upstreams may hear an answer the proxy did not hand out:
                // on a shared one, it could answer another client's request.
                let own: Vec<UpstreamId> = self
                    .sessions
                    .get(session_id)
                    .map(|s| s.members.iter().filter(|m| !m.failed).map(|m| m.upstream).collect())
                    .unwrap_or_default();
                let own: Vec<UpstreamId> = own.into_iter().filter(|u| self.shared.server_of(*u).is_none()).collect();
                if own.is_empty() {
                    let message = format!(
                        "session {session_id}: dropped an answer to a request it was not sent (id {:?})",
                        response.id
                    );
                    return self.ctx.log(LogLevel::Warn, message);
                }
                for upstream in own {
                    self.send_upstream(upstream, &Message::Response(response.clone()));
                }
            }
        }
    }

    /// In a merged session two servers may use the same request ids, and a shared upstream's
    /// requests go to many clients: give a server's request an id of the proxy's own,
    /// remembered by the session it was sent to until that client answers (no other session can
    /// answer it).
    pub(crate) fn name_server_request(
        &mut self,
        session_id: &SessionId,
        upstream: UpstreamId,
        mut request: Request,
    ) -> Request {
        let shared = self.shared.server_of(upstream).is_some();
        let Some(session) = self.sessions.get_mut(session_id).filter(|s| s.target == Target::Merged || shared) else {
            return request;
        };
        if !self.store.remembers() {
            // Nothing is remembered at the edge: the id itself names the server.
            if let Some(server) = session.server_of(upstream) {
                request.id = RequestId::String(crate::modes::edge::name_server_request(server, &request.id));
            }
            return request;
        }
        self.next_server_request += 1;
        let number = self.next_server_request;
        if session.server_requests.len() >= crate::state::session::BACKLOG_LIMIT {
            // A client that never answers must not grow this map without bound: the oldest
            // (lowest number) goes.
            session.server_requests.pop_first();
        }
        session.server_requests.insert(number, (upstream, request.id));
        request.id = RequestId::String(format!("{SERVER_REQUEST_PREFIX}{number}"));
        request
    }

    /// Remembers the credentials of a client's request, for servers configured to forward them
    /// (never one of the proxy's own credentials).
    pub(crate) fn note_client_credentials(&mut self, session_id: &SessionId, request: &HttpRequest) {
        let forwardable = forwardable_authorization(&self.ctx.config, request);
        if let Some(session) = self.sessions.get_mut(session_id) {
            session.client_authorization = forwardable;
        }
    }
}
