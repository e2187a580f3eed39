"""Bad and hostile 2026-07-28 input over raw HTTP: each test sends it and checks the exact
refusal (HTTP status, JSON-RPC code, the request's id echoed), then that the proxy still
serves.

1. the header ladder: every header problem, an unsupported revision, a missing or broken
   envelope, ``initialize`` under a 2026 header, batches, methods 2026 does not have;
2. ``input_required`` states (``requestState``): tampered, moved to another tool, method,
   endpoint, proxy or credential, expired; answers to questions never asked, malformed
   answers; questions the client cannot take; a flood of retries of one state;
3. the request stream: closing it cancels the call at the child; ``subscriptions/listen``
   acknowledges first, hears only what it asked for, never progress or logs, and gives its
   subscriptions back when it closes.

The children are ``tiny_server.py`` (fast, enough for the header checks) and
``modern_server.py`` (the Python SDK's lowlevel server, which asks its client things and
says on stderr when it is cancelled or (un)subscribed).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from clients import raw
from conftest import ProxyProcess, running_proxy, wait_until
from modern_server import COMMAND as MODERN_COMMAND
from tiny_server import COMMAND as TINY_COMMAND

MODERN = "2026-07-28"
CAPS = {"sampling": {}, "elicitation": {}, "roots": {}}
INVALID_STATE = {"reason": "invalid_request_state"}


# --------------------------------------------------------------------------
# proxies
# --------------------------------------------------------------------------


def warm(proxy: ProxyProcess, *paths: str, headers: dict | None = None) -> ProxyProcess:
    """Asks each endpoint ``server/discover`` first, so each server's pool has its child (a
    ``tools/call`` as a proxy's very first request has its own test in test_modern.py)."""
    with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
        for path in paths or ("/mcp",):
            reply = raw.call(client, proxy.url(path), "server/discover", headers=headers)
            assert reply.status == 200, f"warming {path}: HTTP {reply.status} {reply.body}"
    return proxy


@pytest.fixture(scope="module")
def tiny_bridge(proxy_bin: Path) -> Iterator[ProxyProcess]:
    with running_proxy(proxy_bin, command=TINY_COMMAND) as proxy:
        yield warm(proxy)


@pytest.fixture(scope="module")
def fixture_bridge(proxy_bin: Path) -> Iterator[ProxyProcess]:
    with running_proxy(proxy_bin, command=MODERN_COMMAND) as proxy:
        yield warm(proxy)


@pytest.fixture(scope="module")
def other_fixture_bridge(proxy_bin: Path) -> Iterator[ProxyProcess]:
    """Another proxy in front of the same server: its states are sealed with another key."""
    with running_proxy(proxy_bin, "--stateless", command=MODERN_COMMAND) as proxy:
        yield warm(proxy)


