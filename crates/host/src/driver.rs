//! The driver: the core behind a lock, fed by whichever task observed something.
//!
//! A task that observes an event (an HTTP request, a child's line or exit, a client gone,
//! the core's deadline) locks the driver, hands the event to the core and carries out every
//! output before unlocking: responses to waiting HTTP handlers, bytes to open streams, lines
//! to children. There is no hop through a pump task: a request reaches the child's stdin
//! from its own connection's task, and an answer reaches the waiting handler from the
//! child's reader task. Everything done under the lock is non-blocking: children are started
//! by the same task right after it unlocks (lines for them wait in their slot meanwhile), and
//! configuration files are written by a task of their own. Follow-up inputs the IO produces on
//! the spot (a stream whose client is gone, a child that failed to start) are fed in the same
//! turn.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mcp_proxy_core::ShellRefusal;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::bindings::{
    FetchData, FetchEnd, FetchHead, Header, HttpRequest, Input, Output, StdioServer, UpstreamClosed, UpstreamEnd,
    UpstreamMessage,
};
use crate::engine::{CoreInstance, EngineError};
use crate::fetch::Fetcher;
use crate::log;
use crate::stdio::{self, Upstream};

/// How many SSE chunks, and bytes, wait for a slow client before its stream is dropped.
const STREAM_QUEUE: usize = 256;
const STREAM_QUEUE_BYTES: usize = 32 * 1024 * 1024;
/// Bytes of lines that may wait for a child that is being started.
const STARTING_QUEUE_BYTES: usize = 16 * 1024 * 1024;

/// A child the core asked for: started, or about to be (lines wait until it is).
enum Child {
    Starting { lines: Vec<Vec<u8>>, bytes: usize },
    Running(Upstream),
}

/// Something an IO task observed.
pub(crate) enum Event {
    /// An HTTP request, and where its response goes.
    Http { request: HttpRequest, reply: oneshot::Sender<Reply> },
    /// The client of an exchange went away.
    Closed(u64),
    /// A line from a child.
    UpstreamMessage { upstream: u64, data: Vec<u8> },
    /// A child ended.
    UpstreamClosed { upstream: u64, reason: String },
    /// The core's deadline passed.
    Timeout,
    /// A fetch's status and headers arrived.
    FetchHead { fetch: u64, status: u16, headers: Vec<Header> },
    /// A fetch's body bytes arrived.
    FetchData { fetch: u64, data: Vec<u8> },
    /// A fetch is over.
    FetchEnd { fetch: u64, error: Option<String> },
    /// Reverse mode: a line from the local client (stdin).
    ClientMessage(Vec<u8>),
    /// Reverse mode: the local client closed stdin.
    ClientClosed,
    /// The proxy is stopping (a signal).
    Shutdown,
}

/// The response the core chose for an HTTP request.
pub(crate) enum Reply {
    /// A complete response.
    Full { status: u16, headers: Vec<Header>, body: Bytes },
    /// A streaming response; chunks arrive on `body` until it closes (`queued` counts the bytes
    /// not yet taken).
    Stream { status: u16, headers: Vec<Header>, body: mpsc::Receiver<Bytes>, queued: Arc<AtomicUsize> },
}

impl Reply {
    /// An answer the shell gives on its own (the core's form, see [`ShellRefusal`]).
    pub(crate) fn refusal(refusal: ShellRefusal) -> Reply {
        let response = refusal.response();
        let headers = response.headers.into_iter().map(|h| Header { name: h.name, value: h.value }).collect();
        Reply::Full { status: response.status, headers, body: Bytes::from(response.body) }
    }
}

/// Makes a fresh core (instance and proxy resource) at a given time.
pub(crate) type CoreFactory = Box<dyn FnMut(u64) -> Result<CoreInstance, EngineError> + Send>;

/// A handle on the driver, shared by every IO task.
#[derive(Clone)]
pub(crate) struct Shared {
    driver: Arc<Mutex<Driver>>,
    /// Wakes the timer task when the core's deadline moves earlier.
    timer: Arc<Notify>,
    /// Signalled if the core failed and could not be replaced.
    fatal: Arc<Notify>,
}

