//! The contract's vocabulary, one-to-one with the WIT (`wit/proxy.wit`): what the shell
//! observed ([`Input`]) and what it must do ([`Output`]).

use crate::config::StdioServer;
use crate::ids::{ExchangeId, FetchId, UpstreamId};
use crate::wire::http::{Header, HttpRequest, ResponseHead};

/// Something the shell observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// An HTTP request arrived and its body was read.
    HttpRequest(HttpRequest),
    /// The client of an exchange went away before the core finished it.
    HttpClosed(ExchangeId),
    /// An upstream wrote one message (a line of a stdio child's stdout).
    UpstreamMessage {
        /// Which upstream.
        upstream: UpstreamId,
        /// The line, without its newline.
        data: Vec<u8>,
    },
    /// An upstream ended, or could not be started.
    UpstreamClosed {
        /// Which upstream.
        upstream: UpstreamId,
        /// Why, for the log and for the errors sent to clients.
        reason: UpstreamEnd,
    },
    /// The deadline from [`crate::Proxy::poll_timeout`] passed.
    Timeout,
    /// The shell is stopping: open streams end gracefully (2026 listen streams get their
    /// final result) before the shell closes them.
    Shutdown,
    /// The status and headers of a [`Output::Fetch`] arrived.
    FetchHead {
        /// Which fetch.
        fetch: FetchId,
        /// The HTTP status.
        status: u16,
        /// The response headers.
        headers: Vec<Header>,
    },
    /// Body bytes of a fetch arrived.
    FetchData {
        /// Which fetch.
        fetch: FetchId,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A fetch is over; `error` says why if it failed or broke off.
    FetchEnd {
        /// Which fetch.
        fetch: FetchId,
        /// What went wrong, if anything.
        error: Option<String>,
    },
    /// Reverse mode: the local stdio client wrote one message (a line of the proxy's stdin,
    /// without its newline).
    ClientMessage(Vec<u8>),
    /// Reverse mode: the local client closed the proxy's stdin.
    ClientClosed,
}

/// Why an upstream ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamEnd {
    /// The process exited or its connection closed; the shell's description (like
    /// `exit status 1`), or the core's when its HTTP client gives up on a remote upstream.
    Exited(String),
    /// The process could not be started; the shell's description of why.
    SpawnFailed(String),
    /// The process stopped reading its input: the shell gave up on it.
    Stalled,
}

impl core::fmt::Display for UpstreamEnd {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            UpstreamEnd::Exited(why) => f.write_str(why),
            UpstreamEnd::SpawnFailed(why) => write!(f, "could not be started: {why}"),
            UpstreamEnd::Stalled => f.write_str("the server is not reading its input"),
        }
    }
}

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something is wrong but serving goes on.
    Warn,
    /// Lifecycle events.
    Info,
    /// Message traffic (with `debug` on).
    Debug,
}

/// Something the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Answer an exchange with a complete response.
    Respond {
        /// Status and headers.
        head: ResponseHead,
        /// The body.
        body: Vec<u8>,
    },
    /// Answer an exchange with a streaming (SSE) response; data follows.
    StreamStart(ResponseHead),
    /// Write bytes to an open stream.
    StreamData {
        /// The stream.
        exchange: ExchangeId,
        /// Bytes, already framed as server-sent events.
        data: Vec<u8>,
    },
    /// Finish an open stream.
    StreamEnd(ExchangeId),
    /// Start a stdio upstream; report its lines as [`Input::UpstreamMessage`].
    Spawn {
        /// The handle the core will use for it.
        upstream: UpstreamId,
        /// What to run.
        server: StdioServer,
    },
    /// Write one message (a line) to an upstream.
    Send {
        /// Which upstream.
        upstream: UpstreamId,
        /// The message, without a newline.
        data: Vec<u8>,
    },
    /// Stop an upstream (terminate the child).
    CloseUpstream(UpstreamId),
    /// Make an HTTP request to a remote upstream; report with the `Fetch*` inputs.
    Fetch(crate::upstream::http::FetchRequest),
    /// Abandon a fetch (stop reading its response).
    CancelFetch(FetchId),
    /// Write this text as the configuration file (atomically: the runtime API changed it).
    PersistConfig(String),
    /// Reverse mode: write one message to the local stdio client (a line of the proxy's
    /// stdout; the shell adds the newline).
    ClientSend(Vec<u8>),
    /// Reverse mode: the local client's session is over; the shell may exit once the
    /// core is idle.
    ClientDone,
    /// Write a log line.
    Log {
        /// Severity.
        level: LogLevel,
        /// The line.
        message: String,
    },
}
