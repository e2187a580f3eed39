//! `shareUpstream`: one child serves every session of a server, and answers reach the right client.

mod harness;

use std::time::Duration;

use harness::*;
use mcp_proxy_core::UpstreamEnd;
use mcp_proxy_core::{Input, Output, UpstreamId};
use serde_json::{json, Value};

const FILE: &str = r#"{"mcpServers": {
  "shared": {"command": "shared-server", "options": {"shareUpstream": true}},
  "own": {"command": "own-server"}
}}"#;

fn init_body(client: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {"sampling": {}}, "clientInfo": {"name": client, "version": "1"}}})
    .to_string()
}

const INIT_RESULT: &str = r#"{"protocolVersion":"2025-11-25","capabilities":{"tools":{},"resources":{"subscribe":true}},"serverInfo":{"name":"s","version":"1"}}"#;

fn answer(h: &mut Harness, upstream: UpstreamId, request: &Value, result: &str) -> Vec<Output> {
    h.upstream_says(upstream, &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#, request["id"]))
}

fn session_of(outputs: &[Output], exchange: mcp_proxy_core::ExchangeId) -> String {
    let (head, body) = response(outputs, exchange).expect("initialize answered");
    assert_eq!(head.status, 200, "{body}");
    header(&head.headers, "mcp-session-id").expect("a session id").to_owned()
}

/// Two clients initialized on the shared server; returns their sessions and the one upstream.
fn two_clients(h: &mut Harness) -> (String, String, UpstreamId) {
    let (first, outputs) = h.post_to("/shared/mcp", None, &[], &init_body("alice"));
    let upstream = spawned(&outputs).expect("the shared child starts");
    let sent = sent_json(&outputs, upstream);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["method"], "initialize");
    assert_eq!(sent[0]["params"]["clientInfo"]["name"], "alice", "initialized with the first client's parameters");
    let (second, outputs) = h.post_to("/shared/mcp", None, &[], &init_body("bob"));
    assert_eq!(spawned(&outputs), None, "the second client shares the child");
    assert!(sent_json(&outputs, upstream).is_empty(), "and waits for the first initialize");
    let outputs = answer(h, upstream, &sent[0], INIT_RESULT);
    let initialized = sent_json(&outputs, upstream);
    assert_eq!(initialized, [json!({"jsonrpc": "2.0", "method": "notifications/initialized"})]);
    let a = session_of(&outputs, first);
    let b = session_of(&outputs, second);
    assert_ne!(a, b);
    for session in [&a, &b] {
        let (_, outputs) =
            h.post_to("/shared/mcp", Some(session), &[], r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert!(sent_json(&outputs, upstream).is_empty(), "the proxy initialized the child itself");
    }
    (a, b, upstream)
}

#[test]
fn every_session_shares_one_child_initialized_once() {
    let mut h = Harness::aggregator(FILE);
    let (_a, _b, upstream) = two_clients(&mut h);
    let (third, outputs) = h.post_to("/shared/mcp", None, &[], &init_body("carol"));
    assert_eq!(spawned(&outputs), None);
    assert!(sent_json(&outputs, upstream).is_empty(), "later clients are answered from the cached result");
    let (_, body) = response(&outputs, third).expect("answered at once");
    assert_eq!(body["result"]["serverInfo"]["name"], "s");
    assert_eq!(body["id"], 1);
    let (_, outputs) = h.post_to("/own/mcp", None, &[], &init_body("dave"));
    assert!(spawned(&outputs).is_some(), "a server without the option still gets a child per session");
}

#[test]
fn same_ids_and_progress_tokens_of_two_clients_never_collide() {
    let mut h = Harness::aggregator(FILE);
    let (a, b, upstream) = two_clients(&mut h);
    let call = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"slow","arguments":{},"_meta":{"progressToken":"p"}}}"#;
    let (post_a, outputs) = h.post_to("/shared/mcp", Some(&a), &[], call);
    let to_a = sent_json(&outputs, upstream).remove(0);
    let (post_b, outputs) = h.post_to("/shared/mcp", Some(&b), &[], call);
    let to_b = sent_json(&outputs, upstream).remove(0);
    assert_ne!(to_a["id"], to_b["id"], "ids are the proxy's own");
    let (token_a, token_b) = (&to_a["params"]["_meta"]["progressToken"], &to_b["params"]["_meta"]["progressToken"]);
    assert_ne!(token_a, token_b, "progress tokens are rewritten per request");
    let progress = |token: &Value, n: u32| {
        json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": n}})
            .to_string()
    };
    let outputs = h.upstream_says(upstream, &progress(token_b, 1));
    let seen = events(&outputs, post_b);
    assert_eq!(seen.len(), 1, "{outputs:?}");
    assert_eq!(seen[0]["params"]["progressToken"], "p", "the client sees its own token");
    assert!(events(&outputs, post_a).is_empty());
    let outputs = answer(&mut h, upstream, &to_a, r#"{"content":[{"type":"text","text":"for a"}]}"#);
    let from_a: Vec<Value> =
        events(&outputs, post_a).into_iter().chain(response(&outputs, post_a).map(|r| r.1)).collect();
    assert_eq!(from_a.len(), 1);
    assert_eq!(from_a[0]["result"]["content"][0]["text"], "for a");
    assert_eq!(from_a[0]["id"], 7);
    let outputs = answer(&mut h, upstream, &to_b, r#"{"content":[{"type":"text","text":"for b"}]}"#);
    assert_eq!(
        events(&outputs, post_b).last().expect("answered on its stream")["result"]["content"][0]["text"],
        "for b"
    );
}

#[test]
fn server_requests_updates_and_list_changes_reach_the_right_clients() {
    let mut h = Harness::aggregator(FILE);
    let (a, b, upstream) = two_clients(&mut h);
    let mut streams = Vec::new();
    for session in [&a, &b] {
        let (get, outputs) =
            h.request("GET", "/shared/mcp", &[("accept", "text/event-stream"), ("mcp-session-id", session)], "");
        assert!(stream_started(&outputs, get));
        streams.push(get);
    }
    let subscribe = r#"{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{"uri":"test://r"}}"#;
    let (_, outputs) = h.post_to("/shared/mcp", Some(&b), &[], subscribe);
    let request = sent_json(&outputs, upstream).remove(0);
    answer(&mut h, upstream, &request, "{}");
    let outputs = h.upstream_says(
        upstream,
        r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"test://r"}}"#,
    );
    assert!(events(&outputs, streams[0]).is_empty(), "a did not subscribe");
    assert_eq!(events(&outputs, streams[1]).len(), 1);
    let outputs = h.upstream_says(upstream, r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#);
    assert_eq!((events(&outputs, streams[0]).len(), events(&outputs, streams[1]).len()), (1, 1), "to everyone");

    // A sampling request goes to the client whose call is in flight, and its answer back.
    let call = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"sample","arguments":{}}}"#;
    let (post_a, outputs) = h.post_to("/shared/mcp", Some(&a), &[], call);
    let to_a = sent_json(&outputs, upstream).remove(0);
    let outputs =
        h.upstream_says(upstream, r#"{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{}}"#);
    let asked = events(&outputs, post_a);
    assert_eq!(asked.len(), 1, "{outputs:?}");
    assert_eq!(asked[0]["method"], "sampling/createMessage");
    assert!(events(&outputs, streams[1]).is_empty());
    let reply = json!({"jsonrpc": "2.0", "id": asked[0]["id"], "result": {"role": "assistant"}}).to_string();
    let (_, outputs) = h.post_to("/shared/mcp", Some(&a), &[], &reply);
    assert_eq!(sent_json(&outputs, upstream)[0]["id"], "s1");
    answer(&mut h, upstream, &to_a, "{}");

    // Nobody is asking: the proxy answers the server itself instead of leaving it hanging.
    let outputs = h.upstream_says(upstream, r#"{"jsonrpc":"2.0","id":"s2","method":"roots/list"}"#);
    let refused = sent_json(&outputs, upstream);
    assert_eq!(refused[0]["id"], "s2");
    assert_eq!(refused[0]["error"]["code"], -32601);
}

#[test]
fn only_the_asked_client_can_answer_a_shared_childs_request() {
    let mut h = Harness::aggregator(FILE);
    let (a, b, upstream) = two_clients(&mut h);
    let call = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"ask","arguments":{}}}"#;
    let (post_a, _) = h.post_to("/shared/mcp", Some(&a), &[], call);
    let outputs = h.upstream_says(upstream, r#"{"jsonrpc":"2.0","id":0,"method":"elicitation/create","params":{}}"#);
    let asked = events(&outputs, post_a);
    assert_eq!(asked[0]["method"], "elicitation/create");
    assert_ne!(asked[0]["id"], 0, "renamed for the session it was sent to");
    // B answers A's request, under the id A was given and under the child's own id.
    for id in [asked[0]["id"].clone(), json!(0)] {
        let forged =
            json!({"jsonrpc": "2.0", "id": id, "result": {"action": "accept", "content": {"x": 1}}}).to_string();
        let (_, outputs) = h.post_to("/shared/mcp", Some(&b), &[], &forged);
        assert!(sent_json(&outputs, upstream).is_empty(), "the child never hears B's answer");
    }
    let honest = json!({"jsonrpc": "2.0", "id": asked[0]["id"], "result": {"action": "decline"}}).to_string();
    let (_, outputs) = h.post_to("/shared/mcp", Some(&a), &[], &honest);
    let heard = sent_json(&outputs, upstream);
    assert_eq!((heard[0]["id"].clone(), heard[0]["result"]["action"].clone()), (json!(0), json!("decline")));
}

