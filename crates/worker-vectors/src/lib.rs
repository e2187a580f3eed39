//! Test-only: the core's transcript replay in the Worker build. The end-to-end tests POST
//! each recorded transcript (`tests/vectors/transcripts`) here, and the core compiled the way
//! the Worker is compiled (worker-build, wasm-bindgen, `-Oz`, LTO) and running in workerd
//! replays it: `200 ok`, or `409` with the first difference. Never deployed: the Worker
//! itself (`crates/worker`) has no such route.

use mcp_proxy_core::transcript::{replay, Transcript};
use worker::{event, Context, Env, Method, Request, Response, Result};

/// Replays the transcript in the request body.
#[event(fetch)]
async fn fetch(mut request: Request, _env: Env, _ctx: Context) -> Result<Response> {
    if request.method() != Method::Post {
        return Response::error("POST a transcript", 405);
    }
    let text = request.text().await?;
    let transcript = match Transcript::from_json(&text) {
        Ok(transcript) => transcript,
        Err(error) => return Response::error(format!("not a transcript: {error}"), 400),
    };
    match replay(&transcript) {
        Ok(()) => Response::ok("ok"),
        Err(mismatch) => Response::error(mismatch.to_string(), 409),
    }
}
