//! `Mcp-Param-{Name}` headers: a tool's argument whose schema property says
//! `"x-mcp-header": "{Name}"` travels in that header too, so intermediaries can route on it;
//! the server checks that header and body agree. The proxy serves 2026 clients for 2025
//! servers, so it checks them itself, against the server's `tools/list`, which it learns from
//! the lists that pass through (or asks for) and forgets when the list changes.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::modern::envelope::decode_header;
use crate::wire::jsonrpc::param;

/// Which arguments of which tools are mirrored in headers: tool → (argument, header name).
pub(crate) type HeaderMap = BTreeMap<String, Vec<(String, String)>>;

/// Adds the tools of one `tools/list` page to `map`.
pub(crate) fn learn(map: &mut HeaderMap, result: &Value) {
    for tool in result.get("tools").and_then(Value::as_array).into_iter().flatten() {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            continue;
        };
        let properties = tool.get("inputSchema").and_then(|s| s.get("properties")).and_then(Value::as_object);
        let mirrored: Vec<(String, String)> = properties
            .into_iter()
            .flatten()
            .filter_map(|(argument, schema)| {
                let header = schema.get("x-mcp-header")?.as_str()?;
                Some((argument.clone(), header.to_owned()))
            })
            .collect();
        map.insert(name.to_owned(), mirrored);
    }
}

/// The `Mcp-Param-*` headers (name without the prefix, encoded value) a call of `tool` with
/// `params` carries: one per mirrored argument that has a value.
pub(crate) fn mirror(map: &HeaderMap, tool: &str, params: &Option<Value>) -> Vec<(String, String)> {
    let arguments = param(params, "arguments");
    let Some(mirrored) = map.get(tool) else {
        return Vec::new();
    };
    mirrored
        .iter()
        .filter_map(|(argument, header)| {
            let value = arguments?.get(argument).filter(|v| !v.is_null())?;
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Number(_) | Value::Bool(_) => value.to_string(),
                _ => return None,
            };
            Some((header.clone(), crate::modern::envelope::encode_header(&text)))
        })
        .collect()
}

/// Checks the `Mcp-Param-*` headers of a `tools/call` (`headers`: lowercased name without the
/// prefix → value) against its arguments; the problem, if any.
pub(crate) fn check(map: &HeaderMap, params: &Option<Value>, headers: &[(String, String)]) -> Result<(), String> {
    let Some(tool) = param(params, "name").and_then(Value::as_str) else {
        return Ok(());
    };
    let Some(mirrored) = map.get(tool) else {
        return Ok(());
    };
    let arguments = param(params, "arguments");
    for (argument, header) in mirrored {
        let value = arguments.and_then(|a| a.get(argument)).filter(|v| !v.is_null());
        let Some(value) = value else {
            continue;
        };
        let given = headers.iter().find(|(name, _)| name.eq_ignore_ascii_case(header)).map(|(_, v)| v.as_str());
        let Some(given) = given else {
            return Err(format!("the required Mcp-Param-{header} header is absent"));
        };
        let Some(decoded) = decode_header(given) else {
            return Err(format!("Mcp-Param-{header} has an invalid Base64 sentinel value"));
        };
        if !agrees(&decoded, value) {
            return Err(format!("Mcp-Param-{header} does not match the argument {argument:?}"));
        }
    }
    Ok(())
}

/// Whether a header's text is the argument's value (numbers compared as numbers).
fn agrees(text: &str, value: &Value) -> bool {
    match value {
        Value::String(s) => s == text,
        Value::Bool(b) => text == if *b { "true" } else { "false" },
        Value::Number(n) => text.parse::<f64>().ok().zip(n.as_f64()).is_some_and(|(a, b)| a == b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map() -> HeaderMap {
        let mut map = HeaderMap::new();
        let list = json!({"tools": [{"name": "t", "inputSchema": {"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"}, "n": {"type": "number", "x-mcp-header": "N"}, "x": {}}}}]});
        learn(&mut map, &list);
        map
    }

    fn call(arguments: Value) -> Option<Value> {
        Some(json!({"name": "t", "arguments": arguments}))
    }

    #[test]
    fn mirrored_arguments_must_agree_with_their_headers() {
        let map = map();
        let h = |pairs: &[(&str, &str)]| pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>();
        assert!(check(&map, &call(json!({"region": "Hello"})), &h(&[("region", "=?base64?SGVsbG8=?=")])).is_ok());
        assert!(check(&map, &call(json!({"region": "Hello"})), &h(&[("Region", "Hello")])).is_ok());
        assert!(check(&map, &call(json!({"region": "Hello"})), &h(&[("region", "=?base64?SGVsbG8?=")])).is_err());
        assert!(check(&map, &call(json!({"region": "Hello"})), &h(&[("region", "=?base64?SGVs!!!bG8=?=")])).is_err());
        assert!(check(&map, &call(json!({"region": "Hello"})), &h(&[("region", "Bye")])).is_err());
        assert!(check(&map, &call(json!({"region": "Hello"})), &h(&[])).is_err(), "absent");
        assert!(check(&map, &call(json!({"region": null})), &h(&[])).is_ok(), "a null value is not mirrored");
        assert!(check(&map, &call(json!({"n": 42})), &h(&[("n", "42.0")])).is_ok(), "numbers compare as numbers");
        assert!(check(&map, &call(json!({"x": 1})), &h(&[])).is_ok());
        assert!(check(&map, &Some(json!({"name": "other"})), &h(&[])).is_ok(), "a tool it does not know");
    }
}
