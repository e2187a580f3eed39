//! API key authentication.

use crate::wire::http::HttpRequest;

/// The outcome of an authentication check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthDecision {
    /// The request may proceed.
    Allow,
    /// The request carries no key or a wrong one.
    Deny,
}

/// Checks the `X-API-Key` header (or `Authorization: Bearer <key>`) against `expected`.
///
/// With no key configured every request is allowed. Keys are compared in constant time.
pub fn check_api_key(expected: Option<&str>, request: &HttpRequest) -> AuthDecision {
    let Some(expected) = expected else {
        return AuthDecision::Allow;
    };
    let presented = request.header("x-api-key").or_else(|| {
        let value = request.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    match presented {
        Some(key) if constant_time_eq(key.as_bytes(), expected.as_bytes()) => AuthDecision::Allow,
        _ => AuthDecision::Deny,
    }
}

/// Checks `Authorization: Bearer <token>` (or a bare `<token>`) against a server's tokens.
///
/// With no tokens configured every request is allowed. Each comparison takes constant time.
pub fn check_bearer_token(tokens: &[String], request: &HttpRequest) -> AuthDecision {
    if tokens.is_empty() {
        return AuthDecision::Allow;
    }
    let Some(value) = request.header("authorization") else {
        return AuthDecision::Deny;
    };
    let presented = bearer_token(value);
    let mut matched = false;
    for token in tokens {
        matched |= constant_time_eq(presented.as_bytes(), token.as_bytes());
    }
    if matched {
        AuthDecision::Allow
    } else {
        AuthDecision::Deny
    }
}

/// The token of an `Authorization` value: what follows `Bearer `, or the whole value.
pub fn bearer_token(value: &str) -> &str {
    let value = value.trim();
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => value,
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::http::tests::request;

    #[test]
    fn accepts_the_key_in_either_header() {
        let key = Some("s3cret");
        assert_eq!(check_api_key(key, &request("GET", "/mcp", &[("X-API-Key", "s3cret")])), AuthDecision::Allow);
        assert_eq!(
            check_api_key(key, &request("GET", "/mcp", &[("authorization", "Bearer s3cret")])),
            AuthDecision::Allow
        );
        assert_eq!(
            check_api_key(key, &request("GET", "/mcp", &[("authorization", "bearer  s3cret")])),
            AuthDecision::Allow
        );
    }

    #[test]
    fn denies_missing_or_wrong_keys() {
        let key = Some("s3cret");
        assert_eq!(check_api_key(key, &request("GET", "/mcp", &[])), AuthDecision::Deny);
        assert_eq!(check_api_key(key, &request("GET", "/mcp", &[("x-api-key", "s3cre")])), AuthDecision::Deny);
        assert_eq!(check_api_key(key, &request("GET", "/mcp", &[("x-api-key", "s3cret!")])), AuthDecision::Deny);
        assert_eq!(
            check_api_key(key, &request("GET", "/mcp", &[("authorization", "Basic s3cret")])),
            AuthDecision::Deny
        );
        assert_eq!(check_api_key(None, &request("GET", "/mcp", &[])), AuthDecision::Allow);
    }

    #[test]
    fn bearer_tokens_of_a_server() {
        let tokens = vec!["alpha".to_owned(), "beta".to_owned()];
        assert_eq!(
            check_bearer_token(&tokens, &request("GET", "/x/mcp", &[("authorization", "Bearer beta")])),
            AuthDecision::Allow
        );
        assert_eq!(
            check_bearer_token(&tokens, &request("GET", "/x/mcp", &[("authorization", "alpha")])),
            AuthDecision::Allow
        );
        assert_eq!(
            check_bearer_token(&tokens, &request("GET", "/x/mcp", &[("authorization", "Bearer gamma")])),
            AuthDecision::Deny
        );
        assert_eq!(check_bearer_token(&tokens, &request("GET", "/x/mcp", &[])), AuthDecision::Deny);
        assert_eq!(check_bearer_token(&[], &request("GET", "/x/mcp", &[])), AuthDecision::Allow);
    }

    #[test]
    fn compares_exactly() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abc\0"));
    }
}
