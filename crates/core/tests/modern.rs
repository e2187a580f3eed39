//! MCP 2026-07-28 clients on the bridge's one endpoint: classification, `server/discover`,
//! calls through the pool, `input_required` rounds bridged to a 2025 child's server requests,
//! cancellation by closing the stream, `subscriptions/listen`.

mod harness;

use std::time::Duration;

use harness::*;
use mcp_proxy_core::{ExchangeId, Input, Output, UpstreamId};
use serde_json::{json, Value};

fn meta(capabilities: Value) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": capabilities,
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
    })
}

/// POSTs a 2026 request with every header the transport asks for.
fn call(h: &mut Harness, id: Value, method: &str, mut params: Value, capabilities: Value) -> (ExchangeId, Vec<Output>) {
    let mut envelope = meta(capabilities);
    if let Some(extra) = params.get("_meta").and_then(Value::as_object) {
        for (key, value) in extra {
            envelope[key] = value.clone();
        }
    }
    params["_meta"] = envelope;
    let name = params.get("name").or(params.get("uri")).and_then(Value::as_str).map(str::to_owned);
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
    let mut headers = vec![
        ("content-type", "application/json"),
        ("accept", JSON_AND_SSE),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
    ];
    if let Some(name) = &name {
        headers.push(("mcp-name", name));
    }
    h.request("POST", "/mcp", &headers, &body)
}

const INIT_RESULT: &str = r#"{"protocolVersion":"2025-11-25","capabilities":{"tools":{"listChanged":true},"resources":{"subscribe":true}},"serverInfo":{"name":"child","version":"7"}}"#;

/// The pool's first child, initialized: returns it.
fn ready_child(h: &mut Harness, outputs: &[Output]) -> UpstreamId {
    let child = spawned(outputs).expect("a pool child starts");
    let init = sent_json(outputs, child);
    assert_eq!(init[0]["method"], "initialize");
    assert_eq!(init[0]["params"]["capabilities"]["sampling"], json!({}), "the proxy declares what it can bridge");
    let id = init[0]["id"].clone();
    let outputs = h.upstream_says(child, &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{INIT_RESULT}}}"#));
    assert_eq!(sent_json(&outputs, child)[0]["method"], "notifications/initialized");
    // The first call makes the proxy learn which arguments travel in headers.
    let (warm, outputs) = call(h, json!("warm"), "tools/call", json!({"name": "warmup"}), json!({}));
    let scan = &sent_json(&outputs, child)[0];
    assert_eq!(scan["method"], "tools/list", "the proxy asks for the tools first");
    let outputs = h.upstream_says(child, &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{TOOLS}}}"#, scan["id"]));
    let forwarded = &sent_json(&outputs, child)[0];
    assert_eq!(forwarded["params"]["name"], "warmup");
    let outputs =
        h.upstream_says(child, &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{"content":[]}}}}"#, forwarded["id"]));
    assert!(response(&outputs, warm).is_some(), "the warm-up call is answered");
    child
}

const TOOLS: &str = r#"{"tools":[{"name":"geo","inputSchema":{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"}}}}]}"#;

#[test]
fn mirrored_arguments_are_checked_against_their_headers() {
    let mut h = Harness::new("");
    let (_, outputs) = call(&mut h, json!(0), "server/discover", json!({}), json!({}));
    let child = ready_child(&mut h, &outputs);
    let (exchange, outputs) =
        call(&mut h, json!(1), "tools/call", json!({"name": "geo", "arguments": {"region": "Hello"}}), json!({}));
    let (head, body) = response(&outputs, exchange).expect("refused");
    assert_eq!((head.status, body["error"]["code"].clone()), (400, json!(-32020)), "{body}");
    assert!(sent_json(&outputs, child).is_empty());
}

#[test]
fn discover_is_answered_from_the_pools_child() {
    let mut h = Harness::new("");
    let (exchange, outputs) = call(&mut h, json!("d"), "server/discover", json!({}), json!({}));
    assert!(response(&outputs, exchange).is_none(), "waits for the child");
    let child = spawned(&outputs).expect("a child");
    let id = sent_json(&outputs, child)[0]["id"].clone();
    let outputs = h.upstream_says(child, &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{INIT_RESULT}}}"#));
    let (head, body) = response(&outputs, exchange).expect("answered once the child is ready");
    assert_eq!(head.status, 200);
    assert_eq!(body["id"], "d");
    let result = &body["result"];
    assert_eq!(result["supportedVersions"], json!(["2026-07-28"]));
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["capabilities"]["tools"]["listChanged"], true);
    assert_eq!(result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "child");
    assert_eq!((result["ttlMs"].clone(), result["cacheScope"].clone()), (json!(0), json!("private")));
    assert_eq!(h.proxy.session_count(), 2, "only the pool's two children: no client session");
}

