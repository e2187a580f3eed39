//! Which server a request is for: endpoint paths, and the tools a server may expose.
//!
//! The bridge serves its one server at the configured root endpoints (`/mcp`, `/sse`,
//! `/messages`). The aggregator serves each server at `/{name}/mcp`, `/{name}/sse` and
//! `/{name}/messages`; a name may itself hold slashes (a path token like `fetch/s3cret`). Its
//! root endpoints are the merged endpoint: every server at once, tools and prompts named
//! `{prefix}{separator}{name}` where the prefix is the server name's first segment (a path
//! token never shows in a tool name).

use crate::config::file::PrefixMode;
use crate::config::Config;
use crate::ids::ServerId;

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

/// Which server(s) a session talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// One server (index into `Config::servers`).
    Server(ServerId),
    /// Every server of the aggregator at once.
    Merged,
}

/// Where a request path leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) target: Target,
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
        if path == suffix {
            let target = if config.is_bridge() { Target::Server(ServerId::FIRST) } else { Target::Merged };
            return Some(Route { target, endpoint });
        }
        if config.is_bridge() {
            continue;
        }
        let Some(name) = path.strip_suffix(suffix).and_then(|rest| rest.strip_prefix('/')) else {
            continue;
        };
        if let Some(server) = server_named(config, name) {
            return Some(Route { target: Target::Server(server), endpoint });
        }
    }
    None
}

/// The active server called `name`; a path token is compared in constant time.
pub(crate) fn server_named(config: &Config, name: &str) -> Option<ServerId> {
    let (display, token) = name.split_once('/').map_or((name, None), |(display, token)| (display, Some(token)));
    config.servers.position(|entry| {
        if entry.options.disabled || entry.display_name() != display {
            return false;
        }
        match (entry.path_token(), token) {
            (None, None) => true,
            (Some(own), Some(given)) => crate::policy::constant_time_eq(own.as_bytes(), given.as_bytes()),
            _ => false,
        }
    })
}

/// The path of an endpoint of `target`, with any path token in it.
pub(crate) fn endpoint_path(config: &Config, target: Target, endpoint: Endpoint) -> String {
    let suffix = match endpoint {
        Endpoint::Stream => &config.stream_endpoint,
        Endpoint::Sse => &config.sse_endpoint,
        Endpoint::Messages => &config.messages_endpoint,
    };
    match target {
        Target::Server(server) if !config.is_bridge() => {
            config.servers.get(server).map_or_else(|| suffix.clone(), |entry| format!("/{}{suffix}", entry.name))
        }
        _ => suffix.clone(),
    }
}

/// The path of an endpoint of `target` as logs and listings show it: a path token is
/// replaced by `{pathToken}`.
pub(crate) fn public_endpoint_path(config: &Config, target: Target, endpoint: Endpoint) -> String {
    let path = endpoint_path(config, target, endpoint);
    match target {
        Target::Server(server) => {
            match config.servers.get(server).and_then(|s| Some((s.display_name(), s.path_token()?))) {
                Some((display, _)) if !config.is_bridge() => {
                    let suffix = path.rsplit_once('/').map_or("", |(_, last)| last);
                    format!("/{display}/{{pathToken}}/{suffix}")
                }
                _ => path,
            }
        }
        Target::Merged => path,
    }
}

/// `path` under the public base URL (`mcpProxy.baseURL`), if one is set.
pub(crate) fn public_url(config: &Config, path: &str) -> Option<String> {
    config.aggregator.as_ref()?.base_url.as_ref().map(|base| format!("{base}{path}"))
}

/// The path of the public base URL (`https://h/proxy` -> `/proxy`; none: empty): what a
/// reverse proxy in front strips, so what the proxy's own links must carry.
pub(crate) fn public_path_prefix(config: &Config) -> &str {
    let Some(base) = config.aggregator.as_ref().and_then(|a| a.base_url.as_deref()) else {
        return "";
    };
    let rest = base.split_once("://").map_or(base, |(_, rest)| rest);
    rest.find('/').map_or("", |at| &rest[at..])
}

