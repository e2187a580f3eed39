//! Which era a POST belongs to, decided per request on the one endpoint, and the header checks
//! of the 2026-07-28 transport: the same rules, in the same order, as the official SDKs'
//! servers (a dual-era client must be able to tell an era mismatch from an outage, so every
//! refusal is a JSON-RPC error with the request's id).

use serde_json::{json, Value};

use crate::error::codes;
use crate::modern::envelope::{self, Envelope, MODERN_VERSION, SUPPORTED};
use crate::wire::http::HttpRequest;
use crate::wire::jsonrpc::{param, ErrorObject, Message, RequestId, Response};

/// The era of a POST.
#[derive(Debug)]
pub(crate) enum Era {
    /// The 2025 transport: sessions, `initialize`, batches.
    Legacy,
    /// A 2026 request or notification.
    Modern(Box<ModernCall>),
    /// Refused before it is served: HTTP status and the JSON-RPC error.
    Refused(u16, Response),
}

/// A 2026 message that passed every check.
#[derive(Debug)]
pub(crate) struct ModernCall {
    /// The request (or notification).
    pub(crate) message: Message,
    /// Its envelope.
    pub(crate) envelope: Envelope,
}

/// Classifies the messages of a POST body.
pub(crate) fn classify(request: &HttpRequest, messages: &[Message], batch: bool) -> Era {
    let header_version = request.header("mcp-protocol-version").map(|v| v.trim_matches([' ', '\t']));
    let modern_header = header_version.is_some_and(envelope::is_modern);
    if batch {
        return match messages.iter().any(|m| envelope::claims(params_of(m))) {
            true => refuse(None, 400, codes::INVALID_REQUEST, "Invalid Request: 2026-07-28 requests are never batched"),
            false => Era::Legacy,
        };
    }
    let Some(message) = messages.first() else {
        return Era::Legacy;
    };
    let (id, method, params) = match message {
        Message::Request(r) => (Some(&r.id), r.method.as_str(), &r.params),
        Message::Notification(n) => (None, n.method.as_str(), &n.params),
        Message::Response(_) => return Era::Legacy,
    };
    let claimed = envelope::claims(params);
    if method == crate::wire::mcp::INITIALIZE && !claimed {
        return match modern_header {
            true => refuse(
                id,
                400,
                codes::HEADER_MISMATCH,
                "Header mismatch: an initialize request (the 2025 handshake) was sent with a 2026-07-28 MCP-Protocol-Version header",
            ),
            false => Era::Legacy,
        };
    }
    if !claimed {
        if !modern_header {
            return Era::Legacy;
        }
        if id.is_none() {
            // A notification of the era: nothing to check, nothing to answer.
            let envelope = Envelope {
                version: header_version.unwrap_or(MODERN_VERSION).to_owned(),
                capabilities: json!({}),
                log_level: None,
            };
            return Era::Modern(Box::new(ModernCall { message: message.clone(), envelope }));
        }
        return refuse_data(
            id,
            400,
            codes::INVALID_PARAMS,
            "Invalid params: the request is missing the required per-request envelope key(s): _meta",
            json!({"envelope": {"missing": ["_meta"]}}),
        );
    }
    let envelope = match envelope::parse(params) {
        Ok(envelope) => envelope,
        Err(error) => {
            let message = format!(
                "Invalid params: invalid _meta envelope for protocol revision {MODERN_VERSION}: {}: {}",
                error.key, error.problem
            );
            return refuse_data(
                id,
                400,
                codes::INVALID_PARAMS,
                &message,
                json!({"envelope": {"key": error.key, "problem": error.problem}}),
            );
        }
    };
    if let Some(header) = header_version.filter(|header| *header != envelope.version) {
        let message = format!(
            "Header mismatch: MCP-Protocol-Version header {:?} does not match the body's {:?}",
            clip(header),
            clip(&envelope.version)
        );
        return refuse(id, 400, codes::HEADER_MISMATCH, &message);
    }
    if let Some(header) = request.header("mcp-method").map(|m| m.trim_matches([' ', '\t'])) {
        if header != method {
            let message =
                format!("Header mismatch: Mcp-Method header {:?} does not match the body's {method:?}", clip(header));
            return refuse(id, 400, codes::HEADER_MISMATCH, &message);
        }
    }
    if !SUPPORTED.contains(&envelope.version.as_str()) {
        let message = format!("Unsupported protocol version {:?}", clip(&envelope.version));
        let data = json!({"supported": SUPPORTED, "requested": envelope.version});
        return refuse_data(id, 400, codes::UNSUPPORTED_VERSION, &message, data);
    }
    if id.is_some() {
        if let Some(refusal) = check_headers(request, id, method, params) {
            return refusal;
        }
    }
    Era::Modern(Box::new(ModernCall { message: message.clone(), envelope }))
}

