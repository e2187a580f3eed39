//! JSON-RPC 2.0 messages: parsing from bytes, classification, serialization.
//!
//! Parsing is strict about the envelope (`jsonrpc: "2.0"`, id and method types) and
//! keeps `params`, `result` and `error.data` as opaque JSON values.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::codes;

/// A request id: a string or an integer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    /// An integer id.
    Number(i64),
    /// A string id.
    String(String),
}

impl RequestId {
    fn from_value(value: &Value) -> Option<RequestId> {
        match value {
            Value::String(text) => Some(RequestId::String(text.clone())),
            Value::Number(number) => number.as_i64().map(RequestId::Number),
            _ => None,
        }
    }
}

/// The `error` member of a JSON-RPC error response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// The error code.
    pub code: i64,
    /// A short description.
    pub message: String,
    /// Optional detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorObject {
    /// Builds an error object without data.
    pub fn new(code: i64, message: impl Into<String>) -> ErrorObject {
        ErrorObject { code, message: message.into(), data: None }
    }
}

/// A request: expects a response with the same id.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The id the sender chose.
    pub id: RequestId,
    /// The method name.
    pub method: String,
    /// Parameters (an object or an array), if any.
    pub params: Option<Value>,
}

/// A notification: no id, no response.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// The method name.
    pub method: String,
    /// Parameters (an object or an array), if any.
    pub params: Option<Value>,
}

/// A response: the result of a request, or its error.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// The id of the request answered; `None` only for errors about unreadable requests.
    pub id: Option<RequestId>,
    /// The result or the error.
    pub outcome: Result<Value, ErrorObject>,
}

/// Any JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A notification.
    Notification(Notification),
    /// A response (result or error).
    Response(Response),
}

/// What an HTTP body or a stdio line held.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// One message.
    Single(Message),
    /// A JSON-RPC batch (protocol revision 2025-03-26 allowed these).
    Batch(Vec<Message>),
}

/// Why bytes were not a JSON-RPC message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The bytes are not JSON.
    #[error("parse error: {0}")]
    NotJson(String),
    /// A batch holds more than [`MAX_BATCH`] messages.
    #[error("invalid request: a batch may hold at most {MAX_BATCH} messages")]
    BatchTooLarge,
    /// The JSON is not a JSON-RPC 2.0 message; the id is kept when one could be read.
    #[error("invalid request: {reason}")]
    Invalid {
        /// What is wrong.
        reason: &'static str,
        /// The id of the offending message, when it had a usable one.
        id: Option<RequestId>,
    },
}

impl ParseError {
    /// The JSON-RPC error response that answers this error.
    pub fn to_response(&self) -> Response {
        match self {
            ParseError::NotJson(_) => {
                Response::error(None, ErrorObject::new(codes::PARSE_ERROR, "Parse error: body is not valid JSON"))
            }
            ParseError::BatchTooLarge => Response::error(
                None,
                ErrorObject::new(
                    codes::INVALID_REQUEST,
                    format!("Invalid Request: a batch may hold at most {MAX_BATCH} messages"),
                ),
            ),
            ParseError::Invalid { reason, id } => Response::error(
                id.clone(),
                ErrorObject::new(codes::INVALID_REQUEST, format!("Invalid Request: {reason}")),
            ),
        }
    }
}

impl Response {
    /// A success response.
    pub fn result(id: RequestId, result: Value) -> Response {
        Response { id: Some(id), outcome: Ok(result) }
    }

    /// An error response.
    pub fn error(id: Option<RequestId>, error: ErrorObject) -> Response {
        Response { id, outcome: Err(error) }
    }
}

/// The most messages one batch may hold; parsing stops as soon as a batch holds more.
pub const MAX_BATCH: usize = 100;

impl Payload {
    /// Parses an HTTP body or a stdio line.
    pub fn parse(bytes: &[u8]) -> Result<Payload, ParseError> {
        let too_large = std::cell::Cell::new(false);
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let parsed = serde::de::DeserializeSeed::deserialize(Bounded { too_large: &too_large }, &mut deserializer)
            .and_then(|value| deserializer.end().map(|()| value));
        let value = match parsed {
            Ok(value) => value,
            Err(_) if too_large.get() => return Err(ParseError::BatchTooLarge),
            Err(error) => return Err(ParseError::NotJson(error.to_string())),
        };
        match value {
            Value::Array(items) if items.is_empty() => Err(ParseError::Invalid { reason: "empty batch", id: None }),
            Value::Array(items) => {
                items.into_iter().map(Message::from_value).collect::<Result<_, _>>().map(Payload::Batch)
            }
            other => Message::from_value(other).map(Payload::Single),
        }
    }
}

