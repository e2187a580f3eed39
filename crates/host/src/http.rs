//! The HTTP server: accepts connections (plain or TLS), reads each request, hands it to the
//! core and writes back whatever the core decided.
//!
//! Bounded under abuse: the core judges a request's head before its body is read (a client
//! that may not send one never gets to), the body has a read deadline, a connection with no
//! request in flight is closed after the keep-alive timeout (HTTP/1 and HTTP/2 alike; a
//! half-sent request head counts as none), and open connections are capped — at the cap, the
//! oldest connection with nothing in flight makes room, so idle connections can never lock
//! new clients out.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use mcp_proxy_core::ShellRefusal;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_rustls::TlsAcceptor;

use crate::bindings::{Header, HttpRequest};
use crate::body::{Body, CloseGuard};
use crate::driver::{Event, Reply, Shared};

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head (request line and headers) accepted, in bytes.
const MAX_HEAD: usize = 64 * 1024;
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection asked to close gracefully may take to finish.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Limits of the HTTP server.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Open connections at most.
    pub(crate) max_connections: usize,
    /// A connection with no request in flight is closed after this long.
    pub(crate) keep_alive: Duration,
    /// A request body must arrive within this long.
    pub(crate) body: Duration,
}

/// What every connection shares.
pub(crate) struct Server {
    pub(crate) shared: Shared,
    pub(crate) closed: mpsc::UnboundedSender<u64>,
    pub(crate) max_body_size: u64,
    pub(crate) next_exchange: AtomicU64,
    pub(crate) limits: Limits,
    pub(crate) connections: Connections,
}

/// The open connections, oldest first, and what each has in flight.
#[derive(Default)]
pub(crate) struct Connections {
    table: Mutex<ConnectionTable>,
    /// Connections refused because every open one was busy.
    refused: AtomicU64,
    /// Requests in flight that are not a GET stream (what a graceful shutdown waits for).
    requests: Arc<AtomicUsize>,
}

#[derive(Default)]
struct ConnectionTable {
    next: u64,
    open: BTreeMap<u64, Arc<Connection>>,
}

/// One open connection.
struct Connection {
    /// Requests in flight (a streaming response counts until it ends).
    active: AtomicUsize,
    /// When the last request in flight ended (or the connection opened).
    idle_since: Mutex<Instant>,
    /// Asks the connection to close at once.
    evict: Notify,
}

impl Connection {
    fn begin(self: &Arc<Self>) -> InFlight {
        self.active.fetch_add(1, Ordering::AcqRel);
        InFlight { connection: self.clone(), request: None }
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.idle_since.lock().unwrap_or_else(PoisonError::into_inner).elapsed())
    }
}

/// A request in flight on a connection; dropped when its response is done.
pub(crate) struct InFlight {
    connection: Arc<Connection>,
    /// The count of requests a graceful shutdown waits for, if this is one of them.
    request: Option<Arc<AtomicUsize>>,
}

impl InFlight {
    /// Counts this request among those a graceful shutdown waits for.
    fn awaited(mut self, requests: &Arc<AtomicUsize>) -> InFlight {
        requests.fetch_add(1, Ordering::AcqRel);
        self.request = Some(requests.clone());
        self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.connection.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.connection.idle_since.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        }
        if let Some(requests) = &self.request {
            requests.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A connection's place in the table; leaving frees it.
struct Registered<'a> {
    connections: &'a Connections,
    id: u64,
    connection: Arc<Connection>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.connections.lock().open.remove(&self.id);
    }
}

impl Connections {
    /// Waits until no request but GET streams is in flight, or `timeout` passes; the number
    /// still in flight then.
    pub(crate) async fn drain(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = self.requests.load(Ordering::Acquire);
            if left == 0 || tokio::time::Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnectionTable> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new connection, making room at the cap by evicting the oldest connection
    /// with nothing in flight; `None` if every connection is busy.
    fn register(&self, max: usize) -> Option<Registered<'_>> {
        let mut table = self.lock();
        if table.open.len() >= max {
            let idle = table.open.iter().find(|(_, c)| c.active.load(Ordering::Acquire) == 0).map(|(id, _)| *id);
            let evicted = table.open.remove(&idle?)?;
            evicted.evict.notify_one();
        }
        table.next += 1;
        let id = table.next;
        let connection = Arc::new(Connection {
            active: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            evict: Notify::new(),
        });
        table.open.insert(id, connection.clone());
        Some(Registered { connections: self, id, connection })
    }
}

/// Accepts connections until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, server: Arc<Server>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let loopback = stream.local_addr().is_ok_and(|local| local.ip().is_loopback());
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(registered) = server.connections.register(server.limits.max_connections) else {
                let refused = server.connections.refused.fetch_add(1, Ordering::Relaxed) + 1;
                if refused.is_power_of_two() {
                    tracing::warn!(
                        "refused {refused} connection(s) so far: all {} connections are busy (--maxConnections)",
                        server.limits.max_connections
                    );
                }
                return;
            };
            match tls {
                None => serve_connection(TokioIo::new(stream), &server, &registered, loopback).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(TokioIo::new(stream), &server, &registered, loopback).await,
                    Ok(Err(error)) => tracing::warn!("TLS handshake with {peer} failed: {error}"),
                    Err(_) => tracing::warn!("TLS handshake with {peer} timed out"),
                },
            }
        });
    }
}

