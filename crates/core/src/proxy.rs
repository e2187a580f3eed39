//! The proxy state machine: inputs in, outputs out, time passed in.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::config::Config;
use crate::ctx::Ctx;
use crate::error::{codes, RequestError};
use crate::ids::{ExchangeId, ProxyRequestId, SessionId, UpstreamId};
use crate::io::{Input, LogLevel, Output};
use crate::modes::pool::Pool;
use crate::policy::access::{admit, forwardable_authorization, Admission, Refusal};
use crate::policy::{cors_response_headers, preflight_headers};
use crate::route::{Endpoint, Route, Target};
use crate::state::exchange::{error_body, json_head, Exchange, ExchangeKind};
use crate::state::pending::{Pending, PendingRequest, ReplyTo};
use crate::state::session::{Session, SessionState, Transport};
use crate::state::timers::Timer;
use crate::time::{Instant, WallClock};
use crate::wire::http::{Header, HttpRequest, ResponseHead};
use crate::wire::jsonrpc::{Message, Notification, Payload, Request, RequestId, Response};
use crate::wire::mcp;

/// The proxy: one state machine for every session of one server.
///
/// Drive it by handing in each [`Input`] with the current time, then draining
/// [`Proxy::poll_output`] until `None`, and waking up at [`Proxy::poll_timeout`].
#[derive(Debug)]
pub struct Proxy {
    /// The configuration, the time, the random source, the outputs and the timers.
    pub(crate) ctx: Ctx,
    pub(crate) sessions: BTreeMap<SessionId, Session>,
    pub(crate) by_upstream: BTreeMap<UpstreamId, SessionId>,
    pub(crate) exchanges: BTreeMap<ExchangeId, Exchange>,
    pub(crate) pending: Pending,
    /// Events sent on sessions' streams, for resumption.
    pub(crate) events: crate::state::event_log::EventLog,
    pub(crate) pool: Pool,
    pub(crate) aggregates: crate::modes::merged::Aggregates,
    pub(crate) temporary_count: u64,
    /// Remote upstreams and their fetches.
    pub(crate) http: crate::upstream::http::HttpUpstreams,
    /// Upstreams shared by every session of their server.
    pub(crate) shared: crate::upstream::shared::SharedUpstreams,
    /// At the edge: seals sessions into their ids.
    pub(crate) sealer: Option<crate::modes::edge::Sealer>,
    /// The `Authorization` header of the HTTP request being handled (sessions it opens start
    /// with it).
    pub(crate) request_authorization: Option<String>,
    /// Answers the proxy gives itself, delivered at the end of the turn.
    local_answers: VecDeque<(ProxyRequestId, Result<serde_json::Value, crate::wire::jsonrpc::ErrorObject>)>,
    pub(crate) next_upstream: u64,
    next_server_request: u64,
    pub(crate) keepalive_armed: bool,
}

impl Proxy {
    /// Creates a proxy at time `now`. `seed` feeds the session-id generator: give it 32 bytes
    /// from the operating system's secure random source. In stateless mode the pool's
    /// children are started at once: drain [`Proxy::poll_output`] after this.
    pub fn new(config: Config, seed: [u8; 32], now: Instant) -> Proxy {
        let stateless = config.stateless;
        let sealer =
            config.edge.as_ref().map(|edge| crate::modes::edge::Sealer::new(&edge.key, edge.session_max_age_secs));
        let events = crate::state::event_log::EventLog::new(
            config.event_store_size,
            EVENT_STORE_SESSION_BYTES,
            config.event_store_bytes,
        );
        let mut proxy = Proxy {
            ctx: Ctx::new(config, ChaCha20Rng::from_seed(seed), now),
            sessions: BTreeMap::new(),
            by_upstream: BTreeMap::new(),
            exchanges: BTreeMap::new(),
            pending: Pending::default(),
            events,
            pool: Pool::default(),
            aggregates: Default::default(),
            temporary_count: 0,
            http: Default::default(),
            shared: Default::default(),
            sealer,
            request_authorization: None,
            local_answers: VecDeque::new(),
            next_upstream: 0,
            next_server_request: 0,
            keepalive_armed: false,
        };
        for notice in proxy.ctx.config.notices.clone() {
            proxy.ctx.log(LogLevel::Warn, format!("configuration: {notice}"));
        }
        if !proxy.ctx.config.is_bridge() {
            let config = &proxy.ctx.config;
            let lines: Vec<String> = (0..config.servers.len())
                .map(|server| {
                    let name = config.servers[server].display_name();
                    let stream = crate::route::public_endpoint_path(config, Target::Server(server), Endpoint::Stream);
                    let sse = crate::route::public_endpoint_path(config, Target::Server(server), Endpoint::Sse);
                    format!("serving {name}: Streamable HTTP at {stream}, SSE at {sse}")
                })
                .collect();
            for line in lines {
                proxy.ctx.log(LogLevel::Info, line);
            }
        }
        if stateless {
            proxy.start_pool(now);
        }
        proxy
    }

