"""End-to-end tests of the Cloudflare Worker (crates/worker) in a real workerd, on loopback.

The Worker is built with ``scripts/build-worker`` (offline: local wasm-bindgen, esbuild and
wasm-opt) once per test session, then run through the Miniflare API by
``tests/worker/serve.mjs``; one smoke test runs ``wrangler dev`` from the repository root so
the root ``wrangler.toml`` is exercised as a deploy would read it, and one runs
``wrangler deploy --dry-run``.

Upstreams are real remote MCP servers on loopback: the native ``mcp-proxy`` bridging
server-everything (``/mcp``) and a Python SDK server in streamable-http mode
(``tests/worker/http_server.py``, answers in SSE).

Nothing is skipped: a missing toolchain fails with what to run (``scripts/setup``).

The core runs in edge mode (``"edge": {"sessionKey": ...}``): a fresh proxy per request,
sessions sealed into their ids, so an SDK client's session spans requests; stdio servers are
refused by name.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO_ROOT / "tests" / "node_modules"
SERVE_MJS = REPO_ROOT / "tests" / "worker" / "serve.mjs"
HTTP_SERVER_PY = REPO_ROOT / "tests" / "worker" / "http_server.py"
SLOW_SSE_SERVER_PY = REPO_ROOT / "tests" / "worker" / "slow_sse_server.py"
WRANGLER = NODE_MODULES / ".bin" / "wrangler"
WORKER_BUILD = REPO_ROOT / "crates" / "worker" / "build"
PROXY_BIN = Path(os.environ.get("MCP_PROXY_BIN") or REPO_ROOT / "target" / "release" / "mcp-proxy")
SERVER_EVERYTHING_JS = NODE_MODULES / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"

#: Keeps wrangler and Miniflare off the internet (see /work/shared/toolchain/NOTES.md).
OFFLINE_ENV = {
    "WRANGLER_SEND_METRICS": "false",
    "CLOUDFLARE_CF_FETCH_ENABLED": "false",
    "WRANGLER_HIDE_BANNER": "true",
    "WRANGLER_SEND_ERROR_REPORTS": "false",
}
MCP_POST_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
}
STARTUP_TIMEOUT_S = 60.0
#: The Worker's MCP_PROXY_SESSION_KEY secret in the tests: 32 random bytes as hex (`openssl rand -hex 32`).
SESSION_KEY = "3f9a0c4e7b21d86f5a0e9c3b7d14f2a68e5c0b9d3a7f1e24c6b8d0a5f3e7c91b"
#: Another valid key.
OTHER_SESSION_KEY = "c1d2e3f405162738495a6b7c8d9eafb0c1d2e3f405162738495a6b7c8d9eafb1"
#: The core's default request body limit (the Worker does not change it).
MAX_BODY_SIZE = 10 * 1024 * 1024


# The first test pays for the Worker build (cargo + wasm-opt) and the wrangler tests build again.
pytestmark = pytest.mark.timeout(300)


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A child in its own process group, its output collected; stopping ends the whole group
    (wrangler and Miniflare leave workerd behind if only node is killed)."""

    def __init__(self, argv: list[str], env: Mapping[str, str] | None = None, cwd: Path = REPO_ROOT) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **OFFLINE_ENV, **(env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._done = False
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            with self._cond:
                self._lines.append(raw.decode("utf-8", errors="replace"))
                self._cond.notify_all()
        with self._cond:
            self._done = True
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "".join(self._lines)

    def wait_for(self, pattern: str, timeout: float = STARTUP_TIMEOUT_S) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                match = regex.search("".join(self._lines))
                if match:
                    return match
                remaining = deadline - time.monotonic()
                if self._done or remaining <= 0:
                    break
                self._cond.wait(remaining)
        self.stop()
        pytest.fail(f"{self.argv[:3]} did not print {pattern!r}:\n{self.output}", pytrace=False)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (workerd), SIGTERM'd node or not.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)


def wait_for_port(port: int, timeout: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s", pytrace=False)


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def worker_build() -> Path:
    """Builds the Worker once per session; fails (not skips) without the toolchain."""
    for path, what in [(SERVE_MJS, "the repository"), (WRANGLER, "scripts/setup"), (NODE_MODULES / "miniflare", "scripts/setup")]:
        if not path.exists():
            pytest.fail(f"{path} is missing: run {what}", pytrace=False)
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "build-worker")],
        cwd=REPO_ROOT,
        env={**os.environ, **OFFLINE_ENV},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/build-worker failed:\n{result.stdout}\n{result.stderr}", pytrace=False)
    if not (WORKER_BUILD / "index.js").is_file():
        pytest.fail(f"scripts/build-worker left no {WORKER_BUILD / 'index.js'}", pytrace=False)
    return WORKER_BUILD


@pytest.fixture(scope="module")
def bridge_upstream() -> Iterator[str]:
    """The native mcp-proxy bridging server-everything: a Streamable HTTP server at /mcp."""
    if not (PROXY_BIN.is_file() and os.access(PROXY_BIN, os.X_OK)):
        pytest.fail(f"mcp-proxy binary not found: {PROXY_BIN} (set MCP_PROXY_BIN)", pytrace=False)
    if not SERVER_EVERYTHING_JS.is_file():
        pytest.fail(f"server-everything not installed at {SERVER_EVERYTHING_JS}; run scripts/setup", pytrace=False)
    process = Process([str(PROXY_BIN), "--port", "0", "--", "node", str(SERVER_EVERYTHING_JS), "stdio"])
    match = process.wait_for(r"listening on http://([^\s/]+)")
    yield f"http://{match.group(1)}/mcp"
    process.stop()


