//! Reverse mode (`--connect URL`): the proxy is a stdio MCP server for one local client
//! (Claude Desktop, an IDE), forwarding to a remote server. The host only moves bytes: stdin
//! lines go to the core ([`Event::ClientMessage`]), the core's lines for the client come back
//! on a channel and are written to stdout; the remote is reached with the same fetches as any
//! remote upstream. Logs go to stderr, as always.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::Cli;
use crate::driver::{CoreFactory, Event, Shared};
use crate::engine::{CoreEngine, CoreInstance, EngineError};
use crate::StartError;

/// How long the proxy waits, once the client is gone, for the remote to hear that its
/// session is over (the DELETE of a Streamable HTTP session).
const GOODBYE: Duration = Duration::from_secs(3);

/// Serves the local client on stdin/stdout until it closes stdin (or a signal comes).
pub(crate) async fn run(
    cli: &Cli,
    url: &str,
    engine: Arc<CoreEngine>,
    mut core: CoreInstance,
) -> Result<ExitCode, StartError> {
    let token = std::env::var("API_ACCESS_TOKEN").ok();
    let config = cli.reverse_config(url, token.as_deref())?;
    let seed = crate::fresh_seed()?;
    let started = std::time::Instant::now();
    core.create(&config, &seed, 0).map_err(|error| match error {
        error @ EngineError::Config(_) => StartError::Config(error),
        error => StartError::Engine(error),
    })?;
    let max_line = usize::try_from(core.max_body_size()?).unwrap_or(usize::MAX);
    let factory: CoreFactory = Box::new(move |now| {
        let mut core = engine.instantiate()?;
        let seed = crate::fresh_seed()?;
        core.create(&config, &seed, now)?;
        Ok(core)
    });
    let tls = crate::tls::client_config(cli.ssl_ca.as_deref(), cli.insecure)?;
    let fetcher = crate::fetch::Fetcher::with_tls(tls)?;
    let shared = Shared::new(core, factory, started, fetcher, None);
    let mut lines = shared.client_lines();
    shared.start();
    let timer = tokio::spawn(shared.clone().run_timer());
    let eof = Arc::new(tokio::sync::Notify::new());
    let reader = tokio::spawn(read_client(shared.clone(), max_line, eof.clone()));
    let mut writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(mut line) = lines.recv().await {
            line.push(b'\n');
            if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
                // The client is gone: nobody reads what the remote says any more.
                return;
            }
        }
    });
    tracing::info!("mcp-proxy: stdio client <-> {}", crate::config_source::display_name(url));

    let mut interrupt = signal(SignalKind::interrupt()).map_err(StartError::Signals)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(StartError::Signals)?;
    // The writer ends when the core says the client's session is over (after stdin closed and
    // the remote heard of it), or when stdout is gone.
    let (failed, done) = tokio::select! {
        _ = &mut writer => (false, true),
        () = eof.notified() => (false, false),
        _ = interrupt.recv() => (false, false),
        _ = terminate.recv() => (false, false),
        () = shared.failed() => (true, true),
    };
    reader.abort();
    if !done {
        // A signal, or stdin closed: the session ends (the remote's is deleted), for at most
        // GOODBYE.
        shared.handle(Event::ClientClosed);
        let _ = tokio::time::timeout(GOODBYE, &mut writer).await;
    }
    writer.abort();
    timer.abort();
    shared.shutdown().await;
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Hands every line of stdin to the core; a line longer than `max_line` bytes is skipped (and
/// answered with a parse error by the core, as an empty message would not be); EOF ends the
/// client's session.
async fn read_client(shared: Shared, max_line: usize, eof: Arc<tokio::sync::Notify>) {
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let chunk = match stdin.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let (part, end) = match chunk.iter().position(|b| *b == b'\n') {
            Some(at) => (&chunk[..at], Some(at + 1)),
            None => (chunk, None),
        };
        if !too_long && line.len() + part.len() <= max_line {
            line.extend_from_slice(part);
        } else if !too_long {
            too_long = true;
            line.clear();
            tracing::warn!("the stdio client sent a message over {max_line} bytes; it is dropped");
        }
        let used = end.unwrap_or(part.len());
        stdin.consume(used);
        if end.is_some() {
            if too_long {
                // The core answers what does not parse with a JSON-RPC error, so the client
                // is not left waiting.
                shared.handle(Event::ClientMessage(b"{".to_vec()));
            } else {
                shared.handle(Event::ClientMessage(std::mem::take(&mut line)));
            }
            too_long = false;
            line.clear();
        }
    }
    if !line.is_empty() && !too_long {
        shared.handle(Event::ClientMessage(line));
    }
    eof.notify_one();
}
