//! Attacks on the core, refused: credentials, path tokens, forwarded authorization.

mod harness;

use harness::*;
use mcp_proxy_core::{Config, Instant, Output, Proxy};

const FILE: &str = r#"{
  "mcpProxy": {"name": "agg", "adminTokens": ["adm"]},
  "mcpServers": {
    "open": {"command": "open-server"},
    "fetch/s3cret": {"command": "fetch-server", "options": {"authTokens": ["fetch-token"]}},
    "remote": {"transportType": "streamable-http", "url": "http://127.0.0.1:9/mcp", "options": {"forwardAuthorization": true}}
  }
}"#;

fn logs(outputs: &[Output]) -> String {
    outputs
        .iter()
        .filter_map(|o| if let Output::Log { message, .. } = o { Some(message.as_str()) } else { None })
        .collect::<Vec<_>>()
        .join("\n")
}

fn all_text(outputs: &[Output]) -> String {
    outputs.iter().map(|o| format!("{o:?}")).collect::<Vec<_>>().join("\n")
}

#[test]
fn path_tokens_never_leave_the_proxy() {
    let config = Config::from_json(&serde_json::json!({"configFile": {"text": FILE}}).to_string()).expect("valid");
    let mut proxy = Proxy::new(config, [1; 32], Instant(0));
    let started: Vec<Output> = std::iter::from_fn(|| proxy.poll_output()).collect();
    assert!(logs(&started).contains("serving fetch:"), "{}", logs(&started));
    assert!(!all_text(&started).contains("s3cret"), "startup lines: {}", logs(&started));

    let mut h = Harness::aggregator(FILE);
    let (exchange, outputs) = h.request("GET", "/api/servers", &[("authorization", "Bearer adm")], "");
    let (_, body) = response(&outputs, exchange).expect("listed");
    let text = body.to_string();
    assert!(!text.contains("s3cret"), "{text}");
    let fetch = body["servers"].as_array().expect("servers").iter().find(|s| s["name"] == "fetch").expect("fetch");
    assert_eq!(fetch["pathToken"], true);
    assert_eq!(fetch["paths"]["mcp"], "/fetch/{pathToken}/mcp");

    // A session on the path-token endpoint: its log lines name the server without the token.
    let (_, outputs) = h.post_to("/fetch/s3cret/mcp", None, &[("authorization", "Bearer fetch-token")], INIT);
    assert!(spawned(&outputs).is_some());
    assert!(!logs(&outputs).contains("s3cret"), "{}", logs(&outputs));
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

#[test]
fn merged_cursors_carry_no_server_name() {
    let file = r#"{"mcpServers": {"fetch/s3cret": {"command": "fetch-server", "options": {"authTokens": ["t"]}}}}"#;
    let mut h = Harness::aggregator(file);
    let auth = [("authorization", "Bearer t")];
    let (exchange, outputs) = h.post_to("/mcp", None, &auth, INIT);
    let upstream = spawned(&outputs).expect("the server joins through its header token");
    let outputs = h.upstream_says(upstream, r#"{"jsonrpc":"2.0","id":1,"result":{"capabilities":{"tools":{}}}}"#);
    let (head, _) = response(&outputs, exchange).expect("initialized");
    let session = header(&head.headers, "mcp-session-id").expect("session").to_owned();
    let (list, outputs) = h.post_to("/mcp", Some(&session), &auth, r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
    let id = sent_json(&outputs, upstream)[0]["id"].clone();
    let outputs = h.upstream_says(
        upstream,
        &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[{{"name":"get"}}],"nextCursor":"page-2"}}}}"#),
    );
    let (_, body) = response(&outputs, list).expect("listed");
    let cursor = body["result"]["nextCursor"].as_str().expect("a merged cursor");
    assert!(!cursor.contains("s3cret"), "{cursor}");
    assert_eq!(body["result"]["tools"][0]["name"], "fetch__get");
}

#[test]
fn the_proxys_own_credentials_are_not_forwarded_upstream() {
    let file = r#"{"mcpServers": {"remote": {"transportType": "streamable-http", "url": "http://127.0.0.1:9/mcp",
                   "options": {"forwardAuthorization": true}}}}"#;
    let json = serde_json::json!({"configFile": {"text": file}, "apiKey": "the-api-key"}).to_string();
    let mut h = Harness::with_config(&json);
    // The API key presented as a bearer token opened the proxy's door: it must not go on.
    let (_, outputs) = h.post_to("/remote/mcp", None, &[("authorization", "Bearer the-api-key")], INIT);
    let post = fetches(&outputs).into_iter().find(|f| f.method == "POST").expect("forwarded initialize");
    assert!(
        !post.headers.iter().any(|h| h.name.eq_ignore_ascii_case("authorization")),
        "the API key leaked upstream: {:?}",
        post.headers
    );
    // A credential of the client's own (presented besides the API key) does go on.
    let (_, outputs) =
        h.post_to("/remote/mcp", None, &[("x-api-key", "the-api-key"), ("authorization", "Bearer users-own")], INIT);
    let post = fetches(&outputs).into_iter().find(|f| f.method == "POST").expect("forwarded initialize");
    let forwarded = post.headers.iter().find(|h| h.name.eq_ignore_ascii_case("authorization")).map(|h| &h.value);
    assert_eq!(forwarded.map(String::as_str), Some("Bearer users-own"));
}
