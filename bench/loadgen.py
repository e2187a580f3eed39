"""Lean MCP clients and a closed-loop load driver.

Three session kinds speak just enough MCP to initialize and call a tool:

- StdioSession:  JSON-RPC lines on a child's stdin/stdout (the baseline, no proxy).
- StreamSession: Streamable HTTP over one keep-alive TCP connection (raw HTTP/1.1).
- SseSession:    legacy HTTP+SSE: a GET /sse stream plus POSTs on a second keep-alive connection.

No SDK, no asyncio: sockets and pipes are driven by one epoll loop, requests are built from byte
templates and each answer costs one json.loads, so the client's own overhead stays small and
is the same kind of work for every transport.
"""

import json
import os
import select
import socket
import subprocess
import time

PROTOCOL = "2025-11-25"
LEGACY_PROTOCOL = "2024-11-05"
CLIENT_INFO = {"name": "mcp-bench", "version": "1.0.0"}
IO_TIMEOUT = 15.0  # any single blocking step (connect, initialize, one answer)


class BenchError(Exception):
    """A session broke or answered something unexpected."""


def jdump(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def initialize_request(call_id, version):
    return jdump(
        {
            "jsonrpc": "2.0",
            "id": call_id,
            "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": CLIENT_INFO},
        }
    )


INITIALIZED = jdump({"jsonrpc": "2.0", "method": "notifications/initialized"})


class Call:
    """The tools/call every session repeats; only the id changes."""

    def __init__(self, tool="echo", arguments=None):
        params = {"name": tool, "arguments": arguments if arguments is not None else {"message": "hello bench"}}
        self.tool, self.params = tool, params
        body = jdump({"jsonrpc": "2.0", "id": 999999999, "method": "tools/call", "params": params})
        self.head, self.tail = body.split(b"999999999")

    def body(self, call_id):
        return self.head + str(call_id).encode() + self.tail


def check_answer(message, call_id):
    """Raises unless `message` is a successful answer to request `call_id`."""
    if message.get("id") != call_id:
        raise BenchError("answer for id %r while waiting for %r" % (message.get("id"), call_id))
    if "result" not in message:
        raise BenchError("error answer: %s" % json.dumps(message.get("error"))[:300])
    result = message["result"]
    if isinstance(result, dict) and result.get("isError"):
        raise BenchError("tool error: %s" % json.dumps(result)[:300])
    return result


# --------------------------------------------------------------------------------------------
# Parsers


class HttpResponse:
    """Incremental HTTP/1.1 response parser (Content-Length, chunked, or no body).

    With `on_body`, body bytes are handed over as they arrive (for never-ending SSE streams);
    otherwise they are collected in `body`. Bytes after the end of a response stay buffered
    for the next one (keep-alive).
    """

    def __init__(self, on_body=None):
        self.buf = b""
        self.on_body = on_body
        self._start()

    def _start(self):
        self.status = None
        self.headers = {}
        self.body = []
        self.done = False
        self._state = "head"
        self._remaining = 0

    def next(self):
        """Starts on the next response on the same connection."""
        self._start()
        if self.buf:
            self._run()

    def header(self, name):
        return self.headers.get(name)

    def feed(self, data):
        self.buf += data
        self._run()

    def _emit(self, data):
        if not data:
            return
        if self.on_body is not None:
            self.on_body(data)
        else:
            self.body.append(data)

    def _run(self):
        while not self.done:
            state = self._state
            buf = self.buf
            if state == "head":
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > 65536:
                        raise BenchError("response head too large")
                    return
                lines = buf[:end].decode("latin-1").split("\r\n")
                self.buf = buf[end + 4 :]
                parts = lines[0].split(" ", 2)
                if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
                    raise BenchError("bad status line %r" % lines[0])
                self.status = int(parts[1])
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    self.headers[name.strip().lower()] = value.strip()
                if self.status in (204, 304) or 100 <= self.status < 200:
                    self.done = True
                elif "chunked" in self.headers.get("transfer-encoding", "").lower():
                    self._state = "size"
                elif "content-length" in self.headers:
                    self._remaining = int(self.headers["content-length"])
                    self._state = "length"
                    if self._remaining == 0:
                        self.done = True
                else:
                    raise BenchError("response without length on a keep-alive connection")
            elif state == "length":
                take = buf[: self._remaining]
                self.buf = buf[len(take) :]
                self._remaining -= len(take)
                self._emit(take)
                if self._remaining == 0:
                    self.done = True
                else:
                    return
            elif state == "size":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(buf[:end].split(b";", 1)[0], 16)
                self.buf = buf[end + 2 :]
                if size == 0:
                    self._state = "trailer"
                else:
                    self._remaining = size
                    self._state = "chunk"
            elif state == "chunk":
                take = buf[: self._remaining]
                self.buf = buf[len(take) :]
                self._remaining -= len(take)
                self._emit(take)
                if self._remaining:
                    return
                self._state = "crlf"
            elif state == "crlf":
                if len(buf) < 2:
                    return
                self.buf = buf[2:]
                self._state = "size"
            elif state == "trailer":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                self.buf = buf[end + 2 :]
                if end == 0:
                    self.done = True

    def body_bytes(self):
        return b"".join(self.body)


