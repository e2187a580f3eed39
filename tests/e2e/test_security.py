"""Attacks on the proxy, over raw HTTP and sockets: each test tries one and checks the refusal.

Every test runs the release binary against real processes on loopback: the tiny Python
server (``tiny_server.py``), server-everything, small stdio scripts written to ``tmp_path``,
and small HTTP servers written here (``LoopbackServer``) that record every request they get,
so a test can show that a credential, a request or a connection never reached them.

The sections follow the security properties of the proxy:

1. the merged endpoint serves exactly the servers the client's credential opens;
2. the runtime server API needs an admin credential (and is off without one);
3. path tokens never leave (listings, logs, merged cursors);
4. an empty token is a configuration error, not "no auth";
5. ``forwardAuthorization`` never forwards a credential the proxy itself consumed;
6. servers added at run time (API or temporary) cannot reach the proxy's own network (SSRF);
7. an upstream cannot redirect messages (and its headers) elsewhere: neither a legacy SSE
   endpoint on another origin nor an HTTP redirect is followed;
8. remote configurations come over https (or loopback) and are never expanded;
9. children never see the proxy's secrets, and configured servers only a short list;
10. a child's grandchildren end with it;
11. browsers and DNS rebinding when listening beyond loopback;
12. ``--sslCa`` is mutual TLS;
13. on a shared upstream, one client cannot answer another client's server request;
14. bounded under abuse: idle connections, slow-loris (HTTP/1 and h2c), huge batches, requests
    in flight, large unauthenticated bodies, sessions flooding the resumption event store;
15. what children and upstreams send cannot break the proxy: non-UTF-8 stderr, SSE events
    over the limit.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import resource
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from conftest import (
    EVERYTHING_COMMAND,
    PROTOCOL_VERSION,
    ProxyProcess,
    SseReader,
    initialize_request,
    open_raw_session,
    pid_alive,
    post_rpc,
    rpc_error_code,
    rpc_notification,
    rpc_request,
    running_proxy,
    session_headers,
    wait_until,
)
from tiny_server import COMMAND as TINY_COMMAND

#: How long a raw socket waits for the proxy before the test calls it a hang (an upper bound).
SOCKET_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def tiny_entry(tokens: list[str] | None = None, **options: Any) -> dict:
    """A configuration entry running tiny_server.py (with ``authTokens`` when given)."""
    entry: dict[str, Any] = {"command": TINY_COMMAND[0], "args": list(TINY_COMMAND[1:])}
    if tokens is not None:
        options["authTokens"] = tokens
    if options:
        entry["options"] = options
    return entry


def everything_entry(**options: Any) -> dict:
    """A configuration entry running server-everything over stdio."""
    entry: dict[str, Any] = {"command": EVERYTHING_COMMAND[0], "args": list(EVERYTHING_COMMAND[1:])}
    if options:
        entry["options"] = options
    return entry


def write_config(directory: Path, config: dict, name: str = "config.json") -> str:
    path = directory / name
    path.write_text(json.dumps(config))
    return str(path)


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any MCP_PROXY_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROXY_")}
    env.update(extra)
    return env


def run_proxy_to_exit(proxy_bin: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs the binary with ``--port 0 args`` and waits for it to exit (20 s at most)."""
    return subprocess.run(
        [str(proxy_bin), "--port", "0", *args], capture_output=True, text=True, timeout=20, env=env or clean_env()
    )


def tool_names(http: httpx.Client, url: str, session: str, headers: dict | None = None) -> list[str]:
    reply = post_rpc(http, url, rpc_request("tools/list"), session, headers)
    assert reply.status == 200 and "result" in reply.body, f"tools/list: HTTP {reply.status} {reply.body!r}"
    return [tool["name"] for tool in reply.body["result"]["tools"]]


def result_text(body: dict) -> str:
    assert isinstance(body, dict) and "result" in body, f"not a result: {body!r}"
    return "".join(item.get("text", "") for item in body["result"].get("content", []))


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc/<pid>/status (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def assert_rss_returns(proxy: ProxyProcess, before: float, bound_mib: float = 100.0) -> None:
    """The proxy's RSS comes back under ``before + bound_mib`` (polled for up to 10 s)."""
    settled = wait_until(lambda: rss_mib(proxy.pid) < before + bound_mib, timeout=10, interval=0.2)
    assert settled, f"RSS {rss_mib(proxy.pid):.1f} MiB after the abuse, {before:.1f} MiB before (bound +{bound_mib})"


def raw_connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=SOCKET_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response_head(sock: socket.socket, timeout: float = SOCKET_TIMEOUT_S) -> bytes:
    """Reads up to the end of a response head; returns every byte read so far."""
    data = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in data:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no complete response head within {timeout}s: {data[:300]!r}"
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response head: {data[:300]!r}"
        data += chunk
    return data


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1."), f"not an HTTP/1 response: {response[:200]!r}"
    return int(response.split(b" ", 2)[1])


def peer_closed(sock: socket.socket) -> bool:
    """Whether the peer closed (or reset) ``sock``, without waiting."""
    try:
        sock.setblocking(False)
        try:
            return sock.recv(1, socket.MSG_PEEK) == b""
        finally:
            sock.setblocking(True)
    except BlockingIOError:
        return False
    except OSError:
        return True


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the peer closed (or reset) ``sock``, reading and dropping whatever it sent first."""
    sock.setblocking(False)
    try:
        while True:
            if sock.recv(65536) == b"":
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def post_head(path: str, host: str, port: int, length: int, session: str | None = None, extra: list[str] = ()) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        "Accept: application/json, text/event-stream",
        f"Content-Length: {length}",
        *extra,
    ]
    if session:
        lines += [f"Mcp-Session-Id: {session}", f"MCP-Protocol-Version: {PROTOCOL_VERSION}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ---- HTTP servers of the tests' own -------------------------------------------------


@dataclass
class Seen:
    """One request a ``LoopbackServer`` received."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


class LoopbackServer:
    """An HTTP/1.1 server on 127.0.0.1 (a thread per connection) that records every request.

    ``respond(handler, seen, server)`` writes the answer (see ``send``).
    """

    def __init__(self, respond: Callable[[Any, Seen, LoopbackServer], None]) -> None:
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    body = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return body
                        body += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                seen = Seen(self.command, self.path, list(self.headers.items()), self._read_body())
                with outer._lock:
                    outer._seen.append(seen)
                respond(self, seen, outer)

            do_GET = do_POST = do_DELETE = _handle  # noqa: N815 (http.server's naming)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()

    def close(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()


def send(handler: Any, status: int, body: bytes = b"", content_type: str = "application/json", headers=()) -> None:
    handler.send_response(status)
    if body:
        handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers:
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


def answer_as_mcp_server(handler: Any, seen: Seen, server: LoopbackServer) -> None:
    """A minimal Streamable HTTP MCP server: JSON answers, 202 for notifications, no GET stream."""
    if seen.method == "GET":
        return send(handler, 405, headers=[("Allow", "POST, DELETE")])
    if seen.method == "DELETE":
        return send(handler, 200)
    try:
        message = json.loads(seen.body)
    except ValueError:
        return send(handler, 400)
    if not isinstance(message, dict) or "id" not in message or "method" not in message:
        return send(handler, 202)
    extra = []
    if message["method"] == "initialize":
        result: dict = {
            "protocolVersion": (message.get("params") or {}).get("protocolVersion", PROTOCOL_VERSION),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "recorder", "version": "0"},
        }
        extra = [("Mcp-Session-Id", "recorded-session")]
    elif message["method"] == "tools/list":
        result = {"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}
    elif message["method"] == "tools/call":
        result = {"content": [{"type": "text", "text": "recorded"}]}
    else:
        result = {}
    body = json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}).encode()
    send(handler, 200, body, headers=extra)


@pytest.fixture
def loopback_server() -> Iterator[Callable[..., LoopbackServer]]:
    """Factory: ``loopback_server(respond=answer_as_mcp_server)``; all closed at teardown."""
    servers: list[LoopbackServer] = []

    def make(respond: Callable[[Any, Seen, LoopbackServer], None] = answer_as_mcp_server) -> LoopbackServer:
        server = LoopbackServer(respond)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


# --------------------------------------------------------------------------
# 1. The merged endpoint serves exactly what the credential opens
# --------------------------------------------------------------------------

MERGED_CONFIG = {
    "mcpServers": {
        "open": tiny_entry([]),
        "locked": tiny_entry(["lock"]),
        "hidden/p4th": tiny_entry(),  # a path token and no header tokens: never on the merged endpoint
        "guarded/p4th": tiny_entry(["guard"]),
    }
}


@pytest.fixture(scope="module")
def merged_proxy(proxy_bin, tmp_path_factory) -> Iterator[ProxyProcess]:
    path = write_config(tmp_path_factory.mktemp("merged"), MERGED_CONFIG)
    with running_proxy(proxy_bin, "--config", path, command=()) as running:
        yield running


def prefixes(names: list[str]) -> set[str]:
    return {name.split("__", 1)[0] for name in names}


def test_merged_endpoint_without_a_token_lists_and_calls_only_open_servers(merged_proxy, http):
    """An anonymous merged session sees only `open__*` tools and cannot call another server's."""
    url = merged_proxy.url("/mcp")
    session = open_raw_session(http, url)
    names = tool_names(http, url, session)
    assert names and prefixes(names) == {"open"}, f"an anonymous client sees {names}"
    for stolen in ("locked__echo", "hidden__echo", "guarded__echo"):
        reply = post_rpc(http, url, rpc_request("tools/call", {"name": stolen, "arguments": {"message": "x"}}), session)
        assert rpc_error_code(reply.body) is not None, f"{stolen} was served anonymously: {reply.status} {reply.body!r}"
    ok = post_rpc(http, url, rpc_request("tools/call", {"name": "open__echo", "arguments": {"message": "hi"}}), session)
    assert result_text(ok.body) == "Echo: hi"


