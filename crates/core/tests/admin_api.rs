//! The runtime server API of the aggregator.

mod harness;

use harness::*;
use mcp_proxy_core::config::file::ServerSource;
use mcp_proxy_core::Output;

const FILE: &str = r#"{
  "mcpProxy": {"name": "agg", "adminTokens": ["t0k"], "options": {"authTokens": ["t0k"]}},
  "mcpServers": {"time": {"command": "time-server"}}
}"#;

fn harness(extra: &str) -> Harness {
    Harness::with_config(&format!(
        r#"{{"configFile": {{"text": {}}}{extra}}}"#,
        serde_json::to_string(FILE).expect("json")
    ))
}

const AUTH: (&str, &str) = ("authorization", "Bearer t0k");

fn api(h: &mut Harness, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let (exchange, outputs) = h.request(method, path, &[("content-type", "application/json"), AUTH], body);
    let (head, body) = response(&outputs, exchange).expect("answered");
    (head.status, body)
}

#[test]
fn lists_and_describes_servers() {
    let mut h = harness("");
    let (status, body) = api(&mut h, "GET", "/api/servers", "");
    assert_eq!(status, 200);
    assert_eq!(body["servers"][0]["name"], "time");
    assert_eq!(body["servers"][0]["paths"]["mcp"], "/time/mcp");
    assert_eq!(body["servers"][0]["source"], "config");
    let (status, body) = api(&mut h, "GET", "/api/servers/time", "");
    assert_eq!((status, body["transport"].as_str()), (200, Some("stdio")));
    assert_eq!(api(&mut h, "GET", "/api/servers/nope", "").0, 404);
}

#[test]
fn needs_the_token() {
    let mut h = harness("");
    let (exchange, outputs) = h.request("GET", "/api/servers", &[], "");
    assert_eq!(status(&outputs, exchange), Some(401));
}

