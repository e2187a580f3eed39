//! The runtime server API of the aggregator: list, inspect, add and remove servers while
//! clients are connected.
//!
//! `GET /api/servers`, `GET /api/servers/{name}`, `POST /api/servers` with `{name, config}`
//! (validated like an entry of the configuration file), `DELETE /api/servers/{name}` (its
//! sessions end and its children stop). Every call needs an admin credential (see
//! [`crate::policy::access`]: the API is off without one). Adding a stdio server starts
//! processes on request, so it is refused unless the operator allowed it. Listings show a
//! server's name without its path token.

use serde_json::{json, Value};

use crate::config::file::{ServerSource, UpstreamConfig};
use crate::error::RequestError;
use crate::ids::{ServerId, SessionId};
use crate::io::LogLevel;
use crate::proxy::Proxy;
use crate::route::{public_endpoint_path, Endpoint, Target};
use crate::state::exchange::json_head;
use crate::wire::http::{Header, HttpRequest};

impl Proxy {
    /// Serves a request under `/api/servers` (its admin credential is checked already).
    pub(crate) fn handle_admin(&mut self, request: HttpRequest, cors: Vec<Header>) {
        let exchange = request.exchange;
        let path = request.path().to_owned();
        let name =
            path.strip_prefix(crate::policy::access::API).and_then(|rest| rest.strip_prefix('/')).map(str::to_owned);
        match (request.method.as_str(), name) {
            ("GET", None) => {
                let numbers: Vec<ServerId> = self.ctx.config.servers.iter().map(|(server, _)| server).collect();
                let servers: Vec<Value> = numbers.into_iter().filter_map(|s| self.describe(s)).collect();
                self.admin_reply(exchange, cors, 200, json!({"servers": servers}));
            }
            ("GET", Some(name)) => match self.active_server(&name) {
                Some(server) => {
                    let body = self.describe(server).unwrap_or_default();
                    self.admin_reply(exchange, cors, 200, body);
                }
                None => self.ctx.refuse(exchange, cors, 404, "Not Found: no such server"),
            },
            ("POST", None) => self.add_server(&request, cors),
            ("DELETE", Some(name)) => match self.active_server(&name) {
                Some(server) => {
                    let removed = self.ctx.config.servers.get(server).map(|s| s.display_name().to_owned());
                    self.remove_server(server);
                    self.admin_reply(exchange, cors, 200, json!({"removed": removed}));
                }
                None => self.ctx.refuse(exchange, cors, 404, "Not Found: no such server"),
            },
            _ => self.ctx.refuse(exchange, cors, 405, "Method Not Allowed"),
        }
    }

    /// Applies `change` to the kept file's `mcpServers` and asks the shell to write the file.
    fn persist(&mut self, change: impl FnOnce(&mut serde_json::Map<String, Value>)) {
        let Some(document) = self.ctx.config.file_document.as_mut() else {
            return;
        };
        let Some(servers) = document.get_mut("mcpServers").and_then(Value::as_object_mut) else {
            return;
        };
        change(servers);
        let text = serde_json::to_string_pretty(document).expect("a JSON value always serializes");
        self.ctx.push(crate::io::Output::PersistConfig(text));
    }

    fn admin_reply(&mut self, exchange: crate::ids::ExchangeId, cors: Vec<Header>, status: u16, body: Value) {
        self.ctx.respond(
            json_head(exchange, status, cors),
            serde_json::to_vec(&body).expect("a JSON value always serializes"),
        );
    }

    fn active_server(&self, name: &str) -> Option<ServerId> {
        crate::route::server_named(&self.ctx.config, name)
    }