@pytest.mark.parametrize(("token", "expected"), [("lock", {"open", "locked"}), ("guard", {"open", "guarded"})])
def test_merged_endpoint_with_a_token_adds_exactly_its_servers(merged_proxy, http, token, expected):
    """`Bearer lock` opens open+locked; `Bearer guard` open+guarded (a path-token server joins
    only through its header token); `hidden/p4th` never joins."""
    url = merged_proxy.url("/mcp")
    headers = {"Authorization": f"Bearer {token}"}
    session = open_raw_session(http, url, headers)
    names = tool_names(http, url, session, headers)
    assert prefixes(names) == expected, names
    assert not any("p4th" in name for name in names), f"a path token shows in a tool name: {names}"
    owner = (expected - {"open"}).pop()
    call = rpc_request("tools/call", {"name": f"{owner}__echo", "arguments": {"message": token}})
    assert result_text(post_rpc(http, url, call, session, headers).body) == f"Echo: {token}"


def test_merged_endpoint_refuses_a_credential_that_opens_nothing(start_proxy, tmp_path, http):
    """Every server has tokens: an anonymous initialize gets 401, a Bearer challenge and a JSON-RPC error."""
    config = {"mcpServers": {"a": tiny_entry(["ta"]), "b": tiny_entry(["tb"])}}
    proxy = start_proxy("--config", write_config(tmp_path, config), command=())
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        # A connection of its own per refusal: see test_an_early_refusal_says_the_connection_closes.
        with httpx.Client(timeout=15) as fresh:
            reply = post_rpc(fresh, proxy.url("/mcp"), initialize_request(), headers=headers)
        assert reply.status == 401, (reply.status, reply.body)
        assert reply.headers.get("www-authenticate", "").startswith("Bearer"), dict(reply.headers)
        assert reply.body.get("jsonrpc") == "2.0" and rpc_error_code(reply.body) is not None, reply.body
    assert post_rpc(http, proxy.url("/mcp"), initialize_request(), headers={"Authorization": "Bearer ta"}).status == 200


def test_a_merged_session_is_bound_to_the_credential_that_opened_it(merged_proxy, http):
    """A session opened with `Bearer lock`, then used without it (or with another token): 403."""
    url = merged_proxy.url("/mcp")
    lock = {"Authorization": "Bearer lock"}
    session = open_raw_session(http, url, lock)
    for headers in ({}, {"Authorization": "Bearer guard"}):
        reply = post_rpc(http, url, rpc_request("tools/list"), session, headers)
        assert reply.status == 403, f"session hijacked with {headers}: {reply.status} {reply.body!r}"
        assert rpc_error_code(reply.body) is not None, reply.body
    assert post_rpc(http, url, rpc_request("ping"), session, lock).status == 200, "its owner still uses it"


# --------------------------------------------------------------------------
# 2. The runtime server API needs an admin credential
# --------------------------------------------------------------------------


def temporary_server_request(http: httpx.Client, proxy: ProxyProcess, headers: dict) -> httpx.Response:
    """POST /sse with a config: asks for a temporary server (reads only the response head)."""
    body = {"config": tiny_entry()}
    with http.stream("POST", proxy.url("/sse"), json=body, headers={**headers, "Accept": "text/event-stream"}) as r:
        r.read() if r.status_code != 200 else None
        return r


def test_admin_api_is_off_without_an_admin_credential(start_proxy, tmp_path, http):
    """Only client tokens configured: /api/servers and temporary servers answer 404, even to a client token."""
    config = {"mcpProxy": {"options": {"authTokens": ["client"]}}, "mcpServers": {"tiny": tiny_entry()}}
    proxy = start_proxy("--config", write_config(tmp_path, config), command=())
    for headers in ({}, {"Authorization": "Bearer client"}):
        listed = http.get(proxy.url("/api/servers"), headers=headers)
        assert listed.status_code == 404, (headers, listed.status_code, listed.text)
        added = http.post(proxy.url("/api/servers"), headers=headers, json={"name": "x", "config": tiny_entry()})
        assert added.status_code == 404, (headers, added.status_code, added.text)
        temporary = temporary_server_request(http, proxy, headers)
        assert temporary.status_code == 404, (headers, temporary.status_code)
    assert "admin" in listed.text, f"the 404 says why: {listed.text}"


@pytest.mark.parametrize("source", ["flag", "file", "env"])
def test_admin_api_needs_the_admin_token_not_a_client_token(start_proxy, tmp_path, http, source):
    """--admin-token, mcpProxy.adminTokens and MCP_PROXY_ADMIN_TOKEN: a client token gets 401, the admin token 200."""
    config: dict = {"mcpProxy": {"options": {"authTokens": ["client"]}}, "mcpServers": {"tiny": tiny_entry()}}
    args, env, admin = [], {}, "adm"
    if source == "flag":
        args = ["--admin-token", "adm"]
    elif source == "file":
        config["mcpProxy"]["adminTokens"] = ["filed"]
        admin = "filed"
    else:
        env = {"MCP_PROXY_ADMIN_TOKEN": "adm"}
    proxy = start_proxy("--config", write_config(tmp_path, config), *args, command=(), env=env)
    for headers in ({}, {"Authorization": "Bearer client"}, {"Authorization": "Bearer adm-but-wrong"}):
        refused = http.get(proxy.url("/api/servers"), headers=headers)
        assert refused.status_code == 401, (headers, refused.status_code, refused.text)
        assert temporary_server_request(http, proxy, headers).status_code == 401, headers
    listed = http.get(proxy.url("/api/servers"), headers={"Authorization": f"Bearer {admin}"})
    assert listed.status_code == 200, listed.text
    assert [s["name"] for s in listed.json()["servers"]] == ["tiny"]


# --------------------------------------------------------------------------
# 3. Path tokens never leave
# --------------------------------------------------------------------------

#: A stdio server whose tools/list has two pages (page 1 names the cursor "second-page").
PAGER_SOURCE = r'''
import json, sys
def tool(name):
    return {"name": name, "inputSchema": {"type": "object"}}
for line in sys.stdin:
    message = json.loads(line)
    if "id" not in message or "method" not in message:
        continue
    method, params = message["method"], message.get("params") or {}
    answer = {"jsonrpc": "2.0", "id": message["id"]}
    if method == "initialize":
        answer["result"] = {"protocolVersion": params.get("protocolVersion"), "capabilities": {"tools": {}},
                            "serverInfo": {"name": "pager", "version": "0"}}
    elif method == "tools/list" and "cursor" not in params:
        answer["result"] = {"tools": [tool("one")], "nextCursor": "second-page"}
    elif method == "tools/list" and params["cursor"] == "second-page":
        answer["result"] = {"tools": [tool("two")]}
    elif method == "tools/list":
        answer["error"] = {"code": -32602, "message": "bad cursor " + repr(params["cursor"])}
    else:
        answer["result"] = {}
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
'''


@pytest.fixture
def path_token_proxy(start_proxy, tmp_path):
    pager = tmp_path / "pager.py"
    pager.write_text(PAGER_SOURCE)
    config = {
        "mcpServers": {
            "fetch/s3cret": tiny_entry(),
            "pager/s3cret": {"command": sys.executable, "args": [str(pager)], "options": {"authTokens": ["pg"]}},
        }
    }
    return start_proxy("--config", write_config(tmp_path, config), "--admin-token", "adm", command=())


def test_path_tokens_are_hidden_from_the_server_listing(path_token_proxy, http):
    admin = {"Authorization": "Bearer adm"}
    listed = http.get(path_token_proxy.url("/api/servers"), headers=admin)
    assert listed.status_code == 200, listed.text
    assert "s3cret" not in listed.text, f"the listing shows a path token: {listed.text}"
    fetch = next(s for s in listed.json()["servers"] if s["name"] == "fetch")
    assert fetch["pathToken"] is True
    assert fetch["paths"]["mcp"] == "/fetch/{pathToken}/mcp", fetch
    one = http.get(path_token_proxy.url("/api/servers/fetch"), headers=admin)
    assert "s3cret" not in one.text, one.text


def test_path_tokens_are_not_logged(path_token_proxy, http):
    """Neither the start nor a whole session on /fetch/s3cret/mcp puts the token in the log."""
    assert "s3cret" not in path_token_proxy.stderr, path_token_proxy.stderr
    url = path_token_proxy.url("/fetch/s3cret/mcp")
    session = open_raw_session(http, url)
    call = rpc_request("tools/call", {"name": "echo", "arguments": {"message": "logged?"}})
    assert result_text(post_rpc(http, url, call, session).body) == "Echo: logged?"
    assert http.delete(url, headers=session_headers(session)).status_code in (200, 204)
    pager = path_token_proxy.url("/pager/s3cret/mcp")
    open_raw_session(http, pager, {"Authorization": "Bearer pg"})
    assert wait_until(lambda: path_token_proxy.stderr.count(": started") >= 2, timeout=10), path_token_proxy.stderr
    assert "s3cret" not in path_token_proxy.stderr, path_token_proxy.stderr


def test_merged_cursors_do_not_name_the_server(path_token_proxy, http):
    """A paginating server (its own script) behind a path token: the merged cursor carries
    neither its name nor its path token, and still leads to the second page."""
    url = path_token_proxy.url("/mcp")
    headers = {"Authorization": "Bearer pg"}
    session = open_raw_session(http, url, headers)
    first = post_rpc(http, url, rpc_request("tools/list"), session, headers)
    assert [t["name"] for t in first.body["result"]["tools"]] == ["pager__one"], first.body
    cursor = first.body["result"].get("nextCursor")
    assert isinstance(cursor, str) and cursor, first.body
    assert "pager" not in cursor and "s3cret" not in cursor, f"the merged cursor names the server: {cursor!r}"
    second = post_rpc(http, url, rpc_request("tools/list", {"cursor": cursor}), session, headers)
    assert [t["name"] for t in second.body["result"]["tools"]] == ["pager__two"], second.body
    assert "nextCursor" not in second.body["result"], second.body


# --------------------------------------------------------------------------
# 4. Empty tokens are configuration errors
# --------------------------------------------------------------------------


def test_an_empty_token_is_a_config_error_naming_the_server(proxy_bin, tmp_path):
    config = {"mcpProxy": {"options": {"panicIfInvalid": True}}, "mcpServers": {"gh": tiny_entry([""])}}
    done = run_proxy_to_exit(proxy_bin, "--config", write_config(tmp_path, config))
    assert done.returncode != 0, f"started with an empty token:\n{done.stderr}"
    assert "mcpServers.gh.options.authTokens[0]" in done.stderr, done.stderr


