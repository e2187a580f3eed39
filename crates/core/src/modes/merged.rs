//! The merged endpoint: one client session over every server of the aggregator.
//!
//! Requests are dispatched by method: listing methods and `initialize` fan out to every
//! server still in the session and their answers are merged; calls are routed to the server
//! that owns the name (by prefix) or the resource URI, with the server's own name restored;
//! `ping` is answered by the proxy. A server that fails is left out (fail open) and the
//! session goes on with the others.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::error::{codes, RequestError};
use crate::ids::{ProxyRequestId, ServerId, SessionId, UpstreamId};
use crate::io::{LogLevel, UpstreamEnd};
use crate::modes::aggregate::{self, Part, FAN_OUT};
use crate::proxy::Proxy;
use crate::route::split_prefixed;
use crate::state::pending::{PendingRequest, ReplyTo};
use crate::time::Instant;
use crate::wire::jsonrpc::{param, params_object, ErrorObject, Request, RequestId, Response};
use crate::wire::mcp;

/// A request fanned out to several servers, waiting for their parts.
#[derive(Debug)]
pub(crate) struct Aggregate {
    session: SessionId,
    reply_to: ReplyTo,
    original_id: RequestId,
    method: String,
    requested_version: Option<String>,
    outstanding: usize,
    parts: Vec<Part>,
}

/// Fanned-out requests by number.
#[derive(Debug, Default)]
pub(crate) struct Aggregates {
    open: BTreeMap<u64, Aggregate>,
    next: u64,
}

impl Aggregates {
    /// Opens a fanned-out request of `parts` parts, answered to `reply_to` when all are in.
    pub(crate) fn begin(&mut self, session: SessionId, reply_to: ReplyTo, request: &Request, parts: usize) -> u64 {
        self.next += 1;
        let aggregate = Aggregate {
            session,
            reply_to,
            original_id: request.id.clone(),
            method: request.method.clone(),
            requested_version: None,
            outstanding: parts,
            parts: Vec::new(),
        };
        self.open.insert(self.next, aggregate);
        self.next
    }
}

impl Proxy {
    /// Sends a client's request on the merged endpoint where it belongs.
    pub(crate) fn dispatch_merged(
        &mut self,
        now: Instant,
        session_id: &SessionId,
        reply_to: ReplyTo,
        mut request: Request,
    ) {
        let Some(session) = self.sessions.get(session_id) else {
            return;
        };
        let live = session.live_servers();
        let method = request.method.clone();
        if FAN_OUT.contains(&method.as_str()) {
            return self.fan_out(now, session_id, reply_to, request, live);
        }
        let target = match method.as_str() {
            mcp::PING => return self.answer_locally(session_id, reply_to, &request, Ok(json!({}))),
            mcp::TOOLS_CALL | mcp::PROMPTS_GET => self.owner_by_name(session_id, &live, &mut request.params, "name"),
            mcp::RESOURCES_READ | mcp::RESOURCES_SUBSCRIBE | mcp::RESOURCES_UNSUBSCRIBE => {
                let uri = param(&request.params, "uri").and_then(Value::as_str).unwrap_or_default().to_owned();
                let owner = self.owner_by_uri(session_id, &live, &uri);
                if owner.is_none() && !self.store.remembers() && live.len() > 1 {
                    // At the edge no list is remembered: ask every server, the first that
                    // knows the resource answers (see `aggregate::merge`).
                    return self.fan_out(now, session_id, reply_to, request, live);
                }
                owner
            }
            mcp::COMPLETION_COMPLETE => {
                let mut reference = param(&request.params, "ref").cloned();
                let owner = match reference.as_ref().and_then(|r| r.get("type")).and_then(Value::as_str) {
                    Some("ref/prompt") => self.owner_by_name(session_id, &live, &mut reference, "name"),
                    _ => {
                        let uri =
                            reference.as_ref().and_then(|r| r.get("uri")).and_then(Value::as_str).unwrap_or_default();
                        self.owner_by_uri(session_id, &live, uri)
                    }
                };
                if let (Some(object), Some(reference)) = (params_object(&mut request.params), reference) {
                    object.insert("ref".into(), reference);
                }
                owner
            }
            _ if live.len() == 1 => live.first().copied(),
            _ => None,
        };
        let Some(server) = target else {
            let error = match method.as_str() {
                mcp::TOOLS_CALL | mcp::PROMPTS_GET | mcp::COMPLETION_COMPLETE => {
                    ErrorObject::new(codes::INVALID_PARAMS, "no server has that name")
                }
                mcp::RESOURCES_READ | mcp::RESOURCES_SUBSCRIBE | mcp::RESOURCES_UNSUBSCRIBE => {
                    ErrorObject::new(codes::RESOURCE_NOT_FOUND, "no server lists that resource")
                }
                _ => ErrorObject::new(
                    codes::METHOD_NOT_FOUND,
                    format!("{method} is not available on the merged endpoint"),
                ),
            };
            return self.answer_locally(session_id, reply_to, &request, Err(error));
        };
        // The server's tool filter is applied where every call goes through (`forward_to`).
        self.forward_to(now, session_id, server, reply_to, request);
    }

