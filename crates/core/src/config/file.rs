//! The user-facing configuration file of the aggregator: the Go `mcp-proxy` format (v2, and
//! its older v1 `server`/`clients` form) and Claude Desktop's bare `mcpServers` file.
//!
//! Parsing is pure: the text comes in, and so does a way to read environment variables for
//! `${VAR}` expansion. Errors name the field by path (`mcpServers.github.options.toolFilter.mode`);
//! the shell adds the file's name.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub use super::expand::{expand_env, EnvLookup};
use super::json::{boolean, object, string, tokens};
pub(crate) use super::server::ADDED_THROUGH_API;
use super::server::{options, server_entry, v1_client, validate_name, PartialOptions};
pub use super::server::{
    parse_server, FilterMode, ServerEntry, ServerOptions, ServerSource, ToolFilter, UpstreamConfig, UpstreamProtocol,
};
use crate::error::ConfigError;

/// A parsed configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFile {
    /// The proxy's own settings (`mcpProxy`).
    pub proxy: ProxySettings,
    /// The valid servers, by name.
    pub servers: Vec<ServerEntry>,
    /// Servers left out because they are invalid and `panicIfInvalid` is off.
    pub skipped: Vec<ConfigError>,
    /// Fields that were not understood (ignored, worth a log line).
    pub warnings: Vec<String>,
}

/// The `mcpProxy` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySettings {
    /// The public base URL (`https://mcp.example.com`, no trailing `/`), if set: where the
    /// proxy names itself (the legacy SSE `endpoint` event, the API listing, logs).
    pub base_url: Option<String>,
    /// The listen address (`:9090`, `127.0.0.1:8080`), if set.
    pub addr: Option<ListenAddr>,
    /// The name the merged endpoint reports in `serverInfo`.
    pub name: String,
    /// The version it reports.
    pub version: String,
    /// The transport the Go tool served (`sse` or `streamable-http`); this proxy serves both.
    pub serve: Option<String>,
    /// How the merged endpoint names tools and prompts.
    pub prefix_mode: PrefixMode,
    /// Between a server's prefix and a name on the merged endpoint (default `__`).
    pub separator: Option<String>,
    /// The merged endpoint fails when any server fails to initialize (default: leave it out).
    pub fail_closed: bool,
    /// Defaults every server inherits field by field.
    pub options: ServerOptions,
    /// Bearer tokens for the runtime server API and temporary servers (`mcpProxy.adminTokens`).
    /// Client tokens (`authTokens`) never count as admin tokens.
    pub admin_tokens: Vec<String>,
}

/// How the merged endpoint names tools and prompts (`mcpProxy.toolPrefix`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PrefixMode {
    /// Always `{server}{separator}{name}`.
    #[default]
    Always,
    /// Prefixed only when more than one server is served.
    Multiple,
    /// Never prefixed: names are looked up in what each server listed (the first wins).
    Never,
}

/// A server entry as read, before inheritance: its upstream and own options, or why not.
type RawServer = (String, Result<(UpstreamConfig, PartialOptions), ConfigError>);

/// Option names accepted at the top level of the older format.
const TOP_LEVEL_OPTIONS: [&str; 6] =
    ["authTokens", "panicIfInvalid", "logEnabled", "toolFilter", "disabled", "shareUpstream"];

