"""MCP 2026-07-28 upstreams: every client reaches every server, whatever its revision (issue #12).

The proxy asks each upstream ``server/discover`` first (``--upstreamProtocol auto``, the
default) and caches the verdict: a server offering 2026-07-28 is spoken to in 2026 (stateless
requests with the ``_meta`` envelope), anything else is initialized as a 2025 server. A 2025
client of a 2026 server gets its ``initialize`` answered from the discover result, its
requests sent in the envelope, the server's ``input_required`` rounds turned into 2025 server
requests (sampling, elicitation, roots) and retried, and its subscriptions carried by one
upstream ``subscriptions/listen``; a 2026 client's requests go through as they are.

The servers (real processes, loopback only):

* ``only``: a 2026-only server on the official TypeScript SDK v2 (``serveStdio`` with
  ``legacy: "reject"``, ``modern_upstream_server.mjs``);
* ``dual``: the same with ``legacy: "serve"`` (it would take ``initialize`` too);
* ``legacy``: a 2025 server (``modern_server.py``, the Python SDK's lowlevel server, which
  answers the probe with an error);
* ``remote``: the 2026-only server over Streamable HTTP (``createMcpHandler``), a remote
  upstream of the aggregator.

All have the same tools with the same answers (echo, progress, log, sample, elicit, roots,
sample_and_elicit, slow, change_tools, touch), so one script serves every cell of the matrix
{2025 client: the Python client in legacy mode and the TypeScript v1 SDK; 2026 client: the
Python and TypeScript v2 clients pinned to 2026-07-28} x {only, dual, legacy, remote} x
{bridge, an aggregator's per-server endpoint, its merged endpoint}.

Beside the matrix: the verdict in ``GET /api/servers/{name}``; a forced era the server does
not speak fails clearly; odd answers to the probe; a server that asks forever; a 1 MiB
``requestState``; ``logging/setLevel`` and ``ping`` of a 2025 client; a two-round question;
the ``requestState`` of a 2026 server untouched on its way to a 2026 client.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import pytest
from clients import raw
from clients.legacy import run_py_legacy, run_ts_v1
from clients.sdk import run_py, run_ts
from conftest import (
    ProxyProcess,
    _StreamBuffer,
    initialize_request,
    open_raw_session,
    post_rpc,
    rpc_notification,
    rpc_request,
    running_proxy,
)
from modern_server import COMMAND as LEGACY_COMMAND
from odd_upstream_server import command as odd_command
from tiny_server import COMMAND as TINY_COMMAND

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
FIXTURE = Path(__file__).resolve().parent / "modern_upstream_server.mjs"
STATIC_TEXT = "the static fixture text"
ADMIN = {"Authorization": "Bearer admin-e2e"}
#: The clients of the matrix: two of each era.
CLIENTS = ("py-2025", "ts-v1", "py-2026", "ts-2026")
CLIENTS_2025 = ("py-2025", "ts-v1")


def fixture_command(legacy: str, scheme: str, *extra: str) -> tuple:
    return ("node", str(FIXTURE), "--legacy", legacy, "--scheme", scheme, *extra)


@dataclass(frozen=True)
class Upstream:
    """One of the servers, how it is run, and how it names its resources and logs."""

    name: str
    #: The stdio command (None: the remote one, reached over HTTP).
    command: tuple | None
    #: Its resources are ``<scheme>://static``, ``<scheme>://item/{id}``.
    scheme: str
    #: What starts its stderr lines (``<log> slow started <tag>``).
    log: str
    #: The era the proxy should find.
    era: str


UPSTREAMS = {
    "only": Upstream("only", fixture_command("reject", "only"), "only", "modern_upstream", MODERN),
    "dual": Upstream("dual", fixture_command("serve", "dual"), "dual", "modern_upstream", MODERN),
    "legacy": Upstream("legacy", LEGACY_COMMAND, "fixture", "modern_server", LEGACY),
    "remote": Upstream("remote", None, "remote", "modern_upstream", MODERN),
}


def server_entry(command: tuple, **extra) -> dict:
    return {"command": command[0], "args": list(command[1:]), **extra}


def write_config(directory: Path, config: dict) -> str:
    path = directory / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def tag() -> str:
    return uuid.uuid4().hex[:10]


# --------------------------------------------------------------------------
# servers and proxies
# --------------------------------------------------------------------------


class HttpUpstream:
    """``modern_upstream_server.mjs --http``: the 2026-only server over Streamable HTTP."""

    def __init__(self, scheme: str) -> None:
        self.proc = subprocess.Popen(
            fixture_command("reject", scheme, "--http"),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._stderr = _StreamBuffer(self.proc.stderr, "remote-upstream-stderr")
        match = self._stderr.wait_for(r"listening on (http://\S+)", 20)
        assert match, f"the HTTP upstream did not start:\n{self._stderr.text()}"
        self.url = match.group(1)

    @property
    def stderr(self) -> str:
        return self._stderr.text()

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        match = self._stderr.wait_for(pattern, timeout)
        assert match, f"pattern {pattern!r} not in the remote upstream's stderr after {timeout}s:\n{self.stderr}"
        return match

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._stderr.join(2)


def warm(proxy: ProxyProcess, *paths: str) -> ProxyProcess:
    """One 2026 ``server/discover`` per endpoint, so every upstream has been probed and started."""
    with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
        for path in paths or ("/mcp",):
            reply = raw.call(client, proxy.url(path), "server/discover")
            assert reply.status == 200, f"warming {path}: HTTP {reply.status} {reply.body}\n{proxy.stderr[-3000:]}"
    return proxy


@pytest.fixture(scope="module")
def remote_upstream() -> Iterator[HttpUpstream]:
    upstream = HttpUpstream("remote")
    try:
        yield upstream
    finally:
        upstream.stop()


def bridge_fixture(name: str):
    @pytest.fixture(scope="module")
    def bridge(proxy_bin: Path) -> Iterator[ProxyProcess]:
        with running_proxy(proxy_bin, command=UPSTREAMS[name].command) as proxy:
            yield warm(proxy)

    return bridge


bridge_only = bridge_fixture("only")
bridge_dual = bridge_fixture("dual")
bridge_legacy = bridge_fixture("legacy")


@pytest.fixture(scope="module")
def aggregator(proxy_bin: Path, tmp_path_factory: pytest.TempPathFactory, remote_upstream) -> Iterator[ProxyProcess]:
    """Every upstream in one file (``remote`` over Streamable HTTP), with the runtime API on."""
    servers = {name: server_entry(UPSTREAMS[name].command) for name in ("only", "dual", "legacy")}
    servers["remote"] = {"transportType": "streamable-http", "url": remote_upstream.url}
    config = write_config(tmp_path_factory.mktemp("aggregator"), {"mcpServers": servers})
    with running_proxy(proxy_bin, "--config", config, "--admin-token", "admin-e2e", command=()) as proxy:
        yield warm(proxy, *(f"/{name}/mcp" for name in servers), "/mcp")


@dataclass
class Endpoint:
    """One Streamable HTTP endpoint in front of one upstream."""

    kind: str
    upstream: Upstream
    proxy: ProxyProcess
    path: str
    prefix: str = ""
    remote: HttpUpstream | None = None
    #: Read by conftest's report hook: a failed test shows this proxy's stderr.
    started: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.proxy.url(self.path)

    def name(self, bare: str) -> str:
        return self.prefix + bare

    def uri(self, rest: str) -> str:
        return f"{self.upstream.scheme}://{rest}"

    def wait_for_upstream_log(self, pattern: str, timeout: float = 10.0) -> None:
        """Waits for a line of the upstream's stderr (the proxy logs its stdio children's)."""
        if self.remote is not None:
            self.remote.wait_for_log(pattern, timeout)
        else:
            self.proxy.wait_for_log(pattern, timeout)


def endpoint_of(request: pytest.FixtureRequest, kind: str, upstream: str) -> Endpoint:
    spec = UPSTREAMS[upstream]
    remote = request.getfixturevalue("remote_upstream") if upstream == "remote" else None
    if kind == "bridge":
        proxy = request.getfixturevalue(f"bridge_{upstream}")
        endpoint = Endpoint(kind, spec, proxy, "/mcp")
    elif kind == "aggregator-server":
        proxy = request.getfixturevalue("aggregator")
        endpoint = Endpoint(kind, spec, proxy, f"/{upstream}/mcp", remote=remote)
    else:
        proxy = request.getfixturevalue("aggregator")
        endpoint = Endpoint(kind, spec, proxy, "/mcp", prefix=f"{upstream}__", remote=remote)
    endpoint.started = [proxy]
    return endpoint


#: (upstream, endpoint kind): the bridge runs stdio servers only.
CELLS = [
    (upstream, kind)
    for upstream in ("only", "dual", "legacy", "remote")
    for kind in ("bridge", "aggregator-server", "aggregator-merged")
    if not (upstream == "remote" and kind == "bridge")
]


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
        yield client


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


async def run_client(client: str, script: dict) -> dict:
    """Runs ``script`` through one of the four clients of the matrix."""
    if client == "py-2025":
        return await run_py_legacy(script)
    if client == "ts-v1":
        return await anyio.to_thread.run_sync(run_ts_v1, script)
    pinned = {**script, "mode": "pin"}
    if client == "py-2026":
        return await run_py(pinned)
    return await anyio.to_thread.run_sync(run_ts, pinned)


def step_ok(report: dict, index: int) -> dict:
    result = report["results"][index]
    assert result["ok"], f"step {index} failed: {result['error']}\nreport: {json.dumps(report)[:3000]}"
    return result


def assert_connected(report: dict, client: str) -> None:
    assert report["connected"], f"{client} did not connect: {report.get('error')}\n{report.get('stderr', '')}"
    if client in CLIENTS_2025:
        assert report["version"] == LEGACY, report["version"]
    else:
        assert (report["era"], report["version"]) == ("modern", MODERN), report


def progress_values(call: dict) -> list:
    return [event["progress"] for event in call["progress"] if event.get("total") is not None]


# --------------------------------------------------------------------------
# the matrix
# --------------------------------------------------------------------------


def matrix_script(client: str, endpoint: Endpoint, marker: str) -> dict:
    """What one client does in one cell of the matrix."""
    name = endpoint.name
    # (A listed resource: a 2025 session of the merged endpoint routes a resource to the
    # server that listed it.)
    watched = endpoint.uri("static")
    changes = [
        {"op": "callTool", "name": name("touch"), "arguments": {"uri": watched}},
        {"op": "callTool", "name": name("change_tools")},
    ]
    if client in CLIENTS_2025:
        subscription = {"op": "subscribe", "uri": watched}
    else:
        subscription = {"op": "listen", "filter": {"toolsListChanged": True, "resourceSubscriptions": [watched]}}
    subscription.update({"then": changes, "want": {"tools": 1, "updated": [watched]}, "timeoutMs": 8000})
    return {
        "url": endpoint.url,
        "sampleText": f"Paris-{marker}",
        "elicitName": f"Alice-{marker}",
        "roots": [f"file:///roots/{marker}"],
        "steps": [
            {"op": "listTools"},
            {"op": "callTool", "name": name("echo"), "arguments": {"text": f"hello {marker}"}},
            {"op": "callTool", "name": name("progress"), "arguments": {"steps": 3, "delay": 0.05}, "progress": True},
            {"op": "listResources"},
            {"op": "readResource", "uri": endpoint.uri("static")},
            {"op": "callTool", "name": name("sample"), "arguments": {"prompt": "capital of France?"}},
            {"op": "callTool", "name": name("elicit")},
            {"op": "callTool", "name": name("roots")},
            {"op": "callTool", "name": name("sample_and_elicit")},
            subscription,
            {"op": "cancelAfterProgress", "name": name("slow"), "arguments": {"seconds": 30, "tag": marker}},
        ],
    }


#: (upstream, kind) -> {client: (report, marker)}: the four clients of a cell run at once (the
#: first test of a cell runs them; the matrix would take minutes one client at a time).
_CELL_REPORTS: dict[tuple[str, str], dict[str, tuple[dict, str]]] = {}


async def cell_report(endpoint: Endpoint, client: str) -> tuple[dict, str]:
    key = (endpoint.upstream.name, endpoint.kind)
    if key not in _CELL_REPORTS:
        found: dict[str, tuple[dict, str]] = {}

        async def run(who: str) -> None:
            marker = tag()
            found[who] = (await run_client(who, matrix_script(who, endpoint, marker)), marker)

        async with anyio.create_task_group() as group:
            for who in CLIENTS:
                group.start_soon(run, who)
        _CELL_REPORTS[key] = found
    return _CELL_REPORTS[key][client]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("upstream", "kind"), CELLS)
@pytest.mark.parametrize("client", CLIENTS)
async def test_every_client_reaches_every_upstream(client, upstream, kind, request):
    """Tools (list and call), progress, resources (list and read), questions (sampling,
    elicitation, roots, two at once: ``input_required`` rounds of a 2026 server, server
    requests of a 2025 one) answered by the client's own handlers, a subscription that hears
    a resource update and a tool list change (``resources/subscribe`` for a 2025 client,
    ``subscriptions/listen`` for a 2026 one), and a call the client cancels, which the server
    hears of. (The four clients of a cell run at the same time.)"""
    endpoint = endpoint_of(request, kind, upstream)
    name = endpoint.name
    report, marker = await cell_report(endpoint, client)
    assert_connected(report, client)

    tools = set(step_ok(report, 0)["names"])
    assert {name(tool) for tool in ("echo", "progress", "sample", "elicit", "slow", "touch")} <= tools, sorted(tools)
    assert step_ok(report, 1)["texts"] == [f"echo: hello {marker}"]
    progressed = step_ok(report, 2)
    assert progressed["texts"] == ["progressed 3"], progressed
    values = progress_values(progressed)
    # (Both SDKs may drop the last event when it shares a read with the result.)
    assert 2 <= len(values) <= 3 and values == sorted(set(values)), progressed["progress"]
    assert endpoint.uri("static") in step_ok(report, 3)["uris"]
    assert step_ok(report, 4)["texts"] == [STATIC_TEXT]

    assert step_ok(report, 5)["texts"] == [f"sampled: Paris-{marker}"]
    assert step_ok(report, 6)["texts"] == [f"elicited: accept Alice-{marker}"]
    assert step_ok(report, 7)["texts"] == [f"roots: file:///roots/{marker}"]
    assert step_ok(report, 8)["texts"] == [f"both: Paris-{marker} Alice-{marker}"]
    assert report["handled"] == {"sampling": 2, "elicitation": 2, "roots": 1}, report["handled"]

    subscribed = step_ok(report, 9)
    assert all(inner["ok"] for inner in subscribed["then"]), subscribed["then"]
    assert endpoint.uri("static") in subscribed["counts"]["updated"], f"no update heard: {subscribed}"
    assert subscribed["counts"]["tools"] >= 1, f"no tool list change heard: {subscribed}"

    cancelled = step_ok(report, 10)
    assert not cancelled["completed"] and cancelled["progressBeforeAbort"] >= 1, cancelled
    log = endpoint.upstream.log
    endpoint.wait_for_upstream_log(f"{log} slow started {marker}", timeout=5)
    endpoint.wait_for_upstream_log(f"{log} slow cancelled {marker}", timeout=10)


# --------------------------------------------------------------------------
# MRTR beyond one round, and untouched for 2026 clients
# --------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["bridge", "aggregator-merged"])
@pytest.mark.parametrize("client", CLIENTS)
async def test_a_question_in_two_rounds_is_one_call(client, kind, request):
    """A 2026 server that asks a name, then (with the state of the first round) a sample: a
    2025 client sees one ordinary call with two server requests; a 2026 client's SDK answers
    both rounds."""
    endpoint = endpoint_of(request, kind, "only")
    marker = tag()
    script = {
        "url": endpoint.url,
        "sampleText": f"S-{marker}",
        "elicitName": f"N-{marker}",
        "steps": [{"op": "callTool", "name": endpoint.name("two_rounds")}],
    }
    report = await run_client(client, script)
    assert_connected(report, client)
    assert step_ok(report, 0)["texts"] == [f"two rounds: N-{marker} S-{marker}"]
    assert report["handled"] == {"sampling": 1, "elicitation": 1, "roots": 0}, report["handled"]


@pytest.mark.parametrize("kind", ["bridge", "aggregator-server", "aggregator-merged"])
def test_a_2026_servers_rounds_reach_a_2026_client_as_they_are(kind, request, http):
    """``input_required`` from a 2026 server reaches a 2026 client as the server wrote it:
    the same input request and the ``requestState`` byte for byte; the retry carries both
    rounds' state back and the call completes."""
    endpoint = endpoint_of(request, kind, "only")
    params = {"name": endpoint.name("two_rounds"), "arguments": {}}
    caps = raw.ALL_CAPABILITIES
    first = raw.call(http, endpoint.url, "tools/call", params, capabilities=caps)
    assert first.status == 200, (first.status, first.body)
    assert first.result["resultType"] == "input_required", first.body
    assert first.result["requestState"] == "round-1", first.result
    assert first.result["inputRequests"]["name"]["method"] == "elicitation/create", first.result
    second = raw.retry(http, endpoint.url, "tools/call", params, first,
                       {"name": {"action": "accept", "content": {"name": "Ada"}}}, capabilities=caps)
    assert second.result["resultType"] == "input_required", second.body
    assert second.result["requestState"] == "round-2:Ada", second.result
    assert list(second.result["inputRequests"]) == ["sample"], second.result
    third = raw.retry(http, endpoint.url, "tools/call", params, second, {"sample": raw.sampling_answer("Rome")},
                      capabilities=caps)
    assert third.result["resultType"] == "complete", third.body
    assert third.result["content"][0]["text"] == "two rounds: Ada Rome"


