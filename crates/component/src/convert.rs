//! Conversions between the WIT types and the core's types.

use crate::bindings::exports::mcp_proxy::core::proxy as wit;
use mcp_proxy_core::{self as core, ExchangeId, FetchId, UpstreamId};

fn header_in(header: wit::Header) -> core::Header {
    core::Header { name: header.name, value: header.value }
}

fn header_out(header: core::Header) -> wit::Header {
    wit::Header { name: header.name, value: header.value }
}

fn head_out(head: core::ResponseHead) -> wit::ResponseHead {
    wit::ResponseHead {
        exchange: head.exchange.0,
        status: head.status,
        headers: head.headers.into_iter().map(header_out).collect(),
    }
}

/// Converts an HTTP request from the host.
pub(crate) fn request(request: wit::HttpRequest) -> core::HttpRequest {
    core::HttpRequest {
        exchange: ExchangeId(request.exchange),
        method: request.method,
        target: request.target,
        headers: request.headers.into_iter().map(header_in).collect(),
        body: request.body,
        body_too_large: request.body_too_large,
        via_loopback: request.via_loopback,
    }
}

/// Converts a response for the host.
pub(crate) fn response(head: core::ResponseHead, body: Vec<u8>) -> wit::Response {
    wit::Response { head: head_out(head), body }
}

/// Converts an input from the host.
pub(crate) fn input(input: wit::Input) -> core::Input {
    match input {
        wit::Input::HttpRequest(http) => core::Input::HttpRequest(request(http)),
        wit::Input::HttpClosed(exchange) => core::Input::HttpClosed(ExchangeId(exchange)),
        wit::Input::UpstreamMessage(message) => {
            core::Input::UpstreamMessage { upstream: UpstreamId(message.upstream), data: message.data }
        }
        wit::Input::UpstreamClosed(closed) => {
            let reason = match closed.reason {
                wit::UpstreamEnd::Exited(why) => core::UpstreamEnd::Exited(why),
                wit::UpstreamEnd::SpawnFailed(why) => core::UpstreamEnd::SpawnFailed(why),
                wit::UpstreamEnd::Stalled => core::UpstreamEnd::Stalled,
            };
            core::Input::UpstreamClosed { upstream: UpstreamId(closed.upstream), reason }
        }
        wit::Input::Timeout => core::Input::Timeout,
        wit::Input::Shutdown => core::Input::Shutdown,
        wit::Input::FetchHead(head) => core::Input::FetchHead {
            fetch: FetchId(head.fetch),
            status: head.status,
            headers: head.headers.into_iter().map(header_in).collect(),
        },
        wit::Input::FetchData(data) => core::Input::FetchData { fetch: FetchId(data.fetch), data: data.data },
        wit::Input::FetchEnd(end) => core::Input::FetchEnd { fetch: FetchId(end.fetch), error: end.error },
        wit::Input::ClientMessage(data) => core::Input::ClientMessage(data),
        wit::Input::ClientClosed => core::Input::ClientClosed,
    }
}

/// Converts an output for the host.
pub(crate) fn output(output: core::Output) -> wit::Output {
    match output {
        core::Output::Respond { head, body } => wit::Output::Respond(response(head, body)),
        core::Output::StreamStart(head) => wit::Output::StreamStart(head_out(head)),
        core::Output::StreamData { exchange, data } => {
            wit::Output::StreamData(wit::StreamData { exchange: exchange.0, data })
        }
        core::Output::StreamEnd(exchange) => wit::Output::StreamEnd(exchange.0),
        core::Output::Spawn { upstream, server } => wit::Output::Spawn(wit::Spawn {
            upstream: upstream.0,
            server: wit::StdioServer {
                command: server.command,
                args: server.args,
                env: server.env,
                shell: server.shell,
            },
        }),
        core::Output::Send { upstream, data } => wit::Output::Send(wit::UpstreamMessage { upstream: upstream.0, data }),
        core::Output::CloseUpstream(upstream) => wit::Output::CloseUpstream(upstream.0),
        core::Output::Log { level, message } => wit::Output::Log(wit::Log { level: log_level(level), message }),
        core::Output::Fetch(request) => wit::Output::Fetch(wit::FetchRequest {
            fetch: request.fetch.0,
            method: request.method,
            url: request.url,
            headers: request.headers.into_iter().map(header_out).collect(),
            body: request.body,
            public_only: request.public_only,
        }),
        core::Output::CancelFetch(fetch) => wit::Output::CancelFetch(fetch.0),
        core::Output::PersistConfig(text) => wit::Output::PersistConfig(text),
        core::Output::ClientSend(data) => wit::Output::ClientSend(data),
        core::Output::ClientDone => wit::Output::ClientDone,
    }
}

fn log_level(level: core::LogLevel) -> wit::LogLevel {
    match level {
        core::LogLevel::Error => wit::LogLevel::Error,
        core::LogLevel::Warn => wit::LogLevel::Warn,
        core::LogLevel::Info => wit::LogLevel::Info,
        core::LogLevel::Debug => wit::LogLevel::Debug,
    }
}
