//! Reading the aggregator's configuration: a local file, or an http(s) URL with headers.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The largest configuration accepted.
const MAX_CONFIG: usize = 16 * 1024 * 1024;
/// How long fetching a remote configuration may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `source` names a remote configuration rather than a file.
pub(crate) fn is_remote(source: &str) -> bool {
    let lower = source.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Reads the configuration at `source`; `headers` ("Name: value") go with a URL fetch. A
/// remote configuration must come over https (plain http only from a loopback host), and
/// `${VAR}` expansion is for local files only: a remote file must not pull the proxy's
/// environment (its secrets) into a URL.
pub(crate) async fn load(source: &str, headers: &[String], expand_env: bool) -> Result<String, String> {
    if !is_remote(source) {
        return std::fs::read_to_string(source).map_err(|e| format!("{source}: cannot read the configuration: {e}"));
    }
    if expand_env {
        return Err(format!("{source}: --expand-env applies to local files only, not to a remote configuration"));
    }
    mcp_proxy_core::policy::network::config_url_allowed(source).map_err(|refusal| format!("{source}: {refusal}"))?;
    let fetched = tokio::time::timeout(FETCH_TIMEOUT, fetch(source, headers)).await;
    fetched.unwrap_or_else(|_| Err(format!("{source}: no answer within {} s", FETCH_TIMEOUT.as_secs())))
}

async fn fetch(url: &str, headers: &[String]) -> Result<String, String> {
    let failed = |what: String| format!("{url}: {what}");
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| failed(format!("TLS: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let mut request = Request::get(url).body(Empty::new()).map_err(|e| failed(e.to_string()))?;
    for header in headers {
        let (name, value) =
            header.split_once(':').ok_or_else(|| format!("--config-header {header:?}: expected \"Name: value\""))?;
        let name =
            HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| format!("--config-header {header:?}: {e}"))?;
        let value = HeaderValue::from_str(value.trim()).map_err(|e| format!("--config-header {header:?}: {e}"))?;
        request.headers_mut().append(name, value);
    }
    let response = client.request(request).await.map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("HTTP {}", response.status())));
    }
    let body = Limited::new(response.into_body(), MAX_CONFIG).collect().await.map_err(|e| failed(e.to_string()))?;
    String::from_utf8(body.to_bytes().to_vec()).map_err(|_| failed("the configuration is not UTF-8".into()))
}
