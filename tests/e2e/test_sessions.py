"""Session lifecycle over raw HTTP: ids, termination, child processes, streams."""

from __future__ import annotations

import json
import time

from conftest import (
    PROTOCOL_VERSION,
    SIMULATED_LOG_RE,
    SseReader,
    initialize_request,
    open_raw_session,
    pid_alive,
    post_rpc,
    rpc_error_code,
    rpc_request,
    session_headers,
)


def test_initialize_returns_session_id_and_result(proxy, http):
    request = initialize_request()
    reply = post_rpc(http, proxy.mcp_url, request)
    assert reply.status == 200
    assert reply.headers["content-type"].split(";")[0] in ("application/json", "text/event-stream")
    assert reply.session_id, "initialize response must carry Mcp-Session-Id"
    assert reply.session_id.isprintable() and " " not in reply.session_id
    assert reply.body["id"] == request["id"]
    assert reply.body["result"]["protocolVersion"] == PROTOCOL_VERSION
    assert reply.body["result"]["serverInfo"]["name"] == "mcp-servers/everything"


def test_requests_on_a_session(proxy, http):
    session_id = open_raw_session(http, proxy.mcp_url)
    request = rpc_request("tools/call", {"name": "echo", "arguments": {"message": "raw"}})
    reply = post_rpc(http, proxy.mcp_url, request, session_id)
    assert reply.status == 200
    assert reply.body == {"jsonrpc": "2.0", "id": request["id"], "result": reply.body["result"]}
    assert reply.body["result"]["content"][0]["text"] == "Echo: raw"


def test_string_request_ids_come_back_unchanged(proxy, http):
    session_id = open_raw_session(http, proxy.mcp_url)
    request = rpc_request("ping", request_id="my-id_with_underscores 1")
    reply = post_rpc(http, proxy.mcp_url, request, session_id)
    assert reply.status == 200
    assert reply.body["id"] == "my-id_with_underscores 1"
    assert reply.body["result"] == {}


