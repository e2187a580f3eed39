//! HTTP-level policy: paths, methods, content types, sizes, auth and CORS.

mod harness;

use harness::*;
use mcp_proxy_core::{ExchangeId, Header, HttpRequest, Input};

#[test]
fn ping_answers_pong_without_auth() {
    let mut h = Harness::new(r#", "apiKey": "k""#);
    let (exchange, outputs) = h.request("GET", "/ping", &[], "");
    let (head, body) = response(&outputs, exchange).expect("answered");
    assert_eq!((head.status, body.as_str()), (200, Some("pong")));
}

#[test]
fn api_key_is_required_everywhere_else() {
    let mut h = Harness::new(r#", "apiKey": "k""#);
    let (exchange, outputs) = h.post(None, r#"{"jsonrpc":"2.0","id":0,"method":"initialize"}"#);
    let (head, body) = response(&outputs, exchange).expect("refused");
    assert_eq!(head.status, 401);
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("Unauthorized")));
    let (exchange, outputs) = h.request("GET", "/sse", &[("x-api-key", "wrong")], "");
    assert_eq!(status(&outputs, exchange), Some(401));
    let (exchange, outputs) = h.request("GET", "/sse", &[("authorization", "Bearer k")], "");
    assert!(stream_started(&outputs, exchange));
    // Preflights never need the key.
    let (exchange, outputs) = h.request(
        "OPTIONS",
        "/mcp",
        &[("origin", "http://localhost:6274"), ("access-control-request-method", "POST")],
        "",
    );
    assert_eq!(status(&outputs, exchange), Some(204));
}

#[test]
fn preflight_and_responses_carry_cors_headers() {
    let mut h = Harness::new("");
    let (exchange, outputs) = h.request(
        "OPTIONS",
        "/mcp",
        &[("origin", "http://localhost:6274"), ("access-control-request-method", "POST")],
        "",
    );
    let (head, _) = response(&outputs, exchange).expect("answered");
    assert_eq!(header(&head.headers, "access-control-allow-origin"), Some("*"));
    assert!(header(&head.headers, "access-control-allow-headers").is_some_and(|v| v.contains("Mcp-Session-Id")));
    let (exchange, outputs) = h.request("GET", "/nowhere", &[("origin", "http://localhost:6274")], "");
    let (head, _) = response(&outputs, exchange).expect("answered");
    assert_eq!(head.status, 404);
    assert!(header(&head.headers, "access-control-expose-headers").is_some_and(|v| v.contains("Mcp-Session-Id")));
}

#[test]
fn bad_bodies_get_json_rpc_errors_with_the_right_status() {
    let mut h = Harness::new("");
    let (exchange, outputs) = h.post(None, "{not json");
    let (head, body) = response(&outputs, exchange).expect("answered");
    assert_eq!((head.status, body["error"]["code"].as_i64()), (400, Some(-32700)));
    let (exchange, outputs) = h.post(None, r#"{"hello":"world"}"#);
    let (head, body) = response(&outputs, exchange).expect("answered");
    assert_eq!((head.status, body["error"]["code"].as_i64()), (400, Some(-32600)));
    let (exchange, outputs) = h.post(None, r#"{"jsonrpc":"2.0","id":[1],"method":"x"}"#);
    assert_eq!(status(&outputs, exchange), Some(400));
    let (exchange, outputs) = h.request("POST", "/mcp", &[("content-type", "text/plain")], "{}");
    assert_eq!(status(&outputs, exchange), Some(415));
    let (exchange, outputs) =
        h.request("POST", "/mcp", &[("content-type", "application/json"), ("accept", "text/html")], "{}");
    assert_eq!(status(&outputs, exchange), Some(406));
    let (exchange, outputs) = h.request("PUT", "/mcp", &[], "");
    assert_eq!(status(&outputs, exchange), Some(405));
    assert_eq!(h.proxy.session_count(), 0);
}

#[test]
fn oversized_bodies_get_413() {
    let mut h = Harness::new("");
    let request = HttpRequest {
        exchange: ExchangeId(77),
        method: "POST".into(),
        target: "/mcp".into(),
        headers: vec![Header::new("content-type", "application/json")],
        body: Vec::new(),
        body_too_large: true,
        via_loopback: true,
    };
    let outputs = h.input(Input::HttpRequest(request));
    assert_eq!(status(&outputs, ExchangeId(77)), Some(413));
}

#[test]
fn transports_can_be_switched_off() {
    let mut h = Harness::new(r#", "transports": {"sse": false, "stream": true}"#);
    let (exchange, outputs) = h.request("GET", "/sse", &[("accept", "text/event-stream")], "");
    assert_eq!(status(&outputs, exchange), Some(404));
}

#[test]
fn foreign_origins_and_rebound_hosts_get_403() {
    let mut h = Harness::new("");
    let (exchange, outputs) = h.request("OPTIONS", "/mcp", &[("origin", "https://evil.example")], "");
    assert_eq!(status(&outputs, exchange), Some(403));
    let (exchange, outputs) = h.post(None, r#"{"jsonrpc":"2.0","id":0,"method":"initialize"}"#);
    assert!(spawned(&outputs).is_some() && status(&outputs, exchange).is_none(), "no Origin: served");
    let headers = [("content-type", "application/json"), ("accept", JSON_AND_SSE), ("origin", "https://evil.example")];
    let (exchange, outputs) = h.request("POST", "/mcp", &headers, r#"{"jsonrpc":"2.0","id":0,"method":"initialize"}"#);
    let (head, body) = response(&outputs, exchange).expect("refused");
    assert_eq!(head.status, 403);
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("evil.example")));
    assert!(spawned(&outputs).is_none(), "nothing starts for a forged origin");
    let (exchange, outputs) = h.request("GET", "/sse", &[("host", "attacker.example:8080")], "");
    assert_eq!(status(&outputs, exchange), Some(403));
    // /ping stays open for health checks.
    let (exchange, outputs) = h.request("GET", "/ping", &[("origin", "https://evil.example")], "");
    assert_eq!(status(&outputs, exchange), Some(200));
}

#[test]
fn the_session_limit_gives_503() {
    let mut h = Harness::new(r#", "maxSessions": 1"#);
    h.initialize();
    let (exchange, outputs) = h.post(None, r#"{"jsonrpc":"2.0","id":0,"method":"initialize"}"#);
    assert_eq!(status(&outputs, exchange), Some(503));
    assert!(spawned(&outputs).is_none());
}
