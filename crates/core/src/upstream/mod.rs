//! Upstream servers: stdio children and remote HTTP clients, one upstream per session or one
//! shared by all. Messages to and from every kind meet here.

pub(crate) mod backoff;
pub(crate) mod era;
pub(crate) mod http;
pub(crate) mod shared;
pub(crate) mod table;

use crate::config::file::UpstreamConfig;
use crate::error::RequestError;
use crate::ids::ProxyRequestId;
use crate::ids::{ServerId, SessionId, UpstreamId};
use crate::io::{LogLevel, Output, UpstreamEnd};
use crate::policy::env::child_environment;
use crate::proxy::{truncate, Proxy};
use crate::route::Target;
use crate::state::pending::ReplyTo;
use crate::upstream::http::{Connect, HttpEvent};
use crate::wire::jsonrpc::{Message, Payload, RequestId, Response};
use crate::wire::mcp;

impl Proxy {
    pub(crate) fn handle_upstream_message(&mut self, upstream: UpstreamId, data: &[u8]) {
        let shared = self.shared.server_of(upstream);
        let session_id = match (shared, self.upstreams.owner(upstream)) {
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
            if let (true, Message::Notification(notification)) = (self.eras.is_modern(upstream), &message) {
                // A list that changed is not kept any longer.
                if let Some(server) = self.server_of_upstream(upstream) {
                    self.modern.upstreams.list_changed(server, &notification.method);
                }
            }
            let message = match (self.eras.is_modern(upstream), self.is_pool_member(&session_id)) {
                // A 2025 client's session: its upstream listen is the proxy's business.
                (true, false) if crate::modern::upstream::for_the_proxy(&message) => continue,
                (true, false) => crate::modern::upstream::untag(message),
                _ => message,
            };
            match message {
                Message::Response(response) => self.handle_upstream_response(upstream, response),
                Message::Notification(mut notification) if notification.method == mcp::PROGRESS => {
                    let pending = mcp::progress_notification_token(&notification.params)
                        .and_then(|token| self.sessions.get(&session_id)?.progress.get(&token).copied())
                        .and_then(|proxy_id| self.pending.get(proxy_id));
                    // The client's own token (a pool child saw the proxy's); a request that wants
                    // no progress (a retry without a token) hears none.
                    match pending.map(|p| p.progress.as_ref()) {
                        Some(Some(token)) => mcp::set_progress_notification_token(&mut notification.params, token),
                        Some(None) if self.is_pool_member(&session_id) => continue,
                        _ => {}
                    }
                    let target = pending.map(|pending| pending.reply_to);
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
            Some(id) if self.store.keeps_client_ids() => self.pending.find(upstream, id),
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
        let own = matches!(pending.reply_to, ReplyTo::Probe | ReplyTo::UpstreamListen | ReplyTo::Discard);
        if self.eras.is_modern(upstream) && !own && !self.is_pool_member(&pending.session) {
            // A 2025 client's request answered by a 2026 server.
            match self.modern_upstream_answer(&pending, response) {
                Some(answer) => response = answer,
                None => return,
            }
        }
        if let (true, Err(error)) = (pending.initialize, &response.outcome) {
            if self.eras.initialize_refused(pending.server, error) {
                let name = self.upstream_name(upstream);
                self.ctx.log(
                    LogLevel::Info,
                    format!("{name} refused the 2025 handshake; its revision is asked again next time"),
                );
            }
        }
        if let (true, Ok(result)) = (pending.initialize, &response.outcome) {
            if let Some(version) = result.get("protocolVersion").and_then(serde_json::Value::as_str) {
                self.http.set_protocol(upstream, version);
            }
        }
        if let (true, true, Ok(result)) = (pending.lists_tools, self.eras.is_modern(upstream), &response.outcome) {
            self.eras.learn_tools(pending.server, result);
        }
        self.filter_listed_tools(&pending, &mut response);
        self.deliver_response(&pending, response);
    }

    /// A `tools/list` answer loses what the server's tool filter hides (a merged list is
    /// filtered as it is merged): whether the server gave it now or the proxy kept it.
    pub(crate) fn filter_listed_tools(&self, pending: &crate::state::pending::PendingRequest, response: &mut Response) {
        let filter = self.ctx.config.servers.get(pending.server).and_then(|s| s.options.tool_filter.as_ref());
        if let (true, Ok(result), Some(filter)) = (pending.lists_tools, &mut response.outcome, filter) {
            if !matches!(pending.reply_to, ReplyTo::Aggregate(_)) {
                crate::policy::tool_filter::filter_tools(result, filter);
            }
        }
    }

    /// What the HTTP client read: messages go the way of a child's lines, a gone upstream the
    /// way of a child that exited.
    pub(crate) fn handle_http_events(&mut self, events: Vec<HttpEvent>) {
        for event in events {
            match event {
                HttpEvent::Message(upstream, data) => self.handle_upstream_message(upstream, &data),
                HttpEvent::Gone(upstream, reason) => self.handle_upstream_closed(upstream, reason),
            }
        }
    }

    pub(crate) fn handle_upstream_closed(&mut self, upstream: UpstreamId, reason: UpstreamEnd) {
        if let Some(server) = self.shared.server_of(upstream) {
            return self.shared_closed(server, upstream, reason);
        }
        let Some(session_id) = self.upstreams.owner(upstream).cloned() else {
            return;
        };
        if self.sessions.get(&session_id).is_some_and(|s| s.target == Target::Merged) {
            return self.merged_member_closed(&session_id, upstream, reason);
        }
        self.ctx.log(LogLevel::Warn, format!("session {session_id}: the server exited: {reason}"));
        self.end_session(&session_id, &RequestError::UpstreamClosed(reason), "the server exited");
    }

    /// Starts an upstream of `server` (a child, or a remote client) under a new id: the one
    /// place upstreams are allocated.
    pub(crate) fn start_upstream(&mut self, server: ServerId, owner: Option<&SessionId>) -> Option<UpstreamId> {
        let entry = self.ctx.config.servers.get(server)?;
        let config = entry.upstream.clone();
        // One client's credentials must not serve another's requests.
        let forward = entry.options.forward_authorization && !entry.options.share_upstream;
        let public_only = crate::policy::network::entry_reach(entry, &self.ctx.config.allow_runtime_hosts)
            == Some(crate::policy::network::Reach::PublicOnly);
        let upstream = self.upstreams.allocate(owner);
        match config {
            UpstreamConfig::Stdio(mut stdio) => {
                let inherit_all = entry.options.inherit_env || self.ctx.config.pass_environment;
                let secrets = self.ctx.config.secret_values();
                stdio.env = child_environment(&self.ctx.config.environment, inherit_all, &secrets, &stdio.env);
                self.ctx.push(Output::Spawn { upstream, server: stdio });
            }
            remote => {
                let authorization = self.client_authorization(upstream);
                // Reverse mode's `auto`: a Streamable HTTP remote that refuses the POST is tried
                // as legacy SSE.
                let fall_back_to_sse = self
                    .ctx
                    .config
                    .connect
                    .as_ref()
                    .is_some_and(|c| c.transport == crate::config::ConnectTransport::Auto);
                let connect = Connect { forward_authorization: forward, public_only, authorization, fall_back_to_sse };
                self.http.open(&mut self.ctx, upstream, &remote, connect);
            }
        }
        Some(upstream)
    }

    /// The credentials of the client behind `upstream`: its session's latest, or (while its
    /// session is being opened) the request's.
    pub(crate) fn client_authorization(&self, upstream: UpstreamId) -> Option<String> {
        match self.upstreams.owner(upstream).and_then(|id| self.sessions.get(id)) {
            Some(session) => session.client_authorization.clone(),
            None => self.request_authorization.clone(),
        }
    }

    /// Sends a message to one upstream.
    pub(crate) fn send_to_upstream(&mut self, upstream: UpstreamId, message: &Message) {
        self.send_upstream(upstream, message);
    }

    /// Whether `session` is a pool child's (it serves 2026 clients and stateless requests).
    pub(crate) fn is_pool_member(&self, session: &SessionId) -> bool {
        matches!(self.sessions.get(session).map(|s| &s.transport), Some(crate::state::session::Transport::Pool { .. }))
    }

    pub(crate) fn send_upstream(&mut self, upstream: UpstreamId, message: &Message) {
        if let Message::Notification(notification) = message {
            if self.eras.is_modern(upstream) && !self.modern_upstream_notification(upstream, notification) {
                return;
            }
        }
        let data = message.to_bytes();
        if self.logs_upstream(upstream) {
            let session = self.upstreams.owner(upstream).map(SessionId::to_string).unwrap_or_default();
            let name = self.upstream_name(upstream);
            self.ctx.log(LogLevel::Debug, format!("session {session} -> {name}: {}", String::from_utf8_lossy(&data)));
        }
        let params = self.eras.param_headers(self.server_of_upstream(upstream), message);
        if self.http.contains(upstream) {
            let authorization = self.client_authorization(upstream);
            return self.http.send(&mut self.ctx, upstream, message, data, authorization, params);
        }
        self.ctx.push(Output::Send { upstream, data });
    }

    /// Stops an upstream: a child is terminated, a remote session deleted.
    pub(crate) fn close_upstream(&mut self, upstream: UpstreamId) {
        self.modern_upstream_closed(upstream);
        if self.http.contains(upstream) {
            self.http.close(&mut self.ctx, upstream);
        } else {
            self.ctx.push(Output::CloseUpstream(upstream));
        }
    }

    /// The server behind an upstream.
    pub(crate) fn server_of_upstream(&self, upstream: UpstreamId) -> Option<ServerId> {
        if let Some(server) = self.shared.server_of(upstream) {
            return Some(server);
        }
        self.sessions.get(self.upstreams.owner(upstream)?)?.server_of(upstream)
    }

    /// Whether an upstream's traffic is logged: `--debug`, or its server's `logEnabled`.
    pub(crate) fn logs_upstream(&self, upstream: UpstreamId) -> bool {
        self.ctx.config.debug
            || self
                .server_of_upstream(upstream)
                .and_then(|s| self.ctx.config.servers.get(s))
                .is_some_and(|s| s.options.log_enabled)
    }

    /// How log lines name an upstream's server.
    pub(crate) fn upstream_name(&self, upstream: UpstreamId) -> String {
        match self.server_of_upstream(upstream).and_then(|s| self.ctx.config.servers.get(s)) {
            Some(entry) if !entry.name.is_empty() => format!("server {}", entry.display_name()),
            _ => "server".to_owned(),
        }
    }
}
