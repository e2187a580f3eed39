//! What a 2026 client declared it can be asked (`io.modelcontextprotocol/clientCapabilities`)
//! against what a 2025 child asks it mid-call: a question the client cannot take is never put
//! to it, and a call that failed for want of one tells the client what it lacked.

use serde_json::{json, Value};

use crate::error::codes::MISSING_CAPABILITY;
use crate::wire::jsonrpc::{param, ErrorObject, Request, Response};
use crate::wire::mcp;

/// What the client must have declared for a child's question, if it lacks it.
pub(crate) fn missing_capability(request: &Request, capabilities: &Value) -> Option<Value> {
    let has = |path: &[&str]| {
        let mut value = capabilities;
        for key in path {
            match value.get(key) {
                Some(next) => value = next,
                None => return false,
            }
        }
        true
    };
    match request.method.as_str() {
        mcp::SAMPLING_CREATE_MESSAGE => {
            let tools = param(&request.params, "tools").is_some() || param(&request.params, "toolChoice").is_some();
            match (has(&["sampling"]), tools && !has(&["sampling", "tools"])) {
                (false, _) => Some(json!({"sampling": {}})),
                (true, true) => Some(json!({"sampling": {"tools": {}}})),
                _ => None,
            }
        }
        mcp::ELICITATION_CREATE => {
            let url = param(&request.params, "mode").and_then(Value::as_str) == Some("url");
            let elicitation = capabilities.get("elicitation");
            let bare = elicitation
                .and_then(Value::as_object)
                .is_some_and(|e| !e.contains_key("url") && !e.contains_key("form"));
            match (elicitation.is_some(), url) {
                (false, true) => Some(json!({"elicitation": {"url": {}}})),
                (false, false) => Some(json!({"elicitation": {"form": {}}})),
                (true, true) if !has(&["elicitation", "url"]) => Some(json!({"elicitation": {"url": {}}})),
                (true, false) if !bare && !has(&["elicitation", "form"]) => Some(json!({"elicitation": {"form": {}}})),
                _ => None,
            }
        }
        mcp::ROOTS_LIST => (!has(&["roots"])).then(|| json!({"roots": {}})),
        _ => None,
    }
}

/// Folds `more` into `into` (both capability objects).
pub(crate) fn merge(into: &mut Value, more: &Value) {
    match (into.as_object_mut(), more.as_object()) {
        (Some(into), Some(more)) => {
            for (key, value) in more {
                merge(into.entry(key.clone()).or_insert_with(|| json!({})), value);
            }
        }
        _ => *into = more.clone(),
    }
}

/// The answer of a call whose child asked for capabilities the client lacks: if the call
/// failed (an error, or a tool result marked `isError`), the client is told what it lacked
/// (`-32021` with `requiredCapabilities`) rather than a failure it could not understand.
pub(crate) fn lacking(response: Response, missing: Value) -> Response {
    let failed = match &response.outcome {
        Err(_) => true,
        Ok(result) => result.get("isError").and_then(Value::as_bool) == Some(true),
    };
    if !failed {
        return response;
    }
    let mut error =
        ErrorObject::new(MISSING_CAPABILITY, "the server needs a client capability this request did not declare");
    error.data = Some(json!({"requiredCapabilities": missing}));
    Response::error(response.id, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::jsonrpc::RequestId;

    #[test]
    fn capabilities_decide_what_may_be_asked() {
        let ask = |method: &str, params: Value| Request {
            id: RequestId::Number(1),
            method: method.into(),
            params: Some(params),
        };
        let sampling = ask(mcp::SAMPLING_CREATE_MESSAGE, json!({"messages": []}));
        assert_eq!(missing_capability(&sampling, &json!({})), Some(json!({"sampling": {}})));
        assert_eq!(missing_capability(&sampling, &json!({"sampling": {}})), None);
        let tools = ask(mcp::SAMPLING_CREATE_MESSAGE, json!({"messages": [], "tools": []}));
        assert_eq!(missing_capability(&tools, &json!({"sampling": {}})), Some(json!({"sampling": {"tools": {}}})));
        let form = ask(mcp::ELICITATION_CREATE, json!({"message": "m"}));
        assert_eq!(missing_capability(&form, &json!({"elicitation": {}})), None, "a bare elicitation is form");
        assert!(missing_capability(&form, &json!({"elicitation": {"url": {}}})).is_some());
        let url = ask(mcp::ELICITATION_CREATE, json!({"mode": "url", "url": "https://x"}));
        assert_eq!(missing_capability(&url, &json!({"elicitation": {}})), Some(json!({"elicitation": {"url": {}}})));
        assert_eq!(missing_capability(&ask(mcp::ROOTS_LIST, json!({})), &json!({})), Some(json!({"roots": {}})));
    }
}
