//! Server-sent events framing.

/// Frames `data` as one server-sent event with an optional id and event name.
///
/// Each line of `data` becomes its own `data:` field, so a payload with newlines
/// still arrives as one event.
pub fn event(id: Option<&str>, name: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 48);
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_single_and_multi_line_data() {
        assert_eq!(event(Some("3"), Some("message"), b"{}"), b"id: 3\nevent: message\ndata: {}\n\n");
        assert_eq!(
            event(None, Some("endpoint"), b"/messages?sessionId=a"),
            b"event: endpoint\ndata: /messages?sessionId=a\n\n"
        );
        assert_eq!(event(None, None, b"a\r\nb"), b"data: a\ndata: b\n\n");
    }
}