/// Serves one connection of a public tunnel (see `tunnel.rs`) like an accepted one; its
/// requests are not from loopback.
pub(crate) async fn serve_tunneled(stream: tokio::net::TcpStream, server: &Arc<Server>) {
    let Some(registered) = server.connections.register(server.limits.max_connections) else {
        tokio::time::sleep(Duration::from_millis(100)).await;
        return;
    };
    serve_connection(TokioIo::new(stream), server, &registered, false).await;
}

async fn serve_connection<I>(io: TokioIo<I>, server: &Arc<Server>, registered: &Registered<'_>, loopback: bool)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Request heads larger than the read buffer get 431: no MCP client sends anything near it.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).max_buf_size(MAX_HEAD);
    builder.http2().timer(TokioTimer::new()).max_header_list_size(MAX_HEAD as u32);
    let connection = registered.connection.clone();
    let service = {
        let server = server.clone();
        let connection = connection.clone();
        service_fn(move |request| handle(request, server.clone(), connection.begin(), loopback))
    };
    let serving = builder.serve_connection(io, service);
    tokio::pin!(serving);
    let keep_alive = server.limits.keep_alive;
    let mut closing = false;
    loop {
        let check = match (closing, connection.idle_for()) {
            (true, _) => CLOSE_GRACE,
            (false, Some(idle)) => keep_alive.saturating_sub(idle),
            (false, None) => keep_alive,
        };
        tokio::select! {
            // A connection error is the client's business (reset, bad framing); hyper already
            // answered what it could.
            _ = serving.as_mut() => return,
            () = connection.evict.notified() => return,
            () = tokio::time::sleep(check) => {
                if closing {
                    return;
                }
                if connection.idle_for().is_some_and(|idle| idle >= keep_alive) {
                    closing = true;
                    serving.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

async fn handle(
    request: Request<Incoming>,
    server: Arc<Server>,
    in_flight: InFlight,
    via_loopback: bool,
) -> Result<Response<Body>, Infallible> {
    let exchange = server.next_exchange.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = request.into_parts();
    // A GET stream lasts as long as its client: a shutdown does not wait for it.
    let in_flight = match parts.method {
        http::Method::GET => in_flight,
        _ => in_flight.awaited(&server.connections.requests),
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
    let mut request = HttpRequest {
        exchange,
        method: parts.method.as_str().to_owned(),
        target: parts.uri.path_and_query().map_or_else(|| "/".to_owned(), |target| target.as_str().to_owned()),
        headers,
        body: Vec::new(),
        body_too_large: false,
        via_loopback,
    };
    // Who may not get in is told before a byte of the body is read.
    if let Some(Reply::Full { status, headers, body }) = server.shared.precheck(&request) {
        let mut response = respond(status, headers, Body::full(body, in_flight));
        close_if_body_unread(&mut response, &parts);
        return Ok(response);
    }
    let read = tokio::time::timeout(server.limits.body, read_body(body, &parts.headers, server.max_body_size)).await;
    let (body, body_too_large) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(())) => return Ok(refusal(ShellRefusal::RequestUnreadable, in_flight)),
        Err(_) => {
            let mut response = refusal(ShellRefusal::BodyTimeout, in_flight);
            close_if_body_unread(&mut response, &parts);
            return Ok(response);
        }
    };
    request.body = body.to_vec();
    request.body_too_large = body_too_large;
    let mut guard = CloseGuard::new(exchange, server.closed.clone());
    let (reply_tx, reply_rx) = oneshot::channel();
    server.shared.handle(Event::Http { request, reply: reply_tx });
    let response = match reply_rx.await {
        Ok(Reply::Full { status, headers, body }) => {
            guard.disarm();
            let mut response = respond(status, headers, Body::full(body, in_flight));
            if body_too_large {
                close_if_body_unread(&mut response, &parts);
            }
            response
        }
        Ok(Reply::Stream { status, headers, body, queued }) => {
            respond(status, headers, Body::Stream { chunks: body, queued, _guard: guard, _in_flight: in_flight })
        }
        Err(_) => {
            guard.disarm();
            refusal(ShellRefusal::ShuttingDown, in_flight)
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
            _ => tracing::warn!("dropped an invalid response header {:?}", header.name),
        }
    }
    response
}

/// A response sent before the request's body was read (a refusal from the head alone, a body
/// too large or too slow) ends the connection, and says so: hyper does not read the rest of a
/// body nobody consumed, so a keep-alive client would otherwise send its next request on a
/// connection that is about to close. HTTP/2 resets just the stream and needs nothing.
fn close_if_body_unread(response: &mut Response<Body>, request: &http::request::Parts) {
    let may_have_body = request.headers.contains_key(http::header::TRANSFER_ENCODING)
        || request
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes().iter().any(|digit| *digit != b'0'));
    if request.version < http::Version::HTTP_2 && may_have_body {
        response.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// An answer the shell gives on its own, in the core's words (the Worker gives the same).
fn refusal(refusal: ShellRefusal, in_flight: InFlight) -> Response<Body> {
    let response = refusal.response();
    let headers = response.headers.into_iter().map(|h| Header { name: h.name, value: h.value }).collect();
    respond(response.status, headers, Body::full(response.body, in_flight))
}
