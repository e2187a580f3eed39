//! 2026-07-28 upstreams: each upstream is asked `server/discover` first; a 2026 server then
//! serves 2025 clients in the new revision (their `initialize` answered from discover, every
//! request in the envelope, input rounds turned into server requests, one upstream listen per
//! session) and 2026 clients as they are.

mod harness;

use std::time::Duration;

use harness::*;
use mcp_proxy_core::{ExchangeId, Output, UpstreamId};
use serde_json::{json, Value};

const AUTO: &str = r#", "upstreamProtocol": "auto""#;

const DISCOVER: &str = r#"{"resultType":"complete","supportedVersions":["2026-07-28"],"capabilities":{"tools":{"listChanged":true},"resources":{"subscribe":true}},"instructions":"hi","ttlMs":0,"cacheScope":"private","_meta":{"io.modelcontextprotocol/serverInfo":{"name":"modern","version":"9"}}}"#;

/// A 2025 client opens a session; the child is asked discover and answers as a 2026 server.
fn modern_session(h: &mut Harness) -> (String, UpstreamId) {
    let body = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"sampling":{}},"clientInfo":{"name":"old","version":"1"}}}"#;
    let (exchange, outputs) = h.post(None, body);
    let child = spawned(&outputs).expect("a child");
    let probe = sent_json(&outputs, child);
    assert_eq!(probe.len(), 1, "only the probe: {probe:?}");
    assert_eq!(probe[0]["method"], "server/discover");
    let meta = &probe[0]["params"]["_meta"];
    assert_eq!(meta["io.modelcontextprotocol/protocolVersion"], "2026-07-28");
    assert_eq!(meta["io.modelcontextprotocol/clientCapabilities"], json!({"sampling": {}}), "the client's own");
    let outputs =
        h.upstream_says(child, &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{DISCOVER}}}"#, probe[0]["id"]));
    let (head, body) = response(&outputs, exchange).expect("initialize answered by the proxy");
    assert_eq!(body["result"]["protocolVersion"], "2025-06-18", "the client's revision");
    assert_eq!(body["result"]["serverInfo"]["name"], "modern");
    assert_eq!(body["result"]["instructions"], "hi");
    let sent = sent_json(&outputs, child);
    assert!(sent.iter().all(|m| m["method"] != "initialize"), "no handshake reaches a 2026 server: {sent:?}");
    assert_eq!(sent[0]["method"], "subscriptions/listen", "list changes come from one listen");
    assert_eq!(sent[0]["params"]["notifications"], json!({"toolsListChanged": true}));
    let session = header(&head.headers, "mcp-session-id").expect("a session").to_owned();
    let (_, outputs) = h.post(Some(&session), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert!(sent_json(&outputs, child).is_empty(), "initialized has no place in 2026");
    (session, child)
}

#[test]
fn a_2025_server_answers_the_probe_with_method_not_found_and_gets_initialize() {
    let mut h = Harness::new(AUTO);
    let body = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let (_, outputs) = h.post(None, body);
    let child = spawned(&outputs).expect("a child");
    let probe = sent_json(&outputs, child);
    assert_eq!(probe[0]["method"], "server/discover");
    let outputs = h.upstream_says(
        child,
        &format!(
            r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32601,"message":"Method not found"}}}}"#,
            probe[0]["id"]
        ),
    );
    assert_eq!(sent_json(&outputs, child)[0]["method"], "initialize", "then the handshake, as before");
    // The verdict is remembered: the next child is not asked again.
    let (_, outputs) = h.post(None, body);
    let next = spawned(&outputs).expect("another child");
    assert_eq!(sent_json(&outputs, next)[0]["method"], "initialize");
}

#[test]
fn a_silent_server_is_taken_for_a_2025_one_after_a_few_seconds() {
    let mut h = Harness::new(AUTO);
    let body = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let (_, outputs) = h.post(None, body);
    let child = spawned(&outputs).expect("a child");
    let outputs = h.advance(Duration::from_secs(5));
    let sent: Vec<Value> = sent_json(&outputs, child);
    let methods: Vec<&str> = sent.iter().filter_map(|m| m["method"].as_str()).collect();
    assert_eq!(methods, ["notifications/cancelled", "initialize"], "the probe is withdrawn, then the handshake");
}