# --------------------------------------------------------------------------
# a 2025 client's own methods
# --------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("upstream", ["only", "dual"])
@pytest.mark.parametrize("client", CLIENTS_2025)
async def test_set_level_chooses_the_log_level_sent_upstream(client, upstream, request):
    """``logging/setLevel warning`` from a 2025 client: the proxy sends that level in the
    envelope of its later requests, so the client hears the warning and the error of a call
    that logs at four levels, and nothing below."""
    endpoint = endpoint_of(request, "bridge", upstream)
    script = {
        "url": endpoint.url,
        "steps": [{"op": "setLevel", "level": "warning"}, {"op": "callTool", "name": "log"}],
    }
    report = await run_client(client, script)
    assert_connected(report, client)
    step_ok(report, 0)
    assert step_ok(report, 1)["texts"] == ["logged"]
    assert [entry["level"] for entry in report["logs"]] == ["warning", "error"], report["logs"]


@pytest.mark.parametrize("kind", ["bridge", "aggregator-server", "aggregator-merged"])
def test_a_2025_clients_requests_go_upstream_in_an_envelope_built_from_its_initialize(kind, request, http):
    """Each request of a 2025 session reaches the 2026 server with the envelope the session's
    ``initialize`` implies: revision 2026-07-28, the client's own ``clientInfo`` and
    capabilities, and no ``logLevel`` until ``logging/setLevel`` names one."""
    endpoint = endpoint_of(request, kind, "only")
    init = initialize_request()
    init["params"]["clientInfo"] = {"name": "envelope-e2e", "version": "7.1"}
    init["params"]["capabilities"] = {"sampling": {}, "elicitation": {}}
    reply = post_rpc(http, endpoint.url, init)
    assert reply.status == 200 and "result" in reply.body, (reply.status, reply.body)
    session = reply.session_id
    post_rpc(http, endpoint.url, rpc_notification("notifications/initialized"), session)

    def whoami() -> dict:
        call = post_rpc(http, endpoint.url, rpc_request("tools/call", {"name": endpoint.name("whoami")}), session)
        assert "result" in call.body, call.body
        return json.loads(call.body["result"]["content"][0]["text"])

    seen = whoami()
    assert seen["protocolVersion"] == MODERN, seen
    assert seen["clientInfo"] == {"name": "envelope-e2e", "version": "7.1"}, seen
    assert {"sampling", "elicitation"} <= set(seen["clientCapabilities"] or {}), seen
    # A 2025 server logs what it likes until the client sets a level; a 2026 server logs only
    # at the level a request names: until logging/setLevel, the proxy names every level.
    assert seen["logLevel"] == "debug", f"no logging/setLevel yet: every level, not {seen['logLevel']!r}"
    level = post_rpc(http, endpoint.url, rpc_request("logging/setLevel", {"level": "error"}), session)
    assert level.body.get("result") == {}, level.body
    assert whoami()["logLevel"] == "error"


