//! The proxy's log: lines on stderr, with a level.

use std::io::Write;

use crate::bindings::LogLevel;

/// Writes one log line.
pub(crate) fn write(level: LogLevel, message: &str) {
    let tag = match level {
        LogLevel::Error => "ERROR",
        LogLevel::Warn => "WARN ",
        LogLevel::Info => "INFO ",
        LogLevel::Debug => "DEBUG",
    };
    let mut stderr = std::io::stderr().lock();
    // A log line that cannot be written has nowhere else to go.
    let _ = writeln!(stderr, "[mcp-proxy] {tag} {message}");
}

/// Logs at info level.
pub(crate) fn info(message: &str) {
    write(LogLevel::Info, message);
}

/// Logs at warn level.
pub(crate) fn warn(message: &str) {
    write(LogLevel::Warn, message);
}

/// Logs at error level.
pub(crate) fn error(message: &str) {
    write(LogLevel::Error, message);
}
