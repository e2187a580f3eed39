"""A minimal stdio MCP server for the end-to-end tests that need many children.

It starts in a few milliseconds and uses a few MB, so a test can run hundreds of
sessions at once (server-everything is a ~50 MB node process). It reads one
JSON-RPC message per line on stdin and writes one per line on stdout.

Methods: ``initialize``, ``ping``, ``tools/list``, ``tools/call``; other
requests get -32601. Tools:

* ``echo {message}`` -> text ``"Echo: <message>"``
* ``sleep {seconds}`` -> answers after ``seconds`` (at most 60); other requests
  are served meanwhile
* ``flood {count, size}`` -> first sends ``count`` ``notifications/message``
  log messages of ``size`` characters each, then answers

Flags:

* ``--ignore-sigterm``: SIGTERM is caught and ignored (a line saying so goes
  to stderr), and the process keeps running after stdin closes, so only
  SIGKILL stops it.
* ``--grandchild``: starts a ``sleep`` grandchild in the same process group
  that ignores SIGTERM too; its pid goes to stderr as ``tiny grandchild pid N``.

Whenever it starts it writes ``tiny server pid N`` to stderr; a ``sleep`` call
writes ``tiny sleeping <id>`` when it begins.

Tests import ``COMMAND`` (how to run it) and ``children`` (its running copies
under a proxy) from here.
"""

import json
import os
import signal
import sys
import threading
import time

#: The command line that runs this server (``-S -I``: a faster start).
COMMAND: tuple = (sys.executable, "-S", "-I", os.path.abspath(__file__))
STUBBORN = "--ignore-sigterm" in sys.argv
MAX_SLEEP_S = 60.0

_out_lock = threading.Lock()


def children(proxy) -> list:
    """Pids of the copies of this server among ``proxy``'s descendants (a conftest ProxyProcess)."""
    found = []
    for pid in proxy.descendants():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                cmdline = file.read()
        except OSError:
            continue
        if b"tiny_server.py" in cmdline:
            found.append(pid)
    return found


def log(text: str) -> None:
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except OSError:
        pass


def send(message: dict) -> None:
    data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
    with _out_lock:
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except OSError:  # the proxy is gone
            os._exit(0)


def result(request_id, value: dict) -> None:
    send({"jsonrpc": "2.0", "id": request_id, "result": value})


def error(request_id, code: int, message: str) -> None:
    send({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}})


def text_result(request_id, text: str) -> None:
    result(request_id, {"content": [{"type": "text", "text": text}], "isError": False})


TOOLS = [
    {"name": "echo", "description": "Echoes its message",
     "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}}},
    {"name": "sleep", "description": "Answers after some seconds",
     "inputSchema": {"type": "object", "properties": {"seconds": {"type": "number"}}}},
    {"name": "flood", "description": "Sends many log notifications, then answers",
     "inputSchema": {"type": "object",
                     "properties": {"count": {"type": "integer"}, "size": {"type": "integer"}}}},
]


def sleep_then_answer(request_id, seconds: float) -> None:
    log(f"tiny sleeping {request_id}")
    time.sleep(max(0.0, min(seconds, MAX_SLEEP_S)))
    text_result(request_id, f"slept {seconds}")


def call_tool(request_id, params: dict) -> None:
    name = params.get("name")
    arguments = params.get("arguments") or {}
    if name == "echo":
        text_result(request_id, "Echo: " + str(arguments.get("message", "")))
    elif name == "sleep":
        seconds = float(arguments.get("seconds", 1))
        threading.Thread(target=sleep_then_answer, args=(request_id, seconds), daemon=True).start()
    elif name == "flood":
        count = min(int(arguments.get("count", 100)), 100_000)
        payload = "f" * min(int(arguments.get("size", 100)), 1_000_000)
        for n in range(count):
            send({"jsonrpc": "2.0", "method": "notifications/message",
                  "params": {"level": "info", "logger": "tiny", "data": f"{n} {payload}"}})
        text_result(request_id, f"flooded {count}")
    else:
        error(request_id, -32602, f"unknown tool {name!r}")


def handle(message) -> None:
    if not isinstance(message, dict) or "method" not in message:
        return  # responses and junk are ignored
    method = message["method"]
    request_id = message.get("id")
    params = message.get("params") or {}
    if request_id is None:
        return  # notifications need no answer
    if method == "initialize":
        result(request_id, {
            "protocolVersion": params.get("protocolVersion", "2025-11-25"),
            "capabilities": {"tools": {}, "logging": {}},
            "serverInfo": {"name": "tiny", "version": "0"},
        })
    elif method == "ping":
        result(request_id, {})
    elif method == "logging/setLevel":
        result(request_id, {})
    elif method == "tools/list":
        result(request_id, {"tools": TOOLS})
    elif method == "tools/call":
        call_tool(request_id, params)
    else:
        error(request_id, -32601, f"method not found: {method}")


def main() -> None:
    if STUBBORN:
        signal.signal(signal.SIGTERM, lambda signum, frame: log("tiny ignoring SIGTERM"))
    log(f"tiny server pid {os.getpid()}")
    if "--grandchild" in sys.argv:
        import subprocess  # only here: it is slow to import

        grandchild = subprocess.Popen(
            ["sh", "-c", "trap '' TERM; exec sleep 60"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        log(f"tiny grandchild pid {grandchild.pid}")
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            break
        try:
            message = json.loads(line)
        except ValueError:
            continue
        handle(message)
    if STUBBORN:  # stdin closed: wait to be killed (bounded)
        deadline = time.monotonic() + MAX_SLEEP_S
        while time.monotonic() < deadline:
            time.sleep(0.5)


if __name__ == "__main__":
    main()
