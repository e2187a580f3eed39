//! Merging the answers of several servers into one for the merged endpoint: one function
//! per method, pure.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::error::codes;
use crate::ids::ServerId;
use crate::route::prefixed;
use crate::wire::jsonrpc::ErrorObject;
use crate::wire::mcp;

/// One server's answer to a fanned-out request.
#[derive(Clone, Debug)]
pub(crate) struct Part {
    pub(crate) server: ServerId,
    pub(crate) outcome: Result<Value, ErrorObject>,
}

/// The merged answer, which server each resource URI (or template) belongs to, and which
/// server each merged tool or prompt name belongs to.
#[derive(Debug)]
pub(crate) struct Merged {
    pub(crate) outcome: Result<Value, ErrorObject>,
    pub(crate) owners: Vec<(String, ServerId)>,
    pub(crate) names: Vec<(String, ServerId)>,
}

/// Methods the merged endpoint sends to every server.
pub(crate) const FAN_OUT: [&str; 6] = [
    mcp::INITIALIZE,
    mcp::TOOLS_LIST,
    mcp::PROMPTS_LIST,
    mcp::RESOURCES_LIST,
    mcp::RESOURCE_TEMPLATES_LIST,
    mcp::LOGGING_SET_LEVEL,
];

/// Merges the parts of a fanned-out request.
pub(crate) fn merge(config: &Config, method: &str, requested_version: Option<&str>, parts: &[Part]) -> Merged {
    if matches!(method, mcp::RESOURCES_READ | mcp::RESOURCES_SUBSCRIBE | mcp::RESOURCES_UNSUBSCRIBE) {
        return Merged { outcome: first_answer(parts), owners: Vec::new(), names: Vec::new() };
    }
    let ok: Vec<(ServerId, &Value)> =
        parts.iter().filter_map(|p| p.outcome.as_ref().ok().map(|v| (p.server, v))).collect();
    if ok.is_empty() {
        let failures: Vec<String> = parts
            .iter()
            .filter_map(|p| {
                p.outcome.as_ref().err().map(|e| format!("{}: {}", server_name(config, p.server), e.message))
            })
            .collect();
        let error = ErrorObject::new(codes::UPSTREAM_CLOSED, format!("no server answered ({})", failures.join("; ")));
        return Merged { outcome: Err(error), owners: Vec::new(), names: Vec::new() };
    }
    if method == mcp::INITIALIZE && config.aggregator.as_ref().is_some_and(|a| a.fail_closed) {
        if let Some(failed) = parts.iter().find(|p| p.outcome.is_err()) {
            let message = format!("{} did not initialize and failClosed is set", server_name(config, failed.server));
            return Merged {
                outcome: Err(ErrorObject::new(codes::UPSTREAM_CLOSED, message)),
                owners: Vec::new(),
                names: Vec::new(),
            };
        }
    }
    let mut owners = Vec::new();
    let mut names: Vec<(String, ServerId)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let outcome = match method {
        mcp::INITIALIZE => initialize(config, requested_version, &ok),
        mcp::TOOLS_LIST => list(config, &ok, "tools", |config, server, item| {
            let name = item.get("name").and_then(Value::as_str)?;
            let allowed = crate::policy::tool_filter::tool_allowed(config, server, name);
            let merged = prefixed(config, server, name);
            // Without prefixes two servers may offer the same name: the first one keeps it.
            (allowed && seen.insert(("tool", merged.clone()))).then(|| {
                names.push((merged.clone(), server));
                renamed(item, merged)
            })
        }),
        mcp::PROMPTS_LIST => list(config, &ok, "prompts", |config, server, item| {
            let name = item.get("name").and_then(Value::as_str)?;
            let merged = prefixed(config, server, name);
            seen.insert(("prompt", merged.clone())).then(|| {
                names.push((merged.clone(), server));
                renamed(item, merged)
            })
        }),
        mcp::RESOURCES_LIST => list(config, &ok, "resources", |_, server, item| {
            if let Some(uri) = item.get("uri").and_then(Value::as_str) {
                owners.push((uri.to_owned(), server));
            }
            Some(item.clone())
        }),
        mcp::RESOURCE_TEMPLATES_LIST => list(config, &ok, "resourceTemplates", |_, server, item| {
            if let Some(template) = item.get("uriTemplate").and_then(Value::as_str) {
                owners.push((template.to_owned(), server));
            }
            Some(item.clone())
        }),
        _ => Ok(json!({})),
    };
    Merged { outcome, owners, names }
}

