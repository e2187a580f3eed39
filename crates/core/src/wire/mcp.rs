//! MCP specifics on top of JSON-RPC: method names, protocol versions, progress and cancellation.

use serde_json::Value;

use crate::wire::jsonrpc::{param, params_object, RequestId};

// Every method name, requests and notifications of both directions.
/// Opens a session (2025 revisions). (`initialize`)
pub const INITIALIZE: &str = "initialize";
/// Checks that the other side answers. (`ping`)
pub const PING: &str = "ping";
/// Lists tools. (`tools/list`)
pub const TOOLS_LIST: &str = "tools/list";
/// Calls a tool. (`tools/call`)
pub const TOOLS_CALL: &str = "tools/call";
/// Lists prompts. (`prompts/list`)
pub const PROMPTS_LIST: &str = "prompts/list";
/// Gets a prompt. (`prompts/get`)
pub const PROMPTS_GET: &str = "prompts/get";
/// Lists resources. (`resources/list`)
pub const RESOURCES_LIST: &str = "resources/list";
/// Lists resource templates. (`resources/templates/list`)
pub const RESOURCE_TEMPLATES_LIST: &str = "resources/templates/list";
/// Reads a resource. (`resources/read`)
pub const RESOURCES_READ: &str = "resources/read";
/// Follows a resource's updates. (`resources/subscribe`)
pub const RESOURCES_SUBSCRIBE: &str = "resources/subscribe";
/// Stops following a resource. (`resources/unsubscribe`)
pub const RESOURCES_UNSUBSCRIBE: &str = "resources/unsubscribe";
/// Completes an argument. (`completion/complete`)
pub const COMPLETION_COMPLETE: &str = "completion/complete";
/// Sets the server's log level (2025 revisions). (`logging/setLevel`)
pub const LOGGING_SET_LEVEL: &str = "logging/setLevel";
/// A server asks the client's model for a message. (`sampling/createMessage`)
pub const SAMPLING_CREATE_MESSAGE: &str = "sampling/createMessage";
/// A server asks the user for input. (`elicitation/create`)
pub const ELICITATION_CREATE: &str = "elicitation/create";
/// A server asks the client for its roots. (`roots/list`)
pub const ROOTS_LIST: &str = "roots/list";
/// The client is ready (after `initialize`). (`notifications/initialized`)
pub const INITIALIZED: &str = "notifications/initialized";
/// A request is cancelled. (`notifications/cancelled`)
pub const CANCELLED: &str = "notifications/cancelled";
/// Progress of a request. (`notifications/progress`)
pub const PROGRESS: &str = "notifications/progress";
/// A log message. (`notifications/message`)
pub const MESSAGE: &str = "notifications/message";
/// A followed resource changed. (`notifications/resources/updated`)
pub const RESOURCES_UPDATED: &str = "notifications/resources/updated";
/// The resource list changed. (`notifications/resources/list_changed`)
pub const RESOURCES_LIST_CHANGED: &str = "notifications/resources/list_changed";
/// The tool list changed. (`notifications/tools/list_changed`)
pub const TOOLS_LIST_CHANGED: &str = "notifications/tools/list_changed";
/// The prompt list changed. (`notifications/prompts/list_changed`)
pub const PROMPTS_LIST_CHANGED: &str = "notifications/prompts/list_changed";
/// What a server offers (2026-07-28). (`server/discover`)
pub const SERVER_DISCOVER: &str = "server/discover";
/// A stream of list changes and resource updates (2026-07-28). (`subscriptions/listen`)
pub const SUBSCRIPTIONS_LISTEN: &str = "subscriptions/listen";
/// The first message of a listen stream. (`notifications/subscriptions/acknowledged`)
pub const SUBSCRIPTIONS_ACKNOWLEDGED: &str = "notifications/subscriptions/acknowledged";
/// The client's roots changed. (`notifications/roots/list_changed`)
pub const ROOTS_LIST_CHANGED: &str = "notifications/roots/list_changed";

/// The `notifications/initialized` a client sends once `initialize` is answered (the proxy
/// sends it itself to upstreams it initializes).
pub fn initialized() -> crate::wire::jsonrpc::Message {
    crate::wire::jsonrpc::Message::Notification(crate::wire::jsonrpc::Notification {
        method: INITIALIZED.into(),
        params: None,
    })
}

