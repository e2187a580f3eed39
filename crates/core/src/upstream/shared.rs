//! Shared upstreams: one child (or remote session) of a server serves every client session.
//!
//! A server with `options.shareUpstream` gets one upstream for all its sessions instead of
//! one each. The proxy initializes it itself, with the parameters of the first client that
//! asked, and answers every later client's `initialize` from the result it cached. Request
//! ids are already the proxy's own (see [`crate::ids::ProxyRequestId`]); progress tokens are
//! rewritten to the proxy id too, so two clients using the same token never collide. What the
//! server sends unasked goes where it belongs: a server request to the client with the newest
//! request in flight, a resource update to the clients that subscribed, other notifications
//! to every attached client. A shared child that dies is started again with backoff, and its
//! clients' sessions go on with the new one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::RequestError;
use crate::ids::{ProxyRequestId, ServerId, SessionId, UpstreamId};
use crate::io::{LogLevel, UpstreamEnd};
use crate::proxy::Proxy;
use crate::state::pending::{PendingRequest, ReplyTo};
use crate::state::timers::Timer;
use crate::upstream::backoff::Backoff;
use crate::wire::jsonrpc::{ErrorObject, Message, Request, RequestId, Response};
use crate::wire::mcp;

/// Requests waiting for a shared upstream to become ready, at most, and their bytes; more are
/// refused.
const WAITING_LIMIT: usize = 1024;
const WAITING_BYTES: usize = 64 * 1024 * 1024;

/// Where a shared upstream is in its life.
#[derive(Debug)]
enum Phase {
    /// Started; nobody asked for `initialize` yet.
    Started,
    /// The proxy's `initialize` is out.
    Initializing,
    /// Initialized: this is the result every client's `initialize` is answered with.
    Ready(Value),
    /// Dead; a new one is due at the respawn timer.
    Down,
}

/// One shared upstream.
#[derive(Debug)]
struct Shared {
    upstream: UpstreamId,
    phase: Phase,
    /// The `initialize` parameters it was (or will be) initialized with: the first client's.
    params: Option<Value>,
    /// Requests that arrived before it was ready, with the id already rewritten, and their size.
    waiting: Vec<(ProxyRequestId, Request)>,
    waiting_bytes: usize,
    /// The client sessions using it.
    attached: BTreeSet<SessionId>,
    /// Resource URIs and the sessions subscribed to them.
    subscriptions: BTreeMap<String, BTreeSet<SessionId>>,
    /// When to start it again after it dies.
    backoff: Backoff,
}

/// Every shared upstream, by server.
#[derive(Debug, Default)]
pub(crate) struct SharedUpstreams {
    by_server: BTreeMap<ServerId, Shared>,
    by_upstream: BTreeMap<UpstreamId, ServerId>,
}

impl SharedUpstreams {
    /// The server whose shared upstream `upstream` is, if it is one.
    pub(crate) fn server_of(&self, upstream: UpstreamId) -> Option<ServerId> {
        self.by_upstream.get(&upstream).copied()
    }
}

impl Proxy {
    /// Whether `server` shares one upstream between its sessions. A 2026-07-28 server has no
    /// session to share: each session's requests are forwarded on their own, as they are to
    /// any 2026 server.
    pub(crate) fn is_shared_server(&self, server: ServerId) -> bool {
        self.ctx.config.servers.get(server).is_some_and(|s| s.options.share_upstream) && !self.may_speak_modern(server)
    }

    /// The upstream a session should use for `server`: a new one of its own, or the shared one.
    pub(crate) fn upstream_for(&mut self, session_id: &SessionId, server: ServerId) -> Option<UpstreamId> {
        if !self.is_shared_server(server) {
            return self.start_upstream(server, Some(session_id));
        }
        if !self.shared.by_server.contains_key(&server) {
            let upstream = self.start_upstream(server, None)?;
            let shared = Shared {
                upstream,
                phase: Phase::Started,
                params: None,
                waiting: Vec::new(),
                waiting_bytes: 0,
                attached: BTreeSet::new(),
                subscriptions: BTreeMap::new(),
                backoff: Backoff::restart(self.ctx.now),
            };
            self.shared.by_server.insert(server, shared);
            self.shared.by_upstream.insert(upstream, server);
        }
        let shared = self.shared.by_server.get_mut(&server)?;
        shared.attached.insert(session_id.clone());
        Some(shared.upstream)
    }