@pytest.fixture(scope="module")
def python_upstream() -> Iterator[str]:
    """The Python SDK server in streamable-http mode (answers in SSE)."""
    port = free_port()
    process = Process([sys.executable, str(HTTP_SERVER_PY), str(port)])
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}/mcp"
    process.stop()


#: How long the slow upstream waits between its two events.
SLOW_PAUSE_S = 1.5


@pytest.fixture(scope="module")
def slow_sse_upstream() -> Iterator[str]:
    """Answers initialize in SSE: a notification, then the result SLOW_PAUSE_S later."""
    port = free_port()
    process = Process([sys.executable, str(SLOW_SSE_SERVER_PY), str(port), str(SLOW_PAUSE_S)])
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}/mcp"
    process.stop()


class Worker:
    """The built Worker in workerd (Miniflare), with the given vars and secrets."""

    def __init__(self, bindings: Mapping[str, str], tmp_path: Path) -> None:
        bindings_file = tmp_path / f"bindings-{id(self)}.json"
        bindings_file.write_text(json.dumps(dict(bindings)))
        self.process = Process(["node", str(SERVE_MJS), "--bindings", str(bindings_file)])
        self.base_url = self.process.wait_for(r"worker listening on (http://\S+)").group(1)

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def log(self) -> str:
        return self.process.output


@pytest.fixture
def start_worker(worker_build: Path, tmp_path: Path) -> Iterator:
    started: list[Worker] = []

    def start(bindings: Mapping[str, str], session_key: str | None = SESSION_KEY) -> Worker:
        if session_key is not None:
            bindings = {"MCP_PROXY_SESSION_KEY": session_key, **bindings}
        worker = Worker(bindings, tmp_path)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.process.stop()


def config_text(servers: Mapping[str, Mapping[str, object]]) -> str:
    return json.dumps({"mcpServers": servers})


@pytest.fixture
def worker(start_worker, bridge_upstream: str, python_upstream: str) -> Worker:
    """A Worker in front of the upstreams: ``/everything/mcp`` (the bridge, spoken to in the
    2025 revision), ``/modern/mcp`` (the same bridge, found to serve 2026-07-28 and spoken to
    in it), ``/py/mcp``, and ``/legacy/mcp`` (the bridge again, over its legacy HTTP+SSE
    transport)."""
    servers = {
        "everything": {"type": "streamable-http", "url": bridge_upstream, "protocol": "2025-11-25"},
        "modern": {"type": "streamable-http", "url": bridge_upstream},
        "py": {"type": "streamable-http", "url": python_upstream},
        "legacy": {"type": "sse", "url": bridge_upstream.removesuffix("/mcp") + "/sse"},
    }
    return start_worker({"MCP_PROXY_CONFIG": config_text(servers)})


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def test_ping(worker: Worker) -> None:
    response = httpx.get(worker.url("/ping"))
    assert (response.status_code, response.text) == (200, "pong")


@pytest.mark.parametrize(
    ("server", "server_name"), [("everything", "mcp-servers/everything"), ("py", "worker-test-http-server")]
)
def test_initialize_reaches_the_upstream(worker: Worker, server: str, server_name: str) -> None:
    # One request, so no session needs to outlive it: works with or without edge mode.
    response = httpx.post(worker.url(f"/{server}/mcp"), json=INITIALIZE, headers=MCP_POST_HEADERS, timeout=30)
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        message = json.loads(data[-1])
    else:
        message = response.json()
    assert message["result"]["serverInfo"]["name"] == server_name, message
    assert response.headers.get("mcp-session-id"), response.headers


def test_upstream_events_stream_one_by_one(start_worker, slow_sse_upstream: str) -> None:
    worker = start_worker({"MCP_PROXY_CONFIG": config_text({"slow": {"type": "streamable-http", "url": slow_sse_upstream}})})
    arrivals: list[tuple[float, dict]] = []
    with httpx.stream(
        "POST", worker.url("/slow/mcp"), json=INITIALIZE, headers=MCP_POST_HEADERS, timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                arrivals.append((time.monotonic(), json.loads(line[5:])))
    assert [message.get("method") for _, message in arrivals] == ["notifications/message", None], arrivals
    assert arrivals[1][1]["result"]["serverInfo"]["name"] == "slow-sse"
    # The notification reached the client while the upstream was still pausing.
    assert arrivals[1][0] - arrivals[0][0] > SLOW_PAUSE_S * 0.6, arrivals


@pytest.mark.anyio
@pytest.mark.parametrize(("server", "tool"), [("everything", "echo"), ("py", "echo"), ("legacy", "echo")])
async def test_sdk_client_lists_and_calls_tools(worker: Worker, server: str, tool: str) -> None:
    async with streamable_http_client(worker.url(f"/{server}/mcp")) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=30) as session:
            await session.initialize()
            tools = await session.list_tools()
            assert tool in [t.name for t in tools.tools]
            result = await session.call_tool(tool, {"message": "through the edge"})
            assert "through the edge" in result.content[0].text