impl ConfigFile {
    /// Parses a configuration file. With `expand`, `${VAR}` in the text is replaced through
    /// `env` first (an unset variable is an error).
    pub fn parse(text: &str, expand: Option<EnvLookup<'_>>) -> Result<ConfigFile, ConfigError> {
        let text = match expand {
            Some(env) => expand_env(text, env)?,
            None => text.to_owned(),
        };
        let root: Value =
            serde_json::from_str(&text).map_err(|e| ConfigError::new(".", format!("not valid JSON: {e}")))?;
        let root = object(&root, ".")?;
        let mut warnings = Vec::new();
        let proxy = match (root.get("mcpProxy"), root.get("server")) {
            (Some(proxy), _) => proxy_settings(proxy, "mcpProxy", &mut warnings)?,
            (None, Some(v1)) => v1_proxy_settings(v1)?,
            (None, None) => top_level_settings(root)?,
        };
        let raw_servers: Vec<RawServer> = match (root.get("mcpServers"), root.get("clients")) {
            (Some(servers), _) => object(servers, "mcpServers")?
                .iter()
                .map(|(name, entry)| (name.clone(), server_entry(name, entry, &mut warnings)))
                .collect(),
            (None, Some(clients)) => {
                object(clients, "clients")?.iter().map(|(name, entry)| (name.clone(), v1_client(name, entry))).collect()
            }
            (None, None) => return Err(ConfigError::new("mcpServers", "missing: the file names no servers")),
        };
        for key in root.keys() {
            let known = ["mcpProxy", "mcpServers", "server", "clients"].contains(&key.as_str())
                || TOP_LEVEL_OPTIONS.contains(&key.as_str());
            if !known {
                warnings.push(format!("{key}: unknown field, ignored"));
            }
        }
        let mut servers = Vec::new();
        let mut skipped = Vec::new();
        let mut names = BTreeMap::new();
        for (name, parsed) in raw_servers {
            let checked = parsed.and_then(|(upstream, options)| {
                validate_name(&name)?;
                Ok((upstream, options))
            });
            match checked {
                Ok((upstream, options)) => {
                    let source = options.source();
                    let options = options.inherit(&proxy.options);
                    if !options.disabled {
                        names.insert(name.clone(), ());
                        servers.push(ServerEntry { name, upstream, options, source });
                    }
                }
                Err(error) if panics(root, &name, &proxy.options) => return Err(error),
                Err(error) => skipped.push(error),
            }
        }
        servers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ConfigFile { proxy, servers, skipped, warnings })
    }
}

/// Whether an invalid server `name` stops startup: its own `panicIfInvalid`, else the default.
fn panics(root: &Map<String, Value>, name: &str, defaults: &ServerOptions) -> bool {
    let own = ["mcpServers", "clients"]
        .iter()
        .filter_map(|section| root.get(*section)?.get(name))
        .find_map(|entry| {
            entry.get("options").and_then(|o| o.get("panicIfInvalid")).or_else(|| entry.get("panicIfInvalid"))
        })
        .and_then(Value::as_bool);
    own.unwrap_or(defaults.panic_if_invalid)
}

fn proxy_settings(value: &Value, path: &str, warnings: &mut Vec<String>) -> Result<ProxySettings, ConfigError> {
    let map = object(value, path)?;
    for key in map.keys() {
        if ![
            "baseURL",
            "addr",
            "name",
            "version",
            "type",
            "options",
            "toolPrefix",
            "separator",
            "failClosed",
            "adminTokens",
        ]
        .contains(&key.as_str())
        {
            warnings.push(format!("{path}.{key}: unknown field, ignored"));
        }
    }
    let serve = string(map, "type", path)?;
    if let Some(kind) = &serve {
        if kind != "sse" && kind != "streamable-http" {
            return Err(ConfigError::new(
                format!("{path}.type"),
                format!("must be \"sse\" or \"streamable-http\", got {kind:?}"),
            ));
        }
    }
    let defaults = options(map.get("options"), &format!("{path}.options"))?.inherit(&ServerOptions::default());
    let prefix_mode = match string(map, "toolPrefix", path)?.as_deref() {
        None | Some("always") => PrefixMode::Always,
        Some("multiple") => PrefixMode::Multiple,
        Some("never") => PrefixMode::Never,
        Some(other) => {
            return Err(ConfigError::new(
                format!("{path}.toolPrefix"),
                format!("must be \"always\", \"multiple\" or \"never\", got {other:?}"),
            ))
        }
    };
    let separator = string(map, "separator", path)?;
    if let Some(separator) = &separator {
        if separator.is_empty() || !separator.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) {
            return Err(ConfigError::new(format!("{path}.separator"), "must be letters, digits, '_', '-' or '.'"));
        }
    }
    Ok(ProxySettings {
        base_url: base_url(string(map, "baseURL", path)?, &format!("{path}.baseURL"))?,
        addr: listen_addr(string(map, "addr", path)?, &format!("{path}.addr"))?,
        name: string(map, "name", path)?.unwrap_or_else(|| "mcp-proxy".into()),
        version: string(map, "version", path)?.unwrap_or_else(|| env!("CARGO_PKG_VERSION").into()),
        serve,
        prefix_mode,
        separator,
        fail_closed: boolean(map, "failClosed", path)?.unwrap_or(false),
        options: defaults,
        admin_tokens: tokens(map, "adminTokens", path)?.unwrap_or_default(),
    })
}

