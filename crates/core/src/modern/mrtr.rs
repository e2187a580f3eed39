//! Multi round-trip requests, bridged: a 2025 child asks its client something (sampling,
//! elicitation, roots) while it serves a 2026 client's tool call, prompt or resource read; the
//! 2026 revision has no server→client requests, so the proxy answers the client
//! `input_required` with the child's questions and a sealed `requestState`, keeps the child's
//! call waiting, and when the client retries with `inputResponses` hands the answers to the
//! child, which carries on — over as many rounds as the child asks.
//!
//! The state names the waiting call and is bound to the client's credential, the method and
//! name, and a deadline, sealed (ChaCha20-Poly1305) so it cannot be forged, moved to another
//! call or reused by another client. It also carries every answer given so far: if the
//! waiting call is gone (the proxy restarted, the retry reached another replica with the same
//! key, the call timed out), the retry runs the call again and the child's questions are
//! answered from those answers where they match, so the client only sees new questions.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::error::codes;
use crate::ids::{ProxyRequestId, SessionId, UpstreamId};
use crate::io::LogLevel;
use crate::modern::capabilities::{merge, missing_capability};
use crate::modern::{envelope, ModernPost, ModernWait};
use crate::modes::edge::Sealer;
use crate::proxy::Proxy;
use crate::state::pending::ReplyTo;
use crate::state::timers::Timer;
use crate::time::Instant;
use crate::wire::jsonrpc::{param, params_object, ErrorObject, Message, Request, RequestId, Response};
use crate::wire::mcp;

/// Binds a sealed state to its use.
const PURPOSE: &[u8] = b"mcp-proxy input-required state v1\0";
/// Where a 2025 server may name its question (`_meta`, a string): the client sees that key in
/// `inputRequests` and answers under it, as a 2026 server's own keys would be. Without it the
/// proxy numbers the questions (`input-1`, ...).
pub(crate) const KEY_HINT: &str = "mcp-proxy/inputKey";
/// A sealed state is never larger than this (a client echoes it byte for byte).
const MAX_STATE: usize = 64 * 1024;
/// The answers carried in a state for a re-run, at most (in bytes of JSON).
const MAX_CARRIED: usize = 32 * 1024;
/// How long the proxy waits for more questions before it answers `input_required`: a child
/// that asks several things at once gets them asked in one round.
const GATHER: Duration = Duration::from_millis(20);
/// Waiting calls kept at most; the oldest goes first.
const MAX_PARKED: usize = 4096;

/// One question of a child.
#[derive(Debug)]
struct Ask {
    /// The child's id for it.
    id: RequestId,
    method: String,
    params: Option<Value>,
    digest: String,
    /// Asked of the client already (in an `input_required` it was sent).
    sent: bool,
}

/// A call waiting for its client's input.
#[derive(Debug)]
struct Parked {
    proxy_id: ProxyRequestId,
    member: SessionId,
    upstream: UpstreamId,
    round: u64,
    next_key: u64,
    /// Questions not answered yet, by key.
    asks: BTreeMap<String, Ask>,
    /// The child answered the call while the client was away.
    answer: Option<Response>,
    /// Every answer given so far, by the question's digest (for a re-run).
    answered: BTreeMap<String, Value>,
    /// A gather timer is armed.
    gathering: bool,
}

/// Answers to give a call's questions before its client is asked: from earlier rounds by the
/// question's digest (a call run again), or by the key a server names its question with (a
/// client that sent its input with the first request).
#[derive(Clone, Debug, Default)]
pub(crate) struct Replay {
    answers: BTreeMap<String, Value>,
    by_key: BTreeMap<String, Value>,
}

impl Replay {
    /// A first request's `inputResponses`, answered where the server names its question so.
    pub(crate) fn from_first_request(params: &Option<Value>) -> Option<Replay> {
        let responses = param(params, "inputResponses")?.as_object()?;
        let by_key: BTreeMap<String, Value> =
            responses.iter().filter(|(_, answer)| answer.is_object()).map(|(k, a)| (k.clone(), a.clone())).collect();
        (!by_key.is_empty()).then(|| Replay { answers: BTreeMap::new(), by_key })
    }

    fn answer(&self, digest: &str, params: &Option<Value>) -> Option<Value> {
        if let Some(answer) = self.answers.get(digest) {
            return Some(answer.clone());
        }
        let key = param(params, "_meta")?.get(KEY_HINT)?.as_str()?;
        self.by_key.get(key).cloned()
    }
}

