//! `mcp-proxy`: serves a stdio MCP server over Streamable HTTP and legacy SSE.
//!
//! The routing core runs as a WebAssembly component inside wasmtime; this binary only
//! moves bytes between sockets, child processes and the core.

mod bindings;
mod body;
mod cli;
mod config_source;
mod convert;
mod core_cost;
mod driver;
mod engine;
mod engine_config;
mod fetch;
mod http;
mod limits;
mod log;
mod record;
mod reverse;
mod stdio;
mod tls;
mod tunnel;
mod vectors;

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::bindings::ConfigError;
use crate::cli::{Cli, CliError};
use crate::config_source::ConfigSourceError;
use crate::driver::{CoreFactory, Event, Shared};
use crate::engine::{CoreEngine, EngineError};
use crate::fetch::FetcherError;
use crate::tls::TlsError;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    /// The command line asks for something that cannot be served.
    #[error(transparent)]
    Cli(#[from] CliError),
    /// The configuration file could not be read or fetched.
    #[error(transparent)]
    ConfigSource(#[from] ConfigSourceError),
    /// The core refused the configuration `--config` named (`file` as logs may show it).
    #[error("{file}: {}: {}", error.path, error.message)]
    ConfigFile { file: String, error: ConfigError },
    /// The core refused the configuration made from the command line.
    #[error(transparent)]
    Config(EngineError),
    /// The native core refused the configuration the component accepted (a build mismatch).
    #[error("invalid configuration: {0}")]
    NativeConfig(#[from] mcp_proxy_core::ConfigError),
    /// The core could not be loaded, or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The TLS certificate, key or CA could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The HTTP clients for remote upstreams could not be set up.
    #[error(transparent)]
    Fetcher(#[from] FetcherError),
    /// The listening socket could not be opened.
    #[error("cannot listen on {host}:{port}: {source}")]
    Listen { host: IpAddr, port: u16, source: std::io::Error },
    /// SIGINT and SIGTERM cannot be waited for.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

impl StartError {
    /// The process's exit status: 2 for what the user has to fix in the command line or the
    /// configuration, 1 for the rest.
    fn exit_code(&self) -> ExitCode {
        match self {
            StartError::Cli(_)
            | StartError::ConfigSource(_)
            | StartError::ConfigFile { .. }
            | StartError::Config(_)
            | StartError::NativeConfig(_) => ExitCode::from(2),
            StartError::Engine(_)
            | StartError::Tls(_)
            | StartError::Fetcher(_)
            | StartError::Listen { .. }
            | StartError::Signals(_) => ExitCode::FAILURE,
        }
    }
}

fn main() -> ExitCode {
    let args = cli::from_go_spelling(std::env::args_os().collect(), std::path::Path::new("config.json").is_file());
    if args.len() == 1 {
        // Nothing to serve: the usage, as the Go binary prints it.
        let mut command = <Cli as clap::CommandFactory>::command();
        let _ = command.print_help();
        return ExitCode::from(2);
    }
    let cli = Cli::parse_from(args);
    log::init(cli.debug);
    // Every connection and child pipe is a file descriptor: use what the system allows.
    limits::raise_open_files();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error}");
            error.exit_code()
        }
    };
    // A read of stdin (reverse mode) blocks a thread the runtime would otherwise wait for.
    runtime.shutdown_background();
    code
}

async fn run(cli: Cli) -> Result<ExitCode, StartError> {
    let engine = Arc::new(CoreEngine::load()?);
    let mut core = engine.instantiate()?;
    if cli.version {
        let info = core.build_info()?;
        println!("mcp-proxy {} (core: {info})", env!("CARGO_PKG_VERSION"));
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(url) = cli.connect_url() {
        return reverse::run(&cli, url, engine, core).await;
    }
    let persist_to = cli.persist_to()?;
    let config_text = match &cli.config {
        Some(source) => {
            let fetch = config_source::Fetch {
                headers: &cli.config_header,
                timeout: cli.config_timeout.map(std::time::Duration::from_secs),
                insecure: cli.insecure,
            };
            Some(config_source::load(source, &fetch, cli.expand_env).await?)
        }
        None => None,
    };
    let config = cli.core_config(config_text.as_deref())?;
    let seed = fresh_seed()?;
    let started = std::time::Instant::now();
    core.create(&config, &seed, 0).map_err(|error| match (&cli.config, error) {
        // Errors about the file name the file; the core names the server and the field.
        (Some(source), EngineError::Config(error)) => {
            StartError::ConfigFile { file: config_source::display_name(source), error }
        }
        (_, error @ EngineError::Config(_)) => StartError::Config(error),
        (_, error) => StartError::Engine(error),
    })?;
    // What the core serves at the root, with its defaults applied (read natively: the same
    // rules as the component's).
    let native = mcp_proxy_core::Config::from_json(&config)?;
    let file = native.aggregator.as_ref();
    let (host, port) = cli.listen_on(file.and_then(|a| a.addr));
    let base_url = file.and_then(|a| a.base_url.clone());
    // Every server asks for a token (--apiKey, or each one's authTokens in the file).
    let guarded = cli.api_key.is_some()
        || (cli.config.is_some() && native.servers.entries().all(|s| !s.options.auth_tokens.is_empty()));
    let served = if cli.config.is_none() { Some(native) } else { None };
    let max_body_size = core.max_body_size()?;
    let factory: CoreFactory = {
        let engine = engine.clone();
        Box::new(move |now| {
            let mut core = engine.instantiate()?;
            let seed = fresh_seed()?;
            core.create(&config, &seed, now)?;
            Ok(core)
        })
    };
    let tls = match (&cli.ssl_cert, &cli.ssl_key) {
        (Some(cert), Some(key)) => {
            Some(tokio_rustls::TlsAcceptor::from(tls::server_config(cert, key, cli.ssl_ca.as_deref())?))
        }
        _ => None,
    };
    let listener = TcpListener::bind(SocketAddr::new(host, port)).await.map_err(|source| StartError::Listen {
        host,
        port,
        source,
    })?;
    let address = listener.local_addr().map_or_else(|_| format!("{host}:{port}"), |a| a.to_string());
    let scheme = if tls.is_some() { "https" } else { "http" };

    let fetcher = fetch::Fetcher::new()?;
    let shared = Shared::new(core, factory, started, fetcher, persist_to);
    shared.start();
    let timer = tokio::spawn(shared.clone().run_timer());
    // Clients that went away are reported from Drop impls, which must not take the lock.
    let (closed, mut closed_rx) = mpsc::unbounded_channel();
    let reporter = {
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Some(exchange) = closed_rx.recv().await {
                shared.handle(Event::Closed(exchange));
            }
        })
    };
    let limits = http::Limits {
        max_connections: cli.max_connections.unwrap_or_else(limits::default_max_connections).max(1),
        keep_alive: std::time::Duration::from_millis(cli.keep_alive_timeout.max(1)),
        body: std::time::Duration::from_millis(cli.body_timeout.max(1)),
    };
    let server = Arc::new(http::Server {
        shared: shared.clone(),
        closed,
        max_body_size,
        next_exchange: AtomicU64::new(1),
        limits,
        connections: http::Connections::default(),
    });
    let drain = server.clone();
    let tunnel = cli.tunnel.then(|| {
        if cli.api_key.is_none() && !guarded {
            tracing::warn!(
                "--tunnel without --apiKey: anyone who learns the tunnel's URL can use the servers; add --apiKey <secret>"
            );
        }
        let at = cli.tunnel_server.clone().unwrap_or_else(|| tunnel::DEFAULT_SERVER.to_owned());
        tracing::info!("establishing tunnel via {at}");
        let local_port = listener.local_addr().map_or(port, |a| a.port());
        tokio::spawn(tunnel::run(at, cli.tunnel_subdomain.clone(), server.clone(), local_port))
    });
    let accept = tokio::spawn(http::serve(listener, tls, server));
    tracing::info!("mcp-proxy listening on {scheme}://{address}");
    if let Some(base_url) = &base_url {
        tracing::info!("  public URL (mcpProxy.baseURL): {base_url}");
    }
    if !host.is_loopback() && !guarded {
        tracing::warn!(
            "listening beyond loopback ({host}) without --apiKey or authTokens on every server: anyone who can reach this address can use them"
        );
    }
    if let Some(served) = &served {
        if served.transports.stream {
            tracing::info!("  Streamable HTTP: {scheme}://{address}{}", served.stream_endpoint);
        }
        if served.transports.sse {
            tracing::info!("  SSE: {scheme}://{address}{}", served.sse_endpoint);
        }
    }

    let mut interrupt = signal(SignalKind::interrupt()).map_err(StartError::Signals)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(StartError::Signals)?;
    let failed = tokio::select! {
        _ = interrupt.recv() => false,
        _ = terminate.recv() => false,
        () = shared.failed() => true,
    };
    accept.abort();
    if let Some(tunnel) = &tunnel {
        tunnel.abort();
    }
    if !failed {
        // New connections are refused now; what is being answered is let finish.
        let grace = std::time::Duration::from_millis(cli.graceful_shutdown_timeout);
        // Streams that end gracefully (a 2026 listen gets its result) end now, not after the grace.
        shared.begin_shutdown();
        if grace > std::time::Duration::ZERO {
            let left = drain.connections.drain(grace).await;
            if left > 0 {
                tracing::warn!("{left} request(s) still in flight after {} ms; stopping anyway", grace.as_millis());
            }
        }
    }
    timer.abort();
    reporter.abort();
    tracing::info!("shutting down");
    shared.shutdown().await;
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// 32 bytes from the operating system's secure random source, for session ids.
fn fresh_seed() -> Result<[u8; 32], EngineError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)?;
    Ok(seed)
}
