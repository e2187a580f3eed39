//! A session's bounded memory of the SSE events it sent, for resuming broken streams.
//!
//! Event ids are `"{stream}-{seq}"`: the stream the event belongs to (0 is the session's GET
//! stream, 1.. its POST streams) and a sequence number unique within the session. A client
//! that reconnects with `Last-Event-ID` gets back what followed on that stream, and never an
//! event of another stream.

use std::collections::VecDeque;

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
    id: EventId,
    framed: Vec<u8>,
}

/// The most recent events of one session, bounded in count and in bytes.
#[derive(Debug)]
pub(crate) struct EventStore {
    events: VecDeque<Stored>,
    bytes: usize,
    max_events: usize,
    max_bytes: usize,
}

impl EventStore {
    /// A store that keeps at most `max_events` events and `max_bytes` bytes (0 events: off).
    pub(crate) fn new(max_events: usize, max_bytes: usize) -> EventStore {
        EventStore { events: VecDeque::new(), bytes: 0, max_events, max_bytes }
    }

    /// Whether events are kept at all.
    pub(crate) fn enabled(&self) -> bool {
        self.max_events > 0
    }

    /// Remembers an event (already framed for SSE), forgetting the oldest beyond the bounds.
    pub(crate) fn push(&mut self, id: EventId, framed: &[u8]) {
        if !self.enabled() || framed.len() > self.max_bytes {
            return;
        }
        self.bytes += framed.len();
        self.events.push_back(Stored { id, framed: framed.to_vec() });
        while self.events.len() > self.max_events || self.bytes > self.max_bytes {
            match self.events.pop_front() {
                Some(old) => self.bytes -= old.framed.len(),
                None => break,
            }
        }
    }

    /// The events of `after.stream` that came after `after`, oldest first.
    pub(crate) fn replay(&self, after: EventId) -> Vec<Vec<u8>> {
        self.events
            .iter()
            .filter(|e| e.id.stream == after.stream && e.id.seq > after.seq)
            .map(|e| e.framed.clone())
            .collect()
    }

    /// Bytes held.
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

    #[test]
    fn replays_only_the_same_stream_after_the_cursor() {
        let mut store = EventStore::new(10, 1 << 20);
        store.push(id(1, 1), b"a");
        store.push(id(0, 2), b"b");
        store.push(id(1, 3), b"c");
        store.push(id(1, 4), b"d");
        assert_eq!(store.replay(id(1, 1)), [b"c".to_vec(), b"d".to_vec()]);
        assert_eq!(store.replay(id(0, 0)), [b"b".to_vec()]);
        assert!(store.replay(id(2, 0)).is_empty());
    }

    #[test]
    fn stays_within_its_bounds() {
        let mut store = EventStore::new(3, 10);
        for seq in 0..100 {
            store.push(id(0, seq), b"xxxx");
        }
        assert_eq!(store.replay(id(0, 0)).len(), 2, "10 bytes hold two 4-byte events");
        assert!(store.bytes() <= 10);
        let mut off = EventStore::new(0, 10);
        off.push(id(0, 1), b"x");
        assert!(off.replay(id(0, 0)).is_empty());
    }
}
