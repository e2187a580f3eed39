//! The proxy state machine: inputs in, outputs out, time passed in.

use std::collections::{BTreeMap, VecDeque};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::config::Config;
use crate::ctx::Ctx;
use crate::error::RequestError;
use crate::ids::{ExchangeId, ProxyRequestId, ServerId, SessionId};
use crate::io::{Input, LogLevel, Output};
use crate::modes::edge::SessionStore;
use crate::modes::pool::Pools;
use crate::policy::access::{admit, forwardable_authorization, Admission, Refusal};
use crate::policy::{cors_response_headers, preflight_headers};
use crate::route::{Endpoint, Route, Target};
use crate::state::exchange::{error_body, json_head, Exchange};
use crate::state::pending::Pending;
use crate::state::session::{Session, SessionState};
use crate::state::timers::Timer;
use crate::time::{Instant, WallClock};
use crate::upstream::http::HttpUpstreams;
use crate::upstream::table::UpstreamTable;
use crate::wire::http::{Header, HttpRequest, ResponseHead};
use crate::wire::jsonrpc::{Message, Notification, Response};
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
    /// Upstream ids and the sessions that own them.
    pub(crate) upstreams: UpstreamTable,
    pub(crate) exchanges: BTreeMap<ExchangeId, Exchange>,
    pub(crate) pending: Pending,
    /// Events sent on sessions' streams, for resumption.
    pub(crate) events: crate::state::event_log::EventLog,
    /// Children the proxy initialized itself, per server (stateless and 2026 requests).
    pub(crate) pools: Pools,
    pub(crate) aggregates: crate::modes::merged::Aggregates,
    pub(crate) temporary_count: u64,
    /// Remote upstreams and their fetches.
    pub(crate) http: HttpUpstreams,
    /// Upstreams shared by every session of their server.
    pub(crate) shared: crate::upstream::shared::SharedUpstreams,
    /// Where sessions live: in memory, or sealed into their ids (at the edge).
    pub(crate) store: SessionStore,
    /// 2026-07-28 requests in flight, waiting input rounds, listen streams.
    pub(crate) modern: crate::modern::Modern,
    /// Which era each upstream speaks.
    pub(crate) eras: crate::upstream::era::Eras,
    /// The `Authorization` header of the HTTP request being handled (sessions it opens start
    /// with it).
    pub(crate) request_authorization: Option<String>,
    /// Answers the proxy gives itself, delivered at the end of the turn.
    pub(crate) local_answers: VecDeque<(ProxyRequestId, Result<serde_json::Value, crate::wire::jsonrpc::ErrorObject>)>,
    pub(crate) next_server_request: u64,
    pub(crate) keepalive_armed: bool,
    /// Reverse mode: the local stdio client's session.
    pub(crate) stdio: crate::transport::stdio::StdioClient,
}

impl Proxy {
    /// Creates a proxy at time `now`. `seed` feeds the session-id generator: give it 32 bytes
    /// from the operating system's secure random source. In stateless mode the pool's
    /// children are started at once: drain [`Proxy::poll_output`] after this.
    pub fn new(config: Config, seed: [u8; 32], now: Instant) -> Proxy {
        let stateless = config.stateless;
        let store = SessionStore::new(&config);
        // `input_required` states are sealed with the edge key or the replicas' shared key
        // where there is one (any isolate or replica opens them), else with a key of this
        // proxy's own.
        let shared_key = config.edge.as_ref().map(|edge| &edge.key).or(config.session_key_bytes.as_ref());
        let modern_key = match shared_key {
            Some(key) => key.clone(),
            None => {
                use sha2::Digest;
                sha2::Sha256::new()
                    .chain_update(b"mcp-proxy input-required key\0")
                    .chain_update(seed)
                    .finalize()
                    .to_vec()
            }
        };
        let events = crate::state::event_log::EventLog::new(
            config.event_store_size,
            EVENT_STORE_SESSION_BYTES,
            config.event_store_bytes,
        );
        let mut proxy = Proxy {
            ctx: Ctx::new(config, ChaCha20Rng::from_seed(seed), now),
            sessions: BTreeMap::new(),
            upstreams: UpstreamTable::default(),
            exchanges: BTreeMap::new(),
            pending: Pending::default(),
            events,
            pools: Pools::default(),
            aggregates: Default::default(),
            temporary_count: 0,
            http: HttpUpstreams::new(store.listens_ahead()),
            shared: Default::default(),
            store,
            modern: crate::modern::Modern::new(&modern_key),
            eras: Default::default(),
            request_authorization: None,
            local_answers: VecDeque::new(),
            next_server_request: 0,
            keepalive_armed: false,
            stdio: Default::default(),
        };
        for notice in proxy.ctx.config.notices.clone() {
            proxy.ctx.log(LogLevel::Warn, format!("configuration: {notice}"));
        }
        if !proxy.ctx.config.is_bridge() {
            let config = &proxy.ctx.config;
            let lines: Vec<String> = config
                .servers
                .iter()
                .map(|(server, entry)| {
                    let name = entry.display_name();
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
            Input::Shutdown => self.listen_close_all(),
            Input::FetchHead { fetch, status, headers } => {
                let mut events = Vec::new();
                self.http.handle_head(&mut self.ctx, fetch, status, &headers, &mut events);
                self.handle_http_events(events);
            }
            Input::FetchData { fetch, data } => {
                let mut events = Vec::new();
                self.http.handle_data(&mut self.ctx, fetch, &data, &mut events);
                self.handle_http_events(events);
            }
            Input::FetchEnd { fetch, error } => {
                let mut events = Vec::new();
                self.http.handle_end(&mut self.ctx, fetch, error, &mut events);
                self.handle_http_events(events);
            }
            Input::ClientMessage(line) => self.client_message(now, &line),
            Input::ClientClosed => self.client_closed(),
        }
        self.deliver_local_answers();
        self.arm_keepalive();
        self.announce_client_done();
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
                let caller = Caller { target, servers, credential: self.store.credential(&request) };
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

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.ctx.timers.pop_due(now) {
            match timer {
                Timer::Request(proxy_id) => {
                    let Some(pending) = self.take_pending(proxy_id) else {
                        continue;
                    };
                    if self.sessions.contains_key(&pending.session) {
                        let wire_id = self.store.upstream_id(proxy_id, &pending.original_id);
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
                Timer::Respawn(server, slot) => self.respawn(now, server, slot),
                Timer::Idle(session_id) => self.check_idle(session_id),
                Timer::KeepAlive => self.keep_alive(),
                Timer::PoolWait(exchange) => self.pool_wait_expired(exchange),
                Timer::Rejoin(session_id, server) => self.rejoin(now, &session_id, server),
                Timer::SharedRespawn(server) => self.shared_respawn(server),
                Timer::InputRequired(proxy_id) => self.mrtr_flush(proxy_id),
                Timer::Parked(number) => self.mrtr_expired(number),
                Timer::AskAgain(round) => self.ask_again(round),
                Timer::Relisten(upstream) => self.upstream_listen(now, upstream),
                Timer::Ungate(upstream) => self.http.open_gate(&mut self.ctx, upstream),
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
}

/// Bytes of events one session keeps for resumption, at most.
const EVENT_STORE_SESSION_BYTES: usize = 4 * 1024 * 1024;

/// Who is calling, as admitted: the endpoint's target and the servers the credential reaches.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub(crate) target: Target,
    pub(crate) servers: Vec<ServerId>,
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