def test_an_empty_token_from_the_environment_is_a_config_error(proxy_bin, tmp_path):
    config = {"mcpProxy": {"options": {"panicIfInvalid": True}}, "mcpServers": {"gh": tiny_entry(["${GH_TOKEN_E2E}"])}}
    path = write_config(tmp_path, config)
    done = run_proxy_to_exit(proxy_bin, "--expand-env", "--config", path, env=clean_env(GH_TOKEN_E2E=""))
    assert done.returncode != 0, f"started with a token expanded to '':\n{done.stderr}"
    assert "mcpServers.gh.options.authTokens[0]" in done.stderr, done.stderr


# --------------------------------------------------------------------------
# 5. forwardAuthorization never forwards the proxy's own credentials
# --------------------------------------------------------------------------


def test_forward_authorization_never_forwards_a_consumed_credential(start_proxy, tmp_path, http, loopback_server):
    upstream = loopback_server()
    config = {
        "mcpServers": {
            "rec": {"transportType": "streamable-http", "url": upstream.url("/mcp"),
                    "options": {"forwardAuthorization": True}},
        }
    }
    proxy = start_proxy("--apiKey", "the-key", "--config", write_config(tmp_path, config), command=())
    url = proxy.url("/rec/mcp")

    # The API key sent as a bearer token: consumed by the proxy, so it must not leave.
    api_key_as_bearer = {"Authorization": "Bearer the-key"}
    session = open_raw_session(http, url, api_key_as_bearer)
    assert tool_names(http, url, session, api_key_as_bearer) == ["echo"]
    posts = [seen for seen in upstream.seen if seen.method == "POST"]
    assert len(posts) >= 3, f"initialize, initialized and tools/list reach the upstream: {posts}"
    leaked = [(seen.path, seen.header("authorization")) for seen in upstream.seen if seen.header("authorization")]
    assert not leaked, f"the proxy's API key reached the upstream: {leaked}"

    # The key in X-API-Key and the user's own token in Authorization: that one is forwarded.
    upstream.clear()
    own = {"X-API-Key": "the-key", "Authorization": "Bearer users-own"}
    session = open_raw_session(http, url, own)
    assert tool_names(http, url, session, own) == ["echo"]
    posts = [seen for seen in upstream.seen if seen.method == "POST"]
    assert posts and all(seen.header("authorization") == ["Bearer users-own"] for seen in posts), [
        seen.header("authorization") for seen in posts
    ]
    assert not any("the-key" in value for seen in upstream.seen for _, value in seen.headers), "X-API-Key left"


def remote_entry(url: str, **options: Any) -> dict:
    """A Streamable HTTP upstream entry (``options`` as given)."""
    entry: dict[str, Any] = {"transportType": "streamable-http", "url": url}
    if options:
        entry["options"] = options
    return entry


def authorizations_seen(server: LoopbackServer) -> list[list[str]]:
    """The Authorization values of every request ``server`` received, request by request."""
    return [seen.header("authorization") for seen in server.seen]


def assert_reached_without_authorization(server: LoopbackServer, credential: str) -> None:
    posts = [seen for seen in server.seen if seen.method == "POST"]
    assert len(posts) >= 3, f"initialize, initialized and tools/list reach the upstream: {[s.body for s in posts]}"
    leaked = [(seen.method, seen.header("authorization")) for seen in server.seen if seen.header("authorization")]
    assert not leaked, f"{credential!r}, consumed by the proxy, reached the upstream: {leaked}"
    assert not any(credential in value for seen in server.seen for _, value in seen.headers), "under another header"


@pytest.fixture
def forwarding_proxy(start_proxy, tmp_path, loopback_server):
    """Two recorders behind forwardAuthorization: `locked` (its own token `srv-token`) and
    `open` (no token); the admin token is `adm`."""
    locked, opened = loopback_server(), loopback_server()
    config = {
        "mcpServers": {
            "locked": remote_entry(locked.url("/mcp"), forwardAuthorization=True, authTokens=["srv-token"]),
            "open": remote_entry(opened.url("/mcp"), forwardAuthorization=True),
        }
    }
    proxy = start_proxy("--config", write_config(tmp_path, config), "--admin-token", "adm", command=())
    return proxy, locked, opened


def forwarded_control(http: httpx.Client, proxy: ProxyProcess, recorder: LoopbackServer) -> None:
    """An Authorization no proxy check used is forwarded, on every request (the control case)."""
    recorder.clear()
    own = {"Authorization": "Bearer users-own-oauth"}
    url = proxy.url("/open/mcp")
    session = open_raw_session(http, url, own)
    assert tool_names(http, url, session, own) == ["echo"]
    posts = [seen for seen in recorder.seen if seen.method == "POST"]
    assert len(posts) >= 3 and all(seen.header("authorization") == ["Bearer users-own-oauth"] for seen in posts), (
        authorizations_seen(recorder)
    )


def test_forward_authorization_never_forwards_a_server_token(forwarding_proxy, http):
    """`Bearer srv-token` opens /locked (its authTokens): consumed there, so `locked`'s upstream
    never sees it (nor a spelling the check also accepts); nor does `open`'s when the same
    token is sent to /open or to the merged endpoint (it is still one of the proxy's
    credentials). A token of the user's own IS forwarded (control)."""
    proxy, locked, opened = forwarding_proxy
    # The token is what opens the door: without it, 401 (so it really is consumed by the check).
    with httpx.Client(timeout=15) as fresh:
        assert post_rpc(fresh, proxy.url("/locked/mcp"), initialize_request()).status == 401
    for value in ("Bearer srv-token", "BEARER srv-token", "Bearer  srv-token"):
        locked.clear()
        token = {"Authorization": value}
        session = open_raw_session(http, proxy.url("/locked/mcp"), token)
        assert tool_names(http, proxy.url("/locked/mcp"), session, token) == ["echo"]
        assert_reached_without_authorization(locked, "srv-token")

    token = {"Authorization": "Bearer srv-token"}
    session = open_raw_session(http, proxy.url("/open/mcp"), token)
    assert tool_names(http, proxy.url("/open/mcp"), session, token) == ["echo"]
    assert_reached_without_authorization(opened, "srv-token")

    locked.clear()
    opened.clear()
    session = open_raw_session(http, proxy.url("/mcp"), token)
    assert sorted(tool_names(http, proxy.url("/mcp"), session, token)) == ["locked__echo", "open__echo"]
    assert_reached_without_authorization(locked, "srv-token")
    assert_reached_without_authorization(opened, "srv-token")

    forwarded_control(http, proxy, opened)
    assert not any("srv-token" in value for seen in opened.seen for _, value in seen.headers)


@pytest.mark.parametrize("value", ["Bearer adm", "bearer adm"])
def test_forward_authorization_never_forwards_an_admin_token(forwarding_proxy, http, value):
    """The admin token (it opens /api/servers) sent to /open: never forwarded, not even when a
    session opened with the user's own token switches to it later; the control is forwarded."""
    proxy, _, opened = forwarding_proxy
    admin = {"Authorization": value}
    assert http.get(proxy.url("/api/servers"), headers=admin).status_code == 200, "it is the admin token"
    url = proxy.url("/open/mcp")
    session = open_raw_session(http, url, admin)
    assert tool_names(http, url, session, admin) == ["echo"]
    assert_reached_without_authorization(opened, "adm")

    forwarded_control(http, proxy, opened)
    own = {"Authorization": "Bearer users-own-oauth"}
    session = open_raw_session(http, url, own)
    opened.clear()
    assert tool_names(http, url, session, admin) == ["echo"], "the session's later request, with the admin token"
    lists = [seen for seen in opened.seen if b'"tools/list"' in seen.body]
    assert len(lists) == 1, [seen.body for seen in opened.seen]
    assert not any("adm" in header for seen in opened.seen for header in seen.header("authorization")), (
        authorizations_seen(opened)
    )


def open_temporary(client: httpx.Client, proxy: ProxyProcess, entry: dict, headers: dict) -> Any:
    """``POST /sse`` with ``{"config": entry}``: the streaming response (a context manager)."""
    return client.stream("POST", proxy.url("/sse"), json={"config": entry},
                         headers={**headers, "Accept": "text/event-stream"})


def test_a_temporary_server_never_gets_the_admin_token_that_opened_it(start_proxy, tmp_path, loopback_server):
    """A temporary server with forwardAuthorization: the admin token opens it and its messages
    endpoint (consumed twice), and never reaches the upstream."""
    upstream = loopback_server()
    proxy = start_proxy("--config", write_config(tmp_path, {"mcpServers": {"tiny": tiny_entry()}}),
                        "--admin-token", "adm", "--allow-runtime-hosts", "127.0.0.1", command=())
    entry = remote_entry(upstream.url("/mcp"), forwardAuthorization=True)
    with httpx.Client(timeout=15) as streamer, httpx.Client(timeout=15) as poster:
        with open_temporary(streamer, proxy, entry, ADMIN) as stream:
            assert stream.status_code == 200, stream.read()
            events = SseReader(stream)
            endpoint = next(events)
            assert endpoint.event == "endpoint" and "/temporary-" in endpoint.data, endpoint
            messages = proxy.url(endpoint.data)
            init = initialize_request()
            assert poster.post(messages, json=init, headers=ADMIN).status_code == 202
            answer = events.next_message(init["id"])
            assert answer["result"]["serverInfo"]["name"] == "recorder", answer
            assert poster.post(messages, json=rpc_notification("notifications/initialized"),
                               headers=ADMIN).status_code == 202
            listed = rpc_request("tools/list")
            assert poster.post(messages, json=listed, headers=ADMIN).status_code == 202
            assert [t["name"] for t in events.next_message(listed["id"])["result"]["tools"]] == ["echo"]
    assert_reached_without_authorization(upstream, "adm")


# --------------------------------------------------------------------------
# 6. SSRF: servers added at run time stay off the proxy's own network
# --------------------------------------------------------------------------

ADMIN = {"Authorization": "Bearer adm"}


def add_remote(http: httpx.Client, proxy: ProxyProcess, url: str, name: str = "x", **extra: Any) -> httpx.Response:
    entry = {"transportType": "streamable-http", "url": url, **extra}
    return http.post(proxy.url("/api/servers"), headers=ADMIN, json={"name": name, "config": entry})