#[test]
fn a_call_goes_to_the_child_without_the_envelope_and_comes_back_shaped() {
    let mut h = Harness::new("");
    let (_, outputs) = call(&mut h, json!(1), "server/discover", json!({}), json!({}));
    let child = ready_child(&mut h, &outputs);
    let (exchange, outputs) = call(
        &mut h,
        json!(7),
        "tools/call",
        json!({"name": "echo", "arguments": {"m": "hi"}, "_meta": {"progressToken": "p"}}),
        json!({}),
    );
    let sent = sent_json(&outputs, child);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["params"]["name"], "echo");
    let meta = &sent[0]["params"]["_meta"];
    assert!(meta.get("io.modelcontextprotocol/protocolVersion").is_none(), "the envelope stays with the proxy: {meta}");
    let token = meta["progressToken"].clone();
    assert_ne!(token, json!("p"), "the child sees the proxy's token");
    let id = sent[0]["id"].clone();
    let outputs = h.upstream_says(
        child,
        &format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{token},"progress":1}}}}"#
        ),
    );
    assert_eq!(events(&outputs, exchange)[0]["params"]["progressToken"], "p", "the client's token comes back");
    let outputs = h.upstream_says(child, &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[]}}}}"#));
    let result = events(&outputs, exchange).pop().expect("the result ends the stream");
    assert_eq!(result["id"], 7);
    assert_eq!(result["result"]["resultType"], "complete");
    assert_eq!(result["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["version"], "7");
    assert!(stream_ended(&outputs, exchange));
}

#[test]
fn unknown_methods_are_404_and_header_mismatches_400() {
    let mut h = Harness::new("");
    let (exchange, outputs) = call(&mut h, json!(1), "ping", json!({}), json!({}));
    let (head, body) = response(&outputs, exchange).expect("answered");
    assert_eq!((head.status, body["error"]["code"].clone(), body["id"].clone()), (404, json!(-32601), json!(1)));
    let body =
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": meta(json!({}))}}).to_string();
    let headers =
        [("content-type", "application/json"), ("mcp-protocol-version", "2026-07-28"), ("mcp-method", "prompts/list")];
    let (exchange, outputs) = h.request("POST", "/mcp", &headers, &body);
    let (head, body) = response(&outputs, exchange).expect("answered");
    assert_eq!((head.status, body["error"]["code"].clone()), (400, json!(-32020)));
    // The 2025 path is untouched: initialize still opens a session.
    let (session, _) = h.initialize();
    assert_eq!(session.len(), 32);
}

/// Starts a call whose child asks for sampling: returns (exchange, child, the child's request id).
fn call_that_samples(h: &mut Harness, capabilities: Value) -> (ExchangeId, UpstreamId, Value, Vec<Output>) {
    let (_, outputs) = call(h, json!(0), "server/discover", json!({}), json!({}));
    let child = ready_child(h, &outputs);
    let (exchange, outputs) = call(h, json!("c1"), "tools/call", json!({"name": "ask", "arguments": {}}), capabilities);
    let sent = sent_json(&outputs, child);
    let call_id = sent[0]["id"].clone();
    let outputs = h.upstream_says(
        child,
        r#"{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{"messages":[],"maxTokens":5}}"#,
    );
    (exchange, child, call_id, outputs)
}

#[test]
fn a_childs_sampling_request_becomes_an_input_round_and_the_retry_carries_the_answer_back() {
    let mut h = Harness::new("");
    let (exchange, child, call_id, outputs) = call_that_samples(&mut h, json!({"sampling": {}}));
    assert!(response(&outputs, exchange).is_none(), "gathering the child's questions");
    let outputs = h.advance(Duration::from_millis(20));
    let (head, body) = response(&outputs, exchange).expect("input required");
    assert_eq!(head.status, 200);
    let result = &body["result"];
    assert_eq!(result["resultType"], "input_required");
    let (key, ask) = result["inputRequests"].as_object().and_then(|r| r.iter().next()).expect("one question");
    assert_eq!(ask["method"], "sampling/createMessage");
    assert!(ask.get("id").is_none() && ask.get("jsonrpc").is_none(), "a bare request");
    let state = result["requestState"].as_str().expect("a state").to_owned();
    // The client retries with a new id, its answer and the state.
    let answer = json!({"role": "assistant", "content": {"type": "text", "text": "Paris"}, "model": "m"});
    let params =
        json!({"name": "ask", "arguments": {}, "inputResponses": {key.clone(): answer.clone()}, "requestState": state});
    let (retry, outputs) = call(&mut h, json!("c2"), "tools/call", params, json!({"sampling": {}}));
    let sent = sent_json(&outputs, child);
    assert_eq!(sent, vec![json!({"jsonrpc": "2.0", "id": "s1", "result": answer})], "the child's own id");
    let outputs = h.upstream_says(
        child,
        &format!(r#"{{"jsonrpc":"2.0","id":{call_id},"result":{{"content":[{{"type":"text","text":"done"}}]}}}}"#),
    );
    let (_, body) = response(&outputs, retry).expect("the call's result reaches the retry");
    assert_eq!(body["id"], "c2");
    assert_eq!(body["result"]["resultType"], "complete");
    assert_eq!(body["result"]["content"][0]["text"], "done");
}

#[test]
fn a_tampered_or_foreign_state_is_refused() {
    let mut h = Harness::new("");
    let (exchange, _, _, _) = call_that_samples(&mut h, json!({"sampling": {}}));
    let outputs = h.advance(Duration::from_millis(20));
    let (_, body) = response(&outputs, exchange).expect("input required");
    let state = body["result"]["requestState"].as_str().expect("state").to_owned();
    for (name, state) in [("ask", format!("{state}-TAMPERED")), ("other", state.clone())] {
        let params = json!({"name": name, "arguments": {}, "inputResponses": {}, "requestState": state});
        let (retry, outputs) = call(&mut h, json!("r"), "tools/call", params, json!({"sampling": {}}));
        let (head, body) = response(&outputs, retry).expect("refused");
        assert_eq!((head.status, body["error"]["code"].clone()), (400, json!(-32602)), "{name}: {body}");
        assert_eq!(body["error"]["data"]["reason"], "invalid_request_state");
    }
}

#[test]
fn a_capability_the_client_did_not_declare_is_never_asked_of_it() {
    let mut h = Harness::new("");
    let (exchange, child, call_id, outputs) = call_that_samples(&mut h, json!({}));
    assert!(response(&outputs, exchange).is_none(), "the client is not asked");
    let sent = sent_json(&outputs, child);
    assert_eq!(sent[0]["id"], "s1");
    assert!(sent[0].get("error").is_some(), "the child hears no");
    // The child gives up: the client learns what it lacked.
    let outputs = h.upstream_says(
        child,
        &format!(r#"{{"jsonrpc":"2.0","id":{call_id},"error":{{"code":-32603,"message":"no sampling"}}}}"#),
    );
    let (head, body) = response(&outputs, exchange).expect("answered");
    assert_eq!((head.status, body["error"]["code"].clone()), (400, json!(-32021)));
    assert_eq!(body["error"]["data"]["requiredCapabilities"], json!({"sampling": {}}));
    assert_eq!(body["id"], "c1");
}

#[test]
fn a_server_may_name_its_question() {
    let mut h = Harness::new("");
    let (_, outputs) = call(&mut h, json!(0), "server/discover", json!({}), json!({}));
    let child = ready_child(&mut h, &outputs);
    let (exchange, _) = call(&mut h, json!(1), "tools/call", json!({"name": "ask"}), json!({"elicitation": {}}));
    h.upstream_says(child, r#"{"jsonrpc":"2.0","id":9,"method":"elicitation/create","params":{"message":"name?","requestedSchema":{"type":"object"},"_meta":{"mcp-proxy/inputKey":"user_name"}}}"#);
    let outputs = h.advance(Duration::from_millis(20));
    let (_, body) = response(&outputs, exchange).expect("input required");
    let ask = &body["result"]["inputRequests"]["user_name"];
    assert_eq!(ask["method"], "elicitation/create");
    assert!(ask["params"].get("_meta").is_none(), "the hint stays with the proxy");
}

#[test]
fn closing_the_response_stream_cancels_the_call() {
    let mut h = Harness::new("");
    let (_, outputs) = call(&mut h, json!(0), "server/discover", json!({}), json!({}));
    let child = ready_child(&mut h, &outputs);
    let (exchange, outputs) = call(&mut h, json!(1), "tools/call", json!({"name": "slow"}), json!({}));
    let call_id = sent_json(&outputs, child)[0]["id"].clone();
    let outputs = h.input(Input::HttpClosed(exchange));
    let sent = sent_json(&outputs, child);
    assert_eq!(sent[0]["method"], "notifications/cancelled");
    assert_eq!(sent[0]["params"]["requestId"], call_id);
    assert_eq!(h.proxy.in_flight_count(), 1, "only the spare's initialize is left");
}

#[test]
fn log_messages_reach_a_request_only_at_the_level_it_asked_for() {
    let mut h = Harness::new("");
    let (_, outputs) = call(&mut h, json!(0), "server/discover", json!({}), json!({}));
    let child = ready_child(&mut h, &outputs);
    let log = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#;
    let (quiet, _) = call(&mut h, json!(1), "tools/call", json!({"name": "t"}), json!({}));
    assert!(events(&h.upstream_says(child, log), quiet).is_empty(), "no logLevel: no log");
    h.input(Input::HttpClosed(quiet));
    let mut params = json!({"name": "t"});
    params["_meta"] = meta(json!({}));
    params["_meta"]["io.modelcontextprotocol/logLevel"] = json!("info");
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params}).to_string();
    let headers = [
        ("content-type", "application/json"),
        ("accept", JSON_AND_SSE),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "t"),
    ];
    let (loud, _) = h.request("POST", "/mcp", &headers, &body);
    assert_eq!(events(&h.upstream_says(child, log), loud)[0]["method"], "notifications/message");
    let debug = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"debug","data":"x"}}"#;
    assert!(events(&h.upstream_says(child, debug), loud).is_empty(), "below the level asked for");
}