@pytest.fixture(scope="module")
def token_aggregator(proxy_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """modern_server.py as ``fixture``, open to two tokens; tiny_server.py as ``tiny``."""
    directory = tmp_path_factory.mktemp("tokens")
    config = {
        "mcpServers": {
            "fixture": {
                "command": MODERN_COMMAND[0],
                "args": list(MODERN_COMMAND[1:]),
                "options": {"authTokens": ["token-a", "token-b"]},
            },
            "tiny": {
                "command": TINY_COMMAND[0],
                "args": list(TINY_COMMAND[1:]),
                "options": {"authTokens": ["token-a"]},
            },
        }
    }
    path = directory / "config.json"
    path.write_text(json.dumps(config))
    with running_proxy(proxy_bin, "--config", str(path), command=()) as proxy:
        yield warm(proxy, "/fixture/mcp", "/tiny/mcp", "/mcp", headers={"Authorization": "Bearer token-a"})


@pytest.fixture(scope="module")
def short_timeout_bridge(proxy_bin: Path) -> Iterator[ProxyProcess]:
    """``--requestTimeout 2000``: ``input_required`` states expire with it."""
    with running_proxy(proxy_bin, "--requestTimeout", "2000", command=MODERN_COMMAND) as proxy:
        yield warm(proxy)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
        yield client


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def b64(text: str) -> str:
    return "=?base64?" + base64.b64encode(text.encode()).decode() + "?="


def assert_refused(reply: raw.Reply, status: int, code: int, request_id: Any) -> dict:
    """``reply`` is HTTP ``status`` with JSON-RPC error ``code`` for ``request_id``; returns the error."""
    assert reply.status == status, f"HTTP {reply.status} (wanted {status}): {reply.body!r}"
    assert isinstance(reply.body, dict) and reply.body.get("jsonrpc") == "2.0", reply.body
    assert reply.body.get("id") == request_id, f"id {reply.body.get('id')!r} not echoed as {request_id!r}"
    error = reply.error
    assert error["code"] == code, f"code {error['code']} (wanted {code}): {error}"
    assert isinstance(error.get("message"), str) and error["message"], error
    return error


def ask(http: httpx.Client, url: str, tool: str, capabilities: dict | None = None, **kwargs: Any) -> raw.Reply:
    """Calls ``tool``, which asks its client something: the reply is an ``input_required`` round."""
    params = {"name": tool, "arguments": {}}
    reply = raw.call(http, url, "tools/call", params, capabilities=capabilities or CAPS, **kwargs)
    assert reply.status == 200 and reply.result["resultType"] == "input_required", (reply.status, reply.body)
    assert isinstance(reply.result.get("requestState"), str) and reply.result["requestState"], reply.result
    return reply


def only_key(reply: raw.Reply) -> str:
    (key,) = reply.result["inputRequests"]
    return key


def answer_sample(
    http: httpx.Client, url: str, first: raw.Reply, text: str, *, state: Any = None, **kwargs: Any
) -> raw.Reply:
    """Retries ``sample`` with the answer ``text`` (and ``state`` instead of the round's own)."""
    params = {"name": "sample", "arguments": {}}
    answers = {only_key(first): raw.sampling_answer(text)}
    return raw.retry(http, url, "tools/call", params, first, answers, capabilities=CAPS, state=state, **kwargs)


def still_serves(http: httpx.Client, url: str, headers: dict | None = None) -> None:
    reply = raw.call(http, url, "server/discover", request_id="alive", headers=headers)
    assert reply.status == 200 and reply.result["supportedVersions"] == [MODERN], (reply.status, reply.body)


# --------------------------------------------------------------------------
# 1. the header ladder
# --------------------------------------------------------------------------

ECHO = {"name": "echo", "arguments": {"message": "hi"}}

PV = "io.modelcontextprotocol/protocolVersion"
CC = "io.modelcontextprotocol/clientCapabilities"
#: (case, method, params, header changes (None drops one), body changes, status, code)
LADDER = [
    ("missing Mcp-Method", "tools/list", {}, {"Mcp-Method": None}, {}, 400, -32020),
    ("mismatched Mcp-Method", "tools/list", {}, {"Mcp-Method": "prompts/list"}, {}, 400, -32020),
    ("Mcp-Method in another case", "tools/list", {}, {"Mcp-Method": "TOOLS/LIST"}, {}, 400, -32020),
    ("missing Mcp-Name", "tools/call", ECHO, {"Mcp-Name": None}, {}, 400, -32020),
    ("mismatched Mcp-Name", "tools/call", ECHO, {"Mcp-Name": "sleep"}, {}, 400, -32020),
    ("Mcp-Name with bad base64", "tools/call", ECHO, {"Mcp-Name": "=?base64?!!!?="}, {}, 400, -32020),
    ("Mcp-Name with unpadded base64", "tools/call", ECHO, {"Mcp-Name": "=?base64?ZWNobw?="}, {}, 400, -32020),
    ("Mcp-Name base64 of another name", "tools/call", ECHO, {"Mcp-Name": b64("sleep")}, {}, 400, -32020),
    ("Mcp-Name of another URI", "resources/read", {"uri": "file:///a"}, {"Mcp-Name": "file:///b"}, {}, 400, -32020),
    ("Mcp-Name of another prompt", "prompts/get", {"name": "p"}, {"Mcp-Name": "q"}, {}, 400, -32020),
    ("missing MCP-Protocol-Version", "tools/list", {}, {"MCP-Protocol-Version": None}, {}, 400, -32020),
    ("version header vs body", "tools/list", {}, {"MCP-Protocol-Version": "2025-11-25"}, {}, 400, -32020),
    ("unknown body version, 2026 header", "tools/list", {}, {}, {"set": (PV, "2099-01-01")}, 400, -32020),
    ("unsupported version", "tools/list", {}, {"MCP-Protocol-Version": "2099-01-01"}, {"set": (PV, "2099-01-01")},
     400, -32022),
    ("2026 header without an envelope", "tools/list", {}, {}, {"drop_meta": True}, 400, -32602),
    ("envelope without clientCapabilities", "tools/list", {}, {}, {"drop": CC}, 400, -32602),
    ("envelope without protocolVersion", "tools/list", {}, {}, {"drop": PV}, 400, -32602),
    ("capabilities that are no object", "tools/list", {}, {}, {"set": (CC, "all")}, 400, -32602),
    ("protocolVersion that is no string", "tools/list", {}, {}, {"set": (PV, 2026)}, 400, -32602),
    ("unknown method", "foo/bar", {}, {}, {}, 404, -32601),
    ("ping is gone in 2026", "ping", {}, {}, {}, 404, -32601),
    ("resources/subscribe is gone in 2026", "resources/subscribe", {"uri": "file:///a"}, {}, {}, 404, -32601),
    ("logging/setLevel is gone in 2026", "logging/setLevel", {"level": "info"}, {}, {}, 404, -32601),
]


@pytest.mark.parametrize(
    "case, method, params, header_changes, body_changes, status, code", LADDER, ids=[row[0] for row in LADDER]
)
def test_the_header_ladder(tiny_bridge, http, case, method, params, header_changes, body_changes, status, code):
    request_id = f"ladder-{uuid.uuid4().hex[:8]}"
    body = raw.request_body(method, params, request_id=request_id)
    meta = body["params"]["_meta"]
    if "drop" in body_changes:
        del meta[body_changes["drop"]]
    if "set" in body_changes:
        key, value = body_changes["set"]
        meta[key] = value
    if body_changes.get("drop_meta"):
        del body["params"]["_meta"]
    headers = raw.headers_for(body)
    for name, value in header_changes.items():
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    reply = raw.post(http, tiny_bridge.mcp_url, body, headers)
    error = assert_refused(reply, status, code, request_id)
    if code == -32022:
        assert error["data"]["supported"] == [MODERN], error
        assert error["data"]["requested"] == "2099-01-01", error
    if case == "2026 header without an envelope":
        assert error["data"]["envelope"]["missing"] == ["_meta"], error


def test_well_formed_requests_pass_the_ladder(tiny_bridge, http):
    """The controls of the ladder: the same requests, well formed, are served (``Mcp-Name``
    compared after decoding, header names in any case, optional whitespace trimmed)."""
    url = tiny_bridge.mcp_url
    assert raw.call(http, url, "tools/list").result["tools"]
    assert raw.call(http, url, "tools/call", ECHO).result["content"][0]["text"] == "Echo: hi"
    for name_header in (b64("echo"),):
        reply = raw.call(http, url, "tools/call", ECHO, headers={"Mcp-Name": name_header})
        assert reply.status == 200 and reply.result["content"][0]["text"] == "Echo: hi", (name_header, reply.body)
    body = raw.request_body("tools/list", request_id=7)
    lower = {name.lower(): value for name, value in raw.headers_for(body).items()}
    upper = {name.upper(): value for name, value in raw.headers_for(body).items()}
    for headers in (lower, upper):
        reply = raw.post(http, url, body, headers)
        assert reply.status == 200 and reply.body["id"] == 7, (headers, reply.body)


def test_a_numeric_id_is_echoed_as_a_number(tiny_bridge, http):
    body = raw.request_body("tools/list", request_id=42)
    headers = {**raw.headers_for(body), "Mcp-Method": "prompts/list"}
    assert_refused(raw.post(http, tiny_bridge.mcp_url, body, headers), 400, -32020, 42)


def test_initialize_under_a_2026_header_is_refused(tiny_bridge, http):
    body = {
        "jsonrpc": "2.0",
        "id": "init-1",
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}},
    }
    headers = {**raw.headers_for({"method": "initialize"}), "MCP-Protocol-Version": MODERN}
    assert_refused(raw.post(http, tiny_bridge.mcp_url, body, headers), 400, -32020, "init-1")
    # Without the 2026 header it is the 2025 handshake, as before.
    headers.pop("MCP-Protocol-Version")
    reply = raw.post(http, tiny_bridge.mcp_url, body, headers)
    assert reply.status == 200 and reply.result["protocolVersion"] == "2025-11-25", reply.body
    assert reply.headers.get("mcp-session-id"), "a 2025 session"