class SseParser:
    """Splits an event stream into (event, data) pairs."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data
        if b"\r" in self.buf[-1:]:
            return []  # wait: a CRLF may be split across reads
        if b"\r" in self.buf:
            self.buf = self.buf.replace(b"\r\n", b"\n")
        events = []
        while True:
            end = self.buf.find(b"\n\n")
            if end < 0:
                return events
            block, self.buf = self.buf[:end], self.buf[end + 2 :]
            event, data_lines = "message", []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    data_lines.append(line[5:].lstrip(b" ") if line[5:6] == b" " else line[5:])
                elif line.startswith(b"event:"):
                    event = line[6:].strip().decode()
            if data_lines:
                events.append((event, b"\n".join(data_lines)))


def messages_in_body(response):
    """The JSON-RPC messages of a Streamable HTTP POST response (JSON or SSE)."""
    body = response.body_bytes()
    ctype = response.header("content-type") or ""
    if ctype.startswith("text/event-stream"):
        events = SseParser().feed(body + b"\n\n")
        # Empty events (resumability priming) carry no message.
        return [json.loads(data) for event, data in events if event == "message" and data.strip()]
    if not body:
        return []
    payload = json.loads(body)
    return payload if isinstance(payload, list) else [payload]


# --------------------------------------------------------------------------------------------
# Sessions


def connect(host, port):
    sock = socket.create_connection((host, port), timeout=IO_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def blocking_read(sock, parser):
    """Reads from a blocking socket until the parser holds a complete response."""
    while not parser.done:
        data = sock.recv(65536)
        if not data:
            raise BenchError("connection closed by the server")
        parser.feed(data)


def http_request(method, target, host_header, headers, body=b""):
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: " + host_header]
    lines += ["%s: %s" % kv for kv in headers]
    if body or method == "POST":
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Session:
    """What the load driver needs: file descriptors, send_call, on_readable."""

    kind = "?"
    call_id = 0

    def fds(self):
        raise NotImplementedError

    def send_call(self, call_id):
        raise NotImplementedError

    def on_readable(self, fd):
        """Consumes what is readable; returns True once the outstanding call is answered."""
        raise NotImplementedError

    def close(self):
        pass

    def refresh(self):
        """Called before each run: replaces request connections the server may have closed."""


IDLE_RECONNECT_S = 1.0  # servers close idle keep-alive connections (uvicorn after 5 s)


def send_nonblocking(sock, data):
    sent = sock.send(data)
    if sent < len(data):  # a full socket buffer: rare for requests this small
        sock.setblocking(True)
        try:
            sock.sendall(data[sent:])
        finally:
            sock.setblocking(False)


class StdioSession(Session):
    """A child process driven directly over its stdin/stdout."""

    kind = "stdio"

    def __init__(self, argv, call, env=None, stderr=None):
        self.call = call
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr if stderr is not None else subprocess.DEVNULL,
            bufsize=0,
            env=env,
        )
        self.pid = self.proc.pid
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        os.set_blocking(self.rfd, False)
        self.buf = b""
        self.waiting = None

    def _write(self, data):
        view = memoryview(data)
        while view:
            n = os.write(self.wfd, view)
            view = view[n:]

    def initialize(self, version=PROTOCOL):
        self._write(initialize_request(0, version) + b"\n")
        self.waiting = 0
        deadline = time.monotonic() + IO_TIMEOUT
        poller = select.poll()
        poller.register(self.rfd, select.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError("stdio server did not answer initialize in time")
            if poller.poll(left * 1000) and self.on_readable(self.rfd):
                break
        self.version = self.answer["protocolVersion"]
        self._write(INITIALIZED + b"\n")

    def fds(self):
        return [self.rfd]

    def send_call(self, call_id):
        self.waiting = call_id
        self._write(self.call.body(call_id) + b"\n")

    def on_readable(self, fd):
        try:
            data = os.read(self.rfd, 65536)
        except BlockingIOError:
            return False
        if not data:
            raise BenchError("stdio server closed its stdout (exit code %s)" % self.proc.poll())
        self.buf += data
        done = False
        while True:
            end = self.buf.find(b"\n")
            if end < 0:
                return done
            line, self.buf = self.buf[:end], self.buf[end + 1 :]
            if not line.strip():
                continue
            message = json.loads(line)
            if "id" in message and "method" not in message:
                self.answer = check_answer(message, self.waiting)
                done = True

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=3)
        self.proc.stdout.close()


class StreamSession(Session):
    """Streamable HTTP: POSTs on one keep-alive connection, answers as JSON or SSE."""

    kind = "stream"

    def __init__(self, host, port, path, call):
        self.host, self.port, self.path, self.call = host, port, path, call
        self.host_header = "%s:%d" % (host, port)
        self.sock = connect(host, port)
        self.fd = self.sock.fileno()
        self.response = HttpResponse()
        self.session_id = None
        self.version = PROTOCOL
        self.prefix = None

    def _headers(self):
        headers = [
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ]
        if self.session_id:
            headers.append(("Mcp-Session-Id", self.session_id))
            headers.append(("MCP-Protocol-Version", self.version))
        return headers

    def _post_blocking(self, body):
        self.sock.sendall(http_request("POST", self.path, self.host_header, self._headers(), body))
        blocking_read(self.sock, self.response)
        response = self.response
        self.response = HttpResponse()
        self.response.buf = response.buf
        return response

    def initialize(self, version=PROTOCOL):
        response = self._post_blocking(initialize_request(0, version))
        if response.status != 200:
            raise BenchError("initialize: HTTP %s %r" % (response.status, response.body_bytes()[:200]))
        self.session_id = response.header("mcp-session-id")
        answers = [m for m in messages_in_body(response) if "id" in m and "method" not in m]
        if not answers:
            raise BenchError("initialize: no answer in the response")
        self.version = check_answer(answers[0], 0)["protocolVersion"]
        response = self._post_blocking(INITIALIZED)
        if response.status not in (200, 202):
            raise BenchError("initialized notification: HTTP %s" % response.status)
        # Every call is this prefix, the body length and the body.
        head = http_request("POST", self.path, self.host_header, self._headers(), b"\x00")
        self.prefix = head[: head.index(b"Content-Length: ")] + b"Content-Length: "
        self.sock.setblocking(False)
        self.last_used = time.monotonic()

    def fds(self):
        return [self.fd]

    def refresh(self):
        if time.monotonic() - getattr(self, "last_used", 0) > IDLE_RECONNECT_S and self.prefix:
            self.sock.close()
            self.sock = connect(self.host, self.port)
            self.sock.setblocking(False)
            self.fd = self.sock.fileno()
            self.response = HttpResponse()

    def send_call(self, call_id):
        self.waiting = call_id
        body = self.call.body(call_id)
        send_nonblocking(self.sock, self.prefix + str(len(body)).encode() + b"\r\n\r\n" + body)

    def on_readable(self, fd):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return False
        if not data:
            raise BenchError("the proxy closed the connection")
        response = self.response
        response.feed(data)
        if not response.done:
            return False
        if response.status != 200:
            raise BenchError("tools/call: HTTP %s %r" % (response.status, response.body_bytes()[:200]))
        answered = False
        for message in messages_in_body(response):
            if "id" in message and "method" not in message:
                self.answer = check_answer(message, self.waiting)
                answered = True
        response.next()
        if not answered:
            raise BenchError("tools/call: a 200 response without the answer")
        return True

    def close(self):
        try:
            if self.session_id:
                self.sock.setblocking(True)
                self.sock.settimeout(5)
                headers = [("Mcp-Session-Id", self.session_id), ("MCP-Protocol-Version", self.version)]
                self.sock.sendall(http_request("DELETE", self.path, self.host_header, headers))
                blocking_read(self.sock, self.response)
        except (OSError, BenchError):
            pass
        finally:
            self.sock.close()



MODERN = "2026-07-28"
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "mcp-bench", "version": "1"},
}


class ModernSession(StreamSession):
    """A 2026-07-28 client: no session, every request carries its envelope and headers; the
    'initialize' is a server/discover (what a 2026 client may ask first)."""

    kind = "modern"

    def __init__(self, host, port, path, call):
        super().__init__(host, port, path, call)
        self.call = ModernCall(call)

    def _headers(self, method="tools/call"):
        headers = [
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("MCP-Protocol-Version", MODERN),
            ("Mcp-Method", method),
        ]
        if method == "tools/call":
            headers.append(("Mcp-Name", self.call.tool))
        return headers

    def initialize(self, version=None):
        body = jdump({"jsonrpc": "2.0", "id": 0, "method": "server/discover", "params": {"_meta": MODERN_META}})
        self.sock.sendall(http_request("POST", self.path, self.host_header, self._headers("server/discover"), body))
        blocking_read(self.sock, self.response)
        response = self.response
        self.response = HttpResponse()
        self.response.buf = response.buf
        if response.status != 200:
            raise BenchError("server/discover: HTTP %s %r" % (response.status, response.body_bytes()[:200]))
        answers = [m for m in messages_in_body(response) if "id" in m and "method" not in m]
        if not answers or MODERN not in check_answer(answers[0], 0).get("supportedVersions", []):
            raise BenchError("server/discover: no 2026-07-28 in the answer")
        head = http_request("POST", self.path, self.host_header, self._headers(), b"\x00")
        self.prefix = head[: head.index(b"Content-Length: ")] + b"Content-Length: "
        self.sock.setblocking(False)
        self.last_used = time.monotonic()

    def close(self):
        self.sock.close()


class ModernCall:
    """The bench's tools/call in the 2026 envelope."""

    def __init__(self, call):
        self.tool = call.tool
        params = dict(call.params)
        params["_meta"] = MODERN_META
        body = jdump({"jsonrpc": "2.0", "id": 999999999, "method": "tools/call", "params": params})
        self.head, self.tail = body.split(b"999999999")

    def body(self, call_id):
        return self.head + str(call_id).encode() + self.tail

