//! The command line, compatible with the TypeScript `mcp-proxy` CLI, turned into the core's
//! JSON configuration and the host's own settings.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

/// Serve a stdio MCP server over Streamable HTTP (`/mcp`) and legacy SSE (`/sse`).
#[derive(Debug, Parser)]
#[command(
    name = "mcp-proxy",
    disable_version_flag = true,
    override_usage = "mcp-proxy [OPTIONS] [--] <COMMAND> [ARGS]..."
)]
pub(crate) struct Cli {
    /// Port to listen on (0 picks a free port) [default: 8080, or the config file's
    /// mcpProxy.addr].
    #[arg(long)]
    pub(crate) port: Option<u16>,
    /// Address to bind; keep the loopback default unless clients are remote [default:
    /// 127.0.0.1, or the config file's mcpProxy.addr].
    #[arg(long)]
    pub(crate) host: Option<IpAddr>,
    /// Serve only one transport (default: both).
    #[arg(long, value_enum)]
    pub(crate) server: Option<ServerKind>,
    /// Endpoint of the transport chosen with --server (with both: the Streamable HTTP one).
    #[arg(long)]
    pub(crate) endpoint: Option<String>,
    /// Legacy SSE endpoint [default: /sse].
    #[arg(long = "sseEndpoint", alias = "sse-endpoint")]
    pub(crate) sse_endpoint: Option<String>,
    /// Streamable HTTP endpoint [default: /mcp].
    #[arg(long = "streamEndpoint", alias = "stream-endpoint")]
    pub(crate) stream_endpoint: Option<String>,
    /// Serve Streamable HTTP without sessions.
    #[arg(long)]
    pub(crate) stateless: bool,
    /// Number of server processes serving --stateless requests [default: 2].
    #[arg(long = "statelessPoolSize", alias = "stateless-pool-size")]
    pub(crate) stateless_pool_size: Option<usize>,
    /// Serve MCP 2026-07-28 clients (stateless requests) on the Streamable HTTP endpoints,
    /// beside 2025 sessions [default: on].
    #[arg(long, overrides_with = "no_modern")]
    pub(crate) modern: bool,
    /// Serve only the 2025 revisions: a 2026-07-28 request is refused as an unknown revision.
    #[arg(long = "no-modern", alias = "noModern", overrides_with = "modern")]
    pub(crate) no_modern: bool,
    /// Most server processes one server runs for 2026-07-28 requests at once (a request that
    /// may ask its client something has one to itself) [default: 8].
    #[arg(long = "modernPoolMax", alias = "modern-pool-max")]
    pub(crate) modern_pool_max: Option<usize>,
    /// Which revision to speak to the server: auto (ask it with server/discover, once),
    /// legacy (2025-11-25: initialize and a session) or modern (2026-07-28) [default: auto].
    #[arg(long = "upstreamProtocol", alias = "upstream-protocol", value_parser = ["auto", "legacy", "modern", "2025-11-25", "2026-07-28"])]
    pub(crate) upstream_protocol: Option<String>,
    /// Milliseconds a new server may take to answer initialize [default: 60000].
    #[arg(long = "connectionTimeout", alias = "connection-timeout")]
    pub(crate) connection_timeout: Option<u64>,
    /// Milliseconds any request may wait for its answer [default: 300000].
    #[arg(long = "requestTimeout", alias = "request-timeout")]
    pub(crate) request_timeout: Option<u64>,
    /// Log every message in and out.
    #[arg(long)]
    pub(crate) debug: bool,
    /// Run the command through the user's shell ($SHELL -c).
    #[arg(long)]
    pub(crate) shell: bool,
    /// Require this API key (X-API-Key or Authorization: Bearer) on every request but /ping.
    #[arg(long = "apiKey", alias = "api-key", env = "MCP_PROXY_API_KEY", hide_env_values = true)]
    pub(crate) api_key: Option<String>,
    /// CA certificates (PEM): every client must present a certificate signed by one (mutual TLS).
    #[arg(long = "sslCa", alias = "ssl-ca")]
    pub(crate) ssl_ca: Option<PathBuf>,
    /// Server certificate chain (PEM); with --sslKey, serves HTTPS.
    #[arg(long = "sslCert", alias = "ssl-cert", requires = "ssl_key")]
    pub(crate) ssl_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long = "sslKey", alias = "ssl-key", requires = "ssl_cert")]
    pub(crate) ssl_key: Option<PathBuf>,
    /// Largest request body in bytes; larger ones get 413 [default: 10485760].
    #[arg(long = "maxBodySize", alias = "max-body-size")]
    pub(crate) max_body_size: Option<u64>,
    /// Allowed CORS origin (repeatable; default any).
    #[arg(long = "cors-origin", alias = "corsOrigin")]
    pub(crate) cors_origin: Vec<String>,
    /// Extra request header to allow in CORS preflights (repeatable).
    #[arg(long = "cors-allow-header", visible_alias = "corsAddAllowedHeader", alias = "corsAllowHeader")]
    pub(crate) cors_allow_header: Vec<String>,
    /// Send no CORS headers at all.
    #[arg(long = "no-cors", alias = "noCors")]
    pub(crate) no_cors: bool,
    /// Events each session keeps for resuming broken streams with Last-Event-ID (0: off)
    /// [default: 1000].
    #[arg(long = "eventStoreSize", visible_alias = "eventStoreMaxEvents", alias = "event-store-size")]
    pub(crate) event_store_size: Option<usize>,
    /// Keep no events for resumption (same as --eventStoreSize 0).
    #[arg(long = "no-eventStore", alias = "no-event-store", overrides_with = "event_store")]
    pub(crate) no_event_store: bool,
    /// Keep events for resumption (the default; `--eventStore=false` is --no-eventStore).
    #[arg(
        long = "eventStore",
        alias = "event-store",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        overrides_with = "no_event_store"
    )]
    pub(crate) event_store: Option<bool>,
    /// Milliseconds between keep-alive comments on open SSE streams (0: off) [default: 15000].
    #[arg(long = "keepAlive", alias = "keep-alive")]
    pub(crate) keep_alive: Option<u64>,
    /// Milliseconds after which an idle session (no requests, no open stream) ends (0: never)
    /// [default: 1800000].
    #[arg(long = "sessionTimeout", visible_alias = "sessionIdleTimeout", alias = "session-timeout")]
    pub(crate) session_timeout: Option<u64>,
    /// Most sessions at once (each runs its own server process); more get 503 [default: 1000].
    #[arg(long = "maxSessions", alias = "max-sessions")]
    pub(crate) max_sessions: Option<usize>,
    /// Accept any Origin and Host header (turns off the DNS-rebinding protection).
    #[arg(long = "no-origin-check", alias = "noOriginCheck")]
    pub(crate) no_origin_check: bool,
    /// Serve the servers of a configuration file (the Go mcp-proxy format or Claude Desktop's
    /// mcpServers) at /{name}/mcp and /{name}/sse, instead of one command.
    #[arg(long, value_name = "PATH", conflicts_with = "command")]
    pub(crate) config: Option<String>,
    /// Header sent when --config is an http(s) URL, as "Name: value" (repeatable).
    #[arg(long = "config-header", alias = "configHeader", requires = "config")]
    pub(crate) config_header: Vec<String>,
    /// Replace ${VAR} in the configuration file with environment variables.
    #[arg(long = "expand-env", alias = "expandEnv", requires = "config")]
    pub(crate) expand_env: bool,
    /// Seconds fetching an http(s) --config may take [default: 30].
    #[arg(long = "config-timeout", alias = "configTimeout", requires = "config")]
    pub(crate) config_timeout: Option<u64>,
    /// Accept any TLS certificate from the server of an https --config, or from the remote of
    /// --connect (the connection is encrypted but not authenticated).
    #[arg(long)]
    pub(crate) insecure: bool,
    /// Expose the proxy through a public tunnel (the localtunnel/pipenet protocol; the
    /// TypeScript peer's tunnel.gla.ma unless --tunnelServer says otherwise).
    #[arg(long)]
    pub(crate) tunnel: bool,
    /// Ask the tunnel server for this name (not guaranteed).
    #[arg(long = "tunnelSubdomain", alias = "tunnel-subdomain", requires = "tunnel")]
    pub(crate) tunnel_subdomain: Option<String>,
    /// The tunnel server [default: https://tunnel.gla.ma].
    #[arg(long = "tunnelServer", alias = "tunnel-server", requires = "tunnel")]
    pub(crate) tunnel_server: Option<String>,
    /// Reverse mode: be a stdio MCP server for a local client, forwarding to this remote
    /// server (a bare http(s) URL as the only argument does the same).
    #[arg(long, value_name = "URL", conflicts_with = "config")]
    pub(crate) connect: Option<String>,
    /// Reverse mode: the remote's transport (auto: Streamable HTTP, then legacy SSE if the URL
    /// refuses the POST).
    #[arg(long, value_enum, default_value_t = ConnectTransport::Auto)]
    pub(crate) transport: ConnectTransport,
    /// Reverse mode: a header for every request to the remote, as "Name: value" (repeatable;
    /// API_ACCESS_TOKEN in the environment adds "Authorization: Bearer <it>").
    #[arg(long = "header")]
    pub(crate) header: Vec<String>,
    /// Reverse mode: a header for the remote as two arguments (the Python mcp-proxy's -H).
    #[arg(short = 'H', num_args = 2, value_names = ["NAME", "VALUE"], action = clap::ArgAction::Append)]
    pub(crate) header_pair: Vec<String>,
    /// Bearer token for the runtime server API at /api/servers (repeatable; the file's
    /// mcpProxy.options.authTokens work too).
    #[arg(
        long = "admin-token",
        alias = "adminToken",
        requires = "config",
        env = "MCP_PROXY_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub(crate) admin_token: Vec<String>,
    /// A secret replicas share: what one proxy seals for a client (a 2026 input_required
    /// state) any other opens, also after a restart. 32 random bytes as 64 hex digits or
    /// base64 (`openssl rand -hex 32`); without it each process uses a key of its own.
    #[arg(long = "session-key", alias = "sessionKey", env = "MCP_PROXY_SESSION_KEY", hide_env_values = true)]
    pub(crate) session_key: Option<String>,
    /// Let the runtime server API add stdio servers: anyone with an admin token can then start
    /// processes on this machine.
    #[arg(long = "allow-runtime-stdio", requires = "config")]
    pub(crate) allow_runtime_stdio: bool,
    /// Hosts that servers added at run time may name although they are loopback or private
    /// (comma-separated or repeated).
    #[arg(long = "allow-runtime-hosts", alias = "allowRuntimeHosts", value_delimiter = ',', requires = "config")]
    pub(crate) allow_runtime_hosts: Vec<String>,
    /// Servers of a configuration file inherit the whole environment (minus the proxy's own
    /// secrets), not only PATH, HOME and the other defaults.
    #[arg(long = "pass-environment", alias = "passEnvironment")]
    pub(crate) pass_environment: bool,
    /// Most open connections; at the cap the oldest idle one is closed (default: half the
    /// file-descriptor limit).
    #[arg(long = "maxConnections", alias = "max-connections")]
    pub(crate) max_connections: Option<usize>,
    /// Milliseconds a connection with no request in flight stays open.
    #[arg(long = "keepAliveTimeout", alias = "keep-alive-timeout", default_value_t = 5_000)]
    pub(crate) keep_alive_timeout: u64,
    /// Milliseconds SIGTERM/SIGINT waits for requests in flight (GET streams aside) before the
    /// servers are stopped; new connections are refused meanwhile.
    #[arg(long = "gracefulShutdownTimeout", alias = "graceful-shutdown-timeout", default_value_t = 5_000)]
    pub(crate) graceful_shutdown_timeout: u64,
    /// Milliseconds a request body may take to arrive (then 408).
    #[arg(long = "bodyTimeout", alias = "body-timeout", default_value_t = 30_000)]
    pub(crate) body_timeout: u64,
    /// Write servers added or removed through /api/servers back into the --config file
    /// (atomically), so a restart keeps them.
    #[arg(long, requires = "config")]
    pub(crate) persist: bool,
    /// Print the version and how the core is run, then exit.
    #[arg(long, short = 'V')]
    pub(crate) version: bool,
    /// The stdio MCP server to run, with its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub(crate) command: Vec<String>,
}

