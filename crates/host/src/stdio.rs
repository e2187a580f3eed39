//! Stdio upstreams: child processes whose stdin and stdout carry one JSON-RPC message per line.

use std::io::ErrorKind;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

use crate::bindings::StdioServer;
use crate::driver::{Event, Shared};
use crate::log;

/// The longest line accepted from a child; longer ones are skipped.
const MAX_LINE: usize = 64 * 1024 * 1024;
/// The longest stderr line logged as it is.
const MAX_STDERR_LINE: usize = 16 * 1024;
/// Read buffer for a child's stdout.
const READ_BUFFER: usize = 64 * 1024;
/// Messages, and bytes, queued for a child's stdin before the proxy counts it as stuck.
const STDIN_QUEUE: usize = 1024;
const STDIN_QUEUE_BYTES: usize = 64 * 1024 * 1024;
/// How long a child gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

/// The proxy's handle on a running child.
pub(crate) struct Upstream {
    stdin: Option<Stdin>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<()>>,
}

/// A child's stdin: lines are written straight from the caller while the pipe has room, and
/// through a queue drained by a task when it has not, in order either way.
struct Stdin {
    pipe: Arc<pipe::Sender>,
    queue: mpsc::Sender<Bytes>,
    /// Lines in the queue or being written by the task.
    queued: Arc<AtomicUsize>,
    /// Bytes of those lines.
    queued_bytes: Arc<AtomicUsize>,
}

impl Stdin {
    fn new(pipe: pipe::Sender) -> Stdin {
        let pipe = Arc::new(pipe);
        let queued = Arc::new(AtomicUsize::new(0));
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let (queue, lines) = mpsc::channel(STDIN_QUEUE);
        tokio::spawn(drain_stdin(pipe.clone(), lines, queued.clone(), queued_bytes.clone()));
        Stdin { pipe, queue, queued, queued_bytes }
    }

    /// Writes one line (with its newline); false if the child is gone or stopped reading.
    fn write(&self, line: Vec<u8>) -> bool {
        let mut line = Bytes::from(line);
        if self.queued.load(Ordering::Acquire) == 0 {
            match self.pipe.try_write(&line) {
                Ok(written) if written == line.len() => return true,
                Ok(written) => line = line.slice(written..),
                Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return false,
            }
        }
        let size = line.len();
        if self.queued_bytes.load(Ordering::Acquire) + size > STDIN_QUEUE_BYTES {
            return false;
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.queued_bytes.fetch_add(size, Ordering::AcqRel);
        if self.queue.try_send(line).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            return false;
        }
        true
    }
}