@pytest.mark.anyio
async def test_upstream_sse_flows_through(worker: Worker) -> None:
    logged: list[float] = []

    async def on_log(params) -> None:
        logged.append(time.monotonic())

    async with streamable_http_client(worker.url("/py/mcp")) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=30, logging_callback=on_log) as session:
            await session.initialize()
            result = await session.call_tool("countdown", {"count": 3, "pause": 0.5})
            answered = time.monotonic()
    assert result.content[0].text == "done"
    assert len(logged) == 3, logged
    # Each event came as it was sent, not all at the end.
    assert answered - logged[0] > 1.0, (logged, answered)


def test_stdio_server_is_refused_by_name(start_worker, bridge_upstream: str) -> None:
    servers = {
        "remote": {"type": "streamable-http", "url": bridge_upstream},
        "local-tool": {"command": "node", "args": ["server.js"]},
    }
    worker = start_worker({"MCP_PROXY_CONFIG": config_text(servers)})
    response = httpx.post(worker.url("/local-tool/mcp"), json=INITIALIZE, headers=MCP_POST_HEADERS, timeout=30)
    # Refused by the core, before any attempt to start a process.
    assert response.status_code >= 400 or "error" in response.json(), response.text
    if "local-tool" not in response.text:
        # The refusal names the server in the Worker's log, which workerd writes
        # to its stdout after the response may already have reached us.
        worker.process.wait_for(r"local-tool", timeout=10)
    assert "cannot start" not in worker.log, worker.log


def _generic_500(worker: Worker, response: httpx.Response) -> str:
    """A configuration error: the client learns only that; the log names the binding."""
    assert response.status_code == 500
    message = response.json()["error"]["message"]
    assert "misconfigured" in message, message
    assert "MCP_PROXY" not in message, "the client is told nothing about the configuration"
    return message


def test_missing_config_is_a_500_explained_in_the_log(start_worker) -> None:
    worker = start_worker({})
    _generic_500(worker, httpx.get(worker.url("/ping")))
    wait_until(lambda: "MCP_PROXY_CONFIG" in worker.log, timeout=10)


@pytest.mark.parametrize(
    "session_key",
    [None, "too-short", "k" * 32, "test-session-key-0123456789abcdef0123456789abcdef", "ab" * 32],
)
def test_a_missing_short_or_weak_session_key_is_refused(start_worker, bridge_upstream: str, session_key) -> None:
    config = config_text({"everything": {"type": "streamable-http", "url": bridge_upstream}})
    worker = start_worker({"MCP_PROXY_CONFIG": config}, session_key=session_key)
    _generic_500(worker, httpx.get(worker.url("/ping")))
    wait_until(lambda: "MCP_PROXY_SESSION_KEY" in worker.log, timeout=10)
    assert "openssl rand -hex 32" in worker.log, worker.log
    if session_key:
        assert session_key not in worker.log, "the secret must not be echoed"


def test_a_base64_session_key_works(start_worker, bridge_upstream: str) -> None:
    config = config_text({"everything": {"type": "streamable-http", "url": bridge_upstream}})
    worker = start_worker({"MCP_PROXY_CONFIG": config}, session_key="P5oMTnsh2G9aDpw7fRTypo5cC506fx4kxrjQpfPnyRs=")
    assert httpx.get(worker.url("/ping")).text == "pong"


def test_invalid_config_names_the_binding_in_the_log(start_worker) -> None:
    worker = start_worker({"MCP_PROXY_CONFIG": '{"mcpServers": ['})
    _generic_500(worker, httpx.post(worker.url("/a/mcp"), json=INITIALIZE, headers=MCP_POST_HEADERS))
    wait_until(lambda: "MCP_PROXY_CONFIG" in worker.log, timeout=10)


def test_cors_preflight(start_worker, bridge_upstream: str) -> None:
    worker = start_worker(
        {
            "MCP_PROXY_CONFIG": config_text({"everything": {"type": "streamable-http", "url": bridge_upstream}}),
            "MCP_PROXY_CORS_ORIGIN": "https://app.example, https://other.example",
        }
    )
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    allowed = httpx.options(worker.url("/everything/mcp"), headers={"Origin": "https://app.example", **preflight})
    assert allowed.status_code in (200, 204), allowed.text
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    denied = httpx.options(worker.url("/everything/mcp"), headers={"Origin": "https://evil.example", **preflight})
    assert denied.headers.get("access-control-allow-origin") != "https://evil.example"


