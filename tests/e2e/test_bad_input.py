"""Hostile and broken input: the proxy answers with the right error and keeps serving.

Most of it goes over raw sockets, for what httpx cannot send (bodies cut short,
control characters in headers, bytes that are not HTTP, clients that never
read). The child is ``tiny_server.py`` (a small Python MCP server), so tests
can run a hundred sessions at once. Every test ends by checking that the proxy
still serves a fresh session.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import tiny_server
from conftest import (
    PROTOCOL_VERSION,
    ProxyProcess,
    initialize_request,
    open_raw_session,
    post_rpc,
    rpc_error_code,
    rpc_notification,
    rpc_request,
    running_proxy,
    session_headers,
    wait_until,
)

TINY = tiny_server.COMMAND
#: How long a raw socket waits for the proxy before the test calls it a hang.
SOCKET_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def proxy(proxy_bin) -> Iterator[ProxyProcess]:
    """One proxy in front of the tiny server, shared by the tests that need no options."""
    with running_proxy(proxy_bin, command=TINY) as running:
        yield running


@pytest.fixture
def session_id(proxy, http) -> Iterator[str]:
    session = open_raw_session(http, proxy.mcp_url)
    yield session
    http.delete(proxy.mcp_url, headers=session_headers(session))


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc/<pid>/status (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def connect(proxy: ProxyProcess, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # set before connect, so the window stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(SOCKET_TIMEOUT_S)
    sock.connect((proxy.host, proxy.port))
    return sock


def read_until_closed(sock: socket.socket, timeout: float = SOCKET_TIMEOUT_S) -> bytes:
    """Everything the peer sends until it closes; fails if it neither closes nor answers in time."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        except socket.timeout:
            break
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"the proxy neither answered nor closed the connection in {timeout}s; got {data[:200]!r}")


def read_head(sock: socket.socket, timeout: float = SOCKET_TIMEOUT_S) -> bytes:
    """Reads up to the end of a response head (blank line); returns all bytes read so far."""
    data = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in data:
        assert time.monotonic() < deadline, f"no complete response head in {timeout}s: {data[:200]!r}"
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response head: {data[:200]!r}"
        data += chunk
    return data


def exchange(proxy: ProxyProcess, data: bytes) -> bytes:
    """Sends raw bytes on a fresh connection and returns all the proxy sends before closing."""
    with connect(proxy) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            # Refused before it was all sent (a head over the limit gets 431 and the
            # connection closes at once): what came back is still read.
            pass
        return read_until_closed(sock)


def status_of(response: bytes) -> int | None:
    """The status code of a raw HTTP/1.1 response (None when nothing came back)."""
    if not response:
        return None
    assert response.startswith(b"HTTP/1."), f"not an HTTP/1 response: {response[:120]!r}"
    return int(response.split(b" ", 2)[1])


def http_request(method: str, path: str, proxy: ProxyProcess, headers: list[bytes], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), f"Host: {proxy.host}:{proxy.port}".encode(), *headers]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}".encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


MCP_POST_HEAD = [b"Content-Type: application/json", b"Accept: application/json, text/event-stream"]


def assert_still_serving(proxy: ProxyProcess, http: httpx.Client) -> None:
    """The proxy runs, answers /ping, and serves a fresh session end to end (then deletes it)."""
    assert proxy.proc.poll() is None, f"the proxy exited with {proxy.proc.returncode}"
    assert http.get(proxy.url("/ping")).text == "pong"
    session = open_raw_session(http, proxy.mcp_url)
    request = rpc_request("tools/call", {"name": "echo", "arguments": {"message": "still serving"}})
    reply = post_rpc(http, proxy.mcp_url, request, session)
    assert reply.status == 200, reply
    assert reply.body["result"]["content"][0]["text"] == "Echo: still serving", reply.body
    assert http.delete(proxy.mcp_url, headers=session_headers(session)).status_code in (200, 204)


def post_raw_json(http: httpx.Client, proxy: ProxyProcess, body: Any, session: str | None):
    return post_rpc(http, proxy.mcp_url, None, session, content=json.dumps(body))


# --------------------------------------------------------------------------
# bodies cut short
# --------------------------------------------------------------------------


