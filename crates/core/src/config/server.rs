//! One upstream server of a configuration: how to reach it (stdio, legacy SSE, Streamable
//! HTTP), its options with inheritance from `mcpProxy.options`, and where it came from.

use serde_json::Value;

use super::json::{boolean, duration_ms, http_url, object, string, string_map, strings, tokens};
use crate::config::StdioServer;
use crate::error::ConfigError;
pub use crate::policy::tool_filter::{FilterMode, ToolFilter};

/// One upstream server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerEntry {
    /// Its name: the path segment of its endpoints and the prefix of its tools.
    pub name: String,
    /// How to reach it.
    pub upstream: UpstreamConfig,
    /// Its options, with the inherited ones filled in.
    pub options: ServerOptions,
    /// Where it came from.
    pub source: ServerSource,
}

/// Where a server entry came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServerSource {
    /// The configuration (the command line or the configuration file).
    #[default]
    Config,
    /// Added through the runtime server API.
    Api,
    /// Started for one SSE session (`POST /sse`), gone with it.
    Temporary,
}

impl ServerEntry {
    /// Its name without a path token (`fetch/s3cret` is `fetch`): how logs, errors and merged
    /// prefixes name it.
    pub fn display_name(&self) -> &str {
        self.name.split('/').next().unwrap_or_default()
    }

    /// The path token of its name (`s3cret` of `fetch/s3cret`), if it has one: a secret that
    /// never leaves the proxy.
    pub fn path_token(&self) -> Option<&str> {
        self.name.split_once('/').map(|(_, token)| token)
    }
}

/// How to reach an upstream server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamConfig {
    /// A child process speaking stdio.
    Stdio(StdioServer),
    /// A remote server with the legacy HTTP+SSE transport.
    Sse {
        /// The SSE endpoint.
        url: String,
        /// Headers sent with every request.
        headers: Vec<(String, String)>,
    },
    /// A remote server with Streamable HTTP.
    StreamableHttp {
        /// The MCP endpoint.
        url: String,
        /// Headers sent with every request.
        headers: Vec<(String, String)>,
        /// Per-request timeout, if set.
        timeout_ms: Option<u64>,
    },
}

/// Per-server options (`options`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// An invalid server stops startup instead of being skipped.
    pub panic_if_invalid: bool,
    /// Log this server's traffic.
    pub log_enabled: bool,
    /// Bearer tokens accepted for this server (empty: no auth).
    pub auth_tokens: Vec<String>,
    /// Which tools are exposed.
    pub tool_filter: Option<ToolFilter>,
    /// Leave the server out.
    pub disabled: bool,
    /// One upstream (child or remote session) serves every session of this server, instead of
    /// one each.
    pub share_upstream: bool,
    /// Pass the client's `Authorization` header on to this (remote) server. Off by default: the
    /// MCP authorization specification forbids token pass-through unless meant.
    pub forward_authorization: bool,
    /// A stdio child inherits the proxy's whole environment (minus its secrets), not only the
    /// default list of [`crate::policy::env::DEFAULT_INHERITED`].
    pub inherit_env: bool,
    /// Which revision the proxy speaks to this server (`protocol`); `None`: the proxy's
    /// `upstreamProtocol`.
    pub protocol: Option<UpstreamProtocol>,
}

/// Which protocol era the proxy speaks to an upstream server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum UpstreamProtocol {
    /// Ask the server (`server/discover` first), then speak what it speaks.
    #[default]
    Auto,
    /// The 2025 revisions: `initialize` and a session.
    Legacy,
    /// Revision 2026-07-28: stateless requests.
    Modern,
}

impl UpstreamProtocol {
    /// Reads a setting: `auto`, `legacy` or `2025-11-25`, `modern` or `2026-07-28`.
    pub fn parse(text: &str) -> Option<UpstreamProtocol> {
        match text {
            "auto" => Some(UpstreamProtocol::Auto),
            "legacy" | "2025-11-25" | "2025-06-18" | "2025-03-26" | "2024-11-05" => Some(UpstreamProtocol::Legacy),
            "modern" | "2026-07-28" => Some(UpstreamProtocol::Modern),
            _ => None,
        }
    }
}

impl TryFrom<String> for UpstreamProtocol {
    type Error = String;

    fn try_from(text: String) -> Result<UpstreamProtocol, String> {
        UpstreamProtocol::parse(&text)
            .ok_or_else(|| format!("{text:?} is not a protocol: auto, legacy (2025-11-25) or modern (2026-07-28)"))
    }
}

/// The option `--persist` marks entries added at run time with.
pub(crate) const ADDED_THROUGH_API: &str = "addedThroughApi";