/// Every waiting call and the key that seals their states.
#[derive(Debug)]
pub(crate) struct Mrtr {
    sealer: Sealer,
    parked: BTreeMap<u64, Parked>,
    by_request: BTreeMap<ProxyRequestId, u64>,
    replays: BTreeMap<ProxyRequestId, Replay>,
    next: u64,
}

impl Mrtr {
    /// No call waits yet; states are sealed with `key`.
    pub(crate) fn new(key: &[u8]) -> Mrtr {
        Mrtr {
            sealer: Sealer::new(key, u64::MAX),
            parked: BTreeMap::new(),
            by_request: BTreeMap::new(),
            replays: BTreeMap::new(),
            next: 0,
        }
    }

    /// A re-run call is answered from `replay` where its questions match.
    pub(crate) fn replaying(&mut self, proxy_id: ProxyRequestId, replay: Replay) {
        self.replays.insert(proxy_id, replay);
    }

    /// A call is over: nothing more is replayed for it. A waiting call that holds its
    /// answer stays until its client comes back (or it expires).
    pub(crate) fn forget(&mut self, proxy_id: ProxyRequestId) {
        self.replays.remove(&proxy_id);
        if let Some(number) = self.by_request.get(&proxy_id).copied() {
            if self.parked.get(&number).is_none_or(|p| p.answer.is_none()) {
                self.parked.remove(&number);
                self.by_request.remove(&proxy_id);
            }
        }
    }

    fn parked_of(&mut self, proxy_id: ProxyRequestId) -> Option<&mut Parked> {
        let number = self.by_request.get(&proxy_id)?;
        self.parked.get_mut(number)
    }
}

