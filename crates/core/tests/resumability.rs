//! Resumable streams, keep-alives and idle sessions, driven in memory with a fake clock.

mod harness;

use std::time::Duration;

use harness::*;
use mcp_proxy_core::{ExchangeId, Input, Output};

/// The `id:` of each event written to `exchange`.
fn event_ids(outputs: &[Output], exchange: ExchangeId) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::StreamData { exchange: e, data } if *e == exchange => {
                Some(String::from_utf8_lossy(data).into_owned())
            }
            _ => None,
        })
        .flat_map(|text| text.lines().filter_map(|l| l.strip_prefix("id: ").map(str::to_owned)).collect::<Vec<_>>())
        .collect()
}

fn progress(token: &str, step: u32) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":"{token}","progress":{step}}}}}"#
    )
}

#[test]
fn a_broken_post_stream_is_resumed_with_last_event_id() {
    let mut h = Harness::new("");
    let (session, upstream) = h.initialize();
    let (post, outputs) = h.post(
        Some(&session),
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"_meta":{"progressToken":"t"}}}"#,
    );
    let id = sent_json(&outputs, upstream)[0]["id"].clone();
    let first = h.upstream_says(upstream, &progress("t", 1));
    let ids = event_ids(&first, post);
    assert_eq!(ids.len(), 2, "a priming event, then the progress event: {ids:?}");
    let priming = ids[0].clone();
    // The connection breaks; the server goes on.
    h.input(Input::HttpClosed(post));
    let missed = h.upstream_says(upstream, &progress("t", 2));
    assert!(missed.iter().all(|o| !matches!(o, Output::StreamData { .. })), "nobody to write to");
    // Meanwhile the GET stream gets nothing of this stream.
    // The client resumes from the first progress event.
    let headers =
        [("accept", "text/event-stream"), ("mcp-session-id", session.as_str()), ("last-event-id", ids[1].as_str())];
    let (resumed, outputs) = h.request("GET", "/mcp", &headers, "");
    assert!(stream_started(&outputs, resumed));
    let replayed = events(&outputs, resumed);
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0]["params"]["progress"], 2);
    // The answer now arrives on the resumed connection, which then ends.
    let outputs = h.upstream_says(upstream, &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#));
    assert_eq!(events(&outputs, resumed)[0]["id"], 7);
    assert!(stream_ended(&outputs, resumed));
    // Resuming from the priming event later replays the whole stream, and ends at once.
    let headers =
        [("accept", "text/event-stream"), ("mcp-session-id", session.as_str()), ("last-event-id", priming.as_str())];
    let (late, outputs) = h.request("GET", "/mcp", &headers, "");
    assert_eq!(events(&outputs, late).len(), 3);
    assert!(stream_ended(&outputs, late));
}

#[test]
fn resuming_never_replays_another_stream() {
    let mut h = Harness::new("");
    let (session, upstream) = h.initialize();
    let (get, _) = h.open_get(&session);
    let outputs = h.upstream_says(
        upstream,
        r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"on the GET stream"}}"#,
    );
    let get_ids = event_ids(&outputs, get);
    let (post, outputs) =
        h.post(Some(&session), r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{"progressToken":1}}}"#);
    let id = sent_json(&outputs, upstream)[0]["id"].clone();
    let outputs = h.upstream_says(upstream, &progress_number(1));
    let post_ids = event_ids(&outputs, post);
    h.upstream_says(upstream, &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#));
    h.input(Input::HttpClosed(get));
    let headers =
        [("accept", "text/event-stream"), ("mcp-session-id", session.as_str()), ("last-event-id", get_ids[0].as_str())];
    let (resumed, outputs) = h.request("GET", "/mcp", &headers, "");
    assert!(events(&outputs, resumed).is_empty(), "the POST stream's events stay on the POST stream");
    let all_ids: Vec<&String> = get_ids.iter().chain(post_ids.iter()).collect();
    let mut unique = all_ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), all_ids.len(), "event ids are unique within the session");
}

fn progress_number(step: u32) -> String {
    format!(r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":1,"progress":{step}}}}}"#)
}

#[test]
fn open_streams_get_keep_alive_comments() {
    let mut h = Harness::new(r#", "keepAliveMs": 1000"#);
    let (session, _) = h.initialize();
    assert_eq!(h.proxy.poll_timeout().map(|t| t.0 > 0), Some(true), "the idle timer is armed");
    let (get, _) = h.open_get(&session);
    let outputs = h.advance(Duration::from_millis(1000));
    let pings: Vec<&Output> = outputs
        .iter()
        .filter(|o| matches!(o, Output::StreamData { exchange, data } if *exchange == get && data.starts_with(b":")))
        .collect();
    assert_eq!(pings.len(), 1);
    h.input(Input::HttpClosed(get));
    let outputs = h.advance(Duration::from_millis(1000));
    assert!(outputs.iter().all(|o| !matches!(o, Output::StreamData { .. })));
}

#[test]
fn idle_sessions_end_and_stop_their_child() {
    let mut h = Harness::new(r#", "sessionTimeoutMs": 60000"#);
    let (session, upstream) = h.initialize();
    h.advance(Duration::from_secs(30));
    // Activity at 30 s pushes the end to 90 s.
    let (exchange, outputs) = h.post(Some(&session), r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert_eq!(status(&outputs, exchange), Some(202));
    assert!(!closed_upstream(&h.advance(Duration::from_secs(31)), upstream));
    let outputs = h.advance(Duration::from_secs(30));
    assert!(closed_upstream(&outputs, upstream));
    assert_eq!(h.proxy.session_count(), 0);
}

#[test]
fn a_session_with_an_open_stream_is_not_idle() {
    let mut h = Harness::new(r#", "sessionTimeoutMs": 1000, "keepAliveMs": 0"#);
    let (session, upstream) = h.initialize();
    h.open_get(&session);
    assert!(!closed_upstream(&h.advance(Duration::from_secs(10)), upstream));
    assert_eq!(h.proxy.session_count(), 1);
}

#[test]
fn idle_time_counts_from_the_end_of_a_stream() {
    let mut h = Harness::new(r#", "sessionTimeoutMs": 1000, "keepAliveMs": 0"#);
    let (session, upstream) = h.initialize();
    let (get, _) = h.open_get(&session);
    h.advance(Duration::from_secs(5));
    h.input(Input::HttpClosed(get));
    assert!(!closed_upstream(&h.advance(Duration::from_millis(900)), upstream), "1 s of idleness starts at the close");
    assert!(closed_upstream(&h.advance(Duration::from_millis(1100)), upstream));
}