    /// A session stops using an upstream: its own is stopped, a shared one only forgets it.
    pub(crate) fn release_upstream(&mut self, session_id: &SessionId, upstream: UpstreamId) {
        let Some(server) = self.shared.server_of(upstream) else {
            self.upstreams.release(upstream);
            return self.close_upstream(upstream);
        };
        if let Some(shared) = self.shared.by_server.get_mut(&server) {
            shared.attached.remove(session_id);
            for sessions in shared.subscriptions.values_mut() {
                sessions.remove(session_id);
            }
            shared.subscriptions.retain(|_, sessions| !sessions.is_empty());
        }
    }

    /// Stops the shared upstream of a server taken away through the API.
    pub(crate) fn drop_shared(&mut self, server: ServerId) {
        if let Some(shared) = self.shared.by_server.remove(&server) {
            self.shared.by_upstream.remove(&shared.upstream);
            self.fail_shared_requests(shared.upstream, &RequestError::SessionEnded);
            self.close_upstream(shared.upstream);
        }
    }

    /// Sends a request (its id already the proxy's) to a shared upstream, or answers it, or
    /// holds it until the upstream is ready.
    pub(crate) fn send_shared(&mut self, server: ServerId, proxy_id: ProxyRequestId, mut request: Request) {
        if request.method == mcp::INITIALIZE {
            return self.shared_initialize(server, proxy_id, request);
        }
        if mcp::progress_token(&request.params).is_some() {
            mcp::set_progress_token(&mut request.params, proxy_id.0);
        }
        if !self.track_subscription(server, proxy_id, &request) {
            return self.answer_later(proxy_id, Ok(json!({})));
        }
        let Some(shared) = self.shared.by_server.get_mut(&server) else {
            return self.answer_later(proxy_id, Err(RequestError::SessionEnded.to_error_object()));
        };
        match shared.phase {
            Phase::Ready(_) => {
                let upstream = shared.upstream;
                self.send_to_upstream(upstream, &Message::Request(request));
            }
            _ => {
                let size = Message::Request(request.clone()).to_bytes().len();
                if shared.waiting.len() >= WAITING_LIMIT || shared.waiting_bytes + size > WAITING_BYTES {
                    let error =
                        ErrorObject::new(crate::error::codes::UPSTREAM_CLOSED, "the shared server is not ready");
                    return self.answer_later(proxy_id, Err(error));
                }
                shared.waiting_bytes += size;
                shared.waiting.push((proxy_id, request));
            }
        }
    }

    /// A client's `initialize`: answered from the cached result, or once the proxy's own
    /// `initialize` (with the first client's parameters) is answered.
    fn shared_initialize(&mut self, server: ServerId, proxy_id: ProxyRequestId, request: Request) {
        let Some(shared) = self.shared.by_server.get_mut(&server) else {
            return self.answer_later(proxy_id, Err(RequestError::SessionEnded.to_error_object()));
        };
        if let Phase::Ready(result) = &shared.phase {
            let result = crate::modes::pool::negotiate(result.clone(), &request.params);
            return self.answer_later(proxy_id, Ok(result));
        }
        if shared.params.is_none() {
            shared.params.clone_from(&request.params);
        }
        let start = matches!(shared.phase, Phase::Started);
        shared.waiting.push((proxy_id, request));
        if start {
            self.send_shared_initialize(server);
        }
    }

    /// Sends the proxy's own `initialize` to a shared upstream.
    fn send_shared_initialize(&mut self, server: ServerId) {
        let Some(shared) = self.shared.by_server.get_mut(&server) else {
            return;
        };
        shared.phase = Phase::Initializing;
        let upstream = shared.upstream;
        let params = shared.params.clone().unwrap_or_else(mcp::proxy_initialize_params);
        let pending = PendingRequest {
            id: ProxyRequestId(0),
            // No client session owns it: an id no session has.
            session: SessionId::unowned(),
            server,
            upstream,
            reply_to: ReplyTo::SharedInitialize,
            original_id: RequestId::Number(0),
            progress: None,
            deadline: self.ctx.now.after(Duration::from_millis(self.ctx.config.connection_timeout_ms)),
            initialize: false,
            lists_tools: false,
        };
        let proxy_id = self.pending.insert(pending, &mut self.ctx.timers);
        let request =
            Request { id: RequestId::Number(proxy_id.0), method: mcp::INITIALIZE.into(), params: Some(params) };
        self.send_to_upstream(upstream, &Message::Request(request));
    }