def _truncated_post(proxy: ProxyProcess, body: bytes, session: str | None, declared: int = 1000) -> bytes:
    headers = [*MCP_POST_HEAD, f"Content-Length: {declared}".encode()]
    if session:
        headers += [f"Mcp-Session-Id: {session}".encode(), f"MCP-Protocol-Version: {PROTOCOL_VERSION}".encode()]
    head = [b"POST /mcp HTTP/1.1", f"Host: {proxy.host}:{proxy.port}".encode(), *headers]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def test_body_cut_short_then_closed(proxy, http, session_id):
    before = set(tiny_server.children(proxy))
    init = json.dumps(initialize_request()).encode()
    call = json.dumps(rpc_request("tools/call", {"name": "echo", "arguments": {"message": "cut"}})).encode()
    for body, session in ((init[:10], None), (call[:10], session_id), (b"", None)):
        with connect(proxy) as sock:
            sock.sendall(_truncated_post(proxy, body, session))
        # closed at once, with 990+ bytes of the body missing
    assert_still_serving(proxy, http)
    # The session the cut requests were sent on still works.
    reply = post_rpc(http, proxy.mcp_url, rpc_request("ping"), session_id)
    assert reply.status == 200 and reply.body["result"] == {}, reply
    # The cut initialize started no session: the same children as before (after the fresh one ended).
    after = wait_until(lambda: set(tiny_server.children(proxy)) == before, timeout=5)
    assert after, f"children before {before}, after {set(tiny_server.children(proxy))}"


def test_stalled_body_does_not_block_other_clients(proxy, http, session_id):
    """A client that sends 10 of 1000 body bytes and waits: others are served meanwhile."""
    init = json.dumps(initialize_request()).encode()
    full = init + b" " * (1000 - len(init))  # trailing whitespace is still valid JSON
    call = json.dumps(rpc_request("ping")).encode()
    full_call = call + b" " * (1000 - len(call))
    with connect(proxy) as stalled, connect(proxy) as stalled_on_session:
        stalled.sendall(_truncated_post(proxy, full[:10], None))
        stalled_on_session.sendall(_truncated_post(proxy, full_call[:10], session_id))
        started = time.monotonic()
        assert_still_serving(proxy, http)
        reply = post_rpc(http, proxy.mcp_url, rpc_request("ping"), session_id)
        assert reply.status == 200, reply
        assert time.monotonic() - started < 5, "other clients waited for the stalled ones"
        # The stalled requests got no answer yet ...
        for sock in (stalled, stalled_on_session):
            sock.settimeout(0.2)
            with pytest.raises(socket.timeout):
                sock.recv(1)
        # ... and are served normally once the rest of their bodies arrives.
        stalled.sendall(full[10:])
        stalled_on_session.sendall(full_call[10:])
        for sock in (stalled, stalled_on_session):
            head = read_head(sock)
            assert status_of(head) == 200, head[:300]
    assert_still_serving(proxy, http)


# --------------------------------------------------------------------------
# broken HTTP
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [b"X-Test: a\x01b", b"X-Test: a\rb", b"X-Test: a\x00b", b"X-Test: a\x7fb", b"X Test: spaces in name",
     b"X-Test no colon", b"X-T\x01est: ctl in name"],
    ids=["ctl-0x01", "bare-cr", "nul", "del", "space-in-name", "no-colon", "ctl-in-name"],
)
def test_control_characters_in_headers_are_400(proxy, http, header):
    before = set(tiny_server.children(proxy))
    body = json.dumps(initialize_request()).encode()
    response = exchange(proxy, http_request("POST", "/mcp", proxy, [*MCP_POST_HEAD, header], body))
    assert status_of(response) in (400, None), response[:300]  # a 400, or the connection just closed
    assert set(tiny_server.children(proxy)) == before, "a request with a broken header started a session"
    assert_still_serving(proxy, http)


def _tls_client_hello() -> bytes:
    """A TLS 1.2 ClientHello record (for SNI "localhost"), as a browser would send to https://."""
    ciphers = bytes.fromhex("c02bc02fc02cc030cca9cca8c013c014009c009d002f0035")
    sni_name = b"localhost"
    sni = (b"\x00\x00" + (len(sni_name) + 5).to_bytes(2, "big") + (len(sni_name) + 3).to_bytes(2, "big")
           + b"\x00" + len(sni_name).to_bytes(2, "big") + sni_name)
    extensions = sni + bytes.fromhex("000a00080006001d00170018") + bytes.fromhex("000b00020100")
    body = (b"\x03\x03" + bytes(range(32)) + b"\x00" + len(ciphers).to_bytes(2, "big") + ciphers
            + b"\x01\x00" + len(extensions).to_bytes(2, "big") + extensions)
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake


