//! The proxy state machine: inputs in, outputs out, time passed in.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::config::{Config, StdioServer};
use crate::error::{codes, RequestError};
use crate::exchange::{error_body, json_head, sse_head, Exchange, ExchangeKind};
use crate::http::{Header, HttpRequest, ResponseHead};
use crate::ids::{ExchangeId, ProxyRequestId, SessionId, UpstreamId};
use crate::jsonrpc::{Message, Notification, Payload, Request, RequestId, Response};
use crate::mcp;
use crate::pending::{Pending, PendingRequest, ReplyTo, Timer};
use crate::policy::{
    check_api_key, check_bearer_token, check_origin, cors_response_headers, preflight_headers, AuthDecision,
    OriginDecision,
};
use crate::pool::Pool;
use crate::route::{route, Endpoint, Route};
use crate::session::{Session, SessionState, Transport};
use crate::time::Instant;

/// Something the shell observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// An HTTP request arrived and its body was read.
    HttpRequest(HttpRequest),
    /// The client of an exchange went away before the core finished it.
    HttpClosed(ExchangeId),
    /// An upstream wrote one message (a line of a stdio child's stdout).
    UpstreamMessage {
        /// Which upstream.
        upstream: UpstreamId,
        /// The line, without its newline.
        data: Vec<u8>,
    },
    /// An upstream ended, or could not be started.
    UpstreamClosed {
        /// Which upstream.
        upstream: UpstreamId,
        /// Why, for the log and for the errors sent to clients.
        reason: String,
    },
    /// The deadline from [`Proxy::poll_timeout`] passed.
    Timeout,
}

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something is wrong but serving goes on.
    Warn,
    /// Lifecycle events.
    Info,
    /// Message traffic (with `debug` on).
    Debug,
}

/// Something the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Answer an exchange with a complete response.
    Respond {
        /// Status and headers.
        head: ResponseHead,
        /// The body.
        body: Vec<u8>,
    },
    /// Answer an exchange with a streaming (SSE) response; data follows.
    StreamStart(ResponseHead),
    /// Write bytes to an open stream.
    StreamData {
        /// The stream.
        exchange: ExchangeId,
        /// Bytes, already framed as server-sent events.
        data: Vec<u8>,
    },
    /// Finish an open stream.
    StreamEnd(ExchangeId),
    /// Start a stdio upstream; report its lines as [`Input::UpstreamMessage`].
    Spawn {
        /// The handle the core will use for it.
        upstream: UpstreamId,
        /// What to run.
        server: StdioServer,
    },
    /// Write one message (a line) to an upstream.
    Send {
        /// Which upstream.
        upstream: UpstreamId,
        /// The message, without a newline.
        data: Vec<u8>,
    },
    /// Stop an upstream (terminate the child).
    CloseUpstream(UpstreamId),
    /// Write a log line.
    Log {
        /// Severity.
        level: LogLevel,
        /// The line.
        message: String,
    },
}

/// The proxy: one state machine for every session of one server.
///
/// Drive it by handing in each [`Input`] with the current time, then draining
/// [`Proxy::poll_output`] until `None`, and waking up at [`Proxy::poll_timeout`].
#[derive(Debug)]
pub struct Proxy {
    pub(crate) config: Config,
    pub(crate) rng: ChaCha20Rng,
    pub(crate) outputs: VecDeque<Output>,
    pub(crate) sessions: HashMap<SessionId, Session>,
    pub(crate) by_upstream: HashMap<UpstreamId, SessionId>,
    pub(crate) exchanges: HashMap<ExchangeId, Exchange>,
    pub(crate) pending: Pending,
    pub(crate) pool: Pool,
    /// Answers the proxy gives itself, delivered at the end of the turn.
    local_answers: VecDeque<(ProxyRequestId, Result<serde_json::Value, crate::jsonrpc::ErrorObject>)>,
    /// The latest time handed in.
    pub(crate) now: Instant,
    pub(crate) next_upstream: u64,
    /// A stream started since the keep-alive timer last ran.
    pub(crate) streams_opened: bool,
    pub(crate) keepalive_armed: bool,
}

