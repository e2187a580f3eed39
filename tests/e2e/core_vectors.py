"""Runs the core's HTTP test vectors (tests/vectors/http.json) against a running server.

The vectors are requests whose answers the shared core decides on its own; every build of
the core (the native host, the Cloudflare Worker) must give the same answers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

VECTORS_FILE = Path(__file__).resolve().parents[1] / "vectors" / "http.json"
VECTORS: dict = json.loads(VECTORS_FILE.read_text())
API_KEY: str = VECTORS["apiKey"]
CONFIG: dict = VECTORS["config"]
CORS_ORIGIN: str = VECTORS["corsOrigin"]

DEFAULT_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def send(base_url: str, request: dict) -> httpx.Response:
    headers = dict(DEFAULT_HEADERS)
    headers.update(request.get("headers", {}))
    if request.get("key", True):
        headers["X-API-Key"] = API_KEY
    if "json" in request:
        content = json.dumps(request["json"]).encode()
    elif "body_repeat" in request:
        text, count = request["body_repeat"]
        content = (text * count).encode()
    else:
        content = request.get("body", "").encode()
    return httpx.request(
        request["method"], base_url + request["path"], headers=headers, content=content or None, timeout=30.0
    )


def check(vector: dict, response: httpx.Response) -> list[str]:
    """What differs from the vector's expectation (empty: it holds)."""
    expect = vector["expect"]
    problems = []
    if response.status_code != expect["status"]:
        problems.append(f"status {response.status_code}, expected {expect['status']}: {response.text[:300]}")
    for name, pattern in expect.get("headers", {}).items():
        value = response.headers.get(name)
        if value is None or not re.fullmatch(pattern, value):
            problems.append(f"header {name}: {value!r} does not match {pattern!r}")
    if "body" in expect and response.text != expect["body"]:
        problems.append(f"body {response.text[:200]!r}, expected {expect['body']!r}")
    if "error_code" in expect:
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
        if code != expect["error_code"]:
            problems.append(f"JSON-RPC error code {code}, expected {expect['error_code']}: {response.text[:300]}")
    return problems


def run_all(base_url: str) -> dict[str, list[str]]:
    """Runs every vector; returns the failing ones with what went wrong."""
    failures = {}
    for vector in VECTORS["vectors"]:
        problems = check(vector, send(base_url, vector["request"]))
        if problems:
            failures[vector["name"]] = problems
    return failures
