//! What every transport checks of a POST body before it reads a message, written once: its
//! size, its media type, and that it parses as JSON-RPC.

use crate::ctx::Ctx;
use crate::ids::SessionId;
use crate::io::LogLevel;
use crate::wire::http::{Header, HttpRequest};
use crate::wire::jsonrpc::{Message, Payload};

/// Refuses a body the shell found too large (413) or that is not JSON (415), answering the
/// refusal itself; true if the body may be read.
pub(crate) fn acceptable(ctx: &mut Ctx, request: &HttpRequest, cors: &[Header]) -> bool {
    if request.body_too_large {
        let message = format!("Payload Too Large: the body exceeds {} bytes", ctx.config.max_body_size);
        ctx.refuse(request.exchange, cors.to_vec(), 413, &message);
        return false;
    }
    if !request.has_json_body() {
        let message = "Unsupported Media Type: Content-Type must be application/json";
        ctx.refuse(request.exchange, cors.to_vec(), 415, message);
        return false;
    }
    true
}

/// The messages of a body, and whether it was a batch; a body that does not parse is answered
/// with its JSON-RPC error (HTTP 400) and gives `None`.
pub(crate) fn messages(ctx: &mut Ctx, request: &HttpRequest, cors: &[Header]) -> Option<(Vec<Message>, bool)> {
    match Payload::parse(&request.body) {
        Ok(Payload::Single(message)) => Some((vec![message], false)),
        Ok(Payload::Batch(messages)) => Some((messages, true)),
        Err(error) => {
            ctx.refuse_with(request.exchange, cors.to_vec(), 400, error.to_response());
            None
        }
    }
}

/// With `--debug`, logs what a client sent in a session.
pub(crate) fn log_received(ctx: &mut Ctx, session: &SessionId, body: &[u8]) {
    if ctx.config.debug {
        ctx.log(LogLevel::Debug, format!("session {session} <- client: {}", String::from_utf8_lossy(body)));
    }
}
