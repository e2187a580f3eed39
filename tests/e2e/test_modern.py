"""MCP 2026-07-28 clients through the proxy, end to end, with the official SDK clients.

The proxy serves 2026-07-28 clients (stateless requests, each with its ``_meta`` envelope) on
its Streamable HTTP endpoints beside 2025 sessions, by bridging them to 2025-era children it
initializes itself. These tests drive it with the official clients, each in the three ways
it can connect:

* the TypeScript v2 client (``@modelcontextprotocol/client@2.4.0``, ``clients/ts_client.mjs``):
  ``versionNegotiation`` pinned to 2026-07-28, ``auto``, and the default (legacy);
* the Python client (``mcp==2.3.0``, ``mcp.client.client.Client``): ``mode="2026-07-28"``,
  ``"auto"`` and ``"legacy"``;

against the bridge (with sessions and ``--stateless``), an aggregator's per-server endpoint
and its merged endpoint, in front of real servers: server-everything (tools, progress,
resources, prompts, sampling, elicitation) and ``modern_server.py`` (the Python SDK's
lowlevel server: list changes and resource updates on demand, a slow tool that says when it
is cancelled, several questions at once, roots).

Where an SDK would hide a problem, the wire is read directly (``clients/raw.py``): both SDKs
drop a progress notification that shares a read with the result, so progress is counted on
the raw SSE stream; progress after an ``input_required`` round and the retry's own token;
the exact shapes of ``server/discover`` and cacheable results; logs only at the level a
request asked for. Also: ``--modernPoolMax``, ``--no-modern`` (a pinned client fails
clearly, an ``auto`` one falls back to 2025), a client whose first request is
``server/discover`` or ``tools/call``, and a server that cannot start.

Proxies are shared per module (they are stateless towards 2026 clients) and start warm (see
``warm``); each test uses its own tags and URIs, so tests stay independent. Hostile input is
in ``test_modern_attacks.py``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import pytest
from clients import raw
from clients.sdk import run_py, run_ts
from conftest import EVERYTHING_COMMAND, ProxyProcess, read_cmdline, running_proxy
from modern_server import COMMAND as MODERN_COMMAND
from tiny_server import COMMAND as TINY_COMMAND

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
SDKS = ("ts", "python")
MODES = ("pin", "auto", "legacy")
ENDPOINT_KINDS = ("bridge", "bridge-stateless", "aggregator-server", "aggregator-merged")
ARCHITECTURE_URI = "demo://resource/static/document/architecture.md"


# --------------------------------------------------------------------------
# proxies and endpoints
# --------------------------------------------------------------------------


def server_entry(command: tuple) -> dict:
    return {"command": command[0], "args": list(command[1:])}


def write_config(directory: Path, servers: dict) -> str:
    path = directory / "config.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    return str(path)


def warm(proxy: ProxyProcess, *paths: str) -> ProxyProcess:
    """Asks each endpoint ``server/discover`` first, so each server's pool has its child.

    (A ``tools/call`` as the very first request of a proxy is covered by its own test,
    ``test_a_tool_call_as_the_first_request_is_served``; the shared proxies start warm so
    that no other test depends on that case.)
    """
    with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
        for path in paths or ("/mcp",):
            reply = raw.call(client, proxy.url(path), "server/discover")
            assert reply.status == 200, f"warming {path}: HTTP {reply.status} {reply.body}"
    return proxy


@pytest.fixture(scope="module")
def everything_bridge(proxy_bin: Path) -> Iterator[ProxyProcess]:
    with running_proxy(proxy_bin) as proxy:
        yield warm(proxy)


@pytest.fixture(scope="module")
def everything_bridge_stateless(proxy_bin: Path) -> Iterator[ProxyProcess]:
    with running_proxy(proxy_bin, "--stateless") as proxy:
        yield warm(proxy)


@pytest.fixture(scope="module")
def fixture_bridge(proxy_bin: Path) -> Iterator[ProxyProcess]:
    with running_proxy(proxy_bin, command=MODERN_COMMAND) as proxy:
        yield warm(proxy)


@pytest.fixture(scope="module")
def fixture_bridge_stateless(proxy_bin: Path) -> Iterator[ProxyProcess]:
    with running_proxy(proxy_bin, "--stateless", command=MODERN_COMMAND) as proxy:
        yield warm(proxy)


@pytest.fixture(scope="module")
def aggregator(proxy_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """``everything`` (server-everything) and ``fixture`` (modern_server.py) from one file."""
    config = write_config(
        tmp_path_factory.mktemp("aggregator"),
        {"everything": server_entry(EVERYTHING_COMMAND), "fixture": server_entry(MODERN_COMMAND)},
    )
    with running_proxy(proxy_bin, "--config", config, command=()) as proxy:
        yield warm(proxy, "/everything/mcp", "/fixture/mcp", "/mcp")


@dataclass
class Endpoint:
    """One Streamable HTTP endpoint of a proxy, and how its tools and prompts are named."""

    kind: str
    proxy: ProxyProcess
    path: str
    #: The merged endpoint prefixes tool and prompt names with ``<server>__``.
    prefix: str = ""
    #: Read by conftest's report hook: a failed test shows this proxy's stderr.
    started: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.proxy.url(self.path)

    def name(self, bare: str) -> str:
        return self.prefix + bare


def endpoint_of(request: pytest.FixtureRequest, kind: str, server: str) -> Endpoint:
    """The ``kind`` endpoint in front of ``server`` ("everything" or "fixture")."""
    if kind == "bridge":
        proxy = request.getfixturevalue(f"{server}_bridge")
        endpoint = Endpoint(kind, proxy, "/mcp")
    elif kind == "bridge-stateless":
        proxy = request.getfixturevalue(f"{server}_bridge_stateless")
        endpoint = Endpoint(kind, proxy, "/mcp")
    elif kind == "aggregator-server":
        proxy = request.getfixturevalue("aggregator")
        endpoint = Endpoint(kind, proxy, f"/{server}/mcp")
    else:
        proxy = request.getfixturevalue("aggregator")
        endpoint = Endpoint(kind, proxy, "/mcp", prefix=f"{server}__")
    endpoint.started = [proxy]
    return endpoint


@pytest.fixture(params=ENDPOINT_KINDS)
def everything_endpoint(request: pytest.FixtureRequest) -> Endpoint:
    return endpoint_of(request, request.param, "everything")


@pytest.fixture(params=ENDPOINT_KINDS)
def fixture_endpoint(request: pytest.FixtureRequest) -> Endpoint:
    return endpoint_of(request, request.param, "fixture")


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
        yield client


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


async def run_sdk(sdk: str, script: dict) -> dict:
    """Runs ``script`` through the TypeScript (a subprocess) or the Python client."""
    if sdk == "ts":
        return await anyio.to_thread.run_sync(run_ts, script)
    return await run_py(script)


def step_ok(report: dict, index: int) -> dict:
    result = report["results"][index]
    assert result["ok"], f"step {index} failed: {result['error']}\nreport: {json.dumps(report)[:3000]}"
    return result


def assert_era(report: dict, mode: str) -> None:
    """The client connected, and negotiation picked the era its mode asks for."""
    assert report["connected"], f"the client did not connect: {report.get('error')}\n{report.get('stderr', '')}"
    if mode == "legacy":
        assert (report["era"], report["version"]) == ("legacy", LEGACY), report
    else:
        assert (report["era"], report["version"]) == ("modern", MODERN), report


def stateless_2025(endpoint: Endpoint, mode: str) -> bool:
    """A 2025 client of ``--stateless``: no server request can reach it (by design; a 2026
    client of the same proxy is asked through ``input_required`` rounds instead)."""
    return endpoint.kind == "bridge-stateless" and mode == "legacy"


def tag() -> str:
    return uuid.uuid4().hex[:10]


# --------------------------------------------------------------------------
# the SDK matrix: server-everything
# --------------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sdk", SDKS)
async def test_tools_progress_resources_prompts_sampling_and_elicitation(sdk, mode, everything_endpoint):
    """Every everyday feature of server-everything, through each SDK in each mode, on each
    kind of endpoint; sampling and elicitation are answered by the client's own handlers (an
    ``input_required`` round at 2026-07-28, a server request in 2025)."""
    endpoint = everything_endpoint
    name = endpoint.name
    marker = tag()
    script = {
        "url": endpoint.url,
        "mode": mode,
        # No roots: server-everything asks a new client for its roots 350 ms after initialize,
        # unprompted; at 2026 that question would land in whichever call its child serves then
        # (an extra input round). Roots are covered with modern_server.py below.
        "capabilities": {"sampling": {}, "elicitation": {}},
        "sampleText": f"Paris-{marker}",
        "elicitName": f"Alice-{marker}",
        "steps": [
            {"op": "listTools"},
            {"op": "callTool", "name": name("echo"), "arguments": {"message": f"hello {marker}"}},
            {
                "op": "callTool",
                "name": name("trigger-long-running-operation"),
                "arguments": {"duration": 0.6, "steps": 3},
                "progress": True,
            },
            {"op": "listResources"},
            {"op": "readResource", "uri": ARCHITECTURE_URI},
            {"op": "listPrompts"},
            {"op": "getPrompt", "name": name("simple-prompt")},
            {"op": "callTool", "name": name("trigger-sampling-request"), "arguments": {"prompt": "capital of France?"}},
            {"op": "callTool", "name": name("trigger-elicitation-request"), "arguments": {}},
        ],
    }
    report = await run_sdk(sdk, script)
    assert_era(report, mode)
    if report.get("server") is not None:  # the Python client pinned to 2026 never asks
        expected = "mcp-proxy" if endpoint.kind == "aggregator-merged" else "mcp-servers/everything"
        assert report["server"]["name"] == expected, report["server"]

    tools = set(step_ok(report, 0)["names"])
    wanted = {"echo", "trigger-long-running-operation", "trigger-sampling-request", "trigger-elicitation-request"}
    assert {name(tool) for tool in wanted} <= tools, sorted(tools)

    assert step_ok(report, 1)["texts"] == [f"Echo: hello {marker}"]

    progress_call = step_ok(report, 2)
    assert "Long running operation completed" in progress_call["texts"][0]
    events = [event for event in progress_call["progress"] if event.get("total") is not None]  # not the SDK's own
    values = [event["progress"] for event in events]
    # The SDKs may drop the last event when it shares a read with the result; the raw test
    # below counts every event on the wire.
    assert 2 <= len(values) <= 3 and values == sorted(set(values)), progress_call["progress"]
    assert all(event["total"] == 3 for event in events), progress_call["progress"]

    assert ARCHITECTURE_URI in step_ok(report, 3)["uris"]
    assert "Architecture" in step_ok(report, 4)["texts"][0]
    assert name("simple-prompt") in step_ok(report, 5)["names"]
    assert step_ok(report, 6)["texts"] == ["This is a simple prompt without arguments."]

    sampled, elicited = step_ok(report, 7), step_ok(report, 8)
    if stateless_2025(endpoint, mode):
        assert sampled["isError"] and "stateless" in sampled["texts"][0], sampled
        assert elicited["isError"] and "stateless" in elicited["texts"][0], elicited
        assert report["handled"] == {"sampling": 0, "elicitation": 0, "roots": 0}, report["handled"]
        return
    assert not sampled["isError"] and f"Paris-{marker}" in sampled["texts"][0], sampled
    assert not elicited["isError"] and f"Name: Alice-{marker}" in "".join(elicited["texts"]), elicited
    assert report["handled"]["sampling"] == 1 and report["handled"]["elicitation"] == 1, report["handled"]


# --------------------------------------------------------------------------
# the SDK matrix: listen, several questions at once, roots, cancellation (modern_server.py)
# --------------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sdk", SDKS)
async def test_listen_questions_roots_and_cancellation(sdk, mode, fixture_endpoint):
    """``subscriptions/listen`` hears a list change and an update of the resource it
    subscribed to; a call whose server asks two questions at once and one that asks for roots
    succeed; a call the client abandons (the stream closed, or in 2025 the client's
    ``notifications/cancelled``) is cancelled at the child, which says so on stderr."""
    endpoint = fixture_endpoint
    name = endpoint.name
    marker = tag()
    uri = f"fixture://item/{marker}"
    script = {
        "url": endpoint.url,
        "mode": mode,
        "sampleText": f"sample-{marker}",
        "elicitName": f"name-{marker}",
        "roots": [f"file:///roots/{marker}"],
        "steps": [
            {"op": "listTools"},
            {"op": "callTool", "name": name("sample_and_elicit")},
            {"op": "callTool", "name": name("roots")},
            {
                "op": "listen",
                "filter": {"toolsListChanged": True, "promptsListChanged": True, "resourceSubscriptions": [uri]},
                "then": [
                    {"op": "callTool", "name": name("change_prompts")},
                    {"op": "callTool", "name": name("touch"), "arguments": {"uri": uri}},
                ],
                "want": {"prompts": 1, "updated": [uri]},
                "timeoutMs": 10000,
            },
            {"op": "cancelAfterProgress", "name": name("slow"), "arguments": {"seconds": 60, "tag": marker}},
        ],
    }
    report = await run_sdk(sdk, script)
    assert_era(report, mode)
    assert name("slow") in step_ok(report, 0)["names"]

    both, roots = step_ok(report, 1), step_ok(report, 2)
    if stateless_2025(endpoint, mode):
        assert both["isError"] and "stateless" in both["texts"][0], both
        assert roots["isError"] and "stateless" in roots["texts"][0], roots
        assert report["handled"] == {"sampling": 0, "elicitation": 0, "roots": 0}, report["handled"]
    else:
        assert both["texts"] == [f"both: sample-{marker} name-{marker}"] and not both["isError"], both
        assert roots["texts"] == [f"roots: file:///roots/{marker}"]
        handled = dict(report["handled"])
        if endpoint.kind == "aggregator-merged" and mode == "legacy":
            # The merged 2025 session also runs a server-everything child of its own, which
            # asks its new client for roots unprompted.
            assert handled.pop("roots") in (1, 2), report["handled"]
            handled["roots"] = 1
        assert handled == {"sampling": 1, "elicitation": 1, "roots": 1}, report["handled"]

    listen = report["results"][3]
    if mode == "legacy":
        assert not listen["ok"], "subscriptions/listen needs a 2026-07-28 connection"
        assert "2026-07-28" in listen["error"]["message"], listen["error"]
    else:
        assert listen["ok"], listen["error"]
        assert listen["honored"] == {
            "toolsListChanged": True,
            "promptsListChanged": True,
            "resourceSubscriptions": [uri],
        }, listen["honored"]
        assert all(inner["ok"] for inner in listen["then"]), listen["then"]
        assert listen["counts"]["prompts"] >= 1, f"no prompt list change heard: {listen}"
        assert uri in listen["counts"]["updated"], f"no update of {uri} heard: {listen}"

    cancelled = step_ok(report, 4)
    assert not cancelled["completed"] and cancelled["progressBeforeAbort"] >= 1, cancelled
    endpoint.proxy.wait_for_log(f"modern_server slow started {marker}", timeout=5)
    if not stateless_2025(endpoint, mode):
        # (A 2025 request served without a session cannot be named by a later
        # notifications/cancelled, and in 2025 a closed stream is no cancellation.)
        endpoint.proxy.wait_for_log(f"modern_server slow cancelled {marker}", timeout=10)


# --------------------------------------------------------------------------
# on the wire
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ENDPOINT_KINDS)
def test_every_progress_event_reaches_the_wire(kind, request, http):
    """Four progress events of server-everything, each on the request's own SSE stream with
    the client's token, in order, then the result: counted on the raw stream."""
    endpoint = endpoint_of(request, kind, "everything")
    token = f"progress-{tag()}"
    reply = raw.call(
        http,
        endpoint.url,
        "tools/call",
        {"name": endpoint.name("trigger-long-running-operation"), "arguments": {"duration": 0.4, "steps": 4}},
        meta={"progressToken": token},
    )
    assert reply.status == 200 and reply.content_type.startswith("text/event-stream"), (reply.status, reply.headers)
    assert reply.headers.get("x-accel-buffering") == "no", reply.headers
    progress = reply.notifications("notifications/progress")
    assert [event["params"]["progress"] for event in progress] == [1, 2, 3, 4], reply.messages
    assert {event["params"]["progressToken"] for event in progress} == {token}, "the client's own token comes back"
    assert raw.methods(reply.messages) == ["notifications/progress"] * 4 + ["result"], raw.methods(reply.messages)
    assert reply.result["resultType"] == "complete"


