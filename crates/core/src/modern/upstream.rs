//! 2025 clients on 2026-07-28 servers: the proxy speaks the new revision upstream for them.
//!
//! The client's `initialize` is answered from the server's `server/discover` (see
//! [`crate::upstream::era`]); every later request goes upstream in the 2026 envelope built
//! from that `initialize` (client capabilities and identity) and the level the client set
//! with `logging/setLevel`; `ping` and `logging/setLevel` are answered by the proxy. A server
//! that needs input answers `input_required`: its questions go to the client as the 2025
//! server→client requests they are (sampling, elicitation, roots), and once the client
//! answered them all the proxy asks again with `inputResponses` and the `requestState`
//! echoed byte for byte — over as many rounds as the server asks (at most [`MAX_ROUNDS`]). List
//! changes and the updates of subscribed resources come from one `subscriptions/listen` per
//! session, opened again (with backoff) when it drops or when the subscriptions change.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::error::codes;
use crate::ids::{ProxyRequestId, ServerId, SessionId, UpstreamId};
use crate::modern::cache::{cacheable, ResultCache};
use crate::proxy::Proxy;
use crate::state::pending::{PendingRequest, ReplyTo};
use crate::state::timers::Timer;
use crate::upstream::backoff::Backoff;
use crate::upstream::era::{envelope_for, initialize_result, wrap};
use crate::wire::jsonrpc::{param, params_object, ErrorObject, Message, Notification, Request, RequestId, Response};
use crate::wire::mcp;

/// Input rounds one call may take before the proxy gives up on the server.
pub(crate) const MAX_ROUNDS: u32 = 10;
/// The id of the proxy's own upstream listen where the proxy keeps clients' ids (at the edge),
/// so that nothing a client sends is taken for it.
const LISTEN_ID: &str = "mcp-proxy-listen";
/// The level a 2025 client that never sent `logging/setLevel` hears logs at.
const DEFAULT_LOG_LEVEL: &str = "debug";
/// How long the proxy waits before asking again when a server answered `input_required`
/// with a state but no question (it asks to be asked later).
const RETRY_LATER: Duration = Duration::from_millis(250);
/// The ids of the questions the proxy hands a 2025 client for a server: this and a number.
const ASK_PREFIX: &str = "mcp-proxy-input-";
/// Requests whose server may answer `input_required`.
const ASKING: [&str; 3] = [mcp::TOOLS_CALL, mcp::PROMPTS_GET, mcp::RESOURCES_READ];

/// What the proxy keeps of the 2025 client behind a modern upstream.
#[derive(Debug)]
struct ClientSide {
    session: SessionId,
    server: ServerId,
    /// The client's `initialize` parameters (its capabilities and identity).
    initialize: Option<Value>,
    /// The level the client set with `logging/setLevel`.
    log_level: Option<String>,
    /// The resources it subscribed to.
    subscriptions: BTreeSet<String>,
    /// The upstream listen request in flight.
    listen: Option<ProxyRequestId>,
    backoff: Backoff,
}

impl ClientSide {
    /// A client first seen at `now`, with the `initialize` parameters it is known by (a
    /// session restored at the edge brings them along).
    fn new(session: &SessionId, server: ServerId, initialize: Option<Value>, now: crate::time::Instant) -> ClientSide {
        ClientSide {
            session: session.clone(),
            server,
            initialize,
            log_level: None,
            subscriptions: BTreeSet::new(),
            listen: None,
            backoff: Backoff::rejoin(now),
        }
    }
}

/// A call whose server asked for input, while its client answers.
#[derive(Debug)]
struct Round {
    pending: PendingRequest,
    /// The request as the client sent it (without the envelope).
    request: Request,
    state: Option<Value>,
    answers: Map<String, Value>,
    unanswered: BTreeSet<String>,
    rounds: u32,
}

