//! The driver: one future that owns the core for one request and carries out its outputs.
//!
//! The request goes in as the only exchange. The driver then drains the core's outputs and
//! waits for whichever comes first: an upstream fetch reporting back, the client dropping a
//! stream, or the core's deadline. It runs under `ctx.wait_until`, so a streaming response
//! keeps being fed after the handler has returned it. It ends when the core is idle
//! ([`Proxy::is_idle`]: the exchange answered, nothing owed upstream); remaining fetches are
//! cancelled.

use std::collections::{HashMap, VecDeque};

use futures::channel::{mpsc, oneshot};
use futures::future::{select, Either};
use futures::StreamExt;
use mcp_proxy_core::{Config, ExchangeId, FetchId, Input, LogLevel, Output, Proxy, ShellRefusal, UpstreamEnd};
use worker::{Context, Delay, Request, Response, Result};

use crate::response::ClientStream;
use crate::{body, clock, fetch, kept, log, response};

/// The one exchange of a Worker invocation.
const EXCHANGE: ExchangeId = ExchangeId(1);
/// How many chunks wait for a slow client before its stream is dropped.
const STREAM_QUEUE: usize = 256;
/// What the Worker says about stdio servers the core asks it to start.
const NO_PROCESSES: &str = "a Cloudflare Worker cannot start processes (stdio servers)";

/// Serves `request` with a fresh core made from `config` and `seed`.
pub(crate) async fn serve(request: Request, config: Config, seed: [u8; 32], ctx: &Context) -> Result<Response> {
    let mut proxy = Proxy::new(config, seed, clock::now());
    proxy.set_wall_clock(clock::wall());
    kept::adopt(&mut proxy);
    // The core announces its endpoints when it starts, which here is every request: only its
    // warnings (configuration notices) are worth a line.
    while let Some(output) = proxy.poll_output() {
        match output {
            Output::Log { level, message } if level <= LogLevel::Warn => log::write(level, &message),
            Output::Log { .. } => {}
            other => log::error(&format!("the core asked for {other:?} before any request")),
        }
    }
    let head = match body::head(&request, EXCHANGE) {
        Ok(head) => head,
        Err(error) => {
            log::warn(&format!("refused a request: {error}"));
            return response::refusal(ShellRefusal::RequestUnreadable);
        }
    };
    // Who may not get in is told before a byte of the body is read.
    if let Some((head, body)) = proxy.precheck(&head) {
        while let Some(output) = proxy.poll_output() {
            if let Output::Log { level, message } = output {
                log::write(level, &message);
            }
        }
        return response::full(&head, body);
    }
    let request = match body::read(request, head, proxy.max_body_size()).await {
        Ok(request) => request,
        Err(error) => {
            log::warn(&format!("refused a request: {error}"));
            return response::refusal(ShellRefusal::RequestUnreadable);
        }
    };
    let (reply, answer) = oneshot::channel();
    let (events, inbox) = mpsc::unbounded();
    let mut driver = Driver {
        proxy,
        reply: Some(reply),
        stream: None,
        fetches: HashMap::new(),
        events,
        inbox,
        follow_ups: VecDeque::new(),
    };
    driver.proxy.handle_input(clock::now(), Input::HttpRequest(request));
    ctx.wait_until(driver.run());
    match answer.await {
        Ok(response) => response,
        Err(_) => response::refusal(ShellRefusal::NoAnswer),
    }
}

/// The core and the IO its outputs refer to.
struct Driver {
    proxy: Proxy,
    /// Where the response goes, until it is sent.
    reply: Option<oneshot::Sender<Result<Response>>>,
    /// The open streaming response, if any.
    stream: Option<mpsc::Sender<Vec<u8>>>,
    /// Fetches in flight, by the core's number.
    fetches: HashMap<FetchId, fetch::Running>,
    /// Handed to fetches and streams to report back.
    events: mpsc::UnboundedSender<Input>,
    inbox: mpsc::UnboundedReceiver<Input>,
    /// Inputs the IO produced on the spot, fed before waiting again.
    follow_ups: VecDeque<Input>,
}