#[test]
fn a_2025_clients_requests_go_upstream_in_the_envelope() {
    let mut h = Harness::new(AUTO);
    let (session, child) = modern_session(&mut h);
    let (ping, outputs) = h.post(Some(&session), r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(response(&outputs, ping).expect("answered").1["result"], json!({}), "ping is the proxy's");
    let (level, _) =
        h.post(Some(&session), r#"{"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{"level":"warning"}}"#);
    let outputs = h.input(mcp_proxy_core::Input::Timeout);
    let _ = (level, outputs);
    let (call, outputs) = h.post(
        Some(&session),
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"m":"x"}}}"#,
    );
    let sent = sent_json(&outputs, child);
    assert_eq!(sent.len(), 1);
    let meta = &sent[0]["params"]["_meta"];
    assert_eq!(meta["io.modelcontextprotocol/clientInfo"]["name"], "old");
    assert_eq!(meta["io.modelcontextprotocol/logLevel"], "warning", "the level the client set");
    let outputs = h.upstream_says(
        child,
        &format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"resultType":"complete","content":[],"_meta":{{"x":1}}}}}}"#,
            sent[0]["id"]
        ),
    );
    let body = response(&outputs, call).map(|(_, b)| b).or_else(|| events(&outputs, call).pop()).expect("answered");
    assert_eq!(body["id"], 3);
    assert!(body["result"].get("resultType").is_none(), "a 2025 client gets a 2025 result: {body}");
}

/// The call whose server asks for input: (exchange, the upstream request).
fn asking_call(h: &mut Harness, session: &str, child: UpstreamId) -> (ExchangeId, Value) {
    let (call, outputs) = h.post(
        Some(session),
        r#"{"jsonrpc":"2.0","id":"c","method":"tools/call","params":{"name":"ask","arguments":{}}}"#,
    );
    let sent = sent_json(&outputs, child).remove(0);
    (call, sent)
}

#[test]
fn a_2026_servers_questions_reach_a_2025_client_as_server_requests() {
    let mut h = Harness::new(AUTO);
    let (session, child) = modern_session(&mut h);
    let (call, sent) = asking_call(&mut h, &session, child);
    let round = r#"{"resultType":"input_required","inputRequests":{"q":{"method":"sampling/createMessage","params":{"messages":[],"maxTokens":5}}},"requestState":"opaque-1"}"#;
    let outputs = h.upstream_says(child, &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{round}}}"#, sent["id"]));
    let asked = events(&outputs, call);
    assert_eq!(asked.len(), 1, "the question goes on the call's stream: {outputs:?}");
    assert_eq!(asked[0]["method"], "sampling/createMessage");
    let ask_id = asked[0]["id"].clone();
    // The client answers; the proxy asks the server again with the answer and the state.
    let answer = json!({"jsonrpc": "2.0", "id": ask_id, "result": {"role": "assistant", "content": {"type": "text", "text": "P"}, "model": "m"}});
    let (_, outputs) = h.post(Some(&session), &answer.to_string());
    let retry = sent_json(&outputs, child);
    assert_eq!(retry.len(), 1, "{retry:?}");
    assert_eq!(retry[0]["params"]["inputResponses"]["q"]["content"]["text"], "P");
    assert_eq!(retry[0]["params"]["requestState"], "opaque-1", "echoed byte for byte");
    assert_eq!(retry[0]["params"]["name"], "ask");
    assert_ne!(retry[0]["id"], sent["id"], "a new id");
    let outputs = h.upstream_says(
        child,
        &format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"content":[{{"type":"text","text":"done"}}]}}}}"#,
            retry[0]["id"]
        ),
    );
    let done = events(&outputs, call).pop().expect("the call's answer");
    assert_eq!((done["id"].clone(), done["result"]["content"][0]["text"].clone()), (json!("c"), json!("done")));
}

#[test]
fn a_server_that_asks_forever_is_given_up_on() {
    let mut h = Harness::new(AUTO);
    let (session, child) = modern_session(&mut h);
    let (call, mut sent) = asking_call(&mut h, &session, child);
    for round in 0..=10 {
        let outputs = h.upstream_says(
            child,
            &format!(
                r#"{{"jsonrpc":"2.0","id":{},"result":{{"resultType":"input_required","requestState":"s{round}"}}}}"#,
                sent["id"]
            ),
        );
        if round == 10 {
            // Ten rounds were answered; the eleventh question is one too many.
            let body =
                events(&outputs, call).pop().or_else(|| response(&outputs, call).map(|(_, b)| b)).expect("given up");
            assert_eq!(body["error"]["code"], -32603, "{body}");
            return;
        }
        let outputs = h.advance(Duration::from_millis(250));
        sent = sent_json(&outputs, child).remove(0);
        assert_eq!(sent["params"]["requestState"], format!("s{round}"));
    }
}

