//! The 2026-07-28 request envelope: what every request says of itself in `params._meta`
//! (revision, client capabilities, client info, log level), the header encoding of
//! `Mcp-Name`, and the reserved `_meta` keys of results and notifications.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::wire::jsonrpc::{param, params_object};

/// The revision of the stateless era the proxy serves.
pub(crate) const MODERN_VERSION: &str = "2026-07-28";
/// The stateless revisions the proxy serves.
pub(crate) const SUPPORTED: [&str; 1] = [MODERN_VERSION];

/// `_meta` key: the request's revision.
pub(crate) const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key: what the client can do, for this request.
pub(crate) const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key: who the client says it is.
pub(crate) const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key: the lowest log level the client wants for this request.
pub(crate) const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key of results: who the server is.
pub(crate) const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// `_meta` key of a listen stream's messages: the listen request's id.
pub(crate) const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// Whether `version` names a revision of the stateless era (the SDKs compare as strings).
pub(crate) fn is_modern(version: &str) -> bool {
    version >= MODERN_VERSION
}

/// Log levels, lowest first (RFC 5424 order, as MCP names them).
const LEVELS: [&str; 8] = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/// The rank of a log level name.
pub(crate) fn level_rank(level: &str) -> Option<usize> {
    LEVELS.iter().position(|l| *l == level)
}

/// The envelope of one 2026 request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Envelope {
    /// The revision it is in.
    pub(crate) version: String,
    /// The client's capabilities for this request.
    pub(crate) capabilities: Value,
    /// The lowest log level the client wants, if it wants logs at all.
    pub(crate) log_level: Option<usize>,
}

/// Why an envelope is refused (`-32602`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EnvelopeError {
    /// The key at fault.
    pub(crate) key: &'static str,
    /// What is wrong with it.
    pub(crate) problem: &'static str,
}

/// Whether a request claims the stateless era: its `_meta` has the revision key.
pub(crate) fn claims(params: &Option<Value>) -> bool {
    meta(params).is_some_and(|meta| meta.contains_key(PROTOCOL_VERSION))
}

fn meta(params: &Option<Value>) -> Option<&Map<String, Value>> {
    param(params, "_meta")?.as_object()
}

/// Reads the envelope of a request that claims the era.
pub(crate) fn parse(params: &Option<Value>) -> Result<Envelope, EnvelopeError> {
    let Some(meta) = meta(params) else {
        return Err(EnvelopeError { key: "_meta", problem: "missing" });
    };
    let version = match meta.get(PROTOCOL_VERSION) {
        Some(Value::String(version)) => version.clone(),
        Some(_) => return Err(EnvelopeError { key: PROTOCOL_VERSION, problem: "must be a string" }),
        None => return Err(EnvelopeError { key: PROTOCOL_VERSION, problem: "missing" }),
    };
    let capabilities = match meta.get(CLIENT_CAPABILITIES) {
        Some(capabilities @ Value::Object(_)) => capabilities.clone(),
        Some(_) => return Err(EnvelopeError { key: CLIENT_CAPABILITIES, problem: "must be an object" }),
        None => return Err(EnvelopeError { key: CLIENT_CAPABILITIES, problem: "missing" }),
    };
    if meta.get(CLIENT_INFO).is_some_and(|info| !info.is_object()) {
        return Err(EnvelopeError { key: CLIENT_INFO, problem: "must be an object" });
    }
    let log_level = match meta.get(LOG_LEVEL) {
        None => None,
        Some(Value::String(level)) => match level_rank(level) {
            Some(rank) => Some(rank),
            None => return Err(EnvelopeError { key: LOG_LEVEL, problem: "not a log level" }),
        },
        Some(_) => return Err(EnvelopeError { key: LOG_LEVEL, problem: "must be a string" }),
    };
    Ok(Envelope { version, capabilities, log_level })
}

/// Takes what only the proxy reads off a request before a 2025 server sees it: the envelope's
/// reserved keys (its `_meta` goes if nothing else is left) and an input round's
/// `inputResponses` and `requestState`.
pub(crate) fn strip(params: &mut Option<Value>) {
    let Some(object) = params_object(params) else {
        return;
    };
    object.remove("inputResponses");
    object.remove("requestState");
    if let Some(Value::Object(meta)) = object.get_mut("_meta") {
        meta.retain(|key, _| !is_reserved(key));
        if meta.is_empty() {
            object.remove("_meta");
        }
    }
}