impl Shared {
    /// Wraps a core whose proxy resource was created at `started` (its time zero).
    /// `factory` replaces the core if it ever traps.
    pub(crate) fn new(
        core: CoreInstance,
        factory: CoreFactory,
        started: Instant,
        fetcher: Fetcher,
        persist_to: Option<std::path::PathBuf>,
    ) -> Shared {
        let persist = persist_to.map(|path| {
            let (writes, texts) = mpsc::unbounded_channel();
            tokio::spawn(write_config_file(path, texts));
            writes
        });
        let driver = Driver {
            core,
            persist,
            fetcher,
            factory,
            started,
            shared: None,
            replies: HashMap::new(),
            streams: HashMap::new(),
            upstreams: HashMap::new(),
            spawns: Vec::new(),
            follow_ups: VecDeque::new(),
            deadline: None,
            wall: 0,
            stopping: false,
            client: None,
        };
        let shared = Shared {
            driver: Arc::new(Mutex::new(driver)),
            timer: Arc::new(Notify::new()),
            fatal: Arc::new(Notify::new()),
        };
        shared.lock().shared = Some(shared.clone());
        shared
    }

    /// Reverse mode: where the core's messages for the local client arrive, in order; the
    /// channel closes when the client's session is over.
    pub(crate) fn client_lines(&self) -> mpsc::UnboundedReceiver<Vec<u8>> {
        let (lines, receiver) = mpsc::unbounded_channel();
        self.lock().client = Some(lines);
        receiver
    }

    fn lock(&self) -> MutexGuard<'_, Driver> {
        // A panic under the lock is a bug; the state it left is still the best there is.
        self.driver.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands one event to the core and carries out what it decides.
    pub(crate) fn handle(&self, event: Event) {
        let spawns = self.feed_event(event);
        self.start_children(spawns);
    }

    /// The refusal of a request decided from its head alone (its body not read yet).
    pub(crate) fn precheck(&self, request: &HttpRequest) -> Option<Reply> {
        let mut driver = self.lock();
        if driver.stopping {
            return None;
        }
        let refused = match driver.core.precheck(request) {
            Ok(refused) => refused,
            Err(error) => {
                // A trap: the core is replaced; the request then goes the usual way.
                if driver.recover(&error).is_err() {
                    self.fatal.notify_one();
                }
                return None;
            }
        };
        // Log lines the check produced (it arms no timer: the deadline stays as it was).
        if let Err(error) = driver.drain() {
            tracing::error!("the core failed: {error}");
        }
        let response = refused?;
        Some(Reply::Full {
            status: response.head.status,
            headers: response.head.headers,
            body: Bytes::from(response.body),
        })
    }

    /// Starts the children the core asked for, outside the lock, then hands their pipes over
    /// (or reports the failure); repeats while that makes the core ask for more.
    fn start_children(&self, mut spawns: Vec<(u64, StdioServer)>) {
        while !spawns.is_empty() {
            let started: Vec<(u64, String, std::io::Result<Upstream>)> = spawns
                .drain(..)
                .map(|(upstream, server)| {
                    let child = stdio::spawn(upstream, &server, self.clone());
                    (upstream, server.command, child)
                })
                .collect();
            let mut driver = self.lock();
            if driver.stopping {
                for (_, _, child) in started {
                    if let Ok(mut child) = child {
                        child.stop();
                    }
                }
                return;
            }
            for (upstream, command, child) in started {
                driver.attach(upstream, &command, child);
            }
            let settled = driver.settle().or_else(|error| driver.recover(&error));
            if let Err(error) = settled {
                tracing::error!("the core cannot be restarted: {error}");
                self.fatal.notify_one();
                return;
            }
            spawns = std::mem::take(&mut driver.spawns);
        }
    }

    /// Feeds one event; returns the children to start once unlocked.
    fn feed_event(&self, event: Event) -> Vec<(u64, StdioServer)> {
        let mut driver = self.lock();
        if driver.stopping {
            return Vec::new();
        }
        let before = driver.deadline;
        let input = match event {
            Event::Http { request, reply } => {
                driver.replies.insert(request.exchange, reply);
                // What the core seals for clients is dated by the wall clock (in seconds: told
                // again only when it moved on).
                let wall =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                if wall != driver.wall {
                    match driver.core.set_wall_clock(wall) {
                        Ok(()) => driver.wall = wall,
                        Err(error) => tracing::warn!("the core failed to take the time: {error}"),
                    }
                }
                Input::HttpRequest(request)
            }
            Event::Closed(exchange) => Input::HttpClosed(exchange),
            Event::UpstreamMessage { upstream, data } => Input::UpstreamMessage(UpstreamMessage { upstream, data }),
            Event::UpstreamClosed { upstream, reason } => {
                driver.upstreams.remove(&upstream);
                Input::UpstreamClosed(UpstreamClosed { upstream, reason: UpstreamEnd::Exited(reason) })
            }
            Event::Timeout => Input::Timeout,
            Event::FetchHead { fetch, status, headers } => Input::FetchHead(FetchHead { fetch, status, headers }),
            Event::FetchData { fetch, data } => Input::FetchData(FetchData { fetch, data }),
            Event::FetchEnd { fetch, error } => Input::FetchEnd(FetchEnd { fetch, error }),
            Event::ClientMessage(line) => Input::ClientMessage(line),
            Event::ClientClosed => Input::ClientClosed,
            Event::Shutdown => Input::Shutdown,
        };
        let fed = driver.feed(input).or_else(|error| driver.recover(&error));
        if let Err(error) = fed {
            tracing::error!("the core cannot be restarted: {error}");
            self.fatal.notify_one();
            return Vec::new();
        }
        if driver.deadline.is_some() && (before.is_none() || driver.deadline < before) {
            self.timer.notify_one();
        }
        std::mem::take(&mut driver.spawns)
    }

