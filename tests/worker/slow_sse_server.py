"""A raw Streamable HTTP upstream that answers ``initialize`` slowly, in SSE: a log
notification first, the result ``PAUSE`` seconds later. With it the Worker tests can see
that an upstream's events reach the client one by one, not buffered to the end, without
needing a session to outlive one request.

    python tests/worker/slow_sse_server.py PORT [PAUSE]

Serves ``POST /mcp``; notifications get 202, other requests -32601.
"""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAUSE = float(sys.argv[2]) if len(sys.argv) > 2 else 1.5


def event(message: dict) -> bytes:
    return f"event: message\ndata: {json.dumps(message)}\n\n".encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        message = json.loads(self.rfile.read(length) or b"{}")
        if "id" not in message:
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        if message.get("method") != "initialize":
            body = json.dumps({"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32601, "message": "no"}})
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("mcp-session-id", "slow-upstream-session")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        log = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "first"}}
        result = {
            "jsonrpc": "2.0",
            "id": message["id"],
            "result": {
                "protocolVersion": message.get("params", {}).get("protocolVersion", "2025-06-18"),
                "capabilities": {},
                "serverInfo": {"name": "slow-sse", "version": "1"},
            },
        }
        self.chunk(event(log))
        time.sleep(PAUSE)
        self.chunk(event(result))
        self.chunk(b"")

    def chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