fn v1_proxy_settings(value: &Value) -> Result<ProxySettings, ConfigError> {
    let map = object(value, "server")?;
    let global = tokens(map, "globalAuthTokens", "server")?.unwrap_or_default();
    Ok(ProxySettings {
        base_url: base_url(string(map, "baseURL", "server")?, "server.baseURL")?,
        addr: listen_addr(string(map, "addr", "server")?, "server.addr")?,
        name: string(map, "name", "server")?.unwrap_or_else(|| "mcp-proxy".into()),
        version: string(map, "version", "server")?.unwrap_or_else(|| env!("CARGO_PKG_VERSION").into()),
        serve: None,
        prefix_mode: PrefixMode::Always,
        separator: None,
        fail_closed: false,
        options: ServerOptions { auth_tokens: global, ..ServerOptions::default() },
        admin_tokens: Vec::new(),
    })
}

/// The older format: no `mcpProxy`, options at the top level (Claude Desktop files have none).
fn top_level_settings(root: &Map<String, Value>) -> Result<ProxySettings, ConfigError> {
    let mut top = Map::new();
    for key in TOP_LEVEL_OPTIONS {
        if let Some(value) = root.get(key) {
            top.insert(key.to_owned(), value.clone());
        }
    }
    let defaults = options(Some(&Value::Object(top)), ".")?.inherit(&ServerOptions::default());
    Ok(ProxySettings {
        base_url: None,
        addr: None,
        name: "mcp-proxy".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        serve: None,
        prefix_mode: PrefixMode::Always,
        separator: None,
        fail_closed: false,
        options: defaults,
        admin_tokens: Vec::new(),
    })
}

/// Where the Go tool listened (`mcpProxy.addr`): Go's `host:port`, where an empty host
/// (`":9090"`) means every interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr {
    /// The address to bind; `None`: every interface.
    pub host: Option<std::net::IpAddr>,
    /// The port.
    pub port: u16,
}