    /// The proxy's `initialize` of a shared upstream was answered (or failed, or timed out).
    pub(crate) fn shared_initialized(
        &mut self,
        server: ServerId,
        upstream: UpstreamId,
        outcome: Result<Value, ErrorObject>,
    ) {
        let name = self.server_name(server);
        let Some(shared) = self.shared.by_server.get_mut(&server).filter(|s| s.upstream == upstream) else {
            return;
        };
        let result = match outcome {
            Ok(result) => result,
            Err(error) => {
                self.ctx
                    .log(LogLevel::Error, format!("shared upstream of {name} refused initialize: {}", error.message));
                // Refused as only a 2026 server does: the next sessions find out its revision.
                self.eras.handshake_refused(server, &error);
                return self.shared_down(server, &RequestError::UpstreamClosed(UpstreamEnd::Exited(error.message)));
            }
        };
        shared.phase = Phase::Ready(result.clone());
        let waiting = std::mem::take(&mut shared.waiting);
        shared.waiting_bytes = 0;
        self.send_to_upstream(upstream, &mcp::initialized());
        self.ctx.log(LogLevel::Info, format!("shared upstream of {name} is ready"));
        for (proxy_id, request) in waiting {
            if request.method == mcp::INITIALIZE {
                self.answer_later(proxy_id, Ok(crate::modes::pool::negotiate(result.clone(), &request.params)));
            } else {
                self.send_to_upstream(upstream, &Message::Request(request));
            }
        }
    }

    /// Whether a subscription change must reach the upstream (an `unsubscribe` while other
    /// clients still follow the URI is answered by the proxy).
    fn track_subscription(&mut self, server: ServerId, proxy_id: ProxyRequestId, request: &Request) -> bool {
        let subscribe = match request.method.as_str() {
            mcp::RESOURCES_SUBSCRIBE => true,
            mcp::RESOURCES_UNSUBSCRIBE => false,
            _ => return true,
        };
        let uri = crate::wire::jsonrpc::param(&request.params, "uri").and_then(Value::as_str).map(str::to_owned);
        let session = self.pending.get(proxy_id).map(|p| p.session.clone());
        let (Some(uri), Some(session), Some(shared)) = (uri, session, self.shared.by_server.get_mut(&server)) else {
            return true;
        };
        let followers = shared.subscriptions.entry(uri.clone()).or_default();
        if subscribe {
            followers.insert(session);
            return true;
        }
        followers.remove(&session);
        let others = !followers.is_empty();
        if !others {
            shared.subscriptions.remove(&uri);
        }
        !others
    }

    /// A message from a shared upstream.
    pub(crate) fn shared_message(&mut self, server: ServerId, upstream: UpstreamId, message: Message) {
        match message {
            Message::Response(response) => self.handle_upstream_response(upstream, response),
            Message::Notification(mut notification) if notification.method == mcp::PROGRESS => {
                let pending = match mcp::progress_notification_token(&notification.params) {
                    Some(RequestId::Number(id)) => {
                        self.pending.get(ProxyRequestId(id)).filter(|p| p.upstream == upstream).cloned()
                    }
                    _ => None,
                };
                let Some(pending) = pending else {
                    return;
                };
                if let Some(token) = &pending.progress {
                    mcp::set_progress_notification_token(&mut notification.params, token);
                }
                let message = Message::Notification(notification);
                match pending.reply_to {
                    ReplyTo::Exchange(exchange) if self.send_event(exchange, &message) => {}
                    _ => self.route_to_session(&pending.session, &message),
                }
            }
            Message::Request(request) => match self.newest_asker(server, upstream) {
                Some(session_id) => {
                    let request = self.name_server_request(&session_id, upstream, request);
                    self.route_to_session(&session_id, &Message::Request(request));
                }
                None => {
                    let answer = mcp::answer_unreachable(&request, "no client request is in flight");
                    self.send_to_upstream(upstream, &Message::Response(answer));
                }
            },
            Message::Notification(notification) => {
                let Some(shared) = self.shared.by_server.get(&server) else {
                    return;
                };
                let recipients: Vec<SessionId> = if notification.method == mcp::RESOURCES_UPDATED {
                    let uri = crate::wire::jsonrpc::param(&notification.params, "uri").and_then(Value::as_str);
                    uri.and_then(|uri| shared.subscriptions.get(uri)).into_iter().flatten().cloned().collect()
                } else if notification.method == mcp::MESSAGE {
                    // A log line most likely belongs to the request in flight.
                    match self.newest_asker(server, upstream) {
                        Some(session) => vec![session],
                        None => shared.attached.iter().cloned().collect(),
                    }
                } else {
                    shared.attached.iter().cloned().collect()
                };
                let message = Message::Notification(notification);
                for session in recipients {
                    self.route_to_session(&session, &message);
                }
            }
        }
    }