    /// Sets the wall-clock time (seconds since the Unix epoch): sealed sessions at the edge are
    /// dated by it. A shell in edge mode sets it before handing in a request.
    pub fn set_wall_clock(&mut self, wall: WallClock) {
        self.ctx.wall = wall;
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.ctx.config
    }

    /// The largest request body the shell should read; larger ones are reported with
    /// [`HttpRequest::body_too_large`].
    pub fn max_body_size(&self) -> u64 {
        self.ctx.config.max_body_size
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Number of requests forwarded upstream and not yet answered.
    pub fn in_flight_count(&self) -> usize {
        self.pending.len()
    }

    /// Whether the proxy has nothing left to finish: no client exchange open, no request
    /// awaiting its answer, no message on its way to a remote upstream. A shell that runs one
    /// proxy per HTTP request (the Worker) is done when this holds and the outputs are drained;
    /// what is left (an upstream's listening stream) may then be abandoned.
    pub fn is_idle(&self) -> bool {
        self.exchanges.is_empty() && self.pending.len() == 0 && !self.http.delivering()
    }

    /// Feeds one observation to the proxy.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.ctx.now = self.ctx.now.max(now);
        let now = self.ctx.now;
        match input {
            Input::HttpRequest(request) => {
                self.request_authorization = forwardable_authorization(&self.ctx.config, &request);
                self.handle_http_request(now, request);
                self.request_authorization = None;
            }
            Input::HttpClosed(exchange) => self.handle_http_closed(exchange),
            Input::UpstreamMessage { upstream, data } => self.handle_upstream_message(upstream, &data),
            Input::UpstreamClosed { upstream, reason } => self.handle_upstream_closed(upstream, reason),
            Input::Timeout => self.handle_timeout(now),
            Input::FetchHead { fetch, status, headers } => self.handle_fetch_head(fetch, status, &headers),
            Input::FetchData { fetch, data } => self.handle_fetch_data(fetch, &data),
            Input::FetchEnd { fetch, error } => self.handle_fetch_end(fetch, error),
        }
        self.deliver_local_answers();
        self.arm_keepalive();
    }

