//! Reading what a remote upstream answers: the status of each fetch, JSON bodies and SSE
//! events, the legacy `endpoint` event, and renewing a session the upstream forgot.

use crate::ctx::Ctx;
use crate::error::codes;
use crate::ids::{FetchId, UpstreamId};
use crate::io::{LogLevel, Output, UpstreamEnd};
use crate::policy::network::{join, redacted, same_origin};
use crate::wire::http::Header;
use crate::wire::jsonrpc::{ErrorObject, Message, RequestId, Response};
use crate::wire::sse_parser::SseParser;

use super::{
    header, reinitialize_body, Body, Flavor, HttpEvent, HttpUpstream, HttpUpstreams, Purpose, MAX_MESSAGE,
    REINITIALIZE_ID,
};

impl HttpUpstreams {
    /// The status and headers of a fetch arrived.
    pub(crate) fn handle_head(
        &mut self,
        ctx: &mut Ctx,
        fetch: FetchId,
        status: u16,
        headers: &[Header],
        events: &mut Vec<HttpEvent>,
    ) {
        let Some(state) = self.fetches.get_mut(&fetch) else {
            return;
        };
        state.status = status;
        let streamed = header(headers, "content-type").is_some_and(|t| t.trim_start().starts_with("text/event-stream"));
        state.body = if streamed { Body::Events(SseParser::new(MAX_MESSAGE)) } else { Body::Json(Vec::new()) };
        let upstream = state.upstream;
        let purpose = state.purpose.clone();
        if let Some(HttpUpstream { flavor: Flavor::Streamable { session, .. }, .. }) = self.upstreams.get_mut(&upstream)
        {
            if let Some(id) = header(headers, "mcp-session-id") {
                session.get_or_insert_with(|| id.to_owned());
            }
        }
        if (200..300).contains(&status) {
            if matches!(purpose, Purpose::Post { initialized: true, .. }) && self.listens_ahead {
                self.listen(ctx, upstream);
            }
            // The session has started (and its stream is up, if it waited for that).
            if self.gate_waits_on(upstream, fetch) {
                self.open_gate(ctx, upstream);
            }
            return;
        }
        if self.gate_waits_on(upstream, fetch) {
            self.open_gate(ctx, upstream);
        }
        let Some(failed) = self.fetches.remove(&fetch) else {
            return;
        };
        ctx.push(Output::CancelFetch(fetch));
        if self.fall_back_to_sse(ctx, upstream, status, &purpose, &failed.sent) {
            return;
        }
        if status == 404
            && matches!(purpose, Purpose::Post { modern: false, .. })
            && self.reinitialize(ctx, upstream, failed.sent)
        {
            return;
        }
        match purpose {
            Purpose::Reinit => {
                let reason = format!("initializing the upstream again failed: HTTP {status}");
                self.gone(ctx, upstream, reason, events);
            }
            Purpose::Post { request: Some(id), modern, .. } => {
                let message = match (status, self.upstreams.get(&upstream)) {
                    (401, Some(state)) => unauthorized(ctx, &state.url),
                    _ => format!("the upstream answered HTTP {status}"),
                };
                events.push(upstream_error(upstream, id, ErrorObject::new(codes::UPSTREAM_CLOSED, message)));
                // A 2026 request has no session to expire (a 404 there is the server's answer).
                if status == 404 && !modern {
                    self.gone(ctx, upstream, "the upstream session expired (HTTP 404)".into(), events);
                }
            }
            Purpose::Stream if self.is_sse(upstream) => {
                let reason = match (status, self.upstreams.get(&upstream)) {
                    (401, Some(state)) => unauthorized(ctx, &state.url),
                    _ => format!("the upstream SSE stream answered HTTP {status}"),
                };
                self.gone(ctx, upstream, reason, events);
            }
            _ => {}
        }
    }