#[test]
fn listen_acknowledges_then_tags_what_the_children_announce() {
    let mut h = Harness::new("");
    let (_, outputs) = call(&mut h, json!(0), "server/discover", json!({}), json!({}));
    let child = ready_child(&mut h, &outputs);
    let filter = json!({"notifications": {"toolsListChanged": true, "promptsListChanged": true, "resourceSubscriptions": ["file:///a"]}});
    let (stream, outputs) = call(&mut h, json!("L"), "subscriptions/listen", filter, json!({}));
    assert!(stream_started(&outputs, stream));
    let ack = &events(&outputs, stream)[0];
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "L");
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true, "resourceSubscriptions": ["file:///a"]}),
        "prompts are not offered"
    );
    let subscribe = sent_json(&outputs, child);
    assert_eq!(subscribe[0]["method"], "resources/subscribe");
    assert_eq!(subscribe[0]["params"]["uri"], "file:///a");
    let outputs = h.upstream_says(child, r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#);
    let event = &events(&outputs, stream)[0];
    assert_eq!(event["method"], "notifications/tools/list_changed");
    assert_eq!(event["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "L");
    let outputs = h.upstream_says(
        child,
        r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///b"}}"#,
    );
    assert!(events(&outputs, stream).is_empty(), "not a URI it listens to");
    let outputs = h.input(Input::HttpClosed(stream));
    assert_eq!(sent_json(&outputs, child)[0]["method"], "resources/unsubscribe", "the last listener left");
}

/// A Worker isolate: the edge, one remote 2025 server.
fn edge_isolate(seed: u8) -> Harness {
    let file = json!({"mcpServers": {"remote": {"transportType": "streamable-http", "url": "http://127.0.0.1:9/mcp"}}})
        .to_string();
    let key = "3f9a0c4e7b21d86f5a0e9c3b7d14f2a68e5c0b9d3a7f1e24c6b8d0a5f3e7c91b";
    let config = json!({"configFile": {"text": file}, "edge": {"sessionKey": key}}).to_string();
    Harness::with_seed(&config, [seed; 32])
}

fn edge_call(h: &mut Harness, method: &str, params: Value) -> (ExchangeId, Vec<Output>) {
    let mut params = params;
    params["_meta"] = meta(json!({}));
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": method, "params": params}).to_string();
    let headers = [
        ("content-type", "application/json"),
        ("accept", JSON_AND_SSE),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
    ];
    h.request("POST", "/remote/mcp", &headers, &body)
}

#[test]
fn at_the_edge_a_2026_request_needs_no_session_and_the_upstream_session_is_kept_per_isolate() {
    let mut h = edge_isolate(1);
    let (exchange, outputs) = edge_call(&mut h, "tools/list", json!({}));
    let init = fetches(&outputs).remove(0);
    assert_eq!(serde_json::from_slice::<Value>(&init.body).expect("json")["method"], "initialize");
    let outputs = head(&mut h, init.fetch, 200, &[("content-type", "application/json"), ("mcp-session-id", "up-1")]);
    let mut outputs =
        [outputs, body(&mut h, init.fetch, &format!(r#"{{"jsonrpc":"2.0","id":0,"result":{INIT_RESULT}}}"#))].concat();
    // initialized, then the list, with the upstream session's id.
    let posts = fetches(&outputs);
    let list =
        posts.iter().find(|f| f.body.windows(10).any(|w| w == b"tools/list")).expect("the list goes upstream").clone();
    assert_eq!(header(&list.headers, "mcp-session-id"), Some("up-1"));
    for post in posts.iter().filter(|f| f.fetch != list.fetch) {
        outputs = head(&mut h, post.fetch, 202, &[]);
        outputs.extend(body(&mut h, post.fetch, ""));
    }
    let sent: Value = serde_json::from_slice(&list.body).expect("json");
    head(&mut h, list.fetch, 200, &[("content-type", "application/json")]);
    let outputs =
        body(&mut h, list.fetch, &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{"tools":[]}}}}"#, sent["id"]));
    let (_, reply) = response(&outputs, exchange).expect("answered");
    assert_eq!(reply["result"]["resultType"], "complete");
    assert!(h.proxy.is_idle(), "nothing left to finish in this isolate");
    let kept = h.proxy.pool_sessions();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].session.as_deref(), Some("up-1"));
    // The next request in the same isolate: a fresh core adopts the session.
    let mut next = edge_isolate(2);
    next.proxy.adopt_pool_session(kept[0].clone());
    let (_, outputs) = edge_call(&mut next, "tools/list", json!({}));
    let posts = fetches(&outputs);
    assert_eq!(posts.len(), 1, "no initialize: {posts:?}");
    assert_eq!(header(&posts[0].headers, "mcp-session-id"), Some("up-1"));
}

#[test]
fn a_call_waiting_for_its_client_gives_its_child_up_when_every_child_is_taken() {
    let mut h = Harness::new(r#", "modernPoolMax": 1"#);
    let (_, outputs) = call(&mut h, json!(0), "server/discover", json!({}), json!({}));
    let child = ready_child(&mut h, &outputs);
    let (first, outputs) = call(&mut h, json!(1), "tools/call", json!({"name": "ask"}), json!({"sampling": {}}));
    let first_id = sent_json(&outputs, child)[0]["id"].clone();
    h.upstream_says(child, r#"{"jsonrpc":"2.0","id":"s","method":"sampling/createMessage","params":{"messages":[]}}"#);
    let outputs = h.advance(Duration::from_millis(20));
    assert_eq!(response(&outputs, first).expect("asked").1["result"]["resultType"].clone(), json!("input_required"));
    // The client does not come back; another call needs the one child.
    let (second, outputs) = call(&mut h, json!(2), "tools/call", json!({"name": "echo"}), json!({}));
    let sent = sent_json(&outputs, child);
    assert_eq!(sent[0]["method"], "notifications/cancelled", "the waiting call gives its child up");
    assert_eq!(sent[0]["params"]["requestId"], first_id);
    assert_eq!(sent[1]["method"], "tools/call");
    let id = sent[1]["id"].clone();
    let outputs = h.upstream_says(child, &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[]}}}}"#));
    assert!(response(&outputs, second).is_some() || !events(&outputs, second).is_empty(), "served");
}