#[test]
fn a_2025_clients_subscriptions_ride_the_upstream_listen() {
    let mut h = Harness::new(AUTO);
    let (session, child) = modern_session(&mut h);
    let (_, get) = h.open_get(&session);
    let _ = get;
    let (_, outputs) = h.post(
        Some(&session),
        r#"{"jsonrpc":"2.0","id":5,"method":"resources/subscribe","params":{"uri":"file:///a"}}"#,
    );
    let sent = sent_json(&outputs, child);
    assert_eq!(sent[0]["method"], "notifications/cancelled", "the old listen goes");
    assert_eq!(sent[1]["method"], "subscriptions/listen");
    assert_eq!(sent[1]["params"]["notifications"]["resourceSubscriptions"], json!(["file:///a"]));
    let tagged = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{{"uri":"file:///a","_meta":{{"io.modelcontextprotocol/subscriptionId":{}}}}}}}"#,
        sent[1]["id"]
    );
    let outputs = h.upstream_says(child, &tagged);
    let update = outputs
        .iter()
        .find_map(|o| match o {
            Output::StreamData { data, .. } => Some(String::from_utf8_lossy(data).into_owned()),
            _ => None,
        })
        .expect("the update reaches the client's stream");
    assert!(update.contains("notifications/resources/updated") && !update.contains("subscriptionId"), "{update}");
}

#[test]
fn a_2026_client_meets_a_2026_server_as_it_is() {
    let mut h = Harness::new(AUTO);
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}});
    let body = json!({"jsonrpc": "2.0", "id": "d", "method": "server/discover", "params": {"_meta": meta}}).to_string();
    let headers = [
        ("content-type", "application/json"),
        ("accept", JSON_AND_SSE),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "server/discover"),
    ];
    let (discover, outputs) = h.request("POST", "/mcp", &headers, &body);
    let children: Vec<UpstreamId> = outputs
        .iter()
        .filter_map(|o| if let Output::Spawn { upstream, .. } = o { Some(*upstream) } else { None })
        .collect();
    let mut answered = None;
    for child in &children {
        let probe = sent_json(&outputs, *child);
        assert_eq!(probe[0]["method"], "server/discover", "each pool child is asked");
        let outputs =
            h.upstream_says(*child, &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{DISCOVER}}}"#, probe[0]["id"]));
        answered = answered.or_else(|| response(&outputs, discover));
    }
    let (_, reply) = answered.expect("discover answered");
    assert_eq!(reply["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "modern");
    // A call goes with the client's own envelope and input-round fields, untouched.
    let params = json!({"name": "ask", "requestState": "theirs", "inputResponses": {"k": {"x": 1}}, "_meta": meta});
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}).to_string();
    let headers = [
        ("content-type", "application/json"),
        ("accept", JSON_AND_SSE),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "ask"),
    ];
    let (call, outputs) = h.request("POST", "/mcp", &headers, &body);
    let (child, scan) = children
        .iter()
        .find_map(|c| sent_json(&outputs, *c).first().cloned().map(|m| (*c, m)))
        .expect("the header scan");
    let outputs = h.upstream_says(
        child,
        &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{"tools":[],"resultType":"complete"}}}}"#, scan["id"]),
    );
    let sent = children.iter().flat_map(|c| sent_json(&outputs, *c)).next().expect("forwarded");
    assert_eq!(sent["params"]["requestState"], "theirs", "the server's own state");
    assert_eq!(sent["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"], "2026-07-28");
    let outputs = h.upstream_says(child, &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{"resultType":"input_required","inputRequests":{{}},"requestState":"next"}}}}"#, sent["id"]));
    let body = response(&outputs, call).map(|(_, b)| b).or_else(|| events(&outputs, call).pop()).expect("answered");
    assert_eq!(body["result"]["resultType"], "input_required", "the server's round, passed through");
    assert_eq!(body["result"]["requestState"], "next");
}

