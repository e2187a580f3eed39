"""``--tunnel``: the proxy through a public tunnel server of the localtunnel/pipenet protocol
(what the TypeScript ``mcp-proxy`` uses), here a real ``pipenet server`` (npm ``pipenet``,
pinned in tests/package.json) on loopback. Requests reach the proxy by ``Host`` through the
tunnel server; the tunnel server is killed and started again, and the tunnel comes back while
the local server never stops."""

from __future__ import annotations

import re
import socket
import subprocess
import time

import httpx
import pytest
from conftest import REPO_ROOT, initialize_request, post_rpc, rpc_request, wait_until

PIPENET = REPO_ROOT / "tests" / "node_modules" / "pipenet" / "dist" / "cli.js"
API_KEY = "tunnel-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TunnelServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            ["node", str(PIPENET), "server", "--port", str(port), "--address", "127.0.0.1", "--domain", "tunnel.test"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 20
        for line in self.proc.stdout:
            if "listening on port" in line:
                return
            if time.monotonic() > deadline:
                break
        self.stop()
        pytest.fail("pipenet server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def through(tunnel_port: int, name: str, client: httpx.Client, message: dict, session: str | None = None, key: str = API_KEY):
    """One MCP message to the proxy through the tunnel server, routed by ``Host``."""
    # Public requests are routed by the name in front of the server's domain.
    headers = {"Host": f"{name}.tunnel.test:{tunnel_port}", "X-API-Key": key}
    return post_rpc(client, f"http://127.0.0.1:{tunnel_port}/mcp", message, session, headers=headers)


def call_echo(tunnel_port: int, name: str, text: str) -> str:
    with httpx.Client(timeout=20) as client:
        init = through(tunnel_port, name, client, initialize_request())
        assert init.status == 200, init
        session = init.headers["mcp-session-id"]
        notified = through(tunnel_port, name, client, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
        assert notified.status == 202, notified
        echoed = through(tunnel_port, name, client, rpc_request("tools/call", {"name": "echo", "arguments": {"message": text}}), session)
        assert echoed.status == 200, echoed
        return echoed.body["result"]["content"][0]["text"]


@pytest.mark.timeout(120)
def test_a_session_through_the_tunnel_and_the_tunnel_comes_back_after_its_server_restarts(start_proxy) -> None:
    if not PIPENET.exists():
        pytest.fail(f"{PIPENET} is missing: run scripts/setup")
    tunnel_port = free_port()
    server = TunnelServer(tunnel_port)
    try:
        proxy = start_proxy(
            "--tunnel", "--tunnelServer", f"http://127.0.0.1:{tunnel_port}", "--tunnelSubdomain", "mcp-test",
            "--apiKey", API_KEY,
        )
        established = proxy.wait_for_log(r"tunnel established at (\S+)", timeout=20)
        assert established.group(1) == f"http://mcp-test.127.0.0.1:{tunnel_port}", proxy.stderr
        assert "--tunnel without --apiKey" not in proxy.stderr

        assert call_echo(tunnel_port, "mcp-test", "through the tunnel") == "Echo: through the tunnel"
        with httpx.Client(timeout=20) as client:
            refused = through(tunnel_port, "mcp-test", client, initialize_request(), key="wrong")
        assert refused.status == 401, refused

        # The tunnel server goes away: the local server goes on.
        server.stop()
        ping = httpx.get(proxy.url("/ping"), timeout=10)
        assert ping.status_code == 200
        assert wait_until(lambda: "asking for the tunnel again" in proxy.stderr, timeout=30), proxy.stderr
        # It comes back (on the same port): the tunnel is asked for again, under its name.
        server = TunnelServer(tunnel_port)
        assert wait_until(lambda: len(re.findall(r"tunnel established at", proxy.stderr)) >= 2, timeout=40), proxy.stderr
        assert call_echo(tunnel_port, "mcp-test", "back again") == "Echo: back again"
        assert httpx.get(proxy.url("/ping"), timeout=10).status_code == 200
    finally:
        server.stop()


def test_a_tunnel_without_an_api_key_is_warned_about(start_proxy) -> None:
    """Nothing to reach: the warning names --apiKey before any tunnel exists."""
    proxy = start_proxy("--tunnel", "--tunnelServer", f"http://127.0.0.1:{free_port()}")
    proxy.wait_for_log(r"--tunnel without --apiKey: .*add --apiKey")
    # The tunnel server is not there: the proxy says so and keeps serving.
    proxy.wait_for_log(r"tunnel: .*trying again", timeout=20)
    assert httpx.get(proxy.url("/ping"), timeout=10).status_code == 200
