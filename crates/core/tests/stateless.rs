//! Stateless mode: a pool of initialized children, no sessions.

mod harness;

use std::time::Duration;

use harness::*;
use mcp_proxy_core::{Input, Output, UpstreamEnd, UpstreamId};

/// A started pool: the harness and each child with the id of the proxy's initialize.
fn started_pool(size: usize) -> (Harness, Vec<(UpstreamId, serde_json::Value)>) {
    let config = format!(r#"{{"server":{{"command":"srv"}},"stateless":true,"statelessPoolSize":{size}}}"#);
    let (h, outputs) = Harness::started(&config, [1; 32]);
    let upstreams: Vec<UpstreamId> = outputs
        .iter()
        .filter_map(|o| if let Output::Spawn { upstream, .. } = o { Some(*upstream) } else { None })
        .collect();
    assert_eq!(upstreams.len(), size, "the pool starts at once");
    let upstreams = upstreams
        .into_iter()
        .map(|upstream| {
            let init = sent_json(&outputs, upstream);
            assert_eq!(init[0]["method"], "initialize");
            (upstream, init[0]["id"].clone())
        })
        .collect();
    (h, upstreams)
}

fn ready(h: &mut Harness, child: &(UpstreamId, serde_json::Value)) -> Vec<Output> {
    let result =
        r#"{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"}}"#;
    h.upstream_says(child.0, &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#, child.1))
}

#[test]
fn initialize_is_answered_from_the_pool_without_a_session() {
    let (mut h, children) = started_pool(2);
    let upstreams: Vec<UpstreamId> = children.iter().map(|c| c.0).collect();
    // Before any child is ready, the client's initialize waits.
    let (exchange, outputs) =
        h.post(None, r#"{"jsonrpc":"2.0","id":"i","method":"initialize","params":{"protocolVersion":"2025-03-26"}}"#);
    assert!(response(&outputs, exchange).is_none());
    let outputs = ready(&mut h, &children[0]);
    assert_eq!(sent_json(&outputs, upstreams[0])[0]["method"], "notifications/initialized");
    let (head, body) = response(&outputs, exchange).expect("answered once a child is ready");
    assert_eq!(body["result"]["protocolVersion"], "2025-03-26");
    assert_eq!(header(&head.headers, "mcp-session-id"), None);
    assert_eq!(h.proxy.session_count(), 2, "only the pool's internal sessions exist");
}

#[test]
fn requests_go_to_the_least_busy_child_and_no_process_is_spawned_per_request() {
    let (mut h, children) = started_pool(2);
    let upstreams: Vec<UpstreamId> = children.iter().map(|c| c.0).collect();
    ready(&mut h, &children[0]);
    ready(&mut h, &children[1]);
    let (first, outputs) = h.post(None, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}"#);
    assert!(spawned(&outputs).is_none());
    let busy = if sent_json(&outputs, upstreams[0]).is_empty() { upstreams[1] } else { upstreams[0] };
    let idle = if busy == upstreams[0] { upstreams[1] } else { upstreams[0] };
    let (second, outputs) = h.post(None, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    let sent = sent_json(&outputs, idle);
    assert_eq!(sent.len(), 1, "the second request goes to the idle child");
    let outputs =
        h.upstream_says(idle, &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{"tools":[]}}}}"#, sent[0]["id"]));
    assert_eq!(response(&outputs, second).map(|(_, b)| b["id"].clone()), Some(serde_json::json!(1)));
    assert!(response(&outputs, first).is_none());
}

#[test]
fn get_and_delete_are_not_allowed() {
    let (mut h, _) = started_pool(1);
    let (exchange, outputs) = h.request("GET", "/mcp", &[("accept", "text/event-stream")], "");
    assert_eq!(status(&outputs, exchange), Some(405));
    let (exchange, outputs) = h.request("DELETE", "/mcp", &[], "");
    assert_eq!(status(&outputs, exchange), Some(405));
}

#[test]
fn a_dead_child_is_replaced_with_backoff() {
    let (mut h, children) = started_pool(1);
    let upstreams: Vec<UpstreamId> = children.iter().map(|c| c.0).collect();
    ready(&mut h, &children[0]);
    let (exchange, _) = h.post(None, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#);
    let outputs =
        h.input(Input::UpstreamClosed { upstream: upstreams[0], reason: UpstreamEnd::Exited("crashed".into()) });
    assert_eq!(response(&outputs, exchange).map(|(_, b)| b["error"]["code"].clone()), Some(serde_json::json!(-32004)));
    assert!(spawned(&outputs).is_none(), "not replaced before the backoff");
    let outputs = h.advance(Duration::from_millis(100));
    let replacement = spawned(&outputs).expect("replaced after 100 ms");
    // It dies young again: the next replacement waits twice as long.
    let outputs =
        h.input(Input::UpstreamClosed { upstream: replacement, reason: UpstreamEnd::Exited("crashed".into()) });
    assert!(spawned(&outputs).is_none());
    assert!(spawned(&h.advance(Duration::from_millis(199))).is_none());
    assert!(spawned(&h.advance(Duration::from_millis(1))).is_some());
}

#[test]
fn server_requests_from_a_pool_child_are_answered_at_once() {
    let (mut h, children) = started_pool(1);
    let upstream = children[0].0;
    ready(&mut h, &children[0]);
    let outputs = h.upstream_says(upstream, r#"{"jsonrpc":"2.0","id":"p1","method":"ping"}"#);
    let answer = sent_json(&outputs, upstream);
    assert_eq!((answer[0]["id"].as_str(), answer[0]["result"].is_object()), (Some("p1"), true));
    let outputs =
        h.upstream_says(upstream, r#"{"jsonrpc":"2.0","id":7,"method":"sampling/createMessage","params":{}}"#);
    assert_eq!(sent_json(&outputs, upstream)[0]["error"]["code"], -32601);
}

#[test]
fn a_log_message_reaches_the_one_request_in_flight() {
    let (mut h, children) = started_pool(1);
    let upstream = children[0].0;
    ready(&mut h, &children[0]);
    let (exchange, outputs) = h.post(None, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#);
    let id = sent_json(&outputs, upstream)[0]["id"].clone();
    let log = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"working"}}"#;
    let mut all = h.upstream_says(upstream, log);
    all.extend(h.upstream_says(upstream, &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#)));
    let events = events(&all, exchange);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["method"], "notifications/message");
    // With two requests in flight, nobody can tell whose it is: it is not guessed.
    let (a, _) = h.post(None, r#"{"jsonrpc":"2.0","id":2,"method":"tools/call"}"#);
    let (b, _) = h.post(None, r#"{"jsonrpc":"2.0","id":3,"method":"tools/call"}"#);
    let outputs = h.upstream_says(upstream, log);
    assert!(!stream_started(&outputs, a) && !stream_started(&outputs, b));
}
