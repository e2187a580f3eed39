"""A stdio MCP server that answers the era probe (``server/discover``) oddly, for the tests of
the proxy's era detection (``test_modern_upstream.py``).

``python odd_upstream_server.py MODE``; apart from the probe it is a plain 2025 server
(``initialize``, ``ping``, ``tools/list``, ``tools/call echo {text}`` -> ``"echo: <text>"``;
other requests get -32601). Modes, by what ``server/discover`` gets:

* ``garbage-result``: a result that is a string (``"garbage"``);
* ``garbage-shape``: a result object of the wrong shape (``supportedVersions`` a number,
  ``capabilities`` a string);
* ``not-json``: a line that is not JSON at all, and no answer;
* ``silent``: nothing at all;
* ``method-not-found``: -32601 (what any 2025 server answers; the control case);
* ``liar``: a valid 2026-07-28 discover result, after which every request that carries the
  2026 envelope gets -32600 ("this connection serves the 2025 protocol") -- a server that
  claims an era it does not serve.

Every request it receives is written to stderr as ``odd_upstream got <method>``; on start it
writes ``odd_upstream pid <pid> mode=<mode>``.
"""

from __future__ import annotations

import json
import os
import sys

#: The command line that runs this server in ``mode``.
def command(mode: str) -> tuple:
    return (sys.executable, "-S", "-I", os.path.abspath(__file__), mode)


MODERN = "2026-07-28"


def log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def send(message: dict | str) -> None:
    sys.stdout.write((message if isinstance(message, str) else json.dumps(message)) + "\n")
    sys.stdout.flush()


def result(request_id, value) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "result": value}


def error(request_id, code: int, message: str) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def discover(mode: str, request_id) -> dict | str | None:
    if mode == "garbage-result":
        return result(request_id, "garbage")
    if mode == "garbage-shape":
        return result(request_id, {"supportedVersions": 2026, "capabilities": "all of them"})
    if mode == "not-json":
        return "this is not JSON-RPC {{{"
    if mode == "silent":
        return None
    if mode == "liar":
        return result(
            request_id,
            {
                "resultType": "complete",
                "supportedVersions": [MODERN],
                "capabilities": {"tools": {}},
                "ttlMs": 0,
                "cacheScope": "private",
                "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "odd-upstream", "version": "1"}},
            },
        )
    return error(request_id, -32601, "Method not found: server/discover")


def answer(mode: str, message: dict) -> dict | str | None:
    method, request_id = message.get("method"), message.get("id")
    params = message.get("params") or {}
    if method == "server/discover":
        return discover(mode, request_id)
    if mode == "liar" and "io.modelcontextprotocol/protocolVersion" in (params.get("_meta") or {}):
        return error(request_id, -32600, "this connection serves the 2025 protocol; the 2026 envelope is not accepted")
    if method == "initialize":
        return result(
            request_id,
            {
                "protocolVersion": params.get("protocolVersion", "2025-11-25"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "odd-upstream", "version": "1"},
            },
        )
    if method == "ping":
        return result(request_id, {})
    if method == "tools/list":
        schema = {"type": "object", "properties": {"text": {"type": "string"}}}
        return result(request_id, {"tools": [{"name": "echo", "description": "Echoes", "inputSchema": schema}]})
    if method == "tools/call" and params.get("name") == "echo":
        text = (params.get("arguments") or {}).get("text", "")
        return result(request_id, {"content": [{"type": "text", "text": f"echo: {text}"}]})
    return error(request_id, -32601, f"Method not found: {method}")


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "method-not-found"
    log(f"odd_upstream pid {os.getpid()} mode={mode}")
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if not isinstance(message, dict) or "method" not in message or "id" not in message:
            continue  # notifications and responses
        log(f"odd_upstream got {message['method']}")
        reply = answer(mode, message)
        if reply is not None:
            send(reply)


if __name__ == "__main__":
    main()
