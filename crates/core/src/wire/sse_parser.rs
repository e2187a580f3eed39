//! Reading server-sent events from a byte stream (what an upstream's SSE response carries).

/// One event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field (`message` when absent).
    pub(crate) event: String,
    /// The `data:` lines, joined with newlines.
    pub(crate) data: String,
    /// The `id:` field, if any.
    pub(crate) id: Option<String>,
}

/// Splits a byte stream into events, holding at most `limit` bytes of an unfinished one.
#[derive(Debug)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
    id: Option<String>,
    held: usize,
    limit: usize,
    overflowed: bool,
    /// Dropping the rest of an oversized event, up to its blank line.
    skipping: bool,
    /// While skipping: the current line has bytes (so its newline does not end the event).
    skipped_line: bool,
}

impl SseParser {
    /// A parser that refuses events larger than `limit` bytes.
    pub(crate) fn new(limit: usize) -> SseParser {
        SseParser {
            line: Vec::new(),
            event: None,
            data: Vec::new(),
            id: None,
            held: 0,
            limit,
            overflowed: false,
            skipping: false,
            skipped_line: false,
        }
    }

    /// Whether an event was dropped for being too large since the last call.
    pub(crate) fn overflowed(&mut self) -> bool {
        std::mem::take(&mut self.overflowed)
    }

    /// Feeds bytes; returns the events they completed.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &byte in bytes {
            if self.skipping {
                // Nothing of the skipped event is kept: a flag says whether a line has begun.
                match byte {
                    b'\n' if !self.skipped_line => self.skipping = false,
                    b'\n' => self.skipped_line = false,
                    b'\r' => {}
                    _ => self.skipped_line = true,
                }
                continue;
            }
            if byte == b'\n' {
                let line = std::mem::take(&mut self.line);
                let line = line.strip_suffix(b"\r").unwrap_or(&line);
                if let Some(event) = self.line_done(line) {
                    events.push(event);
                }
            } else {
                self.held += 1;
                if self.held > self.limit {
                    // Too large: drop this event entirely and say so.
                    self.overflowed = true;
                    self.reset();
                    self.skipping = true;
                    self.skipped_line = true;
                    continue;
                }
                self.line.push(byte);
            }
        }
        events
    }

    fn reset(&mut self) {
        self.line.clear();
        self.event = None;
        self.data.clear();
        self.id = None;
        self.held = 0;
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            let done = (!self.data.is_empty()).then(|| SseEvent {
                event: self.event.clone().unwrap_or_else(|| "message".into()),
                data: self.data.join("\n"),
                id: self.id.clone(),
            });
            self.event = None;
            self.data.clear();
            self.held = 0;
            return done;
        }
        if line.starts_with(b":") {
            return None;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = text.split_once(':').unwrap_or((&text, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => self.data.push(value.to_owned()),
            "id" => self.id = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_events_split_anywhere() {
        let stream = b"id: 1-2\nevent: message\ndata: {\"a\":1}\n\n: comment\n\ndata: x\r\ndata: y\r\n\r\nevent: endpoint\ndata: /messages?sessionId=9\n\n";
        let mut parser = SseParser::new(1024);
        let mut events = Vec::new();
        for chunk in stream.chunks(3) {
            events.extend(parser.feed(chunk));
        }
        assert_eq!(events.len(), 3);
        assert_eq!(events[0], SseEvent { event: "message".into(), data: "{\"a\":1}".into(), id: Some("1-2".into()) });
        assert_eq!(events[1].data, "x\ny");
        assert_eq!((events[2].event.as_str(), events[2].data.as_str()), ("endpoint", "/messages?sessionId=9"));
    }

    #[test]
    fn priming_events_without_data_produce_nothing() {
        let mut parser = SseParser::new(1024);
        assert!(parser.feed(b"id: 0-1\ndata: \n\n").iter().all(|e| e.data.is_empty()));
    }

    #[test]
    fn oversized_events_are_dropped_and_parsing_goes_on() {
        let mut parser = SseParser::new(16);
        let big = format!("data: {}\n\n", "x".repeat(100));
        assert!(parser.feed(big.as_bytes()).is_empty());
        assert!(parser.overflowed());
        let events = parser.feed(b"data: ok\n\n");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "ok");
        // An endless event holds nothing while it is skipped.
        for _ in 0..1000 {
            assert!(parser.feed(&[b'x'; 1024]).is_empty());
        }
        assert!(parser.line.capacity() <= 64, "the skipped bytes are not kept");
        assert!(parser.overflowed());
    }
}