    fn describe(&self, server: ServerId) -> Option<Value> {
        let entry = self.ctx.config.servers.get(server).filter(|s| !s.options.disabled)?;
        let transport = match entry.upstream {
            UpstreamConfig::Stdio(_) => "stdio",
            UpstreamConfig::Sse { .. } => "sse",
            UpstreamConfig::StreamableHttp { .. } => "streamable-http",
        };
        let sessions =
            self.sessions.values().filter(|s| s.members.iter().any(|m| m.server == server && !m.failed)).count();
        let source = match entry.source {
            ServerSource::Config => "config",
            ServerSource::Api => "api",
            ServerSource::Temporary => "temporary",
        };
        let (mcp, sse) = (
            public_endpoint_path(&self.ctx.config, Target::Server(server), Endpoint::Stream),
            public_endpoint_path(&self.ctx.config, Target::Server(server), Endpoint::Sse),
        );
        let urls = crate::route::public_url(&self.ctx.config, &mcp)
            .zip(crate::route::public_url(&self.ctx.config, &sse))
            .map(|(mcp, sse)| json!({"mcp": mcp, "sse": sse}));
        let mut listed = json!({
            "name": entry.display_name(),
            "pathToken": entry.path_token().is_some(),
            "transport": transport,
            "source": source,
            "paths": {"mcp": mcp, "sse": sse},
            "sessions": sessions,
            "toolFilter": entry.options.tool_filter.as_ref().map(|f| json!({
                "mode": if f.mode == crate::config::file::FilterMode::Allow { "allow" } else { "block" },
                "list": f.list,
            })),
            "auth": !entry.options.auth_tokens.is_empty(),
            "shareUpstream": entry.options.share_upstream,
            // The era it was last found to speak (none yet: not asked yet).
            "protocol": self.eras.verdict_of(server),
        });
        // Under `mcpProxy.baseURL`, when one is set.
        if let Some(urls) = urls {
            listed["urls"] = urls;
        }
        Some(listed)
    }

    fn add_server(&mut self, request: &HttpRequest, cors: Vec<Header>) {
        let exchange = request.exchange;
        let body: Value = match serde_json::from_slice(&request.body) {
            Ok(body) => body,
            Err(error) => {
                return self.ctx.refuse(exchange, cors, 400, &format!("Bad Request: the body is not JSON: {error}"))
            }
        };
        let (Some(name), Some(entry)) = (body.get("name").and_then(Value::as_str), body.get("config")) else {
            return self.ctx.refuse(exchange, cors, 400, "Bad Request: expected {\"name\": ..., \"config\": {...}}");
        };
        if self.active_server(name).is_some() {
            return self.ctx.refuse(exchange, cors, 409, "Conflict: a server of that name exists");
        }
        let server = match self.runtime_server(name, entry) {
            Ok(server) => server,
            Err(refusal) => return self.ctx.refuse(exchange, cors, refusal.status(), &refusal.to_string()),
        };
        let shown = server.display_name().to_owned();
        let index = self.ctx.config.servers.insert(server);
        self.ctx.log(LogLevel::Info, format!("server {shown} added through the API"));
        self.persist(|servers| {
            // Read again, it is still held to the runtime rules (public addresses only).
            let mut written = entry.clone();
            if let Some(fields) = written.as_object_mut() {
                let options = fields.entry("options").or_insert_with(|| Value::Object(serde_json::Map::new()));
                if let Some(options) = options.as_object_mut() {
                    options.insert(crate::config::file::ADDED_THROUGH_API.to_owned(), Value::Bool(true));
                }
            }
            servers.insert(name.to_owned(), written);
        });
        let body = self.describe(index).unwrap_or_default();
        self.admin_reply(exchange, cors, 201, body);
    }

    /// Takes a server away: its sessions end, merged sessions go on without it.
    fn remove_server(&mut self, server: ServerId) {
        let Some(entry) = self.ctx.config.servers.get_mut(server) else {
            return;
        };
        entry.options.disabled = true;
        let name = entry.name.clone();
        let shown = entry.display_name().to_owned();
        self.persist(|servers| {
            servers.remove(&name);
        });
        let affected: Vec<(SessionId, Target)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.members.iter().any(|m| m.server == server))
            .map(|(id, s)| (id.clone(), s.target))
            .collect();
        for (session, target) in affected {
            match target {
                Target::Server(_) => self.end_session(&session, &RequestError::SessionEnded, "its server was removed"),
                Target::Merged => self.leave_out(&session, server, "it was removed"),
            }
        }
        self.drop_shared(server);
        self.ctx.config.servers.remove(server);
        self.ctx.log(LogLevel::Info, format!("server {shown} removed through the API"));
    }
}