def test_api_key(start_worker, bridge_upstream: str) -> None:
    worker = start_worker(
        {
            "MCP_PROXY_CONFIG": config_text({"everything": {"type": "streamable-http", "url": bridge_upstream}}),
            "MCP_PROXY_API_KEY": "s3cret",
        }
    )
    missing = httpx.post(worker.url("/everything/mcp"), json=INITIALIZE, headers=MCP_POST_HEADERS)
    assert missing.status_code == 401, missing.text
    wrong = httpx.post(
        worker.url("/everything/mcp"), json=INITIALIZE, headers={**MCP_POST_HEADERS, "Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401, wrong.text
    right = httpx.post(
        worker.url("/everything/mcp"),
        json=INITIALIZE,
        headers={**MCP_POST_HEADERS, "Authorization": "Bearer s3cret"},
        timeout=30,
    )
    assert right.status_code == 200, right.text
    assert httpx.get(worker.url("/ping")).status_code == 200


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_too_large(worker: Worker, framing: str) -> None:
    body = b"x" * (MAX_BODY_SIZE + 1)
    content = body if framing == "content-length" else iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
    response = httpx.post(worker.url("/everything/mcp"), content=content, headers=MCP_POST_HEADERS, timeout=60)
    assert response.status_code == 413, response.text


def test_wrangler_dev_serves_from_the_root_config(worker_build: Path, bridge_upstream: str, tmp_path: Path) -> None:
    port = free_port()
    config = config_text({"everything": {"type": "streamable-http", "url": bridge_upstream}})
    process = Process(
        [
            str(WRANGLER),
            "dev",
            "--local",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--persist-to",
            str(tmp_path / "persist"),
            "--var",
            f"MCP_PROXY_CONFIG:{config}",
            "--var",
            f"MCP_PROXY_SESSION_KEY:{SESSION_KEY}",
            "--show-interactive-dev-session=false",
        ],
        env={"WRANGLER_LOG_PATH": str(tmp_path / "logs"), "CI": "1"},
    )
    try:
        process.wait_for(r"Ready on http://", timeout=240)
        response = httpx.get(f"http://127.0.0.1:{port}/ping", timeout=30)
        assert (response.status_code, response.text) == (200, "pong"), process.output
    finally:
        process.stop()


def test_wrangler_deploy_dry_run(worker_build: Path, tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    result = subprocess.run(
        [str(WRANGLER), "deploy", "--dry-run", "--outdir", str(outdir)],
        cwd=REPO_ROOT,
        env={**os.environ, **OFFLINE_ENV, "WRANGLER_LOG_PATH": str(tmp_path / "logs"), "CI": "1"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "--dry-run: exiting now" in result.stdout + result.stderr, result.stdout
    assert any(path.suffix == ".wasm" for path in outdir.iterdir()), list(outdir.iterdir())


# --------------------------------------------------------------------------
# Sessions at the edge, MCP features across requests, the core's vectors
# --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_progress_resources_and_prompts_cross_the_edge(worker: Worker) -> None:
    progress: list[tuple[float, float | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total))

    async with streamable_http_client(worker.url("/everything/mcp")) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=30) as session:
            await session.initialize()
            result = await session.call_tool(
                "trigger-long-running-operation", {"duration": 1.5, "steps": 3}, progress_callback=on_progress
            )
            assert "Long running operation completed" in result.content[0].text
            listed = await session.list_resources()
            uri = "demo://resource/static/document/instructions.md"
            assert uri in [str(r.uri) for r in listed.resources]
            read_back = await session.read_resource(uri)
            assert read_back.contents[0].text.strip()
            prompts = await session.list_prompts()
            assert "args-prompt" in [p.name for p in prompts.prompts]
            prompt = await session.get_prompt("args-prompt", {"city": "Lyon", "state": "Rhône"})
            assert prompt.messages[0].content.text == "What's weather in Lyon, Rhône?"
    assert progress == [(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)], "every progress notification, in order"


def _initialize(worker: Worker, path: str, client: str) -> str:
    body = {**INITIALIZE, "params": {**INITIALIZE["params"], "clientInfo": {"name": client, "version": "1"}}}
    response = httpx.post(worker.url(path), json=body, headers=MCP_POST_HEADERS, timeout=30)
    assert response.status_code == 200, response.text
    session = response.headers["mcp-session-id"]
    headers = {**MCP_POST_HEADERS, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"}
    notified = httpx.post(
        worker.url(path), json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers, timeout=30
    )
    assert notified.status_code == 202, notified.text
    return session


def _rpc(worker: Worker, path: str, session: str, request: dict) -> httpx.Response:
    headers = {**MCP_POST_HEADERS, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"}
    return httpx.post(worker.url(path), json=request, headers=headers, timeout=30)


def _message(response: httpx.Response) -> dict:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return response.json()


def test_sessions_live_in_their_ids_not_in_the_runtime(start_worker, bridge_upstream: str, python_upstream: str) -> None:
    """Two clients begin on one workerd; it is stopped, and a new one serves the rest."""
    servers = {
        "everything": {"type": "streamable-http", "url": bridge_upstream},
        "py": {"type": "streamable-http", "url": python_upstream},
    }
    bindings = {"MCP_PROXY_CONFIG": config_text(servers)}
    first = start_worker(bindings)
    alice = _initialize(first, "/everything/mcp", "alice")
    bob = _initialize(first, "/py/mcp", "bob")
    first.process.stop()

    second = start_worker(bindings)
    echo = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "alice"}}}
    answer = _message(_rpc(second, "/everything/mcp", alice, echo))
    assert answer["result"]["content"][0]["text"] == "Echo: alice"
    echo["params"]["arguments"]["message"] = "bob"
    answer = _message(_rpc(second, "/py/mcp", bob, echo))
    assert "bob" in answer["result"]["content"][0]["text"]

    # A session belongs to its endpoint; a tampered or foreign id is unknown.
    assert _rpc(second, "/py/mcp", alice, echo).status_code == 404
    tampered = alice[:-6] + ("AAAAAA" if not alice.endswith("AAAAAA") else "BBBBBB")
    assert _rpc(second, "/everything/mcp", tampered, echo).status_code == 404
    other_key = start_worker(bindings, session_key=OTHER_SESSION_KEY)
    assert _rpc(other_key, "/everything/mcp", alice, echo).status_code == 404


def test_get_listens_and_delete_ends_the_upstream_session(start_worker) -> None:
    if not SERVER_EVERYTHING_JS.is_file():
        pytest.fail(f"server-everything not installed at {SERVER_EVERYTHING_JS}; run scripts/setup", pytrace=False)
    bridge = Process([str(PROXY_BIN), "--port", "0", "--", "node", str(SERVER_EVERYTHING_JS), "stdio"])
    try:
        host = bridge.wait_for(r"listening on http://([^\s/]+)").group(1)
        # The upstream's 2025 session is the subject: spoken to in the 2025 revision.
        upstream = {"type": "streamable-http", "url": f"http://{host}/mcp", "protocol": "2025-11-25"}
        worker = start_worker({"MCP_PROXY_CONFIG": config_text({"e": upstream})})
        session = _initialize(worker, "/e/mcp", "listener")
        headers = {"Accept": "text/event-stream", "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"}
        with httpx.stream("GET", worker.url("/e/mcp"), headers=headers, timeout=30) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
        deleted = httpx.delete(worker.url("/e/mcp"), headers={"Mcp-Session-Id": session}, timeout=30)
        assert deleted.status_code == 200, deleted.text
        bridge.wait_for(r"ended \(the client deleted it\)", timeout=15)
    finally:
        bridge.stop()


def test_the_worker_answers_every_core_vector(start_worker) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import core_vectors

    worker = start_worker(
        {
            "MCP_PROXY_CONFIG": json.dumps(core_vectors.CONFIG),
            "MCP_PROXY_API_KEY": core_vectors.API_KEY,
            "MCP_PROXY_CORS_ORIGIN": core_vectors.CORS_ORIGIN,
        }
    )
    assert core_vectors.run_all(worker.base_url) == {}


@pytest.mark.anyio
async def test_the_merged_endpoint_and_server_tokens_at_the_edge(start_worker, bridge_upstream: str, python_upstream: str) -> None:
    config = {
        "mcpProxy": {"options": {"authTokens": ["edge-token"]}},
        "mcpServers": {
            "everything": {"type": "streamable-http", "url": bridge_upstream, "options": {"toolFilter": {"mode": "block", "list": ["get-sum"]}}},
            "py": {"type": "streamable-http", "url": python_upstream, "options": {"authTokens": []}},
        },
    }
    worker = start_worker({"MCP_PROXY_CONFIG": json.dumps(config)})
    locked = {"mcpServers": {"everything": {"type": "streamable-http", "url": bridge_upstream, "options": {"authTokens": ["t"]}}}}
    locked_worker = start_worker({"MCP_PROXY_CONFIG": json.dumps(locked)})
    refused = httpx.post(locked_worker.url("/mcp"), json=INITIALIZE, headers=MCP_POST_HEADERS, timeout=30)
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    wrong = {**MCP_POST_HEADERS, "Authorization": "Bearer nope"}
    assert httpx.post(worker.url("/everything/mcp"), json=INITIALIZE, headers=wrong, timeout=30).status_code == 401
    open_server = httpx.post(worker.url("/py/mcp"), json=INITIALIZE, headers=MCP_POST_HEADERS, timeout=30)
    assert open_server.status_code == 200, "an empty token list means no auth for that server"

    import httpx2

    # Without a token the merged endpoint holds only the servers that need none.
    anonymous = httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, read=120.0))
    async with anonymous, streamable_http_client(worker.url("/mcp"), http_client=anonymous) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=30) as session:
            await session.initialize()
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert "py__echo" in names and not any(name.startswith("everything__") for name in names), names

    client = httpx2.AsyncClient(headers={"Authorization": "Bearer edge-token"}, timeout=httpx2.Timeout(30.0, read=120.0))
    async with client, streamable_http_client(worker.url("/mcp"), http_client=client) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=30) as session:
            await session.initialize()
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert {"everything__echo", "py__echo"} <= names
            assert "everything__get-sum" not in names, "the tool filter holds on the merged endpoint"
            result = await session.call_tool("py__echo", {"message": "merged at the edge"})
            assert "merged at the edge" in result.content[0].text
            result = await session.call_tool("everything__echo", {"message": "both"})
            assert result.content[0].text == "Echo: both"
            with pytest.raises(Exception, match="not available"):
                await session.call_tool("everything__get-sum", {"a": 1, "b": 2})


