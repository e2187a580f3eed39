//! The core's configuration: parsed from JSON, validated, errors naming the field.

use serde::Deserialize;

mod expand;
pub mod file;
mod json;
mod server;

use crate::config::file::{ConfigFile, ProxySettings, ServerEntry, ServerOptions, ServerSource, UpstreamConfig};
use crate::error::ConfigError;

/// Everything the core needs to know to serve.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The stdio MCP server each session runs (the bridge: one server at the root endpoints).
    #[serde(default)]
    pub server: Option<StdioServer>,
    /// An aggregator configuration file (many servers, each at `/{name}/...`), instead of `server`.
    #[serde(default)]
    pub config_file: Option<ConfigFileSource>,
    /// Which client-facing transports are served.
    #[serde(default)]
    pub transports: Transports,
    /// Path of the Streamable HTTP endpoint.
    #[serde(default = "defaults::stream_endpoint")]
    pub stream_endpoint: String,
    /// Path of the legacy SSE stream endpoint.
    #[serde(default = "defaults::sse_endpoint")]
    pub sse_endpoint: String,
    /// Path where legacy SSE clients POST their messages.
    #[serde(default = "defaults::messages_endpoint")]
    pub messages_endpoint: String,
    /// Serve Streamable HTTP without sessions.
    #[serde(default)]
    pub stateless: bool,
    /// How many children serve stateless mode.
    #[serde(default = "defaults::stateless_pool_size")]
    pub stateless_pool_size: usize,
    /// Serve MCP 2026-07-28 clients (stateless requests with the per-request `_meta`
    /// envelope) on the Streamable HTTP endpoints, beside 2025 sessions (`--modern`).
    #[serde(default = "defaults::yes")]
    pub modern: bool,
    /// The most children a server's pool may run at once; a 2026 request that may ask the
    /// client something has its child to itself while it runs (`--modernPoolMax`).
    #[serde(default = "defaults::modern_pool_max")]
    pub modern_pool_max: usize,
    /// Which revision the proxy speaks to upstream servers: `auto` asks each
    /// (`--upstreamProtocol`; a server's `protocol` option wins).
    #[serde(default)]
    pub upstream_protocol: crate::config::file::UpstreamProtocol,
    /// How long a new child may take to answer `initialize`, in milliseconds.
    #[serde(default = "defaults::connection_timeout_ms")]
    pub connection_timeout_ms: u64,
    /// How long any request may wait for its answer, in milliseconds.
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// The API key every request but `/ping` and preflights must carry, if set.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Cross-origin resource sharing.
    #[serde(default)]
    pub cors: Cors,
    /// The largest request body accepted, in bytes.
    #[serde(default = "defaults::max_body_size")]
    pub max_body_size: u64,
    /// Log every message in and out.
    #[serde(default)]
    pub debug: bool,
    /// Events each Streamable HTTP session keeps for `Last-Event-ID` resumption (0: none).
    #[serde(default = "defaults::event_store_size")]
    pub event_store_size: usize,
    /// Bytes of events kept for resumption across all sessions; the oldest go first.
    #[serde(default = "defaults::event_store_bytes")]
    pub event_store_bytes: usize,
    /// Milliseconds between keep-alive comments on open SSE streams (0: none).
    #[serde(default = "defaults::keep_alive_ms")]
    pub keep_alive_ms: u64,
    /// Milliseconds after which a Streamable HTTP session with no client activity and no
    /// open stream ends, stopping its child (0: never).
    #[serde(default = "defaults::session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// The most client sessions (each with its own child) at once; more get 503.
    #[serde(default = "defaults::max_sessions")]
    pub max_sessions: usize,
    /// Refuse requests whose `Origin` or `Host` fails the DNS-rebinding check.
    #[serde(default = "defaults::yes")]
    pub origin_check: bool,
    /// Bearer tokens for the runtime server API and temporary servers (besides the file's
    /// `mcpProxy.adminTokens`); client tokens never count.
    #[serde(default)]
    pub admin_tokens: Vec<String>,
    /// Hosts that servers added at run time may name although they are loopback or private
    /// (`--allow-runtime-hosts`).
    #[serde(default)]
    pub allow_runtime_hosts: Vec<String>,
    /// Let the runtime server API add stdio servers (it starts processes: remote code execution
    /// for whoever holds a token).
    #[serde(default)]
    pub allow_runtime_stdio: bool,
    /// Between a server's prefix and a tool or prompt name on the merged endpoint.
    #[serde(default = "defaults::separator")]
    pub separator: String,
    /// The shell's environment: children are started with what [`crate::policy::env`] takes
    /// of it.
    #[serde(default)]
    pub environment: Vec<(String, String)>,
    /// Secret values of the shell's own (like `--config-header` values) that no child may see
    /// in its environment, besides the credentials of this configuration.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Configured servers inherit the whole environment (minus the proxy's secrets), not only
    /// the default list (`--pass-environment`).
    #[serde(default)]
    pub pass_environment: bool,
    /// The servers, resolved from `server` or `configFile`: in bridge mode one server with an
    /// empty name.
    #[serde(skip)]
    pub servers: crate::registry::ServerTable,
    /// The aggregator's own settings (`mcpProxy`), when serving a configuration file.
    #[serde(skip)]
    pub aggregator: Option<ProxySettings>,
    /// Things worth a log line at startup: servers left out, fields not understood.
    #[serde(skip)]
    pub notices: Vec<String>,
    /// Write changes made through the server API back into the configuration file.
    #[serde(default)]
    pub persist: bool,
    /// The configuration file as written (before `${VAR}` expansion), kept to persist changes.
    #[serde(skip)]
    pub file_document: Option<serde_json::Value>,
    /// Serve at the edge (a Cloudflare Worker): nothing lives between requests, so a session
    /// travels in its id, sealed.
    #[serde(default)]
    pub edge: Option<Edge>,
    /// Reverse mode: serve one local stdio client, forwarding to this remote server.
    #[serde(default)]
    pub connect: Option<Connect>,
    /// A secret replicas share (`--session-key`): what one seals for a client (an
    /// `input_required` state) any other opens, and a restart keeps them valid. Absent: a key
    /// of this process's own. At the edge, `edge.sessionKey` plays this part.
    #[serde(default)]
    pub session_key: Option<String>,
    /// The bytes of `session_key`, read when the configuration is validated.
    #[serde(skip)]
    pub session_key_bytes: Option<Vec<u8>>,
}