@pytest.mark.parametrize("legacy_too", [False, True])
def test_a_batch_with_an_envelope_is_refused(tiny_bridge, http, legacy_too):
    modern = raw.request_body("tools/list", request_id="b-1")
    batch = [modern]
    if legacy_too:
        batch.append({"jsonrpc": "2.0", "id": "b-2", "method": "tools/list"})
    reply = raw.post(http, tiny_bridge.mcp_url, batch, raw.headers_for(modern))
    assert_refused(reply, 400, -32600, None)


def test_a_2026_notification_is_accepted_without_an_answer(tiny_bridge, http):
    body = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1, "_meta": raw.envelope()}}
    headers = raw.headers_for(body)
    with http.stream("POST", tiny_bridge.mcp_url, content=json.dumps(body), headers=headers) as response:
        assert response.status_code == 202 and response.read() == b""


# --------------------------------------------------------------------------
# 2. requestState
# --------------------------------------------------------------------------


def tamper(state: str) -> list[tuple[str, Any]]:
    middle = len(state) // 2
    flipped = state[:middle] + ("A" if state[middle] != "A" else "B") + state[middle + 1 :]
    return [
        ("one character changed", flipped),
        ("a suffix", state + "-TAMPERED"),
        ("cut short", state[:-10]),
        ("empty", ""),
        ("not a string", 12345),
        ("an object", {"p": 1}),
        ("forged in the same format", state.split(".")[0] + "." + base64.urlsafe_b64encode(b"x" * 80).decode()),
    ]


