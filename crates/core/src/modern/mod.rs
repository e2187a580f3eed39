//! MCP 2026-07-28 clients on the Streamable HTTP endpoints, beside 2025 sessions.
//!
//! A 2026 request is self-contained: no `initialize`, no session, every request carries its
//! revision, the client's capabilities and identity in `params._meta`, and server→client
//! requests are gone (a server answers `input_required` instead, and the client retries).
//! Each POST is classified on its own ([`classify`]): `initialize`, sessions and everything
//! unmarked stay on the 2025 path exactly as before; a request in the new envelope is served
//! here, from a pool of children the proxy initialized itself ([`crate::modes::pool`]).
//!
//! - [`classify`]: the era of a POST and the header checks (`-32020`, `-32022`, `-32602`);
//! - [`envelope`]: the `_meta` envelope and the `Mcp-Name` encoding;
//! - [`answers`]: what a 2025 server's answer becomes for a 2026 client (`resultType`,
//!   `serverInfo`, `ttlMs`/`cacheScope`, error codes and statuses) and `server/discover`;
//! - [`mrtr`]: a child's sampling, elicitation and roots requests become `input_required`
//!   rounds, and the retries carry the client's input back to the waiting child;
//! - [`listen`]: `subscriptions/listen` streams fed by the pool's children;
//! - [`merged`]: the aggregator's merged endpoint for 2026 clients.

pub(crate) mod answers;
pub(crate) mod cache;
pub(crate) mod capabilities;
pub(crate) mod classify;
pub(crate) mod envelope;
pub(crate) mod listen;
pub(crate) mod merged;
pub(crate) mod mrtr;
pub(crate) mod params;
pub(crate) mod upstream;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::codes;
use crate::ids::{ExchangeId, ProxyRequestId, ServerId, SessionId};
use crate::modes::pool::{Need, Waiter};
use crate::proxy::{Caller, Proxy};
use crate::route::Target;
use crate::state::exchange::{Exchange, ExchangeKind, PostState};
use crate::state::pending::ReplyTo;
use crate::time::Instant;
use crate::wire::http::{Header, HttpRequest, ResponseHead};
use crate::wire::jsonrpc::{param, ErrorObject, Message, Notification, Request, RequestId, Response};
use crate::wire::mcp;

pub(crate) use classify::{classify, Era, ModernCall};
use envelope::Envelope;

/// The methods a 2026 client may call (anything else is `-32601`, HTTP 404).
const METHODS: [&str; 10] = [
    mcp::TOOLS_CALL,
    mcp::TOOLS_LIST,
    mcp::PROMPTS_GET,
    mcp::PROMPTS_LIST,
    mcp::RESOURCES_LIST,
    mcp::RESOURCE_TEMPLATES_LIST,
    mcp::RESOURCES_READ,
    mcp::COMPLETION_COMPLETE,
    mcp::SERVER_DISCOVER,
    mcp::SUBSCRIPTIONS_LISTEN,
];

/// Methods whose server may ask the client something while it runs (and so may answer
/// `input_required`): their child serves them alone.
const INTERACTIVE: [&str; 3] = [mcp::TOOLS_CALL, mcp::PROMPTS_GET, mcp::RESOURCES_READ];

/// A 2026 request on its way to a child (or waiting for one).
#[derive(Debug)]
pub(crate) struct ModernWait {
    /// The client's exchange.
    pub(crate) exchange: ExchangeId,
    /// Headers every response on it carries (CORS).
    pub(crate) cors: Vec<Header>,
    /// The endpoint's target and the servers the credential opens.
    pub(crate) caller: Caller,
    /// The request as the client sent it.
    pub(crate) request: Request,
    /// Its envelope.
    pub(crate) envelope: Envelope,
    /// The client accepts an SSE response.
    pub(crate) accepts_sse: bool,
    /// A digest of the client's credential (`input_required` states are bound to it).
    pub(crate) credential: [u8; 32],
    /// The size of its body.
    pub(crate) bytes: usize,
    /// For a retry whose waiting call is gone: the answers to give the child's questions.
    pub(crate) replay: Option<mrtr::Replay>,
    /// `params.name` or `params.uri` as the client sent it (a retry must repeat it).
    pub(crate) name: Option<String>,
    /// The request's `Mcp-Param-*` headers: the name after the prefix, and the value.
    pub(crate) param_headers: Vec<(String, String)>,
    /// The endpoint it came to (a state it is given is bound to it).
    pub(crate) endpoint: Target,
    /// It carries a `requestState` the proxy did not seal, for a server whose revision is not
    /// known yet: served once the server is found to be a 2026 one (its own state then), else
    /// refused as an invalid state.
    pub(crate) foreign_state: bool,
}