/// Reverse mode's remote server.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Connect {
    /// Its URL.
    pub url: String,
    /// How to reach it.
    #[serde(default)]
    pub transport: ConnectTransport,
    /// Headers sent with every request to it.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

/// Reverse mode's transport toward the remote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectTransport {
    /// Streamable HTTP, then legacy SSE if the URL refuses the POST with a 4xx.
    #[default]
    Auto,
    /// Streamable HTTP only.
    StreamableHttp,
    /// Legacy HTTP+SSE only.
    Sse,
}

/// The edge runtime's settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Edge {
    /// The secret that seals session ids (at least 32 characters; from a Worker secret).
    pub session_key: String,
    /// How long a session id stays valid, in seconds (the shell passes wall-clock time).
    #[serde(default = "defaults::session_max_age_secs")]
    pub session_max_age_secs: u64,
    /// The key's bytes, read from `session_key` when the configuration is validated.
    #[serde(skip)]
    pub key: Vec<u8>,
}

/// An aggregator configuration file as handed over by the shell.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigFileSource {
    /// The file's text.
    pub text: String,
    /// The environment for `${VAR}` expansion; absent: no expansion.
    #[serde(default)]
    pub env: Option<Vec<(String, String)>>,
}

/// How to start a stdio MCP server.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StdioServer {
    /// The program (or, with `shell`, the whole command line).
    pub command: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables: in the configuration, the server's own; in
    /// [`crate::Output::Spawn`], the child's whole environment (see [`crate::policy::env`]).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Run through the user's shell.
    #[serde(default)]
    pub shell: bool,
}

/// Which client-facing transports are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transports {
    /// Legacy HTTP+SSE (`/sse` and `/messages`).
    pub sse: bool,
    /// Streamable HTTP (`/mcp`).
    pub stream: bool,
}

impl Default for Transports {
    fn default() -> Self {
        Transports { sse: true, stream: true }
    }
}

