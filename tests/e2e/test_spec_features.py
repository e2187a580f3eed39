"""MCP features beyond request/response, end to end: server-to-client requests,
resumable streams, DNS-rebinding protection, batches, keep-alives and stateless mode.
"""

from __future__ import annotations

import json
import time

import httpx
import mcp_types as types
import pytest
from conftest import (
    MCP_POST_HEADERS,
    SseReader,
    initialize_request,
    mcp_client,
    open_raw_session,
    post_rpc,
    rpc_error_code,
    rpc_request,
    session_headers,
    text_of,
)

pytestmark = pytest.mark.anyio

TRANSPORTS = ("streamable-http", "sse")


# --- requests from the server to the client ----------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sampling_request_reaches_the_client_and_its_answer_the_server(proxy, transport):
    seen: list[types.CreateMessageRequestParams] = []

    async def sampling(context, params):
        seen.append(params)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="sampled by the test"), model="test-model"
        )

    async with mcp_client(proxy, transport, sampling_callback=sampling) as conn:
        result = await conn.session.call_tool("trigger-sampling-request", {"prompt": "hello", "maxTokens": 5})
    assert len(seen) == 1
    assert "hello" in seen[0].messages[0].content.text
    assert "sampled by the test" in text_of(result)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_elicitation_and_roots_cross_the_proxy(proxy, transport):
    asked: list[str] = []

    async def elicitation(context, params):
        asked.append(params.message)
        return types.ElicitResult(action="decline")

    async def roots(context):
        return types.ListRootsResult(roots=[types.Root(uri="file:///tmp/proxy-test-root", name="test root")])

    async with mcp_client(proxy, transport, elicitation_callback=elicitation, list_roots_callback=roots) as conn:
        elicited = await conn.session.call_tool("trigger-elicitation-request", {})
        listed = await conn.session.call_tool("get-roots-list", {})
    assert asked and "Please provide inputs" in asked[0]
    assert "decline" in text_of(elicited).lower()
    assert "file:///tmp/proxy-test-root" in text_of(listed)


async def test_two_sessions_answer_their_own_server_requests(proxy):
    """Each session's sampling request goes to that session's client only."""
    calls: dict[str, int] = {"a": 0, "b": 0}

    def sampler(name):
        async def sampling(context, params):
            calls[name] += 1
            return types.CreateMessageResult(
                role="assistant", content=types.TextContent(type="text", text=f"from {name}"), model="m"
            )

        return sampling

    async with mcp_client(proxy, "streamable-http", sampling_callback=sampler("a")) as a:
        async with mcp_client(proxy, "streamable-http", sampling_callback=sampler("b")) as b:
            result_a = await a.session.call_tool("trigger-sampling-request", {"prompt": "x"})
            result_b = await b.session.call_tool("trigger-sampling-request", {"prompt": "y"})
    assert "from a" in text_of(result_a) and "from b" in text_of(result_b)
    assert calls == {"a": 1, "b": 1}


# --- resumability ---------------------------------------------------------------


def test_a_broken_stream_resumes_with_last_event_id(proxy, http):
    session_id = open_raw_session(http, proxy.mcp_url)
    steps = 6
    call = rpc_request(
        "tools/call",
        {"name": "trigger-long-running-operation", "arguments": {"duration": 1.2, "steps": steps}, "_meta": {"progressToken": "resume"}},
    )
    received: list[dict] = []
    last_id = None
    with http.stream("POST", proxy.mcp_url, json=call, headers=session_headers(session_id)) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = SseReader(response)
        for event in reader:
            if event.id:
                last_id = event.id
            message = json.loads(event.data) if event.data.strip() else {}
            if message.get("method") == "notifications/progress":
                received.append(message)
            if len(received) == 2:
                break  # the connection breaks here
    assert last_id, "events carry ids"
    assert [m["params"]["progress"] for m in received] == [1, 2]
    time.sleep(0.2)
    headers = session_headers(session_id, {"Accept": "text/event-stream", "Last-Event-ID": last_id})
    rest: list[dict] = []
    with http.stream("GET", proxy.mcp_url, headers=headers) as response:
        assert response.status_code == 200
        for event in SseReader(response):
            if event.data.strip():
                rest.append(json.loads(event.data))
    progress = [m["params"]["progress"] for m in rest if m.get("method") == "notifications/progress"]
    assert progress == list(range(3, steps + 1)), f"nothing lost, nothing twice: {rest}"
    assert rest[-1]["id"] == call["id"] and "result" in rest[-1]