@pytest.mark.parametrize("kind", ["bridge", "aggregator-server"])
def test_ping_and_initialize_of_a_2025_client_are_answered_by_the_proxy(kind, request, http):
    """A 2026-only server knows neither ``initialize`` nor ``ping``: the proxy answers the
    first from the server's discover result (capabilities, serverInfo, instructions, the
    client's revision) and the second itself; neither reaches the server."""
    endpoint = endpoint_of(request, kind, "only")
    request_init = initialize_request()
    reply = post_rpc(http, endpoint.url, request_init)
    assert reply.status == 200 and "result" in reply.body, (reply.status, reply.body)
    result = reply.body["result"]
    assert result["protocolVersion"] == LEGACY, result
    assert result["serverInfo"]["name"] == "modern-upstream-fixture", result
    assert result.get("instructions") == "the 2026 upstream fixture", result
    assert {"tools", "resources"} <= set(result["capabilities"]), result["capabilities"]
    session = reply.session_id
    assert session, reply.headers
    assert post_rpc(http, endpoint.url, rpc_notification("notifications/initialized"), session).status == 202
    ping = post_rpc(http, endpoint.url, rpc_request("ping", {}), session)
    assert ping.status == 200 and ping.body.get("result") == {}, (ping.status, ping.body)
    call = rpc_request("tools/call", {"name": "echo", "arguments": {"text": "x"}})
    echo = post_rpc(http, endpoint.url, call, session)
    assert echo.body["result"]["content"][0]["text"] == "echo: x", echo.body
    assert "modern_upstream got initialize" not in endpoint.proxy.stderr
    assert "modern_upstream got ping" not in endpoint.proxy.stderr


