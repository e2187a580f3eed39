//! Pools of children the proxy initialized itself, one pool per server: they serve what comes
//! without a session — stateless POSTs (`--stateless`) and every 2026-07-28 request.
//!
//! The proxy initializes each child itself (declaring every client capability it can bridge:
//! sampling, elicitation, roots) and answers a client's `initialize` (stateless) or
//! `server/discover` (2026) from the result it cached. Request ids are rewritten, so children
//! are shared safely. A 2026 request that may make its child ask the client something (a
//! tool call, a prompt, a resource read) has its child to itself until it is answered, so
//! whatever the child sends meanwhile belongs to it; when every child is so taken, the pool
//! grows up to its limit, then requests wait (bounded). A child that dies is replaced, with
//! exponential backoff while it keeps dying young.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde_json::{json, Value};

use crate::ids::{ExchangeId, ProxyRequestId, ServerId, SessionId};
use crate::io::LogLevel;
use crate::modern::params::{learn, HeaderMap};
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

/// Requests waiting for a ready child at most, and their bytes; more get 503.
const WAITING_LIMIT: usize = 1024;
const WAITING_BYTES: usize = 64 * 1024 * 1024;

/// One place in a pool.
#[derive(Debug)]
struct Slot {
    /// The child's internal session, while it runs.
    session: Option<SessionId>,
    ready: bool,
    /// The 2026 request that has this child to itself, if any.
    busy: Option<ProxyRequestId>,
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

/// Something waiting for a child of a pool.
#[derive(Debug)]
pub(crate) enum Waiter {
    /// A stateless POST.
    Stateless(WaitingPost),
    /// A 2026 request.
    Modern(Box<crate::modern::ModernWait>),
}

impl Waiter {
    fn exchange(&self) -> ExchangeId {
        match self {
            Waiter::Stateless(post) => post.exchange,
            Waiter::Modern(wait) => wait.exchange,
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Waiter::Stateless(post) => post.bytes,
            Waiter::Modern(wait) => wait.bytes,
        }
    }

    fn refuse(self, proxy: &mut Proxy, message: &str) {
        match self {
            Waiter::Stateless(post) => proxy.ctx.refuse(post.exchange, post.cors, 503, message),
            Waiter::Modern(wait) => proxy.modern_unavailable(*wait, message),
        }
    }
}

/// A pool child's upstream session, as a shell may keep it between requests: the Worker keeps
/// them per isolate, and the next request's core adopts them instead of initializing new ones.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSession {
    /// The server's name.
    pub server: String,
    /// The upstream's session id, if it gave one.
    pub session: Option<String>,
    /// The revision it speaks.
    pub protocol: Option<String>,
    /// Its `initialize` result.
    pub initialize: Value,
}

/// One server's children and what waits for them.
#[derive(Debug, Default)]
struct Pool {
    slots: Vec<Slot>,
    /// The `initialize` result of the first child that answered.
    initialize_result: Option<Value>,
    waiting: VecDeque<Waiter>,
    waiting_bytes: usize,
    /// Which tool arguments are mirrored in `Mcp-Param-*` headers, once known.
    headers: Option<HeaderMap>,
    /// The pages of `tools/list` read so far while the proxy asks for them.
    scanning: Option<HeaderMap>,
    /// Why the last child that would not serve refused, told to what waits for it.
    refusal: Option<String>,
}

/// Every server's pool.
#[derive(Debug, Default)]
pub(crate) struct Pools {
    by_server: BTreeMap<ServerId, Pool>,
}

/// What a request needs of a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// Any ready child (it will not ask the client anything).
    Any,
    /// A ready child with no other request that may ask the client something.
    Own,
}

impl Proxy {
    /// The remote upstream sessions of the pools' ready children (see [`PoolSession`]).
    pub fn pool_sessions(&self) -> Vec<PoolSession> {
        let mut kept = Vec::new();
        for (server, pool) in &self.pools.by_server {
            let (Some(entry), Some(initialize)) = (self.ctx.config.servers.get(*server), &pool.initialize_result)
            else {
                continue;
            };
            for slot in pool.slots.iter().filter(|slot| slot.ready) {
                let upstream = slot.session.as_ref().and_then(|s| self.sessions.get(s)).and_then(|s| s.members.first());
                let Some(upstream) = upstream.map(|m| m.upstream).filter(|u| self.http.contains(*u)) else {
                    continue;
                };
                if self.eras.is_modern(upstream) {
                    // A 2026 server has no session to keep: the next request asks it afresh.
                    continue;
                }
                let (session, protocol) = self.http.session_of(upstream);
                kept.push(PoolSession {
                    server: entry.name.clone(),
                    session,
                    protocol,
                    initialize: initialize.clone(),
                });
            }
        }
        kept
    }

