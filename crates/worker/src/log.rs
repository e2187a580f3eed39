//! Log lines to the Worker's console (`wrangler tail`, the dashboard, workerd's stderr).

use mcp_proxy_core::LogLevel;
use worker::{console_error, console_log, console_warn};

/// Writes one of the core's log lines.
pub(crate) fn write(level: LogLevel, message: &str) {
    match level {
        LogLevel::Error => console_error!("mcp-proxy: {message}"),
        LogLevel::Warn => console_warn!("mcp-proxy: {message}"),
        LogLevel::Info | LogLevel::Debug => console_log!("mcp-proxy: {message}"),
    }
}

/// Writes an error of the shell itself.
pub(crate) fn error(message: &str) {
    write(LogLevel::Error, message);
}

/// Writes a warning of the shell itself.
pub(crate) fn warn(message: &str) {
    write(LogLevel::Warn, message);
}
