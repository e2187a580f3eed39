"""Reverse mode: ``mcp-proxy --connect URL`` is a stdio MCP server for a local client.

In reverse mode the binary reads newline-delimited JSON-RPC on stdin, writes JSON-RPC lines
(and nothing else) on stdout, logs on stderr, and forwards everything to a remote MCP server
over Streamable HTTP or legacy SSE (``--transport auto|streamable-http|sse``; ``auto`` tries
Streamable HTTP and falls back to SSE when the POST gets a 4xx). A bare ``http(s)://`` URL as
the only positional argument means the same as ``--connect URL`` (as in the Python mcp-proxy).

The remotes are real servers on loopback, one of each per module:

* ``everything-http``: server-everything's own Streamable HTTP server (``index.js
  streamableHttp``, ``/mcp``), reached with the default ``--transport auto``;
* ``everything-sse``: server-everything's legacy SSE server (``index.js sse``, ``/sse``),
  with ``--transport sse``; ``everything-sse-auto``: the same URL with ``auto``, which must
  find out by itself (the POST to ``/sse`` gets 404);
* ``bridge-http`` / ``bridge-sse``: this project's own bridge (``mcp-proxy --port 0 -- node
  server-everything stdio``), its ``/mcp`` and its ``/sse``.

The local client is the official Python SDK (``mcp==2.3.0``, ``Client`` in ``mode="legacy"``:
``initialize`` and a session) spawning ``[MCP_PROXY_BIN, "--connect", url]`` through
``stdio_client``. server-everything only registers ``trigger-sampling-request``,
``trigger-elicitation-request`` and ``get-roots-list`` for a client that declared sampling,
elicitation and roots, and it asks for roots, sends log messages, resource updates and list
changes outside any request (on the Streamable HTTP GET stream), so each test below fails
unless the proxy carries that thing across in the right direction.

Over Streamable HTTP the remote can only speak outside a request once the client's GET stream
is up, so the tests of such messages start once the remote has seen that GET (``settle``);
``test_the_remote_is_heard_from_the_first_request`` checks that a client that does not wait
loses nothing either.

The other tests drive the binary with raw stdin/stdout lines (no SDK) to check the exact
answers: an unreachable or silent remote, a 401, headers, cancellation, ``--requestTimeout``,
stdin EOF (exit 0, the remote session DELETEd).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from conftest import (
    PROTOCOL_VERSION,
    SERVER_EVERYTHING_JS,
    SIMULATED_LOG_RE,
    ProxyProcess,
    _StreamBuffer,
    running_proxy,
)
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

#: How long a test waits for something that should come at once (a notification, an answer).
SOON_S = 10.0
#: server-everything sends a simulated log message or resource update at once, then every
#: 5 s: waiting less than 5 s for one tells whether the first was lost.
FIRST_OF_PERIODIC_S = 4.0


def tag() -> str:
    return uuid.uuid4().hex[:10]


def free_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------
# Remote servers
# --------------------------------------------------------------------------


class EverythingServer:
    """server-everything in its own HTTP mode (``streamableHttp`` or ``sse``) on a free port.

    It prints ``Session initialized with ID: X`` and ``Received session termination request
    for session X`` (Streamable HTTP) on stdout; both streams are kept for the tests and for
    the report of a failed test (``stderr`` below is both).
    """

    READY = {
        "streamableHttp": re.compile(r"MCP Streamable HTTP Server listening on port (\d+)"),
        "sse": re.compile(r"Server is running on port (\d+)"),
    }
    PATHS = {"streamableHttp": "/mcp", "sse": "/sse"}

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.port = free_port()
        env = dict(os.environ, PORT=str(self.port))
        self.proc = subprocess.Popen(
            ["node", str(SERVER_EVERYTHING_JS), mode],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self._out = _StreamBuffer(self.proc.stdout, f"everything-{mode}-stdout")
        self._err = _StreamBuffer(self.proc.stderr, f"everything-{mode}-stderr")
        if self._err.wait_for(self.READY[mode], 30.0) is None:
            self.stop()
            raise AssertionError(f"server-everything {mode} did not start on port {self.port}:\n{self.stderr}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.PATHS[self.mode]}"

    @property
    def stdout(self) -> str:
        return self._out.text()

    @property
    def stderr(self) -> str:  # read by conftest's failure report
        return f"--- stdout ---\n{self._out.text()}\n--- stderr ---\n{self._err.text()}"

    def wait_stdout(self, pattern: str, timeout: float = SOON_S) -> re.Match[str] | None:
        return self._out.wait_for(pattern, timeout)

    def stop(self) -> None:
        _stop_group(self.proc)
        self._out.join(2)
        self._err.join(2)


@pytest.fixture(scope="module")
def everything_http() -> Iterator[EverythingServer]:
    server = EverythingServer("streamableHttp")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def everything_sse() -> Iterator[EverythingServer]:
    server = EverythingServer("sse")
    yield server
    server.stop()


#: A bridge stops within half a second even with a (cancelled) request still in flight.
QUICK_STOP = ("--gracefulShutdownTimeout", "500")


@pytest.fixture(scope="module")
def bridge(proxy_bin: Path) -> Iterator[ProxyProcess]:
    """This project's bridge in front of server-everything (stdio), as a remote."""
    with running_proxy(proxy_bin, *QUICK_STOP) as running:
        yield running


#: What server-everything's Streamable HTTP server prints when a client opens its GET stream.
GET_STREAM_OPENED = "Establishing new SSE stream for session"


