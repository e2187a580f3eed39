//! The core at the edge: every request is served by a fresh proxy, and the session travels in
//! its sealed id.

mod harness;

use harness::*;
use mcp_proxy_core::{Config, Input, Output};
use serde_json::{json, Value};

const KEY: &str = "3f9a0c4e7b21d86f5a0e9c3b7d14f2a68e5c0b9d3a7f1e24c6b8d0a5f3e7c91b";

fn file() -> String {
    json!({"mcpServers": {
        "remote": {"transportType": "streamable-http", "url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": "Bearer upstream-secret"}},
        "other": {"transportType": "streamable-http", "url": "http://127.0.0.1:9/other"}
    }})
    .to_string()
}

/// A fresh proxy, as a new Worker isolate would build for one request.
fn isolate(seed: u8) -> Harness {
    let config = json!({"configFile": {"text": file()}, "edge": {"sessionKey": KEY}}).to_string();
    Harness::with_seed(&config, [seed; 32])
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"edge-test","version":"1"}}}"#;
const INIT_RESULT: &str =
    r#"{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"up","version":"1"}}"#;

fn header_of(fetch: &mcp_proxy_core::FetchRequest, name: &str) -> Option<String> {
    fetch.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.clone())
}

fn json_of(data: &[u8]) -> Value {
    serde_json::from_slice(data).expect("json")
}