def test_a_get_stream_pipes_the_upstreams_own_messages(start_worker, python_upstream: str) -> None:
    # The upstream's own GET stream is the subject: spoken to in the 2025 revision.
    upstream = {"type": "streamable-http", "url": python_upstream, "protocol": "2025-11-25"}
    worker = start_worker({"MCP_PROXY_CONFIG": config_text({"py": upstream})})
    session = _initialize(worker, "/py/mcp", "listener")
    received: list[dict] = []
    arrived = threading.Event()
    opened = threading.Event()

    def listen() -> None:
        headers = {"Accept": "text/event-stream", "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"}
        with httpx.stream("GET", worker.url("/py/mcp"), headers=headers, timeout=30) as stream:
            assert stream.status_code == 200
            opened.set()
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    received.append(json.loads(line[5:]))
                    if received[-1].get("method") == "notifications/tools/list_changed":
                        arrived.set()
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(15), "the GET stream did not open"
    announce = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "announce", "arguments": {}}}
    # The Worker opens the upstream's stream as the client's opens; ask until it is there.
    for attempt in range(20):
        answer = _message(_rpc(worker, "/py/mcp", session, {**announce, "id": 10 + attempt}))
        assert answer["result"]["content"][0]["text"] == "announced"
        if arrived.wait(0.5):
            break
    assert arrived.is_set(), f"no list_changed on the GET stream: {received}"
    listener.join(5)


