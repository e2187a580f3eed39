//! Reading the aggregator's configuration: a local file, or an http(s) URL with headers.
//!
//! Errors name the URL without its query string or credentials ([`redacted`]), and a bad
//! `--config-header` is named by its header name only: its value is a credential.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::header::{InvalidHeaderName, InvalidHeaderValue};
use http::{HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mcp_proxy_core::policy::network::{redacted, UrlRefusal};

/// The largest configuration accepted.
const MAX_CONFIG: usize = 16 * 1024 * 1024;
/// How long fetching a remote configuration may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the configuration could not be read. `url` fields hold the URL as logs may show it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigSourceError {
    /// The local file could not be read.
    #[error("{}: cannot read the configuration: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// `--expand-env` was asked for a remote configuration.
    #[error("{url}: --expand-env applies to local files only, not to a remote configuration")]
    ExpandRemote { url: String },
    /// The URL may not be fetched (not https, or not http(s) at all).
    #[error("{url}: {refusal}")]
    Refused { url: String, refusal: UrlRefusal },
    /// No complete answer within [`FETCH_TIMEOUT`].
    #[error("{url}: no answer within {} s", after.as_secs())]
    Timeout { url: String, after: Duration },
    /// TLS for the fetch could not be set up.
    #[error("{url}: TLS: {source}")]
    Tls { url: String, source: rustls::Error },
    /// The URL is not one an HTTP request can be made to.
    #[error("{url}: {source}")]
    BadUrl { url: String, source: http::Error },
    /// A `--config-header` is not `Name: value` (it is not shown: it may be a credential).
    #[error("--config-header: expected \"Name: value\"")]
    HeaderFormat,
    /// A `--config-header` has an invalid name or value.
    #[error("--config-header {name:?}: {reason}")]
    BadHeader { name: String, reason: HeaderProblem },
    /// The request failed (connection, TLS handshake, protocol).
    #[error("{url}: {}", Causes(source))]
    Fetch { url: String, source: hyper_util::client::legacy::Error },
    /// The server answered with a status other than 2xx.
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: StatusCode },
    /// The body could not be read to its end.
    #[error("{url}: {}", Causes(source.as_ref()))]
    Body { url: String, source: Box<dyn std::error::Error + Send + Sync> },
    /// The body is larger than [`MAX_CONFIG`].
    #[error("{url}: the configuration is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    /// The body is not UTF-8 text.
    #[error("{url}: the configuration is not UTF-8")]
    NotUtf8 { url: String },
}

/// What is wrong with a `--config-header`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeaderProblem {
    /// The name is not a valid HTTP header name.
    #[error(transparent)]
    Name(#[from] InvalidHeaderName),
    /// The value is not a valid HTTP header value.
    #[error(transparent)]
    Value(#[from] InvalidHeaderValue),
}

/// Shows an error with its causes ("client error (Connect): tcp connect error: …").
struct Causes<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Whether `source` names a remote configuration rather than a file.
pub(crate) fn is_remote(source: &str) -> bool {
    let lower = source.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// How logs name the configuration at `source`: the path of a file, a URL [`redacted`].
pub(crate) fn display_name(source: &str) -> String {
    if is_remote(source) {
        redacted(source)
    } else {
        source.to_owned()
    }
}

/// Reads the configuration at `source`; `headers` ("Name: value") go with a URL fetch. A
/// remote configuration must come over https (plain http only from a loopback host), and
/// `${VAR}` expansion is for local files only: a remote file must not pull the proxy's
/// environment (its secrets) into a URL.
pub(crate) async fn load(
    source: &str,
    fetch_options: &Fetch<'_>,
    expand_env: bool,
) -> Result<String, ConfigSourceError> {
    if !is_remote(source) {
        return std::fs::read_to_string(source)
            .map_err(|source_error| ConfigSourceError::Read { path: source.into(), source: source_error });
    }
    let url = redacted(source);
    if expand_env {
        return Err(ConfigSourceError::ExpandRemote { url });
    }
    mcp_proxy_core::policy::network::config_url_allowed(source)
        .map_err(|refusal| ConfigSourceError::Refused { url: url.clone(), refusal })?;
    let after = fetch_options.timeout.unwrap_or(FETCH_TIMEOUT);
    let fetched = tokio::time::timeout(after, fetch(source, &url, fetch_options)).await;
    fetched.unwrap_or(Err(ConfigSourceError::Timeout { url, after }))
}

/// How a remote configuration is fetched.
#[derive(Debug, Default)]
pub(crate) struct Fetch<'a> {
    /// Headers sent with it ("Name: value").
    pub(crate) headers: &'a [String],
    /// How long the fetch may take (default [`FETCH_TIMEOUT`]).
    pub(crate) timeout: Option<Duration>,
    /// Accept any certificate from the server (`--insecure`).
    pub(crate) insecure: bool,
}

/// Parses one `--config-header` ("Name: value").
fn parse_header(header: &str) -> Result<(HeaderName, HeaderValue), ConfigSourceError> {
    let (name, value) = header.split_once(':').ok_or(ConfigSourceError::HeaderFormat)?;
    let name = name.trim();
    let bad = |reason: HeaderProblem| ConfigSourceError::BadHeader { name: name.to_owned(), reason };
    let parsed_name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(e.into()))?;
    let parsed_value = HeaderValue::from_str(value.trim()).map_err(|e| bad(e.into()))?;
    Ok((parsed_name, parsed_value))
}