class PingSession(Session):
    """GET /ping on a keep-alive connection: the proxy's HTTP path and core, no child."""

    kind = "ping"

    def __init__(self, host, port, path="/ping"):
        self.sock = connect(host, port)
        self.fd = self.sock.fileno()
        self.request = http_request("GET", path, "%s:%d" % (host, port), [])
        self.response = HttpResponse()

    def initialize(self, version=None):
        self.sock.setblocking(False)

    def fds(self):
        return [self.fd]

    def send_call(self, call_id):
        send_nonblocking(self.sock, self.request)

    def on_readable(self, fd):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return False
        if not data:
            raise BenchError("the proxy closed the connection")
        response = self.response
        response.feed(data)
        if not response.done:
            return False
        if response.status != 200 or response.body_bytes() != b"pong":
            raise BenchError("GET /ping: HTTP %s %r" % (response.status, response.body_bytes()[:100]))
        response.next()
        return True

    def close(self):
        self.sock.close()


class SseSession(Session):
    """Legacy HTTP+SSE: answers arrive on the GET stream, POSTs get 202 on a second connection."""

    kind = "sse"

    def __init__(self, host, port, path, call):
        self.host, self.port, self.call = host, port, call
        self.host_header = "%s:%d" % (host, port)
        self.events = []
        self.sse = SseParser()
        self.stream = connect(host, port)
        self.stream_response = HttpResponse(on_body=self._on_stream_bytes)
        self.stream.sendall(
            http_request("GET", path, self.host_header, [("Accept", "text/event-stream")])
        )
        self.endpoint = None
        while self.endpoint is None:
            data = self.stream.recv(65536)
            if not data:
                raise BenchError("the SSE stream closed before the endpoint event")
            self.stream_response.feed(data)
            if self.stream_response.status not in (None, 200):
                raise BenchError("GET %s: HTTP %s" % (path, self.stream_response.status))
            for event, payload in self._take_events():
                if event == "endpoint":
                    self.endpoint = payload.decode()
        if self.endpoint.startswith("http"):
            self.endpoint = "/" + self.endpoint.split("/", 3)[3]
        self.post = connect(host, port)
        self.post_response = HttpResponse()
        self.prefix = None
        self.stream_fd, self.post_fd = self.stream.fileno(), self.post.fileno()

    def _on_stream_bytes(self, data):
        self.events.extend(self.sse.feed(data))

    def _take_events(self):
        events, self.events = self.events, []
        return events

    def _headers(self):
        return [("Content-Type", "application/json")]

    def _post_blocking(self, body):
        self.post.sendall(http_request("POST", self.endpoint, self.host_header, self._headers(), body))
        blocking_read(self.post, self.post_response)
        status = self.post_response.status
        self.post_response.next()
        if status not in (200, 202):
            raise BenchError("POST %s: HTTP %s" % (self.endpoint, status))

    def initialize(self, version=LEGACY_PROTOCOL):
        self.waiting = 0
        self._post_blocking(initialize_request(0, version))
        self.answered = False
        while not self.answered:
            data = self.stream.recv(65536)
            if not data:
                raise BenchError("the SSE stream closed during initialize")
            self.stream_response.feed(data)
            self._check_stream()
        self.version = self.answer["protocolVersion"]
        self._post_blocking(INITIALIZED)
        head = http_request("POST", self.endpoint, self.host_header, self._headers(), b"\x00")
        self.prefix = head[: head.index(b"Content-Length: ")] + b"Content-Length: "
        self.stream.setblocking(False)
        self.post.setblocking(False)
        self.last_used = time.monotonic()

    def _check_stream(self):
        for event, payload in self._take_events():
            if event != "message" or not payload.strip():
                continue
            message = json.loads(payload)
            if "id" in message and "method" not in message:
                self.answer = check_answer(message, self.waiting)
                self.answered = True

    def fds(self):
        return [self.stream_fd, self.post_fd]

    def refresh(self):
        if time.monotonic() - getattr(self, "last_used", 0) > IDLE_RECONNECT_S and self.prefix:
            self.post.close()
            self.post = connect(self.host, self.port)
            self.post.setblocking(False)
            self.post_fd = self.post.fileno()
            self.post_response = HttpResponse()

    def send_call(self, call_id):
        self.waiting = call_id
        self.accepted = False
        self.answered = False
        body = self.call.body(call_id)
        send_nonblocking(self.post, self.prefix + str(len(body)).encode() + b"\r\n\r\n" + body)

    def on_readable(self, fd):
        if fd == self.stream_fd:
            try:
                data = self.stream.recv(65536)
            except BlockingIOError:
                return False
            if not data:
                raise BenchError("the SSE stream closed")
            self.stream_response.feed(data)
            self._check_stream()
        else:
            try:
                data = self.post.recv(65536)
            except BlockingIOError:
                return False
            if not data:
                raise BenchError("the proxy closed the POST connection")
            response = self.post_response
            response.feed(data)
            if response.done:
                if response.status not in (200, 202):
                    raise BenchError("POST: HTTP %s %r" % (response.status, response.body_bytes()[:200]))
                response.next()
                self.accepted = True
        return self.accepted and self.answered

    def close(self):
        for sock in (self.post, self.stream):
            try:
                sock.close()
            except OSError:
                pass