def _random_bytes(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(size))


@pytest.mark.parametrize(
    "data",
    [
        _random_bytes(4096, seed=1),
        _random_bytes(64, seed=2),
        _tls_client_hello(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _random_bytes(256, seed=3),
        b"GET /ping HTTP/9.9\r\nHost: x\r\n\r\n",
        b"\x00" * 2048,
    ],
    ids=["random-4k", "random-64", "tls-client-hello", "h2-preface-then-junk", "http-9.9", "nul-bytes"],
)
def test_garbage_instead_of_http(proxy, http, data):
    with connect(proxy) as sock:
        sock.sendall(data)
        response = read_until_closed(sock)  # fails if the proxy neither answers nor closes
    if response.startswith(b"HTTP/"):
        assert 400 <= status_of(response) < 600, response[:300]
    assert_still_serving(proxy, http)


@pytest.mark.parametrize(
    "headers",
    [
        [b"X-Big: " + b"a" * (100 * 1024)],
        [b"X-Big: " + b"a" * (1024 * 1024)],
        [b"X-Many-%d: v" % n for n in range(300)],
    ],
    ids=["one-100KB-header", "one-1MB-header", "300-headers"],
)
def test_huge_headers_are_rejected(proxy, http, headers):
    response = exchange(proxy, http_request("GET", "/ping", proxy, headers))
    assert status_of(response) in (431, 400, None), (
        f"a request with {sum(map(len, headers))} bytes of headers was answered {response[:120]!r}"
    )
    assert_still_serving(proxy, http)


# --------------------------------------------------------------------------
# valid JSON, invalid JSON-RPC
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"},
        {"jsonrpc": "2.0", "id": [1], "method": "ping"},
        {"jsonrpc": "2.0", "id": 1.5, "method": "ping"},
        {"jsonrpc": "2.0", "id": True, "method": "ping"},
        {"jsonrpc": "2.0", "id": None, "method": "ping"},
        {"jsonrpc": "2.0", "id": 1, "method": 42},
        {"jsonrpc": "2.0", "id": 1, "method": None},
        {"jsonrpc": "2.0", "method": 42},
        {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": "a string"},
        {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": 7},
        {"id": 1, "method": "ping"},
        {"jsonrpc": "1.0", "id": 1, "method": "ping"},
        {"jsonrpc": 2.0, "id": 1, "method": "ping"},
        [],
        [{"jsonrpc": "2.0", "id": 1, "method": 42}],
    ],
    ids=["id-object", "id-array", "id-float", "id-bool", "id-null", "method-number", "method-null",
         "notification-method-number", "params-string", "params-number", "jsonrpc-missing", "jsonrpc-1.0",
         "jsonrpc-number", "empty-batch", "batch-of-invalid"],
)
def test_wrong_types_are_400_invalid_request(proxy, http, session_id, body):
    reply = post_raw_json(http, proxy, body, session_id)
    assert reply.status == 400, reply
    assert rpc_error_code(reply.body) == -32600, reply.body
    # The session is unharmed.
    ping = post_rpc(http, proxy.mcp_url, rpc_request("ping"), session_id)
    assert ping.status == 200 and ping.body["result"] == {}, ping


def test_empty_batch_without_session_is_400_invalid_request(proxy, http):
    reply = post_raw_json(http, proxy, [], None)
    assert reply.status == 400
    assert rpc_error_code(reply.body) == -32600, reply.body
    assert_still_serving(proxy, http)


@pytest.mark.parametrize("with_session", [False, True], ids=["no-session", "on-a-session"])
@pytest.mark.parametrize("extra", [[], [rpc_request("ping")]], ids=["initialize-alone", "initialize-and-ping"])
def test_batch_with_initialize_is_400(proxy, http, session_id, with_session, extra):
    before = set(tiny_server.children(proxy))
    reply = post_raw_json(http, proxy, [initialize_request(), *extra], session_id if with_session else None)
    assert reply.status == 400, reply
    assert rpc_error_code(reply.body) is not None, reply.body
    assert reply.session_id is None, "a batched initialize must not create a session"
    assert set(tiny_server.children(proxy)) == before
    assert_still_serving(proxy, http)


@pytest.mark.parametrize("accept", ["text/html", "text/plain, image/png", "application/xml"])
@pytest.mark.parametrize("with_session", [False, True], ids=["initialize", "on-a-session"])
def test_unacceptable_accept_is_406(proxy, http, session_id, accept, with_session):
    message = rpc_request("ping") if with_session else initialize_request()
    headers = {"Accept": accept, "Content-Type": "application/json"}
    if with_session:
        headers.update({"Mcp-Session-Id": session_id, "MCP-Protocol-Version": PROTOCOL_VERSION})
    reply = http.post(proxy.mcp_url, content=json.dumps(message), headers=headers)
    assert reply.status_code == 406, (reply.status_code, reply.text)
    assert reply.headers.get("mcp-session-id") is None


@pytest.mark.parametrize("with_session", [False, True], ids=["initialize", "on-a-session"])
def test_missing_content_type_is_415(proxy, http, session_id, with_session):
    message = rpc_request("ping") if with_session else initialize_request()
    headers = {"Accept": "application/json, text/event-stream"}
    if with_session:
        headers.update({"Mcp-Session-Id": session_id, "MCP-Protocol-Version": PROTOCOL_VERSION})
    reply = http.post(proxy.mcp_url, content=json.dumps(message), headers=headers)
    assert "content-type" not in reply.request.headers
    assert reply.status_code == 415, (reply.status_code, reply.text)
    assert reply.headers.get("mcp-session-id") is None


# --------------------------------------------------------------------------
# many connections, clients that never read
# --------------------------------------------------------------------------

SSE_GET = b"GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"


def _read_endpoint(sock: socket.socket) -> str:
    """Reads a legacy SSE stream up to its endpoint event; returns the /messages path."""
    data = b""
    deadline = time.monotonic() + SOCKET_TIMEOUT_S
    while True:
        start = data.find(b"data: /messages")
        if start >= 0 and data.find(b"\n", start) > 0:
            return data[start + 6 : data.find(b"\n", start)].decode().strip()
        assert time.monotonic() < deadline, f"no endpoint event: {data[:300]!r}"
        chunk = sock.recv(4096)
        assert chunk, f"stream closed before the endpoint event: {data[:300]!r}"
        data += chunk


def test_many_streams_that_are_never_read(start_proxy, http):
    """100 legacy SSE streams nobody reads, and 3 that get flooded with ~32 MB each.

    The proxy stays responsive, its memory stays bounded (it does not queue the
    flood for clients that do not read), and once the sockets close every
    session ends and its child is gone.
    """
    streams, flooded, flood_mb = 100, 3, 32
    proxy = start_proxy("--keepAlive", "200", command=TINY)
    sockets: list[socket.socket] = []
    try:
        for _ in range(streams):
            sock = connect(proxy, rcvbuf=4096)
            sock.sendall(SSE_GET)  # and never recv
            sockets.append(sock)
        children = wait_until(lambda: len(tiny_server.children(proxy)) >= streams, timeout=40, interval=0.2)
        assert children, f"only {len(tiny_server.children(proxy))} of {streams} children started"
        baseline = rss_mb(proxy.pid)

        for _ in range(flooded):
            sock = connect(proxy, rcvbuf=4096)
            sock.sendall(SSE_GET)
            messages_url = proxy.url(_read_endpoint(sock))  # the last read on this socket
            sockets.append(sock)
            assert http.post(messages_url, json=initialize_request()).status_code == 202
            assert http.post(messages_url, json=rpc_notification("notifications/initialized")).status_code == 202
            flood = rpc_request("tools/call", {"name": "flood", "arguments": {"count": flood_mb * 256, "size": 4096}})
            assert http.post(messages_url, json=flood).status_code == 202

        # While the flood is under way: /ping stays fast and memory stays bounded.
        peak, slowest = baseline, 0.0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            started = time.monotonic()
            assert http.get(proxy.url("/ping"), timeout=5).text == "pong"
            slowest = max(slowest, time.monotonic() - started)
            peak = max(peak, rss_mb(proxy.pid))
            time.sleep(0.1)
        assert slowest < 1.0, f"/ping took {slowest:.2f}s during the flood"
        assert peak < baseline + flood_mb * flooded / 2, (
            f"RSS grew from {baseline:.0f} MB to {peak:.0f} MB while {flood_mb * flooded} MB were "
            f"sent to clients that do not read"
        )
        assert_still_serving(proxy, http)
    finally:
        for sock in sockets:
            sock.close()

    left = wait_until(lambda: not tiny_server.children(proxy), timeout=15, interval=0.1)
    assert left, f"{len(tiny_server.children(proxy))} children still run after every SSE socket closed"
    assert_still_serving(proxy, http)


def _open_held_session(proxy: ProxyProcess, http: httpx.Client) -> tuple[str, socket.socket]:
    """initialize (nothing else), plus a raw GET stream that keeps the session from idling."""
    reply = post_rpc(http, proxy.mcp_url, initialize_request())
    assert reply.status == 200 and reply.session_id, reply
    sock = connect(proxy)
    sock.sendall(
        f"GET /mcp HTTP/1.1\r\nHost: {proxy.host}:{proxy.port}\r\nAccept: text/event-stream\r\n"
        f"Mcp-Session-Id: {reply.session_id}\r\nMCP-Protocol-Version: {PROTOCOL_VERSION}\r\n\r\n".encode()
    )
    head = read_head(sock)
    assert status_of(head) == 200, head[:300]
    return reply.session_id, sock


def test_abandoned_sessions_are_capped_then_reclaimed(start_proxy, http):
    """Sessions opened with initialize and abandoned (never DELETEd).

    ``--maxSessions`` caps them (503 above it, no child started); after
    ``--sessionTimeout`` they end, their children are gone, their ids are 404,
    and the proxy's memory is back near where it started.

    Each session holds a GET stream while the cap is filled, so none idles out
    before the cap is reached however slow the machine; closing the streams
    abandons them all at once.
    """
    max_sessions, over = 200, 100
    proxy = start_proxy("--sessionTimeout", "1000", "--maxSessions", str(max_sessions), command=TINY)
    assert_still_serving(proxy, http)  # warm up before measuring
    wait_until(lambda: not tiny_server.children(proxy), timeout=5)
    baseline = rss_mb(proxy.pid)

    held: dict[str, socket.socket] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def opener(count: int) -> None:
        try:
            with httpx.Client(timeout=30) as client:
                for _ in range(count):
                    session, sock = _open_held_session(proxy, client)
                    with lock:
                        held[session] = sock
        except BaseException as error:  # reported below
            errors.append(error)

    try:
        workers = [threading.Thread(target=opener, args=(max_sessions // 4,), daemon=True) for _ in range(4)]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 45
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        assert not any(worker.is_alive() for worker in workers), f"only {len(held)} sessions opened in 45 s"
        assert not errors, errors
        assert len(held) == max_sessions
        children = wait_until(lambda: len(tiny_server.children(proxy)) == max_sessions, timeout=10)
        assert children, f"{len(tiny_server.children(proxy))} children for {max_sessions} sessions"
        peak = rss_mb(proxy.pid)

        for _ in range(over):
            reply = post_rpc(http, proxy.mcp_url, initialize_request())
            assert reply.status == 503, reply
            assert reply.session_id is None
        legacy = http.get(proxy.sse_url, headers={"Accept": "text/event-stream"})
        assert legacy.status_code == 503, legacy.text
        assert len(tiny_server.children(proxy)) == max_sessions, "a refused session started a child"
    finally:
        for sock in held.values():
            sock.close()  # abandon: no DELETE

    gone = wait_until(lambda: not tiny_server.children(proxy), timeout=15, interval=0.1)
    assert gone, f"{len(tiny_server.children(proxy))} children left after the idle timeout"
    statuses = {post_rpc(http, proxy.mcp_url, rpc_request("ping"), session).status for session in held}
    assert statuses == {404}, statuses
    assert_still_serving(proxy, http)
    after = rss_mb(proxy.pid)
    assert after < baseline + 30, (
        f"RSS {baseline:.1f} MB before, {peak:.1f} MB with {max_sessions} sessions, {after:.1f} MB after they ended"
    )