    /// Finds the server of a merged name in `holder[key]` and puts the server's own name back.
    fn owner_by_name(
        &self,
        session_id: &SessionId,
        live: &[ServerId],
        holder: &mut Option<Value>,
        key: &str,
    ) -> Option<ServerId> {
        let object = holder.as_mut()?.as_object_mut()?;
        let name = object.get(key)?.as_str()?.to_owned();
        if !crate::route::prefixes(&self.ctx.config) {
            // Unprefixed names belong to whichever server listed them.
            let listed = self.sessions.get(session_id)?.name_owners.get(&name).copied().filter(|s| live.contains(s));
            return listed.or_else(|| (live.len() == 1).then(|| live[0]));
        }
        let (server, original) = split_prefixed(&self.ctx.config, live, &name)?;
        object.insert(key.into(), Value::String(original.to_owned()));
        Some(server)
    }

    /// Finds the server of a resource URI: the one that listed it, or whose template's fixed
    /// part starts it, or the only server left.
    fn owner_by_uri(&self, session_id: &SessionId, live: &[ServerId], uri: &str) -> Option<ServerId> {
        let session = self.sessions.get(session_id)?;
        let listed = session.resource_owners.get(uri).copied().or_else(|| {
            session
                .resource_owners
                .iter()
                .filter(|(template, _)| template.contains('{'))
                .filter_map(|(template, server)| {
                    let fixed = template.split('{').next().unwrap_or("");
                    (!fixed.is_empty() && uri.starts_with(fixed)).then_some((fixed.len(), *server))
                })
                .max_by_key(|(length, _)| *length)
                .map(|(_, server)| server)
        });
        listed.filter(|server| live.contains(server)).or_else(|| (live.len() == 1).then(|| live[0]))
    }

    fn fan_out(
        &mut self,
        now: Instant,
        session_id: &SessionId,
        reply_to: ReplyTo,
        request: Request,
        live: Vec<ServerId>,
    ) {
        let mut servers: Vec<(ServerId, Option<String>)> = live.into_iter().map(|s| (s, None)).collect();
        if let Some(cursor) = param(&request.params, "cursor").and_then(Value::as_str) {
            let Some(cursors) = aggregate::split_cursor(cursor) else {
                let error = ErrorObject::new(codes::INVALID_PARAMS, "not a cursor of this endpoint");
                return self.answer_locally(session_id, reply_to, &request, Err(error));
            };
            servers = servers
                .into_iter()
                .filter_map(|(server, _)| {
                    let own = cursors.get(&server.to_string())?;
                    Some((server, Some(own.clone())))
                })
                .collect();
        }
        if servers.is_empty() {
            let error = ErrorObject::new(codes::UPSTREAM_CLOSED, "no server is available");
            return self.answer_locally(session_id, reply_to, &request, Err(error));
        }
        self.aggregates.next += 1;
        let number = self.aggregates.next;
        let requested_version = param(&request.params, "protocolVersion").and_then(Value::as_str).map(str::to_owned);
        let aggregate = Aggregate {
            session: session_id.clone(),
            reply_to,
            original_id: request.id.clone(),
            method: request.method.clone(),
            requested_version,
            outstanding: servers.len(),
            parts: Vec::new(),
        };
        self.aggregates.open.insert(number, aggregate);
        for (server, cursor) in servers {
            let mut part = request.clone();
            if let (Some(cursor), Some(object)) = (cursor, params_object(&mut part.params)) {
                object.insert("cursor".into(), Value::String(cursor));
            }
            self.forward_to(now, session_id, server, ReplyTo::Aggregate(number), part);
        }
    }

