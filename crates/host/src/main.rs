//! `mcp-proxy`: serves a stdio MCP server over Streamable HTTP and legacy SSE.
//!
//! The routing core runs as a WebAssembly component inside wasmtime; this binary only
//! moves bytes between sockets, child processes and the core.

mod bindings;
mod body;
mod cli;
mod config_source;
mod driver;
mod engine;
mod fetch;
mod http;
mod limits;
mod log;
mod stdio;
mod tls;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::cli::Cli;
use crate::driver::{CoreFactory, Event, Shared};
use crate::engine::{CoreEngine, EngineError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every connection and child pipe is a file descriptor: use what the system allows.
    limits::raise_open_files();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            log::error(&format!("cannot start the async runtime: {error}"));
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let engine = match CoreEngine::load() {
        Ok(engine) => engine,
        Err(error) => return fail(&error.to_string()),
    };
    let engine = Arc::new(engine);
    let mut core = match engine.instantiate() {
        Ok(core) => core,
        Err(error) => return fail(&error.to_string()),
    };
    if cli.version {
        return match core.build_info() {
            Ok(info) => {
                println!("mcp-proxy {} (core: {info})", env!("CARGO_PKG_VERSION"));
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error.to_string()),
        };
    }
    let config_text = match &cli.config {
        Some(source) => match config_source::load(source, &cli.config_header, cli.expand_env).await {
            Ok(text) => Some(text),
            Err(message) => return usage(&message),
        },
        None => None,
    };
    let config = match cli.core_config(config_text.as_deref()) {
        Ok(config) => config,
        Err(message) => return usage(&message),
    };
    let seed = match fresh_seed() {
        Ok(seed) => seed,
        Err(error) => return fail(&error.to_string()),
    };
    let started = std::time::Instant::now();
    if let Err(error) = core.create(&config, &seed, 0) {
        // Errors about the file name the file; the core names the server and the field.
        return match (&cli.config, error) {
            (Some(source), EngineError::Config(error)) => {
                usage(&format!("{source}: {}: {}", error.path, error.message))
            }
            (_, error) => usage(&error.to_string()),
        };
    }
    let factory: CoreFactory = {
        let engine = engine.clone();
        Box::new(move |now| {
            let mut core = engine.instantiate()?;
            let seed = fresh_seed()?;
            core.create(&config, &seed, now)?;
            Ok(core)
        })
    };
    let max_body_size = match core.max_body_size() {
        Ok(size) => size,
        Err(error) => return fail(&error.to_string()),
    };
    let tls = match (&cli.ssl_cert, &cli.ssl_key) {
        (Some(cert), Some(key)) => match tls::server_config(cert, key, cli.ssl_ca.as_deref()) {
            Ok(config) => Some(tokio_rustls::TlsAcceptor::from(config)),
            Err(error) => return fail(&error.to_string()),
        },
        _ => None,
    };
    let listener = match TcpListener::bind(SocketAddr::new(cli.host, cli.port)).await {
        Ok(listener) => listener,
        Err(error) => return fail(&format!("cannot listen on {}:{}: {error}", cli.host, cli.port)),
    };
    let address = listener.local_addr().map_or_else(|_| format!("{}:{}", cli.host, cli.port), |a| a.to_string());
    let scheme = if tls.is_some() { "https" } else { "http" };

    let fetcher = match fetch::Fetcher::new() {
        Ok(fetcher) => fetcher,
        Err(error) => return fail(&error),
    };
    let persist_to = match (&cli.config, cli.persist) {
        (Some(source), true) if config_source::is_remote(source) => {
            return usage("--persist needs --config to name a local file, not a URL");
        }
        (Some(source), true) => Some(std::path::PathBuf::from(source)),
        _ => None,
    };
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
    let accept = tokio::spawn(http::serve(listener, tls, server));
    log::info(&format!("mcp-proxy listening on {scheme}://{address}"));
    if !cli.host.is_loopback() && cli.api_key.is_none() {
        log::warn(&format!(
            "listening beyond loopback ({}) without --apiKey: anyone who can reach this address can use the servers",
            cli.host
        ));
    }
    if cli.config.is_none() && cli.server != Some(cli::ServerKind::Sse) {
        log::info(&format!("  Streamable HTTP: {scheme}://{address}{}", stream_endpoint(&cli)));
    }
    if cli.config.is_none() && cli.server != Some(cli::ServerKind::Stream) {
        log::info(&format!("  SSE: {scheme}://{address}{}", sse_endpoint(&cli)));
    }

    let (mut interrupt, mut terminate) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
        _ => return fail("cannot install signal handlers"),
    };
    let failed = tokio::select! {
        _ = interrupt.recv() => false,
        _ = terminate.recv() => false,
        () = shared.failed() => true,
    };
    accept.abort();
    timer.abort();
    reporter.abort();
    log::info("shutting down");
    shared.shutdown().await;
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// 32 bytes from the operating system's secure random source, for session ids.
fn fresh_seed() -> Result<[u8; 32], EngineError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| EngineError::Random(e.to_string()))?;
    Ok(seed)
}

fn stream_endpoint(cli: &Cli) -> &str {
    match (&cli.endpoint, cli.server) {
        (Some(endpoint), Some(cli::ServerKind::Stream) | None) => endpoint,
        _ => &cli.stream_endpoint,
    }
}

fn sse_endpoint(cli: &Cli) -> &str {
    match (&cli.endpoint, cli.server) {
        (Some(endpoint), Some(cli::ServerKind::Sse)) => endpoint,
        _ => &cli.sse_endpoint,
    }
}

fn fail(message: &str) -> ExitCode {
    log::error(message);
    ExitCode::FAILURE
}

fn usage(message: &str) -> ExitCode {
    log::error(message);
    ExitCode::from(2)
}
