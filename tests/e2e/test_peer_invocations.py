"""The peers' documented invocations, verbatim, against this binary.

Users of the TypeScript ``mcp-proxy`` (punkpeye, 6.7.19) and of the Go ``mcp-proxy`` (TBXark)
switch by changing one word: the command lines their READMEs show start this proxy with the
same meaning. The TypeScript flags are checked one by one against the peer's own ``--help``
(pinned in ``bench/peers/npm``) where it is installed; the Go binary's single-dash spellings,
its implicit ``./config.json``, ``mcpProxy.addr`` and ``mcpProxy.baseURL`` are checked with
real clients.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    EVERYTHING_COMMAND,
    LISTENING_RE,
    REPO_ROOT,
    initialize_request,
    mcp_client,
    post_rpc,
    text_of,
)
from tiny_server import COMMAND as TINY_COMMAND

PEER_BIN = REPO_ROOT / "bench" / "peers" / "npm" / "node_modules" / ".bin" / "mcp-proxy"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Started:
    """The binary run with exactly the given arguments (no ``--port 0`` added), in ``cwd``."""

    def __init__(self, binary: Path, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [str(Path(binary).resolve()), *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if match := re.search(pattern, self.log):
                return match
            if self.proc.poll() is not None:
                time.sleep(0.1)
                if match := re.search(pattern, self.log):
                    return match
                break
            time.sleep(0.05)
        pytest.fail(f"{pattern!r} not printed (exit {self.proc.poll()}):\n{self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def started(proxy_bin):
    running: list[Started] = []

    def start(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Started:
        process = Started(proxy_bin, args, cwd, env)
        running.append(process)
        return process

    yield start
    for process in running:
        process.stop()


def tiny_server(name: str = "tiny") -> dict[str, Any]:
    return {"command": TINY_COMMAND[0], "args": list(TINY_COMMAND[1:])}


def initialize_ok(url: str, headers: dict[str, str] | None = None) -> dict:
    with httpx.Client(timeout=20) as client:
        reply = post_rpc(client, url, initialize_request(), None, headers=headers or {})
    assert reply.status == 200, reply
    return reply.body


# --------------------------------------------------------------------------
# The TypeScript mcp-proxy
# --------------------------------------------------------------------------


def test_every_option_of_the_typescript_peers_help_is_accepted(proxy_bin) -> None:
    """Each option the pinned peer's ``--help`` lists is one this binary knows (or the
    peer is not installed here, and the list the issue names is checked instead)."""
    if PEER_BIN.exists():
        peer_help = subprocess.run(["node", str(PEER_BIN), "--help"], capture_output=True, text=True, timeout=60).stdout
        options = sorted(set(re.findall(r"^\s+(--[A-Za-z]+)", peer_help, re.MULTILINE)))
        assert "--tunnel" in options and len(options) > 20, peer_help
    else:
        options = ["--corsAddAllowedHeader", "--eventStore", "--eventStoreMaxEvents", "--gracefulShutdownTimeout",
                   "--keepAliveTimeout", "--sessionIdleTimeout", "--modern", "--upstreamProtocol", "--tunnel",
                   "--tunnelSubdomain"]
    ours = subprocess.run([str(proxy_bin), "--help"], capture_output=True, text=True, timeout=30).stdout
    missing = [o for o in options if not re.search(re.escape(o) + r"\b", ours)]
    assert not missing, f"options of the TypeScript peer this binary does not list: {missing}"


@pytest.mark.anyio
async def test_the_typescript_peers_options_work_as_written(started, tmp_path) -> None:
    """A command line with every option the TypeScript peer added lately, its values in its
    units (milliseconds), in front of server-everything: a real client calls a tool, and
    the CORS header added with --corsAddAllowedHeader is allowed in a preflight."""
    port = free_port()
    proxy = started(
        [
            "--port", str(port), "--host", "127.0.0.1",
            "--corsAddAllowedHeader", "X-Tenant", "--corsAddAllowedHeader", "X-Trace",
            "--eventStore", "--eventStoreMaxEvents", "50",
            "--sessionIdleTimeout", "60000", "--keepAliveTimeout", "300000",
            "--gracefulShutdownTimeout", "1000", "--connectionTimeout", "60000", "--requestTimeout", "300000",
            "--modern", "--upstreamProtocol", "auto", "--maxBodySize", "10485760",
            *EVERYTHING_COMMAND,
        ],
        tmp_path,
    )
    proxy.wait_for(r"listening on")
    base = f"http://127.0.0.1:{port}"
    preflight = httpx.options(
        base + "/mcp",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "x-tenant, x-trace"},
        timeout=10,
    )
    allowed = preflight.headers.get("access-control-allow-headers", "").lower()
    assert "x-tenant" in allowed and "x-trace" in allowed, preflight.headers

    class At:
        def url(self, path: str) -> str:
            return base + path

    async with mcp_client(At(), "streamable-http") as connection:  # type: ignore[arg-type]
        echoed = await connection.session.call_tool("echo", {"message": "typescript flags"})
        assert text_of(echoed) == "Echo: typescript flags"


# --------------------------------------------------------------------------
# The Go mcp-proxy
# --------------------------------------------------------------------------


def go_config(port: int, **proxy: Any) -> dict:
    return {
        "mcpProxy": {"addr": f":{port}", "name": "go-users-proxy", "version": "1.0.0", "type": "streamable-http", **proxy,
                     "options": {"panicIfInvalid": False, "logEnabled": True}},
        "mcpServers": {"tiny": tiny_server()},
    }


def test_with_no_arguments_the_go_binary_reads_config_json_and_listens_on_its_addr(started, tmp_path) -> None:
    """``mcp-proxy`` alone, in a directory with ``config.json``: served on ``mcpProxy.addr``
    (``":PORT"``: every interface, as in Go), ``${VAR}`` expanded as the Go binary does, and
    ``mcpProxy.baseURL`` is where the proxy names itself (its path in the legacy SSE
    ``endpoint`` event, the whole URL in the API listing and the log)."""
    port = free_port()
    config = go_config(port, baseURL="https://mcp.example.com/proxy", adminTokens=["admin-secret"])
    config["mcpServers"]["tiny"]["env"] = {"TINY_LABEL": "${GO_USERS_LABEL}"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    proxy = started([], tmp_path, env={"GO_USERS_LABEL": "from-the-environment"})
    listening = proxy.wait_for(LISTENING_RE.pattern)
    assert listening.group(2) == "0.0.0.0" and int(listening.group(3)) == port, proxy.log
    assert "public URL (mcpProxy.baseURL): https://mcp.example.com/proxy" in proxy.log
    initialize_ok(f"http://127.0.0.1:{port}/tiny/mcp")
    listed = httpx.get(f"http://127.0.0.1:{port}/api/servers/tiny", headers={"Authorization": "Bearer admin-secret"}, timeout=10)
    assert listed.status_code == 200, listed.text
    assert listed.json()["urls"] == {"mcp": "https://mcp.example.com/proxy/tiny/mcp", "sse": "https://mcp.example.com/proxy/tiny/sse"}
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET /tiny/sse HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
        data = b""
        while b"sessionId=" not in data:
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
    endpoint = re.search(rb"event: endpoint\r?\ndata: (\S+)", data)
    # The base URL's path comes first (what a reverse proxy in front strips); the origin stays
    # the connection's, which the SDK clients check.
    assert endpoint and endpoint.group(1).startswith(b"/proxy/tiny/messages?sessionId="), data


def test_the_go_binarys_single_dash_flags(started, proxy_bin, tmp_path) -> None:
    """``-config``, ``-expand-env=false``, ``-version``, ``-help``: Go's flag spellings."""
    version = subprocess.run([str(proxy_bin), "-version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("mcp-proxy "), version
    usage = subprocess.run([str(proxy_bin), "-help"], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 0 and "--config" in usage.stdout, usage
    empty = tmp_path / "empty"
    empty.mkdir()
    bare = subprocess.run([str(proxy_bin)], cwd=empty, capture_output=True, text=True, timeout=30)
    assert bare.returncode == 2 and "Usage" in bare.stdout + bare.stderr, bare

    port = free_port()
    config = go_config(port)
    config["mcpServers"]["tiny"]["env"] = {"TINY_LABEL": "${SURELY_UNSET_VARIABLE}"}
    path = tmp_path / "servers.json"
    path.write_text(json.dumps(config))
    expanded = subprocess.run([str(proxy_bin), "-config", str(path)], capture_output=True, text=True, timeout=30)
    assert expanded.returncode == 2 and "SURELY_UNSET_VARIABLE" in expanded.stderr, expanded
    proxy = started(["-config", str(path), "-expand-env=false"], tmp_path)
    proxy.wait_for(rf"listening on http://0\.0\.0\.0:{port}")
    initialize_ok(f"http://127.0.0.1:{port}/tiny/mcp")


def test_port_and_host_win_over_addr(started, tmp_path) -> None:
    port, other = free_port(), free_port()
    path = tmp_path / "config.json"
    path.write_text(json.dumps(go_config(other)))
    proxy = started(["--config", str(path), "--port", str(port)], tmp_path)
    proxy.wait_for(rf"listening on http://127\.0\.0\.1:{port}")


def test_a_bad_addr_or_base_url_is_a_config_error_naming_the_field(proxy_bin, tmp_path) -> None:
    for field, value in (("addr", "everywhere"), ("baseURL", "mcp.example.com")):
        config = go_config(free_port())
        config["mcpProxy"][field] = value
        path = tmp_path / f"{field}.json"
        path.write_text(json.dumps(config))
        result = subprocess.run([str(proxy_bin), "--config", str(path)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and f"mcpProxy.{field}" in result.stderr, result.stderr


class HttpsConfig:
    """The configuration served over https on loopback with a self-signed certificate; it
    records the headers it was fetched with."""

    def __init__(self, body: bytes, tmp_path: Path) -> None:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        pem = tmp_path / "config-server.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
        self.seen: list[dict[str, str]] = []
        seen = self.seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                seen.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(pem))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/config.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_a_remote_config_with_the_go_binarys_http_headers_and_insecure(started, proxy_bin, tmp_path) -> None:
    """``-config https://… -http-headers 'K:V;K2:V2' -insecure``: a certificate nobody vouches
    for is refused unless ``-insecure`` is given, and the headers go with the fetch."""
    port = free_port()
    remote = HttpsConfig(json.dumps(go_config(port)).encode(), tmp_path)
    try:
        refused = subprocess.run(
            [str(proxy_bin), "-config", remote.url, "-http-headers", "Authorization:Bearer cfg;X-Env: prod"],
            capture_output=True, text=True, timeout=30,
        )
        assert refused.returncode == 2, refused
        assert "certificate" in refused.stderr.lower() or "tls" in refused.stderr.lower(), refused.stderr
        proxy = started(
            ["-config", remote.url, "-http-headers", "Authorization:Bearer cfg;X-Env: prod", "-http-timeout", "5", "-insecure"],
            tmp_path,
        )
        proxy.wait_for(rf"listening on http://0\.0\.0\.0:{port}")
        assert remote.seen and remote.seen[-1].get("authorization") == "Bearer cfg", remote.seen
        assert remote.seen[-1].get("x-env") == "prod", remote.seen
        initialize_ok(f"http://127.0.0.1:{port}/tiny/mcp")
    finally:
        remote.close()