@dataclass
class Remote:
    name: str
    url: str
    #: Options of the reverse proxy for this remote (the transport).
    args: tuple[str, ...]
    #: The remote's process, for the report of a failed test.
    started: list = field(default_factory=list)

    def mark(self) -> int:
        """How many GET streams the remote has seen opened so far (server-everything's own
        Streamable HTTP server only; 0 elsewhere)."""
        server = self.started[0] if self.started else None
        if isinstance(server, EverythingServer) and server.mode == "streamableHttp":
            return server.stdout.count(GET_STREAM_OPENED)
        return 0

    async def settle(self, mark: int) -> None:
        """Waits until a session begun after ``mark`` can hear the remote outside its requests.

        Over Streamable HTTP the remote speaks outside a request (log messages, list changes,
        resource updates, ``roots/list``) on the GET stream the client opens after
        ``initialize``; what it sends before that stream is up is lost, whoever the client is.
        The tests of those messages begin once the stream is up, so that they test the
        crossing, not that race (``test_the_remote_is_heard_from_the_first_request`` does).
        Over legacy SSE the stream is the session: nothing to wait for.
        """
        server = self.started[0] if self.started else None
        if isinstance(server, EverythingServer) and server.mode == "streamableHttp":
            deadline = time.monotonic() + SOON_S
            while server.stdout.count(GET_STREAM_OPENED) <= mark:
                assert time.monotonic() < deadline, (
                    "the reverse proxy never opened the remote's GET stream (Streamable HTTP):\n"
                    + server.stdout[-3000:]
                )
                await anyio.sleep(0.02)
            await anyio.sleep(0.05)  # the remote registers the stream as it answers the GET
        elif not self.url.endswith("/sse"):
            await anyio.sleep(0.5)  # the bridge's /mcp: no sign to wait for


#: name -> (server fixture, URL attribute, reverse-proxy options)
REMOTES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "everything-http": ("everything_http", "url", ()),
    "everything-sse": ("everything_sse", "url", ("--transport", "sse")),
    "everything-sse-auto": ("everything_sse", "url", ()),
    "bridge-http": ("bridge", "mcp_url", ("--transport", "streamable-http", "--upstreamProtocol", "legacy")),
    "bridge-sse": ("bridge", "sse_url", ("--transport", "sse")),
    # The bridge also speaks 2026-07-28, which the proxy prefers by default: the local 2025
    # client's session is then translated (initialize answered from server/discover, every
    # request in the envelope, questions inside a call as input rounds).
    "bridge-http-2026": ("bridge", "mcp_url", ("--transport", "streamable-http")),
}

#: What a 2025 session has and the bridge's 2026-07-28 side cannot give a translated client:
#: capabilities per session (its 2026 requests are served by children it initialized itself),
#: and anything the server says outside a call (roots/list, resource updates, the answer to
#: roots/list_changed). Tests of those run on the remotes in their 2025 revision.
SESSION_ONLY = [name for name in REMOTES if name != "bridge-http-2026"]


@pytest.fixture(params=list(REMOTES))
def remote(request: pytest.FixtureRequest) -> Remote:
    fixture, attribute, args = REMOTES[request.param]
    server = request.getfixturevalue(fixture)
    return Remote(request.param, getattr(server, attribute), args, [server])


# --------------------------------------------------------------------------
# The local client: the official SDK over the reverse proxy's stdio
# --------------------------------------------------------------------------


class Local:
    """What the local client answers to the remote's requests, and what it heard."""

    def __init__(self) -> None:
        self.sample_text = f"sampled-{tag()}"
        self.elicit_name = f"Alice-{tag()}"
        self.roots = [f"file:///e2e/root-{tag()}"]
        self.samples: list[types.CreateMessageRequestParams] = []
        self.elicitations: list[Any] = []
        self.roots_asked = 0
        self.logs: list[types.LoggingMessageNotificationParams] = []
        self.messages: list[Any] = []

    async def on_sample(self, ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.samples.append(params)
        return types.CreateMessageResult(
            role="assistant",
            model="e2e-model",
            content=types.TextContent(type="text", text=self.sample_text),
            stop_reason="endTurn",
        )

    async def on_elicit(self, ctx: Any, params: Any) -> types.ElicitResult:
        self.elicitations.append(params)
        return types.ElicitResult(action="accept", content={"name": self.elicit_name, "check": True})

    async def on_roots(self, ctx: Any) -> types.ListRootsResult:
        self.roots_asked += 1
        return types.ListRootsResult(roots=[types.Root(uri=uri, name=f"root{i}") for i, uri in enumerate(self.roots)])

    async def on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append(params)

    async def on_message(self, message: Any) -> None:
        self.messages.append(message)

    def callbacks(self, *, capabilities: bool = True) -> dict[str, Any]:
        """``Client`` keyword arguments; without ``capabilities`` it declares no sampling,
        elicitation or roots."""
        handlers: dict[str, Any] = {"logging_callback": self.on_log, "message_handler": self.on_message}
        if capabilities:
            handlers.update(
                sampling_callback=self.on_sample,
                elicitation_callback=self.on_elicit,
                list_roots_callback=self.on_roots,
            )
        return handlers

    def log_texts(self) -> list[str]:
        return [str(log.data) for log in self.logs]

    def updated_uris(self) -> list[str]:
        return [str(m.params.uri) for m in self.messages if isinstance(m, types.ResourceUpdatedNotification)]

    def count(self, kind: type) -> int:
        return sum(isinstance(m, kind) for m in self.messages)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not within {timeout}s; logs heard: {self.log_texts()!r}; "
                    f"notifications heard: {[type(m).__name__ for m in self.messages]!r}"
                )
            await anyio.sleep(0.05)


def reverse_transport(proxy_bin: Path, argv: Sequence[str], errlog: Any, env: dict[str, str] | None) -> Any:
    """The SDK's stdio transport running the binary under test with ``argv``."""
    return stdio_client(StdioServerParameters(command=str(proxy_bin), args=list(argv), env=env), errlog=errlog)


@dataclass
class _StderrFile:
    """A reverse proxy's stderr (a file), in the shape conftest's failure report reads."""

    path: Path
    pid: str

    @property
    def stderr(self) -> str:
        try:
            return self.path.read_text(errors="replace")
        except OSError:
            return ""


