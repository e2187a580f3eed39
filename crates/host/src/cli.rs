//! The command line, compatible with the TypeScript `mcp-proxy` CLI, turned into the core's
//! JSON configuration and the host's own settings.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use serde_json::json;

/// Serve a stdio MCP server over Streamable HTTP (`/mcp`) and legacy SSE (`/sse`).
#[derive(Debug, Parser)]
#[command(
    name = "mcp-proxy",
    disable_version_flag = true,
    override_usage = "mcp-proxy [OPTIONS] [--] <COMMAND> [ARGS]..."
)]
pub(crate) struct Cli {
    /// Port to listen on (0 picks a free port).
    #[arg(long, default_value_t = 8080)]
    pub(crate) port: u16,
    /// Address to bind; keep the loopback default unless clients are remote.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) host: IpAddr,
    /// Serve only one transport (default: both).
    #[arg(long, value_enum)]
    pub(crate) server: Option<ServerKind>,
    /// Endpoint of the transport chosen with --server (with both: the Streamable HTTP one).
    #[arg(long)]
    pub(crate) endpoint: Option<String>,
    /// Legacy SSE endpoint.
    #[arg(long = "sseEndpoint", alias = "sse-endpoint", default_value = "/sse")]
    pub(crate) sse_endpoint: String,
    /// Streamable HTTP endpoint.
    #[arg(long = "streamEndpoint", alias = "stream-endpoint", default_value = "/mcp")]
    pub(crate) stream_endpoint: String,
    /// Serve Streamable HTTP without sessions.
    #[arg(long)]
    pub(crate) stateless: bool,
    /// Number of server processes serving --stateless requests.
    #[arg(long = "statelessPoolSize", alias = "stateless-pool-size", default_value_t = 2)]
    pub(crate) stateless_pool_size: usize,
    /// Milliseconds a new server may take to answer initialize.
    #[arg(long = "connectionTimeout", alias = "connection-timeout", default_value_t = 60_000)]
    pub(crate) connection_timeout: u64,
    /// Milliseconds any request may wait for its answer.
    #[arg(long = "requestTimeout", alias = "request-timeout", default_value_t = 300_000)]
    pub(crate) request_timeout: u64,
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
    /// Largest request body in bytes (larger ones get 413).
    #[arg(long = "maxBodySize", alias = "max-body-size", default_value_t = 10 * 1024 * 1024)]
    pub(crate) max_body_size: u64,
    /// Allowed CORS origin (repeatable; default any).
    #[arg(long = "cors-origin", alias = "corsOrigin")]
    pub(crate) cors_origin: Vec<String>,
    /// Extra request header to allow in CORS preflights (repeatable).
    #[arg(long = "cors-allow-header", alias = "corsAllowHeader")]
    pub(crate) cors_allow_header: Vec<String>,
    /// Send no CORS headers at all.
    #[arg(long = "no-cors", alias = "noCors")]
    pub(crate) no_cors: bool,
    /// Events each session keeps for resuming broken streams with Last-Event-ID (0: off).
    #[arg(long = "eventStoreSize", alias = "event-store-size", default_value_t = 1000)]
    pub(crate) event_store_size: usize,
    /// Keep no events for resumption (same as --eventStoreSize 0).
    #[arg(long = "no-eventStore", alias = "no-event-store")]
    pub(crate) no_event_store: bool,
    /// Milliseconds between keep-alive comments on open SSE streams (0: off).
    #[arg(long = "keepAlive", alias = "keep-alive", default_value_t = 15_000)]
    pub(crate) keep_alive: u64,
    /// Milliseconds after which an idle session (no requests, no open stream) ends (0: never).
    #[arg(long = "sessionTimeout", alias = "session-timeout", default_value_t = 1_800_000)]
    pub(crate) session_timeout: u64,
    /// Most sessions at once (each runs its own server process); more get 503.
    #[arg(long = "maxSessions", alias = "max-sessions", default_value_t = 1000)]
    pub(crate) max_sessions: usize,
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

/// A single transport to serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ServerKind {
    /// Legacy HTTP+SSE only.
    Sse,
    /// Streamable HTTP only.
    Stream,
}