# --------------------------------------------------------------------------
# era detection
# --------------------------------------------------------------------------


def server_protocol(http: httpx.Client, proxy: ProxyProcess, name: str, timeout: float = 10.0) -> str | None:
    """The ``protocol`` of ``GET /api/servers/{name}``, once it names a revision."""
    deadline = time.monotonic() + timeout
    while True:
        response = http.get(proxy.url(f"/api/servers/{name}"), headers=ADMIN)
        assert response.status_code == 200, (response.status_code, response.text)
        protocol = response.json().get("protocol")
        if protocol in (MODERN, LEGACY) or time.monotonic() > deadline:
            return protocol
        time.sleep(0.1)


def test_the_era_of_each_upstream_is_detected_and_shown(aggregator, http):
    """In ``auto`` the proxy asks every upstream ``server/discover``: the 2026-only, the
    dual-era and the remote 2026 server are spoken to in 2026 (the dual one never sees an
    ``initialize``), the 2025 server is initialized; ``GET /api/servers/{name}`` shows it."""
    for name, spec in UPSTREAMS.items():
        assert server_protocol(http, aggregator, name) == spec.era, (name, http.get(
            aggregator.url(f"/api/servers/{name}"), headers=ADMIN).text)
    listed = http.get(aggregator.url("/api/servers"), headers=ADMIN)
    assert listed.status_code == 200, listed.text
    # A 2025 session on the dual-era server: still 2026 upstream.
    with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
        session = open_raw_session(client, aggregator.url("/dual/mcp"))
        echo = post_rpc(client, aggregator.url("/dual/mcp"),
                        rpc_request("tools/call", {"name": "echo", "arguments": {"text": "dual"}}), session)
        assert echo.body["result"]["content"][0]["text"] == "echo: dual", echo.body
    assert "modern_upstream got initialize" not in aggregator.stderr