class ReverseClients:
    """Factory of SDK clients of reverse proxies; ``started`` feeds conftest's failure report."""

    def __init__(self, proxy_bin: Path, directory: Path) -> None:
        self.proxy_bin = proxy_bin
        self.directory = directory
        self.started: list[_StderrFile] = []

    @asynccontextmanager
    async def connect(
        self,
        url: str,
        *args: str,
        local: Local,
        bare: bool = False,
        capabilities: bool = True,
        env: dict[str, str] | None = None,
        settle: Remote | None = None,
    ):
        """An initialized legacy-mode ``Client`` of ``mcp-proxy --connect url *args``
        (``mcp-proxy *args url`` with ``bare``); with ``settle``, once that remote can be
        heard outside requests (``Remote.settle``)."""
        argv = [*args, url] if bare else ["--connect", url, *args]
        mark = settle.mark() if settle else 0
        path = self.directory / f"reverse-{len(self.started)}.stderr"
        self.started.append(_StderrFile(path, f"reverse {' '.join(argv)}"))
        with path.open("w") as errlog:
            transport = reverse_transport(self.proxy_bin, argv, errlog, env)
            client = Client(
                transport,
                mode="legacy",
                read_timeout_seconds=30.0,
                cache=None,
                **local.callbacks(capabilities=capabilities),
            )
            # Bounded: a proxy that never answers fails the test instead of hanging it.
            with anyio.fail_after(45):
                async with client:
                    if capabilities:
                        await remote_initialized(client)
                    if settle:
                        await settle.settle(mark)
                    yield client


#: A tool server-everything registers when it handles ``notifications/initialized`` from a
#: client that declared sampling.
REGISTERED_ON_INITIALIZED = "trigger-sampling-request"


async def remote_initialized(client: Client) -> None:
    """Waits until the remote has handled the client's ``notifications/initialized``.

    server-everything registers the tools that depend on the client's capabilities when it
    handles that notification; a request that overtakes it finds them missing ("Tool
    trigger-sampling-request not found"). Whether the proxy keeps that order is
    ``test_a_notification_reaches_the_remote_before_the_request_after_it``'s question; the
    other tests begin once the remote is initialized.
    """
    deadline = time.monotonic() + SOON_S
    while True:
        names = {tool.name for tool in (await client.list_tools()).tools}
        if REGISTERED_ON_INITIALIZED in names:
            return
        assert time.monotonic() < deadline, (
            f"the remote never offered {REGISTERED_ON_INITIALIZED}: the client's capabilities (or its "
            f"notifications/initialized) did not reach it; tools: {sorted(names)}"
        )
        await anyio.sleep(0.1)


@pytest.fixture
def reverse(proxy_bin: Path, tmp_path: Path) -> ReverseClients:
    return ReverseClients(proxy_bin, tmp_path)


def texts(result: Any) -> str:
    return "\n".join(getattr(item, "text", "") or "" for item in result.content)


# --------------------------------------------------------------------------
# Everything crosses, over every remote
# --------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_initialize_tools_echo_and_ping(reverse: ReverseClients, remote: Remote) -> None:
    """The local client's ``initialize`` reaches the remote and its answer comes back (server
    name, capabilities); ``tools/list`` shows the tools server-everything registers only for a
    client that declared sampling, elicitation and roots (so the local client's capabilities
    reached the remote, not the proxy's own); ``echo`` and ``ping`` are answered."""
    local = Local()
    async with reverse.connect(remote.url, *remote.args, local=local) as client:
        assert client.server_info is not None and client.server_info.name == "mcp-servers/everything"
        capabilities = client.server_capabilities
        assert capabilities.resources is not None and capabilities.resources.subscribe, capabilities
        assert capabilities.tools is not None and capabilities.logging is not None, capabilities

        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"echo", "trigger-long-running-operation", "toggle-simulated-logging"} <= names, names
        conditional = {"trigger-sampling-request", "trigger-elicitation-request", "get-roots-list"}
        assert conditional <= names, f"the client's capabilities did not reach the remote: {sorted(names)}"

        marker = f"hello-{tag()}"
        result = await client.call_tool("echo", {"message": marker})
        assert not result.is_error and texts(result) == f"Echo: {marker}", result

        assert isinstance(await client.send_ping(), types.EmptyResult)


@pytest.mark.parametrize("remote", SESSION_ONLY, indirect=True)
@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_a_client_without_capabilities_declares_none(reverse: ReverseClients, remote: Remote) -> None:
    """A local client that declares no sampling, elicitation or roots gets none declared for
    it either: server-everything then does not offer the tools that need them (the proxy
    passes the client's capabilities, it does not invent its own)."""
    local = Local()
    async with reverse.connect(remote.url, *remote.args, local=local, capabilities=False) as client:
        # Nothing shows when the remote has handled notifications/initialized (it registers
        # no tool for this client): give it time, or an overtaking tools/list passes vacuously.
        await anyio.sleep(0.5)
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "echo" in names, names
        extra = names & {"trigger-sampling-request", "trigger-elicitation-request", "get-roots-list"}
        assert not extra, f"capabilities the client never declared reached the remote: {sorted(extra)}"


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_progress_notifications_reach_the_local_client(reverse: ReverseClients, remote: Remote) -> None:
    """``trigger-long-running-operation`` with a progress token: each of the remote's
    ``notifications/progress`` reaches the local client's progress callback (same token, in
    order), and then the result."""
    local = Local()
    progress: list[tuple[float, float | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total))

    async with reverse.connect(remote.url, *remote.args, local=local) as client:
        result = await client.call_tool(
            "trigger-long-running-operation", {"duration": 0.6, "steps": 4}, progress_callback=on_progress
        )
        assert not result.is_error and "Long running operation completed" in texts(result), result
        assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)], progress


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_sampling_request_is_answered_by_the_local_client(reverse: ReverseClients, remote: Remote) -> None:
    """``trigger-sampling-request`` makes the remote send ``sampling/createMessage`` while the
    tool call is in flight: it reaches the local client's sampling callback with the prompt,
    and the callback's answer gets back to the remote (the tool result quotes it)."""
    local = Local()
    prompt = f"prompt-{tag()}"
    async with reverse.connect(remote.url, *remote.args, local=local) as client:
        result = await client.call_tool("trigger-sampling-request", {"prompt": prompt, "maxTokens": 7})
        assert not result.is_error, texts(result)
        assert len(local.samples) == 1, (local.samples, texts(result))
        asked = local.samples[0]
        assert asked.max_tokens == 7 and prompt in asked.messages[0].content.text, asked
        assert local.sample_text in texts(result), texts(result)


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_elicitation_request_is_answered_by_the_local_client(reverse: ReverseClients, remote: Remote) -> None:
    """``trigger-elicitation-request``: the remote's ``elicitation/create`` reaches the local
    client's callback and its ``accept`` with content gets back (the tool result names it)."""
    local = Local()
    async with reverse.connect(remote.url, *remote.args, local=local) as client:
        result = await client.call_tool("trigger-elicitation-request", {})
        assert not result.is_error, texts(result)
        assert len(local.elicitations) == 1, (local.elicitations, texts(result))
        assert f"- Name: {local.elicit_name}" in texts(result), texts(result)