/// The 2025 clients of modern upstreams, their calls' input rounds and questions.
#[derive(Debug, Default)]
pub(crate) struct ModernUpstreams {
    clients: BTreeMap<UpstreamId, ClientSide>,
    /// Calls that may answer `input_required`, as sent (to ask again).
    sent: BTreeMap<ProxyRequestId, (Request, u32)>,
    rounds: BTreeMap<u64, Round>,
    /// What the servers let the proxy keep, and the requests whose answers may be kept.
    cache: ResultCache,
    cacheable: BTreeMap<ProxyRequestId, (String, Option<Value>, [u8; 32])>,
    next_round: u64,
    asks: BTreeMap<u64, (u64, String)>,
    next_ask: u64,
}

impl ModernUpstreams {
    /// A 2026 server announced a list change: what is kept of that list goes.
    pub(crate) fn list_changed(&mut self, server: ServerId, notification: &str) {
        self.cache.changed(server, notification);
    }
}

fn lowered(level: &Option<Value>) -> Option<String> {
    param(level, "level").and_then(Value::as_str).map(str::to_owned)
}

impl Proxy {
    /// Sends a request to a 2026 upstream: a 2026 client's as it is, a 2025 client's in the
    /// envelope (or answered by the proxy, for what the revision no longer has).
    pub(crate) fn modern_upstream_request(
        &mut self,
        session_id: &SessionId,
        server: ServerId,
        upstream: UpstreamId,
        proxy_id: ProxyRequestId,
        mut request: Request,
    ) {
        if crate::modern::envelope::claims(&request.params) {
            return self.send_upstream(upstream, &Message::Request(request));
        }
        let pool = self.is_pool_member(session_id);
        // A session restored at the edge brings its client's `initialize` along.
        let initialize = self.sessions.get(session_id).and_then(|s| s.initialize_params.clone());
        let client = self
            .modern
            .upstreams
            .clients
            .entry(upstream)
            .or_insert_with(|| ClientSide::new(session_id, server, initialize, self.ctx.now));
        match request.method.as_str() {
            mcp::INITIALIZE => {
                client.initialize.clone_from(&request.params);
                let requested = param(&request.params, "protocolVersion").and_then(Value::as_str).map(str::to_owned);
                let discover = self.eras.discover(upstream).cloned().unwrap_or_else(|| json!({}));
                let mut result = initialize_result(&discover, requested.as_deref());
                if self.store.keeps_client_ids() {
                    // At the edge a subscription cannot reach the listen that would carry its
                    // updates (see `edge_upstream_listen`): it is not offered.
                    if let Some(resources) =
                        result.pointer_mut("/capabilities/resources").and_then(Value::as_object_mut)
                    {
                        resources.remove("subscribe");
                    }
                }
                self.answer_later(proxy_id, Ok(result));
                let now = self.ctx.now;
                return self.upstream_listen(now, upstream);
            }
            mcp::PING => return self.answer_later(proxy_id, Ok(json!({}))),
            mcp::LOGGING_SET_LEVEL => {
                client.log_level = lowered(&request.params);
                return self.answer_later(proxy_id, Ok(json!({})));
            }
            mcp::RESOURCES_SUBSCRIBE | mcp::RESOURCES_UNSUBSCRIBE if self.store.keeps_client_ids() => {
                let error = ErrorObject::new(
                    codes::METHOD_NOT_FOUND,
                    "resource subscriptions of a 2026-07-28 server do not cross the edge: the subscription \
                     would arrive in another request than the listen that carries its updates",
                );
                return self.answer_later(proxy_id, Err(error));
            }
            mcp::RESOURCES_SUBSCRIBE | mcp::RESOURCES_UNSUBSCRIBE => {
                if let Some(uri) = param(&request.params, "uri").and_then(Value::as_str) {
                    if request.method == mcp::RESOURCES_SUBSCRIBE {
                        client.subscriptions.insert(uri.to_owned());
                    } else {
                        client.subscriptions.remove(uri);
                    }
                }
                self.answer_later(proxy_id, Ok(json!({})));
                let now = self.ctx.now;
                return self.upstream_listen(now, upstream);
            }
            _ => {}
        }
        if cacheable(&request.method) && !pool {
            let credential = self.sessions.get(session_id).map_or([0; 32], |s| s.credential);
            let now = self.ctx.now;
            let cache = &mut self.modern.upstreams.cache;
            if let Some(result) = cache.get(now, server, &request.method, &request.params, credential) {
                return self.answer_later(proxy_id, Ok(for_a_2025_client(result)));
            }
            let kept = (request.method.clone(), request.params.clone(), credential);
            self.modern.upstreams.cacheable.insert(proxy_id, kept);
        }
        // A 2025 server may log what it likes until the client sets a level; a 2026 server logs
        // only at the level a request names: until then, every level.
        // (The proxy's own requests for a pool want none.)
        let level = match pool {
            true => client.log_level.as_deref(),
            false => Some(client.log_level.as_deref().unwrap_or(DEFAULT_LOG_LEVEL)),
        };
        let meta = envelope_for(&client.initialize, level);
        if ASKING.contains(&request.method.as_str()) {
            let carried = self.modern.upstreams.sent.get(&proxy_id).map_or(0, |(_, rounds)| *rounds);
            self.modern.upstreams.sent.insert(proxy_id, (request.clone(), carried));
        }
        wrap(&mut request, &meta);
        self.send_upstream(upstream, &Message::Request(request));
        self.sweep_requests();
    }

