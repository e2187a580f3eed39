//! Upstream servers: stdio children and remote HTTP clients, one upstream per session or one
//! shared by all.

pub(crate) mod http;
pub(crate) mod shared;
