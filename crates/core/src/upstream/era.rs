//! Which protocol era each upstream speaks, found out once per server and remembered.
//!
//! Before the first `initialize` reaches an upstream, the proxy asks it `server/discover` in
//! the 2026-07-28 envelope (unless the server's `protocol` setting, or the proxy's
//! `--upstreamProtocol`, says). A discover result that offers 2026-07-28, or an error only a
//! 2026 server gives (`-32020`, `-32021`, `-32022` naming 2026-07-28), means modern: the
//! client's `initialize` is answered from the discover result and nothing of the 2025
//! handshake is ever sent. Anything else — `-32601`, another error, a 4xx without such a body,
//! no answer within a few seconds — means legacy, and the `initialize` goes on as before. What
//! waits meanwhile is held in order. The verdict is remembered per server (a server whose
//! upstream contradicts it is asked again) and logged once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::file::UpstreamProtocol;
use crate::error::codes;
use crate::ids::{ProxyRequestId, ServerId, SessionId, UpstreamId};
use crate::io::LogLevel;
use crate::modern::envelope::{self, MODERN_VERSION};
use crate::modern::params::HeaderMap;
use crate::proxy::Proxy;
use crate::state::pending::{PendingRequest, ReplyTo};
use crate::wire::jsonrpc::{param, ErrorObject, Message, Request, RequestId};
use crate::wire::mcp;

/// The id of the probe where the proxy keeps clients' ids (at the edge).
const PROBE_ID: &str = "mcp-proxy-discover";
/// How long an upstream may take to answer the probe before it is taken for a 2025 server.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the proxy knows of an upstream's era.
#[derive(Debug)]
pub(crate) enum Era {
    /// The probe is out; what would go upstream waits here, in order.
    Probing(Vec<(ProxyRequestId, Request)>),
    /// A 2025 server: `initialize`, sessions, server→client requests.
    Legacy,
    /// A 2026-07-28 server (its `server/discover` result).
    Modern(Box<Value>),
}

/// A server's era, as last found.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Verdict {
    Legacy,
    Modern(Value),
}

/// Every upstream's era, and each server's last verdict.
#[derive(Debug, Default)]
pub(crate) struct Eras {
    by_upstream: BTreeMap<UpstreamId, Era>,
    by_server: BTreeMap<ServerId, Verdict>,
    /// Which tool arguments each 2026 server mirrors in `Mcp-Param-*` headers, learned from
    /// its `tools/list` answers: what the proxy must send with a call it builds itself.
    mirrored: BTreeMap<ServerId, HeaderMap>,
    /// The `Mcp-Param-*` headers of the 2026 client request being forwarded right now: passed
    /// on untouched, known or not (the revision asks intermediaries to).
    forwarding: Option<Vec<(String, String)>>,
    /// Servers whose shared upstream refused the 2025 handshake as a 2026 server does.
    refused_handshake: std::collections::BTreeSet<ServerId>,
}

impl Eras {
    /// Whether `upstream` speaks 2026-07-28.
    pub(crate) fn is_modern(&self, upstream: UpstreamId) -> bool {
        matches!(self.by_upstream.get(&upstream), Some(Era::Modern(_)))
    }

    /// Whether `server` was last found to speak 2026-07-28.
    pub(crate) fn server_is_modern(&self, server: ServerId) -> bool {
        matches!(self.by_server.get(&server), Some(Verdict::Modern(_)))
    }

    /// The `server/discover` result of a modern upstream.
    pub(crate) fn discover(&self, upstream: UpstreamId) -> Option<&Value> {
        match self.by_upstream.get(&upstream) {
            Some(Era::Modern(discover)) => Some(discover),
            _ => None,
        }
    }