impl Proxy {
    /// Creates a proxy at time `now`. `seed` feeds the session-id generator: give it 32 bytes
    /// from the operating system's secure random source. In stateless mode the pool's
    /// children are started at once: drain [`Proxy::poll_output`] after this.
    pub fn new(config: Config, seed: [u8; 32], now: Instant) -> Proxy {
        let stateless = config.stateless;
        let mut proxy = Proxy {
            config,
            rng: ChaCha20Rng::from_seed(seed),
            outputs: VecDeque::new(),
            sessions: HashMap::new(),
            by_upstream: HashMap::new(),
            exchanges: HashMap::new(),
            pending: Pending::default(),
            pool: Pool::default(),
            local_answers: VecDeque::new(),
            now,
            next_upstream: 0,
            streams_opened: false,
            keepalive_armed: false,
        };
        for notice in proxy.config.notices.clone() {
            proxy.log(LogLevel::Warn, format!("configuration: {notice}"));
        }
        if !proxy.config.is_bridge() {
            let lines: Vec<String> = (0..proxy.config.servers.len())
                .map(|server| {
                    let name = &proxy.config.servers[server].name;
                    let stream = crate::route::endpoint_path(&proxy.config, server, Endpoint::Stream);
                    let sse = crate::route::endpoint_path(&proxy.config, server, Endpoint::Sse);
                    format!("serving {name}: Streamable HTTP at {stream}, SSE at {sse}")
                })
                .collect();
            for line in lines {
                proxy.log(LogLevel::Info, line);
            }
        }
        if stateless {
            proxy.start_pool(now);
        }
        proxy
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The largest request body the shell should read; larger ones are reported with
    /// [`HttpRequest::body_too_large`].
    pub fn max_body_size(&self) -> u64 {
        self.config.max_body_size
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Number of requests forwarded upstream and not yet answered.
    pub fn in_flight_count(&self) -> usize {
        self.pending.len()
    }

    /// Feeds one observation to the proxy.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.now = self.now.max(now);
        let now = self.now;
        match input {
            Input::HttpRequest(request) => self.handle_http_request(now, request),
            Input::HttpClosed(exchange) => self.handle_http_closed(exchange),
            Input::UpstreamMessage { upstream, data } => self.handle_upstream_message(upstream, &data),
            Input::UpstreamClosed { upstream, reason } => self.handle_upstream_closed(upstream, reason),
            Input::Timeout => self.handle_timeout(now),
        }
        self.deliver_local_answers();
        self.arm_keepalive();
    }

    /// The next thing for the shell to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the shell must next hand in [`Input::Timeout`], if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.next_deadline()
    }

