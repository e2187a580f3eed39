//! What environment a stdio child gets.
//!
//! The shell hands its own environment to the core once (`Config::environment`); the core
//! decides the whole environment of every child and the shell starts it with exactly that. A
//! child never sees the proxy's own secrets: no `MCP_PROXY_*` variable, and no variable whose
//! value is one of the proxy's credentials (the API key, an admin token, the session key, a
//! `--config-header` value). Beyond that:
//!
//! - the single-command bridge (`mcp-proxy -- cmd`) passes the user's environment on, since
//!   that is how users hand tokens to their server;
//! - servers of a configuration file get the short list the official SDKs' stdio transports
//!   pass ([`DEFAULT_INHERITED`]) plus their configured `env`, unless their options say
//!   `"inheritEnv": true` (or the proxy runs with `--pass-environment`).

/// The variables a configured server inherits by default: what the official SDKs' stdio
/// transports pass on POSIX (`HOME`, `LOGNAME`, `PATH`, `SHELL`, `TERM`, `USER`), and the
/// locale, time zone and temporary directory, which programs need to behave.
pub const DEFAULT_INHERITED: [&str; 11] =
    ["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"];

/// The prefix of the proxy's own variables, never passed on.
pub const OWN_PREFIX: &str = "MCP_PROXY_";

/// The environment of a child: `parent` filtered (all of it with `inherit_all`, else the
/// default list), minus the proxy's secrets, then the server's own `configured` variables
/// (which win, and are passed as written: the operator put them there).
pub fn child_environment(
    parent: &[(String, String)],
    inherit_all: bool,
    secrets: &[&str],
    configured: &[(String, String)],
) -> Vec<(String, String)> {
    let secret = |value: &str| !value.is_empty() && secrets.iter().any(|s| !s.is_empty() && *s == value);
    let mut environment: Vec<(String, String)> = parent
        .iter()
        .filter(|(name, value)| {
            let wanted = inherit_all || DEFAULT_INHERITED.contains(&name.as_str());
            // Exported shell functions (`BASH_FUNC_…`, values starting with `()`) are skipped, as
            // the SDKs do: they are code, not settings.
            wanted && !name.starts_with(OWN_PREFIX) && !secret(value) && !value.starts_with("()")
        })
        .filter(|(name, _)| !configured.iter().any(|(own, _)| own == name))
        .cloned()
        .collect();
    environment.extend(configured.iter().cloned());
    environment
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn secrets_never_reach_a_child() {
        let parent = vars(&[
            ("PATH", "/usr/bin"),
            ("MCP_PROXY_API_KEY", "k"),
            ("MCP_PROXY_ANYTHING", "x"),
            ("COPY_OF_KEY", "the-api-key"),
            ("AWS_SECRET_ACCESS_KEY", "aws"),
            ("BASH_FUNC_x%%", "() { :; }"),
        ]);
        let all = child_environment(&parent, true, &["the-api-key"], &[]);
        assert_eq!(all, vars(&[("PATH", "/usr/bin"), ("AWS_SECRET_ACCESS_KEY", "aws")]));
        let listed = child_environment(&parent, false, &["the-api-key"], &vars(&[("TOKEN", "t"), ("PATH", "/opt")]));
        assert_eq!(listed, vars(&[("TOKEN", "t"), ("PATH", "/opt")]), "the default list, then the server's own");
    }
}