/// What a 2026 exchange answers, to shape it.
#[derive(Clone, Debug)]
pub(crate) struct ModernPost {
    /// The server answering (its `serverInfo` goes into results), or `None` on the merged endpoint.
    pub(crate) server: Option<ServerId>,
    /// The method asked.
    pub(crate) method: String,
    /// For `resources/read`: the URI (a "not found" error names it).
    pub(crate) uri: Option<String>,
}

/// What the proxy keeps of a 2026 request while a child serves it.
#[derive(Debug)]
pub(crate) struct InFlight {
    /// The request's envelope: capabilities and log level decide what reaches the client.
    pub(crate) envelope: Envelope,
    /// The client's exchange, while the client waits (not between input rounds).
    pub(crate) exchange: Option<ExchangeId>,
    /// The method and `name`/`uri`, which a retry must repeat.
    pub(crate) method: String,
    pub(crate) name: Option<String>,
    /// The server and the credential the request came with.
    pub(crate) server: ServerId,
    pub(crate) credential: [u8; 32],
    /// Client capabilities the child asked for that this request did not declare: if the call
    /// then fails, the client is told what it lacked (`-32021`).
    pub(crate) missing: Option<Value>,
    /// The endpoint the client called (a state it is given is bound to it).
    pub(crate) endpoint: Target,
}

/// The 2026 side of the proxy: requests in flight on children, waiting input rounds, listen
/// streams.
#[derive(Debug)]
pub(crate) struct Modern {
    pub(crate) in_flight: BTreeMap<ProxyRequestId, InFlight>,
    pub(crate) mrtr: mrtr::Mrtr,
    pub(crate) listens: listen::Listens,
    /// 2025 clients of 2026 upstreams.
    pub(crate) upstreams: upstream::ModernUpstreams,
}

impl Modern {
    /// Nothing in flight; `key` seals `input_required` states.
    pub(crate) fn new(key: &[u8]) -> Modern {
        Modern {
            in_flight: BTreeMap::new(),
            mrtr: mrtr::Mrtr::new(key),
            listens: listen::Listens::default(),
            upstreams: upstream::ModernUpstreams::default(),
        }
    }
}

impl Proxy {
    /// Serves a 2026 POST that passed classification.
    pub(crate) fn modern_post(
        &mut self,
        now: Instant,
        caller: &Caller,
        request: HttpRequest,
        cors: Vec<Header>,
        call: ModernCall,
    ) {
        let exchange = request.exchange;
        let ModernCall { message, envelope } = call;
        let Message::Request(client_request) = message else {
            // The revision defines no notification from a client over HTTP: accepted, dropped.
            return self.ctx.respond(ResponseHead { exchange, status: 202, headers: cors }, Vec::new());
        };
        if !METHODS.contains(&client_request.method.as_str()) {
            let message = format!("Method not found: {} is not a method of revision 2026-07-28", client_request.method);
            let response = Response::error(Some(client_request.id), ErrorObject::new(codes::METHOD_NOT_FOUND, message));
            return self.ctx.refuse_with(exchange, cors, 404, response);
        }
        let name = envelope::named_param(&client_request.method)
            .and_then(|key| param(&client_request.params, key))
            .map(|value| value.as_str().map_or_else(|| value.to_string(), str::to_owned));
        let param_headers = request
            .headers
            .iter()
            .filter_map(|h| {
                let name = h.name.to_ascii_lowercase();
                Some((name.strip_prefix("mcp-param-")?.to_owned(), h.value.clone()))
            })
            .collect();
        let wait = ModernWait {
            endpoint: caller.target,
            param_headers,
            foreign_state: false,
            name,
            exchange,
            cors,
            caller: caller.clone(),
            accepts_sse: request.accepts("text/event-stream"),
            credential: crate::modes::edge::credential_digest(&request),
            bytes: request.body.len(),
            request: client_request,
            envelope,
            replay: None,
        };
        if wait.request.method == mcp::SUBSCRIPTIONS_LISTEN {
            return self.listen_open(now, wait);
        }
        let mut wait = wait;
        if INTERACTIVE.contains(&wait.request.method.as_str()) {
            if param(&wait.request.params, "requestState").is_some() {
                return self.mrtr_retry(now, wait);
            }
            wait.replay = mrtr::Replay::from_first_request(&wait.request.params);
        }
        self.modern_dispatch(now, wait);
    }

