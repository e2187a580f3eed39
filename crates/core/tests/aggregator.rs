//! The aggregator: servers from a configuration file, each at its own endpoints.

mod harness;

use harness::*;
use mcp_proxy_core::Output;
use mcp_proxy_core::UpstreamEnd;

const FILE: &str = r#"{
  "mcpProxy": {"name": "agg", "options": {"authTokens": ["proxy-token"]}},
  "mcpServers": {
    "time": {"command": "time-server", "options": {"authTokens": []}},
    "github": {"command": "gh-server", "args": ["stdio"], "options": {"toolFilter": {"mode": "block", "list": ["delete_repo"]}}},
    "fetch/s3cret": {"command": "fetch-server"}
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
    let (stream, outputs) = h.request("GET", "/fetch/s3cret/sse", &[("accept", "text/event-stream"), AUTH[0]], "");
    assert_eq!(spawned_command(&outputs).as_deref(), Some("fetch-server"));
    let endpoint = events(&outputs, stream)[0].as_str().expect("endpoint").to_owned();
    assert!(endpoint.starts_with("/fetch/s3cret/messages?sessionId="), "{endpoint}");
    let (exchange, outputs) = h.request("GET", "/fetch/sse", &[("accept", "text/event-stream")], "");
    assert_eq!(status(&outputs, exchange), Some(404), "the path token is required");
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
        h.post_to("/fetch/s3cret/mcp", Some(&session), &AUTH, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
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
    let json =
        serde_json::json!({"configFile": {"text": r#"{"mcpServers": {"r": {"transportType": "carrier-pigeon"}}}"#}});
    let error = mcp_proxy_core::Config::from_json(&json.to_string()).expect_err("nothing to serve");
    assert_eq!(error.path, "mcpServers");
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

/// The upstreams a merged session spawned, by command.
fn spawned_by_command(outputs: &[Output]) -> std::collections::HashMap<String, mcp_proxy_core::UpstreamId> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Spawn { upstream, server } => Some((server.command.clone(), *upstream)),
            _ => None,
        })
        .collect()
}

const AUTH: [(&str, &str); 1] = [("authorization", "Bearer proxy-token")];

/// Opens a merged session, each server answering initialize; returns the session and upstreams.
fn merged_session(h: &mut Harness) -> (String, std::collections::HashMap<String, mcp_proxy_core::UpstreamId>) {
    let (exchange, outputs) = h.post_to("/mcp", None, &AUTH, INITIALIZE);
    let upstreams = spawned_by_command(&outputs);
    assert_eq!(upstreams.len(), 3, "one child per stdio server: {upstreams:?}");
    let mut last = Vec::new();
    for (command, upstream) in &upstreams {
        let id = sent_json(&outputs, *upstream)[0]["id"].clone();
        let caps = if command == "time-server" { r#"{"tools":{"listChanged":true}}"# } else { r#"{"prompts":{}}"# };
        let result = format!(
            r#"{{"protocolVersion":"2025-11-25","capabilities":{caps},"serverInfo":{{"name":"{command}","version":"1"}}}}"#
        );
        last = h.upstream_says(*upstream, &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#));
    }
    let (head, body) = response(&last, exchange).expect("merged initialize answered after the last server");
    assert_eq!(body["result"]["serverInfo"]["name"], "agg");
    assert_eq!(body["result"]["capabilities"]["tools"]["listChanged"], true);
    assert!(body["result"]["capabilities"]["prompts"].is_object());
    (header(&head.headers, "mcp-session-id").expect("session").to_owned(), upstreams)
}

#[test]
fn the_merged_endpoint_serves_only_what_the_credential_opens() {
    let mut h = Harness::aggregator(FILE);
    for anonymous in [&[][..], &[("authorization", "Bearer wrong")][..]] {
        let (_, outputs) = h.post_to("/mcp", None, anonymous, INITIALIZE);
        let commands: Vec<String> = spawned_by_command(&outputs).into_keys().collect();
        assert_eq!(commands, ["time-server"], "only the server without tokens");
    }
    let locked = r#"{"mcpProxy": {"options": {"authTokens": ["t"]}}, "mcpServers": {"a": {"command": "a"}}}"#;
    let mut h = Harness::aggregator(locked);
    let (exchange, outputs) = h.post_to("/mcp", None, &[], INITIALIZE);
    assert_eq!(status(&outputs, exchange), Some(401), "a credential that opens nothing");
    let (head, _) = response(&outputs, exchange).expect("answered");
    assert_eq!(header(&head.headers, "www-authenticate"), Some("Bearer"));
}

#[test]
fn a_merged_session_is_refused_to_a_credential_that_reaches_less() {
    let mut h = Harness::aggregator(FILE);
    let (session, _) = merged_session(&mut h);
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let (exchange, outputs) = h.post_to("/mcp", Some(&session), &[], ping);
    assert_eq!(status(&outputs, exchange), Some(403), "anonymous reaches only time, the session holds github too");
    let (exchange, outputs) = h.post_to("/mcp", Some(&session), &AUTH, ping);
    assert_eq!(status(&outputs, exchange), Some(200));
}

#[test]
fn the_merged_endpoint_lists_every_server_with_prefixes_and_routes_calls() {
    let mut h = Harness::aggregator(FILE);
    let (session, upstreams) = merged_session(&mut h);
    let (list, outputs) =
        h.post_to("/mcp", Some(&session), &AUTH, r#"{"jsonrpc":"2.0","id":"l","method":"tools/list"}"#);
    let mut last = Vec::new();
    for (command, upstream) in &upstreams {
        let id = sent_json(&outputs, *upstream)[0]["id"].clone();
        let tools = match command.as_str() {
            "gh-server" => r#"[{"name":"create_issue"},{"name":"delete_repo"}]"#,
            "time-server" => r#"[{"name":"now"}]"#,
            _ => r#"[{"name":"get"}]"#,
        };
        last = h.upstream_says(*upstream, &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":{tools}}}}}"#));
    }
    let (_, body) = response(&last, list).expect("merged list");
    let mut names: Vec<&str> =
        body["result"]["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["fetch__get", "github__create_issue", "time__now"], "prefixed, filtered, no path token");
    let call = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"time__now","arguments":{}}}"#;
    let (exchange, outputs) = h.post_to("/mcp", Some(&session), &AUTH, call);
    let sent = sent_json(&outputs, upstreams["time-server"]);
    assert_eq!(sent[0]["params"]["name"], "now", "the server gets its own name");
    assert!(sent_json(&outputs, upstreams["gh-server"]).is_empty());
    let outputs = h.upstream_says(
        upstreams["time-server"],
        &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{"content":[]}}}}"#, sent[0]["id"]),
    );
    assert_eq!(response(&outputs, exchange).map(|(_, b)| b["id"].clone()), Some(serde_json::json!(7)));
    for bad in ["nobody__now", "github__delete_repo"] {
        let call = format!(r#"{{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{{"name":"{bad}"}}}}"#);
        let (exchange, outputs) = h.post_to("/mcp", Some(&session), &AUTH, &call);
        assert_eq!(
            response(&outputs, exchange).map(|(_, b)| b["error"]["code"].clone()),
            Some(serde_json::json!(-32602)),
            "{bad}"
        );
    }
    let (exchange, outputs) = h.post_to("/mcp", Some(&session), &AUTH, r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#);
    assert!(
        response(&outputs, exchange).is_some_and(|(_, b)| b["result"].is_object()),
        "ping is answered by the proxy"
    );
}

#[test]
fn one_failing_server_does_not_break_the_merged_endpoint() {
    let mut h = Harness::aggregator(FILE);
    let (session, upstreams) = merged_session(&mut h);
    h.input(mcp_proxy_core::Input::UpstreamClosed {
        upstream: upstreams["gh-server"],
        reason: mcp_proxy_core::UpstreamEnd::Exited("crashed".into()),
    });
    let (list, outputs) = h.post_to("/mcp", Some(&session), &AUTH, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    assert!(sent_json(&outputs, upstreams["gh-server"]).is_empty(), "the dead server is left out");
    let mut last = Vec::new();
    for command in ["time-server", "fetch-server"] {
        let id = sent_json(&outputs, upstreams[command])[0]["id"].clone();
        last =
            h.upstream_says(upstreams[command], &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[]}}}}"#));
    }
    assert_eq!(status(&last, list), Some(200));
}

#[test]
fn server_requests_get_proxy_ids_and_answers_go_back_to_the_asker() {
    let mut h = Harness::aggregator(FILE);
    let (session, upstreams) = merged_session(&mut h);
    let (get, _) =
        h.request("GET", "/mcp", &[("accept", "text/event-stream"), ("mcp-session-id", session.as_str()), AUTH[0]], "");
    let asked = h.upstream_says(upstreams["time-server"], r#"{"jsonrpc":"2.0","id":0,"method":"roots/list"}"#);
    let request = events(&asked, get)[0].clone();
    assert_ne!(request["id"], 0, "ids of different servers could collide; the proxy names them");
    let answer = format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{"roots":[]}}}}"#, request["id"]);
    let (_, outputs) = h.post_to("/mcp", Some(&session), &AUTH, &answer);
    assert_eq!(sent_json(&outputs, upstreams["time-server"])[0]["id"], 0);
    assert!(sent_json(&outputs, upstreams["gh-server"]).is_empty());
}

