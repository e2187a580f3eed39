"""Command line, startup, logging and shutdown of the mcp-proxy binary."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest
from conftest import (
    EVERYTHING_COMMAND,
    EVERYTHING_STARTUP_LINE,
    SERVER_EVERYTHING_JS,
    ProxyProcess,
    initialize_request,
    mcp_client,
    open_raw_session,
    pid_alive,
    post_rpc,
    text_of,
)


def run(proxy_bin, *args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    """Runs the binary to completion; on timeout kills its whole process group and fails."""
    process = subprocess.Popen(
        [str(proxy_bin), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"mcp-proxy {' '.join(args)} still running after {timeout}s\n{stderr}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_version_names_the_wasm_core(proxy_bin):
    result = run(proxy_bin, "--version")
    assert result.returncode == 0, result.stderr
    output = result.stdout.strip()
    assert "core: wasm32 component" in output, output
    assert re.fullmatch(r"mcp-proxy \S+ \(core: wasm32 component\)", output), output


def test_help_lists_the_options(proxy_bin):
    result = run(proxy_bin, "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout + result.stderr
    for option in ("--port", "--host", "--server", "--sseEndpoint", "--streamEndpoint", "--stateless",
                   "--apiKey", "--sslCert", "--sslKey", "--maxBodySize", "--cors-origin", "--no-cors", "--debug"):
        assert option in text, f"--help does not mention {option}"


def test_missing_command_is_an_error(proxy_bin):
    result = run(proxy_bin, "--port", "0")
    assert result.returncode != 0
    assert result.stderr.strip(), "an error message is expected on stderr"


def test_unknown_option_is_an_error(proxy_bin):
    result = run(proxy_bin, "--port", "0", "--no-such-option", "--", *EVERYTHING_COMMAND)
    assert result.returncode != 0


def test_listens_on_localhost_by_default(start_proxy):
    proxy = start_proxy()
    assert proxy.scheme == "http"
    assert proxy.host == "127.0.0.1"
    assert proxy.port > 0
    assert re.search(rf"mcp-proxy listening on http://127\.0\.0\.1:{proxy.port}\b", proxy.stderr)


def test_child_stderr_is_copied_to_the_log(start_proxy, http):
    proxy = start_proxy()
    open_raw_session(http, proxy.mcp_url)
    proxy.wait_for_log(re.escape(EVERYTHING_STARTUP_LINE), timeout=10)


def test_non_json_stdout_lines_are_logged_and_skipped(start_proxy, http):
    noisy = ["sh", "-c", 'echo "this is not json-rpc"; exec "$@"', "sh", *EVERYTHING_COMMAND]
    proxy = start_proxy(command=noisy)
    session_id = open_raw_session(http, proxy.mcp_url)
    request = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"message": "after noise"}}}
    reply = post_rpc(http, proxy.mcp_url, request, session_id)
    assert reply.body["result"]["content"][0]["text"] == "Echo: after noise"
    proxy.wait_for_log(re.escape("this is not json-rpc"), timeout=5)


@pytest.mark.anyio
async def test_custom_endpoints(start_proxy):
    proxy = start_proxy("--streamEndpoint", "/custom-mcp", "--sseEndpoint", "/custom-sse")
    async with mcp_client(proxy, "streamable-http", endpoint="/custom-mcp") as conn:
        assert text_of(await conn.session.call_tool("echo", {"message": "a"})) == "Echo: a"
    async with mcp_client(proxy, "sse", endpoint="/custom-sse") as conn:
        assert text_of(await conn.session.call_tool("echo", {"message": "b"})) == "Echo: b"


def test_server_stream_only(start_proxy, http):
    proxy = start_proxy("--server", "stream")
    assert post_rpc(http, proxy.mcp_url, initialize_request()).status == 200
    assert http.get(proxy.sse_url, headers={"Accept": "text/event-stream"}).status_code == 404


def test_server_sse_only(start_proxy, http):
    proxy = start_proxy("--server", "sse")
    assert post_rpc(http, proxy.mcp_url, initialize_request()).status == 404
    with http.stream("GET", proxy.sse_url, headers={"Accept": "text/event-stream"}) as stream:
        assert stream.status_code == 200


def test_sigterm_stops_proxy_and_children(start_proxy, http):
    proxy: ProxyProcess = start_proxy()
    open_raw_session(http, proxy.mcp_url)
    open_raw_session(http, proxy.mcp_url)
    children = proxy.wait_for_children(lambda pids: len(pids) >= 2, timeout=5)
    assert len(children) >= 2, children

    proxy.proc.send_signal(signal.SIGTERM)
    exit_code = proxy.proc.wait(10)
    assert exit_code in (0, -signal.SIGTERM, 128 + signal.SIGTERM), exit_code
    deadline = time.monotonic() + 5
    while any(pid_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in children if pid_alive(pid)], "child processes outlived the proxy"


def test_request_timeout_answers_slow_requests_with_an_error(start_proxy, http):
    # Generous enough for the child's own start (initialize is a request too).
    proxy = start_proxy("--requestTimeout", "2000")
    session_id = open_raw_session(http, proxy.mcp_url)
    request = {"jsonrpc": "2.0", "id": 11, "method": "tools/call",
               "params": {"name": "trigger-long-running-operation", "arguments": {"duration": 20, "steps": 1}}}
    started = time.monotonic()
    reply = post_rpc(http, proxy.mcp_url, request, session_id)
    assert time.monotonic() - started < 10, "the request was not cut off by --requestTimeout"
    assert reply.body["id"] == 11
    assert "error" in reply.body, reply.body
    # The session goes on working after a timed-out request.
    ping = post_rpc(http, proxy.mcp_url, {"jsonrpc": "2.0", "id": 12, "method": "ping"}, session_id)
    assert ping.body == {"jsonrpc": "2.0", "id": 12, "result": {}}


def test_debug_logs_messages(start_proxy, http):
    proxy = start_proxy("--debug")
    session_id = open_raw_session(http, proxy.mcp_url)
    request = {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"message": "debug-marker-6d1f"}}}
    post_rpc(http, proxy.mcp_url, request, session_id)
    proxy.wait_for_log("debug-marker-6d1f", timeout=5)


def test_shell_runs_the_command_through_a_shell(start_proxy, http):
    command = f"E2E_SHELL_MARKER=from-the-shell exec node {SERVER_EVERYTHING_JS} stdio"
    proxy = start_proxy("--shell", command=[command])
    session_id = open_raw_session(http, proxy.mcp_url)
    request = {"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "get-env", "arguments": {}}}
    reply = post_rpc(http, proxy.mcp_url, request, session_id)
    assert "from-the-shell" in reply.body["result"]["content"][0]["text"]


def test_stateless_serves_requests_without_sessions(start_proxy, http):
    proxy = start_proxy("--stateless")
    init = post_rpc(http, proxy.mcp_url, initialize_request())
    assert init.status == 200
    assert init.session_id is None, "a stateless server issues no Mcp-Session-Id"
    assert init.body["result"]["serverInfo"]["name"] == "mcp-servers/everything"
    for n in range(3):
        request = {"jsonrpc": "2.0", "id": 100 + n, "method": "tools/call",
                   "params": {"name": "echo", "arguments": {"message": f"stateless {n}"}}}
        reply = post_rpc(http, proxy.mcp_url, request)
        assert reply.status == 200
        assert reply.body["result"]["content"][0]["text"] == f"Echo: stateless {n}"


@pytest.mark.anyio
async def test_stateless_with_the_sdk_client(start_proxy):
    proxy = start_proxy("--stateless")
    async with mcp_client(proxy, "streamable-http") as conn:
        result = await conn.session.call_tool("echo", {"message": "sdk stateless"})
    assert text_of(result) == "Echo: sdk stateless"