#: What a clear error about eras names (or the code a server uses to refuse a revision).
ERA_WORDS = re.compile(r"protocol|revision|version|2025|2026|initiali[sz]e|discover", re.IGNORECASE)


def assert_clear_error(body, who: str) -> None:
    """``body`` is a JSON-RPC error that says what went wrong with the eras."""
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), f"{who}: no JSON-RPC error: {body!r}"
    error = body["error"]
    assert isinstance(error.get("code"), int) and error.get("message"), f"{who}: {error!r}"
    assert error["code"] == -32022 or ERA_WORDS.search(error["message"]), (
        f"{who}: the error does not say that the server does not speak the revision: {error!r}"
    )


def forced_proxy(proxy_bin: Path, directory: Path, how: str, era: str, command: tuple):
    """A proxy that must speak ``era`` to ``command`` (chosen by flag, per server, or inherited)."""
    if how == "flag":
        flag = "legacy" if era == LEGACY else "modern"
        return running_proxy(proxy_bin, "--upstreamProtocol", flag, command=command), "/mcp"
    if how == "server":
        config = {"mcpServers": {"forced": server_entry(command, protocol=era)}}
    else:
        config = {"mcpProxy": {"options": {"protocol": era}}, "mcpServers": {"forced": server_entry(command)}}
    return running_proxy(proxy_bin, "--config", write_config(directory, config), command=()), "/forced/mcp"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["flag", "server", "inherited"])