def loopback_dns_name() -> str | None:
    """A DNS name (not `localhost`) that resolves to a loopback or private address here."""
    import ipaddress

    for name in (socket.gethostname(), "vm", "runsc"):
        if not name or name.lower().rstrip(".").endswith("localhost"):
            continue
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)}
        except OSError:
            continue
        if addresses and all(not ipaddress.ip_address(a).is_global for a in addresses):
            return name
    return None


def test_runtime_servers_may_not_name_internal_addresses(start_proxy, tmp_path, http, loopback_server):
    upstream = loopback_server()
    proxy = start_proxy("--config", write_config(tmp_path, {"mcpServers": {"tiny": tiny_entry()}}),
                        "--admin-token", "adm", command=())
    for url in (upstream.url("/mcp"), "http://localhost/mcp", "http://localhost./mcp",
                "http://169.254.169.254/latest/meta-data", "http://[::1]/mcp", "http://10.0.0.1/mcp",
                "http://[::ffff:127.0.0.1]/mcp"):
        refused = add_remote(http, proxy, url)
        assert refused.status_code == 400, (url, refused.status_code, refused.text)
        assert "not a public address" in refused.text, (url, refused.text)
    assert post_rpc(http, proxy.url("/x/mcp"), initialize_request()).status == 404, "nothing was added"
    assert upstream.seen == [], "the proxy connected to a refused URL"


def test_runtime_servers_may_not_expand_environment_variables(start_proxy, tmp_path, http):
    proxy = start_proxy("--config", write_config(tmp_path, {"mcpServers": {"tiny": tiny_entry()}}),
                        "--admin-token", "adm", command=(), env={"AWS_SECRET_ACCESS_KEY": "aws-e2e-secret"})
    for extra in ({"headers": {"Authorization": "Bearer ${AWS_SECRET_ACCESS_KEY}"}}, {}):
        url = "https://mcp.example.com/mcp" + ("?k=${AWS_SECRET_ACCESS_KEY}" if not extra else "")
        refused = add_remote(http, proxy, url, **extra)
        assert refused.status_code == 400, (extra, refused.status_code, refused.text)
        assert "aws-e2e-secret" not in refused.text
    listed = http.get(proxy.url("/api/servers"), headers=ADMIN).json()
    assert [s["name"] for s in listed["servers"]] == ["tiny"]


def test_allowed_runtime_hosts_are_reachable(start_proxy, tmp_path, http, loopback_server):
    upstream = loopback_server()
    proxy = start_proxy("--config", write_config(tmp_path, {"mcpServers": {"tiny": tiny_entry()}}),
                        "--admin-token", "adm", "--allow-runtime-hosts", "127.0.0.1", command=())
    added = add_remote(http, proxy, upstream.url("/mcp"))
    assert added.status_code == 201, added.text
    reply = post_rpc(http, proxy.url("/x/mcp"), initialize_request())
    assert reply.status == 200 and reply.body["result"]["serverInfo"]["name"] == "recorder", reply.body
    assert any(b'"initialize"' in seen.body for seen in upstream.seen)
    assert add_remote(http, proxy, "http://10.0.0.1/mcp", name="y").status_code == 400, "only the named host"


def test_a_dns_name_resolving_inside_is_refused_at_connect_time(start_proxy, tmp_path, http, loopback_server):
    """A name (accepted: it is a name) that resolves to loopback: every request fails, nothing connects."""
    name = loopback_dns_name()
    if name is None:
        pytest.skip("no DNS name other than localhost resolves to a loopback/private address here")
    upstream = loopback_server()
    proxy = start_proxy("--config", write_config(tmp_path, {"mcpServers": {"tiny": tiny_entry()}}),
                        "--admin-token", "adm", command=())
    added = add_remote(http, proxy, f"http://{name}:{upstream.port}/mcp")
    assert added.status_code == 201, f"{name}: {added.status_code} {added.text}"
    reply = post_rpc(http, proxy.url("/x/mcp"), initialize_request())
    assert rpc_error_code(reply.body) is not None, f"{name} resolved inside and was used: {reply.status} {reply.body!r}"
    assert "public address" in reply.body["error"]["message"], reply.body
    assert upstream.seen == [], f"the proxy connected to {name} -> loopback: {upstream.seen}"


#: Internal URLs a temporary server may not name, and what the refusal says.
INTERNAL_URLS = (
    "http://127.0.0.1:{port}/mcp",
    "http://10.0.0.1/mcp",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]:{port}/mcp",
)


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
def test_temporary_servers_may_not_name_internal_addresses(start_proxy, tmp_path, loopback_server, transport):
    """`POST /sse` with an admin token and a config naming loopback, private, link-local or
    IPv6 loopback: 400 naming the rule, no stream, no temporary server, no connection."""
    upstream = loopback_server()
    proxy = start_proxy("--config", write_config(tmp_path, {"mcpServers": {"tiny": tiny_entry()}}),
                        "--admin-token", "adm", command=())
    with httpx.Client(timeout=15) as client:
        for template in INTERNAL_URLS:
            url = template.format(port=upstream.port)
            entry = {"transportType": transport, "url": url} if transport != "sse" else {"url": url}
            with open_temporary(client, proxy, entry, ADMIN) as refused:
                body = refused.read().decode(errors="replace")
            assert refused.status_code == 400, (url, refused.status_code, body)
            assert "not a public address" in body and "--allow-runtime-hosts" in body, (url, body)
            assert not refused.headers.get("content-type", "").startswith("text/event-stream"), url
        listed = client.get(proxy.url("/api/servers"), headers=ADMIN).json()
    assert [s["name"] for s in listed["servers"]] == ["tiny"], "a refused temporary server was listed"
    assert "temporary server temporary-" not in proxy.stderr, proxy.stderr
    time.sleep(0.2)  # a connection the proxy made anyway would have arrived by now
    assert upstream.seen == [], f"the proxy connected to a refused URL: {upstream.seen}"


def test_allow_runtime_hosts_opens_a_named_exception_for_temporary_servers(start_proxy, tmp_path, loopback_server):
    """With `--allow-runtime-hosts 127.0.0.1` the loopback recorder serves a temporary session;
    10.0.0.1 and 169.254.169.254 are still refused."""
    upstream = loopback_server()
    proxy = start_proxy("--config", write_config(tmp_path, {"mcpServers": {"tiny": tiny_entry()}}),
                        "--admin-token", "adm", "--allow-runtime-hosts", "127.0.0.1", command=())
    with httpx.Client(timeout=15) as streamer, httpx.Client(timeout=15) as poster:
        for url in ("http://10.0.0.1/mcp", "http://169.254.169.254/latest/meta-data"):
            with open_temporary(poster, proxy, remote_entry(url), ADMIN) as refused:
                body = refused.read().decode(errors="replace")
            assert refused.status_code == 400 and "not a public address" in body, (url, refused.status_code, body)
        with open_temporary(streamer, proxy, remote_entry(upstream.url("/mcp")), ADMIN) as stream:
            assert stream.status_code == 200, stream.read()
            events = SseReader(stream)
            endpoint = next(events)
            assert endpoint.event == "endpoint", endpoint
            init = initialize_request()
            assert poster.post(proxy.url(endpoint.data), json=init, headers=ADMIN).status_code == 202
            answer = events.next_message(init["id"])
            assert answer["result"]["serverInfo"]["name"] == "recorder", answer
    assert any(b'"initialize"' in seen.body for seen in upstream.seen), upstream.seen


# --------------------------------------------------------------------------
# 7. An upstream cannot send messages elsewhere: same-origin endpoints, no redirects
# --------------------------------------------------------------------------


def test_legacy_sse_endpoint_on_another_origin_is_not_followed(start_proxy, tmp_path, http, loopback_server):
    thief = loopback_server()

    def legacy_sse(handler: Any, seen: Seen, server: LoopbackServer) -> None:
        if seen.method != "GET":
            return send(handler, 202)
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(f"event: endpoint\ndata: {thief.url('/steal')}\n\n".encode())
        handler.wfile.flush()
        server.stopping.wait(30)  # the stream stays open until the test ends

    upstream = loopback_server(legacy_sse)
    config = {"mcpServers": {"legacy": {"url": upstream.url("/sse"),
                                        "headers": {"Authorization": "Bearer upstream-secret"}}}}
    proxy = start_proxy("--config", write_config(tmp_path, config), command=())
    reply = post_rpc(http, proxy.url("/legacy/mcp"), initialize_request())
    assert reply.status >= 400 or rpc_error_code(reply.body) is not None, (reply.status, reply.body)
    assert "result" not in (reply.body or {}), reply.body
    proxy.wait_for_log("another origin")
    assert [seen.method for seen in upstream.seen] == ["GET"], "the SSE stream was opened"
    assert thief.seen == [], f"the other origin got requests: {[(s.method, s.path, s.headers) for s in thief.seen]}"


@pytest.mark.parametrize("status", [302, 307, 308])
def test_a_redirecting_upstream_is_not_followed(start_proxy, tmp_path, http, loopback_server, status):
    """An upstream (Streamable HTTP, or legacy SSE whose GET stream is redirected) that answers
    every request with a redirect to another local server: the proxy does not follow it (that
    server sees no request, so none of the configured or forwarded credentials), and the client
    gets a JSON-RPC error naming the status."""
    thief = loopback_server()

    def redirect(handler: Any, seen: Seen, server: LoopbackServer) -> None:
        send(handler, status, headers=[("Location", thief.url("/mcp"))])

    redirector = loopback_server(redirect)
    config = {
        "mcpServers": {
            "configured": {"transportType": "streamable-http", "url": redirector.url("/mcp"),
                           "headers": {"Authorization": "Bearer upstream-secret", "X-Upstream-Key": "key-e2e"}},
            "forwarding": remote_entry(redirector.url("/mcp"), forwardAuthorization=True),
            "legacy": {"url": redirector.url("/sse"), "headers": {"Authorization": "Bearer upstream-secret"}},
        }
    }
    proxy = start_proxy("--config", write_config(tmp_path, config), command=())
    clients = (("configured", {}), ("forwarding", {"Authorization": "Bearer users-own-oauth"}), ("legacy", {}))
    for name, headers in clients:
        reply = post_rpc(http, proxy.url(f"/{name}/mcp"), initialize_request(), headers=headers)
        assert "result" not in (reply.body or {}), f"{name}: a redirect was followed: {reply.body!r}"
        assert reply.status >= 400 or rpc_error_code(reply.body) is not None, (name, reply.status, reply.body)
        message = json.dumps(reply.body)
        assert f"HTTP {status}" in message, f"{name}: the error does not say what happened: {reply.body!r}"
        assert thief.url("/") not in message, reply.body
    # The redirector got the requests (with the credentials), the other server nothing at all.
    assert redirector.seen, "the upstream was never asked"
    assert any(s.header("authorization") == ["Bearer upstream-secret"] for s in redirector.seen)
    assert any(s.header("authorization") == ["Bearer users-own-oauth"] for s in redirector.seen)
    assert any(s.method == "GET" and s.path == "/sse" for s in redirector.seen), "the legacy stream was asked"
    time.sleep(0.2)  # a followed redirect would have arrived by now
    assert thief.seen == [], f"the redirect was followed: {[(s.method, s.path, s.headers) for s in thief.seen]}"


