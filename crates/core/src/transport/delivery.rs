//! Delivering server messages to clients: POST answers as JSON or SSE, GET streams,
//! the backlog, and resuming a broken stream from the event store.

use crate::ids::{ExchangeId, SessionId};
use crate::io::{LogLevel, Output};
use crate::proxy::Proxy;
use crate::state::event_log::EventId;
use crate::state::exchange::{json_head, sse_head, Exchange, ExchangeKind, PostState};
use crate::state::session::{Transport, STANDALONE_STREAM};
use crate::wire::http::Header;
use crate::wire::jsonrpc::{batch_to_bytes, Message, Response};
use crate::wire::mcp;
use crate::wire::sse;

impl Proxy {
    /// Adds one answer to a POST exchange, finishing it when nothing is outstanding.
    pub(crate) fn answer_post(&mut self, exchange_id: ExchangeId, message: Message) {
        let message = match self.exchanges.get(&exchange_id) {
            Some(Exchange { kind: ExchangeKind::Post(PostState { modern: Some(modern), .. }), .. }) => {
                let modern = modern.clone();
                self.modern_shape(&modern, message)
            }
            _ => message,
        };
        let mut message = Some(message);
        match self.exchanges.get_mut(&exchange_id) {
            Some(Exchange { kind: ExchangeKind::Post(post), .. }) => {
                post.outstanding = post.outstanding.saturating_sub(1);
                if post.stream.is_none() {
                    post.collected.extend(message.take());
                }
            }
            _ => return,
        }
        if let Some(message) = message {
            self.send_event(exchange_id, &message);
        }
        if matches!(self.exchanges.get(&exchange_id), Some(Exchange { kind: ExchangeKind::Post(post), .. }) if post.outstanding == 0)
        {
            self.finish_post(exchange_id);
        }
    }

    /// Completes a POST whose requests are all answered.
    fn finish_post(&mut self, exchange_id: ExchangeId) {
        let Some(exchange) = self.exchanges.remove(&exchange_id) else {
            return;
        };
        if let Some(Transport::Streamable { posts, .. }) =
            self.sessions.get_mut(&exchange.session).map(|s| &mut s.transport)
        {
            posts.retain(|id| *id != exchange_id);
        }
        let ExchangeKind::Post(post) = exchange.kind else {
            return;
        };
        if post.stream.is_some() {
            if let Some(connection) = post.connection {
                if connection != exchange_id {
                    self.exchanges.remove(&connection);
                }
                self.ctx.stream_end(connection);
            }
            return;
        }
        let mut headers = exchange.headers;
        let initialized = post.initialize
            && matches!(post.collected.first(), Some(Message::Response(Response { outcome: Ok(_), .. })));
        if initialized {
            let Some(public) = self.public_session_id(&exchange.session) else {
                return self.refuse_unsealable(exchange_id, headers, &exchange.session);
            };
            headers.push(Header::new("mcp-session-id", public));
        }
        let (status, body) = match (post.batch, post.collected.as_slice()) {
            (false, [single]) if post.modern.is_some() => (crate::modern::answers::status(single), single.to_bytes()),
            (false, [single]) => (200, single.to_bytes()),
            (_, collected) => (200, batch_to_bytes(collected)),
        };
        self.ctx.respond(json_head(exchange_id, status, headers), body);
    }

    /// At the edge, a session too large to seal into an id (the client's `initialize`
    /// parameters are in it) cannot be served: the client is told, and the session ends.
    fn refuse_unsealable(&mut self, exchange_id: ExchangeId, headers: Vec<Header>, session: &crate::ids::SessionId) {
        let message = format!(
            "Bad Request: the initialize parameters are too large for a session at the edge (the sealed id may hold {} bytes)",
            crate::modes::edge::MAX_SEALED_LEN
        );
        self.ctx.refuse(exchange_id, headers, 400, &message);
        self.end_session(session, &crate::error::RequestError::SessionEnded, "too large to seal into its id");
    }