    fn handle_http_request(&mut self, now: Instant, request: HttpRequest) {
        let exchange = request.exchange;
        if request.method == "OPTIONS" {
            if let OriginDecision::Deny(reason) = check_origin(&self.config, &request) {
                return self.refuse(exchange, Vec::new(), 403, &format!("Forbidden: {reason}"));
            }
            let mut headers = preflight_headers(&self.config.cors, &request);
            headers.push(Header::new("allow", "GET, POST, DELETE, OPTIONS"));
            return self.respond(ResponseHead { exchange, status: 204, headers }, Vec::new());
        }
        let cors = cors_response_headers(&self.config.cors, &request);
        let path = request.path();
        if path == "/ping" && matches!(request.method.as_str(), "GET" | "HEAD") {
            let mut headers = cors;
            headers.push(Header::new("content-type", "text/plain"));
            return self.respond(ResponseHead { exchange, status: 200, headers }, b"pong".to_vec());
        }
        if let OriginDecision::Deny(reason) = check_origin(&self.config, &request) {
            self.log(LogLevel::Warn, format!("refused a request: {reason}"));
            return self.refuse(exchange, cors, 403, &format!("Forbidden: {reason}"));
        }
        if check_api_key(self.config.api_key.as_deref(), &request) == AuthDecision::Deny {
            let mut headers = cors;
            headers.push(Header::new("www-authenticate", "Bearer"));
            return self.refuse(exchange, headers, 401, "Unauthorized: missing or invalid API key");
        }
        let Some(Route { server, endpoint }) = route(&self.config, path) else {
            let message = format!("Not Found: no endpoint at {}", truncate(path, 200));
            return self.refuse(exchange, cors, 404, &message);
        };
        let tokens = self.config.servers.get(server).map(|s| s.options.auth_tokens.as_slice()).unwrap_or_default();
        if check_bearer_token(tokens, &request) == AuthDecision::Deny {
            let mut headers = cors;
            headers.push(Header::new("www-authenticate", "Bearer"));
            return self.refuse(exchange, headers, 401, "Unauthorized: missing or invalid token for this server");
        }
        match (endpoint, request.method.as_str()) {
            (Endpoint::Stream, "POST") => self.stream_post(now, server, request, cors),
            (Endpoint::Stream, "GET") => self.stream_get(server, request, cors),
            (Endpoint::Stream, "DELETE") => self.stream_delete(server, request, cors),
            (Endpoint::Stream, _) => self.method_not_allowed(exchange, cors, "GET, POST, DELETE, OPTIONS"),
            (Endpoint::Sse, "GET") => self.legacy_open(server, request, cors),
            (Endpoint::Sse, _) => self.method_not_allowed(exchange, cors, "GET, OPTIONS"),
            (Endpoint::Messages, "POST") => self.legacy_post(now, server, request, cors),
            (Endpoint::Messages, _) => self.method_not_allowed(exchange, cors, "POST, OPTIONS"),
        }
    }

    fn handle_http_closed(&mut self, exchange_id: ExchangeId) {
        let keeps_events = self.config.event_store_size > 0;
        // Idle time counts from the end of the client's last activity, a stream included.
        let now = self.now;
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

    fn handle_upstream_message(&mut self, upstream: UpstreamId, data: &[u8]) {
        let Some(session_id) = self.by_upstream.get(&upstream).cloned() else {
            return;
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
                return self.log(LogLevel::Warn, message);
            }
        };
        for message in messages {
            if self.config.debug {
                self.log(
                    LogLevel::Debug,
                    format!("session {session_id} <- server: {}", String::from_utf8_lossy(&message.to_bytes())),
                );
            }
            match message {
                Message::Response(response) => self.handle_upstream_response(&session_id, response),
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
                other => self.route_to_session(&session_id, &other),
            }
        }
    }

    fn handle_upstream_response(&mut self, session_id: &SessionId, mut response: Response) {
        let pending = match response.id {
            Some(RequestId::Number(number)) => self
                .pending
                .get(ProxyRequestId(number))
                .filter(|p| p.session == *session_id)
                .map(|_| ProxyRequestId(number)),
            _ => None,
        };
        let Some(proxy_id) = pending else {
            let message =
                format!("session {session_id}: dropped a response to no request in flight (id {:?})", response.id);
            return self.log(LogLevel::Warn, message);
        };
        let Some(pending) = self.take_pending(proxy_id) else {
            return;
        };
        response.id = Some(pending.original_id.clone());
        if pending.filter_tools {
            let server = self.sessions.get(&pending.session).map(|s| s.server).unwrap_or_default();
            if let (Ok(result), Some(filter)) =
                (&mut response.outcome, self.config.servers.get(server).and_then(|s| s.options.tool_filter.as_ref()))
            {
                if let Some(tools) = result.get_mut("tools").and_then(|t| t.as_array_mut()) {
                    tools.retain(|tool| {
                        tool.get("name").and_then(|n| n.as_str()).is_some_and(|name| filter.allows(name))
                    });
                }
            }
        }
        self.deliver_response(&pending, response);
    }

