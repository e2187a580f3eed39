//! The process's file-descriptor budget: raised to what the system allows at start, and split
//! between connections and children.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors kept for everything but connections: listeners, the log, the runtime.
const RESERVED: u64 = 64;

/// Raises the soft limit of open files to the hard limit.
pub(crate) fn raise_open_files() {
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
            tracing::warn!("could not raise the open-files limit from {soft} to {hard}");
        }
    }
}

/// Half of the descriptors for connections, the other half for children's pipes.
pub(crate) fn default_max_connections() -> usize {
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    usize::try_from(soft.saturating_sub(RESERVED) / 2).unwrap_or(usize::MAX).max(64)
}
