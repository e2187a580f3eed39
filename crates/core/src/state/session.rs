//! Per-session state, as named states and pure data.

use std::collections::{BTreeMap, VecDeque};

use crate::ids::{ExchangeId, ProxyRequestId, ServerId, UpstreamId};
use crate::route::Target;
use crate::state::event_log::{EventId, StreamNo};
use crate::time::Instant;
use crate::wire::jsonrpc::{Message, RequestId};
use crate::wire::mcp::ProgressToken;

/// The stream number of a session's GET stream; POST streams count up from 1.
pub(crate) const STANDALONE_STREAM: StreamNo = 0;

/// How many server messages a Streamable HTTP session keeps while no stream can take them.
pub(crate) const BACKLOG_LIMIT: usize = 256;

/// Bytes of server messages a session keeps while no stream can take them.
pub(crate) const BACKLOG_BYTES: usize = 16 * 1024 * 1024;

/// Server messages waiting for a stream, bounded in count ([`BACKLOG_LIMIT`]) and in bytes
/// ([`BACKLOG_BYTES`]); the oldest go first.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    messages: VecDeque<(Message, usize)>,
    bytes: usize,
}

impl Backlog {
    /// Keeps `message`; returns how many older ones were dropped to make room.
    pub(crate) fn push(&mut self, message: Message) -> usize {
        let size = message.to_bytes().len();
        self.bytes += size;
        self.messages.push_back((message, size));
        let mut dropped = 0;
        while self.messages.len() > BACKLOG_LIMIT || self.bytes > BACKLOG_BYTES {
            let Some((_, size)) = self.messages.pop_front() else {
                break;
            };
            self.bytes -= size;
            dropped += 1;
        }
        dropped
    }

    /// Takes every waiting message, oldest first.
    pub(crate) fn drain(&mut self) -> Vec<Message> {
        self.bytes = 0;
        self.messages.drain(..).map(|(message, _)| message).collect()
    }
}

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
        /// Server messages waiting for a stream, oldest first.
        backlog: Backlog,
    },
    /// A stateless pool child: no client of its own.
    Pool {
        /// Its server.
        server: ServerId,
        /// Its place in the server's pool.
        slot: usize,
    },
    /// Legacy HTTP+SSE: one long-lived stream carries everything from the server.
    LegacySse {
        /// The stream.
        stream: ExchangeId,
    },
    /// Reverse mode: the local client on the shell's stdin and stdout.
    Stdio,
}

/// One upstream of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) server: ServerId,
    pub(crate) upstream: UpstreamId,
    /// It failed (initialize refused, or it exited): left out of the merged endpoint until it
    /// rejoins.
    pub(crate) failed: bool,
    /// When to try bringing it back after it failed.
    pub(crate) backoff: crate::upstream::backoff::Backoff,
}

/// One client session and the upstreams it owns.
#[derive(Debug)]
pub(crate) struct Session {
    /// The server(s) this session talks to.
    pub(crate) target: Target,
    /// One upstream per server of the session, in server order.
    pub(crate) members: Vec<Member>,
    pub(crate) state: SessionState,
    pub(crate) transport: Transport,
    /// Requests forwarded upstream and not yet answered: proxy id → the client's id.
    pub(crate) in_flight: BTreeMap<ProxyRequestId, RequestId>,
    /// Progress tokens of in-flight requests.
    pub(crate) progress: BTreeMap<ProgressToken, ProxyRequestId>,
    /// Server-to-client requests of a merged session, by the id the client saw: which upstream
    /// asked, and its own id (two servers may use the same ids).
    pub(crate) server_requests: BTreeMap<u64, (UpstreamId, RequestId)>,
    /// Which server a resource URI came from (merged sessions, from `resources/list`).
    pub(crate) resource_owners: BTreeMap<String, ServerId>,
    /// Which server a merged tool or prompt name came from (merged sessions, from the lists).
    pub(crate) name_owners: BTreeMap<String, ServerId>,
    /// The client's `initialize` parameters: a merged session's server that comes back, and an
    /// expired upstream session at the edge, are initialized with them.
    pub(crate) initialize_params: Option<serde_json::Value>,
    /// The `Authorization` header of the client's latest request, for servers that are to see it.
    pub(crate) client_authorization: Option<String>,
    /// The protocol revision negotiated at initialize, once known.
    pub(crate) protocol_version: Option<String>,
    /// At the edge, a digest of the credential the session was opened with (it is sealed for it).
    pub(crate) credential: [u8; 32],
    /// The last time the client did something in this session.
    pub(crate) last_activity: Instant,
    /// Its events are kept for resuming streams (in the proxy's event log).
    pub(crate) keeps_events: bool,
    next_seq: u64,
    next_stream: StreamNo,
}

impl Session {
    pub(crate) fn new(
        target: Target,
        members: Vec<Member>,
        state: SessionState,
        transport: Transport,
        now: Instant,
        keeps_events: bool,
    ) -> Session {
        Session {
            target,
            members,
            state,
            transport,
            in_flight: BTreeMap::new(),
            server_requests: BTreeMap::new(),
            resource_owners: BTreeMap::new(),
            name_owners: BTreeMap::new(),
            initialize_params: None,
            progress: BTreeMap::new(),
            protocol_version: None,
            client_authorization: None,
            credential: [0; 32],
            last_activity: now,
            keeps_events,
            next_seq: 0,
            next_stream: STANDALONE_STREAM,
        }
    }

    /// The id of the next event on `stream`.
    pub(crate) fn next_event_id(&mut self, stream: StreamNo) -> EventId {
        self.next_seq += 1;
        EventId { stream, seq: self.next_seq }
    }

    /// Numbers a new POST stream.
    pub(crate) fn next_stream(&mut self) -> StreamNo {
        self.next_stream += 1;
        self.next_stream
    }

    /// Whether the client speaks a revision that understands priming events (2025-11-25 on).
    pub(crate) fn wants_priming(&self) -> bool {
        self.keeps_events && self.protocol_version.as_deref().is_some_and(|v| v >= "2025-11-25")
    }

    /// The proxy id of the in-flight request the client knows as `id`.
    pub(crate) fn proxy_id_of(&self, id: &RequestId) -> Option<ProxyRequestId> {
        self.in_flight.iter().find(|(_, original)| *original == id).map(|(proxy, _)| *proxy)
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

    /// The upstream of `server` in this session.
    pub(crate) fn upstream_of(&self, server: ServerId) -> Option<UpstreamId> {
        self.members.iter().find(|m| m.server == server).map(|m| m.upstream)
    }

    /// The server behind `upstream`.
    pub(crate) fn server_of(&self, upstream: UpstreamId) -> Option<ServerId> {
        self.members.iter().find(|m| m.upstream == upstream).map(|m| m.server)
    }

    /// The servers whose upstreams answered initialize (all of them before that).
    pub(crate) fn live_servers(&self) -> Vec<ServerId> {
        self.members.iter().filter(|m| !m.failed).map(|m| m.server).collect()
    }

    /// Whether this is a Streamable HTTP session.
    pub(crate) fn is_streamable(&self) -> bool {
        matches!(self.transport, Transport::Streamable { .. })
    }
}