#[test]
fn input_sent_with_the_first_request_answers_a_named_question() {
    let mut h = Harness::new("");
    let (_, outputs) = call(&mut h, json!(0), "server/discover", json!({}), json!({}));
    let child = ready_child(&mut h, &outputs);
    let params =
        json!({"name": "ask", "inputResponses": {"user_name": {"action": "accept", "content": {"name": "A"}}}});
    let (exchange, outputs) = call(&mut h, json!(1), "tools/call", params, json!({"elicitation": {}}));
    let call_id = sent_json(&outputs, child)[0]["id"].clone();
    assert!(sent_json(&outputs, child)[0]["params"].get("inputResponses").is_none(), "the child never sees it");
    let outputs = h.upstream_says(child, r#"{"jsonrpc":"2.0","id":4,"method":"elicitation/create","params":{"message":"name?","requestedSchema":{"type":"object"},"_meta":{"mcp-proxy/inputKey":"user_name"}}}"#);
    assert_eq!(sent_json(&outputs, child)[0]["result"]["content"]["name"], "A", "answered without asking the client");
    let outputs = h.upstream_says(child, &format!(r#"{{"jsonrpc":"2.0","id":{call_id},"result":{{"content":[]}}}}"#));
    let answer =
        response(&outputs, exchange).map(|(_, b)| b).or_else(|| events(&outputs, exchange).pop()).expect("answered");
    assert_eq!(answer["result"]["resultType"], "complete");
}