/// Initializes a session on `/remote/mcp` in its own isolate; returns the sealed id.
fn initialize() -> String {
    let mut h = isolate(1);
    let (exchange, outputs) = h.post_to("/remote/mcp", None, &[], INIT);
    let post = fetches(&outputs).remove(0);
    assert_eq!(json_of(&post.body)["params"]["clientInfo"]["name"], "edge-test");
    head(&mut h, post.fetch, 200, &[("content-type", "application/json"), ("mcp-session-id", "upstream-7")]);
    let outputs = body(&mut h, post.fetch, &format!(r#"{{"jsonrpc":"2.0","id":0,"result":{INIT_RESULT}}}"#));
    let (head, reply) = response(&outputs, exchange).expect("answered");
    assert_eq!(reply["result"]["serverInfo"]["name"], "up");
    let sealed = header(&head.headers, "mcp-session-id").expect("a session id").to_owned();
    assert!(sealed.starts_with("e2."), "{sealed}");
    assert!(!sealed.contains("upstream-7") && !sealed.contains("secret"), "nothing readable in the id");
    assert!(fetches(&outputs).is_empty(), "no stream opened: nothing may outlive the request");
    sealed
}

#[test]
fn a_session_continues_in_a_fresh_isolate() {
    let sealed = initialize();
    let mut h = isolate(2);
    let call = r#"{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"slow","arguments":{},"_meta":{"progressToken":"p"}}}"#;
    let (exchange, outputs) = h.post_to("/remote/mcp", Some(&sealed), &[], call);
    let post = fetches(&outputs).remove(0);
    assert_eq!(header_of(&post, "mcp-session-id").as_deref(), Some("upstream-7"), "the upstream session is resumed");
    assert_eq!(header_of(&post, "mcp-protocol-version").as_deref(), Some("2025-06-18"));
    assert_eq!(header_of(&post, "authorization").as_deref(), Some("Bearer upstream-secret"));
    assert_eq!(json_of(&post.body)["id"], "c1", "the client's own id goes upstream");
    head(&mut h, post.fetch, 200, &[("content-type", "text/event-stream")]);
    let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p","progress":1}}"#;
    let outputs = h.input(Input::FetchData { fetch: post.fetch, data: format!("data: {progress}\n\n").into_bytes() });
    assert!(stream_started(&outputs, exchange), "progress streams before the result");
    assert_eq!(events(&outputs, exchange)[0]["params"]["progress"], 1);
    let result = r#"{"jsonrpc":"2.0","id":"c1","result":{"content":[]}}"#;
    let mut outputs = h.input(Input::FetchData { fetch: post.fetch, data: format!("data: {result}\n\n").into_bytes() });
    outputs.extend(h.input(Input::FetchEnd { fetch: post.fetch, error: None }));
    assert_eq!(events(&outputs, exchange)[0]["id"], "c1");
    assert!(stream_ended(&outputs, exchange));
    assert!(h.proxy.is_idle(), "the request is over");
}

#[test]
fn tampered_foreign_and_misplaced_ids_get_404() {
    let sealed = initialize();
    let mut tampered = sealed.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'x' { b'y' } else { b'x' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    for (path, id) in [
        ("/remote/mcp", tampered.as_str()),
        ("/remote/mcp", "0123456789abcdef0123456789abcdef"),
        ("/other/mcp", sealed.as_str()),
        ("/mcp", sealed.as_str()),
    ] {
        let mut h = isolate(3);
        let (exchange, outputs) = h.post_to(path, Some(id), &[], ping);
        assert_eq!(status(&outputs, exchange), Some(404), "{path} {id}");
        assert!(fetches(&outputs).is_empty());
    }
    let config = json!({"configFile": {"text": file()}, "edge": {"sessionKey": "c1d2e3f405162738495a6b7c8d9eafb0c1d2e3f405162738495a6b7c8d9eafb1"}});
    let mut h = Harness::with_config(&config.to_string());
    let (exchange, outputs) = h.post_to("/remote/mcp", Some(&sealed), &[], ping);
    assert_eq!(status(&outputs, exchange), Some(404), "sealed under another key");
    // The id was sealed for a client that presented no credential: with one, it does not open.
    let mut h = isolate(5);
    let (exchange, outputs) = h.post_to("/remote/mcp", Some(&sealed), &[("authorization", "Bearer thief")], ping);
    assert_eq!(status(&outputs, exchange), Some(404), "bound to the credential it was sealed for");
}

#[test]
fn get_listens_upstream_while_the_client_listens_and_delete_ends_the_upstream_session() {
    let sealed = initialize();
    let mut h = isolate(4);
    let (get, outputs) =
        h.request("GET", "/remote/mcp", &[("accept", "text/event-stream"), ("mcp-session-id", &sealed)], "");
    assert!(stream_started(&outputs, get));
    let listen = fetches(&outputs).remove(0);
    assert_eq!((listen.method.as_str(), header_of(&listen, "mcp-session-id").as_deref()), ("GET", Some("upstream-7")));
    head(&mut h, listen.fetch, 200, &[("content-type", "text/event-stream")]);
    let changed = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
    let outputs = h.input(Input::FetchData { fetch: listen.fetch, data: format!("data: {changed}\n\n").into_bytes() });
    assert_eq!(events(&outputs, get)[0]["method"], "notifications/tools/list_changed");
    assert!(!h.proxy.is_idle(), "the client listens");
    h.input(Input::HttpClosed(get));
    assert!(h.proxy.is_idle(), "the client left: the upstream stream may go");

    let mut h = isolate(5);
    let (exchange, outputs) = h.request("DELETE", "/remote/mcp", &[("mcp-session-id", &sealed)], "");
    assert_eq!(status(&outputs, exchange), Some(200));
    let delete = fetches(&outputs).remove(0);
    assert_eq!(
        (delete.method.as_str(), header_of(&delete, "mcp-session-id").as_deref()),
        ("DELETE", Some("upstream-7"))
    );
}

#[test]
fn an_expired_upstream_session_is_initialized_again_with_the_clients_parameters() {
    let sealed = initialize();
    let mut h = isolate(6);
    let (exchange, outputs) =
        h.post_to("/remote/mcp", Some(&sealed), &[], r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#);
    let post = fetches(&outputs).remove(0);
    let outputs = head(&mut h, post.fetch, 404, &[]);
    let reinit = fetches(&outputs).remove(0);
    let body_of = json_of(&reinit.body);
    assert_eq!(body_of["method"], "initialize");
    assert_eq!(body_of["params"]["clientInfo"]["name"], "edge-test", "the parameters travelled in the sealed id");
    head(&mut h, reinit.fetch, 200, &[("content-type", "application/json"), ("mcp-session-id", "upstream-8")]);
    let outputs = body(
        &mut h,
        reinit.fetch,
        &format!(r#"{{"jsonrpc":"2.0","id":"mcp-proxy-reinitialize","result":{INIT_RESULT}}}"#),
    );
    let resent: Vec<_> = fetches(&outputs);
    let retry = resent
        .iter()
        .find(|f| serde_json::from_slice::<Value>(&f.body).is_ok_and(|b| b["id"] == 5))
        .unwrap_or_else(|| panic!("the request is sent again: {resent:?}"));
    assert_eq!(header_of(retry, "mcp-session-id").as_deref(), Some("upstream-8"));
    head(&mut h, retry.fetch, 200, &[("content-type", "application/json")]);
    let outputs = body(&mut h, retry.fetch, r#"{"jsonrpc":"2.0","id":5,"result":{"tools":[]}}"#);
    assert_eq!(response(&outputs, exchange).expect("answered").1["result"]["tools"], json!([]));
}

#[test]
fn a_cancellation_in_a_later_request_names_the_clients_id() {
    let sealed = initialize();
    let mut h = isolate(7);
    let cancel = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"c1","reason":"user"}}"#;
    let (exchange, outputs) = h.post_to("/remote/mcp", Some(&sealed), &[], cancel);
    assert_eq!(status(&outputs, exchange), Some(202));
    let sent = fetches(&outputs).remove(0);
    assert_eq!(json_of(&sent.body)["params"]["requestId"], "c1");
}

#[test]
fn what_cannot_run_at_the_edge_is_refused_naming_the_server() {
    let stdio = json!({"mcpServers": {"ok": {"transportType": "streamable-http", "url": "http://h/mcp"}, "local": {"command": "npx"}}});
    let error =
        Config::from_json(&json!({"configFile": {"text": stdio.to_string()}, "edge": {"sessionKey": KEY}}).to_string())
            .expect_err("stdio at the edge");
    assert_eq!(error.path, "mcpServers.local");
    assert!(error.message.contains("\"local\" is a stdio server"), "{error}");
    let short = json!({"configFile": {"text": file()}, "edge": {"sessionKey": "short"}});
    assert_eq!(Config::from_json(&short.to_string()).expect_err("short key").path, "edge.sessionKey");
    let mut h = isolate(8);
    let (exchange, outputs) = h.request("GET", "/api/servers", &[], "");
    assert_eq!(status(&outputs, exchange), Some(404), "no runtime API at the edge");
    let (exchange, outputs) = h.request("GET", "/remote/sse", &[("accept", "text/event-stream")], "");
    assert_eq!(status(&outputs, exchange), Some(404), "no legacy SSE sessions for clients at the edge");
    assert!(!outputs.iter().any(|o| matches!(o, Output::StreamStart(_))));
}

#[test]
fn the_merged_endpoint_seals_every_upstream_session() {
    let mut h = isolate(9);
    let (exchange, outputs) = h.post_to("/mcp", None, &[], INIT);
    let posts = fetches(&outputs);
    assert_eq!(posts.len(), 2);
    let mut outputs = Vec::new();
    for (n, post) in posts.iter().enumerate() {
        let session = format!("up-{n}");
        head(&mut h, post.fetch, 200, &[("content-type", "application/json"), ("mcp-session-id", &session)]);
        outputs = body(&mut h, post.fetch, &format!(r#"{{"jsonrpc":"2.0","id":0,"result":{INIT_RESULT}}}"#));
    }
    let (head_, _) = response(&outputs, exchange).expect("answered");
    let sealed = header(&head_.headers, "mcp-session-id").expect("sealed").to_owned();
    let mut h = isolate(10);
    let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"other__echo","arguments":{}}}"#;
    let (_, outputs) = h.post_to("/mcp", Some(&sealed), &[], call);
    let post = fetches(&outputs).remove(0);
    assert_eq!(post.url, "http://127.0.0.1:9/other", "routed by prefix");
    let other = posts.iter().position(|p| p.url.ends_with("/other")).expect("other was initialized");
    assert_eq!(header_of(&post, "mcp-session-id"), Some(format!("up-{other}")));
    assert_eq!(json_of(&post.body)["params"]["name"], "echo");
}

fn sse_isolate(seed: u8) -> Harness {
    let file = json!({"mcpServers": {"legacy": {"url": "http://127.0.0.1:9/sse"}}}).to_string();
    let config = json!({"configFile": {"text": file}, "edge": {"sessionKey": KEY}}).to_string();
    Harness::with_seed(&config, [seed; 32])
}

/// The upstream's SSE stream sends one event.
fn sse_event(h: &mut Harness, fetch: mcp_proxy_core::FetchId, event: &str, data: &str) -> Vec<Output> {
    h.input(Input::FetchData { fetch, data: format!("event: {event}\ndata: {data}\n\n").into_bytes() })
}

#[test]
fn a_legacy_sse_upstream_gets_a_new_session_per_request_initialized_like_the_client_did() {
    // The client's initialize opens an upstream SSE session.
    let mut h = sse_isolate(11);
    let (exchange, outputs) = h.post_to("/legacy/mcp", None, &[], INIT);
    let stream = fetches(&outputs).remove(0);
    assert_eq!((stream.method.as_str(), stream.url.as_str()), ("GET", "http://127.0.0.1:9/sse"));
    head(&mut h, stream.fetch, 200, &[("content-type", "text/event-stream")]);
    let outputs = sse_event(&mut h, stream.fetch, "endpoint", "/messages?sessionId=one");
    let post = fetches(&outputs).remove(0);
    assert_eq!(post.url, "http://127.0.0.1:9/messages?sessionId=one");
    assert_eq!(json_of(&post.body)["method"], "initialize");
    head(&mut h, post.fetch, 202, &[]);
    h.input(Input::FetchEnd { fetch: post.fetch, error: None });
    assert!(!h.proxy.is_idle(), "the client still waits");
    let outputs =
        sse_event(&mut h, stream.fetch, "message", &format!(r#"{{"jsonrpc":"2.0","id":0,"result":{INIT_RESULT}}}"#));
    let (head_, _) = response(&outputs, exchange).expect("answered");
    let sealed = header(&head_.headers, "mcp-session-id").expect("sealed").to_owned();
    assert!(h.proxy.is_idle(), "done: the upstream stream may be abandoned");

    // A later request, in a fresh isolate: a new upstream session, initialized first.
    let mut h = sse_isolate(12);
    let (exchange, outputs) =
        h.post_to("/legacy/mcp", Some(&sealed), &[], r#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#);
    let stream = fetches(&outputs).remove(0);
    head(&mut h, stream.fetch, 200, &[("content-type", "text/event-stream")]);
    let outputs = sse_event(&mut h, stream.fetch, "endpoint", "/messages?sessionId=two");
    let replay = fetches(&outputs).remove(0);
    let replayed = json_of(&replay.body);
    assert_eq!(replayed["method"], "initialize");
    assert_eq!(replayed["params"]["clientInfo"]["name"], "edge-test");
    h.input(Input::FetchEnd { fetch: replay.fetch, error: None });
    let outputs = sse_event(
        &mut h,
        stream.fetch,
        "message",
        &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{INIT_RESULT}}}"#, replayed["id"]),
    );
    assert!(response(&outputs, exchange).is_none(), "the proxy's own initialize is not the client's business");
    let sent: Vec<Value> = fetches(&outputs).iter().map(|f| json_of(&f.body)).collect();
    assert_eq!(sent[0]["method"], "notifications/initialized");
    assert_eq!(sent[1]["method"], "tools/list");
    for fetch in fetches(&outputs) {
        h.input(Input::FetchEnd { fetch: fetch.fetch, error: None });
    }
    let outputs = sse_event(&mut h, stream.fetch, "message", r#"{"jsonrpc":"2.0","id":4,"result":{"tools":[]}}"#);
    assert_eq!(response(&outputs, exchange).expect("answered").1["id"], 4);
    assert!(h.proxy.is_idle());
}

#[test]
fn a_resource_of_the_merged_endpoint_is_asked_of_every_server_at_the_edge() {
    let mut h = isolate(13);
    let (exchange, outputs) = h.post_to("/mcp", None, &[], INIT);
    let mut outputs_ = Vec::new();
    for (n, post) in fetches(&outputs).iter().enumerate() {
        head(&mut h, post.fetch, 200, &[("content-type", "application/json"), ("mcp-session-id", &format!("up-{n}"))]);
        outputs_ = body(&mut h, post.fetch, &format!(r#"{{"jsonrpc":"2.0","id":0,"result":{INIT_RESULT}}}"#));
    }
    let sealed =
        header(&response(&outputs_, exchange).expect("answered").0.headers, "mcp-session-id").expect("id").to_owned();
    let mut h = isolate(14);
    let read = r#"{"jsonrpc":"2.0","id":8,"method":"resources/read","params":{"uri":"test://doc"}}"#;
    let (exchange, outputs) = h.post_to("/mcp", Some(&sealed), &[], read);
    let asked = fetches(&outputs);
    assert_eq!(asked.len(), 2, "nothing remembers who listed it: both servers are asked");
    let mut last = Vec::new();
    for post in &asked {
        head(&mut h, post.fetch, 200, &[("content-type", "application/json")]);
        let answer = if post.url.ends_with("/other") {
            r#"{"jsonrpc":"2.0","id":8,"result":{"contents":[{"uri":"test://doc","text":"found"}]}}"#
        } else {
            r#"{"jsonrpc":"2.0","id":8,"error":{"code":-32002,"message":"Resource not found"}}"#
        };
        last = body(&mut h, post.fetch, answer);
    }
    let (_, reply) = response(&last, exchange).expect("answered once");
    assert_eq!(reply["result"]["contents"][0]["text"], "found", "{reply}");
}