def test_a_slow_upstream_times_out_with_a_json_rpc_error(start_worker, python_upstream: str) -> None:
    """The core's deadline fires inside the Worker (its timer, not the client's)."""
    worker = start_worker(
        {
            "MCP_PROXY_CONFIG": config_text({"py": {"type": "streamable-http", "url": python_upstream}}),
            "MCP_PROXY_REQUEST_TIMEOUT_MS": "800",
        }
    )
    session = _initialize(worker, "/py/mcp", "patient")
    slow = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "countdown", "arguments": {"count": 4, "pause": 1.0}}}
    answer = _message(_rpc(worker, "/py/mcp", session, slow))
    assert answer["id"] == 5
    assert answer["error"]["code"] == -32001 and "timed out" in answer["error"]["message"], answer


# --------------------------------------------------------------------------
# Attacks at the edge, refused
# --------------------------------------------------------------------------


class _Recorder:
    """A loopback HTTP server that records every request and answers with `reply(handler)`."""

    def __init__(self, reply) -> None:
        import http.server

        self.requests: list[tuple[str, str, dict]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                recorder.requests.append((self.command, self.path, dict(self.headers)))
                reply(self)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_fetch_errors_reach_clients_without_the_upstream_url(start_worker) -> None:
    closed = free_port()
    url = f"http://127.0.0.1:{closed}/mcp?key=edge-secret-query"
    worker = start_worker({"MCP_PROXY_CONFIG": config_text({"down": {"type": "streamable-http", "url": url}})})
    response = httpx.post(worker.url("/down/mcp"), json=INITIALIZE, headers=MCP_POST_HEADERS, timeout=30)
    assert "edge-secret-query" not in response.text, response.text
    message = _message(response)
    assert message["error"]["code"] < 0, message
    assert "edge-secret-query" not in worker.log, "not in the log either"


def test_redirects_are_not_followed(start_worker) -> None:
    elsewhere = _Recorder(lambda h: (h.send_response(200), h.end_headers()))

    def redirect(handler) -> None:
        handler.send_response(307)
        handler.send_header("Location", f"http://127.0.0.1:{elsewhere.port}/steal")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    upstream = _Recorder(redirect)
    try:
        servers = {
            "r": {"type": "streamable-http", "url": f"http://127.0.0.1:{upstream.port}/mcp", "headers": {"Authorization": "Bearer upstream-secret"}}
        }
        worker = start_worker({"MCP_PROXY_CONFIG": config_text(servers)})
        response = httpx.post(worker.url("/r/mcp"), json=INITIALIZE, headers=MCP_POST_HEADERS, timeout=30)
        assert "error" in _message(response), response.text
        assert upstream.requests, "the upstream was asked"
        time.sleep(1)
        assert elsewhere.requests == [], "nothing, and no credential, followed the redirect"
    finally:
        upstream.close()
        elsewhere.close()


def test_a_sealed_session_opens_only_for_its_credential(start_worker, bridge_upstream: str) -> None:
    servers = {"e": {"type": "streamable-http", "url": bridge_upstream, "options": {"authTokens": ["alice", "bob"]}}}
    worker = start_worker({"MCP_PROXY_CONFIG": config_text(servers)})
    alice = {**MCP_POST_HEADERS, "Authorization": "Bearer alice"}
    response = httpx.post(worker.url("/e/mcp"), json=INITIALIZE, headers=alice, timeout=30)
    assert response.status_code == 200, response.text
    session = response.headers["mcp-session-id"]
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    for who, status in (("alice", 200), ("bob", 404)):
        headers = {**MCP_POST_HEADERS, "Authorization": f"Bearer {who}", "Mcp-Session-Id": session}
        reply = httpx.post(worker.url("/e/mcp"), json=ping, headers=headers, timeout=30)
        assert reply.status_code == status, (who, reply.text)


def test_an_initialize_too_large_to_seal_is_refused(start_worker, bridge_upstream: str) -> None:
    worker = start_worker({"MCP_PROXY_CONFIG": config_text({"e": {"type": "streamable-http", "url": bridge_upstream}})})
    big = {**INITIALIZE, "params": {**INITIALIZE["params"], "capabilities": {"experimental": {"x": {"pad": "y" * 20_000}}}}}
    response = httpx.post(worker.url("/e/mcp"), json=big, headers=MCP_POST_HEADERS, timeout=30)
    assert response.status_code == 400, response.text
    assert "too large" in response.json()["error"]["message"]
    assert "mcp-session-id" not in response.headers


# --------------------------------------------------------------------------
# The core's transcripts in the Worker build
# --------------------------------------------------------------------------

VECTORS_CRATE = "crates/worker-vectors"
TRANSCRIPTS = REPO_ROOT / "tests" / "vectors" / "transcripts"


@pytest.fixture(scope="session")
def vectors_build() -> Path:
    """The test-only transcript replayer (crates/worker-vectors), built like the Worker."""
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "build-worker")],
        cwd=REPO_ROOT,
        env={**os.environ, **OFFLINE_ENV, "MCP_PROXY_WORKER_CRATE": VECTORS_CRATE},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/build-worker ({VECTORS_CRATE}) failed:\n{result.stdout}\n{result.stderr}", pytrace=False)
    return REPO_ROOT / VECTORS_CRATE / "build"


