//! Who may reach what: decided from a request's head alone, before its body is read.
//!
//! The order of the checks is the order an attacker meets them (after `GET /ping`, which
//! answers anyone): the DNS-rebinding check
//! (`Origin`, `Host`), the API key, then the credential of what the path leads to — the
//! runtime server API and temporary servers need an admin credential (and are off without
//! one), a server's endpoints need that server's own tokens, and the merged endpoint serves
//! exactly the servers whose own check the credential passes. A server named with a path
//! token (`fetch/s3cret`) joins a merged session only through its header tokens, since a path
//! token cannot be presented there.

use crate::config::Config;
use crate::ids::ServerId;
use crate::policy::auth::{bearer_token, check_api_key, check_bearer_token, constant_time_eq, AuthDecision};
use crate::policy::origin::{check_origin, OriginDecision};
use crate::route::{route, Endpoint, Route, Target};
use crate::wire::http::HttpRequest;

/// The path prefix of the runtime server API.
pub(crate) const API: &str = "/api/servers";

/// What a request may go on to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A CORS preflight (`OPTIONS`).
    Preflight,
    /// The health check (`GET /ping`).
    Ping,
    /// The runtime server API, with an admin credential.
    Admin,
    /// `POST` on the merged SSE endpoint with an admin credential: a temporary server.
    Temporary,
    /// An MCP endpoint; `servers` are those the credential reaches (the one server of a
    /// per-server endpoint, the admitted ones of the merged endpoint).
    Endpoint {
        /// Where the path leads.
        route: Route,
        /// The servers this request may reach.
        servers: Vec<ServerId>,
    },
}

/// Why a request is refused before anything else happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The HTTP status.
    pub(crate) status: u16,
    /// Add a `WWW-Authenticate: Bearer` challenge (401).
    pub(crate) challenge: bool,
    /// The message of the JSON-RPC error body.
    pub(crate) message: String,
    /// Worth a warning in the log (a browser or rebinding attempt).
    pub(crate) log: bool,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal { status, challenge: status == 401, message: message.into(), log: false }
    }
}

/// Decides what `request` may reach under `config`, from its head alone.
pub(crate) fn admit(config: &Config, request: &HttpRequest) -> Result<Admission, Refusal> {
    let path = request.path();
    // The health check answers anyone: it reveals nothing and load balancers need it.
    if path == "/ping" && matches!(request.method.as_str(), "GET" | "HEAD") {
        return Ok(Admission::Ping);
    }
    if let OriginDecision::Deny(reason) = check_origin(config, request) {
        return Err(Refusal { log: request.method != "OPTIONS", ..Refusal::new(403, format!("Forbidden: {reason}")) });
    }
    if request.method == "OPTIONS" {
        return Ok(Admission::Preflight);
    }
    if check_api_key(config.api_key.as_deref(), request) == AuthDecision::Deny {
        return Err(Refusal::new(401, "Unauthorized: missing or invalid API key"));
    }
    let is_api = path == API || path.starts_with("/api/servers/");
    if is_api && config.edge.is_some() {
        let message = "Not Found: no runtime server API at the edge (servers come from the Worker's configuration)";
        return Err(Refusal::new(404, message));
    }
    if is_api && !config.is_bridge() {
        return admin(config, request).map(|()| Admission::Admin);
    }
    let Some(found) = route(config, path) else {
        let message = format!("Not Found: no endpoint at {}", crate::proxy::truncate(path, 200));
        return Err(Refusal::new(404, message));
    };
    match found.target {
        Target::Server(server) => {
            let tokens = config.servers.get(server).map(|s| s.options.auth_tokens.as_slice()).unwrap_or_default();
            if check_bearer_token(tokens, request) == AuthDecision::Deny {
                return Err(Refusal::new(401, "Unauthorized: missing or invalid token for this server"));
            }
            Ok(Admission::Endpoint { route: found, servers: vec![server] })
        }
        Target::Merged if found.endpoint == Endpoint::Sse && request.method == "POST" => {
            admin(config, request).map(|()| Admission::Temporary)
        }
        Target::Merged => {
            let servers = merged_servers(config, request);
            if servers.is_empty() {
                return Err(Refusal::new(401, "Unauthorized: this credential reaches no server here"));
            }
            Ok(Admission::Endpoint { route: found, servers })
        }
    }
}

/// Checks an admin credential: the API and temporary servers are off (404) when none is
/// configured, and a client token is no admin token.
fn admin(config: &Config, request: &HttpRequest) -> Result<(), Refusal> {
    let tokens = config.admin_tokens();
    if tokens.is_empty() {
        return Err(Refusal::new(
            404,
            "Not Found: the runtime server API is off (start with --admin-token or set mcpProxy.adminTokens)",
        ));
    }
    match check_bearer_token(&tokens, request) {
        AuthDecision::Allow => Ok(()),
        AuthDecision::Deny => Err(Refusal::new(401, "Unauthorized: missing or invalid admin token")),
    }
}

/// The servers of the merged endpoint whose own token check `request` passes, in
/// configuration order. Temporary servers belong to their one session; a server behind a path
/// token needs header tokens to be reachable here at all.
pub(crate) fn merged_servers(config: &Config, request: &HttpRequest) -> Vec<ServerId> {
    config
        .servers
        .iter()
        .filter(|&(_, entry)| {
            if entry.options.disabled || entry.source == crate::config::file::ServerSource::Temporary {
                return false;
            }
            let tokens = &entry.options.auth_tokens;
            if entry.path_token().is_some() && tokens.is_empty() {
                return false;
            }
            check_bearer_token(tokens, request) == AuthDecision::Allow
        })
        .map(|(index, _)| index)
        .collect()
}