/// Fetches `source` (`url`: the same, as errors show it).
async fn fetch(source: &str, url: &str, options: &Fetch<'_>) -> Result<String, ConfigSourceError> {
    let url = || url.to_owned();
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = if options.insecure {
        builder.with_tls_config(crate::tls::insecure_client_config())
    } else {
        builder
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|source| ConfigSourceError::Tls { url: url(), source })?
    };
    let connector = builder.https_or_http().enable_http1().build();
    let headers = options.headers;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let mut request =
        Request::get(source).body(Empty::new()).map_err(|source| ConfigSourceError::BadUrl { url: url(), source })?;
    for header in headers {
        let (name, value) = parse_header(header)?;
        request.headers_mut().append(name, value);
    }
    let response = client.request(request).await.map_err(|source| ConfigSourceError::Fetch { url: url(), source })?;
    if !response.status().is_success() {
        return Err(ConfigSourceError::Status { url: url(), status: response.status() });
    }
    let body = Limited::new(response.into_body(), MAX_CONFIG).collect().await.map_err(|source| {
        if source.is::<LengthLimitError>() {
            ConfigSourceError::TooLarge { url: url(), limit: MAX_CONFIG }
        } else {
            ConfigSourceError::Body { url: url(), source }
        }
    })?;
    String::from_utf8(body.to_bytes().to_vec()).map_err(|_| ConfigSourceError::NotUtf8 { url: url() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_secrets() {
        assert_eq!(redacted("https://user:pw@example.com/c.json?token=abc"), "https://example.com/c.json?…");
        assert_eq!(redacted("http://127.0.0.1:8080/config.json"), "http://127.0.0.1:8080/config.json");
        assert_eq!(redacted("not a url"), "(an invalid URL)");
    }

    #[test]
    fn header_errors_never_show_the_value() {
        let error = parse_header("Bearer s3cret").expect_err("no colon");
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let error = parse_header("X-Token: s3cret\u{1}").expect_err("a control character is no header value");
        assert!(!error.to_string().contains("s3cret") && error.to_string().contains("X-Token"), "{error}");
        let error = parse_header("Bad Name: value").expect_err("a space is no header name");
        assert!(error.to_string().contains("Bad Name"), "{error}");
        assert!(parse_header("X-Token: abc").is_ok());
    }

    #[tokio::test]
    async fn a_remote_file_is_never_expanded_and_its_url_is_redacted() {
        let error = load("https://example.com/c.json?key=s3cret", &Fetch::default(), true).await.expect_err("refused");
        assert!(matches!(error, ConfigSourceError::ExpandRemote { .. }), "{error}");
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let error =
            load("http://example.com/c.json?key=s3cret", &Fetch::default(), false).await.expect_err("plain http");
        assert!(matches!(error, ConfigSourceError::Refused { refusal: UrlRefusal::PlainHttp, .. }), "{error}");
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }

    #[tokio::test]
    async fn a_missing_file_names_its_path() {
        let error = load("/nonexistent/mcp-proxy.json", &Fetch::default(), false).await.expect_err("no such file");
        assert!(error.to_string().starts_with("/nonexistent/mcp-proxy.json: cannot read"), "{error}");
    }
}
