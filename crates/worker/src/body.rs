//! The client's request as the core sees it: method, target, headers and a body read up to
//! the configured limit.

use futures::StreamExt;
use mcp_proxy_core::{ExchangeId, Header, HttpRequest};
use worker::Request;

/// The head of `request` in the core's form, with no body yet (the core judges the head
/// first). A Worker is reached over the network: never on loopback.
pub(crate) fn head(request: &Request, exchange: ExchangeId) -> Result<HttpRequest, String> {
    // `Request::method` maps methods it does not know to GET; the core judges the real one.
    let method = request.inner().method();
    let url = request.url().map_err(|error| format!("the request URL cannot be read: {error}"))?;
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let mut headers: Vec<Header> = request.headers().entries().map(|(name, value)| Header::new(name, value)).collect();
    // The runtime's Headers object has no `host`; the core reads it for the rebinding check.
    if !headers.iter().any(|h| h.name.eq_ignore_ascii_case("host")) {
        if let Some(host) = url.host_str() {
            let host = match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            };
            headers.push(Header::new("host", host));
        }
    }
    Ok(HttpRequest { exchange, method, target, headers, body: Vec::new(), body_too_large: false, via_loopback: false })
}

/// Reads the body of `request` into `head`. A body over `max` bytes is not kept: the request
/// is marked `body_too_large` and the core answers 413.
pub(crate) async fn read(mut request: Request, mut head: HttpRequest, max: u64) -> Result<HttpRequest, String> {
    let declared = head
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| h.value.trim().parse::<u64>().ok());
    let (body, body_too_large) = if declared.is_some_and(|length| length > max) {
        (Vec::new(), true)
    } else {
        read_limited(&mut request, max).await?
    };
    head.body = body;
    head.body_too_large = body_too_large;
    Ok(head)
}

/// Reads the body chunk by chunk, stopping as soon as it passes `max` bytes.
async fn read_limited(request: &mut Request, max: u64) -> Result<(Vec<u8>, bool), String> {
    if request.inner().body().is_none() {
        return Ok((Vec::new(), false));
    }
    let mut chunks = request.stream().map_err(|error| format!("the request body cannot be read: {error}"))?;
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let mut body = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|error| format!("the request body broke off: {error}"))?;
        if chunk.len() > limit - body.len() {
            return Ok((Vec::new(), true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}
