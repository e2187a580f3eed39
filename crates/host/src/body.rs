//! Response bodies: complete, or streamed from the pump; a dropped stream tells the core.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::http::InFlight;

/// Tells the pump that an exchange's client went away, unless disarmed first.
pub(crate) struct CloseGuard {
    exchange: u64,
    closed: Option<mpsc::UnboundedSender<u64>>,
}

impl CloseGuard {
    /// Arms a guard for `exchange`.
    pub(crate) fn new(exchange: u64, closed: mpsc::UnboundedSender<u64>) -> CloseGuard {
        CloseGuard { exchange, closed: Some(closed) }
    }

    /// The exchange finished normally: nothing to report.
    pub(crate) fn disarm(&mut self) {
        self.closed = None;
    }
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        if let Some(closed) = self.closed.take() {
            // The pump is gone only at shutdown, when nobody needs to know.
            let _ = closed.send(self.exchange);
        }
    }
}

/// A response body; it holds its request's place in the connection's count of requests in
/// flight until it is dropped.
pub(crate) enum Body {
    /// All of it at once.
    Full { bytes: Option<Bytes>, _in_flight: InFlight },
    /// Chunks from the pump until it closes the channel.
    Stream { chunks: mpsc::Receiver<Bytes>, queued: Arc<AtomicUsize>, _guard: CloseGuard, _in_flight: InFlight },
}

impl Body {
    /// A complete body.
    pub(crate) fn full(bytes: impl Into<Bytes>, in_flight: InFlight) -> Body {
        let bytes = bytes.into();
        Body::Full { bytes: (!bytes.is_empty()).then_some(bytes), _in_flight: in_flight }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Body::Full { bytes, .. } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream { chunks, queued, .. } => chunks.poll_recv(cx).map(|chunk| {
                chunk.map(|bytes| {
                    queued.fetch_sub(bytes.len(), Ordering::AcqRel);
                    Ok(Frame::data(bytes))
                })
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full { bytes: None, .. })
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full { bytes: Some(bytes), .. } => SizeHint::with_exact(bytes.len() as u64),
            Body::Full { bytes: None, .. } => SizeHint::with_exact(0),
            Body::Stream { .. } => SizeHint::default(),
        }
    }
}
