//! Temporary servers: `POST /sse` on the aggregator with `{"config": {...}}` starts a server for
//! that one SSE session; it is listed while the stream lives and removed when it ends.
//!
//! Starting a server on request is running code on request: it always needs an admin token,
//! and a stdio server needs the operator's `--allow-runtime-stdio` too.

use serde_json::Value;

use crate::config_file::{parse_server, ServerEntry, UpstreamConfig};
use crate::http::{Header, HttpRequest};
use crate::policy::{check_bearer_token, AuthDecision};
use crate::proxy::{LogLevel, Proxy};
use crate::route::Target;

impl Proxy {
    /// The bearer tokens that may change servers.
    pub(crate) fn admin_tokens(&self) -> Vec<String> {
        self.config
            .admin_tokens
            .iter()
            .chain(self.config.aggregator.iter().flat_map(|a| a.options.auth_tokens.iter()))
            .cloned()
            .collect()
    }

    /// Serves `POST /sse` on the aggregator: a temporary server and its SSE session.
    pub(crate) fn temporary_open(&mut self, request: HttpRequest, cors: Vec<Header>) {
        let exchange = request.exchange;
        let tokens = self.admin_tokens();
        if tokens.is_empty() {
            return self.refuse(
                exchange,
                cors,
                403,
                "Forbidden: temporary servers need an admin token (--admin-token)",
            );
        }
        if check_bearer_token(&tokens, &request) == AuthDecision::Deny {
            return self.refuse_unauthorized(exchange, cors, "Unauthorized: missing or invalid admin token");
        }
        let body: Value = match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(error) => {
                return self.refuse(exchange, cors, 400, &format!("Bad Request: the body is not JSON: {error}"))
            }
        };
        let Some(entry) = body.get("config") else {
            return self.refuse(exchange, cors, 400, "Bad Request: expected {\"config\": {...}}");
        };
        self.temporary_count += 1;
        let name = format!("temporary-{}", self.temporary_count);
        let mut server = match self.runtime_server(&name, entry) {
            Ok(server) => server,
            Err((status, message)) => return self.refuse(exchange, cors, status, &message),
        };
        // Its messages endpoint must accept the same token.
        server.options.auth_tokens = tokens;
        self.config.servers.push(server);
        let index = self.config.servers.len() - 1;
        self.temporary_servers.insert(index);
        self.log(LogLevel::Info, format!("temporary server {name} started"));
        self.legacy_open(Target::Server(index), request, cors);
    }

    /// Reads a server entry given at run time (API or temporary), inheriting the proxy's
    /// options; a stdio server needs the operator's consent. Errors carry the HTTP status.
    pub(crate) fn runtime_server(&self, name: &str, entry: &Value) -> Result<ServerEntry, (u16, String)> {
        let defaults = self.config.aggregator.as_ref().map(|a| a.options.clone()).unwrap_or_default();
        let server = parse_server(name, entry, &defaults)
            .map_err(|e| (400, format!("Bad Request: {}: {}", e.path, e.message)))?;
        if matches!(server.upstream, UpstreamConfig::Stdio(_)) && !self.config.allow_runtime_stdio {
            return Err((403, "Forbidden: starting stdio servers on request is off (--allow-runtime-stdio)".into()));
        }
        Ok(server)
    }

    /// A session ended: a temporary server goes with it.
    pub(crate) fn retire_temporary(&mut self, target: Target) {
        let Target::Server(server) = target else {
            return;
        };
        if self.temporary_servers.remove(&server) {
            if let Some(entry) = self.config.servers.get_mut(server) {
                entry.options.disabled = true;
                let name = entry.name.clone();
                self.log(LogLevel::Info, format!("temporary server {name} removed"));
            }
        }
    }
}
