//! The proxy's log: `tracing` events written to stderr, one line each, with a timestamp and a
//! level, filtered by `RUST_LOG`.
//!
//! Targets: the host's own events carry their module path (`mcp_proxy::…`), the core's log
//! lines [`CORE`], and what the children write to their stderr [`UPSTREAM`]; so
//! `RUST_LOG=info,mcp_proxy::upstream=off` keeps the children's stderr out of the log.

use std::io::IsTerminal;

use tracing_subscriber::filter::{Directive, EnvFilter};

use crate::bindings::LogLevel;

/// The target of the core's log lines.
pub(crate) const CORE: &str = "mcp_proxy::core";
/// The target of the children's stderr lines.
pub(crate) const UPSTREAM: &str = "mcp_proxy::upstream";

/// The filter without `RUST_LOG`: info and above, and the core's debug lines (the core writes
/// them only when asked to: `--debug`, or a server's `logEnabled`).
const DEFAULT_FILTER: &str = "info,mcp_proxy::core=debug";

/// Starts writing log lines to stderr. `RUST_LOG` chooses what is written (default
/// [`DEFAULT_FILTER`]); `debug` (`--debug`) adds everything of the proxy's own at debug level.
pub(crate) fn init(debug: bool) {
    let mut filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::builder().parse_lossy(directives),
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    if debug {
        let directive: Directive = "mcp_proxy=debug".parse().expect("a constant, valid directive");
        filter = filter.add_directive(directive);
    }
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
    if let Err(error) = installed {
        // Only a second call gets here; the first subscriber keeps logging.
        tracing::warn!("the log was set up twice: {error}");
    }
}

/// Logs a line the core wrote, at its level.
pub(crate) fn core_line(level: LogLevel, message: &str) {
    match level {
        LogLevel::Error => tracing::error!(target: CORE, "{message}"),
        LogLevel::Warn => tracing::warn!(target: CORE, "{message}"),
        LogLevel::Info => tracing::info!(target: CORE, "{message}"),
        LogLevel::Debug => tracing::debug!(target: CORE, "{message}"),
    }
}
