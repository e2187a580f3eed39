"""Shared helpers for the mcp-proxy end-to-end tests.

The binary under test is named by the environment variable ``MCP_PROXY_BIN``
(default: ``<repo>/target/release/mcp-proxy``). Every proxy is started with
``--port 0`` in front of the MCP "everything" reference server (a stdio child
from ``tests/node_modules``), and its address is read from the line
``mcp-proxy listening on http://HOST:PORT`` that it prints on stderr.

Three kinds of helpers live here:

* ``ProxyProcess`` and the ``start_proxy`` / ``proxy`` fixtures: run the
  binary, keep draining its stderr into a buffer that tests can search, and
  stop it (SIGTERM, then SIGKILL after 5 s) at teardown.
* Raw HTTP helpers over ``httpx`` (``post_rpc``, ``open_raw_session``,
  ``SseReader``) for tests that check status codes and headers.
* ``mcp_client``: an initialized session of the official Python SDK client
  over either transport ("streamable-http" or "sse").
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

REPO_ROOT = Path(__file__).resolve().parents[2]
PROXY_BIN = Path(os.environ.get("MCP_PROXY_BIN") or REPO_ROOT / "target" / "release" / "mcp-proxy")
SERVER_EVERYTHING_JS = (
    REPO_ROOT / "tests" / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
)
#: The stdio child every proxy runs unless a test asks for another one.
EVERYTHING_COMMAND: tuple[str, ...] = ("node", str(SERVER_EVERYTHING_JS), "stdio")
#: What server-everything prints on stderr when it starts (used to check that
#: the child's stderr reaches the proxy's log).
EVERYTHING_STARTUP_LINE = "Starting default (STDIO) server..."
#: Matches the text of server-everything's simulated log messages
#: ("Debug-level message", "Alert level-message", ...).
SIMULATED_LOG_RE = re.compile(r"level[- ]message", re.IGNORECASE)

LISTENING_RE = re.compile(r"listening on (https?)://([^\s/]+):(\d+)")
STARTUP_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0

PROTOCOL_VERSION = "2025-11-25"
#: Headers every Streamable HTTP POST must carry.
MCP_POST_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
}
TRANSPORTS = ("streamable-http", "sse")


# --------------------------------------------------------------------------
# pytest plumbing
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def proxy_bin() -> Path:
    """The binary under test; fails (not skips) every test when it is missing."""
    if not (PROXY_BIN.is_file() and os.access(PROXY_BIN, os.X_OK)):
        pytest.fail(f"mcp-proxy binary not found or not executable: {PROXY_BIN} (set MCP_PROXY_BIN)", pytrace=False)
    if not SERVER_EVERYTHING_JS.is_file():
        pytest.fail(f"server-everything not installed at {SERVER_EVERYTHING_JS}; run scripts/setup", pytrace=False)
    return PROXY_BIN


# --------------------------------------------------------------------------
# Running the proxy
# --------------------------------------------------------------------------


class _StreamBuffer:
    """Collects the text a pipe produces, on a daemon thread, so it never fills."""

    def __init__(self, pipe: Any, name: str) -> None:
        self._pipe = pipe
        self._chunks: list[str] = []
        self._cond = threading.Condition()
        self.closed = False
        self._thread = threading.Thread(target=self._drain, name=name, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        for raw in iter(self._pipe.readline, b""):
            with self._cond:
                self._chunks.append(raw.decode("utf-8", errors="replace"))
                self._cond.notify_all()
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def text(self) -> str:
        with self._cond:
            return "".join(self._chunks)

    def wait_for(self, pattern: re.Pattern[str] | str, timeout: float) -> re.Match[str] | None:
        """Waits until ``pattern`` matches the collected text; None on timeout or EOF."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                match = regex.search("".join(self._chunks))
                if match or self.closed:
                    return match
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class ProxyStartError(AssertionError):
    pass


