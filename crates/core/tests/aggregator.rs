//! The aggregator: servers from a configuration file, each at its own endpoints.

mod harness;

use harness::*;
use mcp_proxy_core::Output;

const FILE: &str = r#"{
  "mcpProxy": {"name": "agg", "options": {"authTokens": ["proxy-token"]}},
  "mcpServers": {
    "time": {"command": "time-server", "options": {"authTokens": []}},
    "github": {"command": "gh-server", "args": ["stdio"], "options": {"toolFilter": {"mode": "block", "list": ["delete_repo"]}}},
    "fetch/s3cret": {"command": "fetch-server", "options": {"authTokens": []}},
    "remote": {"url": "https://remote.example/sse"}
  }
}"#;

fn spawned_command(outputs: &[Output]) -> Option<String> {
    outputs.iter().find_map(|o| match o {
        Output::Spawn { server, .. } => Some(server.command.clone()),
        _ => None,
    })
}

#[test]
fn each_server_has_its_own_endpoints() {
    let mut h = Harness::aggregator(FILE);
    let (_, outputs) = h.request("GET", "/time/sse", &[("accept", "text/event-stream")], "");
    assert_eq!(spawned_command(&outputs).as_deref(), Some("time-server"));
    let (stream, outputs) = h.request("GET", "/fetch/s3cret/sse", &[("accept", "text/event-stream")], "");
    assert_eq!(spawned_command(&outputs).as_deref(), Some("fetch-server"));
    let endpoint = events(&outputs, stream)[0].as_str().expect("endpoint").to_owned();
    assert!(endpoint.starts_with("/fetch/s3cret/messages?sessionId="), "{endpoint}");
    let (exchange, outputs) = h.request("GET", "/fetch/sse", &[("accept", "text/event-stream")], "");
    assert_eq!(status(&outputs, exchange), Some(404), "the path token is required");
    let (exchange, outputs) = h.request("GET", "/remote/sse", &[("accept", "text/event-stream")], "");
    assert_eq!(status(&outputs, exchange), Some(404), "sse upstreams are left out for now");
}

#[test]
fn tokens_are_per_server_and_inherited() {
    let mut h = Harness::aggregator(FILE);
    let (exchange, outputs) = h.post_to("/github/mcp", None, &[], INITIALIZE);
    assert_eq!(status(&outputs, exchange), Some(401), "github inherits the proxy's tokens");
    let (exchange, outputs) = h.post_to("/github/mcp", None, &[("authorization", "Bearer wrong")], INITIALIZE);
    assert_eq!(status(&outputs, exchange), Some(401));
    let (_, outputs) = h.post_to("/github/mcp", None, &[("authorization", "Bearer proxy-token")], INITIALIZE);
    assert_eq!(spawned_command(&outputs).as_deref(), Some("gh-server"));
    let (_, outputs) = h.post_to("/time/mcp", None, &[], INITIALIZE);
    assert_eq!(spawned_command(&outputs).as_deref(), Some("time-server"), "an empty list means no auth");
}

#[test]
fn sessions_belong_to_their_server() {
    let mut h = Harness::aggregator(FILE);
    let (session, _) = h.initialize_at("/time/mcp", &[]);
    let (exchange, outputs) =
        h.post_to("/fetch/s3cret/mcp", Some(&session), &[], r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(status(&outputs, exchange), Some(404), "a session of another server is unknown here");
}

#[test]
fn the_tool_filter_hides_and_blocks_tools() {
    let mut h = Harness::aggregator(FILE);
    let auth = [("authorization", "proxy-token")];
    let (session, upstream) = h.initialize_at("/github/mcp", &auth);
    let (exchange, outputs) =
        h.post_to("/github/mcp", Some(&session), &auth, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    let id = sent_json(&outputs, upstream)[0]["id"].clone();
    let tools = r#"{"tools":[{"name":"create_issue","inputSchema":{}},{"name":"delete_repo","inputSchema":{}}]}"#;
    let outputs = h.upstream_says(upstream, &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{tools}}}"#));
    let (_, body) = response(&outputs, exchange).expect("listed");
    let names: Vec<&str> =
        body["result"]["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["create_issue"]);
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_repo","arguments":{}}}"#;
    let (exchange, outputs) = h.post_to("/github/mcp", Some(&session), &auth, call);
    assert!(sent_json(&outputs, upstream).is_empty(), "a blocked call never reaches the server");
    let (_, body) = response(&outputs, exchange).expect("refused at once");
    assert_eq!(body["error"]["code"], -32602);
    assert_eq!(body["id"], 2);
}

#[test]
fn a_file_with_no_usable_server_is_refused() {
    let json = serde_json::json!({"configFile": {"text": r#"{"mcpServers": {"r": {"url": "https://x.example/mcp", "transportType": "streamable-http"}}}"#}});
    let error = mcp_proxy_core::Config::from_json(&json.to_string()).expect_err("nothing to serve");
    assert_eq!(error.path, "mcpServers");
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