def test_a_tampered_state_is_refused_and_the_real_one_still_works(fixture_bridge, http):
    url = fixture_bridge.mcp_url
    first = ask(http, url, "sample")
    state = first.result["requestState"]
    for n, (case, bad) in enumerate(tamper(state)):
        reply = answer_sample(http, url, first, "nope", state=bad, request_id=f"tampered-{n}")
        error = assert_refused(reply, 400, -32602, f"tampered-{n}")
        assert error.get("data") == INVALID_STATE, (case, error)
    done = answer_sample(http, url, first, "the real answer")
    assert done.result["content"][0]["text"] == "sampled: the real answer", done.body


def test_a_state_is_bound_to_its_tool_and_method(fixture_bridge, http):
    url = fixture_bridge.mcp_url
    first = ask(http, url, "sample")
    key = only_key(first)
    state = first.result["requestState"]
    moved = [
        ("tools/call", {"name": "elicit", "arguments": {}}),
        ("tools/call", {"name": "echo", "arguments": {"text": "x"}}),
        ("prompts/get", {"name": "greet", "arguments": {"name": "x"}}),
        ("resources/read", {"uri": "fixture://static"}),
    ]
    for n, (method, params) in enumerate(moved):
        answers = {key: raw.sampling_answer("x")}
        reply = raw.retry(http, url, method, params, first, answers, capabilities=CAPS, request_id=n)
        error = assert_refused(reply, 400, -32602, n)
        assert error.get("data") == INVALID_STATE, (method, params, error)
    done = answer_sample(http, url, first, "bound")
    assert done.result["content"][0]["text"] == "sampled: bound"
    assert state == first.result["requestState"]


def test_a_state_from_another_proxy_is_refused(fixture_bridge, other_fixture_bridge, http):
    first = ask(http, fixture_bridge.mcp_url, "sample")
    reply = answer_sample(http, other_fixture_bridge.mcp_url, first, "foreign", request_id="foreign")
    assert assert_refused(reply, 400, -32602, "foreign").get("data") == INVALID_STATE
    done = answer_sample(http, fixture_bridge.mcp_url, first, "home")
    assert done.result["content"][0]["text"] == "sampled: home"


def test_a_state_is_bound_to_the_clients_credential(token_aggregator, http):
    url = token_aggregator.url("/fixture/mcp")
    as_a = {"Authorization": "Bearer token-a"}
    as_b = {"Authorization": "Bearer token-b"}
    first = ask(http, url, "sample", headers=as_a)
    reply = answer_sample(http, url, first, "stolen", headers=as_b, request_id="stolen")
    assert assert_refused(reply, 400, -32602, "stolen").get("data") == INVALID_STATE
    unauthenticated = answer_sample(http, url, first, "anonymous")
    assert unauthenticated.status == 401, (unauthenticated.status, unauthenticated.body)
    done = answer_sample(http, url, first, "mine", headers=as_a)
    assert done.result["content"][0]["text"] == "sampled: mine", done.body


def test_a_state_is_bound_to_the_endpoint_that_issued_it(token_aggregator, http):
    """A state names its server and its call as that endpoint named it: it resumes nothing
    on another server's endpoint, nor under a name the endpoint does not serve."""
    auth = {"Authorization": "Bearer token-a"}
    server_url, merged_url = token_aggregator.url("/fixture/mcp"), token_aggregator.url("/mcp")
    moves = [
        # (issued at, tool there, retried at, tool named in the retry)
        (server_url, "sample", token_aggregator.url("/tiny/mcp"), "sample"),
        (server_url, "sample", merged_url, "sample"),
        (server_url, "sample", merged_url, "fixture__sample"),
        (merged_url, "fixture__sample", server_url, "fixture__sample"),
        (merged_url, "fixture__sample", server_url, "sample"),
    ]
    for issued_at, tool, retried_at, retried_tool in moves:
        first = ask(http, issued_at, tool, headers=auth)
        params = {"name": retried_tool, "arguments": {}}
        answers = {only_key(first): raw.sampling_answer("moved")}
        reply = raw.retry(http, retried_at, "tools/call", params, first, answers, capabilities=CAPS, headers=auth)
        where = f"{tool} at {issued_at} retried as {retried_tool} at {retried_at}"
        assert reply.status == 400, f"{where}: HTTP {reply.status} {reply.body}"
        assert reply.error["code"] == -32602 and reply.error.get("data") == INVALID_STATE, (where, reply.body)
        done = raw.retry(http, issued_at, "tools/call", {"name": tool, "arguments": {}}, first, answers,
                         capabilities=CAPS, headers=auth)
        assert done.result["content"][0]["text"] == "sampled: moved", (where, done.body)


