//! Which server a request is for: endpoint paths, and the tools a server may expose.
//!
//! The bridge serves its one server at the configured root endpoints (`/mcp`, `/sse`,
//! `/messages`). The aggregator serves each server at `/{name}/mcp`, `/{name}/sse` and
//! `/{name}/messages`; a name may itself hold slashes (a path token like `fetch/s3cret`).

use crate::config::Config;

/// A client-facing endpoint kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// Streamable HTTP.
    Stream,
    /// The legacy SSE stream.
    Sse,
    /// Where legacy SSE clients POST.
    Messages,
}

/// Where a request path leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// Index into `Config::servers`.
    pub(crate) server: usize,
    pub(crate) endpoint: Endpoint,
}

/// Finds the route for `path`, if any.
pub(crate) fn route(config: &Config, path: &str) -> Option<Route> {
    let endpoints = [
        (Endpoint::Stream, config.transports.stream, config.stream_endpoint.as_str()),
        (Endpoint::Sse, config.transports.sse, config.sse_endpoint.as_str()),
        (Endpoint::Messages, config.transports.sse, config.messages_endpoint.as_str()),
    ];
    for (endpoint, served, suffix) in endpoints {
        if !served {
            continue;
        }
        if config.is_bridge() {
            if path == suffix {
                return Some(Route { server: 0, endpoint });
            }
            continue;
        }
        let Some(name) = path.strip_suffix(suffix).and_then(|rest| rest.strip_prefix('/')) else {
            continue;
        };
        if let Some(server) = config.servers.iter().position(|s| s.name == name) {
            return Some(Route { server, endpoint });
        }
    }
    None
}

/// The path of an endpoint of `server`.
pub(crate) fn endpoint_path(config: &Config, server: usize, endpoint: Endpoint) -> String {
    let suffix = match endpoint {
        Endpoint::Stream => &config.stream_endpoint,
        Endpoint::Sse => &config.sse_endpoint,
        Endpoint::Messages => &config.messages_endpoint,
    };
    match config.servers.get(server) {
        Some(entry) if !config.is_bridge() => format!("/{}{suffix}", entry.name),
        _ => suffix.clone(),
    }
}

/// Whether `server` exposes the tool `name` (its tool filter allows it).
pub(crate) fn tool_allowed(config: &Config, server: usize, name: &str) -> bool {
    config.servers.get(server).and_then(|s| s.options.tool_filter.as_ref()).is_none_or(|filter| filter.allows(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aggregator() -> Config {
        let file = r#"{"mcpServers": {"time": {"command": "t"}, "fetch/t0k3n": {"command": "f"}}}"#;
        let json = serde_json::json!({"configFile": {"text": file}}).to_string();
        Config::from_json(&json).expect("valid")
    }

    #[test]
    fn the_bridge_serves_the_root_endpoints() {
        let config = Config::from_json(r#"{"server": {"command": "x"}}"#).expect("valid");
        assert_eq!(route(&config, "/mcp"), Some(Route { server: 0, endpoint: Endpoint::Stream }));
        assert_eq!(route(&config, "/messages"), Some(Route { server: 0, endpoint: Endpoint::Messages }));
        assert_eq!(route(&config, "/x/mcp"), None);
        assert_eq!(endpoint_path(&config, 0, Endpoint::Messages), "/messages");
    }

    #[test]
    fn the_aggregator_serves_each_server_under_its_name() {
        let config = aggregator();
        let fetch = config.servers.iter().position(|s| s.name == "fetch/t0k3n").expect("listed");
        assert_eq!(route(&config, "/fetch/t0k3n/sse"), Some(Route { server: fetch, endpoint: Endpoint::Sse }));
        assert_eq!(route(&config, "/fetch/mcp"), None, "the token is part of the path");
        assert_eq!(route(&config, "/time/mcp").map(|r| r.endpoint), Some(Endpoint::Stream));
        assert_eq!(route(&config, "/mcp"), None);
        assert_eq!(route(&config, "/nope/mcp"), None);
        assert_eq!(endpoint_path(&config, fetch, Endpoint::Messages), "/fetch/t0k3n/messages");
    }
}