/// Option fields as written: absent fields inherit from `mcpProxy.options`.
#[derive(Clone, Debug, Default)]
pub(super) struct PartialOptions {
    panic_if_invalid: Option<bool>,
    log_enabled: Option<bool>,
    auth_tokens: Option<Vec<String>>,
    tool_filter: Option<ToolFilter>,
    disabled: bool,
    share_upstream: Option<bool>,
    forward_authorization: bool,
    inherit_env: Option<bool>,
    protocol: Option<UpstreamProtocol>,
    /// `addedThroughApi`: written by `--persist` on entries added at run time, so they stay
    /// held to the runtime rules (public addresses only) when the file is read again.
    added_through_api: bool,
}

impl PartialOptions {
    /// Where the entry came from, as the file says.
    pub(super) fn source(&self) -> ServerSource {
        if self.added_through_api {
            ServerSource::Api
        } else {
            ServerSource::Config
        }
    }

    pub(super) fn inherit(self, defaults: &ServerOptions) -> ServerOptions {
        ServerOptions {
            panic_if_invalid: self.panic_if_invalid.unwrap_or(defaults.panic_if_invalid),
            log_enabled: self.log_enabled.unwrap_or(defaults.log_enabled),
            auth_tokens: self.auth_tokens.unwrap_or_else(|| defaults.auth_tokens.clone()),
            tool_filter: self.tool_filter.or_else(|| defaults.tool_filter.clone()),
            disabled: self.disabled,
            share_upstream: self.share_upstream.unwrap_or(defaults.share_upstream),
            // Never inherited: each server that should see clients' credentials says so.
            forward_authorization: self.forward_authorization,
            inherit_env: self.inherit_env.unwrap_or(defaults.inherit_env),
            protocol: self.protocol.or(defaults.protocol),
        }
    }
}

/// Parses one server entry (as in `mcpServers`) added at run time, inheriting `defaults`.
pub fn parse_server(name: &str, entry: &Value, defaults: &ServerOptions) -> Result<ServerEntry, ConfigError> {
    validate_name(name)?;
    let mut ignored = Vec::new();
    let (upstream, options) = server_entry(name, entry, &mut ignored)?;
    Ok(ServerEntry { name: name.to_owned(), upstream, options: options.inherit(defaults), source: ServerSource::Api })
}

/// How a configuration notice names the entry `name` of `section`: without its path token
/// (`mcpServers.fetch/…` for `fetch/s3cret`), which is a secret.
pub(super) fn entry_path(section: &str, name: &str) -> String {
    match name.split_once('/') {
        Some((shown, _)) => format!("{section}.{shown}/…"),
        None => format!("{section}.{name}"),
    }
}

pub(super) fn validate_name(name: &str) -> Result<(), ConfigError> {
    let path = entry_path("mcpServers", name);
    if name.is_empty() {
        return Err(ConfigError::new(path, "a server name must not be empty"));
    }
    // A name may hold a path token (`fetch/{token}`): segments of URL-safe characters.
    let valid_segment = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
    if !name.split('/').all(valid_segment) || name.split('/').any(|s| s == "." || s == "..") {
        return Err(ConfigError::new(
            path,
            "a server name may hold only letters, digits, '-', '_', '.', '~' and '/' between segments",
        ));
    }
    Ok(())
}

pub(super) fn options(value: Option<&Value>, path: &str) -> Result<PartialOptions, ConfigError> {
    let Some(value) = value else {
        return Ok(PartialOptions::default());
    };
    let map = object(value, path)?;
    let tool_filter = match map.get("toolFilter") {
        None | Some(Value::Null) => None,
        Some(filter) => Some(tool_filter(filter, &format!("{path}.toolFilter"))?),
    };
    Ok(PartialOptions {
        panic_if_invalid: boolean(map, "panicIfInvalid", path)?,
        log_enabled: boolean(map, "logEnabled", path)?,
        auth_tokens: tokens(map, "authTokens", path)?,
        tool_filter,
        disabled: boolean(map, "disabled", path)?.unwrap_or(false),
        share_upstream: boolean(map, "shareUpstream", path)?,
        forward_authorization: boolean(map, "forwardAuthorization", path)?.unwrap_or(false),
        inherit_env: boolean(map, "inheritEnv", path)?,
        added_through_api: boolean(map, ADDED_THROUGH_API, path)?.unwrap_or(false),
        protocol: protocol(map, path)?,
    })
}

fn protocol(map: &serde_json::Map<String, Value>, path: &str) -> Result<Option<UpstreamProtocol>, ConfigError> {
    match string(map, "protocol", path)? {
        None => Ok(None),
        Some(text) => UpstreamProtocol::parse(&text).map(Some).ok_or_else(|| {
            ConfigError::new(
                format!("{path}.protocol"),
                format!("must be \"auto\", \"2025-11-25\" or \"2026-07-28\", got {text:?}"),
            )
        }),
    }
}