@pytest.mark.timeout(60)
def test_a_state_expires_with_the_request_timeout(short_timeout_bridge, http):
    """With ``--requestTimeout 2000`` a state is good for a few seconds, then refused."""
    url = short_timeout_bridge.mcp_url
    quick = ask(http, url, "sample")
    assert answer_sample(http, url, quick, "in time").result["content"][0]["text"] == "sampled: in time"
    late = ask(http, url, "sample")
    issued = time.time()
    # States carry a deadline in whole seconds: the request timeout, plus one, rounded.
    time.sleep(max(0.0, issued + 2 + 1 + 2.5 - time.time()))
    reply = answer_sample(http, url, late, "too late", request_id="late")
    assert assert_refused(reply, 400, -32602, "late").get("data") == INVALID_STATE
    still_serves(http, url)


def test_an_answer_to_a_question_never_asked_gets_the_question_again(fixture_bridge, http):
    url = fixture_bridge.mcp_url
    first = ask(http, url, "sample")
    key = only_key(first)
    asked = first.result["inputRequests"][key]
    params = {"name": "sample", "arguments": {}}
    for answers in ({"never-asked": raw.sampling_answer("stray")}, {key: 12345}, {key: None}, {}):
        again = raw.retry(http, url, "tools/call", params, first, answers, capabilities=CAPS)
        assert again.status == 200 and again.result["resultType"] == "input_required", (answers, again.body)
        assert list(again.result["inputRequests"].values()) == [asked], (answers, again.result)
        first = again
    done = answer_sample(http, url, first, "at last")
    assert done.result["content"][0]["text"] == "sampled: at last", done.body


def test_several_questions_come_in_one_round_and_are_asked_until_answered(fixture_bridge, http):
    url = fixture_bridge.mcp_url
    first = ask(http, url, "sample_and_elicit")
    requests = first.result["inputRequests"]
    by_method = {request["method"]: key for key, request in requests.items()}
    assert set(by_method) == {"sampling/createMessage", "elicitation/create"}, requests
    for request in requests.values():
        assert set(request) <= {"method", "params"}, f"a bare request, no id or jsonrpc: {request}"
    params = {"name": "sample_and_elicit", "arguments": {}}
    sample_only = {by_method["sampling/createMessage"]: raw.sampling_answer("half")}
    second = raw.retry(http, url, "tools/call", params, first, sample_only, capabilities=CAPS)
    assert second.result["resultType"] == "input_required", second.body
    assert [r["method"] for r in second.result["inputRequests"].values()] == ["elicitation/create"], second.result
    assert second.result["requestState"] != first.result["requestState"], "each round has its own state"
    elicit_key = only_key(second)
    name = {elicit_key: {"action": "accept", "content": {"name": "Ada"}}}
    done = raw.retry(http, url, "tools/call", params, second, name, capabilities=CAPS)
    assert done.result["content"][0]["text"] == "both: half Ada", done.body


def test_a_server_may_name_its_question(fixture_bridge, http):
    url = fixture_bridge.mcp_url
    first = ask(http, url, "elicit_named")
    assert list(first.result["inputRequests"]) == ["user_name"], first.result
    request = first.result["inputRequests"]["user_name"]
    assert request["method"] == "elicitation/create" and "_meta" not in request["params"], request
    answers = {"user_name": {"action": "accept", "content": {"name": "Ada"}}}
    params = {"name": "elicit_named", "arguments": {}}
    done = raw.retry(http, url, "tools/call", params, first, answers, capabilities=CAPS)
    assert done.result["content"][0]["text"] == "elicited: accept Ada", done.body


@pytest.mark.parametrize(
    "tool, declared, required",
    [
        ("sample_or_fail", {}, {"sampling": {}}),
        ("sample", {"elicitation": {}, "roots": {}}, {"sampling": {}}),
        ("elicit", {"sampling": {}}, {"elicitation": {"form": {}}}),
        ("roots", {"sampling": {}, "elicitation": {}}, {"roots": {}}),
    ],
)
def test_a_question_the_client_cannot_take_is_never_asked(fixture_bridge, http, tool, declared, required):
    """The child hears "no" (as from a 2025 client without the capability); its call fails, and
    the client learns what it lacked: 400 ``-32021`` with ``requiredCapabilities``."""
    reply = raw.call(http, fixture_bridge.mcp_url, "tools/call", {"name": tool, "arguments": {}},
                     capabilities=declared, request_id=f"cap-{tool}")
    error = assert_refused(reply, 400, -32021, f"cap-{tool}")
    assert error["data"]["requiredCapabilities"] == required, error