#[test]
fn log_enabled_servers_have_their_traffic_logged() {
    let file =
        r#"{"mcpServers": {"loud": {"command": "a", "options": {"logEnabled": true}}, "quiet": {"command": "b"}}}"#;
    let mut h = Harness::aggregator(file);
    let (_, loud) = h.post_to("/loud/mcp", None, &[], INITIALIZE);
    assert!(loud.iter().any(|o| matches!(o, Output::Log { message, .. } if message.contains("-> server loud"))));
    let (_, quiet) = h.post_to("/quiet/mcp", None, &[], INITIALIZE);
    assert!(!quiet.iter().any(|o| matches!(o, Output::Log { message, .. } if message.contains("-> server"))));
}

/// Opens a merged session on `file` where every server answers initialize (or, for the
/// commands in `refusing`, refuses it); returns the outputs of the last answer too.
fn open_merged(
    h: &mut Harness,
    refusing: &[&str],
) -> (mcp_proxy_core::ExchangeId, Vec<Output>, std::collections::HashMap<String, mcp_proxy_core::UpstreamId>) {
    let (exchange, outputs) = h.post_to("/mcp", None, &[], INITIALIZE);
    let upstreams = spawned_by_command(&outputs);
    let mut last = Vec::new();
    for (command, upstream) in &upstreams {
        let id = sent_json(&outputs, *upstream)[0]["id"].clone();
        let answer = if refusing.contains(&command.as_str()) {
            format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-1,"message":"no"}}}}"#)
        } else {
            format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"capabilities":{{"tools":{{}}}}}}}}"#)
        };
        last = h.upstream_says(*upstream, &answer);
    }
    (exchange, last, upstreams)
}