@pytest.mark.parametrize("remote", SESSION_ONLY, indirect=True)
@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_roots_requests_and_roots_list_changed(reverse: ReverseClients, remote: Remote) -> None:
    """The remote asks the local client for its roots (``roots/list``, outside any request of
    the client: over Streamable HTTP it comes on the GET stream) and reports them in a log
    message; the local client's ``notifications/roots/list_changed`` reaches the remote, which
    asks again and sees the new roots."""
    local = Local()
    async with reverse.connect(remote.url, *remote.args, local=local, settle=remote) as client:
        # At once: server-everything asks for the roots itself 350 ms after initialized; a
        # call before that makes the tool ask, while the call is in flight.
        first = texts(await client.call_tool("get-roots-list", {}, read_timeout_seconds=10))
        assert local.roots[0] in first, first
        assert local.roots_asked >= 1

        asked = local.roots_asked
        local.roots = [*local.roots, f"file:///e2e/second-{tag()}"]
        await client.send_roots_list_changed()
        await local.wait_for(
            lambda: local.roots_asked > asked and any("2 root(s)" in text for text in local.log_texts()),
            SOON_S,
            "roots/list after notifications/roots/list_changed, and the remote's log about it",
        )
        second = texts(await client.call_tool("get-roots-list", {}, read_timeout_seconds=10))
        assert local.roots[1] in second, second


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_log_notifications_after_set_level(reverse: ReverseClients, remote: Remote) -> None:
    """``logging/setLevel`` reaches the remote and its ``notifications/message`` (simulated
    logging, sent outside any request) reach the local client's logging callback."""
    local = Local()
    async with reverse.connect(remote.url, *remote.args, local=local, settle=remote) as client:
        assert isinstance(await client.set_logging_level("debug"), types.EmptyResult)
        result = await client.call_tool("toggle-simulated-logging", {})
        assert "Started simulated" in texts(result), result
        # The first one is sent at once (the next 5 s later): it must not be lost.
        await local.wait_for(
            lambda: any(SIMULATED_LOG_RE.search(text) for text in local.log_texts()),
            FIRST_OF_PERIODIC_S,
            "the first simulated log message",
        )


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_list_and_read_resources(reverse: ReverseClients, remote: Remote) -> None:
    """``resources/list``, ``resources/templates/list`` and ``resources/read`` (a static
    document and a templated text resource) answer as the remote does."""
    local = Local()
    async with reverse.connect(remote.url, *remote.args, local=local) as client:
        listed = (await client.list_resources()).resources
        static = [r for r in listed if str(r.uri).startswith("demo://resource/static/document/")]
        assert static, [str(r.uri) for r in listed]
        read = await client.read_resource(str(static[0].uri))
        assert read.contents and str(read.contents[0].uri) == str(static[0].uri), read
        assert getattr(read.contents[0], "text", ""), read

        templates = (await client.list_resource_templates()).resource_templates
        assert "demo://resource/dynamic/text/{resourceId}" in {t.uri_template for t in templates}, templates
        dynamic = await client.read_resource("demo://resource/dynamic/text/3")
        assert dynamic.contents[0].text.startswith("Resource 3: This is a plaintext resource"), dynamic


@pytest.mark.parametrize("remote", SESSION_ONLY, indirect=True)
@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_resource_subscription_updates(reverse: ReverseClients, remote: Remote) -> None:
    """``resources/subscribe`` reaches the remote (it logs it), and once updates are on the
    remote's ``notifications/resources/updated`` for that URI (sent outside any request) reach
    the local client; ``resources/unsubscribe`` is answered."""
    local = Local()
    uri = "demo://resource/dynamic/text/7"
    async with reverse.connect(remote.url, *remote.args, local=local, settle=remote) as client:
        assert isinstance(await client.subscribe_resource(uri), types.EmptyResult)
        result = await client.call_tool("toggle-subscriber-updates", {})
        assert "Started simulated resource updated notifications" in texts(result), result
        # The first update is sent at once (the next 5 s later): it must not be lost.
        await local.wait_for(
            lambda: uri in local.updated_uris(), FIRST_OF_PERIODIC_S, f"the first resources/updated for {uri}"
        )
        await local.wait_for(
            lambda: any(f"Subscribe Resource request for URI: {uri}" in text for text in local.log_texts()),
            SOON_S,
            "the remote's log message about the subscription",
        )
        assert isinstance(await client.unsubscribe_resource(uri), types.EmptyResult)


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_resource_list_changed_and_the_new_resource(reverse: ReverseClients, remote: Remote) -> None:
    """``gzip-file-as-resource`` registers a new resource on the remote, which announces it
    with ``notifications/resources/list_changed``: the local client hears it, lists the new
    resource and reads it (a blob that unzips to what was sent)."""
    local = Local()
    name = f"e2e-{tag()}.txt"
    content = f"reverse mode {tag()}\n" * 3
    data_uri = "data:text/plain;base64," + base64.b64encode(content.encode()).decode()
    async with reverse.connect(remote.url, *remote.args, local=local, settle=remote) as client:
        result = await client.call_tool("gzip-file-as-resource", {"name": name, "data": data_uri})
        assert not result.is_error, result
        uri = f"demo://resource/session/{name}"
        assert [str(item.uri) for item in result.content if isinstance(item, types.ResourceLink)] == [uri], result
        await local.wait_for(
            lambda: local.count(types.ResourceListChangedNotification) >= 1, SOON_S, "resources/list_changed"
        )
        assert uri in {str(r.uri) for r in (await client.list_resources()).resources}
        read = await client.read_resource(uri)
        assert gzip.decompress(base64.b64decode(read.contents[0].blob)).decode() == content