    /// One server answered its part of a fanned-out request.
    pub(crate) fn aggregate_part(&mut self, number: u64, server: ServerId, outcome: Result<Value, ErrorObject>) {
        let Some(aggregate) = self.aggregates.open.get_mut(&number) else {
            return;
        };
        aggregate.parts.push(Part { server, outcome });
        aggregate.outstanding = aggregate.outstanding.saturating_sub(1);
        if aggregate.outstanding > 0 {
            return;
        }
        let Some(aggregate) = self.aggregates.open.remove(&number) else {
            return;
        };
        let merged = aggregate::merge(
            &self.ctx.config,
            &aggregate.method,
            aggregate.requested_version.as_deref(),
            &aggregate.parts,
        );
        let initialize = aggregate.method == mcp::INITIALIZE;
        if let Some(session) = self.sessions.get_mut(&aggregate.session) {
            session.resource_owners.extend(merged.owners);
            session.name_owners.extend(merged.names);
        }
        if initialize {
            // Servers that refused initialize are left out of this session.
            let refused: Vec<ServerId> =
                aggregate.parts.iter().filter(|p| p.outcome.is_err()).map(|p| p.server).collect();
            for server in refused {
                self.leave_out(&aggregate.session, server, "it did not initialize");
            }
        }
        let pending = PendingRequest {
            id: ProxyRequestId(0),
            session: aggregate.session,
            server: ServerId(0),
            upstream: UpstreamId(0),
            reply_to: aggregate.reply_to,
            original_id: aggregate.original_id.clone(),
            progress: None,
            deadline: self.ctx.now,
            initialize,
            lists_tools: false,
        };
        self.deliver_response(&pending, Response { id: Some(aggregate.original_id), outcome: merged.outcome });
    }

    /// Answers a request without asking any server (once the exchange exists).
    pub(crate) fn answer_locally(
        &mut self,
        session_id: &SessionId,
        reply_to: ReplyTo,
        request: &Request,
        outcome: Result<Value, ErrorObject>,
    ) {
        let pending = PendingRequest {
            id: ProxyRequestId(0),
            session: session_id.clone(),
            server: ServerId(0),
            upstream: UpstreamId(0),
            reply_to,
            original_id: request.id.clone(),
            progress: None,
            deadline: self.ctx.now,
            initialize: false,
            lists_tools: false,
        };
        let proxy_id = self.pending.insert(pending, &mut self.ctx.timers);
        if let Some(session) = self.sessions.get_mut(session_id) {
            session.in_flight.insert(proxy_id, request.id.clone());
        }
        self.answer_later(proxy_id, outcome);
    }

    /// A server of a merged session exited: it is left out; the session ends with the last one.
    pub(crate) fn merged_member_closed(&mut self, session_id: &SessionId, upstream: UpstreamId, reason: UpstreamEnd) {
        let Some(server) = self.sessions.get(session_id).and_then(|s| s.server_of(upstream)) else {
            return;
        };
        let in_flight: Vec<ProxyRequestId> = self
            .sessions
            .get(session_id)
            .map(|s| {
                s.in_flight
                    .keys()
                    .copied()
                    .filter(|id| self.pending.get(*id).is_some_and(|p| p.upstream == upstream))
                    .collect()
            })
            .unwrap_or_default();
        for proxy_id in in_flight {
            if let Some(pending) = self.take_pending(proxy_id) {
                let error = RequestError::UpstreamClosed(reason.clone()).to_error_object();
                self.deliver_response(&pending, Response::error(Some(pending.original_id.clone()), error));
            }
        }
        self.leave_out(session_id, server, &format!("it exited: {reason}"));
    }