    /// Forgets what is kept for requests no longer in flight (timed out, cancelled, their
    /// upstream gone), once there are enough of them to look.
    fn sweep_requests(&mut self) {
        const LOOK_ABOVE: usize = 256;
        let upstreams = &mut self.modern.upstreams;
        if upstreams.sent.len() + upstreams.cacheable.len() > LOOK_ABOVE {
            let pending = &self.pending;
            upstreams.sent.retain(|id, _| pending.get(*id).is_some());
            upstreams.cacheable.retain(|id, _| pending.get(*id).is_some());
        }
    }

    /// A 2026 upstream answered a 2025 client's request: a question for the client becomes
    /// an input round; anything else reaches the client without the new revision's fields.
    /// Returns the response to deliver, if it is to be delivered now.
    pub(crate) fn modern_upstream_answer(
        &mut self,
        pending: &PendingRequest,
        mut response: Response,
    ) -> Option<Response> {
        let sent = self.modern.upstreams.sent.remove(&pending.id);
        if let (Some((method, params, credential)), Ok(result)) =
            (self.modern.upstreams.cacheable.remove(&pending.id), &response.outcome)
        {
            let now = self.ctx.now;
            self.modern.upstreams.cache.put(now, pending.server, &method, &params, credential, result);
        }
        if let Ok(result) = &mut response.outcome {
            if result.get("resultType").and_then(Value::as_str) == Some("input_required") {
                let Some((request, rounds)) = sent else {
                    let error = ErrorObject::new(codes::INTERNAL_ERROR, "the server asked for input where it may not");
                    return Some(Response::error(response.id, error));
                };
                self.upstream_round(pending, request, rounds, result.clone());
                return None;
            }
            *result = for_a_2025_client(std::mem::take(result));
        }
        Some(response)
    }

