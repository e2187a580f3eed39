//! The pump: one task owns the core, feeds it every event, and carries out its outputs.
//!
//! Each turn: take one event (or the core's deadline), hand it to the core, then drain the
//! core's outputs into IO — responses to waiting HTTP handlers, bytes to open streams,
//! lines to children. Follow-up inputs the IO produces on the spot (a stream whose client is
//! gone, a child that failed to start) are queued and fed in the same turn.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::bindings::{Header, HttpRequest, Input, LogLevel, Output, UpstreamClosed, UpstreamMessage};
use crate::engine::{CoreInstance, EngineError};
use crate::log;
use crate::stdio::{self, Upstream};

/// How many events wait for the pump before senders are slowed down.
pub(crate) const EVENT_QUEUE: usize = 1024;
/// How many SSE chunks wait for a slow client before its stream is dropped.
const STREAM_QUEUE: usize = 256;

/// Something the IO tasks observed.
pub(crate) enum Event {
    /// An HTTP request, and where its response goes.
    Http { request: HttpRequest, reply: oneshot::Sender<Reply> },
    /// A line from a child.
    UpstreamMessage { upstream: u64, data: Vec<u8> },
    /// A child ended.
    UpstreamClosed { upstream: u64, reason: String },
    /// Stop: terminate every child, then return.
    Shutdown,
}

/// The response the core chose for an HTTP request.
pub(crate) enum Reply {
    /// A complete response.
    Full { status: u16, headers: Vec<Header>, body: Bytes },
    /// A streaming response; chunks arrive on `body` until it closes.
    Stream { status: u16, headers: Vec<Header>, body: mpsc::Receiver<Bytes> },
}

/// Makes a fresh core (instance and proxy resource) at a given time.
pub(crate) type CoreFactory = Box<dyn FnMut(u64) -> Result<CoreInstance, EngineError> + Send>;

/// The pump's state: the core and the IO handles its outputs refer to.
pub(crate) struct Driver {
    core: CoreInstance,
    factory: CoreFactory,
    started: Instant,
    events: mpsc::Sender<Event>,
    replies: HashMap<u64, oneshot::Sender<Reply>>,
    streams: HashMap<u64, mpsc::Sender<Bytes>>,
    upstreams: HashMap<u64, Upstream>,
    follow_ups: VecDeque<Input>,
}

impl Driver {
    /// Wraps a core whose proxy resource was created at `started` (its time zero).
    /// `factory` replaces the core if it ever traps.
    pub(crate) fn new(
        core: CoreInstance,
        factory: CoreFactory,
        started: Instant,
        events: mpsc::Sender<Event>,
    ) -> Driver {
        Driver {
            core,
            factory,
            started,
            events,
            replies: HashMap::new(),
            streams: HashMap::new(),
            upstreams: HashMap::new(),
            follow_ups: VecDeque::new(),
        }
    }

    /// Runs until a shutdown event or until every sender is gone, then stops every child.
    pub(crate) async fn run(
        mut self,
        events: mpsc::Receiver<Event>,
        closed: mpsc::UnboundedReceiver<u64>,
    ) -> Result<(), EngineError> {
        let result = self.pump(events, closed).await;
        self.shutdown().await;
        result
    }

