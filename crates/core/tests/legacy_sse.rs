//! The legacy HTTP+SSE transport, driven in memory.

mod harness;

use harness::*;
use mcp_proxy_core::Input;
use mcp_proxy_core::UpstreamEnd;

fn open(h: &mut Harness) -> (mcp_proxy_core::ExchangeId, String, mcp_proxy_core::UpstreamId) {
    let (stream, outputs) = h.request("GET", "/sse", &[("accept", "text/event-stream")], "");
    let upstream = spawned(&outputs).expect("a child per SSE session");
    assert!(stream_started(&outputs, stream));
    let endpoint = events(&outputs, stream)[0].as_str().expect("endpoint event").to_owned();
    assert!(endpoint.starts_with("/messages?sessionId="), "{endpoint}");
    (stream, endpoint, upstream)
}

#[test]
fn messages_are_accepted_and_answered_on_the_stream() {
    let mut h = Harness::new("");
    let (stream, endpoint, upstream) = open(&mut h);
    let headers = [("content-type", "application/json")];
    let (post, outputs) =
        h.request("POST", &endpoint, &headers, r#"{"jsonrpc":"2.0","id":"a","method":"initialize","params":{}}"#);
    assert_eq!(status(&outputs, post), Some(202));
    let id = sent_json(&outputs, upstream)[0]["id"].clone();
    let outputs = h.upstream_says(
        upstream,
        &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"protocolVersion":"2024-11-05"}}}}"#),
    );
    assert_eq!(events(&outputs, stream)[0]["id"], "a");
    let outputs = h.upstream_says(
        upstream,
        r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#,
    );
    assert_eq!(events(&outputs, stream)[0]["method"], "notifications/message");
}

#[test]
fn unknown_or_missing_session_ids_are_refused() {
    let mut h = Harness::new("");
    let headers = [("content-type", "application/json")];
    let (post, outputs) = h.request("POST", "/messages?sessionId=0123456789abcdef0123456789abcdef", &headers, "{}");
    assert_eq!(status(&outputs, post), Some(404));
    let (post, outputs) = h.request("POST", "/messages", &headers, "{}");
    assert_eq!(status(&outputs, post), Some(400));
}

#[test]
fn closing_the_stream_ends_the_session_and_its_child() {
    let mut h = Harness::new("");
    let (stream, endpoint, upstream) = open(&mut h);
    let outputs = h.input(Input::HttpClosed(stream));
    assert!(closed_upstream(&outputs, upstream));
    let (post, outputs) = h.request(
        "POST",
        &endpoint,
        &[("content-type", "application/json")],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    );
    assert_eq!(status(&outputs, post), Some(404));
}

#[test]
fn a_dying_child_errors_in_flight_requests_and_ends_the_stream() {
    let mut h = Harness::new("");
    let (stream, endpoint, upstream) = open(&mut h);
    h.request(
        "POST",
        &endpoint,
        &[("content-type", "application/json")],
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call"}"#,
    );
    let outputs = h.input(Input::UpstreamClosed { upstream, reason: UpstreamEnd::Exited("killed".into()) });
    assert_eq!(events(&outputs, stream)[0]["error"]["code"], -32004);
    assert!(stream_ended(&outputs, stream));
}