    /// The era `server` was last found to speak, as the revision it names.
    pub(crate) fn verdict_of(&self, server: ServerId) -> Option<&'static str> {
        match self.by_server.get(&server)? {
            Verdict::Legacy => Some(mcp::LATEST_PROTOCOL_VERSION),
            Verdict::Modern(_) => Some(MODERN_VERSION),
        }
    }

    /// Learns which arguments of `server`'s tools are mirrored in headers from a page of its
    /// `tools/list`.
    pub(crate) fn learn_tools(&mut self, server: ServerId, result: &Value) {
        crate::modern::params::learn(self.mirrored.entry(server).or_default(), result);
    }

    /// Holds the `Mcp-Param-*` headers of the client request about to be forwarded.
    pub(crate) fn forwarding(&mut self, headers: Option<Vec<(String, String)>>) {
        self.forwarding = headers;
    }

    /// The `Mcp-Param-*` headers of a `tools/call` going to 2026 server `server`: the
    /// client's own when it is a 2026 client's request being forwarded, else built from the
    /// arguments the server's tool mirrors.
    pub(crate) fn param_headers(&mut self, server: Option<ServerId>, message: &Message) -> Vec<(String, String)> {
        if let Some(given) = self.forwarding.take() {
            return given;
        }
        let Message::Request(request) = message else {
            return Vec::new();
        };
        if request.method != mcp::TOOLS_CALL {
            return Vec::new();
        }
        let mirrored = server.and_then(|server| self.mirrored.get(&server));
        match (mirrored, param(&request.params, "name").and_then(Value::as_str)) {
            (Some(mirrored), Some(tool)) => crate::modern::params::mirror(mirrored, tool, &request.params),
            _ => Vec::new(),
        }
    }

    /// A server taken for a 2025 one refused `initialize` as only a 2026 server does (it was
    /// restarted as one, say): its verdict is forgotten, so its next upstream is asked again.
    /// True if it was forgotten.
    pub(crate) fn initialize_refused(&mut self, server: ServerId, error: &ErrorObject) -> bool {
        let modern_refusal = error.code == codes::UNSUPPORTED_VERSION;
        modern_refusal && matches!(self.by_server.get(&server), Some(Verdict::Legacy)) && {
            self.by_server.remove(&server);
            true
        }
    }

    /// A server's shared upstream refused `initialize` as only a 2026 server does: it is
    /// shared no more, and its sessions' upstreams ask it its revision.
    pub(crate) fn handshake_refused(&mut self, server: ServerId, error: &ErrorObject) {
        if error.code == codes::UNSUPPORTED_VERSION {
            self.refused_handshake.insert(server);
        }
    }

    /// Forgets a stopped upstream.
    pub(crate) fn forget(&mut self, upstream: UpstreamId) {
        self.by_upstream.remove(&upstream);
    }

    /// Marks `upstream` of `server` as speaking what a sealed session (or a pool child kept
    /// from an earlier request) says it speaks; the server's verdict too, if none is known.
    pub(crate) fn resume(&mut self, server: ServerId, upstream: UpstreamId, modern: Option<Value>) {
        let (era, verdict) = match modern {
            Some(discover) => (Era::Modern(Box::new(discover.clone())), Verdict::Modern(discover)),
            None => (Era::Legacy, Verdict::Legacy),
        };
        self.by_upstream.insert(upstream, era);
        self.by_server.entry(server).or_insert(verdict);
    }
}

/// The `initialize` result a 2025 client gets from a 2026 server's discover result: its
/// capabilities, identity and instructions, in the revision the client asked for.
pub(crate) fn initialize_result(discover: &Value, requested: Option<&str>) -> Value {
    let version = requested.filter(|v| mcp::is_supported_version(v)).unwrap_or(mcp::LATEST_PROTOCOL_VERSION);
    let server_info = discover
        .get("_meta")
        .and_then(|m| m.get(envelope::SERVER_INFO))
        .cloned()
        .unwrap_or_else(|| json!({"name": "unknown", "version": "0"}));
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": discover.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        "serverInfo": server_info,
    });
    if let Some(instructions) = discover.get("instructions").filter(|i| i.is_string()) {
        result["instructions"] = instructions.clone();
    }
    result
}

