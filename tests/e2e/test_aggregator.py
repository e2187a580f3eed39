"""The aggregator: `mcp-proxy --config <file>` serves every server of a Go mcp-proxy or
Claude Desktop configuration file at its own endpoints, with tokens and tool filters.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import anyio
import pytest
from conftest import EVERYTHING_COMMAND, initialize_request, mcp_client, post_rpc, text_of
from tiny_server import COMMAND as TINY_COMMAND

pytestmark = pytest.mark.anyio


def write_config(tmp_path, config: dict) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def go_format_config() -> dict:
    """The Go mcp-proxy v2 format, as its users have it."""
    return {
        "mcpProxy": {
            "baseURL": "http://127.0.0.1",
            "addr": ":9090",
            "name": "Aggregated",
            "version": "1.0.0",
            "options": {"panicIfInvalid": False, "logEnabled": True, "authTokens": ["proxy-token"]},
        },
        "mcpServers": {
            "everything": {
                "command": EVERYTHING_COMMAND[0],
                "args": list(EVERYTHING_COMMAND[1:]),
                "options": {"authTokens": [], "toolFilter": {"mode": "block", "list": ["get-sum"]}},
            },
            "tiny": {"command": TINY_COMMAND[0], "args": list(TINY_COMMAND[1:])},
            "broken": {"transportType": "carrier-pigeon"},
        },
    }


@pytest.fixture
def aggregator(start_proxy, tmp_path):
    return start_proxy("--config", write_config(tmp_path, go_format_config()), command=())


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_each_server_is_served_at_its_own_endpoints(aggregator, transport):
    endpoint = "/everything/mcp" if transport == "streamable-http" else "/everything/sse"
    async with mcp_client(aggregator, transport, endpoint=endpoint) as conn:
        assert conn.session.initialize_result.server_info.name == "mcp-servers/everything"
        echoed = await conn.session.call_tool("echo", {"message": "via the aggregator"})
    assert text_of(echoed) == "Echo: via the aggregator"
    tiny_endpoint = "/tiny/mcp" if transport == "streamable-http" else "/tiny/sse"
    async with mcp_client(aggregator, transport, endpoint=tiny_endpoint, headers={"Authorization": "Bearer proxy-token"}) as conn:
        assert conn.session.initialize_result.server_info.name == "tiny"


async def test_the_tool_filter_hides_and_blocks(aggregator):
    async with mcp_client(aggregator, "streamable-http", endpoint="/everything/mcp") as conn:
        names = {tool.name for tool in (await conn.session.list_tools()).tools}
        assert "echo" in names and "get-sum" not in names
        with pytest.raises(Exception) as refused:
            await conn.session.call_tool("get-sum", {"a": 1, "b": 2})
    assert "not available" in str(refused.value)


def test_tokens_are_required_where_configured(aggregator, http):
    url = aggregator.url("/tiny/mcp")
    assert post_rpc(http, url, initialize_request()).status == 401, "tiny inherits the proxy's token"
    assert post_rpc(http, url, initialize_request(), headers={"Authorization": "Bearer nope"}).status == 401
    assert post_rpc(http, url, initialize_request(), headers={"Authorization": "Bearer proxy-token"}).status == 200
    assert post_rpc(http, aggregator.url("/everything/mcp"), initialize_request()).status == 200


def test_invalid_servers_are_left_out_with_a_logged_reason(aggregator, http):
    aggregator.wait_for_log(r"left out: mcpServers\.broken\.transportType")
    assert post_rpc(http, aggregator.url("/broken/mcp"), initialize_request()).status == 404


async def test_a_claude_desktop_file_works_unchanged(start_proxy, tmp_path):
    config = {"mcpServers": {"tiny": {"command": TINY_COMMAND[0], "args": list(TINY_COMMAND[1:]), "env": {"X": "1"}}}}
    proxy = start_proxy("--config", write_config(tmp_path, config), command=())
    async with mcp_client(proxy, "streamable-http", endpoint="/tiny/mcp") as conn:
        result = await conn.session.call_tool("echo", {"message": "claude"})
    assert "claude" in text_of(result)


def test_a_bad_file_names_the_file_the_server_and_the_field(proxy_bin, tmp_path):
    config = {"mcpProxy": {"options": {"panicIfInvalid": True}}, "mcpServers": {"tiny": {"command": "x", "args": "not-a-list"}}}
    path = write_config(tmp_path, config)
    done = subprocess.run([str(proxy_bin), "--port", "0", "--config", path], capture_output=True, text=True, timeout=20)
    assert done.returncode == 2
    assert f"{path}: mcpServers.tiny.args: must be an array of strings" in done.stderr


def test_environment_variables_expand_on_request(start_proxy, tmp_path, http):
    config = {"mcpServers": {"tiny": {"command": TINY_COMMAND[0], "args": list(TINY_COMMAND[1:]), "options": {"authTokens": ["${AGG_TOKEN}"]}}}}
    proxy = start_proxy("--expand-env", "--config", write_config(tmp_path, config), command=(), env={"AGG_TOKEN": "from-env"})
    reply = post_rpc(http, proxy.url("/tiny/mcp"), initialize_request(), headers={"Authorization": "Bearer from-env"})
    assert reply.status == 200


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_the_merged_endpoint_serves_every_server_at_once(aggregator, transport):
    endpoint = "/mcp" if transport == "streamable-http" else "/sse"
    async with mcp_client(aggregator, transport, endpoint=endpoint, headers={"Authorization": "Bearer proxy-token"}) as conn:
        assert conn.session.initialize_result.server_info.name == "Aggregated"
        names = {tool.name for tool in (await conn.session.list_tools()).tools}
        assert {"everything__echo", "tiny__echo", "tiny__sleep"} <= names
        assert "everything__get-sum" not in names, "the tool filter applies on the merged endpoint too"
        assert not any(name.startswith("broken") for name in names)
        result = await conn.session.call_tool("tiny__echo", {"message": "merged"})
        assert "merged" in text_of(result)
        result = await conn.session.call_tool("everything__echo", {"message": "also merged"})
        assert text_of(result) == "Echo: also merged"
        prompts = {prompt.name for prompt in (await conn.session.list_prompts()).prompts}
        assert any(name.startswith("everything__") for name in prompts)
        with pytest.raises(Exception):
            await conn.session.call_tool("nobody__echo", {})


async def test_a_dead_server_is_left_out_then_comes_back(aggregator):
    import os
    import signal

    async with mcp_client(aggregator, "streamable-http", endpoint="/mcp", headers={"Authorization": "Bearer proxy-token"}) as conn:
        tiny = [pid for pid in aggregator.descendants() if "tiny_server" in open(f"/proc/{pid}/cmdline").read()]
        assert len(tiny) == 1, tiny
        os.kill(tiny[0], signal.SIGKILL)
        aggregator.wait_for_log(r"left out tiny")
        names = {tool.name for tool in (await conn.session.list_tools()).tools}
        assert "everything__echo" in names and "tiny__echo" not in names
        result = await conn.session.call_tool("everything__echo", {"message": "still here"})
        assert text_of(result) == "Echo: still here"
        aggregator.wait_for_log(r"tiny is back")
        names = {tool.name for tool in (await conn.session.list_tools()).tools}
        assert "tiny__echo" in names, "it comes back when it recovers"
        assert "back again" in text_of(await conn.session.call_tool("tiny__echo", {"message": "back again"}))


def test_the_runtime_api_adds_and_removes_servers_while_clients_are_connected(start_proxy, tmp_path, http):
    config = {"mcpServers": {"tiny": {"command": TINY_COMMAND[0], "args": list(TINY_COMMAND[1:])}}}
    proxy = start_proxy("--config", write_config(tmp_path, config), "--admin-token", "adm", "--allow-runtime-stdio", command=())
    admin = {"Authorization": "Bearer adm"}
    assert http.get(proxy.url("/api/servers")).status_code == 401
    listed = http.get(proxy.url("/api/servers"), headers=admin).json()
    assert [s["name"] for s in listed["servers"]] == ["tiny"]
    tiny_session = post_rpc(http, proxy.url("/tiny/mcp"), initialize_request())
    assert tiny_session.status == 200

    added = http.post(proxy.url("/api/servers"), headers=admin,
                      json={"name": "second", "config": {"command": TINY_COMMAND[0], "args": list(TINY_COMMAND[1:])}})
    assert added.status_code == 201, added.text
    assert added.json()["paths"]["mcp"] == "/second/mcp"
    second = post_rpc(http, proxy.url("/second/mcp"), initialize_request())
    assert second.status == 200 and second.session_id, "its endpoints work at once"
    bad = http.post(proxy.url("/api/servers"), headers=admin, json={"name": "bad", "config": {"command": 1}})
    assert bad.status_code == 400 and "mcpServers.bad.command" in bad.text

    assert http.delete(proxy.url("/api/servers/second"), headers=admin).status_code == 200
    gone = post_rpc(http, proxy.url("/second/mcp"), {"jsonrpc": "2.0", "id": 5, "method": "ping"}, second.session_id)
    assert gone.status == 404
    proxy.wait_for_children(lambda pids: True)
    assert post_rpc(http, proxy.url("/tiny/mcp"), {"jsonrpc": "2.0", "id": 6, "method": "ping"}, tiny_session.session_id).status == 200


def test_runtime_stdio_servers_need_the_operators_consent(start_proxy, tmp_path, http):
    config = {"mcpServers": {"tiny": {"command": TINY_COMMAND[0], "args": list(TINY_COMMAND[1:])}}}
    proxy = start_proxy("--config", write_config(tmp_path, config), "--admin-token", "adm", command=())
    refused = http.post(proxy.url("/api/servers"), headers={"Authorization": "Bearer adm"},
                        json={"name": "x", "config": {"command": "sh", "args": ["-c", "touch /tmp/pwned"]}})
    assert refused.status_code == 403


async def test_a_pypi_server_and_server_everything_behind_one_merged_endpoint(start_proxy, tmp_path):
    """mcp-server-time (PyPI, stdio) and server-everything (npm, stdio) in one file."""
    import sys

    config = {
        "mcpServers": {
            "time": {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]},
            "everything": {"command": EVERYTHING_COMMAND[0], "args": list(EVERYTHING_COMMAND[1:])},
        }
    }
    proxy = start_proxy("--config", write_config(tmp_path, config), command=())
    async with mcp_client(proxy, "streamable-http", endpoint="/mcp") as conn:
        names = {tool.name for tool in (await conn.session.list_tools()).tools}
        assert {"time__get_current_time", "time__convert_time", "everything__echo"} <= names
        now = await conn.session.call_tool("time__get_current_time", {"timezone": "Europe/Paris"})
        assert "Europe/Paris" in text_of(now)
    async with mcp_client(proxy, "sse", endpoint="/time/sse") as conn:
        converted = await conn.session.call_tool(
            "convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}
        )
        assert "Asia/Tokyo" in text_of(converted)


def test_a_temporary_server_lives_as_long_as_its_sse_stream(start_proxy, tmp_path, http):
    import time

    from conftest import SseReader

    config = {"mcpServers": {"tiny": {"command": TINY_COMMAND[0], "args": list(TINY_COMMAND[1:])}}}
    proxy = start_proxy("--config", write_config(tmp_path, config), "--admin-token", "adm", "--allow-runtime-stdio", command=())
    admin = {"Authorization": "Bearer adm"}
    body = {"config": {"command": TINY_COMMAND[0], "args": list(TINY_COMMAND[1:])}}
    with http.stream("POST", proxy.url("/sse"), json=body, headers={**admin, "Accept": "text/event-stream"}) as stream:
        assert stream.status_code == 200
        events = SseReader(stream)
        endpoint = next(events)
        assert endpoint.event == "endpoint" and endpoint.data.startswith("/temporary-1/messages"), endpoint
        sources = [s["source"] for s in http.get(proxy.url("/api/servers"), headers=admin).json()["servers"]]
        assert "temporary" in sources
        request = initialize_request()
        assert http.post(proxy.url(endpoint.data), json=request, headers=admin).status_code == 202
        assert events.next_message(request["id"])["result"]["serverInfo"]["name"] == "tiny"
    deadline = time.monotonic() + 10
    while len(http.get(proxy.url("/api/servers"), headers=admin).json()["servers"]) != 1:
        assert time.monotonic() < deadline, "the temporary server outlived its stream"
        time.sleep(0.1)


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_remote_upstreams_over_streamable_http_and_legacy_sse(start_proxy, tmp_path, transport):
    """A second mcp-proxy serves server-everything over HTTP; the aggregator reaches it both ways."""
    upstream = start_proxy()
    config = {
        "mcpServers": {
            "remote": {"transportType": "streamable-http", "url": upstream.url("/mcp")},
            "legacy": {"url": upstream.url("/sse")},
        }
    }
    aggregator = start_proxy("--config", write_config(tmp_path, config), command=())
    for name in ("remote", "legacy"):
        endpoint = f"/{name}/mcp" if transport == "streamable-http" else f"/{name}/sse"
        progress: list[float] = []

        async def on_progress(value, total, message):
            progress.append(value)

        async with mcp_client(aggregator, transport, endpoint=endpoint) as conn:
            assert conn.session.initialize_result.server_info.name == "mcp-servers/everything"
            echoed = await conn.session.call_tool("echo", {"message": f"through {name}"})
            assert text_of(echoed) == f"Echo: through {name}"
            done = await conn.session.call_tool(
                "trigger-long-running-operation", {"duration": 0.3, "steps": 3}, progress_callback=on_progress
            )
            assert "completed" in text_of(done)
            for _ in range(50):  # progress callbacks run as tasks of their own
                if len(progress) == 3:
                    break
                await anyio.sleep(0.05)
            assert progress == [1, 2, 3], f"every progress notification crossed both proxies: {progress}"
    async with mcp_client(aggregator, transport, endpoint="/mcp" if transport == "streamable-http" else "/sse") as conn:
        names = {tool.name for tool in (await conn.session.list_tools()).tools}
        assert {"remote__echo", "legacy__echo"} <= names
        result = await conn.session.call_tool("legacy__echo", {"message": "merged remote"})
        assert text_of(result) == "Echo: merged remote"


@pytest.fixture
def config_server():
    """Serves one configuration over HTTP on loopback, only to requests with X-Token: abc."""
    import http.server
    import threading

    served: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.headers.get("X-Token") != "abc":
                self.send_response(401)
                self.end_headers()
                return
            body = served["config"]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/config.json"
    server.shutdown()


async def test_the_config_can_come_from_a_url_with_headers(start_proxy, proxy_bin, config_server):
    served, url = config_server
    served["config"] = json.dumps({"mcpServers": {"tiny": {"command": TINY_COMMAND[0], "args": list(TINY_COMMAND[1:])}}}).encode()
    refused = subprocess.run([str(proxy_bin), "--port", "0", "--config", url], capture_output=True, text=True, timeout=20)
    assert refused.returncode == 2 and url in refused.stderr and "401" in refused.stderr, refused.stderr
    proxy = start_proxy("--config", url, "--config-header", "X-Token: abc", command=())
    async with mcp_client(proxy, "streamable-http", endpoint="/tiny/mcp") as conn:
        assert "from a url" in text_of(await conn.session.call_tool("echo", {"message": "from a url"}))


def test_api_changes_survive_a_restart_with_persist(start_proxy, tmp_path, http):
    config = {"mcpProxy": {"name": "kept"}, "mcpServers": {"tiny": {"command": TINY_COMMAND[0], "args": list(TINY_COMMAND[1:])}}}
    path = write_config(tmp_path, config)
    os.chmod(path, 0o640)
    mode = os.stat(path).st_mode & 0o777
    admin = {"Authorization": "Bearer adm"}
    first = start_proxy("--config", path, "--admin-token", "adm", "--allow-runtime-stdio", "--persist", command=())
    entry = {"command": TINY_COMMAND[0], "args": list(TINY_COMMAND[1:])}
    assert http.post(first.url("/api/servers"), headers=admin, json={"name": "added", "config": entry}).status_code == 201
    assert http.delete(first.url("/api/servers/tiny"), headers=admin).status_code == 200
    # The file is written off the request path, in order: wait for the second write.
    first.wait_for_log(r"(?s)wrote the server list back.*wrote the server list back")
    saved = json.loads(open(path).read())
    assert set(saved["mcpServers"]) == {"added"} and saved["mcpProxy"]["name"] == "kept"
    assert oct(os.stat(path).st_mode & 0o777) == oct(mode), "the file keeps its permissions"
    first.stop()
    second = start_proxy("--config", path, command=())
    assert post_rpc(http, second.url("/added/mcp"), initialize_request()).status == 200
    assert post_rpc(http, second.url("/tiny/mcp"), initialize_request()).status == 404


def test_a_persisted_runtime_server_keeps_the_runtime_rules_after_a_restart(start_proxy, tmp_path, http):
    """An admin adds a remote on a loopback address under --allow-runtime-hosts; --persist writes
    it back marked as added at run time. Restarted without the exception, the proxy does not
    trust it as a file entry: it may not reach inside. With the exception, it works again."""
    upstream = start_proxy(command=TINY_COMMAND)
    config = {"mcpServers": {"tiny": {"command": TINY_COMMAND[0], "args": list(TINY_COMMAND[1:])}}}
    path = write_config(tmp_path, config)
    admin = {"Authorization": "Bearer adm"}
    first = start_proxy("--config", path, "--admin-token", "adm", "--allow-runtime-hosts", "127.0.0.1", "--persist",
                        command=())
    entry = {"transportType": "streamable-http", "url": upstream.mcp_url}
    added = http.post(first.url("/api/servers"), headers=admin, json={"name": "inside", "config": entry})
    assert added.status_code == 201, added.text
    assert post_rpc(http, first.url("/inside/mcp"), initialize_request()).status == 200, "allowed while excepted"
    first.wait_for_log(r"wrote the server list back")
    saved = json.loads(open(path).read())
    assert saved["mcpServers"]["inside"]["options"]["addedThroughApi"] is True, saved
    first.stop()

    reached = len(re.findall(r"session [0-9a-f]{32}: started", upstream.stderr))
    second = start_proxy("--config", path, command=())
    refused = post_rpc(http, second.url("/inside/mcp"), initialize_request())
    assert "result" not in (refused.body or {}), (refused.status, refused.body)
    second.wait_for_log(r"not a public address|public addresses only|refused")
    assert len(re.findall(r"session [0-9a-f]{32}: started", upstream.stderr)) == reached, "it reached inside"
    second.stop()

    third = start_proxy("--config", path, "--allow-runtime-hosts", "127.0.0.1", command=())
    assert post_rpc(http, third.url("/inside/mcp"), initialize_request()).status == 200


def test_config_notices_never_name_a_path_token(start_proxy, tmp_path):
    config = {
        "mcpServers": {
            "fetch/s3cretpath": {"command": TINY_COMMAND[0], "args": list(TINY_COMMAND[1:]), "bogus": 1},
            "other/t0kenpath": {"transportType": "carrier-pigeon"},
        }
    }
    proxy = start_proxy("--config", write_config(tmp_path, config), command=())
    proxy.wait_for_log(r"mcpServers\.fetch/….bogus: unknown field")
    proxy.wait_for_log(r"mcpServers\.other/…")
    assert "s3cretpath" not in proxy.stderr and "t0kenpath" not in proxy.stderr, proxy.stderr


async def test_an_expired_remote_session_is_renewed_transparently(start_proxy, tmp_path, http):
    upstream = start_proxy()
    # Pinned to the 2025 revision: a 2026-07-28 upstream has no session to expire.
    remote = {"transportType": "streamable-http", "url": upstream.url("/mcp"), "protocol": "2025-11-25"}
    config = {"mcpServers": {"remote": remote}}
    aggregator = start_proxy("--config", write_config(tmp_path, config), command=())
    async with mcp_client(aggregator, "streamable-http", endpoint="/remote/mcp") as conn:
        assert text_of(await conn.session.call_tool("echo", {"message": "one"})) == "Echo: one"
        upstream_session = upstream.wait_for_log(r"session ([0-9a-f]{32}): started").group(1)
        # The upstream ends that session behind the aggregator's back.
        assert http.delete(upstream.mcp_url, headers={"Mcp-Session-Id": upstream_session}).status_code == 200
        assert text_of(await conn.session.call_tool("echo", {"message": "two"})) == "Echo: two"
    aggregator.wait_for_log(r"its session expired; initializing it again")


async def test_a_shared_upstream_serves_every_client_and_answers_reach_the_right_one(start_proxy, tmp_path):
    """`shareUpstream`: one child for every session; ids and progress tokens never cross."""
    import os
    import signal

    config = {
        "mcpProxy": {"options": {"shareUpstream": True}},
        "mcpServers": {
            "everything": {"command": EVERYTHING_COMMAND[0], "args": list(EVERYTHING_COMMAND[1:])},
            "tiny": {"command": TINY_COMMAND[0], "args": list(TINY_COMMAND[1:])},
        },
    }
    proxy = start_proxy("--config", write_config(tmp_path, config), command=())

    def running(name: str) -> list[int]:
        return [pid for pid in proxy.descendants() if name in open(f"/proc/{pid}/cmdline").read()]

    async with (
        mcp_client(proxy, "streamable-http", endpoint="/everything/mcp") as first,
        mcp_client(proxy, "sse", endpoint="/everything/sse") as second,
    ):
        assert len(running("server-everything")) == 1, "both sessions share one child"
        progress: dict[str, list[float]] = {"first": [], "second": []}

        async def call(name, conn, steps):
            async def on_progress(value, total, message):
                progress[name].append(value)

            arguments = {"duration": 0.6, "steps": steps}
            return await conn.session.call_tool("trigger-long-running-operation", arguments, progress_callback=on_progress)

        async with anyio.create_task_group() as group:
            group.start_soon(call, "first", first, 3)
            group.start_soon(call, "second", second, 5)
        assert progress == {"first": [1, 2, 3], "second": [1, 2, 3, 4, 5]}, "each client sees its own progress"
        results = await asyncio_gather(
            first.session.call_tool("echo", {"message": "one"}), second.session.call_tool("echo", {"message": "two"})
        )
        assert [text_of(r) for r in results] == ["Echo: one", "Echo: two"]

    async with mcp_client(proxy, "streamable-http", endpoint="/tiny/mcp") as conn:
        assert "before" in text_of(await conn.session.call_tool("echo", {"message": "before"}))
        [pid] = running("tiny_server")
        os.kill(pid, signal.SIGKILL)
        proxy.wait_for_log(r"shared upstream of tiny exited[\s\S]*shared upstream of tiny is ready")
        assert running("tiny_server") != [pid], "a new child replaced it"
        assert "after" in text_of(await conn.session.call_tool("echo", {"message": "after"})), "the session goes on"


async def asyncio_gather(*calls):
    results = [None] * len(calls)

    async def run(index, call):
        results[index] = await call

    async with anyio.create_task_group() as group:
        for index, call in enumerate(calls):
            group.start_soon(run, index, call)
    return results