    /// A Streamable HTTP upstream that may fall back to legacy SSE refused its first POST:
    /// it becomes a legacy SSE upstream, its stream is opened, and what was POSTed waits for
    /// the stream's `endpoint`. False if it is not that case.
    fn fall_back_to_sse(
        &mut self,
        ctx: &mut Ctx,
        upstream: UpstreamId,
        status: u16,
        purpose: &Purpose,
        sent: &[u8],
    ) -> bool {
        if !(400..500).contains(&status) || status == 401 || status == 403 {
            return false;
        }
        // Only the client's `initialize` tells (a 2026 probe's refusal says only that the
        // server is not of 2026).
        let initialize = Message::parse(sent).is_ok_and(|m| m.method() == Some(crate::wire::mcp::INITIALIZE));
        if !matches!(purpose, Purpose::Post { modern: false, .. }) || !initialize {
            return false;
        }
        let Some(state) = self.upstreams.get_mut(&upstream) else {
            return false;
        };
        if !state.connect.fall_back_to_sse || !matches!(state.flavor, Flavor::Streamable { session: None, .. }) {
            return false;
        }
        state.connect.fall_back_to_sse = false;
        state.flavor = Flavor::Sse { endpoint: None, waiting: vec![sent.to_vec()], replay: None, replaying: false };
        let url = state.url.clone();
        ctx.log(
            LogLevel::Info,
            format!(
                "{} refused the Streamable HTTP POST (HTTP {status}); trying legacy SSE",
                crate::policy::network::redacted(&url)
            ),
        );
        let accept = vec![Header::new("accept", "text/event-stream")];
        self.fetch(ctx, upstream, "GET", url, accept, Vec::new(), Purpose::Stream);
        true
    }

    /// Body bytes of a fetch arrived.
    pub(crate) fn handle_data(&mut self, ctx: &mut Ctx, fetch: FetchId, data: &[u8], events: &mut Vec<HttpEvent>) {
        let Some(state) = self.fetches.get_mut(&fetch) else {
            return;
        };
        let upstream = state.upstream;
        if state.purpose == Purpose::Reinit {
            return;
        }
        let read = match &mut state.body {
            Body::Json(buffer) if buffer.len() + data.len() <= MAX_MESSAGE => {
                buffer.extend_from_slice(data);
                return;
            }
            Body::Json(_) | Body::Unknown => {
                state.body = Body::Json(Vec::new());
                let message = format!("upstream {}: a response body over {MAX_MESSAGE} bytes was dropped", upstream.0);
                return ctx.log(LogLevel::Warn, message);
            }
            Body::Events(parser) => {
                let read = parser.feed(data);
                if parser.overflowed() {
                    let message = format!("upstream {}: an SSE event over {MAX_MESSAGE} bytes was dropped", upstream.0);
                    ctx.log(LogLevel::Warn, message);
                }
                read
            }
        };
        for event in read {
            match event.event.as_str() {
                "endpoint" => self.sse_endpoint(ctx, upstream, &event.data, events),
                "message" if self.is_replayed_initialize(upstream, &event.data) => {
                    self.sse_replayed(ctx, upstream, &event.data, events)
                }
                "message" if !event.data.is_empty() => {
                    events.push(HttpEvent::Message(upstream, event.data.into_bytes()))
                }
                _ => {}
            }
        }
    }

    /// A fetch finished (`error`: it broke off).
    pub(crate) fn handle_end(
        &mut self,
        ctx: &mut Ctx,
        fetch: FetchId,
        error: Option<String>,
        events: &mut Vec<HttpEvent>,
    ) {
        let Some(state) = self.fetches.remove(&fetch) else {
            return;
        };
        let upstream = state.upstream;
        if self.gate_waits_on(upstream, fetch) {
            self.open_gate(ctx, upstream);
        }
        // What the shell says may quote the URL, whose query can hold a secret (`?key=`).
        let error = error.map(|error| self.without_url(upstream, error));
        if state.purpose == Purpose::Reinit {
            return match error {
                None => self.reinitialized(ctx, upstream),
                Some(error) => {
                    self.gone(ctx, upstream, format!("initializing the upstream again failed: {error}"), events)
                }
            };
        }
        if let (Body::Json(body), None) = (&state.body, &error) {
            // A 202 carries no message (a legacy SSE server's POSTs answer "Accepted").
            if state.status != 202 && !body.iter().all(u8::is_ascii_whitespace) {
                events.push(HttpEvent::Message(upstream, body.clone()));
            }
        }
        match (state.purpose, error) {
            (Purpose::Post { request: Some(id), .. }, Some(error)) => {
                let message = format!("the upstream connection failed: {error}");
                events.push(upstream_error(upstream, id, ErrorObject::new(codes::UPSTREAM_CLOSED, message)));
            }
            (Purpose::Stream, error) if self.is_sse(upstream) => {
                let why = error.unwrap_or_else(|| "the upstream ended its SSE stream".into());
                self.gone(ctx, upstream, why, events);
            }
            _ => {}
        }
    }