/// The `initialize` parameters the proxy sends when it initializes an upstream for no client
/// in particular (a stateless pool child, a shared upstream before any client asked).
pub fn proxy_initialize_params() -> Value {
    serde_json::json!({
        "protocolVersion": LATEST_PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "mcp-proxy", "version": env!("CARGO_PKG_VERSION")},
    })
}

/// An `initialize` request with `params` (the proxy's own, or a client's replayed).
pub fn initialize_request(id: RequestId, params: Option<Value>) -> crate::wire::jsonrpc::Request {
    crate::wire::jsonrpc::Request { id, method: INITIALIZE.into(), params }
}

/// The proxy's answer to a server request no client can take: `ping` is answered, anything
/// else gets "method not found" saying `why`.
pub fn answer_unreachable(request: &crate::wire::jsonrpc::Request, why: &str) -> crate::wire::jsonrpc::Response {
    use crate::wire::jsonrpc::{ErrorObject, Response};
    if request.method == PING {
        return Response::result(request.id.clone(), serde_json::json!({}));
    }
    let message = format!("{} cannot reach a client: {why}", request.method);
    Response::error(Some(request.id.clone()), ErrorObject::new(crate::error::codes::METHOD_NOT_FOUND, message))
}

/// The newest protocol revision the proxy speaks.
pub const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";

/// Protocol revisions the proxy accepts in `MCP-Protocol-Version`.
pub const SUPPORTED_PROTOCOL_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// Whether `version` is a protocol revision the proxy can carry.
pub fn is_supported_version(version: &str) -> bool {
    SUPPORTED_PROTOCOL_VERSIONS.contains(&version)
}

/// A progress token: a string or an integer, chosen by the requester.
pub type ProgressToken = RequestId;

/// Reads `params._meta.progressToken` of a request.
pub fn progress_token(params: &Option<Value>) -> Option<ProgressToken> {
    let token = param(params, "_meta")?.get("progressToken")?;
    serde_json::from_value(token.clone()).ok()
}

/// Reads `params.progressToken` of a `notifications/progress`.
pub fn progress_notification_token(params: &Option<Value>) -> Option<ProgressToken> {
    serde_json::from_value(param(params, "progressToken")?.clone()).ok()
}

/// Rewrites `params._meta.progressToken` of a request.
pub fn set_progress_token(params: &mut Option<Value>, token: i64) {
    if let Some(meta) = params_object(params).and_then(|p| p.get_mut("_meta")).and_then(Value::as_object_mut) {
        meta.insert("progressToken".into(), Value::from(token));
    }
}

/// Rewrites `params.progressToken` of a `notifications/progress`.
pub fn set_progress_notification_token(params: &mut Option<Value>, token: &ProgressToken) {
    if let (Some(object), Ok(token)) = (params_object(params), serde_json::to_value(token)) {
        object.insert("progressToken".into(), token);
    }
}

/// Reads `params.requestId` of a `notifications/cancelled`.
pub fn cancelled_request_id(params: &Option<Value>) -> Option<RequestId> {
    serde_json::from_value(param(params, "requestId")?.clone()).ok()
}

/// Rewrites `params.requestId` of a `notifications/cancelled`.
pub fn set_cancelled_request_id(params: &mut Option<Value>, id: i64) {
    if let Some(object) = params_object(params) {
        object.insert("requestId".into(), Value::from(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_progress_tokens_and_cancel_ids() {
        let params = Some(json!({"_meta": {"progressToken": "p1"}, "name": "x"}));
        assert_eq!(progress_token(&params), Some(RequestId::String("p1".into())));
        assert_eq!(progress_token(&Some(json!({"name": "x"}))), None);
        assert_eq!(
            progress_notification_token(&Some(json!({"progressToken": 4, "progress": 1}))),
            Some(RequestId::Number(4))
        );
        let mut cancel = Some(json!({"requestId": "abc", "reason": "x"}));
        assert_eq!(cancelled_request_id(&cancel), Some(RequestId::String("abc".into())));
        set_cancelled_request_id(&mut cancel, 9);
        assert_eq!(cancelled_request_id(&cancel), Some(RequestId::Number(9)));
    }

    #[test]
    fn knows_the_protocol_revisions() {
        assert!(is_supported_version("2025-11-25"));
        assert!(is_supported_version("2025-03-26"));
        assert!(!is_supported_version("1999-01-01"));
    }
}
