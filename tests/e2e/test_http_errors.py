"""Bad HTTP input gets the right status code, and the proxy keeps serving.

All tests share one proxy (started with a small ``--maxBodySize``); the last
test checks that after all of them a fresh session still works.
"""

from __future__ import annotations

import json

import pytest
from conftest import (
    SseReader,
    mcp_client,
    open_raw_session,
    post_rpc,
    rpc_error_code,
    rpc_request,
    running_proxy,
    text_of,
)

MAX_BODY = 4096


@pytest.fixture(scope="module")
def proxy(proxy_bin):
    with running_proxy(proxy_bin, "--maxBodySize", str(MAX_BODY)) as running:
        yield running


@pytest.fixture
def session_id(proxy, http) -> str:
    return open_raw_session(http, proxy.mcp_url)


def test_malformed_json_is_400_parse_error(proxy, http, session_id):
    reply = post_rpc(http, proxy.mcp_url, None, session_id, content=b'{"jsonrpc": "2.0", "method": ')
    assert reply.status == 400
    assert rpc_error_code(reply.body) == -32700, reply.body


def test_malformed_json_without_session_is_400(proxy, http):
    reply = post_rpc(http, proxy.mcp_url, None, content=b"not json at all")
    assert reply.status == 400
    assert rpc_error_code(reply.body) is not None, reply.body


@pytest.mark.parametrize(
    "body",
    [
        {"hello": "world"},
        {"jsonrpc": "1.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": 1},
        [1, 2, 3],
        42,
        "a string",
    ],
    ids=["object", "wrong-version", "no-method-or-result", "array-of-numbers", "number", "string"],
)
def test_json_that_is_not_jsonrpc_is_400_invalid_request(proxy, http, session_id, body):
    reply = post_rpc(http, proxy.mcp_url, None, session_id, content=json.dumps(body))
    assert reply.status == 400
    assert rpc_error_code(reply.body) == -32600, reply.body


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_415(proxy, http, session_id, content_type):
    reply = post_rpc(http, proxy.mcp_url, None, session_id, {"Content-Type": content_type},
                     content=json.dumps(rpc_request("ping")))
    assert reply.status == 415


def test_content_type_with_charset_is_accepted(proxy, http, session_id):
    request = rpc_request("ping")
    reply = post_rpc(http, proxy.mcp_url, request, session_id, {"Content-Type": "application/json; charset=utf-8"})
    assert reply.status == 200
    assert reply.body["id"] == request["id"]


@pytest.mark.parametrize("method,path", [("GET", "/nope"), ("POST", "/nope"), ("GET", "/mcp/extra")])
def test_unknown_path_is_404(proxy, http, method, path):
    reply = http.request(method, proxy.url(path), headers={"Content-Type": "application/json"}, content=b"{}")
    assert reply.status_code == 404


def test_ping_endpoint(proxy, http):
    reply = http.get(proxy.url("/ping"))
    assert reply.status_code == 200
    assert reply.text == "pong"


def test_body_over_max_body_size_is_413(proxy, http, session_id):
    big = rpc_request("tools/call", {"name": "echo", "arguments": {"message": "x" * (4 * MAX_BODY)}})
    reply = post_rpc(http, proxy.mcp_url, big, session_id)
    assert reply.status == 413


def test_body_under_max_body_size_is_served(proxy, http, session_id):
    request = rpc_request("tools/call", {"name": "echo", "arguments": {"message": "y" * (MAX_BODY // 2)}})
    reply = post_rpc(http, proxy.mcp_url, request, session_id)
    assert reply.status == 200
    assert reply.body["result"]["content"][0]["text"] == "Echo: " + "y" * (MAX_BODY // 2)


def test_legacy_messages_body_over_max_body_size_is_413(proxy, http):
    with http.stream("GET", proxy.sse_url, headers={"Accept": "text/event-stream"}) as stream:
        events = SseReader(stream)  # keep it: dropping the line iterator closes the stream
        messages_url = proxy.url(next(events).data)
        reply = http.post(messages_url, content=json.dumps({"x": "z" * (4 * MAX_BODY)}),
                          headers={"Content-Type": "application/json"})
    assert reply.status_code == 413


def test_unknown_session_is_404(proxy, http):
    reply = post_rpc(http, proxy.mcp_url, rpc_request("ping"), "00000000-not-a-session")
    assert reply.status == 404


def test_unknown_method_is_jsonrpc_error_from_server(proxy, http, session_id):
    request = rpc_request("no/such/method")
    reply = post_rpc(http, proxy.mcp_url, request, session_id)
    assert reply.status == 200
    assert reply.body["id"] == request["id"]
    assert rpc_error_code(reply.body) == -32601


@pytest.mark.anyio
async def test_still_serves_a_fresh_session_after_bad_input(proxy):
    async with mcp_client(proxy, "streamable-http") as conn:
        result = await conn.session.call_tool("echo", {"message": "still alive"})
    assert text_of(result) == "Echo: still alive"
    assert proxy.proc.poll() is None