    /// Sends a server message as an SSE event of `exchange_id`'s stream, turning a POST
    /// response into a stream if needed. The event is kept for resumption; it is written
    /// only while a connection carries the stream. Returns false if the exchange cannot
    /// carry it.
    pub(crate) fn send_event(&mut self, exchange_id: ExchangeId, message: &Message) -> bool {
        if let Some(Exchange { kind: ExchangeKind::Post(post), headers, .. }) = self.exchanges.get_mut(&exchange_id) {
            if post.modern.is_some() {
                // A 2026 response stream: events without ids (nothing is resumed in that era).
                if !post.accepts_sse {
                    return false;
                }
                if post.stream.is_none() {
                    post.stream = Some(0);
                    post.connection = Some(exchange_id);
                    let headers = headers.clone();
                    self.ctx.start_stream(exchange_id, headers);
                }
                let framed = sse::event(None, Some("message"), &message.to_bytes());
                self.ctx.stream_data(exchange_id, framed);
                return true;
            }
        }
        // The session id an initialize stream starts with (sealed at the edge).
        let public = match self.exchanges.get(&exchange_id) {
            Some(Exchange { session, kind: ExchangeKind::Post(post), .. })
                if post.initialize && post.stream.is_none() =>
            {
                let session = session.clone();
                match self.public_session_id(&session) {
                    Some(public) => Some(public),
                    None => {
                        let headers = self.exchanges.remove(&exchange_id).map(|e| e.headers).unwrap_or_default();
                        self.refuse_unsealable(exchange_id, headers, &session);
                        return true;
                    }
                }
            }
            _ => None,
        };
        let Some(exchange) = self.exchanges.get_mut(&exchange_id) else {
            return false;
        };
        let Some(session) = self.sessions.get_mut(&exchange.session) else {
            return false;
        };
        let (stream, connection, keep) = match &mut exchange.kind {
            ExchangeKind::Post(post) => {
                if !post.accepts_sse {
                    return false;
                }
                let stream = match post.stream {
                    Some(stream) => stream,
                    None => {
                        let stream = session.next_stream();
                        post.stream = Some(stream);
                        post.connection = Some(exchange_id);
                        let mut headers = exchange.headers.clone();
                        if let Some(public) = public {
                            headers.push(Header::new("mcp-session-id", public));
                        }
                        self.ctx.push(Output::StreamStart(sse_head(exchange_id, headers)));
                        self.ctx.streams_opened = true;
                        if session.wants_priming() {
                            let priming = session.next_event_id(stream);
                            let data = sse::event(Some(&priming.to_wire()), None, b"");
                            self.ctx.push(Output::StreamData { exchange: exchange_id, data });
                        }
                        stream
                    }
                };
                (stream, post.connection, true)
            }
            ExchangeKind::Standalone => (STANDALONE_STREAM, Some(exchange_id), true),
            ExchangeKind::LegacyStream => (STANDALONE_STREAM, Some(exchange_id), false),
            ExchangeKind::Resumed { .. } | ExchangeKind::Listen => return false,
        };
        let id = session.next_event_id(stream);
        let framed = sse::event(Some(&id.to_wire()), Some("message"), &message.to_bytes());
        if keep && session.keeps_events {
            self.events.push(&exchange.session, id, &framed);
        }
        if let Some(connection) = connection {
            self.ctx.push(Output::StreamData { exchange: connection, data: framed });
        }
        true
    }

    /// Whether a message sent on this exchange would reach the client now.
    fn is_live(&self, exchange_id: ExchangeId) -> bool {
        match self.exchanges.get(&exchange_id).map(|e| &e.kind) {
            Some(ExchangeKind::Post(post)) => match post.stream {
                Some(_) => post.connection.is_some(),
                None => post.accepts_sse,
            },
            Some(ExchangeKind::Standalone | ExchangeKind::LegacyStream) => true,
            Some(ExchangeKind::Resumed { .. } | ExchangeKind::Listen) | None => false,
        }
    }

    /// Delivers a server message that names no request of the client's.
    ///
    /// Over stdio the proxy cannot see which request a message belongs to, so it guesses
    /// the way SDK servers behave: server requests (sampling, elicitation, roots) and log
    /// messages are most likely part of a request in flight, and go on the newest open POST
    /// stream, else the GET stream; other notifications (list changes, resource updates) go
    /// on the GET stream. What finds no stream waits in the backlog for the next GET stream.
    pub(crate) fn route_to_session(&mut self, session_id: &SessionId, message: &Message) {
        let Some(session) = self.sessions.get(session_id) else {
            return;
        };
        if matches!(session.transport, Transport::Pool { .. }) {
            return self.route_from_pool_member(session_id, message);
        }
        if matches!(session.transport, Transport::Stdio) {
            return self.ctx.push(Output::ClientSend(message.to_bytes()));
        }
        let request_related = matches!(message, Message::Request(_)) || message.method() == Some(mcp::MESSAGE);
        let candidates: Vec<ExchangeId> = match &session.transport {
            Transport::LegacySse { stream } => vec![*stream],
            Transport::Streamable { standalone, posts, .. } if request_related => {
                posts.iter().rev().chain(standalone.iter()).copied().filter(|id| self.is_live(*id)).collect()
            }
            Transport::Streamable { standalone, .. } => standalone.iter().copied().collect(),
            Transport::Pool { .. } | Transport::Stdio => Vec::new(),
        };
        if candidates.into_iter().any(|exchange| self.send_event(exchange, message)) {
            return;
        }
        let Some(Transport::Streamable { backlog, .. }) = self.sessions.get_mut(session_id).map(|s| &mut s.transport)
        else {
            return;
        };
        if backlog.push(message.clone()) > 0 {
            self.ctx.log(
                LogLevel::Warn,
                format!("session {session_id}: no stream open; dropped the oldest waiting message"),
            );
        }
    }