/// Answers the fetch `post` with one JSON-RPC result for the request it carried.
fn answer_fetch(h: &mut Harness, post: &mcp_proxy_core::FetchRequest, result: &str) -> Vec<Output> {
    let sent: Value = serde_json::from_slice(&post.body).expect("json");
    head(h, post.fetch, 200, &[("content-type", "application/json")]);
    body(h, post.fetch, &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#, sent["id"]))
}

fn fetch_header<'a>(post: &'a mcp_proxy_core::FetchRequest, name: &str) -> Option<&'a str> {
    post.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

/// Serves what a remote 2026 server is asked before a call (discover, the proxy's tools/list,
/// listens left open) until the `tools/call` goes out; that fetch.
fn until_the_call(h: &mut Harness, mut outputs: Vec<Output>, tools: &str) -> mcp_proxy_core::FetchRequest {
    const DISCOVER: &str =
        r#"{"resultType":"complete","supportedVersions":["2026-07-28"],"capabilities":{"tools":{}}}"#;
    let mut waiting: Vec<mcp_proxy_core::FetchRequest> = Vec::new();
    for _ in 0..8 {
        waiting.extend(fetches(&outputs).into_iter().filter(|f| f.method == "POST"));
        let Some(post) = (!waiting.is_empty()).then(|| waiting.remove(0)) else { break };
        outputs = match fetch_header(&post, "mcp-method") {
            Some("server/discover") => answer_fetch(h, &post, DISCOVER),
            Some("tools/list") => answer_fetch(h, &post, tools),
            Some("subscriptions/listen") => Vec::new(),
            Some("tools/call") => return post,
            other => panic!("unexpected {other:?}"),
        };
    }
    panic!("the call never went upstream: {outputs:?}");
}

#[test]
fn a_remote_2026_server_gets_the_revisions_headers_with_every_request_of_a_2025_client() {
    let mut h = Harness::aggregator(
        r#"{"mcpServers": {"r": {"transportType": "streamable-http", "url": "http://127.0.0.1:9/mcp", "protocol": "auto"}}}"#,
    );
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let (exchange, outputs) = h.post_to("/r/mcp", None, &[], init);
    let probe = fetches(&outputs).remove(0);
    assert_eq!(fetch_header(&probe, "mcp-method"), Some("server/discover"));
    assert_eq!(fetch_header(&probe, "mcp-protocol-version"), Some("2026-07-28"));
    let discover = r#"{"resultType":"complete","supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"far","version":"1"}}}"#;
    let outputs = answer_fetch(&mut h, &probe, discover);
    let (head_, reply) = response(&outputs, exchange).expect("initialize answered");
    assert_eq!(reply["result"]["serverInfo"]["name"], "far");
    let session = header(&head_.headers, "mcp-session-id").expect("session").to_owned();
    // The tool list teaches the proxy which argument the server mirrors in a header.
    let (list, outputs) = h.post_to("/r/mcp", Some(&session), &[], r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    let post = fetches(&outputs).remove(0);
    assert_eq!(fetch_header(&post, "mcp-method"), Some("tools/list"));
    let tools = r#"{"resultType":"complete","tools":[{"name":"weather","inputSchema":{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"},"days":{"type":"integer","x-mcp-header":"Days"}}}}]}"#;
    let outputs = answer_fetch(&mut h, &post, tools);
    assert!(response(&outputs, list).is_some() || !events(&outputs, list).is_empty(), "the list reaches the client");
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"weather","arguments":{"region":"Île-de-France","days":3}}}"#;
    let (_, outputs) = h.post_to("/r/mcp", Some(&session), &[], call);
    let post = fetches(&outputs).remove(0);
    assert_eq!(fetch_header(&post, "mcp-method"), Some("tools/call"));
    assert_eq!(fetch_header(&post, "mcp-name"), Some("weather"));
    assert_eq!(fetch_header(&post, "mcp-param-region"), Some("=?base64?w45sZS1kZS1GcmFuY2U=?="), "not ASCII: Base64");
    assert_eq!(fetch_header(&post, "mcp-param-days"), Some("3"));
    assert!(fetch_header(&post, "mcp-session-id").is_none(), "a 2026 server has no session");
}

