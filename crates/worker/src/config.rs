//! The core's configuration, built from the Worker's environment on every request.
//!
//! | binding | kind | becomes |
//! |---|---|---|
//! | `MCP_PROXY_CONFIG` | var or secret (text, or a JSON object var) | `configFile.text`: the `mcpServers` file |
//! | `MCP_PROXY_API_KEY` | secret, optional | `apiKey` |
//! | `MCP_PROXY_CORS_ORIGIN` | var, optional: `*` or origins separated by commas | `cors.origins` |
//! | `MCP_PROXY_SESSION_KEY` | secret, 32 random bytes as 64 hex digits or base64 (`openssl rand -hex 32`) | `edge.sessionKey`: seals session state into session ids |
//! | `MCP_PROXY_SESSION_MAX_AGE_SECS` | var, optional (default 86400) | `edge.sessionMaxAgeSecs`: how long a session id opens |
//! | `MCP_PROXY_REQUEST_TIMEOUT_MS` | var, optional (default 300000) | `requestTimeoutMs`: how long an upstream may take |
//!
//! The core runs in edge mode (`edge`): nothing outlives a request, so a session travels in
//! its id, sealed; stdio servers are refused by name. The Worker serves Streamable HTTP only
//! (legacy SSE needs a long-lived session in one place), and it is not reached over loopback,
//! so a browser's `Origin` must be one of `MCP_PROXY_CORS_ORIGIN` (or it must be `*`).

use std::cell::RefCell;
use std::fmt;

use mcp_proxy_core::Config;
use serde_json::{json, Map, Value};
use worker::js_sys::{Reflect, JSON};
use worker::wasm_bindgen::JsValue;
use worker::Env;

/// The configuration file (`mcpServers` format).
pub(crate) const CONFIG: &str = "MCP_PROXY_CONFIG";
/// The API key clients must present.
pub(crate) const API_KEY: &str = "MCP_PROXY_API_KEY";
/// The allowed CORS origins.
pub(crate) const CORS_ORIGIN: &str = "MCP_PROXY_CORS_ORIGIN";
/// The key that seals session state into session ids.
pub(crate) const SESSION_KEY: &str = "MCP_PROXY_SESSION_KEY";
/// How long a sealed session id stays valid, in seconds.
pub(crate) const SESSION_MAX_AGE: &str = "MCP_PROXY_SESSION_MAX_AGE_SECS";
/// How long an upstream may take to answer a request, in milliseconds.
pub(crate) const REQUEST_TIMEOUT: &str = "MCP_PROXY_REQUEST_TIMEOUT_MS";

/// Why the environment does not make a configuration.
#[derive(Debug)]
pub(crate) struct EnvError {
    /// The binding at fault.
    binding: &'static str,
    /// What is wrong with it.
    message: String,
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.binding, self.message)
    }
}

thread_local! {
    /// The configuration last built, with the bindings it came from: an isolate serves many
    /// requests, and its bindings rarely change, so the file is parsed and validated once.
    static BUILT: RefCell<Option<(Settings, Config)>> = const { RefCell::new(None) };
}

/// Reads the configuration from the Worker's bindings.
pub(crate) fn from_env(env: &Env) -> Result<Config, EnvError> {
    let settings = Settings {
        config: text(env, CONFIG)?,
        api_key: text(env, API_KEY)?,
        cors_origin: text(env, CORS_ORIGIN)?,
        session_key: text(env, SESSION_KEY)?,
        session_max_age: text(env, SESSION_MAX_AGE)?,
        request_timeout: text(env, REQUEST_TIMEOUT)?,
    };
    let cached = BUILT.with_borrow(|built| built.as_ref().filter(|(s, _)| *s == settings).map(|(_, c)| c.clone()));
    if let Some(config) = cached {
        return Ok(config);
    }
    let config = build(&settings)?;
    BUILT.set(Some((settings, config.clone())));
    Ok(config)
}

/// The bindings, read.
#[derive(PartialEq, Eq)]
struct Settings {
    config: Option<String>,
    api_key: Option<String>,
    cors_origin: Option<String>,
    session_key: Option<String>,
    session_max_age: Option<String>,
    request_timeout: Option<String>,
}

fn build(settings: &Settings) -> Result<Config, EnvError> {
    let Some(file) = settings.config.as_deref().filter(|text| !text.trim().is_empty()) else {
        return Err(EnvError {
            binding: CONFIG,
            message: "missing: set it to a configuration file with \"mcpServers\" (a var or a secret)".into(),
        });
    };
    let mut document = Map::new();
    document.insert("configFile".into(), json!({ "text": file }));
    document.insert("transports".into(), json!({ "sse": false, "stream": true }));
    if let Some(key) = &settings.api_key {
        document.insert("apiKey".into(), Value::String(key.clone()));
    }
    if let Some(origins) = &settings.cors_origin {
        let origins: Vec<&str> = origins.split(',').map(str::trim).filter(|o| !o.is_empty()).collect();
        document.insert("cors".into(), json!({ "origins": origins }));
    }
    let Some(session_key) = &settings.session_key else {
        return Err(EnvError {
            binding: SESSION_KEY,
            message: "missing: set a secret of 32 random bytes (`openssl rand -hex 32 | wrangler secret put MCP_PROXY_SESSION_KEY`)"
                .into(),
        });
    };
    if let Some(timeout) = number(settings.request_timeout.as_deref(), REQUEST_TIMEOUT)? {
        document.insert("requestTimeoutMs".into(), json!(timeout));
    }
    // Edge mode: sessions sealed into their ids, stdio servers refused by name.
    let mut edge = json!({ "sessionKey": session_key });
    if let Some(max_age) = number(settings.session_max_age.as_deref(), SESSION_MAX_AGE)? {
        edge["sessionMaxAgeSecs"] = json!(max_age);
    }
    document.insert("edge".into(), edge);
    Config::from_json(&Value::Object(document).to_string())
        .map_err(|error| EnvError { binding: binding_of(&error.path), message: error.to_string() })
}