def retry_concurrently(url: str, state: str, key: str, ids: range, forged: range = range(0), timeout: float = 20.0):
    """Sends a retry of ``state`` for every id in ``ids`` at once (a broken copy of it for
    every id in ``forged``); returns {id: (status, body)}, or {id: ("no answer", error)}."""
    replies: dict[int, tuple[Any, Any]] = {}

    async def flood() -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), limits=limits) as client:

            async def one(n: int) -> None:
                params = {
                    "name": "sample",
                    "arguments": {},
                    "inputResponses": {key: raw.sampling_answer(f"answer {n}")},
                    "requestState": state + ("x" if n in forged else ""),
                }
                body = raw.request_body("tools/call", params, request_id=n, capabilities=CAPS)
                try:
                    response = await client.post(url, content=json.dumps(body), headers=raw.headers_for(body))
                except httpx.HTTPError as error:
                    replies[n] = ("no answer", repr(error))
                    return
                text = response.text
                if response.headers.get("content-type", "").startswith("text/event-stream"):
                    text = [line[5:] for line in text.splitlines() if line.startswith("data:")][-1]
                replies[n] = (response.status_code, json.loads(text))

            async with anyio.create_task_group() as group:
                for n in [*ids, *forged]:
                    group.start_soon(one, n)

    anyio.run(flood)
    return replies


def own_answer_or_refusal(n: int, status: Any, body: Any) -> str | None:
    """What is wrong with the reply to retry ``n`` (None: it is its own answer or a refusal)."""
    if status == "no answer":
        return f"retry {n}: no answer ({body})"
    if body.get("id") != n:
        return f"retry {n}: answered under id {body.get('id')!r}"
    if status == 200 and body.get("result", {}).get("resultType") == "complete":
        text = body["result"]["content"][0]["text"]
        return None if text == f"sampled: answer {n}" else f"retry {n}: got {text!r}, another retry's answer"
    if status == 400 and body.get("error", {}).get("code") == -32602:
        return None
    return f"retry {n}: HTTP {status} {body}"


@pytest.mark.timeout(60)
def test_two_retries_of_one_state_at_once_each_get_their_own_answer(fixture_bridge, http):
    """Two concurrent retries of the same round (a client that retries twice, or an
    attacker racing it): each gets an answer under its own id, computed from its own input
    (or a refusal), never silence or the other one's result."""
    first = ask(http, fixture_bridge.mcp_url, "sample")
    replies = retry_concurrently(
        fixture_bridge.mcp_url, first.result["requestState"], only_key(first), range(2), timeout=10.0
    )
    problems = [p for n, (status, body) in sorted(replies.items()) if (p := own_answer_or_refusal(n, status, body))]
    assert not problems, "\n".join(problems)
    still_serves(http, fixture_bridge.mcp_url)


@pytest.mark.timeout(120)
def test_a_flood_of_retries_of_one_state_is_answered_and_memory_stays_bounded(fixture_bridge, http):
    """Hundreds of concurrent retries of one state (and as many forged ones): every one gets
    an answer under its own id, the proxy keeps serving, and its memory comes back."""
    url = fixture_bridge.mcp_url
    still_serves(http, url)
    before = rss_mib(fixture_bridge.pid)
    first = ask(http, url, "sample")
    count = 300
    state, key = first.result["requestState"], only_key(first)
    replies = retry_concurrently(url, state, key, range(count), range(count, 2 * count))
    assert len(replies) == 2 * count
    problems = []
    for n, (status, body) in sorted(replies.items()):
        if n >= count:
            if not (status == 400 and body.get("id") == n and body["error"].get("data") == INVALID_STATE):
                problems.append(f"forged retry {n}: HTTP {status} {body}")
        elif problem := own_answer_or_refusal(n, status, body):
            problems.append(problem)
    assert not problems, f"{len(problems)} of {2 * count} retries went wrong:\n" + "\n".join(problems[:20])
    still_serves(http, url)
    settled = wait_until(lambda: rss_mib(fixture_bridge.pid) < before + 64, timeout=10, interval=0.2)
    assert settled, f"RSS {rss_mib(fixture_bridge.pid):.1f} MiB after the flood, {before:.1f} MiB before"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


# --------------------------------------------------------------------------
# 3. the request stream and subscriptions/listen
# --------------------------------------------------------------------------


