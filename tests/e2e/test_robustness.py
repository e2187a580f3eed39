"""Children that misbehave, large messages: the proxy answers and keeps serving."""

from __future__ import annotations

import os
import signal
import threading
import time

import anyio
import pytest
from conftest import (
    TRANSPORTS,
    initialize_request,
    mcp_client,
    open_raw_session,
    pid_alive,
    post_rpc,
    rpc_request,
    text_of,
)


def is_error_reply(reply) -> bool:
    """An HTTP error status, or a JSON-RPC error object."""
    return reply.status >= 400 or (isinstance(reply.body, dict) and "error" in reply.body)


def test_child_that_never_answers_hits_connection_timeout(start_proxy, http):
    proxy = start_proxy("--connectionTimeout", "500", command=["sleep", "30"])
    started = time.monotonic()
    reply = post_rpc(http, proxy.mcp_url, initialize_request())
    assert time.monotonic() - started < 5, "initialize was not cut off by --connectionTimeout"
    assert is_error_reply(reply), reply
    assert proxy.proc.poll() is None, "the proxy must keep running"


def test_child_that_exits_at_once_gives_an_error(start_proxy, http):
    proxy = start_proxy(command=["sh", "-c", "echo 'cannot start' >&2; exit 3"])
    started = time.monotonic()
    reply = post_rpc(http, proxy.mcp_url, initialize_request())
    assert time.monotonic() - started < 5
    assert is_error_reply(reply), reply
    assert proxy.proc.poll() is None, "the proxy must keep running"
    assert http.get(proxy.url("/ping")).text == "pong"


def test_missing_executable_gives_an_error(start_proxy, http):
    proxy = start_proxy(command=["/nonexistent/mcp-server-binary"])
    reply = post_rpc(http, proxy.mcp_url, initialize_request())
    assert is_error_reply(reply), reply
    assert proxy.proc.poll() is None


def test_child_killed_mid_session(start_proxy, http):
    proxy = start_proxy()
    session_id = open_raw_session(http, proxy.mcp_url)
    (child,) = proxy.wait_for_children(lambda pids: len(pids) == 1, timeout=5)
    os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)

    started = time.monotonic()
    reply = post_rpc(http, proxy.mcp_url, rpc_request("tools/list"), session_id)
    assert time.monotonic() - started < 5, "a request to a dead child must not hang"
    assert is_error_reply(reply), reply

    # A new session gets a new, working child.
    fresh = open_raw_session(http, proxy.mcp_url)
    assert post_rpc(http, proxy.mcp_url, rpc_request("ping"), fresh).body["result"] == {}


def test_child_killed_during_a_request(start_proxy, http):
    proxy = start_proxy()
    session_id = open_raw_session(http, proxy.mcp_url)
    (child,) = proxy.wait_for_children(lambda pids: len(pids) == 1, timeout=5)
    slow = rpc_request("tools/call", {"name": "trigger-long-running-operation",
                                      "arguments": {"duration": 20, "steps": 2}})
    # Kill the child a moment after the request went out.
    killer = _kill_later(child, 0.5)
    started = time.monotonic()
    reply = post_rpc(http, proxy.mcp_url, slow, session_id)
    killer.join()
    assert time.monotonic() - started < 5, "the pending request must be answered when the child dies"
    assert is_error_reply(reply), reply


def _kill_later(pid: int, delay: float) -> threading.Thread:
    def kill() -> None:
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_large_messages(proxy, transport):
    big = "0123456789abcdef" * 32768  # 512 KiB (the SDK caps one SSE event at 1 MiB)
    async with mcp_client(proxy, transport) as conn:
        result = await conn.session.call_tool("echo", {"message": big})
        image = await conn.session.call_tool("get-tiny-image", {})
    assert text_of(result) == "Echo: " + big
    assert any(getattr(item, "type", "") == "image" and item.data for item in image.content)


@pytest.mark.anyio
async def test_concurrent_sessions(proxy):
    """Several clients at once, on both transports, each get their own answers."""
    answers: dict[str, str] = {}

    async def client(name: str, transport: str) -> None:
        async with mcp_client(proxy, transport) as conn:
            for n in range(5):
                result = await conn.session.call_tool("echo", {"message": f"{name}-{n}"})
                answers[f"{name}-{n}"] = text_of(result)

    async with anyio.create_task_group() as group:
        for index in range(6):
            group.start_soon(client, f"client{index}", TRANSPORTS[index % 2])
    assert answers == {key: f"Echo: {key}" for key in answers} and len(answers) == 30
