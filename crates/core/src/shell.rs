//! Answers a shell gives on its own, when the core cannot decide: the request's body could not
//! be read, the core failed, the shell is stopping. Written here once so that the native host
//! and the Worker answer the same bytes, in the core's form (a JSON-RPC error with a null id).

use crate::error::codes;
use crate::state::exchange::error_body;
use crate::wire::http::Header;

/// Why a shell answers a request itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShellRefusal {
    /// The request (its head or its body) broke off or was malformed on the wire (400).
    RequestUnreadable,
    /// The request body did not arrive within the body deadline (408).
    BodyTimeout,
    /// The shell is shutting down (503).
    ShuttingDown,
    /// The core failed while handling the request; a fresh core took over (503).
    CoreFailed,
    /// The shell's configuration is invalid; the details are in its log only (500).
    Misconfigured,
    /// The shell could not draw random bytes for the core (500).
    NoRandomness,
    /// The core finished without answering the request (500; a bug).
    NoAnswer,
}

/// A response a shell sends as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShellResponse {
    /// The HTTP status.
    pub status: u16,
    /// The headers.
    pub headers: Vec<Header>,
    /// The body: a JSON-RPC error.
    pub body: Vec<u8>,
}

impl ShellRefusal {
    /// The HTTP status of the refusal.
    pub fn status(self) -> u16 {
        match self {
            ShellRefusal::RequestUnreadable => 400,
            ShellRefusal::BodyTimeout => 408,
            ShellRefusal::ShuttingDown | ShellRefusal::CoreFailed => 503,
            ShellRefusal::Misconfigured | ShellRefusal::NoRandomness | ShellRefusal::NoAnswer => 500,
        }
    }

    /// What the client is told (never a detail of the configuration or the machine).
    pub fn message(self) -> &'static str {
        match self {
            ShellRefusal::RequestUnreadable => "Bad Request: the request could not be read",
            ShellRefusal::BodyTimeout => "Request Timeout: the request body did not arrive in time",
            ShellRefusal::ShuttingDown => "Service Unavailable: the proxy is shutting down",
            ShellRefusal::CoreFailed => "Service Unavailable: the proxy failed and restarted; try again",
            ShellRefusal::Misconfigured => "Internal Server Error: the proxy is misconfigured (see its logs)",
            ShellRefusal::NoRandomness => "Internal Server Error: no secure random source",
            ShellRefusal::NoAnswer => "Internal Server Error: the request ended without an answer",
        }
    }

    /// The whole response.
    pub fn response(self) -> ShellResponse {
        let code = match self {
            ShellRefusal::RequestUnreadable | ShellRefusal::BodyTimeout => codes::INVALID_REQUEST,
            _ => codes::INTERNAL_ERROR,
        };
        ShellResponse {
            status: self.status(),
            headers: vec![Header::new("content-type", "application/json")],
            body: error_body(code, self.message()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_json_rpc_errors_with_their_status() {
        let response = ShellRefusal::BodyTimeout.response();
        assert_eq!(response.status, 408);
        let body: serde_json::Value = serde_json::from_slice(&response.body).expect("json");
        assert_eq!(body["id"], serde_json::Value::Null);
        assert_eq!(body["error"]["code"], codes::INVALID_REQUEST);
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("did not arrive")));
        assert_eq!(ShellRefusal::Misconfigured.response().status, 500);
    }
}