@pytest.mark.parametrize(
    ("era", "server"),
    [(LEGACY, "only"), (MODERN, "tiny")],
    ids=["legacy-to-a-2026-only-server", "modern-to-a-2025-server"],
)
def test_a_forced_era_the_server_does_not_speak_fails_clearly(era, server, how, proxy_bin, tmp_path, http):
    """``--upstreamProtocol legacy`` (or ``"protocol": "2025-11-25"`` in the file, per server
    or inherited from ``mcpProxy.options``) in front of a 2026-only server, and ``modern`` in
    front of a 2025 one: no detection, so the server refuses what it gets; a 2025 client's
    ``initialize`` and a 2026 client's call each get a JSON-RPC error at once, never a hang
    or an empty reply."""
    command = UPSTREAMS["only"].command if server == "only" else TINY_COMMAND
    context, path = forced_proxy(proxy_bin, tmp_path, how, era, command)
    with context as proxy, httpx.Client(timeout=httpx.Timeout(20.0)) as client:
        started = time.monotonic()
        init = initialize_request()
        reply = post_rpc(client, proxy.url(path), init)
        if reply.body and "result" in reply.body:
            # An initialize answered (e.g. from a forced 2026 discover): then the first call fails.
            session = reply.session_id
            reply = post_rpc(client, proxy.url(path),
                             rpc_request("tools/call", {"name": "echo", "arguments": {"message": "x"}}), session)
        assert_clear_error(reply.body, "the 2025 client")
        modern = raw.call(client, proxy.url(path), "tools/call", {"name": "echo", "arguments": {"text": "x"}})
        assert_clear_error(modern.body, "the 2026 client")
        assert time.monotonic() - started < 15, "the errors took too long"