# --------------------------------------------------------------------------
# 8. Remote configurations
# --------------------------------------------------------------------------


def test_a_remote_config_over_plain_http_off_loopback_is_refused(proxy_bin):
    done = run_proxy_to_exit(proxy_bin, "--config", "http://example.invalid/c.json")
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "https" in done.stderr, done.stderr


def test_a_remote_config_from_loopback_works_but_is_never_expanded(start_proxy, proxy_bin, http, loopback_server):
    served = json.dumps({"mcpServers": {"tiny": tiny_entry()}}).encode()
    config_server = loopback_server(lambda handler, seen, server: send(handler, 200, served))
    url = config_server.url("/c.json")
    expanded = run_proxy_to_exit(proxy_bin, "--config", url, "--expand-env")
    assert expanded.returncode == 2, (expanded.returncode, expanded.stderr)
    assert "applies to local files only" in expanded.stderr, expanded.stderr
    proxy = start_proxy("--config", url, command=())
    assert post_rpc(http, proxy.url("/tiny/mcp"), initialize_request()).status == 200


# --------------------------------------------------------------------------
# 9. What a child's environment holds
# --------------------------------------------------------------------------

SECRETS = {
    "MCP_PROXY_API_KEY": "apikey-e2e-0001",
    "MCP_PROXY_ADMIN_TOKEN": "admintoken-e2e-0002",
    # A valid key (the proxy reads it: replicas share it), and a secret like the others.
    "MCP_PROXY_SESSION_KEY": "1b44db8bedffa759fecbac1c7165a372b0440074dcb7e14a3ef288a1150809fb",
    "MCP_PROXY_OTHER": "other-e2e-0004",
}
USER_ENV = {"MY_TOKEN": "mine-e2e-0005"}


def environment_of_child(http: httpx.Client, url: str, headers: dict | None = None) -> dict[str, str]:
    """Calls server-everything's `get-env` through the proxy: the child's whole environment."""
    session = open_raw_session(http, url, headers)
    reply = post_rpc(http, url, rpc_request("tools/call", {"name": "get-env", "arguments": {}}), session, headers)
    assert reply.status == 200, (reply.status, reply.body)
    return json.loads(result_text(reply.body))


def assert_no_proxy_secrets(environment: dict[str, str]) -> None:
    own = sorted(name for name in environment if name.startswith("MCP_PROXY_"))
    assert not own, f"the child sees the proxy's variables: {own}"
    values = set(SECRETS.values())
    copies = sorted(name for name, value in environment.items() if value in values)
    assert not copies, f"the child sees the proxy's secrets under other names: {copies}"


def test_the_bridge_child_gets_the_users_environment_but_no_proxy_secret(start_proxy, http):
    key = SECRETS["MCP_PROXY_API_KEY"]
    proxy = start_proxy("--apiKey", key, env={**SECRETS, **USER_ENV, "KEY_COPY": key})
    environment = environment_of_child(http, proxy.mcp_url, {"X-API-Key": key})
    assert environment.get("MY_TOKEN") == USER_ENV["MY_TOKEN"], "the bridge passes the user's environment on"
    assert "KEY_COPY" not in environment, "a variable holding the API key is dropped"
    assert_no_proxy_secrets(environment)


@pytest.mark.parametrize("mode", ["default", "inheritEnv", "pass-environment"])
def test_configured_servers_get_a_short_environment_unless_told(start_proxy, tmp_path, http, mode):
    options = {"inheritEnv": True} if mode == "inheritEnv" else {}
    servers = {"ev": everything_entry(**options)}
    if mode == "pass-environment":
        servers["ev2"] = everything_entry()
    args = ["--pass-environment"] if mode == "pass-environment" else []
    proxy = start_proxy("--config", write_config(tmp_path, {"mcpServers": servers}), *args, command=(),
                        env={**SECRETS, **USER_ENV})
    key = {"X-API-Key": SECRETS["MCP_PROXY_API_KEY"]}  # the variable sets the proxy's API key
    for name in servers:
        environment = environment_of_child(http, proxy.url(f"/{name}/mcp"), key)
        assert "PATH" in environment and "HOME" in environment, sorted(environment)
        if mode == "default":
            assert "MY_TOKEN" not in environment, f"{name}: a configured server inherited MY_TOKEN"
        else:
            assert environment.get("MY_TOKEN") == USER_ENV["MY_TOKEN"], f"{name} ({mode}): {sorted(environment)}"
        assert_no_proxy_secrets(environment)


def test_a_config_header_value_never_reaches_a_child(start_proxy, http, loopback_server):
    """--config-header "X-Secret: hdr-secret-value" and LEAKY=hdr-secret-value: inheritEnv drops LEAKY."""
    served = json.dumps({"mcpServers": {"ev": everything_entry(inheritEnv=True)}}).encode()

    def config_with_secret(handler: Any, seen: Seen, server: LoopbackServer) -> None:
        if seen.header("x-secret") == ["hdr-secret-value"]:
            send(handler, 200, served)
        else:
            send(handler, 401)

    config_server = loopback_server(config_with_secret)
    proxy = start_proxy("--config", config_server.url("/c.json"), "--config-header", "X-Secret: hdr-secret-value",
                        command=(), env={"LEAKY": "hdr-secret-value", **USER_ENV})
    environment = environment_of_child(http, proxy.url("/ev/mcp"))
    assert environment.get("MY_TOKEN") == USER_ENV["MY_TOKEN"], "inheritEnv passes the environment on"
    assert "LEAKY" not in environment, "a variable holding a --config-header value reached the child"
    assert "hdr-secret-value" not in json.dumps(environment)


# --------------------------------------------------------------------------
# 10. Grandchildren end with their child
# --------------------------------------------------------------------------

#: A stdio server that starts `sleep 300` (same process group), and exits after a tools/call.
FORKER_SOURCE = r'''
import json, os, subprocess, sys
grandchild = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
sys.stderr.write(f"forker grandchild pid {grandchild.pid}\n")
sys.stderr.flush()
for line in sys.stdin:
    message = json.loads(line)
    if "id" not in message or "method" not in message:
        continue
    params = message.get("params") or {}
    if message["method"] == "initialize":
        result = {"protocolVersion": params.get("protocolVersion"), "capabilities": {"tools": {}},
                  "serverInfo": {"name": "forker", "version": "0"}}
    elif message["method"] == "tools/call":
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": message["id"],
                                     "result": {"content": [{"type": "text", "text": "bye"}]}}) + "\n")
        sys.stdout.flush()
        os._exit(0)
    else:
        result = {}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}) + "\n")
    sys.stdout.flush()
'''


def test_grandchildren_do_not_outlive_a_child_that_exits(start_proxy, tmp_path, http):
    script = tmp_path / "forker.py"
    script.write_text(FORKER_SOURCE)
    proxy = start_proxy(command=(sys.executable, str(script)))
    session = open_raw_session(http, proxy.mcp_url)
    grandchild = int(proxy.wait_for_log(r"forker grandchild pid (\d+)").group(1))
    try:
        assert pid_alive(grandchild), "the grandchild runs while its parent does"
        child = [pid for pid in proxy.descendants() if "forker.py" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert len(child) == 1, child
        post_rpc(http, proxy.mcp_url, rpc_request("tools/call", {"name": "exit", "arguments": {}}), session)
        assert wait_until(lambda: not pid_alive(child[0]), timeout=10), "the child did not exit"
        assert wait_until(lambda: not pid_alive(grandchild), timeout=10), "`sleep 300` outlived its parent"
    finally:
        try:
            os.kill(grandchild, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    assert http.get(proxy.url("/ping")).text == "pong"


# --------------------------------------------------------------------------
# 11. Listening beyond loopback: browsers and DNS rebinding
# --------------------------------------------------------------------------


def non_loopback_ipv4() -> str | None:
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for address in out.split():
        if "." in address and not address.startswith("127."):
            return address
    return None


def init_status(http: httpx.Client, base: str, headers: dict | None = None) -> int:
    return post_rpc(http, base + "/mcp", initialize_request(), headers=headers).status


def test_beyond_loopback_only_configured_origins_are_served(start_proxy, http):
    address = non_loopback_ipv4()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    default = start_proxy("--host", "0.0.0.0", command=TINY_COMMAND)
    remote = f"http://{address}:{default.port}"
    assert init_status(http, remote) == 200, "a client without Origin is served"
    for origin in ("https://evil.example", "http://localhost:6274", "null"):
        assert init_status(http, remote, {"Origin": origin}) == 403, f"Origin {origin} from beyond loopback"
    listed = start_proxy("--host", "0.0.0.0", "--cors-origin", "https://app.example", command=TINY_COMMAND)
    remote = f"http://{address}:{listed.port}"
    assert init_status(http, remote, {"Origin": "https://app.example"}) == 200
    assert init_status(http, remote, {"Origin": "https://evil.example"}) == 403
    wildcard = start_proxy("--host", "0.0.0.0", "--cors-origin", "*", command=TINY_COMMAND)
    assert init_status(http, f"http://{address}:{wildcard.port}", {"Origin": "https://evil.example"}) == 200


def test_listening_everywhere_still_checks_host_on_loopback_and_warns(start_proxy, http):
    proxy = start_proxy("--host", "0.0.0.0", command=TINY_COMMAND)
    local = f"http://127.0.0.1:{proxy.port}"
    assert init_status(http, local) == 200
    assert init_status(http, local, {"Host": "evil.example"}) == 403, "a rebound name on loopback"
    assert init_status(http, local, {"Origin": "https://evil.example"}) == 403
    proxy.wait_for_log(r"listening beyond loopback .* without --apiKey")
    keyed = start_proxy("--host", "0.0.0.0", "--apiKey", "k", command=TINY_COMMAND)
    keyed.wait_for_log(r"SSE: http")  # logged after the warning would have been
    assert "listening beyond loopback" not in keyed.stderr, keyed.stderr


# --------------------------------------------------------------------------
# 12. --sslCa is mutual TLS
# --------------------------------------------------------------------------


def test_ssl_ca_requires_a_client_certificate(start_proxy, tmp_path):
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    cert_pem, key_pem, ca_pem = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    server.private_key_pem.write_to_path(str(key_pem))
    cert_pem.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_pem))
    proxy = start_proxy("--sslCert", str(cert_pem), "--sslKey", str(key_pem), "--sslCa", str(ca_pem),
                        command=TINY_COMMAND)

    anonymous = ssl.create_default_context()
    ca.configure_trust(anonymous)
    with httpx.Client(verify=anonymous, timeout=15) as client:
        with pytest.raises(httpx.HTTPError):
            client.get(proxy.url("/ping"))
        with pytest.raises(httpx.HTTPError):
            post_rpc(client, proxy.mcp_url, initialize_request())

    with_cert = ssl.create_default_context()
    ca.configure_trust(with_cert)
    ca.issue_cert("e2e-client@example.test").configure_cert(with_cert)
    with httpx.Client(verify=with_cert, timeout=15) as client:
        reply = client.get(proxy.url("/ping"))
        assert reply.status_code == 200 and reply.text == "pong"


