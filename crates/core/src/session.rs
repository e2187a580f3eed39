//! Per-session state, as named states and pure data.

use std::collections::{HashMap, VecDeque};

use crate::ids::{ExchangeId, ProxyRequestId, UpstreamId};
use crate::jsonrpc::RequestId;
use crate::mcp::ProgressToken;
use crate::time::Instant;

/// How many server messages a Streamable HTTP session keeps while no stream can take them.
pub(crate) const BACKLOG_LIMIT: usize = 256;

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionState {
    /// The child was started and `initialize` forwarded; its result is due by `deadline`.
    ExpectInitializeResult {
        /// When the connection timeout strikes.
        deadline: Instant,
    },
    /// Initialized: messages flow both ways.
    Ready,
}

/// The client-facing transport of a session.
#[derive(Debug)]
pub(crate) enum Transport {
    /// Streamable HTTP: POSTs carry requests, an optional GET stream carries unsolicited messages.
    Streamable {
        /// The open GET stream, if any.
        standalone: Option<ExchangeId>,
        /// Open POST exchanges, oldest first.
        posts: Vec<ExchangeId>,
        /// Server messages waiting for a stream (SSE-framed event payloads), oldest first.
        backlog: VecDeque<Vec<u8>>,
    },
    /// A stateless pool child: no client of its own.
    Pool {
        /// Its place in the pool.
        slot: usize,
    },
    /// Legacy HTTP+SSE: one long-lived stream carries everything from the server.
    LegacySse {
        /// The stream.
        stream: ExchangeId,
    },
}

/// One client session and the upstream it owns.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) upstream: UpstreamId,
    pub(crate) state: SessionState,
    pub(crate) transport: Transport,
    /// Requests forwarded upstream and not yet answered: proxy id → the client's id.
    pub(crate) in_flight: HashMap<ProxyRequestId, RequestId>,
    /// Progress tokens of in-flight requests.
    pub(crate) progress: HashMap<ProgressToken, ProxyRequestId>,
    next_event_id: u64,
}

impl Session {
    pub(crate) fn new(upstream: UpstreamId, state: SessionState, transport: Transport) -> Session {
        Session {
            upstream,
            state,
            transport,
            in_flight: HashMap::new(),
            progress: HashMap::new(),
            next_event_id: 0,
        }
    }

    /// The id of the next SSE event this session sends.
    pub(crate) fn next_event_id(&mut self) -> String {
        self.next_event_id += 1;
        self.next_event_id.to_string()
    }

    /// The proxy id of the in-flight request the client knows as `id`.
    pub(crate) fn proxy_id_of(&self, id: &RequestId) -> Option<ProxyRequestId> {
        self.in_flight
            .iter()
            .find(|(_, original)| *original == id)
            .map(|(proxy, _)| *proxy)
    }

    /// Forgets an answered, failed or cancelled request.
    pub(crate) fn finish(&mut self, proxy_id: ProxyRequestId, progress: Option<&ProgressToken>) {
        self.in_flight.remove(&proxy_id);
        if let Some(token) = progress {
            if self.progress.get(token) == Some(&proxy_id) {
                self.progress.remove(token);
            }
        }
    }

    /// Whether this is a Streamable HTTP session.
    pub(crate) fn is_streamable(&self) -> bool {
        matches!(self.transport, Transport::Streamable { .. })
    }
}