    /// Hands a server's questions to its 2025 client as server→client requests.
    fn upstream_round(&mut self, pending: &PendingRequest, request: Request, rounds: u32, result: Value) {
        let fail = |proxy: &mut Proxy, message: &str| {
            let error = ErrorObject::new(codes::INTERNAL_ERROR, message);
            proxy.deliver_response(pending, Response::error(Some(pending.original_id.clone()), error));
        };
        if self.store.keeps_client_ids() {
            // At the edge nothing outlives a request: the client's answer would come in another
            // one, with nothing left to carry the server's state on.
            return fail(
                self,
                "the server asked for input mid-call; through the edge only a 2026-07-28 client can answer it",
            );
        }
        if rounds >= MAX_ROUNDS {
            return fail(
                self,
                &format!("the server kept asking for input ({MAX_ROUNDS} rounds); the call is given up"),
            );
        }
        let questions = result.get("inputRequests").and_then(Value::as_object).cloned().unwrap_or_default();
        const ASKABLE: [&str; 3] = [mcp::SAMPLING_CREATE_MESSAGE, mcp::ELICITATION_CREATE, mcp::ROOTS_LIST];
        if questions.values().any(|q| !q.get("method").and_then(Value::as_str).is_some_and(|m| ASKABLE.contains(&m))) {
            return fail(self, "the server asked its client something a client cannot be asked");
        }
        self.modern.upstreams.next_round += 1;
        let number = self.modern.upstreams.next_round;
        let state = result.get("requestState").cloned();
        let unanswered: BTreeSet<String> = questions.keys().cloned().collect();
        self.modern.upstreams.rounds.insert(
            number,
            Round { pending: pending.clone(), request, state, answers: Map::new(), unanswered, rounds: rounds + 1 },
        );
        if questions.is_empty() {
            // Only a state: the server asks to be asked again later.
            return self.ctx.timers.set(self.ctx.now.after(RETRY_LATER), Timer::AskAgain(number));
        }
        for (key, question) in questions {
            self.modern.upstreams.next_ask += 1;
            let ask = self.modern.upstreams.next_ask;
            self.modern.upstreams.asks.insert(ask, (number, key));
            let method = question.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
            let request = Request {
                id: RequestId::String(format!("{ASK_PREFIX}{ask}")),
                method,
                params: question.get("params").cloned(),
            };
            self.route_to_session(&pending.session, &Message::Request(request));
        }
    }

    /// A 2025 client answered one of a server's questions; true if it was one.
    pub(crate) fn modern_upstream_input(&mut self, response: &Response) -> bool {
        let number = match &response.id {
            Some(RequestId::String(id)) => id.strip_prefix(ASK_PREFIX).and_then(|n| n.parse::<u64>().ok()),
            _ => None,
        };
        let Some((round, key)) = number.and_then(|n| self.modern.upstreams.asks.remove(&n)) else {
            return false;
        };
        let Some(state) = self.modern.upstreams.rounds.get_mut(&round) else {
            return true;
        };
        match &response.outcome {
            Ok(answer) => {
                state.answers.insert(key.clone(), answer.clone());
                state.unanswered.remove(&key);
            }
            Err(error) => {
                // The client could not answer: the call fails with its reason.
                if let Some(round) = self.modern.upstreams.rounds.remove(&round) {
                    let error = ErrorObject::new(
                        error.code,
                        format!("the client could not give the server its input: {}", error.message),
                    );
                    let pending = round.pending;
                    self.deliver_response(&pending, Response::error(Some(pending.original_id.clone()), error));
                }
                return true;
            }
        }
        if state.unanswered.is_empty() {
            self.ask_again(round);
        }
        true
    }

    /// Asks the server again with the client's answers and the server's state.
    pub(crate) fn ask_again(&mut self, round: u64) {
        let Some(round) = self.modern.upstreams.rounds.remove(&round) else {
            return;
        };
        let mut request = round.request;
        if let Some(params) = params_object(&mut request.params) {
            params.insert("inputResponses".into(), Value::Object(round.answers));
            match round.state {
                Some(state) => params.insert("requestState".into(), state),
                None => params.remove("requestState"),
            };
        } else {
            let mut params = Map::new();
            params.insert("inputResponses".into(), Value::Object(round.answers));
            if let Some(state) = round.state {
                params.insert("requestState".into(), state);
            }
            request.params = Some(Value::Object(params));
        }
        request.id = round.pending.original_id.clone();
        let now = self.ctx.now;
        let pending = round.pending;
        if let Some(proxy_id) =
            self.forward_to(now, &pending.session, pending.server, pending.reply_to, request.clone())
        {
            if let Some((_, rounds)) = self.modern.upstreams.sent.get_mut(&proxy_id) {
                *rounds = round.rounds;
            }
        }
    }

