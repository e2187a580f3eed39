//! Reverse mode: one local stdio client (its lines in as `ClientMessage`, the proxy's out as
//! `ClientSend`) in front of one remote server reached with the remote-upstream clients.

mod harness;

use harness::*;
use mcp_proxy_core::{Input, Output};
use serde_json::{json, Value};

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"desktop","version":"1"}}}"#;

fn reverse(transport: &str) -> Harness {
    let config =
        json!({"connect": {"url": "http://127.0.0.1:9/mcp", "transport": transport, "headers": [["X-Team", "blue"]]}});
    Harness::with_config(&config.to_string())
}

fn client_lines(outputs: &[Output]) -> Vec<Value> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::ClientSend(line) => Some(serde_json::from_slice(line).expect("a JSON line")),
            _ => None,
        })
        .collect()
}

fn fetch_header<'a>(fetch: &'a mcp_proxy_core::FetchRequest, name: &str) -> Option<&'a str> {
    fetch.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

#[test]
fn a_stdio_client_reaches_a_streamable_http_remote_and_its_session_is_deleted_when_stdin_closes() {
    let mut h = reverse("streamable-http");
    let outputs = h.input(Input::ClientMessage(INITIALIZE.as_bytes().to_vec()));
    let post = fetches(&outputs).remove(0);
    assert_eq!((post.method.as_str(), post.url.as_str()), ("POST", "http://127.0.0.1:9/mcp"));
    assert_eq!(fetch_header(&post, "x-team"), Some("blue"), "the configured header goes along");
    let sent: Value = serde_json::from_slice(&post.body).expect("json");
    assert_eq!(sent["params"]["capabilities"]["sampling"], json!({}), "the client's capabilities reach the remote");
    head(&mut h, post.fetch, 200, &[("content-type", "application/json"), ("mcp-session-id", "remote-1")]);
    let result =
        r#"{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"far","version":"1"}}"#;
    let outputs = body(&mut h, post.fetch, &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#, sent["id"]));
    let lines = client_lines(&outputs);
    assert_eq!(lines.len(), 1, "{outputs:?}");
    assert_eq!(lines[0]["id"], 1, "the client's own id");
    assert_eq!(lines[0]["result"]["serverInfo"]["name"], "far");

    // The remote asks the client something on its stream: the client gets it on stdout.
    let outputs = h.input(Input::ClientMessage(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec()));
    let initialized = fetches(&outputs).remove(0);
    let outputs = head(&mut h, initialized.fetch, 202, &[]);
    let stream = fetches(&outputs).into_iter().find(|f| f.method == "GET").expect("the remote's stream is opened");
    head(&mut h, stream.fetch, 200, &[("content-type", "text/event-stream")]);
    let ask = r#"{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{"messages":[],"maxTokens":5}}"#;
    let outputs = h.input(Input::FetchData { fetch: stream.fetch, data: format!("data: {ask}\n\n").into_bytes() });
    let asked = client_lines(&outputs);
    assert_eq!(asked.len(), 1, "{outputs:?}");
    assert_eq!(asked[0]["method"], "sampling/createMessage");
    // The client's answer goes back to the remote, under the id the remote used.
    let answer = format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{{"role":"assistant","content":{{"type":"text","text":"P"}},"model":"m"}}}}"#,
        asked[0]["id"]
    );
    let outputs = h.input(Input::ClientMessage(answer.into_bytes()));
    let back = fetches(&outputs).into_iter().find(|f| f.method == "POST").expect("the answer is posted");
    let back: Value = serde_json::from_slice(&back.body).expect("json");
    assert_eq!(back["id"], "s1", "{back}");

    // Garbage gets a parse error, and nothing goes upstream.
    let outputs = h.input(Input::ClientMessage(b"not json".to_vec()));
    assert_eq!(client_lines(&outputs)[0]["error"]["code"], -32700);
    assert!(fetches(&outputs).is_empty());

    let outputs = h.input(Input::ClientClosed);
    let delete = fetches(&outputs).into_iter().find(|f| f.method == "DELETE").expect("the remote session is deleted");
    assert_eq!(fetch_header(&delete, "mcp-session-id"), Some("remote-1"));
    assert!(!outputs.contains(&Output::ClientDone), "not before the remote heard the session end: {outputs:?}");
    head(&mut h, delete.fetch, 200, &[]);
    let outputs = body(&mut h, delete.fetch, "");
    assert!(outputs.contains(&Output::ClientDone), "then the shell may go: {outputs:?}");
    let outputs = h.input(Input::ClientMessage(INITIALIZE.as_bytes().to_vec()));
    assert!(fetches(&outputs).is_empty(), "nothing after stdin closed");
}

#[test]
fn auto_tries_legacy_sse_when_the_url_refuses_the_post() {
    let mut h = reverse("auto");
    let outputs = h.input(Input::ClientMessage(INITIALIZE.as_bytes().to_vec()));
    let post = fetches(&outputs).remove(0);
    let outputs = head(&mut h, post.fetch, 405, &[("content-type", "text/plain")]);
    let stream = fetches(&outputs).into_iter().find(|f| f.method == "GET").expect("the legacy SSE stream is opened");
    assert_eq!(stream.url, "http://127.0.0.1:9/mcp");
    assert!(client_lines(&outputs).is_empty(), "the client is not told of the first try: {outputs:?}");
    head(&mut h, stream.fetch, 200, &[("content-type", "text/event-stream")]);
    let outputs = h.input(Input::FetchData {
        fetch: stream.fetch,
        data: b"event: endpoint\ndata: /messages?sessionId=7\n\n".to_vec(),
    });
    let post = fetches(&outputs).into_iter().find(|f| f.method == "POST").expect("the initialize, posted again");
    assert_eq!(post.url, "http://127.0.0.1:9/messages?sessionId=7");
    let sent: Value = serde_json::from_slice(&post.body).expect("json");
    assert_eq!(sent["method"], "initialize");
    head(&mut h, post.fetch, 202, &[("content-type", "text/plain")]);
    let outputs = body(&mut h, post.fetch, "Accepted");
    assert!(client_lines(&outputs).is_empty(), "a 202's body is no message: {outputs:?}");
    let answer = format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{{"protocolVersion":"2025-11-25","capabilities":{{}},"serverInfo":{{"name":"old","version":"1"}}}}}}"#,
        sent["id"]
    );
    let outputs = h.input(Input::FetchData {
        fetch: stream.fetch,
        data: format!("event: message\ndata: {answer}\n\n").into_bytes(),
    });
    assert_eq!(client_lines(&outputs)[0]["result"]["serverInfo"]["name"], "old");
}

#[test]
fn a_remote_that_wants_a_credential_is_named_with_how_to_give_one() {
    let mut h = reverse("streamable-http");
    let outputs = h.input(Input::ClientMessage(INITIALIZE.as_bytes().to_vec()));
    let post = fetches(&outputs).remove(0);
    let outputs = head(&mut h, post.fetch, 401, &[("www-authenticate", "Bearer")]);
    let lines = client_lines(&outputs);
    let message = lines[0]["error"]["message"].as_str().expect("an error").to_owned();
    assert!(message.contains("http://127.0.0.1:9/mcp") && message.contains("--header"), "{message}");
}

#[test]
fn reverse_mode_refuses_a_url_that_is_not_http() {
    let config = json!({"connect": {"url": "file:///etc/passwd"}});
    let error = mcp_proxy_core::Config::from_json(&config.to_string()).expect_err("refused");
    assert!(error.to_string().contains("connect.url"), "{error}");
}