    /// The next thing for the shell to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.ctx.pop()
    }

    /// When the shell must next hand in [`Input::Timeout`], if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ctx.timers.next_deadline()
    }

    fn handle_http_request(&mut self, now: Instant, request: HttpRequest) {
        let exchange = request.exchange;
        let admission = match admit(&self.ctx.config, &request) {
            Ok(admission) => admission,
            Err(refusal) => return self.refuse_admission(&request, refusal),
        };
        let cors = cors_response_headers(&self.ctx.config.cors, &request);
        match admission {
            Admission::Preflight => {
                let mut headers = preflight_headers(&self.ctx.config.cors, &request);
                headers.push(Header::new("allow", "GET, POST, DELETE, OPTIONS"));
                self.ctx.respond(ResponseHead { exchange, status: 204, headers }, Vec::new());
            }
            Admission::Ping => {
                let mut headers = cors;
                headers.push(Header::new("content-type", "text/plain"));
                self.ctx.respond(ResponseHead { exchange, status: 200, headers }, b"pong".to_vec());
            }
            Admission::Admin => self.handle_admin(request, cors),
            Admission::Temporary => self.temporary_open(request, cors),
            Admission::Endpoint { route: Route { target, endpoint }, servers } => {
                let credential = match self.sealer {
                    Some(_) => crate::modes::edge::credential_digest(&request),
                    None => [0; 32],
                };
                let caller = Caller { target, servers, credential };
                match (endpoint, request.method.as_str()) {
                    (Endpoint::Stream, "POST") => self.stream_post(now, &caller, request, cors),
                    (Endpoint::Stream, "GET") => self.stream_get(&caller, request, cors),
                    (Endpoint::Stream, "DELETE") => self.stream_delete(&caller, request, cors),
                    (Endpoint::Stream, _) => self.ctx.method_not_allowed(exchange, cors, "GET, POST, DELETE, OPTIONS"),
                    (Endpoint::Sse, "GET") => self.legacy_open(&caller, request, cors),
                    (Endpoint::Sse, _) => self.ctx.method_not_allowed(exchange, cors, "GET, OPTIONS"),
                    (Endpoint::Messages, "POST") => self.legacy_post(now, &caller, request, cors),
                    (Endpoint::Messages, _) => self.ctx.method_not_allowed(exchange, cors, "POST, OPTIONS"),
                }
            }
        }
    }

    /// Answers a request refused on its head alone.
    fn refuse_admission(&mut self, request: &HttpRequest, refusal: Refusal) {
        let response = self.refusal_response(request, refusal);
        self.ctx.push(response);
    }

    /// The response to a request refused on its head alone (and its log line, if it deserves one).
    fn refusal_response(&mut self, request: &HttpRequest, refusal: Refusal) -> Output {
        if refusal.log {
            self.ctx.log(LogLevel::Warn, format!("refused a request: {}", refusal.message));
        }
        // A refused preflight gets no CORS headers: the browser then blocks the request itself.
        let mut headers = if request.method == "OPTIONS" {
            Vec::new()
        } else {
            cors_response_headers(&self.ctx.config.cors, request)
        };
        if refusal.challenge {
            headers.push(Header::new("www-authenticate", "Bearer"));
        }
        let body = error_body(crate::ctx::refusal_code(refusal.status), &refusal.message);
        Output::Respond { head: json_head(request.exchange, refusal.status, headers), body }
    }

    /// The refusal of a request whose body has not been read yet, if its head alone decides it:
    /// a shell asks this first, and reads no body from a client that may not send one. Log
    /// lines it causes are queued as usual.
    pub fn precheck(&mut self, request: &HttpRequest) -> Option<(ResponseHead, Vec<u8>)> {
        let refusal = admit(&self.ctx.config, request).err()?;
        match self.refusal_response(request, refusal) {
            Output::Respond { head, body } => Some((head, body)),
            _ => None,
        }
    }

    fn handle_http_closed(&mut self, exchange_id: ExchangeId) {
        let keeps_events = self.ctx.config.event_store_size > 0;
        // Idle time counts from the end of the client's last activity, a stream included.
        let now = self.ctx.now;
        if let Some(session) = self.exchanges.get(&exchange_id).and_then(|e| self.sessions.get_mut(&e.session)) {
            session.last_activity = now;
        }
        match self.exchanges.get_mut(&exchange_id).map(|e| &mut e.kind) {
            None => return self.forget_waiting(exchange_id),
            // The client may come back with Last-Event-ID: the stream goes on into the store.
            Some(ExchangeKind::Post(post)) if post.stream.is_some() && post.outstanding > 0 && keeps_events => {
                if post.connection == Some(exchange_id) {
                    post.connection = None;
                }
                return;
            }
            Some(ExchangeKind::Resumed { post }) => {
                let post = *post;
                self.exchanges.remove(&exchange_id);
                if let Some(Exchange { kind: ExchangeKind::Post(state), .. }) = self.exchanges.get_mut(&post) {
                    if state.connection == Some(exchange_id) {
                        state.connection = None;
                    }
                }
                return;
            }
            Some(_) => {}
        }
        let Some(exchange) = self.exchanges.remove(&exchange_id) else {
            return;
        };
        match exchange.kind {
            ExchangeKind::Resumed { .. } => {}
            ExchangeKind::LegacyStream => {
                self.end_session(&exchange.session, &RequestError::SessionEnded, "the client closed its SSE stream");
            }
            ExchangeKind::Standalone | ExchangeKind::Post(_) => {
                if let Some(Transport::Streamable { standalone, posts, .. }) =
                    self.sessions.get_mut(&exchange.session).map(|s| &mut s.transport)
                {
                    if *standalone == Some(exchange_id) {
                        *standalone = None;
                    }
                    posts.retain(|id| *id != exchange_id);
                }
            }
        }
    }

    pub(crate) fn handle_upstream_message(&mut self, upstream: UpstreamId, data: &[u8]) {
        let shared = self.shared.server_of(upstream);
        let session_id = match (shared, self.by_upstream.get(&upstream)) {
            (Some(_), _) => SessionId::unowned(),
            (None, Some(session_id)) => session_id.clone(),
            (None, None) => return,
        };
        let messages = match Payload::parse(data) {
            Ok(Payload::Single(message)) => vec![message],
            Ok(Payload::Batch(messages)) => messages,
            Err(error) => {
                let line = String::from_utf8_lossy(data);
                let message = format!(
                    "session {session_id}: skipped a line from the server that is not JSON-RPC ({error}): {}",
                    truncate(&line, 300)
                );
                return self.ctx.log(LogLevel::Warn, message);
            }
        };
        let tap = self.logs_upstream(upstream);
        for message in messages {
            if tap {
                let name = self.upstream_name(upstream);
                let text = String::from_utf8_lossy(&message.to_bytes()).into_owned();
                self.ctx.log(LogLevel::Debug, format!("session {session_id} <- {name}: {text}"));
            }
            if let Some(server) = shared {
                self.shared_message(server, upstream, message);
                continue;
            }
            match message {
                Message::Response(response) => self.handle_upstream_response(upstream, response),
                Message::Notification(notification) if notification.method == "notifications/progress" => {
                    let target = mcp::progress_notification_token(&notification.params)
                        .and_then(|token| self.sessions.get(&session_id)?.progress.get(&token).copied())
                        .and_then(|proxy_id| self.pending.get(proxy_id))
                        .map(|pending| pending.reply_to);
                    let message = Message::Notification(notification);
                    match target {
                        Some(ReplyTo::Exchange(exchange)) if self.send_event(exchange, &message) => {}
                        _ => self.route_to_session(&session_id, &message),
                    }
                }
                Message::Request(request) => {
                    let request = self.name_server_request(&session_id, upstream, request);
                    self.route_to_session(&session_id, &Message::Request(request));
                }
                other => self.route_to_session(&session_id, &other),
            }
        }
    }

    /// An upstream answered a request: back to whoever asked, with the id they used.
    pub(crate) fn handle_upstream_response(&mut self, upstream: UpstreamId, mut response: Response) {
        let pending = match &response.id {
            // At the edge requests go upstream under the client's own ids (see `forward_to`).
            Some(id) if self.sealer.is_some() => self.pending.find(upstream, id),
            Some(RequestId::Number(number)) => self
                .pending
                .get(ProxyRequestId(*number))
                .filter(|p| p.upstream == upstream)
                .map(|_| ProxyRequestId(*number)),
            _ => None,
        };
        let Some(proxy_id) = pending else {
            let name = self.upstream_name(upstream);
            let message = format!("{name}: dropped a response to no request in flight (id {:?})", response.id);
            return self.ctx.log(LogLevel::Warn, message);
        };
        let Some(pending) = self.take_pending(proxy_id) else {
            return;
        };
        response.id = Some(pending.original_id.clone());
        if let (true, Ok(result)) = (pending.initialize, &response.outcome) {
            if let Some(version) = result.get("protocolVersion").and_then(serde_json::Value::as_str) {
                self.set_http_protocol(upstream, version);
            }
        }
        let filter = self.ctx.config.servers.get(pending.server).and_then(|s| s.options.tool_filter.as_ref());
        if let (true, Ok(result), Some(filter)) = (pending.lists_tools, &mut response.outcome, filter) {
            // A merged list is filtered as it is merged.
            if !matches!(pending.reply_to, ReplyTo::Aggregate(_)) {
                crate::modes::aggregate::filter_tools(result, filter);
            }
        }
        self.deliver_response(&pending, response);
    }

    pub(crate) fn handle_upstream_closed(&mut self, upstream: UpstreamId, reason: String) {
        if let Some(server) = self.shared.server_of(upstream) {
            return self.shared_closed(server, upstream, reason);
        }
        let Some(session_id) = self.by_upstream.get(&upstream).cloned() else {
            return;
        };
        if self.sessions.get(&session_id).is_some_and(|s| s.target == Target::Merged) {
            return self.merged_member_closed(&session_id, upstream, reason);
        }
        self.ctx.log(LogLevel::Warn, format!("session {session_id}: the server exited: {reason}"));
        self.end_session(&session_id, &RequestError::UpstreamClosed(reason), "the server exited");
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.ctx.timers.pop_due(now) {
            match timer {
                Timer::Request(proxy_id) => {
                    let Some(pending) = self.take_pending(proxy_id) else {
                        continue;
                    };
                    if self.sessions.contains_key(&pending.session) {
                        let wire_id = match self.sealer {
                            Some(_) => serde_json::to_value(&pending.original_id).unwrap_or_default(),
                            None => serde_json::Value::from(proxy_id.0),
                        };
                        let params =
                            serde_json::json!({"requestId": wire_id, "reason": "request timed out in the proxy"});
                        let cancel =
                            Message::Notification(Notification { method: mcp::CANCELLED.into(), params: Some(params) });
                        self.send_upstream(pending.upstream, &cancel);
                    }
                    let error = RequestError::Timeout(self.ctx.config.request_timeout_ms);
                    self.ctx.log(
                        LogLevel::Warn,
                        format!("session {}: request {:?} timed out", pending.session, pending.original_id),
                    );
                    let response = Response::error(Some(pending.original_id.clone()), error.to_error_object());
                    self.deliver_response(&pending, response);
                }
                Timer::Respawn(slot) => self.respawn(now, slot),
                Timer::Idle(session_id) => self.check_idle(session_id),
                Timer::KeepAlive => self.keep_alive(),
                Timer::PoolWait(exchange) => self.pool_wait_expired(exchange),
                Timer::Rejoin(session_id, server) => self.rejoin(now, &session_id, server),
                Timer::SharedRespawn(server) => self.shared_respawn(server),
                Timer::Connect(session_id) => {
                    let expecting = self
                        .sessions
                        .get(&session_id)
                        .is_some_and(|s| matches!(s.state, SessionState::ExpectInitializeResult { .. }));
                    if expecting {
                        let error = RequestError::ConnectTimeout(self.ctx.config.connection_timeout_ms);
                        self.ctx.log(LogLevel::Warn, format!("session {session_id}: {error}"));
                        self.end_session(&session_id, &error, "the server did not initialize in time");
                    }
                }
            }
        }
    }

    // ---- machinery shared by the transports ----

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

    /// Forwards a request to `server`'s upstream in the session, with a proxy id.
    pub(crate) fn forward_to(
        &mut self,
        now: Instant,
        session_id: &SessionId,
        server: usize,
        reply_to: ReplyTo,
        mut request: Request,
    ) {
        let Some(upstream) = self.sessions.get(session_id).and_then(|s| s.upstream_of(server)) else {
            return;
        };
        let progress = mcp::progress_token(&request.params);
        let initialize = request.method == mcp::INITIALIZE;
        // A server that does not initialize within the connection timeout is given up on.
        let timeout =
            if initialize { self.ctx.config.connection_timeout_ms } else { self.ctx.config.request_timeout_ms };
        let deadline = now.after(Duration::from_millis(timeout));
        let pending = PendingRequest {
            session: session_id.clone(),
            server,
            upstream,
            reply_to,
            original_id: request.id.clone(),
            progress: progress.clone(),
            deadline,
            initialize,
            lists_tools: request.method == "tools/list",
        };
        let proxy_id = self.pending.insert(pending, &mut self.ctx.timers);
        if let Some(session) = self.sessions.get_mut(session_id) {
            session.in_flight.insert(proxy_id, request.id.clone());
            if let Some(token) = progress {
                session.progress.insert(token, proxy_id);
            }
        }
        if request.method == "tools/call" {
            let name =
                crate::wire::jsonrpc::param(&request.params, "name").and_then(|n| n.as_str()).unwrap_or_default();
            if !crate::route::tool_allowed(&self.ctx.config, server, name) {
                let message = format!("Tool {:?} is not available on this server", truncate(name, 100));
                let error = crate::wire::jsonrpc::ErrorObject::new(codes::INVALID_PARAMS, message);
                return self.local_answers.push_back((proxy_id, Err(error)));
            }
        }
        // At the edge every request is served by a fresh proxy and each client session has
        // upstream sessions of its own: the client's ids are unique there, and keeping them
        // lets a cancellation sent in a later request name the request.
        if self.sealer.is_none() {
            request.id = RequestId::Number(proxy_id.0);
        }
        if self.shared.server_of(upstream).is_some() {
            return self.send_shared(server, proxy_id, request);
        }
        self.send_upstream(upstream, &Message::Request(request));
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
    fn deliver_local_answers(&mut self) {
        while let Some((proxy_id, outcome)) = self.local_answers.pop_front() {
            if let Some(pending) = self.take_pending(proxy_id) {
                let response = Response { id: Some(pending.original_id.clone()), outcome };
                self.deliver_response(&pending, response);
            }
        }
    }

    /// Points a client's `notifications/cancelled` at the id the server knows, and
    /// finishes the cancelled request.
    /// Returns the upstream the cancellation is for, if the request is still in flight.
    fn rewrite_cancellation(&mut self, session_id: &SessionId, notification: &mut Notification) -> Option<UpstreamId> {
        let client_id = mcp::cancelled_request_id(&notification.params)?;
        let proxy_id = self.sessions.get(session_id).and_then(|s| s.proxy_id_of(&client_id));
        let proxy_id = match (proxy_id, self.sealer.is_some()) {
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
    pub(crate) fn deliver_response(&mut self, pending: &PendingRequest, response: Response) {
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
            ReplyTo::PoolInitialize | ReplyTo::Aggregate(_) | ReplyTo::Rejoin | ReplyTo::SharedInitialize => {}
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
    fn forward_client_response(&mut self, session_id: &SessionId, mut response: Response) {
        let named = match (&response.id, self.sessions.get_mut(session_id)) {
            (Some(RequestId::String(id)), Some(session)) if self.sealer.is_some() => {
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
        if self.sealer.is_some() {
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

    /// The credentials of the client behind `upstream`: its session's latest, or (while its
    /// session is being opened) the request's.
    pub(crate) fn client_authorization(&self, upstream: UpstreamId) -> Option<String> {
        match self.by_upstream.get(&upstream).and_then(|id| self.sessions.get(id)) {
            Some(session) => session.client_authorization.clone(),
            None => self.request_authorization.clone(),
        }
    }

    /// Sends a message to one upstream.
    pub(crate) fn send_to_upstream(&mut self, upstream: UpstreamId, message: &Message) {
        self.send_upstream(upstream, message);
    }

    fn send_upstream(&mut self, upstream: UpstreamId, message: &Message) {
        let data = message.to_bytes();
        if self.logs_upstream(upstream) {
            let session = self.by_upstream.get(&upstream).map(SessionId::to_string).unwrap_or_default();
            let name = self.upstream_name(upstream);
            self.ctx.log(LogLevel::Debug, format!("session {session} -> {name}: {}", String::from_utf8_lossy(&data)));
        }
        if self.http.contains(upstream) {
            return self.http_send(upstream, message, data);
        }
        self.ctx.push(Output::Send { upstream, data });
    }

    /// Stops an upstream: a child is terminated, a remote session deleted.
    pub(crate) fn close_upstream(&mut self, upstream: UpstreamId) {
        if self.http.contains(upstream) {
            self.http_close(upstream);
        } else {
            self.ctx.push(Output::CloseUpstream(upstream));
        }
    }

    /// The server behind an upstream.
    fn server_of_upstream(&self, upstream: UpstreamId) -> Option<usize> {
        if let Some(server) = self.shared.server_of(upstream) {
            return Some(server);
        }
        self.sessions.get(self.by_upstream.get(&upstream)?)?.server_of(upstream)
    }

    /// Whether an upstream's traffic is logged: `--debug`, or its server's `logEnabled`.
    fn logs_upstream(&self, upstream: UpstreamId) -> bool {
        self.ctx.config.debug
            || self
                .server_of_upstream(upstream)
                .and_then(|s| self.ctx.config.servers.get(s))
                .is_some_and(|s| s.options.log_enabled)
    }

    /// How log lines name an upstream's server.
    fn upstream_name(&self, upstream: UpstreamId) -> String {
        match self.server_of_upstream(upstream).and_then(|s| self.ctx.config.servers.get(s)) {
            Some(entry) if !entry.name.is_empty() => format!("server {}", entry.display_name()),
            _ => "server".to_owned(),
        }
    }
}

/// The ids the proxy gives server requests it renames: this and a number.
const SERVER_REQUEST_PREFIX: &str = "mcp-proxy-";

/// Requests one session may have in flight; more are answered with an error at once.
pub(crate) const MAX_IN_FLIGHT: usize = 256;

/// Bytes of events one session keeps for resumption, at most.
const EVENT_STORE_SESSION_BYTES: usize = 4 * 1024 * 1024;

/// Who is calling, as admitted: the endpoint's target and the servers the credential reaches.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub(crate) target: Target,
    pub(crate) servers: Vec<usize>,
    /// At the edge, a digest of the credential presented: sessions are sealed for it.
    pub(crate) credential: [u8; 32],
}

/// Shortens `text` to at most `max` bytes, on a character boundary, for log lines.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
