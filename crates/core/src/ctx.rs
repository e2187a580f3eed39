//! What a feature is lent for one call: the configuration, the time, the random source, the
//! queue of outputs for the shell, and the timers.
//!
//! Features keep their own state and borrow this beside it, so no feature needs the whole
//! [`crate::Proxy`]. The helpers here are how every feature speaks to the shell: responses,
//! streams, refusals with a JSON-RPC error body, log lines.

use std::collections::VecDeque;

use rand_chacha::ChaCha20Rng;

use crate::config::Config;
use crate::error::codes;
use crate::ids::ExchangeId;
use crate::io::{LogLevel, Output};
use crate::state::exchange::{error_body, json_head, sse_head};
use crate::state::timers::Timers;
use crate::time::{Instant, WallClock};
use crate::wire::http::{Header, ResponseHead};
use crate::wire::jsonrpc::{Message, Response};

/// The context of one turn of the proxy.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The configuration in force (its server list changes through the server API).
    pub(crate) config: Config,
    /// The latest monotonic time handed in.
    pub(crate) now: Instant,
    /// The latest wall-clock time handed in (dates of sealed sessions).
    pub(crate) wall: WallClock,
    /// The seeded random source (session ids, nonces).
    pub(crate) rng: ChaCha20Rng,
    /// What the shell must do, in order.
    outputs: VecDeque<Output>,
    /// Deadlines.
    pub(crate) timers: Timers,
    /// A stream started since the keep-alive timer last ran.
    pub(crate) streams_opened: bool,
}

impl Ctx {
    pub(crate) fn new(config: Config, rng: ChaCha20Rng, now: Instant) -> Ctx {
        Ctx {
            config,
            now,
            wall: WallClock::default(),
            rng,
            outputs: VecDeque::new(),
            timers: Timers::default(),
            streams_opened: false,
        }
    }

    /// Queues an output for the shell.
    pub(crate) fn push(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    /// The next output for the shell.
    pub(crate) fn pop(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Writes a log line.
    pub(crate) fn log(&mut self, level: LogLevel, message: String) {
        self.outputs.push_back(Output::Log { level, message });
    }

    /// Answers an exchange with a complete response.
    pub(crate) fn respond(&mut self, head: ResponseHead, body: Vec<u8>) {
        self.outputs.push_back(Output::Respond { head, body });
    }

    /// Answers an exchange with an SSE stream; data follows.
    pub(crate) fn start_stream(&mut self, exchange: ExchangeId, headers: Vec<Header>) {
        self.streams_opened = true;
        self.outputs.push_back(Output::StreamStart(sse_head(exchange, headers)));
    }

    /// Writes to an open stream.
    pub(crate) fn stream_data(&mut self, exchange: ExchangeId, data: Vec<u8>) {
        self.outputs.push_back(Output::StreamData { exchange, data });
    }

    /// Ends an open stream.
    pub(crate) fn stream_end(&mut self, exchange: ExchangeId) {
        self.outputs.push_back(Output::StreamEnd(exchange));
    }

    /// Answers with an HTTP error status and a JSON-RPC error body.
    pub(crate) fn refuse(&mut self, exchange: ExchangeId, headers: Vec<Header>, status: u16, message: &str) {
        self.respond(json_head(exchange, status, headers), error_body(refusal_code(status), message));
    }

    /// Answers with an HTTP status and the given JSON-RPC response as body.
    pub(crate) fn refuse_with(&mut self, exchange: ExchangeId, headers: Vec<Header>, status: u16, response: Response) {
        self.respond(json_head(exchange, status, headers), Message::Response(response).to_bytes());
    }

    /// Answers 405 with the methods allowed.
    pub(crate) fn method_not_allowed(&mut self, exchange: ExchangeId, mut headers: Vec<Header>, allow: &str) {
        headers.push(Header::new("allow", allow));
        self.refuse(exchange, headers, 405, "Method Not Allowed");
    }
}

/// The JSON-RPC error code of an HTTP-level refusal.
pub(crate) fn refusal_code(status: u16) -> i64 {
    match status {
        413 | 415 | 406 => codes::INVALID_REQUEST,
        _ => codes::TRANSPORT,
    }
}