    /// Sends a 2026 request to a child of its server's pool, or holds it until one is free.
    pub(crate) fn modern_dispatch(&mut self, now: Instant, mut wait: ModernWait) {
        let server = match wait.caller.target {
            Target::Server(server) => server,
            Target::Merged => return self.merged_modern(now, wait),
        };
        if wait.foreign_state {
            if !self.revision_known(server) {
                // Children start, and are asked their revision, for what waits.
                self.ensure_pool(now, server);
                return self.wait_for_pool(server, Waiter::Modern(Box::new(wait)));
            }
            if !self.eras.server_is_modern(server) {
                return self.invalid_state(wait);
            }
            wait.foreign_state = false;
        }
        if wait.request.method == mcp::SUBSCRIPTIONS_LISTEN && !self.eras.server_is_modern(server) {
            return self.listen_open(now, wait);
        }
        if wait.request.method == mcp::SERVER_DISCOVER {
            return match self.pool_result(now, server) {
                Some(result) => {
                    let result = answers::discover(&result);
                    let response = Response::result(wait.request.id.clone(), result);
                    self.modern_reply(wait.exchange, wait.cors, 200, response)
                }
                None => self.wait_for_pool(server, Waiter::Modern(Box::new(wait))),
            };
        }
        if wait.request.method == mcp::TOOLS_CALL {
            // Arguments mirrored in `Mcp-Param-*` headers must agree with the body.
            let Some(mirrored) = self.pool_tool_headers(now, server) else {
                return self.wait_for_pool(server, Waiter::Modern(Box::new(wait)));
            };
            if let Err(problem) = params::check(&mirrored, &wait.request.params, &wait.param_headers) {
                let error = ErrorObject::new(codes::HEADER_MISMATCH, format!("Header mismatch: {problem}"));
                return self.modern_reply(wait.exchange, wait.cors, 400, Response::error(Some(wait.request.id), error));
            }
        }
        // A 2026 server asks its client nothing mid-call: its children need not be taken.
        let interactive = INTERACTIVE.contains(&wait.request.method.as_str()) && !self.eras.server_is_modern(server);
        let need = if interactive { Need::Own } else { Need::Any };
        let Some(member) = self.pool_member(now, server, need) else {
            return self.wait_for_pool(server, Waiter::Modern(Box::new(wait)));
        };
        self.modern_forward(now, &member, server, wait, interactive);
    }

    /// Forwards a 2026 request to pool child `member` of `server`.
    pub(crate) fn modern_forward(
        &mut self,
        now: Instant,
        member: &SessionId,
        server: ServerId,
        wait: ModernWait,
        interactive: bool,
    ) {
        let ModernWait {
            exchange,
            cors,
            request,
            envelope,
            accepts_sse,
            credential,
            replay,
            name,
            endpoint,
            param_headers,
            ..
        } = wait;
        let uri = (request.method == mcp::RESOURCES_READ)
            .then(|| param(&request.params, "uri").and_then(Value::as_str).map(str::to_owned))
            .flatten();
        let mut upstream_request = request.clone();
        let member_upstream = self.sessions.get(member).and_then(|s| s.members.first()).map(|m| m.upstream);
        if !member_upstream.is_some_and(|u| self.eras.is_modern(u)) {
            // A 2025 server: the envelope (and an input round's fields) stay with the proxy.
            envelope::strip(&mut upstream_request.params);
        }
        let modern = ModernPost { server: Some(server), method: request.method.clone(), uri };
        self.open_modern_exchange(exchange, member.clone(), cors, accepts_sse, modern);
        if member_upstream.is_some_and(|u| self.eras.is_modern(u)) {
            // The client's `Mcp-Param-*` headers go on with its request, untouched.
            self.eras.forwarding(Some(param_headers));
        }
        let forwarded = self.forward_to(now, member, server, ReplyTo::Exchange(exchange), upstream_request);
        self.eras.forwarding(None);
        let Some(proxy_id) = forwarded else {
            return self.modern_gone(exchange, "the server is not available");
        };
        if interactive {
            self.pool_take(member, proxy_id);
        }
        let method = request.method.clone();
        let in_flight =
            InFlight { envelope, exchange: Some(exchange), method, name, server, credential, missing: None, endpoint };
        self.modern.in_flight.insert(proxy_id, in_flight);
        if let Some(replay) = replay {
            self.modern.mrtr.replaying(proxy_id, replay);
        }
    }