    /// Takes `server` out of a merged session (its child stops); ends the session if none is left.
    pub(crate) fn leave_out(&mut self, session_id: &SessionId, server: ServerId, why: &str) {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        let Some(member) = session.members.iter_mut().find(|m| m.server == server && !m.failed) else {
            return;
        };
        member.failed = true;
        let upstream = member.upstream;
        let none_left = session.members.iter().all(|m| m.failed);
        self.release_upstream(session_id, upstream);
        let name = self.ctx.config.servers.get(server).map(|s| s.display_name().to_owned()).unwrap_or_default();
        self.ctx.log(LogLevel::Warn, format!("session {session_id}: left out {name} ({why})"));
        if none_left {
            return self.end_session(session_id, &RequestError::SessionEnded, "no server is left");
        }
        self.schedule_rejoin(session_id, server);
    }

    /// Brings a left-out server back after a backoff that grows with each try.
    fn schedule_rejoin(&mut self, session_id: &SessionId, server: ServerId) {
        if self.ctx.config.servers.get(server).is_none_or(|s| s.options.disabled) {
            return;
        }
        let Some(member) =
            self.sessions.get_mut(session_id).and_then(|s| s.members.iter_mut().find(|m| m.server == server))
        else {
            return;
        };
        let delay = member.backoff.failed(self.ctx.now);
        self.ctx.timers.set(self.ctx.now.after(delay), crate::state::timers::Timer::Rejoin(session_id.clone(), server));
    }

    /// Starts a fresh upstream for a left-out server and initializes it like the client did.
    pub(crate) fn rejoin(&mut self, now: Instant, session_id: &SessionId, server: ServerId) {
        if self.ctx.config.servers.get(server).is_none_or(|s| s.options.disabled) {
            return;
        }
        let Some(session) = self.sessions.get(session_id) else {
            return;
        };
        if !session.members.iter().any(|m| m.server == server && m.failed) {
            return;
        }
        let params = session.initialize_params.clone();
        let Some(upstream) = self.upstream_for(session_id, server) else {
            return;
        };
        if let Some(member) =
            self.sessions.get_mut(session_id).and_then(|s| s.members.iter_mut().find(|m| m.server == server))
        {
            member.upstream = upstream;
            member.backoff.started(now);
        }
        let request = mcp::initialize_request(RequestId::Number(0), params);
        self.forward_to(now, session_id, server, ReplyTo::Rejoin, request);
    }

    /// The proxy's `initialize` of a returning server was answered.
    pub(crate) fn rejoined(&mut self, session_id: &SessionId, server: ServerId, outcome: Result<Value, ErrorObject>) {
        let name = self.ctx.config.servers.get(server).map(|s| s.display_name().to_owned()).unwrap_or_default();
        let Some(member) =
            self.sessions.get_mut(session_id).and_then(|s| s.members.iter_mut().find(|m| m.server == server))
        else {
            return;
        };
        let upstream = member.upstream;
        if let Err(error) = outcome {
            self.release_upstream(session_id, upstream);
            self.ctx.log(LogLevel::Warn, format!("session {session_id}: {name} is still down ({})", error.message));
            return self.schedule_rejoin(session_id, server);
        }
        member.failed = false;
        if self.shared.server_of(upstream).is_none() {
            self.send_to_upstream(upstream, &crate::wire::mcp::initialized());
        }
        self.ctx.log(LogLevel::Info, format!("session {session_id}: {name} is back"));
        // The client's lists changed: tell it.
        for method in [mcp::TOOLS_LIST_CHANGED, mcp::PROMPTS_LIST_CHANGED, mcp::RESOURCES_LIST_CHANGED] {
            let notice = crate::wire::jsonrpc::Message::Notification(crate::wire::jsonrpc::Notification {
                method: method.into(),
                params: None,
            });
            self.route_to_session(session_id, &notice);
        }
    }
}
