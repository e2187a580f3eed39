//! Stateless mode: a pool of initialized children serves every POST, with no sessions.
//!
//! The proxy initializes each child itself and answers clients' `initialize` from the
//! result it cached. Requests go to the ready child with the fewest in flight; their ids
//! are rewritten, so children are shared safely. A child that dies is replaced, with
//! exponential backoff while it keeps dying young.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::Value;

use crate::ids::{ExchangeId, SessionId};
use crate::io::LogLevel;
use crate::proxy::Proxy;
use crate::route::Target;
use crate::state::exchange::{json_head, Exchange, ExchangeKind, PostState};
use crate::state::pending::ReplyTo;
use crate::state::session::{SessionState, Transport};
use crate::state::timers::Timer;
use crate::time::Instant;
use crate::upstream::backoff::Backoff;
use crate::wire::http::{Header, ResponseHead};
use crate::wire::jsonrpc::{Message, RequestId, Response};
use crate::wire::mcp;

/// POSTs waiting for a ready child at most, and their bytes; more get 503.
const WAITING_LIMIT: usize = 1024;
const WAITING_BYTES: usize = 64 * 1024 * 1024;

/// One place in the pool.
#[derive(Debug)]
struct Slot {
    /// The child's internal session, while it runs.
    session: Option<SessionId>,
    ready: bool,
    /// When to replace it after it dies.
    backoff: Backoff,
}

/// A stateless POST (waiting, if it arrived before any child was ready).
#[derive(Debug)]
pub(crate) struct WaitingPost {
    pub(crate) exchange: ExchangeId,
    pub(crate) cors: Vec<Header>,
    pub(crate) messages: Vec<Message>,
    pub(crate) batch: bool,
    pub(crate) accepts_sse: bool,
    /// The size of its body.
    pub(crate) bytes: usize,
}

/// The children of stateless mode and what waits for them.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    slots: Vec<Slot>,
    /// The `initialize` result of the first child that answered.
    initialize_result: Option<Value>,
    waiting: VecDeque<WaitingPost>,
    waiting_bytes: usize,
}

impl Proxy {
    /// Starts every child of the pool.
    pub(crate) fn start_pool(&mut self, now: Instant) {
        let size = self.ctx.config.stateless_pool_size.max(1);
        self.pool.slots =
            (0..size).map(|_| Slot { session: None, ready: false, backoff: Backoff::restart(now) }).collect();
        for slot in 0..self.pool.slots.len() {
            self.spawn_pool_member(now, slot);
        }
    }

    fn spawn_pool_member(&mut self, now: Instant, slot: usize) {
        let deadline = now.after(Duration::from_millis(self.ctx.config.connection_timeout_ms));
        let session = self.open_session(
            Target::Server(0),
            &[0],
            SessionState::ExpectInitializeResult { deadline },
            Transport::Pool { slot },
        );
        if let Some(entry) = self.pool.slots.get_mut(slot) {
            entry.session = Some(session.clone());
            entry.ready = false;
            entry.backoff.started(now);
        }
        let request = mcp::initialize_request(RequestId::Number(0), Some(mcp::proxy_initialize_params()));
        self.forward_request(now, &session, ReplyTo::PoolInitialize, request);
    }

    /// A pool child answered the proxy's `initialize`.
    pub(crate) fn pool_initialized(&mut self, now: Instant, session: &SessionId, response: Response) {
        let Some(slot) = self.pool.slots.iter_mut().find(|s| s.session.as_ref() == Some(session)) else {
            return;
        };
        match response.outcome {
            Ok(result) => {
                slot.ready = true;
                self.pool.initialize_result.get_or_insert(result);
                self.send_to_session_upstream(session, &mcp::initialized());
                self.ctx.log(LogLevel::Info, format!("stateless pool: child {session} is ready"));
                let waiting: Vec<WaitingPost> = self.pool.waiting.drain(..).collect();
                self.pool.waiting_bytes = 0;
                for post in waiting {
                    self.dispatch_stateless(now, post);
                }
            }
            Err(error) => {
                let message = format!("stateless pool: child {session} refused initialize: {}", error.message);
                self.ctx.log(LogLevel::Error, message);
                self.end_session(session, &crate::error::RequestError::SessionEnded, "it refused initialize");
            }
        }
    }

    /// A pool child ended: schedule its replacement.
    pub(crate) fn pool_member_ended(&mut self, slot: usize) {
        let now = self.ctx.now;
        let Some(entry) = self.pool.slots.get_mut(slot) else {
            return;
        };
        entry.session = None;
        entry.ready = false;
        let delay = entry.backoff.failed(now);
        self.ctx.log(LogLevel::Warn, format!("stateless pool: replacing child {slot} in {} ms", delay.as_millis()));
        self.ctx.timers.set(now.after(delay), Timer::Respawn(slot));
    }