    /// Records the exchange of a 2026 request: answers to it are shaped for the revision.
    pub(crate) fn open_modern_exchange(
        &mut self,
        exchange: ExchangeId,
        session: SessionId,
        cors: Vec<Header>,
        accepts_sse: bool,
        modern: ModernPost,
    ) {
        let mut post = PostState::new(1, false, accepts_sse, false);
        post.modern = Some(Box::new(modern));
        self.exchanges.insert(exchange, Exchange { session, headers: cors, kind: ExchangeKind::Post(post) });
    }

    /// Answers a 2026 exchange with one response, as JSON.
    pub(crate) fn modern_reply(&mut self, exchange: ExchangeId, cors: Vec<Header>, status: u16, response: Response) {
        self.ctx
            .respond(crate::state::exchange::json_head(exchange, status, cors), Message::Response(response).to_bytes());
    }

    /// No child could take a request in time, or its server is gone.
    pub(crate) fn modern_unavailable(&mut self, wait: ModernWait, message: &str) {
        let error = ErrorObject::new(codes::UPSTREAM_CLOSED, message);
        self.modern_reply(wait.exchange, wait.cors, 503, Response::error(Some(wait.request.id), error));
    }

    fn modern_gone(&mut self, exchange: ExchangeId, message: &str) {
        if let Some(Exchange { headers, .. }) = self.exchanges.remove(&exchange) {
            self.ctx.refuse(exchange, headers, 503, &format!("Service Unavailable: {message}"));
        }
    }

    /// A 2026 request is over (answered, failed, cancelled): its child is free again. Returns
    /// the client capabilities its child asked for in vain, if any.
    pub(crate) fn modern_done(&mut self, proxy_id: ProxyRequestId, session: &SessionId) -> Option<Value> {
        let missing = match self.modern.in_flight.remove(&proxy_id) {
            Some(in_flight) => {
                self.modern.mrtr.forget(proxy_id);
                in_flight.missing
            }
            None => None,
        };
        self.pool_release(session, proxy_id);
        missing
    }

    /// The client of a 2026 exchange went away: closing the response stream is how the
    /// revision cancels a request, so the child is told to stop.
    pub(crate) fn modern_abandoned(&mut self, exchange: ExchangeId) {
        let Some(proxy_id) =
            self.modern.in_flight.iter().find(|(_, f)| f.exchange == Some(exchange)).map(|(id, _)| *id)
        else {
            return;
        };
        let Some(pending) = self.take_pending(proxy_id) else {
            return;
        };
        self.modern_done(proxy_id, &pending.session);
        let wire_id = self.store.upstream_id(proxy_id, &pending.original_id);
        let params = serde_json::json!({"requestId": wire_id, "reason": "the client closed its response stream"});
        let cancel = Message::Notification(Notification { method: mcp::CANCELLED.into(), params: Some(params) });
        self.send_upstream(pending.upstream, &cancel);
    }

    /// Shapes an answer for a 2026 client.
    pub(crate) fn modern_shape(&self, modern: &ModernPost, message: Message) -> Message {
        let server_info = modern
            .server
            .and_then(|server| self.pool_initialize_result(server))
            .and_then(|result| result.get("serverInfo").cloned());
        answers::shape(modern, server_info, message)
    }

    /// A log line from a child: a 2026 request gets it only if it asked for logs at that level.
    pub(crate) fn modern_log_target(&self, proxy_id: ProxyRequestId, message: &Message) -> Option<Option<ExchangeId>> {
        let in_flight = self.modern.in_flight.get(&proxy_id)?;
        let Some(wanted) = in_flight.envelope.log_level else {
            return Some(None);
        };
        let level = match message {
            Message::Notification(n) => {
                param(&n.params, "level").and_then(Value::as_str).and_then(envelope::level_rank)
            }
            _ => None,
        };
        Some(level.filter(|level| *level >= wanted).and(in_flight.exchange))
    }

    /// The id a 2026 client gave the request the proxy knows as `proxy_id`.
    pub(crate) fn modern_client_id(&self, proxy_id: ProxyRequestId) -> Option<RequestId> {
        self.pending.get(proxy_id).map(|p| p.original_id.clone())
    }
}