/// A whole number from a var, if set.
fn number(text: Option<&str>, binding: &'static str) -> Result<Option<u64>, EnvError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    match text.parse::<u64>() {
        Ok(value) if value > 0 => Ok(Some(value)),
        _ => Err(EnvError { binding, message: format!("must be a whole number above 0, got {text:?}") }),
    }
}

/// The binding a core configuration path came from.
fn binding_of(path: &str) -> &'static str {
    let field = path.split(['.', '[']).next().unwrap_or(path);
    match field {
        "apiKey" => API_KEY,
        "cors" => CORS_ORIGIN,
        "edge" => SESSION_KEY,
        "requestTimeoutMs" => REQUEST_TIMEOUT,
        _ => CONFIG,
    }
}

/// A string binding; a JSON object var (`[vars]` table in wrangler.toml) as its JSON text.
fn text(env: &Env, name: &'static str) -> Result<Option<String>, EnvError> {
    let value = Reflect::get(env.as_ref(), &JsValue::from_str(name))
        .map_err(|error| EnvError { binding: name, message: format!("cannot be read: {error:?}") })?;
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    if let Some(text) = value.as_string() {
        return Ok(Some(text));
    }
    if value.is_object() {
        let text = JSON::stringify(&value)
            .map_err(|error| EnvError { binding: name, message: format!("cannot be written as JSON: {error:?}") })?;
        return Ok(text.as_string());
    }
    Err(EnvError { binding: name, message: "must be a string".into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(config: &str) -> Settings {
        Settings {
            config: Some(config.into()),
            api_key: None,
            cors_origin: None,
            session_key: Some(KEY.into()),
            session_max_age: None,
            request_timeout: None,
        }
    }

    const KEY: &str = "3f9a0c4e7b21d86f5a0e9c3b7d14f2a68e5c0b9d3a7f1e24c6b8d0a5f3e7c91b";
    const REMOTE: &str = r#"{"mcpServers": {"a": {"type": "streamable-http", "url": "https://a.example/mcp"}}}"#;

    #[test]
    fn builds_a_streamable_only_config() {
        let config = build(&settings(REMOTE)).expect("valid");
        assert!(config.transports.stream && !config.transports.sse);
        assert_eq!(config.servers.len(), 1);
    }

    #[test]
    fn names_the_binding_at_fault() {
        let error = build(&Settings { config: None, ..settings(REMOTE) }).expect_err("missing");
        assert_eq!(error.binding, CONFIG);
        let error = build(&Settings { api_key: Some(String::new()), ..settings(REMOTE) }).expect_err("empty key");
        assert_eq!(error.binding, API_KEY);
        let error = build(&settings(r#"{"mcpServers": []}"#)).expect_err("not an object");
        assert_eq!(error.binding, CONFIG);
        assert!(error.to_string().starts_with("MCP_PROXY_CONFIG: mcpServers"), "{error}");
        let error = build(&Settings { session_key: None, ..settings(REMOTE) }).expect_err("no key");
        assert_eq!(error.binding, SESSION_KEY);
        let error = build(&Settings { session_key: Some("short".into()), ..settings(REMOTE) }).expect_err("short key");
        assert_eq!(error.binding, SESSION_KEY);
        assert!(!error.to_string().contains("short"), "the secret must not be echoed: {error}");
    }

    #[test]
    fn refuses_stdio_servers_by_name() {
        let file = r#"{"mcpServers": {"remote": {"url": "https://a.example/mcp", "type": "streamable-http"},
                                       "local-tool": {"command": "node"}}}"#;
        let error = build(&settings(file)).expect_err("stdio at the edge");
        assert_eq!(error.binding, CONFIG);
        assert!(error.to_string().contains("local-tool"), "{error}");
    }

    #[test]
    fn reads_the_optional_numbers() {
        let config = build(&Settings {
            session_max_age: Some("3600".into()),
            request_timeout: Some(" 5000 ".into()),
            ..settings(REMOTE)
        })
        .expect("valid");
        assert_eq!(config.request_timeout_ms, 5000);
        assert_eq!(config.edge.map(|e| e.session_max_age_secs), Some(3600));
        let error = build(&Settings { request_timeout: Some("soon".into()), ..settings(REMOTE) }).expect_err("nan");
        assert_eq!(error.binding, REQUEST_TIMEOUT);
        let error = build(&Settings { session_max_age: Some("0".into()), ..settings(REMOTE) }).expect_err("zero");
        assert_eq!(error.binding, SESSION_MAX_AGE);
    }

    #[test]
    fn splits_cors_origins() {
        let config =
            build(&Settings { cors_origin: Some("https://a.example, https://b.example".into()), ..settings(REMOTE) })
                .expect("valid");
        assert_eq!(config.cors.origins, ["https://a.example", "https://b.example"]);
    }
}