# --------------------------------------------------------------------------
# 13. Shared upstreams: one client cannot answer another's server request
# --------------------------------------------------------------------------


def test_a_shared_childs_request_can_be_answered_only_by_its_session(start_proxy, tmp_path, http):
    config = {"mcpServers": {"ev": everything_entry(shareUpstream=True)}}
    proxy = start_proxy("--config", write_config(tmp_path, config), command=())
    url = proxy.url("/ev/mcp")
    # A first: the shared child is initialized with A's parameters (elicitation declared).
    init = rpc_request("initialize", {"protocolVersion": PROTOCOL_VERSION, "capabilities": {"elicitation": {}},
                                      "clientInfo": {"name": "victim", "version": "0"}})
    opened = post_rpc(http, url, init)
    assert opened.status == 200 and opened.session_id, (opened.status, opened.body)
    session_a = opened.session_id
    assert post_rpc(http, url, rpc_notification("notifications/initialized"), session_a).status == 202
    session_b = open_raw_session(http, url)

    call = rpc_request("tools/call", {"name": "trigger-elicitation-request", "arguments": {}})
    with httpx.Client(timeout=httpx.Timeout(20.0)) as victim:
        with victim.stream("POST", url, content=json.dumps(call), headers=session_headers(session_a)) as stream:
            assert stream.status_code == 200, stream.read()
            events = SseReader(stream)
            while True:
                message = events.next_message()
                assert message.get("id") != call["id"], f"the call ended before asking: {message}"
                if message.get("method") == "elicitation/create":
                    break
            asked = message["id"]

            # B answers A's question (and guesses a few numeric ids): accepted at HTTP, never delivered.
            for guess in (asked, 0, 1, 2):
                forged = {"jsonrpc": "2.0", "id": guess,
                          "result": {"action": "accept", "content": {"name": "Mallory"}}}
                reply = post_rpc(http, url, forged, session_b)
                assert reply.status in (200, 202), (guess, reply.status, reply.body)
            proxy.wait_for_log("dropped an answer")

            declined = {"jsonrpc": "2.0", "id": asked, "result": {"action": "decline"}}
            assert post_rpc(http, url, declined, session_a).status == 202
            final = events.next_message(call["id"])
    text = result_text(final)
    assert "declined" in text and "Mallory" not in text, f"the child saw B's answer: {text}"


# --------------------------------------------------------------------------
# 14. Bounded under abuse
# --------------------------------------------------------------------------


def raise_open_files() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_idle_connections(port: int, count: int) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


@pytest.mark.timeout(180)
def test_ten_thousand_idle_connections_do_not_lock_clients_out(start_proxy, http):
    limit = raise_open_files()
    count = 10_000
    if limit < count + 500:
        pytest.skip(f"RLIMIT_NOFILE {limit} is too low for {count} connections from this process")
    proxy = start_proxy("--keepAliveTimeout", "600000", command=TINY_COMMAND)
    before = rss_mib(proxy.pid)
    sockets = open_idle_connections(proxy.port, count)
    try:
        with httpx.Client(timeout=15) as fresh:
            assert fresh.get(proxy.url("/ping")).text == "pong"
            session = open_raw_session(fresh, proxy.mcp_url)
            call = rpc_request("tools/call", {"name": "echo", "arguments": {"message": "still here"}})
            assert result_text(post_rpc(fresh, proxy.mcp_url, call, session).body) == "Echo: still here"
    finally:
        for sock in sockets:
            sock.close()
    assert proxy.proc.poll() is None
    assert http.get(proxy.url("/ping")).text == "pong"
    assert_rss_returns(proxy, before)


@pytest.mark.timeout(120)
def test_max_connections_evicts_the_oldest_idle_ones(start_proxy, http):
    raise_open_files()
    proxy = start_proxy("--keepAliveTimeout", "600000", "--maxConnections", "500", command=TINY_COMMAND)
    sockets = open_idle_connections(proxy.port, 2000)
    try:
        assert http.get(proxy.url("/ping")).text == "pong"
        closed = wait_until(lambda: sum(peer_closed(s) for s in sockets) >= 1500, timeout=10, interval=0.2)
        assert closed, f"only {sum(peer_closed(s) for s in sockets)} of 2000 idle connections were closed at cap 500"
        assert not peer_closed(sockets[-1]), "the newest idle connection is kept"
    finally:
        for sock in sockets:
            sock.close()


def wait_for_close_while(sock: socket.socket, trickle: Callable[[], bytes | None], interval: float, limit: float):
    """Sends ``trickle()`` every ``interval`` s until the proxy answers or closes; returns what it sent back.

    Fails when the connection is still open after ``limit`` seconds.
    """
    deadline = time.monotonic() + limit
    received = b""
    while time.monotonic() < deadline:
        data = trickle()
        if data:
            try:
                sock.sendall(data)
            except OSError:
                return received
        readable, _, _ = select.select([sock], [], [], interval)
        if readable:
            try:
                chunk = sock.recv(65536)
            except OSError:
                return received
            if not chunk:
                return received
            received += chunk
    raise AssertionError(f"the connection was still open after {limit}s (got {received[:200]!r})")


def test_slow_loris_headers_are_cut_off(start_proxy, http):
    """One connection trickles a header byte every 0.2 s, 100 others sit on 32 KiB of a head
    that never ends: all are closed on their deadline, and the proxy's memory comes back."""
    proxy = start_proxy("--keepAliveTimeout", "1000", command=TINY_COMMAND)
    before = rss_mib(proxy.pid)
    crowd: list[socket.socket] = []
    try:
        for n in range(100):
            sock = raw_connect("127.0.0.1", proxy.port)
            sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-%d: " % n + b"a" * 32 * 1024)
            crowd.append(sock)
        with raw_connect("127.0.0.1", proxy.port) as sock:
            sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            answer = wait_for_close_while(sock, lambda: b"a", interval=0.2, limit=15)
        assert answer == b"" or status_of(answer) in (400, 408, 431), answer[:300]
        assert wait_until(lambda: all(closed_by_peer(s) for s in crowd), timeout=15, interval=0.2), (
            f"{sum(not closed_by_peer(s) for s in crowd)} of 100 half-sent heads still open"
        )
    finally:
        for sock in crowd:
            sock.close()
    assert http.get(proxy.url("/ping")).text == "pong"
    assert_rss_returns(proxy, before, bound_mib=50)

# ---- HTTP/2 (h2c with prior knowledge: the proxy serves it on plain connections) -------

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_DATA, H2_HEADERS, H2_SETTINGS, H2_PING, H2_GOAWAY, H2_CONTINUATION = 0x0, 0x1, 0x4, 0x6, 0x7, 0x9
H2_END_STREAM, H2_ACK, H2_END_HEADERS = 0x1, 0x1, 0x4


def h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def hpack_literal(index: int, value: bytes) -> bytes:
    """A literal header field without indexing, its name from the static table (values < 127 bytes)."""
    assert index < 15 and len(value) < 127
    return bytes([index, len(value)]) + value


def h2_request_block(path: str, port: int, method_get: bool = True) -> bytes:
    """HPACK for `GET|POST path` on http://127.0.0.1:port (static table: 2 GET, 3 POST, 6 http)."""
    return (bytes([0x82 if method_get else 0x83, 0x86]) + hpack_literal(4, path.encode())
            + hpack_literal(1, f"127.0.0.1:{port}".encode()))


def h2_frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """The complete frames in ``data`` (kind, flags, stream, payload)."""
    frames, at = [], 0
    while at + 9 <= len(data):
        length = int.from_bytes(data[at:at + 3], "big")
        if at + 9 + length > len(data):
            break
        kind, flags = data[at + 3], data[at + 4]
        stream = int.from_bytes(data[at + 5:at + 9], "big") & 0x7FFFFFFF
        frames.append((kind, flags, stream, data[at + 9:at + 9 + length]))
        at += 9 + length
    return frames


def h2_open(port: int) -> socket.socket:
    """A connection that has sent the client preface and an empty SETTINGS frame."""
    sock = raw_connect("127.0.0.1", port)
    sock.sendall(H2_PREFACE + h2_frame(H2_SETTINGS, 0, 0))
    return sock