/// The client's `Authorization` header, if the proxy may pass it on to a server configured to
/// see it: never when it is one of the proxy's own credentials (the API key, any server's
/// token, an admin token), since those open doors here and must not leave.
pub(crate) fn forwardable_authorization(config: &Config, request: &HttpRequest) -> Option<String> {
    let value = request.header("authorization")?;
    let presented = bearer_token(value);
    let admin = config.admin_tokens();
    let own = config
        .api_key
        .iter()
        .chain(admin.iter())
        .chain(config.servers.entries().flat_map(|s| s.options.auth_tokens.iter()));
    let mut consumed = false;
    for credential in own {
        consumed |= constant_time_eq(presented.as_bytes(), credential.as_bytes());
    }
    (!consumed).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::http::tests::request;

    fn aggregator(file: &str, extra: &str) -> Config {
        let json = format!(r#"{{"configFile": {{"text": {}}}{extra}}}"#, serde_json::to_string(file).expect("json"));
        Config::from_json(&json).expect("valid")
    }

    const FILE: &str = r#"{"mcpServers": {
        "open": {"command": "o"},
        "locked": {"command": "l", "options": {"authTokens": ["lock"]}},
        "hidden/p4th": {"command": "h"},
        "guarded/p4th": {"command": "g", "options": {"authTokens": ["guard"]}}
    }}"#;

    fn names(config: &Config, servers: &[ServerId]) -> Vec<String> {
        servers.iter().filter_map(|&s| config.servers.get(s)).map(|s| s.name.clone()).collect()
    }

    #[test]
    fn the_merged_endpoint_serves_what_the_credential_opens() {
        let config = aggregator(FILE, "");
        let anonymous = merged_servers(&config, &request("POST", "/mcp", &[]));
        assert_eq!(names(&config, &anonymous), ["open"], "no path-token server without header tokens");
        let locked = merged_servers(&config, &request("POST", "/mcp", &[("authorization", "Bearer lock")]));
        assert_eq!(names(&config, &locked), ["locked", "open"]);
        let guard = merged_servers(&config, &request("POST", "/mcp", &[("authorization", "Bearer guard")]));
        assert_eq!(names(&config, &guard), ["guarded/p4th", "open"]);
    }

    #[test]
    fn a_credential_that_opens_nothing_is_refused() {
        let config = aggregator(r#"{"mcpServers": {"a": {"command": "a", "options": {"authTokens": ["x"]}}}}"#, "");
        let refusal = admit(&config, &request("POST", "/mcp", &[])).expect_err("nothing reachable");
        assert_eq!((refusal.status, refusal.challenge), (401, true));
        let admitted = admit(&config, &request("POST", "/mcp", &[("authorization", "Bearer x")])).expect("x opens a");
        assert!(matches!(admitted, Admission::Endpoint { servers, .. } if servers == [ServerId(0)]));
    }

    #[test]
    fn the_admin_api_is_off_without_an_admin_credential() {
        let file = r#"{"mcpProxy": {"options": {"authTokens": ["client"]}}, "mcpServers": {"a": {"command": "a"}}}"#;
        let off = aggregator(file, "");
        let refusal = admit(&off, &request("GET", "/api/servers", &[("authorization", "Bearer client")]))
            .expect_err("no admin token configured");
        assert_eq!(refusal.status, 404);
        let refusal = admit(&off, &request("POST", "/sse", &[("authorization", "Bearer client")])).expect_err("off");
        assert_eq!(refusal.status, 404);
        let on = aggregator(file, r#", "adminTokens": ["adm"]"#);
        let refusal = admit(&on, &request("GET", "/api/servers", &[("authorization", "Bearer client")]))
            .expect_err("a client token is no admin token");
        assert_eq!(refusal.status, 401);
        assert_eq!(
            admit(&on, &request("GET", "/api/servers", &[("authorization", "Bearer adm")])),
            Ok(Admission::Admin)
        );
        let in_file = r#"{"mcpProxy": {"adminTokens": ["filed"]}, "mcpServers": {"a": {"command": "a"}}}"#;
        assert_eq!(
            admit(&aggregator(in_file, ""), &request("POST", "/sse", &[("authorization", "Bearer filed")])),
            Ok(Admission::Temporary)
        );
    }

    #[test]
    fn the_proxys_own_credentials_are_never_forwarded() {
        let file = r#"{"mcpServers": {"a": {"command": "a", "options": {"authTokens": ["server-token"]}}}}"#;
        let config = aggregator(file, r#", "apiKey": "the-key", "adminTokens": ["adm"]"#);
        for consumed in ["Bearer the-key", "Bearer server-token", "adm", "bearer  adm "] {
            let request = request("POST", "/a/mcp", &[("authorization", consumed)]);
            assert_eq!(forwardable_authorization(&config, &request), None, "{consumed}");
        }
        let theirs = request("POST", "/a/mcp", &[("authorization", "Bearer upstream-oauth")]);
        assert_eq!(forwardable_authorization(&config, &theirs).as_deref(), Some("Bearer upstream-oauth"));
    }
}