/// The envelope the proxy puts on what it sends a 2026 server for a 2025 client: that
/// client's capabilities and identity (from its `initialize`), and the log level it set.
pub(crate) fn envelope_for(initialize: &Option<Value>, log_level: Option<&str>) -> Value {
    let capabilities = param(initialize, "capabilities").cloned().unwrap_or_else(|| json!({}));
    let mut meta = json!({
        envelope::PROTOCOL_VERSION: MODERN_VERSION,
        envelope::CLIENT_CAPABILITIES: capabilities,
    });
    if let Some(info) = param(initialize, "clientInfo") {
        meta[envelope::CLIENT_INFO] = info.clone();
    }
    if let Some(level) = log_level {
        meta[envelope::LOG_LEVEL] = json!(level);
    }
    meta
}

/// Puts `meta`'s keys into a request's `params._meta` (what is there stays).
pub(crate) fn wrap(request: &mut Request, meta: &Value) {
    let params = request.params.get_or_insert_with(|| json!({}));
    if !params.is_object() {
        return;
    }
    let existing = params.get_mut("_meta").and_then(Value::as_object_mut);
    match existing {
        Some(existing) => {
            if let Some(meta) = meta.as_object() {
                for (key, value) in meta {
                    existing.entry(key.clone()).or_insert_with(|| value.clone());
                }
            }
        }
        None => params["_meta"] = meta.clone(),
    }
}

/// Whether an answer to the probe shows a 2026 server; its discover result, if it gave one.
fn verdict(outcome: &Result<Value, ErrorObject>) -> Option<Value> {
    match outcome {
        Ok(result) => {
            let offers = result
                .get("supportedVersions")
                .and_then(Value::as_array)
                .is_some_and(|versions| versions.iter().any(|v| v.as_str().is_some_and(envelope::is_modern)));
            offers.then(|| result.clone())
        }
        Err(error) if error.code == codes::UNSUPPORTED_VERSION => {
            // A 2026 server that serves other revisions only; this proxy speaks 2026-07-28.
            None
        }
        Err(_) => None,
    }
}

impl Proxy {
    /// What `server` is configured to speak.
    fn protocol_of(&self, server: ServerId) -> UpstreamProtocol {
        self.ctx
            .config
            .servers
            .get(server)
            .and_then(|s| s.options.protocol)
            .unwrap_or(self.ctx.config.upstream_protocol)
    }

    /// Whether `server` speaks, or may speak, 2026-07-28: told to, found to, or refused the
    /// 2025 handshake as a 2026 server does.
    pub(crate) fn may_speak_modern(&self, server: ServerId) -> bool {
        self.protocol_of(server) == UpstreamProtocol::Modern
            || self.eras.server_is_modern(server)
            || (self.protocol_of(server) == UpstreamProtocol::Auto && self.eras.refused_handshake.contains(&server))
    }

    /// Whether what `server` speaks is known: configured as 2025, or found out.
    pub(crate) fn revision_known(&self, server: ServerId) -> bool {
        self.protocol_of(server) == UpstreamProtocol::Legacy || self.eras.verdict_of(server).is_some()
    }

    /// Sends a request (its id already the proxy's) to `upstream`, as its era wants: held while
    /// the era is being found, in the 2026 envelope for a modern one, as it is for a 2025 one.
    pub(crate) fn send_request_upstream(
        &mut self,
        session_id: &SessionId,
        server: ServerId,
        upstream: UpstreamId,
        proxy_id: ProxyRequestId,
        request: Request,
    ) {
        match self.eras.by_upstream.get_mut(&upstream) {
            Some(Era::Legacy) => return self.send_legacy(server, upstream, proxy_id, request),
            Some(Era::Probing(held)) => return held.push((proxy_id, request)),
            Some(Era::Modern(_)) => {
                return self.modern_upstream_request(session_id, server, upstream, proxy_id, request)
            }
            None => {}
        }
        // The era of a new upstream is decided by its first message.
        let probe_able = request.method == mcp::INITIALIZE
            && self.http.is_streamable_or_stdio(upstream)
            && self.shared.server_of(upstream).is_none();
        let known = self.eras.by_server.get(&server).cloned();
        match (self.protocol_of(server), known, probe_able) {
            (UpstreamProtocol::Legacy, _, _) | (_, _, false) | (UpstreamProtocol::Auto, Some(Verdict::Legacy), _) => {
                self.eras.by_upstream.insert(upstream, Era::Legacy);
                self.send_legacy(server, upstream, proxy_id, request);
            }
            // A 2026 server is asked again by each new upstream: its discover result is what a
            // 2025 client's `initialize` is answered with, and a server restarted as a 2025 one
            // is found out at once.
            (_, None | Some(Verdict::Modern(_)), true) | (UpstreamProtocol::Modern, Some(Verdict::Legacy), true) => {
                self.probe(session_id, server, upstream, proxy_id, request)
            }
        }
    }