#[test]
fn a_2026_clients_param_headers_reach_a_remote_2026_server_untouched() {
    let mut h = Harness::aggregator(
        r#"{"mcpServers": {"r": {"transportType": "streamable-http", "url": "http://127.0.0.1:9/mcp", "protocol": "2026-07-28"}}}"#,
    );
    let meta = r#"{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"n","version":"1"}}"#;
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"weather","arguments":{{"region":"north"}},"_meta":{meta}}}}}"#
    );
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "weather"),
        ("mcp-param-region", "north"),
        ("mcp-param-trace", "abc"),
    ];
    let (_, outputs) = h.post_to("/r/mcp", None, &headers, &call);
    // The proxy learns the tools first (it checks mirrored arguments), then forwards.
    let tools = r#"{"resultType":"complete","tools":[{"name":"weather","inputSchema":{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"}}}}]}"#;
    let post = until_the_call(&mut h, outputs, tools);
    assert_eq!(fetch_header(&post, "mcp-param-region"), Some("north"));
    assert_eq!(fetch_header(&post, "mcp-param-trace"), Some("abc"), "unknown ones too");
}

#[test]
fn a_server_told_to_speak_2026_that_does_not_is_not_spoken_to_in_2025() {
    let mut h = Harness::new(r#", "upstreamProtocol": "modern""#);
    let body = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let (exchange, outputs) = h.post(None, body);
    let child = spawned(&outputs).expect("a child");
    let probe = sent_json(&outputs, child);
    let outputs = h.upstream_says(
        child,
        &format!(
            r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32601,"message":"Method not found"}}}}"#,
            probe[0]["id"]
        ),
    );
    assert!(sent_json(&outputs, child).iter().all(|m| m["method"] != "initialize"), "no fallback to the handshake");
    let (_, reply) = response(&outputs, exchange).expect("answered");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("does not speak 2026-07-28") && message.contains("Method not found"), "{reply}");
}

#[test]
fn a_server_restarted_as_a_2026_one_is_asked_again() {
    let mut h = Harness::new(AUTO);
    let body = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let (_, outputs) = h.post(None, body);
    let child = spawned(&outputs).expect("a child");
    let probe = sent_json(&outputs, child);
    let outputs = h.upstream_says(
        child,
        &format!(r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32601,"message":"no"}}}}"#, probe[0]["id"]),
    );
    let init = sent_json(&outputs, child).remove(0);
    // The server now refuses the handshake as a 2026 server does.
    let refusal = format!(
        r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32022,"message":"Unsupported protocol version","data":{{"supported":["2026-07-28"]}}}}}}"#,
        init["id"]
    );
    h.upstream_says(child, &refusal);
    let (_, outputs) = h.post(None, body);
    let next = spawned(&outputs).expect("another child");
    assert_eq!(sent_json(&outputs, next)[0]["method"], "server/discover", "asked again");
}

#[test]
fn at_the_edge_a_2026_servers_question_reaches_a_2026_client_and_its_retry_goes_back() {
    let file = r#"{"mcpServers": {"r": {"transportType": "streamable-http", "url": "http://127.0.0.1:9/mcp"}}}"#;
    let key = "3f9a0c4e7b21d86f5a0e9c3b7d14f2a68e5c0b9d3a7f1e24c6b8d0a5f3e7c91b";
    let config =
        json!({"configFile": {"text": file}, "edge": {"sessionKey": key}, "upstreamProtocol": "auto"}).to_string();
    let mut h = Harness::with_config(&config);
    let meta = r#"{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}},"io.modelcontextprotocol/clientInfo":{"name":"n","version":"1"}}"#;
    let headers = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "ask")];
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"ask","arguments":{{}},"_meta":{meta}}}}}"#
    );
    let (exchange, outputs) = h.post_to("/r/mcp", None, &headers, &call);
    let round = r#"{"resultType":"input_required","inputRequests":{"q":{"method":"sampling/createMessage","params":{"messages":[],"maxTokens":5}}},"requestState":"theirs-1"}"#;
    let tools = r#"{"resultType":"complete","tools":[{"name":"ask","inputSchema":{"type":"object"}}]}"#;
    let post = until_the_call(&mut h, outputs, tools);
    let sent: Value = serde_json::from_slice(&post.body).expect("json");
    head(&mut h, post.fetch, 200, &[("content-type", "text/event-stream")]);
    let event = format!("data: {{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{round}}}\n\n", sent["id"]);
    let outputs = body(&mut h, post.fetch, &event);
    let answered = response(&outputs, exchange).map(|(_, b)| b).or_else(|| events(&outputs, exchange).pop());
    let answer = answered.expect("the question reaches the client");
    assert_eq!(answer["result"]["resultType"], "input_required", "{answer}");
    assert_eq!(answer["result"]["requestState"], "theirs-1", "the server's own state");
    // The retry, in a fresh isolate that knows nothing of the server yet, goes to the server.
    let retry = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"ask","arguments":{{}},"inputResponses":{{"q":{{"role":"assistant","content":{{"type":"text","text":"P"}},"model":"m"}}}},"requestState":"theirs-1","_meta":{meta}}}}}"#
    );
    let mut h = Harness::with_seed(&config, [7; 32]);
    let (exchange, outputs) = h.post_to("/r/mcp", None, &headers, &retry);
    assert!(status(&outputs, exchange) != Some(400), "refused: {outputs:?}");
    let post = until_the_call(&mut h, outputs, tools);
    let sent: Value = serde_json::from_slice(&post.body).expect("json");
    assert_eq!(sent["params"]["requestState"], "theirs-1");
    assert_eq!(sent["params"]["inputResponses"]["q"]["content"]["text"], "P");
}

