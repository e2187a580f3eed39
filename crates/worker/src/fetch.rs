//! Requests to remote upstreams, made for the core with the runtime's `fetch`: status and
//! headers are handed back when they arrive, then the body chunk by chunk as it streams (an
//! SSE response flows event by event), then the end.

use futures::channel::mpsc::UnboundedSender;
use futures::future::{AbortHandle, Abortable};
use futures::StreamExt;
use mcp_proxy_core::{FetchRequest, Header, Input};
use worker::js_sys::Uint8Array;
use worker::{AbortController, AbortSignal, Fetch, Request};

use crate::log;

/// A fetch in flight; cancelling it stops reading and aborts the request.
pub(crate) struct Running {
    task: AbortHandle,
    controller: AbortController,
}

impl Running {
    /// Stops the fetch: nothing more is reported for it.
    pub(crate) fn cancel(self) {
        self.task.abort();
        self.controller.abort();
    }
}

/// Starts `request` on the runtime's event loop; what comes back goes to `events` as
/// `FetchHead`, `FetchData` and a final `FetchEnd`.
pub(crate) fn start(request: FetchRequest, events: UnboundedSender<Input>) -> Running {
    let controller = AbortController::default();
    let signal = controller.signal();
    let (task, registration) = AbortHandle::new_pair();
    let fetch = request.fetch;
    let work = async move {
        let error = exchange(request, &signal, &events).await.err();
        // The driver is gone only when it no longer needs this fetch.
        let _ = events.unbounded_send(Input::FetchEnd { fetch, error });
    };
    wasm_bindgen_futures::spawn_local(async move {
        // Aborted means cancelled by the core: nothing to report.
        let _ = Abortable::new(work, registration).await;
    });
    Running { task, controller }
}

async fn exchange(request: FetchRequest, signal: &AbortSignal, events: &UnboundedSender<Input>) -> Result<(), String> {
    let fetch = request.fetch;
    let built = build(&request)?;
    // The error never quotes the URL: its query may hold a secret (`?key=`).
    let mut response =
        Fetch::Request(built).send_with_signal(signal).await.map_err(|error| format!("{}: {error}", request.method))?;
    let headers = response.headers().entries().map(|(name, value)| Header::new(name, value)).collect();
    let head = Input::FetchHead { fetch, status: response.status_code(), headers };
    if events.unbounded_send(head).is_err() {
        return Ok(());
    }
    // A response without a body (204, 202 with nothing) has no stream.
    let Ok(mut body) = response.stream() else {
        return Ok(());
    };
    while let Some(chunk) = body.next().await {
        let data = chunk.map_err(|error| format!("the response body broke off: {error}"))?;
        if events.unbounded_send(Input::FetchData { fetch, data }).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// The runtime's request for `request`.
fn build(request: &FetchRequest) -> Result<Request, String> {
    let init = worker::web_sys::RequestInit::new();
    init.set_method(&request.method);
    // A redirect is answered as it is: credentials never follow one to another origin.
    init.set_redirect(web_sys::RequestRedirect::Manual);
    let headers = worker::Headers::new();
    for header in &request.headers {
        headers.append(&header.name, &header.value).map_err(|error| format!("header {:?}: {error}", header.name))?;
    }
    init.set_headers(headers.as_ref());
    if !request.body.is_empty() {
        init.set_body(&Uint8Array::from(request.body.as_slice()));
    }
    let built = worker::web_sys::Request::new_with_str_and_init(&request.url, &init).map_err(|error| {
        let reason = error.as_string().unwrap_or_else(|| format!("{error:?}"));
        log::warn(&format!("cannot make a request to an upstream: {reason}"));
        format!("{}: {reason}", request.method)
    })?;
    Ok(Request::from(built))
}