#[test]
fn without_prefixes_names_are_routed_by_who_listed_them() {
    let file = r#"{"mcpProxy": {"toolPrefix": "never"}, "mcpServers": {"a": {"command": "a-server"}, "b": {"command": "b-server"}}}"#;
    let mut h = Harness::aggregator(file);
    let (exchange, last, upstreams) = open_merged(&mut h, &[]);
    let session = response(&last, exchange)
        .and_then(|(head, _)| header(&head.headers, "mcp-session-id").map(str::to_owned))
        .expect("session");
    let (list, outputs) = h.post_to("/mcp", Some(&session), &[], r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    let mut last = Vec::new();
    for (command, upstream) in &upstreams {
        let id = sent_json(&outputs, *upstream)[0]["id"].clone();
        let tools = if command == "a-server" {
            r#"[{"name":"shared"},{"name":"only_a"}]"#
        } else {
            r#"[{"name":"shared"},{"name":"only_b"}]"#
        };
        last = h.upstream_says(*upstream, &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":{tools}}}}}"#));
    }
    let (_, body) = response(&last, list).expect("listed");
    let mut names: Vec<&str> =
        body["result"]["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["only_a", "only_b", "shared"], "unprefixed, a duplicate name listed once");
    let (_, outputs) = h.post_to(
        "/mcp",
        Some(&session),
        &[],
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"only_b"}}"#,
    );
    assert_eq!(sent_json(&outputs, upstreams["b-server"])[0]["params"]["name"], "only_b");
    assert!(sent_json(&outputs, upstreams["a-server"]).is_empty());
}

#[test]
fn fail_open_by_default_and_fail_closed_on_request() {
    let servers = r#""mcpServers": {"a": {"command": "a-server"}, "b": {"command": "b-server"}}"#;
    let mut open = Harness::aggregator(&format!("{{{servers}}}"));
    let (exchange, last, _) = open_merged(&mut open, &["b-server"]);
    assert!(response(&last, exchange).is_some_and(|(head, body)| head.status == 200 && body["result"].is_object()));
    let mut closed = Harness::aggregator(&format!(r#"{{"mcpProxy": {{"failClosed": true}}, {servers}}}"#));
    let (exchange, last, _) = open_merged(&mut closed, &["b-server"]);
    let (_, body) = response(&last, exchange).expect("answered");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("failClosed")), "{body}");
    assert_eq!(closed.proxy.session_count(), 0);
}

#[test]
fn a_server_that_died_rejoins_the_merged_session_after_a_backoff() {
    let mut h = Harness::aggregator(FILE);
    let (session, upstreams) = merged_session(&mut h);
    let time = upstreams["time-server"];
    h.input(mcp_proxy_core::Input::UpstreamClosed { upstream: time, reason: UpstreamEnd::Exited("crashed".into()) });
    assert!(spawned(&h.advance(std::time::Duration::from_millis(499))).is_none());
    let outputs = h.advance(std::time::Duration::from_millis(1));
    let again = spawned(&outputs).expect("a fresh child after 500 ms");
    let init = sent_json(&outputs, again);
    assert_eq!(init[0]["method"], "initialize");
    assert_eq!(init[0]["params"]["clientInfo"]["name"], "t", "initialized like the client did");
    let outputs = h.upstream_says(
        again,
        &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{"capabilities":{{}}}}}}"#, init[0]["id"]),
    );
    assert_eq!(sent_json(&outputs, again)[0]["method"], "notifications/initialized");
    let (list, outputs) = h.post_to("/mcp", Some(&session), &AUTH, r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#);
    assert_eq!(sent_json(&outputs, again).len(), 1, "it is asked again");
    let _ = list;
}