def test_the_worker_build_replays_every_transcript_byte_for_byte(vectors_build: Path):
    """The third build of the core: compiled by worker-build (-Oz, LTO, wasm-bindgen) and run
    in workerd, it gives every recorded answer byte for byte, as the native core and the
    component do (crates/core/tests/vectors.rs, crates/host/src/vectors.rs)."""
    files = sorted(TRANSCRIPTS.glob("*.json"))
    assert len(files) >= 5, files
    process = Process(["node", str(SERVE_MJS), "--build", str(vectors_build)])
    try:
        origin = process.wait_for(r"worker listening on (http://\S+)").group(1)
        for path in files:
            reply = httpx.post(origin + "/", content=path.read_bytes(), timeout=60)
            assert (reply.status_code, reply.text) == (200, "ok"), f"{path.name}: {reply.text[:2000]}"
        tampered = json.loads(files[0].read_text())
        tampered["steps"][-1]["outputs"].append({"log": {"level": "info", "message": "not said"}})
        reply = httpx.post(origin + "/", content=json.dumps(tampered), timeout=60)
        assert reply.status_code == 409 and "not said" in reply.text, reply.text[:500]
    finally:
        process.stop()


# --------------------------------------------------------------------------
# 2026-07-28 clients at the edge
# --------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_a_2026_client_needs_no_session_at_the_edge(worker: Worker) -> None:
    """The official Python SDK pinned to 2026-07-28 against the Worker in front of server-everything
    (a 2025 upstream): every request self-contained, across isolates; progress streamed; the
    upstream's sampling request becomes an input round (the Worker keeps nothing, so the retry
    runs the call again and the question is answered from the sealed state)."""
    from mcp.client.client import Client
    import mcp_types as types

    sampled: list[str] = []

    async def on_sample(ctx, params):
        sampled.append(params.messages[0].content.text)
        return types.CreateMessageResult(role="assistant", model="edge-model", content=types.TextContent(type="text", text="Paris"))

    progress: list[float] = []

    async def on_progress(value, total, message):
        progress.append(value)

    async with Client(worker.url("/everything/mcp"), mode="2026-07-28", sampling_callback=on_sample, read_timeout_seconds=60) as client:
        assert client.protocol_version == "2026-07-28"
        # server-everything adds its sampling tools only once its client (here, a fresh
        # upstream session of the Worker's) is initialized, and announces it with a list
        # change a stateless request cannot hear: ask until they are there.
        for _ in range(20):
            tools = {tool.name for tool in (await client.list_tools()).tools}
            if "trigger-sampling-request" in tools:
                break
            await anyio.sleep(0.25)
        assert {"echo", "trigger-sampling-request"} <= tools, tools
        echoed = await client.call_tool("echo", {"message": "stateless at the edge"})
        assert echoed.content[0].text == "Echo: stateless at the edge"
        slow = await client.call_tool("trigger-long-running-operation", {"duration": 1, "steps": 3}, progress_callback=on_progress)
        assert not slow.is_error, slow
        assert progress, "progress crossed the edge"
        answer = await client.call_tool("trigger-sampling-request", {"prompt": "capital of France?", "maxTokens": 8})
        assert "Paris" in json.dumps(answer.model_dump()), answer
        assert sampled and "capital of France?" in sampled[0], sampled
        resources = (await client.list_resources()).resources
        assert resources, "resources listed"
        read = await client.read_resource(str(resources[0].uri))
        assert read.contents
        prompts = (await client.list_prompts()).prompts
        assert prompts
    for line in worker.process.output.splitlines():
        assert "panicked" not in line, worker.process.output


def test_a_2026_request_at_the_edge_is_checked_like_anywhere(worker: Worker) -> None:
    """The core's classification at the edge: a header mismatch is 400 -32020, an unknown method
    404 -32601, and a discover is answered without any session id in the response."""
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    headers = {**MCP_POST_HEADERS, "mcp-protocol-version": "2026-07-28"}
    body = {"jsonrpc": "2.0", "id": "x", "method": "server/discover", "params": {"_meta": meta}}
    discover = httpx.post(worker.url("/everything/mcp"), json=body, headers={**headers, "mcp-method": "server/discover"}, timeout=30)
    assert discover.status_code == 200, discover.text
    result = discover.json()["result"]
    assert result["supportedVersions"] == ["2026-07-28"] and result["resultType"] == "complete", result
    assert "mcp-session-id" not in discover.headers, discover.headers
    mismatch = httpx.post(worker.url("/everything/mcp"), json=body, headers={**headers, "mcp-method": "tools/list"}, timeout=30)
    assert (mismatch.status_code, mismatch.json()["error"]["code"], mismatch.json()["id"]) == (400, -32020, "x")
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping", "params": {"_meta": meta}}
    missing = httpx.post(worker.url("/everything/mcp"), json=ping, headers={**headers, "mcp-method": "ping"}, timeout=30)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, -32601)