@pytest.mark.parametrize("kind", ["bridge", "aggregator-server", "aggregator-merged"])
def test_discover_and_result_shapes(kind, request, http):
    """``server/discover`` comes from the child's initialize; results carry ``resultType``, and
    exactly the cacheable ones carry ``ttlMs``/``cacheScope``; every one names its server."""
    endpoint = endpoint_of(request, kind, "everything")
    discover = raw.call(http, endpoint.url, "server/discover", request_id="discover-1")
    assert discover.status == 200 and discover.body["id"] == "discover-1"
    result = discover.result
    assert result["supportedVersions"] == [MODERN]
    assert (result["resultType"], result["ttlMs"], result["cacheScope"]) == ("complete", 0, "private")
    info = result["_meta"]["io.modelcontextprotocol/serverInfo"]
    expected = "mcp-proxy" if kind == "aggregator-merged" else "mcp-servers/everything"
    assert info["name"] == expected and info["version"], info
    assert "serverInfo" not in result, "serverInfo is no body field in 2026"
    assert {"tools", "prompts", "resources"} <= set(result["capabilities"]), result["capabilities"]
    cacheable = [
        ("tools/list", {}),
        ("prompts/list", {}),
        ("resources/list", {}),
        ("resources/templates/list", {}),
        ("resources/read", {"uri": ARCHITECTURE_URI}),
    ]
    for method, params in cacheable:
        reply = raw.call(http, endpoint.url, method, params)
        assert reply.status == 200, (method, reply.status, reply.body)
        shaped = reply.result
        assert shaped["resultType"] == "complete", (method, shaped)
        assert isinstance(shaped["ttlMs"], int) and shaped["ttlMs"] >= 0, (method, shaped.get("ttlMs"))
        assert shaped["cacheScope"] in ("public", "private"), (method, shaped.get("cacheScope"))
    for method, params in [
        ("tools/call", {"name": endpoint.name("echo"), "arguments": {"message": "x"}}),
        ("prompts/get", {"name": endpoint.name("simple-prompt")}),
    ]:
        shaped = raw.call(http, endpoint.url, method, params).result
        assert shaped["resultType"] == "complete", (method, shaped)
        assert "ttlMs" not in shaped and "cacheScope" not in shaped, f"{method} is not cacheable: {shaped}"
        assert shaped["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mcp-servers/everything"


def test_progress_after_an_input_round_goes_to_the_retry_under_its_own_token(fixture_bridge, http):
    """A call reports progress, asks its client something, then reports more. The retry is a
    request of its own: the progress after the round comes on the retry's stream under the
    retry's ``progressToken``; a retry that asked for no progress hears none."""
    url = fixture_bridge.mcp_url
    caps = {"elicitation": {}}
    params = {"name": "progress_question", "arguments": {}}
    for retry_token in ("second", None):
        first = raw.call(http, url, "tools/call", params, capabilities=caps, meta={"progressToken": "first"})
        assert first.result["resultType"] == "input_required", first.body
        assert [m["params"]["progressToken"] for m in first.notifications("notifications/progress")] == ["first"]
        (key,) = first.result["inputRequests"]
        answers = {key: {"action": "accept", "content": {"name": "Ada"}}}
        retry_params = {**params, "inputResponses": answers, "requestState": first.result["requestState"]}
        meta = {"progressToken": retry_token} if retry_token else {}
        second = raw.call(http, url, "tools/call", retry_params, capabilities=caps, meta=meta)
        assert second.result["content"][0]["text"] == "progress_question: Ada", second.body
        progress = second.notifications("notifications/progress")
        if retry_token is None:
            assert progress == [], f"the retry asked for no progress, yet got {progress}"
        else:
            assert [(m["params"]["progressToken"], m["params"]["progress"]) for m in progress] == [
                ("second", 2),
                ("second", 3),
            ], progress


@pytest.mark.parametrize("sdk", SDKS)
async def test_sdks_hear_progress_around_an_input_round(sdk, fixture_bridge):
    """Progress before and after a question reaches both SDKs: each gives its retry its own
    progress token (the TypeScript client 2.4.0 carries the call's ``onprogress`` onto every
    retry leg), and the proxy sends what the child reports after the question to the retry's
    token, not the first request's."""
    script = {
        "url": fixture_bridge.mcp_url,
        "mode": "pin",
        "elicitName": "Grace",
        "steps": [{"op": "callTool", "name": "progress_question", "progress": True}],
    }
    report = await run_sdk(sdk, script)
    assert_era(report, "pin")
    call = step_ok(report, 0)
    assert call["texts"] == ["progress_question: Grace"], call
    values = [event["progress"] for event in call["progress"] if event.get("total") is not None]
    assert values == [1, 2, 3], f"progress around the question: {call['progress']}"


def test_logs_reach_a_request_only_at_the_level_it_asked_for(fixture_bridge, http):
    """Without ``_meta["io.modelcontextprotocol/logLevel"]`` a request hears no log message;
    with ``warning`` it hears exactly the warning and the error, on its own stream."""
    url = fixture_bridge.mcp_url
    quiet = raw.call(http, url, "tools/call", {"name": "log"})
    assert quiet.status == 200 and quiet.result["content"][0]["text"] == "logged"
    assert quiet.notifications("notifications/message") == [], quiet.messages
    loud = raw.call(http, url, "tools/call", {"name": "log"}, meta={"io.modelcontextprotocol/logLevel": "warning"})
    assert loud.status == 200 and loud.content_type.startswith("text/event-stream"), loud.headers
    levels = [m["params"]["level"] for m in loud.notifications("notifications/message")]
    assert levels == ["warning", "error"], loud.messages
    assert loud.result["content"][0]["text"] == "logged"


async def test_the_python_clients_log_level_is_honoured(fixture_bridge):
    """The Python client's ``log_level`` stamps every request: at ``info`` it hears info,
    warning and error, never debug."""
    script = {
        "url": fixture_bridge.mcp_url,
        "mode": "pin",
        "logLevel": "info",
        "steps": [{"op": "callTool", "name": "log"}],
    }
    report = await run_py(script)
    assert_era(report, "pin")
    assert step_ok(report, 0)["texts"] == ["logged"]
    assert [entry["level"] for entry in report["logs"]] == ["info", "warning", "error"], report["logs"]


@pytest.mark.timeout(60)
def test_the_pool_runs_at_most_modern_pool_max_children(proxy_bin):
    """``--modernPoolMax 2``: six calls at once that each hold a child for a while are all
    served, two at a time, and the server never runs more than twice."""
    with running_proxy(proxy_bin, "--modernPoolMax", "2", command=MODERN_COMMAND) as proxy:
        warm(proxy)
        marker = tag()
        answers: dict[int, str] = {}

        def call(n: int) -> None:
            with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
                params = {"name": "slow", "arguments": {"seconds": 0.6, "tag": f"{marker}-{n}"}}
                answers[n] = raw.call(client, proxy.mcp_url, "tools/call", params).result["content"][0]["text"]

        def children() -> int:
            return sum("modern_server.py" in read_cmdline(pid) for pid in proxy.descendants())

        workers = [threading.Thread(target=call, args=(n,)) for n in range(6)]
        for worker in workers:
            worker.start()
        peak = 0
        while any(worker.is_alive() for worker in workers):
            peak = max(peak, children())
            time.sleep(0.05)
        for worker in workers:
            worker.join()
        assert answers == {n: f"slept {marker}-{n}" for n in range(6)}, answers
        assert 1 <= peak <= 2, f"{peak} children at once"


# --------------------------------------------------------------------------
# --no-modern
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def no_modern_proxy(proxy_bin: Path) -> Iterator[ProxyProcess]:
    with running_proxy(proxy_bin, "--no-modern", command=MODERN_COMMAND) as proxy:
        yield proxy  # (nothing to warm: 2026 requests are refused)


@pytest.mark.timeout(90)
async def test_without_modern_a_pinned_client_fails_clearly_and_auto_falls_back(no_modern_proxy):
    url = no_modern_proxy.mcp_url
    steps = [{"op": "callTool", "name": "sample", "arguments": {"prompt": "?"}}]
    pinned_ts = await run_sdk("ts", {"url": url, "mode": "pin", "steps": steps})
    assert not pinned_ts["connected"], pinned_ts
    assert pinned_ts["error"]["code"] == "ERA_NEGOTIATION_FAILED", pinned_ts["error"]
    # The Python client pinned to 2026 sends no probe: its first request is refused.
    pinned_py = await run_sdk("python", {"url": url, "mode": "pin", "steps": steps})
    refused = pinned_py["results"][0] if pinned_py["connected"] else pinned_py
    assert "ok" not in refused or not refused["ok"], pinned_py
    assert MODERN in refused["error"]["message"], refused["error"]
    for sdk in SDKS:
        fallback = await run_sdk(sdk, {"url": url, "mode": "auto", "sampleText": "fell back", "steps": steps})
        assert_era(fallback, "legacy")
        assert step_ok(fallback, 0)["texts"] == ["sampled: fell back"], fallback
        assert fallback["handled"]["sampling"] == 1


def test_without_modern_a_2026_request_is_an_unknown_revision(no_modern_proxy, http):
    reply = raw.call(http, no_modern_proxy.mcp_url, "server/discover")
    assert reply.status == 400, (reply.status, reply.body)
    assert MODERN in reply.error["message"]


# --------------------------------------------------------------------------
# discover first, without a session
# --------------------------------------------------------------------------


def start_kind(proxy_bin: Path, kind: str, directory: Path, *extra: str, command: tuple = TINY_COMMAND):
    """A fresh proxy of ``kind`` in front of ``command``; returns (running context, path)."""
    if kind in ("bridge", "bridge-stateless"):
        args = ["--stateless"] if kind == "bridge-stateless" else []
        return running_proxy(proxy_bin, *args, *extra, command=command), "/mcp"
    config = write_config(directory, {"tiny": server_entry(command)})
    path = "/tiny/mcp" if kind == "aggregator-server" else "/mcp"
    return running_proxy(proxy_bin, "--config", config, *extra, command=()), path


def http_answer(http: httpx.Client, method: str, url: str, headers: dict) -> tuple[int, str]:
    response = http.request(method, url, headers=headers)
    return response.status_code, response.text


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ENDPOINT_KINDS)
def test_discover_first_is_answered_at_once_and_get_and_delete_keep_their_2025_answers(
    kind, proxy_bin, tmp_path, http
):
    """A client whose very first request is ``server/discover`` (no session, no child yet) gets
    its answer, never a 5xx or a hang; GET and DELETE without a session answer exactly what a
    proxy without 2026 support answers."""
    (tmp_path / "modern").mkdir()
    (tmp_path / "legacy").mkdir()
    modern_context, path = start_kind(proxy_bin, kind, tmp_path / "modern")
    legacy_context, _ = start_kind(proxy_bin, kind, tmp_path / "legacy", "--no-modern")
    with modern_context as modern, legacy_context as legacy:
        started = time.monotonic()
        discover = raw.call(http, modern.url(path), "server/discover", request_id=1)
        assert discover.status == 200, (discover.status, discover.body)
        assert discover.body["id"] == 1 and discover.result["supportedVersions"] == [MODERN]
        assert time.monotonic() - started < 15
        for method, headers in [
            ("GET", {"Accept": "text/event-stream"}),
            ("DELETE", {}),
            ("GET", {"Accept": "text/event-stream", "MCP-Protocol-Version": LEGACY}),
            ("GET", {"Accept": "text/event-stream", "MCP-Protocol-Version": MODERN}),
            ("DELETE", {"MCP-Protocol-Version": MODERN}),
        ]:
            assert http_answer(http, method, modern.url(path), headers) == http_answer(
                http, method, legacy.url(path), headers
            ), f"{method} {headers}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ENDPOINT_KINDS)
