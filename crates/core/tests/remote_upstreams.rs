//! Remote upstreams: the core's Streamable HTTP and legacy SSE clients, driven with fake
//! fetches.

mod harness;

use harness::*;
use mcp_proxy_core::{Input, Output};

const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

#[test]
fn streamable_http_upstreams_get_posts_and_keep_their_session() {
    let mut h = Harness::aggregator(
        r#"{"mcpServers": {"r": {"transportType": "streamable-http", "url": "http://127.0.0.1:9/mcp", "headers": {"X-Key": "k"}}}}"#,
    );
    let (exchange, outputs) = h.post_to("/r/mcp", None, &[], INIT);
    assert!(spawned(&outputs).is_none(), "no child for a remote server");
    let post = &fetches(&outputs)[0];
    assert_eq!((post.method.as_str(), post.url.as_str()), ("POST", "http://127.0.0.1:9/mcp"));
    assert!(post.headers.iter().any(|h| h.name == "X-Key" && h.value == "k"));
    let id: serde_json::Value = serde_json::from_slice(&post.body).expect("json");
    head(&mut h, post.fetch, 200, &[("content-type", "application/json"), ("mcp-session-id", "up-1")]);
    let answer = format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{{"protocolVersion":"2025-11-25","capabilities":{{}}}}}}"#,
        id["id"]
    );
    let outputs = body(&mut h, post.fetch, &answer);
    let (head_, reply) = response(&outputs, exchange).expect("answered");
    assert_eq!(reply["id"], 0);
    let session = header(&head_.headers, "mcp-session-id").expect("session").to_owned();
    let (_, outputs) =
        h.post_to("/r/mcp", Some(&session), &[], r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let notify = &fetches(&outputs)[0];
    assert!(
        notify.headers.iter().any(|h| h.name == "mcp-session-id" && h.value == "up-1"),
        "the upstream's session id is sent back"
    );
    let outputs = head(&mut h, notify.fetch, 202, &[]);
    let listen = fetches(&outputs).remove(0);
    assert_eq!(listen.method, "GET", "after initialized, the server's own stream is opened");
    // A request written before that stream is up waits for it (what the server says outside
    // the request would be lost otherwise).
    let (exchange, outputs) = h.post_to(
        "/r/mcp",
        Some(&session),
        &[],
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"_meta":{"progressToken":"p"}}}"#,
    );
    assert!(fetches(&outputs).is_empty(), "held until the stream is up: {outputs:?}");
    let outputs = head(&mut h, listen.fetch, 200, &[("content-type", "text/event-stream")]);
    // A request answered as an SSE stream, with progress first.
    let call = &fetches(&outputs)[0];
    let id: serde_json::Value = serde_json::from_slice(&call.body).expect("json");
    head(&mut h, call.fetch, 200, &[("content-type", "text/event-stream")]);
    let stream = format!(
        "id: 1\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":\"p\",\"progress\":1}}}}\n\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{{}}}}\n\n",
        id["id"]
    );
    let outputs = body(&mut h, call.fetch, &stream);
    let events = events(&outputs, exchange);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["id"], 5);
    // Ending the session deletes the upstream's.
    let (_, outputs) = h.request("DELETE", "/r/mcp", &[("mcp-session-id", session.as_str())], "");
    assert!(fetches(&outputs).iter().any(|f| f.method == "DELETE"));
    assert!(outputs.iter().any(|o| matches!(o, Output::CancelFetch(f) if *f == listen.fetch)));
}

#[test]
fn a_failing_upstream_request_is_answered_with_an_error() {
    let mut h = Harness::aggregator(
        r#"{"mcpServers": {"r": {"transportType": "streamable-http", "url": "http://127.0.0.1:9/mcp"}}}"#,
    );
    let (exchange, outputs) = h.post_to("/r/mcp", None, &[], INIT);
    let post = &fetches(&outputs)[0];
    let outputs = h.input(Input::FetchEnd { fetch: post.fetch, error: Some("connection refused".into()) });
    let (_, reply) = response(&outputs, exchange).expect("answered at once");
    assert!(reply["error"]["message"].as_str().is_some_and(|m| m.contains("connection refused")), "{reply}");
}

