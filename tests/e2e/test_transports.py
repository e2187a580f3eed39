"""MCP features through the proxy with the official Python SDK client.

Every test runs over both transports the proxy serves: Streamable HTTP
(``/mcp``) and the legacy HTTP+SSE transport (``/sse`` + ``/messages``).
"""

from __future__ import annotations

import anyio
import mcp_types as types
import pytest
from conftest import SIMULATED_LOG_RE, TRANSPORTS, mcp_client, text_of

pytestmark = pytest.mark.anyio


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


async def test_initialize(proxy, transport):
    async with mcp_client(proxy, transport) as conn:
        result = conn.session.initialize_result
        assert result is not None
        assert result.server_info.name == "mcp-servers/everything"
        assert result.protocol_version == "2025-11-25"
        assert result.capabilities.tools is not None
        assert conn.session_id, "the proxy gave the session no id"


async def test_list_tools(proxy, transport):
    async with mcp_client(proxy, transport) as conn:
        tools = await conn.session.list_tools()
    names = {tool.name for tool in tools.tools}
    assert {"echo", "get-sum", "trigger-long-running-operation", "toggle-simulated-logging"} <= names


async def test_call_echo(proxy, transport):
    async with mcp_client(proxy, transport) as conn:
        result = await conn.session.call_tool("echo", {"message": "hello through the proxy ✓"})
    assert not result.is_error
    assert text_of(result) == "Echo: hello through the proxy ✓"


async def test_call_get_sum(proxy, transport):
    async with mcp_client(proxy, transport) as conn:
        result = await conn.session.call_tool("get-sum", {"a": 2, "b": 40})
    assert "42" in text_of(result)


async def test_unknown_tool_is_an_error_result(proxy, transport):
    async with mcp_client(proxy, transport) as conn:
        result = await conn.session.call_tool("no-such-tool", {})
    assert result.is_error


async def test_progress_notifications_all_arrive(proxy, transport):
    steps = 8
    progress: list[tuple[float, float | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total))

    async with mcp_client(proxy, transport) as conn:
        result = await conn.session.call_tool(
            "trigger-long-running-operation",
            {"duration": 0.8, "steps": steps},
            progress_callback=on_progress,
        )
        # The SDK runs progress callbacks as tasks of their own: the last ones
        # may still be pending when the result is returned.
        with anyio.move_on_after(5):
            while len(progress) < steps:
                await anyio.sleep(0.01)
    assert "Long running operation completed" in text_of(result)
    assert sorted(progress) == [(float(step), float(steps)) for step in range(1, steps + 1)]


async def test_resources_list_and_read(proxy, transport):
    async with mcp_client(proxy, transport) as conn:
        listed = await conn.session.list_resources()
        uris = [str(resource.uri) for resource in listed.resources]
        assert "demo://resource/static/document/instructions.md" in uris
        read = await conn.session.read_resource("demo://resource/static/document/instructions.md")
        templates = await conn.session.list_resource_templates()
    assert read.contents and read.contents[0].text.strip()
    assert read.contents[0].mime_type == "text/markdown"
    assert templates.resource_templates, "server-everything has dynamic resource templates"


async def test_prompts_list_and_get(proxy, transport):
    async with mcp_client(proxy, transport) as conn:
        listed = await conn.session.list_prompts()
        assert {"simple-prompt", "args-prompt"} <= {prompt.name for prompt in listed.prompts}
        prompt = await conn.session.get_prompt("args-prompt", {"city": "Lyon", "state": "Rhône"})
    assert prompt.messages[0].content.text == "What's weather in Lyon, Rhône?"


async def test_ping(proxy, transport):
    async with mcp_client(proxy, transport) as conn:
        await conn.session.send_ping()
        await conn.session.send_ping()


async def test_logging_notifications_arrive(proxy, transport):
    """server-everything sends a log message as soon as simulated logging is toggled on."""
    simulated: list[types.LoggingMessageNotificationParams] = []
    arrived = anyio.Event()

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        if SIMULATED_LOG_RE.search(str(params.data)):  # the simulated ones, not other logs
            simulated.append(params)
            arrived.set()

    async with mcp_client(proxy, transport, logging_callback=on_log) as conn:
        await conn.session.set_logging_level("debug")
        started = text_of(await conn.session.call_tool("toggle-simulated-logging", {}))
        # One message is sent at once, then one every 5 s.
        with anyio.move_on_after(12):
            await arrived.wait()
        await conn.session.call_tool("toggle-simulated-logging", {})
    assert started.startswith("Started simulated"), started
    assert simulated, "no notifications/message arrived within 12 s"


async def test_server_to_client_request_roots(proxy, transport):
    """A request from the child (roots/list) reaches the client and its answer gets back."""

    async def list_roots(context) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri="file:///srv/e2e-root", name="e2e root")])

    async with mcp_client(proxy, transport, list_roots_callback=list_roots) as conn:
        result = await conn.session.call_tool("get-roots-list", {})
    assert "file:///srv/e2e-root" in text_of(result)


async def test_many_requests_in_parallel(proxy, transport):
    """Concurrent requests on one session each get their own response."""
    async with mcp_client(proxy, transport) as conn:
        results: dict[int, str] = {}

        async def echo(n: int) -> None:
            results[n] = text_of(await conn.session.call_tool("echo", {"message": f"m{n}"}))

        async with anyio.create_task_group() as group:
            for n in range(20):
                group.start_soon(echo, n)
    assert results == {n: f"Echo: m{n}" for n in range(20)}


async def test_sessions_are_isolated(proxy, transport):
    """Each session runs its own child, so server state is not shared.

    ``toggle-simulated-logging`` flips per-process state: in a child shared by
    two sessions the second call would answer "Stopped ...".
    """
    async with mcp_client(proxy, transport) as first, mcp_client(proxy, transport) as second:
        one = text_of(await first.session.call_tool("toggle-simulated-logging", {}))
        two = text_of(await second.session.call_tool("toggle-simulated-logging", {}))
        children = proxy.mcp_children()
    assert first.session_id and second.session_id
    assert first.session_id != second.session_id
    assert one.startswith("Started"), one
    assert two.startswith("Started"), f"the second session shares the first one's server: {two}"
    assert len(children) >= 2, f"expected a child process per session, found {children}"