/// A JSON value whose top-level array, if it is one, holds at most [`MAX_BATCH`] items: a
/// huge batch of tiny requests is refused without building it.
struct Bounded<'a> {
    too_large: &'a std::cell::Cell<bool>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON-RPC message or batch")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            if items.len() == MAX_BATCH {
                self.too_large.set(true);
                return Err(serde::de::Error::custom("batch too large"));
            }
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

impl Message {
    /// Parses one message (not a batch).
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| ParseError::NotJson(e.to_string()))?;
        Message::from_value(value)
    }

    /// Classifies a JSON value as a message.
    pub fn from_value(value: Value) -> Result<Message, ParseError> {
        let Value::Object(mut object) = value else {
            return Err(ParseError::Invalid { reason: "a message must be a JSON object", id: None });
        };
        let raw_id = object.remove("id");
        let id = raw_id.as_ref().and_then(RequestId::from_value);
        let invalid = |reason| ParseError::Invalid { reason, id: id.clone() };
        if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(invalid("\"jsonrpc\" must be \"2.0\""));
        }
        if raw_id.is_some() && id.is_none() && !matches!(raw_id, Some(Value::Null)) {
            return Err(invalid("\"id\" must be a string or an integer"));
        }
        if let Some(method) = object.remove("method") {
            let Value::String(method) = method else {
                return Err(invalid("\"method\" must be a string"));
            };
            let params = object.remove("params");
            if !matches!(params, None | Some(Value::Object(_)) | Some(Value::Array(_))) {
                return Err(invalid("\"params\" must be an object or an array"));
            }
            return match (raw_id, id.clone()) {
                (None, _) => Ok(Message::Notification(Notification { method, params })),
                (Some(_), Some(id)) => Ok(Message::Request(Request { id, method, params })),
                (Some(_), None) => Err(invalid("a request id must not be null")),
            };
        }
        match (object.remove("result"), object.remove("error")) {
            (Some(result), None) if id.is_some() => {
                Ok(Message::Response(Response { id: id.clone(), outcome: Ok(result) }))
            }
            (None, Some(error)) => {
                let error =
                    serde_json::from_value::<ErrorObject>(error).map_err(|_| invalid("malformed \"error\" object"))?;
                Ok(Message::Response(Response { id: id.clone(), outcome: Err(error) }))
            }
            (Some(_), None) => Err(invalid("a result needs an id")),
            (Some(_), Some(_)) => Err(invalid("a response has \"result\" or \"error\", not both")),
            (None, None) => Err(invalid("neither a request, a notification nor a response")),
        }
    }

    /// The method name of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request(request) => Some(&request.method),
            Message::Notification(notification) => Some(&notification.method),
            Message::Response(_) => None,
        }
    }

    /// Serializes the message as compact JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        let wire = match self {
            Message::Request(r) => {
                Wire { id: Some(Some(&r.id)), method: Some(&r.method), params: r.params.as_ref(), ..Wire::default() }
            }
            Message::Notification(n) => Wire { method: Some(&n.method), params: n.params.as_ref(), ..Wire::default() },
            Message::Response(r) => match &r.outcome {
                Ok(result) => Wire { id: Some(r.id.as_ref()), result: Some(result), ..Wire::default() },
                Err(error) => Wire { id: Some(r.id.as_ref()), error: Some(error), ..Wire::default() },
            },
        };
        serialize(&wire)
    }
}

/// Serializes a batch of messages as a JSON array.
pub fn batch_to_bytes(messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 * messages.len() + 2);
    out.push(b'[');
    for (index, message) in messages.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&message.to_bytes());
    }
    out.push(b']');
    out
}

#[derive(Serialize)]
struct Wire<'a> {
    jsonrpc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Option<&'a RequestId>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ErrorObject>,
}

impl Default for Wire<'_> {
    fn default() -> Self {
        Wire { jsonrpc: "2.0", id: None, method: None, params: None, result: None, error: None }
    }
}

