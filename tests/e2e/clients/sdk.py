"""One step script, run by either official SDK client, reported in one shape.

A script is a dict (see ``ts_client.mjs`` for the full format)::

    {"url": ..., "mode": "pin" | "auto" | "legacy", "headers": {...}, "capabilities": {...},
     "elicitName": ..., "sampleText": ..., "roots": [...], "steps": [{"op": ...}, ...]}

``run_ts(script)`` pipes it to ``ts_client.mjs`` (``@modelcontextprotocol/client@2.4.0``);
``await run_py(script)`` runs it through ``mcp.client.client.Client`` (``mcp==2.3.0``) in
this process. Both answer::

    {"connected": bool, "era": "modern" | "legacy", "version": ..., "server": {...} | None,
     "results": [{"ok": bool, ...}, ...], "handled": {"elicitation": n, "sampling": n, "roots": n},
     "error": {...}}            # "error" only when not connected

Each result carries what its op returns (``names``, ``texts``, ``isError``, ``progress``,
``uris``, ``honored``, ``counts``, ``then``, ``completed``, ``progressBeforeAbort``) or
``{"ok": False, "error": {"name", "message", "code"?, "data"?}}``.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import PromptsListChanged, ResourcesListChanged, ResourceUpdated, ToolsListChanged
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

TS_CLIENT = Path(__file__).resolve().parent / "ts_client.mjs"
MODERN = "2026-07-28"
#: The Python client's ``mode`` for each script mode.
PY_MODES = {"pin": MODERN, "auto": "auto", "legacy": "legacy"}
#: What both drivers' handlers answer unless a script says otherwise.
DEFAULT_ROOTS = ["file:///e2e/root"]


def run_ts(script: dict, timeout: float = 90.0) -> dict:
    """Runs ``script`` through the TypeScript v2 client (a Node subprocess); returns its report."""
    done = subprocess.run(
        ["node", str(TS_CLIENT)],
        input=json.dumps(script),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=TS_CLIENT.parent,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines, (
        f"ts_client.mjs exited {done.returncode}\n--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr[-4000:]}"
    )
    report = json.loads(lines[-1])
    report["stderr"] = done.stderr[-4000:]
    return report


def describe(error: BaseException) -> dict:
    """An exception as the TypeScript driver reports one."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    out: dict[str, Any] = {"name": type(error).__name__, "message": str(error)}
    if isinstance(error, MCPError):
        out.update(code=error.code, message=error.message)
        if error.data is not None:
            out["data"] = error.data
    return out


def texts_of(items: Any) -> list:
    found = []
    for item in items or []:
        content = getattr(item, "content", item)
        found.append(getattr(content, "text", None))
    return found