class ProxyProcess:
    """One running mcp-proxy, started with ``--port 0``."""

    def __init__(
        self,
        binary: Path,
        args: Sequence[str] = (),
        command: Sequence[str] = EVERYTHING_COMMAND,
        env: Mapping[str, str] | None = None,
    ) -> None:
        # No command (e.g. with --config): no `--` either.
        self.argv = [str(binary), "--port", "0", *args, *(["--", *command] if command else [])]
        full_env = dict(os.environ)
        full_env.pop("MCP_PROXY_API_KEY", None)  # only tests that mean it set it
        full_env.update(env or {})
        # A process group of its own lets teardown reap anything the proxy leaves behind.
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self._stderr = _StreamBuffer(self.proc.stderr, f"proxy-{self.pid}-stderr")
        self._stdout = _StreamBuffer(self.proc.stdout, f"proxy-{self.pid}-stdout")
        match = self._stderr.wait_for(LISTENING_RE, STARTUP_TIMEOUT_S)
        if match is None:
            exit_code = self.proc.poll()
            self.stop()
            raise ProxyStartError(
                f"mcp-proxy did not print 'listening on ...' within {STARTUP_TIMEOUT_S:.0f}s "
                f"(exit code {exit_code}).\nargv: {self.argv}\n--- stderr ---\n{self.stderr}"
                f"\n--- stdout ---\n{self.stdout}"
            )
        self.scheme, self.host, port = match.group(1), match.group(2), match.group(3)
        self.port = int(port)

    # -- addresses ---------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def mcp_url(self) -> str:
        return self.url("/mcp")

    @property
    def sse_url(self) -> str:
        return self.url("/sse")

    # -- logs --------------------------------------------------------------

    @property
    def stderr(self) -> str:
        return self._stderr.text()

    @property
    def stdout(self) -> str:
        return self._stdout.text()

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Waits for ``pattern`` (a regex) in the proxy's stderr; fails with the log."""
        match = self._stderr.wait_for(pattern, timeout)
        assert match, f"pattern {pattern!r} not in proxy stderr after {timeout}s:\n{self.stderr}"
        return match

    # -- processes ---------------------------------------------------------

    def descendants(self) -> list[int]:
        return descendant_pids(self.pid)

    def mcp_children(self) -> list[int]:
        """Pids of the proxy's descendant processes that run server-everything."""
        return [pid for pid in self.descendants() if "server-everything" in read_cmdline(pid)]

    def wait_for_children(self, predicate: Any, timeout: float = 10.0) -> list[int]:
        """Polls ``mcp_children()`` until ``predicate(pids)`` holds; returns the last list."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.mcp_children()
            if predicate(pids) or time.monotonic() > deadline:
                return pids
            time.sleep(0.05)

    def stop(self) -> int | None:
        """SIGTERM, wait up to 5 s, then SIGKILL; reaps leftovers of its group."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_GRACE_S)
        try:  # children the proxy failed to stop are in its process group
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._stderr.join(2)
        self._stdout.join(2)
        return self.proc.returncode


def read_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ..." -- comm may contain spaces and parentheses.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has finished; it is no live child
        return None
    return int(fields[1])


def descendant_pids(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            ppid = _parent_pid(int(entry.name))
            if ppid is not None:
                parents[int(entry.name)] = ppid
    found: list[int] = []
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        kids = [pid for pid, ppid in parents.items() if ppid == parent]
        found.extend(kids)
        frontier.extend(kids)
    return sorted(found)


def pid_alive(pid: int) -> bool:
    return _parent_pid(pid) is not None


@pytest.fixture
def start_proxy(proxy_bin: Path) -> Iterator[Any]:
    """Factory: ``start_proxy(*args, command=..., env=...)`` -> running ``ProxyProcess``.

    Every proxy it started is stopped when the test ends.
    """
    started: list[ProxyProcess] = []

    def start(*args: str, command: Sequence[str] = EVERYTHING_COMMAND, env: Mapping[str, str] | None = None):
        proxy = ProxyProcess(proxy_bin, args, command, env)
        started.append(proxy)
        return proxy

    start.started = started  # type: ignore[attr-defined]  # read by pytest_runtest_makereport
    yield start
    for proxy in started:
        proxy.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Adds the stderr of the proxies a failed test used to its report."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or call.when != "call":
        return
    proxies: list[ProxyProcess] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, ProxyProcess):
            proxies.append(value)
        proxies.extend(getattr(value, "started", []))
    for proxy in proxies:
        log = proxy.stderr
        if len(log) > 6000:
            log = "[...]\n" + log[-6000:]
        report.sections.append((f"mcp-proxy (pid {proxy.pid}) stderr", log))