    /// Adopts a pool child's upstream session kept from an earlier request: it serves at once,
    /// and is initialized again (with the proxy's own parameters) if the upstream forgot it.
    pub fn adopt_pool_session(&mut self, kept: PoolSession) {
        let Some(server) = crate::route::server_named(&self.ctx.config, &kept.server) else {
            return;
        };
        if self.pools.by_server.get(&server).is_some_and(|p| p.slots.len() >= self.pool_max()) {
            return;
        }
        let now = self.ctx.now;
        let pool = self.pools.by_server.entry(server).or_default();
        pool.slots.push(Slot { session: None, ready: true, busy: None, backoff: Backoff::restart(now) });
        pool.initialize_result.get_or_insert(kept.initialize);
        let slot = pool.slots.len() - 1;
        let session =
            self.open_session(Target::Server(server), &[server], SessionState::Ready, Transport::Pool { server, slot });
        if let Some(entry) = self.pools.by_server.get_mut(&server).and_then(|p| p.slots.get_mut(slot)) {
            entry.session = Some(session.clone());
        }
        if let Some(upstream) = self.sessions.get(&session).and_then(|s| s.members.first()).map(|m| m.upstream) {
            self.http.resume(upstream, kept.session, kept.protocol, Some(pool_initialize_params()));
        }
    }

    /// Starts the stateless pool of the bridge: every child at once.
    pub(crate) fn start_pool(&mut self, now: Instant) {
        let size = self.ctx.config.stateless_pool_size.max(1);
        for _ in 0..size {
            self.add_pool_slot(now, ServerId::FIRST);
        }
    }

    /// The most children a server's pool may have.
    fn pool_max(&self) -> usize {
        self.ctx.config.modern_pool_max.max(self.ctx.config.stateless_pool_size).max(1)
    }

    /// Adds a child to `server`'s pool.
    fn add_pool_slot(&mut self, now: Instant, server: ServerId) {
        let pool = self.pools.by_server.entry(server).or_default();
        pool.slots.push(Slot { session: None, ready: false, busy: None, backoff: Backoff::restart(now) });
        let slot = pool.slots.len() - 1;
        self.spawn_pool_member(now, server, slot);
    }

    fn spawn_pool_member(&mut self, now: Instant, server: ServerId, slot: usize) {
        let deadline = now.after(Duration::from_millis(self.ctx.config.connection_timeout_ms));
        let session = self.open_session(
            Target::Server(server),
            &[server],
            SessionState::ExpectInitializeResult { deadline },
            Transport::Pool { server, slot },
        );
        if let Some(entry) = self.pools.by_server.get_mut(&server).and_then(|p| p.slots.get_mut(slot)) {
            entry.session = Some(session.clone());
            entry.ready = false;
            entry.busy = None;
            entry.backoff.started(now);
        }
        let request = mcp::initialize_request(RequestId::Number(0), Some(pool_initialize_params()));
        self.forward_request(now, &session, ReplyTo::PoolInitialize, request);
    }

    /// A pool child answered the proxy's `initialize`.
    pub(crate) fn pool_initialized(&mut self, now: Instant, session: &SessionId, response: Response) {
        let Some((server, slot)) = self.pool_slot_of(session) else {
            return;
        };
        match response.outcome {
            Ok(result) => {
                if let Some(pool) = self.pools.by_server.get_mut(&server) {
                    if let Some(entry) = pool.slots.get_mut(slot) {
                        entry.ready = true;
                    }
                    pool.initialize_result.get_or_insert(result);
                    pool.refusal = None;
                }
                self.send_to_session_upstream(session, &mcp::initialized());
                self.ctx.log(LogLevel::Info, format!("pool: child {session} is ready"));
                self.listen_subscribe(now, server);
                self.pump_pool(now, server);
            }
            Err(error) => {
                let message = format!("pool: child {session} refused initialize: {}", error.message);
                self.ctx.log(LogLevel::Error, message);
                // A server restarted as a 2026 one is asked its revision again.
                self.eras.initialize_refused(server, &error);
                if let Some(pool) = self.pools.by_server.get_mut(&server) {
                    pool.refusal = Some(format!("the server refused initialize ({}: {})", error.code, error.message));
                }
                self.end_session(session, &crate::error::RequestError::SessionEnded, "it refused initialize");
            }
        }
    }