class _PyDriver:
    def __init__(self, script: dict) -> None:
        self.script = script
        self.handled = {"elicitation": 0, "sampling": 0, "roots": 0}
        self.client: Client | None = None
        self.logs: list[dict] = []

    # -- the handlers a 2025 server's questions (or an input_required round) reach --------

    async def on_elicit(self, ctx: Any, params: Any) -> types.ElicitResult:
        self.handled["elicitation"] += 1
        return types.ElicitResult(action="accept", content={"name": self.script.get("elicitName", "Alice")})

    async def on_sample(self, ctx: Any, params: Any) -> types.CreateMessageResult:
        self.handled["sampling"] += 1
        text = self.script.get("sampleText", "Paris")
        content = types.TextContent(type="text", text=text)
        return types.CreateMessageResult(role="assistant", model="test-model", content=content, stop_reason="endTurn")

    async def on_roots(self, ctx: Any) -> types.ListRootsResult:
        self.handled["roots"] += 1
        uris = self.script.get("roots", DEFAULT_ROOTS)
        return types.ListRootsResult(roots=[types.Root(uri=uri, name="root") for uri in uris])

    # -- steps --------------------------------------------------------------------------------

    async def guarded(self, step: dict) -> dict:
        try:
            return {"ok": True, **(await self.step(step))}
        except Exception as error:  # reported, like the TypeScript driver does
            return {"ok": False, "error": describe(error)}

    async def step(self, step: dict) -> dict:
        client = self.client
        assert client is not None
        op = step["op"]
        if op == "listTools":
            return {"names": [tool.name for tool in (await client.list_tools()).tools]}
        if op == "callTool":
            progress: list[dict] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append({"progress": value, "total": total, "message": message})

            result = await client.call_tool(
                step["name"],
                step.get("arguments") or {},
                read_timeout_seconds=step.get("timeoutMs", 30000) / 1000,
                progress_callback=on_progress if step.get("progress") else None,
            )
            return {"texts": texts_of(result.content), "isError": bool(result.is_error), "progress": progress}
        if op == "listResources":
            return {"uris": [str(resource.uri) for resource in (await client.list_resources()).resources]}
        if op == "readResource":
            result = await client.read_resource(step["uri"])
            return {"texts": [getattr(content, "text", None) for content in result.contents]}
        if op == "listPrompts":
            return {"names": [prompt.name for prompt in (await client.list_prompts()).prompts]}
        if op == "getPrompt":
            result = await client.get_prompt(step["name"], step.get("arguments") or {})
            return {"texts": texts_of(result.messages)}
        if op == "listen":
            return await self.listen(step)
        if op == "cancelAfterProgress":
            return await self.cancel_after_progress(step)
        raise ValueError(f"unknown op {op!r}")

    async def listen(self, step: dict) -> dict:
        client = self.client
        assert client is not None
        wanted = step.get("filter", {})
        want = step.get("want", {})
        counts: dict[str, Any] = {"tools": 0, "prompts": 0, "resourcesList": 0, "updated": []}

        def satisfied() -> bool:
            enough = all(want.get(key, 0) <= counts[key] for key in ("tools", "prompts", "resourcesList"))
            return enough and all(uri in counts["updated"] for uri in want.get("updated", []))

        async with client.listen(
            tools_list_changed=bool(wanted.get("toolsListChanged")),
            prompts_list_changed=bool(wanted.get("promptsListChanged")),
            resources_list_changed=bool(wanted.get("resourcesListChanged")),
            resource_subscriptions=wanted.get("resourceSubscriptions", []),
        ) as subscription:
            honored = subscription.honored.model_dump(by_alias=True, exclude_none=True, mode="json")
            inner = [await self.guarded(inner_step) for inner_step in step.get("then", [])]
            deadline = time.monotonic() + step.get("timeoutMs", 10000) / 1000
            while not satisfied() and time.monotonic() < deadline:
                with anyio.move_on_after(deadline - time.monotonic()):
                    try:
                        event = await subscription.__anext__()
                    except StopAsyncIteration:
                        break
                    if isinstance(event, ToolsListChanged):
                        counts["tools"] += 1
                    elif isinstance(event, PromptsListChanged):
                        counts["prompts"] += 1
                    elif isinstance(event, ResourcesListChanged):
                        counts["resourcesList"] += 1
                    elif isinstance(event, ResourceUpdated):
                        counts["updated"].append(str(event.uri))
        return {"honored": honored, "counts": counts, "then": inner, "closed": "local"}

    async def cancel_after_progress(self, step: dict) -> dict:
        client = self.client
        assert client is not None
        started = anyio.Event()
        progress: list[float] = []
        outcome: dict[str, Any] = {}

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)
            started.set()

        async def call() -> None:
            result = await client.call_tool(step["name"], step.get("arguments") or {}, progress_callback=on_progress)
            outcome["result"] = result

        async with anyio.create_task_group() as group:
            group.start_soon(call)
            with anyio.move_on_after(step.get("timeoutMs", 30000) / 1000):
                await started.wait()
            group.cancel_scope.cancel()
        if "result" in outcome:
            return {"completed": True, "texts": texts_of(outcome["result"].content), "progressBeforeAbort": 0}
        # A real application goes on after it cancels: give the client time to send what
        # cancelling sends (a 2025 client POSTs notifications/cancelled).
        await anyio.sleep(step.get("settleMs", 500) / 1000)
        return {"completed": False, "progressBeforeAbort": len(progress), "error": {"name": "Cancelled"}}

    # -- the run ------------------------------------------------------------------------------

    async def run(self) -> dict:
        script = self.script
        http = httpx2.AsyncClient(headers=script.get("headers") or {}, timeout=httpx2.Timeout(30.0, read=60.0))
        try:
            async with http:
                declared = script.get("capabilities", {"sampling": {}, "elicitation": {}, "roots": {}})
                client = Client(
                    streamable_http_client(script["url"], http_client=http),
                    mode=PY_MODES[script["mode"]],
                    read_timeout_seconds=30.0,
                    sampling_callback=self.on_sample if "sampling" in declared else None,
                    elicitation_callback=self.on_elicit if "elicitation" in declared else None,
                    list_roots_callback=self.on_roots if "roots" in declared else None,
                    log_level=script.get("logLevel"),
                    logging_callback=self.on_log if script.get("logLevel") else None,
                )
                async with client:
                    self.client = client
                    results = [await self.guarded(step) for step in script.get("steps", [])]
                    version = client.protocol_version
                    info = client.server_info
                    return {
                        "connected": True,
                        "era": "modern" if version in MODERN_PROTOCOL_VERSIONS else "legacy",
                        "version": version,
                        "server": {"name": info.name, "version": info.version} if info else None,
                        "results": results,
                        "handled": self.handled,
                        "logs": self.logs,
                    }
        except Exception as error:
            return {"connected": False, "error": describe(error), "handled": self.handled}

    async def on_log(self, params: Any) -> None:
        self.logs.append({"level": params.level, "data": params.data})


async def run_py(script: dict, timeout: float = 90.0) -> dict:
    """Runs ``script`` through the Python client, in this process; returns its report."""
    with anyio.fail_after(timeout):
        return await _PyDriver(script).run()