def test_closing_the_stream_cancels_the_call_at_the_child(fixture_bridge):
    """The 2026 way to cancel: close the request's response stream. The child's handler is
    cancelled (the proxy sent it notifications/cancelled), and it says so."""
    marker = uuid.uuid4().hex[:10]
    body = raw.request_body(
        "tools/call", {"name": "slow", "arguments": {"seconds": 60, "tag": marker}}, meta={"progressToken": marker}
    )
    with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
        content, headers = json.dumps(body), raw.headers_for(body)
        with client.stream("POST", fixture_bridge.mcp_url, content=content, headers=headers) as response:
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
            first = next(event for event in raw.SseReader(response) if event.data.strip())
            assert json.loads(first.data)["method"] == "notifications/progress", first.data
    fixture_bridge.wait_for_log(f"modern_server slow started {marker}", timeout=5)
    fixture_bridge.wait_for_log(f"modern_server slow cancelled {marker}", timeout=10)


def test_listen_acknowledges_first_and_hears_only_what_it_asked_for(fixture_bridge, http):
    url = fixture_bridge.mcp_url
    marker = uuid.uuid4().hex[:10]
    wanted, other = f"fixture://item/{marker}", f"fixture://item/other-{marker}"
    notifications = {"toolsListChanged": True, "resourceSubscriptions": [wanted]}
    with raw.listening(url, notifications, request_id=7) as stream:
        ack = stream.wait_for(lambda messages: messages[:1], timeout=15)
        assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
        assert ack and ack[0]["method"] == "notifications/subscriptions/acknowledged", stream.messages
        assert ack[0]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == 7, "the id, verbatim"
        assert ack[0]["params"]["notifications"] == notifications, ack[0]
        # Things it did not ask for, each finished before the next starts.
        for tool, arguments in [
            ("change_prompts", {}),
            ("change_resources", {}),
            ("touch", {"uri": other}),
        ]:
            assert raw.call(http, url, "tools/call", {"name": tool, "arguments": arguments}).status == 200
        progress = raw.call(http, url, "tools/call", {"name": "progress", "arguments": {"steps": 2, "delay": 0.01}},
                            meta={"progressToken": "p"})
        assert len(progress.notifications("notifications/progress")) == 2, "progress goes to its own request"
        logged = raw.call(http, url, "tools/call", {"name": "log"}, meta={"io.modelcontextprotocol/logLevel": "debug"})
        assert len(logged.notifications("notifications/message")) == 4, "logs go to their own request"
        # Then what it asked for.
        raw.call(http, url, "tools/call", {"name": "change_tools"})
        raw.call(http, url, "tools/call", {"name": "touch", "arguments": {"uri": wanted}})
        heard = stream.wait_for(
            lambda messages: any(m["method"] == "notifications/resources/updated" for m in messages), timeout=10
        )
        assert heard, stream.messages
        events = stream.messages[1:]
        assert [m["method"] for m in events] == [
            "notifications/tools/list_changed",
            "notifications/resources/updated",
        ], events
        assert events[1]["params"]["uri"] == wanted
        for event in events:
            assert event["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == 7, event


def test_listen_gives_its_subscriptions_back_when_it_closes(fixture_bridge, http):
    """Each child the proxy subscribed for a listener is unsubscribed when the last one goes."""
    url = fixture_bridge.mcp_url
    uri = f"fixture://item/{uuid.uuid4().hex[:10]}"
    with raw.listening(url, {"resourceSubscriptions": [uri]}, request_id="L") as stream:
        assert stream.wait_for(lambda messages: messages[:1], timeout=15)
        raw.call(http, url, "tools/call", {"name": "touch", "arguments": {"uri": uri}})
        assert stream.wait_for(lambda messages: len(messages) >= 2, timeout=10), stream.messages
    subscribed = fixture_bridge.wait_for_log(rf"\(pid (\d+)\) stderr: modern_server subscribe {uri}", timeout=5)

    def unsubscribed_everywhere() -> bool:
        log = fixture_bridge.stderr
        subs = set(re.findall(rf"\(pid (\d+)\) stderr: modern_server subscribe {uri}\n", log))
        unsubs = set(re.findall(rf"\(pid (\d+)\) stderr: modern_server unsubscribe {uri}\n", log))
        return bool(subs) and subs == unsubs

    assert subscribed
    assert wait_until(unsubscribed_everywhere, timeout=10), fixture_bridge.stderr[-3000:]


def test_listen_with_nothing_to_hear_ends_gracefully(tiny_bridge):
    """tiny_server announces no list changes and no subscriptions: the ack honours nothing,
    and the stream ends at once with the listen request's result."""
    with raw.listening(tiny_bridge.mcp_url, {"toolsListChanged": True, "resourceSubscriptions": ["file:///a"]},
                       request_id="quiet") as stream:
        assert stream.wait_ended(timeout=15), "the stream should end by itself"
        assert stream.error is None, stream.error
    assert len(stream.messages) == 2, stream.messages
    ack, result = stream.messages
    assert ack["method"] == "notifications/subscriptions/acknowledged"
    assert ack["params"]["notifications"] == {}
    assert result["id"] == "quiet" and result["result"]["resultType"] == "complete", result
    assert result["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == "quiet", result


def test_listen_without_a_filter_is_invalid_params(fixture_bridge, http):
    body = raw.request_body("subscriptions/listen", {}, request_id="nofilter")
    reply = raw.post(http, fixture_bridge.mcp_url, body, raw.headers_for(body))
    assert reply.status in (200, 400), (reply.status, reply.body)
    assert reply.body["id"] == "nofilter" and reply.error["code"] == -32602, reply.body


def test_a_listen_ends_with_its_result_when_the_proxy_stops_without_waiting_out_the_grace(proxy_bin):
    """A listen is not a request that finishes by itself: on SIGTERM it ends at once with its
    result, and the proxy does not wait out --gracefulShutdownTimeout for it."""
    with running_proxy(proxy_bin, "--gracefulShutdownTimeout", "60000", command=MODERN_COMMAND) as proxy:
        warm(proxy)
        with raw.listening(proxy.mcp_url, {"toolsListChanged": True}, request_id="bye") as stream:
            assert stream.wait_for(lambda messages: messages[:1], timeout=15), stream.messages
            started = time.monotonic()
            proxy.proc.send_signal(signal.SIGTERM)
            assert stream.wait_ended(timeout=20), "the listen should end when the proxy stops"
            assert proxy.proc.wait(20) == 0
            assert time.monotonic() - started < 30, "it waited out the 60 s grace"
        result = stream.messages[-1]
        assert result.get("id") == "bye" and result["result"]["resultType"] == "complete", stream.messages


def test_a_listen_stream_keeps_alive_and_is_not_buffered_by_proxies(proxy_bin):
    with running_proxy(proxy_bin, "--keepAlive", "200", command=MODERN_COMMAND) as proxy:
        warm(proxy)
        body = raw.request_body("subscriptions/listen", {"notifications": {"toolsListChanged": True}}, request_id=1)
        with httpx.Client(timeout=httpx.Timeout(10.0)) as client:
            with client.stream("POST", proxy.mcp_url, content=json.dumps(body), headers=raw.headers_for(body)) as r:
                assert r.status_code == 200 and r.headers["x-accel-buffering"] == "no", r.headers
                seen = b""
                for chunk in r.iter_raw():
                    seen += chunk
                    if seen.count(b": keep-alive") >= 2:
                        break
        assert b"notifications/subscriptions/acknowledged" in seen, seen
        assert seen.count(b"\n: keep-alive\n") >= 1 or seen.count(b": keep-alive") >= 2, seen


def test_an_unknown_mcp_param_header_is_ignored_where_nothing_goes_upstream_by_it(tiny_bridge, http):
    reply = raw.call(http, tiny_bridge.mcp_url, "tools/call", {"name": "echo", "arguments": {"message": "p"}},
                     headers={"Mcp-Param-Nonsense": "1", "Mcp-Param-X-Other": "=?base64?eA==?="})
    assert reply.status == 200 and "result" in reply.body, (reply.status, reply.body)


def test_legacy_sse_stays_2025(tiny_bridge, http):
    """/sse speaks only the 2025 revision: a 2026 request there is not served."""
    body = raw.request_body("tools/call", {"name": "echo", "arguments": {"message": "p"}})
    response = http.post(tiny_bridge.sse_url, content=json.dumps(body), headers=raw.headers_for(body))
    assert response.status_code in (404, 405), (response.status_code, response.text)
    assert "result" not in response.text


@pytest.mark.parametrize("same_key", [True, False], ids=["same-key", "other-key"])
def test_a_round_survives_a_restart_with_a_shared_session_key(proxy_bin, http, same_key):
    """--session-key: a state sealed by one process opens in another (a restart, or another
    replica); the call is run again there and answered from the retry's inputResponses."""
    key = secrets.token_hex(32)
    with running_proxy(proxy_bin, "--session-key", key, command=MODERN_COMMAND) as first:
        round_one = ask(http, warm(first).mcp_url, "sample")
    other = key if same_key else secrets.token_hex(32)
    with running_proxy(proxy_bin, command=MODERN_COMMAND, env={"MCP_PROXY_SESSION_KEY": other}) as second:
        reply = answer_sample(http, warm(second).mcp_url, round_one, "after the restart", request_id="resumed")
        if same_key:
            assert reply.status == 200 and reply.result["content"][0]["text"] == "sampled: after the restart", reply.body
        else:
            assert assert_refused(reply, 400, -32602, "resumed").get("data") == INVALID_STATE