/// A request asked of every server where one answer is wanted: the first server (in
/// configuration order) that succeeded, else the first one's error.
fn first_answer(parts: &[Part]) -> Result<Value, ErrorObject> {
    let mut parts: Vec<&Part> = parts.iter().collect();
    parts.sort_by_key(|p| p.server);
    let first = parts.iter().find(|p| p.outcome.is_ok()).or(parts.first());
    match first {
        Some(part) => part.outcome.clone(),
        None => Err(ErrorObject::new(codes::RESOURCE_NOT_FOUND, "no server lists that resource")),
    }
}

fn server_name(config: &Config, server: ServerId) -> &str {
    config.servers.get(server).map_or("?", crate::config::file::ServerEntry::display_name)
}

fn renamed(item: &Value, name: String) -> Value {
    let mut item = item.clone();
    if let Some(object) = item.as_object_mut() {
        object.insert("name".into(), Value::String(name));
    }
    item
}

/// Concatenates the `key` arrays of every part, mapped by `each` (which may drop items),
/// and combines the parts' `nextCursor`s into one cursor naming each server's own.
fn list(
    config: &Config,
    parts: &[(ServerId, &Value)],
    key: &str,
    mut each: impl FnMut(&Config, ServerId, &Value) -> Option<Value>,
) -> Result<Value, ErrorObject> {
    let mut items = Vec::new();
    let mut cursors = BTreeMap::new();
    for (server, result) in parts {
        for item in result.get(key).and_then(Value::as_array).into_iter().flatten() {
            items.extend(each(config, *server, item));
        }
        if let Some(cursor) = result.get("nextCursor").and_then(Value::as_str) {
            // Keyed by the server's number: a name could carry a path token.
            cursors.insert(server.to_string(), cursor.to_owned());
        }
    }
    let mut merged = Map::new();
    merged.insert(key.into(), Value::Array(items));
    if !cursors.is_empty() {
        merged.insert(
            "nextCursor".into(),
            Value::String(serde_json::to_string(&cursors).expect("a map of strings always serializes")),
        );
    }
    Ok(Value::Object(merged))
}

/// Reads a merged cursor back: server number → that server's own cursor.
pub(crate) fn split_cursor(cursor: &str) -> Option<BTreeMap<String, String>> {
    serde_json::from_str(cursor).ok()
}