def test_notification_and_response_get_202(proxy, http):
    session_id = open_raw_session(http, proxy.mcp_url)
    notification = post_rpc(http, proxy.mcp_url, {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"},
                            session_id)
    assert notification.status == 202
    assert notification.body is None
    # A response to a request the server never made is still accepted (and dropped).
    response = post_rpc(http, proxy.mcp_url, {"jsonrpc": "2.0", "id": 987654, "result": {}}, session_id)
    assert response.status == 202
    assert response.body is None


def test_post_without_session_id_is_400(proxy, http):
    reply = post_rpc(http, proxy.mcp_url, rpc_request("tools/list"))
    assert reply.status == 400
    assert rpc_error_code(reply.body) is not None, reply.body


def test_unknown_session_id_is_404(proxy, http):
    reply = post_rpc(http, proxy.mcp_url, rpc_request("tools/list"), "no-such-session")
    assert reply.status == 404
    get = http.get(proxy.mcp_url, headers={"Accept": "text/event-stream", "Mcp-Session-Id": "no-such-session"})
    assert get.status_code == 404
    delete = http.delete(proxy.mcp_url, headers={"Mcp-Session-Id": "no-such-session"})
    assert delete.status_code == 404


def test_unsupported_protocol_version_header_is_400(proxy, http):
    session_id = open_raw_session(http, proxy.mcp_url)
    reply = post_rpc(http, proxy.mcp_url, rpc_request("tools/list"), session_id,
                     {"MCP-Protocol-Version": "1999-01-01"})
    assert reply.status == 400
    ok = post_rpc(http, proxy.mcp_url, rpc_request("tools/list"), session_id)
    assert ok.status == 200


def test_each_session_gets_its_own_child(proxy, http):
    first = open_raw_session(http, proxy.mcp_url)
    children_first = set(proxy.mcp_children())
    second = open_raw_session(http, proxy.mcp_url)
    children_second = set(proxy.wait_for_children(lambda pids: set(pids) - children_first, timeout=5))
    assert first != second
    assert children_second - children_first, (
        f"no new child process for the second session: before {children_first}, after {children_second}"
    )


def test_delete_ends_session_and_its_child(proxy, http):
    session_id = open_raw_session(http, proxy.mcp_url)
    before = set(proxy.mcp_children())
    delete = http.delete(proxy.mcp_url, headers=session_headers(session_id))
    assert delete.status_code in (200, 204)

    after = set(proxy.wait_for_children(lambda pids: len(pids) < len(before), timeout=10))
    gone = before - after
    assert gone, f"no child process ended after DELETE: before {before}, after {after}"
    assert not any(pid_alive(pid) for pid in gone)

    reply = post_rpc(http, proxy.mcp_url, rpc_request("tools/list"), session_id)
    assert reply.status == 404
    assert http.delete(proxy.mcp_url, headers=session_headers(session_id)).status_code == 404


def test_get_opens_server_to_client_stream(proxy, http):
    session_id = open_raw_session(http, proxy.mcp_url)
    headers = {"Accept": "text/event-stream", "Mcp-Session-Id": session_id, "MCP-Protocol-Version": PROTOCOL_VERSION}
    with http.stream("GET", proxy.mcp_url, headers=headers) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        # Turn on simulated logging: its first message has no related request,
        # so it is delivered on this standalone stream.
        post_rpc(http, proxy.mcp_url, rpc_request("logging/setLevel", {"level": "debug"}), session_id)
        toggled = post_rpc(http, proxy.mcp_url,
                           rpc_request("tools/call", {"name": "toggle-simulated-logging", "arguments": {}}),
                           session_id)
        assert toggled.status == 200
        events = SseReader(stream)
        message = events.next_message()
        while message.get("method") != "notifications/message":  # e.g. tools/list_changed
            message = events.next_message()
    assert SIMULATED_LOG_RE.search(json.dumps(message["params"])), message


def test_legacy_sse_round_trip(proxy, http):
    with http.stream("GET", proxy.sse_url, headers={"Accept": "text/event-stream"}) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = SseReader(stream)
        endpoint = next(events)
        assert endpoint.event == "endpoint"
        assert endpoint.data.startswith("/messages?sessionId="), endpoint.data
        messages_url = proxy.url(endpoint.data)

        request = initialize_request()
        posted = http.post(messages_url, json=request, headers={"Content-Type": "application/json"})
        assert posted.status_code == 202
        response = events.next_message(request["id"])
        assert response["result"]["serverInfo"]["name"] == "mcp-servers/everything"

        posted = http.post(messages_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert posted.status_code == 202
        echo = rpc_request("tools/call", {"name": "echo", "arguments": {"message": "over sse"}})
        assert http.post(messages_url, json=echo).status_code == 202
        assert events.next_message(echo["id"])["result"]["content"][0]["text"] == "Echo: over sse"


def test_legacy_sse_unknown_session_is_404(proxy, http):
    reply = http.post(proxy.url("/messages?sessionId=no-such-session"), json=rpc_request("ping"))
    assert reply.status_code == 404


def test_legacy_sse_session_closes_with_stream(proxy, http):
    """Closing the GET /sse stream ends the session: its id is unknown afterwards."""
    with http.stream("GET", proxy.sse_url, headers={"Accept": "text/event-stream"}) as stream:
        events = SseReader(stream)  # keep it: dropping the line iterator closes the stream
        endpoint = next(events)
        messages_url = proxy.url(endpoint.data)
        assert http.post(messages_url, json=initialize_request()).status_code == 202
    deadline = time.monotonic() + 10
    while (status := http.post(messages_url, json=rpc_request("ping")).status_code) != 404:
        assert time.monotonic() < deadline, f"session still answers {status} 10 s after its stream closed"
        time.sleep(0.1)