/// Writes what could not be written at once, in order, as the pipe drains.
async fn drain_stdin(
    pipe: Arc<pipe::Sender>,
    mut lines: mpsc::Receiver<Bytes>,
    queued: Arc<AtomicUsize>,
    queued_bytes: Arc<AtomicUsize>,
) {
    while let Some(mut line) = lines.recv().await {
        let size = line.len();
        while !line.is_empty() {
            if pipe.writable().await.is_err() {
                return;
            }
            match pipe.try_write(&line) {
                Ok(written) => line = line.slice(written..),
                Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
        queued_bytes.fetch_sub(size, Ordering::AcqRel);
        queued.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Upstream {
    /// Writes one message to the child's stdin (the newline is added here); false if the
    /// child is gone or not reading.
    pub(crate) fn send(&self, mut message: Vec<u8>) -> bool {
        message.push(b'\n');
        self.stdin.as_ref().is_some_and(|stdin| stdin.write(message))
    }

    /// Asks the child to stop (SIGTERM to its process group, SIGKILL after a grace period).
    pub(crate) fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits until the child and its readers are gone.
    pub(crate) async fn stopped(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

/// Starts `server` as upstream `id`; its lines and its exit are handed to `shared`.
pub(crate) fn spawn(id: u64, server: &StdioServer, shared: Shared) -> std::io::Result<Upstream> {
    let mut command = if server.shell {
        let shell = std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into());
        let mut line = server.command.clone();
        for arg in &server.args {
            line.push(' ');
            line.push_str(arg);
        }
        let mut command = Command::new(shell);
        command.arg("-c").arg(line);
        command
    } else {
        let mut command = Command::new(&server.command);
        command.args(&server.args);
        command
    };
    // The core decided the whole environment (the proxy's secrets are not in it).
    command
        .env_clear()
        .envs(server.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let pid = child.id();
    let stdin = match child.stdin.take().map(|stdin| stdin.into_owned_fd()).transpose()? {
        Some(fd) => Some(Stdin::new(pipe::Sender::from_owned_fd(fd)?)),
        None => None,
    };
    let (stop_tx, stop_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let reader = child
        .stdout
        .take()
        .map(|stdout| tokio::spawn(read_stdout(id, BufReader::with_capacity(READ_BUFFER, stdout), shared.clone())));
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(copy_stderr(id, pid, BufReader::new(stderr)));
    }
    tokio::spawn(async move {
        let reason = supervise(child, stop_rx).await;
        if let Some(reader) = reader {
            // Deliver every line the child wrote before reporting its end; a grandchild
            // holding stdout open must not keep the session alive.
            let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
        }
        let _ = done_tx.send(());
        shared.handle(Event::UpstreamClosed { upstream: id, reason });
    });
    Ok(Upstream { stdin, stop: Some(stop_tx), done: Some(done_rx) })
}

/// Waits for the child to exit, or stops it when asked; returns why it ended. Either way,
/// nothing it started (its process group) outlives it.
async fn supervise(mut child: Child, stop: oneshot::Receiver<()>) -> String {
    let group = child.id().and_then(|pid| i32::try_from(pid).ok()).map(Pid::from_raw);
    tokio::select! {
        status = child.wait() => {
            if let Some(group) = group {
                tokio::spawn(end_group(group));
            }
            match status {
                Ok(status) => format!("the server process exited ({status})"),
                Err(error) => format!("waiting for the server process failed: {error}"),
            }
        }
        _ = stop => {
            terminate(&mut child).await;
            "stopped by the proxy".to_owned()
        }
    }
}

/// SIGTERM to the child's process group, then SIGKILL if it outlives the grace period.
pub(crate) async fn terminate(child: &mut Child) {
    let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) else {
        return;
    };
    let group = Pid::from_raw(pid);
    if killpg(group, Signal::SIGTERM).is_err() {
        let _ = child.start_kill();
    }
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    // Whatever else is left in the group (grandchildren) goes too.
    let _ = killpg(group, Signal::SIGKILL);
}

/// Ends what is left of a process group whose leader exited: SIGTERM, then SIGKILL to whatever
/// outlives the grace period.
async fn end_group(group: Pid) {
    if killpg(group, Signal::SIGTERM).is_err() {
        return; // nobody is left
    }
    tokio::time::sleep(GRACE).await;
    // Signal 0 only asks whether anyone is left.
    if killpg(group, None).is_ok() {
        let _ = killpg(group, Signal::SIGKILL);
    }
}

async fn read_stdout(id: u64, mut stdout: impl AsyncBufRead + Unpin, shared: Shared) {
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line_limited(&mut stdout, &mut line, MAX_LINE).await {
            Ok(LineRead::Eof) => break,
            Ok(LineRead::TooLong) => tracing::warn!("upstream {id}: skipped a line longer than {MAX_LINE} bytes"),
            Ok(LineRead::Line) => {
                let trimmed = line.trim_ascii();
                if trimmed.is_empty() {
                    continue;
                }
                shared.handle(Event::UpstreamMessage { upstream: id, data: trimmed.to_vec() });
            }
            Err(error) => {
                tracing::warn!("upstream {id}: reading stdout failed: {error}");
                break;
            }
        }
    }
}

/// Copies a child's stderr to the log, line by line: bytes that are not UTF-8 are shown
/// replaced, overlong lines cut, and reading goes on until the pipe closes (a child blocked on
/// a full stderr pipe would stop answering).
async fn copy_stderr(id: u64, pid: Option<u32>, mut stderr: impl AsyncBufRead + Unpin) {
    let pid = pid.map(|p| p.to_string()).unwrap_or_default();
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line_limited(&mut stderr, &mut line, MAX_STDERR_LINE).await {
            Ok(LineRead::Eof) | Err(_) => break,
            Ok(LineRead::TooLong) => {
                tracing::info!(target: log::UPSTREAM, "upstream {id} (pid {pid}) stderr: (a line over {MAX_STDERR_LINE} bytes)")
            }
            Ok(LineRead::Line) => {
                let text = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(&line));
                tracing::info!(target: log::UPSTREAM, "upstream {id} (pid {pid}) stderr: {text}");
            }
        }
    }
}

/// What one call of [`read_line_limited`] read.
#[derive(Debug, PartialEq, Eq)]
enum LineRead {
    Line,
    TooLong,
    Eof,
}

/// Reads one line into `line` (without the newline), never holding more than `max` bytes.
async fn read_line_limited(
    reader: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    let mut too_long = false;
    let mut read_any = false;
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(match (read_any, too_long) {
                (false, _) => LineRead::Eof,
                (true, true) => LineRead::TooLong,
                (true, false) => LineRead::Line,
            });
        }
        read_any = true;
        let (chunk, found) = match memchr::memchr(b'\n', buffer) {
            Some(end) => (&buffer[..end], Some(end + 1)),
            None => (buffer, None),
        };
        if !too_long && line.len() + chunk.len() <= max {
            line.extend_from_slice(chunk);
        } else {
            too_long = true;
            line.clear();
        }
        let consumed = found.unwrap_or(buffer.len());
        reader.consume(consumed);
        if found.is_some() {
            return Ok(if too_long { LineRead::TooLong } else { LineRead::Line });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_lines_and_skips_overlong_ones() {
        let input: &[u8] = b"short\nthis line is too long\nok\nlast";
        let mut reader = BufReader::with_capacity(4, input);
        let mut line = Vec::new();
        let mut seen = Vec::new();
        loop {
            line.clear();
            match read_line_limited(&mut reader, &mut line, 8).await.expect("in-memory read") {
                LineRead::Eof => break,
                LineRead::TooLong => seen.push("<too long>".to_owned()),
                LineRead::Line => seen.push(String::from_utf8_lossy(&line).into_owned()),
            }
        }
        assert_eq!(seen, ["short", "<too long>", "ok", "last"]);
    }
}
