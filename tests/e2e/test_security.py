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
6. servers added at run time cannot reach the proxy's own network (SSRF);
7. a legacy SSE upstream cannot redirect messages (and its headers) to another origin;
8. remote configurations come over https (or loopback) and are never expanded;
9. children never see the proxy's secrets, and configured servers only a short list;
10. a child's grandchildren end with it;
11. browsers and DNS rebinding when listening beyond loopback;
12. ``--sslCa`` is mutual TLS;
13. on a shared upstream, one client cannot answer another client's server request;
14. bounded under abuse: idle connections, slow-loris, huge batches, requests in flight,
    large unauthenticated bodies.
"""

from __future__ import annotations

import http.server
import json
import os
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


# --------------------------------------------------------------------------
# 7. A legacy SSE upstream's endpoint must be same-origin
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
    "MCP_PROXY_SESSION_KEY": "sessionkey-e2e-0003",
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
    proxy = start_proxy("--keepAliveTimeout", "1000", command=TINY_COMMAND)
    with raw_connect("127.0.0.1", proxy.port) as sock:
        sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        answer = wait_for_close_while(sock, lambda: b"a", interval=0.2, limit=15)
    assert answer == b"" or status_of(answer) in (400, 408, 431), answer[:300]
    assert http.get(proxy.url("/ping")).text == "pong"


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