    /// The attached session with the newest request in flight on `upstream`.
    fn newest_asker(&self, server: ServerId, upstream: UpstreamId) -> Option<SessionId> {
        let shared = self.shared.by_server.get(&server)?;
        shared
            .attached
            .iter()
            .filter_map(|id| {
                let session = self.sessions.get(id)?;
                let newest = session
                    .in_flight
                    .keys()
                    .copied()
                    .filter(|proxy_id| self.pending.get(*proxy_id).is_some_and(|p| p.upstream == upstream))
                    .max()?;
                Some((newest, id))
            })
            .max()
            .map(|(_, id)| id.clone())
    }

    /// A shared upstream ended: what waits on it fails, and it is started again after a backoff.
    pub(crate) fn shared_closed(&mut self, server: ServerId, upstream: UpstreamId, reason: UpstreamEnd) {
        if self.shared.by_server.get(&server).is_none_or(|s| s.upstream != upstream) {
            return;
        }
        let name = self.server_name(server);
        self.ctx.log(LogLevel::Warn, format!("shared upstream of {name} exited: {reason}"));
        self.shared_down(server, &RequestError::UpstreamClosed(reason));
    }

    fn shared_down(&mut self, server: ServerId, error: &RequestError) {
        let now = self.ctx.now;
        let Some(shared) = self.shared.by_server.get_mut(&server) else {
            return;
        };
        let upstream = shared.upstream;
        let waiting = std::mem::take(&mut shared.waiting);
        shared.waiting_bytes = 0;
        shared.phase = Phase::Down;
        let delay = shared.backoff.failed(now);
        self.shared.by_upstream.remove(&upstream);
        for (proxy_id, _) in waiting {
            self.answer_later(proxy_id, Err(error.to_error_object()));
        }
        self.fail_shared_requests(upstream, error);
        self.close_upstream(upstream);
        self.ctx.timers.set(now.after(delay), Timer::SharedRespawn(server));
    }

    /// Fails every request in flight on a shared upstream.
    fn fail_shared_requests(&mut self, upstream: UpstreamId, error: &RequestError) {
        for proxy_id in self.pending.ids_on(upstream) {
            if let Some(pending) = self.take_pending(proxy_id) {
                let response = Response::error(Some(pending.original_id.clone()), error.to_error_object());
                self.deliver_response(&pending, response);
            }
        }
    }

    /// The respawn timer of a dead shared upstream fired: start a new one, initialize it like
    /// the last one, and move its sessions over.
    pub(crate) fn shared_respawn(&mut self, server: ServerId) {
        if self.shared.by_server.get(&server).is_none_or(|s| !matches!(s.phase, Phase::Down)) {
            return;
        }
        if self.ctx.config.servers.get(server).is_none_or(|s| s.options.disabled) {
            self.shared.by_server.remove(&server);
            return;
        }
        let Some(upstream) = self.start_upstream(server, None) else {
            return;
        };
        let Some(shared) = self.shared.by_server.get_mut(&server) else {
            return;
        };
        let old = shared.upstream;
        shared.upstream = upstream;
        shared.phase = Phase::Started;
        shared.backoff.started(self.ctx.now);
        let attached: Vec<SessionId> = shared.attached.iter().cloned().collect();
        let initialize = shared.params.is_some();
        self.shared.by_upstream.insert(upstream, server);
        for session_id in attached {
            if let Some(member) =
                self.sessions.get_mut(&session_id).and_then(|s| s.members.iter_mut().find(|m| m.upstream == old))
            {
                member.upstream = upstream;
            }
        }
        if initialize {
            self.send_shared_initialize(server);
        }
    }

    /// How log lines name a server.
    fn server_name(&self, server: ServerId) -> String {
        self.ctx.config.servers.get(server).map(|s| s.display_name().to_owned()).unwrap_or_default()
    }
}