def h2_get(sock: socket.socket, path: str, port: int, stream: int = 1) -> bytes:
    """Sends a complete GET on ``stream`` (acknowledging the server's SETTINGS); returns the
    DATA of the response on that stream."""
    sock.sendall(h2_frame(H2_HEADERS, H2_END_HEADERS | H2_END_STREAM, stream, h2_request_block(path, port)))
    received, acked = b"", False
    deadline = time.monotonic() + SOCKET_TIMEOUT_S
    while True:
        frames = h2_frames(received)
        if not acked and any(k == H2_SETTINGS and not f & H2_ACK for k, f, _, _ in frames):
            sock.sendall(h2_frame(H2_SETTINGS, H2_ACK, 0))
            acked = True
        body = b"".join(p for k, _, s, p in frames if k == H2_DATA and s == stream)
        if any(k in (H2_DATA, H2_HEADERS) and s == stream and f & H2_END_STREAM for k, f, s, _ in frames):
            return body
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no complete h2 response within {SOCKET_TIMEOUT_S}s: {frames}"
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before the h2 response ended: {frames}"
        received += chunk


def assert_spoke_h2(received: bytes) -> list[int]:
    """The server answered as HTTP/2 (its first frame is SETTINGS), not an HTTP/1 refusal."""
    frames = h2_frames(received)
    assert frames and frames[0][0] == H2_SETTINGS and frames[0][2] == 0, (
        f"the server did not answer the h2 preface with SETTINGS: {received[:200]!r}"
    )
    return [kind for kind, _, _, _ in frames]


def test_http2_idle_connections_are_closed_on_their_deadline(start_proxy, http):
    """h2c: a connection that sends only the preface, and one that sends a request and then
    sits idle, are both closed after --keepAliveTimeout (plus the close grace)."""
    proxy = start_proxy("--keepAliveTimeout", "1000", command=TINY_COMMAND)
    with h2_open(proxy.port) as silent, h2_open(proxy.port) as used:
        assert h2_get(used, "/ping", proxy.port) == b"pong", "h2c prior knowledge is served (control)"
        nothing = wait_for_close_while(silent, lambda: None, interval=0.2, limit=15)
        assert_spoke_h2(nothing)
        wait_for_close_while(used, lambda: None, interval=0.2, limit=15)
    assert http.get(proxy.url("/ping")).text == "pong"


def goaway_codes(received: bytes) -> list[int]:
    return [int.from_bytes(p[4:8], "big") for kind, _, _, p in h2_frames(received) if kind == H2_GOAWAY]


def test_http2_slow_loris_is_cut_off(start_proxy, http):
    """h2c, three ways to hold a connection without ever completing a request head: 50
    connections send a HEADERS frame without END_HEADERS (plus 16 KiB of CONTINUATION) and go
    silent; one sends a PING every 0.2 s (traffic, but no request); one trickles a
    CONTINUATION byte every 0.2 s. All are closed (the first two on their deadline, with no
    protocol error), no request is answered, and the proxy's memory comes back."""
    proxy = start_proxy("--keepAliveTimeout", "1000", command=TINY_COMMAND)
    before = rss_mib(proxy.pid)
    # :method POST, :scheme http, :path /mcp, :authority, then "x-slow" with a 60000-byte value.
    head = h2_request_block("/mcp", proxy.port, method_get=False) + b"\x00\x06x-slow\x7f" + bytes([0xE1, 0xD3, 0x03])
    crowd: list[socket.socket] = []
    try:
        for _ in range(50):
            sock = h2_open(proxy.port)
            sock.sendall(h2_frame(H2_HEADERS, 0, 1, head) + h2_frame(H2_CONTINUATION, 0, 1, b"a" * 16384))
            crowd.append(sock)
        with h2_open(proxy.port) as pinger:
            pinged = wait_for_close_while(pinger, lambda: h2_frame(H2_PING, 0, 0, b"loris123"), interval=0.2, limit=15)
        kinds = assert_spoke_h2(pinged)
        assert any(k == H2_PING and f & H2_ACK for k, f, _, _ in h2_frames(pinged)), "the pings were answered"
        assert set(goaway_codes(pinged)) <= {0}, f"closed for an error, not the deadline: {goaway_codes(pinged)}"
        with h2_open(proxy.port) as loris:
            loris.sendall(h2_frame(H2_HEADERS, 0, 1, head))
            answer = wait_for_close_while(loris, lambda: h2_frame(H2_CONTINUATION, 0, 1, b"a"), interval=0.2, limit=15)
        kinds = assert_spoke_h2(answer)
        assert H2_HEADERS not in kinds, f"a request was answered: {h2_frames(answer)}"
        assert wait_until(lambda: all(closed_by_peer(s) for s in crowd), timeout=15, interval=0.2), (
            f"{sum(not closed_by_peer(s) for s in crowd)} of 50 half-sent h2 heads still open"
        )
    finally:
        for sock in crowd:
            sock.close()
    assert http.get(proxy.url("/ping")).text == "pong"
    assert_rss_returns(proxy, before, bound_mib=50)


def test_slow_bodies_get_408(start_proxy, http):
    proxy = start_proxy("--bodyTimeout", "1000", command=TINY_COMMAND)
    with raw_connect("127.0.0.1", proxy.port) as sock:
        sock.sendall(post_head("/mcp", "127.0.0.1", proxy.port, 1000))
        answer = wait_for_close_while(sock, lambda: b" ", interval=1.0, limit=15)
    assert answer == b"" or status_of(answer) == 408, answer[:300]
    assert http.get(proxy.url("/ping")).text == "pong"


def test_a_huge_batch_is_refused_without_hurting_the_session(start_proxy, http):
    """A ~10 MiB batch of pings (just under --maxBodySize): 400, -32600 'at most 100'; memory bounded."""
    proxy = start_proxy(command=TINY_COMMAND)
    session = open_raw_session(http, proxy.mcp_url)
    limit = 10_485_760
    parts, size, n = [], 2, 0
    while True:
        part = f'{{"jsonrpc":"2.0","id":{n},"method":"ping"}}'
        if size + len(part) + 1 >= limit:
            break
        parts.append(part)
        size += len(part) + 1
        n += 1
    body = ("[" + ",".join(parts) + "]").encode()
    assert limit - 100 < len(body) < limit, len(body)
    before = rss_mib(proxy.pid)
    reply = http.post(proxy.mcp_url, content=body, headers=session_headers(session))
    assert reply.status_code == 400, (reply.status_code, reply.text[:300])
    error = reply.json()
    assert rpc_error_code(error) == -32600 and "at most 100" in error["error"]["message"], error
    assert_rss_returns(proxy, before)
    ping = post_rpc(http, proxy.mcp_url, rpc_request("ping"), session)
    assert ping.status == 200 and ping.body["result"] == {}, ping


@pytest.mark.timeout(90)
def test_requests_beyond_256_in_flight_are_refused_at_once(start_proxy, http):
    proxy = start_proxy(command=TINY_COMMAND)
    session = open_raw_session(http, proxy.mcp_url)

    def sleeps(count: int) -> bytes:
        batch = [rpc_request("tools/call", {"name": "sleep", "arguments": {"seconds": 55}}) for _ in range(count)]
        return json.dumps(batch).encode()

    held: list[socket.socket] = []
    try:
        for count in (100, 100, 56):  # 256 requests waiting in the child
            body = sleeps(count)
            sock = raw_connect("127.0.0.1", proxy.port)
            sock.sendall(post_head("/mcp", "127.0.0.1", proxy.port, len(body), session) + body)
            held.append(sock)
        assert wait_until(lambda: proxy.stderr.count("tiny sleeping") >= 256, timeout=20), (
            f"{proxy.stderr.count('tiny sleeping')} of 256 sleeps reached the child"
        )
        one = post_rpc(http, proxy.mcp_url, rpc_request("tools/call", {"name": "echo", "arguments": {}}), session)
        assert rpc_error_code(one.body) == -32003, (one.status, one.body)
        rest = post_rpc(http, proxy.mcp_url, None, session, content=sleeps(43))
        assert isinstance(rest.body, list) and len(rest.body) == 43, rest.body
        assert {rpc_error_code(answer) for answer in rest.body} == {-32003}, rest.body
        assert proxy.stderr.count("tiny sleeping") == 256, "requests beyond the cap reached the child"
    finally:
        for sock in held:
            sock.close()
    assert http.delete(proxy.mcp_url, headers=session_headers(session)).status_code in (200, 204)
    assert http.get(proxy.url("/ping")).text == "pong"


def test_an_unauthenticated_large_body_is_refused_before_it_is_sent(merged_proxy):
    """Headers announcing 5 MB to a server that needs a token: the 401 comes without any body sent."""
    with raw_connect("127.0.0.1", merged_proxy.port) as sock:
        sock.sendall(post_head("/locked/mcp", "127.0.0.1", merged_proxy.port, 5_000_000))
        head = read_response_head(sock)
    assert status_of(head) == 401, head[:300]
    assert b"www-authenticate: bearer" in head.lower(), head[:300]


def test_an_early_refusal_says_the_connection_closes(merged_proxy):
    """The 401 above is sent before the body; if the proxy then closes the connection (it does
    not read a body it refused), the response must say `Connection: close`, or a keep-alive
    client that sends the body and its next request on the same connection loses that request
    ("Server disconnected without sending a response")."""
    with raw_connect("127.0.0.1", merged_proxy.port) as sock:
        sock.sendall(post_head("/locked/mcp", "127.0.0.1", merged_proxy.port, 20))
        head = read_response_head(sock)
        assert status_of(head) == 401, head[:300]
        if b"\r\nconnection: close" in head.lower():
            return
        try:  # no close announced: the connection must still serve the client's next request
            sock.sendall(b" " * 20)
            sock.sendall(f"GET /ping HTTP/1.1\r\nHost: 127.0.0.1:{merged_proxy.port}\r\n\r\n".encode())
            rest = head.split(b"\r\n\r\n", 1)[1]
            answer = read_response_head(sock) if b"HTTP/1.1" not in rest else rest
        except (OSError, AssertionError) as error:
            raise AssertionError(f"the 401 kept the connection open in its headers, then it was closed: {error}\n"
                                 f"{head.decode(errors='replace')}") from error
    assert b"200" in answer.split(b"\r\n", 1)[0], answer[:300]