    fn is_sse(&self, upstream: UpstreamId) -> bool {
        matches!(self.upstreams.get(&upstream).map(|u| &u.flavor), Some(Flavor::Sse { .. }))
    }

    /// Legacy SSE: the stream named where to POST; send what waited.
    fn sse_endpoint(&mut self, ctx: &mut Ctx, upstream: UpstreamId, endpoint: &str, events: &mut Vec<HttpEvent>) {
        let Some(url) = self.upstreams.get(&upstream).map(|u| u.url.clone()) else {
            return;
        };
        // The official SDKs' rule: messages go to the stream's own origin, never elsewhere (the
        // headers and credentials of this server must not reach a host it names).
        let Some(resolved) = join(&url, endpoint.trim()).filter(|resolved| same_origin(&url, resolved)) else {
            let reason = format!(
                "the upstream's SSE endpoint event names another origin than {}; nothing was sent there",
                redacted(&url)
            );
            ctx.log(LogLevel::Error, format!("upstream {}: {reason}", upstream.0));
            return self.gone(ctx, upstream, reason, events);
        };
        let Some(HttpUpstream { flavor: Flavor::Sse { endpoint: known, waiting, replay, replaying }, .. }) =
            self.upstreams.get_mut(&upstream)
        else {
            return;
        };
        *known = Some(resolved.clone());
        let json = || vec![Header::new("content-type", "application/json")];
        if let Some(params) = replay.take() {
            *replaying = true;
            let purpose = Purpose::Post { request: None, initialized: false, modern: false };
            self.fetch(ctx, upstream, "POST", resolved, json(), reinitialize_body(params), purpose);
            return;
        }
        for data in std::mem::take(waiting) {
            let request = match Message::parse(&data) {
                Ok(Message::Request(request)) => Some(request.id),
                _ => None,
            };
            let purpose = Purpose::Post { request, initialized: false, modern: false };
            self.fetch(ctx, upstream, "POST", resolved.clone(), json(), data, purpose);
        }
    }

    /// `text` with the upstream's URL in it shown without its query and credentials.
    fn without_url(&self, upstream: UpstreamId, text: String) -> String {
        match self.upstreams.get(&upstream) {
            Some(state) if text.contains(&state.url) => text.replace(&state.url, &redacted(&state.url)),
            _ => text,
        }
    }

    /// The upstream forgot its session (HTTP 404): initialize it again with the client's
    /// parameters and send `message` once that is done. False if that is not possible.
    fn reinitialize(&mut self, ctx: &mut Ctx, upstream: UpstreamId, message: Vec<u8>) -> bool {
        let Some(HttpUpstream {
            url, flavor: Flavor::Streamable { session, listening, initialize, reinit, .. }, ..
        }) = self.upstreams.get_mut(&upstream)
        else {
            return false;
        };
        if session.is_none() && reinit.is_none() {
            return false;
        }
        if let Some(waiting) = reinit {
            waiting.push(message);
            return true;
        }
        let Some(params) = initialize.clone() else {
            return false;
        };
        *session = None;
        *listening = false;
        *reinit = Some(vec![message]);
        let url = url.clone();
        let headers = vec![
            Header::new("content-type", "application/json"),
            Header::new("accept", "application/json, text/event-stream"),
        ];
        ctx.log(LogLevel::Info, format!("upstream {}: its session expired; initializing it again", upstream.0));
        self.fetch(ctx, upstream, "POST", url, headers, reinitialize_body(params), Purpose::Reinit);
        true
    }