impl Driver {
    async fn run(mut self) {
        loop {
            while let Some(output) = self.proxy.poll_output() {
                self.carry_out(output);
            }
            if let Some(input) = self.follow_ups.pop_front() {
                self.feed(input);
                continue;
            }
            // What may still run then (an upstream's listening stream) is abandoned.
            if self.proxy.is_idle() {
                break;
            }
            match self.next_input().await {
                Some(input) => self.feed(input),
                None => {
                    log::error("the exchange is unfinished but nothing can happen any more; ending it");
                    break;
                }
            }
        }
        for (_, running) in self.fetches.drain() {
            running.cancel();
        }
        kept::keep(&self.proxy);
    }

    fn feed(&mut self, input: Input) {
        if let Input::FetchEnd { fetch, .. } = &input {
            self.fetches.remove(fetch);
        }
        self.proxy.handle_input(clock::now(), input);
    }

    /// Waits for the next event or the core's deadline; `None` if neither can come.
    async fn next_input(&mut self) -> Option<Input> {
        let deadline = self.proxy.poll_timeout();
        let waiting_on_io = !self.fetches.is_empty() || self.stream.is_some();
        let Some(deadline) = deadline else {
            return if waiting_on_io { self.inbox.next().await } else { None };
        };
        let wait = deadline.since(clock::now());
        if wait.is_zero() {
            return Some(Input::Timeout);
        }
        match select(self.inbox.next(), Delay::from(wait)).await {
            Either::Left((input, _)) => input,
            Either::Right(((), _)) => Some(Input::Timeout),
        }
    }

    fn carry_out(&mut self, output: Output) {
        match output {
            Output::Respond { head, body } => match self.reply.take() {
                Some(reply) => {
                    // The handler is gone only if the runtime dropped the request.
                    let _ = reply.send(response::full(&head, body));
                }
                None => log::warn(&format!("a second response for exchange {:?} was dropped", head.exchange)),
            },
            Output::StreamStart(head) => {
                let (sender, chunks) = mpsc::channel(STREAM_QUEUE);
                let stream = ClientStream::new(head.exchange, chunks, self.events.clone());
                let sent =
                    self.reply.take().is_some_and(|reply| reply.send(response::streaming(&head, stream)).is_ok());
                if sent {
                    self.stream = Some(sender);
                }
                // Otherwise the stream was dropped and has reported the client gone.
            }
            Output::StreamData { exchange, data } => {
                let Some(stream) = &mut self.stream else {
                    return;
                };
                if let Err(error) = stream.try_send(data) {
                    self.stream = None;
                    // A disconnected stream has reported the client gone itself.
                    if error.is_full() {
                        log::warn(&format!("exchange {exchange:?}: the client is not reading its stream; closing it"));
                        self.follow_ups.push_back(Input::HttpClosed(exchange));
                    }
                }
            }
            Output::StreamEnd(_) => self.stream = None,
            Output::Fetch(request) => {
                let number = request.fetch;
                let running = fetch::start(request, self.events.clone());
                if let Some(previous) = self.fetches.insert(number, running) {
                    previous.cancel();
                }
            }
            Output::CancelFetch(number) => {
                if let Some(running) = self.fetches.remove(&number) {
                    running.cancel();
                }
            }
            Output::Log { level, message } => log::write(level, &message),
            Output::Spawn { upstream, server } => {
                log::error(&format!("cannot start {:?}: {NO_PROCESSES}", server.command));
                self.follow_ups.push_back(Input::UpstreamClosed {
                    upstream,
                    reason: UpstreamEnd::SpawnFailed(NO_PROCESSES.to_owned()),
                });
            }
            Output::Send { upstream, .. } => {
                log::error(&format!("a message for stdio upstream {upstream:?} was dropped: {NO_PROCESSES}"))
            }
            Output::CloseUpstream(upstream) => {
                log::error(&format!("asked to stop stdio upstream {upstream:?}: {NO_PROCESSES}"))
            }
            // Reverse mode is the native binary's (a Worker has no stdin).
            Output::ClientSend(_) | Output::ClientDone => {}
            Output::PersistConfig(_) => {
                log::error("the server list changed but a Worker cannot write its configuration; the change is lost")
            }
        }
    }
}
