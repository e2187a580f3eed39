//! HTTP requests to remote upstreams, made for the core: status, headers and body chunks are
//! handed back as they arrive (an SSE response streams event by event).
//!
//! A fetch marked `public_only` (a server added at run time) connects only to public addresses:
//! a literal address in the URL is checked before connecting, and a host name's resolved
//! addresses are filtered at every connection, so a name that resolves inside the proxy's
//! network later is refused too. The rule is the core's ([`is_public_address`]). Redirects are
//! never followed: a 3xx reaches the core as the answer it is.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mcp_proxy_core::policy::network::is_public_address;
use tokio::task::AbortHandle;
use tower_service::Service;

use crate::bindings::{FetchRequest, Header};
use crate::driver::{Event, Shared};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type PublicConnector = PublicOnly<HttpsConnector<HttpConnector<PublicResolver>>>;

/// The HTTP clients and the fetches they are running.
pub(crate) struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    public: Client<PublicConnector, Full<Bytes>>,
    running: HashMap<u64, AbortHandle>,
}

/// Why the HTTP clients could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetcherError {
    /// rustls refused the TLS client settings.
    #[error("TLS for upstream requests: {0}")]
    Tls(#[from] rustls::Error),
}

/// Why a request the core asked for could not be made (reported back to the core as text).
#[derive(Debug, thiserror::Error)]
enum RequestError {
    /// The method is not a valid HTTP method.
    #[error(transparent)]
    Method(#[from] http::method::InvalidMethod),
    /// The URL or another part of the request is invalid.
    #[error(transparent)]
    Request(#[from] http::Error),
    /// A header name is invalid.
    #[error("header {name:?}: {source}")]
    HeaderName { name: String, source: http::header::InvalidHeaderName },
    /// A header value is invalid (the value is not shown: it may be a credential).
    #[error("header {name:?}: {source}")]
    HeaderValue { name: String, source: http::header::InvalidHeaderValue },
}

fn tls_builder() -> Result<hyper_rustls::HttpsConnectorBuilder<hyper_rustls::builderstates::WantsSchemes>, FetcherError>
{
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?)
}

impl Fetcher {
    /// Clients for http and https (web PKI roots): one for any address, one for public ones.
    pub(crate) fn new() -> Result<Fetcher, FetcherError> {
        Fetcher::with_tls(None)
    }

    /// The same, with `tls` (when given) for the client that reaches any address: reverse
    /// mode's remote with `--sslCa` or `--insecure`.
    pub(crate) fn with_tls(tls: Option<rustls::ClientConfig>) -> Result<Fetcher, FetcherError> {
        let connector = match tls {
            Some(tls) => hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .enable_http2()
                .build(),
            None => tls_builder()?.https_or_http().enable_http1().enable_http2().build(),
        };
        let mut http = HttpConnector::new_with_resolver(PublicResolver(GaiResolver::new()));
        http.enforce_http(false);
        let public = tls_builder()?.https_or_http().enable_http1().enable_http2().wrap_connector(http);
        Ok(Fetcher {
            client: Client::builder(TokioExecutor::new()).build(connector),
            public: Client::builder(TokioExecutor::new()).build(PublicOnly(public)),
            running: HashMap::new(),
        })
    }

    /// Starts a fetch; what comes back is handed to `shared`.
    pub(crate) fn start(&mut self, request: FetchRequest, shared: Shared) {
        let fetch = request.fetch;
        let public_only = request.public_only;
        let built = build(request);
        let (client, public) = (self.client.clone(), self.public.clone());
        let task = tokio::spawn(async move {
            let request = match built {
                Ok(request) => request,
                Err(error) => return shared.handle(Event::FetchEnd { fetch, error: Some(error.to_string()) }),
            };
            let sent = if public_only { public.request(request).await } else { client.request(request).await };
            let response = match sent {
                Ok(response) => response,
                Err(error) => return shared.handle(Event::FetchEnd { fetch, error: Some(describe(&error)) }),
            };
            let headers = response
                .headers()
                .iter()
                .map(|(n, v)| Header {
                    name: n.as_str().to_owned(),
                    value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
                })
                .collect();
            shared.handle(Event::FetchHead { fetch, status: response.status().as_u16(), headers });
            let mut body = response.into_body();
            loop {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            shared.handle(Event::FetchData { fetch, data: data.to_vec() });
                        }
                    }
                    Some(Err(error)) => return shared.handle(Event::FetchEnd { fetch, error: Some(describe(&error)) }),
                    None => return shared.handle(Event::FetchEnd { fetch, error: None }),
                }
            }
        });
        self.running.retain(|_, handle| !handle.is_finished());
        self.running.insert(fetch, task.abort_handle());
    }

    /// Stops a fetch.
    pub(crate) fn cancel(&mut self, fetch: u64) {
        if let Some(handle) = self.running.remove(&fetch) {
            handle.abort();
        }
    }

    /// Stops every fetch.
    pub(crate) fn cancel_all(&mut self) {
        for (_, handle) in self.running.drain() {
            handle.abort();
        }
    }
}

/// An error with its causes ("client error (Connect): … resolves to no public address").
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn build(request: FetchRequest) -> Result<Request<Full<Bytes>>, RequestError> {
    let method = Method::from_bytes(request.method.as_bytes())?;
    let mut built = Request::builder().method(method).uri(&request.url).body(Full::new(Bytes::from(request.body)))?;
    for header in request.headers {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|source| RequestError::HeaderName { name: header.name.clone(), source })?;
        let value = HeaderValue::from_str(&header.value)
            .map_err(|source| RequestError::HeaderValue { name: header.name, source })?;
        built.headers_mut().append(name, value);
    }
    Ok(built)
}

/// Resolves host names to their public addresses only.
#[derive(Clone)]
struct PublicResolver(GaiResolver);

impl Service<Name> for PublicResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, io::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolving = self.0.call(name.clone());
        Box::pin(async move {
            let public: Vec<SocketAddr> = resolving.await?.filter(|address| is_public_address(address.ip())).collect();
            if public.is_empty() {
                let message =
                    format!("{} resolves to no public address (refused for a server added at run time)", name);
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, message));
            }
            Ok(public.into_iter())
        })
    }
}

/// Refuses a URL whose host is a literal address that is not public, before connecting (a
/// literal is never handed to the resolver).
#[derive(Clone)]
struct PublicOnly<C>(C);

impl<C> Service<Uri> for PublicOnly<C>
where
    C: Service<Uri>,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
    C::Response: Send + 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            if !is_public_address(ip) {
                let message = format!("{ip} is not a public address (refused for a server added at run time)");
                return Box::pin(std::future::ready(Err(message.into())));
            }
        }
        let connecting = self.0.call(uri);
        Box::pin(async move { connecting.await.map_err(Into::into) })
    }
}
