//! Pure codecs of what travels on the wire: JSON-RPC messages, the MCP vocabulary (every
//! method name as a constant), server-sent events, and the HTTP exchange as the core sees it.

pub mod http;
pub mod jsonrpc;
pub mod mcp;
pub mod sse;
pub(crate) mod sse_parser;
