//! Remote upstreams over HTTP: the client side of Streamable HTTP and of legacy HTTP+SSE.
//!
//! A state machine of its own: it owns every remote upstream and every fetch in flight, is
//! lent the [`Ctx`] to queue [`Output::Fetch`]es, and reports what it reads as
//! [`HttpEvent`]s — a message from the upstream (handled like a stdio child's line) or the
//! upstream gone (handled like a child that exited). The shell only carries the bytes.
//!
//! - [`mod.rs`](self): the table, opening and closing upstreams, sending messages;
//! - [`response`]: reading what comes back (status, body, SSE events, the legacy `endpoint`
//!   event, renewing an expired session).

mod gate;
mod response;

use std::collections::BTreeMap;

use crate::config::file::UpstreamConfig;
use crate::ctx::Ctx;
use crate::ids::{FetchId, UpstreamId};
use crate::io::{Output, UpstreamEnd};
use crate::wire::http::Header;
use crate::wire::jsonrpc::{Message, RequestId};
use crate::wire::mcp;
use crate::wire::sse_parser::SseParser;

/// A request the shell makes for the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    /// The core's number for this request.
    pub fetch: FetchId,
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

/// What the HTTP client tells the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HttpEvent {
    /// A message from the upstream, as a stdio child's line would be.
    Message(UpstreamId, Vec<u8>),
    /// The upstream is gone, for this reason: handled like a child that exited.
    Gone(UpstreamId, UpstreamEnd),
}

/// How to connect a remote upstream.
#[derive(Clone, Debug, Default)]
pub(crate) struct Connect {
    /// Pass the client's `Authorization` on (the server's `forwardAuthorization`).
    pub(crate) forward_authorization: bool,
    /// Connect to public addresses only (added at run time).
    pub(crate) public_only: bool,
    /// The client's `Authorization`, for a server that forwards it.
    pub(crate) authorization: Option<String>,
    /// A Streamable HTTP URL that refuses the first POST with a 4xx (not 401/403) is tried
    /// as legacy HTTP+SSE, as the SDKs' clients do (reverse mode's `--transport auto`).
    pub(crate) fall_back_to_sse: bool,
}

/// The id of the `initialize` the proxy sends itself to renew an upstream session.
const REINITIALIZE_ID: &str = "mcp-proxy-reinitialize";

/// The largest JSON body or SSE event read from an upstream.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// One remote upstream.
#[derive(Debug)]
struct HttpUpstream {
    url: String,
    headers: Vec<(String, String)>,
    flavor: Flavor,
    connect: Connect,
    /// POSTs held while the session starts (see `gate.rs`).
    gate: Option<gate::Gate>,
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
    /// `modern`: a 2026-07-28 message (no session; its own headers).
    Post { request: Option<RequestId>, initialized: bool, modern: bool },
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
struct Fetch {
    upstream: UpstreamId,
    purpose: Purpose,
    /// What was POSTed, to send again after a re-initialization.
    sent: Vec<u8>,
    status: u16,
    body: Body,
}

/// Remote upstreams and their fetches.
#[derive(Debug)]
pub(crate) struct HttpUpstreams {
    upstreams: BTreeMap<UpstreamId, HttpUpstream>,
    fetches: BTreeMap<FetchId, Fetch>,
    next_fetch: u64,
    /// Open an upstream's own stream as soon as its session is initialized (the native
    /// host), rather than only while a client listens (the edge).
    listens_ahead: bool,
}

impl HttpUpstreams {
    /// No upstreams yet. `listens_ahead`: see [`crate::modes::edge::SessionStore::listens_ahead`].
    pub(crate) fn new(listens_ahead: bool) -> HttpUpstreams {
        HttpUpstreams { upstreams: BTreeMap::new(), fetches: BTreeMap::new(), next_fetch: 0, listens_ahead }
    }

    /// Whether a message is still on its way to an upstream (a POST, a DELETE, a renewal).
    pub(crate) fn delivering(&self) -> bool {
        self.fetches.values().any(|fetch| fetch.purpose != Purpose::Stream)
    }

    /// Whether `upstream` can be asked which era it speaks: a stdio child or a Streamable
    /// HTTP server (a legacy HTTP+SSE server is of the 2024 revision).
    pub(crate) fn is_streamable_or_stdio(&self, upstream: UpstreamId) -> bool {
        !matches!(self.upstreams.get(&upstream).map(|u| &u.flavor), Some(Flavor::Sse { .. }))
    }

    /// Whether `upstream` is remote.
    pub(crate) fn contains(&self, upstream: UpstreamId) -> bool {
        self.upstreams.contains_key(&upstream)
    }

