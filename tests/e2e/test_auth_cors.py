"""API-key authentication and CORS."""

from __future__ import annotations

import pytest
from conftest import (
    initialize_request,
    mcp_client,
    open_raw_session,
    post_rpc,
    running_proxy,
    text_of,
)

API_KEY = "e2e-secret-key"
#: A browser page on this machine (e.g. the MCP Inspector). Pages on other
#: hosts are refused by default: see the DNS-rebinding tests below.
ORIGIN = "http://localhost:6274"
FOREIGN_ORIGIN = "http://client.example.test"


def split_header(value: str | None) -> set[str]:
    """A comma-separated header as a set of lower-case tokens."""
    return {token.strip().lower() for token in (value or "").split(",") if token.strip()}


def preflight(http, url: str, origin: str = ORIGIN, method: str = "POST", headers: str = "content-type"):
    return http.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


# --------------------------------------------------------------------------
# --apiKey
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_proxy(proxy_bin):
    with running_proxy(proxy_bin, "--apiKey", API_KEY) as running:
        yield running


def assert_unauthorized(reply) -> None:
    assert reply.status == 401, f"expected 401, got {reply.status}: {reply.body!r}"
    assert isinstance(reply.body, dict), f"401 body must be JSON: {reply.body!r}"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": "wrong"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": API_KEY},
        {"Authorization": f"Basic {API_KEY}"},
        {"X-API-Key": API_KEY[:-1]},
    ],
    ids=["none", "wrong-x-api-key", "wrong-bearer", "bare-authorization", "basic-scheme", "key-prefix"],
)
def test_streamable_http_without_valid_key_is_401(keyed_proxy, http, headers):
    assert_unauthorized(post_rpc(http, keyed_proxy.mcp_url, initialize_request(), headers=headers))


def test_sse_without_key_is_401(keyed_proxy, http):
    reply = http.get(keyed_proxy.sse_url, headers={"Accept": "text/event-stream"})
    assert reply.status_code == 401
    reply = http.post(keyed_proxy.url("/messages?sessionId=whatever"), json=initialize_request())
    assert reply.status_code == 401


@pytest.mark.parametrize(
    "headers",
    [{"X-API-Key": API_KEY}, {"Authorization": f"Bearer {API_KEY}"}],
    ids=["x-api-key", "bearer"],
)
def test_valid_key_is_accepted(keyed_proxy, http, headers):
    reply = post_rpc(http, keyed_proxy.mcp_url, initialize_request(), headers=headers)
    assert reply.status == 200
    assert "result" in reply.body
    # The whole session works with the key, and fails without it.
    session_id = open_raw_session(http, keyed_proxy.mcp_url, headers)
    assert_unauthorized(post_rpc(http, keyed_proxy.mcp_url, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, session_id))


def test_ping_needs_no_key(keyed_proxy, http):
    reply = http.get(keyed_proxy.url("/ping"))
    assert reply.status_code == 200
    assert reply.text == "pong"


def test_preflight_needs_no_key(keyed_proxy, http):
    reply = preflight(http, keyed_proxy.mcp_url, headers="content-type, x-api-key")
    assert reply.status_code == 204
    assert "x-api-key" in split_header(reply.headers.get("access-control-allow-headers"))


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_sdk_client_with_key(keyed_proxy, transport):
    async with mcp_client(keyed_proxy, transport, headers={"X-API-Key": API_KEY}) as conn:
        result = await conn.session.call_tool("echo", {"message": "authorized"})
    assert text_of(result) == "Echo: authorized"


def test_api_key_from_environment(start_proxy, http):
    proxy = start_proxy(env={"MCP_PROXY_API_KEY": API_KEY})
    assert_unauthorized(post_rpc(http, proxy.mcp_url, initialize_request()))
    assert post_rpc(http, proxy.mcp_url, initialize_request(), headers={"X-API-Key": API_KEY}).status == 200


# --------------------------------------------------------------------------
# CORS
# --------------------------------------------------------------------------