@pytest.mark.anyio
@pytest.mark.timeout(60)
@pytest.mark.parametrize("which", ["everything-http", "everything-sse-auto"])
async def test_a_bare_url_works_like_connect(
    reverse: ReverseClients, request: pytest.FixtureRequest, which: str
) -> None:
    """``mcp-proxy URL`` (the URL as the only positional argument, like the Python mcp-proxy)
    is reverse mode toward URL, not a command to run: the local client lists the tools and
    calls ``echo``; with an SSE URL ``auto`` finds the transport."""
    fixture, attribute, _ = REMOTES[which]
    url = getattr(request.getfixturevalue(fixture), attribute)
    local = Local()
    async with reverse.connect(url, local=local, bare=True) as client:
        assert {"echo", "trigger-sampling-request"} <= {t.name for t in (await client.list_tools()).tools}
        marker = f"bare-{tag()}"
        assert texts(await client.call_tool("echo", {"message": marker})) == f"Echo: {marker}"


# --------------------------------------------------------------------------
# Raw stdin/stdout
# --------------------------------------------------------------------------


class RawReverse:
    """One reverse proxy driven by hand: JSON lines in on stdin, JSON lines out of stdout."""

    def __init__(self, binary: Path, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if k not in ("API_ACCESS_TOKEN", "MCP_PROXY_API_KEY")}
        full_env.update(env or {})
        self.argv = [str(binary), *args]
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self._stderr = _StreamBuffer(self.proc.stderr, f"reverse-{self.pid}-stderr")
        self._queue: queue.Queue[Any] = queue.Queue()
        #: Every message read so far, and stdout lines that were not JSON-RPC messages.
        self.received: list[dict] = []
        self.bad_lines: list[str] = []
        self._reader = threading.Thread(target=self._read, name=f"reverse-{self.pid}-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                self.bad_lines.append(line)
                continue
            if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
                self.bad_lines.append(line)
                continue
            self._queue.put(message)
        self._queue.put(None)

    @property
    def stderr(self) -> str:
        return self._stderr.text()

    def send(self, message: dict) -> None:
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def recv(self, predicate: Callable[[dict], bool], timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no {what} within {timeout}s\nargv: {self.argv}\nreceived: {self.received!r}\n"
                    f"--- stderr ---\n{self.stderr[-4000:]}"
                )
            try:
                message = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if message is None:
                self._queue.put(None)
                raise AssertionError(
                    f"stdout closed before {what} (exit code {self.proc.poll()})\nargv: {self.argv}\n"
                    f"received: {self.received!r}\n--- stderr ---\n{self.stderr[-4000:]}"
                )
            self.received.append(message)
            if predicate(message):
                return message

    def seen(self, predicate: Callable[[dict], bool], timeout: float, what: str) -> dict:
        """Like ``recv``, but a message already read (while waiting for another) counts too."""
        for message in self.received:
            if predicate(message):
                return message
        return self.recv(predicate, timeout, what)

    def response(self, request_id: Any, timeout: float = SOON_S) -> dict:
        return self.recv(
            lambda m: m.get("id") == request_id and ("result" in m or "error" in m),
            timeout,
            f"response to id {request_id!r}",
        )

    def initialize(self, request_id: Any = 1, timeout: float = 20.0) -> dict:
        self.send(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "initialize",
                "params": {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "reverse-e2e", "version": "0"},
                },
            }
        )
        return self.response(request_id, timeout)

    def open_session(self) -> dict:
        """``initialize`` (which must succeed) and ``notifications/initialized``."""
        answer = self.initialize()
        assert "result" in answer, answer
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return answer["result"]

    def close_stdin(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def unread(self) -> list[dict]:
        """The messages read from stdout and not yet taken by ``recv``."""
        found = []
        while True:
            try:
                message = self._queue.get_nowait()
            except queue.Empty:
                return found
            if message is None:
                self._queue.put(None)
                return found
            found.append(message)

    def assert_clean_stdout(self) -> None:
        assert not self.bad_lines, f"stdout carried lines that are not JSON-RPC messages: {self.bad_lines!r}"

    def stop(self) -> None:
        self.close_stdin()
        _stop_group(self.proc)
        self._stderr.join(2)
        self._reader.join(2)


class RawReverses:
    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self.started: list[RawReverse] = []

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> RawReverse:
        proc = RawReverse(self.binary, args, env)
        self.started.append(proc)
        return proc


@pytest.fixture
def raw_reverse(proxy_bin: Path) -> Iterator[RawReverses]:
    """Factory: ``raw_reverse(*args, env=...)`` -> a running ``RawReverse``; all stopped at teardown."""
    factory = RawReverses(proxy_bin)
    yield factory
    for proc in factory.started:
        proc.stop()


# -- small loopback servers --------------------------------------------------


class RecordingServer:
    """A loopback HTTP server that records every request's method, path and headers and
    answers 401 with ``WWW-Authenticate: Bearer`` (a remote that wants a token)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                owner.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                body = b'{"error":"unauthorized"}'
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Bearer realm="e2e"')
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PUT = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SlowToAcceptServer:
    """A minimal 2025 Streamable HTTP server on loopback that takes 0.5 s to accept (202) a
    notification, and records when each message arrived and when it was accepted.

    ``initialize`` gets a session id; ``tools/list`` and ``ping`` are answered in JSON; other
    requests (a ``server/discover`` probe) get -32601; GET gets 405 (no server stream) and
    DELETE 200.
    """

    ACCEPT_DELAY_S = 0.5

    def __init__(self) -> None:
        #: (method, arrived, answered) per message, in the order they arrived.
        self.log: list[tuple[str, float, float | None]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                message = json.loads(self.rfile.read(length) or b"{}")
                method = message.get("method", "(response)")
                with owner.lock:
                    entry = len(owner.log)
                    owner.log.append((method, time.monotonic(), None))
                if "id" not in message or "method" not in message:  # a notification (or a response)
                    time.sleep(owner.ACCEPT_DELAY_S)
                    with owner.lock:
                        owner.log[entry] = (method, owner.log[entry][1], time.monotonic())
                    self._reply(202)
                    return
                if method == "initialize":
                    result: Any = {
                        "protocolVersion": message["params"]["protocolVersion"],
                        "capabilities": {"tools": {}},
                        "serverInfo": {"name": "slow-to-accept", "version": "0"},
                    }
                elif method == "tools/list":
                    result = {"tools": []}
                elif method == "ping":
                    result = {}
                else:
                    result = None
                answer: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"]}
                if result is None:
                    answer["error"] = {"code": -32601, "message": f"Method not found: {method}"}
                else:
                    answer["result"] = result
                headers = {"Content-Type": "application/json"}
                if method == "initialize":
                    headers["Mcp-Session-Id"] = "slow-session"
                self._reply(200, json.dumps(answer).encode(), headers)

            def do_GET(self) -> None:
                self._reply(405, headers={"Allow": "POST, DELETE"})

            def do_DELETE(self) -> None:
                self._reply(200)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mcp"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def unauthorized() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


# -- failures are answers ----------------------------------------------------

TRANSPORT_OPTIONS = {
    "auto": (),
    "streamable-http": ("--transport", "streamable-http"),
    "sse": ("--transport", "sse"),
}


def assert_rpc_error(answer: dict) -> dict:
    error = answer.get("error")
    assert isinstance(error, dict), f"expected a JSON-RPC error, got {answer!r}"
    assert isinstance(error.get("code"), int) and isinstance(error.get("message"), str) and error["message"], error
    return error


@pytest.mark.timeout(30)
@pytest.mark.parametrize("transport", list(TRANSPORT_OPTIONS))
def test_an_unreachable_remote_answers_initialize_with_an_error(raw_reverse: RawReverses, transport: str) -> None:
    """A remote nobody listens on (a closed loopback port): the local client's ``initialize``
    gets a JSON-RPC error within ``--connectionTimeout`` (3 s here; well under 10 s), not a
    hang; stdout stays JSON-RPC only, and stdin EOF then ends the process."""
    url = f"http://127.0.0.1:{free_port()}/mcp"
    proc = raw_reverse("--connect", url, *TRANSPORT_OPTIONS[transport], "--connectionTimeout", "3000")
    started = time.monotonic()
    answer = proc.initialize(request_id=1, timeout=10.0)
    elapsed = time.monotonic() - started
    assert_rpc_error(answer)
    assert elapsed < 10, elapsed
    proc.close_stdin()
    assert proc.wait_exit(5.0) is not None, f"the process did not end after stdin EOF:\n{proc.stderr}"
    proc.assert_clean_stdout()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("transport", ["auto", "sse"])
def test_a_silent_remote_answers_initialize_within_the_connection_timeout(
    raw_reverse: RawReverses, silent_port: int, transport: str
) -> None:
    """A remote that accepts the connection and never answers (a listening socket nobody
    reads): ``initialize`` still gets a JSON-RPC error, bounded by ``--connectionTimeout
    3000`` (answered in under 10 s, where the default would be 60 s)."""
    path = "/sse" if transport == "sse" else "/mcp"
    url = f"http://127.0.0.1:{silent_port}{path}"
    proc = raw_reverse("--connect", url, *TRANSPORT_OPTIONS[transport], "--connectionTimeout", "3000")
    started = time.monotonic()
    answer = proc.initialize(request_id="init", timeout=10.0)
    elapsed = time.monotonic() - started
    assert_rpc_error(answer)
    assert elapsed < 10, elapsed
    proc.assert_clean_stdout()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("transport", list(TRANSPORT_OPTIONS))
def test_a_401_is_a_clear_error_naming_the_url_and_header(
    raw_reverse: RawReverses, unauthorized: RecordingServer, transport: str
) -> None:
    """A remote that answers 401 (``WWW-Authenticate: Bearer``): ``initialize`` gets a
    JSON-RPC error whose message names the remote (host:port) and says how to pass a token
    (``--header``)."""
    url = unauthorized.url("/sse" if transport == "sse" else "/mcp")
    proc = raw_reverse("--connect", url, *TRANSPORT_OPTIONS[transport], "--connectionTimeout", "5000")
    error = assert_rpc_error(proc.initialize(request_id=1, timeout=10.0))
    text = error["message"] + json.dumps(error.get("data", ""))
    assert f"127.0.0.1:{unauthorized.port}" in text, error
    assert "--header" in text, error
    assert unauthorized.requests, "the remote was never asked"
    proc.assert_clean_stdout()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("form", ["connect", "bare"])
def test_headers_reach_the_remote(raw_reverse: RawReverses, unauthorized: RecordingServer, form: str) -> None:
    """``--header "X-Test: a"``, the Python peer's ``-H X-Other b`` and ``API_ACCESS_TOKEN=tok``
    (``Authorization: Bearer tok``) are all sent on every request to the remote, with
    ``--connect URL`` and with the bare URL."""
    url = unauthorized.url("/mcp")
    options = ("--header", "X-Test: a", "-H", "X-Other", "b")
    args = ("--connect", url, *options) if form == "connect" else (*options, url)
    proc = raw_reverse(*args, env={"API_ACCESS_TOKEN": "tok"})
    assert_rpc_error(proc.initialize(request_id=1, timeout=10.0))
    assert unauthorized.requests, "the remote was never asked"
    for method, path, headers in unauthorized.requests:
        sent = {name: headers.get(name) for name in ("x-test", "x-other", "authorization")}
        assert sent == {"x-test": "a", "x-other": "b", "authorization": "Bearer tok"}, (method, path, headers)


# -- requests, cancellation, timeouts ------------------------------------------


@pytest.mark.timeout(30)
def test_raw_session_ping_and_clean_stdout(raw_reverse: RawReverses, everything_http: EverythingServer) -> None:
    """By hand: ``initialize`` is answered with the remote's result (same id, the protocol
    version asked for), ``ping`` with ``{}`` and a string id comes back as it was; nothing but
    JSON-RPC lines on stdout."""
    proc = raw_reverse("--connect", everything_http.url)
    result = proc.open_session()
    assert result["serverInfo"]["name"] == "mcp-servers/everything", result
    assert result["protocolVersion"] == PROTOCOL_VERSION, result
    proc.send({"jsonrpc": "2.0", "id": "p-1", "method": "ping"})
    assert proc.response("p-1") == {"jsonrpc": "2.0", "id": "p-1", "result": {}}
    echo = {"name": "echo", "arguments": {"message": "x"}}
    proc.send({"jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": echo})
    answer = proc.response(99)
    assert answer["result"]["content"][0]["text"] == "Echo: x", answer
    proc.assert_clean_stdout()


@pytest.mark.timeout(30)
def test_a_notification_reaches_the_remote_before_the_request_after_it(raw_reverse: RawReverses) -> None:
    """The local client's messages reach the remote in the order it wrote them: the request
    written after ``notifications/initialized`` is not sent before the remote has accepted
    that notification (as the SDK's own HTTP client does). A remote that takes 0.5 s to
    accept notifications shows any overtaking; with server-everything an overtaking request
    finds the tools that ``notifications/initialized`` registers missing ("Tool
    trigger-sampling-request not found")."""
    server = SlowToAcceptServer()
    try:
        proc = raw_reverse("--connect", server.url, "--transport", "streamable-http")
        assert "result" in proc.initialize(), proc.received
        proc.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        proc.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        assert proc.response(2).get("result") == {"tools": []}, proc.received
        log = list(server.log)
        methods = [method for method, _, _ in log]
        assert "notifications/initialized" in methods and "tools/list" in methods, log
        initialized = methods.index("notifications/initialized")
        listed = methods.index("tools/list")
        accepted = log[initialized][2]
        assert initialized < listed and accepted is not None and log[listed][1] >= accepted, (
            "tools/list reached the remote before it had accepted the notifications/initialized written before it: "
            f"{[(m, round(a - log[0][1], 3), b and round(b - log[0][1], 3)) for m, a, b in log]}"
        )
        proc.assert_clean_stdout()
    finally:
        server.close()


@pytest.mark.timeout(45)
def test_the_remote_is_heard_from_the_first_request(
    raw_reverse: RawReverses, everything_http: EverythingServer
) -> None:
    """A local client may send its first request right after ``notifications/initialized``
    (a pipelining client does): what the remote says about it outside the request must still
    reach the client. server-everything answers ``resources/subscribe`` after logging it on
    the Streamable HTTP GET stream, so the proxy must have that stream up before the request
    reaches the remote. Ten sessions in a row (a direct SDK client loses none of 20; a race
    lost one session in four or five here)."""
    lost = []
    for attempt in range(10):
        proc = raw_reverse("--connect", everything_http.url)
        proc.open_session()
        uri = f"demo://resource/dynamic/text/{attempt + 1}"
        proc.send({"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": uri}})
        assert proc.response(2).get("result") == {}, proc.received
        try:
            proc.seen(
                lambda m: m.get("method") == "notifications/message" and uri in json.dumps(m.get("params")),
                2.0,
                "the remote's log message about the subscription",
            )
        except AssertionError:
            lost.append(attempt)
        proc.assert_clean_stdout()
        proc.stop()
    assert not lost, (
        f"the remote's notifications/message sent while answering the first request was lost in sessions {lost} "
        f"of 10 (the GET stream was not up yet?)"
    )


@pytest.mark.timeout(40)
def test_cancellation_reaches_the_remote(raw_reverse: RawReverses, start_proxy: Any) -> None:
    """The local client's ``notifications/cancelled`` for a tool call in flight crosses to the
    remote: the bridge (run with ``--debug``) forwards a ``notifications/cancelled`` for that
    very call to its server; the session goes on (``ping``)."""
    bridge_proxy: ProxyProcess = start_proxy("--debug", *QUICK_STOP)
    proc = raw_reverse("--connect", bridge_proxy.mcp_url)
    proc.open_session()
    proc.send(
        {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/call",
            "params": {
                "name": "trigger-long-running-operation",
                "arguments": {"duration": 30, "steps": 30},
                "_meta": {"progressToken": "cancel-me"},
            },
        }
    )
    progress = proc.recv(lambda m: m.get("method") == "notifications/progress", SOON_S, "progress of the call")
    assert progress["params"]["progressToken"] == "cancel-me", progress
    proc.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7, "reason": "e2e"}})

    def forwarded(kind: str) -> list[dict]:
        found = []
        for line in bridge_proxy.stderr.splitlines():
            _, sep, body = line.partition("-> server: ")
            if sep:
                try:
                    message = json.loads(body)
                except ValueError:
                    continue
                if message.get("method") == kind:
                    found.append(message)
        return found

    calls = [m for m in forwarded("tools/call") if m["params"]["name"] == "trigger-long-running-operation"]
    assert len(calls) == 1, calls
    call_id = calls[0]["id"]
    deadline = time.monotonic() + SOON_S
    while not any(m["params"].get("requestId") == call_id for m in forwarded("notifications/cancelled")):
        assert time.monotonic() < deadline, (
            f"no notifications/cancelled for the call (id {call_id} at the bridge's server) reached the remote;"
            f" reverse proxy stderr:\n{proc.stderr[-3000:]}"
        )
        time.sleep(0.1)
    proc.send({"jsonrpc": "2.0", "id": 8, "method": "ping"})
    assert proc.response(8)["result"] == {}
    proc.assert_clean_stdout()


