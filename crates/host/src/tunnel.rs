//! `--tunnel`: the proxy reachable through a public tunnel server of the protocol
//! localtunnel and `pipenet` speak (what the TypeScript `mcp-proxy` uses, at
//! `https://tunnel.gla.ma`).
//!
//! The client asks the server for a tunnel (`GET {server}/?new`, or `/{subdomain}` for a
//! name) and is told a TCP port and how many connections to open there. The server writes
//! each public HTTP request into one of those connections; this client serves each
//! connection with the same HTTP stack as the local listener (no second hop through a local
//! socket), so every request goes through the same core and policy. A request that came
//! through the tunnel is not from loopback. A connection that ends is opened again at once;
//! one that cannot be opened is retried with a growing backoff, and when none can, the tunnel
//! is asked for again (the server may have restarted). The local server never stops because
//! the tunnel did.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::http::Server;

/// The TypeScript peer's tunnel server.
pub(crate) const DEFAULT_SERVER: &str = "https://tunnel.gla.ma";
/// The most connections a tunnel server may ask for.
const MAX_CONNECTIONS: usize = 32;
/// How long asking for a tunnel, or opening one of its connections, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Failed connection attempts in a row after which the tunnel is asked for again.
const FAILURES_BEFORE_RENEWAL: u32 = 3;
/// The largest answer a tunnel server may give to the request for a tunnel.
const MAX_ANSWER: usize = 64 * 1024;

/// What the tunnel server answers.
#[derive(Debug, PartialEq, Eq)]
struct Assigned {
    id: String,
    port: u16,
    url: String,
    max_conn_count: Option<usize>,
    ip: Option<String>,
    /// One port for every client: each connection first says whose it is.
    shared_tunnel: bool,
}

impl Assigned {
    /// Reads `{"id", "port", "url", "maxConnCount"?, "ip"?, "sharedTunnel"?}`.
    fn parse(body: &[u8]) -> Result<Assigned, String> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let text = |key: &str| value.get(key).and_then(serde_json::Value::as_str).map(str::to_owned);
        let port = value.get("port").and_then(serde_json::Value::as_u64).and_then(|p| u16::try_from(p).ok());
        let (Some(id), Some(port), Some(url)) = (text("id"), port, text("url")) else {
            return Err("id, port or url missing".into());
        };
        Ok(Assigned {
            id,
            port,
            url,
            max_conn_count: value
                .get("maxConnCount")
                .and_then(serde_json::Value::as_u64)
                .and_then(|n| usize::try_from(n).ok()),
            ip: text("ip"),
            shared_tunnel: value.get("sharedTunnel").and_then(serde_json::Value::as_bool).unwrap_or(false),
        })
    }
}

/// Why a tunnel could not be had.
#[derive(Debug, thiserror::Error)]
enum TunnelError {
    #[error("the tunnel server refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Unreachable(String),
}

