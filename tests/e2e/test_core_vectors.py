"""The core's HTTP test vectors against the native host (the Worker runs them too)."""

from __future__ import annotations

import json

import core_vectors


def test_the_native_host_answers_every_core_vector(start_proxy, tmp_path):
    config = tmp_path / "vectors.json"
    config.write_text(json.dumps(core_vectors.CONFIG))
    proxy = start_proxy(
        "--config", str(config), "--apiKey", core_vectors.API_KEY, "--cors-origin", core_vectors.CORS_ORIGIN, command=()
    )
    assert core_vectors.run_all(proxy.base_url) == {}


def test_a_broken_answer_is_caught():
    """The checker itself: a wrong status, header or error code is reported."""
    import httpx

    vector = {"expect": {"status": 401, "headers": {"www-authenticate": "Bearer.*"}, "error_code": -32000}}
    response = httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "result": {}})
    problems = core_vectors.check(vector, response)
    assert len(problems) == 3, problems
