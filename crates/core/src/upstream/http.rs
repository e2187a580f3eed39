//! Remote upstreams over HTTP: the client side of Streamable HTTP and of legacy HTTP+SSE.
//!
//! The core decides every request ([`Output::Fetch`]) and reads every response
//! ([`Input::FetchHead`], [`Input::FetchData`], [`Input::FetchEnd`]); the shell only carries
//! the bytes. Messages read from a response go through the same path as a stdio child's lines.

use std::collections::BTreeMap;

use crate::config::file::UpstreamConfig;
use crate::error::codes;
use crate::ids::UpstreamId;
use crate::io::{LogLevel, Output};
use crate::policy::network::{join, redacted, same_origin};
use crate::proxy::Proxy;
use crate::wire::http::Header;
use crate::wire::jsonrpc::{ErrorObject, Message, RequestId, Response};
use crate::wire::mcp;
use crate::wire::sse_parser::SseParser;

/// A request the shell makes for the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    /// The core's number for this request.
    pub fetch: u64,
    /// The method.
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// The headers.
    pub headers: Vec<Header>,
    /// The body.
    pub body: Vec<u8>,
    /// Connect only to public addresses: the shell checks what the host name resolves to with
    /// [`crate::policy::network::is_public_address`] (a server added at run time).
    pub public_only: bool,
}

/// The id of the `initialize` the proxy sends itself to renew an upstream session.
const REINITIALIZE_ID: &str = "mcp-proxy-reinitialize";

/// The largest JSON body or SSE event read from an upstream.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// One remote upstream.
#[derive(Debug)]
pub(crate) struct HttpUpstream {
    url: String,
    headers: Vec<(String, String)>,
    flavor: Flavor,
    /// Pass the client's `Authorization` on (the server's `forwardAuthorization`).
    forward_authorization: bool,
    /// Connect to public addresses only (added at run time).
    public_only: bool,
}

#[derive(Debug)]
enum Flavor {
    /// Streamable HTTP: each message is a POST; the server's session id comes back in a header.
    /// `initialize` keeps the client's parameters, so an expired upstream session can be
    /// initialized again; `reinit` holds what waits while that happens.
    Streamable {
        session: Option<String>,
        protocol: Option<String>,
        listening: bool,
        initialize: Option<serde_json::Value>,
        reinit: Option<Vec<Vec<u8>>>,
    },
    /// Legacy HTTP+SSE: a GET stream names the URL to POST messages to. Its session lives as
    /// long as the stream, so at the edge each request opens a new one and `replay`s the
    /// client's `initialize` on it first (`replaying` until that is answered).
    Sse { endpoint: Option<String>, waiting: Vec<Vec<u8>>, replay: Option<serde_json::Value>, replaying: bool },
}

/// What a fetch is for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Purpose {
    /// A message POSTed; for a request, the id the answer must carry if the POST fails.
    Post { request: Option<RequestId>, initialized: bool },
    /// The server-to-client stream (Streamable HTTP GET, or the legacy SSE stream).
    Stream,
    /// Ending the upstream session.
    Delete,
    /// The proxy's own `initialize` after the upstream session expired.
    Reinit,
}

#[derive(Debug)]
enum Body {
    Unknown,
    Json(Vec<u8>),
    Events(SseParser),
}

/// A fetch in flight.
#[derive(Debug)]
pub(crate) struct Fetch {
    upstream: UpstreamId,
    purpose: Purpose,
    /// What was POSTed, to send again after a re-initialization.
    sent: Vec<u8>,
    status: u16,
    body: Body,
}

/// Remote upstreams and their fetches.
#[derive(Debug, Default)]
pub(crate) struct HttpUpstreams {
    upstreams: BTreeMap<UpstreamId, HttpUpstream>,
    fetches: BTreeMap<u64, Fetch>,
    next_fetch: u64,
}

impl HttpUpstreams {
    /// Whether a message is still on its way to an upstream (a POST, a DELETE, a renewal).
    pub(crate) fn delivering(&self) -> bool {
        self.fetches.values().any(|fetch| fetch.purpose != Purpose::Stream)
    }

    /// Whether `upstream` is remote.
    pub(crate) fn contains(&self, upstream: UpstreamId) -> bool {
        self.upstreams.contains_key(&upstream)
    }
}

/// The `initialize` the proxy sends itself to renew an upstream session, with the client's
/// parameters.
fn reinitialize_body(params: serde_json::Value) -> Vec<u8> {
    let id = RequestId::String(REINITIALIZE_ID.into());
    Message::Request(mcp::initialize_request(id, Some(params))).to_bytes()
}

fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

impl Proxy {
    /// Connects a remote upstream (a legacy SSE one opens its stream at once).
    pub(crate) fn open_http_upstream(
        &mut self,
        upstream: UpstreamId,
        config: &UpstreamConfig,
        forward_authorization: bool,
        public_only: bool,
    ) {
        let (url, headers, flavor) = match config {
            UpstreamConfig::StreamableHttp { url, headers, .. } => {
                let flavor = Flavor::Streamable {
                    session: None,
                    protocol: None,
                    listening: false,
                    initialize: None,
                    reinit: None,
                };
                (url.clone(), headers.clone(), flavor)
            }
            UpstreamConfig::Sse { url, headers } => {
                let flavor = Flavor::Sse { endpoint: None, waiting: Vec::new(), replay: None, replaying: false };
                (url.clone(), headers.clone(), flavor)
            }
            UpstreamConfig::Stdio(_) => return,
        };
        let sse = matches!(flavor, Flavor::Sse { .. });
        let state = HttpUpstream { url: url.clone(), headers, flavor, forward_authorization, public_only };
        self.http.upstreams.insert(upstream, state);
        if sse {
            self.fetch(
                upstream,
                "GET",
                url,
                vec![Header::new("accept", "text/event-stream")],
                Vec::new(),
                Purpose::Stream,
            );
        }
    }

    /// A Streamable HTTP upstream's session id and revision, as far as known.
    pub(crate) fn http_session_of(&self, upstream: UpstreamId) -> (Option<String>, Option<String>) {
        match self.http.upstreams.get(&upstream).map(|u| &u.flavor) {
            Some(Flavor::Streamable { session, protocol, .. }) => (session.clone(), protocol.clone()),
            _ => (None, None),
        }
    }

    /// Picks up an upstream session begun in an earlier request (at the edge): its id, its
    /// revision, and the client's `initialize` parameters for when it expires.
    pub(crate) fn resume_http_upstream(
        &mut self,
        upstream: UpstreamId,
        session_id: Option<String>,
        protocol_version: Option<String>,
        params: Option<serde_json::Value>,
    ) {
        match self.http.upstreams.get_mut(&upstream).map(|u| &mut u.flavor) {
            Some(Flavor::Streamable { session, protocol, initialize, .. }) => {
                *session = session_id;
                *protocol = protocol_version;
                *initialize = params;
            }
            Some(Flavor::Sse { replay, .. }) => *replay = params,
            _ => {}
        }
    }

    /// Records the revision a Streamable HTTP upstream answered `initialize` with; later
    /// requests carry it in `MCP-Protocol-Version`.
    pub(crate) fn set_http_protocol(&mut self, upstream: UpstreamId, version: &str) {
        if let Some(HttpUpstream { flavor: Flavor::Streamable { protocol, .. }, .. }) =
            self.http.upstreams.get_mut(&upstream)
        {
            *protocol = Some(version.to_owned());
        }
    }

    /// Streamable HTTP: opens the server-to-client stream of an upstream (at the edge, when
    /// the client opens its own).
    pub(crate) fn listen_upstream(&mut self, upstream: UpstreamId) {
        self.open_listening_stream(upstream);
    }

    fn fetch(
        &mut self,
        upstream: UpstreamId,
        method: &str,
        url: String,
        mut headers: Vec<Header>,
        body: Vec<u8>,
        purpose: Purpose,
    ) {
        let Some(state) = self.http.upstreams.get(&upstream) else {
            return;
        };
        headers.extend(state.headers.iter().map(|(name, value)| Header::new(name.clone(), value.clone())));
        let configured = state.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
        if state.forward_authorization && !configured {
            if let Some(credentials) = self.client_authorization(upstream) {
                headers.push(Header::new("authorization", credentials));
            }
        }
        if let Flavor::Streamable { session, protocol, .. } = &state.flavor {
            if let Some(session) = session {
                headers.push(Header::new("mcp-session-id", session.clone()));
            }
            if let Some(protocol) = protocol {
                headers.push(Header::new("mcp-protocol-version", protocol.clone()));
            }
        }
        self.http.next_fetch += 1;
        let fetch = self.http.next_fetch;
        let sent = if matches!(purpose, Purpose::Post { .. }) { body.clone() } else { Vec::new() };
        let public_only = state.public_only;
        self.http.fetches.insert(fetch, Fetch { upstream, purpose, sent, status: 0, body: Body::Unknown });
        self.ctx.push(Output::Fetch(FetchRequest { fetch, method: method.into(), url, headers, body, public_only }));
    }

