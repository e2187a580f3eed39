//! The user-facing configuration file of the aggregator: the Go `mcp-proxy` format (v2, and
//! its older v1 `server`/`clients` form) and Claude Desktop's bare `mcpServers` file.
//!
//! Parsing is pure: the text comes in, and so does a way to read environment variables for
//! `${VAR}` expansion. Errors name the field by path (`mcpServers.github.options.toolFilter.mode`);
//! the shell adds the file's name.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::config::StdioServer;
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
    /// The public base URL, if set.
    pub base_url: Option<String>,
    /// The listen address (`:9090`, `127.0.0.1:8080`), if set.
    pub addr: Option<String>,
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
}

/// A tool filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolFilter {
    /// Allow only the listed tools, or block them.
    pub mode: FilterMode,
    /// Tool names (as the server names them, without prefix).
    pub list: Vec<String>,
}

/// How a tool filter's list is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterMode {
    /// Only the listed tools.
    Allow,
    /// All but the listed tools.
    Block,
}

impl ToolFilter {
    /// Whether the tool `name` may be listed and called.
    pub fn allows(&self, name: &str) -> bool {
        let listed = self.list.iter().any(|item| item == name);
        match self.mode {
            FilterMode::Allow => listed,
            FilterMode::Block => !listed,
        }
    }
}

/// Option fields as written: absent fields inherit from `mcpProxy.options`.
#[derive(Clone, Debug, Default)]
struct PartialOptions {
    panic_if_invalid: Option<bool>,
    log_enabled: Option<bool>,
    auth_tokens: Option<Vec<String>>,
    tool_filter: Option<ToolFilter>,
    disabled: bool,
    share_upstream: Option<bool>,
    forward_authorization: bool,
    inherit_env: Option<bool>,
}

impl PartialOptions {
    fn inherit(self, defaults: &ServerOptions) -> ServerOptions {
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
        }
    }
}

