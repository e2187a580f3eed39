//! The HTTP server: accepts connections (plain or TLS), reads each request, hands it to the
//! pump and writes back whatever the core decided.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;

use crate::bindings::{Header, HttpRequest};
use crate::body::{Body, CloseGuard};
use crate::driver::{Event, Reply, Shared};
use crate::log;

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head (request line and headers) accepted, in bytes.
const MAX_HEAD: usize = 64 * 1024;
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection shares.
pub(crate) struct Server {
    pub(crate) shared: Shared,
    pub(crate) closed: mpsc::UnboundedSender<u64>,
    pub(crate) max_body_size: u64,
    pub(crate) next_exchange: AtomicU64,
}

/// Accepts connections until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, server: Arc<Server>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                log::warn(&format!("accept failed: {error}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(TokioIo::new(stream), server).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(TokioIo::new(stream), server).await,
                    Ok(Err(error)) => log::warn(&format!("TLS handshake with {peer} failed: {error}")),
                    Err(_) => log::warn(&format!("TLS handshake with {peer} timed out")),
                },
            }
        });
    }
}

async fn serve_connection<I>(io: TokioIo<I>, server: Arc<Server>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Request heads larger than the read buffer get 431: no MCP client sends anything near it.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).max_buf_size(MAX_HEAD);
    let service = service_fn(move |request| handle(request, server.clone()));
    // A connection error is the client's business (reset, bad framing); hyper already answered
    // what it could.
    let _ = builder.serve_connection(io, service).await;
}

async fn handle(request: Request<Incoming>, server: Arc<Server>) -> Result<Response<Body>, Infallible> {
    let exchange = server.next_exchange.fetch_add(1, Ordering::Relaxed);
    let mut guard = CloseGuard::new(exchange, server.closed.clone());
    let (parts, body) = request.into_parts();
    let (body, body_too_large) = match read_body(body, &parts.headers, server.max_body_size).await {
        Ok(read) => read,
        Err(()) => {
            guard.disarm();
            return Ok(plain(StatusCode::BAD_REQUEST, "the request body could not be read"));
        }
    };
    let mut headers: Vec<Header> = parts
        .headers
        .iter()
        .map(|(name, value)| Header {
            name: name.as_str().to_owned(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        })
        .collect();
    // HTTP/2 carries the host in the :authority pseudo-header; the core reads `host`.
    if let (false, Some(authority)) = (parts.headers.contains_key(http::header::HOST), parts.uri.authority()) {
        headers.push(Header { name: "host".to_owned(), value: authority.as_str().to_owned() });
    }
    let request = HttpRequest {
        exchange,
        method: parts.method.as_str().to_owned(),
        target: parts.uri.path_and_query().map_or_else(|| "/".to_owned(), |target| target.as_str().to_owned()),
        headers,
        body: body.to_vec(),
        body_too_large,
    };
    let (reply_tx, reply_rx) = oneshot::channel();
    server.shared.handle(Event::Http { request, reply: reply_tx });
    let response = match reply_rx.await {
        Ok(Reply::Full { status, headers, body }) => {
            guard.disarm();
            respond(status, headers, Body::full(body))
        }
        Ok(Reply::Stream { status, headers, body }) => {
            respond(status, headers, Body::Stream { chunks: body, _guard: guard })
        }
        Err(_) => {
            guard.disarm();
            plain(StatusCode::SERVICE_UNAVAILABLE, "the proxy is shutting down")
        }
    };
    Ok(response)
}

/// Reads the body up to `max` bytes; returns it, or an empty body and `true` if it is larger.
async fn read_body(body: Incoming, headers: &HeaderMap, max: u64) -> Result<(Bytes, bool), ()> {
    let declared =
        headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max) {
        return Ok((Bytes::new(), true));
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok((collected.to_bytes(), false)),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Ok((Bytes::new(), true)),
        Err(_) => Err(()),
    }
}

fn respond(status: u16, headers: Vec<Header>, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for header in headers {
        match (HeaderName::from_bytes(header.name.as_bytes()), HeaderValue::from_str(&header.value)) {
            (Ok(name), Ok(value)) => {
                response.headers_mut().append(name, value);
            }
            _ => log::warn(&format!("dropped an invalid response header {:?}", header.name)),
        }
    }
    response
}

fn plain(status: StatusCode, message: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::full(message));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}