/// The Go `mcp-proxy`'s flags (Go's `flag` package: one or two dashes, `-name value` or
/// `-name=value`) at the start of a command line, in this CLI's spelling; with no arguments at
/// all, `./config.json` if it exists, as the Go binary does. The Go binary expands `${VAR}` in
/// a local file by default, so a command line in its spelling does too (`-expand-env=false`
/// turns it off). Everything from the first argument that is not a Go flag on is left as it is.
pub(crate) fn from_go_spelling(args: Vec<std::ffi::OsString>, config_json_exists: bool) -> Vec<std::ffi::OsString> {
    let mut args = args.into_iter();
    let program = args.next().unwrap_or_else(|| "mcp-proxy".into());
    let rest: Vec<std::ffi::OsString> = args.collect();
    let mut out = vec![program];
    if rest.is_empty() {
        if config_json_exists {
            out.extend(["--config".into(), "config.json".into(), "--expand-env".into()]);
        }
        return out;
    }
    let mut go_style = false;
    let mut expand: Option<bool> = None;
    let mut remote = false;
    let mut config = false;
    let mut index = 0;
    while let Some(arg) = rest.get(index).and_then(|a| a.to_str()) {
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else { break };
        let single = !arg.starts_with("--");
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (flag, None),
        };
        let takes_value = matches!(name, "config" | "http-headers" | "http-timeout");
        if !takes_value && !matches!(name, "expand-env" | "insecure" | "version" | "help" | "h") {
            break;
        }
        let value = match (takes_value, inline) {
            (true, Some(value)) => Some(value),
            (true, None) => {
                index += 1;
                match rest.get(index).and_then(|a| a.to_str()) {
                    Some(value) => Some(value.to_owned()),
                    // A missing value is clap's to report.
                    None => {
                        out.push(format!("--{name}").into());
                        break;
                    }
                }
            }
            (false, inline) => inline,
        };
        go_style |= single || matches!(name, "http-headers" | "http-timeout");
        // Go's strconv.ParseBool.
        let on = |value: &Option<String>| {
            value.as_deref().is_none_or(|v| matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True"))
        };
        match (name, value) {
            ("config", Some(value)) => {
                remote = value.starts_with("http://") || value.starts_with("https://");
                config = true;
                out.extend(["--config".into(), value.into()]);
            }
            ("http-headers", Some(value)) => {
                for pair in value.split(';').filter(|p| !p.trim().is_empty()) {
                    out.extend(["--config-header".into(), pair.trim().into()]);
                }
            }
            ("http-timeout", Some(value)) => out.extend(["--config-timeout".into(), value.into()]),
            ("expand-env", value) => expand = Some(on(&value)),
            ("insecure", value) => {
                if on(&value) {
                    out.push("--insecure".into());
                }
            }
            ("version", _) => out.push("--version".into()),
            _ => out.push("--help".into()),
        }
        index += 1;
    }
    if config && expand.unwrap_or(go_style && !remote) {
        out.push("--expand-env".into());
    }
    out.extend(rest.into_iter().skip(index));
    out
}