/// The standard headers a 2026 request must carry, and that they match the body.
fn check_headers(request: &HttpRequest, id: Option<&RequestId>, method: &str, params: &Option<Value>) -> Option<Era> {
    if request.header("mcp-protocol-version").is_none() {
        return Some(refuse(
            id,
            400,
            codes::HEADER_MISMATCH,
            "Header mismatch: the required MCP-Protocol-Version header is absent",
        ));
    }
    if request.header("mcp-method").is_none() {
        return Some(refuse(
            id,
            400,
            codes::HEADER_MISMATCH,
            "Header mismatch: the required Mcp-Method header is absent",
        ));
    }
    let key = envelope::named_param(method)?;
    let body = param(params, key).map(|value| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    });
    let Some(header) = request.header("mcp-name") else {
        return body.map(|_| {
            refuse(id, 400, codes::HEADER_MISMATCH, "Header mismatch: the required Mcp-Name header is absent")
        });
    };
    let Some(decoded) = envelope::decode_header(header) else {
        return Some(refuse(
            id,
            400,
            codes::HEADER_MISMATCH,
            "Header mismatch: Mcp-Name has an invalid Base64 sentinel value",
        ));
    };
    (body.as_deref() != Some(decoded.as_str())).then(|| {
        let message = format!("Header mismatch: Mcp-Name header {:?} does not match the body's {key}", clip(&decoded));
        refuse(id, 400, codes::HEADER_MISMATCH, &message)
    })
}

fn params_of(message: &Message) -> &Option<Value> {
    static NONE: Option<Value> = None;
    match message {
        Message::Request(r) => &r.params,
        Message::Notification(n) => &n.params,
        Message::Response(_) => &NONE,
    }
}

fn clip(text: &str) -> &str {
    crate::proxy::truncate(text, 100)
}

fn refuse(id: Option<&RequestId>, status: u16, code: i64, message: &str) -> Era {
    Era::Refused(status, Response::error(id.cloned(), ErrorObject::new(code, message)))
}

fn refuse_data(id: Option<&RequestId>, status: u16, code: i64, message: &str, data: Value) -> Era {
    let mut error = ErrorObject::new(code, message);
    error.data = Some(data);
    Era::Refused(status, Response::error(id.cloned(), error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ExchangeId;
    use crate::wire::http::Header;

    fn post(headers: &[(&str, &str)], body: &str) -> Era {
        let request = HttpRequest {
            exchange: ExchangeId(1),
            method: "POST".into(),
            target: "/mcp".into(),
            headers: headers.iter().map(|(n, v)| Header::new(*n, *v)).collect(),
            body: body.as_bytes().to_vec(),
            body_too_large: false,
            via_loopback: true,
        };
        match crate::wire::jsonrpc::Payload::parse(body.as_bytes()).expect("json-rpc") {
            crate::wire::jsonrpc::Payload::Single(message) => classify(&request, &[message], false),
            crate::wire::jsonrpc::Payload::Batch(messages) => classify(&request, &messages, true),
        }
    }

    const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

    fn refused(era: Era) -> (u16, i64) {
        match era {
            Era::Refused(status, response) => (status, response.outcome.err().map_or(0, |e| e.code)),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_ladder_of_the_sdks() {
        let v = ("mcp-protocol-version", "2026-07-28");
        let m = ("mcp-method", "tools/list");
        let list = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{{META}}}}}"#);
        assert!(matches!(post(&[v, m], &list), Era::Modern(_)));
        assert!(matches!(post(&[], r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#), Era::Legacy));
        assert_eq!(refused(post(&[v], r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)), (400, -32602));
        assert_eq!(refused(post(&[v], r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#)), (400, -32020));
        assert!(matches!(post(&[], r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#), Era::Legacy));
        assert_eq!(refused(post(&[v], &list)), (400, -32020), "Mcp-Method missing");
        assert_eq!(refused(post(&[v, ("mcp-method", "prompts/list")], &list)), (400, -32020));
        assert_eq!(refused(post(&[("mcp-protocol-version", "2025-11-25"), m], &list)), (400, -32020));
        let future = list.replace("2026-07-28", "v999.0.0");
        assert_eq!(refused(post(&[("mcp-protocol-version", "v999.0.0"), m], &future)), (400, -32022));
        assert_eq!(refused(post(&[v, m], &future)), (400, -32020), "a mismatch comes before an unknown version");
        let bad = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        assert_eq!(refused(post(&[v, m], bad)), (400, -32602));
        let batch = format!("[{list}]");
        assert_eq!(refused(post(&[v, m], &batch)), (400, -32600));
    }

    #[test]
    fn mcp_name_is_required_and_compared_decoded() {
        let v = ("mcp-protocol-version", "2026-07-28");
        let m = ("mcp-method", "tools/call");
        let call = format!(r#"{{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{{"name":"héllo",{META}}}}}"#);
        assert_eq!(refused(post(&[v, m], &call)), (400, -32020));
        assert!(matches!(post(&[v, m, ("mcp-name", "=?base64?aMOpbGxv?=")], &call), Era::Modern(_)));
        assert_eq!(refused(post(&[v, m, ("mcp-name", "other")], &call)), (400, -32020));
        assert_eq!(refused(post(&[v, m, ("mcp-name", "=?base64?!!!?=")], &call)), (400, -32020));
        match post(&[v, m, ("mcp-name", "nope")], &call) {
            Era::Refused(_, response) => {
                assert_eq!(response.id, Some(RequestId::String("a".into())), "the id is echoed")
            }
            other => panic!("{other:?}"),
        }
    }
}