# --------------------------------------------------------------------------
# odd upstreams
# --------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["garbage-result", "garbage-shape", "not-json", "silent", "method-not-found"])
def test_an_odd_answer_to_the_probe_means_a_2025_server(mode, proxy_bin, http):
    """A ``server/discover`` answered with a string, a result of the wrong shape, a line that
    is no JSON, nothing at all (a few seconds), or -32601: the server is taken for a 2025 one
    and initialized, and both a 2025 and a 2026 client are served."""
    with running_proxy(proxy_bin, command=odd_command(mode)) as proxy:
        started = time.monotonic()
        session = open_raw_session(http, proxy.mcp_url)
        echo = post_rpc(http, proxy.mcp_url, rpc_request("tools/call", {"name": "echo", "arguments": {"text": "old"}}),
                        session)
        assert echo.body.get("result", {}).get("content", [{}])[0].get("text") == "echo: old", echo.body
        modern = raw.call(http, proxy.mcp_url, "tools/call", {"name": "echo", "arguments": {"text": "new"}})
        assert modern.status == 200 and modern.result["content"][0]["text"] == "echo: new", (modern.status, modern.body)
        assert time.monotonic() - started < 15
        proxy.wait_for_log("odd_upstream got initialize", timeout=5)


@pytest.mark.timeout(60)
def test_a_server_that_lies_about_its_era_gets_clear_errors(proxy_bin, http):
    """A server that offers 2026-07-28 in discover but refuses every enveloped request: each
    client's call gets a JSON-RPC error (the server's), at once."""
    with running_proxy(proxy_bin, command=odd_command("liar")) as proxy:
        started = time.monotonic()
        reply = post_rpc(http, proxy.mcp_url, initialize_request())
        if reply.body and "result" in reply.body:
            session = reply.session_id
            post_rpc(http, proxy.mcp_url, rpc_notification("notifications/initialized"), session)
            reply = post_rpc(http, proxy.mcp_url,
                             rpc_request("tools/call", {"name": "echo", "arguments": {"text": "x"}}), session)
        assert isinstance(reply.body, dict) and "error" in reply.body, (reply.status, reply.body)
        modern = raw.call(http, proxy.mcp_url, "tools/call", {"name": "echo", "arguments": {"text": "x"}})
        assert isinstance(modern.body, dict) and "error" in modern.body, (modern.status, modern.body)
        assert time.monotonic() - started < 15