@pytest.mark.timeout(30)
def test_request_timeout_answers_a_slow_request_with_an_error(
    raw_reverse: RawReverses, everything_http: EverythingServer
) -> None:
    """``--requestTimeout 1500``: a tool call the remote takes 20 s to answer gets a JSON-RPC
    error well before that (under 10 s), and the session goes on working."""
    proc = raw_reverse("--connect", everything_http.url, "--requestTimeout", "1500")
    proc.open_session()
    proc.send(
        {
            "jsonrpc": "2.0",
            "id": 21,
            "method": "tools/call",
            "params": {"name": "trigger-long-running-operation", "arguments": {"duration": 20, "steps": 1}},
        }
    )
    started = time.monotonic()
    assert_rpc_error(proc.response(21, timeout=10.0))
    assert time.monotonic() - started < 10
    proc.send({"jsonrpc": "2.0", "id": 22, "method": "ping"})
    assert proc.response(22)["result"] == {}
    proc.assert_clean_stdout()


# -- stdin EOF -----------------------------------------------------------------


@pytest.mark.timeout(40)
def test_stdin_eof_exits_0_and_deletes_the_remote_session(raw_reverse: RawReverses) -> None:
    """Against server-everything's own Streamable HTTP server: after a session is up, closing
    stdin ends the process with exit code 0 within a few seconds, and the remote received the
    DELETE of that session (it prints ``Received session termination request for session
    <id>``)."""
    server = EverythingServer("streamableHttp")
    try:
        proc = raw_reverse("--connect", server.url)
        proc.open_session()
        proc.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        assert "result" in proc.response(2)
        match = server.wait_stdout(r"Session initialized with ID: (\S+)")
        assert match, server.stderr
        session_id = match.group(1)

        proc.close_stdin()
        code = proc.wait_exit(8.0)
        assert code == 0, f"exit code {code} after stdin EOF\n--- stderr ---\n{proc.stderr[-4000:]}"
        deleted = server.wait_stdout(rf"Received session termination request for session {re.escape(session_id)}", 3.0)
        assert deleted, f"the remote session {session_id} was not DELETEd:\n{server.stderr}"
        proc.assert_clean_stdout()
    finally:
        server.stop()