#[test]
fn a_list_the_server_lets_be_kept_is_kept_per_credential_until_it_changes() {
    let mut h = Harness::new(AUTO);
    let (session, child) = modern_session(&mut h);
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let (first, outputs) = h.post(Some(&session), list);
    let sent = sent_json(&outputs, child);
    assert_eq!(sent.len(), 1);
    let tools = r#"{"resultType":"complete","tools":[{"name":"a","inputSchema":{"type":"object"}}],"ttlMs":60000,"cacheScope":"private"}"#;
    let outputs = h.upstream_says(child, &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{tools}}}"#, sent[0]["id"]));
    let body = response(&outputs, first).map(|(_, b)| b).or_else(|| events(&outputs, first).pop()).expect("answered");
    assert_eq!(body["result"]["tools"][0]["name"], "a");
    assert!(body["result"].get("ttlMs").is_none(), "a 2025 client gets no cache hints");
    // Asked again: answered from what was kept, nothing goes upstream.
    let (again, outputs) = h.post(Some(&session), list);
    assert!(sent_json(&outputs, child).is_empty(), "kept: {outputs:?}");
    let body = response(&outputs, again).map(|(_, b)| b).or_else(|| events(&outputs, again).pop()).expect("answered");
    assert_eq!(body["result"]["tools"][0]["name"], "a");
    // The server says the list changed: the next list goes upstream.
    h.upstream_says(child, r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":"mcp-proxy-listen"}}}"#);
    let (_, outputs) = h.post(Some(&session), list);
    assert_eq!(sent_json(&outputs, child).len(), 1, "asked again after the change");
}

#[test]
fn a_shared_server_that_turns_out_to_speak_2026_is_forwarded_to_per_session() {
    let file = r#"{"mcpProxy": {"options": {"shareUpstream": true}}, "mcpServers": {"s": {"command": "srv"}}}"#;
    let config = json!({"configFile": {"text": file}, "upstreamProtocol": "auto"}).to_string();
    let mut h = Harness::with_config(&config);
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let (first, outputs) = h.post_to("/s/mcp", None, &[], init);
    let shared = spawned(&outputs).expect("the shared child");
    let sent = sent_json(&outputs, shared);
    assert_eq!(sent[0]["method"], "initialize", "a shared upstream is initialized by the proxy");
    let refusal = format!(
        r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32022,"message":"Unsupported protocol version","data":{{"supported":["2026-07-28"]}}}}}}"#,
        sent[0]["id"]
    );
    let outputs = h.upstream_says(shared, &refusal);
    let (_, reply) = response(&outputs, first).expect("the first session fails");
    assert!(reply.get("error").is_some(), "{reply}");
    // The next session has an upstream of its own, asked its revision first.
    let (_, outputs) = h.post_to("/s/mcp", None, &[], init);
    let own = spawned(&outputs).expect("a child of its own");
    assert_ne!(own, shared);
    assert_eq!(sent_json(&outputs, own)[0]["method"], "server/discover");
}

#[test]
fn a_2026_server_restarted_as_a_2025_one_is_found_out_by_its_next_child() {
    let mut h = Harness::new(AUTO);
    let (_, first) = modern_session(&mut h);
    let body = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let (_, outputs) = h.post(None, body);
    let next = spawned(&outputs).expect("another child");
    assert_ne!(next, first);
    let probe = sent_json(&outputs, next);
    assert_eq!(probe[0]["method"], "server/discover", "each child of a 2026 server is asked");
    let outputs = h.upstream_says(
        next,
        &format!(r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32601,"message":"no"}}}}"#, probe[0]["id"]),
    );
    assert_eq!(sent_json(&outputs, next)[0]["method"], "initialize");
}