@pytest.mark.timeout(90)
@pytest.mark.parametrize("client", CLIENTS)
async def test_a_server_that_asks_forever_is_given_up_after_ten_rounds(client, request):
    """``input_required`` every round: a 2025 client is asked at most ten times (the proxy
    gives up then with an error); a 2026 client's SDK gives up after its own ten rounds.
    Either way the call fails and the server is not asked again."""
    endpoint = endpoint_of(request, "bridge", "only")
    started = time.monotonic()
    asked_before = endpoint.proxy.stderr.count("modern_upstream ask_forever round")
    script = {"url": endpoint.url, "steps": [{"op": "callTool", "name": "ask_forever"}]}
    report = await run_client(client, script)
    assert_connected(report, client)
    outcome = report["results"][0]
    failed = not outcome["ok"] or outcome.get("isError")
    assert failed, f"a call that never gets its answer succeeded: {outcome}"
    assert outcome["ok"] or outcome["error"]["message"], outcome
    assert 1 <= report["handled"]["elicitation"] <= 10, report["handled"]
    await anyio.sleep(0.5)  # (anything still on its way to the server)
    asked = endpoint.proxy.stderr.count("modern_upstream ask_forever round") - asked_before
    assert 2 <= asked <= 11, f"the server was asked {asked} times"
    assert time.monotonic() - started < 60


@pytest.mark.timeout(60)
@pytest.mark.parametrize("client", CLIENTS)
async def test_a_one_mebibyte_request_state_is_carried_or_refused_clearly(client, request):
    """A server whose ``requestState`` is 1 MiB: the call either completes (the state came
    back byte for byte) or fails with a clear error; it never hangs."""
    endpoint = endpoint_of(request, "bridge", "only")
    script = {"url": endpoint.url, "steps": [{"op": "callTool", "name": "huge_state"}]}
    started = time.monotonic()
    report = await run_client(client, script)
    assert_connected(report, client)
    outcome = report["results"][0]
    if outcome["ok"] and not outcome.get("isError"):
        assert outcome["texts"] == [f"huge state came back: {1 << 20} bytes"], outcome
    else:
        message = outcome["error"]["message"] if not outcome["ok"] else " ".join(outcome["texts"])
        assert message, outcome
    assert time.monotonic() - started < 30
