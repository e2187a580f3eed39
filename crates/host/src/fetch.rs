//! HTTP requests to remote upstreams, made for the core: status, headers and body chunks are
//! handed back as they arrive (an SSE response streams event by event).

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::AbortHandle;

use crate::bindings::{FetchRequest, Header};
use crate::driver::{Event, Shared};

/// The HTTP client and the fetches it is running.
pub(crate) struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    running: HashMap<u64, AbortHandle>,
}

impl Fetcher {
    /// A client for http and https (web PKI roots).
    pub(crate) fn new() -> Result<Fetcher, String> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("TLS for upstream requests: {e}"))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        Ok(Fetcher { client: Client::builder(TokioExecutor::new()).build(connector), running: HashMap::new() })
    }

    /// Starts a fetch; what comes back is handed to `shared`.
    pub(crate) fn start(&mut self, request: FetchRequest, shared: Shared) {
        let fetch = request.fetch;
        let built = build(request);
        let client = self.client.clone();
        let task = tokio::spawn(async move {
            let request = match built {
                Ok(request) => request,
                Err(error) => return shared.handle(Event::FetchEnd { fetch, error: Some(error) }),
            };
            let response = match client.request(request).await {
                Ok(response) => response,
                Err(error) => return shared.handle(Event::FetchEnd { fetch, error: Some(error.to_string()) }),
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
                    Some(Err(error)) => {
                        return shared.handle(Event::FetchEnd { fetch, error: Some(error.to_string()) })
                    }
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

fn build(request: FetchRequest) -> Result<Request<Full<Bytes>>, String> {
    let method = Method::from_bytes(request.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut built = Request::builder()
        .method(method)
        .uri(&request.url)
        .body(Full::new(Bytes::from(request.body)))
        .map_err(|e| e.to_string())?;
    for header in request.headers {
        let name =
            HeaderName::from_bytes(header.name.as_bytes()).map_err(|e| format!("header {:?}: {e}", header.name))?;
        let value = HeaderValue::from_str(&header.value).map_err(|e| format!("header {:?}: {e}", header.name))?;
        built.headers_mut().append(name, value);
    }
    Ok(built)
}