    async fn pump(
        &mut self,
        mut events: mpsc::Receiver<Event>,
        mut closed: mpsc::UnboundedReceiver<u64>,
    ) -> Result<(), EngineError> {
        // Creating the core may already have asked for work (stateless mode's children).
        self.settle()?;
        loop {
            let deadline = self.core.poll_timeout()?.map(|at| self.started + std::time::Duration::from_nanos(at));
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let input = tokio::select! {
                biased;
                Some(exchange) = closed.recv() => Input::HttpClosed(exchange),
                event = events.recv() => match event {
                    Some(Event::Http { request, reply }) => {
                        self.replies.insert(request.exchange, reply);
                        Input::HttpRequest(request)
                    }
                    Some(Event::UpstreamMessage { upstream, data }) => Input::UpstreamMessage(UpstreamMessage { upstream, data }),
                    Some(Event::UpstreamClosed { upstream, reason }) => {
                        self.upstreams.remove(&upstream);
                        Input::UpstreamClosed(UpstreamClosed { upstream, reason })
                    }
                    Some(Event::Shutdown) | None => break,
                },
                () = sleep => Input::Timeout,
            };
            if let Err(error) = self.feed(input) {
                self.recover(&error)?;
            }
        }
        Ok(())
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A call into the core failed (a trap: a bug in the core). Its state is gone, so every
    /// session ends: children stop, waiting clients get 503, streams close; a fresh core
    /// takes over and the proxy keeps serving.
    fn recover(&mut self, error: &EngineError) -> Result<(), EngineError> {
        log::error(&format!("the core failed and is restarted; all sessions end: {error}"));
        for (_, mut upstream) in self.upstreams.drain() {
            upstream.stop();
        }
        self.replies.clear();
        self.streams.clear();
        self.follow_ups.clear();
        let now = self.now();
        self.core = (self.factory)(now)?;
        self.settle()
    }

    /// Hands `input` to the core and settles.
    fn feed(&mut self, input: Input) -> Result<(), EngineError> {
        self.follow_ups.push_back(input);
        self.settle()
    }

    /// Carries out every output, feeding back follow-ups, until the core has nothing to say.
    fn settle(&mut self) -> Result<(), EngineError> {
        loop {
            for output in self.core.poll_outputs()? {
                self.carry_out(output);
            }
            let Some(input) = self.follow_ups.pop_front() else {
                return Ok(());
            };
            let now = self.now();
            self.core.handle_input(now, &input)?;
        }
    }

    fn carry_out(&mut self, output: Output) {
        match output {
            Output::Respond(response) => {
                let head = response.head;
                if let Some(reply) = self.replies.remove(&head.exchange) {
                    let _ = reply.send(Reply::Full {
                        status: head.status,
                        headers: head.headers,
                        body: Bytes::from(response.body),
                    });
                }
            }
            Output::StreamStart(head) => {
                let (sender, receiver) = mpsc::channel(STREAM_QUEUE);
                if let Some(reply) = self.replies.remove(&head.exchange) {
                    if reply.send(Reply::Stream { status: head.status, headers: head.headers, body: receiver }).is_ok()
                    {
                        self.streams.insert(head.exchange, sender);
                        return;
                    }
                }
                self.follow_ups.push_back(Input::HttpClosed(head.exchange));
            }
            Output::StreamData(chunk) => {
                let delivered = self
                    .streams
                    .get(&chunk.exchange)
                    .is_some_and(|stream| stream.try_send(Bytes::from(chunk.data)).is_ok());
                if !delivered && self.streams.remove(&chunk.exchange).is_some() {
                    log::warn(&format!(
                        "exchange {}: the client is not reading its stream; closing it",
                        chunk.exchange
                    ));
                    self.follow_ups.push_back(Input::HttpClosed(chunk.exchange));
                }
            }
            Output::StreamEnd(exchange) => {
                self.streams.remove(&exchange);
            }
            Output::Spawn(spawn) => match stdio::spawn(spawn.upstream, &spawn.server, self.events.clone()) {
                Ok(upstream) => {
                    self.upstreams.insert(spawn.upstream, upstream);
                }
                Err(error) => {
                    let reason = format!("could not start {:?}: {error}", spawn.server.command);
                    log::error(&reason);
                    self.follow_ups
                        .push_back(Input::UpstreamClosed(UpstreamClosed { upstream: spawn.upstream, reason }));
                }
            },
            Output::Send(message) => {
                let sent = self.upstreams.get(&message.upstream).is_some_and(|upstream| upstream.send(message.data));
                if !sent {
                    if let Some(mut upstream) = self.upstreams.remove(&message.upstream) {
                        upstream.stop();
                        let reason = "the server is not reading its stdin".to_owned();
                        self.follow_ups
                            .push_back(Input::UpstreamClosed(UpstreamClosed { upstream: message.upstream, reason }));
                    }
                }
            }
            Output::CloseUpstream(upstream) => {
                if let Some(mut upstream) = self.upstreams.remove(&upstream) {
                    upstream.stop();
                }
            }
            Output::Log(line) => log::write(line.level, &line.message),
        }
    }

    /// Stops every child and waits for them (each gets its grace period, all at once).
    async fn shutdown(&mut self) {
        let count = self.upstreams.len();
        if count > 0 {
            log::info(&format!("stopping {count} server process(es)"));
        }
        let mut upstreams: Vec<Upstream> = self.upstreams.drain().map(|(_, upstream)| upstream).collect();
        for upstream in &mut upstreams {
            upstream.stop();
        }
        for upstream in &mut upstreams {
            upstream.stopped().await;
        }
        self.streams.clear();
        self.replies.clear();
        log::write(LogLevel::Info, "stopped");
    }
}