@contextmanager
def running_proxy(binary: Path, *args: str, **kwargs: Any) -> Iterator[ProxyProcess]:
    proxy = ProxyProcess(binary, args, **kwargs)
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def proxy(proxy_bin: Path) -> Iterator[ProxyProcess]:
    """A proxy with default options, shared by the tests of one module."""
    with running_proxy(proxy_bin) as running:
        yield running


# --------------------------------------------------------------------------
# Raw HTTP (httpx)
# --------------------------------------------------------------------------

_next_id = 0


def next_id() -> int:
    global _next_id
    _next_id += 1
    return _next_id


def rpc_request(method: str, params: Mapping[str, Any] | None = None, request_id: int | None = None) -> dict:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": next_id() if request_id is None else request_id}
    message["method"] = method
    if params is not None:
        message["params"] = dict(params)
    return message


def rpc_notification(method: str, params: Mapping[str, Any] | None = None) -> dict:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = dict(params)
    return message


def initialize_request(request_id: int | None = None) -> dict:
    return rpc_request(
        "initialize",
        {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "mcp-proxy-e2e", "version": "0"},
        },
        request_id,
    )


def session_headers(session_id: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    headers = dict(MCP_POST_HEADERS)
    if session_id is not None:
        headers["Mcp-Session-Id"] = session_id
        headers["MCP-Protocol-Version"] = PROTOCOL_VERSION
    headers.update(extra or {})
    return headers


@dataclass
class SseEvent:
    event: str
    data: str
    id: str | None = None


class SseReader:
    """Parses ``text/event-stream`` from an httpx streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()

    def __iter__(self) -> Iterator[SseEvent]:
        return self

    def __next__(self) -> SseEvent:
        event, data, event_id = "message", [], None
        for line in self._lines:
            if line == "":
                if data:
                    return SseEvent(event, "\n".join(data), event_id)
                event, data, event_id = "message", [], None  # comment-only or empty event
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                event_id = value
        if data:
            return SseEvent(event, "\n".join(data), event_id)
        raise StopIteration

    def next_message(self, request_id: Any | None = None) -> dict:
        """Next JSON-RPC message (or, with ``request_id``, the response to it)."""
        for event in self:
            if event.event != "message" or not event.data.strip():
                continue  # other events, and priming events (an id with empty data)
            message = json.loads(event.data)
            if request_id is None:
                return message
            if message.get("id") == request_id and ("result" in message or "error" in message):
                return message
        raise AssertionError(f"event stream ended without a response to id {request_id!r}")


@dataclass
class RpcReply:
    """What a POST to the Streamable HTTP endpoint returned."""

    status: int
    headers: httpx.Headers
    #: The JSON-RPC response to the request, the JSON error body, or None for an empty body.
    body: Any

    @property
    def session_id(self) -> str | None:
        return self.headers.get("mcp-session-id")


def post_rpc(
    client: httpx.Client,
    url: str,
    message: Any,
    session_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    content: bytes | str | None = None,
) -> RpcReply:
    """POSTs one message and reads the reply, whether JSON or an SSE stream.

    For a request answered with ``text/event-stream`` it reads events until
    the response with the request's id arrives, then closes the stream.
    ``content`` sends raw bytes instead of ``message``.
    """
    body = content if content is not None else json.dumps(message)
    with client.stream("POST", url, content=body, headers=session_headers(session_id, headers)) as response:
        content_type = response.headers.get("content-type", "")
        if content_type.startswith("text/event-stream"):
            request_id = message.get("id") if isinstance(message, dict) else None
            parsed = SseReader(response).next_message(request_id)
        else:
            raw = response.read()
            parsed = json.loads(raw) if raw.strip() else None
        return RpcReply(response.status_code, response.headers, parsed)


def open_raw_session(client: httpx.Client, url: str, headers: Mapping[str, str] | None = None) -> str:
    """Initializes a Streamable HTTP session by hand; returns its Mcp-Session-Id."""
    request = initialize_request()
    reply = post_rpc(client, url, request, headers=headers)
    assert reply.status == 200, f"initialize: HTTP {reply.status} {reply.body!r}"
    assert reply.body and reply.body.get("id") == request["id"] and "result" in reply.body, reply.body
    session_id = reply.session_id
    assert session_id, f"initialize response has no Mcp-Session-Id header: {dict(reply.headers)}"
    done = post_rpc(client, url, rpc_notification("notifications/initialized"), session_id, headers)
    assert done.status == 202, f"notifications/initialized: HTTP {done.status} {done.body!r}"
    return session_id


def rpc_error_code(body: Any) -> int | None:
    """The JSON-RPC error code of an error body (None when it is not one)."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get("code")
    return None


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(15.0)) as client:
        yield client