    /// Sends one message to a remote upstream.
    pub(crate) fn http_send(&mut self, upstream: UpstreamId, message: &Message, data: Vec<u8>) {
        let request = match message {
            Message::Request(request) => Some(request.id.clone()),
            _ => None,
        };
        let initialized = message.method() == Some(crate::wire::mcp::INITIALIZED);
        let Some(state) = self.http.upstreams.get_mut(&upstream) else {
            return;
        };
        let target = match &mut state.flavor {
            Flavor::Streamable { reinit: Some(waiting), .. } => {
                waiting.push(data.clone());
                None
            }
            Flavor::Streamable { initialize, .. } => {
                if let Message::Request(request) = message {
                    if request.method == mcp::INITIALIZE {
                        *initialize = request.params.clone();
                    }
                }
                Some(state.url.clone())
            }
            Flavor::Sse { endpoint: Some(endpoint), replaying: false, .. } => Some(endpoint.clone()),
            Flavor::Sse { waiting, .. } => {
                waiting.push(data.clone());
                None
            }
        };
        let Some(url) = target else {
            return;
        };
        let headers = vec![
            Header::new("content-type", "application/json"),
            Header::new("accept", "application/json, text/event-stream"),
        ];
        self.fetch(upstream, "POST", url, headers, data, Purpose::Post { request, initialized });
    }

    /// Ends a remote upstream: its session is deleted, its fetches cancelled.
    pub(crate) fn http_close(&mut self, upstream: UpstreamId) {
        let open: Vec<u64> =
            self.http.fetches.iter().filter(|(_, f)| f.upstream == upstream).map(|(id, _)| *id).collect();
        for fetch in open {
            self.http.fetches.remove(&fetch);
            self.ctx.push(Output::CancelFetch(fetch));
        }
        if let Some(HttpUpstream { url, flavor: Flavor::Streamable { session: Some(_), .. }, .. }) =
            self.http.upstreams.get(&upstream)
        {
            let url = url.clone();
            self.fetch(upstream, "DELETE", url, Vec::new(), Vec::new(), Purpose::Delete);
        }
        self.http.upstreams.remove(&upstream);
    }

    /// The status and headers of a fetch arrived.
    pub(crate) fn handle_fetch_head(&mut self, fetch: u64, status: u16, headers: &[Header]) {
        let Some(state) = self.http.fetches.get_mut(&fetch) else {
            return;
        };
        state.status = status;
        let events = header(headers, "content-type").is_some_and(|t| t.trim_start().starts_with("text/event-stream"));
        state.body = if events { Body::Events(SseParser::new(MAX_MESSAGE)) } else { Body::Json(Vec::new()) };
        let upstream = state.upstream;
        let purpose = state.purpose.clone();
        if let Some(HttpUpstream { flavor: Flavor::Streamable { session, .. }, .. }) =
            self.http.upstreams.get_mut(&upstream)
        {
            if let Some(id) = header(headers, "mcp-session-id") {
                session.get_or_insert_with(|| id.to_owned());
            }
        }
        if (200..300).contains(&status) {
            // At the edge the stream is opened only while a client listens (a GET).
            if matches!(purpose, Purpose::Post { initialized: true, .. }) && self.store.listens_ahead() {
                self.open_listening_stream(upstream);
            }
            return;
        }
        let Some(failed) = self.http.fetches.remove(&fetch) else {
            return;
        };
        self.ctx.push(Output::CancelFetch(fetch));
        if status == 404 && matches!(purpose, Purpose::Post { .. }) && self.reinitialize(upstream, failed.sent.clone())
        {
            return;
        }
        match purpose {
            Purpose::Reinit => {
                self.handle_upstream_gone(upstream, format!("initializing the upstream again failed: HTTP {status}"))
            }
            Purpose::Post { request: Some(id), .. } => {
                let message = format!("the upstream answered HTTP {status}");
                self.upstream_error(upstream, id, ErrorObject::new(codes::UPSTREAM_CLOSED, message));
                if status == 404 {
                    self.handle_upstream_gone(upstream, "the upstream session expired (HTTP 404)".into());
                }
            }
            Purpose::Stream
                if matches!(self.http.upstreams.get(&upstream).map(|u| &u.flavor), Some(Flavor::Sse { .. })) =>
            {
                self.handle_upstream_gone(upstream, format!("the upstream SSE stream answered HTTP {status}"));
            }
            _ => {}
        }
    }