/// Reverse mode's transport toward the remote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ConnectTransport {
    /// Streamable HTTP, then legacy SSE.
    Auto,
    /// Streamable HTTP only.
    #[value(alias = "streamablehttp")]
    StreamableHttp,
    /// Legacy HTTP+SSE only.
    Sse,
}

/// A single transport to serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ServerKind {
    /// Legacy HTTP+SSE only.
    Sse,
    /// Streamable HTTP only.
    Stream,
}

/// Why the command line cannot be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Neither a server command nor `--config` was given.
    #[error("missing the MCP server command: mcp-proxy [OPTIONS] [--] <COMMAND> [ARGS]... (or --config <PATH>)")]
    MissingCommand,
    /// What looks like the command is an option clap did not know (given without `--`).
    #[error("unknown option {0:?} (see --help); put the server command after `--`")]
    UnknownOption(String),
    /// `--persist` with a configuration fetched from a URL: there is no file to write.
    #[error("--persist needs --config to name a local file, not a URL")]
    PersistRemote,
    /// A reverse-mode header that is not "Name: value".
    #[error("--header {0:?}: expected \"Name: value\"")]
    Header(String),
}

/// The endpoints the command line chose; `None` leaves the core's default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Endpoints<'a> {
    /// The Streamable HTTP endpoint.
    pub(crate) stream: Option<&'a str>,
    /// The legacy SSE endpoint.
    pub(crate) sse: Option<&'a str>,
}

