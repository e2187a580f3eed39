//! Cross-origin resource sharing headers.

use crate::config::Cors;
use crate::wire::http::{Header, HttpRequest};

const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";
const ALLOW_HEADERS: &str =
    "Content-Type, Authorization, Accept, Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-ID, X-API-Key";
const EXPOSE_HEADERS: &str = "Mcp-Session-Id, Mcp-Protocol-Version";

/// The `Access-Control-Allow-Origin` value for `request`, if its origin is allowed.
fn allowed_origin(cors: &Cors, request: &HttpRequest) -> Option<String> {
    if !cors.enabled {
        return None;
    }
    if cors.origins.is_empty() || cors.origins.iter().any(|o| o == "*") {
        return Some("*".into());
    }
    let origin = request.header("origin")?;
    cors.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)).then(|| origin.to_owned())
}

/// Headers every response carries for cross-origin callers.
pub fn cors_response_headers(cors: &Cors, request: &HttpRequest) -> Vec<Header> {
    let mut headers = Vec::new();
    if let Some(origin) = allowed_origin(cors, request) {
        if origin != "*" {
            headers.push(Header::new("vary", "Origin"));
        }
        headers.push(Header::new("access-control-allow-origin", origin));
        headers.push(Header::new("access-control-expose-headers", EXPOSE_HEADERS));
    }
    headers
}

/// Headers answering a preflight (`OPTIONS`) request.
pub fn preflight_headers(cors: &Cors, request: &HttpRequest) -> Vec<Header> {
    let mut headers = cors_response_headers(cors, request);
    if headers.is_empty() {
        return headers;
    }
    let mut allow = String::from(ALLOW_HEADERS);
    for extra in &cors.allow_headers {
        allow.push_str(", ");
        allow.push_str(extra);
    }
    headers.push(Header::new("access-control-allow-methods", ALLOW_METHODS));
    headers.push(Header::new("access-control-allow-headers", allow));
    headers.push(Header::new("access-control-max-age", "86400"));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::http::tests::request;

    fn value<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
        headers.iter().find(|h| h.name == name).map(|h| h.value.as_str())
    }

    #[test]
    fn wildcard_by_default() {
        let headers =
            preflight_headers(&Cors::default(), &request("OPTIONS", "/mcp", &[("origin", "https://app.example")]));
        assert_eq!(value(&headers, "access-control-allow-origin"), Some("*"));
        assert!(value(&headers, "access-control-allow-headers").is_some_and(|v| v.contains("Mcp-Session-Id")));
        assert!(value(&headers, "access-control-allow-methods").is_some_and(|v| v.contains("DELETE")));
    }

    #[test]
    fn listed_origins_are_echoed_and_others_get_nothing() {
        let cors =
            Cors { enabled: true, origins: vec!["https://app.example".into()], allow_headers: vec!["X-Trace".into()] };
        let allowed = preflight_headers(&cors, &request("OPTIONS", "/mcp", &[("origin", "https://app.example")]));
        assert_eq!(value(&allowed, "access-control-allow-origin"), Some("https://app.example"));
        assert_eq!(value(&allowed, "vary"), Some("Origin"));
        assert!(value(&allowed, "access-control-allow-headers").is_some_and(|v| v.ends_with("X-Trace")));
        let other = preflight_headers(&cors, &request("OPTIONS", "/mcp", &[("origin", "https://evil.example")]));
        assert!(other.is_empty());
    }

    #[test]
    fn disabled_sends_nothing() {
        let cors = Cors { enabled: false, ..Cors::default() };
        assert!(cors_response_headers(&cors, &request("GET", "/mcp", &[("origin", "https://a")])).is_empty());
    }
}
