//! The sans-IO routing core of mcp-proxy.
//!
//! This crate decides everything the proxy does and does nothing itself: no sockets, no
//! processes, no clock, no randomness of its own. A shell (the native host, the component
//! wrapper, the Cloudflare Worker) turns what it observes into [`Input`]s, hands each to
//! [`Proxy::handle_input`] with the current time, carries out every [`Output`] from
//! [`Proxy::poll_output`], and wakes the proxy with [`Input::Timeout`] at
//! [`Proxy::poll_timeout`].
//!
//! ```
//! use mcp_proxy_core::{Config, ExchangeId, Header, HttpRequest, Input, Instant, Output, Proxy};
//!
//! let config = Config::from_json(r#"{"server": {"command": "my-mcp-server"}}"#).unwrap();
//! let mut proxy = Proxy::new(config, [0; 32], Instant(0));
//! let ping = HttpRequest {
//!     exchange: ExchangeId(1),
//!     method: "GET".into(),
//!     target: "/ping".into(),
//!     headers: vec![Header::new("host", "localhost")],
//!     body: Vec::new(),
//!     body_too_large: false,
//!     via_loopback: true,
//! };
//! proxy.handle_input(Instant(0), Input::HttpRequest(ping));
//! while let Some(output) = proxy.poll_output() {
//!     match output {
//!         Output::Respond { head, body } => assert_eq!((head.status, body.as_slice()), (200, &b"pong"[..])),
//!         other => panic!("unexpected {other:?}"),
//!     }
//! }
//! assert_eq!(proxy.poll_timeout(), None);
//! ```
//!
//! Panic policy: bad input from clients, servers or configuration never panics; it becomes
//! an HTTP refusal, a JSON-RPC error or a log line. Panics mean a broken invariant.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
mod ctx;
pub mod error;
pub mod ids;
mod io;
mod modern;
mod modes;
pub mod policy;
mod proxy;
pub mod registry;
mod route;
mod shell;
mod state;
mod time;
pub mod transcript;
mod transport;
mod upstream;
pub mod wire;

// The paths of the first releases.
pub use config::file as config_file;
pub use wire::{http, jsonrpc, mcp, sse};

pub use config::{Config, Cors, Edge, StdioServer, Transports};
pub use error::{ConfigError, RequestError};
pub use http::{Header, HttpRequest, ResponseHead};
pub use ids::{ExchangeId, FetchId, ServerId, SessionId, UpstreamId};
pub use io::{Input, LogLevel, Output, UpstreamEnd};
pub use modes::pool::PoolSession;
pub use proxy::Proxy;
pub use shell::{ShellRefusal, ShellResponse};
pub use time::{Instant, WallClock};
pub use upstream::http::FetchRequest;

/// Describes the machine the core was compiled for, like `x86_64` or `wasm32`.
pub fn build_arch() -> &'static str {
    std::env::consts::ARCH
}
