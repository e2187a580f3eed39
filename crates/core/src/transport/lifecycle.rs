//! Session lifecycle: opening, ending, idling out, and keeping idle streams alive.

use std::time::Duration;

use crate::error::RequestError;
use crate::ids::{ExchangeId, ProxyRequestId, ServerId, SessionId};
use crate::io::LogLevel;
use crate::proxy::Proxy;
use crate::route::Target;
use crate::state::exchange::{Exchange, ExchangeKind};
use crate::state::session::{Member, Session, SessionState, Transport};
use crate::state::timers::Timer;
use crate::upstream::backoff::Backoff;
use crate::wire::jsonrpc::Response;

impl Proxy {
    /// Whether a new client session would exceed `maxSessions`.
    pub(crate) fn at_session_limit(&self) -> bool {
        let clients = self.sessions.values().filter(|s| !matches!(s.transport, Transport::Pool { .. })).count();
        clients >= self.ctx.config.max_sessions
    }

    /// Starts a new session of `target` with its own upstream(s) for `servers` (a child per
    /// server, or the shared one) and returns its id.
    pub(crate) fn open_session(
        &mut self,
        target: Target,
        servers: &[ServerId],
        state: SessionState,
        transport: Transport,
    ) -> SessionId {
        let now = self.ctx.now;
        let id = SessionId::generate(&mut self.ctx.rng);
        let mut members = Vec::with_capacity(servers.len());
        for &server in servers {
            if let Some(upstream) = self.upstream_for(&id, server) {
                members.push(Member { server, upstream, failed: false, backoff: Backoff::rejoin(now) });
            }
        }
        if let SessionState::ExpectInitializeResult { deadline } = state {
            self.ctx.timers.set(deadline, Timer::Connect(id.clone()));
        }
        if matches!(transport, Transport::Streamable { .. }) && self.ctx.config.session_timeout_ms > 0 {
            let at = now.after(Duration::from_millis(self.ctx.config.session_timeout_ms));
            self.ctx.timers.set(at, Timer::Idle(id.clone()));
        }
        let keeps_events = matches!(transport, Transport::Streamable { .. }) && self.events.enabled();
        let mut session = Session::new(target, members, state, transport, now, keeps_events);
        session.client_authorization.clone_from(&self.request_authorization);
        self.sessions.insert(id.clone(), session);
        let label = match target {
            Target::Server(server) => {
                self.ctx.config.servers.get(server).map(|s| s.display_name().to_owned()).filter(|n| !n.is_empty())
            }
            Target::Merged => Some("the merged endpoint".to_owned()),
        };
        let label = label.map(|n| format!(" for {n}")).unwrap_or_default();
        self.ctx.log(LogLevel::Info, format!("session {id}: started{label}"));
        id
    }

    /// Ends a session: fails what is in flight, closes its streams, stops its child.
    pub(crate) fn end_session(&mut self, session_id: &SessionId, error: &RequestError, why: &str) {
        let Some(session) = self.sessions.get(session_id) else {
            return;
        };
        let in_flight: Vec<ProxyRequestId> = session.in_flight.keys().copied().collect();
        for proxy_id in in_flight {
            if let Some(pending) = self.take_pending(proxy_id) {
                let response = Response::error(Some(pending.original_id.clone()), error.to_error_object());
                self.deliver_response(&pending, response);
            }
        }
        let Some(session) = self.sessions.remove(session_id) else {
            return;
        };
        self.events.forget(session_id);
        if let SessionState::ExpectInitializeResult { deadline } = session.state {
            self.ctx.timers.cancel(deadline, &Timer::Connect(session_id.clone()));
        }
        for member in &session.members {
            self.release_upstream(session_id, member.upstream);
        }
        let exchanges: Vec<ExchangeId> = match session.transport {
            Transport::LegacySse { stream } => vec![stream],
            Transport::Streamable { standalone, posts, .. } => standalone.into_iter().chain(posts).collect(),
            Transport::Pool { server, slot } => {
                self.listen_child_gone(session_id);
                self.pool_member_ended(server, slot);
                Vec::new()
            }
            Transport::Stdio => {
                self.stdio_session_ended(session_id);
                Vec::new()
            }
        };
        for exchange_id in exchanges {
            let Some(exchange) = self.exchanges.remove(&exchange_id) else {
                continue;
            };
            match exchange.kind {
                ExchangeKind::Post(post) if post.stream.is_none() => {
                    self.ctx.refuse(exchange_id, exchange.headers, 404, "Session ended");
                }
                ExchangeKind::Post(post) => {
                    if let Some(connection) = post.connection {
                        self.exchanges.remove(&connection);
                        self.ctx.stream_end(connection);
                    }
                }
                _ => self.ctx.stream_end(exchange_id),
            }
        }
        self.ctx.log(LogLevel::Info, format!("session {session_id}: ended ({why})"));
        self.retire_temporary(session.target);
    }

