"""A tiny stdio MCP server for the benchmark: one `echo` tool, no SDK, stdlib only.

One JSON-RPC message per line on stdin, one per line on stdout. Its own cost per call is a
json.loads and a json.dumps, so what the bench measures around it is mostly transport.
Exits on stdin EOF. Extra arguments (such as `--tag <run id>`) are ignored; the bench uses
them to find its own processes.
"""

import json
import sys

SUPPORTED = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")

TOOL = {
    "name": "echo",
    "description": "Echoes back the input",
    "inputSchema": {
        "type": "object",
        "properties": {"message": {"type": "string"}},
        "required": ["message"],
    },
}


def answer(message):
    method = message.get("method")
    params = message.get("params") or {}
    if method == "tools/call":
        if params.get("name") != "echo":
            return None, {"code": -32602, "message": "unknown tool"}
        text = (params.get("arguments") or {}).get("message", "")
        return {"content": [{"type": "text", "text": "Echo: " + str(text)}]}, None
    if method == "initialize":
        asked = params.get("protocolVersion")
        return {
            "protocolVersion": asked if asked in SUPPORTED else SUPPORTED[0],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "bench-echo", "version": "1.0.0"},
        }, None
    if method == "tools/list":
        return {"tools": [TOOL]}, None
    if method == "ping":
        return {}, None
    return None, {"code": -32601, "message": "method not found: %s" % method}


def main():
    read = sys.stdin.buffer.readline
    out = sys.stdout.buffer
    dumps = json.dumps
    while True:
        line = read()
        if not line:
            return
        line = line.strip()
        if not line:
            continue
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if not isinstance(message, dict) or "method" not in message or "id" not in message:
            continue  # notifications and responses need no answer
        result, error = answer(message)
        reply = {"jsonrpc": "2.0", "id": message["id"]}
        if error is None:
            reply["result"] = result
        else:
            reply["error"] = error
        out.write(dumps(reply, separators=(",", ":")).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    try:
        main()
    except (BrokenPipeError, KeyboardInterrupt):
        pass