/// The digest that recognizes a question again when a call runs again.
fn digest(method: &str, params: &Option<Value>) -> String {
    let canonical = json!({"method": method, "params": params}).to_string();
    let hash = Sha256::digest(canonical.as_bytes());
    hash.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

impl Proxy {
    /// A pool child serving 2026 request `proxy_id` alone asked its client something.
    pub(crate) fn mrtr_ask(
        &mut self,
        member: &SessionId,
        upstream: UpstreamId,
        proxy_id: ProxyRequestId,
        request: Request,
    ) {
        const ASKABLE: [&str; 3] = [mcp::SAMPLING_CREATE_MESSAGE, mcp::ELICITATION_CREATE, mcp::ROOTS_LIST];
        let Some(in_flight) = self.modern.in_flight.get(&proxy_id) else {
            let answer = mcp::answer_unreachable(&request, "its client's request is over");
            return self.send_upstream(upstream, &Message::Response(answer));
        };
        if !ASKABLE.contains(&request.method.as_str()) {
            let answer = mcp::answer_unreachable(&request, "a 2026-07-28 client cannot be asked that");
            return self.send_upstream(upstream, &Message::Response(answer));
        }
        if let Some(required) = missing_capability(&request, &in_flight.envelope.capabilities) {
            return self.mrtr_refuse(upstream, proxy_id, request, required);
        }
        let digest = digest(&request.method, &request.params);
        if let Some(answer) = self.modern.mrtr.replays.get(&proxy_id).and_then(|r| r.answer(&digest, &request.params)) {
            // Answered already: in an earlier round, or with the request itself.
            return self.send_upstream(upstream, &Message::Response(Response::result(request.id, answer)));
        }
        let client_waits = in_flight.exchange.is_some();
        let number = match self.modern.mrtr.by_request.get(&proxy_id) {
            Some(number) => *number,
            None => self.park(member, upstream, proxy_id),
        };
        let Some(parked) = self.modern.mrtr.parked.get_mut(&number) else {
            return;
        };
        let mut params = request.params;
        let hint = take_key_hint(&mut params).filter(|key| !parked.asks.contains_key(key) && key.len() <= 128);
        let key = hint.unwrap_or_else(|| {
            parked.next_key += 1;
            format!("input-{}", parked.next_key)
        });
        parked.asks.insert(key, Ask { id: request.id, method: request.method, params, digest, sent: false });
        if client_waits && !parked.gathering {
            parked.gathering = true;
            self.ctx.timers.set(self.ctx.now.after(GATHER), Timer::InputRequired(proxy_id));
        }
    }

    fn park(&mut self, member: &SessionId, upstream: UpstreamId, proxy_id: ProxyRequestId) -> u64 {
        let mrtr = &mut self.modern.mrtr;
        if mrtr.parked.len() >= MAX_PARKED {
            if let Some((_, oldest)) = mrtr.parked.pop_first() {
                mrtr.by_request.remove(&oldest.proxy_id);
            }
        }
        mrtr.next += 1;
        let number = mrtr.next;
        let answered = mrtr.replays.get(&proxy_id).map(|r| r.answers.clone()).unwrap_or_default();
        mrtr.parked.insert(
            number,
            Parked {
                proxy_id,
                member: member.clone(),
                upstream,
                round: 0,
                next_key: 0,
                asks: BTreeMap::new(),
                answer: None,
                answered,
                gathering: false,
            },
        );
        mrtr.by_request.insert(proxy_id, number);
        number
    }

    /// The client did not declare what the child asks for: it is never asked. The child hears
    /// "no", as a 2025 client without the capability would answer, and may do without; if the
    /// call then fails, the client learns what it lacked (see [`lacking`]).
    fn mrtr_refuse(&mut self, upstream: UpstreamId, proxy_id: ProxyRequestId, request: Request, required: Value) {
        let to_child = ErrorObject::new(
            codes::METHOD_NOT_FOUND,
            format!("{} is not available: the client did not declare that capability", request.method),
        );
        self.send_upstream(upstream, &Message::Response(Response::error(Some(request.id), to_child)));
        if let Some(in_flight) = self.modern.in_flight.get_mut(&proxy_id) {
            let missing = in_flight.missing.get_or_insert_with(|| json!({}));
            merge(missing, &required);
        }
    }

    /// The gather time of a call's questions is over: ask the client.
    pub(crate) fn mrtr_flush(&mut self, proxy_id: ProxyRequestId) {
        if let Some(parked) = self.modern.mrtr.parked_of(proxy_id) {
            parked.gathering = false;
        }
        self.ask_client(proxy_id);
    }

    /// Answers the waiting client `input_required` with every question not answered yet.
    fn ask_client(&mut self, proxy_id: ProxyRequestId) {
        let Some(in_flight) = self.modern.in_flight.get(&proxy_id) else {
            return;
        };
        let (Some(exchange), method, name) = (in_flight.exchange, in_flight.method.clone(), in_flight.name.clone())
        else {
            return;
        };
        let endpoint = endpoint_tag(in_flight.endpoint);
        let credential = in_flight.credential;
        let Some(number) = self.modern.mrtr.by_request.get(&proxy_id).copied() else {
            return;
        };
        let expires = self.ctx.wall.0.saturating_add(self.ctx.config.request_timeout_ms / 1000 + 1);
        let Some(parked) = self.modern.mrtr.parked.get_mut(&number) else {
            return;
        };
        if parked.asks.is_empty() {
            return;
        }
        parked.round += 1;
        let mut requests = Map::new();
        let mut keys = Map::new();
        for (key, ask) in parked.asks.iter_mut() {
            ask.sent = true;
            let mut request = json!({"method": ask.method});
            if let Some(params) = &ask.params {
                request["params"] = params.clone();
            }
            requests.insert(key.clone(), request);
            keys.insert(key.clone(), json!(ask.digest));
        }
        let mut carried = Map::new();
        let mut size = 0;
        for (digest, answer) in parked.answered.iter().rev() {
            size += digest.len() + answer.to_string().len();
            if size > MAX_CARRIED {
                break;
            }
            carried.insert(digest.clone(), answer.clone());
        }
        let state = json!({
            "p": number, "r": parked.round, "t": endpoint, "m": method, "n": name,
            "k": keys, "a": carried, "x": parked.next_key, "e": expires,
        });
        let sealed = self.modern.mrtr.sealer.seal_json(PURPOSE, &state, &credential, MAX_STATE, &mut self.ctx.rng);
        let mut result = json!({"resultType": "input_required", "inputRequests": requests});
        match sealed {
            Some(sealed) => result["requestState"] = json!(sealed),
            None => self
                .ctx
                .log(LogLevel::Warn, "an input_required state was too large to seal; a retry re-runs the call".into()),
        }
        let id = self.modern_client_id(proxy_id);
        if let Some(in_flight) = self.modern.in_flight.get_mut(&proxy_id) {
            in_flight.exchange = None;
        }
        if let Some(pending) = self.pending.get_mut(proxy_id) {
            pending.reply_to = ReplyTo::Parked;
        }
        if let Some(id) = id {
            self.answer_post(exchange, Message::Response(Response::result(id, result)));
        }
        if !self.store.remembers() {
            // At the edge nothing outlives the request: the call stops here, and the retry
            // runs it again, answering from the state.
            if let Some(pending) = self.take_pending(proxy_id) {
                self.modern_done(proxy_id, &pending.session);
                self.mrtr_expired(number);
                let wire_id = self.store.upstream_id(proxy_id, &pending.original_id);
                let params = json!({"requestId": wire_id, "reason": "asked its client for input"});
                let cancel = Message::Notification(crate::wire::jsonrpc::Notification {
                    method: mcp::CANCELLED.into(),
                    params: Some(params),
                });
                self.send_upstream(pending.upstream, &cancel);
            }
        }
    }

    /// Of `candidates`, the request that waits longest for its client's input (its client is
    /// away between rounds), if any.
    pub(crate) fn modern_oldest_parked(&self, candidates: &[ProxyRequestId]) -> Option<ProxyRequestId> {
        let mrtr = &self.modern.mrtr;
        candidates
            .iter()
            .filter(|id| self.modern.in_flight.get(id).is_some_and(|f| f.exchange.is_none()))
            .filter_map(|id| mrtr.by_request.get(id).map(|number| (*number, *id)))
            .min()
            .map(|(_, id)| id)
    }

    /// Ends a call that waits for its client's input, to free its child: the retry will find
    /// it gone and run it again from its state.
    pub(crate) fn mrtr_evict(&mut self, proxy_id: ProxyRequestId) {
        let Some(number) = self.modern.mrtr.by_request.get(&proxy_id).copied() else {
            return;
        };
        if let Some(pending) = self.take_pending(proxy_id) {
            self.modern_done(proxy_id, &pending.session);
            let wire_id = self.store.upstream_id(proxy_id, &pending.original_id);
            let params = json!({"requestId": wire_id, "reason": "its client did not come back in time"});
            let cancel = Message::Notification(crate::wire::jsonrpc::Notification {
                method: mcp::CANCELLED.into(),
                params: Some(params),
            });
            self.send_upstream(pending.upstream, &cancel);
        }
        self.mrtr_expired(number);
    }

    /// A waiting call was answered by its child while its client was away.
    pub(crate) fn mrtr_parked_answer(&mut self, proxy_id: ProxyRequestId, response: Response) {
        let timeout = Duration::from_millis(self.ctx.config.request_timeout_ms);
        let now = self.ctx.now;
        let Some(number) = self.modern.mrtr.by_request.get(&proxy_id).copied() else {
            return;
        };
        if let Some(parked) = self.modern.mrtr.parked.get_mut(&number) {
            parked.answer = Some(response);
            parked.asks.clear();
            self.ctx.timers.set(now.after(timeout), Timer::Parked(number));
        }
    }

    /// A waiting call's answer was never collected.
    pub(crate) fn mrtr_expired(&mut self, number: u64) {
        if let Some(parked) = self.modern.mrtr.parked.remove(&number) {
            self.modern.mrtr.by_request.remove(&parked.proxy_id);
        }
    }

    /// Refuses a retry whose `requestState` is tampered, foreign or expired.
    pub(crate) fn invalid_state(&mut self, wait: ModernWait) {
        let mut error = ErrorObject::new(codes::INVALID_PARAMS, "Invalid or expired requestState");
        error.data = Some(json!({"reason": "invalid_request_state"}));
        let response = Response::error(Some(wait.request.id), error);
        self.modern_reply(wait.exchange, wait.cors, 400, response);
    }

    /// A client retries a call with its input: the waiting call goes on, or runs again.
    pub(crate) fn mrtr_retry(&mut self, now: Instant, mut wait: ModernWait) {
        let state = param(&wait.request.params, "requestState")
            .and_then(Value::as_str)
            .and_then(|text| self.modern.mrtr.sealer.open_json::<Value>(PURPOSE, text, &wait.credential, MAX_STATE));
        let name = wait.name.clone();
        let endpoint = endpoint_tag(wait.endpoint);
        let valid = state.filter(|state| {
            state["m"].as_str() == Some(wait.request.method.as_str())
                && state["n"].as_str().map(str::to_owned) == name
                && state["t"] == endpoint
                && state["e"].as_u64().is_some_and(|expires| self.ctx.wall.0 <= expires)
        });
        let Some(state) = valid else {
            let servers = match wait.endpoint {
                crate::route::Target::Server(server) if !self.revision_known(server) => {
                    // Found out first (a fresh edge isolate knows no server yet).
                    wait.foreign_state = true;
                    true
                }
                crate::route::Target::Server(server) => self.eras.server_is_modern(server),
                crate::route::Target::Merged => self.merged_state_is_a_servers(&wait),
            };
            if servers {
                // Not the proxy's state: a 2026 server's own, for it to judge.
                return self.modern_dispatch(now, wait);
            }
            return self.invalid_state(wait);
        };
        let responses =
            param(&wait.request.params, "inputResponses").and_then(Value::as_object).cloned().unwrap_or_default();
        let number = state["p"].as_u64().unwrap_or(0);
        let round = state["r"].as_u64().unwrap_or(0);
        // A call resumes once: a second retry with the same state (at once, or after the call
        // finished) runs the call again on its own.
        let resumable = self.modern.mrtr.parked.get(&number).is_some_and(|p| {
            p.round == round
                && (p.answer.is_some() || self.modern.in_flight.get(&p.proxy_id).is_some_and(|f| f.exchange.is_none()))
        });
        if resumable {
            return self.mrtr_resume(number, wait, &responses);
        }
        // The waiting call is gone: run it again, answering from what the client told so far.
        let mut replay = Replay::default();
        if let Some(carried) = state["a"].as_object() {
            replay.answers.extend(carried.iter().map(|(d, a)| (d.clone(), a.clone())));
        }
        if let Some(keys) = state["k"].as_object() {
            for (key, digest) in keys {
                if let (Some(answer), Some(digest)) = (responses.get(key).filter(|a| a.is_object()), digest.as_str()) {
                    replay.answers.insert(digest.to_owned(), answer.clone());
                }
            }
        }
        envelope::strip(&mut wait.request.params);
        wait.replay = Some(replay);
        self.modern_dispatch(now, wait);
    }

    /// Hands the client's answers to the waiting call; the retry's exchange takes its answer.
    fn mrtr_resume(&mut self, number: u64, wait: ModernWait, responses: &Map<String, Value>) {
        let Some(parked) = self.modern.mrtr.parked.get_mut(&number) else {
            return;
        };
        let proxy_id = parked.proxy_id;
        let (member, upstream) = (parked.member.clone(), parked.upstream);
        let mut answers = Vec::new();
        let keys: Vec<String> = parked.asks.iter().filter(|(_, a)| a.sent).map(|(k, _)| k.clone()).collect();
        for key in keys {
            // Malformed input (not an object) counts as none: the question is asked again.
            if let Some(answer) = responses.get(&key).filter(|a| a.is_object()) {
                if let Some(ask) = parked.asks.remove(&key) {
                    parked.answered.insert(ask.digest, answer.clone());
                    answers.push(Response::result(ask.id, answer.clone()));
                }
            }
        }
        let answer = parked.answer.take();
        let server = self.modern.in_flight.get(&proxy_id).map(|f| f.server);
        let uri = (wait.request.method == mcp::RESOURCES_READ)
            .then(|| param(&wait.request.params, "uri").and_then(Value::as_str).map(str::to_owned))
            .flatten();
        let modern = ModernPost { server, method: wait.request.method.clone(), uri };
        self.open_modern_exchange(wait.exchange, member, wait.cors, wait.accepts_sse, modern);
        if let Some(mut answer) = answer {
            // The call finished while the client was away.
            self.mrtr_expired(number);
            answer.id = Some(wait.request.id);
            return self.answer_post(wait.exchange, Message::Response(answer));
        }
        if let Some(in_flight) = self.modern.in_flight.get_mut(&proxy_id) {
            in_flight.exchange = Some(wait.exchange);
            in_flight.envelope = wait.envelope;
        }
        if let Some(pending) = self.pending.get_mut(proxy_id) {
            pending.reply_to = ReplyTo::Exchange(wait.exchange);
            pending.original_id = wait.request.id;
            // Progress from here on is the retry's, under its own token (or none).
            pending.progress = mcp::progress_token(&wait.request.params);
        }
        for answer in answers {
            self.send_upstream(upstream, &Message::Response(answer));
        }
        let unanswered = self.modern.mrtr.parked.get(&number).is_some_and(|p| !p.asks.is_empty());
        if unanswered {
            self.ask_client(proxy_id);
        }
    }
}

/// How a state names the endpoint it was issued on (a retry must come to the same one).
fn endpoint_tag(endpoint: crate::route::Target) -> Value {
    match endpoint {
        crate::route::Target::Server(server) => json!(server.0),
        crate::route::Target::Merged => json!("merged"),
    }
}

/// Takes the server's name for its question out of its `_meta` (which goes if empty).
fn take_key_hint(params: &mut Option<Value>) -> Option<String> {
    let object = params_object(params)?;
    let meta = object.get_mut("_meta")?.as_object_mut()?;
    let hint = meta.remove(KEY_HINT)?.as_str().map(str::to_owned);
    if meta.is_empty() {
        object.remove("_meta");
    }
    hint
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_question_has_the_same_digest() {
        let a = digest("sampling/createMessage", &Some(json!({"b": 1, "a": [1, 2]})));
        let b = digest("sampling/createMessage", &Some(json!({"a": [1, 2], "b": 1})));
        assert_eq!(a, b);
        assert_ne!(a, digest("roots/list", &None));
    }
}