def test_a_tool_call_as_the_first_request_is_served(kind, proxy_bin, tmp_path, http):
    """A 2026 client needs no handshake, so its very first request may well be a
    ``tools/call`` (the Python client pinned to 2026 sends no probe): the proxy must start
    its server for it and answer, as it does for a first ``server/discover``."""
    context, path = start_kind(proxy_bin, kind, tmp_path)
    name = "tiny__echo" if kind == "aggregator-merged" else "echo"
    with context as proxy:
        try:
            with httpx.Client(timeout=httpx.Timeout(10.0)) as impatient:
                reply = raw.call(impatient, proxy.url(path), "tools/call",
                                 {"name": name, "arguments": {"message": "first"}}, request_id="first")
        except httpx.TimeoutException:
            reply = None
        assert reply is not None, "a first tools/call got no answer within 10 s"
        assert reply.status == 200, (reply.status, reply.body)
        assert reply.body["id"] == "first" and reply.result["content"][0]["text"] == "Echo: first", reply.body


@pytest.mark.timeout(60)
async def test_a_python_client_pinned_to_2026_can_call_a_tool_first(proxy_bin):
    """The same through the SDK: ``Client(url, mode="2026-07-28")`` adopts the revision with
    no probe, so ``call_tool`` is the first thing the proxy hears."""
    with running_proxy(proxy_bin, command=TINY_COMMAND) as proxy:
        call = {"op": "callTool", "name": "echo", "arguments": {"message": "first"}, "timeoutMs": 10000}
        script = {"url": proxy.mcp_url, "mode": "pin", "steps": [call]}
        report = await run_py(script, timeout=40)
        assert_era(report, "pin")
        assert step_ok(report, 0)["texts"] == ["Echo: first"]


