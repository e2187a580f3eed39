"""2026-07-28 requests over plain httpx: the envelope, the standard headers, and replies read
event by event, so a test sees (and counts) exactly what the proxy put on the wire."""

from __future__ import annotations

import base64
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from conftest import SseReader

MODERN = "2026-07-28"
#: Every client capability the proxy can bridge.
ALL_CAPABILITIES = {"sampling": {}, "elicitation": {}, "roots": {}}
#: Methods whose name (or URI) goes into the ``Mcp-Name`` header.
NAMED = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}

_ids = itertools.count(1000)


def envelope(capabilities: Mapping | None = None, **extra: Any) -> dict:
    """The per-request ``_meta`` envelope (plus ``extra`` keys such as ``progressToken``)."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": dict(capabilities if capabilities is not None else {}),
        "io.modelcontextprotocol/clientInfo": {"name": "mcp-proxy-e2e-raw", "version": "1"},
    }
    meta.update(extra)
    return meta


def encode_name(value: str) -> str:
    """An ``Mcp-Name`` value, with the base64 sentinel when it is not plain visible ASCII."""
    if value.isascii() and value.isprintable() and value == value.strip() and not value.startswith("=?base64?"):
        return value
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="


def request_body(
    method: str,
    params: Mapping | None = None,
    *,
    request_id: Any = None,
    capabilities: Mapping | None = None,
    meta: Mapping | None = None,
) -> dict:
    """A 2026 request: ``params`` plus the envelope (``meta`` adds keys to it)."""
    body_params = dict(params or {})
    body_params["_meta"] = envelope(capabilities, **dict(meta or {}))
    return {
        "jsonrpc": "2.0",
        "id": next(_ids) if request_id is None else request_id,
        "method": method,
        "params": body_params,
    }


def headers_for(body: Mapping) -> dict[str, str]:
    """The headers a 2026 client sends with ``body``."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": body["method"],
    }
    key = NAMED.get(body["method"])
    value = (body.get("params") or {}).get(key) if key else None
    if isinstance(value, str):
        headers["Mcp-Name"] = encode_name(value)
    return headers


@dataclass
class Reply:
    """What one POST got back."""

    status: int
    headers: httpx.Headers
    #: Every JSON-RPC message in the reply, in order (one for a JSON body).
    messages: list = field(default_factory=list)
    #: The response to the request (or the JSON error body).
    body: Any = None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def result(self) -> dict:
        assert isinstance(self.body, dict) and "result" in self.body, f"not a result: HTTP {self.status} {self.body!r}"
        return self.body["result"]

    @property
    def error(self) -> dict:
        assert isinstance(self.body, dict) and "error" in self.body, f"not an error: HTTP {self.status} {self.body!r}"
        return self.body["error"]

    def notifications(self, method: str) -> list[dict]:
        return [m for m in self.messages if m.get("method") == method]


def post(http: httpx.Client, url: str, body: Any, headers: Mapping[str, str], *, content: bytes | None = None) -> Reply:
    """POSTs ``body`` (or raw ``content``) and reads the whole reply, JSON or SSE."""
    data = content if content is not None else json.dumps(body).encode()
    with http.stream("POST", url, content=data, headers=dict(headers)) as response:
        reply = Reply(response.status_code, response.headers)
        if reply.content_type.startswith("text/event-stream"):
            request_id = body.get("id") if isinstance(body, dict) else None
            for event in SseReader(response):
                if not event.data.strip():
                    continue
                message = json.loads(event.data)
                reply.messages.append(message)
                if message.get("id") == request_id and ("result" in message or "error" in message):
                    reply.body = message
                    break
        else:
            raw = response.read()
            reply.body = json.loads(raw) if raw.strip() else None
            if reply.body is not None:
                reply.messages.append(reply.body)
        return reply