#[test]
fn at_the_edge_a_2025_client_of_a_2026_server_listens_only_while_its_get_stream_is_open() {
    let file = r#"{"mcpServers": {"r": {"transportType": "streamable-http", "url": "http://127.0.0.1:9/mcp"}}}"#;
    let key = "3f9a0c4e7b21d86f5a0e9c3b7d14f2a68e5c0b9d3a7f1e24c6b8d0a5f3e7c91b";
    let config =
        json!({"configFile": {"text": file}, "edge": {"sessionKey": key}, "upstreamProtocol": "auto"}).to_string();
    let mut h = Harness::with_config(&config);
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let (exchange, outputs) = h.post_to("/r/mcp", None, &[], init);
    let probe = fetches(&outputs).remove(0);
    let discover = r#"{"resultType":"complete","supportedVersions":["2026-07-28"],"capabilities":{"tools":{"listChanged":true},"resources":{"subscribe":true}}}"#;
    let outputs = answer_fetch(&mut h, &probe, discover);
    let (head, result) = response(&outputs, exchange).expect("initialize answered from discover");
    assert_eq!(result["result"]["capabilities"]["tools"]["listChanged"], true);
    assert!(
        result["result"]["capabilities"]["resources"].get("subscribe").is_none(),
        "a subscription could not reach the listen at the edge: {result}"
    );
    assert!(fetches(&outputs).is_empty(), "no listen that would outlive the request: {outputs:?}");
    assert!(h.proxy.is_idle(), "the Worker may end");
    let sealed = header(&head.headers, "mcp-session-id").expect("a session").to_owned();

    // The client's GET stream, in a fresh isolate: an upstream listen lives as long as it.
    let mut h = Harness::with_seed(&config, [9; 32]);
    let (get, outputs) =
        h.request("GET", "/r/mcp", &[("accept", "text/event-stream"), ("mcp-session-id", &sealed)], "");
    assert!(stream_started(&outputs, get), "{outputs:?}");
    let listen = fetches(&outputs).into_iter().find(|f| fetch_header(f, "mcp-method") == Some("subscriptions/listen"));
    let listen = listen.expect("an upstream listen for the GET stream");
    let sent: Value = serde_json::from_slice(&listen.body).expect("json");
    assert_eq!(sent["params"]["notifications"]["toolsListChanged"], true, "{sent}");
    assert!(sent["params"]["notifications"].get("resourceSubscriptions").is_none(), "{sent}");
    head_and_events(&mut h, &listen, &sent);
    let outputs = part(
        &mut h,
        listen.fetch,
        r#"data: {"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":"mcp-proxy-listen"}}}

"#,
    );
    let heard = events(&outputs, get);
    assert_eq!(heard.len(), 1, "{outputs:?} {sent}");
    assert_eq!(heard[0]["method"], "notifications/tools/list_changed");
    assert!(heard[0]["params"].get("_meta").is_none(), "the proxy's own listen tag is taken off: {}", heard[0]);

    // A subscription, in another request, is refused rather than left unheard.
    let mut h = Harness::with_seed(&config, [10; 32]);
    let subscribe = r#"{"jsonrpc":"2.0","id":5,"method":"resources/subscribe","params":{"uri":"file:///x"}}"#;
    let (exchange, outputs) = h.post_to("/r/mcp", Some(&sealed), &[], subscribe);
    let (_, refused) = response(&outputs, exchange).expect("answered");
    assert_eq!(refused["error"]["code"], -32601, "{refused}");
}

/// Part of a fetch's body arrives (the stream goes on).
fn part(h: &mut Harness, fetch: mcp_proxy_core::FetchId, data: &str) -> Vec<Output> {
    h.input(mcp_proxy_core::Input::FetchData { fetch, data: data.as_bytes().to_vec() })
}

/// Starts the SSE answer of a listen and sends its acknowledgement.
fn head_and_events(h: &mut Harness, listen: &mcp_proxy_core::FetchRequest, sent: &Value) {
    head(h, listen.fetch, 200, &[("content-type", "text/event-stream")]);
    let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
        "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": sent["id"]}, "notifications": {"toolsListChanged": true}}});
    let outputs = part(h, listen.fetch, &format!("data: {ack}\n\n"));
    assert!(fetches(&outputs).is_empty(), "the acknowledgement is the proxy's own: {outputs:?}");
}