fn listen_addr(text: Option<String>, field: &str) -> Result<Option<ListenAddr>, ConfigError> {
    let Some(text) = text else { return Ok(None) };
    let bad = || {
        ConfigError::new(
            field,
            format!("must be \"host:port\" or \":port\" (an IP address or localhost), got {text:?}"),
        )
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    let host = match host.trim_start_matches('[').trim_end_matches(']') {
        "" => None,
        "localhost" => Some(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
        other => Some(other.parse().map_err(|_| bad())?),
    };
    Ok(Some(ListenAddr { host, port }))
}

fn base_url(text: Option<String>, field: &str) -> Result<Option<String>, ConfigError> {
    let Some(text) = text.filter(|t| !t.is_empty()) else { return Ok(None) };
    let rest = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://"));
    let ok = rest.is_some_and(|rest| {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty()
            && !host.contains('@')
            && !rest.contains(['?', '#'])
            && !rest.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    });
    if !ok {
        return Err(ConfigError::new(
            field,
            format!("must be an http(s) URL without query or credentials, got {text:?}"),
        ));
    }
    Ok(Some(text.trim_end_matches('/').to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_go_tools_addr_and_base_url_are_read() {
        let addr = |text: &str| listen_addr(Some(text.into()), "mcpProxy.addr");
        assert_eq!(addr(":9090").expect("valid"), Some(ListenAddr { host: None, port: 9090 }));
        assert_eq!(
            addr("127.0.0.1:80").expect("valid").and_then(|a| a.host).map(|h| h.to_string()),
            Some("127.0.0.1".into())
        );
        assert_eq!(addr("[::1]:80").expect("valid").and_then(|a| a.host).map(|h| h.to_string()), Some("::1".into()));
        assert!(addr("localhost:1").expect("valid").is_some_and(|a| a.host.is_some_and(|h| h.is_loopback())));
        for bad in ["9090", ":http", "example.com:80", ":70000"] {
            let error = addr(bad).expect_err(bad);
            assert!(error.to_string().contains("mcpProxy.addr"), "{error}");
        }
        let url = |text: &str| base_url(Some(text.into()), "mcpProxy.baseURL");
        assert_eq!(url("https://mcp.example.com/").expect("valid").as_deref(), Some("https://mcp.example.com"));
        assert_eq!(url("http://h:8/proxy").expect("valid").as_deref(), Some("http://h:8/proxy"));
        for bad in ["mcp.example.com", "ftp://h", "https://u:p@h", "https://h/?x=1", "https://"] {
            assert!(url(bad).is_err(), "{bad}");
        }
    }

    fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse(text, None)
    }

    const GO_V2: &str = r#"{
      "mcpProxy": {
        "baseURL": "https://mcp.example.com", "addr": ":9090", "name": "MCP Proxy", "version": "1.0.0",
        "type": "streamable-http",
        "options": {"panicIfInvalid": false, "logEnabled": true, "authTokens": ["DefaultToken"]}
      },
      "mcpServers": {
        "github": {
          "command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"],
          "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "<YOUR_TOKEN>"},
          "options": {"toolFilter": {"mode": "block", "list": ["create_repository"]}}
        },
        "fetch": {"command": "uvx", "args": ["mcp-server-fetch"], "options": {"panicIfInvalid": true, "logEnabled": false, "authTokens": ["SpecificToken"]}},
        "amap": {"url": "https://mcp.amap.com/sse?key=<YOUR_TOKEN>"},
        "remote": {"transportType": "streamable-http", "url": "https://remote.example/mcp", "headers": {"Authorization": "Bearer x"}, "timeout": 30000000000}
      }
    }"#;

    #[test]
    fn reads_the_go_format_with_inheritance() {
        let file = parse(GO_V2).expect("valid");
        assert_eq!(file.proxy.name, "MCP Proxy");
        let names: Vec<&str> = file.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["amap", "fetch", "github", "remote"]);
        let github = &file.servers[2];
        assert_eq!(github.options.auth_tokens, ["DefaultToken"], "inherited");
        assert!(github.options.log_enabled, "inherited");
        let filter = github.options.tool_filter.as_ref().expect("filter");
        assert!(!filter.allows("create_repository") && filter.allows("search"));
        let fetch = &file.servers[1];
        assert_eq!(fetch.options.auth_tokens, ["SpecificToken"], "own value wins");
        assert!(!fetch.options.log_enabled);
        assert!(
            matches!(&file.servers[0].upstream, UpstreamConfig::Sse { url, .. } if url.starts_with("https://mcp.amap.com"))
        );
        assert!(
            matches!(&file.servers[3].upstream, UpstreamConfig::StreamableHttp { timeout_ms: Some(30_000), headers, .. } if headers.len() == 1)
        );
        assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    }

    #[test]
    fn reads_claude_desktop_and_the_older_formats() {
        let claude =
            parse(r#"{"mcpServers": {"time": {"command": "uvx", "args": ["mcp-server-time"]}}}"#).expect("valid");
        assert_eq!(claude.servers.len(), 1);
        assert_eq!(claude.proxy.name, "mcp-proxy");
        let older = parse(r#"{"authTokens": ["t"], "mcpServers": {"a": {"command": "x"}}}"#).expect("valid");
        assert_eq!(older.servers[0].options.auth_tokens, ["t"]);
        let v1 = parse(
            r#"{"server": {"addr": ":8080", "name": "p", "globalAuthTokens": ["g"]},
                "clients": {"fs": {"type": "stdio", "config": {"command": "npx", "args": ["fs"]}, "authTokens": ["own"]},
                            "web": {"type": "sse", "config": {"url": "http://localhost:9/sse"}}}}"#,
        )
        .expect("valid");
        assert_eq!(v1.servers.len(), 2);
        assert_eq!(v1.servers[0].options.auth_tokens, ["own"]);
        assert_eq!(v1.servers[1].options.auth_tokens, ["g"]);
    }

    #[test]
    fn errors_name_the_server_and_the_field() {
        let error = parse(r#"{"mcpServers": {"a": {"command": "x", "options": {"panicIfInvalid": true, "toolFilter": {"mode": "maybe"}}}}}"#)
            .expect_err("bad mode");
        assert_eq!(error.path, "mcpServers.a.options.toolFilter.mode");
        let error =
            parse(r#"{"mcpServers": {"a": {"command": "x", "args": "oops", "options": {"panicIfInvalid": true}}}}"#)
                .expect_err("args");
        assert_eq!(error.path, "mcpServers.a.args");
        let error = parse(
            r#"{"mcpProxy": {"options": {"panicIfInvalid": true}}, "mcpServers": {"b": {"transportType": "stdio"}}}"#,
        )
        .expect_err("no command");
        assert_eq!(error.path, "mcpServers.b.command");
        let error = parse(r#"{"mcpServers": {"c": {"url": "ftp://x", "options": {"panicIfInvalid": true}}}}"#)
            .expect_err("url");
        assert_eq!(error.path, "mcpServers.c.url");
        assert_eq!(parse("{").expect_err("json").path, ".");
        assert_eq!(parse("{}").expect_err("no servers").path, "mcpServers");
    }

    #[test]
    fn invalid_servers_are_skipped_unless_panic_if_invalid() {
        let file = parse(r#"{"mcpServers": {"good": {"command": "x"}, "bad": {"transportType": "carrier-pigeon"}}}"#)
            .expect("skips");
        assert_eq!(file.servers.len(), 1);
        assert_eq!(file.skipped[0].path, "mcpServers.bad.transportType");
        let strict = r#"{"mcpProxy": {"options": {"panicIfInvalid": true}}, "mcpServers": {"bad": {}}}"#;
        assert_eq!(parse(strict).expect_err("strict").path, "mcpServers.bad");
    }

    #[test]
    fn notices_never_name_a_path_token() {
        let file = parse(r#"{"mcpServers": {"fetch/s3cret": {"command": "x", "bogus": 1}, "bad/t0ken": {"transportType": "pigeon"}}}"#)
            .expect("valid");
        assert_eq!(file.warnings, ["mcpServers.fetch/….bogus: unknown field, ignored"]);
        assert_eq!(file.skipped[0].path, "mcpServers.bad/….transportType");
        let strict = r#"{"mcpProxy": {"options": {"panicIfInvalid": true}}, "mcpServers": {"x/s3cret": {"args": 1}}}"#;
        let error = parse(strict).expect_err("strict");
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let v1 =
            parse(r#"{"clients": {"fetch/s3cret": {"type": "stdio", "config": {"args": 1}, "panicIfInvalid": true}}}"#)
                .expect_err("v1");
        assert!(!format!("{}{}", v1.path, v1.message).contains("s3cret"), "{v1}");
    }

    #[test]
    fn disabled_servers_and_bad_names_are_left_out() {
        let file = parse(r#"{"mcpServers": {"off": {"command": "x", "options": {"disabled": true}}, "../x": {"command": "y"}, "fetch/tok3n": {"command": "z"}}}"#)
            .expect("valid");
        let names: Vec<&str> = file.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["fetch/tok3n"]);
        assert_eq!(file.skipped.len(), 1);
    }

    #[test]
    fn empty_tokens_are_errors_naming_the_server() {
        let strict = r#"{"mcpProxy": {"options": {"panicIfInvalid": true}},
                         "mcpServers": {"gh": {"command": "x", "options": {"authTokens": ["ok", ""]}}}}"#;
        let error = parse(strict).expect_err("an empty token");
        assert_eq!(error.path, "mcpServers.gh.options.authTokens[1]");
        let skipped = parse(
            r#"{"mcpServers": {"gh": {"command": "x", "options": {"authTokens": [" "]}}, "ok": {"command": "y"}}}"#,
        )
        .expect("the bad server is left out");
        assert_eq!(skipped.servers.len(), 1);
        assert_eq!(skipped.skipped[0].path, "mcpServers.gh.options.authTokens[0]");
        let global = parse(r#"{"mcpProxy": {"options": {"authTokens": [""]}}, "mcpServers": {"a": {"command": "x"}}}"#);
        assert_eq!(global.expect_err("global").path, "mcpProxy.options.authTokens[0]");
        let admin = parse(r#"{"mcpProxy": {"adminTokens": [""]}, "mcpServers": {"a": {"command": "x"}}}"#);
        assert_eq!(admin.expect_err("admin").path, "mcpProxy.adminTokens[0]");
        let env = |_: &str| Some(String::new());
        let unset = ConfigFile::parse(r#"{"authTokens": ["${T}"], "mcpServers": {"a": {"command": "x"}}}"#, Some(&env));
        assert_eq!(unset.expect_err("expanded to nothing").path, "authTokens[0]");
    }

    #[test]
    fn unknown_fields_are_warnings() {
        let file =
            parse(r#"{"globalShortcut": "x", "mcpServers": {"a": {"command": "x", "cwd": "/tmp"}}}"#).expect("valid");
        assert_eq!(file.warnings.len(), 2, "{:?}", file.warnings);
    }
}