    /// Opens (or opens again) the one upstream listen of a 2025 client's session, with what
    /// the server offers and what the client subscribed to.
    pub(crate) fn upstream_listen(&mut self, now: crate::time::Instant, upstream: UpstreamId) {
        if !self.store.keeps_client_ids() {
            return self.open_upstream_listen(now, upstream, false);
        }
        // At the edge nothing outlives its request: the listen is open only while the client
        // listens on its GET stream (see `edge_upstream_listen`).
        let listening =
            self.modern.upstreams.clients.get(&upstream).and_then(|c| self.sessions.get(&c.session)).is_some_and(|s| {
                matches!(s.transport, crate::state::session::Transport::Streamable { standalone: Some(_), .. })
            });
        if listening {
            self.open_upstream_listen(now, upstream, true);
        }
    }

    /// At the edge, a 2025 client's GET stream on a 2026 server: an upstream listen for the
    /// list changes, living exactly as long as that stream (the Worker's request). What the
    /// server offers is not kept between requests, so every list is asked for; the server
    /// honours what it has. Resource subscriptions cannot join it: they arrive in other
    /// requests, so at the edge the server's `resources.subscribe` is not offered.
    pub(crate) fn edge_upstream_listen(&mut self, session_id: &SessionId, server: ServerId, upstream: UpstreamId) {
        let initialize = self.sessions.get(session_id).and_then(|s| s.initialize_params.clone());
        self.modern
            .upstreams
            .clients
            .entry(upstream)
            .or_insert_with(|| ClientSide::new(session_id, server, initialize, self.ctx.now));
        let now = self.ctx.now;
        self.open_upstream_listen(now, upstream, true);
    }

    fn open_upstream_listen(&mut self, now: crate::time::Instant, upstream: UpstreamId, every_list: bool) {
        let Some(discover) = self.eras.discover(upstream).cloned() else {
            return;
        };
        let Some(client) = self.modern.upstreams.clients.get_mut(&upstream) else {
            return;
        };
        let offers = |section: &str, flag: &str| {
            discover.get("capabilities").and_then(|c| c.get(section)).and_then(|s| s.get(flag)).and_then(Value::as_bool)
                == Some(true)
        };
        let mut filter = Map::new();
        for (key, section) in
            [("toolsListChanged", "tools"), ("promptsListChanged", "prompts"), ("resourcesListChanged", "resources")]
        {
            if every_list || offers(section, "listChanged") {
                filter.insert(key.into(), json!(true));
            }
        }
        if offers("resources", "subscribe") && !client.subscriptions.is_empty() {
            filter.insert("resourceSubscriptions".into(), json!(client.subscriptions));
        }
        let previous = client.listen.take();
        let (session, server) = (client.session.clone(), client.server);
        let meta = envelope_for(&client.initialize, None);
        if let Some(previous) = previous {
            self.cancel_upstream_request(upstream, previous);
        }
        if filter.is_empty() {
            return;
        }
        let pending = PendingRequest {
            id: ProxyRequestId(0),
            session,
            server,
            upstream,
            reply_to: ReplyTo::UpstreamListen,
            original_id: RequestId::String(LISTEN_ID.into()),
            progress: None,
            // A listen lives as long as its session.
            deadline: crate::time::Instant(u64::MAX),
            initialize: false,
            lists_tools: false,
        };
        let proxy_id = self.pending.insert(pending, &mut self.ctx.timers);
        if let Some(client) = self.modern.upstreams.clients.get_mut(&upstream) {
            client.listen = Some(proxy_id);
            client.backoff.started(now);
        }
        let id = self.store.upstream_id(proxy_id, &RequestId::String(LISTEN_ID.into()));
        let params = json!({"notifications": filter, "_meta": meta});
        let listen = Request { id, method: mcp::SUBSCRIPTIONS_LISTEN.into(), params: Some(params) };
        self.send_upstream(upstream, &Message::Request(listen));
    }