fn initialize(
    config: &Config,
    requested_version: Option<&str>,
    parts: &[(ServerId, &Value)],
) -> Result<Value, ErrorObject> {
    let versions: Vec<&str> =
        parts.iter().filter_map(|(_, r)| r.get("protocolVersion").and_then(Value::as_str)).collect();
    // The client's revision if every server agreed to it, else the oldest any server chose.
    let version = match requested_version {
        Some(requested) if versions.iter().all(|v| *v == requested) => requested,
        _ => versions
            .iter()
            .copied()
            .filter(|v| mcp::is_supported_version(v))
            .min()
            .unwrap_or(mcp::LATEST_PROTOCOL_VERSION),
    };
    let mut capabilities = Map::new();
    for (_, result) in parts {
        let Some(offered) = result.get("capabilities").and_then(Value::as_object) else {
            continue;
        };
        for key in ["tools", "prompts", "resources", "logging", "completions"] {
            let Some(value) = offered.get(key) else {
                continue;
            };
            let entry = capabilities.entry(key.to_owned()).or_insert_with(|| json!({}));
            if let (Some(entry), Some(flags)) = (entry.as_object_mut(), value.as_object()) {
                for flag in ["listChanged", "subscribe"] {
                    if flags.get(flag).and_then(Value::as_bool) == Some(true) {
                        entry.insert(flag.into(), Value::Bool(true));
                    }
                }
            }
        }
    }
    let instructions: Vec<String> = parts
        .iter()
        .filter_map(|(server, r)| {
            let text = r.get("instructions").and_then(Value::as_str)?;
            Some(format!(
                "## {} (tools and prompts prefixed {:?})\n{text}",
                server_name(config, *server),
                prefixed(config, *server, "")
            ))
        })
        .collect();
    let (name, version_string) =
        config.aggregator.as_ref().map_or(("mcp-proxy".to_owned(), env!("CARGO_PKG_VERSION").to_owned()), |a| {
            (a.name.clone(), a.version.clone())
        });
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": {"name": name, "version": version_string},
    });
    if !instructions.is_empty() {
        result["instructions"] = Value::String(instructions.join("\n\n"));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let file = r#"{"mcpProxy": {"name": "agg", "version": "9"},
            "mcpServers": {"a": {"command": "x"}, "b/tok": {"command": "y", "options": {"toolFilter": {"mode": "allow", "list": ["keep"]}}}}}"#;
        Config::from_json(&json!({"configFile": {"text": file}}).to_string()).expect("valid")
    }

    fn part(server: ServerId, outcome: Value) -> Part {
        Part { server, outcome: Ok(outcome) }
    }

    #[test]
    fn tools_are_prefixed_filtered_and_paged_per_server() {
        let config = config();
        let parts = [
            part(ServerId(0), json!({"tools": [{"name": "one", "inputSchema": {}}], "nextCursor": "a-page-2"})),
            part(ServerId(1), json!({"tools": [{"name": "keep"}, {"name": "drop"}]})),
        ];
        let merged = merge(&config, "tools/list", None, &parts).outcome.expect("merged");
        let names: Vec<&str> =
            merged["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(names, ["a__one", "b__keep"]);
        let cursor = split_cursor(merged["nextCursor"].as_str().expect("cursor")).expect("ours");
        assert_eq!(cursor.get("0").map(String::as_str), Some("a-page-2"), "keyed by number, never by name");
    }

    #[test]
    fn initialize_unions_capabilities_and_names_the_proxy() {
        let config = config();
        let parts = [
            part(
                ServerId(0),
                json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {"listChanged": true}}, "instructions": "use a"}),
            ),
            part(
                ServerId(1),
                json!({"protocolVersion": "2025-06-18", "capabilities": {"resources": {"subscribe": true}, "logging": {}}}),
            ),
            Part { server: ServerId(1), outcome: Err(ErrorObject::new(-1, "down")) },
        ];
        let result = merge(&config, "initialize", Some("2025-11-25"), &parts).outcome.expect("merged");
        assert_eq!(result["protocolVersion"], "2025-06-18", "the servers did not all agree to the client's");
        assert_eq!(result["capabilities"]["tools"]["listChanged"], true);
        assert_eq!(result["capabilities"]["resources"]["subscribe"], true);
        assert!(result["capabilities"]["logging"].is_object());
        assert_eq!(result["serverInfo"], json!({"name": "agg", "version": "9"}));
        assert!(result["instructions"].as_str().is_some_and(|t| t.contains("use a")));
    }

    #[test]
    fn resources_keep_their_uris_and_record_owners() {
        let config = config();
        let parts = [part(ServerId(1), json!({"resources": [{"uri": "file:///x", "name": "x"}]}))];
        let merged = merge(&config, "resources/list", None, &parts);
        assert_eq!(merged.outcome.expect("merged")["resources"][0]["uri"], "file:///x");
        assert_eq!(merged.owners, [("file:///x".to_owned(), ServerId(1))]);
    }

    #[test]
    fn all_parts_failing_is_an_error() {
        let config = config();
        let parts = [Part { server: ServerId(0), outcome: Err(ErrorObject::new(-1, "down")) }];
        let error = merge(&config, "tools/list", None, &parts).outcome.expect_err("nothing answered");
        assert!(error.message.contains("a: down"), "{}", error.message);
    }
}