    /// A pool child ended: schedule its replacement.
    pub(crate) fn pool_member_ended(&mut self, server: ServerId, slot: usize) {
        let now = self.ctx.now;
        let Some(entry) = self.pools.by_server.get_mut(&server).and_then(|p| p.slots.get_mut(slot)) else {
            return;
        };
        entry.session = None;
        entry.ready = false;
        entry.busy = None;
        let delay = entry.backoff.failed(now);
        self.ctx.log(LogLevel::Warn, format!("pool: replacing child {slot} in {} ms", delay.as_millis()));
        self.ctx.timers.set(now.after(delay), Timer::Respawn(server, slot));
        // With no child running or starting, nothing that waits can be served soon: say so now
        // rather than at the end of the wait.
        let Some(pool) = self.pools.by_server.get_mut(&server) else {
            return;
        };
        if pool.slots.iter().all(|slot| slot.session.is_none()) {
            pool.waiting_bytes = 0;
            let waiting: Vec<Waiter> = pool.waiting.drain(..).collect();
            let why = pool.refusal.take().unwrap_or_else(|| "the server process exited".into());
            let message = format!("Service Unavailable: {why}; it is being started again");
            for waiter in waiting {
                waiter.refuse(self, &message);
            }
        }
    }

    /// The replacement timer of a slot fired.
    pub(crate) fn respawn(&mut self, now: Instant, server: ServerId, slot: usize) {
        let empty =
            self.pools.by_server.get(&server).and_then(|p| p.slots.get(slot)).is_some_and(|s| s.session.is_none());
        if empty && self.ctx.config.servers.get(server).is_some() {
            self.spawn_pool_member(now, server, slot);
        }
    }

    /// The pool and slot of a child's session.
    fn pool_slot_of(&self, session: &SessionId) -> Option<(ServerId, usize)> {
        match self.sessions.get(session).map(|s| &s.transport) {
            Some(Transport::Pool { server, slot }) => Some((*server, *slot)),
            _ => None,
        }
    }

    /// The `initialize` result of `server`'s pool, once a child answered it; starts the pool
    /// if it has no child yet.
    pub(crate) fn pool_result(&mut self, now: Instant, server: ServerId) -> Option<Value> {
        self.ensure_pool(now, server);
        self.pools.by_server.get(&server).and_then(|p| p.initialize_result.clone())
    }

    /// The cached `initialize` result of `server`'s pool, if a child answered it.
    pub(crate) fn pool_initialize_result(&self, server: ServerId) -> Option<&Value> {
        self.pools.by_server.get(&server)?.initialize_result.as_ref()
    }

    /// The ready children of `server`'s pool.
    pub(crate) fn pool_ready_members(&self, server: ServerId) -> Vec<SessionId> {
        let Some(pool) = self.pools.by_server.get(&server) else {
            return Vec::new();
        };
        pool.slots.iter().filter(|slot| slot.ready).filter_map(|slot| slot.session.clone()).collect()
    }

    /// Makes sure `server` has a pool with at least one child.
    /// A pool starts with `--statelessPoolSize` children (so a call that takes one leaves
    /// another ready), and grows to `--modernPoolMax` as calls need them. At the edge, where
    /// a pool lives as long as one request, it starts with one.
    pub(crate) fn ensure_pool(&mut self, now: Instant, server: ServerId) {
        if self.pools.by_server.get(&server).is_none_or(|p| p.slots.is_empty()) {
            let size = match self.store.remembers() {
                true => self.ctx.config.stateless_pool_size.clamp(1, self.pool_max()),
                false => 1,
            };
            for _ in 0..size {
                self.add_pool_slot(now, server);
            }
        }
    }