    /// Stops a request the proxy sent a 2026 upstream: over HTTP its response stream is
    /// closed, over stdio the server is told (`notifications/cancelled`).
    fn cancel_upstream_request(&mut self, upstream: UpstreamId, proxy_id: ProxyRequestId) {
        let Some(pending) = self.pending.remove(proxy_id, &mut self.ctx.timers) else {
            return;
        };
        let id = self.store.upstream_id(proxy_id, &pending.original_id);
        if self.http.contains(upstream) {
            self.http.cancel_request(&mut self.ctx, upstream, &id);
        } else {
            let params = json!({"requestId": id, "reason": "the proxy listens again"});
            let cancel = Message::Notification(Notification { method: mcp::CANCELLED.into(), params: Some(params) });
            self.send_upstream(upstream, &cancel);
        }
    }

    /// A session's upstream listen ended (the server closed it, or it failed): it is opened
    /// again after a backoff while the session lives.
    pub(crate) fn upstream_listen_ended(&mut self, pending: &PendingRequest) {
        let upstream = pending.upstream;
        let now = self.ctx.now;
        let Some(client) = self.modern.upstreams.clients.get_mut(&upstream) else {
            return;
        };
        if client.listen != Some(pending.id) {
            return;
        }
        client.listen = None;
        let delay = client.backoff.failed(now);
        self.ctx.timers.set(now.after(delay), Timer::Relisten(upstream));
    }

    /// An upstream stops: what the proxy kept for its client goes, its listen with it.
    pub(crate) fn modern_upstream_closed(&mut self, upstream: UpstreamId) {
        self.eras.forget(upstream);
        if let Some(client) = self.modern.upstreams.clients.remove(&upstream) {
            if let Some(listen) = client.listen {
                self.pending.remove(listen, &mut self.ctx.timers);
            }
        }
    }

    /// What a 2025 client of a modern upstream sends without expecting an answer: what the
    /// new revision has no place for is dropped; a cancellation closes the request's stream.
    /// Returns false if the message is not to be sent as it is.
    pub(crate) fn modern_upstream_notification(&mut self, upstream: UpstreamId, notification: &Notification) -> bool {
        match notification.method.as_str() {
            mcp::INITIALIZED | mcp::ROOTS_LIST_CHANGED => false,
            mcp::CANCELLED if self.http.contains(upstream) => {
                if let Some(id) = mcp::cancelled_request_id(&notification.params) {
                    self.http.cancel_request(&mut self.ctx, upstream, &id);
                }
                false
            }
            _ => true,
        }
    }
}

/// A 2026 result without what a 2025 client has no use for (its type, its cache hints).
fn for_a_2025_client(mut result: Value) -> Value {
    if let Some(object) = result.as_object_mut() {
        object.remove("resultType");
        object.remove("ttlMs");
        object.remove("cacheScope");
    }
    result
}

/// Whether a message from a modern upstream is only for the proxy (a listen's
/// acknowledgement).
pub(crate) fn for_the_proxy(message: &Message) -> bool {
    message.method() == Some(mcp::SUBSCRIPTIONS_ACKNOWLEDGED)
}

/// The upstream listen's tag, taken off a notification before a 2025 client sees it.
pub(crate) fn untag(message: Message) -> Message {
    let Message::Notification(mut notification) = message else {
        return message;
    };
    if let Some(meta) = notification.params.as_mut().and_then(|p| p.get_mut("_meta")).and_then(Value::as_object_mut) {
        meta.remove(crate::modern::envelope::SUBSCRIPTION_ID);
    }
    if notification.params.as_ref().and_then(|p| p.get("_meta")).and_then(Value::as_object).is_some_and(Map::is_empty) {
        if let Some(params) = notification.params.as_mut().and_then(Value::as_object_mut) {
            params.remove("_meta");
        }
    }
    Message::Notification(notification)
}
