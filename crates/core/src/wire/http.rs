//! The HTTP exchange as the core sees it: a fully read request in, response parts out.

use crate::ids::ExchangeId;

/// One HTTP header. Names are compared case-insensitively; the core emits them in lowercase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The header name.
    pub name: String,
    /// The header value.
    pub value: String,
}

impl Header {
    /// Builds a header.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Header {
        Header { name: name.into(), value: value.into() }
    }
}

/// An HTTP request whose body the shell has read (up to the configured limit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// The shell's handle for this exchange.
    pub exchange: ExchangeId,
    /// The method, like `POST`.
    pub method: String,
    /// The request target: path and optional query.
    pub target: String,
    /// The request headers.
    pub headers: Vec<Header>,
    /// The body (empty when `body_too_large`).
    pub body: Vec<u8>,
    /// The body exceeded the configured maximum and was not read.
    pub body_too_large: bool,
    /// The connection arrived on a loopback address of the shell's (from the same machine);
    /// the DNS-rebinding checks depend on it.
    pub via_loopback: bool,
}

impl HttpRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
    }

    /// The path part of the target.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(self.target.as_str(), |(path, _)| path)
    }

    /// The decoded value of query parameter `key`.
    pub fn query_param(&self, key: &str) -> Option<String> {
        let (_, query) = self.target.split_once('?')?;
        form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
    }

    /// Whether the `Content-Type` is JSON.
    pub fn has_json_body(&self) -> bool {
        self.header("content-type").is_some_and(|value| media_type(value).eq_ignore_ascii_case("application/json"))
    }

    /// Whether the client accepts `media` (an absent `Accept` accepts anything).
    pub fn accepts(&self, media: &str) -> bool {
        let Some(accept) = self.header("accept") else {
            return true;
        };
        let (kind, _) = media.split_once('/').unwrap_or((media, ""));
        accept.split(',').map(media_type).any(|offered| {
            offered.eq_ignore_ascii_case(media)
                || offered == "*/*"
                || offered.strip_suffix("/*").is_some_and(|k| k.eq_ignore_ascii_case(kind))
        })
    }
}

fn media_type(value: &str) -> &str {
    value.split(';').next().unwrap_or("").trim()
}

/// Status and headers of a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// The exchange this answers.
    pub exchange: ExchangeId,
    /// The HTTP status code.
    pub status: u16,
    /// The response headers.
    pub headers: Vec<Header>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            exchange: ExchangeId(1),
            method: method.into(),
            target: target.into(),
            headers: headers.iter().map(|(n, v)| Header::new(*n, *v)).collect(),
            body: Vec::new(),
            body_too_large: false,
            via_loopback: true,
        }
    }

    #[test]
    fn splits_the_target() {
        let req = request("GET", "/messages?sessionId=ab%20c&x=1", &[]);
        assert_eq!(req.path(), "/messages");
        assert_eq!(req.query_param("sessionId").as_deref(), Some("ab c"));
        assert_eq!(req.query_param("x").as_deref(), Some("1"));
        assert_eq!(req.query_param("y"), None);
        assert_eq!(request("GET", "/p?bad=%zz", &[]).query_param("bad").as_deref(), Some("%zz"));
    }

    #[test]
    fn reads_content_negotiation() {
        let req = request(
            "POST",
            "/mcp",
            &[("Content-Type", "application/json; charset=utf-8"), ("Accept", "application/json, text/event-stream")],
        );
        assert!(req.has_json_body());
        assert!(req.accepts("text/event-stream"));
        assert!(req.accepts("application/json"));
        let only_json = request("POST", "/mcp", &[("accept", "application/json")]);
        assert!(!only_json.accepts("text/event-stream"));
        assert!(request("POST", "/mcp", &[("accept", "text/*")]).accepts("text/event-stream"));
        assert!(request("POST", "/mcp", &[]).accepts("text/event-stream"));
        assert!(!request("POST", "/mcp", &[("content-type", "text/plain")]).has_json_body());
    }
}
