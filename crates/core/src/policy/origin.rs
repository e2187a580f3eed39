//! `Origin` and `Host` validation against DNS rebinding and cross-site requests.
//!
//! A browser page from another site can reach a server on the user's machine or network; the
//! `Origin` header gives it away, and a rebound DNS name shows in `Host`. The rules, per
//! connection:
//!
//! - arrived on a loopback address: `Host` must name a loopback host, and a present `Origin`
//!   must be a loopback origin or one of the configured CORS origins (a `*` does not open this:
//!   it would undo the rebinding protection);
//! - arrived on any other address (the proxy listens beyond loopback, or is a Worker): a
//!   present `Origin` must be one of the configured CORS origins, or `*` must be configured
//!   explicitly.
//!
//! Requests without `Origin` (non-browser clients) pass.

use crate::config::Config;
use crate::wire::http::HttpRequest;

/// The outcome of an Origin/Host check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginDecision {
    /// The request may proceed.
    Allow,
    /// Refuse with 403.
    Deny(OriginDenial),
}

/// Why a request's `Origin` or `Host` is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OriginDenial {
    /// On a loopback connection, `Host` names something else (a rebound DNS name).
    #[error("Host {0:?} is not a loopback name")]
    HostNotLoopback(String),
    /// `Origin` is neither configured nor, on a loopback connection, a loopback origin.
    #[error("Origin {origin:?} is not allowed{}", if *.beyond_loopback { " (allow it with --cors-origin)" } else { "" })]
    OriginNotAllowed {
        /// The origin, shortened for the message.
        origin: String,
        /// The connection arrived beyond loopback (configuring the origin would open it).
        beyond_loopback: bool,
    },
}

/// Checks `Origin` and `Host` of `request` under `config`.
pub fn check_origin(config: &Config, request: &HttpRequest) -> OriginDecision {
    if !config.origin_check {
        return OriginDecision::Allow;
    }
    if request.via_loopback {
        if let Some(host) = request.header("host") {
            if !is_loopback_host(strip_port(host)) {
                return OriginDecision::Deny(OriginDenial::HostNotLoopback(
                    crate::proxy::truncate(host, 100).to_owned(),
                ));
            }
        }
    }
    let Some(origin) = request.header("origin") else {
        return OriginDecision::Allow;
    };
    let origins = &config.cors.origins;
    let listed = origins.iter().any(|allowed| allowed != "*" && allowed.eq_ignore_ascii_case(origin));
    let allowed = if request.via_loopback {
        listed || origin_host(origin).is_some_and(is_loopback_host)
    } else {
        listed || origins.iter().any(|allowed| allowed == "*")
    };
    if allowed {
        OriginDecision::Allow
    } else {
        OriginDecision::Deny(OriginDenial::OriginNotAllowed {
            origin: crate::proxy::truncate(origin, 100).to_owned(),
            beyond_loopback: !request.via_loopback,
        })
    }
}

/// The host of an origin like `http://localhost:3000`; `None` for `null` or garbage.
fn origin_host(origin: &str) -> Option<&str> {
    let (scheme, rest) = origin.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let authority = rest.split('/').next()?;
    Some(strip_port(authority))
}

/// `host:port` or `[v6]:port` without the port (brackets kept off).
fn strip_port(authority: &str) -> &str {
    let authority = authority.trim();
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host == "::1"
        || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::http::tests::request;

    fn config(extra: &str) -> Config {
        Config::from_json(&format!(r#"{{"server":{{"command":"x"}}{extra}}}"#)).expect("valid")
    }

    fn check(config: &Config, headers: &[(&str, &str)]) -> bool {
        check_origin(config, &request("POST", "/mcp", headers)) == OriginDecision::Allow
    }

    #[test]
    fn loopback_bind_allows_loopback_origins_only() {
        let c = config("");
        assert!(check(&c, &[("host", "127.0.0.1:8080")]));
        assert!(check(&c, &[("host", "localhost:8080"), ("origin", "http://localhost:6274")]));
        assert!(check(&c, &[("host", "[::1]:8080"), ("origin", "http://[::1]:3000")]));
        assert!(check(&c, &[("origin", "http://127.0.0.1")]));
        assert!(!check(&c, &[("host", "127.0.0.1:8080"), ("origin", "https://evil.example")]));
        assert!(!check(&c, &[("origin", "null")]));
        assert!(!check(&c, &[("origin", "http://localhost.evil.example")]));
    }

    #[test]
    fn rebound_host_names_are_refused_on_loopback() {
        let c = config("");
        assert!(!check(&c, &[("host", "evil.example:8080")]));
        assert!(!check(&c, &[("host", "127.0.0.1.evil.example")]));
    }

    #[test]
    fn configured_origins_and_public_connections() {
        let listed = config(r#","cors":{"origins":["https://app.example"]}"#);
        assert!(check(&listed, &[("origin", "https://app.example")]));
        assert!(!check(&listed, &[("origin", "https://other.example")]));
        let remote = |config: &Config, headers: &[(&str, &str)]| {
            let mut request = request("POST", "/mcp", headers);
            request.via_loopback = false;
            check_origin(config, &request) == OriginDecision::Allow
        };
        let default = config("");
        assert!(remote(&default, &[("host", "mcp.example")]), "no Origin: not a browser");
        assert!(!remote(&default, &[("host", "mcp.example"), ("origin", "https://anything.example")]));
        assert!(!remote(&default, &[("origin", "http://localhost:3000")]), "a LAN client's localhost is not ours");
        let wildcard = config(r#","cors":{"origins":["*"]}"#);
        assert!(remote(&wildcard, &[("origin", "https://anything.example")]), "an explicit * opens it");
        assert!(!check(&wildcard, &[("origin", "https://anything.example")]), "but not on loopback");
        assert!(remote(&listed, &[("origin", "https://app.example")]));
        assert!(!remote(&listed, &[("origin", "https://other.example")]));
        let off = config(r#","originCheck":false"#);
        assert!(check(&off, &[("host", "evil.example"), ("origin", "https://evil.example")]));
    }
}