    /// Starts the work the core asked for when it was created (stateless mode's children).
    pub(crate) fn start(&self) {
        let spawns = {
            let mut driver = self.lock();
            if let Err(error) = driver.settle() {
                tracing::error!("the core failed at start: {error}");
                self.fatal.notify_one();
            }
            std::mem::take(&mut driver.spawns)
        };
        self.start_children(spawns);
        self.timer.notify_one();
    }

    /// Feeds `Timeout` whenever the core's deadline passes; runs until the task is dropped.
    pub(crate) async fn run_timer(self) {
        loop {
            let deadline = {
                let driver = self.lock();
                driver.deadline.map(|at| driver.started + Duration::from_nanos(at))
            };
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = sleep => self.handle(Event::Timeout),
                () = self.timer.notified() => {}
            }
        }
    }

    /// Resolves if the core failed for good.
    pub(crate) async fn failed(&self) {
        self.fatal.notified().await;
    }

    /// Tells the core the proxy is stopping: streams that can end gracefully (a 2026 listen
    /// stream gets its result) end now, while requests in flight are let finish.
    pub(crate) fn begin_shutdown(&self) {
        let spawns = self.feed_event(Event::Shutdown);
        self.start_children(spawns);
    }

    /// Stops every child and waits for them (each gets its grace period, all at once).
    pub(crate) async fn shutdown(&self) {
        let mut upstreams: Vec<Upstream> = {
            let mut driver = self.lock();
            // Streams that can end gracefully do (a 2026 listen stream gets its result).
            if let Err(error) = driver.feed(Input::Shutdown) {
                tracing::warn!("the core failed while stopping: {error}");
            }
            driver.stopping = true;
            driver.streams.clear();
            for (_, reply) in driver.replies.drain() {
                let _ = reply.send(Reply::refusal(ShellRefusal::ShuttingDown));
            }
            driver.fetcher.cancel_all();
            driver.spawns.clear();
            driver
                .upstreams
                .drain()
                .filter_map(|(_, child)| match child {
                    Child::Running(upstream) => Some(upstream),
                    Child::Starting { .. } => None,
                })
                .collect()
        };
        if !upstreams.is_empty() {
            tracing::info!("stopping {} server process(es)", upstreams.len());
        }
        for upstream in &mut upstreams {
            upstream.stop();
        }
        for upstream in &mut upstreams {
            upstream.stopped().await;
        }
        tracing::info!("stopped");
    }
}

/// The driver's state: the core and the IO handles its outputs refer to.
pub(crate) struct Driver {
    core: CoreInstance,
    /// Where changes to the server list go to be written (`--persist`), in order.
    persist: Option<mpsc::UnboundedSender<String>>,
    /// Requests to remote upstreams.
    fetcher: Fetcher,
    factory: CoreFactory,
    started: Instant,
    /// The handle children report back through (set right after construction).
    shared: Option<Shared>,
    replies: HashMap<u64, oneshot::Sender<Reply>>,
    streams: HashMap<u64, (mpsc::Sender<Bytes>, Arc<AtomicUsize>)>,
    upstreams: HashMap<u64, Child>,
    /// Children to start once the lock is released.
    spawns: Vec<(u64, StdioServer)>,
    follow_ups: VecDeque<Input>,
    /// The core's next deadline, as of the last turn.
    deadline: Option<u64>,
    /// The wall clock (Unix seconds) the core was last told.
    wall: u64,
    /// Shutting down: events are ignored.
    stopping: bool,
    /// Reverse mode: the lines for the local client's stdout; dropped when its session is over.
    client: Option<mpsc::UnboundedSender<Vec<u8>>>,
}

