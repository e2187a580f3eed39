"""2025-era official clients, run from the same step scripts as ``sdk.py`` (for the tests of
2026 upstreams, ``test_modern_upstream.py``).

* ``await run_py_legacy(script)``: the Python client (``mcp==2.3.0``) with ``mode="legacy"``
  (``initialize``, a session), in this process;
* ``run_ts_v1(script)``: the TypeScript v1 client (``@modelcontextprotocol/sdk@1.32.2``),
  ``ts_v1_client.mjs`` in a Node subprocess.

Besides the steps of ``sdk.py`` both know the 2025-only ones:

* ``{"op": "setLevel", "level"}``: ``logging/setLevel``;
* ``{"op": "subscribe", "uri", "then": [steps], "want": {"tools": n, "updated": [uris]},
  "timeoutMs"}``: ``resources/subscribe`` (none without a ``uri``), the inner steps, then a wait for the
  notifications wanted; answers ``counts`` (``tools``: list changes heard, ``updated``: the
  URIs of the updates heard) and ``then``.

Reports have the shape of ``sdk.py``'s, plus ``logs`` (the log messages heard).
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

from clients.sdk import _PyDriver, describe

TS_V1_CLIENT = Path(__file__).resolve().parent / "ts_v1_client.mjs"


def run_ts_v1(script: dict, timeout: float = 90.0) -> dict:
    """Runs ``script`` through the TypeScript v1 client (a Node subprocess); returns its report."""
    done = subprocess.run(
        ["node", str(TS_V1_CLIENT)],
        input=json.dumps(script),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=TS_V1_CLIENT.parent,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines, (
        f"ts_v1_client.mjs exited {done.returncode}\n--- stdout ---\n{done.stdout}"
        f"\n--- stderr ---\n{done.stderr[-4000:]}"
    )
    report = json.loads(lines[-1])
    report["stderr"] = done.stderr[-4000:]
    return report


class _LegacyPyDriver(_PyDriver):
    """``sdk.py``'s Python driver in ``mode="legacy"``, hearing notifications and logs."""

    def __init__(self, script: dict) -> None:
        super().__init__(script)
        self.tools_changed = 0
        self.updated: list[str] = []
        self.heard = anyio.Event()

    async def on_message(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.tools_changed += 1
        elif isinstance(message, types.ResourceUpdatedNotification):
            self.updated.append(str(message.params.uri))
        else:
            return
        self.heard.set()
        self.heard = anyio.Event()

    async def step(self, step: dict) -> dict:
        client = self.client
        assert client is not None
        if step["op"] == "setLevel":
            await client.set_logging_level(step["level"])
            return {}
        if step["op"] == "subscribe":
            self.tools_changed, self.updated = 0, []
            if step.get("uri"):
                await client.subscribe_resource(step["uri"])
            inner = [await self.guarded(inner_step) for inner_step in step.get("then", [])]
            want = step.get("want", {})
            deadline = time.monotonic() + step.get("timeoutMs", 10000) / 1000

            def satisfied() -> bool:
                return want.get("tools", 0) <= self.tools_changed and all(
                    uri in self.updated for uri in want.get("updated", [])
                )

            while not satisfied() and time.monotonic() < deadline:
                with anyio.move_on_after(min(0.2, max(0.0, deadline - time.monotonic()))):
                    await self.heard.wait()
            return {"counts": {"tools": self.tools_changed, "updated": list(self.updated)}, "then": inner}
        return await super().step(step)

    async def run(self) -> dict:
        script = self.script
        http = httpx2.AsyncClient(headers=script.get("headers") or {}, timeout=httpx2.Timeout(30.0, read=60.0))
        try:
            async with http:
                declared = script.get("capabilities", {"sampling": {}, "elicitation": {}, "roots": {}})
                client = Client(
                    streamable_http_client(script["url"], http_client=http),
                    mode="legacy",
                    read_timeout_seconds=30.0,
                    sampling_callback=self.on_sample if "sampling" in declared else None,
                    elicitation_callback=self.on_elicit if "elicitation" in declared else None,
                    list_roots_callback=self.on_roots if "roots" in declared else None,
                    logging_callback=self.on_log,
                    message_handler=self.on_message,
                )
                async with client:
                    self.client = client
                    results = [await self.guarded(step) for step in script.get("steps", [])]
                    info = client.server_info
                    return {
                        "connected": True,
                        "era": "legacy",
                        "version": client.protocol_version,
                        "server": {"name": info.name, "version": info.version} if info else None,
                        "results": results,
                        "handled": self.handled,
                        "logs": self.logs,
                    }
        except Exception as error:
            return {"connected": False, "error": describe(error), "handled": self.handled}


async def run_py_legacy(script: dict, timeout: float = 90.0) -> dict:
    """Runs ``script`` through the Python client in ``mode="legacy"``, in this process."""
    with anyio.fail_after(timeout):
        return await _LegacyPyDriver(script).run()