    /// A ready child of `server`'s pool for a request that needs `need`, taking it for
    /// `busy` when it needs its own; `None` if none is free now (the pool grows if it may).
    pub(crate) fn pool_member(&mut self, now: Instant, server: ServerId, need: Need) -> Option<SessionId> {
        self.ensure_pool(now, server);
        let max = self.pool_max();
        let pool = self.pools.by_server.get(&server)?;
        let in_flight = |session: &SessionId| self.sessions.get(session).map_or(usize::MAX, |s| s.in_flight.len());
        let free = pool
            .slots
            .iter()
            .filter(|slot| slot.ready && (need == Need::Any || slot.busy.is_none()))
            .filter_map(|slot| slot.session.clone())
            .min_by_key(in_flight);
        if free.is_some() {
            return free;
        }
        let starting = pool.slots.iter().any(|slot| slot.session.is_some() && !slot.ready);
        if need == Need::Own && !starting && pool.slots.len() < max {
            self.add_pool_slot(now, server);
        } else if need == Need::Own && pool.slots.len() >= max {
            // Every child is taken: a call that only waits for its client's input gives its
            // child up (its sealed state lets the retry run it again).
            let waiting: Vec<ProxyRequestId> = pool.slots.iter().filter_map(|slot| slot.busy).collect();
            if let Some(oldest) = self.modern_oldest_parked(&waiting) {
                self.mrtr_evict(oldest);
                return self.pool_member(now, server, need);
            }
        }
        None
    }

    /// Marks the child of `session` as serving `proxy_id` alone; if no other child is free
    /// for the next such request, one more is started (up to the limit), so it need not wait
    /// for a child to start.
    pub(crate) fn pool_take(&mut self, session: &SessionId, proxy_id: ProxyRequestId) {
        let Some((server, slot)) = self.pool_slot_of(session) else {
            return;
        };
        let max = self.pool_max();
        let Some(pool) = self.pools.by_server.get_mut(&server) else {
            return;
        };
        if let Some(entry) = pool.slots.get_mut(slot) {
            entry.busy = Some(proxy_id);
        }
        let spare = pool.slots.iter().any(|slot| slot.session.is_some() && slot.busy.is_none());
        // At the edge a pool lives as long as one request: no spare is worth starting.
        if !spare && pool.slots.len() < max && self.store.remembers() {
            let now = self.ctx.now;
            self.add_pool_slot(now, server);
        }
    }

    /// The request a pool child serves alone, if any.
    pub(crate) fn pool_busy_with(&self, session: &SessionId) -> Option<ProxyRequestId> {
        let (server, slot) = self.pool_slot_of(session)?;
        self.pools.by_server.get(&server)?.slots.get(slot)?.busy
    }

    /// A request is over: if a child was its alone, the child is free for what waits.
    pub(crate) fn pool_release(&mut self, session: &SessionId, proxy_id: ProxyRequestId) {
        let Some((server, slot)) = self.pool_slot_of(session) else {
            return;
        };
        let Some(entry) = self.pools.by_server.get_mut(&server).and_then(|p| p.slots.get_mut(slot)) else {
            return;
        };
        if entry.busy == Some(proxy_id) {
            entry.busy = None;
            let now = self.ctx.now;
            self.pump_pool(now, server);
        }
    }

    /// Serves what waits on `server`'s pool, in order, as far as children are free.
    fn pump_pool(&mut self, now: Instant, server: ServerId) {
        let waiting: Vec<Waiter> = match self.pools.by_server.get_mut(&server) {
            Some(pool) => {
                pool.waiting_bytes = 0;
                pool.waiting.drain(..).collect()
            }
            None => return,
        };
        // Their wait timers stay armed and find nothing when they fire.
        for waiter in waiting {
            match waiter {
                Waiter::Stateless(post) => self.dispatch_stateless(now, post),
                Waiter::Modern(wait) => self.modern_dispatch(now, *wait),
            }
        }
    }

    /// Holds `waiter` until a child of `server`'s pool is free (bounded in count, bytes and
    /// time: `--connectionTimeout`).
    pub(crate) fn wait_for_pool(&mut self, server: ServerId, waiter: Waiter) {
        let pool = self.pools.by_server.entry(server).or_default();
        if pool.waiting.len() >= WAITING_LIMIT || pool.waiting_bytes + waiter.bytes() > WAITING_BYTES {
            return waiter.refuse(self, "Service Unavailable: no server process is ready");
        }
        pool.waiting_bytes += waiter.bytes();
        let deadline = self.ctx.now.after(Duration::from_millis(self.ctx.config.connection_timeout_ms));
        self.ctx.timers.set(deadline, Timer::PoolWait(waiter.exchange()));
        pool.waiting.push_back(waiter);
    }

    /// Forgets a waiting request whose client went away.
    pub(crate) fn forget_waiting(&mut self, exchange: ExchangeId) {
        self.take_waiting(exchange);
    }