fn tool_filter(value: &Value, path: &str) -> Result<ToolFilter, ConfigError> {
    let map = object(value, path)?;
    let mode = match string(map, "mode", path)?.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("allow") => FilterMode::Allow,
        Some("block") | None => FilterMode::Block,
        Some(other) => {
            return Err(ConfigError::new(
                format!("{path}.mode"),
                format!("must be \"allow\" or \"block\", got {other:?}"),
            ))
        }
    };
    Ok(ToolFilter { mode, list: strings(map, "list", path)?.unwrap_or_default() })
}

pub(super) fn server_entry(
    name: &str,
    value: &Value,
    warnings: &mut Vec<String>,
) -> Result<(UpstreamConfig, PartialOptions), ConfigError> {
    let path = entry_path("mcpServers", name);
    let map = object(value, &path)?;
    for key in map.keys() {
        let known =
            ["transportType", "type", "command", "args", "env", "url", "headers", "timeout", "options", "protocol"];
        if !known.contains(&key.as_str()) {
            warnings.push(format!("{path}.{key}: unknown field, ignored"));
        }
    }
    let declared = string(map, "transportType", &path)?.or(string(map, "type", &path)?);
    #[derive(Clone, Copy)]
    enum Kind {
        Stdio,
        Sse,
        Streamable,
    }
    let transport = match declared.as_deref() {
        None => None,
        Some("stdio") => Some(Kind::Stdio),
        Some("sse") => Some(Kind::Sse),
        Some("streamable-http" | "streamableHttp" | "streamable_http" | "http") => Some(Kind::Streamable),
        Some(other) => {
            let field = if map.contains_key("transportType") { "transportType" } else { "type" };
            return Err(ConfigError::new(
                format!("{path}.{field}"),
                format!("must be \"stdio\", \"sse\" or \"streamable-http\", got {other:?}"),
            ));
        }
    };
    let command = string(map, "command", &path)?;
    let url = string(map, "url", &path)?;
    let upstream = match (transport, command, url) {
        (Some(Kind::Stdio) | None, Some(command), _) => {
            if command.trim().is_empty() {
                return Err(ConfigError::new(format!("{path}.command"), "must not be empty"));
            }
            let env = string_map(map, "env", &path)?;
            UpstreamConfig::Stdio(StdioServer {
                command,
                args: strings(map, "args", &path)?.unwrap_or_default(),
                env,
                shell: false,
            })
        }
        (Some(Kind::Stdio), None, _) => {
            return Err(ConfigError::new(format!("{path}.command"), "missing: a stdio server needs a command"))
        }
        (Some(Kind::Streamable), _, Some(url)) => UpstreamConfig::StreamableHttp {
            url: http_url(&url, &format!("{path}.url"))?,
            headers: string_map(map, "headers", &path)?,
            timeout_ms: duration_ms(map.get("timeout"), &format!("{path}.timeout"))?,
        },
        (Some(Kind::Sse) | None, _, Some(url)) => UpstreamConfig::Sse {
            url: http_url(&url, &format!("{path}.url"))?,
            headers: string_map(map, "headers", &path)?,
        },
        (_, _, None) => {
            return Err(ConfigError::new(path, "needs a \"command\" (stdio) or a \"url\" (sse, streamable-http)"))
        }
    };
    let mut options = options(map.get("options"), &format!("{path}.options"))?;
    // `protocol` may stand beside `command`/`url` too (it wins over `options.protocol`).
    if let Some(protocol) = protocol(map, &path)? {
        options.protocol = Some(protocol);
    }
    Ok((upstream, options))
}

pub(super) fn v1_client(name: &str, value: &Value) -> Result<(UpstreamConfig, PartialOptions), ConfigError> {
    let path = entry_path("clients", name);
    let map = object(value, &path)?;
    let kind = string(map, "type", &path)?.ok_or_else(|| ConfigError::new(format!("{path}.type"), "missing"))?;
    let config = map.get("config").ok_or_else(|| ConfigError::new(format!("{path}.config"), "missing"))?;
    let mut v2 = object(config, &format!("{path}.config"))?.clone();
    v2.insert("transportType".into(), Value::String(kind));
    let mut ignored = Vec::new();
    let (upstream, _) = server_entry(name, &Value::Object(v2), &mut ignored).map_err(|e| {
        ConfigError::new(e.path.replacen(&entry_path("mcpServers", name), &format!("{path}.config"), 1), e.message)
    })?;
    let options = PartialOptions {
        panic_if_invalid: boolean(map, "panicIfInvalid", &path)?,
        log_enabled: boolean(map, "logEnabled", &path)?,
        auth_tokens: tokens(map, "authTokens", &path)?,
        tool_filter: None,
        disabled: false,
        share_upstream: None,
        forward_authorization: false,
        inherit_env: None,
        protocol: None,
        // v1 files predate the runtime API: nothing in them was added through it.
        added_through_api: false,
    };
    Ok((upstream, options))
}