    /// Connects a remote upstream (a legacy SSE one opens its stream at once). A stdio
    /// configuration is not for this client and is ignored.
    pub(crate) fn open(&mut self, ctx: &mut Ctx, upstream: UpstreamId, config: &UpstreamConfig, connect: Connect) {
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
        self.upstreams.insert(upstream, HttpUpstream { url: url.clone(), headers, flavor, connect, gate: None });
        if sse {
            let accept = vec![Header::new("accept", "text/event-stream")];
            self.fetch(ctx, upstream, "GET", url, accept, Vec::new(), Purpose::Stream);
        }
    }

    /// A Streamable HTTP upstream's session id and revision, as far as known.
    pub(crate) fn session_of(&self, upstream: UpstreamId) -> (Option<String>, Option<String>) {
        match self.upstreams.get(&upstream).map(|u| &u.flavor) {
            Some(Flavor::Streamable { session, protocol, .. }) => (session.clone(), protocol.clone()),
            _ => (None, None),
        }
    }

    /// Picks up an upstream session begun in an earlier request (at the edge): its id, its
    /// revision, and the client's `initialize` parameters for when it expires.
    pub(crate) fn resume(
        &mut self,
        upstream: UpstreamId,
        session_id: Option<String>,
        protocol_version: Option<String>,
        params: Option<serde_json::Value>,
    ) {
        match self.upstreams.get_mut(&upstream).map(|u| &mut u.flavor) {
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
    pub(crate) fn set_protocol(&mut self, upstream: UpstreamId, version: &str) {
        if let Some(HttpUpstream { flavor: Flavor::Streamable { protocol, .. }, .. }) =
            self.upstreams.get_mut(&upstream)
        {
            *protocol = Some(version.to_owned());
        }
    }

    /// Streamable HTTP: opens the server-to-client stream of an upstream (at the edge, when
    /// the client opens its own; elsewhere once the session is initialized).
    pub(crate) fn listen(&mut self, ctx: &mut Ctx, upstream: UpstreamId) {
        let Some(HttpUpstream { url, flavor: Flavor::Streamable { listening, .. }, .. }) =
            self.upstreams.get_mut(&upstream)
        else {
            return;
        };
        if *listening {
            return;
        }
        *listening = true;
        let url = url.clone();
        let accept = vec![Header::new("accept", "text/event-stream")];
        if let Some(fetch) = self.fetch(ctx, upstream, "GET", url, accept, Vec::new(), Purpose::Stream) {
            // The first requests wait for the stream (see `gate.rs`).
            self.gate_waits_for(upstream, fetch);
        }
    }

    /// Sends one message to a remote upstream; `authorization` is the client's latest (used
    /// only where the server forwards it).
    pub(crate) fn send(
        &mut self,
        ctx: &mut Ctx,
        upstream: UpstreamId,
        message: &Message,
        data: Vec<u8>,
        authorization: Option<String>,
        params: Vec<(String, String)>,
    ) {
        let request = match message {
            Message::Request(request) => Some(request.id.clone()),
            _ => None,
        };
        let initialized = message.method() == Some(mcp::INITIALIZED);
        let Some(state) = self.upstreams.get_mut(&upstream) else {
            return;
        };
        state.connect.authorization = authorization;
        if let Some(mut headers) = modern_headers(message) {
            // A 2026-07-28 message: self-contained, whatever the 2025 session is doing.
            headers.extend(params.into_iter().map(|(name, value)| Header::new(format!("mcp-param-{name}"), value)));
            let target = state.url.clone();
            let purpose = Purpose::Post { request, initialized: false, modern: true };
            self.fetch(ctx, upstream, "POST", target, headers, data, purpose);
            return;
        }
        let target = match &mut state.flavor {
            Flavor::Streamable { reinit: Some(waiting), .. } => {
                waiting.push(data);
                return;
            }
            Flavor::Streamable { initialize, .. } => {
                if let Message::Request(request) = message {
                    if request.method == mcp::INITIALIZE {
                        *initialize = request.params.clone();
                    }
                }
                state.url.clone()
            }
            Flavor::Sse { endpoint: Some(endpoint), replaying: false, .. } => endpoint.clone(),
            Flavor::Sse { waiting, .. } => {
                waiting.push(data);
                return;
            }
        };
        let headers = vec![
            Header::new("content-type", "application/json"),
            Header::new("accept", "application/json, text/event-stream"),
        ];
        let purpose = Purpose::Post { request, initialized, modern: false };
        let streamable = self.is_streamable_or_stdio(upstream);
        let Some((headers, data, purpose)) = self.hold(upstream, headers, data, purpose) else {
            return;
        };
        let fetch = self.fetch(ctx, upstream, "POST", target, headers, data, purpose);
        if initialized && streamable {
            if let Some(fetch) = fetch {
                self.close_gate(ctx, upstream, fetch);
            }
        }
    }

    /// Stops the request with upstream id `id`: its response stream is closed (how a 2026
    /// server is told a request is cancelled).
    pub(crate) fn cancel_request(&mut self, ctx: &mut Ctx, upstream: UpstreamId, id: &RequestId) {
        let fetch = self
            .fetches
            .iter()
            .find(|(_, f)| {
                f.upstream == upstream && matches!(&f.purpose, Purpose::Post { request: Some(r), .. } if r == id)
            })
            .map(|(fetch, _)| *fetch);
        if let Some(fetch) = fetch {
            self.fetches.remove(&fetch);
            ctx.push(Output::CancelFetch(fetch));
        }
    }

    /// Ends a remote upstream: its session is deleted, its fetches cancelled.
    pub(crate) fn close(&mut self, ctx: &mut Ctx, upstream: UpstreamId) {
        let open: Vec<FetchId> =
            self.fetches.iter().filter(|(_, f)| f.upstream == upstream).map(|(id, _)| *id).collect();
        for fetch in open {
            self.fetches.remove(&fetch);
            ctx.push(Output::CancelFetch(fetch));
        }
        if let Some(HttpUpstream { url, flavor: Flavor::Streamable { session: Some(_), .. }, .. }) =
            self.upstreams.get(&upstream)
        {
            let url = url.clone();
            self.fetch(ctx, upstream, "DELETE", url, Vec::new(), Vec::new(), Purpose::Delete);
        }
        self.upstreams.remove(&upstream);
    }

    /// Queues a fetch for `upstream` with its configured headers, its session, and the
    /// client's credentials where the server forwards them (never over configured ones); its
    /// number, if the upstream is known.
    #[allow(clippy::too_many_arguments)] // one call shape for every fetch; a struct would only rename them
    fn fetch(
        &mut self,
        ctx: &mut Ctx,
        upstream: UpstreamId,
        method: &str,
        url: String,
        mut headers: Vec<Header>,
        body: Vec<u8>,
        purpose: Purpose,
    ) -> Option<FetchId> {
        let state = self.upstreams.get(&upstream)?;
        headers.extend(state.headers.iter().map(|(name, value)| Header::new(name.clone(), value.clone())));
        let configured = state.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
        if let (true, false, Some(credentials)) =
            (state.connect.forward_authorization, configured, &state.connect.authorization)
        {
            headers.push(Header::new("authorization", credentials.clone()));
        }
        let modern = matches!(purpose, Purpose::Post { modern: true, .. });
        if let (Flavor::Streamable { session, protocol, .. }, false) = (&state.flavor, modern) {
            if let Some(session) = session {
                headers.push(Header::new("mcp-session-id", session.clone()));
            }
            if let Some(protocol) = protocol {
                headers.push(Header::new("mcp-protocol-version", protocol.clone()));
            }
        }
        self.next_fetch += 1;
        let fetch = FetchId(self.next_fetch);
        let sent = if matches!(purpose, Purpose::Post { .. }) { body.clone() } else { Vec::new() };
        let public_only = state.connect.public_only;
        self.fetches.insert(fetch, Fetch { upstream, purpose, sent, status: 0, body: Body::Unknown });
        ctx.push(Output::Fetch(FetchRequest { fetch, method: method.into(), url, headers, body, public_only }));
        Some(fetch)
    }
}

/// The `initialize` the proxy sends itself to renew an upstream session, with the client's
/// parameters.
fn reinitialize_body(params: serde_json::Value) -> Vec<u8> {
    let id = RequestId::String(REINITIALIZE_ID.into());
    Message::Request(mcp::initialize_request(id, Some(params))).to_bytes()
}

/// The headers of a message in the 2026-07-28 envelope (none for any other): the revision,
/// the method and, where the revision mirrors it, the name.
fn modern_headers(message: &Message) -> Option<Vec<Header>> {
    let (method, params) = match message {
        Message::Request(r) => (r.method.as_str(), &r.params),
        Message::Notification(n) => (n.method.as_str(), &n.params),
        Message::Response(_) => return None,
    };
    let meta = crate::wire::jsonrpc::param(params, "_meta")?;
    let version = meta.get(crate::modern::envelope::PROTOCOL_VERSION)?.as_str()?;
    let mut headers = vec![
        Header::new("content-type", "application/json"),
        Header::new("accept", "application/json, text/event-stream"),
        Header::new("mcp-protocol-version", version),
        Header::new("mcp-method", method),
    ];
    let named = crate::modern::envelope::named_param(method).and_then(|key| crate::wire::jsonrpc::param(params, key));
    if let Some(value) = named {
        let text = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
        headers.push(Header::new("mcp-name", crate::modern::envelope::encode_header(&text)));
    }
    Some(headers)
}

fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}