    fn take_waiting(&mut self, exchange: ExchangeId) -> Option<Waiter> {
        for pool in self.pools.by_server.values_mut() {
            if let Some(index) = pool.waiting.iter().position(|w| w.exchange() == exchange) {
                let waiter = pool.waiting.remove(index)?;
                pool.waiting_bytes -= waiter.bytes();
                return Some(waiter);
            }
        }
        None
    }

    /// A waiting request's time ran out: no child became free.
    pub(crate) fn pool_wait_expired(&mut self, exchange: ExchangeId) {
        if let Some(waiter) = self.take_waiting(exchange) {
            waiter.refuse(self, "Service Unavailable: no server process became ready in time");
        }
    }

    /// Which tool arguments of `server` are mirrored in headers; `None` while the proxy asks
    /// the server's `tools/list` (what waits on the pool is served once it knows).
    pub(crate) fn pool_tool_headers(&mut self, now: Instant, server: ServerId) -> Option<HeaderMap> {
        self.ensure_pool(now, server);
        let pool = self.pools.by_server.get(&server)?;
        if let Some(headers) = &pool.headers {
            return Some(headers.clone());
        }
        if pool.scanning.is_none() {
            if let Some(member) = self.pool_member(now, server, Need::Any) {
                if let Some(pool) = self.pools.by_server.get_mut(&server) {
                    pool.scanning = Some(HeaderMap::new());
                }
                self.scan_tools(now, &member, server, None);
            }
        }
        None
    }

    fn scan_tools(&mut self, now: Instant, member: &SessionId, server: ServerId, cursor: Option<String>) {
        let params = cursor.map(|cursor| json!({"cursor": cursor}));
        let request =
            // Its own id: at the edge requests go upstream under their ids, and the proxy's
            // others (its listen) must not be taken for this one.
            crate::wire::jsonrpc::Request { id: RequestId::String("mcp-proxy-tools".into()), method: mcp::TOOLS_LIST.into(), params };
        if self.forward_to(now, member, server, ReplyTo::ToolScan(server), request).is_none() {
            self.pool_tools_scanned(server, member, Err(()));
        }
    }

    /// A page of the proxy's own `tools/list` came back.
    pub(crate) fn pool_tools_scanned(&mut self, server: ServerId, member: &SessionId, page: Result<Value, ()>) {
        let now = self.ctx.now;
        let Some(pool) = self.pools.by_server.get_mut(&server) else {
            return;
        };
        let mut map = pool.scanning.take().unwrap_or_default();
        let next = match &page {
            Ok(result) => {
                learn(&mut map, result);
                result.get("nextCursor").and_then(Value::as_str).map(str::to_owned)
            }
            // A server that cannot list its tools has none to check.
            Err(()) => None,
        };
        match next {
            Some(cursor) if map.len() < 100_000 => {
                pool.scanning = Some(map);
                self.scan_tools(now, member, server, Some(cursor));
            }
            _ => {
                pool.headers = Some(map);
                self.pump_pool(now, server);
            }
        }
    }

    /// `server`'s tool list changed: what is mirrored in headers is asked again when needed.
    pub(crate) fn pool_forget_tools(&mut self, server: ServerId) {
        if let Some(pool) = self.pools.by_server.get_mut(&server) {
            pool.headers = None;
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
        let Some(result) = self.pools.by_server.get(&ServerId::FIRST).and_then(|p| p.initialize_result.clone()) else {
            return self.wait_for_pool(ServerId::FIRST, Waiter::Stateless(post));
        };
        if let [Message::Request(request)] = post.messages.as_slice() {
            if request.method == mcp::INITIALIZE {
                let result = negotiate(result, &request.params);
                let body = Message::Response(Response::result(request.id.clone(), result)).to_bytes();
                return self.ctx.respond(json_head(post.exchange, 200, post.cors), body);
            }
        }
        let Some(member) = self.pool_member(now, ServerId::FIRST, Need::Any) else {
            return self.wait_for_pool(ServerId::FIRST, Waiter::Stateless(post));
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
}

/// What the proxy declares when it initializes a pool child: every client capability it can
/// bridge to a 2026 client (through `input_required`), so the tools that need them exist.
fn pool_initialize_params() -> Value {
    let mut params = mcp::proxy_initialize_params();
    params["capabilities"] = json!({"sampling": {}, "elicitation": {"form": {}, "url": {}}, "roots": {}});
    params
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