impl Driver {
    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A call into the core failed (a trap: a bug in the core). Its state is gone, so every
    /// session ends: children stop, waiting clients get 503, streams close; a fresh core
    /// takes over and the proxy keeps serving.
    fn recover(&mut self, error: &EngineError) -> Result<(), EngineError> {
        tracing::error!("the core failed and is restarted; all sessions end: {error}");
        for (_, child) in self.upstreams.drain() {
            if let Child::Running(mut upstream) = child {
                upstream.stop();
            }
        }
        self.spawns.clear();
        for (_, reply) in self.replies.drain() {
            let _ = reply.send(Reply::refusal(ShellRefusal::CoreFailed));
        }
        self.fetcher.cancel_all();
        self.streams.clear();
        self.follow_ups.clear();
        let now = self.now();
        self.core = (self.factory)(now)?;
        self.wall = 0;
        self.settle()
    }

    /// Hands `input` to the core and carries out what it leads to.
    fn feed(&mut self, input: Input) -> Result<(), EngineError> {
        self.follow_ups.push_back(input);
        self.run_follow_ups()
    }

    /// Carries out the outputs of a call that changes no deadline; settles if they led to more.
    fn drain(&mut self) -> Result<(), EngineError> {
        for output in self.core.poll_outputs()? {
            self.carry_out(output);
        }
        if self.follow_ups.is_empty() {
            Ok(())
        } else {
            self.settle()
        }
    }

    /// Carries out every output, feeding back follow-ups, until the core has nothing to say.
    fn settle(&mut self) -> Result<(), EngineError> {
        for output in self.core.poll_outputs()? {
            self.carry_out(output);
        }
        if self.follow_ups.is_empty() {
            self.deadline = self.core.poll_timeout()?;
            return Ok(());
        }
        self.run_follow_ups()
    }