@pytest.mark.timeout(60)
def test_discover_is_answered_promptly_when_the_server_cannot_start(proxy_bin, http):
    """A server that exits at once: a 2025 ``initialize`` is answered at once with an error;
    ``server/discover`` must be answered promptly too (a JSON-RPC error naming the request),
    not held until ``--connectionTimeout`` runs out."""
    failing = (sys.executable, "-c", "import sys; sys.exit(3)")
    with running_proxy(proxy_bin, command=failing) as proxy:
        init = http.post(
            proxy.mcp_url,
            json={
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": LEGACY,
                    "capabilities": {},
                    "clientInfo": {"name": "e2e", "version": "0"},
                },
            },
            headers={"Accept": "application/json, text/event-stream"},
            timeout=10,
        )
        assert init.json()["error"], init.text
        started = time.monotonic()
        try:
            with httpx.Client(timeout=httpx.Timeout(10.0)) as impatient:
                reply = raw.call(impatient, proxy.mcp_url, "server/discover", request_id="d-1")
        except httpx.TimeoutException:
            reply = None
        assert reply is not None, "server/discover got no answer within 10 s (the 2025 initialize was answered at once)"
        assert time.monotonic() - started < 10
        assert reply.body["id"] == "d-1" and "error" in reply.body, (reply.status, reply.body)
