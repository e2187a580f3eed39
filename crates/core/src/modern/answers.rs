//! What a 2025 server's answers become for a 2026 client, pure: every result says its
//! `resultType` and who answered (`_meta.serverInfo`), cacheable results say how long they
//! keep (`ttlMs`, `cacheScope`), a resource that is not found is `-32602` naming its URI, and
//! `server/discover` is built from the child's `initialize` result.

use serde_json::{json, Map, Value};

use crate::error::codes;
use crate::modern::envelope::{SERVER_INFO, SUPPORTED};
use crate::modern::ModernPost;
use crate::wire::jsonrpc::{Message, Response};
use crate::wire::mcp;

/// Results that say how long a client may keep them.
const CACHEABLE: [&str; 6] = [
    mcp::SERVER_DISCOVER,
    mcp::TOOLS_LIST,
    mcp::PROMPTS_LIST,
    mcp::RESOURCES_LIST,
    mcp::RESOURCE_TEMPLATES_LIST,
    mcp::RESOURCES_READ,
];

/// The `server/discover` result for a server whose `initialize` answered `initialize`.
pub(crate) fn discover(initialize: &Value) -> Value {
    let mut result = Map::new();
    result.insert("resultType".into(), json!("complete"));
    result.insert("supportedVersions".into(), json!(SUPPORTED));
    result.insert("capabilities".into(), initialize.get("capabilities").cloned().unwrap_or_else(|| json!({})));
    if let Some(instructions) = initialize.get("instructions").filter(|i| i.is_string()) {
        result.insert("instructions".into(), instructions.clone());
    }
    result.insert("ttlMs".into(), json!(0));
    result.insert("cacheScope".into(), json!("private"));
    if let Some(info) = initialize.get("serverInfo") {
        result.insert("_meta".into(), json!({SERVER_INFO: info}));
    }
    Value::Object(result)
}

/// Shapes one message answering a 2026 exchange; notifications pass as they are.
pub(crate) fn shape(modern: &ModernPost, server_info: Option<Value>, message: Message) -> Message {
    let Message::Response(mut response) = message else {
        return message;
    };
    match &mut response.outcome {
        Ok(Value::Object(result)) => {
            result.entry("resultType").or_insert_with(|| json!("complete"));
            if CACHEABLE.contains(&modern.method.as_str()) && result.get("resultType") == Some(&json!("complete")) {
                result.entry("ttlMs").or_insert_with(|| json!(0));
                result.entry("cacheScope").or_insert_with(|| json!("private"));
            }
            if let Some(info) = server_info {
                let meta = result.entry("_meta").or_insert_with(|| json!({}));
                if let Some(meta) = meta.as_object_mut() {
                    meta.entry(SERVER_INFO).or_insert(info);
                }
            }
        }
        Ok(_) => {}
        Err(error) if modern.method == mcp::RESOURCES_READ && error.code == codes::RESOURCE_NOT_FOUND => {
            // Revision 2026-07-28 retired -32002: a missing resource is invalid params, naming it.
            error.code = codes::INVALID_PARAMS;
            let mut data = match error.data.take() {
                Some(Value::Object(data)) => data,
                _ => Map::new(),
            };
            if let Some(uri) = &modern.uri {
                data.entry("uri").or_insert_with(|| json!(uri));
            }
            error.data = Some(Value::Object(data));
        }
        Err(_) => {}
    }
    Message::Response(response)
}

/// The HTTP status of a 2026 answer sent as JSON: a method that does not exist is 404, a
/// missing client capability 400, anything else travels in the body with 200.
pub(crate) fn status(message: &Message) -> u16 {
    match message {
        Message::Response(Response { outcome: Err(error), .. }) => match error.code {
            codes::METHOD_NOT_FOUND => 404,
            codes::MISSING_CAPABILITY => 400,
            _ => 200,
        },
        _ => 200,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ServerId;
    use crate::wire::jsonrpc::{ErrorObject, RequestId};

    fn post(method: &str, uri: Option<&str>) -> ModernPost {
        ModernPost { server: Some(ServerId(0)), method: method.into(), uri: uri.map(str::to_owned) }
    }

    #[test]
    fn results_say_their_type_their_server_and_how_long_they_keep() {
        let answer = Message::Response(Response::result(RequestId::Number(1), json!({"tools": []})));
        let info = json!({"name": "s", "version": "1"});
        let Message::Response(shaped) = shape(&post(mcp::TOOLS_LIST, None), Some(info.clone()), answer) else {
            panic!("a response")
        };
        let result = shaped.outcome.expect("ok");
        assert_eq!(result["resultType"], "complete");
        assert_eq!((result["ttlMs"].clone(), result["cacheScope"].clone()), (json!(0), json!("private")));
        assert_eq!(result["_meta"][SERVER_INFO], info);
        let call = Message::Response(Response::result(RequestId::Number(2), json!({"content": []})));
        let Message::Response(shaped) = shape(&post(mcp::TOOLS_CALL, None), None, call) else { panic!() };
        assert!(shaped.outcome.expect("ok").get("ttlMs").is_none(), "a call is not cacheable");
    }

    #[test]
    fn a_missing_resource_is_invalid_params_naming_it() {
        let error = Message::Response(Response::error(Some(RequestId::Number(1)), ErrorObject::new(-32002, "nope")));
        let Message::Response(shaped) = shape(&post(mcp::RESOURCES_READ, Some("test://x")), None, error) else {
            panic!()
        };
        let error = shaped.outcome.expect_err("an error");
        assert_eq!((error.code, error.data), (-32602, Some(json!({"uri": "test://x"}))));
    }

    #[test]
    fn discover_is_built_from_initialize() {
        let init = json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {"listChanged": true}},
            "serverInfo": {"name": "s", "version": "1"}, "instructions": "be nice"});
        let result = discover(&init);
        assert_eq!(result["supportedVersions"], json!(["2026-07-28"]));
        assert_eq!(result["capabilities"]["tools"]["listChanged"], true);
        assert_eq!(result["_meta"][SERVER_INFO]["name"], "s");
        assert_eq!(result["instructions"], "be nice");
    }
}
