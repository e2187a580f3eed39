//! `subscriptions/listen`: a 2026 client's one stream of list changes and resource updates,
//! fed by the children of the pool. The proxy acknowledges first with the filter it honours
//! (what was asked of what the server can tell), tags every message with the listen
//! request's id, keeps each child subscribed (`resources/subscribe`) to the URIs any listener
//! wants, and unsubscribes when the last one leaves.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::error::codes;
use crate::ids::{ExchangeId, ServerId, SessionId};
use crate::modern::envelope::SUBSCRIPTION_ID;
use crate::modern::ModernWait;
use crate::modes::pool::Waiter;
use crate::proxy::Proxy;
use crate::route::Target;
use crate::state::exchange::{Exchange, ExchangeKind};
use crate::state::pending::ReplyTo;
use crate::time::Instant;
use crate::wire::jsonrpc::{param, ErrorObject, Message, Notification, Request, RequestId, Response};
use crate::wire::mcp;
use crate::wire::sse;

/// One listen stream.
#[derive(Debug)]
pub(crate) struct Listener {
    /// The servers it hears.
    servers: Vec<ServerId>,
    /// The listen request's id (every message carries it).
    id: RequestId,
    tools: bool,
    prompts: bool,
    resources: bool,
    uris: BTreeSet<String>,
}

/// Every listen stream, and the URIs each pool child is subscribed to.
#[derive(Debug, Default)]
pub(crate) struct Listens {
    by_exchange: BTreeMap<ExchangeId, Listener>,
    subscribed: BTreeMap<SessionId, BTreeSet<String>>,
}

/// Whether a server's capabilities (from `initialize`) offer `path`.
fn offers(capabilities: &Value, section: &str, flag: &str) -> bool {
    capabilities.get(section).and_then(|s| s.get(flag)).and_then(Value::as_bool) == Some(true)
}