    /// The replacement timer of a slot fired.
    pub(crate) fn respawn(&mut self, now: Instant, slot: usize) {
        if self.pool.slots.get(slot).is_some_and(|s| s.session.is_none()) {
            self.spawn_pool_member(now, slot);
        }
    }

    /// Forgets a waiting POST whose client went away.
    pub(crate) fn forget_waiting(&mut self, exchange: ExchangeId) {
        if let Some(index) = self.pool.waiting.iter().position(|post| post.exchange == exchange) {
            if let Some(post) = self.pool.waiting.remove(index) {
                self.pool.waiting_bytes -= post.bytes;
            }
        }
    }

    /// Serves a parsed stateless POST.
    pub(crate) fn stateless_post(&mut self, now: Instant, post: WaitingPost) {
        if post.batch && post.messages.iter().any(|m| m.method() == Some(mcp::INITIALIZE)) {
            let message = "Bad Request: initialize must be sent alone, not in a batch";
            return self.ctx.refuse(post.exchange, post.cors, 400, message);
        }
        self.dispatch_stateless(now, post);
    }

    fn dispatch_stateless(&mut self, now: Instant, post: WaitingPost) {
        let Some(result) = self.pool.initialize_result.clone() else {
            return self.wait_for_pool(post);
        };
        if let [Message::Request(request)] = post.messages.as_slice() {
            if request.method == mcp::INITIALIZE {
                let result = negotiate(result, &request.params);
                let body = Message::Response(Response::result(request.id.clone(), result)).to_bytes();
                return self.ctx.respond(json_head(post.exchange, 200, post.cors), body);
            }
        }
        let member = self
            .pool
            .slots
            .iter()
            .filter(|slot| slot.ready)
            .filter_map(|slot| slot.session.clone())
            .min_by_key(|session| self.sessions.get(session).map_or(usize::MAX, |s| s.in_flight.len()));
        let Some(member) = member else {
            return self.wait_for_pool(post);
        };
        // The proxy initialized the child itself; the client's own `initialized` has no place.
        let messages: Vec<Message> =
            post.messages.into_iter().filter(|m| m.method() != Some(mcp::INITIALIZED)).collect();
        let requests = self.forward_from_client(now, &member, ReplyTo::Exchange(post.exchange), messages);
        if requests == 0 {
            return self
                .ctx
                .respond(ResponseHead { exchange: post.exchange, status: 202, headers: post.cors }, Vec::new());
        }
        let state = PostState::new(requests, post.batch, post.accepts_sse, false);
        self.exchanges
            .insert(post.exchange, Exchange { session: member, headers: post.cors, kind: ExchangeKind::Post(state) });
    }

    fn wait_for_pool(&mut self, post: WaitingPost) {
        if self.pool.waiting.len() >= WAITING_LIMIT || self.pool.waiting_bytes + post.bytes > WAITING_BYTES {
            return self.ctx.refuse(post.exchange, post.cors, 503, "Service Unavailable: no server process is ready");
        }
        self.pool.waiting_bytes += post.bytes;
        let deadline = self.ctx.now.after(Duration::from_millis(self.ctx.config.connection_timeout_ms));
        self.ctx.timers.set(deadline, Timer::PoolWait(post.exchange));
        self.pool.waiting.push_back(post);
    }

    /// A waiting POST's time ran out: no child became ready.
    pub(crate) fn pool_wait_expired(&mut self, exchange: ExchangeId) {
        let Some(index) = self.pool.waiting.iter().position(|post| post.exchange == exchange) else {
            return;
        };
        if let Some(post) = self.pool.waiting.remove(index) {
            self.pool.waiting_bytes -= post.bytes;
            self.ctx.refuse(
                post.exchange,
                post.cors,
                503,
                "Service Unavailable: no server process became ready in time",
            );
        }
    }
}

/// Answers a client's `initialize` from the cached result, in the revision the client asked
/// for when the proxy supports it.
pub(crate) fn negotiate(mut result: Value, params: &Option<Value>) -> Value {
    let requested = crate::wire::jsonrpc::param(params, "protocolVersion")
        .and_then(Value::as_str)
        .filter(|v| mcp::is_supported_version(v));
    if let (Some(version), Some(object)) = (requested, result.as_object_mut()) {
        object.insert("protocolVersion".into(), Value::from(version));
    }
    result
}