#[test]
fn legacy_sse_upstreams_post_to_the_endpoint_their_stream_names() {
    let mut h = Harness::aggregator(r#"{"mcpServers": {"s": {"url": "http://127.0.0.1:9/base/sse"}}}"#);
    let (exchange, outputs) = h.post_to("/s/mcp", None, &[], INIT);
    let all = fetches(&outputs);
    let stream = all.iter().find(|f| f.method == "GET").expect("the SSE stream opens first");
    assert!(all.iter().all(|f| f.method != "POST"), "nothing to POST to yet");
    head(&mut h, stream.fetch, 200, &[("content-type", "text/event-stream")]);
    let outputs = h.input(Input::FetchData {
        fetch: stream.fetch,
        data: b"event: endpoint\ndata: /base/messages?sessionId=abc\n\n".to_vec(),
    });
    let post = &fetches(&outputs)[0];
    assert_eq!(post.url, "http://127.0.0.1:9/base/messages?sessionId=abc");
    let id: serde_json::Value = serde_json::from_slice(&post.body).expect("json");
    head(&mut h, post.fetch, 202, &[]);
    let answer = format!(
        "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{{\"capabilities\":{{}}}}}}\n\n",
        id["id"]
    );
    let outputs = h.input(Input::FetchData { fetch: stream.fetch, data: answer.into_bytes() });
    assert!(response(&outputs, exchange).is_some_and(|(head, _)| head.status == 200));
    // The stream ending ends the session, like a child exiting.
    let outputs = h.input(Input::FetchEnd { fetch: stream.fetch, error: None });
    assert!(outputs.iter().any(|o| matches!(o, Output::Log { message, .. } if message.contains("ended"))));
    assert_eq!(h.proxy.session_count(), 0);
}

#[test]
fn an_expired_upstream_session_is_initialized_again_without_the_client_noticing() {
    let mut h = Harness::aggregator(
        r#"{"mcpServers": {"r": {"transportType": "streamable-http", "url": "http://127.0.0.1:9/mcp"}}}"#,
    );
    let (exchange, outputs) = h.post_to("/r/mcp", None, &[], INIT);
    let post = &fetches(&outputs)[0];
    let id: serde_json::Value = serde_json::from_slice(&post.body).expect("json");
    head(&mut h, post.fetch, 200, &[("content-type", "application/json"), ("mcp-session-id", "up-1")]);
    let outputs =
        body(&mut h, post.fetch, &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{"capabilities":{{}}}}}}"#, id["id"]));
    let session = response(&outputs, exchange)
        .and_then(|(head, _)| header(&head.headers, "mcp-session-id").map(str::to_owned))
        .expect("session");
    // The upstream restarted and forgot "up-1".
    let (exchange, outputs) =
        h.post_to("/r/mcp", Some(&session), &[], r#"{"jsonrpc":"2.0","id":"call","method":"tools/list"}"#);
    let call = &fetches(&outputs)[0];
    let outputs = head(&mut h, call.fetch, 404, &[]);
    assert!(response(&outputs, exchange).is_none(), "the client sees no error");
    let reinit = &fetches(&outputs)[0];
    let sent: serde_json::Value = serde_json::from_slice(&reinit.body).expect("json");
    assert_eq!(sent["method"], "initialize");
    assert_eq!(sent["params"]["clientInfo"]["name"], "t", "with the client's own parameters");
    assert!(!reinit.headers.iter().any(|h| h.name == "mcp-session-id"), "as a new session");
    head(&mut h, reinit.fetch, 200, &[("content-type", "application/json"), ("mcp-session-id", "up-2")]);
    let outputs =
        body(&mut h, reinit.fetch, r#"{"jsonrpc":"2.0","id":"mcp-proxy-reinitialize","result":{"capabilities":{}}}"#);
    let again = fetches(&outputs);
    let methods: Vec<String> = again
        .iter()
        .map(|f| {
            serde_json::from_slice::<serde_json::Value>(&f.body).expect("json")["method"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(methods, ["notifications/initialized"], "confirmed first");
    // Once the server took it (and its stream is up), the request is sent again.
    let mut outputs = head(&mut h, again[0].fetch, 202, &[]);
    if let Some(stream) = fetches(&outputs).into_iter().find(|f| f.method == "GET") {
        outputs = head(&mut h, stream.fetch, 200, &[("content-type", "text/event-stream")]);
    }
    let again: Vec<_> = fetches(&outputs).into_iter().filter(|f| f.method == "POST").collect();
    assert_eq!(again.len(), 1, "{outputs:?}");
    let resent: serde_json::Value = serde_json::from_slice(&again[0].body).expect("json");
    assert_eq!(resent["method"], "tools/list");
    assert!(again.iter().all(|f| f.headers.iter().any(|h| h.name == "mcp-session-id" && h.value == "up-2")));
    let replay = &again[0];
    let id: serde_json::Value = serde_json::from_slice(&replay.body).expect("json");
    head(&mut h, replay.fetch, 200, &[("content-type", "application/json")]);
    let outputs =
        body(&mut h, replay.fetch, &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{"tools":[]}}}}"#, id["id"]));
    assert_eq!(response(&outputs, exchange).map(|(_, b)| b["id"].clone()), Some(serde_json::json!("call")));
}

#[test]
fn client_credentials_reach_only_the_upstreams_configured_to_see_them() {
    let mut h = Harness::aggregator(
        r#"{"mcpServers": {
            "closed": {"transportType": "streamable-http", "url": "http://127.0.0.1:9/a"},
            "open": {"transportType": "streamable-http", "url": "http://127.0.0.1:9/b", "options": {"forwardAuthorization": true}},
            "own": {"transportType": "streamable-http", "url": "http://127.0.0.1:9/c", "headers": {"Authorization": "Bearer configured"}, "options": {"forwardAuthorization": true}}
        }}"#,
    );
    let authorization = |path: &str, h: &mut Harness| {
        let (_, outputs) = h.post_to(path, None, &[("authorization", "Bearer client-token")], INIT);
        let post = fetches(&outputs).remove(0);
        let found: Vec<String> = post
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("authorization"))
            .map(|h| h.value.clone())
            .collect();
        found
    };
    assert!(authorization("/closed/mcp", &mut h).is_empty(), "no pass-through by default");
    assert_eq!(authorization("/open/mcp", &mut h), ["Bearer client-token"]);
    assert_eq!(authorization("/own/mcp", &mut h), ["Bearer configured"], "configured credentials win");
}