/// Cross-origin resource sharing settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cors {
    /// Send CORS headers at all.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Allowed origins; `*` allows any. None configured: responses allow any origin
    /// (`Access-Control-Allow-Origin: *`), but beyond loopback a browser's request is refused
    /// (see [`crate::policy::check_origin`]).
    #[serde(default)]
    pub origins: Vec<String>,
    /// Request headers allowed beyond the built-in list.
    #[serde(default)]
    pub allow_headers: Vec<String>,
}

impl Default for Cors {
    fn default() -> Self {
        Cors { enabled: true, origins: Vec::new(), allow_headers: Vec::new() }
    }
}

mod defaults {
    pub(super) fn stream_endpoint() -> String {
        "/mcp".into()
    }
    pub(super) fn sse_endpoint() -> String {
        "/sse".into()
    }
    pub(super) fn messages_endpoint() -> String {
        "/messages".into()
    }
    pub(super) fn stateless_pool_size() -> usize {
        2
    }
    pub(super) fn connection_timeout_ms() -> u64 {
        60_000
    }
    pub(super) fn request_timeout_ms() -> u64 {
        300_000
    }
    pub(super) fn max_body_size() -> u64 {
        10 * 1024 * 1024
    }
    pub(super) fn event_store_bytes() -> usize {
        64 * 1024 * 1024
    }
    pub(super) fn event_store_size() -> usize {
        1000
    }
    pub(super) fn keep_alive_ms() -> u64 {
        15_000
    }
    pub(super) fn session_timeout_ms() -> u64 {
        30 * 60 * 1000
    }
    pub(super) fn session_max_age_secs() -> u64 {
        24 * 60 * 60
    }
    pub(super) fn separator() -> String {
        "__".into()
    }
    pub(super) fn modern_pool_max() -> usize {
        8
    }
    pub(super) fn max_sessions() -> usize {
        1000
    }
    pub(super) fn yes() -> bool {
        true
    }
}