    /// A pool child sent a message that names no request. When a 2026 request has the
    /// child to itself, it is that request's: a server request becomes an `input_required`
    /// round, a log line reaches it if it asked for logs at that level. Otherwise the
    /// clients are anonymous and share the child, so a log message goes to a client only when
    /// exactly one request is in flight (it can only be that request's); a server request
    /// cannot reach any client, so the proxy answers it at once (`ping` with a result,
    /// anything else with an error) instead of leaving the child, and the client's call,
    /// hanging. List changes and resource updates go to the listen streams.
    fn route_from_pool_member(&mut self, session_id: &SessionId, message: &Message) {
        let alone = self.pool_busy_with(session_id).filter(|id| self.modern.in_flight.contains_key(id));
        match message {
            Message::Request(request) => match (alone, self.sessions.get(session_id).and_then(|s| s.members.first())) {
                (Some(proxy_id), Some(member)) => {
                    let upstream = member.upstream;
                    self.mrtr_ask(session_id, upstream, proxy_id, request.clone());
                }
                _ => {
                    let answer = mcp::answer_unreachable(request, "the proxy serves stateless requests");
                    self.send_to_session_upstream(session_id, &Message::Response(answer));
                }
            },
            Message::Notification(notification) if notification.method == mcp::MESSAGE => {
                let only = match self.sessions.get(session_id).map(|s| s.in_flight.keys().copied().collect::<Vec<_>>())
                {
                    Some(ids) if ids.len() == 1 => ids.first().copied(),
                    _ => None,
                };
                let Some(owner) = alone.or(only) else {
                    return;
                };
                let exchange = match self.modern_log_target(owner, message) {
                    Some(wanted) => wanted,
                    None => match self.pending.get(owner).map(|pending| pending.reply_to) {
                        Some(crate::state::pending::ReplyTo::Exchange(exchange)) => Some(exchange),
                        _ => None,
                    },
                };
                if let Some(exchange) = exchange {
                    self.send_event(exchange, message);
                }
            }
            Message::Notification(notification) => {
                if let Some(Transport::Pool { server, .. }) = self.sessions.get(session_id).map(|s| &s.transport) {
                    let server = *server;
                    if notification.method == mcp::TOOLS_LIST_CHANGED {
                        self.pool_forget_tools(server);
                    }
                    if self.relay_listen_event(session_id, notification) {
                        return;
                    }
                    self.listen_notify(server, notification);
                }
            }
            Message::Response(_) => {}
        }
    }

    /// Makes `exchange` the session's GET stream, replays `replay`, then sends the backlog.
    pub(crate) fn open_standalone(
        &mut self,
        exchange: ExchangeId,
        session_id: &SessionId,
        cors: Vec<Header>,
        replay: Vec<Vec<u8>>,
    ) {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        let Transport::Streamable { standalone, backlog, .. } = &mut session.transport else {
            return;
        };
        let replaced = standalone.replace(exchange);
        let waiting: Vec<Message> = backlog.drain();
        let priming = session.wants_priming().then(|| session.next_event_id(STANDALONE_STREAM));
        if let Some(old) = replaced {
            self.exchanges.remove(&old);
            self.ctx.stream_end(old);
        }
        self.exchanges.insert(
            exchange,
            Exchange { session: session_id.clone(), headers: cors.clone(), kind: ExchangeKind::Standalone },
        );
        self.ctx.start_stream(exchange, cors);
        if let Some(priming) = priming {
            self.ctx.stream_data(exchange, sse::event(Some(&priming.to_wire()), None, b""));
        }
        for data in replay {
            self.ctx.stream_data(exchange, data);
        }
        for message in waiting {
            self.send_event(exchange, &message);
        }
    }

    /// Serves a GET with `Last-Event-ID`: replays what followed `last` on its stream and
    /// carries that stream on from here.
    pub(crate) fn resume_stream(
        &mut self,
        exchange: ExchangeId,
        session_id: &SessionId,
        cors: Vec<Header>,
        last: EventId,
    ) {
        let Some(session) = self.sessions.get(session_id) else {
            return;
        };
        let replay = self.events.replay(session_id, last);
        if last.stream == STANDALONE_STREAM {
            return self.open_standalone(exchange, session_id, cors, replay);
        }
        let post_id = match &session.transport {
            Transport::Streamable { posts, .. } => posts.iter().copied().find(|id| {
                matches!(self.exchanges.get(id), Some(Exchange { kind: ExchangeKind::Post(post), .. }) if post.stream == Some(last.stream))
            }),
            _ => None,
        };
        self.ctx.start_stream(exchange, cors.clone());
        for data in replay {
            self.ctx.stream_data(exchange, data);
        }
        let Some(post_id) = post_id else {
            // That stream is complete: everything it had is replayed.
            return self.ctx.stream_end(exchange);
        };
        let previous = match self.exchanges.get_mut(&post_id) {
            Some(Exchange { kind: ExchangeKind::Post(post), .. }) => post.connection.replace(exchange),
            _ => None,
        };
        if let Some(previous) = previous {
            if previous != post_id {
                self.exchanges.remove(&previous);
            }
            self.ctx.stream_end(previous);
        }
        self.exchanges.insert(
            exchange,
            Exchange { session: session_id.clone(), headers: cors, kind: ExchangeKind::Resumed { post: post_id } },
        );
    }
}