impl Proxy {
    /// Opens a listen stream (once every server's pool can say what it offers).
    pub(crate) fn listen_open(&mut self, now: Instant, wait: ModernWait) {
        let servers = match wait.caller.target {
            Target::Server(server) => vec![server],
            Target::Merged => wait.caller.servers.clone(),
        };
        let mut capabilities = Vec::new();
        for &server in &servers {
            match self.pool_result(now, server) {
                Some(result) => capabilities.push(result.get("capabilities").cloned().unwrap_or_else(|| json!({}))),
                None => return self.wait_for_pool(server, Waiter::Modern(Box::new(wait))),
            }
        }
        let Some(filter) = param(&wait.request.params, "notifications").and_then(Value::as_object).cloned() else {
            let error = ErrorObject::new(codes::INVALID_PARAMS, "Invalid params: 'notifications' is required");
            return self.modern_reply(wait.exchange, wait.cors, 200, Response::error(Some(wait.request.id), error));
        };
        let any = |section: &str, flag: &str| capabilities.iter().any(|c| offers(c, section, flag));
        let asked = |key: &str| filter.get(key).and_then(Value::as_bool) == Some(true);
        let uris: BTreeSet<String> = filter
            .get("resourceSubscriptions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|uri| uri.as_str().map(str::to_owned))
            .collect();
        let listener = Listener {
            servers: servers.clone(),
            id: wait.request.id.clone(),
            tools: asked("toolsListChanged") && any("tools", "listChanged"),
            prompts: asked("promptsListChanged") && any("prompts", "listChanged"),
            resources: asked("resourcesListChanged") && any("resources", "listChanged"),
            uris: if any("resources", "subscribe") { uris } else { BTreeSet::new() },
        };
        let mut honoured = Map::new();
        for (key, on) in [
            ("toolsListChanged", listener.tools),
            ("promptsListChanged", listener.prompts),
            ("resourcesListChanged", listener.resources),
        ] {
            if on {
                honoured.insert(key.into(), json!(true));
            }
        }
        if !listener.uris.is_empty() {
            honoured.insert("resourceSubscriptions".into(), json!(listener.uris));
        }
        let exchange = wait.exchange;
        self.ctx.start_stream(exchange, wait.cors.clone());
        let ack = Notification {
            method: mcp::SUBSCRIPTIONS_ACKNOWLEDGED.into(),
            params: Some(json!({"_meta": {SUBSCRIPTION_ID: wait.request.id}, "notifications": honoured})),
        };
        self.ctx.stream_data(exchange, sse::event(None, Some("message"), &Message::Notification(ack).to_bytes()));
        if honoured.is_empty() {
            // Nothing it asked for can be heard here: the stream ends at once, gracefully.
            return self.listen_close(exchange, &wait.request.id);
        }
        self.exchanges.insert(
            exchange,
            Exchange { session: SessionId::unowned(), headers: wait.cors, kind: ExchangeKind::Listen },
        );
        self.modern.listens.by_exchange.insert(exchange, listener);
        for server in servers {
            self.listen_subscribe(now, server);
            if !self.store.listens_ahead() {
                // At the edge an upstream's own stream is opened only while a client listens.
                for member in self.pool_ready_members(server) {
                    if let Some(upstream) =
                        self.sessions.get(&member).and_then(|s| s.members.first()).map(|m| m.upstream)
                    {
                        self.http.listen(&mut self.ctx, upstream);
                    }
                }
            }
        }
    }

    /// Ends a listen stream with its result (the graceful end).
    fn listen_close(&mut self, exchange: ExchangeId, id: &RequestId) {
        let result = json!({"resultType": "complete", "_meta": {SUBSCRIPTION_ID: id}});
        let message = Message::Response(Response::result(id.clone(), result));
        self.ctx.stream_data(exchange, sse::event(None, Some("message"), &message.to_bytes()));
        self.ctx.stream_end(exchange);
    }

    /// Ends every listen stream gracefully (the proxy stops).
    pub(crate) fn listen_close_all(&mut self) {
        let open: Vec<(ExchangeId, RequestId)> =
            self.modern.listens.by_exchange.iter().map(|(exchange, l)| (*exchange, l.id.clone())).collect();
        for (exchange, id) in open {
            self.modern.listens.by_exchange.remove(&exchange);
            self.exchanges.remove(&exchange);
            self.listen_close(exchange, &id);
        }
    }

    /// A listen stream's client went away.
    pub(crate) fn listen_gone(&mut self, exchange: ExchangeId) {
        if let Some(listener) = self.modern.listens.by_exchange.remove(&exchange) {
            let now = self.ctx.now;
            for server in listener.servers {
                self.listen_subscribe(now, server);
            }
        }
    }

    /// Brings every ready child of `server`'s pool to exactly the URIs its listeners want.
    pub(crate) fn listen_subscribe(&mut self, now: Instant, server: ServerId) {
        let wanted: BTreeSet<String> = self
            .modern
            .listens
            .by_exchange
            .values()
            .filter(|l| l.servers.contains(&server))
            .flat_map(|l| l.uris.iter().cloned())
            .collect();
        for member in self.pool_ready_members(server) {
            let has = self.modern.listens.subscribed.get(&member).cloned().unwrap_or_default();
            for uri in wanted.difference(&has) {
                self.listen_ask(now, &member, server, mcp::RESOURCES_SUBSCRIBE, uri);
            }
            for uri in has.difference(&wanted) {
                self.listen_ask(now, &member, server, mcp::RESOURCES_UNSUBSCRIBE, uri);
            }
            if wanted.is_empty() {
                self.modern.listens.subscribed.remove(&member);
            } else {
                self.modern.listens.subscribed.insert(member, wanted.clone());
            }
        }
    }

    fn listen_ask(&mut self, now: Instant, member: &SessionId, server: ServerId, method: &str, uri: &str) {
        let id = RequestId::String(format!("mcp-proxy-{method}"));
        let request = Request { id, method: method.into(), params: Some(json!({"uri": uri})) };
        self.forward_to(now, member, server, ReplyTo::Discard, request);
    }

    /// A 2026 server's listen stream event, tagged with the id the proxy gave the client's
    /// listen request: retagged with the client's id and sent on its stream. False if it is
    /// no such event.
    pub(crate) fn relay_listen_event(&mut self, member: &SessionId, notification: &Notification) -> bool {
        let tag = notification.params.as_ref().and_then(|p| p.get("_meta")).and_then(|m| m.get(SUBSCRIPTION_ID));
        let proxy_id = if self.store.keeps_client_ids() {
            // At the edge the listen went upstream under the client's own id.
            let upstream = self.sessions.get(member).and_then(|s| s.members.first()).map(|m| m.upstream);
            let id = tag.and_then(|tag| serde_json::from_value::<RequestId>(tag.clone()).ok());
            upstream.zip(id).and_then(|(upstream, id)| self.pending.find(upstream, &id))
        } else {
            tag.and_then(Value::as_i64).map(crate::ids::ProxyRequestId)
        };
        let Some(pending) = proxy_id.and_then(|id| self.pending.get(id)) else {
            return false;
        };
        let (crate::state::pending::ReplyTo::Exchange(exchange), client_id) =
            (pending.reply_to, pending.original_id.clone())
        else {
            return false;
        };
        let mut relayed = notification.clone();
        if let Some(meta) = relayed.params.as_mut().and_then(|p| p.get_mut("_meta")).and_then(Value::as_object_mut) {
            meta.insert(SUBSCRIPTION_ID.into(), json!(client_id));
        }
        self.send_event(exchange, &Message::Notification(relayed));
        true
    }

    /// A pool child ended: its subscriptions went with it.
    pub(crate) fn listen_child_gone(&mut self, member: &SessionId) {
        self.modern.listens.subscribed.remove(member);
    }

    /// A pool child of `server` sent a notification no request asked for: listeners that
    /// want it hear it.
    pub(crate) fn listen_notify(&mut self, server: ServerId, notification: &Notification) {
        let uri = param(&notification.params, "uri").and_then(Value::as_str);
        let wanted = |listener: &Listener| match notification.method.as_str() {
            mcp::TOOLS_LIST_CHANGED => listener.tools,
            mcp::PROMPTS_LIST_CHANGED => listener.prompts,
            mcp::RESOURCES_LIST_CHANGED => listener.resources,
            mcp::RESOURCES_UPDATED => uri.is_some_and(|uri| listener.uris.contains(uri)),
            _ => false,
        };
        let targets: Vec<(ExchangeId, RequestId)> = self
            .modern
            .listens
            .by_exchange
            .iter()
            .filter(|(_, l)| l.servers.contains(&server) && wanted(l))
            .map(|(exchange, l)| (*exchange, l.id.clone()))
            .collect();
        for (exchange, id) in targets {
            let mut params = match &notification.params {
                Some(Value::Object(params)) => params.clone(),
                _ => Map::new(),
            };
            let meta = params.entry("_meta").or_insert_with(|| json!({}));
            if let Some(meta) = meta.as_object_mut() {
                meta.insert(SUBSCRIPTION_ID.into(), json!(id));
            }
            let tagged = Notification { method: notification.method.clone(), params: Some(Value::Object(params)) };
            self.ctx
                .stream_data(exchange, sse::event(None, Some("message"), &Message::Notification(tagged).to_bytes()));
        }
    }
}