impl Config {
    /// Parses and validates a JSON configuration document.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let mut config: Config = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            let path = error.path().to_string();
            ConfigError::new(path, error.into_inner().to_string())
        })?;
        config.resolve_servers()?;
        config.validate()?;
        if let Some(key) = &config.session_key {
            let bytes = crate::modes::edge::session_key_bytes(key)
                .map_err(|message| ConfigError::new("sessionKey", message))?;
            config.session_key_bytes = Some(bytes);
        }
        config.fit_the_edge()?;
        Ok(config)
    }

    /// At the edge nothing outlives a request: no processes, no stores, no timers between
    /// requests. Refuses what cannot work there, naming the server, and turns off the rest.
    fn fit_the_edge(&mut self) -> Result<(), ConfigError> {
        let Some(edge) = &mut self.edge else {
            return Ok(());
        };
        edge.key = crate::modes::edge::session_key_bytes(&edge.session_key)
            .map_err(|message| ConfigError::new("edge.sessionKey", message))?;
        if self.is_bridge() {
            return Err(ConfigError::new("server", "at the edge, servers come from a configuration file of URLs"));
        }
        for entry in self.servers.entries() {
            let name = entry.display_name();
            let why = match entry.upstream {
                UpstreamConfig::Stdio(_) => {
                    "is a stdio server: the edge runs no processes; give it a Streamable HTTP url"
                }
                // Served by opening a new upstream session per request (see `upstream_http`).
                UpstreamConfig::Sse { .. } | UpstreamConfig::StreamableHttp { .. } => continue,
            };
            return Err(ConfigError::new(format!("mcpServers.{name}"), format!("server {name:?} {why}")));
        }
        if self.aggregator.as_ref().is_some_and(|a| a.prefix_mode == crate::config::file::PrefixMode::Never) {
            return Err(ConfigError::new(
                "mcpProxy.toolPrefix",
                "\"never\" routes by what each session listed, which the edge cannot remember; use always or multiple",
            ));
        }
        self.transports.sse = false;
        self.event_store_size = 0;
        self.session_timeout_ms = 0;
        self.persist = false;
        Ok(())
    }

    /// Every admin credential: `adminTokens` and the file's `mcpProxy.adminTokens`.
    pub fn admin_tokens(&self) -> Vec<String> {
        let file = self.aggregator.iter().flat_map(|a| a.admin_tokens.iter());
        self.admin_tokens.iter().chain(file).cloned().collect()
    }

    /// Every secret a child must not see: the credentials of this configuration and the
    /// shell's own secrets.
    pub(crate) fn secret_values(&self) -> Vec<&str> {
        let admin = self.admin_tokens.iter().chain(self.aggregator.iter().flat_map(|a| a.admin_tokens.iter()));
        let servers = self.servers.entries().flat_map(|s| s.options.auth_tokens.iter());
        let edge = self.edge.iter().map(|e| &e.session_key).chain(self.session_key.iter());
        self.api_key
            .iter()
            .chain(admin)
            .chain(servers)
            .chain(edge)
            .chain(self.secrets.iter())
            .map(String::as_str)
            .collect()
    }

    /// Whether this is the bridge (one server at the root endpoints).
    pub fn is_bridge(&self) -> bool {
        self.aggregator.is_none()
    }

    fn resolve_servers(&mut self) -> Result<(), ConfigError> {
        if let Some(connect) = &self.connect {
            if self.server.is_some() || self.config_file.is_some() {
                return Err(ConfigError::new("connect", "reverse mode serves one remote: no server command or file"));
            }
            if !(connect.url.starts_with("http://") || connect.url.starts_with("https://")) {
                return Err(ConfigError::new("connect.url", format!("must be an http(s) URL, got {:?}", connect.url)));
            }
            let (url, headers) = (connect.url.clone(), connect.headers.clone());
            let upstream = match connect.transport {
                ConnectTransport::Sse => UpstreamConfig::Sse { url, headers },
                ConnectTransport::Auto | ConnectTransport::StreamableHttp => {
                    UpstreamConfig::StreamableHttp { url, headers, timeout_ms: None }
                }
            };
            self.servers = crate::registry::ServerTable::default();
            self.servers.insert(ServerEntry {
                name: String::new(),
                upstream,
                options: ServerOptions::default(),
                source: ServerSource::Config,
            });
            return Ok(());
        }
        match (&self.server, &self.config_file) {
            (Some(_), Some(_)) => {
                Err(ConfigError::new("configFile", "give either a server command or a configuration file, not both"))
            }
            (None, None) => Err(ConfigError::new("server", "missing: give a server command or a configuration file")),
            (Some(server), None) => {
                if server.command.trim().is_empty() {
                    return Err(ConfigError::new("server.command", "must not be empty"));
                }
                let upstream = UpstreamConfig::Stdio(server.clone());
                // The bridge passes the user's environment on: that is how users hand their
                // server its tokens.
                let options = ServerOptions { inherit_env: true, ..ServerOptions::default() };
                self.servers = crate::registry::ServerTable::default();
                self.servers.insert(ServerEntry {
                    name: String::new(),
                    upstream,
                    options,
                    source: ServerSource::Config,
                });
                Ok(())
            }
            (None, Some(source)) => {
                let env = source.env.clone();
                let lookup = move |name: &str| env.as_ref()?.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
                let expand: Option<crate::config::file::EnvLookup<'_>> = source.env.as_ref().map(|_| &lookup as _);
                let file = ConfigFile::parse(&source.text, expand)?;
                self.notices.extend(file.warnings.iter().cloned());
                self.notices.extend(file.skipped.iter().map(|e| format!("left out: {e}")));
                self.servers.extend(file.servers);
                if self.servers.is_empty() {
                    return Err(ConfigError::new("mcpServers", "no server can be served (see the notices above)"));
                }
                self.aggregator = Some(file.proxy);
                if self.persist {
                    let document = serde_json::from_str::<serde_json::Value>(&source.text).ok();
                    match document {
                        Some(document) if document.get("mcpServers").is_some_and(serde_json::Value::is_object) => {
                            self.file_document = Some(document);
                        }
                        _ => self.notices.push(
                            "changes made through the API cannot be written back: the file has no mcpServers object"
                                .into(),
                        ),
                    }
                }
                Ok(())
            }
        }
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let endpoints = [
            ("streamEndpoint", &self.stream_endpoint),
            ("sseEndpoint", &self.sse_endpoint),
            ("messagesEndpoint", &self.messages_endpoint),
        ];
        for (index, (field, path)) in endpoints.iter().enumerate() {
            if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
                return Err(ConfigError::new(*field, format!("must be a path starting with '/', got {path:?}")));
            }
            if path.as_str() == "/ping" {
                return Err(ConfigError::new(*field, "/ping is reserved for the health check"));
            }
            if let Some((other, _)) = endpoints[..index].iter().find(|(_, p)| p == path) {
                return Err(ConfigError::new(*field, format!("{path:?} is already used by {other}")));
            }
        }
        if !self.transports.sse && !self.transports.stream {
            return Err(ConfigError::new("transports", "at least one transport must be served"));
        }
        if self.stateless && !self.is_bridge() {
            return Err(ConfigError::new(
                "stateless",
                "stateless mode serves a single server, not a configuration file",
            ));
        }
        if self.stateless_pool_size == 0 || self.stateless_pool_size > 256 {
            return Err(ConfigError::new("statelessPoolSize", "must be between 1 and 256"));
        }
        if self.modern_pool_max == 0 || self.modern_pool_max > 256 {
            return Err(ConfigError::new("modernPoolMax", "must be between 1 and 256"));
        }
        if self.connection_timeout_ms == 0 {
            return Err(ConfigError::new("connectionTimeoutMs", "must be greater than 0"));
        }
        if self.request_timeout_ms == 0 {
            return Err(ConfigError::new("requestTimeoutMs", "must be greater than 0"));
        }
        if self.max_sessions == 0 {
            return Err(ConfigError::new("maxSessions", "must be greater than 0"));
        }
        if self.max_body_size == 0 {
            return Err(ConfigError::new("maxBodySize", "must be greater than 0"));
        }
        if matches!(&self.api_key, Some(key) if key.trim().is_empty()) {
            return Err(ConfigError::new("apiKey", "must not be empty when set"));
        }
        if let Some(index) = self.admin_tokens.iter().position(|t| t.trim().is_empty()) {
            return Err(ConfigError::new(format!("adminTokens[{index}]"), "must not be empty"));
        }
        for (index, origin) in self.cors.origins.iter().enumerate() {
            if origin.is_empty() || origin.contains(char::is_whitespace) {
                return Err(ConfigError::new(format!("cors.origins[{index}]"), format!("not an origin: {origin:?}")));
            }
        }
        for (index, header) in self.cors.allow_headers.iter().enumerate() {
            if header.is_empty() || !header.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(ConfigError::new(
                    format!("cors.allowHeaders[{index}]"),
                    format!("not a header name: {header:?}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_the_defaults() {
        let config = Config::from_json(r#"{"server":{"command":"node"}}"#).expect("valid");
        assert_eq!(config.stream_endpoint, "/mcp");
        assert_eq!(config.sse_endpoint, "/sse");
        assert_eq!(config.request_timeout_ms, 300_000);
        assert_eq!(config.max_body_size, 10 * 1024 * 1024);
        assert!(config.cors.enabled);
        assert!(config.cors.origins.is_empty(), "none configured");
    }

    #[test]
    fn errors_name_the_field() {
        let error = Config::from_json(r#"{"server":{"command":"node","args":[1]}}"#).expect_err("args are strings");
        assert_eq!(error.path, "server.args[0]");
        let error = Config::from_json(r#"{"server":{"command":"node"},"cors":{"origns":[]}}"#).expect_err("typo");
        assert_eq!(error.path, "cors.origns");
        assert!(error.message.contains("origns"), "{error}");
        let error = Config::from_json(r#"{"server":{"command":" "}}"#).expect_err("empty command");
        assert_eq!(error.path, "server.command");
        let error = Config::from_json(r#"{"server":{"command":"x"},"sseEndpoint":"/mcp"}"#).expect_err("clash");
        assert_eq!(error.path, "sseEndpoint");
        let error =
            Config::from_json(r#"{"server":{"command":"x"},"cors":{"allowHeaders":["a b"]}}"#).expect_err("bad header");
        assert_eq!(error.path, "cors.allowHeaders[0]");
        let error = Config::from_json("[").expect_err("not json");
        assert!(!error.message.is_empty());
    }
}
