//! The Streamable HTTP transport, driven in memory with a fake clock.

mod harness;

use std::time::Duration;

use harness::*;
use mcp_proxy_core::UpstreamEnd;
use mcp_proxy_core::{Input, Output};

#[test]
fn initialize_spawns_a_child_and_issues_a_session() {
    let mut h = Harness::new("");
    let (session, upstream) = h.initialize();
    assert_eq!(session.len(), 32);
    assert_eq!(h.proxy.session_count(), 1);
    // The session works: a request is forwarded with a proxy id and answered with the client's.
    let (exchange, outputs) = h.post(Some(&session), r#"{"jsonrpc":"2.0","id":"req-7","method":"tools/list"}"#);
    let sent = sent_json(&outputs, upstream);
    assert_eq!(sent[0]["method"], "tools/list");
    assert!(sent[0]["id"].is_i64(), "the proxy rewrites ids to integers");
    let outputs =
        h.upstream_says(upstream, &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{"tools":[]}}}}"#, sent[0]["id"]));
    let (head, body) = response(&outputs, exchange).expect("answered");
    assert_eq!((head.status, body["id"].as_str()), (200, Some("req-7")));
    assert_eq!(header(&head.headers, "content-type"), Some("application/json"));
}

#[test]
fn every_session_gets_its_own_child() {
    let mut h = Harness::new("");
    let (a, upstream_a) = h.initialize();
    let (b, upstream_b) = h.initialize();
    assert_ne!(a, b);
    assert_ne!(upstream_a, upstream_b);
}

#[test]
fn notifications_and_responses_from_clients_get_202() {
    let mut h = Harness::new("");
    let (session, upstream) = h.initialize();
    let (exchange, outputs) = h.post(Some(&session), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert_eq!(status(&outputs, exchange), Some(202));
    assert_eq!(sent_json(&outputs, upstream)[0]["method"], "notifications/initialized");
}

#[test]
fn session_header_is_required_and_must_be_known() {
    let mut h = Harness::new("");
    let (exchange, outputs) = h.post(None, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    assert_eq!(status(&outputs, exchange), Some(400));
    let (exchange, outputs) =
        h.post(Some("0123456789abcdef0123456789abcdef"), r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    assert_eq!(status(&outputs, exchange), Some(404));
    let (exchange, outputs) = h.post(Some("not-even-hex"), r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    assert_eq!(status(&outputs, exchange), Some(404));
}

#[test]
fn progress_notifications_turn_the_response_into_a_stream() {
    let mut h = Harness::new("");
    let (session, upstream) = h.initialize();
    let (exchange, outputs) = h.post(
        Some(&session),
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"slow","_meta":{"progressToken":"tok"}}}"#,
    );
    let id = sent_json(&outputs, upstream)[0]["id"].clone();
    let mut all = Vec::new();
    for step in 1..=3 {
        all.extend(h.upstream_says(upstream, &format!(r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":"tok","progress":{step},"total":3}}}}"#)));
    }
    all.extend(h.upstream_says(upstream, &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[]}}}}"#)));
    assert!(stream_started(&all, exchange));
    let events = events(&all, exchange);
    assert_eq!(events.len(), 4);
    assert_eq!(events[0]["params"]["progress"], 1);
    assert_eq!(events[2]["params"]["progress"], 3);
    assert_eq!(events[3]["id"], 5);
    assert!(stream_ended(&all, exchange));
    assert_eq!(h.proxy.in_flight_count(), 0);
}

#[test]
fn json_only_clients_get_json_and_notifications_wait_for_a_stream() {
    let mut h = Harness::new("");
    let (session, upstream) = h.initialize();
    let headers =
        [("content-type", "application/json"), ("accept", "application/json"), ("mcp-session-id", session.as_str())];
    let (exchange, outputs) = h.request(
        "POST",
        "/mcp",
        &headers,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"log"}}"#,
    );
    let id = sent_json(&outputs, upstream)[0]["id"].clone();
    let outputs = h.upstream_says(
        upstream,
        r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"hi"}}"#,
    );
    assert!(!stream_started(&outputs, exchange), "a JSON-only client never gets a stream");
    let outputs = h.upstream_says(upstream, &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#));
    assert_eq!(status(&outputs, exchange), Some(200));
    // The log message waited and arrives when the client opens its GET stream.
    let (get, outputs) = h.open_get(&session);
    assert!(stream_started(&outputs, get));
    assert_eq!(events(&outputs, get)[0]["method"], "notifications/message");
}