#[test]
fn unsubscribing_keeps_other_clients_subscriptions() {
    let mut h = Harness::aggregator(FILE);
    let (a, b, upstream) = two_clients(&mut h);
    for session in [&a, &b] {
        let subscribe = r#"{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{"uri":"test://r"}}"#;
        let (_, outputs) = h.post_to("/shared/mcp", Some(session), &[], subscribe);
        let request = sent_json(&outputs, upstream).remove(0);
        answer(&mut h, upstream, &request, "{}");
    }
    let unsubscribe = r#"{"jsonrpc":"2.0","id":4,"method":"resources/unsubscribe","params":{"uri":"test://r"}}"#;
    let (post, outputs) = h.post_to("/shared/mcp", Some(&a), &[], unsubscribe);
    assert!(sent_json(&outputs, upstream).is_empty(), "b still follows the resource");
    assert_eq!(response(&outputs, post).expect("answered by the proxy").1["result"], json!({}));
    let (_, outputs) = h.post_to("/shared/mcp", Some(&b), &[], unsubscribe);
    assert_eq!(sent_json(&outputs, upstream)[0]["method"], "resources/unsubscribe", "the last one goes through");
}

#[test]
fn a_dead_shared_child_is_replaced_and_sessions_go_on() {
    let mut h = Harness::aggregator(FILE);
    let (a, b, upstream) = two_clients(&mut h);
    let call = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"x","arguments":{}}}"#;
    let (post, _) = h.post_to("/shared/mcp", Some(&a), &[], call);
    let outputs = h.input(Input::UpstreamClosed { upstream, reason: UpstreamEnd::Exited("killed".into()) });
    let (_, body) = response(&outputs, post).expect("the call fails at once");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("killed")), "{body}");
    let outputs = h.advance(Duration::from_millis(150));
    let replacement = spawned(&outputs).expect("started again after the backoff");
    let init = sent_json(&outputs, replacement).remove(0);
    assert_eq!(init["params"]["clientInfo"]["name"], "alice", "initialized like the first one");
    let (post, outputs) = h.post_to("/shared/mcp", Some(&b), &[], call);
    assert!(sent_json(&outputs, replacement).is_empty(), "held until the new child is ready");
    let outputs = answer(&mut h, replacement, &init, INIT_RESULT);
    let sent = sent_json(&outputs, replacement);
    assert_eq!(sent[0]["method"], "notifications/initialized");
    assert_eq!(sent[1]["method"], "tools/call");
    let outputs = answer(&mut h, replacement, &sent[1], "{}");
    assert_eq!(response(&outputs, post).expect("answered").1["id"], 5);
}