impl Cli {
    /// Reverse mode's remote: `--connect URL`, or a bare http(s) URL as the only argument.
    pub(crate) fn connect_url(&self) -> Option<&str> {
        match (self.connect.as_deref(), self.command.as_slice()) {
            (Some(url), _) => Some(url),
            (None, [url]) if url.starts_with("http://") || url.starts_with("https://") => Some(url),
            _ => None,
        }
    }

    /// The core's configuration for reverse mode (see [`Cli::connect_url`]); `api_access_token`
    /// is the Python peer's `API_ACCESS_TOKEN`.
    pub(crate) fn reverse_config(&self, url: &str, api_access_token: Option<&str>) -> Result<String, CliError> {
        let mut headers: Vec<(String, String)> = Vec::new();
        if let Some(token) = api_access_token.filter(|t| !t.is_empty()) {
            headers.push(("Authorization".into(), format!("Bearer {token}")));
        }
        for header in &self.header {
            let (name, value) = header.split_once(':').ok_or_else(|| CliError::Header(header.clone()))?;
            if name.trim().is_empty() {
                return Err(CliError::Header(header.clone()));
            }
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        for pair in self.header_pair.chunks(2) {
            if let [name, value] = pair {
                headers.push((name.clone(), value.clone()));
            }
        }
        let transport = match self.transport {
            ConnectTransport::Auto => "auto",
            ConnectTransport::StreamableHttp => "streamable-http",
            ConnectTransport::Sse => "sse",
        };
        let mut config = json!({
            "connect": {"url": url, "transport": transport, "headers": headers},
            "debug": self.debug,
            "environment": [],
        });
        let given = [
            ("upstreamProtocol", self.upstream_protocol.clone().map(Value::from)),
            ("connectionTimeoutMs", self.connection_timeout.map(Value::from)),
            ("requestTimeoutMs", self.request_timeout.map(Value::from)),
        ];
        for (key, value) in given {
            if let Some(value) = value {
                config[key] = value;
            }
        }
        Ok(config.to_string())
    }

    /// The endpoints asked for: `--streamEndpoint` and `--sseEndpoint`, with `--endpoint` in
    /// place of the one of the transport `--server` chose (with both: the Streamable HTTP one).
    pub(crate) fn endpoints(&self) -> Endpoints<'_> {
        let mut endpoints = Endpoints { stream: self.stream_endpoint.as_deref(), sse: self.sse_endpoint.as_deref() };
        match (self.server, self.endpoint.as_deref()) {
            (Some(ServerKind::Sse), Some(endpoint)) => endpoints.sse = Some(endpoint),
            (_, Some(endpoint)) => endpoints.stream = Some(endpoint),
            (_, None) => {}
        }
        endpoints
    }