/// Keeps a tunnel up for as long as the proxy runs.
pub(crate) async fn run(server_url: String, subdomain: Option<String>, server: Arc<Server>, local_port: u16) {
    let server_url = server_url.trim_end_matches('/').to_owned();
    let mut name = subdomain;
    let mut backoff = Duration::from_millis(500);
    loop {
        let assigned = match assign(&server_url, name.as_deref()).await {
            Ok(assigned) => assigned,
            Err(TunnelError::Refused(message)) if name.is_some() => {
                tracing::warn!("tunnel: {message}; asking for any name instead");
                name = None;
                continue;
            }
            Err(error) => {
                tracing::warn!("tunnel: {error}; trying again in {} ms", backoff.as_millis());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_millis(500);
        // The same name when it is asked for again.
        name = Some(assigned.id.clone());
        keep(&server_url, &assigned, &server, local_port).await;
        tracing::warn!("tunnel: no connection to the tunnel server can be opened; asking for the tunnel again");
    }
}

/// Asks the tunnel server for a tunnel.
async fn assign(server_url: &str, name: Option<&str>) -> Result<Assigned, TunnelError> {
    let url = match name {
        Some(name) => format!("{server_url}/{name}"),
        None => format!("{server_url}/?new"),
    };
    let unreachable = |why: String| TunnelError::Unreachable(format!("{server_url}: {why}"));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| unreachable(e.to_string()))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let request = hyper::Request::get(&url).body(Empty::new()).map_err(|e| unreachable(e.to_string()))?;
    let response = tokio::time::timeout(CONNECT_TIMEOUT, client.request(request))
        .await
        .map_err(|_| unreachable("no answer".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let status = response.status();
    let body = tokio::time::timeout(CONNECT_TIMEOUT, Limited::new(response.into_body(), MAX_ANSWER).collect())
        .await
        .map_err(|_| unreachable("the answer did not arrive".into()))?
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    if status.is_client_error() {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| format!("HTTP {status}"));
        return Err(TunnelError::Refused(message));
    }
    if !status.is_success() {
        return Err(unreachable(format!("HTTP {status}")));
    }
    Assigned::parse(&body).map_err(|e| unreachable(format!("an answer that is not a tunnel: {e}")))
}

/// Runs the tunnel's connections until none can be opened.
async fn keep(server_url: &str, assigned: &Assigned, server: &Arc<Server>, local_port: u16) {
    let host = assigned.ip.clone().unwrap_or_else(|| host_of(server_url));
    let count = assigned.max_conn_count.unwrap_or(1).clamp(1, MAX_CONNECTIONS);
    let (opened, mut first) = tokio::sync::mpsc::channel::<()>(1);
    let mut connections = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (host, port, server, opened) = (host.clone(), assigned.port, server.clone(), opened.clone());
        let id = assigned.shared_tunnel.then(|| assigned.id.clone());
        connections.spawn(async move { connection(&host, port, id.as_deref(), &server, &opened).await });
    }
    drop(opened);
    // Established once a connection is open (the words of the TypeScript peer).
    tokio::select! {
        Some(()) = first.recv() => {
            tracing::info!("tunnel established at {}", assigned.url);
            tracing::info!("  (local port {local_port}; requests through the tunnel are not from loopback)");
        }
        _ = connections.join_next() => {
            connections.abort_all();
            return;
        }
    }
    // Each connection task ends only when it cannot be opened any more.
    let _ = connections.join_next().await;
    connections.abort_all();
}

/// One of the tunnel's connections, opened again whenever it ends; returns after
/// [`FAILURES_BEFORE_RENEWAL`] failed attempts in a row.
async fn connection(
    host: &str,
    port: u16,
    id: Option<&str>,
    server: &Arc<Server>,
    opened: &tokio::sync::mpsc::Sender<()>,
) {
    let mut failures = 0;
    let mut backoff = Duration::from_millis(250);
    while failures < FAILURES_BEFORE_RENEWAL {
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))).await;
        let mut stream = match attempt {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                failures += 1;
                tracing::debug!("tunnel: connecting to {host}:{port} failed: {error}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(_) => {
                failures += 1;
                continue;
            }
        };
        if let Some(id) = id {
            if stream.write_all(format!("{id}\n").as_bytes()).await.is_err() {
                failures += 1;
                continue;
            }
        }
        let _ = stream.set_nodelay(true);
        let _ = opened.try_send(());
        let opened_at = std::time::Instant::now();
        crate::http::serve_tunneled(stream, server).await;
        if opened_at.elapsed() < Duration::from_millis(500) {
            // Closed at once: the server may not know this tunnel any more.
            failures += 1;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        } else {
            failures = 0;
            backoff = Duration::from_millis(250);
        }
    }
}

/// The host of an http(s) URL.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host.trim_matches(['[', ']']).to_owned(),
        _ => authority.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_the_tunnel_server() {
        assert_eq!(host_of("https://tunnel.gla.ma"), "tunnel.gla.ma");
        assert_eq!(host_of("http://127.0.0.1:8123/"), "127.0.0.1");
        assert_eq!(host_of("http://[::1]:8123"), "::1");
    }

    #[test]
    fn the_answer_of_a_tunnel_server_is_read() {
        let shared = Assigned::parse(
            br#"{"id":"abc","port":1234,"maxConnCount":10,"url":"https://abc.t.example","sharedTunnel":true}"#,
        )
        .expect("a tunnel");
        assert!(Assigned::parse(br#"{"id":"abc","port":70000,"url":"u"}"#).is_err(), "no such port");
        assert_eq!(
            (shared.id.as_str(), shared.port, shared.max_conn_count, shared.shared_tunnel),
            ("abc", 1234, Some(10), true)
        );
    }
}