    fn handle_upstream_closed(&mut self, upstream: UpstreamId, reason: String) {
        let Some(session_id) = self.by_upstream.get(&upstream).cloned() else {
            return;
        };
        self.log(LogLevel::Warn, format!("session {session_id}: the server exited: {reason}"));
        self.end_session(&session_id, &RequestError::UpstreamClosed(reason), "the server exited");
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.pending.pop_due(now) {
            match timer {
                Timer::Request(proxy_id) => {
                    let Some(pending) = self.take_pending(proxy_id) else {
                        continue;
                    };
                    if let Some(upstream) = self.sessions.get(&pending.session).map(|s| s.upstream) {
                        let params =
                            serde_json::json!({"requestId": proxy_id.0, "reason": "request timed out in the proxy"});
                        let cancel =
                            Message::Notification(Notification { method: mcp::CANCELLED.into(), params: Some(params) });
                        self.send_upstream(upstream, &cancel);
                    }
                    let error = RequestError::Timeout(self.config.request_timeout_ms);
                    self.log(
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
                Timer::Connect(session_id) => {
                    let expecting = self
                        .sessions
                        .get(&session_id)
                        .is_some_and(|s| matches!(s.state, SessionState::ExpectInitializeResult { .. }));
                    if expecting {
                        let error = RequestError::ConnectTimeout(self.config.connection_timeout_ms);
                        self.log(LogLevel::Warn, format!("session {session_id}: {error}"));
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
                    self.forward_request(now, session_id, reply_to, request);
                }
                Message::Notification(mut notification) => {
                    if notification.method == mcp::CANCELLED {
                        self.rewrite_cancellation(session_id, &mut notification);
                    }
                    self.send_to_session_upstream(session_id, &Message::Notification(notification));
                }
                response @ Message::Response(_) => self.send_to_session_upstream(session_id, &response),
            }
        }
        requests
    }

    pub(crate) fn forward_request(
        &mut self,
        now: Instant,
        session_id: &SessionId,
        reply_to: ReplyTo,
        mut request: Request,
    ) {
        let Some((upstream, server)) = self.sessions.get(session_id).map(|s| (s.upstream, s.server)) else {
            return;
        };
        let progress = mcp::progress_token(&request.params);
        let deadline = now.after(Duration::from_millis(self.config.request_timeout_ms));
        let initialize = request.method == mcp::INITIALIZE;
        let has_filter = self.config.servers.get(server).is_some_and(|s| s.options.tool_filter.is_some());
        let pending = PendingRequest {
            session: session_id.clone(),
            reply_to,
            original_id: request.id.clone(),
            progress: progress.clone(),
            deadline,
            initialize,
            filter_tools: has_filter && request.method == "tools/list",
        };
        let proxy_id = self.pending.insert(pending);
        if let Some(session) = self.sessions.get_mut(session_id) {
            session.in_flight.insert(proxy_id, request.id.clone());
            if let Some(token) = progress {
                session.progress.insert(token, proxy_id);
            }
        }
        if request.method == "tools/call" {
            let name = crate::jsonrpc::param(&request.params, "name").and_then(|n| n.as_str()).unwrap_or_default();
            if !crate::route::tool_allowed(&self.config, server, name) {
                let message = format!("Tool {:?} is not available on this server", truncate(name, 100));
                let error = crate::jsonrpc::ErrorObject::new(codes::INVALID_PARAMS, message);
                return self.local_answers.push_back((proxy_id, Err(error)));
            }
        }
        request.id = RequestId::Number(proxy_id.0);
        self.send_upstream(upstream, &Message::Request(request));
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
    fn rewrite_cancellation(&mut self, session_id: &SessionId, notification: &mut Notification) {
        let Some(client_id) = mcp::cancelled_request_id(&notification.params) else {
            return;
        };
        let Some(proxy_id) = self.sessions.get(session_id).and_then(|s| s.proxy_id_of(&client_id)) else {
            return;
        };
        mcp::set_cancelled_request_id(&mut notification.params, proxy_id.0);
        if let Some(pending) = self.take_pending(proxy_id) {
            let response =
                Response::error(Some(pending.original_id.clone()), RequestError::Cancelled.to_error_object());
            self.deliver_response(&pending, response);
        }
    }

    /// Removes a request from the pending table and from its session's maps.
    pub(crate) fn take_pending(&mut self, proxy_id: ProxyRequestId) -> Option<PendingRequest> {
        let pending = self.pending.remove(proxy_id)?;
        if let Some(session) = self.sessions.get_mut(&pending.session) {
            session.finish(proxy_id, pending.progress.as_ref());
            session.last_activity = self.now;
        }
        Some(pending)
    }

    /// Hands the answer of a request to whoever waits for it.
    pub(crate) fn deliver_response(&mut self, pending: &PendingRequest, response: Response) {
        let succeeded = response.outcome.is_ok();
        if pending.initialize {
            if let Some(session) = self.sessions.get_mut(&pending.session) {
                if let SessionState::ExpectInitializeResult { deadline } = session.state {
                    self.pending.cancel_timer(deadline, Timer::Connect(pending.session.clone()));
                }
                session.state = SessionState::Ready;
                if let Ok(result) = &response.outcome {
                    session.protocol_version =
                        result.get("protocolVersion").and_then(|v| v.as_str()).map(str::to_owned);
                }
            }
        }
        if pending.reply_to == ReplyTo::PoolInitialize {
            return self.pool_initialized(self.now, &pending.session, response);
        }
        let message = Message::Response(response);
        match pending.reply_to {
            ReplyTo::SessionStream => self.route_to_session(&pending.session, &message),
            ReplyTo::Exchange(exchange_id) => self.answer_post(exchange_id, message),
            ReplyTo::PoolInitialize => {}
        }
        if pending.initialize && !succeeded && self.sessions.get(&pending.session).is_some_and(Session::is_streamable) {
            self.end_session(&pending.session, &RequestError::SessionEnded, "the server refused initialize");
        }
    }

    pub(crate) fn send_to_session_upstream(&mut self, session_id: &SessionId, message: &Message) {
        if let Some(upstream) = self.sessions.get(session_id).map(|s| s.upstream) {
            self.send_upstream(upstream, message);
        }
    }

    fn send_upstream(&mut self, upstream: UpstreamId, message: &Message) {
        let data = message.to_bytes();
        if self.config.debug {
            let session = self.by_upstream.get(&upstream).map(SessionId::to_string).unwrap_or_default();
            self.log(LogLevel::Debug, format!("session {session} -> server: {}", String::from_utf8_lossy(&data)));
        }
        self.outputs.push_back(Output::Send { upstream, data });
    }

    // ---- responses and logs ----

    pub(crate) fn respond(&mut self, head: ResponseHead, body: Vec<u8>) {
        self.outputs.push_back(Output::Respond { head, body });
    }

    pub(crate) fn start_stream(&mut self, exchange: ExchangeId, headers: Vec<Header>) {
        self.streams_opened = true;
        self.outputs.push_back(Output::StreamStart(sse_head(exchange, headers)));
    }

    pub(crate) fn stream_data(&mut self, exchange: ExchangeId, data: Vec<u8>) {
        self.outputs.push_back(Output::StreamData { exchange, data });
    }

    /// Answers with an HTTP error status and a JSON-RPC error body.
    pub(crate) fn refuse(&mut self, exchange: ExchangeId, headers: Vec<Header>, status: u16, message: &str) {
        let code = match status {
            404 => codes::SESSION_NOT_FOUND,
            413 | 415 | 406 => codes::INVALID_REQUEST,
            _ => codes::TRANSPORT,
        };
        self.respond(json_head(exchange, status, headers), error_body(code, message));
    }

    /// Answers with an HTTP status and the given JSON-RPC response as body.
    pub(crate) fn refuse_with(&mut self, exchange: ExchangeId, headers: Vec<Header>, status: u16, response: Response) {
        self.respond(json_head(exchange, status, headers), Message::Response(response).to_bytes());
    }

    fn method_not_allowed(&mut self, exchange: ExchangeId, mut headers: Vec<Header>, allow: &str) {
        headers.push(Header::new("allow", allow));
        self.refuse(exchange, headers, 405, "Method Not Allowed");
    }

    pub(crate) fn log(&mut self, level: LogLevel, message: String) {
        self.outputs.push_back(Output::Log { level, message });
    }
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