def call(
    http: httpx.Client,
    url: str,
    method: str,
    params: Mapping | None = None,
    *,
    request_id: Any = None,
    capabilities: Mapping | None = None,
    meta: Mapping | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """Sends one well-formed 2026 request (``headers`` are added to the standard ones)."""
    body = request_body(method, params, request_id=request_id, capabilities=capabilities, meta=meta)
    return post(http, url, body, {**headers_for(body), **dict(headers or {})})


def retry(
    http: httpx.Client,
    url: str,
    method: str,
    params: Mapping,
    first: Reply,
    answers: Mapping[str, Any],
    *,
    capabilities: Mapping | None = None,
    headers: Mapping[str, str] | None = None,
    state: Any = None,
    request_id: Any = None,
) -> Reply:
    """The retry of an ``input_required`` round: same params, ``inputResponses``, the state
    (``state`` replaces the round's own), under a new id."""
    params = dict(params)
    params["inputResponses"] = dict(answers)
    params["requestState"] = first.result["requestState"] if state is None else state
    return call(http, url, method, params, capabilities=capabilities, headers=headers, request_id=request_id)


def sampling_answer(text: str = "Paris") -> dict:
    content = {"type": "text", "text": text}
    return {"role": "assistant", "model": "test-model", "content": content, "stopReason": "endTurn"}


class Listen:
    """A ``subscriptions/listen`` stream read on a thread; ``messages`` grows as events come."""

    def __init__(self, url: str, request: dict, headers: Mapping[str, str]) -> None:
        self.messages: list[dict] = []
        self.status: int | None = None
        self.headers: httpx.Headers | None = None
        self.ended = False
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._socket: socket.socket | None = None
        self._stop = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(30.0, read=60.0))
        self._thread = threading.Thread(target=self._read, args=(url, request, dict(headers)), daemon=True)
        self._thread.start()

    def _read(self, url: str, request: dict, headers: dict) -> None:
        try:
            with self._client.stream("POST", url, content=json.dumps(request), headers=headers) as response:
                with self._cond:
                    self.status, self.headers = response.status_code, response.headers
                    stream = response.extensions.get("network_stream")
                    self._socket = stream.get_extra_info("socket") if stream is not None else None
                    self._cond.notify_all()
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    raw = response.read()
                    with self._cond:
                        self.messages.append(json.loads(raw))
                    return
                for event in SseReader(response):
                    if self._stop.is_set():
                        return
                    if event.data.strip():
                        with self._cond:
                            self.messages.append(json.loads(event.data))
                            self._cond.notify_all()
        except Exception as error:  # the test closed the stream, or the proxy did
            if not self._stop.is_set():
                self.error = error
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[dict]], Any], timeout: float = 10.0) -> Any:
        """Waits until ``predicate(messages)`` is truthy; returns its value (falsy on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(list(self.messages))
                if value or time.monotonic() > deadline:
                    return value
                if self.ended and not value:
                    return value
                self._cond.wait(min(0.2, max(0.0, deadline - time.monotonic())))

    def wait_ended(self, timeout: float = 10.0) -> bool:
        self._thread.join(timeout)
        return self.ended

    def close(self) -> None:
        """Closes the stream (the client's way to end a 2026 request) and waits for the reader."""
        self._stop.set()
        with self._cond:
            sock = self._socket
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(10)
        self._client.close()


@contextmanager
def listening(
    http_url: str,
    notifications: Mapping,
    *,
    request_id: Any = "listen-1",
    capabilities: Mapping | None = None,
    headers: Mapping[str, str] | None = None,
) -> Iterator[Listen]:
    """Opens a listen stream with the filter ``notifications``; closes it on exit."""
    body = request_body("subscriptions/listen", {"notifications": dict(notifications)}, request_id=request_id,
                        capabilities=capabilities)
    stream = Listen(http_url, body, {**headers_for(body), **dict(headers or {})})
    try:
        yield stream
    finally:
        stream.close()


def methods(messages: list[dict]) -> list[str]:
    return [m.get("method") or ("result" if "result" in m else "error") for m in messages]
