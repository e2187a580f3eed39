//! Temporary servers: `POST /sse` on the aggregator with `{"config": {...}}` starts a server for
//! that one SSE session; it is listed while the stream lives and removed when it ends.
//!
//! Starting a server on request is running code on request: it always needs an admin token
//! (checked in [`crate::policy::access`]; off without one), and a stdio server needs the
//! operator's `--allow-runtime-stdio` too.

use serde_json::Value;

use crate::config::file::{parse_server, ServerEntry, ServerSource, UpstreamConfig};
use crate::io::LogLevel;
use crate::policy::network::runtime_url_reach;
use crate::proxy::{Caller, Proxy};
use crate::route::Target;
use crate::wire::http::{Header, HttpRequest};

impl Proxy {
    /// Serves `POST /sse` on the aggregator: a temporary server and its SSE session (the admin
    /// credential is checked already).
    pub(crate) fn temporary_open(&mut self, request: HttpRequest, cors: Vec<Header>) {
        let exchange = request.exchange;
        let body: Value = match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(error) => {
                return self.ctx.refuse(exchange, cors, 400, &format!("Bad Request: the body is not JSON: {error}"))
            }
        };
        let Some(entry) = body.get("config") else {
            return self.ctx.refuse(exchange, cors, 400, "Bad Request: expected {\"config\": {...}}");
        };
        self.temporary_count += 1;
        let name = format!("temporary-{}", self.temporary_count);
        let mut server = match self.runtime_server(&name, entry) {
            Ok(server) => server,
            Err(refusal) => return self.ctx.refuse(exchange, cors, refusal.status(), &refusal.to_string()),
        };
        // Its messages endpoint must accept the same credential.
        server.options.auth_tokens = self.ctx.config.admin_tokens();
        server.source = ServerSource::Temporary;
        let index = self.ctx.config.servers.insert(server);
        self.ctx.log(LogLevel::Info, format!("temporary server {name} started"));
        self.legacy_open(
            &Caller { target: Target::Server(index), servers: vec![index], credential: [0; 32] },
            request,
            cors,
        );
    }

    /// Reads a server entry given at run time (API or temporary), inheriting the proxy's
    /// options; a stdio server needs the operator's consent.
    pub(crate) fn runtime_server(&self, name: &str, entry: &Value) -> Result<ServerEntry, RuntimeRefusal> {
        // Expansion is the operator's, for files: a request must not pull the proxy's
        // environment (its secrets) into a URL or a header.
        if entry.to_string().contains("${") {
            return Err(RuntimeRefusal::Expansion);
        }
        let defaults = self.ctx.config.aggregator.as_ref().map(|a| a.options.clone()).unwrap_or_default();
        let server = parse_server(name, entry, &defaults).map_err(RuntimeRefusal::Invalid)?;
        match &server.upstream {
            UpstreamConfig::Stdio(_) if !self.ctx.config.allow_runtime_stdio => return Err(RuntimeRefusal::Stdio),
            UpstreamConfig::Stdio(_) => {}
            UpstreamConfig::Sse { url, .. } | UpstreamConfig::StreamableHttp { url, .. } => {
                runtime_url_reach(url, &self.ctx.config.allow_runtime_hosts).map_err(RuntimeRefusal::Url)?;
            }
        }
        Ok(server)
    }

    /// A session ended: a temporary server goes with it.
    pub(crate) fn retire_temporary(&mut self, target: Target) {
        let Target::Server(server) = target else {
            return;
        };
        if self.ctx.config.servers.get(server).is_some_and(|entry| entry.source == ServerSource::Temporary) {
            if let Some(entry) = self.ctx.config.servers.remove(server) {
                self.ctx.log(LogLevel::Info, format!("temporary server {} removed", entry.name));
            }
        }
    }
}

/// Why a server given at run time (API or temporary) is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RuntimeRefusal {
    /// The entry holds `${...}`.
    #[error("Bad Request: ${{...}} is not expanded in servers added at run time")]
    Expansion,
    /// The entry is not a valid server.
    #[error("Bad Request: {}: {}", .0.path, .0.message)]
    Invalid(crate::error::ConfigError),
    /// A stdio server, and the operator did not allow starting processes on request.
    #[error("Forbidden: starting stdio servers on request is off (--allow-runtime-stdio)")]
    Stdio,
    /// The URL names an address runtime servers may not reach.
    #[error("Bad Request: url: {0}")]
    Url(crate::policy::network::UrlRefusal),
}

impl RuntimeRefusal {
    /// The HTTP status of the refusal.
    pub(crate) fn status(&self) -> u16 {
        match self {
            RuntimeRefusal::Stdio => 403,
            RuntimeRefusal::Expansion | RuntimeRefusal::Invalid(_) | RuntimeRefusal::Url(_) => 400,
        }
    }
}