fn serialize(value: &impl Serialize) -> Vec<u8> {
    // Serializing a tree of strings, numbers and `Value`s into a Vec cannot fail:
    // every map key is a string and no type here has a fallible Serialize impl.
    serde_json::to_vec(value).expect("a JSON-RPC message always serializes")
}

/// Reads `params[key]` when params is an object.
pub fn param<'a>(params: &'a Option<Value>, key: &str) -> Option<&'a Value> {
    params.as_ref().and_then(Value::as_object).and_then(|object| object.get(key))
}

/// Returns `params` as a mutable object, if it is one.
pub fn params_object(params: &mut Option<Value>) -> Option<&mut Map<String, Value>> {
    params.as_mut().and_then(Value::as_object_mut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Result<Message, ParseError> {
        Message::parse(text.as_bytes())
    }

    #[test]
    fn classifies_the_four_kinds() {
        assert!(matches!(parse(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), Ok(Message::Request(_))));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Message::Notification(_))
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            Ok(Message::Response(Response { outcome: Ok(_), .. }))
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#),
            Ok(Message::Response(Response { id: None, outcome: Err(_) }))
        ));
    }

    #[test]
    fn rejects_bad_envelopes_with_the_id_when_readable() {
        assert!(matches!(parse("{"), Err(ParseError::NotJson(_))));
        assert!(matches!(parse("[]"), Err(ParseError::Invalid { .. })));
        assert!(matches!(
            parse(r#"{"id":1,"method":"x"}"#),
            Err(ParseError::Invalid { id: Some(RequestId::Number(1)), .. })
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#),
            Err(ParseError::Invalid { id: None, .. })
        ));
        assert!(matches!(parse(r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#), Err(ParseError::Invalid { .. })));
        assert!(matches!(parse(r#"{"jsonrpc":"2.0","id":1,"method":7}"#), Err(ParseError::Invalid { .. })));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#),
            Err(ParseError::Invalid { .. })
        ));
        assert!(matches!(parse(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#), Err(ParseError::Invalid { .. })));
        assert!(matches!(parse(r#"{"jsonrpc":"2.0","result":1}"#), Err(ParseError::Invalid { .. })));
        assert!(matches!(parse(r#"{"jsonrpc":"2.0","id":1}"#), Err(ParseError::Invalid { .. })));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":""}}"#),
            Err(ParseError::Invalid { .. })
        ));
        assert!(matches!(parse("42"), Err(ParseError::Invalid { .. })));
    }

    #[test]
    fn round_trips_through_bytes() {
        let messages = [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#,
            r#"{"jsonrpc":"2.0","id":"x","result":{"ok":true}}"#,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}"#,
        ];
        for text in messages {
            let message = parse(text).expect("valid");
            let again = Message::parse(&message.to_bytes()).expect("serialized form parses");
            assert_eq!(message, again);
            let expected: Value = serde_json::from_str(text).expect("valid json");
            let actual: Value = serde_json::from_slice(&message.to_bytes()).expect("valid json");
            assert_eq!(expected, actual);
        }
    }

    #[test]
    fn parses_batches() {
        let payload = Payload::parse(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"n"}]"#);
        assert!(matches!(payload, Ok(Payload::Batch(ref items)) if items.len() == 2));
        assert!(matches!(Payload::parse(b"[1]"), Err(ParseError::Invalid { .. })));
        let ping = r#"{"jsonrpc":"2.0","method":"n"}"#;
        let most = format!("[{}]", vec![ping; MAX_BATCH].join(","));
        assert!(matches!(Payload::parse(most.as_bytes()), Ok(Payload::Batch(items)) if items.len() == MAX_BATCH));
        let huge = format!("[{}]", vec![ping; 100_000].join(","));
        assert_eq!(Payload::parse(huge.as_bytes()), Err(ParseError::BatchTooLarge));
        assert!(matches!(Payload::parse(b"[1, 2"), Err(ParseError::NotJson(_))));
        assert!(matches!(Payload::parse(br#"{"jsonrpc":"2.0","method":"n"} x"#), Err(ParseError::NotJson(_))));
        let bytes = batch_to_bytes(&[Message::Response(Response::result(RequestId::Number(1), json!({})))]);
        assert_eq!(bytes, br#"[{"jsonrpc":"2.0","id":1,"result":{}}]"#);
    }
}