# --- DNS rebinding protection ----------------------------------------------------


def test_forged_origin_and_host_are_refused(proxy, http):
    evil = http.post(proxy.mcp_url, json=initialize_request(), headers={**MCP_POST_HEADERS, "Origin": "https://evil.example"})
    assert evil.status_code == 403
    assert rpc_error_code(evil.json()) is not None
    rebound = http.get(proxy.sse_url, headers={"Accept": "text/event-stream", "Host": "attacker.example"})
    assert rebound.status_code == 403
    local = post_rpc(http, proxy.mcp_url, initialize_request(), headers={"Origin": "http://localhost:6274"})
    assert local.status == 200 and local.session_id


def test_origin_check_can_be_turned_off(start_proxy, http):
    proxy = start_proxy("--no-origin-check")
    reply = post_rpc(http, proxy.mcp_url, initialize_request(), headers={"Origin": "https://elsewhere.example"})
    assert reply.status == 200


# --- batches and keep-alives -----------------------------------------------------


def test_batches_get_an_array_of_answers(proxy, http):
    session_id = open_raw_session(http, proxy.mcp_url)
    batch = [rpc_request("ping"), rpc_request("tools/call", {"name": "echo", "arguments": {"message": "b"}})]
    reply = http.post(proxy.mcp_url, content=json.dumps(batch), headers=session_headers(session_id))
    assert reply.status_code == 200
    answers = {answer["id"]: answer for answer in reply.json()}
    assert set(answers) == {batch[0]["id"], batch[1]["id"]}
    assert answers[batch[1]["id"]]["result"]["content"][0]["text"] == "Echo: b"


def test_idle_streams_get_keep_alive_comments(start_proxy, http):
    proxy = start_proxy("--keepAlive", "200")
    session_id = open_raw_session(http, proxy.mcp_url)
    with http.stream("GET", proxy.mcp_url, headers=session_headers(session_id, {"Accept": "text/event-stream"})) as response:
        comments = 0
        for line in response.iter_lines():
            if line.startswith(":"):
                comments += 1
                if comments == 2:
                    break
    assert comments == 2


# --- stateless mode ----------------------------------------------------------------


async def test_stateless_mode_serves_the_sdk_client_from_a_pool(start_proxy):
    proxy = start_proxy("--stateless", "--statelessPoolSize", "2")
    proxy.wait_for_children(lambda pids: len(pids) >= 2)
    for round_ in range(3):
        async with mcp_client(proxy, "streamable-http") as conn:
            assert conn.session_id is None, "no sessions in stateless mode"
            result = await conn.session.call_tool("echo", {"message": f"round {round_}"})
            assert text_of(result) == f"Echo: round {round_}"
    children = proxy.mcp_children()
    assert len(children) == 2, f"the pool, not a process per request: {children}"


def test_stateless_mode_refuses_get_and_delete(start_proxy, http):
    proxy = start_proxy("--stateless")
    assert http.get(proxy.mcp_url, headers={"Accept": "text/event-stream"}).status_code == 405
    assert http.delete(proxy.mcp_url).status_code == 405


def test_stateless_pool_replaces_a_dead_child(start_proxy, http):
    import os
    import signal

    proxy = start_proxy("--stateless", "--statelessPoolSize", "1")
    first = proxy.wait_for_children(lambda pids: len(pids) == 1)
    assert post_rpc(http, proxy.mcp_url, rpc_request("ping")).status == 200
    os.kill(first[0], signal.SIGKILL)
    replaced = proxy.wait_for_children(lambda pids: len(pids) == 1 and pids != first)
    assert replaced and replaced != first
    deadline = time.monotonic() + 15
    while True:
        reply = post_rpc(http, proxy.mcp_url, rpc_request("tools/call", {"name": "echo", "arguments": {"message": "again"}}))
        if reply.status == 200 and "result" in (reply.body or {}):
            break
        assert time.monotonic() < deadline, f"the pool did not recover: {reply.status} {reply.body}"
        time.sleep(0.2)
