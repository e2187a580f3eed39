//! Reading typed fields out of a configuration's JSON, every error naming the field by path.

use serde_json::{Map, Value};

use crate::error::ConfigError;

/// The path of field `key` of the object at `path` (`.` is the document itself).
pub(super) fn field_path(path: &str, key: &str) -> String {
    if path == "." {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    value.as_object().ok_or_else(|| ConfigError::new(path, format!("must be an object, got {}", kind(value))))
}

pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn string(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, ConfigError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(ConfigError::new(field_path(path, key), format!("must be a string, got {}", kind(other)))),
    }
}

pub(super) fn boolean(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<bool>, ConfigError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(other) => {
            Err(ConfigError::new(field_path(path, key), format!("must be true or false, got {}", kind(other))))
        }
    }
}

pub(super) fn strings(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<Vec<String>>, ConfigError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                item.as_str().map(str::to_owned).ok_or_else(|| {
                    ConfigError::new(
                        format!("{}[{index}]", field_path(path, key)),
                        format!("must be a string, got {}", kind(item)),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => {
            Err(ConfigError::new(field_path(path, key), format!("must be an array of strings, got {}", kind(other))))
        }
    }
}

/// A list of credentials: strings, none of them empty (an empty token, say from an unset
/// `${VAR}`, would otherwise accept an empty `Authorization`).
pub(super) fn tokens(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<Vec<String>>, ConfigError> {
    let list = strings(map, key, path)?;
    if let Some(index) = list.iter().flatten().position(|token| token.trim().is_empty()) {
        return Err(ConfigError::new(
            format!("{}[{index}]", field_path(path, key)),
            "must not be empty (an unset ${VAR}?): an empty token would let anyone in",
        ));
    }
    Ok(list)
}

pub(super) fn string_map(
    map: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Vec<(String, String)>, ConfigError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(entries)) => entries
            .iter()
            .map(|(name, value)| match value {
                Value::String(text) => Ok((name.clone(), text.clone())),
                other => Err(ConfigError::new(
                    format!("{}.{name}", field_path(path, key)),
                    format!("must be a string, got {}", kind(other)),
                )),
            })
            .collect(),
        Some(other) => {
            Err(ConfigError::new(field_path(path, key), format!("must be an object of strings, got {}", kind(other))))
        }
    }
}

pub(super) fn http_url(url: &str, path: &str) -> Result<String, ConfigError> {
    let lower = url.to_ascii_lowercase();
    if (lower.starts_with("http://") || lower.starts_with("https://")) && url.len() > "http://".len() + 1 {
        Ok(url.to_owned())
    } else {
        Err(ConfigError::new(path, format!("must be an http:// or https:// URL, got {url:?}")))
    }
}

/// A timeout: a number of nanoseconds (Go's `time.Duration`) or a string like `30s`, `500ms`, `2m`.
pub(super) fn duration_ms(value: Option<&Value>, path: &str) -> Result<Option<u64>, ConfigError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number
            .as_u64()
            .map(|nanos| Some(nanos / 1_000_000))
            .ok_or_else(|| ConfigError::new(path, "must be a positive whole number of nanoseconds")),
        Some(Value::String(text)) => {
            let text = text.trim();
            let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
            let (digits, unit) = text.split_at(split);
            let amount: u64 =
                digits.parse().map_err(|_| ConfigError::new(path, format!("not a duration: {text:?}")))?;
            let factor = match unit {
                "ms" => 1,
                "s" | "" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                _ => return Err(ConfigError::new(path, format!("unknown unit in {text:?} (use ms, s, m or h)"))),
            };
            Ok(Some(amount.saturating_mul(factor)))
        }
        Some(other) => Err(ConfigError::new(path, format!("must be a duration, got {}", kind(other)))),
    }
}