#[test]
fn server_requests_reach_the_get_stream_and_answers_go_back() {
    let mut h = Harness::new("");
    let (session, upstream) = h.initialize();
    let (get, _) = h.open_get(&session);
    let outputs = h.upstream_says(
        upstream,
        r#"{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{"messages":[]}}"#,
    );
    assert_eq!(events(&outputs, get)[0]["method"], "sampling/createMessage");
    let (exchange, outputs) = h.post(Some(&session), r#"{"jsonrpc":"2.0","id":"s1","result":{"role":"assistant"}}"#);
    assert_eq!(status(&outputs, exchange), Some(202));
    assert_eq!(sent_json(&outputs, upstream)[0]["id"], "s1");
    // A second GET stream on the same session is refused.
    let (second, outputs) = h.open_get(&session);
    assert_eq!(status(&outputs, second), Some(409));
}

#[test]
fn requests_time_out_with_an_error_and_a_cancellation_upstream() {
    let mut h = Harness::new(r#", "requestTimeoutMs": 1000"#);
    let (session, upstream) = h.initialize();
    let (exchange, outputs) =
        h.post(Some(&session), r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"hang"}}"#);
    let id = sent_json(&outputs, upstream)[0]["id"].clone();
    assert!(h.advance(Duration::from_millis(999)).iter().all(|o| !matches!(o, Output::Respond { .. })));
    let outputs = h.advance(Duration::from_millis(1));
    let (head, body) = response(&outputs, exchange).expect("timed out");
    assert_eq!(head.status, 200);
    assert_eq!(body["error"]["code"], -32001);
    assert_eq!(body["id"], 9);
    let cancel = sent_json(&outputs, upstream);
    assert_eq!(cancel[0]["method"], "notifications/cancelled");
    assert_eq!(cancel[0]["params"]["requestId"], id);
    // A late answer is dropped with a log line, not delivered twice.
    let outputs = h.upstream_says(upstream, &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#));
    assert!(outputs.iter().all(|o| matches!(o, Output::Log { .. })));
    assert_eq!(h.proxy.in_flight_count(), 0);
    assert!(h.proxy.poll_timeout() > Some(h.now.after(Duration::from_secs(60))), "only the idle timer is left");
}

#[test]
fn a_child_that_never_initializes_hits_the_connection_timeout() {
    let mut h = Harness::new(r#", "connectionTimeoutMs": 500"#);
    let (exchange, outputs) = h.post(None, r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#);
    let upstream = spawned(&outputs).expect("spawned");
    let outputs = h.advance(Duration::from_millis(500));
    let (_, body) = response(&outputs, exchange).expect("answered");
    assert_eq!(body["error"]["code"], -32001);
    assert!(closed_upstream(&outputs, upstream));
    assert_eq!(h.proxy.session_count(), 0);
}

#[test]
fn a_dying_child_fails_in_flight_requests_at_once_and_ends_the_session() {
    let mut h = Harness::new("");
    let (session, upstream) = h.initialize();
    let (exchange, _) =
        h.post(Some(&session), r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#);
    let outputs = h.input(Input::UpstreamClosed { upstream, reason: UpstreamEnd::Exited("exit status 1".into()) });
    let (_, body) = response(&outputs, exchange).expect("failed at once");
    assert_eq!(body["error"]["code"], -32004, "upstream closed");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("exit status 1")));
    let (exchange, outputs) = h.post(Some(&session), r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#);
    assert_eq!(status(&outputs, exchange), Some(404));
    // New sessions still work.
    h.initialize();
}

#[test]
fn delete_ends_the_session_and_its_child() {
    let mut h = Harness::new("");
    let (session, upstream) = h.initialize();
    let (get, _) = h.open_get(&session);
    let (exchange, outputs) = h.request("DELETE", "/mcp", &[("mcp-session-id", session.as_str())], "");
    assert_eq!(status(&outputs, exchange), Some(200));
    assert!(closed_upstream(&outputs, upstream));
    assert!(stream_ended(&outputs, get));
    let (exchange, outputs) = h.post(Some(&session), r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#);
    assert_eq!(status(&outputs, exchange), Some(404));
}

#[test]
fn client_cancellation_is_rewritten_to_the_proxy_id() {
    let mut h = Harness::new("");
    let (session, upstream) = h.initialize();
    let (exchange, outputs) =
        h.post(Some(&session), r#"{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"slow"}}"#);
    let id = sent_json(&outputs, upstream)[0]["id"].clone();
    let (_, outputs) =
        h.post(Some(&session), r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"c1"}}"#);
    assert_eq!(sent_json(&outputs, upstream)[0]["params"]["requestId"], id);
    assert!(response(&outputs, exchange).is_some(), "the cancelled request's exchange is finished");
    assert_eq!(h.proxy.in_flight_count(), 0);
}

#[test]
fn batches_are_answered_with_an_array() {
    let mut h = Harness::new("");
    let (session, upstream) = h.initialize();
    let (exchange, outputs) = h
        .post(Some(&session), r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#);
    let sent = sent_json(&outputs, upstream);
    assert_eq!(sent.len(), 2);
    let first = h.upstream_says(upstream, &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{}}}}"#, sent[1]["id"]));
    assert!(response(&first, exchange).is_none());
    let outputs = h.upstream_says(upstream, &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{}}}}"#, sent[0]["id"]));
    let (_, body) = response(&outputs, exchange).expect("answered");
    assert_eq!(body.as_array().map(Vec::len), Some(2));
}

#[test]
fn unsupported_protocol_versions_are_refused() {
    let mut h = Harness::new("");
    let (session, _) = h.initialize();
    let headers = [
        ("content-type", "application/json"),
        ("accept", JSON_AND_SSE),
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "1999-01-01"),
    ];
    let (exchange, outputs) = h.request("POST", "/mcp", &headers, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(status(&outputs, exchange), Some(400));
}

#[test]
fn lines_that_are_not_json_rpc_are_logged_and_skipped() {
    let mut h = Harness::new("");
    let (session, upstream) = h.initialize();
    let outputs = h.upstream_says(upstream, "Server starting on stdio...");
    assert!(matches!(outputs.as_slice(), [Output::Log { .. }]));
    let (exchange, outputs) = h.post(Some(&session), r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    let id = sent_json(&outputs, upstream)[0]["id"].clone();
    let outputs = h.upstream_says(upstream, &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#));
    assert_eq!(status(&outputs, exchange), Some(200));
}

#[test]
fn a_client_that_goes_away_does_not_break_the_session() {
    let mut h = Harness::new("");
    let (session, upstream) = h.initialize();
    let (exchange, outputs) = h.post(Some(&session), r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    let id = sent_json(&outputs, upstream)[0]["id"].clone();
    h.input(Input::HttpClosed(exchange));
    let outputs = h.upstream_says(upstream, &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#));
    assert!(outputs.iter().all(|o| !matches!(o, Output::Respond { .. })));
    assert_eq!(h.proxy.session_count(), 1);
}

#[test]
fn unrelated_notifications_never_take_over_a_post_response() {
    let mut h = Harness::new("");
    let (session, upstream) = h.initialize();
    let (post, outputs) = h.post(Some(&session), r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    let id = sent_json(&outputs, upstream)[0]["id"].clone();
    let outputs = h.upstream_says(upstream, r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#);
    assert!(!stream_started(&outputs, post), "a list change is not part of this request");
    let outputs = h.upstream_says(upstream, &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[]}}}}"#));
    assert_eq!(status(&outputs, post), Some(200), "still plain JSON");
    let (get, outputs) = h.open_get(&session);
    assert_eq!(events(&outputs, get)[0]["method"], "notifications/tools/list_changed", "it waited for the GET stream");
    // A log message during a request goes with that request.
    let (post, _) = h.post(Some(&session), r#"{"jsonrpc":"2.0","id":2,"method":"tools/call"}"#);
    let outputs = h.upstream_says(
        upstream,
        r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#,
    );
    assert_eq!(events(&outputs, post)[0]["method"], "notifications/message");
}