    /// The upstream is initialized again: confirm, then send what waited.
    fn reinitialized(&mut self, ctx: &mut Ctx, upstream: UpstreamId) {
        let Some(HttpUpstream { flavor: Flavor::Streamable { reinit, .. }, .. }) = self.upstreams.get_mut(&upstream)
        else {
            return;
        };
        let Some(waiting) = reinit.take() else {
            return;
        };
        self.confirm_and_resend(ctx, upstream, waiting);
    }

    /// Confirms a session the proxy initialized itself, then sends what waited for it (but a
    /// client's own `initialized`: the session must not see it twice).
    fn confirm_and_resend(&mut self, ctx: &mut Ctx, upstream: UpstreamId, waiting: Vec<Vec<u8>>) {
        let authorization = self.upstreams.get(&upstream).and_then(|u| u.connect.authorization.clone());
        let initialized = crate::wire::mcp::initialized();
        self.send(ctx, upstream, &initialized, initialized.to_bytes(), authorization.clone(), Vec::new());
        for data in waiting {
            match Message::parse(&data) {
                Ok(message) if message.method() == Some(crate::wire::mcp::INITIALIZED) => {}
                Ok(message) => self.send(ctx, upstream, &message, data, authorization.clone(), Vec::new()),
                Err(_) => {}
            }
        }
    }

    /// Whether a legacy SSE message answers the `initialize` the proxy replayed.
    fn is_replayed_initialize(&self, upstream: UpstreamId, data: &str) -> bool {
        let replaying =
            matches!(self.upstreams.get(&upstream).map(|u| &u.flavor), Some(Flavor::Sse { replaying: true, .. }));
        replaying
            && matches!(Message::parse(data.as_bytes()), Ok(Message::Response(Response { id: Some(RequestId::String(id)), .. })) if id == REINITIALIZE_ID)
    }

    /// The replayed `initialize` was answered: confirm it, then send what waited.
    fn sse_replayed(&mut self, ctx: &mut Ctx, upstream: UpstreamId, data: &str, events: &mut Vec<HttpEvent>) {
        if let Ok(Message::Response(Response { outcome: Err(error), .. })) = Message::parse(data.as_bytes()) {
            let reason = format!("the upstream refused initialize: {}", error.message);
            return self.gone(ctx, upstream, reason, events);
        }
        let Some(HttpUpstream { flavor: Flavor::Sse { waiting, replaying, .. }, .. }) =
            self.upstreams.get_mut(&upstream)
        else {
            return;
        };
        *replaying = false;
        let waiting = std::mem::take(waiting);
        self.confirm_and_resend(ctx, upstream, waiting);
    }

    /// A remote upstream is gone: closed here, reported to the proxy like a child that exited.
    fn gone(&mut self, ctx: &mut Ctx, upstream: UpstreamId, reason: String, events: &mut Vec<HttpEvent>) {
        if self.upstreams.contains_key(&upstream) {
            self.close(ctx, upstream);
            events.push(HttpEvent::Gone(upstream, UpstreamEnd::Exited(reason)));
        }
    }
}

/// Answers a request the upstream could not, as if the upstream had.
fn upstream_error(upstream: UpstreamId, id: RequestId, error: ErrorObject) -> HttpEvent {
    HttpEvent::Message(upstream, Message::Response(Response::error(Some(id), error)).to_bytes())
}

/// What a client is told when the upstream wants a credential: the URL (without secrets) and
/// how to give one.
fn unauthorized(ctx: &Ctx, url: &str) -> String {
    let how = if ctx.config.connect.is_some() {
        "give one with --header \"Authorization: Bearer <token>\" (or API_ACCESS_TOKEN)"
    } else {
        "give one in the server's \"headers\""
    };
    let url = crate::policy::network::redacted(url);
    format!("{url} answered HTTP 401 Unauthorized: the server needs a credential; {how}")
}