# --------------------------------------------------------------------------------------------
# The load driver


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(q / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


class Window:
    """Result of one measured run."""

    def __init__(self):
        self.latencies_ns = []
        self.calls = 0
        self.seconds = 0.0
        self.marks = {}


def drive(sessions, calls=None, warmup_calls=0, warmup_s=0.0, duration_s=None, on_mark=None, timeout_s=60.0):
    """Closed loop: every session keeps exactly one call in flight.

    Either a fixed number of `calls` per session after `warmup_calls` per session (latency), or
    a `duration_s` window after `warmup_s` seconds (throughput). `on_mark("start"|"end")` is
    called at the window's edges (for CPU snapshots); in-flight calls are drained afterwards.
    """
    poller = select.epoll()
    owner = {}
    for session in sessions:
        session.refresh()
        for fd in session.fds():
            poller.register(fd, select.EPOLLIN)
            owner[fd] = session
    clock = time.perf_counter_ns
    started = {}
    sent = {}
    window = Window()
    lat = window.latencies_ns
    hard_deadline = time.monotonic() + timeout_s
    next_id = {id(s): (getattr(s, "call_id", 0) or 0) + 1 for s in sessions}
    fixed = calls is not None

    def start(session):
        key = id(session)
        call_id = next_id[key]
        next_id[key] = call_id + 1
        sent[key] = sent.get(key, 0) + 1
        started[key] = clock()
        session.send_call(call_id)

    now = clock()
    measure_from = now + int(warmup_s * 1e9)
    measure_to = measure_from + int((duration_s or 0) * 1e9)
    measuring = False
    if fixed or warmup_s == 0:
        measuring = True
        if on_mark:
            on_mark("start")
        window_start = clock()
    in_flight = 0
    for session in sessions:
        start(session)
        in_flight += 1
    finished = False
    try:
        while in_flight:
            if time.monotonic() > hard_deadline:
                raise BenchError("the load run exceeded %.0f s" % timeout_s)
            events = poller.poll(1.0)
            for fd, _ in events:
                session = owner[fd]
                if not session.on_readable(fd):
                    continue
                done_at = clock()
                key = id(session)
                if fixed:
                    if sent[key] > warmup_calls:
                        lat.append(done_at - started[key])
                    if sent[key] < warmup_calls + calls:
                        start(session)
                    else:
                        in_flight -= 1
                    continue
                if not measuring and done_at >= measure_from:
                    measuring = True
                    if on_mark:
                        on_mark("start")
                    window_start = done_at
                if measuring and not finished:
                    if done_at >= measure_to:
                        finished = True
                        window.seconds = (done_at - window_start) / 1e9
                        if on_mark:
                            on_mark("end")
                    else:
                        lat.append(done_at - started[key])
                        window.calls += 1
                if finished:
                    in_flight -= 1
                else:
                    start(session)
    finally:
        poller.close()
        done_at = time.monotonic()
        for session in sessions:
            session.call_id = next_id[id(session)] - 1
            session.last_used = done_at
    if fixed:
        window.calls = len(lat)
        window.seconds = (clock() - window_start) / 1e9
        if on_mark:
            on_mark("end")
    return window