    /// The file `--persist` writes the server list back to, if it was asked for.
    pub(crate) fn persist_to(&self) -> Result<Option<PathBuf>, CliError> {
        match (&self.config, self.persist) {
            (Some(source), true) if crate::config_source::is_remote(source) => Err(CliError::PersistRemote),
            (Some(source), true) => Ok(Some(PathBuf::from(source))),
            _ => Ok(None),
        }
    }

    /// What the core serves: `server` (one command) or `configFile` (the aggregator).
    fn served(&self, config_text: Option<&str>) -> Result<(&'static str, Value), CliError> {
        if let Some(text) = config_text {
            let env: Option<Vec<(String, String)>> = self.expand_env.then(environment);
            return Ok(("configFile", json!({"text": text, "env": env})));
        }
        let Some((command, args)) = self.command.split_first() else {
            return Err(CliError::MissingCommand);
        };
        // Without `--`, an unknown option would otherwise be taken for the command.
        if command.starts_with('-') {
            return Err(CliError::UnknownOption(command.clone()));
        }
        Ok(("server", json!({"command": command, "args": args, "env": [], "shell": self.shell})))
    }

    /// The core's JSON configuration (`config_text`: the file --config named, read already).
    /// Only the options given are set: the core's defaults apply to the others.
    pub(crate) fn core_config(&self, config_text: Option<&str>) -> Result<String, CliError> {
        let (served_key, served) = self.served(config_text)?;
        // The values of --config-header are credentials of the host's own: no child sees them.
        let secrets: Vec<&str> = self
            .config_header
            .iter()
            .filter_map(|header| header.split_once(':').map(|(_, value)| value.trim()))
            .flat_map(|value| [value, mcp_proxy_core::policy::bearer_token(value)])
            .collect();
        let mut config = json!({
            "transports": {
                "sse": self.server != Some(ServerKind::Stream),
                "stream": self.server != Some(ServerKind::Sse),
            },
            "stateless": self.stateless,
            "apiKey": self.api_key,
            "cors": {"enabled": !self.no_cors, "origins": self.cors_origin, "allowHeaders": self.cors_allow_header},
            "debug": self.debug,
            "originCheck": !self.no_origin_check,
            "adminTokens": self.admin_token,
            "sessionKey": self.session_key,
            "allowRuntimeStdio": self.allow_runtime_stdio,
            "allowRuntimeHosts": self.allow_runtime_hosts,
            "passEnvironment": self.pass_environment,
            "environment": environment(),
            "secrets": secrets,
            "persist": self.persist,
        });
        config[served_key] = served;
        let endpoints = self.endpoints();
        let off = self.no_event_store || self.event_store == Some(false);
        let event_store_size = if off { Some(0) } else { self.event_store_size };
        let modern = match (self.modern, self.no_modern) {
            (_, true) => Some(false),
            (true, false) => Some(true),
            (false, false) => None,
        };
        let given = [
            ("streamEndpoint", endpoints.stream.map(Value::from)),
            ("sseEndpoint", endpoints.sse.map(Value::from)),
            ("statelessPoolSize", self.stateless_pool_size.map(Value::from)),
            ("modern", modern.map(Value::from)),
            ("modernPoolMax", self.modern_pool_max.map(Value::from)),
            ("upstreamProtocol", self.upstream_protocol.clone().map(Value::from)),
            ("connectionTimeoutMs", self.connection_timeout.map(Value::from)),
            ("requestTimeoutMs", self.request_timeout.map(Value::from)),
            ("maxBodySize", self.max_body_size.map(Value::from)),
            ("eventStoreSize", event_store_size.map(Value::from)),
            ("keepAliveMs", self.keep_alive.map(Value::from)),
            ("sessionTimeoutMs", self.session_timeout.map(Value::from)),
            ("maxSessions", self.max_sessions.map(Value::from)),
        ];
        for (key, value) in given {
            if let Some(value) = value {
                config[key] = value;
            }
        }
        Ok(config.to_string())
    }
}

