//! Responses to the client: complete ones, and streams fed by the driver.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::channel::mpsc;
use futures::Stream;
use mcp_proxy_core::{ExchangeId, Header, Input, ResponseHead, ShellRefusal};
use worker::{Headers, Response, Result};

use crate::log;

/// A complete response.
pub(crate) fn full(head: &ResponseHead, body: Vec<u8>) -> Result<Response> {
    let response = if body.is_empty() { Response::empty()? } else { Response::from_bytes(body)? };
    Ok(response.with_status(head.status).with_headers(headers(&head.headers)))
}

/// A streaming response whose body is `stream`.
pub(crate) fn streaming(head: &ResponseHead, stream: ClientStream) -> Result<Response> {
    Ok(Response::from_stream(stream)?.with_status(head.status).with_headers(headers(&head.headers)))
}

/// A refusal by the shell itself, in the core's words (the native host answers the same).
pub(crate) fn refusal(refusal: ShellRefusal) -> Result<Response> {
    let response = refusal.response();
    Ok(Response::from_bytes(response.body)?.with_status(response.status).with_headers(headers(&response.headers)))
}

fn headers(list: &[Header]) -> Headers {
    let headers = Headers::new();
    for header in list {
        if headers.append(&header.name, &header.value).is_err() {
            log::warn(&format!("dropped an invalid response header {:?}", header.name));
        }
    }
    headers
}

/// The body of a streaming response: chunks from the driver until it closes the channel.
/// Dropped before the end (the client went away), it tells the driver with `HttpClosed`.
pub(crate) struct ClientStream {
    chunks: mpsc::Receiver<Vec<u8>>,
    gone: Option<(ExchangeId, mpsc::UnboundedSender<Input>)>,
}

impl ClientStream {
    /// A stream of `chunks` for `exchange`; `gone` hears if it is dropped early.
    pub(crate) fn new(
        exchange: ExchangeId,
        chunks: mpsc::Receiver<Vec<u8>>,
        gone: mpsc::UnboundedSender<Input>,
    ) -> ClientStream {
        ClientStream { chunks, gone: Some((exchange, gone)) }
    }
}

impl Stream for ClientStream {
    type Item = std::result::Result<Vec<u8>, worker::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.chunks).poll_next(cx);
        if let Poll::Ready(None) = polled {
            // The driver ended the stream: nothing to report when it is dropped.
            self.gone = None;
        }
        polled.map(|chunk| chunk.map(Ok))
    }
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        if let Some((exchange, gone)) = self.gone.take() {
            // The driver may be finished already; then nobody needs to know.
            let _ = gone.unbounded_send(Input::HttpClosed(exchange));
        }
    }
}