#[test]
fn ending_a_session_leaves_the_shared_child_running() {
    let mut h = Harness::aggregator(FILE);
    let (a, b, upstream) = two_clients(&mut h);
    let (_, outputs) = h.request("DELETE", "/shared/mcp", &[("mcp-session-id", a.as_str())], "");
    assert!(!closed_upstream(&outputs, upstream));
    let (post, outputs) = h.post_to("/shared/mcp", Some(&b), &[], r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    let ping = sent_json(&outputs, upstream).remove(0);
    let outputs = answer(&mut h, upstream, &ping, "{}");
    assert_eq!(status(&outputs, post), Some(200));
}

#[test]
fn the_merged_endpoint_uses_the_shared_child_too() {
    let mut h = Harness::aggregator(FILE);
    let (_, _, upstream) = two_clients(&mut h);
    let (merged, outputs) = h.post_to("/mcp", None, &[], &init_body("erin"));
    assert!(sent_json(&outputs, upstream).is_empty(), "the shared child is initialized already");
    let own = spawned(&outputs).expect("the other server gets a child of its own");
    assert_ne!(own, upstream);
    let init = sent_json(&outputs, own).remove(0);
    let outputs = answer(&mut h, own, &init, INIT_RESULT);
    session_of(&outputs, merged);
}