impl Cli {
    /// What the core serves: `server` (one command) or `configFile` (the aggregator).
    fn served(&self, config_text: Option<&str>) -> Result<(&'static str, serde_json::Value), String> {
        if let Some(text) = config_text {
            let env: Option<Vec<(String, String)>> = self.expand_env.then(environment);
            return Ok(("configFile", json!({"text": text, "env": env})));
        }
        let Some((command, args)) = self.command.split_first() else {
            return Err(
                "missing the MCP server command: mcp-proxy [OPTIONS] [--] <COMMAND> [ARGS]... (or --config <PATH>)"
                    .into(),
            );
        };
        // Without `--`, an unknown option would otherwise be taken for the command.
        if command.starts_with('-') {
            return Err(format!("unknown option {command:?} (see --help); put the server command after `--`"));
        }
        Ok(("server", json!({"command": command, "args": args, "env": [], "shell": self.shell})))
    }

    /// The core's JSON configuration (`config_text`: the file --config named, read already).
    pub(crate) fn core_config(&self, config_text: Option<&str>) -> Result<String, String> {
        let (served_key, served) = self.served(config_text)?;
        let (mut stream_endpoint, mut sse_endpoint) = (self.stream_endpoint.clone(), self.sse_endpoint.clone());
        match (self.server, &self.endpoint) {
            (Some(ServerKind::Sse), Some(endpoint)) => sse_endpoint = endpoint.clone(),
            (_, Some(endpoint)) => stream_endpoint = endpoint.clone(),
            (_, None) => {}
        }
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
            "streamEndpoint": stream_endpoint,
            "sseEndpoint": sse_endpoint,
            "stateless": self.stateless,
            "statelessPoolSize": self.stateless_pool_size,
            "connectionTimeoutMs": self.connection_timeout,
            "requestTimeoutMs": self.request_timeout,
            "apiKey": self.api_key,
            "cors": {"enabled": !self.no_cors, "origins": self.cors_origin, "allowHeaders": self.cors_allow_header},
            "maxBodySize": self.max_body_size,
            "debug": self.debug,
            "eventStoreSize": if self.no_event_store { 0 } else { self.event_store_size },
            "keepAliveMs": self.keep_alive,
            "sessionTimeoutMs": self.session_timeout,
            "maxSessions": self.max_sessions,
            "originCheck": !self.no_origin_check,
            "adminTokens": self.admin_token,
            "allowRuntimeStdio": self.allow_runtime_stdio,
            "allowRuntimeHosts": self.allow_runtime_hosts,
            "passEnvironment": self.pass_environment,
            "environment": environment(),
            "secrets": secrets,
            "persist": self.persist,
        });
        config[served_key] = served;
        Ok(config.to_string())
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
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("mcp-proxy").chain(args.iter().copied())).expect("valid command line")
    }

    #[test]
    fn command_without_double_dash_keeps_its_flags() {
        let cli = parse(&["--port", "9000", "npx", "-y", "server", "--flag"]);
        assert_eq!(cli.port, 9000);
        assert_eq!(cli.command, ["npx", "-y", "server", "--flag"]);
    }

    #[test]
    fn camel_case_and_kebab_case_options() {
        let cli = parse(&["--sseEndpoint", "/events", "--request-timeout", "5", "--", "srv"]);
        assert_eq!(cli.sse_endpoint, "/events");
        assert_eq!(cli.request_timeout, 5);
        assert_eq!(cli.command, ["srv"]);
    }

    #[test]
    fn endpoint_follows_the_chosen_server() {
        let config = parse(&["--server", "sse", "--endpoint", "/x", "srv"]).core_config(None).expect("valid");
        let value: serde_json::Value = serde_json::from_str(&config).expect("json");
        assert_eq!(value["sseEndpoint"], "/x");
        assert_eq!(value["transports"]["stream"], false);
    }

    #[test]
    fn missing_command_is_an_error() {
        assert!(parse(&["--port", "1"]).core_config(None).is_err());
    }

    #[test]
    fn unknown_options_are_not_taken_for_the_command() {
        let error = parse(&["--no-such-option", "--", "srv"]).core_config(None).expect_err("unknown option");
        assert!(error.contains("--no-such-option"), "{error}");
    }
}