@pytest.mark.timeout(120)
def test_many_sessions_flooding_the_event_store_stay_bounded(start_proxy, http):
    """20 sessions each stream ~13 MB of log notifications (400 events of 32 KiB, under the
    1000-event count), all kept for resumption only up to 4 MiB per session and 64 MiB in all:
    resuming every stream from its first event gets back no more than that, the proxy's RSS
    grows far less than the ~250 MiB that went through, and a new session still works."""
    proxy = start_proxy(command=TINY_COMMAND)
    warm = open_raw_session(http, proxy.mcp_url)
    assert post_rpc(http, proxy.mcp_url, rpc_request("ping"), warm).status == 200
    before = rss_mib(proxy.pid)
    sessions, count, size = 20, 400, 32 * 1024
    flooded: list[tuple[str, list[str]]] = []
    for _ in range(sessions):
        session = open_raw_session(http, proxy.mcp_url)
        call = rpc_request("tools/call", {"name": "flood", "arguments": {"count": count, "size": size}})
        with http.stream("POST", proxy.mcp_url, content=json.dumps(call), headers=session_headers(session)) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.status_code
            ids, final = [], None
            for event in SseReader(r):
                if event.data.strip():
                    ids.append(event.id)
                    message = json.loads(event.data)
                    if message.get("id") == call["id"]:
                        final = message
                        break
        assert final is not None and result_text(final) == f"flooded {count}", final
        assert len(ids) == count + 1 and all(ids), f"every event has an id: {ids[:3]}..."
        flooded.append((session, ids))
    grown = rss_mib(proxy.pid) - before
    sent_mib = sessions * count * size / 2**20
    assert grown < 200, f"RSS grew {grown:.0f} MiB while {sent_mib:.0f} MiB of events were stored (bound: 64 MiB)"

    # What the store still holds, stream by stream: resume each from its first event.
    kept: list[tuple[int, int]] = []
    for session, ids in flooded:
        headers = {**session_headers(session), "Accept": "text/event-stream", "Last-Event-ID": ids[0]}
        with http.stream("GET", proxy.mcp_url, headers=headers) as r:
            assert r.status_code == 200, (r.status_code, r.read()[:300])
            replayed = [event for event in SseReader(r) if event.data.strip()]
        assert all(event.id in ids[1:] for event in replayed), "a replay holds events of another stream"
        kept.append((len(replayed), sum(len(event.data) for event in replayed)))
    per_session = [b for _, b in kept]
    assert max(per_session) <= 4 * 2**20, f"a session kept more than 4 MiB: {max(per_session)} bytes"
    assert sum(per_session) <= 64 * 2**20, f"the store kept {sum(per_session) / 2**20:.1f} MiB in all"
    assert kept[-1][0] > 0, "the newest session's events are kept (resumption works: the control)"

    fresh = open_raw_session(http, proxy.mcp_url)
    call = rpc_request("tools/call", {"name": "echo", "arguments": {"message": "after the flood"}})
    assert result_text(post_rpc(http, proxy.mcp_url, call, fresh).body) == "Echo: after the flood"


# --------------------------------------------------------------------------
# 15. What children and upstreams send cannot break the proxy
# --------------------------------------------------------------------------

#: A stdio server whose `tools/call` writes to stderr: `bad` the bytes FF FE (not UTF-8) in a
#: line, `long` a 1 MiB line of them, `good` a plain line; it answers each.
STDERR_SOURCE = r'''
import json, os, sys
sys.stderr.buffer.write(f"stderr-child pid {os.getpid()}\n".encode()); sys.stderr.flush()
for line in sys.stdin:
    message = json.loads(line)
    if "id" not in message or "method" not in message:
        continue
    params = message.get("params") or {}
    if message["method"] == "initialize":
        result = {"protocolVersion": params.get("protocolVersion"), "capabilities": {"tools": {}},
                  "serverInfo": {"name": "stderr-child", "version": "0"}}
    elif message["method"] == "tools/call":
        name = params.get("name")
        if name == "bad":
            sys.stderr.buffer.write(b"bad \xff\xfe bytes\n")
        elif name == "long":
            sys.stderr.buffer.write(b"long \xff" + b"\xfe" * (1024 * 1024) + b"\n")
        else:
            sys.stderr.buffer.write(b"a later line, after the bad bytes\n")
        sys.stderr.buffer.flush()
        result = {"content": [{"type": "text", "text": "wrote " + name}]}
    else:
        result = {}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}) + "\n")
    sys.stdout.flush()
'''


class RawLogProxy:
    """The binary with its stderr in a file, read as bytes (ProxyProcess decodes the log, which
    would hide whether the proxy wrote invalid UTF-8 itself)."""

    def __init__(self, binary: Path, log: Path, *args: str) -> None:
        self.log = log
        self._file = log.open("wb")
        self.proc = subprocess.Popen([str(binary), "--port", "0", *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._file, env=clean_env(),
                                     start_new_session=True)
        found = wait_until(lambda: re.search(rb"listening on http://([^\s/]+):(\d+)", log.read_bytes()), timeout=30)
        assert found, f"no 'listening on' line:\n{log.read_bytes()[-3000:]!r}"
        self.port = int(found.group(2))

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def raw(self) -> bytes:
        return self.log.read_bytes()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._file.close()


def test_a_childs_non_utf8_stderr_is_logged_lossily_and_it_keeps_serving(proxy_bin, tmp_path, http):
    script = tmp_path / "stderr_child.py"
    script.write_text(STDERR_SOURCE)
    proxy = RawLogProxy(proxy_bin, tmp_path / "proxy.log", "--", sys.executable, str(script))
    try:
        url = proxy.url("/mcp")
        session = open_raw_session(http, url)

        def call(name: str) -> str:
            reply = post_rpc(http, url, rpc_request("tools/call", {"name": name, "arguments": {}}), session)
            return result_text(reply.body)

        assert call("bad") == "wrote bad"
        replaced = "bad \ufffd\ufffd bytes".encode()
        assert wait_until(lambda: replaced in proxy.raw(), timeout=10), f"not logged lossily:\n{proxy.raw()[-2000:]!r}"
        assert call("long") == "wrote long"
        assert wait_until(lambda: b"stderr: (a line over 16384 bytes)" in proxy.raw(), timeout=10), proxy.raw()[-2000:]
        assert call("good") == "wrote good", "the child stopped serving after its bad stderr lines"
        assert wait_until(lambda: b"a later line, after the bad bytes" in proxy.raw(), timeout=10), (
            f"the later stderr line was not logged:\n{proxy.raw()[-2000:]!r}"
        )
        log = proxy.raw()
        assert len(log) < 64 * 1024, f"the 1 MiB line was logged ({len(log)} bytes of log)"
        assert b"\xff" not in log and b"\xfe" not in log, "the proxy wrote the child's invalid bytes to its log"
        log.decode("utf-8")  # the whole log is valid UTF-8
        assert log.count(b"stderr-child pid") == 1, "the child was restarted"
    finally:
        proxy.stop()


#: The largest SSE event the proxy reads from an upstream (crates/core/src/upstream/http/mod.rs).
MAX_UPSTREAM_EVENT = 64 * 1024 * 1024


def big_then_good(handler: Any, seen: Seen, server: LoopbackServer) -> None:
    """A Streamable HTTP upstream answering `tools/call` with an SSE response: first a log
    notification over the proxy's event limit (1 KiB over it the first time, twice the limit
    after), then the (small) result."""
    message = json.loads(seen.body) if seen.body.strip() else {}
    if seen.method != "POST" or message.get("method") != "tools/call":
        return answer_as_mcp_server(handler, seen, server)
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Connection", "close")
    handler.end_headers()
    calls = sum(1 for earlier in server.seen if b'"tools/call"' in earlier.body)
    padding = MAX_UPSTREAM_EVENT + 1024 if calls == 1 else 2 * MAX_UPSTREAM_EVENT
    opening = b'data: {"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"'
    handler.wfile.write(opening)
    chunk = b"x" * (1024 * 1024)
    for _ in range(padding // len(chunk)):
        handler.wfile.write(chunk)
    handler.wfile.write(b'"}}\n\n')
    content = [{"type": "text", "text": "after the big one"}]
    good = {"jsonrpc": "2.0", "id": message["id"], "result": {"content": content}}
    handler.wfile.write(b"id: up-2\ndata: " + json.dumps(good).encode() + b"\n\n")
    handler.wfile.flush()


@pytest.mark.timeout(120)
def test_an_upstream_sse_event_over_the_limit_is_dropped_and_the_next_arrives(start_proxy, tmp_path, loopback_server):
    upstream = loopback_server(big_then_good)
    proxy = start_proxy("--config", write_config(tmp_path, {"mcpServers": {"up": remote_entry(upstream.url("/mcp"))}}),
                        command=())
    url = proxy.url("/up/mcp")
    with httpx.Client(timeout=httpx.Timeout(60.0)) as client:
        session = open_raw_session(client, url)
        before = rss_mib(proxy.pid)
        after_each = []
        # Twice: what the first held is not kept, and the bytes of an event being skipped are
        # not held (the second is twice the limit): no growth per event.
        for round_no in range(2):
            call = rpc_request("tools/call", {"name": "echo", "arguments": {}})
            received: list[int] = []
            with client.stream("POST", url, content=json.dumps(call), headers=session_headers(session)) as response:
                assert response.status_code == 200, response.read()[:300]
                if response.headers.get("content-type", "").startswith("text/event-stream"):
                    final = None
                    for event in SseReader(response):
                        received.append(len(event.data))
                        if event.data.strip() and json.loads(event.data).get("id") == call["id"]:
                            final = json.loads(event.data)
                            break
                else:
                    raw = response.read()
                    received.append(len(raw))
                    final = json.loads(raw)
            assert final is not None, f"round {round_no}: no answer; events of sizes {received}"
            assert result_text(final) == "after the big one", final
            assert max(received) < 1024 * 1024, f"round {round_no}: the oversized event reached the client: {received}"
            after_each.append(rss_mib(proxy.pid))
        proxy.wait_for_log(rf"an SSE event over {MAX_UPSTREAM_EVENT} bytes was dropped")
        assert proxy.stderr.count("an SSE event over") == 2, proxy.stderr[-2000:]
        # Bounded: one event's worth (a few copies of 64 MiB at most), and no growth per event.
        assert after_each[0] < before + 400, f"RSS {before:.0f} -> {after_each[0]:.0f} MiB after one oversized event"
        assert after_each[1] < after_each[0] + 100, f"RSS grew again on the second event: {after_each}"
        ping = post_rpc(client, url, rpc_request("ping"), session)
        assert ping.status == 200 and ping.body.get("result") == {}, ping
