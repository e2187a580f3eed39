//! The WIT's types and the core's, one into the other: the host drives the core through the
//! WIT, records transcripts in the core's terms ([`mcp_proxy_core::transcript`]), and its tests
//! replay them through the WIT (the conversions back are test-only).

use mcp_proxy_core as core;
use mcp_proxy_core::{ExchangeId, FetchId, UpstreamId};

use crate::bindings::exports::mcp_proxy::core::proxy as wit;

fn header_in(header: wit::Header) -> core::Header {
    core::Header { name: header.name, value: header.value }
}

#[cfg(test)]
fn header_out(header: core::Header) -> wit::Header {
    wit::Header { name: header.name, value: header.value }
}

/// A request in the core's terms.
pub(crate) fn request_in(request: wit::HttpRequest) -> core::HttpRequest {
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

#[cfg(test)]
/// A request in the WIT's terms.
pub(crate) fn request_out(request: core::HttpRequest) -> wit::HttpRequest {
    wit::HttpRequest {
        exchange: request.exchange.0,
        method: request.method,
        target: request.target,
        headers: request.headers.into_iter().map(header_out).collect(),
        body: request.body,
        body_too_large: request.body_too_large,
        via_loopback: request.via_loopback,
    }
}

/// An input in the core's terms.
pub(crate) fn input_in(input: wit::Input) -> core::Input {
    match input {
        wit::Input::HttpRequest(request) => core::Input::HttpRequest(request_in(request)),
        wit::Input::HttpClosed(exchange) => core::Input::HttpClosed(ExchangeId(exchange)),
        wit::Input::UpstreamMessage(message) => {
            core::Input::UpstreamMessage { upstream: UpstreamId(message.upstream), data: message.data }
        }
        wit::Input::UpstreamClosed(closed) => core::Input::UpstreamClosed {
            upstream: UpstreamId(closed.upstream),
            reason: match closed.reason {
                wit::UpstreamEnd::Exited(why) => core::UpstreamEnd::Exited(why),
                wit::UpstreamEnd::SpawnFailed(why) => core::UpstreamEnd::SpawnFailed(why),
                wit::UpstreamEnd::Stalled => core::UpstreamEnd::Stalled,
            },
        },
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

#[cfg(test)]
/// An input in the WIT's terms.
pub(crate) fn input_out(input: core::Input) -> wit::Input {
    match input {
        core::Input::HttpRequest(request) => wit::Input::HttpRequest(request_out(request)),
        core::Input::HttpClosed(exchange) => wit::Input::HttpClosed(exchange.0),
        core::Input::UpstreamMessage { upstream, data } => {
            wit::Input::UpstreamMessage(wit::UpstreamMessage { upstream: upstream.0, data })
        }
        core::Input::UpstreamClosed { upstream, reason } => wit::Input::UpstreamClosed(wit::UpstreamClosed {
            upstream: upstream.0,
            reason: match reason {
                core::UpstreamEnd::Exited(why) => wit::UpstreamEnd::Exited(why),
                core::UpstreamEnd::SpawnFailed(why) => wit::UpstreamEnd::SpawnFailed(why),
                core::UpstreamEnd::Stalled => wit::UpstreamEnd::Stalled,
                // A reason this host does not know of yet: told as an exit.
                other => wit::UpstreamEnd::Exited(other.to_string()),
            },
        }),
        core::Input::Timeout => wit::Input::Timeout,
        core::Input::Shutdown => wit::Input::Shutdown,
        core::Input::FetchHead { fetch, status, headers } => wit::Input::FetchHead(wit::FetchHead {
            fetch: fetch.0,
            status,
            headers: headers.into_iter().map(header_out).collect(),
        }),
        core::Input::FetchData { fetch, data } => wit::Input::FetchData(wit::FetchData { fetch: fetch.0, data }),
        core::Input::FetchEnd { fetch, error } => wit::Input::FetchEnd(wit::FetchEnd { fetch: fetch.0, error }),
        core::Input::ClientMessage(data) => wit::Input::ClientMessage(data),
        core::Input::ClientClosed => wit::Input::ClientClosed,
    }
}

#[cfg(test)]
/// A response head in the core's terms.
pub(crate) fn head_in(head: wit::ResponseHead) -> core::ResponseHead {
    core::ResponseHead {
        exchange: ExchangeId(head.exchange),
        status: head.status,
        headers: head.headers.into_iter().map(header_in).collect(),
    }
}

#[cfg(test)]
/// An output in the core's terms.
pub(crate) fn output_in(output: wit::Output) -> core::Output {
    match output {
        wit::Output::Respond(response) => core::Output::Respond { head: head_in(response.head), body: response.body },
        wit::Output::StreamStart(head) => core::Output::StreamStart(head_in(head)),
        wit::Output::StreamData(data) => {
            core::Output::StreamData { exchange: ExchangeId(data.exchange), data: data.data }
        }
        wit::Output::StreamEnd(exchange) => core::Output::StreamEnd(ExchangeId(exchange)),
        wit::Output::Spawn(spawn) => core::Output::Spawn {
            upstream: UpstreamId(spawn.upstream),
            server: core::StdioServer {
                command: spawn.server.command,
                args: spawn.server.args,
                env: spawn.server.env,
                shell: spawn.server.shell,
            },
        },
        wit::Output::Send(message) => core::Output::Send { upstream: UpstreamId(message.upstream), data: message.data },
        wit::Output::CloseUpstream(upstream) => core::Output::CloseUpstream(UpstreamId(upstream)),
        wit::Output::Fetch(request) => core::Output::Fetch(core::FetchRequest {
            fetch: FetchId(request.fetch),
            method: request.method,
            url: request.url,
            headers: request.headers.into_iter().map(header_in).collect(),
            body: request.body,
            public_only: request.public_only,
        }),
        wit::Output::CancelFetch(fetch) => core::Output::CancelFetch(FetchId(fetch)),
        wit::Output::PersistConfig(text) => core::Output::PersistConfig(text),
        wit::Output::ClientSend(data) => core::Output::ClientSend(data),
        wit::Output::ClientDone => core::Output::ClientDone,
        wit::Output::Log(log) => core::Output::Log {
            level: match log.level {
                wit::LogLevel::Error => core::LogLevel::Error,
                wit::LogLevel::Warn => core::LogLevel::Warn,
                wit::LogLevel::Info => core::LogLevel::Info,
                wit::LogLevel::Debug => core::LogLevel::Debug,
            },
            message: log.message,
        },
    }
}