# --------------------------------------------------------------------------
# The official MCP SDK client
# --------------------------------------------------------------------------


@dataclass
class McpConnection:
    session: ClientSession
    session_id: str | None


def _http2_client(
    headers: Mapping[str, str] | None,
    verify: Any,
    timeout: httpx2.Timeout | None = None,
    on_response: Any = None,
) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        headers=dict(headers or {}),
        verify=True if verify is None else verify,
        timeout=timeout or httpx2.Timeout(30.0, read=120.0),
        event_hooks={"response": [on_response]} if on_response else None,
    )


@asynccontextmanager
async def mcp_client(
    proxy: ProxyProcess,
    transport: str,
    *,
    headers: Mapping[str, str] | None = None,
    verify: Any = None,
    endpoint: str | None = None,
    **session_kwargs: Any,
) -> AsyncIterator[McpConnection]:
    """An initialized SDK ``ClientSession`` through ``proxy`` over ``transport``.

    ``session_kwargs`` go to ``ClientSession`` (e.g. ``logging_callback``).
    """
    session_kwargs.setdefault("read_timeout_seconds", 30.0)
    if transport == "streamable-http":
        seen: list[str] = []

        async def remember_session_id(response: httpx2.Response) -> None:
            if (value := response.headers.get("mcp-session-id")) and not seen:
                seen.append(value)

        client = _http2_client(headers, verify, on_response=remember_session_id)
        async with client, streamable_http_client(proxy.url(endpoint or "/mcp"), http_client=client) as (read, write):
            async with ClientSession(read, write, **session_kwargs) as session:
                await session.initialize()
                yield McpConnection(session, seen[0] if seen else None)
    elif transport == "sse":
        created: list[str] = []

        def factory(headers=None, timeout=None, auth=None):
            return _http2_client(headers, verify, timeout)

        async with sse_client(
            proxy.url(endpoint or "/sse"),
            headers=dict(headers or {}),
            timeout=30.0,
            sse_read_timeout=120.0,
            httpx_client_factory=factory,
            on_session_created=created.append,
        ) as (read, write):
            async with ClientSession(read, write, **session_kwargs) as session:
                await session.initialize()
                yield McpConnection(session, created[0] if created else None)
    else:
        raise ValueError(f"unknown transport {transport!r}")


def text_of(result: Any) -> str:
    """The concatenated text content of a tool result or prompt message list."""
    return "".join(getattr(item, "text", "") for item in result.content)


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> Any:
    """Polls ``predicate`` until it is truthy or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
