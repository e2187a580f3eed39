//! The bounded memory of the SSE events sessions sent, for resuming broken streams.
//!
//! Event ids are `"{stream}-{seq}"`: the stream the event belongs to (0 is the session's GET
//! stream, 1.. its POST streams) and a sequence number unique within the session. A client
//! that reconnects with `Last-Event-ID` gets back what followed on that stream, and never an
//! event of another stream.

use std::collections::{BTreeMap, VecDeque};

use crate::ids::SessionId;

/// Where an event was sent: a stream of a session.
pub(crate) type StreamNo = u64;

/// The position of an event: its stream and its sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EventId {
    pub(crate) stream: StreamNo,
    pub(crate) seq: u64,
}

impl EventId {
    /// The id as written in the `id:` field.
    pub(crate) fn to_wire(self) -> String {
        format!("{}-{}", self.stream, self.seq)
    }

    /// Reads a `Last-Event-ID` value; `None` if it is not one of ours.
    pub(crate) fn parse(text: &str) -> Option<EventId> {
        let (stream, seq) = text.trim().split_once('-')?;
        Some(EventId { stream: stream.parse().ok()?, seq: seq.parse().ok()? })
    }
}

#[derive(Debug)]
struct Stored {
    session: SessionId,
    id: EventId,
    framed: Vec<u8>,
}

/// What one session has in the log.
#[derive(Debug, Default)]
struct Kept {
    /// Its entries' places in the log, oldest first.
    entries: VecDeque<u64>,
    bytes: usize,
}

/// The events sent on every session's streams, bounded per session (in events and bytes) and
/// across all sessions (in bytes): the oldest go first — per session when it holds too much,
/// across the log when all of them together do.
#[derive(Debug)]
pub(crate) struct EventLog {
    /// By place in the log: insertion order is age order.
    entries: BTreeMap<u64, Stored>,
    sessions: BTreeMap<SessionId, Kept>,
    next: u64,
    bytes: usize,
    max_events: usize,
    max_session_bytes: usize,
    max_bytes: usize,
}

impl EventLog {
    /// A log keeping at most `max_events` events and `max_session_bytes` bytes per session, and
    /// `max_bytes` bytes in all (0 events: off).
    pub(crate) fn new(max_events: usize, max_session_bytes: usize, max_bytes: usize) -> EventLog {
        EventLog {
            entries: BTreeMap::new(),
            sessions: BTreeMap::new(),
            next: 0,
            bytes: 0,
            max_events,
            max_session_bytes,
            max_bytes,
        }
    }

    /// Whether events are kept at all.
    pub(crate) fn enabled(&self) -> bool {
        self.max_events > 0
    }

    /// Remembers an event of `session` (already framed for SSE), forgetting the oldest beyond
    /// the bounds.
    pub(crate) fn push(&mut self, session: &SessionId, id: EventId, framed: &[u8]) {
        if !self.enabled() || framed.len() > self.max_session_bytes.min(self.max_bytes) {
            return;
        }
        self.next += 1;
        let place = self.next;
        self.bytes += framed.len();
        self.entries.insert(place, Stored { session: session.clone(), id, framed: framed.to_vec() });
        let kept = self.sessions.entry(session.clone()).or_default();
        kept.entries.push_back(place);
        kept.bytes += framed.len();
        while kept.entries.len() > self.max_events || kept.bytes > self.max_session_bytes {
            let Some(oldest) = kept.entries.pop_front() else {
                break;
            };
            if let Some(old) = self.entries.remove(&oldest) {
                kept.bytes -= old.framed.len();
                self.bytes -= old.framed.len();
            }
        }
        while self.bytes > self.max_bytes {
            let Some((_, old)) = self.entries.pop_first() else {
                break;
            };
            self.bytes -= old.framed.len();
            if let Some(kept) = self.sessions.get_mut(&old.session) {
                // The log's oldest entry is its session's oldest too.
                kept.entries.pop_front();
                kept.bytes -= old.framed.len();
            }
        }
    }

    /// The events of `session` on `after.stream` that came after `after`, oldest first.
    pub(crate) fn replay(&self, session: &SessionId, after: EventId) -> Vec<Vec<u8>> {
        let Some(kept) = self.sessions.get(session) else {
            return Vec::new();
        };
        kept.entries
            .iter()
            .filter_map(|place| self.entries.get(place))
            .filter(|e| e.id.stream == after.stream && e.id.seq > after.seq)
            .map(|e| e.framed.clone())
            .collect()
    }

    /// Forgets everything of a session that ended.
    pub(crate) fn forget(&mut self, session: &SessionId) {
        if let Some(kept) = self.sessions.remove(session) {
            for place in kept.entries {
                if let Some(old) = self.entries.remove(&place) {
                    self.bytes -= old.framed.len();
                }
            }
        }
    }

    /// Bytes held in all.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(stream: u64, seq: u64) -> EventId {
        EventId { stream, seq }
    }

    #[test]
    fn ids_round_trip_and_foreign_ids_are_refused() {
        assert_eq!(EventId::parse(&id(3, 17).to_wire()), Some(id(3, 17)));
        assert_eq!(EventId::parse("17"), None);
        assert_eq!(EventId::parse("a-1"), None);
        assert_eq!(EventId::parse("1-"), None);
    }

    fn session(n: u8) -> SessionId {
        SessionId::parse(&format!("{:032x}", n)).expect("an id")
    }

    #[test]
    fn replays_only_the_same_session_and_stream_after_the_cursor() {
        let mut log = EventLog::new(10, 1 << 20, 1 << 20);
        let (a, b) = (session(1), session(2));
        log.push(&a, id(1, 1), b"a");
        log.push(&a, id(0, 2), b"b");
        log.push(&b, id(1, 3), b"other session");
        log.push(&a, id(1, 3), b"c");
        log.push(&a, id(1, 4), b"d");
        assert_eq!(log.replay(&a, id(1, 1)), [b"c".to_vec(), b"d".to_vec()]);
        assert_eq!(log.replay(&a, id(0, 0)), [b"b".to_vec()]);
        assert!(log.replay(&a, id(2, 0)).is_empty());
        log.forget(&a);
        assert!(log.replay(&a, id(1, 0)).is_empty());
        assert_eq!(log.bytes(), b"other session".len());
    }

    #[test]
    fn stays_within_its_bounds_per_session_and_in_all() {
        let mut log = EventLog::new(3, 10, 1 << 20);
        let a = session(1);
        for seq in 0..100 {
            log.push(&a, id(0, seq), b"xxxx");
        }
        assert_eq!(log.replay(&a, id(0, 0)).len(), 2, "10 bytes hold two 4-byte events");
        assert!(log.bytes() <= 10);
        let mut shared = EventLog::new(1000, 1 << 20, 100);
        for n in 0..50u8 {
            shared.push(&session(n), id(0, 1), b"0123456789");
        }
        assert!(shared.bytes() <= 100, "the bound holds across sessions");
        assert!(shared.replay(&session(0), id(0, 0)).is_empty(), "the oldest session's events went first");
        assert_eq!(shared.replay(&session(49), id(0, 0)).len(), 1, "the newest are kept");
        let mut off = EventLog::new(0, 10, 10);
        off.push(&a, id(0, 1), b"x");
        assert!(off.replay(&a, id(0, 0)).is_empty());
    }
}