@pytest.mark.timeout(40)
def test_sigterm_ends_the_process_and_the_remote_session(raw_reverse: RawReverses) -> None:
    """SIGTERM while the local client still holds stdin open (a client that stops its server
    with a signal): the process ends within a few seconds (0 or the signal's status), and a
    clean stop ends the remote Streamable HTTP session too (server-everything sees the
    DELETE) instead of leaving it to the remote's idle timeout."""
    server = EverythingServer("streamableHttp")
    try:
        proc = raw_reverse("--connect", server.url)
        proc.open_session()
        proc.send({"jsonrpc": "2.0", "id": 2, "method": "ping"})
        assert proc.response(2)["result"] == {}
        match = server.wait_stdout(r"Session initialized with ID: (\S+)")
        assert match, server.stderr
        session_id = match.group(1)

        proc.proc.send_signal(signal.SIGTERM)
        code = proc.wait_exit(8.0)
        assert code in (0, -signal.SIGTERM, 128 + signal.SIGTERM), (
            f"still running 8 s after SIGTERM (exit code {code})\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
        deleted = server.wait_stdout(rf"Received session termination request for session {re.escape(session_id)}", 3.0)
        assert deleted, f"SIGTERM left the remote session {session_id} behind (no DELETE):\n{server.stderr}"
        proc.assert_clean_stdout()
    finally:
        server.stop()


@pytest.mark.timeout(40)
def test_stdin_eof_ends_the_session_at_a_bridge(raw_reverse: RawReverses, start_proxy: Any) -> None:
    """With this project's bridge as the remote: stdin EOF exits 0, the bridge logs that the
    client deleted the session, and the bridge's server-everything child for it is gone."""
    bridge_proxy: ProxyProcess = start_proxy(*QUICK_STOP)
    # In its 2025 revision (a 2026-07-28 client has no session there to end).
    proc = raw_reverse("--connect", bridge_proxy.mcp_url, "--upstreamProtocol", "legacy")
    proc.open_session()
    proc.send({"jsonrpc": "2.0", "id": 2, "method": "ping"})
    assert proc.response(2)["result"] == {}
    children = bridge_proxy.wait_for_children(lambda pids: len(pids) == 1, 5.0)
    assert len(children) == 1, (
        f"expected the one server-everything child of a 2025 session at the bridge, found {len(children)} "
        f"(a pool of 2026-07-28 stateless children has no session to end)"
    )

    proc.close_stdin()
    code = proc.wait_exit(8.0)
    assert code == 0, f"exit code {code} after stdin EOF\n--- stderr ---\n{proc.stderr[-4000:]}"
    bridge_proxy.wait_for_log(r"ended \(the client deleted it\)", timeout=5.0)
    assert bridge_proxy.wait_for_children(lambda pids: not pids, 5.0) == []


@pytest.mark.timeout(30)
def test_stdin_eof_before_anything_exits_0(raw_reverse: RawReverses, everything_http: EverythingServer) -> None:
    """A local client that closes stdin without saying anything: the process exits 0 at once
    (within 5 s) and writes nothing on stdout."""
    proc = raw_reverse("--connect", everything_http.url)
    proc.close_stdin()
    code = proc.wait_exit(5.0)
    assert code == 0, f"exit code {code}\n--- stderr ---\n{proc.stderr[-4000:]}"
    proc._reader.join(2)
    written = proc.unread()
    assert written == [] and proc.bad_lines == [], (written, proc.bad_lines)