    /// The idle timer of a session fired: end it if the client has gone quiet, else re-arm.
    pub(crate) fn check_idle(&mut self, session_id: SessionId) {
        let timeout = Duration::from_millis(self.ctx.config.session_timeout_ms);
        let Some(session) = self.sessions.get(&session_id) else {
            return;
        };
        let connected = match &session.transport {
            Transport::Streamable { standalone, posts, .. } => standalone.is_some() || !posts.is_empty(),
            _ => true,
        };
        let quiet_since = session.last_activity;
        if connected || !session.in_flight.is_empty() {
            self.ctx.timers.set(self.ctx.now.after(timeout), Timer::Idle(session_id));
        } else if self.ctx.now.since(quiet_since) >= timeout {
            let why = format!("idle for {} s", timeout.as_secs());
            self.end_session(&session_id, &RequestError::SessionEnded, &why);
        } else {
            self.ctx.timers.set(quiet_since.after(timeout), Timer::Idle(session_id));
        }
    }

    /// Arms the keep-alive timer if streams were opened since it last ran out.
    pub(crate) fn arm_keepalive(&mut self) {
        if self.ctx.streams_opened && !self.keepalive_armed && self.ctx.config.keep_alive_ms > 0 {
            self.keepalive_armed = true;
            self.ctx
                .timers
                .set(self.ctx.now.after(Duration::from_millis(self.ctx.config.keep_alive_ms)), Timer::KeepAlive);
        }
        self.ctx.streams_opened = false;
    }

    /// Writes an SSE comment on every open stream, so intermediaries keep them open and
    /// vanished clients are noticed; re-arms while streams remain.
    pub(crate) fn keep_alive(&mut self) {
        self.keepalive_armed = false;
        let open: Vec<ExchangeId> = self
            .exchanges
            .iter()
            .filter(|(id, exchange)| match &exchange.kind {
                ExchangeKind::Post(post) => post.stream.is_some() && post.connection == Some(**id),
                ExchangeKind::Standalone
                | ExchangeKind::LegacyStream
                | ExchangeKind::Resumed { .. }
                | ExchangeKind::Listen => true,
            })
            .map(|(id, _)| *id)
            .collect();
        for exchange in &open {
            self.ctx.stream_data(*exchange, b": keep-alive\n\n".to_vec());
        }
        self.ctx.streams_opened = !open.is_empty();
        self.arm_keepalive();
    }

    pub(crate) fn handle_http_closed(&mut self, exchange_id: ExchangeId) {
        let keeps_events = self.ctx.config.event_store_size > 0;
        // Idle time counts from the end of the client's last activity, a stream included.
        let now = self.ctx.now;
        if let Some(session) = self.exchanges.get(&exchange_id).and_then(|e| self.sessions.get_mut(&e.session)) {
            session.last_activity = now;
        }
        match self.exchanges.get_mut(&exchange_id).map(|e| &mut e.kind) {
            None => return self.forget_waiting(exchange_id),
            // For a 2026 client, closing the response stream cancels the request.
            Some(ExchangeKind::Post(post)) if post.modern.is_some() => {
                self.exchanges.remove(&exchange_id);
                return self.modern_abandoned(exchange_id);
            }
            Some(ExchangeKind::Listen) => {
                self.exchanges.remove(&exchange_id);
                return self.listen_gone(exchange_id);
            }
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
            ExchangeKind::Resumed { .. } | ExchangeKind::Listen => {}
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
}