impl Cli {
    /// Where to listen: the config file's `mcpProxy.addr` unless `--host` or `--port` is given
    /// (no host there means every interface, as in Go), else 127.0.0.1:8080.
    pub(crate) fn listen_on(&self, file: Option<mcp_proxy_core::config_file::ListenAddr>) -> (IpAddr, u16) {
        let file = file.filter(|_| self.host.is_none() && self.port.is_none());
        let every = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        let host =
            self.host.or(file.map(|f| f.host.unwrap_or(every))).unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        let port = self.port.or(file.map(|f| f.port)).unwrap_or(8080);
        (host, port)
    }
}

/// The proxy's environment, as far as it is text (a variable that is not UTF-8 is left out).
fn environment() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("mcp-proxy").chain(args.iter().copied())).expect("valid command line")
    }

    fn config_of(args: &[&str]) -> Value {
        let config = parse(args).core_config(None).expect("a valid command line");
        serde_json::from_str(&config).expect("the configuration is JSON")
    }

    fn go(args: &[&str], config_json: bool) -> Vec<String> {
        let args = std::iter::once("mcp-proxy").chain(args.iter().copied()).map(Into::into).collect();
        from_go_spelling(args, config_json).into_iter().skip(1).map(|a| a.into_string().expect("utf-8")).collect()
    }

    #[test]
    fn the_go_binarys_spelling_is_translated_at_the_start_only() {
        assert_eq!(go(&[], true), ["--config", "config.json", "--expand-env"], "./config.json, expanded as Go does");
        assert!(go(&[], false).is_empty(), "nothing to serve: the usage");
        assert_eq!(go(&["-config", "c.json"], false), ["--config", "c.json", "--expand-env"]);
        assert_eq!(go(&["-config=c.json", "-expand-env=false"], false), ["--config", "c.json"]);
        assert_eq!(go(&["--config", "c.json"], false), ["--config", "c.json"], "this CLI's spelling: no expansion");
        assert_eq!(
            go(
                &["-config", "https://h/c.json", "-http-headers", "A:1; B: 2", "-http-timeout", "5", "-insecure"],
                false
            ),
            [
                "--config",
                "https://h/c.json",
                "--config-header",
                "A:1",
                "--config-header",
                "B: 2",
                "--config-timeout",
                "5",
                "--insecure"
            ],
            "a remote file is never expanded"
        );
        assert_eq!(go(&["-version"], false), ["--version"]);
        assert_eq!(go(&["-help"], false), ["--help"]);
        assert_eq!(go(&["-insecure=false", "-config", "c.json"], false), ["--config", "c.json", "--expand-env"]);
        // A server's own arguments are left alone.
        assert_eq!(go(&["--port", "9", "npx", "-config", "x"], false), ["--port", "9", "npx", "-config", "x"]);
        assert_eq!(go(&["npx", "-version"], false), ["npx", "-version"]);
        let cli = Cli::try_parse_from(from_go_spelling(
            ["mcp-proxy", "-config", "c.json", "-http-headers", "Authorization:Bearer x"].map(Into::into).to_vec(),
            false,
        ))
        .expect("parses");
        assert_eq!(
            (cli.config.as_deref(), cli.expand_env, cli.config_header),
            (Some("c.json"), true, vec!["Authorization:Bearer x".to_owned()])
        );
    }

    #[test]
    fn command_without_double_dash_keeps_its_flags() {
        let cli = parse(&["--port", "9000", "npx", "-y", "server", "--flag"]);
        assert_eq!(cli.port, Some(9000));
        assert_eq!(cli.command, ["npx", "-y", "server", "--flag"]);
    }

    #[test]
    fn camel_case_and_kebab_case_options() {
        let cli = parse(&["--sseEndpoint", "/events", "--request-timeout", "5", "--", "srv"]);
        assert_eq!(cli.sse_endpoint.as_deref(), Some("/events"));
        assert_eq!(cli.request_timeout, Some(5));
        assert_eq!(cli.command, ["srv"]);
        let cli = parse(&["--sse-endpoint", "/e", "--requestTimeout", "6", "--max-sessions", "3", "srv"]);
        assert_eq!(
            (cli.sse_endpoint.as_deref(), cli.request_timeout, cli.max_sessions),
            (Some("/e"), Some(6), Some(3))
        );
    }

    #[test]
    fn endpoint_follows_the_chosen_server() {
        let value = config_of(&["--server", "sse", "--endpoint", "/x", "srv"]);
        assert_eq!(value["sseEndpoint"], "/x");
        assert_eq!(value.get("streamEndpoint"), None);
        assert_eq!(value["transports"]["stream"], false);
        let value = config_of(&["--endpoint", "/x", "--sseEndpoint", "/s", "srv"]);
        assert_eq!((&value["streamEndpoint"], &value["sseEndpoint"]), (&json!("/x"), &json!("/s")));
        let cli = parse(&["--server", "stream", "--endpoint", "/y", "--streamEndpoint", "/ignored", "srv"]);
        assert_eq!(cli.endpoints(), Endpoints { stream: Some("/y"), sse: None });
    }

    #[test]
    fn options_not_given_are_left_to_the_core() {
        let value = config_of(&["srv"]);
        for key in [
            "streamEndpoint",
            "sseEndpoint",
            "statelessPoolSize",
            "connectionTimeoutMs",
            "requestTimeoutMs",
            "maxBodySize",
            "eventStoreSize",
            "keepAliveMs",
            "sessionTimeoutMs",
            "maxSessions",
        ] {
            assert_eq!(value.get(key), None, "{key} was set");
        }
        let config = mcp_proxy_core::Config::from_json(&value.to_string()).expect("the core accepts it");
        assert_eq!(config.stream_endpoint, "/mcp");
    }

    #[test]
    fn options_given_are_sent() {
        let value = config_of(&[
            "--connectionTimeout",
            "7",
            "--maxBodySize",
            "9",
            "--keepAlive",
            "0",
            "--statelessPoolSize",
            "4",
            "--sessionTimeout",
            "11",
            "--eventStoreSize",
            "12",
            "srv",
        ]);
        assert_eq!(value["connectionTimeoutMs"], 7);
        assert_eq!(value["maxBodySize"], 9);
        assert_eq!(value["keepAliveMs"], 0);
        assert_eq!(value["statelessPoolSize"], 4);
        assert_eq!(value["sessionTimeoutMs"], 11);
        assert_eq!(value["eventStoreSize"], 12);
    }

    #[test]
    fn modern_is_on_unless_turned_off() {
        assert_eq!(config_of(&["srv"]).get("modern"), None, "the core's default");
        assert_eq!(config_of(&["--no-modern", "srv"])["modern"], false);
        assert_eq!(config_of(&["--no-modern", "--modern", "srv"])["modern"], true, "the last one wins");
        assert_eq!(config_of(&["--modernPoolMax", "3", "srv"])["modernPoolMax"], 3);
        assert_eq!(config_of(&["srv"]).get("upstreamProtocol"), None, "the core's default");
        assert_eq!(config_of(&["--upstreamProtocol", "legacy", "srv"])["upstreamProtocol"], "legacy");
    }

    #[test]
    fn no_event_store_means_size_zero() {
        assert_eq!(config_of(&["--no-eventStore", "srv"])["eventStoreSize"], 0);
        assert_eq!(config_of(&["--eventStore=false", "srv"])["eventStoreSize"], 0);
        assert_eq!(config_of(&["--no-eventStore", "--eventStore", "srv"]).get("eventStoreSize"), None, "the last wins");
        let cli = parse(&["--eventStore", "npx", "srv"]);
        assert_eq!(cli.command, ["npx", "srv"], "a bare --eventStore takes no value");
        assert_eq!(config_of(&["--eventStoreMaxEvents", "7", "srv"])["eventStoreSize"], 7);
        assert_eq!(config_of(&["--sessionIdleTimeout", "9", "srv"])["sessionTimeoutMs"], 9);
        let value = config_of(&["--corsAddAllowedHeader", "X-API-Key", "--corsAddAllowedHeader", "X-B", "srv"]);
        assert_eq!(value["cors"]["allowHeaders"], json!(["X-API-Key", "X-B"]));
        assert_eq!(config_of(&["--no-event-store", "--eventStoreSize", "5", "srv"])["eventStoreSize"], 0);
    }

    /// The help text names each default; the core decides it, so the two must agree.
    #[test]
    fn the_help_names_the_cores_defaults() {
        let defaults = mcp_proxy_core::Config::from_json(r#"{"server": {"command": "srv"}}"#).expect("defaults");
        let expected = [
            ("sse_endpoint", defaults.sse_endpoint.clone()),
            ("stream_endpoint", defaults.stream_endpoint.clone()),
            ("stateless_pool_size", defaults.stateless_pool_size.to_string()),
            ("connection_timeout", defaults.connection_timeout_ms.to_string()),
            ("request_timeout", defaults.request_timeout_ms.to_string()),
            ("max_body_size", defaults.max_body_size.to_string()),
            ("event_store_size", defaults.event_store_size.to_string()),
            ("keep_alive", defaults.keep_alive_ms.to_string()),
            ("session_timeout", defaults.session_timeout_ms.to_string()),
            ("max_sessions", defaults.max_sessions.to_string()),
            ("modern_pool_max", defaults.modern_pool_max.to_string()),
        ];
        let command = Cli::command();
        for (id, default) in expected {
            let argument = command.get_arguments().find(|a| a.get_id() == id).expect("the option exists");
            let help = argument.get_help().map(ToString::to_string).unwrap_or_default();
            assert!(help.ends_with(&format!("[default: {default}]")), "--{id}: {help:?} should name {default}");
        }
    }

    #[test]
    fn missing_command_is_an_error() {
        assert!(matches!(parse(&["--port", "1"]).core_config(None), Err(CliError::MissingCommand)));
    }

    #[test]
    fn unknown_options_are_not_taken_for_the_command() {
        let error = parse(&["--no-such-option", "--", "srv"]).core_config(None).expect_err("unknown option");
        assert!(error.to_string().contains("--no-such-option"), "{error}");
    }

    #[test]
    fn persist_needs_a_local_file() {
        let cli = parse(&["--config", "https://example.com/c.json", "--persist"]);
        assert!(matches!(cli.persist_to(), Err(CliError::PersistRemote)));
        let cli = parse(&["--config", "servers.json", "--persist"]);
        assert_eq!(cli.persist_to().expect("a local file"), Some(PathBuf::from("servers.json")));
    }
}