/// The prefix of `server`'s tools and prompts on the merged endpoint.
pub(crate) fn prefix(config: &Config, server: ServerId) -> &str {
    config.servers.get(server).map_or("", crate::config::file::ServerEntry::display_name)
}

/// Whether the merged endpoint prefixes names (`mcpProxy.toolPrefix`).
pub(crate) fn prefixes(config: &Config) -> bool {
    match config.aggregator.as_ref().map_or(PrefixMode::Always, |a| a.prefix_mode) {
        PrefixMode::Always => true,
        PrefixMode::Multiple => config.servers.entries().filter(|s| !s.options.disabled).count() > 1,
        PrefixMode::Never => false,
    }
}

/// The separator between prefix and name.
fn separator(config: &Config) -> &str {
    config.aggregator.as_ref().and_then(|a| a.separator.as_deref()).unwrap_or(&config.separator)
}

/// Names a tool or prompt of `server` for the merged endpoint.
pub(crate) fn prefixed(config: &Config, server: ServerId, name: &str) -> String {
    if prefixes(config) {
        format!("{}{}{name}", prefix(config, server), separator(config))
    } else {
        name.to_owned()
    }
}

/// Finds which of `servers` a merged name belongs to (the longest matching prefix wins) and
/// the name that server knows.
pub(crate) fn split_prefixed<'a>(config: &Config, servers: &[ServerId], name: &'a str) -> Option<(ServerId, &'a str)> {
    servers
        .iter()
        .filter_map(|&server| {
            let rest = name.strip_prefix(prefix(config, server))?.strip_prefix(separator(config))?;
            Some((prefix(config, server).len(), server, rest))
        })
        .max_by_key(|(length, _, _)| *length)
        .map(|(_, server, rest)| (server, rest))
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
        assert_eq!(
            route(&config, "/mcp"),
            Some(Route { target: Target::Server(ServerId::FIRST), endpoint: Endpoint::Stream })
        );
        assert_eq!(
            route(&config, "/messages"),
            Some(Route { target: Target::Server(ServerId::FIRST), endpoint: Endpoint::Messages })
        );
        assert_eq!(route(&config, "/x/mcp"), None);
        assert_eq!(endpoint_path(&config, Target::Server(ServerId::FIRST), Endpoint::Messages), "/messages");
    }

    #[test]
    fn the_aggregator_serves_each_server_under_its_name() {
        let config = aggregator();
        let fetch = config.servers.position(|s| s.name == "fetch/t0k3n").expect("listed");
        assert_eq!(
            route(&config, "/fetch/t0k3n/sse"),
            Some(Route { target: Target::Server(fetch), endpoint: Endpoint::Sse })
        );
        assert_eq!(route(&config, "/fetch/mcp"), None, "the token is part of the path");
        assert_eq!(route(&config, "/time/mcp").map(|r| r.endpoint), Some(Endpoint::Stream));
        assert_eq!(route(&config, "/mcp"), Some(Route { target: Target::Merged, endpoint: Endpoint::Stream }));
        assert_eq!(route(&config, "/nope/mcp"), None);
        assert_eq!(endpoint_path(&config, Target::Server(fetch), Endpoint::Messages), "/fetch/t0k3n/messages");
        assert_eq!(endpoint_path(&config, Target::Merged, Endpoint::Messages), "/messages");
    }

    #[test]
    fn merged_names_carry_the_server_prefix_but_never_a_path_token() {
        let config = aggregator();
        let fetch = config.servers.position(|s| s.name == "fetch/t0k3n").expect("listed");
        let time = config.servers.position(|s| s.name == "time").expect("listed");
        assert_eq!(prefixed(&config, fetch, "get"), "fetch__get");
        let all = [fetch, time];
        assert_eq!(split_prefixed(&config, &all, "fetch__get"), Some((fetch, "get")));
        assert_eq!(split_prefixed(&config, &all, "time__now__x"), Some((time, "now__x")));
        assert_eq!(split_prefixed(&config, &all, "other__x"), None);
        assert_eq!(split_prefixed(&config, &all, "time_now"), None);
    }
}