    fn send_legacy(&mut self, server: ServerId, upstream: UpstreamId, proxy_id: ProxyRequestId, request: Request) {
        if self.shared.server_of(upstream).is_some() {
            return self.send_shared(server, proxy_id, request);
        }
        self.send_upstream(upstream, &Message::Request(request));
    }

    /// Asks a new upstream `server/discover`, holding `initialize` until it answers.
    fn probe(
        &mut self,
        session_id: &SessionId,
        server: ServerId,
        upstream: UpstreamId,
        held: ProxyRequestId,
        initialize: Request,
    ) {
        let meta = envelope_for(&initialize.params, None);
        self.eras.by_upstream.insert(upstream, Era::Probing(vec![(held, initialize)]));
        let deadline =
            self.ctx.now.after(PROBE_TIMEOUT.min(Duration::from_millis(self.ctx.config.connection_timeout_ms)));
        let pending = PendingRequest {
            id: ProxyRequestId(0),
            session: session_id.clone(),
            server,
            upstream,
            reply_to: ReplyTo::Probe,
            original_id: RequestId::String(PROBE_ID.into()),
            progress: None,
            deadline,
            initialize: false,
            lists_tools: false,
        };
        let proxy_id = self.pending.insert(pending, &mut self.ctx.timers);
        let id = self.store.upstream_id(proxy_id, &RequestId::String(PROBE_ID.into()));
        let probe = Request { id, method: mcp::SERVER_DISCOVER.into(), params: Some(json!({"_meta": meta})) };
        self.send_upstream(upstream, &Message::Request(probe));
    }

    /// The probe of `upstream` was answered (or failed, or timed out).
    pub(crate) fn probed(&mut self, pending: &PendingRequest, outcome: Result<Value, ErrorObject>) {
        let upstream = pending.upstream;
        let Some(Era::Probing(held)) = self.eras.by_upstream.remove(&upstream) else {
            return;
        };
        let name = self.upstream_name(upstream);
        let found = verdict(&outcome);
        if found.is_none() && self.protocol_of(pending.server) == UpstreamProtocol::Modern {
            // Told to speak 2026-07-28 to a server that does not: no falling back.
            let why = match &outcome {
                Ok(_) => "its server/discover result offers no 2026-07-28".to_owned(),
                Err(error) => format!("server/discover failed: {} ({})", error.message, error.code),
            };
            let message = format!("{name} does not speak 2026-07-28, which its protocol setting requires: {why}");
            self.ctx.log(LogLevel::Error, message.clone());
            self.eras.by_upstream.insert(upstream, Era::Legacy);
            for (proxy_id, _) in held {
                self.answer_later(
                    proxy_id,
                    Err(ErrorObject::new(crate::error::codes::INTERNAL_ERROR, message.clone())),
                );
            }
            return;
        }
        let verdict = match &found {
            Some(discover) => Verdict::Modern(discover.clone()),
            None => Verdict::Legacy,
        };
        if self.eras.by_server.get(&pending.server) != Some(&verdict) {
            let era = if found.is_some() { "2026-07-28 (stateless)" } else { "the 2025 revisions (initialize)" };
            self.ctx.log(LogLevel::Info, format!("{name} speaks {era}"));
        }
        self.eras.by_server.insert(pending.server, verdict);
        self.eras.by_upstream.insert(
            upstream,
            match found {
                Some(discover) => Era::Modern(Box::new(discover)),
                None => Era::Legacy,
            },
        );
        for (proxy_id, request) in held {
            self.send_request_upstream(&pending.session, pending.server, upstream, proxy_id, request);
        }
    }
}