REQUIRED_ALLOW_METHODS = {"get", "post", "delete", "options"}
REQUIRED_ALLOW_HEADERS = {
    "content-type",
    "authorization",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "x-api-key",
}


@pytest.mark.parametrize("path", ["/mcp", "/sse", "/messages?sessionId=x"])
def test_preflight_allows_any_origin_by_default(proxy, http, path):
    reply = preflight(http, proxy.url(path), headers="content-type, mcp-session-id, mcp-protocol-version")
    assert reply.status_code == 204
    assert reply.headers.get("access-control-allow-origin") == "*"
    assert REQUIRED_ALLOW_METHODS <= split_header(reply.headers.get("access-control-allow-methods"))
    assert REQUIRED_ALLOW_HEADERS <= split_header(reply.headers.get("access-control-allow-headers"))


def test_responses_expose_session_id(proxy, http):
    reply = post_rpc(http, proxy.mcp_url, initialize_request(), headers={"Origin": ORIGIN})
    assert reply.status == 200
    assert reply.headers.get("access-control-allow-origin") == "*"
    assert "mcp-session-id" in split_header(reply.headers.get("access-control-expose-headers"))


def test_cors_origin_allow_list(start_proxy, http):
    allowed, also_allowed, other = "http://a.example.test", "http://b.example.test", "http://evil.example.test"
    proxy = start_proxy("--cors-origin", allowed, "--cors-origin", also_allowed)
    for origin in (allowed, also_allowed):
        reply = preflight(http, proxy.mcp_url, origin=origin)
        assert reply.status_code == 204
        assert reply.headers.get("access-control-allow-origin") == origin
    reply = preflight(http, proxy.mcp_url, origin=other)
    assert reply.headers.get("access-control-allow-origin") not in (other, "*")


def test_no_cors(start_proxy, http):
    proxy = start_proxy("--no-cors")
    reply = preflight(http, proxy.mcp_url)
    assert "access-control-allow-origin" not in reply.headers
    reply = post_rpc(http, proxy.mcp_url, initialize_request(), headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in reply.headers


# --------------------------------------------------------------------------
# DNS-rebinding protection (MCP spec: servers must validate Origin)
# --------------------------------------------------------------------------


def test_foreign_origin_is_refused_by_default(proxy, http):
    reply = post_rpc(http, proxy.mcp_url, initialize_request(), headers={"Origin": FOREIGN_ORIGIN})
    assert reply.status == 403
    assert isinstance(reply.body, dict), reply.body
    assert preflight(http, proxy.mcp_url, origin=FOREIGN_ORIGIN).status_code == 403


def test_foreign_host_header_is_refused_by_default(proxy, http):
    reply = post_rpc(http, proxy.mcp_url, initialize_request(), headers={"Host": f"rebound.example.test:{proxy.port}"})
    assert reply.status == 403


def test_loopback_origin_and_host_are_accepted(proxy, http):
    for origin in ("http://localhost:6274", "http://127.0.0.1:3000"):
        reply = post_rpc(http, proxy.mcp_url, initialize_request(), headers={"Origin": origin})
        assert reply.status == 200, origin
    reply = post_rpc(http, proxy.mcp_url, initialize_request(), headers={"Host": f"localhost:{proxy.port}"})
    assert reply.status == 200


def test_no_origin_check_accepts_any_origin(start_proxy, http):
    proxy = start_proxy("--no-origin-check")
    reply = post_rpc(http, proxy.mcp_url, initialize_request(), headers={"Origin": FOREIGN_ORIGIN})
    assert reply.status == 200
    assert reply.headers.get("access-control-allow-origin") == "*"
    reply = preflight(http, proxy.mcp_url, origin=FOREIGN_ORIGIN)
    assert reply.status_code == 204


def test_cors_origin_is_accepted_by_the_origin_check(start_proxy, http):
    proxy = start_proxy("--cors-origin", FOREIGN_ORIGIN)
    reply = post_rpc(http, proxy.mcp_url, initialize_request(), headers={"Origin": FOREIGN_ORIGIN})
    assert reply.status == 200
    assert reply.headers.get("access-control-allow-origin") == FOREIGN_ORIGIN