#[test]
fn adding_a_stdio_server_must_be_allowed_by_the_operator() {
    let mut h = harness("");
    let (status, body) =
        api(&mut h, "POST", "/api/servers", r#"{"name": "echo", "config": {"command": "echo-server"}}"#);
    assert_eq!(status, 403, "{body}");
}

#[test]
fn added_servers_work_at_once_and_removed_ones_end_their_sessions() {
    let mut h = harness(r#", "allowRuntimeStdio": true"#);
    let (status, body) = api(
        &mut h,
        "POST",
        "/api/servers",
        r#"{"name": "echo", "config": {"command": "echo-server", "args": ["stdio"]}}"#,
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["source"], "api");
    let (status, _) = api(&mut h, "POST", "/api/servers", r#"{"name": "echo", "config": {"command": "other"}}"#);
    assert_eq!(status, 409);
    let (status, body) =
        api(&mut h, "POST", "/api/servers", r#"{"name": "bad", "config": {"command": "x", "args": 3}}"#);
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("mcpServers.bad.args")), "{body}");
    let (session, upstream) = h.initialize_at("/echo/mcp", &[AUTH]);
    let (status, _) = api(&mut h, "DELETE", "/api/servers/echo", "");
    assert_eq!(status, 200);
    let (exchange, outputs) =
        h.post_to("/echo/mcp", Some(&session), &[AUTH], r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(status_of(&outputs, exchange), Some(404));
    let _ = upstream;
    let (_, body) = api(&mut h, "GET", "/api/servers", "");
    assert_eq!(body["servers"].as_array().map(Vec::len), Some(1), "only time is left");
    assert_eq!(h.proxy.config().servers.len(), 1, "a removed server's entry is freed");
}

#[test]
fn removing_a_server_leaves_merged_sessions_running() {
    let mut h = harness(r#", "allowRuntimeStdio": true"#);
    api(&mut h, "POST", "/api/servers", r#"{"name": "echo", "config": {"command": "echo-server"}}"#);
    let (exchange, outputs) =
        h.post_to("/mcp", None, &[AUTH], r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#);
    let upstreams: Vec<(String, mcp_proxy_core::UpstreamId)> = outputs
        .iter()
        .filter_map(|o| {
            if let Output::Spawn { upstream, server } = o {
                Some((server.command.clone(), *upstream))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(upstreams.len(), 2);
    let mut last = Vec::new();
    for (_, upstream) in &upstreams {
        let id = sent_json(&outputs, *upstream)[0]["id"].clone();
        last =
            h.upstream_says(*upstream, &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"capabilities":{{}}}}}}"#));
    }
    let session = response(&last, exchange)
        .and_then(|(head, _)| header(&head.headers, "mcp-session-id").map(str::to_owned))
        .expect("session");
    let echo = upstreams.iter().find(|(c, _)| c == "echo-server").map(|(_, u)| *u).expect("echo");
    let (exchange, outputs) = h.request("DELETE", "/api/servers/echo", &[AUTH], "");
    assert_eq!(status_of(&outputs, exchange), Some(200));
    assert!(closed_upstream(&outputs, echo));
    let (exchange, outputs) = h.post_to("/mcp", Some(&session), &[AUTH], r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(status_of(&outputs, exchange), Some(200), "the merged session goes on");
}

fn status_of(outputs: &[Output], exchange: mcp_proxy_core::ExchangeId) -> Option<u16> {
    status(outputs, exchange)
}

#[test]
fn temporary_servers_live_as_long_as_their_stream() {
    let mut h = harness(r#", "allowRuntimeStdio": true"#);
    let headers = [("content-type", "application/json"), ("accept", "text/event-stream"), AUTH];
    let (stream, outputs) =
        h.request("POST", "/sse", &headers, r#"{"config": {"command": "temp-server", "args": ["x"]}}"#);
    assert!(stream_started(&outputs, stream));
    let upstream = spawned(&outputs).expect("a child for the temporary server");
    let endpoint = events(&outputs, stream)[0].as_str().expect("endpoint").to_owned();
    assert!(endpoint.starts_with("/temporary-1/messages?sessionId="), "{endpoint}");
    let (_, listed) = api(&mut h, "GET", "/api/servers", "");
    assert!(listed["servers"].as_array().expect("servers").iter().any(|s| s["source"] == "temporary"));
    let (post, outputs) = h.request(
        "POST",
        &endpoint,
        &[("content-type", "application/json"), AUTH],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    );
    assert_eq!(status(&outputs, post), Some(202));
    let outputs = h.input(mcp_proxy_core::Input::HttpClosed(stream));
    assert!(closed_upstream(&outputs, upstream));
    let (_, listed) = api(&mut h, "GET", "/api/servers", "");
    assert_eq!(listed["servers"].as_array().map(Vec::len), Some(1), "gone with its stream");
    assert_eq!(h.proxy.config().servers.len(), 1, "its entry is freed: a thousand temporary servers leave nothing");
}

#[test]
fn temporary_servers_need_a_token_and_consent() {
    let mut h = harness("");
    let body = r#"{"config": {"command": "sh"}}"#;
    let (exchange, outputs) = h.request("POST", "/sse", &[("accept", "text/event-stream")], body);
    assert_eq!(status(&outputs, exchange), Some(401));
    let (exchange, outputs) = h.request("POST", "/sse", &[("accept", "text/event-stream"), AUTH], body);
    assert_eq!(status(&outputs, exchange), Some(403), "stdio needs --allow-runtime-stdio");
}

#[test]
fn changes_are_written_back_when_asked() {
    let mut h = harness(r#", "allowRuntimeStdio": true, "persist": true"#);
    let (exchange, outputs) =
        h.request("POST", "/api/servers", &[AUTH], r#"{"name": "echo", "config": {"command": "echo-server"}}"#);
    assert_eq!(status(&outputs, exchange), Some(201));
    let written =
        outputs.iter().find_map(|o| if let Output::PersistConfig(text) = o { Some(text.clone()) } else { None });
    let file: serde_json::Value = serde_json::from_str(&written.expect("persisted")).expect("json");
    assert_eq!(file["mcpServers"]["echo"]["command"], "echo-server");
    assert_eq!(file["mcpServers"]["echo"]["options"]["addedThroughApi"], true, "marked as added at run time");
    assert_eq!(file["mcpProxy"]["name"], "agg", "the rest of the file is kept");
    let read_back = mcp_proxy_core::config::file::ConfigFile::parse(&file.to_string(), None).expect("valid");
    let sources: Vec<_> = read_back.servers.iter().map(|s| (s.name.as_str(), s.source)).collect();
    assert!(sources.contains(&("echo", ServerSource::Api)), "read back, it keeps the runtime rules: {sources:?}");
    assert!(sources.contains(&("time", ServerSource::Config)), "{sources:?}");
    let (exchange, outputs) = h.request("DELETE", "/api/servers/time", &[AUTH], "");
    assert_eq!(status(&outputs, exchange), Some(200));
    let written =
        outputs.iter().find_map(|o| if let Output::PersistConfig(text) = o { Some(text.clone()) } else { None });
    let file: serde_json::Value = serde_json::from_str(&written.expect("persisted")).expect("json");
    assert!(file["mcpServers"].get("time").is_none());
    let mut quiet = harness(r#", "allowRuntimeStdio": true"#);
    let (_, outputs) =
        quiet.request("POST", "/api/servers", &[AUTH], r#"{"name": "echo", "config": {"command": "x"}}"#);
    assert!(!outputs.iter().any(|o| matches!(o, Output::PersistConfig(_))), "only with persist");
}
