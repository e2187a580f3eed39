//! `${VAR}` expansion in a configuration file's text (for local files, on request).

use crate::error::ConfigError;

/// Reads an environment variable, for `${VAR}` expansion.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Replaces `${NAME}` with the value of environment variable `NAME`; `$$` stays `$`.
pub fn expand_env(text: &str, env: EnvLookup<'_>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(ConfigError::new(".", "unterminated ${ in the file"));
        };
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ConfigError::new(".", format!("not an environment variable name: ${{{name}}}")));
        }
        let value =
            env(name).ok_or_else(|| ConfigError::new(".", format!("environment variable {name} is not set")))?;
        // The value lands inside JSON text: escape it as a JSON string body.
        let encoded = serde_json::to_string(&value).expect("a JSON string always serializes");
        out.push_str(encoded.get(1..encoded.len().saturating_sub(1)).unwrap_or(""));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::config::file::{ConfigFile, UpstreamConfig};

    #[test]
    fn expands_environment_variables_on_request() {
        let env = |name: &str| match name {
            "TOKEN" => Some("se\"cret".to_owned()),
            _ => None,
        };
        let text = r#"{"mcpServers": {"a": {"url": "https://x.example/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}}}}"#;
        let file = ConfigFile::parse(text, Some(&env)).expect("expanded");
        assert!(
            matches!(&file.servers[0].upstream, UpstreamConfig::Sse { headers, .. } if headers[0].1 == "Bearer se\"cret")
        );
        let missing =
            ConfigFile::parse(r#"{"mcpServers": {"a": {"command": "${NOPE}"}}}"#, Some(&env)).expect_err("unset");
        assert!(missing.message.contains("NOPE"));
        assert!(ConfigFile::parse(text, None).is_ok(), "no expansion unless asked");
    }
}