/// Whether a `_meta` key is reserved for the protocol (the second label of its prefix is
/// `modelcontextprotocol` or `mcp`).
fn is_reserved(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else {
        return false;
    };
    matches!(prefix.split('.').nth(1), Some("modelcontextprotocol" | "mcp"))
}

/// Reads a header value that may be `=?base64?...?=`-encoded; `None` if the encoding is bad.
pub(crate) fn decode_header(value: &str) -> Option<String> {
    let value = value.trim_matches([' ', '\t']);
    match value.strip_prefix("=?base64?").and_then(|rest| rest.strip_suffix("?=")) {
        Some(encoded) => STANDARD.decode(encoded).ok().and_then(|bytes| String::from_utf8(bytes).ok()),
        None => Some(value.to_owned()),
    }
}

/// Writes a value for a header: as it is when it is plain visible ASCII, else in the
/// `=?base64?…?=` form the revision defines.
pub(crate) fn encode_header(text: &str) -> String {
    let printable = text.bytes().all(|b| (0x21..=0x7e).contains(&b) || b == b' ');
    let padded = text.starts_with(' ') || text.ends_with(' ');
    let looks_encoded = text.starts_with("=?base64?") && text.ends_with("?=");
    if !text.is_empty() && printable && !padded && !looks_encoded {
        text.to_owned()
    } else {
        format!("=?base64?{}?=", STANDARD.encode(text.as_bytes()))
    }
}

/// The parameter `Mcp-Name` mirrors for `method`, if it has one.
pub(crate) fn named_param(method: &str) -> Option<&'static str> {
    match method {
        crate::wire::mcp::TOOLS_CALL | crate::wire::mcp::PROMPTS_GET => Some("name"),
        crate::wire::mcp::RESOURCES_READ => Some("uri"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_and_checks_the_envelope() {
        let params = Some(
            json!({"_meta": {PROTOCOL_VERSION: "2026-07-28", CLIENT_CAPABILITIES: {"sampling": {}}, LOG_LEVEL: "warning"}}),
        );
        assert!(claims(&params));
        let envelope = parse(&params).expect("valid");
        assert_eq!((envelope.version.as_str(), envelope.log_level), ("2026-07-28", Some(3)));
        let missing = Some(json!({"_meta": {PROTOCOL_VERSION: "2026-07-28"}}));
        assert_eq!(parse(&missing).map_err(|e| e.key), Err(CLIENT_CAPABILITIES));
        assert!(!claims(&Some(json!({"_meta": {"progressToken": 1}}))));
        assert_eq!(parse(&Some(json!({}))).map_err(|e| e.key), Err("_meta"));
    }

    #[test]
    fn strips_what_a_2025_server_must_not_see() {
        let mut params = Some(json!({"name": "t", "requestState": "s", "inputResponses": {},
            "_meta": {PROTOCOL_VERSION: "x", "io.modelcontextprotocol/clientInfo": {}, "dev.mcp/x": 1, "progressToken": 3, "com.example.mcp/y": 2}}));
        strip(&mut params);
        assert_eq!(params, Some(json!({"name": "t", "_meta": {"progressToken": 3, "com.example.mcp/y": 2}})));
        let mut bare = Some(json!({"_meta": {PROTOCOL_VERSION: "x"}}));
        strip(&mut bare);
        assert_eq!(bare, Some(json!({})));
    }

    #[test]
    fn decodes_base64_header_values() {
        assert_eq!(decode_header("=?base64?SGVsbG8sIOS4lueVjA==?="), Some("Hello, 世界".into()));
        assert_eq!(decode_header("  plain  "), Some("plain".into()));
        assert_eq!(decode_header("=?base64?!!!?="), None);
        assert_eq!(decode_header("=?base64?SGVsbG8?="), None, "canonical padding only");
        assert_eq!(decode_header("=?base64?SGVsbG8="), Some("=?base64?SGVsbG8=".into()), "no suffix: literal");
    }
}
