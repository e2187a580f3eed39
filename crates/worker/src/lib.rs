//! mcp-proxy as a Cloudflare Worker: the same sans-IO core as the native proxy, serving
//! Streamable HTTP in front of remote MCP servers (`streamable-http` and `sse` entries of the
//! configuration file; the core refuses stdio servers at the edge).
//!
//! The Worker is a thin shell. Every request gets a fresh [`Proxy`](mcp_proxy_core::Proxy)
//! built from the Worker's environment ([`config`]); the request goes in as one
//! [`Input::HttpRequest`](mcp_proxy_core::Input::HttpRequest) and the [`driver`] carries out
//! what the core decides (responses, streams, upstream fetches, timers) until the exchange is
//! over. Nothing is kept between requests: state that must outlive one request travels with
//! the client (the core seals it into the session id with `MCP_PROXY_SESSION_KEY`).
//!
//! The environment (vars and secrets, see `wrangler.toml` and [`config`]):
//! `MCP_PROXY_CONFIG` (the `mcpServers` configuration file, required), `MCP_PROXY_API_KEY`,
//! `MCP_PROXY_CORS_ORIGIN`, `MCP_PROXY_SESSION_KEY`.

mod body;
mod clock;
mod config;
mod driver;
mod fetch;
mod kept;
mod log;
mod random;
mod response;

use worker::{event, Context, Env, Request, Response, Result};

/// Serves one HTTP request.
#[event(fetch)]
async fn fetch(request: Request, env: Env, ctx: Context) -> Result<Response> {
    let config = match config::from_env(&env) {
        Ok(config) => config,
        Err(error) => {
            // The details name bindings and may quote their values: they are for the operator.
            log::error(&format!("configuration: {error}"));
            return response::refusal(mcp_proxy_core::ShellRefusal::Misconfigured);
        }
    };
    let seed = match random::seed() {
        Ok(seed) => seed,
        Err(error) => {
            log::error(&error);
            return response::refusal(mcp_proxy_core::ShellRefusal::NoRandomness);
        }
    };
    driver::serve(request, config, seed, &ctx).await
}
