"""Shutdown, idle timeout and DELETE with work in flight: nothing hangs, nothing is left behind.

The child is ``tiny_server.py`` (a small Python MCP server); its ``sleep``
tool makes a request that stays in flight, its ``--ignore-sigterm`` flag makes a
child that only SIGKILL stops.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import tiny_server
from conftest import (
    PROTOCOL_VERSION,
    ProxyProcess,
    open_raw_session,
    post_rpc,
    rpc_request,
    session_headers,
    wait_until,
)

TINY = tiny_server.COMMAND
#: How long the proxy gives a child between SIGTERM and SIGKILL (crates/host/src/stdio.rs).
GRACE_S = 3.0


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a process from /proc/<pid>/stat; None once it is fully gone.

    A zombie ('Z') still has an entry: it has exited but nobody reaped it.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3 (state)
    return fields[0], int(fields[19])  # field 22: start time


class Tracked:
    """A process seen alive, so later checks cannot mistake a reused pid for it."""

    def __init__(self, pid: int) -> None:
        stat = proc_stat(pid)
        assert stat is not None and stat[0] != "Z", f"pid {pid} is not running: {stat}"
        self.pid, self.start_time = pid, stat[1]

    def state(self) -> str | None:
        """Its state letter, or None once it is gone (reaped)."""
        stat = proc_stat(self.pid)
        return stat[0] if stat is not None and stat[1] == self.start_time else None

    def gone(self) -> bool:
        return self.state() is None

    def dead(self) -> bool:
        return self.state() in (None, "Z")

    def __repr__(self) -> str:
        return f"pid {self.pid} ({self.state() or 'gone'})"


def tracked_children(proxy: ProxyProcess, count: int) -> list[Tracked]:
    pids = wait_until(lambda: len(tiny_server.children(proxy)) == count and tiny_server.children(proxy), timeout=10)
    assert pids, f"expected {count} children, found {tiny_server.children(proxy)}"
    return [Tracked(pid) for pid in pids]


def tracked_pids(proxy: ProxyProcess, count: int) -> list[int]:
    return [p.pid for p in tracked_children(proxy, count)]


def assert_reaped(processes: list[Tracked], timeout: float = 5.0) -> None:
    """Each process has exited and was reaped by its parent (no zombie left)."""
    wait_until(lambda: all(p.gone() for p in processes), timeout)
    left = [p for p in processes if not p.gone()]
    assert not left, f"still there (Z = zombie nobody reaped): {left}"


def assert_fresh_session_works(proxy: ProxyProcess, http: httpx.Client) -> None:
    assert proxy.proc.poll() is None, f"the proxy exited with {proxy.proc.returncode}"
    session = open_raw_session(http, proxy.mcp_url)
    request = rpc_request("tools/call", {"name": "echo", "arguments": {"message": "fresh"}})
    reply = post_rpc(http, proxy.mcp_url, request, session)
    assert reply.status == 200 and reply.body["result"]["content"][0]["text"] == "Echo: fresh", reply


def get_stream_headers(session: str) -> dict[str, str]:
    return {"Accept": "text/event-stream", "Mcp-Session-Id": session, "MCP-Protocol-Version": PROTOCOL_VERSION}


class InFlight:
    """A ``sleep`` tool call sent on a thread; records what came back, or the error."""

    def __init__(self, proxy: ProxyProcess, session: str, seconds: float) -> None:
        self.request = rpc_request("tools/call", {"name": "sleep", "arguments": {"seconds": seconds}})
        self.reply: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(proxy, session), daemon=True)
        self._thread.start()

    def _run(self, proxy: ProxyProcess, session: str) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(60.0)) as client:
                self.reply = post_rpc(client, proxy.mcp_url, self.request, session)
        except BaseException as error:  # noqa: BLE001 -- reported by the test
            self.error = error

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def describe(self) -> str:
        if self.error is not None:
            return f"{type(self.error).__name__}: {self.error}"
        return f"HTTP {self.reply.status} {self.reply.body!r}"

    def failed(self) -> bool:
        """An error came back: HTTP error status, a JSON-RPC error, or the connection ended."""
        if self.error is not None:
            return True
        body = self.reply.body
        return self.reply.status >= 400 or (isinstance(body, dict) and "error" in body and "result" not in body)


def open_legacy_stream(proxy: ProxyProcess) -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=10)
    sock.sendall(f"GET /sse HTTP/1.1\r\nHost: {proxy.host}:{proxy.port}\r\nAccept: text/event-stream\r\n\r\n".encode())
    data = b""
    while b"endpoint" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"legacy stream closed early: {data!r}"
        data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    return sock


def eof_within(sock: socket.socket, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
    return False


# --------------------------------------------------------------------------
# shutdown
# --------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_with_sessions_and_a_request_in_flight(start_proxy, http, signum):
    # A request longer than the grace period is cut: the servers stop when it ends.
    proxy = start_proxy("--gracefulShutdownTimeout", "500", command=TINY)
    sessions = [open_raw_session(http, proxy.mcp_url) for _ in range(3)]
    legacy = open_legacy_stream(proxy)
    children = tracked_children(proxy, 4)
    in_flight = InFlight(proxy, sessions[0], seconds=30)
    proxy.wait_for_log("tiny sleeping", timeout=10)

    started = time.monotonic()
    proxy.proc.send_signal(signum)
    try:
        exit_code = proxy.proc.wait(10)
    except Exception:
        pytest.fail(f"the proxy did not exit within 10 s of {signum.name}")
    elapsed = time.monotonic() - started
    assert exit_code == 0, f"exit code {exit_code} after {signum.name}"
    assert elapsed < 5, f"the proxy took {elapsed:.1f}s to exit (its children stop on SIGTERM at once)"

    assert in_flight.join(5), "the in-flight request still hangs after the proxy exited"
    assert in_flight.failed(), f"the in-flight request did not end in an error: {in_flight.describe()}"
    assert eof_within(legacy, 5), "the legacy SSE stream stayed open after the proxy exited"
    legacy.close()
    # Every child exited and the proxy reaped it before exiting: not even a zombie is left.
    assert_reaped(children, timeout=0.5)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_request_in_flight_is_let_finish_within_the_graceful_shutdown_timeout(start_proxy, http, signum):
    """The TypeScript peer's --gracefulShutdownTimeout (default 5 s): a signal closes the door
    to new connections, lets the calls being answered finish (not the GET streams, which last
    as long as their clients), then stops the servers."""
    proxy = start_proxy("--gracefulShutdownTimeout", "20000", command=TINY)
    session = open_raw_session(http, proxy.mcp_url)
    legacy = open_legacy_stream(proxy)
    in_flight = InFlight(proxy, session, seconds=2)
    proxy.wait_for_log("tiny sleeping", timeout=10)
    started = time.monotonic()
    proxy.proc.send_signal(signum)
    time.sleep(0.3)
    with pytest.raises(OSError):
        # The listening socket is closed at once.
        socket.create_connection((proxy.host, proxy.port), timeout=2).close()
    assert in_flight.join(10), "the in-flight request hangs"
    assert not in_flight.failed(), f"the call was cut although it ended within the grace: {in_flight.describe()}"
    assert proxy.proc.wait(10) == 0
    elapsed = time.monotonic() - started
    assert 1.0 < elapsed < 10, f"exited {elapsed:.1f}s after the signal: it should wait for the call (2 s), not for the GET stream"
    assert eof_within(legacy, 5), "the legacy SSE stream stayed open after the proxy exited"
    legacy.close()


def test_child_that_ignores_sigterm_is_killed_after_the_grace_period(start_proxy, http):
    proxy = start_proxy(command=[*TINY, "--ignore-sigterm", "--grandchild"])
    open_raw_session(http, proxy.mcp_url)
    (child,) = tracked_children(proxy, 1)
    grandchild = Tracked(int(proxy.wait_for_log(r"tiny grandchild pid (\d+)").group(1)))

    started = time.monotonic()
    proxy.proc.send_signal(signal.SIGINT)
    try:
        exit_code = proxy.proc.wait(GRACE_S + 7)
    except Exception:
        pytest.fail(f"the proxy did not exit within {GRACE_S + 7:.0f}s; child {child}")
    elapsed = time.monotonic() - started
    assert exit_code == 0, exit_code
    assert "tiny ignoring SIGTERM" in proxy.stderr, "the child never got SIGTERM"
    assert GRACE_S - 0.5 <= elapsed < GRACE_S + 5, f"exited {elapsed:.1f}s after SIGINT (grace {GRACE_S}s)"
    assert_reaped([child], timeout=0.5)
    # The grandchild (same process group, ignores SIGTERM too) was killed with it;
    # reaping it is up to init once its parent is gone.
    assert wait_until(grandchild.dead, timeout=2), f"grandchild outlived the proxy: {grandchild}"


def test_delete_stops_a_stubborn_child_without_blocking_others(start_proxy, http):
    proxy = start_proxy(command=[*TINY, "--ignore-sigterm"])
    doomed = open_raw_session(http, proxy.mcp_url)
    (child,) = tracked_children(proxy, 1)
    other = open_raw_session(http, proxy.mcp_url)
    other_child = next(pid for pid in tracked_pids(proxy, 2) if pid != child.pid)

    deleted_at = time.monotonic()
    assert http.delete(proxy.mcp_url, headers=session_headers(doomed)).status_code in (200, 204)
    # While the doomed child sits out its grace period, the other session is served at once.
    reply = post_rpc(http, proxy.mcp_url, rpc_request("ping"), other)
    assert reply.status == 200 and reply.body["result"] == {}, reply
    assert time.monotonic() - deleted_at < 2, "another session waited for a stopping child"
    assert post_rpc(http, proxy.mcp_url, rpc_request("ping"), doomed).status == 404

    proxy.wait_for_log("tiny ignoring SIGTERM", timeout=5)
    assert_reaped([child], timeout=GRACE_S + 5)
    assert time.monotonic() - deleted_at >= GRACE_S - 0.5, "the child was killed before its grace period ended"
    assert post_rpc(http, proxy.mcp_url, rpc_request("ping"), other).body["result"] == {}
    os.kill(other_child, signal.SIGKILL)  # spares the teardown a grace period
    assert_fresh_session_works(proxy, http)


# --------------------------------------------------------------------------
# idle timeout
# --------------------------------------------------------------------------


def test_idle_session_ends_but_not_while_its_stream_is_open(start_proxy, http):
    timeout_s = 0.8
    proxy = start_proxy("--sessionTimeout", str(int(timeout_s * 1000)), command=TINY)
    watched = open_raw_session(http, proxy.mcp_url)
    with http.stream("GET", proxy.mcp_url, headers=get_stream_headers(watched)) as stream:
        assert stream.status_code == 200
        (watched_child,) = tracked_children(proxy, 1)
        opened = time.monotonic()  # the idle session cannot be older than this
        idle = open_raw_session(http, proxy.mcp_url)
        idle_child = next(Tracked(pid) for pid in tracked_pids(proxy, 2) if pid != watched_child.pid)
        # The idle session ends after about --sessionTimeout, and its child with it.
        assert_reaped([idle_child], timeout=timeout_s + 5)
        assert time.monotonic() - opened >= timeout_s - 0.05, "the idle session ended early"
        assert post_rpc(http, proxy.mcp_url, rpc_request("ping"), idle).status == 404
        # The session with the open stream outlives several timeouts without a request.
        hold_until = opened + 3 * timeout_s
        while time.monotonic() < hold_until:
            assert watched_child.state() not in (None, "Z"), "the session ended while its GET stream was open"
            time.sleep(0.05)
    # Stream closed: now it is idle, and ends too.
    assert_reaped([watched_child], timeout=timeout_s + 5)
    assert post_rpc(http, proxy.mcp_url, rpc_request("ping"), watched).status == 404
    assert_fresh_session_works(proxy, http)


@pytest.mark.parametrize("busy_with", ["get-stream", "long-request"])
def test_idle_time_counts_from_the_end_of_activity(start_proxy, http, busy_with):
    """A session kept busy past --sessionTimeout, by an open GET stream or a long
    request, still gets the full timeout once that ends ("idle" means no request
    and no open stream), so the client can reconnect or send its next request.

    The proxy checks idleness on a timer of period T (2 s) from the session's
    start; the activity ends half-way between two checks (at 1.5 T). A session
    ending at the next check (0.5 T after the activity) is checked for at
    0.75 T: its child must still run then.
    """
    period = 2.0
    proxy = start_proxy("--sessionTimeout", str(int(period * 1000)), command=TINY)
    created = time.monotonic()
    session = open_raw_session(http, proxy.mcp_url)
    (child,) = tracked_children(proxy, 1)
    end_of_activity = created + 1.5 * period

    if busy_with == "get-stream":
        with http.stream("GET", proxy.mcp_url, headers=get_stream_headers(session)) as stream:
            assert stream.status_code == 200
            while time.monotonic() < end_of_activity:
                assert not child.dead(), "the session ended while its GET stream was open"
                time.sleep(0.05)
        ended = time.monotonic()
    else:
        request = InFlight(proxy, session, seconds=end_of_activity - time.monotonic())
        assert request.join(3 * period), "the sleep request did not come back"
        ended = time.monotonic()
        assert request.reply is not None and "result" in request.reply.body, request.describe()

    while time.monotonic() < ended + 0.75 * period:
        assert not child.dead(), (
            f"the session ended {time.monotonic() - ended:.2f}s after its {busy_with} ended, "
            f"with --sessionTimeout {period:.0f}s"
        )
        time.sleep(0.05)
    # It does end once it has been idle for the full timeout.
    assert_reaped([child], timeout=period + 5)
    assert post_rpc(http, proxy.mcp_url, rpc_request("ping"), session).status == 404
    assert_fresh_session_works(proxy, http)


# --------------------------------------------------------------------------
# DELETE with a request in flight
# --------------------------------------------------------------------------


def test_delete_answers_the_request_in_flight(start_proxy, http):
    proxy = start_proxy(command=TINY)
    session = open_raw_session(http, proxy.mcp_url)
    (child,) = tracked_children(proxy, 1)
    in_flight = InFlight(proxy, session, seconds=30)
    proxy.wait_for_log("tiny sleeping", timeout=10)

    delete = http.delete(proxy.mcp_url, headers=session_headers(session))
    assert delete.status_code in (200, 204), delete.text
    assert in_flight.join(5), "the request in flight still hangs 5 s after its session was deleted"
    assert in_flight.error is None, f"the request got no answer, the connection failed: {in_flight.describe()}"
    assert in_flight.failed(), f"the request in flight did not get an error: {in_flight.describe()}"
    body = in_flight.reply.body
    if isinstance(body, dict) and "error" in body and in_flight.reply.status == 200:
        assert body.get("id") == in_flight.request["id"], body
    assert_reaped([child], timeout=5)
    assert post_rpc(http, proxy.mcp_url, rpc_request("ping"), session).status == 404
    assert_fresh_session_works(proxy, http)