    /// Streamable HTTP: after `notifications/initialized`, listen for the server's own messages.
    fn open_listening_stream(&mut self, upstream: UpstreamId) {
        let Some(HttpUpstream { url, flavor: Flavor::Streamable { listening, .. }, .. }) =
            self.http.upstreams.get_mut(&upstream)
        else {
            return;
        };
        if *listening {
            return;
        }
        *listening = true;
        let url = url.clone();
        self.fetch(upstream, "GET", url, vec![Header::new("accept", "text/event-stream")], Vec::new(), Purpose::Stream);
    }

    /// Body bytes of a fetch arrived.
    pub(crate) fn handle_fetch_data(&mut self, fetch: u64, data: &[u8]) {
        let Some(state) = self.http.fetches.get_mut(&fetch) else {
            return;
        };
        let upstream = state.upstream;
        if state.purpose == Purpose::Reinit {
            return;
        }
        let events = match &mut state.body {
            Body::Json(buffer) if buffer.len() + data.len() <= MAX_MESSAGE => {
                buffer.extend_from_slice(data);
                return;
            }
            Body::Json(_) | Body::Unknown => {
                state.body = Body::Json(Vec::new());
                return self.ctx.log(
                    LogLevel::Warn,
                    format!("upstream {}: a response body over {MAX_MESSAGE} bytes was dropped", upstream.0),
                );
            }
            Body::Events(parser) => {
                let events = parser.feed(data);
                if parser.overflowed() {
                    self.ctx.log(
                        LogLevel::Warn,
                        format!("upstream {}: an SSE event over {MAX_MESSAGE} bytes was dropped", upstream.0),
                    );
                }
                events
            }
        };
        for event in events {
            match event.event.as_str() {
                "endpoint" => self.sse_endpoint(upstream, &event.data),
                "message" if self.is_replayed_initialize(upstream, &event.data) => {
                    self.sse_replayed(upstream, &event.data)
                }
                "message" if !event.data.is_empty() => self.handle_upstream_message(upstream, event.data.as_bytes()),
                _ => {}
            }
        }
    }

    /// Legacy SSE: the stream named where to POST; send what waited.
    fn sse_endpoint(&mut self, upstream: UpstreamId, endpoint: &str) {
        let Some(url) = self.http.upstreams.get(&upstream).map(|u| u.url.clone()) else {
            return;
        };
        // The official SDKs' rule: messages go to the stream's own origin, never elsewhere (the
        // headers and credentials of this server must not reach a host it names).
        let Some(resolved) = join(&url, endpoint.trim()).filter(|resolved| same_origin(&url, resolved)) else {
            let reason = format!(
                "the upstream's SSE endpoint event names another origin than {}; nothing was sent there",
                redacted(&url)
            );
            self.ctx.log(LogLevel::Error, format!("upstream {}: {reason}", upstream.0));
            return self.handle_upstream_gone(upstream, reason);
        };
        let Some(HttpUpstream { flavor: Flavor::Sse { endpoint: known, waiting, replay, replaying }, .. }) =
            self.http.upstreams.get_mut(&upstream)
        else {
            return;
        };
        *known = Some(resolved.clone());
        if let Some(params) = replay.take() {
            *replaying = true;
            let headers = vec![Header::new("content-type", "application/json")];
            let body = reinitialize_body(params);
            return self.fetch(
                upstream,
                "POST",
                resolved,
                headers,
                body,
                Purpose::Post { request: None, initialized: false },
            );
        }
        let waiting = std::mem::take(waiting);
        for data in waiting {
            let headers = vec![Header::new("content-type", "application/json")];
            let request =
                Message::parse(&data).ok().and_then(|m| if let Message::Request(r) = m { Some(r.id) } else { None });
            self.fetch(
                upstream,
                "POST",
                resolved.clone(),
                headers,
                data,
                Purpose::Post { request, initialized: false },
            );
        }
    }

    /// A fetch finished (`error`: it broke off).
    pub(crate) fn handle_fetch_end(&mut self, fetch: u64, error: Option<String>) {
        let Some(state) = self.http.fetches.remove(&fetch) else {
            return;
        };
        let upstream = state.upstream;
        // What the shell says may quote the URL, whose query can hold a secret (`?key=`).
        let error = error.map(|error| self.without_url(upstream, error));
        if state.purpose == Purpose::Reinit {
            return match error {
                None => self.reinitialized(upstream),
                Some(error) => {
                    self.handle_upstream_gone(upstream, format!("initializing the upstream again failed: {error}"))
                }
            };
        }
        if let (Body::Json(body), None) = (&state.body, &error) {
            if !body.iter().all(u8::is_ascii_whitespace) {
                self.handle_upstream_message(upstream, body);
            }
        }
        match (state.purpose, error) {
            (Purpose::Post { request: Some(id), .. }, Some(error)) => {
                let message = format!("the upstream connection failed: {error}");
                self.upstream_error(upstream, id, ErrorObject::new(codes::UPSTREAM_CLOSED, message));
            }
            (Purpose::Stream, error)
                if matches!(self.http.upstreams.get(&upstream).map(|u| &u.flavor), Some(Flavor::Sse { .. })) =>
            {
                let why = error.unwrap_or_else(|| "the upstream ended its SSE stream".into());
                self.handle_upstream_gone(upstream, why);
            }
            _ => {}
        }
    }

