//! Open HTTP exchanges: what each one waits for, and how its response is shaped.

use crate::ids::{ExchangeId, SessionId};
use crate::state::event_log::StreamNo;
use crate::wire::http::{Header, ResponseHead};
use crate::wire::jsonrpc::{ErrorObject, Message, Response};

/// An exchange the core has not finished answering.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) session: SessionId,
    /// Headers every response on this exchange carries (CORS, session id).
    pub(crate) headers: Vec<Header>,
    pub(crate) kind: ExchangeKind,
}

/// What the exchange is.
#[derive(Debug)]
pub(crate) enum ExchangeKind {
    /// A POST that carried requests and waits for their answers.
    Post(PostState),
    /// A Streamable HTTP GET stream for unsolicited server messages.
    Standalone,
    /// A legacy SSE stream.
    LegacyStream,
    /// A GET with `Last-Event-ID` that took over the stream of POST exchange `post`.
    Resumed {
        /// The POST whose stream this connection continues.
        post: ExchangeId,
    },
    /// A 2026 `subscriptions/listen` stream.
    Listen,
}

/// The progress of a POST exchange.
#[derive(Debug)]
pub(crate) struct PostState {
    /// Requests still unanswered.
    pub(crate) outstanding: usize,
    /// The body was a batch: answer with an array.
    pub(crate) batch: bool,
    /// Answers collected while the response is still plain JSON.
    pub(crate) collected: Vec<Message>,
    /// The client accepts `text/event-stream`.
    pub(crate) accepts_sse: bool,
    /// Once the response has become an SSE stream: its number in the session.
    pub(crate) stream: Option<StreamNo>,
    /// The connection that carries the stream now: the POST itself, a GET that resumed it,
    /// or none while the client is away (events are kept for its return).
    pub(crate) connection: Option<ExchangeId>,
    /// The exchange carries `initialize`: a success sets `Mcp-Session-Id`.
    pub(crate) initialize: bool,
    /// A 2026 request: answers are shaped for the revision, events carry no ids.
    pub(crate) modern: Option<Box<crate::modern::ModernPost>>,
}

impl PostState {
    /// The state of a POST that carried `outstanding` requests.
    pub(crate) fn new(outstanding: usize, batch: bool, accepts_sse: bool, initialize: bool) -> PostState {
        PostState {
            outstanding,
            batch,
            collected: Vec::new(),
            accepts_sse,
            stream: None,
            connection: None,
            initialize,
            modern: None,
        }
    }
}

/// Response head for a JSON body.
pub(crate) fn json_head(exchange: ExchangeId, status: u16, mut headers: Vec<Header>) -> ResponseHead {
    headers.push(Header::new("content-type", "application/json"));
    ResponseHead { exchange, status, headers }
}

/// Response head that opens an SSE stream.
pub(crate) fn sse_head(exchange: ExchangeId, mut headers: Vec<Header>) -> ResponseHead {
    headers.push(Header::new("content-type", "text/event-stream"));
    headers.push(Header::new("cache-control", "no-cache, no-transform"));
    headers.push(Header::new("x-accel-buffering", "no"));
    ResponseHead { exchange, status: 200, headers }
}

/// A JSON-RPC error body with a null id, for refusals at the HTTP level.
pub(crate) fn error_body(code: i64, message: impl Into<String>) -> Vec<u8> {
    Message::Response(Response::error(None, ErrorObject::new(code, message))).to_bytes()
}