    /// Feeds the inputs waiting in `follow_ups` one by one, carrying out what each leads to
    /// (which may add more), and keeps the deadline of the last turn.
    fn run_follow_ups(&mut self) -> Result<(), EngineError> {
        while let Some(input) = self.follow_ups.pop_front() {
            let now = self.now();
            let turn = self.core.handle_input(now, &input)?;
            for output in turn.outputs {
                self.carry_out(output);
            }
            self.deadline = turn.timeout;
        }
        Ok(())
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
                let queued = Arc::new(AtomicUsize::new(0));
                if let Some(reply) = self.replies.remove(&head.exchange) {
                    let stream = Reply::Stream {
                        status: head.status,
                        headers: head.headers,
                        body: receiver,
                        queued: queued.clone(),
                    };
                    if reply.send(stream).is_ok() {
                        self.streams.insert(head.exchange, (sender, queued));
                        return;
                    }
                }
                self.follow_ups.push_back(Input::HttpClosed(head.exchange));
            }
            Output::StreamData(chunk) => {
                let size = chunk.data.len();
                let delivered = match self.streams.get(&chunk.exchange) {
                    Some((stream, queued)) if queued.load(Ordering::Acquire) + size <= STREAM_QUEUE_BYTES => {
                        // Counted before it is sent, so the body never counts below zero.
                        queued.fetch_add(size, Ordering::AcqRel);
                        let sent = stream.try_send(Bytes::from(chunk.data)).is_ok();
                        if !sent {
                            queued.fetch_sub(size, Ordering::AcqRel);
                        }
                        sent
                    }
                    _ => false,
                };
                if !delivered && self.streams.remove(&chunk.exchange).is_some() {
                    tracing::warn!("exchange {}: the client is not reading its stream; closing it", chunk.exchange);
                    self.follow_ups.push_back(Input::HttpClosed(chunk.exchange));
                }
            }
            Output::StreamEnd(exchange) => {
                self.streams.remove(&exchange);
            }
            Output::Spawn(spawn) => {
                self.upstreams.insert(spawn.upstream, Child::Starting { lines: Vec::new(), bytes: 0 });
                self.spawns.push((spawn.upstream, spawn.server));
            }
            Output::Send(message) => self.send(message.upstream, message.data),
            Output::CloseUpstream(upstream) => {
                if let Some(Child::Running(mut upstream)) = self.upstreams.remove(&upstream) {
                    upstream.stop();
                }
                // A child still starting is stopped when it has started (its slot is gone).
            }
            Output::Log(line) => log::core_line(line.level, &line.message),
            Output::Fetch(request) => {
                if let Some(shared) = self.shared.clone() {
                    self.fetcher.start(request, shared);
                }
            }
            Output::CancelFetch(fetch) => self.fetcher.cancel(fetch),
            Output::ClientSend(line) => match &self.client {
                Some(client) => {
                    let _ = client.send(line);
                }
                None => tracing::warn!("a message for a stdio client was dropped: not in reverse mode"),
            },
            Output::ClientDone => self.client = None,
            Output::PersistConfig(text) => match &self.persist {
                Some(writes) => {
                    let _ = writes.send(text);
                }
                None => tracing::warn!("the server list changed but --persist names no file to write"),
            },
        }
    }

    /// Writes a line to a child, or keeps it while the child starts.
    fn send(&mut self, upstream: u64, line: Vec<u8>) {
        let sent = match self.upstreams.get_mut(&upstream) {
            Some(Child::Running(child)) => child.send(line),
            Some(Child::Starting { lines, bytes }) if *bytes + line.len() <= STARTING_QUEUE_BYTES => {
                *bytes += line.len();
                lines.push(line);
                true
            }
            Some(Child::Starting { .. }) => false,
            None => true, // gone already; its end was reported
        };
        if !sent {
            if let Some(Child::Running(mut child)) = self.upstreams.remove(&upstream) {
                child.stop();
            }
            let reason = UpstreamEnd::Stalled;
            self.follow_ups.push_back(Input::UpstreamClosed(UpstreamClosed { upstream, reason }));
        }
    }

    /// A child the core asked for has been started (or could not be): give it what waited.
    fn attach(&mut self, upstream: u64, command: &str, started: std::io::Result<Upstream>) {
        let waiting = match self.upstreams.remove(&upstream) {
            Some(Child::Starting { lines, .. }) => lines,
            other => {
                // Closed while it was starting (or unknown): it is not wanted any more.
                if let Some(other) = other {
                    self.upstreams.insert(upstream, other);
                }
                if let Ok(mut child) = started {
                    child.stop();
                }
                return;
            }
        };
        match started {
            Ok(child) => {
                self.upstreams.insert(upstream, Child::Running(child));
                for line in waiting {
                    self.send(upstream, line);
                }
            }
            Err(error) => {
                tracing::error!("could not start {command:?}: {error}");
                let reason = UpstreamEnd::SpawnFailed(format!("{command:?}: {error}"));
                self.follow_ups.push_back(Input::UpstreamClosed(UpstreamClosed { upstream, reason }));
            }
        }
    }
}

/// Writes each new text of the configuration file, in order, off the driver: atomically (a
/// temporary file in the same directory, flushed to disk, with the old file's permissions,
/// renamed over it), so a crash leaves the old file or the new one, never half of either.
async fn write_config_file(path: std::path::PathBuf, mut texts: mpsc::UnboundedReceiver<String>) {
    while let Some(text) = texts.recv().await {
        let target = path.clone();
        let written = tokio::task::spawn_blocking(move || write_atomically(&target, &text)).await;
        match written {
            Ok(Ok(())) => tracing::info!("wrote the server list back to {}", path.display()),
            Ok(Err(error)) => tracing::error!("could not write {}: {error}", path.display()),
            Err(error) => tracing::error!("could not write {}: {error}", path.display()),
        }
    }
}

/// Replaces the file at `path` with `text`, atomically. A symbolic link is followed: the file
/// it points to is replaced, the link stays.
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let directory = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(directory)?;
    // The temporary file is private (0600) until it takes the old file's permissions.
    if let Ok(metadata) = std::fs::metadata(&path) {
        file.as_file().set_permissions(metadata.permissions())?;
    }
    file.write_all(text.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(&path).map_err(|error| error.error)?;
    // The rename is durable once the directory is on disk too.
    std::fs::File::open(directory)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_rewrite_keeps_the_mode_and_follows_links() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("servers.json");
        std::fs::write(&file, "old").expect("written");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");

        write_atomically(&link, "new").expect("rewritten");
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "new");
        assert!(std::fs::symlink_metadata(&link).expect("stat").file_type().is_symlink(), "the link stays");
        let mode = std::fs::metadata(&file).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary file is left: {names:?}");
    }

    #[test]
    fn a_new_file_is_created() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("servers.json");
        write_atomically(&file, "{}").expect("written");
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "{}");
    }
}
