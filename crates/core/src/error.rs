//! Typed errors of the core and their one mapping onto JSON-RPC error objects.

use crate::io::UpstreamEnd;
use crate::wire::jsonrpc::ErrorObject;

/// JSON-RPC error codes the proxy produces.
pub mod codes {
    /// The body is not valid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a valid JSON-RPC message.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method is not available.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The resource is unknown (the MCP SDKs' "resource not found").
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
    /// An internal error of the proxy.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// A refusal at the HTTP level; its status says which (401 no credential, 403 forbidden,
    /// 404 unknown session, 409, 503 ...). The MCP SDKs' servers use this code for theirs.
    pub const TRANSPORT: i64 = -32000;
    /// A request got no answer in time (the same code the MCP SDKs use for "request timeout").
    pub const REQUEST_TIMEOUT: i64 = -32001;
    /// The session has too many requests in flight.
    pub const TOO_MANY_REQUESTS: i64 = -32003;
    /// The upstream server exited, could not be started, or its connection failed.
    pub const UPSTREAM_CLOSED: i64 = -32004;
    /// The session ended (the client deleted it, it idled out, the proxy stopped) while the
    /// request was in flight.
    pub const SESSION_ENDED: i64 = -32005;
    /// The client cancelled the request (its answer, if it still listens).
    pub const CANCELLED: i64 = -32006;
    /// 2026-07-28: a header and the body disagree, or a required header is missing
    /// (`HeaderMismatch`).
    pub const HEADER_MISMATCH: i64 = -32020;
    /// 2026-07-28: the server needs a client capability the request did not declare
    /// (`data.requiredCapabilities` says which).
    pub const MISSING_CAPABILITY: i64 = -32021;
    /// 2026-07-28: the revision named is not served (`data.supported` lists what is).
    pub const UNSUPPORTED_VERSION: i64 = -32022;
}

/// A configuration error, naming the field it is about.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// The path of the offending field, like `cors.origins[1]` (`.` for the document itself).
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    /// Builds an error about the field at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { path: path.into(), message: message.into() }
    }
}

/// Why a forwarded request failed without an answer from upstream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The upstream server exited or its connection closed.
    #[error("upstream server closed the connection: {0}")]
    UpstreamClosed(UpstreamEnd),
    /// The upstream server gave no answer within the request timeout.
    #[error("request timed out after {0} ms")]
    Timeout(u64),
    /// The upstream did not finish `initialize` within the connection timeout.
    #[error("upstream server did not answer initialize within {0} ms")]
    ConnectTimeout(u64),
    /// The session ended (DELETE or shutdown) while the request was in flight.
    #[error("session ended")]
    SessionEnded,
    /// The client cancelled the request.
    #[error("request cancelled by the client")]
    Cancelled,
}

impl RequestError {
    /// The JSON-RPC error object that reports this error to the client.
    pub fn to_error_object(&self) -> ErrorObject {
        let code = match self {
            RequestError::Timeout(_) | RequestError::ConnectTimeout(_) => codes::REQUEST_TIMEOUT,
            RequestError::UpstreamClosed(_) => codes::UPSTREAM_CLOSED,
            RequestError::SessionEnded => codes::SESSION_ENDED,
            RequestError::Cancelled => codes::CANCELLED,
        };
        ErrorObject::new(code, self.to_string())
    }
}
