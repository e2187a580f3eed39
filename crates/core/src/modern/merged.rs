//! The aggregator's merged endpoint for 2026 clients: every server the credential opens, as
//! one. `server/discover` unites the servers' capabilities; lists are asked of every server's
//! pool and merged with prefixed names (as for 2025 sessions); a call goes to the server its
//! prefix names, with the server's own name restored; a resource is read from the first
//! server that knows it (nothing is remembered between requests).

use serde_json::Value;

use crate::error::codes;
use crate::ids::{ServerId, SessionId};
use crate::modern::{answers, envelope, ModernPost, ModernWait};
use crate::modes::aggregate::{self, Part};
use crate::modes::pool::{Need, Waiter};
use crate::proxy::Proxy;
use crate::route::{split_prefixed, Target};
use crate::state::pending::ReplyTo;
use crate::time::Instant;
use crate::wire::jsonrpc::{param, params_object, ErrorObject, Response};
use crate::wire::mcp;

/// What the merged endpoint asks of every server at once.
const FAN_OUT: [&str; 5] =
    [mcp::TOOLS_LIST, mcp::PROMPTS_LIST, mcp::RESOURCES_LIST, mcp::RESOURCE_TEMPLATES_LIST, mcp::RESOURCES_READ];

impl Proxy {
    /// Serves a 2026 request on the merged endpoint.
    pub(crate) fn merged_modern(&mut self, now: Instant, mut wait: ModernWait) {
        let servers: Vec<ServerId> = wait
            .caller
            .servers
            .iter()
            .copied()
            .filter(|s| self.ctx.config.servers.get(*s).is_some_and(|e| !e.options.disabled))
            .collect();
        if servers.is_empty() {
            return self.modern_unavailable(wait, "no server is available");
        }
        let method = wait.request.method.clone();
        if method == mcp::SUBSCRIPTIONS_LISTEN {
            return self.listen_open(now, wait);
        }
        if method == mcp::SERVER_DISCOVER {
            let mut parts = Vec::new();
            for &server in &servers {
                match self.pool_result(now, server) {
                    Some(result) => parts.push(Part { server, outcome: Ok(result) }),
                    None => return self.wait_for_pool(server, Waiter::Modern(Box::new(wait))),
                }
            }
            let merged = aggregate::merge(&self.ctx.config, mcp::INITIALIZE, None, &parts);
            let response = match merged.outcome {
                Ok(result) => Response::result(wait.request.id, answers::discover(&result)),
                Err(error) => Response::error(Some(wait.request.id), error),
            };
            return self.modern_reply(wait.exchange, wait.cors, 200, response);
        }
        if FAN_OUT.contains(&method.as_str()) {
            return self.merged_fan_out(now, wait, servers);
        }
        let owner = match method.as_str() {
            mcp::TOOLS_CALL | mcp::PROMPTS_GET => self.merged_owner(&servers, &mut wait.request.params, "name"),
            mcp::COMPLETION_COMPLETE => {
                let mut reference = param(&wait.request.params, "ref").cloned();
                let owner = match reference.as_ref().and_then(|r| r.get("type")).and_then(Value::as_str) {
                    Some("ref/prompt") => self.merged_owner(&servers, &mut reference, "name"),
                    _ => (servers.len() == 1).then(|| servers[0]),
                };
                if let (Some(object), Some(reference)) = (params_object(&mut wait.request.params), reference) {
                    object.insert("ref".into(), reference);
                }
                owner
            }
            _ => None,
        };
        let Some(server) = owner else {
            let error = ErrorObject::new(codes::INVALID_PARAMS, "no server has that name");
            return self.modern_reply(wait.exchange, wait.cors, 200, Response::error(Some(wait.request.id), error));
        };
        wait.caller.target = Target::Server(server);
        self.modern_dispatch(now, wait);
    }

    /// The server a prefixed name in `holder[key]` belongs to; the server's own name is put back.
    /// Whether a merged request whose `requestState` is not the proxy's belongs to a 2026
    /// server, which judges its own states: the member its name routes to, or (for a request
    /// without a name) any member.
    pub(crate) fn merged_state_is_a_servers(&self, wait: &ModernWait) -> bool {
        let servers = &wait.caller.servers;
        match wait.request.method.as_str() {
            mcp::TOOLS_CALL | mcp::PROMPTS_GET => {
                let mut params = wait.request.params.clone();
                self.merged_owner(servers, &mut params, "name").is_some_and(|s| self.eras.server_is_modern(s))
            }
            _ => servers.iter().any(|s| self.eras.server_is_modern(*s)),
        }
    }

    fn merged_owner(&self, servers: &[ServerId], holder: &mut Option<Value>, key: &str) -> Option<ServerId> {
        let object = holder.as_mut()?.as_object_mut()?;
        let name = object.get(key)?.as_str()?.to_owned();
        if !crate::route::prefixes(&self.ctx.config) {
            return (servers.len() == 1).then(|| servers[0]);
        }
        let (server, original) = split_prefixed(&self.ctx.config, servers, &name)?;
        object.insert(key.into(), Value::String(original.to_owned()));
        Some(server)
    }

    /// Asks every server at once (a child of each pool) and answers with the merged result.
    fn merged_fan_out(&mut self, now: Instant, wait: ModernWait, servers: Vec<ServerId>) {
        let mut parts: Vec<(ServerId, Option<String>)> = servers.into_iter().map(|s| (s, None)).collect();
        if let Some(cursor) = param(&wait.request.params, "cursor").and_then(Value::as_str) {
            let Some(cursors) = aggregate::split_cursor(cursor) else {
                let error = ErrorObject::new(codes::INVALID_PARAMS, "not a cursor of this endpoint");
                return self.modern_reply(wait.exchange, wait.cors, 200, Response::error(Some(wait.request.id), error));
            };
            parts = parts
                .into_iter()
                .filter_map(|(server, _)| Some((server, Some(cursors.get(&server.to_string())?.clone()))))
                .collect();
        }
        let mut members = Vec::with_capacity(parts.len());
        for (server, cursor) in parts {
            match self.pool_member(now, server, Need::Any) {
                Some(member) => members.push((server, member, cursor)),
                None => return self.wait_for_pool(server, Waiter::Modern(Box::new(wait))),
            }
        }
        let ModernWait { exchange, cors, request, accepts_sse, .. } = wait;
        let uri = (request.method == mcp::RESOURCES_READ)
            .then(|| param(&request.params, "uri").and_then(Value::as_str).map(str::to_owned))
            .flatten();
        let modern = ModernPost { server: None, method: request.method.clone(), uri };
        self.open_modern_exchange(exchange, SessionId::unowned(), cors, accepts_sse, modern);
        let number = self.aggregates.begin(SessionId::unowned(), ReplyTo::Exchange(exchange), &request, members.len());
        for (server, member, cursor) in members {
            let mut part = request.clone();
            envelope::strip(&mut part.params);
            if let (Some(cursor), Some(object)) = (cursor, params_object(&mut part.params)) {
                object.insert("cursor".into(), Value::String(cursor));
            }
            if self.forward_to(now, &member, server, ReplyTo::Aggregate(number), part).is_none() {
                let error = ErrorObject::new(codes::UPSTREAM_CLOSED, "the server is not available");
                self.aggregate_part(number, server, Err(error));
            }
        }
    }
}
