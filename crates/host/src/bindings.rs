//! The one `bindgen!` of the host: Rust bindings for `wit/proxy.wit`.

wasmtime::component::bindgen!({
    world: "proxy-core",
    path: "../../wit",
});

pub(crate) use exports::mcp_proxy::core::proxy::{
    ConfigError, FetchData, FetchEnd, FetchHead, FetchRequest, Header, HttpRequest, Input, LogLevel, Output, Response,
    StdioServer, Turn, UpstreamClosed, UpstreamEnd, UpstreamMessage,
};
