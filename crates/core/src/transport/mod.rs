//! The client-facing transports: Streamable HTTP (2025 revisions), legacy HTTP+SSE, how server
//! messages are delivered on their streams, and the life of a session.

pub(crate) mod body;
pub(crate) mod delivery;
pub(crate) mod forward;
pub(crate) mod legacy_sse;
pub(crate) mod lifecycle;
pub(crate) mod stdio;
pub(crate) mod streamable;