    /// `text` with the upstream's URL in it shown without its query and credentials.
    fn without_url(&self, upstream: UpstreamId, text: String) -> String {
        match self.http.upstreams.get(&upstream) {
            Some(state) if text.contains(&state.url) => text.replace(&state.url, &redacted(&state.url)),
            _ => text,
        }
    }

    /// The upstream forgot its session (HTTP 404): initialize it again with the client's
    /// parameters and send `message` once that is done. False if that is not possible.
    fn reinitialize(&mut self, upstream: UpstreamId, message: Vec<u8>) -> bool {
        let Some(HttpUpstream {
            url, flavor: Flavor::Streamable { session, listening, initialize, reinit, .. }, ..
        }) = self.http.upstreams.get_mut(&upstream)
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
        self.ctx.log(LogLevel::Info, format!("upstream {}: its session expired; initializing it again", upstream.0));
        self.fetch(upstream, "POST", url, headers, reinitialize_body(params), Purpose::Reinit);
        true
    }

    /// The upstream is initialized again: confirm, then send what waited.
    fn reinitialized(&mut self, upstream: UpstreamId) {
        let Some(HttpUpstream { flavor: Flavor::Streamable { reinit, .. }, .. }) =
            self.http.upstreams.get_mut(&upstream)
        else {
            return;
        };
        let waiting = reinit.take().unwrap_or_default();
        self.confirm_and_resend(upstream, waiting);
    }

    /// Confirms a session the proxy initialized itself, then sends what waited for it (but a
    /// client's own `initialized`: the session must not see it twice).
    fn confirm_and_resend(&mut self, upstream: UpstreamId, waiting: Vec<Vec<u8>>) {
        let initialized = crate::wire::mcp::initialized();
        self.http_send(upstream, &initialized, initialized.to_bytes());
        for data in waiting {
            match Message::parse(&data) {
                Ok(message) if message.method() == Some(crate::wire::mcp::INITIALIZED) => {}
                Ok(message) => self.http_send(upstream, &message, data),
                Err(_) => {}
            }
        }
    }

    /// Whether a legacy SSE message answers the `initialize` the proxy replayed.
    fn is_replayed_initialize(&self, upstream: UpstreamId, data: &str) -> bool {
        let replaying =
            matches!(self.http.upstreams.get(&upstream).map(|u| &u.flavor), Some(Flavor::Sse { replaying: true, .. }));
        replaying
            && matches!(Message::parse(data.as_bytes()), Ok(Message::Response(Response { id: Some(RequestId::String(id)), .. })) if id == REINITIALIZE_ID)
    }

    /// The replayed `initialize` was answered: confirm it, then send what waited.
    fn sse_replayed(&mut self, upstream: UpstreamId, data: &str) {
        if let Ok(Message::Response(Response { outcome: Err(error), .. })) = Message::parse(data.as_bytes()) {
            return self.handle_upstream_gone(upstream, format!("the upstream refused initialize: {}", error.message));
        }
        let Some(HttpUpstream { flavor: Flavor::Sse { waiting, replaying, .. }, .. }) =
            self.http.upstreams.get_mut(&upstream)
        else {
            return;
        };
        *replaying = false;
        let waiting = std::mem::take(waiting);
        self.confirm_and_resend(upstream, waiting);
    }

    /// Answers a request the upstream could not, as if the upstream had.
    fn upstream_error(&mut self, upstream: UpstreamId, id: RequestId, error: ErrorObject) {
        let response = Message::Response(Response::error(Some(id), error));
        self.handle_upstream_message(upstream, &response.to_bytes());
    }

    /// A remote upstream is gone: handled like a child that exited.
    fn handle_upstream_gone(&mut self, upstream: UpstreamId, reason: String) {
        if self.http.upstreams.contains_key(&upstream) {
            self.http_close(upstream);
            self.handle_upstream_closed(upstream, reason);
        }
    }
}