/// Reads an environment variable, for `${VAR}` expansion.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

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
                    let options = options.inherit(&proxy.options);
                    if !options.disabled {
                        names.insert(name.clone(), ());
                        servers.push(ServerEntry { name, upstream, options, source: ServerSource::Config });
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

/// Parses one server entry (as in `mcpServers`) added at run time, inheriting `defaults`.
pub fn parse_server(name: &str, entry: &Value, defaults: &ServerOptions) -> Result<ServerEntry, ConfigError> {
    validate_name(name)?;
    let mut ignored = Vec::new();
    let (upstream, options) = server_entry(name, entry, &mut ignored)?;
    Ok(ServerEntry { name: name.to_owned(), upstream, options: options.inherit(defaults), source: ServerSource::Api })
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

fn validate_name(name: &str) -> Result<(), ConfigError> {
    let path = format!("mcpServers.{name}");
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

/// The path of field `key` of the object at `path` (`.` is the document itself).
fn field_path(path: &str, key: &str) -> String {
    if path == "." {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    value.as_object().ok_or_else(|| ConfigError::new(path, format!("must be an object, got {}", kind(value))))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, ConfigError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(ConfigError::new(field_path(path, key), format!("must be a string, got {}", kind(other)))),
    }
}

fn boolean(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<bool>, ConfigError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(other) => {
            Err(ConfigError::new(field_path(path, key), format!("must be true or false, got {}", kind(other))))
        }
    }
}

fn strings(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<Vec<String>>, ConfigError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                item.as_str().map(str::to_owned).ok_or_else(|| {
                    ConfigError::new(
                        format!("{}[{index}]", field_path(path, key)),
                        format!("must be a string, got {}", kind(item)),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => {
            Err(ConfigError::new(field_path(path, key), format!("must be an array of strings, got {}", kind(other))))
        }
    }
}

/// A list of credentials: strings, none of them empty (an empty token, say from an unset
/// `${VAR}`, would otherwise accept an empty `Authorization`).
fn tokens(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<Vec<String>>, ConfigError> {
    let list = strings(map, key, path)?;
    if let Some(index) = list.iter().flatten().position(|token| token.trim().is_empty()) {
        return Err(ConfigError::new(
            format!("{}[{index}]", field_path(path, key)),
            "must not be empty (an unset ${VAR}?): an empty token would let anyone in",
        ));
    }
    Ok(list)
}

fn string_map(map: &Map<String, Value>, key: &str, path: &str) -> Result<Vec<(String, String)>, ConfigError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(entries)) => entries
            .iter()
            .map(|(name, value)| match value {
                Value::String(text) => Ok((name.clone(), text.clone())),
                other => Err(ConfigError::new(
                    format!("{}.{name}", field_path(path, key)),
                    format!("must be a string, got {}", kind(other)),
                )),
            })
            .collect(),
        Some(other) => {
            Err(ConfigError::new(field_path(path, key), format!("must be an object of strings, got {}", kind(other))))
        }
    }
}

fn options(value: Option<&Value>, path: &str) -> Result<PartialOptions, ConfigError> {
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
    })
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
        base_url: string(map, "baseURL", path)?,
        addr: string(map, "addr", path)?,
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
        base_url: string(map, "baseURL", "server")?,
        addr: string(map, "addr", "server")?,
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

fn server_entry(
    name: &str,
    value: &Value,
    warnings: &mut Vec<String>,
) -> Result<(UpstreamConfig, PartialOptions), ConfigError> {
    let path = format!("mcpServers.{name}");
    let map = object(value, &path)?;
    for key in map.keys() {
        let known = ["transportType", "type", "command", "args", "env", "url", "headers", "timeout", "options"];
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
    Ok((upstream, options(map.get("options"), &format!("{path}.options"))?))
}

fn v1_client(name: &str, value: &Value) -> Result<(UpstreamConfig, PartialOptions), ConfigError> {
    let path = format!("clients.{name}");
    let map = object(value, &path)?;
    let kind = string(map, "type", &path)?.ok_or_else(|| ConfigError::new(format!("{path}.type"), "missing"))?;
    let config = map.get("config").ok_or_else(|| ConfigError::new(format!("{path}.config"), "missing"))?;
    let mut v2 = object(config, &format!("{path}.config"))?.clone();
    v2.insert("transportType".into(), Value::String(kind));
    let mut ignored = Vec::new();
    let (upstream, _) = server_entry(name, &Value::Object(v2), &mut ignored).map_err(|e| {
        ConfigError::new(e.path.replacen(&format!("mcpServers.{name}"), &format!("{path}.config"), 1), e.message)
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
    };
    Ok((upstream, options))
}

fn http_url(url: &str, path: &str) -> Result<String, ConfigError> {
    let lower = url.to_ascii_lowercase();
    if (lower.starts_with("http://") || lower.starts_with("https://")) && url.len() > "http://".len() + 1 {
        Ok(url.to_owned())
    } else {
        Err(ConfigError::new(path, format!("must be an http:// or https:// URL, got {url:?}")))
    }
}

/// A timeout: a number of nanoseconds (Go's `time.Duration`) or a string like `30s`, `500ms`, `2m`.
fn duration_ms(value: Option<&Value>, path: &str) -> Result<Option<u64>, ConfigError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number
            .as_u64()
            .map(|nanos| Some(nanos / 1_000_000))
            .ok_or_else(|| ConfigError::new(path, "must be a positive whole number of nanoseconds")),
        Some(Value::String(text)) => {
            let text = text.trim();
            let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
            let (digits, unit) = text.split_at(split);
            let amount: u64 =
                digits.parse().map_err(|_| ConfigError::new(path, format!("not a duration: {text:?}")))?;
            let factor = match unit {
                "ms" => 1,
                "s" | "" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                _ => return Err(ConfigError::new(path, format!("unknown unit in {text:?} (use ms, s, m or h)"))),
            };
            Ok(Some(amount.saturating_mul(factor)))
        }
        Some(other) => Err(ConfigError::new(path, format!("must be a duration, got {}", kind(other)))),
    }
}

/// Replaces `${NAME}` with the value of environment variable `NAME`; `$$` stays `$`.
pub fn expand_env(text: &str, env: EnvLookup<'_>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(ConfigError::new(".", "unterminated ${ in the file"));
        };
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ConfigError::new(".", format!("not an environment variable name: ${{{name}}}")));
        }
        let value =
            env(name).ok_or_else(|| ConfigError::new(".", format!("environment variable {name} is not set")))?;
        // The value lands inside JSON text: escape it as a JSON string body.
        let encoded = serde_json::to_string(&value).unwrap_or_default();
        out.push_str(encoded.get(1..encoded.len().saturating_sub(1)).unwrap_or(""));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn expands_environment_variables_on_request() {
        let env = |name: &str| match name {
            "TOKEN" => Some("se\"cret".to_owned()),
            _ => None,
        };
        let text = r#"{"mcpServers": {"a": {"url": "https://x.example/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}}}}"#;
        let file = ConfigFile::parse(text, Some(&env)).expect("expanded");
        assert!(
            matches!(&file.servers[0].upstream, UpstreamConfig::Sse { headers, .. } if headers[0].1 == "Bearer se\"cret")
        );
        let missing =
            ConfigFile::parse(r#"{"mcpServers": {"a": {"command": "${NOPE}"}}}"#, Some(&env)).expect_err("unset");
        assert!(missing.message.contains("NOPE"));
        assert!(ConfigFile::parse(text, None).is_ok(), "no expansion unless asked");
    }
}