@pytest.mark.anyio
async def test_a_2026_upstream_serves_2025_and_2026_clients_at_the_edge(worker: Worker) -> None:
    """``/modern/mcp`` is the native bridge, which serves 2026-07-28: the Worker asks it
    ``server/discover``, finds it modern, and speaks only 2026 to it — a 2025 client's session
    then needs no upstream session (its ``initialize`` is answered from discover), and a
    2026 client's requests go on as they are, each in a fresh isolate. Both see tools and
    progress; a 2026 client answers the server's sampling question (its retry carries the
    server's own state), while a 2025 client is told at once that only a 2026 client can
    answer mid-call questions through the edge (its answer would arrive in another request,
    with nothing kept to carry the server's state on)."""
    from mcp.client.client import Client
    import mcp_types as types

    for mode in ("legacy", "2026-07-28"):
        sampled: list[str] = []
        progress: list[float] = []

        async def on_sample(ctx, params):
            sampled.append(params.messages[0].content.text)
            return types.CreateMessageResult(role="assistant", model="edge", content=types.TextContent(type="text", text="Paris"))

        async def on_progress(value, total, message):
            progress.append(value)

        async with Client(worker.url("/modern/mcp"), mode=mode, sampling_callback=on_sample, read_timeout_seconds=60) as client:
            echoed = await client.call_tool("echo", {"message": f"{mode} on 2026"})
            assert echoed.content[0].text == f"Echo: {mode} on 2026", (mode, echoed)
            slow = await client.call_tool("trigger-long-running-operation", {"duration": 1, "steps": 2}, progress_callback=on_progress)
            assert not slow.is_error and progress, (mode, slow, progress)
            if mode == "legacy":
                with pytest.raises(Exception, match="only a 2026-07-28 client can answer"):
                    await client.call_tool("trigger-sampling-request", {"prompt": "capital?", "maxTokens": 8})
                assert not sampled, sampled
            else:
                answer = await client.call_tool("trigger-sampling-request", {"prompt": "capital?", "maxTokens": 8})
                assert "Paris" in json.dumps(answer.model_dump()) and sampled, (mode, answer, sampled)
    assert wait_until(lambda: "speaks 2026-07-28" in worker.log, timeout=10), worker.log[-2000:]


class _AtTheEdge:
    """The Worker, where the matrix of test_modern_upstream.py expects a proxy."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def url(self, path: str) -> str:
        return self.worker.url(path)


@pytest.mark.anyio
@pytest.mark.parametrize("client", ["py-2025", "ts-v1", "py-2026", "ts-2026"])
async def test_every_client_reaches_a_2026_only_server_through_the_edge(start_worker, client: str) -> None:
    """The matrix cell of test_modern_upstream.py with the Worker in front of a 2026-only
    Streamable HTTP server (@modelcontextprotocol/server 2.4): every client lists and calls
    tools, hears progress, lists and reads resources. A 2026 client also answers the server's
    questions (sampling, elicitation, roots, two at once: each retry in a fresh request,
    carrying the server's own state), hears a resource update and a tool list change on its
    listen, and gives up on a call. A 2025 client is told at once, for
    each question, that only a 2026-07-28 client can answer it through the edge; it hears the
    tool list change on its GET stream, and is told that resource subscriptions do not cross."""
    import test_modern_upstream as matrix

    remote = matrix.HttpUpstream("remote")
    try:
        worker = start_worker({"MCP_PROXY_CONFIG": config_text({"remote": {"type": "streamable-http", "url": remote.url}})})
        endpoint = matrix.Endpoint("worker", matrix.UPSTREAMS["remote"], _AtTheEdge(worker), "/remote/mcp", remote=remote)
        marker = matrix.tag()
        script = matrix.matrix_script(client, endpoint, marker)
        if client in matrix.CLIENTS_2025:
            # A 2025 client hears list changes on its GET stream (an upstream listen lives as
            # long as it); a resource subscription, made in another request, cannot join it.
            watched = endpoint.uri("static")
            listen = {**script["steps"][9], "want": {"tools": 1}, "timeoutMs": 8000}
            del listen["uri"]
            script["steps"][9:10] = [listen, {"op": "subscribe", "uri": watched, "timeoutMs": 10}]
        report = await matrix.run_client(client, script)
        matrix.assert_connected(report, client)
        assert "echo" in matrix.step_ok(report, 0)["names"]
        assert matrix.step_ok(report, 1)["texts"] == [f"echo: hello {marker}"]
        progressed = matrix.step_ok(report, 2)
        assert progressed["texts"] == ["progressed 3"] and matrix.progress_values(progressed), progressed
        assert endpoint.uri("static") in matrix.step_ok(report, 3)["uris"]
        assert matrix.step_ok(report, 4)["texts"] == [matrix.STATIC_TEXT]
        if client in matrix.CLIENTS_2025:
            for index in (5, 6, 7, 8):
                result = report["results"][index]
                told = json.dumps(result)
                assert "only a 2026-07-28 client can answer" in told, result
            heard = matrix.step_ok(report, 9)
            assert heard["counts"]["tools"] >= 1, f"no tool list change heard on the GET stream: {heard}"
            refused = json.dumps(report["results"][10])
            assert "do not cross the edge" in refused, refused
            return
        assert matrix.step_ok(report, 5)["texts"] == [f"sampled: Paris-{marker}"]
        assert matrix.step_ok(report, 6)["texts"] == [f"elicited: accept Alice-{marker}"]
        assert matrix.step_ok(report, 7)["texts"] == [f"roots: file:///roots/{marker}"]
        assert matrix.step_ok(report, 8)["texts"] == [f"both: Paris-{marker} Alice-{marker}"]
        subscribed = matrix.step_ok(report, 9)
        assert endpoint.uri("static") in subscribed["counts"]["updated"], f"no update heard: {subscribed}"
        assert subscribed["counts"]["tools"] >= 1, f"no tool list change heard: {subscribed}"
        # The client gives up on a call: it ends for the client. (Whether the server hears of it
        # depends on workerd telling the Worker that the client went away, which local
        # workerd does not do promptly; the core's side is tested natively.)
        cancelled = matrix.step_ok(report, 10)
        assert not cancelled["completed"], cancelled
    finally:
        remote.stop()
